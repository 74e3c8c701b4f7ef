use std::fmt;
use std::future::Future;
use std::sync::Arc;

use std::sync::atomic::{AtomicBool, Ordering};

use lasier_core::{
    AsyncSteps, AsyncStorage, BreakerCore, Counts, Error, Gate, Manual, Metrics, Outcome, Permit,
    Recorded, State, StorageError, StorageErrorKind, SyncItem, Ticket, Transition,
};

use crate::builder::CircuitBreakerBuilder;
use crate::guard::Guard;

/// A circuit breaker for async code.
///
/// One concrete type whatever its rule and storage, so it fits in a struct
/// field or a `static` without generics. Cloning is cheap and clones share
/// one breaker. It is `Send + Sync`, and the futures of its methods are
/// `Send` whenever the guarded future is: share it between tasks through a
/// clone, an `Arc` or a `&'static`. It needs no runtime of its own. On a
/// shared store it spawns a short task, a window apart, on the tokio
/// runtime it is used in, to write its entry in the store's directory of
/// circuits; in sync mode, one task per storage for the background syncs.
#[derive(Clone)]
pub struct CircuitBreaker {
    parts: Arc<Parts>,
}

pub(crate) struct Parts {
    pub(crate) core: BreakerCore<dyn AsyncStorage>,
    /// Store engine only: trial permits of cancelled calls, given back to the
    /// store by the next admission that asks it.
    cancelled: CancelledTrials,
    /// Sync mode: whether the background task syncs it.
    registered: AtomicBool,
}

impl Parts {
    /// Runs the sync the caller holds (sync mode): one store step with the
    /// pending outcomes, whose answer refreshes the mirror.
    pub(crate) async fn sync_held(&self) -> Result<(), StorageError> {
        let core = &self.core;
        let (Some(store), Some(batch)) = (core.store(), core.sync_begin()) else {
            return Ok(());
        };
        // A caller that gives up on the call (a timeout around it) must not
        // keep the breaker's sync for ever.
        let held = Held::new(core, vec![batch]);
        let answer = store
            .sync(core.circuit(), &core.sync_batch(&batch), core.rule())
            .await;
        held.done();
        let corrupt = is_corrupt(answer.as_ref().err());
        let result = core.synced(batch, answer);
        if corrupt {
            let _ = store.repair(core.circuit()).await;
        }
        result
    }
}

/// Syncs taken and not answered yet: ended without an answer (their batches
/// kept for the next sync) if the future running them is dropped.
struct Held<'a> {
    core: &'a BreakerCore<dyn AsyncStorage>,
    batches: Vec<lasier_core::engine::Batch>,
}

impl<'a> Held<'a> {
    fn new(
        core: &'a BreakerCore<dyn AsyncStorage>,
        batches: Vec<lasier_core::engine::Batch>,
    ) -> Self {
        Self { core, batches }
    }

    /// The answers came: nothing to give back.
    fn done(mut self) {
        self.batches.clear();
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        for batch in self.batches.drain(..) {
            self.core.sync_cancelled(batch);
        }
    }
}

fn is_corrupt(error: Option<&StorageError>) -> bool {
    error.is_some_and(|e| e.kind() == StorageErrorKind::Corrupt)
}

/// Runs the syncs the caller holds of several breakers on one storage
/// (a background pass): one pipelined round trip where the storage can.
pub(crate) async fn sync_many_held(all: &[&Parts]) {
    let Some(store) = all.first().and_then(|parts| parts.core.store()) else {
        return;
    };
    let batches: Vec<_> = all
        .iter()
        .filter_map(|parts| parts.core.sync_begin().map(|batch| (&parts.core, batch)))
        .collect();
    let items: Vec<SyncItem<'_>> = batches
        .iter()
        .map(|(core, batch)| SyncItem::new(core.circuit(), core.sync_batch(batch), core.rule()))
        .collect();
    // (each breaker's own, for the guard)
    let held: Vec<Held<'_>> = batches
        .iter()
        .map(|(core, batch)| Held::new(core, vec![*batch]))
        .collect();
    let answers = store.sync_many(&items).await;
    held.into_iter().for_each(Held::done);
    let mut corrupt = Vec::new();
    for ((core, batch), answer) in batches.iter().zip(answers) {
        if is_corrupt(answer.as_ref().err()) {
            corrupt.push(*core);
        }
        // (an error went to the listeners and the policy)
        let _ = core.synced(*batch, answer);
    }
    for core in corrupt {
        let _ = store.repair(core.circuit()).await;
    }
}

impl Drop for Parts {
    /// Sync mode: pushes what is pending, in a task of the current tokio
    /// runtime (there is none to await here). Without a runtime, or if the
    /// runtime shuts down first, it is lost: call `flush().await` before.
    fn drop(&mut self) {
        let core = &self.core;
        let pending = core.pending().unwrap_or_default();
        if pending.failures == 0 && pending.requests == 0 {
            return;
        }
        let (Some(store), Ok(runtime)) = (core.store(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        if !core.sync_claim() {
            // A sync in flight holds the breaker alive; it will not end
            // here.
            return;
        }
        let Some(batch) = core.sync_begin() else {
            return;
        };
        let (store, circuit, rule) = (
            Arc::clone(store),
            core.circuit().clone(),
            core.shared_rule(),
        );
        let writer_key = core.sync_batch(&batch).writer_key().to_owned();
        runtime.spawn(async move {
            // Best effort: nobody is left to hear an error.
            let batch = lasier_core::SyncBatch::new(&writer_key, batch.parts());
            let _ = store.sync(&circuit, &batch, &*rule).await;
        });
    }
}

impl CircuitBreaker {
    /// Starts building a breaker for the circuit `name` (also its key in
    /// the store).
    pub fn builder(name: impl Into<String>) -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::new(name)
    }

    pub(crate) fn from_core(core: BreakerCore<dyn AsyncStorage>) -> Self {
        let parts = Arc::new(Parts {
            core,
            cancelled: CancelledTrials::default(),
            registered: AtomicBool::new(false),
        });
        crate::registrar::register_if_due(&parts);
        Self { parts }
    }

    pub(crate) fn core(&self) -> &BreakerCore<dyn AsyncStorage> {
        &self.parts.core
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        self.core().circuit().name()
    }

    /// Runs `future` unless the circuit is open; every `Err` counts as a
    /// failure. When the circuit is open, `future` is dropped without being
    /// polled.
    ///
    /// If the returned future is dropped before it completes (a timeout, a
    /// `select!` branch that lost), the call is cancelled: nothing is
    /// recorded and a half-open trial permit is given back (see [`Guard`]).
    /// To count a timeout as a failure, put the timeout inside:
    /// `breaker.call(async { tokio::time::timeout(d, f).await.map_err(..)? })`.
    ///
    /// # Errors
    ///
    /// [`Error::Open`] if the circuit rejected the call (`future` did not
    /// run), [`Error::Inner`] with `future`'s own error, or
    /// [`Error::Storage`] if the storage failed before `future` could be
    /// admitted.
    #[inline]
    pub async fn call<T, E, F>(&self, future: F) -> Result<T, Error<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        self.call_filtered(|_: &E| true, future).await
    }

    /// Runs `future` unless the circuit is open; only errors for which
    /// `is_failure` holds count as failures (the original's
    /// `catch_exceptions`). Other errors are returned all the same, counted
    /// as a request but not as a failure.
    ///
    /// ```
    /// use lasier_async::CircuitBreaker;
    ///
    /// #[derive(Debug)]
    /// enum ApiError { NotFound, Unavailable }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let breaker = CircuitBreaker::builder("api").max_failures(1).build()?;
    /// let _ = breaker
    ///     .call_filtered(|e| matches!(e, ApiError::Unavailable), async {
    ///         Err::<(), _>(ApiError::NotFound)
    ///     })
    ///     .await;
    /// assert_eq!(breaker.state().await?, lasier_async::State::Closed);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub async fn call_filtered<T, E, P, F>(&self, is_failure: P, future: F) -> Result<T, Error<E>>
    where
        P: FnOnce(&E) -> bool,
        F: Future<Output = Result<T, E>>,
    {
        let (ticket, period) = match self.core().admit_closed() {
            Some(ticket) => (ticket, 0),
            // The phase is not loaded twice on a rejection, its error is
            // built here, and no future is made unless the store is asked.
            None => match self.core().try_admit_slow() {
                Gate::Pass(ticket) => (ticket, 0),
                Gate::Reject(retry_after) => return Err(self.core().open_error(retry_after)),
                Gate::AskStore => self.admit_from_store().await.map_err(Error::cast)?,
            },
        };
        // Cancels the call if this future is dropped while `future` runs,
        // and counts a panic in `future` as a failure (the unwinding drops
        // it); disarmed when `future` returns.
        let in_flight = Guard::new(self, ticket, period);
        let result = future.await;
        // The predicate runs while the guard is armed: if it panics, the
        // call still ends (as a failure) and its permit is not lost.
        let (outcome, ignored) = match &result {
            Err(e) if is_failure(e) => (Outcome::Failure, false),
            Err(_) => (Outcome::Success, true),
            Ok(_) => (Outcome::Success, false),
        };
        let outcome = self.core().outcome_of(outcome, ignored, in_flight.disarm());
        // Decided here when it can be (an in-process circuit): the store's
        // future is only built, and awaited, for a shared one.
        match self.core().try_record(ticket, outcome) {
            Recorded::Done => {}
            Recorded::InStore => self.record_in_store(ticket, outcome).await,
            Recorded::SyncNow => {
                let _ = self.parts.sync_held().await;
            }
        }
        result.map_err(Error::Inner)
    }

    /// Asks to run a call and returns a [`Guard`] to report its outcome on.
    ///
    /// # Errors
    ///
    /// [`Error::Open`] if the circuit is open, [`Error::Storage`] if the
    /// storage failed.
    #[inline]
    pub async fn enter(&self) -> Result<Guard<'_>, Error> {
        let (ticket, period) = self.admit().await?;
        Ok(Guard::new(self, ticket, period))
    }

    /// A permit, and the count of ended half-open periods it was taken at.
    #[inline]
    async fn admit(&self) -> Result<(Ticket, u32), Error> {
        match self.core().try_admit() {
            Gate::Pass(ticket) => Ok((ticket, 0)),
            Gate::Reject(retry_after) => Err(self.core().open_error(retry_after)),
            Gate::AskStore => self.admit_from_store().await,
        }
    }

    #[cold]
    async fn admit_from_store(&self) -> Result<(Ticket, u32), Error> {
        crate::registrar::register_if_due(&self.parts);
        let core = self.core();
        let Some(store) = core.store() else {
            return Err(core.open_error(None));
        };
        if core.sync_first() {
            // A stale mirror (sync mode; a new breaker's too): refreshed
            // first, then asked again.
            if !self.parts.registered.load(Ordering::Relaxed)
                && crate::syncer::register(&self.parts)
            {
                self.parts.registered.store(true, Ordering::Relaxed);
            }
            let _ = self.parts.sync_held().await;
            match core.try_admit() {
                Gate::Pass(ticket) => return Ok((ticket, 0)),
                Gate::Reject(retry_after) => return Err(core.open_error(retry_after)),
                Gate::AskStore => {}
            }
        }
        let cancelled = &self.parts.cancelled;
        for (permit, count) in cancelled.take() {
            for _ in 0..count {
                // A store that fails here only delays the slot: the trial
                // key's TTL frees it.
                let _ = store.release(core.circuit(), permit).await;
            }
        }
        let asked_at = core.now_ms();
        let answer = store.admit(core.circuit()).await;
        repair_if_corrupt(&**store, core, answer.as_ref().err()).await;
        if let Ok((
            _,
            Some(Transition {
                to: State::HalfOpen,
                ..
            }),
        )) = answer
        {
            // A new half-open period: permits of earlier ones are stale.
            // (Also reported when the permit given back above was the
            // period's only one; its other permits then wait for the TTL.)
            cancelled.end_period();
        }
        let ticket = core.admitted(asked_at, answer)?;
        Ok((ticket, cancelled.period()))
    }

    #[inline]
    pub(crate) async fn record(&self, ticket: Ticket, outcome: Outcome) {
        match self.core().try_record(ticket, outcome) {
            Recorded::Done => {}
            Recorded::InStore => self.record_in_store(ticket, outcome).await,
            Recorded::SyncNow => {
                let _ = self.parts.sync_held().await;
            }
        }
    }

    /// In sync mode (`sync_interval`): pushes the outcomes this process
    /// has counted and not yet sent, and refreshes the circuit's state
    /// from the store, now (after any sync in flight). A no-op otherwise.
    /// Dropping the last clone of the breaker starts the same in a task.
    ///
    /// # Errors
    ///
    /// The storage's error: the outcomes are kept for the next sync.
    pub async fn flush(&self) -> Result<(), StorageError> {
        let core = self.core();
        if core.sync_period().is_none() {
            return Ok(());
        }
        // The sync in flight ends within the store's step timeout.
        while !core.sync_claim() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        self.parts.sync_held().await
    }

    /// The record step on the store, for an outcome that
    /// [`try_record`](lasier_core::BreakerCore::try_record) left to it.
    async fn record_in_store(&self, ticket: Ticket, outcome: Outcome) {
        let core = self.core();
        if let Some(store) = core.store() {
            let asked_at = core.now_ms();
            let answer = store
                .record(core.circuit(), ticket.permit(), outcome, core.rule())
                .await;
            repair_if_corrupt(&**store, core, answer.as_ref().err()).await;
            if let Ok(Some(Transition {
                from: State::HalfOpen,
                ..
            })) = answer
            {
                // The half-open period is over: the slots of its cancelled
                // trials are gone with it, giving them back would free slots
                // of the next period.
                self.parts.cancelled.end_period();
            }
            core.recorded(ticket, outcome, asked_at, answer);
        }
    }

    /// Whether the store failed and calls are protected by the in-process
    /// fallback circuit until it answers again
    /// ([`StorageFailurePolicy::LocalFallback`](crate::StorageFailurePolicy)).
    pub fn in_fallback(&self) -> bool {
        self.core().in_fallback()
    }

    /// A guard dropped without a verdict: `period` as its admission returned
    /// it, `panicking` if the thread is unwinding.
    pub(crate) fn abandon(
        &self,
        ticket: Ticket,
        period: u32,
        panicking: bool,
        started: Option<std::time::Duration>,
    ) {
        let core = self.core();
        // As in the sync facade, a panic under the guard is a failure (and
        // a call that ended, for listeners); the store engine cannot await
        // its record here. A cancellation ends no call: nothing is told.
        if panicking {
            let outcome = core.outcome_of(Outcome::Failure, false, started);
            match core.try_record(ticket, outcome) {
                Recorded::Done => return,
                // (the next call or the background sync pushes it)
                Recorded::SyncNow => {
                    // Nothing can be awaited here: the failure stays
                    // pending for the next sync.
                    core.sync_give_up();
                    return;
                }
                Recorded::InStore => {}
            }
        }
        if core.try_release(ticket) {
            return;
        }
        if let Permit::Trial { episode } = ticket.permit() {
            self.parts.cancelled.push(episode, period);
        }
    }

    /// The circuit's state, as its storage sees it now.
    ///
    /// # Errors
    ///
    /// The storage's error, if it failed.
    pub async fn state(&self) -> Result<State, StorageError> {
        let core = self.core();
        match (core.local_state(), core.store()) {
            (Some(state), _) => Ok(state),
            (None, Some(store)) => store.state(core.circuit()).await,
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
    pub async fn counts(&self) -> Result<Counts, StorageError> {
        let core = self.core();
        match (core.local_counts(), core.store()) {
            (Some(counts), _) => Ok(counts),
            (None, Some(store)) => {
                let counts = store.counts(core.circuit()).await?;
                let pending = core.pending().unwrap_or_default();
                Ok(Counts::new(
                    counts.failures.saturating_add(pending.failures),
                    counts.requests.saturating_add(pending.requests),
                ))
            }
            (None, None) => Ok(Counts::default()),
        }
    }

    /// Opens the circuit by hand (isolates the dependency): every call is
    /// rejected until [`force_close`](Self::force_close). On a parts store
    /// every breaker sharing the circuit sees it, and so does a Python
    /// `lasier` service (the original's open flag is set, without a TTL).
    ///
    /// # Errors
    ///
    /// The storage's error: the circuit may not have changed.
    pub async fn force_open(&self) -> Result<(), StorageError> {
        self.set_manual(Manual::ForceOpen).await
    }

    /// Closes the circuit by hand and empties its counters; ends a forced
    /// open or a disable.
    ///
    /// # Errors
    ///
    /// The storage's error: the circuit may not have changed.
    pub async fn force_close(&self) -> Result<(), StorageError> {
        self.set_manual(Manual::Close).await
    }

    /// Switches the breaker off by hand: every call passes, outcomes are
    /// still counted (for metrics) but never open the circuit, until
    /// [`force_close`](Self::force_close).
    ///
    /// # Errors
    ///
    /// The storage's error: the circuit may not have changed.
    pub async fn disable(&self) -> Result<(), StorageError> {
        self.set_manual(Manual::Disable).await
    }

    async fn set_manual(&self, manual: Manual) -> Result<(), StorageError> {
        let core = self.core();
        if core.try_set_manual(manual) {
            return Ok(());
        }
        match core.store() {
            Some(store) => {
                let answer = store.set_manual(core.circuit(), manual).await;
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
    pub async fn metrics(&self) -> Metrics {
        match self.state().await {
            Ok(state) => {
                let counts = self.counts().await;
                self.core().metrics_read(Ok(state), Some(counts))
            }
            Err(error) => self.core().metrics_read(Err(error), None),
        }
    }

    /// Closes the circuit and clears its counters by deleting this
    /// breaker's keys, and nothing else.
    ///
    /// # Errors
    ///
    /// The storage's error, if it failed.
    pub async fn reset(&self) -> Result<(), StorageError> {
        let core = self.core();
        self.parts.cancelled.end_period();
        match (core.local_reset(), core.store()) {
            (false, Some(store)) => store.reset(core.circuit()).await,
            _ => Ok(()),
        }
    }
}

/// After a `Corrupt` error, deletes the circuit's keys that hold garbage, so
/// that the next window starts clean.
async fn repair_if_corrupt(
    store: &dyn AsyncStorage,
    core: &BreakerCore<dyn AsyncStorage>,
    error: Option<&StorageError>,
) {
    if error.is_some_and(|e| e.kind() == StorageErrorKind::Corrupt) {
        // Best effort: the error is reported through the policy already.
        let _ = store.repair(core.circuit()).await;
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core().fmt(f)
    }
}

/// Half-open trial permits of cancelled calls on a store engine, not given
/// back yet.
///
/// A permit must only go back to the half-open period it was taken in:
/// given back later, it would free a slot of the next period. The store's
/// steps see to that themselves (a trial permit carries the episode of its
/// period, and a release of another episode changes nothing); the breaker
/// also numbers the periods it sees end (a trial's verdict closed or
/// reopened the circuit, an admission started a new period, a reset) and
/// drops the permits of earlier ones, so as not to spend a round trip on
/// each. Periods ended by other processes go unseen; their permits are
/// kept until the next admission, whose releases the store ignores.
///
/// Only store permits land here (an in-process circuit takes its permits
/// back at once), and only when a call is cancelled: a lock is cheap here.
#[derive(Debug, Default)]
struct CancelledTrials {
    pending: std::sync::Mutex<Pending>,
}

/// How many episodes' permits are kept at most: more than one only when
/// periods end unseen (in other processes); the oldest go first.
const KEPT_EPISODES: usize = 4;

#[derive(Debug, Default)]
struct Pending {
    /// The number of half-open periods seen to end.
    period: u32,
    /// (episode, permits) of the current period, oldest first.
    permits: [(u32, u32); KEPT_EPISODES],
    len: usize,
}

impl CancelledTrials {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // Nothing panics while holding it; a poisoned lock is still
        // consistent.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn period(&self) -> u32 {
        self.lock().period
    }

    fn end_period(&self) {
        let mut pending = self.lock();
        pending.period = pending.period.wrapping_add(1);
        pending.len = 0;
    }

    /// Keeps a permit of `episode` taken in `period`, unless that period is
    /// over.
    fn push(&self, episode: u32, period: u32) {
        let mut pending = self.lock();
        if pending.period != period {
            return;
        }
        let len = pending.len;
        if let Some(entry) = pending.permits[..len].iter_mut().find(|e| e.0 == episode) {
            entry.1 = entry.1.saturating_add(1);
            return;
        }
        if len == KEPT_EPISODES {
            pending.permits.rotate_left(1);
            pending.permits[KEPT_EPISODES - 1] = (episode, 1);
        } else {
            pending.permits[len] = (episode, 1);
            pending.len += 1;
        }
    }

    /// The permits to give back: (a permit, how many like it), each
    /// episode once.
    fn take(&self) -> Vec<(Permit, u32)> {
        let mut pending = self.lock();
        let len = std::mem::take(&mut pending.len);
        pending.permits[..len]
            .iter()
            .map(|&(episode, count)| (Permit::Trial { episode }, count))
            .collect()
    }
}
