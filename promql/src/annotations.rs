//! Warnings and infos produced while evaluating ("annotations").
//!
//! Prometheus keeps annotations in a map keyed by message text, so the same
//! problem reported for many series or steps is reported once; a later report
//! replaces the position of an earlier one. Messages are rendered with the
//! `line:col` of the expression that caused them only at the end, once the
//! query text is known. The one annotation that aggregates details across
//! reports (histogram_quantile's monotonicity fix-up) merges them here too.

use std::collections::HashMap;

use crate::lex::line_col;
use crate::util::{fmt_g, fmt_g_prec, format_rfc3339_secs};

#[derive(Clone, Debug)]
struct Monotonicity {
    min_ts: i64,
    max_ts: i64,
    min_bucket: f64,
    max_bucket: f64,
    max_diff: f64,
    count: usize,
}

#[derive(Clone, Debug)]
struct Anno {
    warning: bool,
    msg: String,
    pos: usize,
    mono: Option<Monotonicity>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Annotations {
    items: Vec<Anno>,
    index: HashMap<String, usize>,
}

impl Annotations {
    fn add(&mut self, a: Anno) {
        match self.index.get(&a.msg) {
            Some(&i) => {
                let old = &mut self.items[i];
                old.pos = a.pos;
                if let (Some(o), Some(n)) = (old.mono.as_mut(), a.mono) {
                    o.min_ts = o.min_ts.min(n.min_ts);
                    o.max_ts = o.max_ts.max(n.max_ts);
                    if n.min_bucket < o.min_bucket {
                        o.min_bucket = n.min_bucket;
                    }
                    if n.max_bucket > o.max_bucket {
                        o.max_bucket = n.max_bucket;
                    }
                    if n.max_diff > o.max_diff {
                        o.max_diff = n.max_diff;
                    }
                    o.count += n.count + 1;
                }
            }
            None => {
                self.index.insert(a.msg.clone(), self.items.len());
                self.items.push(a);
            }
        }
    }

    /// Adds a warning; `msg` is the text after `PromQL warning: `.
    pub fn warn(&mut self, msg: impl Into<String>, pos: usize) {
        self.add(Anno {
            warning: true,
            msg: format!("PromQL warning: {}", msg.into()),
            pos,
            mono: None,
        });
    }

    /// Adds an info; `msg` is the text after `PromQL info: `.
    pub fn info(&mut self, msg: impl Into<String>, pos: usize) {
        self.add(Anno {
            warning: false,
            msg: format!("PromQL info: {}", msg.into()),
            pos,
            mono: None,
        });
    }

    /// histogram_quantile had to force bucket counts to be monotonic.
    pub fn forced_monotonicity(
        &mut self,
        metric_name: &str,
        pos: usize,
        ts: i64,
        min_bucket: f64,
        max_bucket: f64,
        max_diff: f64,
    ) {
        let mut msg = String::from(
            "PromQL info: input to histogram_quantile needed to be fixed for monotonicity \
             (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)",
        );
        if !metric_name.is_empty() {
            msg.push_str(&format!(" for metric name {metric_name:?}"));
        }
        self.add(Anno {
            warning: false,
            msg,
            pos,
            mono: Some(Monotonicity {
                min_ts: ts,
                max_ts: ts,
                min_bucket,
                max_bucket,
                max_diff,
                count: 0,
            }),
        });
    }

    pub fn merge(&mut self, other: Annotations) {
        for a in other.items {
            self.add(a);
        }
    }

    /// Renders `(warnings, infos)` with positions resolved against `query`.
    pub fn render(&self, query: &str) -> (Vec<String>, Vec<String>) {
        let mut warnings = Vec::new();
        let mut infos = Vec::new();
        for a in &self.items {
            let pos = line_col(query, a.pos);
            let text = match &a.mono {
                None => format!("{} ({pos})", a.msg),
                Some(m) => format!(
                    "{}, from buckets {} to {}, with a max diff of {}, over {} samples from {} to {} ({pos})",
                    a.msg,
                    fmt_g(m.min_bucket),
                    fmt_g(m.max_bucket),
                    fmt_g_prec(m.max_diff, 2),
                    m.count + 1,
                    format_rfc3339_secs(m.min_ts.div_euclid(1000)),
                    format_rfc3339_secs(m.max_ts.div_euclid(1000)),
                ),
            };
            if a.warning {
                warnings.push(text);
            } else {
                infos.push(text);
            }
        }
        (warnings, infos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedups_by_message_and_keeps_latest_position() {
        let mut a = Annotations::default();
        a.info("x", 0);
        a.info("x", 5);
        a.warn("y", 1);
        let (w, i) = a.render("abcdefgh");
        assert_eq!(w, vec!["PromQL warning: y (1:2)"]);
        assert_eq!(i, vec!["PromQL info: x (1:6)"]);
    }

    #[test]
    fn monotonicity_merges_details() {
        let mut a = Annotations::default();
        a.forced_monotonicity("m", 0, 0, 1.0, 2.0, 0.5);
        a.forced_monotonicity("m", 0, 60_000, 0.5, 2.0, 0.25);
        let (_, i) = a.render("q");
        assert!(i[0].contains("for metric name \"m\", from buckets 0.5 to 2, with a max diff of 0.5, over 2 samples from 1970-01-01T00:00:00Z to 1970-01-01T00:01:00Z (1:1)"), "{}", i[0]);
    }
}
