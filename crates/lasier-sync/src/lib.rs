//! The lasier circuit breaker for blocking code.
//!
//! A [`CircuitBreaker`] guards calls to something that can fail. When a
//! [rule](rules) says too many calls failed in the current window, the
//! circuit opens and calls are rejected at once, without running, for the
//! circuit timeout; then a few trial calls decide whether it closes again.
//! The state lives in a [storage](Storage): in memory by default, or in a
//! shared store such as Redis so that a whole fleet shares one circuit.
//!
//! ```
//! use std::time::Duration;
//! use lasier_sync::{CircuitBreaker, Error};
//!
//! let breaker = CircuitBreaker::builder("payments")
//!     .max_failures(3)
//!     .circuit_timeout(Duration::from_secs(30))
//!     .build()?;
//!
//! for _ in 0..3 {
//!     let result: Result<(), Error<&str>> = breaker.call(|| Err("timeout"));
//!     assert!(matches!(result, Err(Error::Inner("timeout"))));
//! }
//! // Open now: the call does not run.
//! let result = breaker.call(|| -> Result<(), &str> { unreachable!() });
//! assert!(result.unwrap_err().is_open());
//! # Ok::<(), lasier_sync::ConfigError>(())
//! ```
//!
//! The async facade, `lasier-async`, has the same types and methods; only
//! the import path and `.await` differ.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod breaker;
mod builder;
mod guard;
mod registrar;
mod registry;
mod syncer;

pub use breaker::CircuitBreaker;
pub use builder::CircuitBreakerBuilder;
pub use guard::Guard;
pub use registry::{Registry, DEFAULT_CAPACITY, DEFAULT_MAX_IDLE};

pub use lasier_core::clock;
pub use lasier_core::events;
pub use lasier_core::rules;
pub use lasier_core::{
    CircuitName, ConfigError, Counts, Error, Listener, MaxFailuresRule, MemoryStorage, Metrics,
    OpenBackoff, PercentageFailuresRule, Rule, RuleError, State, Steps, Storage, StorageError,
    StorageErrorKind, StorageFailurePolicy,
};
