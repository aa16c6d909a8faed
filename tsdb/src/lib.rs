//! A Prometheus-compatible time-series storage engine.
//!
//! Byte-compatible with Prometheus 2.42's on-disk formats: blocks written here
//! are read by `promtool` and Prometheus, and blocks and WALs written by
//! Prometheus are read here. See ARCHITECTURE.md for the map of modules.

pub mod error;
pub mod labels;

pub use error::{Error, Result};
pub use labels::{Label, Labels, MatchType, Matcher};
