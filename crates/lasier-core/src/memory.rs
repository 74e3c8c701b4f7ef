//! [`MemoryStorage`]: the in-process default.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use lasier_rules::{Counts, Rule};

use crate::clock::{ceil_millis, now_ms, Clock, MonotonicClock};
use crate::config::Circuit;
use crate::error::StorageError;
use crate::local::{LocalBinding, LocalCircuit};
use crate::state::{Admission, Manual, Outcome, Permit, Snapshot, State, SyncBatch, Transition};
use crate::storage::{FusedSteps, Storage};

/// Keys that live in memory, and circuits that live in this process.
///
/// The in-process storage of both facades (a breaker built without a
/// storage gets a circuit of its own, as from a `MemoryStorage` of its own).
/// Clones share one state, so breakers built on clones of one
/// `MemoryStorage` with the same name share one circuit; it is
/// `Send + Sync` and made for sharing between threads.
///
/// Breakers use each circuit's lock-free [`LocalCircuit`] directly: a call
/// that succeeds on a closed circuit takes no lock, allocates nothing and
/// hashes no string. The key-value primitives (for the storage contract, and
/// for anyone who wants a small TTL store) live in a separate map behind a
/// mutex.
///
/// ```
/// use std::time::Duration;
/// use lasier_core::clock::ManualClock;
/// use lasier_core::{MemoryStorage, Storage};
///
/// let clock = ManualClock::new();
/// let storage = MemoryStorage::with_clock(clock.clone());
/// storage.set("k", 1, Some(Duration::from_secs(1)))?;
/// assert_eq!(storage.get("k")?, Some(1));
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(storage.get("k")?, None);
/// # Ok::<(), lasier_core::StorageError>(())
/// ```
#[derive(Clone)]
pub struct MemoryStorage {
    maps: Arc<Maps>,
}

struct Maps {
    clock: Arc<dyn Clock>,
    entries: Mutex<HashMap<String, Entry>>,
    circuits: Mutex<HashMap<String, Arc<LocalCircuit>>>,
    writes: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    value: i64,
    /// Milliseconds on the storage's clock; `None`: no expiry.
    expires_at: Option<u64>,
}

/// Unused circuits are swept when their number reaches a power of two from
/// this one on.
const CIRCUITS_BEFORE_SWEEP: usize = 1024;

/// Expired entries are swept once every this many writes.
const SWEEP_EVERY: u64 = 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; a poisoned one is still sound.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryStorage {
    /// An empty storage on the operating system's monotonic clock.
    pub fn new() -> Self {
        Self::with_clock(MonotonicClock::new())
    }

    /// An empty storage on `clock` (a `ManualClock` in tests).
    pub fn with_clock(clock: impl Clock + 'static) -> Self {
        Self {
            maps: Arc::new(Maps {
                clock: Arc::new(clock),
                entries: Mutex::new(HashMap::new()),
                circuits: Mutex::new(HashMap::new()),
                writes: AtomicU64::new(0),
            }),
        }
    }

    /// How many circuits it holds: those breakers use, and those with state
    /// to keep (open, or counting) that no breaker uses any more.
    pub fn circuit_count(&self) -> usize {
        lock(&self.maps.circuits).len()
    }

    /// The clock this storage keeps time by.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.maps.clock
    }

    /// The in-process state of `circuit`, created on first use.
    fn circuit(&self, circuit: &Circuit) -> Arc<LocalCircuit> {
        let mut circuits = lock(&self.maps.circuits);
        if let Some(c) = circuits.get(circuit.keys().failures()) {
            return Arc::clone(c);
        }
        if circuits.len() >= CIRCUITS_BEFORE_SWEEP && circuits.len().is_power_of_two() {
            // Many names come and go (a breaker per host, per tenant):
            // forget the circuits no breaker holds that are as good as new,
            // so that memory follows the breakers alive, not every name ever
            // seen. Nothing is lost: a new one would start the same way.
            let clock = &*self.maps.clock;
            circuits.retain(|_, c| Arc::strong_count(c) > 1 || !c.is_pristine(clock));
        }
        let c = Arc::new(LocalCircuit::for_circuit(circuit));
        circuits.insert(circuit.keys().failures().to_owned(), Arc::clone(&c));
        c
    }

    /// A breaker on a circuit this storage holds already must count in the
    /// same window: the circuit's counters are made for one.
    fn check_window(&self, circuit: &Circuit) -> Result<(), crate::ConfigError> {
        let circuits = lock(&self.maps.circuits);
        match circuits.get(circuit.keys().failures()) {
            Some(held) if !held.counts_as(circuit) => Err(crate::ConfigError::Invalid(format!(
                "breaker {:?}: this MemoryStorage holds a circuit of that name already, counted \
                 in another window (or another failure_timeout); breakers that share a circuit \
                 must count alike: give them the same window settings, or another name",
                circuit.name()
            ))),
            _ => Ok(()),
        }
    }

    fn now(&self) -> u64 {
        now_ms(&*self.maps.clock)
    }

    fn deadline(&self, ttl: Option<Duration>) -> Option<u64> {
        ttl.map(|ttl| self.now().saturating_add(ceil_millis(ttl)))
    }

    /// The live entries, after dropping the expired one at `key`, if any.
    fn entries(&self, key: &str) -> MutexGuard<'_, HashMap<String, Entry>> {
        let now = self.now();
        let mut entries = lock(&self.maps.entries);
        if entries
            .get(key)
            .and_then(|e| e.expires_at)
            .is_some_and(|at| at <= now)
        {
            entries.remove(key);
        }
        if self.maps.writes.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            entries.retain(|_, e| e.expires_at.is_none_or(|at| at > now));
        }
        entries
    }
}

impl Default for MemoryStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStorage")
            .field("clock", &self.maps.clock)
            .field("keys", &lock(&self.maps.entries).len())
            .field("circuits", &lock(&self.maps.circuits).len())
            .finish()
    }
}

impl Storage for MemoryStorage {
    fn add(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<bool, StorageError> {
        let expires_at = self.deadline(ttl);
        let mut entries = self.entries(key);
        if entries.contains_key(key) {
            return Ok(false);
        }
        entries.insert(key.to_owned(), Entry { value, expires_at });
        Ok(true)
    }

    fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError> {
        let expires_at = self.deadline(ttl);
        self.entries(key)
            .insert(key.to_owned(), Entry { value, expires_at });
        Ok(())
    }

    fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
        let mut entries = self.entries(key);
        match entries.get_mut(key) {
            Some(entry) => {
                entry.value = entry.value.checked_add(delta).ok_or_else(|| {
                    StorageError::corrupt(key, "increment would overflow a 64-bit counter")
                })?;
                Ok(entry.value)
            }
            None => {
                entries.insert(
                    key.to_owned(),
                    Entry {
                        value: delta,
                        expires_at: None,
                    },
                );
                Ok(delta)
            }
        }
    }

    fn get(&self, key: &str) -> Result<Option<i64>, StorageError> {
        Ok(self.entries(key).get(key).map(|e| e.value))
    }

    fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError> {
        let expires_at = self.deadline(Some(ttl));
        if let Some(entry) = self.entries(key).get_mut(key) {
            entry.expires_at = expires_at;
        }
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.entries(key).remove(key);
        Ok(())
    }

    fn fused_steps(&self) -> Option<&dyn FusedSteps> {
        Some(self)
    }
}

/// The steps run on each circuit's lock-free state; the key-value entries
/// above are not the circuit's.
impl FusedSteps for MemoryStorage {
    fn admit(&self, circuit: &Circuit) -> Result<(Admission, Option<Transition>), StorageError> {
        Ok(self
            .circuit(circuit)
            .admit(&*self.maps.clock, circuit.timing()))
    }

    fn record(
        &self,
        circuit: &Circuit,
        permit: Permit,
        outcome: Outcome,
        rule: &dyn Rule,
    ) -> Result<Option<Transition>, StorageError> {
        Ok(self
            .circuit(circuit)
            .record(permit, outcome, rule, &*self.maps.clock, circuit.timing()))
    }

    fn release(&self, circuit: &Circuit, permit: Permit) -> Result<(), StorageError> {
        self.circuit(circuit).release(permit);
        Ok(())
    }

    fn open_circuit(&self, circuit: &Circuit) -> Result<(), StorageError> {
        self.circuit(circuit)
            .open(&*self.maps.clock, circuit.timing());
        Ok(())
    }

    fn state(&self, circuit: &Circuit) -> Result<State, StorageError> {
        Ok(self
            .circuit(circuit)
            .state(&*self.maps.clock, circuit.timing()))
    }

    fn counts(&self, circuit: &Circuit) -> Result<Counts, StorageError> {
        Ok(self.circuit(circuit).counts(&*self.maps.clock))
    }

    fn set_manual(
        &self,
        circuit: &Circuit,
        manual: Manual,
    ) -> Result<Option<Transition>, StorageError> {
        Ok(self
            .circuit(circuit)
            .set_manual(manual, &*self.maps.clock, circuit.timing()))
    }

    fn repair(&self, _circuit: &Circuit) -> Result<(), StorageError> {
        // The breaker's state here is atomics, never text: nothing to repair.
        Ok(())
    }

    fn reset(&self, circuit: &Circuit) -> Result<(), StorageError> {
        self.circuit(circuit).reset();
        Ok(())
    }

    /// A breaker on this storage keeps its circuit in this process and
    /// never syncs; this counts a batch into the circuit as that many
    /// calls' outcomes, one by one, for a test of the steps. Parts are
    /// counted as given: nothing is kept at the writer key.
    fn sync(
        &self,
        circuit: &Circuit,
        batch: &SyncBatch<'_>,
        rule: &dyn Rule,
    ) -> Option<Result<Snapshot, StorageError>> {
        let local = self.circuit(circuit);
        let clock = &*self.maps.clock;
        let counts = batch.counts_after(0);
        let successes = if circuit.counts_requests() {
            counts.requests.saturating_sub(counts.failures)
        } else {
            0
        };
        let mut transition = None;
        for outcome in core::iter::repeat_n(
            Outcome::Success,
            usize::try_from(successes).unwrap_or(usize::MAX),
        )
        .chain(core::iter::repeat_n(
            Outcome::Failure,
            usize::try_from(counts.failures).unwrap_or(usize::MAX),
        )) {
            let changed = local.record(Permit::Normal, outcome, rule, clock, circuit.timing());
            transition = transition.or(changed);
        }
        let state = local.state(clock, circuit.timing());
        let counts = if state == State::Closed || state == State::Disabled {
            local.counts(clock)
        } else {
            Counts::default()
        };
        Some(Ok(Snapshot::new(state, counts)
            .with_open_for(local.open_for(clock))
            .with_transition(transition)))
    }

    fn validate(&self, circuit: &Circuit) -> Result<(), crate::ConfigError> {
        self.check_window(circuit)
    }

    fn local_circuit(&self, circuit: &Circuit) -> Option<LocalBinding> {
        Some(LocalBinding {
            circuit: self.circuit(circuit),
            clock: Arc::clone(&self.maps.clock),
        })
    }
}

#[cfg(feature = "async")]
#[async_trait::async_trait]
impl crate::AsyncStorage for MemoryStorage {
    async fn add(
        &self,
        key: &str,
        value: i64,
        ttl: Option<Duration>,
    ) -> Result<bool, StorageError> {
        Storage::add(self, key, value, ttl)
    }
    async fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError> {
        Storage::set(self, key, value, ttl)
    }
    async fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
        Storage::incr(self, key, delta)
    }
    async fn get(&self, key: &str) -> Result<Option<i64>, StorageError> {
        Storage::get(self, key)
    }
    async fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError> {
        Storage::expire(self, key, ttl)
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        Storage::delete(self, key)
    }
    fn fused_steps(&self) -> Option<&dyn crate::AsyncFusedSteps> {
        Some(self)
    }
}

/// The same steps as the blocking ones: none of them waits.
#[cfg(feature = "async")]
#[async_trait::async_trait]
impl crate::AsyncFusedSteps for MemoryStorage {
    async fn admit(
        &self,
        circuit: &Circuit,
    ) -> Result<(Admission, Option<Transition>), StorageError> {
        FusedSteps::admit(self, circuit)
    }
    async fn record(
        &self,
        circuit: &Circuit,
        permit: Permit,
        outcome: Outcome,
        rule: &dyn Rule,
    ) -> Result<Option<Transition>, StorageError> {
        FusedSteps::record(self, circuit, permit, outcome, rule)
    }
    async fn release(&self, circuit: &Circuit, permit: Permit) -> Result<(), StorageError> {
        FusedSteps::release(self, circuit, permit)
    }
    async fn open_circuit(&self, circuit: &Circuit) -> Result<(), StorageError> {
        FusedSteps::open_circuit(self, circuit)
    }
    async fn sync(
        &self,
        circuit: &Circuit,
        batch: &SyncBatch<'_>,
        rule: &dyn Rule,
    ) -> Option<Result<Snapshot, StorageError>> {
        FusedSteps::sync(self, circuit, batch, rule)
    }
    async fn state(&self, circuit: &Circuit) -> Result<State, StorageError> {
        FusedSteps::state(self, circuit)
    }
    async fn counts(&self, circuit: &Circuit) -> Result<Counts, StorageError> {
        FusedSteps::counts(self, circuit)
    }
    async fn repair(&self, circuit: &Circuit) -> Result<(), StorageError> {
        FusedSteps::repair(self, circuit)
    }
    async fn set_manual(
        &self,
        circuit: &Circuit,
        manual: Manual,
    ) -> Result<Option<Transition>, StorageError> {
        FusedSteps::set_manual(self, circuit, manual)
    }
    async fn reset(&self, circuit: &Circuit) -> Result<(), StorageError> {
        FusedSteps::reset(self, circuit)
    }
    fn validate(&self, circuit: &Circuit) -> Result<(), crate::ConfigError> {
        self.check_window(circuit)
    }

    fn local_circuit(&self, circuit: &Circuit) -> Option<LocalBinding> {
        FusedSteps::local_circuit(self, circuit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn primitives_follow_the_contract() {
        let clock = ManualClock::new();
        let s = MemoryStorage::with_clock(clock.clone());
        assert_eq!(s.get("a").unwrap(), None);
        assert!(s.add("a", 5, Some(Duration::from_secs(2))).unwrap());
        assert!(!s.add("a", 7, None).unwrap());
        assert_eq!(s.incr("a", 2).unwrap(), 7);
        clock.advance(Duration::from_millis(1999));
        assert_eq!(s.get("a").unwrap(), Some(7));
        clock.advance(Duration::from_millis(1));
        assert_eq!(s.get("a").unwrap(), None);
        assert_eq!(s.incr("b", 1).unwrap(), 1);
        s.expire("b", Duration::from_secs(1)).unwrap();
        s.expire("missing", Duration::from_secs(1)).unwrap();
        assert_eq!(s.get("missing").unwrap(), None);
        clock.advance(Duration::from_secs(1));
        assert_eq!(s.get("b").unwrap(), None);
        s.set("c", 1, None).unwrap();
        s.delete("c").unwrap();
        assert_eq!(s.get("c").unwrap(), None);
        s.set("d", i64::MAX, None).unwrap();
        assert_eq!(
            s.incr("d", 1).unwrap_err().kind(),
            crate::StorageErrorKind::Corrupt
        );
    }

    #[test]
    fn expired_entries_are_swept() {
        let clock = ManualClock::new();
        let s = MemoryStorage::with_clock(clock.clone());
        for i in 0..100 {
            s.set(&format!("k{i}"), 1, Some(Duration::from_secs(1)))
                .unwrap();
        }
        clock.advance(Duration::from_secs(1));
        for _ in 0..SWEEP_EVERY {
            s.get("other").unwrap();
        }
        assert_eq!(lock(&s.maps.entries).len(), 0);
    }
}
