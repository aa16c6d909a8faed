//! The database: a data directory holding persisted blocks, a head and a WAL.
//!
//! ```text
//! <dir>/
//!   lock            advisory lock: one process per data dir
//!   wal/            the head's write-ahead log (crate::wal)
//!   chunks_head/    full head chunks, memory-mapped (crate::head_chunks)
//!   <ULID>/         persisted blocks (crate::block)
//! ```
//!
//! Life cycle, as in Prometheus 2.42:
//! - **open**: take the lock, remove leftovers of interrupted block writes,
//!   open every block, load the head chunk files, replay the WAL (last
//!   checkpoint, then the segments after it) into the head: a series record
//!   attaches the series' full chunks from `chunks_head/`, and only newer
//!   samples are appended from the WAL. A torn or corrupted WAL tail — what a crash in the
//!   middle of a write leaves — is repaired (cut at the last whole record) and
//!   reported; everything acknowledged before the crash is kept.
//! - **compact** ([`Db::compact`]): while the head spans more than 1.5 block
//!   durations, its oldest aligned block-duration range is written as a block,
//!   dropped from memory, and the WAL is checkpointed. With the minimum and
//!   maximum block durations equal (the default here, what a Thanos sidecar
//!   needs) blocks are never merged locally, so they stay as they are shipped.
//! - **retention**: by time relative to the newest block, and by size
//!   (WAL + blocks), deleting whole blocks, oldest first.
//!
//! # Durability rules
//! 1. A sample whose [`crate::head::Appender::commit`] returned `Ok` is in the
//!    WAL's segment file (written with `write(2)`) and survives `kill -9`.
//!    Surviving power loss additionally needs [`Db::sync_wal`] (fsync).
//! 2. A block directory is visible under its ULID only once complete and
//!    fsynced (written under a temporary name, then renamed).
//! 3. The head drops data and the WAL is truncated only after the block
//!    holding that data has been renamed into place.
//! 4. WAL repair only removes bytes after the last complete record.
//! 5. `chunks_head/` only caches what the WAL holds: losing or cutting a
//!    head chunk file loses no sample (see [`crate::head_chunks`]).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::block::{self, Block, WriteOptions};
use crate::compact;
use crate::error::{Error, IoContext, Result};
use crate::head::{range_for_timestamp, Head, HeadOptions, ReplayState, DEFAULT_BLOCK_DURATION};
use crate::head_chunks::ChunkDiskMapper;
use crate::labels::Matcher;
use crate::meta::{BlockDesc, BlockMeta, Compaction};
use crate::series::{merge_series_sets, ChunkSeries};
use crate::wal::{self, Wal, WalOptions};

/// Options of a [`Db`]. Defaults are Prometheus' with equal min and max
/// block durations (2h).
#[derive(Clone, Debug)]
pub struct DbOptions {
    /// Keep blocks whose max time is within this many ms of the newest
    /// block's max time. `None`: 15 days when no size limit is set either.
    pub retention_time: Option<i64>,
    /// Keep at most this many bytes of blocks plus WAL plus `chunks_head/`.
    pub retention_size: Option<u64>,
    pub min_block_duration: i64,
    pub max_block_duration: i64,
    pub wal_segment_size: usize,
    pub wal_compression: bool,
    /// Run without a WAL (appends are not durable; `chunks_head/` is
    /// emptied on open, its chunks could not be tied to series again).
    pub no_wal: bool,
}

/// The head chunk files' directory (crate::head_chunks), as Prometheus names it.
pub const CHUNKS_HEAD_DIR: &str = "chunks_head";

pub const DEFAULT_RETENTION: i64 = 15 * 24 * 60 * 60 * 1000;

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            retention_time: None,
            retention_size: None,
            min_block_duration: DEFAULT_BLOCK_DURATION,
            max_block_duration: DEFAULT_BLOCK_DURATION,
            wal_segment_size: 128 * 1024 * 1024,
            wal_compression: true,
            no_wal: false,
        }
    }
}

impl DbOptions {
    fn effective_retention_time(&self) -> Option<i64> {
        match (self.retention_time, self.retention_size) {
            (Some(t), _) if t > 0 => Some(t),
            (None, None) => Some(DEFAULT_RETENTION),
            _ => None,
        }
    }
}

/// What [`Db::open`] found and did.
#[derive(Debug, Default)]
pub struct OpenReport {
    pub blocks: usize,
    pub removed_tmp_dirs: Vec<PathBuf>,
    /// Blocks deleted because a compacted block lists them as parents: a
    /// crash hit between writing the compacted block and deleting them.
    pub removed_parent_blocks: Vec<String>,
    pub replayed_samples: u64,
    pub wal_repaired: Option<String>,
    /// Full head chunks taken from `chunks_head/` instead of the WAL.
    pub mmapped_chunks: u64,
    /// Set when a head chunk file was torn or corrupted: what was cut (the
    /// WAL replay restored the data).
    pub head_chunks_repaired: Option<String>,
}

/// A Prometheus-compatible data directory.
pub struct Db {
    dir: PathBuf,
    opts: DbOptions,
    head: Arc<Head>,
    blocks: RwLock<Vec<Arc<Block>>>,
    /// Serialises compaction, retention and deletion.
    maintenance: Mutex<()>,
    /// ULIDs of blocks whose compaction failed in this process (also marked
    /// in their meta.json, which blocks opened later carry).
    failed_compactions: Mutex<HashSet<String>>,
    _lock: Option<fs::File>,
}

impl Db {
    pub fn open(dir: &Path, opts: DbOptions) -> Result<(Db, OpenReport)> {
        if opts.min_block_duration <= 0 || opts.max_block_duration < opts.min_block_duration {
            return Err(Error::Invalid(
                "max block duration must be at least the min block duration, which must be positive".into(),
            ));
        }
        fs::create_dir_all(dir).at(dir)?;
        let lock_path = dir.join("lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .at(&lock_path)?;
        lock.try_lock().map_err(|e| {
            Error::Invalid(format!(
                "{}: data directory is in use by another process ({e})",
                lock_path.display()
            ))
        })?;
        let mut report = OpenReport {
            removed_tmp_dirs: block::remove_tmp_dirs(dir)?,
            ..Default::default()
        };
        let blocks = open_blocks(dir)?;
        let (blocks, removed) = remove_compacted_parents(blocks)?;
        report.removed_parent_blocks = removed;
        report.blocks = blocks.len();
        let max_block_t = blocks.iter().map(|b| b.max_time()).max();

        let head_opts = HeadOptions {
            chunk_range: opts.min_block_duration,
        };
        let chunks_dir = dir.join(CHUNKS_HEAD_DIR);
        let head = if opts.no_wal {
            // Without a WAL, chunks of an earlier run cannot be tied to
            // series again: start empty.
            let mut h = Head::new(head_opts);
            h.attach_chunk_mapper(ChunkDiskMapper::open_empty(&chunks_dir)?);
            h
        } else {
            let wal_dir = dir.join("wal");
            let mut replay_head = Head::new(head_opts.clone());
            if let Some(t) = max_block_t {
                replay_head.set_min_valid_time(t);
            }
            let (mapper, loaded) = ChunkDiskMapper::open(&chunks_dir)?;
            report.head_chunks_repaired = loaded.repaired;
            replay_head.attach_chunk_mapper(mapper);
            let state = ReplayState {
                mmapped: loaded.chunks,
                ..ReplayState::default()
            };
            let (state, repaired) = replay_wal(&wal_dir, &replay_head, state)?;
            report.replayed_samples = state.samples;
            report.mmapped_chunks = state.mmapped_chunks;
            report.wal_repaired = repaired;
            let w = Wal::open(
                &wal_dir,
                WalOptions {
                    segment_size: opts.wal_segment_size,
                    compress: opts.wal_compression,
                },
            )?;
            replay_head.attach_wal(w);
            replay_head
        };
        if let Some(t) = max_block_t {
            head.set_min_valid_time(t);
        }
        let db = Db {
            dir: dir.to_path_buf(),
            opts,
            head: Arc::new(head),
            blocks: RwLock::new(blocks),
            maintenance: Mutex::new(()),
            failed_compactions: Mutex::new(HashSet::new()),
            _lock: Some(lock),
        };
        Ok((db, report))
    }

    /// Opens a data directory for reading only, as `promtool tsdb dump`
    /// does: blocks, plus the WAL replayed into a head. Nothing is written,
    /// no lock is taken, and a corrupted WAL tail ends the replay.
    pub fn open_read_only(dir: &Path) -> Result<Db> {
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            ));
        }
        let blocks = open_blocks(dir)?;
        let opts = DbOptions::default();
        let head = Head::new(HeadOptions {
            chunk_range: opts.min_block_duration,
        });
        if let Some(t) = blocks.iter().map(|b| b.max_time()).max() {
            head.set_min_valid_time(t);
        }
        let wal_dir = dir.join("wal");
        if wal_dir.is_dir() {
            replay_wal_read_only(&wal_dir, &head)?;
        }
        Ok(Db {
            dir: dir.to_path_buf(),
            opts,
            head: Arc::new(head),
            blocks: RwLock::new(blocks),
            maintenance: Mutex::new(()),
            failed_compactions: Mutex::new(HashSet::new()),
            _lock: None,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn head(&self) -> &Arc<Head> {
        &self.head
    }

    pub fn blocks(&self) -> Vec<Arc<Block>> {
        self.blocks.read().clone()
    }

    pub fn appender(&self) -> crate::head::Appender<'_> {
        self.head.appender()
    }

    /// fsyncs the WAL: makes every committed sample survive power loss.
    pub fn sync_wal(&self) -> Result<()> {
        match self.head.wal() {
            Some(w) => w.lock().sync(),
            None => Ok(()),
        }
    }

    /// Smallest time of any data, or `None` when empty.
    pub fn min_time(&self) -> Option<i64> {
        let b = self.blocks.read().iter().map(|b| b.min_time()).min();
        let h = (!self.head.is_empty()).then(|| self.head.min_time());
        b.into_iter().chain(h).min()
    }

    /// Largest time of any data, or `None` when empty.
    pub fn max_time(&self) -> Option<i64> {
        let b = self.blocks.read().iter().map(|b| b.max_time() - 1).max();
        let h = (!self.head.is_empty()).then(|| self.head.max_time());
        b.into_iter().chain(h).max()
    }

    /// Series matching `ms` with data in `[mint, maxt]`, from blocks and head,
    /// sorted by labels; equal label sets are merged.
    pub fn select(&self, ms: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<ChunkSeries>> {
        let mut sets = Vec::new();
        for b in self.blocks.read().iter() {
            if b.min_time() <= maxt && b.max_time() > mint {
                sets.push(b.select(ms, mint, maxt)?);
            }
        }
        if !self.head.is_empty() && self.head.min_time() <= maxt && self.head.max_time() >= mint {
            sets.push(self.head.select(ms, mint, maxt));
        }
        if sets.len() == 1 {
            return Ok(sets.pop().unwrap_or_default());
        }
        Ok(merge_series_sets(sets))
    }

    pub fn label_names(&self, ms: &[Matcher]) -> Result<Vec<String>> {
        let mut all = std::collections::BTreeSet::new();
        for b in self.blocks.read().iter() {
            all.extend(b.label_names(ms)?);
        }
        all.extend(self.head.label_names(ms));
        Ok(all.into_iter().collect())
    }

    pub fn label_values(&self, name: &str, ms: &[Matcher]) -> Result<Vec<String>> {
        let mut all = std::collections::BTreeSet::new();
        for b in self.blocks.read().iter() {
            all.extend(b.label_values(name, ms)?);
        }
        all.extend(self.head.label_values(name, ms));
        Ok(all.into_iter().collect())
    }

    /// [`Self::label_names`] over the blocks and the head whose time range
    /// overlaps `[mint, maxt]`, as Prometheus' querier picks them (label
    /// lookups are block-granular, never per sample).
    pub fn label_names_in(&self, ms: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let mut all = std::collections::BTreeSet::new();
        for b in self.blocks.read().iter() {
            if b.min_time() <= maxt && mint < b.max_time() {
                all.extend(b.label_names(ms)?);
            }
        }
        if !self.head.is_empty() && self.head.min_time() <= maxt && self.head.max_time() >= mint {
            all.extend(self.head.label_names(ms));
        }
        Ok(all.into_iter().collect())
    }

    /// [`Self::label_values`] restricted like [`Self::label_names_in`].
    pub fn label_values_in(
        &self,
        name: &str,
        ms: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        let mut all = std::collections::BTreeSet::new();
        for b in self.blocks.read().iter() {
            if b.min_time() <= maxt && mint < b.max_time() {
                all.extend(b.label_values(name, ms)?);
            }
        }
        if !self.head.is_empty() && self.head.min_time() <= maxt && self.head.max_time() >= mint {
            all.extend(self.head.label_values(name, ms));
        }
        Ok(all.into_iter().collect())
    }

    /// Cuts blocks from the head while it is compactable, then applies
    /// retention. Returns the metas of the blocks written.
    pub fn compact(&self) -> Result<Vec<BlockMeta>> {
        let _g = self.maintenance.lock();
        let mut written = Vec::new();
        while self.head.compactable() {
            let mint = self.head.min_time();
            let maxt = range_for_timestamp(mint, self.opts.min_block_duration);
            let series = self.head.chunk_series_in(mint, maxt - 1);
            let meta = block::write_block(
                &self.dir,
                &series,
                &WriteOptions {
                    min_time: mint,
                    max_time: maxt,
                    compaction: None,
                    segment_size: None,
                },
            )?;
            if let Some(m) = meta {
                let b = Block::open(&self.dir.join(&m.ulid))?;
                self.blocks.write().push(b);
                tracing::info!(ulid = %m.ulid, mint, maxt, series = m.stats.num_series, "wrote block from head");
                written.push(m);
            }
            self.head.truncate_memory(maxt);
            self.truncate_wal(maxt)?;
        }
        written.extend(self.compact_blocks_locked()?);
        self.apply_retention_locked()?;
        Ok(written)
    }

    /// Merges blocks as [`crate::compact::plan`] says until it says nothing
    /// is left. Returns the metas of the blocks written.
    fn compact_blocks_locked(&self) -> Result<Vec<BlockMeta>> {
        let ranges = compact::ranges(self.opts.min_block_duration, self.opts.max_block_duration);
        let mut written = Vec::new();
        // Every round removes at least one block, or writes nothing and
        // stops; the bound only guards against a planning bug looping.
        for _ in 0..10_000 {
            let blocks = self.blocks.read().clone();
            let failed = self.failed_compactions.lock();
            let owned: Vec<BlockMeta> = blocks
                .iter()
                .map(|b| {
                    let mut m = b.meta().clone();
                    m.compaction.failed |= failed.contains(&m.ulid);
                    m
                })
                .collect();
            drop(failed);
            let metas: Vec<&BlockMeta> = owned.iter().collect();
            let picked = compact::plan(&metas, &ranges);
            if picked.is_empty() {
                break;
            }
            let parents: Vec<Arc<Block>> = picked.iter().map(|&i| blocks[i].clone()).collect();
            written.extend(self.merge_blocks(&parents)?);
        }
        Ok(written)
    }

    /// Writes one block holding the data of `parents` (tombstones applied,
    /// overlaps merged) and then deletes them. The new block appears under
    /// its final name only when complete, and lists the parents in its
    /// meta.json, so that a crash before they are deleted is repaired on the
    /// next open (see [`remove_compacted_parents`]).
    fn merge_blocks(&self, parents: &[Arc<Block>]) -> Result<Option<BlockMeta>> {
        let metas: Vec<&BlockMeta> = parents.iter().map(|b| b.meta()).collect();
        let (compaction, mint, maxt) = compact::merged_meta(&metas);
        let merged = (|| -> Result<(Option<BlockMeta>, Option<Arc<Block>>)> {
            let mut sets = Vec::with_capacity(parents.len());
            for b in parents {
                sets.push(b.select(&[], b.min_time(), b.max_time() - 1)?);
            }
            let series = merge_series_sets(sets);
            let meta = block::write_block(
                &self.dir,
                &series,
                &WriteOptions {
                    min_time: mint,
                    max_time: maxt,
                    compaction: Some(compaction),
                    segment_size: None,
                },
            )?;
            let new = match &meta {
                Some(m) => Some(Block::open(&self.dir.join(&m.ulid))?),
                // Everything was deleted: nothing to write, the parents go.
                None => None,
            };
            Ok((meta, new))
        })();
        let (meta, new) = match merged {
            Ok(x) => x,
            Err(e) => {
                self.mark_compaction_failed(parents);
                return Err(e);
            }
        };
        {
            let mut bs = self.blocks.write();
            bs.retain(|x| !parents.iter().any(|p| Arc::ptr_eq(x, p)));
            bs.extend(new);
        }
        for p in parents {
            block::delete_block_dir(p.dir())?;
        }
        if let Some(m) = &meta {
            tracing::info!(ulid = %m.ulid, level = m.compaction.level, parents = parents.len(), mint, maxt, "compacted blocks");
        }
        Ok(meta)
    }

    /// Records that merging `parents` failed, as Prometheus does: their
    /// meta.json gets `compaction.failed: true` and the planner skips every
    /// range holding one of them from now on, so that one bad block (a
    /// corrupted chunk, say) does not make every compaction fail, and an
    /// operator sees which blocks to look at. The mark survives restarts
    /// through meta.json; failing to write it only costs a retry.
    fn mark_compaction_failed(&self, parents: &[Arc<Block>]) {
        let mut failed = self.failed_compactions.lock();
        for p in parents {
            let mut m = p.meta().clone();
            m.compaction.failed = true;
            match m.write(p.dir()) {
                Ok(_) => {
                    tracing::warn!(ulid = %m.ulid, "compaction of block failed; marked in meta.json, the planner skips it")
                }
                Err(e) => {
                    tracing::error!(ulid = %m.ulid, error = %e, "marking failed compaction in meta.json")
                }
            }
            failed.insert(m.ulid);
        }
    }

    /// Writes the whole head as blocks regardless of the 1.5-range trigger
    /// (used by snapshots and on demand).
    pub fn flush_head(&self) -> Result<Vec<BlockMeta>> {
        let _g = self.maintenance.lock();
        let mut written = Vec::new();
        while !self.head.is_empty() {
            let mint = self.head.min_time();
            let maxt = range_for_timestamp(mint, self.opts.min_block_duration);
            let series = self.head.chunk_series_in(mint, maxt - 1);
            if let Some(m) = block::write_block(
                &self.dir,
                &series,
                &WriteOptions {
                    min_time: mint,
                    max_time: maxt.min(self.head.max_time() + 1),
                    compaction: None,
                    segment_size: None,
                },
            )? {
                self.blocks
                    .write()
                    .push(Block::open(&self.dir.join(&m.ulid))?);
                written.push(m);
            }
            if self.head.max_time() < maxt {
                break;
            }
            self.head.truncate_memory(maxt);
        }
        Ok(written)
    }

    fn truncate_wal(&self, mint: i64) -> Result<()> {
        let Some(w) = self.head.wal() else {
            return Ok(());
        };
        let mut w = w.lock();
        let Some((first, last)) = Wal::segment_range(w.dir())? else {
            return Ok(());
        };
        w.next_segment()?;
        // Never checkpoint the segment being written; the lower two thirds
        // hold mostly data now in blocks (Prometheus' heuristic).
        if last == 0 {
            return Ok(());
        }
        let last = last - 1;
        let last = first + (last - first) * 2 / 3;
        if last <= first {
            return Ok(());
        }
        let head = self.head.clone();
        wal::checkpoint::checkpoint(w.dir(), first, last, &|r| head.has_series(r), mint)?;
        w.truncate(last + 1)?;
        wal::checkpoint::delete_checkpoints(w.dir(), last)?;
        Ok(())
    }

    /// Deletes blocks beyond the time or size retention.
    pub fn apply_retention(&self) -> Result<Vec<String>> {
        let _g = self.maintenance.lock();
        self.apply_retention_locked()
    }

    fn apply_retention_locked(&self) -> Result<Vec<String>> {
        let mut blocks = self.blocks.read().clone();
        blocks.sort_by_key(|b| std::cmp::Reverse(b.max_time()));
        let mut doomed: Vec<Arc<Block>> = Vec::new();
        if let (Some(ret), Some(newest)) = (self.opts.effective_retention_time(), blocks.first()) {
            let newest_max = newest.max_time();
            for (i, b) in blocks.iter().enumerate() {
                if i > 0 && newest_max - b.max_time() > ret {
                    doomed.extend(blocks[i..].iter().cloned());
                    break;
                }
            }
        }
        if let Some(limit) = self.opts.retention_size {
            let mut sum = match self.head.wal() {
                Some(w) => w.lock().size()?,
                None => 0,
            };
            // Prometheus counts the head chunk files too.
            sum += self.head.chunk_mapper().map_or(0, |m| m.size());
            for (i, b) in blocks.iter().enumerate() {
                sum += b.size();
                if sum > limit {
                    for d in &blocks[i..] {
                        if !doomed.iter().any(|x| Arc::ptr_eq(x, d)) {
                            doomed.push(d.clone());
                        }
                    }
                    break;
                }
            }
        }
        let mut deleted = Vec::new();
        if !doomed.is_empty() {
            self.blocks
                .write()
                .retain(|b| !doomed.iter().any(|d| Arc::ptr_eq(b, d)));
            for d in doomed {
                tracing::info!(ulid = %d.meta().ulid, "deleting block beyond retention");
                block::delete_block_dir(d.dir())?;
                deleted.push(d.meta().ulid.clone());
            }
        }
        Ok(deleted)
    }

    /// Marks `[mint, maxt]` of every matching series deleted, in blocks
    /// (tombstones files) and the head (WAL tombstone records).
    pub fn delete(&self, ms: &[Matcher], mint: i64, maxt: i64) -> Result<usize> {
        let _g = self.maintenance.lock();
        let mut n = 0;
        for b in self.blocks.read().iter() {
            if b.min_time() <= maxt && b.max_time() > mint {
                n += b.delete(ms, mint, maxt)?;
            }
        }
        n += self.head.delete(ms, mint, maxt)?;
        Ok(n)
    }

    /// Rewrites every block with tombstones without the deleted data.
    pub fn clean_tombstones(&self) -> Result<Vec<String>> {
        let _g = self.maintenance.lock();
        let mut rewritten = Vec::new();
        let blocks = self.blocks.read().clone();
        for b in blocks {
            if b.num_tombstones() == 0 {
                continue;
            }
            let series = b.select(&[], b.min_time(), b.max_time() - 1)?;
            let old = b.meta().clone();
            let meta = block::write_block(
                &self.dir,
                &series,
                &WriteOptions {
                    min_time: old.min_time,
                    max_time: old.max_time,
                    compaction: Some(Compaction {
                        level: old.compaction.level,
                        sources: old.compaction.sources.clone(),
                        parents: vec![BlockDesc {
                            ulid: old.ulid.clone(),
                            min_time: old.min_time,
                            max_time: old.max_time,
                        }],
                        ..Default::default()
                    }),
                    segment_size: None,
                },
            )?;
            {
                let mut bs = self.blocks.write();
                bs.retain(|x| !Arc::ptr_eq(x, &b));
                if let Some(m) = &meta {
                    bs.push(Block::open(&self.dir.join(&m.ulid))?);
                }
            }
            block::delete_block_dir(b.dir())?;
            rewritten.push(old.ulid);
        }
        Ok(rewritten)
    }
}

/// Opens every block directory, oldest first.
/// Deletes the blocks that another block names as a compaction parent (a
/// compaction whose sources were not deleted yet when it was interrupted),
/// as Prometheus does on reload. Returns the remaining blocks and the ULIDs
/// deleted.
fn remove_compacted_parents(blocks: Vec<Arc<Block>>) -> Result<(Vec<Arc<Block>>, Vec<String>)> {
    let parents: std::collections::HashSet<&str> = blocks
        .iter()
        .flat_map(|b| b.meta().compaction.parents.iter().map(|p| p.ulid.as_str()))
        .collect();
    if parents.is_empty() {
        return Ok((blocks, Vec::new()));
    }
    let (doomed, keep): (Vec<_>, Vec<_>) = blocks
        .iter()
        .cloned()
        .partition(|b| parents.contains(b.meta().ulid.as_str()));
    let mut removed = Vec::new();
    for b in doomed {
        tracing::info!(ulid = %b.meta().ulid, "deleting block already compacted into another");
        block::delete_block_dir(b.dir())?;
        removed.push(b.meta().ulid.clone());
    }
    Ok((keep, removed))
}

pub fn open_blocks(dir: &Path) -> Result<Vec<Arc<Block>>> {
    let mut blocks = Vec::new();
    for d in block::block_dirs(dir)? {
        blocks.push(Block::open(&d)?);
    }
    blocks.sort_by_key(|b| b.min_time());
    Ok(blocks)
}

fn replay_wal_read_only(wal_dir: &Path, head: &Head) -> Result<()> {
    let mut state = ReplayState::default();
    let mut from = 0;
    if let Some((cp_dir, idx)) = wal::checkpoint::last_checkpoint(wal_dir)? {
        let mut r = wal::WalReader::open_segments(&cp_dir, 0, None)?;
        while let Some(rec) = r.next_record()? {
            if let Ok(rec) = wal::record::decode(&rec) {
                head.replay_record(&rec, &mut state);
            }
        }
        from = idx + 1;
    }
    let Some((first, last)) = Wal::segment_range(wal_dir)? else {
        return Ok(());
    };
    if from.max(first) > last {
        return Ok(());
    }
    let mut r = wal::WalReader::open_segments(wal_dir, from.max(first), Some(last))?;
    loop {
        match r.next_record() {
            Ok(Some(rec)) => {
                if let Ok(rec) = wal::record::decode(&rec) {
                    head.replay_record(&rec, &mut state);
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "WAL replay stopped at corruption (read-only)");
                break;
            }
        }
    }
    Ok(())
}

/// Replays `wal_dir` into `head`. Returns the samples replayed and, if the
/// tail was corrupted and repaired, a description of what was cut.
fn replay_wal(
    wal_dir: &Path,
    head: &Head,
    mut state: ReplayState,
) -> Result<(ReplayState, Option<String>)> {
    if !wal_dir.exists() {
        return Ok((state, None));
    }
    let mut start_segment = 0;
    if let Some((cp_dir, idx)) = wal::checkpoint::last_checkpoint(wal_dir)? {
        let mut r = wal::WalReader::open_segments(&cp_dir, 0, None)?;
        while let Some(rec) = r.next_record()? {
            let rec = wal::record::decode(&rec)
                .map_err(|e| Error::corrupted(&cp_dir, format!("checkpoint record: {e}")))?;
            head.replay_record(&rec, &mut state);
        }
        start_segment = idx + 1;
    }
    let Some((first, last)) = Wal::segment_range(wal_dir)? else {
        return Ok((state, None));
    };
    let from = start_segment.max(first);
    if from > last {
        return Ok((state, None));
    }
    let mut repaired = None;
    let mut r = wal::WalReader::open_segments(wal_dir, from, Some(last))?;
    loop {
        match r.next_record() {
            Ok(Some(rec)) => match wal::record::decode(&rec) {
                Ok(rec) => head.replay_record(&rec, &mut state),
                Err(e) => {
                    // A record that passed its CRC but does not decode is a
                    // bug or a format we do not know; stop rather than guess.
                    return Err(Error::corrupted(wal_dir, format!("WAL record: {e}")));
                }
            },
            Ok(None) => break,
            Err(wal::ReadError::Corruption(c)) => {
                let report = wal::repair(wal_dir, &c)?;
                tracing::warn!(?report, "repaired corrupted WAL tail");
                repaired = Some(format!("{c}; {report:?}"));
                break;
            }
            Err(wal::ReadError::Io(e)) => return Err(e),
        }
    }
    Ok((state, repaired))
}
