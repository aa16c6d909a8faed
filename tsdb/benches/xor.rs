//! XOR chunk encode and decode throughput, in samples per second.
//!
//! Run: `cargo bench -p strata-tsdb --bench xor`. Every iteration encodes or
//! decodes 64 different 120-sample chunks (the size the head cuts at), so
//! the branch predictor cannot learn one chunk's bit pattern by heart, as it
//! would if the same chunk were decoded over and over. Workloads:
//! - `counter`: 15s scrapes, 90% exactly on the interval (Prometheus aligns
//!   timestamps within 2 ms of it) and 10% off by a few ms; a counter growing
//!   by small integers. The common case.
//! - `gauge`: 15s scrapes with a few ms of jitter on every sample and
//!   arbitrary float values, which need wide XOR windows. A worst case.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata_tsdb::chunkenc::XorIter;

mod common;
use common::{encode, workload, CHUNKS, SAMPLES};

fn bench(c: &mut Criterion) {
    for (name, gauge) in [("counter", false), ("gauge", true)] {
        let inputs: Vec<_> = (0..CHUNKS as u64).map(|s| workload(gauge, s)).collect();
        let chunks: Vec<_> = inputs.iter().map(|s| encode(s)).collect();
        let mut g = c.benchmark_group(format!("xor_{name}"));
        g.throughput(Throughput::Elements((SAMPLES * CHUNKS) as u64));
        g.bench_function("encode", |b| {
            b.iter(|| {
                for s in &inputs {
                    black_box(encode(black_box(s)));
                }
            })
        });
        g.bench_function("decode", |b| {
            b.iter(|| {
                let mut acc = 0.0f64;
                let mut ts = 0i64;
                for c in &chunks {
                    let mut it = XorIter::new(black_box(c.bytes()));
                    for (t, v) in it.by_ref() {
                        ts = ts.wrapping_add(t);
                        acc += v;
                    }
                    assert!(it.err().is_none());
                }
                (ts, acc)
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
