//! The one small bounded cache of the readers: loaded tables, metadata nodes, parsed
//! directories.
//!
//! Emptied when full instead of evicting one entry: an inspection reads mostly forward,
//! so a cleared cache refills with what is needed next, memory stays bounded by
//! `capacity` values, and there is no recency bookkeeping on the hot path. Shared by the
//! image, volume and filesystem layers.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};

/// At most `capacity` values by key, shared between threads.
pub(crate) struct BoundedCache<K, V> {
    inner: Mutex<HashMap<K, V>>,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone> BoundedCache<K, V> {
    pub(crate) fn new(capacity: usize) -> BoundedCache<K, V> {
        BoundedCache {
            inner: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The value at `key`, if cached.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.lock().get(key).cloned()
    }

    /// Caches `value` at `key`, emptying the cache first when it is full.
    pub(crate) fn insert(&self, key: K, value: V) {
        let mut inner = self.lock();
        if inner.len() >= self.capacity {
            inner.clear();
        }
        inner.insert(key, value);
    }

    /// The value at `key`, loaded with `load` on a miss (without holding the lock, so
    /// a slow read does not stall other threads).
    pub(crate) fn get_or_load<E>(
        &self,
        key: K,
        load: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        if let Some(hit) = self.get(&key) {
            return Ok(hit);
        }
        let value = load()?;
        self.insert(key, value.clone());
        Ok(value)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, V>> {
        // A panic while holding the lock leaves a consistent map (inserts are atomic).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::BoundedCache;

    #[test]
    fn holds_at_most_capacity_and_loads_once() {
        let cache = BoundedCache::new(2);
        let mut loads = 0;
        for key in [1, 1, 2, 1] {
            let v: Result<u32, ()> = cache.get_or_load(key, || {
                loads += 1;
                Ok(key * 10)
            });
            assert_eq!(v, Ok(key * 10));
        }
        assert_eq!(loads, 2);
        cache.insert(3, 30); // full: emptied, then 3 alone
        assert_eq!((cache.get(&1), cache.get(&3)), (None, Some(30)));
        let failed: Result<u32, &str> = cache.get_or_load(4, || Err("bad"));
        assert_eq!((failed, cache.get(&4)), (Err("bad"), None));
    }
}
