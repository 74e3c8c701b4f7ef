use std::fmt;
use std::sync::Arc;

use lasier_core::{
    Admission, Circuit, Counts, Error, LocalBinding, Outcome, Permit, Rule, State, Storage,
    StorageError,
};

use crate::builder::CircuitBreakerBuilder;
use crate::guard::Guard;

/// A circuit breaker for blocking code.
///
/// One concrete type whatever its rule and storage, so it fits in a struct
/// field or a `static` without generics. Cloning is cheap and clones share
/// one breaker. It is `Send + Sync`.
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

struct Inner {
    circuit: Circuit,
    rule: Arc<dyn Rule>,
    engine: Engine,
}

pub(crate) enum Engine {
    /// The circuit lives in this process: lock-free, no store round trip.
    Local(LocalBinding),
    /// The circuit lives in a store, reached through the fused steps.
    Store(Arc<dyn Storage>),
}

impl CircuitBreaker {
    /// Starts building a breaker for the circuit `name` (also its key in
    /// the store).
    pub fn builder(name: impl Into<String>) -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::new(name)
    }

    pub(crate) fn from_parts(circuit: Circuit, rule: Arc<dyn Rule>, engine: Engine) -> Self {
        Self {
            inner: Arc::new(Inner {
                circuit,
                rule,
                engine,
            }),
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        self.inner.circuit.name()
    }

    /// Runs `f` unless the circuit is open; every `Err` counts as a failure.
    ///
    /// # Errors
    ///
    /// [`Error::Open`] if the circuit rejected the call (`f` did not run),
    /// [`Error::Inner`] with `f`'s own error, or [`Error::Storage`] if the
    /// storage failed before `f` could be admitted.
    #[inline]
    pub fn call<T, E, F>(&self, f: F) -> Result<T, Error<E>>
    where
        F: FnOnce() -> Result<T, E>,
    {
        self.call_filtered(|_: &E| true, f)
    }

    /// Runs `f` unless the circuit is open; only errors for which
    /// `is_failure` holds count as failures (the original's
    /// `catch_exceptions`). Other errors are returned all the same, counted
    /// as a request but not as a failure.
    ///
    /// ```
    /// use lasier_sync::CircuitBreaker;
    ///
    /// #[derive(Debug)]
    /// enum ApiError { NotFound, Unavailable }
    ///
    /// let breaker = CircuitBreaker::builder("api").max_failures(1).build()?;
    /// let _ = breaker.call_filtered(|e| matches!(e, ApiError::Unavailable), || -> Result<(), _> { Err(ApiError::NotFound) });
    /// assert_eq!(breaker.state()?, lasier_sync::State::Closed);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    #[inline]
    pub fn call_filtered<T, E, P, F>(&self, is_failure: P, f: F) -> Result<T, Error<E>>
    where
        P: FnOnce(&E) -> bool,
        F: FnOnce() -> Result<T, E>,
    {
        let guard = self.enter().map_err(Error::cast)?;
        match f() {
            Ok(value) => {
                guard.success();
                Ok(value)
            }
            Err(e) => {
                if is_failure(&e) {
                    guard.failure();
                } else {
                    guard.success();
                }
                Err(Error::Inner(e))
            }
        }
    }

    /// Asks to run a call and returns a [`Guard`] to report its outcome on.
    ///
    /// # Errors
    ///
    /// [`Error::Open`] if the circuit is open, [`Error::Storage`] if the
    /// storage failed.
    #[inline]
    pub fn enter(&self) -> Result<Guard<'_>, Error> {
        let inner = &*self.inner;
        let timing = inner.circuit.timing();
        let (admission, _transition) = match &inner.engine {
            Engine::Local(local) => local.admit(timing),
            Engine::Store(storage) => storage.admit(&inner.circuit)?,
        };
        match admission {
            Admission::Admitted(permit) => Ok(Guard::new(self, permit)),
            Admission::Rejected { retry_after } => {
                Err(Error::rejected(inner.circuit.name(), retry_after))
            }
        }
    }

    #[inline]
    pub(crate) fn record(&self, permit: Permit, outcome: Outcome) {
        let inner = &*self.inner;
        match &inner.engine {
            Engine::Local(local) => {
                local.record(permit, outcome, &*inner.rule, inner.circuit.timing());
            }
            Engine::Store(storage) => {
                // A store that fails here must not turn the call's own result
                // into an error: the outcome is lost, the call's result kept.
                let _ = storage.record(&inner.circuit, permit, outcome, &*inner.rule);
            }
        }
    }

    /// The circuit's state, as its storage sees it now.
    ///
    /// # Errors
    ///
    /// The storage's error, if it failed.
    pub fn state(&self) -> Result<State, StorageError> {
        match &self.inner.engine {
            Engine::Local(local) => Ok(local.state(self.inner.circuit.timing())),
            Engine::Store(storage) => storage.state(&self.inner.circuit),
        }
    }

    /// The failures (and requests, if the rule counts them) of the current
    /// window.
    ///
    /// # Errors
    ///
    /// The storage's error, if it failed.
    pub fn counts(&self) -> Result<Counts, StorageError> {
        match &self.inner.engine {
            Engine::Local(local) => Ok(local.counts()),
            Engine::Store(storage) => storage.counts(&self.inner.circuit),
        }
    }

    /// Closes the circuit and clears its counters by deleting this
    /// breaker's keys, and nothing else.
    ///
    /// # Errors
    ///
    /// The storage's error, if it failed.
    pub fn reset(&self) -> Result<(), StorageError> {
        match &self.inner.engine {
            Engine::Local(local) => {
                local.circuit.reset();
                Ok(())
            }
            Engine::Store(storage) => storage.reset(&self.inner.circuit),
        }
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        let mut d = f.debug_struct("CircuitBreaker");
        d.field("name", inner.circuit.name())
            .field("rule", &inner.rule)
            .field("timing", inner.circuit.timing());
        match &inner.engine {
            Engine::Local(_) => d.field("storage", &"in-process"),
            Engine::Store(storage) => d.field("storage", storage),
        };
        d.finish()
    }
}
