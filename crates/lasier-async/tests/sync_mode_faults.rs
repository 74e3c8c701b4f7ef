//! Sync mode on the async facade where calls are cancelled or runtimes
//! end: what a review proved wrong once, each case made to happen on
//! demand.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lasier_async::{async_trait, AsyncStorage, CircuitBreaker, MemoryStorage, StorageError};
use lasier_core::clock::ManualClock;
use support::PrimitivesOnly;

/// Primitives over MemoryStorage; `get` takes 50 ms while `slow` is set.
#[derive(Debug)]
struct Slow {
    inner: MemoryStorage,
    slow: AtomicBool,
}

#[async_trait]
impl AsyncStorage for Slow {
    async fn add(&self, k: &str, v: i64, t: Option<Duration>) -> Result<bool, StorageError> {
        AsyncStorage::add(&self.inner, k, v, t).await
    }
    async fn set(&self, k: &str, v: i64, t: Option<Duration>) -> Result<(), StorageError> {
        AsyncStorage::set(&self.inner, k, v, t).await
    }
    async fn incr(&self, k: &str, d: i64) -> Result<i64, StorageError> {
        AsyncStorage::incr(&self.inner, k, d).await
    }
    async fn get(&self, k: &str) -> Result<Option<i64>, StorageError> {
        if self.slow.load(SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        AsyncStorage::get(&self.inner, k).await
    }
    async fn expire(&self, k: &str, t: Duration) -> Result<(), StorageError> {
        AsyncStorage::expire(&self.inner, k, t).await
    }
    async fn delete(&self, k: &str) -> Result<(), StorageError> {
        AsyncStorage::delete(&self.inner, k).await
    }
}

#[tokio::test]
async fn a_call_cancelled_during_its_sync_gives_the_sync_back() {
    let clock = ManualClock::new();
    let store = Arc::new(Slow {
        inner: MemoryStorage::with_clock(clock.clone()),
        slow: AtomicBool::new(false),
    });
    let b = CircuitBreaker::builder("svc")
        .storage(Arc::clone(&store))
        .clock(clock.clone())
        .max_failures(3)
        .sync_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    b.call(async { Ok::<(), &str>(()) }).await.unwrap();
    for _ in 0..2 {
        let _ = b.call(async { Err::<(), &str>("boom") }).await;
    }
    // the third failure reaches the rule and syncs at once; the caller's
    // timeout cancels it mid-sync (a slow store)
    store.slow.store(true, SeqCst);
    let cancelled = tokio::time::timeout(
        Duration::from_millis(10),
        b.call(async { Err::<(), &str>("boom") }),
    )
    .await;
    assert!(cancelled.is_err(), "timed out");
    store.slow.store(false, SeqCst);
    // the store is fast again: flush should push the 3 failures
    let flushed = tokio::time::timeout(Duration::from_secs(2), b.flush()).await;
    assert!(
        flushed.is_ok(),
        "flush() hung: the cancelled sync's claim was never released"
    );
}

#[test]
fn a_storage_whose_task_died_with_its_runtime_gets_a_new_one() {
    let store = Arc::new(PrimitivesOnly(MemoryStorage::new()));
    let build = || {
        CircuitBreaker::builder("svc")
            .storage(Arc::clone(&store))
            .max_failures(100)
            .sync_interval(Duration::from_millis(20))
            .build()
            .unwrap()
    };
    // first used in a runtime that then ends (a #[tokio::test], a setup runtime)
    let a = build();
    let rt1 = tokio::runtime::Runtime::new().unwrap();
    rt1.block_on(a.call(async { Ok::<(), &str>(()) })).unwrap();
    drop(rt1);
    // the application's runtime
    let rt2 = tokio::runtime::Runtime::new().unwrap();
    rt2.block_on(async {
        let b = build();
        b.call(async { Ok::<(), &str>(()) }).await.unwrap();
        // another process opens the circuit by hand
        let other = build();
        other.force_open().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        while b.call(async { Ok::<(), &str>(()) }).await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "b never learnt the circuit is forced open (no background sync)"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    drop(a);
}
