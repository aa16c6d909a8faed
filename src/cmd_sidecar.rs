//! `strata sidecar`: flags as `thanos sidecar` names them; the logic is in
//! the `strata-sidecar` crate.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use crate::grpc_tls::GrpcServerTlsArgs;

#[derive(Args, Debug)]
pub struct SidecarArgs {
    /// Data directory of the TSDB.
    #[arg(long = "tsdb.path", default_value = "./data")]
    tsdb_path: PathBuf,
    /// URL at which to reach the TSDB's API.
    #[arg(long = "prometheus.url", default_value = "http://localhost:9090")]
    prometheus_url: String,
    /// Path to the object store YAML configuration.
    #[arg(long = "objstore.config-file")]
    objstore_config_file: Option<PathBuf>,
    /// Object store YAML configuration inline (alternative to the file).
    #[arg(long = "objstore.config")]
    objstore_config: Option<String>,
    /// Listen address of the gRPC server (StoreAPI, Info, health).
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    grpc_address: String,
    /// Listen address of the HTTP server (/metrics, /-/healthy, /-/ready).
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    http_address: String,
    /// Prometheus web-config file (TLS, basic auth, headers) for the HTTP server, as Thanos' flag.
    #[arg(long = "http.config")]
    http_config: Option<PathBuf>,
    #[command(flatten)]
    grpc_server_tls: GrpcServerTlsArgs,
    /// Serve and ship only data after this: RFC 3339 or a duration relative
    /// to now (e.g. -1d, 2h45m).
    #[arg(long = "min-time", allow_hyphen_values = true)]
    min_time: Option<String>,
    /// Also upload compacted blocks (level > 1).
    #[arg(long = "shipper.upload-compacted")]
    upload_compacted: bool,
    /// Shipper sync period.
    #[arg(long = "shipper.sync-interval", default_value = "30s", hide = true)]
    sync_interval: String,
}

pub fn run(a: SidecarArgs) -> Result<()> {
    let mut cfg = strata_sidecar::SidecarConfig::new(a.tsdb_path);
    cfg.prometheus_url = a.prometheus_url;
    cfg.objstore = strata_sidecar::Objstore::from_flags(
        a.objstore_config_file.as_deref(),
        a.objstore_config.as_deref(),
    )
    .context("object store configuration")?;
    cfg.grpc_address = a.grpc_address;
    cfg.http_address = a.http_address;
    cfg.http_config = a.http_config;
    cfg.grpc_tls = a.grpc_server_tls.load()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    cfg.min_time = a
        .min_time
        .as_deref()
        .map(|s| strata_sidecar::parse_time_or_duration(s, now))
        .transpose()
        .map_err(anyhow::Error::msg)
        .context("invalid --min-time")?;
    cfg.upload_compacted = a.upload_compacted;
    let every = strata_tsdb::tools::parse_duration_ms(&a.sync_interval)
        .context("invalid --shipper.sync-interval")?;
    cfg.sync_interval = Duration::from_millis(every.max(1) as u64);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let shutdown = async {
            crate::shutdown_signal().await;
            tracing::info!("shutting down");
        };
        strata_sidecar::run(cfg, shutdown).await
    })?;
    Ok(())
}
