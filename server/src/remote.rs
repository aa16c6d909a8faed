//! Remote write receiver (`POST /api/v1/write`) and remote read
//! (`POST /api/v1/read`), wire-compatible with Prometheus.
//!
//! **Write.** Snappy block + protobuf 1.0 `WriteRequest`, decoded in place
//! by [`wire`] (no allocation per label) and appended through one appender
//! per request, committed once. [`cache::SeriesCache`] maps each series'
//! label bytes as sent to its head series ref, so every sample after a
//! series' first is appended by ref, without building, hashing or comparing
//! a label set (see `bench/remote_write.sh` in BENCHMARKS.md for why). A
//! body that does not decode is 400 with nothing committed. Samples rejected by the head's append rules
//! (out of order, duplicate timestamp, out of bounds) do not stop the
//! request: the rest is appended and committed, and the answer is 400 with
//! the reasons, so the sender does not retry what can never succeed (this is
//! Prometheus 3.x's receiver; 2.42 rolled the whole request back on the first
//! such sample). Undecodable bodies are 400, storage failures 500 (retried
//! by senders), success 204.
//!
//! **Read.** `accepted_response_types` is negotiated as Prometheus does
//! (first supported type wins; none given means SAMPLES). SAMPLES answers one
//! snappy `ReadResponse`; STREAMED_XOR_CHUNKS answers frames of
//! `uvarint(len) | CRC-32C(msg) big-endian | ChunkedReadResponse`, one
//! series per frame, split across frames at `remote_read_max_bytes_in_frame`.
//! External labels are added to every series (series labels win) and
//! equality matchers on them are dropped, so a sidecar can query with its
//! external labels.
//!
//! **Chunks cut to the window.** Prometheus streams every stored chunk that
//! overlaps the query as it is. So does this server, except for a chunk of
//! which less than half the time span lies inside `[start, end]`: that one
//! is cut, i.e. its samples inside the window are re-encoded into a new,
//! smaller XOR chunk ([`cut_chunk`]). Clients must already drop samples
//! outside the window (Prometheus' own chunks overlap it), so the answer
//! means the same to them; what changes is its size. An instant query's
//! 5-minute selection of 1-hour chunks (120 samples at 30 s) then ships and
//! decodes ~10 samples per series instead of 120, in the TSDB rather than
//! in the single querier; a range query's chunks are mostly inside its
//! window and go out untouched. Tombstoned series are re-encoded as before.
//!
//! Frames are written to the HTTP body in batches of up to
//! [`STREAM_BATCH_BYTES`] (one channel message and one body chunk per
//! batch, not per series): the bytes are those of Prometheus' stream.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prost::Message;
use strata_proto::prometheus as pb;
use strata_tsdb::chunkenc::{Encoding, XorChunk, XorIter};
use strata_tsdb::head::HistogramValue;
use strata_tsdb::labels::{Labels, MatchType, Matcher};
use strata_tsdb::series::{histograms_to_chunks, samples_to_chunks, ChunkSeries};

use crate::Shared;

pub(crate) mod cache;
mod wire;

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut m = msg.into();
    if !m.ends_with('\n') {
        m.push('\n');
    }
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        m,
    )
        .into_response()
}

/// Reads and snappy-decodes a body within the configured limits.
async fn read_snappy(shared: &Shared, body: Body) -> Result<Vec<u8>, Response> {
    let raw = axum::body::to_bytes(body, shared.opts.remote_max_body_bytes)
        .await
        .map_err(|e| {
            text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("reading request body: {e}"),
            )
        })?;
    let len = snap::raw::decompress_len(&raw)
        .map_err(|e| text(StatusCode::BAD_REQUEST, format!("snappy: {e}")))?;
    if len > shared.opts.remote_max_decoded_bytes {
        return Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "decoded body of {len} bytes exceeds the limit of {} bytes",
                shared.opts.remote_max_decoded_bytes
            ),
        ));
    }
    snap::raw::Decoder::new()
        .decompress_vec(&raw)
        .map_err(|e| text(StatusCode::BAD_REQUEST, format!("snappy: {e}")))
}

/// Converts wire labels to a label set, rejecting what the index cannot
/// hold (Prometheus would store such series and break later).
fn to_labels(ls: &[(&str, &str)]) -> Result<Labels, String> {
    for (i, (name, _)) in ls.iter().enumerate() {
        if name.is_empty() {
            return Err("invalid labels: empty label name".into());
        }
        if ls[..i].iter().any(|(o, _)| o == name) {
            return Err(format!("invalid labels: duplicate label name {name:?}"));
        }
    }
    let labels = Labels::from_pairs(ls.iter().copied());
    if labels.is_empty() {
        return Err("invalid labels: empty label set".into());
    }
    Ok(labels)
}

/// Most rejection reasons listed in a 400 answer; the rest are counted.
const MAX_REASONS: usize = 10;

enum WriteOutcome {
    Ok,
    /// The body is not a valid `WriteRequest` (400, nothing committed).
    Invalid(String),
    Rejected(Vec<String>, usize),
    Failed(String),
}

pub(crate) async fn write(shared: Arc<Shared>, body: Body) -> Response {
    let decoded = match read_snappy(&shared, body).await {
        Ok(b) => b,
        Err(r) => {
            shared.metrics.remote_write_requests.record(false);
            return r;
        }
    };
    match wire::metadata(&decoded) {
        Ok(md) if !md.is_empty() => {
            let dropped = shared.remote_metadata.record(&md);
            if dropped > 0 {
                tracing::warn!(
                    dropped,
                    "remote write: metadata store full; entries dropped"
                );
            }
        }
        Ok(_) => {}
        Err(e) => {
            shared.metrics.remote_write_requests.record(false);
            return text(StatusCode::BAD_REQUEST, e.to_string());
        }
    }
    let sh = shared.clone();
    let outcome = tokio::task::spawn_blocking(move || append(&sh, &decoded))
        .await
        .unwrap_or_else(|e| WriteOutcome::Failed(e.to_string()));
    shared.maybe_compact();
    match outcome {
        WriteOutcome::Ok => {
            shared.metrics.remote_write_requests.record(true);
            StatusCode::NO_CONTENT.into_response()
        }
        WriteOutcome::Invalid(e) => {
            shared.metrics.remote_write_requests.record(false);
            text(StatusCode::BAD_REQUEST, e)
        }
        WriteOutcome::Rejected(reasons, total) => {
            shared.metrics.remote_write_requests.record(false);
            let mut msg = reasons.join("\n");
            if total > reasons.len() {
                msg.push_str(&format!("\n({} more rejected)", total - reasons.len()));
            }
            tracing::warn!(rejected = total, first = %reasons.first().map(String::as_str).unwrap_or(""), "remote write: samples rejected");
            text(StatusCode::BAD_REQUEST, msg)
        }
        WriteOutcome::Failed(e) => {
            shared.metrics.remote_write_requests.record(false);
            tracing::error!(error = %e, "remote write: appending failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, e)
        }
    }
}

/// Why a write request stopped before its commit.
enum Stop {
    /// The body is not a valid `WriteRequest`: 400, nothing committed.
    Decode(wire::DecodeError),
    /// The storage failed: 500 (retried by senders), nothing committed.
    Storage(strata_tsdb::Error),
}

impl From<wire::DecodeError> for Stop {
    fn from(e: wire::DecodeError) -> Self {
        Stop::Decode(e)
    }
}

/// A remote-write histogram as the head takes it (its reset hint is passed
/// separately). Integer or float is decided as Prometheus 2.42 does: float
/// when the float count or float zero count is above 0 (so an all-zero
/// float histogram reads as an integer one, with its integer fields).
fn histogram_from_proto(hp: &pb::Histogram) -> Result<HistogramValue, String> {
    use pb::histogram::{Count, ZeroCount};
    use strata_tsdb::chunkenc::histogram::{FloatHistogram, Histogram, Span};
    if !hp.custom_values.is_empty() {
        return Err("custom-bucket histograms (schema -53) are not supported".into());
    }
    if !(-4..=8).contains(&hp.schema) {
        return Err(format!("histogram schema {} is not in -4..=8", hp.schema));
    }
    let spans = |ss: &[pb::BucketSpan]| -> Vec<Span> {
        ss.iter()
            .map(|s| Span {
                offset: s.offset,
                length: s.length,
            })
            .collect()
    };
    let float_count = match hp.count {
        Some(Count::CountFloat(c)) => Some(c),
        _ => None,
    };
    let float_zero = match hp.zero_count {
        Some(ZeroCount::ZeroCountFloat(c)) => Some(c),
        _ => None,
    };
    let is_float = float_count.is_some_and(|c| c > 0.0) || float_zero.is_some_and(|c| c > 0.0);
    let v = if is_float {
        HistogramValue::Float(FloatHistogram {
            schema: hp.schema,
            zero_threshold: hp.zero_threshold,
            zero_count: float_zero.unwrap_or(0.0),
            count: float_count.unwrap_or(0.0),
            sum: hp.sum,
            positive_spans: spans(&hp.positive_spans),
            negative_spans: spans(&hp.negative_spans),
            positive_buckets: hp.positive_counts.clone(),
            negative_buckets: hp.negative_counts.clone(),
        })
    } else {
        HistogramValue::Int(Histogram {
            schema: hp.schema,
            zero_threshold: hp.zero_threshold,
            zero_count: match hp.zero_count {
                Some(ZeroCount::ZeroCountInt(c)) => c,
                _ => 0,
            },
            count: match hp.count {
                Some(Count::CountInt(c)) => c,
                _ => 0,
            },
            sum: hp.sum,
            positive_spans: spans(&hp.positive_spans),
            negative_spans: spans(&hp.negative_spans),
            positive_buckets: hp.positive_deltas.clone(),
            negative_buckets: hp.negative_deltas.clone(),
        })
    };
    Ok(v)
}

/// The label set of a wire series, validated as [`to_labels`] does.
fn series_labels(s: &wire::WireSeries<'_>) -> Result<Result<Labels, String>, wire::DecodeError> {
    let mut pairs = Vec::with_capacity(s.labels.len());
    for l in &s.labels {
        pairs.push(wire::label(l)?);
    }
    Ok(to_labels(&pairs))
}

fn append(shared: &Shared, body: &[u8]) -> WriteOutcome {
    use strata_tsdb::Error as E;
    let mut app = shared.db.appender();
    let cache = &shared.write_cache;
    let mut reasons = Vec::new();
    let mut rejected = 0usize;
    let mut reject = |msg: String, n: usize| {
        rejected += n;
        if reasons.len() < MAX_REASONS {
            reasons.push(msg);
        }
    };
    let res = wire::for_each_series(body, |s| -> Result<(), Stop> {
        let hash = s.labels_hash();
        let mut cached = cache.get(hash, |key| s.labels_equal(key));
        // Built only on a cache miss (or for a rejection message).
        let mut labels: Option<Labels> = None;
        if cached.is_none() {
            match series_labels(s)? {
                Ok(l) => labels = Some(l),
                Err(e) => {
                    reject(e, (s.samples.len() + s.histograms.len()).max(1));
                    return Ok(());
                }
            }
        }
        for &(t, v) in &s.samples {
            let by_ref = match cached {
                Some(r) => match app.append_ref(r, t, v) {
                    // Truncated away since it was cached: by labels below.
                    Err(E::UnknownSeriesRef(_)) => None,
                    other => Some(other),
                },
                None => None,
            };
            let res = match by_ref {
                Some(res) => res,
                None => {
                    if labels.is_none() {
                        // Cached labels were valid when cached and the bytes are equal.
                        labels = series_labels(s)?.ok();
                    }
                    let Some(l) = &labels else {
                        reject("invalid labels".into(), 1);
                        continue;
                    };
                    match app.append(l, t, v) {
                        Ok(r) => {
                            if cached != Some(r) {
                                cache.insert(hash, s.labels_key(), r);
                                cached = Some(r);
                            }
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            match res {
                Ok(()) => {}
                Err(
                    e @ (E::OutOfOrderSample
                    | E::DuplicateSampleForTimestamp
                    | E::OutOfBounds
                    | E::InvalidLabels(_)),
                ) => {
                    if labels.is_none() {
                        labels = series_labels(s)?.ok();
                    }
                    let name = labels.as_ref().map(|l| l.to_string()).unwrap_or_default();
                    reject(format!("{e} for series {name}"), 1);
                }
                // Anything else is the storage failing: nothing is committed
                // and the sender retries.
                Err(e) => return Err(Stop::Storage(e)),
            }
        }
        if !s.histograms.is_empty() {
            if labels.is_none() {
                labels = series_labels(s)?.ok();
            }
            let Some(l) = &labels else {
                reject("invalid labels".into(), s.histograms.len());
                return Ok(());
            };
            for raw in &s.histograms {
                let hp = wire::histogram(raw)?;
                let v = match histogram_from_proto(&hp) {
                    Ok(v) => v,
                    Err(e) => {
                        reject(format!("{e} for series {l}"), 1);
                        continue;
                    }
                };
                // The hint is passed on as received (0..=3 checked there):
                // Prometheus logs it to its WAL as is.
                let hint = u8::try_from(hp.reset_hint).unwrap_or(u8::MAX);
                match app.append_histogram_hinted(l, hp.timestamp, v, hint) {
                    Ok(_) => {}
                    Err(
                        e @ (E::OutOfOrderSample
                        | E::DuplicateSampleForTimestamp
                        | E::OutOfBounds
                        | E::InvalidLabels(_)
                        | E::Invalid(_)),
                    ) => reject(format!("histogram: {e} for series {l}"), 1),
                    Err(e) => return Err(Stop::Storage(e)),
                }
            }
        }
        // Exemplars are not stored yet; like Prometheus with exemplar
        // storage off, they do not fail a request.
        Ok(())
    });
    match res {
        Ok(()) => {}
        Err(Stop::Decode(e)) => return WriteOutcome::Invalid(e.to_string()),
        Err(Stop::Storage(e)) => return WriteOutcome::Failed(e.to_string()),
    }
    let n = app.len();
    if let Err(e) = app.commit() {
        return WriteOutcome::Failed(e.to_string());
    }
    shared
        .metrics
        .remote_write_samples
        .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    shared
        .metrics
        .remote_write_rejected
        .fetch_add(rejected as u64, std::sync::atomic::Ordering::Relaxed);
    if rejected > 0 {
        WriteOutcome::Rejected(reasons, rejected)
    } else {
        WriteOutcome::Ok
    }
}

/// One decoded query of a read request.
struct ReadQuery {
    matchers: Vec<Matcher>,
    start: i64,
    end: i64,
}

fn to_matchers(ms: &[pb::LabelMatcher], external: &Labels) -> Result<Vec<Matcher>, String> {
    use pb::label_matcher::Type;
    let mut out = Vec::with_capacity(ms.len());
    for m in ms {
        let t = match Type::try_from(m.r#type) {
            Ok(Type::Eq) => MatchType::Equal,
            Ok(Type::Neq) => MatchType::NotEqual,
            Ok(Type::Re) => MatchType::Regex,
            Ok(Type::Nre) => MatchType::NotRegex,
            Err(_) => return Err(format!("invalid matcher type {}", m.r#type)),
        };
        // The data carries no external labels; a matcher that selects
        // exactly our external label must match their absence.
        let value = if t == MatchType::Equal && external.get(&m.name) == Some(m.value.as_str()) {
            ""
        } else {
            m.value.as_str()
        };
        out.push(Matcher::new(t, m.name.clone(), value).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// Series labels merged with the external labels, series labels winning.
fn wire_labels(ls: &Labels, external: &Labels) -> Vec<pb::Label> {
    let mut out: Vec<pb::Label> = ls
        .iter()
        .map(|l| pb::Label {
            name: l.name.to_string(),
            value: l.value.to_string(),
        })
        .collect();
    for e in external.iter() {
        if ls.get(&e.name).is_none() {
            out.push(pb::Label {
                name: e.name.to_string(),
                value: e.value.to_string(),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

pub(crate) async fn read(shared: Arc<Shared>, body: Body) -> Response {
    let decoded = match read_snappy(&shared, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let req = match pb::ReadRequest::decode(decoded.as_slice()) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    use pb::read_request::ResponseType;
    let accepted: Vec<i32> = if req.accepted_response_types.is_empty() {
        vec![ResponseType::Samples as i32]
    } else {
        req.accepted_response_types.clone()
    };
    let Some(kind) = accepted
        .iter()
        .find_map(|t| ResponseType::try_from(*t).ok())
    else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("server does not support any of the requested response types: {accepted:?}; supported: [SAMPLES STREAMED_XOR_CHUNKS]"),
        );
    };
    let external = shared.external_labels();
    let mut queries = Vec::with_capacity(req.queries.len());
    for q in &req.queries {
        match to_matchers(&q.matchers, &external) {
            Ok(matchers) => queries.push(ReadQuery {
                matchers,
                start: q.start_timestamp_ms,
                end: q.end_timestamp_ms,
            }),
            Err(e) => return text(StatusCode::BAD_REQUEST, e),
        }
    }
    shared
        .metrics
        .remote_read_queries
        .fetch_add(queries.len() as u64, std::sync::atomic::Ordering::Relaxed);
    match kind {
        ResponseType::Samples => {
            let sh = shared.clone();
            let res = tokio::task::spawn_blocking(move || read_samples(&sh, &queries, &external))
                .await
                .unwrap_or_else(|e| Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())));
            match res {
                Ok(bytes) => (
                    StatusCode::OK,
                    [
                        (header::CONTENT_TYPE, "application/x-protobuf"),
                        (header::CONTENT_ENCODING, "snappy"),
                    ],
                    bytes,
                )
                    .into_response(),
                Err((code, msg)) => text(code, msg),
            }
        }
        ResponseType::StreamedXorChunks => stream_chunks(shared, queries, external),
    }
}

fn read_samples(
    shared: &Shared,
    queries: &[ReadQuery],
    external: &Labels,
) -> Result<Vec<u8>, (StatusCode, String)> {
    let internal = |e: strata_tsdb::Error| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let limit = shared.opts.remote_read_sample_limit;
    let mut total = 0usize;
    let mut resp = pb::ReadResponse::default();
    for q in queries {
        let mut result = pb::QueryResult::default();
        for s in shared
            .db
            .select(&q.matchers, q.start, q.end)
            .map_err(internal)?
        {
            let samples = s.samples(q.start, q.end).map_err(internal)?;
            if samples.is_empty() {
                continue;
            }
            total += samples.len();
            if limit > 0 && total > limit {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!("exceeded sample limit ({limit})"),
                ));
            }
            result.timeseries.push(pb::TimeSeries {
                labels: wire_labels(&s.labels, external),
                samples: samples
                    .into_iter()
                    .map(|(t, v)| pb::Sample {
                        value: v,
                        timestamp: t,
                    })
                    .collect(),
                ..Default::default()
            });
        }
        resp.results.push(result);
    }
    snap::raw::Encoder::new()
        .compress_vec(&resp.encode_to_vec())
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// One length-prefixed, checksummed frame (Prometheus' `ChunkedWriter`).
pub fn frame(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 14);
    let mut n = msg.len() as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(&crc32c::crc32c(msg).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

/// The chunks of a series to ship: as stored, unless tombstones apply, in
/// which case the remaining samples are re-encoded (shipping stored chunks
/// would resurrect deleted data), or the chunk lies mostly outside the
/// window ([`should_cut`]), in which case it is cut to it.
pub(crate) fn wire_chunks(s: &ChunkSeries, start: i64, end: i64) -> Result<Vec<pb::Chunk>, String> {
    let mut out = Vec::new();
    if !s.deleted.is_empty() {
        let samples = s.samples(start, end).map_err(|e| e.to_string())?;
        let mut chunks = samples_to_chunks(&samples, 120);
        if s.chunks.iter().any(|c| c.encoding != Encoding::Xor) {
            let hs = s.histogram_samples(start, end).map_err(|e| e.to_string())?;
            chunks.extend(histograms_to_chunks(&hs, 120));
            chunks.sort_by_key(|c| c.min_time);
        }
        for c in chunks {
            push_chunk(&mut out, &c).map_err(|e| e.to_string())?;
        }
        return Ok(out);
    }
    for c in s.chunks.iter().filter(|c| c.overlaps(start, end)) {
        if c.encoding == Encoding::Xor && should_cut(c, start, end) {
            if let Some(cut) = cut_chunk(c, start, end)? {
                out.push(cut);
            }
        } else {
            push_chunk(&mut out, c).map_err(|e| e.to_string())?;
        }
    }
    Ok(out)
}

/// Whether less than half of the chunk's time span lies inside the window
/// (see the module docs): only then is re-encoding cheaper than shipping.
pub fn should_cut(c: &strata_tsdb::series::ChunkData, start: i64, end: i64) -> bool {
    if c.min_time >= start && c.max_time <= end {
        return false;
    }
    let span = i128::from(c.max_time) - i128::from(c.min_time);
    let inside = i128::from(c.max_time.min(end)) - i128::from(c.min_time.max(start));
    inside.max(0) * 2 < span
}

/// The samples of an XOR chunk inside `[start, end]` as a new chunk; `None`
/// when there are none. A chunk that does not decode is an error, as it is
/// for a reader of the stored chunk.
pub fn cut_chunk(
    c: &strata_tsdb::series::ChunkData,
    start: i64,
    end: i64,
) -> Result<Option<pb::Chunk>, String> {
    c.with_bytes(|_, data| {
        let mut it = XorIter::new(data);
        let mut chunk = XorChunk::new();
        let mut range: Option<(i64, i64)> = None;
        let mut next = it.seek(start);
        while let Some((t, v)) = next {
            if t > end {
                break;
            }
            chunk.append(t, v);
            range = Some((range.map_or(t, |r| r.0), t));
            next = it.next();
        }
        match it.err() {
            Some(e) => Err(format!(
                "chunk [{}, {}] does not decode: {e}",
                c.min_time, c.max_time
            )),
            None => Ok(range.map(|(min, max)| pb::Chunk {
                min_time_ms: min,
                max_time_ms: max,
                r#type: pb::chunk::Encoding::Xor as i32,
                data: Bytes::from(chunk.into_bytes()),
            })),
        }
    })
    .map_err(|e| e.to_string())?
}

fn push_chunk(
    out: &mut Vec<pb::Chunk>,
    c: &strata_tsdb::series::ChunkData,
) -> strata_tsdb::Result<()> {
    let (enc, data) = c.with_bytes(|enc, data| (enc, Bytes::copy_from_slice(data)))?;
    // Chunks go out in their stored encoding, as Prometheus 2.42 streams
    // them (native histogram chunks included); no other encoding is stored.
    let typ = match enc {
        Encoding::Xor => pb::chunk::Encoding::Xor,
        Encoding::Histogram => pb::chunk::Encoding::Histogram,
        Encoding::FloatHistogram => pb::chunk::Encoding::FloatHistogram,
        _ => return Ok(()),
    };
    out.push(pb::Chunk {
        min_time_ms: c.min_time,
        max_time_ms: c.max_time,
        r#type: typ as i32,
        data,
    });
    Ok(())
}

/// Frames are sent to the HTTP body in batches of about this size: one
/// frame per series would cost a channel hand-off and a body chunk each.
pub const STREAM_BATCH_BYTES: usize = 64 * 1024;

/// Streams frames from a blocking producer through a small channel, so a
/// large read never sits in memory whole and a slow client slows the reader.
fn stream_chunks(shared: Arc<Shared>, queries: Vec<ReadQuery>, external: Labels) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let max_frame = shared.opts.remote_read_max_bytes_in_frame;
    tokio::task::spawn_blocking(move || {
        // Frames not yet handed to the body; sent before an error too, so
        // the client sees every complete frame.
        let mut pending: Vec<u8> = Vec::new();
        let flush = |tx: &tokio::sync::mpsc::Sender<_>, pending: &mut Vec<u8>| -> bool {
            pending.is_empty()
                || tx
                    .blocking_send(Ok(Bytes::from(std::mem::take(pending))))
                    .is_ok()
        };
        let fail = |tx: &tokio::sync::mpsc::Sender<_>, pending: &mut Vec<u8>, e: String| {
            tracing::error!(error = %e, "remote read: streaming failed");
            if flush(tx, pending) {
                let _ = tx.blocking_send(Err(std::io::Error::other(e)));
            }
        };
        for (i, q) in queries.iter().enumerate() {
            let series = match shared.db.select(&q.matchers, q.start, q.end) {
                Ok(s) => s,
                Err(e) => return fail(&tx, &mut pending, e.to_string()),
            };
            for s in series {
                let labels = wire_labels(&s.labels, &external);
                let chunks = match wire_chunks(&s, q.start, q.end) {
                    Ok(c) => c,
                    Err(e) => return fail(&tx, &mut pending, e),
                };
                let labels_size: usize = labels.iter().map(|l| l.encoded_len()).sum();
                let budget = max_frame as i64 - labels_size as i64;
                let mut left = budget;
                let mut batch = Vec::new();
                let n = chunks.len();
                for (k, c) in chunks.into_iter().enumerate() {
                    left -= c.encoded_len() as i64;
                    batch.push(c);
                    if left > 0 && k + 1 < n {
                        continue;
                    }
                    let msg = pb::ChunkedReadResponse {
                        chunked_series: vec![pb::ChunkedSeries {
                            labels: labels.clone(),
                            chunks: std::mem::take(&mut batch),
                        }],
                        query_index: i as i64,
                    };
                    pending.extend_from_slice(&frame(&msg.encode_to_vec()));
                    if pending.len() >= STREAM_BATCH_BYTES && !flush(&tx, &mut pending) {
                        return; // client went away
                    }
                    left = budget;
                }
            }
        }
        flush(&tx, &mut pending);
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(
            "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse",
        ),
    );
    (StatusCode::OK, headers, Body::from_stream(stream)).into_response()
}
