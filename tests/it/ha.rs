//! An HA pair: two `strata tsdb` scraping the same in-test exporter every
//! second, with external labels `{cluster: c1, replica: A|B}`, a sidecar
//! each, and `strata query --query.replica-label replica`. The pair must
//! look like one TSDB: one series per target, no `replica` label, and no
//! gap while replica B is down and restarted; `dedup=false` shows both.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

fn config(replica: &str, target: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  external_labels:\n    cluster: c1\n    replica: {replica}\nscrape_configs:\n  - job_name: exporter\n    static_configs:\n      - targets: ['{target}']\n"
    )
}

/// Points of every series of a range answer, by label set.
fn series_points(resp: &Resp) -> Vec<(Value, Vec<(f64, f64)>)> {
    assert_eq!(resp.1["status"], "success", "{}", resp.1);
    resp.1["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("no result: {}", resp.1))
        .iter()
        .map(|e| {
            let pts = e["values"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|p| {
                            (
                                p[0].as_f64().unwrap_or(f64::NAN),
                                p[1].as_str()
                                    .and_then(|s| s.parse().ok())
                                    .unwrap_or(f64::NAN),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            (e["metric"].clone(), pts)
        })
        .collect()
}

/// Steps of `[start, end]` (step 1 s) with no point.
fn missing_steps(points: &[(f64, f64)], start: f64, end: f64) -> Vec<f64> {
    let have: std::collections::BTreeSet<i64> = points.iter().map(|p| p.0 as i64).collect();
    (start as i64..=end as i64)
        .filter(|t| !have.contains(t))
        .map(|t| t as f64)
        .collect()
}

/// Value of `count_over_time(up[window])` for each replica (dedup off).
fn samples_per_replica(q: &Api, window: &str) -> Vec<(String, f64)> {
    let r = q.instant(
        &format!("count_over_time(up{{job=\"exporter\"}}[{window}])"),
        now_f(),
        &[("dedup", "false".into())],
    );
    r.1["data"]["result"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["metric"]["replica"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        e["value"][1]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0.0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn ha_pair_is_deduplicated_without_gaps() {
    let work = Work::new();
    let exporter = Exporter::start();
    let (da, db) = (work.sub("replica-A"), work.sub("replica-B"));
    let ta = StrataTsdb::start("tsdb-A", &da, &config("A", &exporter.target()));
    let mut tb = StrataTsdb::start("tsdb-B", &db, &config("B", &exporter.target()));
    let sa = Sidecar::start("sidecar-A", &da, &ta, None);
    let sb = Sidecar::start("sidecar-B", &db, &tb, None);
    let mut q = Querier::start(
        "querier",
        work.path(),
        &[sa.endpoint(), sb.endpoint()],
        &["replica"],
        &[],
    );
    let api = q.api.clone();

    // Both replicas have scraped for a while (9 samples in 10 s), so the
    // range below starts well after their first samples.
    q.proc.wait_until("both replicas scraping", || {
        let s = samples_per_replica(&api, "10s");
        s.len() == 2 && s.iter().all(|(_, n)| *n >= 9.0)
    });
    let start = now_f().floor() - 3.0;

    // Replica B is down for 5 s (a deliberate outage, not a wait), then
    // restarts on the same data directory and port.
    tb.proc.kill();
    std::thread::sleep(Duration::from_secs(5));
    tb.start_again();
    q.proc.wait_until("replica B scraping again", || {
        samples_per_replica(&api, "6s")
            .iter()
            .any(|(r, n)| r == "B" && *n >= 4.0)
    });
    let end = now_f().floor() - 2.0;

    // Deduplicated: one series per target, no replica label, no gap.
    for query in [
        "up{job=\"exporter\"}",
        "rate(ha_requests_total[3s])",
        "ha_temperature",
    ] {
        let r = api.range(query, start, end, 1.0, &[]);
        let series = series_points(&r);
        assert_eq!(series.len(), 1, "{query}: want one series: {}", r.1);
        let (metric, pts) = &series[0];
        assert!(
            metric.get("replica").is_none(),
            "{query}: replica label kept: {metric}"
        );
        assert_eq!(metric["cluster"], "c1", "{query}: {metric}");
        assert_eq!(
            metric["instance"],
            exporter.target().as_str(),
            "{query}: {metric}"
        );
        let missing = missing_steps(pts, start, end);
        assert!(
            missing.is_empty(),
            "{query}: gaps at {missing:?} (range {start}..{end})"
        );
        if query.starts_with("rate") {
            // The exporter's counter grows by 10/s.
            assert!(
                pts.iter().all(|p| p.1 > 5.0 && p.1 < 15.0),
                "{query}: rate not about 10/s: {pts:?}"
            );
        }
        if query.starts_with("up") {
            assert!(pts.iter().all(|p| p.1 == 1.0), "up not 1: {pts:?}");
        }
    }

    // The outage is visible without deduplication: the test is sensitive.
    let r = api.range(
        "rate(ha_requests_total[3s])",
        start,
        end,
        1.0,
        &[("dedup", "false".into())],
    );
    let series = series_points(&r);
    let mut replicas: Vec<String> = series
        .iter()
        .map(|(m, _)| m["replica"].as_str().unwrap_or_default().to_string())
        .collect();
    replicas.sort();
    assert_eq!(replicas, ["A", "B"], "dedup=false: {}", r.1);
    let b = &series
        .iter()
        .find(|(m, _)| m["replica"] == "B")
        .expect("replica B")
        .1;
    assert!(
        !missing_steps(b, start, end).is_empty(),
        "replica B alone shows no gap across its 5 s outage"
    );
    let a = &series
        .iter()
        .find(|(m, _)| m["replica"] == "A")
        .expect("replica A")
        .1;
    assert!(
        missing_steps(a, start, end).is_empty(),
        "replica A has gaps"
    );
}
