//! `/api/v1/metadata` and `/api/v1/targets/metadata`: strata and a real
//! Prometheus 2.42 scrape the same local exporter (Prometheus text and
//! OpenMetrics, with HELP, TYPE and UNIT); a second strata gets the same
//! metadata only through Prometheus' remote write. All three must answer
//! the same JSON (array order aside: Prometheus builds it from Go maps).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use axum::http::header;
use axum::routing::get;
use serde_json::Value;
use strata_proto::prometheus as pb;

use crate::common::*;

const PROMETHEUS: &str = "/usr/bin/prometheus";

const TEXT: &str = "\
# HELP http_requests_total Total HTTP requests \\\\ with a backslash\\nand a newline.
# TYPE http_requests_total counter
http_requests_total{code=\"200\"} 10
http_requests_total{code=\"500\"} 1
# HELP temperature_celsius Room temperature.
# TYPE temperature_celsius gauge
temperature_celsius 21.5
# HELP req_duration_seconds Request latency.
# TYPE req_duration_seconds histogram
req_duration_seconds_bucket{le=\"0.1\"} 1
req_duration_seconds_bucket{le=\"+Inf\"} 2
req_duration_seconds_sum 0.3
req_duration_seconds_count 2
# TYPE rpc_seconds summary
rpc_seconds{quantile=\"0.5\"} 0.2
rpc_seconds_sum 1
rpc_seconds_count 5
# HELP only_help A family with help and no type.
only_help 1
# TYPE declared_untyped untyped
declared_untyped 4
no_metadata_at_all 3
";

const OPENMETRICS: &str = "\
# TYPE om_memory_bytes gauge
# UNIT om_memory_bytes bytes
# HELP om_memory_bytes Memory in use.
om_memory_bytes 1024
# TYPE om_events counter
# HELP om_events Events seen.
om_events_total 5
# TYPE om_build info
# HELP om_build Build information.
om_build_info{version=\"1.2\"} 1
# TYPE om_mode stateset
om_mode{om_mode=\"a\"} 1
om_mode{om_mode=\"b\"} 0
# TYPE om_latency_seconds histogram
# UNIT om_latency_seconds seconds
om_latency_seconds_bucket{le=\"1.0\"} 3
om_latency_seconds_bucket{le=\"+Inf\"} 4
om_latency_seconds_count 4
om_latency_seconds_sum 2.5
# EOF
";

/// Serves `/metrics` (text 0.0.4) and `/om` (OpenMetrics 1.0).
async fn exporter() -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    TEXT,
                )
            }),
        )
        .route(
            "/om",
            get(|| async {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    OPENMETRICS,
                )
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind exporter");
    let addr = l.local_addr().expect("addr").to_string();
    let h = tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (addr, h)
}

fn scrape_config(exporter: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: text\n    static_configs:\n      - targets: ['{exporter}']\n\
         \x20 - job_name: om\n    metrics_path: /om\n    static_configs:\n      - targets: ['{exporter}']\n"
    )
}

/// `data` with every array sorted, so Go's map order does not matter.
fn normalized(mut v: Value) -> Value {
    fn sort(v: &mut Value) {
        match v {
            Value::Array(a) => {
                a.iter_mut().for_each(sort);
                a.sort_by_key(|x| x.to_string());
            }
            Value::Object(o) => o.values_mut().for_each(sort),
            _ => {}
        }
    }
    sort(&mut v);
    v
}

async fn get_data(http: &reqwest::Client, url: &str) -> Option<Value> {
    let text = http.get(url).send().await.ok()?.text().await.ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    (v["status"] == "success").then(|| normalized(v["data"].clone()))
}

/// Kills the child when the test ends, however it ends.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_matches_prometheus_for_scrapes_and_remote_write() {
    if !Path::new(PROMETHEUS).exists() {
        eprintln!("note: {PROMETHEUS} not found; skipping the metadata interop test");
        return;
    }
    let (exp, _exp_task) = exporter().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let strata_cfg = dir.path().join("strata.yml");
    std::fs::write(&strata_cfg, scrape_config(&exp)).expect("write");
    let scraper = TestServer::start(|o| o.config_file = Some(strata_cfg.clone())).await;
    // Fed by Prometheus' remote write only.
    let receiver = TestServer::start(|_| {}).await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "{}remote_write:\n  - url: {}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n    \
             metadata_config:\n      send: true\n      send_interval: 1s\n",
            scrape_config(&exp),
            receiver.base
        ),
    )
    .expect("write");
    let log_path = dir.path().join("prometheus.log");
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", prom_cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("prom-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log"))
        .spawn()
        .expect("start prometheus");
    let _guard = Kill(child);
    let prom = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    // Every family with a metadata line, from both jobs, everywhere.
    let complete = |v: &Value| {
        [
            "om_memory_bytes",
            "http_requests_total",
            "only_help",
            "om_mode",
        ]
        .iter()
        .all(|f| v.get(*f).is_some())
    };
    let (want, got, remote) = eventually(
        "metadata in Prometheus and both strata servers",
        Duration::from_secs(90),
        || async {
            let p = get_data(&http, &format!("{prom}/api/v1/metadata")).await?;
            let s = get_data(&http, &scraper.url("/api/v1/metadata")).await?;
            let r = get_data(&http, &receiver.url("/api/v1/metadata")).await?;
            (complete(&p) && complete(&s) && complete(&r)).then_some((p, s, r))
        },
    )
    .await;
    assert_eq!(got, want, "scraped metadata differs from Prometheus'");
    assert_eq!(
        remote, want,
        "remote-written metadata differs from Prometheus'"
    );
    // Spot checks, so equality is not of two equally wrong answers.
    assert_eq!(
        want["om_memory_bytes"],
        serde_json::json!([{"type": "gauge", "help": "Memory in use.", "unit": "bytes"}])
    );
    assert_eq!(want["only_help"][0]["type"], "unknown");
    assert_eq!(want["declared_untyped"][0]["type"], "unknown");
    assert_eq!(
        want["http_requests_total"][0]["help"],
        "Total HTTP requests \\ with a backslash\nand a newline."
    );
    assert!(want.get("no_metadata_at_all").is_none());

    for q in [
        "/api/v1/metadata?metric=req_duration_seconds",
        "/api/v1/metadata?metric=nope",
        "/api/v1/targets/metadata?match_target={job=\"om\"}",
        "/api/v1/targets/metadata?metric=om_events",
        "/api/v1/targets/metadata?match_target={job=\"text\"}&metric=temperature_celsius",
    ] {
        let path = q
            .replace('{', "%7B")
            .replace('}', "%7D")
            .replace('"', "%22");
        let p = get_data(&http, &format!("{prom}{path}")).await.expect(q);
        let s = get_data(&http, &scraper.url(&path)).await.expect(q);
        assert_eq!(s, p, "{q}");
        let empty = p
            .as_array()
            .map(Vec::is_empty)
            .unwrap_or_else(|| p == serde_json::json!({}));
        assert_eq!(empty, q.contains("nope"), "{q}: {p}");
    }
    // Prometheus' 2.42 limit semantics: whole targets until the limit is hit.
    let s = get_data(&http, &scraper.url("/api/v1/targets/metadata?limit=1"))
        .await
        .expect("limit");
    assert!(s.as_array().is_some_and(|a| !a.is_empty()), "{s}");
    let (status, v) = scraper
        .get_json("/api/v1/targets/metadata?match_target=%7B")
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["errorType"], "bad_data");

    scraper.stop().await;
    receiver.stop().await;
}

#[tokio::test]
async fn remote_write_metadata_is_served() {
    let s = TestServer::start(|_| {}).await;
    let req = pb::WriteRequest {
        timeseries: Vec::new(),
        metadata: vec![
            pb::MetricMetadata {
                r#type: pb::metric_metadata::MetricType::Counter as i32,
                metric_family_name: "sent_total".into(),
                help: "Things sent.".into(),
                unit: String::new(),
            },
            pb::MetricMetadata {
                r#type: pb::metric_metadata::MetricType::Gauge as i32,
                metric_family_name: "queue_bytes".into(),
                help: "Queue size.".into(),
                unit: "bytes".into(),
            },
        ],
    };
    assert_eq!(s.post_snappy("/api/v1/write", &req).await.0, 204);
    let (status, v) = s.get_json("/api/v1/metadata").await;
    assert_eq!(status, 200);
    assert_eq!(
        v["data"],
        serde_json::json!({
            "queue_bytes": [{"type": "gauge", "help": "Queue size.", "unit": "bytes"}],
            "sent_total": [{"type": "counter", "help": "Things sent.", "unit": ""}],
        })
    );
    let (_, v) = s.get_json("/api/v1/metadata?limit=1").await;
    assert_eq!(v["data"].as_object().map(|o| o.len()), Some(1));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_metadata_goes_with_its_target() {
    let (exp, _exp_task) = exporter().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("strata.yml");
    std::fs::write(&cfg, scrape_config(&exp)).expect("write");
    let s = TestServer::start(|o| o.config_file = Some(cfg.clone())).await;
    let http = reqwest::Client::new();
    let v = eventually("scraped metadata", Duration::from_secs(30), || async {
        let v = get_data(&http, &s.url("/api/v1/metadata")).await?;
        (v.get("om_memory_bytes").is_some() && v.get("temperature_celsius").is_some()).then_some(v)
    })
    .await;
    assert_eq!(
        v["om_latency_seconds"],
        serde_json::json!([{"type": "histogram", "help": "", "unit": "seconds"}])
    );
    let t = get_data(
        &http,
        &s.url("/api/v1/targets/metadata?metric=om_memory_bytes"),
    )
    .await
    .expect("targets metadata");
    assert_eq!(t.as_array().map(Vec::len), Some(1), "{t}");
    assert_eq!(t[0]["target"]["job"], "om");
    assert!(t[0].get("metric").is_none(), "{t}");

    // Drop the "om" job: its families go, the text job's stay.
    let only_text = scrape_config(&exp);
    let only_text = &only_text[..only_text.find("  - job_name: om").expect("om job")];
    std::fs::write(&cfg, only_text).expect("write");
    s.server.reload().await.expect("reload");
    let v = get_data(&http, &s.url("/api/v1/metadata"))
        .await
        .expect("metadata");
    assert!(v.get("om_memory_bytes").is_none(), "{v}");
    assert!(v.get("temperature_celsius").is_some(), "{v}");
    s.stop().await;
}
