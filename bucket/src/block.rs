//! Blocks in a bucket: Thanos' layout and the order of writes and deletes
//! that keeps readers from ever seeing half a block.
//!
//! ```text
//! <bucket>[/<prefix>]/<ULID>/meta.json              written last on upload, deleted first
//!                           /index
//!                           /chunks/000001 … 00000N
//!                           /deletion-mark.json      optional, deleted last
//!                           /no-compact-mark.json    optional
//!                           /no-downsample-mark.json optional
//! ```
//!
//! A directory without `meta.json` is a partial upload (in progress, or
//! abandoned by a crash): readers ignore it and the compactor removes it once
//! it is old. Hence upload writes `chunks/*`, then `index`, then `meta.json`;
//! delete removes `meta.json` first and `deletion-mark.json` last, so an
//! interrupted delete still looks like a partial block that is marked for
//! deletion, and the next cleanup finishes it. `tombstones` are not uploaded,
//! as in Thanos: bucket blocks are immutable and deletions are rewrites.

use std::path::{Path, PathBuf};

use strata_tsdb::meta::{BlockMeta, META_FILENAME};
use ulid::Ulid;

use crate::bucket::{join_key, Bucket, Error, Result};
use crate::markers::{
    parse_marker, DeletionMark, Marker, NoCompactMark, NoDownsampleMark, DELETION_MARK_FILENAME,
    MARKER_VERSION, NO_COMPACT_MARK_FILENAME, NO_DOWNSAMPLE_MARK_FILENAME,
};
use crate::meta::{File, Meta, ThanosMeta};

pub const INDEX_FILENAME: &str = "index";
pub const CHUNKS_DIRNAME: &str = "chunks";

/// Key of a file of a block: `<ULID>/<rel>`.
pub fn block_key(id: Ulid, rel: &str) -> String {
    join_key(&id.to_string(), rel)
}

/// Options of [`upload_block_with`].
#[derive(Clone, Debug)]
pub struct UploadOptions {
    /// Refuse blocks without external labels, as Thanos' `block.Upload`
    /// does: a block without labels cannot be told apart from other
    /// streams. `false` is Thanos' `UploadPromBlock`.
    pub require_external_labels: bool,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            require_external_labels: true,
        }
    }
}

/// Uploads the block in `block_dir` (named by its ULID) with `thanos` as the
/// Thanos section, in Thanos' order: `chunks/*`, `index`, `meta.json`.
/// `files` and `upload_time` are filled in here. Returns the meta written.
/// Uploading again overwrites; the local directory is not modified.
pub async fn upload_block(bucket: &Bucket, block_dir: &Path, thanos: ThanosMeta) -> Result<Meta> {
    upload_block_with(bucket, block_dir, thanos, &UploadOptions::default()).await
}

pub async fn upload_block_with(
    bucket: &Bucket,
    block_dir: &Path,
    thanos: ThanosMeta,
    opts: &UploadOptions,
) -> Result<Meta> {
    let checked = check_local_block(block_dir)?;
    if opts.require_external_labels && thanos.labels.is_empty() {
        return Err(invalid_block(
            block_dir,
            "empty external labels are not allowed for Thanos blocks",
        ));
    }
    let id = checked.id;
    let mut meta = Meta {
        block: checked.meta,
        thanos,
    };
    meta.thanos.files = checked.files;

    for seg in &checked.segments {
        let rel = format!("{CHUNKS_DIRNAME}/{seg}");
        bucket
            .upload_file(
                &block_dir.join(CHUNKS_DIRNAME).join(seg),
                &block_key(id, &rel),
            )
            .await?;
    }
    bucket
        .upload_file(
            &block_dir.join(INDEX_FILENAME),
            &block_key(id, INDEX_FILENAME),
        )
        .await?;
    meta.thanos.upload_time = Some(chrono::Utc::now());
    // Last: from this moment on the block is visible to every reader.
    bucket
        .upload(&block_key(id, META_FILENAME), meta.to_json())
        .await?;
    tracing::debug!(bucket = bucket.name(), block = %id, "uploaded block");
    Ok(meta)
}

struct CheckedBlock {
    id: Ulid,
    meta: BlockMeta,
    /// Segment file names, sorted.
    segments: Vec<String>,
    /// Thanos' `files`: chunks, index, meta.json, sorted by path.
    files: Vec<File>,
}

fn invalid_block(dir: &Path, msg: impl Into<String>) -> Error {
    Error::InvalidBlock {
        dir: dir.to_path_buf(),
        msg: msg.into(),
    }
}

/// Validates a local block before anything is uploaded, so a broken block
/// never becomes a partial upload.
fn check_local_block(dir: &Path) -> Result<CheckedBlock> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| invalid_block(dir, "directory has no name"))?;
    let id: Ulid = name
        .parse()
        .map_err(|_| invalid_block(dir, format!("directory name {name:?} is not a ULID")))?;
    let meta_path = dir.join(META_FILENAME);
    let meta = Meta::from_json(
        &meta_path.display().to_string(),
        &std::fs::read(&meta_path).map_err(|source| Error::Local {
            op: "read",
            path: meta_path.clone(),
            source,
        })?,
    )
    .map_err(|e| invalid_block(dir, e.to_string()))?;
    if meta.block.ulid != name {
        return Err(invalid_block(
            dir,
            format!(
                "meta.json has ULID {} but the directory is {name}",
                meta.block.ulid
            ),
        ));
    }

    let stat = |p: PathBuf| {
        std::fs::metadata(&p).map_err(|source| Error::Local {
            op: "stat",
            path: p,
            source,
        })
    };
    let index = stat(dir.join(INDEX_FILENAME))?;
    if !index.is_file() {
        return Err(invalid_block(dir, "index is not a file"));
    }
    let chunks_dir = dir.join(CHUNKS_DIRNAME);
    if !stat(chunks_dir.clone())?.is_dir() {
        return Err(invalid_block(dir, "chunks is not a directory"));
    }
    let mut segments = Vec::new();
    let rd = std::fs::read_dir(&chunks_dir).map_err(|source| Error::Local {
        op: "read directory",
        path: chunks_dir.clone(),
        source,
    })?;
    let mut files = Vec::new();
    for e in rd {
        let e = e.map_err(|source| Error::Local {
            op: "read directory",
            path: chunks_dir.clone(),
            source,
        })?;
        let md = stat(e.path())?;
        let seg = e.file_name().to_string_lossy().into_owned();
        if !md.is_file() {
            return Err(invalid_block(dir, format!("chunks/{seg} is not a file")));
        }
        files.push(File {
            rel_path: format!("{CHUNKS_DIRNAME}/{seg}"),
            size_bytes: md.len() as i64,
            hash: None,
        });
        segments.push(seg);
    }
    segments.sort();
    if segments.is_empty() && meta.block.stats.num_chunks > 0 {
        return Err(invalid_block(
            dir,
            format!(
                "meta.json counts {} chunks but chunks/ is empty",
                meta.block.stats.num_chunks
            ),
        ));
    }
    files.push(File {
        rel_path: INDEX_FILENAME.to_string(),
        size_bytes: index.len() as i64,
        hash: None,
    });
    // meta.json is listed without a size: it changes when rewritten.
    files.push(File {
        rel_path: META_FILENAME.to_string(),
        ..Default::default()
    });
    files.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    Ok(CheckedBlock {
        id,
        meta: meta.block,
        segments,
        files,
    })
}

/// Reads and parses `<id>/meta.json`.
pub async fn download_meta(bucket: &Bucket, id: Ulid) -> Result<Meta> {
    Ok(download_meta_bytes(bucket, id).await?.0)
}

async fn download_meta_bytes(bucket: &Bucket, id: Ulid) -> Result<(Meta, bytes::Bytes)> {
    let key = block_key(id, META_FILENAME);
    let b = bucket.get(&key).await?;
    let m = Meta::from_json(&key, &b).map_err(|e| Error::Corrupted {
        bucket: bucket.name().to_string(),
        key,
        msg: e.msg,
    })?;
    Ok((m, b))
}

/// Downloads block `id` into `dst` (the block directory, which must not
/// exist). Files land in `<dst>.tmp-for-download` first, are fsynced and
/// the directory renamed, so `dst` only ever holds a whole block. Markers
/// are bucket state and are not downloaded. Sizes are checked against
/// `thanos.files` when the meta lists them.
pub async fn download_block(bucket: &Bucket, id: Ulid, dst: &Path) -> Result<Meta> {
    if dst.exists() {
        return Err(Error::Local {
            op: "download into",
            path: dst.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists"),
        });
    }
    let (meta, meta_bytes) = download_meta_bytes(bucket, id).await?;
    let mut tmp = dst.as_os_str().to_owned();
    tmp.push(".tmp-for-download");
    let tmp = PathBuf::from(tmp);
    let res = download_into(bucket, id, &meta, &meta_bytes, &tmp).await;
    if let Err(e) = res {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, dst).map_err(|source| Error::Local {
        op: "rename",
        path: tmp.clone(),
        source,
    })?;
    if let Some(parent) = dst.parent() {
        strata_tsdb::meta::sync_dir(parent).map_err(|e| Error::Local {
            op: "fsync",
            path: parent.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
    }
    Ok(meta)
}

async fn download_into(
    bucket: &Bucket,
    id: Ulid,
    meta: &Meta,
    meta_bytes: &[u8],
    tmp: &Path,
) -> Result<()> {
    let _ = std::fs::remove_dir_all(tmp);
    let mkdir = |p: &Path| {
        std::fs::create_dir_all(p).map_err(|source| Error::Local {
            op: "create directory",
            path: p.to_path_buf(),
            source,
        })
    };
    // A block without chunks has no chunks/ objects, but readers need the
    // directory.
    mkdir(&tmp.join(CHUNKS_DIRNAME))?;
    let prefix = format!("{id}/");
    let markers = [
        DELETION_MARK_FILENAME,
        NO_COMPACT_MARK_FILENAME,
        NO_DOWNSAMPLE_MARK_FILENAME,
    ];
    for obj in bucket.list_recursive(&id.to_string()).await? {
        let Some(rel) = obj.key.strip_prefix(&prefix) else {
            continue;
        };
        if markers.contains(&rel) || rel == META_FILENAME {
            continue;
        }
        if rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(Error::Corrupted {
                bucket: bucket.name().to_string(),
                key: obj.key.clone(),
                msg: "unsafe object name in block".into(),
            });
        }
        let local = tmp.join(rel);
        if let Some(parent) = local.parent() {
            mkdir(parent)?;
        }
        let n = bucket.download_file(&obj.key, &local).await?;
        if let Some(f) = meta.thanos.files.iter().find(|f| f.rel_path == rel) {
            if f.size_bytes != 0 && f.size_bytes as u64 != n {
                return Err(Error::Corrupted {
                    bucket: bucket.name().to_string(),
                    key: obj.key.clone(),
                    msg: format!("downloaded {n} bytes, meta.json says {}", f.size_bytes),
                });
            }
        }
    }
    // The bytes as stored, not re-encoded: the local copy is the object.
    let meta_path = tmp.join(META_FILENAME);
    strata_tsdb::meta::write_file_atomic(&tmp.join("meta.json.tmp"), &meta_path, meta_bytes)
        .map_err(|e| Error::Local {
            op: "write",
            path: meta_path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
    strata_tsdb::meta::sync_dir(tmp).map_err(|e| Error::Local {
        op: "fsync",
        path: tmp.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Writes a marker unless one exists. Returns whether it was written.
/// Thanos checks then writes too: markers are idempotent, and the first
/// writer's time is the one that counts.
async fn put_marker<M: Marker>(bucket: &Bucket, id: Ulid, marker: &M) -> Result<bool> {
    let key = block_key(id, M::FILENAME);
    if bucket.exists(&key).await? {
        tracing::warn!(bucket = bucket.name(), block = %id, marker = M::FILENAME, "marker already exists; leaving it");
        return Ok(false);
    }
    bucket.upload(&key, marker.to_json()).await?;
    tracing::info!(bucket = bucket.name(), block = %id, marker = M::FILENAME, "marked block");
    Ok(true)
}

/// Writes `<id>/deletion-mark.json` with the current time.
pub async fn mark_for_deletion(bucket: &Bucket, id: Ulid, details: &str) -> Result<bool> {
    let m = DeletionMark {
        id,
        version: MARKER_VERSION,
        details: details.to_string(),
        deletion_time: unix_now(),
    };
    put_marker(bucket, id, &m).await
}

/// Writes `<id>/no-compact-mark.json`; `reason` is one of
/// [`crate::markers::no_compact_reason`].
pub async fn mark_no_compact(
    bucket: &Bucket,
    id: Ulid,
    reason: &str,
    details: &str,
) -> Result<bool> {
    let m = NoCompactMark {
        id,
        version: MARKER_VERSION,
        details: details.to_string(),
        no_compact_time: unix_now(),
        reason: reason.to_string(),
    };
    put_marker(bucket, id, &m).await
}

/// Writes `<id>/no-downsample-mark.json`.
pub async fn mark_no_downsample(
    bucket: &Bucket,
    id: Ulid,
    reason: &str,
    details: &str,
) -> Result<bool> {
    let m = NoDownsampleMark {
        id,
        version: MARKER_VERSION,
        details: details.to_string(),
        no_downsample_time: unix_now(),
        reason: reason.to_string(),
    };
    put_marker(bucket, id, &m).await
}

/// Reads a block's marker; `Ok(None)` when there is none.
pub async fn read_marker<M: Marker>(bucket: &Bucket, id: Ulid) -> Result<Option<M>> {
    let key = block_key(id, M::FILENAME);
    match bucket.get(&key).await {
        Ok(b) => parse_marker(&b).map(Some).map_err(|msg| Error::Corrupted {
            bucket: bucket.name().to_string(),
            key,
            msg,
        }),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes block `id` in Thanos' order: `meta.json` first (the block turns
/// into a partial upload and disappears for readers), then every other
/// object, then `deletion-mark.json` last.
pub async fn delete_block(bucket: &Bucket, id: Ulid) -> Result<()> {
    let meta_key = block_key(id, META_FILENAME);
    let mark_key = block_key(id, DELETION_MARK_FILENAME);
    bucket.delete(&meta_key).await?;
    // Listed after meta.json is gone: on an eventually consistent store the
    // listing may still show it, hence the skip.
    for obj in bucket.list_recursive(&id.to_string()).await? {
        if obj.key == meta_key || obj.key == mark_key {
            continue;
        }
        bucket.delete(&obj.key).await?;
    }
    bucket.delete(&mark_key).await?;
    tracing::info!(bucket = bucket.name(), block = %id, "deleted block");
    Ok(())
}

/// IDs of every block directory in the bucket (with or without meta.json),
/// sorted, which for ULIDs is creation order.
pub async fn list_block_ids(bucket: &Bucket) -> Result<Vec<Ulid>> {
    let mut ids: Vec<Ulid> = bucket
        .list("")
        .await?
        .iter()
        .filter_map(|e| e.strip_suffix('/'))
        .filter_map(|d| d.parse().ok())
        .collect();
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tsdb/tests/fixtures/blocks/good/01M804EDBAFRRWFAHQM6D3Q9MW")
    }

    fn thanos() -> ThanosMeta {
        ThanosMeta {
            labels: BTreeMap::from([("cluster".to_string(), "eu1".to_string())]),
            source: crate::meta::source::SIDECAR.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn upload_download_delete_in_memory() {
        let b = Bucket::in_memory();
        let id: Ulid = "01M804EDBAFRRWFAHQM6D3Q9MW".parse().unwrap();
        let meta = upload_block(&b, &fixture(), thanos()).await.unwrap();
        let rels: Vec<_> = meta
            .thanos
            .files
            .iter()
            .map(|f| f.rel_path.as_str())
            .collect();
        assert_eq!(rels, vec!["chunks/000001", "index", "meta.json"]);
        assert!(meta.thanos.upload_time.is_some());
        assert_eq!(list_block_ids(&b).await.unwrap(), vec![id]);
        // tombstones are not uploaded.
        assert!(!b.exists(&block_key(id, "tombstones")).await.unwrap());

        let d = tempfile::tempdir().unwrap();
        let dst = d.path().join(id.to_string());
        let got = download_block(&b, id, &dst).await.unwrap();
        assert_eq!(got, meta);
        for f in ["index", "chunks/000001"] {
            assert_eq!(
                std::fs::read(dst.join(f)).unwrap(),
                std::fs::read(fixture().join(f)).unwrap()
            );
        }
        // The downloaded block is a valid local block for the tsdb crate.
        strata_tsdb::block::Block::open(&dst).unwrap();
        assert!(download_block(&b, id, &dst).await.is_err(), "dst exists");

        assert!(mark_for_deletion(&b, id, "test").await.unwrap());
        assert!(!mark_for_deletion(&b, id, "again").await.unwrap());
        let m: DeletionMark = read_marker(&b, id).await.unwrap().unwrap();
        assert_eq!(m.details, "test");
        delete_block(&b, id).await.unwrap();
        assert!(b.list_recursive("").await.unwrap().is_empty());
        assert!(list_block_ids(&b).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn refuses_bad_local_blocks_before_uploading_anything() {
        let b = Bucket::in_memory();
        let d = tempfile::tempdir().unwrap();
        let copy = d.path().join("01M804EDBAFRRWFAHQM6D3Q9MW");
        std::fs::create_dir_all(copy.join("chunks")).unwrap();
        std::fs::copy(fixture().join("meta.json"), copy.join("meta.json")).unwrap();
        std::fs::copy(fixture().join("chunks/000001"), copy.join("chunks/000001")).unwrap();
        let e = upload_block(&b, &copy, thanos()).await.unwrap_err();
        assert!(e.to_string().contains("index"), "{e}");

        std::fs::copy(fixture().join("index"), copy.join("index")).unwrap();
        let e = upload_block(&b, &copy, ThanosMeta::default())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("external labels"), "{e}");

        std::fs::remove_file(copy.join("chunks/000001")).unwrap();
        let e = upload_block(&b, &copy, thanos()).await.unwrap_err();
        assert!(e.to_string().contains("chunks/ is empty"), "{e}");

        let wrong = d.path().join("01M804EDBAFRRWFAHQM6D3Q9MX");
        std::fs::rename(&copy, &wrong).unwrap();
        let e = upload_block(&b, &wrong, thanos()).await.unwrap_err();
        assert!(e.to_string().contains("has ULID"), "{e}");
        assert!(b.list_recursive("").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn no_compact_marker_fields() {
        let b = Bucket::in_memory();
        let id = Ulid::new();
        assert!(
            mark_no_compact(&b, id, crate::markers::no_compact_reason::MANUAL, "why")
                .await
                .unwrap()
        );
        let m: NoCompactMark = read_marker(&b, id).await.unwrap().unwrap();
        assert_eq!(
            (m.id, m.version, m.reason.as_str(), m.details.as_str()),
            (id, 1, "manual", "why")
        );
        assert!(m.no_compact_time > 1_600_000_000);
        assert!(read_marker::<DeletionMark>(&b, id).await.unwrap().is_none());
        b.upload(&block_key(id, DELETION_MARK_FILENAME), "{")
            .await
            .unwrap();
        let e = read_marker::<DeletionMark>(&b, id).await.unwrap_err();
        assert!(e.to_string().contains("deletion-mark.json"), "{e}");
    }
}
