//! The `prometheus.yml` subset that `strata tsdb` understands.
//!
//! [`Config::load`] / [`Config::load_file`] parse and validate a config the
//! way Prometheus 2.42 does (`config/config.go`, common's `http_config.go`,
//! the file and Kubernetes SD configs), apply the same defaults, and keep
//! the original text for `/api/v1/status/config`. [`Config::to_yaml`] prints
//! the *effective* config (defaults filled in, secrets hidden) in the shape
//! Prometheus prints it.
//!
//! Every error carries the line and column of the offending YAML node and
//! the path of the field (`scrape_configs[1].scrape_timeout`), because a user
//! with a 500-line config needs to know where to look. Unknown fields are
//! rejected (Prometheus uses `UnmarshalStrict`); fields that Prometheus
//! knows but we do not implement (remote write, alerting, other service
//! discoveries, OAuth2, proxies...) are rejected with a message saying so,
//! rather than silently ignored.
//!
//! Parsing goes through private `Raw*` structs that mirror the YAML (with
//! `Option` for "absent" so defaults can be told apart from explicit
//! values, and [`serde_saphyr::Spanned`] where a later check needs a
//! position); they are then checked and converted into the public,
//! validated types.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;
use strata_tsdb::labels::Labels;

use crate::discovery::TargetGroup;
use crate::relabel::{is_valid_label_name, Action, Regex, RelabelConfig};

/// Prometheus' defaults.
pub const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_EVALUATION_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_FILE_SD_REFRESH: Duration = Duration::from_secs(300);

/// A config error, with where it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file, when loaded from one.
    pub file: Option<PathBuf>,
    /// 1-based line; 0 when unknown (e.g. an unreadable file).
    pub line: usize,
    /// 1-based column; 0 when unknown.
    pub column: usize,
    /// Path of the field, like `scrape_configs[0].relabel_configs[2].regex`.
    /// Empty when the error is not about one field.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.file {
            write!(f, "{}: ", p.display())?;
        }
        if self.line > 0 {
            write!(f, "line {}, column {}: ", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl ConfigError {
    fn at(
        loc: serde_saphyr::Location,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: None,
            line: loc.line() as usize,
            column: loc.column() as usize,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A credential read from the config. Never printed.
#[derive(Clone, PartialEq, Eq, Default)]
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
        f.write_str("<secret>")
    }
}

/// The whole validated config.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    pub global: GlobalConfig,
    pub scrape_configs: Vec<ScrapeConfig>,
    /// The YAML text this config was loaded from.
    source: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GlobalConfig {
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    pub evaluation_interval: Duration,
    pub external_labels: Labels,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            scrape_interval: DEFAULT_SCRAPE_INTERVAL,
            scrape_timeout: DEFAULT_SCRAPE_TIMEOUT,
            evaluation_interval: DEFAULT_EVALUATION_INTERVAL,
            external_labels: Labels::empty(),
        }
    }
}

/// URL scheme of a scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// One `scrape_configs` entry, defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct ScrapeConfig {
    pub job_name: String,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    /// URL query parameters, name → values.
    pub params: BTreeMap<String, Vec<String>>,
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    pub metrics_path: String,
    pub scheme: Scheme,
    /// Maximum uncompressed body size in bytes; 0 = unlimited.
    pub body_size_limit: u64,
    /// Maximum samples per scrape after metric relabeling; 0 = unlimited.
    pub sample_limit: u64,
    /// Maximum labels per series; 0 = unlimited.
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
    pub http: HttpClientConfig,
    pub relabel_configs: Vec<RelabelConfig>,
    pub metric_relabel_configs: Vec<RelabelConfig>,
    pub static_configs: Vec<TargetGroup>,
    pub file_sd_configs: Vec<FileSdConfig>,
    pub kubernetes_sd_configs: Vec<KubernetesSdConfig>,
}

/// The HTTP client settings shared by scrape configs and SD configs.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpClientConfig {
    pub basic_auth: Option<BasicAuth>,
    /// Also holds `bearer_token` / `bearer_token_file`, which Prometheus
    /// turns into `authorization` of type `Bearer`.
    pub authorization: Option<Authorization>,
    pub tls_config: TlsConfig,
    pub follow_redirects: bool,
    pub enable_http2: bool,
}

impl Default for HttpClientConfig {
    fn default() -> Self {
        HttpClientConfig {
            basic_auth: None,
            authorization: None,
            tls_config: TlsConfig::default(),
            follow_redirects: true,
            enable_http2: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct BasicAuth {
    pub username: String,
    pub password: Secret,
    pub password_file: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Authorization {
    /// `Bearer` unless set.
    pub r#type: String,
    pub credentials: Secret,
    pub credentials_file: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

impl TlsConfig {
    pub fn is_default(&self) -> bool {
        *self == TlsConfig::default()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct FileSdConfig {
    /// Paths or globs (a `*` only in the last path element).
    pub files: Vec<PathBuf>,
    pub refresh_interval: Duration,
}

/// The Kubernetes object kind a `kubernetes_sd_configs` entry discovers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KubernetesRole {
    Pod,
    Service,
    Endpoints,
    EndpointSlice,
    Node,
    Ingress,
}

impl KubernetesRole {
    pub fn as_str(self) -> &'static str {
        match self {
            KubernetesRole::Pod => "pod",
            KubernetesRole::Service => "service",
            KubernetesRole::Endpoints => "endpoints",
            KubernetesRole::EndpointSlice => "endpointslice",
            KubernetesRole::Node => "node",
            KubernetesRole::Ingress => "ingress",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pod" => KubernetesRole::Pod,
            "service" => KubernetesRole::Service,
            "endpoints" => KubernetesRole::Endpoints,
            "endpointslice" => KubernetesRole::EndpointSlice,
            "node" => KubernetesRole::Node,
            "ingress" => KubernetesRole::Ingress,
            _ => return None,
        })
    }

    /// The selector roles a discovery of this role accepts.
    fn allowed_selectors(self) -> &'static [KubernetesRole] {
        use KubernetesRole::*;
        match self {
            Pod => &[Pod],
            Service => &[Service],
            EndpointSlice => &[Pod, Service, EndpointSlice],
            Endpoints => &[Pod, Service, Endpoints],
            Node => &[Node],
            Ingress => &[Ingress],
        }
    }
}

/// A parsed and validated `kubernetes_sd_configs` entry; discovery is
/// [`crate::kubernetes::KubernetesDiscovery`].
#[derive(Clone, Debug, PartialEq)]
pub struct KubernetesSdConfig {
    pub role: KubernetesRole,
    pub api_server: Option<String>,
    pub kubeconfig_file: Option<PathBuf>,
    pub namespaces: KubernetesNamespaces,
    pub selectors: Vec<KubernetesSelector>,
    pub attach_metadata_node: bool,
    pub http: HttpClientConfig,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct KubernetesNamespaces {
    pub own_namespace: bool,
    pub names: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct KubernetesSelector {
    pub role: KubernetesRole,
    pub label: String,
    pub field: String,
}

// ---------------------------------------------------------------------------
// Durations and sizes.

/// Parses a Prometheus duration: `[Ny][Nw][Nd][Nh][Nm][Ns][Nms]` with at
/// least one part, units in that order, or `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    match s {
        "" => return Err("empty duration string".into()),
        "0" => return Ok(Duration::ZERO),
        _ => {}
    }
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 24 * 3600 * 1000),
        ("w", 7 * 24 * 3600 * 1000),
        ("d", 24 * 3600 * 1000),
        ("h", 3600 * 1000),
        ("m", 60 * 1000),
        ("s", 1000),
        ("ms", 1),
    ];
    let invalid = || format!("not a valid duration string: {s:?}");
    let mut rest = s;
    let mut next_unit = 0;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| "duration out of range".to_string())?;
        rest = &rest[digits..];
        // "ms" must be tried before "m".
        let (idx, len) = if rest.starts_with("ms") {
            (6, 2)
        } else {
            match UNITS[..6].iter().position(|(u, _)| rest.starts_with(u)) {
                Some(i) => (i, 1),
                None => return Err(invalid()),
            }
        };
        if idx < next_unit {
            return Err(invalid());
        }
        next_unit = idx + 1;
        rest = &rest[len..];
        total = n
            .checked_mul(UNITS[idx].1)
            .and_then(|v| total.checked_add(v))
            .filter(|v| *v <= i64::MAX as u64 / 1_000_000)
            .ok_or_else(|| "duration out of range".to_string())?;
    }
    Ok(Duration::from_millis(total))
}

/// Formats a duration like Prometheus (`1m30s`, `5m`, `1d`, `0s`); years
/// and weeks only when exact.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut part = |unit: &str, mult: u64, exact: bool, ms: &mut u64| {
        if exact && !ms.is_multiple_of(mult) {
            return;
        }
        let v = *ms / mult;
        if v > 0 {
            out.push_str(&format!("{v}{unit}"));
            *ms -= v * mult;
        }
    };
    part("y", 365 * 24 * 3600 * 1000, true, &mut ms);
    part("w", 7 * 24 * 3600 * 1000, true, &mut ms);
    part("d", 24 * 3600 * 1000, false, &mut ms);
    part("h", 3600 * 1000, false, &mut ms);
    part("m", 60 * 1000, false, &mut ms);
    part("s", 1000, false, &mut ms);
    part("ms", 1, false, &mut ms);
    out
}

/// Parses a byte size like `10MB`, `512KiB`, `1GB512MB` or `0`. As in
/// Prometheus (`units.Base2Bytes`), `KB`, `MB`... are powers of 1024 just
/// like `KiB`, `MiB`...; fractions such as `1.5MB` are allowed.
pub fn parse_byte_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err("empty byte size".into());
    }
    let invalid = || format!("invalid byte size {s:?}");
    let mut rest = s;
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest
            .bytes()
            .take_while(|c| c.is_ascii_digit() || *c == b'.')
            .count();
        if n == 0 {
            return Err(invalid());
        }
        let num: f64 = rest[..n].parse().map_err(|_| invalid())?;
        rest = &rest[n..];
        let u = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        if u == 0 {
            return Err(format!("missing unit in byte size {s:?}"));
        }
        let mult: u64 = match &rest[..u] {
            "B" => 1,
            "KB" | "KiB" => 1 << 10,
            "MB" | "MiB" => 1 << 20,
            "GB" | "GiB" => 1 << 30,
            "TB" | "TiB" => 1 << 40,
            "PB" | "PiB" => 1 << 50,
            "EB" | "EiB" => 1 << 60,
            other => return Err(format!("unknown unit {other:?} in byte size {s:?}")),
        };
        rest = &rest[u..];
        total += num * mult as f64;
    }
    if !total.is_finite() || total >= u64::MAX as f64 {
        return Err(invalid());
    }
    Ok(total as u64)
}

/// Formats a byte size the way `units.Base2Bytes` prints (`10MiB`, `1KiB512B`).
pub fn format_byte_size(mut n: u64) -> String {
    if n == 0 {
        return "0B".into();
    }
    const UNITS: [(&str, u64); 7] = [
        ("EiB", 1 << 60),
        ("PiB", 1 << 50),
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("B", 1),
    ];
    let mut out = String::new();
    for (u, m) in UNITS {
        if n >= m {
            out.push_str(&format!("{}{u}", n / m));
            n %= m;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Raw YAML shapes.

/// A duration in the YAML (string, or the bare number 0).
#[derive(Clone, Copy, Debug)]
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 30s or 1m")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                parse_duration(s).map(Dur).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Dur, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Dur, E> {
                self.visit_str(&n.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

/// A YAML scalar read as a string (Go's YAML decoder turns `1` or `true`
/// into a string field without complaint, and configs rely on that, e.g.
/// `replacement: 1`).
#[derive(Clone, Debug, Default, PartialEq)]
struct Str(String);

impl<'de> Deserialize<'de> for Str {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Str;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Str, E> {
                Ok(Str(s.to_string()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Str, E> {
                Ok(Str(s))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Str, E> {
                Ok(Str(n.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Str, E> {
                Ok(Str(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Str, E> {
                Ok(Str(n.to_string()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Str, E> {
                Ok(Str(b.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Str, E> {
                Ok(Str(String::new()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A byte size in the YAML.
#[derive(Clone, Copy, Debug)]
struct ByteSize(u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Str::deserialize(d)?;
        parse_byte_size(&s.0)
            .map(ByteSize)
            .map_err(de::Error::custom)
    }
}

/// A label name, checked while parsing.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct LabelName(String);

impl<'de> Deserialize<'de> for LabelName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Str::deserialize(d)?;
        if !is_valid_label_name(&s.0) {
            return Err(de::Error::custom(format!(
                "{:?} is not a valid label name",
                s.0
            )));
        }
        Ok(LabelName(s.0))
    }
}

type RawLabelSet = BTreeMap<LabelName, Str>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    global: Option<Spanned<RawGlobal>>,
    scrape_configs: Option<Vec<Spanned<RawScrapeConfig>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    scrape_interval: Option<Spanned<Dur>>,
    scrape_timeout: Option<Spanned<Dur>>,
    evaluation_interval: Option<Dur>,
    external_labels: Option<RawLabelSet>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBasicAuth {
    username: Option<Str>,
    password: Option<Str>,
    password_file: Option<Str>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuthorization {
    #[serde(rename = "type")]
    typ: Option<Str>,
    credentials: Option<Str>,
    credentials_file: Option<Str>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: Option<Str>,
    cert_file: Option<Str>,
    key_file: Option<Str>,
    server_name: Option<Str>,
    insecure_skip_verify: Option<bool>,
}

/// The HTTP client fields, which Prometheus inlines into several configs.
#[derive(Default)]
struct RawHttp {
    basic_auth: Option<Spanned<RawBasicAuth>>,
    authorization: Option<Spanned<RawAuthorization>>,
    bearer_token: Option<Spanned<Str>>,
    bearer_token_file: Option<Spanned<Str>>,
    tls_config: Option<Spanned<RawTls>>,
    follow_redirects: Option<bool>,
    enable_http2: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScrapeConfig {
    job_name: Option<Spanned<Str>>,
    honor_labels: Option<bool>,
    honor_timestamps: Option<bool>,
    params: Option<BTreeMap<String, Vec<Str>>>,
    scrape_interval: Option<Spanned<Dur>>,
    scrape_timeout: Option<Spanned<Dur>>,
    metrics_path: Option<Str>,
    scheme: Option<Spanned<Str>>,
    body_size_limit: Option<ByteSize>,
    sample_limit: Option<u64>,
    label_limit: Option<u64>,
    label_name_length_limit: Option<u64>,
    label_value_length_limit: Option<u64>,
    basic_auth: Option<Spanned<RawBasicAuth>>,
    authorization: Option<Spanned<RawAuthorization>>,
    bearer_token: Option<Spanned<Str>>,
    bearer_token_file: Option<Spanned<Str>>,
    tls_config: Option<Spanned<RawTls>>,
    follow_redirects: Option<bool>,
    enable_http2: Option<bool>,
    relabel_configs: Option<Vec<Spanned<RawRelabel>>>,
    metric_relabel_configs: Option<Vec<Spanned<RawRelabel>>>,
    static_configs: Option<Vec<Spanned<RawTargetGroup>>>,
    file_sd_configs: Option<Vec<Spanned<RawFileSd>>>,
    kubernetes_sd_configs: Option<Vec<Spanned<RawKubernetes>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelabel {
    source_labels: Option<Vec<LabelName>>,
    separator: Option<Str>,
    regex: Option<Str>,
    modulus: Option<u64>,
    target_label: Option<Str>,
    replacement: Option<Str>,
    action: Option<Str>,
}

/// A target group as written in `static_configs` and in file_sd files.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTargetGroup {
    targets: Option<Vec<Str>>,
    labels: Option<RawLabelSet>,
}

impl RawTargetGroup {
    pub(crate) fn into_group(self, source: String) -> TargetGroup {
        TargetGroup {
            targets: self
                .targets
                .unwrap_or_default()
                .into_iter()
                .map(|t| t.0)
                .collect(),
            target_labels: Vec::new(),
            labels: self
                .labels
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.0, v.0))
                .collect(),
            source,
        }
    }
}

/// Parses a file_sd file body (a list of target groups) from YAML.
pub(crate) fn parse_target_groups_yaml(text: &str) -> Result<Vec<RawTargetGroup>, String> {
    let v: Option<Vec<RawTargetGroup>> = serde_saphyr::from_str(text).map_err(|e| {
        let (line, col) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        format!("line {line}, column {col}: {}", saphyr_message(&e))
    })?;
    Ok(v.unwrap_or_default())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFileSd {
    files: Option<Vec<Str>>,
    refresh_interval: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKubernetes {
    role: Option<Str>,
    api_server: Option<Str>,
    kubeconfig_file: Option<Str>,
    namespaces: Option<RawNamespaces>,
    selectors: Option<Vec<RawSelector>>,
    attach_metadata: Option<RawAttachMetadata>,
    basic_auth: Option<Spanned<RawBasicAuth>>,
    authorization: Option<Spanned<RawAuthorization>>,
    bearer_token: Option<Spanned<Str>>,
    bearer_token_file: Option<Spanned<Str>>,
    tls_config: Option<Spanned<RawTls>>,
    follow_redirects: Option<bool>,
    enable_http2: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNamespaces {
    own_namespace: Option<bool>,
    names: Option<Vec<Str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelector {
    role: Option<Str>,
    label: Option<Str>,
    field: Option<Str>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAttachMetadata {
    node: Option<bool>,
}

/// Fields Prometheus knows but we do not implement; naming them turns a
/// bare "unknown field" into an honest "not supported".
const UNSUPPORTED_FIELDS: &[&str] = &[
    "rule_files",
    "alerting",
    "remote_write",
    "remote_read",
    "storage",
    "tracing",
    "query_log_file",
    "target_limit",
    "oauth2",
    "proxy_url",
    "no_proxy",
    "proxy_from_environment",
    "proxy_connect_header",
    "http_headers",
    "scrape_classic_histograms",
    "native_histogram_bucket_limit",
    "keep_dropped_targets",
    "track_timestamps_staleness",
    "scrape_protocols",
    "enable_compression",
    "min_version",
    "max_version",
    "azure_sd_configs",
    "consul_sd_configs",
    "digitalocean_sd_configs",
    "docker_sd_configs",
    "dockerswarm_sd_configs",
    "dns_sd_configs",
    "ec2_sd_configs",
    "eureka_sd_configs",
    "gce_sd_configs",
    "hetzner_sd_configs",
    "http_sd_configs",
    "ionos_sd_configs",
    "kuma_sd_configs",
    "lightsail_sd_configs",
    "linode_sd_configs",
    "marathon_sd_configs",
    "nerve_sd_configs",
    "nomad_sd_configs",
    "openstack_sd_configs",
    "ovhcloud_sd_configs",
    "puppetdb_sd_configs",
    "scaleway_sd_configs",
    "serverset_sd_configs",
    "triton_sd_configs",
    "uyuni_sd_configs",
    "vultr_sd_configs",
];

/// The message of a YAML error, without the location or source snippet
/// (we print the location ourselves).
fn saphyr_message(e: &serde_saphyr::Error) -> String {
    let full = e.without_snippet().to_string();
    // The plain rendering ends with " at line L, column C"; drop it.
    match full.rfind(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full,
    }
}

/// Turns a YAML/serde error into a [`ConfigError`], naming the field for
/// unknown or unsupported fields.
fn yaml_error(e: &serde_saphyr::Error) -> ConfigError {
    let (line, column) = e
        .location()
        .map(|l| (l.line() as usize, l.column() as usize))
        .unwrap_or((0, 0));
    let mut message = saphyr_message(e);
    let mut field = String::new();
    if let Some(rest) = message.split("unknown field `").nth(1) {
        if let Some(name) = rest.split('`').next() {
            field = name.to_string();
            if UNSUPPORTED_FIELDS.contains(&name) {
                message = format!("field {name:?} is not supported by strata (yet)");
            } else {
                message = format!("field {name:?} not found in type config (unknown field)");
            }
        }
    }
    ConfigError {
        file: None,
        line,
        column,
        field,
        message,
    }
}

/// The mapping key on line `line` (1-based) of `text`, if the line holds
/// one: type errors from the YAML decoder ("invalid boolean") say where but
/// not which field, and the key on that line is the field.
fn key_at_line(text: &str, line: usize) -> String {
    let Some(l) = line.checked_sub(1).and_then(|i| text.lines().nth(i)) else {
        return String::new();
    };
    let mut l = l.trim_start();
    while let Some(rest) = l.strip_prefix("- ") {
        l = rest.trim_start();
    }
    match l.split_once(':') {
        Some((k, _))
            if !k.is_empty() && !k.contains(char::is_whitespace) && !k.starts_with('#') =>
        {
            k.trim_matches(|c| c == '"' || c == '\'').to_string()
        }
        _ => String::new(),
    }
}

// ---------------------------------------------------------------------------
// Loading and validation.

impl Config {
    /// Parses and validates a config. Relative file paths stay relative.
    pub fn load(text: &str) -> Result<Config, ConfigError> {
        Self::load_with_dir(text, None)
    }

    /// Reads, parses and validates a config file. Relative paths in it
    /// (file_sd files, TLS files, password and credential files) are
    /// resolved against the file's directory, as Prometheus does.
    pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: Some(path.to_path_buf()),
            line: 0,
            column: 0,
            field: String::new(),
            message: e.to_string(),
        })?;
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        Self::load_with_dir(&text, dir).map_err(|mut e| {
            e.file = Some(path.to_path_buf());
            e
        })
    }

    /// Parses `text`, resolving relative paths against `dir` when given.
    pub fn load_with_dir(text: &str, dir: Option<&Path>) -> Result<Config, ConfigError> {
        let raw: Option<RawConfig> = serde_saphyr::from_str(text).map_err(|e| {
            let mut ce = yaml_error(&e);
            if ce.field.is_empty() {
                ce.field = key_at_line(text, ce.line);
            }
            ce
        })?;
        let mut cfg = convert(raw, dir)?;
        cfg.source = text.to_string();
        Ok(cfg)
    }

    /// The YAML text the config was loaded from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The scrape config of `job`.
    pub fn scrape_config(&self, job: &str) -> Option<&ScrapeConfig> {
        self.scrape_configs.iter().find(|c| c.job_name == job)
    }
}

fn join_dir(dir: Option<&Path>, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    match dir {
        Some(d) if p.is_relative() && !p.as_os_str().is_empty() => d.join(p),
        _ => p,
    }
}

fn convert(raw: Option<RawConfig>, dir: Option<&Path>) -> Result<Config, ConfigError> {
    let mut cfg = Config::default();
    let Some(raw) = raw else {
        return Ok(cfg);
    };
    if let Some(g) = raw.global {
        cfg.global = convert_global(g)?;
    }
    let mut names = HashSet::new();
    for (i, sc) in raw
        .scrape_configs
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let path = format!("scrape_configs[{i}]");
        let loc = sc.referenced;
        let sc = convert_scrape_config(sc.value, loc, &path, &cfg.global, dir)?;
        if !names.insert(sc.job_name.clone()) {
            return Err(ConfigError::at(
                loc,
                format!("{path}.job_name"),
                format!(
                    "found multiple scrape configs with job name {:?}",
                    sc.job_name
                ),
            ));
        }
        cfg.scrape_configs.push(sc);
    }
    Ok(cfg)
}

fn convert_global(g: Spanned<RawGlobal>) -> Result<GlobalConfig, ConfigError> {
    let loc = g.referenced;
    let g = g.value;
    let interval = g
        .scrape_interval
        .as_ref()
        .map(|d| d.value.0)
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_SCRAPE_INTERVAL);
    let mut timeout = g
        .scrape_timeout
        .as_ref()
        .map(|d| d.value.0)
        .unwrap_or_default();
    if timeout > interval {
        let at = g
            .scrape_timeout
            .as_ref()
            .map(|d| d.referenced)
            .unwrap_or(loc);
        return Err(ConfigError::at(
            at,
            "global.scrape_timeout",
            "global scrape timeout greater than scrape interval",
        ));
    }
    if timeout.is_zero() {
        timeout = DEFAULT_SCRAPE_TIMEOUT.min(interval);
    }
    let evaluation_interval = g
        .evaluation_interval
        .map(|d| d.0)
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_EVALUATION_INTERVAL);
    Ok(GlobalConfig {
        scrape_interval: interval,
        scrape_timeout: timeout,
        evaluation_interval,
        external_labels: labels_from_raw(g.external_labels.unwrap_or_default()),
    })
}

fn labels_from_raw(raw: RawLabelSet) -> Labels {
    Labels::from_pairs(raw.into_iter().map(|(k, v)| (k.0, v.0)))
}

fn opt_str(s: Option<Str>) -> String {
    s.map(|s| s.0).unwrap_or_default()
}

fn convert_http(
    raw: RawHttp,
    loc: serde_saphyr::Location,
    path: &str,
    dir: Option<&Path>,
) -> Result<HttpClientConfig, ConfigError> {
    // Point at the most specific field involved in a conflict.
    let err = |at: Option<serde_saphyr::Location>, field: &str, m: &str| {
        ConfigError::at(at.unwrap_or(loc), format!("{path}.{field}"), m.to_string())
    };
    let bearer_loc = raw.bearer_token.as_ref().map(|b| b.referenced);
    let bearer_file_loc = raw.bearer_token_file.as_ref().map(|b| b.referenced);
    let bearer = opt_str(raw.bearer_token.map(|b| b.value));
    let bearer_file = opt_str(raw.bearer_token_file.map(|b| b.value));
    let any_bearer = !bearer.is_empty() || !bearer_file.is_empty();
    let (bearer_field, bearer_at) = if bearer.is_empty() {
        ("bearer_token_file", bearer_file_loc)
    } else {
        ("bearer_token", bearer_loc)
    };
    if !bearer.is_empty() && !bearer_file.is_empty() {
        return Err(err(
            bearer_file_loc,
            "bearer_token_file",
            "at most one of bearer_token & bearer_token_file must be configured",
        ));
    }
    let basic_auth = match raw.basic_auth {
        Some(b) => {
            let at = Some(b.referenced);
            let b = b.value;
            let password = opt_str(b.password);
            let password_file = opt_str(b.password_file);
            if !password.is_empty() && !password_file.is_empty() {
                return Err(err(
                    at,
                    "basic_auth",
                    "at most one of basic_auth password & password_file must be configured",
                ));
            }
            if any_bearer {
                return Err(err(
                    bearer_at,
                    bearer_field,
                    "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured",
                ));
            }
            Some(BasicAuth {
                username: opt_str(b.username),
                password: Secret(password),
                password_file: (!password_file.is_empty()).then(|| join_dir(dir, &password_file)),
            })
        }
        None => None,
    };
    let authorization = match raw.authorization {
        Some(a) => {
            let at = Some(a.referenced);
            let a = a.value;
            if any_bearer {
                return Err(err(
                    at,
                    "authorization",
                    "authorization is not compatible with bearer_token & bearer_token_file",
                ));
            }
            let credentials = opt_str(a.credentials);
            let credentials_file = opt_str(a.credentials_file);
            if !credentials.is_empty() && !credentials_file.is_empty() {
                return Err(err(
                    at,
                    "authorization",
                    "at most one of authorization credentials & credentials_file must be configured",
                ));
            }
            let mut typ = opt_str(a.typ).trim().to_string();
            if typ.is_empty() {
                typ = "Bearer".into();
            }
            if typ.eq_ignore_ascii_case("basic") {
                return Err(err(
                    at,
                    "authorization.type",
                    "authorization type cannot be set to \"basic\", use \"basic_auth\" instead",
                ));
            }
            if basic_auth.is_some() {
                return Err(err(
                    at,
                    "authorization",
                    "at most one of basic_auth, oauth2 & authorization must be configured",
                ));
            }
            Some(Authorization {
                r#type: typ,
                credentials: Secret(credentials),
                credentials_file: (!credentials_file.is_empty())
                    .then(|| join_dir(dir, &credentials_file)),
            })
        }
        None if !bearer.is_empty() => Some(Authorization {
            r#type: "Bearer".into(),
            credentials: Secret(bearer),
            credentials_file: None,
        }),
        None if !bearer_file.is_empty() => Some(Authorization {
            r#type: "Bearer".into(),
            credentials: Secret::default(),
            credentials_file: Some(join_dir(dir, &bearer_file)),
        }),
        None => None,
    };
    let tls_config = match raw.tls_config {
        Some(t) => {
            let at = Some(t.referenced);
            let t = t.value;
            let f = |s: Option<Str>| {
                let s = opt_str(s);
                (!s.is_empty()).then(|| join_dir(dir, &s))
            };
            let tls = TlsConfig {
                ca_file: f(t.ca_file),
                cert_file: f(t.cert_file),
                key_file: f(t.key_file),
                server_name: t.server_name.map(|s| s.0).filter(|s| !s.is_empty()),
                insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
            };
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                let which = if tls.cert_file.is_some() {
                    "client cert file specified without client key file"
                } else {
                    "client key file specified without client cert file"
                };
                return Err(err(at, "tls_config", which));
            }
            tls
        }
        None => TlsConfig::default(),
    };
    Ok(HttpClientConfig {
        basic_auth,
        authorization,
        tls_config,
        follow_redirects: raw.follow_redirects.unwrap_or(true),
        enable_http2: raw.enable_http2.unwrap_or(true),
    })
}

fn convert_scrape_config(
    raw: RawScrapeConfig,
    loc: serde_saphyr::Location,
    path: &str,
    global: &GlobalConfig,
    dir: Option<&Path>,
) -> Result<ScrapeConfig, ConfigError> {
    let job_name = match &raw.job_name {
        Some(j) if !j.value.0.is_empty() => j.value.0.clone(),
        Some(j) => {
            return Err(ConfigError::at(
                j.referenced,
                format!("{path}.job_name"),
                "job_name is empty",
            ))
        }
        None => {
            return Err(ConfigError::at(
                loc,
                format!("{path}.job_name"),
                "job_name is empty",
            ))
        }
    };
    let scheme = match &raw.scheme {
        None => Scheme::Http,
        Some(s) => match s.value.0.as_str() {
            "http" | "" => Scheme::Http,
            "https" => Scheme::Https,
            other => {
                return Err(ConfigError::at(
                    s.referenced,
                    format!("{path}.scheme"),
                    format!("invalid scheme {other:?}: must be \"http\" or \"https\""),
                ))
            }
        },
    };
    let scrape_interval = raw
        .scrape_interval
        .as_ref()
        .map(|d| d.value.0)
        .filter(|d| !d.is_zero())
        .unwrap_or(global.scrape_interval);
    let explicit_timeout = raw
        .scrape_timeout
        .as_ref()
        .map(|d| d.value.0)
        .unwrap_or_default();
    if explicit_timeout > scrape_interval {
        let at = raw
            .scrape_timeout
            .as_ref()
            .map(|d| d.referenced)
            .unwrap_or(loc);
        return Err(ConfigError::at(
            at,
            format!("{path}.scrape_timeout"),
            format!(
                "scrape timeout greater than scrape interval for scrape config with job name {job_name:?}"
            ),
        ));
    }
    let scrape_timeout = if explicit_timeout.is_zero() {
        global.scrape_timeout.min(scrape_interval)
    } else {
        explicit_timeout
    };

    let http = convert_http(
        RawHttp {
            basic_auth: raw.basic_auth,
            authorization: raw.authorization,
            bearer_token: raw.bearer_token,
            bearer_token_file: raw.bearer_token_file,
            tls_config: raw.tls_config,
            follow_redirects: raw.follow_redirects,
            enable_http2: raw.enable_http2,
        },
        loc,
        path,
        dir,
    )?;

    let relabel_configs =
        convert_relabels(raw.relabel_configs, &format!("{path}.relabel_configs"))?;
    let metric_relabel_configs = convert_relabels(
        raw.metric_relabel_configs,
        &format!("{path}.metric_relabel_configs"),
    )?;

    let mut static_configs = Vec::new();
    for (i, g) in raw
        .static_configs
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let gloc = g.referenced;
        let group = g.value.into_group(i.to_string());
        // Prometheus' check for URLs in targets, skipped when relabeling
        // may rewrite the address.
        if relabel_configs.is_empty() {
            if let Some(t) = group.targets.iter().find(|t| t.contains('/')) {
                return Err(ConfigError::at(
                    gloc,
                    format!("{path}.static_configs[{i}].targets"),
                    format!("{t:?} is not a valid hostname"),
                ));
            }
        }
        static_configs.push(group);
    }

    let mut file_sd_configs = Vec::new();
    for (i, f) in raw
        .file_sd_configs
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let floc = f.referenced;
        let fpath = format!("{path}.file_sd_configs[{i}]");
        let files = f.value.files.unwrap_or_default();
        if files.is_empty() {
            return Err(ConfigError::at(
                floc,
                format!("{fpath}.files"),
                "file service discovery config must contain at least one path name",
            ));
        }
        for name in &files {
            if !valid_file_sd_name(&name.0) {
                return Err(ConfigError::at(
                    floc,
                    format!("{fpath}.files"),
                    format!("path name {:?} is not valid for file discovery", name.0),
                ));
            }
        }
        file_sd_configs.push(FileSdConfig {
            files: files.iter().map(|f| join_dir(dir, &f.0)).collect(),
            refresh_interval: f
                .value
                .refresh_interval
                .map(|d| d.0)
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_FILE_SD_REFRESH),
        });
    }

    let mut kubernetes_sd_configs = Vec::new();
    for (i, k) in raw
        .kubernetes_sd_configs
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let kpath = format!("{path}.kubernetes_sd_configs[{i}]");
        kubernetes_sd_configs.push(convert_kubernetes(k.value, k.referenced, &kpath, dir)?);
    }

    let params = raw
        .params
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().map(|s| s.0).collect()))
        .collect();

    Ok(ScrapeConfig {
        job_name,
        honor_labels: raw.honor_labels.unwrap_or(false),
        honor_timestamps: raw.honor_timestamps.unwrap_or(true),
        params,
        scrape_interval,
        scrape_timeout,
        metrics_path: raw
            .metrics_path
            .map(|s| s.0)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "/metrics".into()),
        scheme,
        body_size_limit: raw.body_size_limit.map(|b| b.0).unwrap_or(0),
        sample_limit: raw.sample_limit.unwrap_or(0),
        label_limit: raw.label_limit.unwrap_or(0),
        label_name_length_limit: raw.label_name_length_limit.unwrap_or(0),
        label_value_length_limit: raw.label_value_length_limit.unwrap_or(0),
        http,
        relabel_configs,
        metric_relabel_configs,
        static_configs,
        file_sd_configs,
        kubernetes_sd_configs,
    })
}

/// Prometheus' `^[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)$`.
fn valid_file_sd_name(name: &str) -> bool {
    let ext_ok = ["json", "yml", "yaml", "JSON", "YML", "YAML"]
        .iter()
        .any(|e| {
            name.len() > e.len() && name.ends_with(e) && name[..name.len() - e.len()].ends_with('.')
        });
    if !ext_ok {
        return false;
    }
    match name.find('*') {
        None => true,
        Some(i) => !name[i + 1..].contains('/') && !name[i + 1..].contains('*'),
    }
}

fn convert_relabels(
    raw: Option<Vec<Spanned<RawRelabel>>>,
    path: &str,
) -> Result<Vec<RelabelConfig>, ConfigError> {
    let mut out = Vec::new();
    for (i, r) in raw.unwrap_or_default().into_iter().enumerate() {
        let loc = r.referenced;
        let rpath = format!("{path}[{i}]");
        let r = r.value;
        let mut c = RelabelConfig::default();
        if let Some(s) = r.source_labels {
            c.source_labels = s.into_iter().map(|l| l.0).collect();
        }
        if let Some(s) = r.separator {
            c.separator = s.0;
        }
        if let Some(s) = r.regex {
            c.regex = Regex::new(&s.0).map_err(|e| {
                ConfigError::at(
                    loc,
                    format!("{rpath}.regex"),
                    format!("invalid regex {:?}: {}", s.0, first_line(&e.to_string())),
                )
            })?;
            c.regex_set = true;
        }
        if let Some(m) = r.modulus {
            c.modulus = m;
        }
        if let Some(t) = r.target_label {
            c.target_label = t.0;
        }
        if let Some(s) = r.replacement {
            c.replacement = s.0;
        }
        if let Some(a) = r.action {
            c.action = Action::parse(&a.0).ok_or_else(|| {
                ConfigError::at(
                    loc,
                    format!("{rpath}.action"),
                    format!("unknown relabel action {:?}", a.0),
                )
            })?;
        }
        c.validate().map_err(|m| {
            let field = if m.contains("target_label") {
                "target_label"
            } else if m.contains("modulus") {
                "modulus"
            } else if m.contains("'replacement'") {
                "replacement"
            } else {
                "action"
            };
            ConfigError::at(loc, format!("{rpath}.{field}"), m)
        })?;
        out.push(c);
    }
    Ok(out)
}

/// The regex crate's errors span several lines (with a caret diagram);
/// keep the summary.
fn first_line(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .map(|l| l.trim_start_matches("error:").trim().to_string())
        .unwrap_or_else(|| s.lines().next().unwrap_or("").to_string())
}

fn convert_kubernetes(
    raw: RawKubernetes,
    loc: serde_saphyr::Location,
    path: &str,
    dir: Option<&Path>,
) -> Result<KubernetesSdConfig, ConfigError> {
    let err = |field: &str, m: String| ConfigError::at(loc, format!("{path}{field}"), m);
    let role = match raw.role.map(|s| s.0) {
        None => {
            return Err(err(
                ".role",
                "role missing (one of: pod, service, endpoints, endpointslice, node, ingress)"
                    .into(),
            ))
        }
        Some(r) => KubernetesRole::parse(&r)
            .ok_or_else(|| err(".role", format!("unknown Kubernetes SD role {r:?}")))?,
    };
    // Valid in Prometheus, but strata has no ingress discovery; refusing
    // it is better than a job that silently finds nothing.
    if role == KubernetesRole::Ingress {
        return Err(err(
            ".role",
            "Kubernetes SD role \"ingress\" is not supported by strata (supported: pod, service, endpoints, endpointslice, node)".into(),
        ));
    }
    let http_given = raw.basic_auth.is_some()
        || raw.authorization.is_some()
        || raw.bearer_token.is_some()
        || raw.bearer_token_file.is_some()
        || raw.tls_config.is_some()
        || raw.follow_redirects == Some(false)
        || raw.enable_http2 == Some(false);
    let http = convert_http(
        RawHttp {
            basic_auth: raw.basic_auth,
            authorization: raw.authorization,
            bearer_token: raw.bearer_token,
            bearer_token_file: raw.bearer_token_file,
            tls_config: raw.tls_config,
            follow_redirects: raw.follow_redirects,
            enable_http2: raw.enable_http2,
        },
        loc,
        path,
        dir,
    )?;
    let http_custom = http_given && http != HttpClientConfig::default();
    let api_server = raw.api_server.map(|s| s.0).filter(|s| !s.is_empty());
    if let Some(u) = &api_server {
        if let Err(e) = reqwest::Url::parse(u) {
            return Err(err(".api_server", format!("invalid URL {u:?}: {e}")));
        }
    }
    let kubeconfig_file = raw.kubeconfig_file.map(|s| s.0).filter(|s| !s.is_empty());
    let ns = raw.namespaces.unwrap_or_default();
    let namespaces = KubernetesNamespaces {
        own_namespace: ns.own_namespace.unwrap_or(false),
        names: ns
            .names
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.0)
            .collect(),
    };
    if api_server.is_some() && kubeconfig_file.is_some() {
        return Err(err(
            "",
            "cannot use 'kubeconfig_file' and 'api_server' simultaneously".into(),
        ));
    }
    if kubeconfig_file.is_some() && http_custom {
        return Err(err(
            "",
            "cannot use a custom HTTP client configuration together with 'kubeconfig_file'".into(),
        ));
    }
    if api_server.is_none() && http_custom {
        return Err(err(
            "",
            "to use custom HTTP client configuration please provide the 'api_server' URL explicitly"
                .into(),
        ));
    }
    if api_server.is_some() && namespaces.own_namespace {
        return Err(err(
            ".namespaces.own_namespace",
            "cannot use 'api_server' and 'namespaces.own_namespace' simultaneously".into(),
        ));
    }
    if kubeconfig_file.is_some() && namespaces.own_namespace {
        return Err(err(
            ".namespaces.own_namespace",
            "cannot use 'kubeconfig_file' and 'namespaces.own_namespace' simultaneously".into(),
        ));
    }
    let mut selectors = Vec::new();
    let mut seen = HashSet::new();
    for (i, s) in raw.selectors.unwrap_or_default().into_iter().enumerate() {
        let spath = format!(".selectors[{i}]");
        let srole_s = opt_str(s.role);
        let srole = KubernetesRole::parse(&srole_s).ok_or_else(|| {
            err(
                &format!("{spath}.role"),
                format!("unknown Kubernetes SD role {srole_s:?}"),
            )
        })?;
        if !seen.insert(srole) {
            return Err(err(
                &format!("{spath}.role"),
                format!("duplicated selector role: {}", srole.as_str()),
            ));
        }
        let allowed = role.allowed_selectors();
        if !allowed.contains(&srole) {
            let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
            return Err(err(
                &format!("{spath}.role"),
                format!(
                    "{} role supports only {} selectors",
                    role.as_str(),
                    names.join(", ")
                ),
            ));
        }
        let label = opt_str(s.label);
        let field = opt_str(s.field);
        check_field_selector(&field).map_err(|m| err(&format!("{spath}.field"), m))?;
        check_label_selector(&label).map_err(|m| err(&format!("{spath}.label"), m))?;
        selectors.push(KubernetesSelector {
            role: srole,
            label,
            field,
        });
    }
    Ok(KubernetesSdConfig {
        role,
        api_server,
        kubeconfig_file: kubeconfig_file.map(|k| join_dir(dir, &k)),
        namespaces,
        selectors,
        attach_metadata_node: raw.attach_metadata.and_then(|a| a.node).unwrap_or(false),
        http,
    })
}

/// A Kubernetes field selector: `key=value`, `key==value` or `key!=value`,
/// comma-separated.
fn check_field_selector(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Ok(());
    }
    for part in s.split(',') {
        let ok = ["!=", "==", "="].iter().any(|op| {
            part.split_once(op)
                .map(|(k, _)| !k.trim().is_empty())
                .unwrap_or(false)
        });
        if !ok {
            return Err(format!(
                "invalid selector: '{s}'; can't understand '{part}'"
            ));
        }
    }
    Ok(())
}

/// A Kubernetes label selector: comma-separated requirements of the forms
/// `k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`.
fn check_label_selector(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Ok(());
    }
    // Split on commas outside parentheses.
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return Err(format!(
                "unable to parse requirement: unbalanced ')' in {s:?}"
            ));
        }
    }
    if depth != 0 {
        return Err(format!(
            "unable to parse requirement: unbalanced '(' in {s:?}"
        ));
    }
    parts.push(&s[start..]);
    let key_ok = |k: &str| {
        let k = k.trim();
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
    };
    for p in parts {
        let p = p.trim();
        let ok = if let Some(k) = p.strip_prefix('!') {
            key_ok(k)
        } else if let Some((k, _)) = p
            .split_once("!=")
            .or_else(|| p.split_once("=="))
            .or_else(|| p.split_once('='))
        {
            key_ok(k)
        } else if let Some((k, rest)) = p.split_once(" notin ").or_else(|| p.split_once(" in ")) {
            let rest = rest.trim();
            key_ok(k) && rest.starts_with('(') && rest.ends_with(')')
        } else {
            key_ok(p)
        };
        if !ok {
            return Err(format!("unable to parse requirement: {p:?}"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Printing the effective config.

/// A tiny YAML writer for the effective config. Block style throughout,
/// sequences not indented under their key, as Go's yaml.v2 prints.
struct Yaml {
    out: String,
}

impl Yaml {
    fn line(&mut self, indent: usize, text: &str) {
        for _ in 0..indent {
            self.out.push(' ');
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn kv(&mut self, indent: usize, k: &str, v: &str) {
        self.line(indent, &format!("{k}: {}", quote(v)));
    }
}

/// Quotes a scalar when printing it plain would change its meaning.
fn quote(s: &str) -> String {
    let plain_safe = !s.is_empty()
        && !s.starts_with(|c: char| " -?:,[]{}#&*!|>'\"%@`~".contains(c))
        && !s.ends_with(' ')
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.contains('\n')
        && !s.contains('\t')
        && !s.ends_with(':')
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        )
        && s.parse::<f64>().is_err()
        && !s.chars().any(|c| c.is_control());
    if plain_safe {
        return s.to_string();
    }
    let mut q = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            c if c.is_control() => q.push_str(&format!("\\u{:04X}", c as u32)),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

impl Config {
    /// The effective config as YAML, in the layout Prometheus prints for
    /// `/api/v1/status/config`: defaults filled in, secrets as `<secret>`.
    pub fn to_yaml(&self) -> String {
        let mut y = Yaml { out: String::new() };
        y.line(0, "global:");
        y.kv(
            2,
            "scrape_interval",
            &format_duration(self.global.scrape_interval),
        );
        y.kv(
            2,
            "scrape_timeout",
            &format_duration(self.global.scrape_timeout),
        );
        y.kv(
            2,
            "evaluation_interval",
            &format_duration(self.global.evaluation_interval),
        );
        if !self.global.external_labels.is_empty() {
            y.line(2, "external_labels:");
            for l in self.global.external_labels.iter() {
                y.kv(4, &l.name, &l.value);
            }
        }
        if !self.scrape_configs.is_empty() {
            y.line(0, "scrape_configs:");
            for sc in &self.scrape_configs {
                write_scrape_config(&mut y, sc);
            }
        }
        y.out
    }
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

fn write_http(y: &mut Yaml, i: usize, h: &HttpClientConfig) {
    if let Some(b) = &h.basic_auth {
        y.line(i, "basic_auth:");
        y.kv(i + 2, "username", &b.username);
        if !b.password.is_empty() {
            y.kv(i + 2, "password", "<secret>");
        }
        if let Some(f) = &b.password_file {
            y.kv(i + 2, "password_file", &path_str(f));
        }
    }
    if let Some(a) = &h.authorization {
        y.line(i, "authorization:");
        y.kv(i + 2, "type", &a.r#type);
        if !a.credentials.is_empty() {
            y.kv(i + 2, "credentials", "<secret>");
        }
        if let Some(f) = &a.credentials_file {
            y.kv(i + 2, "credentials_file", &path_str(f));
        }
    }
    let t = &h.tls_config;
    if !t.is_default() {
        y.line(i, "tls_config:");
        for (k, v) in [
            ("ca_file", &t.ca_file),
            ("cert_file", &t.cert_file),
            ("key_file", &t.key_file),
        ] {
            if let Some(p) = v {
                y.kv(i + 2, k, &path_str(p));
            }
        }
        if let Some(s) = &t.server_name {
            y.kv(i + 2, "server_name", s);
        }
        y.line(
            i + 2,
            &format!("insecure_skip_verify: {}", t.insecure_skip_verify),
        );
    }
    y.line(i, &format!("follow_redirects: {}", h.follow_redirects));
    y.line(i, &format!("enable_http2: {}", h.enable_http2));
}

fn write_relabels(y: &mut Yaml, key: &str, rs: &[RelabelConfig]) {
    if rs.is_empty() {
        return;
    }
    y.line(2, &format!("{key}:"));
    for r in rs {
        let mut first = true;
        let mut item = |y: &mut Yaml, text: String| {
            if first {
                y.line(2, &format!("- {text}"));
                first = false;
            } else {
                y.line(4, &text);
            }
        };
        if !r.source_labels.is_empty() {
            item(
                y,
                format!("source_labels: [{}]", r.source_labels.join(", ")),
            );
        }
        item(y, format!("separator: {}", quote(&r.separator)));
        // keepequal/dropequal reject an explicit regex, so print the
        // default only where reading it back means the same.
        if r.regex_set || !matches!(r.action, Action::KeepEqual | Action::DropEqual) {
            item(y, format!("regex: {}", quote(r.regex.as_str())));
        }
        if r.modulus != 0 {
            item(y, format!("modulus: {}", r.modulus));
        }
        if !r.target_label.is_empty() {
            item(y, format!("target_label: {}", quote(&r.target_label)));
        }
        item(y, format!("replacement: {}", quote(&r.replacement)));
        item(y, format!("action: {}", r.action));
    }
}

fn write_scrape_config(y: &mut Yaml, sc: &ScrapeConfig) {
    y.line(0, &format!("- job_name: {}", quote(&sc.job_name)));
    if sc.honor_labels {
        y.line(2, "honor_labels: true");
    }
    y.line(2, &format!("honor_timestamps: {}", sc.honor_timestamps));
    if !sc.params.is_empty() {
        y.line(2, "params:");
        for (k, vs) in &sc.params {
            y.line(4, &format!("{}:", quote(k)));
            for v in vs {
                y.line(4, &format!("- {}", quote(v)));
            }
        }
    }
    y.kv(2, "scrape_interval", &format_duration(sc.scrape_interval));
    y.kv(2, "scrape_timeout", &format_duration(sc.scrape_timeout));
    y.kv(2, "metrics_path", &sc.metrics_path);
    y.kv(2, "scheme", sc.scheme.as_str());
    if sc.body_size_limit != 0 {
        y.kv(2, "body_size_limit", &format_byte_size(sc.body_size_limit));
    }
    for (k, v) in [
        ("sample_limit", sc.sample_limit),
        ("label_limit", sc.label_limit),
        ("label_name_length_limit", sc.label_name_length_limit),
        ("label_value_length_limit", sc.label_value_length_limit),
    ] {
        if v != 0 {
            y.line(2, &format!("{k}: {v}"));
        }
    }
    write_http(y, 2, &sc.http);
    write_relabels(y, "relabel_configs", &sc.relabel_configs);
    write_relabels(y, "metric_relabel_configs", &sc.metric_relabel_configs);
    // Service discovery configs last, sorted by Prometheus' Go field name
    // (FileSDConfigs, KubernetesSDConfigs, StaticConfigs).
    if !sc.file_sd_configs.is_empty() {
        y.line(2, "file_sd_configs:");
        for f in &sc.file_sd_configs {
            y.line(2, "- files:");
            for p in &f.files {
                y.line(4, &format!("- {}", quote(&path_str(p))));
            }
            y.kv(4, "refresh_interval", &format_duration(f.refresh_interval));
        }
    }
    if !sc.kubernetes_sd_configs.is_empty() {
        y.line(2, "kubernetes_sd_configs:");
        for k in &sc.kubernetes_sd_configs {
            let mut first = true;
            let mut head = |y: &mut Yaml, text: String| {
                if first {
                    y.line(2, &format!("- {text}"));
                    first = false;
                } else {
                    y.line(4, &text);
                }
            };
            if let Some(a) = &k.api_server {
                head(y, format!("api_server: {}", quote(a)));
            }
            head(y, format!("role: {}", k.role.as_str()));
            head(
                y,
                format!(
                    "kubeconfig_file: {}",
                    quote(
                        &k.kubeconfig_file
                            .as_deref()
                            .map(path_str)
                            .unwrap_or_default()
                    )
                ),
            );
            write_http(y, 4, &k.http);
            if k.namespaces != KubernetesNamespaces::default() {
                y.line(4, "namespaces:");
                y.line(6, &format!("own_namespace: {}", k.namespaces.own_namespace));
                if !k.namespaces.names.is_empty() {
                    y.line(6, "names:");
                    for n in &k.namespaces.names {
                        y.line(6, &format!("- {}", quote(n)));
                    }
                }
            }
            if !k.selectors.is_empty() {
                y.line(4, "selectors:");
                for s in &k.selectors {
                    y.line(4, &format!("- role: {}", s.role.as_str()));
                    if !s.label.is_empty() {
                        y.kv(6, "label", &s.label);
                    }
                    if !s.field.is_empty() {
                        y.kv(6, "field", &s.field);
                    }
                }
            }
            y.line(4, "attach_metadata:");
            y.line(6, &format!("node: {}", k.attach_metadata_node));
        }
    }
    if !sc.static_configs.is_empty() {
        y.line(2, "static_configs:");
        for g in &sc.static_configs {
            y.line(2, "- targets:");
            for t in &g.targets {
                y.line(4, &format!("- {}", quote(t)));
            }
            if !g.labels.is_empty() {
                y.line(4, "labels:");
                for (k, v) in &g.labels {
                    y.kv(6, k, v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (s, ms) in [
            ("0", 0),
            ("1ms", 1),
            ("15s", 15_000),
            ("1m30s", 90_000),
            ("2h", 7_200_000),
            ("1d", 86_400_000),
            ("1w", 604_800_000),
            ("1y", 31_536_000_000),
            ("1h0m0s", 3_600_000),
            ("1s500ms", 1500),
        ] {
            assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        }
        for s in ["", "1", "1.5s", "s", "1m1h", "1ss", "-1s", "1 s", "1sm"] {
            assert!(parse_duration(s).is_err(), "{s} should fail");
        }
        for (ms, s) in [
            (0, "0s"),
            (90_000, "1m30s"),
            (60_000, "1m"),
            (86_400_000 * 8, "8d"),
            (604_800_000, "1w"),
            (1500, "1s500ms"),
        ] {
            assert_eq!(format_duration(Duration::from_millis(ms)), s);
        }
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("10MB"), Ok(10 << 20));
        assert_eq!(parse_byte_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_byte_size("1KB512B"), Ok(1536));
        assert_eq!(parse_byte_size("1.5KB"), Ok(1536));
        assert_eq!(parse_byte_size("0"), Ok(0));
        assert!(parse_byte_size("10").is_err());
        assert!(parse_byte_size("10XB").is_err());
        assert!(parse_byte_size("MB").is_err());
        assert_eq!(format_byte_size(10 << 20), "10MiB");
        assert_eq!(format_byte_size(1536), "1KiB512B");
    }

    #[test]
    fn file_sd_names() {
        for ok in [
            "a.json",
            "dir/a.yml",
            "dir/*.yaml",
            "/x/y/foo*.JSON",
            "*.yml",
        ] {
            assert!(valid_file_sd_name(ok), "{ok}");
        }
        for bad in ["a.txt", "*/a.json", "a", "json", "a*b*.json"] {
            assert!(!valid_file_sd_name(bad), "{bad}");
        }
    }

    #[test]
    fn selectors() {
        assert!(check_label_selector("app=foo,tier!=db,env in (a,b),!x,y").is_ok());
        assert!(check_label_selector("app=").is_ok());
        assert!(check_label_selector("=foo").is_err());
        assert!(check_label_selector("a in (b").is_err());
        assert!(check_field_selector("metadata.name=foo,status.phase!=Running").is_ok());
        assert!(check_field_selector("metadata.name").is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("abc"), "abc");
        assert_eq!(quote("(.*)"), "(.*)");
        assert_eq!(quote("$1"), "$1");
        assert_eq!(quote(";"), ";");
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("true"), "\"true\"");
        assert_eq!(quote("123"), "\"123\"");
        assert_eq!(quote("a: b"), "\"a: b\"");
        assert_eq!(quote("*.json"), "\"*.json\"");
    }
}
