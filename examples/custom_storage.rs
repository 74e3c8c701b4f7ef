//! A complete storage for the lasier circuit breaker: a `Mutex<HashMap>`
//! whose keys carry a deadline. It implements the six primitives only (the
//! fused steps the breaker needs come with the trait), passes
//! `lasier-testkit`, then guards calls.
//!
//! Run it with `cargo run --example custom_storage`.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use lasier_core::{Storage, StorageError};
use lasier_sync::{CircuitBreaker, Error, State};

/// Integer values with optional deadlines, in this process.
#[derive(Debug, Default)]
pub struct MapStorage {
    entries: Mutex<HashMap<String, (i64, Option<Instant>)>>,
}

impl MapStorage {
    /// The map, locked, without expired entries: every primitive sees a key
    /// past its deadline as missing. One lock per call makes `add` and
    /// `incr` atomic. (A large map would sweep less often than this.)
    fn live(&self) -> MutexGuard<'_, HashMap<String, (i64, Option<Instant>)>> {
        let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        map.retain(|_, (_, deadline)| deadline.is_none_or(|deadline| deadline > now));
        map
    }
}

fn deadline(ttl: Option<Duration>) -> Option<Instant> {
    ttl.and_then(|ttl| Instant::now().checked_add(ttl))
}

impl Storage for MapStorage {
    fn add(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<bool, StorageError> {
        let mut map = self.live();
        let absent = !map.contains_key(key);
        if absent {
            map.insert(key.to_owned(), (value, deadline(ttl)));
        }
        Ok(absent)
    }

    fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError> {
        self.live().insert(key.to_owned(), (value, deadline(ttl)));
        Ok(())
    }

    fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
        let mut map = self.live();
        // The deadline stays as it was, so a counting window ends on time.
        let (value, _) = map.entry(key.to_owned()).or_insert((0, None));
        *value = value
            .checked_add(delta)
            .ok_or_else(|| StorageError::corrupt(key, "counter overflow"))?;
        Ok(*value)
    }

    fn get(&self, key: &str) -> Result<Option<i64>, StorageError> {
        Ok(self.live().get(key).map(|(value, _)| *value))
    }

    fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError> {
        if let Some((_, old)) = self.live().get_mut(key) {
            *old = deadline(Some(ttl));
        }
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.live().remove(key);
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // In your crate this line is a #[test]: it panics with a report that
    // names every broken rule and how to fix it.
    lasier_testkit::check_storage(MapStorage::default);
    println!("MapStorage passes lasier-testkit");

    let breaker = CircuitBreaker::builder("inventory")
        .storage(MapStorage::default())
        .max_failures(2)
        .circuit_timeout(Duration::from_secs(30))
        .build()?;
    for attempt in 1..=3 {
        match breaker.call(|| -> Result<u32, &str> { Err("inventory service unreachable") }) {
            Err(Error::Inner(e)) => println!("call {attempt}: failed: {e}"),
            Err(e) if e.is_open() => println!("call {attempt}: rejected: {e}"),
            other => println!("call {attempt}: {other:?}"),
        }
    }
    assert_eq!(breaker.state()?, State::Open);
    Ok(())
}
