//! Store selection, merging, partial response, timeouts, limits and the
//! metadata endpoints, over real gRPC stores.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::*;

fn up(job: &str, from: i64, to: i64) -> TestSeries {
    ts(
        &[("__name__", "up"), ("job", job)],
        samples(from, to, 15_000, |_| 1.0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prunes_stores_by_external_labels_and_time() {
    let c1 = start_store(&[("cluster", "c1")], vec![up("a", 0, 600_000)]).await;
    let c2 = start_store(&[("cluster", "c2")], vec![up("a", 0, 600_000)]).await;
    // Advertises only data from 10^9 ms on: never overlaps the queries.
    let late = start_store_with(
        &[("cluster", "c3")],
        vec![up("a", 0, 600_000)],
        1_000_000_000,
        i64::MAX,
        None,
    )
    .await;
    let q = start_querier(&[&c1.addr, &c2.addr, &late.addr], |_| {}).await;
    q.wait_stores(3).await;

    let (status, v) = q.query("up{cluster=\"c2\"}", 300.0, "").await;
    assert_eq!(status, 200, "{v}");
    let r = result(&v);
    assert_eq!(r.len(), 1, "{v}");
    assert_eq!(r[0]["metric"]["cluster"], "c2");
    assert_eq!(
        c1.state.series_calls.load(Ordering::Relaxed),
        0,
        "c1 contradicts cluster=c2"
    );
    assert_eq!(c2.state.series_calls.load(Ordering::Relaxed), 1);
    assert_eq!(
        late.state.series_calls.load(Ordering::Relaxed),
        0,
        "outside the time range"
    );

    // Regex matchers prune too; both remaining clusters answer, sorted.
    let (_, v) = q.query("up{cluster=~\"c1|c2\"}", 300.0, "").await;
    let clusters: Vec<String> = result(&v)
        .iter()
        .map(|s| s["metric"]["cluster"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(clusters, vec!["c1", "c2"]);
    assert_eq!(c1.state.series_calls.load(Ordering::Relaxed), 1);
    assert_eq!(late.state.series_calls.load(Ordering::Relaxed), 0);

    // storeMatch[] (Thanos' storeMatchDebugMetadata) selects stores by
    // `__address__` only: a matcher on an external label is ignored.
    let clusters_of = |v: &serde_json::Value| -> Vec<String> {
        result(v)
            .iter()
            .map(|s| s["metric"]["cluster"].as_str().unwrap().to_string())
            .collect()
    };
    let store_match = |sets: &[&str]| -> String {
        sets.iter()
            .map(|s| format!("&storeMatch[]={}", urlencode(s)))
            .collect()
    };
    let (status, v) = q
        .query(
            "up",
            300.0,
            &store_match(&[&format!("{{__address__=\"{}\"}}", c1.addr)]),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(clusters_of(&v), vec!["c1"], "{v}");
    // Sets are ORed; a regex on the address works as on any label.
    let (_, v) = q
        .query(
            "up",
            300.0,
            &store_match(&[
                &format!("{{__address__=\"{}\"}}", c1.addr),
                &format!("{{__address__=~\"{}|nothing\"}}", c2.addr),
            ]),
        )
        .await;
    assert_eq!(clusters_of(&v), vec!["c1", "c2"], "{v}");
    // Other labels in a set do not restrict it (as in Thanos).
    let (_, v) = q
        .query("up", 300.0, &store_match(&["{cluster=\"c1\"}"]))
        .await;
    assert_eq!(clusters_of(&v), vec!["c1", "c2"], "{v}");
    let (_, v) = q
        .query(
            "up",
            300.0,
            &store_match(&[&format!("{{cluster=\"c2\",__address__=\"{}\"}}", c1.addr)]),
        )
        .await;
    assert_eq!(clusters_of(&v), vec!["c1"], "{v}");
    // No store matches: an empty answer, not an error.
    let (status, v) = q
        .query("up", 300.0, &store_match(&["{__address__=\"nowhere:1\"}"]))
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(result(&v).is_empty(), "{v}");
    q.q.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_data_from_two_stores_merges_into_one_series() {
    // A sidecar and a store gateway over the same block: same labels, same chunks.
    let s = up("a", 0, 3_600_000);
    let a = start_store(&[("cluster", "c1")], vec![s.clone()]).await;
    let b = start_store(&[("cluster", "c1")], vec![s]).await;
    let q = start_querier(&[&a.addr, &b.addr], |_| {}).await;
    q.wait_stores(2).await;
    let (status, v) = q.query("count_over_time(up[1h])", 3600.0, "").await;
    assert_eq!(status, 200, "{v}");
    let r = result(&v);
    assert_eq!(r.len(), 1, "{v}");
    // 240 samples in (0, 3600s]: duplicates were dropped, not double counted.
    assert_eq!(r[0]["value"][1], "240");
    q.q.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_response_warns_or_fails_naming_the_store() {
    let ok = start_store(&[("cluster", "c1")], vec![up("a", 0, 600_000)]).await;
    let bad = start_store(&[("cluster", "c2")], vec![up("a", 0, 600_000)]).await;
    let q = start_querier(&[&ok.addr, &bad.addr], |_| {}).await;
    q.wait_stores(2).await;
    bad.state.fail.store(true, Ordering::Relaxed);

    let (status, v) = q.query("up", 300.0, "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(result(&v).len(), 1);
    let w = warnings(&v);
    assert_eq!(w.len(), 1, "{v}");
    assert!(
        w[0].contains(&bad.addr) && w[0].contains("test store is failing"),
        "{w:?}"
    );

    let (status, v) = q.query("up", 300.0, "&partial_response=false").await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["status"], "error");
    let err = v["error"].as_str().unwrap();
    assert!(err.contains(&bad.addr), "{err}");
    q.q.shutdown().await.unwrap();

    // Off by flag too.
    let q = start_querier(&[&ok.addr, &bad.addr], |c| c.partial_response = false).await;
    q.wait_stores(2).await;
    let (status, _) = q.query("up", 300.0, "").await;
    assert_eq!(status, 422);
    let (status, v) = q.query("up", 300.0, "&partial_response=true").await;
    assert_eq!(status, 200, "{v}");
    q.q.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_store_times_out_into_a_warning() {
    let fast = start_store(&[("cluster", "c1")], vec![up("a", 0, 600_000)]).await;
    let slow = start_store(&[("cluster", "c2")], vec![up("a", 0, 600_000)]).await;
    let q = start_querier(&[&fast.addr, &slow.addr], |c| {
        c.response_timeout = Some(Duration::from_millis(300));
    })
    .await;
    q.wait_stores(2).await;
    *slow.state.delay.lock() = Duration::from_secs(5);
    let started = std::time::Instant::now();
    let (status, v) = q.query("up", 300.0, "").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "did not time out early"
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(result(&v).len(), 1);
    let w = warnings(&v);
    assert!(
        w.iter()
            .any(|w| w.contains(&slow.addr) && w.contains("within")),
        "{w:?}"
    );
    q.q.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_limit_fails_the_query() {
    let series: Vec<TestSeries> = (0..20).map(|i| up(&format!("j{i}"), 0, 600_000)).collect();
    let s = start_store(&[("cluster", "c1")], series).await;
    let q = start_querier(&[&s.addr], |c| c.max_series = 10).await;
    q.wait_stores(1).await;
    let (status, v) = q.query("up", 300.0, "").await;
    // A select failure: Prometheus' and Thanos' `execution` (422).
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["errorType"], "execution");
    assert!(
        v["error"].as_str().unwrap().contains("--query.max-series"),
        "{v}"
    );
    let (status, v) = q.query("up{job=\"j1\"}", 300.0, "").await;
    assert_eq!(status, 200, "{v}");
    q.q.shutdown().await.unwrap();

    // The sample budget.
    let q = start_querier(&[&s.addr], |c| c.max_samples = 100).await;
    q.wait_stores(1).await;
    let (status, v) = q.query("count_over_time(up[10m])", 600.0, "").await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["errorType"], "execution");
    assert!(
        v["error"].as_str().unwrap().contains("too many samples"),
        "{v}"
    );
    q.q.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_endpoints_stores_and_metrics() {
    let c1 = start_store(
        &[("cluster", "c1")],
        vec![
            up("a", 0, 600_000),
            ts(
                &[("__name__", "mem"), ("pod", "p1")],
                samples(0, 600_000, 15_000, |_| 5.0),
            ),
        ],
    )
    .await;
    let c2 = start_store(&[("cluster", "c2")], vec![up("b", 0, 600_000)]).await;
    let q = start_querier(&[&c1.addr, &c2.addr], |_| {}).await;
    q.wait_stores(2).await;

    let (status, v) = q.get_json("/api/v1/labels").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["data"],
        serde_json::json!(["__name__", "cluster", "job", "pod"])
    );
    let (_, v) = q.get_json("/api/v1/label/cluster/values").await;
    assert_eq!(v["data"], serde_json::json!(["c1", "c2"]));
    let (_, v) = q
        .get_json(&format!(
            "/api/v1/label/job/values?match[]={}",
            urlencode("up{cluster=\"c2\"}")
        ))
        .await;
    assert_eq!(v["data"], serde_json::json!(["b"]));
    let (_, v) = q
        .get_json(&format!(
            "/api/v1/series?match[]={}&start=0&end=600",
            urlencode("{__name__=~\"up|mem\"}")
        ))
        .await;
    let series = v["data"].as_array().unwrap();
    assert_eq!(series.len(), 3, "{v}");
    assert_eq!(
        series[0],
        serde_json::json!({"__name__": "mem", "cluster": "c1", "pod": "p1"})
    );

    let (_, v) = q.get_json("/api/v1/stores").await;
    let sidecars = v["data"]["sidecar"].as_array().unwrap();
    assert_eq!(sidecars.len(), 2);
    let names: Vec<&str> = sidecars
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&c1.addr.as_str()) && names.contains(&c2.addr.as_str()));
    let s0 = sidecars
        .iter()
        .find(|s| s["name"] == c1.addr.as_str())
        .unwrap();
    assert_eq!(s0["labelSets"], serde_json::json!([{"cluster": "c1"}]));
    assert_eq!(s0["lastError"], serde_json::Value::Null);
    assert_eq!(s0["minTime"], i64::MIN);
    assert!(s0["lastCheck"].as_str().unwrap().ends_with('Z'));

    let (_, v) = q.get_json("/api/v1/status/buildinfo").await;
    let version = v["data"]["version"].as_str().unwrap();
    assert_eq!(version.split('.').count(), 3, "semver: {version}");
    assert!(v["data"].get("features").is_none());

    let (status, text) = q.get_text("/-/ready").await;
    assert_eq!(status, 200);
    assert!(text.contains("Ready"));
    let (status, html) = q.get_text("/").await;
    assert_eq!(status, 200);
    assert!(html.contains("<html"));

    let (status, metrics) = q.get_text("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains(&format!(
            "strata_querier_endpoint_up{{component=\"sidecar\",endpoint=\"{}\"}} 1",
            c1.addr
        )),
        "{metrics}"
    );
    assert!(metrics.contains("strata_querier_endpoints{state=\"active\"} 2"));
    assert!(
        metrics.contains("http_requests_total{code=\"200\",handler=\"/api/v1/labels\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("http_request_duration_seconds_count{handler=\"/api/v1/series\"} 1"));
    assert!(metrics.contains("strata_querier_endpoint_requests_total{endpoint="));
    q.q.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_carries_thanos_parameters() {
    let s = start_store(
        &[("cluster", "c1"), ("replica", "r0")],
        vec![up("a", 0, 600_000)],
    )
    .await;
    let q = start_querier(&[&s.addr], |c| c.replica_labels = vec!["replica".into()]).await;
    q.wait_stores(1).await;

    let (status, v) = q
        .query_range(
            "rate(up[5m])",
            300.0,
            600.0,
            50.0,
            "&max_source_resolution=auto",
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let req = s.state.last_request.lock().clone().unwrap();
    assert_eq!(req.max_resolution_window, 10_000, "auto = step / 5");
    assert_eq!(
        req.aggregates,
        vec![strata_proto::thanos::Aggr::Counter as i32]
    );
    assert_eq!(req.without_replica_labels, vec!["replica".to_string()]);
    assert_eq!(req.query_hints.unwrap().func.unwrap().name, "rate");
    // The replica label is gone from the answer.
    assert!(result(&v)[0]["metric"].get("replica").is_none());

    q.query("up", 300.0, "&dedup=false&max_source_resolution=1h")
        .await;
    let req = s.state.last_request.lock().clone().unwrap();
    assert!(req.without_replica_labels.is_empty());
    assert_eq!(req.max_resolution_window, 3_600_000);

    let (status, v) = q.query("up", 300.0, "&dedup=maybe").await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["errorType"], "bad_data");
    let (status, _) = q.query("up", 300.0, "&max_source_resolution=-5m").await;
    assert_eq!(status, 400);
    q.q.shutdown().await.unwrap();
}
