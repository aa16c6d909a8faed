//! [`MetaFetcher`]: the set of blocks in a bucket, as the store gateway,
//! the compactor and the tools see it.
//!
//! One sync lists the whole bucket recursively (Thanos' "recursive" block
//! discovery): one paginated LIST tells, for every block directory, whether
//! it has `meta.json` (and when that was written) and which markers it has.
//! Then only what changed is read:
//!
//! - `meta.json` is fetched (bounded concurrency) for blocks not cached, or
//!   whose `meta.json` has a new modification time. Metas are cached in
//!   memory and, optionally, on disk (`<cache_dir>/<ULID>/meta.json`, as
//!   Thanos' `meta-syncer` dir), so a restart does not re-read every block.
//! - `deletion-mark.json` is fetched only for blocks that have one.
//!
//! Then Thanos' filters, in Thanos' order:
//!
//! 1. Partial uploads (no `meta.json`) are reported, not loaded. One whose
//!    last activity (newest object, or its ULID time) is younger than the
//!    consistency delay is `pending`: probably still uploading.
//! 2. Consistency delay: a block whose `meta.json` was uploaded (Thanos'
//!    `upload_time`, else the ULID time) less than `consistency_delay` ago is
//!    `too_fresh`, unless the compactor or a repair wrote it.
//! 3. Deletion marks: every mark is reported; with
//!    `ignore_deletion_marks_delay = Some(d)` a block marked more than `d`
//!    ago is dropped from `metas` (store: 24h; compactor: delete-delay/2).
//!
//! Per-block read failures are collected in [`FetchResult::errors`]: the
//! view is then incomplete, and callers that delete things must not act on
//! it (Thanos refuses too). A failed listing fails the whole fetch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use strata_tsdb::meta::META_FILENAME;
use ulid::Ulid;

use crate::block::block_key;
use crate::bucket::{Bucket, Error, Result};
use crate::markers::{
    parse_marker, DeletionMark, DELETION_MARK_FILENAME, NO_COMPACT_MARK_FILENAME,
    NO_DOWNSAMPLE_MARK_FILENAME,
};
use crate::meta::{source, Meta};

/// Thanos' `--block-meta-fetch-concurrency` default.
pub const DEFAULT_CONCURRENCY: usize = 32;

#[derive(Clone, Debug)]
pub struct FetcherOptions {
    /// meta.json / marker reads in flight at once.
    pub concurrency: usize,
    /// Blocks younger than this are not loaded yet (Thanos'
    /// `--consistency-delay`).
    pub consistency_delay: Duration,
    /// `None`: report deletion-marked blocks but keep them in `metas`.
    /// `Some(d)`: drop blocks marked more than `d` ago.
    pub ignore_deletion_marks_delay: Option<Duration>,
    /// Directory for the on-disk meta cache; `None` for memory only.
    pub cache_dir: Option<PathBuf>,
}

impl Default for FetcherOptions {
    fn default() -> Self {
        FetcherOptions {
            concurrency: DEFAULT_CONCURRENCY,
            consistency_delay: Duration::ZERO,
            ignore_deletion_marks_delay: None,
            cache_dir: None,
        }
    }
}

/// The outcome of one [`MetaFetcher::fetch`].
#[derive(Debug, Default)]
pub struct FetchResult {
    /// Loaded blocks that passed every filter.
    pub metas: BTreeMap<Ulid, Arc<Meta>>,
    /// Directories without meta.json, older than the consistency delay:
    /// abandoned uploads (or deletes interrupted after meta.json went).
    pub partial: Vec<Ulid>,
    /// Directories without meta.json, younger than the consistency delay.
    pub pending: Vec<Ulid>,
    /// Blocks with a meta.json uploaded less than the consistency delay ago.
    pub too_fresh: Vec<Ulid>,
    /// Blocks whose meta.json does not parse; the message says why.
    pub corrupted: BTreeMap<Ulid, String>,
    /// Every deletion mark found on a loaded block, whether or not the
    /// block was dropped for it.
    pub marked_for_deletion: BTreeMap<Ulid, DeletionMark>,
    /// Blocks with a `no-compact-mark.json` (not read, only listed).
    pub no_compact: BTreeSet<Ulid>,
    /// Blocks with a `no-downsample-mark.json`.
    pub no_downsample: BTreeSet<Ulid>,
    /// Blocks that could not be read; the view is incomplete.
    pub errors: Vec<(Ulid, Error)>,
    /// meta.json objects read from the bucket in this fetch (the rest came
    /// from the caches).
    pub meta_reads: usize,
}

impl FetchResult {
    /// True when every block could be read: safe to base deletions on.
    pub fn is_complete(&self) -> bool {
        self.errors.is_empty()
    }
}

/// What the listing tells about one block directory.
#[derive(Debug, Default)]
struct Listed {
    meta_modified: Option<chrono::DateTime<chrono::Utc>>,
    deletion_mark_modified: Option<chrono::DateTime<chrono::Utc>>,
    no_compact: bool,
    no_downsample: bool,
    /// Newest modification among all its objects.
    newest: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Clone)]
struct Cached<T> {
    value: T,
    modified: chrono::DateTime<chrono::Utc>,
}

#[derive(Default)]
struct Caches {
    metas: HashMap<Ulid, Cached<Arc<Meta>>>,
    marks: HashMap<Ulid, Cached<DeletionMark>>,
}

/// Synchronizes block metas from a bucket. One instance per bucket; clones
/// of `Arc<MetaFetcher>` share the cache.
pub struct MetaFetcher {
    bucket: Bucket,
    opts: FetcherOptions,
    caches: parking_lot::Mutex<Caches>,
    /// One fetch at a time: concurrent callers would only repeat the work.
    running: tokio::sync::Mutex<()>,
}

enum Loaded {
    Meta(Arc<Meta>, bool),
    Vanished,
    Corrupted(String),
    Failed(Error),
}

impl MetaFetcher {
    /// Creates the fetcher; creates `cache_dir` when set.
    pub fn new(bucket: Bucket, opts: FetcherOptions) -> Result<Self> {
        if let Some(dir) = &opts.cache_dir {
            std::fs::create_dir_all(dir).map_err(|source| Error::Local {
                op: "create directory",
                path: dir.clone(),
                source,
            })?;
        }
        Ok(MetaFetcher {
            bucket,
            opts: FetcherOptions {
                concurrency: opts.concurrency.max(1),
                ..opts
            },
            caches: Default::default(),
            running: Default::default(),
        })
    }

    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// Lists the bucket and returns the current view of its blocks.
    pub async fn fetch(&self) -> Result<FetchResult> {
        let _one = self.running.lock().await;
        let now = SystemTime::now();
        let listed = self.list().await?;
        let mut res = FetchResult::default();

        let mut with_meta = Vec::new();
        for (id, l) in &listed {
            if l.no_compact {
                res.no_compact.insert(*id);
            }
            if l.no_downsample {
                res.no_downsample.insert(*id);
            }
            match l.meta_modified {
                Some(modified) => with_meta.push((*id, modified)),
                None => {
                    // Last activity: a slow upload of an old block is not
                    // abandoned while its objects keep arriving.
                    let ulid_ms = id.timestamp_ms();
                    let newest_ms = l
                        .newest
                        .map(|t| t.timestamp_millis().max(0) as u64)
                        .unwrap_or(0);
                    if age(now, ulid_ms.max(newest_ms)) >= self.opts.consistency_delay {
                        res.partial.push(*id);
                    } else {
                        res.pending.push(*id);
                    }
                }
            }
        }

        let loads: Vec<(Ulid, Loaded)> = futures::stream::iter(with_meta)
            .map(|(id, modified)| async move { (id, self.load_meta(id, modified).await) })
            .buffer_unordered(self.opts.concurrency)
            .collect()
            .await;

        let mut loaded = BTreeMap::new();
        for (id, l) in loads {
            match l {
                Loaded::Meta(m, from_bucket) => {
                    res.meta_reads += usize::from(from_bucket);
                    loaded.insert(id, m);
                }
                // Deleted between the listing and the read: it is a partial
                // block now.
                Loaded::Vanished => res.partial.push(id),
                Loaded::Corrupted(msg) => {
                    res.corrupted.insert(id, msg);
                }
                Loaded::Failed(e) => res.errors.push((id, e)),
            }
        }

        // Consistency delay, as Thanos' ConsistencyDelayMetaFilter.
        loaded.retain(|id, m| {
            let written_ms = match m.thanos.upload_time {
                Some(t) => t.timestamp_millis().max(0) as u64,
                None => id.timestamp_ms(),
            };
            let exempt = matches!(
                m.thanos.source.as_str(),
                source::COMPACTOR | source::COMPACTOR_REPAIR | source::BUCKET_REPAIR
            );
            let fresh = age(now, written_ms) < self.opts.consistency_delay;
            if fresh && !exempt {
                res.too_fresh.push(*id);
                return false;
            }
            true
        });

        // Deletion marks of the loaded blocks.
        let marked: Vec<(Ulid, chrono::DateTime<chrono::Utc>)> = loaded
            .keys()
            .filter_map(|id| Some((*id, listed.get(id)?.deletion_mark_modified?)))
            .collect();
        let marks: Vec<(Ulid, Result<Option<DeletionMark>>)> = futures::stream::iter(marked)
            .map(|(id, modified)| async move { (id, self.load_mark(id, modified).await) })
            .buffer_unordered(self.opts.concurrency)
            .collect()
            .await;
        for (id, m) in marks {
            match m {
                Ok(Some(mark)) => {
                    res.marked_for_deletion.insert(id, mark);
                }
                Ok(None) => {}
                Err(e) => res.errors.push((id, e)),
            }
        }
        if let Some(delay) = self.opts.ignore_deletion_marks_delay {
            let now_s = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
            for (id, mark) in &res.marked_for_deletion {
                if now_s.saturating_sub(mark.deletion_time) >= delay.as_secs() as i64 {
                    loaded.remove(id);
                }
            }
        }

        res.partial.sort();
        res.pending.sort();
        res.too_fresh.sort();
        res.errors.sort_by_key(|(id, _)| *id);
        if res.is_complete() {
            self.prune(&listed);
        }
        res.metas = loaded;
        tracing::debug!(
            bucket = self.bucket.name(),
            blocks = res.metas.len(),
            partial = res.partial.len(),
            meta_reads = res.meta_reads,
            errors = res.errors.len(),
            "fetched block metas"
        );
        Ok(res)
    }

    async fn list(&self) -> Result<BTreeMap<Ulid, Listed>> {
        let mut out: BTreeMap<Ulid, Listed> = BTreeMap::new();
        for obj in self.bucket.list_recursive("").await? {
            let Some((dir, rel)) = obj.key.split_once('/') else {
                continue;
            };
            let Ok(id) = dir.parse::<Ulid>() else {
                continue;
            };
            let l = out.entry(id).or_default();
            l.newest = l.newest.max(Some(obj.last_modified));
            match rel {
                META_FILENAME => l.meta_modified = Some(obj.last_modified),
                DELETION_MARK_FILENAME => l.deletion_mark_modified = Some(obj.last_modified),
                NO_COMPACT_MARK_FILENAME => l.no_compact = true,
                NO_DOWNSAMPLE_MARK_FILENAME => l.no_downsample = true,
                _ => {}
            }
        }
        Ok(out)
    }

    async fn load_meta(&self, id: Ulid, modified: chrono::DateTime<chrono::Utc>) -> Loaded {
        if let Some(c) = self.caches.lock().metas.get(&id) {
            if c.modified == modified {
                return Loaded::Meta(c.value.clone(), false);
            }
        }
        let cache_path = self.opts.cache_dir.as_ref().map(|d| d.join(id.to_string()));
        // The disk cache has no modification time: trust it only when the
        // memory cache has never seen this block (i.e. after a restart).
        let seen = self.caches.lock().metas.contains_key(&id);
        if let (Some(dir), false) = (&cache_path, seen) {
            if let Ok(m) = Meta::read_from_dir(dir) {
                if m.block.ulid == id.to_string() {
                    let m = Arc::new(m);
                    self.remember(id, m.clone(), modified);
                    return Loaded::Meta(m, false);
                }
            }
        }

        let key = block_key(id, META_FILENAME);
        let b = match self.bucket.get(&key).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Loaded::Vanished,
            Err(e) => return Loaded::Failed(e),
        };
        let m = match Meta::from_json(&key, &b) {
            Ok(m) => m,
            Err(e) => return Loaded::Corrupted(e.msg),
        };
        if m.block.ulid != id.to_string() {
            return Loaded::Corrupted(format!("meta.json is for block {}", m.block.ulid));
        }
        if let Some(dir) = &cache_path {
            // Best effort: a failed cache write costs one read next time.
            let written = std::fs::create_dir_all(dir)
                .map_err(|e| e.to_string())
                .and_then(|_| m.write_to_dir(dir).map_err(|e| e.to_string()));
            if let Err(e) = written {
                tracing::warn!(dir = %dir.display(), error = %e, "caching meta.json on disk failed");
            }
        }
        let m = Arc::new(m);
        self.remember(id, m.clone(), modified);
        Loaded::Meta(m, true)
    }

    fn remember(&self, id: Ulid, m: Arc<Meta>, modified: chrono::DateTime<chrono::Utc>) {
        self.caches
            .lock()
            .metas
            .insert(id, Cached { value: m, modified });
    }

    async fn load_mark(
        &self,
        id: Ulid,
        modified: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<DeletionMark>> {
        if let Some(c) = self.caches.lock().marks.get(&id) {
            if c.modified == modified {
                return Ok(Some(c.value.clone()));
            }
        }
        let key = block_key(id, DELETION_MARK_FILENAME);
        let b = match self.bucket.get(&key).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        match parse_marker::<DeletionMark>(&b) {
            Ok(m) => {
                self.caches.lock().marks.insert(
                    id,
                    Cached {
                        value: m.clone(),
                        modified,
                    },
                );
                Ok(Some(m))
            }
            Err(msg) => {
                // As Thanos: a partially written mark is ignored (with a
                // warning) rather than failing the whole view.
                tracing::warn!(bucket = self.bucket.name(), block = %id, error = %msg, "ignoring unreadable deletion-mark.json");
                Ok(None)
            }
        }
    }

    /// Forgets blocks that are gone from the bucket, in memory and on disk.
    fn prune(&self, listed: &BTreeMap<Ulid, Listed>) {
        {
            let mut c = self.caches.lock();
            c.metas
                .retain(|id, _| listed.get(id).is_some_and(|l| l.meta_modified.is_some()));
            c.marks.retain(|id, _| {
                listed
                    .get(id)
                    .is_some_and(|l| l.deletion_mark_modified.is_some())
            });
        }
        let Some(dir) = &self.opts.cache_dir else {
            return;
        };
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(id) = name.to_str().and_then(|n| n.parse::<Ulid>().ok()) else {
                continue;
            };
            if listed.get(&id).is_none_or(|l| l.meta_modified.is_none()) {
                if let Err(err) = std::fs::remove_dir_all(e.path()) {
                    tracing::warn!(dir = %e.path().display(), error = %err, "removing cached meta failed");
                }
            }
        }
    }
}

/// How long ago `ms` (Unix milliseconds) was; zero for future times.
fn age(now: SystemTime, ms: u64) -> Duration {
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    Duration::from_millis(now_ms.saturating_sub(ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{mark_for_deletion, mark_no_compact, upload_block};
    use crate::meta::ThanosMeta;
    use std::path::Path;

    /// A copy of the fixture block under a new ULID with the given time.
    fn block_at(root: &Path, ms: u64) -> (Ulid, PathBuf) {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tsdb/tests/fixtures/blocks/good/01M804EDBAFRRWFAHQM6D3Q9MW");
        let id = Ulid::from_parts(ms, rand_bits());
        let dir = root.join(id.to_string());
        std::fs::create_dir_all(dir.join("chunks")).unwrap();
        for f in ["index", "chunks/000001"] {
            std::fs::copy(fixture.join(f), dir.join(f)).unwrap();
        }
        let mut m = strata_tsdb::meta::BlockMeta::read(&fixture).unwrap();
        m.ulid = id.to_string();
        m.write(&dir).unwrap();
        (id, dir)
    }

    fn rand_bits() -> u128 {
        Ulid::new().random()
    }

    fn labels() -> ThanosMeta {
        ThanosMeta {
            labels: [("a".to_string(), "1".to_string())].into(),
            ..Default::default()
        }
    }

    fn now_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    #[tokio::test]
    async fn partial_fresh_marked_and_cached() {
        let b = Bucket::in_memory();
        let d = tempfile::tempdir().unwrap();
        let old = now_ms() - 3_600_000;
        let (a, dir_a) = block_at(d.path(), old);
        let (c, dir_c) = block_at(d.path(), old);
        upload_block(&b, &dir_a, labels()).await.unwrap();
        upload_block(&b, &dir_c, labels()).await.unwrap();
        // A partial upload: chunks and index but no meta.json.
        let (p, dir_p) = block_at(d.path(), old);
        b.upload_file(&dir_p.join("index"), &block_key(p, "index"))
            .await
            .unwrap();

        let f = MetaFetcher::new(b.clone(), FetcherOptions::default()).unwrap();
        let r = f.fetch().await.unwrap();
        assert_eq!(r.metas.keys().copied().collect::<Vec<_>>(), {
            let mut v = vec![a, c];
            v.sort();
            v
        });
        assert_eq!(r.partial, vec![p]);
        assert_eq!(r.meta_reads, 2);
        assert!(r.is_complete());

        // Unchanged blocks are not read again.
        let r = f.fetch().await.unwrap();
        assert_eq!(r.meta_reads, 0);
        assert_eq!(r.metas.len(), 2);

        // Marked blocks are reported; with a delay of zero they are dropped.
        mark_for_deletion(&b, a, "x").await.unwrap();
        mark_no_compact(&b, c, "manual", "").await.unwrap();
        let r = f.fetch().await.unwrap();
        assert!(r.marked_for_deletion.contains_key(&a));
        assert!(r.metas.contains_key(&a));
        assert!(r.no_compact.contains(&c));
        let hiding = MetaFetcher::new(
            b.clone(),
            FetcherOptions {
                ignore_deletion_marks_delay: Some(Duration::ZERO),
                ..Default::default()
            },
        )
        .unwrap();
        let r = hiding.fetch().await.unwrap();
        assert!(!r.metas.contains_key(&a) && r.metas.contains_key(&c));
        assert!(r.marked_for_deletion.contains_key(&a));
        let waiting = MetaFetcher::new(
            b.clone(),
            FetcherOptions {
                ignore_deletion_marks_delay: Some(Duration::from_secs(3600)),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(waiting.fetch().await.unwrap().metas.contains_key(&a));

        // A consistency delay hides the just-uploaded blocks (upload_time is
        // now) and turns the fresh partial upload into "pending".
        let strict = MetaFetcher::new(
            b.clone(),
            FetcherOptions {
                consistency_delay: Duration::from_secs(1800),
                ..Default::default()
            },
        )
        .unwrap();
        let r = strict.fetch().await.unwrap();
        assert!(r.metas.is_empty());
        assert_eq!(r.too_fresh.len(), 2);
        assert_eq!(r.pending, vec![p]);
        assert!(r.partial.is_empty());
    }

    #[tokio::test]
    async fn compactor_blocks_skip_the_consistency_delay_and_corrupt_metas_are_reported() {
        let b = Bucket::in_memory();
        let d = tempfile::tempdir().unwrap();
        let (a, dir_a) = block_at(d.path(), now_ms());
        let t = ThanosMeta {
            source: source::COMPACTOR.into(),
            ..labels()
        };
        upload_block(&b, &dir_a, t).await.unwrap();
        let bad = Ulid::from_parts(now_ms() - 10_000, rand_bits());
        b.upload(&block_key(bad, META_FILENAME), "{not json")
            .await
            .unwrap();
        let f = MetaFetcher::new(
            b,
            FetcherOptions {
                consistency_delay: Duration::from_secs(1800),
                ..Default::default()
            },
        )
        .unwrap();
        let r = f.fetch().await.unwrap();
        assert!(r.metas.contains_key(&a));
        assert!(r.corrupted.contains_key(&bad), "{r:?}");
    }

    #[tokio::test]
    async fn disk_cache_survives_a_restart_and_is_pruned() {
        let b = Bucket::in_memory();
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("meta-syncer");
        let (a, dir_a) = block_at(&d.path().join("blocks"), now_ms() - 60_000);
        upload_block(&b, &dir_a, labels()).await.unwrap();
        let opts = FetcherOptions {
            cache_dir: Some(cache.clone()),
            ..Default::default()
        };
        let r = MetaFetcher::new(b.clone(), opts.clone())
            .unwrap()
            .fetch()
            .await
            .unwrap();
        assert_eq!(r.meta_reads, 1);
        assert!(cache.join(a.to_string()).join("meta.json").exists());

        let again = MetaFetcher::new(b.clone(), opts.clone()).unwrap();
        let r = again.fetch().await.unwrap();
        assert_eq!((r.meta_reads, r.metas.len()), (0, 1));

        crate::block::delete_block(&b, a).await.unwrap();
        let r = again.fetch().await.unwrap();
        assert!(r.metas.is_empty());
        assert!(!cache.join(a.to_string()).exists());
    }
}
