//! Mutual TLS on the sidecar's gRPC server: a client with a certificate from
//! the configured CA is served, others are refused.

use std::sync::Arc;

use strata_proto::grpc::{ClientTls, ServerTls};
use strata_sidecar::{Metrics, PromClient, SidecarState, SidecarStore};
use strata_storetest::pki::{call_info, new_ca, new_leaf};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_valid_certificate() {
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let (ca_pem, ca) = new_ca("sidecar test CA");
    let (_, rogue) = new_ca("rogue CA");
    let (server_cert, server_key) = new_leaf(&ca, &["sidecar.test"], ServerAuth);
    let (client_cert, client_key) = new_leaf(&ca, &["querier"], ClientAuth);
    let (rogue_cert, rogue_key) = new_leaf(&rogue, &["intruder"], ClientAuth);

    // The files, as the three flags name them.
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str, c: &str| {
        let path = dir.path().join(n);
        std::fs::write(&path, c).unwrap();
        path
    };
    let tls = ServerTls::from_files(
        &p("server.crt", &server_cert),
        &p("server.key", &server_key),
        Some(&p("ca.crt", &ca_pem)),
    )
    .unwrap();

    // No TSDB is needed for Info: the state is filled by hand.
    let state = Arc::new(SidecarState::new(i64::MIN, Arc::new(Metrics::default())));
    state.set_external_labels(crate::ext_labels());
    let store = SidecarStore::new(PromClient::new("http://127.0.0.1:9").unwrap(), state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(strata_sidecar::serve_grpc(
        store,
        Some(tls),
        listener,
        async {
            let _ = stop_rx.await;
        },
    ));

    let addr = addr.to_string();
    let call = |tls: ClientTls| call_info(&addr, Some(tls));
    let base = || {
        ClientTls::new()
            .with_ca_pem(ca_pem.clone())
            .with_server_name("sidecar.test")
    };

    let info = call(base().with_identity_pem(client_cert.clone(), client_key.clone()))
        .await
        .expect("a client with a valid certificate is served");
    assert_eq!(info.component_type, "sidecar");
    assert_eq!(info.label_sets.len(), 1);

    let err = call(base()).await.expect_err("no client certificate");
    eprintln!("without certificate: {err}");
    let err = call(base().with_identity_pem(rogue_cert, rogue_key))
        .await
        .expect_err("certificate from another CA");
    eprintln!("rogue certificate: {err}");

    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}

/// `--http.config` (Thanos' flag; Prometheus' web-config format): TLS and
/// basic auth on the sidecar's HTTP server. The layer is
/// `strata_promapi::webconfig`'s, tested in depth there and in strata-server;
/// this checks the sidecar serves through it. The HTTP server starts before
/// the sidecar waits for its TSDB, so no TSDB is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_config_serves_tls_and_basic_auth() {
    use rcgen::ExtendedKeyUsagePurpose::ServerAuth;
    let (ca_pem, ca) = new_ca("sidecar test CA");
    let (server_cert, server_key) = new_leaf(&ca, &["sidecar.test"], ServerAuth);
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str, c: &str| {
        let path = dir.path().join(n);
        std::fs::write(&path, c).unwrap();
        path
    };
    let cert = p("server.crt", &server_cert);
    let key = p("server.key", &server_key);
    // Cost 4 keeps the debug-build test fast.
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let web = p(
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  ops: {hash}\n",
            cert.display(),
            key.display()
        ),
    );
    let mut cfg = strata_sidecar::SidecarConfig::new(dir.path());
    cfg.prometheus_url = "http://127.0.0.1:9".into();
    cfg.http_config = Some(web);
    let sidecar = crate::RunningSidecar::start(cfg).await;

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .resolve("sidecar.test", sidecar.http)
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap();
    let url = format!("https://sidecar.test:{}/-/healthy", sidecar.http.port());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let unauthenticated = loop {
        match client.get(&url).send().await {
            Ok(r) => break r,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("sidecar HTTPS never answered: {e}"),
        }
    };
    assert_eq!(unauthenticated.status(), 401);
    let r = client
        .get(&url)
        .basic_auth("ops", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "OK");
    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/-/healthy", sidecar.http))
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
    sidecar.stop().await;
}
