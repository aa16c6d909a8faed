//! The query side over the local `Db`: [`DbQueryable`] for the PromQL
//! engine and [`TsdbBackend`] for the HTTP API.
//!
//! Both are called from blocking threads (the API's rule), so they call the
//! synchronous storage engine directly.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use strata_promapi::{
    ApiError, Backend, BuildInfo, HeadStats, MetadataQuery, RequestContext, RuntimeInfo, TsdbStat,
    TsdbStatus, WithWarnings,
};
use strata_promql::{Queryable, SelectHints, SelectResult, StorageError, StorageSeries};
use strata_tsdb::db::Db;
use strata_tsdb::labels::Matcher;

use crate::Shared;

/// `Queryable` over a `Db`: series from blocks and head, merged and sorted
/// by labels, samples decoded for the hinted range.
pub(crate) struct DbQueryable(pub Arc<Db>);

impl Queryable for DbQueryable {
    fn select(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<SelectResult, StorageError> {
        let series = self
            .0
            .select(matchers, hints.start, hints.end)
            .map_err(|e| StorageError(e.to_string()))?;
        let labels_only = hints.func.as_deref() == Some("series");
        let mut out = SelectResult::default();
        for s in series {
            if labels_only {
                // `/series` and label lookups need label sets only; skip
                // decoding (the chunks overlap the range, so data exists).
                out.series.push(StorageSeries {
                    labels: s.labels,
                    samples: Vec::new(),
                    histograms: Vec::new(),
                });
                continue;
            }
            let mut samples = s
                .samples(hints.start, hints.end)
                .map_err(|e| StorageError(e.to_string()))?;
            let hs = s
                .histogram_samples(hints.start, hints.end)
                .map_err(|e| StorageError(e.to_string()))?;
            let mut histograms = Vec::with_capacity(hs.len());
            let mut stale_markers = false;
            for h in hs {
                if h.is_stale() {
                    // The engine knows staleness as a float stale NaN; a
                    // histogram series' marker ends it the same way.
                    samples.push((h.t, h.h.sum));
                    stale_markers = true;
                } else {
                    histograms.push((h.t, strata_promql::histogram::from_stored(h)));
                }
            }
            if stale_markers {
                // Stable: a float and a marker at one timestamp keep order.
                samples.sort_by_key(|p| p.0);
            }
            if samples.is_empty() && histograms.is_empty() {
                continue;
            }
            out.series.push(StorageSeries {
                labels: s.labels,
                samples,
                histograms,
            });
        }
        Ok(out)
    }
}

/// The HTTP API's view of the server.
pub(crate) struct TsdbBackend(pub Arc<Shared>);

impl TsdbBackend {
    /// Union of a label lookup over the selector sets (all series when none).
    fn union(
        &self,
        q: &MetadataQuery,
        f: impl Fn(&Db, &[Matcher], i64, i64) -> strata_tsdb::Result<Vec<String>>,
    ) -> Result<WithWarnings<Vec<String>>, ApiError> {
        let db = &self.0.db;
        let mut all = BTreeSet::new();
        if q.matcher_sets.is_empty() {
            all.extend(f(db, &[], q.start, q.end).map_err(|e| ApiError::internal(e.to_string()))?);
        }
        for set in &q.matcher_sets {
            all.extend(f(db, set, q.start, q.end).map_err(|e| ApiError::internal(e.to_string()))?);
        }
        Ok(WithWarnings::new(all.into_iter().collect()))
    }
}

impl Backend for TsdbBackend {
    fn queryable(&self, _ctx: &RequestContext) -> Result<Arc<dyn Queryable>, ApiError> {
        Ok(Arc::new(DbQueryable(self.0.db.clone())))
    }

    // The index answers label lookups without loading chunks, from the
    // blocks (and head) overlapping the time range, as Prometheus does:
    // block-granular, so names of series just outside the range may appear.
    fn label_names(
        &self,
        _ctx: &RequestContext,
        q: &MetadataQuery,
    ) -> Result<WithWarnings<Vec<String>>, ApiError> {
        self.union(q, |db, ms, mint, maxt| db.label_names_in(ms, mint, maxt))
    }

    fn label_values(
        &self,
        _ctx: &RequestContext,
        name: &str,
        q: &MetadataQuery,
    ) -> Result<WithWarnings<Vec<String>>, ApiError> {
        self.union(q, |db, ms, mint, maxt| {
            db.label_values_in(name, ms, mint, maxt)
        })
    }

    fn build_info(&self) -> BuildInfo {
        BuildInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: String::new(),
            branch: String::new(),
            build_user: String::new(),
            build_date: String::new(),
            go_version: String::new(),
        }
    }

    fn flags(&self) -> BTreeMap<String, String> {
        self.0.opts.flags()
    }

    fn config_yaml(&self) -> String {
        self.0.config.read().to_yaml()
    }

    fn runtime_info(&self) -> RuntimeInfo {
        let s = &self.0;
        RuntimeInfo {
            cwd: std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
            reload_config_success: s.reload_ok.load(Ordering::Relaxed),
            last_config_time: strata_promapi::params::format_system_time(
                *s.last_config_time.read(),
            ),
            gomaxprocs: std::thread::available_parallelism()
                .map(|n| n.get() as i64)
                .unwrap_or(1),
            storage_retention: s.opts.retention_text(),
            ..RuntimeInfo::default()
        }
    }

    fn tsdb_status(&self, limit: usize) -> Result<Option<TsdbStatus>, ApiError> {
        let head = self.0.db.head();
        let mut by_metric = head.series_count_by_metric();
        by_metric.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        by_metric.truncate(limit);
        let empty = head.is_empty();
        Ok(Some(TsdbStatus {
            head_stats: HeadStats {
                num_series: head.num_series() as u64,
                num_label_pairs: 0,
                chunk_count: 0,
                // Prometheus reports the empty head's sentinels as is.
                min_time: if empty { i64::MAX } else { head.min_time() },
                max_time: if empty { i64::MIN } else { head.max_time() },
            },
            series_count_by_metric_name: by_metric
                .into_iter()
                .map(|(name, n)| TsdbStat {
                    name,
                    value: n as u64,
                })
                .collect(),
            ..TsdbStatus::default()
        }))
    }

    fn targets(&self, _ctx: &RequestContext) -> Result<serde_json::Value, ApiError> {
        let mut v = serde_json::to_value(self.0.scrape.targets())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        if let Some(o) = v.as_object_mut() {
            o.entry("droppedTargetCounts")
                .or_insert_with(|| serde_json::json!({}));
        }
        Ok(v)
    }

    fn metadata(
        &self,
        _ctx: &RequestContext,
    ) -> Result<WithWarnings<BTreeMap<String, Vec<strata_promapi::MetricMetadata>>>, ApiError> {
        Ok(WithWarnings::new(crate::metadata::merged(&self.0)))
    }

    fn ready(&self) -> bool {
        self.0.ready.load(Ordering::Acquire)
    }
}
