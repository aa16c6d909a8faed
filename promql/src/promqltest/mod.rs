//! PromQL conformance harness: a runner for Prometheus's `promqltest` files.
//!
//! Prometheus checks its engine against `*.test` files (`load` series, `eval`
//! queries, expected results); this module runs the same files against this
//! crate's [`Engine`], so conformance is measured by upstream's own tests. The
//! format and the matching rules follow upstream's `promql/promqltest`:
//!
//! * [`parse`]: commands (`load`, `load_with_nhcb`, `clear`,
//!   `eval instant|range`, the `expect …` lines and the deprecated
//!   `eval_fail`/`eval_warn`/`eval_info`/`eval_ordered`,
//!   `expected_fail_message`/`expected_fail_regexp`);
//! * [`series`]: series descriptions (`1+2x3 _ stale {{…}}`);
//! * [`compare`]: result matching (`almost.Equal` with epsilon 1e-6);
//! * [`run`]: execution, including upstream's `@` re-runs and
//!   range-consistency re-runs of every instant eval.
//!
//! Differences from upstream, all in the direction of keeping a scoreboard:
//! a malformed command fails only itself (upstream aborts the file); each
//! eval is counted pass/fail instead of stopping at the first failure; an
//! engine panic fails the eval instead of the run; `eval instant` without
//! `at` means `at 0`. Native histograms (`{{…}}`, and the custom-bucket
//! histograms `load_with_nhcb` derives from classic ones) are stored and
//! compared like upstream does (both sides compacted, floats within the
//! epsilon, the counter reset hint only when the test names one).
//!
//! The module does no IO: callers pass file contents (the `strata tools
//! promqltest` command reads the files).

mod compare;
mod parse;
mod run;
mod series;
mod text;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crate::{Engine, EngineOptions};
use parse::{parse_file, Command};
use run::Runner;

/// One failed eval (or an unparsable line) of a test file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// 1-based line of the eval (or of the bad line).
    pub line: usize,
    /// The query, or the line's text when it is not an eval.
    pub expr: String,
    /// What went wrong: the first difference, expected vs got.
    pub reason: String,
}

/// The outcome of one test file.
///
/// `passed + failed` is the number of evals. `failures` holds one entry per
/// failed eval plus one per unparsable non-eval line (a bad `load` line, an
/// unknown command), which are reported but not counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileReport {
    pub name: String,
    pub passed: usize,
    pub failed: usize,
    pub failures: Vec<Failure>,
}

/// Engine options of upstream's test engine (`NewTestEngine`): at most 10000
/// samples per query, 100 s timeout, 5 m lookback, 1 m default subquery
/// step, experimental functions and delayed `__name__` removal on.
pub fn harness_options() -> EngineOptions {
    let d = EngineOptions::default();
    EngineOptions {
        max_samples: 10_000,
        timeout: Duration::from_secs(100),
        lookback_delta: 300_000,
        no_step_subquery_interval: 60_000,
        enable_experimental_functions: true,
        enable_delayed_name_removal: true,
        max_query_length: d.max_query_length,
        max_query_depth: d.max_query_depth,
    }
}

/// `EngineOptions` field by field (the engine takes it by value and the type
/// promises no `Clone`).
fn copy_options(o: &EngineOptions) -> EngineOptions {
    EngineOptions {
        max_samples: o.max_samples,
        timeout: o.timeout,
        lookback_delta: o.lookback_delta,
        no_step_subquery_interval: o.no_step_subquery_interval,
        enable_experimental_functions: o.enable_experimental_functions,
        enable_delayed_name_removal: o.enable_delayed_name_removal,
        max_query_length: o.max_query_length,
        max_query_depth: o.max_query_depth,
    }
}

/// Parses and runs one test file (its contents) with a fresh storage and an
/// engine built from `opts`. Never panics on any input.
pub fn run_test_file(name: &str, content: &str, opts: &EngineOptions) -> FileReport {
    let engine = Engine::new(copy_options(opts));
    let mut runner = Runner::new(&engine);
    let mut report = FileReport {
        name: name.to_string(),
        ..FileReport::default()
    };
    for cmd in parse_file(content) {
        match cmd {
            Command::Load(l) => runner.load(&l),
            Command::Clear => runner.clear(),
            Command::Invalid(bad) => {
                if bad.is_eval {
                    report.failed += 1;
                }
                report.failures.push(Failure {
                    line: bad.line,
                    expr: bad.text,
                    reason: format!("cannot parse: {}", bad.reason),
                });
            }
            Command::Eval(ev) => {
                // An engine bug must cost one eval, not the whole scoreboard.
                let outcome = catch_unwind(AssertUnwindSafe(|| runner.eval(&ev)))
                    .unwrap_or_else(|p| Err(format!("engine panicked: {}", panic_message(&*p))));
                match outcome {
                    Ok(()) => report.passed += 1,
                    Err(reason) => {
                        report.failed += 1;
                        report.failures.push(Failure {
                            line: ev.line,
                            expr: ev.expr.clone(),
                            reason,
                        });
                    }
                }
            }
        }
    }
    report
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string payload)".into())
}

/// One failure as a single line, `file:line: expr: reason`, with the reason
/// flattened and cut to `max_reason` characters.
pub fn format_failure(file: &str, f: &Failure, max_reason: usize) -> String {
    let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let reason = flat(&f.reason);
    let reason = match reason.char_indices().nth(max_reason) {
        Some((cut, _)) => format!("{}…", &reason[..cut]),
        None => reason,
    };
    format!("{file}:{}: {}: {reason}", f.line, flat(&f.expr))
}

/// Totals over reports: `(passed, failed)` evals.
pub fn totals(reports: &[FileReport]) -> (usize, usize) {
    reports
        .iter()
        .fold((0, 0), |(p, f), r| (p + r.passed, f + r.failed))
}

/// A Markdown table: file (base name), evals, passed, failed, and a total
/// row. The same table goes in `CONFORMANCE.md`.
pub fn summary_table(reports: &[FileReport]) -> String {
    let mut out = String::from("| file | evals | passed | failed |\n|---|---:|---:|---:|\n");
    for r in reports {
        let base = r.name.rsplit(['/', '\\']).next().unwrap_or(&r.name);
        out.push_str(&format!(
            "| {base} | {} | {} | {} |\n",
            r.passed + r.failed,
            r.passed,
            r.failed
        ));
    }
    let (p, f) = totals(reports);
    out.push_str(&format!("| **total** | {} | {p} | {f} |\n", p + f));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(src: &str) -> FileReport {
        run_test_file("t.test", src, &harness_options())
    }

    // These use only what any engine must do (plain selectors, literals):
    // they test the harness, not the engine.

    #[test]
    fn passing_file() {
        let r = run(concat!(
            "load 1m\n",
            "  m{a=\"1\"} 1 2 3\n",
            "  m{a=\"2\"} 10+10x2\n",
            "\n",
            "eval instant at 2m m\n",
            "  m{a=\"1\"} 3\n",
            "  m{a=\"2\"} 30\n",
            "\n",
            "eval instant at 1m m{a=\"1\"}\n",
            "  m{a=\"1\"} 2.0000001\n",
            "\n",
            "eval instant at 0 42\n",
            "  42\n",
            "\n",
            "eval range from 0 to 2m step 1m m{a=\"2\"}\n",
            "  m{a=\"2\"} 10 20 30\n",
            "\n",
            "eval instant at 0 \"hi\"\n",
            "  expect string \"hi\"\n",
            "\n",
            "eval instant at 1h nothing_here\n",
        ));
        assert_eq!(r.failures, []);
        assert_eq!((r.passed, r.failed), (6, 0));
    }

    #[test]
    fn failing_eval_is_reported_with_its_line() {
        let r = run("load 1m\n  m 1 2\n\n# comment\neval instant at 1m m\n  m 3\n");
        assert_eq!((r.passed, r.failed), (0, 1));
        let f = &r.failures[0];
        assert_eq!((f.line, f.expr.as_str()), (5, "m"));
        assert_eq!(f.reason, r#"expected 3 for {__name__="m"} but got 2"#);
        assert_eq!(
            format_failure("x.test", f, 200),
            r#"x.test:5: m: expected 3 for {__name__="m"} but got 2"#
        );
    }

    #[test]
    fn missing_and_extra_series() {
        let r = run("load 1m\n  m{a=\"1\"} 1\n  m{a=\"2\"} 1\n\neval instant at 0 m\n  m{a=\"1\"} 1\n\neval instant at 0 m{a=\"1\"}\n  m{a=\"1\"} 1\n  m{a=\"3\"} 1\n");
        assert_eq!((r.passed, r.failed), (0, 2));
        assert!(
            r.failures[0].reason.starts_with("unexpected metric"),
            "{:?}",
            r.failures
        );
        assert!(
            r.failures[1].reason.contains("not found"),
            "{:?}",
            r.failures
        );
    }

    #[test]
    fn stale_markers_and_clear() {
        let r = run(concat!(
            "load 1m\n  m 1 stale 3\n\n",
            "eval instant at 1m m\n\n",
            "eval instant at 2m m\n  m 3\n\n",
            "clear\n\n",
            "eval instant at 2m m\n",
        ));
        assert_eq!(r.failures, []);
        assert_eq!(r.passed, 3);
    }

    #[test]
    fn expected_failures() {
        let r = run(concat!(
            "eval instant at 0 sum(\n  expect fail\n\n",
            "eval_fail instant at 0 sum(\n\n",
            "eval instant at 0 1\n  expect fail\n\n",
            "eval instant at 0 sum(\n  expect fail msg: definitely not this\n\n",
        ));
        assert_eq!((r.passed, r.failed), (2, 2), "{:?}", r.failures);
        assert!(
            r.failures[0].reason.contains("expected an error"),
            "{:?}",
            r.failures
        );
        assert!(r.failures[1]
            .reason
            .contains("expected error matching message"));
    }

    #[test]
    fn annotations_are_checked() {
        // The stand-in (like a correct engine) returns no annotations here.
        let r = run("load 1m\n  m 1\n\neval instant at 0 m\n  expect warn\n  m 1\n\neval instant at 0 m\n  expect no_warn\n  expect no_info\n  m 1\n\neval_info instant at 0 m\n  m 1\n");
        assert_eq!((r.passed, r.failed), (1, 2), "{:?}", r.failures);
        assert!(r.failures[0]
            .reason
            .contains("expected warn annotations but none"));
        assert!(r.failures[1]
            .reason
            .contains("expected info annotations but got none"));
    }

    #[test]
    fn invalid_lines_are_reported_not_fatal() {
        let r = run("load 1m\n  m 1\n  bad{ 1\n\nfrobnicate\n\neval instant at 1x m\n\neval instant at 0 m\n  m 1\n");
        assert_eq!((r.passed, r.failed), (1, 1), "{:?}", r.failures);
        let lines: Vec<usize> = r.failures.iter().map(|f| f.line).collect();
        assert_eq!(lines, [3, 5, 7]);
        assert!(r
            .failures
            .iter()
            .all(|f| f.reason.starts_with("cannot parse")));
    }

    #[test]
    fn native_histograms_are_loaded_and_compared() {
        let r = run(concat!(
            "load 1m\n  h {{schema:0 sum:1 count:1 buckets:[1]}}+{{sum:1 count:1 buckets:[1]}}x2\n  f 1\n\n",
            // Line 5: the loaded histogram, compared after compaction.
            "eval instant at 1m h\n  h {{schema:0 sum:2 count:2 buckets:[2 0]}}\n\n",
            // Line 8: a wrong expectation fails with both histograms in the reason.
            "eval instant at 1m h\n  h {{count:5}}\n\n",
            // Line 11: a float where a histogram is expected fails.
            "eval instant at 1m f\n  f {{count:1}}\n\n",
            // Line 14: histogram functions and rate over histograms.
            "eval instant at 2m histogram_count(rate(h[2m]))\n  {} 0.016666666666666666\n\n",
            "load_with_nhcb 1m\n  c_bucket{le=\"1\"} 1\n  c_bucket{le=\"+Inf\"} 2\n  c_count 2\n  c_sum 3\n\n",
            // Line 23: the classic series stay; the NHCB series appears under the base name.
            "eval instant at 0 c_count\n  c_count 2\n\n",
            "eval instant at 0 c\n  c {{schema:-53 count:2 sum:3 custom_values:[1] buckets:[1 1]}}\n\n",
            "clear\n\n",
            "eval instant at 1m h\n",
        ));
        assert_eq!((r.passed, r.failed), (5, 2), "{:?}", r.failures);
        assert_eq!(
            r.failures.iter().map(|f| f.line).collect::<Vec<_>>(),
            [8, 11]
        );
        assert!(
            r.failures[0].reason.contains("{{count:5}}"),
            "{:?}",
            r.failures
        );
        assert!(
            r.failures[1].reason.starts_with("expected histogram"),
            "{:?}",
            r.failures
        );
    }

    #[test]
    fn unsupported_queries_fail_cleanly() {
        let r = run("eval instant at 0 no_such_function(1)\n\neval instant at 0 foo{\n");
        assert_eq!((r.passed, r.failed), (0, 2));
    }

    #[test]
    fn summary_and_totals() {
        let reports = [
            FileReport {
                name: "../shared/promqltest/a.test".into(),
                passed: 3,
                failed: 1,
                failures: vec![],
            },
            FileReport {
                name: "b.test".into(),
                passed: 0,
                failed: 2,
                failures: vec![],
            },
        ];
        assert_eq!(totals(&reports), (3, 3));
        let t = summary_table(&reports);
        assert!(t.contains("| a.test | 4 | 3 | 1 |"), "{t}");
        assert!(t.contains("| **total** | 6 | 3 | 3 |"), "{t}");
    }

    #[test]
    fn failure_lines_are_single_line_and_truncated() {
        let f = Failure {
            line: 7,
            expr: "a\n+ b".into(),
            reason: "x\ny".repeat(100),
        };
        let s = format_failure("f.test", &f, 20);
        assert!(!s.contains('\n'));
        assert!(s.starts_with("f.test:7: a + b: x y"));
        assert!(s.ends_with('…'));
    }

    #[test]
    fn harness_defaults_match_upstream() {
        let o = harness_options();
        assert_eq!(o.max_samples, 10_000);
        assert_eq!(o.timeout, Duration::from_secs(100));
        assert_eq!(
            (o.lookback_delta, o.no_step_subquery_interval),
            (300_000, 60_000)
        );
        assert!(o.enable_experimental_functions && o.enable_delayed_name_removal);
    }

    mod proptests {
        use super::*;
        use proptest::prelude::*;

        /// Line fragments that steer random text into the parser's branches.
        fn fragment() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("load 1m".to_string()),
                Just("load_with_nhcb 5m".to_string()),
                Just("clear".to_string()),
                Just("eval instant at 1m m".to_string()),
                Just("eval range from 0 to 2m step 1m m".to_string()),
                Just("eval_fail instant at 0 x".to_string()),
                Just("expect fail msg: x".to_string()),
                Just("expect warn regex: (".to_string()),
                Just("expect range vector from 0 to 1m step 30s".to_string()),
                Just("expected_fail_regexp [".to_string()),
                Just("m{a=\"1\"} 1+2x3 _ stale".to_string()),
                Just("h {{schema:0 buckets:[1 2]}}x2".to_string()),
                Just("m@st _ -1mx1".to_string()),
                "m@st [0-9a-zé_x+ms -]{0,12}",
                "m\\{a=\"é\"\\} [0-9a-zé_x+.{}:\\[\\] -]{0,16}",
                Just(String::new()),
                "[ -~]{0,40}",
                "[0-9x+_{}\\[\\]:. -]{0,20}",
                any::<String>(),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            #[test]
            fn random_text_never_panics_the_parser(s in any::<String>()) {
                let _ = parse_file(&s);
                let _ = series::parse_series_desc(&s);
            }

            #[test]
            fn random_files_never_panic(lines in proptest::collection::vec(fragment(), 0..12)) {
                let src = lines.join("\n");
                let _ = parse_file(&src);
                let r = run_test_file("p.test", &src, &harness_options());
                prop_assert!(r.failures.len() >= r.failed);
                // A harness panic would surface as a caught "panicked" failure.
                prop_assert!(!r.failures.iter().any(|f| f.reason.contains("panicked")), "{:?}", r.failures);
            }

            #[test]
            fn random_series_values_never_panic(v in "[0-9a-zA-Z_x+.{}:\\[\\] -]{0,30}") {
                let _ = series::parse_series_desc(&format!("m {v}"));
            }
        }
    }
}
