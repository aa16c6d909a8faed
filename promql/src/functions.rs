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
use crate::engine::Point;
use crate::engine::{
    empty_metric, exec_err, lookup, merge_same_labelset, Evaluator, QueryError, StepCtx,
};
use crate::histogram::{CounterResetHint, FloatHistogram, HistSum};
use crate::lex::go_quote_bytes;
use crate::quantile::{bucket_fraction, bucket_quantile, quantile, Bucket};
use crate::util::{
    civil_from_days, day_of_year, days_in_month, drop_metadata_arc, filter_labels, go_f64_to_i64,
    go_max, go_min, kahan_inc, natural_less, parse_go_float, set_label, signature_into,
    valid_label_name,
};
use crate::value::{hist_size, ESample, ESeries, Hist, Mat, Metric};

/// One input series of a range function: labels, samples, drop-name flag.
type WindowInput<'a> = (&'a Metric, &'a [(i64, f64)], &'a [(i64, Hist)], bool);

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
        if c.func == Func::Info {
            return self.eval_info(c);
        }
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
        // Only these functions read native histograms; all others drop them.
        let with_hists = matches!(
            c.func,
            Func::HistogramAvg
                | Func::HistogramCount
                | Func::HistogramSum
                | Func::HistogramStddev
                | Func::HistogramStdvar
                | Func::HistogramQuantile
                | Func::HistogramQuantiles
                | Func::HistogramFraction
                | Func::Absent
        );
        self.range_eval_h(&args, None, with_hists, |ctx, v, _, out| {
            if with_hists {
                if let Some(fixed) = drop_mixed_histograms(c, v, ctx) {
                    native_histogram_call(c, &fixed, ctx, out);
                    return instant_call(c, &fixed, ctx, out, &mut hist_state);
                }
                native_histogram_call(c, v, ctx, out);
            }
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
        let mut cursors = vec![(0usize, 0usize); series.len()];
        let lookback = self.lookback;
        let at = sel.at.and_then(AtTime::ts);
        let offset = sel.offset;
        self.range_eval(&[], None, |ctx, _, _, out| {
            // With `@`, Prometheus looks up exactly the `@` time, ignoring the offset.
            let rt = at.unwrap_or(ctx.ts - offset);
            for (i, s) in series.iter().enumerate() {
                let found = if s.hists.is_empty() {
                    lookup(&s.samples, &mut cursors[i].0, rt, lookback).map(|p| p.0)
                } else {
                    // The newest sample of either kind within the lookback.
                    let (fc, hc) = &mut cursors[i];
                    crate::engine::lookup_any(s, fc, hc, rt, lookback).map(|_| {
                        let ft = s.samples[..*fc].last().map_or(i64::MIN, |p| p.0);
                        let ht = s.hists[..*hc].last().map_or(i64::MIN, |p| p.0);
                        ft.max(ht)
                    })
                };
                if let Some(t) = found {
                    ctx.loaded += 1;
                    let metric = if ctx.delayed {
                        s.metric.clone()
                    } else {
                        drop_metadata_arc(&s.metric)
                    };
                    out.push(ESample {
                        h: None,
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
        let mut ext = crate::ast::RangeExt::None;
        let (offset, at, range, sub_samples) = match &arg.kind {
            Kind::Matrix(sel, range) => {
                ext = sel.ext;
                if let Some(series) = sels.get(sel.id) {
                    for s in series {
                        inputs.push((&s.metric, &s.samples, &s.hists, false));
                    }
                }
                (sel.offset, sel.at.and_then(AtTime::ts), *range, 0)
            }
            Kind::Subquery(sq) => {
                let mut m = self.run_subquery(sq)?;
                for s in &mut m {
                    s.points.retain(|p| !crate::value::is_stale_nan(p.1));
                    // As Prometheus: explicit reset hints of subquery
                    // results are not trusted (samples may be skipped or
                    // repeated), so resets are detected from the data.
                    for (_, h) in &mut s.hists {
                        if matches!(
                            h.counter_reset_hint,
                            CounterResetHint::Reset | CounterResetHint::NotReset
                        ) {
                            Arc::make_mut(h).counter_reset_hint = CounterResetHint::Unknown;
                        }
                    }
                }
                let total = crate::value::total_points(&m);
                subquery_result = m;
                for s in &subquery_result {
                    inputs.push((&s.metric, &s.points, &s.hists, s.drop_name));
                }
                (sq.offset, sq.at.and_then(AtTime::ts), sq.range, total)
            }
            _ => return Err(exec_err("expected a range vector argument")),
        };
        if ext != crate::ast::RangeExt::None {
            check_range_ext(ext, f)?;
        }
        let lookback = self.lookback;
        // How far the window reaches beyond `(we - range, we]`.
        let (before, after) = match ext {
            crate::ast::RangeExt::None | crate::ast::RangeExt::SmoothedInstant => (0, 0),
            crate::ast::RangeExt::Anchored => (lookback, 0),
            crate::ast::RangeExt::Smoothed => (lookback, lookback),
        };
        let keeps_name = matches!(f, Func::LastOverTime | Func::FirstOverTime);
        let n = self.num_steps();
        let mut out: Mat = Vec::with_capacity(inputs.len());
        let mut scalars = vec![0.0; scalar_args.len()];
        let mut window_held = 0usize;
        let arg_pos = arg.pos;
        let mut annos = std::mem::take(&mut self.annos);
        let result = (|| -> Result<(), QueryError> {
            for (metric, samples, hsamples, in_drop) in &inputs {
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
                let mut hpoints: Vec<(i64, Hist)> = Vec::new();
                let (mut lo, mut hi) = (0usize, 0usize);
                let (mut hlo, mut hhi) = (0usize, 0usize);
                scalar_cursors.iter_mut().for_each(|c| *c = 0);
                for (k, ts) in self.steps().enumerate() {
                    if k % 1024 == 1023 {
                        self.check_deadline()?;
                    }
                    let we = at.unwrap_or(ts) - offset;
                    let ws = we - range;
                    while hi < samples.len() && samples[hi].0 <= we + after {
                        hi += 1;
                    }
                    while lo < hi && samples[lo].0 <= ws - before {
                        lo += 1;
                    }
                    while hhi < hsamples.len() && hsamples[hhi].0 <= we + after {
                        hhi += 1;
                    }
                    while hlo < hhi && hsamples[hlo].0 <= ws - before {
                        hlo += 1;
                    }
                    let hwin = &hsamples[hlo..hhi];
                    let len = hi - lo + hwin.iter().map(|h| hist_size(&h.1)).sum::<usize>();
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
                    if ext != crate::ast::RangeExt::None {
                        if hwin.is_empty() {
                            if let Some(v) = extended_value(f, w.samples, ws, we, range, ext) {
                                points.push((ts, v));
                            }
                        } else if matches!(f, Func::Changes | Func::Resets) {
                            if let Some(v) = extended_changes_mixed(f, w.samples, hwin, ws) {
                                points.push((ts, v));
                            }
                        } else if !w.samples.is_empty() {
                            annos.warn(
                                format!(
                                    "encountered a mix of histograms and floats for metric name {:?}",
                                    metric.metric_name()
                                ),
                                arg_pos,
                            );
                        } else if let Some(h) = extended_hist_value(
                            f,
                            hwin,
                            (ws, we, range, ext),
                            &mut annos,
                            metric.metric_name(),
                            arg_pos,
                        ) {
                            self.add_samples(hist_size(&h))?;
                            hpoints.push((ts, h));
                        }
                    } else if !hwin.is_empty() {
                        match range_value_h(f, &w, hwin, &mut annos, metric, arg_pos, c)? {
                            Some(Point::F(v)) => points.push((ts, v)),
                            Some(Point::H(h)) => {
                                self.add_samples(hist_size(&h))?;
                                hpoints.push((ts, h));
                            }
                            None => {}
                        }
                    } else if let Some(v) = range_value(f, &w, &mut annos, c)? {
                        if points.is_empty() {
                            points.reserve(n.min(5000));
                        }
                        points.push((ts, v));
                    }
                }
                if !hpoints.is_empty() && points.is_empty() {
                    out.push(ESeries {
                        hists: hpoints,
                        metric: out_metric,
                        points,
                        drop_name,
                    });
                    continue;
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
                        hists: hpoints,
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
        hists: Vec::new(),
        metric: Arc::new(absent_labels(arg)),
        points,
        drop_name: true,
    }])
}

// ---------------------------------------------------------------------------
// Functions over range vectors.

/// Prometheus only allows `anchored` with changes/delta/increase/rate/resets
/// and `smoothed` with delta/increase/rate.
fn check_range_ext(ext: crate::ast::RangeExt, f: Func) -> Result<(), QueryError> {
    use crate::ast::RangeExt;
    let (name, allowed): (&str, &[Func]) = match ext {
        RangeExt::None | RangeExt::SmoothedInstant => return Ok(()),
        RangeExt::Anchored => (
            "anchored",
            &[
                Func::Changes,
                Func::Delta,
                Func::Increase,
                Func::Rate,
                Func::Resets,
            ],
        ),
        RangeExt::Smoothed => ("smoothed", &[Func::Delta, Func::Increase, Func::Rate]),
    };
    if allowed.contains(&f) {
        return Ok(());
    }
    let list: Vec<&str> = allowed
        .iter()
        .map(|f| crate::engine::func_name(*f))
        .collect();
    Err(exec_err(format!(
        "{name} modifier can only be used with: {} - not with {}",
        list.join(", "),
        crate::engine::func_name(f)
    )))
}

/// changes()/resets() over an anchored window holding histograms (and
/// maybe floats): from the last sample at or before the window start on.
fn extended_changes_mixed(
    func: Func,
    fl: &[(i64, f64)],
    hw: &[(i64, Hist)],
    rs: i64,
) -> Option<f64> {
    let mut all: Vec<(i64, Option<&Hist>, f64)> = fl.iter().map(|p| (p.0, None, p.1)).collect();
    all.extend(hw.iter().map(|p| (p.0, Some(&p.1), 0.0)));
    all.sort_by_key(|p| p.0);
    if all.iter().all(|p| p.0 <= rs) {
        return None;
    }
    let first = all.iter().rposition(|p| p.0 <= rs).unwrap_or(0);
    let mut n = 0;
    for w in all[first..].windows(2) {
        let (prev, cur) = (w[0], w[1]);
        let hit = match (prev.1, cur.1) {
            (None, None) => {
                if func == Func::Changes {
                    cur.2 != prev.2 && !(cur.2.is_nan() && prev.2.is_nan())
                } else {
                    cur.2 < prev.2
                }
            }
            (Some(p), Some(c)) => {
                if func == Func::Changes {
                    !c.equals(p)
                } else {
                    c.detect_reset(p)
                }
            }
            _ => true,
        };
        if hit {
            n += 1;
        }
    }
    Some(f64::from(n))
}

/// Histogram interpolation at `t` (Prometheus' `interpolateHistograms`).
fn interpolate_hist(
    a: (i64, &FloatHistogram),
    b: (i64, &FloatHistogram),
    t: i64,
    counter: bool,
    annos: &mut crate::annotations::Annotations,
    pos: usize,
) -> Option<FloatHistogram> {
    if t == a.0 {
        return Some(a.1.clone());
    }
    if t == b.0 {
        return Some(b.1.clone());
    }
    let fraction = (t - a.0) as f64 / (b.0 - a.0) as f64;
    if counter && b.1.detect_reset(a.1) {
        let mut r = b.1.clone();
        r.mul(fraction);
        return Some(r);
    }
    let mut r = b.1.clone();
    if r.sub(a.1).ok()?.1 {
        annos.info(
            "mismatched custom buckets were reconciled during subtraction",
            pos,
        );
    }
    r.mul(fraction);
    if r.add(a.1).ok()?.1 {
        annos.info(
            "mismatched custom buckets were reconciled during addition",
            pos,
        );
    }
    Some(r)
}

/// The anchored/smoothed rate/increase/delta of histograms (Prometheus'
/// `extendedHistogramRate`).
fn extended_hist_value(
    func: Func,
    h: &[(i64, Hist)],
    (rs, re, range, ext): (i64, i64, i64, crate::ast::RangeExt),
    annos: &mut crate::annotations::Annotations,
    name: &str,
    pos: usize,
) -> Option<Hist> {
    let smoothed = ext == crate::ast::RangeExt::Smoothed;
    let counter = func != Func::Delta;
    let exp_custom = format!(
        "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {name:?}"
    );
    // Go's sort.Search over [0, last) (the samples are sorted).
    let mut last = h.len().checked_sub(1)?;
    let first = h[..last].partition_point(|p| p.0 <= rs).saturating_sub(1);
    if smoothed {
        last = h[..last].partition_point(|p| p.0 < re);
    }
    if h[last].0 <= rs || (smoothed && h[first].0 > re) {
        return None;
    }
    let custom = h[first].1.uses_custom_buckets();
    for (_, x) in &h[first..=last] {
        if x.uses_custom_buckets() != custom {
            annos.warn(exp_custom, pos);
            return None;
        }
        if counter && x.counter_reset_hint == CounterResetHint::Gauge {
            annos.warn(
                format!("this native histogram metric is not a counter: {name:?}"),
                pos,
            );
        }
    }
    let left = if smoothed && h[first].0 < rs {
        interpolate_hist(
            (h[first].0, &h[first].1),
            (h[first + 1].0, &h[first + 1].1),
            rs,
            counter,
            annos,
            pos,
        )
    } else {
        Some((*h[first].1).clone())
    };
    let right = if smoothed && last > 0 && h[last].0 > re {
        interpolate_hist(
            (h[last - 1].0, &h[last - 1].1),
            (h[last].0, &h[last].1),
            re,
            counter,
            annos,
            pos,
        )
    } else {
        Some((*h[last].1).clone())
    };
    let (Some(left), Some(right)) = (left, right) else {
        annos.warn(exp_custom, pos);
        return None;
    };
    if !counter
        && (left.counter_reset_hint != CounterResetHint::Gauge
            || right.counter_reset_hint != CounterResetHint::Gauge)
    {
        annos.warn(
            format!("this native histogram metric is not a gauge: {name:?}"),
            pos,
        );
    }
    let mut result = right.clone();
    match result.sub(&left) {
        Err(_) => {
            annos.warn(exp_custom, pos);
            return None;
        }
        Ok((_, true)) => annos.info(
            "mismatched custom buckets were reconciled during subtraction",
            pos,
        ),
        Ok(_) => {}
    }
    if counter {
        let mut first_i = first + 1;
        let mut prev: &FloatHistogram = &left;
        if smoothed && h[first].0 < rs && h[first + 1].1.detect_reset(&h[first].1) {
            prev = &h[first + 1].1;
            first_i += 1;
        }
        let last_i = last as i64 - 1;
        if first_i as i64 <= last_i + 1 {
            let mut correction: Option<FloatHistogram> = None;
            let add = |c: &mut Option<FloatHistogram>,
                       x: &FloatHistogram,
                       annos: &mut crate::annotations::Annotations|
             -> bool {
                match c {
                    None => {
                        *c = Some(x.clone());
                        true
                    }
                    Some(acc) => match acc.add(x) {
                        Err(_) => false,
                        Ok((_, r)) => {
                            if r {
                                annos.info(
                                    "mismatched custom buckets were reconciled during addition",
                                    pos,
                                );
                            }
                            true
                        }
                    },
                }
            };
            if last_i >= first_i as i64 {
                for (_, p) in &h[first_i..=last_i as usize] {
                    if p.detect_reset(prev) && !add(&mut correction, prev, annos) {
                        annos.warn(exp_custom, pos);
                        return None;
                    }
                    prev = p;
                }
            }
            if right.detect_reset(prev) && !add(&mut correction, prev, annos) {
                annos.warn(exp_custom, pos);
                return None;
            }
            if let Some(c) = correction {
                match result.add(&c) {
                    Err(_) => {
                        annos.warn(exp_custom, pos);
                        return None;
                    }
                    Ok((_, true)) => annos.info(
                        "mismatched custom buckets were reconciled during addition",
                        pos,
                    ),
                    Ok(_) => {}
                }
            }
        }
    }
    if func == Func::Rate {
        result.div(range as f64 / 1000.0);
    }
    result.counter_reset_hint = CounterResetHint::Gauge;
    result.compact(0);
    Some(Arc::new(result))
}

/// Linear interpolation at `t` between two samples; a counter that went
/// down is taken to restart from 0.
fn interpolate(p1: (i64, f64), p2: (i64, f64), t: i64, counter: bool) -> f64 {
    let y1 = if counter && p2.1 < p1.1 { 0.0 } else { p1.1 };
    y1 + (p2.1 - y1) * (t - p1.0) as f64 / (p2.0 - p1.0) as f64
}

/// The anchored/smoothed versions of rate/increase/delta (Prometheus'
/// `extendedRate`) and changes/resets over the extended window `f`, which
/// reaches a lookback before `(rs, re]` (and after it, for smoothed).
fn extended_value(
    func: Func,
    f: &[(i64, f64)],
    rs: i64,
    re: i64,
    range: i64,
    ext: crate::ast::RangeExt,
) -> Option<f64> {
    let smoothed = ext == crate::ast::RangeExt::Smoothed;
    if f.is_empty() {
        return None;
    }
    // Go's sort.Search over [0, last) (the samples are sorted).
    let mut last = f.len() - 1;
    let mut first = f[..last].partition_point(|p| p.0 <= rs).saturating_sub(1);
    if matches!(func, Func::Changes | Func::Resets) {
        // pickFirstSampleIndices: start at the last sample at or before
        // the window start, if there is one.
        let le = f.iter().rposition(|p| p.0 <= rs);
        if f.iter().all(|p| p.0 <= rs) {
            return None;
        }
        first = le.unwrap_or(0);
        let mut n = 0;
        for w in f[first..].windows(2) {
            let hit = if func == Func::Changes {
                w[1].1 != w[0].1 && !(w[1].1.is_nan() && w[0].1.is_nan())
            } else {
                w[1].1 < w[0].1
            };
            if hit {
                n += 1;
            }
        }
        return Some(f64::from(n));
    }
    let counter = func != Func::Delta;
    if smoothed {
        last = f[..last].partition_point(|p| p.0 < re);
    }
    if f[last].0 <= rs {
        return None;
    }
    if smoothed && f[first].0 > re {
        return None;
    }
    let left = if smoothed && f[first].0 < rs {
        interpolate(f[first], f[first + 1], rs, counter)
    } else {
        f[first].1
    };
    let right = if smoothed && last > 0 && f[last].0 > re {
        interpolate(f[last - 1], f[last], re, counter)
    } else {
        f[last].1
    };
    let mut result = right - left;
    if counter {
        let mut lo = first;
        let mut hi = last as i64;
        if f[lo].0 <= rs {
            lo += 1;
        }
        if f[last].0 >= re {
            hi -= 1;
        }
        let inner: &[(i64, f64)] = if hi >= lo as i64 {
            &f[lo..=hi as usize]
        } else {
            &[]
        };
        let mut prev = left;
        let mut correction = 0.0;
        for p in inner {
            if p.1 < prev {
                correction += prev;
            }
            prev = p.1;
        }
        if right < prev {
            correction += prev;
        }
        result += correction;
    }
    if func == Func::Rate {
        result /= range as f64 / 1000.0;
    }
    Some(result)
}

/// Evaluates `f` over a window that holds histogram samples (`hw`, and
/// maybe floats in `w.samples`), as Prometheus does: histogram-aware
/// functions combine the histograms, mixed windows give a warning, and
/// float-only functions use the floats and note the ignored histograms.
fn range_value_h(
    f: Func,
    w: &Window,
    hw: &[(i64, Hist)],
    annos: &mut crate::annotations::Annotations,
    metric: &Metric,
    pos: usize,
    c: &CallNode,
) -> Result<Option<Point>, QueryError> {
    use Func::*;
    let name = metric.metric_name();
    let fl = w.samples;
    let mixed = || format!("encountered a mix of histograms and floats for metric name {name:?}");
    let exp_custom = || {
        format!("vector contains a mix of histograms with exponential and custom buckets schemas for metric name {name:?}")
    };
    let ignored = || {
        format!("ignored histograms in a range containing both floats and histograms for metric name {name:?}")
    };
    Ok(match f {
        Rate | Increase | Delta => {
            if !fl.is_empty() {
                annos.warn(mixed(), pos);
                return Ok(None);
            }
            let is_counter = f != Delta;
            if hw.len() < 2 {
                return Ok(None);
            }
            let Some(mut h) = histogram_rate(hw, is_counter, annos, name, pos) else {
                return Ok(None);
            };
            let range_start = w.end - w.range;
            let first_t = hw[0].0;
            let last_t = hw[hw.len() - 1].0;
            let mut to_start = (first_t - range_start) as f64 / 1000.0;
            let mut to_end = (w.end - last_t) as f64 / 1000.0;
            let sampled = (last_t - first_t) as f64 / 1000.0;
            let avg = sampled / (hw.len() - 1) as f64;
            let threshold = avg * 1.1;
            if to_start >= threshold {
                to_start = avg / 2.0;
            }
            if is_counter && h.count > 0.0 && hw[0].1.count >= 0.0 {
                let to_zero = sampled * (hw[0].1.count / h.count);
                if to_zero < to_start {
                    to_start = to_zero;
                }
            }
            if to_end >= threshold {
                to_end = avg / 2.0;
            }
            let mut factor = if sampled != 0.0 {
                (sampled + to_start + to_end) / sampled
            } else {
                1.0
            };
            if f == Rate {
                factor /= w.range as f64 / 1000.0;
            }
            h.mul(factor);
            Some(Point::H(Arc::new(h)))
        }
        Irate | Idelta => {
            let is_rate = f == Irate;
            // The last two samples of either kind.
            let mut last: Vec<(i64, Option<&Hist>, f64)> = Vec::new();
            for p in fl.iter().rev().take(2) {
                last.push((p.0, None, p.1));
            }
            for p in hw.iter().rev().take(2) {
                last.push((p.0, Some(&p.1), 0.0));
            }
            last.sort_by_key(|p| std::cmp::Reverse(p.0));
            if last.len() < 2 {
                return Ok(None);
            }
            let (cur, prev) = (last[0], last[1]);
            let interval = cur.0 - prev.0;
            if interval == 0 {
                return Ok(None);
            }
            match (cur.1, prev.1) {
                (Some(ch), Some(ph)) => {
                    let mut r = (**ch).clone();
                    let gauge =
                        |h: &FloatHistogram| h.counter_reset_hint == CounterResetHint::Gauge;
                    if is_rate && (gauge(ch) || gauge(ph)) {
                        annos.warn(
                            format!("this native histogram metric is not a counter: {name:?}"),
                            pos,
                        );
                    }
                    if !is_rate && (!gauge(ch) || !gauge(ph)) {
                        annos.warn(
                            format!("this native histogram metric is not a gauge: {name:?}"),
                            pos,
                        );
                    }
                    if !is_rate || !ch.detect_reset(ph) {
                        match r.sub(ph) {
                            Err(_) => {
                                annos.warn(exp_custom(), pos);
                                return Ok(None);
                            }
                            Ok((_, true)) => annos.info(
                                "mismatched custom buckets were reconciled during subtraction",
                                pos,
                            ),
                            Ok(_) => {}
                        }
                    }
                    r.counter_reset_hint = CounterResetHint::Gauge;
                    r.compact(0);
                    if is_rate {
                        r.div(interval as f64 / 1000.0);
                    }
                    Some(Point::H(Arc::new(r)))
                }
                (None, None) => {
                    let mut v = cur.2 - prev.2;
                    if is_rate && cur.2 < prev.2 {
                        v = cur.2;
                    }
                    if is_rate {
                        v /= interval as f64 / 1000.0;
                    }
                    Some(Point::F(v))
                }
                _ => {
                    annos.warn(mixed(), pos);
                    None
                }
            }
        }
        SumOverTime | AvgOverTime => {
            if !fl.is_empty() {
                annos.warn(mixed(), pos);
                return Ok(None);
            }
            let mut acc = HistSum::new(&hw[0].1);
            let (mut reset, mut not_reset) = (false, false);
            let mut track = |h: &FloatHistogram| match h.counter_reset_hint {
                CounterResetHint::Reset => reset = true,
                CounterResetHint::NotReset => not_reset = true,
                _ => {}
            };
            track(&hw[0].1);
            for (_, h) in &hw[1..] {
                track(h);
                if acc.add(h, f == AvgOverTime).is_err() {
                    annos.warn(exp_custom(), pos);
                    return Ok(None);
                }
            }
            if reset && not_reset {
                annos.warn(
                    "conflicting counter resets during histogram aggregation",
                    pos,
                );
            }
            if acc.reconciled {
                annos.info(
                    "mismatched custom buckets were reconciled during aggregation",
                    pos,
                );
            }
            let sum = if f == AvgOverTime {
                acc.avg()
            } else {
                acc.sum()
            };
            Some(Point::H(Arc::new(sum)))
        }
        CountOverTime => Some(Point::F((fl.len() + hw.len()) as f64)),
        PresentOverTime => Some(Point::F(1.0)),
        LastOverTime => {
            let h = &hw[hw.len() - 1];
            match fl.last() {
                Some(p) if p.0 > h.0 => Some(Point::F(p.1)),
                _ => Some(Point::H(h.1.clone())),
            }
        }
        FirstOverTime => {
            let h = &hw[0];
            match fl.first() {
                Some(p) if p.0 < h.0 => Some(Point::F(p.1)),
                _ => Some(Point::H(h.1.clone())),
            }
        }
        Changes | Resets => {
            let mut all: Vec<(i64, Option<&Hist>, f64)> =
                fl.iter().map(|p| (p.0, None, p.1)).collect();
            all.extend(hw.iter().map(|p| (p.0, Some(&p.1), 0.0)));
            all.sort_by_key(|p| p.0);
            let mut n = 0;
            for pair in all.windows(2) {
                let (prev, cur) = (pair[0], pair[1]);
                let hit = match (prev.1, cur.1) {
                    (None, None) => {
                        if f == Changes {
                            cur.2 != prev.2 && !(cur.2.is_nan() && prev.2.is_nan())
                        } else {
                            cur.2 < prev.2
                        }
                    }
                    (Some(p), Some(c)) => {
                        if f == Changes {
                            !c.equals(p)
                        } else {
                            c.detect_reset(p)
                        }
                    }
                    _ => true,
                };
                if hit {
                    n += 1;
                }
            }
            Some(Point::F(f64::from(n)))
        }
        AbsentOverTime => Some(Point::F(1.0)),
        TsOfFirstOverTime => {
            let t = fl.first().map_or(i64::MAX, |p| p.0).min(hw[0].0);
            Some(Point::F(t as f64 / 1000.0))
        }
        TsOfLastOverTime => {
            let t = fl.last().map_or(i64::MIN, |p| p.0).max(hw[hw.len() - 1].0);
            Some(Point::F(t as f64 / 1000.0))
        }
        _ => {
            // Float-only functions: histograms are ignored.
            if fl.is_empty() {
                return Ok(None);
            }
            annos.info(ignored(), pos);
            return Ok(range_value(f, w, annos, c)?.map(Point::F));
        }
    })
}

/// Prometheus' `histogramRate`: the increase of a histogram counter (or
/// the delta of a gauge histogram) over `points`, with counter resets
/// handled bucket by bucket. `None` (with an annotation) when the window
/// cannot be combined.
fn histogram_rate(
    points: &[(i64, Hist)],
    is_counter: bool,
    annos: &mut crate::annotations::Annotations,
    name: &str,
    pos: usize,
) -> Option<FloatHistogram> {
    let gauge = |h: &FloatHistogram| h.counter_reset_hint == CounterResetHint::Gauge;
    let exp_custom = format!(
        "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {name:?}"
    );
    let not_counter = format!("this native histogram metric is not a counter: {name:?}");
    let first = &points[0].1;
    let last = &points[points.len() - 1].1;
    let mut prev: FloatHistogram = (**first).clone();
    let mut custom = prev.uses_custom_buckets();
    if is_counter && (gauge(first) || gauge(last)) {
        annos.warn(not_counter.clone(), pos);
    }
    if is_counter && points.len() > 1 {
        let second = &points[1].1;
        if second.detect_reset(&prev) {
            prev = FloatHistogram {
                schema: second.schema,
                custom_values: second.custom_values.clone(),
                ..Default::default()
            };
            custom = second.uses_custom_buckets();
        }
    }
    if last.uses_custom_buckets() != custom {
        annos.warn(exp_custom, pos);
        return None;
    }
    let mut min_schema = last.schema.min(prev.schema);
    for (_, cur) in &points[1..points.len() - 1] {
        if !is_counter {
            continue;
        }
        if gauge(cur) {
            annos.warn(not_counter.clone(), pos);
        }
        min_schema = min_schema.min(cur.schema);
        if cur.uses_custom_buckets() != custom {
            annos.warn(exp_custom, pos);
            return None;
        }
    }
    let mut h = (**last).clone();
    h.reduce_resolution(min_schema);
    match h.sub(&prev) {
        Err(_) => {
            annos.warn(exp_custom, pos);
            return None;
        }
        Ok((_, true)) => annos.info(
            "mismatched custom buckets were reconciled during subtraction",
            pos,
        ),
        Ok(_) => {}
    }
    if is_counter {
        let mut prev_ref: &FloatHistogram = &prev;
        for (_, cur) in &points[1..] {
            if cur.detect_reset(prev_ref) {
                match h.add(prev_ref) {
                    Err(_) => {
                        annos.warn(exp_custom, pos);
                        return None;
                    }
                    Ok((_, true)) => annos.info(
                        "mismatched custom buckets were reconciled during addition",
                        pos,
                    ),
                    Ok(_) => {}
                }
            }
            prev_ref = cur;
        }
    } else if !gauge(first) || !gauge(last) {
        annos.warn(
            format!("this native histogram metric is not a gauge: {name:?}"),
            pos,
        );
    }
    h.counter_reset_hint = CounterResetHint::Gauge;
    h.compact(0);
    Some(h)
}

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
        h: None,
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
                    h: None,
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
                    h: None,
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
                        h: None,
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

/// A native histogram and classic buckets of the same series (same labels
/// once `le` is removed) cannot both feed `histogram_quantile` /
/// `histogram_fraction`: Prometheus warns and drops both. Returns the
/// operands without them, or `None` when there is no such mix.
fn drop_mixed_histograms(
    c: &CallNode,
    v: &[Vec<ESample>],
    ctx: &mut StepCtx,
) -> Option<Vec<Vec<ESample>>> {
    let hi = match c.func {
        Func::HistogramQuantile => 1,
        Func::HistogramFraction => 2,
        Func::HistogramQuantiles => 0,
        _ => return None,
    };
    let input = v.get(hi)?;
    if !input.iter().any(|s| s.h.is_some()) || input.iter().all(|s| s.h.is_some()) {
        return None;
    }
    let classic: std::collections::HashSet<Labels> = input
        .iter()
        .filter(|s| s.h.is_none() && s.metric.get("le").and_then(parse_go_float).is_some())
        .map(|s| filter_labels(&s.metric, |n| n != "le"))
        .collect();
    let mixed: Vec<Labels> = input
        .iter()
        .filter(|s| s.h.is_some() && classic.contains(&*s.metric))
        .map(|s| (*s.metric).clone())
        .collect();
    if mixed.is_empty() {
        return None;
    }
    let pos = c.args.get(hi).map_or(0, |a| a.pos);
    for m in &mixed {
        let name = if ctx.delayed { m.metric_name() } else { "" };
        let mut msg = "vector contains a mix of classic and native histograms".to_string();
        if !name.is_empty() {
            msg.push_str(&format!(" for metric name {name:?}"));
        }
        ctx.annos.warn(msg, pos);
    }
    let mut out = v.to_vec();
    out[hi].retain(|s| {
        if s.h.is_some() {
            !mixed.contains(&*s.metric)
        } else {
            !mixed.contains(&filter_labels(&s.metric, |n| n != "le"))
        }
    });
    Some(out)
}

/// The native-histogram part of the histogram functions: every histogram
/// sample of the histogram argument yields one float. Float samples are left
/// to [`instant_call`] (classic buckets for quantile/fraction, nothing for
/// the others).
fn native_histogram_call(
    c: &CallNode,
    v: &[Vec<ESample>],
    ctx: &mut StepCtx,
    out: &mut Vec<ESample>,
) {
    use Func::*;
    let scalar = |i: usize| v.get(i).and_then(|x| x.first()).map_or(f64::NAN, |s| s.f);
    let hi = match c.func {
        HistogramQuantile => 1,
        HistogramFraction => 2,
        _ => 0,
    };
    let pos = c.args.get(hi).map_or(0, |a| a.pos);
    let Some(input) = v.get(hi) else {
        return;
    };
    for el in input {
        let Some(h) = &el.h else {
            continue;
        };
        let name = if ctx.delayed {
            el.metric.metric_name().to_string()
        } else {
            String::new()
        };
        let for_name = |msg: &str| {
            if name.is_empty() {
                msg.to_string()
            } else {
                format!("{msg} for metric name {name:?}")
            }
        };
        let metric = if ctx.delayed {
            el.metric.clone()
        } else {
            drop_metadata_arc(&el.metric)
        };
        let mut emit = |metric: Metric, f: f64| {
            out.push(ESample {
                h: None,
                metric,
                t: ctx.ts,
                f,
                drop_name: true,
            })
        };
        match c.func {
            HistogramCount => emit(metric, h.count),
            HistogramSum => emit(metric, h.sum),
            HistogramAvg => emit(metric, h.sum / h.count),
            HistogramStdvar => emit(metric, crate::quantile::native_variance(h)),
            HistogramStddev => emit(metric, crate::quantile::native_variance(h).sqrt()),
            HistogramQuantile => {
                let (val, nan, skew) = crate::quantile::native_quantile(scalar(0), h);
                if nan {
                    ctx.annos.info(
                        for_name("input to histogram_quantile has NaN observations, result is NaN"),
                        pos,
                    );
                }
                if skew {
                    ctx.annos.info(for_name("input to histogram_quantile has NaN observations, result is skewed higher"), pos);
                }
                emit(metric, val);
            }
            HistogramQuantiles => {
                let label = str_arg(&c.args[1]).0;
                for i in 2..c.args.len() {
                    let q = scalar(i);
                    let (val, nan, skew) = crate::quantile::native_quantile(q, h);
                    if nan {
                        ctx.annos.info(
                            for_name(
                                "input to histogram_quantile has NaN observations, result is NaN",
                            ),
                            pos,
                        );
                    }
                    if skew {
                        ctx.annos.info(for_name("input to histogram_quantile has NaN observations, result is skewed higher"), pos);
                    }
                    let qstr = crate::util::fmt_openmetrics_float(q);
                    emit(Arc::new(set_label(&metric, label, &qstr)), val);
                }
            }
            HistogramFraction => {
                let (val, nans) = crate::quantile::native_fraction(scalar(0), scalar(1), h);
                if nans {
                    ctx.annos.info(for_name("input to histogram_fraction has NaN observations, which are excluded from all fractions"), pos);
                }
                emit(metric, val);
            }
            _ => {}
        }
    }
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
    for s in v.iter().filter(|s| s.h.is_none()) {
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
