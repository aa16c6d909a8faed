//! Native histogram chunks: encodings 2 (integer histograms) and 3 (float
//! histograms), bit for bit as Prometheus 2.42 writes them
//! (`tsdb/chunkenc/histogram.go`, `float_histogram.go`, `histogram_meta.go`,
//! `varbit.go`).
//!
//! Main types:
//! - [`Histogram`] / [`FloatHistogram`]: one sample, as Prometheus' model
//!   holds it (integer buckets as deltas from the previous bucket, float
//!   buckets as absolute counts; spans say which buckets exist).
//! - [`HistogramChunk`] / [`FloatHistogramChunk`]: appendable chunks.
//! - [`HistogramIter`] / [`FloatHistogramIter`]: decoders over borrowed
//!   bytes; corrupt or truncated input ends the iteration with an error
//!   ([`HistogramIter::err`]), never a panic or a huge allocation.
//!
//! # Layout
//!
//! ```text
//! bytes 0-1  sample count (u16 BE)
//! byte 2     counter reset header in the top two bits (CounterResetHeader)
//! bits       layout, written once, by the first sample:
//!              zero threshold: 1 byte (0 → 0; 1..=254 → 2^(b-244); 255 → 8-byte f64)
//!              schema (varbit int)
//!              positive spans, negative spans: count (varbit uint), then
//!                per span length (varbit uint), offset (varbit int)
//!            samples, fields in this order:
//!              integer:  t, count, zero count: raw varbit, then deltas of
//!                        deltas (the 2nd sample's dod is its delta);
//!                        sum: raw 64 bits, then Gorilla XOR;
//!                        each bucket (delta-encoded value): raw varbit, then dod
//!              float:    t as above; count, zero count, sum and each bucket:
//!                        raw 64 bits, then Gorilla XOR, each with its own window
//! ```
//!
//! "Varbit" is Prometheus' variable-width integer: a unary prefix of up to
//! eight bits (`0`, `10`, `110`, ... `11111111`) selects 0, 3, 6, 9, 12, 18,
//! 25, 56 or 64 value bits, two's complement for signed values with the
//! range `-(2^(n-1) - 1) ..= 2^(n-1)`.
//!
//! A stale marker sample (sum = Prometheus' stale NaN) carries no buckets
//! and resets the layout fields it would otherwise write; once a chunk holds
//! one, Prometheus appends only stale markers to it.
//!
//! Three ways to append:
//! - [`HistogramChunk::append`] takes samples of the chunk's layout only
//!   ([`AppendError::LayoutChanged`] otherwise): what re-encoding the
//!   samples of a decoded chunk needs.
//! - [`HistogramChunk::append_recoding`] decides as Prometheus' head does
//!   (`Appendable` + `Recode`): a histogram that only adds buckets recodes
//!   the chunk (zero buckets inserted into every earlier sample, then
//!   re-encoded with the new spans); a counter reset, a schema or zero
//!   threshold change, or buckets that disappear need a new chunk
//!   ([`AppendError::NewChunkNeeded`], with whether it was a counter reset).
//!   The new chunk's header is then, as Prometheus' head sets it:
//!   `CounterReset` after a counter reset, `Unknown` after a layout change,
//!   and `NotCounterReset` when a chunk is cut for its size or time range
//!   although the sample would have fit.
//! - [`HistogramChunk::append_gauge`] does the same for gauge histograms
//!   (`AppendableGauge`): buckets may also disappear, and both the chunk and
//!   the new sample are expanded to the union of their buckets.

use super::bstream::{BitReader, BitWriter};
use super::ChunkError;

/// Prometheus' stale marker (`value.StaleNaN`).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
const HEADER_LEN: usize = 3;
const NO_WINDOW: u8 = 0xff;

fn is_stale(sum: f64) -> bool {
    sum.to_bits() == STALE_NAN_BITS
}

/// A run of consecutive buckets: `offset` is the gap to the previous span
/// (for the first span, the index of its first bucket).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub offset: i32,
    pub length: u32,
}

/// An integer native histogram sample (Prometheus `histogram.Histogram`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Histogram {
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: u64,
    pub count: u64,
    pub sum: f64,
    pub positive_spans: Vec<Span>,
    pub negative_spans: Vec<Span>,
    /// Bucket counts, each as the difference to the previous bucket's.
    pub positive_buckets: Vec<i64>,
    pub negative_buckets: Vec<i64>,
}

impl Histogram {
    /// The same histogram with float counts and absolute bucket counts
    /// (Prometheus' `Histogram.ToFloat`), what queries compute with.
    pub fn to_float(&self) -> FloatHistogram {
        let abs = |deltas: &[i64]| -> Vec<f64> {
            let mut acc = 0i64;
            deltas
                .iter()
                .map(|d| {
                    acc = acc.wrapping_add(*d);
                    acc as f64
                })
                .collect()
        };
        FloatHistogram {
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            zero_count: self.zero_count as f64,
            count: self.count as f64,
            sum: self.sum,
            positive_spans: self.positive_spans.clone(),
            negative_spans: self.negative_spans.clone(),
            positive_buckets: abs(&self.positive_buckets),
            negative_buckets: abs(&self.negative_buckets),
        }
    }
}

/// A float native histogram sample (Prometheus `histogram.FloatHistogram`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct FloatHistogram {
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: f64,
    pub count: f64,
    pub sum: f64,
    pub positive_spans: Vec<Span>,
    pub negative_spans: Vec<Span>,
    /// Absolute bucket counts.
    pub positive_buckets: Vec<f64>,
    pub negative_buckets: Vec<f64>,
}

/// The top two bits of byte 2: what is known about a counter reset at the
/// start of the chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CounterResetHeader {
    Unknown = 0b0000_0000,
    CounterReset = 0b1000_0000,
    NotCounterReset = 0b0100_0000,
    Gauge = 0b1100_0000,
}

/// The counter reset header of histogram chunk bytes (either encoding).
pub fn counter_reset_header(data: &[u8]) -> Option<CounterResetHeader> {
    Some(match data.get(2)? & 0b1100_0000 {
        0b1000_0000 => CounterResetHeader::CounterReset,
        0b0100_0000 => CounterResetHeader::NotCounterReset,
        0b1100_0000 => CounterResetHeader::Gauge,
        _ => CounterResetHeader::Unknown,
    })
}

/// Why a sample was not appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// Schema, zero threshold or spans differ from the chunk's first sample
    /// (Prometheus would recode or cut; cut a new chunk).
    #[error("histogram layout differs from the chunk's")]
    LayoutChanged,
    /// The chunk holds a stale marker: only stale markers may follow.
    #[error("only stale markers may follow a stale marker in a histogram chunk")]
    AfterStale,
    /// The bucket counts do not match the spans.
    #[error("histogram has {buckets} buckets but its spans cover {spans}")]
    BucketMismatch { buckets: usize, spans: u64 },
    /// 65535 samples: the count would wrap.
    #[error("histogram chunk is full")]
    Full,
    /// Prometheus would cut a new chunk for this sample: a counter reset
    /// (`counter_reset`), or a layout that recoding cannot reach.
    #[error("histogram needs a new chunk (counter reset: {counter_reset})")]
    NewChunkNeeded { counter_reset: bool },
    /// Recoding met bytes that do not decode (the chunk was built from
    /// corrupt input).
    #[error("recoding the histogram chunk failed: {0}")]
    Recode(ChunkError),
}

/// Where `num` new buckets go before bucket `pos` of the old layout
/// (Prometheus' `Insert`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Insert {
    pos: usize,
    num: usize,
}

/// Bucket indices of a span layout, in order (Prometheus' `bucketIterator`).
struct BucketIndices<'a> {
    spans: &'a [Span],
    span: usize,
    bucket: i64,
    idx: i64,
}

impl<'a> BucketIndices<'a> {
    fn new(spans: &'a [Span]) -> Self {
        let idx = -1 + spans.first().map_or(0, |s| i64::from(s.offset));
        BucketIndices {
            spans,
            span: 0,
            bucket: -1,
            idx,
        }
    }
}

impl Iterator for BucketIndices<'_> {
    type Item = i64;

    fn next(&mut self) -> Option<i64> {
        let spans = self.spans;
        if self.span >= spans.len() {
            return None;
        }
        if self.bucket < i64::from(spans[self.span].length) - 1 {
            self.bucket += 1;
            self.idx += 1;
            return Some(self.idx);
        }
        while self.span + 1 < spans.len() {
            self.span += 1;
            self.idx += i64::from(spans[self.span].offset) + 1;
            self.bucket = 0;
            if spans[self.span].length == 0 {
                self.idx -= 1;
                continue;
            }
            return Some(self.idx);
        }
        None
    }
}

/// The inserts that turn layout `a` into `b`, or `None` when `b` lacks a
/// bucket of `a` (Prometheus' `expandSpansForward`).
fn expand_spans_forward(a: &[Span], b: &[Span]) -> Option<Vec<Insert>> {
    let (mut ai, mut bi) = (BucketIndices::new(a), BucketIndices::new(b));
    let mut inserts = Vec::new();
    let mut inter = Insert { pos: 0, num: 0 };
    let (mut av, mut bv) = (ai.next(), bi.next());
    loop {
        match (av, bv) {
            (Some(x), Some(y)) if x == y => {
                if inter.num > 0 {
                    inserts.push(inter);
                }
                inter.num = 0;
                av = ai.next();
                bv = bi.next();
                inter.pos += 1;
            }
            (Some(x), Some(y)) if x < y => return None,
            (Some(_), Some(_)) | (None, Some(_)) => {
                inter.num += 1;
                bv = bi.next();
            }
            (Some(_), None) => return None,
            (None, None) => {
                if inter.num > 0 {
                    inserts.push(inter);
                }
                return Some(inserts);
            }
        }
    }
}

/// Prometheus' `expandSpansBothWays`: the forward inserts that expand `a`
/// to the union of both layouts, the backward inserts that expand `b` to
/// it, and the union's spans.
fn expand_spans_both_ways(a: &[Span], b: &[Span]) -> (Vec<Insert>, Vec<Insert>, Vec<Span>) {
    let (mut ai, mut bi) = (BucketIndices::new(a), BucketIndices::new(b));
    let (mut fwd, mut bwd) = (Vec::new(), Vec::new());
    let mut merged: Vec<Span> = Vec::new();
    let mut last_bucket = 0i64;
    let mut add_bucket = |merged: &mut Vec<Span>, x: i64| {
        let mut offset = x - last_bucket - 1;
        match merged.last_mut() {
            Some(l) if offset == 0 => l.length += 1,
            _ => {
                if merged.is_empty() {
                    offset += 1;
                }
                merged.push(Span {
                    offset: offset as i32,
                    length: 1,
                });
            }
        }
        last_bucket = x;
    };
    let mut fi = Insert { pos: 0, num: 0 };
    let mut bi_ins = Insert { pos: 0, num: 0 };
    let (mut av, mut bv) = (ai.next(), bi.next());
    loop {
        match (av, bv) {
            (Some(x), Some(y)) if x == y => {
                if fi.num > 0 {
                    fwd.push(fi);
                    fi.num = 0;
                }
                if bi_ins.num > 0 {
                    bwd.push(bi_ins);
                    bi_ins.num = 0;
                }
                add_bucket(&mut merged, x);
                av = ai.next();
                bv = bi.next();
                fi.pos += 1;
                bi_ins.pos += 1;
            }
            (Some(x), Some(y)) if x < y => {
                bi_ins.num += 1;
                if fi.num > 0 {
                    fwd.push(fi);
                    fi.num = 0;
                }
                add_bucket(&mut merged, x);
                fi.pos += 1;
                av = ai.next();
            }
            (Some(_), Some(y)) => {
                fi.num += 1;
                if bi_ins.num > 0 {
                    bwd.push(bi_ins);
                    bi_ins.num = 0;
                }
                add_bucket(&mut merged, y);
                bi_ins.pos += 1;
                bv = bi.next();
            }
            (Some(x), None) => {
                bi_ins.num += 1;
                add_bucket(&mut merged, x);
                av = ai.next();
            }
            (None, Some(y)) => {
                fi.num += 1;
                add_bucket(&mut merged, y);
                bv = bi.next();
            }
            (None, None) => {
                if fi.num > 0 {
                    fwd.push(fi);
                }
                if bi_ins.num > 0 {
                    bwd.push(bi_ins);
                }
                return (fwd, bwd, merged);
            }
        }
    }
}

/// Prometheus' `insert`: `input` with the inserted buckets, each inserted
/// bucket 0. Delta-encoded buckets (`deltas`) get the deltas that keep every
/// old bucket's absolute value.
fn insert_buckets<T>(input: &[T], inserts: &[Insert], deltas: bool) -> Option<Vec<T>>
where
    T: Copy + Default + std::ops::Add<Output = T> + std::ops::Neg<Output = T>,
{
    let mut out = Vec::with_capacity(input.len() + inserts.iter().map(|i| i.num).sum::<usize>());
    let mut v = T::default();
    let mut ii = 0;
    let push_insert = |out: &mut Vec<T>, v: T, num: usize| {
        out.push(if deltas { -v } else { T::default() });
        for _ in 1..num {
            out.push(T::default());
        }
    };
    for (i, &d) in input.iter().enumerate() {
        if ii < inserts.len() && i == inserts[ii].pos {
            push_insert(&mut out, v, inserts[ii].num);
            ii += 1;
            out.push(if deltas { d + v } else { d });
            v = d + v;
            continue;
        }
        out.push(d);
        v = v + d;
    }
    if ii + 1 == inserts.len() {
        push_insert(&mut out, v, inserts[ii].num);
    } else if ii != inserts.len() {
        return None;
    }
    Some(out)
}

/// Whether any bucket present in both layouts has a smaller absolute count
/// in the new one (Prometheus' `counterResetInAnyBucket`). `old` and `new`
/// are absolute counts; `new` covers every bucket of `old`.
fn counter_reset_in_any_bucket<T: PartialOrd + Copy>(
    old: &[T],
    new: &[T],
    old_spans: &[Span],
    new_spans: &[Span],
) -> bool {
    let (mut oi, mut ni) = (BucketIndices::new(old_spans), BucketIndices::new(new_spans));
    let (mut ov, mut nv) = (oi.next(), ni.next());
    let (mut ob, mut nb) = (0usize, 0usize);
    while let (Some(o), Some(n)) = (ov, nv) {
        if o == n {
            match (old.get(ob), new.get(nb)) {
                (Some(a), Some(b)) if b < a => return true,
                (Some(_), Some(_)) => {}
                _ => return false,
            }
        }
        if o <= n {
            ov = oi.next();
            ob += 1;
        } else {
            nv = ni.next();
            nb += 1;
        }
    }
    false
}

/// Absolute counts from delta-encoded ones (wrapping, as Go's int64).
fn absolute(deltas: &[i64]) -> Vec<i64> {
    let mut acc = 0i64;
    deltas
        .iter()
        .map(|d| {
            acc = acc.wrapping_add(*d);
            acc
        })
        .collect()
}

/// What Prometheus' `Appendable` decided for a sample.
struct Appendability {
    ok: bool,
    counter_reset: bool,
    pos: Vec<Insert>,
    neg: Vec<Insert>,
}

impl Appendability {
    fn no(counter_reset: bool) -> Self {
        Appendability {
            ok: false,
            counter_reset,
            pos: Vec::new(),
            neg: Vec::new(),
        }
    }
}

fn span_buckets(spans: &[Span]) -> u64 {
    spans.iter().map(|s| u64::from(s.length)).sum()
}

fn bit_range(x: i64, nbits: u32) -> bool {
    -((1i64 << (nbits - 1)) - 1) <= x && x <= 1i64 << (nbits - 1)
}

/// Go's `putVarbitInt`.
fn put_varbit_int(w: &mut BitWriter, v: i64) {
    let (prefix, plen, nbits) = match v {
        0 => {
            w.write_bit(false);
            return;
        }
        _ if bit_range(v, 3) => (0b10, 2, 3),
        _ if bit_range(v, 6) => (0b110, 3, 6),
        _ if bit_range(v, 9) => (0b1110, 4, 9),
        _ if bit_range(v, 12) => (0b11110, 5, 12),
        _ if bit_range(v, 18) => (0b111110, 6, 18),
        _ if bit_range(v, 25) => (0b1111110, 7, 25),
        _ if bit_range(v, 56) => (0b11111110, 8, 56),
        _ => (0b11111111, 8, 64),
    };
    w.write_bits(prefix, plen);
    w.write_bits(v as u64, nbits);
}

/// Go's `putVarbitUint`.
fn put_varbit_uint(w: &mut BitWriter, v: u64) {
    let fits = |n: u32| v.leading_zeros() >= 64 - n;
    let (prefix, plen, nbits) = match v {
        0 => {
            w.write_bit(false);
            return;
        }
        _ if fits(3) => (0b10, 2, 3),
        _ if fits(6) => (0b110, 3, 6),
        _ if fits(9) => (0b1110, 4, 9),
        _ if fits(12) => (0b11110, 5, 12),
        _ if fits(18) => (0b111110, 6, 18),
        _ if fits(25) => (0b1111110, 7, 25),
        _ if fits(56) => (0b11111110, 8, 56),
        _ => (0b11111111, 8, 64),
    };
    w.write_bits(prefix, plen);
    w.write_bits(v, nbits);
}

/// Reads a varbit prefix and returns the number of value bits it selects.
fn read_varbit_width(r: &mut BitReader) -> Result<u32, ChunkError> {
    let mut ones = 0;
    while ones < 8 {
        if r.read_bits(1) == 0 {
            break;
        }
        ones += 1;
    }
    if r.overrun() {
        return Err(ChunkError::Truncated);
    }
    Ok([0, 3, 6, 9, 12, 18, 25, 56, 64][ones])
}

fn read_varbit_uint(r: &mut BitReader) -> Result<u64, ChunkError> {
    let n = read_varbit_width(r)?;
    let v = r.read_bits(n);
    if r.overrun() {
        return Err(ChunkError::Truncated);
    }
    Ok(v)
}

fn read_varbit_int(r: &mut BitReader) -> Result<i64, ChunkError> {
    let n = read_varbit_width(r)?;
    let v = r.read_bits(n);
    if r.overrun() {
        return Err(ChunkError::Truncated);
    }
    if n == 0 || n == 64 {
        return Ok(v as i64);
    }
    Ok(if v > 1 << (n - 1) {
        v.wrapping_sub(1 << n) as i64
    } else {
        v as i64
    })
}

/// Go's `putZeroThreshold`: powers of two from 2^-243 to 2^10 in one byte.
fn put_zero_threshold(w: &mut BitWriter, th: f64) {
    if th == 0.0 {
        w.write_byte(0);
        return;
    }
    let bits = th.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i64;
    // Positive, normal, mantissa zero: th = 0.5 * 2^(biased - 1022).
    let exp = biased - 1022;
    if bits >> 63 == 0
        && bits & ((1 << 52) - 1) == 0
        && biased != 0
        && biased != 0x7ff
        && (-242..=11).contains(&exp)
    {
        w.write_byte((exp + 243) as u8);
    } else {
        w.write_byte(255);
        w.write_bits(bits, 64);
    }
}

fn read_zero_threshold(r: &mut BitReader) -> Result<f64, ChunkError> {
    let b = r.read_bits(8);
    let th = match b {
        0 => 0.0,
        255 => f64::from_bits(r.read_bits(64)),
        // 0.5 * 2^(b-243) = 2^(b-244), a normal number for b in 1..=254.
        b => f64::from_bits(((b as i64 - 244 + 1023) as u64) << 52),
    };
    if r.overrun() {
        return Err(ChunkError::Truncated);
    }
    Ok(th)
}

fn put_spans(w: &mut BitWriter, spans: &[Span]) {
    put_varbit_uint(w, spans.len() as u64);
    for s in spans {
        put_varbit_uint(w, u64::from(s.length));
        put_varbit_int(w, i64::from(s.offset));
    }
}

fn read_spans(r: &mut BitReader) -> Result<Vec<Span>, ChunkError> {
    let n = read_varbit_uint(r)?;
    // Every span takes at least two bits: a larger count is corruption, and
    // checking it first keeps a corrupt count from allocating.
    if n > (r.end().saturating_sub(r.pos()) / 2) as u64 {
        return Err(ChunkError::Corrupt("more histogram spans than bits left"));
    }
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let length = read_varbit_uint(r)?;
        let offset = read_varbit_int(r)?;
        let (Ok(length), Ok(offset)) = (u32::try_from(length), i32::try_from(offset)) else {
            return Err(ChunkError::Corrupt("histogram span out of range"));
        };
        out.push(Span { offset, length });
    }
    Ok(out)
}

struct Layout {
    schema: i32,
    zero_threshold: f64,
    positive_spans: Vec<Span>,
    negative_spans: Vec<Span>,
    n_pos: usize,
    n_neg: usize,
}

fn read_layout(r: &mut BitReader) -> Result<Layout, ChunkError> {
    let zero_threshold = read_zero_threshold(r)?;
    let schema = i32::try_from(read_varbit_int(r)?)
        .map_err(|_| ChunkError::Corrupt("histogram schema out of range"))?;
    let positive_spans = read_spans(r)?;
    let negative_spans = read_spans(r)?;
    // Every bucket takes at least one bit in the first sample.
    let left = r.end().saturating_sub(r.pos()) as u64;
    let (p, n) = (span_buckets(&positive_spans), span_buckets(&negative_spans));
    if p + n > left {
        return Err(ChunkError::Corrupt("more histogram buckets than bits left"));
    }
    Ok(Layout {
        schema,
        zero_threshold,
        positive_spans,
        negative_spans,
        n_pos: p as usize,
        n_neg: n as usize,
    })
}

/// Go's `xorWrite`: Gorilla XOR of `new` against `cur` with the window in
/// `leading`/`trailing` (`leading` = 0xff: no window yet).
fn xor_write(w: &mut BitWriter, new: u64, cur: u64, leading: &mut u8, trailing: &mut u8) {
    let delta = new ^ cur;
    if delta == 0 {
        w.write_bit(false);
        return;
    }
    w.write_bit(true);
    let new_leading = (delta.leading_zeros() as u8).min(31);
    let new_trailing = delta.trailing_zeros() as u8;
    if *leading != NO_WINDOW && new_leading >= *leading && new_trailing >= *trailing {
        w.write_bit(false);
        w.write_bits(
            delta >> *trailing,
            64 - u32::from(*leading) - u32::from(*trailing),
        );
        return;
    }
    *leading = new_leading;
    *trailing = new_trailing;
    w.write_bit(true);
    w.write_bits(u64::from(new_leading), 5);
    let sig = 64 - u32::from(new_leading) - u32::from(new_trailing);
    // 64 significant bits are written as 0 (six bits hold 0..=63).
    w.write_bits(u64::from(sig), 6);
    w.write_bits(delta >> new_trailing, sig);
}

/// Go's `xorRead`.
fn xor_read(
    r: &mut BitReader,
    value: &mut u64,
    leading: &mut u8,
    trailing: &mut u8,
) -> Result<(), ChunkError> {
    if r.read_bits(1) == 0 {
        return if r.overrun() {
            Err(ChunkError::Truncated)
        } else {
            Ok(())
        };
    }
    let (l, t) = if r.read_bits(1) == 0 {
        (*leading, *trailing)
    } else {
        let l = r.read_bits(5) as u8;
        let sig = match r.read_bits(6) as u8 {
            0 => 64,
            s => s,
        };
        if u32::from(l) + u32::from(sig) > 64 {
            return Err(if r.overrun() {
                ChunkError::Truncated
            } else {
                ChunkError::Corrupt("XOR window wider than 64 bits")
            });
        }
        *leading = l;
        *trailing = 64 - l - sig;
        (l, 64 - l - sig)
    };
    let sig = 64u32.saturating_sub(u32::from(l) + u32::from(t));
    if sig == 0 || u32::from(l) + u32::from(t) > 64 {
        return Err(ChunkError::Corrupt("XOR window wider than 64 bits"));
    }
    let bits = r.read_bits(sig);
    if r.overrun() {
        return Err(ChunkError::Truncated);
    }
    *value ^= bits << t;
    Ok(())
}

fn new_writer() -> BitWriter {
    BitWriter::with_prefix(&[0, 0, 0], 128)
}

fn set_header(w: &mut BitWriter, h: CounterResetHeader) {
    let b = &mut w.bytes_mut()[2];
    *b = (*b & 0b0011_1111) | h as u8;
}

fn set_count(w: &mut BitWriter, n: u16) {
    w.bytes_mut()[..2].copy_from_slice(&n.to_be_bytes());
}

/// An appendable integer histogram chunk (encoding 2).
#[derive(Clone, Debug)]
pub struct HistogramChunk {
    w: BitWriter,
    num: u16,
    schema: i32,
    zero_threshold: f64,
    p_spans: Vec<Span>,
    n_spans: Vec<Span>,
    t: i64,
    cnt: u64,
    zcnt: u64,
    t_delta: i64,
    cnt_delta: i64,
    zcnt_delta: i64,
    p_buckets: Vec<i64>,
    n_buckets: Vec<i64>,
    p_deltas: Vec<i64>,
    n_deltas: Vec<i64>,
    sum: u64,
    leading: u8,
    trailing: u8,
}

impl Default for HistogramChunk {
    fn default() -> Self {
        Self::new()
    }
}

impl HistogramChunk {
    pub fn new() -> Self {
        HistogramChunk {
            w: new_writer(),
            num: 0,
            schema: 0,
            zero_threshold: 0.0,
            p_spans: Vec::new(),
            n_spans: Vec::new(),
            t: 0,
            cnt: 0,
            zcnt: 0,
            t_delta: 0,
            cnt_delta: 0,
            zcnt_delta: 0,
            p_buckets: Vec::new(),
            n_buckets: Vec::new(),
            p_deltas: Vec::new(),
            n_deltas: Vec::new(),
            sum: 0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        self.w.bytes()
    }

    pub fn num_samples(&self) -> usize {
        self.num as usize
    }

    pub fn set_counter_reset_header(&mut self, h: CounterResetHeader) {
        set_header(&mut self.w, h);
    }

    /// Appends a sample with a timestamp after the previous one's (the
    /// caller's rule, as for XOR chunks) and the chunk's layout. See the
    /// module docs.
    pub fn append(&mut self, t: i64, h: &Histogram) -> Result<(), AppendError> {
        self.append_inner(t, h, true)
    }

    /// Appends as Prometheus' head does: recodes the chunk when `h` adds
    /// buckets, and refuses with [`AppendError::NewChunkNeeded`] where
    /// Prometheus cuts a new chunk. See the module docs.
    pub fn append_recoding(&mut self, t: i64, h: &Histogram) -> Result<(), AppendError> {
        if self.num == 0 {
            return self.append_inner(t, h, true);
        }
        check_buckets(&h.positive_spans, h.positive_buckets.len())?;
        check_buckets(&h.negative_spans, h.negative_buckets.len())?;
        let a = self.appendable(h);
        if a.counter_reset || !a.ok {
            return Err(AppendError::NewChunkNeeded {
                counter_reset: a.counter_reset,
            });
        }
        if !a.pos.is_empty() || !a.neg.is_empty() {
            *self = self.recode(&a.pos, &a.neg, &h.positive_spans, &h.negative_spans)?;
        }
        // Same buckets, possibly spelled with other spans: the chunk keeps
        // its spans, as in Prometheus.
        self.append_inner(t, h, false)
    }

    /// Appends a gauge histogram as Prometheus' head does
    /// (`AppendableGauge`, `RecodeHistogram`, `Recode`): buckets may come and
    /// go and counts may fall; the chunk and the sample are both expanded to
    /// the union of their buckets. A new chunk is needed only after a stale
    /// marker, on a schema or zero threshold change, or when the chunk is not
    /// a gauge chunk. The first sample makes the chunk a gauge chunk.
    pub fn append_gauge(&mut self, t: i64, h: &Histogram) -> Result<(), AppendError> {
        if self.num == 0 {
            self.append_inner(t, h, true)?;
            self.set_counter_reset_header(CounterResetHeader::Gauge);
            return Ok(());
        }
        let no = Err(AppendError::NewChunkNeeded {
            counter_reset: false,
        });
        if counter_reset_header(self.w.bytes()) != Some(CounterResetHeader::Gauge) {
            return no;
        }
        if is_stale(h.sum) {
            return self.append_inner(t, h, false);
        }
        check_buckets(&h.positive_spans, h.positive_buckets.len())?;
        check_buckets(&h.negative_spans, h.negative_buckets.len())?;
        if is_stale(f64::from_bits(self.sum))
            || h.schema != self.schema
            || h.zero_threshold != self.zero_threshold
        {
            return no;
        }
        let (pf, pb, pm) = expand_spans_both_ways(&self.p_spans, &h.positive_spans);
        let (nf, nb, nm) = expand_spans_both_ways(&self.n_spans, &h.negative_spans);
        let mut h = h.clone();
        if !pb.is_empty() || !nb.is_empty() {
            h.positive_spans = pm;
            h.negative_spans = nm;
            let left = || AppendError::Recode(ChunkError::Corrupt("bucket inserts left over"));
            if !pb.is_empty() {
                h.positive_buckets =
                    insert_buckets(&h.positive_buckets, &pb, true).ok_or_else(left)?;
            }
            if !nb.is_empty() {
                h.negative_buckets =
                    insert_buckets(&h.negative_buckets, &nb, true).ok_or_else(left)?;
            }
        }
        if !pf.is_empty() || !nf.is_empty() {
            *self = self.recode(&pf, &nf, &h.positive_spans, &h.negative_spans)?;
        }
        self.append_inner(t, &h, false)
    }

    /// The counter reset header Prometheus' head gives the chunk it cuts
    /// after this one for `h` when the cut is not `h`'s doing (time range,
    /// size, another sample kind in between): `CounterReset` if `h` is a
    /// reset against this chunk, `NotCounterReset` if it would have fit,
    /// else `Unknown`.
    pub fn header_after(&self, h: &Histogram) -> CounterResetHeader {
        if self.num == 0 {
            return CounterResetHeader::Unknown;
        }
        let a = self.appendable(h);
        if a.counter_reset {
            CounterResetHeader::CounterReset
        } else if a.ok {
            CounterResetHeader::NotCounterReset
        } else {
            CounterResetHeader::Unknown
        }
    }

    /// Prometheus' `HistogramAppender.Appendable`.
    fn appendable(&self, h: &Histogram) -> Appendability {
        let header = counter_reset_header(self.w.bytes());
        if self.num > 0 && header == Some(CounterResetHeader::Gauge) {
            return Appendability::no(false);
        }
        if is_stale(h.sum) {
            return Appendability {
                ok: true,
                ..Appendability::no(false)
            };
        }
        if is_stale(f64::from_bits(self.sum)) {
            return Appendability::no(false);
        }
        if h.count < self.cnt {
            return Appendability::no(true);
        }
        if h.schema != self.schema || h.zero_threshold != self.zero_threshold {
            return Appendability::no(false);
        }
        if h.zero_count < self.zcnt {
            return Appendability::no(true);
        }
        let (Some(pos), Some(neg)) = (
            expand_spans_forward(&self.p_spans, &h.positive_spans),
            expand_spans_forward(&self.n_spans, &h.negative_spans),
        ) else {
            return Appendability::no(true);
        };
        if counter_reset_in_any_bucket(
            &absolute(&self.p_buckets),
            &absolute(&h.positive_buckets),
            &self.p_spans,
            &h.positive_spans,
        ) || counter_reset_in_any_bucket(
            &absolute(&self.n_buckets),
            &absolute(&h.negative_buckets),
            &self.n_spans,
            &h.negative_spans,
        ) {
            return Appendability::no(true);
        }
        Appendability {
            ok: true,
            counter_reset: false,
            pos,
            neg,
        }
    }

    /// Prometheus' `Recode`: the chunk re-encoded with zero buckets inserted
    /// into every sample, under the new spans; the header is kept.
    fn recode(
        &self,
        pos: &[Insert],
        neg: &[Insert],
        p_spans: &[Span],
        n_spans: &[Span],
    ) -> Result<HistogramChunk, AppendError> {
        let mut out = HistogramChunk::new();
        let mut it = HistogramIter::new(self.w.bytes());
        for (t, mut h) in it.by_ref() {
            if !is_stale(h.sum) {
                h.positive_spans = p_spans.to_vec();
                h.negative_spans = n_spans.to_vec();
                if !pos.is_empty() {
                    h.positive_buckets = insert_buckets(&h.positive_buckets, pos, true).ok_or(
                        AppendError::Recode(ChunkError::Corrupt("bucket inserts left over")),
                    )?;
                }
                if !neg.is_empty() {
                    h.negative_buckets = insert_buckets(&h.negative_buckets, neg, true).ok_or(
                        AppendError::Recode(ChunkError::Corrupt("bucket inserts left over")),
                    )?;
                }
            }
            out.append_inner(t, &h, true)?;
        }
        if let Some(e) = it.err() {
            return Err(AppendError::Recode(e.clone()));
        }
        if let Some(h) = counter_reset_header(self.w.bytes()) {
            out.set_counter_reset_header(h);
        }
        Ok(out)
    }

    fn append_inner(
        &mut self,
        t: i64,
        h: &Histogram,
        check_layout: bool,
    ) -> Result<(), AppendError> {
        if self.num == u16::MAX {
            return Err(AppendError::Full);
        }
        let stale_marker;
        let h = if is_stale(h.sum) {
            stale_marker = Histogram {
                sum: h.sum,
                ..Histogram::default()
            };
            &stale_marker
        } else {
            check_buckets(&h.positive_spans, h.positive_buckets.len())?;
            check_buckets(&h.negative_spans, h.negative_buckets.len())?;
            if self.num > 0 {
                if is_stale(f64::from_bits(self.sum)) {
                    return Err(AppendError::AfterStale);
                }
                let same = if check_layout {
                    h.positive_spans == self.p_spans && h.negative_spans == self.n_spans
                } else {
                    h.positive_buckets.len() == self.p_buckets.len()
                        && h.negative_buckets.len() == self.n_buckets.len()
                };
                if h.schema != self.schema || h.zero_threshold != self.zero_threshold || !same {
                    return Err(AppendError::LayoutChanged);
                }
            }
            h
        };
        let w = &mut self.w;
        let (mut t_delta, mut cnt_delta, mut zcnt_delta) = (0, 0, 0);
        if self.num == 0 {
            put_zero_threshold(w, h.zero_threshold);
            put_varbit_int(w, i64::from(h.schema));
            put_spans(w, &h.positive_spans);
            put_spans(w, &h.negative_spans);
            self.schema = h.schema;
            self.zero_threshold = h.zero_threshold;
            self.p_spans = h.positive_spans.clone();
            self.n_spans = h.negative_spans.clone();
            self.p_buckets = vec![0; h.positive_buckets.len()];
            self.p_deltas = vec![0; h.positive_buckets.len()];
            self.n_buckets = vec![0; h.negative_buckets.len()];
            self.n_deltas = vec![0; h.negative_buckets.len()];
            put_varbit_int(w, t);
            put_varbit_uint(w, h.count);
            put_varbit_uint(w, h.zero_count);
            w.write_bits(h.sum.to_bits(), 64);
            for &b in h.positive_buckets.iter().chain(&h.negative_buckets) {
                put_varbit_int(w, b);
            }
        } else {
            t_delta = t.wrapping_sub(self.t);
            cnt_delta = (h.count as i64).wrapping_sub(self.cnt as i64);
            zcnt_delta = (h.zero_count as i64).wrapping_sub(self.zcnt as i64);
            let t_dod = t_delta.wrapping_sub(self.t_delta);
            let (mut cnt_dod, mut zcnt_dod) = (
                cnt_delta.wrapping_sub(self.cnt_delta),
                zcnt_delta.wrapping_sub(self.zcnt_delta),
            );
            if is_stale(h.sum) {
                cnt_dod = 0;
                zcnt_dod = 0;
            }
            put_varbit_int(w, t_dod);
            put_varbit_int(w, cnt_dod);
            put_varbit_int(w, zcnt_dod);
            xor_write(
                w,
                h.sum.to_bits(),
                self.sum,
                &mut self.leading,
                &mut self.trailing,
            );
            for (i, &b) in h.positive_buckets.iter().enumerate() {
                let delta = b.wrapping_sub(self.p_buckets[i]);
                put_varbit_int(w, delta.wrapping_sub(self.p_deltas[i]));
                self.p_deltas[i] = delta;
            }
            for (i, &b) in h.negative_buckets.iter().enumerate() {
                let delta = b.wrapping_sub(self.n_buckets[i]);
                put_varbit_int(w, delta.wrapping_sub(self.n_deltas[i]));
                self.n_deltas[i] = delta;
            }
        }
        self.num += 1;
        set_count(w, self.num);
        self.t = t;
        self.cnt = h.count;
        self.zcnt = h.zero_count;
        self.t_delta = t_delta;
        self.cnt_delta = cnt_delta;
        self.zcnt_delta = zcnt_delta;
        // As Go's copy(): a stale marker has no buckets and copies none.
        for (d, s) in self.p_buckets.iter_mut().zip(&h.positive_buckets) {
            *d = *s;
        }
        for (d, s) in self.n_buckets.iter_mut().zip(&h.negative_buckets) {
            *d = *s;
        }
        self.sum = h.sum.to_bits();
        Ok(())
    }
}

pub(crate) fn check_buckets(spans: &[Span], buckets: usize) -> Result<(), AppendError> {
    let want = span_buckets(spans);
    if want != buckets as u64 {
        return Err(AppendError::BucketMismatch {
            buckets,
            spans: want,
        });
    }
    Ok(())
}

/// Decodes integer histogram chunk bytes (encoding 2).
#[derive(Clone, Debug)]
pub struct HistogramIter<'a> {
    r: BitReader<'a>,
    total: u16,
    read: u16,
    err: Option<ChunkError>,
    layout: Option<(i32, f64, Vec<Span>, Vec<Span>)>,
    t: i64,
    cnt: u64,
    zcnt: u64,
    t_delta: i64,
    cnt_delta: i64,
    zcnt_delta: i64,
    p_buckets: Vec<i64>,
    n_buckets: Vec<i64>,
    p_deltas: Vec<i64>,
    n_deltas: Vec<i64>,
    sum: u64,
    leading: u8,
    trailing: u8,
}

impl<'a> HistogramIter<'a> {
    /// `data` is the chunk bytes including the 3-byte header.
    pub fn new(data: &'a [u8]) -> Self {
        let (total, err) = match data {
            [a, b, _, ..] => (u16::from_be_bytes([*a, *b]), None),
            _ => (0, Some(ChunkError::Truncated)),
        };
        HistogramIter {
            r: BitReader::new(data, HEADER_LEN * 8),
            total,
            read: 0,
            err,
            layout: None,
            t: 0,
            cnt: 0,
            zcnt: 0,
            t_delta: 0,
            cnt_delta: 0,
            zcnt_delta: 0,
            p_buckets: Vec::new(),
            n_buckets: Vec::new(),
            p_deltas: Vec::new(),
            n_deltas: Vec::new(),
            sum: 0,
            leading: 0,
            trailing: 0,
        }
    }

    pub fn num_samples(&self) -> usize {
        self.total as usize
    }

    /// Why decoding stopped early, if it did.
    pub fn err(&self) -> Option<&ChunkError> {
        self.err.as_ref()
    }

    fn step(&mut self) -> Result<(), ChunkError> {
        let r = &mut self.r;
        if self.read == 0 {
            let l = read_layout(r)?;
            self.p_buckets = vec![0; l.n_pos];
            self.p_deltas = vec![0; l.n_pos];
            self.n_buckets = vec![0; l.n_neg];
            self.n_deltas = vec![0; l.n_neg];
            self.layout = Some((
                l.schema,
                l.zero_threshold,
                l.positive_spans,
                l.negative_spans,
            ));
            self.t = read_varbit_int(r)?;
            self.cnt = read_varbit_uint(r)?;
            self.zcnt = read_varbit_uint(r)?;
            self.sum = r.read_bits(64);
            for b in self.p_buckets.iter_mut().chain(self.n_buckets.iter_mut()) {
                *b = read_varbit_int(r)?;
            }
            return if r.overrun() {
                Err(ChunkError::Truncated)
            } else {
                Ok(())
            };
        }
        self.t_delta = self.t_delta.wrapping_add(read_varbit_int(r)?);
        self.t = self.t.wrapping_add(self.t_delta);
        self.cnt_delta = self.cnt_delta.wrapping_add(read_varbit_int(r)?);
        self.cnt = (self.cnt as i64).wrapping_add(self.cnt_delta) as u64;
        self.zcnt_delta = self.zcnt_delta.wrapping_add(read_varbit_int(r)?);
        self.zcnt = (self.zcnt as i64).wrapping_add(self.zcnt_delta) as u64;
        xor_read(r, &mut self.sum, &mut self.leading, &mut self.trailing)?;
        if is_stale(f64::from_bits(self.sum)) {
            return Ok(());
        }
        for (b, d) in self
            .p_buckets
            .iter_mut()
            .zip(self.p_deltas.iter_mut())
            .chain(self.n_buckets.iter_mut().zip(self.n_deltas.iter_mut()))
        {
            *d = d.wrapping_add(read_varbit_int(r)?);
            *b = b.wrapping_add(*d);
        }
        Ok(())
    }
}

impl Iterator for HistogramIter<'_> {
    type Item = (i64, Histogram);

    fn next(&mut self) -> Option<(i64, Histogram)> {
        if self.err.is_some() || self.read >= self.total {
            return None;
        }
        if let Err(e) = self.step() {
            self.err = Some(e);
            return None;
        }
        self.read += 1;
        let sum = f64::from_bits(self.sum);
        if is_stale(sum) {
            return Some((
                self.t,
                Histogram {
                    sum,
                    ..Histogram::default()
                },
            ));
        }
        let (schema, zero_threshold, ps, ns) = self
            .layout
            .clone()
            .expect("layout read with the first sample");
        Some((
            self.t,
            Histogram {
                schema,
                zero_threshold,
                zero_count: self.zcnt,
                count: self.cnt,
                sum,
                positive_spans: ps,
                negative_spans: ns,
                positive_buckets: self.p_buckets.clone(),
                negative_buckets: self.n_buckets.clone(),
            },
        ))
    }
}

/// One Gorilla-coded float field with its own window.
#[derive(Clone, Copy, Debug)]
struct XorValue {
    value: u64,
    leading: u8,
    trailing: u8,
}

impl XorValue {
    fn new(v: f64) -> Self {
        XorValue {
            value: v.to_bits(),
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    fn write(&mut self, w: &mut BitWriter, v: f64) {
        xor_write(
            w,
            v.to_bits(),
            self.value,
            &mut self.leading,
            &mut self.trailing,
        );
        self.value = v.to_bits();
    }

    fn read(&mut self, r: &mut BitReader) -> Result<(), ChunkError> {
        xor_read(r, &mut self.value, &mut self.leading, &mut self.trailing)
    }
}

/// An appendable float histogram chunk (encoding 3).
#[derive(Clone, Debug)]
pub struct FloatHistogramChunk {
    w: BitWriter,
    num: u16,
    schema: i32,
    zero_threshold: f64,
    p_spans: Vec<Span>,
    n_spans: Vec<Span>,
    t: i64,
    t_delta: i64,
    cnt: XorValue,
    zcnt: XorValue,
    sum: XorValue,
    p_buckets: Vec<XorValue>,
    n_buckets: Vec<XorValue>,
}

impl Default for FloatHistogramChunk {
    fn default() -> Self {
        Self::new()
    }
}

impl FloatHistogramChunk {
    pub fn new() -> Self {
        FloatHistogramChunk {
            w: new_writer(),
            num: 0,
            schema: 0,
            zero_threshold: 0.0,
            p_spans: Vec::new(),
            n_spans: Vec::new(),
            t: 0,
            t_delta: 0,
            cnt: XorValue::new(0.0),
            zcnt: XorValue::new(0.0),
            sum: XorValue::new(0.0),
            p_buckets: Vec::new(),
            n_buckets: Vec::new(),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        self.w.bytes()
    }

    pub fn num_samples(&self) -> usize {
        self.num as usize
    }

    pub fn set_counter_reset_header(&mut self, h: CounterResetHeader) {
        set_header(&mut self.w, h);
    }

    /// As [`HistogramChunk::append`].
    pub fn append(&mut self, t: i64, h: &FloatHistogram) -> Result<(), AppendError> {
        self.append_inner(t, h, true)
    }

    /// As [`HistogramChunk::append_recoding`].
    pub fn append_recoding(&mut self, t: i64, h: &FloatHistogram) -> Result<(), AppendError> {
        if self.num == 0 {
            return self.append_inner(t, h, true);
        }
        check_buckets(&h.positive_spans, h.positive_buckets.len())?;
        check_buckets(&h.negative_spans, h.negative_buckets.len())?;
        let a = self.appendable(h);
        if a.counter_reset || !a.ok {
            return Err(AppendError::NewChunkNeeded {
                counter_reset: a.counter_reset,
            });
        }
        if !a.pos.is_empty() || !a.neg.is_empty() {
            *self = self.recode(&a.pos, &a.neg, &h.positive_spans, &h.negative_spans)?;
        }
        self.append_inner(t, h, false)
    }

    /// Appends a gauge histogram as Prometheus' head does
    /// (`AppendableGauge`, `RecodeHistogram`, `Recode`): buckets may come and
    /// go and counts may fall; the chunk and the sample are both expanded to
    /// the union of their buckets. A new chunk is needed only after a stale
    /// marker, on a schema or zero threshold change, or when the chunk is not
    /// a gauge chunk. The first sample makes the chunk a gauge chunk.
    pub fn append_gauge(&mut self, t: i64, h: &FloatHistogram) -> Result<(), AppendError> {
        if self.num == 0 {
            self.append_inner(t, h, true)?;
            self.set_counter_reset_header(CounterResetHeader::Gauge);
            return Ok(());
        }
        let no = Err(AppendError::NewChunkNeeded {
            counter_reset: false,
        });
        if counter_reset_header(self.w.bytes()) != Some(CounterResetHeader::Gauge) {
            return no;
        }
        if is_stale(h.sum) {
            return self.append_inner(t, h, false);
        }
        check_buckets(&h.positive_spans, h.positive_buckets.len())?;
        check_buckets(&h.negative_spans, h.negative_buckets.len())?;
        if is_stale(f64::from_bits(self.sum.value))
            || h.schema != self.schema
            || h.zero_threshold != self.zero_threshold
        {
            return no;
        }
        let (pf, pb, pm) = expand_spans_both_ways(&self.p_spans, &h.positive_spans);
        let (nf, nb, nm) = expand_spans_both_ways(&self.n_spans, &h.negative_spans);
        let mut h = h.clone();
        if !pb.is_empty() || !nb.is_empty() {
            h.positive_spans = pm;
            h.negative_spans = nm;
            let left = || AppendError::Recode(ChunkError::Corrupt("bucket inserts left over"));
            if !pb.is_empty() {
                h.positive_buckets =
                    insert_buckets(&h.positive_buckets, &pb, false).ok_or_else(left)?;
            }
            if !nb.is_empty() {
                h.negative_buckets =
                    insert_buckets(&h.negative_buckets, &nb, false).ok_or_else(left)?;
            }
        }
        if !pf.is_empty() || !nf.is_empty() {
            *self = self.recode(&pf, &nf, &h.positive_spans, &h.negative_spans)?;
        }
        self.append_inner(t, &h, false)
    }

    /// The counter reset header Prometheus' head gives the chunk it cuts
    /// after this one for `h` when the cut is not `h`'s doing (time range,
    /// size, another sample kind in between): `CounterReset` if `h` is a
    /// reset against this chunk, `NotCounterReset` if it would have fit,
    /// else `Unknown`.
    pub fn header_after(&self, h: &FloatHistogram) -> CounterResetHeader {
        if self.num == 0 {
            return CounterResetHeader::Unknown;
        }
        let a = self.appendable(h);
        if a.counter_reset {
            CounterResetHeader::CounterReset
        } else if a.ok {
            CounterResetHeader::NotCounterReset
        } else {
            CounterResetHeader::Unknown
        }
    }

    /// Prometheus' `FloatHistogramAppender.Appendable`.
    fn appendable(&self, h: &FloatHistogram) -> Appendability {
        let header = counter_reset_header(self.w.bytes());
        if self.num > 0 && header == Some(CounterResetHeader::Gauge) {
            return Appendability::no(false);
        }
        if is_stale(h.sum) {
            return Appendability {
                ok: true,
                ..Appendability::no(false)
            };
        }
        if is_stale(f64::from_bits(self.sum.value)) {
            return Appendability::no(false);
        }
        if h.count < f64::from_bits(self.cnt.value) {
            return Appendability::no(true);
        }
        if h.schema != self.schema || h.zero_threshold != self.zero_threshold {
            return Appendability::no(false);
        }
        if h.zero_count < f64::from_bits(self.zcnt.value) {
            return Appendability::no(true);
        }
        let (Some(pos), Some(neg)) = (
            expand_spans_forward(&self.p_spans, &h.positive_spans),
            expand_spans_forward(&self.n_spans, &h.negative_spans),
        ) else {
            return Appendability::no(true);
        };
        let abs =
            |v: &[XorValue]| -> Vec<f64> { v.iter().map(|x| f64::from_bits(x.value)).collect() };
        if counter_reset_in_any_bucket(
            &abs(&self.p_buckets),
            &h.positive_buckets,
            &self.p_spans,
            &h.positive_spans,
        ) || counter_reset_in_any_bucket(
            &abs(&self.n_buckets),
            &h.negative_buckets,
            &self.n_spans,
            &h.negative_spans,
        ) {
            return Appendability::no(true);
        }
        Appendability {
            ok: true,
            counter_reset: false,
            pos,
            neg,
        }
    }

    /// Prometheus' `FloatHistogramAppender.Recode`.
    fn recode(
        &self,
        pos: &[Insert],
        neg: &[Insert],
        p_spans: &[Span],
        n_spans: &[Span],
    ) -> Result<FloatHistogramChunk, AppendError> {
        let mut out = FloatHistogramChunk::new();
        let mut it = FloatHistogramIter::new(self.w.bytes());
        for (t, mut h) in it.by_ref() {
            if !is_stale(h.sum) {
                h.positive_spans = p_spans.to_vec();
                h.negative_spans = n_spans.to_vec();
                if !pos.is_empty() {
                    h.positive_buckets = insert_buckets(&h.positive_buckets, pos, false).ok_or(
                        AppendError::Recode(ChunkError::Corrupt("bucket inserts left over")),
                    )?;
                }
                if !neg.is_empty() {
                    h.negative_buckets = insert_buckets(&h.negative_buckets, neg, false).ok_or(
                        AppendError::Recode(ChunkError::Corrupt("bucket inserts left over")),
                    )?;
                }
            }
            out.append_inner(t, &h, true)?;
        }
        if let Some(e) = it.err() {
            return Err(AppendError::Recode(e.clone()));
        }
        if let Some(h) = counter_reset_header(self.w.bytes()) {
            out.set_counter_reset_header(h);
        }
        Ok(out)
    }

    fn append_inner(
        &mut self,
        t: i64,
        h: &FloatHistogram,
        check_layout: bool,
    ) -> Result<(), AppendError> {
        if self.num == u16::MAX {
            return Err(AppendError::Full);
        }
        let stale_marker;
        let h = if is_stale(h.sum) {
            stale_marker = FloatHistogram {
                sum: h.sum,
                ..FloatHistogram::default()
            };
            &stale_marker
        } else {
            check_buckets(&h.positive_spans, h.positive_buckets.len())?;
            check_buckets(&h.negative_spans, h.negative_buckets.len())?;
            if self.num > 0 {
                if is_stale(f64::from_bits(self.sum.value)) {
                    return Err(AppendError::AfterStale);
                }
                let same = if check_layout {
                    h.positive_spans == self.p_spans && h.negative_spans == self.n_spans
                } else {
                    h.positive_buckets.len() == self.p_buckets.len()
                        && h.negative_buckets.len() == self.n_buckets.len()
                };
                if h.schema != self.schema || h.zero_threshold != self.zero_threshold || !same {
                    return Err(AppendError::LayoutChanged);
                }
            }
            h
        };
        let w = &mut self.w;
        let mut t_delta = 0;
        if self.num == 0 {
            put_zero_threshold(w, h.zero_threshold);
            put_varbit_int(w, i64::from(h.schema));
            put_spans(w, &h.positive_spans);
            put_spans(w, &h.negative_spans);
            self.schema = h.schema;
            self.zero_threshold = h.zero_threshold;
            self.p_spans = h.positive_spans.clone();
            self.n_spans = h.negative_spans.clone();
            self.p_buckets = h
                .positive_buckets
                .iter()
                .map(|&b| XorValue::new(b))
                .collect();
            self.n_buckets = h
                .negative_buckets
                .iter()
                .map(|&b| XorValue::new(b))
                .collect();
            put_varbit_int(w, t);
            w.write_bits(h.count.to_bits(), 64);
            w.write_bits(h.zero_count.to_bits(), 64);
            w.write_bits(h.sum.to_bits(), 64);
            self.cnt = XorValue::new(h.count);
            self.zcnt = XorValue::new(h.zero_count);
            self.sum = XorValue::new(h.sum);
            for &b in h.positive_buckets.iter().chain(&h.negative_buckets) {
                w.write_bits(b.to_bits(), 64);
            }
        } else {
            t_delta = t.wrapping_sub(self.t);
            put_varbit_int(w, t_delta.wrapping_sub(self.t_delta));
            self.cnt.write(w, h.count);
            self.zcnt.write(w, h.zero_count);
            self.sum.write(w, h.sum);
            for (x, &b) in self.p_buckets.iter_mut().zip(&h.positive_buckets) {
                x.write(w, b);
            }
            for (x, &b) in self.n_buckets.iter_mut().zip(&h.negative_buckets) {
                x.write(w, b);
            }
        }
        self.num += 1;
        set_count(w, self.num);
        self.t = t;
        self.t_delta = t_delta;
        Ok(())
    }
}

/// Decodes float histogram chunk bytes (encoding 3).
#[derive(Clone, Debug)]
pub struct FloatHistogramIter<'a> {
    r: BitReader<'a>,
    total: u16,
    read: u16,
    err: Option<ChunkError>,
    layout: Option<(i32, f64, Vec<Span>, Vec<Span>)>,
    t: i64,
    t_delta: i64,
    cnt: XorValue,
    zcnt: XorValue,
    sum: XorValue,
    p_buckets: Vec<XorValue>,
    n_buckets: Vec<XorValue>,
}

impl<'a> FloatHistogramIter<'a> {
    /// `data` is the chunk bytes including the 3-byte header.
    pub fn new(data: &'a [u8]) -> Self {
        let (total, err) = match data {
            [a, b, _, ..] => (u16::from_be_bytes([*a, *b]), None),
            _ => (0, Some(ChunkError::Truncated)),
        };
        let zero = XorValue {
            value: 0,
            leading: 0,
            trailing: 0,
        };
        FloatHistogramIter {
            r: BitReader::new(data, HEADER_LEN * 8),
            total,
            read: 0,
            err,
            layout: None,
            t: 0,
            t_delta: 0,
            cnt: zero,
            zcnt: zero,
            sum: zero,
            p_buckets: Vec::new(),
            n_buckets: Vec::new(),
        }
    }

    pub fn num_samples(&self) -> usize {
        self.total as usize
    }

    /// Why decoding stopped early, if it did.
    pub fn err(&self) -> Option<&ChunkError> {
        self.err.as_ref()
    }

    fn step(&mut self) -> Result<(), ChunkError> {
        let r = &mut self.r;
        if self.read == 0 {
            let l = read_layout(r)?;
            self.layout = Some((
                l.schema,
                l.zero_threshold,
                l.positive_spans,
                l.negative_spans,
            ));
            self.t = read_varbit_int(r)?;
            let zero = self.cnt;
            self.cnt.value = r.read_bits(64);
            self.zcnt.value = r.read_bits(64);
            self.sum.value = r.read_bits(64);
            self.p_buckets = vec![zero; l.n_pos];
            self.n_buckets = vec![zero; l.n_neg];
            for b in self.p_buckets.iter_mut().chain(self.n_buckets.iter_mut()) {
                b.value = r.read_bits(64);
            }
            return if r.overrun() {
                Err(ChunkError::Truncated)
            } else {
                Ok(())
            };
        }
        self.t_delta = self.t_delta.wrapping_add(read_varbit_int(r)?);
        self.t = self.t.wrapping_add(self.t_delta);
        self.cnt.read(r)?;
        self.zcnt.read(r)?;
        self.sum.read(r)?;
        if is_stale(f64::from_bits(self.sum.value)) {
            return Ok(());
        }
        for b in self.p_buckets.iter_mut().chain(self.n_buckets.iter_mut()) {
            b.read(r)?;
        }
        Ok(())
    }
}

impl Iterator for FloatHistogramIter<'_> {
    type Item = (i64, FloatHistogram);

    fn next(&mut self) -> Option<(i64, FloatHistogram)> {
        if self.err.is_some() || self.read >= self.total {
            return None;
        }
        if let Err(e) = self.step() {
            self.err = Some(e);
            return None;
        }
        self.read += 1;
        let sum = f64::from_bits(self.sum.value);
        if is_stale(sum) {
            return Some((
                self.t,
                FloatHistogram {
                    sum,
                    ..FloatHistogram::default()
                },
            ));
        }
        let (schema, zero_threshold, ps, ns) = self
            .layout
            .clone()
            .expect("layout read with the first sample");
        Some((
            self.t,
            FloatHistogram {
                schema,
                zero_threshold,
                zero_count: f64::from_bits(self.zcnt.value),
                count: f64::from_bits(self.cnt.value),
                sum,
                positive_spans: ps,
                negative_spans: ns,
                positive_buckets: self
                    .p_buckets
                    .iter()
                    .map(|x| f64::from_bits(x.value))
                    .collect(),
                negative_buckets: self
                    .n_buckets
                    .iter()
                    .map(|x| f64::from_bits(x.value))
                    .collect(),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(i: u64) -> Histogram {
        Histogram {
            schema: 1,
            zero_threshold: 2f64.powi(-128),
            zero_count: 2 + i,
            count: 12 + 3 * i,
            sum: 18.4 * (i + 1) as f64,
            positive_spans: vec![
                Span {
                    offset: 0,
                    length: 2,
                },
                Span {
                    offset: 1,
                    length: 2,
                },
            ],
            negative_spans: vec![Span {
                offset: -3,
                length: 1,
            }],
            positive_buckets: vec![1 + i as i64, 1, -1, 0],
            negative_buckets: vec![2],
        }
    }

    fn fh(i: u64) -> FloatHistogram {
        FloatHistogram {
            schema: 0,
            zero_threshold: 0.001,
            zero_count: 1.5 + i as f64,
            count: 10.25 * (i + 1) as f64,
            sum: -3.5 + i as f64 / 3.0,
            positive_spans: vec![Span {
                offset: 2,
                length: 3,
            }],
            negative_spans: vec![],
            positive_buckets: vec![1.0, 2.5 + i as f64, 0.125],
            negative_buckets: vec![],
        }
    }

    #[test]
    fn varbit_round_trips_at_every_width_edge() {
        let ints = [
            0i64,
            1,
            -1,
            4,
            -3,
            5,
            -4,
            32,
            -31,
            33,
            256,
            -255,
            257,
            2048,
            -2047,
            131072,
            -131071,
            16777216,
            -16777215,
            1 << 55,
            -(1 << 55) + 1,
            i64::MAX,
            i64::MIN,
        ];
        let uints = [
            0u64,
            7,
            8,
            63,
            64,
            511,
            4095,
            262143,
            33554431,
            (1 << 56) - 1,
            1 << 56,
            u64::MAX,
        ];
        let mut w = BitWriter::with_prefix(&[], 16);
        for &v in &ints {
            put_varbit_int(&mut w, v);
        }
        for &v in &uints {
            put_varbit_uint(&mut w, v);
        }
        let mut r = BitReader::new(w.bytes(), 0);
        for &v in &ints {
            assert_eq!(read_varbit_int(&mut r).unwrap(), v);
        }
        for &v in &uints {
            assert_eq!(read_varbit_uint(&mut r).unwrap(), v);
        }
    }

    #[test]
    fn zero_threshold_takes_one_byte_for_powers_of_two() {
        for (th, bytes) in [
            (0.0, 1),
            (2f64.powi(-128), 1),
            (2f64.powi(-243), 1),
            (2f64.powi(10), 1),
            (2f64.powi(11), 9),
            (2f64.powi(-244), 9),
            (0.001, 9),
            (-0.5, 9),
        ] {
            let mut w = BitWriter::with_prefix(&[], 16);
            put_zero_threshold(&mut w, th);
            // A whole-byte write leaves Prometheus' trailing empty byte.
            assert_eq!(w.bytes().len(), bytes + 1, "{th}");
            let mut r = BitReader::new(w.bytes(), 0);
            assert_eq!(read_zero_threshold(&mut r).unwrap().to_bits(), th.to_bits());
        }
        // The default threshold 2^-128 is byte 116, as Prometheus documents.
        let mut w = BitWriter::with_prefix(&[], 4);
        put_zero_threshold(&mut w, 2f64.powi(-128));
        assert_eq!(w.bytes()[0], 116);
    }

    #[test]
    fn integer_histograms_round_trip_with_stale_markers() {
        let mut c = HistogramChunk::new();
        let mut want = Vec::new();
        for i in 0..150u64 {
            let t = 1_000 + i as i64 * 15_000 + (i as i64 % 3) * 7;
            c.append(t, &h(i)).unwrap();
            want.push((t, h(i)));
        }
        let stale = Histogram {
            sum: f64::from_bits(STALE_NAN_BITS),
            ..Histogram::default()
        };
        c.append(5_000_000, &stale).unwrap();
        want.push((5_000_000, stale.clone()));
        assert_eq!(c.append(5_000_001, &h(0)), Err(AppendError::AfterStale));
        c.append(5_000_002, &stale).unwrap();
        want.push((5_000_002, stale.clone()));
        c.set_counter_reset_header(CounterResetHeader::NotCounterReset);
        assert_eq!(
            counter_reset_header(c.bytes()),
            Some(CounterResetHeader::NotCounterReset)
        );
        let mut it = HistogramIter::new(c.bytes());
        let got: Vec<(i64, Histogram)> = it.by_ref().collect();
        assert!(it.err().is_none(), "{:?}", it.err());
        assert_eq!(got.len(), want.len());
        for ((ta, a), (tb, b)) in got.iter().zip(&want) {
            assert_eq!(ta, tb);
            assert_eq!(a.sum.to_bits(), b.sum.to_bits());
            if !is_stale(b.sum) {
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn float_histograms_round_trip() {
        let mut c = FloatHistogramChunk::new();
        for i in 0..130u64 {
            c.append(i as i64 * 1000, &fh(i)).unwrap();
        }
        let got: Vec<(i64, FloatHistogram)> = FloatHistogramIter::new(c.bytes()).collect();
        assert_eq!(got.len(), 130);
        for (i, (t, x)) in got.iter().enumerate() {
            assert_eq!(*t, i as i64 * 1000);
            assert_eq!(x, &fh(i as u64));
        }
    }

    #[test]
    fn layout_changes_and_bad_buckets_are_refused() {
        let mut c = HistogramChunk::new();
        c.append(1, &h(0)).unwrap();
        let mut other = h(1);
        other.schema = 2;
        assert_eq!(c.append(2, &other), Err(AppendError::LayoutChanged));
        let mut other = h(1);
        other.positive_spans[1].length = 3;
        other.positive_buckets.push(0);
        assert_eq!(c.append(2, &other), Err(AppendError::LayoutChanged));
        let mut bad = h(1);
        bad.positive_buckets.pop();
        assert!(matches!(
            c.append(2, &bad),
            Err(AppendError::BucketMismatch { .. })
        ));
        assert_eq!(c.num_samples(), 1);
    }

    #[test]
    fn corrupt_and_truncated_bytes_are_errors_not_panics() {
        let mut c = HistogramChunk::new();
        for i in 0..20u64 {
            c.append(i as i64, &h(i)).unwrap();
        }
        let b = c.bytes().to_vec();
        for cut in 0..b.len() {
            let mut it = HistogramIter::new(&b[..cut]);
            let n = it.by_ref().count();
            assert!(n < 20 && it.err().is_some(), "cut {cut}: {n}");
        }
        // Every single-byte corruption decodes or fails cleanly; a huge
        // span count must not allocate.
        for i in 3..b.len() {
            for x in [0xffu8, 0x80, 0x01] {
                let mut m = b.clone();
                m[i] ^= x;
                let _ = HistogramIter::new(&m).count();
                let _ = FloatHistogramIter::new(&m).count();
            }
        }
        let mut it = HistogramIter::new(&[
            0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ]);
        assert!(it.next().is_none() && it.err().is_some());
    }

    fn spans(v: &[(i32, u32)]) -> Vec<Span> {
        v.iter()
            .map(|&(offset, length)| Span { offset, length })
            .collect()
    }

    #[test]
    fn inserts_follow_prometheus_worked_example() {
        // The example in Prometheus' expandSpansForward docs.
        let old = spans(&[(0, 2), (2, 1), (3, 2), (3, 1), (1, 1)]);
        let new = spans(&[(0, 3), (1, 1), (1, 4), (3, 3)]);
        let ins = expand_spans_forward(&old, &new).unwrap();
        let deltas = [6i64, -3, 0, -1, 2, 1, -4];
        assert_eq!(
            insert_buckets(&deltas, &ins, true).unwrap(),
            [6, -3, -3, 3, -3, 0, 2, 2, 1, -5, 1]
        );
        let abs = [6.0f64, 3.0, 3.0, 2.0, 4.0, 5.0, 1.0];
        assert_eq!(
            insert_buckets(&abs, &ins, false).unwrap(),
            [6.0, 3.0, 0.0, 3.0, 0.0, 0.0, 2.0, 4.0, 5.0, 0.0, 1.0]
        );
        // Buckets may only be added.
        assert!(expand_spans_forward(&new, &old).is_none());
        assert_eq!(expand_spans_forward(&old, &old).unwrap(), []);
    }

    #[test]
    fn new_buckets_recode_and_resets_need_a_new_chunk() {
        let base = |n: u64, sp: Vec<Span>, b: Vec<i64>| Histogram {
            schema: 0,
            count: n,
            sum: n as f64,
            positive_spans: sp,
            positive_buckets: b,
            ..Histogram::default()
        };
        let mut c = HistogramChunk::new();
        c.append_recoding(1, &base(5, spans(&[(0, 2)]), vec![2, 1]))
            .unwrap();
        c.append_recoding(2, &base(7, spans(&[(0, 2)]), vec![3, 1]))
            .unwrap();
        // A bucket before and one after a gap: the chunk is recoded.
        c.append_recoding(3, &base(12, spans(&[(-1, 3), (1, 1)]), vec![1, 2, 1, -3]))
            .unwrap();
        let got: Vec<(i64, Histogram)> = HistogramIter::new(c.bytes()).collect();
        assert_eq!(got.len(), 3);
        for (_, h) in &got {
            assert_eq!(h.positive_spans, spans(&[(-1, 3), (1, 1)]));
        }
        // Absolute [0, 2, 3, 0] and [0, 3, 4, 0]: old buckets keep their counts.
        assert_eq!(got[0].1.positive_buckets, vec![0, 2, 1, -3]);
        assert_eq!(got[1].1.positive_buckets, vec![0, 3, 1, -4]);
        // A bucket that shrinks is a counter reset; a lost bucket too.
        let mut reset = base(20, spans(&[(-1, 3), (1, 1)]), vec![1, 0, 1, -1]);
        assert_eq!(
            c.append_recoding(4, &reset),
            Err(AppendError::NewChunkNeeded {
                counter_reset: true
            })
        );
        reset.positive_spans = spans(&[(0, 2)]);
        reset.positive_buckets = vec![5, 1];
        assert_eq!(
            c.append_recoding(4, &reset),
            Err(AppendError::NewChunkNeeded {
                counter_reset: true
            })
        );
        let mut schema = base(20, spans(&[(-1, 3), (1, 1)]), vec![1, 2, 1, -3]);
        schema.schema = 1;
        assert_eq!(
            c.append_recoding(4, &schema),
            Err(AppendError::NewChunkNeeded {
                counter_reset: false
            })
        );
        // The same buckets spelled with other spans append as they are.
        c.append_recoding(
            4,
            &base(13, spans(&[(-1, 2), (0, 1), (1, 1)]), vec![1, 2, 1, -3]),
        )
        .unwrap();
        assert_eq!(c.num_samples(), 4);
    }

    #[test]
    fn gauge_histograms_expand_both_ways() {
        let a = spans(&[(0, 2), (2, 1)]); // buckets 0, 1, 4
        let b = spans(&[(1, 2), (1, 1)]); // buckets 1, 2, 4
        let (fwd, bwd, merged) = expand_spans_both_ways(&a, &b);
        assert_eq!(merged, spans(&[(0, 3), (1, 1)]));
        assert_eq!(fwd, [Insert { pos: 2, num: 1 }]);
        assert_eq!(bwd, [Insert { pos: 0, num: 1 }]);
        let g = |sp: Vec<Span>, b: Vec<f64>| FloatHistogram {
            count: b.iter().sum(),
            sum: 1.0,
            positive_spans: sp,
            positive_buckets: b,
            ..FloatHistogram::default()
        };
        let mut c = FloatHistogramChunk::new();
        c.append_gauge(1, &g(a, vec![5.0, 3.0, 2.0])).unwrap();
        assert_eq!(
            counter_reset_header(c.bytes()),
            Some(CounterResetHeader::Gauge)
        );
        // Counts fall and a bucket disappears: still the same gauge chunk.
        c.append_gauge(2, &g(b, vec![1.0, 7.0, 1.0])).unwrap();
        let got: Vec<(i64, FloatHistogram)> = FloatHistogramIter::new(c.bytes()).collect();
        assert_eq!(got[0].1.positive_buckets, [5.0, 3.0, 0.0, 2.0]);
        assert_eq!(got[1].1.positive_buckets, [0.0, 1.0, 7.0, 1.0]);
        assert!(got.iter().all(|(_, h)| h.positive_spans == merged));
        // A counter chunk does not take gauges, nor a gauge chunk counters.
        let mut counter = FloatHistogramChunk::new();
        counter
            .append_recoding(1, &g(spans(&[(0, 1)]), vec![1.0]))
            .unwrap();
        assert_eq!(
            counter.append_gauge(2, &g(spans(&[(0, 1)]), vec![2.0])),
            Err(AppendError::NewChunkNeeded {
                counter_reset: false
            })
        );
        assert_eq!(
            c.append_recoding(3, &g(merged.clone(), vec![9.0, 9.0, 9.0, 9.0])),
            Err(AppendError::NewChunkNeeded {
                counter_reset: false
            })
        );
    }
}
