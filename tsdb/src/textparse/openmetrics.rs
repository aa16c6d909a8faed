//! OpenMetrics 1.0 text, following 2.42's `openmetricslex.l` and
//! `openmetricsparse.go`. Separators are exactly one space. Every line is
//! an entry. The input must end with `# EOF`. The grammar is in the module
//! docs of [`super`].

use super::number::{parse_float, seconds_to_ms, NORMAL_NAN};
use super::{
    is_label_start, is_metric_start, unescape_help, Entry, MetricType, ParseError, Parser,
    RawExemplar, RawLabel, LABEL_ESCAPES,
};
use crate::labels::METRIC_NAME;

const NO_EOF: &str = "data does not end with # EOF";

/// Which list of labels `openmetrics_labels` fills.
#[derive(Clone, Copy)]
enum LabelList {
    Sample,
    Exemplar,
}

impl<'a> Parser<'a> {
    /// The next entry. Only `# EOF` ends the input successfully.
    pub(super) fn next_openmetrics(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        match self.peek() {
            None => Err(self.error(self.pos, NO_EOF.into())),
            Some(b'#') => self.openmetrics_comment().map(Some),
            Some(b) if is_metric_start(b) => self.openmetrics_sample().map(Some),
            Some(b'\n') => Err(self.error(
                self.pos,
                "empty lines are not allowed in OpenMetrics".into(),
            )),
            Some(_) => {
                Err(self.expected(self.pos, "expected metric name or \"#\" at start of line"))
            }
        }
    }

    /// `# HELP`, `# TYPE`, `# UNIT` or `# EOF`. OpenMetrics has no other
    /// comments.
    fn openmetrics_comment(&mut self) -> Result<Entry<'a>, ParseError> {
        let rest = self.rest();
        let keyword = if rest.starts_with(b"# HELP ") {
            "HELP"
        } else if rest.starts_with(b"# TYPE ") {
            "TYPE"
        } else if rest.starts_with(b"# UNIT ") {
            "UNIT"
        } else if rest.starts_with(b"# EOF") {
            self.pos += 5;
            if self.peek() == Some(b'\n') {
                self.pos += 1;
            }
            if self.pos != self.input.len() {
                return Err(self.error(self.pos, "unexpected data after # EOF".into()));
            }
            return Ok(Entry::Eof);
        } else {
            return Err(self.error(
                self.pos,
                "invalid comment: OpenMetrics allows only \"# HELP\", \"# TYPE\", \"# UNIT\" and \"# EOF\""
                    .into(),
            ));
        };
        self.pos += 7;
        let Some(family) = self.scan_metric_name() else {
            return Err(self.expected(self.pos, &format!("expected metric name after {keyword}")));
        };
        if self.peek() != Some(b' ') {
            return Err(self.expected(
                self.pos,
                &format!("expected \" \" and text after metric name in {keyword}"),
            ));
        }
        let text_at = self.pos + 1;
        let Some(n) = self.input[text_at..].iter().position(|&b| b == b'\n') else {
            return Err(self.error(self.input.len(), NO_EOF.into()));
        };
        let text = &self.input[text_at..text_at + n];
        self.pos = text_at + n + 1;
        match keyword {
            "TYPE" => {
                let typ = match text {
                    b"counter" => MetricType::Counter,
                    b"gauge" => MetricType::Gauge,
                    b"histogram" => MetricType::Histogram,
                    b"gaugehistogram" => MetricType::GaugeHistogram,
                    b"summary" => MetricType::Summary,
                    b"info" => MetricType::Info,
                    b"stateset" => MetricType::StateSet,
                    b"unknown" => MetricType::Unknown,
                    _ => return Err(self.type_error(text_at, text)),
                };
                Ok(Entry::Type { family, typ })
            }
            "UNIT" => {
                // The unit must be empty or the family name's suffix after
                // a `_`. That makes it ASCII, so the conversion succeeds.
                let suffix_ok = text.is_empty()
                    || (family.len() > text.len()
                        && family.as_bytes().ends_with(text)
                        && family.as_bytes()[family.len() - text.len() - 1] == b'_');
                match std::str::from_utf8(text) {
                    Ok(unit) if suffix_ok => Ok(Entry::Unit { family, unit }),
                    _ => {
                        Err(self
                            .error(text_at, format!("unit not a suffix of metric \"{family}\"")))
                    }
                }
            }
            _ => {
                let help = std::str::from_utf8(text).map_err(|e| {
                    self.error(
                        text_at + e.valid_up_to(),
                        "help text is not a valid utf8 string".into(),
                    )
                })?;
                Ok(Entry::Help {
                    family,
                    help: unescape_help(help, LABEL_ESCAPES),
                })
            }
        }
    }

    /// A sample line; the cursor is on the first byte of the metric name.
    fn openmetrics_sample(&mut self) -> Result<Entry<'a>, ParseError> {
        let name_at = self.pos;
        let name = self.scan_metric_name().unwrap_or_default();
        self.raw.clear();
        self.raw.push(RawLabel {
            name: METRIC_NAME,
            value: name,
            at: name_at,
        });
        if self.peek() == Some(b'{') {
            self.pos += 1;
            self.openmetrics_labels(LabelList::Sample)?;
        }
        let value = self.openmetrics_value("expected value after metric")?;

        let t_ms = match self.peek() {
            None => return Err(self.error(self.pos, NO_EOF.into())),
            Some(b'\n') => None,
            _ if self.at_exemplar() => None,
            _ if self.at_token() => Some(self.openmetrics_timestamp("invalid timestamp")?),
            _ => {
                return Err(self.token_error("expected timestamp or exemplar after value"));
            }
        };
        if t_ms.is_some() && self.peek() != Some(b'\n') && !self.at_exemplar() {
            if self.peek().is_none() {
                return Err(self.error(self.pos, NO_EOF.into()));
            }
            return Err(self.token_error("expected end of line or exemplar after timestamp"));
        }
        if self.at_exemplar() {
            self.openmetrics_exemplar(name, name_at)?;
        }
        // Every path above stops at the line break.
        self.pos += 1;
        let labels = self.finish_labels()?;
        Ok(Entry::Sample {
            labels,
            t_ms,
            value,
        })
    }

    /// ` # {labels} value [timestamp]`, through to the line break (not
    /// consumed). The cursor is on the space before `#`.
    fn openmetrics_exemplar(&mut self, name: &str, name_at: usize) -> Result<(), ParseError> {
        // Exemplars are defined only for counters and histogram buckets.
        if !(name.ends_with("_total") || name.ends_with("_bucket")) {
            return Err(self.error(
                name_at,
                format!("metric name {name} does not support exemplars"),
            ));
        }
        self.pos += 4; // " # {"
        self.exemplar_raw.clear();
        self.openmetrics_labels(LabelList::Exemplar)?;
        let value = self.openmetrics_value("expected value after exemplar labels")?;
        let t_ms = match self.peek() {
            None => return Err(self.error(self.pos, NO_EOF.into())),
            Some(b'\n') => None,
            _ if self.at_token() => {
                let ts = self.openmetrics_timestamp("invalid exemplar timestamp")?;
                match self.peek() {
                    Some(b'\n') => {}
                    None => return Err(self.error(self.pos, NO_EOF.into())),
                    _ => {
                        return Err(
                            self.token_error("expected end of line after exemplar timestamp")
                        )
                    }
                }
                Some(ts)
            }
            _ => return Err(self.token_error("expected exemplar timestamp or end of line")),
        };
        self.exemplar = Some(RawExemplar { value, t_ms });
        Ok(())
    }

    /// The labels after `{`, through `}`: `name="value"` pairs separated
    /// by single commas, with no spaces and no trailing comma.
    fn openmetrics_labels(&mut self, list: LabelList) -> Result<(), ParseError> {
        let mut first = true;
        loop {
            match self.peek() {
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b',') if !first => {
                    self.pos += 1;
                    if !self.peek().is_some_and(is_label_start) {
                        return Err(self.expected(self.pos, "expected label name"));
                    }
                }
                Some(b) if first && is_label_start(b) => {}
                _ if first => return Err(self.expected(self.pos, "expected label name or \"}\"")),
                _ => {
                    return Err(self.expected(self.pos, "expected \",\" or \"}\" after label value"))
                }
            }
            first = false;
            let at = self.pos;
            let name = self.scan_label_name().unwrap_or_default();
            if self.peek() != Some(b'=') {
                return Err(self.expected(self.pos, "expected \"=\" after label name"));
            }
            self.pos += 1;
            if self.peek() != Some(b'"') {
                return Err(self.expected(self.pos, "expected label value"));
            }
            let value = self.scan_label_value(false)?;
            let raw = RawLabel { name, value, at };
            match list {
                LabelList::Sample => self.raw.push(raw),
                LabelList::Exemplar => self.exemplar_raw.push(raw),
            }
        }
    }

    /// Whether the cursor is on `" # {"`, the start of an exemplar. In
    /// 2.42's lexer this longer match beats a timestamp token `" #"`.
    fn at_exemplar(&self) -> bool {
        self.rest().starts_with(b" # {")
    }

    /// Whether the cursor is on a token: one space, then at least one byte
    /// that is neither a space nor a line break.
    fn at_token(&self) -> bool {
        let r = self.rest();
        r.len() >= 2 && r[0] == b' ' && !matches!(r[1], b' ' | b'\n')
    }

    /// Consumes a token (`at_token` holds) and returns it with its offset.
    fn take_token(&mut self) -> (usize, &'a [u8]) {
        let at = self.pos + 1;
        let n = self.input[at..]
            .iter()
            .position(|&b| matches!(b, b' ' | b'\n'))
            .unwrap_or(self.input.len() - at);
        self.pos = at + n;
        (at, &self.input[at..at + n])
    }

    /// The error when no token follows. A single space is the separator, so
    /// point past it at what is really wrong.
    fn token_error(&self, expected: &str) -> ParseError {
        let at = if self.peek() == Some(b' ') {
            self.pos + 1
        } else {
            self.pos
        };
        self.expected(at, expected)
    }

    /// `" " float`, with NaN made canonical.
    fn openmetrics_value(&mut self, expected: &str) -> Result<f64, ParseError> {
        if !self.at_token() {
            return Err(self.token_error(expected));
        }
        let (at, token) = self.take_token();
        let v = parse_float(token).map_err(|e| self.float_error(at, token, e))?;
        Ok(if v.is_nan() { NORMAL_NAN } else { v })
    }

    /// `" " float-seconds` (`at_token` holds), converted to milliseconds.
    fn openmetrics_timestamp(&mut self, invalid: &str) -> Result<i64, ParseError> {
        let (at, token) = self.take_token();
        let seconds = parse_float(token).map_err(|e| self.float_error(at, token, e))?;
        if !seconds.is_finite() {
            let shown = String::from_utf8_lossy(token);
            return Err(self.error(at, format!("{invalid} {shown:?}")));
        }
        seconds_to_ms(seconds).ok_or_else(|| {
            let shown = String::from_utf8_lossy(token);
            self.error(at, format!("timestamp {shown} is out of range"))
        })
    }
}
