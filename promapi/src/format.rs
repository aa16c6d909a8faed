//! Byte-exact JSON encoding of query results, as Prometheus writes them.
//!
//! Prometheus does not encode results with a generic JSON library; it writes
//! them by hand (`web/api/v1/json_codec.go`, `util/jsonutil/marshal.go`), and
//! clients and golden tests depend on the exact text. The rules reproduced here:
//!
//! * Sample timestamps are integer milliseconds printed as `seconds` or
//!   `seconds.mmm` with exactly three fraction digits (`1700000010.500`,
//!   `.050`), a leading `-` for negative times, no fraction when it is zero.
//! * Sample values are JSON strings of Go's shortest float text: plain
//!   decimal, except exponent form (`1e-07`, `1e+21`) when `|f| < 1e-6` or
//!   `|f| >= 1e21`; `NaN`, `+Inf`, `-Inf` for the special values.
//! * Scalar and string results are encoded differently: the time is a plain JSON
//!   number of `t / 1000.0` (shortest text, `1700000000.123`), and a scalar's
//!   value always uses plain decimal (`1000000000000000000000`).
//! * Strings are escaped the way Go's JSON encoders do with HTML escaping on:
//!   `<`, `>`, `&`, U+2028 and U+2029 become `\uXXXX`, control characters other
//!   than `\n`, `\r`, `\t` become `\u00xx`. Clients decode either form, but the
//!   bytes then match Prometheus exactly.
//!
//! * Native histograms are objects `{"count":"…","sum":"…","buckets":[…]}`
//!   whose buckets (only populated ones, most negative first) are
//!   `[boundary rule, "lower", "upper", "count"]`, the rule being 0 for
//!   `(l,u]`, 1 for `[l,u)`, 2 for `(l,u)` and 3 for `[l,u]`. A vector sample
//!   holding one has `"histogram"` instead of `"value"`; a matrix series has
//!   `"histograms"` beside (or instead of) `"values"`.
//!
//! Everything that is not a query result goes through `serde_json` with
//! [`GoFormatter`], which applies the same string escaping.

use std::fmt::Write as _;
use std::io;

use strata_promql::{FloatHistogram, Sample, Series, Value};
use strata_tsdb::labels::Labels;

/// Appends a millisecond timestamp as Prometheus' `MarshalTimestamp` does.
pub fn write_timestamp(out: &mut String, t: i64) {
    if t < 0 {
        out.push('-');
    }
    // unsigned_abs: i64::MIN has no positive i64 counterpart.
    let a = t.unsigned_abs();
    let _ = write!(out, "{}", a / 1000);
    let frac = a % 1000;
    if frac != 0 {
        let _ = write!(out, ".{frac:03}");
    }
}

/// A millisecond timestamp as Prometheus' `MarshalTimestamp` writes it.
pub fn format_timestamp(t: i64) -> String {
    let mut s = String::new();
    write_timestamp(&mut s, t);
    s
}

/// Go's `strconv.FormatFloat(f, 'e', -1, 64)`: shortest digits, exponent with
/// a sign and at least two digits.
fn go_exponent_form(f: f64) -> String {
    // Rust's `{:e}` already gives the shortest round-trip mantissa
    // ("1e-7", "1.5e21"); only the exponent needs Go's shape.
    let s = format!("{f:e}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            if digits.len() < 2 {
                format!("{mantissa}e{sign}0{digits}")
            } else {
                format!("{mantissa}e{sign}{digits}")
            }
        }
        None => s,
    }
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`, used for scalar values.
pub fn format_float_plain(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_string()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        // Rust's Display prints the shortest round-trip digits without an
        // exponent, which is exactly Go's 'f' with precision -1.
        format!("{f}")
    }
}

/// A sample value as Prometheus' `MarshalFloat` writes it (without quotes).
pub fn format_sample_value(f: f64) -> String {
    let a = f.abs();
    if f.is_finite() && a != 0.0 && !(1e-6..1e21).contains(&a) {
        go_exponent_form(f)
    } else {
        format_float_plain(f)
    }
}

/// A float as Go's `encoding/json` writes a `float64` number. Only finite
/// values reach this (scalar/string times are finite by construction).
pub fn format_json_number(f: f64) -> String {
    let a = f.abs();
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        // encoding/json trims "e-07" to "e-7" but keeps "e+21".
        let s = go_exponent_form(f);
        match s.find("e-0") {
            Some(i) => format!("{}e-{}", &s[..i], &s[i + 3..]),
            None => s,
        }
    } else {
        format!("{f}")
    }
}

/// Appends `s` as a JSON string literal with Go's HTML-safe escaping.
pub fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a label set as a JSON object, in label order.
pub fn write_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_str(out, &l.name);
        out.push(':');
        write_json_str(out, &l.value);
    }
    out.push('}');
}

/// Appends `[<ts>,"<value>"]` for a vector or matrix point.
fn write_point(out: &mut String, t: i64, f: f64) {
    out.push('[');
    write_timestamp(out, t);
    out.push_str(",\"");
    out.push_str(&format_sample_value(f));
    out.push_str("\"]");
}

/// Appends a native histogram as Prometheus' `marshalHistogram` does.
fn write_histogram(out: &mut String, h: &FloatHistogram) {
    out.push_str("{\"count\":\"");
    out.push_str(&format_sample_value(h.count));
    out.push_str("\",\"sum\":\"");
    out.push_str(&format_sample_value(h.sum));
    out.push('"');
    let mut first = true;
    for b in h.all_buckets().iter().filter(|b| b.count != 0.0) {
        out.push_str(if first { ",\"buckets\":[" } else { "," });
        first = false;
        let rule = match (b.lower_inclusive, b.upper_inclusive) {
            (true, true) => 3,
            (true, false) => 1,
            (false, true) => 0,
            (false, false) => 2,
        };
        let _ = write!(
            out,
            "[{rule},\"{}\",\"{}\",\"{}\"]",
            format_sample_value(b.lower),
            format_sample_value(b.upper),
            format_sample_value(b.count)
        );
    }
    if !first {
        out.push(']');
    }
    out.push('}');
}

/// Appends `[<ts>,{histogram}]`.
fn write_hpoint(out: &mut String, t: i64, h: &FloatHistogram) {
    out.push('[');
    write_timestamp(out, t);
    out.push(',');
    write_histogram(out, h);
    out.push(']');
}

fn write_sample(out: &mut String, s: &Sample) {
    out.push_str("{\"metric\":");
    write_labels(out, &s.metric);
    match &s.h {
        Some(h) => {
            out.push_str(",\"histogram\":");
            write_hpoint(out, s.t, h);
        }
        None => {
            out.push_str(",\"value\":");
            write_point(out, s.t, s.f);
        }
    }
    out.push('}');
}

fn write_series(out: &mut String, s: &Series) {
    out.push_str("{\"metric\":");
    write_labels(out, &s.metric);
    // Prometheus omits "values" for a series without float points.
    if !s.floats.is_empty() {
        out.push_str(",\"values\":[");
        for (i, &(t, f)) in s.floats.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_point(out, t, f);
        }
        out.push(']');
    }
    if !s.histograms.is_empty() {
        out.push_str(",\"histograms\":[");
        for (i, (t, h)) in s.histograms.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_hpoint(out, *t, h);
        }
        out.push(']');
    }
    out.push('}');
}

/// The `resultType` name of a value.
pub fn result_type(v: &Value) -> &'static str {
    match v {
        Value::Scalar(..) => "scalar",
        Value::String(..) => "string",
        Value::Vector(_) => "vector",
        Value::Matrix(_) => "matrix",
    }
}

/// Appends the JSON of a result value (the `result` field).
pub fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Scalar(t, f) => {
            out.push('[');
            out.push_str(&format_json_number(*t as f64 / 1000.0));
            out.push_str(",\"");
            out.push_str(&format_float_plain(*f));
            out.push_str("\"]");
        }
        Value::String(t, s) => {
            out.push('[');
            out.push_str(&format_json_number(*t as f64 / 1000.0));
            out.push(',');
            write_json_str(out, s);
            out.push(']');
        }
        Value::Vector(samples) => {
            out.push('[');
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sample(out, s);
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push('[');
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_series(out, s);
            }
            out.push(']');
        }
    }
}

/// `{"resultType":"…","result":…}`, the `data` of query responses.
pub fn query_data_json(v: &Value) -> String {
    let mut out = String::with_capacity(64);
    out.push_str("{\"resultType\":\"");
    out.push_str(result_type(v));
    out.push_str("\",\"result\":");
    write_value(&mut out, v);
    out.push('}');
    out
}

/// A JSON array of strings (`[]` when empty, never `null`).
pub fn string_array_json(items: &[String]) -> String {
    let mut out = String::from("[");
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_str(&mut out, s);
    }
    out.push(']');
    out
}

/// A JSON array of label objects, as `/series` returns.
pub fn labels_array_json(items: &[Labels]) -> String {
    let mut out = String::from("[");
    for (i, l) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_labels(&mut out, l);
    }
    out.push(']');
    out
}

/// A `serde_json` formatter that escapes strings like [`write_json_str`].
#[derive(Default, Clone, Copy)]
pub struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // serde_json hands over runs that need no JSON escaping; the HTML-safe
        // characters still have to be escaped here.
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                write!(writer, "\\u{:04x}", c as u32)?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        char_escape: serde_json::ser::CharEscape,
    ) -> io::Result<()> {
        use serde_json::ser::CharEscape;
        match char_escape {
            CharEscape::Quote => writer.write_all(b"\\\""),
            CharEscape::ReverseSolidus => writer.write_all(b"\\\\"),
            CharEscape::Solidus => writer.write_all(b"\\/"),
            CharEscape::LineFeed => writer.write_all(b"\\n"),
            CharEscape::CarriageReturn => writer.write_all(b"\\r"),
            CharEscape::Tab => writer.write_all(b"\\t"),
            // Go writes \b and \f as \u escapes like any other control byte.
            CharEscape::Backspace => writer.write_all(b"\\u0008"),
            CharEscape::FormFeed => writer.write_all(b"\\u000c"),
            CharEscape::AsciiControl(b) => write!(writer, "\\u{:04x}", b),
        }
    }
}

/// Serializes with [`GoFormatter`].
pub fn to_go_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String, serde_json::Error> {
    let mut buf = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, GoFormatter);
    v.serialize(&mut ser)?;
    // serde_json only ever writes UTF-8.
    String::from_utf8(buf).map_err(|e| serde::ser::Error::custom(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(format_timestamp(1_700_000_010_500), "1700000010.500");
        assert_eq!(format_timestamp(1_700_000_010_050), "1700000010.050");
        assert_eq!(format_timestamp(1_700_000_010_005), "1700000010.005");
        assert_eq!(format_timestamp(1_700_000_010_000), "1700000010");
        assert_eq!(format_timestamp(1_700_000_010_123), "1700000010.123");
        assert_eq!(format_timestamp(0), "0");
        assert_eq!(format_timestamp(5), "0.005");
        assert_eq!(format_timestamp(-1500), "-1.500");
        assert_eq!(format_timestamp(-5), "-0.005");
        assert_eq!(format_timestamp(i64::MIN), "-9223372036854775.808");
        assert_eq!(format_timestamp(i64::MAX), "9223372036854775.807");
    }

    #[test]
    fn sample_values() {
        assert_eq!(format_sample_value(1.0), "1");
        assert_eq!(format_sample_value(0.0), "0");
        assert_eq!(format_sample_value(-0.0), "-0");
        assert_eq!(format_sample_value(1.5), "1.5");
        assert_eq!(format_sample_value(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_sample_value(1e-7), "1e-07");
        assert_eq!(format_sample_value(-2.5e-8), "-2.5e-08");
        assert_eq!(format_sample_value(1e-6), "0.000001");
        assert_eq!(format_sample_value(1e21), "1e+21");
        assert_eq!(format_sample_value(1.5e300), "1.5e+300");
        assert_eq!(format_sample_value(5e-324), "5e-324");
        assert_eq!(format_sample_value(1e20), "100000000000000000000");
        assert_eq!(format_sample_value(123456789.125), "123456789.125");
        assert_eq!(format_sample_value(f64::NAN), "NaN");
        assert_eq!(format_sample_value(f64::INFINITY), "+Inf");
        assert_eq!(format_sample_value(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn scalar_values_and_times() {
        assert_eq!(format_float_plain(1e21), "1000000000000000000000");
        assert_eq!(format_float_plain(1e-7), "0.0000001");
        assert_eq!(format_float_plain(2.0), "2");
        assert_eq!(format_float_plain(f64::NAN), "NaN");
        assert_eq!(format_float_plain(f64::INFINITY), "+Inf");
        assert_eq!(format_float_plain(f64::NEG_INFINITY), "-Inf");
        assert_eq!(
            format_json_number(1_700_000_000_123.0 / 1000.0),
            "1700000000.123"
        );
        assert_eq!(format_json_number(4.0), "4");
        assert_eq!(format_json_number(0.0), "0");
        assert_eq!(format_json_number(-1.5), "-1.5");
        assert_eq!(format_json_number(1e-7), "1e-7");
        assert_eq!(format_json_number(1e21), "1e+21");
        assert_eq!(format_json_number(0.001), "0.001");
    }

    #[test]
    fn strings_are_escaped_like_go() {
        let mut s = String::new();
        write_json_str(&mut s, "a\"b\\c\n\r\t\u{8}\u{c}\u{1}<>&\u{2028}\u{2029}é/");
        assert_eq!(
            s,
            r#""a\"b\\c\n\r\t\u0008\u000c\u0001\u003c\u003e\u0026\u2028\u2029é/""#
        );
        // serde_json with GoFormatter must agree byte for byte.
        let via_serde = to_go_json("a\"b\\c\n\r\t\u{8}\u{c}\u{1}<>&\u{2028}\u{2029}é/").unwrap();
        assert_eq!(via_serde, s);
    }

    #[test]
    fn values() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let v = Value::Vector(vec![Sample {
            metric: l.clone(),
            t: 1_700_000_010_000,
            f: 1.0,
            h: None,
        }]);
        assert_eq!(
            query_data_json(&v),
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},"value":[1700000010,"1"]}]}"#
        );
        let m = Value::Matrix(vec![
            Series {
                metric: l,
                floats: vec![(1_700_000_010_500, f64::NAN), (1_700_000_030_500, 2.0)],
                histograms: Vec::new(),
            },
            Series {
                metric: Labels::empty(),
                floats: vec![],
                histograms: Vec::new(),
            },
        ]);
        assert_eq!(
            query_data_json(&m),
            r#"{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a"},"values":[[1700000010.500,"NaN"],[1700000030.500,"2"]]},{"metric":{}}]}"#
        );
        assert_eq!(
            query_data_json(&Value::Scalar(1_700_000_000_123, 2.0)),
            r#"{"resultType":"scalar","result":[1700000000.123,"2"]}"#
        );
        assert_eq!(
            query_data_json(&Value::String(4000, "a<b".into())),
            r#"{"resultType":"string","result":[4,"a\u003cb"]}"#
        );
        assert_eq!(
            query_data_json(&Value::Vector(vec![])),
            r#"{"resultType":"vector","result":[]}"#
        );
    }

    #[test]
    fn native_histograms() {
        use strata_promql::histogram::Span;
        let h = FloatHistogram {
            count: 4.0,
            sum: 5.5,
            zero_threshold: 0.001,
            zero_count: 1.0,
            positive_spans: vec![Span {
                offset: 0,
                length: 2,
            }],
            positive_buckets: vec![2.0, 0.0],
            negative_spans: vec![Span {
                offset: 1,
                length: 1,
            }],
            negative_buckets: vec![1.0],
            ..Default::default()
        };
        let l = Labels::from_pairs([("__name__", "h")]);
        let v = Value::Vector(vec![Sample {
            metric: l.clone(),
            t: 1_000,
            f: 0.0,
            h: Some(h.clone()),
        }]);
        assert_eq!(
            query_data_json(&v),
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"h"},"histogram":[1,{"count":"4","sum":"5.5","buckets":[[1,"-2","-1","1"],[3,"-0.001","0.001","1"],[0,"0.5","1","2"]]}]}]}"#
        );
        let m = Value::Matrix(vec![Series {
            metric: l,
            floats: vec![(0, 1.0)],
            histograms: vec![(2_000, FloatHistogram::default())],
        }]);
        assert_eq!(
            query_data_json(&m),
            r#"{"resultType":"matrix","result":[{"metric":{"__name__":"h"},"values":[[0,"1"]],"histograms":[[2,{"count":"0","sum":"0"}]]}]}"#
        );
    }
}
