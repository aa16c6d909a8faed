//! The demo exporters serve the text format over HTTP: parseable by our
//! scrape parser, with HELP and TYPE for every family, and counters that
//! never decrease between scrapes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use strata_demo::model::{self, Cluster};
use strata_tsdb::textparse::{Entry, Format, MetricType, Parser};

struct Scrape {
    /// Series (labels rendered) → (metric name, value).
    samples: BTreeMap<String, (String, f64)>,
    /// Every label name of every series of a metric.
    label_names: BTreeMap<String, BTreeSet<String>>,
    types: BTreeMap<String, MetricType>,
    helps: BTreeSet<String>,
}

fn parse(body: &str) -> Scrape {
    let mut s = Scrape {
        samples: BTreeMap::new(),
        types: BTreeMap::new(),
        helps: BTreeSet::new(),
        label_names: BTreeMap::new(),
    };
    for e in Parser::new(body.as_bytes(), Format::PromText) {
        match e.unwrap_or_else(|e| panic!("exposition does not parse: {e}\n{body}")) {
            Entry::Type { family, typ } => {
                s.types.insert(family.to_string(), typ);
            }
            Entry::Help { family, .. } => {
                s.helps.insert(family.to_string());
            }
            Entry::Sample {
                labels,
                t_ms,
                value,
            } => {
                assert_eq!(t_ms, None, "the exporters send no timestamps");
                assert!(value.is_finite(), "{labels:?} = {value}");
                assert!(value >= 0.0, "{labels:?} = {value}");
                let name = labels.metric_name().to_string();
                s.label_names
                    .entry(name.clone())
                    .or_default()
                    .extend(labels.iter().map(|l| l.name.to_string()));
                let key = labels.to_string();
                assert!(
                    s.samples.insert(key, (name, value)).is_none(),
                    "duplicate series {labels}"
                );
            }
            _ => {}
        }
    }
    s
}

/// The family a sample name belongs to (histogram suffixes stripped).
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, MetricType>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.get(base) == Some(&MetricType::Histogram) {
                return Some(base);
            }
        }
    }
    None
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, String, String) {
    let r = client.get(url).send().await.expect("GET");
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, ct, r.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporters_serve_parseable_exposition_with_monotonic_counters() {
    let client = reqwest::Client::new();
    for index in 1..=model::CLUSTER_NAMES.len() {
        let cluster = Arc::new(Cluster::new(index));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(strata_demo::exporters::serve(
            listener,
            cluster.clone(),
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        ));

        let mut first = Vec::new();
        for t in &cluster.targets {
            let (status, ct, body) = get(&client, &format!("http://{addr}{}", t.path)).await;
            assert_eq!(status, 200, "{}", t.path);
            assert_eq!(ct, strata_demo::exporters::CONTENT_TYPE);
            first.push(parse(&body));
        }
        // Counters are functions of wall-clock time: let it move.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let mut increased = 0;
        for (t, a) in cluster.targets.iter().zip(&first) {
            let (_, _, body) = get(&client, &format!("http://{addr}{}", t.path)).await;
            let b = parse(&body);
            assert_eq!(a.samples.len(), t.num_series(), "{}", t.path);
            assert_eq!(
                a.samples.keys().collect::<Vec<_>>(),
                b.samples.keys().collect::<Vec<_>>(),
                "the series set is stable"
            );
            for (key, (name, v0)) in &a.samples {
                let fam = family_of(name, &a.types)
                    .unwrap_or_else(|| panic!("{name} has no TYPE line in {}", t.path));
                assert!(a.helps.contains(fam), "{fam} has no HELP line");
                let typ = a.types[fam];
                if typ == MetricType::Counter || typ == MetricType::Histogram {
                    let v1 = b.samples[key].1;
                    assert!(v1 >= *v0, "counter {key} went from {v0} to {v1}");
                    if v1 > *v0 {
                        increased += 1;
                    }
                }
            }
        }
        // CPU seconds and byte counters move every second.
        assert!(
            increased > 50,
            "only {increased} counters increased in cluster{index}"
        );

        let (status, _, index_page) = get(&client, &format!("http://{addr}/")).await;
        assert_eq!(status, 200);
        assert!(
            index_page.contains("/kube-state-metrics/metrics"),
            "{index_page}"
        );
        let (status, _, _) = get(&client, &format!("http://{addr}/nope")).await;
        assert_eq!(status, 404);

        let _ = tx.send(true);
        server.await.expect("join").expect("serve");
    }
}

#[test]
fn the_model_covers_the_kubernetes_metrics_the_dashboard_needs() {
    let wanted = [
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "container_network_receive_bytes_total",
        "container_network_transmit_bytes_total",
        "node_cpu_seconds_total",
        "node_memory_MemTotal_bytes",
        "node_memory_MemAvailable_bytes",
        "node_filesystem_size_bytes",
        "node_filesystem_avail_bytes",
        "kube_pod_info",
        "kube_pod_status_phase",
        "kube_namespace_labels",
        "kube_namespace_status_phase",
        "kube_persistentvolumeclaim_info",
        "kube_persistentvolumeclaim_status_phase",
        "apiserver_request_total",
        "apiserver_request_duration_seconds",
        "scheduler_pending_pods",
        "scheduler_schedule_attempts_total",
        "scheduler_scheduling_attempt_duration_seconds",
    ];
    for c in model::clusters() {
        // Targets are parsed one by one: node-exporters of different
        // nodes expose the same label sets (the target adds `instance`).
        let mut s = parse("");
        for t in &c.targets {
            let one = parse(&t.render(1_780_000_000_000));
            s.types.extend(one.types);
            for (m, names) in one.label_names {
                s.label_names.entry(m).or_default().extend(names);
            }
        }
        for w in wanted {
            assert!(s.types.contains_key(w), "{} lacks {w}", c.name);
        }
        // Label sets the dashboard groups by.
        let has = |metric: &str, labels: &[&str]| {
            let names = &s.label_names[metric];
            for l in labels {
                assert!(
                    names.contains(*l),
                    "{} {metric} lacks {l}: {names:?}",
                    c.name
                );
            }
        };
        for m in [
            "container_cpu_usage_seconds_total",
            "container_memory_working_set_bytes",
        ] {
            has(m, &["namespace", "pod", "container", "node"]);
        }
        has(
            "container_network_receive_bytes_total",
            &["namespace", "pod", "node"],
        );
        has("node_cpu_seconds_total", &["cpu", "mode"]);
        has(
            "node_filesystem_avail_bytes",
            &["mountpoint", "device", "fstype"],
        );
        has("apiserver_request_total", &["verb", "resource", "code"]);
        has(
            "apiserver_request_duration_seconds_bucket",
            &["verb", "resource", "le"],
        );
        has("scheduler_schedule_attempts_total", &["result"]);
        has(
            "kube_persistentvolumeclaim_status_phase",
            &["namespace", "persistentvolumeclaim", "phase"],
        );
    }
}
