//! One target's scrape loop: fetch, parse, relabel, append, report.
//!
//! A [`ScrapeLoop`] owns a target and the state that must survive from one
//! scrape to the next ([`LoopState`]): which series the previous scrape
//! produced (for staleness) and a cache from the exposed label set to the
//! final one (so metric relabeling runs once per series, not per sample).
//! [`ScrapeLoop::scrape_once`] performs one scrape; the
//! [`crate::manager::ScrapeManager`] runs loops as tokio tasks, each waiting
//! for its offset in the interval (a hash of the target, so targets spread
//! evenly and keep their phase) and then ticking every interval.
//!
//! One scrape, as Prometheus 2.42's `scrapeAndReport`:
//!
//! 1. GET the target (see [`crate::http`]); a failure (status, timeout,
//!    body size limit) is a failed scrape.
//! 2. Parse the body with the format its `Content-Type` names. Each sample
//!    gets the target's labels (`honor_labels: false`: target labels win and
//!    clashing exposed labels are renamed `exported_<name>`; `true`: exposed
//!    labels win), then `metric_relabel_configs`. Explicit timestamps are
//!    kept only with `honor_timestamps: true`. `# TYPE`, `# HELP` and
//!    `# UNIT` lines update the target's [`TargetMetadata`] (kept 10
//!    non-empty scrapes after a family disappears, as Prometheus' scrape
//!    cache), published in [`TargetStatus::metadata`] for the metadata APIs.
//! 3. Append every sample into ONE appender. Out-of-order, duplicate and
//!    out-of-bounds samples (including samples more than 10 minutes in the
//!    future) are counted and skipped. More samples than `sample_limit`
//!    after relabeling, a parse error, a label limit or any other append
//!    error fail the *whole* scrape: the batch is rolled back.
//! 4. Staleness: a series appended by the previous scrape but absent now
//!    gets a stale marker (a NaN with bits `0x7ff0000000000002`) at this
//!    scrape's timestamp. A failed scrape counts as an empty one, so all
//!    previous series go stale. Series with explicit timestamps are not
//!    tracked. When the loop is stopped because its target went away, all
//!    its series, the report series included, are marked stale.
//! 5. Report series with the target's labels: `up` (1 or 0),
//!    `scrape_duration_seconds`, `scrape_samples_scraped`,
//!    `scrape_samples_post_metric_relabeling`, `scrape_series_added`.
//! 6. Commit.
//!
//! Parsing and appending run in `spawn_blocking` because the storage engine
//! is synchronous and a large scrape is CPU work.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use strata_tsdb::labels::{Label, Labels, METRIC_NAME};
use strata_tsdb::textparse::{format_from_content_type, Entry, MetricType, Parser};
use tokio::sync::watch;

use crate::config::ScrapeConfig;
use crate::http::{Fetched, HttpClient};
use crate::relabel::{self, is_valid_label_name, Builder, RelabelConfig};
use crate::storage::{AppendError, Appendable, ScrapeAppender};
use crate::target::Target;

/// The bits of Prometheus' staleness marker.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker value. Compare with [`is_stale_nan`], never `==`.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Samples further in the future than this are out of bounds
/// (Prometheus' `maxAheadTime`).
const MAX_AHEAD: Duration = Duration::from_secs(600);

/// Prometheus' timestamp alignment tolerance: a scrape starting this close
/// to its ideal time gets the ideal timestamp, which compresses better.
const ALIGN_TOLERANCE: Duration = Duration::from_millis(2);

const REPORT_NAMES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The settings of a loop, from its job config and target.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopOptions {
    pub interval: Duration,
    pub timeout: Duration,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub sample_limit: u64,
    pub body_size_limit: u64,
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
    pub metric_relabel_configs: Vec<RelabelConfig>,
}

impl LoopOptions {
    /// Options for `target` of job `cfg`; interval and timeout come from the
    /// target's (possibly relabeled) `__scrape_interval__`/`__scrape_timeout__`.
    pub fn new(cfg: &ScrapeConfig, target: &Target) -> Self {
        let (interval, timeout) =
            target.interval_and_timeout((cfg.scrape_interval, cfg.scrape_timeout));
        LoopOptions {
            interval,
            timeout,
            honor_labels: cfg.honor_labels,
            honor_timestamps: cfg.honor_timestamps,
            sample_limit: cfg.sample_limit,
            body_size_limit: cfg.body_size_limit,
            label_limit: cfg.label_limit,
            label_name_length_limit: cfg.label_name_length_limit,
            label_value_length_limit: cfg.label_value_length_limit,
            metric_relabel_configs: cfg.metric_relabel_configs.clone(),
        }
    }

    /// Whether a series cache built under `self` is still right under
    /// `other` (the label mutation is the same).
    fn same_mutation(&self, other: &LoopOptions) -> bool {
        self.honor_labels == other.honor_labels
            && self.metric_relabel_configs == other.metric_relabel_configs
    }
}

/// A target's health, as the targets API reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    #[default]
    Unknown,
    Up,
    Down,
}

/// The outcome of the latest scrape of a target.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetStatus {
    pub health: Health,
    pub last_error: String,
    /// When the latest scrape started.
    pub last_scrape: Option<SystemTime>,
    pub last_scrape_duration: Duration,
    /// The target's metric metadata as of its latest scrape; shared, so
    /// readers clone a pointer (it is replaced, never edited in place).
    pub metadata: Arc<TargetMetadata>,
}

/// Most metric families whose metadata one target keeps; more are ignored.
/// Bodies are already bounded by `body_size_limit`; this bounds targets
/// without one.
pub const MAX_METADATA_PER_TARGET: usize = 100_000;

/// Scrapes a metadata entry outlives its family's last appearance
/// (Prometheus keeps them 10 scrapes, so a flapping family keeps its help).
const METADATA_KEEP_SCRAPES: u64 = 10;

/// `# TYPE`, `# HELP` and `# UNIT` of one metric family as a target last
/// exposed them (Prometheus' scrape-cache metadata).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricMetadata {
    /// `unknown` until a `# TYPE` line says otherwise (text `untyped` is
    /// `unknown` too).
    pub kind: MetricType,
    pub help: String,
    pub unit: String,
    /// Metadata iteration this family was last seen in.
    last_seen: u64,
}

/// The metadata of one target, keyed by metric family name. Each field is
/// updated when a scrape exposes it (a family that drops its `# HELP` line
/// keeps the old help, as in Prometheus); families not exposed for
/// [`METADATA_KEEP_SCRAPES`] non-empty scrapes are forgotten, and all of it
/// goes when the target goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetMetadata {
    families: HashMap<String, MetricMetadata>,
    /// Counts non-empty scrapes.
    iter: u64,
    /// Something visible changed since the last publication.
    changed: bool,
}

impl TargetMetadata {
    /// Families and their metadata, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &MetricMetadata)> {
        self.families.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn get(&self, family: &str) -> Option<&MetricMetadata> {
        self.families.get(family)
    }

    pub fn len(&self) -> usize {
        self.families.len()
    }

    pub fn is_empty(&self) -> bool {
        self.families.is_empty()
    }

    fn entry(&mut self, family: &str) -> Option<&mut MetricMetadata> {
        let iter = self.iter;
        if !self.families.contains_key(family) {
            if self.families.len() >= MAX_METADATA_PER_TARGET {
                return None;
            }
            self.changed = true;
            self.families.insert(
                family.to_string(),
                MetricMetadata {
                    kind: MetricType::Unknown,
                    help: String::new(),
                    unit: String::new(),
                    last_seen: iter,
                },
            );
        }
        let e = self.families.get_mut(family)?;
        e.last_seen = iter;
        Some(e)
    }

    /// Applies one metadata line of the body being parsed.
    fn observe(&mut self, entry: &Entry<'_>) {
        match entry {
            Entry::Type { family, typ } => {
                if let Some(e) = self.entry(family) {
                    if e.kind != *typ {
                        e.kind = *typ;
                        self.changed = true;
                    }
                }
            }
            Entry::Help { family, help } => {
                if let Some(e) = self.entry(family) {
                    if e.help != **help {
                        e.help = help.to_string();
                        self.changed = true;
                    }
                }
            }
            Entry::Unit { family, unit } => {
                if let Some(e) = self.entry(family) {
                    if e.unit != *unit {
                        e.unit = unit.to_string();
                        self.changed = true;
                    }
                }
            }
            _ => {}
        }
    }

    /// Ends a scrape; `non_empty`: the scrape returned a body (only those
    /// age the entries, as in Prometheus).
    fn scrape_done(&mut self, non_empty: bool) {
        if !non_empty {
            return;
        }
        let iter = self.iter;
        let before = self.families.len();
        self.families
            .retain(|_, e| iter - e.last_seen <= METADATA_KEEP_SCRAPES);
        if self.families.len() != before {
            self.changed = true;
        }
        self.iter += 1;
    }
}

/// What one scrape did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScrapeReport {
    /// The timestamp given to the samples (ms).
    pub timestamp: i64,
    pub error: Option<String>,
    pub duration: Duration,
    /// Samples in the body.
    pub samples_scraped: u64,
    /// Samples left after metric relabeling.
    pub samples_post_relabel: u64,
    /// Series this loop had not seen before.
    pub series_added: u64,
    pub out_of_order: u64,
    pub duplicates: u64,
    pub out_of_bounds: u64,
    /// Stale markers written.
    pub stale_markers: u64,
}

impl ScrapeReport {
    pub fn up(&self) -> bool {
        self.error.is_none()
    }
}

#[derive(Clone, Debug)]
struct CacheEntry {
    /// The final label set; `None` when relabeling drops the series.
    out: Option<Labels>,
    /// The storage's ref for `out` (0: none yet), so that later scrapes
    /// append without the storage hashing and comparing the labels.
    series_ref: u64,
    last_iter: u64,
}

/// What a loop remembers between scrapes. Handed from an old loop to its
/// replacement on a config reload, so staleness tracking continues.
#[derive(Debug, Default)]
pub struct LoopState {
    cache: HashMap<Labels, CacheEntry>,
    iter: u64,
    successful_cache_len: usize,
    /// Series appended (without explicit timestamp) by the last scrape.
    prev: HashSet<Labels>,
    /// Report series have been written (so they need stale markers too).
    reported: bool,
    /// Timestamp of the last scrape, so end-of-run markers come after it.
    last_ts: Option<i64>,
    /// Metric metadata; published to [`TargetStatus::metadata`] when it
    /// changes. Survives config reloads with the rest of the state.
    meta: TargetMetadata,
}

impl LoopState {
    /// Number of series the previous scrape produced.
    pub fn previous_series(&self) -> usize {
        self.prev.len()
    }
}

/// Scrapes one target into an [`Appendable`].
pub struct ScrapeLoop {
    target: Target,
    url: String,
    opts: Arc<LoopOptions>,
    client: HttpClient,
    storage: Arc<dyn Appendable>,
    report_labels: Arc<[Labels; 5]>,
    target_labels: Labels,
    state: LoopState,
    status: Arc<Mutex<TargetStatus>>,
}

/// How a running loop is asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    Running,
    /// The target went away: write stale markers for its series.
    Stale,
    /// Shutdown or handover to a new loop: write nothing.
    Silent,
}

impl ScrapeLoop {
    pub fn new(
        target: Target,
        opts: LoopOptions,
        client: HttpClient,
        storage: Arc<dyn Appendable>,
    ) -> Self {
        let target_labels = target.labels();
        let report_labels = Arc::new(REPORT_NAMES.map(|n| report_labels(n, &target_labels)));
        ScrapeLoop {
            url: target.url(),
            target,
            opts: Arc::new(opts),
            client,
            storage,
            report_labels,
            target_labels,
            state: LoopState::default(),
            status: Arc::new(Mutex::new(TargetStatus::default())),
        }
    }

    /// Continues from a previous loop's state. The series cache is kept
    /// only if the label mutation is unchanged.
    pub fn with_state(mut self, mut state: LoopState, previous: &LoopOptions) -> Self {
        if !previous.same_mutation(&self.opts) {
            state.cache.clear();
        }
        self.status.lock().metadata = Arc::new(state.meta.clone());
        self.state = state;
        self
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn options(&self) -> &LoopOptions {
        &self.opts
    }

    pub fn status(&self) -> TargetStatus {
        self.status.lock().clone()
    }

    pub(crate) fn status_handle(&self) -> Arc<Mutex<TargetStatus>> {
        self.status.clone()
    }

    pub fn into_state(self) -> LoopState {
        self.state
    }

    /// Scrapes now, with the current time as the sample timestamp.
    pub async fn scrape_once(&mut self) -> ScrapeReport {
        self.scrape_at(now_ms()).await
    }

    /// Scrapes now, giving the samples timestamp `ts` (ms).
    pub async fn scrape_at(&mut self, ts: i64) -> ScrapeReport {
        let started = Instant::now();
        let wall = SystemTime::now();
        let fetched = self.fetch().await;
        self.append(fetched, ts, started, wall).await
    }

    async fn fetch(&self) -> Result<Fetched, String> {
        self.client
            .fetch(&self.url, self.opts.timeout, self.opts.body_size_limit)
            .await
            .map_err(|e| e.to_string())
    }

    async fn append(
        &mut self,
        fetched: Result<Fetched, String>,
        ts: i64,
        started: Instant,
        wall: SystemTime,
    ) -> ScrapeReport {
        let mut state = std::mem::take(&mut self.state);
        let storage = self.storage.clone();
        let opts = self.opts.clone();
        let tl = self.target_labels.clone();
        let rl = self.report_labels.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let report =
                append_scrape(&*storage, &mut state, &opts, &tl, &rl, fetched, ts, started);
            (state, report)
        })
        .await;
        let mut published = None;
        let report = match joined {
            Ok((mut state, report)) => {
                if state.meta.changed {
                    state.meta.changed = false;
                    published = Some(Arc::new(state.meta.clone()));
                }
                self.state = state;
                report
            }
            // The blocking task panicked or was cancelled: the state is
            // lost; start over rather than take the loop down.
            Err(e) => ScrapeReport {
                timestamp: ts,
                error: Some(format!("internal error: {e}")),
                ..Default::default()
            },
        };
        let mut st = self.status.lock();
        st.health = if report.up() {
            Health::Up
        } else {
            Health::Down
        };
        st.last_error = report.error.clone().unwrap_or_default();
        st.last_scrape = Some(wall);
        st.last_scrape_duration = report.duration;
        if let Some(m) = published {
            st.metadata = m;
        }
        report
    }

    /// Marks every series of this loop stale at `ts` (or just after the last
    /// scrape, if later), report series included, and forgets them. Used
    /// when the target goes away.
    pub async fn mark_stale(&mut self, ts: i64) -> u64 {
        let mut state = std::mem::take(&mut self.state);
        let storage = self.storage.clone();
        let rl = self.report_labels.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let ts = state.last_ts.map_or(ts, |l| ts.max(l + 1));
            let mut app = storage.appender();
            let mut n = 0;
            for ls in state.prev.drain() {
                n += u64::from(append_stale(&mut *app, &ls, ts));
            }
            if state.reported {
                for ls in rl.iter() {
                    n += u64::from(append_stale(&mut *app, ls, ts));
                }
                state.reported = false;
            }
            if let Err(e) = app.commit() {
                tracing::warn!(error = %e, "committing stale markers failed");
            }
            (state, n)
        })
        .await;
        match joined {
            Ok((state, n)) => {
                self.state = state;
                n
            }
            Err(_) => 0,
        }
    }

    /// The loop body run by the manager: wait for the offset, then scrape
    /// every interval until told to stop. Returns the state for handover.
    pub(crate) async fn run(
        mut self,
        mut stop: watch::Receiver<Stop>,
        jitter_seed: u64,
    ) -> LoopState {
        let interval = self.opts.interval.max(Duration::from_millis(1));
        let offset = self.target.offset(interval, jitter_seed, now_nanos());
        tokio::select! {
            _ = tokio::time::sleep(offset) => {}
            mode = wait_stop(&mut stop) => return self.finish(mode).await,
        }
        let first_wall = now_ms();
        let first = tokio::time::Instant::now();
        let mut ticker = tokio::time::interval_at(first, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                mode = wait_stop(&mut stop) => return self.finish(mode).await,
            }
            let started = Instant::now();
            let wall = SystemTime::now();
            let mut ts = now_ms();
            // Snap to the ideal time first + k*interval when within tolerance
            // (only for intervals long enough for that to matter, as Prometheus).
            if interval > ALIGN_TOLERANCE * 100 && ts >= first_wall {
                let iv = interval.as_millis() as i64;
                let aligned = first_wall + (ts - first_wall) / iv * iv;
                if ts - aligned <= ALIGN_TOLERANCE.as_millis() as i64 {
                    ts = aligned;
                }
            }
            let fetched = tokio::select! {
                f = self.fetch() => f,
                mode = wait_stop(&mut stop) => return self.finish(mode).await,
            };
            let report = self.append(fetched, ts, started, wall).await;
            if let Some(e) = &report.error {
                tracing::debug!(url = %self.url, error = %e, "scrape failed");
            }
        }
    }

    async fn finish(mut self, mode: Stop) -> LoopState {
        if mode == Stop::Stale {
            self.mark_stale(now_ms()).await;
        }
        self.state
    }
}

/// Waits until the stop signal leaves `Running`. A dropped sender (the
/// manager is gone) means a silent stop.
async fn wait_stop(rx: &mut watch::Receiver<Stop>) -> Stop {
    loop {
        let cur = *rx.borrow_and_update();
        if cur != Stop::Running {
            return cur;
        }
        if rx.changed().await.is_err() {
            return Stop::Silent;
        }
    }
}

fn report_labels(name: &str, target_labels: &Labels) -> Labels {
    let mut v: Vec<Label> = Vec::with_capacity(target_labels.len() + 1);
    v.push(Label::new(METRIC_NAME, name));
    v.extend(
        target_labels
            .iter()
            .filter(|l| &*l.name != METRIC_NAME)
            .cloned(),
    );
    Labels::from_pairs(v.into_iter().map(|l| (l.name, l.value)))
}

/// Appends a stale marker; errors are expected (the series may have moved
/// on, e.g. the target came back in another loop) and ignored.
fn append_stale(app: &mut dyn ScrapeAppender, ls: &Labels, ts: i64) -> bool {
    app.append(ls, ts, stale_nan()).is_ok()
}

/// Adds the target's labels to an exposed label set and applies metric
/// relabeling (Prometheus' `mutateSampleLabels`). `None`: dropped.
pub fn mutate_sample_labels(
    exposed: &Labels,
    target_labels: &Labels,
    honor_labels: bool,
    rules: &[RelabelConfig],
) -> Option<Labels> {
    let mut b = Builder::new(exposed);
    if honor_labels {
        for l in target_labels.iter() {
            if exposed.get(&l.name).is_none() {
                b.set_arc(&l.name, &l.value);
            }
        }
    } else {
        let mut conflicts: Vec<(String, Arc<str>)> = Vec::new();
        for l in target_labels.iter() {
            if let Some(v) = exposed.get(&l.name) {
                conflicts.push((l.name.to_string(), Arc::from(v)));
            }
            b.set_arc(&l.name, &l.value);
        }
        if !conflicts.is_empty() {
            // Shorter names first, so `exported_a` is taken by `a` before
            // `exported_exported_a`-style collisions are resolved.
            conflicts.sort_by_key(|(n, _)| n.len());
            let mut taken: Vec<String> = Vec::new();
            for (name, value) in &conflicts {
                let mut new = name.clone();
                loop {
                    new = format!("exported_{new}");
                    if exposed.get(&new).is_none()
                        && target_labels.get(&new).is_none()
                        && !taken.contains(&new)
                    {
                        break;
                    }
                }
                b.set_arc(&Arc::from(new.as_str()), value);
                taken.push(new);
            }
        }
    }
    let out = b.labels();
    let out = relabel::process(&out, rules)?;
    (!out.is_empty()).then_some(out)
}

fn valid_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    match b.next() {
        Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {}
        _ => return false,
    }
    b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn check_labels(ls: &Labels, o: &LoopOptions) -> Result<(), String> {
    let Some(name) = ls.get(METRIC_NAME) else {
        return Err("missing metric name (__name__ label)".into());
    };
    if !valid_metric_name(name)
        || !ls
            .iter()
            .all(|l| &*l.name == METRIC_NAME || is_valid_label_name(&l.name))
    {
        return Err(format!("invalid metric name or label names: {ls}"));
    }
    let short: String = name.chars().take(50).collect();
    if o.label_limit > 0 && ls.len() as u64 > o.label_limit {
        return Err(format!(
            "label_limit exceeded (metric: {short}, number of labels: {}, limit: {})",
            ls.len(),
            o.label_limit
        ));
    }
    for l in ls.iter() {
        if o.label_name_length_limit > 0 && l.name.len() as u64 > o.label_name_length_limit {
            let n: String = l.name.chars().take(50).collect();
            return Err(format!(
                "label_name_length_limit exceeded (metric: {short}, label name: {n}, length: {}, limit: {})",
                l.name.len(),
                o.label_name_length_limit
            ));
        }
        if o.label_value_length_limit > 0 && l.value.len() as u64 > o.label_value_length_limit {
            let v: String = l.value.chars().take(50).collect();
            return Err(format!(
                "label_value_length_limit exceeded (metric: {short}, label value: {v}, length: {}, limit: {})",
                l.value.len(),
                o.label_value_length_limit
            ));
        }
    }
    Ok(())
}

/// Counts of one body's append.
#[derive(Default)]
struct BodyCounts {
    total: u64,
    added: u64,
    series_added: u64,
    out_of_order: u64,
    duplicates: u64,
    out_of_bounds: u64,
}

/// Parses and appends one body. `cur` collects the series seen. An error
/// fails the scrape; the counts still say how far it got.
#[allow(clippy::too_many_arguments)]
fn append_body(
    app: &mut dyn ScrapeAppender,
    st: &mut LoopState,
    o: &LoopOptions,
    target_labels: &Labels,
    body: &Fetched,
    ts: i64,
    cur: &mut HashSet<Labels>,
    c: &mut BodyCounts,
) -> Result<(), String> {
    let format = format_from_content_type(&body.content_type);
    let max_t = now_ms().saturating_add(MAX_AHEAD.as_millis() as i64);
    let mut limit_exceeded = false;
    for entry in Parser::new(&body.body, format) {
        let (exposed, t_ms, v) = match entry {
            Ok(Entry::Sample {
                labels,
                t_ms,
                value,
            }) => (labels, t_ms, value),
            Ok(other) => {
                st.meta.observe(&other);
                continue;
            }
            Err(e) => return Err(e.to_string()),
        };
        c.total += 1;
        let explicit = if o.honor_timestamps { t_ms } else { None };
        let t = explicit.unwrap_or(ts);
        let (entry, new) = match st.cache.entry(exposed) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let e = e.into_mut();
                e.last_iter = st.iter;
                (e, false)
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                let out = mutate_sample_labels(
                    slot.key(),
                    target_labels,
                    o.honor_labels,
                    &o.metric_relabel_configs,
                );
                if let Some(ls) = &out {
                    check_labels(ls, o)?;
                }
                let e = slot.insert(CacheEntry {
                    out,
                    series_ref: 0,
                    last_iter: st.iter,
                });
                (e, true)
            }
        };
        let out = entry.out.clone();
        let Some(ls) = out else { continue };
        c.added += 1;
        if o.sample_limit > 0 && c.added > o.sample_limit {
            // Keep parsing so the report counts every sample, as Prometheus.
            limit_exceeded = true;
            continue;
        }
        if t > max_t {
            c.out_of_bounds += 1;
            continue;
        }
        match app.append_cached(entry.series_ref, &ls, t, v) {
            Ok(series_ref) => {
                entry.series_ref = series_ref;
                if new {
                    c.series_added += 1;
                }
                if explicit.is_none() {
                    cur.insert(ls);
                }
            }
            Err(AppendError::OutOfOrder) => c.out_of_order += 1,
            Err(AppendError::Duplicate) => c.duplicates += 1,
            Err(AppendError::OutOfBounds) => c.out_of_bounds += 1,
            Err(AppendError::Other(e)) => return Err(e),
        }
    }
    if limit_exceeded {
        return Err("sample limit exceeded".into());
    }
    Ok(())
}

/// One scrape's storage side (see module docs); blocking.
#[allow(clippy::too_many_arguments)]
fn append_scrape(
    storage: &dyn Appendable,
    st: &mut LoopState,
    o: &LoopOptions,
    target_labels: &Labels,
    report_labels: &[Labels; 5],
    fetched: Result<Fetched, String>,
    ts: i64,
    started: Instant,
) -> ScrapeReport {
    let mut report = ScrapeReport {
        timestamp: ts,
        ..Default::default()
    };
    let mut app = storage.appender();
    let mut cur = HashSet::new();
    let mut counts = BodyCounts::default();
    let result = match &fetched {
        Ok(body) => append_body(
            &mut *app,
            st,
            o,
            target_labels,
            body,
            ts,
            &mut cur,
            &mut counts,
        ),
        Err(e) => Err(e.clone()),
    };
    // Metadata parsed before an error stays, as in Prometheus.
    st.meta
        .scrape_done(fetched.as_ref().is_ok_and(|b| !b.body.is_empty()));
    match &result {
        Ok(()) => {
            for ls in st.prev.difference(&cur) {
                report.stale_markers += u64::from(append_stale(&mut *app, ls, ts));
            }
            st.prev = cur;
            // Forget cache entries this scrape did not use, so series that
            // went away do not pin memory.
            let iter = st.iter;
            st.cache.retain(|_, e| e.last_iter == iter);
            st.successful_cache_len = st.cache.len();
            st.iter += 1;
        }
        Err(_) => {
            // Nothing of a failed scrape is kept; it counts as empty, so
            // every previous series goes stale.
            app.rollback();
            app = storage.appender();
            for ls in st.prev.drain() {
                report.stale_markers += u64::from(append_stale(&mut *app, &ls, ts));
            }
            if st.cache.len() > st.successful_cache_len * 2 + 1000 {
                let iter = st.iter;
                st.cache.retain(|_, e| e.last_iter + 1 >= iter);
            }
        }
    }
    if counts.out_of_order > 0 || counts.duplicates > 0 || counts.out_of_bounds > 0 {
        tracing::warn!(
            out_of_order = counts.out_of_order,
            duplicates = counts.duplicates,
            out_of_bounds = counts.out_of_bounds,
            "samples rejected by storage"
        );
    }
    report.error = result.err();
    report.samples_scraped = counts.total;
    report.samples_post_relabel = counts.added;
    report.series_added = if report.error.is_none() {
        counts.series_added
    } else {
        0
    };
    report.out_of_order = counts.out_of_order;
    report.duplicates = counts.duplicates;
    report.out_of_bounds = counts.out_of_bounds;
    report.duration = started.elapsed();
    let values = [
        if report.error.is_none() { 1.0 } else { 0.0 },
        report.duration.as_secs_f64(),
        report.samples_scraped as f64,
        report.samples_post_relabel as f64,
        report.series_added as f64,
    ];
    for (ls, v) in report_labels.iter().zip(values) {
        match app.append(ls, ts, v) {
            Ok(()) | Err(AppendError::OutOfOrder | AppendError::Duplicate) => {}
            Err(e) => tracing::warn!(series = %ls, error = %e, "appending report sample failed"),
        }
    }
    st.reported = true;
    st.last_ts = Some(ts);
    if let Err(e) = app.commit() {
        tracing::error!(error = %e, "scrape commit failed");
        if report.error.is_none() {
            report.error = Some(format!("commit: {e}"));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn honor_labels_false_renames_conflicts() {
        let exposed = l(&[
            ("__name__", "m"),
            ("job", "exp"),
            ("exported_job", "x"),
            ("a", "1"),
        ]);
        let target = l(&[("job", "j"), ("instance", "i")]);
        let out = mutate_sample_labels(&exposed, &target, false, &[]).unwrap();
        assert_eq!(
            out,
            l(&[
                ("__name__", "m"),
                ("a", "1"),
                ("exported_exported_job", "exp"),
                ("exported_job", "x"),
                ("instance", "i"),
                ("job", "j"),
            ])
        );
    }

    #[test]
    fn honor_labels_true_keeps_exposed() {
        let exposed = l(&[("__name__", "m"), ("job", "exp")]);
        let target = l(&[("job", "j"), ("instance", "i")]);
        let out = mutate_sample_labels(&exposed, &target, true, &[]).unwrap();
        assert_eq!(
            out,
            l(&[("__name__", "m"), ("instance", "i"), ("job", "exp")])
        );
    }

    #[test]
    fn report_labels_have_target_labels() {
        let rl = report_labels("up", &l(&[("job", "j"), ("instance", "i")]));
        assert_eq!(
            rl,
            l(&[("__name__", "up"), ("instance", "i"), ("job", "j")])
        );
    }

    #[test]
    fn label_checks() {
        let o = LoopOptions {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            honor_labels: false,
            honor_timestamps: true,
            sample_limit: 0,
            body_size_limit: 0,
            label_limit: 2,
            label_name_length_limit: 0,
            label_value_length_limit: 3,
            metric_relabel_configs: vec![],
        };
        assert!(check_labels(&l(&[("__name__", "m"), ("a", "1")]), &o).is_ok());
        assert!(
            check_labels(&l(&[("__name__", "m"), ("a", "1"), ("b", "2")]), &o)
                .unwrap_err()
                .contains("label_limit exceeded")
        );
        assert!(check_labels(&l(&[("__name__", "m"), ("a", "1234")]), &o)
            .unwrap_err()
            .contains("label_value_length_limit"));
        assert!(check_labels(&l(&[("a", "1")]), &o)
            .unwrap_err()
            .contains("missing metric name"));
        assert!(check_labels(&l(&[("__name__", "a-b")]), &o)
            .unwrap_err()
            .contains("invalid metric name"));
        assert!(is_stale_nan(stale_nan()));
        assert!(!is_stale_nan(f64::NAN));
    }

    fn feed(m: &mut TargetMetadata, body: &str) {
        use strata_tsdb::textparse::Format;
        for e in Parser::new(body.as_bytes(), Format::PromText) {
            m.observe(&e.expect("valid body"));
        }
        m.scrape_done(!body.is_empty());
    }

    #[test]
    fn metadata_follows_prometheus_scrape_cache() {
        let mut m = TargetMetadata::default();
        feed(
            &mut m,
            "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n# HELP h Only help.\nh 1\n",
        );
        assert!(m.changed);
        assert_eq!(m.len(), 2);
        let a = m.get("a_total").expect("a_total");
        assert_eq!((a.kind, a.help.as_str()), (MetricType::Counter, "A."));
        assert_eq!(m.get("h").map(|h| h.kind), Some(MetricType::Unknown));
        m.changed = false;
        // Same metadata again: nothing to publish.
        feed(
            &mut m,
            "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n# HELP h Only help.\nh 1\n",
        );
        assert!(!m.changed);
        // The HELP line goes: the help stays (fields are set, not replaced).
        feed(&mut m, "# TYPE a_total gauge\na_total 1\n");
        assert!(m.changed);
        let a = m.get("a_total").expect("a_total");
        assert_eq!((a.kind, a.help.as_str()), (MetricType::Gauge, "A."));
        // `h` is kept for 10 more non-empty scrapes, then forgotten; empty
        // scrapes (failed ones) do not age it.
        for _ in 0..20 {
            feed(&mut m, "");
        }
        assert!(m.get("h").is_some());
        for _ in 0..9 {
            feed(&mut m, "# TYPE a_total gauge\na_total 1\n");
        }
        assert!(m.get("h").is_some());
        feed(&mut m, "# TYPE a_total gauge\na_total 1\n");
        assert!(m.get("h").is_none());
        assert!(m.get("a_total").is_some());
    }

    #[test]
    fn metadata_per_target_is_bounded() {
        let mut m = TargetMetadata::default();
        let mut body = String::new();
        for i in 0..MAX_METADATA_PER_TARGET + 10 {
            body.push_str(&format!("# TYPE m{i} gauge\n"));
        }
        feed(&mut m, &body);
        assert_eq!(m.len(), MAX_METADATA_PER_TARGET);
    }
}
