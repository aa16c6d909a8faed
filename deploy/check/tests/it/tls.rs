//! deploy/README.md's openssl recipe, run as written, gives certificates
//! that strata's gRPC server and client accept for mutual TLS under the
//! names and file layout the manifests use (`tls.crt`, `tls.key`,
//! `ca.crt`; server name `strata-sidecar`), and that a client without a
//! certificate is refused.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use strata_proto::grpc::{health_service, ClientOptions, ClientTls, ServerOptions, ServerTls};
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

use crate::util::{read, run};

/// The first ```sh block of the README section `## 1. mTLS certificates`.
fn readme_cert_script() -> String {
    let readme = read(&strata_deploy_check::deploy_dir().join("README.md"));
    let section = readme
        .split("\n## 1. mTLS certificates\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README section `## 1. mTLS certificates`");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a ```sh block in the mTLS section");
    assert!(
        block.contains("openssl"),
        "the first block is the openssl recipe"
    );
    block.to_string()
}

async fn health(options: &ClientOptions, addr: &str) -> Result<i32, String> {
    let channel = options
        .endpoint(addr)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|r| r.into_inner().status)
        .map_err(|s| format!("call: {s:?}"))
}

#[tokio::test]
async fn readme_certificates_give_working_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", &readme_cert_script()])
        .current_dir(dir.path());
    let out = run(cmd, Duration::from_secs(60));
    assert!(
        out.success,
        "the README's openssl recipe failed:\n{}",
        out.stderr
    );
    let f = |name: &str| dir.path().join(name);
    let d = |p: &Path| p.to_path_buf();

    // The sidecar's side, as the StatefulSet mounts strata-sidecar-tls.
    let server_tls =
        ServerTls::from_files(&f("sidecar.crt"), &f("sidecar.key"), Some(&f("ca.crt")))
            .expect("sidecar certificate files load");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (probe, health_server) = health_service().await;
    probe.ready().await;
    let router = ServerOptions {
        tls: Some(server_tls),
        ..ServerOptions::default()
    }
    .builder()
    .expect("server TLS config")
    .add_service(health_server);
    let task = tokio::spawn(async move {
        let _ = router
            .serve_with_incoming(TcpIncoming::from(listener))
            .await;
    });

    // The querier's side, as global/query.yaml passes strata-query-tls.
    let client = |identity: bool| {
        let (cert, key) = (d(&f("query.crt")), d(&f("query.key")));
        ClientOptions {
            tls: Some(
                ClientTls::from_files(
                    Some(&f("ca.crt")),
                    identity.then_some(cert.as_path()),
                    identity.then_some(key.as_path()),
                    Some("strata-sidecar"),
                )
                .expect("query certificate files load"),
            ),
            ..ClientOptions::default()
        }
    };
    let status = health(&client(true), &addr)
        .await
        .expect("mutual TLS handshake");
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let refused = health(&client(false), &addr).await.unwrap_err();
    assert!(refused.contains("CertificateRequired"), "{refused}");
    task.abort();
}
