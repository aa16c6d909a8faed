//! Result matching, as upstream's `compareResult` and `almost.Equal`.
//!
//! Series are matched by their exact label set; missing and unexpected series
//! both fail. Floats match within a relative epsilon of 1e-6, NaN matches
//! NaN, but the staleness marker only matches itself (it is a NaN too, and
//! must not hide a real NaN or vice versa). Timestamps of matrix points must
//! be exact; instant-vector sample timestamps are not checked (upstream does
//! not either). Each function returns the first difference as the reason.

use std::collections::HashMap;

use strata_tsdb::labels::Labels;

use super::parse::{Eval, Expected, ExpectedSeries};
use super::series::{SeqValue, STALE_NAN_BITS};
use super::text::format_float;
use crate::histogram::FloatHistogram;
use crate::{Series, Value};

/// Relative error allowed between expected and actual floats.
pub(crate) const EPSILON: f64 = 1e-6;

/// How many elements of a result a failure message shows.
const SHOW_MAX: usize = 5;

pub(crate) fn is_stale_nan(f: f64) -> bool {
    f.to_bits() == STALE_NAN_BITS
}

/// `almost.Equal`: relative comparison, NaN == NaN, StaleNaN only with
/// StaleNaN, and an absolute test near zero (where relative error is
/// meaningless) against `epsilon * f64::MIN_POSITIVE`.
pub(crate) fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    if is_stale_nan(a) || is_stale_nan(b) {
        return is_stale_nan(a) && is_stale_nan(b);
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < epsilon * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// Formats a float for messages; the staleness marker is named as such.
pub(crate) fn fmt_value(f: f64) -> String {
    if is_stale_nan(f) {
        "StaleNaN".into()
    } else {
        format_float(f)
    }
}

/// A borrowed view of a result: the engine's [`Value`] or an instant vector
/// rebuilt from a range query (for the range-consistency check).
pub(crate) enum View<'a> {
    Scalar(f64),
    Str(&'a str),
    /// Labels, float value, histogram value (then the float is unused).
    Vector(Vec<(&'a Labels, f64, Option<&'a FloatHistogram>)>),
    Matrix(&'a [Series]),
}

impl<'a> View<'a> {
    pub fn of(v: &'a Value) -> Self {
        match v {
            Value::Scalar(_, f) => View::Scalar(*f),
            Value::String(_, s) => View::Str(s),
            Value::Vector(v) => {
                View::Vector(v.iter().map(|s| (&s.metric, s.f, s.h.as_ref())).collect())
            }
            Value::Matrix(m) => View::Matrix(m),
        }
    }
}

/// A float or histogram sample value for messages.
fn fmt_sample(f: f64, h: Option<&FloatHistogram>) -> String {
    match h {
        Some(h) => h.test_expression(),
        None => fmt_value(f),
    }
}

/// Whether an expected histogram matches a result histogram, as upstream's
/// `compareNativeHistogram` (both compacted, floats within epsilon, the
/// counter reset hint only when the test file gave one).
fn hist_matches(want: &FloatHistogram, got: &FloatHistogram, hint_set: bool) -> bool {
    want.almost_equal(got, |a, b| almost_equal(a, b, EPSILON), hint_set)
}

type VecElem<'a> = (&'a Labels, f64, Option<&'a FloatHistogram>);

fn fmt_vector(v: &[VecElem<'_>]) -> String {
    let mut parts: Vec<String> = v
        .iter()
        .take(SHOW_MAX)
        .map(|(l, f, h)| format!("{l} => {}", fmt_sample(*f, *h)))
        .collect();
    if v.len() > SHOW_MAX {
        parts.push(format!("… ({} in all)", v.len()));
    }
    format!("[{}]", parts.join(", "))
}

pub(crate) fn fmt_points(points: &[(i64, f64)]) -> String {
    let mut parts: Vec<String> = points
        .iter()
        .take(SHOW_MAX * 2)
        .map(|(t, f)| format!("{} @[{t}]", fmt_value(*f)))
        .collect();
    if points.len() > SHOW_MAX * 2 {
        parts.push(format!("… ({} in all)", points.len()));
    }
    format!("[{}]", parts.join(" "))
}

fn fmt_hpoints(points: &[(i64, FloatHistogram)]) -> String {
    let parts: Vec<String> = points
        .iter()
        .take(SHOW_MAX)
        .map(|(t, h)| format!("{} @[{t}]", h.test_expression()))
        .collect();
    format!("[{}]", parts.join(" "))
}

fn fmt_series(s: &Series) -> String {
    let mut out = format!(
        "{} float point{} {}",
        s.floats.len(),
        if s.floats.len() == 1 { "" } else { "s" },
        fmt_points(&s.floats)
    );
    if !s.histograms.is_empty() {
        out.push_str(&format!(
            " and {} histogram point{} {}",
            s.histograms.len(),
            if s.histograms.len() == 1 { "" } else { "s" },
            fmt_hpoints(&s.histograms)
        ));
    }
    out
}

fn fmt_matrix(m: &[Series]) -> String {
    let mut parts: Vec<String> = m
        .iter()
        .take(SHOW_MAX)
        .map(|s| format!("{} => {}", s.metric, fmt_series(s)))
        .collect();
    if m.len() > SHOW_MAX {
        parts.push(format!("… ({} series in all)", m.len()));
    }
    parts.join("\n")
}

fn fmt_seq(vals: &[SeqValue]) -> String {
    let parts: Vec<String> = vals
        .iter()
        .map(|v| match v {
            SeqValue::Omitted => "_".into(),
            SeqValue::Float(f) => fmt_value(*f),
            SeqValue::Histogram(h, _) => h.test_expression(),
        })
        .collect();
    parts.join(" ")
}

/// Upstream requires range results sorted by labels.
pub(crate) fn check_matrix_sorted(m: &[Series]) -> Result<(), String> {
    for (i, w) in m.windows(2).enumerate() {
        if w[0].metric > w[1].metric {
            return Err(format!(
                "matrix results should always be sorted by labels, but matrix is not sorted: series at index {} with labels {} sorts before series at index {i} with labels {}",
                i + 1,
                w[1].metric,
                w[0].metric
            ));
        }
    }
    Ok(())
}

/// Compares a result with the eval's expectation.
pub(crate) fn compare_result(ev: &Eval, got: &View<'_>) -> Result<(), String> {
    let expected_series: &[ExpectedSeries] = match &ev.expected {
        Expected::Series(s) => s,
        Expected::Scalar(_) => &[],
    };
    let by_labels: HashMap<&Labels, &ExpectedSeries> =
        expected_series.iter().map(|e| (&e.labels, e)).collect();
    match (got, &ev.expected) {
        (View::Str(s), _) => {
            if ev.expected_string != *s {
                return Err(format!(
                    "expected string {:?} but got {s:?}",
                    ev.expected_string
                ));
            }
            Ok(())
        }
        (View::Scalar(f), Expected::Scalar(want)) => {
            if !almost_equal(*want, *f, EPSILON) {
                return Err(format!(
                    "expected scalar {} but got {}",
                    fmt_value(*want),
                    fmt_value(*f)
                ));
            }
            Ok(())
        }
        (View::Scalar(f), Expected::Series(_)) => Err(format!(
            "expected vector or matrix result, but got scalar {}",
            fmt_value(*f)
        )),
        (View::Vector(v), Expected::Scalar(_)) => Err(format!(
            "expected scalar result, but got vector {}",
            fmt_vector(v)
        )),
        (View::Matrix(m), Expected::Scalar(_)) => Err(format!(
            "expected scalar result, but got matrix {}",
            fmt_matrix(m)
        )),
        (View::Vector(v), Expected::Series(_)) => compare_vector(ev, v, &by_labels),
        (View::Matrix(m), Expected::Series(_)) => compare_matrix(ev, m, &by_labels),
    }
}

fn compare_vector(
    ev: &Eval,
    v: &[VecElem<'_>],
    expected: &HashMap<&Labels, &ExpectedSeries>,
) -> Result<(), String> {
    for (i, (labels, f, h)) in v.iter().enumerate() {
        let Some(exp) = expected.get(labels) else {
            return Err(format!(
                "unexpected metric {labels} in result, has value {}",
                fmt_sample(*f, *h)
            ));
        };
        if ev.is_ordered() && exp.pos != i + 1 {
            return Err(format!(
                "expected metric {labels} with [{}] at position {} but was at {}",
                fmt_seq(&exp.values),
                exp.pos,
                i + 1
            ));
        }
        match (exp.values.first(), h) {
            (Some(SeqValue::Float(want)), Some(h)) => {
                return Err(format!(
                    "expected float value {} for {labels} but got histogram {}",
                    fmt_value(*want),
                    h.test_expression()
                ))
            }
            (Some(SeqValue::Histogram(want, hint_set)), Some(h)) => {
                if !hist_matches(want, h, *hint_set) {
                    return Err(format!(
                        "expected {} for {labels} but got {}",
                        want.test_expression(),
                        h.test_expression()
                    ));
                }
            }
            (Some(SeqValue::Float(want)), None) => {
                if !almost_equal(*want, *f, EPSILON) {
                    return Err(format!(
                        "expected {} for {labels} but got {}",
                        fmt_value(*want),
                        fmt_value(*f)
                    ));
                }
            }
            (Some(SeqValue::Histogram(want, _)), None) => {
                return Err(format!(
                    "expected histogram {} for {labels} but got float value {}",
                    want.test_expression(),
                    fmt_value(*f)
                ))
            }
            (Some(SeqValue::Omitted) | None, _) => {
                return Err(format!(
                    "expected no sample for {labels} but got {}",
                    fmt_sample(*f, *h)
                ))
            }
        }
    }
    for exp in expected.values() {
        if !v.iter().any(|(l, _, _)| *l == &exp.labels) {
            return Err(format!(
                "expected metric {} with [{}] not found (result: {})",
                exp.labels,
                fmt_seq(&exp.values),
                fmt_vector(v)
            ));
        }
    }
    Ok(())
}

fn compare_matrix(
    ev: &Eval,
    m: &[Series],
    expected: &HashMap<&Labels, &ExpectedSeries>,
) -> Result<(), String> {
    if ev.is_ordered() {
        return Err("expected ordered result, but query returned a matrix".into());
    }
    check_matrix_sorted(m)?;
    // The grid expected values sit on: the range eval's, or `expect range
    // vector`'s. A plain instant eval has none, so any expected point fails,
    // as upstream (whose end time is then the zero time).
    let grid = ev.range.or(ev.expect_range);
    for s in m {
        let Some(exp) = expected.get(&s.metric) else {
            return Err(format!(
                "unexpected metric {} in result, has {}",
                s.metric,
                fmt_series(s)
            ));
        };
        let mut want: Vec<(i64, f64)> = Vec::new();
        let mut want_h: Vec<(i64, &FloatHistogram, bool)> = Vec::new();
        for (i, v) in exp.values.iter().enumerate() {
            let t = grid.and_then(|g| {
                let t = g.start.checked_add(g.step.checked_mul(i as i64)?)?;
                (t <= g.end).then_some(t)
            });
            let Some(t) = t else {
                return Err(format!(
                    "expected {} points for {}, but query time range cannot return this many points",
                    exp.values.len(),
                    s.metric
                ));
            };
            match v {
                SeqValue::Float(f) => want.push((t, *f)),
                SeqValue::Omitted => {}
                SeqValue::Histogram(h, hint_set) => want_h.push((t, h, *hint_set)),
            }
        }
        if want.len() != s.floats.len() || want_h.len() != s.histograms.len() {
            return Err(format!(
                "expected {} float points and {} histogram points for {}, but got {} (expected {})",
                want.len(),
                want_h.len(),
                s.metric,
                fmt_series(s),
                fmt_points(&want)
            ));
        }
        for (i, ((wt, wh, hint_set), (gt, gh))) in want_h.iter().zip(&s.histograms).enumerate() {
            if wt != gt {
                return Err(format!(
                    "expected histogram value at index {i} for {} to have timestamp {wt}, but it had timestamp {gt} (result has {})",
                    s.metric,
                    fmt_series(s)
                ));
            }
            if !hist_matches(wh, gh, *hint_set) {
                return Err(format!(
                    "expected histogram value at index {i} (t={gt}) for {} to be {}, but got {} (result has {})",
                    s.metric,
                    wh.test_expression(),
                    gh.test_expression(),
                    fmt_series(s)
                ));
            }
        }
        for (i, ((wt, wf), (gt, gf))) in want.iter().zip(&s.floats).enumerate() {
            if wt != gt {
                return Err(format!(
                    "expected float value at index {i} for {} to have timestamp {wt}, but it had timestamp {gt} (result has {})",
                    s.metric,
                    fmt_series(s)
                ));
            }
            if !almost_equal(*wf, *gf, EPSILON) {
                return Err(format!(
                    "expected float value at index {i} (t={gt}) for {} to be {}, but got {} (result has {})",
                    s.metric,
                    fmt_value(*wf),
                    fmt_value(*gf),
                    fmt_series(s)
                ));
            }
        }
    }
    for exp in expected.values() {
        if !m.iter().any(|s| s.metric == exp.labels) {
            return Err(format!("expected metric {} not found", exp.labels));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::parse::{parse_file, Command};
    use super::*;

    const STALE: f64 = f64::from_bits(STALE_NAN_BITS);

    #[test]
    fn epsilon_rules() {
        assert!(almost_equal(1.0, 1.0, EPSILON));
        assert!(almost_equal(1.0, 1.0 + 1e-7, EPSILON));
        assert!(!almost_equal(1.0, 1.0 + 1e-5, EPSILON));
        assert!(almost_equal(1e300, 1e300 * (1.0 + 1e-7), EPSILON));
        assert!(!almost_equal(100.0, 100.001, EPSILON));
        assert!(almost_equal(-3.0, -3.000_000_1, EPSILON));
        assert!(!almost_equal(1.0, -1.0, EPSILON));
        // Near zero the test is absolute, against a subnormal-scale bound.
        assert!(almost_equal(0.0, 0.0, EPSILON));
        assert!(almost_equal(0.0, -0.0, EPSILON));
        assert!(!almost_equal(0.0, 1e-20, EPSILON));
        assert!(!almost_equal(0.0, f64::MIN_POSITIVE, EPSILON));
        assert!(almost_equal(f64::INFINITY, f64::INFINITY, EPSILON));
        assert!(!almost_equal(f64::INFINITY, f64::NEG_INFINITY, EPSILON));
        assert!(!almost_equal(f64::INFINITY, f64::MAX, EPSILON));
    }

    #[test]
    fn nan_and_stale_nan() {
        assert!(almost_equal(f64::NAN, f64::NAN, EPSILON));
        assert!(almost_equal(f64::NAN, -f64::NAN, EPSILON));
        assert!(almost_equal(STALE, STALE, EPSILON));
        assert!(!almost_equal(STALE, f64::NAN, EPSILON));
        assert!(!almost_equal(f64::NAN, STALE, EPSILON));
        assert!(!almost_equal(STALE, 0.0, EPSILON));
        assert!(!almost_equal(f64::NAN, 1.0, EPSILON));
        assert_eq!(fmt_value(STALE), "StaleNaN");
    }

    fn eval(src: &str) -> Eval {
        match parse_file(src).into_iter().next() {
            Some(Command::Eval(e)) => *e,
            other => panic!("{other:?}"),
        }
    }

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn vectors() {
        let ev = eval("eval instant at 0 x\n  x{a=\"1\"} 1\n  x{a=\"2\"} NaN\n");
        let (a, b, c) = (
            l(&[("__name__", "x"), ("a", "1")]),
            l(&[("__name__", "x"), ("a", "2")]),
            l(&[("__name__", "x"), ("a", "3")]),
        );
        assert_eq!(
            compare_result(
                &ev,
                &View::Vector(vec![(&b, f64::NAN, None), (&a, 1.0000001, None)])
            ),
            Ok(())
        );
        let e = compare_result(
            &ev,
            &View::Vector(vec![(&a, 1.1, None), (&b, f64::NAN, None)]),
        )
        .unwrap_err();
        assert_eq!(e, r#"expected 1 for {__name__="x", a="1"} but got 1.1"#);
        let e = compare_result(&ev, &View::Vector(vec![(&a, 1.0, None), (&b, STALE, None)]))
            .unwrap_err();
        assert!(
            e.contains("expected NaN") && e.contains("got StaleNaN"),
            "{e}"
        );
        let e = compare_result(&ev, &View::Vector(vec![(&a, 1.0, None)])).unwrap_err();
        assert!(
            e.starts_with(r#"expected metric {__name__="x", a="2"} with [NaN] not found"#),
            "{e}"
        );
        let e = compare_result(
            &ev,
            &View::Vector(vec![(&a, 1.0, None), (&b, f64::NAN, None), (&c, 0.0, None)]),
        )
        .unwrap_err();
        assert!(e.starts_with("unexpected metric"), "{e}");
        let e = compare_result(&ev, &View::Scalar(1.0)).unwrap_err();
        assert!(e.starts_with("expected vector or matrix result"), "{e}");
        // An eval with no expected lines expects an empty vector.
        let empty = eval("eval instant at 0 x\n");
        assert_eq!(compare_result(&empty, &View::Vector(vec![])), Ok(()));
        assert!(compare_result(&empty, &View::Vector(vec![(&a, 1.0, None)])).is_err());
    }

    #[test]
    fn ordered_vectors() {
        let ev =
            eval("eval instant at 0 sort(x)\n  expect ordered\n  x{a=\"1\"} 1\n  x{a=\"2\"} 2\n");
        let (a, b) = (
            l(&[("__name__", "x"), ("a", "1")]),
            l(&[("__name__", "x"), ("a", "2")]),
        );
        assert_eq!(
            compare_result(&ev, &View::Vector(vec![(&a, 1.0, None), (&b, 2.0, None)])),
            Ok(())
        );
        let e =
            compare_result(&ev, &View::Vector(vec![(&b, 2.0, None), (&a, 1.0, None)])).unwrap_err();
        assert!(e.contains("at position 2 but was at 1"), "{e}");
        // Without `expect ordered` any order is fine.
        let un = eval("eval instant at 0 x\n  x{a=\"1\"} 1\n  x{a=\"2\"} 2\n");
        assert_eq!(
            compare_result(&un, &View::Vector(vec![(&b, 2.0, None), (&a, 1.0, None)])),
            Ok(())
        );
        let s = [Series {
            metric: a.clone(),
            floats: vec![(0, 1.0)],
            histograms: vec![],
        }];
        let e = compare_result(&ev, &View::Matrix(&s)).unwrap_err();
        assert!(e.contains("ordered"), "{e}");
    }

    #[test]
    fn scalars_and_strings() {
        let ev = eval("eval instant at 0 1\n  1.0000000001\n");
        assert_eq!(compare_result(&ev, &View::Scalar(1.0)), Ok(()));
        assert!(compare_result(&ev, &View::Scalar(2.0)).is_err());
        let x = l(&[("a", "b")]);
        let e = compare_result(&ev, &View::Vector(vec![(&x, 1.0, None)])).unwrap_err();
        assert!(
            e.starts_with("expected scalar result, but got vector"),
            "{e}"
        );
        let st = eval("eval instant at 0 \"a\"\n  expect string \"a\"\n");
        assert_eq!(compare_result(&st, &View::Str("a")), Ok(()));
        assert_eq!(
            compare_result(&st, &View::Str("b")).unwrap_err(),
            r#"expected string "a" but got "b""#
        );
    }

    #[test]
    fn matrices() {
        let ev =
            eval("eval range from 0 to 2m step 1m x\n  x{a=\"1\"} 1 _ 3\n  x{a=\"2\"} 1+1x2\n");
        let a = l(&[("__name__", "x"), ("a", "1")]);
        let b = l(&[("__name__", "x"), ("a", "2")]);
        // Built fresh each time: the engine's `Series` need not be `Clone`.
        let good = || {
            vec![
                Series {
                    metric: a.clone(),
                    floats: vec![(0, 1.0), (120_000, 3.0)],
                    histograms: vec![],
                },
                Series {
                    metric: b.clone(),
                    floats: vec![(0, 1.0), (60_000, 2.0), (120_000, 3.0)],
                    histograms: vec![],
                },
            ]
        };
        assert_eq!(compare_result(&ev, &View::Matrix(&good())), Ok(()));
        let mut bad = good();
        bad[0].floats[1].0 = 110_000;
        let e = compare_result(&ev, &View::Matrix(&bad)).unwrap_err();
        assert!(
            e.contains("to have timestamp 120000, but it had timestamp 110000"),
            "{e}"
        );
        let mut bad = good();
        bad[1].floats[2].1 = 4.0;
        let e = compare_result(&ev, &View::Matrix(&bad)).unwrap_err();
        assert!(
            e.contains("(t=120000)") && e.contains("to be 3, but got 4"),
            "{e}"
        );
        let mut bad = good();
        bad[0].floats.pop();
        assert!(compare_result(&ev, &View::Matrix(&bad))
            .unwrap_err()
            .starts_with("expected 2 float points"));
        let mut unsorted = good();
        unsorted.reverse();
        assert!(compare_result(&ev, &View::Matrix(&unsorted))
            .unwrap_err()
            .contains("not sorted"));
        assert!(compare_result(&ev, &View::Matrix(&good()[..1]))
            .unwrap_err()
            .contains("not found"));
        // More expected points than the range holds.
        let long = eval("eval range from 0 to 1m step 1m x\n  x 1 2 3\n");
        let s = vec![Series {
            metric: l(&[("__name__", "x")]),
            floats: vec![(0, 1.0), (60_000, 2.0)],
            histograms: vec![],
        }];
        assert!(compare_result(&long, &View::Matrix(&s))
            .unwrap_err()
            .contains("cannot return this many points"));
        // An instant eval returning a matrix needs `expect range vector`.
        let inst = eval("eval instant at 1m x[1m]\n  x 1\n");
        assert!(compare_result(&inst, &View::Matrix(&s))
            .unwrap_err()
            .contains("cannot return this many points"));
    }

    #[test]
    fn histograms_compare_after_compaction() {
        let ev = eval("eval instant at 0 h\n  h {{schema:0 count:3 sum:3 buckets:[1 2]}}\n");
        let l0 = l(&[("__name__", "h")]);
        // Same histogram with an explicit empty bucket and two spans.
        let got = FloatHistogram {
            count: 3.0,
            sum: 3.0000001,
            positive_spans: vec![
                crate::histogram::Span {
                    offset: 0,
                    length: 1,
                },
                crate::histogram::Span {
                    offset: 0,
                    length: 2,
                },
            ],
            positive_buckets: vec![1.0, 2.0, 0.0],
            ..Default::default()
        };
        assert_eq!(
            compare_result(&ev, &View::Vector(vec![(&l0, 0.0, Some(&got))])),
            Ok(())
        );
        let mut other = got.clone();
        other.positive_buckets[1] = 3.0;
        let e = compare_result(&ev, &View::Vector(vec![(&l0, 0.0, Some(&other))])).unwrap_err();
        assert!(e.contains("buckets:[1 3]"), "{e}");
        let e = compare_result(&ev, &View::Vector(vec![(&l0, 3.0, None)])).unwrap_err();
        assert!(e.starts_with("expected histogram"), "{e}");
    }
}
