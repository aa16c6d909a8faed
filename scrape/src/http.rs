//! The HTTP side of a scrape: one client per scrape pool (job), built from
//! the job's `HttpClientConfig`, and the GET with Prometheus 2.42's headers
//! and limits.
//!
//! * `Accept` prefers OpenMetrics 1.0.0, then 0.0.1, then text 0.0.4,
//!   exactly the string Prometheus 2.42 sends.
//! * `Accept-Encoding: gzip`; a gzip body is decoded on the fly and the body
//!   size limit applies to the *decoded* bytes, as in Prometheus. Like
//!   Prometheus, a body whose size reaches the limit fails the scrape.
//! * `X-Prometheus-Scrape-Timeout-Seconds` tells exporters how long they
//!   have; the whole request (connect, headers, body) is bounded by the
//!   timeout.
//! * Credentials from files (`password_file`, `credentials_file`) are read
//!   on every scrape, so rotated secrets are picked up without a reload.
//!
//! TLS: without a `tls_config` the platform's roots are used (reqwest's
//! default). With one, we build the rustls config ourselves, because
//! `server_name` (verify the certificate against another name than the
//! address) has no reqwest knob: `ca_file` replaces the roots,
//! `cert_file`/`key_file` add a client certificate, `insecure_skip_verify`
//! skips verification.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::{HttpClientConfig, TlsConfig};

/// Prometheus 2.42's `scrapeAcceptHeader`.
pub const ACCEPT_HEADER: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Sent as `User-Agent`.
pub const USER_AGENT: &str = concat!("Strata/", env!("CARGO_PKG_VERSION"));

/// Why a fetch failed. The texts follow Prometheus' (they show up as
/// `lastError` in the targets API).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("server returned HTTP status {0}")]
    Status(String),
    #[error("body size limit exceeded")]
    BodySizeLimit,
    #[error("Get {url:?}: context deadline exceeded")]
    Timeout { url: String },
    #[error("Get {url:?}: {msg}")]
    Request { url: String, msg: String },
    #[error("{0}")]
    Config(String),
}

/// A scrape pool's HTTP client.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    cfg: Arc<HttpClientConfig>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

/// The body and `Content-Type` of a successful scrape.
#[derive(Debug)]
pub struct Fetched {
    pub body: Vec<u8>,
    pub content_type: String,
}

impl HttpClient {
    /// Builds the client. Fails on unreadable or invalid TLS files.
    pub fn new(cfg: &HttpClientConfig) -> Result<HttpClient, String> {
        let mut b = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            // Proxies from the environment would silently reroute scrapes;
            // Prometheus 2.42 ignores them too unless configured.
            .no_proxy()
            .redirect(if cfg.follow_redirects {
                reqwest::redirect::Policy::limited(10)
            } else {
                reqwest::redirect::Policy::none()
            });
        if !cfg.tls_config.is_default() {
            b = b.use_preconfigured_tls(rustls_config(&cfg.tls_config)?);
        }
        let client = b
            .build()
            .map_err(|e| format!("building HTTP client: {e}"))?;
        Ok(HttpClient {
            client,
            cfg: Arc::new(cfg.clone()),
        })
    }

    /// GETs `url` and returns the decoded body.
    pub async fn fetch(
        &self,
        url: &str,
        timeout: Duration,
        body_size_limit: u64,
    ) -> Result<Fetched, FetchError> {
        let fut = self.fetch_inner(url, timeout, body_size_limit);
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout {
                url: url.to_string(),
            }),
        }
    }

    async fn fetch_inner(
        &self,
        url: &str,
        timeout: Duration,
        body_size_limit: u64,
    ) -> Result<Fetched, FetchError> {
        let req_err = |msg: String| FetchError::Request {
            url: url.to_string(),
            msg,
        };
        let mut req = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, ACCEPT_HEADER)
            .header(reqwest::header::ACCEPT_ENCODING, "gzip")
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                timeout.as_secs_f64().to_string(),
            );
        if let Some(b) = &self.cfg.basic_auth {
            let password = match &b.password_file {
                Some(f) => read_secret_file(f).map_err(FetchError::Config)?,
                None => b.password.expose().to_string(),
            };
            req = req.basic_auth(&b.username, Some(password));
        }
        if let Some(a) = &self.cfg.authorization {
            let creds = match &a.credentials_file {
                Some(f) => read_secret_file(f).map_err(FetchError::Config)?,
                None => a.credentials.expose().to_string(),
            };
            req = req.header(
                reqwest::header::AUTHORIZATION,
                format!("{} {}", a.r#type, creds),
            );
        }
        let mut resp = req.send().await.map_err(|e| req_err(error_chain(&e)))?;
        let status = resp.status();
        if status != reqwest::StatusCode::OK {
            return Err(FetchError::Status(format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )));
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let limit = if body_size_limit == 0 {
            u64::MAX
        } else {
            body_size_limit
        };
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| req_err(error_chain(&e)))? {
            if body.len() as u64 + chunk.len() as u64 >= limit {
                return Err(FetchError::BodySizeLimit);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched { body, content_type })
    }
}

/// reqwest's top-level error ("error sending request for url (...)")
/// repeats the URL we already print; the causes have the useful part
/// ("connection refused", "invalid peer certificate: UnknownIssuer").
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cur {
        let m = c.to_string();
        if !m.starts_with("error sending request")
            && !m.starts_with("error decoding response body")
            && !parts.iter().any(|p| p.contains(&m))
        {
            parts.push(m);
        }
        cur = c.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

pub(crate) fn read_secret_file(p: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("unable to read {}: {e}", p.display()))
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds the rustls client config for a `tls_config`.
pub(crate) fn rustls_config(t: &TlsConfig) -> Result<rustls::ClientConfig, String> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = if t.insecure_skip_verify {
        Arc::new(NoVerify(provider.clone()))
    } else {
        let inner: Arc<dyn ServerCertVerifier> = match &t.ca_file {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(ca).map_err(|e| {
                    format!("unable to load specified CA cert {}: {e}", ca.display())
                })?;
                for c in certs {
                    let c = c.map_err(|e| {
                        format!("unable to load specified CA cert {}: {e}", ca.display())
                    })?;
                    roots
                        .add(c)
                        .map_err(|e| format!("invalid CA cert in {}: {e}", ca.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!(
                        "unable to use specified CA cert {}: no certificates found",
                        ca.display()
                    ));
                }
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .map_err(|e| format!("TLS: {e}"))?
            }
            None => Arc::new(
                rustls_platform_verifier::Verifier::new(provider.clone())
                    .map_err(|e| format!("TLS: {e}"))?,
            ),
        };
        match &t.server_name {
            Some(name) => {
                let name = ServerName::try_from(name.clone())
                    .map_err(|e| format!("invalid server_name {name:?}: {e}"))?;
                Arc::new(OverrideName { inner, name })
            }
            None => inner,
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match (&t.cert_file, &t.key_file) {
        (Some(cert), Some(key)) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("unable to load client cert {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("unable to load client key {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("TLS client certificate: {e}"))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// Verifies the server certificate against a configured name instead of
/// the name in the URL (Go's `tls.Config.ServerName`).
#[derive(Debug)]
pub(crate) struct OverrideName {
    pub(crate) inner: Arc<dyn ServerCertVerifier>,
    pub(crate) name: ServerName<'static>,
}

impl ServerCertVerifier for OverrideName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure_skip_verify`: accepts any certificate, but still checks that
/// the handshake is signed by it.
#[derive(Debug)]
pub(crate) struct NoVerify(pub(crate) Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
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
