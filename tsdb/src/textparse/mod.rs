//! Streaming parsers for the two text exposition formats: Prometheus text
//! 0.0.4 (`text/plain; version=0.0.4`) and OpenMetrics 1.0
//! (`application/openmetrics-text`).
//!
//! Two callers use this module. One is the backfill command
//! (`strata tools tsdb create-blocks-from openmetrics`, like promtool's). The
//! other is the scraper. Both need to accept and reject exactly what
//! Prometheus 2.42 does (`model/textparse`), so the grammar below follows
//! 2.42's lexers, quirks included, rather than a cleaned-up reading of the
//! specs. A target that Prometheus scrapes must scrape here too, and a file
//! that promtool refuses to backfill must fail here too. The few deliberate
//! deviations are listed at the end.
//!
//! # Grammar (per line; `blank = [ \t]`)
//!
//! Prometheus text 0.0.4, where `blank*` may appear between any two tokens:
//!
//! ```text
//! line     = blank* ( sample | "#" comment | "" ) ( "\n" | end of input )
//! sample   = metric [ "{" labels "}" ] value [ timestamp ]
//! labels   = { lname "=" lvalue [","] }          (commas optional, trailing allowed)
//! comment  = blank+ ("HELP" | "TYPE") blank+ metric text   (text: rest of line)
//!          | anything else up to the line break  (a plain comment, skipped)
//! value    = [^{ \t\n]+ holding a Go float       (see below)
//! timestamp= [0-9]+ milliseconds, i64
//! ```
//!
//! OpenMetrics 1.0 has no optional whitespace: a separator is exactly one space.
//!
//! ```text
//! exposition = { metadata | sample } "# EOF" [ "\n" ]   (nothing may follow)
//! metadata = "# " ("HELP" | "TYPE" | "UNIT") " " metric " " text "\n"
//! sample   = metric [ "{" [ label { "," label } ] "}" ] " " value
//!            [ " " timestamp ] [ " # {" labels "} " value [ " " timestamp ] ] "\n"
//! timestamp= Go float, seconds (NaN and ±Inf rejected)
//! ```
//!
//! Both formats share the token shapes:
//!
//! * `metric = [a-zA-Z_:][a-zA-Z0-9_:]*`, `lname = [a-zA-Z_][a-zA-Z0-9_]*`.
//! * `lvalue = "(\\.|[^\\"])*"`. The value must be valid UTF-8. `\\`, `\"` and
//!   `\n` are unescaped. Any other escape is kept verbatim, backslash and
//!   all. A raw line break is allowed inside the quotes in Prometheus text,
//!   but not in OpenMetrics.
//! * Floats are what Go's `strconv.ParseFloat` accepts minus `p`, `P` and
//!   `_`:
//!   * decimals with optional sign, fraction and exponent (`1`, `.5`, `1.`,
//!     `-2e-3`);
//!   * `Inf`/`Infinity` with optional sign, and unsigned `NaN`, in any case.
//!
//!   Hex floats need a `p` exponent, so they are rejected. Overflow (`1e400`)
//!   is an error; underflow rounds to zero. Every NaN is returned as
//!   Prometheus's canonical NaN ([`NORMAL_NAN`]), so chunks come out
//!   bit-identical.
//!
//! # Differences between the formats
//!
//! | | Prometheus text | OpenMetrics |
//! |---|---|---|
//! | whitespace | any run of spaces/tabs; blank lines, leading indent | exactly one space; no blank lines |
//! | comments | `# anything` is skipped | only `# HELP`/`TYPE`/`UNIT`/`EOF` |
//! | end | end of input | `# EOF` required, nothing after it |
//! | timestamps | integer milliseconds | float seconds → `trunc(s * 1000)` ms, as 2.42's `int64(ts*1000)` |
//! | types | `counter gauge histogram summary untyped` | `counter gauge histogram gaugehistogram summary info stateset unknown` |
//! | HELP escapes | `\\`, `\n` | `\\`, `\n`, `\"` |
//! | labels | commas optional, trailing comma ok | commas required, no trailing comma |
//! | exemplars | no | ` # {…} value [ts]`, only on `_total`/`_bucket` series |
//!
//! OpenMetrics `_created` series are returned as ordinary samples. Prometheus
//! 2.42 has no created-timestamp support, so promtool backfills them as
//! ordinary series too. CRLF line endings fail in both formats, as in
//! Prometheus: the `\r` ends up inside a value or timestamp. The error says so.
//!
//! # Main types
//!
//! * [`Parser`] is an [`Iterator`] of `Result<`[`Entry`]`, `[`ParseError`]`>`
//!   over a borrowed byte slice. Family names, units and unescaped help text
//!   borrow from the input. Only a sample's [`Labels`] allocates. The parser
//!   reuses the `Arc<str>` of the previous sample's labels when names or
//!   values repeat, which they usually do line after line in a scrape body.
//!   Exemplars are validated but only materialised on request
//!   ([`Parser::exemplar`]).
//! * An error is terminal: the iterator yields it once and then `None`.
//!   Prometheus also stops at the first error. Resynchronising is guesswork
//!   anyway, because Prometheus text allows line breaks inside label values.
//!   [`ParseError`] carries a 1-based line, a 1-based byte column, the byte
//!   offset and a reason worded like Prometheus's.
//! * Work is linear in the input. Every call to `next` either consumes input
//!   or ends the iteration. Line and column are computed only when an error
//!   is built.
//!
//! # Label sets
//!
//! Labels are returned sorted, with `__name__` holding the metric name.
//! Labels with an empty value are dropped. Prometheus's head drops them too
//! (`WithoutEmpty`), so `{a=""}` means "no label a". A name that occurs
//! twice among the remaining labels is an error (`label name "a" is not
//! unique`). This includes `__name__` repeated inside the braces. Prometheus
//! reports this one at append time rather than at parse time, but the
//! sample is rejected either way.
//!
//! # Deliberate deviations from 2.42
//!
//! * 2.42's Prometheus-text lexer treats a NUL byte at the start of a line
//!   (and inside a `#comment` without a space) as end of input, and silently
//!   drops the rest. Here a NUL byte is ordinary data: at the start of a line
//!   it is an error, and in a comment it is skipped with the comment.
//! * An OpenMetrics timestamp whose millisecond value does not fit in an
//!   `i64` is an error. Go's conversion gives an undefined value, and
//!   promtool never finishes on such input.
//! * Exemplar label values are unescaped like sample label values. 2.42
//!   leaves them raw.

mod number;
mod openmetrics;
mod promtext;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use crate::labels::{Label, Labels, METRIC_NAME};

pub use number::NORMAL_NAN;

/// Which exposition format the input is in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Format {
    /// Prometheus text format, `text/plain; version=0.0.4`.
    PromText,
    /// OpenMetrics 1.0 text, `application/openmetrics-text`.
    OpenMetrics,
}

impl Format {
    /// The media type with parameters, for a scrape `Accept` header or a
    /// response `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::PromText => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Picks the parser for a `Content-Type` header value.
///
/// Like Prometheus's `textparse.New`, anything other than
/// `application/openmetrics-text` falls back to the Prometheus text format.
/// That includes an empty or malformed header. Parameters such as `version`
/// are ignored, and the media type is matched case-insensitively (RFC 2045).
/// Protobuf exposition is not supported and also maps to `PromText`.
pub fn format_from_content_type(ct: &str) -> Format {
    let media = ct.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/openmetrics-text") {
        Format::OpenMetrics
    } else {
        Format::PromText
    }
}

/// A metric family's type, as declared by a `# TYPE` line.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    /// OpenMetrics `unknown`, and Prometheus text `untyped`.
    Unknown,
}

impl MetricType {
    /// The name Prometheus uses for this type (its `MetricType` string), as
    /// the metadata API reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parsed entry. Plain comments and blank lines are skipped.
#[derive(Clone, PartialEq, Debug)]
pub enum Entry<'a> {
    /// `# TYPE family type`.
    Type { family: &'a str, typ: MetricType },
    /// `# HELP family text`. The text is unescaped, and borrowed unless it
    /// contained escapes.
    Help { family: &'a str, help: Cow<'a, str> },
    /// `# UNIT family unit` (OpenMetrics only). The unit is empty or a
    /// `_`-separated suffix of the family name.
    Unit { family: &'a str, unit: &'a str },
    /// A float sample. `labels` includes `__name__`. `t_ms` is in
    /// milliseconds for both formats.
    Sample {
        labels: Labels,
        t_ms: Option<i64>,
        value: f64,
    },
    /// OpenMetrics `# EOF`. It is always the last entry.
    Eof,
}

/// An exemplar attached to the most recent OpenMetrics sample.
#[derive(Clone, PartialEq, Debug)]
pub struct Exemplar {
    pub labels: Labels,
    pub value: f64,
    /// Milliseconds, converted from seconds like sample timestamps.
    pub t_ms: Option<i64>,
}

/// A syntax error, with its position in the input.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("line {line}, column {column}: {reason}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, counted in bytes. Input need not be valid UTF-8,
    /// so characters cannot always be counted.
    pub column: usize,
    /// Byte offset into the input.
    pub offset: usize,
    pub reason: String,
}

/// A label as scanned from the input, before unescaping and sorting.
#[derive(Clone, Copy)]
struct RawLabel<'a> {
    name: &'a str,
    /// The text between the quotes, escapes intact, already UTF-8 checked.
    value: &'a str,
    /// Offset of the name, to point a duplicate-name error at it.
    at: usize,
}

/// The exemplar of the current sample, kept raw until asked for.
struct RawExemplar {
    value: f64,
    t_ms: Option<i64>,
}

/// A streaming parser over one exposition body. See the module docs.
///
/// Use it as an [`Iterator`]: `next()` yields entries in input order.
/// After the end of the input (Prometheus text), `# EOF` (OpenMetrics) or
/// the first error, it yields `None`.
///
/// ```
/// use strata_tsdb::textparse::{Entry, Format, Parser};
///
/// let body = b"# TYPE up gauge\nup{job=\"node\"} 1 1700000000.5\n# EOF\n";
/// let mut samples = 0;
/// for entry in Parser::new(body, Format::OpenMetrics) {
///     if let Entry::Sample { labels, t_ms, value } = entry.unwrap() {
///         assert_eq!(labels.get("job"), Some("node"));
///         assert_eq!((t_ms, value), (Some(1_700_000_000_500), 1.0));
///         samples += 1;
///     }
/// }
/// assert_eq!(samples, 1);
/// ```
pub struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    format: Format,
    done: bool,
    /// Labels of the line being parsed (including `__name__`). Reused
    /// across lines so that scanning does not allocate.
    raw: Vec<RawLabel<'a>>,
    /// Exemplar labels of the current sample, reused likewise.
    exemplar_raw: Vec<RawLabel<'a>>,
    exemplar: Option<RawExemplar>,
    /// The previous sample's labels, whose `Arc<str>`s are shared with the
    /// next sample when names or values repeat.
    prev: Vec<Label>,
    /// The shared `"__name__"` string.
    name_label: Arc<str>,
    /// Scratch space for unescaping label values.
    unescaped: String,
}

impl<'a> Parser<'a> {
    pub fn new(input: &'a [u8], format: Format) -> Self {
        Parser {
            input,
            pos: 0,
            format,
            done: false,
            raw: Vec::new(),
            exemplar_raw: Vec::new(),
            exemplar: None,
            prev: Vec::new(),
            name_label: Arc::from(METRIC_NAME),
            unescaped: String::new(),
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The exemplar of the sample last returned, if it had one (OpenMetrics
    /// only). Builds its label set on each call. 2.42 does not limit the
    /// exemplar label length, and neither does this parser.
    pub fn exemplar(&self) -> Option<Exemplar> {
        let e = self.exemplar.as_ref()?;
        let mut buf = String::new();
        let labels = Labels::from_pairs(self.exemplar_raw.iter().map(|l| {
            let v: Arc<str> = if l.value.contains('\\') {
                unescape(l.value, LABEL_ESCAPES, &mut buf);
                Arc::from(buf.as_str())
            } else {
                Arc::from(l.value)
            };
            (l.name, v)
        }));
        Some(Exemplar {
            labels,
            value: e.value,
            t_ms: e.t_ms,
        })
    }

    // ---- Cursor helpers shared by both formats. ----

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn rest(&self) -> &'a [u8] {
        &self.input[self.pos..]
    }

    /// Advances over `[ \t]*`.
    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// Advances to just after the next line break (or to the end) and
    /// returns the line's remaining text, without the line break.
    fn take_line(&mut self) -> &'a [u8] {
        let rest = self.rest();
        match rest.iter().position(|&b| b == b'\n') {
            Some(n) => {
                self.pos += n + 1;
                &rest[..n]
            }
            None => {
                self.pos = self.input.len();
                rest
            }
        }
    }

    /// Scans `[a-zA-Z_:][a-zA-Z0-9_:]*` at the cursor.
    fn scan_metric_name(&mut self) -> Option<&'a str> {
        self.scan_name(is_metric_start, is_metric_char)
    }

    /// Scans `[a-zA-Z_][a-zA-Z0-9_]*` at the cursor.
    fn scan_label_name(&mut self) -> Option<&'a str> {
        self.scan_name(is_label_start, is_label_char)
    }

    fn scan_name(&mut self, first: fn(u8) -> bool, rest: fn(u8) -> bool) -> Option<&'a str> {
        let start = self.pos;
        if !self.peek().is_some_and(first) {
            return None;
        }
        self.pos += 1;
        while self.peek().is_some_and(rest) {
            self.pos += 1;
        }
        // Names are ASCII by construction, so this cannot fail.
        std::str::from_utf8(&self.input[start..self.pos]).ok()
    }

    /// Scans a quoted label value at the cursor, which must be on the
    /// opening quote. Returns the text between the quotes, escapes intact,
    /// checked to be UTF-8.
    fn scan_label_value(&mut self, allow_line_break: bool) -> Result<&'a str, ParseError> {
        let open = self.pos;
        self.pos += 1;
        loop {
            let rest = self.rest();
            let Some(n) = rest.iter().position(|&b| matches!(b, b'"' | b'\\' | b'\n')) else {
                return Err(self.error(open, "unterminated label value".into()));
            };
            self.pos += n;
            match rest[n] {
                b'"' => break,
                b'\\' => match self.input.get(self.pos + 1) {
                    None => return Err(self.error(open, "unterminated label value".into())),
                    Some(b'\n') => {
                        return Err(self.error(
                            self.pos,
                            "backslash before line break in label value".into(),
                        ))
                    }
                    Some(_) => self.pos += 2,
                },
                _ if allow_line_break => self.pos += 1,
                _ => {
                    return Err(self.error(
                        self.pos,
                        "line break in label value (write it as \\n)".into(),
                    ))
                }
            }
        }
        let raw = &self.input[open + 1..self.pos];
        self.pos += 1; // closing quote
        std::str::from_utf8(raw).map_err(|e| {
            self.error(
                open + 1 + e.valid_up_to(),
                "invalid UTF-8 label value".into(),
            )
        })
    }

    /// Turns the labels scanned for the current line into a canonical
    /// [`Labels`]: drops empty values, sorts, rejects repeated names,
    /// unescapes, and shares `Arc`s with the previous sample.
    fn finish_labels(&mut self) -> Result<Labels, ParseError> {
        self.raw.retain(|l| !l.value.is_empty());
        self.raw.sort_unstable_by(|a, b| a.name.cmp(b.name));
        if let Some(w) = self.raw.windows(2).find(|w| w[0].name == w[1].name) {
            let (name, at) = (w[0].name, w[0].at.max(w[1].at));
            return Err(self.error(at, format!("label name \"{name}\" is not unique")));
        }
        let mut out = Vec::with_capacity(self.raw.len());
        for (i, r) in self.raw.iter().enumerate() {
            let prev = self.prev.get(i);
            let name = match prev {
                Some(p) if *p.name == *r.name => p.name.clone(),
                _ if r.name == METRIC_NAME => self.name_label.clone(),
                _ => Arc::from(r.name),
            };
            let value_str = if r.value.contains('\\') {
                unescape(r.value, LABEL_ESCAPES, &mut self.unescaped);
                self.unescaped.as_str()
            } else {
                r.value
            };
            let value = match prev {
                Some(p) if *p.value == *value_str => p.value.clone(),
                _ => Arc::from(value_str),
            };
            out.push(Label { name, value });
        }
        // `clone_from` reuses `prev`'s buffer, so this costs reference
        // count increments, not an allocation.
        self.prev.clone_from(&out);
        Ok(Labels::from_sorted(out))
    }

    // ---- Errors. ----

    /// Builds an error at byte offset `at`, computing line and column.
    /// That costs a scan of the input, and happens at most once per parse.
    fn error(&self, at: usize, reason: String) -> ParseError {
        let at = at.min(self.input.len());
        let before = &self.input[..at];
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        ParseError {
            line,
            column: at - line_start + 1,
            offset: at,
            reason,
        }
    }

    /// An error "`expected`, got <what is at `at`>".
    fn expected(&self, at: usize, expected: &str) -> ParseError {
        let got = describe(&self.input[at.min(self.input.len())..]);
        self.error(at, format!("{expected}, got {got}"))
    }

    /// An "expected …" error at the cursor. It adds a hint when the cursor
    /// is on the `\r` of a CRLF line ending.
    fn eol_error(&self, expected: &str) -> ParseError {
        let mut e = self.expected(self.pos, expected);
        if self.rest().starts_with(b"\r") {
            e.reason.push_str(CRLF_HINT);
        }
        e
    }

    /// The error for a TYPE line whose type is not one of the format's.
    fn type_error(&self, at: usize, text: &[u8]) -> ParseError {
        let shown = String::from_utf8_lossy(text);
        let mut reason = format!("invalid metric type {shown:?}");
        if text.ends_with(b"\r") {
            reason.push_str(CRLF_HINT);
        }
        self.error(at, reason)
    }

    /// The error for a value or timestamp that did not parse as a float.
    fn float_error(&self, at: usize, token: &[u8], e: number::FloatError) -> ParseError {
        use number::FloatError;
        let shown = String::from_utf8_lossy(token);
        let mut reason = match e {
            FloatError::Syntax => format!("invalid float {shown:?}"),
            FloatError::Unsupported => format!("unsupported character in float {shown:?}"),
            FloatError::OutOfRange => format!("float {shown:?} is out of range"),
        };
        if token.ends_with(b"\r") {
            reason.push_str(CRLF_HINT);
        }
        self.error(at, reason)
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Entry<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        self.exemplar = None;
        let r = match self.format {
            Format::PromText => self.next_promtext(),
            Format::OpenMetrics => self.next_openmetrics(),
        };
        match r {
            Ok(Some(e)) => {
                self.done = matches!(e, Entry::Eof);
                Some(Ok(e))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                self.exemplar = None;
                Some(Err(e))
            }
        }
    }
}

impl std::iter::FusedIterator for Parser<'_> {}

fn is_metric_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':'
}

fn is_metric_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

fn is_label_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_label_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Appended to errors caused by a `\r` before a line break. 2.42 rejects
/// CRLF too, but its message does not say why.
const CRLF_HINT: &str = " (CRLF line endings are not supported)";

/// How an error message names what was found at a position.
fn describe(rest: &[u8]) -> String {
    match rest.first() {
        None => "end of input".into(),
        Some(b'\n') => "line break".into(),
        Some(&b) if b.is_ascii() => format!("{:?}", b as char),
        Some(&b) => {
            // Show the whole character when it is valid UTF-8.
            let n = rest.len().min(4);
            match std::str::from_utf8(&rest[..n]) {
                Ok(s) => format!("{:?}", s.chars().next().unwrap_or('?')),
                Err(e) if e.valid_up_to() > 0 => {
                    let s = std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap_or("?");
                    format!("{:?}", s.chars().next().unwrap_or('?'))
                }
                Err(_) => format!("byte 0x{b:02x}"),
            }
        }
    }
}

/// Escapes in label values (and OpenMetrics HELP): Go's `lvalReplacer`.
const LABEL_ESCAPES: &[(u8, char)] = &[(b'\\', '\\'), (b'"', '"'), (b'n', '\n')];
/// Escapes in Prometheus-text HELP: Go's `helpReplacer` (no `\"`).
const PROM_HELP_ESCAPES: &[(u8, char)] = &[(b'\\', '\\'), (b'n', '\n')];

/// Unescapes `s` into `out`, like Go's `strings.Replacer` over two-byte
/// `\x` patterns. A backslash starting a known escape is replaced together
/// with the next byte. Any other backslash is copied, and scanning goes on
/// from the byte after it.
fn unescape(s: &str, escapes: &[(u8, char)], out: &mut String) {
    out.clear();
    let b = s.as_bytes();
    let mut copied = 0;
    let mut i = 0;
    while let Some(n) = b[i..].iter().position(|&c| c == b'\\') {
        let bs = i + n;
        let replacement = b
            .get(bs + 1)
            .and_then(|c| escapes.iter().find(|(e, _)| e == c))
            .map(|&(_, r)| r);
        // Backslashes and escape letters are ASCII, so these slice bounds
        // fall on character boundaries.
        out.push_str(&s[copied..bs]);
        match replacement {
            Some(r) => {
                out.push(r);
                i = bs + 2;
            }
            None => {
                out.push('\\');
                i = bs + 1;
            }
        }
        copied = i;
    }
    out.push_str(&s[copied..]);
}

/// Unescapes help text, borrowing when there is nothing to unescape.
fn unescape_help<'a>(s: &'a str, escapes: &[(u8, char)]) -> Cow<'a, str> {
    if s.contains('\\') {
        let mut out = String::with_capacity(s.len());
        unescape(s, escapes, &mut out);
        Cow::Owned(out)
    } else {
        Cow::Borrowed(s)
    }
}
