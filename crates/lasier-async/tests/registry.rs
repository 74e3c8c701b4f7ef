//! The per-key registry: one breaker per key, built once, bounded in size
//! and idle time, and fair to a key in use while others churn. Idle time
//! runs on a manual clock: no test sleeps. The same tests as lasier-sync's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lasier_async::{CircuitBreaker, Error, MemoryStorage, Registry, State};
use lasier_core::clock::ManualClock;
use tokio::sync::Barrier;

const SEC: Duration = Duration::from_secs(1);
/// Long enough that no open circuit here half-opens while a test runs.
const HOUR: Duration = Duration::from_secs(3600);

async fn fail(b: &CircuitBreaker) {
    let r: Result<(), Error<&str>> = b.call(async { Err("boom") }).await;
    assert!(matches!(r, Err(Error::Inner("boom"))), "{r:?}");
}

fn hosts(capacity: usize, max_failures: u64) -> Registry {
    Registry::with_limits(
        move |host| {
            CircuitBreaker::builder(format!("http:{host}"))
                .max_failures(max_failures)
                .circuit_timeout(HOUR)
        },
        capacity,
        HOUR,
    )
}

/// Uses `n` keys never seen before, numbered on from `next`.
fn churn(hosts: &Registry, next: &mut usize, n: usize) {
    for _ in 0..n {
        *next += 1;
        hosts.get(&format!("once-{next}")).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn a_new_key_is_built_once_however_many_tasks_ask_for_it() {
    let built = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&built);
    let hosts = Arc::new(Registry::new(move |host| {
        counter.fetch_add(1, Ordering::SeqCst);
        CircuitBreaker::builder(format!("http:{host}"))
            .max_failures(8)
            .circuit_timeout(HOUR)
    }));
    let start = Arc::new(Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (hosts, start) = (Arc::clone(&hosts), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                for _ in 0..1_000 {
                    hosts.get("new").unwrap();
                }
                // one failure from each task: one circuit counts all eight
                fail(&hosts.get("new").unwrap()).await;
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(built.load(Ordering::SeqCst), 1);
    assert_eq!(
        hosts.get("new").unwrap().state().await.unwrap(),
        State::Open
    );
    assert_eq!(hosts.len(), 1);
}

#[tokio::test]
async fn it_holds_at_most_its_capacity() {
    let hosts = hosts(1_000, 5);
    assert_eq!(hosts.capacity(), 1_000);
    let mut next = 0;
    for _ in 0..10 {
        churn(&hosts, &mut next, 1_000);
        assert!(hosts.len() <= 1_000, "{hosts:?}");
    }
    assert!(hosts.len() >= 900, "{hosts:?}");
    // a small capacity is exact too
    let one = self::hosts(1, 5);
    churn(&one, &mut next, 10);
    assert_eq!(one.len(), 1);
}

#[tokio::test]
async fn idle_breakers_go_only_if_their_circuit_holds_nothing() {
    let clock = ManualClock::new();
    let circuits = clock.clone();
    let hosts = Registry::with_clock(
        move |host| {
            CircuitBreaker::builder(format!("http:{host}"))
                .max_failures(1)
                .circuit_timeout(HOUR)
                .clock(circuits.clone())
        },
        100,
        60 * SEC,
        clock.clone(),
    );
    fail(&hosts.get("open").unwrap()).await;
    hosts
        .get("quiet")
        .unwrap()
        .call(async { Ok::<_, ()>(()) })
        .await
        .unwrap();
    clock.advance(90 * SEC);
    // idle, not forgotten: an open (later half-open) circuit stays so
    assert_eq!(
        hosts.get("open").unwrap().state().await.unwrap(),
        State::Open
    );
    clock.advance(90 * SEC);
    hosts.remove_idle();
    assert_eq!(hosts.len(), 1, "the quiet one goes, the open one stays");
    clock.advance(2 * HOUR);
    hosts.remove_idle();
    assert_eq!(hosts.len(), 1);
    assert_eq!(
        hosts.get("open").unwrap().state().await.unwrap(),
        State::HalfOpen
    );
}

#[tokio::test]
async fn a_failing_key_keeps_its_counts_while_other_keys_churn() {
    let hosts = hosts(1_000, 5);
    // a busy registry: full of keys that are used more than once
    for i in 0..1_000 {
        let key = format!("busy-{i}");
        hosts.get(&key).unwrap();
        hosts.get(&key).unwrap();
    }
    let mut next = 0;
    // Its second use comes within the probation queue (a tenth of the
    // capacity, 100 here) of new keys; from then on, no number of keys seen
    // once can evict it.
    fail(&hosts.get("failing").unwrap()).await;
    churn(&hosts, &mut next, 50);
    for failures in 2..5 {
        fail(&hosts.get("failing").unwrap()).await;
        let breaker = hosts.get("failing").unwrap();
        assert_eq!(breaker.counts().await.unwrap().failures, failures);
        assert_eq!(breaker.state().await.unwrap(), State::Closed);
        churn(&hosts, &mut next, 5_000);
    }
    fail(&hosts.get("failing").unwrap()).await;
    assert_eq!(
        hosts.get("failing").unwrap().state().await.unwrap(),
        State::Open
    );
    assert!(hosts.len() <= 1_000);
}

#[tokio::test]
async fn an_evicted_breaker_without_a_storage_takes_its_circuit_with_it() {
    let hosts = hosts(100, 1);
    fail(&hosts.get("a").unwrap()).await;
    assert_eq!(hosts.get("a").unwrap().state().await.unwrap(), State::Open);
    // keys used twice push every breaker not used since out of the registry
    let mut next = 0;
    for _ in 0..1_000 {
        next += 1;
        let key = format!("twice-{next}");
        hosts.get(&key).unwrap();
        hosts.get(&key).unwrap();
    }
    let again = hosts.get("a").unwrap();
    assert_eq!(again.state().await.unwrap(), State::Closed, "a new circuit");
    assert_eq!(again.counts().await.unwrap().failures, 0);
}

#[tokio::test]
async fn a_circuit_in_a_named_storage_outlives_its_evicted_breaker() {
    let storage = MemoryStorage::new();
    let hosts = Registry::with_limits(
        move |host| {
            CircuitBreaker::builder(format!("http:{host}"))
                .storage(storage.clone())
                .max_failures(1)
                .circuit_timeout(HOUR)
        },
        100,
        HOUR,
    );
    fail(&hosts.get("a").unwrap()).await;
    for i in 0..1_000 {
        let key = format!("twice-{i}");
        hosts.get(&key).unwrap();
        hosts.get(&key).unwrap();
    }
    assert_eq!(hosts.get("a").unwrap().state().await.unwrap(), State::Open);
}

#[tokio::test]
async fn removing_a_key_forgets_its_in_process_circuit() {
    let hosts = hosts(100, 1);
    fail(&hosts.get("a").unwrap()).await;
    hosts.remove("a");
    assert!(hosts.is_empty());
    assert_eq!(
        hosts.get("a").unwrap().state().await.unwrap(),
        State::Closed
    );
}

#[tokio::test]
async fn it_lists_its_breakers_with_their_metrics() {
    let hosts = hosts(100, 2);
    fail(&hosts.get("b").unwrap()).await;
    fail(&hosts.get("b").unwrap()).await;
    fail(&hosts.get("a").unwrap()).await;
    let listed = hosts.metrics().await;
    let keys: Vec<&str> = listed.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(keys, ["a", "b"]);
    assert_eq!(listed[0].1.counts.failures, 1);
    assert_eq!(listed[1].1.state, State::Open);
}
