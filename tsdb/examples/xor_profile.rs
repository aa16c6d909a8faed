//! Decodes the XOR benchmark's chunks in a loop, for measurements that a
//! busy machine does not distort:
//!
//! - `cargo run --release -p strata-tsdb --example xor_profile -- counter 20000`
//!   prints the best and median throughput over many short passes (a pass
//!   that the scheduler did not interrupt shows the undisturbed speed);
//! - `valgrind --tool=callgrind target/release/examples/xor_profile counter 200`
//!   counts instructions, which do not depend on load at all: divide the
//!   decode loop's total by `passes × 7680` samples.
//!
//! Arguments: workload (`counter` or `gauge`, see `benches/common`), number of
//! passes (default 2000).

use std::hint::black_box;
use std::time::Instant;

use strata_tsdb::chunkenc::XorIter;

#[path = "../benches/common/mod.rs"]
mod common;
use common::{encode, workload, CHUNKS, SAMPLES};

fn main() {
    let mut args = std::env::args().skip(1);
    let gauge = match args.next().as_deref() {
        None | Some("counter") => false,
        Some("gauge") => true,
        Some(other) => {
            eprintln!("unknown workload {other:?}: use counter or gauge");
            std::process::exit(2);
        }
    };
    let passes: usize = match args.next().map(|a| a.parse()) {
        None => 2000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("passes must be a positive integer");
            std::process::exit(2);
        }
    };
    let chunks: Vec<_> = (0..CHUNKS as u64)
        .map(|s| encode(&workload(gauge, s)))
        .collect();
    let mut times = Vec::with_capacity(passes);
    let mut check = (0i64, 0.0f64);
    for _ in 0..passes {
        let start = Instant::now();
        for c in &chunks {
            let mut it = XorIter::new(black_box(c.bytes()));
            for (t, v) in it.by_ref() {
                check.0 = check.0.wrapping_add(t);
                check.1 += v;
            }
            assert!(it.err().is_none());
        }
        times.push(start.elapsed());
        black_box(check);
    }
    times.sort();
    let per_pass = (SAMPLES * CHUNKS) as f64;
    let rate = |d: std::time::Duration| per_pass / d.as_secs_f64() / 1e6;
    println!(
        "{} decode: best {:.1} M samples/s, median {:.1} M samples/s ({} passes of {} samples)",
        if gauge { "gauge" } else { "counter" },
        rate(times[0]),
        rate(times[times.len() / 2]),
        passes,
        per_pass
    );
}
