//! Which queries a partitioned storage can evaluate whole, store by store.
//!
//! A federated querier reads stores that each hold one part of the data,
//! told apart by their external labels (`cluster="c1"`, `cluster="c2"`):
//! every series of a store carries that store's values of the same label
//! names (the *partition labels*), and no two stores share a set of values.
//! A query is **partition-local** when evaluating it on each store alone and
//! concatenating the answers gives exactly the answer over all data. Then the
//! querier can hand the whole query to every store (Thanos' distributed
//! mode, over the `thanos.Query` API) and receive one series per group
//! instead of every raw series.
//!
//! [`is_partition_local`] decides it from the syntax tree, conservatively:
//! a node is *local* when each output series depends on one store's data
//! only and still carries all partition labels, so later operators cannot
//! mix stores either. Local nodes are:
//! - selectors, range selectors and subqueries (with an explicit step) of
//!   local nodes;
//! - calls of functions that work series by series (`rate`, `*_over_time`,
//!   `histogram_quantile`, math, date functions with an argument, …) whose
//!   vector arguments are local and whose other arguments are constants;
//! - aggregations whose groups keep every partition label (`by` lists them
//!   all, `without` lists none of them), with a constant parameter;
//! - binary operations of a local node with a constant, or of two local
//!   nodes matched on every partition label (`on` lists them all, or
//!   `ignoring`/`group_*` lists none of them);
//! - negation and parentheses of local nodes.
//!
//! Everything else is not: `vector()`, `scalar()`, `absent*()`, `sort*()`,
//! `count_values` (it writes a label from values), `limitk`,
//! `label_replace`/`label_join` (they may rewrite a partition label),
//! `info()`, experimental functions, aggregations or matchings across
//! partitions. Constants are number and string literals, `time()`, `pi()`
//! and arithmetic of them (the same value on every store).

use crate::ast::{AggOp, Func, Kind, Node};

/// What a node is for this analysis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// The same value on every store (no data involved).
    Const,
    /// Store-local data carrying every partition label.
    Local,
}

/// Whether `root` (a converted, preprocessed query) can be evaluated store
/// by store with answers concatenated; see the module docs. `labels` are
/// the partition label names; with none, nothing is partition-local.
pub(crate) fn is_partition_local(root: &Node, labels: &[String]) -> bool {
    !labels.is_empty() && shape(root, labels) == Some(Shape::Local)
}

fn shape(n: &Node, labels: &[String]) -> Option<Shape> {
    match &n.kind {
        Kind::Number(_) | Kind::Str(..) => Some(Shape::Const),
        Kind::Vector(_) | Kind::Matrix(..) => Some(Shape::Local),
        // Without an explicit step a subquery uses the engine's default
        // step, which the store's engine may set differently.
        Kind::Subquery(s) if s.step == 0 => None,
        Kind::Subquery(s) => local(&s.expr, labels),
        Kind::Neg(inner) | Kind::Paren(inner) | Kind::StepInvariant(inner) => shape(inner, labels),
        Kind::Call(c) => {
            if matches!(c.func, Func::Pi | Func::Time) {
                return Some(Shape::Const);
            }
            if !per_series(c.func) || c.args.is_empty() {
                return None;
            }
            if c.func == Func::HistogramQuantile && labels.iter().any(|l| l == "le") {
                return None;
            }
            let mut any_local = false;
            for a in &c.args {
                match shape(a, labels)? {
                    Shape::Local => any_local = true,
                    Shape::Const => {}
                }
            }
            any_local.then_some(Shape::Local)
        }
        Kind::Agg(a) => {
            // `limitk` picks series by hash across the whole input;
            // `count_values` writes its label, which may be a partition
            // label, from sample values.
            if matches!(a.op, AggOp::Limitk | AggOp::LimitRatio | AggOp::CountValues) {
                return None;
            }
            if let Some(p) = &a.param {
                if shape(p, labels)? != Shape::Const {
                    return None;
                }
            }
            local(&a.expr, labels)?;
            let keeps_all = if a.without {
                !labels.iter().any(|l| a.grouping.contains(l))
            } else {
                labels.iter().all(|l| a.grouping.contains(l))
            };
            keeps_all.then_some(Shape::Local)
        }
        Kind::Binary(b) => {
            let (l, r) = (shape(&b.lhs, labels)?, shape(&b.rhs, labels)?);
            match (l, r) {
                (Shape::Const, Shape::Const) => Some(Shape::Const),
                (Shape::Local, Shape::Const) | (Shape::Const, Shape::Local) => Some(Shape::Local),
                (Shape::Local, Shape::Local) => {
                    let m = b.matching.as_ref()?;
                    if m.fill.0.is_some() || m.fill.1.is_some() {
                        return None;
                    }
                    let matched_on_all = if m.on {
                        labels.iter().all(|l| m.labels.contains(l))
                    } else {
                        !labels.iter().any(|l| m.labels.contains(l))
                    };
                    let copies_none = !labels.iter().any(|l| m.include.contains(l));
                    (matched_on_all && copies_none).then_some(Shape::Local)
                }
            }
        }
    }
}

/// How far back (ms) before its evaluation window `query` reads through
/// range selectors, subqueries and offsets (the lookback delta not
/// included); `None` when that cannot be told (an `@` modifier, or a query
/// that does not parse). Servers use it to tell short queries from long
/// ones before evaluating them.
pub fn query_reach(query: &str, opts: &crate::engine::EngineOptions) -> Option<i64> {
    let expr = crate::parser::parse(query, opts).ok()?;
    let node = crate::ast::Converter::new(query, opts.enable_experimental_functions)
        .convert(&expr)
        .ok()?;
    reach(&node)
}

/// How far before the evaluation window a query reads: the largest range
/// selector or subquery range plus offset along any path (lookback not
/// included); `None` with an `@` modifier (it may read any time).
pub(crate) fn reach(n: &Node) -> Option<i64> {
    let sel = |s: &crate::ast::Selector, range: i64| -> Option<i64> {
        if s.at.is_some() {
            return None;
        }
        Some(range.saturating_add(s.offset.max(0)))
    };
    match &n.kind {
        Kind::Number(_) | Kind::Str(..) => Some(0),
        Kind::Vector(s) => sel(s, 0),
        Kind::Matrix(s, range) => sel(s, *range),
        Kind::Subquery(sq) => {
            if sq.at.is_some() {
                return None;
            }
            Some(
                reach(&sq.expr)?
                    .saturating_add(sq.range)
                    .saturating_add(sq.offset.max(0)),
            )
        }
        Kind::Neg(i) | Kind::Paren(i) | Kind::StepInvariant(i) => reach(i),
        Kind::Call(c) => c.args.iter().try_fold(0i64, |m, a| Some(m.max(reach(a)?))),
        Kind::Agg(a) => {
            let p = match &a.param {
                Some(p) => reach(p)?,
                None => 0,
            };
            Some(p.max(reach(&a.expr)?))
        }
        Kind::Binary(b) => Some(reach(&b.lhs)?.max(reach(&b.rhs)?)),
    }
}

fn local(n: &Node, labels: &[String]) -> Option<Shape> {
    (shape(n, labels)? == Shape::Local).then_some(Shape::Local)
}

/// Functions whose output series are their input series (same labels, or
/// only `__name__` dropped), each computed from that series alone. Date
/// functions qualify only with an argument (without one they read
/// `vector(time())`), which [`shape`] requires of every call.
fn per_series(f: Func) -> bool {
    use Func::*;
    matches!(
        f,
        Abs | Acos
            | Acosh
            | Asin
            | Asinh
            | Atan
            | Atanh
            | AvgOverTime
            | Ceil
            | Changes
            | Clamp
            | ClampMax
            | ClampMin
            | Cos
            | Cosh
            | CountOverTime
            | DaysInMonth
            | DayOfMonth
            | DayOfWeek
            | DayOfYear
            | Deg
            | Delta
            | Deriv
            | DoubleExponentialSmoothing
            | Exp
            | Floor
            | HistogramAvg
            | HistogramCount
            | HistogramFraction
            | HistogramQuantile
            | HistogramStddev
            | HistogramStdvar
            | HistogramSum
            | Hour
            | Idelta
            | Increase
            | Irate
            | LastOverTime
            | Ln
            | Log10
            | Log2
            | MaxOverTime
            | MinOverTime
            | Minute
            | Month
            | PredictLinear
            | PresentOverTime
            | QuantileOverTime
            | Rad
            | Rate
            | Resets
            | Round
            | Sgn
            | Sin
            | Sinh
            | Sqrt
            | StddevOverTime
            | StdvarOverTime
            | SumOverTime
            | Tan
            | Tanh
            | Timestamp
            | Year
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineOptions;

    fn local_for(q: &str, labels: &[&str]) -> bool {
        let expr = crate::parser::parse(q, &EngineOptions::default()).expect(q);
        let node = crate::ast::Converter::new(q, false)
            .convert(&expr)
            .expect(q);
        let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
        is_partition_local(&node, &labels)
    }

    #[test]
    fn store_local_queries() {
        for q in [
            "up",
            "rate(x[5m])",
            "sum by (cluster) (container_memory_working_set_bytes)",
            "sum by (cluster, namespace) (rate(c[5m]))",
            "sum without (pod) (rate(c[5m]))",
            "1 - sum by (cluster) (a) / sum by (cluster) (b)",
            "100 * (1 - sum by (cluster) (a) / sum by (cluster) (b))",
            "count by (cluster) (kube_namespace_status_phase{phase=\"Active\"} == 1)",
            "histogram_quantile(0.99, sum by (cluster, le) (rate(b_bucket[5m])))",
            "sum by (cluster) (rate(r{code=~\"5..\"}[5m])) / sum by (cluster) (rate(r[5m]))",
            "topk by (cluster) (3, sum by (cluster, pod) (m))",
            "a / on (cluster, job) b",
            "a * ignoring (pod) group_left (node) b",
            "max_over_time(rate(x[1m])[10m:1m])",
            "sum by (cluster) (x) > bool 2 * pi()",
            "day_of_week(timestamp(up))",
            "quantile by (cluster) (0.9, x)",
            "a or b",
        ] {
            assert!(local_for(q, &["cluster"]), "{q} should be partition-local");
        }
    }

    #[test]
    fn queries_that_mix_stores() {
        for q in [
            "sum(x)",
            "sum by (namespace) (x)",
            "sum without (cluster) (x)",
            "topk(5, sum by (cluster, pod) (m))",
            "a / on (job) b",
            "a / ignoring (cluster) b",
            "a * on (pod) group_left (cluster) b",
            "vector(1)",
            "scalar(x) * y",
            "absent(x)",
            "sort(x)",
            "label_replace(x, \"cluster\", \"a\", \"\", \"\")",
            "1 + 1",
            "time()",
            "day_of_week()",
            "max_over_time(rate(x[1m])[10m:])",
            "x + scalar(y)",
            "count_values by (cluster) (\"cluster\", x)",
        ] {
            assert!(
                !local_for(q, &["cluster"]),
                "{q} must not be partition-local"
            );
        }
        // Several partition labels: every one must be kept.
        assert!(local_for(
            "sum by (cluster, region) (x)",
            &["cluster", "region"]
        ));
        assert!(!local_for("sum by (cluster) (x)", &["cluster", "region"]));
        // No partition labels: nothing is local.
        assert!(!local_for("up", &[]));
    }
}
