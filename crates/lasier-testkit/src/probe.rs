//! What the checks are written with: the storage's primitives with errors
//! that say which call failed, unique key names, a timeline, and verdicts.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lasier_core::clock::ManualClock;
use lasier_core::{Circuit, StorageError};

use crate::store::Store;

/// A check did not pass: what the storage did.
#[derive(Debug)]
pub(crate) struct Broken(pub(crate) String);

/// Fails with `seen()` unless `ok`.
pub(crate) fn ensure(ok: bool, seen: impl FnOnce() -> String) -> Result<(), Broken> {
    if ok {
        Ok(())
    } else {
        Err(Broken(seen()))
    }
}

fn failed(call: String, e: &StorageError) -> Broken {
    Broken(format!("{call} returned an error: {e}"))
}

/// A TTL as the messages show it.
pub(crate) struct ShowTtl(pub(crate) Option<Duration>);

impl fmt::Display for ShowTtl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("no TTL"),
            Some(ttl) => write!(f, "TTL {ttl:?}"),
        }
    }
}

/// The primitives of the storage under test; an error names the call.
pub(crate) struct Probe<'a>(pub(crate) &'a dyn Store);

impl Probe<'_> {
    pub(crate) async fn add(
        &self,
        key: &str,
        value: i64,
        ttl: Option<Duration>,
    ) -> Result<bool, Broken> {
        self.0
            .add(key, value, ttl)
            .await
            .map_err(|e| failed(format!("add({key:?}, {value}, {})", ShowTtl(ttl)), &e))
    }

    pub(crate) async fn set(
        &self,
        key: &str,
        value: i64,
        ttl: Option<Duration>,
    ) -> Result<(), Broken> {
        self.0
            .set(key, value, ttl)
            .await
            .map_err(|e| failed(format!("set({key:?}, {value}, {})", ShowTtl(ttl)), &e))
    }

    pub(crate) async fn incr(&self, key: &str, delta: i64) -> Result<i64, Broken> {
        self.0
            .incr(key, delta)
            .await
            .map_err(|e| failed(format!("incr({key:?}, {delta})"), &e))
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<i64>, Broken> {
        self.0
            .get(key)
            .await
            .map_err(|e| failed(format!("get({key:?})"), &e))
    }

    pub(crate) async fn expire(&self, key: &str, ttl: Duration) -> Result<(), Broken> {
        self.0
            .expire(key, ttl)
            .await
            .map_err(|e| failed(format!("expire({key:?}, {ttl:?})"), &e))
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), Broken> {
        self.0
            .delete(key)
            .await
            .map_err(|e| failed(format!("delete({key:?})"), &e))
    }

    pub(crate) async fn incr_concurrently(
        &self,
        key: &str,
        workers: usize,
        each: usize,
    ) -> Result<Vec<i64>, Broken> {
        self.0
            .incr_concurrently(key, workers, each)
            .await
            .map_err(|e| failed(format!("a concurrent incr({key:?}, 1)"), &e))
    }

    pub(crate) async fn add_concurrently(
        &self,
        key: &str,
        workers: usize,
    ) -> Result<Vec<bool>, Broken> {
        self.0
            .add_concurrently(key, workers)
            .await
            .map_err(|e| failed(format!("a concurrent add({key:?}, ..)"), &e))
    }
}

/// Unique names for one run of one check, so that runs never meet, even
/// on a shared store that outlives them; remembers what to clean up.
pub(crate) struct Names {
    prefix: String,
    keys: Mutex<Vec<String>>,
    circuits: Mutex<Vec<Circuit>>,
}

static RUNS: AtomicU64 = AtomicU64::new(0);

impl Names {
    pub(crate) fn new(check: &str) -> Self {
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() & 0xFFFF_FFFF);
        Self {
            // The run's id is a Redis Cluster hash tag: every key of a
            // check lands in one slot, as a cluster storage requires of a
            // breaker's keys (and elsewhere it is just part of the name).
            prefix: format!(
                "lasier-testkit:{{{:x}-{now:x}-{run}}}:{check}:",
                std::process::id()
            ),
            keys: Mutex::new(Vec::new()),
            circuits: Mutex::new(Vec::new()),
        }
    }

    /// A key of this run.
    pub(crate) fn key(&self, name: &str) -> String {
        let key = format!("{}{name}", self.prefix);
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(key.clone());
        key
    }

    /// Remembers `key`, written by the check under a name of its own.
    pub(crate) fn key_named(&self, key: &str) {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(key.to_owned());
    }

    /// A circuit name of this run.
    pub(crate) fn circuit_name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Remembers a circuit whose keys are to be deleted at the end.
    pub(crate) fn track(&self, circuit: &Circuit) {
        self.circuits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(circuit.clone());
    }

    /// Deletes every key this run wrote, as far as the storage lets it.
    pub(crate) async fn clean_up(&self, store: &dyn Store) {
        let mut keys =
            std::mem::take(&mut *self.keys.lock().unwrap_or_else(PoisonError::into_inner));
        let circuits =
            std::mem::take(&mut *self.circuits.lock().unwrap_or_else(PoisonError::into_inner));
        for circuit in &circuits {
            keys.extend(circuit.keys().all().iter().map(|k| (*k).to_owned()));
        }
        for key in keys {
            let _ = store.delete(&key).await;
        }
    }
}

/// How far a storage's own clock may be from the kit's in real time: a
/// coarse clock ticks every 1 to 10 ms (Linux's `CLOCK_MONOTONIC_COARSE`),
/// and stores round TTLs to whole milliseconds.
pub(crate) const CLOCK_ALLOWANCE: Duration = Duration::from_millis(15);

/// Time as a timed check sees it: ticks, moved by hand on a manual clock,
/// waited for in real time otherwise.
///
/// In real time the kit never asserts that something happened *before* a
/// deadline. It schedules every observation half a tick or more away from
/// every deadline, and afterwards checks that the run kept to that
/// schedule; if the machine or the store fell so far behind that, with the
/// storage's clock off by up to [`CLOCK_ALLOWANCE`], an observation may
/// have crossed a deadline, the run proves nothing either way and is
/// repeated with a longer tick.
pub(crate) struct Timeline {
    clock: Option<ManualClock>,
    tick: Duration,
    started: Instant,
    nominal: Duration,
}

impl Timeline {
    pub(crate) fn new(clock: Option<ManualClock>, tick: Duration) -> Self {
        Self {
            clock,
            tick,
            started: Instant::now(),
            nominal: Duration::ZERO,
        }
    }

    /// `n` ticks.
    pub(crate) fn ticks(&self, n: u32) -> Duration {
        self.tick * n
    }

    /// One tick.
    pub(crate) fn tick(&self) -> Duration {
        self.tick
    }

    /// The manual clock this timeline moves, if any.
    pub(crate) fn manual_clock(&self) -> Option<&ManualClock> {
        self.clock.as_ref()
    }

    /// Moves time on by `halves` half ticks.
    pub(crate) async fn advance_halves(&mut self, halves: u32) {
        self.advance(self.tick * halves / 2).await;
    }

    /// Moves time on by `by`.
    pub(crate) async fn advance(&mut self, by: Duration) {
        match &self.clock {
            Some(clock) => clock.advance(by),
            None => crate::runtime::sleep(by).await,
        }
        self.nominal += by;
    }

    /// How far real time ran behind the schedule, if too far for the run
    /// to prove anything: half a tick, less [`CLOCK_ALLOWANCE`] for the
    /// storage's clock. Always `None` on a manual clock.
    pub(crate) fn lag(&self) -> Option<Duration> {
        if self.clock.is_some() {
            return None;
        }
        let lag = self.started.elapsed().saturating_sub(self.nominal);
        (lag + CLOCK_ALLOWANCE >= self.tick / 2).then_some(lag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_timeline_never_lags_and_moves_its_clock() {
        use lasier_core::clock::Clock;
        let clock = ManualClock::new();
        let mut t = Timeline::new(Some(clock.clone()), Duration::from_secs(1));
        crate::runtime::block_on(t.advance_halves(5));
        assert_eq!(clock.now(), Duration::from_millis(2500));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(t.lag(), None);
    }

    #[test]
    fn a_real_timeline_that_fell_half_a_tick_behind_is_inconclusive() {
        let t = Timeline::new(None, Duration::from_millis(50));
        // Work that the schedule did not plan for: with the clock
        // allowance, 10 ms is too much for a tick of 50.
        std::thread::sleep(Duration::from_millis(10));
        assert!(t.lag().is_some_and(|lag| lag >= Duration::from_millis(10)));
    }

    #[test]
    fn names_are_unique_per_run_and_remembered_for_clean_up() {
        let (a, b) = (Names::new("check"), Names::new("check"));
        assert_ne!(a.key("k"), b.key("k"));
        assert!(a.key("k").starts_with("lasier-testkit:"));
        assert_eq!(a.keys.lock().map(|k| k.len()).unwrap_or(0), 2);
    }
}
