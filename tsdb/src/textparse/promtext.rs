//! The Prometheus text format 0.0.4, following 2.42's `promlex.l` and
//! `promparse.go` token by token. Runs of spaces and tabs may separate any
//! two tokens. The grammar is in the module docs of [`super`].

use super::number::{parse_float, parse_ms, NORMAL_NAN};
use super::{
    is_label_start, is_metric_start, unescape_help, Entry, MetricType, ParseError, Parser,
    RawLabel, PROM_HELP_ESCAPES,
};
use crate::labels::METRIC_NAME;

impl<'a> Parser<'a> {
    /// The next entry, skipping blank lines and plain comments. `Ok(None)`
    /// at the end of the input.
    pub(super) fn next_promtext(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        loop {
            self.skip_blanks();
            match self.peek() {
                None => return Ok(None),
                Some(b'\n') => self.pos += 1,
                Some(b'#') => {
                    if let Some(e) = self.promtext_comment()? {
                        return Ok(Some(e));
                    }
                }
                Some(b) if is_metric_start(b) => return self.promtext_sample().map(Some),
                Some(_) => {
                    return Err(
                        self.expected(self.pos, "expected metric name or \"#\" at start of line")
                    )
                }
            }
        }
    }

    /// A line starting with `#`: HELP, TYPE, or a comment to skip
    /// (`Ok(None)`). Always consumes the `#`.
    fn promtext_comment(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        self.pos += 1;
        let before_blanks = self.pos;
        self.skip_blanks();
        let rest = self.rest();
        // `#HELP` is a plain comment. So are `# HELP` without a blank after
        // it and `# HELPER`: the keyword needs blanks on both sides.
        let keyword =
            if self.pos == before_blanks || rest.len() < 5 || !matches!(rest[4], b' ' | b'\t') {
                None
            } else if rest.starts_with(b"HELP") {
                Some("HELP")
            } else if rest.starts_with(b"TYPE") {
                Some("TYPE")
            } else {
                None
            };
        let Some(keyword) = keyword else {
            self.take_line();
            return Ok(None);
        };
        self.pos += 4;
        self.skip_blanks();
        let Some(family) = self.scan_metric_name() else {
            return Err(self.expected(self.pos, &format!("expected metric name after {keyword}")));
        };
        let text_at = self.pos;
        let line = self.take_line();
        // 2.42's lexer takes the rest of the line and drops its first byte,
        // which is normally the separating blank. A rest made only of blanks
        // lexes as whitespace, and the text is then empty.
        let (text, text_at) = if line.iter().all(|&b| matches!(b, b' ' | b'\t')) {
            (&line[..0], text_at)
        } else {
            (&line[1..], text_at + 1)
        };
        if keyword == "TYPE" {
            let typ = match text {
                b"counter" => MetricType::Counter,
                b"gauge" => MetricType::Gauge,
                b"histogram" => MetricType::Histogram,
                b"summary" => MetricType::Summary,
                b"untyped" => MetricType::Unknown,
                _ => return Err(self.type_error(text_at, text)),
            };
            return Ok(Some(Entry::Type { family, typ }));
        }
        let help = std::str::from_utf8(text).map_err(|e| {
            self.error(
                text_at + e.valid_up_to(),
                "help text is not a valid utf8 string".into(),
            )
        })?;
        Ok(Some(Entry::Help {
            family,
            help: unescape_help(help, PROM_HELP_ESCAPES),
        }))
    }

    /// A sample line; the cursor is on the first byte of the metric name.
    fn promtext_sample(&mut self) -> Result<Entry<'a>, ParseError> {
        let name_at = self.pos;
        let name = self.scan_metric_name().unwrap_or_default();
        self.raw.clear();
        self.raw.push(RawLabel {
            name: METRIC_NAME,
            value: name,
            at: name_at,
        });
        self.skip_blanks();
        if self.peek() == Some(b'{') {
            self.pos += 1;
            self.promtext_labels()?;
            self.skip_blanks();
        }

        // The value is the longest run without `{`, blanks or line breaks,
        // so `foo-1` is metric `foo` with value -1, as in 2.42.
        let value_at = self.pos;
        let n = self
            .rest()
            .iter()
            .position(|&b| matches!(b, b'{' | b' ' | b'\t' | b'\n'))
            .unwrap_or(self.input.len() - self.pos);
        if n == 0 {
            return Err(self.expected(self.pos, "expected value after metric"));
        }
        self.pos += n;
        let token = &self.input[value_at..self.pos];
        let value = parse_float(token).map_err(|e| self.float_error(value_at, token, e))?;
        let value = if value.is_nan() { NORMAL_NAN } else { value };

        self.skip_blanks();
        let t_ms = match self.peek() {
            None | Some(b'\n') => None,
            Some(b) if b.is_ascii_digit() => {
                let ts_at = self.pos;
                while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    self.pos += 1;
                }
                let digits = &self.input[ts_at..self.pos];
                let Some(ts) = parse_ms(digits) else {
                    let shown = String::from_utf8_lossy(digits);
                    return Err(self.error(ts_at, format!("timestamp {shown} is out of range")));
                };
                self.skip_blanks();
                if !matches!(self.peek(), None | Some(b'\n')) {
                    return Err(self.eol_error("expected end of line after timestamp"));
                }
                Some(ts)
            }
            Some(_) => return Err(self.eol_error("expected timestamp or end of line after value")),
        };
        if self.peek() == Some(b'\n') {
            self.pos += 1;
        }
        let labels = self.finish_labels()?;
        Ok(Entry::Sample {
            labels,
            t_ms,
            value,
        })
    }

    /// The labels after `{`, through `}`. As in 2.42, the commas between
    /// labels are optional, and a trailing comma is allowed.
    fn promtext_labels(&mut self) -> Result<(), ParseError> {
        loop {
            self.skip_blanks();
            match self.peek() {
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b) if is_label_start(b) => {}
                _ => return Err(self.expected(self.pos, "expected label name")),
            }
            let at = self.pos;
            let name = self.scan_label_name().unwrap_or_default();
            self.skip_blanks();
            if self.peek() != Some(b'=') {
                return Err(self.expected(self.pos, "expected \"=\" after label name"));
            }
            self.pos += 1;
            self.skip_blanks();
            if self.peek() != Some(b'"') {
                return Err(self.expected(self.pos, "expected label value"));
            }
            let value = self.scan_label_value(true)?;
            self.raw.push(RawLabel { name, value, at });
            self.skip_blanks();
            if self.peek() == Some(b',') {
                self.pos += 1;
            }
        }
    }
}
