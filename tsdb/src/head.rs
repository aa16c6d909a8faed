//! The head: the in-memory, writable part of the database.
//!
//! Main types:
//! - [`Head`]: every active series with its recent chunks, a postings index
//!   over them, and (optionally) the WAL that makes appends durable.
//! - [`Appender`]: a batch of samples; nothing is visible or durable until
//!   [`Appender::commit`], which writes the batch to the WAL *first* and only
//!   then applies it to memory. When `commit` returns `Ok`, the batch is in
//!   the operating system's page cache and survives `kill -9`.
//!   [`Appender::append`] returns the series ref; callers that append to the
//!   same series again (the scrape loop's cache) pass it to
//!   [`Appender::append_ref`], which skips hashing and comparing the labels.
//!
//! Append rules are Prometheus 2.42's (`tsdb/head_append.go`), because users
//! and remote-write senders rely on the exact errors:
//! - `t < min_valid_time` → [`Error::OutOfBounds`]; the window is
//!   `max(head_max_time - chunk_range/2, max time of the last persisted block)`.
//! - `t` older than the series' newest sample → [`Error::OutOfOrderSample`].
//! - same timestamp, different value (compared by bits) →
//!   [`Error::DuplicateSampleForTimestamp`]; the same value is accepted and
//!   dropped silently, as Prometheus does for federation's sake.
//! - checks run against committed data; a batch that itself goes backwards
//!   for one series has the older samples dropped at commit (counted).
//!
//! Chunk cutting also follows Prometheus exactly, because it decides the bytes
//! of the blocks we write (promtool writes its backfill blocks through a head
//! too): a new chunk starts at the chunk-range boundary, at the end time
//! predicted after 30 samples (`compute_chunk_end_time`) or at 240 samples.
//!
//! Native histograms ([`Appender::append_histogram`], [`HistogramValue`]):
//! validated as Prometheus' `ValidateHistogram`, under the same time rules
//! (a duplicate is a different histogram at the newest timestamp), held in
//! histogram chunks (encodings 2 and 3) that `SeriesData::append_histogram`
//! cuts as 2.42's `memSeries.appendHistogram` does: on a change of sample
//! kind, on the float rules above, on a counter reset and on a layout that
//! recoding cannot follow; new buckets recode the open chunk. The new
//! chunk's counter reset header records why it was cut, which is what
//! queries derive hints from. The WAL gets record types 7 and 8.
//!
//! Memory: a full chunk goes to the head chunk files (`chunks_head/`, see
//! [`crate::head_chunks`]) when the head has a [`ChunkDiskMapper`] (every
//! [`crate::db::Db`]); the series keeps its time range and file ref, and
//! readers get the bytes through the file's memory map. Heads without one
//! (backfill, read-only opens) keep full chunks as shared `Arc<[u8]>`.
//!
//! Concurrency: series creation takes the index write lock; everything else
//! takes per-series mutexes. A reader copies a series' chunk list under its
//! mutex (full chunks are immutable and shared, the open one is copied), so
//! an append can never tear what a query reads.
//!
//! Labels are interned: equal names and values across series share one
//! `Arc<str>`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::chunkenc::histogram::{
    AppendError, CounterResetHeader, FloatHistogram, FloatHistogramChunk, Histogram,
    HistogramChunk, Span,
};
use crate::chunkenc::{Encoding, XorChunk};
use crate::error::{Error, Result};
use crate::head_chunks::{ChunkDiskMapper, MmappedChunk};
use crate::index::postings::intersect;
use crate::labels::{Label, Labels, Matcher};
use crate::series::{ChunkBytes, ChunkData, ChunkSeries};
use crate::tombstones::{Interval, Tombstones};
use crate::wal::record::{self, RefHistogramSample, RefSample, RefSeries, Stone};
use crate::wal::Wal;

/// Two hours in milliseconds: Prometheus' default block and chunk range.
pub const DEFAULT_BLOCK_DURATION: i64 = 2 * 60 * 60 * 1000;
/// Target samples per chunk (Gorilla paper; Prometheus `samplesPerChunk`).
const SAMPLES_PER_CHUNK: usize = 120;

/// `(t / w) * w + w`: the end of the `w`-aligned range holding `t`.
/// Floors for negative `t` like Go's integer division does not; Prometheus
/// has the same truncation, so we keep it for identical chunk boundaries.
pub fn range_for_timestamp(t: i64, w: i64) -> i64 {
    (t / w) * w + w
}

/// Prometheus' estimate of where to end a chunk so that the remaining range
/// is split into chunks of about 120 samples.
fn compute_chunk_end_time(start: i64, cur: i64, max: i64) -> i64 {
    let n = (max - start) / ((cur - start + 1) * 4);
    if n <= 1 {
        return max;
    }
    start + (max - start) / n
}

/// Bytes reserved for a series' first chunk; later ones are sized from
/// the chunk before (see [`next_chunk_capacity`]).
const INITIAL_CHUNK_BYTES: usize = 128;

/// Capacity for the chunk after one of `len` bytes holding `samples`: its
/// size scaled to 120 samples plus 1/8 for variation, so that a series with
/// steady data gets a buffer that fits without doubling, instead of a
/// vector that grew 128 → 256 → 512 and is up to half empty. Chunk bytes
/// are the largest part of head memory.
fn next_chunk_capacity(len: usize, samples: usize) -> usize {
    if samples == 0 {
        return INITIAL_CHUNK_BYTES;
    }
    let expected = len * SAMPLES_PER_CHUNK / samples;
    (expected + expected / 8 + 8).clamp(32, 4096)
}

/// Where a closed chunk's bytes are.
enum ChunkLoc {
    /// In memory, shared with readers: heads without a data directory
    /// (backfill, tests), or a chunk whose write to `chunks_head/` failed.
    Mem(Arc<[u8]>),
    /// In a head chunk file ([`ChunkDiskMapper`] ref); read through its map.
    Disk(u64),
}

/// A closed (full) chunk. Immutable.
struct ClosedChunk {
    min_time: i64,
    max_time: i64,
    encoding: Encoding,
    loc: ChunkLoc,
}

/// A native histogram sample for the head: integer counts (chunk encoding
/// 2) or float counts (encoding 3).
#[derive(Clone, Debug, PartialEq)]
pub enum HistogramValue {
    Int(Histogram),
    Float(FloatHistogram),
}

impl HistogramValue {
    fn encoding(&self) -> Encoding {
        match self {
            HistogramValue::Int(_) => Encoding::Histogram,
            HistogramValue::Float(_) => Encoding::FloatHistogram,
        }
    }

    /// Prometheus' `ValidateHistogram` / `ValidateFloatHistogram`: spans
    /// cover exactly the buckets given, no bucket count is negative, and
    /// the buckets (zero bucket included) hold no more than `count` (for
    /// float counts, unless `count` is NaN).
    pub fn validate(&self) -> std::result::Result<(), String> {
        fn spans_match(side: &str, spans: &[Span], n: usize) -> std::result::Result<(), String> {
            crate::chunkenc::histogram::check_buckets(spans, n)
                .map_err(|e| format!("{side} side: {e}"))?;
            Ok(())
        }
        match self {
            HistogramValue::Int(h) => {
                spans_match("positive", &h.positive_spans, h.positive_buckets.len())?;
                spans_match("negative", &h.negative_spans, h.negative_buckets.len())?;
                let mut total = h.zero_count as i128;
                for (side, deltas) in [
                    ("positive", &h.positive_buckets),
                    ("negative", &h.negative_buckets),
                ] {
                    let mut c: i128 = 0;
                    for d in deltas {
                        c += i128::from(*d);
                        if c < 0 {
                            return Err(format!(
                                "{side} side: bucket has observation count of {c}"
                            ));
                        }
                        total += c;
                    }
                }
                if total > i128::from(h.count) {
                    return Err(format!(
                        "{total} observations found in buckets, but the Count field is {}",
                        h.count
                    ));
                }
            }
            HistogramValue::Float(h) => {
                spans_match("positive", &h.positive_spans, h.positive_buckets.len())?;
                spans_match("negative", &h.negative_spans, h.negative_buckets.len())?;
                let mut total = h.zero_count;
                for (side, bs) in [
                    ("positive", &h.positive_buckets),
                    ("negative", &h.negative_buckets),
                ] {
                    for c in bs {
                        if *c < 0.0 {
                            return Err(format!(
                                "{side} side: bucket has observation count of {c}"
                            ));
                        }
                        total += c;
                    }
                }
                if !h.count.is_nan() && total > h.count {
                    return Err(format!(
                        "{total} observations found in buckets, but the Count field is {}",
                        h.count
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The chunk being appended to: floats or one of the histogram kinds.
enum HeadChunk {
    Xor(XorChunk),
    Histogram(HistogramChunk),
    FloatHistogram(FloatHistogramChunk),
}

impl HeadChunk {
    fn num_samples(&self) -> usize {
        match self {
            HeadChunk::Xor(c) => c.num_samples(),
            HeadChunk::Histogram(c) => c.num_samples(),
            HeadChunk::FloatHistogram(c) => c.num_samples(),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            HeadChunk::Xor(c) => c.bytes(),
            HeadChunk::Histogram(c) => c.bytes(),
            HeadChunk::FloatHistogram(c) => c.bytes(),
        }
    }

    fn encoding(&self) -> Encoding {
        match self {
            HeadChunk::Xor(_) => Encoding::Xor,
            HeadChunk::Histogram(_) => Encoding::Histogram,
            HeadChunk::FloatHistogram(_) => Encoding::FloatHistogram,
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            HeadChunk::Xor(c) => c.heap_bytes(),
            // Histogram chunks do not report their capacity; their length
            // is the estimate.
            HeadChunk::Histogram(c) => c.bytes().len(),
            HeadChunk::FloatHistogram(c) => c.bytes().len(),
        }
    }
}

/// What cutting a chunk needs besides the series' data: where full chunks
/// go, and the series ref they are filed under.
#[derive(Clone, Copy)]
struct CutCtx<'a> {
    series_ref: u64,
    mapper: Option<&'a ChunkDiskMapper>,
}

/// The chunk being appended to.
struct OpenChunk {
    min_time: i64,
    max_time: i64,
    chunk: HeadChunk,
}

struct SeriesData {
    closed: Vec<ClosedChunk>,
    open: Option<OpenChunk>,
    /// When the open chunk must be cut at the latest.
    next_at: i64,
    last_value: f64,
    /// The newest sample when it is a histogram: an append at its
    /// timestamp is a duplicate unless equal.
    last_histogram: Option<HistogramValue>,
}

impl SeriesData {
    fn max_time(&self) -> Option<i64> {
        match &self.open {
            Some(o) if o.chunk.num_samples() > 0 => Some(o.max_time),
            _ => self.closed.last().map(|c| c.max_time),
        }
    }

    fn is_empty(&self) -> bool {
        self.closed.is_empty()
            && self
                .open
                .as_ref()
                .is_none_or(|o| o.chunk.num_samples() == 0)
    }

    fn close_open(&mut self, ctx: CutCtx<'_>) {
        if let Some(o) = self.open.take() {
            if o.chunk.num_samples() > 0 {
                let loc = match ctx.mapper {
                    None => ChunkLoc::Mem(Arc::from(o.chunk.bytes())),
                    Some(m) => match m.write_chunk(
                        ctx.series_ref,
                        o.min_time,
                        o.max_time,
                        o.chunk.encoding(),
                        o.chunk.bytes(),
                    ) {
                        Ok(r) => ChunkLoc::Disk(r),
                        Err(e) => {
                            // The WAL holds the samples either way; keeping
                            // the chunk in memory only costs memory.
                            tracing::warn!(error = %e, "writing head chunk to disk failed; keeping it in memory");
                            ChunkLoc::Mem(Arc::from(o.chunk.bytes()))
                        }
                    },
                };
                self.closed.push(ClosedChunk {
                    min_time: o.min_time,
                    max_time: o.max_time,
                    encoding: o.chunk.encoding(),
                    loc,
                });
            }
        }
    }

    /// Appends an in-order sample, cutting chunks as Prometheus does.
    /// Returns false (and changes nothing) when `t` is not after the newest.
    fn append(&mut self, t: i64, v: f64, chunk_range: i64, ctx: CutCtx<'_>) -> bool {
        if let Some(max) = self.max_time() {
            if t <= max {
                return false;
            }
        }
        if self
            .open
            .as_ref()
            .is_none_or(|o| o.chunk.encoding() != Encoding::Xor)
        {
            self.cut(t, chunk_range, ctx);
        }
        let o = self.open.as_ref().expect("open chunk exists after cut");
        let n = o.chunk.num_samples();
        if n == 0 {
            self.next_at = range_for_timestamp(t, chunk_range);
        }
        if n == SAMPLES_PER_CHUNK / 4 {
            self.next_at = compute_chunk_end_time(o.min_time, o.max_time, self.next_at);
        }
        if t >= self.next_at || n >= SAMPLES_PER_CHUNK * 2 {
            self.cut(t, chunk_range, ctx);
        }
        let o = self.open.as_mut().expect("open chunk exists after cut");
        if o.chunk.num_samples() == 0 {
            o.min_time = t;
        }
        if let HeadChunk::Xor(c) = &mut o.chunk {
            c.append(t, v);
        }
        o.max_time = t;
        self.last_value = v;
        self.last_histogram = None;
        true
    }

    /// Appends an in-order histogram sample, cutting chunks as Prometheus
    /// 2.42's head does (`memSeries.appendHistogram`): a new chunk when the
    /// open one holds another kind, when its time range or size is used up
    /// (as for floats), on a counter reset, and when the layout changes in
    /// a way recoding cannot follow; new buckets recode the open chunk.
    /// The new chunk's counter reset header says why it was cut. `gauge`
    /// samples go into gauge chunks. Returns false (and changes nothing)
    /// when `t` is not after the newest sample; the caller validated `v`.
    fn append_histogram(
        &mut self,
        t: i64,
        v: &HistogramValue,
        gauge: bool,
        chunk_range: i64,
        ctx: CutCtx<'_>,
    ) -> bool {
        if let Some(max) = self.max_time() {
            if t <= max {
                return false;
            }
        }
        let enc = v.encoding();
        let mut header = CounterResetHeader::Unknown;
        let mut cut = true;
        if let Some(o) = self.open.as_mut().filter(|o| o.chunk.encoding() == enc) {
            let n = o.chunk.num_samples();
            if n == SAMPLES_PER_CHUNK / 4 {
                self.next_at = compute_chunk_end_time(o.min_time, o.max_time, self.next_at);
            }
            if t >= self.next_at || n >= SAMPLES_PER_CHUNK * 2 {
                header = match (&o.chunk, v) {
                    (HeadChunk::Histogram(c), HistogramValue::Int(h)) => c.header_after(h),
                    (HeadChunk::FloatHistogram(c), HistogramValue::Float(h)) => c.header_after(h),
                    _ => CounterResetHeader::Unknown,
                };
            } else {
                let res = match (&mut o.chunk, v) {
                    (HeadChunk::Histogram(c), HistogramValue::Int(h)) if gauge => {
                        c.append_gauge(t, h)
                    }
                    (HeadChunk::Histogram(c), HistogramValue::Int(h)) => c.append_recoding(t, h),
                    (HeadChunk::FloatHistogram(c), HistogramValue::Float(h)) if gauge => {
                        c.append_gauge(t, h)
                    }
                    (HeadChunk::FloatHistogram(c), HistogramValue::Float(h)) => {
                        c.append_recoding(t, h)
                    }
                    _ => Err(AppendError::LayoutChanged),
                };
                match res {
                    Ok(()) => {
                        o.max_time = t;
                        cut = false;
                    }
                    Err(AppendError::NewChunkNeeded {
                        counter_reset: true,
                    }) => header = CounterResetHeader::CounterReset,
                    Err(_) => header = CounterResetHeader::Unknown,
                }
            }
        }
        if cut {
            self.cut_kind(t, enc, chunk_range, ctx);
            let o = self.open.as_mut().expect("open chunk exists after cut");
            let res = match (&mut o.chunk, v) {
                (HeadChunk::Histogram(c), HistogramValue::Int(h)) if gauge => c.append_gauge(t, h),
                (HeadChunk::Histogram(c), HistogramValue::Int(h)) => {
                    c.append(t, h).map(|()| c.set_counter_reset_header(header))
                }
                (HeadChunk::FloatHistogram(c), HistogramValue::Float(h)) if gauge => {
                    c.append_gauge(t, h)
                }
                (HeadChunk::FloatHistogram(c), HistogramValue::Float(h)) => {
                    c.append(t, h).map(|()| c.set_counter_reset_header(header))
                }
                _ => Err(AppendError::LayoutChanged),
            };
            if let Err(e) = res {
                // Only an invalid sample fails on an empty chunk, and the
                // appender validated it: log, keep the (empty) chunk.
                tracing::error!(error = %e, "histogram sample refused by an empty chunk");
                return false;
            }
            o.min_time = t;
            o.max_time = t;
        }
        self.last_histogram = Some(v.clone());
        true
    }

    fn cut(&mut self, t: i64, chunk_range: i64, ctx: CutCtx<'_>) {
        self.cut_kind(t, Encoding::Xor, chunk_range, ctx);
    }

    /// Closes the open chunk and opens an empty one of encoding `enc`.
    fn cut_kind(&mut self, t: i64, enc: Encoding, chunk_range: i64, ctx: CutCtx<'_>) {
        let capacity = self
            .open
            .as_ref()
            .filter(|o| o.chunk.encoding() == Encoding::Xor)
            .map_or(INITIAL_CHUNK_BYTES, |o| {
                next_chunk_capacity(o.chunk.bytes().len(), o.chunk.num_samples())
            });
        self.close_open(ctx);
        let chunk = match enc {
            Encoding::Histogram => HeadChunk::Histogram(HistogramChunk::new()),
            Encoding::FloatHistogram => HeadChunk::FloatHistogram(FloatHistogramChunk::new()),
            _ => HeadChunk::Xor(XorChunk::with_capacity(capacity)),
        };
        self.open = Some(OpenChunk {
            min_time: t,
            max_time: i64::MIN,
            chunk,
        });
        self.next_at = range_for_timestamp(t, chunk_range);
    }

    /// Chunks overlapping `[mint, maxt]`, as shareable snapshots. A chunk
    /// on disk is handed out with its mapped file, which stays readable
    /// even if truncation deletes the file meanwhile.
    fn chunks_in(&self, mint: i64, maxt: i64, mapper: Option<&ChunkDiskMapper>) -> Vec<ChunkData> {
        let mut out = Vec::new();
        for c in &self.closed {
            if c.min_time <= maxt && c.max_time >= mint {
                let bytes = match &c.loc {
                    ChunkLoc::Mem(b) => ChunkBytes::Owned(b.clone()),
                    ChunkLoc::Disk(r) => match mapper.and_then(|m| m.file_for(*r)) {
                        Some((f, off)) => ChunkBytes::HeadFile(f, off),
                        None => {
                            // Files are deleted only after truncation dropped
                            // every chunk in them; reaching this is a bug.
                            tracing::error!(chunk_ref = r, "head chunk file missing");
                            continue;
                        }
                    },
                };
                out.push(ChunkData {
                    min_time: c.min_time,
                    max_time: c.max_time,
                    encoding: c.encoding,
                    bytes,
                });
            }
        }
        if let Some(o) = &self.open {
            if o.chunk.num_samples() > 0 && o.min_time <= maxt && o.max_time >= mint {
                out.push(ChunkData {
                    min_time: o.min_time,
                    max_time: o.max_time,
                    encoding: o.chunk.encoding(),
                    bytes: ChunkBytes::Owned(Arc::from(o.chunk.bytes())),
                });
            }
        }
        out
    }

    /// Drops chunks that end before `mint`. Returns the number dropped.
    fn truncate_before(&mut self, mint: i64) -> usize {
        let before = self.closed.len();
        self.closed.retain(|c| c.max_time >= mint);
        let mut dropped = before - self.closed.len();
        if let Some(o) = &self.open {
            if o.chunk.num_samples() > 0 && o.max_time < mint {
                self.open = None;
                dropped += 1;
            }
        }
        dropped
    }

    fn heap_bytes(&self) -> usize {
        self.closed.capacity() * std::mem::size_of::<ClosedChunk>()
            + self
                .closed
                .iter()
                .map(|c| match &c.loc {
                    ChunkLoc::Mem(b) => b.len() + 16,
                    ChunkLoc::Disk(_) => 0,
                })
                .sum::<usize>()
            + self.open.as_ref().map_or(0, |o| o.chunk.heap_bytes())
    }
}

/// One series in the head.
pub struct MemSeries {
    pub series_ref: u64,
    pub labels: Labels,
    data: Mutex<SeriesData>,
}

/// Label name → value → sorted series refs.
#[derive(Default)]
struct MemPostings {
    m: BTreeMap<Arc<str>, BTreeMap<Arc<str>, Vec<u64>>>,
}

impl MemPostings {
    fn add(&mut self, r: u64, labels: &Labels) {
        for l in labels {
            // Most values (instance, pod, ...) have one series: start with
            // room for one ref, not the 4 a pushed-to empty Vec gets.
            let list = self
                .m
                .entry(l.name.clone())
                .or_default()
                .entry(l.value.clone())
                .or_insert_with(|| Vec::with_capacity(1));
            // Refs are handed out increasing, except on WAL replay; keep sorted.
            match list.last() {
                Some(&last) if last > r => {
                    let i = list.partition_point(|&x| x < r);
                    list.insert(i, r);
                }
                _ => list.push(r),
            }
        }
    }

    fn delete(&mut self, deleted: &HashSet<u64>, labels: &[Labels]) {
        for ls in labels {
            for l in ls {
                if let Some(vals) = self.m.get_mut(&l.name) {
                    if let Some(list) = vals.get_mut(&l.value) {
                        list.retain(|r| !deleted.contains(r));
                        if list.is_empty() {
                            vals.remove(&l.value);
                        }
                    }
                    if vals.is_empty() {
                        self.m.remove(&l.name);
                    }
                }
            }
        }
    }

    /// Union of postings of `name` for values accepted by `f`.
    fn union_where(&self, name: &str, f: impl Fn(&str) -> bool) -> Vec<u64> {
        let mut out = Vec::new();
        if let Some(vals) = self.m.get(name) {
            for (v, list) in vals {
                if f(v) {
                    out.extend_from_slice(list);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Hasher for maps keyed by `u64`s that are already well spread or
/// sequential: series refs and label-set hashes. One multiplication instead
/// of SipHash, which the append-by-ref path would otherwise pay per sample.
/// The keys are not attacker-chosen in a way that matters: refs are handed
/// out by the head, and label hashes are keyed foldhash outputs already.
#[derive(Default, Clone, Copy)]
struct U64Hasher(u64);

impl Hasher for U64Hasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys use this hasher; fold anything else in bytewise.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, x: u64) {
        // Fibonacci hashing: the multiplication moves the entropy of
        // sequential refs into the high bits hashbrown uses for its tags.
        self.0 = (self.0 ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type U64Map<V> = HashMap<u64, V, std::hash::BuildHasherDefault<U64Hasher>>;

/// Interned series index.
#[derive(Default)]
struct SeriesIndex {
    by_ref: U64Map<Arc<MemSeries>>,
    /// Label-set hash → series. A hash shared by two label sets (rare)
    /// keeps the other series in `collisions`, so the common case costs no
    /// allocation per series. The series itself, not its ref, so that a
    /// lookup by labels is one probe, not two (a pointer takes the same
    /// 8 bytes as a ref).
    by_hash: U64Map<Arc<MemSeries>>,
    collisions: U64Map<Vec<Arc<MemSeries>>>,
    postings: MemPostings,
    symbols: HashSet<Arc<str>>,
}

impl SeriesIndex {
    fn intern(&mut self, s: &Arc<str>) -> Arc<str> {
        if let Some(x) = self.symbols.get(s) {
            return x.clone();
        }
        self.symbols.insert(s.clone());
        s.clone()
    }

    fn lookup(&self, hash: u64, labels: &Labels) -> Option<&Arc<MemSeries>> {
        let first = self.by_hash.get(&hash)?;
        if &first.labels == labels {
            return Some(first);
        }
        self.collisions
            .get(&hash)?
            .iter()
            .find(|s| &s.labels == labels)
    }

    fn add_hash(&mut self, hash: u64, s: &Arc<MemSeries>) {
        match self.by_hash.get(&hash) {
            Some(existing) if existing.series_ref == s.series_ref => {}
            Some(_) => self.collisions.entry(hash).or_default().push(s.clone()),
            None => {
                self.by_hash.insert(hash, s.clone());
            }
        }
    }

    fn remove_hash(&mut self, hash: u64, r: u64) {
        if self.by_hash.get(&hash).map(|s| s.series_ref) == Some(r) {
            // Promote a colliding series, if any, to the primary slot.
            match self.collisions.get_mut(&hash).and_then(|v| v.pop()) {
                Some(next) => {
                    self.by_hash.insert(hash, next);
                }
                None => {
                    self.by_hash.remove(&hash);
                }
            }
        } else if let Some(v) = self.collisions.get_mut(&hash) {
            v.retain(|x| x.series_ref != r);
        }
        if self.collisions.get(&hash).is_some_and(|v| v.is_empty()) {
            self.collisions.remove(&hash);
        }
    }
}

/// Hashes label sets for the series index: foldhash (a few multiplications
/// per 16 bytes, where SipHash spent about 1,000 instructions on a
/// five-label set), keyed with a per-process random seed so that label sets
/// chosen by a remote-write client cannot be made to collide on purpose.
/// The hash never leaves memory, so it need not be stable across runs.
#[derive(Clone, Default)]
struct LabelHasher(foldhash::fast::RandomState);

impl LabelHasher {
    fn hash(&self, l: &Labels) -> u64 {
        let mut h = self.0.build_hasher();
        for x in l {
            // 0xff never occurs in UTF-8: names and values cannot run into
            // each other, so distinct label sets feed distinct bytes.
            h.write(x.name.as_bytes());
            h.write_u8(0xff);
            h.write(x.value.as_bytes());
            h.write_u8(0xff);
        }
        h.finish()
    }
}

/// Head counters, exported as metrics by the server.
#[derive(Default, Debug)]
pub struct HeadStats {
    pub samples_appended: AtomicU64,
    pub out_of_order_samples: AtomicU64,
    pub out_of_bound_samples: AtomicU64,
    pub duplicate_samples: AtomicU64,
    pub series_created: AtomicU64,
    pub series_removed: AtomicU64,
    pub chunks_removed: AtomicU64,
    pub wal_corruptions_repaired: AtomicU64,
}

/// Options of a head.
#[derive(Clone, Debug)]
pub struct HeadOptions {
    /// The chunk range: chunks never cross a multiple of it. Equals the
    /// minimum block duration.
    pub chunk_range: i64,
}

impl Default for HeadOptions {
    fn default() -> Self {
        HeadOptions {
            chunk_range: DEFAULT_BLOCK_DURATION,
        }
    }
}

/// The in-memory part of the database.
pub struct Head {
    opts: HeadOptions,
    index: RwLock<SeriesIndex>,
    next_ref: AtomicU64,
    min_time: AtomicI64,
    max_time: AtomicI64,
    /// No sample older than this may be appended (max time of the newest
    /// block persisted from the head).
    min_valid_time: AtomicI64,
    tombstones: Mutex<Tombstones>,
    wal: Option<Mutex<Wal>>,
    /// Where full chunks go (`chunks_head/`); `None` keeps them in memory.
    chunk_mapper: Option<Arc<ChunkDiskMapper>>,
    label_hasher: LabelHasher,
    /// Buffers reused across commits (see [`CommitBuffers`]).
    buffers: Mutex<CommitBuffers>,
    pub stats: HeadStats,
}

/// The WAL record encodings, kept between commits so that a steady stream
/// of scrapes does not regrow them per batch. Used under the WAL lock, so
/// one set suffices. (Appenders' sample queues are not pooled: a pool of
/// them would hold about 32 bytes per sample of the largest batches, which
/// counts against head memory per series more than it saves in time.)
#[derive(Default)]
struct CommitBuffers {
    series_rec: Vec<u8>,
    samples_rec: Vec<u8>,
    histograms_rec: Vec<u8>,
    float_histograms_rec: Vec<u8>,
}

/// Buffers that grew beyond this many bytes (a huge remote-write batch) are
/// freed rather than kept, so one outlier does not pin memory.
const MAX_POOLED_BYTES: usize = 8 << 20;

impl Head {
    /// A head with no WAL: appends are not durable (backfill, tests).
    pub fn new(opts: HeadOptions) -> Self {
        Self::with_wal(opts, None)
    }

    pub fn with_wal(opts: HeadOptions, wal: Option<Wal>) -> Self {
        Head {
            opts,
            index: RwLock::new(SeriesIndex::default()),
            next_ref: AtomicU64::new(1),
            min_time: AtomicI64::new(i64::MAX),
            max_time: AtomicI64::new(i64::MIN),
            min_valid_time: AtomicI64::new(i64::MIN),
            tombstones: Mutex::new(Tombstones::new()),
            wal: wal.map(Mutex::new),
            chunk_mapper: None,
            label_hasher: LabelHasher::default(),
            buffers: Mutex::new(CommitBuffers::default()),
            stats: HeadStats::default(),
        }
    }

    /// Attaches the WAL after replay, so replay itself is not logged again.
    pub fn attach_wal(&mut self, wal: Wal) {
        self.wal = Some(Mutex::new(wal));
    }

    /// Writes full chunks to `mapper`'s files from now on and reads them
    /// through its maps, keeping only a ref per chunk in memory. Set before
    /// the WAL replay, which attaches the chunks the files already hold.
    pub fn attach_chunk_mapper(&mut self, mapper: ChunkDiskMapper) {
        self.chunk_mapper = Some(Arc::new(mapper));
    }

    pub fn chunk_mapper(&self) -> Option<&ChunkDiskMapper> {
        self.chunk_mapper.as_deref()
    }

    fn cut_ctx(&self, series_ref: u64) -> CutCtx<'_> {
        CutCtx {
            series_ref,
            mapper: self.chunk_mapper.as_deref(),
        }
    }

    pub fn chunk_range(&self) -> i64 {
        self.opts.chunk_range
    }

    /// Smallest sample timestamp, or `i64::MAX` when empty.
    pub fn min_time(&self) -> i64 {
        self.min_time.load(Ordering::Acquire)
    }

    /// Largest sample timestamp, or `i64::MIN` when empty.
    pub fn max_time(&self) -> i64 {
        self.max_time.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.min_time() > self.max_time()
    }

    pub fn min_valid_time(&self) -> i64 {
        self.min_valid_time.load(Ordering::Acquire)
    }

    pub fn set_min_valid_time(&self, t: i64) {
        self.min_valid_time.fetch_max(t, Ordering::AcqRel);
    }

    pub fn num_series(&self) -> usize {
        self.index.read().by_ref.len()
    }

    /// Whether the head spans more than 1.5 chunk ranges, Prometheus' trigger
    /// for cutting a block.
    pub fn compactable(&self) -> bool {
        !self.is_empty() && self.max_time() - self.min_time() > self.opts.chunk_range / 2 * 3
    }

    /// Approximate heap bytes held by series, chunks and the index.
    pub fn heap_bytes(&self) -> usize {
        let idx = self.index.read();
        let series: usize = idx
            .by_ref
            .values()
            .map(|s| {
                std::mem::size_of::<MemSeries>()
                    + s.labels.len() * std::mem::size_of::<Label>()
                    + s.data.lock().heap_bytes()
            })
            .sum();
        let symbols: usize = idx.symbols.iter().map(|s| s.len() + 16 + 16).sum();
        let postings: usize = idx
            .postings
            .m
            .values()
            .flat_map(|v| v.values())
            .map(|l| l.capacity() * 8 + 64)
            .sum();
        series + symbols + postings + idx.by_hash.len() * 24 + idx.by_ref.len() * 24
    }

    /// Starts a batch of appends.
    pub fn appender(&self) -> Appender<'_> {
        let head_max = self.max_time();
        let min_valid = if head_max == i64::MIN {
            self.min_valid_time()
        } else {
            (head_max - self.opts.chunk_range / 2).max(self.min_valid_time())
        };
        Appender {
            head: self,
            min_valid,
            first: head_max == i64::MIN,
            new_series: Vec::new(),
            samples: Vec::new(),
            series: Vec::new(),
            histograms: Vec::new(),
            float_histograms: Vec::new(),
            hist_series: Vec::new(),
            mint: i64::MAX,
            maxt: i64::MIN,
        }
    }

    fn get_or_create(&self, labels: &Labels) -> (Arc<MemSeries>, bool) {
        let hash = self.label_hasher.hash(labels);
        if let Some(s) = self.index.read().lookup(hash, labels) {
            return (s.clone(), false);
        }
        let mut idx = self.index.write();
        if let Some(s) = idx.lookup(hash, labels) {
            return (s.clone(), false);
        }
        let r = self.next_ref.fetch_add(1, Ordering::Relaxed);
        let s = self.insert_series(&mut idx, r, labels, hash);
        (s, true)
    }

    fn insert_series(
        &self,
        idx: &mut SeriesIndex,
        r: u64,
        labels: &Labels,
        hash: u64,
    ) -> Arc<MemSeries> {
        let interned = Labels::from_sorted(
            labels
                .iter()
                .map(|l| Label {
                    name: idx.intern(&l.name),
                    value: idx.intern(&l.value),
                })
                .collect(),
        );
        let s = Arc::new(MemSeries {
            series_ref: r,
            labels: interned,
            data: Mutex::new(SeriesData {
                closed: Vec::new(),
                open: None,
                next_at: i64::MIN,
                last_value: 0.0,
                last_histogram: None,
            }),
        });
        idx.postings.add(r, &s.labels);
        idx.add_hash(hash, &s);
        idx.by_ref.insert(r, s.clone());
        self.stats.series_created.fetch_add(1, Ordering::Relaxed);
        s
    }

    fn update_min_max(&self, mint: i64, maxt: i64) {
        self.min_time.fetch_min(mint, Ordering::AcqRel);
        self.max_time.fetch_max(maxt, Ordering::AcqRel);
    }

    /// Series refs matching all matchers (Prometheus `PostingsForMatchers`).
    fn postings_for_matchers(&self, idx: &SeriesIndex, ms: &[Matcher]) -> Vec<u64> {
        let mut result: Option<Vec<u64>> = None;
        let mut subtract: Vec<Vec<u64>> = Vec::new();
        for m in ms {
            if m.matches_empty() {
                // Keep series lacking the label; drop those whose value fails.
                subtract.push(idx.postings.union_where(&m.name, |v| !m.matches(v)));
            } else {
                let p = idx.postings.union_where(&m.name, |v| m.matches(v));
                result = Some(match result {
                    None => p,
                    Some(r) => intersect(&r, &p),
                });
            }
        }
        let mut r = result.unwrap_or_else(|| {
            let mut all: Vec<u64> = idx.by_ref.keys().copied().collect();
            all.sort_unstable();
            all
        });
        for s in subtract {
            if !s.is_empty() {
                r.retain(|x| s.binary_search(x).is_err());
            }
        }
        r
    }

    /// Series matching `ms` with chunks overlapping `[mint, maxt]`, sorted by
    /// labels. Series without data in the range are left out.
    pub fn select(&self, ms: &[Matcher], mint: i64, maxt: i64) -> Vec<ChunkSeries> {
        let series: Vec<Arc<MemSeries>> = {
            let idx = self.index.read();
            self.postings_for_matchers(&idx, ms)
                .iter()
                .filter_map(|r| idx.by_ref.get(r).cloned())
                .collect()
        };
        let stones = self.tombstones.lock();
        let mut out: Vec<ChunkSeries> = series
            .into_iter()
            .filter_map(|s| {
                let chunks = s
                    .data
                    .lock()
                    .chunks_in(mint, maxt, self.chunk_mapper.as_deref());
                if chunks.is_empty() {
                    return None;
                }
                Some(ChunkSeries {
                    labels: s.labels.clone(),
                    chunks,
                    deleted: stones
                        .get(s.series_ref)
                        .map(<[_]>::to_vec)
                        .unwrap_or_default(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// Label names of series matching `ms` (all series when empty), sorted.
    pub fn label_names(&self, ms: &[Matcher]) -> Vec<String> {
        let idx = self.index.read();
        if ms.is_empty() {
            return idx.postings.m.keys().map(|k| k.to_string()).collect();
        }
        let mut names = std::collections::BTreeSet::new();
        for r in self.postings_for_matchers(&idx, ms) {
            if let Some(s) = idx.by_ref.get(&r) {
                for l in &s.labels {
                    names.insert(l.name.to_string());
                }
            }
        }
        names.into_iter().collect()
    }

    /// Values of label `name` among series matching `ms`, sorted.
    pub fn label_values(&self, name: &str, ms: &[Matcher]) -> Vec<String> {
        let idx = self.index.read();
        if ms.is_empty() {
            return idx
                .postings
                .m
                .get(name)
                .map(|v| v.keys().map(|k| k.to_string()).collect())
                .unwrap_or_default();
        }
        let mut vals = std::collections::BTreeSet::new();
        for r in self.postings_for_matchers(&idx, ms) {
            if let Some(v) = idx.by_ref.get(&r).and_then(|s| s.labels.get(name)) {
                vals.insert(v.to_string());
            }
        }
        vals.into_iter().collect()
    }

    /// Marks `[mint, maxt]` deleted for every series matching `ms`; logged to
    /// the WAL first so the deletion survives a restart.
    pub fn delete(&self, ms: &[Matcher], mint: i64, maxt: i64) -> Result<usize> {
        let refs = {
            let idx = self.index.read();
            self.postings_for_matchers(&idx, ms)
        };
        let stones: Vec<Stone> = refs
            .iter()
            .map(|&r| Stone {
                series_ref: r,
                mint,
                maxt,
            })
            .collect();
        if let Some(w) = &self.wal {
            let mut buf = Vec::new();
            record::encode_tombstones(&stones, &mut buf);
            w.lock().log(&[&buf])?;
        }
        let mut t = self.tombstones.lock();
        for s in &stones {
            t.add(s.series_ref, Interval { mint, maxt });
        }
        Ok(refs.len())
    }

    /// Every series with all its chunks in `[mint, maxt]`, sorted by labels,
    /// for writing a block. Chunks are whole: the chunk range guarantees that
    /// no chunk crosses a block boundary.
    pub fn chunk_series_in(&self, mint: i64, maxt: i64) -> Vec<ChunkSeries> {
        self.select(&[], mint, maxt)
            .into_iter()
            .map(|mut s| {
                s.chunks
                    .retain(|c| c.min_time >= mint && c.max_time <= maxt);
                s
            })
            .filter(|s| !s.chunks.is_empty())
            .collect()
    }

    /// After `[.., mint)` has been persisted: drops older chunks, removes
    /// series left without data, and forbids appends before `mint`.
    pub fn truncate_memory(&self, mint: i64) {
        self.set_min_valid_time(mint);
        let all: Vec<Arc<MemSeries>> = self.index.read().by_ref.values().cloned().collect();
        let mut empty = HashSet::new();
        let mut new_min = i64::MAX;
        for s in &all {
            let mut d = s.data.lock();
            let n = d.truncate_before(mint);
            self.stats
                .chunks_removed
                .fetch_add(n as u64, Ordering::Relaxed);
            if d.is_empty() {
                empty.insert(s.series_ref);
            } else if let Some(c) = d.closed.first() {
                new_min = new_min.min(c.min_time);
            } else if let Some(o) = &d.open {
                new_min = new_min.min(o.min_time);
            }
        }
        if !empty.is_empty() {
            let mut idx = self.index.write();
            let mut removed_labels = Vec::new();
            for r in &empty {
                // Re-check under the write lock: an append may have raced in.
                let still_empty = idx.by_ref.get(r).is_some_and(|s| s.data.lock().is_empty());
                if !still_empty {
                    continue;
                }
                if let Some(s) = idx.by_ref.remove(r) {
                    idx.remove_hash(self.label_hasher.hash(&s.labels), *r);
                    removed_labels.push(s.labels.clone());
                }
            }
            self.stats
                .series_removed
                .fetch_add(removed_labels.len() as u64, Ordering::Relaxed);
            idx.postings.delete(&empty, &removed_labels);
            let live: HashSet<Arc<str>> = idx
                .by_ref
                .values()
                .flat_map(|s| {
                    s.labels
                        .iter()
                        .flat_map(|l| [l.name.clone(), l.value.clone()])
                })
                .collect();
            idx.symbols = live;
        }
        if let Some(m) = &self.chunk_mapper {
            // Every chunk ending before `mint` is gone from memory: the
            // files holding only such chunks can go. A failure only leaves
            // files behind, which the next truncation retries.
            if let Err(e) = m.truncate(mint) {
                tracing::warn!(error = %e, "deleting old head chunk files failed");
            }
        }
        let mut t = self.tombstones.lock();
        t.truncate_before(mint);
        // Head time range now starts at the persisted boundary.
        if new_min == i64::MAX {
            self.min_time.store(i64::MAX, Ordering::Release);
            self.max_time.store(i64::MIN, Ordering::Release);
        } else {
            self.min_time.store(new_min.max(mint), Ordering::Release);
        }
    }

    /// Whether a series ref is still live (WAL checkpoint keep function).
    pub fn has_series(&self, r: u64) -> bool {
        self.index.read().by_ref.contains_key(&r)
    }

    pub fn wal(&self) -> Option<&Mutex<Wal>> {
        self.wal.as_ref()
    }

    /// Stats for `/api/v1/status/tsdb`: series count per metric name.
    pub fn series_count_by_metric(&self) -> Vec<(String, usize)> {
        let idx = self.index.read();
        let mut v: Vec<(String, usize)> = idx
            .postings
            .m
            .get(crate::labels::METRIC_NAME)
            .map(|vals| vals.iter().map(|(k, l)| (k.to_string(), l.len())).collect())
            .unwrap_or_default();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// Replays WAL records into the head (used on open). Series records
    /// create series with their logged ref; samples go through the in-order
    /// append path, so duplicates and older samples are skipped.
    pub fn replay_record(&self, rec: &record::Record, state: &mut ReplayState) {
        match rec {
            record::Record::Series(series) => {
                let mut idx = self.index.write();
                for s in series {
                    let hash = self.label_hasher.hash(&s.labels);
                    let mmapped = state.mmapped.remove(&s.series_ref);
                    if let Some(existing) = idx.lookup(hash, &s.labels) {
                        // Same labels logged twice under two refs (after a
                        // checkpoint): map the new ref onto the existing one.
                        state.ref_map.insert(s.series_ref, existing.series_ref);
                        if let Some(cs) = mmapped {
                            let existing = existing.clone();
                            self.attach_mmapped(&existing, cs, state);
                        }
                        continue;
                    }
                    let series = self.insert_series(&mut idx, s.series_ref, &s.labels, hash);
                    self.next_ref.fetch_max(s.series_ref + 1, Ordering::Relaxed);
                    if let Some(cs) = mmapped {
                        self.attach_mmapped(&series, cs, state);
                    }
                }
            }
            record::Record::Samples(samples) => {
                let idx = self.index.read();
                let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
                for smp in samples {
                    let r = state
                        .ref_map
                        .get(&smp.series_ref)
                        .copied()
                        .unwrap_or(smp.series_ref);
                    let Some(s) = idx.by_ref.get(&r) else {
                        state.unknown_refs += 1;
                        continue;
                    };
                    if smp.t < self.min_valid_time() {
                        continue;
                    }
                    if s.data.lock().append(
                        smp.t,
                        smp.v,
                        self.opts.chunk_range,
                        self.cut_ctx(s.series_ref),
                    ) {
                        state.samples += 1;
                        mint = mint.min(smp.t);
                        maxt = maxt.max(smp.t);
                    }
                }
                drop(idx);
                if mint <= maxt {
                    self.update_min_max(mint, maxt);
                }
            }
            record::Record::Histograms(hs) => {
                let it = hs
                    .iter()
                    .map(|h| (h.series_ref, h.t, h.hint, HistogramValue::Int(h.h.clone())));
                self.replay_histograms(it, state);
            }
            record::Record::FloatHistograms(hs) => {
                let it = hs.iter().map(|h| {
                    (
                        h.series_ref,
                        h.t,
                        h.hint,
                        HistogramValue::Float(h.h.clone()),
                    )
                });
                self.replay_histograms(it, state);
            }
            record::Record::Tombstones(stones) => {
                let mut t = self.tombstones.lock();
                for s in stones {
                    let r = state
                        .ref_map
                        .get(&s.series_ref)
                        .copied()
                        .unwrap_or(s.series_ref);
                    t.add(
                        r,
                        Interval {
                            mint: s.mint,
                            maxt: s.maxt,
                        },
                    );
                }
            }
            _ => state.skipped_records += 1,
        }
    }
}

impl Head {
    /// Replays histogram samples of a WAL record, as samples are replayed.
    fn replay_histograms(
        &self,
        hs: impl Iterator<Item = (u64, i64, u8, HistogramValue)>,
        state: &mut ReplayState,
    ) {
        let idx = self.index.read();
        let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
        for (series_ref, t, hint, v) in hs {
            let r = state
                .ref_map
                .get(&series_ref)
                .copied()
                .unwrap_or(series_ref);
            let Some(s) = idx.by_ref.get(&r) else {
                state.unknown_refs += 1;
                continue;
            };
            if t < self.min_valid_time() {
                continue;
            }
            if let Err(e) = v.validate() {
                // Only valid samples are logged; a bad one is corruption
                // of this sample only.
                tracing::warn!(error = %e, series_ref, t, "skipping invalid histogram in the WAL");
                continue;
            }
            if s.data.lock().append_histogram(
                t,
                &v,
                hint == record::HINT_GAUGE,
                self.opts.chunk_range,
                self.cut_ctx(s.series_ref),
            ) {
                state.samples += 1;
                mint = mint.min(t);
                maxt = maxt.max(t);
            }
        }
        drop(idx);
        if mint <= maxt {
            self.update_min_max(mint, maxt);
        }
    }

    /// Gives a series just created by the WAL replay the chunks the head
    /// chunk files hold for it. They are a gap-free prefix of its chunks
    /// (see [`crate::head_chunks`]), so the replay then appends only WAL
    /// samples newer than them, which rebuilds the open chunk exactly.
    /// Chunks are attached only to a series without data yet; otherwise
    /// they are left out and the WAL samples, which hold the same data,
    /// fill the series instead.
    fn attach_mmapped(
        &self,
        s: &MemSeries,
        mut chunks: Vec<MmappedChunk>,
        state: &mut ReplayState,
    ) {
        let Some(mapper) = self.chunk_mapper.as_deref() else {
            return;
        };
        // Chunks already persisted in a block are not the head's any more.
        let min_valid = self.min_valid_time();
        chunks.retain(|c| c.max_time >= min_valid);
        // The head holds float samples only; a series with histogram chunks
        // (from a Prometheus head) is left to the WAL replay, which skips
        // histogram records as before.
        if chunks.is_empty()
            || chunks.iter().any(|c| c.encoding != Encoding::Xor)
            || chunks.windows(2).any(|w| w[0].max_time >= w[1].min_time)
        {
            return;
        }
        let last = chunks.last().expect("not empty");
        // The newest sample's value decides whether a later append at the
        // same timestamp is a duplicate.
        let last_value = mapper.file_for(last.chunk_ref).and_then(|(f, off)| {
            let (_, data) = f.chunk_at(off).ok()?;
            let mut it = crate::chunkenc::XorIter::new(data);
            let mut lastv = None;
            for (t, v) in it.by_ref() {
                lastv = Some((t, v));
            }
            match (it.err(), lastv) {
                (None, Some((t, v))) if t == last.max_time => Some(v),
                _ => None,
            }
        });
        let Some(last_value) = last_value else {
            return;
        };
        let mut d = s.data.lock();
        if !d.is_empty() {
            return;
        }
        let (mint, maxt) = (chunks[0].min_time, last.max_time);
        d.open = None;
        d.last_value = last_value;
        d.closed = chunks
            .iter()
            .map(|c| ClosedChunk {
                min_time: c.min_time,
                max_time: c.max_time,
                encoding: Encoding::Xor,
                loc: ChunkLoc::Disk(c.chunk_ref),
            })
            .collect();
        drop(d);
        state.mmapped_chunks += chunks.len() as u64;
        self.update_min_max(mint, maxt);
    }
}

/// Progress of a WAL replay.
#[derive(Default, Debug)]
pub struct ReplayState {
    pub ref_map: HashMap<u64, u64>,
    /// Chunks found in `chunks_head/` by series ref, not yet attached: a
    /// series record of the WAL attaches its series' chunks.
    pub mmapped: HashMap<u64, Vec<MmappedChunk>>,
    /// Chunks attached from `chunks_head/`.
    pub mmapped_chunks: u64,
    pub samples: u64,
    pub unknown_refs: u64,
    pub skipped_records: u64,
}

/// What one commit did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    pub appended: usize,
    /// Samples dropped at commit because the batch itself went backwards.
    pub out_of_order: usize,
}

/// A batch of samples for the head. Dropping it without commit discards it.
pub struct Appender<'a> {
    head: &'a Head,
    min_valid: i64,
    /// The head was empty when the batch started: the first sample sets the
    /// append window (Prometheus' `initAppender`).
    first: bool,
    new_series: Vec<RefSeries>,
    samples: Vec<RefSample>,
    series: Vec<Arc<MemSeries>>,
    /// Histogram samples, by kind as the WAL logs them; `hist_series`
    /// holds each one's series and whether it is integer (in append order).
    histograms: Vec<RefHistogramSample<Histogram>>,
    float_histograms: Vec<RefHistogramSample<FloatHistogram>>,
    hist_series: Vec<(Arc<MemSeries>, bool)>,
    mint: i64,
    maxt: i64,
}

impl Appender<'_> {
    /// Adds a sample. `labels` must be valid (sorted, no empty values, which
    /// [`Labels`] guarantees). Returns the series ref, which callers may cache.
    pub fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<u64> {
        if labels.is_empty() {
            return Err(Error::InvalidLabels("empty label set".into()));
        }
        self.check_bounds(t)?;
        let (s, created) = self.head.get_or_create(labels);
        if created {
            self.new_series.push(RefSeries {
                series_ref: s.series_ref,
                labels: s.labels.clone(),
            });
        }
        self.add(s, t, v)
    }

    /// Adds a sample to the series with ref `series_ref`, as returned by an
    /// earlier [`Appender::append`] (Prometheus' `Append` with a non-zero
    /// ref). Skips hashing and comparing the labels, which is most of the
    /// cost of an append. Fails with [`Error::UnknownSeriesRef`] when the
    /// head no longer holds the series (removed by truncation since): the
    /// caller then appends by labels and caches the new ref. Refs are never
    /// reused, so a stale ref cannot hit another series.
    pub fn append_ref(&mut self, series_ref: u64, t: i64, v: f64) -> Result<()> {
        self.check_bounds(t)?;
        let found = self.head.index.read().by_ref.get(&series_ref).cloned();
        let Some(s) = found else {
            return Err(Error::UnknownSeriesRef(series_ref));
        };
        self.add(s, t, v).map(|_| ())
    }

    fn check_bounds(&mut self, t: i64) -> Result<()> {
        if self.first {
            self.first = false;
            let head_min = t - self.head.opts.chunk_range / 2;
            self.min_valid = head_min.max(self.head.min_valid_time());
        }
        if t < self.min_valid {
            self.head
                .stats
                .out_of_bound_samples
                .fetch_add(1, Ordering::Relaxed);
            return Err(Error::OutOfBounds);
        }
        Ok(())
    }

    /// The checks against committed data, then queues the sample.
    fn add(&mut self, s: Arc<MemSeries>, t: i64, v: f64) -> Result<u64> {
        {
            let d = s.data.lock();
            if let Some(max) = d.max_time() {
                if t < max {
                    self.head
                        .stats
                        .out_of_order_samples
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(Error::OutOfOrderSample);
                }
                if t == max && d.last_value.to_bits() != v.to_bits() {
                    self.head
                        .stats
                        .duplicate_samples
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(Error::DuplicateSampleForTimestamp);
                }
            }
        }
        self.mint = self.mint.min(t);
        self.maxt = self.maxt.max(t);
        let series_ref = s.series_ref;
        self.samples.push(RefSample { series_ref, t, v });
        self.series.push(s);
        Ok(series_ref)
    }

    /// Adds a native histogram sample (Prometheus' `AppendHistogram`),
    /// a gauge histogram when `gauge`. The sample must be valid
    /// ([`HistogramValue::validate`], else [`Error::Invalid`]); time rules
    /// are those of floats, and a sample at the newest timestamp is a
    /// duplicate unless equal to the newest. Returns the series ref.
    pub fn append_histogram(
        &mut self,
        labels: &Labels,
        t: i64,
        v: HistogramValue,
        gauge: bool,
    ) -> Result<u64> {
        let hint = if gauge { record::HINT_GAUGE } else { 0 };
        self.append_histogram_hinted(labels, t, v, hint)
    }

    /// [`Appender::append_histogram`] with the sender's counter reset hint
    /// (Prometheus' numbering, 0..=3, else [`Error::Invalid`]): 3 makes a
    /// gauge histogram; the hint is logged in the WAL as received, as
    /// Prometheus does, so both write the same WAL records.
    pub fn append_histogram_hinted(
        &mut self,
        labels: &Labels,
        t: i64,
        v: HistogramValue,
        hint: u8,
    ) -> Result<u64> {
        if hint > record::HINT_GAUGE {
            return Err(Error::Invalid(format!(
                "unknown histogram reset hint {hint}"
            )));
        }
        if labels.is_empty() {
            return Err(Error::InvalidLabels("empty label set".into()));
        }
        v.validate().map_err(Error::Invalid)?;
        self.check_bounds(t)?;
        let (s, created) = self.head.get_or_create(labels);
        if created {
            self.new_series.push(RefSeries {
                series_ref: s.series_ref,
                labels: s.labels.clone(),
            });
        }
        {
            let d = s.data.lock();
            if let Some(max) = d.max_time() {
                if t < max {
                    self.head
                        .stats
                        .out_of_order_samples
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(Error::OutOfOrderSample);
                }
                if t == max && d.last_histogram.as_ref() != Some(&v) {
                    self.head
                        .stats
                        .duplicate_samples
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(Error::DuplicateSampleForTimestamp);
                }
            }
        }
        self.mint = self.mint.min(t);
        self.maxt = self.maxt.max(t);
        let series_ref = s.series_ref;
        match v {
            HistogramValue::Int(h) => {
                self.histograms.push(RefHistogramSample {
                    series_ref,
                    t,
                    hint,
                    h,
                });
                self.hist_series.push((s, true));
            }
            HistogramValue::Float(h) => {
                self.float_histograms.push(RefHistogramSample {
                    series_ref,
                    t,
                    hint,
                    h,
                });
                self.hist_series.push((s, false));
            }
        }
        Ok(series_ref)
    }

    /// Samples in the batch, floats and histograms.
    pub fn len(&self) -> usize {
        self.samples.len() + self.hist_series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes the batch durable (WAL) and then visible. On a WAL error nothing
    /// is applied and the error is returned: the caller must not acknowledge.
    pub fn commit(self) -> Result<CommitStats> {
        let head = self.head;
        if let Some(w) = &head.wal {
            if !self.new_series.is_empty() || !self.is_empty() {
                // Lock order: the WAL, then the buffers (only taken here).
                let mut w = w.lock();
                let mut guard = head.buffers.lock();
                let b = &mut *guard;
                b.series_rec.clear();
                b.samples_rec.clear();
                b.histograms_rec.clear();
                b.float_histograms_rec.clear();
                let mut recs: [&[u8]; 4] = [&[], &[], &[], &[]];
                let mut n = 0;
                if !self.new_series.is_empty() {
                    record::encode_series(&self.new_series, &mut b.series_rec);
                    recs[n] = &b.series_rec;
                    n += 1;
                }
                if !self.samples.is_empty() {
                    record::encode_samples(&self.samples, &mut b.samples_rec);
                    recs[n] = &b.samples_rec;
                    n += 1;
                }
                if !self.histograms.is_empty() {
                    record::encode_histograms(&self.histograms, &mut b.histograms_rec);
                    recs[n] = &b.histograms_rec;
                    n += 1;
                }
                if !self.float_histograms.is_empty() {
                    record::encode_float_histograms(
                        &self.float_histograms,
                        &mut b.float_histograms_rec,
                    );
                    recs[n] = &b.float_histograms_rec;
                    n += 1;
                }
                let res = w.log(&recs[..n]);
                // Histogram batches are rare: their buffers are not kept.
                b.histograms_rec = Vec::new();
                b.float_histograms_rec = Vec::new();
                for buf in [&mut b.series_rec, &mut b.samples_rec] {
                    if buf.capacity() > MAX_POOLED_BYTES {
                        *buf = Vec::new();
                    }
                }
                let (series_len, samples_len) = (b.series_rec.len(), b.samples_rec.len());
                // Series records come in bursts (a new target, a restart of
                // many pods); the samples record is the same size every scrape.
                crate::wal::segment::shrink_oversized(&mut b.series_rec, series_len.min(64 * 1024));
                crate::wal::segment::shrink_oversized(&mut b.samples_rec, samples_len);
                res?;
            }
        }
        let mut stats = CommitStats::default();
        let range = head.opts.chunk_range;
        for (smp, s) in self.samples.iter().zip(self.series.iter()) {
            if s.data
                .lock()
                .append(smp.t, smp.v, range, head.cut_ctx(s.series_ref))
            {
                stats.appended += 1;
            } else {
                stats.out_of_order += 1;
            }
        }
        let (mut ints, mut floats) = (
            self.histograms.into_iter(),
            self.float_histograms.into_iter(),
        );
        for (s, is_int) in &self.hist_series {
            let (t, hint, v) = if *is_int {
                let Some(h) = ints.next() else { break };
                (h.t, h.hint, HistogramValue::Int(h.h))
            } else {
                let Some(h) = floats.next() else { break };
                (h.t, h.hint, HistogramValue::Float(h.h))
            };
            if s.data.lock().append_histogram(
                t,
                &v,
                hint == record::HINT_GAUGE,
                range,
                head.cut_ctx(s.series_ref),
            ) {
                stats.appended += 1;
            } else {
                stats.out_of_order += 1;
            }
        }
        if stats.appended > 0 {
            head.update_min_max(self.mint, self.maxt);
        }
        head.stats
            .samples_appended
            .fetch_add(stats.appended as u64, Ordering::Relaxed);
        head.stats
            .out_of_order_samples
            .fetch_add(stats.out_of_order as u64, Ordering::Relaxed);
        Ok(stats)
    }

    /// Discards the batch. Series it created stay (empty) until the next
    /// truncation, as in Prometheus.
    pub fn rollback(self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn append_rules_match_prometheus() {
        let h = Head::new(HeadOptions::default());
        let a = l(&[("__name__", "up"), ("job", "x")]);
        let mut app = h.appender();
        app.append(&a, 1000, 1.0).unwrap();
        app.append(&a, 2000, 2.0).unwrap();
        app.commit().unwrap();

        let mut app = h.appender();
        assert!(matches!(
            app.append(&a, 1500, 1.0),
            Err(Error::OutOfOrderSample)
        ));
        assert!(matches!(
            app.append(&a, 2000, 3.0),
            Err(Error::DuplicateSampleForTimestamp)
        ));
        // Same timestamp and value: accepted, then dropped at commit.
        app.append(&a, 2000, 2.0).unwrap();
        // More than chunk_range/2 before head max: out of bounds.
        assert!(matches!(
            app.append(&a, 2000 - DEFAULT_BLOCK_DURATION, 1.0),
            Err(Error::OutOfBounds)
        ));
        let st = app.commit().unwrap();
        assert_eq!(
            st,
            CommitStats {
                appended: 0,
                out_of_order: 1
            }
        );

        let s = h.select(&[Matcher::equal("job", "x")], 0, 10_000);
        assert_eq!(s.len(), 1);
        assert_eq!(
            s[0].samples(0, 10_000).unwrap(),
            vec![(1000, 1.0), (2000, 2.0)]
        );
    }

    #[test]
    fn append_by_ref_follows_the_same_rules() {
        let h = Head::new(HeadOptions::default());
        let a = l(&[("__name__", "up"), ("job", "x")]);
        let mut app = h.appender();
        let r = app.append(&a, 1000, 1.0).unwrap();
        app.append_ref(r, 2000, 2.0).unwrap();
        assert!(matches!(
            app.append_ref(r + 1, 2000, 2.0),
            Err(Error::UnknownSeriesRef(x)) if x == r + 1
        ));
        app.commit().unwrap();
        let mut app = h.appender();
        assert!(matches!(
            app.append_ref(r, 1500, 1.0),
            Err(Error::OutOfOrderSample)
        ));
        assert!(matches!(
            app.append_ref(r, 2000, 3.0),
            Err(Error::DuplicateSampleForTimestamp)
        ));
        assert!(matches!(
            app.append_ref(r, 2000 - DEFAULT_BLOCK_DURATION, 1.0),
            Err(Error::OutOfBounds)
        ));
        app.append_ref(r, 3000, 3.0).unwrap();
        app.commit().unwrap();
        let s = h.select(&[Matcher::equal("job", "x")], 0, 10_000);
        assert_eq!(
            s[0].samples(0, 10_000).unwrap(),
            vec![(1000, 1.0), (2000, 2.0), (3000, 3.0)]
        );
        // Once truncation removed the series, its ref is unknown for good:
        // the new series for the same labels gets a new ref.
        let mut app = h.appender();
        app.append(
            &l(&[("__name__", "other")]),
            3 * DEFAULT_BLOCK_DURATION,
            1.0,
        )
        .unwrap();
        app.commit().unwrap();
        h.truncate_memory(2 * DEFAULT_BLOCK_DURATION);
        let mut app = h.appender();
        let t = 3 * DEFAULT_BLOCK_DURATION + 1;
        assert!(matches!(
            app.append_ref(r, t, 1.0),
            Err(Error::UnknownSeriesRef(_))
        ));
        let r2 = app.append(&a, t, 1.0).unwrap();
        assert_ne!(r2, r);
        app.commit().unwrap();
    }

    #[test]
    fn next_chunk_capacity_fits_steady_series() {
        assert_eq!(next_chunk_capacity(0, 0), INITIAL_CHUNK_BYTES);
        // 200 bytes for 120 samples: room for the same plus 1/8.
        assert_eq!(next_chunk_capacity(200, 120), 233);
        // A short chunk (cut at a range boundary) is scaled to 120 samples.
        assert_eq!(next_chunk_capacity(50, 30), 233);
        assert_eq!(next_chunk_capacity(1, 120), 32);
        assert_eq!(next_chunk_capacity(60_000, 120), 4096);
    }

    #[test]
    fn hash_collisions_keep_every_series_reachable() {
        let mut idx = SeriesIndex::default();
        let h = Head::new(HeadOptions::default());
        let (a, b) = (l(&[("x", "a")]), l(&[("x", "b")]));
        // Force both label sets under one hash.
        h.insert_series(&mut idx, 1, &a, 42);
        h.insert_series(&mut idx, 2, &b, 42);
        assert_eq!(idx.lookup(42, &a).unwrap().series_ref, 1);
        assert_eq!(idx.lookup(42, &b).unwrap().series_ref, 2);
        idx.remove_hash(42, 1);
        assert!(idx.lookup(42, &a).is_none());
        assert_eq!(idx.lookup(42, &b).unwrap().series_ref, 2);
        idx.remove_hash(42, 2);
        assert!(idx.by_hash.is_empty() && idx.collisions.is_empty());
    }

    #[test]
    fn stale_markers_are_kept_bit_exact() {
        let h = Head::new(HeadOptions::default());
        let a = l(&[("__name__", "m")]);
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let mut app = h.appender();
        app.append(&a, 1, 1.0).unwrap();
        app.append(&a, 2, stale).unwrap();
        app.commit().unwrap();
        let s = h.select(&[], 0, 10);
        assert_eq!(s[0].samples(0, 10).unwrap()[1].1.to_bits(), stale.to_bits());
    }

    #[test]
    fn chunks_are_cut_like_prometheus() {
        // 15s scrapes over 4h: chunks end on the 2h boundary and hold ~120.
        let h = Head::new(HeadOptions::default());
        let a = l(&[("__name__", "m")]);
        for i in 0..960 {
            let mut app = h.appender();
            app.append(&a, i * 15_000, i as f64).unwrap();
            app.commit().unwrap();
        }
        let s = h.select(&[], i64::MIN, i64::MAX);
        let sizes: Vec<i64> = s[0]
            .chunks
            .iter()
            .map(|c| (c.max_time - c.min_time) / 15_000 + 1)
            .collect();
        assert_eq!(sizes.iter().sum::<i64>(), 960);
        assert!(sizes.iter().all(|&n| n == 120), "{sizes:?}");
        assert!(s[0]
            .chunks
            .iter()
            .all(|c| c.min_time / DEFAULT_BLOCK_DURATION == c.max_time / DEFAULT_BLOCK_DURATION));
    }

    #[test]
    fn matchers_select_like_prometheus() {
        let h = Head::new(HeadOptions::default());
        let mut app = h.appender();
        for (i, ls) in [
            l(&[("__name__", "a"), ("x", "1")]),
            l(&[("__name__", "a"), ("x", "2")]),
            l(&[("__name__", "a")]),
            l(&[("__name__", "b"), ("x", "1")]),
        ]
        .iter()
        .enumerate()
        {
            app.append(ls, 10, i as f64).unwrap();
        }
        app.commit().unwrap();
        let q = |ms: Vec<Matcher>| -> Vec<String> {
            h.select(&ms, 0, 100)
                .iter()
                .map(|s| s.labels.to_string())
                .collect()
        };
        use crate::labels::MatchType::*;
        let m = |k, n: &str, v: &str| Matcher::new(k, n, v).unwrap();
        assert_eq!(
            q(vec![m(Equal, "__name__", "a"), m(Equal, "x", "")]),
            [r#"{__name__="a"}"#]
        );
        assert_eq!(
            q(vec![m(Equal, "__name__", "a"), m(NotEqual, "x", "1")]),
            [r#"{__name__="a"}"#, r#"{__name__="a", x="2"}"#]
        );
        assert_eq!(q(vec![m(Regex, "x", "1|2")]).len(), 3);
        assert_eq!(q(vec![m(NotRegex, "x", ".+")]), [r#"{__name__="a"}"#]);
        assert_eq!(q(vec![]).len(), 4);
        assert_eq!(h.label_values("x", &[]), ["1", "2"]);
        assert_eq!(
            h.label_names(&[m(Equal, "__name__", "b")]),
            ["__name__", "x"]
        );
    }

    #[test]
    fn truncation_drops_old_series_and_window() {
        let h = Head::new(HeadOptions::default());
        let a = l(&[("__name__", "old")]);
        let b = l(&[("__name__", "new")]);
        let mut app = h.appender();
        app.append(&a, 1000, 1.0).unwrap();
        app.append(&b, 1000, 1.0).unwrap();
        app.commit().unwrap();
        for t in [DEFAULT_BLOCK_DURATION + 1000, 2 * DEFAULT_BLOCK_DURATION] {
            let mut app = h.appender();
            app.append(&b, t, 2.0).unwrap();
            app.commit().unwrap();
        }
        assert!(h.compactable());
        h.truncate_memory(DEFAULT_BLOCK_DURATION);
        assert_eq!(h.num_series(), 1);
        assert_eq!(h.min_time(), DEFAULT_BLOCK_DURATION + 1000);
        let mut app = h.appender();
        assert!(matches!(app.append(&a, 5, 1.0), Err(Error::OutOfBounds)));
    }

    #[test]
    fn concurrent_appends_and_reads_see_consistent_chunks() {
        let h = Arc::new(Head::new(HeadOptions::default()));
        let a = l(&[("__name__", "m")]);
        let w = {
            let h = h.clone();
            let a = a.clone();
            std::thread::spawn(move || {
                for i in 0..20_000i64 {
                    let mut app = h.appender();
                    app.append(&a, i, i as f64).unwrap();
                    app.commit().unwrap();
                }
            })
        };
        for _ in 0..200 {
            for s in h.select(&[], i64::MIN, i64::MAX) {
                let smp = s.samples(i64::MIN, i64::MAX).unwrap();
                for (i, (t, v)) in smp.iter().enumerate() {
                    assert_eq!(*t, i as i64);
                    assert_eq!(*v, i as f64);
                }
            }
        }
        w.join().unwrap();
        let s = h.select(&[], i64::MIN, i64::MAX);
        assert_eq!(s[0].samples(i64::MIN, i64::MAX).unwrap().len(), 20_000);
    }
}
