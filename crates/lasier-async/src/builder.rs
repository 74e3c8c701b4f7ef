use std::sync::Arc;
use std::time::Duration;

use lasier_core::clock::MonotonicClock;
use lasier_core::{AsyncStorage, BreakerCore, Config, ConfigError, Engine, MemoryStorage, Rule};

use crate::breaker::CircuitBreaker;

/// Builds a [`CircuitBreaker`]; from [`CircuitBreaker::builder`].
///
/// Every setting is checked by [`build`](Self::build), which returns a typed
/// [`ConfigError`] rather than panicking.
#[derive(Debug)]
#[must_use = "a builder does nothing until .build() is called"]
pub struct CircuitBreakerBuilder {
    config: Config,
    storage: Option<Arc<dyn AsyncStorage>>,
}

impl CircuitBreakerBuilder {
    pub(crate) fn new(name: impl Into<String>) -> Self {
        Self {
            config: Config::new(name),
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
    pub fn storage(mut self, storage: impl AsyncStorage + 'static) -> Self {
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

    /// Checks the settings and builds the breaker.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for an empty name, a missing or invalid rule, a zero
    /// or too long timeout, too many half-open calls or a bad request key.
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        let (circuit, rule) = self.config.validate()?;
        let storage = self
            .storage
            .unwrap_or_else(|| Arc::new(MemoryStorage::new()));
        let engine = match storage.local_circuit(&circuit) {
            Some(local) => Engine::Local(local),
            None => Engine::Store(storage),
        };
        let clock = Arc::new(MonotonicClock::new());
        Ok(CircuitBreaker::from_core(BreakerCore::new(
            circuit, rule, engine, clock,
        )))
    }
}
