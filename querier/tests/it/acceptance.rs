//! The StoreAPI acceptance suite (`strata-storetest`) against the querier's
//! own StoreAPI server (what a global querier federates).
//!
//! Two "clusters", each a real `strata tsdb` (in-process) loaded with the
//! suite's dataset (blocks by strata's backfill, the last hour
//! remote-written) under external labels `{cluster="c1"}` and
//! `{cluster="c2"}`, each with a real `strata sidecar`; a querier over both
//! sidecars must present the dataset twice, once per label set, and pass
//! every case. `cluster` doubles as the replica label: removing it merges
//! the two copies into one series.
//!
//! Then a querier over one sidecar and that sidecar itself get the same
//! Series requests and must give the same answers.

use std::time::Duration;

use strata_proto::thanos::info::info_client::InfoClient;
use strata_proto::thanos::store_client::StoreClient;
use strata_server::{Server, ServerOptions};
use strata_sidecar::SidecarConfig;
use strata_storetest::{
    compare_implementations, run_acceptance, Dataset, LabelSet, Options, TWO_HOURS,
};
use tokio::net::TcpListener;
use tonic::transport::Channel;

use crate::*;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn cluster(name: &str) -> LabelSet {
    vec![("cluster".into(), name.into())]
}

/// One `strata tsdb` with the dataset and a sidecar in front of it.
struct Cluster {
    _dir: tempfile::TempDir,
    tsdb: Server,
    sidecar_grpc: String,
    stop_sidecar: tokio::sync::watch::Sender<bool>,
    sidecar_task: tokio::task::JoinHandle<()>,
}

impl Cluster {
    async fn start(name: &str, d: &Dataset) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        d.write_blocks(&data).expect("strata backfill");
        let cfg = dir.path().join("strata.yml");
        std::fs::write(
            &cfg,
            format!("global:\n  external_labels:\n    cluster: {name}\n"),
        )
        .unwrap();
        let tsdb = Server::start(ServerOptions {
            config_file: Some(cfg),
            storage_path: data.clone(),
            listen_address: "127.0.0.1:0".into(),
            enable_remote_write_receiver: true,
            retention_time: Some(Duration::from_secs(30 * 86400)),
            ..ServerOptions::default()
        })
        .await
        .expect("strata tsdb starts");
        let url = format!("http://{}", tsdb.local_addr());
        d.remote_write(&reqwest::Client::new(), &url)
            .await
            .expect("remote write into strata tsdb");

        let mut sc = SidecarConfig::new(&data);
        sc.prometheus_url = url;
        sc.max_startup_backoff = Duration::from_millis(200);
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sidecar_grpc = grpc.local_addr().unwrap().to_string();
        let (stop_sidecar, mut rx) = tokio::sync::watch::channel(false);
        let sidecar_task = tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            if let Err(e) = strata_sidecar::run_with_listeners(sc, grpc, http, stop).await {
                panic!("sidecar failed: {e}");
            }
        });
        Cluster {
            _dir: dir,
            tsdb,
            sidecar_grpc,
            stop_sidecar,
            sidecar_task,
        }
    }

    async fn stop(self) {
        let _ = self.stop_sidecar.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.sidecar_task).await;
        self.tsdb.shutdown().await.unwrap();
    }
}

async fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

/// The querier's StoreAPI: it batches, honours `limit`, and (like Thanos'
/// proxy) has no external labels of its own, so a request whose only
/// matcher is on a downstream store's external label is forwarded, not
/// refused (the sidecar's refusal then arrives as a warning under partial
/// response): that case does not apply.
fn querier_options(label_sets: Vec<LabelSet>) -> Options {
    Options {
        label_sets,
        replica_label: Some("cluster".into()),
        expect_batches: true,
        series_limit: true,
        external_only_matchers_invalid: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn querier_storeapi_passes_the_acceptance_suite() {
    let start = (now_ms() - 7 * 3600 * 1000) / TWO_HOURS * TWO_HOURS;
    let d = Dataset::generate(start);
    let c1 = Cluster::start("c1", &d).await;
    let c2 = Cluster::start("c2", &d).await;

    // A querier over both clusters: the dataset twice.
    let q = start_querier(&[&c1.sidecar_grpc, &c2.sidecar_grpc], |_| {}).await;
    q.wait_stores(2).await;
    let ch = channel(&q.q.grpc_addr().to_string()).await;
    let opts = querier_options(vec![cluster("c1"), cluster("c2")]);
    let report = match run_acceptance(
        StoreClient::new(ch.clone()),
        Some(InfoClient::new(ch)),
        &d,
        &opts,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => panic!("querier over two sidecars:\n{e}"),
    };
    assert!(report.passed.len() > 100, "{}", report.passed.len());
    eprintln!(
        "querier over two sidecars: {} cases passed",
        report.passed.len()
    );

    // A querier over one sidecar answers as that sidecar does.
    let q1 = start_querier(&[&c1.sidecar_grpc], |_| {}).await;
    q1.wait_stores(1).await;
    let q1_ch = channel(&q1.q.grpc_addr().to_string()).await;
    let mut via_querier = StoreClient::new(q1_ch.clone());
    let mut direct = StoreClient::new(channel(&c1.sidecar_grpc).await);
    let one = querier_options(vec![cluster("c1")]);
    match run_acceptance(via_querier.clone(), Some(InfoClient::new(q1_ch)), &d, &one).await {
        Ok(r) => {
            assert!(r.passed.len() > 100, "{}", r.passed.len());
            eprintln!("querier over one sidecar: {} cases passed", r.passed.len());
        }
        Err(e) => panic!("querier over one sidecar:\n{e}"),
    }
    match compare_implementations(&mut via_querier, &mut direct, &d, &one).await {
        Ok(n) => {
            assert!(n > 50, "{n} requests compared");
            eprintln!("querier over one sidecar vs the sidecar: {n} requests identical");
        }
        Err(e) => panic!("querier over one sidecar and the sidecar differ:\n{e}"),
    }

    q1.q.shutdown().await.unwrap();
    q.q.shutdown().await.unwrap();
    c1.stop().await;
    c2.stop().await;
}
