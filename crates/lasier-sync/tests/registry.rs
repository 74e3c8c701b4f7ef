//! The per-key registry: one breaker per key, built once, bounded in size
//! and idle time, and fair to a key in use while others churn. Idle time
//! runs on a manual clock: no test sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use lasier_core::clock::ManualClock;
use lasier_sync::{CircuitBreaker, Error, MemoryStorage, Registry, State};

const SEC: Duration = Duration::from_secs(1);
/// Long enough that no open circuit here half-opens while a test runs.
const HOUR: Duration = Duration::from_secs(3600);

fn fail(b: &CircuitBreaker) {
    let r: Result<(), Error<&str>> = b.call(|| Err("boom"));
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

#[test]
fn a_new_key_is_built_once_however_many_threads_ask_for_it() {
    let built = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&built);
    let hosts = Registry::new(move |host| {
        counter.fetch_add(1, Ordering::SeqCst);
        CircuitBreaker::builder(format!("http:{host}"))
            .max_failures(8)
            .circuit_timeout(HOUR)
    });
    let start = Barrier::new(8);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                start.wait();
                for _ in 0..1_000 {
                    hosts.get("new").unwrap();
                }
                // one failure from each thread: one circuit counts all eight
                fail(&hosts.get("new").unwrap());
            });
        }
    });
    assert_eq!(built.load(Ordering::SeqCst), 1);
    assert_eq!(hosts.get("new").unwrap().state().unwrap(), State::Open);
    assert_eq!(hosts.len(), 1);
}

#[test]
fn it_holds_at_most_its_capacity() {
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

#[test]
fn idle_breakers_go_only_if_their_circuit_holds_nothing() {
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
    fail(&hosts.get("open").unwrap());
    hosts
        .get("quiet")
        .unwrap()
        .call(|| Ok::<_, ()>(()))
        .unwrap();
    clock.advance(90 * SEC);
    // idle, not forgotten: an open (later half-open) circuit stays so
    assert_eq!(hosts.get("open").unwrap().state().unwrap(), State::Open);
    clock.advance(90 * SEC);
    hosts.remove_idle();
    assert_eq!(hosts.len(), 1, "the quiet one goes, the open one stays");
    assert_eq!(hosts.get("open").unwrap().state().unwrap(), State::Open);
    clock.advance(2 * HOUR);
    hosts.remove_idle();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts.get("open").unwrap().state().unwrap(), State::HalfOpen);
}

#[test]
fn a_failing_key_keeps_its_counts_while_other_keys_churn() {
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
    fail(&hosts.get("failing").unwrap());
    churn(&hosts, &mut next, 50);
    for failures in 2..5 {
        fail(&hosts.get("failing").unwrap());
        let breaker = hosts.get("failing").unwrap();
        assert_eq!(breaker.counts().unwrap().failures, failures);
        assert_eq!(breaker.state().unwrap(), State::Closed);
        churn(&hosts, &mut next, 5_000);
    }
    fail(&hosts.get("failing").unwrap());
    assert_eq!(hosts.get("failing").unwrap().state().unwrap(), State::Open);
    assert!(hosts.len() <= 1_000);
}

#[test]
fn an_evicted_breaker_without_a_storage_takes_its_circuit_with_it() {
    let hosts = hosts(100, 1);
    fail(&hosts.get("a").unwrap());
    assert_eq!(hosts.get("a").unwrap().state().unwrap(), State::Open);
    // keys used twice push every breaker not used since out of the registry
    let mut next = 0;
    for _ in 0..1_000 {
        next += 1;
        let key = format!("twice-{next}");
        hosts.get(&key).unwrap();
        hosts.get(&key).unwrap();
    }
    let again = hosts.get("a").unwrap();
    assert_eq!(again.state().unwrap(), State::Closed, "a new circuit");
    assert_eq!(again.counts().unwrap().failures, 0);
}

#[test]
fn a_circuit_in_a_named_storage_outlives_its_evicted_breaker() {
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
    fail(&hosts.get("a").unwrap());
    for i in 0..1_000 {
        let key = format!("twice-{i}");
        hosts.get(&key).unwrap();
        hosts.get(&key).unwrap();
    }
    assert_eq!(hosts.get("a").unwrap().state().unwrap(), State::Open);
}

#[test]
fn removing_a_key_forgets_its_in_process_circuit() {
    let hosts = hosts(100, 1);
    fail(&hosts.get("a").unwrap());
    hosts.remove("a");
    assert!(hosts.is_empty());
    assert_eq!(hosts.get("a").unwrap().state().unwrap(), State::Closed);
}

#[test]
fn it_lists_its_breakers_with_their_metrics() {
    let hosts = hosts(100, 2);
    assert!(hosts.metrics().is_empty());
    fail(&hosts.get("b").unwrap());
    fail(&hosts.get("b").unwrap());
    fail(&hosts.get("a").unwrap());
    let listed = hosts.metrics();
    let keys: Vec<&str> = listed.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(keys, ["a", "b"]);
    assert_eq!(
        (listed[0].1.state, listed[0].1.counts.failures),
        (State::Closed, 1)
    );
    assert_eq!(listed[1].1.state, State::Open);
    assert_eq!(hosts.breakers()[1].1.name(), "http:b");
}
