//! History for a simulated cluster, written as Prometheus blocks.
//!
//! [`backfill`] evaluates the [`crate::model`] at every scrape-interval step
//! of a time range and writes the samples into a TSDB data directory the
//! way `promtool tsdb create-blocks-from` does: the range is cut on a
//! block-duration grid (2h, Prometheus' and Thanos' block size), each piece
//! is filled into a fresh in-memory head and written with
//! [`strata_tsdb::block::write_block`]. Series carry the labels the scrape
//! would give them (`job`, `instance`, and `up` per target), so the live
//! scrapes continue the same series. The `cluster` label is not stored: it
//! is the TSDB's external label, added by the sidecar, as in Prometheus.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use strata_tsdb::block::{write_block, WriteOptions};
use strata_tsdb::head::{Head, HeadOptions};
use strata_tsdb::meta::BlockMeta;
use strata_tsdb::Labels;

use crate::model::{Cluster, Value};
use crate::Error;

/// Block duration of backfilled history: Prometheus' 2h.
pub const BLOCK_MS: i64 = 2 * 3600 * 1000;

/// Samples appended per commit.
const BATCH: usize = 5000;

/// What to write.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// First timestamp (ms, inclusive); rounded up to the interval grid.
    pub start_ms: i64,
    /// End (ms, exclusive).
    pub end_ms: i64,
    pub interval_ms: i64,
}

impl Plan {
    /// The sample timestamps of the plan, on the interval grid.
    pub fn timestamps(&self) -> impl Iterator<Item = i64> {
        let step = self.interval_ms.max(1);
        let first = self.start_ms.div_euclid(step) * step
            + if self.start_ms.rem_euclid(step) == 0 {
                0
            } else {
                step
            };
        let end = self.end_ms;
        (0..)
            .map(move |i: i64| first + i * step)
            .take_while(move |t| *t < end)
    }

    /// Number of blocks the plan writes (block-duration ranges with samples).
    pub fn num_blocks(&self) -> usize {
        let mut ranges: Vec<i64> = self.timestamps().map(|t| t.div_euclid(BLOCK_MS)).collect();
        ranges.dedup();
        ranges.len()
    }
}

/// Every series of the cluster with its full label set (scrape target
/// labels included) and value function; `up` is 1 for every target.
pub fn series_of(cluster: &Cluster) -> Vec<(Labels, Value)> {
    let mut out = Vec::with_capacity(cluster.num_series());
    for t in &cluster.targets {
        let target = [("job", t.job.as_str()), ("instance", t.instance.as_str())];
        out.push((
            Labels::from_pairs(target.iter().copied().chain([("__name__", "up")])),
            Value::Const(1.0),
        ));
        for f in &t.families {
            for s in &f.series {
                let pairs = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .chain(target.iter().copied())
                    .chain([("__name__", s.name.as_str())]);
                out.push((Labels::from_pairs(pairs), s.value.clone()));
            }
        }
    }
    out
}

/// Writes the plan's samples for `cluster` as blocks under `dir`, calling
/// `on_block(meta, done, total)` after each. Stops with
/// [`Error::Interrupted`] when `cancel` is set (blocks already written stay
/// complete; see the caller for cleanup).
pub fn backfill(
    cluster: &Cluster,
    dir: &Path,
    plan: Plan,
    cancel: &AtomicBool,
    on_block: &mut dyn FnMut(&BlockMeta, usize, usize),
) -> Result<Vec<BlockMeta>, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let series = series_of(cluster);
    let total = plan.num_blocks();
    let mut written = Vec::new();
    let mut stamps = plan.timestamps().peekable();
    while let Some(&first) = stamps.peek() {
        let range_end = (first.div_euclid(BLOCK_MS) + 1) * BLOCK_MS;
        // A chunk range of twice the block lets the head take a whole
        // block's worth of samples (promtool does the same).
        let head = Head::new(HeadOptions {
            chunk_range: 2 * BLOCK_MS,
        });
        let mut app = head.appender();
        while let Some(t) = stamps.next_if(|t| *t < range_end) {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            let secs = t as f64 / 1000.0;
            for (labels, value) in &series {
                app.append(labels, t, value.at(secs))?;
                if app.len() >= BATCH {
                    app.commit()?;
                    app = head.appender();
                }
            }
        }
        app.commit()?;
        if head.is_empty() {
            continue;
        }
        let chunks = head.chunk_series_in(i64::MIN, i64::MAX);
        let meta = write_block(
            dir,
            &chunks,
            &WriteOptions {
                min_time: head.min_time(),
                max_time: head.max_time() + 1,
                compaction: None,
                segment_size: None,
            },
        )?;
        if let Some(m) = meta {
            on_block(&m, written.len() + 1, total);
            written.push(m);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_on_the_grid_and_end_exclusive() {
        let p = Plan {
            start_ms: 1001,
            end_ms: 60_000,
            interval_ms: 15_000,
        };
        let ts: Vec<i64> = p.timestamps().collect();
        assert_eq!(ts, vec![15_000, 30_000, 45_000]);
        assert_eq!(p.num_blocks(), 1);
        let p = Plan {
            start_ms: BLOCK_MS - 15_000,
            end_ms: BLOCK_MS + 15_001,
            interval_ms: 15_000,
        };
        assert_eq!(p.timestamps().count(), 3);
        assert_eq!(p.num_blocks(), 2);
    }
}
