//! Scrape loops against a real HTTP server, into a real Db.

use std::sync::Arc;
use std::time::Duration;

use strata_scrape::config::Config;
use strata_scrape::discovery::TargetGroup;
use strata_scrape::http::{HttpClient, ACCEPT_HEADER};
use strata_scrape::scrape_loop::{now_ms, Health};
use strata_scrape::target::targets_from_groups;
use strata_scrape::{is_stale_nan, LoopOptions, ScrapeLoop};
use strata_tsdb::db::Db;

use crate::util::*;

const BODY: &str = "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\nhttp_requests_total{code=\"200\"} 10\nhttp_requests_total{code=\"500\"} 2\n# TYPE temp gauge\ntemp 21.5\n";

/// A loop for the one target `server` at `path`, with extra job YAML.
fn make_loop(db: &Arc<Db>, server: &TestServer, path: &str, job_yaml: &str) -> ScrapeLoop {
    let yaml = format!("scrape_configs:\n- job_name: test\n  metrics_path: {path}\n{job_yaml}");
    let cfg = Config::load(&yaml).unwrap();
    let sc = cfg.scrape_configs[0].clone();
    let group = TargetGroup {
        targets: vec![server.host()],
        target_labels: Vec::new(),
        labels: Default::default(),
        source: "0".into(),
    };
    let mut found = targets_from_groups(&[group], &sc);
    assert!(found.errors.is_empty(), "{:?}", found.errors);
    let target = found.active.remove(0);
    let opts = LoopOptions::new(&sc, &target);
    let client = HttpClient::new(&sc.http).unwrap();
    ScrapeLoop::new(target, opts, client, db.clone())
}

fn inst(server: &TestServer) -> String {
    server.host()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_text_stores_samples_and_report_series() {
    let server = TestServer::start().await;
    server.set("/metrics", Route::text(BODY));
    let (db, _dir) = open_db();
    let mut l = make_loop(&db, &server, "/metrics", "");
    let ts = now_ms();
    let r = l.scrape_at(ts).await;
    assert_eq!(r.error, None);
    assert_eq!(
        (r.samples_scraped, r.samples_post_relabel, r.series_added),
        (3, 3, 3)
    );
    let i = inst(&server);
    let who = [("job", "test"), ("instance", i.as_str())];

    let reqs = series(&db, "http_requests_total");
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[0].0,
        labels(&[
            ("__name__", "http_requests_total"),
            ("code", "200"),
            ("instance", &i),
            ("job", "test")
        ])
    );
    assert_eq!(reqs[0].1, vec![(ts, 10.0)]);
    assert_eq!(samples(&db, "temp", &who), vec![(ts, 21.5)]);
    assert_eq!(samples(&db, "up", &who), vec![(ts, 1.0)]);
    assert_eq!(
        samples(&db, "scrape_samples_scraped", &who),
        vec![(ts, 3.0)]
    );
    assert_eq!(
        samples(&db, "scrape_samples_post_metric_relabeling", &who),
        vec![(ts, 3.0)]
    );
    assert_eq!(samples(&db, "scrape_series_added", &who), vec![(ts, 3.0)]);
    let d = samples(&db, "scrape_duration_seconds", &who);
    assert_eq!(d.len(), 1);
    assert!(d[0].1 > 0.0 && d[0].1 < 10.0);
    // The up series carries exactly the target labels.
    assert_eq!(
        series(&db, "up")[0].0,
        labels(&[("__name__", "up"), ("instance", &i), ("job", "test")])
    );

    // Headers Prometheus sends.
    let seen = server.seen();
    let h = &seen[0].headers;
    assert_eq!(h.get("accept").map(String::as_str), Some(ACCEPT_HEADER));
    assert_eq!(h.get("accept-encoding").map(String::as_str), Some("gzip"));
    assert_eq!(
        h.get("x-prometheus-scrape-timeout-seconds")
            .map(String::as_str),
        Some("10")
    );
    assert!(h
        .get("user-agent")
        .is_some_and(|u| u.starts_with("Strata/")));

    // Second scrape: same series, no new ones.
    let r2 = l.scrape_at(ts + 1000).await;
    assert_eq!(r2.series_added, 0);
    assert_eq!(
        samples(&db, "temp", &who),
        vec![(ts, 21.5), (ts + 1000, 21.5)]
    );
    assert_eq!(
        samples(&db, "scrape_series_added", &who),
        vec![(ts, 3.0), (ts + 1000, 0.0)]
    );
    let st = l.status();
    assert_eq!(st.health, Health::Up);
    assert!(st.last_scrape.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_params() {
    let server = TestServer::start().await;
    let mut r = Route::text(BODY);
    r.gzip = true;
    server.set("/gz", r);
    let (db, _dir) = open_db();
    let mut l = make_loop(&db, &server, "/gz", "  params:\n    module: [http_2xx]\n");
    let ts = now_ms();
    let rep = l.scrape_at(ts).await;
    assert_eq!(rep.error, None);
    assert_eq!(rep.samples_scraped, 3);
    assert_eq!(samples(&db, "temp", &[]), vec![(ts, 21.5)]);
    assert_eq!(server.seen()[0].path_and_query, "/gz?module=http_2xx");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmetrics_and_honor_timestamps() {
    let server = TestServer::start().await;
    let now = now_ms();
    let explicit_s = (now - 5000) as f64 / 1000.0;
    let body = format!("# TYPE a counter\na_total 1 {explicit_s}\n# TYPE b gauge\nb 2\n# EOF\n");
    let mut r = Route::text(&body);
    r.content_type = OPENMETRICS.into();
    server.set("/om", r);

    let (db, _dir) = open_db();
    let mut l = make_loop(&db, &server, "/om", "");
    let rep = l.scrape_at(now).await;
    assert_eq!(rep.error, None);
    let a = samples(&db, "a_total", &[]);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].0, now - 5000, "explicit timestamp honored");
    assert_eq!(samples(&db, "b", &[]), vec![(now, 2.0)]);

    // honor_timestamps: false uses the scrape time.
    let (db2, _dir2) = open_db();
    let mut l2 = make_loop(&db2, &server, "/om", "  honor_timestamps: false\n");
    l2.scrape_at(now).await;
    assert_eq!(samples(&db2, "a_total", &[]), vec![(now, 1.0)]);

    // Without the `# EOF` the OpenMetrics parser fails the scrape.
    let mut bad = Route::text("b 2\n");
    bad.content_type = OPENMETRICS.into();
    server.set("/om", bad);
    let rep = l2.scrape_at(now + 1000).await;
    assert!(rep.error.is_some());
    assert_eq!(
        samples(&db2, "up", &[]),
        vec![(now, 1.0), (now + 1000, 0.0)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honor_labels_conflicts() {
    let server = TestServer::start().await;
    server.set(
        "/m",
        Route::text("m{job=\"exposed\",instance=\"x\"} 1\nn{exported_job=\"e\",job=\"j2\"} 2\n"),
    );
    let i = server.host();

    let (db, _dir) = open_db();
    let mut l = make_loop(&db, &server, "/m", "");
    let ts = now_ms();
    assert_eq!(l.scrape_at(ts).await.error, None);
    assert_eq!(
        series(&db, "m")[0].0,
        labels(&[
            ("__name__", "m"),
            ("exported_instance", "x"),
            ("exported_job", "exposed"),
            ("instance", &i),
            ("job", "test"),
        ])
    );
    // exported_job is taken by the exposed label: the clash goes one deeper.
    assert_eq!(
        series(&db, "n")[0].0,
        labels(&[
            ("__name__", "n"),
            ("exported_exported_job", "j2"),
            ("exported_job", "e"),
            ("instance", &i),
            ("job", "test"),
        ])
    );

    let (db2, _dir2) = open_db();
    let mut l2 = make_loop(&db2, &server, "/m", "  honor_labels: true\n");
    assert_eq!(l2.scrape_at(ts).await.error, None);
    assert_eq!(
        series(&db2, "m")[0].0,
        labels(&[("__name__", "m"), ("instance", "x"), ("job", "exposed")])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_relabel_drop_and_rewrite() {
    let server = TestServer::start().await;
    server.set("/metrics", Route::text(BODY));
    let (db, _dir) = open_db();
    let mut l = make_loop(
        &db,
        &server,
        "/metrics",
        concat!(
            "  metric_relabel_configs:\n",
            "  - source_labels: [__name__, code]\n    regex: http_requests_total;5..\n    action: drop\n",
            "  - source_labels: [__name__]\n    regex: temp\n    target_label: __name__\n    replacement: temperature_celsius\n",
        ),
    );
    let ts = now_ms();
    let r = l.scrape_at(ts).await;
    assert_eq!(r.error, None);
    assert_eq!((r.samples_scraped, r.samples_post_relabel), (3, 2));
    let reqs = series(&db, "http_requests_total");
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].0.get("code"), Some("200"));
    assert!(series(&db, "temp").is_empty());
    assert_eq!(samples(&db, "temperature_celsius", &[]), vec![(ts, 21.5)]);
    assert_eq!(
        samples(&db, "scrape_samples_post_metric_relabeling", &[]),
        vec![(ts, 2.0)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staleness_when_series_disappears_and_on_failure() {
    let server = TestServer::start().await;
    server.set("/metrics", Route::text("a 1\nb 2\n"));
    let (db, _dir) = open_db();
    let mut l = make_loop(&db, &server, "/metrics", "");
    let t0 = now_ms();
    l.scrape_at(t0).await;
    server.set("/metrics", Route::text("a 1\n"));
    let r = l.scrape_at(t0 + 1000).await;
    assert_eq!(r.error, None);
    assert_eq!(r.stale_markers, 1);
    let b = samples(&db, "b", &[]);
    assert_eq!(b.len(), 2);
    assert_eq!(b[0], (t0, 2.0));
    assert_eq!(b[1].0, t0 + 1000);
    assert!(is_stale_nan(b[1].1), "stale marker bits");
    assert_eq!(b[1].1.to_bits(), 0x7ff0000000000002);
    // b comes back: an ordinary sample follows the marker.
    server.set("/metrics", Route::text("a 1\nb 3\n"));
    l.scrape_at(t0 + 2000).await;
    assert_eq!(samples(&db, "b", &[]).last(), Some(&(t0 + 2000, 3.0)));

    // A failing scrape marks everything stale and reports up=0.
    server.set(
        "/metrics",
        Route {
            status: 500,
            ..Route::text("oops")
        },
    );
    let r = l.scrape_at(t0 + 3000).await;
    assert_eq!(
        r.error.as_deref(),
        Some("server returned HTTP status 500 Internal Server Error")
    );
    assert_eq!(r.stale_markers, 2);
    for name in ["a", "b"] {
        let s = samples(&db, name, &[]);
        let last = s.last().unwrap();
        assert_eq!(last.0, t0 + 3000);
        assert!(is_stale_nan(last.1), "{name}");
    }
    assert_eq!(samples(&db, "up", &[]).last(), Some(&(t0 + 3000, 0.0)));
    assert_eq!(l.status().health, Health::Down);
    assert!(l.status().last_error.contains("500"));
    // Recovery: the series come back without duplicate stale markers.
    server.set("/metrics", Route::text("a 1\n"));
    let r = l.scrape_at(t0 + 4000).await;
    assert_eq!((r.error.clone(), r.stale_markers), (None, 0));

    // The target goes away: everything, report series included, goes stale.
    let n = l.mark_stale(t0 + 5000).await;
    assert_eq!(n, 1 + 5);
    for name in [
        "a",
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    ] {
        let s = samples(&db, name, &[]);
        let last = s.last().unwrap();
        assert_eq!(last.0, t0 + 5000, "{name}");
        assert!(is_stale_nan(last.1), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_limit_fails_whole_scrape() {
    let server = TestServer::start().await;
    server.set("/metrics", Route::text("a 1\n"));
    let (db, _dir) = open_db();
    let mut l = make_loop(&db, &server, "/metrics", "  sample_limit: 2\n");
    let t0 = now_ms();
    assert_eq!(l.scrape_at(t0).await.error, None);
    server.set("/metrics", Route::text("a 1\nb 2\nc 3\n"));
    let r = l.scrape_at(t0 + 1000).await;
    assert_eq!(r.error.as_deref(), Some("sample limit exceeded"));
    assert_eq!(r.samples_scraped, 3);
    // Nothing of the failed scrape is stored; `a` goes stale.
    assert!(series(&db, "b").is_empty());
    assert!(series(&db, "c").is_empty());
    let a = samples(&db, "a", &[]);
    assert_eq!(a.len(), 2);
    assert!(is_stale_nan(a[1].1));
    assert_eq!(samples(&db, "up", &[]), vec![(t0, 1.0), (t0 + 1000, 0.0)]);
    assert_eq!(
        samples(&db, "scrape_samples_scraped", &[]).last(),
        Some(&(t0 + 1000, 3.0))
    );
    // A metric relabel drop brings it under the limit.
    let mut l2 = make_loop(
        &db,
        &server,
        "/metrics",
        "  sample_limit: 2\n  metric_relabel_configs:\n  - source_labels: [__name__]\n    regex: c\n    action: drop\n",
    );
    assert_eq!(l2.scrape_at(t0 + 2000).await.error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_body_limit_and_not_found() {
    let server = TestServer::start().await;
    server.set(
        "/slow",
        Route {
            delay: Duration::from_secs(5),
            ..Route::text("a 1\n")
        },
    );
    let big = "x 1\n".repeat(1000);
    server.set("/big", Route::text(&big));
    let mut gz = Route::text(&big);
    gz.gzip = true;
    server.set("/biggz", gz);
    let (db, _dir) = open_db();

    let mut l = make_loop(
        &db,
        &server,
        "/slow",
        "  scrape_interval: 1s\n  scrape_timeout: 200ms\n",
    );
    let started = std::time::Instant::now();
    let r = l.scrape_once().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    let e = r.error.unwrap();
    assert!(e.contains("context deadline exceeded"), "{e}");
    let seen = server.seen();
    assert_eq!(
        seen[0]
            .headers
            .get("x-prometheus-scrape-timeout-seconds")
            .map(String::as_str),
        Some("0.2")
    );

    let mut l = make_loop(&db, &server, "/big", "  body_size_limit: 1KB\n");
    assert_eq!(
        l.scrape_once().await.error.as_deref(),
        Some("body size limit exceeded")
    );
    // The limit applies to the decompressed size.
    let mut l = make_loop(&db, &server, "/biggz", "  body_size_limit: 1KB\n");
    assert_eq!(
        l.scrape_once().await.error.as_deref(),
        Some("body size limit exceeded")
    );
    let mut l = make_loop(&db, &server, "/biggz", "  body_size_limit: 1MB\n");
    assert_eq!(l.scrape_once().await.error, None);

    let mut l = make_loop(&db, &server, "/nope", "");
    assert_eq!(
        l.scrape_once().await.error.as_deref(),
        Some("server returned HTTP status 404 Not Found")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_headers() {
    let server = TestServer::start().await;
    server.set("/metrics", Route::text("a 1\n"));
    let (db, _dir) = open_db();
    let dir = tempfile::tempdir().unwrap();
    let tok = dir.path().join("token");
    std::fs::write(&tok, "s3cret\n").unwrap();

    let mut l = make_loop(
        &db,
        &server,
        "/metrics",
        "  basic_auth:\n    username: u\n    password: p\n",
    );
    l.scrape_once().await;
    let mut l = make_loop(
        &db,
        &server,
        "/metrics",
        &format!("  bearer_token_file: {}\n", tok.display()),
    );
    l.scrape_once().await;
    let mut l = make_loop(
        &db,
        &server,
        "/metrics",
        "  authorization:\n    type: Token\n    credentials: abc\n",
    );
    l.scrape_once().await;
    let auth: Vec<String> = server
        .seen()
        .iter()
        .map(|s| s.headers.get("authorization").cloned().unwrap_or_default())
        .collect();
    assert_eq!(auth, vec!["Basic dTpw", "Bearer s3cret", "Token abc"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_samples_are_counted_not_fatal() {
    let server = TestServer::start().await;
    server.set("/metrics", Route::text("a 1\nb 1\n"));
    let (db, _dir) = open_db();
    let mut l = make_loop(&db, &server, "/metrics", "");
    let t0 = now_ms();
    l.scrape_at(t0).await;
    server.set("/metrics", Route::text("a 2\nb 2\n"));
    // Going back in time: every sample is out of order, the scrape is up.
    let r = l.scrape_at(t0 - 1000).await;
    assert_eq!(r.error, None);
    assert_eq!(r.out_of_order, 2);
    assert_eq!(samples(&db, "a", &[]), vec![(t0, 1.0)]);
}
