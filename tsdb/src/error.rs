//! The crate's error type.
//!
//! Every error that comes from a file names that file: a user looking at
//! "corrupted block" must know which of thousands of files to look at.

use std::io;
use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system error on a file.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file whose bytes do not follow the format: bad magic, bad CRC,
    /// truncated record, reference out of range.
    #[error("{}: corrupted: {msg}", path.display())]
    Corrupted { path: PathBuf, msg: String },
    /// A sample older than the head's append window ("out of bounds").
    #[error("out of bounds")]
    OutOfBounds,
    /// A sample older than the newest sample of its series.
    #[error("out of order sample")]
    OutOfOrderSample,
    /// A sample with the timestamp of the newest one but another value.
    #[error("duplicate sample for timestamp")]
    DuplicateSampleForTimestamp,
    /// A label set that the index cannot hold (empty, duplicate names, ...).
    #[error("invalid series labels: {0}")]
    InvalidLabels(String),
    /// An append by series ref for a ref the head does not hold (never
    /// handed out, or its series was removed by head truncation since).
    /// The caller appends by labels instead and caches the new ref.
    #[error("unknown series ref {0}")]
    UnknownSeriesRef(u64),
    /// A caller error: bad arguments.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Matcher(#[from] crate::labels::MatcherError),
}

impl Error {
    pub fn io(path: impl AsRef<Path>, source: io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub fn corrupted(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Corrupted {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }
}

/// Adds the path to an `io::Result`.
pub trait IoContext<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
