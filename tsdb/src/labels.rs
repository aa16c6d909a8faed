//! Label sets and label matchers.
//!
//! A [`Labels`] value is a set of `(name, value)` pairs kept sorted by name, the
//! same canonical form Prometheus uses (`labels.Labels`). Sorting by name makes
//! equality, hashing and ordering of label sets a plain slice comparison, and it
//! is the order the index format stores label pairs in.
//!
//! Names and values are `Arc<str>` so the head can intern them: every series that
//! carries `job="node"` points at the same two allocations (see
//! [`crate::head`]). Cloning a `Labels` therefore never copies string bytes.
//!
//! A [`Matcher`] is one of PromQL's four matcher kinds. Regular expressions are
//! fully anchored, as in Prometheus (`^(?:re)$`), and the common shapes — a
//! literal, a literal alternation `a|b|c`, a prefix `foo.*`, and `.*` / `.+` —
//! are recognised up front so the hot path never runs the regex engine for them.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// The reserved label that holds the metric name.
pub const METRIC_NAME: &str = "__name__";

/// One label pair.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Label {
    pub name: Arc<str>,
    pub value: Arc<str>,
}

impl Label {
    pub fn new(name: impl Into<Arc<str>>, value: impl Into<Arc<str>>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A label set, sorted by name, names unique.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Labels(Vec<Label>);

impl Labels {
    pub fn empty() -> Self {
        Labels(Vec::new())
    }

    /// Builds a label set from pairs in any order. Empty values are dropped
    /// (Prometheus treats `l=""` as "label absent"). With duplicate names the
    /// last pair wins.
    pub fn from_pairs<N, V, I>(pairs: I) -> Self
    where
        N: Into<Arc<str>>,
        V: Into<Arc<str>>,
        I: IntoIterator<Item = (N, V)>,
    {
        let mut v: Vec<Label> = pairs
            .into_iter()
            .map(|(n, v)| Label::new(n, v))
            .filter(|l| !l.value.is_empty())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        // Keep the last of equal names: reverse-dedup then restore order.
        v.reverse();
        v.dedup_by(|a, b| a.name == b.name);
        v.reverse();
        // A stable sort kept insertion order among equal names, so after the
        // reverse/dedup/reverse dance the survivor is the last one given.
        Labels(v)
    }

    /// Wraps labels already sorted by name with unique names.
    /// Debug builds check the invariant.
    pub fn from_sorted(v: Vec<Label>) -> Self {
        debug_assert!(v.windows(2).all(|w| w[0].name < w[1].name));
        Labels(v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| (*l.name).cmp(name))
            .ok()
            .map(|i: usize| &*self.0[i].value)
    }

    /// The metric name, or "" when there is none.
    pub fn metric_name(&self) -> &str {
        self.get(METRIC_NAME).unwrap_or("")
    }

    /// Approximate heap bytes, counting each string once per occurrence
    /// (an upper bound when strings are interned).
    pub fn heap_bytes(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<Label>()
            + self
                .0
                .iter()
                .map(|l| l.name.len() + l.value.len())
                .sum::<usize>()
    }

    /// Total bytes of names and values, as Prometheus' `Labels.Bytes` length.
    pub fn byte_len(&self) -> usize {
        self.0.iter().map(|l| l.name.len() + l.value.len()).sum()
    }
}

impl Ord for Labels {
    /// Prometheus' `labels.Compare`: pairwise by name then value, then by length.
    fn cmp(&self, other: &Self) -> Ordering {
        for (a, b) in self.0.iter().zip(other.0.iter()) {
            match a.name.cmp(&b.name) {
                Ordering::Equal => {}
                o => return o,
            }
            match a.value.cmp(&b.value) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        self.0.len().cmp(&other.0.len())
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for Labels {
    /// `{a="1", b="2"}`, Prometheus' `Labels.String()` format (Go `%q` quoting).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={}", l.name, go_quote(&l.value))?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Quotes a string the way Go's `strconv.Quote` does for printable UTF-8
/// (the form `promtool tsdb dump` prints label values in).
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
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The kind of a label matcher.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum MatchType {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchType {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchType::Equal => "=",
            MatchType::NotEqual => "!=",
            MatchType::Regex => "=~",
            MatchType::NotRegex => "!~",
        }
    }
}

/// Error for a matcher whose regular expression does not compile.
#[derive(Debug, thiserror::Error)]
#[error("invalid regular expression {pattern:?} in matcher: {source}")]
pub struct MatcherError {
    pub pattern: String,
    #[source]
    pub source: regex::Error,
}

/// What a regex matcher reduces to, so the common cases skip the regex engine.
#[derive(Clone, Debug)]
enum RegexKind {
    /// `.*`: matches everything, including "".
    Any,
    /// `.+`: matches every non-empty string.
    NonEmpty,
    /// A set of literal strings (`a`, `a|b|c`).
    Set(Vec<String>),
    /// `prefix.*`.
    Prefix(String),
    /// Anything else.
    General(regex::Regex),
}

/// A label matcher `name op value`.
#[derive(Clone)]
pub struct Matcher {
    pub name: String,
    pub kind: MatchType,
    pub value: String,
    re: Option<RegexKind>,
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}",
            self.name,
            self.kind.as_str(),
            go_quote(&self.value)
        )
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.kind == other.kind && self.value == other.value
    }
}

impl Matcher {
    pub fn new(
        kind: MatchType,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, MatcherError> {
        let value = value.into();
        let re = match kind {
            MatchType::Regex | MatchType::NotRegex => Some(compile_regex(&value)?),
            _ => None,
        };
        Ok(Matcher {
            name: name.into(),
            kind,
            value,
            re,
        })
    }

    /// `name="value"`, which cannot fail.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Matcher {
            name: name.into(),
            kind: MatchType::Equal,
            value: value.into(),
            re: None,
        }
    }

    /// Whether the matcher accepts `v`. A missing label is matched as "".
    pub fn matches(&self, v: &str) -> bool {
        match self.kind {
            MatchType::Equal => v == self.value,
            MatchType::NotEqual => v != self.value,
            MatchType::Regex => self.regex_matches(v),
            MatchType::NotRegex => !self.regex_matches(v),
        }
    }

    fn regex_matches(&self, v: &str) -> bool {
        match self.re.as_ref() {
            Some(RegexKind::Any) => true,
            Some(RegexKind::NonEmpty) => !v.is_empty(),
            Some(RegexKind::Set(s)) => s.iter().any(|x| x == v),
            Some(RegexKind::Prefix(p)) => v.starts_with(p.as_str()),
            Some(RegexKind::General(re)) => re.is_match(v),
            None => false,
        }
    }

    /// For a regex matcher that is a finite set of literals, the set.
    /// Lets the index look up postings directly instead of scanning values.
    pub fn set_matches(&self) -> Option<&[String]> {
        match (&self.kind, self.re.as_ref()) {
            (MatchType::Regex, Some(RegexKind::Set(s))) => Some(s),
            _ => None,
        }
    }

    /// For a regex matcher of the form `prefix.*`, the prefix.
    pub fn prefix(&self) -> Option<&str> {
        match self.re.as_ref() {
            Some(RegexKind::Prefix(p)) => Some(p),
            _ => None,
        }
    }

    /// Whether this matcher accepts the empty string (a missing label).
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }
}

/// Compiled regex matchers by pattern (128 patterns of up to 1 KiB,
/// without counted repetition: see [`compile_regex`]).
///
/// Why: the same few patterns (`code=~"5.."`, dashboard variables) are
/// compiled for every query, and on every store of a federated query. The
/// regex crate builds its automata eagerly (a full DFA for small patterns),
/// which made compilation about a seventh of the querier's CPU for
/// `sum(rate(apiserver_request_total{code=~"5.."}[5m])) / …` (`perf`,
/// `bench/query.sh` setup), and again in every TSDB answering it.
static REGEX_CACHE: std::sync::LazyLock<crate::memo::Memo<RegexKind>> =
    std::sync::LazyLock::new(|| crate::memo::Memo::new(128, 1024));

/// [`compile_uncached`] through [`REGEX_CACHE`]. A pattern with counted
/// repetition (`x{1000}`) is compiled every time and never kept: a few such
/// bytes can compile to megabytes, which the memo would hold on to.
fn compile_regex(pattern: &str) -> Result<RegexKind, MatcherError> {
    if pattern.contains('{') {
        return compile_uncached(pattern);
    }
    REGEX_CACHE.get_or_try(pattern, compile_uncached)
}

/// Compiles an anchored regex, recognising the shapes that need no engine.
fn compile_uncached(pattern: &str) -> Result<RegexKind, MatcherError> {
    // Always compile first so an invalid pattern is rejected even if a fast
    // path would have recognised it.
    let re = regex::Regex::new(&format!("^(?s:{pattern})$")).map_err(|source| MatcherError {
        pattern: pattern.to_string(),
        source,
    })?;
    Ok(match pattern {
        ".*" => RegexKind::Any,
        ".+" => RegexKind::NonEmpty,
        _ => {
            if let Some(set) = literal_alternation(pattern) {
                RegexKind::Set(set)
            } else if let Some(p) = pattern.strip_suffix(".*").filter(|p| is_literal(p)) {
                RegexKind::Prefix(p.to_string())
            } else {
                RegexKind::General(re)
            }
        }
    })
}

fn is_literal(s: &str) -> bool {
    !s.chars().any(|c| "\\.+*?()|[]{}^$".contains(c))
}

/// `a|b|c` made only of literals, with at most 256 alternatives.
fn literal_alternation(pattern: &str) -> Option<Vec<String>> {
    let parts: Vec<&str> = pattern.split('|').collect();
    if parts.len() > 256 || !parts.iter().all(|p| is_literal(p)) {
        return None;
    }
    let mut v: Vec<String> = parts.into_iter().map(str::to_string).collect();
    v.sort();
    v.dedup();
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_pairs_sorts_dedups_and_drops_empty() {
        let l = Labels::from_pairs([("b", "2"), ("a", "1"), ("c", ""), ("a", "3")]);
        assert_eq!(l.to_string(), r#"{a="3", b="2"}"#);
        assert_eq!(l.get("a"), Some("3"));
        assert_eq!(l.get("c"), None);
    }

    #[test]
    fn compare_is_prometheus_order() {
        let a = Labels::from_pairs([("a", "1")]);
        let b = Labels::from_pairs([("a", "1"), ("b", "1")]);
        let c = Labels::from_pairs([("a", "2")]);
        assert!(a < b && b < c);
    }

    #[test]
    fn regex_fast_paths_agree_with_engine() {
        let cases = [
            ("foo", &["foo", "fo", "foox", ""][..]),
            ("a|b|c", &["a", "b", "ab", ""]),
            ("api.*", &["api", "apiserver", "xapi", ""]),
            (".*", &["", "x"]),
            (".+", &["", "x"]),
            ("a.c", &["abc", "a\nc", "ac"]),
            ("(a|b)+", &["abab", "", "c"]),
        ];
        for (pat, inputs) in cases {
            let m = Matcher::new(MatchType::Regex, "x", pat).unwrap();
            let re = regex::Regex::new(&format!("^(?s:{pat})$")).unwrap();
            for i in inputs {
                assert_eq!(m.matches(i), re.is_match(i), "pattern {pat} on {i:?}");
                let n = Matcher::new(MatchType::NotRegex, "x", pat).unwrap();
                assert_eq!(n.matches(i), !re.is_match(i));
            }
        }
    }

    #[test]
    fn bad_regex_is_an_error() {
        let e = Matcher::new(MatchType::Regex, "x", "a(").unwrap_err();
        assert!(e.to_string().contains("a("));
    }

    #[test]
    fn go_quote_escapes() {
        assert_eq!(go_quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
    }
}
