//! Head memory per active series, counted by the allocator, as the `head`
//! benchmark measures it but without running the throughput benchmarks:
//!
//! `cargo run --release -p strata-tsdb --example head_memory -- 10000 480`
//!
//! Arguments: series (default 10,000) and samples per series (default 480,
//! 2 h at 15 s: what a head holds just before it is cut); a third argument
//! `mem` measures a head without a data directory instead (no WAL, every
//! chunk on the heap, as backfill runs it and as every head did before
//! `chunks_head/`), and `nowal` a `Db` opened with `no_wal` (the options the
//! first round's measurement used). `select` instead times selecting and
//! decoding every series from both kinds of head (full chunks read through
//! the mapped files, with their CRC checked, or from the heap). Appends go by
//! labels through `Db` with the WAL on, as `strata tsdb` runs. Counted: every
//! heap byte the database holds when the appends are done (series, labels,
//! postings, symbols, hash maps, chunks, WAL buffers), minus nothing; the
//! label sets the "scraper" holds are built before counting starts. Not
//! counted, and printed separately: the full chunks in `chunks_head/`, which
//! live in page cache through memory maps as in Prometheus.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use strata_tsdb::db::{Db, DbOptions};
use strata_tsdb::head::{Head, HeadOptions};
use strata_tsdb::labels::Labels;

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

fn arg(n: Option<String>, default: usize) -> usize {
    match n.map(|a| a.parse::<usize>()) {
        None => default,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("arguments must be positive integers: series samples");
            std::process::exit(2);
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let series = arg(args.next(), 10_000);
    let samples = arg(args.next(), 480);
    let ls: Vec<Labels> = (0..series)
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
        .collect();
    let mode = args.next();
    if mode.as_deref() == Some("select") {
        select_both(&ls, samples);
        return;
    }
    let in_memory = mode.as_deref() == Some("mem");
    let no_wal = mode.as_deref() == Some("nowal");
    let dir = tempfile::tempdir().expect("temp dir");
    let before = LIVE.load(Ordering::Relaxed);
    if in_memory {
        let head = Head::new(HeadOptions::default());
        for step in 0..samples as i64 {
            let mut app = head.appender();
            for (i, l) in ls.iter().enumerate() {
                app.append(l, step * 15_000, (step * 7 + i as i64) as f64)
                    .expect("append");
            }
            app.commit().expect("commit");
        }
        let per_series = (LIVE.load(Ordering::Relaxed) - before) / series;
        println!(
            "head memory (in memory, no WAL): {per_series} bytes per active series ({series} series, {samples} samples each at 15s)"
        );
        return;
    }
    let opts = DbOptions {
        no_wal,
        ..DbOptions::default()
    };
    let (db, _) = Db::open(dir.path(), opts).expect("open db");
    for step in 0..samples as i64 {
        let mut app = db.appender();
        for (i, l) in ls.iter().enumerate() {
            app.append(l, step * 15_000, (step * 7 + i as i64) as f64)
                .expect("append");
        }
        app.commit().expect("commit");
    }
    let per_series = (LIVE.load(Ordering::Relaxed) - before) / series;
    let mapped = db.head().chunk_mapper().map_or(0, |m| m.size()) as usize / series;
    println!(
        "head memory{}: {per_series} bytes per active series on the heap ({series} series, {samples} samples each at 15s; estimate {}); chunks_head/: {mapped} bytes per series, memory-mapped",
        if no_wal { " (no WAL)" } else { "" },
        db.head().heap_bytes() / series
    );
}

/// Best and median time of selecting all series and decoding every sample,
/// from a `Db` head (full chunks in mapped files) and an in-memory head.
fn select_both(ls: &[Labels], samples: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (db, _) = Db::open(dir.path(), DbOptions::default()).expect("open db");
    let mem = Head::new(HeadOptions::default());
    // One commit per step and head, as scrapes do.
    for step in 0..samples as i64 {
        let (mut a, mut b) = (db.appender(), mem.appender());
        for (i, l) in ls.iter().enumerate() {
            let v = (step * 7 + i as i64) as f64;
            a.append(l, step * 15_000, v).expect("append");
            b.append(l, step * 15_000, v).expect("append");
        }
        a.commit().expect("commit");
        b.commit().expect("commit");
    }
    let time = |f: &dyn Fn() -> usize| {
        let mut times = Vec::new();
        let mut n = 0;
        for _ in 0..15 {
            let start = std::time::Instant::now();
            n = f();
            times.push(start.elapsed());
        }
        times.sort();
        (times[0], times[times.len() / 2], n)
    };
    let run = |h: &Head| {
        h.select(&[], i64::MIN, i64::MAX)
            .iter()
            .map(|s| s.samples(i64::MIN, i64::MAX).expect("decode").len())
            .sum::<usize>()
    };
    let (best_m, med_m, n_m) = time(&|| run(db.head()));
    let (best_h, med_h, n_h) = time(&|| run(&mem));
    assert_eq!(n_m, n_h);
    let rate = |d: std::time::Duration| n_m as f64 / d.as_secs_f64() / 1e6;
    println!(
        "select + decode {n_m} samples: mapped chunks best {:.1} / median {:.1} M samples/s; heap chunks best {:.1} / median {:.1} M samples/s",
        rate(best_m),
        rate(med_m),
        rate(best_h),
        rate(med_h)
    );
}
