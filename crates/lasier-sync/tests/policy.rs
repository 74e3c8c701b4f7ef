//! What a breaker does when its store fails, and the events it emits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lasier_core::clock::ManualClock;
use lasier_sync::{
    CircuitBreaker, Error, MemoryStorage, State, Storage, StorageErrorKind, StorageFailurePolicy,
};
use support::{Faulty, Recorder};

const SEC: Duration = Duration::from_secs(1);

struct Setup {
    clock: ManualClock,
    store: Arc<Faulty>,
    events: Arc<Recorder>,
    breaker: CircuitBreaker,
}

fn setup(policy: StorageFailurePolicy) -> Setup {
    let clock = ManualClock::new();
    let store = Arc::new(Faulty::new(MemoryStorage::with_clock(clock.clone())));
    let events = Arc::new(Recorder::default());
    let breaker = CircuitBreaker::builder("svc")
        .storage(Arc::clone(&store))
        .clock(clock.clone())
        .max_failures(2)
        .circuit_timeout(10 * SEC)
        .on_storage_failure(policy)
        .listener(Arc::clone(&events))
        .build()
        .unwrap();
    Setup {
        clock,
        store,
        events,
        breaker,
    }
}

fn fallback() -> StorageFailurePolicy {
    StorageFailurePolicy::LocalFallback {
        probe_interval: 5 * SEC,
    }
}

fn run(b: &CircuitBreaker, ran: &AtomicUsize, fail: bool) -> Result<(), Error<&'static str>> {
    b.call(|| {
        ran.fetch_add(1, Ordering::SeqCst);
        if fail {
            Err("boom")
        } else {
            Ok(())
        }
    })
}

#[test]
fn fail_open_lets_calls_through_uncounted() {
    let s = setup(StorageFailurePolicy::FailOpen);
    s.store.set_down(true);
    let ran = AtomicUsize::new(0);
    for _ in 0..5 {
        assert!(matches!(
            run(&s.breaker, &ran, true),
            Err(Error::Inner("boom"))
        ));
    }
    assert_eq!(ran.load(Ordering::SeqCst), 5);
    s.store.set_down(false);
    assert_eq!(s.breaker.state().unwrap(), State::Closed);
    assert_eq!(s.breaker.counts().unwrap().failures, 0);
    assert!(!s.breaker.in_fallback());
}

#[test]
fn fail_closed_rejects_with_the_storage_error_without_running() {
    let s = setup(StorageFailurePolicy::FailClosed);
    s.store.set_down(true);
    let ran = AtomicUsize::new(0);
    let err = run(&s.breaker, &ran, false).unwrap_err();
    match err {
        Error::Storage(e) => assert_eq!(e.kind(), StorageErrorKind::Unavailable),
        other => panic!("{other:?}"),
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    s.store.set_down(false);
    assert!(run(&s.breaker, &ran, false).is_ok());
}

#[test]
fn local_fallback_keeps_protecting_and_goes_back_to_the_shared_state() {
    let s = setup(fallback());
    s.store.set_down(true);
    let ran = AtomicUsize::new(0);
    // the dependency fails while the store is down: the local circuit opens
    assert!(matches!(run(&s.breaker, &ran, true), Err(Error::Inner(_))));
    assert!(s.breaker.in_fallback());
    assert!(matches!(run(&s.breaker, &ran, true), Err(Error::Inner(_))));
    assert!(run(&s.breaker, &ran, false).unwrap_err().is_open());
    assert_eq!(ran.load(Ordering::SeqCst), 2);
    assert_eq!(s.breaker.state().unwrap(), State::Open);

    // between probes the store is not asked at all
    let before = s.store.calls();
    for _ in 0..100 {
        let _ = run(&s.breaker, &ran, false);
    }
    assert_eq!(s.store.calls(), before);

    // one probe per interval, and it fails: still in fallback
    s.clock.advance(5 * SEC);
    let _ = run(&s.breaker, &ran, false);
    let probed = s.store.calls() - before;
    assert!(probed >= 1, "the probe asked the store");
    for _ in 0..10 {
        let _ = run(&s.breaker, &ran, false);
    }
    assert_eq!(s.store.calls() - before, probed, "one probe per interval");
    assert!(s.breaker.in_fallback());

    // the store answers again: back on the shared state (closed there)
    s.store.set_down(false);
    s.clock.advance(5 * SEC);
    assert!(run(&s.breaker, &ran, false).is_ok());
    assert!(!s.breaker.in_fallback());
    assert_eq!(s.breaker.state().unwrap(), State::Closed);

    let events = s.events.events();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.contains("fallback entered"))
            .count(),
        1,
        "{events:?}"
    );
    assert!(events.contains(&"svc: fallback entered (Unavailable)".to_owned()));
    assert!(events.contains(&"svc: closed -> open".to_owned()));
    assert_eq!(events.last().unwrap(), "svc: fallback left", "{events:?}");
}

#[test]
fn a_store_failing_after_the_call_never_changes_its_result() {
    for policy in [
        StorageFailurePolicy::FailOpen,
        StorageFailurePolicy::FailClosed,
        fallback(),
    ] {
        let s = setup(policy);
        // admission reads only; the record step writes and fails
        s.store.writes_down.store(true, Ordering::SeqCst);
        let ran = AtomicUsize::new(0);
        assert!(run(&s.breaker, &ran, false).is_ok(), "{policy:?}");
        assert!(
            matches!(run(&s.breaker, &ran, true), Err(Error::Inner("boom"))),
            "{policy:?}"
        );
    }
}

#[test]
fn failures_recorded_while_the_store_is_failing_still_open_the_fallback_circuit() {
    let s = setup(fallback());
    s.store.writes_down.store(true, Ordering::SeqCst);
    let ran = AtomicUsize::new(0);
    let _ = run(&s.breaker, &ran, true);
    assert!(s.breaker.in_fallback());
    let _ = run(&s.breaker, &ran, true);
    assert!(run(&s.breaker, &ran, false).unwrap_err().is_open());
}

#[test]
fn garbage_in_the_store_is_a_corrupt_error_and_the_next_window_starts_clean() {
    let s = setup(StorageFailurePolicy::FailClosed);
    let ran = AtomicUsize::new(0);
    // a negative failure counter: nothing the breaker writes
    s.store.inner.set("svc", -7, None).unwrap();
    let _ = run(&s.breaker, &ran, true);
    assert_eq!(s.store.inner.get("svc").unwrap(), None, "repaired");
    let _ = run(&s.breaker, &ran, true);
    assert_eq!(s.breaker.counts().unwrap().failures, 1, "a clean window");

    // an open flag that is not 1: admission reports it, then repairs it
    s.store.inner.set("circuit_svc", 42, None).unwrap();
    match run(&s.breaker, &ran, false).unwrap_err() {
        Error::Storage(e) => assert_eq!(e.kind(), StorageErrorKind::Corrupt),
        other => panic!("{other:?}"),
    }
    assert!(run(&s.breaker, &ran, false).is_ok());
}

#[test]
fn listeners_hear_every_state_change_in_order_and_every_rejection() {
    let clock = ManualClock::new();
    let events = Arc::new(Recorder::default());
    let changes = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&changes);
    let b = CircuitBreaker::builder("svc")
        .storage(MemoryStorage::with_clock(clock.clone()))
        .max_failures(1)
        .circuit_timeout(10 * SEC)
        .listener(Arc::clone(&events))
        .on_state_change(move |_, _, _| {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let ran = AtomicUsize::new(0);
    let _ = run(&b, &ran, true);
    let _ = run(&b, &ran, false);
    clock.advance(10 * SEC);
    let _ = run(&b, &ran, true); // trial fails
    clock.advance(10 * SEC);
    let _ = run(&b, &ran, false); // trial succeeds
    assert_eq!(
        events.events(),
        [
            "svc: closed -> open",
            "svc: rejected",
            "svc: open -> half-open",
            "svc: half-open -> open",
            "svc: open -> half-open",
            "svc: half-open -> closed",
        ]
    );
    assert_eq!(changes.load(Ordering::SeqCst), 5);
}

#[test]
fn metrics_give_state_counts_rejections_and_time_until_half_open() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder("svc")
        .storage(MemoryStorage::with_clock(clock.clone()))
        .max_failures(2)
        .circuit_timeout(10 * SEC)
        .build()
        .unwrap();
    let ran = AtomicUsize::new(0);
    let _ = run(&b, &ran, true);
    let m = b.metrics();
    assert_eq!(
        (m.state, m.counts.failures, m.rejected),
        (State::Closed, 1, 0)
    );
    assert_eq!(m.open_for, None);
    let _ = run(&b, &ran, true);
    clock.advance(4 * SEC);
    for _ in 0..3 {
        let _ = run(&b, &ran, false);
    }
    let m = b.metrics();
    assert_eq!(
        (m.state, m.counts.failures, m.rejected),
        (State::Open, 0, 3)
    );
    assert_eq!(m.open_for, Some(6 * SEC));
    assert!(!m.in_fallback);
}

#[test]
fn threads_rejecting_at_once_are_each_counted_and_told_the_name() {
    const THREADS: u64 = 4;
    const CALLS: u64 = 20_000;
    // Short names are copied into each rejection, long ones shared; the
    // count spreads over stripes once the threads meet on it.
    for name in ["svc", "a-circuit-name-longer-than-twenty-three-bytes"] {
        let b = CircuitBreaker::builder(name)
            .max_failures(1)
            .circuit_timeout(3600 * SEC)
            .build()
            .unwrap();
        let _ = b.call(|| Err::<(), ()>(()));
        let start = std::sync::Barrier::new(THREADS as usize);
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    start.wait();
                    for _ in 0..CALLS {
                        match b.call(|| Ok::<(), ()>(())) {
                            Err(Error::Open {
                                name: rejected_by,
                                retry_after: Some(_),
                                ..
                            }) => assert_eq!(rejected_by, name),
                            other => panic!("not a rejection: {other:?}"),
                        }
                    }
                });
            }
        });
        assert_eq!(b.metrics().rejected, THREADS * CALLS, "{name}");
    }
}

#[test]
fn metrics_answer_from_what_was_last_read_while_the_store_is_down() {
    let s = setup(StorageFailurePolicy::FailOpen);
    let ran = AtomicUsize::new(0);
    let _ = run(&s.breaker, &ran, true);
    let read = s.breaker.metrics();
    assert_eq!((read.state, read.counts.failures), (State::Closed, 1));
    assert_eq!(read.store_error, None);

    s.store.set_down(true);
    let before = s.events.events().len();
    let down = s.breaker.metrics();
    assert_eq!(
        (down.state, down.counts.failures),
        (State::Closed, 1),
        "the last read"
    );
    assert_eq!(down.store_error, Some(StorageErrorKind::Unavailable));
    // the error itself went to the listeners, once (counts were not asked)
    let heard = &s.events.events()[before..];
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert!(s.store.ping().is_err());

    s.store.set_down(false);
    assert!(s.store.ping().is_ok());
    let back = s.breaker.metrics();
    assert_eq!(back.store_error, None);
}

#[test]
fn metrics_of_a_breaker_that_never_read_its_store_say_so() {
    let s = setup(fallback());
    s.store.set_down(true);
    let m = s.breaker.metrics();
    assert_eq!(m.state, State::Closed);
    assert_eq!(m.counts, lasier_core::Counts::default());
    assert_eq!(m.store_error, Some(StorageErrorKind::Unavailable));
}

#[test]
fn a_registry_asks_a_store_found_down_once_per_listing() {
    let clock = ManualClock::new();
    let store = Arc::new(Faulty::new(MemoryStorage::with_clock(clock.clone())));
    let hosts = lasier_sync::Registry::new({
        let store = Arc::clone(&store);
        move |host| {
            CircuitBreaker::builder(format!("http:{host}"))
                .storage(Arc::clone(&store))
                .max_failures(2)
                .on_storage_failure(StorageFailurePolicy::FailOpen)
        }
    });
    for host in ["a", "b", "c"] {
        hosts.get(host).unwrap().call(|| Ok::<(), ()>(())).unwrap();
    }
    assert!(hosts.metrics().iter().all(|(_, m)| m.store_error.is_none()));
    store.set_down(true);
    let before = store.calls();
    let listed = hosts.metrics();
    assert_eq!(listed.len(), 3);
    assert!(listed
        .iter()
        .all(|(_, m)| m.store_error == Some(StorageErrorKind::Unavailable)));
    assert_eq!(
        store.calls() - before,
        1,
        "the store asked once, not per breaker"
    );
}
