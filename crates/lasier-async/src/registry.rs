use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use lasier_core::clock::{Clock, MonotonicClock};
use lasier_core::registry::Registry as Entries;
use lasier_core::{ConfigError, MemoryStorage};

use crate::breaker::CircuitBreaker;
use crate::builder::CircuitBreakerBuilder;

/// The default most breakers a [`Registry`] holds.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// The default idle time after which a [`Registry`] may drop a breaker.
pub const DEFAULT_MAX_IDLE: Duration = Duration::from_secs(600);

/// One breaker per key (a downstream host, a tenant), created on first use
/// from one recipe, with bounded memory.
///
/// The recipe gets the key and returns a builder. Breakers whose builder
/// names no storage share one `MemoryStorage` of the registry's; name a
/// storage to share circuits with other processes (Redis) or to bound their
/// memory on their own (moka). The registry holds at most
/// `capacity` breakers: when full, it drops those idle for longer than
/// `max_idle`, then the least recently used. A dropped breaker is built
/// again on its next use; its circuit lives on in the storage.
///
/// ```
/// use lasier_async::{CircuitBreaker, MemoryStorage, Registry};
///
/// let storage = MemoryStorage::new();
/// let hosts = Registry::new(move |host| {
///     CircuitBreaker::builder(format!("db:{host}"))
///         .max_failures(5)
///         .storage(storage.clone())
/// });
/// let breaker = hosts.get("db-1.internal")?;
/// # let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// let rows: Result<u32, lasier_async::Error<std::io::Error>> = rt.block_on(breaker.call(async { Ok(3) }));
/// # assert_eq!(rows.unwrap(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Registry {
    recipe: Box<dyn Fn(&str) -> CircuitBreakerBuilder + Send + Sync>,
    entries: Entries<CircuitBreaker>,
    /// The storage of breakers whose recipe names none: one for the whole
    /// registry, so that a dropped breaker's circuit outlives it.
    storage: MemoryStorage,
}

impl Registry {
    /// A registry whose breakers are built by `recipe(key)`, holding at most
    /// [`DEFAULT_CAPACITY`] of them and dropping those idle for
    /// [`DEFAULT_MAX_IDLE`] first.
    pub fn new(recipe: impl Fn(&str) -> CircuitBreakerBuilder + Send + Sync + 'static) -> Self {
        Self::with_limits(recipe, DEFAULT_CAPACITY, DEFAULT_MAX_IDLE)
    }

    /// A registry holding at most `capacity` breakers, dropping those idle
    /// for longer than `max_idle` first when full.
    pub fn with_limits(
        recipe: impl Fn(&str) -> CircuitBreakerBuilder + Send + Sync + 'static,
        capacity: usize,
        max_idle: Duration,
    ) -> Self {
        Self::with_clock(recipe, capacity, max_idle, MonotonicClock::new())
    }

    /// [`with_limits`](Self::with_limits) with the clock that measures idle
    /// time (a `ManualClock` in tests).
    pub fn with_clock(
        recipe: impl Fn(&str) -> CircuitBreakerBuilder + Send + Sync + 'static,
        capacity: usize,
        max_idle: Duration,
        clock: impl Clock + 'static,
    ) -> Self {
        Self {
            recipe: Box::new(recipe),
            entries: Entries::new(capacity, max_idle, Arc::new(clock)),
            storage: MemoryStorage::new(),
        }
    }

    /// The breaker for `key`, built on first use.
    ///
    /// # Errors
    ///
    /// The recipe's [`ConfigError`], if its builder is invalid for this key.
    pub fn get(&self, key: &str) -> Result<CircuitBreaker, ConfigError> {
        self.entries.get_or_try_insert_with(key, || {
            (self.recipe)(key)
                .or_storage(|| Arc::new(self.storage.clone()))
                .build()
        })
    }

    /// Drops the breaker for `key` from the registry (its circuit stays in
    /// the storage).
    pub fn remove(&self, key: &str) {
        self.entries.remove(key);
    }

    /// How many breakers it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}
