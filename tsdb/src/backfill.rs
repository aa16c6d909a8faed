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
//! - samples are committed every 5000 appends; an older sample in the same
//!   batch is dropped silently, across batches it is an error, as in promtool.

use std::path::Path;

use crate::block::{write_block, WriteOptions};
use crate::error::{Error, Result};
use crate::head::{Head, HeadOptions, DEFAULT_BLOCK_DURATION};
use crate::meta::BlockMeta;
use crate::textparse::{Entry, Format, Parser};

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

fn min_max_timestamps(input: &[u8]) -> Result<(i64, i64)> {
    let p = Parser::new(input, Format::OpenMetrics);
    let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
    let mut saw_eof = false;
    for e in p {
        match e.map_err(|e| Error::Invalid(format!("getting min and max timestamp: {e}")))? {
            Entry::Sample { t_ms: Some(t), .. } => {
                mint = mint.min(t);
                maxt = maxt.max(t);
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
    if mint == i64::MAX {
        return Ok((0, 0));
    }
    Ok((mint, maxt))
}

/// Writes blocks for `input` (OpenMetrics text) into `out_dir`.
pub fn create_blocks_from_openmetrics(
    input: &[u8],
    out_dir: &Path,
    opts: BackfillOptions<'_>,
) -> Result<Vec<BlockMeta>> {
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let (mint, maxt) = min_max_timestamps(input)?;
    let bd = compatible_block_duration(opts.max_block_duration);
    let mint = bd * mint.div_euclid(bd);
    let batch = opts.max_samples_in_appender.max(1);
    let mut written = Vec::new();
    let mut next_sample_ts = i64::MAX;
    let mut t = mint;
    while t <= maxt {
        let upper = t + bd;
        if next_sample_ts != i64::MAX && next_sample_ts >= upper {
            t = upper;
            continue;
        }
        next_sample_ts = i64::MAX;
        let head = Head::new(HeadOptions {
            chunk_range: 2 * bd,
        });
        let mut app = head.appender();
        for e in Parser::new(input, Format::OpenMetrics) {
            let Entry::Sample {
                labels,
                t_ms: Some(ts),
                value,
            } = e.map_err(parse_error)?
            else {
                continue;
            };
            if ts < t {
                continue;
            }
            if ts >= upper {
                next_sample_ts = next_sample_ts.min(ts);
                continue;
            }
            app.append(&labels, ts, value)
                .map_err(|e| Error::Invalid(format!("add sample: {e}")))?;
            if app.len() >= batch {
                app.commit()?;
                app = head.appender();
            }
        }
        app.commit()?;
        if !head.is_empty() {
            let series = head.chunk_series_in(i64::MIN, i64::MAX);
            let meta = write_block(
                out_dir,
                &series,
                &WriteOptions {
                    min_time: head.min_time(),
                    max_time: head.max_time() + 1,
                    compaction: None,
                    segment_size: None,
                },
            )?;
            if let Some(m) = meta {
                (opts.on_block)(&m);
                written.push(m);
            }
        }
        t = upper;
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
