//! The circuit's state machine, as pure functions.
//!
//! ```text
//!            failure and the rule says open
//!   Closed ─────────────────────────────────▶ Open { until }
//!     ▲                                          │ now >= until
//!     │ half_open_successes trials succeeded     ▼
//!     └──────────────────────────────────── HalfOpen ──▶ Open (a trial failed)
//! ```
//!
//! With `half_open_max_calls == 0` an expired `Open` goes straight back to
//! `Closed`, which is the Python original's behaviour. Every transition into
//! `Open` or `Closed` starts a fresh counting window.
//!
//! # Half-open: a state, and leases on its trial permits
//!
//! Half-open lasts until the trials decide: an idle half-open circuit stays
//! half-open. Its trial permits are *leases*: the first trial admitted opens
//! a lease of [`Timing::trial_lease_ms`] (default: the circuit timeout), and
//! a lease admits at most `half_open_max_calls` trials. The first admission
//! after a lease has ended opens the next one, under a new episode number;
//! the trials still out under the old lease (a slow dependency, a process
//! that died mid-call) then decide nothing, and their slots are free again.
//! Trials that passed stay passed. So the bound reads: **at most
//! `half_open_max_calls` trials are admitted per lease**; a dependency that
//! hangs for longer than the lease sees one new round of trials per lease,
//! never the whole traffic. The circuit closes once
//! [`Timing::half_open_successes`] trials have passed (by default all
//! `half_open_max_calls` of them); one failed trial reopens it.
//!
//! Time is whole milliseconds from the clock's origin. Nothing here touches
//! memory or a store: [`crate::local::LocalCircuit`] applies these functions
//! to atomics, and the storage steps follow the same rules over keys.

use core::time::Duration;
use lasier_rules::Counts;

/// The state of a circuit, as reported to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Calls pass and are counted.
    Closed,
    /// Calls are rejected without running.
    Open,
    /// A bounded number of trial calls pass; their outcome closes or reopens
    /// the circuit.
    HalfOpen,
    /// Opened by hand (`force_open()`): every call is rejected until
    /// `force_close()`.
    ForcedOpen,
    /// Switched off by hand (`disable()`): every call passes; outcomes are
    /// still counted, for metrics, but never open the circuit.
    Disabled,
}

impl core::fmt::Display for State {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
            Self::ForcedOpen => "forced open",
            Self::Disabled => "disabled",
        })
    }
}

/// The timing of one circuit, in milliseconds, as the state machine uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long the counters of a window live after their first increment.
    pub failure_timeout_ms: u64,
    /// How long the circuit stays open.
    pub circuit_timeout_ms: u64,
    /// Trial calls let through while half-open (0: no half-open state).
    pub half_open_max_calls: u16,
    /// Trials that must pass to close the circuit: from 1 to
    /// `half_open_max_calls` (the default: all of them).
    pub half_open_successes: u16,
    /// How long a lease on half-open trial permits lasts, from its first
    /// trial (see the [module docs](self)).
    pub trial_lease_ms: u64,
    /// Open-time backoff, if configured: each consecutive opening lasts
    /// longer (see [`Timing::open_time_ms`]). `None`: every opening lasts
    /// `circuit_timeout_ms`.
    pub backoff: Option<BackoffTiming>,
}

/// Open-time backoff in integers, as the state machine and the stores'
/// scripts use it; built from a validated
/// [`OpenBackoff`](crate::OpenBackoff).
///
/// The bounds that validation enforces keep every intermediate value of
/// [`Timing::open_time_ms`] below 2^53, so a Lua script (whose numbers are
/// doubles) computes the same times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffTiming {
    /// The factor from one opening to the next, in thousandths (1000: the
    /// same time each opening; at most 100 000).
    pub multiplier_permille: u32,
    /// The longest open time, in ms, jitter included (at least the circuit
    /// timeout, at most [`MAX_OPEN_BACKOFF`]; 32 bits, which hold it, keep
    /// each breaker's timing small).
    pub max_ms: u32,
    /// How far an open time may be moved either way at random, in
    /// thousandths of it (0 to 999).
    pub jitter_permille: u16,
}

/// The longest open time a backoff may reach: one day.
pub const MAX_OPEN_BACKOFF: Duration = Duration::from_millis(MAX_OPEN_BACKOFF_MS);

const MAX_OPEN_BACKOFF_MS: u64 = 24 * 60 * 60 * 1000;

impl Timing {
    /// The circuit timeout as a `Duration`.
    pub fn circuit_timeout(&self) -> Duration {
        Duration::from_millis(self.circuit_timeout_ms)
    }

    /// The failure timeout as a `Duration`.
    pub fn failure_timeout(&self) -> Duration {
        Duration::from_millis(self.failure_timeout_ms)
    }

    /// The trial lease as a `Duration`.
    pub fn trial_lease(&self) -> Duration {
        Duration::from_millis(self.trial_lease_ms)
    }

    /// How long a store keeps a half-open marker written by an opening that
    /// lasts `circuit_timeout_ms`: the open time, then
    /// [`HALF_OPEN_RETENTION`].
    pub fn marker_ttl_after_opening(&self) -> Duration {
        self.marker_ttl_after_open_time(self.circuit_timeout_ms)
    }

    /// How long a store keeps a half-open marker written by an opening of
    /// `open_ms`: the open time, then [`HALF_OPEN_RETENTION`].
    pub fn marker_ttl_after_open_time(&self, open_ms: u64) -> Duration {
        Duration::from_millis(open_ms.saturating_add(HALF_OPEN_RETENTION_MS))
    }

    /// How long the `n`-th consecutive opening (`n >= 1`; 0 reads as 1)
    /// keeps the circuit open, in ms.
    ///
    /// Without backoff: `circuit_timeout_ms`, always. With it: the circuit
    /// timeout, multiplied by the multiplier once per opening after the
    /// first, in integer thousandths, and capped at the maximum (as
    /// resilience4j's `IntervalFunction.ofExponentialBackoff`, Polly's
    /// `BreakDurationGenerator` or Envoy's `base_ejection_time` x
    /// ejections); then moved by up to `jitter` of itself either way,
    /// by `jitter_seed`, and kept within 1 ms and the maximum. The same
    /// integers in the same order as the Redis scripts, so a store and
    /// this process agree to the millisecond when the jitter is 0.
    ///
    /// ```
    /// # use lasier_core::state::{BackoffTiming, Timing};
    /// let timing = Timing {
    ///     failure_timeout_ms: 60_000,
    ///     circuit_timeout_ms: 1_000,
    ///     half_open_max_calls: 1,
    ///     half_open_successes: 1,
    ///     trial_lease_ms: 1_000,
    ///     backoff: Some(BackoffTiming { multiplier_permille: 2_000, max_ms: 5_000, jitter_permille: 0 }),
    /// };
    /// let times: Vec<u64> = (1..=5).map(|n| timing.open_time_ms(n, 0)).collect();
    /// assert_eq!(times, [1_000, 2_000, 4_000, 5_000, 5_000]);
    /// ```
    pub fn open_time_ms(&self, openings: u32, jitter_seed: u64) -> u64 {
        let base = self.circuit_timeout_ms;
        let Some(backoff) = self.backoff else {
            return base;
        };
        let max = u64::from(backoff.max_ms).max(1);
        let multiplier = u64::from(backoff.multiplier_permille);
        let mut time = base.min(max);
        for _ in 1..openings {
            let next = (time.saturating_mul(multiplier) / 1000).min(max);
            // (at the maximum, or a multiplier too small to move a short
            // time by a whole millisecond: it stays there)
            if next <= time {
                break;
            }
            time = next;
        }
        let spread = time.saturating_mul(u64::from(backoff.jitter_permille)) / 1000;
        if spread > 0 {
            let offset = jitter_seed % (2 * spread + 1);
            time = (time - spread).saturating_add(offset);
        }
        time.clamp(1, max)
    }

    /// The shortest time any opening can last (the first one, jitter
    /// taken off): what a process that saw an opening but not its time
    /// may assume without outliving the store's deadline.
    pub fn shortest_open_time_ms(&self) -> u64 {
        match self.backoff {
            None => self.circuit_timeout_ms,
            Some(backoff) => {
                let base = self.circuit_timeout_ms.min(u64::from(backoff.max_ms));
                let spread = base.saturating_mul(u64::from(backoff.jitter_permille)) / 1000;
                (base - spread).max(1)
            }
        }
    }

    /// How long a store keeps the count of consecutive openings from an
    /// opening of `open_ms`: through the half-open period that follows
    /// (the open time, then [`HALF_OPEN_RETENTION`]), or, without a
    /// half-open state, through the open time and one closed window after
    /// it (`failure_timeout_ms`). A circuit that stays closed that long
    /// starts again from the first opening.
    pub fn openings_ttl_after_opening_ms(&self, open_ms: u64) -> u64 {
        let after = if self.half_open_max_calls > 0 {
            HALF_OPEN_RETENTION_MS
        } else {
            self.failure_timeout_ms
        };
        open_ms.saturating_add(after)
    }

    /// How long a store keeps a half-open marker (and the passes of its
    /// trials) from the start of a lease: the lease, then
    /// [`HALF_OPEN_RETENTION`].
    pub fn marker_ttl_after_lease(&self) -> Duration {
        Duration::from_millis(self.trial_lease_ms.saturating_add(HALF_OPEN_RETENTION_MS))
    }
}

/// How long a shared store keeps the half-open state of a circuit that
/// nobody calls: one day after its open time or its last lease ended. A
/// circuit idle for that long reads closed again (as in the Python
/// original, whose circuits close when their open flag expires); until
/// then it stays half-open however idle, as an in-process circuit does.
/// The store needs the limit only to forget circuits nobody uses.
pub const HALF_OPEN_RETENTION: Duration = Duration::from_millis(HALF_OPEN_RETENTION_MS);

const HALF_OPEN_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;

/// Where a circuit is, with what the machine needs to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Calls pass.
    Closed,
    /// Calls are rejected until `until` (milliseconds on the circuit's clock).
    Open {
        /// The first instant at which the circuit is no longer open.
        until: u64,
    },
    /// Trial calls pass, at most `half_open_max_calls` per lease.
    HalfOpen {
        /// The number of the current lease: a trial permit carries it, so
        /// that a trial of an earlier lease (or an earlier half-open period)
        /// cannot decide this one.
        episode: u32,
        /// Trial permits of this lease handed out and not given back.
        taken: u16,
        /// Trials of this half-open period that succeeded.
        passed: u16,
        /// When the current lease ends (milliseconds on the circuit's
        /// clock).
        lease_until: u64,
    },
    /// Rejects every call until closed by hand.
    ForcedOpen,
    /// Admits every call; counts, never trips.
    Disabled,
}

/// A change of state made by hand, through the store for a shared circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Manual {
    /// Reject every call until [`Manual::Close`] (isolate the dependency).
    ForceOpen,
    /// Close the circuit and empty its counters (ends a forced open or a
    /// disable too).
    Close,
    /// Let every call pass, still counting, never opening.
    Disable,
}

impl Phase {
    /// The state users see at `now`: an `Open` phase whose time is up already
    /// reads as half-open (or closed, without a half-open state), although
    /// the transition only happens on the next call.
    pub fn state_at(self, now: u64, timing: &Timing) -> State {
        match self {
            Phase::Closed => State::Closed,
            Phase::Open { until } if now < until => State::Open,
            Phase::Open { .. } if timing.half_open_max_calls == 0 => State::Closed,
            Phase::Open { .. } | Phase::HalfOpen { .. } => State::HalfOpen,
            Phase::ForcedOpen => State::ForcedOpen,
            Phase::Disabled => State::Disabled,
        }
    }
}

/// What a call may do, as decided at admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Permit {
    /// An ordinary call on a closed circuit: its outcome is counted.
    Normal,
    /// A half-open trial: its outcome closes or reopens the circuit.
    Trial {
        /// The half-open period this trial belongs to.
        episode: u32,
    },
}

/// The result of asking to run a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Admission {
    /// Run it.
    Admitted(Permit),
    /// Do not run it.
    Rejected {
        /// How long until a call may pass again, where known.
        retry_after: Option<Duration>,
    },
}

/// How a guarded call ended, as far as the breaker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// It succeeded, or failed with an error the breaker does not count.
    Success,
    /// It failed with an error the breaker counts.
    Failure,
}

/// A change of state, reported once, by the call that caused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
}

/// What a breaker in sync mode sends in one sync step: the outcomes of
/// calls it admitted as normal calls, in numbered parts. A part is counted
/// once, however often it is sent: the store keeps, at
/// [`writer_key`](Self::writer_key), the highest part number it has counted
/// from this breaker, and counts only parts above it. So a sync whose
/// answer was lost (a timeout) can be sent again without counting anything
/// twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncBatch<'a> {
    writer_key: &'a str,
    parts: &'a [(u64, Counts)],
}

impl<'a> SyncBatch<'a> {
    /// A batch of `parts` (part number, counts), numbers rising, from the
    /// breaker whose key is `writer_key`.
    pub fn new(writer_key: &'a str, parts: &'a [(u64, Counts)]) -> Self {
        Self { writer_key, parts }
    }

    /// Where the store keeps the highest part number it counted from this
    /// breaker (with a TTL of the circuit's window).
    pub fn writer_key(&self) -> &'a str {
        self.writer_key
    }

    /// The parts: (part number, counts), numbers rising.
    pub fn parts(&self) -> &'a [(u64, Counts)] {
        self.parts
    }

    /// The highest part number, 0 if none.
    pub fn last_part(&self) -> u64 {
        self.parts.last().map_or(0, |part| part.0)
    }

    /// The counts of the parts numbered above `counted`: what is left to
    /// count.
    pub fn counts_after(&self, counted: u64) -> Counts {
        self.parts
            .iter()
            .filter(|(number, _)| *number > counted)
            .fold(Counts::default(), |sum, (_, counts)| {
                Counts::new(
                    sum.failures.saturating_add(counts.failures),
                    sum.requests.saturating_add(counts.requests),
                )
            })
    }
}

/// The shared circuit as a sync step left it: what a breaker in sync mode
/// (`sync_interval`) refreshes its in-process mirror from. See
/// [`FusedSteps::sync`](crate::FusedSteps::sync).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The state after the batch was counted (and the circuit opened, if
    /// the rule said so).
    pub state: State,
    /// The counts of the shared window after the batch. Zero while the
    /// circuit is not closed (nothing is counted then).
    pub counts: Counts,
    /// While open: how long until trial calls may pass, where the store
    /// knows it.
    pub open_for: Option<Duration>,
    /// The change this step made, if any (an opening by the rule).
    pub transition: Option<Transition>,
}

impl Snapshot {
    /// A snapshot of a circuit in `state` with `counts`.
    pub fn new(state: State, counts: Counts) -> Self {
        Self {
            state,
            counts,
            open_for: None,
            transition: None,
        }
    }

    /// With the time left open.
    #[must_use]
    pub fn with_open_for(mut self, open_for: Option<Duration>) -> Self {
        self.open_for = open_for;
        self
    }

    /// With the change the step made.
    #[must_use]
    pub fn with_transition(mut self, transition: Option<Transition>) -> Self {
        self.transition = transition;
        self
    }
}

/// The half-open episode that follows an open period ending at `until`.
fn episode_of(until: u64) -> u32 {
    // Low bits of the deadline: two open periods that end at the same
    // millisecond modulo ~6 days cannot both have a trial in flight.
    (until & u64::from(EPISODE_MASK)) as u32
}

pub(crate) const EPISODE_MASK: u32 = (1 << 29) - 1;

/// The episode of the lease that follows the one of `episode`.
pub(crate) fn next_episode(episode: u32) -> u32 {
    episode.wrapping_add(1) & EPISODE_MASK
}

/// Admission at `now`. Returns the next phase and the decision.
pub fn admit(phase: Phase, now: u64, timing: &Timing) -> (Phase, Admission) {
    match phase {
        Phase::Closed | Phase::Disabled => (phase, Admission::Admitted(Permit::Normal)),
        Phase::ForcedOpen => (phase, Admission::Rejected { retry_after: None }),
        Phase::Open { until } if now < until => (
            phase,
            Admission::Rejected {
                retry_after: Some(Duration::from_millis(until - now)),
            },
        ),
        Phase::Open { .. } if timing.half_open_max_calls == 0 => {
            (Phase::Closed, Admission::Admitted(Permit::Normal))
        }
        Phase::Open { until } => {
            let episode = episode_of(until);
            (
                Phase::HalfOpen {
                    episode,
                    taken: 1,
                    passed: 0,
                    lease_until: now.saturating_add(timing.trial_lease_ms),
                },
                Admission::Admitted(Permit::Trial { episode }),
            )
        }
        Phase::HalfOpen {
            episode,
            passed,
            lease_until,
            ..
        } if now >= lease_until => {
            // The lease is over: its trials still out decide nothing, and
            // their slots are free. A new lease starts with this trial.
            let episode = next_episode(episode);
            (
                Phase::HalfOpen {
                    episode,
                    taken: 1,
                    passed,
                    lease_until: now.saturating_add(timing.trial_lease_ms),
                },
                Admission::Admitted(Permit::Trial { episode }),
            )
        }
        Phase::HalfOpen {
            episode,
            taken,
            passed,
            lease_until,
        } => {
            if taken.saturating_add(passed) < timing.half_open_max_calls {
                (
                    Phase::HalfOpen {
                        episode,
                        taken: taken + 1,
                        passed,
                        lease_until,
                    },
                    Admission::Admitted(Permit::Trial { episode }),
                )
            } else {
                (phase, Admission::Rejected { retry_after: None })
            }
        }
    }
}

/// The count of consecutive openings of a circuit, for open-time backoff,
/// as a store keeps it: a counter with a TTL (`lasier:openings:<name>`).
/// Each opening counts one more and sets when the count lapses
/// ([`Timing::openings_ttl_after_opening_ms`]); trials that close the
/// circuit leave it one window to live, so a circuit that stays closed for
/// a whole window opens for the base time again, and one that trips again
/// within the window goes on with the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Openings {
    /// Openings counted so far (while not lapsed).
    pub count: u32,
    /// When the count lapses (ms on the circuit's clock, exclusive).
    pub until: u64,
}

impl Openings {
    /// The count at `now`: 0 once lapsed.
    pub fn at(self, now: u64) -> u32 {
        if now < self.until {
            self.count
        } else {
            0
        }
    }

    /// An opening at `now`: the count after it and how long (ms) it keeps
    /// the circuit open, jitter drawn from `jitter_seed`.
    pub fn open(self, now: u64, timing: &Timing, jitter_seed: u64) -> (Openings, u64) {
        let count = self.at(now).saturating_add(1);
        let open_ms = timing.open_time_ms(count, jitter_seed);
        let until = now.saturating_add(timing.openings_ttl_after_opening_ms(open_ms));
        (Openings { count, until }, open_ms)
    }

    /// Trials closed the circuit at `now`: the count lives one more window.
    pub fn closed(self, now: u64, timing: &Timing) -> Openings {
        Openings {
            count: self.at(now),
            until: now.saturating_add(timing.failure_timeout_ms),
        }
    }
}

/// A counted failure on a closed circuit whose rule said open: open for
/// `open_ms` (see [`Timing::open_time_ms`]). Returns `None` if the circuit
/// is no longer closed (someone else decided).
pub fn trip(phase: Phase, now: u64, open_ms: u64) -> Option<Phase> {
    match phase {
        Phase::Closed => Some(Phase::Open {
            until: now.saturating_add(open_ms),
        }),
        _ => None,
    }
}

/// The outcome of a trial of `episode`; a failure reopens for `open_ms`
/// (see [`Timing::open_time_ms`]). A permit from another episode (a later
/// lease started, or the circuit moved on) changes nothing.
pub fn trial_outcome(
    phase: Phase,
    permit_episode: u32,
    outcome: Outcome,
    now: u64,
    open_ms: u64,
    timing: &Timing,
) -> Phase {
    match phase {
        Phase::HalfOpen {
            episode,
            taken,
            passed,
            lease_until,
        } if episode == permit_episode => match outcome {
            Outcome::Failure => Phase::Open {
                until: now.saturating_add(open_ms),
            },
            Outcome::Success if passed.saturating_add(1) >= timing.half_open_successes => {
                Phase::Closed
            }
            Outcome::Success => Phase::HalfOpen {
                episode,
                taken: taken.saturating_sub(1),
                passed: passed + 1,
                lease_until,
            },
        },
        _ => phase,
    }
}

/// A trial of `episode` that ended without a verdict (its future was
/// dropped): its permit goes back so that another call can try.
pub fn release_trial(phase: Phase, permit_episode: u32) -> Phase {
    match phase {
        Phase::HalfOpen {
            episode,
            taken,
            passed,
            lease_until,
        } if episode == permit_episode => Phase::HalfOpen {
            episode,
            taken: taken.saturating_sub(1),
            passed,
            lease_until,
        },
        _ => phase,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        failure_timeout_ms: 60_000,
        circuit_timeout_ms: 10_000,
        half_open_max_calls: 2,
        half_open_successes: 2,
        trial_lease_ms: 10_000,
        backoff: None,
    };

    #[test]
    fn closed_admits_normal_calls() {
        assert_eq!(
            admit(Phase::Closed, 5, &T),
            (Phase::Closed, Admission::Admitted(Permit::Normal))
        );
    }

    #[test]
    fn open_rejects_until_its_deadline_with_the_time_left() {
        let open = trip(Phase::Closed, 1_000, T.circuit_timeout_ms).unwrap();
        assert_eq!(open, Phase::Open { until: 11_000 });
        assert_eq!(
            admit(open, 10_999, &T),
            (
                open,
                Admission::Rejected {
                    retry_after: Some(Duration::from_millis(1))
                }
            )
        );
        assert_eq!(open.state_at(10_999, &T), State::Open);
        assert_eq!(open.state_at(11_000, &T), State::HalfOpen);
    }

    #[test]
    fn only_a_closed_circuit_trips() {
        assert_eq!(
            trip(Phase::Open { until: 3 }, 1, T.circuit_timeout_ms),
            None
        );
        let half = Phase::HalfOpen {
            episode: 1,
            taken: 1,
            passed: 0,
            lease_until: 10_000,
        };
        assert_eq!(trip(half, 1, T.circuit_timeout_ms), None);
    }

    #[test]
    fn half_open_admits_at_most_max_calls_trials() {
        let (p1, a1) = admit(Phase::Open { until: 100 }, 100, &T);
        let Admission::Admitted(Permit::Trial { episode }) = a1 else {
            panic!("{a1:?}")
        };
        let (p2, a2) = admit(p1, 100, &T);
        assert_eq!(a2, Admission::Admitted(Permit::Trial { episode }));
        let (p3, a3) = admit(p2, 100, &T);
        assert_eq!(a3, Admission::Rejected { retry_after: None });
        assert_eq!(p3, p2);
        // a success frees no new slot: the trials must all pass
        let p4 = trial_outcome(p3, episode, Outcome::Success, 100, T.circuit_timeout_ms, &T);
        assert_eq!(
            admit(p4, 100, &T).1,
            Admission::Rejected { retry_after: None }
        );
        // the second success closes
        assert_eq!(
            trial_outcome(p4, episode, Outcome::Success, 100, T.circuit_timeout_ms, &T),
            Phase::Closed
        );
    }

    #[test]
    fn a_trial_failure_reopens_at_once() {
        let (p, _) = admit(Phase::Open { until: 100 }, 150, &T);
        let Phase::HalfOpen { episode, .. } = p else {
            panic!()
        };
        assert_eq!(
            trial_outcome(p, episode, Outcome::Failure, 150, T.circuit_timeout_ms, &T),
            Phase::Open { until: 10_150 }
        );
    }

    #[test]
    fn a_released_trial_frees_its_slot() {
        let (p, _) = admit(Phase::Open { until: 100 }, 150, &T);
        let (p, _) = admit(p, 150, &T);
        let Phase::HalfOpen { episode, .. } = p else {
            panic!()
        };
        let p = release_trial(p, episode);
        assert!(matches!(
            admit(p, 150, &T).1,
            Admission::Admitted(Permit::Trial { .. })
        ));
    }

    #[test]
    fn stale_trial_permits_change_nothing() {
        let half = Phase::HalfOpen {
            episode: 7,
            taken: 1,
            passed: 0,
            lease_until: 10_000,
        };
        assert_eq!(
            trial_outcome(half, 8, Outcome::Failure, 0, T.circuit_timeout_ms, &T),
            half
        );
        assert_eq!(release_trial(half, 8), half);
        assert_eq!(
            trial_outcome(
                Phase::Closed,
                7,
                Outcome::Failure,
                0,
                T.circuit_timeout_ms,
                &T
            ),
            Phase::Closed
        );
    }

    /// The trial of the first lease, admitted at `at` after an open period
    /// that ended at 100.
    fn first_trial(at: u64) -> (Phase, u32) {
        let (p, a) = admit(Phase::Open { until: 100 }, at, &T);
        let Admission::Admitted(Permit::Trial { episode }) = a else {
            panic!("{a:?}")
        };
        (p, episode)
    }

    #[test]
    fn an_idle_half_open_circuit_stays_half_open() {
        let (p, _) = first_trial(100);
        let p = release_trial(p, episode_in(p));
        // a day later: still half-open, and a call is a trial, not a
        // normal call
        let later = 100 + 24 * 3_600_000;
        assert_eq!(p.state_at(later, &T), State::HalfOpen);
        assert!(matches!(
            admit(p, later, &T).1,
            Admission::Admitted(Permit::Trial { .. })
        ));
        assert_eq!(
            Phase::Open { until: 100 }.state_at(later, &T),
            State::HalfOpen
        );
    }

    fn episode_in(p: Phase) -> u32 {
        match p {
            Phase::HalfOpen { episode, .. } => episode,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_lease_admits_at_most_max_calls_and_the_next_one_frees_their_slots() {
        let (p, first) = first_trial(100);
        let (p, a) = admit(p, 101, &T);
        assert_eq!(a, Admission::Admitted(Permit::Trial { episode: first }));
        // both trials hang: nothing more until the lease ends
        let (p, a) = admit(p, 100 + T.trial_lease_ms - 1, &T);
        assert_eq!(a, Admission::Rejected { retry_after: None });
        // the lease is over: a new one, under a new episode
        let (p, a) = admit(p, 100 + T.trial_lease_ms, &T);
        let Admission::Admitted(Permit::Trial { episode: second }) = a else {
            panic!("{a:?}")
        };
        assert_ne!(second, first);
        let (p, a) = admit(p, 100 + T.trial_lease_ms, &T);
        assert_eq!(a, Admission::Admitted(Permit::Trial { episode: second }));
        let (p, a) = admit(p, 100 + T.trial_lease_ms, &T);
        assert_eq!(a, Admission::Rejected { retry_after: None });
        // the hung trials of the first lease decide nothing now
        assert_eq!(
            trial_outcome(p, first, Outcome::Failure, 20_200, T.circuit_timeout_ms, &T),
            p
        );
        assert_eq!(release_trial(p, first), p);
        assert_eq!(p.state_at(20_200, &T), State::HalfOpen);
    }

    #[test]
    fn passes_outlive_their_lease() {
        let (p, first) = first_trial(100);
        let (p, _) = admit(p, 100, &T);
        // one passes, the other hangs past the lease
        let p = trial_outcome(p, first, Outcome::Success, 200, T.circuit_timeout_ms, &T);
        let (p, a) = admit(p, 100 + T.trial_lease_ms, &T);
        let Admission::Admitted(Permit::Trial { episode }) = a else {
            panic!("{a:?}")
        };
        // one pass is still needed, and one slot is free: the pass counts
        assert_eq!(
            admit(p, 100 + T.trial_lease_ms, &T).1,
            Admission::Rejected { retry_after: None }
        );
        assert_eq!(
            trial_outcome(
                p,
                episode,
                Outcome::Success,
                10_200,
                T.circuit_timeout_ms,
                &T
            ),
            Phase::Closed
        );
    }

    #[test]
    fn a_late_verdict_of_the_current_lease_still_decides() {
        // the lease is over but no other trial started a new one: the slow
        // trial's failure is still this period's, and reopens
        let (p, episode) = first_trial(100);
        assert_eq!(
            trial_outcome(
                p,
                episode,
                Outcome::Failure,
                50_000,
                T.circuit_timeout_ms,
                &T
            ),
            Phase::Open { until: 60_000 }
        );
    }

    #[test]
    fn manual_phases_hold_until_changed_by_hand() {
        assert_eq!(
            admit(Phase::ForcedOpen, u64::MAX, &T),
            (Phase::ForcedOpen, Admission::Rejected { retry_after: None })
        );
        assert_eq!(
            admit(Phase::Disabled, 0, &T),
            (Phase::Disabled, Admission::Admitted(Permit::Normal))
        );
        assert_eq!(trip(Phase::Disabled, 0, T.circuit_timeout_ms), None);
        assert_eq!(trip(Phase::ForcedOpen, 0, T.circuit_timeout_ms), None);
        assert_eq!(Phase::ForcedOpen.state_at(u64::MAX, &T), State::ForcedOpen);
        assert_eq!(Phase::Disabled.state_at(0, &T), State::Disabled);
    }

    #[test]
    fn without_half_open_an_expired_circuit_closes() {
        let t = Timing {
            half_open_max_calls: 0,
            half_open_successes: 0,
            ..T
        };
        let open = Phase::Open { until: 100 };
        assert_eq!(open.state_at(100, &t), State::Closed);
        assert_eq!(
            admit(open, 100, &t),
            (Phase::Closed, Admission::Admitted(Permit::Normal))
        );
    }

    const BACKOFF: Timing = Timing {
        circuit_timeout_ms: 1_000,
        backoff: Some(BackoffTiming {
            multiplier_permille: 2_000,
            max_ms: 10_000,
            jitter_permille: 0,
        }),
        ..T
    };

    #[test]
    fn without_backoff_every_opening_lasts_the_circuit_timeout() {
        for n in [0, 1, 2, 50, u32::MAX] {
            assert_eq!(T.open_time_ms(n, u64::from(n)), 10_000);
        }
    }

    #[test]
    fn backoff_multiplies_each_opening_and_stops_at_its_maximum() {
        let times: [u64; 7] = core::array::from_fn(|i| BACKOFF.open_time_ms(i as u32 + 1, 0));
        assert_eq!(times, [1_000, 2_000, 4_000, 8_000, 10_000, 10_000, 10_000]);
        // (0 reads as the first opening)
        assert_eq!(BACKOFF.open_time_ms(0, 0), 1_000);
        // a huge count costs a few steps, not u32::MAX of them
        assert_eq!(BACKOFF.open_time_ms(u32::MAX, 0), 10_000);
        // a fractional multiplier, in integer thousandths: 1000, 1500,
        // 2250, 3375, 5062 (5062.5 rounded down), 7593, 10000
        let t = Timing {
            backoff: Some(BackoffTiming {
                multiplier_permille: 1_500,
                ..BACKOFF.backoff.unwrap()
            }),
            ..BACKOFF
        };
        let times: [u64; 7] = core::array::from_fn(|i| t.open_time_ms(i as u32 + 1, 0));
        assert_eq!(times, [1_000, 1_500, 2_250, 3_375, 5_062, 7_593, 10_000]);
    }

    #[test]
    fn a_multiplier_too_small_to_move_a_short_time_leaves_it() {
        let t = Timing {
            circuit_timeout_ms: 3,
            backoff: Some(BackoffTiming {
                multiplier_permille: 1_001,
                max_ms: 100,
                jitter_permille: 0,
            }),
            ..T
        };
        assert_eq!(t.open_time_ms(1_000_000, 0), 3);
    }

    #[test]
    fn jitter_stays_within_its_fraction_and_the_bounds() {
        let t = Timing {
            backoff: Some(BackoffTiming {
                jitter_permille: 250,
                ..BACKOFF.backoff.unwrap()
            }),
            ..BACKOFF
        };
        let mut seen = [false; 2];
        for seed in 0..2_000_u64 {
            let first = t.open_time_ms(1, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            assert!((750..=1_250).contains(&first), "{first}");
            seen[usize::from(first > 1_000)] = true;
            let third = t.open_time_ms(3, seed);
            assert!((3_000..=5_000).contains(&third), "{third}");
            // at the maximum, jitter only shortens
            let capped = t.open_time_ms(9, seed);
            assert!((7_500..=10_000).contains(&capped), "{capped}");
        }
        assert_eq!(seen, [true, true], "jitter moves both ways");
        // the extremes of the seed give the extremes of the range
        assert_eq!(t.shortest_open_time_ms(), 750);
        assert_eq!(T.shortest_open_time_ms(), T.circuit_timeout_ms);
        assert_eq!(t.open_time_ms(1, 0), 750);
        assert_eq!(t.open_time_ms(1, 500), 1_250);
    }

    #[test]
    fn the_count_of_openings_goes_on_until_it_lapses() {
        let t = BACKOFF;
        let (o, ms) = Openings::default().open(0, &t, 0);
        assert_eq!((o.count, ms), (1, 1_000));
        // half-open lasts until the trials decide: the count lives a day
        // past the open time
        assert_eq!(o.until, 1_000 + 24 * 3_600_000);
        let (o, ms) = o.open(5_000, &t, 0);
        assert_eq!((o.count, ms), (2, 2_000));
        // trials close at 10 000: the count lives one window more
        let closed = o.closed(10_000, &t);
        assert_eq!(closed.until, 10_000 + t.failure_timeout_ms);
        // a trip within it goes on with the sequence
        assert_eq!(closed.open(69_999, &t, 0).1, 4_000);
        // a whole closed window starts again
        assert_eq!(
            closed.open(70_000, &t, 0),
            (
                Openings {
                    count: 1,
                    until: 70_000 + 1_000 + 24 * 3_600_000
                },
                1_000
            )
        );
        // without a half-open state the circuit closes when the flag
        // expires, and the count lasts one window after that
        let t = Timing {
            half_open_max_calls: 0,
            half_open_successes: 0,
            ..t
        };
        let (o, _) = Openings::default().open(0, &t, 0);
        assert_eq!(o.until, 1_000 + 60_000);
        assert_eq!(o.open(60_999, &t, 0).1, 2_000);
        assert_eq!(o.open(61_000, &t, 0).1, 1_000);
    }
}
