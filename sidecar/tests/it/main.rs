//! Integration tests of strata-sidecar with real parts: a real Prometheus
//! 2.42 (`/usr/bin/prometheus`, skipped with a note when missing), a
//! FILESYSTEM bucket, tonic clients, and mutual TLS with rcgen certificates.

mod prometheus;
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
