//! Small helpers that reproduce Go and Prometheus library behaviour the
//! engine's results depend on: label-set editing, Go float formatting and
//! `math.Max`/`math.Min` NaN rules, Kahan summation, xxHash64 (label hashes
//! decide `limit_ratio`), natural sort order, and calendar arithmetic.

use std::sync::Arc;

use strata_tsdb::labels::{Label, Labels, METRIC_NAME};

use crate::value::Metric;

// ---------------------------------------------------------------------------
// Label sets

/// `__name__`, `__type__` and `__unit__`: the labels that describe what a
/// metric is, and which operators that change its meaning remove.
pub(crate) fn is_metadata_label(name: &str) -> bool {
    name == METRIC_NAME || name == "__type__" || name == "__unit__"
}

/// Keeps the labels for which `keep` is true.
pub(crate) fn filter_labels(l: &Labels, keep: impl Fn(&str) -> bool) -> Labels {
    Labels::from_sorted(l.iter().filter(|x| keep(&x.name)).cloned().collect())
}

/// The label set without its metadata labels (used by name removal).
pub(crate) fn drop_metadata(l: &Labels) -> Labels {
    filter_labels(l, |n| !is_metadata_label(n))
}

pub(crate) fn has_metadata(l: &Labels) -> bool {
    l.iter().any(|x| is_metadata_label(&x.name))
}

/// Drops metadata labels, reusing the `Arc` when there are none.
pub(crate) fn drop_metadata_arc(m: &Metric) -> Metric {
    if has_metadata(m) {
        Arc::new(drop_metadata(m))
    } else {
        m.clone()
    }
}

/// Sets `name` to `value`; an empty value removes the label (as Prometheus'
/// `labels.Builder.Set` does).
pub(crate) fn set_label(l: &Labels, name: &str, value: &str) -> Labels {
    let mut v: Vec<Label> = Vec::with_capacity(l.len() + 1);
    let mut done = false;
    for x in l.iter() {
        if !done && &*x.name >= name {
            if !value.is_empty() {
                v.push(Label::new(name, value));
            }
            done = true;
            if &*x.name == name {
                continue;
            }
        }
        v.push(x.clone());
    }
    if !done && !value.is_empty() {
        v.push(Label::new(name, value));
    }
    Labels::from_sorted(v)
}

/// Appends `name \xff value \xff` for each label selected by `pick`.
/// The result identifies a (sub)set of labels unambiguously.
pub(crate) fn signature_into(buf: &mut Vec<u8>, l: &Labels, pick: impl Fn(&str) -> bool) {
    buf.clear();
    for x in l.iter() {
        if pick(&x.name) {
            buf.extend_from_slice(x.name.as_bytes());
            buf.push(0xff);
            buf.extend_from_slice(x.value.as_bytes());
            buf.push(0xff);
        }
    }
}

/// Whether a name is in a small sorted-or-not list.
pub(crate) fn contains(names: &[String], n: &str) -> bool {
    names.iter().any(|x| x == n)
}

/// Prometheus' label-name check under UTF-8 validation: non-empty and valid UTF-8.
pub(crate) fn valid_label_name(raw: &[u8]) -> bool {
    !raw.is_empty() && std::str::from_utf8(raw).is_ok()
}

/// Prometheus' `labels.Labels.Hash` in its default (`stringlabels`) build:
/// xxHash64 over the label set's internal encoding, each name and value
/// prefixed by its length (one byte below 255, else `255` plus 3 bytes LE).
/// `limit_ratio` picks series by this hash, so it must match exactly.
pub(crate) fn labels_hash(l: &Labels) -> u64 {
    let mut buf = Vec::with_capacity(l.byte_len() + 2 * l.len());
    let mut put = |s: &str| {
        let n = s.len();
        if n < 255 {
            buf.push(n as u8);
        } else {
            buf.extend_from_slice(&[255, n as u8, (n >> 8) as u8, (n >> 16) as u8]);
        }
        buf.extend_from_slice(s.as_bytes());
    };
    for x in l.iter() {
        put(&x.name);
        put(&x.value);
    }
    xxh64(&buf, 0)
}

// ---------------------------------------------------------------------------
// Go float semantics

/// Go's `math.Max`: NaN wins, and +0 beats -0.
pub(crate) fn go_max(a: f64, b: f64) -> f64 {
    if a.is_infinite() && a > 0.0 || b.is_infinite() && b > 0.0 {
        return f64::INFINITY;
    }
    if a.is_nan() || b.is_nan() {
        return f64::NAN;
    }
    if a == 0.0 && b == 0.0 {
        return if a.is_sign_negative() { b } else { a };
    }
    if a > b {
        a
    } else {
        b
    }
}

/// Go's `math.Min`: NaN wins, and -0 beats +0.
pub(crate) fn go_min(a: f64, b: f64) -> f64 {
    if a.is_infinite() && a < 0.0 || b.is_infinite() && b < 0.0 {
        return f64::NEG_INFINITY;
    }
    if a.is_nan() || b.is_nan() {
        return f64::NAN;
    }
    if a == 0.0 && b == 0.0 {
        return if a.is_sign_negative() { a } else { b };
    }
    if a < b {
        a
    } else {
        b
    }
}

/// Go's `int64(f)` on amd64: truncation, with NaN and out-of-range values
/// becoming `math.MinInt64`.
pub(crate) fn go_f64_to_i64(f: f64) -> i64 {
    if f.is_nan() || !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) {
        i64::MIN
    } else {
        f as i64
    }
}

/// Kahan-Neumaier summation step (Prometheus' `kahansum.Inc`).
#[inline]
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// `strconv.FormatFloat(f, 'f', -1, 64)`: shortest digits, never an exponent.
pub(crate) fn fmt_float_plain(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{f}")
    }
}

/// Decimal digits and exponent of `f` (`d.ddd × 10^exp`), rounded to
/// `prec` significant digits, or shortest round-trip digits when `None`.
fn decimal_digits(f: f64, prec: Option<usize>) -> (String, i32) {
    let s = match prec {
        Some(p) => format!("{:.*e}", p.saturating_sub(1), f.abs()),
        None => format!("{:e}", f.abs()),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let digits = digits.trim_end_matches('0').to_string();
    let digits = if digits.is_empty() {
        "0".into()
    } else {
        digits
    };
    (digits, exp.parse().unwrap_or(0))
}

fn fmt_g_impl(f: f64, prec: Option<usize>) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let neg = f.is_sign_negative();
    let (digits, exp) = decimal_digits(f, prec);
    let nd = digits.len() as i32;
    let eprec = match prec {
        None => 6,
        Some(p) => {
            let p = p.max(1) as i32;
            // Go: if eprec > digs.nd && digs.nd >= digs.dp { eprec = digs.nd }
            if p > nd && nd > exp {
                nd
            } else {
                p
            }
        }
    };
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if exp < -4 || exp >= eprec {
        out.push_str(&digits[..1]);
        if nd > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.abs()));
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let int_len = (exp + 1) as usize;
        if digits.len() <= int_len {
            out.push_str(&digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

/// Go's `%g` / `%v` for a float64.
pub(crate) fn fmt_g(f: f64) -> String {
    fmt_g_impl(f, None)
}

/// Go's `%.<prec>g`.
pub(crate) fn fmt_g_prec(f: f64, prec: usize) -> String {
    fmt_g_impl(f, Some(prec))
}

/// Prometheus' `FormatOpenMetricsFloat`: `%g`, with `.0` added to integers.
pub(crate) fn fmt_openmetrics_float(f: f64) -> String {
    let s = fmt_g(f);
    if f.is_nan() || f.is_infinite() || s.contains(['e', '.']) {
        s
    } else {
        s + ".0"
    }
}

/// Parses a float the way Go's `strconv.ParseFloat` accepts it, for the
/// forms that occur in label values (`le`, `quantile`).
pub(crate) fn parse_go_float(s: &str) -> Option<f64> {
    if s.is_empty() || s.contains('_') {
        return None;
    }
    let t = s.trim_start_matches(['+', '-']);
    let lower = t.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" || lower == "nan" {
        let neg = s.starts_with('-');
        return Some(match lower.as_str() {
            "nan" => f64::NAN,
            _ if neg => f64::NEG_INFINITY,
            _ => f64::INFINITY,
        });
    }
    if lower.starts_with("0x") {
        return parse_hex_float(s);
    }
    s.parse::<f64>().ok()
}

fn parse_hex_float(s: &str) -> Option<f64> {
    let (neg, t) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let t = t.get(2..)?;
    let (mant, exp) = match t.find(['p', 'P']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i32>().ok()?),
        None => (t, 0),
    };
    let (ip, fp) = mant.split_once('.').unwrap_or((mant, ""));
    if ip.is_empty() && fp.is_empty() {
        return None;
    }
    let mut v = 0f64;
    for c in ip.chars() {
        v = v * 16.0 + f64::from(c.to_digit(16)?);
    }
    let mut scale = 1.0 / 16.0;
    for c in fp.chars() {
        v += f64::from(c.to_digit(16)?) * scale;
        scale /= 16.0;
    }
    let v = v * 2f64.powi(exp);
    Some(if neg { -v } else { v })
}

// ---------------------------------------------------------------------------
// xxHash64, as used by Prometheus for label hashes.

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

fn read_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn read_u32(b: &[u8]) -> u64 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u64::from(u32::from_le_bytes(a))
}

fn xx_round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn xx_merge(acc: u64, val: u64) -> u64 {
    (acc ^ xx_round(0, val)).wrapping_mul(P1).wrapping_add(P4)
}

pub(crate) fn xxh64(data: &[u8], seed: u64) -> u64 {
    let len = data.len();
    let mut rest = data;
    let mut h = if len >= 32 {
        let mut v1 = seed.wrapping_add(P1).wrapping_add(P2);
        let mut v2 = seed.wrapping_add(P2);
        let mut v3 = seed;
        let mut v4 = seed.wrapping_sub(P1);
        while rest.len() >= 32 {
            v1 = xx_round(v1, read_u64(rest));
            v2 = xx_round(v2, read_u64(&rest[8..]));
            v3 = xx_round(v3, read_u64(&rest[16..]));
            v4 = xx_round(v4, read_u64(&rest[24..]));
            rest = &rest[32..];
        }
        let mut h = v1
            .rotate_left(1)
            .wrapping_add(v2.rotate_left(7))
            .wrapping_add(v3.rotate_left(12))
            .wrapping_add(v4.rotate_left(18));
        h = xx_merge(h, v1);
        h = xx_merge(h, v2);
        h = xx_merge(h, v3);
        xx_merge(h, v4)
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(len as u64);
    while rest.len() >= 8 {
        h ^= xx_round(0, read_u64(rest));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        h ^= read_u32(rest).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = &rest[4..];
    }
    for &b in rest {
        h ^= u64::from(b).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^= h >> 32;
    h
}

// ---------------------------------------------------------------------------
// Natural sort order (facette/natsort, used by sort_by_label).

fn chunkify(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let digit = b[i].is_ascii_digit();
        let st = i;
        while i < b.len() && b[i].is_ascii_digit() == digit {
            i += 1;
        }
        // Non-digit runs end on a char boundary because digits are ASCII.
        out.push(&s[st..i]);
    }
    out
}

/// Go's `strconv.Atoi` success test for a chunk (digits only, fits in i64).
fn atoi(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok()
}

/// Whether `a` sorts before `b` in natural order.
pub(crate) fn natural_less(a: &str, b: &str) -> bool {
    let ca = chunkify(a);
    let cb = chunkify(b);
    for (i, x) in ca.iter().enumerate() {
        let Some(y) = cb.get(i) else {
            return false;
        };
        let last_a = i == ca.len() - 1;
        let last_b = i == cb.len() - 1;
        if let (Some(p), Some(q)) = (atoi(x), atoi(y)) {
            if p == q {
                if last_a {
                    return true;
                } else if last_b {
                    return false;
                }
                continue;
            }
            return p < q;
        }
        if x == y {
            if last_a {
                return true;
            } else if last_b {
                return false;
            }
            continue;
        }
        return x < y;
    }
    false
}

// ---------------------------------------------------------------------------
// Calendar arithmetic (proleptic Gregorian, UTC).

/// `(year, month 1-12, day 1-31)` for days since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub(crate) fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

pub(crate) fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

pub(crate) fn day_of_year(y: i64, m: u32, d: u32) -> u32 {
    (1..m).map(|mm| days_in_month(y, mm)).sum::<u32>() + d
}

/// `2006-01-02T15:04:05Z` for seconds since the epoch.
pub(crate) fn format_rfc3339_secs(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        y,
        m,
        d,
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_g_formatting() {
        assert_eq!(fmt_g(1.0), "1");
        assert_eq!(fmt_g(0.5), "0.5");
        assert_eq!(fmt_g(1e6), "1e+06");
        assert_eq!(fmt_g(123456.0), "123456");
        assert_eq!(fmt_g(1e-5), "1e-05");
        assert_eq!(fmt_g(0.0001), "0.0001");
        assert_eq!(fmt_g(-2.5), "-2.5");
        assert_eq!(fmt_g(f64::NAN), "NaN");
        assert_eq!(fmt_g(f64::INFINITY), "+Inf");
        assert_eq!(fmt_g_prec(100.0, 2), "1e+02");
        assert_eq!(fmt_g_prec(0.5, 2), "0.5");
        assert_eq!(fmt_g_prec(0.123, 2), "0.12");
    }

    #[test]
    fn plain_float_labels() {
        assert_eq!(fmt_float_plain(1e21), "1000000000000000000000");
        assert_eq!(fmt_float_plain(0.1), "0.1");
        assert_eq!(fmt_float_plain(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn go_min_max_nan() {
        assert!(go_max(1.0, f64::NAN).is_nan());
        assert!(go_min(f64::NAN, 1.0).is_nan());
        assert_eq!(go_max(f64::NAN, f64::INFINITY), f64::INFINITY);
        assert_eq!(go_min(2.0, 1.0), 1.0);
    }

    #[test]
    fn xxhash_known_values() {
        assert_eq!(xxh64(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxh64(b"a", 0), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxh64(b"abc", 0), 0x44BC_2CF5_AD77_0999);
        assert_eq!(
            xxh64(b"Nobody inspects the spammish repetition", 0),
            0xFBCE_A83C_8A37_8BF1
        );
    }

    #[test]
    fn natural_order() {
        assert!(natural_less("a2", "a10"));
        assert!(!natural_less("a10", "a2"));
        assert!(natural_less("abc", "abd"));
        assert!(natural_less("x", "x1"));
    }

    #[test]
    fn calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(day_of_year(2000, 12, 31), 366);
        assert_eq!(format_rfc3339_secs(86_399), "1970-01-01T23:59:59Z");
    }

    #[test]
    fn label_editing() {
        let l = Labels::from_pairs([("a", "1"), ("c", "3")]);
        assert_eq!(
            set_label(&l, "b", "2").to_string(),
            r#"{a="1", b="2", c="3"}"#
        );
        assert_eq!(set_label(&l, "c", "").to_string(), r#"{a="1"}"#);
        assert_eq!(set_label(&l, "a", "9").to_string(), r#"{a="9", c="3"}"#);
        assert_eq!(
            set_label(&l, "z", "9").to_string(),
            r#"{a="1", c="3", z="9"}"#
        );
        assert_eq!(parse_go_float("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_go_float("0x1p-2"), Some(0.25));
        assert_eq!(parse_go_float("abc"), None);
    }
}
