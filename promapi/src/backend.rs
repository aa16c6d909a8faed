//! What the API needs from the server it runs in.
//!
//! `strata tsdb` implements [`Backend`] over its local database and `strata
//! query` over StoreAPI fan-out. The API calls every method except
//! [`Backend::ready`] from a blocking thread (`tokio::task::spawn_blocking`), never from an async worker, so an
//! implementation may block: read files, or wait on a runtime handle
//! (`Handle::block_on`) for remote calls.
//!
//! Every data method receives a [`RequestContext`] carrying all request
//! parameters and headers, so a backend can honour parameters this crate does
//! not know (Thanos' `dedup`, `partial_response`, `replicaLabels[]`,
//! `storeMatch[]`, tenant headers) without changes here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use axum::http::HeaderMap;
use serde::Serialize;
use strata_promql::{Queryable, SelectHints};
use strata_tsdb::labels::{Labels, MatchType, Matcher};

use crate::error::ApiError;
use crate::params::Params;

/// The endpoint a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    Query,
    QueryRange,
    Series,
    Labels,
    LabelValues,
    QueryExemplars,
    Metadata,
    Targets,
}

/// Everything about the HTTP request a backend may want.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RequestContext {
    pub endpoint: Endpoint,
    /// All parameters, form body first, then URL query.
    pub params: Params,
    pub headers: HeaderMap,
    /// When the answer is due (the query timeout); remote calls should not
    /// outlive it.
    pub deadline: Option<Instant>,
}

impl RequestContext {
    pub fn new(endpoint: Endpoint, params: Params) -> Self {
        RequestContext {
            endpoint,
            params,
            headers: HeaderMap::new(),
            deadline: None,
        }
    }

    pub fn with_headers(mut self, headers: HeaderMap) -> Self {
        self.headers = headers;
        self
    }

    pub fn with_deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }
}

/// The selection of a `/series`, `/labels` or `/label/…/values` request.
#[derive(Clone, Debug)]
pub struct MetadataQuery {
    /// The parsed `match[]` selectors; the result is their union. Empty for
    /// `/labels` and `/label/…/values` without `match[]` (meaning everything).
    pub matcher_sets: Vec<Vec<Matcher>>,
    /// Inclusive bounds in milliseconds.
    pub start: i64,
    pub end: i64,
    /// 0 for no limit; otherwise the backend may stop after this many results.
    /// It is one more than the client's `limit`, so the API can tell whether
    /// it truncated and warn.
    pub limit_hint: usize,
}

/// A result with the warnings collected while computing it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WithWarnings<T> {
    pub data: T,
    pub warnings: Vec<String>,
}

impl<T> WithWarnings<T> {
    pub fn new(data: T) -> Self {
        WithWarnings {
            data,
            warnings: Vec::new(),
        }
    }
}

/// `/api/v1/status/buildinfo`. Grafana reads `version` as semver; a
/// `features` key would make it treat the server as Mimir, so there is none.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct BuildInfo {
    pub version: String,
    pub revision: String,
    pub branch: String,
    #[serde(rename = "buildUser")]
    pub build_user: String,
    #[serde(rename = "buildDate")]
    pub build_date: String,
    #[serde(rename = "goVersion")]
    pub go_version: String,
}

/// `/api/v1/status/runtimeinfo`, with Prometheus' field names. Empty time
/// fields are filled by the API (start of the router, now); the Go-specific
/// counters are kept for shape compatibility with Prometheus' UI.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct RuntimeInfo {
    #[serde(rename = "startTime")]
    pub start_time: String,
    #[serde(rename = "CWD")]
    pub cwd: String,
    pub hostname: String,
    #[serde(rename = "serverTime")]
    pub server_time: String,
    #[serde(rename = "reloadConfigSuccess")]
    pub reload_config_success: bool,
    #[serde(rename = "lastConfigTime")]
    pub last_config_time: String,
    #[serde(rename = "corruptionCount")]
    pub corruption_count: i64,
    #[serde(rename = "goroutineCount")]
    pub goroutine_count: i64,
    #[serde(rename = "GOMAXPROCS")]
    pub gomaxprocs: i64,
    #[serde(rename = "GOMEMLIMIT")]
    pub gomemlimit: i64,
    #[serde(rename = "GOGC")]
    pub gogc: String,
    #[serde(rename = "GODEBUG")]
    pub godebug: String,
    #[serde(rename = "storageRetention")]
    pub storage_retention: String,
}

/// `/api/v1/status/tsdb`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct TsdbStatus {
    #[serde(rename = "headStats")]
    pub head_stats: HeadStats,
    #[serde(rename = "seriesCountByMetricName")]
    pub series_count_by_metric_name: Vec<TsdbStat>,
    #[serde(rename = "labelValueCountByLabelName")]
    pub label_value_count_by_label_name: Vec<TsdbStat>,
    #[serde(rename = "memoryInBytesByLabelName")]
    pub memory_in_bytes_by_label_name: Vec<TsdbStat>,
    #[serde(rename = "seriesCountByLabelValuePair")]
    pub series_count_by_label_value_pair: Vec<TsdbStat>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct HeadStats {
    #[serde(rename = "numSeries")]
    pub num_series: u64,
    #[serde(rename = "numLabelPairs")]
    pub num_label_pairs: i64,
    #[serde(rename = "chunkCount")]
    pub chunk_count: i64,
    #[serde(rename = "minTime")]
    pub min_time: i64,
    #[serde(rename = "maxTime")]
    pub max_time: i64,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct TsdbStat {
    pub name: String,
    pub value: u64,
}

/// One metadata entry of `/api/v1/metadata`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct MetricMetadata {
    #[serde(rename = "type")]
    pub kind: String,
    pub help: String,
    pub unit: String,
}

/// The server behind the API. See the module docs for the threading rules.
pub trait Backend: Send + Sync + 'static {
    /// The storage that queries of this request evaluate against.
    fn queryable(&self, ctx: &RequestContext) -> Result<Arc<dyn Queryable>, ApiError>;

    /// `/series`: the label sets of series matching any of the selectors in
    /// the time range. Order and duplicates do not matter: the API sorts and
    /// deduplicates. The default selects through [`Backend::queryable`].
    fn series(
        &self,
        ctx: &RequestContext,
        q: &MetadataQuery,
    ) -> Result<WithWarnings<Vec<Labels>>, ApiError> {
        series_via_select(self.queryable(ctx)?.as_ref(), q)
    }

    /// `/labels`: label names. The default selects through
    /// [`Backend::queryable`], which loads samples; backends with an index
    /// should override it.
    fn label_names(
        &self,
        ctx: &RequestContext,
        q: &MetadataQuery,
    ) -> Result<WithWarnings<Vec<String>>, ApiError> {
        label_names_via_select(self.queryable(ctx)?.as_ref(), q)
    }

    /// `/label/<name>/values`. Default as for [`Backend::label_names`].
    fn label_values(
        &self,
        ctx: &RequestContext,
        name: &str,
        q: &MetadataQuery,
    ) -> Result<WithWarnings<Vec<String>>, ApiError> {
        label_values_via_select(self.queryable(ctx)?.as_ref(), name, q)
    }

    fn build_info(&self) -> BuildInfo;

    /// Command-line flags, flat, all values as strings.
    fn flags(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// The loaded configuration file, as YAML text.
    fn config_yaml(&self) -> String {
        String::new()
    }

    fn runtime_info(&self) -> RuntimeInfo {
        RuntimeInfo::default()
    }

    /// Cardinality statistics with at most `limit` entries per list; `None`
    /// when this server has no TSDB (the API then answers 404 not_found).
    fn tsdb_status(&self, _limit: usize) -> Result<Option<TsdbStatus>, ApiError> {
        Ok(None)
    }

    /// `/targets` data, as Prometheus shapes it.
    fn targets(&self, _ctx: &RequestContext) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!({
            "activeTargets": [],
            "droppedTargets": [],
            "droppedTargetCounts": {},
        }))
    }

    /// Metric metadata by metric family, with warnings (e.g. a store of a
    /// federated backend that failed under partial response). The API
    /// applies `metric`, `limit` and `limit_per_metric`.
    fn metadata(
        &self,
        _ctx: &RequestContext,
    ) -> Result<WithWarnings<BTreeMap<String, Vec<MetricMetadata>>>, ApiError> {
        Ok(WithWarnings::new(BTreeMap::new()))
    }

    /// Whether the storage is ready; until it is, every API call and
    /// `/-/ready` answer 503 "Service Unavailable". Called on the async
    /// workers for every request: must be cheap and must not block (read an
    /// atomic flag).
    fn ready(&self) -> bool {
        true
    }
}

fn hints(q: &MetadataQuery) -> SelectHints {
    SelectHints {
        start: q.start,
        end: q.end,
        // Prometheus uses this function name for selections that only need
        // label sets, so storage can skip decoding chunks.
        func: Some("series".to_string()),
        ..Default::default()
    }
}

fn select_all(
    queryable: &dyn Queryable,
    sets: &[Vec<Matcher>],
    q: &MetadataQuery,
) -> Result<WithWarnings<Vec<Labels>>, ApiError> {
    let h = hints(q);
    let mut out = WithWarnings::new(Vec::new());
    for set in sets {
        let r = queryable
            .select(set, &h)
            .map_err(|e| ApiError::internal(e.0))?;
        out.warnings.extend(r.warnings);
        out.data.extend(r.series.into_iter().map(|s| s.labels));
    }
    Ok(out)
}

/// [`Backend::series`] implemented with `Queryable::select`.
pub fn series_via_select(
    queryable: &dyn Queryable,
    q: &MetadataQuery,
) -> Result<WithWarnings<Vec<Labels>>, ApiError> {
    select_all(queryable, &q.matcher_sets, q)
}

/// `[[__name__=~".+"]]` when there are no selectors: "every series".
fn sets_or_everything(q: &MetadataQuery, label: &str) -> Result<Vec<Vec<Matcher>>, ApiError> {
    if !q.matcher_sets.is_empty() {
        return Ok(q.matcher_sets.clone());
    }
    let m = Matcher::new(MatchType::Regex, label, ".+")
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(vec![vec![m]])
}

/// [`Backend::label_names`] implemented with `Queryable::select`.
pub fn label_names_via_select(
    queryable: &dyn Queryable,
    q: &MetadataQuery,
) -> Result<WithWarnings<Vec<String>>, ApiError> {
    let sets = sets_or_everything(q, strata_tsdb::labels::METRIC_NAME)?;
    let r = select_all(queryable, &sets, q)?;
    let names: BTreeSet<String> = r
        .data
        .iter()
        .flat_map(|l| l.iter().map(|l| l.name.to_string()))
        .collect();
    Ok(WithWarnings {
        data: names.into_iter().collect(),
        warnings: r.warnings,
    })
}

/// [`Backend::label_values`] implemented with `Queryable::select`.
pub fn label_values_via_select(
    queryable: &dyn Queryable,
    name: &str,
    q: &MetadataQuery,
) -> Result<WithWarnings<Vec<String>>, ApiError> {
    let sets = sets_or_everything(q, name)?;
    let r = select_all(queryable, &sets, q)?;
    let values: BTreeSet<String> = r
        .data
        .iter()
        .filter_map(|l| l.get(name).map(str::to_string))
        .collect();
    Ok(WithWarnings {
        data: values.into_iter().collect(),
        warnings: r.warnings,
    })
}
