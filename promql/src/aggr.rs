//! Aggregation operators (`sum`, `avg`, `topk`, `quantile`, `count_values`,
//! ...), following Prometheus' `rangeEvalAgg`, `aggregation` and
//! `aggregationK`. Input series are mapped to groups once; each step then
//! folds the series' values at that step into their groups.

use std::collections::HashMap;
use std::sync::Arc;

use strata_tsdb::labels::{Labels, METRIC_NAME};

use crate::annotations::Annotations;
use crate::ast::{AggNode, AggOp, Kind, Node};
use crate::engine::Point;
use crate::engine::{exec_err, Evaluator, QueryError};
use crate::histogram::{CounterResetHint, FloatHistogram, HistSum};
use crate::lex::go_quote_bytes;
use crate::quantile::quantile;
use crate::util::{
    contains, filter_labels, fmt_float_plain, fmt_g, go_max, go_min, kahan_inc, labels_hash,
    set_label, signature_into, valid_label_name,
};
use crate::value::{total_points, ESample, ESeries, Hist, Mat, Metric};

/// Largest and smallest float that convert to an int64 without overflow,
/// as Prometheus checks them.
const MAX_INT64: f64 = 9_223_372_036_854_774_784.0;
const MIN_INT64: f64 = -9_223_372_036_854_775_808.0;

fn grouping_key(buf: &mut Vec<u8>, l: &Labels, grouping: &[String], without: bool) {
    if without {
        signature_into(buf, l, |n| n != METRIC_NAME && !contains(grouping, n));
    } else {
        signature_into(buf, l, |n| contains(grouping, n));
    }
}

fn grouping_labels(l: &Labels, grouping: &[String], without: bool) -> Labels {
    if without {
        filter_labels(l, |n| n != METRIC_NAME && !contains(grouping, n))
    } else if grouping.is_empty() {
        Labels::empty()
    } else {
        filter_labels(l, |n| contains(grouping, n))
    }
}

/// The aggregation parameter (`k`, `φ`, ratio) over the steps.
struct FParams {
    values: Vec<f64>,
    constant: Option<f64>,
    min: f64,
    max: f64,
    has_nan: bool,
}

impl FParams {
    fn at(&self, k: usize) -> f64 {
        match self.constant {
            Some(c) => c,
            None => self.values.get(k).copied().unwrap_or(0.0),
        }
    }
}

#[derive(Clone, Default)]
struct Group {
    seen: bool,
    value: f64,
    mean: f64,
    comp: f64,
    count: f64,
    incremental: bool,
    heap: Vec<f64>,
    drop_name: bool,
    /// Native histogram sum (sum/avg).
    hval: Option<HistSum>,
    has_float: bool,
    has_hist: bool,
    /// A histogram could not be added (exponential with custom buckets).
    incompatible: bool,
    reset_seen: bool,
    not_reset_seen: bool,
}

// ---------------------------------------------------------------------------
// A binary heap with exactly Go's container/heap algorithm, so ties are
// broken the same way Prometheus breaks them.

fn heap_up(h: &mut [ESample], mut j: usize, less: &impl Fn(&ESample, &ESample) -> bool) {
    while j > 0 {
        let i = (j - 1) / 2;
        if !less(&h[j], &h[i]) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

fn heap_down(h: &mut [ESample], i0: usize, less: &impl Fn(&ESample, &ESample) -> bool) -> bool {
    let n = h.len();
    let mut i = i0;
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        let j2 = j1 + 1;
        if j2 < n && less(&h[j2], &h[j1]) {
            j = j2;
        }
        if !less(&h[j], &h[i]) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
    i > i0
}

fn heap_push(h: &mut Vec<ESample>, s: ESample, less: &impl Fn(&ESample, &ESample) -> bool) {
    h.push(s);
    let n = h.len() - 1;
    heap_up(h, n, less);
}

fn heap_fix0(h: &mut [ESample], less: &impl Fn(&ESample, &ESample) -> bool) {
    if !heap_down(h, 0, less) {
        heap_up(h, 0, less);
    }
}

/// Go's `vectorByValueHeap.Less`: NaN is smallest.
fn by_value(a: &ESample, b: &ESample) -> bool {
    a.f.is_nan() || a.f < b.f
}

/// Go's `vectorByReverseValueHeap.Less`: NaN is "largest-first".
fn by_reverse_value(a: &ESample, b: &ESample) -> bool {
    a.f.is_nan() || a.f > b.f
}

/// Go's `sort.Sort(sort.Reverse(h))`: insertion sort for small inputs.
fn sort_reverse(v: &mut [ESample], less: impl Fn(&ESample, &ESample) -> bool) {
    let before = |a: &ESample, b: &ESample| less(b, a);
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

impl Evaluator<'_> {
    pub(crate) fn eval_agg(&mut self, a: &AggNode) -> Result<Mat, QueryError> {
        if a.op == AggOp::CountValues {
            return self.eval_count_values(a);
        }
        let original = self.cur_samples;
        let fp = match &a.param {
            Some(p) => Some(self.eval_fparams(p)?),
            None => None,
        };
        let input = self.eval_matrix(&a.expr)?;
        let result = self.range_eval_agg(a, input, fp)?;
        self.cur_samples = original + total_points(&result);
        Ok(result)
    }

    fn eval_fparams(&mut self, p: &Node) -> Result<FParams, QueryError> {
        let constant = matches!(p.unparen().kind, Kind::Number(_));
        let m = self.eval_matrix(p)?;
        let Some(s) = m.into_iter().next() else {
            return Ok(FParams {
                values: Vec::new(),
                constant: Some(0.0),
                min: 0.0,
                max: 0.0,
                has_nan: false,
            });
        };
        let values: Vec<f64> = s.points.iter().map(|p| p.1).collect();
        if constant {
            let c = values.first().copied().unwrap_or(0.0);
            return Ok(FParams {
                values,
                constant: Some(c),
                min: c,
                max: c,
                has_nan: c.is_nan(),
            });
        }
        let (mut min, mut max) = (f64::MAX, -f64::MAX);
        let mut has_nan = false;
        for &v in &values {
            max = go_max(max, v);
            min = go_min(min, v);
            has_nan |= v.is_nan();
        }
        Ok(FParams {
            values,
            constant: None,
            min,
            max,
            has_nan,
        })
    }

    fn eval_count_values(&mut self, a: &AggNode) -> Result<Mat, QueryError> {
        let (label, raw) = match a.param.as_ref().map(|p| &p.unparen().kind) {
            Some(Kind::Str(s, raw)) => (s.clone(), raw.clone()),
            _ => return Err(exec_err("count_values requires a string parameter")),
        };
        if !valid_label_name(&raw) {
            return Err(exec_err(format!(
                "invalid label name {}",
                go_quote_bytes(&raw)
            )));
        }
        let mut grouping = a.grouping.clone();
        if !a.without {
            grouping.push(label.clone());
            grouping.sort();
        }
        let without = a.without;
        let mut buf = Vec::new();
        self.range_eval_h(&[&a.expr], None, true, |_, v, _, out| {
            let mut idx: HashMap<Vec<u8>, usize> = HashMap::new();
            for s in &v[0] {
                let value = match &s.h {
                    Some(h) => h.go_string(),
                    None => fmt_float_plain(s.f),
                };
                let m = set_label(&s.metric, &label, &value);
                grouping_key(&mut buf, &m, &grouping, without);
                match idx.get(&buf) {
                    Some(&i) => out[i].f += 1.0,
                    None => {
                        idx.insert(buf.clone(), out.len());
                        out.push(ESample::new(
                            Arc::new(grouping_labels(&m, &grouping, without)),
                            1.0,
                        ));
                    }
                }
            }
            Ok(())
        })
    }

    fn range_eval_agg(
        &mut self,
        a: &AggNode,
        input: Mat,
        fp: Option<FParams>,
    ) -> Result<Mat, QueryError> {
        let op = a.op;
        let is_k = matches!(
            op,
            AggOp::Topk | AggOp::Bottomk | AggOp::Limitk | AggOp::LimitRatio
        );
        let mut buf = Vec::new();
        let mut group_of: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut series_group = Vec::with_capacity(input.len());
        let mut result: Mat = Vec::new();
        for s in &input {
            grouping_key(&mut buf, &s.metric, &a.grouping, a.without);
            let g = match group_of.get(&buf) {
                Some(&g) => g,
                None => {
                    let g = group_of.len();
                    group_of.insert(buf.clone(), g);
                    if !is_k {
                        result.push(ESeries {
                            hists: Vec::new(),
                            metric: Arc::new(grouping_labels(&s.metric, &a.grouping, a.without)),
                            points: Vec::new(),
                            drop_name: false,
                        });
                    }
                    g
                }
            };
            series_group.push(g);
        }
        let ngroups = group_of.len();
        let fp = fp.unwrap_or(FParams {
            values: Vec::new(),
            constant: Some(0.0),
            min: 0.0,
            max: 0.0,
            has_nan: false,
        });
        let param_pos = a.param.as_ref().map_or(0, |p| p.pos);
        match op {
            AggOp::Topk | AggOp::Bottomk | AggOp::Limitk => {
                if fp.max < 1.0 {
                    return Ok(Vec::new());
                }
                if fp.has_nan {
                    return Err(exec_err("Parameter value is NaN"));
                }
                if fp.min <= MIN_INT64 {
                    return Err(exec_err(format!(
                        "Scalar value {} underflows int64",
                        fmt_g(fp.min)
                    )));
                }
                if fp.max >= MAX_INT64 {
                    return Err(exec_err(format!(
                        "Scalar value {} overflows int64",
                        fmt_g(fp.max)
                    )));
                }
            }
            AggOp::LimitRatio => {
                if fp.max == 0.0 && fp.min == 0.0 {
                    return Ok(Vec::new());
                }
                if fp.has_nan {
                    return Err(exec_err("Ratio value is NaN"));
                }
                if fp.max > 1.0 {
                    self.annos.warn(
                        format!(
                            "ratio value should be between -1 and 1, got {}, capping to {}",
                            fmt_g(fp.max),
                            fmt_g(1.0)
                        ),
                        param_pos,
                    );
                }
                if fp.min < -1.0 {
                    self.annos.warn(
                        format!(
                            "ratio value should be between -1 and 1, got {}, capping to {}",
                            fmt_g(fp.min),
                            fmt_g(-1.0)
                        ),
                        param_pos,
                    );
                }
            }
            AggOp::Quantile => {
                for (bad, v) in [
                    (fp.has_nan, f64::NAN),
                    (fp.max > 1.0, fp.max),
                    (fp.min < 0.0, fp.min),
                ] {
                    if bad {
                        self.annos.warn(
                            format!("quantile value should be between 0 and 1, got {}", fmt_g(v)),
                            param_pos,
                        );
                    }
                }
            }
            _ => {}
        }

        let temp = self.cur_samples;
        let mut cursors = vec![(0usize, 0usize); input.len()];
        let expr_pos = a.expr.pos;
        let mut annos = std::mem::take(&mut self.annos);
        let mut groups: Vec<Group> = vec![Group::default(); ngroups];
        let mut heaps: Vec<Vec<ESample>> = vec![Vec::new(); if is_k { ngroups } else { 0 }];
        let mut k_out: Mat = Vec::new();
        let mut k_index: HashMap<Metric, usize> = HashMap::new();
        let instant = self.start == self.end;
        for (k, ts) in self.steps().enumerate() {
            self.check_deadline()?;
            self.cur_samples = temp;
            let param = fp.at(k);
            for g in groups.iter_mut() {
                g.seen = false;
            }
            if is_k {
                for h in heaps.iter_mut() {
                    h.clear();
                }
                if !agg_k_step(
                    op,
                    param,
                    &input,
                    &mut cursors,
                    &series_group,
                    &mut groups,
                    &mut heaps,
                    ts,
                    (&mut annos, expr_pos),
                ) {
                    continue;
                }
                for (gi, h) in heaps.iter_mut().enumerate() {
                    if !groups[gi].seen {
                        continue;
                    }
                    match op {
                        AggOp::Topk => sort_reverse(h, by_value),
                        AggOp::Bottomk => sort_reverse(h, by_reverse_value),
                        _ => {}
                    }
                    for s in h.iter() {
                        let i = match k_index.get(&s.metric) {
                            Some(&i) if !instant => i,
                            _ => {
                                k_index.insert(s.metric.clone(), k_out.len());
                                k_out.push(ESeries {
                                    hists: Vec::new(),
                                    metric: s.metric.clone(),
                                    points: Vec::new(),
                                    drop_name: s.drop_name,
                                });
                                k_out.len() - 1
                            }
                        };
                        match &s.h {
                            Some(hh) => k_out[i].hists.push((ts, hh.clone())),
                            None => k_out[i].points.push((ts, s.f)),
                        }
                    }
                }
            } else {
                agg_step(
                    op,
                    param,
                    &input,
                    &mut cursors,
                    &series_group,
                    &mut groups,
                    ts,
                    (&mut annos, expr_pos),
                );
                for (gi, g) in groups.iter_mut().enumerate() {
                    if !g.seen {
                        continue;
                    }
                    match finish(op, param, g, (&mut annos, expr_pos)) {
                        Some(Point::F(v)) => result[gi].points.push((ts, v)),
                        Some(Point::H(h)) => {
                            self.cur_samples += crate::value::hist_size(&h);
                            result[gi].hists.push((ts, h));
                        }
                        None => continue,
                    }
                    result[gi].drop_name = g.drop_name;
                }
            }
            if let Err(e) = self.check_samples() {
                self.annos.merge(annos);
                return Err(e);
            }
        }
        self.annos.merge(annos);
        if is_k {
            return Ok(k_out);
        }
        result.retain(|s| !s.points.is_empty() || !s.hists.is_empty());
        Ok(result)
    }
}

/// One step of topk/bottomk/limitk/limit_ratio. Returns false when the
/// step produces nothing (k < 1 or ratio 0). topk/bottomk ignore histograms
/// (with an info); limitk/limit_ratio pass them through.
#[allow(clippy::too_many_arguments)]
fn agg_k_step(
    op: AggOp,
    param: f64,
    input: &Mat,
    cursors: &mut [(usize, usize)],
    series_group: &[usize],
    groups: &mut [Group],
    heaps: &mut [Vec<ESample>],
    ts: i64,
    (annos, pos): (&mut Annotations, usize),
) -> bool {
    let k = (param as i64).min(input.len() as i64);
    let ratio = param.clamp(-1.0, 1.0);
    for (si, s) in input.iter().enumerate() {
        let Some((f, h)) = value_at(s, &mut cursors[si], ts) else {
            continue;
        };
        match op {
            AggOp::Topk | AggOp::Bottomk | AggOp::Limitk if k < 1 => return false,
            AggOp::LimitRatio if param == 0.0 => return false,
            _ => {}
        }
        if h.is_some() && matches!(op, AggOp::Topk | AggOp::Bottomk) {
            annos.info(
                format!("ignored histogram in {} aggregation", op.name()),
                pos,
            );
            continue;
        }
        let sample = ESample {
            h,
            metric: s.metric.clone(),
            t: ts,
            f,
            drop_name: s.drop_name,
        };
        let gi = series_group[si];
        let g = &mut groups[gi];
        let h = &mut heaps[gi];
        g.seen = true;
        match op {
            AggOp::Topk => {
                if (h.len() as i64) < k {
                    heap_push(h, sample, &by_value);
                } else if h[0].f < f || (h[0].f.is_nan() && !f.is_nan()) {
                    h[0] = sample;
                    if k > 1 {
                        heap_fix0(h, &by_value);
                    }
                }
            }
            AggOp::Bottomk => {
                if (h.len() as i64) < k {
                    heap_push(h, sample, &by_reverse_value);
                } else if h[0].f > f || (h[0].f.is_nan() && !f.is_nan()) {
                    h[0] = sample;
                    if k > 1 {
                        heap_fix0(h, &by_reverse_value);
                    }
                }
            }
            AggOp::Limitk => {
                if h.is_empty() {
                    h.push(sample);
                } else if (h.len() as i64) < k {
                    heap_push(h, sample, &by_value);
                }
            }
            _ => {
                let offset = labels_hash(&sample.metric) as f64 / u64::MAX as f64;
                let keep =
                    (ratio >= 0.0 && offset < ratio) || (ratio < 0.0 && offset >= 1.0 + ratio);
                if keep {
                    heap_push(h, sample, &by_value);
                }
            }
        }
    }
    true
}

/// The value of a series at step `ts` (a float, or a histogram with the
/// float unused), advancing its cursors.
fn value_at(s: &ESeries, c: &mut (usize, usize), ts: i64) -> Option<(f64, Option<Hist>)> {
    while c.0 < s.points.len() && s.points[c.0].0 < ts {
        c.0 += 1;
    }
    if c.0 < s.points.len() && s.points[c.0].0 == ts {
        let v = s.points[c.0].1;
        c.0 += 1;
        return Some((v, None));
    }
    while c.1 < s.hists.len() && s.hists[c.1].0 < ts {
        c.1 += 1;
    }
    if c.1 < s.hists.len() && s.hists[c.1].0 == ts {
        let h = s.hists[c.1].1.clone();
        c.1 += 1;
        return Some((0.0, Some(h)));
    }
    None
}

fn track_reset(g: &mut Group, h: &FloatHistogram) {
    match h.counter_reset_hint {
        CounterResetHint::Reset => g.reset_seen = true,
        CounterResetHint::NotReset => g.not_reset_seen = true,
        _ => {}
    }
}

/// Adds a histogram into a group's running sum; false when incompatible.
fn add_hist(
    g: &mut Group,
    h: &FloatHistogram,
    annos: &mut Annotations,
    pos: usize,
    s: &ESeries,
    avg: bool,
) {
    let Some(acc) = g.hval.as_mut() else {
        g.hval = Some(HistSum::new(h));
        return;
    };
    let was = acc.reconciled;
    match acc.add(h, avg).map(|_| (false, acc.reconciled && !was)) {
        Err(_) => {
            annos.warn(
                format!(
                    "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {:?}",
                    s.metric.metric_name()
                ),
                pos,
            );
            g.incompatible = true;
        }
        Ok((_, true)) => annos.info(
            "mismatched custom buckets were reconciled during aggregation",
            pos,
        ),
        Ok(_) => {}
    }
}

#[allow(clippy::too_many_arguments)]
fn agg_step(
    op: AggOp,
    _param: f64,
    input: &Mat,
    cursors: &mut [(usize, usize)],
    series_group: &[usize],
    groups: &mut [Group],
    ts: i64,
    (annos, pos): (&mut Annotations, usize),
) {
    for (si, s) in input.iter().enumerate() {
        let Some((f, h)) = value_at(s, &mut cursors[si], ts) else {
            continue;
        };
        let g = &mut groups[series_group[si]];
        if let Some(h) = &h {
            let ignored = matches!(
                op,
                AggOp::Stddev | AggOp::Stdvar | AggOp::Quantile | AggOp::Min | AggOp::Max
            );
            if ignored {
                annos.info(
                    format!("ignored histogram in {} aggregation", op.name()),
                    pos,
                );
                continue;
            }
            if !g.seen {
                *g = Group {
                    seen: true,
                    count: 1.0,
                    heap: std::mem::take(&mut g.heap),
                    drop_name: s.drop_name,
                    value: if op == AggOp::Group { 1.0 } else { 0.0 },
                    ..Group::default()
                };
                if matches!(op, AggOp::Sum | AggOp::Avg) {
                    g.has_hist = true;
                    track_reset(g, h);
                    g.hval = Some(HistSum::new(h));
                }
                continue;
            }
            if g.incompatible {
                continue;
            }
            if s.drop_name {
                g.drop_name = true;
            }
            match op {
                AggOp::Sum | AggOp::Avg => {
                    if op == AggOp::Avg {
                        g.count += 1.0;
                    }
                    g.has_hist = true;
                    track_reset(g, h);
                    add_hist(g, h, annos, pos, s, op == AggOp::Avg);
                }
                AggOp::Count => g.count += 1.0,
                _ => {}
            }
            continue;
        }
        if !g.seen {
            *g = Group {
                seen: true,
                value: f,
                mean: f,
                comp: 0.0,
                count: 1.0,
                incremental: false,
                heap: std::mem::take(&mut g.heap),
                drop_name: s.drop_name,
                has_float: true,
                ..Group::default()
            };
            match op {
                AggOp::Stddev | AggOp::Stdvar => {
                    g.value = if f.is_nan() || f.is_infinite() {
                        f64::NAN
                    } else {
                        0.0
                    };
                }
                AggOp::Quantile => {
                    g.heap.clear();
                    g.heap.push(f);
                }
                AggOp::Group => g.value = 1.0,
                _ => {}
            }
            continue;
        }
        if g.incompatible {
            continue;
        }
        if s.drop_name {
            g.drop_name = true;
        }
        g.has_float = true;
        match op {
            AggOp::Sum => (g.value, g.comp) = kahan_inc(f, g.value, g.comp),
            AggOp::Avg => {
                g.count += 1.0;
                if !g.incremental {
                    let (nv, nc) = kahan_inc(f, g.value, g.comp);
                    if !nv.is_infinite() {
                        g.value = nv;
                        g.comp = nc;
                        continue;
                    }
                    // The running sum would overflow: switch to an
                    // incremental mean from here on.
                    g.incremental = true;
                    g.mean = g.value / (g.count - 1.0);
                    g.comp /= g.count - 1.0;
                }
                let q = (g.count - 1.0) / g.count;
                (g.mean, g.comp) = kahan_inc(f / g.count, q * g.mean, q * g.comp);
            }
            AggOp::Max if g.value < f || g.value.is_nan() => g.value = f,
            AggOp::Min if g.value > f || g.value.is_nan() => g.value = f,
            AggOp::Count => g.count += 1.0,
            AggOp::Stddev | AggOp::Stdvar => {
                g.count += 1.0;
                let delta = f - g.mean;
                g.mean += delta / g.count;
                g.value += delta * (f - g.mean);
            }
            AggOp::Quantile => g.heap.push(f),
            _ => {}
        }
    }
}

fn finish(
    op: AggOp,
    param: f64,
    g: &mut Group,
    (annos, pos): (&mut Annotations, usize),
) -> Option<Point> {
    if matches!(op, AggOp::Sum | AggOp::Avg) && g.has_hist {
        if g.has_float {
            annos.warn(
                "encountered a mix of histograms and floats for aggregation",
                pos,
            );
            return None;
        }
        if g.reset_seen && g.not_reset_seen {
            annos.warn(
                "conflicting counter resets during histogram aggregation",
                pos,
            );
        }
        if g.incompatible {
            return None;
        }
        let acc = g.hval.take()?;
        let mut h = if op == AggOp::Avg {
            acc.avg()
        } else {
            acc.sum()
        };
        h.compact(0);
        return Some(Point::H(Arc::new(h)));
    }
    Some(Point::F(finish_f(op, param, g)))
}

fn finish_f(op: AggOp, param: f64, g: &Group) -> f64 {
    match op {
        AggOp::Sum => g.value + g.comp,
        AggOp::Avg => {
            if g.incremental {
                g.mean + g.comp
            } else {
                g.value / g.count + g.comp / g.count
            }
        }
        AggOp::Count => g.count,
        AggOp::Stdvar => g.value / g.count,
        AggOp::Stddev => (g.value / g.count).sqrt(),
        AggOp::Quantile => {
            let mut v = g.heap.clone();
            quantile(param, &mut v)
        }
        _ => g.value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: f64) -> ESample {
        ESample::new(crate::engine::empty_metric(), f)
    }

    #[test]
    fn go_heap_keeps_smallest_on_top() {
        let mut h = Vec::new();
        for v in [5.0, 1.0, 3.0, f64::NAN, 2.0] {
            heap_push(&mut h, s(v), &by_value);
        }
        assert!(h[0].f.is_nan());
        let mut v: Vec<ESample> = [1.0, 3.0, 2.0].into_iter().map(s).collect();
        sort_reverse(&mut v, by_value);
        assert_eq!(
            v.iter().map(|x| x.f).collect::<Vec<_>>(),
            vec![3.0, 2.0, 1.0]
        );
    }
}
