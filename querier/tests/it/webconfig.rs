//! `--http.config`: the Prometheus web-config file (the format `strata tsdb`
//! reads with `--web.config.file`) on the querier's HTTP server, as Thanos'
//! flag of that name. The parsing and the TLS/auth layer are
//! `strata_promapi::webconfig`'s and are tested there and in strata-server;
//! this checks that the querier wires them in front of every route.

use std::path::PathBuf;
use std::time::Duration;

use strata_querier::{Error, Querier, QuerierConfig};

use crate::discovery::certs;

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    }
}

async fn start(http_config: PathBuf) -> Result<Querier, Error> {
    Querier::start(QuerierConfig {
        http_address: "127.0.0.1:0".into(),
        grpc_address: "127.0.0.1:0".into(),
        http_config: Some(http_config),
        ..QuerierConfig::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_basic_auth_cover_the_api_metrics_and_ui() {
    let files = Files {
        dir: tempfile::tempdir().expect("tempdir"),
    };
    let (ca, srv_cert, srv_key, _, _) = certs();
    let cert = files.write("server.crt", &srv_cert);
    let key = files.write("server.key", &srv_key);
    // Cost 4 keeps the debug-build test fast.
    let hash = bcrypt::hash("s3cret", 4).expect("bcrypt");
    let web = files.write(
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n\
             http_server_config:\n  headers:\n    X-Frame-Options: deny\n\
             basic_auth_users:\n  grafana: {hash}\n",
            cert.display(),
            key.display()
        ),
    );
    let q = start(web).await.expect("querier starts");
    let addr = q.http_addr();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).expect("ca"))
        .resolve("strata.test", addr)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let base = format!("https://strata.test:{}", addr.port());

    for path in ["/api/v1/query?query=1%2B1", "/metrics", "/", "/-/healthy"] {
        let url = format!("{base}{path}");
        let r = client.get(&url).send().await.expect("request");
        assert_eq!(r.status(), 401, "{path} without credentials");
        assert!(
            r.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("Basic")),
            "{path}: {:?}",
            r.headers()
        );
        let r = client
            .get(&url)
            .basic_auth("grafana", Some("wrong"))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 401, "{path} with a wrong password");
        let r = client
            .get(&url)
            .basic_auth("grafana", Some("s3cret"))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200, "{path} with credentials");
        assert_eq!(r.headers()["x-frame-options"], "deny", "{path}");
        if path.starts_with("/api/v1/query") {
            let body = r.text().await.expect("body");
            let v: serde_json::Value = serde_json::from_str(&body).expect("json");
            assert_eq!(v["data"]["result"][1], "2", "{v}");
        }
    }

    // Plain HTTP to the TLS port is not served.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/-/healthy"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
    q.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_bad_http_config_fails_startup_naming_the_field() {
    let files = Files {
        dir: tempfile::tempdir().expect("tempdir"),
    };
    let web = files.write(
        "web.yml",
        "tls_server_config:\n  cert_file: /nonexistent.crt\n",
    );
    let err = start(web).await.err().expect("startup fails");
    let text = err.to_string();
    assert!(text.starts_with("--http.config:"), "{text}");
    assert!(
        text.contains("key_file") || text.contains("cert_file"),
        "{text}"
    );
}
