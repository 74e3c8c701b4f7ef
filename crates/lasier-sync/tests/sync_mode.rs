//! Sync mode (`sync_interval`): admission from an in-process mirror,
//! outcomes pushed in batches, the fleet sharing one circuit. Two breakers
//! on one store stand for two processes; a manual clock drives time (the
//! background syncs read it too, so nothing is due until the test moves
//! it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use lasier_core::clock::ManualClock;
use lasier_sync::{CircuitBreaker, Counts, Error, MemoryStorage, State, StorageFailurePolicy};
use support::Faulty;

const SEC: Duration = Duration::from_secs(1);
const INTERVAL: Duration = Duration::from_millis(100);

fn store(clock: &ManualClock) -> Arc<Faulty> {
    Arc::new(Faulty::new(MemoryStorage::with_clock(clock.clone())))
}

fn breaker(
    clock: &ManualClock,
    store: &Arc<Faulty>,
    policy: StorageFailurePolicy,
) -> CircuitBreaker {
    CircuitBreaker::builder("svc")
        .storage(Arc::clone(store))
        .clock(clock.clone())
        .max_failures(3)
        .failure_timeout(60 * SEC)
        .circuit_timeout(10 * SEC)
        .sync_interval(INTERVAL)
        .on_storage_failure(policy)
        .build()
        .unwrap()
}

/// The counts in the store, as a breaker without sync mode reads them.
fn shared_counts(store: &Arc<Faulty>) -> Counts {
    CircuitBreaker::builder("svc")
        .storage(Arc::clone(store))
        .max_failures(3)
        .build()
        .unwrap()
        .counts()
        .unwrap()
}

fn ok(b: &CircuitBreaker) -> Result<(), Error<&'static str>> {
    b.call(|| Ok::<(), &str>(()))
}

fn fail(b: &CircuitBreaker) -> Result<(), Error<&'static str>> {
    b.call(|| Err::<(), &str>("boom"))
}

#[test]
fn the_closed_path_asks_the_store_nothing_after_the_first_sync() {
    let clock = ManualClock::new();
    let store = store(&clock);
    let b = breaker(&clock, &store, StorageFailurePolicy::FailClosed);
    ok(&b).unwrap();
    let after_first = store.calls();
    assert!(after_first > 0, "a new breaker syncs before its first call");
    for _ in 0..10_000 {
        ok(&b).unwrap();
    }
    assert_eq!(store.calls(), after_first);
    // two failures stay in the process until a sync
    fail(&b).unwrap_err();
    fail(&b).unwrap_err();
    assert_eq!(store.calls(), after_first);
    assert_eq!(shared_counts(&store), Counts::new(0, 0));
    b.flush().unwrap();
    assert_eq!(shared_counts(&store).failures, 2);
}

#[test]
fn a_process_whose_own_failures_reach_the_rule_trips_at_once() {
    let clock = ManualClock::new();
    let store = store(&clock);
    let b = breaker(&clock, &store, StorageFailurePolicy::FailClosed);
    for _ in 0..3 {
        assert!(matches!(fail(&b), Err(Error::Inner("boom"))));
    }
    // no interval passed: the third failure synced and opened it
    assert_eq!(b.state().unwrap(), State::Open);
    let calls = store.calls();
    assert!(ok(&b).unwrap_err().is_open());
    assert_eq!(store.calls(), calls, "rejected from the mirror");
}

#[test]
fn the_fleet_adds_up_and_the_process_that_reaches_the_rule_trips() {
    let clock = ManualClock::new();
    let store = store(&clock);
    let a = breaker(&clock, &store, StorageFailurePolicy::FailClosed);
    let b = breaker(&clock, &store, StorageFailurePolicy::FailClosed);
    ok(&a).unwrap();
    ok(&b).unwrap();
    fail(&a).unwrap_err();
    fail(&a).unwrap_err();
    fail(&b).unwrap_err();
    // each process alone is under the rule: nothing pushed yet
    assert_eq!(shared_counts(&store).failures, 0);
    a.flush().unwrap();
    assert_eq!(shared_counts(&store).failures, 2);
    b.flush().unwrap();
    // b's sync made 3 failures: the rule said open (and the opening
    // emptied the window)
    assert_eq!(b.state().unwrap(), State::Open);
    assert!(ok(&b).unwrap_err().is_open());
    // a learns it at its next sync
    a.flush().unwrap();
    assert!(ok(&a).unwrap_err().is_open());
}

#[test]
fn the_estimate_counts_the_fleet_as_of_the_last_sync() {
    let clock = ManualClock::new();
    let store = store(&clock);
    let a = breaker(&clock, &store, StorageFailurePolicy::FailClosed);
    let b = breaker(&clock, &store, StorageFailurePolicy::FailClosed);
    ok(&b).unwrap();
    fail(&a).unwrap_err();
    fail(&a).unwrap_err();
    a.flush().unwrap();
    b.flush().unwrap();
    // b knows of a's 2: its own first failure reaches the rule at once
    fail(&b).unwrap_err();
    assert_eq!(b.state().unwrap(), State::Open);
}

#[test]
fn manual_changes_by_another_process_are_seen_at_the_next_sync() {
    let clock = ManualClock::new();
    let store = store(&clock);
    let a = breaker(&clock, &store, StorageFailurePolicy::FailClosed);
    let b = breaker(&clock, &store, StorageFailurePolicy::FailClosed);
    ok(&b).unwrap();
    a.force_open().unwrap();
    // b admits from its mirror until it syncs
    ok(&b).unwrap();
    b.flush().unwrap();
    let rejected = ok(&b).unwrap_err();
    assert!(rejected.is_open());
    a.force_close().unwrap();
    b.flush().unwrap();
    ok(&b).unwrap();
    a.disable().unwrap();
    b.flush().unwrap();
    for _ in 0..5 {
        fail(&b).unwrap_err();
    }
    b.flush().unwrap();
    assert_eq!(b.state().unwrap(), State::Disabled);
    assert_eq!(shared_counts(&store).failures, 5);
}

#[test]
fn half_open_trials_go_through_the_store_and_close_the_mirror() {
    let clock = ManualClock::new();
    let store = store(&clock);
    let b = breaker(&clock, &store, StorageFailurePolicy::FailClosed);
    for _ in 0..3 {
        fail(&b).unwrap_err();
    }
    clock.advance(11 * SEC);
    let calls = store.calls();
    // the trial asks the store; its success closes the circuit
    ok(&b).unwrap();
    assert!(store.calls() > calls);
    assert_eq!(b.state().unwrap(), State::Closed);
    let calls = store.calls();
    ok(&b).unwrap();
    assert_eq!(store.calls(), calls, "closed again: from the mirror");
}

#[test]
fn outcomes_survive_a_store_outage_and_dropping_the_breaker_pushes_them() {
    let clock = ManualClock::new();
    let store = store(&clock);
    let b = breaker(&clock, &store, StorageFailurePolicy::FailOpen);
    ok(&b).unwrap();
    fail(&b).unwrap_err();
    store.set_down(true);
    assert!(b.flush().is_err());
    fail(&b).unwrap_err();
    assert_eq!(b.metrics().dropped, 0);
    store.set_down(false);
    drop(b);
    assert_eq!(shared_counts(&store).failures, 2);
}

#[test]
fn outcomes_older_than_their_window_are_dropped_and_counted() {
    let clock = ManualClock::new();
    let store = store(&clock);
    let b = breaker(&clock, &store, StorageFailurePolicy::FailOpen);
    ok(&b).unwrap();
    fail(&b).unwrap_err();
    store.set_down(true);
    assert!(b.flush().is_err());
    clock.advance(61 * SEC);
    assert!(b.flush().is_err());
    store.set_down(false);
    b.flush().unwrap();
    assert_eq!(shared_counts(&store).failures, 0);
    assert_eq!(b.metrics().dropped, 1);
}

#[test]
fn under_local_fallback_a_failed_sync_protects_the_calls_in_process() {
    let clock = ManualClock::new();
    let store = store(&clock);
    let b = breaker(
        &clock,
        &store,
        StorageFailurePolicy::LocalFallback {
            probe_interval: SEC,
        },
    );
    ok(&b).unwrap();
    store.set_down(true);
    assert!(b.flush().is_err());
    assert!(b.in_fallback());
    for _ in 0..3 {
        fail(&b).unwrap_err();
    }
    assert!(ok(&b).unwrap_err().is_open(), "the fallback circuit opened");
    store.set_down(false);
    clock.advance(11 * SEC);
    ok(&b).unwrap();
    assert!(!b.in_fallback());
}

#[test]
fn sync_interval_longer_than_the_window_is_refused() {
    let err = CircuitBreaker::builder("svc")
        .max_failures(3)
        .failure_timeout(SEC)
        .sync_interval(2 * SEC)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("sync_interval"), "{err}");
    let err = CircuitBreaker::builder("svc")
        .max_failures(3)
        .sync_interval(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("sync_interval"), "{err}");
}

/// On the real clock: the background thread pushes a busy breaker's
/// outcomes within about an interval, and brings another process's
/// change back as fast.
#[test]
fn the_background_pushes_and_refreshes_about_once_an_interval() {
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
    ok(&a).unwrap();
    ok(&b).unwrap();
    fail(&a).unwrap_err();
    let deadline = std::time::Instant::now() + 5 * SEC;
    while shared_counts(&store).failures != 1 {
        assert!(std::time::Instant::now() < deadline, "never pushed");
        std::thread::sleep(Duration::from_millis(5));
    }
    a.force_open().unwrap();
    while ok(&b).is_ok() {
        assert!(std::time::Instant::now() < deadline, "never refreshed");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Once this process's failures reach the rule, calls ask the store until
/// the sync they triggered answers: no more failing calls run than in
/// per-call mode (the rule's count, plus one in flight per thread).
#[test]
fn no_more_calls_run_past_the_rule_than_in_per_call_mode() {
    let clock = ManualClock::new();
    let store = store(&clock);
    let b = CircuitBreaker::builder("svc")
        .storage(Arc::clone(&store))
        .clock(clock.clone())
        .max_failures(10)
        .circuit_timeout(10 * SEC)
        .sync_interval(INTERVAL)
        .build()
        .unwrap();
    ok(&b).unwrap();
    const THREADS: u64 = 4;
    let ran = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..2_000 {
                    if matches!(fail(&b), Err(Error::Inner(_))) {
                        ran.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let ran = ran.into_inner();
    assert_eq!(b.state().unwrap(), State::Open);
    assert!(
        ran <= 10 + 2 * THREADS,
        "{ran} failing calls ran (rule: 10, {THREADS} threads)"
    );
}
