//! `--web.config.file`: TLS (with and without client certificates), basic
//! auth and headers on every endpoint, checked with a real rustls client,
//! the real promtool (`--http.config.file`) and a real Prometheus 2.42
//! remote-writing over TLS with basic auth. Certificates are made at test
//! time (rcgen).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use strata_server::{Server, ServerOptions};
use strata_storetest::pki::{new_ca, new_leaf};

use crate::common::*;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
    rogue_cert: String,
    rogue_key: String,
}

/// The CA's issuer too, to sign replacement server certificates.
fn pki_with_issuer() -> (Pki, rcgen::Issuer<'static, rcgen::KeyPair>) {
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let (ca, issuer) = new_ca("strata test CA");
    let (_, rogue_issuer) = new_ca("rogue CA");
    let (server_cert, server_key) = new_leaf(&issuer, &["localhost", "127.0.0.1"], ServerAuth);
    let (client_cert, client_key) = new_leaf(&issuer, &["client"], ClientAuth);
    let (rogue_cert, rogue_key) = new_leaf(&rogue_issuer, &["intruder"], ClientAuth);
    (
        Pki {
            ca,
            server_cert,
            server_key,
            client_cert,
            client_key,
            rogue_cert,
            rogue_key,
        },
        issuer,
    )
}

fn pki() -> Pki {
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let (ca, issuer) = new_ca("strata test CA");
    let (_, rogue_issuer) = new_ca("rogue CA");
    let (server_cert, server_key) = new_leaf(&issuer, &["localhost", "127.0.0.1"], ServerAuth);
    let (client_cert, client_key) = new_leaf(&issuer, &["client"], ClientAuth);
    let (rogue_cert, rogue_key) = new_leaf(&rogue_issuer, &["intruder"], ClientAuth);
    Pki {
        ca,
        server_cert,
        server_key,
        client_cert,
        client_key,
        rogue_cert,
        rogue_key,
    }
}

/// A directory with the PKI's files and a web config.
struct Files {
    dir: tempfile::TempDir,
    pki: Pki,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = pki();
        for (name, body) in [
            ("ca.pem", &pki.ca),
            ("server.pem", &pki.server_cert),
            ("server.key", &pki.server_key),
            ("client.pem", &pki.client_cert),
            ("client.key", &pki.client_key),
        ] {
            std::fs::write(dir.path().join(name), body).expect("write pem");
        }
        Files { dir, pki }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `web.yml`; relative names resolve against its directory.
    fn web_config(&self, text: &str) -> PathBuf {
        let p = self.path("web.yml");
        std::fs::write(&p, text).expect("write web.yml");
        p
    }
}

fn hash(pw: &str) -> String {
    // Cost 4 keeps debug-build tests fast; the cost is the hash's business.
    bcrypt::hash(pw, 4).expect("bcrypt")
}

fn tls_client(ca_pem: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("ca pem")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let cfg = match identity {
        None => b.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("client cert");
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("client key");
            b.with_client_auth_cert(certs, key).expect("client auth")
        }
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

async fn start(web_config: &Path) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = ServerOptions {
        storage_path: dir.path().join("data"),
        listen_address: "127.0.0.1:0".into(),
        enable_remote_write_receiver: true,
        web_config_file: Some(web_config.to_path_buf()),
        ..ServerOptions::default()
    };
    (Server::start(opts).await.expect("server starts"), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_basic_auth_and_headers_cover_every_endpoint() {
    let f = Files::new();
    let web = f.web_config(&format!(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n\
         http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=60\n\
         basic_auth_users:\n  alice: '{}'\n",
        hash("wonderland")
    ));
    let (server, _data) = start(&web).await;
    let base = format!("https://localhost:{}", server.local_addr().port());
    let client = tls_client(&f.pki.ca, None);

    let write_body = snap::raw::Encoder::new()
        .compress_vec(&prost::Message::encode_to_vec(&write_request(vec![
            series(&[("__name__", "tls_probe")], &[(now_ms(), 7.0)]),
        ])))
        .expect("snappy");
    // (method, path, body, status with valid credentials)
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("GET", "/api/v1/query?query=1", vec![], 200),
        ("GET", "/api/v1/labels", vec![], 200),
        ("GET", "/metrics", vec![], 200),
        ("GET", "/-/healthy", vec![], 200),
        ("GET", "/-/ready", vec![], 200),
        ("GET", "/federate?match[]=up", vec![], 200),
        ("POST", "/api/v1/write", write_body, 204),
        // Not a valid read request: 400 from the handler, after auth.
        ("POST", "/api/v1/read", b"garbage".to_vec(), 400),
    ];
    for (method, path, body, want) in &cases {
        let req = |auth: Option<(&str, &str)>| {
            let mut r = client
                .request(method.parse().expect("method"), format!("{base}{path}"))
                .header("Content-Encoding", "snappy")
                .body(body.clone());
            if let Some((u, p)) = auth {
                r = r.basic_auth(u, Some(p));
            }
            r
        };
        for auth in [
            None,
            Some(("alice", "wrong")),
            Some(("mallory", "wonderland")),
        ] {
            let resp = req(auth).send().await.expect("request");
            assert_eq!(resp.status().as_u16(), 401, "{method} {path} {auth:?}");
            assert_eq!(resp.headers()["www-authenticate"], "Basic");
            assert_eq!(resp.headers()["x-frame-options"], "deny");
        }
        let resp = req(Some(("alice", "wonderland")))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), *want, "{method} {path}");
        assert_eq!(resp.headers()["x-frame-options"], "deny", "{path}");
        assert_eq!(resp.headers()["strict-transport-security"], "max-age=60");
    }
    // The remote-written sample arrived through the authenticated write.
    let resp = client
        .get(format!("{base}/api/v1/query?query=tls_probe"))
        .basic_auth("alice", Some("wonderland"))
        .send()
        .await
        .expect("query");
    let v: serde_json::Value =
        serde_json::from_str(&resp.text().await.expect("body")).expect("json");
    assert_eq!(v["data"]["result"][0]["value"][1], "7", "{v}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/-/healthy",
            server.local_addr().port()
        ))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");

    // Users are re-read per request: a changed password applies at once.
    f.web_config(&format!(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n\
         basic_auth_users:\n  alice: '{}'\n",
        hash("looking-glass")
    ));
    let status = |pw: &'static str| {
        let c = client.clone();
        let url = format!("{base}/-/healthy");
        async move {
            c.get(url)
                .basic_auth("alice", Some(pw))
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        }
    };
    assert_eq!(status("wonderland").await, 401);
    assert_eq!(status("looking-glass").await, 200);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_and_verify_client_cert_rejects_clients_without_a_valid_cert() {
    let f = Files::new();
    let web = f.web_config(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  \
         min_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n  \
         curve_preferences: [X25519, CurveP256]\n",
    );
    if Path::new(PROMTOOL).exists() {
        // Prometheus' validator agrees the file is valid.
        let out = Command::new(PROMTOOL)
            .args(["check", "web-config"])
            .arg(&web)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (server, _data) = start(&web).await;
    let url = format!("https://localhost:{}/-/healthy", server.local_addr().port());

    let none = tls_client(&f.pki.ca, None).get(&url).send().await;
    assert!(none.is_err(), "no client cert must fail: {none:?}");
    let rogue = tls_client(&f.pki.ca, Some((&f.pki.rogue_cert, &f.pki.rogue_key)))
        .get(&url)
        .send()
        .await;
    assert!(
        rogue.is_err(),
        "a cert from another CA must fail: {rogue:?}"
    );
    let good = tls_client(&f.pki.ca, Some((&f.pki.client_cert, &f.pki.client_key)))
        .get(&url)
        .send()
        .await
        .expect("a cert from the client CA is accepted");
    assert_eq!(good.status().as_u16(), 200);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_client_cert_accepts_any_or_none() {
    let f = Files::new();
    let web = f.web_config(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  \
         client_auth_type: RequestClientCert\n",
    );
    let (server, _data) = start(&web).await;
    let url = format!("https://localhost:{}/-/healthy", server.local_addr().port());
    for id in [
        None,
        Some((f.pki.rogue_cert.as_str(), f.pki.rogue_key.as_str())),
    ] {
        let r = tls_client(&f.pki.ca, id)
            .get(&url)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), 200);
    }
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn bad_web_config_fails_startup_naming_the_field() {
    let f = Files::new();
    let cases = [
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth: x\n",
            "client_auth",
        ),
        (
            "tls_server_config:\n  cert_file: missing.pem\n  key_file: server.key\n",
            "tls_server_config.cert_file",
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: client.key\n",
            "tls_server_config.key_file",
        ),
        ("basic_auth_users:\n  alice: hunter2\n", "basic_auth_users.alice"),
        (
            "http_server_config:\n  headers:\n    Server: strata\n",
            "http_server_config.headers.Server",
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  \
             curve_preferences: [CurveP521]\n",
            "tls_server_config.curve_preferences",
        ),
    ];
    for (text, field) in cases {
        let web = f.web_config(text);
        // Prometheus' own validator rejects the same files, except the
        // curve Go has and rustls has not.
        if Path::new(PROMTOOL).exists() && !text.contains("CurveP521") {
            let out = Command::new(PROMTOOL)
                .args(["check", "web-config"])
                .arg(&web)
                .output()
                .expect("run promtool");
            assert!(!out.status.success(), "promtool accepts {text:?}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = ServerOptions {
            storage_path: dir.path().join("data"),
            listen_address: "127.0.0.1:0".into(),
            web_config_file: Some(web),
            ..ServerOptions::default()
        };
        let err = match Server::start(opts).await {
            Ok(s) => {
                s.shutdown().await.expect("shutdown");
                panic!("{text:?} must be rejected");
            }
            Err(e) => e.to_string(),
        };
        assert!(err.contains("--web.config.file"), "{err}");
        assert!(err.contains(field), "{text:?}: {err}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = ServerOptions {
        storage_path: dir.path().join("data"),
        listen_address: "127.0.0.1:0".into(),
        web_config_file: Some(f.path("nope.yml")),
        ..ServerOptions::default()
    };
    let err = Server::start(opts)
        .await
        .err()
        .expect("missing file")
        .to_string();
    assert!(err.contains("nope.yml"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_queries_over_tls_with_basic_auth() {
    if !Path::new(PROMTOOL).exists() {
        eprintln!("note: {PROMTOOL} not found; skipping the promtool TLS test");
        return;
    }
    let f = Files::new();
    let web = f.web_config(&format!(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n\
         basic_auth_users:\n  promtool: '{}'\n",
        hash("s3cret")
    ));
    let (server, _data) = start(&web).await;
    let base = format!("https://127.0.0.1:{}", server.local_addr().port());
    let port = server.local_addr().port();
    // promtool 2.42 has no --http.config.file (2.43 added it); it takes
    // credentials from the URL and, like any Go program, trusts the CA in
    // SSL_CERT_FILE.
    let ca = f.path("ca.pem");
    let good = format!("https://promtool:s3cret@127.0.0.1:{port}");
    let no_auth = base.clone();
    let run = |url: String| {
        let ca = ca.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(PROMTOOL)
                .env("SSL_CERT_FILE", &ca)
                .args(["query", "instant", &url, "vector(42)"])
                .output()
                .expect("run promtool")
        })
    };
    let out = run(good).await.expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("{} => 42 @["), "{stdout}");
    let out = run(no_auth).await.expect("join");
    assert!(
        !out.status.success(),
        "promtool without credentials must fail"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("401") || stderr.contains("nauthorized"),
        "{stderr}"
    );
    server.shutdown().await.expect("shutdown");
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
async fn prometheus_remote_writes_over_tls_with_basic_auth() {
    if !Path::new(PROMETHEUS).exists() {
        eprintln!("note: {PROMETHEUS} not found; skipping the Prometheus TLS test");
        return;
    }
    let f = Files::new();
    let web = f.web_config(&format!(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n\
         basic_auth_users:\n  writer: '{}'\n",
        hash("pa55")
    ));
    let (server, _data) = start(&web).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let cfg = f.path("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n\
             remote_write:\n  - url: https://localhost:{}/api/v1/write\n    \
             basic_auth:\n      username: writer\n      password: pa55\n    \
             tls_config:\n      ca_file: {}\n    queue_config:\n      batch_send_deadline: 1s\n",
            server.local_addr().port(),
            f.path("ca.pem").display()
        ),
    )
    .expect("config");
    let log_path = f.path("prometheus.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            f.path("prom-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    let _guard = Kill(child);

    let client = tls_client(&f.pki.ca, None);
    let url = format!(
        "https://localhost:{}/api/v1/query?query={}",
        server.local_addr().port(),
        urlenc("up{job=\"prometheus\"}")
    );
    let got = eventually(
        "Prometheus' samples over TLS",
        Duration::from_secs(90),
        || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let text = client
                    .get(url)
                    .basic_auth("writer", Some("pa55"))
                    .send()
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                let v: serde_json::Value = serde_json::from_str(&text).ok()?;
                let r = v["data"]["result"].as_array()?.first()?.clone();
                Some(r)
            }
        },
    )
    .await;
    assert_eq!(got["value"][1], "1", "{got}");
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    // Prometheus logs a refused send as "server returned HTTP status 401
    // Unauthorized"; a bare "401" would also match timestamps (".401Z").
    assert!(!log.contains("status 401"), "Prometheus saw 401s: {log}");
    server.shutdown().await.expect("shutdown");
}

/// Connects with rustls offering h2 and http/1.1; returns the negotiated
/// protocol and the server certificate.
async fn handshake(port: u16, ca_pem: &str) -> (Option<Vec<u8>>, Vec<u8>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("ca pem")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    let conn = tls.get_ref().1;
    (
        conn.alpn_protocol().map(<[u8]>::to_vec),
        conn.peer_certificates().expect("server cert")[0].to_vec(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_setting_and_certificate_rotation_apply_per_connection() {
    let f = Files::new();
    let web = f.web_config("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n");
    let (server, _data) = start(&web).await;
    let port = server.local_addr().port();
    let (alpn, first_cert) = handshake(port, &f.pki.ca).await;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "http2 defaults to on");

    // http2: false is read on the next connection.
    f.web_config(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n\
         http_server_config:\n  http2: false\n",
    );
    let (alpn, _) = handshake(port, &f.pki.ca).await;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));

    // A replaced certificate and key are served without a restart (signed
    // by a new CA, which the client then trusts: the old one would reject
    // it, so the handshake itself proves the new pair is in use).
    use rcgen::ExtendedKeyUsagePurpose::ServerAuth;
    let (new_pki, new_issuer) = pki_with_issuer();
    let (cert, key) = new_leaf(&new_issuer, &["localhost"], ServerAuth);
    std::fs::write(f.path("server.pem"), &cert).expect("write cert");
    std::fs::write(f.path("server.key"), &key).expect("write key");
    let (_, rotated) = handshake(port, &new_pki.ca).await;
    assert_ne!(rotated, first_cert, "the new certificate is served");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_without_tls() {
    let f = Files::new();
    let web = f.web_config(&format!(
        "basic_auth_users:\n  bob: '{}'\n",
        hash("builder")
    ));
    let (server, _data) = start(&web).await;
    let url = format!(
        "http://127.0.0.1:{}/api/v1/status/flags",
        server.local_addr().port()
    );
    let http = reqwest::Client::new();
    let r = http.get(&url).send().await.expect("request");
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .get(&url)
        .basic_auth("bob", Some("builder"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = serde_json::from_str(&r.text().await.expect("body")).expect("json");
    assert_eq!(v["data"]["web.config.file"], web.display().to_string());
    server.shutdown().await.expect("shutdown");
}
