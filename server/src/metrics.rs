//! The server's own metrics, written by hand in the text format 0.0.4.
//!
//! A small fixed set, so no metrics library: counters kept here as atomics
//! plus gauges read from the storage and the scrape manager at scrape time.
//! Names follow Prometheus' own (`prometheus_tsdb_*`, `prometheus_http_*`)
//! where the meaning is the same, so existing dashboards work.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// A success/failure counter pair.
#[derive(Default)]
pub(crate) struct Outcome {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

impl Outcome {
    pub fn record(&self, ok: bool) {
        if ok { &self.ok } else { &self.failed }.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
pub(crate) struct Metrics {
    pub compactions: Outcome,
    pub reloads: Outcome,
    pub remote_write_requests: Outcome,
    pub remote_write_samples: AtomicU64,
    pub remote_write_rejected: AtomicU64,
    pub remote_read_queries: AtomicU64,
    /// (handler, code) → count. Handlers are a fixed set (see `web`), so the
    /// map stays small.
    pub http_requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// (StoreAPI method, succeeded) → count (`storeapi`).
    pub grpc_requests: Mutex<BTreeMap<(&'static str, bool), u64>>,
}

impl Metrics {
    pub fn http_request(&self, handler: &'static str, code: u16) {
        *self
            .http_requests
            .lock()
            .entry((handler, code))
            .or_default() += 1;
    }

    pub fn grpc_request(&self, method: &'static str, ok: bool) {
        *self.grpc_requests.lock().entry((method, ok)).or_default() += 1;
    }
}

/// Builds an exposition: one `# HELP`/`# TYPE` header per family.
pub(crate) struct Exposition(pub String);

impl Exposition {
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                self.0.push_str(k);
                self.0.push_str("=\"");
                escape_label_value(&mut self.0, val);
                self.0.push('"');
            }
            self.0.push('}');
        }
        self.0.push(' ');
        self.0.push_str(&go_float(v));
        self.0.push('\n');
    }

    pub fn single(&mut self, name: &str, kind: &str, help: &str, v: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], v);
    }
}

/// Escapes a label value for the text format: backslash, quote, newline.
pub(crate) fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)`, what the text format uses:
/// shortest round-trip digits; exponent form (`1e+06`, `1.5e-07`) when the
/// decimal exponent is below -4 or at least 6 (Go's rule for the shortest
/// precision).
pub(crate) fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.2345e8".
    let e = format!("{v:e}");
    let Some((mantissa, exp)) = e.split_once('e') else {
        return e;
    };
    let Ok(exp) = exp.parse::<i32>() else {
        return e;
    };
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::go_float;

    #[test]
    fn floats_as_go_formats_them() {
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(123456.5), "123456.5");
        assert_eq!(go_float(1e6), "1e+06");
        assert_eq!(go_float(123456789.0), "1.23456789e+08");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(1.5e-7), "1.5e-07");
        assert_eq!(go_float(-2.5e300), "-2.5e+300");
        assert_eq!(go_float(f64::NAN), "NaN");
        assert_eq!(go_float(f64::NEG_INFINITY), "-Inf");
    }
}
