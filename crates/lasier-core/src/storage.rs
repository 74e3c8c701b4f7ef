//! Where a circuit's state lives: the [`Storage`] trait, for blocking code.
//!
//! # Why a trait
//!
//! A circuit shared by a fleet lives in a shared store (Redis); a circuit of
//! one process lives in memory. The breaker talks to either through this
//! trait, which keeps the Python original's six primitives (`add`, `set`,
//! `incr`, `get`, `expire`, `delete`) so that any key-value store with
//! counters and TTLs can hold a circuit. There is no `flushdb`: a breaker
//! never wipes a store; [`Steps::reset`] deletes one circuit's keys.
//!
//! The breaker needs more than primitives: *fused steps* ([`Steps::admit`],
//! [`Steps::record`], [`Steps::open_circuit`], ...), which [`Steps`] gives
//! every storage. Their default bodies compose the primitives (see
//! [`crate::kv`]), so a storage that implements only the six primitives
//! works. A store that can do better (one Lua script round trip in Redis, or
//! circuits kept in this process) implements [`FusedSteps`] too, and says
//! so in [`Storage::fused_steps`]; the breaker then uses its steps instead.
//!
//! # The contract
//!
//! * `add` writes only when the key is absent, and says whether it wrote.
//! * `incr` adds `delta` atomically, treating a missing key as 0, and keeps
//!   the key's TTL. It never loses an increment under concurrent callers.
//! * TTLs are honoured to the millisecond (rounding up is fine): a key
//!   reads as missing from its deadline on.
//! * `get` of a missing or expired key is `Ok(None)`; a value that is not an
//!   integer is `Err` with [`StorageErrorKind::Corrupt`].
//! * `expire` of a missing key does nothing.
//!
//! `lasier-testkit` checks all of this in one line of your tests.
//!
//! # A complete storage
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::Mutex;
//! use std::time::{Duration, Instant};
//!
//! use lasier_core::{Storage, StorageError};
//!
//! #[derive(Debug, Default)]
//! struct MapStorage {
//!     entries: Mutex<HashMap<String, (i64, Option<Instant>)>>,
//! }
//!
//! impl MapStorage {
//!     fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, (i64, Option<Instant>)>) -> T) -> T {
//!         let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
//!         let now = Instant::now();
//!         map.retain(|_, (_, deadline)| deadline.map_or(true, |d| d > now));
//!         f(&mut map)
//!     }
//! }
//!
//! fn deadline(ttl: Option<Duration>) -> Option<Instant> {
//!     ttl.map(|ttl| Instant::now() + ttl)
//! }
//!
//! impl Storage for MapStorage {
//!     fn add(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<bool, StorageError> {
//!         Ok(self.with(|m| {
//!             if m.contains_key(key) {
//!                 return false;
//!             }
//!             m.insert(key.to_owned(), (value, deadline(ttl)));
//!             true
//!         }))
//!     }
//!     fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError> {
//!         self.with(|m| m.insert(key.to_owned(), (value, deadline(ttl))));
//!         Ok(())
//!     }
//!     fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
//!         self.with(|m| {
//!             let entry = m.entry(key.to_owned()).or_insert((0, None));
//!             entry.0 = entry.0.checked_add(delta).ok_or_else(|| StorageError::corrupt(key, "overflow"))?;
//!             Ok(entry.0)
//!         })
//!     }
//!     fn get(&self, key: &str) -> Result<Option<i64>, StorageError> {
//!         Ok(self.with(|m| m.get(key).map(|(v, _)| *v)))
//!     }
//!     fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError> {
//!         self.with(|m| m.get_mut(key).map(|e| e.1 = deadline(Some(ttl))));
//!         Ok(())
//!     }
//!     fn delete(&self, key: &str) -> Result<(), StorageError> {
//!         self.with(|m| m.remove(key));
//!         Ok(())
//!     }
//! }
//! ```

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::fmt;
use core::time::Duration;

use lasier_rules::{Counts, Rule};

use crate::config::Circuit;
use crate::directory::Registration;
use crate::error::StorageError;
#[allow(unused_imports)] // used by the docs
use crate::error::StorageErrorKind;
use crate::kv::blocking as kv;
use crate::local::LocalBinding;
use crate::state::{Admission, Manual, Outcome, Permit, Snapshot, State, SyncBatch, Transition};

/// One breaker's sync among several that a storage may run together (in
/// one pipelined round trip): see
/// [`FusedSteps::sync_many`].
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct SyncItem<'a> {
    /// The breaker's circuit.
    pub circuit: &'a Circuit,
    /// What it sends.
    pub batch: SyncBatch<'a>,
    /// Its rule.
    pub rule: &'a dyn Rule,
}

impl<'a> SyncItem<'a> {
    /// The sync of `batch` on `circuit` under `rule`.
    pub fn new(circuit: &'a Circuit, batch: SyncBatch<'a>, rule: &'a dyn Rule) -> Self {
        Self {
            circuit,
            batch,
            rule,
        }
    }
}

impl core::fmt::Debug for SyncItem<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SyncItem")
            .field("circuit", self.circuit.name())
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

/// A blocking store for circuit state: six primitives. See the
/// [module docs](self) for the contract and a complete implementation.
pub trait Storage: fmt::Debug + Send + Sync {
    /// Sets `key` to `value` with an optional TTL, only if it is absent.
    /// Returns whether it wrote.
    fn add(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<bool, StorageError>;

    /// Sets `key` to `value` with an optional TTL.
    fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError>;

    /// Adds `delta` to `key` (a missing key counts as 0), keeping its TTL;
    /// returns the new value.
    fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError>;

    /// The value at `key`, or `None` if it is missing or expired.
    fn get(&self, key: &str) -> Result<Option<i64>, StorageError>;

    /// Sets the TTL of `key`, if it exists.
    fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError>;

    /// Deletes `key`.
    fn delete(&self, key: &str) -> Result<(), StorageError>;

    /// The fused steps this storage runs itself, if it has any (a script
    /// per step, or circuits kept in this process): the breaker uses them
    /// instead of the default bodies over the primitives. The default,
    /// `None`, is right for a storage that only has the six primitives.
    fn fused_steps(&self) -> Option<&dyn FusedSteps> {
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

    /// Has the store tell `changed` each time someone changes a circuit's
    /// state in it (an opening, the trials' verdict, a mode set by hand, a
    /// reset), for as long as the returned [`Watch`] lives. Breakers in
    /// sync mode on this storage then refresh their mirror about one round
    /// trip after the change, instead of at their next sync. Called once
    /// per [`sync_group`](Self::sync_group), by the group's background
    /// thread (or task).
    ///
    /// The default, `None`, is right for a store that cannot push: changes
    /// are then seen at the next sync, within one sync interval.
    fn watch(&self, changed: Changed) -> Option<Watch> {
        let _ = changed;
        None
    }

    /// A readiness check: whether the store answers now, within the
    /// storage's own timeout (a health endpoint's question). The default
    /// reads a key no breaker writes (`lasier:ping`); a store with a
    /// cheaper check (Redis' `PING`) says so.
    ///
    /// # Errors
    ///
    /// The store's error, as any step would report it.
    fn ping(&self) -> Result<(), StorageError> {
        self.get(PING_KEY).map(drop)
    }
}

/// The key [`Storage::ping`]'s default body reads: no breaker writes it.
pub const PING_KEY: &str = "lasier:ping";

/// What a store pushes to [`Storage::watch`]'s callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change<'a> {
    /// The state of the circuit of this name changed.
    Circuit(&'a str),
    /// Any circuit may have changed: the feed was (re)connected, and what
    /// happened while it was down is unknown.
    All,
}

/// The callback a storage calls with each [`Change`], from its own thread:
/// it must return quickly (it only marks breakers for a sync).
pub type Changed = Arc<dyn Fn(Change<'_>) + Send + Sync>;

/// A running feed of changes from [`Storage::watch`]: dropping it stops the
/// feed (at once, or within the storage's own polling period).
pub struct Watch(#[allow(dead_code)] Box<dyn Send + Sync>);

impl Watch {
    /// A feed that stops when `guard` is dropped.
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        Self(Box::new(guard))
    }
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Watch")
    }
}

/// The breaker's fused steps, as a storage that can do better than the
/// default bodies runs them (one Lua script round trip each in Redis; the
/// lock-free circuit of `MemoryStorage`). Implement it beside [`Storage`]
/// and return `Some(self)` from [`Storage::fused_steps`]. Where one step
/// has nothing better to offer, call its default body in
/// [`crate::kv::blocking`].
///
/// A trial permit carries the episode number of its lease; `record` and
/// `release` must ignore a trial permit of another lease than the current
/// one (one that outlived its lease must not act on the next).
pub trait FusedSteps: Send + Sync {
    /// May a call run? Returns the decision and the state change it
    /// caused, if known.
    fn admit(&self, circuit: &Circuit) -> Result<(Admission, Option<Transition>), StorageError>;

    /// Counts how a call admitted with `permit` ended, asks `rule` on the
    /// counts after a failure, and opens, closes or reopens the circuit as
    /// the state machine says. Returns the state change, if any.
    fn record(
        &self,
        circuit: &Circuit,
        permit: Permit,
        outcome: Outcome,
        rule: &dyn Rule,
    ) -> Result<Option<Transition>, StorageError>;

    /// Gives back the permit of a call that ended without a verdict.
    fn release(&self, circuit: &Circuit, permit: Permit) -> Result<(), StorageError>;

    /// Opens the circuit for its circuit timeout and starts a fresh window.
    fn open_circuit(&self, circuit: &Circuit) -> Result<(), StorageError>;

    /// The circuit's state as the store sees it now.
    fn state(&self, circuit: &Circuit) -> Result<State, StorageError>;

    /// The counts of the circuit's current window.
    fn counts(&self, circuit: &Circuit) -> Result<Counts, StorageError>;

    /// Deletes those of the circuit's keys that hold what the breaker
    /// cannot have written, so that the next window starts clean.
    fn repair(&self, circuit: &Circuit) -> Result<(), StorageError>;

    /// Changes the circuit's state by hand, for every breaker sharing it.
    fn set_manual(
        &self,
        circuit: &Circuit,
        manual: Manual,
    ) -> Result<Option<Transition>, StorageError>;

    /// Deletes the circuit's keys, and nothing else.
    fn reset(&self, circuit: &Circuit) -> Result<(), StorageError>;

    /// See [`Steps::sync`]. The default, `None`, has the breaker run the
    /// default body over the primitives ([`crate::kv::blocking::sync`]);
    /// a store that can do it in one round trip returns `Some`.
    fn sync(
        &self,
        circuit: &Circuit,
        batch: &SyncBatch<'_>,
        rule: &dyn Rule,
    ) -> Option<Result<Snapshot, StorageError>> {
        let _ = (circuit, batch, rule);
        None
    }

    /// See [`Steps::sync_many`]. The default, `None`, has the breaker run
    /// [`sync`](Self::sync) (or its default body) for each item in turn; a
    /// store that can run them in one round trip (a pipeline) returns one
    /// answer per item, in order.
    fn sync_many(
        &self,
        items: &[SyncItem<'_>],
    ) -> Option<alloc::vec::Vec<Result<Snapshot, StorageError>>> {
        let _ = items;
        None
    }

    /// See [`Steps::validate`]. The default accepts every circuit.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](crate::ConfigError) that `build()` returns as is.
    fn validate(&self, circuit: &Circuit) -> Result<(), crate::ConfigError> {
        let _ = circuit;
        Ok(())
    }

    /// See [`Steps::local_circuit`]. The default is `None`.
    fn local_circuit(&self, circuit: &Circuit) -> Option<LocalBinding> {
        let _ = circuit;
        None
    }

    /// See [`Steps::register`]. The default writes nothing.
    fn register(&self, circuit: &Circuit, entry: &Registration) -> Result<(), StorageError> {
        let _ = (circuit, entry);
        Ok(())
    }
}

/// The breaker's fused steps on any [`Storage`]: its own
/// ([`Storage::fused_steps`]), or the default bodies over its primitives.
/// Every storage has it; this is what the breaker calls, and what a test
/// of a storage calls.
pub trait Steps: Storage {
    /// May a call run? Returns the decision and the state change it
    /// caused, if known. A trial permit carries the episode number of its
    /// lease (see [`FusedSteps`]).
    fn admit(&self, circuit: &Circuit) -> Result<(Admission, Option<Transition>), StorageError> {
        match self.fused_steps() {
            Some(own) => own.admit(circuit),
            None => kv::admit(self, circuit),
        }
    }

    /// Counts how a call admitted with `permit` ended, asks `rule` on the
    /// counts after a failure, and opens, closes or reopens the circuit as
    /// the state machine says. Returns the state change, if any.
    fn record(
        &self,
        circuit: &Circuit,
        permit: Permit,
        outcome: Outcome,
        rule: &dyn Rule,
    ) -> Result<Option<Transition>, StorageError> {
        match self.fused_steps() {
            Some(own) => own.record(circuit, permit, outcome, rule),
            None => kv::record(self, circuit, permit, outcome, rule),
        }
    }

    /// Gives back the permit of a call that ended without a verdict.
    fn release(&self, circuit: &Circuit, permit: Permit) -> Result<(), StorageError> {
        match self.fused_steps() {
            Some(own) => own.release(circuit, permit),
            None => kv::release(self, circuit, permit),
        }
    }

    /// Opens the circuit for its circuit timeout and starts a fresh window.
    fn open_circuit(&self, circuit: &Circuit) -> Result<(), StorageError> {
        match self.fused_steps() {
            Some(own) => own.open_circuit(circuit),
            None => kv::open_circuit(self, circuit),
        }
    }

    /// The circuit's state as the store sees it now.
    fn state(&self, circuit: &Circuit) -> Result<State, StorageError> {
        match self.fused_steps() {
            Some(own) => own.state(circuit),
            None => kv::state(self, circuit),
        }
    }

    /// The counts of the circuit's current window.
    fn counts(&self, circuit: &Circuit) -> Result<Counts, StorageError> {
        match self.fused_steps() {
            Some(own) => own.counts(circuit),
            None => kv::counts(self, circuit),
        }
    }

    /// Deletes those of the circuit's keys that hold what the breaker
    /// cannot have written (text in a counter, a negative count, an open
    /// flag other than `1`), so that the next window starts clean. The
    /// breaker calls it after a storage error of kind
    /// [`Corrupt`](StorageErrorKind::Corrupt).
    fn repair(&self, circuit: &Circuit) -> Result<(), StorageError> {
        match self.fused_steps() {
            Some(own) => own.repair(circuit),
            None => kv::repair(self, circuit),
        }
    }

    /// Changes the circuit's state by hand, for every breaker sharing it:
    /// forced open, closed (counters emptied), or disabled. Returns the
    /// change, if any.
    fn set_manual(
        &self,
        circuit: &Circuit,
        manual: Manual,
    ) -> Result<Option<Transition>, StorageError> {
        match self.fused_steps() {
            Some(own) => own.set_manual(circuit, manual),
            None => kv::set_manual(self, circuit, manual),
        }
    }

    /// Deletes the circuit's keys, and nothing else.
    fn reset(&self, circuit: &Circuit) -> Result<(), StorageError> {
        match self.fused_steps() {
            Some(own) => own.reset(circuit),
            None => kv::reset(self, circuit),
        }
    }

    /// The step of a breaker in sync mode (`sync_interval`): adds `batch`,
    /// the outcomes of calls this process admitted as normal calls since
    /// its last answered sync (failures, and requests if the rule counts
    /// them), to the shared window, each part of it once (see
    /// [`SyncBatch`]); asks `rule` on the fleet-wide counts if the batch
    /// holds a failure, and opens the circuit if it says so; and returns
    /// the shared state. As with [`record`](Self::record), nothing is
    /// counted while the circuit is open, half-open or forced open; all
    /// is counted, and nothing trips, while it is disabled.
    fn sync(
        &self,
        circuit: &Circuit,
        batch: &SyncBatch<'_>,
        rule: &dyn Rule,
    ) -> Result<Snapshot, StorageError> {
        match self
            .fused_steps()
            .and_then(|own| own.sync(circuit, batch, rule))
        {
            Some(answer) => answer,
            None => kv::sync(self, circuit, batch, rule),
        }
    }

    /// The syncs of several breakers due together (a facade's background
    /// pass): one answer per item, in order. In one round trip where the
    /// storage can pipeline them, else one [`sync`](Self::sync) each.
    fn sync_many(&self, items: &[SyncItem<'_>]) -> alloc::vec::Vec<Result<Snapshot, StorageError>> {
        if let Some(answers) = self.fused_steps().and_then(|own| own.sync_many(items)) {
            if answers.len() == items.len() {
                return answers;
            }
        }
        items
            .iter()
            .map(|item| self.sync(item.circuit, &item.batch, item.rule))
            .collect()
    }

    /// Checks, when a breaker is built, that this storage can hold
    /// `circuit` (a Redis Cluster needs all of a circuit's keys in one hash
    /// slot, for example). Without fused steps, every circuit.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](crate::ConfigError) that `build()` returns as is;
    /// its message should say how to fix the configuration.
    fn validate(&self, circuit: &Circuit) -> Result<(), crate::ConfigError> {
        self.fused_steps()
            .map_or(Ok(()), |own| own.validate(circuit))
    }

    /// For storages that keep circuits in this process: the circuit's
    /// lock-free state, which the breaker then uses directly, bypassing the
    /// steps above. Called once, when a breaker is built.
    fn local_circuit(&self, circuit: &Circuit) -> Option<LocalBinding> {
        self.fused_steps()
            .and_then(|own| own.local_circuit(circuit))
    }

    /// Writes `circuit`'s entry in the store's directory of circuits (see
    /// [`crate::directory`]), with a TTL, replacing the previous one. The
    /// breaker calls it off its calls' path, when built and at most once
    /// per window after; an error is not reported to any caller. Without
    /// fused steps, nothing is written.
    fn register(&self, circuit: &Circuit, entry: &Registration) -> Result<(), StorageError> {
        self.fused_steps()
            .map_or(Ok(()), |own| own.register(circuit, entry))
    }
}

impl<S: Storage + ?Sized> Steps for S {}

macro_rules! forward_storage {
    ($($ptr:ty),*) => {$(
        impl<S: Storage + ?Sized> Storage for $ptr {
            fn add(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<bool, StorageError> {
                (**self).add(key, value, ttl)
            }
            fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError> {
                (**self).set(key, value, ttl)
            }
            fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
                (**self).incr(key, delta)
            }
            fn get(&self, key: &str) -> Result<Option<i64>, StorageError> {
                (**self).get(key)
            }
            fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError> {
                (**self).expire(key, ttl)
            }
            fn delete(&self, key: &str) -> Result<(), StorageError> {
                (**self).delete(key)
            }
            fn fused_steps(&self) -> Option<&dyn FusedSteps> {
                (**self).fused_steps()
            }
            fn sync_group(&self) -> usize {
                (**self).sync_group()
            }
            fn watch(&self, changed: Changed) -> Option<Watch> {
                (**self).watch(changed)
            }
            fn ping(&self) -> Result<(), StorageError> {
                (**self).ping()
            }
        }
    )*};
}

forward_storage!(&S, alloc::sync::Arc<S>, alloc::boxed::Box<S>);
