//! Replica deduplication through the HTTP API: an HA pair where one
//! replica misses a time range, counters that differ between replicas.

use crate::*;

/// Replica `b` scrapes at 14s, 29s, … (1s before `a`) and so is the one
/// the merge starts on, but misses (600s, 900s); replica `a` scrapes at 0,
/// 15s, … throughout. `b`'s counter is 1000 ahead of `a`'s (it has been
/// running longer), so switching from `b` to `a` goes down.
async fn ha_pair() -> (RunningStore, RunningStore) {
    let gauge = |offset: i64, v: f64, gap: bool| {
        let s: Vec<(i64, f64)> = samples(offset, 1_800_000, 15_000, |_| v)
            .into_iter()
            .filter(|(t, _)| !gap || *t <= 600_000 || *t >= 900_000)
            .collect();
        ts(&[("__name__", "node_load"), ("instance", "n1")], s)
    };
    let counter = |offset: i64, base: f64, gap: bool| {
        let s: Vec<(i64, f64)> = samples(offset, 1_800_000, 15_000, |t| base + (t / 1000) as f64)
            .into_iter()
            .filter(|(t, _)| !gap || *t <= 600_000 || *t >= 900_000)
            .collect();
        ts(&[("__name__", "requests_total"), ("instance", "n1")], s)
    };
    let a = start_store(
        &[("cluster", "c1"), ("replica", "a")],
        vec![gauge(0, 1.0, false), counter(0, 0.0, false)],
    )
    .await;
    let b = start_store(
        &[("cluster", "c1"), ("replica", "b")],
        vec![gauge(14_000, 2.0, true), counter(14_000, 1000.0, true)],
    )
    .await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_pair_deduplicates_without_gaps() {
    let (a, b) = ha_pair().await;
    let q = start_querier(&[&a.addr, &b.addr], |c| {
        c.replica_labels = vec!["replica".into()]
    })
    .await;
    q.wait_stores(2).await;

    // Lookback 1m, shorter than the 5m hole, so a hole would show.
    let (status, v) = q
        .query_range("node_load", 60.0, 1800.0, 15.0, "&lookback_delta=1m")
        .await;
    assert_eq!(status, 200, "{v}");
    let r = result(&v);
    assert_eq!(r.len(), 1, "one series per target: {v}");
    assert_eq!(
        r[0]["metric"],
        serde_json::json!({"__name__": "node_load", "cluster": "c1", "instance": "n1"})
    );
    let values = r[0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 117, "a point at every step");
    // Both replicas contributed: b (earliest samples) before its hole, a in
    // and after it (the penalty keeps the merge on a).
    assert_eq!(values[0][1], "2");
    assert_eq!(values[values.len() - 1][1], "1");

    // dedup=false shows both replicas with their labels.
    let (_, v) = q
        .query_range(
            "node_load",
            60.0,
            1800.0,
            15.0,
            "&dedup=false&lookback_delta=1m",
        )
        .await;
    let r = result(&v);
    assert_eq!(r.len(), 2, "{v}");
    assert_eq!(r[0]["metric"]["replica"], "a");
    assert_eq!(r[1]["metric"]["replica"], "b");
    // Replica b alone has the hole.
    assert_eq!(r[0]["values"].as_array().unwrap().len(), 117);
    assert!(r[1]["values"].as_array().unwrap().len() < 117);
    q.q.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_labels_parameter_and_counters() {
    let (a, b) = ha_pair().await;
    // No --query.replica-label: without the parameter there is no dedup.
    let q = start_querier(&[&a.addr, &b.addr], |_| {}).await;
    q.wait_stores(2).await;
    let (_, v) = q.query("node_load", 1800.0, "").await;
    assert_eq!(result(&v).len(), 2);

    let (status, v) = q
        .query_range(
            "rate(requests_total[1m])",
            120.0,
            1800.0,
            15.0,
            "&replicaLabels[]=replica",
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let r = result(&v);
    assert_eq!(r.len(), 1, "{v}");
    let points = r[0]["values"].as_array().unwrap();
    let mut near_one = 0;
    for p in points {
        let rate: f64 = p[1].as_str().unwrap().parse().unwrap();
        // Both counters grow 1/s. Switching from replica b (1000 ahead) to a
        // must not look like a counter reset (that would be a spike of
        // about 1600/60 per second). At the switch the adjusted value equals
        // a's last one, so a window holding only those two samples is 0.
        assert!((0.0..=1.5).contains(&rate), "rate {rate} at {}: {v}", p[0]);
        if (rate - 1.0).abs() < 0.05 {
            near_one += 1;
        }
    }
    assert!(near_one * 10 >= points.len() * 9, "{v}");
    // increase over the whole range is the growth, not inflated by a reset.
    let (_, v) = q
        .query(
            "increase(requests_total[30m])",
            1800.0,
            "&replicaLabels[]=replica",
        )
        .await;
    let inc: f64 = result(&v)[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!((1500.0..=1900.0).contains(&inc), "increase {inc}");
    q.q.shutdown().await.unwrap();
}
