//! A circuit breaker whose state can live in a shared store, so that every
//! process of a service sees one circuit. A Rust port of the Python library
//! `lasier`, with a half-open state, typed durations and errors, and a
//! lock-free in-process default.
//!
//! This crate gathers the others behind features; each is also usable on its
//! own (`lasier-sync`, `lasier-core`, ...).
//!
//! | module | feature | what |
//! |---|---|---|
//! | [`rules`] | always | `Rule`, `MaxFailuresRule`, `PercentageFailuresRule` |
//! | `sync` | `sync` (default) | the blocking `CircuitBreaker` |
//! | `future` | `async` | the async `CircuitBreaker`: same names, `.await` |
//! | `redis` | `redis` | `RedisStorage` (with `sync`), `AsyncRedisStorage` (with `async`) |
//! | `redis` | `cluster` | `ClusterRedisStorage` (with `sync`), `AsyncClusterRedisStorage` (with `async`) |
//! | `moka` | `moka` | `MokaStorage` (with `sync`), `AsyncMokaStorage` (with `async`) |
//! | `tower` | `tower` | a tower `Layer` / `Service` guarding any service |
//! | `circuit_breaker` | `macros` | `#[circuit_breaker(BREAKER)]` on a fn |
//! | [`events`] | always (`tracing` adds tracing events) | `Listener`, state changes, rejections, fallback |
//! | [`storage`] | always | `Storage` (and `AsyncStorage` with `async`), `MemoryStorage` |
//! | [`clock`] | always | `Clock`, `ManualClock` for tests |
//!
//! ```
//! # #[cfg(feature = "sync")] {
//! use lasier::sync::CircuitBreaker;
//!
//! let breaker = CircuitBreaker::builder("payments").max_failures(5).build()?;
//! let total: u32 = breaker.call(|| -> Result<u32, std::io::Error> { Ok(42) })?;
//! # assert_eq!(total, 42);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use lasier_core::rules;
pub use lasier_core::{
    CircuitName, ConfigError, Counts, Error, MaxFailuresRule, PercentageFailuresRule, Rule,
    RuleError, State, StorageError, StorageErrorKind,
};

pub use lasier_core::clock;
pub use lasier_core::events;
pub use lasier_core::{CallKind, Listener, Manual, Metrics, OpenBackoff, StorageFailurePolicy};

/// Where circuits live: the storage traits and the in-memory default.
pub mod storage {
    pub use lasier_core::keys::CircuitKeys;
    pub use lasier_core::kv;
    /// What a storage that runs the breaker's steps itself receives and
    /// answers.
    pub use lasier_core::{Admission, Outcome, Permit, Snapshot, SyncBatch, Transition};
    pub use lasier_core::{Change, Changed, Watch};
    pub use lasier_core::{Circuit, FusedSteps, MemoryStorage, Steps, Storage, SyncItem};

    #[cfg(feature = "async")]
    #[cfg_attr(docsrs, doc(cfg(feature = "async")))]
    pub use lasier_core::{async_trait, AsyncFusedSteps, AsyncSteps, AsyncStorage};
}

/// The blocking circuit breaker ([`lasier-sync`](lasier_sync)).
#[cfg(feature = "sync")]
#[cfg_attr(docsrs, doc(cfg(feature = "sync")))]
pub mod sync {
    pub use lasier_sync::{CircuitBreaker, CircuitBreakerBuilder, Guard, Registry};
}

/// The async circuit breaker ([`lasier-async`](lasier_async)): the same
/// names and methods as [`sync`], with futures.
#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub mod future {
    pub use lasier_async::{CircuitBreaker, CircuitBreakerBuilder, Guard, Registry};
}

/// Redis storages ([`lasier-redis`](lasier_redis)): one circuit shared by a
/// fleet.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis {
    pub use lasier_redis::*;
}

/// moka-backed storages ([`lasier-moka`](lasier_moka)): many breakers in one
/// process, in bounded memory.
#[cfg(feature = "moka")]
#[cfg_attr(docsrs, doc(cfg(feature = "moka")))]
pub mod moka {
    pub use lasier_moka::*;
}

/// A tower `Layer` / `Service` ([`lasier-tower`](lasier_tower)).
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower {
    pub use lasier_tower::*;
}

/// `#[circuit_breaker(BREAKER)]`: guards a fn, the decorator form of the
/// original ([`lasier-macros`](lasier_macros)).
#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
pub use lasier_macros::circuit_breaker;

/// The README's examples, compiled and run as doctests.
#[cfg(all(doctest, feature = "sync", feature = "async"))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
