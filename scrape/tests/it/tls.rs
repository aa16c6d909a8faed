//! Scraping over HTTPS with `tls_config`: a CA file, `server_name`,
//! `insecure_skip_verify` and client certificates, against a real TLS
//! server on 127.0.0.1. The fixtures (tests/testdata/tls, made by its
//! gen.sh) hold a server certificate for "prom.internal" only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use strata_scrape::config::Config;
use strata_scrape::discovery::TargetGroup;
use strata_scrape::http::HttpClient;
use strata_scrape::target::targets_from_groups;
use strata_scrape::{LoopOptions, ScrapeLoop};
use tokio::net::TcpListener;

use crate::util::*;

fn tls_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/tls")
}

/// An HTTPS server answering every request with one sample; with
/// `require_client_cert`, only clients with a certificate from the test CA
/// get through.
async fn start_tls_server(require_client_cert: bool) -> (String, tokio::task::JoinHandle<()>) {
    let dir = tls_dir();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if require_client_cert {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let v =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        builder.with_client_cert_verifier(v)
    } else {
        builder.with_no_client_auth()
    };
    let mut cfg = builder.with_single_cert(certs, key).unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let svc = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"secure_metric 42\n",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

/// Scrapes `addr` over https with the given `tls_config` YAML (indented
/// for a job) and returns the error, if any.
async fn scrape_with(addr: &str, tls_yaml: &str) -> Option<String> {
    let yaml = format!("scrape_configs:\n- job_name: tls\n  scheme: https\n{tls_yaml}");
    let cfg = Config::load_with_dir(&yaml, Some(&tls_dir())).unwrap();
    let sc = &cfg.scrape_configs[0];
    let group = TargetGroup {
        targets: vec![addr.to_string()],
        ..Default::default()
    };
    let target = targets_from_groups(&[group], sc).active.remove(0);
    let client = match HttpClient::new(&sc.http) {
        Ok(c) => c,
        Err(e) => return Some(e),
    };
    let (db, _dir) = open_db();
    let mut l = ScrapeLoop::new(
        target.clone(),
        LoopOptions::new(sc, &target),
        client,
        db.clone(),
    );
    let r = l.scrape_once().await;
    if r.error.is_none() {
        assert_eq!(samples(&db, "secure_metric", &[]).len(), 1);
    }
    r.error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_config_options() {
    let (addr, _server) = start_tls_server(false).await;

    // The CA plus the name the certificate was issued for.
    let ok = "  tls_config:\n    ca_file: ca.pem\n    server_name: prom.internal\n";
    assert_eq!(scrape_with(&addr, ok).await, None);

    // Without server_name the certificate does not match 127.0.0.1.
    let e = scrape_with(&addr, "  tls_config:\n    ca_file: ca.pem\n")
        .await
        .unwrap();
    assert!(e.to_lowercase().contains("certificate"), "{e}");

    // The system roots do not know the test CA.
    let e = scrape_with(&addr, "").await.unwrap();
    assert!(e.to_lowercase().contains("certificate"), "{e}");

    // Unless verification is off.
    assert_eq!(
        scrape_with(&addr, "  tls_config:\n    insecure_skip_verify: true\n").await,
        None
    );

    // A CA file that is not there fails when the client is built.
    let e = scrape_with(&addr, "  tls_config:\n    ca_file: missing.pem\n")
        .await
        .unwrap();
    assert!(e.contains("missing.pem"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates() {
    let (addr, _server) = start_tls_server(true).await;
    let base = "  tls_config:\n    ca_file: ca.pem\n    server_name: prom.internal\n";
    assert!(
        scrape_with(&addr, base).await.is_some(),
        "no client cert: rejected"
    );
    let with_cert = format!("{base}    cert_file: client.pem\n    key_file: client.key\n");
    assert_eq!(scrape_with(&addr, &with_cert).await, None);
}
