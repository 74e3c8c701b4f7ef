//! [`MokaStorage`]: a [`Storage`] over [`moka::sync::Cache`].

use std::fmt;
use std::time::{Duration, Instant};

use lasier_core::{Storage, StorageError};
use moka::policy::EvictionPolicy;
use moka::sync::{Cache, CacheBuilder};

use crate::value::{self, Value, ValueExpiry};

/// The cache a [`MokaStorage`] keeps its keys in.
pub type SyncCache = Cache<String, Value>;

/// A [`Storage`] for blocking code that keeps every breaker's keys in one
/// bounded [`moka::sync::Cache`].
///
/// Clones share one cache. Each key expires at its own TTL (through
/// [`ValueExpiry`]); `add`, `set`, `incr`, `expire` and `delete` are atomic
/// per key (moka's `and_compute_with`), so no increment is lost under
/// contention. When the cache is full, the least recently used keys are
/// evicted: those of the breakers that have not been called for longest.
///
/// ```
/// use lasier_moka::MokaStorage;
/// use lasier_sync::CircuitBreaker;
///
/// let storage = MokaStorage::with_capacity(10_000);
/// let breaker = CircuitBreaker::builder("inventory.internal")
///     .storage(storage.clone())
///     .max_failures(2)
///     .build()?;
/// let _ = breaker.call(|| Err::<(), _>("down"));
/// let _ = breaker.call(|| Err::<(), _>("down"));
/// assert!(breaker.call(|| Ok::<_, ()>(())).unwrap_err().is_open());
/// # Ok::<(), lasier_sync::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct MokaStorage {
    cache: SyncCache,
}

impl MokaStorage {
    /// A storage over `cache`, which you may also have configured yourself
    /// (a name, an eviction listener, a weigher). Build it from
    /// [`MokaStorage::cache_builder`], or at least give it the
    /// [`ValueExpiry`] policy, so that expired keys free their memory.
    pub fn new(cache: SyncCache) -> Self {
        Self { cache }
    }

    /// A storage over a new cache of at most `max_keys` keys, least recently
    /// used evicted first. A breaker has at most 5 keys (its failure and
    /// request counters, its open flag and two half-open keys), and usually
    /// 1 to 3.
    pub fn with_capacity(max_keys: u64) -> Self {
        Self::new(Self::cache_builder().max_capacity(max_keys).build())
    }

    /// A builder of the cache this storage needs, set up with the
    /// [`ValueExpiry`] policy and least-recently-used eviction (so a new
    /// breaker's keys are always admitted). Add a capacity and anything else,
    /// then pass the cache to [`MokaStorage::new`].
    ///
    /// ```
    /// use lasier_moka::MokaStorage;
    ///
    /// let cache = MokaStorage::cache_builder()
    ///     .name("breakers")
    ///     .max_capacity(50_000)
    ///     .build();
    /// let storage = MokaStorage::new(cache);
    /// ```
    pub fn cache_builder() -> CacheBuilder<String, Value, SyncCache> {
        Cache::builder()
            .expire_after(ValueExpiry)
            .eviction_policy(EvictionPolicy::lru())
    }

    /// The cache, to read its statistics (`entry_count`, after
    /// `run_pending_tasks`) or to share it.
    pub fn cache(&self) -> &SyncCache {
        &self.cache
    }

    /// Runs `update` on the entry of `key`, atomically for that key.
    fn compute<T>(
        &self,
        key: &str,
        update: impl FnOnce(Option<Value>) -> Result<value::Update<T>, StorageError>,
    ) -> Result<T, StorageError> {
        let mut output = None;
        self.cache.entry_by_ref(key).and_try_compute_with(|entry| {
            let (op, out) = update(entry.map(|e| e.into_value()))?;
            output = Some(out);
            Ok::<_, StorageError>(op)
        })?;
        output.ok_or_else(|| StorageError::corrupt(key, "moka skipped the update"))
    }
}

impl fmt::Debug for MokaStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the cache's own Debug, which lists every entry.
        f.debug_struct("MokaStorage")
            .field("name", &self.cache.name())
            .field("entries", &self.cache.entry_count())
            .field("max_capacity", &self.cache.policy().max_capacity())
            .finish()
    }
}

impl Storage for MokaStorage {
    fn add(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<bool, StorageError> {
        self.compute(key, |current| Ok(value::add(current, value, ttl)))
    }

    fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError> {
        self.compute(key, |_| Ok((value::set(value, ttl), ())))
    }

    fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
        self.compute(key, |current| value::incr(current, key, delta))
    }

    fn get(&self, key: &str) -> Result<Option<i64>, StorageError> {
        Ok(value::live(self.cache.get(key), Instant::now()).map(|v| v.get()))
    }

    fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError> {
        self.compute(key, |current| Ok((value::expire(current, ttl), ())))
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.compute(key, |current| Ok((value::delete(current), ())))
    }
}
