//! `promtool query instant|range|series|labels` against the querier gives
//! the same output as against Prometheus 2.42 holding the same data
//! (lines sorted, numbers within tolerance).

use std::process::Command;

use crate::dataset::Dataset;
use crate::federation::{start_reference, Federation};
use crate::harness::*;

fn promtool(args: &[String]) -> String {
    let out = Command::new(PROMTOOL)
        .args(args)
        .output()
        .expect("running promtool");
    assert!(
        out.status.success(),
        "promtool {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Output as sorted blocks: a range result's series header (`{…} =>`) and
/// its point lines stay together; other lines are blocks of one.
fn blocks(out: &str) -> Vec<Vec<String>> {
    let mut blocks: Vec<Vec<String>> = Vec::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        if line.trim_end().ends_with("=>") || blocks.is_empty() || !line.contains(" @[") {
            blocks.push(vec![line.to_string()]);
        } else if blocks
            .last()
            .is_some_and(|b| b[0].trim_end().ends_with("=>"))
        {
            blocks.last_mut().expect("block").push(line.to_string());
        } else {
            blocks.push(vec![line.to_string()]);
        }
    }
    blocks.sort();
    blocks
}

fn same_line(a: &str, b: &str) -> bool {
    let (ta, tb): (Vec<&str>, Vec<&str>) = (
        a.split_whitespace().collect(),
        b.split_whitespace().collect(),
    );
    ta.len() == tb.len()
        && ta.iter().zip(&tb).all(|(x, y)| {
            x == y || matches!((x.parse::<f64>(), y.parse::<f64>()), (Ok(p), Ok(q)) if close(p, q))
        })
}

fn assert_same_output(what: &str, got: &str, want: &str) {
    let (g, w) = (blocks(got), blocks(want));
    assert!(!w.is_empty(), "{what}: empty reference output");
    let same = g.len() == w.len()
        && g.iter()
            .zip(&w)
            .all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_line(a, b)));
    assert!(
        same,
        "{what}: promtool output differs\n--- strata query ---\n{got}\n--- prometheus ---\n{want}"
    );
}

#[test]
fn promtool_query_against_the_querier_matches_prometheus() {
    let fed = Federation::start(2, true, None);
    let q = fed.querier("querier", &[]);
    same_promtool_output(&q.api.base, &fed.reference().base, fed.ds.qend);
}

/// The same for `strata tsdb` holding both clusters (cluster label on
/// every series): independent of the querier.
#[test]
fn promtool_query_against_strata_tsdb_matches_prometheus() {
    let work = Work::new();
    let ds = Dataset::new();
    let reference = start_reference(&work, &ds, &[0, 1]);
    let dir = work.sub("strata");
    backfill(
        &ds.openmetrics(&[0, 1], true),
        work.path(),
        &dir.join("data"),
        false,
    );
    let tsdb = StrataTsdb::start("tsdb", &dir, "global:\n  scrape_interval: 15s\n");
    same_promtool_output(&tsdb.api.base, &reference.api.base, ds.qend);
}

/// Runs each `promtool query` form against `got` and `want` (base URLs).
fn same_promtool_output(got_url: &str, want_url: &str, end: i64) {
    let start = end - 1800;
    for (what, args) in [
        (
            "instant",
            vec![
                "query".into(),
                "instant".into(),
                format!("--time={end}"),
                "URL".into(),
                "count by (cluster) (kube_pod_info)".into(),
            ],
        ),
        (
            "instant raw",
            vec![
                "query".into(),
                "instant".into(),
                format!("--time={end}"),
                "URL".into(),
                "node_memory_MemAvailable_bytes".into(),
            ],
        ),
        (
            "range",
            vec![
                "query".into(),
                "range".into(),
                format!("--start={start}"),
                format!("--end={end}"),
                "--step=5m".into(),
                "URL".into(),
                "sum by (cluster) (rate(container_cpu_usage_seconds_total[5m]))".into(),
            ],
        ),
        (
            "series",
            vec![
                "query".into(),
                "series".into(),
                "--match=kube_persistentvolumeclaim_info".into(),
                format!("--start={start}"),
                format!("--end={end}"),
                "URL".into(),
            ],
        ),
        (
            "labels",
            vec![
                "query".into(),
                "labels".into(),
                "URL".into(),
                "cluster".into(),
            ],
        ),
    ] {
        let with = |url: &str| -> Vec<String> {
            args.iter()
                .map(|a| {
                    if a == "URL" {
                        url.to_string()
                    } else {
                        a.clone()
                    }
                })
                .collect()
        };
        let want = promtool(&with(want_url));
        let got = promtool(&with(got_url));
        assert_same_output(what, &got, &want);
    }
}
