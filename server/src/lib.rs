//! `strata tsdb`: a Prometheus-compatible server over the local storage
//! engine, the piece a Thanos-style sidecar sits next to.
//!
//! It assembles existing crates and adds only glue:
//!
//! ```text
//!            ┌──────────── HTTP (axum) ─────────────────────────────────────┐
//!  clients → │ /api/v1/write  /api/v1/read  /federate  /metrics  /-/reload   │
//!            │ /api/v1/admin/tsdb/*   → remote, web (this crate)            │
//!            │ everything else        → strata_promapi::router (Backend)    │
//!            └───────────────┬──────────────────────────────────────────────┘
//!   ScrapeManager ──appends──┤ (strata_scrape)
//!   compaction task ─────────┤ every minute, and when the head is compactable
//!                            ▼
//!                      strata_tsdb::Db (sync; called from blocking threads)
//! ```
//!
//! With `--grpc-address`, a tonic server beside the HTTP one serves the
//! Thanos StoreAPI, Info, Metadata and Query API over the same `Db`
//! ([`storeapi`]), so a querier needs no sidecar to read this TSDB.
//!
//! Module map: [`options`] holds [`ServerOptions`] (Prometheus' flag names);
//! `backend` implements `strata_promql::Queryable` and
//! `strata_promapi::Backend` over the `Db`; `remote` serves remote write and
//! remote read; `web` serves federation, lifecycle, admin, `/metrics` and
//! `/api/v1/targets/metadata`; `metadata` merges scraped and remote-written
//! metric metadata; `metrics` holds the server's own counters.
//!
//! `--web.config.file` (TLS, headers, basic auth) is
//! `strata_promapi::webconfig`: its middleware wraps the whole router and,
//! with TLS, its `TlsListener` replaces the plain TCP listener.
//!
//! Life cycle ([`Server::start`] / [`Server::shutdown`], or [`run`] which
//! adds signal handling): open the `Db` (WAL replay), load the scrape config,
//! start scraping, bind the listener, serve. Shutdown stops the scrape loops
//! without stale markers, stops HTTP, fsyncs the WAL and drops the `Db`
//! (which releases the directory lock). Nothing is flushed into blocks: the
//! WAL is replayed on the next start, as Prometheus does.

mod backend;
mod metadata;
mod metrics;
pub mod options;
mod remote;
pub mod storeapi;
mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::serve::ListenerExt;
use parking_lot::RwLock;
use strata_promapi::webconfig::{TlsListener, WebConfigFile};
use strata_scrape::config::Config;
use strata_scrape::manager::ScrapeManager;
use strata_tsdb::db::{Db, DbOptions};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

pub use options::ServerOptions;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid options: {0}")]
    Options(String),
    #[error("opening storage at {path}: {source}")]
    Storage {
        path: PathBuf,
        #[source]
        source: strata_tsdb::Error,
    },
    #[error("loading config: {0}")]
    Config(String),
    #[error("--web.config.file: {0}")]
    WebConfig(strata_promapi::webconfig::WebConfigError),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("signal handling: {0}")]
    Signal(#[source] std::io::Error),
    #[error("{0}")]
    Internal(String),
}

/// State shared by every handler and background task.
pub(crate) struct Shared {
    pub(crate) db: Arc<Db>,
    pub(crate) opts: ServerOptions,
    pub(crate) scrape: ScrapeManager,
    /// The config last applied successfully (the old one stays on a failed
    /// reload, as in Prometheus).
    pub(crate) config: RwLock<Arc<Config>>,
    pub(crate) reload_ok: AtomicBool,
    pub(crate) last_config_time: RwLock<SystemTime>,
    pub(crate) ready: AtomicBool,
    pub(crate) metrics: metrics::Metrics,
    /// Metric metadata received by remote write (`metadata`).
    pub(crate) remote_metadata: metadata::RemoteMetadata,
    /// Wakes the compaction task early (the head became compactable).
    pub(crate) compact_now: Notify,
    /// Set to true to stop the server (signals, `/-/quit`).
    pub(crate) quit: watch::Sender<bool>,
    /// Remote-write label bytes -> head series ref (see `remote::cache`).
    pub(crate) write_cache: remote::cache::SeriesCache,
}

impl Shared {
    pub(crate) fn external_labels(&self) -> strata_tsdb::labels::Labels {
        self.config.read().global.external_labels.clone()
    }

    /// Asks the compaction task to look at the head now when it is due, so a
    /// burst of remote-written data does not wait for the next minute.
    pub(crate) fn maybe_compact(&self) {
        if self.db.head().compactable() {
            self.compact_now.notify_one();
        }
    }

    /// Reads the config file again and applies it; on any error the running
    /// config stays.
    pub(crate) async fn reload(&self) -> Result<(), Error> {
        let res = self.reload_inner().await;
        self.reload_ok.store(res.is_ok(), Ordering::Relaxed);
        self.metrics.reloads.record(res.is_ok());
        match &res {
            Ok(()) => tracing::info!(file = ?self.opts.config_file, "configuration reloaded"),
            Err(e) => tracing::error!(error = %e, "configuration reload failed"),
        }
        res
    }

    async fn reload_inner(&self) -> Result<(), Error> {
        let cfg = load_config(&self.opts).await?;
        self.scrape
            .apply_config(cfg.clone())
            .await
            .map_err(|e| Error::Config(e.to_string()))?;
        *self.config.write() = Arc::new(cfg);
        *self.last_config_time.write() = SystemTime::now();
        Ok(())
    }
}

async fn load_config(opts: &ServerOptions) -> Result<Config, Error> {
    let Some(path) = opts.config_file.clone() else {
        return Ok(Config::default());
    };
    tokio::task::spawn_blocking(move || Config::load_file(&path))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| Error::Config(e.to_string()))
}

/// A running server. Dropping it without [`Server::shutdown`] aborts the
/// tasks but skips the orderly stop.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    http: JoinHandle<()>,
    /// The gRPC server (`--grpc-address`): its address and task.
    grpc: Option<(SocketAddr, JoinHandle<()>)>,
    compactor: JoinHandle<()>,
    quit_rx: watch::Receiver<bool>,
}

impl Server {
    /// Opens the storage, applies the config, starts scraping, compaction
    /// and HTTP. Returns once the listener is bound.
    pub async fn start(opts: ServerOptions) -> Result<Server, Error> {
        opts.validate().map_err(Error::Options)?;
        // Checked before the storage opens (WAL replay can take long), so a
        // bad web config fails fast.
        let web_config = match opts.web_config_file.clone() {
            None => None,
            Some(p) => Some(
                tokio::task::spawn_blocking(move || WebConfigFile::open(p))
                    .await
                    .map_err(|e| Error::Internal(e.to_string()))?
                    .map_err(Error::WebConfig)?,
            ),
        };
        let db_opts = DbOptions {
            retention_time: opts.retention_time.map(|d| d.as_millis() as i64),
            retention_size: opts.retention_size,
            min_block_duration: opts.min_block_duration.as_millis() as i64,
            max_block_duration: opts.max_block_duration.as_millis() as i64,
            ..DbOptions::default()
        };
        let path = opts.storage_path.clone();
        let (db, report) = {
            let p = path.clone();
            tokio::task::spawn_blocking(move || Db::open(&p, db_opts))
                .await
                .map_err(|e| Error::Internal(e.to_string()))?
                .map_err(|source| Error::Storage {
                    path: path.clone(),
                    source,
                })?
        };
        tracing::info!(
            path = %path.display(),
            blocks = report.blocks,
            replayed_samples = report.replayed_samples,
            wal_repaired = ?report.wal_repaired,
            "storage opened"
        );
        let db = Arc::new(db);
        let cfg = load_config(&opts).await?;
        let tls = web_config.as_ref().is_some_and(|w| w.tls_enabled());
        let scrape = ScrapeManager::new(db.clone());
        let listener = tokio::net::TcpListener::bind(&opts.listen_address)
            .await
            .map_err(|source| Error::Listen {
                addr: opts.listen_address.clone(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Listen {
            addr: opts.listen_address.clone(),
            source,
        })?;
        scrape.set_global_url_options(strata_scrape::api::GlobalUrlOptions {
            listen_address: addr.to_string(),
            host: addr.to_string(),
            scheme: if tls { "https" } else { "http" }.to_string(),
        });
        scrape
            .apply_config(cfg.clone())
            .await
            .map_err(|e| Error::Config(e.to_string()))?;
        let (quit, quit_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            db,
            opts,
            scrape,
            config: RwLock::new(Arc::new(cfg)),
            reload_ok: AtomicBool::new(true),
            last_config_time: RwLock::new(SystemTime::now()),
            ready: AtomicBool::new(false),
            metrics: metrics::Metrics::default(),
            remote_metadata: metadata::RemoteMetadata::default(),
            compact_now: Notify::new(),
            quit,
            write_cache: remote::cache::SeriesCache::default(),
        });
        let mut app = web::app(shared.clone());
        if let Some(w) = &web_config {
            // Outermost: headers and basic auth cover every route.
            app = app.layer(axum::middleware::from_fn_with_state(
                w.clone(),
                strata_promapi::webconfig::middleware,
            ));
        }
        let mut stop_http = quit_rx.clone();
        let stopped = async move {
            let _ = stop_http.wait_for(|q| *q).await;
        };
        let http = match web_config.filter(|w| w.tls_enabled()) {
            Some(w) => {
                let listener =
                    TlsListener::new(listener, w, no_delay).map_err(|source| Error::Listen {
                        addr: addr.to_string(),
                        source,
                    })?;
                tracing::info!(%addr, "TLS is enabled");
                tokio::spawn(async move {
                    let serve = axum::serve(listener, app).with_graceful_shutdown(stopped);
                    if let Err(e) = serve.await {
                        tracing::error!(error = %e, "HTTPS server failed");
                    }
                })
            }
            None => tokio::spawn(async move {
                let serve =
                    axum::serve(listener.tap_io(no_delay), app).with_graceful_shutdown(stopped);
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, "HTTP server failed");
                }
            }),
        };
        let grpc = match shared.opts.grpc_address.clone() {
            Some(a) => Some(start_grpc(shared.clone(), &a, quit_rx.clone()).await?),
            None => None,
        };
        let compactor = tokio::spawn(compaction_loop(shared.clone(), quit_rx.clone()));
        shared.ready.store(true, Ordering::Release);
        tracing::info!(%addr, "server is ready to receive web requests");
        Ok(Server {
            addr,
            shared,
            http,
            grpc,
            compactor,
            quit_rx,
        })
    }

    /// The address the HTTP server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the gRPC server listens on, when `--grpc-address` is set.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().map(|(a, _)| *a)
    }

    /// The storage, for tests and embedding.
    pub fn db(&self) -> &Arc<Db> {
        &self.shared.db
    }

    /// Reloads the config file, like SIGHUP.
    pub async fn reload(&self) -> Result<(), Error> {
        self.shared.reload().await
    }

    /// Resolves when something asked the server to stop (`/-/quit`).
    pub async fn quit_requested(&self) {
        let mut rx = self.quit_rx.clone();
        let _ = rx.wait_for(|q| *q).await;
    }

    /// Orderly stop: scrapes (no stale markers), HTTP, compaction, then the
    /// WAL is fsynced and the storage closed.
    pub async fn shutdown(self) -> Result<(), Error> {
        let Server {
            shared,
            http,
            grpc,
            compactor,
            ..
        } = self;
        tracing::info!("stopping");
        shared.ready.store(false, Ordering::Release);
        shared.scrape.stop().await;
        shared.quit.send_replace(true);
        // Idle keep-alive connections can hold graceful shutdown open; give
        // in-flight requests a moment, then cut them.
        let abort = http.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), http)
            .await
            .is_err()
        {
            abort.abort();
        }
        if let Some((_, grpc)) = grpc {
            let abort = grpc.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), grpc)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        let _ = compactor.await;
        let db = shared.db.clone();
        drop(shared);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = db.sync_wal() {
                tracing::error!(error = %e, "syncing the WAL at shutdown");
            }
            if Arc::strong_count(&db) > 1 {
                tracing::warn!("storage still referenced at shutdown; it closes when released");
            }
            drop(db);
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Binds `addr` and serves the StoreAPI, Info, Metadata and health
/// services ([`storeapi::TsdbStore`]) until `quit`.
async fn start_grpc(
    shared: Arc<Shared>,
    addr: &str,
    mut quit: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>), Error> {
    use strata_proto::grpc::{MessageLimits, ServerOptions as GrpcOptions};
    use strata_proto::thanos::info::info_server::InfoServer;
    use strata_proto::thanos::metadata_server::MetadataServer;
    use strata_proto::thanos::query_server::QueryServer;
    use strata_proto::thanos::store_server::StoreServer;
    let listen_err = |source| Error::Listen {
        addr: addr.to_string(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(listen_err)?;
    let local = listener.local_addr().map_err(listen_err)?;
    let opts = GrpcOptions {
        tls: shared.opts.grpc_tls.clone(),
        ..GrpcOptions::default()
    };
    let max = opts.max_message_size;
    let store = storeapi::TsdbStore::new(shared);
    let (health, health_server) = strata_proto::grpc::health_service().await;
    let router = opts
        .builder()
        .map_err(|e| Error::Options(format!("gRPC server: {e}")))?
        .add_service(health_server)
        .add_service(StoreServer::new(store.clone()).with_message_limits(max))
        .add_service(MetadataServer::new(store.clone()).with_message_limits(max))
        .add_service(QueryServer::new(store.clone()).with_message_limits(max))
        .add_service(InfoServer::new(store).with_message_limits(max));
    health.ready().await;
    let incoming = opts.incoming(listener);
    let task = tokio::spawn(async move {
        let stopped = async move {
            let _ = quit.wait_for(|q| *q).await;
        };
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, stopped).await {
            tracing::error!(error = %e, "gRPC server failed");
        }
    });
    tracing::info!(addr = %local, tls = opts.tls.is_some(), "serving the StoreAPI over gRPC");
    Ok((local, task))
}

/// Cuts blocks from the head every `compaction_interval` (a minute by
/// default, as Prometheus' `db.run`) and as soon as the head becomes
/// compactable. Runs the (blocking) storage work on a blocking thread.
async fn compaction_loop(shared: Arc<Shared>, mut quit: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(shared.opts.compaction_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The scrape loops do not notify; a cheap poll of the head's bounds
    // catches scraped data making the head compactable.
    let mut poll = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.compact_now.notified() => {}
            _ = poll.tick() => {
                if !shared.db.head().compactable() {
                    continue;
                }
            }
            _ = quit.wait_for(|q| *q) => return,
        }
        let db = shared.db.clone();
        let started = std::time::Instant::now();
        let res = tokio::task::spawn_blocking(move || db.compact()).await;
        match res {
            Ok(Ok(blocks)) => {
                shared.metrics.compactions.record(true);
                if !blocks.is_empty() {
                    tracing::info!(
                        blocks = blocks.len(),
                        duration_ms = started.elapsed().as_millis() as u64,
                        "compaction done"
                    );
                }
            }
            Ok(Err(e)) => {
                shared.metrics.compactions.record(false);
                tracing::error!(error = %e, "compaction failed");
            }
            Err(e) => {
                shared.metrics.compactions.record(false);
                tracing::error!(error = %e, "compaction task failed");
            }
        }
    }
}

/// Runs the server until SIGTERM or SIGINT (or `/-/quit`); SIGHUP reloads
/// the config. The caller provides the Tokio runtime.
pub async fn run(opts: ServerOptions) -> Result<(), Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(Error::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(Error::Signal)?;
    let mut hup = signal(SignalKind::hangup()).map_err(Error::Signal)?;
    let server = Server::start(opts).await?;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("received SIGTERM"); break; }
            _ = int.recv() => { tracing::info!("received SIGINT"); break; }
            _ = hup.recv() => {
                // Errors are logged and counted; the old config keeps running.
                let _ = server.reload().await;
            }
            _ = server.quit_requested() => { tracing::info!("quit requested over HTTP"); break; }
        }
    }
    server.shutdown().await
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
