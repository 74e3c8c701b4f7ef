//! Sync mode where the store is slow, fails halfway or races: what a
//! review proved wrong once, each case with a storage that makes it
//! happen on demand (a manual clock; the primitives over `MemoryStorage`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use lasier_core::clock::ManualClock;
use lasier_sync::{
    CircuitBreaker, Error, MemoryStorage, Storage, StorageError, StorageErrorKind,
    StorageFailurePolicy,
};
use support::Faulty;

const SEC: Duration = Duration::from_secs(1);

fn shared_counts(store: &Arc<Faulty>) -> lasier_sync::Counts {
    CircuitBreaker::builder("svc")
        .storage(Arc::clone(store))
        .max_failures(3)
        .build()
        .unwrap()
        .counts()
        .unwrap()
}

fn fail(b: &CircuitBreaker) -> Result<(), Error<&'static str>> {
    b.call(|| Err::<(), &str>("boom"))
}

/// Under LocalFallback, the failures a failed sync could not push are
/// counted in the fallback circuit: no more failing calls run than in
/// per-call mode.
#[test]
fn a_failed_sync_hands_its_failures_to_the_fallback_circuit() {
    let clock = ManualClock::new();
    let store = Arc::new(Faulty::new(MemoryStorage::with_clock(clock.clone())));
    let b = CircuitBreaker::builder("svc")
        .storage(Arc::clone(&store))
        .clock(clock.clone())
        .max_failures(3)
        .circuit_timeout(10 * SEC)
        .sync_interval(Duration::from_millis(100))
        .on_storage_failure(StorageFailurePolicy::LocalFallback {
            probe_interval: SEC,
        })
        .build()
        .unwrap();
    b.call(|| Ok::<(), &str>(())).unwrap();
    store.set_down(true);
    let mut ran = 0;
    for _ in 0..10 {
        if matches!(fail(&b), Err(Error::Inner(_))) {
            ran += 1;
        }
    }
    assert!(b.in_fallback());
    assert_eq!(ran, 3, "failing calls that ran with max_failures(3)");
}

/// Outcomes that waited behind a full outbox date from when the counters
/// were last taken: once their window has ended they are dropped, not
/// pushed into a window they were not part of.
#[test]
fn outcomes_waiting_behind_a_full_outbox_are_dropped_with_their_window() {
    let clock = ManualClock::new();
    let store = Arc::new(Faulty::new(MemoryStorage::with_clock(clock.clone())));
    let b = CircuitBreaker::builder("svc")
        .storage(Arc::clone(&store))
        .clock(clock.clone())
        .max_failures(100)
        .failure_timeout(60 * SEC)
        .sync_interval(Duration::from_millis(100))
        .on_storage_failure(StorageFailurePolicy::FailOpen)
        .build()
        .unwrap();
    b.call(|| Ok::<(), &str>(())).unwrap();
    store.set_down(true);
    // four failed syncs fill the outbox (one failure each)
    for _ in 0..4 {
        fail(&b).unwrap_err();
        assert!(b.flush().is_err());
    }
    // one more failure at about 0 s waits in the counters
    fail(&b).unwrap_err();
    assert!(b.flush().is_err());
    for _ in 0..6 {
        clock.advance(10 * SEC);
        let _ = b.flush();
    }
    // 62 s: every outcome's 60 s window has ended
    clock.advance(2 * SEC);
    store.set_down(false);
    b.flush().unwrap();
    let dropped = b.metrics().dropped;
    assert_eq!((shared_counts(&store).failures, dropped), (0, 5));
}

/// Primitives over MemoryStorage; a sync's first read (the writer key)
/// waits while `gate` is set.
#[derive(Debug)]
struct Gated {
    inner: MemoryStorage,
    gate: AtomicBool,
    waiting: AtomicBool,
    calls: AtomicU64,
}

impl Storage for Gated {
    fn add(&self, k: &str, v: i64, t: Option<Duration>) -> Result<bool, StorageError> {
        self.calls.fetch_add(1, SeqCst);
        self.inner.add(k, v, t)
    }
    fn set(&self, k: &str, v: i64, t: Option<Duration>) -> Result<(), StorageError> {
        self.calls.fetch_add(1, SeqCst);
        self.inner.set(k, v, t)
    }
    fn incr(&self, k: &str, d: i64) -> Result<i64, StorageError> {
        self.calls.fetch_add(1, SeqCst);
        self.inner.incr(k, d)
    }
    fn get(&self, k: &str) -> Result<Option<i64>, StorageError> {
        self.calls.fetch_add(1, SeqCst);
        if k.starts_with("lasier:sync:") {
            while self.gate.load(SeqCst) {
                self.waiting.store(true, SeqCst);
                std::thread::yield_now();
            }
        }
        self.inner.get(k)
    }
    fn expire(&self, k: &str, t: Duration) -> Result<(), StorageError> {
        self.calls.fetch_add(1, SeqCst);
        self.inner.expire(k, t)
    }
    fn delete(&self, k: &str) -> Result<(), StorageError> {
        self.calls.fetch_add(1, SeqCst);
        self.inner.delete(k)
    }
}

#[test]
fn failures_that_reach_the_rule_during_a_sync_in_flight_still_trip() {
    let clock = ManualClock::new();
    let store = Arc::new(Gated {
        inner: MemoryStorage::with_clock(clock.clone()),
        gate: AtomicBool::new(false),
        waiting: AtomicBool::new(false),
        calls: AtomicU64::new(0),
    });
    let b = CircuitBreaker::builder("svc")
        .storage(Arc::clone(&store))
        .clock(clock.clone())
        .max_failures(3)
        .sync_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    b.call(|| Ok::<(), &str>(())).unwrap();
    // a sync is in flight (a flush here; the background's alike)
    store.gate.store(true, SeqCst);
    let flusher = {
        let b = b.clone();
        std::thread::spawn(move || b.flush())
    };
    while !store.waiting.load(SeqCst) {
        std::thread::yield_now();
    }
    // meanwhile this process's failures reach the rule
    for _ in 0..3 {
        let _ = b.call(|| Err::<(), &str>("boom"));
    }
    store.gate.store(false, SeqCst);
    flusher.join().unwrap().unwrap();
    // the trip should have been pushed (calls ask the store until it answers)
    let calls = store.calls.load(SeqCst);
    let next = b.call(|| Ok::<(), &str>(()));
    let asked = store.calls.load(SeqCst) - calls;
    println!(
        "store calls for next call={asked} next={next:?} state={:?} counts(incl. pending)={:?}",
        b.state().unwrap(),
        b.counts().unwrap()
    );
    assert!(
        next.is_err(),
        "3 failures with max_failures(3): admitted from the mirror"
    );
    assert!(next.unwrap_err().is_open() || asked > 0);
}

/// Primitives over MemoryStorage; the next write of a writer key fails
/// once (a timeout / dropped connection), as any store can.
#[derive(Debug)]
struct Blip {
    inner: MemoryStorage,
    fail_writer_set: AtomicBool,
}

impl Storage for Blip {
    fn add(&self, k: &str, v: i64, t: Option<Duration>) -> Result<bool, StorageError> {
        self.inner.add(k, v, t)
    }
    fn set(&self, k: &str, v: i64, t: Option<Duration>) -> Result<(), StorageError> {
        if k.starts_with("lasier:sync:") && self.fail_writer_set.swap(false, SeqCst) {
            return Err(StorageError::new(
                StorageErrorKind::Unavailable,
                "timed out",
            ));
        }
        self.inner.set(k, v, t)
    }
    fn incr(&self, k: &str, d: i64) -> Result<i64, StorageError> {
        self.inner.incr(k, d)
    }
    fn get(&self, k: &str) -> Result<Option<i64>, StorageError> {
        self.inner.get(k)
    }
    fn expire(&self, k: &str, t: Duration) -> Result<(), StorageError> {
        self.inner.expire(k, t)
    }
    fn delete(&self, k: &str) -> Result<(), StorageError> {
        self.inner.delete(k)
    }
}

#[test]
fn a_batch_whose_writer_key_write_failed_is_counted_once() {
    let clock = ManualClock::new();
    let store = Arc::new(Blip {
        inner: MemoryStorage::with_clock(clock.clone()),
        fail_writer_set: AtomicBool::new(false),
    });
    let b = CircuitBreaker::builder("svc")
        .storage(Arc::clone(&store))
        .clock(clock.clone())
        .max_failures(100)
        .sync_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    b.call(|| Ok::<(), &str>(())).unwrap();
    for _ in 0..2 {
        let _ = b.call(|| Err::<(), &str>("boom"));
    }
    store.fail_writer_set.store(true, SeqCst);
    // the counts are in: the step succeeds, its parts are not sent again
    b.flush().unwrap();
    b.flush().unwrap();
    let counts = b.counts().unwrap();
    println!("counts after 2 failures: {counts:?}");
    assert_eq!(counts.failures, 2);
}
