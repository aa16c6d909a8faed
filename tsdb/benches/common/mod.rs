//! Workloads shared by the XOR benchmark and the `xor_profile` example
//! (which runs the same decode under callgrind for instruction counts).

use strata_tsdb::chunkenc::XorChunk;

/// Samples per chunk: the size the head cuts at.
pub const SAMPLES: usize = 120;
/// Different chunks per iteration, so the branch predictor cannot learn one
/// chunk's bit pattern by heart.
pub const CHUNKS: usize = 64;

/// Deterministic pseudo-random numbers (no extra dependency).
pub fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

pub fn workload(gauge: bool, seed: u64) -> Vec<(i64, f64)> {
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

pub fn encode(samples: &[(i64, f64)]) -> XorChunk {
    let mut c = XorChunk::new();
    for &(t, v) in samples {
        c.append(t, v);
    }
    c
}
