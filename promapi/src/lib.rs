//! The Prometheus HTTP API (`/api/v1`), byte-compatible with Prometheus.
//!
//! Grafana, promtool and other Prometheus clients talk to Strata through this
//! crate. It serves the same endpoints, accepts the same parameters (URL query
//! or urlencoded POST body, Go `FormValue` precedence), and answers with the
//! same JSON bytes, error types, error texts and HTTP codes as Prometheus
//! (3.x behaviour where 2.42 and 3.x differ, e.g. `infos`, `limit`, status 499
//! for canceled queries).
//!
//! The crate is generic over a [`Backend`]: `strata tsdb` implements it over
//! its local database, `strata query` over StoreAPI fan-out. Queries are
//! evaluated by `strata_promql::Engine` against the backend's `Queryable`.
//!
//! ```text
//! router(backend, opts)
//!   /api/v1/*    CORS → readiness (503) → OPTIONS (204) → gzip → handler
//!   /-/healthy   /-/ready
//! ```
//!
//! Module map: [`params`] parses parameters, times and durations; [`selector`]
//! turns `match[]` into matchers; [`format`] writes result JSON byte-exactly;
//! [`response`] builds the envelope; [`backend`] is the server-side trait;
//! `handlers` holds the endpoints; [`webconfig`] is Prometheus'
//! `--web.config.file` (TLS, headers, basic auth) for any Strata server.
//!
//! Limits: query evaluation runs on blocking threads, at most
//! [`ApiOptions::max_concurrency`] at a time (further queries wait in a queue
//! and time out there like Prometheus' `query queue`), each bounded by the
//! server's query timeout and the request's `timeout` parameter; request bodies
//! are capped at [`ApiOptions::max_body_bytes`]; queries longer than
//! [`ApiOptions::max_query_length`] are rejected before parsing.

pub mod backend;
pub mod error;
pub mod format;
mod handlers;
pub mod params;
pub mod response;
pub mod selector;
pub mod webconfig;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use strata_promql::EngineOptions;
use tokio::sync::Semaphore;
use tower_http::compression::CompressionLayer;

pub use backend::{
    label_names_via_select, label_values_via_select, series_via_select, Backend, BuildInfo,
    Endpoint, HeadStats, MetadataQuery, MetricMetadata, RequestContext, RuntimeInfo, TsdbStat,
    TsdbStatus, WithWarnings,
};
pub use error::{ApiError, ErrorType};
pub use params::Params;
pub use selector::{parse_match_params, parse_series_selector};

/// Server-side limits and settings of the API.
#[derive(Clone, Debug)]
pub struct ApiOptions {
    /// Options of the engine; `timeout` and `lookback_delta` are overridden
    /// per request (see [`ApiOptions::query_timeout`] and the
    /// `lookback_delta` parameter).
    pub engine: EngineOptions,
    /// Upper bound of a query's run time including queueing
    /// (`--query.timeout`); the `timeout` parameter can only lower it.
    pub query_timeout: Duration,
    /// Queries evaluated at once (`--query.max-concurrency`); more wait in a
    /// queue. 0 is taken as 1.
    pub max_concurrency: usize,
    /// `(end - start) / step` above this is rejected (Prometheus: 11,000).
    pub max_points_per_series: u64,
    /// Larger urlencoded bodies are rejected with `bad_data`.
    pub max_body_bytes: usize,
    /// Longer `query` and `match[]` values are rejected with `bad_data`;
    /// 0 disables the check. Protects the parser from huge inputs.
    pub max_query_length: usize,
    /// Allowed CORS origins as an anchored regex; `None` allows every origin
    /// (`Access-Control-Allow-Origin: *`), Prometheus' default `.*`.
    pub cors_origin: Option<regex::Regex>,
    /// Used in the `/-/healthy` and `/-/ready` texts ("<name> is Ready.").
    pub app_name: String,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            engine: EngineOptions::default(),
            query_timeout: Duration::from_secs(120),
            max_concurrency: 20,
            max_points_per_series: 11_000,
            max_body_bytes: 1 << 20,
            max_query_length: 128 * 1024,
            cors_origin: None,
            app_name: "Strata".to_string(),
        }
    }
}

impl ApiOptions {
    /// Compiles a `--web.cors.origin` style pattern: anchored like Prometheus,
    /// `.*` meaning any origin.
    pub fn cors_origin_pattern(pattern: &str) -> Result<Option<regex::Regex>, regex::Error> {
        if pattern == ".*" {
            return Ok(None);
        }
        regex::Regex::new(&format!("^(?:{pattern})$")).map(Some)
    }
}

/// Shared state of the handlers.
pub(crate) struct Api {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) opts: ApiOptions,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) started: SystemTime,
}

/// The API router: `/api/v1/…` plus `/-/healthy` and `/-/ready`.
///
/// Serve it on a Tokio runtime with timers enabled (`enable_all`): handlers
/// use `spawn_blocking` and deadlines.
pub fn router(backend: Arc<dyn Backend>, opts: ApiOptions) -> Router {
    router_with(backend, opts, Router::new())
}

/// [`router`] with extra routes under `/api/v1` (paths relative to it, e.g.
/// `/stores`), served behind the same CORS, readiness and gzip layers as the
/// built-in endpoints. `strata query` adds Thanos' `/api/v1/stores` this way.
pub fn router_with(backend: Arc<dyn Backend>, opts: ApiOptions, extra_v1: Router) -> Router {
    let permits = Arc::new(Semaphore::new(opts.max_concurrency.max(1)));
    let api = Arc::new(Api {
        backend,
        opts,
        permits,
        started: SystemTime::now(),
    });

    let v1 = handlers::routes()
        .merge(extra_v1.with_state::<Arc<Api>>(()))
        .fallback(not_found)
        .layer(CompressionLayer::new())
        .layer(middleware::from_fn_with_state(api.clone(), api_middleware));

    Router::new()
        .nest("/api/v1", v1)
        .route("/-/healthy", get(healthy).head(healthy))
        .route("/-/ready", get(ready).head(ready))
        .fallback(not_found)
        .with_state(api)
}

/// Go's `http.NotFound`, which Prometheus' router answers for unknown paths.
async fn not_found() -> Response {
    go_http_error(StatusCode::NOT_FOUND, "404 page not found\n")
}

/// Go's `http.Error(w, "Method Not Allowed", 405)`, as Prometheus' router
/// answers a known path with another method.
pub(crate) async fn method_not_allowed() -> Response {
    go_http_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n")
}

fn go_http_error(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        text,
    )
        .into_response()
}

fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

fn unavailable() -> Response {
    plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "Service Unavailable".to_string(),
    )
}

async fn healthy(State(api): State<Arc<Api>>) -> Response {
    plain(
        StatusCode::OK,
        format!("{} is Healthy.\n", api.opts.app_name),
    )
}

async fn ready(State(api): State<Arc<Api>>) -> Response {
    if api.backend.ready() {
        plain(StatusCode::OK, format!("{} is Ready.\n", api.opts.app_name))
    } else {
        unavailable()
    }
}

/// CORS headers like Prometheus' `SetCORS`, the readiness gate, and OPTIONS.
async fn api_middleware(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut resp = if !api.backend.ready() {
        unavailable()
    } else if req.method() == Method::OPTIONS {
        // Prometheus answers OPTIONS on any API path with an empty 204.
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(req).await
    };
    set_cors(&mut resp, origin, api.opts.cors_origin.as_ref());
    resp
}

fn set_cors(resp: &mut Response, origin: Option<HeaderValue>, allowed: Option<&regex::Regex>) {
    let h = resp.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = origin else {
        return;
    };
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Accept, Authorization, Content-Type, Origin"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Date"),
    );
    match allowed {
        None => {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
        Some(re) => {
            if origin.to_str().is_ok_and(|o| re.is_match(o)) {
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            }
        }
    }
}
