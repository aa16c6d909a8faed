//! Federation, status, lifecycle, admin and `/metrics`.

use std::time::Duration;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federate_status_metrics_reload_admin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("strata.yml");
    std::fs::write(&cfg, "global:\n  external_labels:\n    cluster: c1\n").expect("config");
    let s = TestServer::start(|o| {
        o.config_file = Some(cfg.clone());
        o.enable_lifecycle = true;
        o.enable_admin_api = true;
    })
    .await;
    let now = now_ms();
    let req = write_request(vec![
        series(
            &[("__name__", "fed"), ("job", "x")],
            &[(now - 20_000, 1.0), (now - 10_000, 2.5)],
        ),
        series(&[("__name__", "fed"), ("job", "y")], &[(now - 10_000, 1e6)]),
        series(
            &[("__name__", "gone"), ("job", "x")],
            &[(now - 10_000, 1.0)],
        ),
    ]);
    assert_eq!(s.post_snappy("/api/v1/write", &req).await.0, 204);

    // Federation: latest sample per series, external labels added.
    let resp = s
        .http
        .get(s.url(&format!(
            "/federate?match[]={}",
            urlenc("{__name__=\"fed\"}")
        )))
        .send()
        .await
        .expect("federate");
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.expect("body");
    let expected = format!(
        "# TYPE fed untyped\nfed{{cluster=\"c1\",job=\"x\"}} 2.5 {}\nfed{{cluster=\"c1\",job=\"y\"}} 1e+06 {}\n",
        now - 10_000,
        now - 10_000
    );
    assert_eq!(text, expected);
    let resp = s
        .http
        .get(s.url("/federate?match[]=%7B"))
        .send()
        .await
        .expect("federate");
    assert_eq!(resp.status().as_u16(), 400);

    // Status: flags and config (with external labels, as a sidecar reads).
    let (status, v) = s.get_json("/api/v1/status/flags").await;
    assert_eq!(status, 200);
    assert_eq!(v["data"]["storage.tsdb.min-block-duration"], "2h");
    assert_eq!(v["data"]["web.enable-lifecycle"], "true");
    let (_, v) = s.get_json("/api/v1/status/config").await;
    let yaml = v["data"]["yaml"].as_str().unwrap_or_default().to_string();
    assert!(
        yaml.contains("external_labels:") && yaml.contains("cluster: c1"),
        "{yaml}"
    );
    let (status, v) = s.get_json("/api/v1/status/tsdb").await;
    assert_eq!(status, 200);
    assert_eq!(v["data"]["headStats"]["numSeries"], 3);

    // Reload: a bad config is rejected and the old one keeps running.
    std::fs::write(&cfg, "global: [not a map\n").expect("config");
    let resp = s
        .http
        .post(s.url("/-/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(resp.status().as_u16(), 500);
    let (_, v) = s.get_json("/api/v1/status/config").await;
    assert!(v["data"]["yaml"]
        .as_str()
        .unwrap_or_default()
        .contains("cluster: c1"));
    std::fs::write(&cfg, "global:\n  external_labels:\n    cluster: c2\n").expect("config");
    let resp = s
        .http
        .post(s.url("/-/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(resp.status().as_u16(), 200);
    let (_, v) = s.get_json("/api/v1/status/config").await;
    assert!(v["data"]["yaml"]
        .as_str()
        .unwrap_or_default()
        .contains("cluster: c2"));

    // Admin: delete a series, clean tombstones, snapshot.
    let resp = s
        .http
        .post(s.url("/api/v1/admin/tsdb/delete_series?match[]=gone"))
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status().as_u16(), 204);
    assert!(s.query("gone", now as f64 / 1000.0).await.is_empty());
    let resp = s
        .http
        .post(s.url("/api/v1/admin/tsdb/clean_tombstones"))
        .send()
        .await
        .expect("clean");
    assert_eq!(resp.status().as_u16(), 204);
    let resp = s
        .http
        .post(s.url("/api/v1/admin/tsdb/snapshot"))
        .send()
        .await
        .expect("snapshot");
    assert_eq!(resp.status().as_u16(), 200);
    let v: serde_json::Value =
        serde_json::from_str(&resp.text().await.expect("body")).expect("json");
    let name = v["data"]["name"].as_str().expect("name").to_string();
    let snap = s.dir.path().join("data/snapshots").join(&name);
    let blocks: Vec<_> = std::fs::read_dir(&snap).expect("snapshot dir").collect();
    assert_eq!(blocks.len(), 1, "the head as one block");
    let db = strata_tsdb::db::Db::open_read_only(&snap).expect("snapshot opens");
    let got = db
        .select(
            &[strata_tsdb::labels::Matcher::equal("__name__", "fed")],
            i64::MIN,
            i64::MAX,
        )
        .expect("select");
    assert_eq!(got.len(), 2);

    // /metrics reflects what happened.
    let text = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(text.contains("prometheus_tsdb_head_series 3\n"), "{text}");
    assert!(
        text.contains("strata_remote_write_samples_total 4\n"),
        "{text}"
    );
    assert!(
        text.contains("strata_config_reloads_total{result=\"failure\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("prometheus_http_requests_total{code=\"204\",handler=\"/api/v1/write\"} 1\n"),
        "{text}"
    );

    // Health and readiness.
    let r = s
        .http
        .get(s.url("/-/healthy"))
        .send()
        .await
        .expect("healthy");
    assert_eq!(r.status().as_u16(), 200);
    let r = s.http.get(s.url("/-/ready")).send().await.expect("ready");
    assert_eq!(r.status().as_u16(), 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_and_admin_disabled_by_default() {
    let s = TestServer::start(|_| {}).await;
    let r = s
        .http
        .post(s.url("/-/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status().as_u16(), 403);
    let r = s
        .http
        .post(s.url("/api/v1/admin/tsdb/snapshot"))
        .send()
        .await
        .expect("snapshot");
    assert_eq!(r.status().as_u16(), 503);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_restart() {
    let s = TestServer::start(|_| {}).await;
    let now = now_ms();
    let req = write_request(vec![series(
        &[("__name__", "durable")],
        &[(now - 1000, 42.0)],
    )]);
    assert_eq!(s.post_snappy("/api/v1/write", &req).await.0, 204);
    let TestServer { server, dir, .. } = s;
    server.shutdown().await.expect("shutdown");
    // The lock is released and the WAL replays on the next start.
    let s2 = TestServer::start(|o| o.storage_path = dir.path().join("data")).await;
    let r = eventually("replayed sample", Duration::from_secs(5), || async {
        let r = s2.query("durable", now as f64 / 1000.0).await;
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(r[0]["value"][1], "42");
    s2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_compacted_when_due() {
    let s = TestServer::start(|_| {}).await;
    let now = now_ms();
    // 4h of data at 1-minute spacing: the head spans more than 1.5 × 2h.
    let samples: Vec<(i64, f64)> = (0..=240)
        .map(|i| (now - 4 * 3_600_000 + i * 60_000, i as f64))
        .collect();
    let req = write_request(vec![series(
        &[("__name__", "long"), ("job", "c")],
        &samples,
    )]);
    assert_eq!(s.post_snappy("/api/v1/write", &req).await.0, 204);
    let db = s.server.db().clone();
    eventually("a block cut from the head", Duration::from_secs(20), || {
        let db = db.clone();
        async move { (!db.blocks().is_empty()).then_some(()) }
    })
    .await;
    // Data is still fully readable across block and head.
    let r = s
        .query("count_over_time(long[5h])", now as f64 / 1000.0)
        .await;
    assert_eq!(r[0]["value"][1], "241");
    drop(db);
    s.stop().await;
}
