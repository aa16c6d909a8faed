//! Reading records back, and repairing a damaged tail.
//!
//! [`WalReader`] reads one page (32 KiB) at a time, so memory stays at one
//! page plus the record being assembled, whatever the segment size. It is
//! stricter than Prometheus' reader where Prometheus' writer could never have
//! produced the bytes, so that damage is reported where it is rather than
//! records later:
//!
//! - a fragment whose length runs past its page, or a header that does not
//!   fit in the page;
//! - `middle`/`last` without `first`, `full`/`first` inside an unfinished
//!   record, a record whose fragments disagree on the compression bit;
//! - a record still unfinished at the end of a segment (records never cross
//!   segments, so that is a torn write, even if later segments exist);
//! - non-zero bytes in page padding, unknown type bits, CRC mismatch, and a
//!   snappy block that does not decode.
//!
//! Each is a [`CorruptionInfo`]: the segment, the offset where the problem
//! was found, and `valid_len`, the offset where the damaged record began.
//! Everything before `valid_len` in that segment (and in earlier segments)
//! was read intact; [`repair`] keeps exactly that.
//!
//! Nothing read from disk sizes an allocation beyond what the file holds: a
//! record grows fragment by fragment, and a snappy block may only claim a
//! decompressed size within snappy's maximum expansion of its real size.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::{frag, list_segments, segment_name, segment_path, sync_dir};
use super::{FRAGMENT_HEADER_SIZE, PAGE_SIZE};
use crate::error::{Error, IoContext, Result};

/// Where and why reading stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptionInfo {
    /// The directory of the segment (the WAL dir or a checkpoint dir).
    pub dir: PathBuf,
    pub segment: u32,
    /// Byte offset in the segment where the problem was detected.
    pub offset: u64,
    /// Byte offset in the segment where the damaged record (or the damaged
    /// region, when no record was in progress) begins; the bytes before it
    /// hold only complete records and padding.
    pub valid_len: u64,
    pub reason: String,
}

impl CorruptionInfo {
    pub fn segment_path(&self) -> PathBuf {
        segment_path(&self.dir, self.segment)
    }
}

impl fmt::Display for CorruptionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "corruption in WAL segment {} at offset {}: {}",
            self.segment_path().display(),
            self.offset,
            self.reason
        )
    }
}

/// Why [`WalReader::next_record`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be read (permissions, EIO, vanished segment).
    #[error(transparent)]
    Io(#[from] Error),
    /// The bytes are damaged; [`repair`] can cut them off.
    #[error("{0}")]
    Corruption(CorruptionInfo),
}

impl From<ReadError> for Error {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Io(e) => e,
            ReadError::Corruption(c) => {
                let msg = format!("WAL at offset {}: {}", c.offset, c.reason);
                Error::corrupted(c.segment_path(), msg)
            }
        }
    }
}

#[derive(Clone, Debug)]
struct SegRef {
    dir: PathBuf,
    index: u32,
    path: PathBuf,
}

#[derive(Debug)]
struct Open {
    seg: usize,
    file: File,
    eof: bool,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    start: u64,
    compressed: bool,
}

#[derive(Debug)]
enum Failed {
    Corruption(CorruptionInfo),
    Io(String),
}

/// Reads records from a sequence of segments, in order.
#[derive(Debug)]
pub struct WalReader {
    segs: Vec<SegRef>,
    next_seg: usize,
    open: Option<Open>,
    page: Vec<u8>,
    page_len: usize,
    page_pos: usize,
    /// Offset of the loaded page in its segment.
    page_off: u64,
    rec: Vec<u8>,
    compressed: Vec<u8>,
    pending: Option<Pending>,
    /// Segment index and offset just past the last record returned.
    last: Option<(u32, u64)>,
    failed: Option<Failed>,
    snappy: snap::raw::Decoder,
}

impl WalReader {
    /// Reads the segments of `dir` with `from <= index <= to` (`to = None`:
    /// to the last). Use `from = 0, to = None` for a checkpoint directory.
    pub fn open_segments(dir: &Path, from: u32, to: Option<u32>) -> Result<Self> {
        Self::open_ranges(&[(dir, from, to)])
    }

    /// Reads several ranges one after the other, e.g. a checkpoint and then
    /// the WAL segments after it.
    pub fn open_ranges(ranges: &[(&Path, u32, Option<u32>)]) -> Result<Self> {
        let mut segs = Vec::new();
        for &(dir, from, to) in ranges {
            for (index, path) in list_segments(dir)? {
                if index >= from && to.is_none_or(|to| index <= to) {
                    segs.push(SegRef {
                        dir: dir.to_path_buf(),
                        index,
                        path,
                    });
                }
            }
        }
        Ok(Self::from_segs(segs))
    }

    fn from_segs(segs: Vec<SegRef>) -> Self {
        WalReader {
            segs,
            next_seg: 0,
            open: None,
            page: vec![0; PAGE_SIZE],
            page_len: 0,
            page_pos: 0,
            page_off: 0,
            rec: Vec::new(),
            compressed: Vec::new(),
            pending: None,
            last: None,
            failed: None,
            snappy: snap::raw::Decoder::new(),
        }
    }

    /// The next record, `None` at the clean end of the last segment. After
    /// an error, every further call returns that error again.
    pub fn next_record(&mut self) -> std::result::Result<Option<Vec<u8>>, ReadError> {
        Ok(self.next_record_ref()?.map(<[u8]>::to_vec))
    }

    /// Like [`next_record`](Self::next_record), without copying: the slice
    /// is valid until the next call.
    pub fn next_record_ref(&mut self) -> std::result::Result<Option<&[u8]>, ReadError> {
        match &self.failed {
            Some(Failed::Corruption(c)) => return Err(ReadError::Corruption(c.clone())),
            Some(Failed::Io(msg)) => {
                return Err(ReadError::Io(Error::Invalid(format!(
                    "WAL reader failed earlier: {msg}"
                ))))
            }
            None => {}
        }
        match self.advance() {
            Ok(true) => Ok(Some(&self.rec)),
            Ok(false) => Ok(None),
            Err(e) => {
                self.failed = Some(match &e {
                    ReadError::Corruption(c) => Failed::Corruption(c.clone()),
                    ReadError::Io(io) => Failed::Io(io.to_string()),
                });
                Err(e)
            }
        }
    }

    /// Segment index and offset just past the last record returned.
    pub fn position(&self) -> Option<(u32, u64)> {
        self.last
    }

    fn corruption(&self, frag_off: u64, offset: u64, reason: String) -> ReadError {
        let seg = &self.segs[self.open.as_ref().map_or(0, |o| o.seg)];
        ReadError::Corruption(CorruptionInfo {
            dir: seg.dir.clone(),
            segment: seg.index,
            offset,
            valid_len: self.pending.map_or(frag_off, |p| p.start),
            reason,
        })
    }

    /// Loads the next non-empty page, moving through segments. `false` at
    /// the end of the last segment.
    fn load_page(&mut self) -> std::result::Result<bool, ReadError> {
        loop {
            if let Some(open) = self.open.as_mut().filter(|o| !o.eof) {
                self.page_off += self.page_len as u64;
                let path = &self.segs[open.seg].path;
                let n = read_full(&mut open.file, &mut self.page).at(path)?;
                self.page_len = n;
                self.page_pos = 0;
                open.eof = n < PAGE_SIZE;
                if n > 0 {
                    return Ok(true);
                }
                continue;
            }
            if self.open.is_some() {
                if self.pending.is_some() {
                    let end = self.page_off + self.page_len as u64;
                    return Err(self.corruption(
                        end,
                        end,
                        "last record is torn: the segment ends in the middle of it".into(),
                    ));
                }
                self.open = None;
            }
            let Some(seg) = self.segs.get(self.next_seg) else {
                return Ok(false);
            };
            let file = File::open(&seg.path).at(&seg.path)?;
            self.open = Some(Open {
                seg: self.next_seg,
                file,
                eof: false,
            });
            self.next_seg += 1;
            self.page_off = 0;
            self.page_len = 0;
            self.page_pos = 0;
        }
    }

    /// Reads fragments up to the end of the next record.
    fn advance(&mut self) -> std::result::Result<bool, ReadError> {
        loop {
            if self.page_pos >= self.page_len {
                if !self.load_page()? {
                    return Ok(false);
                }
                continue;
            }
            let p = self.page_pos;
            let off = self.page_off + p as u64;
            let page = &self.page[..self.page_len];
            let typ = page[p];
            let kind = typ & frag::KIND_MASK;

            if typ & !(frag::KIND_MASK | frag::SNAPPY) != 0 {
                let reason = format!("unsupported fragment type byte {typ:#04x}");
                return Err(self.corruption(off, off, reason));
            }
            if kind == frag::PAD {
                // The writer zero-fills a page tail; anything else in it
                // means the page is damaged.
                if let Some(i) = page[p + 1..].iter().position(|&b| b != 0) {
                    let at = off + 1 + i as u64;
                    let reason = "non-zero byte in page padding".to_string();
                    return Err(self.corruption(off, at, reason));
                }
                self.page_pos = self.page_len;
                continue;
            }
            if kind > frag::LAST {
                let reason = format!("invalid fragment type {kind}");
                return Err(self.corruption(off, off, reason));
            }
            let short_page = self.page_len < PAGE_SIZE;
            if p + FRAGMENT_HEADER_SIZE > page.len() {
                let reason = if short_page {
                    "fragment header cut short by the end of the segment"
                } else {
                    "fragment header crosses a page boundary"
                };
                return Err(self.corruption(off, off, reason.into()));
            }
            let len = u16::from_be_bytes([page[p + 1], page[p + 2]]) as usize;
            let crc = u32::from_be_bytes([page[p + 3], page[p + 4], page[p + 5], page[p + 6]]);
            let start = p + FRAGMENT_HEADER_SIZE;
            let end = start + len;
            if end > page.len() {
                let reason = if short_page && end <= PAGE_SIZE {
                    format!("fragment of {len} bytes cut short by the end of the segment")
                } else {
                    format!("fragment of {len} bytes runs past the end of its page")
                };
                return Err(self.corruption(off, off, reason));
            }
            let data = &page[start..end];
            let actual = crc32c::crc32c(data);
            if actual != crc {
                let reason = format!("checksum mismatch: header {crc:#010x}, data {actual:#010x}");
                return Err(self.corruption(off, off, reason));
            }
            let compressed = typ & frag::SNAPPY != 0;
            match (kind, self.pending) {
                (frag::FULL | frag::FIRST, Some(_)) => {
                    let reason =
                        format!("{} fragment inside an unfinished record", kind_name(kind));
                    return Err(self.corruption(off, off, reason));
                }
                (frag::MIDDLE | frag::LAST, None) => {
                    let reason = format!("{} fragment without a first fragment", kind_name(kind));
                    return Err(self.corruption(off, off, reason));
                }
                (_, Some(pending)) if pending.compressed != compressed => {
                    let reason = "compression flag changes within a record".to_string();
                    return Err(self.corruption(off, off, reason));
                }
                (frag::FULL | frag::FIRST, None) => {
                    self.pending = Some(Pending {
                        start: off,
                        compressed,
                    });
                    self.rec.clear();
                    self.compressed.clear();
                }
                _ => {}
            }
            if compressed {
                self.compressed.extend_from_slice(data);
            } else {
                self.rec.extend_from_slice(data);
            }
            self.page_pos = end;

            if kind == frag::FULL || kind == frag::LAST {
                if compressed {
                    if let Err(reason) = self.decompress() {
                        return Err(self.corruption(off, off, reason));
                    }
                }
                self.pending = None;
                let seg = self.segs[self.open.as_ref().map_or(0, |o| o.seg)].index;
                self.last = Some((seg, self.page_off + end as u64));
                return Ok(true);
            }
        }
    }

    fn decompress(&mut self) -> std::result::Result<(), String> {
        self.rec.clear();
        if self.compressed.is_empty() {
            return Ok(());
        }
        let n = snap::raw::decompress_len(&self.compressed).map_err(|e| format!("snappy: {e}"))?;
        // A snappy element expands at most 64 bytes from a 2-byte copy tag,
        // so 32x (plus slack for tiny inputs) bounds any genuine block.
        let limit = self.compressed.len().saturating_mul(32).saturating_add(64);
        if n > limit {
            return Err(format!(
                "snappy block of {} bytes claims {n} decompressed bytes",
                self.compressed.len()
            ));
        }
        self.rec.resize(n, 0);
        match self.snappy.decompress(&self.compressed, &mut self.rec) {
            Ok(got) => {
                self.rec.truncate(got);
                Ok(())
            }
            Err(e) => Err(format!("snappy: {e}")),
        }
    }
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        frag::FULL => "full",
        frag::FIRST => "first",
        frag::MIDDLE => "middle",
        frag::LAST => "last",
        _ => "padding",
    }
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// What [`repair`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairReport {
    /// The segment that was cut.
    pub segment: u32,
    /// Complete records kept in it.
    pub kept_records: usize,
    /// It was cut at this offset (then zero-filled to the page end).
    pub truncated_at: u64,
    /// Bytes of it that were dropped.
    pub dropped_bytes: u64,
    /// Later segments that were deleted, ascending.
    pub deleted_segments: Vec<u32>,
}

/// Repairs the WAL in `dir` after a read reported `corruption`: deletes
/// every segment after the damaged one, then rewrites the damaged one with
/// only the complete records before `corruption.valid_len`, zero-filled to a
/// page boundary (the shape Prometheus' `Repair` leaves).
///
/// Crash-safe: later segments go first (newest first), and the rewrite goes
/// through `<segment>.repair` + fsync + rename. A crash at any point leaves
/// either the damaged segment as the newest one (repair runs again on the
/// next start) or the repaired one.
pub fn repair(dir: &Path, corruption: &CorruptionInfo) -> Result<RepairReport> {
    let same =
        fs::canonicalize(dir).at(dir)? == fs::canonicalize(&corruption.dir).at(&corruption.dir)?;
    if !same {
        return Err(Error::Invalid(format!(
            "cannot repair {}: the corruption is in {} (a checkpoint cannot be repaired)",
            dir.display(),
            corruption.dir.display()
        )));
    }
    let segs = list_segments(dir)?;
    let Some((_, path)) = segs.iter().find(|s| s.0 == corruption.segment) else {
        return Err(Error::Invalid(format!(
            "cannot repair {}: segment {} does not exist",
            dir.display(),
            segment_name(corruption.segment)
        )));
    };
    let path = path.clone();

    let mut deleted = Vec::new();
    for (index, later) in segs.iter().rev() {
        if *index <= corruption.segment {
            break;
        }
        fs::remove_file(later).at(later)?;
        deleted.push(*index);
    }
    deleted.reverse();

    // Re-read rather than trust valid_len alone: the kept prefix must end
    // exactly at a record boundary.
    let mut reader = WalReader::from_segs(vec![SegRef {
        dir: dir.to_path_buf(),
        index: corruption.segment,
        path: path.clone(),
    }]);
    let (mut keep, mut kept_records) = (0u64, 0usize);
    loop {
        match reader.advance() {
            Ok(true) => {
                let end = reader.last.map_or(0, |l| l.1);
                if end > corruption.valid_len {
                    break;
                }
                keep = end;
                kept_records += 1;
            }
            Ok(false) | Err(ReadError::Corruption(_)) => break,
            Err(ReadError::Io(e)) => return Err(e),
        }
    }

    let orig_len = fs::metadata(&path).at(&path)?.len();
    let tmp = dir.join(format!("{}.repair", segment_name(corruption.segment)));
    {
        let mut src = File::open(&path).at(&path)?;
        let mut dst = File::create(&tmp).at(&tmp)?;
        let copied = io::copy(&mut (&mut src).take(keep), &mut dst).at(&tmp)?;
        if copied != keep {
            return Err(Error::corrupted(&path, "segment shrank during repair"));
        }
        let used = (keep % PAGE_SIZE as u64) as usize;
        if used != 0 {
            dst.write_all(&vec![0u8; PAGE_SIZE - used]).at(&tmp)?;
        }
        dst.sync_all().at(&tmp)?;
    }
    fs::rename(&tmp, &path).at(&path)?;
    sync_dir(dir)?;

    Ok(RepairReport {
        segment: corruption.segment,
        kept_records,
        truncated_at: keep,
        dropped_bytes: orig_len.saturating_sub(keep),
        deleted_segments: deleted,
    })
}
