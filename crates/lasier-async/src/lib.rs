//! The lasier circuit breaker for async code.
//!
//! A [`CircuitBreaker`] guards calls to something that can fail. When a
//! [rule](rules) says too many calls failed in the current window, the
//! circuit opens and calls are rejected at once, without running, for the
//! circuit timeout; then a few trial calls decide whether it closes again.
//! The state lives in a [storage](AsyncStorage): in memory by default, or in
//! a shared store such as Redis so that a whole fleet shares one circuit.
//!
//! ```
//! use std::time::Duration;
//! use lasier_async::{CircuitBreaker, Error};
//!
//! async fn charge(card: &str) -> Result<(), &'static str> {
//!     Err("timeout")
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), lasier_async::ConfigError> {
//! let breaker = CircuitBreaker::builder("payments")
//!     .max_failures(3)
//!     .circuit_timeout(Duration::from_secs(30))
//!     .build()?;
//!
//! for _ in 0..3 {
//!     let result = breaker.call(charge("4242")).await;
//!     assert!(matches!(result, Err(Error::Inner("timeout"))));
//! }
//! // Open now: the future is dropped without being polled.
//! let result = breaker.call(charge("4242")).await;
//! assert!(result.unwrap_err().is_open());
//! # Ok(())
//! # }
//! ```
//!
//! The sync facade, `lasier-sync`, has the same types and methods; only the
//! import path and `.await` differ. One difference is in the nature of
//! async code: a guarded future dropped before it completes is a
//! cancellation, which records nothing and gives back a half-open trial
//! permit (see [`Guard`]).
//!
//! The breaker spawns no task and needs no runtime of its own: it works on
//! any executor, and with the in-memory storage its futures complete without
//! ever waiting.
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
    async_trait, AsyncSteps, AsyncStorage, CircuitName, ConfigError, Counts, Error, Listener,
    MaxFailuresRule, MemoryStorage, Metrics, OpenBackoff, PercentageFailuresRule, Rule, RuleError,
    State, StorageError, StorageErrorKind, StorageFailurePolicy,
};
