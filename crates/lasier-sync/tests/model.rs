//! The breaker against a reference model: random sequences of calls,
//! outcomes, held guards and clock advances, on the in-process engine with a
//! manual clock. The model is written from the documented behaviour, not
//! from the implementation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use lasier_core::clock::ManualClock;
use lasier_sync::{CircuitBreaker, Counts, Guard, MemoryStorage, OpenBackoff, State};
use proptest::prelude::*;

const FAILURE_TIMEOUT: u64 = 2_000;
const CIRCUIT_TIMEOUT: u64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    Ok,
    CountedErr,
    IgnoredErr,
}

#[derive(Debug, Clone)]
enum Op {
    Call(Verdict),
    Begin,
    Finish(usize, Verdict),
    DropHeld(usize),
    Advance(u64),
    Reset,
}

#[derive(Debug, Clone, Copy)]
enum RuleSpec {
    Max(u64),
    Percentage(u8, u64),
}

impl RuleSpec {
    fn counts_requests(self) -> bool {
        matches!(self, RuleSpec::Percentage(..))
    }
    fn should_open(self, failures: u64, requests: u64) -> bool {
        match self {
            RuleSpec::Max(n) => failures >= n,
            RuleSpec::Percentage(p, min) => {
                requests > min && failures as f64 * 100.0 / requests as f64 >= f64::from(p)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum MPhase {
    Closed,
    Open {
        until: u64,
    },
    HalfOpen {
        episode: u64,
        taken: u32,
        passed: u32,
        since: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum MPermit {
    Normal,
    Trial(u64),
}

#[derive(Debug)]
struct Model {
    rule: RuleSpec,
    max_trials: u32,
    /// Trials that must pass to close.
    successes: u32,
    /// The trial lease (ms).
    lease: u64,
    now: u64,
    phase: MPhase,
    /// (end, failures, requests)
    window: Option<(u64, u64, u64)>,
    episodes: u64,
    /// A sliding window's bucket length, if it has one.
    bucket: Option<u64>,
    /// Its buckets: (start, failures, requests), oldest first.
    buckets: Vec<(u64, u64, u64)>,
    /// A count window's size and minimum calls, if it has one.
    ring: Option<(usize, u64)>,
    /// Its outcomes (true: a failure), oldest first.
    outcomes: std::collections::VecDeque<bool>,
    /// Open-time backoff, if drawn: (multiplier, max ms), no jitter.
    backoff: Option<(u64, u64)>,
    /// Consecutive openings, and when that count lapses.
    openings: (u64, u64),
}

impl Model {
    /// Every transition into open or closed starts an empty window.
    fn clear(&mut self) {
        self.window = None;
        self.buckets.clear();
        self.outcomes.clear();
    }

    /// Counts an outcome in the sliding window: in the current bucket
    /// (one started less than a bucket ago), else in a new one.
    fn count_in_buckets(&mut self, bucket: u64, failures: u64, requests: u64) -> Counts {
        let now = self.now;
        match self.buckets.last_mut() {
            Some(b) if now < b.0 + bucket => {
                b.1 += failures;
                b.2 += requests;
            }
            _ => self.buckets.push((now, failures, requests)),
        }
        self.bucket_counts()
    }

    /// The live buckets' sum: each counts for the window from its start.
    fn bucket_counts(&self) -> Counts {
        self.buckets
            .iter()
            .filter(|b| self.now < b.0 + FAILURE_TIMEOUT)
            .fold(Counts::default(), |c, b| {
                Counts::new(c.failures + b.1, c.requests + b.2)
            })
    }

    /// An opening now: counts it and returns how long it lasts. Written
    /// from the docs: the first opening lasts the circuit timeout, each
    /// consecutive one `multiplier` times the one before, at most `max`;
    /// the count lives through the half-open period (a day past the open
    /// time here), or without one for a window after the open time, and
    /// for a window after trials close the circuit.
    fn open_time(&mut self) -> u64 {
        let Some((multiplier, max)) = self.backoff else {
            return CIRCUIT_TIMEOUT;
        };
        let (count, until) = self.openings;
        let n = if self.now < until { count + 1 } else { 1 };
        let time = (1..n).fold(CIRCUIT_TIMEOUT, |time, _| (time * multiplier).min(max));
        let after = if self.max_trials > 0 {
            24 * 3_600_000
        } else {
            FAILURE_TIMEOUT
        };
        self.openings = (n, self.now + time + after);
        time
    }

    fn admit(&mut self) -> Option<MPermit> {
        match self.phase {
            MPhase::Closed => Some(MPermit::Normal),
            MPhase::Open { until } if self.now < until => None,
            MPhase::Open { .. } if self.max_trials == 0 => {
                self.phase = MPhase::Closed;
                self.clear();
                Some(MPermit::Normal)
            }
            MPhase::Open { .. } => {
                self.episodes += 1;
                self.phase = MPhase::HalfOpen {
                    episode: self.episodes,
                    taken: 1,
                    passed: 0,
                    since: self.now,
                };
                Some(MPermit::Trial(self.episodes))
            }
            MPhase::HalfOpen { passed, since, .. } if self.now >= since + self.lease => {
                // the lease is over: its trials still out decide nothing and
                // their slots are free; passes stay; a new lease starts
                self.episodes += 1;
                self.phase = MPhase::HalfOpen {
                    episode: self.episodes,
                    taken: 1,
                    passed,
                    since: self.now,
                };
                Some(MPermit::Trial(self.episodes))
            }
            MPhase::HalfOpen {
                episode,
                taken,
                passed,
                since,
            } => {
                if taken + passed < self.max_trials {
                    self.phase = MPhase::HalfOpen {
                        episode,
                        taken: taken + 1,
                        passed,
                        since,
                    };
                    Some(MPermit::Trial(episode))
                } else {
                    None
                }
            }
        }
    }

    fn record(&mut self, permit: MPermit, verdict: Verdict) {
        let failed = verdict == Verdict::CountedErr;
        match permit {
            MPermit::Normal => {
                if let (Some((calls, minimum)), MPhase::Closed) = (self.ring, self.phase) {
                    // every outcome, the last `calls` of them
                    self.outcomes.push_back(failed);
                    if self.outcomes.len() > calls {
                        self.outcomes.pop_front();
                    }
                    let counts = self.ring_counts();
                    if failed
                        && counts.requests >= minimum
                        && self.rule.should_open(counts.failures, counts.requests)
                    {
                        self.phase = MPhase::Open {
                            until: self.now + self.open_time(),
                        };
                        self.clear();
                    }
                    return;
                }
                if self.phase != MPhase::Closed || (!failed && !self.rule.counts_requests()) {
                    return;
                }
                let now = self.now;
                if let Some(bucket) = self.bucket {
                    let requests = u64::from(self.rule.counts_requests());
                    let counts = self.count_in_buckets(bucket, u64::from(failed), requests);
                    if failed && self.rule.should_open(counts.failures, counts.requests) {
                        self.phase = MPhase::Open {
                            until: now + self.open_time(),
                        };
                        self.clear();
                    }
                    return;
                }
                let window = match self.window {
                    Some(w) if now < w.0 => w,
                    _ => (now + FAILURE_TIMEOUT, 0, 0),
                };
                let (end, mut failures, mut requests) = window;
                if self.rule.counts_requests() {
                    requests += 1;
                }
                if failed {
                    failures += 1;
                }
                self.window = Some((end, failures, requests));
                if failed && self.rule.should_open(failures, requests) {
                    self.phase = MPhase::Open {
                        until: now + self.open_time(),
                    };
                    self.clear();
                }
            }
            MPermit::Trial(e) => {
                let MPhase::HalfOpen {
                    episode,
                    taken,
                    passed,
                    since,
                } = self.phase
                else {
                    return;
                };
                if e != episode {
                    return;
                }
                if failed {
                    self.phase = MPhase::Open {
                        until: self.now + self.open_time(),
                    };
                    self.clear();
                } else if passed + 1 >= self.successes {
                    self.phase = MPhase::Closed;
                    self.clear();
                    if self.now >= self.openings.1 {
                        self.openings.0 = 0;
                    }
                    self.openings.1 = self.now + FAILURE_TIMEOUT;
                } else {
                    self.phase = MPhase::HalfOpen {
                        episode,
                        taken: taken - 1,
                        passed: passed + 1,
                        since,
                    };
                }
            }
        }
    }

    fn state(&self) -> State {
        match self.phase {
            MPhase::Closed => State::Closed,
            MPhase::Open { until } if self.now < until => State::Open,
            MPhase::Open { .. } if self.max_trials == 0 => State::Closed,
            _ => State::HalfOpen,
        }
    }

    fn ring_counts(&self) -> Counts {
        let failures = self.outcomes.iter().filter(|f| **f).count() as u64;
        Counts::new(failures, self.outcomes.len() as u64)
    }

    fn counts(&self) -> Counts {
        if self.ring.is_some() {
            return self.ring_counts();
        }
        if self.bucket.is_some() {
            return self.bucket_counts();
        }
        match self.window {
            Some((end, f, r)) if self.now < end => Counts::new(f, r),
            _ => Counts::default(),
        }
    }
}

fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        3 => Just(Verdict::Ok),
        3 => Just(Verdict::CountedErr),
        1 => Just(Verdict::IgnoredErr),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => verdict().prop_map(Op::Call),
        2 => Just(Op::Begin),
        2 => (any::<usize>(), verdict()).prop_map(|(i, v)| Op::Finish(i, v)),
        1 => any::<usize>().prop_map(Op::DropHeld),
        3 => prop_oneof![0..50_u64, 250..350_u64, 900..1_100_u64, 1_400..1_600_u64, 1_900..2_100_u64].prop_map(Op::Advance),
        1 => Just(Op::Reset),
    ]
}

fn rule() -> impl Strategy<Value = RuleSpec> {
    prop_oneof![
        (1..5_u64).prop_map(RuleSpec::Max),
        (
            prop_oneof![Just(25_u8), Just(50), Just(100), 1..=100_u8],
            0..5_u64
        )
            .prop_map(|(p, m)| RuleSpec::Percentage(p, m)),
    ]
}

fn finish(guard: Guard<'_>, verdict: Verdict) {
    match verdict {
        Verdict::CountedErr => guard.failure(),
        // an error the breaker does not count is a success to it
        Verdict::Ok | Verdict::IgnoredErr => guard.success(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn breaker_matches_the_reference_model(
        rule in rule(),
        max_trials in 0..4_u32,
        // (0: the default, all of them; else 1..=max_trials)
        successes_pick in 0..4_u32,
        lease in prop_oneof![Just(None), Just(Some(300_u64)), Just(Some(1_500_u64))],
        // (a fixed window, or a sliding one of 2, 4 or 10 buckets)
        buckets in prop_oneof![Just(None), Just(Some(2_u64)), Just(Some(4)), Just(Some(10))],
        // (a count window of (calls, minimum calls), instead of the above)
        ring in prop_oneof![2 => Just(None), 1 => Just(Some((3_usize, 1_u64))), 1 => Just(Some((10, 4))), 1 => Just(Some((50, 1)))],
        // (multiplier, max ms): none, or doubling / tripling to a cap
        backoff in prop_oneof![
            2 => Just(None),
            1 => Just(Some((2_u64, 3_000_u64))),
            1 => Just(Some((3, 10_000))),
            1 => Just(Some((1, 1_000))),
        ],
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let clock = ManualClock::new();
        let builder = CircuitBreaker::builder("model")
            .storage(MemoryStorage::with_clock(clock.clone()))
            .failure_timeout(Duration::from_millis(FAILURE_TIMEOUT))
            .circuit_timeout(Duration::from_millis(CIRCUIT_TIMEOUT))
            .half_open_max_calls(max_trials);
        let successes = if successes_pick == 0 || max_trials == 0 {
            max_trials
        } else {
            1 + (successes_pick - 1) % max_trials
        };
        let builder = if successes_pick == 0 || max_trials == 0 {
            builder
        } else {
            builder.half_open_successes(successes)
        };
        let builder = match lease {
            Some(ms) => builder.trial_lease(Duration::from_millis(ms)),
            None => builder,
        };
        // (one window: a count window replaces a sliding one)
        let buckets = if ring.is_some() { None } else { buckets };
        let builder = match (buckets, ring) {
            (Some(n), _) => builder.sliding_window(u32::try_from(n).unwrap()),
            (None, Some((calls, minimum))) => builder
                .count_window(u32::try_from(calls).unwrap())
                .minimum_calls(u32::try_from(minimum).unwrap()),
            (None, None) => builder,
        };
        let builder = match backoff {
            Some((m, max)) => builder.open_backoff(
                OpenBackoff::exponential(m as f64).max(Duration::from_millis(max)),
            ),
            None => builder,
        };
        let builder = match rule {
            RuleSpec::Max(n) => builder.max_failures(n),
            RuleSpec::Percentage(p, m) => builder.percentage_failures(p, m),
        };
        let breaker = builder.build().unwrap();
        let mut model = Model { rule, max_trials, successes, lease: lease.unwrap_or(CIRCUIT_TIMEOUT), now: 0, phase: MPhase::Closed, window: None, episodes: 0, bucket: buckets.map(|n| FAILURE_TIMEOUT.div_ceil(n)), buckets: Vec::new(), ring, outcomes: Default::default(), backoff, openings: (0, 0) };
        let mut held: Vec<(Guard<'_>, MPermit)> = Vec::new();

        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Call(v) => {
                    let expected = model.admit();
                    let result = breaker.call_filtered(
                        |e: &Verdict| *e == Verdict::CountedErr,
                        || if v == Verdict::Ok { Ok(()) } else { Err(v) },
                    );
                    match (expected, &result) {
                        (None, Err(e)) => {
                            prop_assert!(e.is_open(), "step {step}: {e:?}");
                            if let MPhase::Open { until } = model.phase {
                                // the open time, to the millisecond
                                prop_assert_eq!(e.retry_after(), Some(Duration::from_millis(until - model.now)), "step {}", step);
                            }
                        }
                        (Some(permit), _) => {
                            prop_assert!(result.as_ref().err().is_none_or(|e| !e.is_open()), "step {step}: rejected, model admitted");
                            model.record(permit, v);
                        }
                        (None, Ok(())) => prop_assert!(false, "step {step}: admitted, model rejected"),
                    }
                }
                Op::Begin => {
                    let expected = model.admit();
                    match (expected, breaker.enter()) {
                        (Some(permit), Ok(guard)) => held.push((guard, permit)),
                        (None, Err(e)) => prop_assert!(e.is_open()),
                        (expected, got) => prop_assert!(false, "step {step}: model {expected:?}, breaker {got:?}"),
                    }
                }
                Op::Finish(i, v) => {
                    if !held.is_empty() {
                        let (guard, permit) = held.remove(i % held.len());
                        finish(guard, v);
                        model.record(permit, v);
                    }
                }
                Op::DropHeld(i) => {
                    if !held.is_empty() {
                        // a sync guard dropped without a verdict is a success
                        let (guard, permit) = held.remove(i % held.len());
                        drop(guard);
                        model.record(permit, Verdict::Ok);
                    }
                }
                Op::Advance(ms) => {
                    clock.advance(Duration::from_millis(ms));
                    model.now += ms;
                }
                Op::Reset => {
                    breaker.reset().unwrap();
                    model.phase = MPhase::Closed;
                    model.clear();
                    model.openings = (0, 0);
                }
            }
            prop_assert_eq!(breaker.state().unwrap(), model.state(), "step {}", step);
            prop_assert_eq!(breaker.counts().unwrap(), model.counts(), "step {}", step);
        }
    }
}
