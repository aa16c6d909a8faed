//! [`ScrapeManager`]: runs the scrape loops of a config and applies new
//! configs without disturbing what did not change.
//!
//! Each job is a *pool*: its config, one HTTP client, its discoveries
//! (static groups, [`FileDiscovery`]s) and one loop per target. On
//! [`ScrapeManager::apply_config`]:
//!
//! * The new config is checked as a whole first (HTTP clients, including
//!   TLS files, are built for every changed job); an error rejects it and
//!   nothing changes.
//! * A removed job stops its loops, writing stale markers.
//! * Every kept job re-reads its file_sd files and diffs its targets:
//!   unchanged targets keep their running loops, removed ones stop with
//!   stale markers, new ones start. Changing static targets or relabeling
//!   therefore disturbs only the targets concerned.
//! * A kept target whose loop settings changed (interval, timeout, limits,
//!   honor_*, metric relabeling, HTTP client settings, params) gets a new
//!   loop that inherits the old one's state, so staleness tracking
//!   continues across the reload (Prometheus does the same by reusing the
//!   scrape cache).
//!
//! file_sd files are polled every `refresh_interval` by one task per job.
//! Each [`KubernetesDiscovery`] runs its own list/watch tasks; one task per
//! discovery and job waits for its change counter and re-syncs the job (at
//! most every [`KUBERNETES_SYNC_DELAY`], so an event burst costs one sync).
//! Jobs with identical `kubernetes_sd_configs` entries share one discovery
//! (as Prometheus' discovery manager shares providers), so e.g. several
//! `role: node` jobs watch nodes once. A reload keeps discoveries whose
//! config is unchanged, with their stores and watches.
//! Targets are identified by their full label set after relabeling
//! (reserved labels included), which determines the scrape URL.
//!
//! [`ScrapeManager::targets`] is the snapshot behind `/api/v1/targets`.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use strata_tsdb::labels::Labels;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, ActiveTarget, DroppedTarget, GlobalUrlOptions, TargetDiscovery};
use crate::config::{format_duration, Config, KubernetesSdConfig, ScrapeConfig};
use crate::discovery::{FileDiscovery, TargetGroup};
use crate::http::HttpClient;
use crate::kubernetes::client::InCluster;
use crate::kubernetes::KubernetesDiscovery;
use crate::scrape_loop::{LoopOptions, LoopState, ScrapeLoop, Stop, TargetMetadata, TargetStatus};
use crate::storage::Appendable;
use crate::target::{targets_from_groups, Fnv64, Target};

/// Why a config was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job {job:?}: {message}")]
pub struct ApplyError {
    pub job: String,
    pub message: String,
}

struct LoopHandle {
    target: Target,
    opts: LoopOptions,
    status: Arc<Mutex<TargetStatus>>,
    stop: watch::Sender<Stop>,
    join: JoinHandle<LoopState>,
}

impl LoopHandle {
    /// Signals the loop to stop and waits for its state.
    async fn stop(self, mode: Stop) -> (Target, LoopOptions, Option<LoopState>) {
        let _ = self.stop.send(mode);
        let state = self.join.await.ok();
        (self.target, self.opts, state)
    }
}

struct Pool {
    cfg: Arc<ScrapeConfig>,
    client: HttpClient,
    file_sds: Vec<FileDiscovery>,
    k8s_sds: Vec<Arc<KubernetesDiscovery>>,
    loops: HashMap<Labels, LoopHandle>,
    dropped: Vec<Labels>,
    poller: Option<JoinHandle<()>>,
    /// One per Kubernetes discovery: waits for changes, syncs the job.
    k8s_watchers: Vec<JoinHandle<()>>,
}

/// How long a Kubernetes change waits before the job is re-synced, so
/// that a burst of events (a rollout) costs one sync. Prometheus' discovery
/// manager batches for 5s; a shorter delay makes new pods scraped sooner.
pub const KUBERNETES_SYNC_DELAY: Duration = Duration::from_millis(500);

impl Pool {
    fn groups(&self) -> Vec<TargetGroup> {
        let mut g = self.cfg.static_configs.clone();
        for f in &self.file_sds {
            g.extend(f.groups());
        }
        for k in &self.k8s_sds {
            g.extend(k.groups());
        }
        g
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(p) = self.poller.take() {
            p.abort();
        }
        for w in self.k8s_watchers.drain(..) {
            w.abort();
        }
    }
}

struct Inner {
    storage: Arc<dyn Appendable>,
    /// Serialises reloads and file_sd syncs, which await loop shutdowns.
    apply: tokio::sync::Mutex<()>,
    state: Mutex<State>,
    /// Every live Kubernetes discovery, for sharing between jobs.
    k8s: Mutex<Vec<Weak<KubernetesDiscovery>>>,
    /// In-cluster settings for new discoveries; `None`: the environment.
    in_cluster: Mutex<Option<InCluster>>,
}

#[derive(Default)]
struct State {
    config: Option<Arc<Config>>,
    pools: BTreeMap<String, Pool>,
    jitter_seed: u64,
    global_url: GlobalUrlOptions,
    /// The last view of pools taken out for a sync (see [`take_pool`]).
    syncing: BTreeMap<String, PoolView>,
}

/// Runs scrape loops for a config; see the module docs.
#[derive(Clone)]
pub struct ScrapeManager {
    inner: Arc<Inner>,
}

impl ScrapeManager {
    pub fn new(storage: Arc<dyn Appendable>) -> Self {
        ScrapeManager {
            inner: Arc::new(Inner {
                storage,
                apply: tokio::sync::Mutex::new(()),
                state: Mutex::new(State::default()),
                k8s: Mutex::new(Vec::new()),
                in_cluster: Mutex::new(None),
            }),
        }
    }

    /// Sets how scrape URLs of local targets are shown as `globalUrl`.
    pub fn set_global_url_options(&self, o: GlobalUrlOptions) {
        self.inner.state.lock().global_url = o;
    }

    /// Where Kubernetes discoveries without `api_server` and
    /// `kubeconfig_file` find the API server and service account, instead
    /// of `KUBERNETES_SERVICE_HOST`/`PORT` and the default service account
    /// directory. Applies to discoveries started by later configs.
    pub fn set_kubernetes_in_cluster(&self, ic: Option<InCluster>) {
        *self.inner.in_cluster.lock() = ic;
    }

    /// The config currently applied.
    pub fn config(&self) -> Option<Arc<Config>> {
        self.inner.state.lock().config.clone()
    }

    /// Applies a (validated) config; see the module docs. On error nothing
    /// changed.
    pub async fn apply_config(&self, cfg: Config) -> Result<(), ApplyError> {
        let _guard = self.inner.apply.lock().await;
        let cfg = Arc::new(cfg);

        // Check everything that can fail before touching anything.
        let mut clients: HashMap<String, HttpClient> = HashMap::new();
        {
            let st = self.inner.state.lock();
            for sc in &cfg.scrape_configs {
                let reuse = st
                    .pools
                    .get(&sc.job_name)
                    .filter(|p| p.cfg.http == sc.http)
                    .map(|p| p.client.clone());
                let client = match reuse {
                    Some(c) => c,
                    None => HttpClient::new(&sc.http).map_err(|message| ApplyError {
                        job: sc.job_name.clone(),
                        message,
                    })?,
                };
                clients.insert(sc.job_name.clone(), client);
            }
        }

        let mut h = Fnv64::default();
        cfg.global.external_labels.hash(&mut h);
        let seed = h.finish();

        // Take the old pools out; build the new set.
        let mut old = {
            let mut st = self.inner.state.lock();
            st.jitter_seed = seed;
            let pools = std::mem::take(&mut st.pools);
            // The targets view shows the old pools while the new ones sync.
            for (job, pool) in &pools {
                let view = pool_view(job, pool, &st.global_url);
                st.syncing.insert(job.clone(), view);
            }
            pools
        };
        let mut to_stale: Vec<LoopHandle> = Vec::new();
        for (job, mut pool) in std::mem::take(&mut old) {
            if cfg.scrape_config(&job).is_none() {
                to_stale.extend(pool.loops.drain().map(|(_, h)| h));
            } else {
                old.insert(job, pool);
            }
        }
        let mut new_pools = BTreeMap::new();
        for sc in &cfg.scrape_configs {
            let client = clients
                .remove(&sc.job_name)
                .unwrap_or_else(|| unreachable!("a client was built for every job above"));
            let sc = Arc::new(sc.clone());
            let pool = match old.remove(&sc.job_name) {
                Some(mut p) => {
                    // Keep file discoveries whose config is unchanged, with
                    // their last good contents.
                    let mut prev = std::mem::take(&mut p.file_sds);
                    let file_sds = sc
                        .file_sd_configs
                        .iter()
                        .map(|fc| match prev.iter().position(|d| d.config() == fc) {
                            Some(i) => prev.swap_remove(i),
                            None => FileDiscovery::new(fc.clone()),
                        })
                        .collect();
                    if let Some(t) = p.poller.take() {
                        t.abort();
                    }
                    for w in p.k8s_watchers.drain(..) {
                        w.abort();
                    }
                    // Same for Kubernetes discoveries: unchanged ones keep
                    // their stores and watches.
                    // (The old ones stay alive until the lookups are done.)
                    let prev_k8s = std::mem::take(&mut p.k8s_sds);
                    p.k8s_sds = sc
                        .kubernetes_sd_configs
                        .iter()
                        .map(|kc| self.k8s_discovery(kc))
                        .collect();
                    drop(prev_k8s);
                    // Loops restart when something they use outside their
                    // options changed (the client, or the URL params);
                    // option changes are caught per target in `sync_pool`.
                    // Discovery and relabel changes only change which
                    // targets exist.
                    let changed = p.cfg.http != sc.http || p.cfg.params != sc.params;
                    p.cfg = sc.clone();
                    p.client = client;
                    p.file_sds = file_sds;
                    (p, changed)
                }
                None => (
                    Pool {
                        cfg: sc.clone(),
                        client,
                        file_sds: sc
                            .file_sd_configs
                            .iter()
                            .map(|fc| FileDiscovery::new(fc.clone()))
                            .collect(),
                        k8s_sds: sc
                            .kubernetes_sd_configs
                            .iter()
                            .map(|kc| self.k8s_discovery(kc))
                            .collect(),
                        loops: HashMap::new(),
                        dropped: Vec::new(),
                        poller: None,
                        k8s_watchers: Vec::new(),
                    },
                    false,
                ),
            };
            new_pools.insert(sc.job_name.clone(), pool);
        }

        // Stop removed jobs' loops with stale markers.
        for h in to_stale {
            h.stop(Stop::Stale).await;
        }

        // Sync every pool (file_sd re-read on reload).
        let storage = self.inner.storage.clone();
        for (job, (mut pool, changed)) in new_pools {
            for f in &mut pool.file_sds {
                f.refresh(true);
            }
            // Subscribed before the sync, so no change after it is missed.
            let k8s_rx: Vec<_> = pool.k8s_sds.iter().map(|k| k.subscribe()).collect();
            sync_pool(&mut pool, &storage, seed, changed).await;
            pool.poller = spawn_poller(Arc::downgrade(&self.inner), job.clone(), &pool.cfg);
            pool.k8s_watchers = k8s_rx
                .into_iter()
                .map(|rx| spawn_k8s_watcher(Arc::downgrade(&self.inner), job.clone(), rx))
                .collect();
            put_pool(&self.inner, &job, pool);
        }
        let mut st = self.inner.state.lock();
        // Removed jobs leave the view now.
        st.syncing.clear();
        st.config = Some(cfg);
        Ok(())
    }

    /// The running discovery for `cfg` if any job has one, else a new one.
    fn k8s_discovery(&self, cfg: &KubernetesSdConfig) -> Arc<KubernetesDiscovery> {
        let mut reg = self.inner.k8s.lock();
        reg.retain(|w| w.strong_count() > 0);
        if let Some(d) = reg
            .iter()
            .filter_map(Weak::upgrade)
            .find(|d| d.config() == cfg)
        {
            return d;
        }
        let ic = self.inner.in_cluster.lock().clone();
        let d = Arc::new(KubernetesDiscovery::start_with(cfg.clone(), ic));
        reg.push(Arc::downgrade(&d));
        d
    }

    /// Polls every file_sd file now instead of waiting for the refresh
    /// interval, and applies changes. Returns whether any job's targets
    /// changed.
    pub async fn refresh_file_sd(&self) -> bool {
        let jobs: Vec<String> = self.inner.state.lock().pools.keys().cloned().collect();
        let mut any = false;
        for job in jobs {
            any |= refresh_job(&self.inner, &job).await;
        }
        any
    }

    /// Stops every loop without writing stale markers (shutdown: the next
    /// start continues the series).
    pub async fn stop(&self) {
        let _guard = self.inner.apply.lock().await;
        let pools = std::mem::take(&mut self.inner.state.lock().pools);
        for (_, mut pool) in pools {
            for (_, h) in pool.loops.drain() {
                h.stop(Stop::Silent).await;
            }
        }
    }

    /// Every active target's metric metadata with its pool and labels, for
    /// `/api/v1/metadata` and `/api/v1/targets/metadata`.
    pub fn targets_metadata(&self) -> Vec<(String, Labels, Arc<TargetMetadata>)> {
        let st = self.inner.state.lock();
        let mut out = Vec::new();
        for (job, pool) in &st.pools {
            for h in pool.loops.values() {
                let meta = h.status.lock().metadata.clone();
                out.push((job.clone(), h.target.labels(), meta));
            }
        }
        out
    }

    /// The `/api/v1/targets` snapshot: pools sorted by name, targets by URL.
    pub fn targets(&self) -> TargetDiscovery {
        let st = self.inner.state.lock();
        let mut out = TargetDiscovery::default();
        let jobs: std::collections::BTreeSet<&String> =
            st.pools.keys().chain(st.syncing.keys()).collect();
        for job in jobs {
            let (active, dropped) = match st.pools.get(job) {
                Some(pool) => pool_view(job, pool, &st.global_url),
                None => st.syncing.get(job).cloned().unwrap_or_default(),
            };
            out.active_targets.extend(active);
            out.dropped_targets.extend(dropped);
        }
        out
    }
}

type PoolView = (Vec<ActiveTarget>, Vec<DroppedTarget>);

/// One pool's part of the targets view: targets sorted by URL.
fn pool_view(job: &str, pool: &Pool, global_url: &GlobalUrlOptions) -> PoolView {
    let mut active: Vec<ActiveTarget> = pool
        .loops
        .values()
        .map(|h| {
            let s = h.status.lock().clone();
            let url = h.target.url();
            ActiveTarget {
                discovered_labels: api::label_map(h.target.discovered_labels()),
                labels: api::label_map(&h.target.labels()),
                scrape_pool: job.to_string(),
                global_url: api::global_url(&url, global_url),
                scrape_url: url,
                last_error: s.last_error,
                last_scrape: api::rfc3339(s.last_scrape),
                last_scrape_duration: s.last_scrape_duration.as_secs_f64(),
                health: s.health,
                scrape_interval: format_duration(h.opts.interval),
                scrape_timeout: format_duration(h.opts.timeout),
            }
        })
        .collect();
    active.sort_by(|a, b| (&a.scrape_url, &a.labels).cmp(&(&b.scrape_url, &b.labels)));
    let dropped = pool
        .dropped
        .iter()
        .map(|d| DroppedTarget {
            discovered_labels: api::label_map(d),
        })
        .collect();
    (active, dropped)
}

/// Takes a job's pool out of the state for a sync (which awaits loop
/// shutdowns, so it cannot hold the state lock). The targets view shows
/// the pool as it was until [`put_pool`], instead of missing the job.
fn take_pool(inner: &Inner, job: &str) -> Option<(Pool, u64)> {
    let mut st = inner.state.lock();
    let seed = st.jitter_seed;
    let pool = st.pools.remove(job)?;
    let view = pool_view(job, &pool, &st.global_url);
    st.syncing.insert(job.to_string(), view);
    Some((pool, seed))
}

fn put_pool(inner: &Inner, job: &str, pool: Pool) {
    let mut st = inner.state.lock();
    st.syncing.remove(job);
    st.pools.insert(job.to_string(), pool);
}

/// Re-reads a job's file_sd files (changed ones) and syncs its targets.
async fn refresh_job(inner: &Arc<Inner>, job: &str) -> bool {
    let _guard = inner.apply.lock().await;
    let Some((mut pool, seed)) = take_pool(inner, job) else {
        return false;
    };
    let mut changed = false;
    for f in &mut pool.file_sds {
        changed |= f.refresh(false);
    }
    if changed {
        sync_pool(&mut pool, &inner.storage, seed, false).await;
    }
    put_pool(inner, job, pool);
    changed
}

/// Re-syncs a job's targets from its current groups (Kubernetes changes).
async fn resync_job(inner: &Arc<Inner>, job: &str) {
    let _guard = inner.apply.lock().await;
    let Some((mut pool, seed)) = take_pool(inner, job) else {
        return;
    };
    sync_pool(&mut pool, &inner.storage, seed, false).await;
    put_pool(inner, job, pool);
}

fn spawn_k8s_watcher(
    inner: Weak<Inner>,
    job: String,
    mut rx: watch::Receiver<u64>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            tokio::time::sleep(KUBERNETES_SYNC_DELAY).await;
            rx.borrow_and_update();
            let Some(inner) = inner.upgrade() else { return };
            resync_job(&inner, &job).await;
        }
    })
}

fn spawn_poller(inner: Weak<Inner>, job: String, cfg: &ScrapeConfig) -> Option<JoinHandle<()>> {
    let every = cfg
        .file_sd_configs
        .iter()
        .map(|f| f.refresh_interval)
        .min()?
        .max(Duration::from_millis(10));
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(inner) = inner.upgrade() else { return };
            refresh_job(&inner, &job).await;
        }
    }))
}

/// Brings a pool's loops in line with its discovered targets. With
/// `config_changed`, kept targets get new loops (with the old state).
async fn sync_pool(
    pool: &mut Pool,
    storage: &Arc<dyn Appendable>,
    jitter_seed: u64,
    config_changed: bool,
) {
    let groups = pool.groups();
    let found = targets_from_groups(&groups, &pool.cfg);
    for e in &found.errors {
        tracing::warn!(job = %pool.cfg.job_name, error = %e, "creating target failed");
    }
    pool.dropped = found.dropped;

    let mut wanted: HashMap<Labels, Target> = HashMap::new();
    for t in found.active {
        // Two groups may yield the same target; scrape it once.
        wanted.entry(t.all_labels().clone()).or_insert(t);
    }

    let keys: Vec<Labels> = pool.loops.keys().cloned().collect();
    for k in keys {
        match wanted.remove(&k) {
            None => {
                if let Some(h) = pool.loops.remove(&k) {
                    h.stop(Stop::Stale).await;
                }
            }
            Some(t) => {
                let opts = LoopOptions::new(&pool.cfg, &t);
                let needs_restart =
                    config_changed || pool.loops.get(&k).map(|h| h.opts != opts).unwrap_or(true);
                if needs_restart {
                    if let Some(h) = pool.loops.remove(&k) {
                        let (_, old_opts, state) = h.stop(Stop::Silent).await;
                        let l = ScrapeLoop::new(t, opts, pool.client.clone(), storage.clone());
                        let l = match state {
                            Some(s) => l.with_state(s, &old_opts),
                            None => l,
                        };
                        pool.loops.insert(k, start(l, jitter_seed));
                    }
                } else if let Some(h) = pool.loops.get_mut(&k) {
                    // Same target; its discovered labels may still differ.
                    h.target = t;
                }
            }
        }
    }
    for (k, t) in wanted {
        let opts = LoopOptions::new(&pool.cfg, &t);
        let l = ScrapeLoop::new(t, opts, pool.client.clone(), storage.clone());
        pool.loops.insert(k, start(l, jitter_seed));
    }
}

fn start(l: ScrapeLoop, jitter_seed: u64) -> LoopHandle {
    let (tx, rx) = watch::channel(Stop::Running);
    let target = l.target().clone();
    let opts = l.options().clone();
    let status = l.status_handle();
    let join = tokio::spawn(l.run(rx, jitter_seed));
    LoopHandle {
        target,
        opts,
        status,
        stop: tx,
        join,
    }
}
