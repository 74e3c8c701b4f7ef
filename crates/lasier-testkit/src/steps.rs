//! The checks of the fused steps: scenarios driven through `admit`,
//! `record`, `release`, `open_circuit`, `state`, `counts` and `reset` on the
//! storage under test and on a reference that has only the primitives (so
//! runs the default bodies), compared step by step.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use lasier_core::{
    Admission, Circuit, Config, Counts, Outcome, Permit, Rule, State, SyncBatch, Transition,
};

use crate::probe::{ensure, Broken, Names, Probe, Timeline};
use crate::store::{Reference, Store, SyncStore};

/// Timeouts that never run out during a scenario.
const LONG: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy)]
pub(crate) enum RuleSpec {
    Max(u64),
    Percentage(u8, u64),
}

/// One breaker of a scenario. Timeouts are in ticks; `None` is [`LONG`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Breaker {
    pub(crate) name: &'static str,
    pub(crate) rule: RuleSpec,
    pub(crate) failure_ticks: Option<u32>,
    pub(crate) circuit_ticks: Option<u32>,
    pub(crate) half_open: u32,
    /// `half_open_successes`, if set.
    pub(crate) successes: Option<u32>,
    /// `sliding_window` buckets, if set.
    pub(crate) buckets: Option<u32>,
    /// `count_window` calls and `minimum_calls`, if set.
    pub(crate) calls: Option<(u32, u32)>,
    /// Open-time backoff, if set: (multiplier, max in ticks), no jitter.
    pub(crate) backoff: Option<(u32, u32)>,
}

const fn breaker(name: &'static str, rule: RuleSpec) -> Breaker {
    Breaker {
        name,
        rule,
        failure_ticks: None,
        circuit_ticks: None,
        half_open: 1,
        successes: None,
        buckets: None,
        calls: None,
        backoff: None,
    }
}

/// A breaker with a count window of `calls`, the rule asked from `minimum`
/// on.
const fn counting(rule: RuleSpec, calls: u32, minimum: u32) -> Breaker {
    Breaker {
        calls: Some((calls, minimum)),
        ..breaker("svc", rule)
    }
}

/// A breaker with a sliding window of `buckets` over `failure_ticks`.
const fn sliding(rule: RuleSpec, failure_ticks: u32, buckets: u32) -> Breaker {
    Breaker {
        buckets: Some(buckets),
        ..windowed(rule, failure_ticks)
    }
}

const fn windowed(rule: RuleSpec, failure_ticks: u32) -> Breaker {
    Breaker {
        failure_ticks: Some(failure_ticks),
        ..breaker("svc", rule)
    }
}

/// MaxFailuresRule(1), circuit_timeout 2 ticks, a window of
/// `failure_ticks`, `half_open` trial calls, and an open-time backoff
/// doubling up to `max_ticks`.
const fn backing_off(failure_ticks: u32, half_open: u32, max_ticks: u32) -> Breaker {
    Breaker {
        failure_ticks: Some(failure_ticks),
        backoff: Some((2, max_ticks)),
        ..opening(RuleSpec::Max(1), 2, half_open)
    }
}

const fn opening(rule: RuleSpec, circuit_ticks: u32, half_open: u32) -> Breaker {
    Breaker {
        circuit_ticks: Some(circuit_ticks),
        half_open,
        ..breaker("svc", rule)
    }
}

/// An action on breaker `.0` (or permit slot, for `Record` and `Release`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action {
    /// `admit`, then `record` the outcome if admitted: one guarded call.
    Call(usize, Outcome),
    /// `admit`, keeping the permit in slot `.1`.
    Admit(usize, usize),
    /// `record` the outcome of the call admitted in slot `.0`.
    Record(usize, Outcome),
    /// `release` the permit in slot `.0`.
    Release(usize),
    Open(usize),
    StateOf(usize),
    CountsOf(usize),
    Reset(usize),
    /// Time moves on by `.0` half ticks.
    Advance(u32),
    /// `sync` a batch of `.1` failures among `.2` requests of breaker `.0`
    /// (the step of sync mode), as one part.
    Sync(usize, u64, u64),
    /// The half-open marker of breaker `.0`, if the storage keeps one among
    /// its keys, is written again without a TTL and with two leases
    /// started, as a writer that died mid-step (or a hand) would leave it.
    MarkerWithoutTtl(usize),
    /// `state` of breaker `.0`, which must be `.1` on both sides: a
    /// scenario's fixed point, so that the storage and the reference
    /// cannot agree on a wrong answer.
    StateIs(usize, State),
}

use Action::{
    Admit, Advance, Call, CountsOf, MarkerWithoutTtl, Open, Record, Release, Reset, StateIs,
    StateOf, Sync,
};
use Outcome::{Failure as Fail, Success as Pass};

/// A sequence of steps, the name of the check that runs it, and what it
/// shows.
pub(crate) struct Scenario {
    pub(crate) check: &'static str,
    pub(crate) what: &'static str,
    pub(crate) breakers: &'static [Breaker],
    pub(crate) steps: &'static [Action],
}

impl fmt::Debug for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.check)
    }
}

impl Scenario {
    pub(crate) fn is_timed(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, Advance(_)))
    }
}

pub(crate) static SCENARIOS: &[Scenario] = &[
    Scenario {
        check: "steps_max_failures_opens_the_circuit",
        what: "MaxFailuresRule(3): successes are not counted, the third failure opens, then calls are rejected",
        breakers: &[breaker("svc", RuleSpec::Max(3))],
        steps: &[
            Call(0, Pass), CountsOf(0), Call(0, Fail), CountsOf(0), Call(0, Pass), Call(0, Fail),
            StateOf(0), CountsOf(0), Call(0, Fail), StateOf(0), CountsOf(0), Call(0, Pass),
            Admit(0, 0), StateOf(0),
        ],
    },
    Scenario {
        check: "steps_percentage_rule_counts_requests",
        what: "PercentageFailuresRule(50 %, more than 4 requests): requests and failures are counted, 4 failures of 8 open",
        breakers: &[breaker("svc", RuleSpec::Percentage(50, 4))],
        steps: &[
            Call(0, Pass), Call(0, Pass), Call(0, Pass), Call(0, Pass), CountsOf(0), Call(0, Fail),
            CountsOf(0), Call(0, Fail), Call(0, Fail), CountsOf(0), StateOf(0), Call(0, Fail),
            StateOf(0), CountsOf(0), Call(0, Fail),
        ],
    },
    Scenario {
        check: "steps_sync_adds_batches_and_trips",
        what: "PercentageFailuresRule(50 %, more than 4 requests) and MaxFailuresRule(3): a sync adds a batch to what calls counted, reports the counts, opens when the rule says so, and counts nothing while open",
        breakers: &[breaker("svc", RuleSpec::Percentage(50, 4)), breaker("max", RuleSpec::Max(3))],
        steps: &[
            Call(0, Pass), Call(0, Pass), Sync(0, 1, 3), CountsOf(0), Sync(0, 0, 0), Call(0, Fail),
            Sync(0, 3, 3), StateOf(0), Sync(0, 1, 1), CountsOf(0), Call(0, Pass),
            Sync(1, 0, 9), Sync(1, 2, 2), Call(1, Pass), Call(1, Fail), StateOf(1), Sync(1, 0, 0),
        ],
    },
    Scenario {
        check: "steps_outcomes_after_opening_are_not_counted",
        what: "MaxFailuresRule(1): a call admitted before the circuit opened and failing after it is not counted",
        breakers: &[breaker("svc", RuleSpec::Max(1))],
        steps: &[
            Admit(0, 0), Admit(0, 1), Record(0, Fail), Record(1, Fail), StateOf(0), CountsOf(0),
        ],
    },
    Scenario {
        check: "steps_open_circuit_and_reset",
        what: "MaxFailuresRule(5): open_circuit opens and empties the window; reset closes and empties it",
        breakers: &[breaker("svc", RuleSpec::Max(5))],
        steps: &[
            Call(0, Fail), Open(0), StateOf(0), CountsOf(0), Call(0, Pass), Reset(0), StateOf(0),
            CountsOf(0), Call(0, Fail), CountsOf(0), Open(0), Open(0), StateOf(0), Reset(0),
            Reset(0), StateOf(0),
        ],
    },
    Scenario {
        check: "steps_failures_expire_with_their_window",
        what: "MaxFailuresRule(2), failure_timeout 2 ticks: a failure older than the window no longer counts",
        breakers: &[windowed(RuleSpec::Max(2), 2)],
        steps: &[
            Call(0, Fail), CountsOf(0), Advance(5), CountsOf(0), StateOf(0), Call(0, Fail),
            CountsOf(0), Advance(2), CountsOf(0), Call(0, Fail), StateOf(0),
        ],
    },
    Scenario {
        check: "steps_requests_and_failures_share_a_window",
        what: "PercentageFailuresRule(50 %, more than 2 requests), failure_timeout 2 ticks: both counters expire together",
        breakers: &[windowed(RuleSpec::Percentage(50, 2), 2)],
        steps: &[
            Call(0, Pass), Call(0, Fail), CountsOf(0), Advance(3), Call(0, Pass), CountsOf(0),
            Advance(2), CountsOf(0), Call(0, Fail), CountsOf(0), Call(0, Pass), Call(0, Pass),
            CountsOf(0), StateOf(0),
        ],
    },
    Scenario {
        check: "steps_half_open_trial_success_closes",
        what: "MaxFailuresRule(1), circuit_timeout 2 ticks, 1 half-open call: after the open time one trial passes and its success closes",
        breakers: &[opening(RuleSpec::Max(1), 2, 1)],
        steps: &[
            Call(0, Fail), StateOf(0), Call(0, Pass), Advance(5), StateOf(0), Admit(0, 0),
            Admit(0, 1), StateOf(0), Record(0, Pass), StateOf(0), CountsOf(0), Call(0, Pass),
            Call(0, Fail), StateOf(0),
        ],
    },
    Scenario {
        check: "steps_half_open_trial_failure_reopens",
        what: "MaxFailuresRule(1), circuit_timeout 2 ticks, 1 half-open call: a failed trial reopens for a full open time",
        breakers: &[opening(RuleSpec::Max(1), 2, 1)],
        steps: &[
            Call(0, Fail), Advance(5), Admit(0, 0), Record(0, Fail), StateOf(0), Call(0, Pass),
            Advance(2), StateOf(0), Advance(3), StateOf(0), Call(0, Pass), StateOf(0),
            CountsOf(0),
        ],
    },
    Scenario {
        check: "steps_half_open_needs_every_trial",
        what: "MaxFailuresRule(1), circuit_timeout 2 ticks, 2 half-open calls: two trials pass, a third is rejected, both must succeed to close",
        breakers: &[opening(RuleSpec::Max(1), 2, 2)],
        steps: &[
            Call(0, Fail), Advance(5), Admit(0, 0), Admit(0, 1), Admit(0, 2), Record(0, Pass),
            StateOf(0), Record(1, Pass), StateOf(0), CountsOf(0),
        ],
    },
    Scenario {
        check: "steps_half_open_closes_after_enough_successes",
        what: "MaxFailuresRule(1), circuit_timeout 2 ticks, 3 half-open calls of which 2 must pass: three trials run, the second success closes the circuit, and the third trial's late failure decides nothing",
        breakers: &[Breaker {
            successes: Some(2),
            ..opening(RuleSpec::Max(1), 2, 3)
        }],
        steps: &[
            Call(0, Fail), Advance(5), Admit(0, 0), Admit(0, 1), Admit(0, 2), Admit(0, 3),
            Record(0, Pass), StateOf(0), Record(1, Pass), StateOf(0), Record(2, Fail),
            StateOf(0), CountsOf(0), Call(0, Pass), StateOf(0),
        ],
    },
    Scenario {
        check: "steps_half_open_one_success_closes_and_one_failure_reopens",
        what: "MaxFailuresRule(1), circuit_timeout 2 ticks, 2 half-open calls of which 1 must pass: a failed trial reopens the circuit; in the next half-open period one success closes it",
        breakers: &[Breaker {
            successes: Some(1),
            ..opening(RuleSpec::Max(1), 2, 2)
        }],
        steps: &[
            Call(0, Fail), Advance(5), Admit(0, 0), Record(0, Fail), StateOf(0), Advance(5),
            Admit(0, 1), Admit(0, 2), Record(1, Pass), StateOf(0), Record(2, Pass), StateOf(0),
            CountsOf(0),
        ],
    },
    Scenario {
        check: "steps_released_trial_frees_its_slot",
        what: "MaxFailuresRule(1), circuit_timeout 2 ticks, 1 half-open call: a trial that ends without a verdict gives its slot back, and a rejected call takes none",
        breakers: &[opening(RuleSpec::Max(1), 2, 1)],
        steps: &[
            Call(0, Fail), Advance(5), Admit(0, 0), Admit(0, 1), Release(0), StateOf(0),
            Admit(0, 2), Admit(0, 3), Release(2), Admit(0, 1), Record(1, Pass), StateOf(0),
        ],
    },
    Scenario {
        check: "steps_a_trial_of_an_earlier_period_decides_nothing",
        what: "MaxFailuresRule(1), circuit_timeout 2 ticks, 3 half-open calls: after a failed trial reopens the circuit, the next half-open period ignores the other trials of the first (a late success is no pass, a late cancellation frees no slot)",
        breakers: &[opening(RuleSpec::Max(1), 2, 3)],
        steps: &[
            Call(0, Fail), Advance(5), Admit(0, 0), Admit(0, 1), Admit(0, 2), Record(2, Fail),
            StateOf(0), Advance(5), StateOf(0), Admit(0, 3), Record(0, Pass), Release(1),
            Admit(0, 4), Admit(0, 5), Admit(0, 6), StateOf(0), Record(3, Pass), Record(4, Pass),
            StateOf(0), Record(5, Pass), StateOf(0), CountsOf(0),
        ],
    },
    Scenario {
        check: "steps_a_trial_that_outlives_its_lease_frees_its_slot",
        what: "MaxFailuresRule(1), circuit_timeout 2 ticks (the trial lease too), 1 half-open call: a trial that has not reported when its lease ends frees its slot, the circuit stays half-open, the next call is a trial of a new lease, and the slow trial's late failure decides nothing",
        breakers: &[opening(RuleSpec::Max(1), 2, 1)],
        steps: &[
            Call(0, Fail), Advance(5), Admit(0, 0), Admit(0, 1), Advance(3), StateOf(0),
            Admit(0, 1), Advance(2), StateOf(0), Admit(0, 1), Admit(0, 2), Record(0, Fail),
            StateOf(0), Admit(0, 2), Record(1, Pass), StateOf(0), CountsOf(0),
        ],
    },
    Scenario {
        check: "steps_an_idle_half_open_circuit_stays_half_open",
        what: "MaxFailuresRule(1), circuit_timeout 2 ticks, 2 half-open calls: nobody calls for 6 ticks after the opening, and the circuit is still half-open: the next calls are bounded trials, not normal calls",
        breakers: &[opening(RuleSpec::Max(1), 2, 2)],
        steps: &[
            Call(0, Fail), Advance(12), StateOf(0), Admit(0, 0), Admit(0, 1), Admit(0, 2),
            StateOf(0), Record(0, Pass), StateOf(0), Record(1, Pass), StateOf(0),
        ],
    },
    Scenario {
        check: "steps_a_half_open_marker_without_a_ttl_heals",
        what: "MaxFailuresRule(1), circuit_timeout 2 ticks, 2 half-open calls: the half-open marker is found without a TTL (a writer died mid-step): the next calls are trials of a new lease, and their successes close the circuit",
        breakers: &[opening(RuleSpec::Max(1), 2, 2)],
        steps: &[
            Call(0, Fail), Advance(5), StateOf(0), MarkerWithoutTtl(0), StateOf(0), Admit(0, 0),
            Admit(0, 1), Admit(0, 2), Record(0, Pass), Record(1, Pass), StateOf(0), Call(0, Pass),
        ],
    },
    Scenario {
        check: "steps_without_half_open_state",
        what: "MaxFailuresRule(1), circuit_timeout 2 ticks, 0 half-open calls: the circuit closes when its open time is over",
        breakers: &[opening(RuleSpec::Max(1), 2, 0)],
        steps: &[
            Call(0, Fail), StateOf(0), Advance(5), StateOf(0), Call(0, Pass), Call(0, Fail),
            StateOf(0),
        ],
    },
    Scenario {
        check: "steps_sliding_window_counts_a_burst_across_bucket_boundaries",
        what: "MaxFailuresRule(4), failure_timeout 6 ticks in 3 buckets: failures counted in two buckets add up, each bucket stops counting one window after its first count, and the fourth failure in the live buckets opens",
        breakers: &[sliding(RuleSpec::Max(4), 6, 3)],
        steps: &[
            Call(0, Fail), Advance(3), Call(0, Fail), CountsOf(0), Advance(2), Call(0, Fail),
            CountsOf(0), StateOf(0), Advance(8), CountsOf(0), Call(0, Fail), CountsOf(0),
            Advance(5), CountsOf(0), Call(0, Fail), Call(0, Fail), StateOf(0), Call(0, Fail),
            StateOf(0), CountsOf(0),
        ],
    },
    Scenario {
        check: "steps_sliding_window_with_percentage_failures",
        what: "PercentageFailuresRule(50 %, more than 2 requests), failure_timeout 4 ticks in 2 buckets: requests and failures of two buckets add up, and the rule opens on their sum",
        breakers: &[sliding(RuleSpec::Percentage(50, 2), 4, 2)],
        steps: &[
            Call(0, Pass), Call(0, Fail), Call(0, Pass), CountsOf(0), Advance(5), CountsOf(0),
            Call(0, Pass), CountsOf(0), Call(0, Fail), StateOf(0), CountsOf(0), Advance(6),
            CountsOf(0),
        ],
    },
    Scenario {
        check: "steps_sliding_window_starts_empty_after_opening_and_closing",
        what: "MaxFailuresRule(2), failure_timeout 6 ticks in 3 buckets, circuit_timeout 2 ticks, 1 half-open call: the opening and the trial's closing each empty the buckets",
        breakers: &[Breaker {
            circuit_ticks: Some(2),
            ..sliding(RuleSpec::Max(2), 6, 3)
        }],
        steps: &[
            Call(0, Fail), Call(0, Fail), StateOf(0), CountsOf(0), Advance(5), Admit(0, 0),
            Record(0, Pass), StateOf(0), CountsOf(0), Call(0, Fail), CountsOf(0), StateOf(0),
            Open(0), CountsOf(0), Reset(0), CountsOf(0), Call(0, Fail), CountsOf(0),
            StateOf(0),
        ],
    },
    Scenario {
        check: "steps_sliding_window_sync",
        what: "PercentageFailuresRule(50 %, more than 4 requests), failure_timeout 4 ticks in 2 buckets: batches of sync mode land in the current bucket, and the rule opens on the live buckets' sum",
        breakers: &[sliding(RuleSpec::Percentage(50, 4), 4, 2)],
        steps: &[
            Sync(0, 1, 3), Advance(5), Sync(0, 0, 1), CountsOf(0), Sync(0, 2, 2), StateOf(0),
            Advance(6), Reset(0), Sync(0, 2, 3), CountsOf(0), StateOf(0),
        ],
    },
    Scenario {
        check: "steps_backoff_doubles_up_to_its_maximum_and_starts_again_after_a_closed_window",
        what: "MaxFailuresRule(1), circuit_timeout 2 ticks, failure_timeout 4 ticks, 1 half-open call, open-time backoff x2 up to 6 ticks: the trip opens for 2 ticks, a failed trial reopens for 4, the next for 6 (not 8); trials close it, and after a whole closed window the next trip opens for 2 ticks again",
        breakers: &[backing_off(4, 1, 6)],
        steps: &[
            Call(0, Fail), StateIs(0, State::Open), Advance(5), StateIs(0, State::HalfOpen),
            Admit(0, 0), Record(0, Fail), Advance(7), StateIs(0, State::Open), Advance(2),
            StateIs(0, State::HalfOpen), Admit(0, 1), Record(1, Fail), Advance(11),
            StateIs(0, State::Open), Advance(2), StateIs(0, State::HalfOpen), Admit(0, 2),
            Record(2, Pass), StateIs(0, State::Closed), Advance(9), Call(0, Fail), Advance(3),
            StateIs(0, State::Open), Advance(2), StateIs(0, State::HalfOpen),
        ],
    },
    Scenario {
        check: "steps_backoff_goes_on_after_a_closing_followed_by_a_trip_within_the_window",
        what: "MaxFailuresRule(1), circuit_timeout 2 ticks, failure_timeout 8 ticks, 1 half-open call, open-time backoff x2 up to 8 ticks: open 2 ticks, a failed trial reopens for 4, a trial closes it, and a trip one tick later opens for 8: the sequence goes on",
        breakers: &[backing_off(8, 1, 8)],
        steps: &[
            Call(0, Fail), Advance(5), Admit(0, 0), Record(0, Fail), Advance(9), Admit(0, 1),
            Record(1, Pass), StateIs(0, State::Closed), Advance(2), Call(0, Fail),
            StateIs(0, State::Open), Advance(15), StateIs(0, State::Open), Advance(2),
            StateIs(0, State::HalfOpen),
        ],
    },
    Scenario {
        check: "steps_backoff_without_half_open_state",
        what: "MaxFailuresRule(1), circuit_timeout 2 ticks, failure_timeout 3 ticks, 0 half-open calls, open-time backoff x2 up to 8 ticks: the circuit closes when the flag expires; a trip within the window after that opens for 4 ticks, one after a whole closed window for 2",
        breakers: &[backing_off(3, 0, 8)],
        steps: &[
            Call(0, Fail), Advance(5), StateIs(0, State::Closed), Call(0, Fail), Advance(7),
            StateIs(0, State::Open), Advance(2), StateIs(0, State::Closed), Advance(6),
            Call(0, Fail), Advance(3), StateIs(0, State::Open), Advance(2),
            StateIs(0, State::Closed),
        ],
    },
    Scenario {
        check: "steps_count_window_holds_the_last_n_outcomes",
        what: "MaxFailuresRule(3), count window of 4: successes push failures out of the window, and the third failure among the last four outcomes opens",
        breakers: &[counting(RuleSpec::Max(3), 4, 1)],
        steps: &[
            Call(0, Fail), Call(0, Pass), Call(0, Fail), CountsOf(0), Call(0, Pass),
            Call(0, Pass), CountsOf(0), Call(0, Pass), CountsOf(0), Call(0, Fail), Call(0, Fail),
            CountsOf(0), StateIs(0, State::Closed), Call(0, Fail), StateIs(0, State::Open),
            CountsOf(0),
        ],
    },
    Scenario {
        check: "steps_count_window_waits_for_its_minimum_calls",
        what: "PercentageFailuresRule(50 %, more than 0 requests), count window of 4 asked from 3 outcomes on: two failures do not open, the third outcome's failure does",
        breakers: &[counting(RuleSpec::Percentage(50, 0), 4, 3)],
        steps: &[
            Call(0, Fail), StateOf(0), Call(0, Fail), StateIs(0, State::Closed), CountsOf(0),
            Call(0, Pass), StateOf(0), Call(0, Fail), StateIs(0, State::Open), CountsOf(0),
        ],
    },
    Scenario {
        check: "steps_count_window_sync",
        what: "MaxFailuresRule(3), count window of 5: a sync's batch lands in the ring (its successes, then its failures), a batch longer than the ring keeps its last five, and the rule opens on the ring",
        breakers: &[counting(RuleSpec::Max(3), 5, 1)],
        steps: &[
            Sync(0, 1, 3), CountsOf(0), Sync(0, 1, 4), CountsOf(0), Sync(0, 0, 2), CountsOf(0),
            Reset(0), Sync(0, 2, 12), CountsOf(0), Sync(0, 1, 1), StateOf(0), CountsOf(0),
        ],
    },
    Scenario {
        check: "steps_count_window_starts_empty_after_opening_and_closing",
        what: "MaxFailuresRule(2), count window of 3, circuit_timeout 2 ticks, 1 half-open call: the opening and the trial's closing empty the ring",
        breakers: &[Breaker {
            circuit_ticks: Some(2),
            ..counting(RuleSpec::Max(2), 3, 1)
        }],
        steps: &[
            Call(0, Pass), Call(0, Fail), Call(0, Fail), StateOf(0), CountsOf(0), Advance(5),
            Admit(0, 0), Record(0, Pass), StateOf(0), CountsOf(0), Call(0, Fail), CountsOf(0),
            StateOf(0), Open(0), CountsOf(0), Reset(0), Call(0, Pass), CountsOf(0),
        ],
    },
    Scenario {
        check: "circuits_do_not_share_state",
        what: "two breakers on one storage: counting, opening and resetting one leaves the other as it was",
        breakers: &[breaker("svc-a", RuleSpec::Max(2)), breaker("svc-b", RuleSpec::Max(2))],
        steps: &[
            Call(0, Fail), Call(1, Fail), Call(1, Fail), StateOf(0), CountsOf(0), StateOf(1),
            Reset(1), StateOf(1), CountsOf(0), Call(0, Fail), StateOf(0), StateOf(1),
            CountsOf(1), Call(1, Fail), Open(1), Reset(0), StateOf(0), StateOf(1), CountsOf(0),
        ],
    },
    Scenario {
        check: "similar_names_do_not_share_state",
        what: "breakers whose names look alike (case, a suffix, a space, a hash tag, an accent, a long common prefix): each keeps its own counts and state",
        breakers: &[
            breaker("svc", RuleSpec::Max(9)),
            breaker("Svc", RuleSpec::Max(9)),
            breaker("svc2", RuleSpec::Max(9)),
            breaker("svc ", RuleSpec::Max(9)),
            breaker("svc:eu", RuleSpec::Max(9)),
            breaker("{svc}", RuleSpec::Max(9)),
            breaker("sv\u{e7}", RuleSpec::Max(9)),
            breaker(LONG_A, RuleSpec::Max(9)),
            breaker(LONG_B, RuleSpec::Max(9)),
        ],
        steps: &[
            Call(0, Fail), Call(1, Fail), Call(1, Fail), Call(2, Fail), Call(2, Fail),
            Call(2, Fail), Call(3, Fail), Call(4, Fail), Call(4, Fail), Call(5, Fail),
            Call(5, Fail), Call(5, Fail), Call(6, Fail), Call(7, Fail), Call(7, Fail),
            Call(8, Fail), Call(8, Fail), Call(8, Fail), CountsOf(0), CountsOf(1), CountsOf(2),
            CountsOf(3), CountsOf(4), CountsOf(5), CountsOf(6), CountsOf(7), CountsOf(8),
            Reset(0), Reset(7), Open(2), Open(3), CountsOf(1), CountsOf(4), CountsOf(5),
            CountsOf(6), CountsOf(8), StateOf(0), StateOf(1), StateOf(4), StateOf(5),
            StateOf(6), StateOf(7), StateOf(8),
        ],
    },
];

/// Two names of 200 characters that differ only in their last one.
const LONG_A: &str = concat!(
    "long-name-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "xxxxxxxxxxxxxxxxxxxxxxxa"
);
const LONG_B: &str = concat!(
    "long-name-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "xxxxxxxxxxxxxxxxxxxxxxxb"
);

/// An admission, without what may differ between equivalent storages (the
/// `retry_after` hint, the trial's episode number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admitted {
    Normal,
    Trial,
    Rejected,
}

fn admitted(admission: Admission) -> Admitted {
    match admission {
        Admission::Admitted(Permit::Normal) => Admitted::Normal,
        Admission::Admitted(Permit::Trial { .. }) => Admitted::Trial,
        // (an admission a later lasier-core adds: not what a storage
        // should answer yet)
        _ => Admitted::Rejected,
    }
}

/// What a step returned, as compared. The transition that `admit` reports
/// is informational and not compared; the one `record` reports is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Call(Admitted, Option<Transition>),
    Admit(Admitted),
    Record(Option<Transition>),
    NoPermit,
    Done,
    State(State),
    Counts(Counts),
    /// What a sync brought back (the time left open aside: a storage of
    /// primitives cannot read it).
    Synced(State, Counts, Option<Transition>),
}

struct ShowTransition(Option<Transition>);

impl fmt::Display for ShowTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("no state change"),
            Some(t) => write!(f, "{} -> {}", t.from, t.to),
        }
    }
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seen::Call(Admitted::Rejected, _) => f.write_str("rejected"),
            Seen::Call(a, t) => write!(f, "{a:?} permit, {}", ShowTransition(*t)),
            Seen::Admit(a) => write!(f, "{a:?}"),
            Seen::Record(t) => write!(f, "{}", ShowTransition(*t)),
            Seen::NoPermit => f.write_str("(no permit in that slot)"),
            Seen::Done => f.write_str("Ok"),
            Seen::State(s) => write!(f, "{s}"),
            Seen::Counts(c) => write!(f, "failures: {}, requests: {}", c.failures, c.requests),
            Seen::Synced(state, c, t) => write!(
                f,
                "synced: {state}, failures: {}, requests: {}, {}",
                c.failures,
                c.requests,
                ShowTransition(*t)
            ),
        }
    }
}

fn describe(step: Action, breakers: &[Breaker], slots: &[Option<usize>; SLOTS]) -> String {
    let on = |b: usize| breakers.get(b).map_or("?", |b| b.name);
    let slot = |s: usize| slots.get(s).copied().flatten().map_or("?", on);
    match step {
        Call(b, o) => format!("a call on {:?} that ends in {o:?} (admit + record)", on(b)),
        Admit(b, s) => format!("admit on {:?} (permit #{s})", on(b)),
        Record(s, o) => format!("record {o:?} for permit #{s} on {:?}", slot(s)),
        Release(s) => format!("release permit #{s} on {:?}", slot(s)),
        Open(b) => format!("open_circuit on {:?}", on(b)),
        StateOf(b) => format!("state of {:?}", on(b)),
        StateIs(b, state) => format!("state of {:?} (it must be {state})", on(b)),
        CountsOf(b) => format!("counts of {:?}", on(b)),
        Reset(b) => format!("reset of {:?}", on(b)),
        Sync(b, f, r) => format!("sync of {:?}: {f} failures, {r} requests", on(b)),
        Advance(h) => format!("time moves on by {} ticks", f64::from(h) / 2.0),
        MarkerWithoutTtl(b) => format!(
            "the half-open marker of {:?} is written again without a TTL, 2 leases started",
            on(b)
        ),
    }
}

const SLOTS: usize = 8;

/// One side of the comparison: a store and the permits it handed out.
struct Side<'a> {
    store: &'a dyn Store,
    permits: [Option<Permit>; SLOTS],
    /// The number of the last part this side synced.
    parts: u64,
}

impl Side<'_> {
    async fn run(
        &mut self,
        step: Action,
        circuits: &[(Circuit, Arc<dyn Rule>)],
        slots: &[Option<usize>; SLOTS],
    ) -> Result<Seen, lasier_core::StorageError> {
        let breaker = |b: usize| circuits.get(b);
        let s = self.store;
        Ok(match step {
            Call(b, outcome) => {
                let Some((c, rule)) = breaker(b) else {
                    return Ok(Seen::NoPermit);
                };
                match s.admit(c).await?.0 {
                    Admission::Admitted(permit) => {
                        let kind = admitted(Admission::Admitted(permit));
                        Seen::Call(kind, s.record(c, permit, outcome, &**rule).await?)
                    }
                    rejected => Seen::Call(admitted(rejected), None),
                }
            }
            Admit(b, slot) => {
                let Some((c, _)) = breaker(b) else {
                    return Ok(Seen::NoPermit);
                };
                let admission = s.admit(c).await?.0;
                if let (Admission::Admitted(permit), Some(p)) =
                    (admission, self.permits.get_mut(slot))
                {
                    *p = Some(permit);
                }
                Seen::Admit(admitted(admission))
            }
            Record(slot, outcome) => {
                let permit = self.permits.get_mut(slot).and_then(Option::take);
                match (permit, slots.get(slot).copied().flatten().and_then(breaker)) {
                    (Some(permit), Some((c, rule))) => {
                        Seen::Record(s.record(c, permit, outcome, &**rule).await?)
                    }
                    _ => Seen::NoPermit,
                }
            }
            Release(slot) => {
                let permit = self.permits.get_mut(slot).and_then(Option::take);
                match (permit, slots.get(slot).copied().flatten().and_then(breaker)) {
                    (Some(permit), Some((c, _))) => {
                        s.release(c, permit).await?;
                        Seen::Done
                    }
                    _ => Seen::NoPermit,
                }
            }
            Open(b) => match breaker(b) {
                Some((c, _)) => {
                    s.open_circuit(c).await?;
                    Seen::Done
                }
                None => Seen::NoPermit,
            },
            StateOf(b) | StateIs(b, _) => match breaker(b) {
                Some((c, _)) => Seen::State(s.state(c).await?),
                None => Seen::NoPermit,
            },
            CountsOf(b) => match breaker(b) {
                Some((c, _)) => Seen::Counts(s.counts(c).await?),
                None => Seen::NoPermit,
            },
            Reset(b) => match breaker(b) {
                Some((c, _)) => {
                    s.reset(c).await?;
                    Seen::Done
                }
                None => Seen::NoPermit,
            },
            Sync(b, failures, requests) => match breaker(b) {
                Some((c, rule)) => {
                    self.parts += 1;
                    let writer = format!("lasier:sync:{}:testkit", c.name());
                    let parts = [(self.parts, Counts::new(failures, requests))];
                    let snapshot = s.sync(c, &SyncBatch::new(&writer, &parts), &**rule).await?;
                    Seen::Synced(snapshot.state, snapshot.counts, snapshot.transition)
                }
                None => Seen::NoPermit,
            },
            Advance(_) => Seen::Done,
            MarkerWithoutTtl(b) => match breaker(b) {
                Some((c, _)) => {
                    // (a storage that keeps its circuits elsewhere than in
                    // its keys has no marker there, and nothing changes)
                    let key = c.keys().trials();
                    if let Some(marker) = s.get(key).await? {
                        s.set(key, (marker & !0xFFFF) | 2, None).await?;
                    }
                    Seen::Done
                }
                None => Seen::NoPermit,
            },
        })
    }
}

fn build(b: &Breaker, names: &Names, tick: Duration) -> Result<(Circuit, Arc<dyn Rule>), Broken> {
    let mut config = Config::new(names.circuit_name(b.name));
    match b.rule {
        RuleSpec::Max(n) => config.max_failures(n),
        RuleSpec::Percentage(p, min) => config.percentage_failures(p, min),
    };
    config
        .failure_timeout(b.failure_ticks.map_or(LONG, |n| tick * n))
        .circuit_timeout(b.circuit_ticks.map_or(LONG, |n| tick * n))
        .half_open_max_calls(b.half_open);
    if let Some(successes) = b.successes {
        config.half_open_successes(successes);
    }
    if let Some(buckets) = b.buckets {
        config.sliding_window(buckets);
    }
    if let Some((calls, minimum)) = b.calls {
        config.count_window(calls).minimum_calls(minimum);
    }
    if let Some((multiplier, max_ticks)) = b.backoff {
        config.open_backoff(
            lasier_core::OpenBackoff::exponential(f64::from(multiplier)).max(tick * max_ticks),
        );
    }
    let built = config.validate().map_err(|e| {
        Broken(format!(
            "the kit built an invalid breaker ({e}); please report this"
        ))
    })?;
    names.track(&built.0);
    Ok(built)
}

/// Runs `scenario` on the storage under test and on the reference, step by
/// step, and fails at the first step whose results differ.
pub(crate) async fn compare(
    scenario: &Scenario,
    p: &Probe<'_>,
    names: &Names,
    t: &mut Timeline,
) -> Result<(), Broken> {
    let circuits = scenario
        .breakers
        .iter()
        .map(|b| build(b, names, t.tick()))
        .collect::<Result<Vec<_>, _>>()?;
    let reference = SyncStore(Reference::new(t.manual_clock()));
    let mut sut = Side {
        store: p.0,
        permits: [None; SLOTS],
        parts: 0,
    };
    let mut model = Side {
        store: &reference,
        permits: [None; SLOTS],
        parts: 0,
    };
    let mut slots: [Option<usize>; SLOTS] = [None; SLOTS];
    let mut transcript = Vec::new();
    for (i, step) in scenario.steps.iter().copied().enumerate() {
        if let Advance(halves) = step {
            t.advance_halves(halves).await;
        }
        if let Admit(b, slot) = step {
            // Remember which breaker each slot's permit belongs to.
            if let Some(s) = slots.get_mut(slot) {
                *s = Some(b);
            }
        }
        let what = describe(step, scenario.breakers, &slots);
        let got = sut.run(step, &circuits, &slots).await.map_err(|e| {
            Broken(format!(
                "{}\nstep {}: {what}: the storage returned an error: {e}",
                header(scenario, &transcript),
                i + 1
            ))
        })?;
        let expected = model.run(step, &circuits, &slots).await.map_err(|e| {
            Broken(format!(
                "step {}: {what}: the reference returned an error ({e}); please report this",
                i + 1
            ))
        })?;
        if let StateIs(_, state) = step {
            if expected != Seen::State(state) {
                return Err(Broken(format!(
                    "step {}: {what}: the reference answered `{expected}`; please report this",
                    i + 1
                )));
            }
            if got != Seen::State(state) {
                return Err(Broken(format!(
                    "{}\nstep {}: {what}: the storage answered `{got}`",
                    header(scenario, &transcript),
                    i + 1
                )));
            }
        }
        if got != expected {
            return Err(Broken(format!(
                "{}\nstep {}: {what}: the storage answered `{got}`, the default bodies over the \
                 primitives answer `{expected}`",
                header(scenario, &transcript),
                i + 1
            )));
        }
        if !matches!(step, Advance(_)) {
            transcript.push(format!("{}. {what}: {got}", i + 1));
        } else {
            transcript.push(format!("{}. {what}", i + 1));
        }
    }
    Ok(())
}

fn header(scenario: &Scenario, transcript: &[String]) -> String {
    let mut text = format!("scenario: {}", scenario.what);
    if !transcript.is_empty() {
        text.push_str("\nsteps that agreed:\n  ");
        text.push_str(&transcript.join("\n  "));
    }
    text
}

/// `reset` of one circuit deletes its keys and no other key, however alike.
pub(crate) async fn reset_deletes_only_its_keys(
    p: &Probe<'_>,
    names: &Names,
) -> Result<(), Broken> {
    let name = names.circuit_name("svc");
    let (circuit, rule) = build(&breaker("svc", RuleSpec::Max(1)), names, LONG)?;
    let keys = circuit.keys();
    let others = [
        format!("{name}*"),
        format!("{name}?"),
        format!("{name}[a-z]"),
        format!("{name}2"),
        format!("{name}_requests2"),
        format!("circuit_{name}2"),
        format!("lasier:half_open:{name}2"),
        name.trim_end_matches("svc").to_owned() + "sv",
        name.to_uppercase(),
        format!("{}*", keys.open()),
    ];
    for (i, key) in others.iter().enumerate() {
        names.key_named(key);
        p.set(key, 100 + i64::try_from(i).unwrap_or(0), Some(LONG))
            .await?;
    }
    let store = p.0;
    let fail =
        |e: lasier_core::StorageError| Broken(format!("a fused step returned an error: {e}"));
    if let Admission::Admitted(permit) = store.admit(&circuit).await.map_err(fail)?.0 {
        store
            .record(&circuit, permit, Outcome::Failure, &*rule)
            .await
            .map_err(fail)?;
    }
    store.open_circuit(&circuit).await.map_err(fail)?;
    store.reset(&circuit).await.map_err(fail)?;
    for (i, key) in others.iter().enumerate() {
        let expected = Some(100 + i64::try_from(i).unwrap_or(0));
        let back = p.get(key).await?;
        ensure(back == expected, || {
            format!(
                "reset of the circuit {name:?} changed the unrelated key {key:?}: get returned \
                 {back:?}, expected {expected:?}"
            )
        })?;
    }
    Ok(())
}

/// `repair` makes a circuit whose keys hold garbage usable again, and keeps
/// the keys that hold what the breaker writes.
pub(crate) async fn repair_deletes_only_corrupt_keys(
    p: &Probe<'_>,
    names: &Names,
) -> Result<(), Broken> {
    let rule = RuleSpec::Percentage(50, 100);
    let (garbled, _) = build(&breaker("garbled", rule), names, LONG)?;
    let (sound, _) = build(&breaker("sound", rule), names, LONG)?;
    let (g, s) = (garbled.keys(), sound.keys());
    for (key, value) in [
        (g.open(), 5),
        (g.failures(), -3),
        (g.requests(), 4),
        (s.open(), 1),
        (s.failures(), 2),
        (s.requests(), 4),
    ] {
        p.set(key, value, Some(LONG)).await?;
    }
    let store = p.0;
    for circuit in [&garbled, &sound] {
        store.repair(circuit).await.map_err(|e| {
            Broken(format!(
                "repair of {:?} returned an error: {e}",
                circuit.name()
            ))
        })?;
    }
    let name = garbled.name();
    let state = store.state(&garbled).await;
    ensure(matches!(state, Ok(State::Closed)), || {
        format!(
            "after the open flag of {name:?} was set to 5 and its failure counter to -3, \
             repair, then state returned {state:?}, expected Ok(Closed)"
        )
    })?;
    let counts = store.counts(&garbled).await;
    ensure(matches!(counts, Ok(Counts { failures: 0, .. })), || {
        format!(
            "after the failure counter of {name:?} was set to -3, repair, then counts returned \
             {counts:?}, expected Ok with 0 failures"
        )
    })?;
    for (key, value) in [
        (g.requests(), 4),
        (s.open(), 1),
        (s.failures(), 2),
        (s.requests(), 4),
    ] {
        let back = p.get(key).await?;
        ensure(back == Some(value), || {
            format!(
                "repair deleted or changed {key:?}, which held {value}, a value the breaker \
                 writes: get returned {back:?}"
            )
        })?;
    }
    Ok(())
}
