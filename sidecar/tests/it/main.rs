//! Integration tests of strata-sidecar with real parts: a real Prometheus
//! 2.42 (`/usr/bin/prometheus`, skipped with a note when missing), a
//! FILESYSTEM bucket, tonic clients, and mutual TLS with rcgen certificates.

mod acceptance;
mod prometheus;
mod s3;
mod shipper;
mod tls;

use std::path::Path;
use std::sync::Arc;

use strata_bucket::Bucket;
use strata_sidecar::{Metrics, Shipper, ShipperOptions};

/// Writes 2h blocks with strata's backfill (same blocks as promtool writes)
/// from generated OpenMetrics: `series` series of `test_metric`, one sample
/// a minute from `start_ms` to `end_ms`. Returns the samples per `instance`.
pub fn backfill(dir: &Path, start_ms: i64, end_ms: i64, series: usize) -> Vec<Vec<(i64, f64)>> {
    let mut text = String::from("# TYPE test_metric gauge\n");
    let mut out = vec![Vec::new(); series];
    // Whole seconds: OpenMetrics timestamps are seconds. Each series'
    // samples are contiguous and in time order, as OpenMetrics requires.
    let first = (start_ms / 60_000 + 1) * 60_000;
    for (i, samples) in out.iter_mut().enumerate() {
        let mut t = first;
        while t < end_ms {
            let v = (t / 60_000 % 1000) as f64 + i as f64 * 0.5;
            text.push_str(&format!(
                "test_metric{{instance=\"i{i}\"}} {v} {}\n",
                t / 1000
            ));
            samples.push((t, v));
            t += 60_000;
        }
    }
    text.push_str("# EOF\n");
    let mut on_block = |_: &strata_tsdb::meta::BlockMeta| {};
    strata_tsdb::backfill::create_blocks_from_openmetrics(
        text.as_bytes(),
        dir,
        strata_tsdb::backfill::BackfillOptions {
            max_block_duration: 2 * 3600 * 1000,
            max_samples_in_appender: strata_tsdb::backfill::DEFAULT_MAX_SAMPLES_IN_APPENDER,
            on_block: &mut on_block,
        },
    )
    .expect("backfill");
    out
}

pub fn ext_labels() -> Vec<(String, String)> {
    vec![
        ("cluster".into(), "c1".into()),
        ("replica".into(), "a".into()),
    ]
}

pub fn shipper(dir: &Path, bucket: Bucket) -> Shipper {
    Shipper::new(
        dir,
        bucket,
        Arc::new(ext_labels),
        ShipperOptions::default(),
        Arc::new(Metrics::default()),
    )
}

pub fn fs_bucket(root: &Path) -> Bucket {
    strata_bucket::ObjstoreConfig::parse(&format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        root.display()
    ))
    .unwrap()
    .build()
    .unwrap()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Block directories (ULID names) under `dir`, sorted.
pub fn block_ids(dir: &Path) -> Vec<String> {
    strata_tsdb::block::block_dirs(dir)
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// A sidecar running in this process on 127.0.0.1 ports.
pub struct RunningSidecar {
    pub grpc: std::net::SocketAddr,
    pub http: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), strata_sidecar::Error>>>,
}

impl RunningSidecar {
    /// Starts `strata_sidecar::run_with_listeners` on free ports.
    pub async fn start(cfg: strata_sidecar::SidecarConfig) -> RunningSidecar {
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (ga, ha) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(strata_sidecar::run_with_listeners(cfg, grpc, http, async {
            let _ = rx.await;
        }));
        RunningSidecar {
            grpc: ga,
            http: ha,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// A gRPC channel, once the sidecar's gRPC server accepts calls (it
    /// starts only after the external labels are loaded).
    pub async fn channel(&self) -> tonic::transport::Channel {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let ep =
                tonic::transport::Endpoint::from_shared(format!("http://{}", self.grpc)).unwrap();
            if let Ok(ch) = ep.connect().await {
                let mut info = strata_proto::thanos::info::info_client::InfoClient::new(ch.clone());
                if info
                    .info(strata_proto::thanos::info::InfoRequest {})
                    .await
                    .is_ok()
                {
                    return ch;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sidecar gRPC on {} did not come up",
                self.grpc
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The sidecar's `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.http))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

impl Drop for RunningSidecar {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A counter's value in a text exposition (`name value` line).
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
