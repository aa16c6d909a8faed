//! Function calls.
//!
//! Three shapes of function exist:
//! - functions over a range vector (`rate`, `*_over_time`, ...) are driven by
//!   [`Evaluator::eval_range_function`], which walks each input series once and
//!   slides the `(t - offset - range, t - offset]` window over its samples;
//!   the per-window arithmetic is in [`range_value`];
//! - `label_replace`/`label_join` rewrite whole series, not samples;
//! - everything else is called once per step on instant vectors and scalars
//!   ([`instant_call`]).

use std::collections::HashMap;
use std::sync::Arc;

use regex::Regex;
use strata_tsdb::labels::{Labels, MatchType, METRIC_NAME};

use crate::ast::{AtTime, CallNode, Func, Kind, Node, VType};
use crate::engine::{
    empty_metric, exec_err, lookup, merge_same_labelset, Evaluator, QueryError, StepCtx,
};
use crate::lex::go_quote_bytes;
use crate::quantile::{bucket_fraction, bucket_quantile, quantile, Bucket};
use crate::util::{
    civil_from_days, day_of_year, days_in_month, drop_metadata_arc, filter_labels, go_f64_to_i64,
    go_max, go_min, kahan_inc, natural_less, parse_go_float, set_label, signature_into,
    valid_label_name,
};
use crate::value::{ESample, ESeries, Mat, Metric};

/// One input series of a range function: labels, samples, drop-name flag.
type WindowInput<'a> = (&'a Metric, &'a [(i64, f64)], bool);

/// Inputs of one window evaluation.
pub(crate) struct Window<'a> {
    pub samples: &'a [(i64, f64)],
    /// Evaluation timestamp of the step.
    pub ts: i64,
    /// Inclusive end of the window (`ts - offset`, or `@ - offset`).
    pub end: i64,
    pub range: i64,
    /// Scalar arguments at this step, in argument order.
    pub scalars: &'a [f64],
}

impl Evaluator<'_> {
    pub(crate) fn eval_call(&mut self, c: &CallNode, node: &Node) -> Result<Mat, QueryError> {
        if matches!(c.func, Func::Timestamp) {
            if let Some(Node {
                kind: Kind::Vector(sel),
                ..
            }) = c.args.first().map(Node::unparen)
            {
                return self.eval_timestamp_of_selector(sel);
            }
        }
        if let Some(i) = c
            .args
            .iter()
            .position(|a| matches!(a.unparen().kind, Kind::Matrix(..) | Kind::Subquery(_)))
        {
            return self.eval_range_function(c, i);
        }
        match c.func {
            Func::LabelReplace => return self.eval_label_replace(c),
            Func::LabelJoin => return self.eval_label_join(c),
            Func::Sort | Func::SortDesc | Func::SortByLabel | Func::SortByLabelDesc
                if self.start != self.end =>
            {
                self.annos.warn(
                    "sort is ineffective for range queries since results are always ordered by labels",
                    node.pos,
                );
            }
            _ => {}
        }
        let args: Vec<&Node> = c.args.iter().collect();
        let mut hist_state = HistState::default();
        self.range_eval(&args, None, |ctx, v, _, out| {
            instant_call(c, v, ctx, out, &mut hist_state)
        })
    }

    /// `timestamp(selector)` reports the sample's own timestamp, so it reads
    /// the selector directly instead of its (step-aligned) evaluation result.
    fn eval_timestamp_of_selector(
        &mut self,
        sel: &crate::ast::Selector,
    ) -> Result<Mat, QueryError> {
        let sels = self.sels;
        let series: &[crate::engine::PSeries] = sels.get(sel.id).map_or(&[], |s| s.as_slice());
        let mut cursors = vec![0usize; series.len()];
        let lookback = self.lookback;
        let at = sel.at.and_then(AtTime::ts);
        let offset = sel.offset;
        self.range_eval(&[], None, |ctx, _, _, out| {
            // With `@`, Prometheus looks up exactly the `@` time, ignoring the offset.
            let rt = at.unwrap_or(ctx.ts - offset);
            for (i, s) in series.iter().enumerate() {
                if let Some((t, _)) = lookup(&s.samples, &mut cursors[i], rt, lookback) {
                    ctx.loaded += 1;
                    let metric = if ctx.delayed {
                        s.metric.clone()
                    } else {
                        drop_metadata_arc(&s.metric)
                    };
                    out.push(ESample {
                        metric,
                        t: ctx.ts,
                        f: t as f64 / 1000.0,
                        drop_name: true,
                    });
                }
            }
            Ok(())
        })
    }

    fn eval_range_function(&mut self, c: &CallNode, mi: usize) -> Result<Mat, QueryError> {
        let f = c.func;
        let arg = c.args[mi].unparen();
        // Scalar arguments: their points, read with a cursor per step.
        let mut scalar_args: Vec<Vec<(i64, f64)>> = Vec::new();
        for (i, a) in c.args.iter().enumerate() {
            if i == mi || a.vtype() == VType::String {
                continue;
            }
            let m = self.eval_matrix(a)?;
            scalar_args.push(m.into_iter().next().map(|s| s.points).unwrap_or_default());
        }
        let mut scalar_cursors = vec![0usize; scalar_args.len()];

        let sels = self.sels;
        let subquery_result: Mat;
        let mut inputs: Vec<WindowInput> = Vec::new();
        let (offset, at, range, sub_samples) = match &arg.kind {
            Kind::Matrix(sel, range) => {
                if let Some(series) = sels.get(sel.id) {
                    for s in series {
                        inputs.push((&s.metric, &s.samples, false));
                    }
                }
                (sel.offset, sel.at.and_then(AtTime::ts), *range, 0)
            }
            Kind::Subquery(sq) => {
                let mut m = self.run_subquery(sq)?;
                for s in &mut m {
                    s.points.retain(|p| !crate::value::is_stale_nan(p.1));
                }
                let total = crate::value::total_points(&m);
                subquery_result = m;
                for s in &subquery_result {
                    inputs.push((&s.metric, &s.points, s.drop_name));
                }
                (sq.offset, sq.at.and_then(AtTime::ts), sq.range, total)
            }
            _ => return Err(exec_err("expected a range vector argument")),
        };
        let keeps_name = matches!(f, Func::LastOverTime | Func::FirstOverTime);
        let n = self.num_steps();
        let mut out: Mat = Vec::with_capacity(inputs.len());
        let mut scalars = vec![0.0; scalar_args.len()];
        let mut window_held = 0usize;
        let arg_pos = arg.pos;
        let mut annos = std::mem::take(&mut self.annos);
        let result = (|| -> Result<(), QueryError> {
            for (metric, samples, in_drop) in &inputs {
                self.check_deadline()?;
                self.cur_samples = self.cur_samples.saturating_sub(window_held);
                window_held = 0;
                let drop_name = !keeps_name || *in_drop;
                let out_metric = if !self.delayed && drop_name {
                    drop_metadata_arc(metric)
                } else {
                    (*metric).clone()
                };
                let mut points: Vec<(i64, f64)> = Vec::new();
                let (mut lo, mut hi) = (0usize, 0usize);
                scalar_cursors.iter_mut().for_each(|c| *c = 0);
                for (k, ts) in self.steps().enumerate() {
                    if k % 1024 == 1023 {
                        self.check_deadline()?;
                    }
                    let we = at.unwrap_or(ts) - offset;
                    let ws = we - range;
                    while hi < samples.len() && samples[hi].0 <= we {
                        hi += 1;
                    }
                    while lo < hi && samples[lo].0 <= ws {
                        lo += 1;
                    }
                    let len = hi - lo;
                    if len > window_held {
                        self.add_samples(len - window_held)?;
                    } else {
                        self.cur_samples = self.cur_samples.saturating_sub(window_held - len);
                    }
                    window_held = len;
                    if len == 0 {
                        continue;
                    }
                    for (j, a) in scalar_args.iter().enumerate() {
                        let c = &mut scalar_cursors[j];
                        while *c < a.len() && a[*c].0 < ts {
                            *c += 1;
                        }
                        scalars[j] = match a.get(*c) {
                            Some(&(t, v)) if t == ts => v,
                            _ => f64::NAN,
                        };
                    }
                    let w = Window {
                        samples: &samples[lo..hi],
                        ts,
                        end: we,
                        range,
                        scalars: &scalars,
                    };
                    if let Some(v) = range_value(f, &w, &mut annos, c)? {
                        if points.is_empty() {
                            points.reserve(n.min(5000));
                        }
                        points.push((ts, v));
                    }
                }
                if !points.is_empty() {
                    self.add_samples(points.len())?;
                    if matches!(f, Func::Rate | Func::Increase) {
                        let name = metric.metric_name();
                        if !name.is_empty()
                            && !["_total", "_sum", "_count", "_bucket"]
                                .iter()
                                .any(|s| name.ends_with(s))
                        {
                            annos.info(
                                format!(
                                    "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {name:?}"
                                ),
                                arg_pos,
                            );
                        }
                    }
                    out.push(ESeries {
                        metric: out_metric,
                        points,
                        drop_name,
                    });
                }
            }
            Ok(())
        })();
        self.annos.merge(annos);
        result?;
        self.cur_samples = self.cur_samples.saturating_sub(window_held);
        self.cur_samples = self.cur_samples.saturating_sub(sub_samples);

        if f == Func::AbsentOverTime {
            return absent_over_time(self, out, &c.args[mi]);
        }
        if !self.delayed {
            let mut seen = std::collections::HashSet::new();
            if !out.iter().all(|s| seen.insert(&*s.metric)) {
                return Err(exec_err(crate::engine::DUPLICATE_LABELSET));
            }
        }
        Ok(out)
    }

    fn eval_label_replace(&mut self, c: &CallNode) -> Result<Mat, QueryError> {
        let (dst, dst_raw) = str_arg(&c.args[1]);
        let (repl, _) = str_arg(&c.args[2]);
        let (src, _) = str_arg(&c.args[3]);
        let (re_str, _) = str_arg(&c.args[4]);
        let re = Regex::new(&format!("^(?s:{re_str})$")).map_err(|_| {
            exec_err(format!(
                "invalid regular expression in label_replace(): {re_str}"
            ))
        })?;
        if !valid_label_name(dst_raw) {
            return Err(exec_err(format!(
                "invalid destination label name in label_replace(): {}",
                String::from_utf8_lossy(dst_raw)
            )));
        }
        let mut m = self.eval_matrix(&c.args[0])?;
        let mut buf = String::new();
        for s in &mut m {
            let v = s.metric.get(src).unwrap_or("");
            if let Some(caps) = re.captures(v) {
                buf.clear();
                caps.expand(repl, &mut buf);
                s.metric = Arc::new(set_label(&s.metric, dst, &buf));
                s.drop_name = if dst == METRIC_NAME {
                    false
                } else {
                    s.drop_name
                };
            }
        }
        merge_same_labelset(m)
    }

    fn eval_label_join(&mut self, c: &CallNode) -> Result<Mat, QueryError> {
        let (dst, dst_raw) = str_arg(&c.args[1]);
        let (sep, _) = str_arg(&c.args[2]);
        let mut srcs = Vec::new();
        for a in &c.args[3..] {
            let (s, raw) = str_arg(a);
            if !valid_label_name(raw) {
                return Err(exec_err(format!(
                    "invalid source label name in label_join(): {}",
                    String::from_utf8_lossy(raw)
                )));
            }
            srcs.push(s);
        }
        if !valid_label_name(dst_raw) {
            return Err(exec_err(format!(
                "invalid destination label name in label_join(): {}",
                String::from_utf8_lossy(dst_raw)
            )));
        }
        let mut m = self.eval_matrix(&c.args[0])?;
        for s in &mut m {
            let joined = srcs
                .iter()
                .map(|n| s.metric.get(n).unwrap_or(""))
                .collect::<Vec<_>>()
                .join(sep);
            s.metric = Arc::new(set_label(&s.metric, dst, &joined));
            s.drop_name = if dst == METRIC_NAME {
                false
            } else {
                s.drop_name
            };
        }
        merge_same_labelset(m)
    }
}

fn str_arg(n: &Node) -> (&str, &[u8]) {
    match &n.unparen().kind {
        Kind::Str(s, raw) => (s.as_str(), raw.as_slice()),
        _ => ("", &[]),
    }
}

/// Labels `absent`/`absent_over_time` report: the equality matchers of the
/// argument selector, minus any label matched more than once or otherwise.
fn absent_labels(arg: &Node) -> Labels {
    let matchers = match &arg.unparen().kind {
        Kind::Vector(sel) | Kind::Matrix(sel, _) => &sel.matchers,
        _ => return Labels::empty(),
    };
    let mut has: HashMap<&str, bool> = HashMap::new();
    let mut out: Vec<(String, String)> = Vec::new();
    for m in matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if m.kind == MatchType::Equal && !has.get(m.name.as_str()).copied().unwrap_or(false) {
            out.retain(|(n, _)| n != &m.name);
            out.push((m.name.clone(), m.value.clone()));
            has.insert(&m.name, true);
        } else {
            out.retain(|(n, _)| n != &m.name);
        }
    }
    Labels::from_pairs(out)
}

fn absent_over_time(ev: &mut Evaluator, m: Mat, arg: &Node) -> Result<Mat, QueryError> {
    let steps = ev.num_steps();
    if m.iter().any(|s| s.points.len() == steps) {
        return Ok(Vec::new());
    }
    let mut found = std::collections::HashSet::new();
    for s in &m {
        for p in &s.points {
            found.insert(p.0);
        }
    }
    let mut points: Vec<(i64, f64)> = Vec::new();
    for t in ev.steps() {
        if !found.contains(&t) {
            // Counted like any output point so a huge step count fails on
            // the sample limit instead of exhausting memory.
            ev.add_samples(1)?;
            if points.len().is_multiple_of(4096) {
                ev.check_deadline()?;
            }
            points.push((t, 1.0));
        }
    }
    if points.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![ESeries {
        metric: Arc::new(absent_labels(arg)),
        points,
        drop_name: true,
    }])
}

// ---------------------------------------------------------------------------
// Functions over range vectors.

/// Evaluates `f` over one window. `None` means no output for this step.
fn range_value(
    f: Func,
    w: &Window,
    annos: &mut crate::annotations::Annotations,
    c: &CallNode,
) -> Result<Option<f64>, QueryError> {
    let s = w.samples;
    let vals = || s.iter().map(|p| p.1);
    Ok(match f {
        Func::Rate => extrapolated_rate(w, true, true),
        Func::Increase => extrapolated_rate(w, true, false),
        Func::Delta => extrapolated_rate(w, false, false),
        Func::Irate => instant_value(s, true),
        Func::Idelta => instant_value(s, false),
        Func::AvgOverTime => Some(avg(s)),
        Func::CountOverTime => Some(s.len() as f64),
        Func::SumOverTime => {
            let (mut sum, mut comp) = (0.0, 0.0);
            for v in vals() {
                (sum, comp) = kahan_inc(v, sum, comp);
            }
            Some(if sum.is_infinite() { sum } else { sum + comp })
        }
        Func::MinOverTime => Some(compare_over_time(s, |cur, m| cur < m || m.is_nan()).1),
        Func::MaxOverTime => Some(compare_over_time(s, |cur, m| cur > m || m.is_nan()).1),
        Func::TsOfMinOverTime => {
            Some(compare_over_time(s, |cur, m| cur <= m || m.is_nan()).0 as f64 / 1000.0)
        }
        Func::TsOfMaxOverTime => {
            Some(compare_over_time(s, |cur, m| cur >= m || m.is_nan()).0 as f64 / 1000.0)
        }
        Func::TsOfFirstOverTime => Some(s[0].0 as f64 / 1000.0),
        Func::TsOfLastOverTime => Some(s[s.len() - 1].0 as f64 / 1000.0),
        Func::LastOverTime => Some(s[s.len() - 1].1),
        Func::FirstOverTime => Some(s[0].1),
        Func::PresentOverTime | Func::AbsentOverTime => Some(1.0),
        Func::StddevOverTime => Some(variance(s).sqrt()),
        Func::StdvarOverTime => Some(variance(s)),
        Func::QuantileOverTime => {
            let q = w.scalars.first().copied().unwrap_or(f64::NAN);
            if q.is_nan() || !(0.0..=1.0).contains(&q) {
                let pos = c.args.first().map_or(0, |a| a.pos);
                annos.warn(
                    format!(
                        "quantile value should be between 0 and 1, got {}",
                        crate::util::fmt_g(q)
                    ),
                    pos,
                );
            }
            let mut v: Vec<f64> = vals().collect();
            Some(quantile(q, &mut v))
        }
        Func::MadOverTime => {
            if vals().any(f64::is_nan) {
                Some(f64::NAN)
            } else {
                let mut v: Vec<f64> = vals().collect();
                let median = quantile(0.5, &mut v);
                for x in &mut v {
                    *x = (*x - median).abs();
                }
                Some(quantile(0.5, &mut v))
            }
        }
        Func::Changes => {
            let mut n = 0;
            for p in s.windows(2) {
                let (a, b) = (p[0].1, p[1].1);
                if b != a && !(a.is_nan() && b.is_nan()) {
                    n += 1;
                }
            }
            Some(f64::from(n))
        }
        Func::Resets => {
            let n = s.windows(2).filter(|p| p[1].1 < p[0].1).count();
            Some(n as f64)
        }
        Func::Deriv => {
            if s.len() < 2 {
                None
            } else {
                Some(linear_regression(s, s[0].0).0)
            }
        }
        Func::PredictLinear => {
            if s.len() < 2 {
                None
            } else {
                let d = w.scalars.first().copied().unwrap_or(f64::NAN);
                let (slope, intercept) = linear_regression(s, w.ts);
                Some(slope * d + intercept)
            }
        }
        Func::DoubleExponentialSmoothing => {
            let sf = w.scalars.first().copied().unwrap_or(f64::NAN);
            let tf = w.scalars.get(1).copied().unwrap_or(f64::NAN);
            // NaN fails both comparisons and is let through, as in Go.
            if sf <= 0.0 || sf >= 1.0 {
                return Err(exec_err(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
                )));
            }
            if tf <= 0.0 || tf >= 1.0 {
                return Err(exec_err(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
                )));
            }
            double_exponential_smoothing(s, sf, tf)
        }
        _ => None,
    })
}

fn avg(s: &[(i64, f64)]) -> f64 {
    let (mut sum, mut count) = (s[0].1, 1.0);
    let (mut mean, mut comp) = (0.0, 0.0);
    let mut incremental = false;
    for (i, p) in s.iter().enumerate().skip(1) {
        count = (i + 1) as f64;
        if !incremental {
            let (ns, nc) = kahan_inc(p.1, sum, comp);
            if !ns.is_infinite() {
                sum = ns;
                comp = nc;
                continue;
            }
            // The running sum would overflow: switch to an incremental mean.
            incremental = true;
            mean = sum / (count - 1.0);
            comp /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, comp) = kahan_inc(p.1 / count, q * mean, q * comp);
    }
    if incremental {
        mean + comp
    } else {
        sum / count + comp / count
    }
}

fn variance(s: &[(i64, f64)]) -> f64 {
    let mut count = 0.0;
    let (mut mean, mut cm) = (0.0, 0.0);
    let (mut aux, mut ca) = (0.0, 0.0);
    for p in s {
        count += 1.0;
        let delta = p.1 - (mean + cm);
        (mean, cm) = kahan_inc(delta / count, mean, cm);
        (aux, ca) = kahan_inc(delta * (p.1 - (mean + cm)), aux, ca);
    }
    (aux + ca) / count
}

/// Returns `(timestamp, value)` of the winning sample.
fn compare_over_time(s: &[(i64, f64)], better: impl Fn(f64, f64) -> bool) -> (i64, f64) {
    let (mut t, mut v) = s[0];
    for p in s {
        if better(p.1, v) {
            v = p.1;
            t = p.0;
        }
    }
    (t, v)
}

/// `rate`, `increase` and `delta` with Prometheus 3.x extrapolation.
fn extrapolated_rate(w: &Window, is_counter: bool, is_rate: bool) -> Option<f64> {
    let s = w.samples;
    if s.len() < 2 {
        return None;
    }
    let range_start = w.end - w.range;
    let range_end = w.end;
    let (first_t, first_v) = s[0];
    let (last_t, last_v) = s[s.len() - 1];
    let mut result = last_v - first_v;
    if is_counter {
        for p in s.windows(2) {
            if p[1].1 < p[0].1 {
                result += p[0].1;
            }
        }
    }
    let mut duration_to_start = (first_t - range_start) as f64 / 1000.0;
    let mut duration_to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled_interval = (last_t - first_t) as f64 / 1000.0;
    let avg_between = sampled_interval / (s.len() - 1) as f64;
    let threshold = avg_between * 1.1;
    if duration_to_start >= threshold {
        duration_to_start = avg_between / 2.0;
    }
    if is_counter {
        // A counter cannot go below zero: do not extrapolate past the point
        // where it would have been zero.
        let mut duration_to_zero = duration_to_start;
        if result > 0.0 && first_v >= 0.0 {
            duration_to_zero = sampled_interval * (first_v / result);
        }
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    if duration_to_end >= threshold {
        duration_to_end = avg_between / 2.0;
    }
    let mut factor = 1.0;
    if sampled_interval != 0.0 {
        factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval;
    }
    if is_rate {
        factor /= w.range as f64 / 1000.0;
    }
    Some(result * factor)
}

/// `irate` / `idelta`: from the last two samples.
fn instant_value(s: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let (t0, v0) = s[s.len() - 2];
    let (t1, v1) = s[s.len() - 1];
    let interval = t1 - t0;
    if interval == 0 {
        return None;
    }
    // After a counter reset, the last value itself is the increase.
    let mut r = if is_rate && v1 < v0 { v1 } else { v1 - v0 };
    if is_rate {
        r /= interval as f64 / 1000.0;
    }
    Some(r)
}

/// Least-squares fit; returns `(slope, intercept at intercept_time)`.
fn linear_regression(s: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let mut n = 0.0;
    let (mut sx, mut cx) = (0.0, 0.0);
    let (mut sy, mut cy) = (0.0, 0.0);
    let (mut sxy, mut cxy) = (0.0, 0.0);
    let (mut sx2, mut cx2) = (0.0, 0.0);
    let init_y = s[0].1;
    let mut const_y = true;
    for (i, p) in s.iter().enumerate() {
        if const_y && i > 0 && p.1 != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (p.0 - intercept_time) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(p.1, sy, cy);
        (sxy, cxy) = kahan_inc(x * p.1, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

fn double_exponential_smoothing(s: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    let l = s.len();
    if l < 2 {
        return None;
    }
    let trend = |i: usize, s0: f64, s1: f64, b: f64| {
        if i == 0 {
            b
        } else {
            tf * (s1 - s0) + (1.0 - tf) * b
        }
    };
    let mut s0 = 0.0;
    let mut s1 = s[0].1;
    let mut b = s[1].1 - s[0].1;
    for (i, p) in s.iter().enumerate().skip(1) {
        let x = sf * p.1;
        b = trend(i - 1, s0, s1, b);
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

// ---------------------------------------------------------------------------
// Functions over instant vectors and scalars.

/// Caches for `histogram_quantile`/`histogram_fraction`, kept across steps.
#[derive(Default)]
pub(crate) struct HistState {
    /// Grouping signature (labels without `le`) to output metric.
    metrics: HashMap<Vec<u8>, Metric>,
    buf: Vec<u8>,
}

fn out_sample(el: &ESample, f: f64, delayed: bool) -> ESample {
    ESample {
        metric: if delayed {
            el.metric.clone()
        } else {
            drop_metadata_arc(&el.metric)
        },
        t: el.t,
        f,
        drop_name: true,
    }
}

fn simple(v: &[ESample], ctx: &StepCtx, out: &mut Vec<ESample>, f: impl Fn(f64) -> f64) {
    for el in v {
        out.push(out_sample(el, f(el.f), ctx.delayed));
    }
}

/// Go's `time.Unix(int64(v), 0).UTC()` broken into calendar fields.
struct DateParts {
    year: i64,
    month: u32,
    day: u32,
    hour: i64,
    minute: i64,
    weekday: i64,
}

fn date_parts(secs: i64) -> DateParts {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    DateParts {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: (rem % 3600) / 60,
        weekday: (days + 4).rem_euclid(7),
    }
}

fn date_value(f: Func, d: &DateParts) -> f64 {
    match f {
        Func::DaysInMonth => f64::from(days_in_month(d.year, d.month)),
        Func::DayOfMonth => f64::from(d.day),
        Func::DayOfWeek => d.weekday as f64,
        Func::DayOfYear => f64::from(day_of_year(d.year, d.month, d.day)),
        Func::Hour => d.hour as f64,
        Func::Minute => d.minute as f64,
        Func::Month => f64::from(d.month),
        _ => d.year as f64,
    }
}

fn sort_samples(v: &mut [ESample], before: impl Fn(&ESample, &ESample) -> bool) {
    // Go's sort.Sort is an insertion sort for up to 12 elements; replicate
    // it there so ties and NaNs come out in the same order.
    if v.len() <= 12 {
        for i in 1..v.len() {
            let mut j = i;
            while j > 0 && before(&v[j], &v[j - 1]) {
                v.swap(j, j - 1);
                j -= 1;
            }
        }
    } else {
        v.sort_by(|a, b| {
            if before(a, b) {
                std::cmp::Ordering::Less
            } else if before(b, a) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
    }
}

pub(crate) fn instant_call(
    c: &CallNode,
    v: &[Vec<ESample>],
    ctx: &mut StepCtx,
    out: &mut Vec<ESample>,
    hs: &mut HistState,
) -> Result<(), QueryError> {
    let arg0 = || v.first().map_or(&[][..], |x| x.as_slice());
    let scalar = |i: usize| v.get(i).and_then(|x| x.first()).map_or(f64::NAN, |s| s.f);
    use Func::*;
    match c.func {
        Abs => simple(arg0(), ctx, out, f64::abs),
        Ceil => simple(arg0(), ctx, out, f64::ceil),
        Floor => simple(arg0(), ctx, out, f64::floor),
        Exp => simple(arg0(), ctx, out, f64::exp),
        Sqrt => simple(arg0(), ctx, out, f64::sqrt),
        Ln => simple(arg0(), ctx, out, f64::ln),
        Log2 => simple(arg0(), ctx, out, f64::log2),
        Log10 => simple(arg0(), ctx, out, f64::log10),
        Sin => simple(arg0(), ctx, out, f64::sin),
        Cos => simple(arg0(), ctx, out, f64::cos),
        Tan => simple(arg0(), ctx, out, f64::tan),
        Asin => simple(arg0(), ctx, out, f64::asin),
        Acos => simple(arg0(), ctx, out, f64::acos),
        Atan => simple(arg0(), ctx, out, f64::atan),
        Sinh => simple(arg0(), ctx, out, f64::sinh),
        Cosh => simple(arg0(), ctx, out, f64::cosh),
        Tanh => simple(arg0(), ctx, out, f64::tanh),
        Asinh => simple(arg0(), ctx, out, f64::asinh),
        Acosh => simple(arg0(), ctx, out, f64::acosh),
        Atanh => simple(arg0(), ctx, out, f64::atanh),
        Rad => simple(arg0(), ctx, out, |x| x * std::f64::consts::PI / 180.0),
        Deg => simple(arg0(), ctx, out, |x| x * 180.0 / std::f64::consts::PI),
        Sgn => simple(arg0(), ctx, out, |x| {
            if x < 0.0 {
                -1.0
            } else if x > 0.0 {
                1.0
            } else {
                x
            }
        }),
        Round => {
            let to_nearest = if c.args.len() >= 2 { scalar(1) } else { 1.0 };
            let inv = 1.0 / to_nearest;
            simple(arg0(), ctx, out, |x| (x * inv + 0.5).floor() / inv)
        }
        Clamp | ClampMax | ClampMin => {
            let (lo, hi) = match c.func {
                Clamp => (scalar(1), scalar(2)),
                ClampMax => (f64::NEG_INFINITY, scalar(1)),
                _ => (scalar(1), f64::INFINITY),
            };
            if hi < lo {
                return Ok(());
            }
            simple(arg0(), ctx, out, |x| go_max(lo, go_min(hi, x)));
        }
        Timestamp => {
            for el in arg0() {
                out.push(out_sample(el, el.t as f64 / 1000.0, ctx.delayed));
            }
        }
        Vector => out.push(ESample::new(empty_metric(), scalar(0))),
        Scalar => {
            let a = arg0();
            let f = if a.len() == 1 { a[0].f } else { f64::NAN };
            out.push(ESample::new(empty_metric(), f));
        }
        Time => out.push(ESample::new(empty_metric(), ctx.ts as f64 / 1000.0)),
        Pi => out.push(ESample::new(empty_metric(), std::f64::consts::PI)),
        MaxOf => out.push(ESample::new(empty_metric(), go_max(scalar(0), scalar(1)))),
        MinOf => out.push(ESample::new(empty_metric(), go_min(scalar(0), scalar(1)))),
        Absent => {
            if arg0().is_empty() {
                let labels = c.args.first().map_or_else(Labels::empty, absent_labels);
                out.push(ESample::new(Arc::new(labels), 1.0));
            }
        }
        Sort | SortDesc => {
            out.extend(arg0().iter().cloned());
            let desc = c.func == SortDesc;
            // Go sorts by the reversed "NaN first" order, so NaNs end up last.
            sort_samples(out, |a, b| {
                if b.f.is_nan() {
                    return true;
                }
                if desc {
                    a.f > b.f
                } else {
                    a.f < b.f
                }
            });
        }
        SortByLabel | SortByLabelDesc => {
            let names: Vec<&str> = c.args[1..].iter().map(|a| str_arg(a).0).collect();
            out.extend(arg0().iter().cloned());
            let desc = c.func == SortByLabelDesc;
            let cmp = |a: &ESample, b: &ESample| -> std::cmp::Ordering {
                for n in &names {
                    let x = a.metric.get(n).unwrap_or("");
                    let y = b.metric.get(n).unwrap_or("");
                    if x == y {
                        continue;
                    }
                    return if natural_less(x, y) {
                        std::cmp::Ordering::Less
                    } else {
                        std::cmp::Ordering::Greater
                    };
                }
                a.metric.cmp(&b.metric)
            };
            if desc {
                out.sort_by(|a, b| cmp(b, a));
            } else {
                out.sort_by(cmp);
            }
        }
        DaysInMonth | DayOfMonth | DayOfWeek | DayOfYear | Hour | Minute | Month | Year => {
            if c.args.is_empty() {
                let d = date_parts(ctx.ts / 1000);
                out.push(ESample::new(empty_metric(), date_value(c.func, &d)));
            } else {
                for el in arg0() {
                    let d = date_parts(go_f64_to_i64(el.f));
                    out.push(out_sample(el, date_value(c.func, &d), ctx.delayed));
                }
            }
        }
        HistogramQuantile => {
            let q = scalar(0);
            let pos = c.args.first().map_or(0, |a| a.pos);
            if q.is_nan() || !(0.0..=1.0).contains(&q) {
                ctx.annos.warn(
                    format!(
                        "quantile value should be between 0 and 1, got {}",
                        crate::util::fmt_g(q)
                    ),
                    pos,
                );
            }
            let hpos = c.args.get(1).map_or(0, |a| a.pos);
            let groups = group_buckets(v.get(1).map_or(&[][..], |x| x), ctx, hpos, hs);
            for (metric, mut buckets) in groups {
                let (val, mono) = bucket_quantile(q, &mut buckets);
                if mono.forced {
                    let name = if ctx.delayed {
                        metric.metric_name()
                    } else {
                        ""
                    };
                    ctx.annos.forced_monotonicity(
                        name,
                        hpos,
                        ctx.ts,
                        mono.min_bucket,
                        mono.max_bucket,
                        mono.max_diff,
                    );
                }
                let metric = if ctx.delayed {
                    metric
                } else {
                    drop_metadata_arc(&metric)
                };
                out.push(ESample {
                    metric,
                    t: ctx.ts,
                    f: val,
                    drop_name: true,
                });
            }
        }
        HistogramFraction => {
            let lower = scalar(0);
            let upper = scalar(1);
            let hpos = c.args.get(2).map_or(0, |a| a.pos);
            let groups = group_buckets(v.get(2).map_or(&[][..], |x| x), ctx, hpos, hs);
            for (metric, mut buckets) in groups {
                let val = bucket_fraction(lower, upper, &mut buckets);
                let metric = if ctx.delayed {
                    metric
                } else {
                    drop_metadata_arc(&metric)
                };
                out.push(ESample {
                    metric,
                    t: ctx.ts,
                    f: val,
                    drop_name: true,
                });
            }
        }
        HistogramQuantiles => {
            let label = str_arg(&c.args[1]).0;
            let hpos = c.args.first().map_or(0, |a| a.pos);
            let qs: Vec<f64> = (2..c.args.len()).map(scalar).collect();
            for (i, q) in qs.iter().enumerate() {
                if q.is_nan() || !(0.0..=1.0).contains(q) {
                    ctx.annos.warn(
                        format!(
                            "quantile value should be between 0 and 1, got {}",
                            crate::util::fmt_g(*q)
                        ),
                        c.args[i + 2].pos,
                    );
                }
            }
            let mut groups = group_buckets(arg0(), ctx, hpos, hs);
            for q in &qs {
                let qstr = crate::util::fmt_openmetrics_float(*q);
                for (metric, buckets) in groups.iter_mut() {
                    let (val, mono) = bucket_quantile(*q, buckets);
                    if mono.forced {
                        let name = if ctx.delayed {
                            metric.metric_name()
                        } else {
                            ""
                        };
                        ctx.annos.forced_monotonicity(
                            name,
                            hpos,
                            ctx.ts,
                            mono.min_bucket,
                            mono.max_bucket,
                            mono.max_diff,
                        );
                    }
                    let base = if ctx.delayed {
                        metric.clone()
                    } else {
                        drop_metadata_arc(metric)
                    };
                    out.push(ESample {
                        metric: Arc::new(set_label(&base, label, &qstr)),
                        t: ctx.ts,
                        f: val,
                        drop_name: true,
                    });
                }
            }
        }
        // Native-histogram-only functions: float samples are ignored.
        HistogramAvg | HistogramCount | HistogramSum | HistogramStddev | HistogramStdvar => {}
        StartTimestamp => {}
        LabelReplace | LabelJoin => {}
        _ => {
            return Err(exec_err(format!(
                "function {} cannot be applied to instant vectors",
                crate::engine::func_name(c.func)
            )))
        }
    }
    Ok(())
}

/// Groups classic histogram bucket samples by their labels minus `le`.
fn group_buckets(
    v: &[ESample],
    ctx: &mut StepCtx,
    pos: usize,
    hs: &mut HistState,
) -> Vec<(Metric, Vec<Bucket>)> {
    let mut order: Vec<(Metric, Vec<Bucket>)> = Vec::new();
    let mut idx: HashMap<Vec<u8>, usize> = HashMap::new();
    for s in v {
        let le = s.metric.get("le").unwrap_or("");
        let Some(upper) = parse_go_float(le) else {
            let name = if ctx.delayed {
                s.metric.metric_name()
            } else {
                ""
            };
            let mut msg = format!(
                "bucket label \"le\" is missing or has a malformed value of {}",
                go_quote_bytes(le.as_bytes())
            );
            if !name.is_empty() {
                msg.push_str(&format!(" for metric name {name:?}"));
            }
            ctx.annos.warn(msg, pos);
            continue;
        };
        signature_into(&mut hs.buf, &s.metric, |n| n != "le");
        let i = match idx.get(&hs.buf) {
            Some(&i) => i,
            None => {
                let metric = match hs.metrics.get(&hs.buf) {
                    Some(m) => m.clone(),
                    None => {
                        let m = Arc::new(filter_labels(&s.metric, |n| n != "le"));
                        hs.metrics.insert(hs.buf.clone(), m.clone());
                        m
                    }
                };
                idx.insert(hs.buf.clone(), order.len());
                order.push((metric, Vec::new()));
                order.len() - 1
            }
        };
        order[i].1.push(Bucket { upper, count: s.f });
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn win(s: &[(i64, f64)], end: i64, range: i64) -> Window<'_> {
        Window {
            samples: s,
            ts: end,
            end,
            range,
            scalars: &[],
        }
    }

    #[test]
    fn rate_extrapolates_like_prometheus_3() {
        // Counter 0,10,...,50 every 60s, rate over the last 5m at t=300s:
        // samples at 60..300 (0 at t=0 is excluded: left-open range).
        let s: Vec<(i64, f64)> = (1..=5).map(|i| (i * 60_000, i as f64 * 10.0)).collect();
        let r = extrapolated_rate(&win(&s, 300_000, 300_000), true, true).unwrap();
        // 40 increase over 240s, extrapolated to the start by 60s (< 1.1 avg)
        // but clamped at the counter's zero point 60s earlier: 50 over 300s.
        assert!((r - 50.0 / 300.0).abs() < 1e-12, "{r}");
        let d = extrapolated_rate(&win(&s, 300_000, 300_000), false, false).unwrap();
        assert!((d - 50.0).abs() < 1e-12);
        assert!(extrapolated_rate(&win(&s[..1], 300_000, 300_000), true, true).is_none());
    }

    #[test]
    fn irate_handles_resets() {
        let s = [(0, 10.0), (10_000, 2.0)];
        assert_eq!(instant_value(&s, true), Some(0.2));
        assert_eq!(instant_value(&s, false), Some(-8.0));
    }

    #[test]
    fn regression() {
        let s = [(0, 1.0), (1000, 2.0), (2000, 3.0)];
        let (slope, icpt) = linear_regression(&s, 0);
        assert!((slope - 1.0).abs() < 1e-12 && (icpt - 1.0).abs() < 1e-12);
        assert_eq!(linear_regression(&[(0, 5.0), (1, 5.0)], 0), (0.0, 5.0));
    }
}
