//! The querier as a StoreAPI server, so a global querier can federate
//! regional ones (Thanos' querier serves the same).
//!
//! `Series`, `LabelNames` and `LabelValues` go through the same fan-out as
//! the HTTP API ([`crate::proxy`]), without replica deduplication: the
//! caller deduplicates (it passes `without_replica_labels`, which the
//! fan-out forwards and also applies itself). As in Thanos' proxy store, a
//! Series request without matchers is `InvalidArgument`, and `limit` (like
//! the label calls' `limit`) applies to the merged answer. Partial response follows the
//! request's `partial_response_disabled`; store failures under partial
//! response are sent as `Warning` frames. `MetricMetadata` (the Metadata
//! API) fans out to the stores that serve it ([`proxy::metric_metadata`])
//! and answers warnings first, then one merged metadata frame. `Info`
//! answers the union of the active stores' label sets and their overall
//! time range, component type `query`, and advertises the Metadata API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_proto::thanos::info::info_server::Info;
use strata_proto::thanos::info::{
    InfoRequest, InfoResponse, MetricMetadataInfo, StoreInfo, TsdbInfo,
};
use strata_proto::thanos::metadata_server::Metadata;
use strata_proto::thanos::store_server::Store;
use strata_proto::thanos::{
    metric_metadata_response, series_response, Label, LabelNamesRequest, LabelNamesResponse,
    LabelValuesRequest, LabelValuesResponse, MetricMetadata, MetricMetadataEntry,
    MetricMetadataRequest, MetricMetadataResponse, PartialResponseStrategy, Series, SeriesBatch,
    SeriesRequest, SeriesResponse, ZLabelSet,
};
use strata_tsdb::labels::Labels;
use tonic::{Request, Response, Status};

use crate::endpoints::EndpointSet;
use crate::proxy::{self, Fanout, ProxyError, ProxyOptions};

/// See the module docs.
#[derive(Clone)]
pub struct QuerierStore {
    set: Arc<EndpointSet>,
    proxy: ProxyOptions,
    /// Bound of one request's fan-out (`--query.timeout`), so a hung
    /// downstream store cannot hold a caller's stream open forever.
    timeout: Duration,
}

impl QuerierStore {
    pub fn new(set: Arc<EndpointSet>, proxy: ProxyOptions, timeout: Duration) -> Self {
        QuerierStore {
            set,
            proxy,
            timeout,
        }
    }

    fn fanout(&self, partial_disabled: bool, strip: &[String]) -> Fanout {
        Fanout {
            partial_response: !partial_disabled,
            store_matchers: Vec::new(),
            strip_labels: strip.to_vec(),
            deadline: Instant::now().checked_add(self.timeout),
        }
    }

    /// The Info answer; see the module docs.
    pub fn info_response(&self) -> InfoResponse {
        let mut sets: Vec<Labels> = Vec::new();
        let (mut min, mut max) = (i64::MAX, i64::MIN);
        for ep in self.set.active() {
            let Some(m) = ep.meta() else { continue };
            min = min.min(m.min_time);
            max = max.max(m.max_time);
            sets.extend(m.label_sets);
        }
        sets.sort();
        sets.dedup();
        let z: Vec<ZLabelSet> = sets
            .iter()
            .map(|ls| ZLabelSet {
                labels: pb_labels(ls),
            })
            .collect();
        InfoResponse {
            label_sets: z.clone(),
            component_type: "query".into(),
            store: Some(StoreInfo {
                min_time: min,
                max_time: max,
                supports_sharding: false,
                supports_without_replica_labels: true,
                tsdb_infos: z
                    .into_iter()
                    .map(|labels| TsdbInfo {
                        labels: Some(labels),
                        min_time: min,
                        max_time: max,
                    })
                    .collect(),
                supports_projections: false,
            }),
            metric_metadata: Some(MetricMetadataInfo {}),
            ..Default::default()
        }
    }
}

fn pb_labels(ls: &Labels) -> Vec<Label> {
    ls.iter()
        .map(|l| Label {
            name: l.name.to_string(),
            value: l.value.to_string(),
        })
        .collect()
}

fn status(e: ProxyError) -> Status {
    match e {
        ProxyError::Invalid(m) => Status::invalid_argument(m),
        ProxyError::Limit(m) => Status::resource_exhausted(m),
        ProxyError::Store(m) => Status::unavailable(m),
    }
}

type FrameStream =
    tonic::codegen::tokio_stream::Iter<std::vec::IntoIter<Result<SeriesResponse, Status>>>;

#[tonic::async_trait]
impl Store for QuerierStore {
    type SeriesStream = FrameStream;

    async fn series(
        &self,
        request: Request<SeriesRequest>,
    ) -> Result<Response<Self::SeriesStream>, Status> {
        let req = request.into_inner();
        // As Thanos' proxy: a request without matchers is refused here,
        // not passed on for every store to refuse (which under partial
        // response would come back as warnings and an empty success).
        if req.matchers.is_empty() {
            return Err(Status::invalid_argument("no matchers specified"));
        }
        let fo = self.fanout(req.partial_response_disabled, &req.without_replica_labels);
        let batch = usize::try_from(req.response_batch_size).unwrap_or(0);
        let skip = req.skip_chunks;
        // `limit` is forwarded, so each store sends at most its first
        // `limit` series; the merged answer is cut to the first `limit`
        // too (the union of N stores' first `limit` has up to N×limit).
        let limit = usize::try_from(req.limit).unwrap_or(0);
        let eps = self.set.active();
        let mut set = proxy::series(&eps, req, &fo, &self.proxy)
            .await
            .map_err(status)?;
        if limit > 0 {
            set.series.truncate(limit);
        }
        let mut frames: Vec<Result<SeriesResponse, Status>> = set
            .warnings
            .into_iter()
            .map(|w| {
                Ok(SeriesResponse {
                    result: Some(series_response::Result::Warning(w)),
                })
            })
            .collect();
        let series: Vec<Series> = set
            .series
            .into_iter()
            .map(|s| Series {
                labels: pb_labels(&s.labels),
                chunks: if skip { Vec::new() } else { s.chunks },
            })
            .collect();
        if batch <= 1 {
            frames.extend(series.into_iter().map(|s| {
                Ok(SeriesResponse {
                    result: Some(series_response::Result::Series(s)),
                })
            }));
        } else {
            for part in series.chunks(batch) {
                frames.push(Ok(SeriesResponse {
                    result: Some(series_response::Result::Batch(SeriesBatch {
                        series: part.to_vec(),
                    })),
                }));
            }
        }
        Ok(Response::new(tonic::codegen::tokio_stream::iter(frames)))
    }

    async fn label_names(
        &self,
        request: Request<LabelNamesRequest>,
    ) -> Result<Response<LabelNamesResponse>, Status> {
        let req = request.into_inner();
        let fo = self.fanout(req.partial_response_disabled, &req.without_replica_labels);
        let limit = usize::try_from(req.limit).unwrap_or(0);
        let eps = self.set.active();
        let (mut names, warnings) = proxy::label_names(&eps, req, &fo, &self.proxy)
            .await
            .map_err(status)?;
        if limit > 0 {
            names.truncate(limit);
        }
        Ok(Response::new(LabelNamesResponse {
            names,
            warnings,
            hints: None,
        }))
    }

    async fn label_values(
        &self,
        request: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelValuesResponse>, Status> {
        let req = request.into_inner();
        if req.label.is_empty() {
            return Err(Status::invalid_argument(
                "label name parameter cannot be empty",
            ));
        }
        let fo = self.fanout(req.partial_response_disabled, &req.without_replica_labels);
        let limit = usize::try_from(req.limit).unwrap_or(0);
        let eps = self.set.active();
        let (mut values, warnings) = proxy::label_values(&eps, req, &fo, &self.proxy)
            .await
            .map_err(status)?;
        if limit > 0 {
            values.truncate(limit);
        }
        Ok(Response::new(LabelValuesResponse {
            values,
            warnings,
            hints: None,
        }))
    }
}

type MetadataStream =
    tonic::codegen::tokio_stream::Iter<std::vec::IntoIter<Result<MetricMetadataResponse, Status>>>;

#[tonic::async_trait]
impl Metadata for QuerierStore {
    type MetricMetadataStream = MetadataStream;

    async fn metric_metadata(
        &self,
        request: Request<MetricMetadataRequest>,
    ) -> Result<Response<Self::MetricMetadataStream>, Status> {
        let req = request.into_inner();
        let abort = req.partial_response_strategy == PartialResponseStrategy::Abort as i32;
        let fo = self.fanout(abort, &[]);
        let eps = self.set.active();
        let (merged, warnings) = proxy::metric_metadata(&eps, req, &fo, &self.proxy)
            .await
            .map_err(status)?;
        let mut frames: Vec<Result<MetricMetadataResponse, Status>> = warnings
            .into_iter()
            .map(|w| {
                Ok(MetricMetadataResponse {
                    result: Some(metric_metadata_response::Result::Warning(w)),
                })
            })
            .collect();
        frames.push(Ok(MetricMetadataResponse {
            result: Some(metric_metadata_response::Result::Metadata(MetricMetadata {
                metadata: merged
                    .into_iter()
                    .map(|(name, metas)| (name, MetricMetadataEntry { metas }))
                    .collect(),
            })),
        }));
        Ok(Response::new(tonic::codegen::tokio_stream::iter(frames)))
    }
}

#[tonic::async_trait]
impl Info for QuerierStore {
    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        Ok(Response::new(self.info_response()))
    }
}
