//! The `grpc` helpers against real servers on 127.0.0.1: mutual TLS, health,
//! message size limits and the gRPC paths Thanos uses.

use std::net::SocketAddr;

use futures::StreamExt;
use prost::Message;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

use strata_proto::grpc::{
    health_service, ClientOptions, ClientTls, HealthProbe, MessageLimits, ServerOptions, ServerTls,
    MAX_MESSAGE_SIZE,
};
use strata_proto::thanos::info::info_client::InfoClient;
use strata_proto::thanos::info::info_server::{Info, InfoServer};
use strata_proto::thanos::info::{InfoRequest, InfoResponse};
use strata_proto::thanos::store_client::StoreClient;
use strata_proto::thanos::store_server::{Store, StoreServer};
use strata_proto::thanos::writeable_store_server::{WriteableStore, WriteableStoreServer};
use strata_proto::thanos::{self, series_response};

// ---------------------------------------------------------------- services

struct TestInfo;

#[tonic::async_trait]
impl Info for TestInfo {
    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        Ok(Response::new(InfoResponse {
            component_type: "sidecar".into(),
            ..Default::default()
        }))
    }
}

/// Answers `LabelValues` with one value of `value_len` bytes; echoes the
/// request's first matcher value length in `LabelNames`.
struct TestStore {
    value_len: usize,
}

#[tonic::async_trait]
impl Store for TestStore {
    type SeriesStream = tonic::codegen::tokio_stream::Iter<
        std::vec::IntoIter<Result<thanos::SeriesResponse, Status>>,
    >;

    async fn series(
        &self,
        _: Request<thanos::SeriesRequest>,
    ) -> Result<Response<Self::SeriesStream>, Status> {
        let frames = vec![
            Ok(thanos::SeriesResponse {
                result: Some(series_response::Result::Series(thanos::Series {
                    labels: vec![thanos::Label {
                        name: "a".into(),
                        value: "1".into(),
                    }],
                    chunks: vec![],
                })),
            }),
            Ok(thanos::SeriesResponse {
                result: Some(series_response::Result::Warning("w".into())),
            }),
        ];
        Ok(Response::new(tonic::codegen::tokio_stream::iter(frames)))
    }

    async fn label_names(
        &self,
        req: Request<thanos::LabelNamesRequest>,
    ) -> Result<Response<thanos::LabelNamesResponse>, Status> {
        let len = req.get_ref().matchers.first().map_or(0, |m| m.value.len());
        Ok(Response::new(thanos::LabelNamesResponse {
            names: vec![len.to_string()],
            ..Default::default()
        }))
    }

    async fn label_values(
        &self,
        _: Request<thanos::LabelValuesRequest>,
    ) -> Result<Response<thanos::LabelValuesResponse>, Status> {
        Ok(Response::new(thanos::LabelValuesResponse {
            values: vec!["v".repeat(self.value_len)],
            ..Default::default()
        }))
    }
}

struct TestWriter;

#[tonic::async_trait]
impl WriteableStore for TestWriter {
    async fn remote_write(
        &self,
        _: Request<thanos::WriteRequest>,
    ) -> Result<Response<thanos::WriteResponse>, Status> {
        Ok(Response::new(thanos::WriteResponse {}))
    }
}

/// A running server; stopped when dropped.
struct Running {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    health: HealthProbe,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves Info, Store, WriteableStore and health on 127.0.0.1:0.
async fn serve(options: ServerOptions, value_len: usize) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (health, health_server) = health_service().await;
    let limit = options.max_message_size;
    let router = options
        .builder()
        .expect("server builder")
        .add_service(health_server)
        .add_service(InfoServer::new(TestInfo).with_message_limits(limit))
        .add_service(StoreServer::new(TestStore { value_len }).with_message_limits(limit))
        .add_service(WriteableStoreServer::new(TestWriter).with_message_limits(limit));
    let incoming = options.incoming(listener);
    let task = tokio::spawn(async move {
        router.serve_with_incoming(incoming).await.expect("serve");
    });
    Running { addr, task, health }
}

/// Connects with `options` and calls Info; any failure as a string.
async fn call_info(options: &ClientOptions, address: &str) -> Result<InfoResponse, String> {
    let channel = options
        .endpoint(address)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let mut client = InfoClient::new(channel).with_message_limits(options.max_message_size);
    client
        .info(InfoRequest {})
        .await
        .map(Response::into_inner)
        .map_err(|s| format!("call: {s:?}"))
}

// ---------------------------------------------------------------- PKI

struct Pki {
    ca_pem: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
    rogue_ca_pem: String,
    rogue_client_cert: String,
    rogue_client_key: String,
}

fn new_ca(name: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), rcgen::Issuer::new(params, key))
}

/// A leaf certificate and its key, signed by `issuer`.
fn new_leaf(
    issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
    names: &[&str],
    usage: rcgen::ExtendedKeyUsagePurpose,
) -> (String, String) {
    use rcgen::{CertificateParams, DnType, KeyPair};
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn pki() -> Pki {
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let (ca_pem, ca) = new_ca("strata test CA");
    let (rogue_ca_pem, rogue_ca) = new_ca("rogue CA");
    // Only a DNS name: reaching 127.0.0.1 needs the server-name override.
    let (server_cert, server_key) = new_leaf(&ca, &["strata.test"], ServerAuth);
    let (client_cert, client_key) = new_leaf(&ca, &["querier"], ClientAuth);
    let (rogue_client_cert, rogue_client_key) = new_leaf(&rogue_ca, &["intruder"], ClientAuth);
    Pki {
        ca_pem,
        server_cert,
        server_key,
        client_cert,
        client_key,
        rogue_ca_pem,
        rogue_client_cert,
        rogue_client_key,
    }
}

fn tls_client(tls: ClientTls) -> ClientOptions {
    ClientOptions {
        tls: Some(tls),
        ..ClientOptions::default()
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn mutual_tls_admits_only_clients_of_the_ca() {
    let pki = pki();
    let server = serve(
        ServerOptions {
            tls: Some(
                ServerTls::from_pem(pki.server_cert.clone(), pki.server_key.clone())
                    .with_client_ca_pem(pki.ca_pem.clone()),
            ),
            ..ServerOptions::default()
        },
        1,
    )
    .await;
    let addr = server.addr.to_string();
    let trusting = || {
        ClientTls::new()
            .with_ca_pem(pki.ca_pem.clone())
            .with_server_name("strata.test")
    };

    // A client with a certificate from the CA gets through.
    let good =
        tls_client(trusting().with_identity_pem(pki.client_cert.clone(), pki.client_key.clone()));
    let info = call_info(&good, &addr).await.expect("good client");
    assert_eq!(info.component_type, "sidecar");

    // Health, over the same mutual TLS.
    let channel = good.endpoint(&addr).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel);
    let check = || HealthCheckRequest {
        service: String::new(),
    };
    let status = health.check(check()).await.unwrap().into_inner().status;
    assert_eq!(status, ServingStatus::NotServing as i32);
    server.health.ready().await;
    let status = health.check(check()).await.unwrap().into_inner().status;
    assert_eq!(status, ServingStatus::Serving as i32);

    // No client certificate: refused.
    let err = call_info(&tls_client(trusting()), &addr).await.unwrap_err();
    assert!(err.contains("CertificateRequired"), "{err}");

    // A client certificate from another CA: refused.
    let rogue = tls_client(
        trusting().with_identity_pem(pki.rogue_client_cert.clone(), pki.rogue_client_key.clone()),
    );
    let err = call_info(&rogue, &addr).await.unwrap_err();
    assert!(err.contains("UnknownCA"), "{err}");

    // Plaintext to the TLS server: fails.
    call_info(&ClientOptions::default(), &addr)
        .await
        .expect_err("plaintext client");

    // The client verifies the server too: a client that trusts another CA...
    let wrong_ca = tls_client(
        ClientTls::new()
            .with_ca_pem(pki.rogue_ca_pem.clone())
            .with_server_name("strata.test")
            .with_identity_pem(pki.client_cert.clone(), pki.client_key.clone()),
    );
    let err = call_info(&wrong_ca, &addr).await.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");

    // ...and one that checks the address' name (127.0.0.1) instead of the
    // overridden one, which the certificate does not carry, both fail.
    let no_override = tls_client(
        ClientTls::new()
            .with_ca_pem(pki.ca_pem.clone())
            .with_identity_pem(pki.client_cert.clone(), pki.client_key.clone()),
    );
    let err = call_info(&no_override, &addr).await.unwrap_err();
    assert!(err.contains("NotValidForName"), "{err}");

    // The good client still works after all that.
    call_info(&good, &addr).await.expect("good client again");
}

#[tokio::test]
async fn tls_without_client_ca_admits_any_client() {
    let pki = pki();
    let server = serve(
        ServerOptions {
            tls: Some(ServerTls::from_pem(pki.server_cert, pki.server_key)),
            ..ServerOptions::default()
        },
        1,
    )
    .await;
    let client = tls_client(
        ClientTls::new()
            .with_ca_pem(pki.ca_pem)
            .with_server_name("strata.test"),
    );
    call_info(&client, &server.addr.to_string())
        .await
        .expect("TLS client without certificate");
}

#[tokio::test]
async fn bad_tls_material_is_an_error_not_a_panic() {
    let options = ServerOptions {
        tls: Some(ServerTls::from_pem("not a cert", "not a key")),
        ..ServerOptions::default()
    };
    assert!(options.builder().is_err());
    let client = tls_client(ClientTls::new().with_identity_pem("not a cert", "not a key"));
    let err = match client.endpoint("127.0.0.1:1") {
        Err(e) => e.to_string(),
        Ok(endpoint) => format!("{:?}", endpoint.connect().await.unwrap_err()),
    };
    assert!(!err.is_empty());
}

#[tokio::test]
async fn messages_above_4_mib_pass_with_thanos_limits() {
    const BIG: usize = 5 << 20;
    let server = serve(ServerOptions::default(), BIG).await;
    let options = ClientOptions::default();
    let channel = options
        .endpoint(&server.addr.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();

    // Response above tonic's default 4 MiB decoding limit.
    let mut client = StoreClient::new(channel.clone()).with_message_limits(MAX_MESSAGE_SIZE);
    let resp = client
        .label_values(thanos::LabelValuesRequest::default())
        .await
        .expect("5 MiB response")
        .into_inner();
    assert_eq!(resp.values[0].len(), BIG);

    // Request above it: the server's limit is raised too.
    let req = thanos::LabelNamesRequest {
        matchers: vec![thanos::LabelMatcher {
            r#type: 0,
            name: "a".into(),
            value: "x".repeat(BIG),
        }],
        ..Default::default()
    };
    let resp = client.label_names(req).await.expect("5 MiB request");
    assert_eq!(resp.into_inner().names, vec![BIG.to_string()]);

    // tonic's defaults would refuse the response.
    let mut default_client = StoreClient::new(channel);
    let status = default_client
        .label_values(thanos::LabelValuesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
}

/// Calls `path` with a hand-built request, so the generated path strings
/// are checked against Thanos' rather than against themselves.
async fn raw_unary<Req, Resp>(
    channel: tonic::transport::Channel,
    path: &'static str,
    req: Req,
) -> Result<Resp, Status>
where
    Req: Message + Send + Sync + 'static,
    Resp: Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    grpc.unary(
        Request::new(req),
        tonic::codegen::http::uri::PathAndQuery::from_static(path),
        codec,
    )
    .await
    .map(Response::into_inner)
}

#[tokio::test]
async fn grpc_paths_are_thanos_paths() {
    let server = serve(ServerOptions::default(), 1).await;
    let channel = ClientOptions::default()
        .endpoint(&server.addr.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();

    let info: InfoResponse = raw_unary(channel.clone(), "/thanos.info.Info/Info", InfoRequest {})
        .await
        .unwrap();
    assert_eq!(info.component_type, "sidecar");

    let names: thanos::LabelNamesResponse = raw_unary(
        channel.clone(),
        "/thanos.Store/LabelNames",
        thanos::LabelNamesRequest::default(),
    )
    .await
    .unwrap();
    assert_eq!(names.names, vec!["0"]);

    let values: thanos::LabelValuesResponse = raw_unary(
        channel.clone(),
        "/thanos.Store/LabelValues",
        thanos::LabelValuesRequest::default(),
    )
    .await
    .unwrap();
    assert_eq!(values.values, vec!["v"]);

    let _: thanos::WriteResponse = raw_unary(
        channel.clone(),
        "/thanos.WriteableStore/RemoteWrite",
        thanos::WriteRequest::default(),
    )
    .await
    .unwrap();

    let _: tonic_health::pb::HealthCheckResponse = raw_unary(
        channel.clone(),
        "/grpc.health.v1.Health/Check",
        HealthCheckRequest::default(),
    )
    .await
    .unwrap();

    // Series is server-streaming.
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let mut stream = grpc
        .server_streaming(
            Request::new(thanos::SeriesRequest::default()),
            tonic::codegen::http::uri::PathAndQuery::from_static("/thanos.Store/Series"),
            tonic_prost::ProstCodec::<thanos::SeriesRequest, thanos::SeriesResponse>::default(),
        )
        .await
        .unwrap()
        .into_inner();
    let mut frames = Vec::new();
    while let Some(frame) = stream.message().await.unwrap() {
        frames.push(frame.result.unwrap());
    }
    assert!(matches!(frames[0], series_response::Result::Series(_)));
    assert_eq!(frames[1], series_response::Result::Warning("w".into()));
    assert_eq!(frames.len(), 2);

    // An unknown method is UNIMPLEMENTED, not a transport error.
    let status =
        raw_unary::<InfoRequest, InfoResponse>(channel, "/thanos.Store/Info", InfoRequest {})
            .await
            .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);
}

/// Connections accepted through `ServerOptions::incoming` have `TCP_NODELAY`;
/// a plain `TcpIncoming` from the same kind of listener does not, which is why
/// the helper exists: without it every gRPC answer (headers, data and trailers
/// written apart) waits about 40 ms for the client's delayed ACK.
#[tokio::test]
async fn incoming_sets_nodelay() {
    let accept = |incoming: TcpIncoming| async move {
        let mut incoming = incoming;
        let addr = incoming.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accepted = incoming.next().await.expect("a connection").unwrap();
        drop(client);
        accepted.nodelay().unwrap()
    };
    let bind = || async { tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap() };
    assert!(accept(ServerOptions::default().incoming(bind().await)).await);
    assert!(!accept(TcpIncoming::from(bind().await)).await);
}

#[tokio::test]
async fn skip_verify_connects_to_an_unknown_ca_and_still_does_mutual_tls() {
    let pki = pki();
    let server = serve(
        ServerOptions {
            tls: Some(
                ServerTls::from_pem(pki.server_cert.clone(), pki.server_key.clone())
                    .with_client_ca_pem(pki.ca_pem.clone()),
            ),
            ..ServerOptions::default()
        },
        1,
    )
    .await;
    let addr = server.addr.to_string();
    let info = |options: ClientOptions| {
        let addr = addr.clone();
        async move {
            let channel = options.connect_lazy(&addr).map_err(|e| e.to_string())?;
            InfoClient::new(channel)
                .info(InfoRequest {})
                .await
                .map(Response::into_inner)
                .map_err(|s| format!("{s:?}"))
        }
    };
    // The server's CA is unknown to the client (system roots only): refused
    // without skip-verify...
    let verifying = tls_client(
        ClientTls::new().with_identity_pem(pki.client_cert.clone(), pki.client_key.clone()),
    );
    assert!(info(verifying).await.is_err(), "unknown CA must be refused");
    // ...accepted with it; the client certificate is still presented, so the
    // server's mutual TLS admits it.
    let skipping = tls_client(
        ClientTls::new()
            .with_identity_pem(pki.client_cert.clone(), pki.client_key.clone())
            .with_insecure_skip_verify(),
    );
    info(skipping)
        .await
        .expect("skip-verify with a client certificate");
    // Without a client certificate the server still refuses.
    let anonymous = tls_client(ClientTls::new().with_insecure_skip_verify());
    assert!(
        info(anonymous).await.is_err(),
        "mutual TLS must still refuse a client without a certificate"
    );
}
