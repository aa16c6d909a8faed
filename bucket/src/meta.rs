//! Thanos `meta.json`: the Prometheus block meta plus a `thanos` section.
//!
//! Thanos embeds Prometheus' `BlockMeta` and appends one object, `thanos`,
//! holding the external labels, the downsampling resolution, who uploaded the
//! block, the list of files with their sizes, and the upload time. The tsdb
//! crate's [`BlockMeta`] already keeps unknown top-level fields in
//! [`BlockMeta::extra`]; [`Meta`] lifts `extra["thanos"]` into a typed
//! [`ThanosMeta`] and puts it back when writing.
//!
//! The bytes follow Thanos exactly (`Meta.Write` in Thanos'
//! `pkg/block/metadata/meta.go`): tab-indented, fields in Go struct order,
//! Go's HTML-safe string escapes, and a trailing newline. Go's `omitempty`
//! does not omit structs, so `index_stats` is always written (`{}` when
//! empty) and a missing upload time is written as Go's zero time
//! `0001-01-01T00:00:00Z`. `rewrites` and `extensions` are kept as JSON
//! values: their content round-trips, their inner key order becomes
//! alphabetical.
//!
//! [`Meta::into_block_meta`] stores the section back as a `serde_json::Value`;
//! `serde_json` maps sort keys, so a `BlockMeta` written with tsdb's own
//! `to_json` has the right content but alphabetical `thanos` keys. Write
//! through [`Meta::to_json`] / [`Meta::write_to_dir`] for Thanos' bytes.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use strata_tsdb::meta::{write_file_atomic, BlockMeta, META_FILENAME};
use ulid::Ulid;

use crate::gojson;

/// Versions of the `thanos` section Thanos understands (0 means 1: the first
/// files had no version).
pub const THANOS_META_VERSION: i32 = 1;

/// Values of [`ThanosMeta::source`], as Thanos names them.
pub mod source {
    pub const UNKNOWN: &str = "";
    pub const SIDECAR: &str = "sidecar";
    pub const RECEIVE: &str = "receive";
    pub const COMPACTOR: &str = "compactor";
    pub const COMPACTOR_REPAIR: &str = "compactor.repair";
    pub const RULER: &str = "ruler";
    pub const BUCKET_REPAIR: &str = "bucket.repair";
    pub const BUCKET_REWRITE: &str = "bucket.rewrite";
    pub const BUCKET_UPLOAD: &str = "bucket.upload";
    pub const TEST: &str = "test";
}

/// Downsampling resolutions in milliseconds.
pub mod resolution {
    pub const RAW: i64 = 0;
    pub const FIVE_MINUTES: i64 = 300_000;
    pub const ONE_HOUR: i64 = 3_600_000;
}

/// The `thanos` section of `meta.json`. Field order is Thanos' struct order
/// and decides the JSON key order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ThanosMeta {
    /// 0 (absent) or 1.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub version: i32,
    /// External labels of the producer; they identify the block stream.
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub downsample: Downsample,
    /// Who uploaded the block; see [`source`].
    #[serde(default, deserialize_with = "null_as_default")]
    pub source: String,
    /// Deprecated by `files`, still written by the Thanos sidecar.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub segment_files: Vec<String>,
    /// Every file of the block sorted by path (`chunks/*`, `index`,
    /// `meta.json`), so readers know sizes without a HEAD per object.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub files: Vec<File>,
    /// Rewrites applied by `thanos tools bucket rewrite`, kept verbatim.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub rewrites: Vec<serde_json::Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub index_stats: IndexStats,
    /// Free-form extensions (e.g. `parquet_migrated`), kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<serde_json::Value>,
    /// When meta.json was uploaded; the consistency delay counts from here.
    #[serde(default, with = "go_time")]
    pub upload_time: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Downsample {
    /// Milliseconds; see [`resolution`].
    #[serde(default)]
    pub resolution: i64,
}

/// One entry of [`ThanosMeta::files`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    pub rel_path: String,
    /// Absent for meta.json itself (its size changes when it is rewritten).
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub size_bytes: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<ObjectHash>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectHash {
    /// `"SHA256"`.
    #[serde(rename = "hashFunc")]
    pub func: String,
    /// Lower-case hex.
    pub value: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexStats {
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub series_max_size: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub chunk_max_size: i64,
}

fn is_zero_i32(x: &i32) -> bool {
    *x == 0
}

fn is_zero_i64(x: &i64) -> bool {
    *x == 0
}

/// Go writes `null` for nil maps and slices; read it as empty.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Go's `time.Time` JSON form: RFC 3339 with nanoseconds, trailing zeros
/// trimmed; the zero time stands for "unset".
mod go_time {
    use chrono::{DateTime, SecondsFormat, TimeZone, Timelike, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    const GO_ZERO: &str = "0001-01-01T00:00:00Z";

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            None => s.serialize_str(GO_ZERO),
            Some(t) => s.serialize_str(&format(t)),
        }
    }

    pub fn format(t: &DateTime<Utc>) -> String {
        // Go trims trailing zeros of the fraction digit by digit, where
        // chrono's AutoSi rounds up to 3, 6 or 9 digits.
        let mut s = t.to_rfc3339_opts(SecondsFormat::Secs, true);
        let nanos = t.nanosecond() % 1_000_000_000;
        if nanos != 0 {
            let frac = format!("{nanos:09}");
            let frac = frac.trim_end_matches('0');
            s.truncate(s.len() - 1); // the 'Z'
            s.push('.');
            s.push_str(frac);
            s.push('Z');
        }
        s
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let Some(s) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let t = DateTime::parse_from_rfc3339(&s)
            .map_err(|e| serde::de::Error::custom(format!("upload_time {s:?}: {e}")))?
            .with_timezone(&Utc);
        // Go's zero time (`time.Time{}.IsZero()`), the "unset" value.
        if Some(t) == Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).single() {
            return Ok(None);
        }
        Ok(Some(t))
    }
}

/// What went wrong reading a meta.json (bucket object or local file).
#[derive(Debug, thiserror::Error)]
#[error("{location}: {msg}")]
pub struct MetaError {
    /// The object or file, e.g. `01H…/meta.json`.
    pub location: String,
    pub msg: String,
}

/// A block's full meta: the Prometheus part and the Thanos section.
#[derive(Clone, Debug, PartialEq)]
pub struct Meta {
    /// The Prometheus part. `block.extra` never holds `thanos` here.
    pub block: BlockMeta,
    pub thanos: ThanosMeta,
}

impl Meta {
    /// Splits `extra["thanos"]` out of a Prometheus meta; a block without the
    /// section (a plain Prometheus block) gets an empty one.
    pub fn from_block_meta(mut block: BlockMeta, location: &str) -> Result<Self, MetaError> {
        let thanos = match block.extra.remove("thanos") {
            None | Some(serde_json::Value::Null) => ThanosMeta::default(),
            Some(v) => serde_json::from_value(v).map_err(|e| MetaError {
                location: location.to_string(),
                msg: format!("invalid thanos section: {e}"),
            })?,
        };
        if thanos.version != 0 && thanos.version != THANOS_META_VERSION {
            return Err(MetaError {
                location: location.to_string(),
                msg: format!("unexpected thanos section version {}", thanos.version),
            });
        }
        Ok(Meta { block, thanos })
    }

    /// Puts the section back into `extra["thanos"]` (key order is then
    /// serde_json's; see the module docs).
    pub fn into_block_meta(self) -> BlockMeta {
        let mut block = self.block;
        let v = serde_json::to_value(&self.thanos).expect("thanos section serializes");
        block.extra.insert("thanos".to_string(), v);
        block
    }

    /// Parses meta.json bytes. `location` names the object or file in errors.
    pub fn from_json(location: &str, b: &[u8]) -> Result<Self, MetaError> {
        let block = BlockMeta::from_json(Path::new(location), b).map_err(|e| MetaError {
            location: location.to_string(),
            msg: strip_location(&e.to_string(), location),
        })?;
        Self::from_block_meta(block, location)
    }

    /// The block ID. `BlockMeta::from_json` validated it, so this only fails
    /// for a `Meta` built by hand with a bad string.
    pub fn ulid(&self) -> Result<Ulid, MetaError> {
        self.block.ulid.parse().map_err(|_| MetaError {
            location: META_FILENAME.to_string(),
            msg: format!("invalid ULID {:?}", self.block.ulid),
        })
    }

    /// The bytes Thanos writes for this meta.
    pub fn to_json(&self) -> Vec<u8> {
        gojson::to_vec_indented(&MetaRepr::new(self))
    }

    /// Reads `<dir>/meta.json`.
    pub fn read_from_dir(dir: &Path) -> Result<Self, MetaError> {
        let path = dir.join(META_FILENAME);
        let location = path.display().to_string();
        let b = std::fs::read(&path).map_err(|e| MetaError {
            location: location.clone(),
            msg: e.to_string(),
        })?;
        Self::from_json(&location, &b)
    }

    /// Writes `<dir>/meta.json` through a temporary file, fsync and rename.
    pub fn write_to_dir(&self, dir: &Path) -> Result<(), MetaError> {
        let path = dir.join(META_FILENAME);
        write_file_atomic(&dir.join("meta.json.tmp"), &path, &self.to_json()).map_err(|e| {
            MetaError {
                location: path.display().to_string(),
                msg: strip_location(&e.to_string(), &path.display().to_string()),
            }
        })
    }
}

/// tsdb errors already start with the path; avoid printing it twice.
fn strip_location(msg: &str, location: &str) -> String {
    msg.strip_prefix(location)
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(msg)
        .to_string()
}

/// Borrowed view of a [`Meta`] serialized in Thanos' order: the Prometheus
/// fields, `thanos`, then any other unknown top-level fields.
struct MetaRepr<'a> {
    m: &'a Meta,
}

impl<'a> MetaRepr<'a> {
    fn new(m: &'a Meta) -> Self {
        MetaRepr { m }
    }
}

impl Serialize for MetaRepr<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        // Destructured without `..` on purpose: a field added to tsdb's
        // BlockMeta must be added here too, or this stops compiling.
        let BlockMeta {
            ulid,
            min_time,
            max_time,
            stats,
            compaction,
            version,
            extra,
        } = &self.m.block;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("ulid", ulid)?;
        map.serialize_entry("minTime", min_time)?;
        map.serialize_entry("maxTime", max_time)?;
        map.serialize_entry("stats", stats)?;
        map.serialize_entry("compaction", compaction)?;
        map.serialize_entry("version", version)?;
        map.serialize_entry("thanos", &self.m.thanos)?;
        for (k, v) in extra.iter().filter(|(k, _)| k.as_str() != "thanos") {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use strata_tsdb::meta::{BlockDesc, BlockStats, Compaction};

    fn sample() -> Meta {
        let id = "00000000050000000000000000".to_string();
        Meta {
            block: BlockMeta {
                ulid: id,
                min_time: 2424,
                max_time: 134,
                stats: BlockStats {
                    num_samples: 245,
                    num_series: 4,
                    num_chunks: 14,
                    num_tombstones: 0,
                },
                compaction: Compaction {
                    level: 123,
                    sources: vec![
                        "00000000010000000000000000".into(),
                        "00000000020000000000000000".into(),
                    ],
                    parents: vec![BlockDesc {
                        ulid: "00000000030000000000000000".into(),
                        min_time: 442,
                        max_time: 24225,
                    }],
                    ..Default::default()
                },
                version: 1,
                extra: Default::default(),
            },
            thanos: ThanosMeta {
                version: 1,
                labels: [("ext".to_string(), "lset1".to_string())].into(),
                source: source::RECEIVE.into(),
                files: vec![
                    File {
                        rel_path: "chunks/000001".into(),
                        size_bytes: 3751,
                        hash: None,
                    },
                    File {
                        rel_path: "index".into(),
                        size_bytes: 401,
                        hash: None,
                    },
                    File {
                        rel_path: "meta.json".into(),
                        ..Default::default()
                    },
                ],
                downsample: Downsample { resolution: 123144 },
                index_stats: IndexStats {
                    series_max_size: 2000,
                    chunk_max_size: 1000,
                },
                ..Default::default()
            },
        }
    }

    /// The layout of Thanos' own meta.json test (pkg/block/metadata), with
    /// the same kind of values.
    const THANOS_BYTES: &str = "{\n\t\"ulid\": \"00000000050000000000000000\",\n\t\"minTime\": 2424,\n\t\"maxTime\": 134,\n\t\"stats\": {\n\t\t\"numSamples\": 245,\n\t\t\"numSeries\": 4,\n\t\t\"numChunks\": 14\n\t},\n\t\"compaction\": {\n\t\t\"level\": 123,\n\t\t\"sources\": [\n\t\t\t\"00000000010000000000000000\",\n\t\t\t\"00000000020000000000000000\"\n\t\t],\n\t\t\"parents\": [\n\t\t\t{\n\t\t\t\t\"ulid\": \"00000000030000000000000000\",\n\t\t\t\t\"minTime\": 442,\n\t\t\t\t\"maxTime\": 24225\n\t\t\t}\n\t\t]\n\t},\n\t\"version\": 1,\n\t\"thanos\": {\n\t\t\"version\": 1,\n\t\t\"labels\": {\n\t\t\t\"ext\": \"lset1\"\n\t\t},\n\t\t\"downsample\": {\n\t\t\t\"resolution\": 123144\n\t\t},\n\t\t\"source\": \"receive\",\n\t\t\"files\": [\n\t\t\t{\n\t\t\t\t\"rel_path\": \"chunks/000001\",\n\t\t\t\t\"size_bytes\": 3751\n\t\t\t},\n\t\t\t{\n\t\t\t\t\"rel_path\": \"index\",\n\t\t\t\t\"size_bytes\": 401\n\t\t\t},\n\t\t\t{\n\t\t\t\t\"rel_path\": \"meta.json\"\n\t\t\t}\n\t\t],\n\t\t\"index_stats\": {\n\t\t\t\"series_max_size\": 2000,\n\t\t\t\"chunk_max_size\": 1000\n\t\t},\n\t\t\"upload_time\": \"0001-01-01T00:00:00Z\"\n\t}\n}\n";

    #[test]
    fn writes_thanos_bytes_and_reads_them_back() {
        let m = sample();
        assert_eq!(String::from_utf8(m.to_json()).unwrap(), THANOS_BYTES);
        let back = Meta::from_json("meta.json", THANOS_BYTES.as_bytes()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.to_json(), THANOS_BYTES.as_bytes());
    }

    #[test]
    fn upload_time_uses_go_format() {
        let mut m = sample();
        let t = chrono::Utc.with_ymd_and_hms(2024, 3, 5, 7, 8, 9).unwrap()
            + chrono::Duration::nanoseconds(120_000_000);
        m.thanos.upload_time = Some(t);
        let s = String::from_utf8(m.to_json()).unwrap();
        assert!(
            s.contains("\"upload_time\": \"2024-03-05T07:08:09.12Z\""),
            "{s}"
        );
        let back = Meta::from_json("meta.json", s.as_bytes()).unwrap();
        assert_eq!(back.thanos.upload_time, Some(t));
        // Thanos writes local-zone times too; they denote the same instant.
        let other = s.replace("2024-03-05T07:08:09.12Z", "2024-03-05T09:08:09.12+02:00");
        let back = Meta::from_json("meta.json", other.as_bytes()).unwrap();
        assert_eq!(back.thanos.upload_time, Some(t));
    }

    #[test]
    fn prometheus_block_without_section_and_go_nulls() {
        let prom =
            "{\"ulid\":\"01M804EDBAFRRWFAHQM6D3Q9MW\",\"minTime\":1,\"maxTime\":2,\"version\":1}";
        let m = Meta::from_json("x/meta.json", prom.as_bytes()).unwrap();
        assert_eq!(m.thanos, ThanosMeta::default());
        let nulls = prom.trim_end_matches('}').to_string()
            + ",\"thanos\":{\"labels\":null,\"files\":null,\"extensions\":null,\"upload_time\":\"0001-01-01T00:00:00Z\"}}";
        let m = Meta::from_json("x/meta.json", nulls.as_bytes()).unwrap();
        assert!(m.thanos.labels.is_empty() && m.thanos.files.is_empty());
        assert_eq!(m.thanos.upload_time, None);
    }

    #[test]
    fn rejects_bad_versions_naming_the_object() {
        let bad = THANOS_BYTES.replace("\t\t\"version\": 1,", "\t\t\"version\": 2,");
        let e = Meta::from_json("b/01X/meta.json", bad.as_bytes()).unwrap_err();
        assert!(e.to_string().starts_with("b/01X/meta.json: "), "{e}");
        assert!(e.to_string().contains("thanos section version 2"), "{e}");
        let e = Meta::from_json("b/01X/meta.json", b"{").unwrap_err();
        assert!(e.to_string().starts_with("b/01X/meta.json: "), "{e}");
        assert_eq!(e.to_string().matches("b/01X/meta.json").count(), 1, "{e}");
    }

    #[test]
    fn keeps_other_unknown_fields_and_escapes_like_go() {
        let mut m = sample();
        m.thanos.labels.insert("q".into(), "a<b".into());
        m.block
            .extra
            .insert("zzz".into(), serde_json::json!({"k": 1}));
        let s = String::from_utf8(m.to_json()).unwrap();
        assert!(s.contains("\"q\": \"a\\u003cb\""), "{s}");
        assert!(s.find("\"thanos\"").unwrap() < s.find("\"zzz\"").unwrap());
        assert_eq!(Meta::from_json("m", s.as_bytes()).unwrap(), m);
    }

    #[test]
    fn block_meta_round_trip_through_extra() {
        let m = sample();
        let bm = m.clone().into_block_meta();
        assert!(bm.extra.contains_key("thanos"));
        assert_eq!(Meta::from_block_meta(bm, "m").unwrap(), m);
    }

    #[test]
    fn write_and_read_dir() {
        let d = tempfile::tempdir().unwrap();
        let m = sample();
        m.write_to_dir(d.path()).unwrap();
        assert_eq!(Meta::read_from_dir(d.path()).unwrap(), m);
        assert_eq!(
            std::fs::read(d.path().join("meta.json")).unwrap(),
            THANOS_BYTES.as_bytes()
        );
    }
}
