//! [`AsyncStorage`]: the [`Storage`](crate::Storage) trait for async code.
//!
//! The same primitives and fused steps, with the same names and contract;
//! only `async` differs. It uses `async-trait`, so `Box<dyn AsyncStorage>`
//! and `Arc<dyn AsyncStorage>` work, and every future it returns is `Send`.
//!
//! ```
//! use std::time::Duration;
//! use lasier_core::{async_trait, AsyncStorage, StorageError};
//!
//! /// A store that forgets everything: every call passes, nothing is counted.
//! #[derive(Debug)]
//! struct Forgetful;
//!
//! #[async_trait]
//! impl AsyncStorage for Forgetful {
//!     async fn add(&self, _: &str, _: i64, _: Option<Duration>) -> Result<bool, StorageError> { Ok(true) }
//!     async fn set(&self, _: &str, _: i64, _: Option<Duration>) -> Result<(), StorageError> { Ok(()) }
//!     async fn incr(&self, _: &str, delta: i64) -> Result<i64, StorageError> { Ok(delta) }
//!     async fn get(&self, _: &str) -> Result<Option<i64>, StorageError> { Ok(None) }
//!     async fn expire(&self, _: &str, _: Duration) -> Result<(), StorageError> { Ok(()) }
//!     async fn delete(&self, _: &str) -> Result<(), StorageError> { Ok(()) }
//! }
//! ```

// (`async_trait` boxes futures: without `std`, `Box` is not in the prelude)
use alloc::boxed::Box;
use core::fmt;
use core::time::Duration;

use async_trait::async_trait;
use lasier_rules::{Counts, Rule};

use crate::config::Circuit;
use crate::error::StorageError;
use crate::local::LocalBinding;
use crate::state::{Admission, Manual, Outcome, Permit, State, Transition};
use crate::steps::nonblocking as steps;

/// An async store for circuit state: [`Storage`](crate::Storage), async.
#[async_trait]
pub trait AsyncStorage: fmt::Debug + Send + Sync {
    /// Sets `key` to `value` with an optional TTL, only if it is absent.
    /// Returns whether it wrote.
    async fn add(&self, key: &str, value: i64, ttl: Option<Duration>)
        -> Result<bool, StorageError>;

    /// Sets `key` to `value` with an optional TTL.
    async fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError>;

    /// Adds `delta` to `key` (a missing key counts as 0), keeping its TTL;
    /// returns the new value.
    async fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError>;

    /// The value at `key`, or `None` if it is missing or expired.
    async fn get(&self, key: &str) -> Result<Option<i64>, StorageError>;

    /// Sets the TTL of `key`, if it exists.
    async fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError>;

    /// Deletes `key`.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;

    /// Fused step: may a call run? See [`Storage::admit`](crate::Storage::admit).
    async fn admit(
        &self,
        circuit: &Circuit,
    ) -> Result<(Admission, Option<Transition>), StorageError> {
        steps::admit(self, circuit).await
    }

    /// Fused step: counts an outcome. See [`Storage::record`](crate::Storage::record).
    async fn record(
        &self,
        circuit: &Circuit,
        permit: Permit,
        outcome: Outcome,
        rule: &dyn Rule,
    ) -> Result<Option<Transition>, StorageError> {
        steps::record(self, circuit, permit, outcome, rule).await
    }

    /// Gives back the permit of a call that ended without a verdict.
    async fn release(&self, circuit: &Circuit, permit: Permit) -> Result<(), StorageError> {
        steps::release(self, circuit, permit).await
    }

    /// Opens the circuit for its circuit timeout and starts a fresh window.
    async fn open_circuit(&self, circuit: &Circuit) -> Result<(), StorageError> {
        steps::open_circuit(self, circuit).await
    }

    /// The circuit's state as the store sees it now.
    async fn state(&self, circuit: &Circuit) -> Result<State, StorageError> {
        steps::state(self, circuit).await
    }

    /// The counts of the circuit's current window.
    async fn counts(&self, circuit: &Circuit) -> Result<Counts, StorageError> {
        steps::counts(self, circuit).await
    }

    /// Deletes those of the circuit's keys that hold what the breaker
    /// cannot have written (text in a counter, a negative count, an open
    /// flag other than `1`), so that the next window starts clean. The
    /// breaker calls it after a storage error of kind `Corrupt`.
    async fn repair(&self, circuit: &Circuit) -> Result<(), StorageError> {
        steps::repair(self, circuit).await
    }

    /// Changes the circuit's state by hand, for every breaker sharing it:
    /// forced open, closed (counters emptied), or disabled. Returns the
    /// change, if any.
    async fn set_manual(
        &self,
        circuit: &Circuit,
        manual: Manual,
    ) -> Result<Option<Transition>, StorageError> {
        steps::set_manual(self, circuit, manual).await
    }

    /// Deletes the circuit's keys, and nothing else.
    async fn reset(&self, circuit: &Circuit) -> Result<(), StorageError> {
        steps::reset(self, circuit).await
    }

    /// Checks, when a breaker is built, that this storage can hold
    /// `circuit` (a Redis Cluster needs all of a circuit's keys in one hash
    /// slot, for example). The default accepts every circuit.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](crate::ConfigError) that `build()` returns as is;
    /// its message should say how to fix the configuration.
    fn validate(&self, circuit: &Circuit) -> Result<(), crate::ConfigError> {
        let _ = circuit;
        Ok(())
    }

    /// See [`Storage::local_circuit`](crate::Storage::local_circuit).
    fn local_circuit(&self, circuit: &Circuit) -> Option<LocalBinding> {
        let _ = circuit;
        None
    }
}

macro_rules! forward_async_storage {
    ($($ptr:ty),*) => {$(
        #[async_trait]
        impl<S: AsyncStorage + ?Sized> AsyncStorage for $ptr {
            async fn add(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<bool, StorageError> {
                (**self).add(key, value, ttl).await
            }
            async fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError> {
                (**self).set(key, value, ttl).await
            }
            async fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
                (**self).incr(key, delta).await
            }
            async fn get(&self, key: &str) -> Result<Option<i64>, StorageError> {
                (**self).get(key).await
            }
            async fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError> {
                (**self).expire(key, ttl).await
            }
            async fn delete(&self, key: &str) -> Result<(), StorageError> {
                (**self).delete(key).await
            }
            async fn admit(&self, circuit: &Circuit) -> Result<(Admission, Option<Transition>), StorageError> {
                (**self).admit(circuit).await
            }
            async fn record(&self, circuit: &Circuit, permit: Permit, outcome: Outcome, rule: &dyn Rule) -> Result<Option<Transition>, StorageError> {
                (**self).record(circuit, permit, outcome, rule).await
            }
            async fn release(&self, circuit: &Circuit, permit: Permit) -> Result<(), StorageError> {
                (**self).release(circuit, permit).await
            }
            async fn open_circuit(&self, circuit: &Circuit) -> Result<(), StorageError> {
                (**self).open_circuit(circuit).await
            }
            async fn state(&self, circuit: &Circuit) -> Result<State, StorageError> {
                (**self).state(circuit).await
            }
            async fn counts(&self, circuit: &Circuit) -> Result<Counts, StorageError> {
                (**self).counts(circuit).await
            }
            async fn repair(&self, circuit: &Circuit) -> Result<(), StorageError> {
                (**self).repair(circuit).await
            }
            async fn set_manual(&self, circuit: &Circuit, manual: Manual) -> Result<Option<Transition>, StorageError> {
                (**self).set_manual(circuit, manual).await
            }
            async fn reset(&self, circuit: &Circuit) -> Result<(), StorageError> {
                (**self).reset(circuit).await
            }
            fn validate(&self, circuit: &Circuit) -> Result<(), crate::ConfigError> {
                (**self).validate(circuit)
            }
            fn local_circuit(&self, circuit: &Circuit) -> Option<LocalBinding> {
                (**self).local_circuit(circuit)
            }
        }
    )*};
}

forward_async_storage!(&S, alloc::sync::Arc<S>, alloc::boxed::Box<S>);
