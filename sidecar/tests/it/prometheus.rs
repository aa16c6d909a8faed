//! Against a real Prometheus 2.42: backfilled blocks plus remote-written
//! fresh samples; the whole sidecar (`run_with_listeners`) ships to a
//! FILESYSTEM bucket and answers StoreAPI calls from a tonic client.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use strata_bucket::Meta;
use strata_proto::prometheus as pb;
use strata_proto::thanos::info::info_client::InfoClient;
use strata_proto::thanos::info::InfoRequest;
use strata_proto::thanos::store_client::StoreClient;
use strata_proto::thanos::{
    label_matcher::Type, series_response, LabelMatcher, LabelNamesRequest, LabelValuesRequest,
    Series, SeriesRequest,
};
use strata_sidecar::shipper::read_meta_file;
use strata_sidecar::SidecarConfig;

use crate::{backfill, block_ids, now_ms};

pub const PROMETHEUS: &str = "/usr/bin/prometheus";

pub struct Prometheus {
    child: Child,
    pub url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn start_prometheus(data: &Path, config: &Path) -> Prometheus {
    let port = free_port();
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args([
            "--storage.tsdb.min-block-duration=2h",
            "--storage.tsdb.max-block-duration=2h",
            "--storage.tsdb.retention.time=30d",
            "--web.enable-remote-write-receiver",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning prometheus");
    Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

pub async fn wait_ready(http: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{url}/-/ready")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} did not become ready");
}

async fn remote_write(http: &reqwest::Client, url: &str, samples: &[(i64, f64)]) {
    let req = pb::WriteRequest {
        timeseries: vec![pb::TimeSeries {
            labels: vec![
                pb::Label {
                    name: "__name__".into(),
                    value: "test_metric".into(),
                },
                pb::Label {
                    name: "instance".into(),
                    value: "fresh".into(),
                },
            ],
            samples: samples
                .iter()
                .map(|&(timestamp, value)| pb::Sample { value, timestamp })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    let r = http
        .post(format!("{url}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "remote write: {}", r.status());
}

/// Raw samples of `test_metric` per `instance` from Prometheus' query API.
async fn query_raw(
    http: &reqwest::Client,
    url: &str,
    at_ms: i64,
) -> Vec<(String, Vec<(i64, f64)>)> {
    let body = http
        .get(format!(
            "{url}/api/v1/query?query=test_metric%5B2d%5D&time={}",
            at_ms as f64 / 1000.0
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut out: Vec<(String, Vec<(i64, f64)>)> = r["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let inst = s["metric"]["instance"].as_str().unwrap().to_string();
            let values = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                    (t, p[1].as_str().unwrap().parse::<f64>().unwrap())
                })
                .collect();
            (inst, values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn matcher(t: Type, name: &str, value: &str) -> LabelMatcher {
    LabelMatcher {
        r#type: t as i32,
        name: name.into(),
        value: value.into(),
    }
}

async fn series(
    client: &mut StoreClient<tonic::transport::Channel>,
    req: SeriesRequest,
) -> Vec<Series> {
    let mut stream = client.series(req).await.unwrap().into_inner();
    let mut out = Vec::new();
    while let Some(frame) = stream.message().await.unwrap() {
        match frame.result {
            Some(series_response::Result::Series(s)) => out.push(s),
            Some(series_response::Result::Batch(b)) => out.extend(b.series),
            _ => {}
        }
    }
    out
}

fn decode(s: &Series) -> Vec<(i64, f64)> {
    let mut v = Vec::new();
    for c in &s.chunks {
        let raw = c.raw.as_ref().expect("raw chunk");
        assert_eq!(raw.r#type, 0, "XOR on the StoreAPI wire");
        v.extend(strata_tsdb::chunkenc::XorIter::new(&raw.data));
    }
    v
}

fn label<'a>(s: &'a Series, name: &str) -> Option<&'a str> {
    s.labels
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.value.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_against_prometheus() {
    if !Path::new(PROMETHEUS).is_file() {
        eprintln!("SKIPPED: {PROMETHEUS} not found");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let now = now_ms();
    let backfilled = backfill(&data, now - 9 * 3600 * 1000, now - 3 * 3600 * 1000, 3);
    let blocks = block_ids(&data);
    assert!(blocks.len() >= 3, "{blocks:?}");
    let config = work.path().join("prometheus.yml");
    std::fs::write(
        &config,
        "global:\n  external_labels:\n    cluster: c1\n    replica: a\n",
    )
    .unwrap();
    let prom = start_prometheus(&data, &config);
    let http = reqwest::Client::new();
    wait_ready(&http, &prom.url).await;
    let fresh: Vec<(i64, f64)> = (0..30)
        .map(|i| (now - 60_000 + i * 1000, i as f64))
        .collect();
    remote_write(&http, &prom.url, &fresh).await;

    // The sidecar, with a FILESYSTEM bucket given as objstore.yml.
    let bucket_dir = work.path().join("bucket");
    std::fs::create_dir(&bucket_dir).unwrap();
    let objstore_yml = work.path().join("objstore.yml");
    std::fs::write(
        &objstore_yml,
        format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket_dir.display()
        ),
    )
    .unwrap();
    let start_sidecar = |data: PathBuf| {
        let mut cfg = SidecarConfig::new(data);
        cfg.prometheus_url = prom.url.clone();
        cfg.objstore = strata_sidecar::Objstore::from_flags(Some(&objstore_yml), None).unwrap();
        cfg.sync_interval = Duration::from_millis(300);
        async move {
            let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let httpl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let (ga, ha) = (grpc.local_addr().unwrap(), httpl.local_addr().unwrap());
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(strata_sidecar::run_with_listeners(
                cfg,
                grpc,
                httpl,
                async {
                    let _ = rx.await;
                },
            ));
            (ga, ha, tx, task)
        }
    };
    let (grpc_addr, http_addr, stop, task) = start_sidecar(data.clone()).await;

    // Ready once the external labels are loaded; then the shipper runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let shipped = read_meta_file(&data).map_or(0, |m| m.uploaded.len());
        if shipped == blocks.len() {
            break;
        }
        assert!(Instant::now() < deadline, "shipper did not ship all blocks");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = http
        .get(format!("http://{http_addr}/-/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let mut sorted = blocks.clone();
    sorted.sort();
    assert_eq!(block_ids(&bucket_dir), sorted);
    for id in &blocks {
        let meta = Meta::read_from_dir(&bucket_dir.join(id)).unwrap();
        let labels: Vec<(String, String)> = meta.thanos.labels.clone().into_iter().collect();
        assert_eq!(labels, crate::ext_labels());
        assert_eq!(meta.thanos.source, "sidecar");
        assert_eq!(meta.thanos.downsample.resolution, 0);
        assert!(meta
            .thanos
            .files
            .iter()
            .any(|f| f.rel_path == "index" && f.size_bytes > 0));
        // Files are byte-identical to the local block.
        assert_eq!(
            std::fs::read(bucket_dir.join(id).join("index")).unwrap(),
            std::fs::read(data.join(id).join("index")).unwrap()
        );
    }
    let meta_text = std::fs::read_to_string(data.join("thanos.shipper.json")).unwrap();
    assert!(meta_text.contains("\"version\": 1"), "{meta_text}");

    // Several more sync periods upload nothing.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let metrics = http
        .get(format!("http://{http_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!("thanos_shipper_uploads_total {}\n", blocks.len())),
        "{metrics}"
    );
    assert!(metrics.contains("thanos_shipper_upload_failures_total 0\n"));

    // ---- StoreAPI
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut store = StoreClient::new(channel.clone());
    let info = InfoClient::new(channel)
        .info(InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let lset: Vec<(String, String)> = info.label_sets[0]
        .labels
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect();
    assert_eq!(lset, crate::ext_labels());
    let si = info.store.unwrap();
    assert_eq!(si.max_time, i64::MAX);
    assert!(
        si.min_time <= backfilled[0][0].0,
        "min time {} covers the oldest block",
        si.min_time
    );

    let expected = query_raw(&http, &prom.url, now + 60_000).await;
    assert_eq!(expected.len(), 4, "3 backfilled + 1 fresh series");
    let req = SeriesRequest {
        min_time: now - 2 * 86_400_000,
        max_time: now + 60_000,
        matchers: vec![matcher(Type::Eq, "__name__", "test_metric")],
        ..Default::default()
    };
    let got = series(&mut store, req.clone()).await;
    assert_eq!(got.len(), 4);
    for s in &got {
        assert_eq!(label(s, "cluster"), Some("c1"));
        assert_eq!(label(s, "replica"), Some("a"));
        let names: Vec<&str> = s.labels.iter().map(|l| l.name.as_str()).collect();
        let mut sorted_names = names.clone();
        sorted_names.sort();
        assert_eq!(names, sorted_names);
    }
    let mut got_samples: Vec<(String, Vec<(i64, f64)>)> = got
        .iter()
        .map(|s| (label(s, "instance").unwrap().to_string(), decode(s)))
        .collect();
    // Series are sorted by labels; here that is by instance.
    let order: Vec<&String> = got_samples.iter().map(|(i, _)| i).collect();
    let mut order_sorted = order.clone();
    order_sorted.sort();
    assert_eq!(order, order_sorted);
    got_samples.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got_samples, expected);
    // "fresh" sorts before "i0".
    assert_eq!(got_samples[0].0, "fresh");
    assert_eq!(got_samples[0].1, fresh);
    assert_eq!(got_samples[1].1, backfilled[0]);

    // Matching external labels are stripped; contradicting ones return nothing.
    let mut r = req.clone();
    r.matchers.push(matcher(Type::Re, "cluster", "c.*"));
    assert_eq!(series(&mut store, r).await.len(), 4);
    let mut r = req.clone();
    r.matchers.push(matcher(Type::Eq, "cluster", "c2"));
    assert!(series(&mut store, r).await.is_empty());

    // Replica label removal, batching, label-only requests.
    let mut r = req.clone();
    r.without_replica_labels = vec!["replica".into()];
    r.response_batch_size = 3;
    r.skip_chunks = true;
    let got = series(&mut store, r).await;
    assert_eq!(got.len(), 4);
    assert!(got
        .iter()
        .all(|s| label(s, "replica").is_none() && s.chunks.is_empty()));

    // Labels.
    let names = store
        .label_names(LabelNamesRequest {
            start: now - 86_400_000,
            end: now + 60_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .names;
    assert_eq!(names, vec!["__name__", "cluster", "instance", "replica"]);
    let values = |label: &str, ms: Vec<LabelMatcher>| LabelValuesRequest {
        label: label.into(),
        start: now - 86_400_000,
        end: now + 60_000,
        matchers: ms,
        ..Default::default()
    };
    let v = store
        .label_values(values(
            "instance",
            vec![matcher(Type::Eq, "__name__", "test_metric")],
        ))
        .await
        .unwrap()
        .into_inner()
        .values;
    assert_eq!(v, vec!["fresh", "i0", "i1", "i2"]);
    let v = store
        .label_values(values("cluster", vec![]))
        .await
        .unwrap()
        .into_inner()
        .values;
    assert_eq!(v, vec!["c1"]);
    let v = store
        .label_values(values("instance", vec![matcher(Type::Eq, "replica", "b")]))
        .await
        .unwrap()
        .into_inner()
        .values;
    assert!(v.is_empty());

    // ---- Restart: nothing is uploaded again.
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    let before = std::fs::metadata(bucket_dir.join(&blocks[0]).join("meta.json"))
        .unwrap()
        .modified()
        .unwrap();
    let (_, http_addr, stop, task) = start_sidecar(data.clone()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let metrics = http
        .get(format!("http://{http_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("thanos_shipper_uploads_total 0\n"),
        "{metrics}"
    );
    let after = std::fs::metadata(bucket_dir.join(&blocks[0]).join("meta.json"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// Without external labels the sidecar refuses to start, as Thanos does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_prometheus_without_external_labels() {
    if !Path::new(PROMETHEUS).is_file() {
        eprintln!("SKIPPED: {PROMETHEUS} not found");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 15s\n").unwrap();
    let prom = start_prometheus(&work.path().join("data"), &config);
    let http = reqwest::Client::new();
    wait_ready(&http, &prom.url).await;
    let mut cfg = SidecarConfig::new(work.path().join("data"));
    cfg.prometheus_url = prom.url.clone();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let httpl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        strata_sidecar::run_with_listeners(cfg, grpc, httpl, std::future::pending()),
    )
    .await
    .expect("fails fast")
    .expect_err("refused");
    assert!(err.to_string().contains("no external labels"), "{err}");
}
