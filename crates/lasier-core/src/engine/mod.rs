//! What the sync and async facades share: a breaker's parts and every
//! decision that needs no storage round trip.
//!
//! A facade owns a [`BreakerCore`] and does only what differs between
//! blocking and async code: calling the storage's fused steps (with or
//! without `.await`). Everything else lives here, once: the lock-free path
//! of in-process circuits, the open-deadline cache of shared ones, the
//! store-failure policy and its in-process fallback circuit, events, and
//! turning a rejection into an [`Error`].
//!
//! Two parts have files of their own: the open-state cache of a shared
//! circuit (`open_cache.rs`) and the probe timing of the fallback
//! (`probe.rs`).

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use lasier_rules::{Counts, Rule};

use crate::clock::{now_ms, Clock};
use crate::config::{Circuit, Config, StorageFailurePolicy};
use crate::error::{Error, StorageError, StorageErrorKind};
use crate::events::{CallKind, Listener};
use crate::local::{LocalBinding, LocalCircuit};
use crate::state::{Admission, Manual, Outcome, Permit, Snapshot, State, SyncBatch, Transition};

mod mirror;
mod open_cache;
mod probe;
mod tally;

pub use mirror::{Batch, Due};

mod meters;
use meters::Meters;
use mirror::{Mirror, Verdict};
use open_cache::OpenCache;
use probe::Probe;
use tally::Tally;

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

/// Who admitted a call, and so who hears its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// The breaker's own circuit: in-process, or in the store.
    Primary,
    /// The in-process fallback circuit, while the store does not answer.
    Fallback,
    /// Nobody: the store failed and the policy let the call through
    /// uncounted (`FailOpen`).
    Unchecked,
    /// The in-process mirror of a shared circuit, in sync mode: its outcome
    /// is pending until the next sync.
    Mirror,
}

/// Where an outcome went, from [`BreakerCore::try_record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Recorded {
    /// Counted, or nothing to count: done.
    Done,
    /// The store must hear it: call its `record`, then
    /// [`BreakerCore::recorded`].
    InStore,
    /// Counted in the mirror, and the fleet's counts as this process knows
    /// them reach the rule: the caller holds the breaker's sync and must
    /// run it now ([`BreakerCore::sync_begin`]).
    SyncNow,
}

/// What admission decided without the store: small enough to come back
/// in two registers, so that a rejection moves no error through memory
/// until the facade builds it (with [`BreakerCore::open_error`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Gate {
    /// Run the call with this ticket.
    Pass(Ticket),
    /// The call is rejected, with how long until a call may pass again
    /// where known; counted and told to the listeners already.
    Reject(Option<Duration>),
    /// Ask the store, then pass its answer to [`BreakerCore::admitted`].
    AskStore,
}

/// A call's admission: its permit and who granted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    permit: Permit,
    source: Source,
}

impl Ticket {
    /// The permit the call runs under.
    pub fn permit(&self) -> Permit {
        self.permit
    }

    /// Who admitted the call.
    pub fn source(&self) -> Source {
        self.source
    }
}

/// A breaker's parts, shared by both facades. `S` is the storage trait
/// object (`dyn Storage` or `dyn AsyncStorage`).
pub struct BreakerCore<S: ?Sized> {
    circuit: Circuit,
    rule: Arc<dyn Rule>,
    engine: Engine<S>,
    clock: Arc<dyn Clock>,
    policy: StorageFailurePolicy,
    listeners: Vec<Arc<dyn Listener>>,
    /// For a store engine: the open deadline it last read from the store.
    open: OpenCache,
    /// For a store engine under `LocalFallback`: the circuit that protects
    /// calls while the store does not answer. `None` for any other breaker:
    /// a circuit is 768 bytes, too many to carry unused in every in-process
    /// breaker of a registry.
    fallback: Option<Box<LocalCircuit>>,
    /// When the store may be probed, while in fallback.
    probe: Probe,
    /// For a store engine in sync mode: the mirror of the shared circuit.
    mirror: Option<Box<Mirror>>,
    /// Calls this breaker rejected.
    rejected: Tally,
    /// With `slow_call_duration`, or a listener of calls' ends: how calls
    /// are timed. Boxed: most breakers have none, and a registry holds many.
    timed: Option<Box<Timed>>,
    /// For a store engine: the state and counts it last read, for
    /// `metrics()` while the store does not answer.
    known: Option<Box<Known>>,
    /// Its series in the `metrics` facade (feature `metrics`; nothing
    /// otherwise).
    meters: meters::Held,
    /// When (ms on a registry's clock) a registry last handed it out.
    last_used: AtomicU64,
}

/// What a store engine last read of its circuit: the state (0: nothing
/// yet, else `State` + 1) and the counts. The three are stored apart: a
/// reader may see a state and counts of two reads a moment apart, which is
/// all "last known" promises.
#[derive(Debug, Default)]
struct Known {
    state: core::sync::atomic::AtomicU8,
    failures: AtomicU64,
    requests: AtomicU64,
    /// When (ms on the breaker's clock, plus one; 0: never) the breaker
    /// last asked for its directory entry to be written.
    registered: AtomicU64,
}

const KNOWN_STATES: [State; 5] = [
    State::Closed,
    State::Open,
    State::HalfOpen,
    State::ForcedOpen,
    State::Disabled,
];

impl Known {
    fn state(&self) -> Option<State> {
        let code = usize::from(self.state.load(Ordering::Relaxed));
        code.checked_sub(1)
            .and_then(|i| KNOWN_STATES.get(i).copied())
    }

    fn set_state(&self, state: State) {
        if let Some(i) = KNOWN_STATES.iter().position(|known| *known == state) {
            // (at most 5)
            self.state.store(i as u8 + 1, Ordering::Relaxed);
        }
    }

    fn counts(&self) -> Counts {
        Counts::new(
            self.failures.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed),
        )
    }

    fn set_counts(&self, counts: Counts) {
        self.failures.store(counts.failures, Ordering::Relaxed);
        self.requests.store(counts.requests, Ordering::Relaxed);
    }
}

/// How a breaker times its calls: its slow-call limit and the calls it
/// found slow, and whether listeners want each call's end.
#[derive(Debug)]
struct Timed {
    slow_limit: Option<Duration>,
    slow: AtomicU64,
    report: bool,
}

impl Timed {
    /// `None` when nothing needs calls timed.
    fn new(config: &Config) -> Option<Box<Self>> {
        let report = config
            .listeners()
            .iter()
            .any(|listener| listener.wants_call_finished());
        let slow_limit = config.slow_call_limit();
        (report || slow_limit.is_some() || Meters::TIMES_CALLS).then(|| {
            Box::new(Self {
                slow_limit,
                slow: AtomicU64::new(0),
                report,
            })
        })
    }
}

/// A breaker's figures at one instant; from `metrics()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// The circuit's state.
    pub state: State,
    /// Failures and requests (when the rule counts them) in the current
    /// window.
    pub counts: Counts,
    /// Calls this breaker (in this process) rejected since it was built.
    pub rejected: u64,
    /// While open: how long until trial calls may pass, where known.
    pub open_for: Option<Duration>,
    /// Whether the store failed and calls are protected in-process.
    pub in_fallback: bool,
    /// In sync mode: outcomes this process counted but gave up, because
    /// their window ended before a sync could push them (the store was
    /// down all that time). Always 0 otherwise.
    pub dropped: u64,
    /// Calls that succeeded slower than `slow_call_duration`, and so
    /// counted as failures, since the breaker was built (in this process).
    pub slow: u64,
    /// Why `state` and `counts` are not fresh: the store failed to answer
    /// `metrics()` (the whole error went to the listeners'
    /// `on_storage_error`), and they are the last this breaker knew: from a
    /// `metrics()` read, a state change it saw, or (sync mode) a sync
    /// (`Closed` and zero if none). `None`: they are the store's answer
    /// now.
    pub store_error: Option<StorageErrorKind>,
}

impl<S: ?Sized> BreakerCore<S> {
    /// The parts of a breaker. `clock` times the open-deadline cache and the
    /// fallback circuit of a store engine; `config` gives the policy and
    /// listeners.
    pub fn new(
        circuit: Circuit,
        rule: Arc<dyn Rule>,
        engine: Engine<S>,
        clock: Arc<dyn Clock>,
        config: &Config,
    ) -> Self {
        let policy = config.storage_failure_policy();
        let known = matches!(engine, Engine::Store(_)).then(Box::default);
        let meters = meters::held(circuit.name());
        if matches!(engine, Engine::Local(_)) {
            // (a store's circuit is in whatever state the store says)
            meters.state(State::Closed);
        }
        let fallback = (matches!(engine, Engine::Store(_))
            && matches!(policy, StorageFailurePolicy::LocalFallback { .. }))
        .then(|| Box::new(LocalCircuit::for_circuit(&circuit)));
        let mirror = match (&engine, config.sync_period()) {
            (Engine::Store(_), Some(interval)) => Some(Box::new(Mirror::new(
                circuit.name(),
                crate::clock::ceil_millis(interval),
                now_ms(&*clock),
            ))),
            _ => None,
        };
        Self {
            circuit,
            rule,
            engine,
            clock,
            policy,
            listeners: config.listeners().to_vec(),
            open: OpenCache::new(crate::clock::ceil_millis(config.staleness())),
            fallback,
            probe: Probe::new(match config.storage_failure_policy() {
                StorageFailurePolicy::LocalFallback { probe_interval } => {
                    u64::try_from(probe_interval.as_millis()).unwrap_or(u64::MAX)
                }
                _ => 0,
            }),
            mirror,
            rejected: Tally::default(),
            timed: Timed::new(config),
            known,
            meters,
            last_used: AtomicU64::new(0),
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

    /// The rule, to keep beyond the breaker.
    pub fn shared_rule(&self) -> Arc<dyn Rule> {
        Arc::clone(&self.rule)
    }

    /// Where the circuit lives.
    pub fn engine(&self) -> &Engine<S> {
        &self.engine
    }

    /// Whether this breaker's entry in its store's directory of circuits
    /// is due (it was never written, or a window ago): if so, claims it
    /// (one caller gets `true` per window). Always `false` for an
    /// in-process circuit. See [`crate::directory`].
    pub fn registration_due(&self) -> bool {
        let Some(known) = self.known.as_deref() else {
            return false;
        };
        let now = self.now_ms().saturating_add(1);
        let last = known.registered.load(Ordering::Relaxed);
        let window = self.circuit.timing().failure_timeout_ms;
        (last == 0 || now >= last.saturating_add(window))
            && known
                .registered
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// This breaker's entry in its store's directory of circuits.
    pub fn registration(&self) -> crate::directory::Registration {
        crate::directory::Registration::of(&self.circuit, &*self.rule)
    }

    /// The store, for a store engine.
    pub fn store(&self) -> Option<&Arc<S>> {
        match &self.engine {
            Engine::Store(store) => Some(store),
            Engine::Local(_) => None,
        }
    }

    /// What the breaker does when its store fails.
    pub fn storage_failure_policy(&self) -> StorageFailurePolicy {
        self.policy
    }

    /// The stamp a registry keeps on this breaker: when its key was last
    /// used.
    pub fn last_used(&self) -> &AtomicU64 {
        &self.last_used
    }

    /// Whether dropping this breaker would forget anything: its in-process
    /// circuit (or, on a store, its fallback circuit) is open, half-open,
    /// set by hand or counting. A shared circuit lives in its store
    /// whatever happens to the breaker.
    pub fn holds_state(&self) -> bool {
        match &self.engine {
            Engine::Local(local) => !local.circuit.is_pristine(&*local.clock),
            Engine::Store(_) => self
                .fallback
                .as_deref()
                .is_some_and(|fallback| !fallback.is_pristine(&*self.clock)),
        }
    }

    /// Whether the store failed and calls are being protected by the
    /// in-process fallback circuit.
    pub fn in_fallback(&self) -> bool {
        self.probe.in_fallback()
    }

    /// Admission without a store round trip, when possible: always for an
    /// in-process circuit; for a shared one while the open deadline it last
    /// read has not passed, or while in fallback between two probes.
    /// [`Gate::AskStore`]: ask the store, then pass its answer to
    /// [`admitted`](Self::admitted).
    #[inline]
    pub fn try_admit(&self) -> Gate {
        if let Some(ticket) = self.admit_closed() {
            return Gate::Pass(ticket);
        }
        self.try_admit_slow()
    }

    /// The hot path: the ticket of a call on a closed in-process circuit, or
    /// `None` when there is more to decide ([`try_admit`](Self::try_admit)).
    /// One atomic load.
    #[inline]
    pub fn admit_closed(&self) -> Option<Ticket> {
        match &self.engine {
            Engine::Local(local) if local.circuit.is_closed() => Some(Ticket {
                permit: Permit::Normal,
                source: Source::Primary,
            }),
            Engine::Store(_) => match &self.mirror {
                Some(mirror) if mirror.admits() => Some(Ticket {
                    permit: Permit::Normal,
                    source: Source::Mirror,
                }),
                _ => None,
            },
            Engine::Local(_) => None,
        }
    }

    /// [`try_admit`](Self::try_admit) once [`admit_closed`](Self::admit_closed)
    /// said `None`: what a facade that tried the hot path first calls, so
    /// that a rejection does not load the phase twice.
    #[inline(never)]
    pub fn try_admit_slow(&self) -> Gate {
        match &self.engine {
            Engine::Local(local) => {
                let (admission, transition) = local.admit(self.circuit.timing());
                if let Some(transition) = transition {
                    self.changed(transition);
                }
                self.gate(admission, Source::Primary)
            }
            Engine::Store(_) => self.try_admit_without_store(),
        }
    }

    fn try_admit_without_store(&self) -> Gate {
        let now = now_ms(&*self.clock);
        match self.probe.due(now) {
            // This caller probes the store.
            Some(true) => return Gate::AskStore,
            Some(false) => {
                let (admission, source) = self.admit_fallback();
                return self.gate(admission, source);
            }
            None => {}
        }
        if let Some(retry_after) = self.open.open_for(now) {
            self.reject(Some(retry_after));
            return Gate::Reject(Some(retry_after));
        }
        let Some(mirror) = self.mirror.as_deref() else {
            return Gate::AskStore;
        };
        match mirror.verdict() {
            Verdict::Admit => Gate::Pass(Ticket {
                permit: Permit::Normal,
                source: Source::Mirror,
            }),
            Verdict::Reject => {
                self.reject(None);
                Gate::Reject(None)
            }
            Verdict::AskStore => Gate::AskStore,
        }
    }

    /// With `slow_call_duration` set, or a listener that wants calls'
    /// ends: the time a call starts (just after its admission), for
    /// [`outcome_of`](Self::outcome_of). `None` (and no clock read)
    /// otherwise.
    #[inline]
    pub fn call_started(&self) -> Option<Duration> {
        self.timed.as_ref().map(|_| self.clock.now())
    }

    /// The outcome to record for a call started at `started` (from
    /// [`call_started`](Self::call_started)) that ended with `outcome`
    /// (`ignored`: an error that does not count, recorded as a success): a
    /// success slower than `slow_call_duration` is a failure, and counted
    /// as slow in [`Metrics::slow`]. Tells the listeners that asked.
    #[inline]
    pub fn outcome_of(
        &self,
        outcome: Outcome,
        ignored: bool,
        started: Option<Duration>,
    ) -> Outcome {
        match (started, self.timed.as_deref()) {
            (Some(started), Some(timed)) => self.timed_outcome(timed, outcome, ignored, started),
            _ => outcome,
        }
    }

    fn timed_outcome(
        &self,
        timed: &Timed,
        outcome: Outcome,
        ignored: bool,
        started: Duration,
    ) -> Outcome {
        let took = self.clock.now().saturating_sub(started);
        let slow =
            outcome == Outcome::Success && timed.slow_limit.is_some_and(|limit| took > limit);
        if slow {
            timed.slow.fetch_add(1, Ordering::Relaxed);
        }
        if timed.report || Meters::TIMES_CALLS {
            let kind = match outcome {
                _ if slow => CallKind::Slow,
                Outcome::Failure => CallKind::Failure,
                _ if ignored => CallKind::Ignored,
                _ => CallKind::Success,
            };
            self.meters.call(kind, took);
            if timed.report {
                for listener in &self.listeners {
                    listener.on_call_finished(self.name(), kind, took);
                }
            }
        }
        if slow {
            Outcome::Failure
        } else {
            outcome
        }
    }

    /// The time on the breaker's clock, in milliseconds: read it just before
    /// a store step and pass it to [`admitted`](Self::admitted) or
    /// [`recorded`](Self::recorded).
    pub fn now_ms(&self) -> u64 {
        now_ms(&*self.clock)
    }

    /// The store's answer to an admission asked at `asked_at` (from
    /// [`now_ms`](Self::now_ms)); a storage error is handled by the policy.
    pub fn admitted(
        &self,
        asked_at: u64,
        answer: Result<(Admission, Option<Transition>), StorageError>,
    ) -> Result<Ticket, Error> {
        let (admission, transition) = match answer {
            Ok(answer) => answer,
            Err(error) => return self.admission_failed(error),
        };
        self.leave_fallback();
        if let Some(transition) = transition {
            self.mirror_holds(transition.to);
            self.changed(transition);
        }
        if let Admission::Rejected {
            retry_after: Some(after),
        } = admission
        {
            self.open
                .remember(asked_at, crate::clock::ceil_millis(after), self.now_ms());
        }
        self.decide(admission, Source::Primary)
    }

    fn admission_failed(&self, error: StorageError) -> Result<Ticket, Error> {
        self.emit(|l| l.on_storage_error(self.name(), &error));
        match self.policy {
            StorageFailurePolicy::FailOpen => Ok(Ticket {
                permit: Permit::Normal,
                source: Source::Unchecked,
            }),
            StorageFailurePolicy::FailClosed => Err(Error::Storage(error)),
            StorageFailurePolicy::LocalFallback { .. } => {
                self.enter_fallback(&error);
                let (admission, source) = self.admit_fallback();
                self.decide(admission, source)
            }
        }
    }

    /// The fallback circuit's admission, and who gave it.
    fn admit_fallback(&self) -> (Admission, Source) {
        // Only a breaker with a fallback circuit enters fallback.
        let Some(fallback) = self.fallback.as_deref() else {
            return (Admission::Admitted(Permit::Normal), Source::Unchecked);
        };
        let (admission, transition) = fallback.admit(&*self.clock, self.circuit.timing());
        if let Some(transition) = transition {
            self.changed(transition);
        }
        (admission, Source::Fallback)
    }

    fn enter_fallback(&self, error: &StorageError) {
        if matches!(self.policy, StorageFailurePolicy::LocalFallback { .. })
            && self.probe.enter(now_ms(&*self.clock))
        {
            self.meters.fallback(true);
            self.emit(|l| l.on_fallback_entered(self.name(), error));
        }
    }

    fn leave_fallback(&self) {
        if self.probe.leave() {
            self.meters.fallback(false);
            self.emit(|l| l.on_fallback_left(self.name()));
        }
    }

    // Always inlined: a `Gate` returned from a call of its own would come
    // back through memory, and its reader would stall on it.
    #[inline(always)]
    fn gate(&self, admission: Admission, source: Source) -> Gate {
        match admission {
            Admission::Admitted(permit) => Gate::Pass(Ticket { permit, source }),
            Admission::Rejected { retry_after } => {
                self.reject(retry_after);
                Gate::Reject(retry_after)
            }
        }
    }

    /// [`gate`](Self::gate) for the paths that return the error from here
    /// (after a store round trip, which dwarfs moving it).
    fn decide(&self, admission: Admission, source: Source) -> Result<Ticket, Error> {
        match admission {
            Admission::Admitted(permit) => Ok(Ticket { permit, source }),
            Admission::Rejected { retry_after } => {
                self.reject(retry_after);
                Err(self.open_error(retry_after))
            }
        }
    }

    /// Counts a rejection and tells the listeners: out of line, so that
    /// [`gate`](Self::gate) stays small. It returns nothing, so nothing
    /// comes back through memory.
    #[inline(never)]
    fn reject(&self, retry_after: Option<Duration>) {
        self.rejected.add_one();
        self.meters.rejected();
        self.emit(|l| l.on_call_rejected(self.name(), retry_after));
    }

    /// The breaker's figures from the store's answers for its state and
    /// counts; where one failed, from what the breaker last read, with the
    /// error's kind in [`Metrics::store_error`] (and the error itself told
    /// to the listeners). `counts` is `None` when they were not asked for
    /// (the state's read failed: the store is down, and asking again would
    /// only double the wait). Never fails: a health endpoint needs an answer
    /// most when the store is down.
    pub fn metrics_read(
        &self,
        state: Result<State, StorageError>,
        counts: Option<Result<Counts, StorageError>>,
    ) -> Metrics {
        let mut store_error = None;
        let mut failed = |error: StorageError| {
            self.emit(|l| l.on_storage_error(self.name(), &error));
            store_error.get_or_insert(error.kind());
        };
        let known = self.known.as_deref();
        let state = match state {
            Ok(state) => {
                if let Some(known) = known {
                    known.set_state(state);
                }
                state
            }
            Err(error) => {
                failed(error);
                self.last_state()
            }
        };
        let counts = match counts {
            Some(Ok(counts)) => {
                if let Some(known) = known {
                    known.set_counts(counts);
                }
                counts
            }
            Some(Err(error)) => {
                failed(error);
                self.last_counts()
            }
            None => self.last_counts(),
        };
        Metrics {
            store_error,
            ..self.metrics(state, counts)
        }
    }

    /// The breaker's figures from what it last knew, as
    /// [`metrics_read`](Self::metrics_read) gives them when its store fails
    /// with `kind`: for a caller that knows the store is down (it just
    /// failed for a breaker of the same storage), without asking it again.
    pub fn metrics_known(&self, kind: StorageErrorKind) -> Metrics {
        Metrics {
            store_error: Some(kind),
            ..self.metrics(self.last_state(), self.last_counts())
        }
    }

    /// The state this breaker last knew (`Closed` if none).
    fn last_state(&self) -> State {
        self.known
            .as_deref()
            .and_then(Known::state)
            .unwrap_or(State::Closed)
    }

    /// The counts this breaker last knew (zero if none).
    fn last_counts(&self) -> Counts {
        self.known.as_deref().map(Known::counts).unwrap_or_default()
    }

    /// The breaker's figures, given the state and counts (from the store for
    /// a store engine, from [`local_state`](Self::local_state) and
    /// [`local_counts`](Self::local_counts) otherwise).
    pub fn metrics(&self, state: State, counts: Counts) -> Metrics {
        self.meters.state(state);
        self.meters.counts(counts);
        let open_for = match (&self.engine, self.in_fallback()) {
            (Engine::Local(local), _) => local.circuit.open_for(&*local.clock),
            (Engine::Store(_), true) => self
                .fallback
                .as_deref()
                .and_then(|fallback| fallback.open_for(&*self.clock)),
            (Engine::Store(_), false) => self.open.peek(now_ms(&*self.clock)),
        };
        Metrics {
            state,
            counts,
            rejected: self.rejected.get(),
            open_for: if state == State::Open { open_for } else { None },
            in_fallback: self.in_fallback(),
            dropped: self.mirror.as_deref().map_or(0, Mirror::dropped),
            slow: self
                .timed
                .as_deref()
                .map_or(0, |timed| timed.slow.load(Ordering::Relaxed)),
            store_error: None,
        }
    }

    /// The error of a rejected call ([`Gate::Reject`]), for any call's
    /// error type: built where the facade returns it, so that the error is
    /// not moved through the layers of admission. The name is copied, not
    /// counted, when it is short ([`CircuitName`](crate::CircuitName)).
    #[inline(never)]
    pub fn open_error<E>(&self, retry_after: Option<Duration>) -> Error<E> {
        Error::Open {
            name: self.circuit.name().clone(),
            retry_after,
        }
    }

    /// Records an outcome without a store round trip where possible: for an
    /// in-process circuit, the fallback circuit, or an unchecked call.
    /// Returns `false` when the store must hear it: call the store's
    /// `record`, then [`recorded`](Self::recorded).
    #[inline]
    pub fn try_record(&self, ticket: Ticket, outcome: Outcome) -> Recorded {
        // The commonest outcome, kept inline: a success on an in-process
        // circuit changes no state, and is counted only if the rule counts
        // requests.
        if let (
            Ticket {
                permit: Permit::Normal,
                source: Source::Primary,
            },
            Outcome::Success,
            Engine::Local(local),
        ) = (ticket, outcome, &self.engine)
        {
            if self.circuit.counts_requests() {
                local
                    .circuit
                    .record_success(&*local.clock, self.circuit.timing());
            }
            return Recorded::Done;
        }
        // The same on a shared circuit's mirror (sync mode): nothing, or
        // one add on this thread's pending counter.
        if let (
            Ticket {
                permit: Permit::Normal,
                source: Source::Mirror,
            },
            Outcome::Success,
            Some(mirror),
        ) = (ticket, outcome, self.mirror.as_deref())
        {
            if self.circuit.counts_requests() {
                mirror.add_success();
            }
            return Recorded::Done;
        }
        self.try_record_rest(ticket, outcome)
    }

    #[inline(never)]
    fn try_record_rest(&self, ticket: Ticket, outcome: Outcome) -> Recorded {
        let Ticket { permit, source } = ticket;
        match (source, &self.engine) {
            (Source::Primary, Engine::Local(local)) => {
                if let Some(transition) =
                    local.record(permit, outcome, &*self.rule, self.circuit.timing())
                {
                    self.changed(transition);
                }
                Recorded::Done
            }
            (Source::Primary, Engine::Store(_)) => Recorded::InStore,
            (Source::Fallback, _) => {
                self.record_fallback(permit, outcome);
                Recorded::Done
            }
            (Source::Mirror, _) => match self.mirror.as_deref() {
                Some(mirror)
                    if mirror.add(outcome, self.circuit.counts_requests(), &*self.rule) =>
                {
                    Recorded::SyncNow
                }
                _ => Recorded::Done,
            },
            (Source::Unchecked, _) => Recorded::Done,
        }
    }

    fn record_fallback(&self, permit: Permit, outcome: Outcome) {
        let Some(fallback) = self.fallback.as_deref() else {
            return;
        };
        if let Some(transition) = fallback.record(
            permit,
            outcome,
            &*self.rule,
            &*self.clock,
            self.circuit.timing(),
        ) {
            self.changed(transition);
        }
    }

    /// The store's answer to a record step. If the store failed, the
    /// outcome is lost for the shared circuit (the call's own result is
    /// kept); under `LocalFallback` it goes to the fallback circuit, so that
    /// a failing dependency still opens a circuit while the store is down.
    pub fn recorded(
        &self,
        ticket: Ticket,
        outcome: Outcome,
        asked_at: u64,
        answer: Result<Option<Transition>, StorageError>,
    ) {
        match answer {
            Ok(transition) => {
                self.leave_fallback();
                if let Some(transition) = transition {
                    self.mirror_holds(transition.to);
                    match transition.to {
                        State::Closed => self.open.forget(),
                        // This call opened the circuit: its own process
                        // rejects without asking the store until it may
                        // pass again. (The step reports no open time: with
                        // a backoff, the shortest one is never past the
                        // store's deadline.)
                        State::Open => self.open.remember(
                            asked_at,
                            self.circuit.timing().shortest_open_time_ms(),
                            self.now_ms(),
                        ),
                        _ => {}
                    }
                    self.changed(transition);
                }
            }
            Err(error) => {
                self.emit(|l| l.on_storage_error(self.name(), &error));
                if matches!(self.policy, StorageFailurePolicy::LocalFallback { .. }) {
                    self.enter_fallback(&error);
                    // The store's permit means nothing to the fallback
                    // circuit: count the outcome as an ordinary call's.
                    let _ = ticket;
                    if self.fallback_is_closed() {
                        self.record_fallback(Permit::Normal, outcome);
                    }
                }
            }
        }
    }

    fn fallback_is_closed(&self) -> bool {
        self.fallback.as_deref().is_some_and(|fallback| {
            fallback.state(&*self.clock, self.circuit.timing()) == State::Closed
        })
    }

    /// Gives back the permit of a call that ended without a verdict (an
    /// async call dropped before it completed), without a store round trip
    /// where possible: a half-open trial slot is freed and nothing is
    /// counted. Returns `false` when the store's `release` step must do it.
    #[inline]
    pub fn try_release(&self, ticket: Ticket) -> bool {
        match (ticket.source, &self.engine) {
            (Source::Primary, Engine::Local(local)) => {
                local.circuit.release(ticket.permit);
                true
            }
            (Source::Primary, Engine::Store(_)) => false,
            (Source::Fallback, _) => {
                if let Some(fallback) = self.fallback.as_deref() {
                    fallback.release(ticket.permit);
                }
                true
            }
            (Source::Unchecked | Source::Mirror, _) => true,
        }
    }

    /// Changes the state by hand without a store round trip, for an
    /// in-process circuit; `false` for a store engine: call the store's
    /// `set_manual`, then [`manual_set`](Self::manual_set).
    pub fn try_set_manual(&self, manual: Manual) -> bool {
        match &self.engine {
            Engine::Local(local) => {
                let transition =
                    local
                        .circuit
                        .set_manual(manual, &*local.clock, self.circuit.timing());
                if let Some(transition) = transition {
                    self.changed(transition);
                }
                true
            }
            Engine::Store(_) => false,
        }
    }

    /// The store's answer to a change by hand.
    ///
    /// # Errors
    ///
    /// The store's error: the change may not have been made.
    pub fn manual_set(
        &self,
        manual: Manual,
        answer: Result<Option<Transition>, StorageError>,
    ) -> Result<(), StorageError> {
        let transition = answer?;
        // Whatever this process cached about the open deadline or learnt
        // in fallback no longer holds.
        self.open.forget();
        if manual == Manual::Close {
            if let Some(fallback) = self.fallback.as_deref() {
                fallback.reset();
            }
        }
        self.leave_fallback();
        self.mirror_holds(match manual {
            Manual::ForceOpen => State::ForcedOpen,
            Manual::Disable => State::Disabled,
            _ => State::Closed,
        });
        if let Some(transition) = transition {
            self.changed(transition);
        }
        Ok(())
    }

    /// The state of an in-process circuit, or of the fallback circuit while
    /// in fallback; `None`: ask the store.
    pub fn local_state(&self) -> Option<State> {
        match &self.engine {
            Engine::Local(local) => Some(local.state(self.circuit.timing())),
            Engine::Store(_) if self.in_fallback() => self
                .fallback
                .as_deref()
                .map(|fallback| fallback.state(&*self.clock, self.circuit.timing())),
            Engine::Store(_) => None,
        }
    }

    /// The counts of an in-process circuit, or of the fallback circuit while
    /// in fallback; `None`: ask the store.
    pub fn local_counts(&self) -> Option<Counts> {
        match &self.engine {
            Engine::Local(local) => Some(local.counts()),
            Engine::Store(_) if self.in_fallback() => self
                .fallback
                .as_deref()
                .map(|fallback| fallback.counts(&*self.clock)),
            Engine::Store(_) => None,
        }
    }

    /// Resets an in-process circuit, or the caches and fallback circuit of a
    /// shared one (whose keys the facade then deletes). Returns whether the
    /// reset is complete.
    pub fn local_reset(&self) -> bool {
        self.open.forget();
        if let Some(mirror) = self.mirror.as_deref() {
            mirror.forget();
        }
        if let Some(fallback) = self.fallback.as_deref() {
            fallback.reset();
        }
        match &self.engine {
            Engine::Local(local) => {
                local.circuit.reset();
                true
            }
            Engine::Store(_) => false,
        }
    }

    fn mirror_holds(&self, state: State) {
        if let Some(mirror) = self.mirror.as_deref() {
            mirror.hold(state);
        }
    }

    /// The sync interval, for a breaker in sync mode.
    pub fn sync_period(&self) -> Option<Duration> {
        self.mirror
            .as_deref()
            .map(|mirror| Duration::from_millis(mirror.interval_ms()))
    }

    /// What this process counted in sync mode and has not pushed yet.
    pub fn pending(&self) -> Option<Counts> {
        self.mirror.as_deref().map(Mirror::pending)
    }

    /// After [`try_admit`](Self::try_admit) said "ask the store": whether
    /// the breaker's mirror is stale and this caller now holds the sync
    /// that must refresh it first ([`sync_begin`](Self::sync_begin)); then
    /// `try_admit` again.
    pub fn sync_first(&self) -> bool {
        self.mirror.as_deref().is_some_and(Mirror::sync_first)
    }

    /// For a change of the circuit the store pushed: stops admitting from
    /// the mirror, and says whether the caller now holds the sync that
    /// refreshes it ([`Due::Sync`]), another sync is in flight whose answer
    /// may predate the change ([`Due::Busy`]: ask again at the next pass),
    /// or nothing is needed ([`Due::Idle`]: the mirror was stale already,
    /// so the next call syncs first; or the breaker is not in sync mode).
    pub fn sync_pushed(&self) -> Due {
        self.mirror.as_deref().map_or(Due::Idle, Mirror::pushed)
    }

    /// Takes the breaker's sync, for a flush: `false` if another one is in
    /// flight (or the breaker is not in sync mode).
    pub fn sync_claim(&self) -> bool {
        self.mirror.as_deref().is_some_and(Mirror::claim)
    }

    /// Ends the sync of `batch` without an answer (its future was dropped
    /// before the store answered): the batch is kept for the next sync, as
    /// after a failure, and nothing is reported.
    pub fn sync_cancelled(&self, batch: Batch) {
        if let Some(mirror) = self.mirror.as_deref() {
            mirror.end(batch, None);
        }
    }

    /// Gives up the sync the caller holds, without running it: what is
    /// pending waits for the next one.
    pub fn sync_give_up(&self) {
        if let Some(mirror) = self.mirror.as_deref() {
            mirror.release();
        }
    }

    /// For a background pass, the next one `ahead` later: whether this
    /// breaker is due a sync before then (and if [`Due::Sync`], the caller
    /// holds it).
    pub fn sync_due(&self, ahead: Duration) -> Due {
        match self.mirror.as_deref() {
            Some(mirror) => mirror.due(
                now_ms(&*self.clock),
                u64::try_from(ahead.as_millis()).unwrap_or(u64::MAX),
            ),
            None => Due::NotYet,
        }
    }

    /// For a background pass that syncs other breakers of this one's
    /// storage, the previous pass `since` ago: whether this one joins them
    /// (used or holding counts, and not synced since the previous pass);
    /// if so, the caller holds its sync.
    pub fn sync_joins(&self, since: Duration) -> bool {
        let gap = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
        self.mirror
            .as_deref()
            .is_some_and(|mirror| mirror.joins(now_ms(&*self.clock), gap))
    }

    /// Takes the pending counts for the sync the caller holds: pass
    /// [`Batch::counts`] to the store's `sync` step, then the batch and the
    /// answer to [`synced`](Self::synced).
    /// `None` for a breaker not in sync mode.
    pub fn sync_begin(&self) -> Option<Batch> {
        let mirror = self.mirror.as_deref()?;
        Some(mirror.begin(
            now_ms(&*self.clock),
            self.circuit.timing().failure_timeout_ms,
        ))
    }

    /// What to send for `batch`: its parts, and where the store keeps the
    /// last part it counted from this breaker.
    pub fn sync_batch<'a>(&'a self, batch: &'a Batch) -> SyncBatch<'a> {
        let writer_key = self.mirror.as_deref().map_or("", Mirror::writer_key);
        SyncBatch::new(writer_key, batch.parts())
    }

    /// The store's answer to a sync: refreshes the mirror (and the open
    /// deadline), or keeps the batch for the next sync and applies the
    /// store-failure policy. Ends the sync.
    ///
    /// # Errors
    ///
    /// The store's error, given back once handled.
    pub fn synced(
        &self,
        batch: Batch,
        answer: Result<Snapshot, StorageError>,
    ) -> Result<(), StorageError> {
        let Some(mirror) = self.mirror.as_deref() else {
            return answer.map(drop);
        };
        match answer {
            Ok(snapshot) => {
                // The claim is given back last: a push meanwhile waits for
                // the answer to be applied (else it could find the mirror
                // stale, take it for one no call trusts, and be dropped).
                mirror.end_held(&batch, Some(snapshot.counts));
                mirror.hold(snapshot.state);
                if let Some(known) = self.known.as_deref() {
                    known.set_state(snapshot.state);
                    known.set_counts(snapshot.counts);
                }
                if snapshot.state == State::Closed && self.rule.should_open(mirror.estimate()) {
                    // Failures counted here while this sync was in flight
                    // reach the rule: admit nothing more from the mirror;
                    // the next call syncs them first.
                    mirror.stale();
                }
                if mirror.pushed_since(&batch) {
                    // The store changed while this sync was in flight: its
                    // answer may predate the change. Admit nothing from it
                    // until the sync the push asked for answers.
                    mirror.stale();
                }
                mirror.release();
                self.leave_fallback();
                match snapshot.state {
                    State::Open => {
                        // Unknown time left (a storage without fused steps):
                        // rejected here until the next sync.
                        let open_ms = snapshot
                            .open_for
                            .map_or(mirror.interval_ms(), crate::clock::ceil_millis);
                        self.open.remember(batch.asked_at(), open_ms, self.now_ms());
                    }
                    State::Closed | State::Disabled => self.open.forget(),
                    _ => {}
                }
                if let Some(transition) = snapshot.transition {
                    self.changed(transition);
                }
                Ok(())
            }
            Err(error) => {
                mirror.end(batch, None);
                self.emit(|l| l.on_storage_error(self.name(), &error));
                match self.policy {
                    StorageFailurePolicy::LocalFallback { .. } => {
                        // Calls go to the fallback circuit, and the next
                        // sync is its probe.
                        mirror.stale();
                        let entering = !self.in_fallback();
                        self.enter_fallback(&error);
                        if entering {
                            self.seed_fallback(mirror.pending());
                        }
                    }
                    // Calls ask the store, and are rejected while it fails.
                    StorageFailurePolicy::FailClosed => mirror.stale(),
                    // Calls are admitted from the mirror (and counted)
                    // until it is two intervals old, then let through
                    // unchecked while the store fails; a push that made
                    // it stale is undone for that.
                    _ => mirror.undo_push(),
                }
                Err(error)
            }
        }
    }

    /// Counts into the fallback circuit, as it is entered, the outcomes of
    /// sync mode that the store has not counted (a failed record is counted
    /// there too in per-call mode): protection from the process's own
    /// failures does not start from zero. Under a rule that counts requests,
    /// only while they are few enough to replay one by one (100,000).
    fn seed_fallback(&self, pending: Counts) {
        const MOST: u64 = 100_000;
        if !self.fallback_is_closed() {
            return;
        }
        let successes = if self.circuit.counts_requests() {
            if pending.requests > MOST {
                return;
            }
            pending.requests.saturating_sub(pending.failures)
        } else {
            0
        };
        for _ in 0..successes {
            self.record_fallback(Permit::Normal, Outcome::Success);
        }
        for _ in 0..pending.failures.min(MOST) {
            self.record_fallback(Permit::Normal, Outcome::Failure);
        }
    }

    fn name(&self) -> &str {
        self.circuit.name()
    }

    fn changed(&self, transition: Transition) {
        self.meters.state(transition.to);
        if let Some(known) = self.known.as_deref() {
            known.set_state(transition.to);
        }
        self.emit(|l| l.on_state_change(self.name(), transition.from, transition.to));
    }

    #[inline]
    fn emit(&self, event: impl Fn(&dyn Listener)) {
        for listener in &self.listeners {
            event(&**listener);
        }
        #[cfg(feature = "tracing")]
        event(&crate::events::Tracing);
    }
}

impl<S: ?Sized + fmt::Debug> fmt::Debug for BreakerCore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", self.circuit.name())
            .field("rule", &self.rule)
            .field("timing", self.circuit.timing())
            .field("storage", &self.engine)
            .field("on_storage_failure", &self.policy)
            .field("listeners", &self.listeners.len())
            .finish()
    }
}
