//! The default bodies of the fused steps, on a storage that keeps only the
//! six primitives, in cases the conformance kit does not reach: keys left
//! behind by races between processes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use lasier_core::clock::{Clock, ManualClock};
use lasier_core::{Config, Outcome, Permit, Storage, StorageError};

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

#[test]
fn a_failure_counter_left_without_a_ttl_ends_with_the_next_window() {
    // An opening in another process can delete the failure counter between
    // a caller's `add` (which gives it its TTL) and its `incr`, which then
    // makes it anew without one. Left so, it would never expire, and its
    // failures would count in every window to come.
    let clock = ManualClock::new();
    let s = MapStorage::new(clock.clone());
    let mut config = Config::new("payments");
    config
        .percentage_failures(50, 100)
        .failure_timeout(Duration::from_secs(60));
    let (c, rule) = config.validate().unwrap();
    s.set(c.keys().failures(), 3, None).unwrap();

    // The next window starts with a success: both counters end with it.
    s.record(&c, Permit::Normal, Outcome::Success, &*rule)
        .unwrap();
    clock.advance(Duration::from_secs(59));
    assert_eq!(s.get(c.keys().requests()).unwrap(), Some(1));
    clock.advance(Duration::from_secs(1));
    assert_eq!(s.get(c.keys().requests()).unwrap(), None);
    assert_eq!(s.get(c.keys().failures()).unwrap(), None);

    // And with a failure, the same.
    s.set(c.keys().failures(), 3, None).unwrap();
    s.record(&c, Permit::Normal, Outcome::Failure, &*rule)
        .unwrap();
    clock.advance(Duration::from_secs(60));
    assert_eq!(s.get(c.keys().failures()).unwrap(), None);
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
