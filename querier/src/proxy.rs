//! Fan-out of StoreAPI requests over the active endpoints, as Thanos'
//! `ProxyStore` does it.
//!
//! For one [`SeriesRequest`]:
//! 1. [`select_stores`] keeps the endpoints whose advertised `[min, max]`
//!    time overlaps the request, whose external label sets do not contradict
//!    the matchers ([`label_sets_match`], Thanos' `LabelSetsMatch`: a store
//!    is kept if *any* of its sets has no label a matcher rejects; labels a
//!    set lacks are ignored), and whose address passes the request's
//!    `storeMatch[]` ([`store_matches_debug`]: `__address__` only, as Thanos).
//! 2. The kept stores are called concurrently ([`series`]), each bounded by
//!    the per-store response timeout and the request deadline, and each
//!    answer is read completely (Thanos' default "eager" strategy), turned
//!    into [`MergedSeries`] with replica labels stripped, sorted.
//! 3. The sorted per-store lists are merged by labels with a k-way heap
//!    merge; series with equal labels from several stores become one with
//!    all their chunks, and identical chunks (same time range, same bytes;
//!    compared by hash first) are dropped.
//! 4. A failing store becomes a warning naming it when partial response is
//!    allowed; otherwise the whole request fails with an error naming it.
//!
//! Limits: the number of series of one request (`max_series`, checked per
//! store while reading and after merging), the per-store timeout, and the
//! request deadline.
//!
//! `LabelNames` and `LabelValues` fan out the same way ([`label_names`],
//! [`label_values`]) and union the answers. `MetricMetadata`
//! ([`metric_metadata`]) goes to every active endpoint whose Info says it
//! serves the Metadata API (no time or label pruning: metadata has
//! neither) and merges as Thanos' metadata proxy does: per metric, the
//! distinct entries in the order they arrive, and at most `limit` metrics.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use strata_proto::grpc::{MessageLimits, MAX_MESSAGE_SIZE};
use strata_proto::thanos::metadata_client::MetadataClient;
use strata_proto::thanos::store_client::StoreClient;
use strata_proto::thanos::{
    metric_metadata_response, AggrChunk, LabelMatcher, LabelNamesRequest, LabelValuesRequest, Meta,
    MetricMetadataRequest, SeriesRequest,
};
use strata_tsdb::labels::{Labels, Matcher};

use crate::endpoints::Endpoint;
use crate::wire::{Frame, SeriesCodec};

/// Why a fan-out failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A store failed and partial response is off.
    #[error("{0}")]
    Store(String),
    /// A limit was exceeded.
    #[error("{0}")]
    Limit(String),
    #[error("{0}")]
    Invalid(String),
}

/// Fan-out settings.
#[derive(Clone, Debug, Default)]
pub struct ProxyOptions {
    /// `--store.response-timeout`: limit of one store's whole answer; `None`
    /// for none (Thanos' default 0 = off).
    pub response_timeout: Option<Duration>,
    /// `--query.max-series`: most series one request may return, 0 = no limit.
    pub max_series: usize,
    /// `--query.mode=distributed`: hand partition-local queries whole to
    /// stores that serve the Query API ([`query_whole`]).
    pub distributed: bool,
}

/// What to do for one request besides the StoreAPI request itself.
#[derive(Clone, Debug, Default)]
pub struct Fanout {
    /// Allow partial responses: a failing store becomes a warning.
    pub partial_response: bool,
    /// `storeMatch[]`: a store is used only if one of these sets matches it
    /// (empty = every store). See [`store_matches_debug`].
    pub store_matchers: Vec<Vec<Matcher>>,
    /// Labels removed from every series after it arrives (the replica
    /// labels under deduplication), in case a store did not remove them.
    pub strip_labels: Vec<String>,
    /// The request's deadline.
    pub deadline: Option<Instant>,
}

/// One series after merging, chunks sorted by (min_time, max_time).
#[derive(Clone, Debug, PartialEq)]
pub struct MergedSeries {
    pub labels: Labels,
    pub chunks: Vec<AggrChunk>,
}

/// A merged answer with the warnings collected on the way.
#[derive(Clone, Debug, Default)]
pub struct SeriesSet {
    pub series: Vec<MergedSeries>,
    pub warnings: Vec<String>,
}

/// Go gRPC's error text: `rpc error: code = Unavailable desc = ...`.
pub fn status_text(s: &tonic::Status) -> String {
    format!("rpc error: code = {:?} desc = {}", s.code(), s.message())
}

pub use strata_proto::storeapi::to_pb_matchers;

/// StoreAPI matchers as tsdb matchers.
pub fn from_pb_matchers(ms: &[LabelMatcher]) -> Result<Vec<Matcher>, ProxyError> {
    strata_proto::storeapi::from_pb_matchers(ms).map_err(ProxyError::Invalid)
}

/// Thanos' `LabelSetsMatch`; see the module docs.
pub fn label_sets_match(matchers: &[Matcher], sets: &[Labels]) -> bool {
    if sets.is_empty() {
        return true;
    }
    sets.iter().any(|ls| {
        matchers
            .iter()
            .all(|m| ls.get(&m.name).is_none_or(|v| m.matches(v)))
    })
}

/// `storeMatch[]`: whether one of the matcher sets accepts the store, as
/// Thanos' `storeMatchDebugMetadata` decides it (pkg/store/proxy.go): each
/// set is matched against the one-label set `{__address__="<endpoint>"}`
/// with `LabelSetsMatch` rules, so only matchers on `__address__` count and
/// matchers on any other label (external labels included) are ignored. The
/// sets are ORed; no set means every store.
pub fn store_matches_debug(ep: &Endpoint, sets: &[Vec<Matcher>]) -> bool {
    sets.is_empty()
        || sets.iter().any(|set| {
            set.iter()
                .all(|m| m.name != "__address__" || m.matches(&ep.name))
        })
}

/// The endpoints a request over `[mint, maxt]` with `matchers` must ask.
pub fn select_stores(
    eps: &[Arc<Endpoint>],
    mint: i64,
    maxt: i64,
    matchers: &[Matcher],
    store_matchers: &[Vec<Matcher>],
) -> Vec<Arc<Endpoint>> {
    eps.iter()
        .filter(|e| {
            let Some(meta) = e.meta() else {
                return false;
            };
            if mint > meta.max_time || maxt < meta.min_time {
                return false;
            }
            label_sets_match(matchers, &meta.label_sets) && store_matches_debug(e, store_matchers)
        })
        .cloned()
        .collect()
}

/// Remaining time until `deadline`, capped by `cap`.
fn budget(deadline: Option<Instant>, cap: Option<Duration>) -> Option<Duration> {
    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    match (left, cap) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Why one store's call failed: a store failure is subject to the partial
/// response policy, a limit always fails the request.
#[derive(Debug)]
enum CallError {
    Store(String),
    Limit(String),
}

impl From<String> for CallError {
    fn from(s: String) -> Self {
        CallError::Store(s)
    }
}

/// Reads one store's whole Series answer.
async fn store_series(
    ep: &Endpoint,
    req: SeriesRequest,
    strip: &[String],
    max_series: usize,
) -> Result<(Vec<MergedSeries>, Vec<String>), CallError> {
    // `/thanos.Store/Series` with our own response decoder (crate::wire)
    // instead of the generated client's prost codec.
    let mut grpc = tonic::client::Grpc::new(ep.channel.clone())
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    grpc.ready()
        .await
        .map_err(|e| CallError::Store(format!("not ready: {e}")))?;
    let mut request = tonic::Request::new(req);
    request
        .extensions_mut()
        .insert(tonic::GrpcMethod::new("thanos.Store", "Series"));
    let mut stream = grpc
        .server_streaming(
            request,
            tonic::codegen::http::uri::PathAndQuery::from_static("/thanos.Store/Series"),
            SeriesCodec::new(strip.to_vec()),
        )
        .await
        .map_err(|s| status_text(&s))?
        .into_inner();
    let mut out: Vec<MergedSeries> = Vec::new();
    let mut warnings = Vec::new();
    while let Some(frame) = stream.next().await {
        match frame.map_err(|s| status_text(&s))? {
            Frame::Series(s) => {
                out.extend(s);
                if max_series > 0 && out.len() > max_series {
                    return Err(CallError::Limit(format!(
                        "the query selects more than {max_series} series (--query.max-series)"
                    )));
                }
            }
            Frame::Warning(w) => warnings.push(w),
            Frame::Other => {}
        }
    }
    // Stripping labels (or a store that does not sort) may break the order
    // the merge needs: restore it, merging series that became equal.
    if !out.windows(2).all(|w| w[0].labels < w[1].labels) {
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        let mut merged: Vec<MergedSeries> = Vec::with_capacity(out.len());
        for s in out {
            match merged.last_mut() {
                Some(last) if last.labels == s.labels => last.chunks.extend(s.chunks),
                _ => merged.push(s),
            }
        }
        out = merged;
    }
    Ok((out, warnings))
}

/// Runs `call` on every store concurrently with the timeouts applied, and
/// sorts results from failures according to the partial-response policy.
async fn fan_out<T, F, Fut>(
    stores: &[Arc<Endpoint>],
    fo: &Fanout,
    opts: &ProxyOptions,
    call: F,
) -> Result<(Vec<T>, Vec<String>), ProxyError>
where
    F: Fn(Arc<Endpoint>) -> Fut,
    Fut: std::future::Future<Output = Result<(T, Vec<String>), CallError>>,
{
    let calls = stores.iter().map(|ep| {
        let ep = ep.clone();
        let fut = call(ep.clone());
        async move {
            let started = Instant::now();
            let res = match budget(fo.deadline, opts.response_timeout) {
                Some(b) => match tokio::time::timeout(b, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(CallError::Store(format!("no complete answer within {b:?}"))),
                },
                None => fut.await,
            };
            ep.stats.record(started.elapsed(), res.is_err());
            (ep, res)
        }
    });
    let results = futures::future::join_all(calls).await;
    let mut oks = Vec::with_capacity(results.len());
    let mut warnings = Vec::new();
    for (ep, res) in results {
        match res {
            Ok((v, w)) => {
                oks.push(v);
                warnings.extend(w);
            }
            Err(CallError::Limit(m)) => return Err(ProxyError::Limit(m)),
            Err(CallError::Store(e)) => {
                let msg = format!("receive from {}: {e}", ep.describe());
                if !fo.partial_response {
                    return Err(ProxyError::Store(msg));
                }
                tracing::warn!(endpoint = %ep.name, error = %e, "store failed; partial response");
                warnings.push(msg);
            }
        }
    }
    Ok((oks, warnings))
}

/// Fans a Series request out and merges the answers (module docs).
pub async fn series(
    eps: &[Arc<Endpoint>],
    req: SeriesRequest,
    fo: &Fanout,
    opts: &ProxyOptions,
) -> Result<SeriesSet, ProxyError> {
    let matchers = from_pb_matchers(&req.matchers)?;
    let stores = select_stores(
        eps,
        req.min_time,
        req.max_time,
        &matchers,
        &fo.store_matchers,
    );
    let max_series = opts.max_series;
    let (lists, warnings) = fan_out(&stores, fo, opts, |ep| {
        let req = req.clone();
        let strip = fo.strip_labels.clone();
        async move { store_series(&ep, req, &strip, max_series).await }
    })
    .await?;
    let series = merge(lists);
    if max_series > 0 && series.len() > max_series {
        return Err(ProxyError::Limit(format!(
            "the query selects {} series, more than the limit of {max_series} (--query.max-series)",
            series.len()
        )));
    }
    Ok(SeriesSet { series, warnings })
}

/// A whole query for [`query_whole`]: times in whole seconds, as the
/// Query API carries them.
#[derive(Clone, Debug)]
pub struct WholeQuery {
    pub query: String,
    pub start_s: i64,
    pub end_s: i64,
    /// 0 for an instant query.
    pub step_s: i64,
    pub lookback_s: i64,
    /// Replica labels being deduplicated: a store whose series carry one
    /// refuses (the querier must merge replicas itself).
    pub replica_labels: Vec<String>,
    /// Most points accepted from each store (0: no limit); more fails the
    /// call, so the caller evaluates the query itself under its limits.
    pub max_points: usize,
}

/// Series and messages of every store's answer to a whole query.
pub type WholeAnswer = (Vec<(Labels, Vec<(i64, f64)>)>, Vec<String>);

/// Sends `q` to every store in `eps` over the Query API (`/thanos.Query/Query`
/// or `QueryRange`) concurrently, and concatenates the answers. Any failing
/// store fails the whole call, whatever the partial-response setting: the
/// caller then evaluates the query itself, which reports the failure the
/// way a local evaluation does.
pub async fn query_whole(
    eps: &[Arc<Endpoint>],
    q: WholeQuery,
    fo: &Fanout,
    opts: &ProxyOptions,
) -> Result<WholeAnswer, ProxyError> {
    let fo = Fanout {
        partial_response: false,
        ..fo.clone()
    };
    let timeout_s = fo
        .deadline
        .map(|d| d.saturating_duration_since(Instant::now()).as_secs().max(1) as i64)
        .unwrap_or(0);
    let (answers, _) = fan_out(eps, &fo, opts, |ep| {
        let q = q.clone();
        async move { store_query(&ep, q, timeout_s).await }
    })
    .await?;
    let mut series = Vec::new();
    let mut messages = Vec::new();
    for (s, m) in answers {
        series.extend(s);
        messages.extend(m);
    }
    Ok((series, messages))
}

/// One store's answer to a whole query.
async fn store_query(
    ep: &Endpoint,
    q: WholeQuery,
    timeout_s: i64,
) -> Result<(WholeAnswer, Vec<String>), CallError> {
    use strata_proto::thanos::query_client::QueryClient;
    use strata_proto::thanos::{
        query_range_response, query_response, QueryRangeRequest, QueryRequest,
    };
    let mut client = QueryClient::new(ep.channel.clone()).with_message_limits(MAX_MESSAGE_SIZE);
    let mut series = Vec::new();
    let mut messages = Vec::new();
    let mut total = 0usize;
    let mut add = |ts: strata_proto::prometheus_copy::TimeSeries| {
        let labels = Labels::from_pairs(ts.labels.into_iter().map(|l| (l.name, l.value)));
        let points: Vec<(i64, f64)> = ts.samples.iter().map(|s| (s.timestamp, s.value)).collect();
        total += points.len();
        series.push((labels, points));
        total
    };
    let max_points = q.max_points;
    let over = |total: usize| max_points > 0 && total > max_points;
    let too_many = || CallError::Store(format!("more than {max_points} points in the answer"));
    let status = |s: tonic::Status| CallError::Store(status_text(&s));
    if q.step_s == 0 {
        let req = QueryRequest {
            query: q.query,
            time_seconds: q.start_s,
            timeout_seconds: timeout_s,
            lookback_delta_seconds: q.lookback_s,
            enable_dedup: !q.replica_labels.is_empty(),
            replica_labels: q.replica_labels,
            ..Default::default()
        };
        let mut stream = client.query(req).await.map_err(status)?.into_inner();
        while let Some(frame) = stream.message().await.map_err(status)? {
            let n = match frame.result {
                Some(query_response::Result::Timeseries(ts)) => add(ts),
                Some(query_response::Result::Warnings(w)) => {
                    messages.push(w);
                    0
                }
                None => 0,
            };
            if over(n) {
                return Err(too_many());
            }
        }
    } else {
        let req = QueryRangeRequest {
            query: q.query,
            start_time_seconds: q.start_s,
            end_time_seconds: q.end_s,
            interval_seconds: q.step_s,
            timeout_seconds: timeout_s,
            lookback_delta_seconds: q.lookback_s,
            enable_dedup: !q.replica_labels.is_empty(),
            replica_labels: q.replica_labels,
            ..Default::default()
        };
        let mut stream = client.query_range(req).await.map_err(status)?.into_inner();
        while let Some(frame) = stream.message().await.map_err(status)? {
            let n = match frame.result {
                Some(query_range_response::Result::Timeseries(ts)) => add(ts),
                Some(query_range_response::Result::Warnings(w)) => {
                    messages.push(w);
                    0
                }
                None => 0,
            };
            if over(n) {
                return Err(too_many());
            }
        }
    }
    Ok(((series, messages), Vec::new()))
}

/// Heap entry of the k-way merge: the head series of list `idx`.
struct Head {
    labels: Labels,
    idx: usize,
}

impl PartialEq for Head {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Head {
    fn cmp(&self, o: &Self) -> Ordering {
        self.labels.cmp(&o.labels).then(self.idx.cmp(&o.idx))
    }
}

/// K-way merge of label-sorted lists; equal label sets are joined and
/// their chunks deduplicated.
pub fn merge(lists: Vec<Vec<MergedSeries>>) -> Vec<MergedSeries> {
    let total: usize = lists.iter().map(Vec::len).sum();
    let mut iters: Vec<std::vec::IntoIter<MergedSeries>> =
        lists.into_iter().map(Vec::into_iter).collect();
    let mut pending: Vec<Option<MergedSeries>> = Vec::with_capacity(iters.len());
    let mut heap = BinaryHeap::with_capacity(iters.len());
    for (idx, it) in iters.iter_mut().enumerate() {
        let next = it.next();
        if let Some(s) = &next {
            heap.push(Reverse(Head {
                labels: s.labels.clone(),
                idx,
            }));
        }
        pending.push(next);
    }
    let mut out: Vec<MergedSeries> = Vec::with_capacity(total);
    let mut multi = false;
    while let Some(Reverse(head)) = heap.pop() {
        let Some(s) = pending[head.idx].take() else {
            continue;
        };
        if let Some(n) = iters[head.idx].next() {
            heap.push(Reverse(Head {
                labels: n.labels.clone(),
                idx: head.idx,
            }));
            pending[head.idx] = Some(n);
        }
        match out.last_mut() {
            Some(last) if last.labels == s.labels => {
                last.chunks.extend(s.chunks);
                multi = true;
            }
            _ => {
                if multi {
                    if let Some(prev) = out.last_mut() {
                        dedup_chunks(&mut prev.chunks);
                    }
                }
                multi = false;
                out.push(s);
            }
        }
    }
    if multi {
        if let Some(prev) = out.last_mut() {
            dedup_chunks(&mut prev.chunks);
        }
    }
    out
}

fn chunk_hash(c: &AggrChunk) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for part in [&c.raw, &c.count, &c.sum, &c.min, &c.max, &c.counter] {
        match part {
            Some(ch) => {
                ch.r#type.hash(&mut h);
                ch.data.hash(&mut h);
            }
            None => 0xffu8.hash(&mut h),
        }
    }
    h.finish()
}

/// Sorts chunks by time and drops exact duplicates (same time range and
/// bytes), which overlapping stores (a sidecar and a store gateway over the
/// same block) return.
pub fn dedup_chunks(chunks: &mut Vec<AggrChunk>) {
    if chunks.len() < 2 {
        return;
    }
    let mut keyed: Vec<(i64, i64, u64, AggrChunk)> = chunks
        .drain(..)
        .map(|c| (c.min_time, c.max_time, chunk_hash(&c), c))
        .collect();
    keyed.sort_by_key(|a| (a.0, a.1, a.2));
    keyed.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1 && a.2 == b.2 && a.3 == b.3);
    chunks.extend(keyed.into_iter().map(|k| k.3));
}

/// Fans out `LabelNames`, returning the sorted union.
pub async fn label_names(
    eps: &[Arc<Endpoint>],
    req: LabelNamesRequest,
    fo: &Fanout,
    opts: &ProxyOptions,
) -> Result<(Vec<String>, Vec<String>), ProxyError> {
    let matchers = from_pb_matchers(&req.matchers)?;
    let stores = select_stores(eps, req.start, req.end, &matchers, &fo.store_matchers);
    let (lists, warnings) = fan_out(&stores, fo, opts, |ep| {
        let req = req.clone();
        async move {
            let mut c = StoreClient::new(ep.channel.clone()).with_message_limits(MAX_MESSAGE_SIZE);
            let r = c
                .label_names(req)
                .await
                .map_err(|s| CallError::Store(status_text(&s)))?;
            let r = r.into_inner();
            Ok((r.names, r.warnings))
        }
    })
    .await?;
    let mut names: Vec<String> = lists.into_iter().flatten().collect();
    names.retain(|n| !fo.strip_labels.contains(n));
    names.sort();
    names.dedup();
    Ok((names, warnings))
}

/// Fans out `LabelValues`, returning the sorted union.
pub async fn label_values(
    eps: &[Arc<Endpoint>],
    req: LabelValuesRequest,
    fo: &Fanout,
    opts: &ProxyOptions,
) -> Result<(Vec<String>, Vec<String>), ProxyError> {
    let matchers = from_pb_matchers(&req.matchers)?;
    let stores = select_stores(eps, req.start, req.end, &matchers, &fo.store_matchers);
    let (lists, warnings) = fan_out(&stores, fo, opts, |ep| {
        let req = req.clone();
        async move {
            let mut c = StoreClient::new(ep.channel.clone()).with_message_limits(MAX_MESSAGE_SIZE);
            let r = c
                .label_values(req)
                .await
                .map_err(|s| CallError::Store(status_text(&s)))?;
            let r = r.into_inner();
            Ok((r.values, r.warnings))
        }
    })
    .await?;
    let mut values: Vec<String> = lists.into_iter().flatten().collect();
    values.sort();
    values.dedup();
    Ok((values, warnings))
}

/// Metric name to its distinct metadata entries.
pub type MetadataMap = std::collections::BTreeMap<String, Vec<Meta>>;

/// Most metadata frames read from one store, and most entries kept per
/// metric: a store cannot make the querier hold an unbounded answer.
const MAX_METADATA_FRAMES: usize = 100_000;
const MAX_METAS_PER_METRIC: usize = 1_000;

/// Adds one store's metadata frame to `into` (Thanos' `metadataServer.Send`):
/// a new metric joins only while fewer than `limit` metrics are held
/// (`limit < 0`: no limit; 0: nothing), a known metric gains the entries it
/// does not have yet.
pub fn merge_metadata(
    into: &mut MetadataMap,
    frame: std::collections::HashMap<String, strata_proto::thanos::MetricMetadataEntry>,
    limit: i32,
) {
    if limit == 0 {
        return;
    }
    // Sorted so that which metrics a limit keeps does not depend on the
    // hash map's order.
    let mut frame: Vec<_> = frame.into_iter().collect();
    frame.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, entry) in frame {
        match into.get_mut(&name) {
            Some(known) => {
                for m in entry.metas {
                    if known.len() < MAX_METAS_PER_METRIC && !known.contains(&m) {
                        known.push(m);
                    }
                }
            }
            None => {
                if limit < 0 || into.len() < limit as usize {
                    let mut metas: Vec<Meta> = Vec::with_capacity(entry.metas.len());
                    for m in entry.metas {
                        if metas.len() < MAX_METAS_PER_METRIC && !metas.contains(&m) {
                            metas.push(m);
                        }
                    }
                    into.insert(name, metas);
                }
            }
        }
    }
}

/// Fans `MetricMetadata` out to the endpoints that serve it and merges the
/// answers (module docs). Warnings: failed stores under partial response
/// and the stores' own warnings.
pub async fn metric_metadata(
    eps: &[Arc<Endpoint>],
    req: MetricMetadataRequest,
    fo: &Fanout,
    opts: &ProxyOptions,
) -> Result<(MetadataMap, Vec<String>), ProxyError> {
    let stores: Vec<Arc<Endpoint>> = eps
        .iter()
        .filter(|e| {
            e.meta().is_some_and(|m| m.has_metadata) && store_matches_debug(e, &fo.store_matchers)
        })
        .cloned()
        .collect();
    let limit = req.limit;
    let (frames, warnings) = fan_out(&stores, fo, opts, |ep| {
        let req = req.clone();
        async move {
            let mut c =
                MetadataClient::new(ep.channel.clone()).with_message_limits(MAX_MESSAGE_SIZE);
            let mut stream = c
                .metric_metadata(req)
                .await
                .map_err(|s| CallError::Store(status_text(&s)))?
                .into_inner();
            let mut frames = Vec::new();
            let mut warnings = Vec::new();
            while let Some(frame) = stream.next().await {
                let frame = frame.map_err(|s| CallError::Store(status_text(&s)))?;
                match frame.result {
                    Some(metric_metadata_response::Result::Metadata(m)) => {
                        if frames.len() >= MAX_METADATA_FRAMES {
                            return Err(CallError::Store(format!(
                                "more than {MAX_METADATA_FRAMES} metadata frames"
                            )));
                        }
                        frames.push(m.metadata);
                    }
                    Some(metric_metadata_response::Result::Warning(w)) => warnings.push(w),
                    None => {}
                }
            }
            Ok((frames, warnings))
        }
    })
    .await?;
    let mut out = MetadataMap::new();
    for frame in frames.into_iter().flatten() {
        merge_metadata(&mut out, frame, limit);
    }
    Ok((out, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_proto::thanos::Chunk;

    fn ls(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    fn chunk(min: i64, max: i64, data: &[u8]) -> AggrChunk {
        AggrChunk {
            min_time: min,
            max_time: max,
            raw: Some(Chunk {
                r#type: 0,
                data: data.to_vec().into(),
                hash: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn label_sets_matching_is_thanos_like() {
        let sets = vec![
            ls(&[("cluster", "c1")]),
            ls(&[("cluster", "c2"), ("env", "prod")]),
        ];
        let eq = |n: &str, v: &str| Matcher::equal(n, v);
        assert!(label_sets_match(&[eq("cluster", "c2")], &sets));
        assert!(!label_sets_match(&[eq("cluster", "c3")], &sets));
        // Labels no set has are ignored.
        assert!(label_sets_match(&[eq("job", "x")], &sets));
        assert!(!label_sets_match(
            &[eq("cluster", "c1"), eq("env", "dev")],
            &sets[1..]
        ));
        let re = Matcher::new(strata_tsdb::labels::MatchType::Regex, "cluster", "c1|c9").unwrap();
        assert!(label_sets_match(std::slice::from_ref(&re), &sets));
        assert!(!label_sets_match(&[re], &sets[1..]));
        assert!(label_sets_match(&[eq("cluster", "zzz")], &[]));
    }

    #[test]
    fn metadata_merge_is_thanos_like() {
        use std::collections::HashMap;
        use strata_proto::thanos::MetricMetadataEntry;
        let meta = |t: &str, h: &str| Meta {
            r#type: t.into(),
            help: h.into(),
            unit: String::new(),
        };
        let frame = |entries: &[(&str, Vec<Meta>)]| -> HashMap<String, MetricMetadataEntry> {
            entries
                .iter()
                .map(|(n, m)| (n.to_string(), MetricMetadataEntry { metas: m.clone() }))
                .collect()
        };
        let a = frame(&[
            ("up", vec![meta("gauge", "Up.")]),
            ("x", vec![meta("counter", "X."), meta("counter", "X.")]),
        ]);
        let b = frame(&[
            (
                "up",
                vec![meta("gauge", "Up."), meta("gauge", "Other help.")],
            ),
            ("y", vec![meta("gauge", "Y.")]),
        ]);
        let mut all = MetadataMap::new();
        merge_metadata(&mut all, a.clone(), -1);
        merge_metadata(&mut all, b.clone(), -1);
        assert_eq!(all.len(), 3);
        // Distinct entries only, in arrival order.
        assert_eq!(
            all["up"],
            vec![meta("gauge", "Up."), meta("gauge", "Other help.")]
        );
        assert_eq!(all["x"].len(), 1);
        // limit bounds the number of metrics, not entries; known metrics
        // still gain entries.
        let mut two = MetadataMap::new();
        merge_metadata(&mut two, a.clone(), 2);
        merge_metadata(&mut two, b.clone(), 2);
        assert_eq!(two.keys().collect::<Vec<_>>(), vec!["up", "x"]);
        assert_eq!(two["up"].len(), 2);
        let mut none = MetadataMap::new();
        merge_metadata(&mut none, a, 0);
        assert!(none.is_empty());
    }

    #[test]
    fn k_way_merge_joins_equal_series_and_drops_identical_chunks() {
        let a = vec![
            MergedSeries {
                labels: ls(&[("a", "1")]),
                chunks: vec![chunk(0, 10, b"x")],
            },
            MergedSeries {
                labels: ls(&[("a", "3")]),
                chunks: vec![chunk(0, 10, b"y")],
            },
        ];
        let b = vec![
            MergedSeries {
                labels: ls(&[("a", "1")]),
                chunks: vec![chunk(0, 10, b"x"), chunk(11, 20, b"z")],
            },
            MergedSeries {
                labels: ls(&[("a", "2")]),
                chunks: vec![],
            },
        ];
        let c = vec![MergedSeries {
            labels: ls(&[("a", "1")]),
            chunks: vec![chunk(0, 10, b"q")],
        }];
        let out = merge(vec![a, b, c]);
        let names: Vec<String> = out.iter().map(|s| s.labels.to_string()).collect();
        assert_eq!(names, vec![r#"{a="1"}"#, r#"{a="2"}"#, r#"{a="3"}"#]);
        // x (twice, one dropped), q (same range, other bytes: kept), z.
        assert_eq!(out[0].chunks.len(), 3);
        assert_eq!(out[0].chunks[2].min_time, 11);
    }
}
