//! [`AsyncStorage`]: the [`Storage`](crate::Storage) trait for async code.
//!
//! The same primitives and fused steps ([`AsyncFusedSteps`], given to
//! every storage by [`AsyncSteps`]), with the same names and contract; only
//! `async` differs. It uses `async-trait`, so `Box<dyn AsyncStorage>`
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
use crate::kv::nonblocking as kv;
use crate::local::LocalBinding;
use crate::state::{Admission, Manual, Outcome, Permit, Snapshot, State, SyncBatch, Transition};
use crate::storage::{Changed, SyncItem, Watch};

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

    /// The fused steps this storage runs itself, if it has any; see
    /// [`Storage::fused_steps`](crate::Storage::fused_steps).
    fn fused_steps(&self) -> Option<&dyn AsyncFusedSteps> {
        None
    }

    /// Which storages share one connection to the store: breakers in sync
    /// mode on storages of one group sync together, from one background
    /// thread (or task) and in one pipelined round trip where the storage
    /// can. The default, this storage's address, is right unless clones of
    /// it share connections (a Redis storage's clones share its pool, and
    /// say so).
    fn sync_group(&self) -> usize {
        (self as *const Self).cast::<()>() as usize
    }

    /// See [`Storage::watch`](crate::Storage::watch): called from inside
    /// the tokio runtime of the group's background task.
    fn watch(&self, changed: Changed) -> Option<Watch> {
        let _ = changed;
        None
    }

    /// See [`Storage::ping`](crate::Storage::ping).
    ///
    /// # Errors
    ///
    /// The store's error, as any step would report it.
    async fn ping(&self) -> Result<(), StorageError> {
        self.get(crate::storage::PING_KEY).await.map(drop)
    }
}

/// [`FusedSteps`](crate::FusedSteps), async: the breaker's fused steps as a
/// storage that can do better than the default bodies runs them. Where one
/// step has nothing better to offer, call its default body in
/// [`crate::kv::nonblocking`].
#[async_trait]
pub trait AsyncFusedSteps: Send + Sync {
    /// May a call run? See [`Steps::admit`](crate::Steps::admit).
    async fn admit(
        &self,
        circuit: &Circuit,
    ) -> Result<(Admission, Option<Transition>), StorageError>;

    /// Counts an outcome. See [`Steps::record`](crate::Steps::record).
    async fn record(
        &self,
        circuit: &Circuit,
        permit: Permit,
        outcome: Outcome,
        rule: &dyn Rule,
    ) -> Result<Option<Transition>, StorageError>;

    /// Gives back the permit of a call that ended without a verdict.
    async fn release(&self, circuit: &Circuit, permit: Permit) -> Result<(), StorageError>;

    /// Opens the circuit for its circuit timeout and starts a fresh window.
    async fn open_circuit(&self, circuit: &Circuit) -> Result<(), StorageError>;

    /// The circuit's state as the store sees it now.
    async fn state(&self, circuit: &Circuit) -> Result<State, StorageError>;

    /// The counts of the circuit's current window.
    async fn counts(&self, circuit: &Circuit) -> Result<Counts, StorageError>;

    /// Deletes the circuit's keys that hold garbage. See [`Steps::repair`](crate::Steps::repair).
    async fn repair(&self, circuit: &Circuit) -> Result<(), StorageError>;

    /// Changes the circuit's state by hand, for every breaker sharing it.
    async fn set_manual(
        &self,
        circuit: &Circuit,
        manual: Manual,
    ) -> Result<Option<Transition>, StorageError>;

    /// Deletes the circuit's keys, and nothing else.
    async fn reset(&self, circuit: &Circuit) -> Result<(), StorageError>;

    /// See [`Steps::sync`](crate::Steps::sync). The default, `None`, has
    /// the breaker run the default body over the primitives; a store that
    /// can do it in one round trip returns `Some`.
    async fn sync(
        &self,
        circuit: &Circuit,
        batch: &SyncBatch<'_>,
        rule: &dyn Rule,
    ) -> Option<Result<Snapshot, StorageError>> {
        let _ = (circuit, batch, rule);
        None
    }

    /// See [`Steps::sync_many`](crate::Steps::sync_many). The default,
    /// `None`, has the breaker run `sync` for each item in turn.
    async fn sync_many(
        &self,
        items: &[SyncItem<'_>],
    ) -> Option<alloc::vec::Vec<Result<Snapshot, StorageError>>> {
        let _ = items;
        None
    }

    /// See [`Steps::validate`](crate::Steps::validate). The default
    /// accepts every circuit.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](crate::ConfigError) that `build()` returns as is.
    fn validate(&self, circuit: &Circuit) -> Result<(), crate::ConfigError> {
        let _ = circuit;
        Ok(())
    }

    /// See [`Steps::local_circuit`](crate::Steps::local_circuit). The
    /// default is `None`.
    fn local_circuit(&self, circuit: &Circuit) -> Option<LocalBinding> {
        let _ = circuit;
        None
    }

    /// See [`Steps::register`](crate::Steps::register). The default writes
    /// nothing.
    async fn register(
        &self,
        circuit: &Circuit,
        entry: &crate::directory::Registration,
    ) -> Result<(), StorageError> {
        let _ = (circuit, entry);
        Ok(())
    }
}

/// [`Steps`](crate::Steps), async: the breaker's fused steps on any
/// [`AsyncStorage`], its own or the default bodies over its primitives.
#[async_trait]
pub trait AsyncSteps: AsyncStorage {
    /// May a call run? See [`Steps::admit`](crate::Steps::admit).
    async fn admit(
        &self,
        circuit: &Circuit,
    ) -> Result<(Admission, Option<Transition>), StorageError> {
        match self.fused_steps() {
            Some(own) => own.admit(circuit).await,
            None => kv::admit(self, circuit).await,
        }
    }

    /// Counts an outcome. See [`Steps::record`](crate::Steps::record).
    async fn record(
        &self,
        circuit: &Circuit,
        permit: Permit,
        outcome: Outcome,
        rule: &dyn Rule,
    ) -> Result<Option<Transition>, StorageError> {
        match self.fused_steps() {
            Some(own) => own.record(circuit, permit, outcome, rule).await,
            None => kv::record(self, circuit, permit, outcome, rule).await,
        }
    }

    /// Gives back the permit of a call that ended without a verdict.
    async fn release(&self, circuit: &Circuit, permit: Permit) -> Result<(), StorageError> {
        match self.fused_steps() {
            Some(own) => own.release(circuit, permit).await,
            None => kv::release(self, circuit, permit).await,
        }
    }

    /// Opens the circuit for its circuit timeout and starts a fresh window.
    async fn open_circuit(&self, circuit: &Circuit) -> Result<(), StorageError> {
        match self.fused_steps() {
            Some(own) => own.open_circuit(circuit).await,
            None => kv::open_circuit(self, circuit).await,
        }
    }

    /// The circuit's state as the store sees it now.
    async fn state(&self, circuit: &Circuit) -> Result<State, StorageError> {
        match self.fused_steps() {
            Some(own) => own.state(circuit).await,
            None => kv::state(self, circuit).await,
        }
    }

    /// The counts of the circuit's current window.
    async fn counts(&self, circuit: &Circuit) -> Result<Counts, StorageError> {
        match self.fused_steps() {
            Some(own) => own.counts(circuit).await,
            None => kv::counts(self, circuit).await,
        }
    }

    /// Deletes the circuit's keys that hold garbage. See [`Steps::repair`](crate::Steps::repair).
    async fn repair(&self, circuit: &Circuit) -> Result<(), StorageError> {
        match self.fused_steps() {
            Some(own) => own.repair(circuit).await,
            None => kv::repair(self, circuit).await,
        }
    }

    /// Changes the circuit's state by hand, for every breaker sharing it.
    async fn set_manual(
        &self,
        circuit: &Circuit,
        manual: Manual,
    ) -> Result<Option<Transition>, StorageError> {
        match self.fused_steps() {
            Some(own) => own.set_manual(circuit, manual).await,
            None => kv::set_manual(self, circuit, manual).await,
        }
    }

    /// Deletes the circuit's keys, and nothing else.
    async fn reset(&self, circuit: &Circuit) -> Result<(), StorageError> {
        match self.fused_steps() {
            Some(own) => own.reset(circuit).await,
            None => kv::reset(self, circuit).await,
        }
    }

    /// See [`Steps::sync`](crate::Steps::sync).
    async fn sync(
        &self,
        circuit: &Circuit,
        batch: &SyncBatch<'_>,
        rule: &dyn Rule,
    ) -> Result<Snapshot, StorageError> {
        if let Some(own) = self.fused_steps() {
            if let Some(answer) = own.sync(circuit, batch, rule).await {
                return answer;
            }
        }
        kv::sync(self, circuit, batch, rule).await
    }

    /// See [`Steps::sync_many`](crate::Steps::sync_many).
    async fn sync_many(
        &self,
        items: &[SyncItem<'_>],
    ) -> alloc::vec::Vec<Result<Snapshot, StorageError>> {
        if let Some(own) = self.fused_steps() {
            if let Some(answers) = own.sync_many(items).await {
                if answers.len() == items.len() {
                    return answers;
                }
            }
        }
        let mut answers = alloc::vec::Vec::with_capacity(items.len());
        for item in items {
            answers.push(self.sync(item.circuit, &item.batch, item.rule).await);
        }
        answers
    }

    /// See [`Steps::validate`](crate::Steps::validate).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](crate::ConfigError) that `build()` returns as is.
    fn validate(&self, circuit: &Circuit) -> Result<(), crate::ConfigError> {
        self.fused_steps()
            .map_or(Ok(()), |own| own.validate(circuit))
    }

    /// See [`Steps::local_circuit`](crate::Steps::local_circuit).
    fn local_circuit(&self, circuit: &Circuit) -> Option<LocalBinding> {
        self.fused_steps()
            .and_then(|own| own.local_circuit(circuit))
    }

    /// See [`Steps::register`](crate::Steps::register).
    async fn register(
        &self,
        circuit: &Circuit,
        entry: &crate::directory::Registration,
    ) -> Result<(), StorageError> {
        match self.fused_steps() {
            Some(own) => own.register(circuit, entry).await,
            None => Ok(()),
        }
    }
}

impl<S: AsyncStorage + ?Sized> AsyncSteps for S {}

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
            fn fused_steps(&self) -> Option<&dyn AsyncFusedSteps> {
                (**self).fused_steps()
            }
            fn sync_group(&self) -> usize {
                (**self).sync_group()
            }
            fn watch(&self, changed: Changed) -> Option<Watch> {
                (**self).watch(changed)
            }
            async fn ping(&self) -> Result<(), StorageError> {
                (**self).ping().await
            }
        }
    )*};
}

forward_async_storage!(&S, alloc::sync::Arc<S>, alloc::boxed::Box<S>);
