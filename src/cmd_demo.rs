//! `strata demo`: flags only; the demo lives in the `strata-demo` crate.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Directory for the clusters' TSDB data, the FILESYSTEM bucket, the
    /// generated configs and the processes' logs. Reused by the next start.
    #[arg(long = "data-dir", default_value = "./demo-data")]
    data_dir: PathBuf,
    /// Object store configuration (Thanos objstore.yml, e.g. S3) for the
    /// sidecars. Default: a FILESYSTEM bucket under the data directory.
    #[arg(long = "objstore.config-file")]
    objstore_config_file: Option<PathBuf>,
    /// History to backfill on first start: a duration (6h, 90m, 2d) or a
    /// number of hours; 0 for none. At most 7d.
    #[arg(long = "history", default_value = "6h")]
    history: String,
    /// First of the demo's ports: querier gRPC/HTTP on base+1/base+2,
    /// cluster N on base+10N … base+10N+3 (tsdb, sidecar gRPC, sidecar
    /// HTTP, exporters). Everything listens on 127.0.0.1.
    #[arg(long = "port-base", default_value_t = strata_demo::layout::DEFAULT_PORT_BASE)]
    port_base: u16,
    /// Listen address of the querier's HTTP API (the Grafana data source).
    /// Default: 127.0.0.1:<port-base + 2>, i.e. 127.0.0.1:10902.
    #[arg(long = "query.http-address")]
    query_http_address: Option<String>,
    /// Listen address of the querier's gRPC StoreAPI.
    /// Default: 127.0.0.1:<port-base + 1>, i.e. 127.0.0.1:10901.
    #[arg(long = "query.grpc-address")]
    query_grpc_address: Option<String>,
    /// The TSDBs' block duration (min = max). Short so that blocks reach
    /// the bucket within minutes; production uses 2h.
    #[arg(long = "block-duration", default_value = "5m")]
    block_duration: String,
    /// Scrape interval of the TSDBs, and the step of the backfill.
    #[arg(long = "scrape-interval", default_value = "15s")]
    scrape_interval: String,
}

fn duration(flag: &str, v: &str) -> Result<Duration> {
    let ms = strata_tsdb::tools::parse_duration_ms(v)
        .with_context(|| format!("invalid --{flag} {v:?}"))?;
    Ok(Duration::from_millis(ms.max(0) as u64))
}

pub fn run(a: DemoArgs) -> Result<()> {
    let exe = std::env::current_exe().context("finding the strata executable")?;
    let mut opts = strata_demo::Options::new(exe);
    opts.data_dir = a.data_dir;
    opts.objstore_config_file = a.objstore_config_file;
    opts.history = match a.history.parse::<u64>() {
        Ok(hours) => Duration::from_secs(hours.saturating_mul(3600)),
        Err(_) => duration("history", &a.history)?,
    };
    opts.port_base = a.port_base;
    opts.query_http_address = a.query_http_address;
    opts.query_grpc_address = a.query_grpc_address;
    opts.block_duration = duration("block-duration", &a.block_duration)?;
    opts.scrape_interval = duration("scrape-interval", &a.scrape_interval)?;
    strata_demo::run(opts)?;
    Ok(())
}
