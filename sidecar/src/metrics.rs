//! The sidecar's own metrics, exposed in the Prometheus text format 0.0.4
//! on `/metrics`. A handful of counters do not justify a metrics library:
//! atomics and a hand-written exposition keep the dependency tree small.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// StoreAPI / Info methods counted in `strata_sidecar_storeapi_requests_total`.
pub const METHODS: [&str; 5] = [
    "Series",
    "LabelNames",
    "LabelValues",
    "MetricMetadata",
    "Info",
];

/// Counters and gauges; cheap to update from any task.
#[derive(Debug, Default)]
pub struct Metrics {
    uploads: AtomicU64,
    upload_failures: AtomicU64,
    /// Unix seconds of the last successful upload, as f64 bits (0 = never).
    last_upload: AtomicU64,
    syncs: AtomicU64,
    sync_failures: AtomicU64,
    requests: [AtomicU64; METHODS.len()],
    request_errors: [AtomicU64; METHODS.len()],
    prometheus_up: AtomicU64,
}

impl Metrics {
    pub fn inc_uploads(&self) {
        self.uploads.fetch_add(1, Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.last_upload.store(now.to_bits(), Ordering::Relaxed);
    }
    pub fn inc_upload_failures(&self) {
        self.upload_failures.fetch_add(1, Ordering::Relaxed);
    }
    pub fn inc_syncs(&self, failed: bool) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.sync_failures.fetch_add(1, Ordering::Relaxed);
        }
    }
    pub fn set_prometheus_up(&self, up: bool) {
        self.prometheus_up.store(u64::from(up), Ordering::Relaxed);
    }
    /// Counts one request of `method` (one of [`METHODS`]).
    pub fn inc_request(&self, method: &str, failed: bool) {
        if let Some(i) = METHODS.iter().position(|m| *m == method) {
            self.requests[i].fetch_add(1, Ordering::Relaxed);
            if failed {
                self.request_errors[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    pub fn uploads(&self) -> u64 {
        self.uploads.load(Ordering::Relaxed)
    }
    pub fn upload_failures(&self) -> u64 {
        self.upload_failures.load(Ordering::Relaxed)
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let mut one = |name: &str, typ: &str, help: &str, v: String| {
            let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} {typ}\n{name} {v}\n");
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        one(
            "thanos_shipper_uploads_total",
            "counter",
            "Total number of uploaded blocks.",
            get(&self.uploads),
        );
        one(
            "thanos_shipper_upload_failures_total",
            "counter",
            "Total number of block upload failures.",
            get(&self.upload_failures),
        );
        one(
            "thanos_shipper_dir_syncs_total",
            "counter",
            "Total number of dir syncs.",
            get(&self.syncs),
        );
        one(
            "thanos_shipper_dir_sync_failures_total",
            "counter",
            "Total number of failed dir syncs.",
            get(&self.sync_failures),
        );
        one(
            "thanos_shipper_last_successful_upload_time",
            "gauge",
            "Unix timestamp (in seconds) of the last successful TSDB block uploaded to the bucket.",
            f64::from_bits(self.last_upload.load(Ordering::Relaxed)).to_string(),
        );
        one(
            "thanos_sidecar_prometheus_up",
            "gauge",
            "Boolean indicator whether the sidecar can reach its Prometheus peer.",
            get(&self.prometheus_up),
        );
        for (name, help, arr) in [
            (
                "strata_sidecar_storeapi_requests_total",
                "StoreAPI and Info requests by method.",
                &self.requests,
            ),
            (
                "strata_sidecar_storeapi_request_errors_total",
                "StoreAPI and Info requests that failed, by method.",
                &self.request_errors,
            ),
        ] {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
            for (m, v) in METHODS.iter().zip(arr.iter()) {
                let _ = writeln!(s, "{name}{{method=\"{m}\"}} {}", v.load(Ordering::Relaxed));
            }
        }
        s
    }
}
