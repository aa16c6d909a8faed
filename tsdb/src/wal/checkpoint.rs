//! Checkpoints: the WAL prefix compacted to what the head still needs.
//!
//! When the head drops old data it rewrites segments `[from, to]` (plus the
//! previous checkpoint) into `checkpoint.<to %08d>/`, a directory in the
//! segment format, keeping:
//!
//! - series for which `keep(ref)` is true (the head still has them);
//! - samples, histogram samples and exemplars with `t >= mint`;
//! - tombstones whose interval still reaches `mint` (`maxt >= mint`);
//! - for each kept series, only its latest metadata (written last);
//!
//! and dropping every other record type (mmap markers, unknown types), as
//! Prometheus 2.42's `wlog.Checkpoint` does. Replay then reads the newest
//! checkpoint followed by the segments after `to`, and the caller can delete
//! segments `<= to` with [`Wal::truncate`](super::Wal::truncate).
//!
//! The checkpoint is built in `checkpoint.N.tmp`, fsynced, renamed into
//! place and the parent directory fsynced, so a crash leaves either the old
//! state or the complete new checkpoint (a stale `.tmp` is ignored by
//! readers and replaced by the next attempt).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::record::{self, RefMetadata, RefSample, RefSeries, Stone};
use super::{sync_dir, ReadError, Wal, WalOptions, WalReader};
use crate::error::{Error, IoContext, Result};

const PREFIX: &str = "checkpoint.";

/// Records flushed to the checkpoint in batches of about this many bytes.
const FLUSH_BYTES: usize = 1024 * 1024;

/// Counts of what a checkpoint processed and dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    pub dropped_series: usize,
    /// Float and histogram samples.
    pub dropped_samples: usize,
    pub dropped_tombstones: usize,
    pub dropped_exemplars: usize,
    pub dropped_metadata: usize,
    pub total_series: usize,
    pub total_samples: usize,
    pub total_tombstones: usize,
    pub total_exemplars: usize,
    pub total_metadata: usize,
}

/// The name of the checkpoint directory covering segments up to `index`.
pub fn checkpoint_name(index: u32) -> String {
    format!("{PREFIX}{index:08}")
}

/// Checkpoint directories in `dir`, sorted by index.
fn list_checkpoints(dir: &Path) -> Result<Vec<(u32, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(digits) = name.strip_prefix(PREFIX) else {
            continue;
        };
        // "checkpoint.00000005.tmp" and other non-numeric suffixes are not
        // checkpoints (yet).
        let Some(index) = super::parse_index(digits) else {
            continue;
        };
        if !entry.file_type().at(entry.path())?.is_dir() {
            return Err(Error::corrupted(
                entry.path(),
                "checkpoint is not a directory",
            ));
        }
        out.push((index, entry.path()));
    }
    out.sort_unstable_by_key(|c| c.0);
    Ok(out)
}

/// The newest checkpoint in `dir` and the last segment index it covers.
pub fn last_checkpoint(dir: &Path) -> Result<Option<(PathBuf, u32)>> {
    Ok(list_checkpoints(dir)?.pop().map(|(i, p)| (p, i)))
}

/// Deletes the checkpoints with index `< max_index`.
pub fn delete_checkpoints(dir: &Path, max_index: u32) -> Result<()> {
    for (index, path) in list_checkpoints(dir)? {
        if index >= max_index {
            break;
        }
        fs::remove_dir_all(&path).at(&path)?;
    }
    Ok(())
}

/// Removes the temporary directory unless the checkpoint was committed.
struct TmpDir(Option<PathBuf>);

impl Drop for TmpDir {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_dir_all(p);
        }
    }
}

/// Writes `dir/checkpoint.<to>` from the last checkpoint and segments
/// `[from, to]` (see the module docs for what is kept), then deletes older
/// checkpoints. Segments below the last checkpoint are ignored. Any read
/// corruption fails the checkpoint: repairing here would silently lose
/// series the head still has.
pub fn checkpoint(
    dir: &Path,
    from: u32,
    to: u32,
    keep: &dyn Fn(u64) -> bool,
    mint: i64,
) -> Result<CheckpointStats> {
    info!(dir = %dir.display(), from, to, mint, "creating WAL checkpoint");
    let last = last_checkpoint(dir)?;
    let mut ranges: Vec<(&Path, u32, Option<u32>)> = Vec::new();
    let mut from = from;
    if let Some((cp_dir, cp_index)) = &last {
        let next = cp_index.saturating_add(1);
        if from > next {
            return Err(Error::Invalid(format!(
                "unexpected gap to last checkpoint {}: expected segment {next}, requested {from}",
                cp_dir.display()
            )));
        }
        from = next;
        ranges.push((cp_dir, 0, None));
    }
    // An empty range (from > to) still re-reads the previous checkpoint.
    if from <= to {
        ranges.push((dir, from, Some(to)));
    }
    let mut reader = WalReader::open_ranges(&ranges)?;

    let final_dir = dir.join(checkpoint_name(to));
    let tmp_path = dir.join(format!("{}.tmp", checkpoint_name(to)));
    if tmp_path.exists() {
        fs::remove_dir_all(&tmp_path).at(&tmp_path)?;
    }
    let mut tmp = TmpDir(Some(tmp_path.clone()));
    let mut cp = Wal::open(&tmp_path, WalOptions::default())?;

    let mut stats = CheckpointStats::default();
    let mut buf: Vec<u8> = Vec::new();
    // Ends of the records batched in `buf`.
    let mut ends: Vec<usize> = Vec::new();
    let mut latest_metadata: HashMap<u64, RefMetadata> = HashMap::new();

    loop {
        let rec = match reader.next_record() {
            Ok(Some(rec)) => rec,
            Ok(None) => break,
            Err(ReadError::Io(e)) => return Err(e),
            Err(ReadError::Corruption(c)) => return Err(ReadError::Corruption(c).into()),
        };
        let start = buf.len();
        let at = reader.position();
        let bad = |what: &str, e: record::DecodeError| {
            let at = match at {
                Some((seg, off)) => format!("ending at segment {seg} offset {off}"),
                None => String::new(),
            };
            Error::corrupted(dir, format!("checkpoint: {what} record {at}: {e}"))
        };
        let rec = rec.as_slice();
        match rec.first().copied().unwrap_or(0) {
            record::SERIES => {
                let series = record::decode_series(rec).map_err(|e| bad("series", e))?;
                let kept: Vec<RefSeries> = series
                    .iter()
                    .filter(|s| keep(s.series_ref))
                    .cloned()
                    .collect();
                stats.total_series += series.len();
                stats.dropped_series += series.len() - kept.len();
                if !kept.is_empty() {
                    record::encode_series(&kept, &mut buf);
                }
            }
            record::SAMPLES => {
                let samples = record::decode_samples(rec).map_err(|e| bad("samples", e))?;
                let kept: Vec<RefSample> =
                    samples.iter().filter(|s| s.t >= mint).copied().collect();
                stats.total_samples += samples.len();
                stats.dropped_samples += samples.len() - kept.len();
                if !kept.is_empty() {
                    record::encode_samples(&kept, &mut buf);
                }
            }
            record::HISTOGRAM_SAMPLES | record::FLOAT_HISTOGRAM_SAMPLES => {
                let f = record::filter_histograms(rec, mint).map_err(|e| bad("histogram", e))?;
                stats.total_samples += f.total;
                stats.dropped_samples += f.total - f.kept;
                if let Some(r) = f.record {
                    buf.extend_from_slice(&r);
                }
            }
            record::TOMBSTONES => {
                let stones = record::decode_tombstones(rec).map_err(|e| bad("tombstones", e))?;
                let kept: Vec<Stone> = stones.iter().filter(|s| s.maxt >= mint).copied().collect();
                stats.total_tombstones += stones.len();
                stats.dropped_tombstones += stones.len() - kept.len();
                if !kept.is_empty() {
                    record::encode_tombstones(&kept, &mut buf);
                }
            }
            record::EXEMPLARS => {
                let ex = record::decode_exemplars(rec).map_err(|e| bad("exemplars", e))?;
                let kept: Vec<_> = ex.iter().filter(|e| e.t >= mint).cloned().collect();
                stats.total_exemplars += ex.len();
                stats.dropped_exemplars += ex.len() - kept.len();
                if !kept.is_empty() {
                    record::encode_exemplars(&kept, &mut buf);
                }
            }
            record::METADATA => {
                let md = record::decode_metadata(rec).map_err(|e| bad("metadata", e))?;
                stats.total_metadata += md.len();
                let mut new_refs = 0;
                for m in md.iter().filter(|m| keep(m.series_ref)) {
                    if latest_metadata.insert(m.series_ref, m.clone()).is_none() {
                        new_refs += 1;
                    }
                }
                // Superseded and dropped entries both count as dropped.
                stats.dropped_metadata += md.len() - new_refs;
            }
            // Mmap markers (WBL only) and types from newer versions.
            _ => {}
        }
        if buf.len() > start {
            ends.push(buf.len());
        }
        if buf.len() > FLUSH_BYTES {
            log_batch(&mut cp, &buf, &ends)?;
            buf.clear();
            ends.clear();
        }
    }
    log_batch(&mut cp, &buf, &ends)?;
    if !latest_metadata.is_empty() {
        let mut md: Vec<RefMetadata> = latest_metadata.into_values().collect();
        md.sort_unstable_by_key(|m| m.series_ref);
        buf.clear();
        record::encode_metadata(&md, &mut buf);
        cp.log(&[&buf])?;
    }
    cp.close()?;
    sync_dir(&tmp_path)?;

    // A checkpoint with this index can exist when nothing new was covered;
    // the new one supersedes it (everything in it was read above).
    if final_dir.exists() {
        fs::remove_dir_all(&final_dir).at(&final_dir)?;
    }
    fs::rename(&tmp_path, &final_dir).at(&final_dir)?;
    tmp.0 = None;
    sync_dir(dir)?;

    // The new checkpoint is complete; failing to delete old ones only costs
    // disk space until the next checkpoint retries.
    if let Err(e) = delete_checkpoints(dir, to) {
        warn!(dir = %dir.display(), error = %e, "deleting old WAL checkpoints failed");
    }
    Ok(stats)
}

fn log_batch(cp: &mut Wal, buf: &[u8], ends: &[usize]) -> Result<()> {
    let mut recs: Vec<&[u8]> = Vec::with_capacity(ends.len());
    let mut start = 0;
    for &end in ends {
        recs.push(&buf[start..end]);
        start = end;
    }
    cp.log(&recs)
}
