//! Chunk segment files: the `chunks/` directory of a block
//! (`tsdb/chunks/chunks.go` in Prometheus 2.42).
//!
//! # Layout
//!
//! A block's chunks live in numbered segment files `chunks/000001`,
//! `chunks/000002`, ... (`%06d`, starting at 1), each at most 512 MiB by
//! default. Each file is:
//!
//! ```text
//! ┌─────────────────────────────┬──────────────────┬──────────────────┬─────────┬───────────┐
//! │ magic 0x85BD40DD <4 B, BE>  │ version 1 <1 B>  │ padding 0 <3 B>  │ chunk 1 │ chunk ... │
//! └─────────────────────────────┴──────────────────┴──────────────────┴─────────┴───────────┘
//! ```
//!
//! and every chunk record is:
//!
//! ```text
//! ┌───────────────┬───────────────────┬──────────────┬─────────────────────┐
//! │ len <uvarint> │ encoding <1 byte> │ data <len B> │ CRC32C <4 B, BE>    │
//! └───────────────┴───────────────────┴──────────────┴─────────────────────┘
//! ```
//!
//! - `len` counts the data only; the encoding byte and CRC are not included.
//! - The CRC32 (Castagnoli polynomial) covers the encoding byte and the data.
//! - There is no index or footer: records are found only through references.
//!
//! # References
//!
//! The index refers to a chunk with a `u64`: the 0-based position of its
//! segment among the sorted segment files in the upper 32 bits (file
//! `000001` is 0), and the byte offset of the record in that file in the
//! lower 32. The first record of a file is at offset 8, right after the
//! header.
//!
//! # Cutting segments
//!
//! [`ChunkWriter::write_chunks`] takes all the chunks of one series and
//! reproduces Prometheus's `WriteChunks` batching, so that the same series
//! produce the same files and refs as Prometheus: a series' chunks are split
//! only where they would not fit a segment, each record is sized with the
//! worst-case 5-byte length field, and a new file is never left empty. The
//! result can exceed the segment size when one chunk is larger than it.
//!
//! Prometheus preallocates each segment with `fallocate` and truncates it on
//! close. That is only an allocation hint, and the portable substitute
//! (`set_len`) would merely create a sparse file, so this writer does not
//! preallocate; the final bytes are identical.
//!
//! # Reading
//!
//! [`ChunkReader`] maps every segment file and hands out borrowed chunk
//! bytes, checking the header of each file once on open and the bounds and
//! CRC of each record on access. Every error names the file and, for chunk
//! lookups, the ref.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::chunkenc::bstream::{put_uvarint, uvarint, MAX_VARINT_LEN64};
use crate::chunkenc::Encoding;
use crate::error::{Error, IoContext, Result};

/// First four bytes of every segment file.
pub const MAGIC_CHUNKS: u32 = 0x85BD_40DD;
/// The only segment format version.
pub const CHUNKS_FORMAT_V1: u8 = 1;
/// Magic, version and padding.
pub const SEGMENT_HEADER_SIZE: u64 = 8;
/// Default maximum segment file size.
pub const DEFAULT_CHUNK_SEGMENT_SIZE: u64 = 512 * 1024 * 1024;
/// The length field is sized as its worst case (Go's `MaxVarintLen32`) when
/// deciding whether records fit; the file holds the real, shorter varint.
const MAX_CHUNK_LENGTH_FIELD_SIZE: u64 = 5;
const CRC_SIZE: u64 = 4;
/// Writes are buffered in memory up to this size.
const WRITE_BUFFER_SIZE: usize = 4 * 1024 * 1024;

/// Time range and location of one chunk, as stored in the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkMeta {
    pub min_time: i64,
    /// Inclusive.
    pub max_time: i64,
    pub chunk_ref: u64,
}

/// Packs a segment index and a file offset into a chunk reference.
#[inline]
pub fn chunk_ref(segment_index: u32, offset: u32) -> u64 {
    ((segment_index as u64) << 32) | offset as u64
}

/// Splits a chunk reference into segment index and file offset.
#[inline]
pub fn unpack_chunk_ref(r: u64) -> (u32, u32) {
    ((r >> 32) as u32, r as u32)
}

/// File name of the segment with the given 1-based sequence number.
pub fn segment_file_name(seq: u64) -> String {
    format!("{seq:06}")
}

fn segment_header() -> [u8; SEGMENT_HEADER_SIZE as usize] {
    let mut h = [0u8; SEGMENT_HEADER_SIZE as usize];
    h[..4].copy_from_slice(&MAGIC_CHUNKS.to_be_bytes());
    h[4] = CHUNKS_FORMAT_V1;
    h
}

struct Segment {
    path: PathBuf,
    out: BufWriter<File>,
}

/// Writes chunk segment files into a directory.
///
/// Dropping the writer without [`ChunkWriter::close`] flushes the buffer on
/// a best-effort basis but neither syncs nor reports errors.
pub struct ChunkWriter {
    dir: PathBuf,
    segment_size: u64,
    /// Paths of the files written, in order; the last one is open in `tail`.
    files: Vec<PathBuf>,
    tail: Option<Segment>,
    /// Bytes in the tail file, header included; 0 before the first file.
    n: u64,
    /// Bytes in the finished files.
    finished: u64,
}

impl ChunkWriter {
    /// A writer with 512 MiB segments. Creates `dir` if needed.
    pub fn new(dir: &Path) -> Result<Self> {
        Self::with_segment_size(dir, DEFAULT_CHUNK_SEGMENT_SIZE)
    }

    /// A writer cutting segments at `max_bytes` (0 means the default).
    /// Creates `dir` if needed; files are created on the first write, so a
    /// writer that writes nothing leaves `dir` empty, as in Prometheus.
    pub fn with_segment_size(dir: &Path, max_bytes: u64) -> Result<Self> {
        fs::create_dir_all(dir).at(dir)?;
        Ok(ChunkWriter {
            dir: dir.to_path_buf(),
            segment_size: if max_bytes == 0 {
                DEFAULT_CHUNK_SEGMENT_SIZE
            } else {
                max_bytes
            },
            files: Vec::new(),
            tail: None,
            n: 0,
            finished: 0,
        })
    }

    /// Total bytes written so far, all files and headers included.
    pub fn size(&self) -> u64 {
        self.finished + self.n
    }

    /// Writes the chunks of one series and returns their refs, in order.
    ///
    /// Follows Prometheus's `WriteChunks`: the chunks are split into batches
    /// that fit the segment size (a batch always gets at least one chunk),
    /// the first batch goes to the current file unless even its first chunk
    /// no longer fits there, and every later batch starts a new file. As in
    /// Prometheus, the first call creates `000001` even for an empty slice.
    pub fn write_chunks(&mut self, chunks: &[(Encoding, &[u8])]) -> Result<Vec<u64>> {
        // (start, end) index ranges into `chunks`.
        let mut batches: Vec<(usize, usize)> = vec![(0, 0)];
        let mut batch_size = 0u64;
        let mut first_batch = true;
        for (i, (_, data)) in chunks.iter().enumerate() {
            let chk_size = MAX_CHUNK_LENGTH_FIELD_SIZE + 1 + data.len() as u64 + CRC_SIZE;
            batch_size += chk_size;

            let mut cut = i != 0 && batch_size + SEGMENT_HEADER_SIZE > self.segment_size;
            // The file already holds records: measure the first batch
            // against what is left of it.
            if first_batch && self.n > SEGMENT_HEADER_SIZE {
                cut = batch_size + self.n > self.segment_size;
                if cut {
                    first_batch = false;
                }
            }
            if cut {
                batches.push((i, i));
                batch_size = chk_size;
            }
            batches.last_mut().expect("never empty").1 = i + 1;
        }

        if self.n == 0 {
            self.cut()?;
        }
        let mut refs = Vec::with_capacity(chunks.len());
        let last = batches.len() - 1;
        for (i, (start, end)) in batches.into_iter().enumerate() {
            for &(enc, data) in &chunks[start..end] {
                refs.push(self.write_record(enc, data)?);
            }
            // Never leave a new empty file behind.
            if i < last {
                self.cut()?;
            }
        }
        Ok(refs)
    }

    fn write_record(&mut self, enc: Encoding, data: &[u8]) -> Result<u64> {
        let seq = self.files.len() - 1;
        let tail = self.tail.as_mut().expect("cut before writing");
        if self.n > u32::MAX as u64 || seq > u32::MAX as usize {
            return Err(Error::Invalid(format!(
                "{}: chunk offset {} or segment index {seq} does not fit a 32-bit chunk reference",
                tail.path.display(),
                self.n
            )));
        }
        let r = chunk_ref(seq as u32, self.n as u32);

        let mut len_buf = [0u8; MAX_VARINT_LEN64];
        let len_n = put_uvarint(&mut len_buf, data.len() as u64);
        let enc_byte = [enc as u8];
        let crc = crc32c::crc32c_append(crc32c::crc32c(&enc_byte), data);

        let out = &mut tail.out;
        out.write_all(&len_buf[..len_n])
            .and_then(|_| out.write_all(&enc_byte))
            .and_then(|_| out.write_all(data))
            .and_then(|_| out.write_all(&crc.to_be_bytes()))
            .at(&tail.path)?;
        self.n += (len_n + 1 + data.len()) as u64 + CRC_SIZE;
        Ok(r)
    }

    /// Finishes the current file and starts the next one.
    fn cut(&mut self) -> Result<()> {
        self.finalize_tail()?;
        let path = self
            .dir
            .join(segment_file_name(self.files.len() as u64 + 1));
        // create_new: a leftover file would otherwise be silently mixed in.
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .at(&path)?;
        let mut out = BufWriter::with_capacity(WRITE_BUFFER_SIZE, file);
        out.write_all(&segment_header()).at(&path)?;
        self.files.push(path.clone());
        self.tail = Some(Segment { path, out });
        self.n = SEGMENT_HEADER_SIZE;
        Ok(())
    }

    fn finalize_tail(&mut self) -> Result<()> {
        if let Some(Segment { path, out }) = self.tail.take() {
            let file = out
                .into_inner()
                .map_err(|e| Error::io(&path, e.into_error()))?;
            file.sync_all().at(&path)?;
            self.finished += self.n;
            self.n = 0;
        }
        Ok(())
    }

    /// Flushes and fsyncs the last file, then fsyncs the directory so the
    /// new file names are durable too.
    pub fn close(mut self) -> Result<()> {
        self.finalize_tail()?;
        sync_dir(&self.dir)
    }
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

struct MappedSegment {
    path: PathBuf,
    map: Mmap,
}

/// Reads chunks from the segment files of a block's `chunks/` directory.
pub struct ChunkReader {
    dir: PathBuf,
    segments: Vec<MappedSegment>,
    size: u64,
}

impl std::fmt::Debug for ChunkReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkReader")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("size", &self.size)
            .finish()
    }
}

impl ChunkReader {
    /// Maps every segment file in `dir` and checks its header.
    ///
    /// Segment files are the entries whose names are all decimal digits,
    /// in name order (Prometheus's `sequenceFiles`); others, such as
    /// `000001.tmp`, are ignored.
    pub fn open(dir: &Path) -> Result<Self> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).at(dir)? {
            let entry = entry.at(dir)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if is_sequence_name(name) {
                names.push(name.to_string());
            }
        }
        names.sort();

        let mut segments = Vec::with_capacity(names.len());
        let mut size = 0;
        for name in names {
            let path = dir.join(name);
            let file = File::open(&path).at(&path)?;
            let len = file.metadata().at(&path)?.len();
            if len < SEGMENT_HEADER_SIZE {
                return Err(Error::corrupted(
                    &path,
                    format!("segment file of {len} bytes is shorter than its 8-byte header"),
                ));
            }
            // SAFETY: block files are immutable once written; nothing in this
            // crate writes to a segment file after it was closed. A file
            // truncated behind our back by another process would fault, the
            // same trade-off Prometheus makes with its mmapped chunks.
            let map = unsafe { Mmap::map(&file) }.at(&path)?;
            let magic = u32::from_be_bytes([map[0], map[1], map[2], map[3]]);
            if magic != MAGIC_CHUNKS {
                return Err(Error::corrupted(
                    &path,
                    format!("invalid magic number {magic:#010x}, want {MAGIC_CHUNKS:#010x}"),
                ));
            }
            if map[4] != CHUNKS_FORMAT_V1 {
                return Err(Error::corrupted(
                    &path,
                    format!("invalid chunk format version {}", map[4]),
                ));
            }
            size += map.len() as u64;
            segments.push(MappedSegment { path, map });
        }
        Ok(ChunkReader {
            dir: dir.to_path_buf(),
            segments,
            size,
        })
    }

    /// Total size of the segment files in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of segment files.
    pub fn num_segments(&self) -> usize {
        self.segments.len()
    }

    /// The encoding and data of the chunk at `chunk_ref`, after checking
    /// that the record lies within its file and that its CRC matches.
    pub fn chunk(&self, chunk_ref: u64) -> Result<(Encoding, &[u8])> {
        let (seg, off) = unpack_chunk_ref(chunk_ref);
        let Some(s) = self.segments.get(seg as usize) else {
            return Err(Error::corrupted(
                &self.dir,
                format!(
                    "chunk ref {chunk_ref:#x}: segment index {seg} out of range ({} segment files)",
                    self.segments.len()
                ),
            ));
        };
        let bad =
            |msg: String| Error::corrupted(&s.path, format!("chunk ref {chunk_ref:#x}: {msg}"));
        let b: &[u8] = &s.map;
        let start = off as usize;
        if (off as u64) < SEGMENT_HEADER_SIZE {
            return Err(bad(format!("offset {off} points into the segment header")));
        }
        // At least the length field, encoding byte and CRC must follow.
        let Some(rest) = b.get(start..).filter(|r| r.len() >= 6) else {
            return Err(bad(format!(
                "offset {off} beyond the end of the {}-byte segment",
                b.len()
            )));
        };
        let Some((len, n)) = uvarint(rest) else {
            return Err(bad("invalid chunk length varint".into()));
        };
        let enc_start = start + n;
        // u64 arithmetic: `len` is untrusted and may be near u64::MAX.
        let end = (enc_start as u64)
            .checked_add(1)
            .and_then(|x| x.checked_add(len))
            .and_then(|x| x.checked_add(CRC_SIZE))
            .filter(|&e| e <= b.len() as u64);
        let Some(end) = end else {
            return Err(bad(format!(
                "chunk of {len} bytes at offset {off} runs past the end of the {}-byte segment",
                b.len()
            )));
        };
        let end = end as usize;
        let data_end = end - CRC_SIZE as usize;
        let want = u32::from_be_bytes([
            b[data_end],
            b[data_end + 1],
            b[data_end + 2],
            b[data_end + 3],
        ]);
        let got = crc32c::crc32c(&b[enc_start..data_end]);
        if got != want {
            return Err(bad(format!(
                "checksum mismatch: stored {want:08x}, computed {got:08x}"
            )));
        }
        let enc_byte = b[enc_start];
        match Encoding::from_u8(enc_byte) {
            Some(Encoding::None) | None => Err(bad(format!("invalid chunk encoding {enc_byte}"))),
            Some(enc) => Ok((enc, &b[enc_start + 1..data_end])),
        }
    }
}

/// Go's `strconv.ParseUint(name, 10, 64)` succeeds: digits only, fits u64.
fn is_sequence_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|c| c.is_ascii_digit()) && name.parse::<u64>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkenc::{XorChunk, XorIter};

    fn xor_chunk(n: usize, seed: i64) -> XorChunk {
        let mut c = XorChunk::new();
        for i in 0..n as i64 {
            c.append(seed + i * 15_000, (seed + i * i) as f64);
        }
        c
    }

    fn segment_files(dir: &Path) -> Vec<(String, u64)> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn write_then_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("chunks");
        let chunks: Vec<_> = (0..5).map(|i| xor_chunk(1 + i * 30, i as i64)).collect();
        let mut w = ChunkWriter::new(&dir).unwrap();
        let input: Vec<_> = chunks.iter().map(|c| (Encoding::Xor, c.bytes())).collect();
        let refs1 = w.write_chunks(&input[..2]).unwrap();
        let refs2 = w.write_chunks(&input[2..]).unwrap();
        assert_eq!(refs1[0], 8);
        // 1-byte length, encoding, data, CRC.
        assert_eq!(refs1[1], 8 + 1 + 1 + chunks[0].bytes().len() as u64 + 4);
        let size = w.size();
        w.close().unwrap();
        assert_eq!(segment_files(&dir), vec![("000001".to_string(), size)]);

        let r = ChunkReader::open(&dir).unwrap();
        assert_eq!(r.size(), size);
        for (c, rf) in chunks.iter().zip(refs1.iter().chain(&refs2)) {
            let (enc, data) = r.chunk(*rf).unwrap();
            assert_eq!(enc, Encoding::Xor);
            assert_eq!(data, c.bytes());
            assert!(XorIter::new(data).eq(c.iter()));
        }
        let file = fs::read(dir.join("000001")).unwrap();
        assert_eq!(&file[..8], &[0x85, 0xbd, 0x40, 0xdd, 1, 0, 0, 0]);
    }

    #[test]
    fn record_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = ChunkWriter::new(tmp.path()).unwrap();
        let mut c = XorChunk::new();
        c.append(1_700_000_000_000, 2.0);
        assert_eq!(
            w.write_chunks(&[(Encoding::Xor, c.bytes())]).unwrap(),
            vec![8]
        );
        w.close().unwrap();
        let file = fs::read(tmp.path().join("000001")).unwrap();
        let mut want = vec![0x85, 0xbd, 0x40, 0xdd, 1, 0, 0, 0, 17, 1];
        want.extend_from_slice(c.bytes());
        let crc = crc32c::crc32c(&want[9..]);
        want.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(file, want);
    }

    #[test]
    fn segment_cut_follows_prometheus() {
        let tmp = tempfile::tempdir().unwrap();
        let c = xor_chunk(10, 0);
        let len = c.bytes().len() as u64;
        // Budgeted record size: 5 + 1 + len + 4; room for 3 per segment.
        let rec = 5 + 1 + len + 4;
        let real = 1 + 1 + len + 4;
        let seg = 8 + 3 * rec;
        let mut w = ChunkWriter::with_segment_size(tmp.path(), seg).unwrap();
        let x = (Encoding::Xor, c.bytes());

        // 5 chunks of one series: 3 fit the first file, then a new file.
        let refs = w.write_chunks(&[x; 5]).unwrap();
        let r32 = real as u32;
        let want = vec![
            8,
            8 + real,
            8 + 2 * real,
            chunk_ref(1, 8),
            chunk_ref(1, 8 + r32),
        ];
        assert_eq!(refs, want);
        // The second file holds 2 real records, n = 8 + 2*real. One more
        // chunk still fits against real sizes + budget: 8+2*real+rec <= seg.
        let refs = w.write_chunks(&[x]).unwrap();
        assert_eq!(refs, vec![chunk_ref(1, 8 + 2 * r32)]);
        // Now 3 real records; the next does not fit: even the first chunk of
        // the batch goes to a new file, and no empty batch is written.
        let refs = w.write_chunks(&[x, x]).unwrap();
        assert_eq!(refs, vec![chunk_ref(2, 8), chunk_ref(2, 8 + r32)]);
        // A chunk larger than a whole segment still gets written.
        let big = xor_chunk(200, 7);
        let refs = w.write_chunks(&[(Encoding::Xor, big.bytes())]).unwrap();
        assert_eq!(refs, vec![chunk_ref(3, 8)]);
        let refs = w.write_chunks(&[x]).unwrap();
        assert_eq!(refs, vec![chunk_ref(4, 8)]);
        let total = w.size();
        w.close().unwrap();

        let files = segment_files(tmp.path());
        let names: Vec<_> = files.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(names, ["000001", "000002", "000003", "000004", "000005"]);
        assert_eq!(files.iter().map(|f| f.1).sum::<u64>(), total);
        assert_eq!(files[0].1, 8 + 3 * real);

        let r = ChunkReader::open(tmp.path()).unwrap();
        assert_eq!(r.num_segments(), 5);
        assert_eq!(r.chunk(chunk_ref(3, 8)).unwrap().1, big.bytes());
        assert_eq!(r.chunk(chunk_ref(4, 8)).unwrap().1, c.bytes());
    }

    #[test]
    fn first_write_of_empty_slice_creates_a_segment() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = ChunkWriter::new(tmp.path()).unwrap();
        assert_eq!(w.write_chunks(&[]).unwrap(), Vec::<u64>::new());
        w.close().unwrap();
        assert_eq!(segment_files(tmp.path()), vec![("000001".to_string(), 8)]);

        let tmp = tempfile::tempdir().unwrap();
        let w = ChunkWriter::new(tmp.path()).unwrap();
        w.close().unwrap();
        assert!(segment_files(tmp.path()).is_empty());
        assert_eq!(ChunkReader::open(tmp.path()).unwrap().size(), 0);
    }

    fn written(dir: &Path) -> (Vec<u64>, XorChunk) {
        let c = xor_chunk(20, 3);
        let mut w = ChunkWriter::new(dir).unwrap();
        let refs = w
            .write_chunks(&[(Encoding::Xor, c.bytes()), (Encoding::Xor, c.bytes())])
            .unwrap();
        w.close().unwrap();
        (refs, c)
    }

    fn err_string<T: std::fmt::Debug>(r: Result<T>) -> String {
        let e = r.unwrap_err();
        assert!(matches!(e, Error::Corrupted { .. }), "{e:?}");
        e.to_string()
    }

    #[test]
    fn reader_rejects_bad_headers() {
        let tmp = tempfile::tempdir().unwrap();
        written(tmp.path());
        let path = tmp.path().join("000001");
        let good = fs::read(&path).unwrap();

        let mut bad = good.clone();
        bad[0] = 0x86;
        fs::write(&path, &bad).unwrap();
        let msg = err_string(ChunkReader::open(tmp.path()));
        assert!(msg.contains("000001") && msg.contains("magic"), "{msg}");

        let mut bad = good.clone();
        bad[4] = 2;
        fs::write(&path, &bad).unwrap();
        let msg = err_string(ChunkReader::open(tmp.path()));
        assert!(msg.contains("000001") && msg.contains("version 2"), "{msg}");

        fs::write(&path, &good[..5]).unwrap();
        let msg = err_string(ChunkReader::open(tmp.path()));
        assert!(msg.contains("000001") && msg.contains("shorter"), "{msg}");

        fs::write(&path, b"").unwrap();
        err_string(ChunkReader::open(tmp.path()));

        // Non-numeric names are not segments.
        fs::write(&path, &good).unwrap();
        fs::write(tmp.path().join("000002.tmp"), b"junk").unwrap();
        fs::write(tmp.path().join("+3"), b"junk").unwrap();
        assert_eq!(ChunkReader::open(tmp.path()).unwrap().num_segments(), 1);

        let missing = tmp.path().join("nope");
        let e = ChunkReader::open(&missing).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }

    #[test]
    fn reader_rejects_bad_chunks() {
        let tmp = tempfile::tempdir().unwrap();
        let (refs, c) = written(tmp.path());
        let path = tmp.path().join("000001");
        let good = fs::read(&path).unwrap();
        let r = ChunkReader::open(tmp.path()).unwrap();

        for bad_ref in [chunk_ref(1, 8), chunk_ref(u32::MAX, 0)] {
            let msg = err_string(r.chunk(bad_ref));
            assert!(
                msg.contains("out of range") && msg.contains(&format!("{bad_ref:#x}")),
                "{msg}"
            );
        }
        for off in [0u32, 4, good.len() as u32, good.len() as u32 - 3, u32::MAX] {
            let msg = err_string(r.chunk(chunk_ref(0, off)));
            assert!(msg.contains("000001"), "{msg}");
        }
        // Misaligned ref: lands inside a record.
        assert!(r.chunk(refs[0] + 3).is_err());
        drop(r);

        // Flip a data bit: CRC mismatch.
        let mut bad = good.clone();
        bad[refs[0] as usize + 10] ^= 0x10;
        fs::write(&path, &bad).unwrap();
        let r = ChunkReader::open(tmp.path()).unwrap();
        let msg = err_string(r.chunk(refs[0]));
        assert!(msg.contains("000001") && msg.contains("checksum"), "{msg}");
        assert_eq!(r.chunk(refs[1]).unwrap().1, c.bytes());
        drop(r);

        // Truncated file: the second record is cut.
        fs::write(&path, &good[..good.len() - 2]).unwrap();
        let r = ChunkReader::open(tmp.path()).unwrap();
        assert_eq!(r.chunk(refs[0]).unwrap().1, c.bytes());
        let msg = err_string(r.chunk(refs[1]));
        assert!(msg.contains("past the end"), "{msg}");
        drop(r);

        // Huge length varint.
        let mut bad = good.clone();
        let at = refs[0] as usize;
        bad[at..at + 10]
            .copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        fs::write(&path, &bad).unwrap();
        let r = ChunkReader::open(tmp.path()).unwrap();
        assert!(err_string(r.chunk(refs[0])).contains("past the end"));
        drop(r);

        // Unknown encoding with a valid CRC.
        let mut bad = good.clone();
        let enc_at = refs[0] as usize + 1;
        bad[enc_at] = 9;
        let data_end = refs[1] as usize - 4;
        let crc = crc32c::crc32c(&bad[enc_at..data_end]);
        bad[data_end..data_end + 4].copy_from_slice(&crc.to_be_bytes());
        fs::write(&path, &bad).unwrap();
        let r = ChunkReader::open(tmp.path()).unwrap();
        assert!(err_string(r.chunk(refs[0])).contains("encoding 9"));
    }

    #[test]
    fn writer_refuses_to_overwrite_segments() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("000001"), b"old").unwrap();
        let mut w = ChunkWriter::new(tmp.path()).unwrap();
        let e = w.write_chunks(&[]).unwrap_err();
        assert!(
            matches!(e, Error::Io { .. }) && e.to_string().contains("000001"),
            "{e}"
        );
    }

    /// A block written by promtool 2.42 (`tests/fixtures/gen_xor_fixture.py`):
    /// our reader accepts it and our encoder, fed the decoded samples,
    /// produces the same chunk bytes, and our writer the same file.
    #[test]
    fn byte_identical_to_promtool_block() {
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xor_fixture_chunks_000001");
        let want_file = fs::read(&fixture).unwrap();
        let om = fs::read_to_string(fixture.with_file_name("xor_fixture.om")).unwrap();
        let expected = parse_openmetrics(&om);
        assert_eq!(expected.len(), 6);

        let tmp = tempfile::tempdir().unwrap();
        fs::copy(&fixture, tmp.path().join("000001")).unwrap();
        let r = ChunkReader::open(tmp.path()).unwrap();
        assert_eq!(r.size(), want_file.len() as u64);

        // Records follow each other; series in label order = name order.
        let mut off = SEGMENT_HEADER_SIZE;
        let mut ours = Vec::new();
        for (name, samples) in &expected {
            let (enc, data) = r.chunk(off).unwrap();
            assert_eq!(enc, Encoding::Xor);
            let mut it = XorIter::new(data);
            let got: Vec<(i64, u64)> = it.by_ref().map(|(t, v)| (t, v.to_bits())).collect();
            assert_eq!(it.err(), None, "{name}");
            let want: Vec<(i64, u64)> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
            assert_eq!(got, want, "{name}");

            let mut c = XorChunk::new();
            for &(t, v) in samples {
                c.append(t, v);
            }
            assert_eq!(c.bytes(), data, "{name}");
            ours.push(c);
            let (len, n) = uvarint(&want_file[off as usize..]).unwrap();
            off += n as u64 + 1 + len + CRC_SIZE;
        }
        assert_eq!(off, want_file.len() as u64);

        let out = tempfile::tempdir().unwrap();
        let mut w = ChunkWriter::new(out.path()).unwrap();
        for c in &ours {
            w.write_chunks(&[(Encoding::Xor, c.bytes())]).unwrap();
        }
        w.close().unwrap();
        assert!(fs::read(out.path().join("000001")).unwrap() == want_file);
    }

    /// Series name -> samples, sorted by name, from the fixture's
    /// OpenMetrics (`name value seconds` lines). NaN is Go's `math.NaN()`.
    fn parse_openmetrics(om: &str) -> Vec<(String, Vec<(i64, f64)>)> {
        let mut out: Vec<(String, Vec<(i64, f64)>)> = Vec::new();
        for line in om.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = line.split(' ').collect();
            let v = match f[1] {
                "NaN" => f64::from_bits(0x7ff8_0000_0000_0001),
                s => s.parse::<f64>().unwrap(),
            };
            // promtool: int64(seconds * 1000), truncating.
            let t = (f[2].parse::<f64>().unwrap() * 1000.0) as i64;
            match out.last_mut() {
                Some((n, s)) if n == f[0] => s.push((t, v)),
                _ => out.push((f[0].to_string(), vec![(t, v)])),
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}
