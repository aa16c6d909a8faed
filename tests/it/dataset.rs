//! Generated Kubernetes-style data and the cross-cluster query set.
//!
//! [`Dataset`] fixes a time window (3 h at 30 s ending a minute before the
//! test starts, so it is inside every retention and the sidecar's range)
//! and writes OpenMetrics text for a list of clusters: cAdvisor container
//! memory and CPU, node-exporter filesystems and memory, kube-state-metrics
//! pods, namespaces and PVCs, and API-server request counters and latency
//! histograms. The values are deterministic functions of (series, time)
//! plus a hash-based jitter, with one counter reset, so every load of the
//! same dataset is identical. With `cluster_label` the `cluster` label is
//! written on every series (the reference Prometheus); without it the
//! cluster comes from the TSDB's external labels (strata).

use std::fmt::Write;

/// Seconds between samples.
pub const STEP: i64 = 30;
/// Hours of data.
pub const HOURS: i64 = 3;

pub struct Dataset {
    /// First and last sample time (Unix seconds).
    pub start: i64,
    pub end: i64,
    /// 13 s past the minute of `end`: the time the tests query at.
    pub qend: i64,
}

const NAMESPACES: &[&str] = &["default", "kube-system", "monitoring", "shop"];
const NODES: usize = 3;
const PODS_PER_NS: usize = 3;
const VERBS: &[&str] = &["GET", "LIST", "POST"];
const CODES: &[&str] = &["200", "201", "404", "500"];
const LE: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

fn jitter(a: u64, b: u64) -> f64 {
    // splitmix64 of (a, b) mapped to [0, 1).
    let mut z = a
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(b)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// One series: name, labels (without cluster), and its value function.
struct Series {
    name: String,
    labels: Vec<(String, String)>,
    kind: Kind,
    seed: u64,
}

enum Kind {
    /// base + amplitude * sin + jitter
    Gauge {
        base: f64,
        amp: f64,
    },
    Const(f64),
    /// Cumulative counter with a per-step increase around `rate * STEP`;
    /// `reset_at` (step index) restarts it from 0.
    Counter {
        rate: f64,
        reset_at: Option<usize>,
    },
    /// Cumulative histogram bucket: fraction `frac` of `rate` observations.
    /// `group` seeds the per-step request count shared by all buckets of
    /// one histogram, so buckets stay cumulative in `le`.
    Bucket {
        rate: f64,
        frac: f64,
        group: u64,
    },
    /// `_sum` of a histogram: observations times a mean latency.
    HistSum {
        rate: f64,
        mean: f64,
        group: u64,
    },
}

fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Dataset {
    /// Samples lie at 7 s and 37 s past each minute, ending a minute ago.
    ///
    /// Why off the minute: Prometheus 2.42 (the oracle) selects range and
    /// lookback windows closed on the left, `[t - r, t]`; strata follows
    /// Prometheus 3.x, left-open `(t - r, t]`. They differ only for a
    /// sample (or a subquery step, which falls on whole minutes) exactly at
    /// `t - r`. The tests evaluate at 13 s past a minute (and ranges and
    /// offsets are whole minutes), so nothing is ever on a window boundary
    /// and both versions must agree.
    pub fn new() -> Dataset {
        let minute = (super::harness::now_s() / 60) * 60 - 60;
        let end = minute + 7;
        Dataset {
            start: end - HOURS * 3600,
            end,
            qend: minute + 13,
        }
    }

    fn series(cluster_idx: usize) -> Vec<Series> {
        let mut out = Vec::new();
        let c = cluster_idx as f64 + 1.0;
        let mut seed = 0u64;
        let mut push = |name: &str, labels: Vec<(String, String)>, kind: Kind| {
            seed += 1;
            out.push(Series {
                name: name.to_string(),
                labels,
                kind,
                seed: seed + 1000 * cluster_idx as u64,
            });
        };
        // The second cluster has one more namespace: per-cluster counts differ.
        let namespaces: Vec<&str> = if cluster_idx % 2 == 1 {
            NAMESPACES.iter().copied().chain(["batch"]).collect()
        } else {
            NAMESPACES.to_vec()
        };
        for n in 0..NODES {
            let inst = format!("10.{cluster_idx}.0.{n}:9100");
            let node = format!("node-{n}");
            let base = l(&[
                ("instance", &inst),
                ("job", "node-exporter"),
                ("node", &node),
            ]);
            let total = 16e9 * c;
            push(
                "node_memory_MemTotal_bytes",
                base.clone(),
                Kind::Const(total),
            );
            push(
                "node_memory_MemAvailable_bytes",
                base.clone(),
                Kind::Gauge {
                    base: total * 0.4,
                    amp: total * 0.1,
                },
            );
            for (dev, mnt, fs) in [
                ("/dev/sda1", "/", "ext4"),
                ("/dev/sdb1", "/var/lib/kubelet", "xfs"),
                ("tmpfs", "/run", "tmpfs"),
            ] {
                let mut lb = base.clone();
                lb.extend(l(&[("device", dev), ("fstype", fs), ("mountpoint", mnt)]));
                let size = 100e9 * c * (n as f64 + 1.0);
                push("node_filesystem_size_bytes", lb.clone(), Kind::Const(size));
                push(
                    "node_filesystem_avail_bytes",
                    lb.clone(),
                    Kind::Gauge {
                        base: size * 0.5,
                        amp: size * 0.2,
                    },
                );
                push(
                    "node_filesystem_free_bytes",
                    lb,
                    Kind::Gauge {
                        base: size * 0.55,
                        amp: size * 0.2,
                    },
                );
            }
        }
        let mut pod_no = 0usize;
        for ns in &namespaces {
            push(
                "kube_namespace_status_phase",
                l(&[
                    ("job", "kube-state-metrics"),
                    ("namespace", ns),
                    ("phase", "Active"),
                ]),
                Kind::Const(1.0),
            );
            push(
                "kube_namespace_status_phase",
                l(&[
                    ("job", "kube-state-metrics"),
                    ("namespace", ns),
                    ("phase", "Terminating"),
                ]),
                Kind::Const(0.0),
            );
            if *ns != "kube-system" {
                push(
                    "kube_persistentvolumeclaim_info",
                    l(&[
                        ("job", "kube-state-metrics"),
                        ("namespace", ns),
                        ("persistentvolumeclaim", &format!("data-{ns}")),
                        (
                            "storageclass",
                            if pod_no.is_multiple_of(2) {
                                "standard"
                            } else {
                                "fast"
                            },
                        ),
                    ]),
                    Kind::Const(1.0),
                );
            }
            for p in 0..PODS_PER_NS {
                let pod = format!("{ns}-{p}");
                let node = format!("node-{}", pod_no % NODES);
                pod_no += 1;
                push(
                    "kube_pod_info",
                    l(&[
                        ("job", "kube-state-metrics"),
                        ("namespace", ns),
                        ("node", &node),
                        ("pod", &pod),
                    ]),
                    Kind::Const(1.0),
                );
                let lb = l(&[
                    ("container", "app"),
                    (
                        "instance",
                        &format!("10.{cluster_idx}.0.{}:10250", pod_no % NODES),
                    ),
                    ("job", "kubelet"),
                    ("namespace", ns),
                    ("pod", &pod),
                ]);
                push(
                    "container_memory_working_set_bytes",
                    lb.clone(),
                    Kind::Gauge {
                        base: 2e8 * (p as f64 + 1.0) * c,
                        amp: 5e7,
                    },
                );
                push(
                    "container_cpu_usage_seconds_total",
                    lb,
                    Kind::Counter {
                        rate: 0.05 * (p as f64 + 1.0) * c,
                        // One container restarts half-way: a counter reset.
                        reset_at: (pod_no == 2).then_some(180),
                    },
                );
            }
        }
        for verb in VERBS {
            for code in CODES {
                if *verb != "POST" && *code == "201" {
                    continue;
                }
                let rate = match *code {
                    "200" => 50.0,
                    "201" => 5.0,
                    "404" => 1.0,
                    _ => 0.2,
                } * c;
                push(
                    "apiserver_request_total",
                    l(&[("code", code), ("job", "apiserver"), ("verb", verb)]),
                    Kind::Counter {
                        rate,
                        reset_at: None,
                    },
                );
            }
            let rate = 20.0 * c;
            let group = hash(verb) ^ cluster_idx as u64;
            let mean = if *verb == "LIST" { 0.3 } else { 0.04 };
            for le in LE.iter().map(|x| x.to_string()).chain(["+Inf".to_string()]) {
                let x: f64 = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(0.0)
                };
                // Exponential latency distribution: CDF 1 - e^(-x/mean).
                let frac = if x.is_infinite() {
                    1.0
                } else {
                    1.0 - (-x / mean).exp()
                };
                push(
                    "apiserver_request_duration_seconds_bucket",
                    l(&[("job", "apiserver"), ("le", &le), ("verb", verb)]),
                    Kind::Bucket { rate, frac, group },
                );
            }
            push(
                "apiserver_request_duration_seconds_count",
                l(&[("job", "apiserver"), ("verb", verb)]),
                Kind::Bucket {
                    rate,
                    frac: 1.0,
                    group,
                },
            );
            push(
                "apiserver_request_duration_seconds_sum",
                l(&[("job", "apiserver"), ("verb", verb)]),
                Kind::HistSum { rate, mean, group },
            );
        }
        out
    }

    pub fn cluster_name(idx: usize) -> String {
        format!("cluster{}", idx + 1)
    }

    /// OpenMetrics text (seconds timestamps, `# EOF`) of the given
    /// clusters, samples in time order.
    pub fn openmetrics(&self, clusters: &[usize], cluster_label: bool) -> String {
        let steps = ((self.end - self.start) / STEP) as usize;
        let mut all: Vec<(String, Series)> = Vec::new();
        for &ci in clusters {
            let cname = Self::cluster_name(ci);
            for mut s in Self::series(ci) {
                // The jitter depends on the series identity WITHOUT the
                // cluster label, so both loads get identical values.
                let ident: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                s.seed ^= hash(&format!("{}{}", s.name, ident.join(",")));
                let mut labels = s.labels.clone();
                if cluster_label {
                    labels.push(("cluster".into(), cname.clone()));
                    labels.sort();
                }
                let body: Vec<String> =
                    labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
                all.push((format!("{}{{{}}}", s.name, body.join(",")), s));
            }
        }
        // Running state of cumulative series.
        let mut acc = vec![0.0f64; all.len()];
        let mut out = String::with_capacity(all.len() * (steps + 1) * 80);
        for i in 0..=steps {
            let t = self.start + i as i64 * STEP;
            let phase = (t as f64) / 3600.0 * std::f64::consts::PI;
            for (j, (head, s)) in all.iter().enumerate() {
                let jit = jitter(s.seed, i as u64);
                let v = match s.kind {
                    Kind::Const(v) => v,
                    Kind::Gauge { base, amp } => {
                        (base + amp * (phase + s.seed as f64).sin() + amp * 0.1 * jit).round()
                    }
                    Kind::Counter { rate, reset_at } => {
                        if reset_at == Some(i) {
                            acc[j] = 0.0;
                        }
                        if i > 0 {
                            acc[j] += rate * STEP as f64 * (0.5 + jit);
                        }
                        // Whole thousandths: identical text in both loads.
                        (acc[j] * 1000.0).round() / 1000.0
                    }
                    Kind::Bucket { rate, frac, group } => {
                        if i > 0 {
                            let n = (rate * STEP as f64 * (0.8 + 0.4 * jitter(group, i as u64)))
                                .round();
                            acc[j] += (n * frac).floor();
                        }
                        acc[j]
                    }
                    Kind::HistSum { rate, mean, group } => {
                        if i > 0 {
                            let n = (rate * STEP as f64 * (0.8 + 0.4 * jitter(group, i as u64)))
                                .round();
                            acc[j] += n * mean * (0.9 + 0.2 * jit);
                        }
                        (acc[j] * 1000.0).round() / 1000.0
                    }
                };
                let _ = writeln!(out, "{head} {v} {t}");
            }
        }
        out.push_str("# EOF\n");
        out
    }
}

/// The cross-cluster query set: the seed documents' dashboards (memory,
/// disk and CPU by cluster, pods, namespaces and PVCs per cluster,
/// API-server latency quantiles and error ratios) plus the PromQL features
/// Grafana users lean on. `at` is a Unix time inside the data for `@`.
pub fn queries(at: i64) -> Vec<String> {
    let mut q: Vec<String> = [
        // Memory
        "sum by (cluster) (container_memory_working_set_bytes)",
        "sum by (cluster) (node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes)",
        "1 - sum by (cluster) (node_memory_MemAvailable_bytes) / sum by (cluster) (node_memory_MemTotal_bytes)",
        "avg by (cluster) (node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)",
        "topk(3, sum by (cluster, pod) (container_memory_working_set_bytes))",
        "quantile by (cluster) (0.9, container_memory_working_set_bytes)",
        "stddev by (cluster) (container_memory_working_set_bytes)",
        "avg_over_time(container_memory_working_set_bytes[15m])",
        // Disk
        "100 * (1 - node_filesystem_avail_bytes{fstype!=\"tmpfs\"} / node_filesystem_size_bytes{fstype!=\"tmpfs\"})",
        "sum by (cluster) (node_filesystem_size_bytes - node_filesystem_free_bytes)",
        "predict_linear(node_filesystem_avail_bytes{mountpoint=\"/\"}[1h], 3600)",
        "delta(node_filesystem_avail_bytes[30m])",
        // CPU
        "sum by (cluster) (rate(container_cpu_usage_seconds_total[5m]))",
        "sum by (cluster, namespace) (rate(container_cpu_usage_seconds_total[5m]))",
        "bottomk(2, rate(container_cpu_usage_seconds_total[5m]))",
        "resets(container_cpu_usage_seconds_total[1h])",
        "sum(rate(container_cpu_usage_seconds_total{cluster=\"cluster2\"}[10m]))",
        "max_over_time(sum by (cluster) (rate(container_cpu_usage_seconds_total[5m]))[30m:1m])",
        // Pods, namespaces, PVCs
        "count by (cluster) (kube_pod_info)",
        "count by (cluster, namespace) (kube_pod_info)",
        "count by (cluster) (kube_namespace_status_phase{phase=\"Active\"} == 1)",
        "count_values(\"phase_value\", kube_namespace_status_phase)",
        "count by (cluster) (kube_persistentvolumeclaim_info)",
        "sum by (cluster, storageclass) (kube_persistentvolumeclaim_info)",
        "count(count by (cluster) (kube_pod_info))",
        "changes(kube_pod_info[1h])",
        // API server
        "histogram_quantile(0.99, sum by (cluster, le) (rate(apiserver_request_duration_seconds_bucket[5m])))",
        "histogram_quantile(0.5, sum by (cluster, verb, le) (rate(apiserver_request_duration_seconds_bucket[5m])))",
        "sum by (cluster) (rate(apiserver_request_total{code=~\"5..\"}[5m])) / sum by (cluster) (rate(apiserver_request_total[5m]))",
        "sum by (cluster, verb) (irate(apiserver_request_total[5m]))",
        "sum by (cluster, code) (increase(apiserver_request_total[1h]))",
        "sum by (cluster) (rate(apiserver_request_duration_seconds_sum[5m])) / sum by (cluster) (rate(apiserver_request_duration_seconds_count[5m]))",
        "sum without (instance, job) (rate(apiserver_request_total[5m]))",
        // Modifiers, joins, functions
        "sum by (cluster) (container_memory_working_set_bytes offset 30m)",
        "apiserver_request_total{verb=\"GET\"} - apiserver_request_total{verb=\"GET\"} offset 10m",
        "sum by (cluster) (container_memory_working_set_bytes) / on (cluster) group_left sum by (cluster) (node_memory_MemTotal_bytes)",
        "container_memory_working_set_bytes * on (cluster, namespace, pod) group_left (node) kube_pod_info",
        "kube_pod_info unless on (cluster, pod) container_memory_working_set_bytes{namespace=\"shop\"}",
        "absent(nonexistent_metric{cluster=\"cluster1\"})",
        "absent(kube_pod_info{cluster=\"cluster1\"})",
        "label_replace(sum by (cluster) (kube_pod_info), \"site\", \"$1\", \"cluster\", \"cluster(.*)\")",
        "scalar(sum(kube_pod_info)) * 2",
        "{__name__=~\"node_memory_.*\", cluster=\"cluster1\"}",
        "sort_desc(sum by (cluster, namespace) (container_memory_working_set_bytes))",
        "sum by (cluster) (container_memory_working_set_bytes @ end())",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    q.push(format!(
        "sum by (cluster) (container_memory_working_set_bytes @ {at})"
    ));
    q.push(format!(
        "sum by (cluster) (increase(container_cpu_usage_seconds_total[10m] @ {at}))"
    ));
    q
}
