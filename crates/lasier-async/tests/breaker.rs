//! The breaker's behaviour, on both engines, with a manual clock for the
//! circuit and tokio's paused time for timeouts: no test sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use lasier_async::{
    AsyncStorage, CircuitBreaker, CircuitBreakerBuilder, ConfigError, Counts, Error, OpenBackoff,
    RuleError, State,
};
use lasier_core::clock::ManualClock;
use support::{storage, Kind, KINDS};
use tokio::sync::Barrier;
use tokio::time::{sleep, timeout};

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

async fn fail(b: &CircuitBreaker) -> Result<(), Error<&'static str>> {
    b.call(async { Err("boom") }).await
}

async fn ok(b: &CircuitBreaker) -> Result<u32, Error<&'static str>> {
    b.call(async { Ok(7) }).await
}

/// A call whose future never completes, so that it ends only by being
/// dropped; it would fail if it did complete.
async fn hang(b: &CircuitBreaker) -> Result<(), Error<&'static str>> {
    b.call(async {
        sleep(3600 * SEC).await;
        Err("boom")
    })
    .await
}

#[tokio::test]
async fn opens_on_the_nth_failure_and_rejects_without_polling() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock).max_failures(3).build().unwrap();
        for _ in 0..2 {
            assert!(matches!(fail(&b).await, Err(Error::Inner("boom"))));
            assert_eq!(b.state().await.unwrap(), State::Closed, "{kind:?}");
        }
        assert_eq!(b.counts().await.unwrap().failures, 2, "{kind:?}");
        // the third failure is returned as the call's own error, and opens
        assert!(matches!(fail(&b).await, Err(Error::Inner("boom"))));
        assert_eq!(b.state().await.unwrap(), State::Open, "{kind:?}");

        let polled = AtomicBool::new(false);
        let rejected = b
            .call(async {
                polled.store(true, Ordering::SeqCst);
                Ok::<(), ()>(())
            })
            .await;
        let err = rejected.unwrap_err();
        assert!(err.is_open(), "{kind:?}");
        assert!(!polled.load(Ordering::SeqCst), "{kind:?}");
        match err {
            Error::Open { name, .. } => assert_eq!(&*name, "svc"),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn the_local_engine_says_how_long_it_stays_open() {
    let clock = ManualClock::new();
    let b = builder(Kind::Local, &clock)
        .max_failures(1)
        .build()
        .unwrap();
    let _ = fail(&b).await;
    clock.advance(4 * SEC);
    assert_eq!(ok(&b).await.unwrap_err().retry_after(), Some(6 * SEC));
}

#[tokio::test]
async fn open_backoff_lengthens_each_reopening_and_starts_again_after_a_closed_window() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock)
            .max_failures(1)
            .open_backoff(OpenBackoff::exponential(2.0).max(25 * SEC))
            .build()
            .unwrap();
        // Open for `time`: open just before it ends, half-open at its end.
        let open_for = |time: Duration| {
            let (clock, b) = (&clock, &b);
            async move {
                clock.advance(time - Duration::from_millis(1));
                assert_eq!(b.state().await.unwrap(), State::Open, "{kind:?} {time:?}");
                clock.advance(Duration::from_millis(1));
                assert_eq!(
                    b.state().await.unwrap(),
                    State::HalfOpen,
                    "{kind:?} {time:?}"
                );
            }
        };
        let _ = fail(&b).await;
        open_for(10 * SEC).await;
        let _ = fail(&b).await; // the trial fails
        if matches!(kind, Kind::Local) {
            assert_eq!(ok(&b).await.unwrap_err().retry_after(), Some(20 * SEC));
        }
        open_for(20 * SEC).await;
        let _ = fail(&b).await;
        open_for(25 * SEC).await; // not 40: the maximum
        assert_eq!(ok(&b).await.unwrap(), 7); // the trial passes: closed
        assert_eq!(b.state().await.unwrap(), State::Closed, "{kind:?}");
        clock.advance(60 * SEC); // a whole closed window
        let _ = fail(&b).await;
        open_for(10 * SEC).await;
    }
}

#[tokio::test]
async fn successes_do_not_open_under_max_failures() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock).max_failures(2).build().unwrap();
        let _ = fail(&b).await;
        for _ in 0..100 {
            assert_eq!(ok(&b).await.unwrap(), 7);
        }
        assert_eq!(b.counts().await.unwrap().failures, 1, "{kind:?}");
        let _ = fail(&b).await;
        assert_eq!(b.state().await.unwrap(), State::Open, "{kind:?}");
    }
}

#[tokio::test]
async fn percentage_rule_boundaries_through_the_breaker() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock)
            .percentage_failures(50, 5)
            .build()
            .unwrap();
        // 5 failures of 5 requests: not more than the minimum, stays closed
        for _ in 0..5 {
            let _ = fail(&b).await;
        }
        assert_eq!(b.state().await.unwrap(), State::Closed, "{kind:?}");
        assert_eq!(b.counts().await.unwrap(), Counts::new(5, 5));
        b.reset().await.unwrap();
        // 20 failures of 40 requests: opens on the 20th failure
        for _ in 0..20 {
            ok(&b).await.unwrap();
        }
        for i in 0..20 {
            assert_eq!(b.state().await.unwrap(), State::Closed, "{kind:?} {i}");
            let _ = fail(&b).await;
        }
        assert_eq!(b.state().await.unwrap(), State::Open, "{kind:?}");
    }
}

#[tokio::test]
async fn counters_expire_after_failure_timeout_from_the_first_count() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock).max_failures(2).build().unwrap();
        let _ = fail(&b).await;
        clock.advance(59 * SEC);
        assert_eq!(b.counts().await.unwrap().failures, 1, "{kind:?}");
        clock.advance(SEC);
        assert_eq!(b.counts().await.unwrap().failures, 0, "{kind:?}");
        let _ = fail(&b).await;
        assert_eq!(b.state().await.unwrap(), State::Closed, "{kind:?}");
        // the new window started at the last failure
        clock.advance(59 * SEC);
        let _ = fail(&b).await;
        assert_eq!(b.state().await.unwrap(), State::Open, "{kind:?}");
    }
}

#[tokio::test]
async fn half_open_trial_success_closes_with_fresh_counters() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock).max_failures(2).build().unwrap();
        let _ = fail(&b).await;
        let _ = fail(&b).await;
        clock.advance(10 * SEC);
        assert_eq!(b.state().await.unwrap(), State::HalfOpen, "{kind:?}");
        let trial = b.enter().await.unwrap();
        // one trial at a time by default
        assert!(b.enter().await.unwrap_err().is_open(), "{kind:?}");
        trial.success().await;
        assert_eq!(b.state().await.unwrap(), State::Closed, "{kind:?}");
        assert_eq!(b.counts().await.unwrap().failures, 0, "{kind:?}");
        // fresh window: one failure does not reopen
        let _ = fail(&b).await;
        assert_eq!(b.state().await.unwrap(), State::Closed, "{kind:?}");
    }
}

#[tokio::test]
async fn half_open_trial_failure_reopens_at_once() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock)
            .max_failures(1)
            .half_open_max_calls(3)
            .build()
            .unwrap();
        let _ = fail(&b).await;
        clock.advance(10 * SEC);
        ok(&b).await.unwrap();
        assert_eq!(b.state().await.unwrap(), State::HalfOpen, "{kind:?}");
        let _ = fail(&b).await;
        assert_eq!(b.state().await.unwrap(), State::Open, "{kind:?}");
        clock.advance(9 * SEC);
        assert!(ok(&b).await.unwrap_err().is_open(), "{kind:?}");
        clock.advance(SEC);
        for _ in 0..3 {
            ok(&b).await.unwrap();
        }
        assert_eq!(b.state().await.unwrap(), State::Closed, "{kind:?}");
    }
}

#[tokio::test]
async fn half_open_closes_after_the_successes_asked_for() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock)
            .max_failures(1)
            .half_open_max_calls(3)
            .half_open_successes(2)
            .build()
            .unwrap();
        let _ = fail(&b).await;
        clock.advance(10 * SEC);
        let first = b.enter().await.unwrap();
        let second = b.enter().await.unwrap();
        let third = b.enter().await.unwrap();
        first.success().await;
        assert_eq!(b.state().await.unwrap(), State::HalfOpen, "{kind:?}");
        second.success().await;
        assert_eq!(b.state().await.unwrap(), State::Closed, "{kind:?}");
        // late, it decides nothing
        third.failure().await;
        assert_eq!(b.state().await.unwrap(), State::Closed, "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_open_admits_exactly_max_calls_concurrent_trials() {
    for kind in KINDS {
        for max in [1_u32, 3] {
            let clock = ManualClock::new();
            let b = builder(kind, &clock)
                .max_failures(1)
                .half_open_max_calls(max)
                .build()
                .unwrap();
            let _ = fail(&b).await;
            clock.advance(10 * SEC);
            let tasks = 16;
            let start = Arc::new(Barrier::new(tasks));
            let hold = Arc::new(Barrier::new(tasks));
            let admitted = Arc::new(AtomicUsize::new(0));
            let handles: Vec<_> = (0..tasks)
                .map(|_| {
                    let (b, start, hold, admitted) = (
                        b.clone(),
                        Arc::clone(&start),
                        Arc::clone(&hold),
                        Arc::clone(&admitted),
                    );
                    tokio::spawn(async move {
                        start.wait().await;
                        let guard = b.enter().await;
                        if guard.is_ok() {
                            admitted.fetch_add(1, Ordering::SeqCst);
                        }
                        // everyone holds its permit until all have asked
                        hold.wait().await;
                        if let Ok(guard) = guard {
                            guard.success().await;
                        }
                    })
                })
                .collect();
            for handle in handles {
                handle.await.unwrap();
            }
            assert_eq!(
                admitted.load(Ordering::SeqCst),
                max as usize,
                "{kind:?} max {max}"
            );
            assert_eq!(b.state().await.unwrap(), State::Closed, "{kind:?}");
        }
    }
}

#[tokio::test]
async fn without_half_open_the_circuit_closes_when_open_time_is_over() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock)
            .max_failures(1)
            .half_open_max_calls(0)
            .build()
            .unwrap();
        let _ = fail(&b).await;
        clock.advance(10 * SEC - Duration::from_millis(1));
        assert_eq!(b.state().await.unwrap(), State::Open, "{kind:?}");
        clock.advance(Duration::from_millis(1));
        assert_eq!(b.state().await.unwrap(), State::Closed, "{kind:?}");
        // every call passes, as in the original, and counting starts afresh
        let mut guards = Vec::new();
        for _ in 0..5 {
            guards.push(b.enter().await.unwrap());
        }
        for guard in guards {
            guard.success().await;
        }
        assert_eq!(b.counts().await.unwrap().failures, 0);
        let _ = fail(&b).await;
        assert_eq!(b.state().await.unwrap(), State::Open, "{kind:?}");
    }
}

#[tokio::test]
async fn call_filtered_counts_only_matching_errors() {
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
            let r = b
                .call_filtered(unavailable, async { Err::<(), _>(E::NotFound) })
                .await;
            assert!(matches!(r, Err(Error::Inner(E::NotFound))));
        }
        // counted as requests, not as failures
        assert_eq!(b.counts().await.unwrap(), Counts::new(0, 10));
        for _ in 0..10 {
            let _ = b
                .call_filtered(unavailable, async { Err::<(), _>(E::Unavailable) })
                .await;
        }
        assert_eq!(b.state().await.unwrap(), State::Open, "{kind:?}");
    }
}

#[tokio::test]
async fn guard_verdicts_and_drops() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock)
            .percentage_failures(50, 3)
            .build()
            .unwrap();
        b.enter().await.unwrap().success().await;
        assert_eq!(b.counts().await.unwrap(), Counts::new(0, 1), "{kind:?}");
        // no verdict: a cancelled call, nothing is counted (the sync
        // facade's guard would count a success here)
        drop(b.enter().await.unwrap());
        // a verdict whose future is never polled is no verdict either
        drop(b.enter().await.unwrap().failure());
        assert_eq!(b.counts().await.unwrap(), Counts::new(0, 1), "{kind:?}");
        b.enter().await.unwrap().failure().await;
        assert_eq!(b.counts().await.unwrap(), Counts::new(1, 2), "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_inside_call_counts_as_a_failure() {
    let clock = ManualClock::new();
    let b = builder(Kind::Local, &clock)
        .max_failures(1)
        .build()
        .unwrap();
    let b2 = b.clone();
    let task = tokio::spawn(async move { b2.call(explode()).await });
    assert!(task.await.unwrap_err().is_panic());
    assert_eq!(b.state().await.unwrap(), State::Open);
}

async fn explode() -> Result<(), ()> {
    panic!("the guarded future panicked")
}

/// A waker that does nothing, to poll a future by hand.
struct NoopWaker;

impl Wake for NoopWaker {
    fn wake(self: Arc<Self>) {}
}

#[test]
fn a_panic_counts_as_a_failure_even_if_the_executor_drops_the_future_later() {
    // An executor that catches the panic and drops the future only later
    // (as futures' catch_unwind does), when a drop reads as a cancellation:
    // the panic must have been recorded as it unwound through the call.
    let clock = ManualClock::new();
    let b = builder(Kind::Local, &clock)
        .max_failures(1)
        .build()
        .unwrap();
    let waker = Waker::from(Arc::new(NoopWaker));
    let mut call = Box::pin(b.call(explode()));
    let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        call.as_mut().poll(&mut Context::from_waker(&waker))
    }));
    assert!(polled.is_err());
    drop(call);
    let mut state = pin!(b.state());
    let Poll::Ready(state) = state.as_mut().poll(&mut Context::from_waker(&waker)) else {
        panic!("the in-memory engine never waits");
    };
    assert_eq!(state.unwrap(), State::Open);
}

#[tokio::test]
async fn reset_closes_and_clears_only_this_breaker() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let shared: Arc<dyn AsyncStorage> = Arc::from(storage(kind, &clock));
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
        let _ = fail(&a).await;
        let _ = fail(&other).await;
        a.reset().await.unwrap();
        assert_eq!(a.state().await.unwrap(), State::Closed, "{kind:?}");
        assert_eq!(other.state().await.unwrap(), State::Open, "{kind:?}");
    }
}

#[tokio::test]
async fn breakers_with_one_name_on_one_storage_share_a_circuit() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let shared: Arc<dyn AsyncStorage> = Arc::from(storage(kind, &clock));
        let make = || {
            CircuitBreaker::builder("svc")
                .storage(Arc::clone(&shared))
                .max_failures(2)
                .build()
                .unwrap()
        };
        let (one, two) = (make(), make());
        let _ = fail(&one).await;
        let _ = fail(&two).await;
        assert_eq!(one.state().await.unwrap(), State::Open, "{kind:?}");
    }
}

#[tokio::test]
async fn outcomes_of_calls_admitted_before_the_circuit_opened_are_not_counted() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock).max_failures(1).build().unwrap();
        let slow = b.enter().await.unwrap();
        let _ = fail(&b).await;
        slow.failure().await;
        clock.advance(10 * SEC);
        assert_eq!(b.state().await.unwrap(), State::HalfOpen, "{kind:?}");
        ok(&b).await.unwrap();
        assert_eq!(b.state().await.unwrap(), State::Closed, "{kind:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_call_in_closed_state_records_nothing() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock)
            .percentage_failures(50, 0)
            .build()
            .unwrap();
        // a timeout that fires drops the guarded future
        assert!(timeout(SEC, hang(&b)).await.is_err());
        // a select! branch that lost
        tokio::select! {
            r = hang(&b) => panic!("{r:?}"),
            () = sleep(SEC) => {}
        }
        // neither a request nor a failure was counted: one failure would
        // have opened the circuit
        assert_eq!(b.counts().await.unwrap(), Counts::new(0, 0), "{kind:?}");
        assert_eq!(b.state().await.unwrap(), State::Closed, "{kind:?}");
        ok(&b).await.unwrap();
        assert_eq!(b.counts().await.unwrap(), Counts::new(0, 1), "{kind:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_trial_gives_its_slot_back_and_records_nothing() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock).max_failures(1).build().unwrap();
        let _ = fail(&b).await;
        clock.advance(10 * SEC);
        for _ in 0..3 {
            // the one trial slot is taken, then the trial is cancelled
            assert!(timeout(SEC, hang(&b)).await.is_err(), "{kind:?}");
            // neither closed (a success) nor reopened (a failure)
            assert_eq!(b.state().await.unwrap(), State::HalfOpen, "{kind:?}");
        }
        // the slot is free again: the next call is the trial, and closes
        assert_eq!(ok(&b).await.unwrap(), 7, "{kind:?}");
        assert_eq!(b.state().await.unwrap(), State::Closed, "{kind:?}");
    }
}

#[tokio::test]
async fn a_trial_cancelled_around_its_periods_end_frees_no_slot_later() {
    for drop_first in [true, false] {
        for kind in KINDS {
            let clock = ManualClock::new();
            let b = builder(kind, &clock)
                .max_failures(1)
                .half_open_max_calls(2)
                .build()
                .unwrap();
            let _ = fail(&b).await;
            clock.advance(10 * SEC);
            let cancelled = b.enter().await.unwrap();
            let failed = b.enter().await.unwrap();
            if drop_first {
                drop(cancelled);
                failed.failure().await;
            } else {
                failed.failure().await;
                drop(cancelled);
            }
            assert_eq!(b.state().await.unwrap(), State::Open, "{kind:?}");
            assert!(ok(&b).await.unwrap_err().is_open(), "{kind:?}");
            // the next half-open period comes, with its two slots and no more
            clock.advance(10 * SEC);
            assert_eq!(b.state().await.unwrap(), State::HalfOpen, "{kind:?}");
            let trials = (b.enter().await.unwrap(), b.enter().await.unwrap());
            assert!(b.enter().await.unwrap_err().is_open(), "{kind:?}");
            trials.0.success().await;
            trials.1.success().await;
            assert_eq!(b.state().await.unwrap(), State::Closed, "{kind:?}");
        }
    }
}

#[tokio::test]
async fn a_trial_cancelled_after_another_breaker_ended_its_period_frees_no_slot() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let shared: Arc<dyn AsyncStorage> = Arc::from(storage(kind, &clock));
        // two processes sharing one circuit
        let make = || {
            CircuitBreaker::builder("svc")
                .storage(Arc::clone(&shared))
                .clock(clock.clone())
                .circuit_timeout(10 * SEC)
                .max_failures(1)
                .half_open_max_calls(2)
                .build()
                .unwrap()
        };
        let (here, there) = (make(), make());
        let _ = fail(&here).await;
        clock.advance(10 * SEC);
        let stale = here.enter().await.unwrap();
        // the other process's trial fails: reopened, unseen here
        there.enter().await.unwrap().failure().await;
        clock.advance(10 * SEC);
        // a new half-open period, which this breaker sees start
        let first = here.enter().await.unwrap();
        drop(stale);
        let second = here.enter().await.unwrap();
        assert!(here.enter().await.unwrap_err().is_open(), "{kind:?}");
        first.success().await;
        second.success().await;
        assert_eq!(here.state().await.unwrap(), State::Closed, "{kind:?}");
    }
}

#[tokio::test]
async fn invalid_configuration_is_a_typed_error() {
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

#[tokio::test]
async fn errors_carry_their_sources_and_display() {
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
    let e = b.call(async { Err::<(), _>(Oops) }).await.unwrap_err();
    assert_eq!(e.to_string(), "oops");
    let e = b.call(async { Ok::<(), Oops>(()) }).await.unwrap_err();
    assert!(e.to_string().contains("\"x\" is open"), "{e}");
    let boxed: Box<dyn std::error::Error> = Box::new(e);
    assert!(boxed.source().is_none());
}

#[test]
fn breaker_and_its_futures_are_send_and_name_no_generics() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    fn assert_send<T: Send>(_: &T) {}
    assert_send_sync::<CircuitBreaker>();
    struct Client {
        breaker: CircuitBreaker,
    }
    let client = Client {
        breaker: CircuitBreaker::builder("x")
            .max_failures(1)
            .build()
            .unwrap(),
    };
    let b = &client.breaker;
    assert_send(&b.call(async { Ok::<(), ()>(()) }));
    assert_send(&b.call_filtered(|_: &()| true, async { Ok::<(), ()>(()) }));
    assert_send(&b.enter());
    assert_send(&b.state());
    assert_send(&b.counts());
    assert_send(&b.reset());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_static_breaker_serves_many_tasks_on_the_multi_threaded_runtime() {
    static BREAKER: OnceLock<CircuitBreaker> = OnceLock::new();
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock)
            .percentage_failures(50, 1_000)
            .build()
            .unwrap();
        let b: &'static CircuitBreaker = match kind {
            // a `static`, for the in-memory engine
            Kind::Local => BREAKER.get_or_init(|| b),
            // a leaked one, for the store engine
            Kind::Primitives => Box::leak(Box::new(b)),
        };
        let handles: Vec<_> = (0..32_u32)
            .map(|i| {
                tokio::spawn(async move {
                    for j in 0..10_u32 {
                        let fails = (i + j) % 4 == 0;
                        let _ = b
                            .call(async move {
                                if fails {
                                    Err(())
                                } else {
                                    Ok(())
                                }
                            })
                            .await;
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
        // no count lost between threads: 320 requests, a quarter failed
        assert_eq!(b.counts().await.unwrap(), Counts::new(80, 320), "{kind:?}");
        assert_eq!(b.state().await.unwrap(), State::Closed, "{kind:?}");
    }
}

#[tokio::test]
async fn a_success_slower_than_slow_call_duration_counts_as_a_failure() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock)
            .max_failures(2)
            .slow_call_duration(Duration::from_millis(100))
            .build()
            .unwrap();
        for took in [100, 101] {
            let result = b
                .call(async {
                    clock.advance(Duration::from_millis(took));
                    Ok::<u32, &str>(7)
                })
                .await;
            assert_eq!(result.unwrap(), 7);
        }
        assert_eq!(b.counts().await.unwrap().failures, 1, "{kind:?}");
        let guard = b.enter().await.unwrap();
        clock.advance(Duration::from_millis(101));
        guard.success().await;
        assert_eq!(b.state().await.unwrap(), State::Open, "{kind:?}");
        assert_eq!(b.metrics().await.slow, 2, "{kind:?}");
    }
}

/// Gathers `on_call_finished`.
#[derive(Debug, Default)]
struct Ends(std::sync::Mutex<Vec<(lasier_core::CallKind, Duration)>>);

impl lasier_core::Listener for Ends {
    fn on_call_finished(&self, _: &str, kind: lasier_core::CallKind, took: Duration) {
        self.0.lock().unwrap().push((kind, took));
    }

    fn wants_call_finished(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn a_listener_that_asks_hears_how_each_call_ended_and_how_long_it_took() {
    use lasier_core::CallKind::{Failure, Ignored, Success};
    for kind in KINDS {
        let clock = ManualClock::new();
        let ends = Arc::new(Ends::default());
        let b = builder(kind, &clock)
            .max_failures(3)
            .listener(Arc::clone(&ends))
            .build()
            .unwrap();
        let ms = Duration::from_millis;
        for (took, result) in [(5, Ok(())), (7, Err("counts")), (9, Err("ignored"))] {
            let _ = b
                .call_filtered(|e: &&str| *e == "counts", async {
                    clock.advance(ms(took));
                    result
                })
                .await;
        }
        let guard = b.enter().await.unwrap();
        clock.advance(ms(3));
        guard.failure().await;
        assert_eq!(
            *ends.0.lock().unwrap(),
            [
                (Success, ms(5)),
                (Failure, ms(7)),
                (Ignored, ms(9)),
                (Failure, ms(3))
            ],
            "{kind:?}"
        );
    }
}

/// A burst of failures across the end of a fixed window: a fixed window
/// splits it and each half stays under the rule; a sliding window counts
/// it whole.
#[tokio::test]
async fn a_sliding_window_catches_a_burst_that_straddles_a_fixed_window() {
    for kind in KINDS {
        for sliding in [false, true] {
            let clock = ManualClock::new();
            let mut builder = builder(kind, &clock).max_failures(4);
            if sliding {
                builder = builder.sliding_window(6);
            }
            let b = builder.build().unwrap();
            fail(&b).await.unwrap_err();
            clock.advance(58 * SEC);
            fail(&b).await.unwrap_err();
            fail(&b).await.unwrap_err();
            assert_eq!(b.counts().await.unwrap().failures, 3, "{kind:?}");
            clock.advance(3 * SEC);
            assert_eq!(
                b.counts().await.unwrap().failures,
                if sliding { 2 } else { 0 }
            );
            fail(&b).await.unwrap_err();
            fail(&b).await.unwrap_err();
            let expected = if sliding { State::Open } else { State::Closed };
            assert_eq!(
                b.state().await.unwrap(),
                expected,
                "{kind:?}, sliding {sliding}"
            );
        }
    }
}

#[tokio::test]
async fn a_count_window_holds_the_last_n_calls() {
    for kind in KINDS {
        let clock = ManualClock::new();
        let b = builder(kind, &clock)
            .max_failures(3)
            .count_window(5)
            .minimum_calls(2)
            .build()
            .unwrap();
        fail(&b).await.unwrap_err();
        clock.advance(3600 * SEC);
        for _ in 0..4 {
            ok(&b).await.unwrap();
        }
        // the failure leaves the window as the sixth call comes
        ok(&b).await.unwrap();
        assert_eq!(b.counts().await.unwrap(), Counts::new(0, 5), "{kind:?}");
        for _ in 0..2 {
            fail(&b).await.unwrap_err();
        }
        assert_eq!(b.state().await.unwrap(), State::Closed, "{kind:?}");
        fail(&b).await.unwrap_err();
        assert_eq!(b.state().await.unwrap(), State::Open, "{kind:?}");
    }
}
