//! One value per key, created on first use, bounded in time and memory:
//! the engine of the facades' per-key breaker registries (one breaker per
//! downstream host, per tenant, ...).
//!
//! The keys may be chosen by whoever sends the requests, so every operation
//! must stay cheap whatever they are: the values live in a sharded
//! concurrent cache ([`quick_cache`]), where a lookup takes one shard's read
//! lock and a new key one shard's write lock for an amortised constant time,
//! and where
//! the eviction policy (S3-FIFO) lets keys seen once go first. Keys are
//! hashed with the standard library's keyed SipHash, which keys chosen to
//! collide cannot defeat.

use std::hash::RandomState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quick_cache::sync::{Cache, DefaultLifecycle, GuardResult};
use quick_cache::{OptionsBuilder, UnitWeighter};

use crate::clock::{now_ms, Clock};

/// The share of each shard kept for keys used more than once; the rest is
/// the probation queue where a new key waits for its second use. 10 % of
/// probation is what the S3-FIFO paper found best, and it bounds what keys
/// seen once (a scan, an attacker's made-up hosts) can take: they can never
/// evict a key of the protected 90 %.
const PROTECTED_SHARE: f64 = 0.9;

/// The fewest entries per shard, when there are several: each shard runs
/// the eviction policy on its own, and a shard of a few dozen entries (what
/// quick_cache allows) has a probation queue of a few, where a burst of new
/// keys landing on one shard would push a new key out before its second
/// use.
const MIN_SHARD_ENTRIES: usize = 512;

/// Values by key, created on first use.
///
/// * Size: at most [`capacity`](Self::capacity) values. When full, a new key
///   evicts another by S3-FIFO: a new key enters a probation queue (10 % of
///   the capacity) and moves to the protected part only if it is used again
///   before it reaches the end of that queue; otherwise it goes, remembered
///   for a while by its hash only, so that its next insertion goes straight
///   to the protected part. The protected part evicts by CLOCK: the first
///   value not used since the hand last passed it. Keys seen once cannot
///   evict a protected value, however many there are.
/// * Time: [`remove_idle`](Self::remove_idle) drops the values whose key
///   was not used for longer than `max_idle` (but those it is told to
///   keep). Idle time is measured on the registry's clock, from a last-used
///   stamp per entry that each use refreshes; the cache itself keeps no
///   time, and a value is never made anew only for being idle.
/// * Concurrency: a lookup takes one shard's read lock; a new key takes that
///   shard's write lock twice, for an amortised constant time, and its value
///   is made outside any lock, once: other callers asking for the same key
///   meanwhile wait for it.
pub struct Entries<V> {
    entries: Cache<String, V, UnitWeighter, RandomState>,
    capacity: usize,
    max_idle_ms: u64,
    clock: Arc<dyn Clock>,
}

/// A value a [`Entries`] holds: it carries when (ms on the registry's
/// clock) its key was last used, so that a hit clones the value and
/// nothing else.
pub trait Stamped: Clone {
    /// The last-used stamp; the registry reads and writes it.
    fn last_used(&self) -> &AtomicU64;
}

/// How fine the last-used stamps are: a stamp is rewritten only once it is
/// this old, so that threads sharing a hot key do not write its line on
/// every use. Idle times are minutes.
const STAMP_MS: u64 = 1_000;

fn touch(stamp: &AtomicU64, now: u64) {
    if now.saturating_sub(stamp.load(Ordering::Relaxed)) >= STAMP_MS {
        stamp.store(now, Ordering::Relaxed);
    }
}

impl<V: Stamped> Entries<V> {
    /// An empty registry of at most `capacity` values (at least one).
    pub fn new(capacity: usize, max_idle: Duration, clock: Arc<dyn Clock>) -> Self {
        let capacity = capacity.max(1);
        let parallelism = std::thread::available_parallelism().map_or(1, usize::from);
        // As many shards as quick_cache would pick (4 per core) but no
        // smaller than MIN_SHARD_ENTRIES, as a power of two; the capacity is
        // rounded down to a multiple of it so that the bound is exact.
        let shards = prev_power_of_two(
            parallelism
                .saturating_mul(4)
                .min(capacity / MIN_SHARD_ENTRIES)
                .max(1),
        );
        let capacity = capacity - capacity % shards;
        let weight = u64::try_from(capacity).unwrap_or(u64::MAX);
        let options = OptionsBuilder::new()
            .shards(shards)
            .estimated_items_capacity(capacity)
            .weight_capacity(weight)
            .hot_allocation(PROTECTED_SHARE)
            .build();
        let entries = match options {
            Ok(options) => Cache::with_options(
                options,
                UnitWeighter,
                RandomState::new(),
                DefaultLifecycle::default(),
            ),
            // Unreachable (both required options are set); the defaults
            // bound the size all the same.
            Err(_) => Cache::with(
                capacity,
                weight,
                UnitWeighter,
                RandomState::new(),
                DefaultLifecycle::default(),
            ),
        };
        Self {
            entries,
            capacity,
            max_idle_ms: u64::try_from(max_idle.as_millis()).unwrap_or(u64::MAX),
            clock,
        }
    }

    /// The value at `key`, made by `make` if absent. `make` runs outside the
    /// registry's locks, once per key: callers asking for the same key
    /// meanwhile wait for its value.
    ///
    /// # Errors
    ///
    /// `make`'s error; nothing is inserted then (and a caller that was
    /// waiting makes the value itself).
    pub fn get_or_try_insert_with<E>(
        &self,
        key: &str,
        make: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        let now = now_ms(&*self.clock);
        let guard = match self.entries.get_value_or_guard(key, None) {
            GuardResult::Value(value) => {
                touch(value.last_used(), now);
                return Ok(value);
            }
            GuardResult::Guard(guard) => guard,
            // Never without a timeout; serve the call all the same.
            GuardResult::Timeout => return make(),
        };
        let value = make()?;
        // It fails only if the key was removed meanwhile: the caller still
        // gets its value, the registry does not keep it.
        value.last_used().store(now, Ordering::Relaxed);
        let _ = guard.insert(value.clone());
        Ok(value)
    }

    /// Whether `value`'s key was not used for longer than `max_idle` at
    /// `now` (give or take a second: see `STAMP_MS`).
    fn is_idle(&self, value: &V, now: u64) -> bool {
        now.saturating_sub(value.last_used().load(Ordering::Relaxed)) > self.max_idle_ms
    }

    /// Drops the entry at `key`, if any.
    pub fn remove(&self, key: &str) {
        self.entries.remove(key);
    }

    /// Drops every entry whose key was not used for longer than `max_idle`,
    /// but those for which `keep` says yes (a breaker whose circuit holds
    /// state: forgetting it would close an open circuit). Visits every
    /// entry, one shard's write lock at a time.
    pub fn remove_idle(&self, keep: impl Fn(&V) -> bool) {
        let now = now_ms(&*self.clock);
        self.entries
            .retain(|_, value| !self.is_idle(value, now) || keep(value));
    }

    /// Every entry, key and value, shard by shard (entries inserted or
    /// evicted meanwhile may or may not be seen). Stamps no entry as used.
    pub fn entries(&self) -> Vec<(String, V)> {
        self.entries.iter().collect()
    }

    /// How many entries it holds: exact, counted shard by shard (an entry
    /// inserted into a shard already counted meanwhile is not). Idle
    /// entries count until they are dropped.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The most entries it holds: the capacity it was made with, rounded
    /// down to a multiple of its shard count (at most 0.2 % less).
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// The largest power of two not above `n` (1 for 0).
fn prev_power_of_two(n: usize) -> usize {
    match n.checked_ilog2() {
        Some(log) => 1 << log,
        None => 1,
    }
}

impl<V: Clone> std::fmt::Debug for Entries<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entries")
            .field("len", &self.entries.len())
            .field("capacity", &self.capacity)
            .field("shards", &self.entries.num_shards())
            .field("max_idle_ms", &self.max_idle_ms)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Barrier;

    /// A value made by a test: its number, and its stamp.
    #[derive(Debug, Clone)]
    struct Made(u32, Arc<AtomicU64>);

    impl Stamped for Made {
        fn last_used(&self) -> &AtomicU64 {
            &self.1
        }
    }

    impl PartialEq<u32> for Made {
        fn eq(&self, n: &u32) -> bool {
            self.0 == *n
        }
    }

    fn m(n: u32) -> Made {
        Made(n, Arc::default())
    }

    fn registry(capacity: usize, clock: &ManualClock) -> Entries<Made> {
        Entries::new(capacity, Duration::from_secs(10), Arc::new(clock.clone()))
    }

    #[test]
    fn makes_once_per_key() {
        let r = registry(10, &ManualClock::new());
        let mut made = 0;
        let mut get = |key: &str| {
            r.get_or_try_insert_with(key, || {
                made += 1;
                Ok::<_, ()>(m(made))
            })
            .unwrap()
        };
        assert_eq!(get("a"), 1);
        assert_eq!(get("a"), 1);
        assert_eq!(get("b"), 2);
        assert_eq!(get("a"), 1);
        assert_eq!(r.len(), 2);
        r.remove("a");
        assert_eq!(get("a"), 3);
    }

    #[test]
    fn makes_once_under_concurrency() {
        let r = registry(100, &ManualClock::new());
        let made = AtomicUsize::new(0);
        let start = Barrier::new(8);
        let values: Vec<Made> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        r.get_or_try_insert_with("new", || {
                            // long enough for the others to arrive meanwhile
                            std::thread::yield_now();
                            Ok::<_, ()>(m(made.fetch_add(1, Ordering::SeqCst) as u32))
                        })
                        .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(made.load(Ordering::SeqCst), 1);
        assert!(values.iter().all(|v| *v == 0), "{values:?}");
    }

    #[test]
    fn holds_at_most_its_capacity() {
        for capacity in [1, 2, 100, 1_000, 5_000, 10_000] {
            let r = registry(capacity, &ManualClock::new());
            assert!(r.capacity() <= capacity && r.capacity() * 1000 >= capacity * 998);
            for i in 0..3 * capacity as u32 {
                r.get_or_try_insert_with(&i.to_string(), || Ok::<_, ()>(m(i)))
                    .unwrap();
                assert!(r.len() <= r.capacity(), "{r:?}");
            }
            assert!(r.len() * 10 >= r.capacity() * 9, "{r:?}");
        }
    }

    #[test]
    fn idle_keys_go_only_when_asked_and_not_those_to_keep() {
        let clock = ManualClock::new();
        let r = registry(10, &clock);
        let mut made = 0;
        let mut get = |key: &str| {
            r.get_or_try_insert_with(key, || {
                made += 1;
                Ok::<_, ()>(m(made))
            })
            .unwrap()
        };
        assert_eq!(get("a"), 1);
        assert_eq!(get("b"), 2);
        assert_eq!(get("c"), 3);
        clock.advance(Duration::from_secs(10));
        // idle for exactly max_idle: kept
        assert_eq!(get("a"), 1);
        clock.advance(Duration::from_millis(10_001));
        // idle for longer: still the same value until dropped
        assert_eq!(get("b"), 2);
        r.remove_idle(|v| *v == 3);
        assert_eq!(r.len(), 2, "a is idle and goes; c is idle and kept");
        assert_eq!(get("a"), 4);
        assert_eq!(get("c"), 3);
    }

    #[test]
    fn a_failed_make_inserts_nothing() {
        let clock = ManualClock::new();
        let r = registry(2, &clock);
        assert_eq!(
            r.get_or_try_insert_with("a", || Err::<Made, _>("bad"))
                .unwrap_err(),
            "bad"
        );
        assert!(r.is_empty());
        // an idle entry is no reason to make it again
        r.get_or_try_insert_with("a", || Ok::<_, ()>(m(1))).unwrap();
        clock.advance(Duration::from_secs(11));
        assert_eq!(
            r.get_or_try_insert_with("a", || Err::<Made, _>("bad"))
                .unwrap(),
            1
        );
    }

    #[test]
    fn a_key_used_again_survives_any_number_of_keys_seen_once() {
        let r = registry(1_000, &ManualClock::new());
        let mut made = 0;
        let mut get = |key: &str| {
            r.get_or_try_insert_with(key, || {
                made += 1;
                Ok::<_, ()>(m(made))
            })
            .unwrap()
        };
        let kept = get("kept").0;
        let mut next = 0;
        let mut churn = |n: usize| {
            for _ in 0..n {
                next += 1;
                r.get_or_try_insert_with(&format!("once-{next}"), || Ok::<_, ()>(m(0)))
                    .unwrap();
            }
        };
        // used again within the probation queue's length...
        churn(50);
        assert_eq!(get("kept"), kept);
        // ...then safe from keys seen once, however many
        for _ in 0..5 {
            churn(5_000);
            assert_eq!(get("kept"), kept);
        }
        assert_eq!(r.len(), r.capacity());
    }

    #[test]
    fn powers_of_two() {
        assert_eq!(prev_power_of_two(0), 1);
        assert_eq!(prev_power_of_two(1), 1);
        assert_eq!(prev_power_of_two(7), 4);
        assert_eq!(prev_power_of_two(8), 8);
    }
}
