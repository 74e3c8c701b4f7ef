//! An in-process storage for the lasier circuit breaker on a
//! [moka](https://docs.rs/moka) cache: many breakers in one process (one
//! per downstream host, per tenant, per endpoint) in bounded memory.
//!
//! ```
//! use std::time::Duration;
//! use lasier_moka::MokaStorage;
//! use lasier_sync::CircuitBreaker;
//!
//! // One storage for every breaker of the process: at most 50 000 keys.
//! let storage = MokaStorage::with_capacity(50_000);
//!
//! let breaker_for = |host: &str| {
//!     CircuitBreaker::builder(host)
//!         .storage(storage.clone())
//!         .max_failures(3)
//!         .circuit_timeout(Duration::from_secs(30))
//!         .build()
//! };
//! let images = breaker_for("images.internal")?;
//! for _ in 0..3 {
//!     let _ = images.call(|| Err::<(), _>("connection refused"));
//! }
//! assert!(images.call(|| Ok::<_, ()>(())).unwrap_err().is_open());
//! // Another host's breaker on the same storage is not affected.
//! assert!(breaker_for("search.internal")?.call(|| Ok::<_, ()>(())).is_ok());
//! # Ok::<(), lasier_sync::ConfigError>(())
//! ```
//!
//! # When to use it
//!
//! `MemoryStorage`, the default, is the fastest storage (a call on a closed
//! circuit takes no lock), but it keeps every circuit it has seen for the
//! life of the process. When breakers come and go by the thousand (a
//! breaker per downstream host, per customer's webhook endpoint...), use
//! this crate: every breaker's keys live in one moka cache with a maximum
//! number of keys, and when it is full the least recently used keys are
//! evicted, i.e. those of the breakers that have not been called for
//! longest. A breaker has at most 5 keys, usually 1 to 3; a key expires at
//! its own TTL, so idle breakers cost nothing after their windows end.
//!
//! Eviction forgets state: an evicted counter starts again from zero and an
//! evicted open flag closes its circuit early. Size the cache for the
//! breakers that are busy at one time (5 keys each) and it only evicts idle
//! ones. For a circuit shared by several processes, use `lasier-redis`.
//!
//! Breaker handles are cheap and hold no state of their own: build them on
//! demand, or keep them in a bounded moka cache of their own as
//! `examples/moka_per_host.rs` does; a breaker rebuilt with the same name on
//! the same storage sees the same circuit.
//!
//! # How it works
//!
//! Keys are `String`s and values are [`Value`]s: an integer and its
//! deadline. [`ValueExpiry`] makes moka evict each value at its deadline;
//! reads also check the deadline, so a key is missing from its deadline on,
//! whenever moka evicts it. Every write goes through moka's entry API
//! (`and_compute_with`), which serializes the updates of one key: `add` is
//! a true set-if-absent and no increment is lost under contention. Both
//! storages pass `lasier-testkit` in their tests. Time is the operating
//! system's monotonic clock (moka has no clock to inject).
//!
//! # Features
//!
//! | feature | default | what                                                |
//! |---------|---------|-----------------------------------------------------|
//! | `sync`  | yes     | `MokaStorage`, over `moka::sync::Cache`             |
//! | `async` | yes     | `AsyncMokaStorage`, over `moka::future::Cache`, for `lasier-async` |
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// Without a storage, the shared primitives have no caller.
#![cfg_attr(not(any(feature = "sync", feature = "async")), allow(dead_code))]

mod value;

#[cfg(feature = "async")]
mod future;
#[cfg(feature = "sync")]
mod sync;

pub use value::{Value, ValueExpiry};

#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub use future::{AsyncMokaStorage, FutureCache};
#[cfg(feature = "sync")]
#[cfg_attr(docsrs, doc(cfg(feature = "sync")))]
pub use sync::{MokaStorage, SyncCache};

/// The moka version this crate is built on, for building caches by hand.
pub use moka;
