//! The shipper: uploads every finished block of the TSDB directory to the
//! bucket exactly once, like Thanos' `pkg/shipper`.
//!
//! One [`Shipper::sync`]:
//! 1. reads `<tsdb>/thanos.shipper.json` (`{"version":1,"uploaded":[…]}`); a
//!    missing or corrupt file only costs `exists` checks, because the bucket
//!    is the source of truth;
//! 2. walks the block directories in ascending `minTime` order and skips
//!    empty blocks, blocks already recorded, compacted blocks (level > 1)
//!    unless `upload_compacted`, and blocks entirely before `min_time`;
//! 3. a block whose `meta.json` is already in the bucket is only recorded;
//!    any other is uploaded with the Thanos section (external labels,
//!    `source: sidecar`, raw resolution, files), `meta.json` last;
//! 4. stops at the first failure so blocks are shipped in time order; the
//!    failed block is retried at the next sync (never skipped);
//! 5. rewrites the meta file through tmp + rename, keeping only blocks that
//!    still exist locally.
//!
//! The local block is never modified: `strata_bucket::block::upload_block`
//! builds the uploaded `meta.json` in memory, so Thanos' hard-linked
//! `thanos/upload/<ULID>` staging directory is not needed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_bucket::block::{block_key, upload_block};
use strata_bucket::meta::{resolution, source, Downsample, ThanosMeta};
use strata_bucket::Bucket;
use strata_tsdb::meta::{BlockMeta, META_FILENAME};
use ulid::Ulid;

use crate::metrics::Metrics;

/// Thanos' default `--shipper.meta-file-name`.
pub const META_FILE_NAME: &str = "thanos.shipper.json";
/// The only version of the meta file.
pub const META_VERSION: i32 = 1;

/// Errors that abort a whole sync (an upload failure does not: it is logged,
/// counted, and ends the iteration).
#[derive(Debug, thiserror::Error)]
pub enum ShipperError {
    #[error("reading blocks of {dir}: {source}")]
    Scan {
        dir: PathBuf,
        #[source]
        source: strata_tsdb::Error,
    },
    #[error("writing {path}: {source}")]
    WriteMeta {
        path: PathBuf,
        #[source]
        source: strata_tsdb::Error,
    },
}

/// `thanos.shipper.json`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShipperMeta {
    pub version: i32,
    pub uploaded: Vec<Ulid>,
}

/// The file's JSON shape (ulid has no serde support enabled here).
#[derive(serde::Serialize, serde::Deserialize)]
struct RawMeta {
    version: i32,
    #[serde(default)]
    uploaded: Vec<String>,
}

/// Reads the meta file; `None` when missing or unreadable (logged).
pub fn read_meta_file(dir: &Path) -> Option<ShipperMeta> {
    let path = dir.join(META_FILE_NAME);
    let b = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "reading shipper meta file");
            return None;
        }
    };
    let parsed = serde_json::from_slice::<RawMeta>(&b)
        .map_err(|e| e.to_string())
        .and_then(|r| {
            let uploaded = r
                .uploaded
                .iter()
                .map(|u| u.parse::<Ulid>().map_err(|e| format!("{u:?}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ShipperMeta {
                version: r.version,
                uploaded,
            })
        });
    match parsed {
        Ok(m) if m.version == META_VERSION => Some(m),
        Ok(m) => {
            tracing::warn!(path = %path.display(), version = m.version, "unexpected shipper meta file version; ignoring it");
            None
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "corrupt shipper meta file; ignoring it");
            None
        }
    }
}

/// Writes the meta file atomically, tab-indented like Go's `json.MarshalIndent(…, "", "\t")`.
pub fn write_meta_file(dir: &Path, m: &ShipperMeta) -> Result<(), ShipperError> {
    let path = dir.join(META_FILE_NAME);
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    let raw = RawMeta {
        version: m.version,
        uploaded: m.uploaded.iter().map(Ulid::to_string).collect(),
    };
    serde::Serialize::serialize(&raw, &mut ser).map_err(|e| ShipperError::WriteMeta {
        path: path.clone(),
        source: strata_tsdb::Error::Invalid(e.to_string()),
    })?;
    let tmp = dir.join(format!("{META_FILE_NAME}.tmp"));
    strata_tsdb::meta::write_file_atomic(&tmp, &path, &buf)
        .map_err(|source| ShipperError::WriteMeta { path, source })
}

/// Shipper options.
#[derive(Clone, Debug, Default)]
pub struct ShipperOptions {
    /// Also upload blocks of compaction level > 1 (`--shipper.upload-compacted`).
    pub upload_compacted: bool,
    /// Blocks whose data all lies before this (ms) are not shipped (`--min-time`).
    pub min_time: Option<i64>,
}

/// What one sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Blocks uploaded now.
    pub uploaded: Vec<Ulid>,
    /// Blocks found in the bucket and only recorded.
    pub recorded: Vec<Ulid>,
    /// Upload failures (0 or 1: the iteration stops at the first).
    pub failed: usize,
}

/// Ships one TSDB directory to one bucket.
pub struct Shipper {
    dir: PathBuf,
    bucket: Bucket,
    labels: Arc<dyn Fn() -> Vec<(String, String)> + Send + Sync>,
    opts: ShipperOptions,
    metrics: Arc<Metrics>,
}

impl Shipper {
    /// `labels` is called at every upload: the external labels as last read
    /// from Prometheus.
    pub fn new(
        dir: impl Into<PathBuf>,
        bucket: Bucket,
        labels: Arc<dyn Fn() -> Vec<(String, String)> + Send + Sync>,
        opts: ShipperOptions,
        metrics: Arc<Metrics>,
    ) -> Self {
        Shipper {
            dir: dir.into(),
            bucket,
            labels,
            opts,
            metrics,
        }
    }

    /// The metrics this shipper updates.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Block metas of the directory, ascending by `minTime` (then ULID).
    /// Directories without a readable `meta.json` are in progress or broken:
    /// skipped with a log line.
    fn local_blocks(&self) -> Result<Vec<(PathBuf, BlockMeta)>, ShipperError> {
        let dirs =
            strata_tsdb::block::block_dirs(&self.dir).map_err(|source| ShipperError::Scan {
                dir: self.dir.clone(),
                source,
            })?;
        let mut out = Vec::new();
        for d in dirs {
            if !d.join(META_FILENAME).is_file() {
                continue;
            }
            match BlockMeta::read(&d) {
                Ok(m) => out.push((d, m)),
                Err(e) => {
                    tracing::warn!(dir = %d.display(), error = %e, "skipping block with unreadable meta.json")
                }
            }
        }
        out.sort_by(|a, b| (a.1.min_time, &a.1.ulid).cmp(&(b.1.min_time, &b.1.ulid)));
        Ok(out)
    }

    /// One pass; see the module docs.
    pub async fn sync(&self) -> Result<SyncStats, ShipperError> {
        let recorded: BTreeSet<Ulid> = read_meta_file(&self.dir)
            .map(|m| m.uploaded.into_iter().collect())
            .unwrap_or_default();
        let blocks = self.local_blocks()?;
        let mut stats = SyncStats::default();
        // Rebuilt from what still exists locally, in shipping order.
        let mut uploaded: Vec<Ulid> = Vec::new();
        let mut stopped = false;
        for (dir, meta) in &blocks {
            let Ok(id) = meta.ulid.parse::<Ulid>() else {
                continue;
            };
            if recorded.contains(&id) {
                uploaded.push(id);
                continue;
            }
            if stopped || meta.stats.num_samples == 0 {
                continue;
            }
            if meta.compaction.level > 1 && !self.opts.upload_compacted {
                continue;
            }
            if self.opts.min_time.is_some_and(|mt| meta.max_time <= mt) {
                continue;
            }
            match self.ship(id, dir).await {
                Ok(true) => {
                    stats.uploaded.push(id);
                    uploaded.push(id);
                }
                Ok(false) => {
                    stats.recorded.push(id);
                    uploaded.push(id);
                }
                Err(e) => {
                    // Later blocks wait, so the bucket always holds a prefix
                    // in time order; this one is retried next sync.
                    tracing::error!(block = %id, error = %e, "shipping block failed; retrying at the next sync");
                    self.metrics.inc_upload_failures();
                    stats.failed += 1;
                    stopped = true;
                }
            }
        }
        write_meta_file(
            &self.dir,
            &ShipperMeta {
                version: META_VERSION,
                uploaded,
            },
        )?;
        Ok(stats)
    }

    /// Uploads one block; `Ok(false)` when it was already in the bucket.
    async fn ship(&self, id: Ulid, dir: &Path) -> Result<bool, strata_bucket::Error> {
        if self.bucket.exists(&block_key(id, META_FILENAME)).await? {
            tracing::info!(block = %id, "block already in the bucket; recording it");
            return Ok(false);
        }
        let thanos = ThanosMeta {
            labels: (self.labels)().into_iter().collect(),
            downsample: Downsample {
                resolution: resolution::RAW,
            },
            source: source::SIDECAR.into(),
            segment_files: segment_files(dir),
            ..Default::default()
        };
        upload_block(&self.bucket, dir, thanos).await?;
        self.metrics.inc_uploads();
        tracing::info!(block = %id, "uploaded block");
        Ok(true)
    }
}

/// Names of the chunk segment files, sorted (Thanos' deprecated `segment_files`).
fn segment_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("chunks"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_file_round_trip_and_format() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_meta_file(dir.path()), None);
        let id: Ulid = "01M804EDBAFRRWFAHQM6D3Q9MW".parse().unwrap();
        let m = ShipperMeta {
            version: 1,
            uploaded: vec![id],
        };
        write_meta_file(dir.path(), &m).unwrap();
        let text = std::fs::read_to_string(dir.path().join(META_FILE_NAME)).unwrap();
        assert_eq!(
            text,
            "{\n\t\"version\": 1,\n\t\"uploaded\": [\n\t\t\"01M804EDBAFRRWFAHQM6D3Q9MW\"\n\t]\n}"
        );
        assert_eq!(read_meta_file(dir.path()), Some(m));
        std::fs::write(dir.path().join(META_FILE_NAME), "{garbage").unwrap();
        assert_eq!(read_meta_file(dir.path()), None);
    }
}
