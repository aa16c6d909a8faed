//! The example queries parse, and each returns data when evaluated over
//! half an hour of the model's samples (the labels a scrape would add
//! included), so what `strata demo` prints works.

use strata_demo::backfill::{series_of, Plan};
use strata_demo::model::clusters;
use strata_demo::queries::EXAMPLES;
use strata_promql::{Engine, EngineOptions, MemStorage, Value};
use strata_tsdb::{Label, Labels};

#[test]
fn every_example_parses_and_returns_data() {
    let opts = EngineOptions::default();
    let mut storage = MemStorage::new();
    let end = 1_780_000_000_000;
    let plan = Plan {
        start_ms: end - 30 * 60 * 1000,
        end_ms: end + 1,
        interval_ms: 15_000,
    };
    for c in clusters() {
        let series = series_of(&c);
        for (labels, value) in &series {
            // What the querier adds: the TSDB's external label.
            let mut v: Vec<Label> = labels.iter().cloned().collect();
            v.push(Label::new("cluster", c.name.as_str()));
            let with_cluster =
                Labels::from_pairs(v.iter().map(|l| (l.name.clone(), l.value.clone())));
            for t in plan.timestamps() {
                storage.add_sample(with_cluster.clone(), t, value.at(t as f64 / 1000.0));
            }
        }
    }
    let engine = Engine::new(opts.clone());
    for e in EXAMPLES {
        strata_promql::parse(e.query, &opts).unwrap_or_else(|err| panic!("{}: {err}", e.query));
        let r = engine
            .instant(&storage, e.query, end)
            .unwrap_or_else(|err| panic!("{}: {err}", e.query));
        let Value::Vector(v) = r.value else {
            panic!("{}: not a vector", e.query)
        };
        assert!(!v.is_empty(), "{} returned nothing", e.query);
        for s in &v {
            assert!(s.f.is_finite(), "{}: {} = {}", e.query, s.metric, s.f);
        }
        if e.query.contains("by (cluster") {
            let clusters: std::collections::BTreeSet<&str> =
                v.iter().filter_map(|s| s.metric.get("cluster")).collect();
            assert_eq!(clusters.len(), 2, "{}: {clusters:?}", e.query);
        }
    }
}

#[test]
fn error_ratio_and_latency_are_plausible() {
    // Guards the model against drifting into nonsense: a few percent of
    // errors at most, and a p99 between 1ms and 10s.
    let opts = EngineOptions::default();
    let mut storage = MemStorage::new();
    let end = 1_780_000_000_000;
    let plan = Plan {
        start_ms: end - 10 * 60 * 1000,
        end_ms: end + 1,
        interval_ms: 15_000,
    };
    for c in clusters() {
        for (labels, value) in series_of(&c) {
            if !labels.metric_name().starts_with("apiserver_") {
                continue;
            }
            let l = Labels::from_pairs(
                labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .chain([("cluster".into(), c.name.as_str().into())]),
            );
            for t in plan.timestamps() {
                storage.add_sample(l.clone(), t, value.at(t as f64 / 1000.0));
            }
        }
    }
    let engine = Engine::new(opts);
    let get = |q: &str| -> Vec<f64> {
        match engine.instant(&storage, q, end).expect(q).value {
            Value::Vector(v) => v.iter().map(|s| s.f).collect(),
            _ => panic!("{q}"),
        }
    };
    let ratio = get(EXAMPLES
        .iter()
        .find(|e| e.title.contains("error ratio"))
        .expect("example")
        .query);
    assert_eq!(ratio.len(), 2);
    assert!(ratio.iter().all(|r| *r > 0.0 && *r < 0.05), "{ratio:?}");
    let p99 = get(EXAMPLES
        .iter()
        .find(|e| e.title.contains("p99"))
        .expect("example")
        .query);
    assert_eq!(p99.len(), 2);
    assert!(p99.iter().all(|r| *r > 0.001 && *r < 10.0), "{p99:?}");
}
