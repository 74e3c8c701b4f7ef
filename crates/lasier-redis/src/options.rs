//! [`Options`]: how long a storage waits for Redis, and how many
//! connections it keeps.

use std::time::Duration;

/// How a storage talks to Redis: its timeouts and connections. The same
/// type for [`RedisStorage`](crate::RedisStorage) and
/// [`AsyncRedisStorage`](crate::AsyncRedisStorage); each uses the settings
/// that apply to it.
///
/// ```
/// use std::time::Duration;
/// use lasier_redis::Options;
///
/// let options = Options::new()
///     .timeout(Duration::from_millis(200))
///     .pool_size(32);
/// # let _ = options;
/// ```
///
/// # The timeout, and why 500 ms
///
/// [`timeout`](Self::timeout) bounds each *storage step* from end to end: a
/// breaker's admission, the record of an outcome (with the extra round
/// trip of a trip), a `state()` or `counts()` read. The step fails with
/// [`StorageErrorKind::TimedOut`](lasier_core::StorageErrorKind::TimedOut)
/// when it has not completed in time, whatever it was waiting for: a free
/// pooled connection, a new connection, or a reply. The breaker's
/// [store-failure policy](lasier_core::StorageFailurePolicy) then decides
/// what happens to the call.
///
/// The default, **500 ms**, is a compromise between two mistakes:
///
/// * too short, and a store that is merely busy (a fork for a snapshot, a
///   failover, a network hiccup, a slow script elsewhere) passes for a
///   dead one: healthy calls go to the fallback and lose the shared
///   circuit. A Redis round trip takes well under a millisecond on a LAN
///   and a few milliseconds across zones, so 500 ms is two orders of
///   magnitude above normal;
/// * too long, and a hung store costs every guarded call that much before
///   the policy steps in. With the default
///   [`LocalFallback`](lasier_core::StorageFailurePolicy::LocalFallback)
///   only the first calls and one probe per interval (1 s) pay it; 500 ms
///   is under 1 % of the default 60 s window and half the probe interval,
///   so the breaker stays in charge of its window and probes at a steady
///   pace.
///
/// A guarded call makes at most two steps (admit, then record), so it waits
/// at most twice the timeout for the store, and only when the store is slow
/// but still answers each step just in time; once a step times out, the
/// call is decided without the store. Lower the timeout for calls whose own
/// budget is tight (a 100 ms request should not wait 500 ms for its
/// breaker); raise it for a store far away.
///
/// A step that timed out may still have reached Redis and run there
/// later: under `LocalFallback` its outcome is then counted both in Redis
/// and in the in-process circuit. Across a timeout an outcome may be
/// counted twice; none is silently dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) pool_size: u32,
    pub(crate) reconnect_retries: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            timeout: Self::DEFAULT_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            pool_size: Self::DEFAULT_POOL_SIZE,
            reconnect_retries: Self::DEFAULT_RECONNECT_RETRIES,
        }
    }
}

/// The shortest timeout: Redis' own resolution.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

impl Options {
    /// The default [`timeout`](Self::timeout) of a storage step: 500 ms.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);

    /// The default [`connect_timeout`](Self::connect_timeout): 1 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

    /// The default [`pool_size`](Self::pool_size): 16 connections.
    pub const DEFAULT_POOL_SIZE: u32 = 16;

    /// The default [`reconnect_retries`](Self::reconnect_retries): 3.
    pub const DEFAULT_RECONNECT_RETRIES: usize = 3;

    /// The defaults: a 500 ms step timeout, a 1 s connect timeout, up to 16
    /// pooled connections (sync), 3 reconnection attempts (async).
    pub fn new() -> Self {
        Self::default()
    }

    /// How long one storage step may take from end to end (see the
    /// [type docs](Self)); at least 1 ms (shorter ones are taken as 1 ms).
    /// Default 500 ms.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(MIN_TIMEOUT);
        self
    }

    /// How long one connection attempt may take; at least 1 ms. Default 1 s.
    ///
    /// * [`RedisStorage`](crate::RedisStorage) connects when a step needs a
    ///   new connection, and the step's own [`timeout`](Self::timeout)
    ///   bounds it too.
    /// * [`AsyncRedisStorage`](crate::AsyncRedisStorage): each attempt of
    ///   [`connect_with_options`](crate::AsyncRedisStorage::connect_with_options)
    ///   and of the reconnections that follow a lost connection.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout.max(MIN_TIMEOUT);
        self
    }

    /// How many connections a [`RedisStorage`](crate::RedisStorage) keeps
    /// (made when needed, kept while they work); at least 1. Threads beyond
    /// that many wait for a free one, within the step's timeout. Default 16.
    /// (An [`AsyncRedisStorage`](crate::AsyncRedisStorage) multiplexes every
    /// task on one connection.) A `ClusterRedisStorage` (feature `cluster`)
    /// keeps that many cluster connections, each with a connection to every
    /// node it talks to.
    #[must_use]
    pub fn pool_size(mut self, connections: u32) -> Self {
        self.pool_size = connections.max(1);
        self
    }

    /// How many times an [`AsyncRedisStorage`](crate::AsyncRedisStorage)
    /// retries to connect, 100 ms apart and doubling with jitter, when
    /// connecting or after its connection was lost. Steps waiting for the
    /// connection still give up after their [`timeout`](Self::timeout);
    /// once the retries are spent, the next step starts a new round.
    /// Default 3. (The cluster storages reconnect to a node as part of a
    /// step, within its timeout, and do not use this.)
    #[must_use]
    pub fn reconnect_retries(mut self, retries: usize) -> Self {
        self.reconnect_retries = retries;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_kept_in_range() {
        let options = Options::new()
            .timeout(Duration::ZERO)
            .connect_timeout(Duration::ZERO)
            .pool_size(0);
        assert_eq!(options.timeout, MIN_TIMEOUT);
        assert_eq!(options.connect_timeout, MIN_TIMEOUT);
        assert_eq!(options.pool_size, 1);
        assert_eq!(Options::default().timeout, Duration::from_millis(500));
    }
}
