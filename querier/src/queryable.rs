//! The PromQL engine's [`Queryable`] over the StoreAPI fan-out.
//!
//! [`QueryParams`] holds what one HTTP request decides (Thanos' `dedup`,
//! `replicaLabels[]`, `partial_response`, `max_source_resolution`,
//! `storeMatch[]`); [`FanoutQueryable::select`] turns one selector into a
//! `SeriesRequest`, runs [`crate::proxy::series`] on the querier's runtime,
//! decodes chunks and deduplicates replicas ([`crate::dedup`]).
//!
//! Chunk decoding ([`decode_series`]):
//! - raw XOR chunks are decoded with `strata_tsdb::chunkenc`; samples
//!   outside the selector's `[start, end]` are dropped;
//! - downsampled chunks (no raw data, from a store gateway over 5m/1h
//!   blocks) are read through the aggregate the enclosing function needs, as
//!   Thanos' `aggrsFromFunc` picks it: `counter` for rate/increase/irate/
//!   resets, `min`/`max`/`count`/`sum` for `min_over_time`… and the matching
//!   aggregations, and otherwise `sum / count` per sample (the average, what
//!   Thanos' downsampled iterator gives a plain selector). The `counter`
//!   aggregate is used as stored; Thanos' extra handling of a counter reset
//!   between two downsampled chunks is not reproduced;
//! - native histogram chunks (StoreAPI encodings HISTOGRAM and
//!   FLOAT_HISTOGRAM, the TSDB's chunk encodings 2 and 3) are decoded by
//!   [`decode_histograms`] with `strata_tsdb::series::decode_histogram_chunk`,
//!   each sample with the counter reset hint its chunk gives it. Replicas
//!   are deduplicated with the same penalty algorithm as floats, run over
//!   the samples' timestamps (the histogram's count stands in for the
//!   value, without counter adjustment: Thanos adjusts only floats).
//!
//! A per-query sample budget (`--query.max-samples`) bounds what is decoded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use strata_promql::FloatHistogram;
use strata_promql::{
    PartitionedQuery, PartitionedResult, Queryable, SelectHints, SelectRequest, SelectResult,
    StorageError, StorageSeries,
};
use strata_proto::thanos::{
    chunk::Encoding, Aggr, AggrChunk, Chunk, Func, Grouping, PartialResponseStrategy, QueryHints,
    Range, SeriesRequest,
};
use strata_tsdb::chunkenc::xor::XorIter;
use strata_tsdb::chunkenc::Encoding as TsdbEncoding;
use strata_tsdb::labels::Matcher;
use strata_tsdb::series::{decode_histogram_chunk, HistogramSample};

use crate::dedup;
use crate::endpoints::{Endpoint, EndpointSet};
use crate::proxy::{self, Fanout, ProxyOptions};

/// Per-request settings.
#[derive(Clone, Debug)]
pub struct QueryParams {
    pub dedup: bool,
    pub replica_labels: Vec<String>,
    pub partial_response: bool,
    /// `max_source_resolution` in ms (0 = raw only).
    pub max_resolution_ms: i64,
    pub store_matchers: Vec<Vec<Matcher>>,
    pub deadline: Option<Instant>,
    /// Most samples decoded by the whole query; 0 = no limit.
    pub max_samples: usize,
}

impl Default for QueryParams {
    fn default() -> Self {
        QueryParams {
            dedup: true,
            replica_labels: Vec::new(),
            partial_response: true,
            max_resolution_ms: 0,
            store_matchers: Vec::new(),
            deadline: None,
            max_samples: 0,
        }
    }
}

impl QueryParams {
    /// The replica labels to remove: none without deduplication.
    pub fn strip_labels(&self) -> Vec<String> {
        if self.dedup {
            self.replica_labels.clone()
        } else {
            Vec::new()
        }
    }

    pub fn fanout(&self) -> Fanout {
        Fanout {
            partial_response: self.partial_response,
            store_matchers: self.store_matchers.clone(),
            strip_labels: self.strip_labels(),
            deadline: self.deadline,
        }
    }
}

/// Thanos' `aggrsFromFunc`: the downsampling aggregates a function needs.
pub fn aggrs_from_func(f: Option<&str>) -> Vec<Aggr> {
    let f = f.unwrap_or("");
    if f == "min" || f.starts_with("min_") {
        vec![Aggr::Min]
    } else if f == "max" || f.starts_with("max_") {
        vec![Aggr::Max]
    } else if f == "count" || f.starts_with("count_") {
        vec![Aggr::Count]
    } else if f.starts_with("sum_") {
        vec![Aggr::Sum]
    } else if dedup::is_counter_func(Some(f)) {
        vec![Aggr::Counter]
    } else {
        vec![Aggr::Count, Aggr::Sum]
    }
}

/// The StoreAPI request for one selector.
pub fn series_request(matchers: &[Matcher], hints: &SelectHints, p: &QueryParams) -> SeriesRequest {
    let func = hints.func.clone();
    SeriesRequest {
        min_time: hints.start,
        max_time: hints.end,
        matchers: proxy::to_pb_matchers(matchers),
        max_resolution_window: p.max_resolution_ms,
        aggregates: aggrs_from_func(func.as_deref())
            .into_iter()
            .map(|a| a as i32)
            .collect(),
        partial_response_disabled: !p.partial_response,
        partial_response_strategy: if p.partial_response {
            PartialResponseStrategy::Warn
        } else {
            PartialResponseStrategy::Abort
        } as i32,
        skip_chunks: func.as_deref() == Some("series"),
        step: hints.step,
        range: hints.range,
        query_hints: Some(QueryHints {
            step_millis: hints.step,
            func: func.clone().map(|name| Func { name }),
            grouping: (!hints.grouping.is_empty() || hints.by).then(|| Grouping {
                by: hints.by,
                labels: hints.grouping.clone(),
            }),
            range: (hints.range > 0).then_some(Range {
                millis: hints.range,
            }),
            ..Default::default()
        }),
        without_replica_labels: p.strip_labels(),
        // As Thanos' querier (`store.DefaultResponseBatchSize`): stores that
        // support it send `SeriesBatch` frames, one gRPC message per 64
        // series instead of one per series; others ignore the field.
        response_batch_size: SERIES_RESPONSE_BATCH_SIZE,
        ..Default::default()
    }
}

/// Series per `SeriesBatch` frame asked of the stores (Thanos' default).
pub const SERIES_RESPONSE_BATCH_SIZE: i64 = 64;

/// Samples of one XOR chunk within `[start, end]`.
fn decode_xor(c: &Chunk, start: i64, end: i64, out: &mut Vec<(i64, f64)>) -> Result<(), String> {
    if c.r#type != Encoding::Xor as i32 {
        return Err(format!("chunk encoding {} is not supported", c.r#type));
    }
    let mut it = XorIter::new(&c.data);
    for (t, v) in it.by_ref() {
        if t > end {
            break;
        }
        if t >= start {
            out.push((t, v));
        }
    }
    if let Some(e) = it.err() {
        return Err(format!("corrupt XOR chunk: {e}"));
    }
    Ok(())
}

/// The samples one chunk contributes under `func`; see the module docs.
fn decode_chunk(
    c: &AggrChunk,
    func: Option<&str>,
    start: i64,
    end: i64,
    out: &mut Vec<(i64, f64)>,
) -> Result<(), String> {
    if let Some(raw) = &c.raw {
        return decode_xor(raw, start, end, out);
    }
    let pick = |a: Aggr| -> Option<&Chunk> {
        match a {
            Aggr::Raw => c.raw.as_ref(),
            Aggr::Count => c.count.as_ref(),
            Aggr::Sum => c.sum.as_ref(),
            Aggr::Min => c.min.as_ref(),
            Aggr::Max => c.max.as_ref(),
            Aggr::Counter => c.counter.as_ref(),
        }
    };
    let aggrs = aggrs_from_func(func);
    if let [one] = aggrs.as_slice() {
        if let Some(ch) = pick(*one) {
            return decode_xor(ch, start, end, out);
        }
    }
    // The average: sum / count at equal timestamps.
    match (c.sum.as_ref(), c.count.as_ref()) {
        (Some(sum), Some(count)) => {
            let (mut s, mut n) = (Vec::new(), Vec::new());
            decode_xor(sum, start, end, &mut s)?;
            decode_xor(count, start, end, &mut n)?;
            let mut j = 0;
            for (t, sv) in s {
                while j < n.len() && n[j].0 < t {
                    j += 1;
                }
                if j < n.len() && n[j].0 == t && n[j].1 != 0.0 {
                    out.push((t, sv / n[j].1));
                }
            }
            Ok(())
        }
        _ => Err(format!(
            "downsampled chunk [{}, {}] has none of the aggregates {:?}",
            c.min_time, c.max_time, aggrs
        )),
    }
}

/// Whether a StoreAPI chunk holds native histograms.
fn is_histogram_chunk(c: &AggrChunk) -> bool {
    c.raw.as_ref().is_some_and(|r| {
        r.r#type == Encoding::Histogram as i32 || r.r#type == Encoding::FloatHistogram as i32
    })
}

/// Decodes the native histogram chunks of one merged series (see the module
/// docs); float chunks are ignored here and histogram chunks by
/// [`decode_series`].
pub fn decode_histograms(
    chunks: &[AggrChunk],
    start: i64,
    end: i64,
    dedup_on: bool,
) -> Result<DecodedHistograms, String> {
    let hist: Vec<&AggrChunk> = chunks.iter().filter(|c| is_histogram_chunk(c)).collect();
    if hist.is_empty() {
        return Ok(DecodedHistograms::default());
    }
    let mut replicas: Vec<Vec<HistogramSample>> = Vec::new();
    for r in dedup::overlap_split(hist) {
        let mut out = Vec::new();
        for c in r.iter().filter_map(|c| c.raw.as_ref()) {
            let enc = if c.r#type == Encoding::Histogram as i32 {
                TsdbEncoding::Histogram
            } else {
                TsdbEncoding::FloatHistogram
            };
            decode_histogram_chunk(enc, &c.data, start, end, &mut out)
                .map_err(|e| format!("corrupt histogram chunk: {e}"))?;
        }
        out.dedup_by_key(|s| s.t);
        replicas.push(out);
    }
    let chosen: Vec<i64> = if dedup_on && replicas.len() > 1 {
        let proj: Vec<Vec<(i64, f64)>> = replicas
            .iter()
            .map(|r| r.iter().map(|s| (s.t, s.h.count)).collect())
            .collect();
        dedup::penalty_merge(&proj, false)
            .into_iter()
            .map(|(t, _)| t)
            .collect()
    } else {
        Vec::new()
    };
    let mut all: Vec<HistogramSample> = replicas.into_iter().flatten().collect();
    // Stable: at equal timestamps the first replica's sample comes first.
    all.sort_by_key(|s| s.t);
    all.dedup_by_key(|s| s.t);
    if dedup_on && !chosen.is_empty() {
        // Keep the timestamps the penalty merge picked; a timestamp both
        // replicas share gives the first replica's sample, as for floats.
        let mut keep = chosen.into_iter().peekable();
        all.retain(|s| {
            while keep.peek().is_some_and(|&t| t < s.t) {
                keep.next();
            }
            keep.peek() == Some(&s.t)
        });
    }
    let mut out = DecodedHistograms::default();
    for s in all {
        if s.is_stale() {
            // The engine's staleness signal is the float stale NaN; the
            // marker's sum is exactly that NaN (as the TSDB backend does).
            out.stale.push((s.t, s.h.sum));
        } else {
            out.samples
                .push((s.t, strata_promql::histogram::from_stored(s)));
        }
    }
    Ok(out)
}

/// What [`decode_histograms`] gives: the histogram samples, and staleness
/// markers as float samples for the engine.
#[derive(Debug, Default)]
pub struct DecodedHistograms {
    pub samples: Vec<(i64, FloatHistogram)>,
    pub stale: Vec<(i64, f64)>,
}

/// Decodes one merged series: pseudo-replicas, then dedup or chain merge.
pub fn decode_series(
    chunks: Vec<AggrChunk>,
    func: Option<&str>,
    start: i64,
    end: i64,
    dedup_on: bool,
) -> Result<Vec<(i64, f64)>, String> {
    let replicas = dedup::overlap_split(
        chunks
            .into_iter()
            .filter(|c| !is_histogram_chunk(c))
            .collect(),
    );
    let mut decoded = Vec::with_capacity(replicas.len());
    for r in replicas {
        let mut s = Vec::new();
        for c in &r {
            decode_chunk(c, func, start, end, &mut s)?;
        }
        // Chunks of a pseudo-replica do not overlap, but keep the order
        // strict even for a store that sends equal boundary timestamps.
        s.dedup_by_key(|x| x.0);
        decoded.push(s);
    }
    Ok(if dedup_on && decoded.len() > 1 {
        dedup::penalty_merge(&decoded, dedup::is_counter_func(func))
    } else {
        dedup::chain_merge(decoded)
    })
}

/// Most selectors of one query fetched at the same time: a query is
/// bounded in length, but hundreds of selectors times every store would
/// still be a burst of streams no store should see from one request.
pub const MAX_CONCURRENT_SELECTS: usize = 16;

/// `--query.max-samples` as Prometheus words its error.
pub const TOO_MANY_SAMPLES: &str =
    "query processing would load too many samples into memory in query execution";

/// The engine's storage for one request.
pub struct FanoutQueryable {
    set: Arc<EndpointSet>,
    rt: tokio::runtime::Handle,
    params: QueryParams,
    proxy: ProxyOptions,
    decoded: AtomicUsize,
}

impl FanoutQueryable {
    /// The active endpoints and their external label names, when the
    /// engine may hand them whole queries: every active store serves the
    /// Query API and has one external label set, all sets with the same
    /// names and pairwise different, none containing a replica label being
    /// deduplicated (replicas hold the same data, and merging them is the
    /// querier's job). Never with `storeMatch[]`, a downsampled resolution,
    /// or `--query.mode=local`.
    fn partition(&self) -> Option<(Vec<Arc<Endpoint>>, Vec<String>)> {
        if !self.proxy.distributed
            || !self.params.store_matchers.is_empty()
            || self.params.max_resolution_ms != 0
        {
            return None;
        }
        let eps = self.set.active();
        let strip = self.params.strip_labels();
        let mut names: Option<Vec<String>> = None;
        let mut seen = std::collections::HashSet::new();
        for ep in &eps {
            let meta = ep.meta()?;
            let [ls] = meta.label_sets.as_slice() else {
                return None;
            };
            if !meta.has_query_api
                || ls.is_empty()
                || ls.iter().any(|l| strip.iter().any(|r| *r == *l.name))
            {
                return None;
            }
            let n: Vec<String> = ls.iter().map(|l| l.name.to_string()).collect();
            match &names {
                None => names = Some(n),
                Some(prev) if *prev != n => return None,
                Some(_) => {}
            }
            if !seen.insert(ls.clone()) {
                return None;
            }
        }
        // A fixed order (by label set), so answers concatenate the same way
        // every time.
        let mut eps = eps;
        eps.sort_by_cached_key(|e| e.meta().map(|m| m.label_sets));
        Some((eps, names?))
    }

    pub fn new(
        set: Arc<EndpointSet>,
        rt: tokio::runtime::Handle,
        params: QueryParams,
        proxy: ProxyOptions,
    ) -> Self {
        FanoutQueryable {
            set,
            rt,
            params,
            proxy,
            decoded: AtomicUsize::new(0),
        }
    }

    /// Decodes the chunks of one selector's merged series into samples.
    fn decode(
        &self,
        set: proxy::SeriesSet,
        hints: &SelectHints,
    ) -> Result<SelectResult, StorageError> {
        let func = hints.func.as_deref();
        let mut out = SelectResult {
            series: Vec::with_capacity(set.series.len()),
            warnings: set.warnings,
        };
        let mut bad_chunks = 0usize;
        let mut first_bad = String::new();
        for s in set.series {
            let (mut samples, h) = if func == Some("series") {
                (Vec::new(), DecodedHistograms::default())
            } else {
                let decoded =
                    decode_histograms(&s.chunks, hints.start, hints.end, self.params.dedup)
                        .and_then(|h| {
                            decode_series(s.chunks, func, hints.start, hints.end, self.params.dedup)
                                .map(|f| (f, h))
                        });
                match decoded {
                    Ok(v) => v,
                    Err(e) => {
                        bad_chunks += 1;
                        if first_bad.is_empty() {
                            first_bad = format!("{}: {e}", s.labels);
                        }
                        continue;
                    }
                }
            };
            let histograms = h.samples;
            if !h.stale.is_empty() {
                samples.extend(h.stale);
                // Stable: a float and a marker at one timestamp keep order.
                samples.sort_by_key(|p| p.0);
            }
            if self.params.max_samples > 0 {
                // A histogram counts as one sample here; the engine weighs
                // it by its size against its own limit.
                let n = samples.len() + histograms.len();
                let total = self.decoded.fetch_add(n, Ordering::Relaxed) + n;
                if total > self.params.max_samples {
                    return Err(StorageError(TOO_MANY_SAMPLES.to_string()));
                }
            }
            if samples.is_empty() && histograms.is_empty() && func != Some("series") {
                continue;
            }
            out.series.push(StorageSeries {
                labels: s.labels,
                samples,
                histograms,
            });
        }
        if bad_chunks > 0 {
            out.warnings.push(format!(
                "{bad_chunks} series skipped because their chunks cannot be read, first: {first_bad}"
            ));
        }
        Ok(out)
    }
}

impl Queryable for FanoutQueryable {
    fn select(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<SelectResult, StorageError> {
        let mut v = self.select_many(&[SelectRequest { matchers, hints }]);
        v.pop()
            .unwrap_or_else(|| Err(StorageError("no answer".to_string())))
    }

    /// All of a query's selectors fan out at once (one round trip to the
    /// stores for the whole query, not one per selector); decoding follows
    /// on this thread, in request order.
    ///
    /// The fan-out runs as one task on the runtime's workers, and this
    /// (blocking) thread waits for the task as a whole. Driving it here
    /// with `block_on` instead would wake this thread for every gRPC frame
    /// of every store: with 8 stores that was 35 context switches per
    /// trivial query against 20 now (CPU did not measurably change).
    ///
    /// All selectors' merged (still encoded) series are held until the
    /// last fan-out ends, then decoded one selector at a time; the sample
    /// budget (`--query.max-samples`) applies while decoding, the series
    /// limit while fetching.
    fn select_many(
        &self,
        requests: &[SelectRequest<'_>],
    ) -> Vec<Result<SelectResult, StorageError>> {
        let fo = self.params.fanout();
        let eps = self.set.active();
        let calls: Vec<_> = requests
            .iter()
            .map(|r| {
                let req = series_request(r.matchers, r.hints, &self.params);
                let (eps, fo, opts) = (eps.clone(), fo.clone(), self.proxy.clone());
                async move {
                    proxy::series(&eps, req, &fo, &opts)
                        .await
                        .map_err(|e| StorageError(e.to_string()))
                }
            })
            .collect();
        // At most MAX_CONCURRENT_SELECTS selectors in flight (each one a
        // call to every matching store), answers kept in request order.
        let task = self.rt.spawn(
            futures::stream::iter(calls)
                .buffered(MAX_CONCURRENT_SELECTS)
                .collect::<Vec<_>>(),
        );
        let fetched = match self.rt.block_on(task) {
            Ok(v) => v,
            Err(e) => {
                let msg = format!("fan-out task failed: {e}");
                return requests
                    .iter()
                    .map(|_| Err(StorageError(msg.clone())))
                    .collect();
            }
        };
        fetched
            .into_iter()
            .zip(requests)
            .map(|(set, r)| set.and_then(|set| self.decode(set, r.hints)))
            .collect()
    }

    /// The external label names, when every active store serves the Query
    /// API and the stores partition the data (see [`Self::partition`]).
    fn partition_labels(&self) -> Option<Vec<String>> {
        self.partition().map(|(_, names)| names)
    }

    /// Sends the query to every active store over the Query API. `None`
    /// (evaluate locally) when a time is not a whole second (the API's
    /// wire unit) or any store fails: the local evaluation then reports the
    /// failure as usual (a warning under partial response, else an error).
    fn eval_partitioned(
        &self,
        q: &PartitionedQuery<'_>,
    ) -> Option<Result<PartitionedResult, StorageError>> {
        let whole = |ms: i64| (ms % 1000 == 0).then_some(ms / 1000);
        let wq = proxy::WholeQuery {
            query: q.query.to_string(),
            start_s: whole(q.start)?,
            end_s: whole(q.end)?,
            step_s: whole(q.step)?,
            lookback_s: whole(q.lookback)?,
            replica_labels: self.params.strip_labels(),
            max_points: q.max_points,
        };
        // Checked again on the endpoints actually asked: the active set may
        // have changed since the engine asked for the partition labels.
        let (eps, names) = self.partition()?;
        if names != q.labels {
            return None;
        }
        let (fo, opts) = (self.params.fanout(), self.proxy.clone());
        let task = self
            .rt
            .spawn(async move { proxy::query_whole(&eps, wq, &fo, &opts).await });
        match self.rt.block_on(task) {
            Ok(Ok((series, warnings))) => Some(Ok(PartitionedResult { series, warnings })),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "distributed query failed; evaluating locally");
                None
            }
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_tsdb::chunkenc::xor::XorChunk;

    fn xor(samples: &[(i64, f64)]) -> Chunk {
        let mut c = XorChunk::new();
        for &(t, v) in samples {
            c.append(t, v);
        }
        Chunk {
            r#type: Encoding::Xor as i32,
            data: c.into_bytes().into(),
            hash: 0,
        }
    }

    #[test]
    fn aggregates_follow_thanos() {
        assert_eq!(aggrs_from_func(Some("rate")), vec![Aggr::Counter]);
        assert_eq!(aggrs_from_func(Some("min_over_time")), vec![Aggr::Min]);
        assert_eq!(aggrs_from_func(Some("sum_over_time")), vec![Aggr::Sum]);
        assert_eq!(aggrs_from_func(Some("sum")), vec![Aggr::Count, Aggr::Sum]);
        assert_eq!(aggrs_from_func(None), vec![Aggr::Count, Aggr::Sum]);
    }

    #[test]
    fn raw_and_downsampled_chunks_decode() {
        let raw = AggrChunk {
            min_time: 0,
            max_time: 30,
            raw: Some(xor(&[(0, 1.0), (10, 2.0), (20, 3.0), (30, 4.0)])),
            ..Default::default()
        };
        let s = decode_series(vec![raw], None, 10, 20, true).unwrap();
        assert_eq!(s, vec![(10, 2.0), (20, 3.0)]);

        let down = AggrChunk {
            min_time: 0,
            max_time: 600_000,
            sum: Some(xor(&[(300_000, 10.0), (600_000, 30.0)])),
            count: Some(xor(&[(300_000, 5.0), (600_000, 10.0)])),
            counter: Some(xor(&[(300_000, 7.0), (600_000, 9.0)])),
            ..Default::default()
        };
        let avg = decode_series(vec![down.clone()], None, 0, 600_000, true).unwrap();
        assert_eq!(avg, vec![(300_000, 2.0), (600_000, 3.0)]);
        let ctr = decode_series(vec![down], Some("rate"), 0, 600_000, true).unwrap();
        assert_eq!(ctr, vec![(300_000, 7.0), (600_000, 9.0)]);
    }

    #[test]
    fn corrupt_chunk_is_an_error() {
        let bad = AggrChunk {
            raw: Some(Chunk {
                r#type: 0,
                data: vec![0u8, 5, 1].into(),
                hash: 0,
            }),
            ..Default::default()
        };
        assert!(decode_series(vec![bad], None, 0, 10, true).is_err());
    }
}
