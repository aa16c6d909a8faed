//! Native histograms as the engine evaluates them: [`FloatHistogram`].
//!
//! # Main types
//!
//! - [`FloatHistogram`]: one native histogram sample with float counts, in
//!   Prometheus' sparse layout. Buckets are addressed by an integer index;
//!   [`Span`]s run-length encode which indexes are present (`offset` is the
//!   gap to the previous span's end, the first span's offset is the first
//!   index) and `*_buckets` hold the counts of the present buckets in order.
//!   An exponential schema `s` (-4..=8) gives bucket `i` the upper bound
//!   `2^(i·2^-s)`; schema [`CUSTOM_BUCKETS_SCHEMA`] (-53, "NHCB") uses the
//!   explicit upper bounds in `custom_values` (bucket `i` ends at
//!   `custom_values[i]`, the last one at +Inf) and has no zero bucket and
//!   no negative buckets.
//! - [`CounterResetHint`]: what the producer knew about counter resets.
//! - [`HistogramError`]: operations between incompatible histograms
//!   (exponential with custom buckets).
//!
//! # How operations work
//!
//! Arithmetic (`add`, `sub`) does not walk the span encoding in lock-step
//! like Prometheus does; it expands both operands into sorted
//! `(index, count)` lists, combines those, and re-encodes. The results are
//! the same histograms (up to span layout, which every comparison
//! normalises with [`FloatHistogram::compact`]). Schema differences are
//! reconciled by reducing the finer histogram to the coarser schema; zero
//! thresholds by widening to the larger one (moving buckets inside it into
//! the zero bucket); differing custom bounds by mapping both operands onto
//! the intersection of their bounds, as Prometheus 3.x does.

use crate::util::fmt_g;

/// The schema number of histograms with custom bucket bounds (NHCB).
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// Smallest and largest exponential schema.
pub const MIN_EXP_SCHEMA: i32 = -4;
pub const MAX_EXP_SCHEMA: i32 = 8;

/// The producer's knowledge about counter resets of this sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CounterResetHint {
    /// Nothing known; consumers detect resets by comparing samples.
    #[default]
    Unknown,
    /// A counter reset happened right before this sample.
    Reset,
    /// No counter reset happened right before this sample.
    NotReset,
    /// The histogram is a gauge: resets are meaningless.
    Gauge,
}

/// A run of consecutive present buckets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// Gap (in bucket indexes) to the end of the previous span, or the first
    /// index for the first span.
    pub offset: i32,
    pub length: u32,
}

/// One bucket with its bounds, as the quantile code iterates them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    pub lower: f64,
    pub upper: f64,
    pub lower_inclusive: bool,
    pub upper_inclusive: bool,
    pub count: f64,
    pub index: i32,
}

/// Operations between histograms that cannot be combined.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HistogramError {
    #[error("cannot apply this operation on histograms with a mix of exponential and custom bucket schemas")]
    IncompatibleSchema,
}

/// A native histogram sample with float counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FloatHistogram {
    pub counter_reset_hint: CounterResetHint,
    pub schema: i32,
    /// Observations with absolute value ≤ this go into the zero bucket.
    pub zero_threshold: f64,
    pub zero_count: f64,
    /// Total number of observations (may differ from the bucket sum for NaN observations).
    pub count: f64,
    pub sum: f64,
    pub positive_spans: Vec<Span>,
    pub negative_spans: Vec<Span>,
    pub positive_buckets: Vec<f64>,
    pub negative_buckets: Vec<f64>,
    /// Upper bounds of the custom buckets (schema -53 only), strictly increasing, without +Inf.
    pub custom_values: Vec<f64>,
}

/// Sorted `(bucket index, count)` pairs: the expanded form of spans+buckets.
type Sparse = Vec<(i32, f64)>;

fn to_sparse(spans: &[Span], buckets: &[f64]) -> Sparse {
    let mut out = Vec::with_capacity(buckets.len());
    let mut idx: i64 = 0;
    let mut bi = 0;
    for (k, s) in spans.iter().enumerate() {
        if k == 0 {
            idx = i64::from(s.offset);
        } else {
            idx += i64::from(s.offset);
        }
        for _ in 0..s.length {
            if bi >= buckets.len() {
                return out;
            }
            out.push((
                idx.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
                buckets[bi],
            ));
            bi += 1;
            idx += 1;
        }
    }
    out
}

/// Encodes sorted pairs as spans; buckets whose indexes are at most
/// `max_gap` apart are joined into one span (the gap filled with zeros).
fn from_sparse(v: &[(i32, f64)], max_gap: usize) -> (Vec<Span>, Vec<f64>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut buckets = Vec::with_capacity(v.len());
    let mut end: i64 = 0; // one past the last index of the previous span
    for &(i, c) in v {
        let i = i64::from(i);
        if let Some(last) = spans.last_mut() {
            let gap = i - end;
            if gap >= 0 && (gap as u64) <= max_gap as u64 {
                buckets.extend(std::iter::repeat_n(0.0, gap as usize));
                last.length += gap as u32 + 1;
                buckets.push(c);
                end = i + 1;
                continue;
            }
            spans.push(Span {
                offset: (i - end) as i32,
                length: 1,
            });
        } else {
            spans.push(Span {
                offset: i as i32,
                length: 1,
            });
        }
        buckets.push(c);
        end = i + 1;
    }
    (spans, buckets)
}

/// Merges two sorted sparse lists, adding (or subtracting) `b` into `a`.
fn merge(a: &[(i32, f64)], b: &[(i32, f64)], negate: bool) -> Sparse {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    let sign = if negate { -1.0 } else { 1.0 };
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                out.push((x.0, x.1 + sign * y.1));
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.0 < y.0 => {
                out.push(*x);
                i += 1;
            }
            (Some(x), None) => {
                out.push(*x);
                i += 1;
            }
            (_, Some(y)) => {
                out.push((y.0, sign * y.1));
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// The index of bucket `idx` of schema `from` in the coarser schema `to`.
fn target_idx(idx: i32, from: i32, to: i32) -> i32 {
    let i = i64::from(idx) - 1;
    let shift = u32::try_from(from - to).unwrap_or(0).min(63);
    ((i >> shift) + 1) as i32
}

fn reduce(v: &[(i32, f64)], from: i32, to: i32) -> Sparse {
    if from <= to {
        return v.to_vec();
    }
    let mut out: Sparse = Vec::with_capacity(v.len());
    for &(i, c) in v {
        let t = target_idx(i, from, to);
        match out.last_mut() {
            Some(last) if last.0 == t => last.1 += c,
            _ => out.push((t, c)),
        }
    }
    out
}

/// Upper bound of exponential bucket `idx` in `schema`.
pub(crate) fn exp_bound(idx: i32, schema: i32) -> f64 {
    // Valid schemas are -4..=8; clamping keeps invalid input from storage
    // from overflowing the shifts below (the values are then meaningless,
    // never a panic).
    let schema = schema.clamp(-20, 20);
    if schema < 0 {
        let exp = i64::from(idx) << (-schema);
        if exp == 1024 {
            return f64::MAX;
        }
        return ldexp(1.0, exp);
    }
    let frac_idx = idx & ((1 << schema) - 1);
    let frac = if frac_idx == 0 {
        0.5
    } else {
        0.5 * (f64::from(frac_idx) / f64::from(1 << schema)).exp2()
    };
    let exp = i64::from(idx >> schema) + 1;
    if frac == 0.5 && exp == 1025 {
        return f64::MAX;
    }
    ldexp(frac, exp)
}

fn ldexp(frac: f64, exp: i64) -> f64 {
    // Split the exponent so intermediate powers do not overflow early.
    let e = exp.clamp(-2200, 2200) as i32;
    if e > 1000 {
        frac * 2f64.powi(1000) * 2f64.powi(e - 1000)
    } else if e < -1000 {
        frac * 2f64.powi(-1000) * 2f64.powi(e + 1000)
    } else {
        frac * 2f64.powi(e)
    }
}

/// Do two custom-bounds lists match exactly?
pub(crate) fn custom_bounds_match(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

fn intersect_bounds(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push(a[i]);
            i += 1;
            j += 1;
        } else if a[i] < b[j] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Maps custom buckets onto a coarser bound set (a subset of `bounds`).
fn map_custom(v: &[(i32, f64)], bounds: &[f64], target: &[f64]) -> Sparse {
    let mut out: Sparse = Vec::new();
    for &(i, c) in v {
        let upper = usize::try_from(i)
            .ok()
            .and_then(|i| bounds.get(i).copied())
            .unwrap_or(f64::INFINITY);
        let t = target.partition_point(|&b| b < upper) as i32;
        match out.last_mut() {
            Some(last) if last.0 == t => last.1 += c,
            _ => out.push((t, c)),
        }
    }
    out
}

impl FloatHistogram {
    /// Checks the schema as Prometheus' `Validate` does: -4..=8 for
    /// exponential buckets, or -53 for custom buckets.
    pub fn check_schema(&self) -> Result<(), String> {
        if self.uses_custom_buckets() || (MIN_EXP_SCHEMA..=MAX_EXP_SCHEMA).contains(&self.schema) {
            return Ok(());
        }
        Err(format!(
            "histogram has an invalid schema, which must be between {MIN_EXP_SCHEMA} and {MAX_EXP_SCHEMA} for exponential buckets, or {CUSTOM_BUCKETS_SCHEMA} for custom buckets"
        ))
    }

    /// Whether this histogram uses custom bucket bounds (schema -53).
    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == CUSTOM_BUCKETS_SCHEMA
    }

    /// Positive buckets as sorted `(index, count)` pairs.
    fn pos(&self) -> Sparse {
        to_sparse(&self.positive_spans, &self.positive_buckets)
    }

    fn neg(&self) -> Sparse {
        to_sparse(&self.negative_spans, &self.negative_buckets)
    }

    fn set_pos(&mut self, v: &[(i32, f64)]) {
        let (s, b) = from_sparse(v, 0);
        self.positive_spans = s;
        self.positive_buckets = b;
    }

    fn set_neg(&mut self, v: &[(i32, f64)]) {
        let (s, b) = from_sparse(v, 0);
        self.negative_spans = s;
        self.negative_buckets = b;
    }

    /// Multiplies every count and the sum by `f` (negative: becomes a gauge).
    pub fn mul(&mut self, f: f64) -> &mut Self {
        self.zero_count *= f;
        self.count *= f;
        self.sum *= f;
        self.positive_buckets.iter_mut().for_each(|b| *b *= f);
        self.negative_buckets.iter_mut().for_each(|b| *b *= f);
        if f < 0.0 {
            self.counter_reset_hint = CounterResetHint::Gauge;
        }
        self
    }

    /// Divides every count and the sum by `f`; division by zero drops all buckets.
    pub fn div(&mut self, f: f64) -> &mut Self {
        self.zero_count /= f;
        self.count /= f;
        self.sum /= f;
        if f == 0.0 {
            self.positive_buckets.clear();
            self.negative_buckets.clear();
            self.positive_spans.clear();
            self.negative_spans.clear();
            return self;
        }
        self.positive_buckets.iter_mut().for_each(|b| *b /= f);
        self.negative_buckets.iter_mut().for_each(|b| *b /= f);
        if f < 0.0 {
            self.counter_reset_hint = CounterResetHint::Gauge;
        }
        self
    }

    /// Combines the counter reset hints of two operands of `+`/`-`.
    /// Returns true on a collision (one says reset, the other not).
    fn adjust_counter_reset(&mut self, other: &FloatHistogram) -> bool {
        use CounterResetHint::*;
        let (a, b) = (self.counter_reset_hint, other.counter_reset_hint);
        if a == b || a == Gauge {
            return false;
        }
        if b == Gauge {
            self.counter_reset_hint = Gauge;
            return false;
        }
        if a == Unknown {
            return false;
        }
        self.counter_reset_hint = Unknown;
        b != Unknown
    }

    /// Adds `other` into `self`. Returns `(counter reset collision, custom bounds reconciled)`.
    pub fn add(&mut self, other: &FloatHistogram) -> Result<(bool, bool), HistogramError> {
        self.add_sub(other, false)
    }

    /// Subtracts `other` from `self` (the hint is combined like for `add`;
    /// the `-` operator sets it to gauge afterwards).
    pub fn sub(&mut self, other: &FloatHistogram) -> Result<(bool, bool), HistogramError> {
        self.add_sub(other, true)
    }

    fn add_sub(
        &mut self,
        other: &FloatHistogram,
        negate: bool,
    ) -> Result<(bool, bool), HistogramError> {
        if self.uses_custom_buckets() != other.uses_custom_buckets() {
            return Err(HistogramError::IncompatibleSchema);
        }
        let collision = self.adjust_counter_reset(other);
        let sign = if negate { -1.0 } else { 1.0 };
        self.count += sign * other.count;
        self.sum += sign * other.sum;
        if self.uses_custom_buckets() {
            let a = self.pos();
            let b = other.pos();
            if custom_bounds_match(&self.custom_values, &other.custom_values) {
                self.set_pos(&merge(&a, &b, negate));
                return Ok((collision, false));
            }
            let bounds = intersect_bounds(&self.custom_values, &other.custom_values);
            let a = map_custom(&a, &self.custom_values, &bounds);
            let b = map_custom(&b, &other.custom_values, &bounds);
            self.set_pos(&merge(&a, &b, negate));
            self.custom_values = bounds;
            return Ok((collision, true));
        }
        let other_zero = self.reconcile_zero_buckets(other);
        self.zero_count += sign * other_zero;
        let target = self.schema.min(other.schema);
        let (mut ap, mut an) = (self.pos(), self.neg());
        if target < self.schema {
            ap = reduce(&ap, self.schema, target);
            an = reduce(&an, self.schema, target);
            self.schema = target;
        }
        let mut bp = reduce(&other.pos(), other.schema, target);
        let mut bn = reduce(&other.neg(), other.schema, target);
        // Buckets of `other` inside the (possibly widened) zero bucket were
        // already counted in `other_zero`.
        let thr = self.zero_threshold;
        bp.retain(|&(i, _)| exp_bound(i, target) > thr);
        bn.retain(|&(i, _)| exp_bound(i, target) > thr);
        self.set_pos(&merge(&ap, &bp, negate));
        self.set_neg(&merge(&an, &bn, negate));
        Ok((collision, false))
    }

    /// The zero count this histogram would have with the zero threshold
    /// raised to `larger`, and the threshold actually needed (raised further
    /// when `larger` falls inside a populated bucket).
    fn zero_count_for_larger_threshold(&self, mut larger: f64) -> (f64, f64) {
        if larger <= self.zero_threshold {
            return (self.zero_count, self.zero_threshold.max(larger));
        }
        'outer: loop {
            let mut zc = self.zero_count;
            for (i, c) in self.pos() {
                let lower = exp_bound(i - 1, self.schema);
                let upper = exp_bound(i, self.schema);
                if lower >= larger {
                    break;
                }
                zc += c;
                if upper > larger {
                    if c != 0.0 {
                        larger = upper;
                    }
                    break;
                }
            }
            for (i, c) in self.neg() {
                let lower = exp_bound(i - 1, self.schema);
                let upper = exp_bound(i, self.schema);
                if lower >= larger {
                    break;
                }
                zc += c;
                if upper > larger {
                    if c != 0.0 {
                        larger = upper;
                        continue 'outer;
                    }
                    break;
                }
            }
            return (zc, larger);
        }
    }

    /// Widens the zero buckets of `self` and (virtually) `other` to a common
    /// threshold; returns `other`'s zero count at that threshold.
    fn reconcile_zero_buckets(&mut self, other: &FloatHistogram) -> f64 {
        let mut other_zc = other.zero_count;
        let mut other_thr = other.zero_threshold;
        let mut guard = 0;
        while other_thr != self.zero_threshold && guard < 64 {
            guard += 1;
            if self.zero_threshold > other_thr {
                (other_zc, other_thr) = other.zero_count_for_larger_threshold(self.zero_threshold);
            }
            if other_thr > self.zero_threshold {
                let (zc, thr) = self.zero_count_for_larger_threshold(other_thr);
                self.zero_count = zc;
                self.zero_threshold = thr;
                let s = self.schema;
                let mut p = self.pos();
                p.retain(|&(i, _)| exp_bound(i, s) > thr);
                let mut n = self.neg();
                n.retain(|&(i, _)| exp_bound(i, s) > thr);
                self.set_pos(&p);
                self.set_neg(&n);
            }
        }
        other_zc
    }

    /// Removes empty buckets; buckets at most `max_empty` indexes apart share a span.
    pub fn compact(&mut self, max_empty: usize) -> &mut Self {
        for neg in [false, true] {
            let mut v = if neg { self.neg() } else { self.pos() };
            v.retain(|&(_, c)| c != 0.0);
            let (s, b) = from_sparse(&v, max_empty);
            if neg {
                self.negative_spans = s;
                self.negative_buckets = b;
            } else {
                self.positive_spans = s;
                self.positive_buckets = b;
            }
        }
        self
    }

    /// A copy reduced to `schema` (no-op when it is not coarser).
    pub fn reduce_resolution(&mut self, schema: i32) {
        if self.uses_custom_buckets() || schema >= self.schema {
            return;
        }
        let p = reduce(&self.pos(), self.schema, schema);
        let n = reduce(&self.neg(), self.schema, schema);
        self.schema = schema;
        self.set_pos(&p);
        self.set_neg(&n);
    }

    /// Whether `self` must follow a counter reset relative to `prev`
    /// (Prometheus' `DetectReset`): a hint decides; otherwise any count,
    /// the zero count or a bucket going down, a finer schema or a narrower
    /// zero bucket means a reset.
    pub fn detect_reset(&self, prev: &FloatHistogram) -> bool {
        match self.counter_reset_hint {
            CounterResetHint::Reset => return true,
            CounterResetHint::NotReset => return false,
            _ => {}
        }
        if self.count < prev.count {
            return true;
        }
        if self.uses_custom_buckets() {
            if !prev.uses_custom_buckets() {
                return true;
            }
            if !custom_bounds_match(&self.custom_values, &prev.custom_values) {
                let bounds = intersect_bounds(&self.custom_values, &prev.custom_values);
                let cur = map_custom(&self.pos(), &self.custom_values, &bounds);
                let old = map_custom(&prev.pos(), &prev.custom_values, &bounds);
                return sparse_decreased(&cur, &old);
            }
            return sparse_decreased(&self.pos(), &prev.pos());
        }
        if prev.uses_custom_buckets() {
            return true;
        }
        if self.schema > prev.schema {
            return true;
        }
        if self.zero_threshold < prev.zero_threshold {
            return true;
        }
        let (prev_zc, thr) = prev.zero_count_for_larger_threshold(self.zero_threshold);
        if thr != self.zero_threshold {
            return true;
        }
        if self.zero_count < prev_zc {
            return true;
        }
        let s = self.schema;
        let keep = |v: Sparse| -> Sparse {
            v.into_iter()
                .filter(|&(i, _)| exp_bound(i, s) > thr)
                .collect()
        };
        let cur_p = keep(self.pos());
        let prev_p = keep(reduce(&prev.pos(), prev.schema, s));
        if sparse_decreased(&cur_p, &prev_p) {
            return true;
        }
        let cur_n = keep(self.neg());
        let prev_n = keep(reduce(&prev.neg(), prev.schema, s));
        sparse_decreased(&cur_n, &prev_n)
    }

    /// Buckets with bounds, positive (ascending) or negative (ascending by absolute value).
    pub fn buckets(&self, positive: bool) -> Vec<Bucket> {
        let v = if positive { self.pos() } else { self.neg() };
        v.into_iter()
            .map(|(i, c)| {
                let (lo, hi) = self.bucket_bounds(i);
                if positive {
                    Bucket {
                        lower: lo,
                        upper: hi,
                        lower_inclusive: self.uses_custom_buckets() && i == 0,
                        upper_inclusive: true,
                        count: c,
                        index: i,
                    }
                } else {
                    Bucket {
                        lower: -hi,
                        upper: -lo,
                        lower_inclusive: true,
                        upper_inclusive: false,
                        count: c,
                        index: i,
                    }
                }
            })
            .collect()
    }

    /// `(lower, upper)` bound of positive bucket `i`.
    fn bucket_bounds(&self, i: i32) -> (f64, f64) {
        if self.uses_custom_buckets() {
            let cv = &self.custom_values;
            let up = |k: i64| -> f64 {
                if k < 0 {
                    f64::NEG_INFINITY
                } else {
                    usize::try_from(k)
                        .ok()
                        .and_then(|k| cv.get(k).copied())
                        .unwrap_or(f64::INFINITY)
                }
            };
            (up(i64::from(i) - 1), up(i64::from(i)))
        } else {
            (exp_bound(i - 1, self.schema), exp_bound(i, self.schema))
        }
    }

    /// All buckets from the most negative to the most positive, zero bucket
    /// in between (Prometheus' `AllBucketIterator`).
    pub fn all_buckets(&self) -> Vec<Bucket> {
        let thr = self.zero_threshold;
        // Buckets reaching into the zero bucket are cut at its edge.
        let clamp = |mut b: Bucket| {
            if b.upper < 0.0 && b.upper > -thr {
                b.upper = -thr;
            } else if b.lower > 0.0 && b.lower < thr {
                b.lower = thr;
            }
            b
        };
        let mut out: Vec<Bucket> = self.buckets(false).into_iter().rev().map(clamp).collect();
        if self.zero_count > 0.0 {
            out.push(Bucket {
                lower: -thr,
                upper: thr,
                lower_inclusive: true,
                upper_inclusive: true,
                count: self.zero_count,
                index: 0,
            });
        }
        out.extend(self.buckets(true).into_iter().map(clamp));
        out
    }

    /// Exact equality of data (bit patterns of counts, same bucket layout
    /// ignoring empty spans), as Prometheus' `Equals`.
    pub fn equals(&self, o: &FloatHistogram) -> bool {
        let bits_eq = |a: f64, b: f64| a.to_bits() == b.to_bits();
        let sp = |a: &Sparse, b: &Sparse| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| x.0 == y.0 && bits_eq(x.1, y.1))
        };
        self.schema == o.schema
            && bits_eq(self.count, o.count)
            && bits_eq(self.sum, o.sum)
            && (!self.uses_custom_buckets()
                || custom_bounds_match(&self.custom_values, &o.custom_values))
            && (self.uses_custom_buckets()
                || (bits_eq(self.zero_threshold, o.zero_threshold)
                    && bits_eq(self.zero_count, o.zero_count)
                    && sp(&self.neg(), &o.neg())))
            && sp(&self.pos(), &o.pos())
    }

    /// Compares like upstream's test harness (`compareNativeHistogram`):
    /// both compacted, floats within `eps` relative, spans by layout.
    pub fn almost_equal(
        &self,
        o: &FloatHistogram,
        close: impl Fn(f64, f64) -> bool,
        check_hint: bool,
    ) -> bool {
        let (mut a, mut b) = (self.clone(), o.clone());
        a.compact(0);
        b.compact(0);
        let sp = |x: &Sparse, y: &Sparse| {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.0 == q.0 && close(p.1, q.1))
        };
        a.schema == b.schema
            && close(a.count, b.count)
            && close(a.sum, b.sum)
            && (!a.uses_custom_buckets() || custom_bounds_match(&a.custom_values, &b.custom_values))
            && a.zero_threshold == b.zero_threshold
            && close(a.zero_count, b.zero_count)
            && sp(&a.neg(), &b.neg())
            && sp(&a.pos(), &b.pos())
            && (!check_hint || a.counter_reset_hint == b.counter_reset_hint)
    }

    /// Whether any count or the sum is infinite (an overflowing aggregation).
    pub fn has_overflow(&self) -> bool {
        !self.count.is_finite()
            || !self.sum.is_finite()
            || !self.zero_count.is_finite()
            || self.positive_buckets.iter().any(|b| !b.is_finite())
            || self.negative_buckets.iter().any(|b| !b.is_finite())
    }

    /// Prometheus' `FloatHistogram.String()`, e.g.
    /// `{count:3, sum:5, [-1,-0.5):1, [-0.001,0.001]:1, (1,2]:1}`: the
    /// populated buckets from the most negative to the most positive. It is
    /// what `count_values` uses as the label value of a histogram.
    pub fn go_string(&self) -> String {
        let mut out = format!("{{count:{}, sum:{}", fmt_g(self.count), fmt_g(self.sum));
        let mut push = |b: &Bucket| {
            out.push_str(&format!(
                ", {}{},{}{}:{}",
                if b.lower_inclusive { '[' } else { '(' },
                fmt_g(b.lower),
                fmt_g(b.upper),
                if b.upper_inclusive { ']' } else { ')' },
                fmt_g(b.count)
            ));
        };
        for b in self.buckets(false).iter().rev().filter(|b| b.count != 0.0) {
            push(b);
        }
        if !self.uses_custom_buckets() && self.zero_count != 0.0 {
            push(&Bucket {
                lower: -self.zero_threshold,
                upper: self.zero_threshold,
                lower_inclusive: true,
                upper_inclusive: true,
                count: self.zero_count,
                index: 0,
            });
        }
        for b in self.buckets(true).iter().filter(|b| b.count != 0.0) {
            push(b);
        }
        out.push('}');
        out
    }

    /// The promqltest notation of this histogram (`{{schema:1 count:3 …}}`).
    pub fn test_expression(&self) -> String {
        let mut m = self.clone();
        m.compact(usize::MAX);
        let mut res: Vec<String> = Vec::new();
        if m.schema != 0 {
            res.push(format!("schema:{}", m.schema));
        }
        if m.count != 0.0 {
            res.push(format!("count:{}", fmt_g(m.count)));
        }
        if m.sum != 0.0 {
            res.push(format!("sum:{}", fmt_g(m.sum)));
        }
        if m.zero_count != 0.0 {
            res.push(format!("z_bucket:{}", fmt_g(m.zero_count)));
        }
        if m.zero_threshold != 0.0 {
            res.push(format!("z_bucket_w:{}", fmt_g(m.zero_threshold)));
        }
        if m.uses_custom_buckets() {
            res.push(format!("custom_values:[{}]", join_g(&m.custom_values)));
        }
        match m.counter_reset_hint {
            CounterResetHint::Unknown => {}
            CounterResetHint::Reset => res.push("counter_reset_hint:reset".into()),
            CounterResetHint::NotReset => res.push("counter_reset_hint:not_reset".into()),
            CounterResetHint::Gauge => res.push("counter_reset_hint:gauge".into()),
        }
        for (spans, buckets, b, o) in [
            (&m.positive_spans, &m.positive_buckets, "buckets", "offset"),
            (
                &m.negative_spans,
                &m.negative_buckets,
                "n_buckets",
                "n_offset",
            ),
        ] {
            if let Some(s) = spans.first() {
                if s.offset != 0 {
                    res.push(format!("{o}:{}", s.offset));
                }
            }
            if !buckets.is_empty() {
                res.push(format!("{b}:[{}]", join_g(buckets)));
            }
        }
        format!("{{{{{}}}}}", res.join(" "))
    }
}

/// A running sum (and mean) of histograms for `sum`, `avg`,
/// `sum_over_time` and `avg_over_time`, as Prometheus computes them:
/// Kahan-compensated `count` and `sum` (so `1e100 + x - 1e100` keeps `x`),
/// and for means a switch to an incremental mean once the plain sum would
/// overflow.
#[derive(Clone)]
pub(crate) struct HistSum {
    sum: FloatHistogram,
    /// Compensation of `count` and `sum`.
    c: [f64; 2],
    n: f64,
    mean: Option<FloatHistogram>,
    mc: [f64; 2],
    /// Whether differing custom bounds were reconciled.
    pub reconciled: bool,
}

fn kahan_add(
    acc: &mut FloatHistogram,
    c: &mut [f64; 2],
    h: &FloatHistogram,
) -> Result<bool, HistogramError> {
    let (oc, os) = (acc.count, acc.sum);
    let (_, reconciled) = acc.add(h)?;
    (acc.count, c[0]) = crate::util::kahan_inc(h.count, oc, c[0]);
    (acc.sum, c[1]) = crate::util::kahan_inc(h.sum, os, c[1]);
    Ok(reconciled)
}

impl HistSum {
    pub fn new(h: &FloatHistogram) -> Self {
        HistSum {
            sum: h.clone(),
            c: [0.0; 2],
            n: 1.0,
            mean: None,
            mc: [0.0; 2],
            reconciled: false,
        }
    }

    /// Adds `h`; with `avg`, prepares for a mean (switching to the
    /// incremental mean on overflow).
    pub fn add(&mut self, h: &FloatHistogram, avg: bool) -> Result<(), HistogramError> {
        self.n += 1.0;
        if !avg {
            self.reconciled |= kahan_add(&mut self.sum, &mut self.c, h)?;
            return Ok(());
        }
        if self.mean.is_none() {
            let mut tmp = self.sum.clone();
            let mut c = self.c;
            self.reconciled |= kahan_add(&mut tmp, &mut c, h)?;
            if !tmp.has_overflow() {
                self.sum = tmp;
                self.c = c;
                return Ok(());
            }
            let mut mean = self.sum.clone();
            mean.div(self.n - 1.0);
            self.mc = [self.c[0] / (self.n - 1.0), self.c[1] / (self.n - 1.0)];
            self.mean = Some(mean);
        }
        let q = (self.n - 1.0) / self.n;
        if let Some(mean) = self.mean.as_mut() {
            self.mc = [self.mc[0] * q, self.mc[1] * q];
            mean.mul(q);
            let mut to_add = h.clone();
            to_add.div(self.n);
            self.reconciled |= kahan_add(mean, &mut self.mc, &to_add)?;
        }
        Ok(())
    }

    pub fn sum(mut self) -> FloatHistogram {
        self.sum.count += self.c[0];
        self.sum.sum += self.c[1];
        self.sum
    }

    pub fn avg(self) -> FloatHistogram {
        match self.mean {
            Some(mut m) => {
                m.count += self.mc[0];
                m.sum += self.mc[1];
                m
            }
            None => {
                let mut s = self.sum;
                s.div(self.n);
                s.count += self.c[0] / self.n;
                s.sum += self.c[1] / self.n;
                s
            }
        }
    }
}

impl FloatHistogram {
    /// The trim operators `h </ x` (trim the upper part: keep observations
    /// below `x`, `upper == true`) and `h >/ x` (keep those above `x`): buckets
    /// entirely on the dropped side are emptied, a bucket containing `x` is
    /// split by interpolation (linear for custom buckets and the zero
    /// bucket, logarithmic otherwise), and count and sum are re-estimated
    /// from bucket midpoints. Unchanged when nothing is trimmed.
    pub fn trim_buckets(&mut self, rhs: f64, upper: bool) {
        let custom = self.uses_custom_buckets();
        let (mut count, mut sum) = (0.0, 0.0);
        let mut trimmed = false;
        let (mut has_pos, mut has_neg) = (false, false);
        for positive in [true, false] {
            let bounds = self.buckets(positive);
            let mut v = if positive { self.pos() } else { self.neg() };
            for (k, b) in bounds.iter().enumerate() {
                if b.count == 0.0 {
                    continue;
                }
                if positive {
                    has_pos = true;
                } else {
                    has_neg = true;
                }
                let whole = if upper {
                    b.upper <= rhs
                } else {
                    b.lower >= rhs
                };
                let partial = if upper { b.lower < rhs } else { b.upper > rhs };
                if whole {
                    count += b.count;
                    sum += midpoint(b.lower, b.upper, positive, custom) * b.count;
                } else if partial {
                    let (keep, mid) = bucket_trim(b, rhs, upper, positive, custom);
                    count += keep;
                    sum += mid * keep;
                    if v[k].1 != keep {
                        v[k].1 = keep;
                        trimmed = true;
                    }
                } else {
                    v[k].1 = 0.0;
                    trimmed = true;
                }
            }
            if positive {
                self.set_pos(&v);
            } else {
                self.set_neg(&v);
            }
        }
        if self.zero_count > 0.0 {
            let (keep, mid) = zero_bucket_trim(self, rhs, has_neg, has_pos, upper);
            if self.zero_count != keep {
                self.zero_count = keep;
                trimmed = true;
            }
            sum += mid * keep;
            count += keep;
        }
        if trimmed {
            self.count = count;
            self.sum = sum;
            self.compact(0);
        }
    }
}

fn fraction_below(b: &Bucket, v: f64, linear: bool) -> f64 {
    if linear {
        return (v - b.lower) / (b.upper - b.lower);
    }
    let (ll, lu, lv) = (b.lower.abs().log2(), b.upper.abs().log2(), v.abs().log2());
    if v > 0.0 {
        (lv - ll) / (lu - ll)
    } else {
        1.0 - ((lv - lu) / (ll - lu))
    }
}

/// Where the observations of a surviving interval are assumed to sit.
fn midpoint(lo: f64, hi: f64, positive: bool, linear: bool) -> f64 {
    if lo.is_infinite() {
        if hi.is_infinite() {
            return 0.0;
        }
        return if hi > 0.0 { hi / 2.0 } else { hi };
    }
    if hi.is_infinite() {
        return lo;
    }
    if linear {
        return (lo + hi) / 2.0;
    }
    let g = (lo * hi).abs().sqrt();
    if positive {
        g
    } else {
        -g
    }
}

/// The kept count and its midpoint for a bucket that contains `rhs`.
fn bucket_trim(b: &Bucket, rhs: f64, upper: bool, positive: bool, custom: bool) -> (f64, f64) {
    if b.lower == f64::NEG_INFINITY || b.upper == f64::INFINITY {
        return infinite_bucket_trim(upper, b, rhs);
    }
    let under = if rhs <= b.lower {
        0.0
    } else if rhs >= b.upper {
        b.count
    } else {
        b.count * fraction_below(b, rhs, custom)
    };
    if upper {
        (under, midpoint(b.lower, rhs, positive, custom))
    } else {
        (b.count - under, midpoint(rhs, b.upper, positive, custom))
    }
}

fn infinite_bucket_trim(upper: bool, b: &Bucket, rhs: f64) -> (f64, f64) {
    let zero_if_inf = |x: f64| if x.is_infinite() { 0.0 } else { x };
    if b.lower == f64::NEG_INFINITY {
        if upper {
            if rhs >= b.upper {
                return (b.count, 0.0);
            }
            if rhs > 0.0 && b.upper > 0.0 && b.upper.is_finite() {
                return (b.count * rhs / b.upper, rhs / 2.0);
            }
            if b.upper <= 0.0 {
                return (b.count, rhs);
            }
            return (0.0, zero_if_inf(b.upper));
        }
        if rhs <= b.lower {
            return (b.count, 0.0);
        }
        if rhs >= 0.0 && b.upper > rhs && b.upper.is_finite() {
            return (b.count * (1.0 - rhs / b.upper), (rhs + b.upper) / 2.0);
        }
        return (0.0, zero_if_inf(b.upper));
    }
    // Upper bound +Inf.
    if upper {
        return (0.0, zero_if_inf(b.lower));
    }
    if rhs >= b.lower {
        return (b.count, rhs);
    }
    (0.0, zero_if_inf(b.lower))
}

fn zero_bucket_trim(
    h: &FloatHistogram,
    rhs: f64,
    has_neg: bool,
    has_pos: bool,
    upper: bool,
) -> (f64, f64) {
    let (mut lo, mut hi) = (-h.zero_threshold, h.zero_threshold);
    if has_neg && !has_pos {
        hi = 0.0;
    }
    if has_pos && !has_neg {
        lo = 0.0;
    }
    let c = h.zero_count;
    if upper {
        if rhs <= lo {
            return (0.0, 0.0);
        }
        if rhs >= hi {
            return (c, (lo + hi) / 2.0);
        }
        (c * (rhs - lo) / (hi - lo), (lo + rhs) / 2.0)
    } else {
        if rhs <= lo {
            return (c, (lo + hi) / 2.0);
        }
        if rhs >= hi {
            return (0.0, 0.0);
        }
        (c * (hi - rhs) / (hi - lo), (rhs + hi) / 2.0)
    }
}

/// Whether any bucket of `old` is missing (with a non-zero count) or
/// smaller in `cur`.
fn sparse_decreased(cur: &[(i32, f64)], old: &[(i32, f64)]) -> bool {
    let mut j = 0;
    for &(i, c) in old {
        while j < cur.len() && cur[j].0 < i {
            j += 1;
        }
        match cur.get(j) {
            Some(&(ci, cc)) if ci == i => {
                if cc < c {
                    return true;
                }
            }
            _ => {
                if c != 0.0 {
                    return true;
                }
            }
        }
    }
    false
}

fn join_g(v: &[f64]) -> String {
    v.iter().map(|&f| fmt_g(f)).collect::<Vec<_>>().join(" ")
}

/// A stored histogram sample (from a block, the head, or a StoreAPI chunk)
/// as the engine computes with it: same counts,
/// spans and schema, and the counter reset hint Prometheus' chunk iterators
/// would give it.
pub fn from_stored(s: strata_tsdb::series::HistogramSample) -> FloatHistogram {
    use strata_tsdb::series::ResetHint;
    let spans = |v: Vec<strata_tsdb::chunkenc::histogram::Span>| -> Vec<Span> {
        v.into_iter()
            .map(|s| Span {
                offset: s.offset,
                length: s.length,
            })
            .collect()
    };
    let h = s.h;
    FloatHistogram {
        counter_reset_hint: match s.hint {
            ResetHint::Unknown => CounterResetHint::Unknown,
            ResetHint::CounterReset => CounterResetHint::Reset,
            ResetHint::NotCounterReset => CounterResetHint::NotReset,
            ResetHint::Gauge => CounterResetHint::Gauge,
        },
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: h.zero_count,
        count: h.count,
        sum: h.sum,
        positive_spans: spans(h.positive_spans),
        negative_spans: spans(h.negative_spans),
        positive_buckets: h.positive_buckets,
        negative_buckets: h.negative_buckets,
        // Prometheus 2.42 has no custom-bucket (schema -53) histograms.
        custom_values: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(schema: i32, offset: i32, buckets: &[f64]) -> FloatHistogram {
        let n: f64 = buckets.iter().sum();
        FloatHistogram {
            schema,
            count: n,
            sum: n,
            positive_spans: vec![Span {
                offset,
                length: buckets.len() as u32,
            }],
            positive_buckets: buckets.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn sparse_round_trip() {
        let spans = [
            Span {
                offset: -2,
                length: 2,
            },
            Span {
                offset: 3,
                length: 1,
            },
        ];
        let v = to_sparse(&spans, &[1.0, 2.0, 3.0]);
        assert_eq!(v, vec![(-2, 1.0), (-1, 2.0), (3, 3.0)]);
        let (s, b) = from_sparse(&v, 0);
        assert_eq!(s.as_slice(), &spans);
        assert_eq!(b, vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn add_reduces_schema_and_merges_buckets() {
        let mut a = h(1, 0, &[1.0, 2.0, 3.0, 4.0]);
        let b = h(0, 0, &[10.0, 20.0]);
        a.add(&b).unwrap();
        assert_eq!(a.schema, 0);
        // Schema 1 indexes 0..3 map to schema 0 indexes 0,1,1,2.
        assert_eq!(a.pos(), vec![(0, 11.0), (1, 25.0), (2, 4.0)]);
        assert_eq!(a.count, 40.0);
    }

    #[test]
    fn sub_and_reset_detection() {
        let mut a = h(0, 0, &[5.0, 5.0]);
        let b = h(0, 1, &[2.0]);
        assert!(!a.detect_reset(&b));
        assert!(b.detect_reset(&a));
        a.sub(&b).unwrap();
        assert_eq!(a.pos(), vec![(0, 5.0), (1, 3.0)]);
    }

    #[test]
    fn custom_buckets_reconcile_to_common_bounds() {
        let mut a = FloatHistogram {
            schema: CUSTOM_BUCKETS_SCHEMA,
            custom_values: vec![1.0, 2.0, 3.0],
            ..h(CUSTOM_BUCKETS_SCHEMA, 0, &[1.0, 1.0, 1.0, 1.0])
        };
        let b = FloatHistogram {
            custom_values: vec![2.0],
            ..h(CUSTOM_BUCKETS_SCHEMA, 0, &[1.0, 1.0])
        };
        let (_, reconciled) = a.add(&b).unwrap();
        assert!(reconciled);
        assert_eq!(a.custom_values, vec![2.0]);
        assert_eq!(a.pos(), vec![(0, 3.0), (1, 3.0)]);
        let e = h(0, 0, &[1.0]);
        assert_eq!(a.add(&e), Err(HistogramError::IncompatibleSchema));
    }

    #[test]
    fn invalid_schemas_are_reported_not_panicking() {
        let mut a = h(100, 0, &[1.0]);
        assert!(a.check_schema().unwrap_err().contains("invalid schema"));
        assert!(h(-53, 0, &[1.0]).check_schema().is_ok());
        // Operations on such input stay panic-free.
        let b = h(-100, 0, &[1.0]);
        a.add(&b).unwrap();
        assert!(a.detect_reset(&b) || !a.detect_reset(&b));
        let _ = a.all_buckets();
    }

    #[test]
    fn exponential_bounds() {
        assert_eq!(exp_bound(0, 0), 1.0);
        assert_eq!(exp_bound(1, 0), 2.0);
        assert_eq!(exp_bound(-1, 0), 0.5);
        assert!((exp_bound(1, 1) - std::f64::consts::SQRT_2).abs() < 1e-15);
        assert_eq!(exp_bound(1, -1), 4.0);
    }

    #[test]
    fn test_expression_format() {
        let mut a = h(1, 2, &[1.0, 0.0, 3.0]);
        a.counter_reset_hint = CounterResetHint::Gauge;
        assert_eq!(
            a.test_expression(),
            "{{schema:1 count:4 sum:4 counter_reset_hint:gauge offset:2 buckets:[1 0 3]}}"
        );
    }

    #[test]
    fn trim_keeps_one_side_and_splits_the_bucket_at_the_value() {
        // Buckets (0.5,1]:2 (1,2]:4 (2,4]:8 and a zero bucket of 1.
        let mut a = h(0, 0, &[2.0, 4.0, 8.0]);
        a.zero_count = 1.0;
        a.zero_threshold = 0.001;
        a.count = 15.0;
        let mut below = a.clone();
        below.trim_buckets(2.0, true);
        assert_eq!(below.pos(), vec![(0, 2.0), (1, 4.0)]);
        assert_eq!(below.count, 7.0);
        let mut above = a.clone();
        above.trim_buckets(2.0, false);
        assert_eq!(above.pos(), vec![(2, 8.0)]);
        assert_eq!(above.zero_count, 0.0);
        // Inside a bucket: logarithmic interpolation, sqrt(2) halves (1,2].
        let mut half = a.clone();
        half.trim_buckets(std::f64::consts::SQRT_2, true);
        let b = half.pos();
        assert_eq!(b.len(), 2);
        assert!((b[1].1 - 2.0).abs() < 1e-9, "{b:?}");
        // Nothing to trim: unchanged.
        let mut all = a.clone();
        all.trim_buckets(f64::INFINITY, true);
        assert_eq!(all, a);
    }

    #[test]
    fn go_string_lists_populated_buckets() {
        let mut a = h(0, 0, &[1.0, 0.0, 2.0]);
        a.negative_spans = vec![Span {
            offset: 0,
            length: 1,
        }];
        a.negative_buckets = vec![1.0];
        a.zero_count = 2.0;
        a.zero_threshold = 0.001;
        assert_eq!(
            a.go_string(),
            "{count:3, sum:3, [-1,-0.5):1, [-0.001,0.001]:2, (0.5,1]:1, (2,4]:2}"
        );
    }

    #[test]
    fn hist_sum_compensates_and_means_do_not_overflow() {
        let mut a = h(0, 0, &[1.0]);
        a.sum = 3.1;
        let mut big = h(0, 0, &[1.0]);
        big.sum = 1e100;
        let mut neg = big.clone();
        neg.sum = -1e100;
        let mut s = HistSum::new(&a);
        s.add(&big, false).unwrap();
        s.add(&neg, false).unwrap();
        assert!((s.sum().sum - 3.1).abs() < 1e-12);
        let mut huge = h(0, 0, &[f64::MAX / 2.0]);
        huge.count = f64::MAX / 2.0;
        let mut m = HistSum::new(&huge);
        m.add(&huge, true).unwrap();
        m.add(&huge, true).unwrap();
        let avg = m.avg();
        assert!(avg.count.is_finite());
        assert!((avg.count / (f64::MAX / 2.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn zero_bucket_widening_and_reset_detection() {
        let mut a = h(0, -1, &[1.0, 1.0]);
        a.zero_threshold = 0.1;
        let mut b = h(0, 0, &[1.0]);
        b.zero_threshold = 0.5;
        // Bucket -1 of `a` is (0.25,0.5]: inside b's zero bucket.
        a.add(&b).unwrap();
        assert_eq!(a.zero_threshold, 0.5);
        assert_eq!(a.zero_count, 1.0);
        assert_eq!(a.pos(), vec![(0, 2.0)]);
        // A narrower zero bucket or a finer schema can only come with a reset.
        let mut c = a.clone();
        c.zero_threshold = 0.1;
        assert!(c.detect_reset(&a));
        let mut d = a.clone();
        d.schema = 1;
        assert!(d.detect_reset(&a));
        let mut e = a.clone();
        e.counter_reset_hint = CounterResetHint::NotReset;
        e.count = 0.0;
        assert!(!e.detect_reset(&a));
    }
}
