//! Reading an index file (format v2, also accepted when labelled v3).
//!
//! The file is memory-mapped. [`IndexReader::open`] checks the header and the
//! TOC CRC, then walks the two sections every query needs, verifying their
//! CRCs once:
//! - the **symbol table**: we keep the offset of *every* symbol (4 bytes per
//!   symbol, relative to the section) rather than Prometheus' every 32nd.
//!   Symbol lookup is the inner loop of series decoding (two per label), and
//!   with all offsets it is one varint read instead of a walk over up to 31
//!   strings; 4 bytes per symbol is small next to the strings themselves,
//!   which stay in the page cache, not on the heap.
//! - the **postings offset table**: we keep, per entry, the offset of its
//!   value field (4 bytes per label pair) and, per label name, the range of
//!   its entries. Values and postings offsets are decoded from the map on
//!   demand, so `postings(name, value)` is a binary search with no linear
//!   walk, and a prefix matcher reads only the values in its range.
//!
//! Everything else — series entries and postings lists — is decoded and CRC-
//! checked when read. Nothing read from the file is trusted: offsets, counts
//! and lengths are checked against the bytes actually present before they are
//! used or allocated for, so a damaged file yields `Error::Corrupted` naming
//! the file and section, never a panic or an oversized allocation.
//!
//! The label indices and label offset table are never read (Prometheus
//! stopped using them long before 2.42).

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::postings::{intersect_many, merge_many, without};
use super::{
    Dec, DecodeError, SeriesRef, Toc, FORMAT_V1, FORMAT_V2, FORMAT_V3, HEADER_LEN, MAGIC_INDEX,
    TOC_LEN,
};
use crate::chunks::ChunkMeta;
use crate::error::{Error, IoContext, Result};
use crate::labels::{Label, Labels, MatchType, Matcher};

/// The bytes behind a reader: a read-only map of the file, or a buffer
/// (for indexes fetched into memory, and for tests).
enum Backing {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mmap(m) => &m[..],
            Backing::Owned(v) => &v[..],
        }
    }
}

/// One label name's run of entries in the postings offset table.
struct NameGroup {
    name: Arc<str>,
    entries: Range<usize>,
}

/// A reader over one index file.
pub struct IndexReader {
    path: PathBuf,
    data: Backing,
    version: u8,
    toc: Toc,
    /// Symbol section body: from the count to just before the CRC.
    sym_body: Range<usize>,
    /// Offset of each symbol's length varint, relative to `sym_body.start`.
    sym_offsets: Vec<u32>,
    /// Postings offset table body: from the count to just before the CRC.
    pt_body: Range<usize>,
    /// Per entry, offset of its value's length varint relative to
    /// `pt_body.start`. Entries are sorted by (name, value).
    pt_entries: Vec<u32>,
    /// Sorted by name; includes the all-postings name "".
    names: Vec<NameGroup>,
    /// Label-name symbols resolved once: names are half of all lookups in
    /// series decoding and there are few of them, so sharing one `Arc` per
    /// name also saves an allocation per label.
    name_syms: HashMap<u32, Arc<str>>,
}

/// Values of one label name to fetch postings for.
enum ValueSel<'m> {
    /// These exact values.
    Values(Vec<String>),
    /// Values starting with this prefix: a contiguous range of the table.
    Prefix(&'m str),
    /// Every value.
    All,
    /// Values `v` with `m.matches(v) == want`; needs a scan of the values.
    Filter(&'m Matcher, bool),
}

impl IndexReader {
    /// Memory-maps and validates the index file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).at(path)?;
        let len = file.metadata().at(path)?.len();
        if len < (HEADER_LEN + TOC_LEN) as u64 {
            // Also avoids mapping an empty file, which mmap refuses.
            return Err(corrupt(
                path,
                "header",
                format!("file too small ({len} bytes)"),
            ));
        }
        // SAFETY: the map is read-only and index files are immutable once
        // written (blocks are replaced, never modified in place). A file
        // truncated by another process while mapped would fault; that is the
        // accepted trade-off of mmap, the same one Prometheus makes.
        let map = unsafe { memmap2::Mmap::map(&file) }.at(path)?;
        Self::parse(path.to_path_buf(), Backing::Mmap(map))
    }

    /// Reads an index held in memory; `path` is only used in error messages.
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self> {
        Self::parse(path.into(), Backing::Owned(bytes))
    }

    fn parse(path: PathBuf, data: Backing) -> Result<Self> {
        let b = data.bytes();
        if b.len() < HEADER_LEN + TOC_LEN {
            let msg = format!("file too small ({} bytes)", b.len());
            return Err(corrupt(&path, "header", msg));
        }
        let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if magic != MAGIC_INDEX {
            return Err(corrupt(
                &path,
                "header",
                format!("invalid magic number {magic:#x}"),
            ));
        }
        let version = b[4];
        match version {
            FORMAT_V2 | FORMAT_V3 => {}
            FORMAT_V1 => {
                return Err(corrupt(
                    &path,
                    "header",
                    "unsupported index version 1 (only v2 and v3 can be read)",
                ))
            }
            v => {
                return Err(corrupt(
                    &path,
                    "header",
                    format!("unknown index version {v}"),
                ))
            }
        }

        let toc = read_toc(&path, b)?;

        let sym_body = section(&path, b, toc.symbols, "symbol table")?;
        let sym_offsets =
            index_symbols(&b[sym_body.clone()]).map_err(|e| corrupt(&path, "symbol table", e))?;

        let pt_body = section(&path, b, toc.postings_table, "postings offset table")?;
        let (pt_entries, groups) = index_postings_table(&b[pt_body.clone()])
            .map_err(|e| corrupt(&path, "postings offset table", e))?;
        // Own the names before `data` moves into the reader.
        let groups: Vec<(Arc<str>, Range<usize>)> =
            groups.into_iter().map(|(n, r)| (Arc::from(n), r)).collect();

        let mut r = IndexReader {
            path,
            data,
            version,
            toc,
            sym_body,
            sym_offsets,
            pt_body,
            pt_entries,
            names: Vec::with_capacity(groups.len()),
            name_syms: HashMap::with_capacity(groups.len()),
        };
        for (name, entries) in groups {
            if !name.is_empty() {
                let sym = r.reverse_lookup(&name)?.ok_or_else(|| {
                    r.corrupt(
                        "postings offset table",
                        format!("label name {name:?} is missing from the symbol table"),
                    )
                })?;
                r.name_syms.insert(sym, name.clone());
            }
            r.names.push(NameGroup { name, entries });
        }
        Ok(r)
    }

    /// The index format version from the header (2 or 3).
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The section offsets from the TOC.
    pub fn toc(&self) -> Toc {
        self.toc
    }

    /// Size of the index file in bytes.
    pub fn size(&self) -> u64 {
        self.bytes().len() as u64
    }

    /// Number of symbols.
    pub fn num_symbols(&self) -> usize {
        self.sym_offsets.len()
    }

    /// The symbol with ordinal `i`.
    pub fn symbol(&self, i: u32) -> Result<&str> {
        self.symbol_raw(i)
            .map_err(|e| self.corrupt("symbol table", format!("symbol {i}: {e}")))
    }

    /// All symbols in order, borrowed from the file.
    pub fn symbols_iter(&self) -> impl Iterator<Item = Result<&str>> + '_ {
        self.sym_offsets.iter().map(|&off| self.symbol_at(off))
    }

    /// All symbols in order.
    pub fn symbols(&self) -> Result<Vec<String>> {
        self.symbols_iter().map(|s| s.map(str::to_string)).collect()
    }

    /// Label names present in the index, sorted, without the all-postings "".
    pub fn label_names(&self) -> Result<Vec<String>> {
        Ok(self
            .names
            .iter()
            .filter(|g| !g.name.is_empty())
            .map(|g| g.name.to_string())
            .collect())
    }

    /// The values of label `name`, sorted; empty if the name is absent.
    /// (As in Prometheus, the pseudo-name "" has the single value "".)
    pub fn label_values(&self, name: &str) -> Result<Vec<String>> {
        let Some(g) = self.group(name) else {
            return Ok(Vec::new());
        };
        g.entries
            .clone()
            .map(|i| self.entry(i).map(|(v, _)| v.to_string()))
            .collect()
    }

    /// Series with label `name` set to `value`; empty if there are none.
    pub fn postings(&self, name: &str, value: &str) -> Result<Vec<SeriesRef>> {
        match self.find(name, value)? {
            Some(off) => self.read_postings(off),
            None => Ok(Vec::new()),
        }
    }

    /// Series with label `name` set to any of `values` (in any order).
    pub fn postings_for_values<S: AsRef<str>>(
        &self,
        name: &str,
        values: &[S],
    ) -> Result<Vec<SeriesRef>> {
        let mut lists = Vec::with_capacity(values.len());
        for v in values {
            if let Some(off) = self.find(name, v.as_ref())? {
                lists.push(self.read_postings(off)?);
            }
        }
        Ok(merge_many(lists))
    }

    /// Every series in the index, in order.
    pub fn all_postings(&self) -> Result<Vec<SeriesRef>> {
        self.postings("", "")
    }

    /// Series selected by the matchers, with Prometheus' `PostingsForMatchers`
    /// semantics: a series is selected when every matcher accepts its value of
    /// the matcher's label, a missing label counting as "". So a matcher that
    /// accepts "" also selects series without the label, and matchers that all
    /// accept "" start from all series. No matchers select nothing; as in
    /// Prometheus, a matcher with empty name and value selects everything.
    ///
    /// Plan, as in Prometheus: a matcher that needs the label set (one on the
    /// same name rejects "") contributes the postings of the values it accepts
    /// to an intersection; one that accepts "" contributes the postings of the
    /// values it rejects to a subtraction. Equality, literal alternations
    /// (`a|b`) and prefixes (`p.*`) find their values by binary search in the
    /// postings offset table; only other regexes scan the label's values.
    pub fn postings_for_matchers(&self, ms: &[Matcher]) -> Result<Vec<SeriesRef>> {
        let must_be_set: HashSet<&str> = ms
            .iter()
            .filter(|m| !m.matches_empty())
            .map(|m| m.name.as_str())
            .collect();

        let mut its = Vec::new();
        let mut not_its = Vec::new();
        for m in ms {
            if m.name.is_empty() && m.value.is_empty() {
                its.push(self.all_postings()?);
            } else if must_be_set.contains(m.name.as_str()) {
                // Selecting by values the matcher accepts only finds series
                // that have the label, which is right here: some matcher on
                // this name rejects the missing label anyway.
                let is_not = matches!(m.kind, MatchType::NotEqual | MatchType::NotRegex);
                if is_not && m.matches_empty() {
                    // e.g. {l!="a", l=~".+"}: cheaper to subtract l="a".
                    not_its.push(self.select(&m.name, selection(m, false))?);
                } else {
                    let p = self.select(&m.name, selection(m, true))?;
                    if p.is_empty() {
                        return Ok(p);
                    }
                    its.push(p);
                }
            } else {
                // Accepts "": keep everything except series whose value it
                // rejects.
                not_its.push(self.select(&m.name, selection(m, false))?);
            }
        }
        if its.is_empty() {
            if not_its.is_empty() {
                return Ok(Vec::new());
            }
            its.push(self.all_postings()?);
        }
        let mut res = intersect_many(its);
        for n in &not_its {
            if res.is_empty() {
                break;
            }
            res = without(&res, n);
        }
        Ok(res)
    }

    /// Decodes series `r`: returns its labels and fills `chunks` (cleared
    /// first) with its chunk metas.
    pub fn series(&self, r: SeriesRef, chunks: &mut Vec<ChunkMeta>) -> Result<Labels> {
        chunks.clear();
        let body = self.series_body(r)?;
        self.decode_series(body, chunks)
            .map_err(|e| self.corrupt("series", format!("series {r}: {e}")))
    }

    // -----------------------------------------------------------------------

    fn bytes(&self) -> &[u8] {
        self.data.bytes()
    }

    fn corrupt(&self, section: &str, msg: impl Display) -> Error {
        corrupt(&self.path, section, msg)
    }

    fn symbol_at(&self, off: u32) -> Result<&str> {
        self.symbol_at_raw(off)
            .map_err(|e| self.corrupt("symbol table", e))
    }

    fn symbol_at_raw(&self, off: u32) -> std::result::Result<&str, DecodeError> {
        let body = &self.bytes()[self.sym_body.clone()];
        let raw = body
            .get(off as usize..)
            .ok_or(DecodeError("symbol offset out of range"))
            .and_then(|b| Dec::new(b).uvarint_bytes())?;
        std::str::from_utf8(raw).map_err(|_| DecodeError("symbol is not UTF-8"))
    }

    fn symbol_raw(&self, i: u32) -> std::result::Result<&str, DecodeError> {
        let off = *self
            .sym_offsets
            .get(i as usize)
            .ok_or(DecodeError("unknown symbol reference"))?;
        self.symbol_at_raw(off)
    }

    /// Ordinal of symbol `s`, by binary search over the sorted table.
    fn reverse_lookup(&self, s: &str) -> Result<Option<u32>> {
        let (mut lo, mut hi) = (0usize, self.sym_offsets.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.symbol_at(self.sym_offsets[mid])?.cmp(s) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Some(mid as u32)),
            }
        }
        Ok(None)
    }

    fn lookup_name(&self, sym: u32) -> std::result::Result<Arc<str>, DecodeError> {
        match self.name_syms.get(&sym) {
            Some(n) => Ok(n.clone()),
            None => self.symbol_raw(sym).map(Arc::from),
        }
    }

    fn group(&self, name: &str) -> Option<&NameGroup> {
        self.names
            .binary_search_by(|g| (*g.name).cmp(name))
            .ok()
            .map(|i| &self.names[i])
    }

    /// Entry `i` of the postings offset table: (value, postings offset).
    fn entry(&self, i: usize) -> Result<(&str, u64)> {
        let body = &self.bytes()[self.pt_body.clone()];
        let (v, off) = self
            .pt_entries
            .get(i)
            .and_then(|&o| body.get(o as usize..))
            .ok_or(DecodeError("entry out of range"))
            .and_then(|b| {
                let mut d = Dec::new(b);
                Ok((d.uvarint_bytes()?, d.uvarint()?))
            })
            .map_err(|e| self.corrupt("postings offset table", e))?;
        let v = std::str::from_utf8(v)
            .map_err(|_| self.corrupt("postings offset table", "label value is not UTF-8"))?;
        Ok((v, off))
    }

    /// Index of the first entry of `g` whose value is `>= value`.
    fn lower_bound(&self, g: &NameGroup, value: &str) -> Result<usize> {
        let (mut lo, mut hi) = (g.entries.start, g.entries.end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.entry(mid)?.0 < value {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Postings offset of (name, value), if present.
    fn find(&self, name: &str, value: &str) -> Result<Option<u64>> {
        let Some(g) = self.group(name) else {
            return Ok(None);
        };
        let i = self.lower_bound(g, value)?;
        if i < g.entries.end {
            let (v, off) = self.entry(i)?;
            if v == value {
                return Ok(Some(off));
            }
        }
        Ok(None)
    }

    /// Decodes the postings list at file offset `off`.
    fn read_postings(&self, off: u64) -> Result<Vec<SeriesRef>> {
        let body = section(&self.path, self.bytes(), off, "postings list")?;
        let body = &self.bytes()[body];
        let mut d = Dec::new(body);
        let n = d.be32().map_err(|e| self.corrupt("postings list", e))? as u64;
        if d.remaining() as u64 != 4 * n {
            let msg = format!(
                "length {} does not fit {n} entries at offset {off}",
                body.len()
            );
            return Err(self.corrupt("postings list", msg));
        }
        let mut out = Vec::with_capacity(n as usize);
        let mut prev: Option<u32> = None;
        for c in d.rest().chunks_exact(4) {
            let r = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
            if prev.is_some_and(|p| p >= r) {
                let msg = format!("list at offset {off} is not strictly increasing");
                return Err(self.corrupt("postings list", msg));
            }
            prev = Some(r);
            out.push(r as SeriesRef);
        }
        Ok(out)
    }

    /// Postings of the values of `name` chosen by `sel`.
    fn select(&self, name: &str, sel: ValueSel<'_>) -> Result<Vec<SeriesRef>> {
        let Some(g) = self.group(name) else {
            return Ok(Vec::new());
        };
        let mut offs = Vec::new();
        match sel {
            ValueSel::Values(mut vs) => {
                vs.sort_unstable();
                vs.dedup();
                return self.postings_for_values(name, &vs);
            }
            ValueSel::Prefix(p) => {
                for i in self.lower_bound(g, p)?..g.entries.end {
                    let (v, off) = self.entry(i)?;
                    if !v.starts_with(p) {
                        break;
                    }
                    offs.push(off);
                }
            }
            ValueSel::All => {
                for i in g.entries.clone() {
                    offs.push(self.entry(i)?.1);
                }
            }
            ValueSel::Filter(m, want) => {
                for i in g.entries.clone() {
                    let (v, off) = self.entry(i)?;
                    if m.matches(v) == want {
                        offs.push(off);
                    }
                }
            }
        }
        let lists = offs
            .into_iter()
            .map(|o| self.read_postings(o))
            .collect::<Result<Vec<_>>>()?;
        Ok(merge_many(lists))
    }

    /// The CRC-checked body of series `r` (after its length varint).
    fn series_body(&self, r: SeriesRef) -> Result<&[u8]> {
        let b = self.bytes();
        let start = r
            .checked_mul(16)
            .filter(|&o| self.toc.series != 0 && o >= self.toc.series && o < b.len() as u64)
            .ok_or_else(|| self.corrupt("series", format!("series ref {r} is out of range")))?;
        let err = |e: DecodeError| self.corrupt("series", format!("series {r}: {e}"));
        let mut d = Dec::new(&b[start as usize..]);
        let len = d.uvarint32().map_err(err)?;
        let body = d.bytes(len as usize).map_err(err)?;
        let crc = d.be32().map_err(err)?;
        if crc32c::crc32c(body) != crc {
            return Err(self.corrupt("series", format!("series {r}: invalid checksum")));
        }
        Ok(body)
    }

    fn decode_series(
        &self,
        body: &[u8],
        chunks: &mut Vec<ChunkMeta>,
    ) -> std::result::Result<Labels, DecodeError> {
        let mut d = Dec::new(body);
        let n = d.uvarint()?;
        // Each label pair takes at least two bytes: bound before allocating.
        let mut labels: Vec<Label> = Vec::with_capacity((n as usize).min(d.remaining() / 2));
        for _ in 0..n {
            let name = self.lookup_name(d.uvarint32()?)?;
            let value: Arc<str> = Arc::from(self.symbol_raw(d.uvarint32()?)?);
            if labels.last().is_some_and(|l| l.name >= name) {
                return Err(DecodeError("label names not sorted"));
            }
            labels.push(Label { name, value });
        }

        let k = d.uvarint()?;
        // Each chunk meta takes at least three bytes.
        chunks.reserve((k as usize).min(d.remaining() / 3));
        if k > 0 {
            // Go decodes with wrapping arithmetic; so do we, so any file
            // Prometheus reads decodes to the same values here.
            let mut mint = d.varint()?;
            let mut maxt = mint.wrapping_add(d.uvarint()? as i64);
            let mut cref = d.uvarint()?;
            chunks.push(ChunkMeta {
                min_time: mint,
                max_time: maxt,
                chunk_ref: cref,
            });
            for _ in 1..k {
                mint = maxt.wrapping_add(d.uvarint()? as i64);
                maxt = mint.wrapping_add(d.uvarint()? as i64);
                cref = cref.wrapping_add(d.varint()? as u64);
                chunks.push(ChunkMeta {
                    min_time: mint,
                    max_time: maxt,
                    chunk_ref: cref,
                });
            }
        }
        if d.remaining() != 0 {
            return Err(DecodeError("trailing bytes after the chunk metas"));
        }
        Ok(Labels::from_sorted(labels))
    }
}

/// Which values of `m.name` to select: those `v` with `m.matches(v) == want`,
/// using a lookup instead of a scan whenever the matcher's shape allows.
fn selection(m: &Matcher, want: bool) -> ValueSel<'_> {
    // Does the selection want the values the regex (or equality) accepts?
    let accepted = match m.kind {
        MatchType::Equal | MatchType::Regex => want,
        MatchType::NotEqual | MatchType::NotRegex => !want,
    };
    match (m.kind, accepted) {
        (MatchType::Equal | MatchType::NotEqual, true) => ValueSel::Values(vec![m.value.clone()]),
        (MatchType::Regex | MatchType::NotRegex, true) => {
            if let Some(set) = literal_set(m) {
                ValueSel::Values(set)
            } else if let Some(p) = m.prefix() {
                ValueSel::Prefix(p)
            } else if m.value == ".*" {
                ValueSel::All
            } else {
                ValueSel::Filter(m, want)
            }
        }
        (MatchType::Regex | MatchType::NotRegex, false) if m.value == ".*" => {
            ValueSel::Values(Vec::new())
        }
        _ => ValueSel::Filter(m, want),
    }
}

/// The literal alternatives of a regex matcher of either polarity.
fn literal_set(m: &Matcher) -> Option<Vec<String>> {
    match m.kind {
        MatchType::Regex => m.set_matches().map(<[String]>::to_vec),
        // `set_matches` only answers for `=~`; the positive twin of a `!~`
        // matcher has the same pattern, so compile that (rare path: it is
        // only taken for `!~` on a label another matcher requires).
        MatchType::NotRegex => Matcher::new(MatchType::Regex, m.name.clone(), m.value.clone())
            .ok()
            .and_then(|p| p.set_matches().map(<[String]>::to_vec)),
        _ => None,
    }
}

fn corrupt(path: &Path, section: &str, msg: impl Display) -> Error {
    Error::corrupted(path, format!("index {section}: {msg}"))
}

fn read_toc(path: &Path, b: &[u8]) -> Result<Toc> {
    let raw = &b[b.len() - TOC_LEN..];
    let (fields, crc) = raw.split_at(TOC_LEN - 4);
    if crc32c::crc32c(fields) != u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(corrupt(path, "TOC", "invalid checksum"));
    }
    let mut d = Dec::new(fields);
    let mut next = || d.be64().map_err(|e| corrupt(path, "TOC", e));
    let toc = Toc {
        symbols: next()?,
        series: next()?,
        label_indices: next()?,
        label_indices_table: next()?,
        postings: next()?,
        postings_table: next()?,
    };
    let limit = (b.len() - TOC_LEN) as u64;
    for (what, off) in [
        ("symbols", toc.symbols),
        ("series", toc.series),
        ("label indices", toc.label_indices),
        ("label indices table", toc.label_indices_table),
        ("postings", toc.postings),
        ("postings table", toc.postings_table),
    ] {
        if off > limit {
            let msg = format!("{what} offset {off} beyond end of data ({limit})");
            return Err(corrupt(path, "TOC", msg));
        }
    }
    if toc.symbols < HEADER_LEN as u64 || toc.postings_table < HEADER_LEN as u64 {
        return Err(corrupt(
            path,
            "TOC",
            "symbol table or postings offset table missing",
        ));
    }
    Ok(toc)
}

/// Locates the `len u32 | body | crc` section at `off`, checks the CRC and
/// returns the body's byte range.
fn section(path: &Path, b: &[u8], off: u64, what: &str) -> Result<Range<usize>> {
    let too_short = || {
        corrupt(
            path,
            what,
            format!("section at offset {off} exceeds the file"),
        )
    };
    let off = usize::try_from(off).map_err(|_| too_short())?;
    let len_bytes = b.get(off..off.saturating_add(4)).ok_or_else(too_short)?;
    let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
    let start = off + 4;
    let end = start.checked_add(len as usize).ok_or_else(too_short)?;
    let crc = b.get(end..end.saturating_add(4)).ok_or_else(too_short)?;
    let crc = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c::crc32c(&b[start..end]) != crc {
        return Err(corrupt(
            path,
            what,
            format!("invalid checksum at offset {off}"),
        ));
    }
    Ok(start..end)
}

/// Walks the symbol section body, returning each symbol's offset.
fn index_symbols(body: &[u8]) -> std::result::Result<Vec<u32>, DecodeError> {
    let mut d = Dec::new(body);
    let n = d.be32()? as usize;
    // Each symbol takes at least one byte: bound the allocation by the data.
    let mut offs = Vec::with_capacity(n.min(d.remaining()));
    let mut prev: Option<&[u8]> = None;
    for _ in 0..n {
        offs.push((body.len() - d.remaining()) as u32);
        let s = d.uvarint_bytes()?;
        if prev.is_some_and(|p| p >= s) {
            return Err(DecodeError("symbols not sorted"));
        }
        prev = Some(s);
    }
    if d.remaining() != 0 {
        return Err(DecodeError("trailing bytes after the last symbol"));
    }
    Ok(offs)
}

/// The parsed postings offset table: per-entry value offsets, and per label
/// name its entry range.
type PostingsTable<'a> = (Vec<u32>, Vec<(&'a str, Range<usize>)>);

/// Walks the postings offset table body, checking that entries are sorted by
/// (name, value) so lookups can binary-search them.
fn index_postings_table(body: &[u8]) -> std::result::Result<PostingsTable<'_>, DecodeError> {
    let mut d = Dec::new(body);
    let n = d.be32()? as usize;
    // Each entry takes at least four bytes.
    let mut entries = Vec::with_capacity(n.min(d.remaining() / 4));
    let mut groups: Vec<(&str, Range<usize>)> = Vec::new();
    let mut prev_value: &[u8] = &[];
    for i in 0..n {
        if d.uvarint()? != 2 {
            return Err(DecodeError("entry does not have 2 keys"));
        }
        let name = d.uvarint_bytes()?;
        let value_off = (body.len() - d.remaining()) as u32;
        let value = d.uvarint_bytes()?;
        d.uvarint()?;
        match groups.last_mut() {
            Some((last, r)) if last.as_bytes() == name => {
                if value <= prev_value {
                    return Err(DecodeError("entries not sorted by value"));
                }
                r.end = i + 1;
            }
            last => {
                if last.is_some_and(|(l, _)| l.as_bytes() >= name) {
                    return Err(DecodeError("entries not sorted by name"));
                }
                let name = std::str::from_utf8(name)
                    .map_err(|_| DecodeError("label name is not UTF-8"))?;
                groups.push((name, i..i + 1));
            }
        }
        prev_value = value;
        entries.push(value_off);
    }
    if d.remaining() != 0 {
        return Err(DecodeError("trailing bytes after the last entry"));
    }
    Ok((entries, groups))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;
    use crate::index::test_util::*;

    fn m(kind: MatchType, name: &str, value: &str) -> Matcher {
        Matcher::new(kind, name, value).unwrap()
    }

    fn chunk(min_time: i64, max_time: i64, chunk_ref: u64) -> ChunkMeta {
        ChunkMeta {
            min_time,
            max_time,
            chunk_ref,
        }
    }

    /// A small deterministic PRNG (xorshift64*), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Everything the reader should report, computed from the series.
    struct Model {
        /// (labels, chunks) in ref order.
        series: Vec<(SeriesRef, Labels, Vec<ChunkMeta>)>,
    }

    impl Model {
        fn brute_force(&self, ms: &[Matcher]) -> Vec<SeriesRef> {
            if ms.is_empty() {
                return Vec::new();
            }
            self.series
                .iter()
                .filter(|(_, l, _)| ms.iter().all(|m| m.matches(l.get(&m.name).unwrap_or(""))))
                .map(|s| s.0)
                .collect()
        }
    }

    /// Writes `series`, reads everything back and checks it against the
    /// series themselves.
    fn check_round_trip(series: &[Series]) -> (tempfile::TempDir, IndexReader, Model) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        write_index(&path, series);
        let r = IndexReader::open(&path).unwrap();
        assert_eq!(r.version(), 2);
        let mut sorted = series.to_vec();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));

        let refs = r.all_postings().unwrap();
        assert_eq!(refs.len(), sorted.len());
        let mut chunks = Vec::new();
        let mut model = Model { series: Vec::new() };
        let mut pairs: BTreeMap<(String, String), Vec<SeriesRef>> = BTreeMap::new();
        for (&id, (l, c)) in refs.iter().zip(&sorted) {
            assert_eq!(&r.series(id, &mut chunks).unwrap(), l);
            assert_eq!(&chunks, c);
            for p in l {
                pairs
                    .entry((p.name.to_string(), p.value.to_string()))
                    .or_default()
                    .push(id);
            }
            model.series.push((id, l.clone(), c.clone()));
        }
        let mut syms: BTreeSet<String> = pairs
            .keys()
            .flat_map(|(n, v)| [n.clone(), v.clone()])
            .collect();
        syms.insert(String::new());
        assert_eq!(r.symbols().unwrap(), syms.into_iter().collect::<Vec<_>>());
        let names: BTreeSet<String> = pairs.keys().map(|k| k.0.clone()).collect();
        assert_eq!(
            r.label_names().unwrap(),
            names.iter().cloned().collect::<Vec<_>>()
        );
        for n in &names {
            let vals: Vec<String> = pairs
                .keys()
                .filter(|k| &k.0 == n)
                .map(|k| k.1.clone())
                .collect();
            assert_eq!(&r.label_values(n).unwrap(), &vals);
        }
        for ((n, v), ids) in &pairs {
            assert_eq!(&r.postings(n, v).unwrap(), ids, "postings {n}={v}");
        }
        assert!(r.postings("nope", "x").unwrap().is_empty());
        assert!(r.label_values("nope").unwrap().is_empty());
        (dir, r, model)
    }

    fn random_series(rng: &mut Rng, n: usize) -> Vec<Series> {
        const NAMES: [&str; 6] = ["__name__", "env", "instance", "job", "le", "zone"];
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        while out.len() < n {
            let mut pairs = vec![("__name__".to_string(), format!("metric_{}", rng.below(20)))];
            for name in &NAMES[1..] {
                if rng.below(3) > 0 {
                    let card = [3, 50, 1000, 7, 4][rng.below(5) as usize];
                    pairs.push((name.to_string(), format!("v{}", rng.below(card))));
                }
            }
            let l = Labels::from_pairs(pairs);
            if !seen.insert(l.clone()) {
                continue;
            }
            let mut chunks = Vec::new();
            let mut t = rng.below(1 << 40) as i64 - (1 << 39);
            let mut cref = rng.below(1 << 34);
            for _ in 0..rng.below(5) {
                let mint = t + rng.below(1000) as i64;
                let maxt = mint + rng.below(1 << 20) as i64;
                chunks.push(chunk(mint, maxt, cref));
                t = maxt;
                // Refs may also go down: the format stores signed deltas.
                cref = cref.wrapping_add(rng.below(1 << 20)).wrapping_sub(1 << 10);
            }
            out.push((l, chunks));
        }
        out
    }

    #[test]
    fn fixtures_match_oracle() {
        for name in ["small", "mixed"] {
            let exp = fixture_expected(name);
            let r = IndexReader::open(&fixture_block(name).join("index")).unwrap();
            let syms: Vec<String> = exp["symbols"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect();
            assert_eq!(r.symbols().unwrap(), syms, "{name} symbols");
            let mut chunks = Vec::new();
            let mut all = Vec::new();
            for s in exp["series"].as_array().unwrap() {
                let (id, l, c) = json_series(s);
                assert_eq!(r.series(id, &mut chunks).unwrap(), l, "{name} series {id}");
                assert_eq!(chunks, c, "{name} chunks of {l}");
                all.push(id);
            }
            assert_eq!(r.all_postings().unwrap(), all);
            let mut names = BTreeSet::new();
            for p in exp["postings"].as_array().unwrap() {
                let (n, v) = (p["name"].as_str().unwrap(), p["value"].as_str().unwrap());
                let refs: Vec<u64> = p["refs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap())
                    .collect();
                assert_eq!(r.postings(n, v).unwrap(), refs, "{name} postings {n}={v}");
                if !n.is_empty() {
                    names.insert(n.to_string());
                }
            }
            assert_eq!(
                r.label_names().unwrap(),
                names.into_iter().collect::<Vec<_>>()
            );
        }
        let r = IndexReader::open(&fixture_block("mixed").join("index")).unwrap();
        assert_eq!(
            r.label_values("api").unwrap(),
            ["api", "apiserver", "apx", "xapi"]
        );
        assert_eq!(r.label_values("room").unwrap(), ["küche 1"]);
        let sel = [
            m(MatchType::Regex, "api", "api.*"),
            m(MatchType::Equal, "zone", "eu"),
        ];
        let got = r.postings_for_matchers(&sel).unwrap();
        let mut c = Vec::new();
        let names: Vec<String> = got
            .iter()
            .map(|&id| r.series(id, &mut c).unwrap().to_string())
            .collect();
        assert_eq!(
            names,
            [r#"{__name__="api_latency", api="apiserver", zone="eu"}"#]
        );
    }

    #[test]
    fn round_trip_many_random_series() {
        let mut rng = Rng(0x5eed);
        let series = random_series(&mut rng, 3000);
        let (_dir, r, model) = check_round_trip(&series);

        // Random matcher combinations against a brute-force scan.
        let names = ["__name__", "env", "instance", "job", "le", "zone", "absent"];
        let values = ["v1", "v2", "v10", "metric_3", "", "nope"];
        let regexes = [
            ".*",
            ".+",
            "v1.*",
            "v1|v2",
            "v1|",
            "v[0-9]",
            "metric_1.*",
            "",
            "(?i)V1",
            "x.*",
            "v1|v2|v3|v40",
        ];
        for _ in 0..600 {
            let k = 1 + rng.below(3) as usize;
            let ms: Vec<Matcher> = (0..k)
                .map(|_| {
                    let name = names[rng.below(names.len() as u64) as usize];
                    let kind = [
                        MatchType::Equal,
                        MatchType::NotEqual,
                        MatchType::Regex,
                        MatchType::NotRegex,
                    ][rng.below(4) as usize];
                    let value = match kind {
                        MatchType::Equal | MatchType::NotEqual => {
                            values[rng.below(values.len() as u64) as usize]
                        }
                        _ => regexes[rng.below(regexes.len() as u64) as usize],
                    };
                    m(kind, name, value)
                })
                .collect();
            assert_eq!(
                r.postings_for_matchers(&ms).unwrap(),
                model.brute_force(&ms),
                "{ms:?}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn round_trip_proptest(seed in any::<u64>(), n in 1usize..200) {
            let mut rng = Rng(seed | 1);
            let series = random_series(&mut rng, n);
            check_round_trip(&series);
        }
    }

    /// The index behind the matcher cases:
    /// 1 {__name__="up", job="a", env="prod"}   2 {__name__="up", job="b"}
    /// 3 {__name__="up", job="api", env="dev"}  4 {__name__="down", foo="bar"}
    /// 5 {__name__="down", foo="baz"}           6 {__name__="down"}
    fn matcher_index() -> (tempfile::TempDir, IndexReader, Vec<Labels>) {
        let ls = vec![
            Labels::from_pairs([("__name__", "up"), ("job", "a"), ("env", "prod")]),
            Labels::from_pairs([("__name__", "up"), ("job", "b")]),
            Labels::from_pairs([("__name__", "up"), ("job", "api"), ("env", "dev")]),
            Labels::from_pairs([("__name__", "down"), ("foo", "bar")]),
            Labels::from_pairs([("__name__", "down"), ("foo", "baz")]),
            Labels::from_pairs([("__name__", "down")]),
        ];
        let series: Vec<Series> = ls.iter().map(|l| (l.clone(), vec![])).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        write_index(&path, &series);
        let r = IndexReader::open(&path).unwrap();
        (dir, r, ls)
    }

    #[test]
    fn postings_for_matchers_cases() {
        use MatchType::*;
        let (_dir, r, ls) = matcher_index();
        let sel = |ms: &[Matcher]| -> Vec<usize> {
            let mut c = Vec::new();
            let mut out: Vec<usize> = r
                .postings_for_matchers(ms)
                .unwrap()
                .into_iter()
                .map(|id| {
                    let l = r.series(id, &mut c).unwrap();
                    1 + ls.iter().position(|x| *x == l).unwrap()
                })
                .collect();
            out.sort();
            out
        };
        let cases: Vec<(Vec<Matcher>, Vec<usize>)> = vec![
            (vec![m(Equal, "__name__", "up")], vec![1, 2, 3]),
            (vec![m(Equal, "job", "nope")], vec![]),
            (vec![m(Equal, "nope", "x")], vec![]),
            (vec![m(NotEqual, "job", "a")], vec![2, 3, 4, 5, 6]),
            (
                vec![m(Equal, "__name__", "up"), m(NotEqual, "job", "a")],
                vec![2, 3],
            ),
            (vec![m(Regex, "job", "a.*")], vec![1, 3]),
            (vec![m(Regex, "job", "a|b")], vec![1, 2]),
            (vec![m(Regex, "job", "[ab]")], vec![1, 2]),
            (vec![m(NotRegex, "job", "a.*")], vec![2, 4, 5, 6]),
            (vec![m(NotRegex, "job", "a|b")], vec![3, 4, 5, 6]),
            // Empty-matching matchers select series lacking the label.
            (vec![m(Equal, "foo", "")], vec![1, 2, 3, 6]),
            (
                vec![m(Equal, "__name__", "down"), m(Equal, "foo", "")],
                vec![6],
            ),
            (vec![m(NotEqual, "foo", "bar")], vec![1, 2, 3, 5, 6]),
            (vec![m(NotEqual, "foo", "")], vec![4, 5]),
            (vec![m(Regex, "foo", "")], vec![1, 2, 3, 6]),
            (vec![m(Regex, "foo", "bar|")], vec![1, 2, 3, 4, 6]),
            (vec![m(NotRegex, "foo", "")], vec![4, 5]),
            (vec![m(Regex, "env", ".*")], vec![1, 2, 3, 4, 5, 6]),
            (vec![m(Regex, "env", ".+")], vec![1, 3]),
            (vec![m(NotRegex, "env", ".*")], vec![]),
            (vec![m(NotRegex, "env", ".+")], vec![2, 4, 5, 6]),
            (vec![m(Regex, "job", "zzz.*")], vec![]),
            (vec![m(Regex, "job", "q[0-9]+")], vec![]),
            (vec![m(NotRegex, "job", "q[0-9]+")], vec![1, 2, 3, 4, 5, 6]),
            // {l=~".+", l!="a"}: the != is subtracted.
            (
                vec![m(Regex, "job", ".+"), m(NotEqual, "job", "a")],
                vec![2, 3],
            ),
            (
                vec![m(Regex, "job", ".+"), m(NotRegex, "job", "a|b")],
                vec![3],
            ),
            (vec![m(Regex, "job", ".*"), m(Equal, "job", "b")], vec![2]),
            (vec![m(Equal, "job", ""), m(Equal, "job", "a")], vec![]),
            // Several matchers combined.
            (
                vec![
                    m(Equal, "__name__", "up"),
                    m(Regex, "job", "a.*"),
                    m(NotEqual, "env", "dev"),
                ],
                vec![1],
            ),
            (
                vec![m(Equal, "__name__", "up"), m(Equal, "env", "")],
                vec![2],
            ),
            (
                vec![m(NotEqual, "foo", "bar"), m(NotEqual, "job", "b")],
                vec![1, 3, 5, 6],
            ),
            (
                vec![m(Regex, "__name__", "up|down"), m(Regex, "foo", "ba.*")],
                vec![4, 5],
            ),
            // Name "" with value "" selects everything.
            (vec![m(Equal, "", "")], vec![1, 2, 3, 4, 5, 6]),
            (vec![], vec![]),
        ];
        let model = Model {
            series: r
                .all_postings()
                .unwrap()
                .into_iter()
                .map(|id| {
                    let mut c = Vec::new();
                    (id, r.series(id, &mut c).unwrap(), c)
                })
                .collect(),
        };
        for (ms, want) in cases {
            assert_eq!(sel(&ms), want, "{ms:?}");
            if !(ms.len() == 1 && ms[0].name.is_empty()) {
                assert_eq!(
                    r.postings_for_matchers(&ms).unwrap(),
                    model.brute_force(&ms),
                    "{ms:?}"
                );
            }
        }
    }

    #[test]
    fn reader_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<IndexReader>();
    }

    #[test]
    fn versions() {
        let b = std::fs::read(fixture_block("small").join("index")).unwrap();
        let mut v3 = b.clone();
        v3[4] = 3;
        let r = IndexReader::from_bytes("v3", v3).unwrap();
        assert_eq!(r.version(), 3);
        assert_eq!(r.all_postings().unwrap(), [5, 7, 9]);
        let mut v1 = b.clone();
        v1[4] = 1;
        let e = IndexReader::from_bytes("v1", v1).err().unwrap().to_string();
        assert!(e.contains("unsupported index version 1"), "{e}");
    }

    /// Fixes the CRC of the `len u32 | body | crc` section at `off`.
    fn fix_section_crc(b: &mut [u8], off: usize) {
        let len = u32::from_be_bytes(b[off..off + 4].try_into().unwrap()) as usize;
        let crc = crc32c::crc32c(&b[off + 4..off + 4 + len]);
        b[off + 4 + len..off + 8 + len].copy_from_slice(&crc.to_be_bytes());
    }

    fn open_err(b: Vec<u8>) -> String {
        match IndexReader::from_bytes("/x/index", b) {
            Ok(_) => panic!("expected an error"),
            Err(e) => {
                assert!(matches!(e, Error::Corrupted { .. }), "{e}");
                e.to_string()
            }
        }
    }

    #[test]
    fn corruption_is_reported_with_file_and_section() {
        let good = std::fs::read(fixture_block("small").join("index")).unwrap();
        let toc = IndexReader::from_bytes("x", good.clone()).unwrap().toc();
        let (sym, pt) = (toc.symbols as usize, toc.postings_table as usize);

        let e = open_err(good[..3].to_vec());
        assert!(e.starts_with("/x/index: corrupted: index header"), "{e}");
        let mut b = good.clone();
        b[0] = 0;
        assert!(open_err(b).contains("invalid magic"));
        let mut b = good.clone();
        b[4] = 9;
        assert!(open_err(b).contains("unknown index version 9"));
        assert!(open_err(good[..good.len() - 1].to_vec()).contains("index TOC: invalid checksum"));
        let mut b = good.clone();
        let n = b.len();
        b[n - 20] ^= 1;
        assert!(open_err(b).contains("index TOC"));

        let mut b = good.clone();
        b[sym + 10] ^= 0x40;
        assert!(open_err(b).contains("index symbol table: invalid checksum"));
        // Huge symbol count with a valid CRC: an error, not a 4-billion-entry Vec.
        let mut b = good.clone();
        b[sym + 4..sym + 8].copy_from_slice(&u32::MAX.to_be_bytes());
        fix_section_crc(&mut b, sym);
        assert!(open_err(b).contains("index symbol table: unexpected end"));
        // Huge section length.
        let mut b = good.clone();
        b[sym..sym + 4].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
        assert!(open_err(b).contains("index symbol table: section at offset 5 exceeds the file"));
        // Unsorted symbols ("200" and "500" swapped).
        let mut b = good.clone();
        let i = sym + 9;
        assert_eq!(&b[i..i + 8], b"\x03200\x03500");
        b[i + 1] = b'5';
        b[i + 5] = b'2';
        fix_section_crc(&mut b, sym);
        assert!(open_err(b).contains("symbols not sorted"));

        let mut b = good.clone();
        b[pt + 12] ^= 1;
        assert!(open_err(b).contains("index postings offset table: invalid checksum"));
        let mut b = good.clone();
        b[pt + 8] = 3; // key count of the first entry
        fix_section_crc(&mut b, pt);
        assert!(open_err(b).contains("index postings offset table: entry does not have 2 keys"));
        let mut b = good.clone();
        b[pt + 4..pt + 8].copy_from_slice(&u32::MAX.to_be_bytes());
        fix_section_crc(&mut b, pt);
        assert!(open_err(b).contains("index postings offset table"));

        // Damage that only shows when the data is used.
        let mut b = good.clone();
        b[0x50 + 3] ^= 0x10; // a label ref of series 5
        let r = IndexReader::from_bytes("/x/index", b).unwrap();
        let e = r.series(5, &mut Vec::new()).unwrap_err().to_string();
        assert!(
            e.contains("index series: series 5: invalid checksum"),
            "{e}"
        );
        let e = r.series(6, &mut Vec::new()).unwrap_err().to_string();
        assert!(e.contains("index series"), "{e}");
        let e = r.series(u64::MAX, &mut Vec::new()).unwrap_err().to_string();
        assert!(e.contains("out of range"), "{e}");

        // A bad symbol reference behind a valid CRC.
        let mut b = good.clone();
        b[0x50 + 3] = 0x7f;
        let crc = crc32c::crc32c(&b[0x51..0x51 + 0x12]);
        b[0x63..0x67].copy_from_slice(&crc.to_be_bytes());
        let r = IndexReader::from_bytes("/x/index", b).unwrap();
        let e = r.series(5, &mut Vec::new()).unwrap_err().to_string();
        assert!(
            e.contains("index series: series 5: unknown symbol reference"),
            "{e}"
        );

        // A damaged postings list.
        let mut b = good.clone();
        b[0x100 + 6] ^= 1;
        let r = IndexReader::from_bytes("/x/index", b).unwrap();
        let e = r.all_postings().unwrap_err().to_string();
        assert!(e.contains("index postings list: invalid checksum"), "{e}");
        let e = r
            .postings_for_matchers(&[m(MatchType::NotEqual, "job", "x")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("index postings list"), "{e}");
    }

    /// Exercises every read path on possibly damaged bytes; must not panic.
    fn read_everything(b: Vec<u8>) {
        let Ok(r) = IndexReader::from_bytes("fuzz", b) else {
            return;
        };
        let _ = r.symbols();
        let mut chunks = Vec::new();
        if let Ok(all) = r.all_postings() {
            for id in all.into_iter().take(64) {
                let _ = r.series(id, &mut chunks);
            }
        }
        for id in 0..64 {
            let _ = r.series(id, &mut chunks);
        }
        for n in r.label_names().unwrap_or_default() {
            for v in r.label_values(&n).unwrap_or_default() {
                let _ = r.postings(&n, &v);
            }
            let _ = r.postings_for_matchers(&[
                m(MatchType::Regex, &n, "v.*"),
                m(MatchType::NotRegex, &n, "a|b"),
                m(MatchType::NotEqual, "job", "x"),
            ]);
        }
    }

    /// Offsets of the CRC-protected sections of a good index, so a mutation
    /// inside one can be made CRC-valid and reach the decoders.
    fn sections(b: &[u8]) -> Vec<usize> {
        let r = IndexReader::from_bytes("x", b.to_vec()).unwrap();
        let toc = r.toc();
        let mut offs = vec![
            toc.symbols as usize,
            toc.postings_table as usize,
            toc.label_indices_table as usize,
        ];
        for n in std::iter::once(String::new()).chain(r.label_names().unwrap()) {
            for i in r.group(&n).unwrap().entries.clone() {
                offs.push(r.entry(i).unwrap().1 as usize);
            }
        }
        offs
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn damaged_index_never_panics(
            which in 0usize..2,
            muts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
            fix_crcs in any::<bool>(),
        ) {
            let name = ["small", "mixed"][which];
            let good = std::fs::read(fixture_block(name).join("index")).unwrap();
            let mut b = good.clone();
            for (i, v) in &muts {
                let i = i.index(b.len());
                b[i] = *v;
            }
            if fix_crcs {
                // Re-seal the sections (and series entries via their own CRC
                // after the length) so the decoders see the damage.
                for off in sections(&good) {
                    let len = u32::from_be_bytes(b[off..off + 4].try_into().unwrap()) as usize;
                    if off + 8 + len <= b.len() {
                        fix_section_crc(&mut b, off);
                    }
                }
                let toc = IndexReader::from_bytes("x", good.clone()).unwrap().toc();
                for id in IndexReader::from_bytes("x", good.clone()).unwrap().all_postings().unwrap() {
                    let off = id as usize * 16;
                    let mut d = Dec::new(&b[off..]);
                    if let Ok(len) = d.uvarint() {
                        let start = b.len() - d.remaining();
                        let end = start.saturating_add(len as usize);
                        if end + 4 <= toc.label_indices as usize {
                            let crc = crc32c::crc32c(&b[start..end]);
                            b[end..end + 4].copy_from_slice(&crc.to_be_bytes());
                        }
                    }
                }
                let n = b.len();
                let crc = crc32c::crc32c(&b[n - TOC_LEN..n - 4]);
                b[n - 4..].copy_from_slice(&crc.to_be_bytes());
            }
            if truncate {
                let n = cut.index(b.len());
                b.truncate(n);
            }
            read_everything(b);
        }
    }

    #[test]
    fn fuzz_every_single_byte_flip() {
        // Exhaustive over positions for the small fixture, CRCs re-sealed.
        let good = std::fs::read(fixture_block("small").join("index")).unwrap();
        let secs = sections(&good);
        for i in 0..good.len() {
            for v in [0u8, 0xff, good[i] ^ 1, good[i].wrapping_add(0x80)] {
                let mut b = good.clone();
                b[i] = v;
                for &off in &secs {
                    let len = u32::from_be_bytes(b[off..off + 4].try_into().unwrap()) as usize;
                    if off + 8 + len <= b.len() {
                        fix_section_crc(&mut b, off);
                    }
                }
                read_everything(b.clone());
                read_everything(b[..i].to_vec());
            }
        }
    }

    #[test]
    fn select_and_decode_10k_series_is_fast() {
        let series: Vec<Series> = (0..20_000)
            .map(|i| {
                let l = Labels::from_pairs([
                    ("__name__".to_string(), "http_requests_total".to_string()),
                    ("instance".to_string(), format!("host-{}", i % 1000)),
                    (
                        "job".to_string(),
                        if i % 2 == 0 { "api" } else { "web" }.to_string(),
                    ),
                    ("path".to_string(), format!("/p/{}", i / 1000)),
                ]);
                (
                    l,
                    vec![
                        chunk(0, 7_199_000, i as u64 * 200),
                        chunk(7_200_000, 14_399_000, i as u64 * 200 + 100),
                    ],
                )
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let t = std::time::Instant::now();
        write_index(&path, &series);
        let write = t.elapsed();
        let r = IndexReader::open(&path).unwrap();
        let t = std::time::Instant::now();
        let ids = r
            .postings_for_matchers(&[
                m(MatchType::Equal, "__name__", "http_requests_total"),
                m(MatchType::Equal, "job", "api"),
                m(MatchType::Regex, "instance", "host-.*"),
            ])
            .unwrap();
        let select = t.elapsed();
        assert_eq!(ids.len(), 10_000);
        let t = std::time::Instant::now();
        let mut c = Vec::new();
        let mut n = 0;
        for id in ids {
            let l = r.series(id, &mut c).unwrap();
            n += l.len() + c.len();
        }
        let decode = t.elapsed();
        assert_eq!(n, 60_000);
        eprintln!("20k series: write {write:?}; 10k: select {select:?}, decode {decode:?}");
        // Generous bound for unoptimised debug builds on a shared machine;
        // a release build is ~100x under it.
        assert!(select + decode < std::time::Duration::from_secs(5));
    }
}
