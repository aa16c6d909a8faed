//! The storage the scrape loops append to.
//!
//! The loops depend on two small traits instead of on [`Db`] directly, so
//! the same loops can later feed other sinks (an agent-mode WAL, remote
//! write) and so the append-error classification lives in one place.
//!
//! Calls are blocking: `strata-tsdb` does no async (see ARCHITECTURE.md),
//! and the loops call these from `spawn_blocking`.

use strata_tsdb::db::Db;
use strata_tsdb::labels::Labels;

/// Why one sample was not appended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// Older than the newest sample of its series.
    #[error("out of order sample")]
    OutOfOrder,
    /// Same timestamp as the newest sample, other value.
    #[error("duplicate sample for timestamp")]
    Duplicate,
    /// Outside the storage's append window (too old, or too far ahead).
    #[error("out of bounds")]
    OutOfBounds,
    /// Anything else (invalid labels, I/O): fails the scrape.
    #[error("{0}")]
    Other(String),
}

/// A batch of appends, committed or rolled back as a whole.
pub trait ScrapeAppender {
    fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<(), AppendError>;
    /// Like `append`, given the ref this storage returned for `labels`
    /// earlier (0: none), which lets it skip looking the series up by its
    /// labels. Returns the ref to keep for the next call (0: the storage has
    /// no refs). A storage that no longer knows the ref uses the labels.
    fn append_cached(
        &mut self,
        series_ref: u64,
        labels: &Labels,
        t: i64,
        v: f64,
    ) -> Result<u64, AppendError> {
        let _ = series_ref;
        self.append(labels, t, v).map(|()| 0)
    }
    /// Makes the batch durable and visible.
    fn commit(self: Box<Self>) -> Result<(), String>;
    /// Discards the batch.
    fn rollback(self: Box<Self>);
}

/// Something the scrape loops can append to.
pub trait Appendable: Send + Sync + 'static {
    fn appender(&self) -> Box<dyn ScrapeAppender + '_>;
}

struct DbAppender<'a>(strata_tsdb::head::Appender<'a>);

fn classify(e: strata_tsdb::Error) -> AppendError {
    use strata_tsdb::Error;
    match e {
        Error::OutOfOrderSample => AppendError::OutOfOrder,
        Error::DuplicateSampleForTimestamp => AppendError::Duplicate,
        Error::OutOfBounds => AppendError::OutOfBounds,
        e => AppendError::Other(e.to_string()),
    }
}

impl ScrapeAppender for DbAppender<'_> {
    fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<(), AppendError> {
        self.0.append(labels, t, v).map(|_| ()).map_err(classify)
    }

    fn append_cached(
        &mut self,
        series_ref: u64,
        labels: &Labels,
        t: i64,
        v: f64,
    ) -> Result<u64, AppendError> {
        if series_ref != 0 {
            match self.0.append_ref(series_ref, t, v) {
                Ok(()) => return Ok(series_ref),
                // Removed by head truncation since: look it up (or create
                // it again) by its labels.
                Err(strata_tsdb::Error::UnknownSeriesRef(_)) => {}
                Err(e) => return Err(classify(e)),
            }
        }
        self.0.append(labels, t, v).map_err(classify)
    }

    fn commit(self: Box<Self>) -> Result<(), String> {
        self.0.commit().map(|_| ()).map_err(|e| e.to_string())
    }

    fn rollback(self: Box<Self>) {
        self.0.rollback()
    }
}

impl Appendable for Db {
    fn appender(&self) -> Box<dyn ScrapeAppender + '_> {
        Box::new(DbAppender(Db::appender(self)))
    }
}
