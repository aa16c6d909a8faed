//! Replica deduplication: the penalty algorithm of Thanos' `pkg/dedup`.
//!
//! After the replica labels are removed, the replicas of a series have equal
//! labels and the proxy merges them into one series whose chunks overlap in
//! time. [`overlap_split`] splits such a chunk list into non-overlapping
//! "pseudo-replicas" (each chunk goes to the first pseudo-replica whose last
//! chunk ends before it starts, else to a new one), as Thanos'
//! `NewOverlapSplit` does. The decoded pseudo-replicas are then combined by
//! [`penalty_merge`]:
//!
//! - replicas are folded pairwise: `dedup(dedup(r0, r1), r2)…`;
//! - each step seeks both sides to `last_t + 1 + penalty` and takes the one
//!   with the earlier sample (ties to the first); the side not taken gets the
//!   penalty `2 × (t − last_t)`, or 5000 ms before the first sample; the
//!   side taken has its penalty reset. So the merge sticks to one replica
//!   and switches only across a gap of more than about two scrape intervals;
//! - when one side is exhausted the other is used with penalty 0;
//! - for counter functions (`rate`, `increase`, `irate`, `resets`) every
//!   replica's values carry an adjustment: when a switch of replica would
//!   make the counter go down (the other replica restarted at a different
//!   value), the difference is added to the replica's later values so no
//!   false counter reset appears (Thanos issue 2401).
//!
//! [`chain_merge`] is the plain union by timestamp (first wins) used when
//! deduplication is off or there is only one pseudo-replica.

use std::borrow::Borrow;

use strata_proto::thanos::AggrChunk;

/// Penalty before the first sample, in ms (Thanos' `initialPenalty`).
pub const INITIAL_PENALTY: i64 = 5000;

/// Whether deduplication must adjust for counter resets under `func`.
pub fn is_counter_func(func: Option<&str>) -> bool {
    matches!(func, Some("increase" | "rate" | "irate" | "resets"))
}

/// Splits time-sorted chunks (owned or borrowed) into non-overlapping
/// pseudo-replicas.
pub fn overlap_split<C: Borrow<AggrChunk>>(chunks: Vec<C>) -> Vec<Vec<C>> {
    let mut replicas: Vec<Vec<C>> = Vec::new();
    'chunks: for c in chunks {
        for r in replicas.iter_mut() {
            if r.last()
                .is_none_or(|l| l.borrow().max_time < c.borrow().min_time)
            {
                r.push(c);
                continue 'chunks;
            }
        }
        replicas.push(vec![c]);
    }
    replicas
}

/// A sample iterator with Prometheus' `Next`/`Seek`/`At` contract.
trait SampleIter {
    /// Advances; false once exhausted.
    fn next(&mut self) -> bool;
    /// Advances to the first sample at or after `t` (never backwards).
    fn seek(&mut self, t: i64) -> bool;
    /// The current sample; only valid after `next`/`seek` returned true.
    fn at(&self) -> (i64, f64);
    /// Counter adjustment when the merge switches to this replica after a
    /// sample of value `last` from the other one.
    fn adjust_at_value(&mut self, last: f64);
}

/// One replica's samples, optionally counter-adjusted.
struct VecIter<'a> {
    s: &'a [(i64, f64)],
    /// Index of the current sample + 1 (0 = before the first).
    pos: usize,
    counter: bool,
    err_adjust: f64,
}

impl SampleIter for VecIter<'_> {
    fn next(&mut self) -> bool {
        if self.pos <= self.s.len() {
            self.pos += 1;
        }
        self.pos <= self.s.len()
    }

    fn seek(&mut self, t: i64) -> bool {
        if self.pos > self.s.len() {
            return false;
        }
        if self.pos > 0 && self.s[self.pos - 1].0 >= t {
            return true;
        }
        while self.next() {
            if self.s[self.pos - 1].0 >= t {
                return true;
            }
        }
        false
    }

    fn at(&self) -> (i64, f64) {
        let (t, v) = self.s[self.pos.clamp(1, self.s.len()) - 1];
        (t, if self.counter { v + self.err_adjust } else { v })
    }

    fn adjust_at_value(&mut self, last: f64) {
        if !self.counter || self.pos == 0 || self.pos > self.s.len() {
            return;
        }
        let (_, v) = self.at();
        if last > v {
            self.err_adjust += last - v;
        }
    }
}

/// Thanos' `dedupSeriesIterator` over two sides.
struct DedupIter<'a> {
    a: Box<dyn SampleIter + 'a>,
    b: Box<dyn SampleIter + 'a>,
    a_ok: bool,
    b_ok: bool,
    last_t: i64,
    last_is_a: bool,
    pen_a: i64,
    pen_b: i64,
    use_a: bool,
}

impl<'a> DedupIter<'a> {
    fn new(mut a: Box<dyn SampleIter + 'a>, mut b: Box<dyn SampleIter + 'a>) -> Self {
        let a_ok = a.next();
        let b_ok = b.next();
        DedupIter {
            a,
            b,
            a_ok,
            b_ok,
            last_t: i64::MIN,
            last_is_a: true,
            pen_a: 0,
            pen_b: 0,
            use_a: true,
        }
    }

    fn last_float_val(&self) -> Option<f64> {
        if (self.use_a && self.a_ok) || (!self.use_a && self.b_ok) {
            Some(if self.last_is_a {
                self.a.at().1
            } else {
                self.b.at().1
            })
        } else {
            None
        }
    }

    fn step(&mut self) -> bool {
        if self.a_ok {
            self.a_ok = self
                .a
                .seek(self.last_t.saturating_add(1).saturating_add(self.pen_a));
        }
        if self.b_ok {
            self.b_ok = self
                .b
                .seek(self.last_t.saturating_add(1).saturating_add(self.pen_b));
        }
        if !self.a_ok {
            self.use_a = false;
            if self.b_ok {
                self.last_t = self.b.at().0;
                self.last_is_a = false;
                self.pen_b = 0;
            }
            return self.b_ok;
        }
        if !self.b_ok {
            self.use_a = true;
            self.last_t = self.a.at().0;
            self.last_is_a = true;
            self.pen_a = 0;
            return true;
        }
        let ta = self.a.at().0;
        let tb = self.b.at().0;
        self.use_a = ta <= tb;
        if self.use_a {
            self.pen_b = if self.last_t != i64::MIN {
                2 * (ta - self.last_t)
            } else {
                INITIAL_PENALTY
            };
            self.pen_a = 0;
            self.last_t = ta;
            self.last_is_a = true;
        } else {
            self.pen_a = if self.last_t != i64::MIN {
                2 * (tb - self.last_t)
            } else {
                INITIAL_PENALTY
            };
            self.pen_b = 0;
            self.last_t = tb;
            self.last_is_a = false;
        }
        true
    }

    fn at_t(&self) -> i64 {
        if self.use_a {
            self.a.at().0
        } else {
            self.b.at().0
        }
    }
}

impl SampleIter for DedupIter<'_> {
    fn next(&mut self) -> bool {
        let last = self.last_float_val();
        let last_use_a = self.use_a;
        let ok = self.step();
        if self.use_a != last_use_a {
            if let Some(v) = last {
                self.adjust_at_value(v);
            }
        }
        ok
    }

    fn seek(&mut self, t: i64) -> bool {
        loop {
            let ts = self.at_t();
            if ts >= t {
                return if self.use_a {
                    self.a.seek(ts)
                } else {
                    self.b.seek(ts)
                };
            }
            if !self.next() {
                return false;
            }
        }
    }

    fn at(&self) -> (i64, f64) {
        if self.last_is_a {
            self.a.at()
        } else {
            self.b.at()
        }
    }

    fn adjust_at_value(&mut self, last: f64) {
        if self.a_ok {
            self.a.adjust_at_value(last);
        }
        if self.b_ok {
            self.b.adjust_at_value(last);
        }
    }
}

/// Deduplicates replicas (each sorted by time) with the penalty algorithm.
pub fn penalty_merge(replicas: &[Vec<(i64, f64)>], counter: bool) -> Vec<(i64, f64)> {
    match replicas {
        [] => return Vec::new(),
        [one] => return one.clone(),
        _ => {}
    }
    fn mk(s: &[(i64, f64)], counter: bool) -> Box<dyn SampleIter + '_> {
        Box::new(VecIter {
            s,
            pos: 0,
            counter,
            err_adjust: 0.0,
        })
    }
    let mut it: Box<dyn SampleIter + '_> = mk(&replicas[0], counter);
    for r in &replicas[1..] {
        it = Box::new(DedupIter::new(it, mk(r, counter)));
    }
    let cap = replicas.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::with_capacity(cap);
    while it.next() {
        out.push(it.at());
    }
    out
}

/// Union of sorted sample lists by timestamp; on equal timestamps the
/// earlier list wins.
pub fn chain_merge(mut lists: Vec<Vec<(i64, f64)>>) -> Vec<(i64, f64)> {
    lists.retain(|l| !l.is_empty());
    match lists.len() {
        0 => return Vec::new(),
        1 => return lists.pop().unwrap_or_default(),
        _ => {}
    }
    let mut all: Vec<(i64, usize, f64)> = lists
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.iter().map(move |&(t, v)| (t, i, v)))
        .collect();
    all.sort_by_key(|a| (a.0, a.1));
    all.dedup_by_key(|s| s.0);
    all.into_iter().map(|(t, _, v)| (t, v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(from: i64, to: i64, step: i64, v: impl Fn(i64) -> f64) -> Vec<(i64, f64)> {
        (0..)
            .map(|i| from + i * step)
            .take_while(|t| *t <= to)
            .map(|t| (t, v(t)))
            .collect()
    }

    #[test]
    fn identical_replicas_give_one() {
        let a = series(0, 100_000, 15_000, |t| t as f64);
        let out = penalty_merge(&[a.clone(), a.clone()], false);
        assert_eq!(out, a);
    }

    #[test]
    fn gap_in_one_replica_is_filled_from_the_other() {
        // A misses 60s..=180s; B scrapes 1s later than A.
        let full_a = series(0, 300_000, 15_000, |_| 1.0);
        let a: Vec<_> = full_a
            .iter()
            .copied()
            .filter(|(t, _)| *t < 60_000 || *t > 180_000)
            .collect();
        let b = series(1_000, 300_000, 15_000, |_| 2.0);
        let out = penalty_merge(&[a, b], false);
        // The switch happens once A's gap exceeds B's penalty (2 × 15s):
        // the largest hole is about two scrape intervals, which an instant
        // selector's 5m lookback bridges.
        let max_gap = out.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap();
        assert_eq!(max_gap, 31_000, "{out:?}");
        // Starts on A, switches to B in the gap, and (penalty) stays on B.
        assert_eq!(out[0], (0, 1.0));
        assert!(out.iter().any(|s| s.1 == 2.0));
        assert_eq!(out.last().unwrap().1, 2.0);
        // Strictly increasing timestamps.
        assert!(out.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn counter_switch_does_not_create_a_reset() {
        // A counts from 100, then dies at 60s; B restarted and counts from 0.
        let a = series(0, 60_000, 15_000, |t| 100.0 + (t / 1000) as f64);
        let b = series(1_000, 180_000, 15_000, |t| (t / 1000) as f64);
        let out = penalty_merge(&[a.clone(), b.clone()], true);
        assert!(out.windows(2).all(|w| w[1].1 >= w[0].1), "{out:?}");
        // Without the counter adjustment the switch goes down.
        let plain = penalty_merge(&[a, b], false);
        assert!(plain.windows(2).any(|w| w[1].1 < w[0].1));
    }

    #[test]
    fn three_replicas_fold() {
        let a = series(0, 50_000, 10_000, |_| 1.0);
        let b = series(60_000, 120_000, 10_000, |_| 2.0);
        let c = series(130_000, 200_000, 10_000, |_| 3.0);
        let out = penalty_merge(&[a, b, c], false);
        assert!(out.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(out[0], (0, 1.0));
        assert_eq!(*out.last().unwrap(), (200_000, 3.0));
        // After A ends, B's penalty (2 × 10s) skips B's first two samples,
        // exactly as Thanos' iterator does.
        assert!(out.contains(&(80_000, 2.0)) && !out.contains(&(60_000, 2.0)));
    }

    #[test]
    fn chain_is_a_union() {
        let out = chain_merge(vec![vec![(1, 1.0), (3, 1.0)], vec![(2, 2.0), (3, 2.0)]]);
        assert_eq!(out, vec![(1, 1.0), (2, 2.0), (3, 1.0)]);
    }

    #[test]
    fn overlap_split_separates_replicas() {
        let c = |min, max| AggrChunk {
            min_time: min,
            max_time: max,
            ..Default::default()
        };
        let r = overlap_split(vec![c(0, 10), c(1, 11), c(12, 20), c(13, 21)]);
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0].iter().map(|c| c.min_time).collect::<Vec<_>>(),
            vec![0, 12]
        );
        assert_eq!(
            r[1].iter().map(|c| c.min_time).collect::<Vec<_>>(),
            vec![1, 13]
        );
    }
}
