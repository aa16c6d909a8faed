//! [`ServerOptions`]: everything `strata tsdb` is configured with on the
//! command line, named after Prometheus' flags so `/api/v1/status/flags`
//! (which Thanos' sidecar and Grafana read) looks like Prometheus'.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use strata_scrape::config::{
    format_byte_size, format_duration, parse_byte_size, parse_duration,
};

/// Options of the server. [`Default`] has Prometheus 2.42's defaults, with
/// min and max block durations equal (2h) as a Thanos sidecar needs.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// `--config.file`: the scrape config; `None` runs with an empty one.
    pub config_file: Option<PathBuf>,
    /// `--storage.tsdb.path`.
    pub storage_path: PathBuf,
    /// `--storage.tsdb.retention.time`; `None`: 15d unless a size is set.
    pub retention_time: Option<Duration>,
    /// `--storage.tsdb.retention.size` in bytes.
    pub retention_size: Option<u64>,
    /// `--storage.tsdb.min-block-duration`.
    pub min_block_duration: Duration,
    /// `--storage.tsdb.max-block-duration`.
    pub max_block_duration: Duration,
    /// `--web.listen-address`.
    pub listen_address: String,
    /// `--web.config.file`: TLS, headers and basic auth
    /// (`strata_promapi::webconfig`); `None`: plain HTTP, no auth.
    pub web_config_file: Option<PathBuf>,
    /// `--web.enable-remote-write-receiver`.
    pub enable_remote_write_receiver: bool,
    /// `--web.enable-admin-api`.
    pub enable_admin_api: bool,
    /// `--web.enable-lifecycle`: `/-/reload` and `/-/quit`.
    pub enable_lifecycle: bool,
    /// `--query.lookback-delta`.
    pub lookback_delta: Duration,
    /// `--query.timeout`.
    pub query_timeout: Duration,
    /// `--query.max-samples`.
    pub max_samples: usize,
    /// `--query.max-concurrency`.
    pub max_concurrency: usize,
    /// Largest accepted (compressed) remote-write or remote-read body.
    pub remote_max_body_bytes: usize,
    /// Largest accepted decompressed remote-write or remote-read body;
    /// checked against snappy's length header before allocating.
    pub remote_max_decoded_bytes: usize,
    /// `--storage.remote.read-sample-limit` (SAMPLES responses).
    pub remote_read_sample_limit: usize,
    /// `--storage.remote.read-max-bytes-in-frame` (streamed responses).
    pub remote_read_max_bytes_in_frame: usize,
    /// How often compaction (and retention) runs regardless of the head.
    pub compaction_interval: Duration,
    /// `--grpc-address` (Thanos Receive's flag): serve the StoreAPI, Info
    /// and Metadata gRPC services here; `None` serves no gRPC.
    pub grpc_address: Option<String>,
    /// `--grpc-server-tls-{cert,key,client-ca}` for the gRPC server.
    pub grpc_tls: Option<strata_proto::grpc::ServerTls>,
}

const TWO_HOURS: Duration = Duration::from_secs(2 * 3600);

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            config_file: None,
            storage_path: PathBuf::from("data/"),
            retention_time: None,
            retention_size: None,
            min_block_duration: TWO_HOURS,
            max_block_duration: TWO_HOURS,
            listen_address: "0.0.0.0:9090".to_string(),
            web_config_file: None,
            enable_remote_write_receiver: false,
            enable_admin_api: false,
            enable_lifecycle: false,
            lookback_delta: Duration::from_secs(300),
            query_timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            max_concurrency: 20,
            remote_max_body_bytes: 32 << 20,
            remote_max_decoded_bytes: 256 << 20,
            remote_read_sample_limit: 50_000_000,
            remote_read_max_bytes_in_frame: 1 << 20,
            compaction_interval: Duration::from_secs(60),
            grpc_address: None,
            grpc_tls: None,
        }
    }
}

impl ServerOptions {
    /// Rejects combinations the storage or the API cannot run with.
    pub fn validate(&self) -> Result<(), String> {
        if self.min_block_duration.is_zero() {
            return Err("--storage.tsdb.min-block-duration must be positive".into());
        }
        if self.max_block_duration < self.min_block_duration {
            return Err(
                "--storage.tsdb.max-block-duration must be at least --storage.tsdb.min-block-duration"
                    .into(),
            );
        }
        if self.lookback_delta.is_zero() {
            return Err("--query.lookback-delta must be positive".into());
        }
        if self.compaction_interval.is_zero() {
            return Err("compaction interval must be positive".into());
        }
        Ok(())
    }

    /// The flags as `/api/v1/status/flags` reports them: Prometheus' names
    /// without dashes, values as Prometheus prints them.
    pub fn flags(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), v);
        };
        put(
            "config.file",
            self.config_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        );
        put("storage.tsdb.path", self.storage_path.display().to_string());
        put(
            "storage.tsdb.retention.time",
            self.retention_time
                .map(format_duration)
                .unwrap_or_else(|| "0s".into()),
        );
        put(
            "storage.tsdb.retention.size",
            self.retention_size
                .map(format_byte_size)
                .unwrap_or_else(|| "0B".into()),
        );
        put(
            "storage.tsdb.min-block-duration",
            format_duration(self.min_block_duration),
        );
        put(
            "storage.tsdb.max-block-duration",
            format_duration(self.max_block_duration),
        );
        put("web.listen-address", self.listen_address.clone());
        put(
            "web.config.file",
            self.web_config_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        );
        put(
            "web.enable-remote-write-receiver",
            self.enable_remote_write_receiver.to_string(),
        );
        put("web.enable-admin-api", self.enable_admin_api.to_string());
        put("web.enable-lifecycle", self.enable_lifecycle.to_string());
        put("query.lookback-delta", format_duration(self.lookback_delta));
        put("query.timeout", format_duration(self.query_timeout));
        put("query.max-samples", self.max_samples.to_string());
        put("query.max-concurrency", self.max_concurrency.to_string());
        put(
            "storage.remote.read-sample-limit",
            self.remote_read_sample_limit.to_string(),
        );
        put(
            "storage.remote.read-max-bytes-in-frame",
            self.remote_read_max_bytes_in_frame.to_string(),
        );
        m
    }

    /// The retention as `/api/v1/status/runtimeinfo` shows it.
    pub(crate) fn retention_text(&self) -> String {
        let mut parts = Vec::new();
        match (self.retention_time, self.retention_size) {
            (Some(t), _) if !t.is_zero() => parts.push(format_duration(t)),
            (None, None) => parts.push("15d".to_string()),
            _ => {}
        }
        if let Some(s) = self.retention_size.filter(|s| *s > 0) {
            parts.push(format_byte_size(s));
        }
        parts.join(" or ")
    }
}
