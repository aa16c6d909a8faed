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
//! Native histograms are stored as they are loaded; `load_with_nhcb` also
//! stores every classic histogram as a native histogram with custom buckets
//! (see [`Runner::load`]).

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use promql_parser::parser::{AtModifier, Expr};
use regex::Regex;
use strata_tsdb::labels::{Labels, METRIC_NAME};

use super::compare::{check_matrix_sorted, compare_result, View};
use super::parse::{Eval, ExpectKind, Load, TextMatch, TimeRange};
use super::series::SeqValue;
use super::text::parse_number;
use crate::histogram::{FloatHistogram, Span, CUSTOM_BUCKETS_SCHEMA};
use crate::parser::parse_with_trims;
use crate::{parse, Engine, EngineOptions, MemStorage, QueryError, QueryResult, Queryable, Value};

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

/// The state of one test file's run: engine and storage.
pub(crate) struct Runner<'e> {
    engine: &'e Engine,
    storage: MemStorage,
}

/// A classic histogram being collected at one timestamp for
/// `load_with_nhcb` (upstream's `convertnhcb.TempHistogram`).
#[derive(Default)]
struct TempHistogram {
    /// `(le, cumulative count)`, sorted by `le`.
    buckets: Vec<(f64, f64)>,
    count: Option<f64>,
    sum: f64,
    bad: bool,
}

impl TempHistogram {
    fn set_bucket(&mut self, le: f64, count: f64) {
        if le.is_nan() || count < 0.0 {
            self.bad = true;
            return;
        }
        let i = self.buckets.partition_point(|b| b.0 < le);
        if self.buckets.get(i).is_some_and(|b| b.0 == le) {
            return; // a duplicate sample: ignored, as upstream
        }
        if (i > 0 && count < self.buckets[i - 1].1)
            || self.buckets.get(i).is_some_and(|b| count > b.1)
        {
            self.bad = true; // not cumulative
            return;
        }
        self.buckets.insert(i, (le, count));
    }

    /// The native histogram with custom buckets, or `None` when the classic
    /// one is inconsistent (upstream fails the load then).
    fn convert(mut self) -> Option<FloatHistogram> {
        if self.bad {
            return None;
        }
        let count = match self.count {
            Some(c) => c,
            None => self.buckets.last().map_or(0.0, |b| b.1),
        };
        if self.buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
            self.buckets.push((f64::INFINITY, count));
        }
        let integral = self.buckets.iter().all(|b| b.1.round() == b.1) && count.round() == count;
        if integral && self.buckets.last().is_some_and(|b| b.1 != count) {
            return None;
        }
        let mut prev = 0.0;
        let mut buckets = Vec::with_capacity(self.buckets.len());
        let mut custom = Vec::new();
        for &(le, c) in &self.buckets {
            buckets.push(c - prev);
            prev = c;
            if le != f64::INFINITY {
                custom.push(le);
            }
        }
        let mut h = FloatHistogram {
            schema: CUSTOM_BUCKETS_SCHEMA,
            count,
            sum: self.sum,
            positive_spans: vec![Span {
                offset: 0,
                length: buckets.len() as u32,
            }],
            positive_buckets: buckets,
            custom_values: custom,
            ..Default::default()
        };
        h.compact(2);
        Some(h)
    }
}

impl<'e> Runner<'e> {
    pub fn new(engine: &'e Engine) -> Self {
        Runner {
            engine,
            storage: MemStorage::new(),
        }
    }

    /// `clear`: a fresh, empty storage.
    pub fn clear(&mut self) {
        self.storage.clear();
    }

    /// Appends a load's samples: value `i` at `i * step`.
    pub fn load(&mut self, load: &Load) {
        for s in &load.series {
            for (i, v) in s.values.iter().enumerate() {
                let Some(t) = load.step.checked_mul(i as i64) else {
                    break;
                };
                match v {
                    SeqValue::Float(f) => self.storage.add_sample(s.labels.clone(), t, *f),
                    SeqValue::Histogram(h, _) => {
                        self.storage
                            .add_histogram(s.labels.clone(), t, (**h).clone())
                    }
                    SeqValue::Omitted => {}
                }
            }
        }
        if load.with_nhcb {
            self.load_nhcb(load);
        }
    }

    /// `load_with_nhcb` also stores each classic histogram (`_bucket` with a
    /// numeric `le`, `_count`, `_sum`) as a native histogram with custom
    /// buckets under the base name, without `le`, at every timestamp of its
    /// float samples.
    fn load_nhcb(&mut self, load: &Load) {
        let mut hists: BTreeMap<Labels, BTreeMap<i64, TempHistogram>> = BTreeMap::new();
        for s in &load.series {
            let name = s.labels.metric_name();
            let (base, le) = if let Some(b) = name.strip_suffix("_bucket") {
                match s.labels.get("le").and_then(parse_number) {
                    Some(le) if !le.is_nan() => (b, Some(le)),
                    _ => continue,
                }
            } else if let Some(b) = name
                .strip_suffix("_sum")
                .or_else(|| name.strip_suffix("_count"))
            {
                (b, None)
            } else {
                continue;
            };
            let is_count = name.ends_with("_count");
            let labels = Labels::from_pairs(
                s.labels
                    .iter()
                    .filter(|l| &*l.name != "le" && &*l.name != METRIC_NAME)
                    .map(|l| (l.name.to_string(), l.value.to_string()))
                    .chain([(METRIC_NAME.to_string(), base.to_string())]),
            );
            let per_ts = hists.entry(labels).or_default();
            for (i, v) in s.values.iter().enumerate() {
                let (SeqValue::Float(f), Some(t)) = (v, load.step.checked_mul(i as i64)) else {
                    continue;
                };
                let th = per_ts.entry(t).or_default();
                match le {
                    Some(le) => th.set_bucket(le, *f),
                    None if is_count => {
                        if *f < 0.0 {
                            th.bad = true;
                        }
                        th.count = Some(*f);
                    }
                    None => th.sum = *f,
                }
            }
        }
        for (labels, per_ts) in hists {
            for (t, th) in per_ts {
                if let Some(h) = th.convert() {
                    self.storage.add_histogram(labels.clone(), t, h);
                }
            }
        }
    }

    /// Runs one eval with all its checks; `Err` is the first failure.
    pub fn eval(&self, ev: &Eval) -> Result<(), String> {
        let q = &self.storage;
        match ev.range {
            Some(r) => self.eval_range(ev, r, q),
            None => self.eval_instant(ev, q),
        }
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
        let middle: Vec<(&Labels, f64, Option<&FloatHistogram>)> = m
            .iter()
            .filter_map(|s| {
                s.floats
                    .iter()
                    .find(|(pt, _)| *pt == t)
                    .map(|(_, f)| (&s.metric, *f, None))
                    .or_else(|| {
                        s.histograms
                            .iter()
                            .find(|(pt, _)| *pt == t)
                            .map(|(_, h)| (&s.metric, 0.0, Some(h)))
                    })
            })
            .collect();
        let checked = if matches!(res.value, Value::Scalar(..)) {
            match middle.first() {
                Some((_, f, _)) => compare_result(ev, &View::Scalar(*f)),
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

/// promql-parser prints string literals decoded and re-quoted, which loses
/// escapes that are not valid UTF-8 (`"\xff"`); Prometheus prints them
/// back as written. Puts the original literals back, in order, when the
/// printed query has as many as the original.
fn restore_strings(printed: &str, original: &str) -> String {
    use crate::lex::{tokenize, TokKind};
    let orig: Vec<&str> = tokenize(original)
        .into_iter()
        .filter(|t| t.kind == TokKind::Str)
        .map(|t| t.text)
        .collect();
    let toks: Vec<_> = tokenize(printed)
        .into_iter()
        .filter(|t| t.kind == TokKind::Str)
        .collect();
    if orig.len() != toks.len() || orig.is_empty() {
        return printed.to_string();
    }
    let mut out = String::with_capacity(printed.len());
    let mut last = 0;
    for (t, o) in toks.iter().zip(&orig) {
        out.push_str(&printed[last..t.start]);
        out.push_str(o);
        last = t.start + t.text.len();
    }
    out.push_str(&printed[last..]);
    out
}

/// promql-parser prints positive infinity as `Inf`, Prometheus as `+Inf`;
/// annotation positions in the re-run query depend on it, so print it the
/// Prometheus way. (`Inf` outside braces and strings is always a number.)
fn plus_inf(q: &str) -> String {
    let mut out = String::with_capacity(q.len() + 4);
    let mut last = 0;
    for t in crate::lex::tokenize(q) {
        let signed = t.start > 0 && matches!(q.as_bytes()[t.start - 1], b'+' | b'-');
        if t.kind == crate::lex::TokKind::Ident && t.text.eq_ignore_ascii_case("inf") && !signed {
            out.push_str(&q[last..t.start]);
            out.push('+');
            last = t.start;
        }
    }
    out.push_str(&q[last..]);
    out
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
    // Duration expressions as the engine evaluates them for an instant
    // query (`step()` and `range()` are 0).
    let rewritten = if opts.enable_experimental_functions {
        crate::durexpr::rewrite(expr, 0, 0)?
    } else {
        None
    };
    let expr = rewritten.as_deref().unwrap_or(expr);
    // `anchored`/`smoothed` are blanked for the parser and put back after
    // printing, by the ordinal of their range bracket.
    let modifiers = if opts.enable_experimental_functions {
        crate::lex::rewrite_range_modifiers(expr)
    } else {
        None
    };
    let ext_ords = modifiers
        .as_ref()
        .map(|(text, found)| crate::lex::bracket_ordinals(text, found))
        .unwrap_or_default();
    // An instant `smoothed` cannot be put back after printing: such
    // queries get no `@` re-runs (like any query that does not print back).
    if modifiers.as_ref().is_some_and(|(_, found)| {
        found
            .iter()
            .any(|(_, e)| *e == crate::ast::RangeExt::SmoothedInstant)
    }) {
        return Ok(Vec::new());
    }
    let expr = modifiers.as_ref().map_or(expr, |(t, _)| t.as_str());
    let (mut ast, trims) = parse_with_trims(expr, opts).map_err(|e| e.to_string())?;
    // Trim operators reach promql-parser as `>=`/`<=`; remember which ones
    // to turn back after printing.
    let trim_ords = trims
        .as_ref()
        .map(|(text, pos)| crate::lex::trim_ordinals(text, pos))
        .unwrap_or_default();
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
    let mut query = restore_strings(&plus_inf(&ast.to_string()), expr);
    if !trim_ords.is_empty() {
        query = crate::lex::restore_trim_ops(&query, &trim_ords);
    }
    if !ext_ords.is_empty() {
        query = crate::lex::restore_range_modifiers(&query, &ext_ords);
    }
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
    fn string_literals_print_as_written() {
        assert_eq!(
            restore_strings(r#"f(x @ 1.000, "ÿ", 'a')"#, r#"f(x, "\xff", "a")"#),
            r#"f(x @ 1.000, "\xff", "a")"#
        );
        assert_eq!(restore_strings("f(\"a\")", "g"), "f(\"a\")");
    }

    #[test]
    fn positive_infinity_prints_with_its_sign() {
        assert_eq!(
            plus_inf("f(-Inf, Inf, x{a=\"Inf\"}) + Inf"),
            "f(-Inf, +Inf, x{a=\"Inf\"}) + +Inf"
        );
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
