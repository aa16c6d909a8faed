//! Persisted blocks: reading them and writing them.
//!
//! A block is a directory named by its ULID:
//!
//! ```text
//! <ULID>/
//!   meta.json      time range [minTime, maxTime), stats, compaction lineage
//!   index          index format v2 (see crate::index)
//!   chunks/000001  chunk segment files (see crate::chunks)
//!   tombstones     deleted intervals (see crate::tombstones)
//! ```
//!
//! Writing is crash-safe the way Prometheus does it: everything goes into
//! `<ULID>.tmp-for-creation/`, every file and the directory are fsynced, then
//! the directory is renamed into place and the parent fsynced. A crash leaves
//! either no block or a whole one; leftover `*.tmp-for-creation` and
//! `*.tmp-for-deletion` directories are removed when the database opens.
//!
//! The writer reproduces Prometheus' bytes: symbols are every label name and
//! value plus the empty string (the head's all-postings key puts `""` into
//! Prometheus' symbol table), series are written in label order, and each
//! series' chunks form one batch for the chunk writer.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::chunkenc::Encoding;
use crate::chunks::{ChunkMeta, ChunkReader, ChunkWriter};
use crate::error::{Error, IoContext, Result};
use crate::index::{IndexReader, IndexWriter};
use crate::labels::{Labels, Matcher};
use crate::meta::{sync_dir, BlockMeta, BlockStats, Compaction};
use crate::series::{ChunkBytes, ChunkData, ChunkSeries};
use crate::tombstones::{Interval, Tombstones};

pub const TMP_CREATION_SUFFIX: &str = ".tmp-for-creation";
pub const TMP_DELETION_SUFFIX: &str = ".tmp-for-deletion";

/// An open, immutable block. Tombstones are the only mutable part.
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    index: IndexReader,
    chunks: ChunkReader,
    tombstones: RwLock<Tombstones>,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Block({})", self.dir.display())
    }
}

impl Block {
    /// Opens a block directory, validating meta.json, the index header and
    /// TOC, every chunk segment header, and the tombstones file.
    pub fn open(dir: &Path) -> Result<Arc<Block>> {
        let meta = BlockMeta::read(dir)?;
        let index = IndexReader::open(&dir.join("index"))?;
        let chunks = ChunkReader::open(&dir.join("chunks"))?;
        let tombstones = Tombstones::read(dir)?;
        Ok(Arc::new(Block {
            dir: dir.to_path_buf(),
            meta,
            index,
            chunks,
            tombstones: RwLock::new(tombstones),
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    pub fn index(&self) -> &IndexReader {
        &self.index
    }

    pub fn min_time(&self) -> i64 {
        self.meta.min_time
    }

    pub fn max_time(&self) -> i64 {
        self.meta.max_time
    }

    pub fn num_tombstones(&self) -> u64 {
        self.tombstones.read().total()
    }

    /// Bytes on disk: index, chunks, meta and tombstones.
    pub fn size(&self) -> u64 {
        let small = ["meta.json", "tombstones"]
            .iter()
            .filter_map(|f| fs::metadata(self.dir.join(f)).ok())
            .map(|m| m.len())
            .sum::<u64>();
        self.index.size() + self.chunks.size() + small
    }

    /// The raw bytes of a chunk, checked against its CRC.
    pub fn chunk(&self, chunk_ref: u64) -> Result<(Encoding, &[u8])> {
        self.chunks.chunk(chunk_ref)
    }

    /// Series matching `ms` with at least one chunk overlapping
    /// `[mint, maxt]`, sorted by labels.
    pub fn select(
        self: &Arc<Self>,
        ms: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<ChunkSeries>> {
        if mint > maxt || maxt < self.meta.min_time || mint >= self.meta.max_time {
            return Ok(Vec::new());
        }
        // No matcher selects everything (the index, like Prometheus, would
        // select nothing).
        let refs = if ms.is_empty() {
            self.index.all_postings()?
        } else {
            self.index.postings_for_matchers(ms)?
        };
        let stones = self.tombstones.read();
        let mut out = Vec::with_capacity(refs.len());
        let mut metas = Vec::new();
        for r in refs {
            metas.clear();
            let labels = self.index.series(r, &mut metas)?;
            let chunks: Vec<ChunkData> = metas
                .iter()
                .filter(|c| c.min_time <= maxt && c.max_time >= mint)
                .map(|c| ChunkData {
                    min_time: c.min_time,
                    max_time: c.max_time,
                    encoding: Encoding::Xor,
                    bytes: ChunkBytes::Block(self.clone(), c.chunk_ref),
                })
                .collect();
            if chunks.is_empty() {
                continue;
            }
            let deleted = stones.get(r).map(<[_]>::to_vec).unwrap_or_default();
            // A series whose every chunk lies inside a deleted interval is gone.
            if chunks.iter().all(|c| {
                deleted
                    .iter()
                    .any(|iv| iv.mint <= c.min_time && iv.maxt >= c.max_time)
            }) {
                continue;
            }
            out.push(ChunkSeries {
                labels,
                chunks,
                deleted,
            });
        }
        Ok(out)
    }

    pub fn label_names(&self, ms: &[Matcher]) -> Result<Vec<String>> {
        if ms.is_empty() {
            return self.index.label_names();
        }
        let mut names = BTreeSet::new();
        let mut metas = Vec::new();
        for r in self.index.postings_for_matchers(ms)? {
            for l in &self.index.series(r, &mut metas)? {
                names.insert(l.name.to_string());
            }
        }
        Ok(names.into_iter().collect())
    }

    pub fn label_values(&self, name: &str, ms: &[Matcher]) -> Result<Vec<String>> {
        if ms.is_empty() {
            return self.index.label_values(name);
        }
        let mut vals = BTreeSet::new();
        let mut metas = Vec::new();
        for r in self.index.postings_for_matchers(ms)? {
            if let Some(v) = self.index.series(r, &mut metas)?.get(name) {
                vals.insert(v.to_string());
            }
        }
        Ok(vals.into_iter().collect())
    }

    /// Adds tombstones for `[mint, maxt]` to every matching series that has
    /// data there and rewrites the tombstones file. Returns how many series.
    pub fn delete(self: &Arc<Self>, ms: &[Matcher], mint: i64, maxt: i64) -> Result<usize> {
        let series = self.index.postings_for_matchers(ms)?;
        let mut stones = self.tombstones.write();
        let mut next = stones.clone();
        let mut metas = Vec::new();
        let mut n = 0;
        for r in series {
            self.index.series(r, &mut metas)?;
            if metas
                .iter()
                .any(|c| c.min_time <= maxt && c.max_time >= mint)
            {
                let lo = mint.max(self.meta.min_time);
                let hi = maxt.min(self.meta.max_time);
                next.add(r, Interval { mint: lo, maxt: hi });
                n += 1;
            }
        }
        if n > 0 {
            next.write(&self.dir)?;
            *stones = next;
        }
        Ok(n)
    }
}

/// Options for [`write_block`].
#[derive(Clone, Debug)]
pub struct WriteOptions {
    pub min_time: i64,
    /// Exclusive end of the block's time range.
    pub max_time: i64,
    pub compaction: Option<Compaction>,
    /// Chunk segment size; `None` for Prometheus' 512 MiB.
    pub segment_size: Option<u64>,
}

/// Writes a block from series sorted by labels, applying their tombstones.
/// Returns the new block's meta, or `None` when no series has data (nothing
/// is written then, as Prometheus' `ErrNoSeriesAppended`).
pub fn write_block(
    parent: &Path,
    series: &[ChunkSeries],
    opts: &WriteOptions,
) -> Result<Option<BlockMeta>> {
    let id = ulid::Ulid::new();
    let name = id.to_string();
    let tmp = parent.join(format!("{name}{TMP_CREATION_SUFFIX}"));
    let dst = parent.join(&name);
    let res = write_block_dir(&tmp, id, series, opts);
    match res {
        Ok(Some(meta)) => {
            fs::rename(&tmp, &dst).at(&dst)?;
            sync_dir(parent)?;
            Ok(Some(meta))
        }
        other => {
            let _ = fs::remove_dir_all(&tmp);
            other
        }
    }
}

fn write_block_dir(
    dir: &Path,
    id: ulid::Ulid,
    series: &[ChunkSeries],
    opts: &WriteOptions,
) -> Result<Option<BlockMeta>> {
    fs::create_dir_all(dir).at(dir)?;
    let mut cw = match opts.segment_size {
        Some(s) => ChunkWriter::with_segment_size(&dir.join("chunks"), s)?,
        None => ChunkWriter::new(&dir.join("chunks"))?,
    };
    let mut stats = BlockStats::default();
    let mut written: Vec<(&Labels, Vec<ChunkMeta>)> = Vec::with_capacity(series.len());
    let mut symbols: BTreeSet<&str> = BTreeSet::new();
    symbols.insert("");
    for s in series {
        let chunks = chunks_for_block(s, opts.min_time, opts.max_time - 1)?;
        if chunks.is_empty() {
            continue;
        }
        let mut payloads: Vec<(Encoding, Vec<u8>)> = Vec::with_capacity(chunks.len());
        let mut samples = 0u64;
        for c in &chunks {
            let p = c.with_bytes(|enc, b| (enc, b.to_vec()))?;
            samples += u64::from(u16::from_be_bytes([
                p.1.first().copied().unwrap_or(0),
                p.1.get(1).copied().unwrap_or(0),
            ]));
            payloads.push(p);
        }
        let batch: Vec<(Encoding, &[u8])> =
            payloads.iter().map(|(e, b)| (*e, b.as_slice())).collect();
        let refs = cw.write_chunks(&batch)?;
        let metas = chunks
            .iter()
            .zip(refs)
            .map(|(c, r)| ChunkMeta {
                min_time: c.min_time,
                max_time: c.max_time,
                chunk_ref: r,
            })
            .collect::<Vec<_>>();
        stats.num_series += 1;
        stats.num_chunks += metas.len() as u64;
        stats.num_samples += samples;
        for l in &s.labels {
            symbols.insert(&l.name);
            symbols.insert(&l.value);
        }
        written.push((&s.labels, metas));
    }
    cw.close()?;
    if written.is_empty() {
        return Ok(None);
    }
    let mut iw = IndexWriter::create(&dir.join("index"))?;
    for s in &symbols {
        iw.add_symbol(s)?;
    }
    for (labels, metas) in &written {
        iw.add_series(labels, metas)?;
    }
    iw.close()?;
    let mut meta = BlockMeta::new_level1(id, opts.min_time, opts.max_time, stats);
    if let Some(c) = &opts.compaction {
        meta.compaction = c.clone();
        if meta.compaction.sources.is_empty() {
            meta.compaction.sources = vec![id.to_string()];
        }
    }
    meta.write(dir)?;
    Tombstones::new().write(dir)?;
    sync_dir(dir)?;
    Ok(Some(meta))
}

/// The chunks of `s` to persist for `[mint, maxt]`: passed through as they
/// are when nothing is deleted and every chunk lies inside the range;
/// otherwise re-encoded from the surviving samples.
fn chunks_for_block(s: &ChunkSeries, mint: i64, maxt: i64) -> Result<Vec<ChunkData>> {
    let inside = s
        .chunks
        .iter()
        .all(|c| c.min_time >= mint && c.max_time <= maxt);
    let disjoint = s.chunks.windows(2).all(|w| w[0].max_time < w[1].min_time);
    if s.deleted.is_empty() && inside && disjoint {
        return Ok(s.chunks.clone());
    }
    let samples = s.samples(mint, maxt)?;
    let mut out = crate::series::samples_to_chunks(&samples, 120);
    if s.chunks
        .iter()
        .any(|c| c.encoding != crate::chunkenc::Encoding::Xor)
    {
        let hs = s.histogram_samples(mint, maxt)?;
        out.extend(crate::series::histograms_to_chunks(&hs, 120));
        out.sort_by_key(|c| c.min_time);
    }
    Ok(out)
}

/// Block directories under `dir` (names that parse as ULIDs), sorted.
pub fn block_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for e in rd {
        let e = e.at(dir)?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.len() == 26 && name.parse::<ulid::Ulid>().is_ok() && e.path().is_dir() {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Removes a block: rename to `.tmp-for-deletion` first so a crash midway
/// never leaves a half-deleted block that looks whole.
pub fn delete_block_dir(dir: &Path) -> Result<()> {
    let mut tmp = dir.as_os_str().to_owned();
    tmp.push(TMP_DELETION_SUFFIX);
    let tmp = PathBuf::from(tmp);
    fs::rename(dir, &tmp).at(dir)?;
    fs::remove_dir_all(&tmp).at(&tmp)
}

/// Removes leftovers of interrupted block creation or deletion.
pub fn remove_tmp_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for e in rd {
        let e = e.at(dir)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(TMP_CREATION_SUFFIX) || name.ends_with(TMP_DELETION_SUFFIX) {
            fs::remove_dir_all(e.path()).at(e.path())?;
            removed.push(e.path());
        }
    }
    Ok(removed)
}
