//! Turning discovered target groups into scrape targets.
//!
//! [`populate_labels`] is Prometheus' `PopulateLabels`: it adds the job's
//! defaults as reserved labels (`job`, `__scheme__`, `__metrics_path__`,
//! `__scrape_interval__`, `__scrape_timeout__`, `__param_<name>` for the
//! first value of each configured param), runs `relabel_configs`, and then
//! checks and completes the result: an address is required, a missing port
//! gets the scheme's default, interval and timeout must parse, `__meta_*`
//! labels go, and `instance` defaults to the address.
//!
//! A [`Target`] keeps all remaining labels, reserved ones included, because
//! the scrape URL is built from them; [`Target::labels`] is the public view
//! (no `__` prefix) that is attached to every scraped series.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use strata_tsdb::labels::Labels;

use crate::config::{format_duration, parse_duration, ScrapeConfig};
use crate::discovery::TargetGroup;
use crate::relabel::{self, Builder};

pub const ADDRESS_LABEL: &str = "__address__";
pub const SCHEME_LABEL: &str = "__scheme__";
pub const METRICS_PATH_LABEL: &str = "__metrics_path__";
pub const SCRAPE_INTERVAL_LABEL: &str = "__scrape_interval__";
pub const SCRAPE_TIMEOUT_LABEL: &str = "__scrape_timeout__";
pub const PARAM_LABEL_PREFIX: &str = "__param_";
pub const META_LABEL_PREFIX: &str = "__meta_";
pub const RESERVED_LABEL_PREFIX: &str = "__";
pub const JOB_LABEL: &str = "job";
pub const INSTANCE_LABEL: &str = "instance";

/// What relabeling made of one discovered target.
#[derive(Clone, Debug, PartialEq)]
pub enum Populated {
    /// Scrape it. `labels` include the reserved ones.
    Active { labels: Labels, discovered: Labels },
    /// Dropped by relabeling; shown under `droppedTargets`.
    Dropped { discovered: Labels },
}

/// Builds the target labels of one discovered label set (see module docs).
pub fn populate_labels(lset: &Labels, cfg: &ScrapeConfig) -> Result<Populated, String> {
    let mut b = Builder::new(lset);
    let defaults = [
        (JOB_LABEL, cfg.job_name.clone()),
        (SCRAPE_INTERVAL_LABEL, format_duration(cfg.scrape_interval)),
        (SCRAPE_TIMEOUT_LABEL, format_duration(cfg.scrape_timeout)),
        (METRICS_PATH_LABEL, cfg.metrics_path.clone()),
        (SCHEME_LABEL, cfg.scheme.as_str().to_string()),
    ];
    for (name, value) in &defaults {
        if lset.get(name).is_none() {
            b.set(name, value);
        }
    }
    for (k, v) in &cfg.params {
        if let Some(first) = v.first() {
            b.set(&format!("{PARAM_LABEL_PREFIX}{k}"), first);
        }
    }
    let discovered = b.labels();
    let Some(lset) = relabel::process(&discovered, &cfg.relabel_configs) else {
        return Ok(Populated::Dropped { discovered });
    };
    let Some(addr) = lset.get(ADDRESS_LABEL).map(str::to_string) else {
        return Err("no address".into());
    };
    let mut b = Builder::new(&lset);
    let scheme = lset.get(SCHEME_LABEL).unwrap_or("");
    let addr = if has_port(&addr) {
        addr
    } else {
        let with_port = match scheme {
            "http" | "" => format!("{addr}:80"),
            "https" => format!("{addr}:443"),
            _ => return Err(format!("invalid scheme: {:?}", cfg.scheme.as_str())),
        };
        b.set(ADDRESS_LABEL, &with_port);
        with_port
    };
    if addr.contains('/') {
        return Err(format!("{addr:?} is not a valid hostname"));
    }
    let interval_s = lset.get(SCRAPE_INTERVAL_LABEL).unwrap_or("");
    let interval =
        parse_duration(interval_s).map_err(|e| format!("error parsing scrape interval: {e}"))?;
    if interval.is_zero() {
        return Err("scrape interval cannot be 0".into());
    }
    let timeout_s = lset.get(SCRAPE_TIMEOUT_LABEL).unwrap_or("");
    let timeout =
        parse_duration(timeout_s).map_err(|e| format!("error parsing scrape timeout: {e}"))?;
    if timeout.is_zero() {
        return Err("scrape timeout cannot be 0".into());
    }
    if timeout > interval {
        return Err(format!(
            "scrape timeout cannot be greater than scrape interval ({timeout_s:?} > {interval_s:?})"
        ));
    }
    for l in lset.iter() {
        if l.name.starts_with(META_LABEL_PREFIX) {
            b.del(&l.name);
        }
    }
    if lset.get(INSTANCE_LABEL).is_none() {
        b.set(INSTANCE_LABEL, &addr);
    }
    Ok(Populated::Active {
        labels: b.labels(),
        discovered,
    })
}

/// Whether `addr` is `host:port` or `[v6]:port` (Go's `SplitHostPort`
/// succeeding).
fn has_port(addr: &str) -> bool {
    if let Some(rest) = addr.strip_prefix('[') {
        return match rest.find(']') {
            Some(i) => rest[i + 1..].starts_with(':'),
            None => false,
        };
    }
    // More than one colon without brackets is an IPv6 literal: no port.
    addr.matches(':').count() == 1
}

/// A target to scrape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// Every label after relabeling, reserved ones included.
    labels: Labels,
    /// The labels before relabeling (discovered + job defaults).
    discovered: Labels,
    params: BTreeMap<String, Vec<String>>,
}

impl Target {
    pub fn new(labels: Labels, discovered: Labels, params: BTreeMap<String, Vec<String>>) -> Self {
        Target {
            labels,
            discovered,
            params,
        }
    }

    /// The labels attached to scraped series: all but the `__` ones.
    pub fn labels(&self) -> Labels {
        Labels::from_sorted(
            self.labels
                .iter()
                .filter(|l| !l.name.starts_with(RESERVED_LABEL_PREFIX))
                .cloned()
                .collect(),
        )
    }

    /// Every label after relabeling, reserved ones included.
    pub fn all_labels(&self) -> &Labels {
        &self.labels
    }

    pub fn discovered_labels(&self) -> &Labels {
        &self.discovered
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.labels.get(name)
    }

    /// The scrape interval and timeout, from the reserved labels (which
    /// relabeling may have changed). `populate_labels` checked them.
    pub fn interval_and_timeout(&self, fallback: (Duration, Duration)) -> (Duration, Duration) {
        let parse = |n: &str| self.get(n).and_then(|s| parse_duration(s).ok());
        (
            parse(SCRAPE_INTERVAL_LABEL).unwrap_or(fallback.0),
            parse(SCRAPE_TIMEOUT_LABEL).unwrap_or(fallback.1),
        )
    }

    /// The scrape URL, formatted as Go's `url.URL.String()` would:
    /// configured params, overridden by `__param_*` labels, sorted and
    /// query-escaped.
    pub fn url(&self) -> String {
        let mut params = self.params.clone();
        for l in self.labels.iter() {
            if let Some(k) = l.name.strip_prefix(PARAM_LABEL_PREFIX) {
                let vs = params.entry(k.to_string()).or_default();
                if vs.is_empty() {
                    vs.push(l.value.to_string());
                } else {
                    vs[0] = l.value.to_string();
                }
            }
        }
        let scheme = self.get(SCHEME_LABEL).unwrap_or("");
        let host = self.get(ADDRESS_LABEL).unwrap_or("");
        let path = self.get(METRICS_PATH_LABEL).unwrap_or("");
        let mut u = format!("{scheme}://{host}");
        if !path.is_empty() && !path.starts_with('/') {
            u.push('/');
        }
        u.push_str(&escape_path(path));
        let mut first = true;
        for (k, vs) in &params {
            for v in vs {
                u.push(if first { '?' } else { '&' });
                first = false;
                u.push_str(&query_escape(k));
                u.push('=');
                u.push_str(&query_escape(v));
            }
        }
        u
    }

    /// A stable hash of the target (labels and URL), used to spread scrape
    /// offsets over the interval.
    pub fn hash64(&self) -> u64 {
        let mut h = Fnv64::default();
        self.labels.hash(&mut h);
        self.url().hash(&mut h);
        h.finish()
    }

    /// How long to wait before the first scrape, so that a target is always
    /// scraped at the same phase of the interval (like Prometheus'
    /// `Target.offset`). `now_nanos` is the wall clock in nanoseconds.
    pub fn offset(&self, interval: Duration, jitter_seed: u64, now_nanos: u128) -> Duration {
        let iv = interval.as_nanos().max(1);
        let base = iv - now_nanos % iv;
        let off = ((self.hash64() ^ jitter_seed) as u128) % iv;
        let mut next = base + off;
        if next > iv {
            next -= iv;
        }
        Duration::from_nanos(next.min(u64::MAX as u128) as u64)
    }
}

/// FNV-1a, 64 bit: stable across processes and Rust versions, unlike the
/// standard library's hasher.
#[derive(Clone, Copy)]
pub(crate) struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv64 {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's path escaping in `URL.EscapedPath`.
fn escape_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'$'
            | b'&'
            | b'+'
            | b','
            | b'/'
            | b':'
            | b';'
            | b'='
            | b'@' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The targets of one job from its discovered groups: active targets,
/// dropped targets' discovered labels, and errors (one per bad target).
#[derive(Debug, Default)]
pub struct GroupTargets {
    pub active: Vec<Target>,
    pub dropped: Vec<Labels>,
    pub errors: Vec<String>,
}

/// Prometheus' `TargetsFromGroup`, over several groups.
pub fn targets_from_groups(groups: &[TargetGroup], cfg: &ScrapeConfig) -> GroupTargets {
    let mut out = GroupTargets::default();
    for g in groups {
        for (i, addr) in g.targets.iter().enumerate() {
            // Target labels win over group labels.
            let own = g.target_labels.get(i);
            let mut pairs: Vec<(&str, &str)> = g
                .labels
                .iter()
                .filter(|(k, _)| {
                    k.as_str() != ADDRESS_LABEL && !own.is_some_and(|o| o.contains_key(*k))
                })
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            if let Some(own) = own {
                pairs.extend(
                    own.iter()
                        .filter(|(k, _)| k.as_str() != ADDRESS_LABEL)
                        .map(|(k, v)| (k.as_str(), v.as_str())),
                );
            }
            pairs.push((ADDRESS_LABEL, addr.as_str()));
            let lset = Labels::from_pairs(pairs);
            match populate_labels(&lset, cfg) {
                Ok(Populated::Active { labels, discovered }) => {
                    out.active
                        .push(Target::new(labels, discovered, cfg.params.clone()));
                }
                Ok(Populated::Dropped { discovered }) => out.dropped.push(discovered),
                Err(e) => out
                    .errors
                    .push(format!("instance {i} in group {}: {e}", g.source)),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn job(yaml_job: &str) -> ScrapeConfig {
        let cfg = Config::load(&format!("scrape_configs:\n{yaml_job}")).unwrap();
        cfg.scrape_configs[0].clone()
    }

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn defaults_and_instance() {
        let cfg = job("- job_name: j\n  scrape_interval: 15s\n  params:\n    module: [a, b]\n");
        let p = populate_labels(&l(&[("__address__", "h"), ("__meta_x", "y")]), &cfg).unwrap();
        let Populated::Active { labels, discovered } = p else {
            panic!("dropped")
        };
        assert_eq!(
            labels,
            l(&[
                ("__address__", "h:80"),
                ("__metrics_path__", "/metrics"),
                ("__param_module", "a"),
                ("__scheme__", "http"),
                ("__scrape_interval__", "15s"),
                ("__scrape_timeout__", "10s"),
                ("instance", "h:80"),
                ("job", "j"),
            ])
        );
        assert_eq!(discovered.get("__meta_x"), Some("y"));
        assert_eq!(discovered.get("__address__"), Some("h"));
        let t = Target::new(labels, discovered, cfg.params.clone());
        assert_eq!(t.url(), "http://h:80/metrics?module=a&module=b");
        assert_eq!(t.labels(), l(&[("instance", "h:80"), ("job", "j")]));
    }

    #[test]
    fn relabel_changes_url_and_keeps_instance() {
        let cfg = job(concat!(
            "- job_name: j\n  scheme: https\n  relabel_configs:\n",
            "  - source_labels: [__address__]\n    target_label: __param_target\n",
            "  - target_label: __address__\n    replacement: exporter:9115\n",
            "  - source_labels: [__param_target]\n    target_label: instance\n",
            "  - target_label: __metrics_path__\n    replacement: /probe path\n",
        ));
        let p = populate_labels(&l(&[("__address__", "example.com")]), &cfg).unwrap();
        let Populated::Active { labels, discovered } = p else {
            panic!("dropped")
        };
        assert_eq!(labels.get("instance"), Some("example.com"));
        let t = Target::new(labels, discovered, cfg.params.clone());
        assert_eq!(
            t.url(),
            "https://exporter:9115/probe%20path?target=example.com"
        );
    }

    #[test]
    fn https_default_port_ipv6_and_errors() {
        let cfg = job("- job_name: j\n  scheme: https\n");
        let Populated::Active { labels, .. } =
            populate_labels(&l(&[("__address__", "h")]), &cfg).unwrap()
        else {
            panic!()
        };
        assert_eq!(labels.get("__address__"), Some("h:443"));
        let Populated::Active { labels, .. } =
            populate_labels(&l(&[("__address__", "[::1]:9090")]), &cfg).unwrap()
        else {
            panic!()
        };
        assert_eq!(labels.get("__address__"), Some("[::1]:9090"));
        // No address.
        let cfg2 = job(
            "- job_name: j\n  relabel_configs:\n  - action: labeldrop\n    regex: __address__\n",
        );
        assert_eq!(
            populate_labels(&l(&[("__address__", "h")]), &cfg2),
            Err("no address".into())
        );
        // Relabeled interval shorter than timeout.
        let cfg3 = job("- job_name: j\n  relabel_configs:\n  - target_label: __scrape_interval__\n    replacement: 1s\n");
        assert!(populate_labels(&l(&[("__address__", "h")]), &cfg3)
            .unwrap_err()
            .contains("greater than scrape interval"));
        // Relabel drop.
        let cfg4 = job("- job_name: j\n  relabel_configs:\n  - action: drop\n    source_labels: [__address__]\n    regex: h.*\n");
        assert!(matches!(
            populate_labels(&l(&[("__address__", "h")]), &cfg4),
            Ok(Populated::Dropped { .. })
        ));
    }

    #[test]
    fn offset_is_within_interval_and_stable() {
        let cfg = job("- job_name: j\n");
        let g = TargetGroup {
            targets: vec!["a:1".into(), "b:2".into()],
            target_labels: Vec::new(),
            labels: BTreeMap::new(),
            source: "0".into(),
        };
        let ts = targets_from_groups(&[g], &cfg);
        assert_eq!(ts.active.len(), 2);
        let iv = Duration::from_secs(10);
        for t in &ts.active {
            for now in [0u128, 123_456_789, 9_999_999_999] {
                let o = t.offset(iv, 0, now);
                assert!(o <= iv, "{o:?}");
                // The phase is fixed: (now + offset) mod interval is constant.
                let phase = (now + o.as_nanos()) % iv.as_nanos();
                let phase0 = t.offset(iv, 0, 0).as_nanos() % iv.as_nanos();
                assert_eq!(phase, phase0);
            }
        }
        assert_ne!(ts.active[0].hash64(), ts.active[1].hash64());
    }
}
