//! The WAL writer: [`Wal`] appends records to the newest segment.
//!
//! The writer keeps no page buffer between calls. Every [`Wal::log`] call
//! writes all its bytes before returning, so the position in the current
//! page is simply `segment length % PAGE_SIZE`. A call lays its fragments
//! out in a scratch buffer (splitting records at page ends and zero-filling
//! page tails exactly where Prometheus' page buffer would) and hands the
//! buffer to the kernel in one `write_all` per segment. For the same records
//! the bytes are the ones Prometheus writes (checked against the real
//! Prometheus fixture, snappy blocks included). One deliberate difference: a
//! record too big for a whole segment goes into the current segment when
//! that is still empty, where Prometheus would first cut an empty segment.
//!
//! See the [module docs](super) for the durability contract.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use tracing::warn;

use super::{dir_size, frag, list_segments, segment_path, sync_dir};
use super::{CorruptionInfo, RepairReport, DEFAULT_SEGMENT_SIZE, FRAGMENT_HEADER_SIZE, PAGE_SIZE};
use crate::error::{Error, IoContext, Result};

/// Writer options.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Nominal segment size; a multiple of 32 KiB. A record that does not fit
    /// in the rest of a segment starts the next one.
    pub segment_size: usize,
    /// Snappy-compress records (kept only when that makes them smaller).
    /// Prometheus 2.42 defaults to true.
    pub compress: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
            compress: true,
        }
    }
}

/// The segment being written.
#[derive(Debug)]
struct Active {
    index: u32,
    path: PathBuf,
    file: File,
    /// Bytes in the file, all written by completed calls.
    len: u64,
}

/// Gives back the memory of a buffer that one large batch (the series
/// records of a burst of new series, say) grew far beyond what this call
/// needed, so that a one-off burst does not stay on the heap for good.
/// Steady batches need the same size every time and never shrink.
pub(crate) fn shrink_oversized(buf: &mut Vec<u8>, used: usize) {
    if buf.capacity() > 64 * 1024 && buf.capacity() > 2 * used {
        buf.clear();
        buf.shrink_to(used);
    }
}

/// An open write-ahead log. Not thread-safe by itself: the head serialises
/// appends (as Prometheus does with a mutex).
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    active: Active,
    /// Bytes of the batch being laid out, for the active segment.
    scratch: Vec<u8>,
    snappy: snap::raw::Encoder,
    snappy_buf: Vec<u8>,
    /// A segment was created since the directory was last fsynced.
    dir_dirty: bool,
    /// Set when a failed write could not be rolled back: the segment may end
    /// in a partial record, so appending more would bury it mid-log.
    poisoned: Option<String>,
    /// Whether anything was logged since `open` (guards [`Wal::repair`]).
    logged: bool,
}

impl Wal {
    /// Opens `dir` (creating it) and starts a new segment after the last
    /// existing one. Read and, if needed, [`repair`](super::repair) the
    /// existing segments first (see the module docs).
    pub fn open(dir: &Path, opts: WalOptions) -> Result<Self> {
        if opts.segment_size == 0 || !opts.segment_size.is_multiple_of(PAGE_SIZE) {
            return Err(Error::Invalid(format!(
                "WAL segment size {} is not a positive multiple of {PAGE_SIZE}",
                opts.segment_size
            )));
        }
        fs::create_dir_all(dir).at(dir)?;
        let next = match Self::segment_range(dir)? {
            Some((_, last)) => next_index(dir, last)?,
            None => 0,
        };
        let active = create_segment(dir, next)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            opts,
            active,
            scratch: Vec::new(),
            snappy: snap::raw::Encoder::new(),
            snappy_buf: Vec::new(),
            dir_dirty: true,
            poisoned: None,
            logged: false,
        })
    }

    /// Appends records. Each record is written whole or (if the call fails)
    /// not at all; see the module docs for what `Ok` guarantees.
    pub fn log(&mut self, records: &[&[u8]]) -> Result<()> {
        self.check_poisoned()?;
        // Set before writing: a failed call may still leave records of this
        // batch in an earlier segment.
        self.logged |= !records.is_empty();
        self.scratch.clear();
        let mut snappy_need = 0;
        for rec in records {
            let (payload, compressed) = if self.opts.compress && !rec.is_empty() {
                let need = snap::raw::max_compress_len(rec.len());
                snappy_need = snappy_need.max(need);
                self.snappy_buf.resize(need, 0);
                match self.snappy.compress(rec, &mut self.snappy_buf) {
                    // Compression that does not save space is not used, so
                    // incompressible records cost nothing to decode.
                    Ok(n) if n < rec.len() => (&self.snappy_buf[..n], true),
                    _ => (*rec, false),
                }
            } else {
                (*rec, false)
            };

            let pos = self.active.len + self.scratch.len() as u64;
            if pos > 0 && payload.len() as u64 > room_in_segment(pos, self.opts.segment_size) {
                // Write out what belongs to this segment, then move on. An
                // empty segment is never cut: the record would not fit in
                // the next one either, so it gets this one, oversized.
                write_batch(&mut self.active, &self.scratch, &mut self.poisoned)?;
                self.scratch.clear();
                cut_segment(
                    &self.dir,
                    &mut self.active,
                    &mut self.poisoned,
                    &mut self.dir_dirty,
                )?;
            }
            append_fragments(&mut self.scratch, self.active.len, payload, compressed);
        }
        let res = write_batch(&mut self.active, &self.scratch, &mut self.poisoned);
        let used = self.scratch.len();
        shrink_oversized(&mut self.scratch, used);
        shrink_oversized(&mut self.snappy_buf, snappy_need);
        res
    }

    /// fsyncs the current segment (and the directory if a segment was created
    /// since the last sync): everything logged so far survives power loss.
    pub fn sync(&mut self) -> Result<()> {
        self.active.file.sync_data().at(&self.active.path)?;
        if self.dir_dirty {
            sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// Closes the current segment (zero-filling its last page and fsyncing
    /// it) and starts the next. Returns the new segment's index.
    pub fn next_segment(&mut self) -> Result<u32> {
        self.check_poisoned()?;
        cut_segment(
            &self.dir,
            &mut self.active,
            &mut self.poisoned,
            &mut self.dir_dirty,
        )?;
        Ok(self.active.index)
    }

    /// Closes the WAL the way Prometheus does: zero-fills the last page and
    /// fsyncs. Dropping a `Wal` without `close` loses nothing that `log`
    /// acknowledged; it only skips the padding and the fsync.
    pub fn close(mut self) -> Result<()> {
        self.check_poisoned()?;
        pad_page(&mut self.active, &mut self.poisoned)?;
        self.sync()
    }

    /// The first and last segment index in `dir`, `None` if it has none.
    pub fn segment_range(dir: &Path) -> Result<Option<(u32, u32)>> {
        let segs = list_segments(dir)?;
        Ok(segs.first().zip(segs.last()).map(|(f, l)| (f.0, l.0)))
    }

    /// Deletes the segments with index `< below`, oldest first (so that a
    /// crash midway leaves a consecutive sequence). The current segment
    /// cannot be deleted.
    pub fn truncate(&mut self, below: u32) -> Result<()> {
        if below > self.active.index {
            return Err(Error::Invalid(format!(
                "cannot truncate the WAL below segment {below}: segment {} is being written",
                self.active.index
            )));
        }
        for (index, path) in list_segments(&self.dir)? {
            if index >= below {
                break;
            }
            fs::remove_file(&path).at(&path)?;
        }
        Ok(())
    }

    /// Repairs the WAL this writer is open on, for callers that open before
    /// they replay (as Prometheus does). Only allowed before anything was
    /// logged, since repair deletes the segments after the corrupted one.
    /// Afterwards the writer continues in a new segment after the repaired one.
    pub fn repair(&mut self, corruption: &CorruptionInfo) -> Result<RepairReport> {
        if self.logged {
            return Err(Error::Invalid(
                "WAL repair after records were logged would drop them".into(),
            ));
        }
        let report = super::repair(&self.dir, corruption)?;
        // Our segment is empty, so the corruption was in an earlier one and
        // repair deleted ours: continue after the repaired segment.
        if !self.active.path.exists() {
            let next = match Self::segment_range(&self.dir)? {
                Some((_, last)) => next_index(&self.dir, last)?,
                None => 0,
            };
            self.active = create_segment(&self.dir, next)?;
            self.dir_dirty = true;
        }
        Ok(report)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn current_segment(&self) -> u32 {
        self.active.index
    }

    /// Bytes on disk under the WAL directory, checkpoints included.
    pub fn size(&self) -> Result<u64> {
        dir_size(&self.dir)
    }

    fn check_poisoned(&self) -> Result<()> {
        match &self.poisoned {
            Some(msg) => Err(Error::Invalid(format!(
                "WAL {} is unusable after a failed write: {msg}",
                self.dir.display()
            ))),
            None => Ok(()),
        }
    }
}

fn next_index(dir: &Path, last: u32) -> Result<u32> {
    last.checked_add(1)
        .ok_or_else(|| Error::corrupted(dir, "WAL segment index space exhausted"))
}

fn create_segment(dir: &Path, index: u32) -> Result<Active> {
    let path = segment_path(dir, index);
    // create_new: a file already there would be stale data we would append
    // behind, in the middle of the log.
    let file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .at(&path)?;
    Ok(Active {
        index,
        path,
        file,
        len: 0,
    })
}

/// Payload bytes that still fit in the segment from byte `pos` on: the rest
/// of the current page and all later pages, less a header per page.
fn room_in_segment(pos: u64, segment_size: usize) -> u64 {
    let page = PAGE_SIZE as u64;
    let header = FRAGMENT_HEADER_SIZE as u64;
    if pos >= segment_size as u64 {
        return 0;
    }
    let in_page = page - pos % page;
    let later_pages = (segment_size as u64 - pos) / page - u64::from(pos.is_multiple_of(page));
    (in_page - header) + (page - header) * later_pages
}

/// Lays out `payload` as fragments in `out`, whose first byte goes to file
/// offset `base`. Writes at least one fragment, so an empty record is
/// preserved as an empty full fragment.
pub(crate) fn append_fragments(out: &mut Vec<u8>, base: u64, payload: &[u8], compressed: bool) {
    let mut rest = payload;
    let mut first = true;
    loop {
        let in_page = PAGE_SIZE - ((base + out.len() as u64) % PAGE_SIZE as u64) as usize;
        debug_assert!(in_page >= FRAGMENT_HEADER_SIZE, "page tail not padded");
        let n = rest.len().min(in_page - FRAGMENT_HEADER_SIZE);
        let last = n == rest.len();
        let mut typ = match (first, last) {
            (true, true) => frag::FULL,
            (true, false) => frag::FIRST,
            (false, true) => frag::LAST,
            (false, false) => frag::MIDDLE,
        };
        if compressed {
            typ |= frag::SNAPPY;
        }
        let (part, tail) = rest.split_at(n);
        out.push(typ);
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(part).to_be_bytes());
        out.extend_from_slice(part);
        rest = tail;
        first = false;

        // No room for another header: zero-fill the page, which the reader
        // reads as "skip to the next page".
        let left = PAGE_SIZE - ((base + out.len() as u64) % PAGE_SIZE as u64) as usize;
        if left < FRAGMENT_HEADER_SIZE {
            out.resize(out.len() + left, 0);
        }
        if last {
            return;
        }
    }
}

/// Appends `bytes` to the active segment with one write. On failure the file
/// is truncated back to its previous length; if that fails too, the writer
/// is poisoned.
fn write_batch(active: &mut Active, bytes: &[u8], poisoned: &mut Option<String>) -> Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    match active.file.write_all(bytes) {
        Ok(()) => {
            active.len += bytes.len() as u64;
            Ok(())
        }
        Err(e) => {
            // The file is opened O_APPEND, so after set_len the next write
            // lands at the restored end.
            if let Err(e2) = active.file.set_len(active.len) {
                *poisoned = Some(format!(
                    "write failed ({e}) and truncating back to {} failed ({e2})",
                    active.len
                ));
            }
            Err(Error::io(&active.path, e))
        }
    }
}

/// Zero-fills the rest of the active segment's current page, if it has one.
fn pad_page(active: &mut Active, poisoned: &mut Option<String>) -> Result<()> {
    let used = (active.len % PAGE_SIZE as u64) as usize;
    if used == 0 {
        return Ok(());
    }
    write_batch(active, &vec![0u8; PAGE_SIZE - used], poisoned)
}

/// Pads, fsyncs and replaces the active segment with the next one.
fn cut_segment(
    dir: &Path,
    active: &mut Active,
    poisoned: &mut Option<String>,
    dir_dirty: &mut bool,
) -> Result<()> {
    pad_page(active, poisoned)?;
    // Synchronous, unlike Prometheus' background fsync: a closed segment is
    // durable before anything lands in the next one, which keeps the rule
    // "only the newest segment can be torn" true across power loss too.
    if let Err(e) = active.file.sync_data() {
        warn!(segment = %active.path.display(), error = %e, "fsync of closed WAL segment failed");
        return Err(Error::io(&active.path, e));
    }
    let next = next_index(dir, active.index)?;
    *active = create_segment(dir, next)?;
    // Make the directory entries durable too (once per segment, cheap): a
    // power loss must not keep segment N+1 but lose the entry of the synced
    // segment N, which would leave a gap that stops replay.
    sync_dir(dir)?;
    *dir_dirty = false;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_in_segment_matches_prometheus_formula() {
        // Prometheus: (pageSize - alloc - 7) + (pageSize - 7) * (pages - donePages - 1).
        let seg = 4 * PAGE_SIZE;
        for pos in [
            0u64,
            1,
            100,
            32760,
            32768,
            32769,
            65536 + 7,
            3 * 32768 + 32761,
        ] {
            let alloc = pos % PAGE_SIZE as u64;
            let done = pos / PAGE_SIZE as u64;
            let want = (PAGE_SIZE as u64 - alloc - 7) + (PAGE_SIZE as u64 - 7) * (4 - done - 1);
            assert_eq!(room_in_segment(pos, seg), want, "pos {pos}");
        }
        assert_eq!(room_in_segment(4 * PAGE_SIZE as u64, seg), 0);
        assert_eq!(room_in_segment(5 * PAGE_SIZE as u64, seg), 0);
    }

    #[test]
    fn fragments_fill_pages_and_pad_tails() {
        let mut out = Vec::new();
        // A record that leaves exactly 6 bytes in the first page.
        let rec = vec![7u8; PAGE_SIZE - 7 - 6];
        append_fragments(&mut out, 0, &rec, false);
        assert_eq!(out.len(), PAGE_SIZE, "6-byte tail zero-filled");
        assert_eq!(out[0], frag::FULL);
        assert!(out[PAGE_SIZE - 6..].iter().all(|&b| b == 0));

        let mut out = Vec::new();
        let big = vec![1u8; 2 * PAGE_SIZE];
        append_fragments(&mut out, 100, &big, true);
        assert_eq!(out[0], frag::FIRST | frag::SNAPPY);
        let p1 = PAGE_SIZE - 100;
        assert_eq!(out[p1], frag::MIDDLE | frag::SNAPPY);
        assert_eq!(out[p1 + PAGE_SIZE], frag::LAST | frag::SNAPPY);
        let lens = (PAGE_SIZE - 100 - 7) + (PAGE_SIZE - 7);
        let last_len = u16::from_be_bytes([out[p1 + PAGE_SIZE + 1], out[p1 + PAGE_SIZE + 2]]);
        assert_eq!(last_len as usize, 2 * PAGE_SIZE - lens);
    }
}
