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

/// A storage over `MemoryStorage`'s primitives that can be switched to fail
/// (as a Redis that is down) and counts the primitives it is asked for.
#[derive(Debug)]
pub struct Faulty {
    pub inner: MemoryStorage,
    /// Every primitive fails with `Unavailable`.
    pub down: std::sync::atomic::AtomicBool,
    /// Writes (`incr`, `set`, `add`, `expire`, `delete`) fail; reads work.
    pub writes_down: std::sync::atomic::AtomicBool,
    /// Primitives asked for, failed or not.
    pub calls: std::sync::atomic::AtomicU64,
}

impl Faulty {
    pub fn new(inner: MemoryStorage) -> Self {
        Self {
            inner,
            down: Default::default(),
            writes_down: Default::default(),
            calls: Default::default(),
        }
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn check(&self, write: bool) -> Result<(), StorageError> {
        use std::sync::atomic::Ordering::SeqCst;
        self.calls.fetch_add(1, SeqCst);
        if self.down.load(SeqCst) || (write && self.writes_down.load(SeqCst)) {
            return Err(StorageError::new(
                lasier_sync::StorageErrorKind::Unavailable,
                "connection refused",
            ));
        }
        Ok(())
    }
}

impl Storage for Faulty {
    fn add(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<bool, StorageError> {
        self.check(true)?;
        self.inner.add(key, value, ttl)
    }
    fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError> {
        self.check(true)?;
        self.inner.set(key, value, ttl)
    }
    fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
        self.check(true)?;
        self.inner.incr(key, delta)
    }
    fn get(&self, key: &str) -> Result<Option<i64>, StorageError> {
        self.check(false)?;
        self.inner.get(key)
    }
    fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError> {
        self.check(true)?;
        self.inner.expire(key, ttl)
    }
    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.check(true)?;
        self.inner.delete(key)
    }
}

/// Records every event a breaker emits, in order.
#[derive(Debug, Default)]
pub struct Recorder(pub std::sync::Mutex<Vec<String>>);

impl Recorder {
    pub fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    fn push(&self, event: String) {
        self.0.lock().unwrap().push(event);
    }
}

impl lasier_sync::Listener for Recorder {
    fn on_state_change(&self, breaker: &str, from: lasier_sync::State, to: lasier_sync::State) {
        self.push(format!("{breaker}: {from} -> {to}"));
    }
    fn on_call_rejected(&self, breaker: &str, _: Option<Duration>) {
        self.push(format!("{breaker}: rejected"));
    }
    fn on_fallback_entered(&self, breaker: &str, error: &StorageError) {
        self.push(format!("{breaker}: fallback entered ({:?})", error.kind()));
    }
    fn on_fallback_left(&self, breaker: &str) {
        self.push(format!("{breaker}: fallback left"));
    }
    fn on_storage_error(&self, breaker: &str, error: &StorageError) {
        self.push(format!("{breaker}: storage error ({:?})", error.kind()));
    }
}
