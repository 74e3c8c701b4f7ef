//! The breaker's behaviour, on both engines, with a manual clock: no test
//! sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use lasier_core::clock::ManualClock;
use lasier_sync::{CircuitBreaker, CircuitBreakerBuilder, ConfigError, Error, RuleError, State};
use support::{storage, Kind, KINDS};

const SEC: Duration = Duration::from_secs(1);

fn builder(kind: Kind, clock: &ManualClock) -> CircuitBreakerBuilder {
    // The breaker's own clock (its cached open deadline on a shared store)
    // is the storage's, as in production where both follow real time.
    CircuitBreaker::builder("svc")
        .storage(storage(kind, clock))
        .clock(clock.clone())
        .failure_timeout(60 * SEC)
        .circuit_timeout(10 * SEC)
}

fn fail(b: &CircuitBreaker) -> Result<(), Error<&'static str>> {
    b.call(|| Err("boom"))
}

fn ok(b: &CircuitBreaker) -> Result<u32, Error<&'static str>> {
    b.call(|| Ok(7))
}

#[test]
fn opens_on_the_nth_failure_and_rejects_without_running() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock).max_failures(3).build().unwrap();
        for _ in 0..2 {
            assert!(matches!(fail(&b), Err(Error::Inner("boom"))));
            assert_eq!(b.state().unwrap(), State::Closed, "{kind:?}");
        }
        assert_eq!(b.counts().unwrap().failures, 2, "{kind:?}");
        // the third failure is returned as the call's own error, and opens
        assert!(matches!(fail(&b), Err(Error::Inner("boom"))));
        assert_eq!(b.state().unwrap(), State::Open, "{kind:?}");

        let ran = AtomicUsize::new(0);
        let rejected = b.call(|| -> Result<(), ()> {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        let err = rejected.unwrap_err();
        assert!(err.is_open(), "{kind:?}");
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        match err {
            Error::Open { name, .. } => assert_eq!(&*name, "svc"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn the_local_engine_says_how_long_it_stays_open() {
    let clock = ManualClock::new();
    let b = builder(Kind::Local, &clock)
        .max_failures(1)
        .build()
        .unwrap();
    let _ = fail(&b);
    clock.advance(4 * SEC);
    assert_eq!(ok(&b).unwrap_err().retry_after(), Some(6 * SEC));
}

#[test]
fn successes_do_not_open_under_max_failures() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock).max_failures(2).build().unwrap();
        let _ = fail(&b);
        for _ in 0..100 {
            assert_eq!(ok(&b).unwrap(), 7);
        }
        assert_eq!(b.counts().unwrap().failures, 1, "{kind:?}");
        let _ = fail(&b);
        assert_eq!(b.state().unwrap(), State::Open, "{kind:?}");
    }
}

#[test]
fn percentage_rule_boundaries_through_the_breaker() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock)
            .percentage_failures(50, 5)
            .build()
            .unwrap();
        // 5 failures of 5 requests: not more than the minimum, stays closed
        for _ in 0..5 {
            let _ = fail(&b);
        }
        assert_eq!(b.state().unwrap(), State::Closed, "{kind:?}");
        assert_eq!(b.counts().unwrap(), lasier_sync::Counts::new(5, 5));
        b.reset().unwrap();
        // 20 failures of 40 requests: opens on the 20th failure
        for _ in 0..20 {
            ok(&b).unwrap();
        }
        for i in 0..20 {
            assert_eq!(b.state().unwrap(), State::Closed, "{kind:?} {i}");
            let _ = fail(&b);
        }
        assert_eq!(b.state().unwrap(), State::Open, "{kind:?}");
    }
}

#[test]
fn counters_expire_after_failure_timeout_from_the_first_count() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock).max_failures(2).build().unwrap();
        let _ = fail(&b);
        clock.advance(59 * SEC);
        assert_eq!(b.counts().unwrap().failures, 1, "{kind:?}");
        clock.advance(SEC);
        assert_eq!(b.counts().unwrap().failures, 0, "{kind:?}");
        let _ = fail(&b);
        assert_eq!(b.state().unwrap(), State::Closed, "{kind:?}");
        // the new window started at the last failure
        clock.advance(59 * SEC);
        let _ = fail(&b);
        assert_eq!(b.state().unwrap(), State::Open, "{kind:?}");
    }
}

#[test]
fn half_open_trial_success_closes_with_fresh_counters() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock).max_failures(2).build().unwrap();
        let _ = fail(&b);
        let _ = fail(&b);
        clock.advance(10 * SEC);
        assert_eq!(b.state().unwrap(), State::HalfOpen, "{kind:?}");
        let trial = b.enter().unwrap();
        // one trial at a time by default
        assert!(b.enter().unwrap_err().is_open(), "{kind:?}");
        trial.success();
        assert_eq!(b.state().unwrap(), State::Closed, "{kind:?}");
        assert_eq!(b.counts().unwrap().failures, 0, "{kind:?}");
        // fresh window: one failure does not reopen
        let _ = fail(&b);
        assert_eq!(b.state().unwrap(), State::Closed, "{kind:?}");
    }
}

#[test]
fn half_open_trial_failure_reopens_at_once() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock)
            .max_failures(1)
            .half_open_max_calls(3)
            .build()
            .unwrap();
        let _ = fail(&b);
        clock.advance(10 * SEC);
        ok(&b).unwrap();
        assert_eq!(b.state().unwrap(), State::HalfOpen, "{kind:?}");
        let _ = fail(&b);
        assert_eq!(b.state().unwrap(), State::Open, "{kind:?}");
        clock.advance(9 * SEC);
        assert!(ok(&b).unwrap_err().is_open(), "{kind:?}");
        clock.advance(SEC);
        for _ in 0..3 {
            ok(&b).unwrap();
        }
        assert_eq!(b.state().unwrap(), State::Closed, "{kind:?}");
    }
}

#[test]
fn half_open_closes_after_the_successes_asked_for() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock)
            .max_failures(1)
            .half_open_max_calls(4)
            .half_open_successes(2)
            .build()
            .unwrap();
        let _ = fail(&b);
        clock.advance(10 * SEC);
        // four trials at once, two successes close the circuit
        let trials: Vec<_> = (0..4).map(|_| b.enter().unwrap()).collect();
        assert!(b.enter().unwrap_err().is_open(), "{kind:?}");
        let mut trials = trials.into_iter();
        trials.next().unwrap().success();
        assert_eq!(b.state().unwrap(), State::HalfOpen, "{kind:?}");
        trials.next().unwrap().success();
        assert_eq!(b.state().unwrap(), State::Closed, "{kind:?}");
        // the other two, late, decide nothing: a failure does not reopen
        trials.next().unwrap().failure();
        assert_eq!(b.state().unwrap(), State::Closed, "{kind:?}");
        drop(trials);
        // a failed trial reopens whatever passed before it
        let _ = fail(&b);
        clock.advance(10 * SEC);
        ok(&b).unwrap();
        let _ = fail(&b);
        assert_eq!(b.state().unwrap(), State::Open, "{kind:?}");
    }
}

#[test]
fn half_open_successes_must_be_from_one_to_max_calls() {
    for (max, successes) in [(2, 0), (2, 3), (0, 1)] {
        let error = CircuitBreaker::builder("svc")
            .max_failures(1)
            .half_open_max_calls(max)
            .half_open_successes(successes)
            .build()
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("half_open_successes must be from 1 to half_open_max_calls"),
            "{error}"
        );
    }
}

#[test]
fn half_open_admits_exactly_max_calls_concurrent_trials() {
    for kind in KINDS {
        for max in [1_u32, 3] {
            let clock = ManualClock::new();
            let b = builder(kind, &clock)
                .max_failures(1)
                .half_open_max_calls(max)
                .build()
                .unwrap();
            let _ = fail(&b);
            clock.advance(10 * SEC);
            let threads = 8;
            let start = Barrier::new(threads);
            let hold = Barrier::new(threads);
            let admitted = AtomicUsize::new(0);
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        start.wait();
                        let guard = b.enter();
                        if guard.is_ok() {
                            admitted.fetch_add(1, Ordering::SeqCst);
                        }
                        // everyone holds its permit until all have asked
                        hold.wait();
                        if let Ok(guard) = guard {
                            guard.success();
                        }
                    });
                }
            });
            assert_eq!(
                admitted.load(Ordering::SeqCst),
                max as usize,
                "{kind:?} max {max}"
            );
            assert_eq!(b.state().unwrap(), State::Closed, "{kind:?}");
        }
    }
}

#[test]
fn without_half_open_the_circuit_closes_when_open_time_is_over() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock)
            .max_failures(1)
            .half_open_max_calls(0)
            .build()
            .unwrap();
        let _ = fail(&b);
        clock.advance(10 * SEC - Duration::from_millis(1));
        assert_eq!(b.state().unwrap(), State::Open, "{kind:?}");
        clock.advance(Duration::from_millis(1));
        assert_eq!(b.state().unwrap(), State::Closed, "{kind:?}");
        // every call passes, as in the original, and counting starts afresh
        let guards: Vec<_> = (0..5).map(|_| b.enter().unwrap()).collect();
        drop(guards);
        assert_eq!(b.counts().unwrap().failures, 0);
        let _ = fail(&b);
        assert_eq!(b.state().unwrap(), State::Open, "{kind:?}");
    }
}

#[test]
fn call_filtered_counts_only_matching_errors() {
    #[derive(Debug, PartialEq)]
    enum E {
        NotFound,
        Unavailable,
    }
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock)
            .percentage_failures(50, 1)
            .build()
            .unwrap();
        let unavailable = |e: &E| *e == E::Unavailable;
        for _ in 0..10 {
            let r = b.call_filtered(unavailable, || -> Result<(), E> { Err(E::NotFound) });
            assert!(matches!(r, Err(Error::Inner(E::NotFound))));
        }
        // counted as requests, not as failures
        assert_eq!(b.counts().unwrap(), lasier_sync::Counts::new(0, 10));
        for _ in 0..10 {
            let _ = b.call_filtered(unavailable, || -> Result<(), E> { Err(E::Unavailable) });
        }
        assert_eq!(b.state().unwrap(), State::Open, "{kind:?}");
    }
}

#[test]
fn guard_verdicts_and_drops() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock).max_failures(2).build().unwrap();
        b.enter().unwrap().success();
        drop(b.enter().unwrap()); // no verdict: a success
        assert_eq!(b.counts().unwrap().failures, 0, "{kind:?}");
        b.enter().unwrap().failure();
        assert_eq!(b.counts().unwrap().failures, 1, "{kind:?}");
        // a panic while the guard is held counts as a failure
        let b2 = b.clone();
        let panicked = std::thread::spawn(move || {
            let _guard = b2.enter().unwrap();
            panic!("the guarded work panicked");
        })
        .join();
        assert!(panicked.is_err());
        assert_eq!(b.state().unwrap(), State::Open, "{kind:?}");
    }
}

#[test]
fn a_panic_inside_call_counts_as_a_failure() {
    let clock = ManualClock::new();
    let b = builder(Kind::Local, &clock)
        .max_failures(1)
        .build()
        .unwrap();
    let b2 = b.clone();
    let result =
        std::thread::spawn(move || b2.call(|| -> Result<(), ()> { panic!("inside") })).join();
    assert!(result.is_err());
    assert_eq!(b.state().unwrap(), State::Open);
}

#[test]
fn reset_closes_and_clears_only_this_breaker() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let shared = storage(kind, &clock);
        let shared: Arc<dyn lasier_sync::Storage> = Arc::from(shared);
        let a = CircuitBreaker::builder("a")
            .storage(Arc::clone(&shared))
            .max_failures(1)
            .build()
            .unwrap();
        let other = CircuitBreaker::builder("b")
            .storage(Arc::clone(&shared))
            .max_failures(1)
            .build()
            .unwrap();
        let _ = fail(&a);
        let _ = fail(&other);
        a.reset().unwrap();
        assert_eq!(a.state().unwrap(), State::Closed, "{kind:?}");
        assert_eq!(other.state().unwrap(), State::Open, "{kind:?}");
    }
}

#[test]
fn breakers_with_one_name_on_one_storage_share_a_circuit() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let shared: Arc<dyn lasier_sync::Storage> = Arc::from(storage(kind, &clock));
        let make = || {
            CircuitBreaker::builder("svc")
                .storage(Arc::clone(&shared))
                .max_failures(2)
                .build()
                .unwrap()
        };
        let (one, two) = (make(), make());
        let _ = fail(&one);
        let _ = fail(&two);
        assert_eq!(one.state().unwrap(), State::Open, "{kind:?}");
    }
}

#[test]
fn outcomes_of_calls_admitted_before_the_circuit_opened_are_not_counted() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock).max_failures(1).build().unwrap();
        let slow = b.enter().unwrap();
        let _ = fail(&b);
        slow.failure();
        clock.advance(10 * SEC);
        assert_eq!(b.state().unwrap(), State::HalfOpen, "{kind:?}");
        ok(&b).unwrap();
        assert_eq!(b.state().unwrap(), State::Closed, "{kind:?}");
    }
}

#[test]
fn invalid_configuration_is_a_typed_error() {
    let err = |b: CircuitBreakerBuilder| b.build().unwrap_err();
    assert_eq!(
        err(CircuitBreaker::builder("").max_failures(1)),
        ConfigError::EmptyName
    );
    assert_eq!(err(CircuitBreaker::builder("x")), ConfigError::MissingRule);
    assert_eq!(
        err(CircuitBreaker::builder("x").max_failures(0)),
        ConfigError::Rule(RuleError::ZeroMaxFailures)
    );
    assert_eq!(
        err(CircuitBreaker::builder("x").percentage_failures(0, 1)),
        ConfigError::Rule(RuleError::PercentageOutOfRange(0))
    );
    assert_eq!(
        err(CircuitBreaker::builder("x")
            .max_failures(1)
            .failure_timeout(Duration::ZERO)),
        ConfigError::ZeroTimeout {
            setting: "failure_timeout"
        }
    );
    assert_eq!(
        err(CircuitBreaker::builder("x")
            .max_failures(1)
            .circuit_timeout(Duration::ZERO)),
        ConfigError::ZeroTimeout {
            setting: "circuit_timeout"
        }
    );
    let message = err(CircuitBreaker::builder("x")).to_string();
    assert!(message.contains(".max_failures"), "{message}");
}

#[test]
fn errors_carry_their_sources_and_display() {
    #[derive(Debug)]
    struct Oops;
    impl std::fmt::Display for Oops {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("oops")
        }
    }
    impl std::error::Error for Oops {}
    let b = CircuitBreaker::builder("x")
        .max_failures(1)
        .build()
        .unwrap();
    let e = b.call(|| -> Result<(), Oops> { Err(Oops) }).unwrap_err();
    assert_eq!(e.to_string(), "oops");
    let e = b.call(|| -> Result<(), Oops> { Ok(()) }).unwrap_err();
    assert!(e.to_string().contains("\"x\" is open"), "{e}");
    let boxed: Box<dyn std::error::Error> = Box::new(e);
    assert!(boxed.source().is_none());
}

#[test]
fn breaker_is_send_sync_and_names_no_generics() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<CircuitBreaker>();
    struct Client {
        _breaker: CircuitBreaker,
    }
    let _ = Client {
        _breaker: CircuitBreaker::builder("x")
            .max_failures(1)
            .build()
            .unwrap(),
    };
}

#[test]
fn a_registry_gives_one_breaker_per_key_with_bounded_memory() {
    let clock = ManualClock::new();
    let storage = lasier_sync::MemoryStorage::with_clock(clock.clone());
    let hosts = lasier_sync::Registry::with_clock(
        move |host| {
            CircuitBreaker::builder(format!("http:{host}"))
                .storage(storage.clone())
                .max_failures(1)
                .circuit_timeout(10 * SEC)
        },
        2,
        60 * SEC,
        clock.clone(),
    );
    let a = hosts.get("a").unwrap();
    let _ = fail(&a);
    assert_eq!(hosts.get("a").unwrap().state().unwrap(), State::Open);
    assert_eq!(hosts.get("b").unwrap().state().unwrap(), State::Closed);
    assert_eq!(hosts.get("a").unwrap().name(), "http:a");
    // a full registry drops breakers, never their circuits in the storage
    clock.advance(SEC);
    for key in ["c", "d", "c", "d", "a"] {
        hosts.get(key).unwrap();
    }
    assert_eq!(hosts.len(), 2);
    assert_eq!(hosts.get("a").unwrap().state().unwrap(), State::Open);
    // a recipe that fails for a key is an error, and inserts nothing
    let strict = lasier_sync::Registry::new(|key| {
        let b = CircuitBreaker::builder(key);
        if key.is_empty() {
            b
        } else {
            b.max_failures(1)
        }
    });
    assert_eq!(strict.get("").unwrap_err(), ConfigError::EmptyName);
    assert!(strict.is_empty());
}

#[test]
fn memory_storage_forgets_circuits_no_breaker_uses_once_they_are_as_good_as_new() {
    let storage = lasier_sync::MemoryStorage::new();
    let open = CircuitBreaker::builder("kept-open")
        .storage(storage.clone())
        .max_failures(1)
        .build()
        .unwrap();
    let _ = fail(&open);
    drop(open);
    for i in 0..5_000 {
        let b = CircuitBreaker::builder(format!("transient-{i}"))
            .storage(storage.clone())
            .max_failures(1)
            .build()
            .unwrap();
        ok(&b).unwrap();
    }
    assert!(storage.circuit_count() <= 2_048, "{storage:?}");
    // the open circuit had state to keep, so it was kept
    let again = CircuitBreaker::builder("kept-open")
        .storage(storage)
        .max_failures(1)
        .build()
        .unwrap();
    assert_eq!(again.state().unwrap(), State::Open);
}

#[test]
fn counts_are_exact_under_many_threads() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock)
            .percentage_failures(100, 1_000_000)
            .build()
            .unwrap();
        std::thread::scope(|s| {
            for t in 0..8 {
                let b = &b;
                s.spawn(move || {
                    for i in 0..500 {
                        if (i + t) % 10 == 0 {
                            let _ = fail(b);
                        } else {
                            ok(b).unwrap();
                        }
                    }
                });
            }
        });
        assert_eq!(
            b.counts().unwrap(),
            lasier_sync::Counts::new(400, 4_000),
            "{kind:?}"
        );
    }
}

#[test]
fn force_open_isolates_until_force_close_for_every_breaker_sharing_the_circuit() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let shared: Arc<dyn lasier_sync::Storage> = Arc::from(storage(kind, &clock));
        let make = || {
            CircuitBreaker::builder("svc")
                .storage(Arc::clone(&shared))
                .clock(clock.clone())
                .max_failures(1)
                .circuit_timeout(10 * SEC)
                .build()
                .unwrap()
        };
        let (here, there) = (make(), make());
        here.force_open().unwrap();
        assert_eq!(there.state().unwrap(), State::ForcedOpen, "{kind:?}");
        let err = ok(&there).unwrap_err();
        assert!(err.is_open() && err.retry_after().is_none(), "{kind:?}");
        // no timeout ends it
        clock.advance(3600 * SEC);
        assert!(ok(&there).unwrap_err().is_open(), "{kind:?}");
        there.force_close().unwrap();
        assert_eq!(here.state().unwrap(), State::Closed, "{kind:?}");
        assert_eq!(ok(&here).unwrap(), 7);
    }
}

#[test]
fn disable_lets_everything_through_and_keeps_counting() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock)
            .percentage_failures(50, 1)
            .build()
            .unwrap();
        let _ = fail(&b);
        let _ = fail(&b);
        assert_eq!(b.state().unwrap(), State::Open, "{kind:?}");
        b.disable().unwrap();
        assert_eq!(b.state().unwrap(), State::Disabled, "{kind:?}");
        for _ in 0..10 {
            assert!(matches!(fail(&b), Err(Error::Inner("boom"))), "{kind:?}");
        }
        ok(&b).unwrap();
        assert_eq!(
            b.counts().unwrap(),
            lasier_sync::Counts::new(10, 11),
            "{kind:?}"
        );
        assert_eq!(b.state().unwrap(), State::Disabled, "{kind:?}");
        b.force_close().unwrap();
        assert_eq!(b.state().unwrap(), State::Closed, "{kind:?}");
        assert_eq!(
            b.counts().unwrap(),
            lasier_sync::Counts::default(),
            "{kind:?}"
        );
    }
}

#[test]
fn manual_changes_fire_events() {
    let changes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&changes);
    let b = CircuitBreaker::builder("svc")
        .max_failures(1)
        .on_state_change(move |_, from, to| seen.lock().unwrap().push((from, to)))
        .build()
        .unwrap();
    b.force_open().unwrap();
    b.disable().unwrap();
    b.force_close().unwrap();
    b.force_close().unwrap();
    assert_eq!(
        *changes.lock().unwrap(),
        [
            (State::Closed, State::ForcedOpen),
            (State::ForcedOpen, State::Disabled),
            (State::Disabled, State::Closed),
        ]
    );
}

#[test]
fn a_force_close_made_elsewhere_reaches_a_breaker_that_cached_the_open_state_within_its_staleness()
{
    let clock = ManualClock::new();
    let shared: Arc<dyn lasier_sync::Storage> = Arc::from(storage(Kind::Primitives, &clock));
    let make = || {
        CircuitBreaker::builder("svc")
            .storage(Arc::clone(&shared))
            .clock(clock.clone())
            .max_failures(1)
            .circuit_timeout(60 * SEC)
            .max_staleness(2 * SEC)
            .build()
            .unwrap()
    };
    let (here, admin) = (make(), make());
    let _ = fail(&here); // trips, and trusts "open" for up to 2 s
    admin.force_close().unwrap();
    assert!(
        ok(&here).unwrap_err().is_open(),
        "still within the staleness bound"
    );
    clock.advance(2 * SEC);
    assert_eq!(
        ok(&here).unwrap(),
        7,
        "asks the store again and sees it closed"
    );
}

#[test]
fn a_lost_trial_permit_does_not_hold_the_circuit_half_open_for_ever() {
    let clock = ManualClock::new();
    let b = builder(Kind::Local, &clock)
        .max_failures(1)
        .build()
        .unwrap();
    let _ = fail(&b);
    clock.advance(10 * SEC);
    // a trial whose guard is leaked: it will never report
    std::mem::forget(b.enter().unwrap());
    assert!(ok(&b).unwrap_err().is_open(), "its slot is still taken");
    clock.advance(10 * SEC);
    // a circuit timeout later, the permit is taken as lost: a new trial
    assert_eq!(ok(&b).unwrap(), 7);
    assert_eq!(b.state().unwrap(), State::Closed);
}

#[test]
fn a_panicking_failure_predicate_does_not_lose_the_trial_permit() {
    let clock = ManualClock::new();
    let b = builder(Kind::Local, &clock)
        .max_failures(1)
        .build()
        .unwrap();
    let _ = fail(&b);
    clock.advance(10 * SEC);
    let b2 = b.clone();
    let panicked = std::thread::spawn(move || {
        let _ = b2.call_filtered(|_: &&str| panic!("predicate"), || Err::<(), _>("boom"));
    })
    .join();
    assert!(panicked.is_err());
    // the trial ended as a failure: open again, not stuck half-open
    assert_eq!(b.state().unwrap(), State::Open);
}

#[test]
fn a_success_slower_than_slow_call_duration_counts_as_a_failure() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock)
            .max_failures(2)
            .slow_call_duration(Duration::from_millis(100))
            .build()
            .unwrap();
        let slow = |took: u64| {
            b.call(|| {
                clock.advance(Duration::from_millis(took));
                Ok::<u32, &str>(7)
            })
        };
        // at the limit is not slow; past it is, and the caller still gets
        // its result
        assert_eq!(slow(100).unwrap(), 7);
        assert_eq!(b.counts().unwrap().failures, 0, "{kind:?}");
        assert_eq!(slow(101).unwrap(), 7);
        assert_eq!(b.counts().unwrap().failures, 1, "{kind:?}");
        // a slow failure is one failure, not two
        let _ = b.call(|| {
            clock.advance(Duration::from_secs(1));
            Err::<u32, &str>("boom")
        });
        assert_eq!(b.state().unwrap(), State::Open, "{kind:?}");
        assert_eq!(b.metrics().slow, 1, "{kind:?}");

        // a guard is timed from its admission
        clock.advance(10 * SEC);
        let trial = b.enter().unwrap();
        clock.advance(Duration::from_millis(150));
        trial.success();
        assert_eq!(
            b.state().unwrap(),
            State::Open,
            "{kind:?}: a slow trial fails"
        );
        assert_eq!(b.metrics().slow, 2, "{kind:?}");
    }
}

#[test]
fn slow_call_duration_must_not_be_zero() {
    let error = CircuitBreaker::builder("svc")
        .max_failures(1)
        .slow_call_duration(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(error.to_string(), "slow_call_duration must not be zero");
}

/// Gathers `on_call_finished`, if it asks for it.
#[derive(Debug, Default)]
struct Ends {
    wants: bool,
    seen: std::sync::Mutex<Vec<(lasier_core::CallKind, Duration)>>,
}

impl lasier_core::Listener for Ends {
    fn on_call_finished(&self, breaker: &str, kind: lasier_core::CallKind, took: Duration) {
        assert_eq!(breaker, "svc");
        self.seen.lock().unwrap().push((kind, took));
    }

    fn wants_call_finished(&self) -> bool {
        self.wants
    }
}

#[test]
fn a_listener_that_asks_hears_how_each_call_ended_and_how_long_it_took() {
    use lasier_core::CallKind::{Failure, Ignored, Slow, Success};
    for kind in KINDS {
        let clock = ManualClock::new();
        let ends = Arc::new(Ends {
            wants: true,
            ..Ends::default()
        });
        let b = builder(kind, &clock)
            .max_failures(3)
            .slow_call_duration(Duration::from_millis(100))
            .listener(Arc::clone(&ends))
            .build()
            .unwrap();
        let ms = Duration::from_millis;
        let run = |took: u64, result: Result<(), &'static str>| {
            b.call_filtered(
                |e: &&str| *e == "counts",
                || {
                    clock.advance(ms(took));
                    result
                },
            )
        };
        run(5, Ok(())).unwrap();
        let _ = run(7, Err("counts"));
        let _ = run(9, Err("ignored"));
        run(150, Ok(())).unwrap();
        let guard = b.enter().unwrap();
        clock.advance(ms(3));
        guard.success();
        assert_eq!(
            *ends.seen.lock().unwrap(),
            [
                (Success, ms(5)),
                (Failure, ms(7)),
                (Ignored, ms(9)),
                (Slow, ms(150)),
                (Success, ms(3))
            ],
            "{kind:?}"
        );
        // a rejected call never started: no end
        let _ = run(1, Err("counts"));
        assert_eq!(b.state().unwrap(), State::Open, "{kind:?}");
        let _ = run(1, Ok(()));
        assert_eq!(ends.seen.lock().unwrap().len(), 6, "{kind:?}");
    }
}

#[test]
fn a_listener_that_does_not_ask_hears_no_call_ends() {
    let clock = ManualClock::new();
    let ends = Arc::new(Ends::default());
    let b = builder(KINDS[0], &clock)
        .max_failures(3)
        .listener(Arc::clone(&ends))
        .build()
        .unwrap();
    ok(&b).unwrap();
    let _ = fail(&b);
    assert!(ends.seen.lock().unwrap().is_empty());
}

/// A burst of failures across the end of a fixed window: a fixed window
/// splits it and each half stays under the rule; a sliding window counts
/// it whole.
#[test]
fn a_sliding_window_catches_a_burst_that_straddles_a_fixed_window() {
    for kind in KINDS {
        for sliding in [false, true] {
            let clock = ManualClock::new();
            let mut builder = builder(kind, &clock).max_failures(4);
            if sliding {
                // six buckets of 10 s
                builder = builder.sliding_window(6);
            }
            let b = builder.build().unwrap();
            fail(&b).unwrap_err();
            clock.advance(58 * SEC);
            fail(&b).unwrap_err();
            fail(&b).unwrap_err();
            assert_eq!(
                b.counts().unwrap().failures,
                3,
                "{kind:?}, sliding {sliding}"
            );
            clock.advance(3 * SEC);
            // The first failure is over either way.
            assert_eq!(b.counts().unwrap().failures, if sliding { 2 } else { 0 });
            fail(&b).unwrap_err();
            fail(&b).unwrap_err();
            let expected = if sliding { State::Open } else { State::Closed };
            assert_eq!(b.state().unwrap(), expected, "{kind:?}, sliding {sliding}");
        }
    }
}

#[test]
fn a_sliding_window_out_of_range_is_refused_at_build() {
    for buckets in [0, 1, 1001, 70_000] {
        let err = CircuitBreaker::builder("svc")
            .max_failures(1)
            .sliding_window(buckets)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("sliding_window"), "{err}");
    }
    // buckets shorter than a millisecond
    let err = CircuitBreaker::builder("svc")
        .max_failures(1)
        .failure_timeout(Duration::from_millis(5))
        .sliding_window(10)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("at least 1 ms"), "{err}");
    CircuitBreaker::builder("svc")
        .max_failures(1)
        .sliding_window(1000)
        .build()
        .unwrap();
}

/// A clock that counts its reads.
#[derive(Debug, Default)]
struct CountingClock {
    inner: ManualClock,
    reads: AtomicUsize,
}

/// A handle on a shared [`CountingClock`], for the breaker.
#[derive(Debug)]
struct Counted(Arc<CountingClock>);

impl lasier_core::clock::Clock for Counted {
    fn now(&self) -> Duration {
        self.0.reads.fetch_add(1, Ordering::SeqCst);
        self.0.inner.now()
    }
}

#[test]
fn a_count_window_holds_the_last_n_calls_and_reads_no_clock_on_success() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock)
            .max_failures(3)
            .count_window(5)
            .build()
            .unwrap();
        fail(&b).unwrap_err();
        fail(&b).unwrap_err();
        // Time does not end a count window.
        clock.advance(3600 * SEC);
        assert_eq!(
            b.counts().unwrap(),
            lasier_sync::Counts::new(2, 2),
            "{kind:?}"
        );
        for _ in 0..3 {
            ok(&b).unwrap();
        }
        // a sixth call: the first failure leaves the window as it comes
        fail(&b).unwrap_err();
        assert_eq!(
            b.counts().unwrap(),
            lasier_sync::Counts::new(2, 5),
            "{kind:?}"
        );
        assert_eq!(b.state().unwrap(), State::Closed, "{kind:?}");
        // replaces the second failure: still two
        fail(&b).unwrap_err();
        assert_eq!(
            b.counts().unwrap(),
            lasier_sync::Counts::new(2, 5),
            "{kind:?}"
        );
        assert_eq!(b.state().unwrap(), State::Closed, "{kind:?}");
        // replaces a success: three
        fail(&b).unwrap_err();
        assert_eq!(b.state().unwrap(), State::Open, "{kind:?}");
    }
    // In process, a success reads no clock for a count window: as many
    // reads as under MaxFailures' fixed window, which counts no success
    // (the feature `metrics` times every call, on both), and fewer than a
    // time window that counts successes.
    let reads = |builder: fn(CircuitBreakerBuilder) -> CircuitBreakerBuilder| {
        let clock = Arc::new(CountingClock::default());
        let b = builder(CircuitBreaker::builder("svc").clock(Counted(Arc::clone(&clock))))
            .build()
            .unwrap();
        ok(&b).unwrap();
        let before = clock.reads.load(Ordering::SeqCst);
        for _ in 0..1_000 {
            ok(&b).unwrap();
        }
        clock.reads.load(Ordering::SeqCst) - before
    };
    let count = reads(|b| b.percentage_failures(50, 10).count_window(100));
    assert_eq!(count, reads(|b| b.max_failures(5)));
    assert!(count + 1_000 <= reads(|b| b.percentage_failures(50, 10)));
}

#[test]
fn a_count_window_waits_for_its_minimum_calls() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock)
            .percentage_failures(50, 0)
            .count_window(10)
            .minimum_calls(4)
            .build()
            .unwrap();
        for _ in 0..3 {
            fail(&b).unwrap_err();
        }
        assert_eq!(b.state().unwrap(), State::Closed, "{kind:?}");
        fail(&b).unwrap_err();
        assert_eq!(b.state().unwrap(), State::Open, "{kind:?}");
    }
}

#[test]
fn count_window_settings_out_of_range_are_refused_at_build() {
    let build = |f: fn(CircuitBreakerBuilder) -> CircuitBreakerBuilder| {
        f(CircuitBreaker::builder("svc").max_failures(1)).build()
    };
    for (what, result) in [
        ("count_window", build(|b| b.count_window(0))),
        ("count_window", build(|b| b.count_window(100_001))),
        (
            "minimum_calls",
            build(|b| b.count_window(10).minimum_calls(11)),
        ),
        (
            "minimum_calls",
            build(|b| b.count_window(10).minimum_calls(0)),
        ),
        ("minimum_calls", build(|b| b.minimum_calls(3))),
        (
            "choose one",
            build(|b| b.count_window(10).sliding_window(4)),
        ),
    ] {
        let err = result.unwrap_err();
        assert!(err.to_string().contains(what), "{what}: {err}");
    }
    build(|b| b.count_window(100_000).minimum_calls(100_000)).unwrap();
}

/// Breakers sharing a `MemoryStorage` circuit must count alike: a second
/// breaker of the name in another window is refused at build, not handed
/// counters made for the first.
#[test]
fn breakers_sharing_a_memory_circuit_must_count_in_one_window() {
    let storage = lasier_sync::MemoryStorage::new();
    let build = |f: fn(CircuitBreakerBuilder) -> CircuitBreakerBuilder| {
        f(CircuitBreaker::builder("shared")
            .storage(storage.clone())
            .max_failures(3))
        .build()
    };
    let _first = build(|b| b.sliding_window(6)).unwrap();
    let _same = build(|b| b.sliding_window(6)).unwrap();
    for other in [
        build(|b| b),
        build(|b| b.sliding_window(4)),
        build(|b| b.sliding_window(6).failure_timeout(Duration::from_secs(30))),
        build(|b| b.count_window(10)),
    ] {
        let err = other.unwrap_err();
        assert!(err.to_string().contains("another window"), "{err}");
    }
    // Another name is another circuit.
    CircuitBreaker::builder("other")
        .storage(storage.clone())
        .max_failures(3)
        .count_window(10)
        .build()
        .unwrap();
}
