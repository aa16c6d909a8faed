//! Binary operators: arithmetic, comparisons (with and without `bool`), and
//! the set operators, with `on`/`ignoring` and `group_left`/`group_right`
//! vector matching, following Prometheus' `VectorBinop` and friends.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use strata_tsdb::labels::{Labels, METRIC_NAME};

use crate::annotations::Annotations;
use crate::ast::{BinNode, BinOp, Card, Matching, VType};
use crate::engine::{exec_err, Evaluator, PtrHasher, QueryError};
use crate::histogram::CounterResetHint;
use crate::util::{contains, filter_labels, is_metadata_label, labels_hash, set_label};
use crate::value::{ESample, Hist, Mat, Metric};

/// Scalar/scalar arithmetic; comparisons give 1 or 0 (they require `bool`).
pub(crate) fn scalar_binop(op: BinOp, l: f64, r: f64) -> f64 {
    match op {
        BinOp::Add => l + r,
        BinOp::Sub => l - r,
        BinOp::Mul => l * r,
        BinOp::Div => l / r,
        BinOp::Pow => l.powf(r),
        BinOp::Mod => go_mod(l, r),
        BinOp::Atan2 => l.atan2(r),
        BinOp::Eql => btos(l == r),
        BinOp::Neq => btos(l != r),
        BinOp::Gtr => btos(l > r),
        BinOp::Lss => btos(l < r),
        BinOp::Gte => btos(l >= r),
        BinOp::Lte => btos(l <= r),
        BinOp::And | BinOp::Or | BinOp::Unless | BinOp::TrimUpper | BinOp::TrimLower => f64::NAN,
    }
}

fn btos(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Go's `math.Mod` (sign of the dividend), which Rust's `%` matches except
/// for the edge cases spelled out here.
fn go_mod(x: f64, y: f64) -> f64 {
    if y == 0.0 || x.is_infinite() || x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    x % y
}

/// Element-wise operation on two floats: `(value, keep)`. Comparisons keep
/// the left value when true.
fn elem_binop(op: BinOp, l: f64, r: f64) -> (f64, bool) {
    match op {
        BinOp::Eql => (l, l == r),
        BinOp::Neq => (l, l != r),
        BinOp::Gtr => (l, l > r),
        BinOp::Lss => (l, l < r),
        BinOp::Gte => (l, l >= r),
        BinOp::Lte => (l, l <= r),
        _ => (scalar_binop(op, l, r), true),
    }
}

/// What one element-wise operation involving a histogram yields.
struct HistOut {
    f: f64,
    h: Option<Hist>,
    keep: bool,
    /// An annotation that also drops the sample in vector/vector operations
    /// (Prometheus returns these as the operation's error).
    err: Option<(bool, String)>,
    /// An info that does not drop the sample.
    info: Option<String>,
}

/// Prometheus' `vectorElemBinop` for operands where at least one side is a
/// histogram: `h*f`, `f*h`, `h/f`, `h+h`, `h-h`, `h==h`, `h!=h`; every other
/// combination drops the sample with an "incompatible sample types" info.
fn hist_elem_binop(op: BinOp, fl: f64, fr: f64, hl: Option<&Hist>, hr: Option<&Hist>) -> HistOut {
    let typ = |h: Option<&Hist>| if h.is_some() { "histogram" } else { "float" };
    let incompatible = HistOut {
        f: 0.0,
        h: None,
        keep: false,
        err: Some((
            false,
            format!(
                "incompatible sample types encountered for binary operator {:?}: {} {} {}",
                op.symbol(),
                typ(hl),
                op.symbol(),
                typ(hr)
            ),
        )),
        info: None,
    };
    let scaled = |h: &Hist, f: f64, div: bool| {
        let mut r = (**h).clone();
        if div {
            r.div(f);
        } else {
            r.mul(f);
        }
        r.compact(0);
        HistOut {
            f: 0.0,
            h: Some(Arc::new(r)),
            keep: true,
            err: None,
            info: None,
        }
    };
    match (hl, hr, op) {
        (None, Some(h), BinOp::Mul) => scaled(h, fl, false),
        (Some(h), None, BinOp::Mul) => scaled(h, fr, false),
        (Some(h), None, BinOp::Div) => scaled(h, fr, true),
        (Some(a), Some(b), BinOp::Add | BinOp::Sub) => {
            let mut r = (**a).clone();
            let sub = op == BinOp::Sub;
            let res = if sub { r.sub(b) } else { r.add(b) };
            let what = if sub { "subtraction" } else { "addition" };
            match res {
                Err(_) => HistOut {
                    f: 0.0,
                    h: None,
                    keep: false,
                    err: Some((
                        true,
                        format!(
                            "incompatible bucket layout encountered for binary operator {}",
                            op.symbol()
                        ),
                    )),
                    info: None,
                },
                Ok((collision, reconciled)) => {
                    if sub {
                        r.counter_reset_hint = CounterResetHint::Gauge;
                    }
                    r.compact(0);
                    HistOut {
                        f: 0.0,
                        h: Some(Arc::new(r)),
                        keep: true,
                        err: collision.then(|| {
                            (
                                true,
                                format!("conflicting counter resets during histogram {what}"),
                            )
                        }),
                        info: reconciled.then(|| {
                            format!("mismatched custom buckets were reconciled during {what}")
                        }),
                    }
                }
            }
        }
        (Some(h), None, BinOp::TrimUpper | BinOp::TrimLower) => {
            let mut r = (**h).clone();
            r.trim_buckets(fr, op == BinOp::TrimUpper);
            HistOut {
                f: 0.0,
                h: Some(Arc::new(r)),
                keep: true,
                err: None,
                info: None,
            }
        }
        (Some(a), Some(b), BinOp::Eql | BinOp::Neq) => {
            let eq = a.equals(b);
            HistOut {
                f: 0.0,
                h: Some(a.clone()),
                keep: if op == BinOp::Eql { eq } else { !eq },
                err: None,
                info: None,
            }
        }
        _ => incompatible,
    }
}

fn note(annos: &mut Annotations, (warn, msg): (bool, String), pos: usize) {
    if warn {
        annos.warn(msg, pos);
    } else {
        annos.info(msg, pos);
    }
}

/// Labels used to report a match group: `on` keeps the listed labels,
/// `ignoring` drops them and the metric name.
fn match_labels(l: &Labels, m: &Matching) -> Labels {
    if m.on {
        filter_labels(l, |n| contains(&m.labels, n))
    } else {
        filter_labels(l, |n| n != METRIC_NAME && !contains(&m.labels, n))
    }
}

/// Output label set of a vector/vector operation (Prometheus' `resultMetric`).
fn result_metric(lhs: &Labels, rhs: &Labels, op: BinOp, m: &Matching, drop_name: bool) -> Labels {
    let drop_meta = drop_name || op.changes_metric_schema();
    let mut out = filter_labels(lhs, |n| {
        if drop_meta && is_metadata_label(n) {
            return false;
        }
        if m.card == Card::OneToOne {
            if m.on {
                return contains(&m.labels, n);
            }
            return !contains(&m.labels, n);
        }
        true
    });
    for ln in &m.include {
        let v = rhs.get(ln).unwrap_or("");
        out = set_label(&out, ln, v);
    }
    out
}

/// Per-operation state kept across steps (buffers and the result-metric cache).
#[derive(Default)]
struct BinopState {
    right: Vec<Option<usize>>,
    matched: Vec<bool>,
    /// (signature ordinal, hash of the output labels) already produced this
    /// step, for many-to-one matching (Prometheus compares hashes too).
    matched_sets: HashSet<(u32, u64)>,
    /// Output labels (and their hash) by the addresses of the two inputs'
    /// label sets, which stay alive for the whole operation.
    cache: HashMap<(usize, usize), (Metric, u64), BuildHasherDefault<PtrHasher>>,
}

impl Evaluator<'_> {
    pub(crate) fn eval_binary(&mut self, b: &BinNode, pos: usize) -> Result<Mat, QueryError> {
        let (lt, rt) = (b.lhs.vtype(), b.rhs.vtype());
        let op = b.op;
        match (lt, rt) {
            (VType::Scalar, VType::Scalar) => {
                self.range_eval(&[&b.lhs, &b.rhs], None, |_, v, _, out| {
                    let l = v[0].first().map_or(f64::NAN, |s| s.f);
                    let r = v[1].first().map_or(f64::NAN, |s| s.f);
                    out.push(ESample::new(
                        crate::engine::empty_metric(),
                        scalar_binop(op, l, r),
                    ));
                    Ok(())
                })
            }
            (VType::Vector, VType::Vector) => {
                let m = b.matching.clone().unwrap_or(Matching {
                    card: if op.is_set() {
                        Card::ManyToMany
                    } else {
                        Card::OneToOne
                    },
                    on: false,
                    labels: Vec::new(),
                    include: Vec::new(),
                    fill: (None, None),
                });
                match op {
                    BinOp::And | BinOp::Or | BinOp::Unless => {
                        let mut present: Vec<bool> = Vec::new();
                        self.range_eval_h(&[&b.lhs, &b.rhs], Some(&m), true, |_, v, sg, out| {
                            set_op(op, &v[0], &v[1], &sg[0], &sg[1], &mut present, out);
                            Ok(())
                        })
                    }
                    _ => {
                        let mut st = BinopState::default();
                        let return_bool = b.return_bool;
                        self.range_eval_h(&[&b.lhs, &b.rhs], Some(&m), true, |ctx, v, sg, out| {
                            vector_binop(
                                op,
                                &v[0],
                                &v[1],
                                &sg[0],
                                &sg[1],
                                &m,
                                return_bool,
                                (ctx.delayed, pos, &mut *ctx.annos),
                                &mut st,
                                out,
                            )
                        })
                    }
                }
            }
            (VType::Vector, VType::Scalar) | (VType::Scalar, VType::Vector) => {
                let swap = lt == VType::Scalar;
                let return_bool = b.return_bool;
                self.range_eval_h(&[&b.lhs, &b.rhs], None, true, |ctx, v, _, out| {
                    let (vec, sc) = if swap { (&v[1], &v[0]) } else { (&v[0], &v[1]) };
                    let scalar = sc.first().map_or(f64::NAN, |s| s.f);
                    for s in vec {
                        let (lf, rf) = if swap { (scalar, s.f) } else { (s.f, scalar) };
                        let is_trim = matches!(op, BinOp::TrimUpper | BinOp::TrimLower);
                        if s.h.is_some() || is_trim {
                            let h = s.h.as_ref();
                            let (hl, hr) = if swap { (None, h) } else { (h, None) };
                            let r = hist_elem_binop(op, lf, rf, hl, hr);
                            if let Some(i) = r.info {
                                ctx.annos.info(i, pos);
                            }
                            if let Some(e) = r.err {
                                let warn = e.0;
                                note(ctx.annos, e, pos);
                                if !warn {
                                    continue;
                                }
                            }
                            let (mut val, mut hv, mut keep) = (r.f, r.h, r.keep);
                            if op.is_comparison() && swap {
                                val = rf;
                                hv = h.cloned();
                            }
                            if return_bool {
                                val = btos(keep);
                                hv = None;
                                keep = true;
                            }
                            if keep {
                                let mut o = s.clone();
                                o.f = val;
                                o.h = hv;
                                if op.changes_metric_schema() || return_bool {
                                    if !ctx.delayed {
                                        o.metric = crate::util::drop_metadata_arc(&o.metric);
                                    }
                                    o.drop_name = true;
                                }
                                out.push(o);
                            }
                            continue;
                        }
                        let (mut val, mut keep) = elem_binop(op, lf, rf);
                        // With the scalar on the left, a filter still returns
                        // the vector element's value.
                        if op.is_comparison() && swap {
                            val = rf;
                        }
                        if return_bool {
                            val = btos(keep);
                            keep = true;
                        }
                        if keep {
                            let mut o = s.clone();
                            o.f = val;
                            if op.changes_metric_schema() || return_bool {
                                if !ctx.delayed {
                                    o.metric = crate::util::drop_metadata_arc(&o.metric);
                                }
                                o.drop_name = true;
                            }
                            out.push(o);
                        }
                    }
                    Ok(())
                })
            }
            _ => Err(exec_err(
                "binary expression must contain only scalar and instant vector types",
            )),
        }
    }
}

fn set_op(
    op: BinOp,
    lhs: &[ESample],
    rhs: &[ESample],
    ls: &[u32],
    rs: &[u32],
    present: &mut Vec<bool>,
    out: &mut Vec<ESample>,
) {
    let n = ls
        .iter()
        .chain(rs)
        .map(|&x| x as usize + 1)
        .max()
        .unwrap_or(0);
    present.clear();
    present.resize(n, false);
    match op {
        BinOp::And => {
            if lhs.is_empty() || rhs.is_empty() {
                return;
            }
            for &o in rs {
                present[o as usize] = true;
            }
            for (i, s) in lhs.iter().enumerate() {
                if present[ls[i] as usize] {
                    out.push(s.clone());
                }
            }
        }
        BinOp::Or => {
            for (i, s) in lhs.iter().enumerate() {
                present[ls[i] as usize] = true;
                out.push(s.clone());
            }
            for (j, s) in rhs.iter().enumerate() {
                if !present[rs[j] as usize] {
                    out.push(s.clone());
                }
            }
        }
        _ => {
            for &o in rs {
                present[o as usize] = true;
            }
            for (i, s) in lhs.iter().enumerate() {
                if !present[ls[i] as usize] {
                    out.push(s.clone());
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn vector_binop(
    op: BinOp,
    lhs: &[ESample],
    rhs: &[ESample],
    lsig: &[u32],
    rsig: &[u32],
    m: &Matching,
    return_bool: bool,
    (delayed, pos, annos): (bool, usize, &mut Annotations),
    st: &mut BinopState,
    out: &mut Vec<ESample>,
) -> Result<(), QueryError> {
    let (fill_left, fill_right) = m.fill;
    if (lhs.is_empty() && rhs.is_empty())
        || ((lhs.is_empty() || rhs.is_empty()) && fill_left.is_none() && fill_right.is_none())
    {
        return Ok(());
    }
    // For one-to-many, swap sides so the "one" side is always on the right.
    let (lhs, rhs, lsig, rsig) = if m.card == Card::OneToMany {
        (rhs, lhs, rsig, lsig)
    } else {
        (lhs, rhs, lsig, rsig)
    };
    let n = lsig
        .iter()
        .chain(rsig)
        .map(|&x| x as usize + 1)
        .max()
        .unwrap_or(0);
    st.right.clear();
    st.right.resize(n, None);
    for (i, s) in rhs.iter().enumerate() {
        let o = rsig[i] as usize;
        if let Some(prev) = st.right[o] {
            let side = if m.card == Card::OneToMany {
                "left"
            } else {
                "right"
            };
            let group = match_labels(&s.metric, m);
            let (mut a, mut b) = (s.metric.to_string(), rhs[prev].metric.to_string());
            if a > b {
                std::mem::swap(&mut a, &mut b);
            }
            return Err(exec_err(format!(
                "found duplicate series for the match group {group} on the {side} hand-side of the operation: [{a}, {b}];many-to-many matching not allowed: matching labels must be unique on one side"
            )));
        }
        st.right[o] = Some(i);
    }
    st.matched.clear();
    st.matched.resize(n, false);
    if m.card != Card::OneToOne {
        st.matched_sets.clear();
    }
    let drop_name = !delayed && return_bool;
    let mut ctx = PairCtx {
        op,
        m,
        return_bool,
        drop_name,
        pos,
        annos,
    };
    for (i, ls) in lhs.iter().enumerate() {
        let o = lsig[i] as usize;
        match st.right[o] {
            Some(ri) => binop_pair(&mut ctx, ls, &rhs[ri], o, true, st, out)?,
            None => {
                // No partner: the right-hand fill value stands in for it.
                let Some(v) = fill_right else {
                    continue;
                };
                let filler = fill_sample(ls, m, v);
                binop_pair(&mut ctx, ls, &filler, o, false, st, out)?;
            }
        }
    }
    // Right-hand elements nobody matched, with the left-hand fill value.
    if let Some(v) = fill_left {
        for (j, rs) in rhs.iter().enumerate() {
            let o = rsig[j] as usize;
            if st.matched[o] {
                continue;
            }
            let filler = fill_sample(rs, m, v);
            binop_pair(&mut ctx, &filler, rs, o, false, st, out)?;
        }
    }
    Ok(())
}

/// The stand-in for a missing partner: the matching labels of `s` (as
/// Prometheus' `MatchLabels`) and the fill value.
fn fill_sample(s: &ESample, m: &Matching, v: f64) -> ESample {
    ESample {
        h: None,
        metric: Arc::new(match_labels(&s.metric, m)),
        t: s.t,
        f: v,
        drop_name: false,
    }
}

/// What stays the same for every pair of one operation.
struct PairCtx<'a> {
    op: BinOp,
    m: &'a Matching,
    return_bool: bool,
    drop_name: bool,
    pos: usize,
    annos: &'a mut Annotations,
}

/// Applies the operator to one matched pair (`ls` is always the "many"
/// side). `cacheable` is false for fill stand-ins, whose label sets are
/// short-lived and must not enter the address-keyed cache.
fn binop_pair(
    c: &mut PairCtx<'_>,
    ls: &ESample,
    rs: &ESample,
    o: usize,
    cacheable: bool,
    st: &mut BinopState,
    out: &mut Vec<ESample>,
) -> Result<(), QueryError> {
    let (op, m) = (c.op, c.m);
    let (fl, fr, hl, hr) = if m.card == Card::OneToMany {
        (rs.f, ls.f, rs.h.as_ref(), ls.h.as_ref())
    } else {
        (ls.f, rs.f, ls.h.as_ref(), rs.h.as_ref())
    };
    let is_trim = matches!(op, BinOp::TrimUpper | BinOp::TrimLower);
    let (mut val, mut hv, keep) = if hl.is_some() || hr.is_some() || is_trim {
        let r = hist_elem_binop(op, fl, fr, hl, hr);
        if let Some(e) = r.err {
            note(c.annos, e, c.pos);
            return Ok(());
        }
        if let Some(i) = r.info {
            c.annos.info(i, c.pos);
        }
        (r.f, r.h, r.keep)
    } else {
        let (v, k) = elem_binop(op, fl, fr);
        (v, None, k)
    };
    if c.return_bool {
        val = btos(keep);
        hv = None;
    }
    let (metric, hash) = if cacheable {
        let key = (
            Arc::as_ptr(&ls.metric) as usize,
            Arc::as_ptr(&rs.metric) as usize,
        );
        match st.cache.get(&key) {
            Some(x) => x.clone(),
            None => {
                let x = Arc::new(result_metric(&ls.metric, &rs.metric, op, m, c.drop_name));
                let h = labels_hash(&x);
                st.cache.insert(key, (x.clone(), h));
                (x, h)
            }
        }
    } else {
        let x = Arc::new(result_metric(&ls.metric, &rs.metric, op, m, c.drop_name));
        let h = labels_hash(&x);
        (x, h)
    };
    if m.card == Card::OneToOne {
        if st.matched[o] {
            return Err(exec_err(
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
            ));
        }
    } else if !st.matched_sets.insert((o as u32, hash)) {
        return Err(exec_err(
            "multiple matches for labels: grouping labels must ensure unique matches",
        ));
    }
    st.matched[o] = true;
    if !keep && !c.return_bool {
        return Ok(());
    }
    out.push(ESample {
        h: hv,
        metric,
        t: ls.t,
        f: val,
        drop_name: c.return_bool,
    });
    Ok(())
}
