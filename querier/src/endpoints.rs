//! The set of StoreAPI endpoints the querier fans out to.
//!
//! Main types:
//! - [`EndpointSpec`]: one `--endpoint` value: a plain `host:port`,
//!   `dns+host:port` (A/AAAA lookup, one endpoint per address) or
//!   `dnssrv+_name._tcp.domain` (SRV lookup, then the targets' addresses).
//! - [`EndpointSet`]: everything discovered from the specs and from
//!   `--store.sd-files` (Prometheus file SD format: a YAML or JSON list of
//!   `{targets: [...], labels: {...}}`; re-read every `sd_interval` and as
//!   soon as a file's modification time changes). Every `info_interval` it
//!   re-discovers, then calls `thanos.info.Info/Info` on every endpoint
//!   concurrently.
//! - [`Endpoint`]: one address with its lazily connected gRPC channel, the
//!   last Info answer ([`StoreMeta`]) and counters for `/metrics`.
//!
//! Health, as Thanos' endpoint set does it: an endpoint joins the active
//! set ([`EndpointSet::active`]) with its first Info answer and stays in it
//! while Info keeps failing for less than `unhealthy_timeout` (Thanos'
//! `--store.unhealthy-timeout`, 5m). Staying matters: a store that is down
//! but still in the set makes queries report a partial-response warning
//! (or fail, with partial response off) instead of silently answering with
//! less data. After the timeout it is dropped and rejoins with its next
//! Info answer. An endpoint no longer discovered is forgotten at once.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Mutex, RwLock};
use strata_proto::grpc::{ClientOptions, MessageLimits, MAX_MESSAGE_SIZE};
use strata_proto::thanos::info::info_client::InfoClient;
use strata_proto::thanos::info::{InfoRequest, InfoResponse};
use strata_tsdb::labels::Labels;
use tonic::transport::Channel;

use crate::dns::DnsResolver;
use crate::Error;

/// One `--endpoint` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointSpec {
    /// `host:port`, dialled as given (the channel resolves the name).
    Static(String),
    /// `dns+host:port`: every A/AAAA address of `host`, with `port`.
    Dns { host: String, port: u16 },
    /// `dnssrv+_name._tcp.domain`: the SRV targets, each resolved to its
    /// addresses, with the SRV port.
    DnsSrv(String),
}

impl EndpointSpec {
    /// Parses one value; a missing or invalid port is an error.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::Config(format!("invalid endpoint {s:?}: {why}"));
        let s = s.trim();
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if let Some(name) = s.strip_prefix("dnssrv+") {
            if name.is_empty() || name.contains(':') {
                return Err(bad("dnssrv+ takes a SRV name without a port"));
            }
            return Ok(EndpointSpec::DnsSrv(name.to_string()));
        }
        if s.starts_with("dnssrvnoa+") || s.starts_with("dnsdualstack+") {
            return Err(bad("only the dns+ and dnssrv+ prefixes are supported"));
        }
        let (is_dns, addr) = match s.strip_prefix("dns+") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (host, port) = split_host_port(addr).ok_or_else(|| bad("expected host:port"))?;
        if is_dns {
            Ok(EndpointSpec::Dns {
                host: host.to_string(),
                port,
            })
        } else {
            Ok(EndpointSpec::Static(addr.to_string()))
        }
    }
}

/// `host:port` or `[v6]:port`.
fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains('/') {
        return None;
    }
    Some((host, port))
}

/// What an endpoint's Info answer says, in the querier's terms.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoreMeta {
    /// `sidecar`, `store`, `query`, `receive`, `rule`, … (Info's
    /// `ComponentType`).
    pub component: String,
    /// External label sets, each sorted.
    pub label_sets: Vec<Labels>,
    pub min_time: i64,
    pub max_time: i64,
    /// Whether the store removes `without_replica_labels` itself.
    pub supports_without_replica_labels: bool,
    /// False when the endpoint answered Info without a StoreAPI.
    pub has_store: bool,
    /// The endpoint serves the Metadata API (Info's `metric_metadata` set).
    pub has_metadata: bool,
    /// The endpoint serves the Query API (Info's `query` set): whole
    /// queries can be handed to it (`--query.mode=distributed`).
    pub has_query_api: bool,
}

impl StoreMeta {
    pub fn from_info(r: &InfoResponse) -> Self {
        let label_sets = r
            .label_sets
            .iter()
            .map(|ls| {
                Labels::from_pairs(ls.labels.iter().map(|l| (l.name.clone(), l.value.clone())))
            })
            .collect();
        let (min_time, max_time, wrl, has_store) = match &r.store {
            Some(s) => (
                s.min_time,
                s.max_time,
                s.supports_without_replica_labels,
                true,
            ),
            None => (i64::MIN, i64::MAX, false, false),
        };
        StoreMeta {
            component: r.component_type.clone(),
            label_sets,
            min_time,
            max_time,
            supports_without_replica_labels: wrl,
            has_store,
            has_metadata: r.metric_metadata.is_some(),
            has_query_api: r.query.is_some(),
        }
    }
}

/// Health bookkeeping of one endpoint.
#[derive(Clone, Debug, Default)]
pub struct EndpointStatus {
    /// Last Info answer; kept through failures so `/api/v1/stores` can show it.
    pub meta: Option<StoreMeta>,
    pub last_check: Option<SystemTime>,
    pub last_error: Option<String>,
    /// Last successful Info.
    pub last_ok: Option<Instant>,
    /// Duration of the last Info call.
    pub info_latency: Duration,
}

/// Counters of one endpoint for `/metrics`.
#[derive(Debug, Default)]
pub struct EndpointStats {
    pub requests: AtomicU64,
    pub failures: AtomicU64,
    /// Total time of StoreAPI calls, microseconds.
    pub latency_micros: AtomicU64,
}

impl EndpointStats {
    pub fn record(&self, took: Duration, failed: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.latency_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// One discovered address.
#[derive(Debug)]
pub struct Endpoint {
    /// The address (`host:port`), also the store's name in warnings and
    /// `/api/v1/stores`.
    pub name: String,
    pub channel: Channel,
    status: RwLock<EndpointStatus>,
    pub stats: EndpointStats,
}

impl Endpoint {
    pub fn new(name: String, channel: Channel) -> Self {
        Endpoint {
            name,
            channel,
            status: RwLock::new(EndpointStatus::default()),
            stats: EndpointStats::default(),
        }
    }

    pub fn status(&self) -> EndpointStatus {
        self.status.read().clone()
    }

    /// The last Info answer, if any.
    pub fn meta(&self) -> Option<StoreMeta> {
        self.status.read().meta.clone()
    }

    /// Records an Info answer (or failure) taken at `now`.
    pub fn record_info(&self, res: Result<StoreMeta, String>, took: Duration, now: Instant) {
        let mut st = self.status.write();
        st.last_check = Some(SystemTime::now());
        st.info_latency = took;
        // Log transitions only: Info runs every few seconds per endpoint.
        match res {
            Ok(meta) => {
                if st.last_error.is_some() || st.meta.is_none() {
                    tracing::info!(endpoint = %self.name, component = %meta.component, labels = ?meta.label_sets, "endpoint answers Info");
                }
                st.meta = Some(meta);
                st.last_error = None;
                st.last_ok = Some(now);
            }
            Err(e) => {
                if st.last_error.is_none() {
                    tracing::warn!(endpoint = %self.name, error = %e, "Info of endpoint failed");
                }
                st.last_error = Some(e);
            }
        }
    }

    /// In the active set: answered Info, and not failing for longer than
    /// `unhealthy_timeout`.
    pub fn is_active(&self, unhealthy_timeout: Duration, now: Instant) -> bool {
        let st = self.status.read();
        match (&st.meta, st.last_ok) {
            (Some(m), Some(ok)) => {
                m.has_store && now.saturating_duration_since(ok) <= unhealthy_timeout
            }
            _ => false,
        }
    }

    /// A short description for warnings and errors:
    /// `sidecar 127.0.0.1:10901 {cluster="c1"}`.
    pub fn describe(&self) -> String {
        let meta = self.meta();
        let (component, labels) = match &meta {
            Some(m) => (
                m.component.as_str(),
                m.label_sets
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            None => ("store", String::new()),
        };
        if labels.is_empty() {
            format!("{component} {}", self.name)
        } else {
            format!("{component} {} {labels}", self.name)
        }
    }
}

/// Discovery and health settings. Defaults are Thanos'.
#[derive(Clone, Debug)]
pub struct EndpointSetOptions {
    pub specs: Vec<EndpointSpec>,
    /// `--store.sd-files`.
    pub sd_files: Vec<PathBuf>,
    /// `--store.sd-interval` (Thanos: 5m): forced re-read of the SD files.
    pub sd_interval: Duration,
    /// `--store.sd-dns-interval` (Thanos: 30s): DNS re-resolution.
    pub dns_interval: Duration,
    /// Period of discovery + Info rounds (Thanos: 5s).
    pub info_interval: Duration,
    /// Limit of one Info call (Thanos: 5s).
    pub info_timeout: Duration,
    /// `--store.unhealthy-timeout` (Thanos: 5m).
    pub unhealthy_timeout: Duration,
    pub client: ClientOptions,
    /// Hidden `--store.sd-dns-resolver-address`: ask this DNS server for
    /// `dns+`/`dnssrv+` endpoints instead of the system's resolver (see
    /// [`crate::dns`]).
    pub dns_resolver: Option<std::net::SocketAddr>,
}

impl Default for EndpointSetOptions {
    fn default() -> Self {
        EndpointSetOptions {
            specs: Vec::new(),
            sd_files: Vec::new(),
            sd_interval: Duration::from_secs(300),
            dns_interval: Duration::from_secs(30),
            info_interval: Duration::from_secs(5),
            info_timeout: Duration::from_secs(5),
            unhealthy_timeout: Duration::from_secs(300),
            client: ClientOptions::default(),
            dns_resolver: None,
        }
    }
}

/// A file SD file's last good contents.
#[derive(Default)]
struct SdFileState {
    modified: Option<SystemTime>,
    read_at: Option<Instant>,
    targets: Vec<String>,
}

/// A DNS spec's last good resolution.
struct DnsState {
    resolved_at: Instant,
    addrs: Vec<String>,
}

/// All endpoints; see the module docs.
pub struct EndpointSet {
    opts: EndpointSetOptions,
    endpoints: RwLock<BTreeMap<String, Arc<Endpoint>>>,
    sd_files: Mutex<HashMap<PathBuf, SdFileState>>,
    dns: Mutex<HashMap<String, DnsState>>,
    dns_resolver: DnsResolver,
}

impl std::fmt::Debug for EndpointSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointSet")
            .field(
                "endpoints",
                &self.endpoints.read().keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Upper bound of endpoints one SD file or DNS answer may add, so a broken
/// file cannot make the querier open unbounded connections.
pub const MAX_ENDPOINTS: usize = 10_000;

impl EndpointSet {
    pub fn new(opts: EndpointSetOptions) -> Arc<Self> {
        let dns_resolver = DnsResolver::with_server(opts.dns_resolver);
        Arc::new(EndpointSet {
            opts,
            endpoints: RwLock::new(BTreeMap::new()),
            sd_files: Mutex::new(HashMap::new()),
            dns: Mutex::new(HashMap::new()),
            dns_resolver,
        })
    }

    pub fn options(&self) -> &EndpointSetOptions {
        &self.opts
    }

    /// Every known endpoint, by name.
    pub fn all(&self) -> Vec<Arc<Endpoint>> {
        self.endpoints.read().values().cloned().collect()
    }

    /// Endpoints to query now (see the module docs).
    pub fn active(&self) -> Vec<Arc<Endpoint>> {
        let now = Instant::now();
        self.endpoints
            .read()
            .values()
            .filter(|e| e.is_active(self.opts.unhealthy_timeout, now))
            .cloned()
            .collect()
    }

    /// One round: discovery, then Info on every endpoint.
    pub async fn update(&self) {
        let addrs = self.discover().await;
        self.sync_endpoints(addrs);
        let all = self.all();
        let timeout = self.opts.info_timeout;
        futures::future::join_all(all.iter().map(|e| async move {
            let started = Instant::now();
            let res = tokio::time::timeout(timeout, info(e.channel.clone())).await;
            let res = match res {
                Ok(r) => r,
                Err(_) => Err(format!("Info timed out after {timeout:?}")),
            };
            if let Err(err) = &res {
                tracing::debug!(endpoint = %e.name, error = %err, "Info failed");
            }
            e.record_info(res, started.elapsed(), Instant::now());
        }))
        .await;
    }

    /// Runs [`EndpointSet::update`] every `info_interval` until `stop`.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            self.update().await;
            tokio::select! {
                () = tokio::time::sleep(self.opts.info_interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Adds new addresses, forgets vanished ones.
    fn sync_endpoints(&self, addrs: Vec<String>) {
        let mut eps = self.endpoints.write();
        eps.retain(|name, _| {
            let keep = addrs.contains(name);
            if !keep {
                tracing::info!(endpoint = %name, "endpoint no longer discovered; removed");
            }
            keep
        });
        for a in addrs {
            if eps.contains_key(&a) {
                continue;
            }
            match self.opts.client.connect_lazy(&a) {
                Ok(ch) => {
                    tracing::info!(endpoint = %a, "endpoint discovered");
                    eps.insert(a.clone(), Arc::new(Endpoint::new(a, ch)));
                }
                Err(e) => tracing::warn!(endpoint = %a, error = %e, "cannot use endpoint"),
            }
        }
    }

    /// Every address from the specs and the SD files, deduplicated.
    async fn discover(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for spec in &self.opts.specs {
            match spec {
                EndpointSpec::Static(a) => out.push(a.clone()),
                EndpointSpec::Dns { host, port } => {
                    let r = &self.dns_resolver;
                    out.extend(
                        self.resolve_cached(&format!("dns+{host}:{port}"), || {
                            r.resolve_host(host, *port)
                        })
                        .await,
                    );
                }
                EndpointSpec::DnsSrv(name) => {
                    let r = &self.dns_resolver;
                    out.extend(
                        self.resolve_cached(&format!("dnssrv+{name}"), || r.resolve_srv(name))
                            .await,
                    );
                }
            }
        }
        for f in &self.opts.sd_files {
            out.extend(self.read_sd_file(f));
        }
        out.sort();
        out.dedup();
        out.truncate(MAX_ENDPOINTS);
        out
    }

    /// A DNS resolution, redone every `dns_interval`; on failure the last
    /// good answer is kept.
    async fn resolve_cached<F, Fut>(&self, key: &str, resolve: F) -> Vec<String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<String>, String>>,
    {
        if let Some(st) = self.dns.lock().get(key) {
            if st.resolved_at.elapsed() < self.opts.dns_interval {
                return st.addrs.clone();
            }
        }
        match resolve().await {
            Ok(mut addrs) => {
                addrs.sort();
                addrs.dedup();
                addrs.truncate(MAX_ENDPOINTS);
                self.dns.lock().insert(
                    key.to_string(),
                    DnsState {
                        resolved_at: Instant::now(),
                        addrs: addrs.clone(),
                    },
                );
                addrs
            }
            Err(e) => {
                tracing::warn!(spec = key, error = %e, "DNS resolution failed; keeping the last answer");
                self.dns
                    .lock()
                    .get(key)
                    .map(|s| s.addrs.clone())
                    .unwrap_or_default()
            }
        }
    }

    /// The targets of one SD file: re-read when its modification time
    /// changed or `sd_interval` passed; the last good contents are kept on
    /// errors.
    fn read_sd_file(&self, path: &PathBuf) -> Vec<String> {
        let mut files = self.sd_files.lock();
        let st = files.entry(path.clone()).or_default();
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let due = st
            .read_at
            .is_none_or(|t| t.elapsed() >= self.opts.sd_interval)
            || modified != st.modified;
        if due {
            st.read_at = Some(Instant::now());
            st.modified = modified;
            match std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|text| parse_sd_file(&text))
            {
                Ok(t) => st.targets = t,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot read store SD file; keeping its last targets")
                }
            }
        }
        st.targets.clone()
    }
}

/// Calls Info once.
async fn info(channel: Channel) -> Result<StoreMeta, String> {
    let mut client = InfoClient::new(channel).with_message_limits(MAX_MESSAGE_SIZE);
    let r = client
        .info(InfoRequest {})
        .await
        .map_err(|s| crate::proxy::status_text(&s))?;
    Ok(StoreMeta::from_info(r.get_ref()))
}

#[derive(serde::Deserialize)]
struct SdGroup {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    labels: BTreeMap<String, String>,
}

/// Parses a Prometheus file SD document (YAML, or JSON which YAML reads).
/// Targets must be `host:port`.
pub fn parse_sd_file(text: &str) -> Result<Vec<String>, String> {
    if text.len() > 16 << 20 {
        return Err("file is larger than 16 MiB".into());
    }
    let groups: Vec<SdGroup> = if text.trim().is_empty() {
        Vec::new()
    } else {
        serde_saphyr::from_str(text).map_err(|e| e.to_string())?
    };
    let mut out = Vec::new();
    for g in groups {
        for t in g.targets {
            if split_host_port(&t).is_none() {
                return Err(format!("target {t:?} is not host:port"));
            }
            out.push(t);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(
            EndpointSpec::parse("10.0.0.1:10901").unwrap(),
            EndpointSpec::Static("10.0.0.1:10901".into())
        );
        assert_eq!(
            EndpointSpec::parse("dns+sidecar.ns.svc:10901").unwrap(),
            EndpointSpec::Dns {
                host: "sidecar.ns.svc".into(),
                port: 10901
            }
        );
        assert_eq!(
            EndpointSpec::parse("dnssrv+_grpc._tcp.sidecar.ns.svc").unwrap(),
            EndpointSpec::DnsSrv("_grpc._tcp.sidecar.ns.svc".into())
        );
        assert!(EndpointSpec::parse("[::1]:10901").is_ok());
        for bad in [
            "",
            "host",
            "host:x",
            "dns+host",
            "dnssrv+a:1",
            ":80",
            "dnssrvnoa+x",
        ] {
            assert!(EndpointSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sd_files() {
        let yaml = "- targets: ['a:1', 'b:2']\n  labels: {x: y}\n- targets: ['c:3']\n";
        assert_eq!(parse_sd_file(yaml).unwrap(), vec!["a:1", "b:2", "c:3"]);
        let json = r#"[{"targets": ["a:1"]}]"#;
        assert_eq!(parse_sd_file(json).unwrap(), vec!["a:1"]);
        assert!(parse_sd_file("- targets: ['nope']").is_err());
        assert!(parse_sd_file("{not: a list}").is_err());
        assert!(parse_sd_file("").unwrap().is_empty());
    }
}
