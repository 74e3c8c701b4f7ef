//! The sync breaker's behaviour on a Redis storage: the same behaviours as
//! lasier-sync's tests on the in-memory storage, with Redis' own clock.
//! Tests that need an expiry use timeouts of tens of milliseconds and wait
//! for the state change (bounded), never assert on time.
//!
//! Run on one server by `tests/sync_breaker.rs`, on a cluster by
//! `tests/cluster_breaker.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use lasier_sync::{CircuitBreaker, CircuitBreakerBuilder, Counts, Error, State};

use super::Target;
use crate::support::eventually;

const LONG: Duration = Duration::from_secs(60);
/// A window that a test waits out.
const SHORT: Duration = Duration::from_millis(50);
/// An open time that a test waits out, long enough for what it checks
/// meanwhile (a trial permit lives this long too).
const OPEN_TIME: Duration = Duration::from_secs(1);

fn builder(name: &str, storage: impl lasier_core::Storage + 'static) -> CircuitBreakerBuilder {
    CircuitBreaker::builder(name)
        .storage(storage)
        .failure_timeout(LONG)
        .circuit_timeout(LONG)
}

fn fail(b: &CircuitBreaker) -> Result<(), Error<&'static str>> {
    b.call(|| Err("boom"))
}

fn ok(b: &CircuitBreaker) -> Result<u32, Error<&'static str>> {
    b.call(|| Ok(7))
}

pub fn opens_on_the_nth_failure_and_rejects_without_running(t: &impl Target) {
    let name = t.name("nth");
    let b = builder(&name, t.storage()).max_failures(3).build().unwrap();
    for _ in 0..2 {
        assert!(matches!(fail(&b), Err(Error::Inner("boom"))));
        assert_eq!(b.state().unwrap(), State::Closed);
    }
    assert_eq!(b.counts().unwrap().failures, 2);
    assert!(matches!(fail(&b), Err(Error::Inner("boom"))));
    assert_eq!(b.state().unwrap(), State::Open);

    let ran = AtomicUsize::new(0);
    let err = b
        .call(|| -> Result<(), ()> {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap_err();
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    match err {
        Error::Open {
            name: n,
            retry_after,
            ..
        } => {
            assert_eq!(&*n, name);
            // Redis' PTTL of the open flag.
            let left = retry_after.expect("the time left is known");
            assert!(left > Duration::ZERO && left <= LONG, "{left:?}");
        }
        other => panic!("{other:?}"),
    }
}

pub fn successes_do_not_open_under_max_failures(t: &impl Target) {
    let b = builder(&t.name("succ"), t.storage())
        .max_failures(2)
        .build()
        .unwrap();
    let _ = fail(&b);
    for _ in 0..50 {
        assert_eq!(ok(&b).unwrap(), 7);
    }
    assert_eq!(b.counts().unwrap().failures, 1);
    let _ = fail(&b);
    assert_eq!(b.state().unwrap(), State::Open);
}

pub fn percentage_rule_boundaries_through_the_breaker(t: &impl Target) {
    let b = builder(&t.name("pct"), t.storage())
        .percentage_failures(50, 5)
        .build()
        .unwrap();
    for _ in 0..5 {
        let _ = fail(&b);
    }
    assert_eq!(b.state().unwrap(), State::Closed);
    assert_eq!(b.counts().unwrap(), Counts::new(5, 5));
    b.reset().unwrap();
    for _ in 0..20 {
        ok(&b).unwrap();
    }
    for i in 0..20 {
        assert_eq!(b.state().unwrap(), State::Closed, "{i}");
        let _ = fail(&b);
    }
    assert_eq!(b.state().unwrap(), State::Open);
}

pub fn counters_expire_after_failure_timeout_from_the_first_count(t: &impl Target) {
    let b = CircuitBreaker::builder(t.name("window"))
        .storage(t.storage())
        .failure_timeout(SHORT)
        .max_failures(2)
        .build()
        .unwrap();
    let _ = fail(&b);
    eventually("the window ends", || b.counts().unwrap().failures == 0);
    // the first failure's window is over: this one alone does not open
    let _ = fail(&b);
    assert_eq!(b.state().unwrap(), State::Closed);
}

pub fn half_open_trial_success_closes_with_fresh_counters(t: &impl Target) {
    let b = CircuitBreaker::builder(t.name("trial-ok"))
        .storage(t.storage())
        .circuit_timeout(OPEN_TIME)
        .max_failures(2)
        .build()
        .unwrap();
    let _ = fail(&b);
    let _ = fail(&b);
    assert_eq!(b.state().unwrap(), State::Open);
    eventually("half-open", || b.state().unwrap() == State::HalfOpen);
    let trial = b.enter().unwrap();
    // one trial at a time by default
    assert!(b.enter().unwrap_err().is_open());
    trial.success();
    assert_eq!(b.state().unwrap(), State::Closed);
    assert_eq!(b.counts().unwrap().failures, 0);
    let _ = fail(&b);
    assert_eq!(b.state().unwrap(), State::Closed);
}

pub fn half_open_trial_failure_reopens_at_once(t: &impl Target) {
    let b = CircuitBreaker::builder(t.name("trial-fail"))
        .storage(t.storage())
        .circuit_timeout(OPEN_TIME)
        .max_failures(1)
        .half_open_max_calls(3)
        .build()
        .unwrap();
    let _ = fail(&b);
    eventually("half-open", || b.state().unwrap() == State::HalfOpen);
    ok(&b).unwrap();
    assert_eq!(b.state().unwrap(), State::HalfOpen);
    let _ = fail(&b);
    assert_eq!(b.state().unwrap(), State::Open);
    eventually("half-open again", || b.state().unwrap() == State::HalfOpen);
    for _ in 0..3 {
        ok(&b).unwrap();
    }
    assert_eq!(b.state().unwrap(), State::Closed);
}

pub fn half_open_admits_exactly_max_calls_concurrent_trials_across_connections(t: &impl Target) {
    for max in [1_u32, 3] {
        let name = t.name("trials");
        let make = || {
            CircuitBreaker::builder(&name)
                .storage(t.storage())
                .circuit_timeout(OPEN_TIME)
                .max_failures(1)
                .half_open_max_calls(max)
                .build()
                .unwrap()
        };
        // Eight breakers, each on its own pool: eight processes, in effect.
        let breakers: Vec<CircuitBreaker> = (0..8).map(|_| make()).collect();
        let _ = fail(&breakers[0]);
        eventually("half-open", || {
            breakers[0].state().unwrap() == State::HalfOpen
        });
        let start = Barrier::new(breakers.len());
        let hold = Barrier::new(breakers.len());
        let admitted = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for b in &breakers {
                let (start, hold, admitted) = (&start, &hold, &admitted);
                s.spawn(move || {
                    start.wait();
                    let guard = b.enter();
                    if guard.is_ok() {
                        admitted.fetch_add(1, Ordering::SeqCst);
                    }
                    hold.wait();
                    if let Ok(guard) = guard {
                        guard.success();
                    }
                });
            }
        });
        assert_eq!(admitted.load(Ordering::SeqCst), max as usize);
        assert_eq!(breakers[0].state().unwrap(), State::Closed);
    }
}

pub fn without_half_open_the_circuit_closes_when_open_time_is_over(t: &impl Target) {
    let b = CircuitBreaker::builder(t.name("no-half"))
        .storage(t.storage())
        .circuit_timeout(OPEN_TIME)
        .max_failures(1)
        .half_open_max_calls(0)
        .build()
        .unwrap();
    let _ = fail(&b);
    assert_eq!(b.state().unwrap(), State::Open);
    eventually("closed", || b.state().unwrap() == State::Closed);
    let guards: Vec<_> = (0..5).map(|_| b.enter().unwrap()).collect();
    drop(guards);
    assert_eq!(b.counts().unwrap().failures, 0);
    let _ = fail(&b);
    assert_eq!(b.state().unwrap(), State::Open);
}

pub fn call_filtered_counts_only_matching_errors(t: &impl Target) {
    #[derive(Debug, PartialEq)]
    enum E {
        NotFound,
        Unavailable,
    }
    let b = builder(&t.name("filtered"), t.storage())
        .percentage_failures(50, 1)
        .build()
        .unwrap();
    let unavailable = |e: &E| *e == E::Unavailable;
    for _ in 0..10 {
        let r = b.call_filtered(unavailable, || -> Result<(), E> { Err(E::NotFound) });
        assert!(matches!(r, Err(Error::Inner(E::NotFound))));
    }
    assert_eq!(b.counts().unwrap(), Counts::new(0, 10));
    for _ in 0..10 {
        let _ = b.call_filtered(unavailable, || -> Result<(), E> { Err(E::Unavailable) });
    }
    assert_eq!(b.state().unwrap(), State::Open);
}

pub fn guard_verdicts_and_drops(t: &impl Target) {
    let b = builder(&t.name("guard"), t.storage())
        .max_failures(2)
        .build()
        .unwrap();
    b.enter().unwrap().success();
    drop(b.enter().unwrap());
    assert_eq!(b.counts().unwrap().failures, 0);
    b.enter().unwrap().failure();
    assert_eq!(b.counts().unwrap().failures, 1);
    let b2 = b.clone();
    let panicked = std::thread::spawn(move || {
        let _guard = b2.enter().unwrap();
        panic!("the guarded work panicked");
    })
    .join();
    assert!(panicked.is_err());
    assert_eq!(b.state().unwrap(), State::Open);
}

pub fn reset_closes_and_clears_only_this_breaker(t: &impl Target) {
    let storage = t.storage();
    let a = builder(&t.name("reset-a"), storage.clone())
        .max_failures(1)
        .build()
        .unwrap();
    let other = builder(&t.name("reset-b"), storage)
        .max_failures(1)
        .build()
        .unwrap();
    let _ = fail(&a);
    let _ = fail(&other);
    assert!(ok(&a).unwrap_err().is_open());
    a.reset().unwrap();
    assert_eq!(a.state().unwrap(), State::Closed);
    // the reset also forgets the open deadline this breaker had cached
    assert_eq!(ok(&a).unwrap(), 7);
    assert_eq!(other.state().unwrap(), State::Open);
}

pub fn breakers_in_different_processes_share_one_circuit(t: &impl Target) {
    let name = t.name("shared");
    // Separate storages: separate pools, as separate processes would have.
    let one = builder(&name, t.storage()).max_failures(2).build().unwrap();
    let two = builder(&name, t.storage()).max_failures(2).build().unwrap();
    let _ = fail(&one);
    let _ = fail(&two);
    assert_eq!(one.state().unwrap(), State::Open);
    assert!(ok(&two).unwrap_err().is_open());
}

pub fn building_a_breaker_never_resets_the_shared_state(t: &impl Target) {
    let name = t.name("restart");
    let first = builder(&name, t.storage()).max_failures(1).build().unwrap();
    let _ = fail(&first);
    // A process that starts while the circuit is open sees it open.
    let late = builder(&name, t.storage()).max_failures(1).build().unwrap();
    assert_eq!(late.state().unwrap(), State::Open);
    assert!(ok(&late).unwrap_err().is_open());
    // ... and one that starts mid-window keeps counting the same window.
    let name = t.name("restart-window");
    let first = builder(&name, t.storage()).max_failures(3).build().unwrap();
    let _ = fail(&first);
    let _ = fail(&first);
    let late = builder(&name, t.storage()).max_failures(3).build().unwrap();
    assert_eq!(late.counts().unwrap().failures, 2);
    let _ = fail(&late);
    assert_eq!(first.state().unwrap(), State::Open);
}

pub fn outcomes_of_calls_admitted_before_the_circuit_opened_are_not_counted(t: &impl Target) {
    let b = CircuitBreaker::builder(t.name("late-outcome"))
        .storage(t.storage())
        .circuit_timeout(OPEN_TIME)
        .max_failures(1)
        .build()
        .unwrap();
    let slow = b.enter().unwrap();
    let _ = fail(&b);
    slow.failure();
    eventually("half-open", || b.state().unwrap() == State::HalfOpen);
    ok(&b).unwrap();
    assert_eq!(b.state().unwrap(), State::Closed);
}

pub fn many_threads_on_one_breaker_lose_no_count(t: &impl Target) {
    let threads = 16;
    let per_thread = 50;
    let storage = Arc::new(t.storage());
    let b = CircuitBreaker::builder(t.name("threads"))
        .storage(Arc::clone(&storage))
        .failure_timeout(LONG)
        .circuit_timeout(LONG)
        .percentage_failures(100, 1_000_000)
        .build()
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..threads {
            let b = &b;
            s.spawn(move || {
                for i in 0..per_thread {
                    if (t + i) % 4 == 0 {
                        let _ = fail(b);
                    } else {
                        ok(b).unwrap();
                    }
                }
            });
        }
    });
    let total = (threads * per_thread) as u64;
    let failures = (0..threads)
        .flat_map(|t| (0..per_thread).map(move |i| (t + i) % 4 == 0))
        .filter(|f| *f)
        .count() as u64;
    assert_eq!(b.counts().unwrap(), Counts::new(failures, total));
}

/// Sync mode (`sync_interval`), two processes (storages of their own):
/// batches add up in one window, the process whose failures reach the rule
/// trips for both, and its writer key lives beside the circuit's keys (on a
/// cluster, in the same slot).
pub fn sync_mode_shares_one_window_across_processes(t: &impl Target) {
    let name = t.name("syncmode");
    let build = || {
        builder(&name, t.storage())
            .max_failures(3)
            .sync_interval(Duration::from_secs(10))
            .build()
            .unwrap()
    };
    let (a, b) = (build(), build());
    ok(&a).unwrap();
    ok(&b).unwrap();
    let _ = fail(&a);
    let _ = fail(&a);
    a.flush().unwrap();
    assert_eq!(b.counts().unwrap().failures, 2, "b reads a's batch");
    b.flush().unwrap();
    // b knows of a's 2: its own first failure reaches the rule
    let _ = fail(&b);
    assert_eq!(b.state().unwrap(), State::Open);
    assert!(ok(&b).unwrap_err().is_open());
    a.flush().unwrap();
    assert!(ok(&a).unwrap_err().is_open(), "a sees it at its next sync");
    a.reset().unwrap();
}
