//! `meta.json`: the description of one block, as Prometheus writes it.
//!
//! Prometheus marshals `BlockMeta` with `json.MarshalIndent(meta, "", "\t")`:
//! tab indentation, `"key": value`, fields in struct order, and no trailing
//! newline. [`BlockMeta::to_json`] reproduces that byte for byte so that a
//! block written here and one written by Prometheus differ only in their ULID.
//!
//! Unknown top-level fields are kept in [`BlockMeta::extra`] and written back
//! after `version`: this is where Thanos puts its `thanos` section (external
//! labels, downsampling resolution, source), which the bucket crate reads.
//!
//! The block time range is half-open: `[min_time, max_time)`.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

pub const META_FILENAME: &str = "meta.json";
/// The only `version` Prometheus accepts.
pub const META_VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BlockStats {
    #[serde(rename = "numSamples", default, skip_serializing_if = "is_zero")]
    pub num_samples: u64,
    #[serde(rename = "numSeries", default, skip_serializing_if = "is_zero")]
    pub num_series: u64,
    #[serde(rename = "numChunks", default, skip_serializing_if = "is_zero")]
    pub num_chunks: u64,
    #[serde(rename = "numTombstones", default, skip_serializing_if = "is_zero")]
    pub num_tombstones: u64,
}

fn is_zero(x: &u64) -> bool {
    *x == 0
}

fn is_false(x: &bool) -> bool {
    !*x
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockDesc {
    pub ulid: String,
    #[serde(rename = "minTime")]
    pub min_time: i64,
    #[serde(rename = "maxTime")]
    pub max_time: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Compaction {
    pub level: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub deletable: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<BlockDesc>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub failed: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockMeta {
    pub ulid: String,
    #[serde(rename = "minTime")]
    pub min_time: i64,
    #[serde(rename = "maxTime")]
    pub max_time: i64,
    #[serde(default)]
    pub stats: BlockStats,
    #[serde(default)]
    pub compaction: Compaction,
    pub version: u32,
    /// Fields Prometheus does not know (Thanos's `thanos` section), kept as is.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl BlockMeta {
    /// The meta of a freshly cut level-1 block: its only source is itself.
    pub fn new_level1(ulid: ulid::Ulid, min_time: i64, max_time: i64, stats: BlockStats) -> Self {
        let id = ulid.to_string();
        BlockMeta {
            ulid: id.clone(),
            min_time,
            max_time,
            stats,
            compaction: Compaction {
                level: 1,
                sources: vec![id],
                ..Default::default()
            },
            version: META_VERSION,
            extra: Default::default(),
        }
    }

    /// Exactly the bytes Go's `json.MarshalIndent(meta, "", "\t")` produces.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        // Serializing plain structs into a Vec cannot fail.
        self.serialize(&mut ser).expect("meta.json serialization");
        out
    }

    pub fn from_json(path: &Path, b: &[u8]) -> Result<Self> {
        let m: BlockMeta = serde_json::from_slice(b)
            .map_err(|e| Error::corrupted(path, format!("invalid meta.json: {e}")))?;
        if m.version != META_VERSION {
            return Err(Error::corrupted(
                path,
                format!("unexpected meta file version {}", m.version),
            ));
        }
        if m.ulid.parse::<ulid::Ulid>().is_err() {
            return Err(Error::corrupted(path, format!("invalid ULID {:?}", m.ulid)));
        }
        Ok(m)
    }

    /// Reads `<dir>/meta.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(META_FILENAME);
        let b = fs::read(&path).at(&path)?;
        Self::from_json(&path, &b)
    }

    /// Writes `<dir>/meta.json` through `meta.json.tmp`, fsync and rename, so
    /// a crash leaves either the old file or the new one.
    pub fn write(&self, dir: &Path) -> Result<u64> {
        let path = dir.join(META_FILENAME);
        let tmp = dir.join("meta.json.tmp");
        let b = self.to_json();
        write_file_atomic(&tmp, &path, &b)?;
        Ok(b.len() as u64)
    }
}

/// Writes `data` to `tmp`, fsyncs it, renames it over `dst` and fsyncs the
/// directory, so the rename itself is durable.
pub fn write_file_atomic(tmp: &Path, dst: &Path, data: &[u8]) -> Result<()> {
    {
        let mut f = fs::File::create(tmp).at(tmp)?;
        f.write_all(data).at(tmp)?;
        f.sync_all().at(tmp)?;
    }
    fs::rename(tmp, dst).at(dst)?;
    if let Some(parent) = dst.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// fsync a directory so that entries created or renamed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir).and_then(|f| f.sync_all()).at(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The meta.json promtool 2.42 wrote for a small backfill (see
    /// shared/reference/prometheus-formats.md, section 1.2).
    const PROMTOOL_META: &str = "{\n\t\"ulid\": \"01M8018MV033Y0F38EGWM7CBRD\",\n\t\"minTime\": 1700000000000,\n\t\"maxTime\": 1700000030501,\n\t\"stats\": {\n\t\t\"numSamples\": 5,\n\t\t\"numSeries\": 3,\n\t\t\"numChunks\": 3\n\t},\n\t\"compaction\": {\n\t\t\"level\": 1,\n\t\t\"sources\": [\n\t\t\t\"01M8018MV033Y0F38EGWM7CBRD\"\n\t\t]\n\t},\n\t\"version\": 1\n}";

    #[test]
    fn round_trips_promtool_bytes_exactly() {
        let m = BlockMeta::from_json(Path::new("meta.json"), PROMTOOL_META.as_bytes()).unwrap();
        assert_eq!(m.stats.num_series, 3);
        assert_eq!(m.compaction.sources, vec!["01M8018MV033Y0F38EGWM7CBRD"]);
        assert_eq!(String::from_utf8(m.to_json()).unwrap(), PROMTOOL_META);
    }

    #[test]
    fn keeps_thanos_section() {
        let with = PROMTOOL_META.trim_end_matches("\n}").to_string()
            + ",\n\t\"thanos\": {\n\t\t\"labels\": {\n\t\t\t\"cluster\": \"c1\"\n\t\t}\n\t}\n}";
        let m = BlockMeta::from_json(Path::new("meta.json"), with.as_bytes()).unwrap();
        assert!(m.extra.contains_key("thanos"));
        assert_eq!(String::from_utf8(m.to_json()).unwrap(), with);
    }

    #[test]
    fn rejects_bad_version_and_garbage_naming_the_file() {
        let bad = PROMTOOL_META.replace("\"version\": 1", "\"version\": 2");
        let e = BlockMeta::from_json(Path::new("/b/meta.json"), bad.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("/b/meta.json"), "{e}");
        let e = BlockMeta::from_json(Path::new("/b/meta.json"), b"{garbage").unwrap_err();
        assert!(e.to_string().contains("/b/meta.json"), "{e}");
    }

    #[test]
    fn write_then_read() {
        let d = tempfile::tempdir().unwrap();
        let m = BlockMeta::new_level1(ulid::Ulid::new(), 0, 7_200_000, BlockStats::default());
        m.write(d.path()).unwrap();
        assert_eq!(BlockMeta::read(d.path()).unwrap(), m);
        assert!(!d.path().join("meta.json.tmp").exists());
    }
}
