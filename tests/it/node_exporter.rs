//! Issue 4's acceptance check with real processes only: a real
//! `prometheus-node-exporter` (Debian) on a free port, a real Prometheus
//! 2.42 scraping it and remote-writing into `strata tsdb`, and the same
//! `strata tsdb` scraping the same exporter itself.
//!
//! The two sources are told apart by the job name: Prometheus scrapes with
//! `job="via_prometheus"`, strata with `job="direct"`. Everything else of a
//! label set comes from the exporter and the scrape (`instance`, the
//! exporter's own labels), so for every metric name the label sets of both
//! jobs must be the same once the job label is dropped; this covers the
//! synthetic series (`up`, `scrape_*`) as well. Stable gauges must also
//! agree in value: `node_uname_info`, `node_boot_time_seconds`,
//! `node_memory_MemTotal_bytes` exactly, and `node_time_seconds` minus its
//! own sample timestamp (how late the exporter's clock reading was taken)
//! within a second.
//!
//! The exporter runs a fixed collector set (`--collector.disable-defaults`
//! plus cpu, loadavg, meminfo, stat, time, uname) without its Go/process
//! metrics, so no series appears or vanishes between scrapes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{free_port, now_f, Api, Proc, Prometheus, StrataTsdb, Work};

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
/// How long both sources may take to hold the same series.
const CONVERGE: Duration = Duration::from_secs(90);

/// metric name -> label sets (without `__name__` and `job`) of one job.
type SeriesByMetric = BTreeMap<String, BTreeSet<Vec<(String, String)>>>;

fn series_of_job(api: &Api, job: &str, start: f64, end: f64) -> SeriesByMetric {
    let (status, body) = api.get(
        "/api/v1/series",
        &[
            ("match[]", format!("{{job=\"{job}\"}}")),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
        ],
    );
    assert_eq!(status, 200, "series API: {body}");
    let mut out = SeriesByMetric::new();
    for s in body["data"].as_array().into_iter().flatten() {
        let Some(obj) = s.as_object() else { continue };
        let name = obj
            .get("__name__")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let labels: Vec<(String, String)> = obj
            .iter()
            .filter(|(k, _)| *k != "__name__" && *k != "job")
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        out.entry(name).or_default().insert(labels);
    }
    out
}

/// Human-readable differences between the two sources' series.
fn diff(direct: &SeriesByMetric, via: &SeriesByMetric) -> Vec<String> {
    let names: BTreeSet<&String> = direct.keys().chain(via.keys()).collect();
    let mut out = Vec::new();
    for n in names {
        let empty = BTreeSet::new();
        let d = direct.get(n).unwrap_or(&empty);
        let v = via.get(n).unwrap_or(&empty);
        for only in d.difference(v) {
            out.push(format!("{n}{only:?} only scraped by strata"));
        }
        for only in v.difference(d) {
            out.push(format!("{n}{only:?} only remote-written by Prometheus"));
        }
    }
    out
}

/// `query` evaluated at `t`, as (labels without job -> value) for one job.
fn values(api: &Api, query: &str, t: f64) -> BTreeMap<String, f64> {
    let (status, body) = api.instant(query, t, &[]);
    assert_eq!(status, 200, "{query}: {body}");
    let mut out = BTreeMap::new();
    for r in body["data"]["result"].as_array().into_iter().flatten() {
        let mut m = r["metric"].as_object().cloned().unwrap_or_default();
        m.remove("job");
        let v: f64 = r["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(f64::NAN);
        out.insert(Value::Object(m).to_string(), v);
    }
    out
}

#[test]
fn prometheus_remote_write_and_strata_scrape_of_node_exporter_agree() {
    assert!(
        std::path::Path::new(NODE_EXPORTER).exists(),
        "{NODE_EXPORTER} missing: apt-get install prometheus-node-exporter (scripts/test.sh does)"
    );
    let work = Work::new();
    let exporter_port = free_port();
    let exporter_dir = work.sub("node-exporter");
    let mut exporter = Proc::spawn(
        "node-exporter",
        NODE_EXPORTER,
        [
            format!("--web.listen-address=127.0.0.1:{exporter_port}"),
            "--web.disable-exporter-metrics".into(),
            "--collector.disable-defaults".into(),
            "--collector.cpu".into(),
            "--collector.loadavg".into(),
            "--collector.meminfo".into(),
            "--collector.stat".into(),
            "--collector.time".into(),
            "--collector.uname".into(),
        ]
        .to_vec(),
        exporter_dir.join("node-exporter.log"),
    );
    let exporter_api = Api::new(format!("http://127.0.0.1:{exporter_port}"));
    exporter.wait_until("/metrics", || exporter_api.status("/metrics") == Some(200));
    let target = format!("127.0.0.1:{exporter_port}");

    let strata = StrataTsdb::start(
        "strata-tsdb",
        &work.sub("strata"),
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: direct\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    );
    let prom = Prometheus::start(
        "prometheus",
        &work.sub("prometheus"),
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: via_prometheus\n    static_configs:\n      - targets: ['{target}']\nremote_write:\n  - url: http://127.0.0.1:{}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n      max_backoff: 1s\n",
            strata.port
        ),
    );
    let start = now_f();

    // Poll until both jobs hold the same series (Prometheus ships from its
    // WAL a few seconds behind), then compare once more for the record.
    let deadline = Instant::now() + CONVERGE;
    let (direct, via) = loop {
        let end = now_f();
        let direct = series_of_job(&strata.api, "direct", start - 60.0, end);
        let via = series_of_job(&strata.api, "via_prometheus", start - 60.0, end);
        if !direct.is_empty() && diff(&direct, &via).is_empty() || Instant::now() > deadline {
            break (direct, via);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let differences = diff(&direct, &via);
    assert!(
        differences.is_empty(),
        "series differ after {CONVERGE:?} ({} differences):\n{}",
        differences.len(),
        differences
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The comparison is over a real exporter's output, not two empty sets.
    for m in [
        "node_uname_info",
        "node_cpu_seconds_total",
        "node_memory_MemTotal_bytes",
        "node_time_seconds",
        "node_load1",
        "up",
        "scrape_duration_seconds",
    ] {
        assert!(
            direct.contains_key(m),
            "{m} missing; got {:?}",
            direct.keys()
        );
    }
    assert!(direct["node_cpu_seconds_total"].len() >= 8, "cpu modes");
    assert!(direct.len() >= 30, "only {} metric names", direct.len());

    // The same values for gauges that do not move between the two scrapes.
    // The series can be listed before Prometheus has shipped a sample older
    // than the evaluation time: poll until both sources answer at `t`.
    let deadline = Instant::now() + CONVERGE;
    let t = loop {
        let t = now_f() - 1.0;
        let q = |job: &str| format!("node_uname_info{{job=\"{job}\"}}");
        let both = !values(&strata.api, &q("direct"), t).is_empty()
            && !values(&strata.api, &q("via_prometheus"), t).is_empty();
        if both || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    for (template, tol) in [
        ("node_uname_info{job=\"$JOB\"}", 0.0),
        ("node_boot_time_seconds{job=\"$JOB\"}", 1.0),
        ("node_memory_MemTotal_bytes{job=\"$JOB\"}", 0.0),
        ("up{job=\"$JOB\"}", 0.0),
        // How late the exporter read its clock after the scrape timestamp.
        (
            "node_time_seconds{job=\"$JOB\"} - timestamp(node_time_seconds{job=\"$JOB\"})",
            1.0,
        ),
    ] {
        let direct = values(&strata.api, &template.replace("$JOB", "direct"), t);
        let via = values(&strata.api, &template.replace("$JOB", "via_prometheus"), t);
        assert!(!direct.is_empty(), "{template}: no value scraped by strata");
        assert_eq!(
            direct.keys().collect::<Vec<_>>(),
            via.keys().collect::<Vec<_>>(),
            "{template}: different series"
        );
        for (k, d) in &direct {
            let v = via[k];
            assert!(
                (d - v).abs() <= tol,
                "{template} {k}: strata scraped {d}, Prometheus remote-wrote {v} (tolerance {tol})"
            );
        }
    }
    // What Prometheus itself stored equals what it shipped.
    let prom_series = series_of_job(&prom.api, "via_prometheus", start - 60.0, now_f());
    let differences = diff(&prom_series, &via);
    assert!(
        differences.is_empty(),
        "Prometheus' own series differ from what it remote-wrote:\n{}",
        differences.join("\n")
    );
}
