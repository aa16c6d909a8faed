//! Test-file parsing: text → commands, each with its 1-based line number.
//!
//! Follows upstream's `test.go` line rules: lines are trimmed, `#` lines are
//! comments, a blank line ends a command's block, and the first word selects
//! the command (`load…`, `clear`, `eval…`). Unlike upstream, a malformed
//! command does not abort the file: it becomes [`Command::Invalid`] (a failed
//! eval when it was an eval) and parsing resumes after its block, so one bad
//! line costs one entry on the scoreboard, not a whole file.

use std::sync::OnceLock;

use regex::Regex;
use strata_tsdb::labels::Labels;

use super::series::{parse_metric, parse_series_desc, SeqValue, SeriesDesc, MAX_VALUES_PER_LINE};
use super::text::{parse_duration, parse_number, unquote};

/// One parsed command.
#[derive(Debug)]
pub(crate) enum Command {
    Load(Load),
    Clear,
    Eval(Box<Eval>),
    Invalid(Invalid),
}

/// A command (or a line of one) the harness could not parse.
#[derive(Debug)]
pub(crate) struct Invalid {
    pub line: usize,
    /// The offending line, for the report.
    pub text: String,
    pub reason: String,
    /// An unparsable eval still counts as a (failed) eval.
    pub is_eval: bool,
}

/// `load <step>` / `load_with_nhcb <step>` and its series.
#[derive(Debug)]
pub(crate) struct Load {
    pub step: i64,
    pub with_nhcb: bool,
    /// In file order; a repeated label set replaces the earlier definition,
    /// as upstream keys a load's series by label set.
    pub series: Vec<SeriesDesc>,
}

/// `from`/`to`/`step` of a range eval or of `expect range vector`, in ms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct TimeRange {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

/// The `expect <kind>` line kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExpectKind {
    Ordered,
    Fail,
    Warn,
    NoWarn,
    Info,
    NoInfo,
}

/// How an `expect` line's text is matched: nothing given, `msg:` (exact) or
/// `regex:` (unanchored search, as Go's `MatchString`).
#[derive(Clone, Debug)]
pub(crate) enum TextMatch {
    Any,
    Exact(String),
    Pattern(Regex),
}

impl TextMatch {
    pub fn matches(&self, s: &str) -> bool {
        match self {
            TextMatch::Any => true,
            TextMatch::Exact(m) => m == s,
            TextMatch::Pattern(re) => re.is_match(s),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            TextMatch::Any => "anything".into(),
            TextMatch::Exact(m) => format!("message {m:?}"),
            TextMatch::Pattern(re) => format!("pattern {:?}", re.as_str()),
        }
    }
}

/// One expected series of an eval: labels, its position (for ordered
/// results, 1-based) and its values.
#[derive(Clone, Debug)]
pub(crate) struct ExpectedSeries {
    pub labels: Labels,
    pub pos: usize,
    pub values: Vec<SeqValue>,
}

/// What the eval's result must be.
#[derive(Clone, Debug)]
pub(crate) enum Expected {
    /// Expected series (possibly none: an empty result).
    Series(Vec<ExpectedSeries>),
    /// A bare number line: a scalar result.
    Scalar(f64),
}

/// `eval instant …` / `eval range …` with its expectations.
#[derive(Debug)]
pub(crate) struct Eval {
    pub line: usize,
    pub expr: String,
    /// `Some` for `eval range`.
    pub range: Option<TimeRange>,
    /// Evaluation time of an instant eval (the `to` of `expect range vector`
    /// when present, as upstream does).
    pub at: i64,
    /// `expect range vector from … to … step …`: an instant query returning
    /// a matrix, compared over this grid.
    pub expect_range: Option<TimeRange>,
    /// Deprecated `eval_fail` / `eval_warn` / `eval_info` / `eval_ordered`.
    pub fail: bool,
    pub warn: bool,
    pub info: bool,
    pub ordered: bool,
    /// Deprecated `expected_fail_message` / `expected_fail_regexp`.
    pub expected_fail_message: Option<String>,
    pub expected_fail_regexp: Option<Regex>,
    pub expects: Vec<(ExpectKind, TextMatch)>,
    pub expected: Expected,
    /// `expect string "…"` (upstream compares string results against "" when
    /// it is absent).
    pub expected_string: String,
    /// Skip the range-consistency re-run (string or range-vector results).
    pub exclude_from_range: bool,
}

impl Eval {
    pub fn expects_of(&self, kind: ExpectKind) -> impl Iterator<Item = &TextMatch> {
        self.expects
            .iter()
            .filter(move |(k, _)| *k == kind)
            .map(|(_, m)| m)
    }

    pub fn has_expect(&self, kind: ExpectKind) -> bool {
        self.expects_of(kind).next().is_some()
    }

    pub fn is_fail(&self) -> bool {
        self.fail || self.has_expect(ExpectKind::Fail)
    }

    pub fn is_ordered(&self) -> bool {
        self.ordered || self.has_expect(ExpectKind::Ordered)
    }
}

struct Patterns {
    load: Regex,
    eval_instant: Regex,
    eval_range: Regex,
    expect: Regex,
    expect_range: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        // Hand-written constant patterns; a failure here is a programming
        // error caught by every test.
        let re = |s: &str| Regex::new(s).expect("constant regex");
        Patterns {
            load: re(r"^load(?:_(with_nhcb))?\s+(.+?)$"),
            // Upstream's pattern needs `at <time>`; here it is optional (the
            // time then defaults to 0) so `eval instant <expr>` also works.
            eval_instant: re(
                r"^eval(?:_(fail|warn|ordered|info))?\s+instant(?:\s+at\s+(.+?))?\s+(.+)$",
            ),
            eval_range: re(
                r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$",
            ),
            expect: re(r"^expect\s+(ordered|fail|warn|no_warn|info|no_info)(?:\s+(regex|msg):(.+))?$"),
            expect_range: re(r"^expect range vector\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+)$"),
        }
    })
}

/// Parses a whole test file.
pub(crate) fn parse_file(content: &str) -> Vec<Command> {
    let lines: Vec<&str> = content
        .split('\n')
        .map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                ""
            } else {
                l
            }
        })
        .collect();
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.is_empty() {
            i += 1;
            continue;
        }
        let word = l
            .split([' ', '\t'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        i = if word == "clear" {
            cmds.push(Command::Clear);
            i + 1
        } else if word.starts_with("load") {
            parse_load(&lines, i, &mut cmds)
        } else if word.starts_with("eval") {
            parse_eval(&lines, i, &mut cmds)
        } else {
            cmds.push(Command::Invalid(Invalid {
                line: i + 1,
                text: l.to_string(),
                reason: format!("invalid command {l:?}"),
                is_eval: false,
            }));
            end_of_block(&lines, i)
        };
    }
    cmds
}

/// Index of the blank line (or end) that ends the block containing `i`.
fn end_of_block(lines: &[&str], mut i: usize) -> usize {
    while i < lines.len() && !lines[i].is_empty() {
        i += 1;
    }
    i
}

/// Parses `load` and its series lines; returns the index after the block.
fn parse_load(lines: &[&str], i: usize, cmds: &mut Vec<Command>) -> usize {
    let invalid = |line: usize, reason: String| {
        Command::Invalid(Invalid {
            line: line + 1,
            text: lines[line].to_string(),
            reason,
            is_eval: false,
        })
    };
    let Some(caps) = patterns().load.captures(lines[i]) else {
        cmds.push(invalid(
            i,
            "invalid load command. (load[_with_nhcb] <step:duration>)".into(),
        ));
        return end_of_block(lines, i);
    };
    let with_nhcb = caps.get(1).is_some();
    let step_text = caps.get(2).map_or("", |m| m.as_str());
    let step = match parse_duration(step_text) {
        Ok(s) => s,
        Err(e) => {
            cmds.push(invalid(
                i,
                format!("invalid step definition {step_text:?}: {e}"),
            ));
            return end_of_block(lines, i);
        }
    };
    let mut load = Load {
        step,
        with_nhcb,
        series: Vec::new(),
    };
    let mut problems = Vec::new();
    // A pending `metric@st …` line: its labels, value count and line index.
    let mut pending_st: Option<(Labels, usize, usize)> = None;
    let mut j = i + 1;
    while j < lines.len() && !lines[j].is_empty() {
        let l = lines[j];
        if is_st_line(l) {
            if let Some((_, _, st_line)) = pending_st.take() {
                problems.push(invalid(
                    st_line,
                    "@st line has no following sample line".into(),
                ));
            }
            match parse_st_line(l) {
                Ok((labels, n)) => pending_st = Some((labels, n, j)),
                Err(e) => problems.push(invalid(j, e)),
            }
            j += 1;
            continue;
        }
        match parse_series_desc(l) {
            Ok(desc) => {
                // Start timestamps are accepted and checked, then dropped:
                // the storage API has no place for them.
                if let Some((st_labels, n, st_line)) = pending_st.take() {
                    if st_labels != desc.labels {
                        problems.push(invalid(
                            st_line,
                            "@st metric does not match the following sample line metric".into(),
                        ));
                    } else if n != desc.values.len() {
                        problems.push(invalid(
                            st_line,
                            format!(
                                "@st line has {n} values but sample line has {}",
                                desc.values.len()
                            ),
                        ));
                    }
                }
                match load.series.iter_mut().find(|s| s.labels == desc.labels) {
                    Some(existing) => *existing = desc,
                    None => load.series.push(desc),
                }
            }
            Err(e) => problems.push(invalid(j, format!("invalid series line: {e}"))),
        }
        j += 1;
    }
    if let Some((_, _, st_line)) = pending_st {
        problems.push(invalid(
            st_line,
            "@st line has no following sample line".into(),
        ));
    }
    cmds.push(Command::Load(load));
    cmds.extend(problems);
    j
}

/// `metric{…}@st <offsets>`: the first word ends in `@st`.
fn is_st_line(l: &str) -> bool {
    l.split_once([' ', '\t'])
        .is_some_and(|(first, _)| first.ends_with("@st"))
}

/// Parses an `@st` line: the metric and the number of positions it covers.
fn parse_st_line(l: &str) -> Result<(Labels, usize), String> {
    let (first, rest) = l.split_once([' ', '\t']).unwrap_or((l, ""));
    let metric = first.strip_suffix("@st").unwrap_or(first);
    let (labels, after) =
        parse_metric(metric).map_err(|e| format!("invalid @st line metric {metric:?}: {e}"))?;
    if !after.is_empty() {
        return Err(format!("invalid @st line metric {metric:?}"));
    }
    let mut n: usize = 0;
    for item in rest.split_whitespace() {
        n = n
            .checked_add(
                st_item_len(item)
                    .map_err(|e| format!("invalid @st sequence: invalid ST item {item:?}: {e}"))?,
            )
            .filter(|n| *n <= MAX_VALUES_PER_LINE)
            .ok_or("@st sequence too long")?;
    }
    Ok((labels, n))
}

/// How many positions one `@st` item covers: `_`, `_xN`, `<d>`, `<d>xN`,
/// `<d>+<d>xN`, `<d>-<d>xN` (durations may carry a sign).
fn st_item_len(item: &str) -> Result<usize, String> {
    fn count(s: &str) -> Result<usize, String> {
        s.parse::<usize>()
            .map_err(|_| "invalid repeat count".to_string())
    }
    if item == "_" {
        return Ok(1);
    }
    if let Some(n) = item.strip_prefix("_x") {
        return match count(n)? {
            0 => Err("invalid repeat count".into()),
            n => Ok(n),
        };
    }
    let rest = st_duration(item)?;
    if rest.is_empty() {
        return Ok(1);
    }
    if let Some(n) = rest.strip_prefix('x') {
        return count(n).map(|n| n.saturating_add(1));
    }
    let Some(delta) = rest.strip_prefix(['+', '-']) else {
        return Err(format!(
            "unexpected character {:?} after duration",
            rest.chars().next().unwrap_or(' ')
        ));
    };
    let rest = st_duration(delta)?;
    let n = rest
        .strip_prefix('x')
        .ok_or("expected 'x<count>' after step duration")?;
    count(n).map(|n| n.saturating_add(1))
}

/// Consumes a signed duration (digits then unit letters, stopping at `x`).
fn st_duration(s: &str) -> Result<&str, String> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let digits = body
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(body.len());
    if digits == 0 {
        return Err(format!("expected digits in duration {s:?}"));
    }
    let unit_end = body[digits..]
        .find(|c: char| !c.is_ascii_alphabetic() || c == 'x')
        .map_or(body.len(), |k| digits + k);
    parse_duration(&body[..unit_end]).map_err(|e| format!("invalid duration: {e}"))?;
    Ok(&body[unit_end..])
}

/// Parses `eval …` and its expectation lines; returns the next index.
fn parse_eval(lines: &[&str], i: usize, cmds: &mut Vec<Command>) -> usize {
    match parse_eval_block(lines, i) {
        Ok((eval, next)) => {
            cmds.push(Command::Eval(Box::new(eval)));
            next
        }
        Err((at, reason)) => {
            cmds.push(Command::Invalid(Invalid {
                line: i + 1,
                text: lines[i].to_string(),
                reason: if at == i {
                    reason
                } else {
                    format!("line {}: {reason}", at + 1)
                },
                is_eval: true,
            }));
            end_of_block(lines, i)
        }
    }
}

fn parse_range(from: &str, to: &str, step: &str) -> Result<TimeRange, String> {
    let start = parse_duration(from)
        .map_err(|e| format!("invalid start timestamp definition {from:?}: {e}"))?;
    let end =
        parse_duration(to).map_err(|e| format!("invalid end timestamp definition {to:?}: {e}"))?;
    if end < start {
        return Err(format!(
            "invalid test definition, end timestamp ({to}) is before start timestamp ({from})"
        ));
    }
    let step =
        parse_duration(step).map_err(|e| format!("invalid step definition {step:?}: {e}"))?;
    Ok(TimeRange { start, end, step })
}

/// The eval block proper; an error carries the index of the bad line.
fn parse_eval_block(lines: &[&str], i: usize) -> Result<(Eval, usize), (usize, String)> {
    let p = patterns();
    let head = lines[i];
    let err_here = |reason: String| (i, reason);
    let (modifier, expr, range, at) = if let Some(c) = p.eval_instant.captures(head) {
        let at = match c.get(2) {
            Some(m) => parse_duration(m.as_str()).map_err(|e| {
                err_here(format!(
                    "invalid timestamp definition {:?}: {e}",
                    m.as_str()
                ))
            })?,
            None => 0,
        };
        (c.get(1), c.get(3), None, at)
    } else if let Some(c) = p.eval_range.captures(head) {
        let cap = |k: usize| c.get(k).map_or("", |m| m.as_str());
        let r = parse_range(cap(2), cap(3), cap(4)).map_err(err_here)?;
        (c.get(1), c.get(5), Some(r), r.start)
    } else {
        return Err(err_here(
            "invalid evaluation command. Must be either 'eval[_fail|_warn|_info|_ordered] instant [at <offset:duration>] <query>' or 'eval[_fail|_warn|_info] range from <from> to <to> step <step> <query>'".into(),
        ));
    };
    let modifier = modifier.map_or("", |m| m.as_str());
    let mut ev = Eval {
        line: i + 1,
        expr: expr.map_or("", |m| m.as_str()).to_string(),
        range,
        at,
        expect_range: None,
        fail: modifier == "fail",
        warn: modifier == "warn",
        info: modifier == "info",
        ordered: modifier == "ordered",
        expected_fail_message: None,
        expected_fail_regexp: None,
        expects: Vec::new(),
        expected: Expected::Series(Vec::new()),
        expected_string: String::new(),
        exclude_from_range: false,
    };
    let mut series: Vec<ExpectedSeries> = Vec::new();
    // Position of the next expected series; `expect …` lines do not count.
    let mut pos = 1;
    let mut j = i + 1;
    while j < lines.len() && !lines[j].is_empty() {
        let l = lines[j];
        let here = |reason: String| (j, reason);
        if ev.fail {
            if let Some(m) = l.strip_prefix("expected_fail_message") {
                ev.expected_fail_message = Some(m.trim().to_string());
                // Upstream ends the block here; a following line is a command.
                return Ok((finish(ev, series), j + 1));
            }
            if let Some(m) = l.strip_prefix("expected_fail_regexp") {
                let pat = m.trim();
                let re = Regex::new(pat).map_err(|e| {
                    here(format!(
                        "invalid regexp '{pat}' for expected_fail_regexp: {e}"
                    ))
                })?;
                ev.expected_fail_regexp = Some(re);
                return Ok((finish(ev, series), j + 1));
            }
        }
        if l.starts_with("expect range vector") {
            let c = p
                .expect_range
                .captures(l)
                .ok_or_else(|| here(format!("invalid range vector definition {l:?}")))?;
            let cap = |k: usize| c.get(k).map_or("", |m| m.as_str());
            let r = parse_range(cap(1), cap(2), cap(3)).map_err(here)?;
            ev.expect_range = Some(r);
            ev.at = r.end;
            // Upstream overwrites the eval's own grid with this one, for
            // range evals too.
            if ev.range.is_some() {
                ev.range = Some(r);
            }
            ev.exclude_from_range = true;
            j += 1;
            continue;
        }
        if l.starts_with("expect string") {
            let lit = l
                .strip_prefix("expect string ")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    here(
                        "expected string literal not valid - a quoted string literal is required"
                            .into(),
                    )
                })?;
            ev.expected_string = unquote(lit).map_err(|_| {
                here(
                    "expected string literal not valid - check that the string is correctly quoted"
                        .into(),
                )
            })?;
            ev.exclude_from_range = true;
            j += 1;
            continue;
        }
        // `expect{}` is still a metric named "expect".
        if l.split(' ').next() == Some("expect") {
            let (kind, m) = parse_expect(l).map_err(here)?;
            ev.expects.push((kind, m));
            validate_expects(&ev).map_err(here)?;
            j += 1;
            continue;
        }
        if let Some(f) = parse_number(l) {
            ev.expected = Expected::Scalar(f);
            // A scalar expectation ends the block, as upstream.
            return Ok((ev, j + 1));
        }
        let desc = parse_series_desc(l).map_err(here)?;
        if desc.values.len() > 1 && ev.range.is_none() && ev.expect_range.is_none() {
            return Err(here("expecting multiple values in instant evaluation not allowed. consider using 'expect range vector' directive to enable a range vector result for an instant query".into()));
        }
        let entry = ExpectedSeries {
            labels: desc.labels,
            pos,
            values: desc.values,
        };
        match series.iter_mut().find(|s| s.labels == entry.labels) {
            Some(existing) => *existing = entry,
            None => series.push(entry),
        }
        pos += 1;
        j += 1;
    }
    Ok((finish(ev, series), j))
}

fn finish(mut ev: Eval, series: Vec<ExpectedSeries>) -> Eval {
    if let Expected::Series(s) = &mut ev.expected {
        *s = series;
    }
    ev
}

/// `expect <kind> [msg: <text> | regex: <pattern>]`.
fn parse_expect(l: &str) -> Result<(ExpectKind, TextMatch), String> {
    let c = patterns().expect.captures(l.trim()).ok_or(
        "invalid expect statement, must match `expect <type> <match_type>: <string>` format",
    )?;
    let kind = match c.get(1).map_or("", |m| m.as_str()) {
        "ordered" => ExpectKind::Ordered,
        "fail" => ExpectKind::Fail,
        "warn" => ExpectKind::Warn,
        "no_warn" => ExpectKind::NoWarn,
        "info" => ExpectKind::Info,
        _ => ExpectKind::NoInfo,
    };
    let text = c.get(3).map_or("", |m| m.as_str()).trim();
    let m = match c.get(2).map(|m| m.as_str()) {
        None => TextMatch::Any,
        Some("msg") => TextMatch::Exact(text.to_string()),
        Some(_) => TextMatch::Pattern(
            Regex::new(text).map_err(|e| format!("invalid regex {text} for {l}: {e}"))?,
        ),
    };
    Ok((kind, m))
}

fn validate_expects(ev: &Eval) -> Result<(), String> {
    use ExpectKind::*;
    if ev.has_expect(Info) && ev.has_expect(NoInfo) {
        return Err("invalid expect lines, info and no_info cannot be used together".into());
    }
    if ev.has_expect(Warn) && ev.has_expect(NoWarn) {
        return Err("invalid expect lines, warn and no_warn cannot be used together".into());
    }
    if ev.expects_of(Fail).count() > 1 {
        return Err("invalid expect lines, multiple expect fail lines are not allowed".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evals(src: &str) -> Vec<Eval> {
        parse_file(src)
            .into_iter()
            .filter_map(|c| match c {
                Command::Eval(e) => Some(*e),
                Command::Invalid(i) => panic!("unexpected invalid command: {i:?}"),
                _ => None,
            })
            .collect()
    }

    fn invalid(src: &str) -> Vec<Invalid> {
        parse_file(src)
            .into_iter()
            .filter_map(|c| match c {
                Command::Invalid(i) => Some(i),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn load_and_clear() {
        let cmds = parse_file(
            "# comment\nload 5m\n  a{x=\"1\"} 1 2\n\tb 0+1x2\n  a{x=\"1\"} 9\n\nclear\nload_with_nhcb 1m\n  h_bucket{le=\"1\"} 1\n",
        );
        assert_eq!(cmds.len(), 3);
        let Command::Load(l) = &cmds[0] else { panic!() };
        assert_eq!((l.step, l.with_nhcb), (300_000, false));
        assert_eq!(
            l.series.len(),
            2,
            "a repeated label set replaces the earlier one"
        );
        assert_eq!(l.series[0].values, [SeqValue::Float(9.0)]);
        assert!(matches!(cmds[1], Command::Clear));
        let Command::Load(l) = &cmds[2] else { panic!() };
        assert!(l.with_nhcb);
        assert_eq!(l.step, 60_000);
    }

    #[test]
    fn load_errors_do_not_stop_the_file() {
        let cmds = parse_file(
            "load 5x\n a 1\n\nload 1m\n a 1\n b 1+\n c 2\n\neval instant at 0 a\n a 1\n",
        );
        let bad: Vec<usize> = cmds
            .iter()
            .filter_map(|c| match c {
                Command::Invalid(i) => Some(i.line),
                _ => None,
            })
            .collect();
        assert_eq!(bad, [1, 6]);
        let Some(Command::Load(l)) = cmds.iter().find(|c| matches!(c, Command::Load(_))) else {
            panic!()
        };
        assert_eq!(l.series.len(), 2, "good lines of a load are kept");
        assert!(cmds.iter().any(|c| matches!(c, Command::Eval(_))));
    }

    #[test]
    fn start_timestamp_lines() {
        let cmds = parse_file("load 1m\n  c{t=\"a\"}@st _ -30s-1mx1 -1m\n  c{t=\"a\"} 1 2 3 4\n");
        assert_eq!(cmds.len(), 1, "{cmds:?}");
        let bad = invalid("load 1m\n  c@st _ 0s\n  c 1 2 3\n");
        assert_eq!(bad.len(), 1);
        assert!(bad[0].reason.contains("2 values"), "{}", bad[0].reason);
        let bad = invalid("load 1m\n  c@st _\n  d 1\n");
        assert!(bad[0].reason.contains("does not match"));
        let bad = invalid("load 1m\n  c@st _\n");
        assert!(bad[0].reason.contains("no following"));
        let bad = invalid("load 1m\n  c@st 5q\n  c 1\n");
        assert_eq!(bad[0].line, 2);
        let bad = invalid("load 1m\n  c@st 1mé\n  c 1\n");
        assert!(bad[0].reason.contains("'é'"), "{}", bad[0].reason);
    }

    #[test]
    fn eval_heads() {
        let e = evals("eval instant at 1m30s sum(x)\n\neval instant x\n\neval range from 1m to 5m step 30s rate(x[1m])\n\neval_ordered instant at 5m sort(x)\n\neval_fail instant at 0 y\n\neval_warn range from 0 to 1m step 1m z\n\neval_info instant at 1s w\n");
        assert_eq!(e[0].expr, "sum(x)");
        assert_eq!(e[0].at, 90_000);
        assert!(e[0].range.is_none());
        assert_eq!(e[1].at, 0, "`at` is optional");
        assert_eq!(e[1].expr, "x");
        assert_eq!(
            e[2].range,
            Some(TimeRange {
                start: 60_000,
                end: 300_000,
                step: 30_000
            })
        );
        assert_eq!(e[2].expr, "rate(x[1m])");
        assert!(e[3].ordered && e[3].is_ordered());
        assert!(e[4].fail && e[4].is_fail());
        assert!(e[5].warn && e[5].range.is_some());
        assert!(e[6].info);
        assert_eq!(
            e.iter().map(|e| e.line).collect::<Vec<_>>(),
            [1, 3, 5, 7, 9, 11, 13]
        );
    }

    #[test]
    fn eval_expectations() {
        let e = evals(concat!(
            "eval instant at 1m foo\n",
            "  expect ordered\n",
            "  expect warn msg: PromQL warning: x (1:1)\n",
            "  expect info regex: PromQL info: .* \\(1:[0-9]+\\)\n",
            "  foo{a=\"1\"} 2\n",
            "  {a=\"2\"} -Inf\n",
            "  expect{} 3\n",
            "\n",
            "eval instant at 0 1+1\n",
            "  2\n",
            "\n",
            "eval instant at 0 bad\n",
            "  expect fail msg:vector cannot contain metrics with the same labelset\n",
            "\n",
            "eval instant at 0 bad\n",
            "  expect fail regex: too (many|few)\n",
            "\n",
            "eval instant at 0 \"a\"\n",
            "  expect string \" Foo \"\n",
            "\n",
            "eval instant at 10s x[10s]\n",
            "  expect range vector from 0 to 10s step 5s\n",
            "  x 1 _ 3\n",
        ));
        let [a, b, c, d, s, r] = &e[..] else {
            panic!("{}", e.len())
        };
        assert!(a.is_ordered());
        assert!(a
            .expects_of(ExpectKind::Warn)
            .next()
            .unwrap()
            .matches("PromQL warning: x (1:1)"));
        let info = a.expects_of(ExpectKind::Info).next().unwrap();
        assert!(info.matches("PromQL info: y (1:17)"));
        assert!(!info.matches("PromQL info: y"));
        assert!(!a.has_expect(ExpectKind::NoInfo));
        let Expected::Series(ser) = &a.expected else {
            panic!()
        };
        assert_eq!(ser.len(), 3);
        assert_eq!(ser.iter().map(|s| s.pos).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(ser[1].values, [SeqValue::Float(f64::NEG_INFINITY)]);
        assert_eq!(ser[2].labels.metric_name(), "expect");
        assert!(matches!(b.expected, Expected::Scalar(f) if f == 2.0));
        assert!(c.is_fail());
        let m = c.expects_of(ExpectKind::Fail).next().unwrap();
        assert!(m.matches("vector cannot contain metrics with the same labelset"));
        assert!(d
            .expects_of(ExpectKind::Fail)
            .next()
            .unwrap()
            .matches("way too many samples"));
        assert_eq!(s.expected_string, " Foo ");
        assert!(s.exclude_from_range);
        assert_eq!(
            r.expect_range,
            Some(TimeRange {
                start: 0,
                end: 10_000,
                step: 5_000
            })
        );
        assert_eq!(r.at, 10_000);
        let Expected::Series(ser) = &r.expected else {
            panic!()
        };
        assert_eq!(
            ser[0].values,
            [
                SeqValue::Float(1.0),
                SeqValue::Omitted,
                SeqValue::Float(3.0)
            ]
        );
    }

    #[test]
    fn deprecated_forms() {
        let cmds = parse_file(
            "eval_fail instant at 0 a\n  expected_fail_message boom\n\neval_fail instant at 0 b\n  expected_fail_regexp bo+m\neval instant at 0 c\n",
        );
        let e: Vec<&Eval> = cmds
            .iter()
            .filter_map(|c| {
                if let Command::Eval(e) = c {
                    Some(&**e)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(
            e.len(),
            3,
            "expected_fail_* ends the block: the next line is a command"
        );
        assert_eq!(e[0].expected_fail_message.as_deref(), Some("boom"));
        assert!(e[1]
            .expected_fail_regexp
            .as_ref()
            .unwrap()
            .is_match("a booom"));
        assert_eq!(e[2].line, 6);
        // Without eval_fail the deprecated lines are just (bad) series lines.
        assert_eq!(
            invalid("eval instant at 0 a\n  expected_fail_message boom\n").len(),
            1
        );
    }

    #[test]
    fn invalid_evals_count_and_skip_their_block() {
        let bad = invalid(concat!(
            "eval instant at 5 x\n  x 1\n\n",
            "eval instant at 0 x\n  x 1 2\n\n",
            "eval range from 5m to 1m step 1m x\n\n",
            "eval instant at 0 x\n  expect warn\n  expect no_warn\n\n",
            "eval instant at 0 x\n  expect fail\n  expect fail\n\n",
            "eval instant at 0 x\n  expect sometimes\n\n",
            "eval instant at 0 x\n  expect warn regex: (\n\n",
            "eval instant at 0 x\n  expect string foo\n\n",
            "eval instant at 0 x\n  expect string\n\n",
            "eval instant at 0 x\n  expect range vector from 0 to 1m\n\n",
            "eval sometimes x\n\n",
            "frobnicate\n  x 1\n",
        ));
        assert_eq!(bad.len(), 12);
        assert!(bad[..11].iter().all(|i| i.is_eval));
        assert!(!bad[11].is_eval);
        assert!(bad[1].reason.contains("line 5:"), "{}", bad[1].reason);
        assert!(bad[1].reason.contains("expect range vector"));
        assert_eq!(bad[11].line, 34);
    }
}
