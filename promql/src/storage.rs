//! The storage interface the engine reads through, and an in-memory
//! implementation for tests and the promqltest harness.
//!
//! The engine never does IO itself: it is handed a [`Queryable`] and asks it
//! once per selector in the query for every series matching the selector's
//! matchers over the whole time range that selector can touch (see
//! `engine::prepare`). [`SelectHints`] carries the same planning information
//! Prometheus passes to its queriers, so a remote store can push down work.

use std::collections::BTreeMap;

use strata_tsdb::labels::{Labels, Matcher};

/// Planning hints for one `select` call, mirroring Prometheus' `SelectHints`.
#[derive(Clone, Debug, Default)]
pub struct SelectHints {
    /// First timestamp (ms) of samples needed, inclusive.
    pub start: i64,
    /// Last timestamp (ms) of samples needed, inclusive.
    pub end: i64,
    /// Evaluation step of the enclosing query or subquery (ms), 0 for instant queries.
    pub step: i64,
    /// Range of the enclosing range selector (ms), 0 for instant selectors.
    pub range: i64,
    /// Name of the innermost function or aggregation around the selector.
    pub func: Option<String>,
    /// True for `by (...)`, false for `without (...)` (meaningful with `grouping`).
    pub by: bool,
    /// Grouping labels of an enclosing aggregation.
    pub grouping: Vec<String>,
}

/// One series as storage returns it.
#[derive(Clone, Debug)]
pub struct StorageSeries {
    pub labels: Labels,
    /// Sorted by timestamp; staleness markers are included as ordinary samples.
    pub samples: Vec<(i64, f64)>,
}

/// The answer to one `select`.
#[derive(Clone, Debug, Default)]
pub struct SelectResult {
    pub series: Vec<StorageSeries>,
    /// Non-fatal problems (e.g. a partial response) passed on to the caller.
    pub warnings: Vec<String>,
}

/// A storage failure; it fails the query with error type `internal`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StorageError(pub String);

/// Something the engine can read series from.
pub trait Queryable: Send + Sync {
    /// Series matching all matchers with their samples in [hints.start, hints.end] (both inclusive), sorted by labels.
    fn select(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<SelectResult, StorageError>;
}

/// In-memory storage for tests and the promqltest harness.
///
/// Series are kept in a `BTreeMap` keyed by label set, which is exactly the
/// order `select` must return them in.
#[derive(Default)]
pub struct MemStorage {
    series: BTreeMap<Labels, Vec<(i64, f64)>>,
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample. A sample at an existing timestamp replaces the old
    /// value (so a test can overwrite a point), and out-of-order appends are
    /// inserted in place.
    pub fn add_sample(&mut self, labels: Labels, t: i64, v: f64) {
        let samples = self.series.entry(labels).or_default();
        match samples.last() {
            None => samples.push((t, v)),
            Some(&(last, _)) if t > last => samples.push((t, v)),
            _ => match samples.binary_search_by_key(&t, |s| s.0) {
                Ok(i) => samples[i].1 = v,
                Err(i) => samples.insert(i, (t, v)),
            },
        }
    }

    /// Drops all data.
    pub fn clear(&mut self) {
        self.series.clear();
    }

    /// Number of series held.
    pub fn num_series(&self) -> usize {
        self.series.len()
    }
}

impl Queryable for MemStorage {
    fn select(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<SelectResult, StorageError> {
        let mut out = SelectResult::default();
        for (labels, samples) in &self.series {
            let ok = matchers
                .iter()
                .all(|m| m.matches(labels.get(&m.name).unwrap_or("")));
            if !ok {
                continue;
            }
            let lo = samples.partition_point(|s| s.0 < hints.start);
            let hi = samples.partition_point(|s| s.0 <= hints.end);
            if lo >= hi {
                continue;
            }
            out.series.push(StorageSeries {
                labels: labels.clone(),
                samples: samples[lo..hi].to_vec(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_tsdb::labels::MatchType;

    #[test]
    fn select_filters_by_matchers_and_time() {
        let mut s = MemStorage::new();
        let a = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let b = Labels::from_pairs([("__name__", "up"), ("job", "b")]);
        for t in [30, 10, 20] {
            s.add_sample(a.clone(), t, t as f64);
        }
        s.add_sample(a.clone(), 20, 99.0);
        s.add_sample(b.clone(), 10, 1.0);
        let m = [
            Matcher::equal("__name__", "up"),
            Matcher::new(MatchType::Regex, "job", "a|c").unwrap(),
        ];
        let hints = SelectHints {
            start: 15,
            end: 30,
            ..Default::default()
        };
        let r = s.select(&m, &hints).unwrap();
        assert_eq!(r.series.len(), 1);
        assert_eq!(r.series[0].samples, vec![(20, 99.0), (30, 30.0)]);
        s.clear();
        assert_eq!(s.num_series(), 0);
    }
}
