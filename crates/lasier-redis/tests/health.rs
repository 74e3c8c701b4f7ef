//! Health on a real Redis: `ping()` answers within the step timeout, and
//! `metrics()` answers from what the breaker last read, with the error's
//! kind beside it, while the store hangs; in both facades, and on a
//! cluster.
#![cfg(all(feature = "sync", feature = "async"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use lasier_core::{AsyncStorage, State, Storage, StorageErrorKind};
use lasier_redis::{AsyncRedisStorage, Options, RedisStorage};
use lasier_sync::CircuitBreaker;
use support::{unique, Fault, Proxy};

const TIMEOUT: Duration = Duration::from_millis(200);

#[test]
fn ping_and_metrics_while_the_store_hangs() {
    let server = server_or_skip!();
    let proxy = Proxy::start(server.addr());
    let storage =
        RedisStorage::open_with_options(proxy.url(None), Options::new().timeout(TIMEOUT)).unwrap();
    storage.ping().unwrap();
    let breaker = CircuitBreaker::builder(unique("health"))
        .storage(storage.clone())
        .max_failures(5)
        .build()
        .unwrap();
    let _ = breaker.call(|| Err::<(), ()>(()));
    let read = breaker.metrics();
    assert_eq!((read.state, read.counts.failures), (State::Closed, 1));
    assert_eq!(read.store_error, None);

    proxy.set(Fault::Blackhole);
    let start = Instant::now();
    let error = storage.ping().unwrap_err();
    assert_eq!(error.kind(), StorageErrorKind::TimedOut, "{error}");
    let took = start.elapsed();
    assert!(took < TIMEOUT * 4, "ping took {took:?}");
    let down = breaker.metrics();
    assert_eq!(
        (down.state, down.counts.failures),
        (State::Closed, 1),
        "the last read"
    );
    assert_eq!(down.store_error, Some(StorageErrorKind::TimedOut));

    proxy.set(Fault::None);
    support::eventually("the store answers again", || storage.ping().is_ok());
    assert_eq!(breaker.metrics().store_error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_ping_and_metrics_while_the_store_hangs() {
    let server = server_or_skip!();
    let proxy = Proxy::start(server.addr());
    let storage = AsyncRedisStorage::connect_with_options(
        proxy.url(None).as_str(),
        Options::new().timeout(TIMEOUT),
    )
    .await
    .unwrap();
    storage.ping().await.unwrap();
    let breaker = lasier_async::CircuitBreaker::builder(unique("health-async"))
        .storage(storage.clone())
        .max_failures(5)
        .build()
        .unwrap();
    let _ = breaker.call(async { Err::<(), ()>(()) }).await;
    assert_eq!(breaker.metrics().await.counts.failures, 1);
    proxy.set(Fault::Blackhole);
    let error = storage.ping().await.unwrap_err();
    assert_eq!(error.kind(), StorageErrorKind::TimedOut, "{error}");
    let down = breaker.metrics().await;
    assert_eq!(down.counts.failures, 1, "the last read");
    assert_eq!(down.store_error, Some(StorageErrorKind::TimedOut));
    proxy.set(Fault::None);
}

#[cfg(feature = "cluster")]
#[test]
fn a_cluster_storage_pings() {
    let cluster = cluster_or_skip!();
    let storage = lasier_redis::ClusterRedisStorage::open(cluster.urls()).unwrap();
    storage.ping().unwrap();
}
