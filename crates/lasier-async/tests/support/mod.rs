//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use lasier_async::{async_trait, AsyncStorage, MemoryStorage, StorageError};
use lasier_core::clock::ManualClock;

/// Forwards the six primitives to a `MemoryStorage` and nothing else, so a
/// breaker on it runs the default fused steps over the primitives: the path
/// every third-party storage takes. Each primitive yields to the runtime
/// first, as a round trip to a real store would, so that concurrent tasks
/// interleave between the primitives of one step.
#[derive(Debug, Clone)]
pub struct PrimitivesOnly(pub MemoryStorage);

#[async_trait]
impl AsyncStorage for PrimitivesOnly {
    async fn add(
        &self,
        key: &str,
        value: i64,
        ttl: Option<Duration>,
    ) -> Result<bool, StorageError> {
        tokio::task::yield_now().await;
        AsyncStorage::add(&self.0, key, value, ttl).await
    }
    async fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError> {
        tokio::task::yield_now().await;
        AsyncStorage::set(&self.0, key, value, ttl).await
    }
    async fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
        tokio::task::yield_now().await;
        AsyncStorage::incr(&self.0, key, delta).await
    }
    async fn get(&self, key: &str) -> Result<Option<i64>, StorageError> {
        tokio::task::yield_now().await;
        AsyncStorage::get(&self.0, key).await
    }
    async fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError> {
        tokio::task::yield_now().await;
        AsyncStorage::expire(&self.0, key, ttl).await
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        tokio::task::yield_now().await;
        AsyncStorage::delete(&self.0, key).await
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
pub fn storage(kind: Kind, clock: &ManualClock) -> Box<dyn AsyncStorage> {
    let memory = MemoryStorage::with_clock(clock.clone());
    match kind {
        Kind::Local => Box::new(memory),
        Kind::Primitives => Box::new(PrimitivesOnly(memory)),
    }
}
