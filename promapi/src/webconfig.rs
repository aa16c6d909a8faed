//! Prometheus' web configuration file (`--web.config.file`, Thanos'
//! `--http.config`): TLS, extra response headers and basic auth for any of
//! Strata's HTTP servers.
//!
//! The file has the exporter-toolkit format Prometheus 2.42 reads:
//!
//! ```yaml
//! tls_server_config:            # absent: plain HTTP
//!   cert_file: server.crt       # relative paths are relative to the file
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: ca.crt
//!   min_version: TLS12          # TLS12 | TLS13 (TLS10/TLS11 mean TLS12 here)
//!   max_version: TLS13
//!   cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]   # TLS 1.2 only
//!   curve_preferences: [X25519, CurveP256]
//! http_server_config:
//!   http2: true
//!   headers: {Strict-Transport-Security: max-age=31536000}
//! basic_auth_users:
//!   alice: $2y$10$...           # bcrypt hashes
//! ```
//!
//! Main types:
//! - [`WebConfig`]: one parsed and validated file. [`WebConfig::parse`]
//!   rejects unknown fields (with line and column), headers outside
//!   exporter-toolkit's allow list, malformed bcrypt hashes and TLS settings
//!   rustls cannot honour (TLS 1.0/1.1 only, CBC or RSA-key-exchange cipher
//!   suites, CurveP521), each error naming the field.
//! - [`WebConfigFile`]: the file on disk as a server uses it. It is read and
//!   fully validated (certificates and keys loaded) by
//!   [`WebConfigFile::open`] at startup, then, like exporter-toolkit, read
//!   again for every request (headers, users) and every TLS connection
//!   (certificates, client CA, TLS settings), so rotated certificates and
//!   changed users apply without a restart. Parsing and certificate loading
//!   only happen when the bytes changed. Whether the listener speaks TLS at
//!   all is decided at startup; a file that turns invalid at run time makes
//!   requests answer 500 and handshakes fail (logged), as exporter-toolkit
//!   does, until it is fixed.
//! - [`TlsListener`]: an `axum::serve::Listener` that accepts TCP and runs
//!   TLS handshakes concurrently (bounded, with a timeout) so one slow client
//!   cannot hold the accept loop.
//! - [`middleware`]: the axum middleware adding the configured headers and
//!   checking basic auth (401 with `WWW-Authenticate: Basic` otherwise).
//!   bcrypt is slow on purpose; verified `(user, hash, password)` results
//!   are cached (bounded, keyed by their SHA-256) and misses are verified
//!   one at a time on a blocking thread, as exporter-toolkit does.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use parking_lot::Mutex;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{SupportedKxGroup, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme, SupportedCipherSuite};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

/// Why a web configuration is invalid or could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("web config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("web config: line {line}, column {column}: {message}")]
    Yaml {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("web config: {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("web config: TLS config is not present")]
    NoTls,
}

impl WebConfigError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        WebConfigError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The offending field (`tls_server_config.client_auth_type`), when
    /// known.
    pub fn field(&self) -> Option<&str> {
        match self {
            WebConfigError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// `client_auth_type`: Go's `tls.ClientAuthType` names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    #[default]
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    fn parse(s: &str) -> Option<ClientAuth> {
        Some(match s {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            // "RequireClientCert" is exporter-toolkit's old spelling.
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            _ => return None,
        })
    }
}

/// TLS protocol versions as the file names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl TlsVersion {
    fn parse(s: &str) -> Option<TlsVersion> {
        Some(match s {
            "TLS10" => TlsVersion::Tls10,
            "TLS11" => TlsVersion::Tls11,
            "TLS12" => TlsVersion::Tls12,
            "TLS13" => TlsVersion::Tls13,
            _ => return None,
        })
    }
}

/// `tls_server_config`, validated; paths are absolute or relative to the
/// process, already joined with the file's directory.
#[derive(Clone, Debug)]
pub struct TlsServerConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_auth: ClientAuth,
    pub client_ca_file: Option<PathBuf>,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// TLS 1.2 suites to offer, in preference order; empty: rustls' defaults.
    pub cipher_suites: Vec<SupportedCipherSuite>,
    /// Key exchange groups in preference order; empty: rustls' defaults.
    pub curves: Vec<&'static dyn SupportedKxGroup>,
    pub prefer_server_cipher_suites: bool,
}

/// `http_server_config`.
#[derive(Clone, Debug)]
pub struct HttpServerConfig {
    /// Offer HTTP/2 over TLS (ALPN `h2`). Default true.
    pub http2: bool,
    /// Added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        HttpServerConfig {
            http2: true,
            headers: Vec::new(),
        }
    }
}

/// One parsed, validated web configuration file.
#[derive(Clone, Debug, Default)]
pub struct WebConfig {
    /// `None`: the server speaks plain HTTP.
    pub tls: Option<TlsServerConfig>,
    pub http: HttpServerConfig,
    /// User name → bcrypt hash. Empty: no authentication.
    pub users: BTreeMap<String, String>,
}

// ---- the file as written ---------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    cert_file: String,
    #[serde(default)]
    key_file: String,
    #[serde(default)]
    client_auth_type: String,
    #[serde(default)]
    client_ca_file: String,
    #[serde(default)]
    cipher_suites: Vec<String>,
    #[serde(default)]
    curve_preferences: Vec<String>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// The headers exporter-toolkit lets a web config set, with the values it
/// allows (empty: any value).
const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// Go's names of the TLS 1.2 suites rustls implements.
fn rustls_suite(name: &str) -> Option<SupportedCipherSuite> {
    use rustls::crypto::aws_lc_rs::cipher_suite as cs;
    Some(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

/// Go's TLS 1.3 suite names: accepted and ignored, as in Go, where TLS 1.3
/// suites are not configurable.
const TLS13_SUITES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Suites Go knows that rustls deliberately does not implement.
const GO_ONLY_SUITES: &[&str] = &[
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

fn rustls_curve(name: &str) -> Result<&'static dyn SupportedKxGroup, String> {
    use rustls::crypto::aws_lc_rs::kx_group as kx;
    match name {
        "X25519" => Ok(kx::X25519),
        "CurveP256" => Ok(kx::SECP256R1),
        "CurveP384" => Ok(kx::SECP384R1),
        "CurveP521" => Err("CurveP521 is not supported by rustls".into()),
        other => Err(format!(
            "unknown curve: {other} (want X25519, CurveP256 or CurveP384)"
        )),
    }
}

/// Checks the shape of a bcrypt hash (`$2a$`, `$2b$`, `$2x$` or `$2y$`, a
/// cost of 4..=31, 53 characters of bcrypt base64), like Go's `bcrypt.Cost`.
fn check_bcrypt(hash: &str) -> Result<(), String> {
    let bad = || {
        "not a bcrypt hash (want $2y$<cost>$<53 characters>, e.g. from htpasswd -nBC 10)"
            .to_string()
    };
    let rest = ["$2a$", "$2b$", "$2x$", "$2y$"]
        .iter()
        .find_map(|p| hash.strip_prefix(p))
        .ok_or_else(bad)?;
    let (cost, rest) = rest.split_once('$').ok_or_else(bad)?;
    if cost.len() != 2 {
        return Err(bad());
    }
    let cost: u32 = cost.parse().map_err(|_| bad())?;
    if !(4..=31).contains(&cost) {
        return Err(format!("bcrypt cost {cost} outside 4..=31"));
    }
    let b64 = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '/';
    if rest.len() != 53 || !rest.chars().all(b64) {
        return Err(bad());
    }
    Ok(())
}

fn join_dir(dir: Option<&Path>, p: &str) -> PathBuf {
    let p = Path::new(p);
    match dir {
        Some(d) if p.is_relative() => d.join(p),
        _ => p.to_path_buf(),
    }
}

impl WebConfig {
    /// Parses and validates `text`; relative file names are resolved
    /// against `dir` (the file's directory). Certificate files are not read
    /// here (see [`WebConfig::tls_server_config`]).
    pub fn parse(text: &str, dir: Option<&Path>) -> Result<WebConfig, WebConfigError> {
        let raw: Option<RawConfig> = serde_saphyr::from_str(text).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line() as usize, l.column() as usize))
                .unwrap_or((0, 0));
            let full = e.without_snippet().to_string();
            let message = match full.rfind(" at line ") {
                Some(i) => full[..i].to_string(),
                None => full,
            };
            WebConfigError::Yaml {
                line,
                column,
                message,
            }
        })?;
        let raw = raw.unwrap_or_default();
        let mut cfg = WebConfig::default();

        if let Some(h) = raw.http_server_config {
            cfg.http.http2 = h.http2.unwrap_or(true);
            for (k, v) in h.headers {
                let field = format!("http_server_config.headers.{k}");
                let Some((_, allowed)) = ALLOWED_HEADERS.iter().find(|(n, _)| *n == k) else {
                    return Err(WebConfigError::invalid(
                        field,
                        format!("HTTP header {k:?} can not be configured"),
                    ));
                };
                if !allowed.is_empty() && !allowed.contains(&v.as_str()) {
                    return Err(WebConfigError::invalid(
                        field,
                        format!("invalid value {v:?}; expected one of {allowed:?}"),
                    ));
                }
                let name = HeaderName::from_bytes(k.as_bytes())
                    .map_err(|e| WebConfigError::invalid(&field, e.to_string()))?;
                let value = HeaderValue::from_str(&v)
                    .map_err(|e| WebConfigError::invalid(&field, e.to_string()))?;
                cfg.http.headers.push((name, value));
            }
        }

        for (user, hash) in raw.basic_auth_users.unwrap_or_default() {
            check_bcrypt(&hash)
                .map_err(|m| WebConfigError::invalid(format!("basic_auth_users.{user}"), m))?;
            cfg.users.insert(user, hash);
        }

        if let Some(t) = raw.tls_server_config {
            cfg.tls = parse_tls(t, dir)?;
        }
        Ok(cfg)
    }

    /// Reads the certificate, key and client CA files and builds the rustls
    /// configuration. `Err(NoTls)` when the file has no TLS section.
    pub fn tls_server_config(&self) -> Result<Arc<rustls::ServerConfig>, WebConfigError> {
        let t = self.tls.as_ref().ok_or(WebConfigError::NoTls)?;
        build_tls(t, self.http.http2)
    }
}

fn parse_tls(t: RawTls, dir: Option<&Path>) -> Result<Option<TlsServerConfig>, WebConfigError> {
    const F: &str = "tls_server_config";
    // exporter-toolkit: a section without any of these is "no TLS".
    if t.cert_file.is_empty()
        && t.key_file.is_empty()
        && t.client_auth_type.is_empty()
        && t.client_ca_file.is_empty()
    {
        return Ok(None);
    }
    if t.cert_file.is_empty() {
        return Err(WebConfigError::invalid(
            format!("{F}.cert_file"),
            "missing cert_file",
        ));
    }
    if t.key_file.is_empty() {
        return Err(WebConfigError::invalid(
            format!("{F}.key_file"),
            "missing key_file",
        ));
    }
    let client_auth = ClientAuth::parse(&t.client_auth_type).ok_or_else(|| {
        WebConfigError::invalid(
            format!("{F}.client_auth_type"),
            format!(
                "invalid client_auth_type {:?} (want NoClientCert, RequestClientCert, \
                 RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert)",
                t.client_auth_type
            ),
        )
    })?;
    let client_ca_file = (!t.client_ca_file.is_empty()).then(|| join_dir(dir, &t.client_ca_file));
    if client_ca_file.is_some() && client_auth == ClientAuth::NoClientCert {
        return Err(WebConfigError::invalid(
            format!("{F}.client_ca_file"),
            "client CAs have been configured without a client auth policy (client_auth_type)",
        ));
    }
    if client_ca_file.is_none()
        && matches!(
            client_auth,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    {
        // Go would fall back to the system roots; verifying client
        // certificates against public CAs is never what is meant.
        return Err(WebConfigError::invalid(
            format!("{F}.client_ca_file"),
            format!(
                "client_auth_type {} needs client_ca_file",
                t.client_auth_type
            ),
        ));
    }
    let version = |field: &str, v: Option<String>, default: TlsVersion| match v {
        None => Ok(default),
        Some(s) => TlsVersion::parse(&s).ok_or_else(|| {
            WebConfigError::invalid(
                format!("{F}.{field}"),
                format!("unknown TLS version: {s} (want TLS10, TLS11, TLS12 or TLS13)"),
            )
        }),
    };
    let min_version = version("min_version", t.min_version, TlsVersion::Tls12)?;
    let max_version = version("max_version", t.max_version, TlsVersion::Tls13)?;
    if max_version < TlsVersion::Tls12 {
        return Err(WebConfigError::invalid(
            format!("{F}.max_version"),
            "rustls supports TLS 1.2 and 1.3 only; max_version must be TLS12 or TLS13",
        ));
    }
    if min_version > max_version {
        return Err(WebConfigError::invalid(
            format!("{F}.min_version"),
            "min_version is above max_version",
        ));
    }
    let mut cipher_suites = Vec::new();
    for name in &t.cipher_suites {
        let field = format!("{F}.cipher_suites");
        if let Some(s) = rustls_suite(name) {
            cipher_suites.push(s);
        } else if TLS13_SUITES.contains(&name.as_str()) {
            continue;
        } else if GO_ONLY_SUITES.contains(&name.as_str()) {
            return Err(WebConfigError::invalid(
                field,
                format!(
                    "cipher suite {name} is not supported by rustls (only ECDHE with AES-GCM \
                     or ChaCha20-Poly1305)"
                ),
            ));
        } else {
            return Err(WebConfigError::invalid(
                field,
                format!("unknown cipher: {name}"),
            ));
        }
    }
    if !t.cipher_suites.is_empty() && cipher_suites.is_empty() && min_version < TlsVersion::Tls13 {
        // Only TLS 1.3 names were given: TLS 1.2 would have no suite.
        return Err(WebConfigError::invalid(
            format!("{F}.cipher_suites"),
            "no TLS 1.2 cipher suite left; set min_version: TLS13 or list TLS 1.2 suites",
        ));
    }
    let mut curves = Vec::new();
    for name in &t.curve_preferences {
        curves.push(
            rustls_curve(name)
                .map_err(|m| WebConfigError::invalid(format!("{F}.curve_preferences"), m))?,
        );
    }
    Ok(Some(TlsServerConfig {
        cert_file: join_dir(dir, &t.cert_file),
        key_file: join_dir(dir, &t.key_file),
        client_auth,
        client_ca_file,
        min_version,
        max_version,
        cipher_suites,
        curves,
        prefer_server_cipher_suites: t.prefer_server_cipher_suites.unwrap_or(true),
    }))
}

fn read_file(field: &str, path: &Path) -> Result<Vec<u8>, WebConfigError> {
    std::fs::read(path)
        .map_err(|e| WebConfigError::invalid(field, format!("reading {}: {e}", path.display())))
}

fn build_tls(
    t: &TlsServerConfig,
    http2: bool,
) -> Result<Arc<rustls::ServerConfig>, WebConfigError> {
    const F: &str = "tls_server_config";
    let cert_pem = read_file(&format!("{F}.cert_file"), &t.cert_file)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            WebConfigError::invalid(
                format!("{F}.cert_file"),
                format!("{}: {e}", t.cert_file.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(WebConfigError::invalid(
            format!("{F}.cert_file"),
            format!("{}: no PEM certificate found", t.cert_file.display()),
        ));
    }
    let key_pem = read_file(&format!("{F}.key_file"), &t.key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        WebConfigError::invalid(
            format!("{F}.key_file"),
            format!("{}: no usable PEM private key: {e}", t.key_file.display()),
        )
    })?;

    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if !t.cipher_suites.is_empty() {
        // The listed TLS 1.2 suites in order, then every TLS 1.3 suite.
        let tls13: Vec<_> = provider
            .cipher_suites
            .iter()
            .copied()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .collect();
        provider.cipher_suites = t.cipher_suites.iter().copied().chain(tls13).collect();
    }
    if !t.curves.is_empty() {
        provider.kx_groups = t.curves.clone();
    }
    let provider = Arc::new(provider);

    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if t.min_version <= TlsVersion::Tls12 && t.max_version >= TlsVersion::Tls12 {
        versions.push(&rustls::version::TLS12);
    }
    if t.max_version >= TlsVersion::Tls13 {
        versions.push(&rustls::version::TLS13);
    }

    let verifier: Arc<dyn ClientCertVerifier> = match t.client_auth {
        ClientAuth::NoClientCert => WebPkiClientVerifier::no_client_auth(),
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => {
            Arc::new(AnyClientCert {
                mandatory: t.client_auth == ClientAuth::RequireAnyClientCert,
                algs: provider.signature_verification_algorithms,
            })
        }
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            let field = format!("{F}.client_ca_file");
            let path = t
                .client_ca_file
                .as_ref()
                .ok_or_else(|| WebConfigError::invalid(&field, "missing client_ca_file"))?;
            let pem = read_file(&field, path)?;
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&pem) {
                let c = c.map_err(|e| {
                    WebConfigError::invalid(&field, format!("{}: {e}", path.display()))
                })?;
                roots.add(c).map_err(|e| {
                    WebConfigError::invalid(&field, format!("{}: {e}", path.display()))
                })?;
            }
            if roots.is_empty() {
                return Err(WebConfigError::invalid(
                    &field,
                    format!("{}: no PEM certificate found", path.display()),
                ));
            }
            let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let b = if t.client_auth == ClientAuth::VerifyClientCertIfGiven {
                b.allow_unauthenticated()
            } else {
                b
            };
            b.build()
                .map_err(|e| WebConfigError::invalid(&field, e.to_string()))?
        }
    };

    let mut sc = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| WebConfigError::invalid(F, e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| {
            WebConfigError::invalid(
                format!("{F}.key_file"),
                format!(
                    "{} does not match {}: {e}",
                    t.key_file.display(),
                    t.cert_file.display()
                ),
            )
        })?;
    sc.ignore_client_order = t.prefer_server_cipher_suites;
    sc.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(sc))
}

/// `RequestClientCert` / `RequireAnyClientCert`: a client certificate is
/// asked for (and required for the latter) but not verified against any CA;
/// its handshake signature is still checked.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

// ---- the file at run time --------------------------------------------------

/// The last successfully parsed state, keyed by the bytes it came from.
struct Cached {
    bytes: Vec<u8>,
    config: Arc<WebConfig>,
}

struct CachedTls {
    /// The web config's bytes followed by the certificate, key and CA
    /// files' bytes: any change rebuilds.
    key: Vec<u8>,
    config: Arc<rustls::ServerConfig>,
}

/// Bound of the basic-auth result cache (exporter-toolkit keeps 100).
const AUTH_CACHE_SIZE: usize = 100;

/// The web configuration file of a running server; see the module docs for
/// when it is read.
pub struct WebConfigFile {
    path: PathBuf,
    cached: Mutex<Cached>,
    tls: Mutex<Option<CachedTls>>,
    /// SHA-256 of (user, hash, password) → verified.
    auth_cache: Mutex<HashMap<Vec<u8>, bool>>,
    /// bcrypt is CPU-heavy: one verification at a time.
    bcrypt_gate: tokio::sync::Mutex<()>,
    /// What unknown users are checked against (see `authenticate`).
    dummy_hash: String,
}

impl std::fmt::Debug for WebConfigFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfigFile")
            .field("path", &self.path)
            .finish()
    }
}

fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<WebConfig, WebConfigError> {
    let text = std::str::from_utf8(bytes).map_err(|e| WebConfigError::Read {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, e),
    })?;
    WebConfig::parse(text, path.parent())
}

impl WebConfigFile {
    /// Reads and validates the file, including its certificates, keys and
    /// client CA (exporter-toolkit's startup validation).
    pub fn open(path: impl Into<PathBuf>) -> Result<Arc<WebConfigFile>, WebConfigError> {
        let path = path.into();
        let bytes = std::fs::read(&path).map_err(|source| WebConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let config = Arc::new(parse_bytes(&path, &bytes)?);
        let file = WebConfigFile {
            path,
            cached: Mutex::new(Cached {
                bytes,
                config: config.clone(),
            }),
            tls: Mutex::new(None),
            auth_cache: Mutex::new(HashMap::new()),
            bcrypt_gate: tokio::sync::Mutex::new(()),
            dummy_hash: dummy_hash(),
        };
        if config.tls.is_some() {
            file.tls_config()?;
        }
        Ok(Arc::new(file))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration as the file says now (re-parsed only when its bytes
    /// changed).
    pub fn current(&self) -> Result<Arc<WebConfig>, WebConfigError> {
        let bytes = std::fs::read(&self.path).map_err(|source| WebConfigError::Read {
            path: self.path.clone(),
            source,
        })?;
        let mut c = self.cached.lock();
        if c.bytes != bytes {
            let config = Arc::new(parse_bytes(&self.path, &bytes)?);
            *c = Cached { bytes, config };
        }
        Ok(c.config.clone())
    }

    /// Whether the server should listen with TLS (decided at startup).
    pub fn tls_enabled(&self) -> bool {
        self.cached.lock().config.tls.is_some()
    }

    /// The rustls configuration for a new connection, rebuilt when the web
    /// config or any file it names changed.
    pub fn tls_config(&self) -> Result<Arc<rustls::ServerConfig>, WebConfigError> {
        let cfg = self.current()?;
        let t = cfg.tls.as_ref().ok_or(WebConfigError::NoTls)?;
        let mut key = self.cached.lock().bytes.clone();
        for (field, p) in [
            ("cert_file", Some(&t.cert_file)),
            ("key_file", Some(&t.key_file)),
            ("client_ca_file", t.client_ca_file.as_ref()),
        ] {
            if let Some(p) = p {
                key.push(0);
                key.extend(read_file(&format!("tls_server_config.{field}"), p)?);
            }
        }
        let mut cached = self.tls.lock();
        if let Some(c) = cached.as_ref() {
            if c.key == key {
                return Ok(c.config.clone());
            }
        }
        let config = cfg.tls_server_config()?;
        *cached = Some(CachedTls {
            key,
            config: config.clone(),
        });
        Ok(config)
    }

    /// Checks `user:pass` against the configured users; see the module docs.
    async fn authenticate(&self, cfg: &WebConfig, user: &str, pass: &str) -> bool {
        // A user that does not exist still costs one bcrypt run, against
        // the hash of a random password, so timing does not reveal which
        // users exist.
        let (hash, known) = match cfg.users.get(user) {
            Some(h) => (h.as_str(), true),
            None => (self.dummy_hash.as_str(), false),
        };
        let key = cache_key(user, hash, pass);
        if let Some(ok) = self.auth_cache.lock().get(&key).copied() {
            return ok && known;
        }
        let ok = {
            let _gate = self.bcrypt_gate.lock().await;
            let (p, h) = (pass.to_string(), hash.to_string());
            tokio::task::spawn_blocking(move || bcrypt::verify(p, &h).unwrap_or(false))
                .await
                .unwrap_or(false)
        } && known;
        let mut cache = self.auth_cache.lock();
        if cache.len() >= AUTH_CACHE_SIZE {
            // Drop about a tenth, in HashMap (randomized) order, so eviction
            // does not run on every miss.
            let drop: Vec<_> = cache
                .keys()
                .take(AUTH_CACHE_SIZE / 10 + 1)
                .cloned()
                .collect();
            for k in drop {
                cache.remove(&k);
            }
        }
        cache.insert(key, ok);
        ok
    }
}

/// A cost-10 hash (the usual cost of users' hashes) of a random password.
fn dummy_hash() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    let secret = format!("{:016x}", h.finish());
    // Only fails for a cost outside 4..=31.
    bcrypt::hash(secret, 10).unwrap_or_default()
}

/// SHA-256 over the length-prefixed parts, so the cache holds no password.
fn cache_key(user: &str, hash: &str, pass: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(user.len() + hash.len() + pass.len() + 24);
    for part in [user, hash, pass] {
        buf.extend((part.len() as u64).to_be_bytes());
        buf.extend(part.as_bytes());
    }
    let suite = rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256;
    match suite.tls13() {
        Some(s) => s.common.hash_provider.hash(&buf).as_ref().to_vec(),
        // Not reachable with aws-lc-rs; fall back to the bytes themselves.
        None => buf,
    }
}

/// `user`, `password` from an `Authorization: Basic` header (Go's
/// `Request.BasicAuth`).
fn basic_auth(req: &Request) -> Option<(String, String)> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let scheme = v.get(..6)?;
    if !scheme.eq_ignore_ascii_case("Basic ") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.get(6..)?.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn text(status: StatusCode) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        format!("{}\n", status.canonical_reason().unwrap_or("")),
    )
        .into_response()
}

/// The axum middleware: `router.layer(axum::middleware::from_fn_with_state(
/// file, webconfig::middleware))`, outermost so it covers every route.
pub async fn middleware(
    State(file): State<Arc<WebConfigFile>>,
    req: Request,
    next: Next,
) -> Response {
    let cfg = match file.current() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "unable to read the web config file");
            return text(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    let mut resp = if cfg.users.is_empty() {
        next.run(req).await
    } else {
        match basic_auth(&req) {
            Some((u, p)) if file.authenticate(&cfg, &u, &p).await => next.run(req).await,
            _ => {
                let mut r = text(StatusCode::UNAUTHORIZED);
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
                r
            }
        }
    };
    for (k, v) in &cfg.http.headers {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

// ---- TLS listener ----------------------------------------------------------

/// TLS handshakes in progress at once; more connections wait in the kernel's
/// accept queue.
const MAX_HANDSHAKES: usize = 256;
/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An `axum::serve::Listener` serving TLS with the web config's current
/// settings. Handshakes run on their own tasks; dropping the listener stops
/// accepting.
pub struct TlsListener {
    local: SocketAddr,
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsListener {
    /// Wraps a bound listener. `tap` runs on each accepted TCP stream (for
    /// `TCP_NODELAY` and the like).
    pub fn new(
        listener: TcpListener,
        file: Arc<WebConfigFile>,
        tap: fn(&mut TcpStream),
    ) -> io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(accept_loop(listener, file, tap, tx));
        Ok(TlsListener { local, rx, task })
    }
}

async fn accept_loop(
    listener: TcpListener,
    file: Arc<WebConfigFile>,
    tap: fn(&mut TcpStream),
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (mut tcp, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = tx.closed() => return,
        };
        tap(&mut tcp);
        let file = file.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let f = file.clone();
            let cfg = match tokio::task::spawn_blocking(move || f.tls_config()).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "TLS config unusable; dropping connection");
                    return;
                }
                Err(_) => return,
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, addr)).await;
                }
                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Some(c) = self.rx.recv().await {
                return c;
            }
            // The accept task ended (it only does when the channel closes);
            // park rather than spin.
            std::future::pending::<()>().await;
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> WebConfigError {
        WebConfig::parse(text, None).expect_err(text)
    }

    #[test]
    fn empty_and_plain_files() {
        let c = WebConfig::parse("", None).unwrap();
        assert!(c.tls.is_none() && c.users.is_empty() && c.http.http2);
        let c = WebConfig::parse("tls_server_config: {}\n", None).unwrap();
        assert!(c.tls.is_none());
    }

    #[test]
    fn unknown_fields_are_named_with_their_line() {
        let e = err("tls_server_config:\n  cert_file: a\n  key_file: b\n  bogus: 1\n");
        let s = e.to_string();
        assert!(s.contains("bogus") && s.contains("line 4"), "{s}");
        assert!(err("basic_auth: {}\n").to_string().contains("basic_auth"));
    }

    #[test]
    fn tls_fields_are_validated() {
        let base = "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n";
        assert_eq!(
            err("tls_server_config:\n  key_file: k\n").field(),
            Some("tls_server_config.cert_file")
        );
        let e = err(&format!("{base}  client_auth_type: Sometimes\n"));
        assert_eq!(e.field(), Some("tls_server_config.client_auth_type"));
        let e = err(&format!("{base}  client_ca_file: ca.pem\n"));
        assert_eq!(e.field(), Some("tls_server_config.client_ca_file"));
        let e = err(&format!(
            "{base}  client_auth_type: RequireAndVerifyClientCert\n"
        ));
        assert_eq!(e.field(), Some("tls_server_config.client_ca_file"));
        let e = err(&format!("{base}  max_version: TLS11\n"));
        assert_eq!(e.field(), Some("tls_server_config.max_version"));
        let e = err(&format!("{base}  min_version: TLS14\n"));
        assert_eq!(e.field(), Some("tls_server_config.min_version"));
        let e = err(&format!(
            "{base}  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n"
        ));
        assert!(e.to_string().contains("not supported by rustls"), "{e}");
        let e = err(&format!("{base}  cipher_suites: [NOPE]\n"));
        assert!(e.to_string().contains("unknown cipher"), "{e}");
        let e = err(&format!("{base}  curve_preferences: [CurveP521]\n"));
        assert_eq!(e.field(), Some("tls_server_config.curve_preferences"));
        let c = WebConfig::parse(
            &format!(
                "{base}  min_version: TLS13\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n  \
                 curve_preferences: [X25519, CurveP256]\n"
            ),
            Some(Path::new("/etc/strata")),
        )
        .unwrap();
        let t = c.tls.unwrap();
        assert_eq!(t.cert_file, Path::new("/etc/strata/c.pem"));
        assert_eq!(t.min_version, TlsVersion::Tls13);
        assert_eq!(t.curves.len(), 2);
        assert!(t.cipher_suites.is_empty());
    }

    #[test]
    fn headers_follow_the_allow_list() {
        let e = err("http_server_config:\n  headers:\n    Server: strata\n");
        assert_eq!(e.field(), Some("http_server_config.headers.Server"));
        let e = err("http_server_config:\n  headers:\n    X-Frame-Options: allow\n");
        assert!(e.to_string().contains("expected one of"), "{e}");
        let c = WebConfig::parse(
            "http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n",
            None,
        )
        .unwrap();
        assert!(!c.http.http2);
        assert_eq!(c.http.headers[0].1, "deny");
    }

    #[test]
    fn bcrypt_hashes_are_checked() {
        let good = bcrypt::hash("secret", 4).unwrap();
        let c = WebConfig::parse(&format!("basic_auth_users:\n  alice: '{good}'\n"), None).unwrap();
        assert_eq!(c.users["alice"], good);
        let e = err("basic_auth_users:\n  bob: plaintext\n");
        assert_eq!(e.field(), Some("basic_auth_users.bob"));
        let e = err("basic_auth_users:\n  bob: '$2y$99$abc'\n");
        assert_eq!(e.field(), Some("basic_auth_users.bob"));
    }

    #[test]
    fn the_dummy_hash_is_well_formed() {
        // Unknown users are checked against it; a malformed one would make
        // them return early and be distinguishable by timing.
        let dummy = dummy_hash();
        check_bcrypt(&dummy).unwrap();
        assert_eq!(bcrypt::verify("", &dummy).ok(), Some(false));
    }

    #[test]
    fn basic_auth_header_parsing_follows_go() {
        let req = |v: &str| {
            Request::builder()
                .header(header::AUTHORIZATION, v)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(
            basic_auth(&req(&format!("Basic {}", b64("a:b:c")))),
            Some(("a".into(), "b:c".into()))
        );
        // The scheme is case-insensitive; an empty password is a password.
        assert_eq!(
            basic_auth(&req(&format!("bAsIc {}", b64("a:")))),
            Some(("a".into(), String::new()))
        );
        for bad in [
            "Bearer abc".to_string(),
            "Basic".to_string(),
            "Basic !!!".to_string(),
            format!("Basic {}", b64("no-colon")),
        ] {
            assert_eq!(basic_auth(&req(&bad)), None, "{bad}");
        }
        let none = Request::builder().body(axum::body::Body::empty()).unwrap();
        assert_eq!(basic_auth(&none), None);
    }

    #[test]
    fn cache_keys_separate_parts() {
        assert_ne!(cache_key("ab", "c", "d"), cache_key("a", "bc", "d"));
        assert_eq!(cache_key("a", "b", "c").len(), 32);
    }
}
