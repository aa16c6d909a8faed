//! Two clusters, each a `strata tsdb` with `external_labels: {cluster:
//! clusterN}` plus a `strata sidecar`, behind one `strata query`, compared
//! with one Prometheus 2.42 holding both clusters' data with a `cluster`
//! label on every series. Also: one cluster down (partial response on and
//! off) and brought back.

use crate::dataset::{self, Dataset};
use crate::harness::*;

/// The clusters, the optional reference, and the scratch directory (last
/// field: dropped after every process, so logs survive until printed).
pub struct Federation {
    pub ds: Dataset,
    pub reference: Option<Prometheus>,
    pub clusters: Vec<(StrataTsdb, Sidecar)>,
    pub work: Work,
}

pub fn cluster_config(cluster: &str, extra_labels: &str) -> String {
    format!(
        "global:\n  scrape_interval: 15s\n  external_labels:\n    cluster: {cluster}\n{extra_labels}"
    )
}

/// A Prometheus 2.42 with the clusters' data (cluster label on every
/// series) backfilled by promtool.
pub fn start_reference(work: &Work, ds: &Dataset, clusters: &[usize]) -> Prometheus {
    let dir = work.sub("reference");
    backfill(
        &ds.openmetrics(clusters, true),
        work.path(),
        &dir.join("data"),
        true,
    );
    Prometheus::start("prometheus", &dir, "global:\n  scrape_interval: 15s\n")
}

/// One cluster: backfilled `strata tsdb` + sidecar (uploading to
/// `objstore` when given).
pub fn start_cluster(
    work: &Work,
    ds: &Dataset,
    idx: usize,
    objstore: Option<&str>,
) -> (StrataTsdb, Sidecar) {
    let name = Dataset::cluster_name(idx);
    let dir = work.sub(&name);
    backfill(
        &ds.openmetrics(&[idx], false),
        work.path(),
        &dir.join("data"),
        false,
    );
    let tsdb = StrataTsdb::start(&format!("tsdb-{name}"), &dir, &cluster_config(&name, ""));
    let sidecar = Sidecar::start(&format!("sidecar-{name}"), &dir, &tsdb, objstore);
    (tsdb, sidecar)
}

impl Federation {
    pub fn start(n: usize, with_reference: bool, objstore: Option<&str>) -> Federation {
        let work = Work::new();
        let ds = Dataset::new();
        let all: Vec<usize> = (0..n).collect();
        let reference = with_reference.then(|| start_reference(&work, &ds, &all));
        let clusters = all
            .iter()
            .map(|&i| start_cluster(&work, &ds, i, objstore))
            .collect();
        Federation {
            ds,
            reference,
            clusters,
            work,
        }
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.clusters.iter().map(|(_, s)| s.endpoint()).collect()
    }

    pub fn querier(&self, name: &str, extra: &[&str]) -> Querier {
        Querier::start(name, self.work.path(), &self.endpoints(), &[], extra)
    }

    /// A querier over the tsdbs' own StoreAPIs instead of the sidecars.
    pub fn direct_querier(&self, name: &str, extra: &[&str]) -> Querier {
        let eps: Vec<String> = self.clusters.iter().map(|(t, _)| t.endpoint()).collect();
        Querier::start(name, self.work.path(), &eps, &[], extra)
    }

    pub fn reference(&self) -> &Api {
        &self
            .reference
            .as_ref()
            .expect("started with a reference")
            .api
    }

    /// Instant times (the last sample, and a time between samples) and
    /// the range (last 2 h at 60 s) the comparisons use.
    pub fn times(&self) -> (Vec<f64>, (f64, f64, f64)) {
        let end = self.ds.qend as f64;
        (vec![end, end - 1800.0 + 11.0], (end - 7200.0, end, 60.0))
    }
}

fn assert_no_diffs(what: &str, diffs: &[String], total: usize) {
    assert!(
        diffs.is_empty(),
        "{what}: {} of {total} comparisons differ:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// Series, label names and `cluster` values equal between two APIs.
pub fn compare_metadata_apis(got: &Api, want: &Api, start: f64, end: f64) {
    let range = [("start", fmt_t(start)), ("end", fmt_t(end))];
    for m in [
        "kube_pod_info",
        "{__name__=~\"node_filesystem_.*\", cluster=\"cluster2\"}",
        "apiserver_request_total{code=\"500\"}",
    ] {
        let mut p = vec![("match[]", m.to_string())];
        p.extend(range.iter().cloned());
        let (g, w) = (
            got.get("/api/v1/series", &p),
            want.get("/api/v1/series", &p),
        );
        assert_eq!(g.0, 200, "series {m}: {}", g.1);
        let (gs, ws) = (series_list(&g), series_list(&w));
        assert!(!ws.is_empty(), "reference has no series for {m}");
        assert_eq!(gs, ws, "series {m}");
    }
    let (g, w) = (
        got.get("/api/v1/labels", &range),
        want.get("/api/v1/labels", &range),
    );
    assert_eq!(g.0, 200, "labels: {}", g.1);
    assert_eq!(string_list(&g), string_list(&w), "/api/v1/labels");
    let (g, w) = (
        got.get("/api/v1/label/cluster/values", &range),
        want.get("/api/v1/label/cluster/values", &range),
    );
    assert_eq!(g.0, 200, "label values: {}", g.1);
    assert_eq!(
        string_list(&w),
        vec!["cluster1".to_string(), "cluster2".to_string()]
    );
    assert_eq!(
        string_list(&g),
        string_list(&w),
        "/api/v1/label/cluster/values"
    );
}

/// `strata_tsdb_storeapi_requests_total{method, result}` of a tsdb.
fn storeapi_requests(tsdb: &StrataTsdb, method: &str, result: &str) -> f64 {
    let line =
        format!("strata_tsdb_storeapi_requests_total{{method=\"{method}\",result=\"{result}\"}} ");
    tsdb.api
        .text("/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Every read path against the reference: the querier over the sidecars;
/// a querier over the tsdbs' own StoreAPIs (`strata tsdb --grpc-address`)
/// evaluating everything itself (`--query.mode=local`); and one handing
/// partition-local queries whole to the tsdbs (the default, distributed).
#[test]
fn two_clusters_answer_like_one_prometheus() {
    let fed = Federation::start(2, true, None);
    let queries = dataset::queries(fed.ds.qend - 3600);
    assert!(queries.len() >= 30);
    let (times, range) = fed.times();
    let pushed = |m: &str| -> f64 {
        fed.clusters
            .iter()
            .map(|(t, _)| storeapi_requests(t, m, "success"))
            .sum()
    };
    for (what, q) in [
        ("strata query over sidecars", fed.querier("querier", &[])),
        (
            "strata query over the tsdbs' StoreAPI",
            fed.direct_querier("querier-direct", &["--query.mode=local"]),
        ),
        (
            "strata query handing queries to the tsdbs",
            fed.direct_querier("querier-distributed", &[]),
        ),
    ] {
        let before = (pushed("Query"), pushed("QueryRange"));
        let (diffs, warns) =
            compare_query_set(&q.api, fed.reference(), &queries, &times, range, &[]);
        assert_no_diffs(
            &format!("{what} vs Prometheus"),
            &diffs,
            queries.len() * (times.len() + 1),
        );
        let bad = unexpected_warnings(&warns);
        assert!(bad.is_empty(), "{what}: unexpected warnings: {bad:?}");
        compare_metadata_apis(&q.api, fed.reference(), range.0, range.1);
        let handed = (pushed("Query") - before.0, pushed("QueryRange") - before.1);
        if what.contains("handing") {
            // Most of the set groups by cluster; each such query reaches
            // both tsdbs, instant and range.
            assert!(
                handed.0 >= 20.0 && handed.1 >= 10.0,
                "{what}: only {handed:?} whole queries reached the tsdbs"
            );
        } else {
            assert_eq!(handed, (0.0, 0.0), "{what}: no query is handed over");
        }
    }
}

/// `count by (cluster) (kube_pod_info)` at the end of the data.
fn pods_per_cluster(api: &Api, end: f64, extra: &[(&str, String)]) -> Resp {
    api.instant("count by (cluster) (kube_pod_info)", end, extra)
}

fn clusters_of(resp: &Resp) -> Vec<String> {
    let mut v: Vec<String> = resp.1["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("no result: {}", resp.1))
        .iter()
        .map(|e| {
            e["metric"]["cluster"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn cluster_down_partial_response_and_back() {
    let mut fed = Federation::start(2, false, None);
    let q = fed.querier("querier", &[]);
    let strict = fed.querier("querier-strict", &["--no-query.partial-response"]);
    let end = fed.ds.qend as f64;

    let full = pods_per_cluster(&q.api, end, &[]);
    assert_eq!(full.0, 200, "{}", full.1);
    assert_eq!(clusters_of(&full), ["cluster1", "cluster2"]);
    assert!(warnings(&full.1).is_empty(), "{}", full.1);

    // cluster2 goes away (its sidecar is killed).
    let down = fed.clusters[1].1.endpoint();
    fed.clusters[1].1.proc.kill();

    let partial = pods_per_cluster(&q.api, end, &[]);
    assert_eq!(partial.0, 200, "{}", partial.1);
    assert_eq!(partial.1["status"], "success", "{}", partial.1);
    assert_eq!(clusters_of(&partial), ["cluster1"], "{}", partial.1);
    let w = warnings(&partial.1);
    assert!(!w.is_empty(), "no warning with a store down: {}", partial.1);

    // Partial response off, per request and per flag: an error naming the store.
    for (api, extra, how) in [
        (
            &q.api,
            vec![("partial_response", "false".to_string())],
            "partial_response=false",
        ),
        (&strict.api, vec![], "--no-query.partial-response"),
    ] {
        let r = pods_per_cluster(api, end, &extra);
        assert_eq!(r.1["status"], "error", "{how}: {}", r.1);
        assert_ne!(r.0, 200, "{how}: {}", r.1);
        let msg = r.1["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains(&down),
            "{how}: error does not name the store {down}: {msg:?}"
        );
    }

    // Still answering from cluster1, with the warning, once the querier
    // marked the store unhealthy (it stays in the set until
    // --store.unhealthy-timeout, so the loss is not silent).
    let api = q.api.clone();
    let mut q = q;
    q.proc.wait_until("the dead store marked unhealthy", || {
        !healthy_store_names(&api).contains(&down)
    });
    let later = pods_per_cluster(&q.api, end, &[]);
    assert_eq!(later.1["status"], "success", "{}", later.1);
    assert_eq!(clusters_of(&later), ["cluster1"], "{}", later.1);
    assert!(
        !warnings(&later.1).is_empty(),
        "no warning once unhealthy: {}",
        later.1
    );

    // cluster2 is back on the same address: full answers again.
    fed.clusters[1].1.restart();
    q.wait_stores(2);
    let mut strict = strict;
    strict.wait_stores(2);
    for api in [&q.api, &strict.api] {
        let back = pods_per_cluster(api, end, &[("partial_response", "false".to_string())]);
        assert_eq!(back.1["status"], "success", "{}", back.1);
        assert_eq!(clusters_of(&back), ["cluster1", "cluster2"]);
        assert!(warnings(&back.1).is_empty(), "{}", back.1);
        if let Err(e) = compare(&back, &full) {
            panic!("after the cluster came back: {e}");
        }
    }
}

/// A querier handing queries whole to the tsdbs (distributed mode) with a
/// cluster down: the handed-over query fails, the querier evaluates it
/// itself, and answers as the local path does (a warning, or with partial
/// response off an error naming the store).
#[test]
fn distributed_querier_falls_back_when_a_cluster_is_down() {
    let mut fed = Federation::start(2, false, None);
    let q = fed.direct_querier("querier-distributed", &[]);
    let end = fed.ds.qend as f64;
    let full = pods_per_cluster(&q.api, end, &[]);
    assert_eq!(full.1["status"], "success", "{}", full.1);
    assert_eq!(clusters_of(&full), ["cluster1", "cluster2"]);
    assert!(warnings(&full.1).is_empty(), "{}", full.1);
    assert!(
        storeapi_requests(&fed.clusters[0].0, "Query", "success") >= 1.0,
        "the query was not handed to the tsdb"
    );

    // The querier's sample limit holds for handed-over queries too: an
    // answer larger than --query.max-samples is not taken from the stores,
    // and the querier's own evaluation fails as the local path does.
    let small = fed.direct_querier("querier-distributed-small", &["--query.max-samples=20"]);
    let r = small.api.range(
        "count by (cluster) (kube_pod_info)",
        end - 3600.0,
        end,
        60.0,
        &[],
    );
    assert_eq!(r.1["status"], "error", "{}", r.1);
    assert_eq!(r.1["errorType"], "execution", "{}", r.1);

    let down = fed.clusters[1].0.endpoint();
    fed.clusters[1].0.proc.kill();
    let partial = pods_per_cluster(&q.api, end, &[]);
    assert_eq!(partial.1["status"], "success", "{}", partial.1);
    assert_eq!(clusters_of(&partial), ["cluster1"], "{}", partial.1);
    assert!(
        warnings(&partial.1).iter().any(|w| w.contains(&down)),
        "no warning naming {down}: {}",
        partial.1
    );
    let strict = pods_per_cluster(&q.api, end, &[("partial_response", "false".to_string())]);
    assert_eq!(strict.1["status"], "error", "{}", strict.1);
    let msg = strict.1["error"].as_str().unwrap_or_default();
    assert!(msg.contains(&down), "error does not name {down}: {msg:?}");
}

/// `data` of a `/api/v1/metadata` answer, checked to be a success.
fn metadata_of(api: &Api, params: &[(&str, String)]) -> serde_json::Map<String, serde_json::Value> {
    let (status, body) = api.get("/api/v1/metadata", params);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "success", "{body}");
    body["data"]
        .as_object()
        .unwrap_or_else(|| panic!("no data object: {body}"))
        .clone()
}

/// The Metadata API end to end: a real Prometheus 2.42 scraping itself
/// and a `strata tsdb` (which keeps no metadata: an empty answer), each
/// behind a sidecar, one querier over both, and a global querier over that
/// querier's own Metadata API. Every answer must equal Prometheus' own.
#[test]
fn metadata_through_sidecars_and_federated_queriers() {
    let work = Work::new();
    let port = free_port();
    let pdir = work.sub("prometheus");
    let cfg = format!(
        "global:\n  scrape_interval: 1s\n  external_labels:\n    cluster: p1\n\
         scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    );
    let mut prom = Prometheus::start_on("prometheus", &pdir, &cfg, port);
    let metric = "prometheus_http_requests_total";
    let one = [("metric", metric.to_string())];
    let api = prom.api.clone();
    prom.proc
        .wait_until("Prometheus has scraped its own metadata", || {
            metadata_of(&api, &one).contains_key(metric)
        });
    let sc_prom = Sidecar::start_for(
        "sidecar-p1",
        &pdir,
        &prom.api.base,
        &pdir.join("data"),
        None,
    );
    let sdir = work.sub("strata");
    let tsdb = StrataTsdb::start("tsdb-s1", &sdir, &cluster_config("s1", ""));
    let sc_strata = Sidecar::start("sidecar-s1", &sdir, &tsdb, None);
    let q = Querier::start(
        "querier",
        work.path(),
        &[sc_prom.endpoint(), sc_strata.endpoint()],
        &[],
        &[],
    );
    let global = Querier::start(
        "global",
        work.path(),
        std::slice::from_ref(&q.grpc),
        &[],
        &[],
    );

    // strata tsdb has no metadata; its sidecar still answers (no failure).
    assert!(metadata_of(&tsdb.api, &[]).is_empty());

    // One metric: exactly Prometheus' entries, through one and two hops.
    let want = metadata_of(&prom.api, &one);
    assert_eq!(want[metric][0]["type"], "counter", "{want:?}");
    assert_eq!(metadata_of(&q.api, &one), want);
    assert_eq!(metadata_of(&global.api, &one), want);

    // Everything: Prometheus' whole map (its set of metrics can still grow
    // while it starts up, so compare until two reads agree).
    for attempt in 0.. {
        let want = metadata_of(&prom.api, &[]);
        let got = metadata_of(&q.api, &[]);
        let fed = metadata_of(&global.api, &[]);
        if got == want && fed == want {
            assert!(want.len() > 50, "only {} metrics", want.len());
            break;
        }
        assert!(
            attempt < 20,
            "metadata differs: prometheus {} metrics, querier {}, global {}",
            want.len(),
            got.len(),
            fed.len()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    // limit applies to the merged answer.
    let limited = metadata_of(&q.api, &[("limit", "3".to_string())]);
    assert_eq!(limited.len(), 3, "{limited:?}");
    let limited = metadata_of(&global.api, &[("limit", "0".to_string())]);
    assert!(limited.is_empty(), "{limited:?}");
    let (status, body) = q.api.get("/api/v1/metadata", &[("limit", "x".to_string())]);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errorType"], "bad_data", "{body}");
    // An unknown metric: an empty object, as Prometheus answers.
    let none = [("metric", "no_such_metric".to_string())];
    assert!(metadata_of(&prom.api, &none).is_empty());
    assert!(metadata_of(&q.api, &none).is_empty());
}
