//! The StoreAPI and Info API over the TSDB's HTTP APIs, as Thanos'
//! `pkg/store/prometheus.go` serves them.
//!
//! `Series`:
//! 1. matchers on external labels are evaluated against the external label
//!    values: one that fails means no series (the TSDB is not asked); the
//!    others are dropped, since the TSDB does not store external labels. No
//!    matcher left is `InvalidArgument`, as in Thanos;
//! 2. `min_time` is clamped to the advertised min time;
//! 3. one remote read ([`PromClient::remote_read`]);
//! 4. external labels are attached (they win over a series label of the same
//!    name), `without_replica_labels` are removed, series are sorted and
//!    series that became equal are merged;
//! 5. `limit > 0` keeps the first `limit` series; `skip_chunks` drops
//!    chunks; `response_batch_size > 1` packs series into `SeriesBatch`
//!    frames.
//!
//! The answer is built in memory before streaming: step 4 needs the whole
//! set to sort, as Thanos does when it re-sorts after attaching labels.
//!
//! `MetricMetadata` (the Metadata API, Thanos' `pkg/metadata/prometheus.go`)
//! proxies the TSDB's `/api/v1/metadata` with the request's `metric` and
//! `limit` and answers it as one frame; Info advertises it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use strata_proto::thanos::info::info_server::Info;
use strata_proto::thanos::info::{
    InfoRequest, InfoResponse, MetricMetadataInfo, StoreInfo, TsdbInfo,
};
use strata_proto::thanos::metadata_server::Metadata;
use strata_proto::thanos::store_server::Store;
use strata_proto::thanos::{
    label_matcher, series_response, Label, LabelMatcher, LabelNamesRequest, LabelNamesResponse,
    LabelValuesRequest, LabelValuesResponse, Series, SeriesBatch, SeriesRequest, SeriesResponse,
    ZLabelSet,
};
use strata_proto::thanos::{
    metric_metadata_response, Meta, MetricMetadata, MetricMetadataEntry, MetricMetadataRequest,
    MetricMetadataResponse,
};
use strata_tsdb::labels::{MatchType, Matcher};
use tonic::{Request, Response, Status};

use crate::metrics::Metrics;
use crate::promclient::PromClient;

/// State shared by the StoreAPI, the HTTP endpoints and the heartbeat.
#[derive(Debug)]
pub struct SidecarState {
    ext_labels: RwLock<Option<Vec<(String, String)>>>,
    /// `--min-time` in ms (`i64::MIN` when unset).
    limit_min_time: i64,
    /// Advertised min time: `max(--min-time, lowest TSDB timestamp)`.
    min_time: AtomicI64,
    pub metrics: Arc<Metrics>,
}

impl SidecarState {
    pub fn new(limit_min_time: i64, metrics: Arc<Metrics>) -> Self {
        SidecarState {
            ext_labels: RwLock::new(None),
            limit_min_time,
            min_time: AtomicI64::new(limit_min_time),
            metrics,
        }
    }

    /// External labels, sorted by name; `None` until first loaded.
    pub fn external_labels(&self) -> Option<Vec<(String, String)>> {
        self.ext_labels.read().clone()
    }

    pub fn set_external_labels(&self, mut labels: Vec<(String, String)>) {
        labels.sort();
        *self.ext_labels.write() = Some(labels);
    }

    /// Ready once external labels are known.
    pub fn is_ready(&self) -> bool {
        self.ext_labels.read().is_some()
    }

    pub fn min_time(&self) -> i64 {
        self.min_time.load(Ordering::Relaxed)
    }

    /// Updates the advertised min time from the TSDB's lowest timestamp.
    pub fn set_lowest_timestamp(&self, lowest: Option<i64>) {
        let mt = lowest.map_or(self.limit_min_time, |l| l.max(self.limit_min_time));
        self.min_time.store(mt, Ordering::Relaxed);
    }
}

/// The StoreAPI and Info services of one sidecar.
#[derive(Clone, Debug)]
pub struct SidecarStore {
    prom: PromClient,
    state: Arc<SidecarState>,
}

impl SidecarStore {
    pub fn new(prom: PromClient, state: Arc<SidecarState>) -> Self {
        SidecarStore { prom, state }
    }

    fn ext(&self) -> Result<Vec<(String, String)>, Status> {
        self.state
            .external_labels()
            .ok_or_else(|| Status::unavailable("external labels are not loaded yet"))
    }

    async fn series_frames(&self, r: SeriesRequest) -> Result<Vec<SeriesResponse>, Status> {
        let ext = self.ext()?;
        let matchers = convert_matchers(&r.matchers)?;
        let Some(rest) = match_external(&ext, matchers) else {
            return Ok(Vec::new());
        };
        if rest.is_empty() {
            return Err(Status::invalid_argument(
                "no matchers specified (excluding external labels)",
            ));
        }
        let min_time = r.min_time.max(self.state.min_time());
        if min_time > r.max_time {
            return Ok(Vec::new());
        }
        let (_, read) = self
            .prom
            .remote_read(min_time, r.max_time, &rest)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let mut series: Vec<Series> = read
            .into_iter()
            .map(|s| {
                let labels = finish_labels(s.labels, &ext, &r.without_replica_labels);
                Series {
                    labels,
                    chunks: if r.skip_chunks { Vec::new() } else { s.chunks },
                }
            })
            .collect();
        sort_and_merge(&mut series);
        // `limit` (Thanos 0.35+): the first `limit` series in label order.
        if let Ok(limit) = usize::try_from(r.limit) {
            if limit > 0 {
                series.truncate(limit);
            }
        }
        Ok(to_frames(series, r.response_batch_size))
    }

    async fn label_names_inner(&self, r: LabelNamesRequest) -> Result<Vec<String>, Status> {
        let ext = self.ext()?;
        let matchers = convert_matchers(&r.matchers)?;
        let Some(rest) = match_external(&ext, matchers) else {
            return Ok(Vec::new());
        };
        let mut names = self
            .prom
            .label_names(r.start, r.end, &rest)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        // As Thanos: external label names only join a non-empty answer.
        if !names.is_empty() {
            names.extend(ext.iter().map(|(n, _)| n.clone()));
        }
        names.sort();
        names.dedup();
        apply_limit(&mut names, r.limit);
        Ok(names)
    }

    async fn label_values_inner(&self, r: LabelValuesRequest) -> Result<Vec<String>, Status> {
        if r.label.is_empty() {
            return Err(Status::invalid_argument(
                "label name parameter cannot be empty",
            ));
        }
        let ext = self.ext()?;
        let matchers = convert_matchers(&r.matchers)?;
        let Some(rest) = match_external(&ext, matchers) else {
            return Ok(Vec::new());
        };
        if let Some((_, v)) = ext.iter().find(|(n, _)| *n == r.label) {
            return Ok(vec![v.clone()]);
        }
        let mut values = self
            .prom
            .label_values(&r.label, r.start, r.end, &rest)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        values.sort();
        values.dedup();
        apply_limit(&mut values, r.limit);
        Ok(values)
    }

    /// The Info answer: the external label set, the time range and the
    /// StoreAPI capabilities.
    pub fn info_response(&self) -> Result<InfoResponse, Status> {
        let ext = self.ext()?;
        let lset = ZLabelSet {
            labels: to_pb_labels(&ext),
        };
        let min_time = self.state.min_time();
        Ok(InfoResponse {
            label_sets: vec![lset.clone()],
            component_type: "sidecar".into(),
            store: Some(StoreInfo {
                min_time,
                max_time: i64::MAX,
                supports_sharding: false,
                supports_without_replica_labels: true,
                tsdb_infos: vec![TsdbInfo {
                    labels: Some(lset),
                    min_time,
                    max_time: i64::MAX,
                }],
                supports_projections: false,
            }),
            metric_metadata: Some(MetricMetadataInfo {}),
            ..Default::default()
        })
    }
}

fn apply_limit(v: &mut Vec<String>, limit: i64) {
    if let Ok(l) = usize::try_from(limit) {
        if l > 0 {
            v.truncate(l);
        }
    }
}

fn to_pb_labels(l: &[(String, String)]) -> Vec<Label> {
    l.iter()
        .map(|(n, v)| Label {
            name: n.clone(),
            value: v.clone(),
        })
        .collect()
}

/// StoreAPI matchers to tsdb matchers (regexes anchored, Prometheus semantics).
pub fn convert_matchers(ms: &[LabelMatcher]) -> Result<Vec<Matcher>, Status> {
    ms.iter()
        .map(|m| {
            let kind = match label_matcher::Type::try_from(m.r#type) {
                Ok(label_matcher::Type::Eq) => MatchType::Equal,
                Ok(label_matcher::Type::Neq) => MatchType::NotEqual,
                Ok(label_matcher::Type::Re) => MatchType::Regex,
                Ok(label_matcher::Type::Nre) => MatchType::NotRegex,
                Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "unknown matcher type {}",
                        m.r#type
                    )))
                }
            };
            Matcher::new(kind, m.name.clone(), m.value.clone())
                .map_err(|e| Status::invalid_argument(e.to_string()))
        })
        .collect()
}

/// Thanos' `matchesExternalLabels`: `None` when a matcher on an external
/// label rejects its value; otherwise the matchers on other labels.
pub fn match_external(ext: &[(String, String)], ms: Vec<Matcher>) -> Option<Vec<Matcher>> {
    let mut rest = Vec::with_capacity(ms.len());
    for m in ms {
        match ext.iter().find(|(n, _)| *n == m.name) {
            Some((_, v)) if !m.matches(v) => return None,
            Some(_) => {}
            None => rest.push(m),
        }
    }
    Some(rest)
}

/// Series labels with the external labels attached (they win) and the
/// replica labels removed, sorted by name.
pub fn finish_labels(
    mut labels: Vec<(String, String)>,
    ext: &[(String, String)],
    without: &[String],
) -> Vec<Label> {
    labels.retain(|(n, _)| !ext.iter().any(|(e, _)| e == n));
    labels.extend(ext.iter().cloned());
    labels.retain(|(n, _)| !without.contains(n));
    labels.sort();
    // Consumed, not cloned: this runs for every series of every answer.
    labels
        .into_iter()
        .map(|(name, value)| Label { name, value })
        .collect()
}

fn label_key(s: &Series) -> impl Iterator<Item = (&str, &str)> {
    s.labels.iter().map(|l| (l.name.as_str(), l.value.as_str()))
}

/// Sorts by labels (Prometheus' `labels.Compare`: pairwise by name, then
/// value, then length) and merges series whose labels became equal.
pub fn sort_and_merge(series: &mut Vec<Series>) {
    series.sort_by(|a, b| label_key(a).cmp(label_key(b)));
    let mut out: Vec<Series> = Vec::with_capacity(series.len());
    for s in series.drain(..) {
        match out.last_mut() {
            Some(last) if last.labels == s.labels => {
                last.chunks.extend(s.chunks);
                last.chunks.sort_by_key(|c| (c.min_time, c.max_time));
            }
            _ => out.push(s),
        }
    }
    *series = out;
}

/// One frame per series, or `SeriesBatch` frames of up to `batch` series
/// (Thanos batches only for sizes above 1).
pub fn to_frames(series: Vec<Series>, batch: i64) -> Vec<SeriesResponse> {
    let batch = usize::try_from(batch).unwrap_or(0);
    if batch <= 1 {
        return series
            .into_iter()
            .map(|s| SeriesResponse {
                result: Some(series_response::Result::Series(s)),
            })
            .collect();
    }
    let mut frames = Vec::new();
    let mut it = series.into_iter().peekable();
    while it.peek().is_some() {
        let part: Vec<Series> = it.by_ref().take(batch).collect();
        frames.push(SeriesResponse {
            result: Some(series_response::Result::Batch(SeriesBatch { series: part })),
        });
    }
    frames
}

type FrameStream =
    tonic::codegen::tokio_stream::Iter<std::vec::IntoIter<Result<SeriesResponse, Status>>>;

#[tonic::async_trait]
impl Store for SidecarStore {
    type SeriesStream = FrameStream;

    async fn series(
        &self,
        request: Request<SeriesRequest>,
    ) -> Result<Response<Self::SeriesStream>, Status> {
        let res = self.series_frames(request.into_inner()).await;
        self.state.metrics.inc_request("Series", res.is_err());
        let frames = res?;
        Ok(Response::new(tonic::codegen::tokio_stream::iter(
            frames.into_iter().map(Ok).collect::<Vec<_>>(),
        )))
    }

    async fn label_names(
        &self,
        request: Request<LabelNamesRequest>,
    ) -> Result<Response<LabelNamesResponse>, Status> {
        let res = self.label_names_inner(request.into_inner()).await;
        self.state.metrics.inc_request("LabelNames", res.is_err());
        Ok(Response::new(LabelNamesResponse {
            names: res?,
            ..Default::default()
        }))
    }

    async fn label_values(
        &self,
        request: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelValuesResponse>, Status> {
        let res = self.label_values_inner(request.into_inner()).await;
        self.state.metrics.inc_request("LabelValues", res.is_err());
        Ok(Response::new(LabelValuesResponse {
            values: res?,
            ..Default::default()
        }))
    }
}

#[tonic::async_trait]
impl Metadata for SidecarStore {
    type MetricMetadataStream =
        tonic::codegen::tokio_stream::Once<Result<MetricMetadataResponse, Status>>;

    async fn metric_metadata(
        &self,
        request: Request<MetricMetadataRequest>,
    ) -> Result<Response<Self::MetricMetadataStream>, Status> {
        let r = request.into_inner();
        let res = self
            .prom
            .metric_metadata(&r.metric, r.limit)
            .await
            .map_err(|e| Status::internal(e.to_string()));
        self.state
            .metrics
            .inc_request("MetricMetadata", res.is_err());
        let metadata = res?
            .into_iter()
            .map(|(name, metas)| {
                let metas = metas
                    .into_iter()
                    .map(|m| Meta {
                        r#type: m.kind,
                        help: m.help,
                        unit: m.unit,
                    })
                    .collect();
                (name, MetricMetadataEntry { metas })
            })
            .collect();
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
impl Info for SidecarStore {
    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let res = self.info_response();
        self.state.metrics.inc_request("Info", res.is_err());
        res.map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext() -> Vec<(String, String)> {
        vec![
            ("cluster".into(), "c1".into()),
            ("replica".into(), "a".into()),
        ]
    }

    #[test]
    fn external_label_matchers() {
        let m = |k, n: &str, v: &str| Matcher::new(k, n, v).unwrap();
        assert!(match_external(&ext(), vec![m(MatchType::Equal, "cluster", "c2")]).is_none());
        assert!(
            match_external(&ext(), vec![m(MatchType::Regex, "cluster", "c.")])
                .unwrap()
                .is_empty()
        );
        let rest = match_external(
            &ext(),
            vec![
                m(MatchType::NotEqual, "replica", "b"),
                m(MatchType::Equal, "__name__", "up"),
            ],
        )
        .unwrap();
        assert_eq!(rest, vec![Matcher::equal("__name__", "up")]);
    }

    #[test]
    fn labels_are_extended_sorted_and_replicas_dropped() {
        let l = finish_labels(
            vec![("a".into(), "1".into()), ("cluster".into(), "own".into())],
            &ext(),
            &["replica".to_string()],
        );
        let got: Vec<_> = l
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(got, vec![("a", "1"), ("cluster", "c1")]);
    }

    #[test]
    fn batching() {
        let s = |v: &str| Series {
            labels: vec![Label {
                name: "a".into(),
                value: v.into(),
            }],
            chunks: vec![],
        };
        let mut series = vec![s("2"), s("1"), s("1"), s("3")];
        sort_and_merge(&mut series);
        assert_eq!(series.len(), 3);
        assert_eq!(to_frames(series.clone(), 0).len(), 3);
        let frames = to_frames(series, 2);
        assert_eq!(frames.len(), 2);
        assert!(matches!(
            &frames[1].result,
            Some(series_response::Result::Batch(b)) if b.series.len() == 1
        ));
    }
}
