//! Go-compatible scalar syntax used by the test files: durations
//! (`model.ParseDuration`), numbers (`strconv.ParseInt(s, 0, 64)` falling back
//! to `strconv.ParseFloat`), quoted strings, and `%v` float formatting for
//! failure messages.
//!
//! The files were written against the Go parsers, so the harness accepts
//! exactly what they accept where it matters (legacy octal `010`, digit
//! underscores, `Inf`/`NaN` spellings) instead of Rust's `str::parse` rules.

/// Milliseconds per duration unit, largest first. The index is the unit's
/// rank: units must appear in strictly decreasing size, as in Go.
const UNITS: [(&str, i64); 7] = [
    ("y", 365 * 24 * 3_600_000),
    ("w", 7 * 24 * 3_600_000),
    ("d", 24 * 3_600_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses a Prometheus duration such as `1h30m` or `0` into milliseconds.
///
/// Go stores durations in nanoseconds, so anything above `i64::MAX` ns
/// (about 292 years) is rejected as an overflow, as it is there.
pub(crate) fn parse_duration(s: &str) -> Result<i64, String> {
    match s {
        "0" => return Ok(0),
        "" => return Err("empty duration string".into()),
        _ => {}
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total_ns: u128 = 0;
    let mut last_rank: Option<usize> = None;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(format!("not a valid duration string: {s:?}"));
        }
        let n: u128 = s[start..i]
            .parse()
            .map_err(|_| format!("not a valid duration string: {s:?}"))?;
        let ustart = i;
        while i < bytes.len() && !bytes[i].is_ascii_digit() {
            i += 1;
        }
        let unit = &s[ustart..i];
        let rank = UNITS
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(|| format!("unknown unit {unit:?} in duration {s:?}"))?;
        if last_rank.is_some_and(|r| rank <= r) {
            return Err(format!("not a valid duration string: {s:?}"));
        }
        last_rank = Some(rank);
        total_ns = n
            .checked_mul(UNITS[rank].1 as u128 * 1_000_000)
            .and_then(|v| v.checked_add(total_ns))
            .filter(|v| *v <= i64::MAX as u128)
            .ok_or_else(|| "duration out of range".to_string())?;
    }
    Ok((total_ns / 1_000_000) as i64)
}

/// Whether the underscores in a Go number literal sit only between digits
/// (or right after a base prefix), as `strconv`'s `underscoreOK` demands.
fn underscores_ok(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let b = s.as_bytes();
    let mut i = 0;
    // 'd' = digit or base prefix, '_' = underscore, '^' = start, '!' = other.
    let mut saw = b'^';
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1] | 0x20, b'b' | b'o' | b'x') {
        i = 2;
        saw = b'd';
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_alphanumeric() {
            saw = b'd';
        } else if c == b'_' {
            if saw != b'd' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

/// `strconv.ParseInt(s, 0, 64)`: optional sign, `0x`/`0o`/`0b` prefixes,
/// legacy octal for a leading `0`, digit underscores.
fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if body.contains('_') && !underscores_ok(s) {
        return None;
    }
    let digits: String = digits.chars().filter(|c| *c != '_').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let mag = u128::from_str_radix(&digits, radix).ok()?;
    if neg {
        (mag <= 1u128 << 63).then(|| (mag as i128).wrapping_neg() as i64)
    } else {
        i64::try_from(mag).ok()
    }
}

/// `strconv.ParseFloat(s, 64)` for decimal input, including Go's spellings
/// of infinity and NaN (any case, `inf` or `infinity`, optional sign).
fn parse_go_float(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let word = body.to_ascii_lowercase();
    if word == "inf" || word == "infinity" || word == "nan" {
        // Rust's parser takes the same words; only the sign needs care.
        return s.parse::<f64>().ok();
    }
    // Rust accepts a few forms Go does not (and vice versa for hex floats,
    // which the test files never use); restrict to Go's decimal alphabet.
    if body.is_empty()
        || !body
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-' | b'_'))
    {
        return None;
    }
    if s.contains('_') && !underscores_ok(s) {
        return None;
    }
    let cleaned: String = s.chars().filter(|c| *c != '_').collect();
    cleaned.parse::<f64>().ok()
}

/// Go's `parseNumber`/`parser.number`: an integer literal in any Go base,
/// else a float.
pub(crate) fn parse_number(s: &str) -> Option<f64> {
    parse_go_int(s)
        .map(|n| n as f64)
        .or_else(|| parse_go_float(s))
}

/// Unquotes a PromQL/Go string literal: `"…"` and `'…'` with Go escapes, or a
/// raw `` `…` `` string. The whole input must be the literal.
pub(crate) fn unquote(s: &str) -> Result<String, String> {
    let (lit, rest) = scan_quoted(s)?;
    if !rest.is_empty() {
        return Err(format!("unexpected text after string literal: {rest:?}"));
    }
    Ok(lit)
}

/// Scans one quoted string at the start of `s`; returns its value and the
/// text after the closing quote.
pub(crate) fn scan_quoted(s: &str) -> Result<(String, &str), String> {
    let mut chars = s.char_indices();
    let quote = match chars.next() {
        Some((_, q @ ('"' | '\'' | '`'))) => q,
        _ => return Err("expected a quoted string".into()),
    };
    if quote == '`' {
        return match s[1..].find('`') {
            Some(end) => Ok((s[1..1 + end].to_string(), &s[end + 2..])),
            None => Err("unterminated raw string".into()),
        };
    }
    let mut out: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4];
    while let Some((i, c)) = chars.next() {
        if c == quote {
            let value = String::from_utf8(out)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            return Ok((value, &s[i + c.len_utf8()..]));
        }
        if c == '\n' {
            return Err("newline in string".into());
        }
        if c != '\\' {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let Some((_, e)) = chars.next() else {
            return Err("escape sequence not terminated".into());
        };
        let simple = match e {
            'a' => Some(b'\x07'),
            'b' => Some(b'\x08'),
            'f' => Some(b'\x0c'),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(b'\x0b'),
            '\\' => Some(b'\\'),
            '"' => Some(b'"'),
            '\'' => Some(b'\''),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            continue;
        }
        let (count, radix) = match e {
            '0'..='7' => (3, 8),
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            _ => return Err(format!("unknown escape sequence \\{e}")),
        };
        let mut digits = String::new();
        if radix == 8 {
            digits.push(e);
        }
        while digits.len() < count {
            match chars.next() {
                Some((_, d)) if d.is_digit(radix) => digits.push(d),
                _ => return Err("invalid escape sequence".into()),
            }
        }
        let v = u32::from_str_radix(&digits, radix).map_err(|e| e.to_string())?;
        match e {
            'u' | 'U' => {
                let ch = char::from_u32(v).ok_or("invalid Unicode code point in escape")?;
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
            _ => out.push(u8::try_from(v).map_err(|_| "octal escape value > 255")?),
        }
    }
    Err("unterminated quoted string".into())
}

/// Formats a float as Go's `%v` does (`strconv.FormatFloat(f, 'g', -1, 64)`),
/// so failure messages read like upstream's: `1e+06`, `0.1`, `NaN`, `+Inf`.
pub(crate) fn format_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e6".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    let n = digits.len() as i32;
    if exp < 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize))
    } else if exp + 1 >= n {
        format!("{sign}{digits}{}", "0".repeat((exp + 1 - n) as usize))
    } else {
        let (a, b) = digits.split_at((exp + 1) as usize);
        format!("{sign}{a}.{b}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("5m"), Ok(300_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(
            parse_duration("1y2w3d4h5m6s7ms").unwrap(),
            31_536_000_000
                + 2 * 604_800_000
                + 3 * 86_400_000
                + 4 * 3_600_000
                + 5 * 60_000
                + 6_000
                + 7
        );
        assert_eq!(parse_duration("100ms"), Ok(100));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("1m1h").is_err(), "units out of order");
        assert!(parse_duration("1m1m").is_err(), "repeated unit");
        assert!(parse_duration("-1m").is_err());
        assert!(parse_duration("1.5m").is_err());
        assert!(
            parse_duration("300y").is_err(),
            "overflows Go's ns duration"
        );
        assert!(parse_duration("99999999999999999999999999999999s").is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("1"), Some(1.0));
        assert_eq!(parse_number("-2.5"), Some(-2.5));
        assert_eq!(parse_number("+3"), Some(3.0));
        assert_eq!(parse_number("1e3"), Some(1000.0));
        assert_eq!(parse_number("1.5E-3"), Some(0.0015));
        assert_eq!(parse_number(".5"), Some(0.5));
        assert_eq!(parse_number("0x1F"), Some(31.0));
        assert_eq!(parse_number("010"), Some(8.0), "Go's legacy octal");
        assert_eq!(
            parse_number("08"),
            Some(8.0),
            "not octal: falls back to float"
        );
        assert_eq!(parse_number("1_000"), Some(1000.0));
        assert_eq!(parse_number("1__0"), None);
        assert_eq!(parse_number("Inf"), Some(f64::INFINITY));
        assert_eq!(parse_number("-Inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_number("+inf"), Some(f64::INFINITY));
        assert!(parse_number("NaN").unwrap().is_nan());
        assert_eq!(parse_number("foo"), None);
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("1x"), None);
        assert_eq!(
            parse_number("-9223372036854775808"),
            Some(-9.223372036854776e18)
        );
        assert_eq!(parse_number("99999999999999999999"), Some(1e20));
    }

    #[test]
    fn strings() {
        assert_eq!(unquote(r#""a\"b\n""#).unwrap(), "a\"b\n");
        assert_eq!(unquote("'it''").ok(), None);
        assert_eq!(unquote(r"'x\'y'").unwrap(), "x'y");
        assert_eq!(unquote("`raw\\n`").unwrap(), "raw\\n");
        assert_eq!(unquote(r#""\x41\101\u00e9\U0001F600""#).unwrap(), "AAé😀");
        assert_eq!(unquote(r#""a\xc5z""#).unwrap(), "a\u{fffd}z");
        assert!(unquote(r#""open"#).is_err());
        assert!(unquote(r#""\q""#).is_err());
        assert!(unquote(r#""a" b"#).is_err());
        assert_eq!(scan_quoted(r#""a", b"#).unwrap(), ("a".to_string(), ", b"));
    }

    #[test]
    fn go_float_format() {
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(0.1), "0.1");
        assert_eq!(format_float(-2.5), "-2.5");
        assert_eq!(format_float(123456.0), "123456");
        assert_eq!(format_float(1e6), "1e+06");
        assert_eq!(format_float(1234567.0), "1.234567e+06");
        assert_eq!(format_float(1.5e20), "1.5e+20");
        assert_eq!(format_float(0.0001), "0.0001");
        assert_eq!(format_float(0.00001), "1e-05");
        assert_eq!(format_float(1.234567e-7), "1.234567e-07");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
    }
}
