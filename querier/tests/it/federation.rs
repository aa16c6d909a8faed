//! A global querier over regional queriers' StoreAPI.

use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_querier_federates_regional_ones() {
    let gauge = |offset: i64, v: f64| {
        ts(
            &[("__name__", "node_load"), ("instance", "n1")],
            samples(offset, 600_000, 15_000, |_| v),
        )
    };
    // Region 1: an HA pair of cluster c1. Region 2: cluster c2.
    let a = start_store(&[("cluster", "c1"), ("replica", "a")], vec![gauge(0, 1.0)]).await;
    let b = start_store(
        &[("cluster", "c1"), ("replica", "b")],
        vec![gauge(1_000, 1.0)],
    )
    .await;
    let c = start_store(&[("cluster", "c2"), ("replica", "a")], vec![gauge(0, 2.0)]).await;
    let r1 = start_querier(&[&a.addr, &b.addr], |_| {}).await;
    let r2 = start_querier(&[&c.addr], |_| {}).await;
    r1.wait_stores(2).await;
    r2.wait_stores(1).await;

    let g1 = r1.q.grpc_addr().to_string();
    let g2 = r2.q.grpc_addr().to_string();
    let global = start_querier(&[&g1, &g2], |c| c.replica_labels = vec!["replica".into()]).await;
    global.wait_stores(2).await;

    let (_, v) = global.get_json("/api/v1/stores").await;
    let queries = v["data"]["query"].as_array().expect("component type query");
    assert_eq!(queries.len(), 2, "{v}");
    let r1_entry = queries.iter().find(|s| s["name"] == g1.as_str()).unwrap();
    assert_eq!(
        r1_entry["labelSets"],
        serde_json::json!([{"cluster": "c1", "replica": "a"}, {"cluster": "c1", "replica": "b"}])
    );

    let (status, v) = global.query("node_load", 600.0, "").await;
    assert_eq!(status, 200, "{v}");
    let r = result(&v);
    assert_eq!(r.len(), 2, "one series per cluster after dedup: {v}");
    assert_eq!(
        r[0]["metric"],
        serde_json::json!({"__name__": "node_load", "cluster": "c1", "instance": "n1"})
    );
    assert_eq!(r[1]["metric"]["cluster"], "c2");
    assert_eq!(r[1]["value"][1], "2");

    // Pruning through the regional querier's label sets: only r2 is asked.
    let (_, v) = global.query("node_load{cluster=\"c2\"}", 600.0, "").await;
    assert_eq!(result(&v).len(), 1);
    let (_, v) = global.get_json("/api/v1/label/cluster/values").await;
    assert_eq!(v["data"], serde_json::json!(["c1", "c2"]));

    // dedup=false through the federation keeps the replicas.
    let (_, v) = global.query("node_load", 600.0, "&dedup=false").await;
    assert_eq!(result(&v).len(), 3, "{v}");

    // A regional querier going away is a named warning at the global one.
    r2.q.shutdown().await.unwrap();
    let (status, v) = global.query("node_load", 600.0, "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(result(&v).len(), 1);
    assert!(warnings(&v).iter().any(|w| w.contains(&g2)), "{v}");
    global.q.shutdown().await.unwrap();
    r1.q.shutdown().await.unwrap();
}
