//! Grafana's recorded request sequence (tests/it/fixtures/grafana-requests.json)
//! against the querier over two clusters. The same fixtures run against
//! Prometheus 2.42 first, which proves the fixtures themselves are valid
//! Prometheus API calls.

use serde_json::Value;

use crate::federation::Federation;
use crate::harness::*;

const FIXTURES: &str = include_str!("fixtures/grafana-requests.json");

struct Fixture {
    name: String,
    method: String,
    path: String,
    params: Vec<(String, String)>,
    expect: String,
}

fn fixtures(from: i64, to: i64) -> Vec<Fixture> {
    let doc: Value = serde_json::from_str(FIXTURES).expect("fixture JSON");
    let subst = |s: &str| {
        s.replace("${from_aligned}", &(from - from % 60).to_string())
            .replace("${to_aligned}", &(to - to % 60).to_string())
            .replace("${from}", &from.to_string())
            .replace("${to}", &to.to_string())
    };
    doc["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|r| Fixture {
            name: r["name"].as_str().expect("name").to_string(),
            method: r["method"].as_str().expect("method").to_string(),
            path: r["path"].as_str().expect("path").to_string(),
            params: r["params"]
                .as_array()
                .expect("params")
                .iter()
                .map(|p| {
                    (
                        p[0].as_str().expect("key").to_string(),
                        subst(p[1].as_str().expect("value")),
                    )
                })
                .collect(),
            expect: r["expect"].as_str().expect("expect").to_string(),
        })
        .collect()
}

/// Runs every fixture; returns one line per failure.
fn run(api: &Api, fx: &[Fixture]) -> Vec<String> {
    let mut failures = Vec::new();
    for f in fx {
        let params: Vec<(&str, String)> = f
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let (status, body) = match f.method.as_str() {
            "GET" => api.get(&f.path, &params),
            _ => api.post_form(&f.path, &params),
        };
        let data = &body["data"];
        let ok = status == 200
            && body["status"] == "success"
            && match f.expect.as_str() {
                "scalar" => data["resultType"] == "scalar",
                "object" => data.is_object(),
                "string" => data.is_string(),
                "array" => data.is_array(),
                "nonempty-array" => data.as_array().is_some_and(|a| !a.is_empty()),
                kind => {
                    let t = kind.trim_start_matches("nonempty-");
                    data["resultType"] == t
                        && data["result"].as_array().is_some_and(|a| !a.is_empty())
                }
            };
        if !ok {
            let text = body.to_string();
            failures.push(format!(
                "{} ({} {}): expected {}, got {status} {}",
                f.name,
                f.method,
                f.path,
                f.expect,
                &text[..text.len().min(300)]
            ));
        }
    }
    failures
}

#[test]
fn grafana_request_sequence_succeeds() {
    let fed = Federation::start(2, true, None);
    let fx = fixtures(fed.ds.qend - 3600, fed.ds.qend);
    assert!(fx.len() >= 20, "fixture list shrank");
    let bad = run(fed.reference(), &fx);
    assert!(
        bad.is_empty(),
        "fixtures invalid against Prometheus 2.42:\n{}",
        bad.join("\n")
    );
    let q = fed.querier("querier", &[]);
    let bad = run(&q.api, &fx);
    assert!(
        bad.is_empty(),
        "Grafana requests failing against strata query:\n{}",
        bad.join("\n")
    );
    // buildinfo: a semver version, as Grafana's heuristics parse it.
    let (_, b) = q.api.get("/api/v1/status/buildinfo", &[]);
    let v = b["data"]["version"].as_str().unwrap_or_default();
    let parts: Vec<&str> = v.split(['.', '-', '+']).collect();
    assert!(
        parts.len() >= 3 && parts[..3].iter().all(|p| p.parse::<u64>().is_ok()),
        "buildinfo version {v:?} is not semver"
    );
}
