//! End-to-end tests of the engine: promqltest-style scripts, Prometheus'
//! own sample-limit expectations, limits, errors and storage hints.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::{load, run_script};
use strata_promql::{
    Engine, EngineOptions, MemStorage, QueryError, Queryable, SelectHints, SelectResult,
    StorageError, Value,
};
use strata_tsdb::labels::Matcher;

#[test]
fn selectors_lookback_staleness_offset() {
    run_script(
        r#"
load 10s
  metric 0+1x10
  with_stale 1 2 stale 4
  sparse 1 _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ 9

# Left-open lookback: the sample at 0 is exactly 5m old at 5m and is out.
eval instant at 5m sparse

eval instant at 4m59s sparse
  sparse 1

eval instant at 25s with_stale

eval instant at 35s with_stale
  with_stale 4

eval instant at 50s metric offset 20s
  metric 3

eval instant at 50s metric offset -20s
  metric 7

eval instant at 0s metric @ 50
  metric 5

eval range from 0 to 40s step 20s metric @ 100
  metric 10 10 10

eval instant at 100s count_over_time(metric[30s])
  {} 3

eval instant at 100s count_over_time(metric[30s] @ 30)
  {} 3

eval instant at 10s {__name__="metric"}
  metric 1
"#,
    );
}

#[test]
fn rate_family_and_over_time() {
    run_script(
        r#"
load 1m
  http_requests_total{job="a"} 0+10x10
  gauge 5 3 8 1 9

eval instant at 5m rate(http_requests_total[5m])
  {job="a"} 0.16666666666666666

eval instant at 5m increase(http_requests_total[5m])
  {job="a"} 50

eval instant at 4m delta(gauge[5m])
  {} 5

eval instant at 4m irate(gauge[5m])
  {} 0.13333333333333333

eval instant at 4m idelta(gauge[5m])
  {} 8

eval instant at 4m resets(gauge[5m])
  {} 2

eval instant at 4m changes(gauge[5m])
  {} 4

eval instant at 4m max_over_time(gauge[5m])
  {} 9

eval instant at 4m min_over_time(gauge[5m])
  {} 1

eval instant at 4m avg_over_time(gauge[5m])
  {} 5.2

eval instant at 4m sum_over_time(gauge[5m])
  {} 26

eval instant at 4m quantile_over_time(0.5, gauge[5m])
  {} 5

eval instant at 4m last_over_time(gauge[5m])
  gauge 9

eval instant at 4m first_over_time(gauge[5m])
  gauge 5

eval instant at 4m present_over_time(gauge[5m])
  {} 1

eval instant at 4m absent_over_time(nonexistent{job="x"}[5m])
  {job="x"} 1

eval instant at 10m deriv(http_requests_total[5m])
  {job="a"} 0.16666666666666666

eval instant at 10m predict_linear(http_requests_total[5m], 60)
  {job="a"} 110

eval instant at 4m stddev_over_time(gauge[5m])
  {} 2.9933259094191533

eval range from 0 to 4m step 2m sum_over_time(gauge[1m])
  {} 5 8 9
"#,
    );
}

#[test]
fn non_counter_info_annotation_has_position() {
    run_script(
        r#"
load 1m
  requests 0+10x10
  requests_total 0+10x10

eval instant at 5m rate(requests[5m])
  expect info msg: PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: "requests" (1:6)
  {} 0.16666666666666666

eval instant at 5m rate(requests_total[5m])
  expect no_info
  {} 0.16666666666666666

eval range from 0 to 2m step 1m sort(requests)
  expect warn msg: PromQL warning: sort is ineffective for range queries since results are always ordered by labels (1:1)
  requests 0 10 20
"#,
    );
}

#[test]
fn binary_operators_and_matching() {
    run_script(
        r#"
load 1m
  a{job="x", inst="1"} 10
  a{job="x", inst="2"} 20
  b{job="x"} 2
  c{job="x", inst="1"} 1
  c{job="x", inst="2"} 2

eval instant at 0 a / on(job) group_left b
  {job="x", inst="1"} 5
  {job="x", inst="2"} 10

eval instant at 0 a > 15
  a{job="x", inst="2"} 20

eval instant at 0 a > bool 15
  {job="x", inst="1"} 0
  {job="x", inst="2"} 1

eval instant at 0 1 < bool 2
  1

eval instant at 0 2 ^ 3 ^ 2
  512

eval instant at 0 -2 ^ 2
  -4

eval instant at 0 a - c
  {job="x", inst="1"} 9
  {job="x", inst="2"} 18

eval instant at 0 a and c{inst="1"}
  a{job="x", inst="1"} 10

eval instant at 0 a unless c{inst="1"}
  a{job="x", inst="2"} 20

eval instant at 0 c or b
  c{job="x", inst="1"} 1
  c{job="x", inst="2"} 2
  b{job="x"} 2

eval instant at 0 a / on(job) b
  expect fail msg: multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)

eval instant at 0 b / on(job) group_left a
  expect fail msg: found duplicate series for the match group {job="x"} on the right hand-side of the operation: [{__name__="a", inst="1", job="x"}, {__name__="a", inst="2", job="x"}];many-to-many matching not allowed: matching labels must be unique on one side

eval instant at 0 a atan2 c
  {job="x", inst="1"} 1.4711276743037347
  {job="x", inst="2"} 1.4711276743037347

eval instant at 0 a % 7
  {job="x", inst="1"} 3
  {job="x", inst="2"} 6
"#,
    );
}

#[test]
fn aggregations() {
    run_script(
        r#"
load 1m
  m{g="a", i="1"} 1
  m{g="a", i="2"} 2
  m{g="b", i="3"} 3
  m{g="b", i="4"} NaN

eval instant at 0 sum by (g) (m)
  {g="a"} 3
  {g="b"} NaN

eval instant at 0 avg without (i) (m{g="a"})
  {g="a"} 1.5

eval instant at 0 max(m)
  {} 3

eval instant at 0 min by (g) (m)
  {g="a"} 1
  {g="b"} 3

eval instant at 0 count(m)
  {} 4

eval instant at 0 group(m)
  {} 1

eval instant at 0 stddev(m{g="a"})
  {} 0.5

eval instant at 0 stdvar(m{g="a"})
  {} 0.25

eval instant at 0 quantile(0.5, m{g="a"})
  {} 1.5

eval instant at 0 topk(2, m)
  expect ordered
  m{g="b", i="3"} 3
  m{g="a", i="2"} 2

eval instant at 0 bottomk(1, m)
  m{g="a", i="1"} 1

eval instant at 0 count_values("v", m{g="a"})
  {v="1"} 1
  {v="2"} 1

eval instant at 0 topk(NaN, m)
  expect fail msg: Parameter value is NaN

eval instant at 0 quantile(2, m{g="a"})
  expect warn msg: PromQL warning: quantile value should be between 0 and 1, got 2 (1:10)
  {} Inf

eval instant at 0 sort_desc(m{g="a"})
  expect ordered
  m{g="a", i="2"} 2
  m{g="a", i="1"} 1

eval instant at 0 count_values("a\xc5z", m)
  expect fail msg: invalid label name "a\xc5z"
"#,
    );
}

#[test]
fn subqueries_and_at_modifier() {
    run_script(
        r#"
load 10s
  metric 1 2

eval instant at 10s sum_over_time(metric[50s:10s])
  {} 3

eval instant at 10s sum_over_time(metric[50s:5s])
  {} 4

eval instant at 10s rate(metric[20s:10s])
  {} 0.1

eval instant at 100s sum_over_time(metric[50s:10s] @ 10)
  {} 3

eval instant at 10s max_over_time(metric[1m:10s] offset 5s)
  {} 1
"#,
    );
}

#[test]
fn functions_and_labels() {
    run_script(
        r#"
load 5m
  testmetric{src="a-1", dst="x"} 0
  testmetric{src="b-2", dst="y"} 1
  hist_bucket{le="0.1"} 50
  hist_bucket{le="0.2"} 90
  hist_bucket{le="+Inf"} 100
  dup{src="a", dst="x"} 0
  dup{src="b", dst="x"} 1

eval instant at 0 label_replace(testmetric, "dst", "d-$1", "src", "([a-z])-.*")
  testmetric{src="a-1", dst="d-a"} 0
  testmetric{src="b-2", dst="d-b"} 1

eval instant at 0 label_join(testmetric, "j", ":", "src", "dst")
  testmetric{src="a-1", dst="x", j="a-1:x"} 0
  testmetric{src="b-2", dst="y", j="b-2:y"} 1

eval instant at 0 label_replace(dup, "src", "", "", "")
  expect fail msg: vector cannot contain metrics with the same labelset

eval instant at 0 histogram_quantile(0.5, hist_bucket)
  {} 0.1

eval instant at 0 histogram_quantile(0.95, hist_bucket)
  {} 0.2

eval instant at 0 histogram_fraction(0, 0.1, hist_bucket)
  {} 0.5

eval instant at 0 clamp(testmetric, 0.5, 2)
  {src="a-1", dst="x"} 0.5
  {src="b-2", dst="y"} 1

eval instant at 0 scalar(testmetric)
  NaN

eval instant at 0 vector(time())
  {} 0

eval instant at 1h month()
  {} 1

eval instant at 0 day_of_week(vector(86400 * 3))
  {} 0

eval instant at 0 days_in_month(vector(951782400))
  {} 29

eval instant at 0 round(vector(2.5))
  {} 3

eval instant at 0 absent(nonexistent{job="a", job="b", x="y"})
  {x="y"} 1

eval instant at 0 sort_by_label(testmetric, "src")
  expect ordered
  testmetric{src="a-1", dst="x"} 0
  testmetric{src="b-2", dst="y"} 1

eval instant at 0 timestamp(testmetric)
  {src="a-1", dst="x"} 0
  {src="b-2", dst="y"} 0

eval instant at 0 pi()
  3.141592653589793
"#,
    );
}

#[test]
fn delayed_name_removal() {
    run_script(
        r#"
load 5m
  metric_total{env="1"} 0 60 120
  other_total{env="1"} 60 120 180

eval instant at 10m label_replace(rate({env="1"}[10m]), "__name__", "rate_$1", "__name__", "(.+)")
  rate_metric_total{env="1"} 0.2
  rate_other_total{env="1"} 0.2

eval instant at 10m rate({env="1"}[10m])
  expect fail msg: vector cannot contain metrics with the same labelset

eval instant at 10m metric_total <= other_total
  metric_total{env="1"} 120
"#,
    );
}

#[test]
fn immediate_name_removal_when_delayed_removal_is_off() {
    common::run_script_with(
        r#"
load 5m
  metric_total{env="1"} 0 60 120
  other_total{env="1"} 60 120 180

# Without delayed removal, rate drops the name at once: the two outputs collide.
eval instant at 10m rate({env="1"}[10m])
  expect fail msg: vector cannot contain metrics with the same labelset

eval instant at 10m label_replace(rate(metric_total[10m]), "n", "$1", "__name__", "(.*)")
  {env="1"} 0.2

eval instant at 10m -metric_total
  {env="1"} -120
"#,
        EngineOptions {
            enable_delayed_name_removal: false,
            ..Default::default()
        },
    );
}

#[test]
fn histogram_annotations() {
    run_script(
        r#"
load 1m
  h_bucket{le="1"} 10
  h_bucket{le="bad"} 5
  h_bucket{le="+Inf"} 8

eval instant at 0 histogram_quantile(0.5, h_bucket)
  expect warn msg: PromQL warning: bucket label "le" is missing or has a malformed value of "bad" for metric name "h_bucket" (1:25)
  expect info
  {} 0.5
"#,
    );
}

#[test]
fn range_query_output_is_sorted_matrix() {
    let mut st = MemStorage::new();
    load(
        &mut st,
        60_000,
        r#"m{x="b"} 1 2 3
m{x="a"} 4 5 6"#,
    );
    let e = Engine::new(EngineOptions::default());
    let r = e.range(&st, "m * 2", 0, 120_000, 60_000).unwrap();
    let Value::Matrix(m) = r.value else {
        panic!("not a matrix")
    };
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].metric.get("x"), Some("a"));
    assert_eq!(m[0].floats, vec![(0, 8.0), (60_000, 10.0), (120_000, 12.0)]);
    // Scalars come back as a single label-less series.
    let r = e.range(&st, "time()", 0, 120_000, 60_000).unwrap();
    assert!(matches!(r.value, Value::Matrix(ref m) if m.len() == 1 && m[0].floats.len() == 3));
}

/// Prometheus' `TestMaxQuerySamples` cases for float data: each query must
/// fit in exactly `max` samples and fail with one fewer.
#[test]
fn max_samples_counted_like_prometheus() {
    let mut st = MemStorage::new();
    load(
        &mut st,
        10_000,
        "metric 1+1x100\nbigmetric{a=\"1\"} 1+1x100\nbigmetric{a=\"2\"} 1+1x100",
    );
    let cases: &[(&str, usize, i64, i64, i64)] = &[
        ("1", 1, 1000, 1000, 0),
        ("metric", 1, 1000, 1000, 0),
        ("metric[20s]", 2, 10_000, 10_000, 0),
        ("rate(metric[20s])", 3, 10_000, 10_000, 0),
        ("metric[20s:5s]", 3, 10_000, 10_000, 0),
        ("metric[20s] @ 10", 2, 0, 0, 0),
        ("1", 3, 0, 2000, 1000),
        ("metric", 3, 0, 2000, 1000),
        ("metric", 3, 0, 10_000, 5000),
        ("rate(bigmetric[1s])", 1, 0, 10_000, 5000),
        ("metric @ 10", 3, 0, 10_000, 5000),
        ("rate(bigmetric[10s:1s] @ 10)", 32, 0, 10_000, 5000),
        (
            "rate(bigmetric[10s:1s] @ 10) + rate(bigmetric[10s:1s] @ 30)",
            34,
            0,
            10_000,
            5000,
        ),
        (
            "rate(bigmetric[10s:1s]) + rate(bigmetric[10s:1s] @ 30)",
            56,
            10_000,
            20_000,
            5000,
        ),
        (
            "rate(rate(bigmetric[10s:1s] @ 10)[100s:25s] @ 1000)[100s:20s] @ 2000",
            32,
            10_000,
            10_000,
            0,
        ),
        (
            "rate(rate(bigmetric[10s:1s] @ 10)[100s:25s] @ 1000)[17s:1s] @ 2000",
            34,
            10_000,
            10_000,
            0,
        ),
    ];
    for &(q, max, start, end, step) in cases {
        for (limit, ok) in [(max, true), (max - 1, false)] {
            let e = Engine::new(EngineOptions {
                max_samples: limit,
                ..Default::default()
            });
            let r = if step == 0 {
                e.instant(&st, q, start)
            } else {
                e.range(&st, q, start, end, step)
            };
            match (r, ok) {
                (Ok(_), true) => {}
                (Err(QueryError::Execution(m)), false) => assert_eq!(
                    m,
                    "query processing would load too many samples into memory in query execution"
                ),
                (r, _) => panic!("{q} with limit {limit}: {r:?}"),
            }
        }
    }
}

#[test]
fn timeout_is_enforced() {
    let mut st = MemStorage::new();
    for i in 0..200 {
        let l =
            strata_tsdb::labels::Labels::from_pairs([("__name__", "m"), ("i", &*i.to_string())]);
        for t in 0..200 {
            st.add_sample(l.clone(), t * 15_000, t as f64);
        }
    }
    let e = Engine::new(EngineOptions {
        timeout: Duration::from_nanos(1),
        ..Default::default()
    });
    let err = e
        .range(&st, "sum(rate(m[5m]))", 0, 3_000_000, 1000)
        .unwrap_err();
    assert_eq!(err.error_type(), "timeout");
}

#[test]
fn error_types() {
    let st = MemStorage::new();
    let e = Engine::new(EngineOptions::default());
    let err = e.range(&st, "foo[5m]", 0, 10, 1).unwrap_err();
    assert_eq!(
        err,
        QueryError::BadData(
            "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".into()
        )
    );
    assert_eq!(
        e.instant(&st, "sum(", 0).unwrap_err().error_type(),
        "bad_data"
    );
    assert_eq!(
        e.instant(&st, "mad_over_time(foo[5m])", 0).unwrap_err(),
        QueryError::BadData("function \"mad_over_time\" is not enabled".into())
    );
    assert_eq!(
        e.range(&st, "1", 0, 10, 0).unwrap_err().error_type(),
        "bad_data"
    );
    let r = e.instant(&st, "\"hello\"", 5).unwrap();
    assert_eq!(r.value, Value::String(5, "hello".into()));
    assert_eq!(
        e.instant(&st, "1 + 1", 5).unwrap().value,
        Value::Scalar(5, 2.0)
    );
}

struct Failing;

impl Queryable for Failing {
    fn select(&self, _: &[Matcher], _: &SelectHints) -> Result<SelectResult, StorageError> {
        Err(StorageError("disk on fire".into()))
    }
}

#[test]
fn storage_errors_are_execution_errors() {
    let e = Engine::new(EngineOptions::default());
    let err = e.instant(&Failing, "up", 0).unwrap_err();
    assert_eq!(err.error_type(), "execution");
    assert!(err.to_string().contains("disk on fire"));
}

/// Records every select so tests can check the hints.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(Vec<String>, SelectHints)>>,
    warnings: Vec<String>,
}

impl Queryable for Recorder {
    fn select(&self, m: &[Matcher], h: &SelectHints) -> Result<SelectResult, StorageError> {
        self.calls
            .lock()
            .unwrap()
            .push((m.iter().map(|m| format!("{m:?}")).collect(), h.clone()));
        Ok(SelectResult {
            series: Vec::new(),
            warnings: self.warnings.clone(),
        })
    }
}

#[test]
fn select_hints_and_one_select_per_selector() {
    let r = Recorder {
        warnings: vec!["partial response".into()],
        ..Default::default()
    };
    let e = Engine::new(EngineOptions::default());
    let res = e
        .range(
            &r,
            "sum by (job) (rate(http_total{a=\"b\"}[5m] offset 1m))",
            600_000,
            1_200_000,
            60_000,
        )
        .unwrap();
    assert_eq!(res.warnings, vec!["partial response".to_string()]);
    let calls = r.calls.lock().unwrap();
    assert_eq!(calls.len(), 1, "a range query selects once per selector");
    let h = &calls[0].1;
    assert_eq!(h.start, 600_000 - 60_000 - 300_000 + 1);
    assert_eq!(h.end, 1_200_000 - 60_000);
    assert_eq!(h.step, 60_000);
    assert_eq!(h.range, 300_000);
    assert_eq!(h.func.as_deref(), Some("rate"));
    drop(calls);

    let r = Recorder::default();
    e.instant(&r, "max_over_time(foo[10m:1m] @ 100)", 0)
        .unwrap();
    e.instant(&r, "sum without (i) (foo)", 1_000_000).unwrap();
    let calls = r.calls.lock().unwrap();
    let h = &calls[0].1;
    // Inside a subquery pinned at 100s: [100s - 10m - 5m + 1ms, 100s].
    assert_eq!(
        (h.start, h.end, h.step),
        (100_000 - 600_000 - 300_000 + 1, 100_000, 60_000)
    );
    // The hinted function looks through the subquery.
    assert_eq!(h.func.as_deref(), Some("max_over_time"));
    let h = &calls[1].1;
    assert_eq!(h.func.as_deref(), Some("sum"));
    assert!(!h.by);
    assert_eq!(h.grouping, vec!["i".to_string()]);
}

/// Queries right at the depth limit must evaluate on a small (2 MiB) stack.
#[test]
fn deep_queries_within_limits_fit_a_small_stack() {
    let h = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            let st = MemStorage::new();
            let e = Engine::new(EngineOptions::default());
            let nested = format!("{}1{}", "(".repeat(500), ")".repeat(500));
            assert_eq!(
                e.instant(&st, &nested, 0).unwrap().value,
                Value::Scalar(0, 1.0)
            );
            let chain = vec!["1"; 500].join(" + ");
            assert_eq!(
                e.instant(&st, &chain, 0).unwrap().value,
                Value::Scalar(0, 500.0)
            );
            let neg = format!("{}vector(1)", "-".repeat(500));
            assert!(e.instant(&st, &neg, 0).is_ok());
            let fns = format!("{}vector(1){}", "abs(".repeat(250), ")".repeat(250));
            assert!(e.range(&st, &fns, 0, 60_000, 1000).is_ok());
            let too_deep = format!("{}1{}", "(".repeat(600), ")".repeat(600));
            assert_eq!(
                e.instant(&st, &too_deep, 0).unwrap_err().error_type(),
                "bad_data"
            );
        })
        .unwrap();
    h.join().unwrap();
}

/// Native histograms through the public API: stored with
/// `MemStorage::add_histogram`, returned in `Sample::h` and
/// `Series::histograms`, combined by functions, aggregations and operators.
#[test]
fn native_histograms_end_to_end() {
    use strata_promql::histogram::{FloatHistogram, Span};
    use strata_tsdb::labels::Labels;

    let h = |n: f64| FloatHistogram {
        count: 3.0 * n,
        sum: 6.0 * n,
        positive_spans: vec![Span {
            offset: 0,
            length: 2,
        }],
        positive_buckets: vec![n, 2.0 * n],
        ..Default::default()
    };
    let mut s = MemStorage::new();
    for (job, k) in [("a", 1.0), ("b", 2.0)] {
        let l = Labels::from_pairs([("__name__", "req"), ("job", job)]);
        for i in 0..=10 {
            s.add_histogram(l.clone(), i * 60_000, h(k * (i + 1) as f64));
        }
    }
    let e = Engine::new(EngineOptions::default());

    // A selector returns the histogram itself, hint as the TSDB reads it.
    let r = e.instant(&s, "req{job=\"a\"}", 600_000).unwrap();
    let Value::Vector(v) = &r.value else {
        panic!("{:?}", r.value)
    };
    let got = v[0].h.as_ref().expect("a histogram sample");
    assert_eq!((got.count, got.sum), (33.0, 66.0));
    assert_eq!(got.positive_buckets, vec![11.0, 22.0]);

    // increase() over histograms, then histogram_count().
    let r = e
        .instant(&s, "histogram_count(increase(req{job=\"a\"}[5m]))", 600_000)
        .unwrap();
    let Value::Vector(v) = &r.value else {
        panic!("{:?}", r.value)
    };
    // 4 increments of 3 within the window, extrapolated to 5m: 15.
    assert!((v[0].f - 15.0).abs() < 1e-9, "{v:?}");

    // sum() of histograms, h - h, h * scalar, trim operator.
    for (q, count) in [
        ("histogram_count(sum(req))", 99.0),
        (
            "histogram_count(req{job=\"b\"} - ignoring(job) req{job=\"a\"})",
            33.0,
        ),
        ("histogram_count(req{job=\"a\"} * 2)", 66.0),
        ("histogram_count(req{job=\"a\"} </ 1)", 11.0),
    ] {
        let r = e.instant(&s, q, 600_000).unwrap();
        let Value::Vector(v) = &r.value else {
            panic!("{q}: {:?}", r.value)
        };
        assert_eq!(v.len(), 1, "{q}");
        assert!((v[0].f - count).abs() < 1e-9, "{q}: {}", v[0].f);
    }

    // Float-only operations drop histograms, with an info where Prometheus gives one.
    let r = e.instant(&s, "max(req)", 600_000).unwrap();
    assert_eq!(r.value, Value::Vector(vec![]));
    assert!(
        r.infos[0].contains("ignored histogram in max aggregation"),
        "{:?}",
        r.infos
    );

    // Range queries return histogram points in `Series::histograms`.
    let r = e.range(&s, "req{job=\"b\"}", 0, 120_000, 60_000).unwrap();
    let Value::Matrix(m) = &r.value else {
        panic!("{:?}", r.value)
    };
    assert!(m[0].floats.is_empty());
    let counts: Vec<f64> = m[0].histograms.iter().map(|(_, h)| h.count).collect();
    assert_eq!(counts, vec![6.0, 12.0, 18.0]);

    // Histograms count against max_samples by their size, like Prometheus.
    let small = Engine::new(EngineOptions {
        max_samples: 20,
        ..EngineOptions::default()
    });
    let err = small.instant(&s, "req[10m]", 600_000).unwrap_err();
    assert!(err.to_string().contains("too many samples"), "{err}");
}

/// The experimental `info()` function: labels of `target_info` (or the
/// chosen info metrics) joined on `instance`/`job`, newest info sample wins.
#[test]
fn info_function_adds_info_labels() {
    run_script(
        r#"
load 5m
  metric{instance="a", job="1", label="x"} 0 1 2
  target_info{instance="a", job="1", data="d1", label="other"} 1 1 _
  target_info{instance="a", job="1", data="d2"} _ _ 1
  build_info{instance="a", job="1", version="v1"} 1 1 1

# Existing labels of the base series win over info labels.
eval instant at 5m info(metric)
  metric{instance="a", job="1", label="x", data="d1"} 1

eval instant at 10m info(metric)
  metric{instance="a", job="1", label="x", data="d2"} 2

# The second argument picks info metrics and data labels.
eval instant at 5m info(metric, {__name__="build_info"})
  metric{instance="a", job="1", label="x", version="v1"} 1

eval instant at 5m info(metric, {data=~".+"})
  metric{instance="a", job="1", label="x", data="d1"} 1

# Info series themselves pass through unchanged.
eval instant at 5m info(target_info{data="d1"})
  target_info{instance="a", job="1", data="d1", label="other"} 1
"#,
    );
}

/// The experimental `fill`/`fill_left`/`fill_right` binary-operator modifiers.
#[test]
fn fill_modifiers_stand_in_for_missing_partners() {
    run_script(
        r#"
load 1m
  left{k="a"} 1
  left{k="b"} 2
  right{k="b"} 10
  right{k="c"} 20

eval instant at 0 left + fill(0) right
  {k="a"} 1
  {k="b"} 12
  {k="c"} 20

eval instant at 0 left + fill_right(100) right
  {k="a"} 101
  {k="b"} 12

eval instant at 0 left - fill_left(5) right
  {k="b"} -8
  {k="c"} -15
"#,
    );
}

/// The experimental `anchored` and `smoothed` range modifiers.
#[test]
fn anchored_and_smoothed_ranges() {
    run_script(
        r#"
load 10s
  c 0 10 20 30 40 50 60

# Anchored: the sample before the window counts, no extrapolation.
eval instant at 35s increase(c[20s] anchored)
  {} 20

eval instant at 35s resets(c[20s] anchored)
  {} 0

# Smoothed: values at the window edges are interpolated.
eval instant at 35s increase(c[20s] smoothed)
  {} 20

eval instant at 35s rate(c[20s] smoothed)
  {} 1

eval instant at 35s max_over_time(c[20s] anchored)
  expect fail msg: anchored modifier can only be used with: changes, delta, increase, rate, resets - not with max_over_time
"#,
    );
}

/// The experimental `smoothed` modifier on instant selectors interpolates
/// between the samples around each step.
#[test]
fn smoothed_instant_selector_interpolates() {
    run_script(
        r#"
load 10s
  m 0 10 20

eval instant at 15s m smoothed
  m 15

eval instant at 10s m smoothed
  m 10

# After the last sample: carried forward.
eval instant at 25s m smoothed
  m 20
"#,
    );
}

/// A storage of two partitions (`cluster="c1"`, `cluster="c2"`), each a
/// `MemStorage` whose series carry their cluster label, that evaluates
/// partition-local queries store by store like a distributed querier.
struct Partitioned {
    parts: Vec<MemStorage>,
    union: MemStorage,
    handed: Mutex<Vec<String>>,
}

impl Queryable for Partitioned {
    fn select(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<SelectResult, StorageError> {
        self.union.select(matchers, hints)
    }

    fn partition_labels(&self) -> Option<Vec<String>> {
        Some(vec!["cluster".to_string()])
    }

    fn eval_partitioned(
        &self,
        q: &strata_promql::PartitionedQuery<'_>,
    ) -> Option<Result<strata_promql::PartitionedResult, StorageError>> {
        self.handed.lock().unwrap().push(q.query.to_string());
        let engine = Engine::new(EngineOptions {
            lookback_delta: q.lookback,
            ..EngineOptions::default()
        });
        let mut out = strata_promql::PartitionedResult::default();
        for part in &self.parts {
            let res = if q.step == 0 {
                engine.instant(part, q.query, q.start)
            } else {
                engine.range(part, q.query, q.start, q.end, q.step)
            };
            let res = match res {
                Ok(r) => r,
                Err(e) => return Some(Err(StorageError(e.to_string()))),
            };
            out.warnings.extend(res.warnings);
            out.warnings.extend(res.infos);
            match res.value {
                Value::Vector(v) => out
                    .series
                    .extend(v.into_iter().map(|s| (s.metric, vec![(s.t, s.f)]))),
                Value::Matrix(m) => out
                    .series
                    .extend(m.into_iter().map(|s| (s.metric, s.floats))),
                _ => return None,
            }
        }
        Some(Ok(out))
    }
}

/// The engine hands exactly the partition-local queries to the storage,
/// and their concatenated per-partition answers equal the answer over all
/// data; every other query is evaluated over the union as before.
#[test]
fn partition_local_queries_are_handed_over_and_agree() {
    let data = r#"
        requests_total{cluster="CL", pod="a", code="200"} 0+10x40
        requests_total{cluster="CL", pod="a", code="500"} 0+1x40
        requests_total{cluster="CL", pod="b", code="200"} 0+20x40
        mem{cluster="CL", pod="a"} 100+3x40
        mem{cluster="CL", pod="b"} 50-1x40
    "#;
    let mut parts = Vec::new();
    let mut union = MemStorage::new();
    for (i, c) in ["c1", "c2"].iter().enumerate() {
        let body = data
            .replace("CL", c)
            .replace("0+10x40", &format!("{i}+1{i}x40"));
        let mut st = MemStorage::new();
        load(&mut st, 15_000, &body);
        load(&mut union, 15_000, &body);
        parts.push(st);
    }
    let p = Partitioned {
        parts,
        union,
        handed: Mutex::new(Vec::new()),
    };
    let engine = Engine::new(EngineOptions::default());
    let local = [
        "sum by (cluster) (rate(requests_total[2m]))",
        "sum by (cluster) (rate(requests_total{code=~\"5..\"}[2m])) / sum by (cluster) (rate(requests_total[2m]))",
        "1 - sum by (cluster) (mem) / sum by (cluster, pod) (mem)",
        "topk by (cluster) (1, mem)",
        "count by (cluster) (mem > 60)",
        "max_over_time(mem[3m])",
    ];
    let global = [
        "sum(rate(requests_total[2m]))",
        "topk(1, mem)",
        "sum by (pod) (mem)",
        "mem / ignoring (cluster) group_left sum by (pod) (mem)",
    ];
    for q in local.iter().chain(global.iter()) {
        for (start, end, step) in [(300_000, 300_000, 0), (60_000, 540_000, 30_000)] {
            let run = |st: &dyn Queryable| {
                if step == 0 {
                    engine.instant(st, q, start)
                } else {
                    engine.range(st, q, start, end, step)
                }
            };
            let want = run(&p.union).expect(q);
            let got = run(&p).expect(q);
            let sorted = |v: Value| match v {
                Value::Vector(mut v) => {
                    v.sort_by(|a, b| a.metric.cmp(&b.metric));
                    Value::Vector(v)
                }
                other => other,
            };
            assert_eq!(
                sorted(got.value),
                sorted(want.value),
                "{q} at {start}..{end}/{step}"
            );
        }
    }
    let handed = p.handed.lock().unwrap().clone();
    for q in local {
        assert_eq!(
            handed.iter().filter(|h| h.as_str() == q).count(),
            2,
            "{q} not handed over"
        );
    }
    for q in global {
        assert!(!handed.iter().any(|h| h.as_str() == q), "{q} handed over");
    }
}
