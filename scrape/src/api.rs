//! The `/api/v1/targets` payload, as plain serde structs whose JSON field
//! names are Prometheus' (`activeTargets`, `discoveredLabels`, `scrapeUrl`,
//! `lastScrape`...). The HTTP server wraps [`TargetDiscovery`] in the usual
//! `{"status":"success","data":...}` envelope.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use strata_tsdb::labels::Labels;

pub use crate::scrape_loop::Health;

/// `data` of `/api/v1/targets`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TargetDiscovery {
    #[serde(rename = "activeTargets")]
    pub active_targets: Vec<ActiveTarget>,
    #[serde(rename = "droppedTargets")]
    pub dropped_targets: Vec<DroppedTarget>,
}

/// One target being scraped.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveTarget {
    /// Labels before relabeling.
    pub discovered_labels: BTreeMap<String, String>,
    /// Labels attached to the target's series.
    pub labels: BTreeMap<String, String>,
    pub scrape_pool: String,
    pub scrape_url: String,
    pub global_url: String,
    pub last_error: String,
    /// RFC 3339 with nanoseconds, UTC; Go's zero time when never scraped.
    pub last_scrape: String,
    /// Seconds.
    pub last_scrape_duration: f64,
    pub health: Health,
    pub scrape_interval: String,
    pub scrape_timeout: String,
}

/// A target that relabeling dropped.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DroppedTarget {
    pub discovered_labels: BTreeMap<String, String>,
}

/// How to turn a scrape URL into one reachable from outside (Prometheus'
/// `GlobalURLOptions`): a target on localhost is rewritten to the external
/// host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GlobalUrlOptions {
    /// Our listen address (`host:port`).
    pub listen_address: String,
    /// Our externally visible `host[:port]`.
    pub host: String,
    /// Our externally visible scheme.
    pub scheme: String,
}

pub(crate) fn label_map(ls: &Labels) -> BTreeMap<String, String> {
    ls.iter()
        .map(|l| (l.name.to_string(), l.value.to_string()))
        .collect()
}

/// Splits `host:port`, `[v6]:port` or a bare host.
fn split_host_port(s: &str) -> (&str, &str) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some(i) = rest.find(']') {
            let port = rest[i + 1..].strip_prefix(':').unwrap_or("");
            return (&rest[..i], port);
        }
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p),
        _ => (s, ""),
    }
}

/// Prometheus' `getGlobalURL`.
pub fn global_url(scrape_url: &str, o: &GlobalUrlOptions) -> String {
    if o.host.is_empty() {
        return scrape_url.to_string();
    }
    let Some((scheme, rest)) = scrape_url.split_once("://") else {
        return scrape_url.to_string();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let (hostport, tail) = rest.split_at(end);
    let (host, port) = split_host_port(hostport);
    if !["127.0.0.1", "localhost", "::1"].contains(&host) {
        return scrape_url.to_string();
    }
    let (_, own_port) = split_host_port(&o.listen_address);
    if port == own_port {
        let scheme = if o.scheme.is_empty() {
            scheme
        } else {
            &o.scheme
        };
        return format!("{scheme}://{}{tail}", o.host);
    }
    let (ext_host, _) = split_host_port(&o.host);
    let new_host = if port.is_empty() {
        ext_host.to_string()
    } else if ext_host.contains(':') {
        format!("[{ext_host}]:{port}")
    } else {
        format!("{ext_host}:{port}")
    };
    format!("{scheme}://{new_host}{tail}")
}

/// Formats a time like Go's `time.Time` JSON (RFC 3339, nanoseconds with
/// trailing zeros trimmed), in UTC. `None` is Go's zero time.
pub fn rfc3339(t: Option<SystemTime>) -> String {
    let Some(t) = t else {
        return "0001-01-01T00:00:00Z".into();
    };
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let nanos = d.subsec_nanos();
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, day) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_format() {
        assert_eq!(rfc3339(None), "0001-01-01T00:00:00Z");
        assert_eq!(rfc3339(Some(UNIX_EPOCH)), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::new(1_675_245_600, 123_400_000);
        assert_eq!(rfc3339(Some(t)), "2023-02-01T10:00:00.1234Z");
        let t = UNIX_EPOCH + Duration::new(951_782_400, 0); // leap day
        assert_eq!(rfc3339(Some(t)), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn global_urls() {
        let o = GlobalUrlOptions {
            listen_address: "0.0.0.0:9090".into(),
            host: "prom.example.com:443".into(),
            scheme: "https".into(),
        };
        assert_eq!(
            global_url("http://localhost:9090/metrics", &o),
            "https://prom.example.com:443/metrics"
        );
        assert_eq!(
            global_url("http://127.0.0.1:9100/metrics?x=1", &o),
            "http://prom.example.com:9100/metrics?x=1"
        );
        assert_eq!(
            global_url("http://node1:9100/metrics", &o),
            "http://node1:9100/metrics"
        );
        assert_eq!(
            global_url("http://localhost:9100/m", &GlobalUrlOptions::default()),
            "http://localhost:9100/m"
        );
    }

    #[test]
    fn json_field_names() {
        let d = TargetDiscovery {
            active_targets: vec![ActiveTarget {
                discovered_labels: BTreeMap::from([("__address__".into(), "a:1".into())]),
                labels: BTreeMap::from([("job".into(), "j".into())]),
                scrape_pool: "j".into(),
                scrape_url: "http://a:1/metrics".into(),
                global_url: "http://a:1/metrics".into(),
                last_error: String::new(),
                last_scrape: rfc3339(None),
                last_scrape_duration: 0.5,
                health: Health::Unknown,
                scrape_interval: "15s".into(),
                scrape_timeout: "10s".into(),
            }],
            dropped_targets: vec![DroppedTarget {
                discovered_labels: BTreeMap::new(),
            }],
        };
        let v = serde_json::to_value(&d).unwrap();
        let t = &v["activeTargets"][0];
        for k in [
            "discoveredLabels",
            "labels",
            "scrapePool",
            "scrapeUrl",
            "globalUrl",
            "lastError",
            "lastScrape",
            "lastScrapeDuration",
            "health",
            "scrapeInterval",
            "scrapeTimeout",
        ] {
            assert!(t.get(k).is_some(), "missing {k}");
        }
        assert_eq!(t["health"], "unknown");
        assert!(v["droppedTargets"][0]["discoveredLabels"].is_object());
    }
}
