//! The experimental `info(v, {data label matchers})` function, following
//! Prometheus' `promql/info.go`.
//!
//! `info` enriches every series of `v` with the labels of the "info"
//! series (by default `target_info`) that share its identifying labels
//! (`instance`, `job`). The second argument picks the info metrics (its
//! `__name__` matchers) and which data labels to add (its other matchers,
//! which also filter the info series). Series of `v` that are info series
//! themselves pass through unchanged. At each step the newest info sample
//! (by its own timestamp) of each identity wins; two with the same
//! timestamp are an error, and so is an info label that two info metrics
//! give different values.
//!
//! The info series are selected once before evaluation, like every other
//! selector (`engine::Preparer::select_info`, with the effective name and
//! data-label matchers); restricting them to the identifying label values
//! of the base series, which Prometheus pushes into its select, is done
//! here, where those values are known.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use strata_tsdb::labels::{Labels, MatchType, Matcher, METRIC_NAME};

use crate::ast::{AtTime, CallNode, Kind, Node, Selector};
use crate::engine::{
    exec_err, lookup, lookup_any, Evaluator, PSeries, Point, QueryError, DUPLICATE_LABELSET,
};
use crate::util::set_label;
use crate::value::{ESeries, Hist, Mat, Metric};

const TARGET_INFO: &str = "target_info";
const IDENTIFYING: [&str; 2] = ["instance", "job"];

/// The selector of `info`'s second argument (under parentheses or a
/// step-invariant wrapper).
pub(crate) fn selector_of(n: &Node) -> Option<&Selector> {
    match &n.kind {
        Kind::Vector(sel) => Some(sel),
        Kind::Paren(x) | Kind::StepInvariant(x) => selector_of(x),
        _ => None,
    }
}

/// The reference time of the info series, as Prometheus'
/// `infoSelectTimestampAndOffset` finds it: the first selector of the
/// expression in syntax order gives its offset and `@`; without an `@`, the
/// enclosing subqueries (innermost first) add their offsets until one has
/// an `@`. Returns `(offset, @)`.
pub(crate) fn reference_time(n: &Node) -> (i64, Option<AtTime>) {
    fn walk<'a>(
        n: &'a Node,
        subqueries: &mut Vec<&'a crate::ast::Subquery>,
    ) -> Option<(i64, Option<AtTime>)> {
        match &n.kind {
            Kind::Vector(sel) | Kind::Matrix(sel, _) => {
                let (mut offset, mut at) = (sel.offset, sel.at);
                for sq in subqueries.iter().rev() {
                    if at.is_some() {
                        break;
                    }
                    offset += sq.offset;
                    at = sq.at;
                }
                Some((offset, at))
            }
            Kind::Number(_) | Kind::Str(..) => None,
            Kind::Paren(x) | Kind::Neg(x) | Kind::StepInvariant(x) => walk(x, subqueries),
            Kind::Subquery(sq) => {
                subqueries.push(sq);
                let r = walk(&sq.expr, subqueries);
                subqueries.pop();
                r
            }
            Kind::Call(c) => c.args.iter().find_map(|a| walk(a, subqueries)),
            Kind::Agg(a) => walk(&a.expr, subqueries)
                .or_else(|| a.param.as_ref().and_then(|p| walk(p, subqueries))),
            Kind::Binary(b) => walk(&b.lhs, subqueries).or_else(|| walk(&b.rhs, subqueries)),
        }
    }
    walk(n, &mut Vec::new()).unwrap_or((0, None))
}

/// Prometheus' `effectiveInfoNameMatchers`: the `__name__` matchers as
/// given when one of them selects positively, else restricted to `*_info`
/// metrics, and `target_info` when there are none.
fn effective_name_matchers(name_ms: &[Matcher]) -> Vec<Matcher> {
    if name_ms
        .iter()
        .any(|m| matches!(m.kind, MatchType::Equal | MatchType::Regex))
    {
        return name_ms.to_vec();
    }
    if !name_ms.is_empty() {
        let mut out = Vec::with_capacity(name_ms.len() + 1);
        if let Ok(m) = Matcher::new(MatchType::Regex, METRIC_NAME, ".+_info") {
            out.push(m);
        }
        out.extend(name_ms.iter().cloned());
        return out;
    }
    vec![Matcher::equal(METRIC_NAME, TARGET_INFO)]
}

/// The matchers the info series are selected with: the data-label
/// matchers and the effective name matchers.
pub(crate) fn info_select_matchers(data: &[Matcher]) -> Vec<Matcher> {
    let names: Vec<Matcher> = data
        .iter()
        .filter(|m| m.name == METRIC_NAME)
        .cloned()
        .collect();
    let mut out: Vec<Matcher> = data
        .iter()
        .filter(|m| m.name != METRIC_NAME)
        .cloned()
        .collect();
    out.extend(effective_name_matchers(&names));
    out
}

/// The join key of a series with the info metric `name`: the name plus the
/// identifying labels the series has.
fn signature(name: &str, l: &Labels) -> String {
    let mut s = String::from(name);
    for id in IDENTIFYING {
        if let Some(v) = l.get(id) {
            s.push('\u{ff}');
            s.push_str(id);
            s.push('=');
            s.push_str(v);
        }
    }
    s
}

/// The value of a series at step `ts`, advancing its cursors.
fn value_at(s: &ESeries, c: &mut (usize, usize), ts: i64) -> Option<(f64, Option<Hist>)> {
    while c.0 < s.points.len() && s.points[c.0].0 < ts {
        c.0 += 1;
    }
    if s.points.get(c.0).is_some_and(|p| p.0 == ts) {
        return Some((s.points[c.0].1, None));
    }
    while c.1 < s.hists.len() && s.hists[c.1].0 < ts {
        c.1 += 1;
    }
    match s.hists.get(c.1) {
        Some((t, h)) if *t == ts => Some((0.0, Some(h.clone()))),
        _ => None,
    }
}

impl Evaluator<'_> {
    pub(crate) fn eval_info(&mut self, c: &CallNode) -> Result<Mat, QueryError> {
        let Some(arg) = c.args.first() else {
            return Err(exec_err("info() needs an argument"));
        };
        let base = self.eval_matrix(arg)?;
        let info_sel = c.args.get(1).and_then(selector_of);
        let data_ms: Vec<Matcher> = info_sel.map(|s| s.matchers.clone()).unwrap_or_default();
        let name_ms: Vec<Matcher> = data_ms
            .iter()
            .filter(|m| m.name == METRIC_NAME)
            .cloned()
            .collect();
        let eff = effective_name_matchers(&name_ms);
        // Base series that are info series themselves are left alone.
        let ignored: Vec<bool> = base
            .iter()
            .map(|s| {
                let n = s.metric.metric_name();
                eff.iter().all(|m| m.matches(n))
            })
            .collect();
        // Data-label matchers by label name, without `__name__`.
        let mut data: BTreeMap<&str, Vec<&Matcher>> = BTreeMap::new();
        for m in data_ms.iter().filter(|m| m.name != METRIC_NAME) {
            data.entry(m.name.as_str()).or_default().push(m);
        }
        let all_match_empty = data.values().flatten().all(|m| m.matches_empty());

        // Identifying label values of the base series.
        let mut id_vals: HashMap<&str, HashSet<&str>> = HashMap::new();
        for (s, ign) in base.iter().zip(&ignored) {
            if *ign {
                continue;
            }
            for id in IDENTIFYING {
                if let Some(v) = s.metric.get(id).filter(|v| !v.is_empty()) {
                    id_vals.entry(id).or_default().insert(v);
                }
            }
        }
        let sels = self.sels;
        let selected: &[PSeries] = info_sel
            .and_then(|s| sels.get(s.id))
            .map_or(&[], |v| v.as_slice());
        let info: Vec<&PSeries> = if id_vals.is_empty() {
            Vec::new()
        } else {
            selected
                .iter()
                .filter(|s| {
                    id_vals
                        .iter()
                        .all(|(l, vals)| s.metric.get(l).is_some_and(|v| vals.contains(v)))
                })
                .collect()
        };
        let info_names: Vec<String> = {
            let mut n: Vec<String> = info
                .iter()
                .map(|s| s.metric.metric_name().to_string())
                .collect();
            n.sort();
            n.dedup();
            n
        };
        let info_sigs: Vec<String> = info
            .iter()
            .map(|s| signature(s.metric.metric_name(), &s.metric))
            .collect();
        let base_sigs: Vec<Vec<String>> = base
            .iter()
            .map(|s| info_names.iter().map(|n| signature(n, &s.metric)).collect())
            .collect();

        let (offset, at) = reference_time(arg);
        let at = at.and_then(AtTime::ts);
        let lookback = self.lookback;
        let mut base_cur = vec![(0usize, 0usize); base.len()];
        let mut info_cur = vec![(0usize, 0usize); info.len()];
        let mut out: Mat = Vec::new();
        let mut index: HashMap<Metric, usize> = HashMap::new();
        let mut last_ts: Vec<i64> = Vec::new();
        let steps: Vec<i64> = self.steps().collect();
        for ts in steps {
            self.check_deadline()?;
            // The newest info sample of each identity at this step.
            let mut right: HashMap<&str, (usize, i64)> = HashMap::new();
            let rt = at.unwrap_or(ts) - offset;
            for (j, s) in info.iter().enumerate() {
                if !s.hists.is_empty() {
                    let (fc, hc) = &mut info_cur[j];
                    if let Some(Point::H(_)) = lookup_any(s, fc, hc, rt, lookback) {
                        return Err(exec_err(format!(
                            "this should be an info metric, with float samples: {}",
                            s.metric
                        )));
                    }
                }
                let Some((orig_t, _)) = lookup(&s.samples, &mut info_cur[j].0, rt, lookback) else {
                    continue;
                };
                match right.get(info_sigs[j].as_str()) {
                    Some(&(_, t)) if t > orig_t => {}
                    Some(&(k, t)) if t == orig_t => {
                        return Err(exec_err(format!(
                            "found duplicate series for info metric: existing {} @ {t}, new {} @ {orig_t}",
                            info[k].metric, s.metric
                        )));
                    }
                    _ => {
                        right.insert(info_sigs[j].as_str(), (j, orig_t));
                    }
                }
            }
            for (i, s) in base.iter().enumerate() {
                let Some((f, h)) = value_at(s, &mut base_cur[i], ts) else {
                    continue;
                };
                let metric: Metric = if ignored[i] {
                    s.metric.clone()
                } else {
                    let mut add: BTreeMap<&str, &str> = BTreeMap::new();
                    let mut seen = 0;
                    for sig in &base_sigs[i] {
                        let Some(&(j, _)) = right.get(sig.as_str()) else {
                            continue;
                        };
                        for l in info[j].metric.iter() {
                            let name: &str = &l.name;
                            if name == METRIC_NAME || (!data.is_empty() && !data.contains_key(name))
                            {
                                continue;
                            }
                            if let Some(v) = add.get(name) {
                                if *v != &*l.value {
                                    return Err(exec_err(format!("conflicting label: {name}")));
                                }
                            }
                            if s.metric.get(name).is_some() {
                                continue;
                            }
                            add.insert(name, &l.value);
                        }
                        seen += 1;
                    }
                    if seen == 0 && !all_match_empty {
                        continue;
                    }
                    if add.is_empty() {
                        s.metric.clone()
                    } else {
                        let mut l = (*s.metric).clone();
                        for (n, v) in add {
                            l = set_label(&l, n, v);
                        }
                        Arc::new(l)
                    }
                };
                let k = match index.get(&metric) {
                    Some(&k) => k,
                    None => {
                        index.insert(metric.clone(), out.len());
                        out.push(ESeries {
                            metric,
                            points: Vec::new(),
                            hists: Vec::new(),
                            drop_name: s.drop_name,
                        });
                        last_ts.push(i64::MIN);
                        out.len() - 1
                    }
                };
                if last_ts[k] == ts {
                    return Err(exec_err(DUPLICATE_LABELSET));
                }
                last_ts[k] = ts;
                match h {
                    Some(h) => {
                        self.add_samples(crate::value::hist_size(&h))?;
                        out[k].hists.push((ts, h));
                    }
                    None => {
                        self.add_samples(1)?;
                        out[k].points.push((ts, f));
                    }
                }
            }
        }
        Ok(out)
    }
}
