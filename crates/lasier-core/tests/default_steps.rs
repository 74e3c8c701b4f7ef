//! The default bodies of the fused steps, on a storage that keeps only the
//! six primitives, in cases the conformance kit does not reach: keys left
//! behind by races between processes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
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
/// before the first `incr` of `key`, it opens `circuit` (as a trip, or a
/// failed trial, elsewhere would).
struct OpenedMeanwhile {
    inner: MapStorage,
    circuit: Circuit,
    key: String,
    fired: AtomicBool,
}

impl OpenedMeanwhile {
    fn before_incr_of(key: &str, circuit: &Circuit, clock: &ManualClock) -> Self {
        Self {
            inner: MapStorage::new(clock.clone()),
            circuit: circuit.clone(),
            key: key.to_owned(),
            fired: AtomicBool::new(false),
        }
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
        self.inner.add(key, value, ttl)
    }
    fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError> {
        self.inner.set(key, value, ttl)
    }
    fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
        if key == self.key && !self.fired.swap(true, Ordering::AcqRel) {
            self.inner.open_circuit(&self.circuit)?;
        }
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
        let s = OpenedMeanwhile::before_incr_of(c.keys().failures(), &c, &clock);
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
    let clock = ManualClock::new();
    let mut config = Config::new("inventory");
    config
        .max_failures(1)
        .circuit_timeout(Duration::from_secs(10))
        .half_open_max_calls(2);
    let (c, _) = config.validate().unwrap();
    // another process's trial fails and reopens the circuit
    let s = OpenedMeanwhile::before_incr_of(c.keys().trials(), &c, &clock);
    // Half-open: opened, and its open time is over.
    s.inner.open_circuit(&c).unwrap();
    clock.advance(Duration::from_secs(10));
    assert_eq!(s.state(&c).unwrap(), State::HalfOpen);

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
        Admission::Rejected { retry_after: None }
    );
}
