//! Appends "scrapes" of 10,000 series to a head with the WAL on, as the
//! `head` benchmark does, for measurements that a busy machine does not
//! distort:
//!
//! - `cargo run --release -p strata-tsdb --example head_profile -- ref 300`
//!   prints the best and median commit throughput over many commits;
//! - `valgrind --tool=callgrind target/release/examples/head_profile ref 20`
//!   counts instructions per sample (run with 0 commits too and subtract).
//!
//! Arguments: `labels` (every append looks the series up by its labels) or
//! `ref` (appends by the ref the first append returned, as scrape loops do),
//! then the number of timed commits (default 200).

use std::time::Instant;

use strata_tsdb::db::{Db, DbOptions};
use strata_tsdb::labels::Labels;

const SERIES: usize = 10_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let by_ref = match args.next().as_deref() {
        None | Some("ref") => true,
        Some("labels") => false,
        Some(other) => {
            eprintln!("unknown mode {other:?}: use labels or ref");
            std::process::exit(2);
        }
    };
    let commits: i64 = match args.next().map(|a| a.parse()) {
        None => 200,
        Some(Ok(n)) if n >= 0 => n,
        Some(_) => {
            eprintln!("commits must be a non-negative integer");
            std::process::exit(2);
        }
    };
    let ls: Vec<Labels> = (0..SERIES)
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
    let dir = tempfile::tempdir().expect("temp dir");
    let (db, _) = Db::open(dir.path(), DbOptions::default()).expect("open db");
    let mut app = db.appender();
    let refs: Vec<u64> = ls
        .iter()
        .map(|l| app.append(l, 0, 0.0).expect("append"))
        .collect();
    app.commit().expect("commit");
    let mut times = Vec::new();
    for step in 1..=commits {
        let ts = step * 15_000;
        let start = Instant::now();
        let mut app = db.appender();
        for (i, (l, &r)) in ls.iter().zip(&refs).enumerate() {
            let v = (ts / 1000) as f64 + i as f64;
            if by_ref {
                app.append_ref(r, ts, v).expect("append by ref");
            } else {
                app.append(l, ts, v).expect("append");
            }
        }
        app.commit().expect("commit");
        times.push(start.elapsed());
    }
    if times.is_empty() {
        return;
    }
    times.sort();
    let rate = |d: std::time::Duration| SERIES as f64 / d.as_secs_f64() / 1e6;
    println!(
        "append by {}: best {:.2} M samples/s, median {:.2} M samples/s ({} commits of {} samples)",
        if by_ref { "ref" } else { "labels" },
        rate(times[0]),
        rate(times[times.len() / 2]),
        times.len(),
        SERIES
    );
}
