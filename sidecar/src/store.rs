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
use strata_proto::storeapi::{
    convert_matchers, finish_label_names, finish_label_values, finish_labels, frame_stream,
    label_values_plan, match_external, sort_and_merge, to_frames, tsdb_info, FrameStream,
};
use strata_proto::thanos::info::info_server::Info;
use strata_proto::thanos::info::{InfoRequest, InfoResponse};
use strata_proto::thanos::metadata_server::Metadata;
use strata_proto::thanos::store_server::Store;
use strata_proto::thanos::{
    metric_metadata_response, Meta, MetricMetadata, MetricMetadataEntry, MetricMetadataRequest,
    MetricMetadataResponse,
};
use strata_proto::thanos::{
    LabelNamesRequest, LabelNamesResponse, LabelValuesRequest, LabelValuesResponse, Series,
    SeriesRequest, SeriesResponse,
};
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
        let Some(rest) = match_external(&ext, convert_matchers(&r.matchers)?) else {
            return Ok(Vec::new());
        };
        let names = self
            .prom
            .label_names(r.start, r.end, &rest)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(finish_label_names(names, &ext, r.limit))
    }

    async fn label_values_inner(&self, r: LabelValuesRequest) -> Result<Vec<String>, Status> {
        let ext = self.ext()?;
        let rest = match label_values_plan(&r.label, &r.matchers, &ext)? {
            Ok(rest) => rest,
            Err(answer) => return Ok(answer),
        };
        let values = self
            .prom
            .label_values(&r.label, r.start, r.end, &rest)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(finish_label_values(values, r.limit))
    }

    /// The Info answer: the external label set, the time range and the
    /// StoreAPI capabilities.
    pub fn info_response(&self) -> Result<InfoResponse, Status> {
        Ok(tsdb_info("sidecar", &self.ext()?, self.state.min_time()))
    }
}

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
        Ok(Response::new(frame_stream(frames)))
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
