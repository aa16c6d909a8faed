//! The write-ahead log, byte-compatible with Prometheus 2.42's `tsdb/wlog`.
//!
//! The head appends every series, sample batch and tombstone here before it
//! acknowledges the write; after a crash the head is rebuilt by replaying the
//! newest checkpoint and then the segments after it. Prometheus 2.42 reads a
//! WAL written by this module and this module reads a WAL written by
//! Prometheus (`tests/fixtures/wal-prometheus-2.42`).
//!
//! # On-disk layout
//!
//! ```text
//! wal/
//!   00000000 00000001 ...        segments, "%08d", consecutive indexes
//!   checkpoint.00000005/00000000 a checkpoint: the same segment format,
//!                                covering everything up to segment 5
//! ```
//!
//! A segment is a sequence of 32 KiB **pages**. A page holds **fragments**;
//! a fragment never crosses a page boundary:
//!
//! ```text
//! fragment = type u8 | len u16 BE | crc32c u32 BE (of data) | data[len]
//!
//! type:  bits 0-2  0 = padding: the rest of the page is zeros
//!                  1 = full record    2 = first fragment
//!                  3 = middle         4 = last fragment
//!        bit 3     the record was snappy-compressed (block format) before
//!                  it was split; set on every fragment of that record
//!        bits 4-7  zero (newer Prometheus uses 0x10 for zstd; rejected)
//! ```
//!
//! A record is (optionally) compressed, then cut into as many fragments as it
//! takes to fill the current page and the following ones. When fewer than 7
//! bytes (a header) are left in a page, they are zero-filled. A record never
//! crosses a *segment* boundary: one that does not fit in what is left of the
//! segment starts a new segment (which may then grow beyond the nominal
//! segment size). Because of that, a torn write can only damage the newest
//! segment, and whole old segments can be deleted after a checkpoint.
//!
//! Only the last page of the newest segment may be short: cutting a segment
//! (and [`Wal::close`]) zero-fills its last page, as Prometheus does.
//!
//! Record payloads (series, samples, tombstones, ...) are in [`record`].
//!
//! # Durability
//!
//! - When [`Wal::log`] returns `Ok`, every byte of the batch has been handed
//!   to the kernel with `write(2)`. The records survive the death of this
//!   process (even `kill -9`), but not a power loss or kernel crash.
//! - [`Wal::sync`] adds `fsync(2)` of the current segment (and of the
//!   directory when a segment file was created since the last sync): every
//!   record logged before it survives power loss. Cutting a segment fsyncs
//!   the segment it closes and the directory, so closed segments are always
//!   durable and only the newest one can be torn.
//! - A batch is written with one `write_all` per segment it touches. If the
//!   write fails, the segment is truncated back to where the batch started,
//!   so no record is ever half-written by a *failed* call; if even that
//!   fails, the `Wal` refuses further writes. When a batch needed a new
//!   segment, the records placed in the earlier segment stay logged even if
//!   the call fails later.
//! - After a crash, the tail of the newest segment may be torn: a fragment
//!   header or data cut short, a record missing its last fragment, or (after
//!   a power loss) garbage or zeros where unsynced data was. Reading reports
//!   that as a [`CorruptionInfo`]; [`repair`] truncates the segment at the end
//!   of the last complete record and deletes every later segment. The torn
//!   region always starts after the last record that is safe: after a
//!   process crash, every record `log` acknowledged is intact (the kernel
//!   had all of it); after a power loss, every record before the last `sync`
//!   is. So repair drops only records whose `log` call had not returned (or,
//!   after power loss, that were never synced).
//!   Corruption in the *middle* of the log (bit rot) is handled the same way
//!   and does lose what follows; that is Prometheus' policy too, because
//!   later records may refer to series created in the lost ones.
//!
//! # Protocol on start
//!
//! 1. Replay: [`checkpoint::last_checkpoint`], read it with
//!    [`WalReader::open_segments`], then read the segments after it.
//! 2. On [`ReadError::Corruption`] in the WAL directory itself: [`repair`].
//!    (Corruption inside a checkpoint cannot be repaired: the series it held
//!    are gone. Prometheus does not repair checkpoints either.)
//! 3. [`Wal::open`], which starts a new segment after the last one. Opening
//!    first and calling [`Wal::repair`] before logging anything also works;
//!    that is the order Prometheus uses.
//!
//! Never log into a WAL whose tail has not been read and repaired: repairing
//! later would delete the segments written since.

pub mod checkpoint;
pub mod reader;
pub mod record;
pub mod segment;

#[cfg(test)]
mod tests;

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

pub use checkpoint::{checkpoint, delete_checkpoints, last_checkpoint, CheckpointStats};
pub use reader::{repair, CorruptionInfo, ReadError, RepairReport, WalReader};
pub use record::{RefSample, RefSeries, Stone};
pub use segment::{Wal, WalOptions};

/// Size of a page: the unit of padding and the bound of a fragment.
pub const PAGE_SIZE: usize = 32 * 1024;
/// `type u8 | len u16 | crc u32`.
pub const FRAGMENT_HEADER_SIZE: usize = 7;
/// Prometheus' `DefaultSegmentSize`.
pub const DEFAULT_SEGMENT_SIZE: usize = 128 * 1024 * 1024;

/// Fragment type values (low three bits of the type byte).
pub(crate) mod frag {
    pub const PAD: u8 = 0;
    pub const FULL: u8 = 1;
    pub const FIRST: u8 = 2;
    pub const MIDDLE: u8 = 3;
    pub const LAST: u8 = 4;
    pub const KIND_MASK: u8 = 0b111;
    /// The record was snappy-compressed before it was fragmented.
    pub const SNAPPY: u8 = 0b1000;
}

/// The file name of segment `index`: `%08d`.
pub fn segment_name(index: u32) -> String {
    format!("{index:08}")
}

/// The path of segment `index` in `dir`.
pub fn segment_path(dir: &Path, index: u32) -> PathBuf {
    dir.join(segment_name(index))
}

/// Parses a segment file name. Only all-digit names count, so that
/// `00000003.repair` or `checkpoint.00000003` are never taken for segments.
pub(crate) fn parse_index(name: &str) -> Option<u32> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// The segments of `dir`, sorted by index. A gap in the sequence is an
/// error: replaying across it would silently skip records.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u32, PathBuf)>> {
    let mut segs = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let Some(index) = name.to_str().and_then(parse_index) else {
            continue;
        };
        if entry.file_type().at(entry.path())?.is_file() {
            segs.push((index, entry.path()));
        }
    }
    segs.sort_unstable_by_key(|s| s.0);
    for w in segs.windows(2) {
        if w[0].0.checked_add(1) != Some(w[1].0) {
            return Err(Error::corrupted(
                dir,
                format!(
                    "WAL segments are not sequential: {} is followed by {}",
                    segment_name(w[0].0),
                    segment_name(w[1].0)
                ),
            ));
        }
    }
    Ok(segs)
}

/// fsyncs a directory so that file creations, renames and deletions in it
/// are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Bytes of all files under `dir`, recursively (Prometheus' `DirSize`).
pub(crate) fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let path = entry.path();
        let meta = entry.metadata().at(&path)?;
        if meta.is_dir() {
            total += dir_size(&path)?;
        } else {
            total += meta.len();
        }
    }
    Ok(total)
}
