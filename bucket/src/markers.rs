//! Block markers: small JSON objects next to `meta.json` that change how
//! components treat a block without touching the (immutable) block itself.
//!
//! | object | written by | effect |
//! |---|---|---|
//! | `deletion-mark.json` | compactor retention, `tools bucket mark` | readers drop the block after a delay; the compactor deletes it after `--delete-delay` |
//! | `no-compact-mark.json` | compactor (index too big, out-of-order chunks), operators | the planner skips the block |
//! | `no-downsample-mark.json` | operators | downsampling skips the block |
//!
//! The JSON is what Thanos' `json.Marshal` writes (compact, Go escapes),
//! with times in Unix seconds. Every marker must have version 1; Thanos
//! refuses anything else, and so do we.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

use crate::gojson;

pub const DELETION_MARK_FILENAME: &str = "deletion-mark.json";
pub const NO_COMPACT_MARK_FILENAME: &str = "no-compact-mark.json";
pub const NO_DOWNSAMPLE_MARK_FILENAME: &str = "no-downsample-mark.json";
pub const MARKER_VERSION: i32 = 1;

/// Reasons Thanos records in `no-compact-mark.json`.
pub mod no_compact_reason {
    pub const MANUAL: &str = "manual";
    pub const INDEX_SIZE_EXCEEDING: &str = "index-size-exceeding";
    pub const OUT_OF_ORDER_CHUNKS: &str = "block-index-out-of-order-chunk";
    pub const DOWNSAMPLE_VERTICAL_COMPACTION: &str = "downsample-vertical-compaction";
}

/// A marker file type.
pub trait Marker: Serialize + DeserializeOwned {
    const FILENAME: &'static str;
    fn version(&self) -> i32;

    /// The marker's bytes, as Thanos writes them.
    fn to_json(&self) -> Vec<u8> {
        gojson::to_vec_compact(self)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionMark {
    #[serde(with = "ulid_str")]
    pub id: Ulid,
    pub version: i32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    /// Unix seconds.
    pub deletion_time: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoCompactMark {
    #[serde(with = "ulid_str")]
    pub id: Ulid,
    pub version: i32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    /// Unix seconds.
    pub no_compact_time: i64,
    /// See [`no_compact_reason`].
    #[serde(default)]
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoDownsampleMark {
    #[serde(with = "ulid_str")]
    pub id: Ulid,
    pub version: i32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    /// Unix seconds.
    pub no_downsample_time: i64,
    #[serde(default)]
    pub reason: String,
}

impl Marker for DeletionMark {
    const FILENAME: &'static str = DELETION_MARK_FILENAME;
    fn version(&self) -> i32 {
        self.version
    }
}

impl Marker for NoCompactMark {
    const FILENAME: &'static str = NO_COMPACT_MARK_FILENAME;
    fn version(&self) -> i32 {
        self.version
    }
}

impl Marker for NoDownsampleMark {
    const FILENAME: &'static str = NO_DOWNSAMPLE_MARK_FILENAME;
    fn version(&self) -> i32 {
        self.version
    }
}

/// Parses and validates a marker. The error text says what is wrong; the
/// caller adds the object name.
pub fn parse_marker<M: Marker>(b: &[u8]) -> Result<M, String> {
    let m: M = serde_json::from_slice(b).map_err(|e| format!("unmarshal marker JSON: {e}"))?;
    if m.version() != MARKER_VERSION {
        return Err(format!(
            "unexpected {} version {}, expected {MARKER_VERSION}",
            M::FILENAME,
            m.version()
        ));
    }
    Ok(m)
}

/// ULIDs as their 26-character string; the workspace's `ulid` has no serde
/// feature and this is the only place that needs it.
mod ulid_str {
    use super::*;

    pub fn serialize<S: Serializer>(id: &Ulid, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&id.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ulid, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|e| serde::de::Error::custom(format!("invalid ULID {s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "01M804EDBAFRRWFAHQM6D3Q9MW";

    #[test]
    fn deletion_mark_bytes() {
        let m = DeletionMark {
            id: ID.parse().unwrap(),
            version: 1,
            details: "retention <30d>".into(),
            deletion_time: 1_700_000_000,
        };
        let b = m.to_json();
        assert_eq!(
            String::from_utf8(b.clone()).unwrap(),
            format!(
                r#"{{"id":"{ID}","version":1,"details":"retention \u003c30d\u003e","deletion_time":1700000000}}"#
            )
        );
        assert_eq!(parse_marker::<DeletionMark>(&b).unwrap(), m);
        // Details are omitted when empty, like Go's omitempty.
        let m2 = DeletionMark {
            details: String::new(),
            ..m
        };
        assert!(!String::from_utf8(m2.to_json()).unwrap().contains("details"));
    }

    #[test]
    fn no_compact_mark_bytes() {
        let m = NoCompactMark {
            id: ID.parse().unwrap(),
            version: 1,
            details: "d".into(),
            no_compact_time: 5,
            reason: no_compact_reason::MANUAL.into(),
        };
        assert_eq!(
            String::from_utf8(m.to_json()).unwrap(),
            format!(
                r#"{{"id":"{ID}","version":1,"details":"d","no_compact_time":5,"reason":"manual"}}"#
            )
        );
        assert_eq!(parse_marker::<NoCompactMark>(&m.to_json()).unwrap(), m);
    }

    #[test]
    fn rejects_wrong_version_and_garbage() {
        let e = parse_marker::<DeletionMark>(
            format!(r#"{{"id":"{ID}","version":2,"deletion_time":1}}"#).as_bytes(),
        )
        .unwrap_err();
        assert!(e.contains("version 2"), "{e}");
        let e = parse_marker::<DeletionMark>(br#"{"id":"#).unwrap_err();
        assert!(e.contains("unmarshal"), "{e}");
        let e = parse_marker::<DeletionMark>(br#"{"id":"nope","version":1,"deletion_time":1}"#)
            .unwrap_err();
        assert!(e.contains("invalid ULID"), "{e}");
    }
}
