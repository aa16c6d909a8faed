//! Property tests: query strings are untrusted, so no input may panic the
//! parser or the engine. Two generators: arbitrary text, and random but
//! mostly well-formed PromQL built from the language's own vocabulary (which
//! reaches deep into evaluation with odd values, offsets and ranges).

mod common;

use std::time::Duration;

use proptest::prelude::*;
use strata_promql::{parse, Engine, EngineOptions, MemStorage};

fn storage() -> MemStorage {
    let mut st = MemStorage::new();
    common::load(
        &mut st,
        15_000,
        r#"foo{job="a", le="0.1"} 0+1x40
foo{job="b", le="+Inf"} 5 NaN Inf -Inf stale 3 _ 1 0 -2x10
bar_total{job="a"} 1 2 3 stale 5 6 _ _ 100 2x10
baz 1e308 -1e308 0.5 -0x10"#
            .replace("-0x10", "-16")
            .as_str(),
    );
    st
}

fn engine() -> Engine {
    Engine::new(EngineOptions {
        timeout: Duration::from_millis(500),
        max_samples: 200_000,
        enable_experimental_functions: true,
        ..Default::default()
    })
}

fn selector() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("foo".to_string()),
        Just("bar_total".to_string()),
        Just(r#"foo{job=~"a|b"}"#.to_string()),
        Just(r#"{__name__=~".+"}"#.to_string()),
        Just("nonexistent".to_string()),
        Just("baz".to_string()),
    ]
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        (-1e3f64..1e3).prop_map(|f| format!("{f}")),
        Just("NaN".to_string()),
        Just("Inf".to_string()),
        Just("-Inf".to_string()),
        Just("0x1f".to_string()),
    ]
}

fn duration() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1ms".to_string()),
        Just("15s".to_string()),
        Just("1m".to_string()),
        Just("5m".to_string()),
        Just("1h".to_string()),
        Just("10y".to_string()),
        (1u32..1000).prop_map(|n| format!("{n}s")),
    ]
}

fn modifiers() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        duration().prop_map(|d| format!(" offset {d}")),
        duration().prop_map(|d| format!(" offset -{d}")),
        (-1e6f64..1e6).prop_map(|t| format!(" @ {t}")),
        Just(" @ start()".to_string()),
        Just(" @ end()".to_string()),
    ]
}

fn range_expr(inner: BoxedStrategy<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        (selector(), duration(), modifiers()).prop_map(|(l, d, m)| format!("{l}[{d}]{m}")),
        (inner, duration(), prop::option::of(duration()), modifiers())
            .prop_map(|(e, r, s, m)| format!("({e})[{r}:{}]{m}", s.unwrap_or_default())),
    ]
}

const RANGE_FUNCS: &[&str] = &[
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "changes",
    "resets",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "last_over_time",
    "first_over_time",
    "present_over_time",
    "absent_over_time",
    "mad_over_time",
    "ts_of_max_over_time",
    "ts_of_min_over_time",
    "ts_of_first_over_time",
    "ts_of_last_over_time",
];
const VEC_FUNCS: &[&str] = &[
    "abs",
    "ceil",
    "floor",
    "exp",
    "sqrt",
    "ln",
    "log2",
    "log10",
    "sin",
    "acosh",
    "atanh",
    "sgn",
    "round",
    "timestamp",
    "sort",
    "sort_desc",
    "absent",
    "year",
    "month",
    "hour",
    "day_of_week",
    "days_in_month",
    "day_of_year",
    "minute",
    "rad",
    "deg",
];
const AGGS: &[&str] = &[
    "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar",
];
const KAGGS: &[&str] = &["topk", "bottomk", "quantile", "limitk", "limit_ratio"];
const OPS: &[&str] = &[
    "+", "-", "*", "/", "%", "^", "atan2", "==", "!=", ">", "<", ">=", "<=", "> bool", "and", "or",
    "unless",
];

fn expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        4 => (selector(), modifiers()).prop_map(|(l, m)| format!("{l}{m}")),
        1 => number(),
        1 => Just("vector(time())".to_string()),
    ];
    leaf.prop_recursive(5, 48, 4, |inner| {
        let boxed = inner.clone().boxed();
        prop_oneof![
            (prop::sample::select(RANGE_FUNCS), range_expr(boxed.clone()))
                .prop_map(|(f, r)| format!("{f}({r})")),
            (-2f64..2.0, range_expr(boxed.clone()))
                .prop_map(|(q, r)| format!("quantile_over_time({q}, {r})")),
            (range_expr(boxed.clone()), -1e3f64..1e3)
                .prop_map(|(r, t)| format!("predict_linear({r}, {t})")),
            (range_expr(boxed.clone()), 0f64..1.2, 0f64..1.2)
                .prop_map(|(r, a, b)| format!("double_exponential_smoothing({r}, {a}, {b})")),
            (prop::sample::select(VEC_FUNCS), inner.clone()).prop_map(|(f, e)| format!("{f}({e})")),
            inner.clone().prop_map(|e| format!("scalar({e})")),
            inner.clone().prop_map(|e| format!("vector(scalar({e}))")),
            (inner.clone(), -5f64..5.0, -5f64..5.0)
                .prop_map(|(e, a, b)| format!("clamp({e}, {a}, {b})")),
            (prop::sample::select(AGGS), inner.clone(), prop::bool::ANY).prop_map(|(a, e, by)| {
                if by {
                    format!("{a} by (job) ({e})")
                } else {
                    format!("{a} without (le) ({e})")
                }
            }),
            (prop::sample::select(KAGGS), -3f64..5.0, inner.clone())
                .prop_map(|(a, k, e)| format!("{a}({k}, {e})")),
            inner
                .clone()
                .prop_map(|e| format!("count_values(\"v\", {e})")),
            (-1f64..2.0, inner.clone()).prop_map(|(q, e)| format!("histogram_quantile({q}, {e})")),
            inner
                .clone()
                .prop_map(|e| format!("histogram_fraction(0, 0.2, {e})")),
            inner
                .clone()
                .prop_map(|e| format!("label_replace({e}, \"dst\", \"$1\", \"job\", \"(.*)\")")),
            inner
                .clone()
                .prop_map(|e| format!("label_join({e}, \"__name__\", \",\", \"job\", \"le\")")),
            (
                inner.clone(),
                prop::sample::select(OPS),
                inner.clone(),
                0usize..5
            )
                .prop_map(|(a, op, b, m)| {
                    let modifier = [
                        "",
                        " on(job)",
                        " ignoring(le)",
                        " on(job) group_left(le)",
                        " ignoring(job) group_right()",
                    ][m];
                    format!("({a}) {op}{modifier} ({b})")
                }),
            inner.clone().prop_map(|e| format!("-({e})")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_text_never_panics(q in "\\PC{0,120}") {
        let st = storage();
        let e = engine();
        let _ = parse(&q, e.options());
        let _ = e.instant(&st, &q, 60_000);
        let _ = e.range(&st, &q, 0, 300_000, 15_000);
    }

    #[test]
    fn promql_like_text_never_panics(q in "[a-z_(){}\\[\\]0-9.,:@ +*/%^=!<>~\"'`#-]{0,80}") {
        let st = storage();
        let e = engine();
        let _ = parse(&q, e.options());
        let _ = e.instant(&st, &q, 60_000);
    }

}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

/// Runs generated queries as instant and range queries. Proptest's deeply
/// recursive strategies need more stack than a test thread has in debug
/// builds, so this runs on its own thread.
#[test]
fn generated_queries_never_panic() {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(|| {
            let st = storage();
            let e = engine();
            let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
                cases: cases(),
                ..ProptestConfig::default()
            });
            runner
                .run(
                    &(expr(), -1_000_000i64..2_000_000, 1i64..120_000),
                    |(q, t, step)| {
                        let _ = e.instant(&st, &q, t);
                        let _ = e.range(&st, &q, t, t + 20 * step, step);
                        Ok(())
                    },
                )
                .unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
}

/// The generator is only useful if most of what it produces is valid
/// PromQL that reaches evaluation.
#[test]
fn generator_mostly_produces_evaluable_queries() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let st = storage();
    let e = engine();
    let mut runner = TestRunner::deterministic();
    let strat = expr();
    let (mut ok, mut total) = (0, 0);
    for _ in 0..300 {
        let q = strat.new_tree(&mut runner).unwrap().current();
        total += 1;
        match e.instant(&st, &q, 60_000) {
            Ok(_) => ok += 1,
            Err(err) => {
                if std::env::var("FUZZ_DEBUG").is_ok() {
                    println!("ERR {err} :: {q}");
                }
            }
        }
    }
    assert!(
        ok * 2 > total,
        "only {ok}/{total} generated queries evaluated"
    );
}
