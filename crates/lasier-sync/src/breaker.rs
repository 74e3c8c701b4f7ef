use std::fmt;
use std::sync::Arc;

use lasier_core::{
    BreakerCore, Counts, Error, Gate, Manual, Metrics, Outcome, Recorded, State, Steps, Storage,
    StorageError, StorageErrorKind, SyncItem, Ticket,
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
    core: Arc<BreakerCore<dyn Storage>>,
    /// In sync mode: pushes what is pending when the last clone goes.
    _flush_on_drop: Option<Arc<FlushOnDrop>>,
}

/// Held by every clone of a breaker in sync mode; the last one pushes the
/// pending outcomes to the store.
struct FlushOnDrop(Arc<BreakerCore<dyn Storage>>);

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        // Best effort: an error was reported to the listeners.
        let _ = flush(&self.0);
    }
}

impl CircuitBreaker {
    /// Starts building a breaker for the circuit `name` (also its key in
    /// the store).
    pub fn builder(name: impl Into<String>) -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::new(name)
    }

    pub(crate) fn core(&self) -> &BreakerCore<dyn Storage> {
        &self.core
    }

    pub(crate) fn from_core(core: BreakerCore<dyn Storage>) -> Self {
        let core = Arc::new(core);
        crate::registrar::register_if_due(&core);
        let flush_on_drop = core.sync_period().map(|_| {
            crate::syncer::register(&core);
            Arc::new(FlushOnDrop(Arc::clone(&core)))
        });
        Self {
            core,
            _flush_on_drop: flush_on_drop,
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        self.core.circuit().name()
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
        let ticket = match self.core.admit_closed() {
            Some(ticket) => ticket,
            // The phase is not loaded twice on a rejection, and its error
            // is built here, not moved out of the layers that decided it.
            None => match self.core.try_admit_slow() {
                Gate::Pass(ticket) => ticket,
                Gate::Reject(retry_after) => return Err(self.core.open_error(retry_after)),
                Gate::AskStore => self.admit_from_store().map_err(Error::cast)?,
            },
        };
        // Counts a panic in `f` as a failure; forgotten when `f` returns.
        let on_panic = Guard::new(self, ticket);
        let result = f();
        // The predicate runs while the guard is armed: if it panics, the
        // call still ends (as a failure) and its permit is not lost.
        let (outcome, ignored) = match &result {
            Err(e) if is_failure(e) => (Outcome::Failure, false),
            Err(_) => (Outcome::Success, true),
            Ok(_) => (Outcome::Success, false),
        };
        let started = on_panic.disarm();
        self.record(ticket, self.core.outcome_of(outcome, ignored, started));
        result.map_err(Error::Inner)
    }

    /// Asks to run a call and returns a [`Guard`] to report its outcome on.
    ///
    /// # Errors
    ///
    /// [`Error::Open`] if the circuit is open, [`Error::Storage`] if the
    /// storage failed.
    #[inline]
    pub fn enter(&self) -> Result<Guard<'_>, Error> {
        Ok(Guard::new(self, self.admit()?))
    }

    #[inline]
    fn admit(&self) -> Result<Ticket, Error> {
        match self.core.try_admit() {
            Gate::Pass(ticket) => Ok(ticket),
            Gate::Reject(retry_after) => Err(self.core.open_error(retry_after)),
            Gate::AskStore => self.admit_from_store(),
        }
    }

    #[cold]
    fn admit_from_store(&self) -> Result<Ticket, Error> {
        crate::registrar::register_if_due(&self.core);
        let core = &*self.core;
        if core.sync_first() {
            // A stale mirror (sync mode): refreshed first, then asked again.
            // (an error went to the listeners and the policy, which
            // decides this call below)
            let _ = sync_held(core);
            match core.try_admit() {
                Gate::Pass(ticket) => return Ok(ticket),
                Gate::Reject(retry_after) => return Err(core.open_error(retry_after)),
                Gate::AskStore => {}
            }
        }
        let Some(store) = core.store() else {
            return Err(core.open_error(None));
        };
        let asked_at = core.now_ms();
        let answer = store.admit(core.circuit());
        repair_if_corrupt(&**store, core, answer.as_ref().err());
        core.admitted(asked_at, answer)
    }

    #[inline]
    pub(crate) fn record(&self, ticket: Ticket, outcome: Outcome) {
        match self.core.try_record(ticket, outcome) {
            Recorded::Done => {}
            Recorded::InStore => self.record_in_store(ticket, outcome),
            Recorded::SyncNow => {
                // (an error went to the listeners and the policy)
                let _ = sync_held(&self.core);
            }
        }
    }

    /// In sync mode (`sync_interval`): pushes the outcomes this process
    /// has counted and not yet sent, and refreshes the circuit's state
    /// from the store, now (after any sync in flight). A no-op otherwise.
    /// Dropping the last clone of the breaker does the same.
    ///
    /// # Errors
    ///
    /// The storage's error: the outcomes are kept for the next sync.
    pub fn flush(&self) -> Result<(), StorageError> {
        flush(&self.core)
    }

    #[inline(never)]
    fn record_in_store(&self, ticket: Ticket, outcome: Outcome) {
        let core = &*self.core;
        if let Some(store) = core.store() {
            let asked_at = core.now_ms();
            let answer = store.record(core.circuit(), ticket.permit(), outcome, core.rule());
            repair_if_corrupt(&**store, core, answer.as_ref().err());
            core.recorded(ticket, outcome, asked_at, answer);
        }
    }

    /// Whether the store failed and calls are protected by the in-process
    /// fallback circuit until it answers again
    /// ([`StorageFailurePolicy::LocalFallback`](crate::StorageFailurePolicy)).
    pub fn in_fallback(&self) -> bool {
        self.core.in_fallback()
    }

    /// The circuit's state, as its storage sees it now.
    ///
    /// # Errors
    ///
    /// The storage's error, if it failed.
    pub fn state(&self) -> Result<State, StorageError> {
        match (self.core.local_state(), self.core.store()) {
            (Some(state), _) => Ok(state),
            (None, Some(store)) => store.state(self.core.circuit()),
            (None, None) => Ok(State::Closed),
        }
    }

    /// The failures (and requests, if the rule counts them) of the current
    /// window.
    ///
    /// # Errors
    ///
    /// The storage's error, if it failed.
    ///
    /// In sync mode: the store's counts plus those this process has not
    /// pushed yet.
    pub fn counts(&self) -> Result<Counts, StorageError> {
        match (self.core.local_counts(), self.core.store()) {
            (Some(counts), _) => Ok(counts),
            (None, Some(store)) => {
                let counts = store.counts(self.core.circuit())?;
                let pending = self.core.pending().unwrap_or_default();
                Ok(Counts::new(
                    counts.failures.saturating_add(pending.failures),
                    counts.requests.saturating_add(pending.requests),
                ))
            }
            (None, None) => Ok(Counts::default()),
        }
    }

    /// Opens the circuit by hand (isolates the dependency): every call is
    /// rejected until [`force_close`](Self::force_close). On a shared store
    /// every breaker sharing the circuit sees it, and so does a Python
    /// `lasier` service (the original's open flag is set, without a TTL).
    ///
    /// # Errors
    ///
    /// The storage's error: the circuit may not have changed.
    pub fn force_open(&self) -> Result<(), StorageError> {
        self.set_manual(Manual::ForceOpen)
    }

    /// Closes the circuit by hand and empties its counters; ends a forced
    /// open or a disable.
    ///
    /// # Errors
    ///
    /// The storage's error: the circuit may not have changed.
    pub fn force_close(&self) -> Result<(), StorageError> {
        self.set_manual(Manual::Close)
    }

    /// Switches the breaker off by hand: every call passes, outcomes are
    /// still counted (for metrics) but never open the circuit, until
    /// [`force_close`](Self::force_close).
    ///
    /// # Errors
    ///
    /// The storage's error: the circuit may not have changed.
    pub fn disable(&self) -> Result<(), StorageError> {
        self.set_manual(Manual::Disable)
    }

    fn set_manual(&self, manual: Manual) -> Result<(), StorageError> {
        let core = self.core();
        if core.try_set_manual(manual) {
            return Ok(());
        }
        match core.store() {
            Some(store) => {
                let answer = store.set_manual(core.circuit(), manual);
                core.manual_set(manual, answer)
            }
            None => Ok(()),
        }
    }

    /// The breaker's figures now: state, counts of the current window,
    /// calls rejected and slow, time until half-open, and whether it is in
    /// fallback. It never fails: when the store does not answer, the state
    /// and counts are the last this breaker read, and
    /// [`store_error`](Metrics::store_error) says why (the error itself goes
    /// to the listeners' `on_storage_error`). It then takes up to the
    /// store's step timeout.
    pub fn metrics(&self) -> Metrics {
        match self.state() {
            Ok(state) => self.core.metrics_read(Ok(state), Some(self.counts())),
            Err(error) => self.core.metrics_read(Err(error), None),
        }
    }

    /// Closes the circuit and clears its counters by deleting this
    /// breaker's keys, and nothing else.
    ///
    /// # Errors
    ///
    /// The storage's error, if it failed.
    pub fn reset(&self) -> Result<(), StorageError> {
        match (self.core.local_reset(), self.core.store()) {
            (false, Some(store)) => store.reset(self.core.circuit()),
            _ => Ok(()),
        }
    }
}

/// Runs the sync the caller holds (sync mode): one store step with the
/// pending outcomes, whose answer refreshes the mirror.
/// The store's error is returned once the listeners and the policy heard
/// it.
pub(crate) fn sync_held(core: &BreakerCore<dyn Storage>) -> Result<(), StorageError> {
    let (Some(store), Some(batch)) = (core.store(), core.sync_begin()) else {
        return Ok(());
    };
    let answer = store.sync(core.circuit(), &core.sync_batch(&batch), core.rule());
    repair_if_corrupt(&**store, core, answer.as_ref().err());
    core.synced(batch, answer)
}

/// Runs the syncs the caller holds of several breakers on one storage
/// (a background pass): one pipelined round trip where the storage can.
pub(crate) fn sync_many_held(cores: &[&BreakerCore<dyn Storage>]) {
    let Some(store) = cores.first().and_then(|core| core.store()) else {
        return;
    };
    let batches: Vec<_> = cores
        .iter()
        .filter_map(|core| core.sync_begin().map(|batch| (*core, batch)))
        .collect();
    let items: Vec<SyncItem<'_>> = batches
        .iter()
        .map(|(core, batch)| SyncItem::new(core.circuit(), core.sync_batch(batch), core.rule()))
        .collect();
    let answers = store.sync_many(&items);
    for ((core, batch), answer) in batches.iter().zip(answers) {
        repair_if_corrupt(&**store, core, answer.as_ref().err());
        // (an error went to the listeners and the policy)
        let _ = core.synced(*batch, answer);
    }
}

/// Syncs now, after the sync in flight if there is one.
fn flush(core: &BreakerCore<dyn Storage>) -> Result<(), StorageError> {
    if core.store().is_none() || core.sync_period().is_none() {
        return Ok(());
    }
    // The sync in flight ends within the store's step timeout.
    while !core.sync_claim() {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    sync_held(core)
}

/// After a `Corrupt` error, deletes the circuit's keys that hold garbage, so
/// that the next window starts clean.
fn repair_if_corrupt(
    store: &dyn Storage,
    core: &BreakerCore<dyn Storage>,
    error: Option<&StorageError>,
) {
    if error.is_some_and(|e| e.kind() == StorageErrorKind::Corrupt) {
        // Best effort: the error is reported through the policy already.
        let _ = store.repair(core.circuit());
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.fmt(f)
    }
}
