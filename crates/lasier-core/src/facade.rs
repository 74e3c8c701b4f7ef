//! What the facades share beyond `engine`: the builder and the registry,
//! written once and expanded in each facade (the builder over its storage
//! trait), so that `lasier-sync` and `lasier-async` keep the same methods,
//! docs and checks.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::clock::{Clock, MonotonicClock};

/// The clock of in-process circuits built without a storage, and the
/// default clock of every breaker: one for the whole process, so that a
/// breaker costs no allocation for it. (Only differences between two
/// readings matter, so one origin serves every breaker.)
pub fn in_process_clock() -> Arc<dyn Clock> {
    static CLOCK: OnceLock<Arc<dyn Clock>> = OnceLock::new();
    Arc::clone(CLOCK.get_or_init(|| Arc::new(MonotonicClock::new())))
}

/// Defines `CircuitBreakerBuilder` in a facade crate, over the storage
/// trait `$Storage` (`Storage` or `AsyncStorage`). The facade provides
/// `crate::breaker::CircuitBreaker::from_core`.
#[doc(hidden)]
#[macro_export]
// `crate::breaker` is meant: the facade's own breaker.
#[allow(clippy::crate_in_macro_def)]
macro_rules! __define_builder {
    ($Storage:ident, $Steps:ident) => {
        use std::sync::Arc;
        use std::time::Duration;

        use $crate::clock::Clock;
        use $crate::events::{ignore_rejection, ignore_state_change, FnListener, Listener};
        use $crate::local::LocalCircuit;
        use $crate::{
            BreakerCore, Config, ConfigError, Engine, LocalBinding, OpenBackoff, Rule, State,
            StorageFailurePolicy,
        };

        #[allow(unused_imports)] // (its methods are called on the storage)
        use $crate::$Steps as _;

        use crate::breaker::CircuitBreaker;

        /// Builds a [`CircuitBreaker`]; from [`CircuitBreaker::builder`].
        ///
        /// Every setting is checked by [`build`](Self::build), which returns a typed
        /// [`ConfigError`] rather than panicking.
        #[derive(Debug)]
        #[must_use = "a builder does nothing until .build() is called"]
        pub struct CircuitBreakerBuilder {
            config: Config,
            clock: Option<Arc<dyn Clock>>,
            storage: Option<Arc<dyn $Storage>>,
        }

        impl CircuitBreakerBuilder {
            pub(crate) fn new(name: impl Into<String>) -> Self {
                Self {
                    config: Config::new(name),
                    clock: None,
                    storage: None,
                }
            }

            /// The rule that decides when the circuit opens.
            pub fn rule(mut self, rule: impl Rule + 'static) -> Self {
                self.config.rule(rule);
                self
            }

            /// Opens after `max_failures` failures in one window
            /// ([`MaxFailuresRule`](crate::MaxFailuresRule)).
            pub fn max_failures(mut self, max_failures: u64) -> Self {
                self.config.max_failures(max_failures);
                self
            }

            /// Opens at `max_failures_percentage` % failures once more than
            /// `min_accepted_requests` requests were seen in the window
            /// ([`PercentageFailuresRule`](crate::PercentageFailuresRule)).
            pub fn percentage_failures(
                mut self,
                max_failures_percentage: u8,
                min_accepted_requests: u64,
            ) -> Self {
                self.config
                    .percentage_failures(max_failures_percentage, min_accepted_requests);
                self
            }

            /// Where the circuit's state lives. Default: an in-process circuit
            /// of this breaker's own, as if on a new
            /// [`MemoryStorage`](crate::MemoryStorage), which lives and dies with
            /// the breaker (and its clones). Pass one `MemoryStorage` (or a
            /// shared store) to several breakers to share circuits by name.
            pub fn storage(mut self, storage: impl $Storage + 'static) -> Self {
                self.storage = Some(Arc::new(storage));
                self
            }

            /// How long a counting window lasts from its first count (default 60 s).
            pub fn failure_timeout(mut self, timeout: Duration) -> Self {
                self.config.failure_timeout(timeout);
                self
            }

            /// Counts outcomes in a sliding window: `failure_timeout` cut
            /// into `buckets` buckets (2 to 1000; Polly uses 10), so that a
            /// burst of failures across the end of a fixed window is counted
            /// whole. An outcome counts for `failure_timeout` less at most
            /// one bucket. `build()` refuses a count out of range. In a
            /// shared store the buckets are keys Python `lasier` does not
            /// read.
            pub fn sliding_window(mut self, buckets: u32) -> Self {
                self.config.sliding_window(buckets);
                self
            }

            /// Counts the last `calls` outcomes (1 to 100 000) instead of a
            /// time window, as resilience4j's COUNT_BASED window: an outcome
            /// leaves when `calls` newer ones have come, and no clock is read
            /// for it. The rule sees the failures among them and, as
            /// requests, how many there are. Not with `sliding_window`.
            pub fn count_window(mut self, calls: u32) -> Self {
                self.config.count_window(calls);
                self
            }

            /// With `count_window`: the rule is not asked until the window
            /// holds at least `calls` outcomes (default 1), so that a fresh
            /// circuit cannot open on its first failures.
            pub fn minimum_calls(mut self, calls: u32) -> Self {
                self.config.minimum_calls(calls);
                self
            }

            /// How long the circuit stays open (default 60 s).
            pub fn circuit_timeout(mut self, timeout: Duration) -> Self {
                self.config.circuit_timeout(timeout);
                self
            }

            /// How many trial calls pass while half-open (default 1). With 0 there
            /// is no half-open state: the circuit closes when its open time is over,
            /// as in the Python original.
            pub fn half_open_max_calls(mut self, calls: u32) -> Self {
                self.config.half_open_max_calls(calls);
                self
            }

            /// How many trials must pass to close the circuit: from 1 to
            /// `half_open_max_calls` (default: all of them, as gobreaker's
            /// `MaxRequests`; a lower one is failsafe-go's
            /// `SuccessThreshold`). One failed trial reopens the circuit.
            pub fn half_open_successes(mut self, successes: u32) -> Self {
                self.config.half_open_successes(successes);
                self
            }

            /// Open-time backoff: each consecutive opening lasts longer, from
            /// `circuit_timeout` times a multiplier per opening up to a maximum,
            /// with optional jitter (see [`OpenBackoff`]). The count of
            /// openings is the circuit's, fleet-wide on a shared store; it
            /// starts again once the circuit has stayed closed for one window
            /// (`failure_timeout`). Off by default: every opening lasts
            /// `circuit_timeout`.
            /// For example `.circuit_timeout(Duration::from_secs(10))` with
            /// `.open_backoff(OpenBackoff::exponential(2.0).max(Duration::from_secs(300)).jitter(0.1))`
            /// opens for 10 s, then 20 s, 40 s, ... at most 5 min, each within
            /// 10 % either way.
            pub fn open_backoff(mut self, backoff: OpenBackoff) -> Self {
                self.config.open_backoff(backoff);
                self
            }

            /// How long a half-open trial may run before its slot is handed on
            /// (default: the circuit timeout). At most `half_open_max_calls`
            /// trials are admitted per lease: a trial slower than the lease, or
            /// lost with a process killed mid-call, frees its slot when the lease
            /// ends, and then decides nothing. The circuit stays half-open
            /// meanwhile, however long (see [`lasier_core::state`]).
            pub fn trial_lease(mut self, lease: Duration) -> Self {
                self.config.trial_lease(lease);
                self
            }

            /// Where the request counter lives, instead of `<name>_requests`.
            pub fn request_key(mut self, key: impl Into<String>) -> Self {
                self.config.request_key(key);
                self
            }

            /// What to do when the store fails: let calls through
            /// ([`FailOpen`](StorageFailurePolicy::FailOpen)), reject them
            /// ([`FailClosed`](StorageFailurePolicy::FailClosed)), or protect them
            /// with an in-process circuit until the store answers again
            /// ([`LocalFallback`](StorageFailurePolicy::LocalFallback), the
            /// default, probing the store once a second).
            pub fn on_storage_failure(mut self, policy: StorageFailurePolicy) -> Self {
                self.config.on_storage_failure(policy);
                self
            }

            /// How long a breaker on a shared store trusts an open state it read
            /// before asking the store again (default one second). While open, it
            /// rejects without a round trip for that long; and a `force_close()` or
            /// `disable()` made by another process reaches it within that bound.
            pub fn max_staleness(mut self, staleness: Duration) -> Self {
                self.config.max_staleness(staleness);
                self
            }

            /// A call that succeeds but takes longer than `duration`, from its
            /// admission to its outcome, counts as a failure (as a timeout does
            /// in Hystrix), on every storage and in sync mode;
            /// `metrics().slow` counts them. Off by default, and then free: no
            /// clock is read for it (unless a listener asks for calls' ends,
            /// or the feature `metrics` is on). A call cut short by your own
            /// timeout is yours to report (a failure, or dropped).
            pub fn slow_call_duration(mut self, duration: Duration) -> Self {
                self.config.slow_call_duration(duration);
                self
            }

            /// Sync mode, for a breaker on a shared store: a call on a closed
            /// circuit is admitted from an in-process mirror of the shared
            /// state, and outcomes are added to the store in batches, about once
            /// per `interval` in the background (one round trip per busy breaker
            /// and interval, whatever the call rate), and at once when this
            /// process's own failures bring the fleet's counts, as it knows
            /// them, to the rule. Half-open trials still ask the store, so the
            /// half-open bound holds across the fleet. A change of state made
            /// elsewhere is seen at the next sync, or about one round trip
            /// after it on a store that pushes its changes (Redis; see
            /// `Storage::watch`). Off by default: every
            /// call then asks the store. See the README's "Sync mode" for the
            /// bound on staleness and what a killed process loses. On an
            /// in-process storage it changes nothing. At most
            /// `failure_timeout`.
            pub fn sync_interval(mut self, interval: Duration) -> Self {
                self.config.sync_interval(interval);
                self
            }

            /// Adds a [`Listener`] for the breaker's events.
            pub fn listener(mut self, listener: impl Listener + 'static) -> Self {
                self.config.listener(Arc::new(listener));
                self
            }

            /// Calls `f(breaker, from, to)` on every state change.
            pub fn on_state_change(
                self,
                f: impl Fn(&str, State, State) + Send + Sync + 'static,
            ) -> Self {
                self.listener(FnListener {
                    state_change: f,
                    call_rejected: ignore_rejection,
                })
            }

            /// Calls `f(breaker, retry_after)` on every rejected call.
            pub fn on_call_rejected(
                self,
                f: impl Fn(&str, Option<Duration>) + Send + Sync + 'static,
            ) -> Self {
                self.listener(FnListener {
                    state_change: ignore_state_change,
                    call_rejected: f,
                })
            }

            /// The clock of the breaker's own timing: its in-process circuit when
            /// it has no storage, and on a shared store the open deadline it caches
            /// and its fallback circuit. Default: the operating system's monotonic
            /// clock; tests pass a [`ManualClock`](lasier_core::clock::ManualClock).
            /// (A circuit in a `MemoryStorage` keeps time by the storage's clock.)
            pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
                self.clock = Some(Arc::new(clock));
                self
            }

            /// Checks the settings and builds the breaker.
            ///
            /// # Errors
            ///
            /// A [`ConfigError`] for an empty name, a missing or invalid rule, a zero
            /// or too long timeout, too many half-open calls or a bad request key, or
            /// a circuit the storage cannot hold (see `Steps::validate`).
            pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
                let (circuit, rule) = self.config.validate()?;
                let engine = match self.storage {
                    Some(storage) => {
                        storage.validate(&circuit)?;
                        match storage.local_circuit(&circuit) {
                            Some(local) => Engine::Local(local),
                            None => Engine::Store(storage),
                        }
                    }
                    // What a `MemoryStorage` of its own would hand it, without
                    // the storage's maps around the one circuit.
                    None => Engine::Local(LocalBinding {
                        circuit: Arc::new(LocalCircuit::for_circuit(&circuit)),
                        clock: self
                            .clock
                            .clone()
                            .unwrap_or_else($crate::facade::in_process_clock),
                    }),
                };
                let clock = self.clock.unwrap_or_else($crate::facade::in_process_clock);
                Ok(CircuitBreaker::from_core(BreakerCore::new(
                    circuit,
                    rule,
                    engine,
                    clock,
                    &self.config,
                )))
            }
        }
    };
}

/// Defines `Registry` (one breaker per key) in a facade crate; `$example`
/// is the doc example, in the facade's own terms.
#[doc(hidden)]
#[macro_export]
// `crate::breaker` and `crate::builder` are meant: the facade's own.
#[allow(clippy::crate_in_macro_def)]
macro_rules! __define_registry {
    ($example:literal) => {
        use std::fmt;
        use std::sync::Arc;
        use std::time::Duration;

        use $crate::clock::{Clock, MonotonicClock};
        use $crate::registry::Entries;
        use $crate::ConfigError;

        use crate::breaker::CircuitBreaker;
        use crate::builder::CircuitBreakerBuilder;

        /// The default most breakers a [`Registry`] holds.
        pub const DEFAULT_CAPACITY: usize = 10_000;

        /// The default idle time after which [`Registry::remove_idle`] may drop a
        /// breaker whose circuit holds nothing.
        pub const DEFAULT_MAX_IDLE: Duration = Duration::from_secs(600);

        /// One breaker per key (a downstream host, a tenant), created on first use
        /// from one recipe, bounded in time and memory whatever the keys, even
        /// keys chosen by an attacker.
        ///
        /// The recipe gets the key and returns a builder; [`get`](Self::get)
        /// builds the key's breaker on its first use, once, however many callers
        /// ask for it at the same time.
        ///
        /// # What eviction forgets
        ///
        /// A breaker whose recipe names no storage owns its circuit: when the
        /// registry drops the breaker, the circuit (its counts, an open state)
        /// goes with it (once no clone of the breaker is held elsewhere), and the
        /// key's next use starts a closed circuit with empty counts. Memory then
        /// follows the registry's capacity, whatever the keys. To keep circuits
        /// beyond eviction, name a storage in the recipe: a shared store (Redis)
        /// keeps them for the whole fleet, a `MemoryStorage` passed to every
        /// breaker keeps them in this process (and keeps circuits with state as
        /// long as they have it, whatever the registry drops), a moka storage
        /// bounds them on its own.
        ///
        /// # Bounds
        ///
        /// * Memory: at most `capacity` breakers, about 630 bytes each with their
        ///   entry for a name of 26 bytes (the breaker itself: about 460 bytes;
        ///   a circuit that threads count requests on at once adds its striped
        ///   counters, 512 bytes).
        ///   [`len`](Self::len) says how many it holds, and so how many
        ///   in-process circuits it keeps alive.
        /// * Time: a lookup takes one shard's read lock; a new key, when full,
        ///   costs an amortised constant time under one shard's write lock (under
        ///   a microsecond, building its breaker included), and its breaker is
        ///   built outside any lock.
        /// * Eviction: a new key waits in a probation queue (a tenth of the
        ///   capacity) and joins the protected part if it is used again before
        ///   that many other new keys arrive; if not, its breaker goes, and the
        ///   key's next insertion joins the protected part at once (recently
        ///   evicted keys are remembered by hash). Keys seen only once (a scan,
        ///   made-up hosts) never evict a protected breaker: a failing host called
        ///   again within a tenth of the capacity in new keys keeps its breaker,
        ///   and so its counts, however many such keys churn; one called more
        ///   rarely may lose its first breaker's counts.
        /// * Idle: [`remove_idle`](Self::remove_idle) drops the breakers not used
        ///   for longer than `max_idle` whose circuits hold nothing (closed, no
        ///   count in the window): they would start the same way anew. A breaker
        ///   with state (open, half-open, set by hand, counting) is never dropped
        ///   for being idle, as an idle half-open circuit must stay half-open; only
        ///   eviction, when the registry is full, may take it. Idle time is a
        ///   last-used stamp per entry on the registry's clock, refreshed by each
        ///   `get`; nothing runs in the background.
        ///
        #[doc = $example]
        pub struct Registry {
            recipe: Box<dyn Fn(&str) -> CircuitBreakerBuilder + Send + Sync>,
            entries: Entries<CircuitBreaker>,
        }

        impl Registry {
            /// A registry whose breakers are built by `recipe(key)`, holding at most
            /// [`DEFAULT_CAPACITY`] of them, with [`DEFAULT_MAX_IDLE`] as the idle
            /// time of [`remove_idle`](Self::remove_idle).
            pub fn new(
                recipe: impl Fn(&str) -> CircuitBreakerBuilder + Send + Sync + 'static,
            ) -> Self {
                Self::with_limits(recipe, DEFAULT_CAPACITY, DEFAULT_MAX_IDLE)
            }

            /// A registry holding at most `capacity` breakers (at least one;
            /// rounded down to a multiple of its shard count, see
            /// [`capacity`](Self::capacity)), with `max_idle` as the idle time of
            /// [`remove_idle`](Self::remove_idle).
            pub fn with_limits(
                recipe: impl Fn(&str) -> CircuitBreakerBuilder + Send + Sync + 'static,
                capacity: usize,
                max_idle: Duration,
            ) -> Self {
                Self::with_clock(recipe, capacity, max_idle, MonotonicClock::new())
            }

            /// [`with_limits`](Self::with_limits) with the clock that measures idle
            /// time (a `ManualClock` in tests). It does not time the breakers:
            /// their recipe does, with its storage or `.clock(..)`.
            pub fn with_clock(
                recipe: impl Fn(&str) -> CircuitBreakerBuilder + Send + Sync + 'static,
                capacity: usize,
                max_idle: Duration,
                clock: impl Clock + 'static,
            ) -> Self {
                Self {
                    recipe: Box::new(recipe),
                    entries: Entries::new(capacity, max_idle, Arc::new(clock)),
                }
            }

            /// The breaker for `key`, built on first use (and again after it was
            /// evicted or removed).
            ///
            /// # Errors
            ///
            /// The recipe's [`ConfigError`], if its builder is invalid for this key;
            /// nothing is kept then.
            pub fn get(&self, key: &str) -> Result<CircuitBreaker, ConfigError> {
                self.entries
                    .get_or_try_insert_with(key, || (self.recipe)(key).build())
            }

            /// Drops the breaker for `key` from the registry: its next use builds
            /// a new one. An in-process circuit goes with the breaker; a circuit
            /// in a named storage stays there.
            pub fn remove(&self, key: &str) {
                self.entries.remove(key);
            }

            /// Drops every breaker not used for longer than `max_idle` whose
            /// circuit holds nothing (see the type's docs), to give its memory
            /// back before eviction would. It visits every breaker, one shard at a
            /// time: call it from a periodic task, if at all, not on each request.
            pub fn remove_idle(&self) {
                self.entries
                    .remove_idle(|breaker| breaker.core().holds_state());
            }

            /// How many breakers it holds. Breakers whose recipe names no storage
            /// own their circuit, so this is also the number of in-process circuits
            /// the registry keeps alive (circuits of breakers it dropped live on
            /// only in clones held elsewhere). Exact, counted shard by shard; idle
            /// breakers count until dropped.
            pub fn len(&self) -> usize {
                self.entries.len()
            }

            /// Whether it holds none.
            pub fn is_empty(&self) -> bool {
                self.entries.is_empty()
            }

            /// Every breaker it holds, with its key, sorted by key (for a
            /// health endpoint: call `metrics()` on each, or the registry's
            /// own `metrics()`). Visits every shard; does not count as a use,
            /// so listing keeps no breaker from going idle.
            pub fn breakers(&self) -> Vec<(String, CircuitBreaker)> {
                let mut all = self.entries.entries();
                all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                all
            }

            /// The most breakers it holds: the capacity it was given (at least
            /// one), rounded down to a multiple of its shard count (by at most
            /// 0.2 %).
            pub fn capacity(&self) -> usize {
                self.entries.capacity()
            }
        }

        #[doc(hidden)]
        impl $crate::registry::Stamped for CircuitBreaker {
            fn last_used(&self) -> &std::sync::atomic::AtomicU64 {
                self.core().last_used()
            }
        }

        impl fmt::Debug for Registry {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct("Registry")
                    .field("entries", &self.entries)
                    .finish_non_exhaustive()
            }
        }
    };
}

/// The storages (by [`sync_group`](crate::Storage::sync_group)) a
/// registry's `metrics()` found down, so that it does not wait for each
/// of their breakers in turn.
#[derive(Debug, Default)]
pub struct DownStores(Vec<(usize, crate::StorageErrorKind)>);

impl DownStores {
    /// How the storage `group` failed, if it was found down.
    pub fn kind(&self, group: Option<usize>) -> Option<crate::StorageErrorKind> {
        let group = group?;
        self.0
            .iter()
            .find(|(down, _)| *down == group)
            .map(|(_, kind)| *kind)
    }

    /// Notes the storage `group` down if `metrics` says it timed out or
    /// was unavailable.
    pub fn note(&mut self, group: Option<usize>, metrics: &crate::Metrics) {
        if let (Some(group), Some(kind)) = (group, metrics.store_error) {
            let down = matches!(
                kind,
                crate::StorageErrorKind::TimedOut | crate::StorageErrorKind::Unavailable
            );
            if down && self.kind(Some(group)).is_none() {
                self.0.push((group, kind));
            }
        }
    }
}

/// The breakers in sync mode of one storage group
/// ([`Storage::sync_group`](crate::Storage::sync_group)), which one
/// background thread (or task) of a facade syncs.
#[derive(Debug)]
pub struct SyncGroup<T> {
    key: usize,
    /// What makes `key` (an address) this group's alone while the group
    /// is known: the storage it was taken from, kept alive. Without it, a
    /// storage dropped and another made at the same address would join
    /// this group, served by a thread that watches the first one's store.
    _key_owner: KeyOwner,
    members: std::sync::Mutex<Vec<std::sync::Weak<T>>>,
    /// Whether its thread (or task) runs: a task dies with its runtime.
    alive: std::sync::atomic::AtomicBool,
    /// What the store pushed since the last pass.
    pushed: std::sync::Mutex<Pushed>,
}

/// Holds whatever a group's key was taken from.
struct KeyOwner(#[allow(dead_code)] Box<dyn Send + Sync>);

impl std::fmt::Debug for KeyOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyOwner")
    }
}

/// The changes a store pushed to a group since its last pass: circuit
/// names, or every circuit.
#[derive(Debug, Default)]
struct Pushed {
    all: bool,
    names: Vec<String>,
}

/// The most names a group keeps between two passes; past it, the pass
/// syncs all of its breakers.
const PUSHED_NAMES: usize = 1024;

/// The least time between two background passes of a group, however often
/// its store pushes: a flood of messages (anyone who can publish on the
/// store can send one) costs at most one pipelined round trip per gap.
pub const PASS_GAP: Duration = Duration::from_millis(5);

impl<T> SyncGroup<T> {
    /// Held by the group's thread (or task) while it runs: when it is
    /// dropped (the thread ends, or the task's runtime shuts down), the next
    /// breaker of the group starts a new one.
    pub fn running(self: &Arc<Self>) -> Running<T> {
        Running(Arc::clone(self))
    }

    /// Notes a change the store pushed ([`Storage::watch`]): the next pass
    /// syncs the breakers it names ([`pushed_now`](Self::pushed_now)).
    ///
    /// [`Storage::watch`]: crate::Storage::watch
    pub fn push(&self, change: crate::storage::Change<'_>) {
        let mut pushed = lock(&self.pushed);
        if pushed.all {
            return;
        }
        match change {
            crate::storage::Change::Circuit(name) if pushed.names.len() < PUSHED_NAMES => {
                if !pushed.names.iter().any(|known| known == name) {
                    pushed.names.push(name.to_owned());
                }
            }
            _ => {
                pushed.all = true;
                pushed.names = Vec::new();
            }
        }
    }

    /// The callback to hand the store's watch ([`Storage::watch`]): notes
    /// each change for the next pass, then calls `wake` (which wakes the
    /// group's thread or task). It holds the group weakly.
    ///
    /// [`Storage::watch`]: crate::Storage::watch
    pub fn on_change(
        self: &Arc<Self>,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> crate::storage::Changed
    where
        T: Send + Sync + 'static,
    {
        let group = Arc::downgrade(self);
        Arc::new(move |change: crate::storage::Change<'_>| {
            if let Some(group) = group.upgrade() {
                group.push(change);
            }
            wake();
        })
    }

    /// Whether pushes wait for the next pass (names whose syncs were in
    /// flight at the last one): the group's thread then comes back after
    /// [`PASS_GAP`], not a whole tick.
    pub fn has_pushed(&self) -> bool {
        let pushed = lock(&self.pushed);
        pushed.all || !pushed.names.is_empty()
    }

    /// Which of a pass's `live` breakers the store's pushes since the last
    /// pass name and must sync now (the caller holds their syncs); each
    /// named stops admitting from its mirror until a sync refreshes it. A
    /// breaker named whose sync is in flight elsewhere stays named for the
    /// next pass: that sync may have read the store before the change. One
    /// whose mirror was stale already needs nothing: its next call syncs
    /// first.
    pub fn pushed_now<'a, S: ?Sized>(
        &self,
        live: &'a [Arc<T>],
        core: impl Fn(&T) -> &crate::engine::BreakerCore<S>,
    ) -> Vec<&'a T> {
        let pushed = core::mem::take(&mut *lock(&self.pushed));
        if !pushed.all && pushed.names.is_empty() {
            return Vec::new();
        }
        let mut picked = Vec::new();
        for member in live.iter().map(|member| &**member) {
            let core = core(member);
            let name = core.circuit().name();
            if pushed.all || pushed.names.iter().any(|named| **named == **name) {
                match core.sync_pushed() {
                    crate::engine::Due::Sync => picked.push(member),
                    crate::engine::Due::Busy => self.push(crate::storage::Change::Circuit(name)),
                    _ => {}
                }
            }
        }
        picked
    }
}

/// See [`SyncGroup::running`].
#[derive(Debug)]
pub struct Running<T>(Arc<SyncGroup<T>>);

impl<T> Drop for Running<T> {
    fn drop(&mut self) {
        self.0
            .alive
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

/// Every storage group with breakers in sync mode, in one facade: a
/// `static` of the facade's syncer.
#[derive(Debug)]
pub struct SyncGroups<T> {
    all: std::sync::Mutex<Vec<Arc<SyncGroup<T>>>>,
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding these; a poisoned lock is consistent.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<T> SyncGroups<T> {
    /// None yet.
    pub const fn new() -> Self {
        Self {
            all: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Adds `member` to the group `key`, taken from `owner` (the storage,
    /// kept by a new group so that no other storage gets its key while the
    /// group lives). Returns the group if it is new: the caller starts its
    /// thread (or task), which calls [`pass`](Self::pass) until it says the
    /// group is empty, or [`abandon`](Self::abandon)s it.
    pub fn join(
        &self,
        key: usize,
        owner: impl Send + Sync + 'static,
        member: &Arc<T>,
    ) -> Option<Arc<SyncGroup<T>>> {
        let mut all = lock(&self.all);
        let mut members = vec![Arc::downgrade(member)];
        if let Some(at) = all.iter().position(|g| g.key == key) {
            let group = &all[at];
            if group.alive.load(std::sync::atomic::Ordering::Acquire) {
                lock(&group.members).push(members.remove(0));
                return None;
            }
            // Its thread or task is gone (a runtime that shut down): a new
            // one takes its breakers over.
            members.append(&mut lock(&group.members));
            all.remove(at);
        }
        let group = Arc::new(SyncGroup {
            key,
            _key_owner: KeyOwner(Box::new(owner)),
            members: std::sync::Mutex::new(members),
            alive: std::sync::atomic::AtomicBool::new(true),
            pushed: std::sync::Mutex::new(Pushed::default()),
        });
        all.push(Arc::clone(&group));
        Some(group)
    }

    /// Forgets a new group whose thread could not be started: its breakers
    /// still sync on failures, when stale and on flush.
    pub fn abandon(&self, group: &Arc<SyncGroup<T>>) {
        lock(&self.all).retain(|g| !Arc::ptr_eq(g, group));
    }

    /// One background pass over `group`: its live members and how long
    /// until the next pass (a quarter of the shortest interval, at most
    /// 250 ms, from `interval_of`), or `None` once no member is left (the
    /// group is gone then: the thread or task ends).
    pub fn pass(
        &self,
        group: &Arc<SyncGroup<T>>,
        interval_of: impl Fn(&T) -> Option<Duration>,
    ) -> Option<(Vec<Arc<T>>, Duration)> {
        {
            let mut members = lock(&group.members);
            members.retain(|weak| weak.strong_count() > 0);
            if members.is_empty() {
                drop(members);
                // Under the groups' lock, so that no breaker joins a group
                // whose thread is ending.
                let mut all = lock(&self.all);
                if lock(&group.members).is_empty() {
                    all.retain(|g| !Arc::ptr_eq(g, group));
                    return None;
                }
            }
        }
        let live: Vec<Arc<T>> = lock(&group.members)
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .collect();
        let tick = live
            .iter()
            .filter_map(|member| interval_of(member))
            .map(|interval| interval / 4)
            .fold(Duration::from_millis(250), Duration::min)
            .max(Duration::from_millis(1));
        Some((live, tick))
    }
}

impl<T> Default for SyncGroups<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Which of a pass's `live` breakers to sync now, the next pass `tick`
/// later: those due, and if there are any, the others in use not synced
/// since the last pass (so that a storage's breakers fall into step and
/// share round trips). The caller holds the sync of each one returned.
pub fn due_now<T, S: ?Sized>(
    live: &[Arc<T>],
    tick: Duration,
    core: impl Fn(&T) -> &crate::engine::BreakerCore<S>,
) -> Vec<&T> {
    let (mut due, rest): (Vec<&T>, Vec<&T>) = live
        .iter()
        .map(|member| &**member)
        .partition(|member| core(member).sync_due(tick) == crate::engine::Due::Sync);
    if !due.is_empty() {
        due.extend(
            rest.into_iter()
                .filter(|member| core(member).sync_joins(tick)),
        );
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_group_starts_once_and_ends_with_its_last_member() {
        let groups: SyncGroups<Duration> = SyncGroups::new();
        let a = Arc::new(Duration::from_millis(400));
        let b = Arc::new(Duration::from_millis(100));
        let group = groups.join(7, (), &a).expect("a new group");
        assert!(groups.join(7, (), &b).is_none(), "joins the running group");
        assert!(
            groups.join(8, (), &b).is_some(),
            "another storage, another group"
        );
        let (live, tick) = groups.pass(&group, |d| Some(*d)).unwrap();
        assert_eq!(live.len(), 2);
        // a quarter of the shortest interval
        assert_eq!(tick, Duration::from_millis(25));
        drop(live);
        drop((a, b));
        assert!(groups.pass(&group, |d| Some(*d)).is_none());
        // gone: the next breaker of that storage starts a new group
        let c = Arc::new(Duration::from_secs(10));
        let again = groups.join(7, (), &c).expect("a new group again");
        let (_, tick) = groups.pass(&again, |d| Some(*d)).unwrap();
        assert_eq!(tick, Duration::from_millis(250), "at most 250 ms");
        // its task died (a runtime shut down): the next breaker starts a
        // new one, which takes the old one's breakers over
        drop(again.running());
        let d = Arc::new(Duration::from_secs(1));
        let fresh = groups.join(7, (), &d).expect("a new task for a dead group");
        let (live, _) = groups.pass(&fresh, |d| Some(*d)).unwrap();
        assert_eq!(live.len(), 2, "the old member and the new one");
        drop(c);
    }

    #[test]
    fn a_sync_group_keeps_what_its_key_was_taken_from_until_it_ends() {
        // The key is an address: were the storage freed while its group is
        // still known, another storage made at that address would join a
        // group whose thread watches the first one's store.
        let groups: SyncGroups<Duration> = SyncGroups::new();
        let storage = Arc::new("a storage");
        let key = Arc::as_ptr(&storage) as usize;
        let member = Arc::new(Duration::from_secs(1));
        let group = groups
            .join(key, Arc::clone(&storage), &member)
            .expect("a new group");
        let other = Arc::new(Duration::from_secs(1));
        assert!(groups.join(key, (), &other).is_none());
        drop((member, other));
        assert_eq!(Arc::strong_count(&storage), 2, "kept by the group");
        assert!(groups.pass(&group, |d| Some(*d)).is_none());
        drop(group);
        assert_eq!(Arc::strong_count(&storage), 1, "let go once it ended");
    }

    fn core_in_sync_mode(name: &str) -> crate::engine::BreakerCore<dyn crate::Storage> {
        let mut config = crate::Config::new(name);
        config.max_failures(3).sync_interval(Duration::from_secs(1));
        let (circuit, rule) = config.validate().unwrap();
        let store: Arc<dyn crate::Storage> = Arc::new(crate::MemoryStorage::new());
        crate::engine::BreakerCore::new(
            circuit,
            rule,
            crate::engine::Engine::Store(store),
            in_process_clock(),
            &config,
        )
    }

    /// Answers a sync of `core` (which holds its sync) with a closed
    /// circuit: its mirror admits.
    fn synced_closed(core: &crate::engine::BreakerCore<dyn crate::Storage>) {
        let batch = core.sync_begin().unwrap();
        let closed = crate::Snapshot::new(crate::State::Closed, crate::Counts::default());
        core.synced(batch, Ok(closed)).unwrap();
    }

    /// Whether `core` admits a call from its mirror, without the store.
    fn admits(core: &crate::engine::BreakerCore<dyn crate::Storage>) -> bool {
        matches!(core.try_admit(), crate::engine::Gate::Pass(_))
    }

    #[test]
    fn a_push_syncs_the_breakers_it_names_once() {
        use crate::storage::Change;
        let groups = SyncGroups::new();
        let a = Arc::new(core_in_sync_mode("a"));
        let b = Arc::new(core_in_sync_mode("b"));
        let group = groups.join(1, (), &a).unwrap();
        assert!(groups.join(1, (), &b).is_none());
        let (live, _) = groups.pass(&group, |_| None).unwrap();
        let names = |picked: Vec<&crate::engine::BreakerCore<dyn crate::Storage>>| {
            picked
                .iter()
                .map(|core| core.circuit().name().to_string())
                .collect::<Vec<_>>()
        };
        // a mirror never synced (stale) needs nothing: its next call syncs
        // first
        group.push(Change::All);
        assert!(group.pushed_now(&live, |core| core).is_empty());
        for core in [&a, &b] {
            assert!(!admits(core));
            assert!(core.sync_claim());
            synced_closed(core);
            assert!(admits(core));
        }
        assert!(
            group.pushed_now(&live, |core| core).is_empty(),
            "nothing pushed"
        );
        group.push(Change::Circuit("b"));
        group.push(Change::Circuit("b"));
        group.push(Change::Circuit("nobody"));
        assert_eq!(names(group.pushed_now(&live, |core| core)), ["b"]);
        // b admits nothing from its mirror until its sync answers; a does
        assert!(!admits(&b));
        assert!(admits(&a));
        assert!(
            group.pushed_now(&live, |core| core).is_empty(),
            "taken once"
        );
        assert!(!group.has_pushed());
        // b's sync is in flight (held here; elsewhere in a facade): a push
        // that names it again does not sync it twice at once, and keeps it
        // named until that sync is over
        let in_flight = b.sync_begin().unwrap();
        group.push(Change::Circuit("b"));
        assert!(group.pushed_now(&live, |core| core).is_empty());
        assert!(group.has_pushed(), "named again for the next pass");
        // that sync read the store before the change: its answer is
        // applied, but the mirror admits nothing from it
        let closed = crate::Snapshot::new(crate::State::Closed, crate::Counts::default());
        b.synced(in_flight, Ok(closed)).unwrap();
        assert!(!admits(&b), "an answer that may predate a push");
        // nothing trusted, nothing in flight: the next call syncs first
        assert!(group.pushed_now(&live, |core| core).is_empty());
        assert!(!group.has_pushed());
        assert!(b.sync_claim());
        synced_closed(&b);
        assert!(admits(&b));
        // everything (a feed that reconnected), or more names than kept
        group.push(Change::All);
        assert_eq!(names(group.pushed_now(&live, |core| core)), ["a", "b"]);
        synced_closed(&a);
        synced_closed(&b);
        for i in 0..=PUSHED_NAMES {
            group.push(Change::Circuit(&i.to_string()));
        }
        assert_eq!(names(group.pushed_now(&live, |core| core)), ["a", "b"]);
    }
}
