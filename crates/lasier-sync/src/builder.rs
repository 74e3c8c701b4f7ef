use std::sync::Arc;
use std::time::Duration;

use lasier_core::clock::{Clock, MonotonicClock};
use lasier_core::events::{ignore_rejection, ignore_state_change, FnListener, Listener};
use lasier_core::{
    BreakerCore, Config, ConfigError, Engine, MemoryStorage, Rule, State, Storage,
    StorageFailurePolicy,
};

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
    storage: Option<Arc<dyn Storage>>,
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

    /// Where the circuit's state lives. Default: a new
    /// [`MemoryStorage`] of this breaker's own; pass one `MemoryStorage`
    /// (or a shared store) to several breakers to share circuits by name.
    pub fn storage(mut self, storage: impl Storage + 'static) -> Self {
        self.storage = Some(Arc::new(storage));
        self
    }

    /// How long a counting window lasts from its first count (default 60 s).
    pub fn failure_timeout(mut self, timeout: Duration) -> Self {
        self.config.failure_timeout(timeout);
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

    /// Adds a [`Listener`] for the breaker's events.
    pub fn listener(mut self, listener: impl Listener + 'static) -> Self {
        self.config.listener(Arc::new(listener));
        self
    }

    /// Calls `f(breaker, from, to)` on every state change.
    pub fn on_state_change(self, f: impl Fn(&str, State, State) + Send + Sync + 'static) -> Self {
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

    /// The clock of the breaker's own timing on a shared store: the open
    /// deadline it caches and its fallback circuit. Default: the operating
    /// system's monotonic clock; tests pass a
    /// [`ManualClock`](lasier_core::clock::ManualClock). (An in-process
    /// `MemoryStorage` keeps time by its own clock.)
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Sets the storage if the recipe of a registry gave none.
    pub(crate) fn or_storage(mut self, storage: impl FnOnce() -> Arc<dyn Storage>) -> Self {
        if self.storage.is_none() {
            self.storage = Some(storage());
        }
        self
    }

    /// Checks the settings and builds the breaker.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for an empty name, a missing or invalid rule, a zero
    /// or too long timeout, too many half-open calls or a bad request key, or
    /// a circuit the storage cannot hold (see `Storage::validate`).
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        let (circuit, rule) = self.config.validate()?;
        let storage = self
            .storage
            .unwrap_or_else(|| Arc::new(MemoryStorage::new()));
        storage.validate(&circuit)?;
        let engine = match storage.local_circuit(&circuit) {
            Some(local) => Engine::Local(local),
            None => Engine::Store(storage),
        };
        let clock = self
            .clock
            .unwrap_or_else(|| Arc::new(MonotonicClock::new()));
        Ok(CircuitBreaker::from_core(BreakerCore::new(
            circuit,
            rule,
            engine,
            clock,
            &self.config,
        )))
    }
}
