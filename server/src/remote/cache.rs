//! The remote-write receiver's series cache: label bytes as sent -> head
//! series ref.
//!
//! A remote-write sender ships every sample of a series with the same label
//! bytes, scrape after scrape. Remembering which head series those bytes
//! resolved to lets the receiver append by ref
//! ([`strata_tsdb::head::Appender::append_ref`]) and skip, for every sample
//! after a series' first, building a label set and hashing and comparing it
//! in the head's index (the scrape loop does the same with its cache).
//!
//! Keys are the exact label bytes, compared in full on every hit, so a hash
//! collision can only cost a miss, never a wrong series. A ref the head no
//! longer knows (the series was truncated away) makes the append fail with
//! `UnknownSeriesRef`; the receiver then appends by labels and stores the
//! new ref. Bounded: at most [`MAX_ENTRIES`] entries, spread over
//! [`SHARDS`] independently locked shards (concurrent requests rarely wait
//! on each other); a full shard is emptied, so stale entries of departed
//! series do not accumulate.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use parking_lot::RwLock;

/// Independently locked parts of the cache.
const SHARDS: usize = 16;
/// Most entries kept; at a few hundred bytes of labels per entry this
/// bounds the cache to a few hundred MiB for a million active series.
pub(crate) const MAX_ENTRIES: usize = 1 << 20;

/// Keys are already hashes; hashing them again would only cost time.
#[derive(Default)]
struct Passthrough(u64);

impl Hasher for Passthrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; fold anything else in anyway.
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard = HashMap<u64, (Box<[u8]>, u64), BuildHasherDefault<Passthrough>>;

/// Label bytes -> series ref, see the module docs.
pub(crate) struct SeriesCache {
    shards: Vec<RwLock<Shard>>,
}

impl Default for SeriesCache {
    fn default() -> Self {
        SeriesCache {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
        }
    }
}

impl SeriesCache {
    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        // The top bits: the map itself uses the low ones.
        &self.shards[(hash >> 60) as usize % SHARDS]
    }

    /// The ref stored for these label bytes, if any.
    pub(crate) fn get(&self, hash: u64, equal: impl FnOnce(&[u8]) -> bool) -> Option<u64> {
        let shard = self.shard(hash).read();
        let (key, series_ref) = shard.get(&hash)?;
        equal(key).then_some(*series_ref)
    }

    /// Stores (or replaces) the ref of these label bytes.
    pub(crate) fn insert(&self, hash: u64, key: Box<[u8]>, series_ref: u64) {
        let mut shard = self.shard(hash).write();
        if shard.len() >= MAX_ENTRIES / SHARDS && !shard.contains_key(&hash) {
            shard.clear();
            shard.shrink_to(MAX_ENTRIES / SHARDS / 4);
        }
        shard.insert(hash, (key, series_ref));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_needs_equal_bytes() {
        let c = SeriesCache::default();
        c.insert(7, Box::from(&b"abc"[..]), 42);
        assert_eq!(c.get(7, |k| k == b"abc"), Some(42));
        // Same hash, other bytes: a miss, never the other series' ref.
        assert_eq!(c.get(7, |k| k == b"abd"), None);
        assert_eq!(c.get(8, |_| true), None);
        c.insert(7, Box::from(&b"abd"[..]), 43);
        assert_eq!(c.get(7, |k| k == b"abd"), Some(43));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn bounded() {
        let c = SeriesCache::default();
        // All in one shard (same top bits).
        for i in 0..(MAX_ENTRIES / SHARDS + 10) as u64 {
            c.insert(i, Box::from(&b"x"[..]), i);
        }
        assert!(c.len() <= MAX_ENTRIES / SHARDS);
        assert!(c.len() >= 10);
    }
}
