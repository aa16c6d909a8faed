//! `strata tsdb`: the Prometheus-compatible server. Flags carry
//! Prometheus' names; parsing them is all this file does (the server lives
//! in `strata-server`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use strata_server::options::{parse_byte_size, parse_duration};
use strata_server::ServerOptions;

use crate::grpc_tls::GrpcServerTlsArgs;

#[derive(Args)]
pub struct TsdbArgs {
    /// Scrape configuration file (prometheus.yml subset).
    #[arg(long = "config.file")]
    config_file: Option<PathBuf>,
    /// Base path for metrics storage.
    #[arg(long = "storage.tsdb.path", default_value = "data/")]
    storage_path: PathBuf,
    /// How long to retain samples (e.g. 15d); default 15d unless a size is set.
    #[arg(long = "storage.tsdb.retention.time")]
    retention_time: Option<String>,
    /// Maximum bytes of blocks plus WAL to keep (e.g. 512MB; base-2 units).
    #[arg(long = "storage.tsdb.retention.size")]
    retention_size: Option<String>,
    /// Minimum duration of a data block before being persisted.
    #[arg(long = "storage.tsdb.min-block-duration", default_value = "2h")]
    min_block_duration: String,
    /// Maximum duration compacted blocks may span.
    #[arg(long = "storage.tsdb.max-block-duration", default_value = "2h")]
    max_block_duration: String,
    /// Address to listen on for the web interface and API.
    #[arg(long = "web.listen-address", default_value = "0.0.0.0:9090")]
    listen_address: String,
    /// Web configuration file (Prometheus' web-config format): TLS, HTTP
    /// headers and basic auth for every endpoint.
    #[arg(long = "web.config.file")]
    web_config_file: Option<PathBuf>,
    /// Accept remote write requests on /api/v1/write.
    #[arg(long = "web.enable-remote-write-receiver")]
    enable_remote_write_receiver: bool,
    /// Enable the admin API (snapshot, delete_series, clean_tombstones).
    #[arg(long = "web.enable-admin-api")]
    enable_admin_api: bool,
    /// Enable shutdown and reload over HTTP (/-/quit, /-/reload).
    #[arg(long = "web.enable-lifecycle")]
    enable_lifecycle: bool,
    /// How far back to look for a sample of an instant selector.
    #[arg(long = "query.lookback-delta", default_value = "5m")]
    lookback_delta: String,
    /// Maximum time a query may take before being aborted.
    #[arg(long = "query.timeout", default_value = "2m")]
    query_timeout: String,
    /// Maximum number of samples a single query can load into memory.
    #[arg(long = "query.max-samples", default_value_t = 50_000_000)]
    max_samples: usize,
    /// Maximum number of queries executed concurrently.
    #[arg(long = "query.max-concurrency", default_value_t = 20)]
    max_concurrency: usize,
    /// Also serve the Thanos StoreAPI (Series, LabelNames, LabelValues),
    /// Info and Metadata over gRPC here, as Thanos Receive does, so a
    /// querier can read this TSDB without a sidecar in between (the sidecar
    /// still uploads blocks). Off when unset.
    #[arg(long = "grpc-address")]
    grpc_address: Option<String>,
    #[command(flatten)]
    grpc_server_tls: GrpcServerTlsArgs,
}

fn duration(flag: &str, v: &str) -> Result<std::time::Duration> {
    parse_duration(v)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("invalid --{flag} {v:?}"))
}

impl TsdbArgs {
    fn into_options(self) -> Result<ServerOptions> {
        Ok(ServerOptions {
            config_file: self.config_file,
            storage_path: self.storage_path,
            retention_time: self
                .retention_time
                .map(|v| duration("storage.tsdb.retention.time", &v))
                .transpose()?,
            retention_size: self
                .retention_size
                .map(|v| {
                    parse_byte_size(&v)
                        .map_err(anyhow::Error::msg)
                        .with_context(|| format!("invalid --storage.tsdb.retention.size {v:?}"))
                })
                .transpose()?,
            min_block_duration: duration(
                "storage.tsdb.min-block-duration",
                &self.min_block_duration,
            )?,
            max_block_duration: duration(
                "storage.tsdb.max-block-duration",
                &self.max_block_duration,
            )?,
            listen_address: self.listen_address,
            web_config_file: self.web_config_file,
            enable_remote_write_receiver: self.enable_remote_write_receiver,
            enable_admin_api: self.enable_admin_api,
            enable_lifecycle: self.enable_lifecycle,
            lookback_delta: duration("query.lookback-delta", &self.lookback_delta)?,
            query_timeout: duration("query.timeout", &self.query_timeout)?,
            max_samples: self.max_samples,
            max_concurrency: self.max_concurrency,
            grpc_tls: self.grpc_server_tls.load()?,
            grpc_address: self.grpc_address,
            ..ServerOptions::default()
        })
    }
}

/// Runs the server until SIGTERM/SIGINT.
pub fn run(args: TsdbArgs) -> Result<()> {
    let opts = args.into_options()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(strata_server::run(opts))?;
    Ok(())
}
