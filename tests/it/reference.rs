//! The Prometheus-reference half on its own: one `strata tsdb` holding
//! both clusters' data (cluster label on every series, backfilled by
//! `strata tools tsdb create-blocks-from openmetrics`) answers the whole
//! cross-cluster query set, instant and range, and the series and label
//! APIs like Prometheus 2.42 holding the same data (backfilled by
//! promtool).

use crate::dataset::{self, Dataset};
use crate::federation::{compare_metadata_apis, start_reference};
use crate::harness::*;

#[test]
fn strata_tsdb_answers_the_query_set_like_prometheus() {
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

    let queries = dataset::queries(ds.qend - 3600);
    let end = ds.qend as f64;
    let times = [end, end - 1800.0 + 11.0];
    let range = (end - 7200.0, end, 60.0);
    let (diffs, warns) = compare_query_set(&tsdb.api, &reference.api, &queries, &times, range, &[]);
    assert!(
        diffs.is_empty(),
        "{} of {} comparisons differ:\n{}",
        diffs.len(),
        queries.len() * 3,
        diffs.join("\n")
    );
    let bad = unexpected_warnings(&warns);
    assert!(bad.is_empty(), "{bad:?}");
    // Every query returned data at the last instant except the two that
    // are empty by design (`absent` of a present series, and `unless` is
    // not empty): a guard against comparing two empty answers.
    let mut empty = Vec::new();
    for q in &queries {
        let r = reference.api.instant(q, end, &[]);
        if result_len(&r.1) == 0 {
            empty.push(q.clone());
        }
    }
    assert_eq!(
        empty,
        vec!["absent(kube_pod_info{cluster=\"cluster1\"})".to_string()],
        "queries with an empty reference answer"
    );
    compare_metadata_apis(&tsdb.api, &reference.api, range.0, range.1);
}
