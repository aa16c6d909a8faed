//! `strata tools tsdb …`: promtool-like inspection of a data directory.
//!
//! The output formats follow `promtool tsdb list|dump|analyze` from
//! Prometheus 2.42 so that scripts written against promtool keep working; in
//! particular `dump` prints one sample per line as
//! `{labels} <value %g> <timestamp ms>`, byte-identical to promtool's.
//! Everything writes to a caller-supplied `Write`, so the binary stays thin
//! and tests compare output directly.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use crate::block::Block;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::labels::Matcher;

fn werr(e: std::io::Error) -> Error {
    Error::io("<output>", e)
}

/// Formats a float as Go's `fmt` `%g` does: the shortest digits that
/// round-trip, in exponent form when the decimal exponent is below -4 or at
/// least 6 (strconv's rule for the shortest precision), the exponent with at
/// least two digits. `promtool tsdb dump` prints values this way.
pub fn go_format_g(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // Rust's `{:e}` prints the shortest round-tripping digits: d.ddde±x.
    let s = format!("{v:e}");
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let nd = digits.len() as i32;
    let eprec = 6;
    let dp = exp + 1;
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
    } else if dp <= 0 {
        out.push_str("0.");
        for _ in 0..(-dp) {
            out.push('0');
        }
        out.push_str(&digits);
    } else if dp >= nd {
        out.push_str(&digits);
        for _ in 0..(dp - nd) {
            out.push('0');
        }
    } else {
        out.push_str(&digits[..dp as usize]);
        out.push('.');
        out.push_str(&digits[dp as usize..]);
    }
    out
}

/// Go's `time.Duration.String()` for a duration in milliseconds.
pub fn go_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let neg = ms < 0;
    let mut ms = ms.unsigned_abs();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if ms < 1000 {
        out.push_str(&format!("{ms}ms"));
        return out;
    }
    let h = ms / 3_600_000;
    ms %= 3_600_000;
    let m = ms / 60_000;
    ms %= 60_000;
    let s = ms / 1000;
    let frac = ms % 1000;
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if frac == 0 {
        out.push_str(&format!("{s}s"));
    } else {
        let f = format!("{frac:03}");
        out.push_str(&format!("{s}.{}s", f.trim_end_matches('0')));
    }
    out
}

/// Formats a UTC millisecond timestamp as Go's `time.Time.String()` does for
/// UTC: `2006-01-02 15:04:05.999999999 +0000 UTC`.
pub fn go_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    if frac != 0 {
        s.push_str(format!(".{frac:03}").trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    s
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Human-readable byte size as promtool prints it (`1MiB310KiB885B`).
pub fn human_bytes(mut n: u64) -> String {
    if n == 0 {
        return "0B".into();
    }
    let units = [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    let mut s = String::new();
    for (u, size) in units {
        if n >= size {
            s.push_str(&format!("{}{u}", n / size));
            n %= size;
        }
    }
    if n > 0 || s.is_empty() {
        s.push_str(&format!("{n}B"));
    }
    s
}

/// Aligns columns as Go's `tabwriter` does with padding 2, which promtool
/// uses for `tsdb list` (minimum cell width 13).
fn tabwrite(out: &mut dyn Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                // promtool: minwidth 13 including the padding of 2.
                for _ in c.chars().count()..(widths[i] + 2).max(13) {
                    line.push(' ');
                }
            }
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// `tools tsdb list`: one line per block.
pub fn list(dir: &Path, human: bool, out: &mut dyn Write) -> Result<()> {
    let blocks = crate::db::open_blocks(dir)?;
    let mut rows = vec![[
        "BLOCK ULID",
        "MIN TIME",
        "MAX TIME",
        "DURATION",
        "NUM SAMPLES",
        "NUM CHUNKS",
        "NUM SERIES",
        "SIZE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()];
    for b in &blocks {
        let m = b.meta();
        let (mint, maxt, size) = if human {
            (
                go_time(m.min_time),
                go_time(m.max_time),
                human_bytes(b.size()),
            )
        } else {
            (
                m.min_time.to_string(),
                m.max_time.to_string(),
                b.size().to_string(),
            )
        };
        rows.push(vec![
            m.ulid.clone(),
            mint,
            maxt,
            go_duration(m.max_time - m.min_time),
            m.stats.num_samples.to_string(),
            m.stats.num_chunks.to_string(),
            m.stats.num_series.to_string(),
            size,
        ]);
    }
    tabwrite(out, &rows).map_err(werr)
}

/// `tools tsdb dump`: every sample in `[mint, maxt]` of series matching `ms`.
pub fn dump(dir: &Path, mint: i64, maxt: i64, ms: &[Matcher], out: &mut dyn Write) -> Result<()> {
    let db = Db::open_read_only(dir)?;
    let series = db.select(ms, mint, maxt)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 16, out);
    for s in series {
        let lbls = s.labels.to_string();
        for (t, v) in s.samples(mint, maxt)? {
            writeln!(w, "{lbls} {} {t}", go_format_g(v)).map_err(werr)?;
        }
    }
    w.flush().map_err(werr)
}

/// `tools tsdb analyze`: cardinality report for one block (the newest by
/// default), in promtool 2.42's layout and with its metrics: churn is the
/// share of the block's time range that a label's series do not cover.
/// Ties are printed in name order (promtool's order among ties is random).
pub fn analyze(
    dir: &Path,
    block_id: Option<&str>,
    limit: usize,
    extended: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let blocks = crate::db::open_blocks(dir)?;
    let block: &std::sync::Arc<Block> = match block_id {
        Some(id) => blocks
            .iter()
            .find(|b| b.meta().ulid == id)
            .ok_or_else(|| Error::Invalid(format!("block {id} not found in {}", dir.display())))?,
        None => blocks
            .iter()
            .max_by_key(|b| b.meta().ulid.clone())
            .ok_or_else(|| Error::Invalid(format!("no blocks found in {}", dir.display())))?,
    };
    let m = block.meta();
    let ix = block.index();
    let span = (m.max_time - m.min_time).max(1) as u64;
    let mut text = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(text, "Block ID: {}", m.ulid);
    let _ = writeln!(text, "Duration: {}", go_duration(m.max_time - m.min_time));
    let _ = writeln!(text, "Series: {}", m.stats.num_series);
    let names = ix.label_names()?;
    let _ = writeln!(text, "Label names: {}", names.len());

    let mut labels_uncovered: HashMap<String, u64> = HashMap::new();
    let mut pairs_uncovered: HashMap<String, u64> = HashMap::new();
    let mut pairs_count: HashMap<String, u64> = HashMap::new();
    let mut entries = 0u64;
    let mut chks = Vec::new();
    let mut fullness = [0u64; 10];
    let mut total_chunks = 0u64;
    for r in ix.all_postings()? {
        let lbls = ix.series(r, &mut chks)?;
        let (Some(first), Some(last)) = (chks.first(), chks.last()) else {
            continue;
        };
        let uncovered = span.saturating_sub((last.max_time - first.min_time) as u64);
        for l in &lbls {
            let key = format!("{}={}", l.name, l.value);
            *labels_uncovered.entry(l.name.to_string()).or_default() += uncovered;
            *pairs_uncovered.entry(key.clone()).or_default() += uncovered;
            *pairs_count.entry(key).or_default() += 1;
            entries += 1;
        }
        if extended {
            for c in &chks {
                let (_, data) = block.chunk(c.chunk_ref)?;
                let n = u16::from_be_bytes([
                    data.first().copied().unwrap_or(0),
                    data.get(1).copied().unwrap_or(0),
                ]);
                let size = f64::from(n).min(120.0);
                let bucket = ((10.0 * size / 120.0).ceil() as usize).clamp(1, 10) - 1;
                fullness[bucket] += 1;
                total_chunks += 1;
            }
        }
    }
    let _ = writeln!(
        text,
        "Postings (unique label pairs): {}",
        pairs_uncovered.len()
    );
    let _ = writeln!(text, "Postings entries (total label pairs): {entries}");
    let print = |text: &mut String, title: &str, v: Vec<(String, u64)>| {
        let mut v = v;
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let _ = writeln!(text, "\n{title}:");
        for (k, c) in v.into_iter().take(limit) {
            let _ = writeln!(text, "{c} {k}");
        }
    };
    let churn = |m: HashMap<String, u64>| -> Vec<(String, u64)> {
        m.into_iter()
            .map(|(k, v)| (k, (v as f64 / span as f64) as u64))
            .collect()
    };
    print(
        &mut text,
        "Label pairs most involved in churning",
        churn(pairs_uncovered),
    );
    print(
        &mut text,
        "Label names most involved in churning",
        churn(labels_uncovered),
    );
    print(
        &mut text,
        "Most common label pairs",
        pairs_count.into_iter().collect(),
    );
    let mut cumulative = Vec::new();
    let mut cardinality = Vec::new();
    for n in &names {
        let vals = ix.label_values(n)?;
        cumulative.push((n.clone(), vals.iter().map(|v| v.len() as u64).sum()));
        cardinality.push((n.clone(), vals.len() as u64));
    }
    print(
        &mut text,
        "Label names with highest cumulative label value length",
        cumulative,
    );
    print(&mut text, "Highest cardinality labels", cardinality);
    let mut metrics = Vec::new();
    for v in ix.label_values(crate::labels::METRIC_NAME)? {
        let c = ix.postings(crate::labels::METRIC_NAME, &v)?.len() as u64;
        metrics.push((v, c));
    }
    print(&mut text, "Highest cardinality metric names", metrics);
    if extended {
        let _ = writeln!(text, "\nCompaction analysis:");
        let _ = writeln!(
            text,
            "Fullness: Amount of samples in chunks (100% is 120 samples)"
        );
        for (i, c) in fullness.iter().enumerate() {
            let pct = (100 * c).checked_div(total_chunks).unwrap_or(0);
            let _ = writeln!(text, "{:>7}%: {}", (i + 1) * 10, "#".repeat(pct as usize));
        }
    }
    out.write_all(text.as_bytes()).map_err(werr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_g_matches_go() {
        for (v, s) in [
            (4.71168197e8, "4.71168197e+08"),
            (1.0, "1"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (1e6, "1e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5, "1.5"),
            (-2.25, "-2.25"),
            (1e21, "1e+21"),
            (100.0, "100"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (0.1 + 0.2, "0.30000000000000004"),
        ] {
            assert_eq!(go_format_g(v), s, "{v}");
        }
    }

    #[test]
    fn durations_and_times_match_go() {
        assert_eq!(go_duration(3_585_001), "59m45.001s");
        assert_eq!(go_duration(7_185_001), "1h59m45.001s");
        assert_eq!(go_duration(7_200_000), "2h0m0s");
        assert_eq!(go_duration(500), "500ms");
        assert_eq!(go_duration(30_501), "30.501s");
        assert_eq!(go_time(1_795_208_400_000), "2026-11-20 21:00:00 +0000 UTC");
        assert_eq!(go_time(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(human_bytes(1_366_901), "1MiB310KiB885B");
        assert_eq!(human_bytes(728_425), "711KiB361B");
    }
}

/// Prints one `tsdb list` line (and the header first) for a block just
/// written, as promtool's backfill does.
pub fn print_block_line(
    m: &crate::meta::BlockMeta,
    size: u64,
    header: bool,
    human: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let mut rows = Vec::new();
    if header {
        rows.push(
            [
                "BLOCK ULID",
                "MIN TIME",
                "MAX TIME",
                "DURATION",
                "NUM SAMPLES",
                "NUM CHUNKS",
                "NUM SERIES",
                "SIZE",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
        );
    }
    let (mint, maxt, size) = if human {
        (go_time(m.min_time), go_time(m.max_time), human_bytes(size))
    } else {
        (
            m.min_time.to_string(),
            m.max_time.to_string(),
            size.to_string(),
        )
    };
    rows.push(vec![
        m.ulid.clone(),
        mint,
        maxt,
        go_duration(m.max_time - m.min_time),
        m.stats.num_samples.to_string(),
        m.stats.num_chunks.to_string(),
        m.stats.num_series.to_string(),
        size,
    ]);
    tabwrite(out, &rows).map_err(werr)
}

/// Parses a Prometheus duration (`1h30m`, `2h`, `15s`, `500ms`, `1d`, `1w`,
/// `1y`) into milliseconds. `0` and `0s` are zero.
pub fn parse_duration_ms(s: &str) -> Result<i64> {
    let bad = || Error::Invalid(format!("not a valid duration string: {s:?}"));
    if s == "0" {
        return Ok(0);
    }
    let mut rest = s;
    let mut total: i64 = 0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if n_end == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..n_end].parse().map_err(|_| bad())?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(bad)?;
        rest = &rest[u_end..];
    }
    Ok(total)
}

/// Parses a series selector: `metric`, `metric{l="v",...}` or `{l=~"v"}`,
/// with `=`, `!=`, `=~`, `!~` and Go-style quoted values ("", '', ``).
/// Used by `tools tsdb dump --match`; the PromQL crate has the full parser.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>> {
    let bad = |why: &str| Error::Invalid(format!("invalid series selector {s:?}: {why}"));
    let is_name_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut ms = Vec::new();
    let t = s.trim();
    let (name, mut rest) = match t.find(|c: char| !is_name(c)) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    if !name.is_empty() {
        if !name.starts_with(is_name_start) {
            return Err(bad("metric name"));
        }
        ms.push(Matcher::equal(crate::labels::METRIC_NAME, name));
    }
    rest = rest.trim();
    if rest.is_empty() {
        return if ms.is_empty() {
            Err(bad("empty"))
        } else {
            Ok(ms)
        };
    }
    let inner = rest
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or_else(|| bad("expected {...}"))?;
    let mut chars = inner.trim().chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut lname = String::new();
        while let Some(&c) = chars.peek() {
            if is_name(c) {
                lname.push(c);
                chars.next();
            } else {
                break;
            }
        }
        if lname.is_empty() || !lname.starts_with(is_name_start) {
            return Err(bad("label name"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let op: String = {
            let mut op = String::new();
            while let Some(&c) = chars.peek() {
                if "=!~".contains(c) && op.len() < 2 {
                    op.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            op
        };
        let kind = match op.as_str() {
            "=" => crate::labels::MatchType::Equal,
            "!=" => crate::labels::MatchType::NotEqual,
            "=~" => crate::labels::MatchType::Regex,
            "!~" => crate::labels::MatchType::NotRegex,
            _ => return Err(bad("matcher operator")),
        };
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let quote = chars.next().ok_or_else(|| bad("missing value"))?;
        if !"\"'`".contains(quote) {
            return Err(bad("value must be quoted"));
        }
        let mut val = String::new();
        loop {
            let c = chars.next().ok_or_else(|| bad("unterminated string"))?;
            if c == quote {
                break;
            }
            if c == '\\' && quote != '`' {
                let e = chars.next().ok_or_else(|| bad("unterminated escape"))?;
                val.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '\\' => '\\',
                    '"' => '"',
                    '\'' => '\'',
                    other => return Err(bad(&format!("unknown escape \\{other}"))),
                });
            } else {
                val.push(c);
            }
        }
        ms.push(Matcher::new(kind, lname, val)?);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => break,
            Some(',') => continue,
            Some(_) => return Err(bad("expected ',' or '}'")),
        }
    }
    // promtool's own default `{__name__=~'(?s:.*)'}` matches the empty
    // string, so unlike the HTTP API only a selector with no matcher at all
    // is rejected here.
    if ms.is_empty() {
        return Err(bad("no matchers"));
    }
    Ok(ms)
}

#[cfg(test)]
mod selector_tests {
    use super::*;

    #[test]
    fn parses_selectors_and_durations() {
        let ms = parse_selector(r#"up{job="a", x=~'b.*',y!="",z!~`c\d`}"#).unwrap();
        assert_eq!(
            format!("{ms:?}"),
            r#"[__name__="up", job="a", x=~"b.*", y!="", z!~"c\\d"]"#
        );
        assert_eq!(parse_selector("{__name__=~'(?s:.*)'}").unwrap().len(), 1);
        assert!(parse_selector("up{job=a}").is_err());
        assert!(parse_selector("up{job=\"a\"").is_err());
        assert!(parse_selector("").is_err());
        assert_eq!(parse_duration_ms("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration_ms("0s").unwrap(), 0);
        assert!(parse_duration_ms("1x").is_err());
        assert!(parse_duration_ms("h").is_err());
    }
}
