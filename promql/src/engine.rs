//! The engine: query entry points, series preparation and the evaluator core.
//!
//! # Evaluation model
//!
//! Like Prometheus, the engine evaluates every expression over the whole
//! list of evaluation steps at once: the value of an instant-vector or scalar
//! expression is a matrix holding one point per step at which a series has a
//! value. An instant query is a range query with a single step. Operators
//! and functions walk the steps and combine the per-step vectors of their
//! operands ([`Evaluator::range_eval`]); functions over range vectors walk
//! each input series once, sliding a window over its samples.
//!
//! Native histograms travel beside the floats: a series holds float
//! `points` and histogram `hists` (a step has one or the other), a per-step
//! sample holds `f` or `h`. Only operators that understand histograms ask
//! for them ([`Evaluator::range_eval_h`]); the rest never see them, which is
//! exactly Prometheus' behaviour of dropping histograms in float-only
//! functions.
//!
//! Before evaluation, [`prepare`] asks storage once per selector for all the
//! samples the selector can ever touch in this query (accounting for offsets,
//! `@`, lookback, ranges and enclosing subqueries, exactly as Prometheus'
//! `getTimeRangesForSelector`). Evaluation then never goes back to storage:
//! instant selectors advance a cursor per series, and range windows are
//! slices of the pre-fetched, staleness-filtered samples.
//!
//! Step-invariant subtrees (anything pinned with `@`, literals) are wrapped
//! by `ast::preprocess` and evaluated once, then repeated for every step.
//!
//! Limits: every point held in memory is counted like Prometheus counts it
//! (peak samples of the evaluation, not samples read), and exceeding
//! `max_samples` fails the query; the deadline derived from `timeout` is
//! checked at every node and every step.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_tsdb::labels::{Labels, Matcher, METRIC_NAME};

use crate::annotations::Annotations;
use crate::ast::{self, AtTime, Func, Kind, Matching, Node, VType, MAX_ABS_TIME_MS};
use crate::parser;
use crate::storage::{
    PartitionedQuery, PartitionedResult, Queryable, SelectHints, SelectRequest, StorageSeries,
};
use crate::util::{drop_metadata_arc, signature_into};
use crate::value::{
    hist_size, is_stale_nan, total_points, ESample, ESeries, EValue, Hist, Mat, Metric, Sample,
    Series, Value,
};

/// Engine configuration. Defaults match a Prometheus server with a 64 KiB
/// query-length and 512-level nesting guard.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Most samples held in memory at once by one query.
    pub max_samples: usize,
    /// Wall-clock budget of one query.
    pub timeout: Duration,
    /// How far back (ms) an instant selector looks for a sample
    /// (non-positive: the default, 5m).
    pub lookback_delta: i64,
    /// Step (ms) of subqueries that give none (`foo[1h:]`)
    /// (non-positive: the default, 1m).
    pub no_step_subquery_interval: i64,
    /// Enables functions and aggregations Prometheus marks experimental.
    pub enable_experimental_functions: bool,
    /// Prometheus 3.x: remove `__name__` at the end of evaluation instead of
    /// at the operator that invalidates it.
    pub enable_delayed_name_removal: bool,
    /// Longest accepted query text, in bytes.
    pub max_query_length: usize,
    /// Deepest accepted expression nesting (brackets plus operators).
    pub max_query_depth: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            lookback_delta: 300_000,
            no_step_subquery_interval: 60_000,
            enable_experimental_functions: false,
            enable_delayed_name_removal: true,
            max_query_length: 64 * 1024,
            max_query_depth: 512,
        }
    }
}

/// A query's value plus the annotations produced while evaluating it.
#[derive(Clone, Debug)]
pub struct QueryResult {
    pub value: Value,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

/// Why a query failed. [`QueryError::error_type`] gives the Prometheus API
/// `errorType`.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum QueryError {
    /// The query (or a parameter) is invalid.
    #[error("{0}")]
    BadData(String),
    /// Evaluation failed (e.g. duplicate label sets, too many samples).
    #[error("{0}")]
    Execution(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Canceled(String),
    /// Storage failed while selecting series ("expanding series: ...").
    /// Reported as `execution` (422), as Prometheus and Thanos do: their
    /// `returnAPIError` maps only `promql.ErrStorage` to `internal`, and no
    /// select path wraps its error in it, so a failing store or an exceeded
    /// store-side limit reaches clients as `execution`.
    #[error("{0}")]
    Storage(String),
}

impl QueryError {
    /// `bad_data`, `execution`, `timeout` or `canceled`.
    pub fn error_type(&self) -> &'static str {
        match self {
            QueryError::BadData(_) => "bad_data",
            QueryError::Execution(_) => "execution",
            QueryError::Timeout(_) => "timeout",
            QueryError::Canceled(_) => "canceled",
            QueryError::Storage(_) => "execution",
        }
    }
}

pub(crate) fn exec_err(msg: impl Into<String>) -> QueryError {
    QueryError::Execution(msg.into())
}

pub(crate) const DUPLICATE_LABELSET: &str = "vector cannot contain metrics with the same labelset";
const TOO_MANY_SAMPLES: &str =
    "query processing would load too many samples into memory in query execution";

/// Expressions up to this depth are evaluated on the caller's thread.
const SHALLOW_DEPTH: usize = 48;
/// Stack reserved per expression level for deeper queries (generous enough
/// for unoptimised builds, whose frames are several times larger).
const STACK_PER_LEVEL: usize = 32 << 10;

/// Pre-allocation cap for per-series point vectors, so a huge step count
/// cannot trigger a huge allocation before any point exists.
const MAX_PREALLOC: usize = 5000;

/// The PromQL engine. It holds only configuration and is cheap to share.
pub struct Engine {
    opts: EngineOptions,
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        Engine { opts }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates `query` at `t_ms`.
    pub fn instant(
        &self,
        q: &dyn Queryable,
        query: &str,
        t_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        self.exec(q, query, t_ms, t_ms, 0)
    }

    /// Evaluates `query` at every `step_ms` from `start_ms` to `end_ms`.
    /// Output is always a Matrix (or error), sorted by labels.
    pub fn range(
        &self,
        q: &dyn Queryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        if step_ms <= 0 {
            return Err(QueryError::BadData(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end_ms < start_ms {
            return Err(QueryError::BadData(
                "end timestamp must not be before start time".into(),
            ));
        }
        self.exec(q, query, start_ms, end_ms, step_ms)
    }

    fn exec(
        &self,
        q: &dyn Queryable,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult, QueryError> {
        let deadline = Instant::now()
            .checked_add(self.opts.timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        for t in [start, end] {
            if t.abs() > MAX_ABS_TIME_MS {
                return Err(QueryError::BadData(format!(
                    "timestamp {t} is out of range"
                )));
            }
        }
        // Experimental duration expressions are evaluated into literals
        // first; the rewritten text is what gets parsed and reported on.
        let rewritten = if self.opts.enable_experimental_functions {
            crate::durexpr::rewrite(query, step, end - start)
                .map_err(|e| QueryError::BadData(format!("parse error: {e}")))?
        } else {
            None
        };
        let query: &str = rewritten.as_deref().unwrap_or(query);
        // Experimental `anchored`/`smoothed`: blanked out for the parser
        // (same length), remembered by position for the converter.
        let modifiers = if self.opts.enable_experimental_functions {
            crate::lex::rewrite_range_modifiers(query)
        } else {
            None
        };
        let (query, range_ext): (&str, Vec<(usize, ast::RangeExt)>) = match &modifiers {
            Some((t, e)) => (t.as_str(), e.clone()),
            None => (query, Vec::new()),
        };
        let (expr, trims) = parser::parse_with_trims(query, &self.opts)?;
        let depth = ast::depth(&expr);
        let run = move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.exec_parsed(
                    q, query, trims, &range_ext, expr, start, end, step, deadline,
                )
            }))
            .unwrap_or_else(|p| {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(exec_err(format!("unexpected error: {msg}")))
            })
        };
        if depth <= SHALLOW_DEPTH {
            return run();
        }
        // The evaluator recurses once per level of the expression. Deep
        // (but allowed) queries run on a thread whose stack is sized for
        // their depth, so the depth limit is safe whatever stack the caller
        // has (tokio workers have 2 MiB).
        let stack = (1 << 20) + depth.saturating_mul(STACK_PER_LEVEL);
        std::thread::scope(|s| {
            match std::thread::Builder::new()
                .name("promql-eval".into())
                .stack_size(stack)
                .spawn_scoped(s, run)
            {
                Ok(h) => h.join().unwrap_or_else(|_| {
                    Err(exec_err("unexpected error: evaluation thread failed"))
                }),
                Err(e) => Err(exec_err(format!("cannot start evaluation: {e}"))),
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn exec_parsed(
        &self,
        q: &dyn Queryable,
        query: &str,
        trims: Option<parser::TrimRewrite>,
        range_ext: &[(usize, ast::RangeExt)],
        expr: promql_parser::parser::Expr,
        start: i64,
        end: i64,
        step: i64,
        deadline: Instant,
    ) -> Result<QueryResult, QueryError> {
        // With trim operators, the converter walks the rewritten text (same
        // length, so positions are unchanged) and knows where they were.
        let (text, trim_pos) = match &trims {
            Some((t, p)) => (t.as_str(), p.clone()),
            None => (query, Vec::new()),
        };
        let mut conv = ast::Converter::new(text, self.opts.enable_experimental_functions);
        conv.trim_positions = trim_pos;
        conv.range_ext = range_ext.to_vec();
        conv.query_start = start;
        conv.query_end = end;
        conv.query_step = step;
        let root = conv.convert(&expr)?;
        drop(expr);
        let is_range = step > 0;
        let vt = root.vtype();
        if is_range && vt != VType::Vector && vt != VType::Scalar {
            return Err(QueryError::BadData(format!(
                "invalid expression type {:?} for range query, must be Scalar or instant Vector",
                vt.documented()
            )));
        }
        let root = ast::preprocess(root, start, end);
        if let Some(res) = self.try_partitioned(q, query, &root, vt, start, end, step) {
            return res;
        }
        let (sels, storage_warnings) =
            prepare(q, &root, conv.selectors(), start, end, step, &self.opts)?;
        if Instant::now() > deadline {
            return Err(QueryError::Timeout(
                "query timed out in query preparation".into(),
            ));
        }

        let mut ev = Evaluator {
            sels: &sels,
            start,
            end,
            interval: if is_range { step } else { 1 },
            lookback: lookback_delta(&self.opts),
            max_samples: self.opts.max_samples,
            cur_samples: 0,
            deadline,
            delayed: self.opts.enable_delayed_name_removal,
            no_step_interval: no_step_interval(&self.opts),
            annos: Annotations::default(),
        };
        let val = ev.eval(&root)?;
        let val = match val {
            EValue::Matrix(m) if ev.delayed => EValue::Matrix(ev.cleanup(m)?),
            v => v,
        };
        let (mut warnings, infos) = ev.annos.render(query);
        let mut all_warnings = storage_warnings;
        all_warnings.append(&mut warnings);

        let value = match val {
            EValue::String(s) => Value::String(start, s),
            EValue::Matrix(m) => {
                if !is_range && vt == VType::Vector {
                    Value::Vector(
                        m.into_iter()
                            .filter_map(|s| {
                                if let Some((_, h)) = s.hists.first() {
                                    let h = (**h).clone();
                                    return Some(Sample {
                                        metric: unwrap_metric(s.metric),
                                        t: start,
                                        f: 0.0,
                                        h: Some(h),
                                    });
                                }
                                s.points.first().map(|&(_, f)| Sample {
                                    metric: unwrap_metric(s.metric),
                                    t: start,
                                    f,
                                    h: None,
                                })
                            })
                            .collect(),
                    )
                } else if !is_range && vt == VType::Scalar {
                    let f = m
                        .first()
                        .and_then(|s| s.points.first())
                        .map(|p| p.1)
                        .unwrap_or(f64::NAN);
                    Value::Scalar(start, f)
                } else {
                    let mut out: Vec<Series> = m
                        .into_iter()
                        .map(|s| Series {
                            metric: unwrap_metric(s.metric),
                            floats: s.points,
                            histograms: s
                                .hists
                                .into_iter()
                                .map(|(t, h)| {
                                    (t, Arc::try_unwrap(h).unwrap_or_else(|a| (*a).clone()))
                                })
                                .collect(),
                        })
                        .collect();
                    out.sort_by(|a, b| a.metric.cmp(&b.metric));
                    Value::Matrix(out)
                }
            }
        };
        Ok(QueryResult {
            value,
            warnings: all_warnings,
            infos,
        })
    }
}

/// The lookback delta, with Prometheus' default for non-positive values.
fn lookback_delta(o: &EngineOptions) -> i64 {
    if o.lookback_delta > 0 {
        o.lookback_delta.min(ast::MAX_DURATION_MS)
    } else {
        300_000
    }
}

impl Engine {
    /// Hands a partition-local query to a partitioned storage whole (see
    /// the `partition` module and [`Queryable::eval_partitioned`]); `None`
    /// evaluates it here. Only with the default experimental-function and
    /// name-removal settings, which are those of the stores' engines.
    #[allow(clippy::too_many_arguments)]
    fn try_partitioned(
        &self,
        q: &dyn Queryable,
        query: &str,
        root: &ast::Node,
        vt: VType,
        start: i64,
        end: i64,
        step: i64,
    ) -> Option<Result<QueryResult, QueryError>> {
        let defaults = EngineOptions::default();
        if vt != VType::Vector
            || self.opts.enable_experimental_functions != defaults.enable_experimental_functions
            || self.opts.enable_delayed_name_removal != defaults.enable_delayed_name_removal
        {
            return None;
        }
        let labels = q.partition_labels()?;
        if !crate::partition::is_partition_local(root, &labels) {
            return None;
        }
        let res = q.eval_partitioned(&PartitionedQuery {
            query,
            start,
            end,
            step,
            lookback: lookback_delta(&self.opts),
            labels: &labels,
            max_points: self.opts.max_samples,
        })?;
        match res {
            Err(e) => Some(Err(QueryError::Storage(e.0))),
            // Two stores answered the same series: not a partition after
            // all (say, the stores changed meanwhile); evaluate here.
            Ok(r) => partitioned_value(r, start, step).map(Ok),
        }
    }
}

/// The engine's answer from the stores' concatenated answers: an instant
/// vector of each series' point at `start`, or a matrix sorted by labels;
/// annotations split into warnings and infos by their prefix, each once.
/// `None` when a label set appears twice.
fn partitioned_value(r: PartitionedResult, start: i64, step: i64) -> Option<QueryResult> {
    let mut warnings: Vec<String> = Vec::new();
    let mut infos: Vec<String> = Vec::new();
    for w in r.warnings {
        let to = if w.starts_with("PromQL info:") {
            &mut infos
        } else {
            &mut warnings
        };
        if !to.contains(&w) {
            to.push(w);
        }
    }
    let value = if step == 0 {
        // In the stores' order (the storage asks them in a fixed order),
        // each store's samples as its engine ordered them (`topk` by value).
        let v: Vec<Sample> = r
            .series
            .into_iter()
            .filter_map(|(metric, points)| {
                points.first().map(|&(_, f)| Sample {
                    metric,
                    t: start,
                    f,
                    h: None,
                })
            })
            .collect();
        let mut seen = std::collections::HashSet::with_capacity(v.len());
        if !v.iter().all(|s| seen.insert(&s.metric)) {
            return None;
        }
        Value::Vector(v)
    } else {
        let mut out: Vec<Series> = r
            .series
            .into_iter()
            .filter(|(_, p)| !p.is_empty())
            .map(|(metric, floats)| Series {
                metric,
                floats,
                histograms: Vec::new(),
            })
            .collect();
        out.sort_by(|a, b| a.metric.cmp(&b.metric));
        if out.windows(2).any(|w| w[0].metric == w[1].metric) {
            return None;
        }
        Value::Matrix(out)
    };
    Some(QueryResult {
        value,
        warnings,
        infos,
    })
}

/// The default subquery step, with Prometheus' default for non-positive values.
fn no_step_interval(o: &EngineOptions) -> i64 {
    if o.no_step_subquery_interval > 0 {
        o.no_step_subquery_interval.min(ast::MAX_DURATION_MS)
    } else {
        60_000
    }
}

fn unwrap_metric(m: Metric) -> Labels {
    Arc::try_unwrap(m).unwrap_or_else(|a| (*a).clone())
}

/// One selected series, ready for evaluation.
pub(crate) struct PSeries {
    pub metric: Metric,
    /// Sorted samples. For range selectors, staleness markers are removed so
    /// every window is a plain slice.
    pub samples: Vec<(i64, f64)>,
    /// Sorted histogram samples.
    pub hists: Vec<(i64, Hist)>,
}

pub(crate) type SelSeries = Vec<PSeries>;

/// What the path from the root to a selector contributes to its time range.
#[derive(Clone, Default)]
struct PathInfo {
    subq_offset: i64,
    subq_range: i64,
    subq_at: Option<i64>,
    /// Step of the innermost enclosing subquery, 0 if none.
    subq_step: i64,
    func: Option<String>,
    by: bool,
    grouping: Vec<String>,
    /// Under `histogram_count`/`histogram_sum`/`histogram_avg`...
    stats_fn: bool,
    /// ...but not under a subquery, `histogram_quantile(s)`/`histogram_fraction`
    /// or a trim operator (see [`stats_only`]).
    stats_blocked: bool,
}

/// Prometheus reads the histograms of a selector that only feeds
/// `histogram_count`/`histogram_sum`/`histogram_avg` through its
/// `HistogramStatsIterator`: buckets are dropped, and an "unknown" counter
/// reset hint is replaced by the result of comparing each histogram with
/// the previous one read. Those explicit hints show in results (e.g. the
/// "conflicting counter resets" warning of `histogram_count(sum(x))`).
fn stats_only(hists: &mut [(i64, Hist)]) {
    use crate::histogram::CounterResetHint as H;
    let mut last: Option<Hist> = None;
    for (_, h) in hists.iter_mut() {
        let full = h.clone();
        let mut hint = full.counter_reset_hint;
        if hint == H::Unknown {
            if let Some(l) = &last {
                hint = if full.detect_reset(l) {
                    H::Reset
                } else {
                    H::NotReset
                };
            }
        }
        *h = Arc::new(crate::histogram::FloatHistogram {
            counter_reset_hint: hint,
            schema: full.schema,
            count: full.count,
            sum: full.sum,
            ..Default::default()
        });
        let mut l = (*full).clone();
        l.counter_reset_hint = hint;
        last = Some(Arc::new(l));
    }
}

struct Preparer<'a> {
    start: i64,
    end: i64,
    step: i64,
    opts: &'a EngineOptions,
    /// The selects the walk planned, run together afterwards.
    planned: Vec<Planned>,
}

/// One select the walk planned: what to ask storage, and where the answer
/// goes.
struct Planned {
    matchers: Vec<Matcher>,
    hints: SelectHints,
    /// The selector's id: its slot in the prepared series.
    id: usize,
    range: i64,
    /// Only histogram count and sum are needed (see [`stats_only`]).
    stats: bool,
}

/// Selects, once per selector, every sample the selector can need.
fn prepare(
    q: &dyn Queryable,
    root: &Node,
    n: usize,
    start: i64,
    end: i64,
    step: i64,
    opts: &EngineOptions,
) -> Result<(Vec<SelSeries>, Vec<String>), QueryError> {
    let mut p = Preparer {
        start,
        end,
        step,
        opts,
        planned: Vec::new(),
    };
    p.walk(root, &PathInfo::default())?;
    // Plan first, then select everything in one batch, so a remote store
    // can fetch a query's selectors concurrently.
    let requests: Vec<SelectRequest<'_>> = p
        .planned
        .iter()
        .map(|x| SelectRequest {
            matchers: &x.matchers,
            hints: &x.hints,
        })
        .collect();
    let answers = q.select_many(&requests);
    if answers.len() != requests.len() {
        return Err(QueryError::Storage(format!(
            "storage answered {} of {} selects",
            answers.len(),
            requests.len()
        )));
    }
    let mut out: Vec<Option<SelSeries>> = (0..n).map(|_| None).collect();
    let mut warnings = Vec::new();
    for (x, res) in p.planned.iter().zip(answers) {
        let res = res.map_err(|e| QueryError::Storage(format!("expanding series: {e}")))?;
        warnings.extend(res.warnings);
        let series = to_prepared(res.series, x.range, x.stats);
        if let Some(slot) = out.get_mut(x.id) {
            *slot = Some(series);
        }
    }
    Ok((
        out.into_iter().map(Option::unwrap_or_default).collect(),
        warnings,
    ))
}

/// Storage series as the evaluator holds them: stale markers dropped from
/// range selectors (they only end instant lookback), histograms shared.
fn to_prepared(series: Vec<StorageSeries>, range: i64, stats: bool) -> SelSeries {
    series
        .into_iter()
        .map(|s| {
            let mut samples = s.samples;
            if range > 0 {
                samples.retain(|p| !is_stale_nan(p.1));
            }
            let mut hists: Vec<(i64, Hist)> = s
                .histograms
                .into_iter()
                .map(|(t, h)| (t, Arc::new(h)))
                .collect();
            if stats && !hists.is_empty() {
                stats_only(&mut hists);
            }
            PSeries {
                metric: Arc::new(s.labels),
                samples,
                hists,
            }
        })
        .collect()
}

impl Preparer<'_> {
    fn walk(&mut self, n: &Node, path: &PathInfo) -> Result<(), QueryError> {
        match &n.kind {
            Kind::Vector(sel) => self.select(sel, 0, path),
            Kind::Matrix(sel, range) => self.select(sel, *range, path),
            Kind::Number(_) | Kind::Str(..) => Ok(()),
            Kind::Paren(x) | Kind::Neg(x) | Kind::StepInvariant(x) => self.walk(x, path),
            Kind::Subquery(sq) => {
                let mut p = path.clone();
                p.subq_offset += sq.offset;
                p.subq_range += sq.range;
                if let Some(AtTime::Ts(t)) = sq.at {
                    // `@` on a subquery resets what outer subqueries added.
                    p.subq_offset = sq.offset;
                    p.subq_range = sq.range;
                    p.subq_at = Some(t);
                }
                p.stats_blocked = true;
                p.subq_step = if sq.step > 0 {
                    sq.step
                } else {
                    no_step_interval(self.opts)
                };
                // The hinted function is the innermost one around the
                // selector, looking through subqueries (as Prometheus does).
                p.by = false;
                p.grouping.clear();
                self.walk(&sq.expr, &p)
            }
            Kind::Call(c) if c.func == Func::Info => {
                let mut p = path.clone();
                p.func = Some("info".to_string());
                p.by = false;
                p.grouping.clear();
                if let Some(a) = c.args.first() {
                    self.walk(a, &p)?;
                }
                self.select_info(c, &p)
            }
            Kind::Call(c) => {
                let mut p = path.clone();
                match c.func {
                    Func::HistogramCount | Func::HistogramSum | Func::HistogramAvg => {
                        p.stats_fn = true
                    }
                    Func::HistogramQuantile
                    | Func::HistogramQuantiles
                    | Func::HistogramFraction => p.stats_blocked = true,
                    _ => {}
                }
                p.func = Some(func_name(c.func).to_string());
                p.by = false;
                p.grouping.clear();
                for a in &c.args {
                    self.walk(a, &p)?;
                }
                Ok(())
            }
            Kind::Agg(a) => {
                let mut p = path.clone();
                p.func = Some(a.op.name().to_string());
                p.by = !a.without;
                p.grouping = a.grouping.clone();
                if let Some(x) = &a.param {
                    let mut pp = p.clone();
                    pp.grouping.clear();
                    pp.by = false;
                    self.walk(x, &pp)?;
                }
                self.walk(&a.expr, &p)
            }
            Kind::Binary(b) => {
                // Functions and groupings are only hinted for a single metric.
                let mut p = path.clone();
                p.func = None;
                p.by = false;
                p.grouping.clear();
                if matches!(b.op, ast::BinOp::TrimUpper | ast::BinOp::TrimLower) {
                    p.stats_blocked = true;
                }
                self.walk(&b.lhs, &p)?;
                self.walk(&b.rhs, &p)
            }
        }
    }

    /// Selects the info series `info()` may join: the effective info
    /// metric names and the data-label matchers, over the time range of the
    /// first selector of the first argument (its offset and `@`), as
    /// Prometheus' `fetchInfoSeries` does. Prometheus also restricts the
    /// identifying labels to the values the base series have; that is done
    /// during evaluation (`info::eval_info`), where they are known.
    fn select_info(&mut self, c: &ast::CallNode, path: &PathInfo) -> Result<(), QueryError> {
        let Some(info_sel) = c.args.get(1).and_then(crate::info::selector_of) else {
            return Ok(());
        };
        let (offset, at) = c
            .args
            .first()
            .map_or((0, None), crate::info::reference_time);
        let matchers = crate::info::info_select_matchers(&info_sel.matchers);
        let tmp = ast::Selector {
            matchers,
            offset,
            at,
            id: info_sel.id,
            ext: ast::RangeExt::None,
        };
        self.select(&tmp, 0, path)
    }

    fn select(
        &mut self,
        sel: &ast::Selector,
        range: i64,
        path: &PathInfo,
    ) -> Result<(), QueryError> {
        let (mut s, mut e) = match path.subq_at {
            Some(t) => (t, t),
            None => (self.start, self.end),
        };
        if let Some(t) = sel.at.and_then(AtTime::ts) {
            s = t;
            e = t;
        } else {
            s = s - path.subq_offset - path.subq_range;
            e -= path.subq_offset;
        }
        if range == 0 {
            // Left-open lookback: a sample exactly lookback_delta old is out.
            s -= lookback_delta(self.opts) - 1;
            if sel.ext == ast::RangeExt::SmoothedInstant {
                e += lookback_delta(self.opts);
            }
        } else {
            s -= range - 1;
            // `anchored`/`smoothed` also need the sample before the window
            // (and `smoothed` the one after it), within the lookback.
            match sel.ext {
                ast::RangeExt::None | ast::RangeExt::SmoothedInstant => {}
                ast::RangeExt::Anchored => s -= lookback_delta(self.opts),
                ast::RangeExt::Smoothed => {
                    s -= lookback_delta(self.opts);
                    e += lookback_delta(self.opts);
                }
            }
        }
        s -= sel.offset;
        e -= sel.offset;
        let hints = SelectHints {
            start: s,
            end: e,
            step: if path.subq_step > 0 {
                path.subq_step
            } else {
                self.step
            },
            range,
            func: path.func.clone(),
            by: path.by,
            grouping: path.grouping.clone(),
        };
        self.planned.push(Planned {
            matchers: sel.matchers.clone(),
            hints,
            id: sel.id,
            range,
            stats: path.stats_fn && !path.stats_blocked,
        });
        Ok(())
    }
}

pub(crate) fn func_name(f: Func) -> &'static str {
    use Func::*;
    match f {
        Abs => "abs",
        Info => "info",
        Absent => "absent",
        AbsentOverTime => "absent_over_time",
        Acos => "acos",
        Acosh => "acosh",
        Asin => "asin",
        Asinh => "asinh",
        Atan => "atan",
        Atanh => "atanh",
        AvgOverTime => "avg_over_time",
        Ceil => "ceil",
        Changes => "changes",
        Clamp => "clamp",
        ClampMax => "clamp_max",
        ClampMin => "clamp_min",
        Cos => "cos",
        Cosh => "cosh",
        CountOverTime => "count_over_time",
        DaysInMonth => "days_in_month",
        DayOfMonth => "day_of_month",
        DayOfWeek => "day_of_week",
        DayOfYear => "day_of_year",
        Deg => "deg",
        Delta => "delta",
        Deriv => "deriv",
        DoubleExponentialSmoothing => "double_exponential_smoothing",
        Exp => "exp",
        FirstOverTime => "first_over_time",
        Floor => "floor",
        HistogramAvg => "histogram_avg",
        HistogramCount => "histogram_count",
        HistogramFraction => "histogram_fraction",
        HistogramQuantile => "histogram_quantile",
        HistogramQuantiles => "histogram_quantiles",
        HistogramStddev => "histogram_stddev",
        HistogramStdvar => "histogram_stdvar",
        HistogramSum => "histogram_sum",
        Hour => "hour",
        Idelta => "idelta",
        Increase => "increase",
        Irate => "irate",
        LabelJoin => "label_join",
        LabelReplace => "label_replace",
        LastOverTime => "last_over_time",
        Ln => "ln",
        Log10 => "log10",
        Log2 => "log2",
        MadOverTime => "mad_over_time",
        MaxOf => "max_of",
        MaxOverTime => "max_over_time",
        MinOf => "min_of",
        MinOverTime => "min_over_time",
        Minute => "minute",
        Month => "month",
        Pi => "pi",
        PredictLinear => "predict_linear",
        PresentOverTime => "present_over_time",
        QuantileOverTime => "quantile_over_time",
        Rad => "rad",
        Rate => "rate",
        Resets => "resets",
        Round => "round",
        Scalar => "scalar",
        Sgn => "sgn",
        Sin => "sin",
        Sinh => "sinh",
        Sort => "sort",
        SortByLabel => "sort_by_label",
        SortByLabelDesc => "sort_by_label_desc",
        SortDesc => "sort_desc",
        Sqrt => "sqrt",
        StartTimestamp => "start_timestamp",
        StddevOverTime => "stddev_over_time",
        StdvarOverTime => "stdvar_over_time",
        SumOverTime => "sum_over_time",
        Tan => "tan",
        Tanh => "tanh",
        Time => "time",
        Timestamp => "timestamp",
        TsOfFirstOverTime => "ts_of_first_over_time",
        TsOfLastOverTime => "ts_of_last_over_time",
        TsOfMaxOverTime => "ts_of_max_over_time",
        TsOfMinOverTime => "ts_of_min_over_time",
        Vector => "vector",
        Year => "year",
    }
}

/// Per-step context handed to the callbacks of [`Evaluator::range_eval`].
pub(crate) struct StepCtx<'a> {
    pub ts: i64,
    pub annos: &'a mut Annotations,
    pub delayed: bool,
    /// Samples the callback loaded itself (counted against `max_samples`).
    pub loaded: usize,
}

/// Evaluates a prepared expression over `[start, end]` every `interval` ms.
/// Subqueries and step-invariant nodes temporarily narrow the range.
pub(crate) struct Evaluator<'a> {
    pub sels: &'a [SelSeries],
    pub start: i64,
    pub end: i64,
    pub interval: i64,
    pub lookback: i64,
    pub max_samples: usize,
    pub cur_samples: usize,
    pub deadline: Instant,
    pub delayed: bool,
    pub no_step_interval: i64,
    pub annos: Annotations,
}

impl<'a> Evaluator<'a> {
    pub fn num_steps(&self) -> usize {
        if self.end < self.start || self.interval <= 0 {
            return 0;
        }
        ((self.end - self.start) / self.interval) as usize + 1
    }

    /// Step timestamps of the current range.
    pub fn steps(&self) -> impl Iterator<Item = i64> {
        let (s, i, n) = (self.start, self.interval.max(1), self.num_steps());
        (0..n).map(move |k| s + k as i64 * i)
    }

    pub fn prealloc(&self) -> usize {
        self.num_steps().min(MAX_PREALLOC)
    }

    pub fn check_deadline(&self) -> Result<(), QueryError> {
        if Instant::now() > self.deadline {
            Err(QueryError::Timeout(
                "query timed out in expression evaluation".into(),
            ))
        } else {
            Ok(())
        }
    }

    pub fn add_samples(&mut self, n: usize) -> Result<(), QueryError> {
        self.cur_samples += n;
        if self.cur_samples > self.max_samples {
            Err(exec_err(TOO_MANY_SAMPLES))
        } else {
            Ok(())
        }
    }

    pub fn check_samples(&self) -> Result<(), QueryError> {
        if self.cur_samples > self.max_samples {
            Err(exec_err(TOO_MANY_SAMPLES))
        } else {
            Ok(())
        }
    }

    /// Runs `f` with the evaluation range temporarily replaced.
    pub fn with_range<T>(
        &mut self,
        start: i64,
        end: i64,
        interval: i64,
        f: impl FnOnce(&mut Self) -> T,
    ) -> T {
        let saved = (self.start, self.end, self.interval);
        self.start = start;
        self.end = end;
        self.interval = interval;
        let r = f(self);
        (self.start, self.end, self.interval) = saved;
        r
    }

    pub fn eval(&mut self, node: &Node) -> Result<EValue, QueryError> {
        self.check_deadline()?;
        if self.end < self.start {
            return Ok(EValue::Matrix(Vec::new()));
        }
        match &node.kind {
            Kind::Number(v) => {
                let v = *v;
                let m = self.range_eval(&[], None, |_, _, _, out| {
                    out.push(ESample::new(empty_metric(), v));
                    Ok(())
                })?;
                Ok(EValue::Matrix(m))
            }
            Kind::Str(s, _) => Ok(EValue::String(s.clone())),
            Kind::Paren(x) => self.eval(x),
            Kind::Neg(x) => {
                let mut m = self.eval_matrix(x)?;
                for s in &mut m {
                    if !self.delayed {
                        s.metric = drop_metadata_arc(&s.metric);
                    }
                    s.drop_name = true;
                    for p in &mut s.points {
                        p.1 = -p.1;
                    }
                    // Unary minus on a histogram scales it by -1 (a gauge).
                    for p in &mut s.hists {
                        Arc::make_mut(&mut p.1).mul(-1.0);
                    }
                }
                if !self.delayed {
                    m = merge_same_labelset(m)?;
                }
                Ok(EValue::Matrix(m))
            }
            Kind::Vector(sel) if sel.ext == ast::RangeExt::SmoothedInstant => {
                Ok(EValue::Matrix(self.eval_smoothed_selector(sel, node.pos)?))
            }
            Kind::Vector(sel) => Ok(EValue::Matrix(self.eval_vector_selector(sel)?)),
            Kind::Matrix(sel, range) => {
                if self.start != self.end {
                    return Err(exec_err("cannot do range evaluation of matrix selector"));
                }
                Ok(EValue::Matrix(self.eval_matrix_selector(sel, *range)?))
            }
            Kind::Subquery(sq) => Ok(EValue::Matrix(self.run_subquery(sq)?)),
            Kind::Call(c) => self.eval_call(c, node).map(EValue::Matrix),
            Kind::Agg(a) => self.eval_agg(a).map(EValue::Matrix),
            Kind::Binary(b) => self.eval_binary(b, node.pos).map(EValue::Matrix),
            Kind::StepInvariant(inner) => self.eval_step_invariant(inner),
        }
    }

    /// Evaluates a node that must produce a matrix.
    pub fn eval_matrix(&mut self, node: &Node) -> Result<Mat, QueryError> {
        match self.eval(node)? {
            EValue::Matrix(m) => Ok(m),
            EValue::String(_) => Err(exec_err("unexpected string value")),
        }
    }

    fn eval_step_invariant(&mut self, inner: &Node) -> Result<EValue, QueryError> {
        let start = self.start;
        let interval = self.interval;
        let res = self.with_range(start, start, interval, |ev| ev.eval(inner))?;
        if matches!(inner.unparen().kind, Kind::Matrix(..) | Kind::Subquery(_)) {
            return Ok(res);
        }
        let EValue::Matrix(mut m) = res else {
            return Ok(res);
        };
        let n = self.num_steps();
        if n > 1 {
            for s in &mut m {
                if s.hists.len() == 1 && s.points.is_empty() {
                    let h = s.hists[0].1.clone();
                    for ts in self.steps().skip(1) {
                        s.hists.push((ts, h.clone()));
                        self.add_samples(hist_size(&h))?;
                    }
                    continue;
                }
                if s.points.len() != 1 {
                    continue;
                }
                let v = s.points[0].1;
                s.points.reserve(n.min(MAX_PREALLOC));
                for ts in self.steps().skip(1) {
                    s.points.push((ts, v));
                    self.add_samples(1)?;
                }
            }
        }
        Ok(EValue::Matrix(m))
    }

    fn eval_vector_selector(&mut self, sel: &ast::Selector) -> Result<Mat, QueryError> {
        let sels = self.sels;
        let Some(series) = sels.get(sel.id) else {
            return Ok(Vec::new());
        };
        let at = sel.at.and_then(AtTime::ts);
        let mut out = Vec::new();
        for s in series {
            self.check_deadline()?;
            let mut points = Vec::new();
            let mut hists = Vec::new();
            let mut idx = 0;
            let mut hidx = 0;
            for (k, ts) in self.steps().enumerate() {
                if k % 1024 == 1023 {
                    self.check_deadline()?;
                }
                let rt = at.unwrap_or(ts) - sel.offset;
                match lookup_any(s, &mut idx, &mut hidx, rt, self.lookback) {
                    Some(Point::F(v)) => {
                        if points.is_empty() {
                            points.reserve(self.prealloc());
                        }
                        points.push((ts, v));
                        self.add_samples(1)?;
                    }
                    Some(Point::H(h)) => {
                        self.add_samples(hist_size(&h))?;
                        hists.push((ts, h));
                    }
                    None => {}
                }
            }
            if !points.is_empty() || !hists.is_empty() {
                out.push(ESeries {
                    hists,
                    metric: s.metric.clone(),
                    points,
                    drop_name: false,
                });
            }
        }
        Ok(out)
    }

    /// `metric smoothed` (Prometheus' `smoothSeries`): at each step, the
    /// sample at the step time, else the linear interpolation between the
    /// samples around it (within a lookback on either side), else the last
    /// sample before it.
    fn eval_smoothed_selector(
        &mut self,
        sel: &ast::Selector,
        pos: usize,
    ) -> Result<Mat, QueryError> {
        use crate::histogram::CounterResetHint as H;
        let sels = self.sels;
        let Some(series) = sels.get(sel.id) else {
            return Ok(Vec::new());
        };
        let at = sel.at.and_then(AtTime::ts);
        let lb = self.lookback;
        let mut out = Vec::new();
        let steps: Vec<i64> = self.steps().collect();
        for s in series {
            self.check_deadline()?;
            let name = s.metric.metric_name().to_string();
            let floats: Vec<(i64, f64)> = s
                .samples
                .iter()
                .copied()
                .filter(|p| !is_stale_nan(p.1))
                .collect();
            let mut points = Vec::new();
            let mut hists = Vec::new();
            for &ts in &steps {
                let t = at.unwrap_or(ts) - sel.offset;
                let (flo, fhi) = (
                    floats.partition_point(|p| p.0 <= t - lb),
                    floats.partition_point(|p| p.0 <= t + lb),
                );
                let (hlo, hhi) = (
                    s.hists.partition_point(|p| p.0 <= t - lb),
                    s.hists.partition_point(|p| p.0 <= t + lb),
                );
                let (fw, hw) = (&floats[flo..fhi], &s.hists[hlo..hhi]);
                if !fw.is_empty() && !hw.is_empty() {
                    self.annos.warn(
                        format!(
                            "encountered a mix of histograms and floats for metric name {name:?}"
                        ),
                        pos,
                    );
                    continue;
                }
                if !hw.is_empty() {
                    let i = hw.partition_point(|p| p.0 < t);
                    let h = if hw.get(i).is_some_and(|p| p.0 == t) {
                        hw[i].1.clone()
                    } else if i > 0 && i < hw.len() {
                        let (prev, next) = (&hw[i - 1], &hw[i]);
                        if prev.1.uses_custom_buckets() != next.1.uses_custom_buckets() {
                            self.annos.warn(format!("vector contains a mix of histograms with exponential and custom buckets schemas for metric name {name:?}"), pos);
                            continue;
                        }
                        let counter = prev.1.counter_reset_hint != H::Gauge
                            || next.1.counter_reset_hint != H::Gauge;
                        let fraction = (t - prev.0) as f64 / (next.0 - prev.0) as f64;
                        let mut r = (*next.1).clone();
                        if counter && next.1.detect_reset(&prev.1) {
                            r.mul(fraction);
                        } else {
                            if r.sub(&prev.1).is_err() {
                                continue;
                            }
                            r.mul(fraction);
                            if r.add(&prev.1).is_err() {
                                continue;
                            }
                        }
                        Arc::new(r)
                    } else if i > 0 {
                        let mut r = (*hw[i - 1].1).clone();
                        r.counter_reset_hint = H::Unknown;
                        Arc::new(r)
                    } else {
                        continue;
                    };
                    self.add_samples(hist_size(&h))?;
                    hists.push((ts, h));
                    continue;
                }
                let i = fw.partition_point(|p| p.0 < t);
                let v = if fw.get(i).is_some_and(|p| p.0 == t) {
                    fw[i].1
                } else if i > 0 && i < fw.len() {
                    let (p1, p2) = (fw[i - 1], fw[i]);
                    p1.1 + (p2.1 - p1.1) * (t - p1.0) as f64 / (p2.0 - p1.0) as f64
                } else if i > 0 {
                    fw[i - 1].1
                } else {
                    continue;
                };
                self.add_samples(1)?;
                points.push((ts, v));
            }
            if !points.is_empty() || !hists.is_empty() {
                out.push(ESeries {
                    hists,
                    metric: s.metric.clone(),
                    points,
                    drop_name: false,
                });
            }
        }
        Ok(out)
    }

    fn eval_matrix_selector(&mut self, sel: &ast::Selector, range: i64) -> Result<Mat, QueryError> {
        let sels = self.sels;
        let Some(series) = sels.get(sel.id) else {
            return Ok(Vec::new());
        };
        let we = sel.at.and_then(AtTime::ts).unwrap_or(self.start) - sel.offset;
        let ws = we - range;
        let mut out = Vec::new();
        for s in series {
            let lo = s.samples.partition_point(|p| p.0 <= ws);
            let hi = s.samples.partition_point(|p| p.0 <= we);
            let hlo = s.hists.partition_point(|p| p.0 <= ws);
            let hhi = s.hists.partition_point(|p| p.0 <= we);
            if lo < hi || hlo < hhi {
                let hists = s.hists[hlo..hhi].to_vec();
                self.add_samples(hi - lo + hists.iter().map(|h| hist_size(&h.1)).sum::<usize>())?;
                out.push(ESeries {
                    hists,
                    metric: s.metric.clone(),
                    points: s.samples[lo..hi].to_vec(),
                    drop_name: false,
                });
            }
        }
        Ok(out)
    }

    /// Evaluates a subquery on its own step grid and returns the raw result.
    pub fn run_subquery(&mut self, sq: &ast::Subquery) -> Result<Mat, QueryError> {
        let step = if sq.step > 0 {
            sq.step
        } else {
            self.no_step_interval
        };
        if step <= 0 {
            return Err(QueryError::BadData("subquery step must be positive".into()));
        }
        let (base_start, base_end) = match sq.at.and_then(AtTime::ts) {
            Some(t) => (t, t),
            None => {
                let aligned_end = if self.interval > 0 {
                    self.start + ((self.end - self.start) / self.interval) * self.interval
                } else {
                    self.end
                };
                (self.start, aligned_end)
            }
        };
        let bound = base_start - sq.offset - sq.range;
        // Absolute alignment to multiples of the step, first step strictly
        // after the range start (ranges are left-open).
        let mut cs = step * (bound / step);
        if cs <= bound {
            cs += step;
        }
        let ce = base_end - sq.offset;
        self.with_range(cs, ce, step, |ev| ev.eval_matrix(&sq.expr))
    }

    /// The generic per-step driver (Prometheus' `rangeEval`): evaluates the
    /// operands, then calls `f` once per step with the operands' vectors at
    /// that step, and assembles the outputs into series. String operands are
    /// skipped (callbacks read them from the AST). With `matching`, each
    /// gathered sample also carries its join-signature ordinal.
    pub fn range_eval<F>(
        &mut self,
        exprs: &[&Node],
        matching: Option<&Matching>,
        f: F,
    ) -> Result<Mat, QueryError>
    where
        F: FnMut(
            &mut StepCtx,
            &[Vec<ESample>],
            &[Vec<u32>],
            &mut Vec<ESample>,
        ) -> Result<(), QueryError>,
    {
        self.range_eval_h(exprs, matching, false, f)
    }

    /// [`Evaluator::range_eval`] that also hands histogram samples (with
    /// `h` set) to `f` when `with_hists` is true. Without it, histogram
    /// samples are dropped from the operands, which is what Prometheus does
    /// for every float-only function.
    pub fn range_eval_h<F>(
        &mut self,
        exprs: &[&Node],
        matching: Option<&Matching>,
        with_hists: bool,
        mut f: F,
    ) -> Result<Mat, QueryError>
    where
        F: FnMut(
            &mut StepCtx,
            &[Vec<ESample>],
            &[Vec<u32>],
            &mut Vec<ESample>,
        ) -> Result<(), QueryError>,
    {
        let original = self.cur_samples;
        let mut mats: Vec<Mat> = Vec::with_capacity(exprs.len());
        for e in exprs {
            if e.vtype() == VType::String {
                mats.push(Vec::new());
            } else {
                mats.push(self.eval_matrix(e)?);
            }
        }
        let sig_ords: Vec<Vec<u32>> = match matching {
            Some(m) => signatures(&mats, m),
            None => Vec::new(),
        };
        let mut temp = self.cur_samples;
        let mut cursors: Vec<Vec<usize>> = mats.iter().map(|m| vec![0; m.len()]).collect();
        let mut hcursors: Vec<Vec<usize>> = mats.iter().map(|m| vec![0; m.len()]).collect();
        let mut vecs: Vec<Vec<ESample>> =
            mats.iter().map(|m| Vec::with_capacity(m.len())).collect();
        let mut sigs: Vec<Vec<u32>> = vec![Vec::new(); mats.len()];
        let mut result: Vec<ESample> = Vec::new();
        let mut out: Mat = Vec::new();
        let mut index: HashMap<Metric, usize> = HashMap::new();
        let mut by_ptr: PtrMap<(Metric, usize)> = PtrMap::default();
        let mut last_ts: Vec<i64> = Vec::new();
        let instant = self.start == self.end;
        let nsteps = self.num_steps();
        let mut annos = std::mem::take(&mut self.annos);
        let res = (|| -> Result<Option<Mat>, QueryError> {
            for ts in self.steps() {
                self.check_deadline()?;
                self.cur_samples = temp;
                for (i, m) in mats.iter().enumerate() {
                    let v = &mut vecs[i];
                    v.clear();
                    let sg = &mut sigs[i];
                    sg.clear();
                    for (si, s) in m.iter().enumerate() {
                        let c = &mut cursors[i][si];
                        while *c < s.points.len() && s.points[*c].0 < ts {
                            *c += 1;
                        }
                        if *c < s.points.len() && s.points[*c].0 == ts {
                            v.push(ESample {
                                h: None,
                                metric: s.metric.clone(),
                                t: ts,
                                f: s.points[*c].1,
                                drop_name: s.drop_name,
                            });
                            if let Some(o) = sig_ords.get(i) {
                                sg.push(o[si]);
                            }
                            *c += 1;
                        } else if with_hists && !s.hists.is_empty() {
                            let hc = &mut hcursors[i][si];
                            while *hc < s.hists.len() && s.hists[*hc].0 < ts {
                                *hc += 1;
                            }
                            if *hc < s.hists.len() && s.hists[*hc].0 == ts {
                                v.push(ESample {
                                    h: Some(s.hists[*hc].1.clone()),
                                    metric: s.metric.clone(),
                                    t: ts,
                                    f: 0.0,
                                    drop_name: s.drop_name,
                                });
                                if let Some(o) = sig_ords.get(i) {
                                    sg.push(o[si]);
                                }
                                *hc += 1;
                            }
                        }
                    }
                    self.add_samples(v.iter().map(sample_size).sum())?;
                }
                result.clear();
                let mut ctx = StepCtx {
                    ts,
                    annos: &mut annos,
                    delayed: self.delayed,
                    loaded: 0,
                };
                f(&mut ctx, &vecs, &sigs, &mut result)?;
                let loaded = ctx.loaded;
                let rsize: usize = result.iter().map(sample_size).sum();
                self.add_samples(loaded + rsize)?;
                temp += rsize + loaded;
                if instant {
                    if !self.delayed && contains_same_labelset(&result) {
                        return Err(exec_err(DUPLICATE_LABELSET));
                    }
                    let m: Mat = result
                        .drain(..)
                        .map(|s| match s.h {
                            Some(h) => ESeries {
                                hists: vec![(ts, h)],
                                metric: s.metric,
                                points: Vec::new(),
                                drop_name: s.drop_name,
                            },
                            None => ESeries {
                                hists: Vec::new(),
                                metric: s.metric,
                                points: vec![(ts, s.f)],
                                drop_name: s.drop_name,
                            },
                        })
                        .collect();
                    return Ok(Some(m));
                }
                for s in result.drain(..) {
                    // Most outputs reuse the same `Arc` step after step, so
                    // look them up by pointer before hashing the labels. The
                    // map keeps each `Arc` alive, so an address cannot be
                    // reused by another label set.
                    let ptr = Arc::as_ptr(&s.metric) as usize;
                    let i = match by_ptr.get(&ptr) {
                        Some(&(_, i)) => i,
                        None => {
                            let i = match index.get(&s.metric) {
                                Some(&i) => i,
                                None => {
                                    index.insert(s.metric.clone(), out.len());
                                    out.push(ESeries {
                                        hists: Vec::new(),
                                        metric: s.metric.clone(),
                                        points: Vec::with_capacity(nsteps.min(MAX_PREALLOC)),
                                        drop_name: s.drop_name,
                                    });
                                    last_ts.push(i64::MIN);
                                    out.len() - 1
                                }
                            };
                            by_ptr.insert(ptr, (s.metric.clone(), i));
                            i
                        }
                    };
                    if last_ts[i] == ts {
                        return Err(exec_err(DUPLICATE_LABELSET));
                    }
                    last_ts[i] = ts;
                    match s.h {
                        Some(h) => out[i].hists.push((ts, h)),
                        None => out[i].points.push((ts, s.f)),
                    }
                }
            }
            Ok(None)
        })();
        self.annos.merge(annos);
        let out = match res? {
            Some(m) => m,
            None => out,
        };
        self.cur_samples = original + total_points(&out);
        Ok(out)
    }

    /// Removes names marked for removal and merges series whose label sets
    /// became equal (Prometheus' `cleanupMetricLabels`).
    fn cleanup(&mut self, mut m: Mat) -> Result<Mat, QueryError> {
        for s in &mut m {
            if s.drop_name {
                s.metric = drop_metadata_arc(&s.metric);
            }
        }
        merge_same_labelset(m)
    }
}

/// A hasher for pointer-sized integer keys (addresses, pairs of addresses):
/// they are already unique, so a multiply-and-fold mix is plenty and far
/// cheaper than SipHash in per-step loops.
#[derive(Default, Clone, Copy)]
pub(crate) struct PtrHasher(u64);

impl std::hash::Hasher for PtrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        let x = (self.0 ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = x ^ (x >> 29);
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

pub(crate) type PtrMap<V> = HashMap<usize, V, std::hash::BuildHasherDefault<PtrHasher>>;

/// Finds the value of an instant selector at `rt`: the newest sample at or
/// before `rt` and strictly newer than `rt - lookback`, unless it is a
/// staleness marker. `idx` is a cursor that only moves forward, so a series
/// is scanned once over all steps.
pub(crate) fn lookup(
    samples: &[(i64, f64)],
    idx: &mut usize,
    rt: i64,
    lookback: i64,
) -> Option<(i64, f64)> {
    if *idx > 0 && samples.get(*idx - 1).is_some_and(|p| p.0 > rt) {
        // Time went backwards (cannot happen for monotonic steps); restart.
        *idx = samples.partition_point(|p| p.0 <= rt);
    }
    while *idx < samples.len() && samples[*idx].0 <= rt {
        *idx += 1;
    }
    if *idx == 0 {
        return None;
    }
    let p = samples[*idx - 1];
    if p.0 <= rt - lookback || is_stale_nan(p.1) {
        return None;
    }
    Some(p)
}

/// A float or a histogram value.
#[derive(Clone, Debug)]
pub(crate) enum Point {
    F(f64),
    H(Hist),
}

/// [`lookup`] over a series with float and histogram samples: the newest
/// sample of either kind at or before `rt` within the lookback, unless it
/// is a staleness marker.
pub(crate) fn lookup_any(
    s: &PSeries,
    fidx: &mut usize,
    hidx: &mut usize,
    rt: i64,
    lookback: i64,
) -> Option<Point> {
    if s.hists.is_empty() {
        return lookup(&s.samples, fidx, rt, lookback).map(|p| Point::F(p.1));
    }
    let f = newest_at(&s.samples, fidx, rt);
    let h = newest_at(&s.hists, hidx, rt);
    let (t, p) = match (f, h) {
        (Some(f), Some(h)) if f.0 > h.0 => (f.0, Point::F(f.1)),
        (_, Some(h)) => (h.0, Point::H(h.1.clone())),
        (Some(f), None) => (f.0, Point::F(f.1)),
        (None, None) => return None,
    };
    if t <= rt - lookback {
        return None;
    }
    if let Point::F(v) = p {
        if is_stale_nan(v) {
            return None;
        }
    }
    Some(p)
}

/// The newest element at or before `rt`, with a forward-only cursor.
fn newest_at<'a, V>(v: &'a [(i64, V)], idx: &mut usize, rt: i64) -> Option<&'a (i64, V)> {
    if *idx > 0 && v.get(*idx - 1).is_some_and(|p| p.0 > rt) {
        *idx = v.partition_point(|p| p.0 <= rt);
    }
    while *idx < v.len() && v[*idx].0 <= rt {
        *idx += 1;
    }
    if *idx == 0 {
        None
    } else {
        v.get(*idx - 1)
    }
}

pub(crate) fn empty_metric() -> Metric {
    thread_local! {
        static EMPTY: Metric = Arc::new(Labels::empty());
    }
    EMPTY.with(|e| e.clone())
}

/// Computes each series' join-signature ordinal, shared across operands.
fn signatures(mats: &[Mat], m: &Matching) -> Vec<Vec<u32>> {
    let mut names: Vec<&str> = m.labels.iter().map(String::as_str).collect();
    if !m.on {
        names.push(METRIC_NAME);
    }
    let mut map: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut buf = Vec::new();
    mats.iter()
        .map(|mat| {
            mat.iter()
                .map(|s| {
                    if m.on {
                        signature_into(&mut buf, &s.metric, |n| names.contains(&n));
                    } else {
                        signature_into(&mut buf, &s.metric, |n| !names.contains(&n));
                    }
                    let next = map.len() as u32;
                    *map.entry(buf.clone()).or_insert(next)
                })
                .collect()
        })
        .collect()
}

/// Samples one element counts as for `max_samples`.
pub(crate) fn sample_size(s: &ESample) -> usize {
    s.h.as_ref().map_or(1, |h| hist_size(h))
}

pub(crate) fn contains_same_labelset(v: &[ESample]) -> bool {
    if v.len() <= 1 {
        return false;
    }
    let mut seen = std::collections::HashSet::with_capacity(v.len());
    v.iter().any(|s| !seen.insert(&*s.metric))
}

/// Merges series with equal label sets; overlapping timestamps are an error.
pub(crate) fn merge_same_labelset(m: Mat) -> Result<Mat, QueryError> {
    if m.len() <= 1 {
        return Ok(m);
    }
    let mut seen = std::collections::HashSet::with_capacity(m.len());
    if m.iter().all(|s| seen.insert(&*s.metric)) {
        return Ok(m);
    }
    let mut index: HashMap<Metric, usize> = HashMap::new();
    let mut out: Mat = Vec::with_capacity(m.len());
    let mut merged = vec![false; 0];
    for s in m {
        match index.get(&s.metric) {
            Some(&i) => {
                out[i].points.extend(s.points);
                out[i].hists.extend(s.hists);
                merged[i] = true;
            }
            None => {
                index.insert(s.metric.clone(), out.len());
                out.push(s);
                merged.push(false);
            }
        }
    }
    for (i, s) in out.iter_mut().enumerate() {
        if merged[i] {
            s.points.sort_by_key(|p| p.0);
            s.hists.sort_by_key(|p| p.0);
            if s.points.windows(2).any(|w| w[0].0 == w[1].0)
                || s.hists.windows(2).any(|w| w[0].0 == w[1].0)
                || (!s.hists.is_empty()
                    && s.points
                        .iter()
                        .any(|p| s.hists.binary_search_by_key(&p.0, |h| h.0).is_ok()))
            {
                return Err(exec_err(DUPLICATE_LABELSET));
            }
        }
    }
    Ok(out)
}
