//! Breakers of `lasier-async` on an `AsyncMokaStorage`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use lasier_async::{CircuitBreaker, Error, State};
use lasier_moka::AsyncMokaStorage;

fn breaker(storage: &AsyncMokaStorage, host: &str) -> CircuitBreaker {
    CircuitBreaker::builder(host)
        .storage(storage.clone())
        .max_failures(2)
        .circuit_timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn refused() -> Result<(), &'static str> {
    Err("connection refused")
}

#[tokio::test]
async fn an_async_breaker_opens_on_moka_and_other_hosts_are_unaffected() {
    let storage = AsyncMokaStorage::with_capacity(1_000);
    let down = breaker(&storage, "images.internal");
    let up = breaker(&storage, "search.internal");
    for _ in 0..2 {
        assert!(matches!(down.call(refused()).await, Err(Error::Inner(_))));
    }
    assert_eq!(down.state().await.unwrap(), State::Open);
    assert!(down
        .call(async { Ok::<_, ()>(()) })
        .await
        .unwrap_err()
        .is_open());
    assert_eq!(up.call(async { Ok::<_, ()>(1) }).await.unwrap(), 1);
    assert_eq!(up.counts().await.unwrap().failures, 0);
    assert_eq!(
        breaker(&storage, "images.internal").state().await.unwrap(),
        State::Open
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_failures_are_all_counted() {
    let storage = AsyncMokaStorage::with_capacity(1_000);
    let b = CircuitBreaker::builder("busy.internal")
        .storage(storage)
        .max_failures(1_000)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    let _ = b.call(refused()).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(b.counts().await.unwrap().failures, 400);
}
