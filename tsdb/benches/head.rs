//! Head append throughput with the WAL on, and memory per active series.
//!
//! `cargo bench -p strata-tsdb --bench head`
//!
//! One batch = one "scrape" of 10,000 series at one timestamp, committed
//! (WAL record written) — the unit of work of a scrape or remote-write
//! request. Throughput is reported in samples/s.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use strata_tsdb::db::{Db, DbOptions};
use strata_tsdb::labels::Labels;

const SERIES: usize = 10_000;

/// Counts live heap bytes so memory per series is measured, not estimated.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn labels() -> Vec<Labels> {
    // A test runner executes each benchmark once as a smoke test: keep it small.
    let n = if std::env::args().any(|a| a == "--bench") {
        SERIES
    } else {
        100
    };
    (0..n)
        .map(|i| {
            Labels::from_pairs([
                ("__name__", format!("metric_{}", i % 100)),
                ("instance", format!("10.0.{}.{}:9100", i / 250, i % 250)),
                ("job", "node".to_string()),
                ("cluster", "cluster1".to_string()),
                (
                    "mode",
                    ["user", "system", "idle", "iowait"][i % 4].to_string(),
                ),
            ])
        })
        .collect()
}

fn bench_append(c: &mut Criterion) {
    let ls = labels();
    let d = tempfile::tempdir().unwrap();
    let (db, _) = Db::open(d.path(), DbOptions::default()).unwrap();
    let mut t = 0i64;
    // Create the series first: steady state is appends to existing series.
    let mut app = db.appender();
    let refs: Vec<u64> = ls.iter().map(|l| app.append(l, t, 0.0).unwrap()).collect();
    app.commit().unwrap();
    let mut g = c.benchmark_group("head");
    g.throughput(Throughput::Elements(ls.len() as u64));
    // Every append finds its series by hashing and comparing the labels.
    g.bench_function("append_commit_wal_10k_series", |b| {
        b.iter_batched(
            || {
                t += 15_000;
                t
            },
            |ts| {
                let mut app = db.appender();
                for (i, l) in ls.iter().enumerate() {
                    app.append(l, ts, (ts / 1000) as f64 + i as f64).unwrap();
                }
                app.commit().unwrap();
            },
            BatchSize::SmallInput,
        )
    });
    // Appends by the series ref an earlier append returned, as the scrape
    // loop's cache and Prometheus' scrape cache do.
    g.bench_function("append_ref_commit_wal_10k_series", |b| {
        b.iter_batched(
            || {
                t += 15_000;
                t
            },
            |ts| {
                let mut app = db.appender();
                for (i, &r) in refs.iter().enumerate() {
                    app.append_ref(r, ts, (ts / 1000) as f64 + i as f64)
                        .unwrap();
                }
                app.commit().unwrap();
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
    drop(db);
    // Only when benchmarking (not when a test runner lists or smoke-runs).
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    // Memory per active series after 2h of 15s samples (what a head holds
    // just before it is cut), counted by the allocator, as
    // `examples/head_memory.rs` also measures it without the throughput
    // part. Labels are built before measuring, as a scraper holds them.
    let before = LIVE.load(Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    // The WAL on, as `strata tsdb` runs; full chunks go to the memory-mapped
    // `chunks_head/` files (page cache, not heap, as in Prometheus), printed
    // separately.
    let (db, _) = Db::open(dir.path(), DbOptions::default()).unwrap();
    for step in 0..480 {
        let mut app = db.appender();
        for (i, l) in ls.iter().enumerate() {
            app.append(l, step * 15_000, (step * 7 + i as i64) as f64)
                .unwrap();
        }
        app.commit().unwrap();
    }
    let per_series = (LIVE.load(Ordering::Relaxed) - before) / ls.len();
    let mapped = db.head().chunk_mapper().map_or(0, |m| m.size()) as usize / ls.len();
    println!(
        "head memory: {per_series} bytes per active series (10k series, 480 samples each at 15s; estimate {}); chunks_head/: {mapped} bytes per series, memory-mapped",
        db.head().heap_bytes() / ls.len()
    );
}

criterion_group!(benches, bench_append);
criterion_main!(benches);
