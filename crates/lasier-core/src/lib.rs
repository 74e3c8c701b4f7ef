//! The core of the lasier circuit breaker, shared by every facade and
//! storage.
//!
//! * [`state`]: the state machine (closed, open, half-open) as pure functions;
//! * [`local`]: one circuit on atomics, for in-process state;
//! * [`config`]: configuration and its validation;
//! * [`clock`]: the [`Clock`](clock::Clock) trait and a
//!   [`ManualClock`](clock::ManualClock) for tests;
//! * [`keys`]: the key layout, byte-compatible with the Python original;
//! * [`storage`] and `async_storage`: the [`Storage`] and `AsyncStorage`
//!   traits that custom storages implement (six primitives), the
//!   [`FusedSteps`] a store that can do better implements too, the
//!   [`Steps`] every storage gets, and [`MemoryStorage`], the in-process
//!   default;
//! * [`kv`]: the state machine over a key-value store, the default bodies
//!   of the fused steps;
//! * [`error`] and [`events`]: what a call or a storage reports, and
//!   [`name`]: the circuit's name that a rejection carries.
//!
//! Most users want a facade instead: `lasier-sync` or `lasier-async` (or the
//! `lasier` crate, which has both). Storage implementors need only this crate.
//!
//! ```
//! use lasier_core::state::{self, Admission, Phase, Timing};
//!
//! let timing = Timing { failure_timeout_ms: 60_000, circuit_timeout_ms: 1_000, half_open_max_calls: 1, half_open_successes: 1, trial_lease_ms: 1_000, backoff: None };
//! let open = state::trip(Phase::Closed, 0, timing.open_time_ms(1, 0)).unwrap();
//! assert!(matches!(state::admit(open, 999, &timing).1, Admission::Rejected { .. }));
//! ```
//!
//! # Features
//!
//! * `std` (default): `std::error::Error` impls, `MonotonicClock`,
//!   `MemoryStorage`. Without it the crate is `no_std`.
//! * `alloc` (implied by `std`): the storage traits, configuration, errors.
//! * `async`: the `AsyncStorage` trait.
//! * `tracing`: every breaker emits its events as `tracing` events.
#![forbid(unsafe_code)]
#![cfg_attr(not(feature = "std"), no_std)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod clock;
pub mod local;
pub mod state;

#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub mod config;
// Facade plumbing: the facades' shared parts. Public for them, not part of
// the documented API (a storage implementor never needs it).
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub mod directory;
#[cfg(feature = "alloc")]
#[doc(hidden)]
pub mod engine;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub mod error;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub mod events;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub mod keys;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub mod kv;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub mod name;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub mod storage;

#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub mod async_storage;

#[cfg(feature = "std")]
#[doc(hidden)]
pub mod facade;
#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
pub mod memory;
// Facade plumbing: the engine of the facades' `Registry`.
#[cfg(feature = "std")]
#[doc(hidden)]
pub mod registry;

pub use lasier_rules as rules;
pub use lasier_rules::{Counts, MaxFailuresRule, PercentageFailuresRule, Rule, RuleError};
pub use state::{Admission, Manual, Outcome, Permit, Snapshot, State, SyncBatch, Transition};

#[cfg(feature = "alloc")]
pub use config::{
    Circuit, Config, ConfigError, OpenBackoff, StorageFailurePolicy, Window, MAX_BUCKETS, MAX_CALLS,
};
#[cfg(feature = "alloc")]
pub use engine::Metrics;
#[cfg(feature = "alloc")]
#[doc(hidden)]
pub use engine::{BreakerCore, Engine, Gate, Recorded, Source, Ticket};
#[cfg(feature = "alloc")]
pub use error::{Error, StorageError, StorageErrorKind};
#[cfg(feature = "alloc")]
pub use events::{CallKind, Listener};
#[cfg(feature = "alloc")]
pub use keys::CircuitKeys;
#[cfg(feature = "alloc")]
pub use local::LocalBinding;
#[cfg(feature = "alloc")]
pub use name::CircuitName;
#[cfg(feature = "alloc")]
pub use storage::{Change, Changed, FusedSteps, Steps, Storage, SyncItem, Watch};

#[cfg(feature = "async")]
pub use async_storage::{AsyncFusedSteps, AsyncSteps, AsyncStorage};
/// The `async-trait` attribute, re-exported for `AsyncStorage` implementors.
#[cfg(feature = "async")]
pub use async_trait::async_trait;

#[cfg(feature = "std")]
pub use memory::MemoryStorage;
