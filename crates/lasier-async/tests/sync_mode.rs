//! Sync mode (`sync_interval`) on the async facade: the async twin of
//! lasier-sync's tests/sync_mode.rs, on a store of primitives and a manual
//! clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use lasier_async::{CircuitBreaker, Counts, Error, MemoryStorage, State, StorageFailurePolicy};
use lasier_core::clock::ManualClock;
use support::Faulty;

const SEC: Duration = Duration::from_secs(1);

fn breaker(clock: &ManualClock, store: &Arc<Faulty>) -> CircuitBreaker {
    CircuitBreaker::builder("svc")
        .storage(Arc::clone(store))
        .clock(clock.clone())
        .max_failures(3)
        .circuit_timeout(10 * SEC)
        .sync_interval(Duration::from_millis(100))
        .on_storage_failure(StorageFailurePolicy::FailOpen)
        .build()
        .unwrap()
}

async fn shared_counts(store: &Arc<Faulty>) -> Counts {
    CircuitBreaker::builder("svc")
        .storage(Arc::clone(store))
        .max_failures(3)
        .build()
        .unwrap()
        .counts()
        .await
        .unwrap()
}

async fn ok(b: &CircuitBreaker) -> Result<(), Error<&'static str>> {
    b.call(async { Ok::<(), &str>(()) }).await
}

async fn fail(b: &CircuitBreaker) -> Result<(), Error<&'static str>> {
    b.call(async { Err::<(), &str>("boom") }).await
}

#[tokio::test]
async fn the_closed_path_asks_the_store_nothing_and_the_fleet_trips_together() {
    let clock = ManualClock::new();
    let store = Arc::new(Faulty::new(MemoryStorage::with_clock(clock.clone())));
    let a = breaker(&clock, &store);
    let b = breaker(&clock, &store);
    ok(&a).await.unwrap();
    ok(&b).await.unwrap();
    let calls = store.calls();
    for _ in 0..1000 {
        ok(&a).await.unwrap();
    }
    fail(&a).await.unwrap_err();
    fail(&a).await.unwrap_err();
    assert_eq!(store.calls(), calls);
    a.flush().await.unwrap();
    assert_eq!(shared_counts(&store).await.failures, 2);
    b.flush().await.unwrap();
    // b knows of a's 2: its own first failure trips at once
    fail(&b).await.unwrap_err();
    assert_eq!(b.state().await.unwrap(), State::Open);
    assert!(ok(&b).await.unwrap_err().is_open());
    a.flush().await.unwrap();
    assert!(ok(&a).await.unwrap_err().is_open());
}

#[tokio::test]
async fn a_failed_sync_keeps_its_batch_and_flush_pushes_it() {
    let clock = ManualClock::new();
    let store = Arc::new(Faulty::new(MemoryStorage::with_clock(clock.clone())));
    let a = breaker(&clock, &store);
    ok(&a).await.unwrap();
    fail(&a).await.unwrap_err();
    store.set_down(true);
    assert!(a.flush().await.is_err());
    fail(&a).await.unwrap_err();
    store.set_down(false);
    a.flush().await.unwrap();
    assert_eq!(shared_counts(&store).await.failures, 2);
    assert_eq!(a.metrics().await.dropped, 0);
}

/// On the real clock: the background task pushes a busy breaker's
/// outcomes within about an interval, and brings another process's
/// change back as fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_pushes_and_refreshes_about_once_an_interval() {
    let store = Arc::new(Faulty::new(MemoryStorage::new()));
    let build = || {
        CircuitBreaker::builder("svc")
            .storage(Arc::clone(&store))
            .max_failures(100)
            .sync_interval(Duration::from_millis(20))
            .build()
            .unwrap()
    };
    let (a, b) = (build(), build());
    ok(&a).await.unwrap();
    ok(&b).await.unwrap();
    fail(&a).await.unwrap_err();
    let deadline = std::time::Instant::now() + 5 * SEC;
    while shared_counts(&store).await.failures != 1 {
        assert!(std::time::Instant::now() < deadline, "never pushed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.force_open().await.unwrap();
    while ok(&b).await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "never refreshed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
