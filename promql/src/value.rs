//! Query results as callers see them, plus the engine's internal
//! evaluation values.
//!
//! The public types ([`Sample`], [`Series`], [`Value`]) own their labels so a
//! result can outlive the query. Internally the evaluator shares label sets
//! through `Arc<Labels>`: one series flows through many steps and operators,
//! and cloning a refcount is far cheaper than cloning a label vector.

use std::sync::Arc;

use strata_tsdb::labels::Labels;

use crate::histogram::FloatHistogram;

/// The bit pattern Prometheus uses for staleness markers. It is a NaN, so it
/// must be compared by bits, never with `==`.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `f` is a staleness marker (and not just any NaN).
#[inline]
pub fn is_stale_nan(f: f64) -> bool {
    f.to_bits() == STALE_NAN_BITS
}

/// The staleness marker as a float.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// One element of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub metric: Labels,
    /// Timestamp in milliseconds.
    pub t: i64,
    /// The float value; meaningless (0) when `h` is set.
    pub f: f64,
    /// The native histogram value, if this sample is a histogram.
    pub h: Option<FloatHistogram>,
}

/// One element of a range vector (matrix).
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub metric: Labels,
    /// `(timestamp ms, value)` pairs, sorted by timestamp.
    pub floats: Vec<(i64, f64)>,
    /// `(timestamp ms, histogram)` pairs, sorted by timestamp. A timestamp
    /// appears in `floats` or here, never in both.
    pub histograms: Vec<(i64, FloatHistogram)>,
}

/// The result of a query.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `(timestamp ms, value)`.
    Scalar(i64, f64),
    /// `(timestamp ms, value)`.
    String(i64, String),
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
}

impl Value {
    /// The Prometheus API name of the value type (`resultType`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(..) => "scalar",
            Value::String(..) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// Shared label set used inside the evaluator.
pub(crate) type Metric = Arc<Labels>;

/// A sample inside the evaluator. `drop_name` implements Prometheus 3.x's
/// delayed `__name__` removal: operators that would change the meaning of a
/// metric only mark it, and the name is removed when evaluation finishes (or
/// kept, if a later `label_replace` rewrote `__name__`).
#[derive(Clone, Debug)]
pub(crate) struct ESample {
    pub metric: Metric,
    pub t: i64,
    pub f: f64,
    /// Set for histogram samples (then `f` is unused).
    pub h: Option<Hist>,
    pub drop_name: bool,
}

/// A histogram shared between steps and operators.
pub(crate) type Hist = Arc<FloatHistogram>;

impl ESample {
    pub fn new(metric: Metric, f: f64) -> Self {
        ESample {
            metric,
            t: 0,
            f,
            h: None,
            drop_name: false,
        }
    }
}

/// A series inside the evaluator: one point per evaluation step at which the
/// series has a value (or the raw samples, for range-vector results).
#[derive(Clone, Debug)]
pub(crate) struct ESeries {
    pub metric: Metric,
    pub points: Vec<(i64, f64)>,
    /// Histogram points; a step has a float point or a histogram point.
    pub hists: Vec<(i64, Hist)>,
    pub drop_name: bool,
}

pub(crate) type Mat = Vec<ESeries>;

/// What evaluating one node yields. Scalars and instant vectors are both
/// represented as matrices over the evaluation steps (a scalar is a single
/// series with empty labels), exactly like Prometheus' evaluator does, so a
/// range query is just an instant query with more steps.
#[derive(Debug)]
pub(crate) enum EValue {
    Matrix(Mat),
    String(String),
}

pub(crate) fn total_points(m: &Mat) -> usize {
    m.iter()
        .map(|s| s.points.len() + s.hists.iter().map(|h| hist_size(&h.1)).sum::<usize>())
        .sum()
}

/// How many samples a histogram counts as for `max_samples`: like
/// Prometheus, its in-memory size in 16-byte units (`(Size()+8)/16`, where
/// `Size()` is a 168-byte struct plus 8 bytes per span, bucket and bound).
pub(crate) fn hist_size(h: &FloatHistogram) -> usize {
    let n = h.positive_buckets.len()
        + h.negative_buckets.len()
        + h.positive_spans.len()
        + h.negative_spans.len()
        + h.custom_values.len();
    (168 + 8 * n + 8) / 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_marker_is_recognised_by_bits() {
        assert!(is_stale_nan(stale_nan()));
        assert!(!is_stale_nan(f64::NAN));
        assert!(stale_nan().is_nan());
    }
}
