//! gRPC servers and clients set up the way Thanos sets up its own.
//!
//! - [`ServerOptions::builder`] gives a [`tonic::transport::Server`] with TLS or
//!   mutual TLS ([`ServerTls`]), HTTP/2 keepalive and a maximum connection age
//!   (`pkg/server/grpc/grpc.go`, `--grpc-server-*` flags).
//!   [`ServerOptions::incoming`] wraps a listener the caller bound, for
//!   `serve_with_incoming*`: tonic applies the builder's TCP options only to
//!   listeners it binds itself.
//! - [`ClientOptions::endpoint`] gives a [`tonic::transport::Endpoint`] with TLS,
//!   an optional client certificate and server-name override ([`ClientTls`]),
//!   and Thanos' client keepalive (`pkg/extgrpc/client.go`).
//! - [`MessageLimits`] raises a generated server's or client's message size
//!   limits; tonic applies them per service, not per [`tonic::transport::Server`].
//!   Thanos allows [`MAX_MESSAGE_SIZE`] (`math.MaxInt32`) both ways, where tonic
//!   would refuse to decode anything above 4 MiB; Series frames exceed that.
//! - [`health_service`] is the standard `grpc.health.v1.Health` service, which
//!   Thanos registers on every gRPC server.
//!
//! TLS is rustls with the aws-lc-rs crypto provider (tonic's `tls-aws-lc`): the
//! object storage client brings aws-lc-rs anyway, and one provider means one
//! C crypto library to build. ring is not used. Only TLS 1.2 and 1.3 exist in
//! rustls; Thanos' default minimum is 1.3.
//!
//! ```no_run
//! # async fn run(store: impl strata_proto::thanos::store_server::Store) -> Result<(), Box<dyn std::error::Error>> {
//! use strata_proto::grpc::{self, MessageLimits, ServerOptions, ServerTls};
//! use strata_proto::thanos::store_server::StoreServer;
//!
//! let tls = ServerTls::from_files("server.crt".as_ref(), "server.key".as_ref(), Some("ca.crt".as_ref()))?;
//! let options = ServerOptions { tls: Some(tls), ..ServerOptions::default() };
//! let (health, health_server) = grpc::health_service().await;
//! let server = options
//!     .builder()?
//!     .add_service(health_server)
//!     .add_service(StoreServer::new(store).with_message_limits(options.max_message_size))
//!     .serve("127.0.0.1:10901".parse()?);
//! health.ready().await;
//! server.await?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use tonic::transport::server::TcpIncoming;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig,
};
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};
use tonic_health::ServingStatus;

use crate::thanos::info::{info_client::InfoClient, info_server::InfoServer};
use crate::thanos::metadata_client::MetadataClient;
use crate::thanos::metadata_server::MetadataServer;
use crate::thanos::query_client::QueryClient;
use crate::thanos::query_server::QueryServer;
use crate::thanos::store_client::StoreClient;
use crate::thanos::store_server::StoreServer;
use crate::thanos::writeable_store_client::WriteableStoreClient;
use crate::thanos::writeable_store_server::WriteableStoreServer;

/// Largest message Thanos sends or accepts: Go's `math.MaxInt32` bytes, set by
/// `grpc.MaxSendMsgSize`/`MaxRecvMsgSize` on servers and `MaxCallRecvMsgSize`
/// on clients.
pub const MAX_MESSAGE_SIZE: usize = i32::MAX as usize;

/// Errors from reading TLS material or building a server or endpoint.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A certificate, key or CA file could not be read.
    #[error("reading TLS {what} {path}: {source}")]
    Read {
        /// Which file: "certificate", "key" or "CA".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A certificate was given without its key, or the other way round.
    #[error("TLS certificate and key must be given together")]
    IncompleteIdentity,
    /// The address is not a valid `host:port` or URI.
    #[error("invalid gRPC address {address:?}: {reason}")]
    Address {
        /// The address as given.
        address: String,
        /// Why it is invalid.
        reason: String,
    },
    /// tonic refused the TLS configuration (bad PEM, bad key, ...).
    #[error("TLS configuration: {0}")]
    Tls(#[source] tonic::transport::Error),
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Makes aws-lc-rs the process' rustls crypto provider unless one is set.
///
/// tonic's client falls back to its feature's provider, but its server asks
/// rustls for the process default, which rustls can only guess when exactly
/// one provider is compiled in. Installing it removes the guess.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first; keep that one.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// A server's certificate and key, and the CA its clients must be signed by.
///
/// Like Thanos' `--grpc-server-tls-{cert,key,client-ca}`: with a client CA,
/// every client must present a certificate that chains to it
/// (`tls.RequireAndVerifyClientCert`); without one, clients are not asked for
/// a certificate.
#[derive(Clone)]
pub struct ServerTls {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("client_auth", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// A certificate chain and private key, PEM-encoded.
    pub fn from_pem(cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        Self {
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
            client_ca_pem: None,
        }
    }

    /// Requires and verifies client certificates against these PEM CA certificates.
    pub fn with_client_ca_pem(mut self, ca_pem: impl Into<Vec<u8>>) -> Self {
        self.client_ca_pem = Some(ca_pem.into());
        self
    }

    /// Reads the PEM files, as Thanos' three `--grpc-server-tls-*` flags name them.
    pub fn from_files(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Self, Error> {
        let mut tls = Self::from_pem(read("certificate", cert)?, read("key", key)?);
        if let Some(ca) = client_ca {
            tls = tls.with_client_ca_pem(read("CA", ca)?);
        }
        Ok(tls)
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_cert(&self) -> bool {
        self.client_ca_pem.is_some()
    }

    /// The tonic configuration.
    pub fn config(&self) -> ServerTlsConfig {
        let mut config =
            ServerTlsConfig::new().identity(Identity::from_pem(&self.cert_pem, &self.key_pem));
        if let Some(ca) = &self.client_ca_pem {
            config = config
                .client_ca_root(Certificate::from_pem(ca))
                .client_auth_optional(false);
        }
        config
    }
}

/// How a client verifies the server and, for mutual TLS, identifies itself.
///
/// Like Thanos' `--grpc-client-tls-{ca,cert,key}` and `--grpc-client-server-name`.
/// Without a CA, the system's trust store is used, as Go does.
#[derive(Clone, Default)]
pub struct ClientTls {
    ca_pem: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    server_name: Option<String>,
    skip_verify: bool,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("custom_ca", &self.ca_pem.is_some())
            .field("client_cert", &self.identity.is_some())
            .field("server_name", &self.server_name)
            .field("skip_verify", &self.skip_verify)
            .finish()
    }
}

impl ClientTls {
    /// TLS that trusts the system's CAs and presents no client certificate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts only these PEM CA certificates.
    pub fn with_ca_pem(mut self, ca_pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(ca_pem.into());
        self
    }

    /// Presents this PEM certificate chain and key (mutual TLS).
    pub fn with_identity_pem(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.identity = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Verifies the server's certificate for this name instead of the host
    /// of the address (and sends it as SNI).
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Accepts any server certificate (Thanos' `--grpc-client-tls-skip-verify`):
    /// the connection is encrypted, and the server must hold the key of the
    /// certificate it shows, but nothing proves who it is. For test setups
    /// with self-signed certificates only; a client certificate is still
    /// presented when one is set. Connect with [`ClientOptions::connect_lazy`].
    pub fn with_insecure_skip_verify(mut self) -> Self {
        self.skip_verify = true;
        self
    }

    /// Whether [`ClientTls::with_insecure_skip_verify`] is set.
    pub fn skips_verification(&self) -> bool {
        self.skip_verify
    }

    /// Reads the PEM files; `cert` and `key` must be given together.
    pub fn from_files(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
        server_name: Option<&str>,
    ) -> Result<Self, Error> {
        let mut tls = Self::new();
        if let Some(ca) = ca {
            tls = tls.with_ca_pem(read("CA", ca)?);
        }
        match (cert, key) {
            (Some(cert), Some(key)) => {
                tls = tls.with_identity_pem(read("certificate", cert)?, read("key", key)?);
            }
            (None, None) => {}
            _ => return Err(Error::IncompleteIdentity),
        }
        if let Some(name) = server_name.filter(|n| !n.is_empty()) {
            tls = tls.with_server_name(name);
        }
        Ok(tls)
    }

    /// The tonic configuration.
    pub fn config(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new();
        config = match &self.ca_pem {
            Some(ca) => config.ca_certificate(Certificate::from_pem(ca)),
            None => config.with_native_roots(),
        };
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        if let Some(name) = &self.server_name {
            config = config.domain_name(name.clone());
        }
        config
    }
}

/// Options for a gRPC server. The defaults are Thanos'.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// TLS; `None` serves plaintext HTTP/2.
    pub tls: Option<ServerTls>,
    /// For [`MessageLimits::with_message_limits`] on each service.
    pub max_message_size: usize,
    /// Interval of the server's HTTP/2 pings on idle connections (Go: 2 h).
    pub keepalive_interval: Option<Duration>,
    /// How long to wait for a ping's answer before closing (Go: 20 s).
    pub keepalive_timeout: Duration,
    /// Connections are closed gracefully after this long, so clients redo the
    /// TLS handshake and rebalance (Thanos `--grpc-server-max-connection-age`: 60 m).
    pub max_connection_age: Option<Duration>,
    /// TCP keepalive on accepted sockets.
    pub tcp_keepalive: Option<Duration>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            tls: None,
            max_message_size: MAX_MESSAGE_SIZE,
            keepalive_interval: Some(Duration::from_secs(2 * 60 * 60)),
            keepalive_timeout: Duration::from_secs(20),
            max_connection_age: Some(Duration::from_secs(60 * 60)),
            tcp_keepalive: Some(Duration::from_secs(15)),
        }
    }
}

impl ServerOptions {
    /// A server builder with these options; add services to it and serve.
    ///
    /// Fails if the TLS certificate or key cannot be parsed.
    pub fn builder(&self) -> Result<Server, Error> {
        let mut server = Server::builder()
            .tcp_nodelay(true)
            .tcp_keepalive(self.tcp_keepalive)
            .http2_keepalive_interval(self.keepalive_interval)
            .http2_keepalive_timeout(Some(self.keepalive_timeout));
        if let Some(age) = self.max_connection_age {
            server = server.max_connection_age(age);
        }
        if let Some(tls) = &self.tls {
            install_crypto_provider();
            server = server.tls_config(tls.config()).map_err(Error::Tls)?;
        }
        Ok(server)
    }

    /// Accepted connections of `listener` with `TCP_NODELAY` and
    /// [`ServerOptions::tcp_keepalive`] set, for `serve_with_incoming*`.
    ///
    /// tonic ignores the builder's `tcp_nodelay`/`tcp_keepalive` for an
    /// incoming stream the caller supplies. Without `TCP_NODELAY` a response
    /// written in several small pieces (HTTP/2 headers, data, trailers) waits
    /// for the peer's delayed ACK: about 40 ms per call on Linux.
    pub fn incoming<L>(&self, listener: L) -> TcpIncoming
    where
        TcpIncoming: From<L>,
    {
        TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(self.tcp_keepalive)
    }
}

/// Options for a gRPC client connection. The defaults are Thanos'.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// TLS; `None` connects in plaintext.
    pub tls: Option<ClientTls>,
    /// For [`MessageLimits::with_message_limits`] on each client.
    pub max_message_size: usize,
    /// Interval of HTTP/2 pings while calls are in flight (Thanos: 10 s).
    ///
    /// Go servers refuse pings more often than their enforcement policy allows
    /// (Thanos: every 10 s; Go's default: every 5 min) and close the connection
    /// with `ENHANCE_YOUR_CALM`, so do not lower this for Go peers.
    pub keepalive_interval: Option<Duration>,
    /// How long to wait for a ping's answer before closing (Thanos: 5 s).
    pub keepalive_timeout: Duration,
    /// Limit on establishing the connection, TLS included.
    pub connect_timeout: Option<Duration>,
    /// TCP keepalive on the socket.
    pub tcp_keepalive: Option<Duration>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            tls: None,
            max_message_size: MAX_MESSAGE_SIZE,
            keepalive_interval: Some(Duration::from_secs(10)),
            keepalive_timeout: Duration::from_secs(5),
            connect_timeout: Some(Duration::from_secs(5)),
            tcp_keepalive: Some(Duration::from_secs(15)),
        }
    }
}

impl ClientOptions {
    /// An endpoint for `address`: `host:port` as Thanos takes it, or a URI.
    ///
    /// A bare `host:port` gets `https://` with TLS and `http://` without. An
    /// explicit scheme must agree with [`ClientOptions::tls`].
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, Error> {
        let bad = |reason: &str| Error::Address {
            address: address.to_string(),
            reason: reason.to_string(),
        };
        let uri = match address.split_once("://") {
            None if self.tls.is_some() => format!("https://{address}"),
            None => format!("http://{address}"),
            Some(("https", _)) if self.tls.is_none() => {
                return Err(bad("https:// needs TLS options"));
            }
            Some(("http", _)) if self.tls.is_some() => {
                return Err(bad("http:// would bypass the TLS options"));
            }
            Some(("http" | "https", _)) => address.to_string(),
            Some(_) => return Err(bad("scheme must be http or https")),
        };
        let mut endpoint = Endpoint::from_shared(uri).map_err(|e| bad(&e.to_string()))?;
        endpoint = endpoint
            .tcp_nodelay(true)
            .tcp_keepalive(self.tcp_keepalive)
            // Go servers count pings on connections without calls as abuse
            // (Thanos sets no PermitWithoutStream).
            .keep_alive_while_idle(false)
            .keep_alive_timeout(self.keepalive_timeout);
        if let Some(interval) = self.keepalive_interval {
            endpoint = endpoint.http2_keep_alive_interval(interval);
        }
        if let Some(timeout) = self.connect_timeout {
            endpoint = endpoint.connect_timeout(timeout);
        }
        if let Some(tls) = self.tls.as_ref().filter(|t| !t.skip_verify) {
            install_crypto_provider();
            endpoint = endpoint.tls_config(tls.config()).map_err(Error::Tls)?;
        }
        Ok(endpoint)
    }

    /// A channel to `address` that connects on first use and reconnects as needed.
    ///
    /// With [`ClientTls::with_insecure_skip_verify`] the TLS handshake is done
    /// by this crate's connector (tonic's TLS always verifies), so only
    /// channels made here honour it, not [`ClientOptions::endpoint`].
    pub fn connect_lazy(&self, address: &str) -> Result<Channel, Error> {
        match self.tls.as_ref().filter(|t| t.skip_verify) {
            None => Ok(self.endpoint(address)?.connect_lazy()),
            Some(tls) => {
                // The connector speaks TLS itself: tonic must see plain http.
                let plain = match address.split_once("://") {
                    Some((_, rest)) => format!("http://{rest}"),
                    None => format!("http://{address}"),
                };
                let without_tls = ClientOptions {
                    tls: None,
                    ..self.clone()
                };
                let endpoint = without_tls.endpoint(&plain)?;
                let connector = insecure::connector(tls)?;
                Ok(endpoint.connect_with_connector_lazy(connector))
            }
        }
    }
}

/// Sets a generated server's or client's message size limits (decoding and
/// encoding). Use [`MAX_MESSAGE_SIZE`] to match Thanos.
pub trait MessageLimits: Sized {
    /// Accept and send messages up to `max` bytes.
    fn with_message_limits(self, max: usize) -> Self;
}

macro_rules! server_limits {
    ($($server:ident: $service:path),* $(,)?) => {$(
        impl<T: $service> MessageLimits for $server<T> {
            fn with_message_limits(self, max: usize) -> Self {
                self.max_decoding_message_size(max).max_encoding_message_size(max)
            }
        }
    )*};
}

server_limits! {
    StoreServer: crate::thanos::store_server::Store,
    WriteableStoreServer: crate::thanos::writeable_store_server::WriteableStore,
    InfoServer: crate::thanos::info::info_server::Info,
    MetadataServer: crate::thanos::metadata_server::Metadata,
    QueryServer: crate::thanos::query_server::Query,
}

macro_rules! client_limits {
    ($($client:ident),* $(,)?) => {$(
        impl<T> MessageLimits for $client<T>
        where
            T: tonic::client::GrpcService<tonic::body::Body>,
            T::Error: Into<tonic::codegen::StdError>,
            T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
            <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
        {
            fn with_message_limits(self, max: usize) -> Self {
                self.max_decoding_message_size(max).max_encoding_message_size(max)
            }
        }
    )*};
}

client_limits!(
    StoreClient,
    WriteableStoreClient,
    InfoClient,
    MetadataClient,
    QueryClient
);

/// Sets the overall (`""`) status of a [`health_service`], as Thanos' probe does.
///
/// Per-service statuses go through [`HealthProbe::reporter`].
#[derive(Clone, Debug)]
pub struct HealthProbe {
    reporter: HealthReporter,
}

impl HealthProbe {
    /// Reports `SERVING`.
    pub async fn ready(&self) {
        self.reporter
            .set_service_status("", ServingStatus::Serving)
            .await;
    }

    /// Reports `NOT_SERVING`.
    pub async fn not_ready(&self) {
        self.reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
    }

    /// The underlying reporter, for per-service statuses.
    pub fn reporter(&self) -> &HealthReporter {
        &self.reporter
    }
}

/// The `grpc.health.v1.Health` service, starting `NOT_SERVING` until
/// [`HealthProbe::ready`], like Thanos' gRPC probe.
pub async fn health_service() -> (HealthProbe, HealthServer<HealthService>) {
    let reporter = HealthReporter::new();
    let probe = HealthProbe {
        reporter: reporter.clone(),
    };
    probe.not_ready().await;
    (
        probe,
        HealthServer::new(HealthService::from_health_reporter(reporter)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_scheme_follows_tls() {
        let plain = ClientOptions::default();
        assert_eq!(
            plain.endpoint("127.0.0.1:10901").unwrap().uri().to_string(),
            "http://127.0.0.1:10901/"
        );
        assert!(plain.endpoint("https://127.0.0.1:10901").is_err());
        assert!(plain.endpoint("unix:///tmp/x").is_err());

        let tls = ClientOptions {
            tls: Some(ClientTls::new()),
            ..ClientOptions::default()
        };
        assert_eq!(
            tls.endpoint("store.example:10901")
                .unwrap()
                .uri()
                .to_string(),
            "https://store.example:10901/"
        );
        assert!(tls.endpoint("http://store.example:10901").is_err());
    }

    #[test]
    fn identity_needs_cert_and_key() {
        let err = ClientTls::from_files(None, Some(Path::new("c.pem")), None, None).unwrap_err();
        assert!(matches!(err, Error::IncompleteIdentity));
    }

    #[test]
    fn missing_file_is_named() {
        let err = ServerTls::from_files(Path::new("/nonexistent/s.crt"), Path::new("k"), None)
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/s.crt"), "{err}");
    }

    #[test]
    fn defaults_match_thanos() {
        assert_eq!(MAX_MESSAGE_SIZE, 2_147_483_647);
        let client = ClientOptions::default();
        assert_eq!(client.keepalive_interval, Some(Duration::from_secs(10)));
        assert_eq!(client.keepalive_timeout, Duration::from_secs(5));
        let server = ServerOptions::default();
        assert_eq!(server.max_connection_age, Some(Duration::from_secs(3600)));
    }
}

/// `--grpc-client-tls-skip-verify`: a rustls client that accepts any server
/// certificate, and the connector that uses it.
mod insecure {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use tonic::transport::Uri;

    use super::{ClientTls, Error};

    /// Accepts every chain and name, but still checks the handshake
    /// signatures, so the server must own the key of the certificate it shows.
    #[derive(Debug)]
    struct AcceptAnyCertificate(Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    fn tls_error(reason: impl std::fmt::Display) -> Error {
        Error::Address {
            address: "TLS client configuration".to_string(),
            reason: reason.to_string(),
        }
    }

    type BoxError = Box<dyn std::error::Error + Send + Sync>;

    /// A tower connector: TCP (no delay), then a TLS handshake that offers
    /// only HTTP/2, as gRPC needs.
    pub(super) fn connector(
        tls: &ClientTls,
    ) -> Result<
        impl tower::Service<
                Uri,
                Response = hyper_util::rt::TokioIo<
                    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
                >,
                Error = BoxError,
                Future = impl Send,
            > + Clone
            + Send
            + 'static,
        Error,
    > {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)));
        let mut config = match &tls.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(tls_error)?;
                let key = PrivateKeyDer::from_pem_slice(key).map_err(tls_error)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(tls_error)?
            }
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let server_name = tls.server_name.clone();
        Ok(tower::service_fn(move |uri: Uri| {
            let connector = connector.clone();
            let server_name = server_name.clone();
            async move {
                let host = uri.host().ok_or("address without a host")?;
                let port = uri.port_u16().ok_or("address without a port")?;
                let tcp = tokio::net::TcpStream::connect((host, port)).await?;
                tcp.set_nodelay(true)?;
                let name = server_name.unwrap_or_else(|| {
                    host.trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_string()
                });
                let name = ServerName::try_from(name)?;
                let stream = connector.connect(name, tcp).await?;
                Ok::<_, BoxError>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
    }
}
