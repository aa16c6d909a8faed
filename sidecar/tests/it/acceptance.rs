//! The StoreAPI acceptance suite (`strata-storetest`) against the sidecar
//! over each TSDB it supports, both loaded with the same dataset:
//! - `strata tsdb` (in-process), blocks written by strata's backfill into
//!   its data directory, the last hour remote-written;
//! - a real Prometheus 2.42, blocks written by the real `promtool tsdb
//!   create-blocks-from openmetrics`, the last hour remote-written.
//!
//! Then the same Series requests go to both sidecars and the answers
//! (labels and every sample) must be identical.

use std::path::Path;
use std::process::Command;

use strata_proto::thanos::info::info_client::InfoClient;
use strata_proto::thanos::store_client::StoreClient;
use strata_server::{Server, ServerOptions};
use strata_sidecar::SidecarConfig;
use strata_storetest::{compare_implementations, run_acceptance, Dataset, Options, TWO_HOURS};

use crate::prometheus::{start_prometheus, wait_ready, PROMETHEUS};
use crate::{now_ms, RunningSidecar};

const PROMTOOL: &str = "/usr/bin/promtool";

const CONFIG: &str = "global:\n  external_labels:\n    cluster: acceptance\n    replica: r0\n";

fn ext() -> Vec<(String, String)> {
    vec![
        ("cluster".into(), "acceptance".into()),
        ("replica".into(), "r0".into()),
    ]
}

fn options() -> Options {
    Options {
        label_sets: vec![ext()],
        replica_label: Some("replica".into()),
        expect_batches: true,
        series_limit: true,
        external_only_matchers_invalid: true,
    }
}

/// A dataset that ends an hour or more before now (within retention, and
/// its head part is not compacted away while the test runs).
pub fn dataset() -> Dataset {
    let start = (now_ms() - 7 * 3600 * 1000) / TWO_HOURS * TWO_HOURS;
    Dataset::generate(start)
}

/// `strata tsdb` in-process on 127.0.0.1 with the dataset loaded.
pub async fn strata_tsdb_with(d: &Dataset, work: &Path) -> Server {
    let data = work.join("strata-data");
    d.write_blocks(&data).expect("strata backfill");
    let config = work.join("strata.yml");
    std::fs::write(&config, CONFIG).unwrap();
    let server = Server::start(ServerOptions {
        config_file: Some(config),
        storage_path: data,
        listen_address: "127.0.0.1:0".into(),
        enable_remote_write_receiver: true,
        retention_time: Some(std::time::Duration::from_secs(30 * 86400)),
        ..ServerOptions::default()
    })
    .await
    .expect("strata tsdb starts");
    let url = format!("http://{}", server.local_addr());
    d.remote_write(&reqwest::Client::new(), &url)
        .await
        .expect("remote write into strata tsdb");
    server
}

fn sidecar_cfg(tsdb: &Path, url: &str) -> SidecarConfig {
    let mut cfg = SidecarConfig::new(tsdb);
    cfg.prometheus_url = url.to_string();
    cfg
}

async fn clients(
    s: &RunningSidecar,
) -> (
    StoreClient<tonic::transport::Channel>,
    InfoClient<tonic::transport::Channel>,
) {
    let ch = s.channel().await;
    (StoreClient::new(ch.clone()), InfoClient::new(ch))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acceptance_strata_tsdb_and_prometheus() {
    let d = dataset();
    let opts = options();
    let work = tempfile::tempdir().unwrap();

    // strata tsdb + sidecar.
    let server = strata_tsdb_with(&d, work.path()).await;
    let strata_url = format!("http://{}", server.local_addr());
    let strata_sidecar =
        RunningSidecar::start(sidecar_cfg(&work.path().join("strata-data"), &strata_url)).await;
    let (mut strata_store, strata_info) = clients(&strata_sidecar).await;
    let report = run_acceptance(strata_store.clone(), Some(strata_info), &d, &opts).await;
    let strata_report = match report {
        Ok(r) => r,
        Err(e) => panic!("sidecar over strata tsdb:\n{e}"),
    };
    assert!(
        strata_report.passed.len() > 100,
        "{}",
        strata_report.passed.len()
    );

    if !Path::new(PROMETHEUS).is_file() || !Path::new(PROMTOOL).is_file() {
        eprintln!("SKIPPED the Prometheus half: {PROMETHEUS} or {PROMTOOL} not found");
        return;
    }
    // Prometheus 2.42 + sidecar: blocks by the real promtool.
    let prom_data = work.path().join("prom-data");
    let om = work.path().join("dataset.om");
    std::fs::write(&om, d.openmetrics()).unwrap();
    let out = Command::new(PROMTOOL)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&prom_data)
        .output()
        .expect("running promtool");
    assert!(
        out.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = work.path().join("prometheus.yml");
    std::fs::write(&config, CONFIG).unwrap();
    let prom = start_prometheus(&prom_data, &config);
    let http = reqwest::Client::new();
    wait_ready(&http, &prom.url).await;
    d.remote_write(&http, &prom.url)
        .await
        .expect("remote write into Prometheus");
    let prom_sidecar = RunningSidecar::start(sidecar_cfg(&prom_data, &prom.url)).await;
    let (mut prom_store, prom_info) = clients(&prom_sidecar).await;
    match run_acceptance(prom_store.clone(), Some(prom_info), &d, &opts).await {
        Ok(r) => assert_eq!(r.passed, strata_report.passed),
        Err(e) => panic!("sidecar over Prometheus 2.42:\n{e}"),
    }

    // The same requests, the same answers.
    match compare_implementations(&mut strata_store, &mut prom_store, &d, &opts).await {
        Ok(n) => assert!(n > 50, "{n} requests compared"),
        Err(e) => panic!("strata tsdb and Prometheus differ behind sidecars:\n{e}"),
    }

    prom_sidecar.stop().await;
    strata_sidecar.stop().await;
    server.shutdown().await.unwrap();
}
