//! The shipped Grafana dashboard: every query parses with strata's PromQL
//! parser, follows the cluster picker, uses the demo's metrics, and the
//! views the multi-cluster overview must have are there.

use std::collections::BTreeSet;

use strata_deploy_check::{check_query, deploy_dir, Dashboard, DEMO_METRICS};

use crate::util::read;

fn dashboard_json() -> serde_json::Value {
    serde_json::from_str(&read(&strata_deploy_check::multicluster_path())).expect("dashboard JSON")
}

#[test]
fn every_panel_query_parses_and_follows_the_cluster_variable() {
    let d = Dashboard::load_multicluster().expect("dashboard loads");
    assert!(
        d.panels_without_queries.is_empty(),
        "panels without a query: {:?}",
        d.panels_without_queries
    );
    assert!(d.panels.len() >= 15, "only {} queries", d.panels.len());
    let mut errors = Vec::new();
    let mut used = BTreeSet::new();
    for q in &d.panels {
        match check_query(q) {
            Ok(facts) => {
                for m in facts.metrics {
                    if !DEMO_METRICS.contains(&m.as_str()) {
                        errors.push(format!(
                            "panel {:?}: metric {m} is not served by the demo exporters",
                            q.panel
                        ));
                    }
                    used.insert(m);
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    assert!(
        errors.is_empty(),
        "dashboard queries:\n{}",
        errors.join("\n")
    );
    // Every demo metric is shown somewhere: the dashboard covers cAdvisor,
    // node-exporter, kube-state-metrics, the API server and the scheduler.
    let unused: Vec<_> = DEMO_METRICS
        .iter()
        .filter(|m| !used.contains(**m))
        .collect();
    assert!(unused.is_empty(), "demo metrics no panel shows: {unused:?}");
}

#[test]
fn the_overview_has_the_required_views() {
    let d = Dashboard::load_multicluster().unwrap();
    let has = |title_part: &str, expr_part: &str| {
        d.panels
            .iter()
            .any(|q| q.panel.contains(title_part) && q.expr.contains(expr_part))
    };
    let required = [
        ("Cluster memory", "container_memory_working_set_bytes"),
        ("Cluster CPU", "container_cpu_usage_seconds_total"),
        ("Node memory", "node_memory_MemAvailable_bytes"),
        ("Disk usage %", "node_filesystem_avail_bytes"),
        ("Namespaces", "kube_namespace_status_phase"),
        ("Pods", "kube_pod_info"),
        ("PVCs", "kube_persistentvolumeclaim_info"),
        (
            "Network received per pod",
            "container_network_receive_bytes_total",
        ),
        (
            "Network sent per pod",
            "container_network_transmit_bytes_total",
        ),
        ("API server request rate", "apiserver_request_total"),
        ("API server error ratio", "code=~\"5..\""),
        ("API server latency", "histogram_quantile(0.99"),
        ("API server latency", "histogram_quantile(0.5"),
    ];
    let missing: Vec<_> = required.iter().filter(|(t, e)| !has(t, e)).collect();
    assert!(missing.is_empty(), "missing views: {missing:?}");
}

#[test]
fn cluster_variable_lists_label_values_multi_with_all() {
    let v = dashboard_json();
    let vars = v["templating"]["list"].as_array().expect("templating.list");
    let c = vars
        .iter()
        .find(|x| x["name"] == "cluster")
        .expect("a `cluster` variable");
    assert_eq!(c["type"], "query");
    assert_eq!(c["definition"], "label_values(cluster)");
    assert_eq!(c["multi"], true);
    assert_eq!(c["includeAll"], true);
    // "All" must be a regex that matches every cluster: the queries use =~.
    assert_eq!(c["allValue"], strata_deploy_check::CLUSTER_ALL);
    let d = Dashboard::load_multicluster().unwrap();
    assert_eq!(d.variables.len(), 1);
    assert_eq!(d.variables[0].label, "cluster");
    assert_eq!(d.variables[0].api_path(), "/api/v1/label/cluster/values");
}

#[test]
fn every_panel_uses_the_provisioned_datasource() {
    // The uid Grafana's provisioning gives the querier datasource.
    let prov = read(&deploy_dir().join("global/grafana-datasources.yaml"));
    let prov: serde_json::Value = serde_saphyr::from_str(&prov).expect("datasources YAML");
    let uid = prov["datasources"][0]["uid"]
        .as_str()
        .expect("datasource uid");
    let v = dashboard_json();
    let mut checked = 0;
    for p in v["panels"].as_array().unwrap() {
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], uid, "panel {}", p["title"]);
        assert_eq!(
            p["datasource"]["type"], "prometheus",
            "panel {}",
            p["title"]
        );
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], uid, "panel {} target", p["title"]);
            checked += 1;
        }
    }
    assert!(checked > 0);
    assert_eq!(v["templating"]["list"][0]["datasource"]["uid"], uid);
}

#[test]
fn panels_do_not_overlap_and_ids_are_unique() {
    let v = dashboard_json();
    let panels = v["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let rects: Vec<(String, [i64; 4])> = panels
        .iter()
        .map(|p| {
            assert!(
                ids.insert(p["id"].as_i64().expect("numeric id")),
                "duplicate id {}",
                p["id"]
            );
            let g = &p["gridPos"];
            let n = |k: &str| {
                g[k].as_i64()
                    .unwrap_or_else(|| panic!("gridPos.{k} of {}", p["title"]))
            };
            assert!(
                n("x") + n("w") <= 24,
                "panel {} wider than the grid",
                p["title"]
            );
            (p["title"].to_string(), [n("x"), n("y"), n("w"), n("h")])
        })
        .collect();
    for (i, (ta, a)) in rects.iter().enumerate() {
        for (tb, b) in &rects[i + 1..] {
            let apart = a[0] + a[2] <= b[0]
                || b[0] + b[2] <= a[0]
                || a[1] + a[3] <= b[1]
                || b[1] + b[3] <= a[1];
            assert!(apart, "panels {ta} and {tb} overlap");
        }
    }
}

/// deploy/dashboards/queries.txt is what the end-to-end tests run against
/// the demo; it must match the dashboard. `STRATA_BLESS=1` rewrites it.
#[test]
fn queries_txt_matches_the_dashboard() {
    let want = Dashboard::load_multicluster()
        .unwrap()
        .queries_txt()
        .unwrap();
    let path = deploy_dir().join("dashboards/queries.txt");
    if std::env::var_os("STRATA_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is stale: run STRATA_BLESS=1 cargo nextest run -p strata-deploy-check",
        path.display()
    );
    // Each line's query parses once more as the e2e tests will send it.
    let opts = strata_promql::EngineOptions::default();
    let mut n = 0;
    for line in have.lines().filter(|l| !l.starts_with('#')) {
        let (title, q) = line.split_once('\t').expect("<panel>\\t<query>");
        strata_promql::parse(q, &opts).unwrap_or_else(|e| panic!("{title}: {e}"));
        assert!(!q.contains('$'), "{title}: unsubstituted variable in {q}");
        n += 1;
    }
    assert_eq!(n, Dashboard::load_multicluster().unwrap().panels.len());
}

/// A broken query in a copy of the dashboard is reported with its panel
/// title (the check is not vacuous).
#[test]
fn a_broken_query_is_reported_with_its_panel_title() {
    let mut v = dashboard_json();
    let panels = v["panels"].as_array_mut().unwrap();
    let p = panels.iter_mut().find(|p| p["type"] != "row").unwrap();
    let title = p["title"].as_str().unwrap().to_string();
    p["targets"][0]["expr"] =
        "sum(rate(apiserver_request_total{cluster=~\"$cluster\"}[$__rate_interval])".into();
    let d = Dashboard::parse(&v.to_string()).unwrap();
    let q = d.panels.iter().find(|q| q.panel.ends_with(&title)).unwrap();
    let e = check_query(q).unwrap_err().to_string();
    assert!(e.contains(&title) && e.contains("parse error"), "{e}");
}
