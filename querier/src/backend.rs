//! The Prometheus HTTP API's [`Backend`] over the fan-out, and Thanos'
//! `/api/v1/stores`.
//!
//! [`QuerierBackend`] reads the Thanos parameters of each request
//! ([`QuerierBackend::params`]): `dedup` (default true), `replicaLabels[]`
//! (overrides `--query.replica-label`), `partial_response` (default
//! `--query.partial-response`), `max_source_resolution` (a duration, or
//! `auto` = step / 5 as Thanos computes it, default `auto` with
//! `--query.auto-downsampling`, else raw), and `storeMatch[]`. `/series`
//! asks the stores for label sets only (`skip_chunks`); `/labels` and
//! `/label/…/values` use the StoreAPI's `LabelNames`/`LabelValues`, so no
//! samples are loaded for metadata. `/metadata` fans out the Metadata API
//! with the request's `metric` and `limit` pushed down to the stores (the
//! API applies them again, and `limit_per_metric`, to the merged map);
//! failed stores under partial response are logged, since the API's
//! metadata answer has no warnings channel.
//!
//! The API calls every method from a blocking thread; remote calls run on
//! the querier's runtime through `Handle::block_on`.

use std::collections::BTreeMap;
use std::sync::Arc;

use strata_promapi::{
    ApiError, Backend, BuildInfo, MetadataQuery, MetricMetadata, RequestContext, RuntimeInfo,
    WithWarnings,
};
use strata_promql::{EngineOptions, Queryable};
use strata_proto::thanos::{
    LabelNamesRequest, LabelValuesRequest, MetricMetadataRequest, PartialResponseStrategy,
    SeriesRequest,
};
use strata_tsdb::labels::{Labels, Matcher};

use crate::endpoints::EndpointSet;
use crate::proxy::{self, ProxyError, ProxyOptions};
use crate::queryable::{FanoutQueryable, QueryParams};

/// What the backend needs from the querier's configuration.
#[derive(Clone, Debug)]
pub struct BackendOptions {
    pub replica_labels: Vec<String>,
    pub partial_response: bool,
    pub auto_downsampling: bool,
    /// Step used for `max_source_resolution=auto` on instant queries
    /// (Thanos' `--query.default-step`, 1s).
    pub default_step_ms: i64,
    /// `--query.max-samples`, also applied while decoding.
    pub max_samples: usize,
    pub proxy: ProxyOptions,
    /// For parsing `storeMatch[]`.
    pub engine: EngineOptions,
    /// `/status/flags`.
    pub flags: BTreeMap<String, String>,
}

/// See the module docs.
pub struct QuerierBackend {
    set: Arc<EndpointSet>,
    rt: tokio::runtime::Handle,
    opts: BackendOptions,
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn proxy_error(e: ProxyError) -> ApiError {
    match e {
        ProxyError::Invalid(m) => ApiError::bad_data(m),
        ProxyError::Limit(m) => ApiError::execution(m),
        ProxyError::Store(m) => ApiError::internal(m),
    }
}

/// A duration parameter in ms: Prometheus' duration syntax or float seconds.
fn duration_ms(v: &str) -> Option<i64> {
    strata_promapi::params::parse_duration_ns(v)
        .ok()
        .map(|ns| ns / 1_000_000)
}

impl QuerierBackend {
    pub fn new(set: Arc<EndpointSet>, rt: tokio::runtime::Handle, opts: BackendOptions) -> Self {
        QuerierBackend { set, rt, opts }
    }

    /// The Thanos parameters of a request.
    pub fn params(&self, ctx: &RequestContext) -> Result<QueryParams, ApiError> {
        let p = &ctx.params;
        let bool_param = |name: &str, default: bool| -> Result<bool, ApiError> {
            match p.value(name) {
                "" => Ok(default),
                v => parse_bool(v).ok_or_else(|| {
                    ApiError::bad_data(format!(
                        "cannot parse parameter {name}: {v:?} is not a boolean"
                    ))
                }),
            }
        };
        let dedup = bool_param("dedup", true)?;
        let partial_response = bool_param("partial_response", self.opts.partial_response)?;
        let mut replica_labels: Vec<String> = p
            .get_all("replicaLabels[]")
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect();
        if replica_labels.is_empty() {
            replica_labels = self.opts.replica_labels.clone();
        }
        let step_ms = match p.value("step") {
            "" => self.opts.default_step_ms,
            v => duration_ms(v).unwrap_or(self.opts.default_step_ms),
        };
        let max_resolution_ms =
            match p.value("max_source_resolution") {
                "" if self.opts.auto_downsampling => step_ms / 5,
                "" => 0,
                "auto" => step_ms / 5,
                v => match duration_ms(v) {
                    Some(ms) if ms >= 0 => ms,
                    Some(_) => return Err(ApiError::bad_data(
                        "negative max_source_resolution is not accepted. Try a positive integer",
                    )),
                    None => {
                        return Err(ApiError::bad_data(format!(
                            "cannot parse parameter max_source_resolution: {v:?}"
                        )))
                    }
                },
            };
        let store_matchers =
            strata_promapi::parse_match_params(p.get_all("storeMatch[]"), &self.opts.engine)
                .map_err(|e| ApiError::bad_data(format!("invalid storeMatch[]: {e}")))?;
        Ok(QueryParams {
            dedup,
            replica_labels,
            partial_response,
            max_resolution_ms,
            store_matchers,
            deadline: ctx.deadline,
            max_samples: self.opts.max_samples,
        })
    }

    fn strategy(partial: bool) -> i32 {
        if partial {
            PartialResponseStrategy::Warn as i32
        } else {
            PartialResponseStrategy::Abort as i32
        }
    }

    /// `match[]` sets, or one empty set meaning "everything".
    fn sets(q: &MetadataQuery) -> Vec<Vec<Matcher>> {
        if q.matcher_sets.is_empty() {
            vec![Vec::new()]
        } else {
            q.matcher_sets.clone()
        }
    }
}

impl Backend for QuerierBackend {
    fn queryable(&self, ctx: &RequestContext) -> Result<Arc<dyn Queryable>, ApiError> {
        let params = self.params(ctx)?;
        Ok(Arc::new(FanoutQueryable::new(
            self.set.clone(),
            self.rt.clone(),
            params,
            self.opts.proxy.clone(),
        )))
    }

    fn series(
        &self,
        ctx: &RequestContext,
        q: &MetadataQuery,
    ) -> Result<WithWarnings<Vec<Labels>>, ApiError> {
        let params = self.params(ctx)?;
        let fo = params.fanout();
        let eps = self.set.active();
        let mut out = WithWarnings::new(Vec::new());
        for set in &q.matcher_sets {
            let req = SeriesRequest {
                min_time: q.start,
                max_time: q.end,
                matchers: proxy::to_pb_matchers(set),
                skip_chunks: true,
                partial_response_disabled: !params.partial_response,
                partial_response_strategy: Self::strategy(params.partial_response),
                without_replica_labels: params.strip_labels(),
                limit: i64::try_from(q.limit_hint).unwrap_or(0),
                response_batch_size: crate::queryable::SERIES_RESPONSE_BATCH_SIZE,
                ..Default::default()
            };
            let r = self
                .rt
                .block_on(proxy::series(&eps, req, &fo, &self.opts.proxy))
                .map_err(proxy_error)?;
            out.warnings.extend(r.warnings);
            out.data.extend(r.series.into_iter().map(|s| s.labels));
        }
        Ok(out)
    }

    fn label_names(
        &self,
        ctx: &RequestContext,
        q: &MetadataQuery,
    ) -> Result<WithWarnings<Vec<String>>, ApiError> {
        let params = self.params(ctx)?;
        let fo = params.fanout();
        let eps = self.set.active();
        let mut out = WithWarnings::new(Vec::new());
        for set in Self::sets(q) {
            let req = LabelNamesRequest {
                partial_response_disabled: !params.partial_response,
                partial_response_strategy: Self::strategy(params.partial_response),
                start: q.start,
                end: q.end,
                matchers: proxy::to_pb_matchers(&set),
                without_replica_labels: params.strip_labels(),
                limit: i64::try_from(q.limit_hint).unwrap_or(0),
                ..Default::default()
            };
            let (names, warnings) = self
                .rt
                .block_on(proxy::label_names(&eps, req, &fo, &self.opts.proxy))
                .map_err(proxy_error)?;
            out.data.extend(names);
            out.warnings.extend(warnings);
        }
        Ok(out)
    }

    fn label_values(
        &self,
        ctx: &RequestContext,
        name: &str,
        q: &MetadataQuery,
    ) -> Result<WithWarnings<Vec<String>>, ApiError> {
        let params = self.params(ctx)?;
        let fo = params.fanout();
        let eps = self.set.active();
        let mut out = WithWarnings::new(Vec::new());
        for set in Self::sets(q) {
            let req = LabelValuesRequest {
                label: name.to_string(),
                partial_response_disabled: !params.partial_response,
                partial_response_strategy: Self::strategy(params.partial_response),
                start: q.start,
                end: q.end,
                matchers: proxy::to_pb_matchers(&set),
                without_replica_labels: params.strip_labels(),
                limit: i64::try_from(q.limit_hint).unwrap_or(0),
                ..Default::default()
            };
            let (values, warnings) = self
                .rt
                .block_on(proxy::label_values(&eps, req, &fo, &self.opts.proxy))
                .map_err(proxy_error)?;
            out.data.extend(values);
            out.warnings.extend(warnings);
        }
        Ok(out)
    }

    fn metadata(
        &self,
        ctx: &RequestContext,
    ) -> Result<WithWarnings<BTreeMap<String, Vec<MetricMetadata>>>, ApiError> {
        let params = self.params(ctx)?;
        let fo = params.fanout();
        // Prometheus: no limit (or a negative one) means all; the API
        // rejects what does not parse before calling us.
        let limit = match ctx.params.value("limit").parse::<i64>() {
            Ok(l) if l >= 0 => i32::try_from(l).unwrap_or(i32::MAX),
            _ => -1,
        };
        let req = MetricMetadataRequest {
            metric: ctx.params.value("metric").to_string(),
            limit,
            partial_response_strategy: Self::strategy(params.partial_response),
        };
        let eps = self.set.active();
        let (merged, warnings) = self
            .rt
            .block_on(proxy::metric_metadata(&eps, req, &fo, &self.opts.proxy))
            .map_err(proxy_error)?;
        for w in &warnings {
            tracing::warn!(warning = %w, "metadata: partial response");
        }
        let data = merged
            .into_iter()
            .map(|(name, metas)| {
                let metas = metas
                    .into_iter()
                    .map(|m| MetricMetadata {
                        kind: m.r#type,
                        help: m.help,
                        unit: m.unit,
                    })
                    .collect();
                (name, metas)
            })
            .collect();
        Ok(WithWarnings { data, warnings })
    }

    fn build_info(&self) -> BuildInfo {
        BuildInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..BuildInfo::default()
        }
    }

    fn flags(&self) -> BTreeMap<String, String> {
        self.opts.flags.clone()
    }

    fn runtime_info(&self) -> RuntimeInfo {
        RuntimeInfo {
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
            reload_config_success: true,
            ..RuntimeInfo::default()
        }
    }
}

/// `lastCheck` as Go marshals a `time.Time`.
fn rfc3339(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// The `data` of `/api/v1/stores`: endpoints in the active set grouped by
/// component type, in Thanos' shape.
pub fn stores_json(set: &EndpointSet) -> serde_json::Value {
    let mut groups: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for ep in set.active() {
        let st = ep.status();
        let Some(meta) = &st.meta else { continue };
        let label_sets: Vec<serde_json::Value> = meta
            .label_sets
            .iter()
            .map(|ls| {
                serde_json::Value::Object(
                    ls.iter()
                        .map(|l| (l.name.to_string(), serde_json::Value::from(&*l.value)))
                        .collect(),
                )
            })
            .collect();
        groups
            .entry(meta.component.clone())
            .or_default()
            .push(serde_json::json!({
                "name": ep.name,
                "lastCheck": st.last_check.map(rfc3339),
                "lastError": st.last_error,
                "labelSets": label_sets,
                "minTime": meta.min_time,
                "maxTime": meta.max_time,
            }));
    }
    serde_json::to_value(groups).unwrap_or_default()
}
