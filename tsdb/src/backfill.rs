//! Backfill: OpenMetrics text in, Prometheus blocks out.
//!
//! Mirrors `promtool tsdb create-blocks-from openmetrics` (Prometheus 2.42,
//! `cmd/promtool/backfill.go`) closely enough that, for the same input, the
//! `index` and `chunks/*` files are byte-identical to promtool's:
//! - one pass finds the min and max timestamp; the input must end in `# EOF`
//!   and every sample needs a timestamp (OpenMetrics seconds → ms);
//! - the time axis is split on the block-duration grid (2h, or the largest
//!   of 2h·3ⁿ not above `--max-block-duration`); each range is filled by a
//!   fresh head whose chunk range is twice the block duration (promtool's
//!   trick to accept a whole block's worth of samples) and flushed as one
//!   block `[first sample, last sample + 1)`;
//! - samples are committed every 5000 appends per block range; an older
//!   sample in the same batch is dropped silently, across batches it is an
//!   error, as in promtool;
//! - unlike promtool, one parse fills up to 12 block ranges at once (see
//!   `RANGES_PER_PASS`), which yields the same blocks with a fraction of the
//!   parsing.

use std::path::Path;

use crate::block::{write_block, WriteOptions};
use crate::error::{Error, Result};
use crate::head::{Head, HeadOptions, DEFAULT_BLOCK_DURATION};
use crate::meta::BlockMeta;
use crate::textparse::{Entry, Format, Parser};

/// How many block ranges one parse of the input fills. promtool parses the
/// input once per block range; holding several ranges' heads at once (their
/// chunks are compressed, so this is cheap) divides the parsing work by this
/// factor while keeping memory bounded for inputs that span years.
const RANGES_PER_PASS: usize = 12;

/// One block range being filled: its head, and the samples of the current
/// batch. Appends are deferred to the batch's commit: nothing is committed
/// in between, so every sample is checked against the same state as in
/// promtool, where it is appended at once and committed with the batch.
struct Window {
    head: Head,
    pending: Vec<(crate::labels::Labels, i64, f64)>,
}

impl Window {
    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut app = self.head.appender();
        for (l, t, v) in self.pending.drain(..) {
            app.append(&l, t, v)
                .map_err(|e| Error::Invalid(format!("add sample: {e}")))?;
        }
        app.commit()?;
        Ok(())
    }
}

/// Samples per commit, promtool's default `maxSamplesInAppender`.
pub const DEFAULT_MAX_SAMPLES_IN_APPENDER: usize = 5000;

/// The block duration promtool picks for a `--max-block-duration`.
pub fn compatible_block_duration(max_block_duration: i64) -> i64 {
    if max_block_duration <= DEFAULT_BLOCK_DURATION {
        return DEFAULT_BLOCK_DURATION;
    }
    // Exponential ranges 2h, 6h, 18h, ... (10 of them, factor 3).
    let mut ranges = Vec::with_capacity(10);
    let mut r = DEFAULT_BLOCK_DURATION;
    for _ in 0..10 {
        ranges.push(r);
        r = r.saturating_mul(3);
    }
    let mut idx = ranges.len() - 1;
    for (i, v) in ranges.iter().enumerate() {
        if *v > max_block_duration {
            idx = i.saturating_sub(1);
            break;
        }
    }
    ranges[idx]
}

/// Progress callbacks and options for [`create_blocks_from_openmetrics`].
pub struct BackfillOptions<'a> {
    pub max_block_duration: i64,
    pub max_samples_in_appender: usize,
    /// Called after each block is written.
    pub on_block: &'a mut dyn FnMut(&BlockMeta),
}

fn parse_error(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("parse: {e}"))
}

/// The first pass (promtool's "getting min and max timestamp"): validates
/// the input and returns the start of every block range holding a sample,
/// in time order. Only ranges with samples are kept, so a sparse input
/// spanning years does not make later passes walk empty ranges.
fn block_ranges(input: &[u8], bd: i64) -> Result<Vec<i64>> {
    let mut ranges = std::collections::BTreeSet::new();
    let mut saw_eof = false;
    for e in Parser::new(input, Format::OpenMetrics) {
        match e.map_err(|e| Error::Invalid(format!("getting min and max timestamp: {e}")))? {
            Entry::Sample { t_ms: Some(t), .. } => {
                ranges.insert(t.div_euclid(bd) * bd);
            }
            Entry::Sample {
                labels, t_ms: None, ..
            } => {
                return Err(Error::Invalid(format!(
                    "expected timestamp for series {labels}, got none"
                )))
            }
            Entry::Eof => saw_eof = true,
            _ => {}
        }
    }
    if !saw_eof {
        return Err(Error::Invalid(
            "getting min and max timestamp: data does not end with # EOF".into(),
        ));
    }
    Ok(ranges.into_iter().collect())
}

/// Writes blocks for `input` (OpenMetrics text) into `out_dir`.
pub fn create_blocks_from_openmetrics(
    input: &[u8],
    out_dir: &Path,
    opts: BackfillOptions<'_>,
) -> Result<Vec<BlockMeta>> {
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let bd = compatible_block_duration(opts.max_block_duration);
    let ranges = block_ranges(input, bd)?;
    let batch = opts.max_samples_in_appender.max(1);
    let mut written = Vec::new();
    for group in ranges.chunks(RANGES_PER_PASS) {
        let mut windows: Vec<Window> = group
            .iter()
            .map(|_| Window {
                head: Head::new(HeadOptions {
                    chunk_range: 2 * bd,
                }),
                pending: Vec::new(),
            })
            .collect();
        let (lo, hi) = (group[0], group[group.len() - 1] + bd);
        for e in Parser::new(input, Format::OpenMetrics) {
            let Entry::Sample {
                labels,
                t_ms: Some(ts),
                value,
            } = e.map_err(parse_error)?
            else {
                continue;
            };
            if ts < lo || ts >= hi {
                continue;
            }
            let start = ts.div_euclid(bd) * bd;
            let Ok(i) = group.binary_search(&start) else {
                continue;
            };
            let w = &mut windows[i];
            w.pending.push((labels, ts, value));
            if w.pending.len() >= batch {
                w.flush()?;
            }
        }
        for w in &mut windows {
            w.flush()?;
            if w.head.is_empty() {
                continue;
            }
            let series = w.head.chunk_series_in(i64::MIN, i64::MAX);
            let meta = write_block(
                out_dir,
                &series,
                &WriteOptions {
                    min_time: w.head.min_time(),
                    max_time: w.head.max_time() + 1,
                    compaction: None,
                    segment_size: None,
                },
            )?;
            if let Some(m) = meta {
                (opts.on_block)(&m);
                written.push(m);
            }
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_duration_follows_promtool() {
        let h = 3_600_000;
        assert_eq!(compatible_block_duration(0), 2 * h);
        assert_eq!(compatible_block_duration(2 * h), 2 * h);
        assert_eq!(compatible_block_duration(24 * h), 18 * h);
        assert_eq!(compatible_block_duration(6 * h), 6 * h);
        assert_eq!(compatible_block_duration(i64::MAX), 2 * h * 3i64.pow(9));
    }

    #[test]
    fn missing_eof_and_timestamp_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let mut cb = |_: &BlockMeta| {};
        let mut nop = |_: &BlockMeta| {};
        let mut nop2 = |_: &BlockMeta| {};
        let e = create_blocks_from_openmetrics(
            b"a 1 1\n",
            d.path(),
            BackfillOptions {
                max_block_duration: 0,
                max_samples_in_appender: 5000,
                on_block: &mut nop,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("# EOF"), "{e}");
        let e = create_blocks_from_openmetrics(
            b"a 1\n# EOF\n",
            d.path(),
            BackfillOptions {
                max_block_duration: 0,
                max_samples_in_appender: 5000,
                on_block: &mut nop2,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("expected timestamp"), "{e}");
        let ok = create_blocks_from_openmetrics(
            b"a{x=\"1\"} 1 1700000000\na{x=\"1\"} 2 1700000015.5\n# EOF\n",
            d.path(),
            BackfillOptions {
                max_block_duration: 0,
                max_samples_in_appender: 5000,
                on_block: &mut cb,
            },
        )
        .unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].min_time, 1_700_000_000_000);
        assert_eq!(ok[0].max_time, 1_700_000_015_501);
        assert_eq!(ok[0].stats.num_samples, 2);
    }
}
