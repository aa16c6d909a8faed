//! Native histograms through the federated path: a real `strata tsdb`
//! (in-process) holding histogram samples, a real `strata sidecar` that
//! ships them as StoreAPI HISTOGRAM / FLOAT_HISTOGRAM chunks, and the
//! querier decoding them for the engine. The reference is the same
//! `strata tsdb` answering the same queries itself (its histogram answers
//! are compared with Prometheus 2.42's in strata-server's tests).

use std::path::Path;

use serde_json::Value;
use strata_server::Server;
use strata_tsdb::chunkenc::histogram::{FloatHistogram, Histogram, Span};
use strata_tsdb::db::{Db, DbOptions};
use strata_tsdb::head::HistogramValue;
use strata_tsdb::labels::Labels;

use crate::*;

const MINUTE: i64 = 60_000;

/// A counter-like integer histogram after `i` minutes, and a float one.
fn int_h(i: i64) -> Histogram {
    let b = [2 + i, 3 + 2 * i, 1 + i];
    Histogram {
        schema: 0,
        zero_threshold: 1e-128,
        zero_count: i as u64,
        count: (b.iter().sum::<i64>() + i) as u64,
        sum: 10.5 * i as f64,
        positive_spans: vec![Span {
            offset: 0,
            length: 3,
        }],
        negative_spans: Vec::new(),
        // Deltas between consecutive buckets.
        positive_buckets: vec![b[0], b[1] - b[0], b[2] - b[1]],
        negative_buckets: Vec::new(),
    }
}

fn float_h(i: i64) -> FloatHistogram {
    let f = i as f64;
    FloatHistogram {
        schema: 1,
        zero_threshold: 1e-128,
        zero_count: 0.5 * f,
        count: 0.5 * f + 6.0 * f + 3.0,
        sum: 3.25 * f,
        positive_spans: vec![Span {
            offset: -1,
            length: 2,
        }],
        negative_spans: Vec::new(),
        positive_buckets: vec![2.0 * f + 1.0, 4.0 * f + 2.0],
        negative_buckets: Vec::new(),
    }
}

/// Writes `h_int` and `h_float` (one sample a minute over `[start, end)`,
/// leaving out the minutes in `gap`) into a TSDB at `dir`, through the WAL.
fn write(dir: &Path, start: i64, end: i64, gap: std::ops::Range<i64>) {
    let db = Db::open(dir, DbOptions::default()).expect("open db").0;
    let mut app = db.appender();
    let (li, lf) = (
        Labels::from_pairs([("__name__", "h_int"), ("job", "api")]),
        Labels::from_pairs([("__name__", "h_float"), ("job", "api")]),
    );
    let mut i = 0;
    let mut t = start;
    while t < end {
        if !gap.contains(&t) {
            app.append_histogram(&li, t, HistogramValue::Int(int_h(i)), false)
                .expect("append int");
            app.append_histogram(&lf, t, HistogramValue::Float(float_h(i)), false)
                .expect("append float");
        }
        i += 1;
        t += MINUTE;
    }
    app.commit().expect("commit");
}

struct Node {
    _dir: tempfile::TempDir,
    tsdb: Server,
    grpc: String,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn start_node(ext: &str, start: i64, end: i64, gap: std::ops::Range<i64>) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    write(&data, start, end, gap);
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(&cfg, format!("global:\n  external_labels:\n{ext}")).unwrap();
    let (tsdb, grpc, stop) = start_tsdb_with_sidecar(&data, cfg).await;
    Node {
        _dir: dir,
        tsdb,
        grpc,
        _stop: stop,
    }
}

async fn tsdb_json(node: &Node, path_and_query: &str) -> Value {
    let text = reqwest::get(format!("http://{}{path_and_query}", node.tsdb.local_addr()))
        .await
        .expect("request")
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The result with the external labels taken off each series.
fn without(v: &Value, names: &[&str]) -> Value {
    let mut r = result(v);
    for s in &mut r {
        if let Some(m) = s["metric"].as_object_mut() {
            for n in names {
                m.remove(*n);
            }
        }
    }
    Value::Array(r)
}

const QUERIES: &[&str] = &[
    "h_int",
    "h_float",
    "histogram_count(rate(h_int[5m]))",
    "histogram_sum(increase(h_float[10m]))",
    "histogram_quantile(0.5, rate(h_int[5m]))",
    "histogram_fraction(0, 2, rate(h_float[5m]))",
    "sum by (job) (rate({__name__=~\"h_.*\"}[5m]))",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_histograms_through_sidecar_and_querier() {
    let end = (now_ms() / MINUTE - 30) * MINUTE;
    let start = end - 90 * MINUTE;
    let node = start_node("    cluster: c1\n", start, end, 0..0).await;
    let q = start_querier(&[&node.grpc], |_| {}).await;
    q.wait_stores(1).await;
    for query in QUERIES {
        for t in [start + 30 * MINUTE + 500, end - 10 * MINUTE - 1500] {
            let ts = t as f64 / 1000.0;
            let want = tsdb_json(
                &node,
                &format!("/api/v1/query?query={}&time={ts}", urlencode(query)),
            )
            .await;
            let (status, got) = q.query(query, ts, "").await;
            assert_eq!(status, 200, "{query}: {got}");
            assert!(!result(&want).is_empty(), "{query}: {want}");
            assert_eq!(
                without(&got, &["cluster"]),
                without(&want, &[]),
                "{query} at {ts}"
            );
            assert!(warnings(&got).is_empty(), "{query}: {got}");
        }
        let (s, e) = ((start + 20 * MINUTE) as f64 / 1000.0, end as f64 / 1000.0);
        let want = tsdb_json(
            &node,
            &format!(
                "/api/v1/query_range?query={}&start={s}&end={e}&step=90",
                urlencode(query)
            ),
        )
        .await;
        let (status, got) = q.query_range(query, s, e, 90.0, "").await;
        assert_eq!(status, 200, "{query}: {got}");
        assert_eq!(
            without(&got, &["cluster"]),
            without(&want, &[]),
            "{query} range"
        );
    }
}

/// An HA pair whose second replica missed 20 minutes: deduplicated, one
/// series with a point at every step (lookback 3m, shorter than the hole),
/// each point the complete replica's value at that step or, where the
/// penalty algorithm skips the first samples after a switch (as Thanos'
/// does for floats), the value carried over from the step before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_histogram_replicas_deduplicate_without_gaps() {
    // All samples inside one 2h block range, so the TSDBs cut no chunk at
    // a range boundary: where such a cut falls (next to the hole or not)
    // changes how the chunks split into pseudo-replicas, and with it how
    // many points the penalty skips; the test must not depend on the
    // wall-clock time it runs at.
    const RANGE: i64 = 120 * MINUTE;
    let end = now_ms() / RANGE * RANGE - 30 * MINUTE;
    let start = end - 90 * MINUTE;
    let gap = start + 40 * MINUTE..start + 60 * MINUTE;
    let r0 = start_node("    cluster: c1\n    replica: r0\n", start, end, 0..0).await;
    let r1 = start_node("    cluster: c1\n    replica: r1\n", start, end, gap).await;
    let q = start_querier(&[&r0.grpc, &r1.grpc], |c| {
        c.replica_labels = vec!["replica".into()]
    })
    .await;
    q.wait_stores(2).await;
    let (s, e) = (
        (start + 10 * MINUTE) as f64 / 1000.0,
        (end - MINUTE) as f64 / 1000.0,
    );
    let steps = ((e - s) / 60.0) as usize + 1;
    // Longer than the penalty skip (2 scrape intervals), far shorter than
    // the 20 min hole.
    let extra = "&lookback_delta=3m";
    for query in ["histogram_count(h_int)", "histogram_sum(h_float)"] {
        let want = tsdb_json(
            &r0,
            &format!(
                "/api/v1/query_range?query={}&start={s}&end={e}&step=60{extra}",
                urlencode(query)
            ),
        )
        .await;
        let want = result(&want);
        assert_eq!(want.len(), 1, "{query}: {want:?}");
        let want = want[0]["values"].as_array().unwrap().clone();
        assert_eq!(
            want.len(),
            steps,
            "{query}: the complete replica has every step"
        );

        let (status, got) = q.query_range(query, s, e, 60.0, extra).await;
        assert_eq!(status, 200, "{query}: {got}");
        let r = result(&got);
        assert_eq!(r.len(), 1, "{query}: one series: {got}");
        assert_eq!(
            r[0]["metric"],
            serde_json::json!({"cluster": "c1", "job": "api"})
        );
        let values = r[0]["values"].as_array().unwrap();
        assert_eq!(values.len(), steps, "{query}: a point at every step: {got}");
        let mut carried = 0;
        for (i, (g, w)) in values.iter().zip(&want).enumerate() {
            assert_eq!(g[0], w[0], "{query}: step {i}");
            if g[1] != w[1] {
                assert!(
                    i > 0 && g[1] == values[i - 1][1],
                    "{query}: step {i}: {g} vs {w}"
                );
                carried += 1;
            }
        }
        assert!(carried <= 2, "{query}: {carried} carried-over points");

        // Without dedup both replicas show, the second with its hole.
        let (_, both) = q
            .query_range(query, s, e, 60.0, &format!("&dedup=false{extra}"))
            .await;
        let both = result(&both);
        assert_eq!(both.len(), 2, "{query}: {both:?}");
        assert!(both[1]["values"].as_array().unwrap().len() < steps - 15);
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
