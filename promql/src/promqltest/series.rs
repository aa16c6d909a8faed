//! Series descriptions: `metric{l="v"} 1 2+3x4 _ stale {{count:1}}`.
//!
//! The grammar is Prometheus's (the series-description mode of its PromQL
//! lexer and parser), re-implemented here because `promql-parser` has no
//! such mode:
//!
//! * the metric is an identifier, a `{…}` label set, or both, with no space
//!   between them; label values (and quoted names) are Go string literals;
//! * items are separated by whitespace:
//!   `_` (no sample), `_xN` (N missing samples), `v` (one value),
//!   `vxN` (N+1 copies), `v+dxN` / `v-dxN` (N+1 values stepping by d),
//!   `stale` (the staleness marker), `{{…}}` (a native histogram, also with
//!   `xN`, `+{{…}}xN` and `-{{…}}xN`);
//! * values are decimal numbers (no hex: `x` means "times"), `Inf`, `NaN`,
//!   with an optional sign.
//!
//! `axN` yielding N+1 values (and `_xN` only N) is upstream's behaviour: the
//! extra value is the one "at time 0".

use strata_tsdb::labels::{Labels, METRIC_NAME};

use super::text::{parse_number, scan_quoted};
use crate::histogram::{CounterResetHint, FloatHistogram, Span};

/// Prometheus's staleness marker, a NaN with a specific bit pattern.
pub(crate) const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Upper bound on the values one line may expand to. Upstream has none; it
/// is here so that hostile input (`1x99999999999`) fails instead of
/// exhausting memory. The largest expansion in the real files is ~10k.
pub(crate) const MAX_VALUES_PER_LINE: usize = 1_000_000;

/// One position in an expanded sequence.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum SeqValue {
    /// `_`: no sample at this position.
    Omitted,
    Float(f64),
    /// A native histogram, and whether its description set
    /// `counter_reset_hint` explicitly (only then is the hint compared).
    Histogram(Box<FloatHistogram>, bool),
}

/// A parsed series description.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SeriesDesc {
    pub labels: Labels,
    pub values: Vec<SeqValue>,
}

/// Parses a whole series-description line.
pub(crate) fn parse_series_desc(line: &str) -> Result<SeriesDesc, String> {
    let line = line.trim();
    let (labels, rest) = parse_metric(line)?;
    if !rest.is_empty() && !rest.starts_with(is_space) {
        return Err(format!(
            "unexpected {:?} after the metric (values must be separated by a space)",
            first_char(rest)
        ));
    }
    let mut values = Vec::new();
    for item in split_items(rest)? {
        parse_item(item, &mut values)?;
    }
    Ok(SeriesDesc { labels, values })
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn first_char(s: &str) -> char {
    s.chars().next().unwrap_or(' ')
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Splits off a leading identifier (`[A-Za-z_:][A-Za-z0-9_:]*`).
fn take_ident(s: &str) -> Option<(&str, &str)> {
    if !s.starts_with(is_ident_start) {
        return None;
    }
    let end = s.find(|c| !is_ident_char(c)).unwrap_or(s.len());
    Some((&s[..end], &s[end..]))
}

/// Parses the metric part of a line and returns the rest.
pub(crate) fn parse_metric(s: &str) -> Result<(Labels, &str), String> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut rest = s;
    let mut any = false;
    if let Some((name, r)) = take_ident(rest) {
        pairs.push((METRIC_NAME.to_string(), name.to_string()));
        rest = r;
        any = true;
    }
    if let Some(r) = rest.strip_prefix('{') {
        rest = parse_label_set(r, &mut pairs)?;
        any = true;
    }
    if !any {
        return Err(format!(
            "expected a metric name or label set, got {:?}",
            first_char(s)
        ));
    }
    Ok((Labels::from_pairs(pairs), rest))
}

/// Parses `a="1", "b"="2", "name"}` (the opening brace already consumed).
fn parse_label_set<'a>(
    mut s: &'a str,
    pairs: &mut Vec<(String, String)>,
) -> Result<&'a str, String> {
    loop {
        s = s.trim_start_matches(is_space);
        if let Some(r) = s.strip_prefix('}') {
            return Ok(r);
        }
        let name;
        let mut bare_string = None;
        if let Some((ident, r)) = take_ident(s) {
            name = ident.to_string();
            s = r;
        } else if s.starts_with(['"', '\'', '`']) {
            let (lit, r) = scan_quoted(s)?;
            name = lit.clone();
            bare_string = Some(lit);
            s = r;
        } else if s.is_empty() {
            return Err("unterminated label set".into());
        } else {
            return Err(format!("unexpected {:?} in label set", first_char(s)));
        }
        s = s.trim_start_matches(is_space);
        if let Some(r) = s.strip_prefix('=') {
            if r.starts_with('~') {
                return Err("only `=` is allowed in a series description".into());
            }
            let r = r.trim_start_matches(is_space);
            let (value, r) = scan_quoted(r).map_err(|e| format!("label {name:?}: {e}"))?;
            pairs.push((name, value));
            s = r;
        } else if let Some(metric) = bare_string {
            // `{"metric.name", …}`: a lone quoted string is the metric name.
            pairs.push((METRIC_NAME.to_string(), metric));
        } else {
            return Err(format!("expected `=` after label name {name:?}"));
        }
        s = s.trim_start_matches(is_space);
        if let Some(r) = s.strip_prefix(',') {
            s = r;
        } else if !s.starts_with('}') {
            return Err(format!(
                "expected `,` or `}}` in label set, got {:?}",
                first_char(s)
            ));
        }
    }
}

/// Splits the value part at whitespace, keeping `{{ … }}` in one item.
fn split_items(s: &str) -> Result<Vec<&str>, String> {
    let mut items = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    let mut start: Option<usize> = None;
    let mut in_hist = false;
    while i < b.len() {
        if in_hist {
            if b[i..].starts_with(b"}}") {
                in_hist = false;
                i += 2;
            } else {
                i += 1;
            }
            continue;
        }
        if b[i..].starts_with(b"{{") {
            start.get_or_insert(i);
            in_hist = true;
            i += 2;
            continue;
        }
        if matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
            if let Some(st) = start.take() {
                items.push(&s[st..i]);
            }
        } else {
            start.get_or_insert(i);
        }
        i += 1;
    }
    if in_hist {
        return Err("unterminated histogram description `{{`".into());
    }
    if let Some(st) = start {
        items.push(&s[st..]);
    }
    Ok(items)
}

fn push_n(out: &mut Vec<SeqValue>, v: SeqValue, n: u64) -> Result<(), String> {
    if n > (MAX_VALUES_PER_LINE - out.len().min(MAX_VALUES_PER_LINE)) as u64 {
        return Err(format!(
            "series expands to more than {MAX_VALUES_PER_LINE} values"
        ));
    }
    // Histograms are large: keep hostile repetitions of them small too.
    if matches!(v, SeqValue::Histogram(..)) && n > MAX_HISTOGRAMS_PER_ITEM {
        return Err(format!(
            "histogram repeated more than {MAX_HISTOGRAMS_PER_ITEM} times"
        ));
    }
    out.extend(std::iter::repeat_n(v, n as usize));
    Ok(())
}

/// Upper bound on the expansion of one histogram item (`{{…}}xN`).
const MAX_HISTOGRAMS_PER_ITEM: u64 = 100_000;

/// The repetition count after `x`: a plain decimal integer, as Go's
/// `ParseUint(s, 10, 64)` reads it.
fn parse_count(s: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!("invalid repetition count {s:?}"));
    }
    s.parse::<u64>()
        .map_err(|e| format!("invalid repetition in series values: {e}"))
}

/// Expands one item into `out`.
fn parse_item(item: &str, out: &mut Vec<SeqValue>) -> Result<(), String> {
    if item.starts_with("{{") || item.starts_with("+{{") || item.starts_with("-{{") {
        return parse_histogram_item(item, out);
    }
    if item == "_" {
        return push_n(out, SeqValue::Omitted, 1);
    }
    if let Some(n) = item.strip_prefix("_x") {
        return push_n(out, SeqValue::Omitted, parse_count(n)?);
    }
    let (base, rest) = scan_value(item, true)?;
    if rest.is_empty() {
        return push_n(out, SeqValue::Float(base), 1);
    }
    if let Some(n) = rest.strip_prefix('x') {
        let n = parse_count(n)?;
        return push_n(out, SeqValue::Float(base), n.saturating_add(1));
    }
    if rest.starts_with(['+', '-']) {
        let (delta, r) = scan_value(rest, false)?;
        let Some(n) = r.strip_prefix('x') else {
            return Err(format!("expected `x<count>` after {item:?}"));
        };
        let n = parse_count(n)?;
        // Check the size up front instead of failing after a long loop.
        if n >= (MAX_VALUES_PER_LINE - out.len().min(MAX_VALUES_PER_LINE)) as u64 {
            return Err(format!(
                "series expands to more than {MAX_VALUES_PER_LINE} values"
            ));
        }
        // Repeated addition rather than base + i*delta: upstream accumulates,
        // and expected values must match its rounding exactly.
        let mut v = base;
        for _ in 0..=n {
            push_n(out, SeqValue::Float(v), 1)?;
            v += delta;
        }
        return Ok(());
    }
    Err(format!("unexpected {rest:?} in series value {item:?}"))
}

/// Scans a (signed) value at the start of `s`. With `allow_stale`, the word
/// `stale` is accepted too. Returns the value and the rest.
fn scan_value(s: &str, allow_stale: bool) -> Result<(f64, &str), String> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let signed = body.len() != s.len();
    let (v, rest) = if body.starts_with(|c: char| c.is_ascii_alphabetic()) {
        // A whole identifier run: `Infx3` is one (invalid) word upstream too.
        let end = body
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_' && c != ':')
            .unwrap_or(body.len());
        let word = &body[..end];
        let v = match word.to_ascii_lowercase().as_str() {
            "inf" => f64::INFINITY,
            "nan" => f64::NAN,
            "stale" if allow_stale && !signed => f64::from_bits(STALE_NAN_BITS),
            _ => return Err(format!("expected a number or \"stale\", got {word:?}")),
        };
        (v, &body[end..])
    } else {
        let len = scan_number(body)?;
        let text = &body[..len];
        let v = parse_number(text).ok_or_else(|| format!("error parsing number {text:?}"))?;
        (v, &body[len..])
    };
    Ok((if neg { -v } else { v }, rest))
}

/// Mirrors the lexer's number scanner in series mode (decimal only):
/// `[.][digit]` then any of digits, one `.`, one exponent with optional sign,
/// and `_` between digits. The number must be followed by a non-alphanumeric
/// character or by `x`. Returns the scanned length.
fn scan_number(s: &str) -> Result<usize, String> {
    let b = s.as_bytes();
    let err = || format!("bad number or duration syntax: {s:?}");
    let mut i = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
    }
    if b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let (mut dot, mut exp) = (false, false);
    while let Some(&c) = b.get(i) {
        match c {
            b'0'..=b'9' => i += 1,
            b'.' => {
                if dot {
                    return Err(err());
                }
                dot = true;
                i += 1;
                if matches!(b.get(i), Some(b'_' | b'.')) {
                    return Err(err());
                }
            }
            b'e' | b'E' => {
                if exp {
                    return Err(err());
                }
                exp = true;
                i += 1;
                if matches!(b.get(i), Some(b'+' | b'-')) {
                    i += 1;
                }
                if matches!(b.get(i), None | Some(b'.' | b'_' | b'e' | b'E')) {
                    return Err(err());
                }
            }
            b'_' => {
                i += 1;
                if matches!(b.get(i), None | Some(b'.' | b'_' | b'e' | b'E')) {
                    return Err(err());
                }
            }
            _ => break,
        }
    }
    if i == 0 {
        return Err(format!("expected a number, got {s:?}"));
    }
    match b.get(i) {
        Some(b'x') | None => Ok(i),
        Some(c) if c.is_ascii_alphanumeric() || *c == b'_' => Err(err()),
        Some(_) => Ok(i),
    }
}

/// Splits `{{…}}` off the start of `s`, returning the inside and the rest.
fn take_histogram(s: &str) -> Result<(&str, &str), String> {
    let inner = s.strip_prefix("{{").ok_or("expected `{{`")?;
    let end = inner
        .find("}}")
        .ok_or("unterminated histogram description `{{`")?;
    Ok((&inner[..end], &inner[end + 2..]))
}

/// Builds a histogram from its description (`schema:1 sum:5 buckets:[1 2]`),
/// as upstream's `buildHistogramFromMap`. Returns it and whether
/// `counter_reset_hint` was given.
fn build_histogram(body: &str) -> Result<(FloatHistogram, bool), String> {
    const NUMERIC: [&str; 8] = [
        "schema",
        "sum",
        "count",
        "z_bucket",
        "z_bucket_w",
        "offset",
        "n_offset",
        "counter_reset_hint",
    ];
    const LISTS: [&str; 3] = ["buckets", "n_buckets", "custom_values"];
    let mut h = FloatHistogram::default();
    let mut hint_set = false;
    let (mut offset, mut n_offset) = (0i32, 0i32);
    let mut seen: Vec<&str> = Vec::new();
    let mut s = body.trim_matches(is_space);
    while !s.is_empty() {
        let colon = s
            .find(':')
            .ok_or_else(|| format!("missing `:` for histogram descriptor in {body:?}"))?;
        let key = s[..colon].trim_matches(is_space);
        if seen.contains(&key) {
            return Err(format!("duplicate key {key:?} in histogram"));
        }
        let r = s[colon + 1..].trim_start_matches(is_space);
        if LISTS.contains(&key) {
            let inner = r
                .strip_prefix('[')
                .ok_or_else(|| format!("{key}: expected `[`"))?;
            let end = inner
                .find(']')
                .ok_or_else(|| format!("{key}: expected `]`"))?;
            let mut vals = Vec::new();
            for n in inner[..end].split(is_space).filter(|x| !x.is_empty()) {
                vals.push(parse_number(n).ok_or_else(|| format!("{key}: bad number {n:?}"))?);
            }
            match key {
                "buckets" => h.positive_buckets = vals,
                "n_buckets" => h.negative_buckets = vals,
                _ => h.custom_values = vals,
            }
            s = inner[end + 1..].trim_start_matches(is_space);
        } else if NUMERIC.contains(&key) {
            let end = r.find(is_space).unwrap_or(r.len());
            let v = &r[..end];
            let bad = || format!("{key}: bad value {v:?}");
            if key == "counter_reset_hint" {
                h.counter_reset_hint = match v {
                    "unknown" => CounterResetHint::Unknown,
                    "reset" => CounterResetHint::Reset,
                    "not_reset" => CounterResetHint::NotReset,
                    "gauge" => CounterResetHint::Gauge,
                    _ => return Err(bad()),
                };
                hint_set = true;
            } else {
                let f = parse_number(v).ok_or_else(bad)?;
                let int = || -> Result<i32, String> {
                    if f.fract() == 0.0 && f.abs() <= f64::from(i32::MAX) {
                        Ok(f as i32)
                    } else {
                        Err(bad())
                    }
                };
                match key {
                    "schema" => h.schema = int()?,
                    "sum" => h.sum = f,
                    "count" => h.count = f,
                    "z_bucket" => h.zero_count = f,
                    "z_bucket_w" => h.zero_threshold = f,
                    "offset" => offset = int()?,
                    _ => n_offset = int()?,
                }
            }
            s = r[end..].trim_start_matches(is_space);
        } else {
            return Err(format!("bad histogram descriptor found: {key:?}"));
        }
        seen.push(key);
    }
    h.check_schema()?;
    if !h.positive_buckets.is_empty() {
        h.positive_spans = vec![Span {
            offset,
            length: h.positive_buckets.len() as u32,
        }];
    }
    if !h.negative_buckets.is_empty() {
        h.negative_spans = vec![Span {
            offset: n_offset,
            length: h.negative_buckets.len() as u32,
        }];
    }
    Ok((h, hint_set))
}

/// `{{…}}`, `{{…}}xN`, `{{…}}+{{…}}xN`, `{{…}}-{{…}}xN`.
fn parse_histogram_item(item: &str, out: &mut Vec<SeqValue>) -> Result<(), String> {
    let (body, rest) = take_histogram(item)?;
    let (base, base_hint) = build_histogram(body)?;
    if rest.is_empty() {
        return push_n(out, SeqValue::Histogram(Box::new(base), base_hint), 1);
    }
    if let Some(n) = rest.strip_prefix('x') {
        return push_n(
            out,
            SeqValue::Histogram(Box::new(base), base_hint),
            parse_count(n)?.saturating_add(1),
        );
    }
    if let Some(r) = rest.strip_prefix(['+', '-']) {
        let negative = rest.starts_with('-');
        let (body2, r) = take_histogram(r)?;
        let (inc, inc_hint) = build_histogram(body2)?;
        let n = r
            .strip_prefix('x')
            .ok_or_else(|| format!("expected `x<count>` after {item:?}"))?;
        let n = parse_count(n)?;
        if n >= MAX_HISTOGRAMS_PER_ITEM {
            return Err(format!(
                "histogram repeated more than {MAX_HISTOGRAMS_PER_ITEM} times"
            ));
        }
        // Upstream marks every element with the increment's hint flag.
        push_n(
            out,
            SeqValue::Histogram(Box::new(base.clone()), inc_hint),
            1,
        )?;
        let mut cur = base;
        for _ in 0..n {
            if cur.schema > inc.schema {
                return Err(format!(
                    "error combining histograms: cannot merge from schema {} to {}",
                    inc.schema, cur.schema
                ));
            }
            let r = if negative {
                cur.sub(&inc)
            } else {
                cur.add(&inc)
            };
            r.map_err(|e| format!("error combining histograms: {e}"))?;
            push_n(out, SeqValue::Histogram(Box::new(cur.clone()), inc_hint), 1)?;
        }
        return Ok(());
    }
    Err(format!("unexpected {rest:?} after histogram in {item:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use SeqValue::*;

    fn vals(s: &str) -> Vec<SeqValue> {
        parse_series_desc(&format!("m {s}"))
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .values
    }

    fn floats(s: &str) -> Vec<f64> {
        vals(s)
            .into_iter()
            .map(|v| match v {
                Float(f) => f,
                other => panic!("{s}: unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn metric_forms() {
        let d = parse_series_desc(r#"http_requests{job="api", instance='0'} 1"#).unwrap();
        assert_eq!(
            d.labels.to_string(),
            r#"{__name__="http_requests", instance="0", job="api"}"#
        );
        let d = parse_series_desc(r#"{__name__="a:b", x="y",} 1"#).unwrap();
        assert_eq!(d.labels.metric_name(), "a:b");
        let d = parse_series_desc(r#"{"some.metric", "utf8.label"="v\n"} 1"#).unwrap();
        assert_eq!(d.labels.metric_name(), "some.metric");
        assert_eq!(d.labels.get("utf8.label"), Some("v\n"));
        let d = parse_series_desc("{} 1").unwrap();
        assert!(d.labels.is_empty());
        let d = parse_series_desc(r#"m{a="x y"}"#).unwrap();
        assert_eq!(d.labels.get("a"), Some("x y"));
        assert!(d.values.is_empty());
        assert!(
            parse_series_desc(r#"m {a="b"} 1"#).is_err(),
            "space before brace"
        );
        assert!(parse_series_desc(r#"m{a!="b"} 1"#).is_err());
        assert!(parse_series_desc(r#"m{a=~"b"} 1"#).is_err());
        assert!(parse_series_desc(r#"m{a="b" 1"#).is_err());
        assert!(parse_series_desc("1 2").is_err());
        assert!(parse_series_desc("m{a=b} 1").is_err());
    }

    #[test]
    fn expansions() {
        assert_eq!(floats("1 2 3"), [1.0, 2.0, 3.0]);
        assert_eq!(floats("0+10x3"), [0.0, 10.0, 20.0, 30.0]);
        assert_eq!(floats("10-2x2"), [10.0, 8.0, 6.0]);
        assert_eq!(floats("-1-1x2"), [-1.0, -2.0, -3.0]);
        assert_eq!(floats("-5+2.5x2"), [-5.0, -2.5, 0.0]);
        assert_eq!(floats("+3"), [3.0]);
        assert_eq!(floats("7x2"), [7.0, 7.0, 7.0]);
        assert_eq!(floats("7x0"), [7.0]);
        assert_eq!(floats("1e3 1.5E+2x1 2e-1"), [1000.0, 150.0, 150.0, 0.2]);
        assert_eq!(floats("1e+2+1e1x1"), [100.0, 110.0]);
        assert_eq!(floats(".5 1_000"), [0.5, 1000.0]);
        assert_eq!(floats("010"), [8.0], "Go reads a leading zero as octal");
        assert_eq!(floats("0x2"), [0.0; 3], "no hex: `x` is repetition");
        assert_eq!(
            floats("Inf -Inf +Inf"),
            [f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY]
        );
        assert_eq!(vals("_"), [Omitted]);
        assert_eq!(
            vals("_x3"),
            [Omitted, Omitted, Omitted],
            "_xN is N, not N+1"
        );
        assert_eq!(vals("1 _x2 2"), [Float(1.0), Omitted, Omitted, Float(2.0)]);
        assert!(vals("_x0").is_empty());
        let v = vals("NaN stale");
        assert!(matches!(v[0], Float(f) if f.is_nan() && f.to_bits() != STALE_NAN_BITS));
        assert!(matches!(v[1], Float(f) if f.to_bits() == STALE_NAN_BITS));
        assert_eq!(floats("1\t2   3"), [1.0, 2.0, 3.0]);
    }

    #[test]
    fn expansion_accumulates_like_upstream() {
        let v = floats("0+0.1x3");
        assert_eq!(v[3], 0.1 + 0.1 + 0.1);
    }

    #[test]
    fn bad_values() {
        for bad in [
            "1+2",
            "1x",
            "x3",
            "1xa",
            "1x-1",
            "1x1.5",
            "abc",
            "Infx3",
            "stalex2",
            "-stale",
            "1..2",
            "1e",
            "1e5e5",
            "1_",
            "0x1F",
            "1a",
            "1 +",
            "_x",
            "_xa",
            "1+2x3x4",
            "{{",
            "{{foo:1}}",
            "{{sum:a}}",
            "{{buckets:[1 2}}",
        ] {
            assert!(
                parse_series_desc(&format!("m {bad}")).is_err(),
                "{bad:?} should fail"
            );
        }
    }

    #[test]
    fn histograms() {
        fn hists(s: &str) -> Vec<Option<FloatHistogram>> {
            vals(s)
                .into_iter()
                .map(|v| match v {
                    Histogram(h, _) => Some(*h),
                    _ => None,
                })
                .collect()
        }
        let h = hists("{{schema:1 sum:5 count:4 buckets:[1 2 1] offset:-1}}");
        let want = FloatHistogram {
            schema: 1,
            sum: 5.0,
            count: 4.0,
            positive_spans: vec![Span {
                offset: -1,
                length: 3,
            }],
            positive_buckets: vec![1.0, 2.0, 1.0],
            ..Default::default()
        };
        assert_eq!(h, vec![Some(want)]);
        assert_eq!(hists("{{}} {{ }}").len(), 2);
        assert_eq!(hists("{{count:1}}x2").len(), 3);
        let h = hists("{{schema:0 sum:1 count:1 buckets:[1]}}+{{sum:2 count:2 buckets:[2]}}x2 _ 3");
        assert_eq!(h.len(), 5);
        let last = h[2].as_ref().unwrap();
        assert_eq!(
            (last.count, last.sum, last.positive_buckets.clone()),
            (5.0, 5.0, vec![5.0])
        );
        assert_eq!(h[3], None);
        let h = hists("{{count:3}}-{{count:1}}x1");
        assert_eq!(h[1].as_ref().unwrap().count, 2.0);
        let v = vals("{{schema:-53 sum:1 count:1 custom_values:[5 10] buckets:[1] counter_reset_hint:gauge}}");
        let Histogram(h, hint_set) = &v[0] else {
            panic!("not a histogram")
        };
        assert!(hint_set);
        assert_eq!(h.custom_values, vec![5.0, 10.0]);
        assert_eq!(h.counter_reset_hint, CounterResetHint::Gauge);
        assert!(parse_series_desc("m {{schema:2}}+{{schema:1}}x2").is_err());
        assert!(parse_series_desc("m {{sum:1 sum:2}}").is_err());
        assert!(parse_series_desc("m {{schema:9}}").is_err());
    }

    #[test]
    fn expansion_is_capped() {
        assert!(parse_series_desc("m 1x99999999999").is_err());
        assert!(parse_series_desc("m 1+1x99999999999").is_err());
        assert!(parse_series_desc("m _x99999999999").is_err());
        assert!(parse_series_desc("m 1x18446744073709551615").is_err());
        assert!(parse_series_desc("m 1x600000 1x600000").is_err());
    }
}
