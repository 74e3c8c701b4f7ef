//! What the sync and async facades share: a breaker's parts and every
//! decision that needs no storage round trip.
//!
//! A facade owns a [`BreakerCore`] and does only what differs between
//! blocking and async code: calling the storage's fused steps (with or
//! without `.await`). Everything else (the lock-free path of in-process
//! circuits, the open-deadline cache of shared ones, turning a rejection
//! into an [`Error`]) lives here, once.

use alloc::sync::Arc;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use lasier_rules::{Counts, Rule};

use crate::clock::{now_ms, Clock};
use crate::config::Circuit;
use crate::error::{Error, StorageError};
use crate::local::LocalBinding;
use crate::state::{Admission, Outcome, Permit, State, Transition};

/// Where a breaker's circuit lives.
pub enum Engine<S: ?Sized> {
    /// In this process: the lock-free circuit of an in-process storage.
    Local(LocalBinding),
    /// In a store, reached through its fused steps.
    Store(Arc<S>),
}

impl<S: ?Sized + fmt::Debug> fmt::Debug for Engine<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(_) => f.write_str("in-process"),
            Self::Store(storage) => storage.fmt(f),
        }
    }
}

/// A breaker's parts, shared by both facades. `S` is the storage trait
/// object (`dyn Storage` or `dyn AsyncStorage`).
pub struct BreakerCore<S: ?Sized> {
    circuit: Circuit,
    rule: Arc<dyn Rule>,
    engine: Engine<S>,
    clock: Arc<dyn Clock>,
    /// For a store engine: until when (ms on `clock`, exclusive) the store
    /// said the circuit is open; 0 when unknown. Rejections before then
    /// cost no round trip.
    open_until: AtomicU64,
}

impl<S: ?Sized> BreakerCore<S> {
    /// The parts of a breaker; `clock` times the open-deadline cache of a
    /// store engine.
    pub fn new(
        circuit: Circuit,
        rule: Arc<dyn Rule>,
        engine: Engine<S>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            circuit,
            rule,
            engine,
            clock,
            open_until: AtomicU64::new(0),
        }
    }

    /// The circuit: name, keys and timing.
    pub fn circuit(&self) -> &Circuit {
        &self.circuit
    }

    /// The rule.
    pub fn rule(&self) -> &dyn Rule {
        &*self.rule
    }

    /// Where the circuit lives.
    pub fn engine(&self) -> &Engine<S> {
        &self.engine
    }

    /// The store, for a store engine.
    pub fn store(&self) -> Option<&Arc<S>> {
        match &self.engine {
            Engine::Store(store) => Some(store),
            Engine::Local(_) => None,
        }
    }

    /// Admission without a store round trip, when possible: always for an
    /// in-process circuit, and for a shared one while the open deadline it
    /// last read has not passed. `None`: ask the store, then pass its answer
    /// to [`admitted`](Self::admitted).
    #[inline]
    pub fn try_admit(&self) -> Option<Result<Permit, Error>> {
        match &self.engine {
            Engine::Local(local) => {
                let (admission, _transition) = local.admit(self.circuit.timing());
                Some(self.decide(admission))
            }
            Engine::Store(_) => {
                let until = self.open_until.load(Ordering::Acquire);
                if until == 0 {
                    return None;
                }
                let now = now_ms(&*self.clock);
                if now < until {
                    return Some(Err(self.rejected(Some(Duration::from_millis(until - now)))));
                }
                // The deadline has passed: ask the store again.
                let _ =
                    self.open_until
                        .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Acquire);
                None
            }
        }
    }

    /// The store's answer to an admission.
    pub fn admitted(
        &self,
        answer: Result<(Admission, Option<Transition>), StorageError>,
    ) -> Result<Permit, Error> {
        let (admission, _transition) = answer?;
        if let Admission::Rejected {
            retry_after: Some(after),
        } = admission
        {
            let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
            let until = now_ms(&*self.clock).saturating_add(ms).max(1);
            self.open_until.store(until, Ordering::Release);
        }
        self.decide(admission)
    }

    #[inline]
    fn decide(&self, admission: Admission) -> Result<Permit, Error> {
        match admission {
            Admission::Admitted(permit) => Ok(permit),
            Admission::Rejected { retry_after } => Err(self.rejected(retry_after)),
        }
    }

    /// The error of a rejected call.
    pub fn rejected(&self, retry_after: Option<Duration>) -> Error {
        Error::rejected(self.circuit.name(), retry_after)
    }

    /// Records an outcome without a store round trip, for an in-process
    /// circuit. Returns `false` for a store engine: call the store's
    /// `record`, then [`recorded`](Self::recorded).
    #[inline]
    pub fn try_record(&self, permit: Permit, outcome: Outcome) -> bool {
        match &self.engine {
            Engine::Local(local) => {
                // The commonest outcome, decided without touching the
                // circuit: a success on a closed circuit whose rule does
                // not count requests changes nothing.
                if permit == Permit::Normal
                    && outcome == Outcome::Success
                    && !self.circuit.counts_requests()
                {
                    return true;
                }
                local.record(permit, outcome, &*self.rule, self.circuit.timing());
                true
            }
            Engine::Store(_) => false,
        }
    }

    /// Gives back the permit of a call that ended without a verdict (an
    /// async call dropped before it completed), without a store round trip,
    /// for an in-process circuit: a half-open trial slot is freed and
    /// nothing is counted. Returns `false` for a store engine, whose
    /// `release` step needs a round trip.
    #[inline]
    pub fn try_release(&self, permit: Permit) -> bool {
        match &self.engine {
            Engine::Local(local) => {
                local.circuit.release(permit);
                true
            }
            Engine::Store(_) => false,
        }
    }

    /// The store's answer to a record step.
    pub fn recorded(&self, answer: Result<Option<Transition>, StorageError>) {
        // A store that fails here must not turn the call's own result into
        // an error: the outcome is lost, the call's result is kept.
        if let Ok(Some(Transition {
            to: State::Closed, ..
        })) = answer
        {
            self.open_until.store(0, Ordering::Release);
        }
    }

    /// The state of an in-process circuit; `None` for a store engine.
    pub fn local_state(&self) -> Option<State> {
        match &self.engine {
            Engine::Local(local) => Some(local.state(self.circuit.timing())),
            Engine::Store(_) => None,
        }
    }

    /// The counts of an in-process circuit; `None` for a store engine.
    pub fn local_counts(&self) -> Option<Counts> {
        match &self.engine {
            Engine::Local(local) => Some(local.counts()),
            Engine::Store(_) => None,
        }
    }

    /// Resets an in-process circuit, or forgets the cached open deadline of
    /// a shared one (whose keys the facade then deletes). Returns whether
    /// the reset is complete.
    pub fn local_reset(&self) -> bool {
        self.open_until.store(0, Ordering::Release);
        match &self.engine {
            Engine::Local(local) => {
                local.circuit.reset();
                true
            }
            Engine::Store(_) => false,
        }
    }
}

impl<S: ?Sized + fmt::Debug> fmt::Debug for BreakerCore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", self.circuit.name())
            .field("rule", &self.rule)
            .field("timing", self.circuit.timing())
            .field("storage", &self.engine)
            .finish()
    }
}
