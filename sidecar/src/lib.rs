//! `strata sidecar`: runs next to a Prometheus-compatible TSDB (Prometheus
//! 2.x or `strata tsdb`), ships its finished blocks to object storage and
//! serves the Thanos StoreAPI over the TSDB's remote read, like
//! `thanos sidecar` (`cmd/thanos/sidecar.go`).
//!
//! | module | what it holds |
//! |---|---|
//! | [`promclient`] | HTTP client of the TSDB: external labels from `/api/v1/status/config`, block-duration flags, lowest timestamp, remote read (streamed XOR chunks or samples), label APIs |
//! | [`shipper`] | uploads every new block once, in time order, recorded in `thanos.shipper.json` |
//! | [`store`] | `thanos.Store`, `thanos.Metadata` and `thanos.info.Info` over [`promclient`]; the shared [`SidecarState`] |
//! | [`metrics`] | counters for `/metrics` |
//!
//! [`run`] wires them up the way Thanos does:
//! 1. the HTTP server (`/metrics`, `/-/healthy`, `/-/ready`) starts first, so
//!    a sidecar waiting for its TSDB can be probed;
//! 2. external labels and the block-duration flags are fetched, retried
//!    with a bounded backoff while the TSDB is down. No external labels, or
//!    min != max block duration (local compaction on, which would make the
//!    shipper upload overlapping blocks), refuses to start;
//! 3. a heartbeat refreshes the external labels and the advertised min time
//!    (`prometheus_tsdb_lowest_timestamp_seconds`, clamped by `--min-time`);
//! 4. the shipper syncs at start and every `sync_interval`, only if a bucket
//!    is configured;
//! 5. the gRPC server (StoreAPI, Info, health; optional mutual TLS) starts
//!    only once the external labels are known, like Thanos'
//!    `readyToStartGRPC`.

pub mod metrics;
pub mod promclient;
pub mod shipper;
pub mod store;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use strata_bucket::ObjstoreConfig;
use strata_promapi::webconfig::{TlsListener, WebConfigFile};
use strata_proto::grpc::{MessageLimits, ServerOptions, ServerTls};
use strata_proto::thanos::info::info_server::InfoServer;
use strata_proto::thanos::metadata_server::MetadataServer;
use strata_proto::thanos::store_server::StoreServer;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use metrics::Metrics;
pub use promclient::{PromClient, PromError};
pub use shipper::{Shipper, ShipperOptions, SyncStats};
pub use store::{SidecarState, SidecarStore};
/// Re-exported so the binary needs no direct dependency for flag parsing.
pub use strata_bucket::ObjstoreConfig as Objstore;
pub use strata_proto::grpc::ServerTls as GrpcServerTls;

/// Errors that stop the sidecar.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Objstore(#[from] strata_bucket::ConfigError),
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
    #[error("prometheus: {0}")]
    Prometheus(#[from] PromError),
}

/// Everything the sidecar needs, flags already parsed.
#[derive(Debug, Clone)]
pub struct SidecarConfig {
    pub tsdb_path: PathBuf,
    pub prometheus_url: String,
    /// `None`: uploads disabled, as Thanos without `--objstore.config`.
    pub objstore: Option<ObjstoreConfig>,
    pub grpc_address: String,
    pub http_address: String,
    /// `--http.config`: Prometheus web-config file (TLS, basic auth,
    /// headers) for the HTTP server; `None` = plain HTTP.
    pub http_config: Option<PathBuf>,
    pub grpc_tls: Option<ServerTls>,
    /// `--min-time` in ms; `None` = no limit.
    pub min_time: Option<i64>,
    pub upload_compacted: bool,
    /// Shipper period (Thanos: 30 s).
    pub sync_interval: Duration,
    /// Period of the external-labels / min-time refresh (Thanos: 30 s).
    pub heartbeat_interval: Duration,
    /// Longest pause between startup attempts while the TSDB is down.
    pub max_startup_backoff: Duration,
}

impl SidecarConfig {
    /// Thanos' defaults for everything but the paths.
    pub fn new(tsdb_path: impl Into<PathBuf>) -> Self {
        SidecarConfig {
            tsdb_path: tsdb_path.into(),
            prometheus_url: "http://localhost:9090".into(),
            objstore: None,
            grpc_address: "0.0.0.0:10901".into(),
            http_address: "0.0.0.0:10902".into(),
            http_config: None,
            grpc_tls: None,
            min_time: None,
            upload_compacted: false,
            sync_interval: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(30),
            max_startup_backoff: Duration::from_secs(30),
        }
    }
}

/// Parses Thanos' `model.TimeOrDuration`: RFC 3339, or a duration relative
/// to `now_ms` (`-1d`, `2h45m`; units ms, s, m, h, d, w, y).
pub fn parse_time_or_duration(s: &str, now_ms: i64) -> Result<i64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    let (neg, d) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let ms = strata_tsdb::tools::parse_duration_ms(d)
        .map_err(|_| format!("{s:?} is neither an RFC 3339 time nor a duration"))?;
    Ok(if neg {
        now_ms.saturating_sub(ms)
    } else {
        now_ms.saturating_add(ms)
    })
}

/// Checks Prometheus' block-duration flags: local compaction must be off
/// (min == max), or the shipper would see overlapping compacted blocks.
pub fn check_block_durations(min: &str, max: &str) -> Result<(), String> {
    let parse = strata_tsdb::tools::parse_duration_ms;
    let equal = match (parse(min), parse(max)) {
        (Ok(a), Ok(b)) => a == b,
        _ => min == max,
    };
    if !equal {
        return Err(format!(
            "found that TSDB Max time is {max} and Min time is {min}. Compaction needs to be disabled (storage.tsdb.min-block-duration = storage.tsdb.max-block-duration)"
        ));
    }
    if parse(min).ok() != Some(2 * 3600 * 1000) {
        tracing::warn!(
            block_duration = min,
            "found that TSDB block time is not 2h. Only 2h block time is recommended."
        );
    }
    Ok(())
}

/// Fetches the external labels and validates the flags, retrying with a
/// doubling pause (up to `max_backoff`) while the TSDB cannot be reached.
/// Missing external labels or unequal block durations are fatal.
pub async fn wait_for_prometheus(
    prom: &PromClient,
    max_backoff: Duration,
) -> Result<Vec<(String, String)>, Error> {
    let mut pause = Duration::from_millis(250).min(max_backoff);
    loop {
        let attempt = async {
            let labels = prom.external_labels().await?;
            let (min, max) = prom.block_durations().await?;
            Ok::<_, PromError>((labels, min, max))
        }
        .await;
        match attempt {
            Ok((labels, min, max)) => {
                if labels.is_empty() {
                    return Err(Error::Config(
                        "no external labels configured on Prometheus server, uniquely identifying external labels must be configured; see https://thanos.io/tip/thanos/storage.md#external-labels".into(),
                    ));
                }
                check_block_durations(&min, &max).map_err(Error::Config)?;
                return Ok(labels);
            }
            Err(e) => {
                tracing::warn!(url = prom.base(), error = %e, retry_in = ?pause, "TSDB not reachable yet; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(max_backoff);
            }
        }
    }
}

/// The HTTP endpoints: `/metrics`, `/-/healthy`, `/-/ready`.
pub fn http_router(state: Arc<SidecarState>) -> axum::Router {
    use axum::http::{header, StatusCode};
    use axum::routing::get;
    let m = state.metrics.clone();
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = m.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        m.render(),
                    )
                }
            }),
        )
        .route("/-/healthy", get(|| async { "OK" }))
        .route(
            "/-/ready",
            get(move || {
                let state = state.clone();
                async move {
                    if state.is_ready() {
                        (StatusCode::OK, "OK")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "NOT READY")
                    }
                }
            }),
        )
}

/// Serves the StoreAPI, Info and health on `listener` until `shutdown`.
pub async fn serve_grpc(
    store: SidecarStore,
    tls: Option<ServerTls>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let opts = ServerOptions {
        tls,
        ..ServerOptions::default()
    };
    let (health, health_server) = strata_proto::grpc::health_service().await;
    let max = opts.max_message_size;
    let router = opts
        .builder()
        .map_err(|e| Error::Grpc(e.to_string()))?
        .add_service(health_server)
        .add_service(StoreServer::new(store.clone()).with_message_limits(max))
        .add_service(MetadataServer::new(store.clone()).with_message_limits(max))
        .add_service(InfoServer::new(store).with_message_limits(max));
    health.ready().await;
    router
        .serve_with_incoming_shutdown(opts.incoming(listener), shutdown)
        .await
        .map_err(|e| Error::Grpc(e.to_string()))
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

/// Binds the configured addresses and runs until `shutdown` completes.
pub async fn run(
    cfg: SidecarConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let grpc = bind(&cfg.grpc_address).await?;
    let http = bind(&cfg.http_address).await?;
    run_with_listeners(cfg, grpc, http, shutdown).await
}

/// [`run`] on listeners bound by the caller (tests bind port 0).
pub async fn run_with_listeners(
    cfg: SidecarConfig,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let metrics = Arc::new(Metrics::default());
    let state = Arc::new(SidecarState::new(
        cfg.min_time.unwrap_or(i64::MIN),
        metrics.clone(),
    ));
    let prom = PromClient::new(&cfg.prometheus_url)?;
    // The bucket is built before waiting for the TSDB so a bad objstore
    // config fails at once.
    let bucket = cfg.objstore.as_ref().map(|c| c.build()).transpose()?;

    let web_config = match &cfg.http_config {
        None => None,
        Some(p) => Some(WebConfigFile::open(p.clone()).map_err(Error::HttpConfig)?),
    };
    let http_task = {
        let mut app = http_router(state.clone());
        if let Some(w) = &web_config {
            // Outermost, so headers and basic auth cover every route.
            app = app.layer(axum::middleware::from_fn_with_state(
                w.clone(),
                strata_promapi::webconfig::middleware,
            ));
        }
        let stop = stopped(stop_rx.clone());
        match web_config.filter(|w| w.tls_enabled()) {
            Some(w) => {
                let tls = TlsListener::new(http, w, no_delay).map_err(Error::Http)?;
                tokio::spawn(
                    async move { axum::serve(tls, app).with_graceful_shutdown(stop).await },
                )
            }
            None => tokio::spawn(async move {
                axum::serve(http.tap_io(no_delay), app)
                    .with_graceful_shutdown(stop)
                    .await
            }),
        }
    };

    let labels = tokio::select! {
        r = wait_for_prometheus(&prom, cfg.max_startup_backoff) => r,
        () = stopped(stop_rx.clone()) => return Ok(()),
    };
    let labels = match labels {
        Ok(l) => l,
        Err(e) => {
            http_task.abort();
            return Err(e);
        }
    };
    tracing::info!(?labels, "external labels loaded");
    state.set_external_labels(labels);
    state.set_lowest_timestamp(prom.lowest_timestamp().await.ok().flatten());
    metrics.set_prometheus_up(true);

    // Heartbeat.
    {
        let (prom, state, mut rx) = (prom.clone(), state.clone(), stop_rx.clone());
        let every = cfg.heartbeat_interval;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    _ = rx.wait_for(|s| *s) => return,
                }
                let ok = match prom.external_labels().await {
                    Ok(l) if !l.is_empty() => {
                        state.set_external_labels(l);
                        true
                    }
                    Ok(_) => {
                        tracing::warn!(
                            "TSDB reports no external labels; keeping the previous ones"
                        );
                        false
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "heartbeat to the TSDB failed");
                        false
                    }
                };
                if let Ok(low) = prom.lowest_timestamp().await {
                    state.set_lowest_timestamp(low);
                }
                state.metrics.set_prometheus_up(ok);
            }
        });
    }

    // Shipper.
    match bucket {
        None => tracing::info!("no supported bucket was configured, uploads will be disabled"),
        Some(bucket) => {
            let st = state.clone();
            let shipper = Shipper::new(
                cfg.tsdb_path.clone(),
                bucket,
                Arc::new(move || st.external_labels().unwrap_or_default()),
                ShipperOptions {
                    upload_compacted: cfg.upload_compacted,
                    min_time: cfg.min_time,
                },
                metrics.clone(),
            );
            let mut rx = stop_rx.clone();
            let every = cfg.sync_interval;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = rx.wait_for(|s| *s) => return,
                    }
                    match shipper.sync().await {
                        Ok(s) => {
                            shipper.metrics().inc_syncs(s.failed > 0);
                            if !s.uploaded.is_empty() {
                                tracing::info!(uploaded = s.uploaded.len(), "shipper sync done");
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "shipper sync failed");
                            shipper.metrics().inc_syncs(true);
                        }
                    }
                }
            });
        }
    }

    let store = SidecarStore::new(prom, state);
    let grpc_res = serve_grpc(store, cfg.grpc_tls.clone(), grpc, stopped(stop_rx.clone())).await;
    let http_res = http_task.await;
    grpc_res?;
    match http_res {
        Ok(r) => r.map_err(Error::Http),
        Err(e) => Err(Error::Grpc(format!("HTTP task: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_or_duration() {
        assert_eq!(parse_time_or_duration("1970-01-01T00:00:01Z", 0), Ok(1000));
        assert_eq!(parse_time_or_duration("-1d", 100_000_000), Ok(13_600_000));
        assert_eq!(parse_time_or_duration("2h", 0), Ok(7_200_000));
        assert!(parse_time_or_duration("yesterday", 0).is_err());
    }

    #[test]
    fn block_durations() {
        assert!(check_block_durations("2h", "2h").is_ok());
        assert!(check_block_durations("2h", "1d12h").is_err());
    }
}
