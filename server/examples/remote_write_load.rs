//! Remote-write 1.0 load generator for `bench/remote_write.sh`: the same
//! load against any receiver (`strata tsdb`, Prometheus, VictoriaMetrics).
//!
//! **Series.** `--series` label sets shaped like what a Kubernetes
//! Prometheus ships: per node, node-exporter families (CPU modes per core,
//! memory, filesystems, network and disk devices, load, uname) and cAdvisor
//! container families per pod with cAdvisor's long label sets (`id`,
//! `image`, `name`, `container`, `pod`, `namespace`, ...). Counters grow,
//! gauges wander; values come from a fixed-seed generator so every server
//! receives the same bytes.
//!
//! **Sending.** Series are sharded over `--senders` the way Prometheus'
//! queue manager shards them (a series always goes to the same sender, so
//! its samples arrive in order). Each sender walks `--rounds` scrapes
//! (`--interval-ms` apart, the last ending about now, a per-node offset
//! within the interval) and cuts its stream into requests of `--batch`
//! samples, one sample per `TimeSeries` as Prometheus sends them. Every body
//! is protobuf-encoded and snappy-compressed **before** the timed phase; the
//! timed phase only sends, on one keep-alive connection per sender, each
//! sender waiting for its answer before the next request (Prometheus' shard
//! behaviour).
//!
//! **Counting.** Only samples of 2xx-acknowledged requests count as
//! accepted. With `--pid`, the server's CPU time (utime+stime from
//! `/proc/PID/stat`) is read just before and after the timed phase, and its
//! peak RSS (`VmHWM`) at the end. The load generator's own CPU time is
//! printed too, to show that it is not the bottleneck.
//!
//! Output: one `key=value` line, parsed by the bench script.
//!
//! usage: remote_write_load URL [--series N] [--rounds N] [--batch N]
//! [--senders N] [--interval-ms MS] [--pid PID]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use prost::Message;
use strata_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    match args.iter().position(|a| a == name) {
        None => default,
        Some(i) => match args.get(i + 1).map(|v| v.parse()) {
            Some(Ok(v)) => v,
            _ => {
                eprintln!("{name} needs a valid value");
                std::process::exit(2);
            }
        },
    }
}

/// SplitMix64: a tiny fixed-seed generator, so the load is reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone, Copy)]
enum Kind {
    /// Never changes (`_info`, sizes).
    Const,
    /// Grows by up to `rate` per second of interval.
    Counter(f64),
    /// Wanders around its start by up to `amp` per step.
    Gauge(f64),
}

struct Series {
    labels: Vec<Label>,
    kind: Kind,
    value: f64,
    /// Scrape offset of its target within the interval (ms).
    offset: i64,
}

fn series_set(n: usize, interval_ms: i64) -> Vec<Series> {
    const MODES: [&str; 8] = [
        "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
    ];
    const MEM: [&str; 24] = [
        "Active",
        "Active_anon",
        "Active_file",
        "AnonPages",
        "Buffers",
        "Cached",
        "CommitLimit",
        "Committed_AS",
        "Dirty",
        "Inactive",
        "Inactive_anon",
        "Inactive_file",
        "Mapped",
        "MemAvailable",
        "MemFree",
        "MemTotal",
        "PageTables",
        "SReclaimable",
        "SUnreclaim",
        "Shmem",
        "Slab",
        "SwapCached",
        "SwapFree",
        "SwapTotal",
    ];
    const MOUNTS: [(&str, &str, &str); 4] = [
        ("/dev/nvme0n1p1", "/", "ext4"),
        ("/dev/nvme1n1", "/var/lib/kubelet", "xfs"),
        ("tmpfs", "/run", "tmpfs"),
        ("shm", "/dev/shm", "tmpfs"),
    ];
    const NETDEVS: [&str; 4] = ["eth0", "cni0", "flannel.1", "lo"];
    const DISKS: [&str; 3] = ["nvme0n1", "nvme1n1", "dm-0"];
    const NAMESPACES: [&str; 5] = ["default", "kube-system", "monitoring", "payments", "shop"];
    const CONTAINER_METRICS: [(&str, Kind); 10] = [
        ("container_cpu_usage_seconds_total", Kind::Counter(0.2)),
        (
            "container_cpu_cfs_throttled_seconds_total",
            Kind::Counter(0.01),
        ),
        ("container_memory_working_set_bytes", Kind::Gauge(1e6)),
        ("container_memory_rss", Kind::Gauge(1e6)),
        ("container_memory_cache", Kind::Gauge(5e5)),
        ("container_network_receive_bytes_total", Kind::Counter(2e4)),
        ("container_network_transmit_bytes_total", Kind::Counter(1e4)),
        ("container_fs_usage_bytes", Kind::Gauge(1e4)),
        ("container_fs_reads_bytes_total", Kind::Counter(1e3)),
        ("container_fs_writes_bytes_total", Kind::Counter(3e3)),
    ];
    let mut out = Vec::with_capacity(n);
    let mut rng = Rng(42);
    let mut node = 0usize;
    while out.len() < n {
        let instance = format!("10.0.{}.{}:9100", node / 250, node % 250 + 1);
        let node_name = format!("ip-10-0-{}-{}.ec2.internal", node / 250, node % 250 + 1);
        let offset = (node as i64 * 7919) % interval_ms.max(1);
        let mut push = |name: &str, extra: &[(&str, &str)], kind: Kind, rng: &mut Rng| {
            if out.len() >= n {
                return;
            }
            let mut labels: Vec<(String, String)> = vec![
                ("__name__".into(), name.into()),
                ("cluster".into(), "prod-eu-1".into()),
            ];
            labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            labels.sort();
            let value = match kind {
                Kind::Const => (rng.next() % 1_000_000) as f64 * 1024.0,
                Kind::Counter(_) => (rng.next() % 100_000) as f64,
                Kind::Gauge(amp) => amp * 1000.0 * (1.0 + rng.unit()),
            };
            out.push(Series {
                labels: labels
                    .into_iter()
                    .map(|(name, value)| Label { name, value })
                    .collect(),
                kind,
                value,
                offset,
            });
        };
        let ne = [
            ("instance", instance.as_str()),
            ("job", "node-exporter"),
            ("node", node_name.as_str()),
        ];
        for cpu in 0..8 {
            let c = cpu.to_string();
            for m in MODES {
                let l = [ne[0], ne[1], ne[2], ("cpu", c.as_str()), ("mode", m)];
                push("node_cpu_seconds_total", &l, Kind::Counter(1.0), &mut rng);
            }
        }
        for m in MEM {
            let name = format!("node_memory_{m}_bytes");
            push(&name, &ne, Kind::Gauge(4096.0), &mut rng);
        }
        for (dev, mnt, fs) in MOUNTS {
            let l = [
                ne[0],
                ne[1],
                ne[2],
                ("device", dev),
                ("fstype", fs),
                ("mountpoint", mnt),
            ];
            push("node_filesystem_size_bytes", &l, Kind::Const, &mut rng);
            push(
                "node_filesystem_avail_bytes",
                &l,
                Kind::Gauge(8192.0),
                &mut rng,
            );
            push(
                "node_filesystem_free_bytes",
                &l,
                Kind::Gauge(8192.0),
                &mut rng,
            );
            push("node_filesystem_files", &l, Kind::Const, &mut rng);
            push(
                "node_filesystem_files_free",
                &l,
                Kind::Gauge(10.0),
                &mut rng,
            );
        }
        for dev in NETDEVS {
            let l = [ne[0], ne[1], ne[2], ("device", dev)];
            for dir in ["receive", "transmit"] {
                for (what, rate) in [
                    ("bytes", 1e5),
                    ("packets", 100.0),
                    ("errs", 0.01),
                    ("drop", 0.1),
                ] {
                    let name = format!("node_network_{dir}_{what}_total");
                    push(&name, &l, Kind::Counter(rate), &mut rng);
                }
            }
        }
        for dev in DISKS {
            let l = [ne[0], ne[1], ne[2], ("device", dev)];
            for (name, rate) in [
                ("node_disk_reads_completed_total", 10.0),
                ("node_disk_writes_completed_total", 40.0),
                ("node_disk_read_bytes_total", 4e4),
                ("node_disk_written_bytes_total", 2e5),
                ("node_disk_io_time_seconds_total", 0.05),
                ("node_disk_io_time_weighted_seconds_total", 0.1),
            ] {
                push(name, &l, Kind::Counter(rate), &mut rng);
            }
        }
        for (name, kind) in [
            ("node_load1", Kind::Gauge(0.1)),
            ("node_load5", Kind::Gauge(0.05)),
            ("node_load15", Kind::Gauge(0.02)),
            ("node_context_switches_total", Kind::Counter(5e3)),
            ("node_intr_total", Kind::Counter(3e3)),
            ("node_procs_running", Kind::Gauge(1.0)),
            ("node_boot_time_seconds", Kind::Const),
        ] {
            push(name, &ne, kind, &mut rng);
        }
        let uname = [
            ne[0],
            ne[1],
            ne[2],
            ("machine", "x86_64"),
            ("release", "6.1.0-18-amd64"),
            ("sysname", "Linux"),
        ];
        push("node_uname_info", &uname, Kind::Const, &mut rng);
        // cAdvisor, scraped from the kubelet of the same node.
        let kubelet = format!("10.0.{}.{}:10250", node / 250, node % 250 + 1);
        for p in 0..12 {
            let ns = NAMESPACES[(node + p) % NAMESPACES.len()];
            let pod = format!("{ns}-app-{:x}-{p}", 0x5f3a_9c00u32 + node as u32);
            let id = format!(
                "/kubepods/burstable/pod{:08x}-{node:04}-{p:04}",
                0xabcdu32 + p as u32
            );
            let image = format!("registry.example.com/{ns}/app:v1.{}.{}", p % 4, node % 10);
            let name = format!("k8s_app_{pod}_{ns}_{node:08x}");
            let l = [
                ("container", "app"),
                ("id", id.as_str()),
                ("image", image.as_str()),
                ("instance", kubelet.as_str()),
                ("job", "kubelet"),
                ("metrics_path", "/metrics/cadvisor"),
                ("name", name.as_str()),
                ("namespace", ns),
                ("node", node_name.as_str()),
                ("pod", pod.as_str()),
            ];
            for (metric, kind) in CONTAINER_METRICS {
                push(metric, &l, kind, &mut rng);
            }
        }
        node += 1;
    }
    out
}

/// One pre-encoded request.
struct Batch {
    body: Bytes,
    samples: u64,
}

/// Builds every sender's requests: sender `k` owns series `i` with
/// `i % senders == k`, and cuts its samples, round after round, into
/// requests of `batch` samples.
fn encode(
    series: &mut [Series],
    senders: usize,
    rounds: usize,
    batch: usize,
    start_ms: i64,
    interval_ms: i64,
) -> Vec<Vec<Batch>> {
    let mut rng = Rng(7);
    let mut out: Vec<Vec<Batch>> = (0..senders).map(|_| Vec::new()).collect();
    let mut pending: Vec<WriteRequest> = (0..senders).map(|_| WriteRequest::default()).collect();
    let mut encoder = snap::raw::Encoder::new();
    let mut flush = |k: usize, req: &mut WriteRequest, out: &mut Vec<Vec<Batch>>| {
        if req.timeseries.is_empty() {
            return;
        }
        let raw = req.encode_to_vec();
        let body = encoder.compress_vec(&raw).expect("snappy compress");
        out[k].push(Batch {
            body: Bytes::from(body),
            samples: req.timeseries.len() as u64,
        });
        req.timeseries.clear();
    };
    for r in 0..rounds {
        for (i, s) in series.iter_mut().enumerate() {
            let k = i % senders;
            let step = interval_ms as f64 / 1000.0;
            match s.kind {
                Kind::Const => {}
                Kind::Counter(rate) => s.value += (rate * step * rng.unit() * 2.0).round(),
                Kind::Gauge(amp) => s.value = (s.value + amp * (rng.unit() - 0.5)).abs().round(),
            }
            pending[k].timeseries.push(TimeSeries {
                labels: s.labels.clone(),
                samples: vec![Sample {
                    value: s.value,
                    timestamp: start_ms + r as i64 * interval_ms + s.offset,
                }],
                ..Default::default()
            });
            if pending[k].timeseries.len() >= batch {
                flush(k, &mut pending[k], &mut out);
            }
        }
    }
    for (k, req) in pending.iter_mut().enumerate() {
        flush(k, req, &mut out);
    }
    out
}

/// Server CPU seconds (utime + stime) from /proc/PID/stat.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the parenthesised command name, which may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // utime and stime are fields 14 and 15 of stat(5): indexes 11 and 12 here.
    // The kernel reports these in USER_HZ ticks, 100 per second on every
    // Linux architecture Debian ships (sysconf would need libc for nothing).
    (ticks(11) + ticks(12)) / 100.0
}

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn self_cpu_secs() -> f64 {
    cpu_secs(std::process::id())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(url) = args.get(1).filter(|a| !a.starts_with("--")).cloned() else {
        eprintln!("usage: remote_write_load URL [--series N] [--rounds N] [--batch N] [--senders N] [--interval-ms MS] [--pid PID]");
        std::process::exit(2);
    };
    let n: usize = arg(&args, "--series", 20_000);
    let rounds: usize = arg(&args, "--rounds", 60);
    let batch: usize = arg(&args, "--batch", 1000);
    let senders: usize = arg(&args, "--senders", 8);
    let interval_ms: i64 = arg(&args, "--interval-ms", 15_000);
    let pid: u32 = arg(&args, "--pid", 0);
    if n == 0 || rounds == 0 || batch == 0 || senders == 0 || interval_ms <= 0 {
        eprintln!("--series, --rounds, --batch, --senders and --interval-ms must be positive");
        std::process::exit(2);
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    // The last round's scrape starts one interval before now.
    let start_ms = (now_ms - rounds as i64 * interval_ms) / 1000 * 1000;

    let t0 = Instant::now();
    let mut series = series_set(n, interval_ms);
    let batches = encode(&mut series, senders, rounds, batch, start_ms, interval_ms);
    let min_ts = start_ms;
    let max_ts = start_ms + (rounds as i64 - 1) * interval_ms + interval_ms - 1;
    let body_bytes: usize = batches.iter().flatten().map(|b| b.body.len()).sum();
    let requests: usize = batches.iter().map(Vec::len).sum();
    eprintln!(
        "encoded {requests} requests, {} samples, {} MiB compressed, in {:.1}s",
        n * rounds,
        body_bytes >> 20,
        t0.elapsed().as_secs_f64()
    );
    drop(series);

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(senders)
        .timeout(Duration::from_secs(120))
        .build()
        .expect("http client");
    let acked = Arc::new(AtomicU64::new(0));
    let failed_samples = Arc::new(AtomicU64::new(0));
    let failed_requests = Arc::new(AtomicU64::new(0));
    let first_error: Arc<parking_lot::Mutex<Option<String>>> = Arc::default();

    let cpu0 = if pid > 0 { cpu_secs(pid) } else { f64::NAN };
    let self0 = self_cpu_secs();
    let t = Instant::now();
    let mut tasks = Vec::with_capacity(senders);
    for list in batches {
        let (client, url) = (client.clone(), url.clone());
        let (acked, failed_samples, failed_requests, first_error) = (
            acked.clone(),
            failed_samples.clone(),
            failed_requests.clone(),
            first_error.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for b in list {
                let res = client
                    .post(&url)
                    .header("Content-Encoding", "snappy")
                    .header("Content-Type", "application/x-protobuf")
                    .header("User-Agent", "strata-remote-write-load/0.1")
                    .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                    .body(b.body)
                    .send()
                    .await;
                let err = match res {
                    Ok(r) if r.status().is_success() => {
                        // Drain the (empty) body so the connection is reused.
                        let _ = r.bytes().await;
                        acked.fetch_add(b.samples, Ordering::Relaxed);
                        continue;
                    }
                    Ok(r) => {
                        let code = r.status();
                        format!("{code}: {}", r.text().await.unwrap_or_default().trim())
                    }
                    Err(e) => e.to_string(),
                };
                failed_requests.fetch_add(1, Ordering::Relaxed);
                failed_samples.fetch_add(b.samples, Ordering::Relaxed);
                first_error.lock().get_or_insert(err);
            }
        }));
    }
    for task in tasks {
        task.await.expect("sender task");
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = if pid > 0 {
        cpu_secs(pid) - cpu0
    } else {
        f64::NAN
    };
    let self_cpu = self_cpu_secs() - self0;
    let acked = acked.load(Ordering::Relaxed);
    let hwm = if pid > 0 { status_kb(pid, "VmHWM:") } else { 0 };
    let err = first_error
        .lock()
        .clone()
        .unwrap_or_else(|| "none".into())
        .replace(char::is_whitespace, " ");
    println!(
        "samples_sent={} samples_acked={acked} requests={requests} failed_requests={} failed_samples={} secs={secs:.3} samples_per_s={:.0} server_cpu_s={cpu:.2} cpu_s_per_M={:.3} server_hwm_kb={hwm} loadgen_cpu_s={self_cpu:.2} min_ts={min_ts} max_ts={max_ts} first_error={err}",
        n * rounds,
        failed_requests.load(Ordering::Relaxed),
        failed_samples.load(Ordering::Relaxed),
        acked as f64 / secs,
        cpu / (acked as f64 / 1e6),
    );
}
