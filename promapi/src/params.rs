//! Request parameters and Prometheus' rules for parsing them.
//!
//! Prometheus reads every parameter with Go's `r.FormValue`: for a POST with an
//! `application/x-www-form-urlencoded` body the body's values come first and
//! the URL's after them, so a body value wins; repeated keys (`match[]`) keep
//! all values, body ones first. [`Params`] reproduces that.
//!
//! Times (`parseTime`) are a float of Unix seconds (the fraction rounded to
//! milliseconds), or RFC 3339 with optional fraction, or one of the two
//! special strings for the smallest and largest time. Durations
//! (`parseDuration`) are a float of seconds or a Prometheus duration such as
//! `1h30m`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Request parameters: the form body's pairs followed by the URL query's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Builds the parameters from an urlencoded body (if any) and the URL
    /// query string (if any), body first, as Go's `ParseForm` orders them.
    pub fn from_parts(body: Option<&[u8]>, query: Option<&str>) -> Self {
        let mut pairs = Vec::new();
        if let Some(b) = body {
            pairs.extend(form_urlencoded::parse(b).into_owned());
        }
        if let Some(q) = query {
            pairs.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        Params { pairs }
    }

    /// Builds parameters from explicit pairs (tests, or a backend composing
    /// sub-requests).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Params {
            pairs: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The first value of `key`, like Go's `FormValue`, but `None` when absent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Go's `FormValue`: the first value, or "" when absent. Prometheus treats
    /// an empty value like a missing one, so handlers use this.
    pub fn value(&self, key: &str) -> &str {
        self.get(key).unwrap_or("")
    }

    /// All values of `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every pair, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }
}

/// Prometheus' `MinTime` (`time.Unix(math.MinInt64/1000+62135596801, 0)`),
/// in milliseconds: the default start of series and label look-ups.
pub const MIN_TIME_MS: i64 = -9_223_309_901_257_974_000;
/// Prometheus' `MaxTime` (`time.Unix(math.MaxInt64/1000-62135596801,
/// 999999999)`), in milliseconds: the default end of look-ups.
pub const MAX_TIME_MS: i64 = 9_223_309_901_257_974_999;
/// `MinTime` formatted as RFC 3339, accepted as a time parameter.
pub const MIN_TIME_FORMATTED: &str = "-292273086-05-16T16:47:06Z";
/// `MaxTime` formatted as RFC 3339, accepted as a time parameter.
pub const MAX_TIME_FORMATTED: &str = "292277025-08-18T07:12:54.999999999Z";

/// Parses a time parameter to milliseconds (`parseTime`).
pub fn parse_time(s: &str) -> Result<i64, String> {
    let err = || format!("cannot parse {} to a valid timestamp", go_quote(s));
    if let Some(f) = parse_go_float(s) {
        if !f.is_finite() {
            return Err(err());
        }
        // Mirror Prometheus' arithmetic exactly: split into whole seconds and
        // a fraction, round the fraction to milliseconds, build nanoseconds,
        // then take milliseconds with floor semantics (Go normalises a
        // negative nanosecond part into the previous second).
        let whole = f.trunc();
        if whole.abs() >= 9.2e15 {
            return Err(err());
        }
        let frac = (f.fract() * 1000.0).round() / 1000.0;
        let nanos = (whole as i128) * 1_000_000_000 + ((frac * 1e9) as i64) as i128;
        return i64::try_from(nanos.div_euclid(1_000_000)).map_err(|_| err());
    }
    if let Some(ms) = parse_rfc3339(s) {
        return Ok(ms);
    }
    match s {
        MIN_TIME_FORMATTED => Ok(MIN_TIME_MS),
        MAX_TIME_FORMATTED => Ok(MAX_TIME_MS),
        _ => Err(err()),
    }
}

/// Parses a duration parameter (`parseDuration`) to nanoseconds, Go's
/// `time.Duration` unit.
pub fn parse_duration_ns(s: &str) -> Result<i64, String> {
    if let Some(d) = parse_go_float(s) {
        let ns = d * 1e9;
        if ns > i64::MAX as f64 || ns < i64::MIN as f64 {
            return Err(format!(
                "cannot parse {} to a valid duration. It overflows int64",
                go_quote(s)
            ));
        }
        return Ok(ns as i64);
    }
    parse_prometheus_duration_ns(s)
        .ok_or_else(|| format!("cannot parse {} to a valid duration", go_quote(s)))
}

/// A Prometheus duration such as `1h30m` or `500ms`, in nanoseconds. Units must
/// come from largest to smallest, each at most once.
pub fn parse_prometheus_duration_ns(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    const MS: u128 = 1_000_000;
    // Order matters: a unit must come after every unit listed before it.
    const UNITS: [(&str, u128); 7] = [
        ("y", 365 * 24 * 3600 * 1000 * MS),
        ("w", 7 * 24 * 3600 * 1000 * MS),
        ("d", 24 * 3600 * 1000 * MS),
        ("h", 3600 * 1000 * MS),
        ("m", 60 * 1000 * MS),
        ("s", 1000 * MS),
        ("ms", MS),
    ];
    let b = s.as_bytes();
    let mut i = 0;
    let mut next_unit = 0;
    let mut total: u128 = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let v: u128 = s[start..i].parse().ok()?;
        let ustart = i;
        while i < b.len() && !b[i].is_ascii_digit() {
            i += 1;
        }
        let unit = &s[ustart..i];
        let pos = UNITS[next_unit..].iter().position(|(u, _)| *u == unit)? + next_unit;
        next_unit = pos + 1;
        total = total.checked_add(v.checked_mul(UNITS[pos].1)?)?;
        if total > i64::MAX as u128 {
            return None;
        }
    }
    i64::try_from(total).ok()
}

/// Go's `strconv.Atoi` as `parseLimitParam` uses it: "" means no limit (0).
pub fn parse_limit(s: &str) -> Result<usize, String> {
    if s.is_empty() {
        return Ok(0);
    }
    match s.parse::<i64>() {
        Ok(v) if v < 0 => Err("limit must be non-negative".to_string()),
        Ok(v) => Ok(usize::try_from(v).unwrap_or(usize::MAX)),
        Err(e) => {
            let why = match e.kind() {
                std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                    "value out of range"
                }
                _ => "invalid syntax",
            };
            Err(format!("strconv.Atoi: parsing {}: {why}", go_quote(s)))
        }
    }
}

/// Go's `%q` for the strings we quote in messages (printable text stays as
/// is; quotes, backslashes and control characters are escaped).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let v = c as u32;
                if v < 0x100 {
                    out.push_str(&format!("\\x{v:02x}"));
                } else {
                    out.push_str(&format!("\\u{v:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `strconv.ParseFloat(s, 64)` for the inputs that matter here: decimal
/// and exponent forms, `Inf`/`Infinity`/`NaN` in any case, with a sign. Rust's
/// parser is the same on these; Go's hexadecimal and underscore forms are not
/// supported (nobody sends them as times).
fn parse_go_float(s: &str) -> Option<f64> {
    s.parse::<f64>().ok()
}

/// Parses RFC 3339 with an optional fraction (Go's `time.RFC3339Nano`
/// layout) to Unix milliseconds, truncating below the millisecond.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let sep = |at: usize, c: u8| b.get(at) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, min, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 59
    {
        return None;
    }
    let mut i = 19;
    let mut nanos: i64 = 0;
    if sep(i, b'.') || sep(i, b',') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        // Only the first nine digits count, as in Go.
        for (k, d) in b[start..i].iter().take(9).enumerate() {
            nanos += i64::from(d - b'0') * 10i64.pow(8 - k as u32);
        }
    }
    let offset_secs = match b.get(i) {
        Some(b'Z') if i + 1 == b.len() => 0,
        Some(&c @ (b'+' | b'-')) if i + 6 == b.len() && sep(i + 3, b':') => {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if c == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    Some(secs * 1000 + nanos / 1_000_000)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Formats Unix seconds plus nanoseconds as Go's `time.RFC3339Nano` in UTC
/// (trailing zeros of the fraction dropped, no fraction when zero).
pub fn format_rfc3339_nano(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let year = if y < 0 {
        format!("-{:04}", -y)
    } else {
        format!("{y:04}")
    };
    let mut out = format!(
        "{year}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// A `SystemTime` as RFC 3339 (for runtime information).
pub fn format_system_time(t: SystemTime) -> String {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => format_rfc3339_nano(
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d = e.duration();
            let mut secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            let mut nanos = d.subsec_nanos();
            if nanos > 0 {
                secs -= 1;
                nanos = 1_000_000_000 - nanos;
            }
            format_rfc3339_nano(secs, nanos)
        }
    }
}

/// Milliseconds since the epoch of `now`.
pub fn now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// Nanoseconds (Go `time.Duration`) to a `Duration`, negatives as zero.
pub fn ns_to_duration(ns: i64) -> Duration {
    Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_value_semantics() {
        let p = Params::from_parts(
            Some(b"query=up%7Bjob%3D%22a%22%7D&match[]=a&match%5B%5D=b"),
            Some("query=ignored&match[]=c&time=1.5&empty="),
        );
        assert_eq!(p.value("query"), "up{job=\"a\"}");
        assert_eq!(p.get_all("match[]").collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(p.value("time"), "1.5");
        assert_eq!(p.get("empty"), Some(""));
        assert_eq!(p.get("nope"), None);
        assert_eq!(p.value("nope"), "");
        let p = Params::from_parts(None, Some("q=a+b%2Bc"));
        assert_eq!(p.value("q"), "a b+c");
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1700000010.5"), Ok(1_700_000_010_500));
        assert_eq!(parse_time("1700000010"), Ok(1_700_000_010_000));
        assert_eq!(parse_time("4"), Ok(4000));
        assert_eq!(parse_time("0.0004"), Ok(0));
        assert_eq!(parse_time("0.0005"), Ok(1));
        assert_eq!(parse_time("1.2346"), Ok(1235));
        // 1.2345 is 1.23449999… in binary; Go rounds it down too.
        assert_eq!(parse_time("1.2345"), Ok(1234));
        assert_eq!(parse_time("-1.5"), Ok(-1500));
        assert_eq!(parse_time("-0.001"), Ok(-1));
        assert_eq!(parse_time("1e3"), Ok(1_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(
            parse_time("2023-11-14T22:13:20.123456789Z"),
            Ok(1_700_000_000_123)
        );
        assert_eq!(
            parse_time("2023-11-15T00:13:20.5+02:00"),
            Ok(1_700_000_000_500)
        );
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_time("1969-12-31T23:59:59.999Z"), Ok(-1));
        assert_eq!(parse_time(MIN_TIME_FORMATTED), Ok(MIN_TIME_MS));
        assert_eq!(parse_time(MAX_TIME_FORMATTED), Ok(MAX_TIME_MS));
        for bad in [
            "x",
            "",
            "2023-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2023-01-01 00:00:00Z",
            "2023-01-01T00:00:00",
            "Inf",
            "NaN",
            "1e300",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_time("x").unwrap_err(),
            "cannot parse \"x\" to a valid timestamp"
        );
    }

    #[test]
    fn special_times_match_their_formatting() {
        // The constants are what Go prints for MinTime/MaxTime; our formatter
        // must agree, which also checks the calendar arithmetic far out.
        assert_eq!(
            format_rfc3339_nano(MIN_TIME_MS / 1000, 0),
            MIN_TIME_FORMATTED
        );
        assert_eq!(
            format_rfc3339_nano(MAX_TIME_MS.div_euclid(1000), 999_999_999),
            MAX_TIME_FORMATTED
        );
        assert_eq!(
            format_rfc3339_nano(1_700_000_000, 0),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            format_rfc3339_nano(1_700_000_000, 120_000_000),
            "2023-11-14T22:13:20.12Z"
        );
        assert_eq!(format_rfc3339_nano(-1, 0), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ns("15"), Ok(15_000_000_000));
        assert_eq!(parse_duration_ns("0.5"), Ok(500_000_000));
        assert_eq!(parse_duration_ns("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_duration_ns("5m"), Ok(300_000_000_000));
        assert_eq!(parse_duration_ns("100ms"), Ok(100_000_000));
        assert_eq!(parse_duration_ns("1d"), Ok(86_400_000_000_000));
        assert_eq!(
            parse_duration_ns("1y2w"),
            Ok((365 + 14) * 86_400_000_000_000)
        );
        assert_eq!(parse_duration_ns("0"), Ok(0));
        assert_eq!(parse_duration_ns("-1"), Ok(-1_000_000_000));
        for bad in ["", "x", "1m1h", "1h1h", "1.5m", "m", "5M", "1h 30m"] {
            assert!(parse_duration_ns(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_duration_ns("x").unwrap_err(),
            "cannot parse \"x\" to a valid duration"
        );
        assert_eq!(
            parse_duration_ns("1e20").unwrap_err(),
            "cannot parse \"1e20\" to a valid duration. It overflows int64"
        );
        assert!(parse_duration_ns("300y").is_err());
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit(""), Ok(0));
        assert_eq!(parse_limit("5"), Ok(5));
        assert_eq!(parse_limit("+5"), Ok(5));
        assert_eq!(parse_limit("-1").unwrap_err(), "limit must be non-negative");
        assert_eq!(
            parse_limit("x").unwrap_err(),
            "strconv.Atoi: parsing \"x\": invalid syntax"
        );
        assert_eq!(
            parse_limit("99999999999999999999").unwrap_err(),
            "strconv.Atoi: parsing \"99999999999999999999\": value out of range"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(go_quote("a\"b\\\n\u{1}é"), "\"a\\\"b\\\\\\n\\x01é\"");
    }
}
