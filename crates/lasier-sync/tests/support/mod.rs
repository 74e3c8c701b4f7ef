//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use lasier_core::clock::ManualClock;
use lasier_sync::{MemoryStorage, Storage, StorageError};

/// Forwards the six primitives to a `MemoryStorage` and nothing else, so a
/// breaker on it runs the default fused steps over the primitives: the path
/// every third-party storage takes.
#[derive(Debug, Clone)]
pub struct PrimitivesOnly(pub MemoryStorage);

impl Storage for PrimitivesOnly {
    fn add(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<bool, StorageError> {
        self.0.add(key, value, ttl)
    }
    fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError> {
        self.0.set(key, value, ttl)
    }
    fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
        self.0.incr(key, delta)
    }
    fn get(&self, key: &str) -> Result<Option<i64>, StorageError> {
        self.0.get(key)
    }
    fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError> {
        self.0.expire(key, ttl)
    }
    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.0.delete(key)
    }
}

/// Which engine a breaker under test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `MemoryStorage`: the lock-free in-process circuit.
    Local,
    /// The default fused steps over the primitives.
    Primitives,
}

pub const KINDS: [Kind; 2] = [Kind::Local, Kind::Primitives];

/// A storage of `kind` on `clock`.
pub fn storage(kind: Kind, clock: &ManualClock) -> Box<dyn Storage> {
    let memory = MemoryStorage::with_clock(clock.clone());
    match kind {
        Kind::Local => Box::new(memory),
        Kind::Primitives => Box::new(PrimitivesOnly(memory)),
    }
}
