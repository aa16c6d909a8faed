//! Two "clusters", each a real `strata tsdb` (in-process, data backfilled
//! into its data directory) with a real `strata sidecar`, and a querier over
//! both sidecars.

use std::path::Path;

use strata_server::Server;

use crate::*;

/// Writes blocks of `cpu_seconds_total{pod=…}` counters (one sample a
/// minute over `[start_ms, end_ms)`, rate `rate_per_s` per pod) and
/// `kube_pod_info` gauges into `dir`.
fn backfill(dir: &Path, start_ms: i64, end_ms: i64, pods: usize, rate_per_s: f64) {
    let mut cpu = String::from("# TYPE cpu_seconds counter\n");
    let mut info = String::from("# TYPE kube_pod_info gauge\n");
    let first = (start_ms / 60_000 + 1) * 60_000;
    for p in 0..pods {
        let mut t = first;
        while t < end_ms {
            let v = (t - first) as f64 / 1000.0 * rate_per_s;
            cpu.push_str(&format!(
                "cpu_seconds_total{{pod=\"p{p}\",namespace=\"ns{}\"}} {v} {}\n",
                p % 2,
                t / 1000
            ));
            info.push_str(&format!(
                "kube_pod_info{{pod=\"p{p}\",namespace=\"ns{}\"}} 1 {}\n",
                p % 2,
                t / 1000
            ));
            t += 60_000;
        }
    }
    let text = format!("{cpu}{info}# EOF\n");
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
}

struct Cluster {
    _dir: tempfile::TempDir,
    tsdb: Server,
    sidecar_grpc: String,
    stop_sidecar: tokio::sync::watch::Sender<bool>,
}

async fn start_cluster(name: &str, start_ms: i64, end_ms: i64, pods: usize, rate: f64) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    backfill(&data, start_ms, end_ms, pods, rate);
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!("global:\n  external_labels:\n    cluster: {name}\n"),
    )
    .unwrap();
    let (tsdb, sidecar_grpc, stop_sidecar) = start_tsdb_with_sidecar(&data, cfg).await;
    Cluster {
        _dir: dir,
        tsdb,
        sidecar_grpc,
        stop_sidecar,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_cluster_queries_through_real_tsdb_and_sidecars() {
    let end = now_ms() - 3_600_000;
    let start = end - 3 * 3_600_000;
    let c1 = start_cluster("cluster1", start, end, 4, 0.5).await;
    let c2 = start_cluster("cluster2", start, end, 2, 2.0).await;
    let q = start_querier(&[&c1.sidecar_grpc, &c2.sidecar_grpc], |_| {}).await;
    q.wait_stores(2).await;

    let (_, v) = q.get_json("/api/v1/stores").await;
    let sidecars = v["data"]["sidecar"].as_array().expect("sidecars");
    let mut sets: Vec<String> = sidecars
        .iter()
        .map(|s| s["labelSets"].to_string())
        .collect();
    sets.sort();
    assert_eq!(
        sets,
        vec![r#"[{"cluster":"cluster1"}]"#, r#"[{"cluster":"cluster2"}]"#]
    );

    let t = (end - 30 * 60_000) as f64 / 1000.0;
    // Pods per cluster.
    let (status, v) = q.query("count by (cluster) (kube_pod_info)", t, "").await;
    assert_eq!(status, 200, "{v}");
    let r = result(&v);
    assert_eq!(r.len(), 2, "{v}");
    assert_eq!(r[0]["metric"], serde_json::json!({"cluster": "cluster1"}));
    assert_eq!(r[0]["value"][1], "4");
    assert_eq!(r[1]["metric"], serde_json::json!({"cluster": "cluster2"}));
    assert_eq!(r[1]["value"][1], "2");

    // CPU by cluster: 4 pods × 0.5/s and 2 pods × 2/s.
    let (_, v) = q
        .query("sum by (cluster) (rate(cpu_seconds_total[5m]))", t, "")
        .await;
    let r = result(&v);
    let rate = |i: usize| -> f64 { r[i]["value"][1].as_str().unwrap().parse().unwrap() };
    assert_eq!(r.len(), 2, "{v}");
    assert!((rate(0) - 2.0).abs() < 1e-9, "{v}");
    assert!((rate(1) - 4.0).abs() < 1e-9, "{v}");

    // Namespaces per cluster, through the label API.
    let (_, v) = q
        .get_json(&format!(
            "/api/v1/label/namespace/values?match[]={}",
            urlencode("kube_pod_info{cluster=\"cluster2\"}")
        ))
        .await;
    assert_eq!(v["data"], serde_json::json!(["ns0", "ns1"]));
    let (_, v) = q.get_json("/api/v1/labels").await;
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("cluster")),
        "{v}"
    );

    // A range query keeps every step.
    let (_, v) = q
        .query_range("sum(kube_pod_info)", t - 600.0, t, 60.0, "")
        .await;
    let r = result(&v);
    assert_eq!(r.len(), 1, "{v}");
    let values = r[0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 11);
    assert!(values.iter().all(|p| p[1] == "6"), "{v}");

    // More selectors than are fetched at once (MAX_CONCURRENT_SELECTS):
    // each answer still reaches its own selector. 10 × (4 − 2) pods; any
    // mix-up of the 20 answers gives another sum.
    let term =
        "(count(kube_pod_info{cluster=\"cluster1\"}) - count(kube_pod_info{cluster=\"cluster2\"}))";
    let many = [term; 10].join(" + ");
    const { assert!(20 > strata_querier::queryable::MAX_CONCURRENT_SELECTS) };
    let (status, v) = q.query(&many, t, "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(result(&v)[0]["value"][1], "20", "{v}");

    // promtool (Prometheus 2.42's) talks to the querier like to Prometheus.
    if Path::new("/usr/bin/promtool").exists() {
        let base = q.base.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("/usr/bin/promtool")
                .args(["query", "instant", "--time", &format!("{t}"), &base])
                .arg("count by (cluster) (kube_pod_info)")
                .output()
                .expect("promtool runs")
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("{cluster=\"cluster1\"} => 4"), "{stdout}");
        assert!(stdout.contains("{cluster=\"cluster2\"} => 2"), "{stdout}");
    } else {
        eprintln!("note: /usr/bin/promtool missing, promtool check skipped");
    }

    // One cluster down: answers from the other with a warning; with partial
    // response off, a clear error naming the store.
    c2.tsdb.shutdown().await.unwrap();
    let (status, v) = q.query("count by (cluster) (kube_pod_info)", t, "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(result(&v).len(), 1);
    assert!(
        warnings(&v).iter().any(|w| w.contains(&c2.sidecar_grpc)),
        "{v}"
    );
    let (status, v) = q
        .query(
            "count by (cluster) (kube_pod_info)",
            t,
            "&partial_response=false",
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains(&c2.sidecar_grpc),
        "{v}"
    );

    q.q.shutdown().await.unwrap();
    let _ = c1.stop_sidecar.send(true);
    let _ = c2.stop_sidecar.send(true);
    c1.tsdb.shutdown().await.unwrap();
}

/// `/api/v1/metadata` under partial response: a store whose TSDB is gone
/// becomes a warning in the response (as for queries), not a silent gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_from_a_failed_store_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(&cfg, "global:\n  external_labels:\n    cluster: c1\n").unwrap();
    let (tsdb, grpc, stop_sidecar) = start_tsdb_with_sidecar(&data, cfg).await;
    let q = start_querier(&[&grpc], |_| {}).await;
    q.wait_stores(1).await;
    let (status, v) = q.get_json("/api/v1/metadata").await;
    assert_eq!(status, 200, "{v}");
    assert!(warnings(&v).is_empty(), "{v}");

    // The sidecar stays up (and keeps advertising the Metadata API); its
    // TSDB does not answer any more.
    tsdb.shutdown().await.unwrap();
    let (status, v) = q.get_json("/api/v1/metadata").await;
    assert_eq!(status, 200, "{v}");
    let w = warnings(&v);
    assert_eq!(w.len(), 1, "{v}");
    assert!(w[0].contains(&grpc), "the warning names the store: {v}");
    let _ = stop_sidecar.send(true);
    q.q.shutdown().await.unwrap();
}
