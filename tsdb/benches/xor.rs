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
use strata_tsdb::chunkenc::{XorChunk, XorIter};

const SAMPLES: usize = 120;
const CHUNKS: usize = 64;

/// Deterministic pseudo-random numbers (no extra dependency).
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn workload(gauge: bool, seed: u64) -> Vec<(i64, f64)> {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
    let mut t = 1_700_000_000_000i64 + (seed as i64) * 1_000;
    let mut v = (xorshift(&mut rng) % 100_000) as f64;
    (0..SAMPLES)
        .map(|_| {
            let s = (t, v);
            let jitter = gauge || xorshift(&mut rng).is_multiple_of(10);
            t += 15_000;
            if jitter {
                t += (xorshift(&mut rng) % 7) as i64 - 3;
            }
            v = if gauge {
                (xorshift(&mut rng) >> 11) as f64 / (1u64 << 53) as f64 * 100.0
            } else {
                v + (xorshift(&mut rng) % 20) as f64
            };
            s
        })
        .collect()
}

fn encode(samples: &[(i64, f64)]) -> XorChunk {
    let mut c = XorChunk::new();
    for &(t, v) in samples {
        c.append(t, v);
    }
    c
}

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
