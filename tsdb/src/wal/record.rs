//! WAL record payloads, as Prometheus 2.42's `tsdb/record` encodes them.
//!
//! The first byte of a record is its type. Integers are big-endian fixed
//! width (`be64`) or Go `encoding/binary` varints: `uvarint` is LEB128,
//! `varint` is zigzag + LEB128. A string is `uvarint len | bytes`.
//!
//! ```text
//! 1 series      { ref be64 | nLabels uvarint | { name str | value str }* }*
//! 2 samples     [ baseRef be64 | baseT be64 |
//!                 { dRef varint | dT varint | value f64-bits be64 }* ]
//!               (every sample, the first included, is a delta to the base,
//!                so deltas may be negative; an empty batch is just the
//!                type byte)
//! 3 tombstones  { ref be64 | mint varint | maxt varint }*
//! 4 exemplars   like samples, each followed by a label set
//! 5 mmap marks  out-of-order WBL only
//! 6 metadata    { ref uvarint | type u8 | nFields uvarint |
//!                 { name str | value str }* }*   (fields "UNIT", "HELP")
//! 7 histograms, 8 float histograms: like samples, with a histogram body
//! ```
//!
//! [`decode`] turns the record kinds the head replays (series, samples,
//! tombstones, histograms) into values and
//! only validates and counts exemplars and metadata; anything else comes back
//! as [`Record::Other`] with its type byte, for the caller to skip. The
//! checkpoint needs more (it filters exemplars, metadata and histograms), so
//! those have their own helpers here.
//!
//! Decoding never trusts a count or a length from the input to size an
//! allocation: every element consumes at least one input byte, so memory
//! stays proportional to the record.

use std::sync::Arc;

use crate::chunkenc::histogram::{FloatHistogram, Histogram, Span};
use crate::encoding::{put_uvarint, put_varint};
use crate::labels::{Label, Labels};

pub const SERIES: u8 = 1;
pub const SAMPLES: u8 = 2;
pub const TOMBSTONES: u8 = 3;
pub const EXEMPLARS: u8 = 4;
pub const MMAP_MARKERS: u8 = 5;
pub const METADATA: u8 = 6;
pub const HISTOGRAM_SAMPLES: u8 = 7;
pub const FLOAT_HISTOGRAM_SAMPLES: u8 = 8;

/// A series and the head's reference for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefSeries {
    pub series_ref: u64,
    pub labels: Labels,
}

/// One float sample of a series.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RefSample {
    pub series_ref: u64,
    pub t: i64,
    pub v: f64,
}

/// One deleted interval `[mint, maxt]` of a series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stone {
    pub series_ref: u64,
    pub mint: i64,
    pub maxt: i64,
}

/// An exemplar attached to a series.
#[derive(Clone, Debug, PartialEq)]
pub struct RefExemplar {
    pub series_ref: u64,
    pub t: i64,
    pub v: f64,
    pub labels: Labels,
}

/// Metric metadata of a series (type as in the table in this module's doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefMetadata {
    pub series_ref: u64,
    pub metric_type: u8,
    pub unit: String,
    pub help: String,
}

/// A decoded record.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Series(Vec<RefSeries>),
    Samples(Vec<RefSample>),
    Tombstones(Vec<Stone>),
    /// Number of exemplars; the contents are validated but not kept.
    Exemplars(usize),
    /// Number of metadata entries; validated but not kept.
    Metadata(usize),
    /// Integer native histogram samples (type 7).
    Histograms(Vec<RefHistogramSample<Histogram>>),
    /// Float native histogram samples (type 8).
    FloatHistograms(Vec<RefHistogramSample<FloatHistogram>>),
    /// Any other type (histograms, mmap markers, unknown): its type byte.
    Other(u8),
}

/// A record whose bytes do not follow its type's encoding.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// The result of decoding a record.
pub type DecodeResult<T> = std::result::Result<T, DecodeError>;

fn err<T>(msg: impl Into<String>) -> DecodeResult<T> {
    Err(DecodeError(msg.into()))
}

// ---------------------------------------------------------------------------
// Primitive encoding.

fn put_be64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_be_bytes());
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_uvarint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

fn put_labels(buf: &mut Vec<u8>, labels: &Labels) {
    put_uvarint(buf, labels.len() as u64);
    for l in labels {
        put_str(buf, &l.name);
        put_str(buf, &l.value);
    }
}

/// A cursor over a record's bytes. Every read checks the remaining length
/// first, so truncated input is an error, never a panic.
struct Dec<'a> {
    b: &'a [u8],
}

impl<'a> Dec<'a> {
    fn is_empty(&self) -> bool {
        self.b.is_empty()
    }

    fn take(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        if n > self.b.len() {
            return err(format!(
                "unexpected end of record: need {n} bytes, {} left",
                self.b.len()
            ));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn byte(&mut self) -> DecodeResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn be64(&mut self) -> DecodeResult<u64> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }

    /// Go's `binary.Uvarint`: at most 10 bytes, the 10th at most 1.
    fn uvarint(&mut self) -> DecodeResult<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.b.get(i) else {
                return err("unexpected end of record in varint");
            };
            if i == 9 && b > 1 {
                return err("varint overflows 64 bits");
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.b = &self.b[i + 1..];
                return Ok(v);
            }
        }
        err("varint overflows 64 bits")
    }

    fn varint(&mut self) -> DecodeResult<i64> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    fn bytes_str(&mut self) -> DecodeResult<&'a [u8]> {
        let n = self.uvarint()?;
        let n = usize::try_from(n).map_err(|_| DecodeError("string length overflows".into()))?;
        self.take(n)
    }

    /// A string. Go strings may hold any bytes; invalid UTF-8 is replaced
    /// rather than failing the whole replay over one odd label value.
    fn string(&mut self) -> DecodeResult<String> {
        Ok(String::from_utf8_lossy(self.bytes_str()?).into_owned())
    }

    fn labels(&mut self) -> DecodeResult<Labels> {
        let n = self.uvarint()?;
        // Each pair takes at least two bytes: reject impossible counts
        // before they size anything.
        if n > (self.b.len() / 2) as u64 {
            return err(format!("label count {n} exceeds record size"));
        }
        let mut v: Vec<Label> = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let name: Arc<str> = self.string()?.into();
            let value: Arc<str> = self.string()?.into();
            v.push(Label { name, value });
        }
        // Prometheus writes label sets sorted with unique names and no empty
        // values; anything else is normalised the way `Labels` requires.
        let canonical =
            v.windows(2).all(|w| w[0].name < w[1].name) && v.iter().all(|l| !l.value.is_empty());
        Ok(if canonical {
            Labels::from_sorted(v)
        } else {
            Labels::from_pairs(v.into_iter().map(|l| (l.name, l.value)))
        })
    }

    fn skip_labels(&mut self) -> DecodeResult<()> {
        let n = self.uvarint()?;
        for _ in 0..n {
            self.bytes_str()?;
            self.bytes_str()?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Encoders. Each appends one whole record to `buf`.

/// Appends a series record.
pub fn encode_series(series: &[RefSeries], buf: &mut Vec<u8>) {
    buf.push(SERIES);
    for s in series {
        put_be64(buf, s.series_ref);
        put_labels(buf, &s.labels);
    }
}

/// Appends a samples record. Refs and timestamps are deltas to the first
/// sample's, with wrapping arithmetic as Go's int64 subtraction.
pub fn encode_samples(samples: &[RefSample], buf: &mut Vec<u8>) {
    buf.push(SAMPLES);
    let Some(first) = samples.first() else {
        return;
    };
    put_be64(buf, first.series_ref);
    put_be64(buf, first.t as u64);
    for s in samples {
        put_varint(
            buf,
            (s.series_ref as i64).wrapping_sub(first.series_ref as i64),
        );
        put_varint(buf, s.t.wrapping_sub(first.t));
        put_be64(buf, s.v.to_bits());
    }
}

/// Appends a tombstones record.
pub fn encode_tombstones(stones: &[Stone], buf: &mut Vec<u8>) {
    buf.push(TOMBSTONES);
    for s in stones {
        put_be64(buf, s.series_ref);
        put_varint(buf, s.mint);
        put_varint(buf, s.maxt);
    }
}

/// Appends an exemplars record.
pub fn encode_exemplars(exemplars: &[RefExemplar], buf: &mut Vec<u8>) {
    buf.push(EXEMPLARS);
    let Some(first) = exemplars.first() else {
        return;
    };
    put_be64(buf, first.series_ref);
    put_be64(buf, first.t as u64);
    for e in exemplars {
        put_varint(
            buf,
            (e.series_ref as i64).wrapping_sub(first.series_ref as i64),
        );
        put_varint(buf, e.t.wrapping_sub(first.t));
        put_be64(buf, e.v.to_bits());
        put_labels(buf, &e.labels);
    }
}

/// Appends a metadata record (fields UNIT and HELP, as Prometheus writes).
pub fn encode_metadata(metadata: &[RefMetadata], buf: &mut Vec<u8>) {
    buf.push(METADATA);
    for m in metadata {
        put_uvarint(buf, m.series_ref);
        buf.push(m.metric_type);
        put_uvarint(buf, 2);
        put_str(buf, "UNIT");
        put_str(buf, &m.unit);
        put_str(buf, "HELP");
        put_str(buf, &m.help);
    }
}

// ---------------------------------------------------------------------------
// Decoders.

/// Decodes a record. See [`Record`] for what is kept.
pub fn decode(rec: &[u8]) -> DecodeResult<Record> {
    let Some(&typ) = rec.first() else {
        return err("empty record");
    };
    let body = &rec[1..];
    Ok(match typ {
        SERIES => Record::Series(decode_series_body(body)?),
        SAMPLES => Record::Samples(decode_samples_body(body)?),
        TOMBSTONES => Record::Tombstones(decode_tombstones_body(body)?),
        EXEMPLARS => Record::Exemplars(count_exemplars(body)?),
        METADATA => Record::Metadata(decode_metadata_body(body)?.len()),
        HISTOGRAM_SAMPLES => Record::Histograms(decode_histograms(rec)?),
        FLOAT_HISTOGRAM_SAMPLES => Record::FloatHistograms(decode_float_histograms(rec)?),
        other => Record::Other(other),
    })
}

fn expect_type(rec: &[u8], typ: u8) -> DecodeResult<&[u8]> {
    match rec.first() {
        Some(&t) if t == typ => Ok(&rec[1..]),
        Some(&t) => err(format!("record type {t}, expected {typ}")),
        None => err("empty record"),
    }
}

fn decode_series_body(body: &[u8]) -> DecodeResult<Vec<RefSeries>> {
    let mut d = Dec { b: body };
    let mut out = Vec::new();
    while !d.is_empty() {
        let series_ref = d.be64()?;
        let labels = d.labels()?;
        out.push(RefSeries { series_ref, labels });
    }
    Ok(out)
}

fn decode_samples_body(body: &[u8]) -> DecodeResult<Vec<RefSample>> {
    let mut d = Dec { b: body };
    let mut out = Vec::new();
    if d.is_empty() {
        return Ok(out);
    }
    let base_ref = d.be64()? as i64;
    let base_t = d.be64()? as i64;
    while !d.is_empty() {
        let dref = d.varint()?;
        let dt = d.varint()?;
        let v = f64::from_bits(d.be64()?);
        out.push(RefSample {
            series_ref: base_ref.wrapping_add(dref) as u64,
            t: base_t.wrapping_add(dt),
            v,
        });
    }
    Ok(out)
}

fn decode_tombstones_body(body: &[u8]) -> DecodeResult<Vec<Stone>> {
    let mut d = Dec { b: body };
    let mut out = Vec::new();
    while !d.is_empty() {
        let series_ref = d.be64()?;
        let mint = d.varint()?;
        let maxt = d.varint()?;
        out.push(Stone {
            series_ref,
            mint,
            maxt,
        });
    }
    Ok(out)
}

fn count_exemplars(body: &[u8]) -> DecodeResult<usize> {
    let mut d = Dec { b: body };
    if d.is_empty() {
        return Ok(0);
    }
    d.be64()?;
    d.be64()?;
    let mut n = 0;
    while !d.is_empty() {
        d.varint()?;
        d.varint()?;
        d.be64()?;
        d.skip_labels()?;
        n += 1;
    }
    Ok(n)
}

/// Decodes a series record.
pub fn decode_series(rec: &[u8]) -> DecodeResult<Vec<RefSeries>> {
    decode_series_body(expect_type(rec, SERIES)?)
}

/// Decodes a samples record.
pub fn decode_samples(rec: &[u8]) -> DecodeResult<Vec<RefSample>> {
    decode_samples_body(expect_type(rec, SAMPLES)?)
}

/// Decodes a tombstones record.
pub fn decode_tombstones(rec: &[u8]) -> DecodeResult<Vec<Stone>> {
    decode_tombstones_body(expect_type(rec, TOMBSTONES)?)
}

/// Decodes an exemplars record.
pub fn decode_exemplars(rec: &[u8]) -> DecodeResult<Vec<RefExemplar>> {
    let mut d = Dec {
        b: expect_type(rec, EXEMPLARS)?,
    };
    let mut out = Vec::new();
    if d.is_empty() {
        return Ok(out);
    }
    let base_ref = d.be64()? as i64;
    let base_t = d.be64()? as i64;
    while !d.is_empty() {
        let dref = d.varint()?;
        let dt = d.varint()?;
        let v = f64::from_bits(d.be64()?);
        let labels = d.labels()?;
        out.push(RefExemplar {
            series_ref: base_ref.wrapping_add(dref) as u64,
            t: base_t.wrapping_add(dt),
            v,
            labels,
        });
    }
    Ok(out)
}

fn decode_metadata_body(body: &[u8]) -> DecodeResult<Vec<RefMetadata>> {
    let mut d = Dec { b: body };
    let mut out = Vec::new();
    while !d.is_empty() {
        let series_ref = d.uvarint()?;
        let metric_type = d.byte()?;
        let fields = d.uvarint()?;
        let (mut unit, mut help) = (String::new(), String::new());
        // Unknown fields are skipped: a newer writer may add some.
        for _ in 0..fields {
            let name = d.bytes_str()?;
            let value = d.string()?;
            match name {
                b"UNIT" => unit = value,
                b"HELP" => help = value,
                _ => {}
            }
        }
        out.push(RefMetadata {
            series_ref,
            metric_type,
            unit,
            help,
        });
    }
    Ok(out)
}

/// Decodes a metadata record.
pub fn decode_metadata(rec: &[u8]) -> DecodeResult<Vec<RefMetadata>> {
    decode_metadata_body(expect_type(rec, METADATA)?)
}

/// Outcome of [`filter_histograms`].
pub(crate) struct HistogramFilter {
    pub total: usize,
    pub kept: usize,
    /// The re-encoded record, `None` when nothing was kept.
    pub record: Option<Vec<u8>>,
}

/// Keeps the histogram samples (record type 7 or 8) with `t >= mint`.
///
/// The head does not decode histograms, so the checkpoint does not either:
/// it walks each entry's body only to find where it ends, and copies the
/// kept bodies verbatim behind re-based ref/time deltas.
pub(crate) fn filter_histograms(rec: &[u8], mint: i64) -> DecodeResult<HistogramFilter> {
    let typ = match rec.first() {
        Some(&t @ (HISTOGRAM_SAMPLES | FLOAT_HISTOGRAM_SAMPLES)) => t,
        _ => return err("not a histogram record"),
    };
    let mut d = Dec { b: &rec[1..] };
    let mut entries: Vec<(u64, i64, &[u8])> = Vec::new();
    let mut total = 0;
    if !d.is_empty() {
        let base_ref = d.be64()? as i64;
        let base_t = d.be64()? as i64;
        while !d.is_empty() {
            let series_ref = base_ref.wrapping_add(d.varint()?) as u64;
            let t = base_t.wrapping_add(d.varint()?);
            let start = d.b;
            skip_histogram_body(&mut d, typ == FLOAT_HISTOGRAM_SAMPLES)?;
            let body = &start[..start.len() - d.b.len()];
            total += 1;
            if t >= mint {
                entries.push((series_ref, t, body));
            }
        }
    }
    let kept = entries.len();
    let record = entries.first().map(|&(first_ref, first_t, _)| {
        let mut buf = vec![typ];
        put_be64(&mut buf, first_ref);
        put_be64(&mut buf, first_t as u64);
        for (r, t, body) in &entries {
            put_varint(&mut buf, (*r as i64).wrapping_sub(first_ref as i64));
            put_varint(&mut buf, t.wrapping_sub(first_t));
            buf.extend_from_slice(body);
        }
        buf
    });
    Ok(HistogramFilter {
        total,
        kept,
        record,
    })
}

/// Skips one histogram body: counter-reset hint, schema, zero threshold,
/// zero count, count, sum, positive and negative spans, positive and
/// negative buckets. Integer histograms use uvarint counts and varint
/// bucket deltas; float histograms use f64 for both.
fn skip_histogram_body(d: &mut Dec<'_>, float: bool) -> DecodeResult<()> {
    d.byte()?;
    d.varint()?;
    d.be64()?;
    if float {
        d.be64()?;
        d.be64()?;
    } else {
        d.uvarint()?;
        d.uvarint()?;
    }
    d.be64()?;
    for _ in 0..2 {
        let spans = d.uvarint()?;
        for _ in 0..spans {
            d.varint()?;
            d.uvarint()?;
        }
    }
    for _ in 0..2 {
        let buckets = d.uvarint()?;
        for _ in 0..buckets {
            if float {
                d.be64()?;
            } else {
                d.varint()?;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Native histogram samples (types 7 and 8).

/// One native histogram sample of a histogram record: type 7 holds integer
/// histograms ([`Histogram`]), type 8 float ones ([`FloatHistogram`]).
/// `hint` is the sample's counter reset hint as Prometheus numbers it
/// (0 unknown, 1 counter reset, 2 not a counter reset, 3 gauge): the
/// chunk samples go into depends on it (gauge histograms are appended as
/// gauges).
#[derive(Clone, Debug, PartialEq)]
pub struct RefHistogramSample<H> {
    pub series_ref: u64,
    pub t: i64,
    pub hint: u8,
    pub h: H,
}

/// The counter reset hint "gauge histogram" (Prometheus `histogram.GaugeType`).
pub const HINT_GAUGE: u8 = 3;

fn put_spans(buf: &mut Vec<u8>, spans: &[Span]) {
    put_uvarint(buf, spans.len() as u64);
    for s in spans {
        put_varint(buf, i64::from(s.offset));
        put_uvarint(buf, u64::from(s.length));
    }
}

fn put_histogram_header<H>(buf: &mut Vec<u8>, typ: u8, hs: &[RefHistogramSample<H>]) {
    buf.push(typ);
    if let Some(first) = hs.first() {
        put_be64(buf, first.series_ref);
        put_be64(buf, first.t as u64);
    }
}

fn put_histogram_deltas<H>(
    buf: &mut Vec<u8>,
    first: &RefHistogramSample<H>,
    h: &RefHistogramSample<H>,
) {
    put_varint(
        buf,
        (h.series_ref as i64).wrapping_sub(first.series_ref as i64),
    );
    put_varint(buf, h.t.wrapping_sub(first.t));
    buf.push(h.hint);
}

/// Appends a histogram samples record (type 7).
pub fn encode_histograms(hs: &[RefHistogramSample<Histogram>], buf: &mut Vec<u8>) {
    put_histogram_header(buf, HISTOGRAM_SAMPLES, hs);
    let Some(first) = hs.first() else {
        return;
    };
    for s in hs {
        put_histogram_deltas(buf, first, s);
        let h = &s.h;
        put_varint(buf, i64::from(h.schema));
        put_be64(buf, h.zero_threshold.to_bits());
        put_uvarint(buf, h.zero_count);
        put_uvarint(buf, h.count);
        put_be64(buf, h.sum.to_bits());
        put_spans(buf, &h.positive_spans);
        put_spans(buf, &h.negative_spans);
        for bs in [&h.positive_buckets, &h.negative_buckets] {
            put_uvarint(buf, bs.len() as u64);
            for &b in bs {
                put_varint(buf, b);
            }
        }
    }
}

/// Appends a float histogram samples record (type 8).
pub fn encode_float_histograms(hs: &[RefHistogramSample<FloatHistogram>], buf: &mut Vec<u8>) {
    put_histogram_header(buf, FLOAT_HISTOGRAM_SAMPLES, hs);
    let Some(first) = hs.first() else {
        return;
    };
    for s in hs {
        put_histogram_deltas(buf, first, s);
        let h = &s.h;
        put_varint(buf, i64::from(h.schema));
        put_be64(buf, h.zero_threshold.to_bits());
        put_be64(buf, h.zero_count.to_bits());
        put_be64(buf, h.count.to_bits());
        put_be64(buf, h.sum.to_bits());
        put_spans(buf, &h.positive_spans);
        put_spans(buf, &h.negative_spans);
        for bs in [&h.positive_buckets, &h.negative_buckets] {
            put_uvarint(buf, bs.len() as u64);
            for &b in bs {
                put_be64(buf, b.to_bits());
            }
        }
    }
}

fn dec_spans(d: &mut Dec<'_>) -> DecodeResult<Vec<Span>> {
    let n = d.uvarint()?;
    let mut out = Vec::new();
    for _ in 0..n {
        let offset = i32::try_from(d.varint()?)
            .map_err(|_| DecodeError("histogram span offset out of range".into()))?;
        let length = u32::try_from(d.uvarint()?)
            .map_err(|_| DecodeError("histogram span length out of range".into()))?;
        out.push(Span { offset, length });
    }
    Ok(out)
}

/// Decodes a record of type `typ`, each body with `body`.
fn decode_histogram_record<H>(
    rec: &[u8],
    typ: u8,
    mut body: impl FnMut(&mut Dec<'_>) -> DecodeResult<H>,
) -> DecodeResult<Vec<RefHistogramSample<H>>> {
    let mut d = Dec {
        b: expect_type(rec, typ)?,
    };
    let mut out = Vec::new();
    if d.is_empty() {
        return Ok(out);
    }
    let base_ref = d.be64()? as i64;
    let base_t = d.be64()? as i64;
    while !d.is_empty() {
        let series_ref = base_ref.wrapping_add(d.varint()?) as u64;
        let t = base_t.wrapping_add(d.varint()?);
        let hint = d.byte()?;
        let h = body(&mut d)
            .map_err(|e| DecodeError(format!("histogram {} of the record: {e}", out.len())))?;
        out.push(RefHistogramSample {
            series_ref,
            t,
            hint,
            h,
        });
    }
    Ok(out)
}

fn dec_schema(d: &mut Dec<'_>) -> DecodeResult<i32> {
    i32::try_from(d.varint()?).map_err(|_| DecodeError("histogram schema out of range".into()))
}

/// Decodes a histogram samples record (type 7).
pub fn decode_histograms(rec: &[u8]) -> DecodeResult<Vec<RefHistogramSample<Histogram>>> {
    decode_histogram_record(rec, HISTOGRAM_SAMPLES, |d| {
        let schema = dec_schema(d)?;
        let zero_threshold = f64::from_bits(d.be64()?);
        let zero_count = d.uvarint()?;
        let count = d.uvarint()?;
        let sum = f64::from_bits(d.be64()?);
        let positive_spans = dec_spans(d)?;
        let negative_spans = dec_spans(d)?;
        let mut buckets = [Vec::new(), Vec::new()];
        for bs in &mut buckets {
            for _ in 0..d.uvarint()? {
                bs.push(d.varint()?);
            }
        }
        let [positive_buckets, negative_buckets] = buckets;
        Ok(Histogram {
            schema,
            zero_threshold,
            zero_count,
            count,
            sum,
            positive_spans,
            negative_spans,
            positive_buckets,
            negative_buckets,
        })
    })
}

/// Decodes a float histogram samples record (type 8).
pub fn decode_float_histograms(
    rec: &[u8],
) -> DecodeResult<Vec<RefHistogramSample<FloatHistogram>>> {
    decode_histogram_record(rec, FLOAT_HISTOGRAM_SAMPLES, |d| {
        let schema = dec_schema(d)?;
        let zero_threshold = f64::from_bits(d.be64()?);
        let zero_count = f64::from_bits(d.be64()?);
        let count = f64::from_bits(d.be64()?);
        let sum = f64::from_bits(d.be64()?);
        let positive_spans = dec_spans(d)?;
        let negative_spans = dec_spans(d)?;
        let mut buckets = [Vec::new(), Vec::new()];
        for bs in &mut buckets {
            for _ in 0..d.uvarint()? {
                bs.push(f64::from_bits(d.be64()?));
            }
        }
        let [positive_buckets, negative_buckets] = buckets;
        Ok(FloatHistogram {
            schema,
            zero_threshold,
            zero_count,
            count,
            sum,
            positive_spans,
            negative_spans,
            positive_buckets,
            negative_buckets,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lbls(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn series_round_trip() {
        let series = vec![
            RefSeries {
                series_ref: 1,
                labels: lbls(&[("__name__", "up"), ("job", "node")]),
            },
            RefSeries {
                series_ref: u64::MAX,
                labels: lbls(&[("a", "ü\u{1F600}"), ("b", &"x".repeat(300))]),
            },
            RefSeries {
                series_ref: 7,
                labels: Labels::empty(),
            },
        ];
        let mut buf = Vec::new();
        encode_series(&series, &mut buf);
        assert_eq!(buf[0], SERIES);
        assert_eq!(&buf[1..9], &1u64.to_be_bytes());
        assert_eq!(decode(&buf).unwrap(), Record::Series(series.clone()));
        assert_eq!(decode_series(&buf).unwrap(), series);
    }

    #[test]
    fn samples_golden_bytes_negative_deltas_and_nan() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let samples = [
            RefSample {
                series_ref: 5,
                t: 1000,
                v: 1.0,
            },
            RefSample {
                series_ref: 3,
                t: 900,
                v: stale,
            },
        ];
        let mut buf = Vec::new();
        encode_samples(&samples, &mut buf);
        let mut want = vec![2u8];
        want.extend_from_slice(&5u64.to_be_bytes());
        want.extend_from_slice(&1000i64.to_be_bytes());
        want.extend_from_slice(&[0, 0]);
        want.extend_from_slice(&1.0f64.to_bits().to_be_bytes());
        // ref delta -2 zigzags to 3; time delta -100 zigzags to 199.
        want.extend_from_slice(&[0x03, 0xc7, 0x01]);
        want.extend_from_slice(&0x7ff0_0000_0000_0002u64.to_be_bytes());
        assert_eq!(buf, want);

        let Record::Samples(got) = decode(&buf).unwrap() else {
            panic!("not samples")
        };
        assert_eq!(got.len(), 2);
        for (g, w) in got.iter().zip(&samples) {
            assert_eq!(
                (g.series_ref, g.t, g.v.to_bits()),
                (w.series_ref, w.t, w.v.to_bits())
            );
        }
    }

    #[test]
    fn samples_extremes_wrap_like_go() {
        let samples = [
            RefSample {
                series_ref: u64::MAX,
                t: i64::MIN,
                v: -0.0,
            },
            RefSample {
                series_ref: 0,
                t: i64::MAX,
                v: f64::NAN,
            },
            RefSample {
                series_ref: 1 << 63,
                t: 0,
                v: f64::NEG_INFINITY,
            },
        ];
        let mut buf = Vec::new();
        encode_samples(&samples, &mut buf);
        let got = decode_samples(&buf).unwrap();
        for (g, w) in got.iter().zip(&samples) {
            assert_eq!(
                (g.series_ref, g.t, g.v.to_bits()),
                (w.series_ref, w.t, w.v.to_bits())
            );
        }
        let mut empty = Vec::new();
        encode_samples(&[], &mut empty);
        assert_eq!(empty, vec![SAMPLES]);
        assert_eq!(decode(&empty).unwrap(), Record::Samples(vec![]));
    }

    #[test]
    fn tombstones_round_trip() {
        let stones = vec![
            Stone {
                series_ref: 9,
                mint: -5,
                maxt: 10,
            },
            Stone {
                series_ref: 9,
                mint: i64::MIN,
                maxt: i64::MAX,
            },
        ];
        let mut buf = Vec::new();
        encode_tombstones(&stones, &mut buf);
        assert_eq!(decode(&buf).unwrap(), Record::Tombstones(stones));
    }

    #[test]
    fn exemplars_and_metadata() {
        let ex = vec![
            RefExemplar {
                series_ref: 4,
                t: 10,
                v: 0.5,
                labels: lbls(&[("trace_id", "abc")]),
            },
            RefExemplar {
                series_ref: 2,
                t: 5,
                v: 1.5,
                labels: Labels::empty(),
            },
        ];
        let mut buf = Vec::new();
        encode_exemplars(&ex, &mut buf);
        assert_eq!(decode(&buf).unwrap(), Record::Exemplars(2));
        assert_eq!(decode_exemplars(&buf).unwrap(), ex);

        let md = vec![RefMetadata {
            series_ref: 300,
            metric_type: 1,
            unit: "seconds".into(),
            help: "Help text.".into(),
        }];
        let mut buf = Vec::new();
        encode_metadata(&md, &mut buf);
        assert_eq!(decode(&buf).unwrap(), Record::Metadata(1));
        assert_eq!(decode_metadata(&buf).unwrap(), md);
    }

    #[test]
    fn other_types_and_errors() {
        assert_eq!(decode(&[MMAP_MARKERS, 1, 2]).unwrap(), Record::Other(5));
        // A truncated histogram record.
        assert!(decode(&[HISTOGRAM_SAMPLES, 1, 2]).is_err());
        assert_eq!(
            decode(&[FLOAT_HISTOGRAM_SAMPLES]).unwrap(),
            Record::FloatHistograms(vec![])
        );
        assert_eq!(decode(&[200]).unwrap(), Record::Other(200));
        assert!(decode(&[]).is_err());
        // Truncated series, samples with a dangling byte, overlong varint.
        assert!(decode(&[SERIES, 0, 0, 0]).is_err());
        let mut buf = Vec::new();
        encode_samples(
            &[RefSample {
                series_ref: 1,
                t: 2,
                v: 3.0,
            }],
            &mut buf,
        );
        buf.push(0x80);
        assert!(decode(&buf).is_err());
        let mut bad = vec![TOMBSTONES];
        bad.extend_from_slice(&[0; 8]);
        bad.extend_from_slice(&[0xff; 10]);
        assert!(decode(&bad).is_err());
        // A label count far beyond the record is rejected before allocating.
        let mut huge = vec![SERIES];
        huge.extend_from_slice(&[0; 8]);
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(decode(&huge).is_err());
    }

    #[test]
    fn unsorted_labels_are_normalised() {
        // Hand-built record with labels out of order and an empty value.
        let mut buf = vec![SERIES];
        put_be64(&mut buf, 1);
        put_uvarint(&mut buf, 3);
        for (n, v) in [("b", "2"), ("a", "1"), ("c", "")] {
            put_str(&mut buf, n);
            put_str(&mut buf, v);
        }
        let s = decode_series(&buf).unwrap();
        assert_eq!(s[0].labels, lbls(&[("a", "1"), ("b", "2")]));
    }

    fn int_histogram_entry(buf: &mut Vec<u8>, dref: i64, dt: i64) {
        put_varint(buf, dref);
        put_varint(buf, dt);
        buf.push(0); // counter reset hint
        put_varint(buf, 3); // schema
        put_be64(buf, 0.001f64.to_bits());
        put_uvarint(buf, 2); // zero count
        put_uvarint(buf, 10); // count
        put_be64(buf, 12.5f64.to_bits());
        put_uvarint(buf, 1); // positive spans
        put_varint(buf, -2);
        put_uvarint(buf, 2);
        put_uvarint(buf, 0); // negative spans
        put_uvarint(buf, 2); // positive buckets
        put_varint(buf, 3);
        put_varint(buf, -1);
        put_uvarint(buf, 0); // negative buckets
    }

    #[test]
    fn histogram_filter_rebases_kept_entries() {
        let mut rec = vec![HISTOGRAM_SAMPLES];
        put_be64(&mut rec, 10);
        put_be64(&mut rec, 1000);
        int_histogram_entry(&mut rec, 0, 0);
        int_histogram_entry(&mut rec, 1, 500);
        int_histogram_entry(&mut rec, 2, 1000);
        let f = filter_histograms(&rec, 1500).unwrap();
        assert_eq!((f.total, f.kept), (3, 2));
        let mut want = vec![HISTOGRAM_SAMPLES];
        put_be64(&mut want, 11);
        put_be64(&mut want, 1500);
        int_histogram_entry(&mut want, 0, 0);
        int_histogram_entry(&mut want, 1, 500);
        assert_eq!(f.record.unwrap(), want);
        let none = filter_histograms(&rec, 5000).unwrap();
        assert!(none.record.is_none());
        assert!(filter_histograms(&rec[..rec.len() - 1], 0).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
            for t in 1..=8u8 {
                let mut rec = bytes.clone();
                if rec.is_empty() { rec.push(t) } else { rec[0] = t }
                let _ = decode(&rec);
                let _ = decode_exemplars(&rec);
                let _ = decode_metadata(&rec);
                let _ = filter_histograms(&rec, 0);
                let _ = decode_histograms(&rec);
                let _ = decode_float_histograms(&rec);
            }
        }

        #[test]
        fn histograms_round_trip(hs in proptest::collection::vec(
            (any::<u64>(), any::<i64>(), 0u8..4, -4i32..=8, any::<u64>(), any::<i64>(),
             proptest::collection::vec((any::<i32>(), any::<u32>()), 0..4),
             proptest::collection::vec(any::<i64>(), 0..6)), 0..20)) {
            let ints: Vec<RefHistogramSample<Histogram>> = hs.iter()
                .map(|(r, t, hint, schema, c, x, spans, buckets)| RefHistogramSample {
                    series_ref: *r,
                    t: *t,
                    hint: *hint,
                    h: Histogram {
                        schema: *schema,
                        zero_threshold: f64::from_bits(*c),
                        zero_count: *c,
                        count: c.wrapping_mul(3),
                        sum: f64::from_bits(*x as u64),
                        positive_spans: spans.iter().map(|&(offset, length)| Span { offset, length }).collect(),
                        negative_spans: spans.iter().rev().map(|&(offset, length)| Span { offset, length }).collect(),
                        positive_buckets: buckets.clone(),
                        negative_buckets: buckets.iter().map(|b| b.wrapping_neg()).collect(),
                    },
                })
                .collect();
            let mut buf = Vec::new();
            encode_histograms(&ints, &mut buf);
            let got = decode_histograms(&buf).unwrap();
            prop_assert_eq!(got.len(), ints.len());
            for (g, w) in got.iter().zip(&ints) {
                prop_assert_eq!((g.series_ref, g.t, g.hint), (w.series_ref, w.t, w.hint));
                prop_assert_eq!(g.h.zero_threshold.to_bits(), w.h.zero_threshold.to_bits());
                prop_assert_eq!(g.h.sum.to_bits(), w.h.sum.to_bits());
                prop_assert_eq!((&g.h.positive_spans, &g.h.negative_spans), (&w.h.positive_spans, &w.h.negative_spans));
                prop_assert_eq!((&g.h.positive_buckets, &g.h.negative_buckets), (&w.h.positive_buckets, &w.h.negative_buckets));
                prop_assert_eq!((g.h.schema, g.h.zero_count, g.h.count), (w.h.schema, w.h.zero_count, w.h.count));
            }
            // The same samples as float histograms.
            let floats: Vec<RefHistogramSample<FloatHistogram>> = ints.iter()
                .map(|s| RefHistogramSample { series_ref: s.series_ref, t: s.t, hint: s.hint, h: s.h.to_float() })
                .collect();
            let mut buf = Vec::new();
            encode_float_histograms(&floats, &mut buf);
            let got = decode_float_histograms(&buf).unwrap();
            prop_assert_eq!(got.len(), floats.len());
            for (g, w) in got.iter().zip(&floats) {
                prop_assert_eq!((g.series_ref, g.t, g.hint), (w.series_ref, w.t, w.hint));
                prop_assert_eq!(g.h.count.to_bits(), w.h.count.to_bits());
                prop_assert_eq!(&g.h.positive_spans, &w.h.positive_spans);
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                prop_assert_eq!(bits(&g.h.positive_buckets), bits(&w.h.positive_buckets));
                prop_assert_eq!(bits(&g.h.negative_buckets), bits(&w.h.negative_buckets));
            }
            // The checkpoint's filter walks these bodies to the same ends.
            if !ints.is_empty() {
                prop_assert_eq!(filter_histograms(&buf, i64::MIN).unwrap().kept, ints.len());
            }
        }

        #[test]
        fn samples_round_trip(samples in proptest::collection::vec(
            (any::<u64>(), any::<i64>(), any::<u64>()), 0..50)) {
            let samples: Vec<RefSample> = samples.into_iter()
                .map(|(r, t, v)| RefSample { series_ref: r, t, v: f64::from_bits(v) })
                .collect();
            let mut buf = Vec::new();
            encode_samples(&samples, &mut buf);
            let got = decode_samples(&buf).unwrap();
            prop_assert_eq!(got.len(), samples.len());
            for (g, w) in got.iter().zip(&samples) {
                prop_assert_eq!((g.series_ref, g.t, g.v.to_bits()), (w.series_ref, w.t, w.v.to_bits()));
            }
        }
    }
}
