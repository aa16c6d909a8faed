//! The querier's own metrics, written by hand in the Prometheus text format
//! 0.0.4 at `/metrics`.
//!
//! - `http_requests_total{handler,code}` and the histogram
//!   `http_request_duration_seconds{handler}`: every HTTP request, so
//!   `handler="/api/v1/query"` and `"/api/v1/query_range"` are the query
//!   counts and durations (Prometheus' names);
//! - `strata_querier_endpoints{state="known"|"active"}`;
//! - per endpoint: `strata_querier_endpoint_up` (in the active set and the
//!   last Info succeeded), `strata_querier_endpoint_info_duration_seconds`
//!   (last Info call), and the StoreAPI calls the fan-out made:
//!   `strata_querier_endpoint_requests_total`,
//!   `strata_querier_endpoint_request_failures_total`,
//!   `strata_querier_endpoint_request_duration_seconds` (summary: sum and count).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;

use parking_lot::Mutex;

use crate::endpoints::EndpointSet;

/// Upper bounds of the request duration histogram, seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// HTTP request counters.
#[derive(Default)]
pub struct Metrics {
    by_code: Mutex<BTreeMap<(String, u16), u64>>,
    durations: Mutex<BTreeMap<String, Histogram>>,
}

/// Escapes a label value for the text format.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Go's `%g`-like float text the format accepts.
fn num(f: f64) -> String {
    if f == f64::INFINITY {
        "+Inf".into()
    } else {
        format!("{f}")
    }
}

impl Metrics {
    /// Records one request; `handler` must be a route, not a raw path, to
    /// keep the label set bounded.
    pub fn observe(&self, handler: &str, code: u16, secs: f64) {
        *self
            .by_code
            .lock()
            .entry((handler.to_string(), code))
            .or_default() += 1;
        let mut d = self.durations.lock();
        let h = d.entry(handler.to_string()).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// The exposition text.
    pub fn render(&self, set: &EndpointSet) -> String {
        let mut o = String::new();
        o.push_str("# HELP http_requests_total Requests to the HTTP server by handler and status code.\n# TYPE http_requests_total counter\n");
        for ((h, c), n) in self.by_code.lock().iter() {
            let _ = writeln!(
                o,
                "http_requests_total{{code=\"{c}\",handler=\"{}\"}} {n}",
                esc(h)
            );
        }
        o.push_str("# HELP http_request_duration_seconds Duration of HTTP requests.\n# TYPE http_request_duration_seconds histogram\n");
        for (h, hist) in self.durations.lock().iter() {
            let h = esc(h);
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "http_request_duration_seconds_bucket{{handler=\"{h}\",le=\"{}\"}} {}",
                    num(*b),
                    hist.counts[i]
                );
            }
            let _ = writeln!(
                o,
                "http_request_duration_seconds_bucket{{handler=\"{h}\",le=\"+Inf\"}} {}",
                hist.count
            );
            let _ = writeln!(
                o,
                "http_request_duration_seconds_sum{{handler=\"{h}\"}} {}",
                num(hist.sum)
            );
            let _ = writeln!(
                o,
                "http_request_duration_seconds_count{{handler=\"{h}\"}} {}",
                hist.count
            );
        }

        let all = set.all();
        let active: Vec<String> = set.active().iter().map(|e| e.name.clone()).collect();
        o.push_str("# HELP strata_querier_endpoints Discovered StoreAPI endpoints, and those in the active set.\n# TYPE strata_querier_endpoints gauge\n");
        let _ = writeln!(
            o,
            "strata_querier_endpoints{{state=\"active\"}} {}",
            active.len()
        );
        let _ = writeln!(
            o,
            "strata_querier_endpoints{{state=\"known\"}} {}",
            all.len()
        );

        o.push_str("# HELP strata_querier_endpoint_up 1 if the endpoint is in the active set and its last Info call succeeded.\n# TYPE strata_querier_endpoint_up gauge\n");
        for e in &all {
            let st = e.status();
            let up = active.contains(&e.name) && st.last_error.is_none();
            let comp = st.meta.as_ref().map(|m| m.component.as_str()).unwrap_or("");
            let _ = writeln!(
                o,
                "strata_querier_endpoint_up{{component=\"{}\",endpoint=\"{}\"}} {}",
                esc(comp),
                esc(&e.name),
                u8::from(up)
            );
        }
        o.push_str("# HELP strata_querier_endpoint_info_duration_seconds Duration of the last Info call.\n# TYPE strata_querier_endpoint_info_duration_seconds gauge\n");
        for e in &all {
            let _ = writeln!(
                o,
                "strata_querier_endpoint_info_duration_seconds{{endpoint=\"{}\"}} {}",
                esc(&e.name),
                num(e.status().info_latency.as_secs_f64())
            );
        }
        o.push_str("# HELP strata_querier_endpoint_requests_total StoreAPI calls made to the endpoint.\n# TYPE strata_querier_endpoint_requests_total counter\n");
        for e in &all {
            let _ = writeln!(
                o,
                "strata_querier_endpoint_requests_total{{endpoint=\"{}\"}} {}",
                esc(&e.name),
                e.stats.requests.load(Ordering::Relaxed)
            );
        }
        o.push_str("# HELP strata_querier_endpoint_request_failures_total StoreAPI calls to the endpoint that failed or timed out.\n# TYPE strata_querier_endpoint_request_failures_total counter\n");
        for e in &all {
            let _ = writeln!(
                o,
                "strata_querier_endpoint_request_failures_total{{endpoint=\"{}\"}} {}",
                esc(&e.name),
                e.stats.failures.load(Ordering::Relaxed)
            );
        }
        o.push_str("# HELP strata_querier_endpoint_request_duration_seconds Time of StoreAPI calls to the endpoint.\n# TYPE strata_querier_endpoint_request_duration_seconds summary\n");
        for e in &all {
            let name = esc(&e.name);
            let micros = e.stats.latency_micros.load(Ordering::Relaxed);
            let _ = writeln!(
                o,
                "strata_querier_endpoint_request_duration_seconds_sum{{endpoint=\"{name}\"}} {}",
                num(micros as f64 / 1e6)
            );
            let _ = writeln!(
                o,
                "strata_querier_endpoint_request_duration_seconds_count{{endpoint=\"{name}\"}} {}",
                e.stats.requests.load(Ordering::Relaxed)
            );
        }
        o
    }
}
