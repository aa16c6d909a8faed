//! Kubernetes service discovery (`kubernetes_sd_configs`), as Prometheus
//! 2.42 does it, on a small client of our own.
//!
//! The main types:
//!
//! * [`KubernetesDiscovery`] — one running `kubernetes_sd_configs` entry.
//!   [`KubernetesDiscovery::start`] resolves the connection
//!   ([`client::Connection`]: `api_server`, `kubeconfig_file` or in-cluster)
//!   and spawns one *informer* task per watched (kind, namespace). It
//!   exposes the current [`TargetGroup`]s ([`KubernetesDiscovery::groups`])
//!   and a change counter to wait on ([`KubernetesDiscovery::subscribe`]);
//!   the scrape manager re-syncs a job's targets when it moves, exactly as
//!   for file_sd. Like Prometheus it has no groups until every informer
//!   has listed once; groups are cached per change. Dropping it stops the
//!   tasks.
//! * [`Stores`] — the objects the informers keep, keyed `namespace/name`.
//!   [`roles`] turns them into groups with Prometheus' labels.
//! * An informer lists its kind (paged, recording the list's
//!   `resourceVersion`), then watches from that version with
//!   `allowWatchBookmarks=true`, applying `ADDED`/`MODIFIED`/`DELETED` and
//!   moving the version on `BOOKMARK`s. A watch the server ends is resumed
//!   from the last version; 410 Gone (as status or `ERROR` event) relists;
//!   other errors (network, bad JSON, error statuses) are logged, counted
//!   ([`KubernetesDiscovery::errors`]) and retried with exponential backoff
//!   (200ms doubling to 30s). Nothing a server sends can panic it.
//!
//! What each role watches (selectors of the matching role are passed as
//! `labelSelector`/`fieldSelector`): `pod` pods; `node` nodes; `service`
//! services; `endpoints` endpoints, pods and services; `endpointslice`
//! `discovery.k8s.io/v1` endpointslices, pods and services. With
//! `attach_metadata: {node: true}` nodes too. Namespaced kinds are watched
//! per namespace of `namespaces.names` (plus the own namespace with
//! `own_namespace`), or cluster-wide when none is given; nodes are always
//! cluster-wide. The `ingress` role is not implemented: the config loader
//! refuses it (a config built by hand with it logs an error and finds
//! nothing).
//!
//! One difference from Prometheus, by design: groups are rebuilt from the
//! stores on every change, so an endpoints group also picks up a changed
//! pod at once (Prometheus 2.42 only re-reads pods when the endpoints or
//! service object changes).

pub mod client;
pub mod objects;
pub mod roles;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::client::{Connection, InCluster, KubeError, Selectors};
use self::objects::{EndpointSlice, Endpoints, Node, ObjectMeta, Pod, Service};
use crate::config::{KubernetesRole, KubernetesSdConfig};
use crate::discovery::TargetGroup;

/// An API resource an informer watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Pod,
    Node,
    Service,
    Endpoints,
    EndpointSlice,
}

impl Kind {
    /// The resource name in URLs.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Pod => "pods",
            Kind::Node => "nodes",
            Kind::Service => "services",
            Kind::Endpoints => "endpoints",
            Kind::EndpointSlice => "endpointslices",
        }
    }

    /// The API group path.
    pub fn api_prefix(self) -> &'static str {
        match self {
            Kind::EndpointSlice => "/apis/discovery.k8s.io/v1",
            _ => "/api/v1",
        }
    }

    pub fn namespaced(self) -> bool {
        self != Kind::Node
    }

    fn role(self) -> KubernetesRole {
        match self {
            Kind::Pod => KubernetesRole::Pod,
            Kind::Node => KubernetesRole::Node,
            Kind::Service => KubernetesRole::Service,
            Kind::Endpoints => KubernetesRole::Endpoints,
            Kind::EndpointSlice => KubernetesRole::EndpointSlice,
        }
    }
}

/// The objects the informers of one discovery keep, keyed like client-go
/// (`namespace/name`, or `name` for nodes).
#[derive(Clone, Debug, Default)]
pub struct Stores {
    pub pods: BTreeMap<String, Pod>,
    pub nodes: BTreeMap<String, Node>,
    pub services: BTreeMap<String, Service>,
    pub endpoints: BTreeMap<String, Endpoints>,
    pub slices: BTreeMap<String, EndpointSlice>,
}

impl Stores {
    /// Decodes `obj` as `kind` and stores it; returns its key.
    fn upsert(&mut self, kind: Kind, obj: serde_json::Value) -> Result<String, String> {
        fn put<T: DeserializeOwned>(
            map: &mut BTreeMap<String, T>,
            obj: serde_json::Value,
            meta: impl Fn(&T) -> &ObjectMeta,
        ) -> Result<String, String> {
            let o: T = serde_json::from_value(obj).map_err(|e| e.to_string())?;
            let key = meta(&o).key();
            if meta(&o).name.is_empty() {
                return Err("object without metadata.name".into());
            }
            map.insert(key.clone(), o);
            Ok(key)
        }
        match kind {
            Kind::Pod => put(&mut self.pods, obj, |o| &o.metadata),
            Kind::Node => put(&mut self.nodes, obj, |o| &o.metadata),
            Kind::Service => put(&mut self.services, obj, |o| &o.metadata),
            Kind::Endpoints => put(&mut self.endpoints, obj, |o| &o.metadata),
            Kind::EndpointSlice => put(&mut self.slices, obj, |o| &o.metadata),
        }
    }

    fn remove(&mut self, kind: Kind, key: &str) {
        match kind {
            Kind::Pod => drop(self.pods.remove(key)),
            Kind::Node => drop(self.nodes.remove(key)),
            Kind::Service => drop(self.services.remove(key)),
            Kind::Endpoints => drop(self.endpoints.remove(key)),
            Kind::EndpointSlice => drop(self.slices.remove(key)),
        }
    }
}

/// State shared by a discovery and its informers.
struct Shared {
    stores: Mutex<Stores>,
    /// Informers that have not completed their first list yet.
    unsynced: AtomicUsize,
    /// Groups built at a change generation, reused until the next change.
    cache: Mutex<Option<(u64, Vec<TargetGroup>)>>,
    changes: watch::Sender<u64>,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Shared {
    fn changed(&self) {
        self.changes.send_modify(|g| *g += 1);
    }

    fn error(&self, what: &str, e: &dyn std::fmt::Display) {
        tracing::error!(error = %e, "kubernetes_sd: {what}");
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock() = Some(format!("{what}: {e}"));
    }
}

/// One running `kubernetes_sd_configs` entry; see the module docs.
pub struct KubernetesDiscovery {
    config: KubernetesSdConfig,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for KubernetesDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesDiscovery")
            .field("role", &self.config.role)
            .finish_non_exhaustive()
    }
}

impl Drop for KubernetesDiscovery {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl KubernetesDiscovery {
    /// Starts discovery for `config` (in-cluster settings from the
    /// environment). Must run inside a Tokio runtime. A connection that
    /// cannot be set up is logged and counted as an error, and the
    /// discovery finds nothing, as in Prometheus (the config still applies).
    pub fn start(config: KubernetesSdConfig) -> KubernetesDiscovery {
        Self::start_with(config, None)
    }

    /// [`start`](Self::start) with explicit in-cluster settings (used when
    /// neither `api_server` nor `kubeconfig_file` is set).
    pub fn start_with(config: KubernetesSdConfig, in_cluster: Option<InCluster>) -> Self {
        let shared = Arc::new(Shared {
            stores: Mutex::new(Stores::default()),
            unsynced: AtomicUsize::new(0),
            cache: Mutex::new(None),
            changes: watch::channel(0).0,
            errors: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
        let mut d = KubernetesDiscovery {
            config,
            shared,
            tasks: Vec::new(),
        };
        if let Err(e) = d.spawn(in_cluster) {
            d.shared.error("cannot start discovery", &e);
        }
        d
    }

    fn spawn(&mut self, in_cluster: Option<InCluster>) -> Result<(), KubeError> {
        let cfg = &self.config;
        let kinds: &[Kind] = match cfg.role {
            KubernetesRole::Pod => &[Kind::Pod],
            KubernetesRole::Node => &[Kind::Node],
            KubernetesRole::Service => &[Kind::Service],
            KubernetesRole::Endpoints => &[Kind::Endpoints, Kind::Pod, Kind::Service],
            KubernetesRole::EndpointSlice => &[Kind::EndpointSlice, Kind::Pod, Kind::Service],
            KubernetesRole::Ingress => {
                return Err(KubeError::Config(
                    "the ingress role is not supported by strata".into(),
                ))
            }
        };
        let mut kinds = kinds.to_vec();
        if cfg.attach_metadata_node && cfg.role != KubernetesRole::Node {
            kinds.push(Kind::Node);
        }
        let in_cluster = match (&in_cluster, &cfg.api_server, &cfg.kubeconfig_file) {
            (Some(ic), None, None) => Some(ic.clone()),
            (None, None, None) => Some(InCluster::from_env()?),
            _ => None,
        };
        let conn = Arc::new(Connection::from_config(cfg, in_cluster.as_ref())?);
        let mut namespaces: BTreeSet<String> = cfg.namespaces.names.iter().cloned().collect();
        if cfg.namespaces.own_namespace {
            let ic = in_cluster.as_ref().ok_or_else(|| {
                KubeError::Config("own_namespace needs the in-cluster configuration".into())
            })?;
            namespaces.insert(ic.namespace()?);
        }
        for kind in kinds {
            let sel = cfg
                .selectors
                .iter()
                .find(|s| s.role == kind.role())
                .map(|s| Selectors {
                    label: s.label.clone(),
                    field: s.field.clone(),
                })
                .unwrap_or_default();
            let nss: Vec<Option<String>> = if !kind.namespaced() || namespaces.is_empty() {
                vec![None]
            } else {
                namespaces.iter().cloned().map(Some).collect()
            };
            for ns in nss {
                self.shared.unsynced.fetch_add(1, Ordering::SeqCst);
                let inf = Informer {
                    conn: conn.clone(),
                    kind,
                    ns,
                    sel: sel.clone(),
                    shared: self.shared.clone(),
                    owned: BTreeSet::new(),
                    synced: false,
                };
                self.tasks.push(tokio::spawn(inf.run()));
            }
        }
        Ok(())
    }

    pub fn config(&self) -> &KubernetesSdConfig {
        &self.config
    }

    /// The current target groups, sorted by source. Empty until every
    /// informer has listed once (Prometheus waits for all caches to sync
    /// too), so an endpoints group never shows up first without its pod
    /// and service labels.
    pub fn groups(&self) -> Vec<TargetGroup> {
        if !self.synced() {
            return Vec::new();
        }
        let generation = *self.shared.changes.borrow();
        let mut cache = self.shared.cache.lock();
        if let Some((g, groups)) = &*cache {
            if *g == generation {
                return groups.clone();
            }
        }
        let groups = {
            let stores = self.shared.stores.lock();
            roles::build(self.config.role, &stores, self.config.attach_metadata_node)
        };
        *cache = Some((generation, groups.clone()));
        groups
    }

    /// Whether every informer has completed its first list (false when
    /// the discovery could not start at all).
    pub fn synced(&self) -> bool {
        !self.tasks.is_empty() && self.shared.unsynced.load(Ordering::SeqCst) == 0
    }

    /// A receiver whose value moves whenever the stored objects change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// How many errors happened so far, and the last one.
    pub fn errors(&self) -> (u64, Option<String>) {
        (
            self.shared.errors.load(Ordering::Relaxed),
            self.shared.last_error.lock().clone(),
        )
    }
}

/// Retry delays: 200ms doubling to 30s.
struct Backoff(Duration);

impl Backoff {
    const MIN: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(30);

    fn new() -> Self {
        Backoff(Self::MIN)
    }

    fn reset(&mut self) {
        self.0 = Self::MIN;
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Self::MAX);
    }
}

/// A watch timeout between 5 and 10 minutes, spread so informers do not
/// reconnect in lockstep (client-go does the same).
fn watch_timeout_secs() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    300 + u64::from(nanos % 300)
}

/// Lists and watches one kind in one namespace (or all) into the stores.
struct Informer {
    conn: Arc<Connection>,
    kind: Kind,
    ns: Option<String>,
    sel: Selectors,
    shared: Arc<Shared>,
    /// Keys this informer stored (others may share the store map).
    owned: BTreeSet<String>,
    /// Whether the first list succeeded (counted in `Shared::unsynced`).
    synced: bool,
}

impl Informer {
    async fn run(mut self) {
        let mut backoff = Backoff::new();
        let what = format!(
            "{} in {}",
            self.kind.plural(),
            self.ns.as_deref().unwrap_or("all namespaces")
        );
        loop {
            let mut rv = match self.relist().await {
                Ok(rv) => rv,
                Err(e) => {
                    self.shared.error(&format!("listing {what}"), &e);
                    backoff.wait().await;
                    continue;
                }
            };
            backoff.reset();
            loop {
                let started = Instant::now();
                let mut events = 0u64;
                let kind = self.kind;
                let shared = self.shared.clone();
                let owned = &mut self.owned;
                let rv_cell = &mut rv;
                let res = self
                    .conn
                    .watch(
                        kind,
                        self.ns.as_deref(),
                        &self.sel,
                        &rv_cell.clone(),
                        watch_timeout_secs(),
                        |ev| {
                            events += 1;
                            apply_event(&shared, kind, owned, rv_cell, ev)
                        },
                    )
                    .await;
                match res {
                    Ok(true) => {
                        tracing::info!(
                            "kubernetes_sd: watch of {what}: resource version expired, relisting"
                        );
                        break;
                    }
                    Ok(false) => {
                        // A server that ends watches at once would make
                        // this spin; slow down when nothing came.
                        if events == 0 && started.elapsed() < Duration::from_secs(1) {
                            backoff.wait().await;
                        } else {
                            backoff.reset();
                        }
                    }
                    Err(e) => {
                        self.shared.error(&format!("watching {what}"), &e);
                        backoff.wait().await;
                    }
                }
            }
        }
    }

    /// Lists and replaces this informer's objects; returns the version to
    /// watch from. Fails as a whole when any item does not decode.
    async fn relist(&mut self) -> Result<String, KubeError> {
        let (items, rv) = self
            .conn
            .list(self.kind, self.ns.as_deref(), &self.sel)
            .await?;
        let mut fresh = Stores::default();
        let mut keys = BTreeSet::new();
        for item in items {
            let key = fresh
                .upsert(self.kind, item)
                .map_err(|msg| KubeError::Decode {
                    url: format!("{}{}", self.conn.base(), self.kind.plural()),
                    msg,
                })?;
            keys.insert(key);
        }
        {
            let mut st = self.shared.stores.lock();
            for gone in self.owned.difference(&keys) {
                st.remove(self.kind, gone);
            }
            match self.kind {
                Kind::Pod => st.pods.append(&mut fresh.pods),
                Kind::Node => st.nodes.append(&mut fresh.nodes),
                Kind::Service => st.services.append(&mut fresh.services),
                Kind::Endpoints => st.endpoints.append(&mut fresh.endpoints),
                Kind::EndpointSlice => st.slices.append(&mut fresh.slices),
            }
        }
        self.owned = keys;
        if !self.synced {
            self.synced = true;
            self.shared.unsynced.fetch_sub(1, Ordering::SeqCst);
        }
        self.shared.changed();
        Ok(rv)
    }
}

fn apply_event(
    shared: &Shared,
    kind: Kind,
    owned: &mut BTreeSet<String>,
    rv: &mut String,
    ev: objects::WatchEvent,
) -> Result<(), KubeError> {
    let decode = |msg: String| KubeError::Decode {
        url: kind.plural().to_string(),
        msg,
    };
    let meta: ObjectMeta = ev
        .object
        .get("metadata")
        .map(|m| serde_json::from_value(m.clone()))
        .transpose()
        .map_err(|e| decode(format!("{} event: {e}", ev.type_)))?
        .unwrap_or_default();
    match ev.type_.as_str() {
        "ADDED" | "MODIFIED" => {
            let key = shared
                .stores
                .lock()
                .upsert(kind, ev.object)
                .map_err(|e| decode(format!("{} event: {e}", ev.type_)))?;
            owned.insert(key);
            shared.changed();
        }
        "DELETED" => {
            let key = meta.key();
            shared.stores.lock().remove(kind, &key);
            owned.remove(&key);
            shared.changed();
        }
        "BOOKMARK" => {}
        other => return Err(decode(format!("unknown watch event type {other:?}"))),
    }
    if !meta.resource_version.is_empty() {
        *rv = meta.resource_version;
    }
    Ok(())
}
