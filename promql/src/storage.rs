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

use crate::histogram::FloatHistogram;

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
///
/// Float samples and native-histogram samples are kept in two sorted lists
/// (as Prometheus' `promql.Series` does) rather than one list of an enum, so
/// the many float-only paths stay as they are and a store without
/// histograms just leaves `histograms` empty. A timestamp is in at most one
/// of the lists; a staleness marker is always a float sample.
#[derive(Clone, Debug, Default)]
pub struct StorageSeries {
    pub labels: Labels,
    /// Sorted by timestamp; staleness markers are included as ordinary samples.
    pub samples: Vec<(i64, f64)>,
    /// Native histogram samples, sorted by timestamp.
    pub histograms: Vec<(i64, FloatHistogram)>,
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

    /// Every selector of one query at once, answers in request order. The
    /// engine plans all selectors before it evaluates anything (see
    /// `engine::prepare`) and hands them over here together, so a remote
    /// store can run them concurrently: a query with two selectors then
    /// waits for one fan-out round trip instead of two. The default asks
    /// [`Queryable::select`] one after another.
    fn select_many(
        &self,
        requests: &[SelectRequest<'_>],
    ) -> Vec<Result<SelectResult, StorageError>> {
        requests
            .iter()
            .map(|r| self.select(r.matchers, r.hints))
            .collect()
    }

    /// The names of the labels that partition this storage, when it is
    /// made of stores that can each evaluate a whole query over their own
    /// part (every series of a store carries the store's values of these
    /// labels, and no two stores share them). The engine then hands
    /// partition-local queries (see the `partition` module) to
    /// [`Queryable::eval_partitioned`]. `None` (the default): evaluate here.
    fn partition_labels(&self) -> Option<Vec<String>> {
        None
    }

    /// Evaluates a partition-local query on every partition and
    /// concatenates the answers. `None` when it cannot (a store lacks
    /// support, or the times do not fit its wire format): the engine then
    /// evaluates the query itself, as if this were never called.
    fn eval_partitioned(
        &self,
        _query: &PartitionedQuery<'_>,
    ) -> Option<Result<PartitionedResult, StorageError>> {
        None
    }
}

/// A whole query handed to a partitioned storage
/// ([`Queryable::eval_partitioned`]).
#[derive(Clone, Copy, Debug)]
pub struct PartitionedQuery<'a> {
    /// The query text, as the engine parsed it.
    pub query: &'a str,
    /// Evaluation times (ms): `start == end` and `step == 0` for an instant
    /// query.
    pub start: i64,
    pub end: i64,
    pub step: i64,
    /// The engine's lookback delta (ms).
    pub lookback: i64,
    /// The partition labels the query was found partition-local for; the
    /// storage must not send it to stores partitioned otherwise.
    pub labels: &'a [String],
    /// The engine's sample limit (0: none): an answer with more points is
    /// not accepted (the storage returns `None`, and the engine evaluates
    /// the query itself, enforcing its limit as usual).
    pub max_points: usize,
}

/// The concatenated answers of every partition to a [`PartitionedQuery`].
#[derive(Clone, Debug, Default)]
pub struct PartitionedResult {
    /// One entry per output series: its labels and float points (ms).
    pub series: Vec<(Labels, Vec<(i64, f64)>)>,
    /// Messages to report: the stores' annotations (`PromQL warning: …`,
    /// `PromQL info: …`) and failed stores under partial response.
    pub warnings: Vec<String>,
}

/// One selector of a [`Queryable::select_many`] batch.
#[derive(Clone, Copy, Debug)]
pub struct SelectRequest<'a> {
    pub matchers: &'a [Matcher],
    pub hints: &'a SelectHints,
}

/// In-memory storage for tests and the promqltest harness.
///
/// Series are kept in a `BTreeMap` keyed by label set, which is exactly the
/// order `select` must return them in.
///
/// Histogram samples are returned with the counter reset hint Prometheus'
/// TSDB would give them when reading them back from its chunks (see
/// [`chunk_hints`]), because query results (and the conformance tests)
/// depend on it.
#[derive(Default)]
pub struct MemStorage {
    series: BTreeMap<Labels, MemSeries>,
}

#[derive(Default)]
struct MemSeries {
    floats: Vec<(i64, f64)>,
    hists: Vec<(i64, FloatHistogram)>,
}

/// Inserts or replaces the point at `t` in a sorted list.
fn upsert<V>(v: &mut Vec<(i64, V)>, t: i64, x: V) {
    match v.last() {
        None => v.push((t, x)),
        Some(last) if t > last.0 => v.push((t, x)),
        _ => match v.binary_search_by_key(&t, |s| s.0) {
            Ok(i) => v[i].1 = x,
            Err(i) => v.insert(i, (t, x)),
        },
    }
}

fn remove_at<V>(v: &mut Vec<(i64, V)>, t: i64) {
    if let Ok(i) = v.binary_search_by_key(&t, |s| s.0) {
        v.remove(i);
    }
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample. A sample at an existing timestamp replaces the old
    /// value (so a test can overwrite a point), and out-of-order appends are
    /// inserted in place.
    pub fn add_sample(&mut self, labels: Labels, t: i64, v: f64) {
        let s = self.series.entry(labels).or_default();
        if !s.hists.is_empty() {
            remove_at(&mut s.hists, t);
        }
        upsert(&mut s.floats, t, v);
    }

    /// Adds one native histogram sample, replacing any sample at `t`.
    pub fn add_histogram(&mut self, labels: Labels, t: i64, h: FloatHistogram) {
        let s = self.series.entry(labels).or_default();
        if !s.floats.is_empty() {
            remove_at(&mut s.floats, t);
        }
        upsert(&mut s.hists, t, h);
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
        for (labels, s) in &self.series {
            let ok = matchers
                .iter()
                .all(|m| m.matches(labels.get(&m.name).unwrap_or("")));
            if !ok {
                continue;
            }
            let lo = s.floats.partition_point(|s| s.0 < hints.start);
            let hi = s.floats.partition_point(|s| s.0 <= hints.end);
            let hlo = s.hists.partition_point(|s| s.0 < hints.start);
            let hhi = s.hists.partition_point(|s| s.0 <= hints.end);
            if lo >= hi && hlo >= hhi {
                continue;
            }
            let histograms = if hlo < hhi {
                let mut all = s.hists.clone();
                chunk_hints(&mut all, &s.floats);
                all.drain(hlo..hhi).collect()
            } else {
                Vec::new()
            };
            out.series.push(StorageSeries {
                labels: labels.clone(),
                samples: s.floats[lo..hi].to_vec(),
                histograms,
            });
        }
        Ok(out)
    }
}

/// Sets the counter reset hints as Prometheus' TSDB reads them back.
///
/// The TSDB stores a counter histogram series in chunks: a new chunk starts
/// at the first sample, after a float sample, on a detected counter reset
/// (or an explicit "reset" hint) and on a schema, zero-threshold or custom
/// bounds change. Reading returns "unknown" for a chunk's first sample (the
/// TSDB cannot trust the chunk header, prometheus/prometheus#15346) and
/// "not reset" for every later one. Gauge histograms always read as gauges.
pub(crate) fn chunk_hints(hists: &mut [(i64, FloatHistogram)], floats: &[(i64, f64)]) {
    use crate::histogram::{custom_bounds_match, CounterResetHint as H};
    let mut prev: Option<FloatHistogram> = None;
    // Floats before the current histogram (a forward-only cursor).
    let mut fi = 0;
    for (t, h) in hists.iter_mut() {
        // A float sample in between starts a new chunk.
        let before = fi;
        while fi < floats.len() && floats[fi].0 < *t {
            fi += 1;
        }
        if fi > before {
            prev = None;
        }
        let input = h.counter_reset_hint;
        let hint = if input == H::Gauge {
            H::Gauge
        } else {
            match &prev {
                Some(p) if p.counter_reset_hint != H::Gauge => {
                    let new_chunk = input == H::Reset
                        || h.count < p.count
                        || h.schema != p.schema
                        || h.zero_threshold != p.zero_threshold
                        || (h.uses_custom_buckets()
                            && !custom_bounds_match(&h.custom_values, &p.custom_values))
                        || {
                            let mut a = h.clone();
                            a.counter_reset_hint = H::Unknown;
                            a.detect_reset(p)
                        };
                    if new_chunk {
                        H::Unknown
                    } else {
                        H::NotReset
                    }
                }
                _ => H::Unknown,
            }
        };
        let mut raw = h.clone();
        raw.counter_reset_hint = if input == H::Gauge {
            H::Gauge
        } else {
            H::Unknown
        };
        prev = Some(raw);
        h.counter_reset_hint = hint;
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

    #[test]
    fn histogram_hints_follow_tsdb_chunks() {
        use crate::histogram::{CounterResetHint as H, FloatHistogram};
        let h = |count: f64, hint: H| FloatHistogram {
            count,
            counter_reset_hint: hint,
            ..Default::default()
        };
        let mut s = MemStorage::new();
        let l = Labels::from_pairs([("__name__", "h")]);
        // 1, 2 (same chunk), 1 (reset: new chunk), 2, float, 3 (new chunk after a float).
        for (t, c) in [(1, 1.0), (2, 2.0), (3, 1.0), (4, 2.0), (6, 3.0)] {
            s.add_histogram(l.clone(), t, h(c, H::Unknown));
        }
        s.add_sample(l.clone(), 5, 7.0);
        let g = Labels::from_pairs([("__name__", "g")]);
        s.add_histogram(g.clone(), 1, h(1.0, H::Gauge));
        s.add_histogram(g.clone(), 2, h(0.0, H::Gauge));
        let hints = SelectHints {
            start: 0,
            end: 10,
            ..Default::default()
        };
        let r = s
            .select(&[Matcher::equal("__name__", "h")], &hints)
            .unwrap();
        let got: Vec<H> = r.series[0]
            .histograms
            .iter()
            .map(|x| x.1.counter_reset_hint)
            .collect();
        assert_eq!(
            got,
            [H::Unknown, H::NotReset, H::Unknown, H::NotReset, H::Unknown]
        );
        assert_eq!(r.series[0].samples, vec![(5, 7.0)]);
        let r = s
            .select(&[Matcher::equal("__name__", "g")], &hints)
            .unwrap();
        assert!(r.series[0]
            .histograms
            .iter()
            .all(|x| x.1.counter_reset_hint == H::Gauge));
        // A histogram replaces a float at the same timestamp and vice versa.
        s.add_histogram(l.clone(), 5, h(9.0, H::Unknown));
        let r = s
            .select(&[Matcher::equal("__name__", "h")], &hints)
            .unwrap();
        assert!(r.series[0].samples.is_empty());
        assert_eq!(r.series[0].histograms.len(), 6);
    }
}
