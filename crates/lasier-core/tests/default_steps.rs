//! The default bodies of the fused steps, on a storage that keeps only the
//! six primitives, in cases the conformance kit does not reach: keys left
//! behind by races between processes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use lasier_core::Steps as _;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use lasier_core::clock::{Clock, ManualClock};
use lasier_core::{Admission, Circuit, Config, Outcome, Permit, State, Storage, StorageError};

/// The six primitives over a map, on a manual clock.
#[derive(Debug)]
struct MapStorage {
    clock: ManualClock,
    /// key -> (value, expiry on the clock)
    map: Mutex<HashMap<String, (i64, Option<Duration>)>>,
}

impl MapStorage {
    fn new(clock: ManualClock) -> Self {
        Self {
            clock,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, (i64, Option<Duration>)>) -> T) -> T {
        let now = self.clock.now();
        let mut map = self.map.lock().unwrap();
        map.retain(|_, (_, until)| until.is_none_or(|t| now < t));
        f(&mut map)
    }

    fn deadline(&self, ttl: Option<Duration>) -> Option<Duration> {
        ttl.map(|ttl| self.clock.now() + ttl)
    }
}

impl Storage for MapStorage {
    fn add(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<bool, StorageError> {
        let until = self.deadline(ttl);
        Ok(self.with(|m| {
            if m.contains_key(key) {
                false
            } else {
                m.insert(key.to_owned(), (value, until));
                true
            }
        }))
    }

    fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError> {
        let until = self.deadline(ttl);
        self.with(|m| m.insert(key.to_owned(), (value, until)));
        Ok(())
    }

    fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
        Ok(self.with(|m| {
            let entry = m.entry(key.to_owned()).or_insert((0, None));
            entry.0 += delta;
            entry.0
        }))
    }

    fn get(&self, key: &str) -> Result<Option<i64>, StorageError> {
        Ok(self.with(|m| m.get(key).map(|(v, _)| *v)))
    }

    fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError> {
        let until = self.deadline(Some(ttl));
        self.with(|m| {
            if let Some(entry) = m.get_mut(key) {
                entry.1 = until;
            }
        });
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.with(|m| m.remove(key));
        Ok(())
    }
}

/// A storage on which another process acts at the worst moment: just
/// before a given write (`add`, `set` or `incr`) of `key`, it opens
/// `circuit` (as a trip, or a failed trial, elsewhere would).
struct OpenedMeanwhile {
    inner: MapStorage,
    circuit: Circuit,
    key: String,
    /// Writes of `key` to let pass first.
    skip: AtomicUsize,
    fired: AtomicBool,
}

impl OpenedMeanwhile {
    /// Opens `circuit` just before the write of `key` that follows `skip`
    /// others.
    fn before_write_of(key: &str, skip: usize, circuit: &Circuit, clock: &ManualClock) -> Self {
        Self {
            inner: MapStorage::new(clock.clone()),
            circuit: circuit.clone(),
            key: key.to_owned(),
            skip: AtomicUsize::new(skip),
            fired: AtomicBool::new(false),
        }
    }

    fn before_write(&self, key: &str) -> Result<(), StorageError> {
        if key != self.key || self.fired.load(Ordering::Acquire) {
            return Ok(());
        }
        if self
            .skip
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_err()
            && !self.fired.swap(true, Ordering::AcqRel)
        {
            self.inner.open_circuit(&self.circuit)?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for OpenedMeanwhile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedMeanwhile")
            .field("key", &self.key)
            .finish()
    }
}

impl Storage for OpenedMeanwhile {
    fn add(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<bool, StorageError> {
        self.before_write(key)?;
        self.inner.add(key, value, ttl)
    }
    fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError> {
        self.before_write(key)?;
        self.inner.set(key, value, ttl)
    }
    fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
        self.before_write(key)?;
        self.inner.incr(key, delta)
    }
    fn get(&self, key: &str) -> Result<Option<i64>, StorageError> {
        self.inner.get(key)
    }
    fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError> {
        self.inner.expire(key, ttl)
    }
    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.delete(key)
    }
}

#[test]
fn a_failure_that_races_an_opening_leaves_no_counter_without_a_ttl() {
    // An opening elsewhere deletes the failure counter between a caller's
    // `add` (which gives it its TTL) and its `incr`, which makes it anew
    // without one. Left so, it would never expire, and its failure would
    // count in every window to come.
    for (rule, half_open) in [("percentage", 1), ("percentage", 0), ("max", 1)] {
        let clock = ManualClock::new();
        let mut config = Config::new("payments");
        match rule {
            "max" => config.max_failures(5),
            _ => config.percentage_failures(50, 100),
        };
        config
            .failure_timeout(Duration::from_secs(60))
            .circuit_timeout(Duration::from_secs(10))
            .half_open_max_calls(half_open);
        let (c, rule_impl) = config.validate().unwrap();
        // (the first write of the counter is its `add`; the second, its
        // `incr`)
        let s = OpenedMeanwhile::before_write_of(c.keys().failures(), 1, &c, &clock);
        s.record(&c, Permit::Normal, Outcome::Failure, &*rule_impl)
            .unwrap();
        assert!(s.fired.load(Ordering::Acquire), "{rule}");
        // Long after every TTL the breaker sets, nothing is left.
        clock.advance(Duration::from_secs(3600));
        assert_eq!(
            s.get(c.keys().failures()).unwrap(),
            None,
            "{rule}, {half_open}"
        );
    }
}

#[test]
fn a_failure_counted_by_another_caller_of_a_new_window_is_kept() {
    // Two callers start a window at once: the second's failure lands
    // between the first's `incr` of the request counter and its `add` of the
    // failure counter. Nothing is lost, and both counters end together.
    let clock = ManualClock::new();
    let s = MapStorage::new(clock.clone());
    let mut config = Config::new("orders");
    config
        .percentage_failures(50, 100)
        .failure_timeout(Duration::from_secs(60));
    let (c, rule) = config.validate().unwrap();
    s.add(c.keys().failures(), 0, Some(Duration::from_secs(60)))
        .unwrap();
    s.incr(c.keys().failures(), 1).unwrap();
    s.record(&c, Permit::Normal, Outcome::Success, &*rule)
        .unwrap();
    assert_eq!(s.get(c.keys().failures()).unwrap(), Some(1));
    clock.advance(Duration::from_secs(60));
    assert_eq!(s.get(c.keys().failures()).unwrap(), None);
    assert_eq!(s.get(c.keys().requests()).unwrap(), None);
}

#[test]
fn an_admission_that_races_a_reopening_takes_no_permit_of_the_next_period() {
    // Another process's trial fails and reopens the circuit while this
    // admission runs: as it starts the first lease of the period (the
    // reopening lands just before its `add` of the lease), or as it takes
    // the second slot of a lease (just before its `incr`).
    for second_slot in [false, true] {
        let clock = ManualClock::new();
        let mut config = Config::new("inventory");
        config
            .max_failures(1)
            .circuit_timeout(Duration::from_secs(10))
            .half_open_max_calls(2);
        let (c, _) = config.validate().unwrap();
        let s = OpenedMeanwhile::before_write_of(c.keys().trial_lease(), 0, &c, &clock);
        // Half-open: opened, and its open time is over.
        s.inner.open_circuit(&c).unwrap();
        clock.advance(Duration::from_secs(10));
        assert_eq!(s.state(&c).unwrap(), State::HalfOpen);
        if second_slot {
            assert!(matches!(
                s.inner.admit(&c).unwrap().0,
                Admission::Admitted(Permit::Trial { .. })
            ));
        }

        let (admission, transition) = s.admit(&c).unwrap();
        assert!(s.fired.load(Ordering::Acquire));
        assert_eq!(admission, Admission::Rejected { retry_after: None });
        assert_eq!(transition, None);
        assert_eq!(s.state(&c).unwrap(), State::Open);
        // The new period is whole: its open time, then two trials.
        clock.advance(Duration::from_secs(10));
        assert_eq!(s.state(&c).unwrap(), State::HalfOpen);
        for _ in 0..2 {
            assert!(matches!(
                s.admit(&c).unwrap().0,
                Admission::Admitted(Permit::Trial { .. })
            ));
        }
        assert_eq!(
            s.admit(&c).unwrap().0,
            Admission::Rejected { retry_after: None },
            "second slot: {second_slot}"
        );
    }
}

#[test]
fn a_trial_that_outlives_its_lease_frees_its_slot_and_decides_nothing() {
    let clock = ManualClock::new();
    let s = MapStorage::new(clock.clone());
    let mut config = Config::new("search");
    config
        .max_failures(1)
        .circuit_timeout(Duration::from_secs(10))
        .half_open_max_calls(1);
    let (c, rule) = config.validate().unwrap();
    s.open_circuit(&c).unwrap();
    clock.advance(Duration::from_secs(10));
    let trial = |s: &MapStorage| match s.admit(&c).unwrap().0 {
        Admission::Admitted(permit @ Permit::Trial { .. }) => Some(permit),
        Admission::Rejected { .. } => None,
        other => panic!("not a trial while half-open: {other:?}"),
    };
    let slow = trial(&s).unwrap();
    clock.advance(Duration::from_millis(9_999));
    assert_eq!(trial(&s), None);
    clock.advance(Duration::from_millis(1));
    // the lease is over: a new trial, and the slow one's verdict is void
    let next = trial(&s).unwrap();
    assert_ne!(next, slow);
    assert_eq!(trial(&s), None);
    assert_eq!(s.record(&c, slow, Outcome::Failure, &*rule).unwrap(), None);
    s.release(&c, slow).unwrap();
    assert_eq!(trial(&s), None);
    assert_eq!(s.state(&c).unwrap(), State::HalfOpen);
    // idle for far longer than the open time: still half-open
    clock.advance(Duration::from_secs(3 * 3600));
    assert_eq!(s.state(&c).unwrap(), State::HalfOpen);
    let last = trial(&s).unwrap();
    assert!(s
        .record(&c, last, Outcome::Success, &*rule)
        .unwrap()
        .is_some());
    assert_eq!(s.state(&c).unwrap(), State::Closed);
    for key in c.keys().all() {
        assert_eq!(s.get(key).unwrap(), None, "{key}");
    }
}

#[test]
fn a_half_open_marker_without_a_ttl_heals() {
    // A marker some process wrote without a TTL (or by hand), with leases
    // started and no lease running: a call starts a lease, and the marker
    // gets its TTL back.
    let clock = ManualClock::new();
    let s = MapStorage::new(clock.clone());
    let mut config = Config::new("ledger");
    config.max_failures(1).half_open_max_calls(2);
    let (c, rule) = config.validate().unwrap();
    s.set(c.keys().trials(), (77 << 16) + 2, None).unwrap();
    assert_eq!(s.state(&c).unwrap(), State::HalfOpen);
    let mut permits = Vec::new();
    for _ in 0..2 {
        match s.admit(&c).unwrap().0 {
            Admission::Admitted(permit @ Permit::Trial { .. }) => permits.push(permit),
            other => panic!("{other:?}"),
        }
    }
    for permit in permits {
        s.record(&c, permit, Outcome::Success, &*rule).unwrap();
    }
    assert_eq!(s.state(&c).unwrap(), State::Closed);
    // and, had nobody called, it would not have lasted for ever
    s.set(c.keys().trials(), (78 << 16) + 2, None).unwrap();
    let _ = s.admit(&c).unwrap();
    clock.advance(Duration::from_secs(2 * 24 * 3600));
    assert_eq!(s.state(&c).unwrap(), State::Closed);
}
