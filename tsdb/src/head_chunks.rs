//! Head chunk files: full head chunks written to `chunks_head/` and read back
//! through memory maps, so that the head keeps only a reference per chunk.
//!
//! Main types:
//! - [`ChunkDiskMapper`]: owns the directory. [`ChunkDiskMapper::write_chunk`]
//!   appends a full (closed) chunk to the current file and returns its ref;
//!   [`ChunkDiskMapper::file_for`] hands readers the mapped file holding a
//!   ref; [`ChunkDiskMapper::open`] validates the files left by an earlier
//!   run and returns every chunk in them, for the WAL replay to attach.
//! - [`HeadChunkFile`]: one mapped file, shared (`Arc`) with queries, so a
//!   file deleted by head truncation stays readable while a query holds it.
//! - [`MmappedChunk`]: what a scan of the files found for one chunk.
//!
//! The format is Prometheus 2.42's (`tsdb/chunks/head_chunks.go`), so a data
//! directory moves between the two:
//!
//! ```text
//! file  <dir>/chunks_head/000001, 000002, ...   (at most 128 MiB each)
//!   header   magic 0x0130BC91 (u32 BE) | version 1 (u8) | 3 zero bytes
//!   chunk*   series ref (u64 BE) | mint (u64 BE) | maxt (u64 BE)
//!            | encoding (u8) | data length (uvarint) | data
//!            | CRC32C of everything from the series ref to the data (u32 BE)
//! ref   file sequence << 32 | byte offset of the chunk's series ref
//! ```
//!
//! Durability: the files are a cache of the WAL, never the only copy. A
//! chunk is written only after the WAL holds its samples (the head cuts
//! chunks while applying a committed batch), and the WAL keeps every sample
//! of the head until a block holds it. So a torn or corrupted chunk file is
//! cut at the first bad chunk, the files after it are deleted, and the WAL
//! replay rebuilds what was lost. Per series, chunks are written in time
//! order, so what survives such a cut is a gap-free prefix of every
//! series' chunks; the replay attaches that prefix and appends only WAL
//! samples newer than it. The previous file is fsynced before a new one is
//! started, so after a power loss a later file never survives an earlier
//! file's lost tail.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use memmap2::{Mmap, MmapOptions};
use parking_lot::{Mutex, RwLock};

use crate::chunkenc::Encoding;
use crate::encoding::{crc32c, put_uvarint, Decoder};
use crate::error::{Error, IoContext, Result};

/// First four bytes of a head chunk file.
pub const MAGIC_HEAD_CHUNKS: u32 = 0x0130_BC91;
const FORMAT_V1: u8 = 1;
const HEADER_SIZE: u64 = 8;
/// Prometheus' `MaxHeadChunkFileSize`.
pub const MAX_FILE_SIZE: u64 = 128 * 1024 * 1024;
/// Series ref, mint, maxt, encoding.
const FIXED_META: usize = 8 + 8 + 8 + 1;
/// Fixed meta + the longest length field Prometheus writes (a 32-bit
/// uvarint) + the CRC: the most bytes a chunk takes besides its data.
const MAX_META: usize = FIXED_META + 5 + 4;
/// A head chunk holds at most 240 samples of at most ~20 bytes; anything
/// much larger read from a file is corruption, not data.
const MAX_CHUNK_DATA: u64 = 1 << 20;

/// A chunk found in the files by [`ChunkDiskMapper::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmappedChunk {
    pub chunk_ref: u64,
    pub min_time: i64,
    pub max_time: i64,
    /// A Prometheus head may hold native histogram chunks too.
    pub encoding: Encoding,
}

/// What [`ChunkDiskMapper::open`] found.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Chunks per series ref, in the order they were written (time order).
    pub chunks: HashMap<u64, Vec<MmappedChunk>>,
    /// Set when a file was torn or corrupted: what was cut. The WAL replay
    /// restores the data.
    pub repaired: Option<String>,
}

/// One head chunk file, memory-mapped.
pub struct HeadChunkFile {
    seq: u32,
    path: PathBuf,
    /// Mapped at [`MAX_FILE_SIZE`] for the file being written (pages past
    /// its end are never touched: reads are bounded by `len`), at its size
    /// for files from an earlier run.
    map: Mmap,
    /// Bytes written and readable.
    len: AtomicU64,
    /// Largest chunk max time in the file (`i64::MIN` when it has none).
    max_time: AtomicI64,
}

impl std::fmt::Debug for HeadChunkFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeadChunkFile({})", self.path.display())
    }
}

impl HeadChunkFile {
    /// The encoding and data of the chunk at `offset`, CRC checked.
    pub fn chunk_at(&self, offset: u32) -> Result<(Encoding, &[u8])> {
        let len = self.len.load(Ordering::Acquire) as usize;
        let start = offset as usize;
        if start < HEADER_SIZE as usize || start >= len {
            return Err(Error::corrupted(
                &self.path,
                format!("head chunk offset {start} outside the file's {len} bytes"),
            ));
        }
        let Some(rest) = self.map.get(start..len) else {
            return Err(Error::corrupted(
                &self.path,
                format!(
                    "head chunk offset {start} outside the mapped {} bytes",
                    self.map.len()
                ),
            ));
        };
        let rec = parse_chunk(rest)
            .map_err(|m| Error::corrupted(&self.path, format!("chunk at offset {start}: {m}")))?;
        Ok((rec.encoding, &rest[rec.data.0..rec.data.1]))
    }
}

/// One parsed chunk record, positions relative to its start.
struct Record {
    series_ref: u64,
    min_time: i64,
    max_time: i64,
    encoding: Encoding,
    data: (usize, usize),
    /// Bytes of the whole record including the CRC.
    size: usize,
}

/// Parses and CRC-checks the record at the start of `b`.
fn parse_chunk(b: &[u8]) -> std::result::Result<Record, String> {
    let mut d = Decoder::new(b);
    let series_ref = d.be64();
    let min_time = d.be64() as i64;
    let max_time = d.be64() as i64;
    let enc = d.byte();
    let n = d.uvarint();
    if let Some(e) = d.err() {
        return Err(format!("truncated chunk header: {e:?}"));
    }
    if n > MAX_CHUNK_DATA {
        return Err(format!("chunk length {n} exceeds {MAX_CHUNK_DATA}"));
    }
    let data_start = b.len() - d.len();
    let data_end = data_start + n as usize;
    if data_end + 4 > b.len() {
        return Err(format!(
            "chunk of {n} bytes and its CRC need {} bytes, {} left",
            data_end + 4 - data_start,
            b.len() - data_start
        ));
    }
    let want = u32::from_be_bytes([
        b[data_end],
        b[data_end + 1],
        b[data_end + 2],
        b[data_end + 3],
    ]);
    let got = crc32c(&b[..data_end]);
    if want != got {
        return Err(format!(
            "checksum mismatch: stored {want:08x}, computed {got:08x}"
        ));
    }
    let encoding = Encoding::from_u8(enc).ok_or_else(|| format!("unknown chunk encoding {enc}"))?;
    Ok(Record {
        series_ref,
        min_time,
        max_time,
        encoding,
        data: (data_start, data_end),
        size: data_end + 4,
    })
}

/// The file being appended to.
struct Writer {
    file: File,
    current: Arc<HeadChunkFile>,
    /// Record scratch buffer, reused.
    buf: Vec<u8>,
}

/// The `chunks_head/` directory of a head.
pub struct ChunkDiskMapper {
    dir: PathBuf,
    max_file_size: u64,
    /// Every live file by sequence number; readers resolve refs here.
    files: RwLock<BTreeMap<u32, Arc<HeadChunkFile>>>,
    /// `None` until the first write and after truncation: the next write
    /// starts a new file.
    writer: Mutex<Option<Writer>>,
}

impl std::fmt::Debug for ChunkDiskMapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkDiskMapper({})", self.dir.display())
    }
}

fn file_name(seq: u32) -> String {
    format!("{seq:06}")
}

/// Sequence numbers of the files in `dir` (six or more decimal digits, as
/// Prometheus names them), sorted.
fn list_files(dir: &Path) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).at(dir)? {
        let e = e.at(dir)?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.is_empty() && name.bytes().all(|c| c.is_ascii_digit()) {
            // Only names this module (and Prometheus) writes: `1` next to
            // `000001` would otherwise be read twice.
            match name.parse::<u32>() {
                Ok(seq) if file_name(seq) == name => out.push(seq),
                _ => {
                    tracing::warn!(file = %dir.join(name).display(), "ignoring a file that is not a head chunk file")
                }
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

impl ChunkDiskMapper {
    /// Opens `dir` (created when missing), checks every file and returns the
    /// chunks found. A corrupted or torn file is cut at its last good chunk
    /// and every later file deleted (reported in [`LoadReport::repaired`]).
    /// New chunks go to a new file.
    pub fn open(dir: &Path) -> Result<(ChunkDiskMapper, LoadReport)> {
        Self::open_with_max_size(dir, MAX_FILE_SIZE)
    }

    /// [`ChunkDiskMapper::open`] with a smaller file size cap (tests).
    pub fn open_with_max_size(
        dir: &Path,
        max_file_size: u64,
    ) -> Result<(ChunkDiskMapper, LoadReport)> {
        fs::create_dir_all(dir).at(dir)?;
        let seqs = list_files(dir)?;
        let mut report = LoadReport::default();
        let mut files = BTreeMap::new();
        let mut cut_at: Option<usize> = None;
        for (i, &seq) in seqs.iter().enumerate() {
            let path = dir.join(file_name(seq));
            let (good_len, max_time, problem) = scan_file(&path, seq, &mut report.chunks)?;
            if let Some(p) = problem {
                report.repaired = Some(format!(
                    "{}: {p}; kept the first {good_len} bytes, deleted {} later file(s)",
                    path.display(),
                    seqs.len() - i - 1
                ));
                tracing::warn!(file = %path.display(), problem = %p, "head chunk file corrupted; the WAL replay restores its data");
                if good_len <= HEADER_SIZE {
                    fs::remove_file(&path).at(&path)?;
                } else {
                    let f = OpenOptions::new().write(true).open(&path).at(&path)?;
                    f.set_len(good_len).at(&path)?;
                    f.sync_all().at(&path)?;
                    files.insert(seq, Arc::new(map_existing(&path, seq, good_len, max_time)?));
                }
                cut_at = Some(i + 1);
                break;
            }
            files.insert(seq, Arc::new(map_existing(&path, seq, good_len, max_time)?));
        }
        if let Some(from) = cut_at {
            for &seq in &seqs[from..] {
                let p = dir.join(file_name(seq));
                fs::remove_file(&p).at(&p)?;
            }
            sync_dir(dir)?;
        }
        Ok((
            ChunkDiskMapper {
                dir: dir.to_path_buf(),
                max_file_size: max_file_size.clamp(HEADER_SIZE + MAX_META as u64, MAX_FILE_SIZE),
                files: RwLock::new(files),
                writer: Mutex::new(None),
            },
            report,
        ))
    }

    /// Opens `dir` after deleting every file in it: for a head without a
    /// WAL, whose earlier chunks cannot be tied to series again.
    pub fn open_empty(dir: &Path) -> Result<ChunkDiskMapper> {
        if dir.exists() {
            for seq in list_files(dir)? {
                let p = dir.join(file_name(seq));
                fs::remove_file(&p).at(&p)?;
            }
        }
        Ok(Self::open(dir)?.0)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a full chunk of series `series_ref` and returns its ref.
    /// On an error nothing refers to the partial bytes: the file is cut
    /// over and the caller keeps the chunk in memory.
    pub fn write_chunk(
        &self,
        series_ref: u64,
        min_time: i64,
        max_time: i64,
        encoding: Encoding,
        data: &[u8],
    ) -> Result<u64> {
        if data.len() as u64 > MAX_CHUNK_DATA {
            // Never the case for head chunks (at most 240 samples); refused
            // so that a file never outgrows its map.
            return Err(Error::Invalid(format!(
                "head chunk of {} bytes exceeds {MAX_CHUNK_DATA}",
                data.len()
            )));
        }
        let mut w = self.writer.lock();
        let size = (MAX_META + data.len()) as u64;
        let need_cut = match &*w {
            None => true,
            Some(cur) => {
                let len = cur.current.len.load(Ordering::Relaxed);
                len > HEADER_SIZE && len + size > self.max_file_size
            }
        };
        if need_cut {
            self.cut(&mut w)?;
        }
        let cur = w.as_mut().expect("a file is open after cut");
        let offset = cur.current.len.load(Ordering::Relaxed);
        cur.buf.clear();
        cur.buf.extend_from_slice(&series_ref.to_be_bytes());
        cur.buf.extend_from_slice(&(min_time as u64).to_be_bytes());
        cur.buf.extend_from_slice(&(max_time as u64).to_be_bytes());
        cur.buf.push(encoding as u8);
        put_uvarint(&mut cur.buf, data.len() as u64);
        cur.buf.extend_from_slice(data);
        let crc = crc32c(&cur.buf);
        cur.buf.extend_from_slice(&crc.to_be_bytes());
        let path = cur.current.path.clone();
        if let Err(e) = cur.file.write_all(&cur.buf) {
            // The file may now end in a partial record: start a new one for
            // later chunks; on the next open the scan cuts this file here.
            *w = None;
            return Err(Error::io(path, e));
        }
        cur.current.max_time.fetch_max(max_time, Ordering::Relaxed);
        cur.current
            .len
            .store(offset + cur.buf.len() as u64, Ordering::Release);
        if cur.buf.capacity() > 64 * 1024 {
            cur.buf = Vec::new();
        }
        Ok((u64::from(cur.current.seq) << 32) | offset)
    }

    /// Finishes the current file (fsync, see the module docs) and starts the
    /// next one.
    fn cut(&self, w: &mut Option<Writer>) -> Result<()> {
        if let Some(old) = w.take() {
            old.file.sync_all().at(&old.current.path)?;
        }
        let seq = {
            let files = self.files.read();
            match files.keys().next_back() {
                Some(&s) => s.checked_add(1).ok_or_else(|| {
                    Error::Invalid(format!(
                        "{}: head chunk file numbers exhausted",
                        self.dir.display()
                    ))
                })?,
                None => 1,
            }
        };
        let path = self.dir.join(file_name(seq));
        let mut file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .at(&path)?;
        let mut header = [0u8; HEADER_SIZE as usize];
        header[..4].copy_from_slice(&MAGIC_HEAD_CHUNKS.to_be_bytes());
        header[4] = FORMAT_V1;
        file.write_all(&header).at(&path)?;
        sync_dir(&self.dir)?;
        // SAFETY: the map is longer than the file; only bytes below `len`,
        // which this process has written with write(2), are ever read (the
        // kernel shares the page cache between the two). Nothing truncates
        // the file while it is mapped: repairs happen in `open`, before any
        // map exists, and deletion leaves existing maps valid.
        let map = unsafe { MmapOptions::new().len(MAX_FILE_SIZE as usize).map(&file) }.at(&path)?;
        let current = Arc::new(HeadChunkFile {
            seq,
            path,
            map,
            len: AtomicU64::new(HEADER_SIZE),
            max_time: AtomicI64::new(i64::MIN),
        });
        self.files.write().insert(seq, current.clone());
        *w = Some(Writer {
            file,
            current,
            buf: Vec::with_capacity(512),
        });
        Ok(())
    }

    /// The file holding `chunk_ref` and the chunk's offset in it.
    pub fn file_for(&self, chunk_ref: u64) -> Option<(Arc<HeadChunkFile>, u32)> {
        let seq = (chunk_ref >> 32) as u32;
        let f = self.files.read().get(&seq)?.clone();
        Some((f, chunk_ref as u32))
    }

    /// After the head dropped every chunk ending before `mint`: deletes the
    /// files holding only such chunks. The current file is finished first so
    /// that it, too, can go once its chunks are old. Returns files deleted.
    pub fn truncate(&self, mint: i64) -> Result<usize> {
        let mut w = self.writer.lock();
        if let Some(old) = w.take() {
            old.file.sync_all().at(&old.current.path)?;
        }
        drop(w);
        let doomed: Vec<Arc<HeadChunkFile>> = {
            let mut files = self.files.write();
            // Keep the newest file even when old, so that sequence numbers
            // keep growing (a new file never reuses a deleted one's name).
            let newest = files.keys().next_back().copied();
            let old: Vec<u32> = files
                .values()
                .filter(|f| f.max_time.load(Ordering::Relaxed) < mint && Some(f.seq) != newest)
                .map(|f| f.seq)
                .collect();
            old.iter().filter_map(|s| files.remove(s)).collect()
        };
        for f in &doomed {
            fs::remove_file(&f.path).at(&f.path)?;
        }
        Ok(doomed.len())
    }

    /// Bytes in the files (for size-based retention).
    pub fn size(&self) -> u64 {
        self.files
            .read()
            .values()
            .map(|f| f.len.load(Ordering::Relaxed))
            .sum()
    }

    pub fn num_files(&self) -> usize {
        self.files.read().len()
    }
}

/// Maps a file from an earlier run at its (checked) length.
fn map_existing(path: &Path, seq: u32, len: u64, max_time: i64) -> Result<HeadChunkFile> {
    let file = File::open(path).at(path)?;
    // SAFETY: files from an earlier run are never written again (new chunks
    // go to a new file) and `len` was checked against the file's size.
    let map = unsafe { MmapOptions::new().len(len as usize).map(&file) }.at(path)?;
    Ok(HeadChunkFile {
        seq,
        path: path.to_path_buf(),
        map,
        len: AtomicU64::new(len),
        max_time: AtomicI64::new(max_time),
    })
}

/// Reads one file's chunks into `out`. Returns the length of its valid
/// prefix, the largest max time, and what was wrong after that prefix.
fn scan_file(
    path: &Path,
    seq: u32,
    out: &mut HashMap<u64, Vec<MmappedChunk>>,
) -> Result<(u64, i64, Option<String>)> {
    // Mapped, not read: a file is up to 128 MiB (or, if damaged, anything),
    // and scanning needs no copy of it on the heap.
    let file = File::open(path).at(path)?;
    let len = file.metadata().at(path)?.len();
    if len > u64::from(u32::MAX) {
        return Ok((
            0,
            i64::MIN,
            Some(format!("{len} bytes, more than a chunk ref can address")),
        ));
    }
    let map = if len == 0 {
        None
    } else {
        // SAFETY: read-only map of a file no one writes while the database
        // is being opened (the data directory is locked).
        Some(unsafe { Mmap::map(&file) }.at(path)?)
    };
    let b: &[u8] = map.as_deref().unwrap_or(&[]);
    if b.len() < HEADER_SIZE as usize {
        return Ok((
            0,
            i64::MIN,
            Some(format!("{} bytes, shorter than the header", b.len())),
        ));
    }
    let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if magic != MAGIC_HEAD_CHUNKS {
        return Ok((
            0,
            i64::MIN,
            Some(format!("invalid magic number {magic:#010x}")),
        ));
    }
    if b[4] != FORMAT_V1 {
        return Ok((
            0,
            i64::MIN,
            Some(format!("unknown format version {}", b[4])),
        ));
    }
    let mut pos = HEADER_SIZE as usize;
    let mut max_time = i64::MIN;
    let mut found = Vec::new();
    let problem = loop {
        if pos == b.len() {
            break None;
        }
        // Zeros to the end: space a crash (or preallocation) left unwritten.
        // A series ref is never 0, so a real chunk never starts this way.
        if b[pos..].iter().all(|&x| x == 0) {
            break None;
        }
        match parse_chunk(&b[pos..]) {
            Ok(r) if r.series_ref != 0 && r.min_time <= r.max_time => {
                found.push((
                    r.series_ref,
                    MmappedChunk {
                        chunk_ref: (u64::from(seq) << 32) | pos as u64,
                        min_time: r.min_time,
                        max_time: r.max_time,
                        encoding: r.encoding,
                    },
                ));
                max_time = max_time.max(r.max_time);
                pos += r.size;
                if pos > u32::MAX as usize {
                    break Some("file longer than a chunk ref can address".to_string());
                }
            }
            Ok(r) => {
                break Some(format!(
                    "chunk at offset {pos}: series ref {} with time range [{}, {}]",
                    r.series_ref, r.min_time, r.max_time
                ))
            }
            Err(m) => break Some(format!("chunk at offset {pos}: {m}")),
        }
    };
    for (r, c) in found {
        out.entry(r).or_default().push(c);
    }
    Ok((pos as u64, max_time, problem))
}

fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir).and_then(|d| d.sync_all()).at(dir)?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkenc::XorChunk;

    fn chunk(n: i64) -> XorChunk {
        let mut c = XorChunk::new();
        for i in 0..n {
            c.append(i * 1000, i as f64);
        }
        c
    }

    #[test]
    fn writes_prometheus_format_and_reads_back() {
        let d = tempfile::tempdir().unwrap();
        let (m, rep) = ChunkDiskMapper::open(d.path()).unwrap();
        assert!(rep.chunks.is_empty() && rep.repaired.is_none());
        let c = chunk(3);
        let r = m.write_chunk(7, 0, 2000, Encoding::Xor, c.bytes()).unwrap();
        // First file, first chunk right after the 8-byte header.
        assert_eq!(r, (1 << 32) | 8);
        let b = fs::read(d.path().join("000001")).unwrap();
        assert_eq!(&b[..8], &[0x01, 0x30, 0xBC, 0x91, 1, 0, 0, 0]);
        assert_eq!(&b[8..16], &7u64.to_be_bytes());
        assert_eq!(&b[16..24], &0u64.to_be_bytes());
        assert_eq!(&b[24..32], &2000u64.to_be_bytes());
        assert_eq!(b[32], Encoding::Xor as u8);
        assert_eq!(b[33] as usize, c.bytes().len());
        let end = 34 + c.bytes().len();
        assert_eq!(&b[34..end], c.bytes());
        assert_eq!(&b[end..], &crc32c(&b[8..end]).to_be_bytes());
        let (f, off) = m.file_for(r).unwrap();
        let (enc, data) = f.chunk_at(off).unwrap();
        assert_eq!((enc, data), (Encoding::Xor, c.bytes()));
        drop(m);

        let (m2, rep) = ChunkDiskMapper::open(d.path()).unwrap();
        assert_eq!(
            rep.chunks[&7],
            vec![MmappedChunk {
                chunk_ref: r,
                min_time: 0,
                max_time: 2000,
                encoding: Encoding::Xor,
            }]
        );
        // New chunks go to a new file.
        let r2 = m2
            .write_chunk(8, 0, 1000, Encoding::Xor, chunk(2).bytes())
            .unwrap();
        assert_eq!(r2 >> 32, 2);
        let (f, off) = m2.file_for(r).unwrap();
        assert_eq!(f.chunk_at(off).unwrap().1, c.bytes());
        assert!(f.chunk_at(3).is_err() && f.chunk_at(1 << 20).is_err());
    }

    #[test]
    fn files_are_cut_at_the_size_cap_and_truncated_by_time() {
        let d = tempfile::tempdir().unwrap();
        let (m, _) = ChunkDiskMapper::open_with_max_size(d.path(), 300).unwrap();
        let c = chunk(10);
        let refs: Vec<u64> = (0..10)
            .map(|i| {
                m.write_chunk(1, i * 100, i * 100 + 50, Encoding::Xor, c.bytes())
                    .unwrap()
            })
            .collect();
        let files = m.num_files();
        assert!(files > 2, "{files} files");
        for r in &refs {
            let (f, off) = m.file_for(*r).unwrap();
            assert_eq!(f.chunk_at(off).unwrap().1, c.bytes());
        }
        // Every file ending before 500 goes; the newest file always stays.
        let deleted = m.truncate(500).unwrap();
        assert!(deleted >= 1);
        assert!(m.file_for(refs[0]).is_none());
        assert!(m.file_for(refs[9]).is_some());
        let (_, rep) = ChunkDiskMapper::open(d.path()).unwrap();
        let kept = &rep.chunks[&1];
        assert!(kept.iter().all(|c| c.max_time >= 450));
        assert_eq!(kept.last().unwrap().chunk_ref, refs[9]);
    }

    #[test]
    fn torn_or_corrupted_files_are_cut_and_later_files_deleted() {
        let d = tempfile::tempdir().unwrap();
        let (m, _) = ChunkDiskMapper::open_with_max_size(d.path(), 200).unwrap();
        let c = chunk(5);
        let refs: Vec<u64> = (0..8)
            .map(|i| {
                m.write_chunk(3, i * 10, i * 10 + 5, Encoding::Xor, c.bytes())
                    .unwrap()
            })
            .collect();
        drop(m);
        // Torn tail of the last file: its last chunk is lost, nothing else.
        let seqs = list_files(d.path()).unwrap();
        let last = d.path().join(file_name(*seqs.last().unwrap()));
        let len = fs::metadata(&last).unwrap().len();
        let f = OpenOptions::new().write(true).open(&last).unwrap();
        f.set_len(len - 3).unwrap();
        let (_, rep) = ChunkDiskMapper::open(d.path()).unwrap();
        assert!(
            rep.repaired.as_deref().unwrap().contains("000"),
            "{:?}",
            rep.repaired
        );
        let got: Vec<u64> = rep.chunks[&3].iter().map(|c| c.chunk_ref).collect();
        assert_eq!(got, refs[..7]);

        // A flipped bit in the second file: the rest of it and every later
        // file go, so every series keeps a gap-free prefix.
        let second = d.path().join(file_name(seqs[1]));
        let mut b = fs::read(&second).unwrap();
        b[8 + 30] ^= 0x40;
        fs::write(&second, &b).unwrap();
        let (_, rep) = ChunkDiskMapper::open(d.path()).unwrap();
        assert!(rep
            .repaired
            .as_deref()
            .unwrap()
            .contains("checksum mismatch"));
        let got: Vec<u64> = rep.chunks[&3].iter().map(|c| c.chunk_ref).collect();
        assert!(got.iter().all(|r| (r >> 32) as u32 == seqs[0]), "{got:x?}");
        assert_eq!(list_files(d.path()).unwrap(), [seqs[0]]);

        // Garbage header: the file goes.
        fs::write(d.path().join(file_name(seqs[0])), b"garbage!garbage!").unwrap();
        let (m, rep) = ChunkDiskMapper::open(d.path()).unwrap();
        assert!(rep.repaired.as_deref().unwrap().contains("magic"));
        assert!(rep.chunks.is_empty());
        assert_eq!(m.num_files(), 0);
    }

    #[test]
    fn zeros_after_the_last_chunk_end_the_file() {
        let d = tempfile::tempdir().unwrap();
        let (m, _) = ChunkDiskMapper::open(d.path()).unwrap();
        let r = m
            .write_chunk(5, 1, 2, Encoding::Xor, chunk(2).bytes())
            .unwrap();
        drop(m);
        let p = d.path().join("000001");
        let len = fs::metadata(&p).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len + 100)
            .unwrap();
        let (_, rep) = ChunkDiskMapper::open(d.path()).unwrap();
        assert!(rep.repaired.is_none());
        assert_eq!(rep.chunks[&5][0].chunk_ref, r);
    }
}
