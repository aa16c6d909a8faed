//! The deterministic metrics model behind the demo exporters and the
//! backfill.
//!
//! # Main types
//!
//! * [`Cluster`]: one simulated Kubernetes cluster, built by
//!   [`Cluster::new`] from its 1-based index. It holds the [`Target`]s a
//!   Prometheus would scrape in such a cluster: a kubelet/cAdvisor and a
//!   node-exporter per node, kube-state-metrics, the API server and the
//!   scheduler.
//! * [`Target`]: a scrape target: `job`, `instance` (a stable, made-up
//!   `host:port`, so backfilled and scraped series carry the same labels
//!   whatever ports the demo listens on), the HTTP path the demo exporter
//!   serves it under, and its metric [`Family`]s.
//! * [`Family`] → [`Series`]: a metric family (HELP, TYPE) and its series,
//!   each a label set plus a [`Value`], which computes the sample at any
//!   time `t`.
//!
//! # Why a closed-form model
//!
//! The same function gives the value the exporter serves when scraped live
//! and the value the backfill writes for a past timestamp, so the history
//! joins the live data without a seam and a second start needs no state.
//! Every value is a pure function of (cluster, series, t):
//!
//! * a [`Rate`] is `base · (1 + Σ aᵢ·sin(2πt/Pᵢ + φᵢ))` with `Σ|aᵢ| < 1`, so
//!   it is always positive;
//! * a counter is the integral of rates from [`ANCHOR_S`] to `t`, in closed
//!   form, hence monotonic in `t` without remembering anything (integer
//!   counters are floored, which keeps them monotonic);
//! * a gauge is `base · level(t)`: slow sine waves plus smooth noise
//!   (hashed values at 60 s knots, interpolated linearly);
//! * a histogram mixes two request populations ("fast" and "slow"), each a
//!   counter with a fixed latency distribution; buckets are
//!   `⌊A(t)·F_A(le)⌋ + ⌊B(t)·F_B(le)⌋`, monotonic in both `t` and `le`, and
//!   since the two populations' rates move differently, quantiles move too.
//!
//! Phases and amplitudes come from an FNV-1a hash of the series' identity,
//! so two series (or two clusters) never move in lockstep.

use std::f64::consts::TAU;
use std::fmt::Write as _;

/// Counters count from this instant (2025-01-01T00:00:00Z, in seconds), as
/// if every simulated process had started then.
pub const ANCHOR_S: f64 = 1_735_689_600.0;

/// Names of the simulated clusters; the index into this is `Cluster::new(i + 1)`.
pub const CLUSTER_NAMES: [&str; 2] = ["cluster1", "cluster2"];

/// FNV-1a over the parts, with a separator so `("ab","c") != ("a","bc")`.
pub fn hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// A uniform number in `[0, 1)` from a seed (splitmix64 finaliser).
fn unit(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// One sine term: amplitude (relative), period in seconds, phase.
#[derive(Clone, Copy, Debug)]
struct Wave {
    amp: f64,
    period: f64,
    phase: f64,
}

/// A positive rate per second: `base · (1 + Σ amp·sin(2πt/period + phase))`.
#[derive(Clone, Debug)]
pub struct Rate {
    base: f64,
    waves: Vec<Wave>,
}

impl Rate {
    /// A rate around `base` with a daily-ish swing, a ~half-hour swing and a
    /// few-minute wobble; `swing` (0..1) scales the total relative amplitude.
    fn new(base: f64, swing: f64, seed: u64) -> Rate {
        let swing = swing.clamp(0.0, 0.95);
        let waves = [(0.5, 6.0 * 3600.0), (0.3, 1800.0), (0.2, 300.0)]
            .iter()
            .enumerate()
            .map(|(i, (share, period))| Wave {
                amp: swing * share,
                // Periods differ a little per series so peaks do not align.
                period: period * (0.8 + 0.4 * unit(seed ^ (i as u64 * 7919))),
                phase: TAU * unit(seed.rotate_left(17) ^ i as u64),
            })
            .collect();
        Rate { base, waves }
    }

    /// The rate at `t` (seconds).
    pub fn at(&self, t: f64) -> f64 {
        self.base
            * (1.0
                + self
                    .waves
                    .iter()
                    .map(|w| w.amp * (TAU * t / w.period + w.phase).sin())
                    .sum::<f64>())
    }

    /// `∫ rate` from [`ANCHOR_S`] to `t`, in closed form; 0 before the anchor.
    pub fn integral(&self, t: f64) -> f64 {
        if t <= ANCHOR_S {
            return 0.0;
        }
        let mut acc = t - ANCHOR_S;
        for w in &self.waves {
            let omega = TAU / w.period;
            acc -=
                w.amp / omega * ((omega * t + w.phase).cos() - (omega * ANCHOR_S + w.phase).cos());
        }
        (self.base * acc).max(0.0)
    }
}

/// How a series' value is computed at time `t` (seconds).
#[derive(Clone, Debug)]
pub enum Value {
    Const(f64),
    /// `base · level(t)`, clamped to `[min, max]`.
    Gauge {
        base: f64,
        rate: Rate,
        noise: f64,
        seed: u64,
        min: f64,
        max: f64,
    },
    /// `Σ coef · ∫rate`, floored per term when `integer` (request counts,
    /// bytes), so it stays monotonic.
    Counter {
        terms: Vec<(Rate, f64)>,
        integer: bool,
    },
    /// `total · (t − anchor) − Σ coef · ∫rate`: what is left of a budget of
    /// `total` per second, like a CPU's idle time. Monotonic as long as the
    /// subtracted rates stay below `total`, which the model guarantees.
    Residual {
        total: f64,
        minus: Vec<(Rate, f64)>,
    },
}

/// Smooth noise in `[-1, 1]`: hashed values at 60 s knots, interpolated.
fn smooth_noise(seed: u64, t: f64) -> f64 {
    let k = (t / 60.0).floor();
    let f = t / 60.0 - k;
    let a = unit(seed ^ (k as i64 as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let b = unit(seed ^ ((k as i64 + 1) as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    2.0 * (a + (b - a) * f) - 1.0
}

impl Value {
    pub fn at(&self, t: f64) -> f64 {
        match self {
            Value::Const(v) => *v,
            Value::Gauge {
                base,
                rate,
                noise,
                seed,
                min,
                max,
            } => {
                let level =
                    rate.at(t) / rate.base.max(f64::MIN_POSITIVE) + noise * smooth_noise(*seed, t);
                (base * level).clamp(*min, *max)
            }
            Value::Counter { terms, integer } => terms
                .iter()
                .map(|(r, c)| {
                    let v = r.integral(t) * c;
                    if *integer {
                        v.floor()
                    } else {
                        v
                    }
                })
                .sum(),
            Value::Residual { total, minus } => {
                let used: f64 = minus.iter().map(|(r, c)| r.integral(t) * c).sum();
                (total * (t - ANCHOR_S).max(0.0) - used).max(0.0)
            }
        }
    }

    fn gauge(base: f64, swing: f64, noise: f64, seed: u64) -> Value {
        Value::Gauge {
            base,
            rate: Rate::new(1.0, swing, seed),
            noise,
            seed: seed.rotate_left(29),
            min: 0.0,
            max: f64::MAX,
        }
    }

    fn counter(rate: f64, swing: f64, seed: u64, integer: bool) -> Value {
        Value::Counter {
            terms: vec![(Rate::new(rate, swing, seed), 1.0)],
            integer,
        }
    }
}

/// The exposition type of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One series: full metric name (with `_bucket`/`_sum`/`_count` for
/// histograms), labels in exposition order, and its value.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: Value,
}

/// A metric family with HELP and TYPE.
#[derive(Clone, Debug)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub series: Vec<Series>,
}

impl Family {
    fn new(name: &str, kind: Kind, help: &str) -> Family {
        Family {
            name: name.to_string(),
            help: help.to_string(),
            kind,
            series: Vec::new(),
        }
    }

    fn push(&mut self, labels: &[(&str, &str)], value: Value) {
        self.push_named(self.name.clone(), labels, value);
    }

    fn push_named(&mut self, name: String, labels: &[(&str, &str)], value: Value) {
        self.series.push(Series {
            name,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        });
    }

    /// Adds one histogram (buckets, `_sum`, `_count`) made of a fast and a
    /// slow population of observations, exponentially distributed with the
    /// given means (seconds) and request rates (per second).
    fn push_histogram(
        &mut self,
        labels: &[(&str, &str)],
        buckets: &[f64],
        fast: (f64, f64),
        slow: (f64, f64),
        seed: u64,
    ) {
        let a = Rate::new(fast.0, 0.6, seed);
        let b = Rate::new(slow.0, 0.9, seed.rotate_left(11));
        let cdf = |mean: f64, le: f64| 1.0 - (-le / mean).exp();
        for le in buckets.iter().copied().chain([f64::INFINITY]) {
            let le_text = if le.is_infinite() {
                "+Inf".to_string()
            } else {
                format!("{le}")
            };
            let mut l: Vec<(&str, &str)> = labels.to_vec();
            l.push(("le", &le_text));
            self.push_named(
                format!("{}_bucket", self.name),
                &l,
                Value::Counter {
                    terms: vec![(a.clone(), cdf(fast.1, le)), (b.clone(), cdf(slow.1, le))],
                    integer: true,
                },
            );
        }
        self.push_named(
            format!("{}_sum", self.name),
            labels,
            Value::Counter {
                terms: vec![(a.clone(), fast.1), (b.clone(), slow.1)],
                integer: false,
            },
        );
        self.push_named(
            format!("{}_count", self.name),
            labels,
            Value::Counter {
                terms: vec![(a, 1.0), (b, 1.0)],
                integer: true,
            },
        );
    }
}

/// A scrape target of a simulated cluster.
#[derive(Clone, Debug)]
pub struct Target {
    pub job: String,
    /// The `instance` label, set explicitly in the generated scrape config.
    pub instance: String,
    /// Path on the cluster's demo exporter server, e.g. `/node-exporter/cluster1-node-1/metrics`.
    pub path: String,
    pub families: Vec<Family>,
}

impl Target {
    /// Number of series the target exposes (without `up` and friends).
    pub fn num_series(&self) -> usize {
        self.families.iter().map(|f| f.series.len()).sum()
    }

    /// The exposition in Prometheus text format 0.0.4 at `t_ms`.
    pub fn render(&self, t_ms: i64) -> String {
        let t = t_ms as f64 / 1000.0;
        let mut out = String::with_capacity(self.num_series() * 96);
        for f in &self.families {
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.as_str());
            for s in &f.series {
                out.push_str(&s.name);
                // Empty values mean "no such label" in Prometheus: left out.
                let mut first = true;
                for (k, v) in s.labels.iter().filter(|(_, v)| !v.is_empty()) {
                    out.push(if first { '{' } else { ',' });
                    first = false;
                    let _ = write!(out, "{k}=\"{}\"", escape(v));
                }
                if !first {
                    out.push('}');
                }
                let _ = writeln!(out, " {}", format_value(s.value.at(t)));
            }
        }
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Integers without a fraction, other values with Rust's shortest
/// round-trip form (valid Go floats either way).
fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// A node of a simulated cluster.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub cpus: u32,
    pub memory_bytes: f64,
    pub disk_bytes: f64,
    pub ip: String,
}

/// A pod, placed on a node.
#[derive(Clone, Debug)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub owner_kind: &'static str,
    pub owner: String,
    pub node: usize,
    pub phase: &'static str,
    /// (container, image, CPU cores used on average, memory bytes)
    pub containers: Vec<(&'static str, &'static str, f64, f64)>,
    pub ip: String,
}

/// A workload: namespace, name, replicas, kind, containers.
type Workload = (
    &'static str,
    &'static str,
    u32,
    &'static str,
    &'static [(&'static str, &'static str, f64, f64)],
);

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

const COMMON_WORKLOADS: &[Workload] = &[
    (
        "kube-system",
        "coredns",
        2,
        "ReplicaSet",
        &[(
            "coredns",
            "registry.k8s.io/coredns/coredns:v1.11.1",
            0.01,
            22.0 * MIB,
        )],
    ),
    (
        "kube-system",
        "kube-proxy",
        0,
        "DaemonSet",
        &[(
            "kube-proxy",
            "registry.k8s.io/kube-proxy:v1.30.2",
            0.005,
            28.0 * MIB,
        )],
    ),
    (
        "monitoring",
        "strata-tsdb",
        1,
        "StatefulSet",
        &[
            ("tsdb", "strata:latest", 0.15, 420.0 * MIB),
            ("sidecar", "strata:latest", 0.02, 64.0 * MIB),
        ],
    ),
    (
        "monitoring",
        "kube-state-metrics",
        1,
        "ReplicaSet",
        &[(
            "kube-state-metrics",
            "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.12.0",
            0.01,
            48.0 * MIB,
        )],
    ),
    (
        "monitoring",
        "node-exporter",
        0,
        "DaemonSet",
        &[(
            "node-exporter",
            "quay.io/prometheus/node-exporter:v1.8.1",
            0.004,
            18.0 * MIB,
        )],
    ),
];

const CLUSTER1_WORKLOADS: &[Workload] = &[
    (
        "shop",
        "frontend",
        3,
        "ReplicaSet",
        &[("frontend", "example/shop-frontend:2.4.1", 0.12, 180.0 * MIB)],
    ),
    (
        "shop",
        "cart",
        2,
        "ReplicaSet",
        &[
            ("cart", "example/shop-cart:1.9.0", 0.08, 256.0 * MIB),
            ("envoy", "envoyproxy/envoy:v1.30.1", 0.03, 60.0 * MIB),
        ],
    ),
    (
        "shop",
        "redis",
        1,
        "StatefulSet",
        &[("redis", "redis:7.2", 0.05, 512.0 * MIB)],
    ),
    (
        "payments",
        "payments-api",
        2,
        "ReplicaSet",
        &[("api", "example/payments-api:3.0.2", 0.2, 380.0 * MIB)],
    ),
    (
        "payments",
        "postgres",
        1,
        "StatefulSet",
        &[("postgres", "postgres:16", 0.3, 1.2 * GIB)],
    ),
];

const CLUSTER2_WORKLOADS: &[Workload] = &[
    (
        "analytics",
        "spark-worker",
        3,
        "ReplicaSet",
        &[("worker", "apache/spark:3.5.1", 1.1, 3.0 * GIB)],
    ),
    (
        "analytics",
        "nightly-report",
        1,
        "Job",
        &[("report", "example/report:0.7.0", 0.0, 0.0)],
    ),
    (
        "search",
        "elasticsearch",
        3,
        "StatefulSet",
        &[("elasticsearch", "elasticsearch:8.14.1", 0.6, 4.0 * GIB)],
    ),
    (
        "search",
        "search-api",
        2,
        "ReplicaSet",
        &[("api", "example/search-api:1.3.3", 0.15, 300.0 * MIB)],
    ),
    // Asks for more memory than any node has: stays Pending, so the
    // scheduler has something to retry.
    (
        "search",
        "reindexer",
        1,
        "ReplicaSet",
        &[("reindexer", "example/reindexer:0.2.0", 0.0, 0.0)],
    ),
];

/// PVCs: (namespace, claim, storage class, phase).
const CLUSTER1_PVCS: &[(&str, &str, &str, &str)] = &[
    ("monitoring", "data-strata-tsdb-0", "standard", "Bound"),
    ("shop", "data-redis-0", "standard", "Bound"),
    ("payments", "data-postgres-0", "ssd", "Bound"),
];
const CLUSTER2_PVCS: &[(&str, &str, &str, &str)] = &[
    ("monitoring", "data-strata-tsdb-0", "standard", "Bound"),
    ("search", "data-elasticsearch-0", "ssd", "Bound"),
    ("search", "data-elasticsearch-1", "ssd", "Bound"),
    ("search", "data-elasticsearch-2", "ssd", "Bound"),
    ("analytics", "scratch", "fast-local", "Pending"),
];

/// API-server traffic: (verb, resource, requests per second).
const API_TRAFFIC: &[(&str, &str, f64)] = &[
    ("GET", "pods", 4.0),
    ("LIST", "pods", 0.8),
    ("WATCH", "pods", 0.2),
    ("GET", "nodes", 1.5),
    ("PATCH", "nodes", 0.3),
    ("GET", "configmaps", 2.0),
    ("GET", "secrets", 1.2),
    ("LIST", "deployments", 0.3),
    ("UPDATE", "deployments", 0.05),
    ("CREATE", "events", 0.6),
    ("GET", "leases", 3.0),
    ("UPDATE", "leases", 3.0),
    ("CREATE", "pods", 0.02),
    ("DELETE", "pods", 0.02),
];

/// Prometheus' default histogram buckets.
const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One simulated cluster.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub name: String,
    pub nodes: Vec<Node>,
    pub namespaces: Vec<String>,
    pub pods: Vec<Pod>,
    pub targets: Vec<Target>,
}

/// A short, stable, Kubernetes-looking suffix (`[a-z0-9]{len}`) from a hash.
fn suffix(seed: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut s = String::with_capacity(len);
    let mut x = seed;
    for _ in 0..len {
        s.push(ALPHABET[(x % ALPHABET.len() as u64) as usize] as char);
        x /= ALPHABET.len() as u64;
        if x == 0 {
            x = seed.rotate_left(23) | 1;
        }
    }
    s
}

impl Cluster {
    /// Builds cluster `index` (1-based; 1 and 2 exist). Other indices give
    /// a cluster shaped like cluster 2 with its own name, so callers never
    /// panic on a bad index.
    pub fn new(index: usize) -> Cluster {
        let name = format!("cluster{index}");
        let (node_count, cpus, mem, extra, pvcs) = if index == 1 {
            (3, 4, 16.0 * GIB, CLUSTER1_WORKLOADS, CLUSTER1_PVCS)
        } else {
            (2, 8, 32.0 * GIB, CLUSTER2_WORKLOADS, CLUSTER2_PVCS)
        };
        let nodes: Vec<Node> = (1..=node_count)
            .map(|i| Node {
                name: format!("{name}-node-{i}"),
                cpus,
                memory_bytes: mem,
                disk_bytes: if index == 1 { 100.0 * GIB } else { 200.0 * GIB },
                ip: format!("10.{index}.0.{}", 10 + i),
            })
            .collect();
        let mut pods = Vec::new();
        for (ns, wl, replicas, kind, containers) in COMMON_WORKLOADS.iter().chain(extra) {
            let count = if *kind == "DaemonSet" {
                node_count
            } else {
                *replicas as usize
            };
            let rs = suffix(hash(&[&name, ns, wl]), 10);
            for r in 0..count {
                let pod_name = match *kind {
                    "StatefulSet" => format!("{wl}-{r}"),
                    "ReplicaSet" => format!(
                        "{wl}-{rs}-{}",
                        suffix(hash(&[&name, wl, &r.to_string()]), 5)
                    ),
                    _ => format!("{wl}-{}", suffix(hash(&[&name, wl, &r.to_string()]), 5)),
                };
                let node = if *kind == "DaemonSet" {
                    r
                } else {
                    (hash(&[&name, &pod_name]) % node_count as u64) as usize
                };
                let phase = match *wl {
                    "nightly-report" => "Succeeded",
                    "reindexer" => "Pending",
                    _ => "Running",
                };
                let owner = if *kind == "ReplicaSet" {
                    format!("{wl}-{rs}")
                } else {
                    wl.to_string()
                };
                pods.push(Pod {
                    namespace: ns.to_string(),
                    name: pod_name,
                    owner_kind: kind,
                    owner,
                    node,
                    phase,
                    containers: containers.to_vec(),
                    ip: format!("10.{}.{}.{}", 100 + index, node + 1, pods.len() + 2),
                });
            }
        }
        let mut namespaces: Vec<String> = ["default", "kube-system", "kube-public", "monitoring"]
            .iter()
            .map(|s| s.to_string())
            .chain(pods.iter().map(|p| p.namespace.clone()))
            .collect();
        namespaces.sort();
        namespaces.dedup();

        let mut c = Cluster {
            name,
            nodes,
            namespaces,
            pods,
            targets: Vec::new(),
        };
        let mut targets = Vec::new();
        for (i, n) in c.nodes.iter().enumerate() {
            targets.push(Target {
                job: "kubelet".into(),
                instance: format!("{}:10250", n.name),
                path: format!("/cadvisor/{}/metrics", n.name),
                families: c.cadvisor(i),
            });
        }
        for (i, n) in c.nodes.iter().enumerate() {
            targets.push(Target {
                job: "node-exporter".into(),
                instance: format!("{}:9100", n.name),
                path: format!("/node-exporter/{}/metrics", n.name),
                families: c.node_exporter(i),
            });
        }
        targets.push(Target {
            job: "kube-state-metrics".into(),
            instance: "kube-state-metrics.monitoring.svc:8080".into(),
            path: "/kube-state-metrics/metrics".into(),
            families: c.kube_state_metrics(pvcs),
        });
        targets.push(Target {
            job: "apiserver".into(),
            instance: format!("{}:6443", c.nodes[0].ip),
            path: "/apiserver/metrics".into(),
            families: c.apiserver(),
        });
        targets.push(Target {
            job: "kube-scheduler".into(),
            instance: format!("{}:10259", c.nodes[0].ip),
            path: "/scheduler/metrics".into(),
            families: c.scheduler(),
        });
        c.targets = targets;
        c
    }

    /// Number of series all targets expose, plus one `up` per target.
    pub fn num_series(&self) -> usize {
        self.targets.iter().map(|t| t.num_series() + 1).sum()
    }

    fn seed(&self, parts: &[&str]) -> u64 {
        let mut v = vec![self.name.as_str()];
        v.extend_from_slice(parts);
        hash(&v)
    }

    fn cadvisor(&self, node: usize) -> Vec<Family> {
        let node_name = &self.nodes[node].name;
        let mut cpu = Family::new(
            "container_cpu_usage_seconds_total",
            Kind::Counter,
            "Cumulative cpu time consumed in seconds.",
        );
        let mut mem = Family::new(
            "container_memory_working_set_bytes",
            Kind::Gauge,
            "Current working set in bytes.",
        );
        let mut rx = Family::new(
            "container_network_receive_bytes_total",
            Kind::Counter,
            "Cumulative count of bytes received",
        );
        let mut tx = Family::new(
            "container_network_transmit_bytes_total",
            Kind::Counter,
            "Cumulative count of bytes transmitted",
        );
        for p in self
            .pods
            .iter()
            .filter(|p| p.node == node && p.phase == "Running")
        {
            let mut pod_cpu = 0.0;
            for (c, image, cores, bytes) in &p.containers {
                let l = [
                    ("container", *c),
                    ("image", *image),
                    ("namespace", p.namespace.as_str()),
                    ("node", node_name.as_str()),
                    ("pod", p.name.as_str()),
                ];
                let s = self.seed(&[&p.name, c]);
                cpu.push(&l, Value::counter(*cores, 0.8, s, false));
                mem.push(&l, Value::gauge(*bytes, 0.15, 0.03, s));
                pod_cpu += cores;
            }
            let l = [
                ("interface", "eth0"),
                ("namespace", p.namespace.as_str()),
                ("node", node_name.as_str()),
                ("pod", p.name.as_str()),
            ];
            let s = self.seed(&[&p.name, "eth0"]);
            // Network traffic roughly follows CPU use: 200 KiB/s per core.
            let bps = 2000.0 + pod_cpu * 200.0 * 1024.0;
            rx.push(&l, Value::counter(bps, 0.8, s, true));
            tx.push(&l, Value::counter(bps * 0.6, 0.8, s.rotate_left(5), true));
        }
        vec![cpu, mem, rx, tx]
    }

    fn node_exporter(&self, node: usize) -> Vec<Family> {
        let n = &self.nodes[node];
        let mut cpu = Family::new(
            "node_cpu_seconds_total",
            Kind::Counter,
            "Seconds the CPUs spent in each mode.",
        );
        // The pods on the node set its busy level (plus system overhead).
        let busy: f64 = self
            .pods
            .iter()
            .filter(|p| p.node == node && p.phase == "Running")
            .flat_map(|p| p.containers.iter().map(|c| c.2))
            .sum::<f64>()
            / f64::from(n.cpus)
            + 0.05;
        let busy = busy.min(0.8);
        // Mode shares of the busy time; the rest is idle. Sum < 1 per CPU.
        let modes = [
            ("user", 0.68),
            ("system", 0.2),
            ("iowait", 0.05),
            ("irq", 0.01),
            ("softirq", 0.03),
            ("steal", 0.01),
            ("nice", 0.02),
        ];
        for c in 0..n.cpus {
            let cpu_s = c.to_string();
            let s = self.seed(&[&n.name, &cpu_s]);
            // One busy-level rate per CPU; every mode is a share of it. With
            // busy ≤ 0.8 and swing 0.2 the busy time stays below 0.96.
            let load = Rate::new(busy, 0.2, s);
            let mut minus = Vec::new();
            for (mode, share) in modes {
                cpu.push(
                    &[("cpu", &cpu_s), ("mode", mode)],
                    Value::Counter {
                        terms: vec![(load.clone(), share)],
                        integer: false,
                    },
                );
                minus.push((load.clone(), share));
            }
            cpu.push(
                &[("cpu", &cpu_s), ("mode", "idle")],
                Value::Residual { total: 1.0, minus },
            );
        }
        let mut total = Family::new(
            "node_memory_MemTotal_bytes",
            Kind::Gauge,
            "Memory information field MemTotal_bytes.",
        );
        total.push(&[], Value::Const(n.memory_bytes));
        let used: f64 = self
            .pods
            .iter()
            .filter(|p| p.node == node && p.phase == "Running")
            .flat_map(|p| p.containers.iter().map(|c| c.3))
            .sum::<f64>()
            + 1.1 * GIB;
        let mut avail = Family::new(
            "node_memory_MemAvailable_bytes",
            Kind::Gauge,
            "Memory information field MemAvailable_bytes.",
        );
        // Available = total − used, where used swings ±10%.
        avail.push(
            &[],
            Value::Gauge {
                base: n.memory_bytes - used,
                rate: Rate::new(
                    1.0,
                    0.1 * used / (n.memory_bytes - used).max(1.0),
                    self.seed(&[&n.name, "mem"]),
                ),
                noise: 0.01,
                seed: self.seed(&[&n.name, "memnoise"]),
                min: 0.02 * n.memory_bytes,
                max: n.memory_bytes,
            },
        );
        let mut size = Family::new(
            "node_filesystem_size_bytes",
            Kind::Gauge,
            "Filesystem size in bytes.",
        );
        let mut favail = Family::new(
            "node_filesystem_avail_bytes",
            Kind::Gauge,
            "Filesystem space available to non-root users in bytes.",
        );
        let fs = [
            (
                "/dev/nvme0n1p1",
                "ext4",
                "/",
                n.disk_bytes,
                0.35 + 0.1 * node as f64,
            ),
            (
                "/dev/nvme1n1",
                "xfs",
                "/var/lib/kubelet",
                n.disk_bytes * 2.0,
                0.55 + 0.08 * node as f64,
            ),
            ("tmpfs", "tmpfs", "/run", 1.6 * GIB, 0.02),
        ];
        for (device, fstype, mount, bytes, used_share) in fs {
            let l = [
                ("device", device),
                ("fstype", fstype),
                ("mountpoint", mount),
            ];
            size.push(&l, Value::Const(bytes));
            let free = bytes * (1.0 - used_share);
            favail.push(
                &l,
                Value::Gauge {
                    base: free,
                    rate: Rate::new(1.0, 0.05, self.seed(&[&n.name, mount])),
                    noise: 0.005,
                    seed: self.seed(&[&n.name, mount, "noise"]),
                    min: 0.0,
                    max: bytes,
                },
            );
        }
        vec![cpu, total, avail, size, favail]
    }

    fn kube_state_metrics(&self, pvcs: &[(&str, &str, &str, &str)]) -> Vec<Family> {
        let mut info = Family::new("kube_pod_info", Kind::Gauge, "Information about pod.");
        let mut phase = Family::new(
            "kube_pod_status_phase",
            Kind::Gauge,
            "The pods current phase.",
        );
        let mut requests = Family::new(
            "kube_pod_container_resource_requests",
            Kind::Gauge,
            "The number of requested request resource by a container.",
        );
        for p in &self.pods {
            let node = if p.phase == "Pending" {
                ""
            } else {
                self.nodes[p.node].name.as_str()
            };
            let host_ip = if node.is_empty() {
                ""
            } else {
                self.nodes[p.node].ip.as_str()
            };
            info.push(
                &[
                    ("namespace", &p.namespace),
                    ("pod", &p.name),
                    ("uid", &format!("{:016x}", self.seed(&[&p.name, "uid"]))),
                    ("host_ip", host_ip),
                    ("pod_ip", if node.is_empty() { "" } else { &p.ip }),
                    ("node", node),
                    ("created_by_kind", p.owner_kind),
                    ("created_by_name", &p.owner),
                ],
                Value::Const(1.0),
            );
            for ph in ["Pending", "Running", "Succeeded", "Failed", "Unknown"] {
                phase.push(
                    &[("namespace", &p.namespace), ("pod", &p.name), ("phase", ph)],
                    Value::Const(if ph == p.phase { 1.0 } else { 0.0 }),
                );
            }
            for (c, _, cores, bytes) in &p.containers {
                let (cpu_req, mem_req) = if *cores == 0.0 {
                    (0.5, 64.0 * GIB)
                } else {
                    (
                        (cores * 4.0 * 10.0).ceil() / 10.0,
                        (bytes * 1.25 / MIB).ceil() * MIB,
                    )
                };
                for (res, unit, v) in [("cpu", "core", cpu_req), ("memory", "byte", mem_req)] {
                    requests.push(
                        &[
                            ("namespace", &p.namespace),
                            ("pod", &p.name),
                            ("container", c),
                            ("node", node),
                            ("resource", res),
                            ("unit", unit),
                        ],
                        Value::Const(v),
                    );
                }
            }
        }
        let mut ns_labels = Family::new(
            "kube_namespace_labels",
            Kind::Gauge,
            "Kubernetes labels converted to Prometheus labels.",
        );
        let mut ns_phase = Family::new(
            "kube_namespace_status_phase",
            Kind::Gauge,
            "kubernetes namespace status phase.",
        );
        for ns in &self.namespaces {
            ns_labels.push(
                &[("namespace", ns), ("label_kubernetes_io_metadata_name", ns)],
                Value::Const(1.0),
            );
            for ph in ["Active", "Terminating"] {
                ns_phase.push(
                    &[("namespace", ns), ("phase", ph)],
                    Value::Const(if ph == "Active" { 1.0 } else { 0.0 }),
                );
            }
        }
        let mut pvc_info = Family::new(
            "kube_persistentvolumeclaim_info",
            Kind::Gauge,
            "Information about persistent volume claim.",
        );
        let mut pvc_phase = Family::new(
            "kube_persistentvolumeclaim_status_phase",
            Kind::Gauge,
            "The phase the persistent volume claim is currently in.",
        );
        for (ns, claim, class, ph) in pvcs {
            let volume = if *ph == "Bound" {
                format!("pvc-{:016x}", self.seed(&[ns, claim]))
            } else {
                String::new()
            };
            pvc_info.push(
                &[
                    ("namespace", ns),
                    ("persistentvolumeclaim", claim),
                    ("storageclass", class),
                    ("volumename", &volume),
                ],
                Value::Const(1.0),
            );
            for p in ["Bound", "Lost", "Pending"] {
                pvc_phase.push(
                    &[
                        ("namespace", ns),
                        ("persistentvolumeclaim", claim),
                        ("phase", p),
                    ],
                    Value::Const(if p == *ph { 1.0 } else { 0.0 }),
                );
            }
        }
        let mut node_info = Family::new(
            "kube_node_info",
            Kind::Gauge,
            "Information about a cluster node.",
        );
        for n in &self.nodes {
            node_info.push(
                &[
                    ("node", &n.name),
                    ("internal_ip", &n.ip),
                    ("kubelet_version", "v1.30.2"),
                    ("os_image", "Ubuntu 24.04 LTS"),
                ],
                Value::Const(1.0),
            );
        }
        vec![
            info, phase, requests, ns_labels, ns_phase, pvc_info, pvc_phase, node_info,
        ]
    }

    fn apiserver(&self) -> Vec<Family> {
        let mut total = Family::new(
            "apiserver_request_total",
            Kind::Counter,
            "[STABLE] Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
        );
        let mut dur = Family::new(
            "apiserver_request_duration_seconds",
            Kind::Histogram,
            "[STABLE] Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
        );
        // Cluster 2 is the busier, slightly less healthy one.
        let load = if self.name == "cluster1" { 1.0 } else { 1.6 };
        for (verb, resource, rps) in API_TRAFFIC {
            let ok = if *verb == "CREATE" { "201" } else { "200" };
            let mut codes = vec![(ok, 0.97), ("500", 0.004 * load), ("429", 0.01)];
            if *verb == "GET" {
                codes.push(("404", 0.02));
            }
            for (code, share) in codes {
                let s = self.seed(&[verb, resource, code]);
                // Errors come in bursts: a larger swing.
                let swing = if code == ok { 0.5 } else { 0.95 };
                total.push(
                    &[
                        ("code", code),
                        ("component", "apiserver"),
                        ("resource", resource),
                        ("verb", verb),
                    ],
                    Value::counter(rps * load * share, swing, s, true),
                );
            }
            // WATCH requests are long-lived: their latency is that of the
            // watch set-up only here, to keep quantiles readable.
            let (fast_mean, slow_mean) = match *verb {
                "LIST" => (0.08, 1.2),
                "CREATE" | "UPDATE" | "PATCH" | "DELETE" => (0.015, 0.4),
                _ => (0.004, 0.15),
            };
            dur.push_histogram(
                &[
                    ("component", "apiserver"),
                    ("resource", resource),
                    ("verb", verb),
                ],
                DEFAULT_BUCKETS,
                (rps * load * 0.98, fast_mean),
                (rps * load * 0.02, slow_mean * load),
                self.seed(&[verb, resource, "latency"]),
            );
        }
        vec![total, dur]
    }

    fn scheduler(&self) -> Vec<Family> {
        let pending_pods = self.pods.iter().filter(|p| p.phase == "Pending").count() as f64;
        let mut pending = Family::new(
            "scheduler_pending_pods",
            Kind::Gauge,
            "[STABLE] Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods that the scheduler attempted to schedule and failed; 'gated' is the number of unschedulable pods that the scheduler never attempted to schedule because they are gated.",
        );
        pending.push(
            &[("queue", "active")],
            Value::gauge(0.4, 0.9, 0.5, self.seed(&["active"])),
        );
        pending.push(
            &[("queue", "backoff")],
            Value::gauge(0.2, 0.9, 0.3, self.seed(&["backoff"])),
        );
        pending.push(&[("queue", "gated")], Value::Const(0.0));
        pending.push(&[("queue", "unschedulable")], Value::Const(pending_pods));
        let mut attempts = Family::new(
            "scheduler_schedule_attempts_total",
            Kind::Counter,
            "[STABLE] Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem.",
        );
        for (result, rate) in [
            ("scheduled", 0.05),
            ("unschedulable", 0.003 + 0.01 * pending_pods),
            ("error", 0.0005),
        ] {
            attempts.push(
                &[("profile", "default-scheduler"), ("result", result)],
                Value::counter(rate, 0.9, self.seed(&["attempts", result]), true),
            );
        }
        let mut latency = Family::new(
            "scheduler_scheduling_attempt_duration_seconds",
            Kind::Histogram,
            "[STABLE] Scheduling attempt latency in seconds (scheduling algorithm + binding)",
        );
        latency.push_histogram(
            &[("profile", "default-scheduler"), ("result", "scheduled")],
            &[
                0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024,
            ],
            (0.048, 0.006),
            (0.002, 0.09),
            self.seed(&["latency"]),
        );
        vec![pending, attempts, latency]
    }
}

/// Both demo clusters.
pub fn clusters() -> Vec<Cluster> {
    (1..=CLUSTER_NAMES.len()).map(Cluster::new).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_integral_matches_numeric_integration() {
        let r = Rate::new(2.0, 0.9, 42);
        let (a, b) = (ANCHOR_S + 1000.0, ANCHOR_S + 4600.0);
        let steps = 36_000;
        let h = (b - a) / steps as f64;
        let numeric: f64 = (0..steps).map(|i| r.at(a + (i as f64 + 0.5) * h) * h).sum();
        let closed = r.integral(b) - r.integral(a);
        assert!(
            (numeric - closed).abs() / closed < 1e-6,
            "{numeric} vs {closed}"
        );
    }

    #[test]
    fn idle_cpu_is_monotonic_and_modes_sum_to_elapsed_time() {
        let c = Cluster::new(2);
        let ne = c
            .targets
            .iter()
            .find(|t| t.job == "node-exporter")
            .expect("node exporter");
        let cpu = &ne.families[0];
        let t0 = ANCHOR_S + 3.0e7;
        let cpu0: Vec<&Series> = cpu.series.iter().filter(|s| s.labels[0].1 == "0").collect();
        assert_eq!(cpu0.len(), 8);
        for dt in [15.0, 3600.0, 86400.0] {
            let sum0: f64 = cpu0.iter().map(|s| s.value.at(t0)).sum();
            let sum1: f64 = cpu0.iter().map(|s| s.value.at(t0 + dt)).sum();
            assert!(
                (sum1 - sum0 - dt).abs() < 1e-3 * dt,
                "modes advance by {} in {dt}s",
                sum1 - sum0
            );
            for s in &cpu0 {
                assert!(
                    s.value.at(t0 + dt) >= s.value.at(t0),
                    "{:?} decreased",
                    s.labels
                );
            }
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let c = Cluster::new(1);
        let api = c
            .targets
            .iter()
            .find(|t| t.job == "apiserver")
            .expect("apiserver");
        let t = ANCHOR_S + 5.0e6;
        let buckets: Vec<f64> = api.families[1]
            .series
            .iter()
            .take_while(|s| s.name.ends_with("_bucket"))
            .map(|s| s.value.at(t))
            .collect();
        assert_eq!(buckets.len(), DEFAULT_BUCKETS.len() + 1);
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
        let count = api.families[1].series[buckets.len() + 1].value.at(t);
        assert_eq!(buckets[buckets.len() - 1], count);
        assert!(count > 0.0);
    }

    #[test]
    fn clusters_differ_and_names_are_unique() {
        let cs = clusters();
        assert_eq!(cs[0].name, "cluster1");
        assert_eq!(cs[1].name, "cluster2");
        for c in &cs {
            let mut names: Vec<&str> = c.pods.iter().map(|p| p.name.as_str()).collect();
            let n = names.len();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), n, "duplicate pod names in {}", c.name);
            assert!(
                c.num_series() > 300,
                "{} has {} series",
                c.name,
                c.num_series()
            );
        }
        assert_ne!(cs[0].num_series(), cs[1].num_series());
    }
}
