//! What a query gets back: series with their chunks, and sample iteration.
//!
//! Every reader (a persisted [`crate::block::Block`], the in-memory
//! [`crate::head::Head`], the merged [`crate::db::Db`]) answers a selection
//! with [`ChunkSeries`]: a label set, the chunks that overlap the requested
//! time range, and the deleted intervals (tombstones) that still apply.
//! Chunks are handed out, not samples, because the two main consumers want
//! chunks: remote read's `STREAMED_XOR_CHUNKS` and the StoreAPI ship them as
//! they are. The PromQL engine calls [`ChunkSeries::samples`].
//!
//! Chunk bytes are shared, never copied per reader: a block chunk is an
//! [`Arc`] of the block plus a reference into its memory-mapped segment file;
//! a full head chunk is an [`Arc`] of its memory-mapped `chunks_head/` file
//! plus an offset (or an `Arc<[u8]>` for heads without files), and the open
//! head chunk is an `Arc<[u8]>` snapshot taken at selection time, so appends
//! that happen afterwards cannot change what the query sees.

use std::sync::Arc;

use crate::chunkenc::histogram::{
    counter_reset_header, CounterResetHeader, FloatHistogram, FloatHistogramIter, HistogramIter,
};
use crate::chunkenc::{Encoding, XorIter};
use crate::error::Result;
use crate::labels::Labels;
use crate::tombstones::{is_deleted, Interval};

/// Where a chunk's bytes live.
#[derive(Clone)]
pub enum ChunkBytes {
    /// A snapshot taken from the head (or built in memory).
    Owned(Arc<[u8]>),
    /// A chunk in a persisted block, read through its memory map on use.
    Block(Arc<crate::block::Block>, u64),
    /// A full head chunk in a `chunks_head/` file, at this offset.
    HeadFile(Arc<crate::head_chunks::HeadChunkFile>, u32),
}

impl std::fmt::Debug for ChunkBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkBytes::Owned(b) => write!(f, "Owned({} bytes)", b.len()),
            ChunkBytes::Block(b, r) => write!(f, "Block({}, {r:#x})", b.meta().ulid),
            ChunkBytes::HeadFile(h, off) => write!(f, "HeadFile({h:?}, {off})"),
        }
    }
}

/// One chunk of a series, with its closed time range `[min_time, max_time]`.
#[derive(Clone, Debug)]
pub struct ChunkData {
    pub min_time: i64,
    pub max_time: i64,
    pub encoding: Encoding,
    pub bytes: ChunkBytes,
}

impl ChunkData {
    /// The raw chunk payload (what Prometheus stores after the encoding byte).
    pub fn with_bytes<R>(&self, f: impl FnOnce(Encoding, &[u8]) -> R) -> Result<R> {
        match &self.bytes {
            ChunkBytes::Owned(b) => Ok(f(self.encoding, b)),
            ChunkBytes::Block(block, r) => {
                let (enc, data) = block.chunk(*r)?;
                Ok(f(enc, data))
            }
            ChunkBytes::HeadFile(h, off) => {
                let (enc, data) = h.chunk_at(*off)?;
                Ok(f(enc, data))
            }
        }
    }

    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.min_time <= maxt && self.max_time >= mint
    }
}

/// A series as a reader returns it.
#[derive(Clone, Debug)]
pub struct ChunkSeries {
    pub labels: Labels,
    /// Sorted by `min_time`. May overlap when blocks overlap.
    pub chunks: Vec<ChunkData>,
    /// Deleted intervals, sorted and disjoint.
    pub deleted: Vec<Interval>,
}

impl ChunkSeries {
    /// The float samples in `[mint, maxt]`, sorted by time, one per timestamp,
    /// tombstones applied. Overlapping chunks (from overlapping blocks) are
    /// merged; on equal timestamps the sample from the later chunk wins.
    pub fn samples(&self, mint: i64, maxt: i64) -> Result<Vec<(i64, f64)>> {
        let mut out: Vec<(i64, f64)> = Vec::new();
        let mut sorted = true;
        for c in &self.chunks {
            if !c.overlaps(mint, maxt) {
                continue;
            }
            let before = out.len();
            c.with_bytes(|enc, data| {
                if enc == Encoding::Xor {
                    let mut it = XorIter::new(data);
                    if let Some(first) = it.seek(mint) {
                        let mut s = Some(first);
                        while let Some((t, v)) = s {
                            if t > maxt {
                                break;
                            }
                            out.push((t, v));
                            s = it.next();
                        }
                    }
                }
                // Histogram chunks: see `float_histograms`.
            })?;
            if before > 0 && out.len() > before && out[before].0 <= out[before - 1].0 {
                sorted = false;
            }
        }
        if !sorted {
            // Stable sort keeps chunk order among equal timestamps; keep the last.
            out.sort_by_key(|s| s.0);
            let mut dedup: Vec<(i64, f64)> = Vec::with_capacity(out.len());
            for s in out {
                match dedup.last_mut() {
                    Some(l) if l.0 == s.0 => *l = s,
                    _ => dedup.push(s),
                }
            }
            out = dedup;
        }
        if !self.deleted.is_empty() {
            out.retain(|(t, _)| !is_deleted(&self.deleted, *t));
        }
        Ok(out)
    }
}

/// What a chunk tells about a counter reset right before one of its
/// histogram samples, derived exactly as Prometheus 2.42's chunk iterators
/// derive `CounterResetHint` (`chunkenc.counterResetHint`): every sample of a
/// gauge chunk is a gauge; a sample after the first in a counter chunk is
/// never a reset (chunks are cut on resets); the first sample is a reset
/// only when the chunk header says so, else unknown, because the previous
/// chunk may be gone (retention, another block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetHint {
    Unknown,
    CounterReset,
    NotCounterReset,
    Gauge,
}

impl ResetHint {
    /// The hint of the sample at position `index` (0-based) of a chunk
    /// with counter reset header `header`.
    pub fn for_position(header: Option<CounterResetHeader>, index: usize) -> ResetHint {
        match header {
            Some(CounterResetHeader::Gauge) => ResetHint::Gauge,
            _ if index > 0 => ResetHint::NotCounterReset,
            Some(CounterResetHeader::CounterReset) => ResetHint::CounterReset,
            _ => ResetHint::Unknown,
        }
    }
}

/// One native histogram sample as a query reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSample {
    pub t: i64,
    pub h: FloatHistogram,
    pub hint: ResetHint,
}

impl HistogramSample {
    /// A staleness marker: Prometheus marks a histogram series stale with a
    /// sample whose sum is the stale NaN (and nothing else).
    pub fn is_stale(&self) -> bool {
        self.h.sum.to_bits() == crate::chunkenc::histogram::STALE_NAN_BITS
    }
}

impl ChunkSeries {
    /// The native histogram samples in `[mint, maxt]` (chunks of encodings 2
    /// and 3; integer histograms converted with [`Histogram::to_float`]),
    /// sorted by time, one per timestamp, tombstones applied, merged as
    /// [`ChunkSeries::samples`] merges floats. XOR chunks are skipped.
    /// A chunk that fails to decode is an error.
    ///
    /// [`Histogram::to_float`]: crate::chunkenc::histogram::Histogram::to_float
    pub fn float_histograms(&self, mint: i64, maxt: i64) -> Result<Vec<(i64, FloatHistogram)>> {
        Ok(self
            .histogram_samples(mint, maxt)?
            .into_iter()
            .map(|s| (s.t, s.h))
            .collect())
    }

    /// As [`ChunkSeries::float_histograms`], each sample with the counter
    /// reset hint its chunk gives it ([`ResetHint::for_position`]; the
    /// position counts from the chunk's start, not from `mint`).
    pub fn histogram_samples(&self, mint: i64, maxt: i64) -> Result<Vec<HistogramSample>> {
        let mut out: Vec<HistogramSample> = Vec::new();
        for c in &self.chunks {
            if !c.overlaps(mint, maxt) {
                continue;
            }
            let err = c.with_bytes(|enc, data| {
                decode_histogram_chunk(enc, data, mint, maxt, &mut out).err()
            })?;
            if let Some(e) = err {
                return Err(crate::Error::Invalid(format!(
                    "{}: histogram chunk [{}, {}]: {e}",
                    self.labels, c.min_time, c.max_time
                )));
            }
        }
        // Stable: among equal timestamps the later chunk's sample wins.
        out.sort_by_key(|s| s.t);
        let mut dedup: Vec<HistogramSample> = Vec::with_capacity(out.len());
        for s in out {
            match dedup.last_mut() {
                Some(l) if l.t == s.t => *l = s,
                _ => dedup.push(s),
            }
        }
        if !self.deleted.is_empty() {
            dedup.retain(|s| !is_deleted(&self.deleted, s.t));
        }
        Ok(dedup)
    }
}

/// Appends the native histogram samples in `[mint, maxt]` of one chunk of
/// encoding 2 (integer histograms, converted with [`Histogram::to_float`])
/// or 3 to `out`, each with its [`ResetHint`]; other encodings add nothing.
/// Shared by block/head reads and by StoreAPI clients that receive raw
/// chunk bytes. On a decoding error the samples before it stay in `out`.
///
/// [`Histogram::to_float`]: crate::chunkenc::histogram::Histogram::to_float
pub fn decode_histogram_chunk(
    enc: Encoding,
    data: &[u8],
    mint: i64,
    maxt: i64,
    out: &mut Vec<HistogramSample>,
) -> std::result::Result<(), crate::chunkenc::ChunkError> {
    let header = counter_reset_header(data);
    let mut keep = |i: usize, t: i64, h: FloatHistogram| {
        if (mint..=maxt).contains(&t) {
            out.push(HistogramSample {
                t,
                h,
                hint: ResetHint::for_position(header, i),
            });
        }
    };
    let err = match enc {
        Encoding::Histogram => {
            let mut it = HistogramIter::new(data);
            for (i, (t, h)) in it.by_ref().enumerate() {
                keep(i, t, h.to_float());
            }
            it.err().cloned()
        }
        Encoding::FloatHistogram => {
            let mut it = FloatHistogramIter::new(data);
            for (i, (t, h)) in it.by_ref().enumerate() {
                keep(i, t, h);
            }
            it.err().cloned()
        }
        _ => None,
    };
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Merges per-source selections (each sorted by labels) into one list sorted
/// by labels, joining the chunks of equal label sets.
pub fn merge_series_sets(sets: Vec<Vec<ChunkSeries>>) -> Vec<ChunkSeries> {
    let mut all: Vec<ChunkSeries> = sets.into_iter().flatten().collect();
    // Stable: keeps source order (older blocks first, head last) among equals.
    all.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut out: Vec<ChunkSeries> = Vec::with_capacity(all.len());
    for s in all {
        match out.last_mut() {
            Some(last) if last.labels == s.labels => {
                last.chunks.extend(s.chunks);
                last.chunks.sort_by_key(|c| c.min_time);
                for iv in s.deleted {
                    crate::tombstones::add_interval(&mut last.deleted, iv);
                }
            }
            _ => out.push(s),
        }
    }
    out
}

/// Turns a list of samples into XOR chunks, cut every `max_samples` samples.
/// Used when rewriting series (compaction with tombstones applied).
pub fn samples_to_chunks(samples: &[(i64, f64)], max_samples: usize) -> Vec<ChunkData> {
    let mut out = Vec::new();
    for part in samples.chunks(max_samples.max(1)) {
        let mut c = crate::chunkenc::XorChunk::new();
        for &(t, v) in part {
            c.append(t, v);
        }
        out.push(ChunkData {
            min_time: part[0].0,
            max_time: part[part.len() - 1].0,
            encoding: Encoding::Xor,
            bytes: ChunkBytes::Owned(Arc::from(c.bytes())),
        });
    }
    out
}

/// Turns histogram samples into float histogram chunks (encoding 3; integer
/// histograms were converted on reading), cut every `max_samples` samples
/// and where a sample cannot join the chunk (counter reset, layout change,
/// a gauge after counters or back), each chunk's counter reset header set
/// from its first sample's hint. Used when rewriting series.
pub fn histograms_to_chunks(hs: &[HistogramSample], max_samples: usize) -> Vec<ChunkData> {
    use crate::chunkenc::histogram::FloatHistogramChunk;
    fn flush(out: &mut Vec<ChunkData>, c: &FloatHistogramChunk, mint: i64, maxt: i64) {
        if c.num_samples() > 0 {
            out.push(ChunkData {
                min_time: mint,
                max_time: maxt,
                encoding: Encoding::FloatHistogram,
                bytes: ChunkBytes::Owned(Arc::from(c.bytes())),
            });
        }
    }
    let mut out = Vec::new();
    let mut c = FloatHistogramChunk::new();
    let (mut mint, mut maxt) = (0, 0);
    for s in hs {
        let gauge = s.hint == ResetHint::Gauge;
        let full = c.num_samples() >= max_samples.max(1);
        let appended = !full
            && c.num_samples() > 0
            && if gauge {
                c.append_gauge(s.t, &s.h).is_ok()
            } else {
                c.append_recoding(s.t, &s.h).is_ok()
            };
        if appended {
            maxt = s.t;
            continue;
        }
        flush(&mut out, &c, mint, maxt);
        c = FloatHistogramChunk::new();
        let header = match s.hint {
            ResetHint::CounterReset => CounterResetHeader::CounterReset,
            ResetHint::NotCounterReset => CounterResetHeader::NotCounterReset,
            _ => CounterResetHeader::Unknown,
        };
        let ok = if gauge {
            c.append_gauge(s.t, &s.h)
        } else {
            c.append(s.t, &s.h)
                .map(|()| c.set_counter_reset_header(header))
        };
        if ok.is_err() {
            // Samples decoded from a chunk always fit an empty one; a
            // sample that does not is dropped rather than the series.
            tracing::warn!(
                t = s.t,
                "histogram sample does not fit an empty chunk; dropped"
            );
            c = FloatHistogramChunk::new();
            continue;
        }
        mint = s.t;
        maxt = s.t;
    }
    flush(&mut out, &c, mint, maxt);
    out
}
