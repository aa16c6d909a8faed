//! Series selection from a persisted block: resolve matchers on postings and
//! decode every sample of a 10k-series selection.
//!
//! `cargo bench -p strata-tsdb --bench select`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata_tsdb::block::{write_block, Block, WriteOptions};
use strata_tsdb::head::{Head, HeadOptions};
use strata_tsdb::labels::{Labels, MatchType, Matcher};

const SAMPLES: i64 = 480; // 2h at 15s

/// 20k series (a 10k selection) when benchmarking; a small smoke-test size
/// when a test runner executes the benchmarks once (`cargo nextest`).
fn series_count() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        20_000
    } else {
        200
    }
}

fn build_block(dir: &std::path::Path, series: usize) -> std::sync::Arc<Block> {
    let head = Head::new(HeadOptions::default());
    let labels: Vec<Labels> = (0..series)
        .map(|i| {
            Labels::from_pairs([
                // Half the series are `node_cpu_seconds_total`: a 10k selection.
                (
                    "__name__",
                    if i % 2 == 0 {
                        "node_cpu_seconds_total".to_string()
                    } else {
                        format!("other_{}", i % 50)
                    },
                ),
                ("instance", format!("10.0.{}.{}:9100", i / 250, i % 250)),
                ("job", "node".to_string()),
                (
                    "mode",
                    ["user", "system", "idle", "iowait"][i % 4].to_string(),
                ),
            ])
        })
        .collect();
    let mut v = 0u64;
    for s in 0..SAMPLES {
        let mut app = head.appender();
        for (i, l) in labels.iter().enumerate() {
            v = v
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            app.append(l, s * 15_000, (s * 10 + i as i64) as f64 + (v >> 60) as f64)
                .unwrap();
        }
        app.commit().unwrap();
    }
    let series = head.chunk_series_in(i64::MIN, i64::MAX);
    let meta = write_block(
        dir,
        &series,
        &WriteOptions {
            min_time: 0,
            max_time: SAMPLES * 15_000,
            compaction: None,
            segment_size: None,
        },
    )
    .unwrap()
    .unwrap();
    Block::open(&dir.join(meta.ulid)).unwrap()
}

fn bench_select(c: &mut Criterion) {
    let d = tempfile::tempdir().unwrap();
    let series = series_count();
    let block = build_block(d.path(), series);
    let all = [Matcher::equal("__name__", "node_cpu_seconds_total")];
    let narrow = [
        Matcher::equal("__name__", "node_cpu_seconds_total"),
        Matcher::new(MatchType::Regex, "instance", "10\\.0\\.1\\..*").unwrap(),
        Matcher::new(MatchType::NotEqual, "mode", "idle").unwrap(),
    ];
    let n = block.select(&all, i64::MIN, i64::MAX).unwrap().len();
    assert_eq!(n, series / 2);
    let mut g = c.benchmark_group("select");
    g.throughput(Throughput::Elements(n as u64 * SAMPLES as u64));
    g.bench_function("10k_series_select_and_decode", |b| {
        b.iter(|| {
            let mut total = 0usize;
            for s in block.select(&all, i64::MIN, i64::MAX).unwrap() {
                total += s.samples(i64::MIN, i64::MAX).unwrap().len();
            }
            assert_eq!(total, n * SAMPLES as usize);
        })
    });
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("10k_series_resolve_matchers_only", |b| {
        b.iter(|| block.index().postings_for_matchers(&all).unwrap().len())
    });
    g.bench_function("narrow_regex_selection", |b| {
        b.iter(|| block.select(&narrow, i64::MIN, i64::MAX).unwrap().len())
    });
    g.finish();
}

criterion_group!(benches, bench_select);
criterion_main!(benches);
