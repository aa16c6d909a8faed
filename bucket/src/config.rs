//! `objstore.yml`: Thanos' object-storage configuration, mapped onto
//! `object_store`.
//!
//! ```yaml
//! type: S3            # S3 | GCS | AZURE | FILESYSTEM (case-insensitive)
//! prefix: tenant-a    # optional: every key lives under this prefix
//! config:
//!   bucket: thanos
//!   endpoint: s3.eu-west-1.amazonaws.com
//!   access_key: ...
//!   secret_key: ...
//! ```
//!
//! Keys are Thanos' (objstore `providers/*`), parsed strictly like Thanos'
//! `yaml.UnmarshalStrict`: an unknown key is an error that names it, so a
//! typo never silently falls back to a default. Keys Thanos accepts but
//! object_store cannot honour are either rejected with the reason
//! (`signature_version2: true`, SSE-KMS encryption context, client TLS
//! certificates, …) or accepted without effect when they only tune Go's HTTP
//! transport (`max_idle_conns`, `expect_continue_timeout`, …).
//!
//! Like Thanos' `--objstore.config-file` / `--objstore.config` flags,
//! [`ObjstoreConfig::from_flags`] substitutes `$(VAR)` with environment
//! variables (an unset variable is an error), so secrets can come from the
//! environment. With no keys in the S3 config, credentials come from the
//! AWS environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, web identity, ECS/EKS, instance metadata) as in
//! Thanos; GCS without `service_account` uses application default
//! credentials (`GOOGLE_APPLICATION_CREDENTIALS`).
//!
//! Secrets are wrapped in [`Secret`], whose `Debug` prints `<redacted>`, so
//! a config can be logged with `{:?}`. YAML errors are reported with line and
//! column but without the offending source line, which could hold a secret.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::limit::LimitStore;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

use crate::bucket::{Bucket, UploadConfig, DEFAULT_PART_SIZE, MIN_PART_SIZE};

/// Errors of reading, parsing and applying an objstore config. None of them
/// contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading objstore config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("both --objstore.config-file and --objstore.config are set; use one")]
    BothFlags,
    #[error("objstore config: found reference to unset environment variable {0:?}")]
    UnsetEnv(String),
    /// The YAML does not parse or does not fit the schema (unknown key,
    /// wrong type); the message names the key and its line.
    #[error("objstore config: {0}")]
    Yaml(String),
    #[error(
        "objstore config: type {0:?} is not supported (supported: S3, GCS, AZURE, FILESYSTEM)"
    )]
    UnsupportedType(String),
    /// A value that is invalid, or valid for Thanos but not supported here.
    #[error("objstore config: {key}: {msg}")]
    Invalid { key: String, msg: String },
    #[error("objstore config: creating the {provider} client: {source}")]
    Client {
        provider: &'static str,
        #[source]
        source: object_store::Error,
    },
}

fn invalid(key: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        msg: msg.into(),
    }
}

/// A credential. `Debug` never shows it; [`Secret::expose`] does.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("<redacted>")
        }
    }
}

/// A Prometheus duration (`1m30s`, `2m`, `90s`, `500ms`, `1d`, `0`), the
/// format of Thanos' `model.Duration` fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PromDuration(pub Duration);

impl PromDuration {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "0" {
            return Ok(PromDuration(Duration::ZERO));
        }
        // Units must appear in this order, each at most once.
        const UNITS: [(&str, u64); 7] = [
            ("y", 365 * 86_400_000),
            ("w", 7 * 86_400_000),
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ];
        let bad = || format!("not a valid duration string: {s:?}");
        let mut rest = s;
        let mut next_unit = 0;
        let mut total: u64 = 0;
        if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let pos = UNITS[next_unit..]
                .iter()
                .position(|(u, _)| *u == unit)
                .ok_or_else(bad)?;
            let ms = UNITS[next_unit + pos].1;
            next_unit += pos + 1;
            total = n
                .checked_mul(ms)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(bad)?;
        }
        Ok(PromDuration(Duration::from_millis(total)))
    }
}

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PromDuration::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `http_config` (Thanos' `exthttp.HTTPConfig`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// How long an idle pooled connection is kept (default 1m30s).
    pub idle_conn_timeout: PromDuration,
    /// The longest wait for any read from the server, headers included
    /// (default 2m); a stalled request fails and is retried.
    pub response_header_timeout: PromDuration,
    pub insecure_skip_verify: bool,
    /// Used as the connect timeout (TCP and TLS handshake; default 10s).
    pub tls_handshake_timeout: PromDuration,
    /// Accepted for compatibility; no effect.
    pub expect_continue_timeout: PromDuration,
    /// Accepted for compatibility; no effect (the pool is per host).
    pub max_idle_conns: usize,
    pub max_idle_conns_per_host: usize,
    /// When > 0, caps concurrent requests to the store.
    pub max_conns_per_host: usize,
    pub tls_config: TlsConfig,
    /// Accepted for compatibility; no effect (no compression is requested).
    pub disable_compression: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            idle_conn_timeout: PromDuration(Duration::from_secs(90)),
            response_header_timeout: PromDuration(Duration::from_secs(120)),
            insecure_skip_verify: false,
            tls_handshake_timeout: PromDuration(Duration::from_secs(10)),
            expect_continue_timeout: PromDuration(Duration::from_secs(1)),
            max_idle_conns: 100,
            max_idle_conns_per_host: 100,
            max_conns_per_host: 0,
            tls_config: TlsConfig::default(),
            disable_compression: false,
        }
    }
}

/// `http_config.tls_config`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file with the CA certificates to trust (in addition to the
    /// system roots).
    pub ca_file: String,
    /// Client certificates are not supported by object_store: rejected.
    pub cert_file: String,
    pub key_file: String,
    /// SNI override: not supported, rejected.
    pub server_name: String,
    pub insecure_skip_verify: bool,
}

/// `bucket_lookup_type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum BucketLookupType {
    /// Virtual-hosted style for AWS endpoints, path style elsewhere.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "virtual-hosted")]
    VirtualHosted,
    #[serde(rename = "path")]
    Path,
}

/// `sse_config`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SseConfig {
    /// `SSE-S3`, `SSE-KMS` or `SSE-C`.
    #[serde(rename = "type")]
    pub kind: String,
    pub kms_key_id: String,
    /// Not supported by object_store: rejected when non-empty.
    pub kms_encryption_context: std::collections::BTreeMap<String, String>,
    /// Path of a file holding the raw 32-byte SSE-C key.
    pub encryption_key: String,
}

/// `trace` (S3 request tracing in Thanos). Accepted; use `RUST_LOG` instead.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceConfig {
    pub enable: bool,
}

/// The S3 `config:` section.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub bucket: String,
    /// `host[:port]`, no scheme; `insecure: true` selects plain HTTP.
    pub endpoint: String,
    pub region: String,
    /// Accepted; object_store does not use dual-stack endpoints.
    pub disable_dualstack: bool,
    /// Use the AWS credential chain (environment, web identity, container,
    /// instance metadata) even if keys are set. Exclusive with `access_key`.
    pub aws_sdk_auth: bool,
    pub access_key: Secret,
    pub insecure: bool,
    /// SigV2 signing: object_store signs with SigV4 only, so `true` is
    /// rejected.
    pub signature_version2: bool,
    pub secret_key: Secret,
    pub session_token: Secret,
    /// Custom object metadata: not supported yet, rejected when non-empty.
    pub put_user_metadata: std::collections::BTreeMap<String, String>,
    pub http_config: HttpConfig,
    pub trace: TraceConfig,
    /// `""`/`v2` or `v1`; object_store only lists with ListObjectsV2.
    pub list_objects_version: String,
    pub bucket_lookup_type: BucketLookupType,
    /// Accepted; object_store does not send Content-MD5.
    pub send_content_md5: bool,
    pub disable_multipart: bool,
    /// Multipart part size in bytes (default 64 MiB; 0 means 128 MiB).
    pub part_size: u64,
    pub sse_config: SseConfig,
    /// A custom STS endpoint for IAM credentials: not supported, rejected.
    pub sts_endpoint: String,
    /// Retries per request (0: the default of 10).
    pub max_retries: usize,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: String::new(),
            endpoint: String::new(),
            region: String::new(),
            disable_dualstack: false,
            aws_sdk_auth: false,
            access_key: Secret::default(),
            insecure: false,
            signature_version2: false,
            secret_key: Secret::default(),
            session_token: Secret::default(),
            put_user_metadata: Default::default(),
            http_config: HttpConfig::default(),
            trace: TraceConfig::default(),
            list_objects_version: String::new(),
            bucket_lookup_type: BucketLookupType::Auto,
            send_content_md5: true,
            disable_multipart: false,
            part_size: DEFAULT_PART_SIZE as u64,
            sse_config: SseConfig::default(),
            sts_endpoint: String::new(),
            max_retries: 0,
        }
    }
}

/// The GCS `config:` section.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcsConfig {
    pub bucket: String,
    /// The service account key JSON itself (not a path).
    pub service_account: Secret,
    /// gRPC transport: not supported, rejected when true.
    pub use_grpc: bool,
    pub grpc_conn_pool_size: usize,
    pub http_config: HttpConfig,
    /// Accepted; uploads use the multipart part size instead.
    pub chunk_size_bytes: usize,
    pub max_retries: usize,
}

/// The AZURE `config:` section.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzureConfig {
    pub az_tenant_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub storage_account: String,
    pub storage_account_key: Secret,
    /// Not supported by object_store: rejected when set.
    pub storage_connection_string: Secret,
    /// Accepted; the container must exist (object_store does not create it).
    pub storage_create_container: bool,
    pub container: String,
    /// The blob endpoint suffix, `blob.core.windows.net` by default.
    pub endpoint: String,
    /// Client ID of a user-assigned managed identity.
    pub user_assigned_id: String,
    pub msi_resource: String,
    pub max_retries: usize,
    pub reader_config: AzureReaderConfig,
    pub pipeline_config: AzurePipelineConfig,
    pub http_config: HttpConfig,
}

impl Default for AzureConfig {
    fn default() -> Self {
        AzureConfig {
            az_tenant_id: String::new(),
            client_id: String::new(),
            client_secret: Secret::default(),
            storage_account: String::new(),
            storage_account_key: Secret::default(),
            storage_connection_string: Secret::default(),
            storage_create_container: true,
            container: String::new(),
            endpoint: AZURE_DEFAULT_ENDPOINT.to_string(),
            user_assigned_id: String::new(),
            msi_resource: String::new(),
            max_retries: 0,
            reader_config: AzureReaderConfig::default(),
            pipeline_config: AzurePipelineConfig::default(),
            http_config: HttpConfig::default(),
        }
    }
}

const AZURE_DEFAULT_ENDPOINT: &str = "blob.core.windows.net";

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzureReaderConfig {
    pub max_retry_requests: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzurePipelineConfig {
    /// Attempts per request (first try included).
    pub max_tries: usize,
    pub try_timeout: PromDuration,
    pub retry_delay: PromDuration,
    pub max_retry_delay: PromDuration,
}

/// The FILESYSTEM `config:` section. Thanos documents it for tests and
/// demos; so do we.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesystemConfig {
    pub directory: String,
}

/// The provider and its section.
#[derive(Clone, Debug, PartialEq)]
pub enum Provider {
    S3(S3Config),
    Gcs(GcsConfig),
    Azure(AzureConfig),
    Filesystem(FilesystemConfig),
}

impl Provider {
    /// The `type:` value.
    pub fn type_name(&self) -> &'static str {
        match self {
            Provider::S3(_) => "S3",
            Provider::Gcs(_) => "GCS",
            Provider::Azure(_) => "AZURE",
            Provider::Filesystem(_) => "FILESYSTEM",
        }
    }
}

/// A parsed objstore.yml.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjstoreConfig {
    pub provider: Provider,
    /// Key prefix inside the bucket ("" for none), without outer slashes.
    pub prefix: String,
}

/// First pass: only what selects the schema of `config`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    #[allow(dead_code)]
    config: IgnoredAny,
    #[serde(default)]
    prefix: Option<String>,
}

/// Second pass: `config` with the provider's schema.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Typed<C> {
    #[serde(rename = "type")]
    #[allow(dead_code)]
    kind: IgnoredAny,
    #[serde(default = "Option::default")]
    config: Option<C>,
    #[serde(default)]
    #[allow(dead_code)]
    prefix: IgnoredAny,
}

impl ObjstoreConfig {
    /// Parses YAML as it is (no environment substitution).
    pub fn parse(yaml: &str) -> Result<Self, ConfigError> {
        let env: Envelope = from_yaml(yaml)?;
        let provider = match env.kind.to_ascii_uppercase().as_str() {
            "S3" => Provider::S3(typed(yaml)?),
            "GCS" => Provider::Gcs(typed(yaml)?),
            "AZURE" => Provider::Azure(typed(yaml)?),
            "FILESYSTEM" => Provider::Filesystem(typed(yaml)?),
            _ => return Err(ConfigError::UnsupportedType(env.kind)),
        };
        let prefix = env.prefix.unwrap_or_default().trim_matches('/').to_string();
        Ok(ObjstoreConfig { provider, prefix })
    }

    /// Reads a config file, substitutes `$(VAR)` and parses it.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let content = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&expand_env(&content, |k| std::env::var(k).ok())?)
    }

    /// The pair of flags `--objstore.config-file` / `--objstore.config`:
    /// at most one may be set; `Ok(None)` when neither is (or the content is
    /// empty), which Thanos' sidecar reads as "uploads disabled".
    pub fn from_flags(
        file: Option<&Path>,
        content: Option<&str>,
    ) -> Result<Option<Self>, ConfigError> {
        let file = file.filter(|p| !p.as_os_str().is_empty());
        let content = content.filter(|c| !c.is_empty());
        let raw = match (file, content) {
            (Some(_), Some(_)) => return Err(ConfigError::BothFlags),
            (Some(path), None) => {
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?
            }
            (None, Some(c)) => c.to_string(),
            (None, None) => return Ok(None),
        };
        if raw.trim().is_empty() {
            return Ok(None);
        }
        Self::parse(&expand_env(&raw, |k| std::env::var(k).ok())?).map(Some)
    }

    /// Creates the bucket client. Nothing is contacted yet: a wrong
    /// endpoint or credential shows up on the first request.
    pub fn build(&self) -> Result<Bucket, ConfigError> {
        self.build_with_env(&|k| std::env::var(k).ok())
    }

    /// [`Self::build`] with an explicit environment, for tests.
    pub fn build_with_env(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Bucket, ConfigError> {
        let (name, store, upload) = match &self.provider {
            Provider::S3(c) => build_s3(c, env)?,
            Provider::Gcs(c) => build_gcs(c)?,
            Provider::Azure(c) => build_azure(c, env)?,
            Provider::Filesystem(c) => build_filesystem(c)?,
        };
        let (name, store) = if self.prefix.is_empty() {
            (name, store)
        } else {
            let prefixed: Arc<dyn ObjectStore> =
                Arc::new(PrefixStore::new(store, self.prefix.as_str()));
            (format!("{name}/{}", self.prefix), prefixed)
        };
        Ok(Bucket::new(name, store).with_upload_config(upload))
    }
}

fn from_yaml<'a, T: Deserialize<'a>>(yaml: &'a str) -> Result<T, ConfigError> {
    // No source snippet in errors: the offending line may hold a secret.
    let mut opts = serde_saphyr::Options::default();
    opts.with_snippet = false;
    serde_saphyr::from_str_with_options(yaml, opts)
        .map_err(|e| ConfigError::Yaml(yaml_error_message(&e)))
}

/// The message with its location, on one line.
fn yaml_error_message(e: &serde_saphyr::Error) -> String {
    let full = e.to_string();
    let first = full.lines().next().unwrap_or("").trim();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

fn typed<C: for<'de> Deserialize<'de> + Default>(yaml: &str) -> Result<C, ConfigError> {
    let t: Typed<C> = from_yaml(yaml)?;
    Ok(t.config.unwrap_or_default())
}

/// Replaces `$(NAME)` (letters, digits, `_`) with the variable's value, as
/// Thanos does for its config flags; an unset variable is an error.
pub fn expand_env(s: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let name_len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        if name_len > 0 && after.as_bytes().get(name_len) == Some(&b')') {
            let name = &after[..name_len];
            let v = lookup(name).ok_or_else(|| ConfigError::UnsetEnv(name.to_string()))?;
            out.push_str(&v);
            rest = &after[name_len + 1..];
        } else {
            // Not a reference: keep the text.
            out.push_str("$(");
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn retry_config(max_retries: usize) -> RetryConfig {
    let mut r = RetryConfig::default();
    if max_retries > 0 {
        r.max_retries = max_retries;
    }
    r.backoff = BackoffConfig {
        init_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(15),
        base: 2.0,
    };
    r
}

fn client_options(h: &HttpConfig, key_prefix: &str) -> Result<ClientOptions, ConfigError> {
    let t = &h.tls_config;
    if !t.cert_file.is_empty() || !t.key_file.is_empty() {
        return Err(invalid(
            &format!("{key_prefix}http_config.tls_config.cert_file"),
            "TLS client certificates are not supported",
        ));
    }
    if !t.server_name.is_empty() {
        return Err(invalid(
            &format!("{key_prefix}http_config.tls_config.server_name"),
            "overriding the TLS server name is not supported",
        ));
    }
    // No whole-request timeout: a 512 MiB chunk segment may legitimately
    // take minutes. A stalled connection is caught by the read timeout.
    let mut o = ClientOptions::new()
        .with_timeout_disabled()
        .with_allow_invalid_certificates(h.insecure_skip_verify || t.insecure_skip_verify);
    if !h.response_header_timeout.0.is_zero() {
        o = o.with_read_timeout(h.response_header_timeout.0);
    }
    if !h.tls_handshake_timeout.0.is_zero() {
        o = o.with_connect_timeout(h.tls_handshake_timeout.0);
    }
    if !h.idle_conn_timeout.0.is_zero() {
        o = o.with_pool_idle_timeout(h.idle_conn_timeout.0);
    }
    if h.max_idle_conns_per_host > 0 {
        o = o.with_pool_max_idle_per_host(h.max_idle_conns_per_host);
    }
    if !t.ca_file.is_empty() {
        let pem = std::fs::read(&t.ca_file).map_err(|e| {
            invalid(
                &format!("{key_prefix}http_config.tls_config.ca_file"),
                format!("reading {}: {e}", t.ca_file),
            )
        })?;
        let certs = object_store::Certificate::from_pem_bundle(&pem).map_err(|e| {
            invalid(
                &format!("{key_prefix}http_config.tls_config.ca_file"),
                format!("{}: {e}", t.ca_file),
            )
        })?;
        for c in certs {
            o = o.with_root_certificate(c);
        }
    }
    Ok(o)
}

fn limit(store: Arc<dyn ObjectStore>, h: &HttpConfig) -> Arc<dyn ObjectStore> {
    if h.max_conns_per_host > 0 {
        Arc::new(LimitStore::new(store, h.max_conns_per_host))
    } else {
        store
    }
}

/// Variables of the AWS credential chain read when the config has no keys.
/// A plain `from_env()` would also read `AWS_ENDPOINT*`, which must not
/// override the config's `endpoint`.
const AWS_CREDENTIAL_ENV: [&str; 10] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

type Built = (String, Arc<dyn ObjectStore>, UploadConfig);

fn build_s3(c: &S3Config, env: &dyn Fn(&str) -> Option<String>) -> Result<Built, ConfigError> {
    if c.bucket.is_empty() {
        return Err(invalid("config.bucket", "missing"));
    }
    if c.endpoint.is_empty() {
        return Err(invalid(
            "config.endpoint",
            "missing (e.g. s3.us-east-1.amazonaws.com or 127.0.0.1:9000)",
        ));
    }
    if c.endpoint.contains("://") {
        return Err(invalid(
            "config.endpoint",
            format!(
                "{:?} has a scheme; Thanos expects host[:port] and `insecure: true` for plain HTTP",
                c.endpoint
            ),
        ));
    }
    if c.aws_sdk_auth && !c.access_key.is_empty() {
        return Err(invalid(
            "config.aws_sdk_auth",
            "aws_sdk_auth and access_key are mutually exclusive",
        ));
    }
    if c.access_key.is_empty() && !c.secret_key.is_empty() {
        return Err(invalid(
            "config.access_key",
            "missing while secret_key is set; set both, or neither to use the environment",
        ));
    }
    if !c.access_key.is_empty() && c.secret_key.is_empty() {
        return Err(invalid(
            "config.secret_key",
            "missing while access_key is set; set both, or neither to use the environment",
        ));
    }
    if c.signature_version2 {
        return Err(invalid(
            "config.signature_version2",
            "AWS signature V2 is not supported (requests are signed with SigV4)",
        ));
    }
    match c.list_objects_version.as_str() {
        "" | "v2" => {}
        "v1" => {
            return Err(invalid(
                "config.list_objects_version",
                "\"v1\" is not supported; listings use ListObjectsV2",
            ))
        }
        v => {
            return Err(invalid(
                "config.list_objects_version",
                format!("unsupported version {v:?}; supported: v1, v2"),
            ))
        }
    }
    if !c.put_user_metadata.is_empty() {
        return Err(invalid(
            "config.put_user_metadata",
            "custom object metadata is not supported",
        ));
    }
    if !c.sts_endpoint.is_empty() {
        return Err(invalid(
            "config.sts_endpoint",
            "a custom STS endpoint is not supported; use AWS_ENDPOINT_URL_STS for web identity",
        ));
    }
    if c.trace.enable {
        tracing::warn!(
            "objstore config: trace.enable has no effect; use RUST_LOG=object_store=debug"
        );
    }
    let part_size = match c.part_size {
        0 => 128 << 20,
        n => usize::try_from(n).unwrap_or(usize::MAX),
    };
    if !c.disable_multipart && part_size < MIN_PART_SIZE {
        return Err(invalid(
            "config.part_size",
            format!("{part_size} is below S3's minimum part size of {MIN_PART_SIZE}"),
        ));
    }

    let mut b = AmazonS3Builder::new();
    let use_env = c.access_key.is_empty() || c.aws_sdk_auth;
    if use_env {
        for k in AWS_CREDENTIAL_ENV {
            if let Some(v) = env(k).filter(|v| !v.is_empty()) {
                b = b.with_config(aws_key(k), v);
            }
        }
        // Thanos (minio's EnvAWS) also reads these older names.
        if env("AWS_ACCESS_KEY_ID").is_none() {
            if let Some(v) = env("AWS_ACCESS_KEY") {
                b = b.with_access_key_id(v);
            }
        }
        if env("AWS_SECRET_ACCESS_KEY").is_none() {
            if let Some(v) = env("AWS_SECRET_KEY") {
                b = b.with_secret_access_key(v);
            }
        }
    } else {
        b = b
            .with_access_key_id(c.access_key.expose())
            .with_secret_access_key(c.secret_key.expose());
        if !c.session_token.is_empty() {
            b = b.with_token(c.session_token.expose());
        }
    }

    let region = if !c.region.is_empty() {
        Some(c.region.clone())
    } else if let Some(r) = aws_endpoint_region(&c.endpoint) {
        Some(r)
    } else {
        env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .filter(|r| !r.is_empty())
    };
    if let Some(r) = region {
        b = b.with_region(r);
    }

    let scheme = if c.insecure { "http" } else { "https" };
    let virtual_hosted = match c.bucket_lookup_type {
        BucketLookupType::VirtualHosted => true,
        BucketLookupType::Path => false,
        BucketLookupType::Auto => is_aws_endpoint(&c.endpoint),
    };
    // object_store expects the bucket in the endpoint for virtual-hosted
    // requests and appends it to the path otherwise.
    let endpoint = if virtual_hosted {
        format!("{scheme}://{}.{}", c.bucket, c.endpoint)
    } else {
        format!("{scheme}://{}", c.endpoint)
    };
    b = b
        .with_bucket_name(&c.bucket)
        .with_endpoint(endpoint)
        .with_virtual_hosted_style_request(virtual_hosted)
        .with_allow_http(c.insecure)
        .with_retry(retry_config(c.max_retries))
        .with_client_options(
            client_options(&c.http_config, "config.")?.with_allow_http(c.insecure),
        );

    let sse = &c.sse_config;
    match sse.kind.as_str() {
        "" => {}
        "SSE-S3" => {
            b = b.with_config(aws_key("AWS_SERVER_SIDE_ENCRYPTION"), "AES256");
        }
        "SSE-KMS" => {
            if sse.kms_key_id.is_empty() {
                return Err(invalid(
                    "config.sse_config.kms_key_id",
                    "must be set if sse_config.type is SSE-KMS",
                ));
            }
            if !sse.kms_encryption_context.is_empty() {
                return Err(invalid(
                    "config.sse_config.kms_encryption_context",
                    "an SSE-KMS encryption context is not supported",
                ));
            }
            b = b.with_sse_kms_encryption(&sse.kms_key_id);
        }
        "SSE-C" => {
            if sse.encryption_key.is_empty() {
                return Err(invalid(
                    "config.sse_config.encryption_key",
                    "must be set if sse_config.type is SSE-C",
                ));
            }
            let key = std::fs::read(&sse.encryption_key).map_err(|e| {
                invalid(
                    "config.sse_config.encryption_key",
                    format!("reading {}: {e}", sse.encryption_key),
                )
            })?;
            if key.len() != 32 {
                return Err(invalid(
                    "config.sse_config.encryption_key",
                    format!(
                        "{} must hold a 32-byte key, found {} bytes",
                        sse.encryption_key,
                        key.len()
                    ),
                ));
            }
            b = b.with_ssec_encryption(base64_encode(&key));
        }
        other => {
            return Err(invalid(
                "config.sse_config.type",
                format!("unsupported type {other:?}; supported: SSE-S3, SSE-KMS, SSE-C"),
            ));
        }
    }

    let store = b.build().map_err(|source| ConfigError::Client {
        provider: "S3",
        source,
    })?;
    let store = limit(Arc::new(store), &c.http_config);
    Ok((
        format!("s3://{}", c.bucket),
        store,
        UploadConfig {
            part_size,
            disable_multipart: c.disable_multipart,
        },
    ))
}

fn aws_key(env_name: &str) -> AmazonS3ConfigKey {
    env_name
        .to_ascii_lowercase()
        .parse()
        .expect("a configuration key object_store knows")
}

fn is_aws_endpoint(endpoint: &str) -> bool {
    let host = endpoint.split(':').next().unwrap_or("");
    host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn")
}

/// `s3.eu-west-1.amazonaws.com` → `eu-west-1` (also `s3-eu-west-1…` and
/// `s3.dualstack.eu-west-1…`); the global `s3.amazonaws.com` has none.
fn aws_endpoint_region(endpoint: &str) -> Option<String> {
    if !is_aws_endpoint(endpoint) {
        return None;
    }
    let host = endpoint.split(':').next()?;
    let labels: Vec<&str> = host.split('.').collect();
    let first = *labels.first()?;
    let candidate = if let Some(r) = first.strip_prefix("s3-") {
        r
    } else if first == "s3" {
        match labels.get(1) {
            Some(&"dualstack") => labels.get(2)?,
            Some(&"amazonaws") | None => return None,
            Some(r) => r,
        }
    } else {
        return None;
    };
    (candidate.contains('-')).then(|| candidate.to_string())
}

fn base64_encode(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = match chunk.len() {
            3 => (chunk[0] as u32) << 16 | (chunk[1] as u32) << 8 | chunk[2] as u32,
            2 => (chunk[0] as u32) << 16 | (chunk[1] as u32) << 8,
            _ => (chunk[0] as u32) << 16,
        };
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn build_gcs(c: &GcsConfig) -> Result<Built, ConfigError> {
    if c.bucket.is_empty() {
        return Err(invalid("config.bucket", "missing"));
    }
    if c.use_grpc {
        return Err(invalid(
            "config.use_grpc",
            "the gRPC transport is not supported",
        ));
    }
    let mut b = GoogleCloudStorageBuilder::new()
        .with_bucket_name(&c.bucket)
        .with_retry(retry_config(c.max_retries))
        .with_client_options(client_options(&c.http_config, "config.")?);
    if !c.service_account.is_empty() {
        b = b.with_service_account_key(c.service_account.expose());
    }
    let store = b.build().map_err(|source| ConfigError::Client {
        provider: "GCS",
        source,
    })?;
    Ok((
        format!("gs://{}", c.bucket),
        limit(Arc::new(store), &c.http_config),
        UploadConfig::default(),
    ))
}

fn build_azure(
    c: &AzureConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Built, ConfigError> {
    if c.storage_account.is_empty() {
        return Err(invalid("config.storage_account", "missing"));
    }
    if c.container.is_empty() {
        return Err(invalid("config.container", "missing"));
    }
    if !c.storage_connection_string.is_empty() {
        return Err(invalid(
            "config.storage_connection_string",
            "connection strings are not supported; use storage_account and storage_account_key",
        ));
    }
    if !c.storage_account_key.is_empty() && !c.client_secret.is_empty() {
        return Err(invalid(
            "config.client_secret",
            "storage_account_key and client_secret are mutually exclusive",
        ));
    }
    if !c.msi_resource.is_empty() {
        return Err(invalid(
            "config.msi_resource",
            "a custom MSI resource is not supported",
        ));
    }
    let mut retry = retry_config(c.max_retries);
    let p = &c.pipeline_config;
    if p.max_tries > 0 {
        retry.max_retries = p.max_tries - 1;
    }
    if !p.retry_delay.0.is_zero() {
        retry.backoff.init_backoff = p.retry_delay.0;
    }
    if !p.max_retry_delay.0.is_zero() {
        retry.backoff.max_backoff = p.max_retry_delay.0;
    }
    let mut b = MicrosoftAzureBuilder::new();
    if c.storage_account_key.is_empty() && c.client_secret.is_empty() {
        // Workload identity / service principal from the environment, as
        // Azure's DefaultAzureCredential would find them.
        for (var, key) in [
            ("AZURE_CLIENT_ID", "azure_client_id"),
            ("AZURE_TENANT_ID", "azure_tenant_id"),
            ("AZURE_FEDERATED_TOKEN_FILE", "azure_federated_token_file"),
            ("AZURE_AUTHORITY_HOST", "azure_authority_host"),
        ] {
            if let Some(v) = env(var).filter(|v| !v.is_empty()) {
                if let Ok(k) = key.parse() {
                    b = b.with_config(k, v);
                }
            }
        }
    }
    b = b
        .with_account(&c.storage_account)
        .with_container_name(&c.container)
        .with_retry(retry)
        .with_client_options(client_options(&c.http_config, "config.")?);
    if !c.storage_account_key.is_empty() {
        b = b.with_access_key(c.storage_account_key.expose());
    }
    if !c.client_secret.is_empty() {
        b = b
            .with_client_id(&c.client_id)
            .with_client_secret(c.client_secret.expose())
            .with_tenant_id(&c.az_tenant_id);
    } else if !c.user_assigned_id.is_empty() {
        b = b.with_client_id(&c.user_assigned_id);
    } else if !c.client_id.is_empty() {
        b = b.with_client_id(&c.client_id);
    }
    let suffix = c.endpoint.trim_matches('/');
    if !suffix.is_empty() && suffix != AZURE_DEFAULT_ENDPOINT {
        b = b.with_endpoint(format!("https://{}.{suffix}", c.storage_account));
    }
    let store = b.build().map_err(|source| ConfigError::Client {
        provider: "AZURE",
        source,
    })?;
    Ok((
        format!("azure://{}/{}", c.storage_account, c.container),
        limit(Arc::new(store), &c.http_config),
        UploadConfig::default(),
    ))
}

fn build_filesystem(c: &FilesystemConfig) -> Result<Built, ConfigError> {
    if c.directory.is_empty() {
        return Err(invalid("config.directory", "missing"));
    }
    std::fs::create_dir_all(&c.directory)
        .map_err(|e| invalid("config.directory", format!("creating {}: {e}", c.directory)))?;
    // Automatic cleanup removes directories emptied by deletes, so a deleted
    // block does not linger as an empty "partial upload".
    let store = LocalFileSystem::new_with_prefix(&c.directory)
        .map_err(|source| ConfigError::Client {
            provider: "FILESYSTEM",
            source,
        })?
        .with_automatic_cleanup(true);
    let dir = std::fs::canonicalize(&c.directory).unwrap_or_else(|_| PathBuf::from(&c.directory));
    Ok((
        format!("file://{}", dir.display()),
        Arc::new(store),
        UploadConfig::default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(yaml_config: &str) -> S3Config {
        match ObjstoreConfig::parse(&format!("type: S3\nconfig:\n{yaml_config}"))
            .unwrap()
            .provider
        {
            Provider::S3(c) => c,
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn parses_thanos_s3_config_with_defaults() {
        let c = s3("  bucket: thanos\n  endpoint: 127.0.0.1:9000\n  access_key: AK\n  secret_key: SK\n  insecure: true\n  http_config:\n    idle_conn_timeout: 1m30s\n    response_header_timeout: 2m\n  bucket_lookup_type: path\n  part_size: 10485760\n");
        assert_eq!(c.bucket, "thanos");
        assert!(c.insecure);
        assert_eq!(c.access_key.expose(), "AK");
        assert_eq!(c.bucket_lookup_type, BucketLookupType::Path);
        assert_eq!(c.part_size, 10 << 20);
        assert!(c.send_content_md5, "Thanos default");
        assert_eq!(
            c.http_config.response_header_timeout.0,
            Duration::from_secs(120)
        );
        assert_eq!(c.http_config.max_idle_conns, 100);
    }

    #[test]
    fn type_is_case_insensitive_and_prefix_is_trimmed() {
        let c = ObjstoreConfig::parse(
            "type: filesystem\nconfig:\n  directory: /tmp/x\nprefix: /a/b/\n",
        )
        .unwrap();
        assert_eq!(c.provider.type_name(), "FILESYSTEM");
        assert_eq!(c.prefix, "a/b");
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let e =
            ObjstoreConfig::parse("type: S3\nconfig:\n  bucket: b\n  endpointt: x\n").unwrap_err();
        assert!(e.to_string().contains("endpointt"), "{e}");
        let e = ObjstoreConfig::parse("type: S3\nconfig:\n  http_config:\n    idle_timeout: 1s\n")
            .unwrap_err();
        assert!(e.to_string().contains("idle_timeout"), "{e}");
        let e = ObjstoreConfig::parse("type: S3\nconfg:\n  bucket: b\n").unwrap_err();
        assert!(e.to_string().contains("confg"), "{e}");
        let e = ObjstoreConfig::parse("type: SWIFT\nconfig: {}\n").unwrap_err();
        assert!(e.to_string().contains("SWIFT"), "{e}");
    }

    #[test]
    fn errors_never_echo_secrets() {
        // A type error on the line holding a secret.
        let e =
            ObjstoreConfig::parse("type: S3\nconfig:\n  secret_key: [TOPSECRET]\n").unwrap_err();
        assert!(!e.to_string().contains("TOPSECRET"), "{e}");
        let c = ObjstoreConfig::parse("type: S3\nconfig:\n  access_key: AKIDSECRET\n  secret_key: TOPSECRET\n  session_token: TOKSECRET\n").unwrap();
        let dbg = format!("{c:?}");
        for s in ["AKIDSECRET", "TOPSECRET", "TOKSECRET"] {
            assert!(!dbg.contains(s), "{dbg}");
        }
        assert!(dbg.contains("<redacted>"));
    }

    #[test]
    fn rejects_what_object_store_cannot_do() {
        let base =
            "type: S3\nconfig:\n  bucket: b\n  endpoint: e:1\n  access_key: a\n  secret_key: s\n";
        for (extra, key) in [
            ("  signature_version2: true\n", "signature_version2"),
            ("  list_objects_version: v1\n", "list_objects_version"),
            ("  sse_config:\n    type: SSE-X\n", "sse_config.type"),
            (
                "  sse_config:\n    type: SSE-KMS\n",
                "sse_config.kms_key_id",
            ),
            (
                "  http_config:\n    tls_config:\n      cert_file: /c.pem\n",
                "cert_file",
            ),
            ("  part_size: 1024\n", "part_size"),
        ] {
            let e = ObjstoreConfig::parse(&format!("{base}{extra}"))
                .unwrap()
                .build()
                .unwrap_err();
            assert!(e.to_string().contains(key), "{extra}: {e}");
        }
        let e = ObjstoreConfig::parse("type: S3\nconfig:\n  bucket: b\n  endpoint: http://e:1\n")
            .unwrap()
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("scheme"), "{e}");
        let e = ObjstoreConfig::parse(
            "type: S3\nconfig:\n  bucket: b\n  endpoint: e\n  access_key: a\n",
        )
        .unwrap()
        .build()
        .unwrap_err();
        assert!(e.to_string().contains("secret_key"), "{e}");
    }

    #[test]
    fn builds_every_provider() {
        let d = tempfile::tempdir().unwrap();
        let fs = ObjstoreConfig::parse(&format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\nprefix: p\n",
            d.path().join("new").display()
        ))
        .unwrap();
        let b = fs.build().unwrap();
        assert!(
            b.name().starts_with("file://") && b.name().ends_with("/new/p"),
            "{}",
            b.name()
        );

        let no_env = |_: &str| None;
        let s3 = ObjstoreConfig::parse(
            "type: S3\nconfig:\n  bucket: b\n  endpoint: s3.eu-west-1.amazonaws.com\n",
        )
        .unwrap();
        assert_eq!(s3.build_with_env(&no_env).unwrap().name(), "s3://b");

        let az = ObjstoreConfig::parse("type: AZURE\nconfig:\n  storage_account: acct\n  storage_account_key: a2V5\n  container: c\n").unwrap();
        assert_eq!(az.build_with_env(&no_env).unwrap().name(), "azure://acct/c");

        let e = ObjstoreConfig::parse(
            "type: GCS\nconfig:\n  bucket: b\n  service_account: '{not json'\n",
        )
        .unwrap()
        .build()
        .unwrap_err();
        assert!(e.to_string().contains("GCS"), "{e}");
        assert!(!e.to_string().contains("not json"), "{e}");
    }

    #[test]
    fn env_substitution_like_thanos() {
        let env = |k: &str| (k == "SK").then(|| "s3cr3t".to_string());
        assert_eq!(
            expand_env("a: $(SK) $x $(", env).unwrap(),
            "a: s3cr3t $x $("
        );
        let e = expand_env("a: $(NOPE)", env).unwrap_err();
        assert!(e.to_string().contains("NOPE"), "{e}");
    }

    #[test]
    fn flags_are_exclusive_and_optional() {
        assert!(ObjstoreConfig::from_flags(None, None).unwrap().is_none());
        assert!(ObjstoreConfig::from_flags(None, Some(""))
            .unwrap()
            .is_none());
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("objstore.yml");
        std::fs::write(&f, "type: FILESYSTEM\nconfig:\n  directory: /tmp/d\n").unwrap();
        let c = ObjstoreConfig::from_flags(Some(&f), None).unwrap().unwrap();
        assert_eq!(c.provider.type_name(), "FILESYSTEM");
        assert!(matches!(
            ObjstoreConfig::from_flags(Some(&f), Some("type: S3")).unwrap_err(),
            ConfigError::BothFlags
        ));
        let e = ObjstoreConfig::from_flags(Some(&d.path().join("nope.yml")), None).unwrap_err();
        assert!(e.to_string().contains("nope.yml"), "{e}");
    }

    #[test]
    fn durations() {
        let p = |s| PromDuration::parse(s).map(|d| d.0);
        assert_eq!(p("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(p("0"), Ok(Duration::ZERO));
        assert_eq!(p("1d2h"), Ok(Duration::from_secs(26 * 3600)));
        assert_eq!(p("500ms"), Ok(Duration::from_millis(500)));
        assert!(p("").is_err() && p("5").is_err() && p("1s1m").is_err() && p("1x").is_err());
    }

    #[test]
    fn aws_regions_from_endpoints() {
        assert_eq!(
            aws_endpoint_region("s3.eu-west-1.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            aws_endpoint_region("s3-us-west-2.amazonaws.com").as_deref(),
            Some("us-west-2")
        );
        assert_eq!(
            aws_endpoint_region("s3.dualstack.ap-south-1.amazonaws.com").as_deref(),
            Some("ap-south-1")
        );
        assert_eq!(aws_endpoint_region("s3.amazonaws.com"), None);
        assert_eq!(aws_endpoint_region("minio:9000"), None);
    }

    #[test]
    fn base64() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }
}
