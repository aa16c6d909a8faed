//! The StoreAPI served by `strata tsdb` itself (`--grpc-address`), as Thanos
//! Receive serves its own TSDBs (`pkg/store/tsdb.go`).
//!
//! Why: behind a sidecar, every selector of a federated query costs two
//! hops per cluster (querier → sidecar over gRPC, sidecar → TSDB over remote
//! read), each with its encode, decode and thread wake-ups. Pointing the
//! querier at the TSDB's own StoreAPI removes the middle process from the
//! read path; the sidecar still uploads blocks (and can still serve the
//! StoreAPI, e.g. next to a real Prometheus). Both paths answer the same,
//! which `server/tests/it/storeapi.rs` checks with the acceptance suite.
//!
//! [`TsdbStore`] implements `thanos.Store`, `thanos.info.Info` and
//! `thanos.Metadata`:
//! - `Series`: matchers on external labels decide from the external label
//!   values alone ([`match_external`]); no matcher left is
//!   `InvalidArgument`, as in Thanos. One [`strata_tsdb::db::Db::select`] on
//!   a blocking thread; chunks go out as the remote read ships them
//!   (`remote::wire_chunks`: stored, or cut to the window when mostly
//!   outside it, or re-encoded under tombstones); external labels win over
//!   series labels of the same name; `without_replica_labels` are removed,
//!   then series are re-sorted and equal ones merged ([`sort_and_merge`]).
//!   `skip_chunks`, `limit` and `response_batch_size` as in the sidecar.
//! - Small calls (Series over an hour or less, instant queries and range
//!   queries over an hour or less) run their storage work inline on the
//!   runtime worker, one call at a time; the rest on blocking threads (see
//!   [`TsdbStore::run_storage`] for why and what was measured).
//! - Limits: at most `--query.max-concurrency` Series calls at once (the
//!   rest wait), and `--storage.remote.read-sample-limit` samples per call,
//!   counted from the stored chunks' headers before anything is encoded
//!   (`ResourceExhausted`, as Thanos' store limits answer).
//! - `LabelNames` / `LabelValues`: the blocks and head that overlap the
//!   request's range, as the HTTP API picks them; external labels join as
//!   in the sidecar.
//! - `Info`: component type `receive` (what Thanos calls a TSDB that serves
//!   its own StoreAPI), the external labels, min time from the storage.
//! - `MetricMetadata`: the scraped and remote-written metadata the HTTP
//!   `/api/v1/metadata` serves, with Prometheus' `limit` rule (negative:
//!   none; 0: nothing).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use strata_proto::prometheus_copy;
use strata_proto::storeapi::{
    aggr_chunk_from_remote, convert_matchers, finish_label_names, finish_label_values,
    finish_labels, frame_stream, label_values_plan, match_external, sort_and_merge, to_frames,
    tsdb_info, FrameStream,
};
use strata_proto::thanos::info::info_server::Info;
use strata_proto::thanos::info::{InfoRequest, InfoResponse};
use strata_proto::thanos::metadata_server::Metadata;
use strata_proto::thanos::query_server::Query;
use strata_proto::thanos::store_server::Store;
use strata_proto::thanos::{
    metric_metadata_response, AggrChunk, LabelNamesRequest, LabelNamesResponse, LabelValuesRequest,
    LabelValuesResponse, Meta, MetricMetadata, MetricMetadataEntry, MetricMetadataRequest,
    MetricMetadataResponse, Series, SeriesRequest, SeriesResponse,
};
use strata_proto::thanos::{
    query_range_response, query_response, Label, QueryRangeRequest, QueryRangeResponse,
    QueryRequest, QueryResponse,
};
use strata_tsdb::labels::Matcher;
use strata_tsdb::series::ChunkSeries;
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};

use crate::Shared;

/// The StoreAPI, Info and Metadata services over the server's storage.
#[derive(Clone)]
pub struct TsdbStore {
    shared: Arc<Shared>,
    series_slots: Arc<Semaphore>,
    /// Whether a Series call runs storage work on a runtime worker now
    /// ([`Self::run_storage`]).
    inline_busy: Arc<AtomicBool>,
}

impl TsdbStore {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let slots = shared.opts.max_concurrency.max(1);
        TsdbStore {
            shared,
            series_slots: Arc::new(Semaphore::new(slots)),
            inline_busy: Arc::new(AtomicBool::new(false)),
        }
    }

    /// External labels as sorted pairs (the config keeps them sorted).
    fn ext(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .shared
            .external_labels()
            .iter()
            .map(|l| (l.name.to_string(), l.value.to_string()))
            .collect();
        v.sort();
        v
    }

    fn min_time(&self) -> i64 {
        // Unknown (no data yet): advertise everything, so a querier does not
        // prune this store until its next Info poll after data arrives.
        self.shared.db.min_time().unwrap_or(i64::MIN)
    }

    async fn series_frames(&self, r: SeriesRequest) -> Result<Vec<SeriesResponse>, Status> {
        let ext = self.ext();
        let matchers = convert_matchers(&r.matchers)?;
        let Some(rest) = match_external(&ext, matchers) else {
            return Ok(Vec::new());
        };
        if rest.is_empty() {
            return Err(Status::invalid_argument(
                "no matchers specified (excluding external labels)",
            ));
        }
        if r.min_time > r.max_time {
            return Ok(Vec::new());
        }
        let _slot = self
            .series_slots
            .acquire()
            .await
            .map_err(|_| Status::unavailable("server is stopping"))?;
        let shared = self.shared.clone();
        let (limit, batch) = (r.limit, r.response_batch_size);
        let range = r.max_time.saturating_sub(r.min_time);
        let mut series = self
            .run_storage(range, move || select_series(&shared, &rest, &r, &ext))
            .await??;
        sort_and_merge(&mut series);
        if let Ok(limit) = usize::try_from(limit) {
            if limit > 0 {
                series.truncate(limit);
            }
        }
        Ok(to_frames(series, batch))
    }

    /// Runs storage work (which may block: page faults on mmapped blocks,
    /// long selects) without stalling the runtime.
    ///
    /// Normally on a blocking-pool thread. But waking that thread and then
    /// waking a worker back costs two context switches per call, more than
    /// a small select itself on a loaded 2-core machine: measured with 8
    /// TSDBs behind one querier (`bench/query.sh`, `perf stat`), a tsdb's
    /// Series call went from 4.7 to 1.3 context switches and from 0.23 to
    /// 0.15 ms of CPU when run inline. So a call over at most
    /// [`INLINE_MAX_RANGE_MS`] (a Series call's time range, a query's
    /// evaluation window: an instant query counts as short even if its
    /// selectors read further back) runs right on its runtime worker, provided
    /// no other call is doing so: at most one worker is ever busy with
    /// storage work, and the others (which steal its queued tasks) keep
    /// serving HTTP, scrapes and remote write. (`block_in_place` was tried:
    /// it hands the worker's core to a woken thread, and saved nothing.)
    async fn run_storage<T: Send + 'static>(
        &self,
        range_ms: i64,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Status> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let multi_thread = Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread;
        if multi_thread
            && range_ms <= INLINE_MAX_RANGE_MS
            && self
                .inline_busy
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            let _slot = InlineSlot(&self.inline_busy);
            return Ok(f());
        }
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Status::internal(e.to_string()))
    }

    fn info_response(&self) -> InfoResponse {
        let mut info = tsdb_info("receive", &self.ext(), self.min_time());
        // The Query API (whole queries, evaluated here) is served too.
        info.query = Some(strata_proto::thanos::info::QueryApiInfo {});
        info
    }
}

/// Samples in a stored chunk: every Prometheus chunk encoding starts with
/// a big-endian u16 sample count.
fn chunk_samples(c: &strata_tsdb::series::ChunkData) -> usize {
    c.with_bytes(|_, d| {
        d.get(..2)
            .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    })
    .unwrap_or(0)
}

/// The blocking part of `Series`: select, check the sample limit, encode.
fn select_series(
    shared: &Shared,
    matchers: &[Matcher],
    r: &SeriesRequest,
    ext: &[(String, String)],
) -> Result<Vec<Series>, Status> {
    let selected = shared
        .db
        .select(matchers, r.min_time, r.max_time)
        .map_err(|e| Status::internal(e.to_string()))?;
    let limit = shared.opts.remote_read_sample_limit;
    if limit > 0 {
        let total: usize = selected
            .iter()
            .flat_map(|s| s.chunks.iter())
            .filter(|c| c.overlaps(r.min_time, r.max_time))
            .map(chunk_samples)
            .sum();
        if total > limit {
            return Err(Status::resource_exhausted(format!(
                "exceeded sample limit ({limit}): the request selects {total} samples"
            )));
        }
    }
    let mut out = Vec::with_capacity(selected.len());
    for s in selected {
        let chunks = if r.skip_chunks {
            if !s.chunks.iter().any(|c| c.overlaps(r.min_time, r.max_time)) {
                continue;
            }
            Vec::new()
        } else {
            let chunks = store_chunks(&s, r.min_time, r.max_time)?;
            if chunks.is_empty() {
                continue;
            }
            chunks
        };
        let labels = s
            .labels
            .iter()
            .map(|l| (l.name.to_string(), l.value.to_string()))
            .collect();
        out.push(Series {
            labels: finish_labels(labels, ext, &r.without_replica_labels),
            chunks,
        });
    }
    Ok(out)
}

/// A series' chunks in StoreAPI form, from what the remote read would ship.
fn store_chunks(s: &ChunkSeries, start: i64, end: i64) -> Result<Vec<AggrChunk>, Status> {
    crate::remote::wire_chunks(s, start, end)
        .and_then(|wire| wire.into_iter().map(aggr_chunk_from_remote).collect())
        .map_err(Status::internal)
}

/// Most steps a `QueryRange` request may ask for, as the HTTP API allows.
const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// Series calls over at most this much time may run their storage work
/// on a runtime worker ([`TsdbStore::run_storage`]): an instant query's
/// selectors ask for minutes (lookback, `rate` windows), dashboards' short
/// panels for up to an hour; longer reads are the heavy ones.
const INLINE_MAX_RANGE_MS: i64 = 3600 * 1000;

/// Clears the inline flag when the inline work ends (or unwinds).
struct InlineSlot<'a>(&'a AtomicBool);

impl Drop for InlineSlot<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[tonic::async_trait]
impl Store for TsdbStore {
    type SeriesStream = FrameStream;

    async fn series(
        &self,
        request: Request<SeriesRequest>,
    ) -> Result<Response<Self::SeriesStream>, Status> {
        let res = self.series_frames(request.into_inner()).await;
        self.shared.metrics.grpc_request("Series", res.is_ok());
        let frames = res?;
        Ok(Response::new(frame_stream(frames)))
    }

    async fn label_names(
        &self,
        request: Request<LabelNamesRequest>,
    ) -> Result<Response<LabelNamesResponse>, Status> {
        let r = request.into_inner();
        let res = self.label_names_inner(r).await;
        self.shared.metrics.grpc_request("LabelNames", res.is_ok());
        Ok(Response::new(LabelNamesResponse {
            names: res?,
            ..Default::default()
        }))
    }

    async fn label_values(
        &self,
        request: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelValuesResponse>, Status> {
        let r = request.into_inner();
        let res = self.label_values_inner(r).await;
        self.shared.metrics.grpc_request("LabelValues", res.is_ok());
        Ok(Response::new(LabelValuesResponse {
            values: res?,
            ..Default::default()
        }))
    }
}

impl TsdbStore {
    async fn label_names_inner(&self, r: LabelNamesRequest) -> Result<Vec<String>, Status> {
        let ext = self.ext();
        let Some(rest) = match_external(&ext, convert_matchers(&r.matchers)?) else {
            return Ok(Vec::new());
        };
        let db = self.shared.db.clone();
        let names = tokio::task::spawn_blocking(move || db.label_names_in(&rest, r.start, r.end))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(finish_label_names(names, &ext, r.limit))
    }

    async fn label_values_inner(&self, r: LabelValuesRequest) -> Result<Vec<String>, Status> {
        let ext = self.ext();
        let rest = match label_values_plan(&r.label, &r.matchers, &ext)? {
            Ok(rest) => rest,
            Err(answer) => return Ok(answer),
        };
        let db = self.shared.db.clone();
        let (label, limit) = (r.label, r.limit);
        let values =
            tokio::task::spawn_blocking(move || db.label_values_in(&label, &rest, r.start, r.end))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| Status::internal(e.to_string()))?;
        Ok(finish_label_values(values, limit))
    }
}

#[tonic::async_trait]
impl Metadata for TsdbStore {
    type MetricMetadataStream =
        tonic::codegen::tokio_stream::Once<Result<MetricMetadataResponse, Status>>;

    async fn metric_metadata(
        &self,
        request: Request<MetricMetadataRequest>,
    ) -> Result<Response<Self::MetricMetadataStream>, Status> {
        let r = request.into_inner();
        let mut metadata = std::collections::HashMap::new();
        for (family, metas) in crate::metadata::merged(&self.shared) {
            if !r.metric.is_empty() && family != r.metric {
                continue;
            }
            if r.limit >= 0 && metadata.len() as i64 >= i64::from(r.limit) {
                break;
            }
            let metas = metas
                .into_iter()
                .map(|m| Meta {
                    r#type: m.kind,
                    help: m.help,
                    unit: m.unit,
                })
                .collect();
            metadata.insert(family, MetricMetadataEntry { metas });
        }
        self.shared.metrics.grpc_request("MetricMetadata", true);
        Ok(Response::new(tonic::codegen::tokio_stream::once(Ok(
            MetricMetadataResponse {
                result: Some(metric_metadata_response::Result::Metadata(MetricMetadata {
                    metadata,
                })),
            },
        ))))
    }
}

#[tonic::async_trait]
impl Info for TsdbStore {
    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        self.shared.metrics.grpc_request("Info", true);
        Ok(Response::new(self.info_response()))
    }
}

/// One Query API request, as [`TsdbStore::eval_query`] takes it (seconds).
struct EvalRequest {
    query: String,
    start_s: i64,
    end_s: i64,
    /// 0 for an instant query.
    step_s: i64,
    timeout_s: i64,
    lookback_s: i64,
    /// Replica labels the querier deduplicates by (empty without dedup).
    replica_labels: Vec<String>,
}

/// [`crate::backend::DbQueryable`] as a store answers: every series with
/// the external labels attached (they win over a series label of the same
/// name), matchers on external labels decided by their values. This is
/// what the `thanos.Query` API evaluates over, so a querier's
/// `sum by (cluster) (…)` groups here as it would over the StoreAPI.
struct ExtLabelsQueryable {
    db: crate::backend::DbQueryable,
    /// Labels the querier deduplicates replicas by: a series carrying one
    /// cannot be evaluated here (replicas are merged by the querier).
    replica_labels: Vec<String>,
    ext: Vec<(String, String)>,
    /// `ext` as sorted labels, shared by every series they are attached to.
    ext_labels: Vec<strata_tsdb::labels::Label>,
}

/// `labels` with `ext` merged in (both sorted by name; an external label
/// replaces a series label of the same name), without re-sorting.
fn with_external(
    labels: &strata_tsdb::labels::Labels,
    ext: &[strata_tsdb::labels::Label],
) -> strata_tsdb::labels::Labels {
    let mut out = Vec::with_capacity(labels.len() + ext.len());
    let mut e = ext.iter().peekable();
    for l in labels.iter() {
        while let Some(x) = e.next_if(|x| x.name < l.name) {
            out.push(x.clone());
        }
        if e.peek().is_some_and(|x| x.name == l.name) {
            continue; // the external label (pushed next) wins
        }
        out.push(l.clone());
    }
    out.extend(e.cloned());
    strata_tsdb::labels::Labels::from_sorted(out)
}

impl strata_promql::Queryable for ExtLabelsQueryable {
    fn select(
        &self,
        matchers: &[Matcher],
        hints: &strata_promql::SelectHints,
    ) -> Result<strata_promql::SelectResult, strata_promql::StorageError> {
        let Some(mut rest) = match_external(&self.ext, matchers.to_vec()) else {
            return Ok(Default::default());
        };
        if rest.is_empty() {
            // Only external-label matchers: every series of this store.
            rest.push(
                Matcher::new(strata_tsdb::labels::MatchType::Regex, "__name__", ".+")
                    .map_err(|e| strata_promql::StorageError(e.to_string()))?,
            );
        }
        let mut res = self.db.select(&rest, hints)?;
        for s in &mut res.series {
            if let Some(r) = self
                .replica_labels
                .iter()
                .find(|r| s.labels.get(r).is_some())
            {
                return Err(strata_promql::StorageError(format!(
                    "series carry the replica label {r:?}: the querier must deduplicate them"
                )));
            }
            s.labels = with_external(&s.labels, &self.ext_labels);
        }
        // Attaching can reorder series (a series label sorting after an
        // external one); nearly sorted input makes this cheap.
        res.series.sort_by(|a, b| a.labels.cmp(&b.labels));
        // Two series that differ only in a label the external labels
        // replace: the StoreAPI merges them; here, leave it to the querier.
        if res.series.windows(2).any(|w| w[0].labels == w[1].labels) {
            return Err(strata_promql::StorageError(
                "series become equal once external labels are attached".into(),
            ));
        }
        Ok(res)
    }
}

type QueryFrames =
    tonic::codegen::tokio_stream::Iter<std::vec::IntoIter<Result<QueryResponse, Status>>>;
type QueryRangeFrames =
    tonic::codegen::tokio_stream::Iter<std::vec::IntoIter<Result<QueryRangeResponse, Status>>>;

/// A query's answer on the Query API: series, then the engine's messages.
/// Native histogram results are `Unimplemented` (the querier then
/// evaluates the query itself), as are non-vector results.
fn query_frames(
    res: strata_promql::QueryResult,
) -> Result<(Vec<prometheus_copy::TimeSeries>, Vec<String>), Status> {
    use strata_promql::Value;
    let labels = |m: &strata_tsdb::labels::Labels| -> Vec<Label> {
        m.iter()
            .map(|l| Label {
                name: l.name.to_string(),
                value: l.value.to_string(),
            })
            .collect()
    };
    let no_histograms =
        || Status::unimplemented("native histogram results are not served over the Query API");
    let series = match res.value {
        Value::Vector(v) => v
            .into_iter()
            .map(|s| {
                if s.h.is_some() {
                    return Err(no_histograms());
                }
                Ok(prometheus_copy::TimeSeries {
                    labels: labels(&s.metric),
                    samples: vec![prometheus_copy::Sample {
                        value: s.f,
                        timestamp: s.t,
                    }],
                    ..Default::default()
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        Value::Matrix(m) => m
            .into_iter()
            .map(|s| {
                if !s.histograms.is_empty() {
                    return Err(no_histograms());
                }
                Ok(prometheus_copy::TimeSeries {
                    labels: labels(&s.metric),
                    samples: s
                        .floats
                        .into_iter()
                        .map(|(t, v)| prometheus_copy::Sample {
                            value: v,
                            timestamp: t,
                        })
                        .collect(),
                    ..Default::default()
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        Value::Scalar(..) | Value::String(..) => {
            return Err(Status::unimplemented(
                "only instant-vector queries are served over the Query API",
            ))
        }
    };
    let mut messages = res.warnings;
    messages.extend(res.infos);
    Ok((series, messages))
}

impl TsdbStore {
    /// Evaluates one Query API request: the server's engine options, with
    /// the request's lookback delta and timeout when set, over the
    /// external-labelled view of the storage ([`Self::run_storage`]).
    async fn eval_query(
        &self,
        r: EvalRequest,
    ) -> Result<(Vec<prometheus_copy::TimeSeries>, Vec<String>), Status> {
        let EvalRequest {
            query,
            start_s,
            end_s,
            step_s,
            timeout_s,
            lookback_s,
            replica_labels,
        } = r;
        let secs = |s: i64| {
            s.checked_mul(1000)
                .ok_or_else(|| Status::invalid_argument("time out of range"))
        };
        let (start, end, step) = (secs(start_s)?, secs(end_s)?, secs(step_s)?);
        // The HTTP API's resolution limit (Prometheus' 11,000 points per
        // series) holds here too.
        if step_s > 0 && (end_s.saturating_sub(start_s)) / step_s > MAX_POINTS_PER_SERIES {
            return Err(Status::invalid_argument(format!(
                "exceeded maximum resolution of {MAX_POINTS_PER_SERIES} points per timeseries"
            )));
        }
        let mut opts = crate::web::engine_options(&self.shared.opts);
        if lookback_s > 0 {
            opts.lookback_delta = secs(lookback_s)?;
        }
        if timeout_s > 0 {
            opts.timeout = opts
                .timeout
                .min(std::time::Duration::from_secs(timeout_s as u64));
        }
        let _slot = self
            .series_slots
            .acquire()
            .await
            .map_err(|_| Status::unavailable("server is stopping"))?;
        let ext = self.ext();
        let ext_labels = ext
            .iter()
            .map(|(n, v)| strata_tsdb::labels::Label::new(n.as_str(), v.as_str()))
            .collect();
        let q = ExtLabelsQueryable {
            db: crate::backend::DbQueryable(self.shared.db.clone()),
            replica_labels,
            ext,
            ext_labels,
        };
        // What the query reads, for `run_storage`'s choice: its evaluation
        // window plus how far back its selectors reach (unknown: long).
        let reach = strata_promql::query_reach(&query, &opts).unwrap_or(i64::MAX);
        let window = end
            .saturating_sub(start)
            .saturating_add(reach)
            .saturating_add(opts.lookback_delta);
        let res = self
            .run_storage(window, move || {
                let engine = strata_promql::Engine::new(opts);
                if step == 0 {
                    engine.instant(&q, &query, start)
                } else {
                    engine.range(&q, &query, start, end, step)
                }
            })
            .await?;
        let res = res.map_err(|e| match e.error_type() {
            "bad_data" => Status::invalid_argument(e.to_string()),
            "timeout" => Status::deadline_exceeded(e.to_string()),
            "canceled" => Status::cancelled(e.to_string()),
            _ => Status::internal(e.to_string()),
        })?;
        query_frames(res)
    }
}

/// The replica labels a request deduplicates by: none without dedup.
fn dedup_labels(enable_dedup: bool, labels: Vec<String>) -> Vec<String> {
    if enable_dedup {
        labels
    } else {
        Vec::new()
    }
}

/// A Query API answer as frames: every series, then every message.
fn answer_frames<R>(
    (series, messages): (Vec<prometheus_copy::TimeSeries>, Vec<String>),
    series_frame: impl Fn(prometheus_copy::TimeSeries) -> R,
    message_frame: impl Fn(String) -> R,
) -> tonic::codegen::tokio_stream::Iter<std::vec::IntoIter<Result<R, Status>>> {
    let frames: Vec<Result<R, Status>> = series
        .into_iter()
        .map(series_frame)
        .chain(messages.into_iter().map(message_frame))
        .map(Ok)
        .collect();
    tonic::codegen::tokio_stream::iter(frames)
}

#[tonic::async_trait]
impl Query for TsdbStore {
    type QueryStream = QueryFrames;
    type QueryRangeStream = QueryRangeFrames;

    async fn query(
        &self,
        request: Request<QueryRequest>,
    ) -> Result<Response<Self::QueryStream>, Status> {
        let r = request.into_inner();
        let res = self
            .eval_query(EvalRequest {
                query: r.query,
                start_s: r.time_seconds,
                end_s: r.time_seconds,
                step_s: 0,
                timeout_s: r.timeout_seconds,
                lookback_s: r.lookback_delta_seconds,
                replica_labels: dedup_labels(r.enable_dedup, r.replica_labels),
            })
            .await;
        self.shared.metrics.grpc_request("Query", res.is_ok());
        Ok(Response::new(answer_frames(
            res?,
            |ts| QueryResponse {
                result: Some(query_response::Result::Timeseries(ts)),
                stats: None,
            },
            |w| QueryResponse {
                result: Some(query_response::Result::Warnings(w)),
                stats: None,
            },
        )))
    }

    async fn query_range(
        &self,
        request: Request<QueryRangeRequest>,
    ) -> Result<Response<Self::QueryRangeStream>, Status> {
        let r = request.into_inner();
        if r.interval_seconds <= 0 {
            return Err(Status::invalid_argument(
                "interval_seconds must be positive",
            ));
        }
        let res = self
            .eval_query(EvalRequest {
                query: r.query,
                start_s: r.start_time_seconds,
                end_s: r.end_time_seconds,
                step_s: r.interval_seconds,
                timeout_s: r.timeout_seconds,
                lookback_s: r.lookback_delta_seconds,
                replica_labels: dedup_labels(r.enable_dedup, r.replica_labels),
            })
            .await;
        self.shared.metrics.grpc_request("QueryRange", res.is_ok());
        Ok(Response::new(answer_frames(
            res?,
            |ts| QueryRangeResponse {
                result: Some(query_range_response::Result::Timeseries(ts)),
                stats: None,
            },
            |w| QueryRangeResponse {
                result: Some(query_range_response::Result::Warnings(w)),
                stats: None,
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_tsdb::labels::{Label, Labels};

    #[test]
    fn external_labels_merge_in_order_and_win() {
        let ext = vec![Label::new("cluster", "c1"), Label::new("replica", "a")];
        let l = Labels::from_pairs([("__name__", "up"), ("cluster", "own"), ("zone", "z")]);
        let got = with_external(&l, &ext);
        let want = Labels::from_pairs([
            ("__name__", "up"),
            ("cluster", "c1"),
            ("replica", "a"),
            ("zone", "z"),
        ]);
        assert_eq!(got, want);
        assert_eq!(
            with_external(&Labels::empty(), &ext),
            Labels::from_sorted(ext.clone())
        );
        let after = Labels::from_pairs([("a", "1")]);
        assert_eq!(
            with_external(&after, &ext),
            Labels::from_pairs([("a", "1"), ("cluster", "c1"), ("replica", "a")])
        );
    }
}
