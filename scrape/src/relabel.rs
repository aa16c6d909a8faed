//! Relabeling: Prometheus' `relabel_configs` and `metric_relabel_configs`.
//!
//! A [`RelabelConfig`] is one rule; [`process`] applies a list of rules in
//! order to a label set and returns the new set, or `None` when a rule drops
//! it. The same code relabels discovered targets (before scraping) and
//! scraped series (before appending).
//!
//! Semantics follow upstream `model/relabel`:
//!
//! * Defaults: `separator: ";"`, `regex: "(.*)"`, `replacement: "$1"`,
//!   `action: replace`.
//! * Regexes are fully anchored (`^(?s:re)$`) and use RE2 syntax, which the
//!   `regex` crate shares. `.` matches a newline, as in current Prometheus
//!   (2.42 anchored with `(?:` and did not; newer releases fixed that).
//! * The source value is the source labels' values joined with the
//!   separator; a missing label contributes the empty string.
//! * `replace`: no match → no change. Otherwise `target_label` and
//!   `replacement` are expanded with the match (`$1`, `${1}`, `$name`,
//!   `${name}`, `$$`); an expanded target that is not a valid label name
//!   leaves the set unchanged, and an empty expanded replacement deletes the
//!   target label. (Both are the post-2.42 fixes; 2.42 deleted the
//!   unexpanded target name in those cases.)
//! * `hashmod`: the last 8 bytes of the MD5 of the source value, read
//!   big-endian, modulo `modulus` — the same number Prometheus computes, so
//!   sharding configs behave identically.
//! * `labelmap`, `labeldrop`, `labelkeep` match label *names*; `labelmap`
//!   copies each matching label to the name the replacement expands to.
//! * `keepequal` / `dropequal` compare the source value with the value of
//!   `target_label`; `lowercase` / `uppercase` write the case-mapped source
//!   value to `target_label`.
//! * Setting a label to the empty string removes it.
//!
//! Label names are validated with the classic (pre-UTF-8) rule
//! `[a-zA-Z_][a-zA-Z0-9_]*`, which is what Prometheus 2.42 and our storage
//! accept.

use std::fmt;
use std::sync::Arc;

use md5::{Digest, Md5};
use strata_tsdb::labels::{Label, Labels};

/// What a rule does. Parsed case-insensitively, like Prometheus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

impl Action {
    pub const ALL: [Action; 11] = [
        Action::Replace,
        Action::Keep,
        Action::Drop,
        Action::KeepEqual,
        Action::DropEqual,
        Action::HashMod,
        Action::LabelMap,
        Action::LabelDrop,
        Action::LabelKeep,
        Action::Lowercase,
        Action::Uppercase,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }

    /// Parses an action name, ignoring ASCII case.
    pub fn parse(s: &str) -> Option<Action> {
        let lower = s.to_ascii_lowercase();
        Action::ALL.into_iter().find(|a| a.as_str() == lower)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An anchored regular expression that remembers the text it was written as
/// (what the config prints back).
#[derive(Clone)]
pub struct Regex {
    source: String,
    re: regex::Regex,
}

impl Regex {
    /// Compiles `s` anchored at both ends.
    pub fn new(s: &str) -> Result<Regex, regex::Error> {
        let re = regex::Regex::new(&format!("^(?s:{s})$"))?;
        Ok(Regex {
            source: s.to_string(),
            re,
        })
    }

    /// The expression as written in the config, without the anchors.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn is_match(&self, s: &str) -> bool {
        self.re.is_match(s)
    }

    pub(crate) fn inner(&self) -> &regex::Regex {
        &self.re
    }
}

impl Default for Regex {
    /// `(.*)`, Prometheus' default.
    fn default() -> Self {
        // The default pattern is a constant that always compiles.
        Regex::new(DEFAULT_REGEX).unwrap_or_else(|_| unreachable!("default regex compiles"))
    }
}

impl PartialEq for Regex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl fmt::Debug for Regex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Regex({:?})", self.source)
    }
}

pub const DEFAULT_SEPARATOR: &str = ";";
pub const DEFAULT_REGEX: &str = "(.*)";
pub const DEFAULT_REPLACEMENT: &str = "$1";

/// One relabeling rule, validated. Equality ignores `regex_set`: two rules
/// that relabel the same way are equal.
#[derive(Clone, Debug)]
pub struct RelabelConfig {
    pub source_labels: Vec<String>,
    pub separator: String,
    pub regex: Regex,
    /// Whether `regex` was written in the config. Prometheus rejects an
    /// explicit regex for `keepequal`/`dropequal` even when it equals the
    /// default, so the distinction matters for validation.
    pub regex_set: bool,
    pub modulus: u64,
    pub target_label: String,
    pub replacement: String,
    pub action: Action,
}

impl PartialEq for RelabelConfig {
    fn eq(&self, o: &Self) -> bool {
        self.source_labels == o.source_labels
            && self.separator == o.separator
            && self.regex == o.regex
            && self.modulus == o.modulus
            && self.target_label == o.target_label
            && self.replacement == o.replacement
            && self.action == o.action
    }
}

impl Default for RelabelConfig {
    fn default() -> Self {
        RelabelConfig {
            source_labels: Vec::new(),
            separator: DEFAULT_SEPARATOR.to_string(),
            regex: Regex::default(),
            regex_set: false,
            modulus: 0,
            target_label: String::new(),
            replacement: DEFAULT_REPLACEMENT.to_string(),
            action: Action::Replace,
        }
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`: a valid (classic) label name.
pub fn is_valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    match b.next() {
        Some(c) if c.is_ascii_alphabetic() || c == b'_' => {}
        _ => return false,
    }
    b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Whether `s` is a valid label name once `$var`/`${var}` references are
/// allowed in it (Prometheus' `relabelTarget` pattern).
fn is_valid_label_template(s: &str) -> bool {
    // Treat each reference as a letter, then check the classic name rule.
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let rest = &s[i + 1..];
            if let Some(inner) = rest.strip_prefix('{') {
                match inner.find('}') {
                    Some(end)
                        if end > 0
                            && inner[..end]
                                .bytes()
                                .all(|c| c.is_ascii_alphanumeric() || c == b'_') =>
                    {
                        out.push('a');
                        i += 2 + end + 1;
                        continue;
                    }
                    _ => return false,
                }
            }
            let n = rest
                .bytes()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
                .count();
            if n == 0 {
                return false;
            }
            out.push('a');
            i += 1 + n;
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    is_valid_label_name(&out)
}

impl RelabelConfig {
    /// Checks the rule the way Prometheus does when it loads a config. The
    /// error text matches Prometheus'.
    pub fn validate(&self) -> Result<(), String> {
        let a = self.action;
        if a == Action::HashMod && self.modulus == 0 {
            return Err("relabel configuration for hashmod requires non-zero modulus".into());
        }
        let needs_target = matches!(
            a,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        );
        if needs_target && self.target_label.is_empty() {
            return Err(format!(
                "relabel configuration for {a} action requires 'target_label' value"
            ));
        }
        let invalid_target = || {
            Err(format!(
                "{:?} is invalid 'target_label' for {a} action",
                self.target_label
            ))
        };
        if a == Action::Replace && !is_valid_label_template(&self.target_label) {
            return invalid_target();
        }
        let case_or_eq = matches!(
            a,
            Action::Lowercase | Action::Uppercase | Action::KeepEqual | Action::DropEqual
        );
        if case_or_eq && !is_valid_label_name(&self.target_label) {
            return invalid_target();
        }
        if case_or_eq && self.replacement != DEFAULT_REPLACEMENT {
            return Err(format!("'replacement' can not be set for {a} action"));
        }
        if a == Action::LabelMap && !is_valid_label_template(&self.replacement) {
            return Err(format!(
                "{:?} is invalid 'replacement' for {a} action",
                self.replacement
            ));
        }
        if a == Action::HashMod && !is_valid_label_name(&self.target_label) {
            return invalid_target();
        }
        if matches!(a, Action::KeepEqual | Action::DropEqual)
            && (self.regex_set
                || self.modulus != 0
                || self.separator != DEFAULT_SEPARATOR
                || self.replacement != DEFAULT_REPLACEMENT)
        {
            return Err(format!(
                "{a} action requires only 'source_labels' and `target_label`, and no other fields"
            ));
        }
        if matches!(a, Action::LabelDrop | Action::LabelKeep)
            && (!self.source_labels.is_empty()
                || !self.target_label.is_empty()
                || self.modulus != 0
                || self.separator != DEFAULT_SEPARATOR
                || self.replacement != DEFAULT_REPLACEMENT)
        {
            return Err(format!(
                "{a} action requires only 'regex', and no other fields"
            ));
        }
        Ok(())
    }
}

/// A mutable label set kept sorted by name, for applying rules.
#[derive(Clone, Debug, Default)]
pub(crate) struct Builder {
    labels: Vec<Label>,
}

impl Builder {
    pub(crate) fn new(ls: &Labels) -> Self {
        Builder {
            labels: ls.as_slice().to_vec(),
        }
    }

    pub(crate) fn get(&self, name: &str) -> &str {
        match self.labels.binary_search_by(|l| (*l.name).cmp(name)) {
            Ok(i) => &self.labels[i].value,
            Err(_) => "",
        }
    }

    /// Sets `name` to `value`; an empty value removes the label.
    pub(crate) fn set(&mut self, name: &str, value: &str) {
        if value.is_empty() {
            self.del(name);
            return;
        }
        match self.labels.binary_search_by(|l| (*l.name).cmp(name)) {
            Ok(i) => {
                if &*self.labels[i].value != value {
                    self.labels[i].value = Arc::from(value);
                }
            }
            Err(i) => self.labels.insert(i, Label::new(name, value)),
        }
    }

    pub(crate) fn set_arc(&mut self, name: &Arc<str>, value: &Arc<str>) {
        if value.is_empty() {
            self.del(name);
            return;
        }
        match self.labels.binary_search_by(|l| l.name.cmp(name)) {
            Ok(i) => self.labels[i].value = value.clone(),
            Err(i) => self
                .labels
                .insert(i, Label::new(name.clone(), value.clone())),
        }
    }

    pub(crate) fn del(&mut self, name: &str) {
        if let Ok(i) = self.labels.binary_search_by(|l| (*l.name).cmp(name)) {
            self.labels.remove(i);
        }
    }

    pub(crate) fn labels(self) -> Labels {
        Labels::from_sorted(self.labels)
    }

    pub(crate) fn as_slice(&self) -> &[Label] {
        &self.labels
    }
}

/// Applies `cfgs` in order. Returns `None` when a rule drops the set.
pub fn process(ls: &Labels, cfgs: &[RelabelConfig]) -> Option<Labels> {
    if cfgs.is_empty() {
        return Some(ls.clone());
    }
    let mut b = Builder::new(ls);
    for cfg in cfgs {
        if !apply(cfg, &mut b) {
            return None;
        }
    }
    Some(b.labels())
}

/// Applies one rule; `false` means drop.
pub(crate) fn apply(cfg: &RelabelConfig, b: &mut Builder) -> bool {
    let val = if cfg.source_labels.len() == 1 {
        b.get(&cfg.source_labels[0]).to_string()
    } else {
        let mut v = String::new();
        for (i, name) in cfg.source_labels.iter().enumerate() {
            if i > 0 {
                v.push_str(&cfg.separator);
            }
            v.push_str(b.get(name));
        }
        v
    };
    match cfg.action {
        Action::Drop => return !cfg.regex.is_match(&val),
        Action::Keep => return cfg.regex.is_match(&val),
        Action::DropEqual => return b.get(&cfg.target_label) != val,
        Action::KeepEqual => return b.get(&cfg.target_label) == val,
        Action::Replace => {
            let Some(caps) = cfg.regex.inner().captures(&val) else {
                return true;
            };
            let mut target = String::new();
            caps.expand(&cfg.target_label, &mut target);
            if !is_valid_label_name(&target) {
                return true;
            }
            let mut res = String::new();
            caps.expand(&cfg.replacement, &mut res);
            if res.is_empty() {
                b.del(&target);
            } else {
                b.set(&target, &res);
            }
        }
        Action::Lowercase => b.set(&cfg.target_label, &val.to_lowercase()),
        Action::Uppercase => b.set(&cfg.target_label, &val.to_uppercase()),
        Action::HashMod => {
            let m = hashmod(&val, cfg.modulus);
            b.set(&cfg.target_label, &m.to_string());
        }
        Action::LabelMap => {
            let snapshot: Vec<Label> = b.as_slice().to_vec();
            for l in &snapshot {
                if let Some(caps) = cfg.regex.inner().captures(&l.name) {
                    let mut name = String::new();
                    caps.expand(&cfg.replacement, &mut name);
                    b.set_arc(&Arc::from(name), &l.value);
                }
            }
        }
        Action::LabelDrop => {
            let names: Vec<Arc<str>> = b
                .as_slice()
                .iter()
                .filter(|l| cfg.regex.is_match(&l.name))
                .map(|l| l.name.clone())
                .collect();
            for n in names {
                b.del(&n);
            }
        }
        Action::LabelKeep => {
            let names: Vec<Arc<str>> = b
                .as_slice()
                .iter()
                .filter(|l| !cfg.regex.is_match(&l.name))
                .map(|l| l.name.clone())
                .collect();
            for n in names {
                b.del(&n);
            }
        }
    }
    true
}

/// Prometheus' hashmod: MD5, last 8 bytes big-endian, modulo `m`.
pub fn hashmod(val: &str, m: u64) -> u64 {
    if m == 0 {
        return 0;
    }
    let digest = Md5::digest(val.as_bytes());
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&digest[8..16]);
    u64::from_be_bytes(tail) % m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    fn rule(action: Action) -> RelabelConfig {
        RelabelConfig {
            action,
            ..Default::default()
        }
    }

    fn with(
        action: Action,
        src: &[&str],
        regex: Option<&str>,
        target: &str,
        replacement: Option<&str>,
    ) -> RelabelConfig {
        let mut c = rule(action);
        c.source_labels = src.iter().map(|s| s.to_string()).collect();
        if let Some(r) = regex {
            c.regex = Regex::new(r).unwrap();
            c.regex_set = true;
        }
        c.target_label = target.to_string();
        if let Some(r) = replacement {
            c.replacement = r.to_string();
        }
        c
    }

    struct Case {
        name: &'static str,
        input: Labels,
        rules: Vec<RelabelConfig>,
        /// `None`: dropped.
        want: Option<Labels>,
    }

    fn run(cases: Vec<Case>) {
        for c in cases {
            for r in &c.rules {
                r.validate()
                    .unwrap_or_else(|e| panic!("{}: invalid rule: {e}", c.name));
            }
            let got = process(&c.input, &c.rules);
            assert_eq!(got, c.want, "case {}", c.name);
        }
    }

    #[test]
    fn replace() {
        let abc = ls(&[("a", "foo"), ("b", "bar"), ("c", "baz")]);
        run(vec![
            Case {
                name: "expand ${1} twice",
                input: abc.clone(),
                rules: vec![with(
                    Action::Replace,
                    &["a"],
                    Some("f(.*)"),
                    "d",
                    Some("ch${1}-ch${1}"),
                )],
                want: Some(ls(&[
                    ("a", "foo"),
                    ("b", "bar"),
                    ("c", "baz"),
                    ("d", "choo-choo"),
                ])),
            },
            Case {
                name: "chained, separator, overwrite",
                input: abc.clone(),
                rules: vec![
                    with(
                        Action::Replace,
                        &["a", "b"],
                        Some("f(.*);(.*)r"),
                        "a",
                        Some("b${1}${2}m"),
                    ),
                    with(
                        Action::Replace,
                        &["c", "a"],
                        Some("(b).*b(.*)ba(.*)"),
                        "d",
                        Some("$1$2$2$3"),
                    ),
                ],
                want: Some(ls(&[
                    ("a", "boobam"),
                    ("b", "bar"),
                    ("c", "baz"),
                    ("d", "boooom"),
                ])),
            },
            Case {
                name: "regex is anchored",
                input: ls(&[("a", "abc")]),
                rules: vec![with(Action::Replace, &["a"], Some(".*(b).*"), "d", None)],
                want: Some(ls(&[("a", "abc"), ("d", "b")])),
            },
            Case {
                name: "no match, no change",
                input: ls(&[("a", "boo")]),
                rules: vec![with(Action::Replace, &["a"], Some("f"), "b", Some("bar"))],
                want: Some(ls(&[("a", "boo")])),
            },
            Case {
                name: "empty replacement deletes expanded target",
                input: ls(&[("a", "foo"), ("f", "baz")]),
                rules: vec![with(
                    Action::Replace,
                    &["a"],
                    Some("(f).*"),
                    "$1",
                    Some("$2"),
                )],
                want: Some(ls(&[("a", "foo")])),
            },
            Case {
                name: "target from capture",
                input: ls(&[("a", "some-name-value")]),
                rules: vec![with(
                    Action::Replace,
                    &["a"],
                    Some("some-([^-]+)-([^,]+)"),
                    "${1}",
                    Some("${2}"),
                )],
                want: Some(ls(&[("a", "some-name-value"), ("name", "value")])),
            },
            Case {
                name: "missing group in replacement: nothing to set",
                input: ls(&[("a", "some-name-value")]),
                rules: vec![with(
                    Action::Replace,
                    &["a"],
                    Some("some-([^-]+)-([^,]+)"),
                    "${1}",
                    Some("${3}"),
                )],
                want: Some(ls(&[("a", "some-name-value")])),
            },
            Case {
                name: "invalid expanded target: unchanged",
                input: ls(&[("a", "some-name-0")]),
                rules: vec![
                    with(
                        Action::Replace,
                        &["a"],
                        Some("some-([^-]+)-([^,]+)"),
                        "${3}",
                        Some("${1}"),
                    ),
                    with(
                        Action::Replace,
                        &["a"],
                        Some("some-([^-]+)(-[^,]+)"),
                        "${2}",
                        Some("${1}"),
                    ),
                ],
                want: Some(ls(&[("a", "some-name-0")])),
            },
            Case {
                name: "missing source label is empty; default regex and replacement",
                input: ls(&[("a", "x")]),
                rules: vec![with(Action::Replace, &["zzz"], None, "b", Some("const"))],
                want: Some(ls(&[("a", "x"), ("b", "const")])),
            },
            Case {
                name: "default replace copies",
                input: ls(&[("a", "x")]),
                rules: vec![with(Action::Replace, &["a"], None, "b", None)],
                want: Some(ls(&[("a", "x"), ("b", "x")])),
            },
            Case {
                name: "dot matches newline",
                input: ls(&[("a", "line1\nline2")]),
                rules: vec![with(
                    Action::Replace,
                    &["a"],
                    Some("line1.*line2"),
                    "d",
                    Some("match${1}"),
                )],
                want: Some(ls(&[("a", "line1\nline2"), ("d", "match")])),
            },
            Case {
                name: "named groups, $name and ${name}",
                input: ls(&[("a", "line1\nline2")]),
                rules: vec![
                    with(
                        Action::Replace,
                        &["a"],
                        Some("(line1).*(?P<second>line2)"),
                        "label1_${1}",
                        Some("val_${second}"),
                    ),
                    with(
                        Action::Replace,
                        &["a"],
                        Some("(line1).*(?P<second>line2)"),
                        "label2_$1",
                        Some("val_$second"),
                    ),
                ],
                want: Some(ls(&[
                    ("a", "line1\nline2"),
                    ("label1_line1", "val_line2"),
                    ("label2_line1", "val_line2"),
                ])),
            },
            Case {
                name: "$$ is a literal dollar",
                input: ls(&[("a", "x")]),
                rules: vec![with(Action::Replace, &["a"], None, "b", Some("$$${1}"))],
                want: Some(ls(&[("a", "x"), ("b", "$x")])),
            },
            Case {
                name: "sd tags real-life",
                input: ls(&[("__meta_sd_tags", "path:/secret,job:some-job,label:foo=bar")]),
                rules: vec![
                    with(
                        Action::Replace,
                        &["__meta_sd_tags"],
                        Some("(?:.+,|^)path:(/[^,]+).*"),
                        "__metrics_path__",
                        Some("${1}"),
                    ),
                    with(
                        Action::Replace,
                        &["__meta_sd_tags"],
                        Some("(?:.+,|^)job:([^,]+).*"),
                        "job",
                        Some("${1}"),
                    ),
                    with(
                        Action::Replace,
                        &["__meta_sd_tags"],
                        Some("(?:.+,|^)label:([^=]+)=([^,]+).*"),
                        "${1}",
                        Some("${2}"),
                    ),
                ],
                want: Some(ls(&[
                    ("__meta_sd_tags", "path:/secret,job:some-job,label:foo=bar"),
                    ("__metrics_path__", "/secret"),
                    ("foo", "bar"),
                    ("job", "some-job"),
                ])),
            },
        ]);
    }

    #[test]
    fn keep_drop() {
        let foo = ls(&[("a", "foo")]);
        run(vec![
            Case {
                name: "drop matches",
                input: ls(&[("a", "foo"), ("b", "bar")]),
                rules: vec![with(Action::Drop, &["a"], Some(".*o.*"), "", None)],
                want: None,
            },
            Case {
                name: "drop stops later rules",
                input: foo.clone(),
                rules: vec![
                    with(Action::Drop, &["a"], Some(".*o.*"), "", None),
                    with(Action::Replace, &["a"], Some("f(.*)"), "d", Some("x")),
                ],
                want: None,
            },
            Case {
                name: "drop no match",
                input: foo.clone(),
                rules: vec![with(Action::Drop, &["a"], Some("no-match"), "", None)],
                want: Some(foo.clone()),
            },
            Case {
                name: "drop alternation is anchored",
                input: foo.clone(),
                rules: vec![with(Action::Drop, &["a"], Some("f|o"), "", None)],
                want: Some(foo.clone()),
            },
            Case {
                name: "keep no match",
                input: foo.clone(),
                rules: vec![with(Action::Keep, &["a"], Some("no-match"), "", None)],
                want: None,
            },
            Case {
                name: "keep match",
                input: foo.clone(),
                rules: vec![with(Action::Keep, &["a"], Some("f.*"), "", None)],
                want: Some(foo.clone()),
            },
            Case {
                name: "keep on missing label matches empty",
                input: foo.clone(),
                rules: vec![with(Action::Keep, &["nope"], Some(""), "", None)],
                want: Some(foo.clone()),
            },
        ]);
    }

    #[test]
    fn keepequal_dropequal() {
        let input = ls(&[
            ("__tmp_port", "1234"),
            ("__port1", "1234"),
            ("__port2", "5678"),
        ]);
        run(vec![
            Case {
                name: "keepequal equal",
                input: input.clone(),
                rules: vec![with(
                    Action::KeepEqual,
                    &["__tmp_port"],
                    None,
                    "__port1",
                    None,
                )],
                want: Some(input.clone()),
            },
            Case {
                name: "keepequal differs",
                input: input.clone(),
                rules: vec![with(
                    Action::KeepEqual,
                    &["__tmp_port"],
                    None,
                    "__port2",
                    None,
                )],
                want: None,
            },
            Case {
                name: "dropequal equal",
                input: input.clone(),
                rules: vec![with(
                    Action::DropEqual,
                    &["__tmp_port"],
                    None,
                    "__port1",
                    None,
                )],
                want: None,
            },
            Case {
                name: "dropequal differs",
                input: input.clone(),
                rules: vec![with(
                    Action::DropEqual,
                    &["__tmp_port"],
                    None,
                    "__port2",
                    None,
                )],
                want: Some(input.clone()),
            },
        ]);
    }

    #[test]
    fn hashmod_matches_prometheus() {
        let mut r = with(Action::HashMod, &["c"], None, "d", None);
        r.modulus = 1000;
        let mut r2 = with(Action::HashMod, &["a"], None, "b", None);
        r2.modulus = 1000;
        run(vec![
            Case {
                name: "hashmod baz",
                input: ls(&[("a", "foo"), ("b", "bar"), ("c", "baz")]),
                rules: vec![r],
                want: Some(ls(&[
                    ("a", "foo"),
                    ("b", "bar"),
                    ("c", "baz"),
                    ("d", "976"),
                ])),
            },
            Case {
                name: "hashmod with newline",
                input: ls(&[("a", "foo\nbar")]),
                rules: vec![r2],
                want: Some(ls(&[("a", "foo\nbar"), ("b", "734")])),
            },
        ]);
    }

    #[test]
    fn labelmap_labeldrop_labelkeep() {
        let input = ls(&[("a", "foo"), ("b1", "bar"), ("b2", "baz")]);
        let mut map = rule(Action::LabelMap);
        map.regex = Regex::new("(b.*)").unwrap();
        map.replacement = "bar_${1}".into();
        let mut meta = rule(Action::LabelMap);
        meta.regex = Regex::new("__meta_(my.*)").unwrap();
        meta.replacement = "${1}".into();
        let mut keep = rule(Action::LabelKeep);
        keep.regex = Regex::new("(b.*)").unwrap();
        let mut drop = rule(Action::LabelDrop);
        drop.regex = Regex::new("(b.*)").unwrap();
        let mut drop_exact = rule(Action::LabelDrop);
        drop_exact.regex = Regex::new("^__meta_kubernetes_pod_container_port_name$").unwrap();
        let mut restore = with(
            Action::Replace,
            &["__meta_kubernetes_pod_annotation_XXX_metrics_port"],
            Some("(.+)"),
            "__meta_kubernetes_pod_container_port_name",
            Some("metrics"),
        );
        restore.separator = ";".into();
        run(vec![
            Case {
                name: "labelmap",
                input: input.clone(),
                rules: vec![map],
                want: Some(ls(&[
                    ("a", "foo"),
                    ("b1", "bar"),
                    ("b2", "baz"),
                    ("bar_b1", "bar"),
                    ("bar_b2", "baz"),
                ])),
            },
            Case {
                name: "labelmap meta",
                input: ls(&[
                    ("a", "foo"),
                    ("__meta_my_bar", "aaa"),
                    ("__meta_my_baz", "bbb"),
                    ("__meta_other", "ccc"),
                ]),
                rules: vec![meta],
                want: Some(ls(&[
                    ("a", "foo"),
                    ("__meta_my_bar", "aaa"),
                    ("__meta_my_baz", "bbb"),
                    ("__meta_other", "ccc"),
                    ("my_bar", "aaa"),
                    ("my_baz", "bbb"),
                ])),
            },
            Case {
                name: "labelkeep",
                input: input.clone(),
                rules: vec![keep],
                want: Some(ls(&[("b1", "bar"), ("b2", "baz")])),
            },
            Case {
                name: "labeldrop",
                input: input.clone(),
                rules: vec![drop],
                want: Some(ls(&[("a", "foo")])),
            },
            Case {
                name: "labeldrop then re-add then keep (issue 12283)",
                input: ls(&[
                    ("__meta_kubernetes_pod_container_port_name", "foo"),
                    ("__meta_kubernetes_pod_annotation_XXX_metrics_port", "9091"),
                ]),
                rules: vec![
                    drop_exact,
                    restore,
                    with(
                        Action::Keep,
                        &["__meta_kubernetes_pod_container_port_name"],
                        Some("^metrics$"),
                        "",
                        None,
                    ),
                ],
                want: Some(ls(&[
                    ("__meta_kubernetes_pod_annotation_XXX_metrics_port", "9091"),
                    ("__meta_kubernetes_pod_container_port_name", "metrics"),
                ])),
            },
        ]);
    }

    #[test]
    fn lowercase_uppercase() {
        run(vec![
            Case {
                name: "both",
                input: ls(&[("foo", "bAr123Foo")]),
                rules: vec![
                    with(Action::Uppercase, &["foo"], None, "foo_uppercase", None),
                    with(Action::Lowercase, &["foo"], None, "foo_lowercase", None),
                ],
                want: Some(ls(&[
                    ("foo", "bAr123Foo"),
                    ("foo_lowercase", "bar123foo"),
                    ("foo_uppercase", "BAR123FOO"),
                ])),
            },
            Case {
                name: "empty source removes target",
                input: ls(&[("t", "x")]),
                rules: vec![with(Action::Lowercase, &["missing"], None, "t", None)],
                want: Some(Labels::empty()),
            },
        ]);
    }

    #[test]
    fn validation() {
        let bad = |c: RelabelConfig, want: &str| {
            let e = c.validate().unwrap_err();
            assert!(e.contains(want), "{e:?} should contain {want:?}");
        };
        bad(
            with(Action::HashMod, &["a"], None, "b", None),
            "non-zero modulus",
        );
        bad(
            with(Action::Replace, &["a"], None, "", None),
            "requires 'target_label'",
        );
        bad(
            with(Action::Replace, &["a"], None, "1abc", None),
            "invalid 'target_label'",
        );
        bad(
            with(Action::Replace, &["a"], None, "a-b", None),
            "invalid 'target_label'",
        );
        bad(
            with(Action::Lowercase, &["a"], None, "${1}", None),
            "invalid 'target_label'",
        );
        bad(
            with(Action::Uppercase, &["a"], None, "b", Some("x")),
            "'replacement' can not be set",
        );
        bad(
            with(Action::KeepEqual, &["a"], Some("(.*)"), "b", None),
            "requires only 'source_labels'",
        );
        bad(
            with(Action::LabelDrop, &["a"], Some("x"), "", None),
            "requires only 'regex'",
        );
        let mut lm = rule(Action::LabelMap);
        lm.replacement = "not-valid".into();
        bad(lm, "invalid 'replacement'");
        // Templates are fine for replace targets.
        with(Action::Replace, &["a"], None, "x_${1}_$2y", None)
            .validate()
            .unwrap();
        assert!(Action::parse("LabelMap") == Some(Action::LabelMap));
        assert!(Action::parse("nope").is_none());
    }
}
