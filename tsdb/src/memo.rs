//! [`Memo`]: a small, bounded, thread-safe memo of an expensive pure
//! function of a string (a compiled regex, a parsed query).
//!
//! Bounded twice: at most `entries` results are kept (least recently used
//! dropped first), and keys longer than `max_key` bytes are computed every
//! time and never kept, so untrusted input cannot grow it past
//! `entries × max_key` bytes of keys. Errors are never kept. The hasher is
//! std's keyed SipHash (lru without its `hashbrown` feature), so chosen
//! keys cannot collide on purpose.

use std::num::NonZeroUsize;

use lru::LruCache;
use parking_lot::Mutex;

/// See the module docs. Lives in a `static` (`LazyLock`) or a struct.
pub struct Memo<V> {
    cache: Mutex<LruCache<String, V>>,
    max_key: usize,
}

impl<V: Clone> Memo<V> {
    /// A memo of at most `entries` results (at least one) of keys up to
    /// `max_key` bytes.
    pub fn new(entries: usize, max_key: usize) -> Self {
        Memo {
            cache: Mutex::new(LruCache::new(
                NonZeroUsize::new(entries).unwrap_or(NonZeroUsize::MIN),
            )),
            max_key,
        }
    }

    /// The kept result for `key`, or `f(key)` (kept when `Ok` and the key
    /// is short enough). `f` runs without the lock held.
    pub fn get_or_try<E>(&self, key: &str, f: impl FnOnce(&str) -> Result<V, E>) -> Result<V, E> {
        let keep = key.len() <= self.max_key;
        if keep {
            if let Some(v) = self.cache.lock().get(key) {
                return Ok(v.clone());
            }
        }
        let v = f(key)?;
        if keep {
            self.cache.lock().put(key.to_string(), v.clone());
        }
        Ok(v)
    }

    /// Whether a result for `key` is kept (without touching its recency).
    pub fn contains(&self, key: &str) -> bool {
        self.cache.lock().contains(key)
    }

    /// How many results are kept.
    pub fn len(&self) -> usize {
        self.cache.lock().len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_ok_results_of_short_keys_up_to_the_bound() {
        let m: Memo<usize> = Memo::new(2, 3);
        let calls = std::cell::Cell::new(0);
        let f = |k: &str| -> Result<usize, String> {
            calls.set(calls.get() + 1);
            if k == "bad" {
                Err("no".into())
            } else {
                Ok(k.len())
            }
        };
        assert_eq!(m.get_or_try("a", f), Ok(1));
        assert_eq!(m.get_or_try("a", f), Ok(1));
        assert_eq!(m.get_or_try("bad", f), Err("no".into()));
        assert_eq!(m.get_or_try("bad", f), Err("no".into()));
        assert_eq!(m.get_or_try("long", f), Ok(4));
        assert_eq!(m.get_or_try("long", f), Ok(4));
        assert_eq!(
            calls.get(),
            1 + 2 + 2,
            "hits for 'a' only; errors and long keys recomputed"
        );
        assert_eq!(m.len(), 1);
        m.get_or_try("b", f).unwrap();
        m.get_or_try("c", f).unwrap();
        assert_eq!(m.len(), 2, "bounded by entries");
    }
}
