//! The block index: Prometheus TSDB index format v2, byte-identical to what
//! Prometheus 2.42 writes.
//!
//! A block's `index` file maps label sets to series and series to chunk
//! references. [`IndexWriter`] writes it once, when a block is cut;
//! [`IndexReader`] memory-maps it and answers label, postings and series
//! queries. [`postings`] has the sorted-list set operations that
//! [`IndexReader::postings_for_matchers`] combines.
//!
//! # File layout
//!
//! Fixed-width integers are big-endian. `uvarint`/`varint` are Go
//! `encoding/binary` varints (`varint` is zig-zag). Every CRC is CRC-32C
//! (Castagnoli), stored as a big-endian u32. Sections appear in this order,
//! and readers must tolerate zero padding between them:
//!
//! ```text
//! header   magic u32 = 0xBAAAD700 | version u8 = 2
//! symbols  len u32 | count u32 | { uvarint strlen, bytes }*count | crc
//!          len counts count+strings; the CRC covers those len bytes.
//! series   per series, zero-padded to a 16-byte boundary (series ref =
//!          offset / 16, so a u32 ref addresses 64 GiB):
//!          len uvarint | nlabels uvarint | { name sym, value sym }* uvarint |
//!          nchunks uvarint | chunk 0: mint varint, maxt-mint uvarint, ref uvarint |
//!          chunk i: mint_i-maxt_{i-1} uvarint, maxt_i-mint_i uvarint,
//!                   ref_i-ref_{i-1} varint | crc
//!          len and the CRC both cover nlabels..end of chunks (not the len).
//! label    per label name, padded to 4 bytes:
//! indices  len u32 | 1 u32 | count u32 | value sym u32 * count | crc
//! postings per (name, value), padded to 4 bytes; the all-series list for
//!          ("", "") first, then names and values in byte order:
//!          len u32 | count u32 | series ref u32 * count | crc
//! label    len u32 | count u32 | { uvarint 1, uvarint-str name,
//! offsets                         uvarint offset of the label index }* | crc
//! postings len u32 | count u32 | { uvarint 2, uvarint-str name,
//! offsets    uvarint-str value, uvarint offset of the postings list }* | crc
//! TOC      symbols, series, label indices, label offsets, postings,
//!          postings offsets: u64 each | crc over those 48 bytes
//! ```
//!
//! Symbol references in v2 are ordinal positions in the sorted symbol table,
//! not byte offsets (v1 used offsets). Quirks the writer reproduces because
//! Prometheus has them and byte identity depends on them:
//! - Prometheus' symbol table contains `""` (it comes from the all-postings
//!   key); callers that want identical bytes add `""` as the first symbol.
//! - The TOC's `label indices` and `postings` entries hold the file position
//!   *before* the 4-byte alignment padding of that section, while the two
//!   offset tables point *after* it.
//! - 2.42 still writes the label indices and their offset table, though no
//!   reader uses them any more; we write them and never read them.
//!
//! Reading supports versions 2 and 3 (Prometheus 3 accepts 3 as an alias of
//! 2). Version 1 is refused with an "unsupported index version" error.

use std::fmt;

pub mod postings;
pub mod reader;
pub mod writer;

pub use reader::IndexReader;
pub use writer::IndexWriter;

/// A series reference: in v2, the series entry's byte offset divided by 16.
pub type SeriesRef = u64;

/// Magic number at the start of an index file.
pub const MAGIC_INDEX: u32 = 0xBAAA_D700;
/// Length of magic plus version byte.
pub const HEADER_LEN: usize = 5;
/// Index v1 (byte-offset symbol references); read by Prometheus, not by us.
pub const FORMAT_V1: u8 = 1;
/// The version this crate writes and reads.
pub const FORMAT_V2: u8 = 2;
/// Accepted as v2, as Prometheus 3 does.
pub const FORMAT_V3: u8 = 3;
/// Six u64 section offsets and a CRC.
pub const TOC_LEN: usize = 6 * 8 + 4;
/// Largest index Prometheus writes: u32 series refs times the 16-byte series
/// alignment.
pub const MAX_INDEX_SIZE: u64 = 16 * u32::MAX as u64;

/// The table of contents at the end of the file: where each section starts.
/// Zero means "absent".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Toc {
    pub symbols: u64,
    pub series: u64,
    pub label_indices: u64,
    pub label_indices_table: u64,
    pub postings: u64,
    pub postings_table: u64,
}

impl Toc {
    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        for v in [
            self.symbols,
            self.series,
            self.label_indices,
            self.label_indices_table,
            self.postings,
            self.postings_table,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
}

// ---------------------------------------------------------------------------
// Encoding helpers shared by the writer and the reader.

// The Go-compatible encoders live in `crate::encoding`; re-exported here so
// the writer and reader keep their short paths.
pub(crate) use crate::encoding::{put_uvarint, put_varint, uvarint_len};

pub(crate) fn put_uvarint_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Why a decode failed; the reader turns it into `Error::Corrupted` with the
/// file and section names attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DecodeError(pub &'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

const TRUNCATED: DecodeError = DecodeError("unexpected end of data");

/// A cursor over untrusted bytes. Every read is bounds-checked and fails
/// instead of panicking, so garbage input can only produce errors.
#[derive(Clone, Copy)]
pub(crate) struct Dec<'a> {
    b: &'a [u8],
}

impl<'a> Dec<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Dec { b }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.b.len()
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.b
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return Err(TRUNCATED);
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }

    pub(crate) fn be32(&mut self) -> Result<u32, DecodeError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn be64(&mut self) -> Result<u64, DecodeError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// Go's `binary.Uvarint`: at most 10 bytes, and the 10th may only be 0 or 1.
    pub(crate) fn uvarint(&mut self) -> Result<u64, DecodeError> {
        let mut x: u64 = 0;
        let mut shift = 0u32;
        for (i, &c) in self.b.iter().enumerate() {
            if i == 10 || (i == 9 && c > 1) {
                return Err(DecodeError("varint overflows 64 bits"));
            }
            if c < 0x80 {
                self.b = &self.b[i + 1..];
                return Ok(x | (c as u64) << shift);
            }
            x |= ((c & 0x7f) as u64) << shift;
            shift += 7;
        }
        Err(TRUNCATED)
    }

    pub(crate) fn uvarint32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.uvarint()?).map_err(|_| DecodeError("varint overflows 32 bits"))
    }

    pub(crate) fn varint(&mut self) -> Result<i64, DecodeError> {
        let u = self.uvarint()?;
        Ok((u >> 1) as i64 ^ -((u & 1) as i64))
    }

    /// A length-prefixed byte string.
    pub(crate) fn uvarint_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.uvarint()?;
        let n = usize::try_from(n).map_err(|_| TRUNCATED)?;
        self.bytes(n)
    }
}

/// Helpers shared by the index tests.
#[cfg(test)]
pub(crate) mod test_util {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    use super::IndexWriter;
    use crate::chunks::ChunkMeta;
    use crate::labels::Labels;

    pub(crate) type Series = (Labels, Vec<ChunkMeta>);

    /// Writes `series` (sorted here) the way Prometheus would: the symbol
    /// table holds every label string plus "".
    pub(crate) fn write_index(path: &Path, series: &[Series]) {
        let mut series = series.to_vec();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        let mut syms: BTreeSet<&str> = BTreeSet::new();
        syms.insert("");
        for (l, _) in &series {
            for p in l {
                syms.insert(&p.name);
                syms.insert(&p.value);
            }
        }
        let mut w = IndexWriter::create(path).unwrap();
        for s in syms {
            w.add_symbol(s).unwrap();
        }
        for (l, c) in &series {
            w.add_series(l, c).unwrap();
        }
        w.close().unwrap();
    }

    pub(crate) fn fixture_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/index")
    }

    /// The block directory of fixture `name` ("small" or "mixed").
    pub(crate) fn fixture_block(name: &str) -> PathBuf {
        let dir = fixture_dir().join(name);
        let mut blocks: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("index").exists())
            .collect();
        assert_eq!(blocks.len(), 1, "one block expected in {}", dir.display());
        blocks.pop().unwrap()
    }

    /// The oracle's decoding of fixture `name` (see the fixture README).
    pub(crate) fn fixture_expected(name: &str) -> serde_json::Value {
        let p = fixture_dir().join(format!("{name}.expected.json"));
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }

    pub(crate) fn json_series(v: &serde_json::Value) -> (u64, Labels, Vec<ChunkMeta>) {
        let s = |v: &serde_json::Value| v.as_str().unwrap().to_string();
        let labels = Labels::from_pairs(
            v["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (s(&p[0]), s(&p[1]))),
        );
        let chunks = v["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| ChunkMeta {
                min_time: c[0].as_i64().unwrap(),
                max_time: c[1].as_i64().unwrap(),
                chunk_ref: c[2].as_u64().unwrap(),
            })
            .collect();
        (v["ref"].as_u64().unwrap(), labels, chunks)
    }

    /// The `promtool` binary, or None (tests then skip their promtool part
    /// unless STRATA_REQUIRE_PROMTOOL is set).
    pub(crate) fn promtool() -> Option<PathBuf> {
        let p = PathBuf::from(std::env::var_os("PROMTOOL").unwrap_or("/usr/bin/promtool".into()));
        if p.exists() {
            return Some(p);
        }
        assert!(
            std::env::var_os("STRATA_REQUIRE_PROMTOOL").is_none(),
            "promtool not found at {}",
            p.display()
        );
        eprintln!(
            "promtool not found at {}; skipping promtool checks",
            p.display()
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_match_go() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_uvarint(&mut b, v);
            assert_eq!(b.len(), uvarint_len(v));
            let mut d = Dec::new(&b);
            assert_eq!(d.uvarint().unwrap(), v);
            assert_eq!(d.remaining(), 0);
        }
        for v in [0i64, -1, 1, -64, 64, i64::MIN, i64::MAX, 1_700_000_000_000] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(Dec::new(&b).varint().unwrap(), v);
        }
        // From the worked example: mint 1700000000000 is 80a0abfef962.
        let mut b = Vec::new();
        put_varint(&mut b, 1_700_000_000_000);
        assert_eq!(b, [0x80, 0xa0, 0xab, 0xfe, 0xf9, 0x62]);
    }

    #[test]
    fn bad_varints_are_errors() {
        assert_eq!(Dec::new(&[0x80, 0x80]).uvarint(), Err(TRUNCATED));
        assert!(Dec::new(&[0xff; 11]).uvarint().is_err());
        assert!(
            Dec::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])
                .uvarint()
                .is_err()
        );
        assert!(Dec::new(&[0x80, 0x80, 0x80, 0x80, 0x10])
            .uvarint32()
            .is_err());
        assert!(Dec::new(&[0x05, b'a']).uvarint_bytes().is_err());
    }
}
