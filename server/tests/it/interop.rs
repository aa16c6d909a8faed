//! The real Prometheus 2.42 remote-writing into strata, and promtool
//! querying it. Skipped (with a note) when the binaries are missing.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

/// Kills the child when the test ends, however it ends.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_remote_writes_into_strata() {
    if !Path::new(PROMETHEUS).exists() {
        eprintln!("note: {PROMETHEUS} not found; skipping the Prometheus interop test");
        return;
    }
    let s = TestServer::start(|_| {}).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n\
             remote_write:\n  - url: {}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n",
            s.base
        ),
    )
    .expect("config");
    let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    let _guard = Kill(child);

    let n = eventually(
        "prometheus samples in strata",
        Duration::from_secs(90),
        || async {
            let now = now_ms() as f64 / 1000.0;
            let up = s.query("up{job=\"prometheus\"}", now).await;
            if up.is_empty() {
                return None;
            }
            let names = s
                .query("count by (__name__) ({__name__=~\"prometheus_.+\"})", now)
                .await;
            (names.len() >= 5).then_some(names.len())
        },
    )
    .await;
    assert!(n >= 5);
    let up = s
        .query("up{job=\"prometheus\"}", now_ms() as f64 / 1000.0)
        .await;
    assert_eq!(up[0]["value"][1], "1");
    assert_eq!(up[0]["metric"]["instance"], format!("127.0.0.1:{port}"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_queries_strata() {
    if !Path::new(PROMTOOL).exists() {
        eprintln!("note: {PROMTOOL} not found; skipping the promtool test");
        return;
    }
    let s = TestServer::start(|_| {}).await;
    let now = now_ms();
    let req = write_request(vec![series(
        &[("__name__", "up"), ("job", "pt"), ("instance", "i1")],
        &[(now - 5_000, 1.0)],
    )]);
    assert_eq!(s.post_snappy("/api/v1/write", &req).await.0, 204);
    let base = s.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(PROMTOOL)
            .args(["query", "instant", &base, "up"])
            .output()
            .expect("run promtool")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The timestamp is the evaluation time (now), not the sample's.
    assert!(
        stdout.starts_with("up{instance=\"i1\", job=\"pt\"} => 1 @["),
        "{stdout}"
    );
    s.stop().await;
}
