//! Executing parsed commands against the engine, with upstream's extra
//! checks for every instant eval:
//!
//! 1. **`@` re-runs.** The query is rewritten with `@ <eval time>` on every
//!    selector and subquery not already carrying one (selectors inside a
//!    subquery are left alone: the subquery's `@` pins them), then run at
//!    other times — `-10t, 0, t/5, t, 10t`, or `-1s, 0, 1s` when `t = 0` —
//!    and must give the same result. Skipped when the query calls a function
//!    whose value depends on the evaluation time itself (`time()`,
//!    `timestamp()`, …), as upstream does.
//! 2. **Range consistency.** The query (and each `@` variant) is also run as
//!    a range query from `t-1m` to `t+1m` step `1m`; the middle step must
//!    equal the instant result. Skipped for string/range-vector expectations
//!    and queries using `start()`, `end()`, `range()` or `step()`.
//!
//! All of them belong to the same eval: it fails if any check fails, and the
//! reason names the check.
//!
//! Native histograms: the storage is float-only, so histogram samples are
//! dropped at load time and remembered. An eval whose selections reach such
//! a series (seen through a recording [`Queryable`] wrapper), or whose
//! expectation contains a histogram, fails with "native histograms not
//! supported" whatever the engine returned.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use promql_parser::parser::{AtModifier, Expr};
use regex::Regex;
use strata_tsdb::labels::{Labels, Matcher, METRIC_NAME};

use super::compare::{check_matrix_sorted, compare_result, View};
use super::parse::{Eval, ExpectKind, Load, TextMatch, TimeRange};
use super::series::SeqValue;
use super::text::parse_number;
use crate::{
    parse, Engine, EngineOptions, MemStorage, QueryError, QueryResult, Queryable, SelectHints,
    SelectResult, StorageError, Value,
};

/// The reason given for evals that need native histograms.
pub(crate) const NO_HISTOGRAMS: &str = "native histograms not supported";

/// Functions whose result changes with the evaluation time even when their
/// arguments do not (upstream's `AtModifierUnsafeFunctions`).
const AT_UNSAFE_FUNCTIONS: [&str; 15] = [
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "end",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "range",
    "start",
    "step",
    "time",
    "timestamp",
];

/// Step of the range-consistency re-run (and half its width).
const RANGE_CHECK_STEP: i64 = 60_000;

fn query_context_funcs() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(start|end|range|step)\(\)").expect("constant regex"))
}

fn position_suffix() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r" \(\d+:\d+\)$").expect("constant regex"))
}

/// A loaded series whose native-histogram samples were dropped.
struct HistogramSeries {
    labels: Labels,
    timestamps: Vec<i64>,
}

/// The state of one test file's run: engine, storage and what was skipped.
pub(crate) struct Runner<'e> {
    engine: &'e Engine,
    storage: MemStorage,
    histograms: Vec<HistogramSeries>,
}

impl<'e> Runner<'e> {
    pub fn new(engine: &'e Engine) -> Self {
        Runner {
            engine,
            storage: MemStorage::new(),
            histograms: Vec::new(),
        }
    }

    /// `clear`: a fresh, empty storage.
    pub fn clear(&mut self) {
        self.storage.clear();
        self.histograms.clear();
    }

    /// Appends a load's samples: value `i` at `i * step`.
    pub fn load(&mut self, load: &Load) {
        for s in &load.series {
            let mut hist_ts = Vec::new();
            for (i, v) in s.values.iter().enumerate() {
                let Some(t) = load.step.checked_mul(i as i64) else {
                    break;
                };
                match v {
                    SeqValue::Float(f) => self.storage.add_sample(s.labels.clone(), t, *f),
                    SeqValue::Histogram => hist_ts.push(t),
                    SeqValue::Omitted => {}
                }
            }
            self.note_histograms(&s.labels, hist_ts);
        }
        if load.with_nhcb {
            self.note_nhcb(load);
        }
    }

    fn note_histograms(&mut self, labels: &Labels, mut ts: Vec<i64>) {
        if ts.is_empty() {
            return;
        }
        match self.histograms.iter_mut().find(|h| h.labels == *labels) {
            Some(h) => h.timestamps.append(&mut ts),
            None => self.histograms.push(HistogramSeries {
                labels: labels.clone(),
                timestamps: ts,
            }),
        }
    }

    /// `load_with_nhcb` also stores each classic histogram (`_bucket` with a
    /// numeric `le`, `_count`, `_sum`) as a native histogram with custom
    /// buckets under the base name, without `le`, at every timestamp of its
    /// float samples. Those series cannot be stored here: remember them.
    fn note_nhcb(&mut self, load: &Load) {
        for s in &load.series {
            let name = s.labels.metric_name();
            let base = if let Some(b) = name.strip_suffix("_bucket") {
                let le_ok = s
                    .labels
                    .get("le")
                    .and_then(parse_number)
                    .is_some_and(|le| !le.is_nan());
                if !le_ok {
                    continue;
                }
                b
            } else if let Some(b) = name
                .strip_suffix("_sum")
                .or_else(|| name.strip_suffix("_count"))
            {
                b
            } else {
                continue;
            };
            let labels = Labels::from_pairs(
                s.labels
                    .iter()
                    .filter(|l| &*l.name != "le" && &*l.name != METRIC_NAME)
                    .map(|l| (l.name.to_string(), l.value.to_string()))
                    .chain([(METRIC_NAME.to_string(), base.to_string())]),
            );
            let ts: Vec<i64> = s
                .values
                .iter()
                .enumerate()
                .filter(|(_, v)| matches!(v, SeqValue::Float(_)))
                .filter_map(|(i, _)| load.step.checked_mul(i as i64))
                .collect();
            self.note_histograms(&labels, ts);
        }
    }

    /// Runs one eval with all its checks; `Err` is the first failure.
    pub fn eval(&self, ev: &Eval) -> Result<(), String> {
        if ev.expects_histogram() {
            return Err(format!(
                "{NO_HISTOGRAMS}: the expected result contains a native histogram"
            ));
        }
        let q = Tracking {
            inner: &self.storage,
            histograms: &self.histograms,
            margin: self.engine.options().lookback_delta,
            hit: Mutex::new(None),
        };
        let res = match ev.range {
            Some(r) => self.eval_range(ev, r, &q),
            None => self.eval_instant(ev, &q),
        };
        if let Some(l) = q.hit.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(format!(
                "{NO_HISTOGRAMS}: the query reads {l}, loaded with native histogram samples"
            ));
        }
        res
    }

    fn eval_range(&self, ev: &Eval, r: TimeRange, q: &dyn Queryable) -> Result<(), String> {
        match self.engine.range(q, &ev.expr, r.start, r.end, r.step) {
            Err(e) if ev.is_fail() => check_expected_failure(ev, &e),
            Err(e) => Err(format!("error evaluating range query: {e}")),
            Ok(_) if ev.is_fail() => {
                Err("expected an error evaluating the query but got none".into())
            }
            Ok(res) => {
                check_annotations(ev, &res)?;
                compare_result(ev, &View::of(&res.value))
            }
        }
    }

    fn eval_instant(&self, ev: &Eval, q: &dyn Queryable) -> Result<(), String> {
        self.run_instant(ev, &ev.expr, ev.at, q)?;
        let opts = self.engine.options();
        let cases = match at_modifier_cases(&ev.expr, ev.at, opts) {
            Ok(c) => c,
            // Reaching here with an unparsable query means the engine
            // failed it as the test expected; there is nothing to re-run.
            Err(_) if ev.is_fail() => return Ok(()),
            Err(e) => return Err(format!("cannot parse the query for the @ re-runs: {e}")),
        };
        for (query, t) in cases {
            self.run_instant(ev, &query, t, q)
                .map_err(|e| format!("@ re-run `{query}` at t={t}ms: {e}"))?;
        }
        Ok(())
    }

    /// One instant query and its range-consistency re-run.
    fn run_instant(&self, ev: &Eval, query: &str, t: i64, q: &dyn Queryable) -> Result<(), String> {
        let res = match self.engine.instant(q, query, t) {
            Err(e) if ev.is_fail() => return check_expected_failure(ev, &e),
            Err(e) => return Err(format!("error evaluating query: {e}")),
            Ok(_) if ev.is_fail() => {
                return Err("expected an error evaluating the query but got none".into())
            }
            Ok(r) => r,
        };
        check_annotations(ev, &res)?;
        compare_result(ev, &View::of(&res.value))?;
        if ev.exclude_from_range || query_context_funcs().is_match(query) {
            return Ok(());
        }
        let (Some(start), Some(end)) = (
            t.checked_sub(RANGE_CHECK_STEP),
            t.checked_add(RANGE_CHECK_STEP),
        ) else {
            return Ok(());
        };
        let what = "range-mode re-run (t-1m to t+1m, step 1m)";
        let rr = self
            .engine
            .range(q, query, start, end, RANGE_CHECK_STEP)
            .map_err(|e| format!("{what} failed: {e}"))?;
        // Range results are sorted by labels: an order cannot be checked.
        if ev.is_ordered() {
            return Ok(());
        }
        let Value::Matrix(m) = &rr.value else {
            return Err(format!(
                "{what} returned a {} instead of a matrix",
                value_type(&rr.value)
            ));
        };
        check_matrix_sorted(m).map_err(|e| format!("{what}: {e}"))?;
        let middle: Vec<(&Labels, f64)> = m
            .iter()
            .filter_map(|s| {
                s.floats
                    .iter()
                    .find(|(pt, _)| *pt == t)
                    .map(|(_, f)| (&s.metric, *f))
            })
            .collect();
        let checked = if matches!(res.value, Value::Scalar(..)) {
            match middle.first() {
                Some((_, f)) => compare_result(ev, &View::Scalar(*f)),
                None => Err(format!("no point at t={t}")),
            }
        } else {
            compare_result(ev, &View::Vector(middle))
        };
        checked.map_err(|e| format!("{what} differs at t={t}ms: {e}"))
    }
}

fn value_type(v: &Value) -> &'static str {
    match v {
        Value::Scalar(..) => "scalar",
        Value::String(..) => "string",
        Value::Vector(_) => "vector",
        Value::Matrix(_) => "matrix",
    }
}

/// Storage wrapper that notes the first histogram series a selection would
/// have returned had the storage been able to hold it.
struct Tracking<'a> {
    inner: &'a MemStorage,
    histograms: &'a [HistogramSeries],
    /// Widens the hinted window, in case an engine hints only the step
    /// times and not the lookback before them.
    margin: i64,
    hit: Mutex<Option<Labels>>,
}

impl Queryable for Tracking<'_> {
    fn select(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<SelectResult, StorageError> {
        // Default (all-zero) hints say nothing about time: assume any.
        let unbounded = hints.start == 0 && hints.end == 0;
        let lo = hints.start.saturating_sub(self.margin);
        let found = self.histograms.iter().find(|h| {
            matchers
                .iter()
                .all(|m| m.matches(h.labels.get(&m.name).unwrap_or("")))
                && (unbounded || h.timestamps.iter().any(|t| (lo..=hints.end).contains(t)))
        });
        if let Some(h) = found {
            let mut hit = self.hit.lock().unwrap_or_else(|e| e.into_inner());
            hit.get_or_insert_with(|| h.labels.clone());
        }
        self.inner.select(matchers, hints)
    }
}

/// The deprecated `expected_fail_*` lines and `expect fail msg:/regex:`.
fn check_expected_failure(ev: &Eval, err: &QueryError) -> Result<(), String> {
    let msg = err.to_string();
    if let Some(m) = &ev.expected_fail_message {
        if *m != msg {
            return Err(format!("expected error {m:?}, but got: {msg}"));
        }
    }
    if let Some(re) = &ev.expected_fail_regexp {
        if !re.is_match(&msg) {
            return Err(format!(
                "expected error matching pattern {:?}, but got: {msg}",
                re.as_str()
            ));
        }
    }
    if let Some(m) = ev.expects_of(ExpectKind::Fail).next() {
        if !m.matches(&msg) {
            return Err(format!(
                "expected error matching {}, but got: {msg}",
                m.describe()
            ));
        }
    }
    Ok(())
}

/// `expect warn|info|no_warn|no_info` and the deprecated `eval_warn/info`.
/// With any `expect warn` (`info`) line, every warning (info) must match
/// one of them and each of them must match some warning (info).
fn check_annotations(ev: &Eval, res: &QueryResult) -> Result<(), String> {
    if ev.warn && res.warnings.is_empty() {
        return Err("expected warnings but got none".into());
    }
    if ev.info && res.infos.is_empty() {
        return Err("expected info annotations but got none".into());
    }
    check_kind(ev, ExpectKind::Warn, &res.warnings, "warn")?;
    check_kind(ev, ExpectKind::Info, &res.infos, "info")?;
    if ev.has_expect(ExpectKind::NoWarn) && !res.warnings.is_empty() {
        return Err(format!(
            "unexpected warning annotations: {:?}",
            res.warnings
        ));
    }
    if ev.has_expect(ExpectKind::NoInfo) && !res.infos.is_empty() {
        return Err(format!("unexpected info annotations: {:?}", res.infos));
    }
    Ok(())
}

fn check_kind(ev: &Eval, kind: ExpectKind, got: &[String], name: &str) -> Result<(), String> {
    let expected: Vec<&TextMatch> = ev.expects_of(kind).collect();
    if expected.is_empty() {
        return Ok(());
    }
    if got.is_empty() {
        return Err(format!("expected {name} annotations but none were found"));
    }
    for e in &expected {
        if !got.iter().any(|g| e.matches(g)) {
            return Err(format!(
                "expected {name} annotation matching {} but no matching annotation was found, found: {got:?}{}",
                e.describe(),
                position_hint(e, got)
            ));
        }
    }
    for g in got {
        if !expected.iter().any(|e| e.matches(g)) {
            return Err(format!("unexpected {name} annotation {g:?}"));
        }
    }
    Ok(())
}

/// Test files write annotations with upstream's ` (line:col)` suffix; say
/// so when that is the only difference.
fn position_hint(e: &TextMatch, got: &[String]) -> &'static str {
    if let TextMatch::Exact(m) = e {
        let bare = position_suffix().replace(m, "");
        if bare != *m && got.iter().any(|g| *g == bare) {
            return " (only the ` (line:col)` position suffix differs)";
        }
    }
    ""
}

/// The `@` variants of an instant query: `(query, eval time)` pairs, empty
/// when the query must not be rewritten. The rewritten text is checked to
/// parse again; if the parser cannot print it back faithfully the re-runs are
/// skipped rather than blamed on the engine.
pub(crate) fn at_modifier_cases(
    expr: &str,
    t: i64,
    opts: &EngineOptions,
) -> Result<Vec<(String, i64)>, String> {
    let mut ast = parse(expr, opts).map_err(|e| e.to_string())?;
    if t < 0 {
        // `@` before 1970 does not print back (promql-parser limitation).
        return Ok(Vec::new());
    }
    let at = UNIX_EPOCH + Duration::from_millis(t as u64);
    let mut rewrite = Rewrite {
        at,
        unsafe_fn: false,
        unsupported: false,
    };
    rewrite.walk(&mut ast);
    if rewrite.unsafe_fn || rewrite.unsupported {
        return Ok(Vec::new());
    }
    let query = ast.to_string();
    if parse(&query, opts).is_err() {
        return Ok(Vec::new());
    }
    let times: Vec<i64> = if t == 0 {
        vec![-1000, 0, 1000]
    } else {
        [
            t.checked_mul(-10),
            Some(0),
            Some(t / 5),
            Some(t),
            t.checked_mul(10),
        ]
        .into_iter()
        .flatten()
        .collect()
    };
    Ok(times.into_iter().map(|et| (query.clone(), et)).collect())
}

struct Rewrite {
    at: std::time::SystemTime,
    unsafe_fn: bool,
    unsupported: bool,
}

impl Rewrite {
    fn walk(&mut self, e: &mut Expr) {
        match e {
            Expr::Aggregate(a) => {
                self.walk(&mut a.expr);
                if let Some(p) = &mut a.param {
                    self.walk(p);
                }
            }
            Expr::Unary(u) => self.walk(&mut u.expr),
            Expr::Binary(b) => {
                self.walk(&mut b.lhs);
                self.walk(&mut b.rhs);
            }
            Expr::Paren(p) => self.walk(&mut p.expr),
            // Not descending: with its `@` (set now or already), the subquery
            // pins everything inside it, and upstream leaves the inside alone.
            Expr::Subquery(s) => {
                s.at.get_or_insert(AtModifier::At(self.at));
            }
            Expr::VectorSelector(vs) => {
                vs.at.get_or_insert(AtModifier::At(self.at));
            }
            Expr::MatrixSelector(ms) => {
                ms.vs.at.get_or_insert(AtModifier::At(self.at));
            }
            Expr::Call(c) => {
                self.unsafe_fn |= AT_UNSAFE_FUNCTIONS.contains(&c.func.name);
                for a in &mut c.args.args {
                    self.walk(a);
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
            Expr::Extension(_) => self.unsupported = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promqltest::harness_options;

    #[test]
    fn at_cases_rewrite_selectors_and_subqueries() {
        let o = harness_options();
        let c = at_modifier_cases("sum(rate(x[5m])) + y offset 1m", 60_000, &o).unwrap();
        let times: Vec<i64> = c.iter().map(|(_, t)| *t).collect();
        assert_eq!(times, [-600_000, 0, 12_000, 60_000, 600_000]);
        let q = &c[0].0;
        assert!(q.contains("x[5m] @ 60.000"), "{q}");
        assert!(q.contains("y @ 60.000 offset 1m"), "{q}");
        let c = at_modifier_cases("x", 0, &o).unwrap();
        assert_eq!(
            c.iter().map(|(_, t)| *t).collect::<Vec<_>>(),
            [-1000, 0, 1000]
        );
        // Selectors inside a subquery are pinned by the subquery's `@`.
        let c = at_modifier_cases("max_over_time(x[5m:1m])", 120_000, &o).unwrap();
        assert_eq!(c[0].0, "max_over_time(x[5m:1m] @ 120.000)");
        // An existing `@` is kept.
        let c = at_modifier_cases("x @ 10 + y", 120_000, &o).unwrap();
        assert!(
            c[0].0.contains("x @ 10.000") && c[0].0.contains("y @ 120.000"),
            "{}",
            c[0].0
        );
    }

    #[test]
    fn at_cases_skip_time_dependent_functions() {
        let o = harness_options();
        for q in [
            "time()",
            "timestamp(x)",
            "hour(x)",
            "predict_linear(x[5m], 60)",
            "x + step()",
        ] {
            assert!(at_modifier_cases(q, 60_000, &o).unwrap().is_empty(), "{q}");
        }
        assert!(at_modifier_cases("sum(", 0, &o).is_err());
    }

    #[test]
    fn query_context_pattern() {
        assert!(query_context_funcs().is_match("x + range()"));
        assert!(query_context_funcs().is_match("step() * 2"));
        assert!(!query_context_funcs().is_match("rate(x[5m])"));
    }

    #[test]
    fn position_suffix_hint() {
        let e = TextMatch::Exact("PromQL warning: x (1:5)".into());
        assert_ne!(position_hint(&e, &["PromQL warning: x".into()]), "");
        assert_eq!(position_hint(&e, &["PromQL warning: y".into()]), "");
    }
}
