//! The ScrapeManager end to end: loops on a short interval, reloads,
//! file_sd, and the targets snapshot.

use strata_scrape::api::Health;
use strata_scrape::config::Config;
use strata_scrape::{is_stale_nan, ScrapeManager};

use crate::util::*;

fn static_job(name: &str, interval: &str, targets: &[String]) -> String {
    let t: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    format!(
        "- job_name: {name}\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n  static_configs:\n  - targets: [{}]\n",
        t.join(", ")
    )
}

fn config(jobs: &[String]) -> Config {
    Config::load(&format!("scrape_configs:\n{}", jobs.concat())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loops_scrape_and_reload_diffs_targets() {
    let a = TestServer::start().await;
    let b = TestServer::start().await;
    a.set("/metrics", Route::text("from_a 1\n"));
    b.set("/metrics", Route::text("from_b 2\n"));
    let (db, _dir) = open_db();
    let m = ScrapeManager::new(db.clone());
    let (ha, hb) = (a.host(), b.host());

    m.apply_config(config(&[static_job(
        "j",
        "100ms",
        &[ha.clone(), hb.clone()],
    )]))
    .await
    .unwrap();
    // Both targets get scraped repeatedly.
    eventually(10, "both targets up twice", || {
        let ua = samples(&db, "up", &[("instance", &ha)]);
        let ub = samples(&db, "up", &[("instance", &hb)]);
        (ua.len() >= 2 && ub.len() >= 2).then_some(())
    })
    .await;
    assert!(samples(&db, "from_a", &[("job", "j")])
        .iter()
        .all(|s| s.1 == 1.0));

    let snap = m.targets();
    assert_eq!(snap.active_targets.len(), 2);
    let ta = snap
        .active_targets
        .iter()
        .find(|t| t.labels["instance"] == ha)
        .unwrap();
    assert_eq!(ta.scrape_pool, "j");
    assert_eq!(ta.scrape_url, format!("http://{ha}/metrics"));
    assert_eq!(ta.health, Health::Up);
    assert_eq!(ta.scrape_interval, "100ms");
    assert_eq!(ta.discovered_labels["__address__"], ha);
    assert_ne!(ta.last_scrape, "0001-01-01T00:00:00Z");
    let json = serde_json::to_value(&snap).unwrap();
    assert_eq!(json["activeTargets"][0]["health"], "up");

    // Reload without b: b's series go stale (report series included), a's
    // loop keeps running undisturbed.
    m.apply_config(config(&[static_job(
        "j",
        "100ms",
        std::slice::from_ref(&ha),
    )]))
    .await
    .unwrap();
    for name in [
        "from_b",
        "up",
        "scrape_duration_seconds",
        "scrape_series_added",
    ] {
        let s = samples(&db, name, &[("instance", &hb)]);
        assert!(
            is_stale_nan(s.last().unwrap().1),
            "{name} stale after removal"
        );
    }
    let snap = m.targets();
    assert_eq!(snap.active_targets.len(), 1);
    assert_eq!(
        snap.active_targets[0].health,
        Health::Up,
        "kept loop keeps its status"
    );
    let n = samples(&db, "up", &[("instance", &ha)]).len();
    eventually(10, "a still scraped", || {
        (samples(&db, "up", &[("instance", &ha)]).len() > n).then_some(())
    })
    .await;

    // A bad config (unreadable CA file) is rejected and changes nothing.
    let bad = Config::load(&format!(
        "scrape_configs:\n- job_name: other\n  scheme: https\n  tls_config:\n    ca_file: /nonexistent/ca.pem\n  static_configs:\n  - targets: ['{hb}']\n"
    ))
    .unwrap();
    let err = m.apply_config(bad).await.unwrap_err();
    assert_eq!(err.job, "other");
    assert!(err.message.contains("ca.pem"), "{err}");
    assert_eq!(m.targets().active_targets.len(), 1);
    assert_eq!(m.config().unwrap().scrape_configs[0].job_name, "j");

    // Removing the job stops everything with stale markers.
    m.apply_config(config(&[])).await.unwrap();
    assert!(m.targets().active_targets.is_empty());
    let up = samples(&db, "up", &[("instance", &ha)]);
    assert!(is_stale_nan(up.last().unwrap().1));
    let count = up.len();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        samples(&db, "up", &[("instance", &ha)]).len(),
        count,
        "no scrapes after removal"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_job_config_keeps_staleness_state() {
    let a = TestServer::start().await;
    a.set("/metrics", Route::text("x 1\ny 1\n"));
    let (db, _dir) = open_db();
    let m = ScrapeManager::new(db.clone());
    let ha = a.host();
    m.apply_config(config(&[static_job(
        "j",
        "100ms",
        std::slice::from_ref(&ha),
    )]))
    .await
    .unwrap();
    eventually(10, "y scraped", || {
        (!samples(&db, "y", &[]).is_empty()).then_some(())
    })
    .await;

    // New interval: the loop restarts with the old state, so dropping `y`
    // via metric relabeling marks it stale instead of leaving it hanging.
    let cfg = Config::load(&format!(
        "scrape_configs:\n- job_name: j\n  scrape_interval: 150ms\n  scrape_timeout: 150ms\n  metric_relabel_configs:\n  - source_labels: [__name__]\n    regex: y\n    action: drop\n  static_configs:\n  - targets: ['{ha}']\n"
    ))
    .unwrap();
    m.apply_config(cfg).await.unwrap();
    eventually(10, "y stale after reload", || {
        let y = samples(&db, "y", &[]);
        y.last().filter(|s| is_stale_nan(s.1)).map(|_| ())
    })
    .await;
    assert_eq!(m.targets().active_targets[0].scrape_interval, "150ms");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sd_json_and_yaml() {
    let a = TestServer::start().await;
    let b = TestServer::start().await;
    a.set("/metrics", Route::text("m 1\n"));
    b.set("/metrics", Route::text("m 2\n"));
    let (ha, hb) = (a.host(), b.host());
    let sd = tempfile::tempdir().unwrap();
    std::fs::write(
        sd.path().join("one.json"),
        format!(r#"[{{"targets": ["{ha}"], "labels": {{"team": "x"}}}}]"#),
    )
    .unwrap();
    let cfg_path = sd.path().join("prometheus.yml");
    std::fs::write(
        &cfg_path,
        concat!(
            "scrape_configs:\n- job_name: files\n  scrape_interval: 100ms\n  scrape_timeout: 100ms\n",
            "  file_sd_configs:\n  - files: ['*.json', 'extra.yml']\n    refresh_interval: 1h\n",
            "  relabel_configs:\n  - source_labels: [__meta_filepath]\n    regex: '.*/(.*)'\n    target_label: sd_file\n",
        ),
    )
    .unwrap();
    let (db, _dir) = open_db();
    let m = ScrapeManager::new(db.clone());
    m.apply_config(Config::load_file(&cfg_path).unwrap())
        .await
        .unwrap();
    eventually(10, "a scraped via file_sd", || {
        (!samples(
            &db,
            "m",
            &[("instance", &ha), ("team", "x"), ("sd_file", "one.json")],
        )
        .is_empty())
        .then_some(())
    })
    .await;

    // A YAML file appears; polling now (instead of after refresh_interval)
    // picks it up.
    std::fs::write(
        sd.path().join("extra.yml"),
        format!("- targets: ['{hb}']\n"),
    )
    .unwrap();
    assert!(m.refresh_file_sd().await);
    eventually(10, "b scraped via file_sd", || {
        (!samples(&db, "m", &[("instance", &hb), ("sd_file", "extra.yml")]).is_empty())
            .then_some(())
    })
    .await;
    assert_eq!(m.targets().active_targets.len(), 2);

    // A broken file keeps its previous targets.
    std::fs::write(sd.path().join("extra.yml"), "- targets: [\n").unwrap();
    m.refresh_file_sd().await;
    assert_eq!(m.targets().active_targets.len(), 2);

    // A removed file drops its targets, with stale markers.
    std::fs::remove_file(sd.path().join("extra.yml")).unwrap();
    assert!(m.refresh_file_sd().await);
    assert_eq!(m.targets().active_targets.len(), 1);
    let mb = samples(&db, "m", &[("instance", &hb)]);
    assert!(is_stale_nan(mb.last().unwrap().1));
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_targets_and_failures_are_reported() {
    let a = TestServer::start().await;
    let (db, _dir) = open_db();
    let m = ScrapeManager::new(db.clone());
    let ha = a.host();
    let cfg = Config::load(&format!(
        concat!(
            "scrape_configs:\n- job_name: j\n  scrape_interval: 100ms\n  scrape_timeout: 100ms\n",
            "  metrics_path: /missing\n",
            "  relabel_configs:\n  - source_labels: [__address__]\n    regex: 'drop.*'\n    action: drop\n",
            "  static_configs:\n  - targets: ['{}', 'drop-me:1']\n",
        ),
        ha
    ))
    .unwrap();
    m.apply_config(cfg).await.unwrap();
    let snap = eventually(10, "target down", || {
        let s = m.targets();
        (s.active_targets.len() == 1 && s.active_targets[0].health == Health::Down).then_some(s)
    })
    .await;
    assert_eq!(
        snap.active_targets[0].last_error,
        "server returned HTTP status 404 Not Found"
    );
    assert_eq!(snap.dropped_targets.len(), 1);
    assert_eq!(
        snap.dropped_targets[0].discovered_labels["__address__"],
        "drop-me:1"
    );
    assert_eq!(snap.dropped_targets[0].discovered_labels["job"], "j");
    assert!(samples(&db, "up", &[("instance", &ha)])
        .iter()
        .all(|s| s.1 == 0.0));
    m.stop().await;
}
