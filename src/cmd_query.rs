//! `strata query`: flags as `thanos query` names them; the logic is in the
//! `strata-querier` crate.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::grpc_tls::GrpcServerTlsArgs;

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// Listen address of the HTTP server (Prometheus API, /metrics, UI).
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    http_address: String,
    /// Prometheus web-config file (TLS, basic auth, headers) for the HTTP server, as Thanos' flag.
    #[arg(long = "http.config")]
    http_config: Option<PathBuf>,
    /// Listen address of the gRPC server (StoreAPI, Info, health).
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    grpc_address: String,
    /// StoreAPI endpoint: host:port, dns+host:port or dnssrv+_name._tcp.domain (repeatable).
    #[arg(long = "endpoint", alias = "store")]
    endpoints: Vec<String>,
    /// File SD files with StoreAPI targets (Prometheus file_sd format, repeatable).
    #[arg(long = "store.sd-files")]
    sd_files: Vec<PathBuf>,
    /// Forced re-read interval of the SD files (they are also re-read when they change).
    #[arg(long = "store.sd-interval", default_value = "5m")]
    sd_interval: String,
    /// Re-resolution interval of dns+ and dnssrv+ endpoints.
    #[arg(long = "store.sd-dns-interval", default_value = "30s")]
    sd_dns_interval: String,
    /// Hidden, strata only (Thanos has none): the DNS server (ip:port) that
    /// resolves dns+ and dnssrv+ endpoints instead of the system's resolver,
    /// with no search domains and no cache. For tests and debugging.
    #[arg(long = "store.sd-dns-resolver-address", hide = true)]
    sd_dns_resolver: Option<std::net::SocketAddr>,
    /// Limit of one store's answer; 0 disables it (the query timeout still applies).
    #[arg(long = "store.response-timeout", default_value = "0ms")]
    response_timeout: String,
    /// An endpoint failing Info for longer than this leaves the active set.
    #[arg(long = "store.unhealthy-timeout", default_value = "5m")]
    unhealthy_timeout: String,
    /// Period and timeout of the Info calls to every endpoint.
    #[arg(long = "endpoint.info-timeout", default_value = "5s", hide = true)]
    info_timeout: String,
    /// Label naming the replica of an HA group; deduplication removes it (repeatable).
    #[arg(long = "query.replica-label")]
    replica_labels: Vec<String>,
    /// Answer with the stores that respond when some fail, with a warning (default).
    #[arg(long = "query.partial-response", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    partial_response: Option<bool>,
    /// Fail a query when any store fails.
    #[arg(long = "no-query.partial-response")]
    no_partial_response: bool,
    /// Maximum time to process a query.
    #[arg(long = "query.timeout", default_value = "2m")]
    query_timeout: String,
    /// Maximum number of queries processed at once; more wait in a queue.
    #[arg(long = "query.max-concurrent", default_value_t = 20)]
    max_concurrent: usize,
    /// Maximum samples one query may hold in memory (decoded and evaluated).
    #[arg(long = "query.max-samples", default_value_t = 50_000_000)]
    max_samples: usize,
    /// How far back an instant selector looks for a sample (default: PromQL's 5m).
    #[arg(long = "query.lookback-delta")]
    lookback_delta: Option<String>,
    /// Maximum series one selector of a query may select across all stores; 0 = no limit.
    #[arg(long = "query.max-series", default_value_t = 0)]
    max_series: usize,
    /// `distributed`: a query whose every group stays within one store
    /// (e.g. `sum by (cluster) (…)` over stores labelled by `cluster`) is
    /// evaluated whole by each store that serves the Query API (`strata
    /// tsdb --grpc-address`), which returns one series per group; the rest
    /// are evaluated here. `local`: every query is evaluated here.
    #[arg(long = "query.mode", default_value = "distributed", value_parser = ["local", "distributed"])]
    mode: String,
    /// Use max_source_resolution=auto (step/5) when a request does not set it.
    #[arg(long = "query.auto-downsampling")]
    auto_downsampling: bool,
    /// Step of instant queries for max_source_resolution=auto.
    #[arg(long = "query.default-step", default_value = "1s")]
    default_step: String,
    /// Use TLS to reach the endpoints.
    #[arg(long = "grpc-client-tls-secure")]
    client_tls_secure: bool,
    /// Do not verify the endpoints' certificates (encrypted, but unauthenticated: test setups only).
    #[arg(long = "grpc-client-tls-skip-verify")]
    client_tls_skip_verify: bool,
    /// Client certificate for mutual TLS.
    #[arg(long = "grpc-client-tls-cert")]
    client_tls_cert: Option<PathBuf>,
    /// Client key for mutual TLS.
    #[arg(long = "grpc-client-tls-key")]
    client_tls_key: Option<PathBuf>,
    /// CA the endpoints' certificates must chain to (default: system roots).
    #[arg(long = "grpc-client-tls-ca")]
    client_tls_ca: Option<PathBuf>,
    /// Server name to verify the endpoints' certificates against.
    #[arg(long = "grpc-client-server-name")]
    client_server_name: Option<String>,
    #[command(flatten)]
    grpc_server_tls: GrpcServerTlsArgs,
}

fn duration(flag: &str, v: &str) -> Result<Duration> {
    let ms = strata_tsdb::tools::parse_duration_ms(v)
        .with_context(|| format!("invalid --{flag} {v:?}"))?;
    Ok(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

/// The effective flags, for `/api/v1/status/flags`.
fn flag_map(a: &QueryArgs, partial: bool) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), v);
    };
    put("http-address", a.http_address.clone());
    put("grpc-address", a.grpc_address.clone());
    put("endpoint", a.endpoints.join(","));
    put(
        "store.sd-files",
        a.sd_files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(","),
    );
    put("store.sd-interval", a.sd_interval.clone());
    put("store.sd-dns-interval", a.sd_dns_interval.clone());
    put("store.response-timeout", a.response_timeout.clone());
    put("store.unhealthy-timeout", a.unhealthy_timeout.clone());
    put("query.replica-label", a.replica_labels.join(","));
    put("query.partial-response", partial.to_string());
    put("query.timeout", a.query_timeout.clone());
    put("query.max-concurrent", a.max_concurrent.to_string());
    put("query.max-samples", a.max_samples.to_string());
    put(
        "query.lookback-delta",
        a.lookback_delta.clone().unwrap_or_default(),
    );
    put("query.max-series", a.max_series.to_string());
    put("query.mode", a.mode.clone());
    put("query.auto-downsampling", a.auto_downsampling.to_string());
    put("query.default-step", a.default_step.clone());
    put("grpc-client-tls-secure", a.client_tls_secure.to_string());
    m
}

pub fn run(a: QueryArgs) -> Result<()> {
    let partial = !a.no_partial_response && a.partial_response.unwrap_or(true);
    let mut cfg = strata_querier::QuerierConfig {
        http_address: a.http_address.clone(),
        http_config: a.http_config.clone(),
        grpc_address: a.grpc_address.clone(),
        flags: flag_map(&a, partial),
        ..Default::default()
    };
    if a.endpoints.is_empty() && a.sd_files.is_empty() {
        tracing::warn!("no --endpoint or --store.sd-files given: queries will return no data");
    }
    for e in &a.endpoints {
        cfg.endpoints
            .specs
            .push(strata_querier::EndpointSpec::parse(e).context("--endpoint")?);
    }
    cfg.endpoints.sd_files = a.sd_files.clone();
    cfg.endpoints.sd_interval = duration("store.sd-interval", &a.sd_interval)?;
    cfg.endpoints.dns_interval = duration("store.sd-dns-interval", &a.sd_dns_interval)?;
    cfg.endpoints.dns_resolver = a.sd_dns_resolver;
    cfg.endpoints.unhealthy_timeout = duration("store.unhealthy-timeout", &a.unhealthy_timeout)?;
    let info = duration("endpoint.info-timeout", &a.info_timeout)?;
    if info.is_zero() {
        bail!("--endpoint.info-timeout must be positive");
    }
    cfg.endpoints.info_timeout = info;
    cfg.endpoints.info_interval = info;

    if a.client_tls_skip_verify && !a.client_tls_secure {
        bail!("--grpc-client-tls-skip-verify needs --grpc-client-tls-secure");
    }
    let uses_tls_files = a.client_tls_ca.is_some()
        || a.client_tls_cert.is_some()
        || a.client_tls_key.is_some()
        || a.client_server_name.is_some();
    if uses_tls_files && !a.client_tls_secure {
        bail!("--grpc-client-tls-ca/-cert/-key and --grpc-client-server-name need --grpc-client-tls-secure");
    }
    if a.client_tls_secure {
        let mut tls = strata_querier::ClientTls::from_files(
            a.client_tls_ca.as_deref(),
            a.client_tls_cert.as_deref(),
            a.client_tls_key.as_deref(),
            a.client_server_name.as_deref(),
        )
        .context("gRPC client TLS")?;
        if a.client_tls_skip_verify {
            tracing::warn!(
                "--grpc-client-tls-skip-verify: endpoints' certificates are not verified"
            );
            tls = tls.with_insecure_skip_verify();
        }
        cfg.endpoints.client.tls = Some(tls);
    }
    cfg.grpc_server_tls = a.grpc_server_tls.load()?;

    cfg.replica_labels = a.replica_labels.clone();
    cfg.partial_response = partial;
    cfg.query_timeout = duration("query.timeout", &a.query_timeout)?;
    if cfg.query_timeout.is_zero() {
        bail!("--query.timeout must be positive");
    }
    cfg.max_concurrent = a.max_concurrent.max(1);
    cfg.max_samples = a.max_samples;
    cfg.lookback_delta = a
        .lookback_delta
        .as_deref()
        .map(|v| duration("query.lookback-delta", v))
        .transpose()?
        .filter(|d| !d.is_zero());
    cfg.max_series = a.max_series;
    cfg.distributed = a.mode == "distributed";
    cfg.auto_downsampling = a.auto_downsampling;
    cfg.default_step = duration("query.default-step", &a.default_step)?;
    let rt = duration("store.response-timeout", &a.response_timeout)?;
    cfg.response_timeout = (!rt.is_zero()).then_some(rt);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let shutdown = async {
            crate::shutdown_signal().await;
            tracing::info!("shutting down");
        };
        strata_querier::run(cfg, shutdown).await
    })?;
    Ok(())
}
