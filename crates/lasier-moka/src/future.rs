//! [`AsyncMokaStorage`]: an [`AsyncStorage`] over [`moka::future::Cache`].

use std::fmt;
use std::time::{Duration, Instant};

use lasier_core::{async_trait, AsyncStorage, StorageError};
use moka::future::{Cache, CacheBuilder};
use moka::policy::EvictionPolicy;

use crate::value::{self, Value, ValueExpiry};

/// The cache an [`AsyncMokaStorage`] keeps its keys in.
pub type FutureCache = Cache<String, Value>;

/// An [`AsyncStorage`] that keeps every breaker's keys in one bounded
/// [`moka::future::Cache`]: `MokaStorage` for async
/// code, with the same constructors and behaviour.
///
/// Clones share one cache. Each key expires at its own TTL (through
/// [`ValueExpiry`]); `add`, `set`, `incr`, `expire` and `delete` are atomic
/// per key (moka's `and_compute_with`), so no increment is lost under
/// contention. When the cache is full, the least recently used keys are
/// evicted: those of the breakers that have not been called for longest.
///
/// ```
/// use lasier_core::AsyncStorage;
/// use lasier_moka::AsyncMokaStorage;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lasier_core::StorageError> {
/// let storage = AsyncMokaStorage::with_capacity(10_000);
/// assert_eq!(storage.incr("requests", 1).await?, 1);
/// assert_eq!(storage.get("requests").await?, Some(1));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct AsyncMokaStorage {
    cache: FutureCache,
}

impl AsyncMokaStorage {
    /// A storage over `cache`, which you may also have configured yourself
    /// (a name, an eviction listener, a weigher). Build it from
    /// [`AsyncMokaStorage::cache_builder`], or at least give it the
    /// [`ValueExpiry`] policy, so that expired keys free their memory.
    pub fn new(cache: FutureCache) -> Self {
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
    /// then pass the cache to [`AsyncMokaStorage::new`].
    ///
    /// ```
    /// use lasier_moka::AsyncMokaStorage;
    ///
    /// let cache = AsyncMokaStorage::cache_builder()
    ///     .name("breakers")
    ///     .max_capacity(50_000)
    ///     .build();
    /// let storage = AsyncMokaStorage::new(cache);
    /// ```
    pub fn cache_builder() -> CacheBuilder<String, Value, FutureCache> {
        Cache::builder()
            .expire_after(ValueExpiry)
            .eviction_policy(EvictionPolicy::lru())
    }

    /// The cache, to read its statistics (`entry_count`, after
    /// `run_pending_tasks().await`) or to share it.
    pub fn cache(&self) -> &FutureCache {
        &self.cache
    }

    /// Runs `update` on the entry of `key`, atomically for that key.
    async fn compute<T: Send>(
        &self,
        key: &str,
        update: impl FnOnce(Option<Value>) -> Result<value::Update<T>, StorageError> + Send,
    ) -> Result<T, StorageError> {
        let mut output = None;
        self.cache
            .entry_by_ref(key)
            .and_try_compute_with(|entry| {
                let op = update(entry.map(|e| e.into_value())).map(|(op, out)| {
                    output = Some(out);
                    op
                });
                std::future::ready(op)
            })
            .await?;
        output.ok_or_else(|| StorageError::corrupt(key, "moka skipped the update"))
    }
}

impl fmt::Debug for AsyncMokaStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the cache's own Debug, which lists every entry.
        f.debug_struct("AsyncMokaStorage")
            .field("name", &self.cache.name())
            .field("entries", &self.cache.entry_count())
            .field("max_capacity", &self.cache.policy().max_capacity())
            .finish()
    }
}

#[async_trait]
impl AsyncStorage for AsyncMokaStorage {
    async fn add(
        &self,
        key: &str,
        value: i64,
        ttl: Option<Duration>,
    ) -> Result<bool, StorageError> {
        self.compute(key, |current| Ok(value::add(current, value, ttl)))
            .await
    }

    async fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError> {
        self.compute(key, |_| Ok((value::set(value, ttl), ())))
            .await
    }

    async fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
        self.compute(key, |current| value::incr(current, key, delta))
            .await
    }

    async fn get(&self, key: &str) -> Result<Option<i64>, StorageError> {
        Ok(value::live(self.cache.get(key).await, Instant::now()).map(|v| v.get()))
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError> {
        self.compute(key, |current| Ok((value::expire(current, ttl), ())))
            .await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.compute(key, |current| Ok((value::delete(current), ())))
            .await
    }
}
