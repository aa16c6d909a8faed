//! Metric metadata (`# TYPE`, `# HELP`, `# UNIT`) for `/api/v1/metadata`
//! and `/api/v1/targets/metadata`.
//!
//! Two sources:
//! - the scrape loops: each target's latest metadata, kept by
//!   `strata_scrape` (Prometheus' scrape cache) and read through
//!   `ScrapeManager::targets_metadata`; it goes with the target;
//! - remote write 1.0 senders: [`RemoteMetadata`] keeps what arrives in
//!   `WriteRequest.metadata` (Prometheus 2.42 sends every family's metadata
//!   each `metadata_config.send_interval`, 1m by default). Prometheus itself
//!   drops it; we serve it too so a `strata tsdb` fed only by remote write
//!   still answers the metadata API. Entries expire when not re-sent for
//!   [`REMOTE_METADATA_TTL`]; at most [`MAX_REMOTE_METADATA`] are kept.
//!
//! [`merged`] unions both, deduplicating identical (type, help, unit)
//! triples per family as Prometheus does across targets; promapi then
//! applies `metric`, `limit` and `limit_per_metric`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use strata_promapi::MetricMetadata;
use strata_proto::prometheus as pb;

use crate::Shared;

/// Most (family, type, help, unit) entries kept from remote write.
pub(crate) const MAX_REMOTE_METADATA: usize = 100_000;
/// A remote-written entry not re-sent for this long is forgotten (ten of
/// Prometheus' default send intervals).
pub(crate) const REMOTE_METADATA_TTL: Duration = Duration::from_secs(600);

/// Metadata received by remote write; see the module docs.
#[derive(Default)]
pub(crate) struct RemoteMetadata {
    entries: Mutex<BTreeMap<(String, MetricMetadata), Instant>>,
}

fn type_name(t: i32) -> &'static str {
    use pb::metric_metadata::MetricType as T;
    match T::try_from(t).unwrap_or(T::Unknown) {
        T::Unknown => "unknown",
        T::Counter => "counter",
        T::Gauge => "gauge",
        T::Histogram => "histogram",
        T::Gaugehistogram => "gaugehistogram",
        T::Summary => "summary",
        T::Info => "info",
        T::Stateset => "stateset",
    }
}

impl RemoteMetadata {
    /// Records the metadata of one write request. Returns how many entries
    /// were dropped because the store is full.
    pub(crate) fn record(&self, md: &[pb::MetricMetadata]) -> usize {
        let now = Instant::now();
        let mut dropped = 0;
        let mut m = self.entries.lock();
        for e in md {
            if e.metric_family_name.is_empty() {
                continue;
            }
            let key = (
                e.metric_family_name.clone(),
                MetricMetadata {
                    kind: type_name(e.r#type).to_string(),
                    help: e.help.clone(),
                    unit: e.unit.clone(),
                },
            );
            if let Some(t) = m.get_mut(&key) {
                *t = now;
                continue;
            }
            if m.len() >= MAX_REMOTE_METADATA {
                m.retain(|_, t| now.duration_since(*t) < REMOTE_METADATA_TTL);
            }
            if m.len() >= MAX_REMOTE_METADATA {
                dropped += 1;
                continue;
            }
            m.insert(key, now);
        }
        dropped
    }

    /// The live entries.
    fn snapshot(&self) -> Vec<(String, MetricMetadata)> {
        let now = Instant::now();
        let mut m = self.entries.lock();
        m.retain(|_, t| now.duration_since(*t) < REMOTE_METADATA_TTL);
        m.keys().cloned().collect()
    }
}

/// Scraped and remote-written metadata, deduplicated per family.
pub(crate) fn merged(shared: &Shared) -> BTreeMap<String, Vec<MetricMetadata>> {
    let mut all: BTreeMap<String, BTreeSet<MetricMetadata>> = BTreeMap::new();
    for (_, _, target) in shared.scrape.targets_metadata() {
        for (family, m) in target.iter() {
            all.entry(family.to_string())
                .or_default()
                .insert(MetricMetadata {
                    kind: m.kind.as_str().to_string(),
                    help: m.help.clone(),
                    unit: m.unit.clone(),
                });
        }
    }
    for (family, m) in shared.remote_metadata.snapshot() {
        all.entry(family).or_default().insert(m);
    }
    all.into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(name: &str, t: i32, help: &str) -> pb::MetricMetadata {
        pb::MetricMetadata {
            r#type: t,
            metric_family_name: name.into(),
            help: help.into(),
            unit: String::new(),
        }
    }

    #[test]
    fn remote_metadata_dedups_and_is_bounded() {
        let r = RemoteMetadata::default();
        assert_eq!(
            r.record(&[md("a", 1, "A"), md("a", 1, "A"), md("", 1, "x")]),
            0
        );
        assert_eq!(r.record(&[md("a", 2, "A2"), md("b", 99, "B")]), 0);
        let mut s = r.snapshot();
        s.sort();
        let kinds: Vec<_> = s
            .iter()
            .map(|(f, m)| (f.as_str(), m.kind.as_str()))
            .collect();
        // An unknown enum value is "unknown", never an error.
        assert_eq!(kinds, [("a", "counter"), ("a", "gauge"), ("b", "unknown")]);

        let many: Vec<_> = (0..MAX_REMOTE_METADATA + 5)
            .map(|i| md(&format!("m{i}"), 2, ""))
            .collect();
        let dropped = r.record(&many);
        assert_eq!(r.snapshot().len(), MAX_REMOTE_METADATA);
        assert_eq!(dropped, 5 + 3);
    }
}
