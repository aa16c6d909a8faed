//! Tests for both formats. Valid inputs are checked entry by entry. Invalid
//! ones are checked for error line, column and reason. Fixtures with promtool
//! 2.42's output are under `tsdb/tests/fixtures/openmetrics/`. Property tests
//! cover arbitrary bytes and render/parse round trips.

use std::borrow::Cow;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;

// ---- Helpers. ----

fn parse(input: &[u8], format: Format) -> Result<Vec<Entry<'_>>, ParseError> {
    Parser::new(input, format).collect()
}

fn prom(input: &str) -> Vec<Entry<'_>> {
    parse(input.as_bytes(), Format::PromText).unwrap_or_else(|e| panic!("{input:?}: {e}"))
}

fn om(input: &str) -> Vec<Entry<'_>> {
    parse(input.as_bytes(), Format::OpenMetrics).unwrap_or_else(|e| panic!("{input:?}: {e}"))
}

/// The error from parsing `input`, asserting that it is the last item.
fn error(input: &[u8], format: Format) -> ParseError {
    let mut p = Parser::new(input, format);
    for item in p.by_ref() {
        if let Err(e) = item {
            assert!(p.next().is_none(), "{input:?}: iteration goes on after {e}");
            return e;
        }
    }
    panic!("{:?} parsed without error", String::from_utf8_lossy(input));
}

#[track_caller]
fn assert_error(input: &[u8], format: Format, line: usize, column: usize, reason: &str) {
    let e = error(input, format);
    assert_eq!(
        (e.line, e.column, e.reason.as_str()),
        (line, column, reason),
        "input {:?}",
        String::from_utf8_lossy(input)
    );
}

fn prom_err(input: &[u8], line: usize, column: usize, reason: &str) {
    assert_error(input, Format::PromText, line, column, reason);
}

fn om_err(input: &[u8], line: usize, column: usize, reason: &str) {
    assert_error(input, Format::OpenMetrics, line, column, reason);
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn sample(pairs: &[(&str, &str)], t_ms: Option<i64>, value: f64) -> Entry<'static> {
    Entry::Sample {
        labels: labels(pairs),
        t_ms,
        value,
    }
}

fn help<'a>(family: &'a str, text: &'a str) -> Entry<'a> {
    Entry::Help {
        family,
        help: Cow::Borrowed(text),
    }
}

fn typ(family: &str, typ: MetricType) -> Entry<'_> {
    Entry::Type { family, typ }
}

/// The only sample in `entries`: (labels, t_ms, value).
fn only_sample(entries: Vec<Entry<'_>>) -> (Labels, Option<i64>, f64) {
    let mut it = entries.into_iter().filter_map(|e| match e {
        Entry::Sample {
            labels,
            t_ms,
            value,
        } => Some((labels, t_ms, value)),
        _ => None,
    });
    let s = it.next().expect("a sample");
    assert!(it.next().is_none(), "more than one sample");
    s
}

// ---- Prometheus text: valid input. ----

#[test]
fn prom_typical_scrape() {
    let input = "# HELP go_gc_duration_seconds A summary of GC pause durations.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile=\"0\"} 4.9351e-05
go_gc_duration_seconds{quantile=\"0.25\",} 7.424100000000001e-05
go_gc_duration_seconds_sum 0.1
go_gc_duration_seconds_count 99
# HELP up Whether the target is up.
# TYPE up gauge
up{job=\"node\",instance=\"a:9100\"} 1 1700000000000
";
    assert_eq!(
        prom(input),
        vec![
            help("go_gc_duration_seconds", "A summary of GC pause durations."),
            typ("go_gc_duration_seconds", MetricType::Summary),
            sample(
                &[("__name__", "go_gc_duration_seconds"), ("quantile", "0")],
                None,
                4.9351e-05
            ),
            sample(
                &[("__name__", "go_gc_duration_seconds"), ("quantile", "0.25")],
                None,
                7.424100000000001e-05
            ),
            sample(&[("__name__", "go_gc_duration_seconds_sum")], None, 0.1),
            sample(&[("__name__", "go_gc_duration_seconds_count")], None, 99.0),
            help("up", "Whether the target is up."),
            typ("up", MetricType::Gauge),
            sample(
                &[("__name__", "up"), ("instance", "a:9100"), ("job", "node")],
                Some(1_700_000_000_000),
                1.0
            ),
        ]
    );
}

#[test]
fn prom_whitespace_is_free_between_tokens() {
    let want = sample(&[("__name__", "m"), ("a", "b"), ("q", "1")], None, 2.0);
    for input in [
        "m{q=\"1\",a=\"b\"} 2",
        "m{ q=\"1\", a=\"b\" } 2",
        "m { q = \"1\" , a = \"b\" , } 2",
        "m\t{q=\"1\"\t,a=\"b\"}\t2\t",
        "   m{q=\"1\",a=\"b\"}2",
        // 2.42 does not require commas between labels.
        "m{q=\"1\" a=\"b\"} 2",
    ] {
        assert_eq!(prom(input), vec![want.clone()], "{input:?}");
    }
    assert_eq!(
        prom("go_goroutines 33  \t123123 \t\n"),
        vec![sample(&[("__name__", "go_goroutines")], Some(123123), 33.0)]
    );
}

#[test]
fn prom_blank_lines_comments_and_missing_final_newline() {
    let input = "\n\n  \t\n# a comment\n#no space comment\n#\n# HELPER not help\n# HELP\n# TYPE\n\
                 #\tcomment with \\ and \\n\n  # indented comment\na 1\n\nb 2";
    assert_eq!(
        prom(input),
        vec![
            sample(&[("__name__", "a")], None, 1.0),
            sample(&[("__name__", "b")], None, 2.0),
        ]
    );
    assert!(prom("").is_empty());
    assert!(prom("\n").is_empty());
    assert!(prom("# only a comment").is_empty());
}

#[test]
fn prom_help_text() {
    // Only \\ and \n are escapes in Prometheus-text HELP. \" stays as is.
    assert_eq!(
        prom("# HELP m a \\\\ b \\n c \\\" d \\x\n"),
        vec![help("m", "a \\ b \n c \\\" d \\x")]
    );
    // The lexer drops the first byte after the name (the separator) and
    // keeps the rest verbatim. Blanks only means empty text.
    assert_eq!(prom("# HELP m\n"), vec![help("m", "")]);
    assert_eq!(prom("# HELP m   \n"), vec![help("m", "")]);
    assert_eq!(prom("# HELP m   x \n"), vec![help("m", "  x ")]);
    assert_eq!(prom("#\tHELP\tm\ttab"), vec![help("m", "tab")]);
    assert_eq!(prom("# HELP m with\0nul"), vec![help("m", "with\0nul")]);
    assert_eq!(prom("# HELP m ünï"), vec![help("m", "ünï")]);
    // Escaped help is owned; plain help borrows the input.
    match &prom("# HELP m plain")[0] {
        Entry::Help { help, .. } => assert!(matches!(help, Cow::Borrowed(_))),
        e => panic!("{e:?}"),
    }
}

#[test]
fn prom_types() {
    for (text, want) in [
        ("counter", MetricType::Counter),
        ("gauge", MetricType::Gauge),
        ("histogram", MetricType::Histogram),
        ("summary", MetricType::Summary),
        ("untyped", MetricType::Unknown),
    ] {
        assert_eq!(
            prom(&format!("# TYPE some:metric {text}\n")),
            vec![typ("some:metric", want)]
        );
    }
    for text in ["unknown", "info", "stateset", "gaugehistogram", "Counter"] {
        prom_err(
            format!("# TYPE m {text}\n").as_bytes(),
            1,
            10,
            &format!("invalid metric type {text:?}"),
        );
    }
    // Trailing blanks are part of the type text, as in 2.42.
    prom_err(
        b"# TYPE m counter \n",
        1,
        10,
        "invalid metric type \"counter \"",
    );
    prom_err(
        b"# TYPE m  counter\n",
        1,
        10,
        "invalid metric type \" counter\"",
    );
    prom_err(b"# TYPE m\n", 1, 9, "invalid metric type \"\"");
}

#[test]
fn prom_names_and_values() {
    let input = "_metric_starting_with_underscore 1
testmetric{_label_starting_with_underscore=\"foo\"} 1
some:aggregate:rate5m{a_b=\"c\"}\t1
m{A=\"2\",c=\"3\"} 12345
";
    assert_eq!(
        prom(input),
        vec![
            sample(
                &[("__name__", "_metric_starting_with_underscore")],
                None,
                1.0
            ),
            sample(
                &[
                    ("__name__", "testmetric"),
                    ("_label_starting_with_underscore", "foo")
                ],
                None,
                1.0
            ),
            sample(
                &[("__name__", "some:aggregate:rate5m"), ("a_b", "c")],
                None,
                1.0
            ),
            sample(&[("A", "2"), ("__name__", "m"), ("c", "3")], None, 12345.0),
        ]
    );
    // The value is whatever follows up to a blank or brace, so a sign can
    // directly follow the name or the closing brace, as in 2.42.
    assert_eq!(
        prom("m-1\nm{}+2"),
        vec![
            sample(&[("__name__", "m")], None, -1.0),
            sample(&[("__name__", "m")], None, 2.0),
        ]
    );
}

#[test]
fn prom_special_values() {
    for (text, want) in [
        ("+Inf", f64::INFINITY),
        ("Inf", f64::INFINITY),
        ("-Inf", f64::NEG_INFINITY),
        ("-infinity", f64::NEG_INFINITY),
        ("1e3", 1000.0),
        ("1E-3", 0.001),
        (".5", 0.5),
        ("5.", 5.0),
        ("1e-400", 0.0),
    ] {
        let (_, _, v) = only_sample(prom(&format!("m {text}")));
        assert_eq!(v, want, "{text}");
    }
    for text in ["NaN", "nan", "NAN"] {
        let (_, _, v) = only_sample(prom(&format!("m {text}")));
        assert_eq!(v.to_bits(), NORMAL_NAN.to_bits(), "{text}");
    }
}

#[test]
fn prom_label_values() {
    // \\, \" and \n are unescaped; other escapes are kept verbatim.
    let (l, _, _) = only_sample(prom(r#"m{a="x\\y\"z\nw\tv"} 1"#));
    assert_eq!(l.get("a"), Some("x\\y\"z\nw\\tv"));
    // `\\n` is an escaped backslash followed by n, not a newline.
    let (l, _, _) = only_sample(prom(r#"m{a="\\n"} 1"#));
    assert_eq!(l.get("a"), Some("\\n"));
    // NUL bytes and multi-byte UTF-8 are fine in values.
    let (l, _, _) = only_sample(prom("null_byte_metric{a=\"abc\0\",b=\"ünï\"} 1"));
    assert_eq!(l.get("a"), Some("abc\0"));
    assert_eq!(l.get("b"), Some("ünï"));
    // A raw line break inside the quotes is accepted by 2.42's lexer. Error
    // lines after it still count it.
    let entries = prom("m{a=\"two\nlines\"} 1\nm 2 3\n");
    assert_eq!(entries.len(), 2);
    prom_err(b"m{a=\"two\nlines\"} 1\nm x\n", 3, 3, "invalid float \"x\"");
}

#[test]
fn empty_label_values_are_dropped_before_the_uniqueness_check() {
    // promtool 2.42 accepts `{a="",a="x"}` because the head drops empty
    // labels before it looks for repeated names.
    for format in [Format::PromText, Format::OpenMetrics] {
        let input: &[u8] = b"m{a=\"\",b=\"1\",a=\"x\",__name__=\"\"} 1\n# EOF\n";
        let input = if format == Format::PromText {
            &input[..input.len() - 6]
        } else {
            input
        };
        let (l, _, _) = only_sample(parse(input, format).unwrap());
        assert_eq!(l, labels(&[("__name__", "m"), ("a", "x"), ("b", "1")]));
    }
}

#[test]
fn prom_timestamps() {
    let (_, t, v) = only_sample(prom("m -0 0123"));
    assert_eq!((t, v.to_bits()), (Some(123), (-0.0f64).to_bits()));
    let (_, t, _) = only_sample(prom("m 1 9223372036854775807"));
    assert_eq!(t, Some(i64::MAX));
    prom_err(
        b"m 1 9223372036854775808",
        1,
        5,
        "timestamp 9223372036854775808 is out of range",
    );
    // No sign and no fraction: Prometheus text timestamps are integers.
    prom_err(
        b"m 1 -5",
        1,
        5,
        "expected timestamp or end of line after value, got '-'",
    );
    prom_err(
        b"m 1 1.5",
        1,
        6,
        "expected end of line after timestamp, got '.'",
    );
}

#[test]
fn labels_are_sorted_and_share_arcs_with_the_previous_sample() {
    let entries = prom("m{z=\"1\",b=\"2\"} 1\nm{b=\"2\",z=\"3\"} 2\nn{b=\"2\"} 3");
    let all: Vec<Labels> = entries
        .into_iter()
        .map(|e| match e {
            Entry::Sample { labels, .. } => labels,
            e => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(
        all[0].iter().map(|l| &*l.name).collect::<Vec<_>>(),
        ["__name__", "b", "z"]
    );
    let (a, b) = (all[0].as_slice(), all[1].as_slice());
    assert!(Arc::ptr_eq(&a[0].name, &b[0].name));
    assert!(Arc::ptr_eq(&a[0].value, &b[0].value)); // "m"
    assert!(Arc::ptr_eq(&a[1].value, &b[1].value)); // "2"
    assert!(!Arc::ptr_eq(&a[2].value, &b[2].value)); // "1" vs "3"
    assert_eq!(&*all[2].as_slice()[1].value, "2");
}

// ---- Prometheus text: errors. ----

#[test]
fn prom_errors() {
    prom_err(b"a", 1, 2, "expected value after metric, got end of input");
    prom_err(b"a\n", 1, 2, "expected value after metric, got line break");
    prom_err(b"a{b='c'} 1\n", 1, 5, "expected label value, got '\\''");
    prom_err(b"a{b=\n", 1, 5, "expected label value, got line break");
    prom_err(
        b"a{\xff=\"foo\"} 1\n",
        1,
        3,
        "expected label name, got byte 0xff",
    );
    prom_err(b"a{b=\"\xff\"} 1\n", 1, 6, "invalid UTF-8 label value");
    prom_err(b"a{b=\"x\xc3\"} 1\n", 1, 7, "invalid UTF-8 label value");
    prom_err(b"a true\n", 1, 3, "invalid float \"true\"");
    prom_err(
        b"ok 1\nsomething_weird{problem=\"",
        2,
        25,
        "unterminated label value",
    );
    prom_err(
        b"empty_label_name{=\"\"} 0",
        1,
        18,
        "expected label name, got '='",
    );
    prom_err(b"a{b=\"c\",,} 1", 1, 9, "expected label name, got ','");
    prom_err(b"a{,b=\"c\"} 1", 1, 3, "expected label name, got ','");
    prom_err(b"a{b=\"c\"=} 1", 1, 8, "expected label name, got '='");
    prom_err(
        b"a{b:c=\"d\"} 1",
        1,
        4,
        "expected \"=\" after label name, got ':'",
    );
    prom_err(b"a{1=\"d\"} 1", 1, 3, "expected label name, got '1'");
    prom_err(
        b"a{b=\"x\\\ny\"} 1",
        1,
        7,
        "backslash before line break in label value",
    );
    prom_err(b"foo 1_2\n", 1, 5, "unsupported character in float \"1_2\"");
    prom_err(
        b"foo 0x1p-3\n",
        1,
        5,
        "unsupported character in float \"0x1p-3\"",
    );
    prom_err(b"foo 0x10\n", 1, 5, "invalid float \"0x10\"");
    prom_err(b"foo 1e400\n", 1, 5, "float \"1e400\" is out of range");
    prom_err(b"foo +nan\n", 1, 5, "invalid float \"+nan\"");
    prom_err(
        b"foo 0 1_2\n",
        1,
        8,
        "expected end of line after timestamp, got '_'",
    );
    prom_err(
        b"foo 0 1 2\n",
        1,
        9,
        "expected end of line after timestamp, got '2'",
    );
    prom_err(
        b"foo 1{\n",
        1,
        6,
        "expected timestamp or end of line after value, got '{'",
    );
    prom_err(
        b"foo{a=\"b\"}{\n",
        1,
        11,
        "expected value after metric, got '{'",
    );
    prom_err(
        b"{a=\"ok\"} 1",
        1,
        1,
        "expected metric name or \"#\" at start of line, got '{'",
    );
    prom_err(
        b"ok 1\n  9 1",
        2,
        3,
        "expected metric name or \"#\" at start of line, got '9'",
    );
    prom_err(
        b"# TYPE #\n",
        1,
        8,
        "expected metric name after TYPE, got '#'",
    );
    prom_err(
        b"# HELP \n",
        1,
        8,
        "expected metric name after HELP, got line break",
    );
    prom_err(
        b"# HELP m \xff\n",
        1,
        10,
        "help text is not a valid utf8 string",
    );
    prom_err(
        b"a{b=\"1\",b=\"2\"} 1",
        1,
        9,
        "label name \"b\" is not unique",
    );
    prom_err(
        b"a{__name__=\"b\"} 1",
        1,
        3,
        "label name \"__name__\" is not unique",
    );
    // 2.42 treats a NUL at the start of a line as the end of input and
    // silently ignores the rest; here it is an error.
    prom_err(
        b"a 1\n\0b 2",
        2,
        1,
        "expected metric name or \"#\" at start of line, got '\\0'",
    );
    prom_err(b"a\0{b=\"c\"} 1", 1, 2, "invalid float \"\\0\"");
    prom_err(b"a{b=\0\"c\"} 1", 1, 5, "expected label value, got '\\0'");
    prom_err(
        b"a 0 1\0",
        1,
        6,
        "expected end of line after timestamp, got '\\0'",
    );
}

#[test]
fn prom_crlf_is_rejected_with_a_hint() {
    prom_err(
        b"a 1\r\n",
        1,
        3,
        "invalid float \"1\\r\" (CRLF line endings are not supported)",
    );
    prom_err(
        b"a 1 2\r\n",
        1,
        6,
        "expected end of line after timestamp, got '\\r' (CRLF line endings are not supported)",
    );
    // Comments and HELP keep the \r (as 2.42 does); TYPE then fails.
    assert_eq!(prom("# c\r\n# HELP m x\r\n"), vec![help("m", "x\r")]);
    prom_err(
        b"# TYPE m gauge\r\n",
        1,
        10,
        "invalid metric type \"gauge\\r\" (CRLF line endings are not supported)",
    );
}

// ---- OpenMetrics: valid input. ----

#[test]
fn om_all_metric_types_and_metadata() {
    let input = "# HELP go_gc_duration_seconds A summary of GC pause durations.
# TYPE go_gc_duration_seconds summary
# UNIT go_gc_duration_seconds seconds
go_gc_duration_seconds{quantile=\"0\"} 4.9351e-05
go_gc_duration_seconds{quantile=\"0.5\",a=\"b\"} 8.3835e-05
# HELP nohelp1 
# HELP help2 escape \\ \\n \\\\ \\\" \\x chars
# UNIT nounit 
go_gc_duration_seconds_count 99
some:aggregate:rate5m{a_b=\"c\"} 1
# TYPE go_goroutines gauge
go_goroutines 33 123.123
# TYPE hh histogram
hh_bucket{le=\"+Inf\"} 1
# TYPE gh gaugehistogram
gh_bucket{le=\"+Inf\"} 1
# TYPE ii info
ii_info{foo=\"bar\"} 1
# TYPE ss stateset
ss{ss=\"foo\"} 1
ss{ss=\"bar\"} 0
# TYPE un unknown
_metric_starting_with_underscore 1
testmetric{_label_starting_with_underscore=\"foo\"} 1
testmetric{label=\"\\\"bar\\\"\"} 1
# TYPE foo counter
foo_total 17.0 1520879607.789
foo_created 1520872607.123
null_byte_metric{a=\"abc\0\"} 1
# EOF
";
    assert_eq!(
        om(input),
        vec![
            help("go_gc_duration_seconds", "A summary of GC pause durations."),
            typ("go_gc_duration_seconds", MetricType::Summary),
            Entry::Unit {
                family: "go_gc_duration_seconds",
                unit: "seconds"
            },
            sample(
                &[("__name__", "go_gc_duration_seconds"), ("quantile", "0")],
                None,
                4.9351e-05
            ),
            sample(
                &[
                    ("__name__", "go_gc_duration_seconds"),
                    ("a", "b"),
                    ("quantile", "0.5")
                ],
                None,
                8.3835e-05
            ),
            help("nohelp1", ""),
            help("help2", "escape \\ \n \\ \" \\x chars"),
            Entry::Unit {
                family: "nounit",
                unit: ""
            },
            sample(&[("__name__", "go_gc_duration_seconds_count")], None, 99.0),
            sample(
                &[("__name__", "some:aggregate:rate5m"), ("a_b", "c")],
                None,
                1.0
            ),
            typ("go_goroutines", MetricType::Gauge),
            sample(&[("__name__", "go_goroutines")], Some(123_123), 33.0),
            typ("hh", MetricType::Histogram),
            sample(&[("__name__", "hh_bucket"), ("le", "+Inf")], None, 1.0),
            typ("gh", MetricType::GaugeHistogram),
            sample(&[("__name__", "gh_bucket"), ("le", "+Inf")], None, 1.0),
            typ("ii", MetricType::Info),
            sample(&[("__name__", "ii_info"), ("foo", "bar")], None, 1.0),
            typ("ss", MetricType::StateSet),
            sample(&[("__name__", "ss"), ("ss", "foo")], None, 1.0),
            sample(&[("__name__", "ss"), ("ss", "bar")], None, 0.0),
            typ("un", MetricType::Unknown),
            sample(
                &[("__name__", "_metric_starting_with_underscore")],
                None,
                1.0
            ),
            sample(
                &[
                    ("__name__", "testmetric"),
                    ("_label_starting_with_underscore", "foo")
                ],
                None,
                1.0
            ),
            sample(
                &[("__name__", "testmetric"), ("label", "\"bar\"")],
                None,
                1.0
            ),
            typ("foo", MetricType::Counter),
            sample(&[("__name__", "foo_total")], Some(1_520_879_607_789), 17.0),
            // `_created` is an ordinary sample, as in Prometheus 2.42.
            sample(&[("__name__", "foo_created")], None, 1_520_872_607.123),
            sample(
                &[("__name__", "null_byte_metric"), ("a", "abc\0")],
                None,
                1.0
            ),
            Entry::Eof,
        ]
    );
}

#[test]
fn om_eof_forms() {
    assert_eq!(om("# EOF"), vec![Entry::Eof]);
    assert_eq!(om("# EOF\n"), vec![Entry::Eof]);
    assert_eq!(
        om("m 1\n# EOF"),
        vec![sample(&[("__name__", "m")], None, 1.0), Entry::Eof]
    );
    // Nothing is yielded after Eof.
    let mut p = Parser::new(b"# EOF\n", Format::OpenMetrics);
    assert_eq!(p.next(), Some(Ok(Entry::Eof)));
    assert_eq!(p.next(), None);
    assert_eq!(p.next(), None);
}

#[test]
fn om_timestamps_are_seconds_truncated_to_ms() {
    for (text, want) in [
        ("0", 0),
        ("1", 1000),
        ("1.5", 1500),
        ("-1.5", -1500),
        ("1.001", 1000), // 1.001 * 1000 = 1000.9999999999999
        ("1.005", 1004),
        ("-0.0009", 0),
        ("1e3", 1_000_000),
        ("1700000000.123", 1_700_000_000_123),
    ] {
        let (_, t, _) = only_sample(om(&format!("m 1 {text}\n# EOF\n")));
        assert_eq!(t, Some(want), "{text}");
    }
    for text in ["NaN", "Inf", "+Inf", "-Inf", "-infinity"] {
        om_err(
            format!("m 1 {text}\n# EOF\n").as_bytes(),
            1,
            5,
            &format!("invalid timestamp {text:?}"),
        );
    }
    om_err(
        b"m 1 1e300\n# EOF\n",
        1,
        5,
        "timestamp 1e300 is out of range",
    );
}

#[test]
fn om_exemplars() {
    let input = "foo_total 17.0 1520879607.789 # {id=\"counter-test\"} 5
foo_total 18 # {a=\"\\\"q\\\"\",b=\"2\"} 1.5 123.456
foo_total 19
# TYPE hhh histogram
hhh_bucket{le=\"+Inf\"} 1 # {} 4
# EOF
";
    let mut p = Parser::new(input.as_bytes(), Format::OpenMetrics);
    let mut got = Vec::new();
    while let Some(e) = p.next() {
        got.push((e.unwrap(), p.exemplar()));
    }
    let ex = |pairs: &[(&str, &str)], value, t_ms| {
        Some(Exemplar {
            labels: labels(pairs),
            value,
            t_ms,
        })
    };
    assert_eq!(
        got,
        vec![
            (
                sample(&[("__name__", "foo_total")], Some(1_520_879_607_789), 17.0),
                ex(&[("id", "counter-test")], 5.0, None)
            ),
            (
                sample(&[("__name__", "foo_total")], None, 18.0),
                ex(&[("a", "\"q\""), ("b", "2")], 1.5, Some(123_456))
            ),
            (sample(&[("__name__", "foo_total")], None, 19.0), None),
            (typ("hhh", MetricType::Histogram), None),
            (
                sample(&[("__name__", "hhh_bucket"), ("le", "+Inf")], None, 1.0),
                ex(&[], 4.0, None)
            ),
            (Entry::Eof, None),
        ]
    );
}

#[test]
fn om_special_values() {
    for (text, want) in [
        ("+Inf", f64::INFINITY),
        ("-inf", f64::NEG_INFINITY),
        ("INFINITY", f64::INFINITY),
        ("1E+2", 100.0),
        ("-0", -0.0),
    ] {
        let (_, _, v) = only_sample(om(&format!("m {text}\n# EOF\n")));
        assert_eq!(v.to_bits(), want.to_bits(), "{text}");
    }
    for text in ["nan", "NaN", "NAN"] {
        let (_, _, v) = only_sample(om(&format!("m {text}\n# EOF\n")));
        assert_eq!(v.to_bits(), NORMAL_NAN.to_bits(), "{text}");
    }
}

// ---- OpenMetrics: errors (the cases of 2.42's test suite, and more). ----

#[test]
fn om_errors_structure() {
    om_err(b"", 1, 1, "data does not end with # EOF");
    om_err(b"\n", 1, 1, "empty lines are not allowed in OpenMetrics");
    om_err(
        b"a 1\n\n# EOF\n",
        2,
        1,
        "empty lines are not allowed in OpenMetrics",
    );
    om_err(
        b"metric",
        1,
        7,
        "expected value after metric, got end of input",
    );
    om_err(b"metric 1", 1, 9, "data does not end with # EOF");
    om_err(b"metric 1\n", 2, 1, "data does not end with # EOF");
    om_err(b"metric 1 2", 1, 11, "data does not end with # EOF");
    om_err(
        b"metric_total 1 # {aa=\"bb\"} 4",
        1,
        29,
        "data does not end with # EOF",
    );
    om_err(
        b"metric_total 1 # {aa=\"bb\"} 4 5",
        1,
        31,
        "data does not end with # EOF",
    );
    om_err(
        b"a\n#EOF\n",
        1,
        2,
        "expected value after metric, got line break",
    );
    om_err(
        b" a 1\n# EOF\n",
        1,
        1,
        "expected metric name or \"#\" at start of line, got ' '",
    );
    om_err(
        b"9\n# EOF\n",
        1,
        1,
        "expected metric name or \"#\" at start of line, got '9'",
    );
    om_err(
        b"{b=\"c\"} 1\n# EOF\n",
        1,
        1,
        "expected metric name or \"#\" at start of line, got '{'",
    );
    om_err(b"# EOF\na 1", 2, 1, "unexpected data after # EOF");
    om_err(b"# EOF\n\n", 2, 1, "unexpected data after # EOF");
    om_err(b"# EOFa 1", 1, 6, "unexpected data after # EOF");
    om_err(b"# EOF \n", 1, 6, "unexpected data after # EOF");
    let comment =
        "invalid comment: OpenMetrics allows only \"# HELP\", \"# TYPE\", \"# UNIT\" and \"# EOF\"";
    for input in [
        &b"# a comment\n# EOF\n"[..],
        b"#  TYPE c counter\n# EOF\n",
        b"#\tTYPE c counter\n# EOF\n",
        b"#EOF\n",
        b"#",
        b"# H",
        b"# HELP\n# EOF\n",
    ] {
        om_err(input, 1, 1, comment);
    }
}

#[test]
fn om_errors_metadata() {
    om_err(
        b"# TYPE u untyped\n# EOF\n",
        1,
        10,
        "invalid metric type \"untyped\"",
    );
    om_err(
        b"# TYPE c counter \n# EOF\n",
        1,
        10,
        "invalid metric type \"counter \"",
    );
    om_err(
        b"# TYPE c  counter\n# EOF\n",
        1,
        10,
        "invalid metric type \" counter\"",
    );
    om_err(
        b"# TYPE \n# EOF\n",
        1,
        8,
        "expected metric name after TYPE, got line break",
    );
    om_err(
        b"# TYPE m\n# EOF\n",
        1,
        9,
        "expected \" \" and text after metric name in TYPE, got line break",
    );
    om_err(
        b"# HELP m\n# EOF\n",
        1,
        9,
        "expected \" \" and text after metric name in HELP, got line break",
    );
    om_err(b"# HELP m x", 1, 11, "data does not end with # EOF");
    om_err(
        b"# HELP m \xff\n# EOF\n",
        1,
        10,
        "help text is not a valid utf8 string",
    );
    om_err(
        b"# UNIT metric suffix\n# EOF\n",
        1,
        15,
        "unit not a suffix of metric \"metric\"",
    );
    om_err(
        b"# UNIT metricsuffix suffix\n# EOF\n",
        1,
        21,
        "unit not a suffix of metric \"metricsuffix\"",
    );
    om_err(
        b"# UNIT m suffix\n# EOF\n",
        1,
        10,
        "unit not a suffix of metric \"m\"",
    );
    om_err(
        b"# UNIT m_s s_s\n# EOF\n",
        1,
        12,
        "unit not a suffix of metric \"m_s\"",
    );
    om_err(
        b"# UNIT _s _s\n# EOF\n",
        1,
        11,
        "unit not a suffix of metric \"_s\"",
    );
    om_err(
        b"# UNIT \n# EOF\n",
        1,
        8,
        "expected metric name after UNIT, got line break",
    );
    om_err(
        b"# UNIT m\n# EOF\n",
        1,
        9,
        "expected \" \" and text after metric name in UNIT, got line break",
    );
}

#[test]
fn om_errors_samples() {
    om_err(
        b"a\t1\n# EOF\n",
        1,
        2,
        "expected value after metric, got '\\t'",
    );
    om_err(
        b"a  1\n# EOF\n",
        1,
        3,
        "expected value after metric, got ' '",
    );
    om_err(
        b"a \n# EOF\n",
        1,
        3,
        "expected value after metric, got line break",
    );
    om_err(b"a 1\t2\n# EOF\n", 1, 3, "invalid float \"1\\t2\"");
    om_err(
        b"a 1 2 \n# EOF\n",
        1,
        7,
        "expected end of line or exemplar after timestamp, got line break",
    );
    om_err(
        b"a 1 2 #\n# EOF\n",
        1,
        7,
        "expected end of line or exemplar after timestamp, got '#'",
    );
    om_err(
        b"a 1 1 1\n# EOF\n",
        1,
        7,
        "expected end of line or exemplar after timestamp, got '1'",
    );
    om_err(
        b"a 1  1\n# EOF\n",
        1,
        5,
        "expected timestamp or exemplar after value, got ' '",
    );
    om_err(b"a 1 1z\n# EOF\n", 1, 5, "invalid float \"1z\"");
    om_err(b"a true\n", 1, 3, "invalid float \"true\"");
    om_err(
        b"foo 1_2\n\n# EOF\n",
        1,
        5,
        "unsupported character in float \"1_2\"",
    );
    om_err(
        b"foo 0x1p-3\n\n# EOF\n",
        1,
        5,
        "unsupported character in float \"0x1p-3\"",
    );
    om_err(
        b"foo 0x1P-3\n\n# EOF\n",
        1,
        5,
        "unsupported character in float \"0x1P-3\"",
    );
    om_err(
        b"foo 0 1_2\n\n# EOF\n",
        1,
        7,
        "unsupported character in float \"1_2\"",
    );
    om_err(
        b"foo 1e400 1\n# EOF\n",
        1,
        5,
        "float \"1e400\" is out of range",
    );
    om_err(b"foo +NaN 1\n# EOF\n", 1, 5, "invalid float \"+NaN\"");
    om_err(
        b"a 1 1\r\n# EOF\r\n",
        1,
        5,
        "invalid float \"1\\r\" (CRLF line endings are not supported)",
    );
    om_err(
        b"a 1\r\n# EOF\r\n",
        1,
        3,
        "invalid float \"1\\r\" (CRLF line endings are not supported)",
    );
    om_err(b"a 1 1\n# EOF\r\n", 2, 6, "unexpected data after # EOF");
    om_err(
        b"# TYPE a gauge\r\n# EOF\n",
        1,
        10,
        "invalid metric type \"gauge\\r\" (CRLF line endings are not supported)",
    );
    om_err(
        b"a{b=\"1\",b=\"2\"} 1\n# EOF\n",
        1,
        9,
        "label name \"b\" is not unique",
    );
    om_err(
        b"a{__name__=\"b\"} 1\n# EOF\n",
        1,
        3,
        "label name \"__name__\" is not unique",
    );
}

#[test]
fn om_errors_labels() {
    om_err(
        b"a{b='c'} 1\n# EOF\n",
        1,
        5,
        "expected label value, got '\\''",
    );
    om_err(
        b"a{b=\"c\",} 1\n# EOF\n",
        1,
        9,
        "expected label name, got '}'",
    );
    om_err(
        b"a{,b=\"c\"} 1\n# EOF\n",
        1,
        3,
        "expected label name or \"}\", got ','",
    );
    om_err(
        b"a{b=\"c\"d=\"e\"} 1\n# EOF\n",
        1,
        8,
        "expected \",\" or \"}\" after label value, got 'd'",
    );
    om_err(
        b"a{b=\"c\" } 1\n# EOF\n",
        1,
        8,
        "expected \",\" or \"}\" after label value, got ' '",
    );
    om_err(
        b"a{ b=\"c\"} 1\n# EOF\n",
        1,
        3,
        "expected label name or \"}\", got ' '",
    );
    om_err(
        b"a{b =\"c\"} 1\n# EOF\n",
        1,
        4,
        "expected \"=\" after label name, got ' '",
    );
    om_err(
        b"a{b=\"c\",,d=\"e\"} 1\n# EOF\n",
        1,
        9,
        "expected label name, got ','",
    );
    om_err(
        b"a{b=\n# EOF\n",
        1,
        5,
        "expected label value, got line break",
    );
    om_err(
        b"a{\xff=\"foo\"} 1\n# EOF\n",
        1,
        3,
        "expected label name or \"}\", got byte 0xff",
    );
    om_err(
        b"a{b=\"\xff\"} 1\n# EOF\n",
        1,
        6,
        "invalid UTF-8 label value",
    );
    om_err(
        b"something_weird{problem=\"\n# EOF\n",
        1,
        26,
        "line break in label value (write it as \\n)",
    );
    om_err(
        b"a{b=\"x\ny\"} 1 1\n# EOF\n",
        1,
        7,
        "line break in label value (write it as \\n)",
    );
    om_err(b"a{b=\"x", 1, 5, "unterminated label value");
    om_err(
        b"empty_label_name{=\"\"} 0\n# EOF\n",
        1,
        18,
        "expected label name or \"}\", got '='",
    );
    om_err(
        b"a{b=\0\"ssss\"} 1\n# EOF\n",
        1,
        5,
        "expected label value, got '\\0'",
    );
    om_err(b"a{b=\"\0", 1, 5, "unterminated label value");
    om_err(
        b"a{b\0=\"hiih\"}\t1",
        1,
        4,
        "expected \"=\" after label name, got '\\0'",
    );
    om_err(
        b"a\0{b=\"ddd\"} 1",
        1,
        2,
        "expected value after metric, got '\\0'",
    );
    // NUL inside a value is fine.
    for input in [
        &b"a{b=\"\0ss\"} 1\n# EOF\n"[..],
        b"a{b=\"\0\"} 1\n# EOF\n",
        b"a{b=\"\0\"} 1\n# EOF",
    ] {
        parse(input, Format::OpenMetrics).unwrap();
    }
}

#[test]
fn om_errors_exemplars() {
    om_err(
        b"custom_metric_total 1 # {aa=bb}\n# EOF\n",
        1,
        29,
        "expected label value, got 'b'",
    );
    om_err(
        b"custom_metric_total 1 # {aa=\"bb\"}\n# EOF\n",
        1,
        34,
        "expected value after exemplar labels, got line break",
    );
    om_err(
        b"custom_metric_total 1 # {aa=\"bb\"}",
        1,
        34,
        "expected value after exemplar labels, got end of input",
    );
    om_err(
        b"custom_metric 1 # {aa=\"bb\"}",
        1,
        1,
        "metric name custom_metric does not support exemplars",
    );
    om_err(
        b"custom_metric_total 1 # {aa=\"bb\",,cc=\"dd\"} 1",
        1,
        34,
        "expected label name, got ','",
    );
    om_err(
        b"custom_metric_total 1 # {aa=\"bb\"} 1_2",
        1,
        35,
        "unsupported character in float \"1_2\"",
    );
    om_err(
        b"custom_metric_total 1 # {aa=\"bb\"} 0x1p-3",
        1,
        35,
        "unsupported character in float \"0x1p-3\"",
    );
    om_err(
        b"custom_metric_total 1 # {aa=\"bb\"} true",
        1,
        35,
        "invalid float \"true\"",
    );
    om_err(
        b"custom_metric_total 1 # {aa=\"bb\",cc=}",
        1,
        37,
        "expected label value, got '}'",
    );
    om_err(
        b"custom_metric_total 1 # {aa=\"bb\"} 1 2 3\n# EOF\n",
        1,
        39,
        "expected end of line after exemplar timestamp, got '3'",
    );
    om_err(
        b"custom_metric_total 1 # {aa=\"bb\"}  1\n# EOF\n",
        1,
        35,
        "expected value after exemplar labels, got ' '",
    );
    om_err(
        b"custom_metric_total 1 # {aa=\"bb\"} 1 \n# EOF\n",
        1,
        37,
        "expected exemplar timestamp or end of line, got line break",
    );
    for ts in ["NaN", "-Inf", "Inf"] {
        om_err(
            format!("hhh_bucket{{le=\"+Inf\"}} 1 # {{aa=\"bb\"}} 4 {ts}").as_bytes(),
            1,
            39,
            &format!("invalid exemplar timestamp {ts:?}"),
        );
    }
    // " #" not followed by " {" is a (bad) timestamp, as in 2.42's lexer.
    om_err(
        b"a_total 1 #{a=\"b\"} 1\n# EOF\n",
        1,
        11,
        "invalid float \"#{a=\\\"b\\\"}\"",
    );
}

#[test]
fn error_display_and_offset() {
    let e = error(b"ok 1\nbad{", Format::PromText);
    assert_eq!(e.offset, 9);
    assert_eq!(
        e.to_string(),
        "line 2, column 5: expected label name, got end of input"
    );
}

// ---- Content type and metric types. ----

#[test]
fn content_type_negotiation() {
    for ct in [
        "application/openmetrics-text",
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        "Application/OpenMetrics-Text;version=0.0.1",
        "  application/openmetrics-text ; charset=utf-8",
        Format::OpenMetrics.content_type(),
    ] {
        assert_eq!(format_from_content_type(ct), Format::OpenMetrics, "{ct:?}");
    }
    for ct in [
        "",
        "text/plain",
        "text/plain; version=0.0.4; charset=utf-8",
        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily",
        "application/openmetrics-textx",
        "garbage;;;",
        Format::PromText.content_type(),
    ] {
        assert_eq!(format_from_content_type(ct), Format::PromText, "{ct:?}");
    }
}

#[test]
fn metric_type_names() {
    assert_eq!(MetricType::GaugeHistogram.to_string(), "gaugehistogram");
    assert_eq!(MetricType::StateSet.as_str(), "stateset");
    assert_eq!(MetricType::Unknown.as_str(), "unknown");
}

// ---- promtool 2.42 fixtures. ----

fn fixture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openmetrics")
}

/// Parses a line of `promtool tsdb dump` output: `{labels} value ts`.
fn parse_dump_line(line: &str) -> (String, f64, i64) {
    let (rest, ts) = line.rsplit_once(' ').unwrap();
    let (lbls, value) = rest.rsplit_once("} ").unwrap();
    (
        format!("{lbls}}}"),
        value.parse().unwrap(),
        ts.parse().unwrap(),
    )
}

/// Each valid fixture parses to exactly the samples promtool backfilled.
/// The fixtures avoid what the block writer drops on its own (samples out
/// of order or repeated within a series, and negative timestamps), so the
/// two sample sets must be equal.
#[test]
fn fixtures_match_promtool_dump() {
    for name in ["valid", "truncation"] {
        let dir = fixture_dir();
        let input = std::fs::read(dir.join(format!("{name}.om"))).unwrap();
        let dump = std::fs::read_to_string(dir.join(format!("{name}.dump"))).unwrap();

        let mut want: Vec<(String, f64, i64)> = dump.lines().map(parse_dump_line).collect();
        let mut got = Vec::new();
        let mut saw_eof = false;
        for e in Parser::new(&input, Format::OpenMetrics) {
            match e.unwrap_or_else(|e| panic!("{name}: {e}")) {
                Entry::Sample {
                    labels,
                    t_ms,
                    value,
                } => got.push((labels.to_string(), value, t_ms.expect("timestamp"))),
                Entry::Eof => saw_eof = true,
                _ => {}
            }
        }
        assert!(saw_eof);
        let key = |s: &(String, f64, i64)| (s.0.clone(), s.2);
        want.sort_by_key(key);
        got.sort_by_key(key);
        assert_eq!(got.len(), want.len(), "{name}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!((&g.0, g.2), (&w.0, w.2), "{name}");
            // %g output round-trips, so the values compare exactly. NaN is
            // compared as NaN, and -0 by its sign.
            let same = (g.1.is_nan() && w.1.is_nan()) || g.1.to_bits() == w.1.to_bits();
            assert!(same, "{name}: {g:?} vs {w:?}");
        }
    }
}

/// Each rejected fixture was rejected by promtool (its message is in
/// `promtool.txt`) and is rejected here, at the position noted.
#[test]
fn fixtures_rejected_like_promtool() {
    let cases: &[(&str, usize, usize, &str)] = &[
        ("blank_line.om", 2, 1, "empty lines are not allowed"),
        ("crlf.om", 1, 5, "invalid float \"1\\r\""),
        ("data_after_eof.om", 3, 1, "unexpected data after # EOF"),
        ("double_space.om", 1, 3, "expected value after metric"),
        ("duplicate_label.om", 1, 9, "label name \"b\" is not unique"),
        (
            "duplicate_name.om",
            1,
            3,
            "label name \"__name__\" is not unique",
        ),
        (
            "exemplar_on_gauge.om",
            1,
            1,
            "metric name a does not support exemplars",
        ),
        ("hex_float.om", 1, 3, "unsupported character in float"),
        ("indented.om", 1, 1, "expected metric name or \"#\""),
        ("invalid_utf8.om", 1, 6, "invalid UTF-8 label value"),
        ("nan_timestamp.om", 1, 5, "invalid timestamp"),
        (
            "newline_in_label_value.om",
            1,
            7,
            "line break in label value",
        ),
        ("no_eof.om", 2, 1, "data does not end with # EOF"),
        ("plain_comment.om", 1, 1, "invalid comment"),
        ("signed_nan.om", 1, 3, "invalid float \"+NaN\""),
        ("trailing_comma.om", 1, 9, "expected label name, got '}'"),
        (
            "trailing_space.om",
            1,
            7,
            "expected end of line or exemplar after timestamp",
        ),
        (
            "unit_not_suffix.om",
            1,
            18,
            "unit not a suffix of metric \"a_seconds\"",
        ),
        ("untyped.om", 1, 10, "invalid metric type \"untyped\""),
        (
            "value_out_of_range.om",
            1,
            3,
            "float \"1e400\" is out of range",
        ),
    ];
    let dir = fixture_dir().join("rejected");
    let promtool = std::fs::read_to_string(dir.join("promtool.txt")).unwrap();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with(".om"))
        .collect();
    files.sort();
    let listed: Vec<&str> = cases.iter().map(|c| c.0).collect();
    assert_eq!(files, listed, "every rejected fixture needs a case");
    for &(file, line, column, reason) in cases {
        assert!(
            promtool
                .lines()
                .any(|l| l.starts_with(&format!("{file}: "))),
            "{file} has no promtool error recorded"
        );
        let input = std::fs::read(dir.join(file)).unwrap();
        let e = error(&input, Format::OpenMetrics);
        assert_eq!((e.line, e.column), (line, column), "{file}: {e}");
        assert!(e.reason.contains(reason), "{file}: {e}");
    }
}

/// Large inputs shaped to hit the costly paths: one line with many labels
/// (sorting, the duplicate check), long escaped values, and many comment
/// lines. A quadratic step anywhere would make this test hang.
#[test]
fn large_inputs_stay_linear() {
    let mut line = String::from("m{");
    for i in 0..50_000 {
        line.push_str(&format!("l{i}=\"v\\\\{i}\","));
    }
    line.push_str("} 1\n");
    let (l, _, _) = only_sample(prom(&line));
    assert_eq!(l.len(), 50_001);
    assert_eq!(l.get("l7"), Some("v\\7"));

    let comments = "# just a comment line\n".repeat(100_000) + "m 1";
    assert_eq!(prom(&comments).len(), 1);

    let value = "x".repeat(1 << 20);
    let input = format!("m{{a=\"{value}\"}} 1\n# EOF\n");
    assert_eq!(om(&input).len(), 2);
    // The error position is found once, at the end of a long input.
    let bad = "m 1\n".repeat(100_000) + "m x";
    prom_err(bad.as_bytes(), 100_001, 3, "invalid float \"x\"");
}

// ---- Properties. ----

/// Parses everything, checking that the parser ends, yields at most one
/// error and nothing after it, and yields no more entries than there are
/// bytes (plus the final `Eof`). That holds only if every entry consumes
/// input.
fn check_terminates(input: &[u8], format: Format) {
    let mut p = Parser::new(input, format);
    let mut n = 0usize;
    while let Some(item) = p.next() {
        n += 1;
        assert!(n <= input.len() + 1, "too many entries");
        if let Some(ex) = p.exemplar() {
            assert!(ex.labels.len() <= input.len());
        }
        if item.is_err() {
            assert!(p.next().is_none());
            break;
        }
    }
    assert!(p.next().is_none());
}

/// Bytes that make up the syntax, to reach deep into the grammar more often
/// than uniformly random bytes would.
fn syntax_bytes() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        &b"a"[..],
        b"_",
        b":",
        b"9",
        b"{",
        b"}",
        b"=",
        b",",
        b"\"",
        b"\\",
        b" ",
        b"\t",
        b"\n",
        b"\r",
        b"#",
        b"# ",
        b"# EOF",
        b"# HELP ",
        b"# TYPE ",
        b"# UNIT ",
        b"counter",
        b"1",
        b".",
        b"e",
        b"-",
        b"+",
        b"Inf",
        b"NaN",
        b" # {",
        b"_total",
        b"\0",
        b"\xff",
        b"\xc3\xa9",
        b"le",
        b"\"x\"",
    ]);
    prop::collection::vec(pieces, 0..48).prop_map(|v| v.concat())
}

/// A label value drawn from characters that need escaping and some that don't.
fn label_value() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            'a', 'Z', '0', ' ', '"', '\\', '\n', 'é', '#', '{', '}', ',', '=', 'n',
        ]),
        0..8,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn float_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        (-1_000_000i64..1_000_000).prop_map(|i| i as f64 / 8.0),
    ]
}

/// Renders a float the way a Go client would (`strconv.FormatFloat(v, 'g',
/// -1, 64)` accepts the same digits); Rust's shortest form parses back exactly.
fn render_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v:e}")
    }
}

type SampleSpec = (String, Vec<(String, String)>, f64, Option<i64>);

fn sample_spec() -> impl Strategy<Value = SampleSpec> {
    (
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,6}",
        prop::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,4}", label_value(), 0..4),
        float_value(),
        prop::option::of(0i64..4_000_000_000_000),
    )
        .prop_map(|(name, labels, v, t)| {
            let labels = labels
                .into_iter()
                .filter(|(k, _)| k != "__name__")
                .collect();
            (name, labels, v, t)
        })
}

fn render(samples: &[SampleSpec], format: Format) -> String {
    let mut out = String::new();
    for (name, labels, v, t) in samples {
        out.push_str(name);
        if !labels.is_empty() || format == Format::OpenMetrics {
            let ls: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            out.push_str(&format!("{{{}}}", ls.join(",")));
        }
        out.push(' ');
        out.push_str(&render_float(*v));
        if let Some(t) = t {
            match format {
                Format::PromText => out.push_str(&format!(" {t}")),
                // Whole milliseconds as seconds with three decimals: the
                // conversion back may be 1 ms low (truncation), never more.
                Format::OpenMetrics => out.push_str(&format!(" {}.{:03}", t / 1000, t % 1000)),
            }
        }
        out.push('\n');
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_or_loop(input in prop::collection::vec(any::<u8>(), 0..256)) {
        check_terminates(&input, Format::PromText);
        check_terminates(&input, Format::OpenMetrics);
    }

    #[test]
    fn syntax_soup_never_panics_or_loops(input in syntax_bytes()) {
        check_terminates(&input, Format::PromText);
        check_terminates(&input, Format::OpenMetrics);
    }

    #[test]
    fn rendered_samples_round_trip(samples in prop::collection::vec(sample_spec(), 0..6)) {
        for format in [Format::PromText, Format::OpenMetrics] {
            let text = render(&samples, format);
            let entries = parse(text.as_bytes(), format)
                .unwrap_or_else(|e| panic!("{format:?} {text:?}: {e}"));
            let got: Vec<_> = entries.into_iter().filter(|e| *e != Entry::Eof).collect();
            prop_assert_eq!(got.len(), samples.len());
            for (e, (name, lbls, v, t)) in got.into_iter().zip(&samples) {
                let Entry::Sample { labels: l, t_ms, value } = e else {
                    panic!("not a sample: {e:?}");
                };
                let mut want: Vec<(&str, &str)> = vec![("__name__", name)];
                want.extend(lbls.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                prop_assert_eq!(&l, &labels(&want));
                if v.is_nan() {
                    prop_assert_eq!(value.to_bits(), NORMAL_NAN.to_bits());
                } else {
                    prop_assert_eq!(value.to_bits(), v.to_bits());
                }
                match (format, t, t_ms) {
                    (Format::OpenMetrics, Some(t), Some(got)) => {
                        prop_assert!(*t - 1 <= got && got <= *t, "{} vs {}", t, got)
                    }
                    _ => prop_assert_eq!(*t, t_ms),
                }
            }
        }
    }
}
