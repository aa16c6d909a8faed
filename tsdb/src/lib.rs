//! A Prometheus-compatible time-series storage engine.
//!
//! Byte-compatible with Prometheus 2.42's on-disk formats: blocks written here
//! are read by `promtool` and Prometheus, and blocks and WALs written by
//! Prometheus are read here. See ARCHITECTURE.md for the map of modules.

pub mod backfill;
pub mod block;
pub mod chunkenc;
pub mod chunks;
pub mod compact;
pub mod db;
pub mod encoding;
pub mod error;
pub mod head;
pub mod head_chunks;
pub mod index;
pub mod labels;
pub mod memo;
pub mod meta;
pub mod series;
pub mod textparse;
pub mod tombstones;
pub mod tools;
pub mod wal;

pub use error::{Error, Result};
pub use labels::{Label, Labels, MatchType, Matcher};
