//! A minimal Kubernetes API client: where the API server is and how to
//! authenticate ([`Connection`]), and the two calls discovery needs, a
//! paged *list* and a *watch* stream.
//!
//! Connection sources, as Prometheus 2.42 picks them:
//!
//! * `api_server` set: that URL with the SD config's HTTP client options
//!   (`tls_config`, `basic_auth`, `authorization`/`bearer_token(_file)`).
//! * `kubeconfig_file` set: its current context's cluster (`server`,
//!   `certificate-authority(-data)`, `insecure-skip-tls-verify`,
//!   `tls-server-name`) and user
//!   (`token`, `tokenFile`, `client-certificate(-data)`/`client-key(-data)`,
//!   `username`/`password`).
//! * neither: in-cluster, [`InCluster`]: `https://$KUBERNETES_SERVICE_HOST:
//!   $KUBERNETES_SERVICE_PORT` with the service account's `token` (re-read
//!   on every request, as tokens are rotated) and `ca.crt`.
//!
//! Limits: a list page body is at most [`MAX_BODY`] bytes, a list at most
//! [`MAX_LIST_ITEMS`] items, a watch line at most [`MAX_LINE`] bytes; each
//! list request has [`LIST_TIMEOUT`]; a watch asks the server to end it
//! after `timeoutSeconds` and gives up itself a minute later.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::RootCertStore;
use serde::Deserialize;

use super::objects::{List, Status, WatchEvent};
use super::Kind;
use crate::config::{Authorization, BasicAuth, HttpClientConfig, KubernetesSdConfig, Secret};
use crate::http::{
    error_chain, provider, read_secret_file, rustls_config, NoVerify, OverrideName, USER_AGENT,
};

/// Largest list page body we read.
pub const MAX_BODY: u64 = 256 << 20;
/// Largest watch event line.
pub const MAX_LINE: usize = 16 << 20;
/// Most items one list may return over all its pages.
pub const MAX_LIST_ITEMS: usize = 1_000_000;
/// Items asked for per list page (client-go's reflector uses 500 too).
pub const PAGE_SIZE: usize = 500;
/// Bound on one list page request.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(60);

/// The default service account directory inside a pod.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Why a Kubernetes API call or the connection setup failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KubeError {
    #[error("kubernetes_sd configuration: {0}")]
    Config(String),
    #[error("request to {url}: {msg}")]
    Request { url: String, msg: String },
    #[error("{url}: server returned HTTP status {code}: {message}")]
    Status {
        url: String,
        code: u16,
        message: String,
    },
    /// 410 Gone: the resource version is too old; relist.
    #[error("resource version too old (410 Gone)")]
    Gone,
    #[error("decoding response from {url}: {msg}")]
    Decode { url: String, msg: String },
    #[error("{0}")]
    Limit(String),
}

/// Where an in-cluster process finds the API server and its credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InCluster {
    /// The API server's base URL.
    pub url: String,
    /// The service account directory (`token`, `ca.crt`, `namespace`).
    pub dir: PathBuf,
}

impl InCluster {
    /// From `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT` and the
    /// default service account directory.
    pub fn from_env() -> Result<InCluster, KubeError> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").unwrap_or_default();
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_default();
        if host.is_empty() || port.is_empty() {
            return Err(KubeError::Config(
                "unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and \
                 KUBERNETES_SERVICE_PORT must be defined (or set api_server or kubeconfig_file)"
                    .into(),
            ));
        }
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        Ok(InCluster {
            url: format!("https://{host}:{port}"),
            dir: PathBuf::from(SERVICE_ACCOUNT_DIR),
        })
    }

    /// The pod's own namespace (`namespaces.own_namespace`).
    pub fn namespace(&self) -> Result<String, KubeError> {
        let p = self.dir.join("namespace");
        std::fs::read_to_string(&p)
            .map(|s| s.trim().to_string())
            .map_err(|e| {
                KubeError::Config(format!("reading own namespace from {}: {e}", p.display()))
            })
    }
}

/// An API server endpoint with its client and credentials.
#[derive(Clone)]
pub struct Connection {
    base: Url,
    client: reqwest::Client,
    /// Only the auth parts are used; TLS is already in `client`.
    auth: Arc<HttpClientConfig>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

fn cfg_err(m: impl Into<String>) -> KubeError {
    KubeError::Config(m.into())
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
}

impl Connection {
    /// Resolves the connection of an SD config (see module docs). `in_cluster`
    /// overrides the environment when neither `api_server` nor
    /// `kubeconfig_file` is set.
    pub fn from_config(
        cfg: &KubernetesSdConfig,
        in_cluster: Option<&InCluster>,
    ) -> Result<Connection, KubeError> {
        if let Some(url) = &cfg.api_server {
            return Connection::api_server(url, &cfg.http);
        }
        if let Some(path) = &cfg.kubeconfig_file {
            return Connection::kubeconfig(path);
        }
        match in_cluster {
            Some(ic) => Connection::in_cluster(ic),
            None => Connection::in_cluster(&InCluster::from_env()?),
        }
    }

    /// `api_server` with the SD config's HTTP options.
    pub fn api_server(url: &str, http: &HttpClientConfig) -> Result<Connection, KubeError> {
        let base =
            Url::parse(url).map_err(|e| cfg_err(format!("invalid api_server {url:?}: {e}")))?;
        let mut b = builder().redirect(if http.follow_redirects {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        });
        if !http.tls_config.is_default() {
            b = b.use_preconfigured_tls(rustls_config(&http.tls_config).map_err(cfg_err)?);
        }
        let client = b
            .build()
            .map_err(|e| cfg_err(format!("building HTTP client: {e}")))?;
        Ok(Connection {
            base,
            client,
            auth: Arc::new(http.clone()),
        })
    }

    /// In-cluster: bearer token file and CA from the service account dir.
    pub fn in_cluster(ic: &InCluster) -> Result<Connection, KubeError> {
        let base = Url::parse(&ic.url)
            .map_err(|e| cfg_err(format!("invalid in-cluster URL {:?}: {e}", ic.url)))?;
        let token = ic.dir.join("token");
        // Fail early and clearly when the token is missing altogether.
        read_secret_file(&token).map_err(cfg_err)?;
        let mut b = builder();
        if base.scheme() == "https" {
            let ca_path = ic.dir.join("ca.crt");
            let ca = std::fs::read(&ca_path)
                .map_err(|e| cfg_err(format!("reading {}: {e}", ca_path.display())))?;
            b = b.use_preconfigured_tls(tls_from_pem(Some(&ca), None, false, None)?);
        }
        let client = b
            .build()
            .map_err(|e| cfg_err(format!("building HTTP client: {e}")))?;
        Ok(Connection {
            base,
            client,
            auth: Arc::new(HttpClientConfig {
                authorization: Some(Authorization {
                    r#type: "Bearer".into(),
                    credentials: Secret::default(),
                    credentials_file: Some(token),
                }),
                ..HttpClientConfig::default()
            }),
        })
    }

    /// The current context of a kubeconfig file.
    pub fn kubeconfig(path: &Path) -> Result<Connection, KubeError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| cfg_err(format!("reading kubeconfig {}: {e}", path.display())))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let kc: KubeConfig = serde_saphyr::from_str(&text)
            .map_err(|e| cfg_err(format!("parsing kubeconfig {}: {e}", path.display())))?;
        let ctx_name = &kc.current_context;
        if ctx_name.is_empty() {
            return Err(cfg_err(format!(
                "kubeconfig {}: no current-context",
                path.display()
            )));
        }
        let ctx = kc
            .contexts
            .iter()
            .find(|c| &c.name == ctx_name)
            .map(|c| &c.context)
            .ok_or_else(|| {
                cfg_err(format!(
                    "kubeconfig {}: context {ctx_name:?} not found",
                    path.display()
                ))
            })?;
        let cluster = kc
            .clusters
            .iter()
            .find(|c| c.name == ctx.cluster)
            .map(|c| &c.cluster)
            .ok_or_else(|| {
                cfg_err(format!(
                    "kubeconfig {}: cluster {:?} not found",
                    path.display(),
                    ctx.cluster
                ))
            })?;
        let user = kc
            .users
            .iter()
            .find(|u| u.name == ctx.user)
            .map(|u| u.user.clone())
            .unwrap_or_default();
        let base = Url::parse(&cluster.server).map_err(|e| {
            cfg_err(format!(
                "kubeconfig {}: invalid server {:?}: {e}",
                path.display(),
                cluster.server
            ))
        })?;
        let rel = |p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p)
            }
        };
        let data = |inline: &str, file: &str, what: &str| -> Result<Option<Vec<u8>>, KubeError> {
            if !inline.is_empty() {
                return base64_decode(inline).map(Some).map_err(|e| {
                    cfg_err(format!("kubeconfig {}: {what}-data: {e}", path.display()))
                });
            }
            if !file.is_empty() {
                let f = rel(file);
                return std::fs::read(&f).map(Some).map_err(|e| {
                    cfg_err(format!(
                        "kubeconfig {}: reading {what} {}: {e}",
                        path.display(),
                        f.display()
                    ))
                });
            }
            Ok(None)
        };
        let ca = data(
            &cluster.certificate_authority_data,
            &cluster.certificate_authority,
            "certificate-authority",
        )?;
        let cert = data(
            &user.client_certificate_data,
            &user.client_certificate,
            "client-certificate",
        )?;
        let key = data(&user.client_key_data, &user.client_key, "client-key")?;
        let mut b = builder();
        if base.scheme() == "https" {
            let client_id = match (&cert, &key) {
                (Some(c), Some(k)) => Some((c.as_slice(), k.as_slice())),
                (None, None) => None,
                _ => {
                    return Err(cfg_err(format!(
                        "kubeconfig {}: client certificate and key must be given together",
                        path.display()
                    )))
                }
            };
            b = b.use_preconfigured_tls(tls_from_pem(
                ca.as_deref(),
                client_id,
                cluster.insecure_skip_tls_verify,
                (!cluster.tls_server_name.is_empty()).then_some(cluster.tls_server_name.as_str()),
            )?);
        }
        let client = b
            .build()
            .map_err(|e| cfg_err(format!("building HTTP client: {e}")))?;
        let mut auth = HttpClientConfig::default();
        if !user.token.is_empty() || !user.token_file.is_empty() {
            auth.authorization = Some(Authorization {
                r#type: "Bearer".into(),
                credentials: Secret::new(user.token.clone()),
                credentials_file: (user.token.is_empty() && !user.token_file.is_empty())
                    .then(|| rel(&user.token_file)),
            });
        } else if !user.username.is_empty() {
            auth.basic_auth = Some(BasicAuth {
                username: user.username.clone(),
                password: Secret::new(user.password.clone()),
                password_file: None,
            });
        }
        Ok(Connection {
            base,
            client,
            auth: Arc::new(auth),
        })
    }

    /// The base URL requests go to.
    pub fn base(&self) -> &str {
        self.base.as_str()
    }

    fn url(&self, kind: Kind, ns: Option<&str>, query: &[(&str, &str)]) -> Url {
        let mut u = self.base.clone();
        let prefix = self.base.path().trim_end_matches('/');
        let path = match ns {
            Some(ns) if kind.namespaced() => {
                format!(
                    "{prefix}{}/namespaces/{ns}/{}",
                    kind.api_prefix(),
                    kind.plural()
                )
            }
            _ => format!("{prefix}{}/{}", kind.api_prefix(), kind.plural()),
        };
        u.set_path(&path);
        u.set_query(None);
        {
            let mut q = u.query_pairs_mut();
            for (k, v) in query {
                if !v.is_empty() {
                    q.append_pair(k, v);
                }
            }
        }
        if u.query() == Some("") {
            u.set_query(None);
        }
        u
    }

    fn request(&self, url: &Url) -> Result<reqwest::RequestBuilder, KubeError> {
        let mut req = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(b) = &self.auth.basic_auth {
            let password = match &b.password_file {
                Some(f) => read_secret_file(f).map_err(cfg_err)?,
                None => b.password.expose().to_string(),
            };
            req = req.basic_auth(&b.username, Some(password));
        }
        if let Some(a) = &self.auth.authorization {
            let creds = match &a.credentials_file {
                Some(f) => read_secret_file(f).map_err(cfg_err)?,
                None => a.credentials.expose().to_string(),
            };
            req = req.header(
                reqwest::header::AUTHORIZATION,
                format!("{} {}", a.r#type, creds),
            );
        }
        Ok(req)
    }

    /// Sends the request; non-2xx statuses become errors (410 → `Gone`).
    async fn send(&self, url: &Url) -> Result<reqwest::Response, KubeError> {
        let resp = self
            .request(url)?
            .send()
            .await
            .map_err(|e| KubeError::Request {
                url: url.to_string(),
                msg: error_chain(&e),
            })?;
        let code = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(resp);
        }
        if code == 410 {
            return Err(KubeError::Gone);
        }
        let body = read_body(resp, 64 << 10, url).await.unwrap_or_default();
        let message = serde_json::from_slice::<Status>(&body)
            .ok()
            .map(|s| s.message)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(512).collect());
        Err(KubeError::Status {
            url: url.to_string(),
            code,
            message,
        })
    }

    /// Lists every object of `kind` (all pages) and returns them with the
    /// list's resource version.
    pub(crate) async fn list(
        &self,
        kind: Kind,
        ns: Option<&str>,
        sel: &Selectors,
    ) -> Result<(Vec<serde_json::Value>, String), KubeError> {
        let mut items = Vec::new();
        let mut cont = String::new();
        let limit = PAGE_SIZE.to_string();
        loop {
            let url = self.url(
                kind,
                ns,
                &[
                    ("labelSelector", &sel.label),
                    ("fieldSelector", &sel.field),
                    ("limit", &limit),
                    ("continue", &cont),
                ],
            );
            let fut = async {
                let resp = self.send(&url).await?;
                read_body(resp, MAX_BODY, &url).await
            };
            let body = tokio::time::timeout(LIST_TIMEOUT, fut)
                .await
                .map_err(|_| KubeError::Request {
                    url: url.to_string(),
                    msg: format!("timed out after {LIST_TIMEOUT:?}"),
                })??;
            let list: List = serde_json::from_slice(&body).map_err(|e| KubeError::Decode {
                url: url.to_string(),
                msg: e.to_string(),
            })?;
            items.extend(list.items);
            if items.len() > MAX_LIST_ITEMS {
                return Err(KubeError::Limit(format!(
                    "{url}: more than {MAX_LIST_ITEMS} items"
                )));
            }
            if list.metadata.continue_.is_empty() {
                return Ok((items, list.metadata.resource_version));
            }
            cont = list.metadata.continue_;
        }
    }

    /// Watches `kind` from `rv`, calling `on_event` for each event until the
    /// server ends the stream (`Ok(false)`), a 410 asks for a relist
    /// (`Ok(true)`), or an error. `ERROR` events are decoded here.
    pub(crate) async fn watch(
        &self,
        kind: Kind,
        ns: Option<&str>,
        sel: &Selectors,
        rv: &str,
        timeout_secs: u64,
        mut on_event: impl FnMut(WatchEvent) -> Result<(), KubeError>,
    ) -> Result<bool, KubeError> {
        let timeout = timeout_secs.to_string();
        let url = self.url(
            kind,
            ns,
            &[
                ("labelSelector", &sel.label),
                ("fieldSelector", &sel.field),
                ("watch", "1"),
                ("resourceVersion", rv),
                ("allowWatchBookmarks", "true"),
                ("timeoutSeconds", &timeout),
            ],
        );
        let deadline = Duration::from_secs(timeout_secs + 60);
        let fut = async {
            let mut resp = match self.send(&url).await {
                Ok(r) => r,
                Err(KubeError::Gone) => return Ok(true),
                Err(e) => return Err(e),
            };
            let mut buf: Vec<u8> = Vec::new();
            let req_err = |e: reqwest::Error| KubeError::Request {
                url: url.to_string(),
                msg: error_chain(&e),
            };
            loop {
                let chunk = resp.chunk().await.map_err(req_err)?;
                let Some(chunk) = chunk else { break };
                buf.extend_from_slice(&chunk);
                while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    if handle_line(&line, &url, &mut on_event)? {
                        return Ok(true);
                    }
                }
                if buf.len() > MAX_LINE {
                    return Err(KubeError::Limit(format!(
                        "{url}: watch event longer than {MAX_LINE} bytes"
                    )));
                }
            }
            // A last event without a trailing newline.
            if handle_line(&buf, &url, &mut on_event)? {
                return Ok(true);
            }
            Ok(false)
        };
        match tokio::time::timeout(deadline, fut).await {
            Ok(r) => r,
            // The server should have ended it; start a new one.
            Err(_) => Ok(false),
        }
    }
}

/// One watch line; `Ok(true)` on an `ERROR` event with code 410.
fn handle_line(
    line: &[u8],
    url: &Url,
    on_event: &mut impl FnMut(WatchEvent) -> Result<(), KubeError>,
) -> Result<bool, KubeError> {
    if line.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(false);
    }
    let ev: WatchEvent = serde_json::from_slice(line).map_err(|e| KubeError::Decode {
        url: url.to_string(),
        msg: format!("watch event: {e}"),
    })?;
    if ev.type_ == "ERROR" {
        let st = Status::deserialize(&ev.object).unwrap_or_default();
        if st.code == 410 {
            return Ok(true);
        }
        return Err(KubeError::Status {
            url: url.to_string(),
            code: u16::try_from(st.code).unwrap_or(0),
            message: format!("watch ERROR event: {} {}", st.reason, st.message),
        });
    }
    on_event(ev)?;
    Ok(false)
}

async fn read_body(
    mut resp: reqwest::Response,
    limit: u64,
    url: &Url,
) -> Result<Vec<u8>, KubeError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| KubeError::Request {
        url: url.to_string(),
        msg: error_chain(&e),
    })? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(KubeError::Limit(format!(
                "{url}: response body larger than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Label and field selectors of one watched kind (empty: none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Selectors {
    pub label: String,
    pub field: String,
}

/// A rustls config from PEM bytes (kubeconfig data or files, the service
/// account CA).
fn tls_from_pem(
    ca: Option<&[u8]>,
    client: Option<(&[u8], &[u8])>,
    insecure: bool,
    server_name: Option<&str>,
) -> Result<rustls::ClientConfig, KubeError> {
    let provider = provider();
    let b = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| cfg_err(format!("TLS: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = if insecure {
        Arc::new(NoVerify(provider.clone()))
    } else {
        match ca {
            Some(pem) => {
                let mut roots = RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(pem) {
                    let c = c.map_err(|e| cfg_err(format!("invalid CA certificate: {e}")))?;
                    roots
                        .add(c)
                        .map_err(|e| cfg_err(format!("invalid CA certificate: {e}")))?;
                }
                if roots.is_empty() {
                    return Err(cfg_err("no CA certificate found"));
                }
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .map_err(|e| cfg_err(format!("TLS: {e}")))?
            }
            None => Arc::new(
                rustls_platform_verifier::Verifier::new(provider.clone())
                    .map_err(|e| cfg_err(format!("TLS: {e}")))?,
            ),
        }
    };
    let verifier: Arc<dyn ServerCertVerifier> = match server_name {
        Some(n) if !insecure => Arc::new(OverrideName {
            inner: verifier,
            name: ServerName::try_from(n.to_string())
                .map_err(|e| cfg_err(format!("invalid tls-server-name {n:?}: {e}")))?,
        }),
        _ => verifier,
    };
    let b = b.dangerous().with_custom_certificate_verifier(verifier);
    match client {
        Some((cert, key)) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<_, _>>()
                .map_err(|e| cfg_err(format!("invalid client certificate: {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| cfg_err(format!("invalid client key: {e}")))?;
            b.with_client_auth_cert(certs, key)
                .map_err(|e| cfg_err(format!("TLS client certificate: {e}")))
        }
        None => Ok(b.with_no_client_auth()),
    }
}

/// Standard base64 (padding optional), as kubeconfig `*-data` fields use.
fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' | b' ' => continue,
            _ => return Err(format!("invalid base64 character {:?}", c as char)),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

// --- kubeconfig ----------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
struct KubeConfig {
    #[serde(rename = "current-context")]
    current_context: String,
    clusters: Vec<NamedCluster>,
    contexts: Vec<NamedContext>,
    users: Vec<NamedUser>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NamedCluster {
    name: String,
    cluster: Cluster,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
struct Cluster {
    server: String,
    certificate_authority: String,
    certificate_authority_data: String,
    insecure_skip_tls_verify: bool,
    tls_server_name: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NamedContext {
    name: String,
    context: Context,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Context {
    cluster: String,
    user: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NamedUser {
    name: String,
    user: User,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default, rename_all = "kebab-case")]
struct User {
    token: String,
    #[serde(rename = "tokenFile")]
    token_file: String,
    client_certificate: String,
    client_certificate_data: String,
    client_key: String,
    client_key_data: String,
    username: String,
    password: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64_decode("YQ==\n").unwrap(), b"a");
        assert!(base64_decode("a$b").is_err());
    }
}
