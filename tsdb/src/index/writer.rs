//! Writing an index file in the exact byte layout of Prometheus 2.42.
//!
//! Usage is three phases, as with Prometheus' `index.Writer`:
//! 1. [`IndexWriter::add_symbol`] for every label name and value, in strictly
//!    increasing byte order (include `""` first for byte identity with
//!    Prometheus, see the module docs of [`crate::index`]);
//! 2. [`IndexWriter::add_series`] for every series, in `Labels` order;
//! 3. [`IndexWriter::close`], which writes label indices, postings, the two
//!    offset tables and the TOC, then fsyncs the file and its directory.
//!
//! Design: the symbol table is kept in memory in its encoded form (it is
//! needed for symbol lookups and for the postings offset table anyway, and the
//! count that precedes it is only known at the end), then written in one go
//! before the first series. Series are streamed to the file. Postings are
//! collected in memory as `(value symbol, series ref)` pairs per label-name
//! symbol: 8 bytes per label pair, instead of Prometheus' temporary files and
//! re-scans of the series section. Every later section's size can be computed
//! before it is written, so the file is written strictly sequentially, with no
//! seeks or patch-ups.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{
    put_uvarint, put_uvarint_str, put_varint, uvarint_len, Toc, FORMAT_V2, HEADER_LEN, MAGIC_INDEX,
    MAX_INDEX_SIZE,
};
use crate::chunks::ChunkMeta;
use crate::error::{Error, IoContext, Result};
use crate::labels::Labels;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    Symbols,
    Series,
}

/// Remembers the symbols of the last value seen for a label name: adjacent
/// series mostly share values, so most lookups skip the binary search.
struct CacheEntry {
    name: u32,
    last_value: Arc<str>,
    last_value_sym: u32,
}

/// Writes one index file. See the module docs for the call order.
pub struct IndexWriter {
    path: PathBuf,
    out: BufWriter<File>,
    pos: u64,
    stage: Stage,
    toc: Toc,

    /// The symbol section body after the count: `{uvarint len, bytes}*`.
    sym_enc: Vec<u8>,
    /// For each symbol, (start, len) of its bytes inside `sym_enc`.
    sym_spans: Vec<(u32, u32)>,

    last_series: Option<Labels>,
    cache: HashMap<Arc<str>, CacheEntry>,
    /// Label-name symbol -> (value symbol, series ref) for every label pair.
    /// Symbols are ordered like their strings, so a BTreeMap on the symbol and
    /// a sort of the pairs give the (name, value, series) order postings need.
    postings: BTreeMap<u32, Vec<(u32, u32)>>,
    all_series: Vec<u32>,

    /// Reused buffers: the series entry being encoded, its label symbols.
    buf: Vec<u8>,
    pairs: Vec<(u32, u32)>,
}

impl IndexWriter {
    /// Creates (or truncates) the index file at `path` and writes the header.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).at(path)?;
        let mut w = IndexWriter {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, file),
            pos: 0,
            stage: Stage::Symbols,
            toc: Toc::default(),
            sym_enc: Vec::new(),
            sym_spans: Vec::new(),
            last_series: None,
            cache: HashMap::new(),
            postings: BTreeMap::new(),
            all_series: Vec::new(),
            buf: Vec::with_capacity(1 << 12),
            pairs: Vec::new(),
        };
        let mut h = Vec::with_capacity(HEADER_LEN);
        h.extend_from_slice(&MAGIC_INDEX.to_be_bytes());
        h.push(FORMAT_V2);
        w.write(&h)?;
        w.toc.symbols = w.pos;
        Ok(w)
    }

    /// Adds the next symbol. Symbols must be strictly increasing in byte
    /// order and all be added before the first series.
    pub fn add_symbol(&mut self, s: &str) -> Result<()> {
        if self.stage != Stage::Symbols {
            return Err(Error::Invalid(format!(
                "index {}: symbol {s:?} added after series",
                self.path.display()
            )));
        }
        if let Some(last) = self.sym_spans.last().map(|&sp| self.sym(sp)) {
            if s <= last {
                return Err(Error::Invalid(format!(
                    "index {}: symbol {s:?} out of order (after {last:?})",
                    self.path.display()
                )));
            }
        }
        // The section's length field is a u32 and covers the 4-byte count.
        let new_len = self.sym_enc.len() + uvarint_len(s.len() as u64) + s.len();
        if new_len > u32::MAX as usize - 4 {
            return Err(Error::Invalid(format!(
                "index {}: symbol table exceeds 4 GiB",
                self.path.display()
            )));
        }
        put_uvarint(&mut self.sym_enc, s.len() as u64);
        let start = self.sym_enc.len();
        self.sym_enc.extend_from_slice(s.as_bytes());
        self.sym_spans.push((start as u32, s.len() as u32));
        Ok(())
    }

    /// Adds the next series with its chunk metas.
    ///
    /// Series must come in increasing `Labels` order, and every label name and
    /// value must be non-empty and have been added as a symbol. A rejected
    /// call writes nothing, so the caller may skip the series and go on.
    /// Chunks must be ordered by time
    /// with `min_time <= max_time` and each chunk starting no earlier than the
    /// previous one ends (the format stores those gaps unsigned).
    pub fn add_series(&mut self, labels: &Labels, chunks: &[ChunkMeta]) -> Result<()> {
        if self.stage == Stage::Symbols {
            self.finish_symbols()?;
        }
        if labels.is_empty() {
            return Err(Error::InvalidLabels(format!(
                "index {}: empty label set",
                self.path.display()
            )));
        }
        if let Some(last) = &self.last_series {
            if labels <= last {
                return Err(Error::Invalid(format!(
                    "index {}: out-of-order series {labels} (after {last})",
                    self.path.display()
                )));
            }
        }
        if labels.as_slice().windows(2).any(|w| w[0].name >= w[1].name) {
            return Err(Error::InvalidLabels(format!(
                "{labels}: names not sorted and unique"
            )));
        }
        // An empty name would collide with the all-postings key ("", ""), and
        // an empty value means "label absent" to every matcher.
        if labels
            .iter()
            .any(|l| l.name.is_empty() || l.value.is_empty())
        {
            return Err(Error::InvalidLabels(format!(
                "{labels}: empty label name or value"
            )));
        }
        self.check_chunks(labels, chunks)?;

        // Series entry, 16-byte aligned so a u32 ref (offset / 16) addresses
        // 64 GiB:
        //   len uvarint | nlabels uvarint | {name sym, value sym}* uvarint |
        //   nchunks uvarint | mint varint, maxt-mint uvarint, ref uvarint |
        //   {mint-prev maxt uvarint, maxt-mint uvarint, ref delta varint}* | crc
        // The CRC covers what `len` counts, not the `len` itself.
        // Resolve every symbol before writing anything, so a missing one
        // leaves the writer as it was.
        let mut syms = std::mem::take(&mut self.pairs);
        syms.clear();
        for l in labels {
            match self.label_symbols(&l.name, &l.value) {
                Ok(p) => syms.push(p),
                Err(e) => {
                    self.pairs = syms;
                    return Err(e);
                }
            }
        }

        let mut body = std::mem::take(&mut self.buf);
        body.clear();
        put_uvarint(&mut body, labels.len() as u64);
        for &(name, value) in &syms {
            put_uvarint(&mut body, name as u64);
            put_uvarint(&mut body, value as u64);
        }
        put_uvarint(&mut body, chunks.len() as u64);
        if let Some((first, rest)) = chunks.split_first() {
            put_varint(&mut body, first.min_time);
            put_uvarint(
                &mut body,
                first.max_time.wrapping_sub(first.min_time) as u64,
            );
            put_uvarint(&mut body, first.chunk_ref);
            let mut prev = *first;
            for c in rest {
                put_uvarint(&mut body, c.min_time.wrapping_sub(prev.max_time) as u64);
                put_uvarint(&mut body, c.max_time.wrapping_sub(c.min_time) as u64);
                put_varint(&mut body, c.chunk_ref.wrapping_sub(prev.chunk_ref) as i64);
                prev = *c;
            }
        }
        let mut head = Vec::with_capacity(10);
        put_uvarint(&mut head, body.len() as u64);
        let crc = crc32c::crc32c(&body);
        let res = self.pad(16).and_then(|_| {
            let id = u32::try_from(self.pos / 16).map_err(|_| self.too_large())?;
            self.write(&head)?;
            self.write(&body)?;
            self.write(&crc.to_be_bytes())?;
            Ok(id)
        });
        self.buf = body;
        let id = match res {
            Ok(id) => id,
            Err(e) => {
                self.pairs = syms;
                return Err(e);
            }
        };
        for &(name, value) in &syms {
            self.postings.entry(name).or_default().push((value, id));
        }
        self.pairs = syms;
        self.all_series.push(id);
        self.last_series = Some(labels.clone());
        self.stage = Stage::Series;
        Ok(())
    }

    /// Writes the remaining sections and the TOC, then fsyncs.
    pub fn close(mut self) -> Result<()> {
        if self.stage == Stage::Symbols {
            self.finish_symbols()?;
        }

        // Sort each name's pairs by (value, series); series were appended in
        // increasing order, so this only groups by value.
        let postings = std::mem::take(&mut self.postings);
        let mut postings: Vec<(u32, Vec<(u32, u32)>)> = postings.into_iter().collect();
        for (_, pairs) in &mut postings {
            pairs.sort_unstable();
        }

        // Label indices, one per name, each 4-byte aligned:
        //   len u32 | 1 u32 | count u32 | value symbol u32 * count | crc
        // TOC points before the first padding, like Prometheus.
        self.toc.label_indices = self.pos;
        let mut label_index_offsets = Vec::with_capacity(postings.len());
        let mut values = Vec::new();
        for (name, pairs) in &postings {
            values.clear();
            values.extend(pairs.iter().map(|p| p.0));
            values.dedup();
            self.pad(4)?;
            label_index_offsets.push((*name, self.pos));
            let mut b = std::mem::take(&mut self.buf);
            b.clear();
            b.extend_from_slice(&1u32.to_be_bytes());
            b.extend_from_slice(&(values.len() as u32).to_be_bytes());
            for v in &values {
                b.extend_from_slice(&v.to_be_bytes());
            }
            let res = self.write_section(&b);
            self.buf = b;
            res?;
        }

        // Postings lists, each 4-byte aligned: all series under ("", ""),
        // then per name and value in byte order:
        //   len u32 | count u32 | series ref u32 * count | crc
        // Again the TOC entry is the position before the padding.
        self.toc.postings = self.pos;
        self.pad(4)?;
        let mut postings_offsets: Vec<(Option<(u32, u32)>, u64)> = Vec::new();
        postings_offsets.push((None, self.pos));
        let all = std::mem::take(&mut self.all_series);
        self.write_postings(all.iter().copied())?;
        drop(all);
        for (name, pairs) in &postings {
            for group in pairs.chunk_by(|a, b| a.0 == b.0) {
                self.pad(4)?;
                postings_offsets.push((Some((*name, group[0].0)), self.pos));
                self.write_postings(group.iter().map(|p| p.1))?;
            }
        }
        drop(postings);

        // Label offset table:
        //   len u32 | count u32 | {uvarint 1, uvarint-str name, uvarint offset}* | crc
        self.toc.label_indices_table = self.pos;
        let body_len = 4 + label_index_offsets
            .iter()
            .map(|&(n, off)| 1 + self.str_entry_len(n) + uvarint_len(off))
            .sum::<usize>();
        let mut crc = self.begin_table(body_len, label_index_offsets.len())?;
        for &(n, off) in &label_index_offsets {
            let mut e = std::mem::take(&mut self.buf);
            e.clear();
            put_uvarint(&mut e, 1);
            put_uvarint_str(&mut e, self.sym(self.sym_spans[n as usize]));
            put_uvarint(&mut e, off);
            crc = crc32c::crc32c_append(crc, &e);
            let res = self.write(&e);
            self.buf = e;
            res?;
        }
        self.write(&crc.to_be_bytes())?;

        // Postings offset table, sorted by (name, value), ("", "") first:
        //   len u32 | count u32 |
        //   {uvarint 2, uvarint-str name, uvarint-str value, uvarint offset}* | crc
        self.toc.postings_table = self.pos;
        let body_len = 4 + postings_offsets
            .iter()
            .map(|&(k, off)| {
                let kv = match k {
                    None => 2,
                    Some((n, v)) => self.str_entry_len(n) + self.str_entry_len(v),
                };
                1 + kv + uvarint_len(off)
            })
            .sum::<usize>();
        let mut crc = self.begin_table(body_len, postings_offsets.len())?;
        for &(k, off) in &postings_offsets {
            let mut e = std::mem::take(&mut self.buf);
            e.clear();
            put_uvarint(&mut e, 2);
            match k {
                None => e.extend_from_slice(&[0, 0]),
                Some((n, v)) => {
                    put_uvarint_str(&mut e, self.sym(self.sym_spans[n as usize]));
                    put_uvarint_str(&mut e, self.sym(self.sym_spans[v as usize]));
                }
            }
            put_uvarint(&mut e, off);
            crc = crc32c::crc32c_append(crc, &e);
            let res = self.write(&e);
            self.buf = e;
            res?;
        }
        self.write(&crc.to_be_bytes())?;

        let mut t = Vec::with_capacity(super::TOC_LEN);
        self.toc.encode(&mut t);
        self.write(&t)?;

        let path = self.path;
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io(&path, e.into_error()))?;
        file.sync_all().at(&path)?;
        drop(file);
        sync_parent_dir(&path)
    }

    // -----------------------------------------------------------------------

    fn sym(&self, (start, len): (u32, u32)) -> &str {
        let b = &self.sym_enc[start as usize..(start + len) as usize];
        // Only whole `&str`s were appended, so every span is valid UTF-8.
        std::str::from_utf8(b).unwrap_or_default()
    }

    fn lookup_symbol(&self, s: &str) -> Result<u32> {
        self.sym_spans
            .binary_search_by(|&sp| self.sym(sp).cmp(s))
            .map(|i| i as u32)
            .map_err(|_| {
                Error::InvalidLabels(format!(
                    "index {}: {s:?} is not in the symbol table",
                    self.path.display()
                ))
            })
    }

    fn label_symbols(&mut self, name: &Arc<str>, value: &Arc<str>) -> Result<(u32, u32)> {
        if let Some(c) = self.cache.get(name) {
            if Arc::ptr_eq(&c.last_value, value) || *c.last_value == **value {
                return Ok((c.name, c.last_value_sym));
            }
        }
        let n = match self.cache.get(name) {
            Some(c) => c.name,
            None => self.lookup_symbol(name)?,
        };
        let v = self.lookup_symbol(value)?;
        self.cache.insert(
            name.clone(),
            CacheEntry {
                name: n,
                last_value: value.clone(),
                last_value_sym: v,
            },
        );
        Ok((n, v))
    }

    fn check_chunks(&self, labels: &Labels, chunks: &[ChunkMeta]) -> Result<()> {
        for (i, c) in chunks.iter().enumerate() {
            if c.max_time < c.min_time {
                return Err(Error::Invalid(format!(
                    "series {labels}: chunk {i} has max_time {} < min_time {}",
                    c.max_time, c.min_time
                )));
            }
            if i > 0 && c.min_time < chunks[i - 1].max_time {
                return Err(Error::Invalid(format!(
                    "series {labels}: chunk {i} starts at {} before the previous one ends at {}",
                    c.min_time,
                    chunks[i - 1].max_time
                )));
            }
        }
        Ok(())
    }

    /// `uvarint len + bytes` size of symbol `i` as stored in the tables.
    fn str_entry_len(&self, i: u32) -> usize {
        let len = self.sym_spans[i as usize].1 as u64;
        uvarint_len(len) + len as usize
    }

    /// Symbol table at offset 5:
    /// `len u32 | count u32 | {uvarint len, bytes}* | crc`, where `len` and
    /// the CRC cover the count and the strings.
    fn finish_symbols(&mut self) -> Result<()> {
        let count = (self.sym_spans.len() as u32).to_be_bytes();
        let len = (4 + self.sym_enc.len()) as u32;
        let crc = crc32c::crc32c_append(crc32c::crc32c(&count), &self.sym_enc);
        let enc = std::mem::take(&mut self.sym_enc);
        let res = self
            .write(&len.to_be_bytes())
            .and_then(|_| self.write(&count))
            .and_then(|_| self.write(&enc))
            .and_then(|_| self.write(&crc.to_be_bytes()));
        self.sym_enc = enc;
        res?;
        self.toc.series = self.pos;
        self.stage = Stage::Series;
        Ok(())
    }

    /// Writes `len u32 | body | crc` where the CRC covers `body`.
    fn write_section(&mut self, body: &[u8]) -> Result<()> {
        let len = u32::try_from(body.len()).map_err(|_| self.too_large())?;
        self.write(&len.to_be_bytes())?;
        self.write(body)?;
        self.write(&crc32c::crc32c(body).to_be_bytes())
    }

    fn write_postings(&mut self, refs: impl ExactSizeIterator<Item = u32>) -> Result<()> {
        let mut b = std::mem::take(&mut self.buf);
        b.clear();
        b.extend_from_slice(&(refs.len() as u32).to_be_bytes());
        for r in refs {
            b.extend_from_slice(&r.to_be_bytes());
        }
        let res = self.write_section(&b);
        self.buf = b;
        res
    }

    /// Starts a table section whose body (count included) is `body_len`
    /// bytes; returns the running CRC after the count.
    fn begin_table(&mut self, body_len: usize, count: usize) -> Result<u32> {
        let len = u32::try_from(body_len).map_err(|_| self.too_large())?;
        let count = u32::try_from(count).map_err(|_| self.too_large())?;
        self.write(&len.to_be_bytes())?;
        let c = count.to_be_bytes();
        self.write(&c)?;
        Ok(crc32c::crc32c(&c))
    }

    fn pad(&mut self, align: u64) -> Result<()> {
        let r = self.pos % align;
        if r != 0 {
            self.write(&[0u8; 16][..(align - r) as usize])?;
        }
        Ok(())
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        self.out.write_all(b).at(&self.path)?;
        self.pos += b.len() as u64;
        if self.pos > MAX_INDEX_SIZE {
            return Err(self.too_large());
        }
        Ok(())
    }

    fn too_large(&self) -> Error {
        Error::Invalid(format!(
            "index {}: exceeds the format's limits (64 GiB file, 4 GiB section)",
            self.path.display()
        ))
    }
}

/// Makes the new directory entry durable, as Prometheus does for its index.
fn sync_parent_dir(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir).and_then(|d| d.sync_all()).at(dir)?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;
    use std::process::Command;

    use super::*;
    use crate::index::test_util::*;
    use crate::index::IndexReader;

    fn chunk(min_time: i64, max_time: i64, chunk_ref: u64) -> ChunkMeta {
        ChunkMeta {
            min_time,
            max_time,
            chunk_ref,
        }
    }

    /// Writes an index from the oracle's decoding of fixture `name`, with
    /// the symbols Prometheus would use (every label string and "").
    fn write_from_oracle(name: &str, path: &Path) -> serde_json::Value {
        let exp = fixture_expected(name);
        let series: Vec<_> = exp["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(json_series)
            .collect();
        let mut syms = BTreeSet::new();
        syms.insert(String::new());
        for (_, l, _) in &series {
            for p in l {
                syms.insert(p.name.to_string());
                syms.insert(p.value.to_string());
            }
        }
        let exp_syms: Vec<&str> = exp["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(
            syms.iter().map(String::as_str).collect::<Vec<_>>(),
            exp_syms
        );

        let mut w = IndexWriter::create(path).unwrap();
        for s in &syms {
            w.add_symbol(s).unwrap();
        }
        for (id, l, c) in &series {
            w.add_series(l, c).unwrap();
            assert_eq!(
                *w.all_series.last().unwrap() as u64,
                *id,
                "series ref of {l}"
            );
        }
        w.close().unwrap();
        exp
    }

    /// Rewrites the promtool fixture from the oracle's series and chunk metas
    /// and compares bytes.
    fn assert_byte_identical(name: &str) {
        let want = std::fs::read(fixture_block(name).join("index")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let exp = write_from_oracle(name, &path);
        let toc = IndexReader::open(&path).unwrap().toc();
        let exp_toc: Vec<u64> = exp["toc"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let got_toc = [
            toc.symbols,
            toc.series,
            toc.label_indices,
            toc.label_indices_table,
            toc.postings,
            toc.postings_table,
        ];
        assert_eq!(got_toc[..], exp_toc[..]);
        let got = std::fs::read(&path).unwrap();
        if got != want {
            let at = got
                .iter()
                .zip(&want)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            panic!(
                "{name}: index differs from promtool's at byte {at:#x} (len {} vs {})",
                got.len(),
                want.len()
            );
        }
    }

    #[test]
    fn byte_identical_to_promtool_small() {
        assert_byte_identical("small");
    }

    #[test]
    fn byte_identical_to_promtool_mixed() {
        assert_byte_identical("mixed");
    }

    #[test]
    fn worked_example_series_entry() {
        // The first series of the reference document's worked example.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let l = Labels::from_pairs([
            ("__name__", "http_requests_total"),
            ("code", "200"),
            ("method", "get"),
        ]);
        write_index(
            &path,
            &[(l, vec![chunk(1_700_000_000_000, 1_700_000_030_500, 8)])],
        );
        let b = std::fs::read(&path).unwrap();
        let toc = IndexReader::open(&path).unwrap().toc();
        let s = toc.series.next_multiple_of(16) as usize;
        // Symbols here are "" 200 __name__ code get http_requests_total method,
        // so the label refs differ from the document's; check the layout.
        assert_eq!(b[s], 0x12, "len");
        assert_eq!(b[s + 1], 3, "nlabels");
        assert_eq!(&b[s + 2..s + 8], [2, 5, 3, 1, 6, 4], "label symbol refs");
        assert_eq!(
            &b[s + 8..s + 19],
            [0x01, 0x80, 0xa0, 0xab, 0xfe, 0xf9, 0x62, 0xa4, 0xee, 0x01, 0x08]
        );
        let crc = crc32c::crc32c(&b[s + 1..s + 19]);
        assert_eq!(&b[s + 19..s + 23], crc.to_be_bytes());
    }

    #[test]
    fn empty_index_layout() {
        // No symbols, no series: Prometheus still writes every section.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        IndexWriter::create(&path).unwrap().close().unwrap();
        let b = std::fs::read(&path).unwrap();
        let r = IndexReader::open(&path).unwrap();
        assert_eq!(r.toc().symbols, 5);
        assert_eq!(&b[5..13], [0, 0, 0, 4, 0, 0, 0, 0]);
        assert_eq!(r.toc().series, 17);
        assert_eq!(r.all_postings().unwrap(), Vec::<u64>::new());
        assert!(r.label_names().unwrap().is_empty());
        assert_eq!(r.size(), b.len() as u64);
    }

    #[test]
    fn rejects_misuse() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = IndexWriter::create(&dir.path().join("index")).unwrap();
        w.add_symbol("a").unwrap();
        assert!(w.add_symbol("a").is_err(), "duplicate symbol");
        w.add_symbol("b").unwrap();
        w.add_symbol("c").unwrap();
        let ab = Labels::from_pairs([("a", "b")]);
        assert!(matches!(
            w.add_series(&Labels::empty(), &[]),
            Err(Error::InvalidLabels(_))
        ));
        assert!(
            w.add_series(&Labels::from_pairs([("a", "b"), ("c", "x")]), &[])
                .is_err(),
            "unknown symbol"
        );
        assert!(w.add_series(&ab, &[chunk(5, 4, 0)]).is_err(), "max < min");
        assert!(
            w.add_series(&ab, &[chunk(0, 4, 0), chunk(3, 6, 9)])
                .is_err(),
            "overlap"
        );
        w.add_series(&ab, &[chunk(0, 4, 0), chunk(4, 6, 9)])
            .unwrap();
        assert!(w.add_series(&ab, &[]).is_err(), "duplicate series");
        assert!(
            w.add_series(&Labels::from_pairs([("a", "a")]), &[])
                .is_err(),
            "out of order"
        );
        assert!(w.add_symbol("d").is_err(), "symbol after series");
        w.add_series(&Labels::from_pairs([("a", "c")]), &[])
            .unwrap();
        w.close().unwrap();
        // The rejected calls left no trace.
        let r = IndexReader::open(&dir.path().join("index")).unwrap();
        let all = r.all_postings().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(r.postings("a", "b").unwrap(), all[..1]);
        assert_eq!(r.postings("c", "x").unwrap(), Vec::<u64>::new());
        let mut c = Vec::new();
        assert_eq!(r.series(all[0], &mut c).unwrap(), ab);
        assert_eq!(c, [chunk(0, 4, 0), chunk(4, 6, 9)]);
    }

    fn run(cmd: &mut Command) -> String {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Copies a fixture block into `db`, with `index` replaced, and a `wal`
    /// directory so `promtool tsdb dump` works.
    fn make_db(db: &Path, name: &str, index: Option<&Path>) -> String {
        let src = fixture_block(name);
        let ulid = src.file_name().unwrap().to_str().unwrap().to_string();
        let dst = db.join(&ulid);
        std::fs::create_dir_all(dst.join("chunks")).unwrap();
        std::fs::create_dir_all(db.join("wal")).unwrap();
        for f in ["meta.json", "tombstones", "chunks/000001", "index"] {
            std::fs::copy(src.join(f), dst.join(f)).unwrap();
        }
        if let Some(i) = index {
            std::fs::copy(i, dst.join("index")).unwrap();
        }
        ulid
    }

    fn dump(promtool: &Path, db: &Path) -> Vec<String> {
        let out = run(Command::new(promtool).arg("tsdb").arg("dump").arg(db));
        let mut v: Vec<String> = out.lines().map(str::to_string).collect();
        v.sort();
        v
    }

    /// An index that is not a copy of promtool's (every series gets an extra
    /// label, which changes symbols, refs and postings) must be accepted by
    /// `promtool tsdb list` and `analyze --extended`, and `dump` must show
    /// the same samples under the new label sets.
    #[test]
    fn promtool_accepts_written_index() {
        let Some(promtool) = promtool() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let exp = fixture_expected("mixed");
        let series: Vec<_> = exp["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(json_series)
            .collect();
        let mut relabel = std::collections::HashMap::new();
        let mut new_series = Vec::new();
        for (i, (_, l, c)) in series.iter().enumerate() {
            let mut pairs: Vec<(String, String)> = l
                .iter()
                .map(|p| (p.name.to_string(), p.value.to_string()))
                .collect();
            pairs.push(("shard".into(), format!("s{}", i % 3)));
            let nl = Labels::from_pairs(pairs);
            relabel.insert(l.to_string(), nl.to_string());
            new_series.push((nl, c.clone()));
        }
        let index = tmp.path().join("index");
        write_index(&index, &new_series);

        let orig_db = tmp.path().join("orig");
        make_db(&orig_db, "mixed", None);
        let new_db = tmp.path().join("new");
        let ulid = make_db(&new_db, "mixed", Some(&index));

        let list = run(Command::new(&promtool).args(["tsdb", "list"]).arg(&new_db));
        let row = list
            .lines()
            .find(|l| l.starts_with(&ulid))
            .expect("block listed");
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[6], series.len().to_string(), "NUM SERIES in {row}");

        let analyze = run(Command::new(&promtool)
            .args(["tsdb", "analyze", "--extended"])
            .arg(&new_db)
            .arg(&ulid));
        assert!(
            analyze.contains(&format!("Series: {}", series.len())),
            "{analyze}"
        );
        let names: BTreeSet<&str> = new_series
            .iter()
            .flat_map(|(l, _)| l.iter().map(|p| &*p.name))
            .collect();
        let pairs: usize = new_series.iter().map(|(l, _)| l.len()).sum();
        assert!(
            analyze.contains(&format!("Label names: {}\n", names.len())),
            "{analyze}"
        );
        assert!(
            analyze.contains(&format!("Postings entries (total label pairs): {pairs}\n")),
            "{analyze}"
        );

        let want: Vec<String> = {
            let mut v: Vec<String> = dump(&promtool, &orig_db)
                .into_iter()
                .map(|line| {
                    let end = line.rfind('}').unwrap() + 1;
                    format!("{}{}", relabel[&line[..end]], &line[end..])
                })
                .collect();
            v.sort();
            v
        };
        let got = dump(&promtool, &new_db);
        assert_eq!(got.len(), want.len());
        assert!(got == want, "promtool dump of the rewritten block differs");

        // And our rewrite of the small fixture passes too.
        let small = tmp.path().join("small-index");
        write_from_oracle("small", &small);
        let db = tmp.path().join("small");
        let ulid = make_db(&db, "small", Some(&small));
        run(Command::new(&promtool)
            .args(["tsdb", "analyze", "--extended"])
            .arg(&db)
            .arg(&ulid));
    }
}
