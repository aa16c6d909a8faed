//! Number syntax shared by both formats: Go's `strconv.ParseFloat` as
//! Prometheus restricts it, and the timestamp conversions.

/// Prometheus's canonical NaN (`value.NormalNaN`, also Go's `math.NaN()`).
/// Every NaN read from text becomes this one. Its bit pattern differs from
/// Rust's `f64::NAN`, and chunk encoders compare bits.
pub const NORMAL_NAN: f64 = f64::from_bits(0x7ff8_0000_0000_0001);

/// Why a float did not parse.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum FloatError {
    /// Not a number at all.
    Syntax,
    /// Contains `p`, `P` or `_`. Prometheus rejects these characters to
    /// stay with pre-Go-1.13 float syntax (no hex floats, no digit
    /// separators).
    Unsupported,
    /// A finite literal too large for `f64`. Go reports `ErrRange`, and
    /// Prometheus rejects the sample.
    OutOfRange,
}

/// Parses a float the way Prometheus's `parseFloat` does.
///
/// The syntax is checked here rather than left to `str::parse`. Rust
/// accepts `+nan`/`-nan`, which Go does not, and Rust turns overflow into
/// infinity where Go reports an error. Once the syntax is known to be Go's
/// decimal form, `str::parse` rounds it correctly, as Go does.
pub(super) fn parse_float(s: &[u8]) -> Result<f64, FloatError> {
    if s.iter().any(|&b| matches!(b, b'p' | b'P' | b'_')) {
        return Err(FloatError::Unsupported);
    }
    if let Some(v) = special(s) {
        return Ok(v);
    }
    if !is_decimal(s) {
        return Err(FloatError::Syntax);
    }
    // `is_decimal` admits ASCII only, so this cannot fail.
    let text = std::str::from_utf8(s).map_err(|_| FloatError::Syntax)?;
    let v: f64 = text.parse().map_err(|_| FloatError::Syntax)?;
    if v.is_infinite() {
        return Err(FloatError::OutOfRange);
    }
    Ok(v)
}

/// Go's special values, case-insensitive: `[+-]?(inf|infinity)` and an
/// unsigned `nan`. A signed NaN is a syntax error in Go.
fn special(s: &[u8]) -> Option<f64> {
    let (negative, unsigned) = match s.first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if unsigned.eq_ignore_ascii_case(b"inf") || unsigned.eq_ignore_ascii_case(b"infinity") {
        return Some(if negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if unsigned.len() == s.len() && s.eq_ignore_ascii_case(b"nan") {
        return Some(NORMAL_NAN);
    }
    None
}

/// Go's decimal float syntax:
/// `[+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?`.
fn is_decimal(s: &[u8]) -> bool {
    let digits_from = |mut i: usize| {
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut i = usize::from(matches!(s.first(), Some(b'+' | b'-')));
    let int_end = digits_from(i);
    let mut mantissa_digits = int_end - i;
    i = int_end;
    if s.get(i) == Some(&b'.') {
        let frac_end = digits_from(i + 1);
        mantissa_digits += frac_end - (i + 1);
        i = frac_end;
    }
    if mantissa_digits == 0 {
        return false;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_end = digits_from(i);
        if exp_end == i {
            return false;
        }
        i = exp_end;
    }
    i == s.len()
}

/// Converts OpenMetrics seconds to milliseconds as 2.42 does:
/// `int64(ts * 1000)`, which truncates toward zero after a rounded float
/// multiplication. So `1.001` gives 1000 ms (`1.001 * 1000` is
/// 1000.9999…). `None` when the result does not fit in an `i64`.
pub(super) fn seconds_to_ms(seconds: f64) -> Option<i64> {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    let ms = seconds * 1000.0;
    // NaN is in no range.
    if (-LIMIT..LIMIT).contains(&ms) {
        Some(ms as i64)
    } else {
        None
    }
}

/// Parses a Prometheus-text timestamp: ASCII digits (the lexer admits no
/// sign), milliseconds. `None` on overflow, which Go's `ParseInt` reports
/// as a range error.
pub(super) fn parse_ms(digits: &[u8]) -> Option<i64> {
    digits.iter().try_fold(0i64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(i64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> f64 {
        parse_float(s.as_bytes()).unwrap_or_else(|e| panic!("{s:?}: {e:?}"))
    }

    fn err(s: &str) -> FloatError {
        match parse_float(s.as_bytes()) {
            Ok(v) => panic!("{s:?} parsed as {v}"),
            Err(e) => e,
        }
    }

    #[test]
    fn decimal_forms_go_accepts() {
        assert_eq!(ok("1"), 1.0);
        assert_eq!(ok("+1"), 1.0);
        assert_eq!(ok("-2.5"), -2.5);
        assert_eq!(ok(".5"), 0.5);
        assert_eq!(ok("+.5"), 0.5);
        assert_eq!(ok("1."), 1.0);
        assert_eq!(ok("1.e3"), 1000.0);
        assert_eq!(ok("1E+2"), 100.0);
        assert_eq!(ok("4.9351e-05"), 4.9351e-05);
        assert_eq!(ok("007"), 7.0);
        assert_eq!(ok("17.0"), 17.0);
        assert!(ok("-0").is_sign_negative());
        // Underflow is not an error in Go: it rounds to zero.
        assert_eq!(ok("1e-400"), 0.0);
        assert_eq!(ok("1e-99999999999999999999"), 0.0);
        assert_eq!(ok("1.7976931348623157e308"), f64::MAX);
    }

    #[test]
    fn special_values_any_case() {
        for s in [
            "Inf",
            "+Inf",
            "inf",
            "INF",
            "+infinity",
            "Infinity",
            "iNfInItY",
        ] {
            assert_eq!(ok(s), f64::INFINITY, "{s}");
        }
        for s in ["-Inf", "-inf", "-Infinity"] {
            assert_eq!(ok(s), f64::NEG_INFINITY, "{s}");
        }
        for s in ["NaN", "nan", "NAN", "nAn"] {
            assert_eq!(ok(s).to_bits(), NORMAL_NAN.to_bits(), "{s}");
        }
    }

    #[test]
    fn forms_go_rejects() {
        for s in [
            "",
            "+",
            "-",
            ".",
            "+.",
            "e5",
            ".e5",
            "1e",
            "1e+",
            "1.2.3",
            "1e5.0",
            "0x10",
            "0x1.8",
            "+nan",
            "-NaN",
            "infin",
            "infinit",
            "infinityy",
            "nan1",
            "true",
            "1z",
            "1 ",
            " 1",
            "1\r",
            "1\t2",
            "--1",
            "1e--1",
            "١",
        ] {
            assert_eq!(err(s), FloatError::Syntax, "{s:?}");
        }
    }

    #[test]
    fn p_and_underscore_are_unsupported() {
        for s in ["0x1p-3", "0x1P-3", "1_2", "_1", "nap"] {
            assert_eq!(err(s), FloatError::Unsupported, "{s:?}");
        }
    }

    #[test]
    fn overflow_is_an_error() {
        assert_eq!(err("1e400"), FloatError::OutOfRange);
        assert_eq!(err("-1e309"), FloatError::OutOfRange);
        assert_eq!(err("1e99999999999999999999"), FloatError::OutOfRange);
    }

    #[test]
    fn seconds_truncate_like_go() {
        // Values checked against promtool 2.42 backfill output.
        assert_eq!(seconds_to_ms(1.001), Some(1000));
        assert_eq!(seconds_to_ms(1.0005), Some(1000));
        assert_eq!(seconds_to_ms(1.9999999), Some(1999));
        assert_eq!(seconds_to_ms(0.0019), Some(1));
        assert_eq!(seconds_to_ms(-0.0009), Some(0));
        assert_eq!(seconds_to_ms(-1.5), Some(-1500));
        assert_eq!(seconds_to_ms(1_700_000_000.123), Some(1_700_000_000_123));
        assert_eq!(seconds_to_ms(1_700_000_007.000_5), Some(1_700_000_007_000));
        assert_eq!(seconds_to_ms(-9_223_372_036_854_775.808), Some(i64::MIN));
        assert_eq!(seconds_to_ms(9_223_372_036_854_775.808), None);
        assert_eq!(seconds_to_ms(1e300), None);
        assert_eq!(seconds_to_ms(f64::NAN), None);
        assert_eq!(seconds_to_ms(f64::INFINITY), None);
    }

    #[test]
    fn millisecond_timestamps() {
        assert_eq!(parse_ms(b"0"), Some(0));
        assert_eq!(parse_ms(b"00123"), Some(123));
        assert_eq!(parse_ms(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_ms(b"9223372036854775808"), None);
        assert_eq!(parse_ms(b"99999999999999999999999"), None);
    }
}
