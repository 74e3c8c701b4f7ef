//! [`LocalCircuit`]: the phase word and the counting window together, and
//! the state machine applied to them.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use lasier_rules::{Counts, Rule};

#[cfg(feature = "alloc")]
use super::ring::Ring;
#[cfg(feature = "alloc")]
use super::sliding::Sliding;
#[cfg(feature = "std")]
use super::window::Stripes;
use super::window::{generation, GEN_SHIFT, LOW_48};
use super::word::{
    decode, encode, is_closed_word, starts_lease, transition, CLOSED_WORD, DISABLED_WORD,
};
use crate::clock::{now_ms, Clock};
#[cfg(feature = "alloc")]
use crate::config::Window;
use crate::state::{
    self, Admission, Manual, Openings, Outcome, Permit, Phase, State, Timing, Transition,
};

/// How many times an admission looks again while another caller starts a
/// lease on trial permits, before it gives up and rejects.
const LEASE_WAIT_SPINS: u32 = 1 << 12;

/// The in-process state of one circuit. See the [module docs](crate::local).
///
/// All methods take `&self`; share it between threads in an `Arc`.
#[derive(Debug, Default)]
pub struct LocalCircuit {
    /// The phase; a closed phase carries the number of its closed period, so
    /// that a failure counted in one closed period can never trip the next.
    pub(super) phase: AtomicU64,
    /// Closed periods started so far.
    pub(super) closes: core::sync::atomic::AtomicU32,
    /// Held (true) by the one caller starting a lease: leases start one at a
    /// time, so that a lease is never overwritten by an older one.
    pub(super) leasing: AtomicBool,
    /// The current lease on half-open trial permits: the low 16 bits of
    /// its episode, then when it ends (48 bits, ms). Written only by the
    /// holder of `leasing`, just after the phase word took the lease's
    /// episode; until then the episodes differ and the lease reads as not
    /// over yet.
    pub(super) lease: AtomicU64,
    /// Generation (16 bits) and end of the current window in ms (48 bits;
    /// 0: no window yet).
    pub(super) window: AtomicU64,
    /// Generation (16 bits) and count (48 bits) of each counter.
    pub(super) failures: AtomicU64,
    /// Requests, until two threads meet here; then also on `stripes`, and
    /// the count is the sum.
    pub(super) requests: AtomicU64,
    /// Consecutive openings, for open-time backoff (16 bits), and when that
    /// count lapses (48 bits, ms): see [`Openings`]. Touched only by
    /// openings and closings, and only with a backoff configured.
    pub(super) openings: AtomicU64,
    /// Requests of threads counting at once, one cache line each: made on
    /// the first compare-and-swap of `requests` that another thread won.
    #[cfg(feature = "std")]
    pub(super) stripes: std::sync::OnceLock<Stripes>,
    /// The buckets of a sliding window (`sliding_window(n)`) or the ring of
    /// a count window (`count_window(n)`); without
    /// them, the fixed window above counts.
    #[cfg(feature = "alloc")]
    pub(super) counting: Option<alloc::boxed::Box<Counting>>,
}

impl LocalCircuit {
    /// A closed circuit with empty counters.
    pub const fn new() -> Self {
        Self {
            phase: AtomicU64::new(CLOSED_WORD),
            closes: core::sync::atomic::AtomicU32::new(0),
            leasing: AtomicBool::new(false),
            lease: AtomicU64::new(0),
            window: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            openings: AtomicU64::new(0),
            #[cfg(feature = "std")]
            stripes: std::sync::OnceLock::new(),
            #[cfg(feature = "alloc")]
            counting: None,
        }
    }

    /// A closed circuit with empty counters, counting in `circuit`'s window.
    #[cfg(feature = "alloc")]
    pub fn for_circuit(circuit: &crate::Circuit) -> Self {
        let mut c = Self::new();
        c.counting = match circuit.window() {
            Window::Sliding { buckets } => circuit.bucket_ms().map(|bucket_ms| {
                alloc::boxed::Box::new(Counting::Sliding(Sliding::new(
                    buckets,
                    bucket_ms,
                    circuit.timing().failure_timeout_ms,
                )))
            }),
            Window::Count { calls, minimum } => Some(alloc::boxed::Box::new(Counting::Count {
                ring: Ring::new(calls),
                minimum: u64::from(minimum),
            })),
            _ => None,
        };
        c
    }

    /// The count of consecutive openings.
    fn openings(&self) -> Openings {
        let word = self.openings.load(Ordering::Acquire);
        Openings {
            count: (word >> GEN_SHIFT) as u32,
            until: word & LOW_48,
        }
    }

    fn store_openings(&self, openings: Openings) {
        let count = u64::from(openings.count.min(0xFFFF));
        self.openings.store(
            (count << GEN_SHIFT) | openings.until.min(LOW_48),
            Ordering::Release,
        );
    }

    /// An opening at `now`: how long it lasts, and (with a backoff) the
    /// count of openings to store once it has happened.
    fn opening(&self, now: u64, timing: &Timing) -> (u64, Option<Openings>) {
        if timing.backoff.is_none() {
            return (timing.circuit_timeout_ms, None);
        }
        // Jitter from the clock and this circuit's address: cheap, and
        // different for circuits opening at the same instant.
        let seed =
            (now ^ (core::ptr::from_ref(self) as usize as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let (after, open_ms) = self.openings().open(now, timing, seed ^ (seed >> 29));
        (open_ms, Some(after))
    }

    /// Whether this circuit counts in the window `circuit` asks for (a
    /// breaker sharing an in-process circuit must count as it does).
    #[cfg(feature = "alloc")]
    pub fn counts_as(&self, circuit: &crate::Circuit) -> bool {
        let window_ms = circuit.timing().failure_timeout_ms;
        match (self.counting.as_deref(), circuit.window()) {
            (None, Window::Fixed) => true,
            (Some(Counting::Sliding(sliding)), Window::Sliding { buckets }) => circuit
                .bucket_ms()
                .is_some_and(|bucket_ms| sliding.is(buckets, bucket_ms, window_ms)),
            (Some(Counting::Count { ring, minimum }), Window::Count { calls, minimum: m }) => {
                ring.calls() == u64::from(calls) && *minimum == u64::from(m)
            }
            _ => false,
        }
    }

    /// Whether the circuit is closed: then [`admit`](Self::admit) would
    /// admit a normal call and change nothing. One atomic load.
    #[inline]
    pub fn is_closed(&self) -> bool {
        is_closed_word(self.phase.load(Ordering::Acquire))
    }

    /// Asks to run a call.
    ///
    /// On a closed circuit this is one atomic load and does not read the
    /// clock. Returns the decision and the state change it caused, if any.
    #[inline]
    pub fn admit(&self, clock: &dyn Clock, timing: &Timing) -> (Admission, Option<Transition>) {
        let word = self.phase.load(Ordering::Acquire);
        if is_closed_word(word) {
            return (Admission::Admitted(Permit::Normal), None);
        }
        self.admit_slow(word, clock, timing)
    }

    #[cold]
    fn admit_slow(
        &self,
        mut word: u64,
        clock: &dyn Clock,
        timing: &Timing,
    ) -> (Admission, Option<Transition>) {
        let now = now_ms(clock);
        let mut busy = 0_u32;
        loop {
            let phase = self.phase_of(word);
            let (next, admission) = state::admit(phase, now, timing);
            if next == phase {
                return (admission, None);
            }
            if starts_lease(phase, next) {
                if let Some(decided) = self.start_lease(now, timing) {
                    return decided;
                }
                // Another caller is starting the lease (a CAS and a store):
                // look again once it has. Should it have been preempted
                // meanwhile, give up: a rejection is the safe answer.
                busy += 1;
                if busy > LEASE_WAIT_SPINS {
                    return (Admission::Rejected { retry_after: None }, None);
                }
                core::hint::spin_loop();
                word = self.phase.load(Ordering::Acquire);
                continue;
            }
            match self.phase.compare_exchange_weak(
                word,
                self.word(next),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    if next == Phase::Closed {
                        self.new_window();
                    }
                    return (admission, transition(phase, next));
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// Admission that starts a lease on trial permits (the first trial of a
    /// half-open period, or the first after a lease ended), by one caller
    /// at a time; `None` if another caller is starting one right now.
    #[cold]
    fn start_lease(&self, now: u64, timing: &Timing) -> Option<(Admission, Option<Transition>)> {
        if self
            .leasing
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        let mut word = self.phase.load(Ordering::Acquire);
        let decided = loop {
            let phase = self.phase_of(word);
            let (next, admission) = state::admit(phase, now, timing);
            if next == phase {
                break (admission, None);
            }
            match self.phase.compare_exchange_weak(
                word,
                self.word(next),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    match next {
                        Phase::HalfOpen {
                            episode,
                            lease_until,
                            ..
                        } if starts_lease(phase, next) => self.lease.store(
                            (u64::from(episode & 0xFFFF) << GEN_SHIFT) | lease_until.min(LOW_48),
                            Ordering::Release,
                        ),
                        Phase::Closed => self.new_window(),
                        _ => {}
                    }
                    break (admission, transition(phase, next));
                }
                Err(actual) => word = actual,
            }
        };
        self.leasing.store(false, Ordering::Release);
        Some(decided)
    }

    /// The phase in `word`, with the end of its lease if half-open.
    fn phase_of(&self, word: u64) -> Phase {
        match decode(word) {
            Phase::HalfOpen {
                episode,
                taken,
                passed,
                ..
            } => {
                let lease = self.lease.load(Ordering::Acquire);
                // Another episode's: this lease is being started right now.
                let lease_until = if lease >> GEN_SHIFT == u64::from(episode & 0xFFFF) {
                    lease & LOW_48
                } else {
                    u64::MAX
                };
                Phase::HalfOpen {
                    episode,
                    taken,
                    passed,
                    lease_until,
                }
            }
            other => other,
        }
    }

    /// Records how a call admitted with `permit` ended. Returns the state
    /// change it caused, if any.
    #[inline]
    pub fn record(
        &self,
        permit: Permit,
        outcome: Outcome,
        rule: &dyn Rule,
        clock: &dyn Clock,
        timing: &Timing,
    ) -> Option<Transition> {
        match permit {
            Permit::Normal => {
                #[cfg(feature = "alloc")]
                if let Some(Counting::Count { ring, minimum }) = self.counting.as_deref() {
                    return self.record_in_ring(ring, *minimum, outcome, rule, clock, timing);
                }
                let counts_requests = rule.counts_requests();
                if outcome == Outcome::Success {
                    if counts_requests {
                        self.record_success(clock, timing);
                    }
                    return None;
                }
                self.record_normal(outcome, counts_requests, rule, clock, timing)
            }
            Permit::Trial { episode } => self.record_trial(episode, outcome, clock, timing),
        }
    }

    /// Counts a success on a closed (or disabled) circuit under a rule that
    /// counts requests: the commonest write, kept short.
    ///
    /// One clock read, three loads and one compare-and-swap on this thread's
    /// stripe while the window is current; anything else (the window has
    /// ended, another thread changed the stripe, the circuit is not closed)
    /// takes the general path, which gives the same result. Out of line, so
    /// that the facades' `call` stays small enough to inline.
    #[inline(never)]
    pub fn record_success(&self, clock: &dyn Clock, timing: &Timing) {
        #[cfg(feature = "alloc")]
        if let Some(counting) = &self.counting {
            return self.record_success_in(counting, clock);
        }
        let now = now_ms(clock);
        let window = self.window.load(Ordering::Acquire);
        let end = window & LOW_48;
        let phase = self.phase.load(Ordering::Acquire);
        if end != 0 && now < end && (is_closed_word(phase) || phase == DISABLED_WORD) {
            let counter = self.request_counter();
            let word = counter.load(Ordering::Acquire);
            // Same generation as the window, and room to count: a `+ 1`
            // cannot carry into the generation bits.
            if word >> GEN_SHIFT == window >> GEN_SHIFT && word & LOW_48 < LOW_48 {
                match counter.compare_exchange(word, word + 1, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return,
                    // Another thread counted on this word meanwhile.
                    Err(_) if core::ptr::eq(counter, &self.requests) => self.spread_requests(),
                    Err(_) => {}
                }
            }
        }
        self.record_success_slow(now, timing);
    }

    #[cold]
    #[inline(never)]
    fn record_success_slow(&self, now: u64, timing: &Timing) {
        // As in `record_normal`: not counted once the circuit has left the
        // closed state.
        let phase = self.phase.load(Ordering::Acquire);
        if is_closed_word(phase) || phase == DISABLED_WORD {
            self.bump(self.request_counter(), now, timing);
        }
    }

    fn record_normal(
        &self,
        outcome: Outcome,
        counts_requests: bool,
        rule: &dyn Rule,
        clock: &dyn Clock,
        timing: &Timing,
    ) -> Option<Transition> {
        // As in the original, outcomes that arrive once the circuit has left
        // the closed state are not counted (a disabled one counts, for
        // metrics, and never trips).
        let phase = self.phase.load(Ordering::Acquire);
        if !is_closed_word(phase) && phase != DISABLED_WORD {
            return None;
        }
        let now = now_ms(clock);
        #[cfg(feature = "alloc")]
        if let Some(Counting::Sliding(sliding)) = self.counting.as_deref() {
            let failures = u64::from(outcome == Outcome::Failure);
            sliding.add(now, failures, u64::from(counts_requests));
            if failures == 0 || !is_closed_word(phase) {
                return None;
            }
            let mut counts = sliding.counts(now);
            if !counts_requests {
                counts.requests = 0;
            }
            if !rule.should_open(counts) {
                return None;
            }
            return self.trip(phase, clock, timing);
        }
        let stripe = self.request_counter();
        if outcome == Outcome::Success {
            // Counted only if the rule counts requests (see `record`).
            self.bump(stripe, now, timing);
            return None;
        }
        if counts_requests {
            self.bump(stripe, now, timing);
        }
        let (gen, failures) = self.bump(&self.failures, now, timing);
        let requests = if counts_requests {
            self.requests_in(gen)
        } else {
            0
        };
        if !is_closed_word(phase) || !rule.should_open(Counts::new(failures, requests)) {
            return None;
        }
        self.trip(phase, clock, timing)
    }

    /// Opens the circuit, only if it is still in the closed period `closed`
    /// that the failure was counted in.
    #[cold]
    fn trip(&self, closed: u64, clock: &dyn Clock, timing: &Timing) -> Option<Transition> {
        // Read the time again: the rule may have run for a while.
        let now = now_ms(clock);
        let (open_ms, openings) = self.opening(now, timing);
        let next = state::trip(Phase::Closed, now, open_ms)?;
        self.phase
            .compare_exchange(closed, self.word(next), Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        if let Some(openings) = openings {
            self.store_openings(openings);
        }
        self.new_window();
        Some(Transition {
            from: State::Closed,
            to: State::Open,
        })
    }

    /// The word of `phase`; a closed phase gets the number of a new closed
    /// period.
    fn word(&self, phase: Phase) -> u64 {
        match phase {
            Phase::Closed => {
                let period = self.closes.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
                CLOSED_WORD | u64::from(period)
            }
            other => encode(other),
        }
    }

    #[cold]
    fn record_trial(
        &self,
        episode: u32,
        outcome: Outcome,
        clock: &dyn Clock,
        timing: &Timing,
    ) -> Option<Transition> {
        let now = now_ms(clock);
        let (open_ms, openings) = match outcome {
            Outcome::Failure => self.opening(now, timing),
            Outcome::Success => (timing.circuit_timeout_ms, None),
        };
        let mut word = self.phase.load(Ordering::Acquire);
        loop {
            let phase = self.phase_of(word);
            let next = state::trial_outcome(phase, episode, outcome, now, open_ms, timing);
            if next == phase {
                return None;
            }
            match self.phase.compare_exchange_weak(
                word,
                self.word(next),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    let to = match next {
                        Phase::Closed => {
                            if timing.backoff.is_some() {
                                self.store_openings(self.openings().closed(now, timing));
                            }
                            self.new_window();
                            State::Closed
                        }
                        Phase::Open { .. } => {
                            if let Some(openings) = openings {
                                self.store_openings(openings);
                            }
                            State::Open
                        }
                        Phase::HalfOpen { .. } | Phase::ForcedOpen | Phase::Disabled => {
                            return None
                        }
                    };
                    return Some(Transition {
                        from: State::HalfOpen,
                        to,
                    });
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// Changes the state by hand: forced open, closed (counters emptied) or
    /// disabled (counters kept). Returns the change, if any.
    pub fn set_manual(
        &self,
        manual: Manual,
        clock: &dyn Clock,
        timing: &Timing,
    ) -> Option<Transition> {
        let next = match manual {
            Manual::ForceOpen => Phase::ForcedOpen,
            Manual::Close => Phase::Closed,
            Manual::Disable => Phase::Disabled,
        };
        let previous = decode(self.phase.swap(self.word(next), Ordering::AcqRel));
        if manual != Manual::Disable {
            self.new_window();
        }
        if manual == Manual::Close {
            self.store_openings(Openings::default());
        }
        let from = previous.state_at(now_ms(clock), timing);
        let to = next.state_at(0, timing);
        (from != to).then_some(Transition { from, to })
    }

    /// Opens the circuit for its open time from now (the circuit timeout,
    /// or with a backoff the next time of the sequence), whatever its
    /// state, and starts a fresh window.
    pub fn open(&self, clock: &dyn Clock, timing: &Timing) -> Option<Transition> {
        let now = now_ms(clock);
        let (open_ms, openings) = self.opening(now, timing);
        let until = now.saturating_add(open_ms);
        let previous = decode(
            self.phase
                .swap(encode(Phase::Open { until }), Ordering::AcqRel),
        );
        if let Some(openings) = openings {
            self.store_openings(openings);
        }
        self.new_window();
        let from = previous.state_at(now, timing);
        (from != State::Open).then_some(Transition {
            from,
            to: State::Open,
        })
    }

    /// Gives back the permit of a call that ended without a verdict (its
    /// future was dropped): a half-open trial slot is freed, nothing is
    /// counted.
    pub fn release(&self, permit: Permit) {
        if let Permit::Trial { episode } = permit {
            let _ = self
                .phase
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                    let phase = decode(word);
                    let next = state::release_trial(phase, episode);
                    (next != phase).then(|| self.word(next))
                });
        }
    }

    /// The state at the clock's present time.
    pub fn state(&self, clock: &dyn Clock, timing: &Timing) -> State {
        let word = self.phase.load(Ordering::Acquire);
        if is_closed_word(word) {
            return State::Closed;
        }
        decode(word).state_at(now_ms(clock), timing)
    }

    /// When the circuit is open: how long until a call may pass.
    pub fn open_for(&self, clock: &dyn Clock) -> Option<core::time::Duration> {
        match decode(self.phase.load(Ordering::Acquire)) {
            Phase::Open { until } => {
                let now = now_ms(clock);
                (now < until).then(|| core::time::Duration::from_millis(until - now))
            }
            _ => None,
        }
    }

    /// `record_success` on a sliding or count window.
    #[cfg(feature = "alloc")]
    #[inline]
    fn record_success_in(&self, counting: &Counting, clock: &dyn Clock) {
        if !self.counts_now() {
            return;
        }
        match counting {
            Counting::Sliding(sliding) => sliding.add(now_ms(clock), 0, 1),
            // (no clock: a count window has no time)
            Counting::Count { ring, .. } => ring.record_success(),
        }
    }

    /// An outcome of a normal call in a count window: every outcome is
    /// counted (a success pushes a failure out), and the rule is asked
    /// after a failure once the ring holds `minimum` outcomes.
    #[cfg(feature = "alloc")]
    fn record_in_ring(
        &self,
        ring: &Ring,
        minimum: u64,
        outcome: Outcome,
        rule: &dyn Rule,
        clock: &dyn Clock,
        timing: &Timing,
    ) -> Option<Transition> {
        let phase = self.phase.load(Ordering::Acquire);
        if !is_closed_word(phase) && phase != DISABLED_WORD {
            return None;
        }
        let failed = outcome == Outcome::Failure;
        let counts = ring.record(failed)?;
        if !failed || !is_closed_word(phase) || counts.requests < minimum {
            return None;
        }
        if !rule.should_open(counts) {
            return None;
        }
        self.trip(phase, clock, timing)
    }

    /// Whether outcomes count now: while closed or disabled.
    #[cfg(feature = "alloc")]
    fn counts_now(&self) -> bool {
        let phase = self.phase.load(Ordering::Acquire);
        is_closed_word(phase) || phase == DISABLED_WORD
    }

    /// The counts of the current window (zero once it has expired).
    pub fn counts(&self, clock: &dyn Clock) -> Counts {
        #[cfg(feature = "alloc")]
        match self.counting.as_deref() {
            Some(Counting::Sliding(sliding)) => return sliding.counts(now_ms(clock)),
            Some(Counting::Count { ring, .. }) => return ring.counts(),
            None => {}
        }
        let window = self.window.load(Ordering::Acquire);
        let end = window & LOW_48;
        if end == 0 || now_ms(clock) >= end {
            return Counts::default();
        }
        let gen = generation(window);
        let read = |counter: &AtomicU64| {
            let word = counter.load(Ordering::Acquire);
            if generation(word) == gen {
                word & LOW_48
            } else {
                0
            }
        };
        Counts::new(read(&self.failures), self.requests_in(gen))
    }

    /// Whether the circuit is closed with nothing counted: the same as a
    /// new one.
    pub fn is_pristine(&self, clock: &dyn Clock) -> bool {
        is_closed_word(self.phase.load(Ordering::Acquire))
            && self.counts(clock) == Counts::default()
    }

    /// Closes the circuit, empties its counters and forgets its openings.
    pub fn reset(&self) {
        self.phase
            .store(self.word(Phase::Closed), Ordering::Release);
        self.store_openings(Openings::default());
        self.new_window();
    }
}

#[cfg(all(test, feature = "alloc"))]
#[allow(clippy::panic, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use core::time::Duration;
    use lasier_rules::{MaxFailuresRule, PercentageFailuresRule};

    const T: Timing = Timing {
        failure_timeout_ms: 60_000,
        circuit_timeout_ms: 10_000,
        half_open_max_calls: 1,
        half_open_successes: 1,
        trial_lease_ms: 10_000,
        backoff: None,
    };

    fn fail(c: &LocalCircuit, rule: &dyn Rule, clock: &ManualClock) -> Option<Transition> {
        let (a, _) = c.admit(clock, &T);
        let Admission::Admitted(p) = a else {
            panic!("rejected: {a:?}")
        };
        c.record(p, Outcome::Failure, rule, clock, &T)
    }

    #[test]
    fn opens_on_the_nth_failure_and_counts_restart() {
        let clock = ManualClock::new();
        let c = LocalCircuit::new();
        let rule = MaxFailuresRule::new(3).unwrap();
        assert_eq!(fail(&c, &rule, &clock), None);
        assert_eq!(fail(&c, &rule, &clock), None);
        assert_eq!(c.counts(&clock).failures, 2);
        assert_eq!(
            fail(&c, &rule, &clock),
            Some(Transition {
                from: State::Closed,
                to: State::Open
            })
        );
        assert_eq!(c.counts(&clock), Counts::default());
        assert_eq!(c.state(&clock, &T), State::Open);
        assert_eq!(c.open_for(&clock), Some(Duration::from_secs(10)));
    }

    #[test]
    fn window_expires_after_failure_timeout_from_its_first_count() {
        let clock = ManualClock::new();
        let c = LocalCircuit::new();
        let rule = MaxFailuresRule::new(2).unwrap();
        fail(&c, &rule, &clock);
        clock.advance(Duration::from_millis(59_999));
        assert_eq!(c.counts(&clock).failures, 1);
        clock.advance(Duration::from_millis(1));
        assert_eq!(c.counts(&clock).failures, 0);
        assert_eq!(fail(&c, &rule, &clock), None);
        assert_eq!(c.state(&clock, &T), State::Closed);
    }

    #[test]
    fn requests_and_failures_share_a_window() {
        let clock = ManualClock::new();
        let c = LocalCircuit::new();
        let rule = PercentageFailuresRule::new(50, 2).unwrap();
        let ok = |c: &LocalCircuit| {
            c.record(Permit::Normal, Outcome::Success, &rule, &clock, &T);
        };
        ok(&c);
        ok(&c);
        assert_eq!(c.counts(&clock), Counts::new(0, 2));
        clock.advance(Duration::from_secs(30));
        assert_eq!(fail(&c, &rule, &clock), None);
        assert_eq!(c.counts(&clock), Counts::new(1, 3));
        clock.advance(Duration::from_secs(30));
        assert_eq!(c.counts(&clock), Counts::default());
    }

    #[test]
    fn a_success_at_the_window_end_starts_the_next_window() {
        let clock = ManualClock::new();
        let c = LocalCircuit::new();
        // the first success of all finds no window and starts one
        c.record_success(&clock, &T);
        c.record_success(&clock, &T);
        clock.advance(Duration::from_millis(59_999));
        c.record_success(&clock, &T);
        assert_eq!(c.counts(&clock), Counts::new(0, 3));
        clock.advance(Duration::from_millis(1));
        c.record_success(&clock, &T);
        assert_eq!(c.counts(&clock), Counts::new(0, 1));
        // and the new window lasts a failure timeout from that success
        clock.advance(Duration::from_millis(59_999));
        assert_eq!(c.counts(&clock), Counts::new(0, 1));
    }

    #[test]
    fn successes_count_only_while_closed_or_disabled() {
        let clock = ManualClock::new();
        let c = LocalCircuit::new();
        c.record_success(&clock, &T);
        c.set_manual(Manual::Disable, &clock, &T);
        c.record_success(&clock, &T);
        assert_eq!(c.counts(&clock), Counts::new(0, 2));
        c.open(&clock, &T);
        c.record_success(&clock, &T);
        assert_eq!(c.counts(&clock), Counts::default());
        c.reset();
        c.record_success(&clock, &T);
        assert_eq!(c.counts(&clock), Counts::new(0, 1));
    }

    #[cfg(feature = "std")]
    #[test]
    fn successes_from_many_threads_are_all_counted() {
        let clock = ManualClock::new();
        let c = LocalCircuit::new();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        c.record_success(&clock, &T);
                    }
                });
            }
        });
        assert_eq!(c.counts(&clock), Counts::new(0, 80_000));
    }

    #[cfg(feature = "std")]
    #[test]
    fn stripes_are_made_only_when_threads_meet_and_lose_no_count() {
        let clock = ManualClock::new();
        let c = LocalCircuit::new();
        for _ in 0..1_000 {
            c.record_success(&clock, &T);
        }
        assert!(c.stripes.get().is_none(), "one thread never needs them");
        // A few words (ten: the count of openings for the open-time backoff
        // and the sliding window's pointer are the last two), not a few
        // cache lines: a registry may hold thousands.
        assert!(core::mem::size_of::<LocalCircuit>() <= 80);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..20_000 {
                        c.record_success(&clock, &T);
                    }
                });
            }
        });
        assert_eq!(c.counts(&clock), Counts::new(0, 81_000));
        // once spread (whether or not the threads above met), counts go on
        // adding up over the shared word and the stripes
        c.spread_requests();
        assert!(c.stripes.get().is_some());
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1_000 {
                        c.record_success(&clock, &T);
                    }
                });
            }
        });
        assert_eq!(c.counts(&clock), Counts::new(0, 85_000));
        // a new window counts from 0 on every stripe
        clock.advance(Duration::from_secs(60));
        c.record_success(&clock, &T);
        assert_eq!(c.counts(&clock), Counts::new(0, 1));
    }

    #[test]
    fn successes_under_max_failures_write_nothing() {
        let clock = ManualClock::new();
        let c = LocalCircuit::new();
        let rule = MaxFailuresRule::new(2).unwrap();
        let before = (
            c.window.load(Ordering::Relaxed),
            c.request_counters()
                .map(|r| r.load(Ordering::Relaxed))
                .sum::<u64>(),
        );
        c.record(Permit::Normal, Outcome::Success, &rule, &clock, &T);
        let after = (
            c.window.load(Ordering::Relaxed),
            c.request_counters()
                .map(|r| r.load(Ordering::Relaxed))
                .sum::<u64>(),
        );
        assert_eq!(before, after);
    }

    /// `rollovers` windows of one success each, after a first failure.
    fn windows_of_successes(rollovers: u32) -> (ManualClock, LocalCircuit) {
        let clock = ManualClock::new();
        let c = LocalCircuit::new();
        let rule = PercentageFailuresRule::new(100, 1).unwrap();
        c.record(Permit::Normal, Outcome::Failure, &rule, &clock, &TINY);
        for _ in 0..rollovers {
            clock.advance(Duration::from_millis(1));
            c.record(Permit::Normal, Outcome::Success, &rule, &clock, &TINY);
        }
        (clock, c)
    }

    const TINY: Timing = Timing {
        failure_timeout_ms: 1,
        circuit_timeout_ms: 10_000,
        half_open_max_calls: 1,
        half_open_successes: 1,
        trial_lease_ms: 10_000,
        backoff: None,
    };

    #[test]
    fn a_count_never_comes_back_when_the_generations_wrap() {
        // exactly one wrap of the 16-bit generation: the window's number is
        // the first window's again
        let (clock, c) = windows_of_successes(1 << 16);
        assert_eq!(c.counts(&clock), Counts::new(0, 1));
    }

    #[test]
    fn a_failure_after_half_a_wrap_of_successes_is_counted() {
        // the failure counter, untouched for more than half the generations,
        // must not look newer than the window (that made `bump` spin)
        let (clock, c) = windows_of_successes(40_000);
        let rule = PercentageFailuresRule::new(100, 1).unwrap();
        c.record(Permit::Normal, Outcome::Failure, &rule, &clock, &TINY);
        assert_eq!(c.counts(&clock), Counts::new(1, 2));
    }

    #[test]
    fn a_failure_counted_before_a_whole_open_close_cycle_cannot_trip_the_new_period() {
        let clock = ManualClock::new();
        let c = LocalCircuit::new();
        let closed = c.phase.load(Ordering::Acquire);
        let rule = MaxFailuresRule::new(1).unwrap();
        fail(&c, &rule, &clock);
        clock.advance(Duration::from_secs(10));
        let (a, _) = c.admit(&clock, &T);
        let Admission::Admitted(trial) = a else {
            panic!("{a:?}")
        };
        c.record(trial, Outcome::Success, &rule, &clock, &T);
        assert_eq!(c.state(&clock, &T), State::Closed);
        // a thread that loaded the first closed period and stalled
        assert_eq!(c.trip(closed, &clock, &T), None);
        assert_eq!(c.state(&clock, &T), State::Closed);
    }

    fn trial(c: &LocalCircuit, clock: &ManualClock, timing: &Timing) -> Option<u32> {
        match c.admit(clock, timing).0 {
            Admission::Admitted(Permit::Trial { episode }) => Some(episode),
            Admission::Admitted(Permit::Normal) => panic!("a normal call while half-open"),
            Admission::Rejected { .. } => None,
        }
    }

    #[test]
    fn a_hung_trial_frees_its_slot_when_its_lease_ends_and_decides_nothing() {
        let clock = ManualClock::new();
        let c = LocalCircuit::new();
        let rule = MaxFailuresRule::new(1).unwrap();
        fail(&c, &rule, &clock);
        clock.advance(Duration::from_secs(10));
        let first = trial(&c, &clock, &T).unwrap();
        clock.advance(Duration::from_millis(9_999));
        assert_eq!(trial(&c, &clock, &T), None);
        clock.advance(Duration::from_millis(1));
        let second = trial(&c, &clock, &T).unwrap();
        assert_ne!(first, second);
        assert_eq!(trial(&c, &clock, &T), None);
        // the first trial fails at last: too late, it decides nothing
        let late = c.record(
            Permit::Trial { episode: first },
            Outcome::Failure,
            &rule,
            &clock,
            &T,
        );
        assert_eq!(late, None);
        assert_eq!(c.state(&clock, &T), State::HalfOpen);
        // the trial of the current lease does
        c.record(
            Permit::Trial { episode: second },
            Outcome::Success,
            &rule,
            &clock,
            &T,
        );
        assert_eq!(c.state(&clock, &T), State::Closed);
    }

    #[test]
    fn an_idle_half_open_circuit_stays_half_open() {
        let clock = ManualClock::new();
        let c = LocalCircuit::new();
        let rule = MaxFailuresRule::new(1).unwrap();
        fail(&c, &rule, &clock);
        clock.advance(Duration::from_secs(7 * 24 * 3600));
        assert_eq!(c.state(&clock, &T), State::HalfOpen);
        assert!(trial(&c, &clock, &T).is_some());
        assert_eq!(trial(&c, &clock, &T), None);
    }

    #[test]
    fn a_trial_lease_may_be_shorter_than_the_open_time() {
        let timing = Timing {
            trial_lease_ms: 500,
            ..T
        };
        let clock = ManualClock::new();
        let c = LocalCircuit::new();
        let rule = MaxFailuresRule::new(1).unwrap();
        c.record(Permit::Normal, Outcome::Failure, &rule, &clock, &timing);
        clock.advance(Duration::from_secs(10));
        assert!(trial(&c, &clock, &timing).is_some());
        clock.advance(Duration::from_millis(499));
        assert_eq!(trial(&c, &clock, &timing), None);
        clock.advance(Duration::from_millis(1));
        assert!(trial(&c, &clock, &timing).is_some());
    }

    const BACKOFF: Timing = Timing {
        circuit_timeout_ms: 1_000,
        trial_lease_ms: 1_000,
        backoff: Some(crate::state::BackoffTiming {
            multiplier_permille: 2_000,
            max_ms: 5_000,
            jitter_permille: 0,
        }),
        ..T
    };

    /// Fails one trial at the end of the open time and returns the next
    /// open time.
    fn reopen_by_a_failed_trial(c: &LocalCircuit, clock: &ManualClock) -> Duration {
        let open_for = c.open_for(clock).unwrap();
        clock.advance(open_for);
        let episode = trial(c, clock, &BACKOFF).unwrap();
        let rule = MaxFailuresRule::new(1).unwrap();
        let t = c.record(
            Permit::Trial { episode },
            Outcome::Failure,
            &rule,
            clock,
            &BACKOFF,
        );
        assert_eq!(t.map(|t| t.to), Some(State::Open));
        c.open_for(clock).unwrap()
    }

    fn trip_now(c: &LocalCircuit, clock: &ManualClock) -> Duration {
        let rule = MaxFailuresRule::new(1).unwrap();
        let t = c.record(Permit::Normal, Outcome::Failure, &rule, clock, &BACKOFF);
        assert_eq!(t.map(|t| t.to), Some(State::Open));
        c.open_for(clock).unwrap()
    }

    /// Closes the circuit by a successful trial at the end of the open time.
    fn close_by_a_trial(c: &LocalCircuit, clock: &ManualClock) {
        clock.advance(c.open_for(clock).unwrap());
        let episode = trial(c, clock, &BACKOFF).unwrap();
        let rule = MaxFailuresRule::new(1).unwrap();
        c.record(
            Permit::Trial { episode },
            Outcome::Success,
            &rule,
            clock,
            &BACKOFF,
        );
        assert_eq!(c.state(clock, &BACKOFF), State::Closed);
    }

    #[test]
    fn each_failed_trial_reopens_for_longer_up_to_the_maximum() {
        let clock = ManualClock::new();
        let c = LocalCircuit::new();
        assert_eq!(trip_now(&c, &clock), Duration::from_secs(1));
        let times: [Duration; 4] = core::array::from_fn(|_| reopen_by_a_failed_trial(&c, &clock));
        assert_eq!(times.map(|d| d.as_millis()), [2_000, 4_000, 5_000, 5_000]);
        // the deadline is the admission's too
        assert_eq!(
            c.admit(&clock, &BACKOFF).0,
            Admission::Rejected {
                retry_after: Some(Duration::from_secs(5))
            }
        );
        clock.advance(Duration::from_millis(4_999));
        assert_eq!(c.state(&clock, &BACKOFF), State::Open);
        clock.advance(Duration::from_millis(1));
        assert_eq!(c.state(&clock, &BACKOFF), State::HalfOpen);
    }

    #[test]
    fn a_whole_closed_window_starts_the_sequence_again() {
        let clock = ManualClock::new();
        let c = LocalCircuit::new();
        trip_now(&c, &clock);
        assert_eq!(reopen_by_a_failed_trial(&c, &clock), Duration::from_secs(2));
        close_by_a_trial(&c, &clock);
        clock.advance(Duration::from_millis(BACKOFF.failure_timeout_ms));
        assert_eq!(trip_now(&c, &clock), Duration::from_secs(1));
    }

    #[test]
    fn a_trip_within_the_window_after_closing_goes_on_with_the_sequence() {
        let clock = ManualClock::new();
        let c = LocalCircuit::new();
        trip_now(&c, &clock);
        assert_eq!(reopen_by_a_failed_trial(&c, &clock), Duration::from_secs(2));
        close_by_a_trial(&c, &clock);
        clock.advance(Duration::from_millis(BACKOFF.failure_timeout_ms - 1));
        assert_eq!(trip_now(&c, &clock), Duration::from_secs(4));
        // an explicit opening counts too
        assert_eq!(c.open(&clock, &BACKOFF).map(|t| t.to), None, "open already");
        assert_eq!(c.open_for(&clock), Some(Duration::from_secs(5)));
    }

    #[test]
    fn closing_by_hand_forgets_the_openings_and_forcing_open_keeps_them() {
        let clock = ManualClock::new();
        let c = LocalCircuit::new();
        trip_now(&c, &clock);
        assert_eq!(reopen_by_a_failed_trial(&c, &clock), Duration::from_secs(2));
        c.set_manual(Manual::ForceOpen, &clock, &BACKOFF);
        c.set_manual(Manual::Disable, &clock, &BACKOFF);
        c.reset();
        assert_eq!(trip_now(&c, &clock), Duration::from_secs(1));
        assert_eq!(reopen_by_a_failed_trial(&c, &clock), Duration::from_secs(2));
        c.set_manual(Manual::Close, &clock, &BACKOFF);
        assert_eq!(trip_now(&c, &clock), Duration::from_secs(1));
    }

    #[test]
    fn without_half_open_the_count_lasts_one_window_after_the_open_time() {
        let timing = Timing {
            half_open_max_calls: 0,
            half_open_successes: 0,
            ..BACKOFF
        };
        let clock = ManualClock::new();
        let c = LocalCircuit::new();
        let rule = MaxFailuresRule::new(1).unwrap();
        let trip = |c: &LocalCircuit| {
            assert!(matches!(
                c.admit(&clock, &timing).0,
                Admission::Admitted(Permit::Normal)
            ));
            c.record(Permit::Normal, Outcome::Failure, &rule, &clock, &timing);
            c.open_for(&clock).unwrap().as_millis()
        };
        assert_eq!(trip(&c), 1_000);
        clock.advance(Duration::from_millis(1_000));
        assert_eq!(trip(&c), 2_000);
        clock.advance(Duration::from_millis(2_000 + timing.failure_timeout_ms - 1));
        assert_eq!(trip(&c), 4_000);
        clock.advance(Duration::from_millis(4_000 + timing.failure_timeout_ms));
        assert_eq!(trip(&c), 1_000);
    }

    #[test]
    fn jitter_moves_local_open_times_within_bounds() {
        let timing = Timing {
            backoff: Some(crate::state::BackoffTiming {
                jitter_permille: 500,
                ..BACKOFF.backoff.unwrap()
            }),
            ..BACKOFF
        };
        let clock = ManualClock::new();
        let rule = MaxFailuresRule::new(1).unwrap();
        let mut seen = alloc::collections::BTreeSet::new();
        for _ in 0..50 {
            let c = LocalCircuit::new();
            clock.advance(Duration::from_millis(7));
            c.record(Permit::Normal, Outcome::Failure, &rule, &clock, &timing);
            let ms = c.open_for(&clock).unwrap().as_millis();
            assert!((500..=1_500).contains(&ms), "{ms}");
            seen.insert(ms);
        }
        assert!(seen.len() > 10, "{seen:?}");
    }

    #[cfg(feature = "std")]
    #[test]
    fn threads_racing_at_the_end_of_a_lease_get_one_trial_per_lease() {
        use std::sync::atomic::AtomicUsize;
        let timing = Timing {
            half_open_max_calls: 3,
            half_open_successes: 3,
            ..T
        };
        let clock = ManualClock::new();
        let c = LocalCircuit::new();
        let rule = MaxFailuresRule::new(1).unwrap();
        c.record(Permit::Normal, Outcome::Failure, &rule, &clock, &timing);
        for round in 0..50 {
            clock.advance(Duration::from_millis(10_000));
            let admitted = AtomicUsize::new(0);
            std::thread::scope(|s| {
                for _ in 0..8 {
                    s.spawn(|| {
                        for _ in 0..20 {
                            if trial(&c, &clock, &timing).is_some() {
                                admitted.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
            });
            // every trial hangs: one lease, at most three trials, and the
            // lease was started (a rejection only while another caller
            // starts it)
            let n = admitted.load(Ordering::Relaxed);
            assert!((1..=3).contains(&n), "round {round}: {n} trials");
        }
    }
}

/// A window other than the fixed one, which lives in [`LocalCircuit`]'s
/// own words.
#[cfg(feature = "alloc")]
#[derive(Debug)]
pub(super) enum Counting {
    Sliding(Sliding),
    Count {
        ring: Ring,
        /// Outcomes the ring holds before the rule is asked.
        minimum: u64,
    },
}

/// A [`LocalCircuit`] with the clock it keeps time by: what an in-process
/// storage hands to a breaker through `Steps::local_circuit`.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone)]
pub struct LocalBinding {
    /// The circuit's state.
    pub circuit: alloc::sync::Arc<LocalCircuit>,
    /// The clock its deadlines and windows are measured on.
    pub clock: alloc::sync::Arc<dyn Clock>,
}

#[cfg(feature = "alloc")]
impl LocalBinding {
    /// [`LocalCircuit::admit`] on this binding's clock.
    #[inline]
    pub fn admit(&self, timing: &Timing) -> (Admission, Option<Transition>) {
        self.circuit.admit(&*self.clock, timing)
    }

    /// [`LocalCircuit::record`] on this binding's clock.
    #[inline]
    pub fn record(
        &self,
        permit: Permit,
        outcome: Outcome,
        rule: &dyn Rule,
        timing: &Timing,
    ) -> Option<Transition> {
        self.circuit
            .record(permit, outcome, rule, &*self.clock, timing)
    }

    /// [`LocalCircuit::state`] on this binding's clock.
    pub fn state(&self, timing: &Timing) -> State {
        self.circuit.state(&*self.clock, timing)
    }

    /// [`LocalCircuit::counts`] on this binding's clock.
    pub fn counts(&self) -> Counts {
        self.circuit.counts(&*self.clock)
    }
}
