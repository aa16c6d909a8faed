//! `strata query`: one Prometheus-compatible API over many StoreAPI
//! endpoints, like `thanos query`.
//!
//! ```text
//!  HTTP :10902  /api/v1/* (promapi + /api/v1/stores), /metrics, /-/healthy, /-/ready, /
//!                     │ Backend ─► Queryable ─► proxy (fan-out, merge) ─► dedup
//!  gRPC :10901  thanos.Store / thanos.Metadata / thanos.info.Info (proxy again) ─┘
//!                     │
//!               EndpointSet (--endpoint, dns+, dnssrv+, --store.sd-files; Info every 5s)
//! ```
//!
//! | module | what it holds |
//! |---|---|
//! | [`endpoints`] | [`EndpointSpec`], [`EndpointSet`]: discovery, Info polling, health and the unhealthy timeout |
//! | [`dns`] | `dnssrv+` and `dns+` lookups (system resolver, or the DNS server of the hidden `--store.sd-dns-resolver-address`) |
//! | [`proxy`] | store selection (time range, `LabelSetsMatch`, `storeMatch[]`), concurrent calls with timeouts, k-way merge, chunk dedup, partial response, series limit |
//! | [`dedup`] | overlap split into pseudo-replicas, Thanos' penalty algorithm (counter-aware), chain merge |
//! | [`queryable`] | the engine's `Queryable`: request building (aggregates, resolution, hints), chunk decoding, sample budget |
//! | [`backend`] | `promapi::Backend`: Thanos parameters, labels via LabelNames/LabelValues, `/api/v1/metadata` via the Metadata API, `/api/v1/stores` |
//! | [`storeapi`] | the querier's own StoreAPI, Metadata API and Info (federation) |
//! | [`metrics`] | `/metrics` text |
//!
//! [`Querier::start`] binds both listeners and starts discovery; [`run`]
//! serves until a shutdown future completes.

pub mod backend;
pub mod dedup;
pub mod dns;
pub mod endpoints;
pub mod metrics;
pub mod proxy;
pub mod queryable;
pub mod storeapi;
pub mod wire;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use strata_promapi::webconfig::{TlsListener, WebConfigFile};
use strata_promapi::ApiOptions;
use strata_promql::EngineOptions;
use strata_proto::grpc::{MessageLimits, ServerOptions, ServerTls};
use strata_proto::thanos::info::info_server::InfoServer;
use strata_proto::thanos::metadata_server::MetadataServer;
use strata_proto::thanos::store_server::StoreServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use backend::{BackendOptions, QuerierBackend};
pub use endpoints::{EndpointSet, EndpointSetOptions, EndpointSpec};
pub use proxy::ProxyOptions;
pub use strata_proto::grpc::{ClientOptions, ClientTls, ServerTls as GrpcServerTls};

/// Errors that stop the querier or reject its configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Grpc(String),
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    #[error("--http.config: {0}")]
    HttpConfig(strata_promapi::webconfig::WebConfigError),
}

/// Everything `strata query` needs, flags parsed. Defaults are Thanos'.
#[derive(Clone, Debug)]
pub struct QuerierConfig {
    pub http_address: String,
    /// `--http.config`: Prometheus web-config file (TLS, basic auth,
    /// response headers) for every HTTP endpoint; `None` = plain HTTP.
    pub http_config: Option<std::path::PathBuf>,
    pub grpc_address: String,
    pub grpc_server_tls: Option<ServerTls>,
    pub endpoints: EndpointSetOptions,
    /// `--query.replica-label`.
    pub replica_labels: Vec<String>,
    /// `--query.partial-response` (default true).
    pub partial_response: bool,
    /// `--query.timeout` (2m).
    pub query_timeout: Duration,
    /// `--query.max-concurrent` (20).
    pub max_concurrent: usize,
    /// `--query.max-samples` (Prometheus' default 50,000,000).
    pub max_samples: usize,
    /// `--query.lookback-delta`; `None` = PromQL's 5m.
    pub lookback_delta: Option<Duration>,
    /// `--query.max-series`: series one selector may select; 0 = no limit.
    pub max_series: usize,
    /// `--query.auto-downsampling`.
    pub auto_downsampling: bool,
    /// `--query.default-step` (1s), for `max_source_resolution=auto`.
    pub default_step: Duration,
    /// `--store.response-timeout`; `None` (Thanos' 0) = no limit but the
    /// query's own.
    pub response_timeout: Option<Duration>,
    /// For `/api/v1/status/flags`.
    pub flags: BTreeMap<String, String>,
    /// `--query.mode=distributed`: partition-local queries go whole to
    /// stores serving the Query API (see `FanoutQueryable`).
    pub distributed: bool,
}

impl Default for QuerierConfig {
    fn default() -> Self {
        QuerierConfig {
            http_address: "0.0.0.0:10902".into(),
            http_config: None,
            grpc_address: "0.0.0.0:10901".into(),
            grpc_server_tls: None,
            endpoints: EndpointSetOptions::default(),
            replica_labels: Vec::new(),
            partial_response: true,
            query_timeout: Duration::from_secs(120),
            max_concurrent: 20,
            max_samples: 50_000_000,
            lookback_delta: None,
            max_series: 0,
            auto_downsampling: false,
            default_step: Duration::from_secs(1),
            response_timeout: None,
            flags: BTreeMap::new(),
            distributed: true,
        }
    }
}

/// The placeholder page served at `/` (replaced by the real UI).
const INDEX_HTML: &str = include_str!("web/index.html");

/// A running querier.
pub struct Querier {
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    set: Arc<EndpointSet>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Result<(), Error>>>,
}

/// Sets `TCP_NODELAY` on an accepted HTTP connection (via axum's `tap_io`).
///
/// hyper writes a response's head and body separately; with Nagle's algorithm
/// the second write waits for the client's delayed ACK, about 40 ms on Linux,
/// which dwarfs the query itself.
fn no_delay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::warn!(error = %e, "cannot set TCP_NODELAY on an HTTP connection");
    }
}

async fn bind(addr: &str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|source| Error::Bind {
        addr: addr.to_string(),
        source,
    })
}

/// Metrics middleware: one observation per request, by route.
async fn track(State(m): State<Arc<metrics::Metrics>>, req: Request, next: Next) -> Response {
    let handler = route_name(req.uri().path());
    let started = Instant::now();
    let resp = next.run(req).await;
    let took = started.elapsed();
    m.observe(handler, resp.status().as_u16(), took.as_secs_f64());
    tracing::debug!(handler, status = resp.status().as_u16(), took = ?took, "HTTP request");
    resp
}

/// The route of a path, bounded to a fixed set for metric labels.
fn route_name(path: &str) -> &'static str {
    const ROUTES: &[&str] = &[
        "/api/v1/query",
        "/api/v1/query_range",
        "/api/v1/query_exemplars",
        "/api/v1/format_query",
        "/api/v1/parse_query",
        "/api/v1/series",
        "/api/v1/labels",
        "/api/v1/metadata",
        "/api/v1/targets",
        "/api/v1/rules",
        "/api/v1/alerts",
        "/api/v1/stores",
        "/api/v1/status/buildinfo",
        "/api/v1/status/config",
        "/api/v1/status/flags",
        "/api/v1/status/runtimeinfo",
        "/api/v1/status/tsdb",
        "/metrics",
        "/-/healthy",
        "/-/ready",
        "/",
    ];
    if let Some(r) = ROUTES.iter().find(|r| **r == path) {
        return r;
    }
    if path.starts_with("/api/v1/label/") && path.ends_with("/values") {
        return "/api/v1/label/:name/values";
    }
    "other"
}

/// The HTTP application: the Prometheus API with `/api/v1/stores`, plus
/// `/metrics` and the web page.
pub fn http_app(
    set: Arc<EndpointSet>,
    backend: Arc<QuerierBackend>,
    api: ApiOptions,
    metrics: Arc<metrics::Metrics>,
) -> Router {
    let stores_set = set.clone();
    let extra = Router::new().route(
        "/stores",
        get(move || {
            let set = stores_set.clone();
            async move {
                let data = backend::stores_json(&set).to_string();
                strata_promapi::response::respond(Ok(strata_promapi::response::Success::data(data)))
            }
        }),
    );
    let metrics_set = set.clone();
    let m = metrics.clone();
    strata_promapi::router_with(backend, api, extra)
        .route(
            "/metrics",
            get(move || {
                let (m, set) = (m.clone(), metrics_set.clone());
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        m.render(&set),
                    )
                }
            }),
        )
        .route(
            "/",
            get(|| async {
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    INDEX_HTML,
                )
                    .into_response()
            }),
        )
        .layer(middleware::from_fn_with_state(metrics, track))
}

impl Querier {
    /// Binds the configured addresses and starts serving.
    pub async fn start(cfg: QuerierConfig) -> Result<Querier, Error> {
        let http = bind(&cfg.http_address).await?;
        let grpc = bind(&cfg.grpc_address).await?;
        Self::start_with_listeners(cfg, http, grpc).await
    }

    /// [`Querier::start`] on listeners bound by the caller (tests bind port 0).
    pub async fn start_with_listeners(
        cfg: QuerierConfig,
        http: TcpListener,
        grpc: TcpListener,
    ) -> Result<Querier, Error> {
        // Read before anything starts, so a bad file fails fast.
        let web_config = match &cfg.http_config {
            None => None,
            Some(p) => Some(WebConfigFile::open(p.clone()).map_err(Error::HttpConfig)?),
        };
        let http_addr = http.local_addr().map_err(Error::Http)?;
        let grpc_addr = grpc.local_addr().map_err(Error::Http)?;
        let set = EndpointSet::new(cfg.endpoints.clone());
        let (stop, stop_rx) = watch::channel(false);
        let proxy = ProxyOptions {
            response_timeout: cfg.response_timeout,
            max_series: cfg.max_series,
            distributed: cfg.distributed,
        };
        let mut engine = EngineOptions {
            max_samples: cfg.max_samples,
            timeout: cfg.query_timeout,
            ..EngineOptions::default()
        };
        if let Some(l) = cfg.lookback_delta {
            engine.lookback_delta = i64::try_from(l.as_millis()).unwrap_or(i64::MAX);
        }
        let backend = Arc::new(QuerierBackend::new(
            set.clone(),
            tokio::runtime::Handle::current(),
            BackendOptions {
                replica_labels: cfg.replica_labels.clone(),
                partial_response: cfg.partial_response,
                auto_downsampling: cfg.auto_downsampling,
                default_step_ms: i64::try_from(cfg.default_step.as_millis()).unwrap_or(1000),
                max_samples: cfg.max_samples,
                proxy: proxy.clone(),
                engine: engine.clone(),
                flags: cfg.flags.clone(),
            },
        ));
        let api = ApiOptions {
            engine,
            query_timeout: cfg.query_timeout,
            max_concurrency: cfg.max_concurrent,
            app_name: "Strata Query".into(),
            ..ApiOptions::default()
        };
        let metrics = Arc::new(metrics::Metrics::default());
        let mut app = http_app(set.clone(), backend, api, metrics);
        if let Some(w) = &web_config {
            // Outermost, so headers and basic auth cover every route.
            app = app.layer(middleware::from_fn_with_state(
                w.clone(),
                strata_promapi::webconfig::middleware,
            ));
        }

        let mut tasks = Vec::new();
        tasks.push(tokio::spawn({
            let set = set.clone();
            let rx = stop_rx.clone();
            async move {
                set.run(rx).await;
                Ok(())
            }
        }));
        tasks.push(tokio::spawn({
            let mut rx = stop_rx.clone();
            async move {
                let stopped = async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                match web_config.filter(|w| w.tls_enabled()) {
                    Some(w) => {
                        let tls = TlsListener::new(http, w, no_delay).map_err(Error::Http)?;
                        axum::serve(tls, app)
                            .with_graceful_shutdown(stopped)
                            .await
                            .map_err(Error::Http)
                    }
                    None => axum::serve(http.tap_io(no_delay), app)
                        .with_graceful_shutdown(stopped)
                        .await
                        .map_err(Error::Http),
                }
            }
        }));

        let opts = ServerOptions {
            tls: cfg.grpc_server_tls.clone(),
            ..ServerOptions::default()
        };
        let (health, health_server) = strata_proto::grpc::health_service().await;
        let store = storeapi::QuerierStore::new(set.clone(), proxy, cfg.query_timeout);
        let max = opts.max_message_size;
        let router = opts
            .builder()
            .map_err(|e| Error::Grpc(e.to_string()))?
            .add_service(health_server)
            .add_service(StoreServer::new(store.clone()).with_message_limits(max))
            .add_service(MetadataServer::new(store.clone()).with_message_limits(max))
            .add_service(InfoServer::new(store).with_message_limits(max));
        health.ready().await;
        let incoming = opts.incoming(grpc);
        tasks.push(tokio::spawn({
            let mut rx = stop_rx.clone();
            async move {
                router
                    .serve_with_incoming_shutdown(incoming, async move {
                        let _ = rx.wait_for(|s| *s).await;
                    })
                    .await
                    .map_err(|e| Error::Grpc(e.to_string()))
            }
        }));
        tracing::info!(http = %http_addr, grpc = %grpc_addr, "querier is serving");
        Ok(Querier {
            http_addr,
            grpc_addr,
            set,
            stop,
            tasks,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn endpoints(&self) -> &Arc<EndpointSet> {
        &self.set
    }

    /// Stops serving and waits for the servers to finish.
    pub async fn shutdown(self) -> Result<(), Error> {
        let _ = self.stop.send(true);
        let mut first_err = None;
        for t in self.tasks {
            match t.await {
                Ok(Err(e)) if first_err.is_none() => first_err = Some(e),
                _ => {}
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Serves until `shutdown` completes.
pub async fn run(cfg: QuerierConfig, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let q = Querier::start(cfg).await?;
    shutdown.await;
    q.shutdown().await
}
