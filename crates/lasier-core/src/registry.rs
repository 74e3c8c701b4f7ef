//! One value per key, created on first use, with bounded memory: the
//! engine of the facades' per-key breaker registries (one breaker per
//! downstream host, per tenant, ...).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::clock::{now_ms, Clock};

/// Values by key, created on first use. Holds at most `capacity` entries:
/// inserting into a full registry first drops the entries idle for longer
/// than `max_idle`, then, if it is still full, the least recently used one.
/// A dropped entry is made again on its next use.
pub struct Registry<V> {
    entries: Mutex<HashMap<String, Entry<V>>>,
    capacity: usize,
    max_idle_ms: u64,
    clock: Arc<dyn Clock>,
}

struct Entry<V> {
    value: V,
    last_used: u64,
}

impl<V: Clone> Registry<V> {
    /// An empty registry.
    pub fn new(capacity: usize, max_idle: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            max_idle_ms: u64::try_from(max_idle.as_millis()).unwrap_or(u64::MAX),
            clock,
        }
    }

    /// The value at `key`, made by `make` if absent. `make` runs under the
    /// registry's lock: two callers never make the same key twice.
    ///
    /// # Errors
    ///
    /// `make`'s error; nothing is inserted then.
    pub fn get_or_try_insert_with<E>(
        &self,
        key: &str,
        make: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        let now = now_ms(&*self.clock);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get_mut(key) {
            entry.last_used = now;
            return Ok(entry.value.clone());
        }
        let value = make()?;
        if entries.len() >= self.capacity {
            let max_idle = self.max_idle_ms;
            entries.retain(|_, e| now.saturating_sub(e.last_used) <= max_idle);
        }
        if entries.len() >= self.capacity {
            let oldest = entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            key.to_owned(),
            Entry {
                value: value.clone(),
                last_used: now,
            },
        );
        Ok(value)
    }

    /// Drops the entry at `key`, if any.
    pub fn remove(&self, key: &str) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<V> std::fmt::Debug for Registry<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("capacity", &self.capacity)
            .field("max_idle_ms", &self.max_idle_ms)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn makes_once_and_bounds_memory() {
        let clock = ManualClock::new();
        let r: Registry<u32> = Registry::new(2, Duration::from_secs(10), Arc::new(clock.clone()));
        let mut made = 0;
        let mut get = |key: &str| {
            r.get_or_try_insert_with(key, || {
                made += 1;
                Ok::<_, ()>(made)
            })
            .unwrap()
        };
        assert_eq!(get("a"), 1);
        assert_eq!(get("a"), 1);
        clock.advance(Duration::from_secs(1));
        assert_eq!(get("b"), 2);
        // full: the least recently used ("a") goes
        clock.advance(Duration::from_secs(1));
        assert_eq!(get("c"), 3);
        assert_eq!(get("b"), 2);
        assert_eq!(get("a"), 4);
        assert_eq!(r.len(), 2);
        // idle entries go first
        clock.advance(Duration::from_secs(11));
        assert_eq!(get("d"), 5);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn a_failed_make_inserts_nothing() {
        let r: Registry<u32> =
            Registry::new(2, Duration::from_secs(10), Arc::new(ManualClock::new()));
        assert_eq!(
            r.get_or_try_insert_with("a", || Err::<u32, _>("bad")),
            Err("bad")
        );
        assert!(r.is_empty());
    }
}
