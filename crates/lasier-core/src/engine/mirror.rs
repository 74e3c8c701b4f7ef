//! The in-process mirror of a shared circuit, for a breaker in sync mode
//! (`sync_interval`): what the last sync read from the store (the state,
//! the fleet's counts), and the outcomes this process has not pushed yet.
//!
//! * Admission on a circuit the mirror holds as closed is one atomic load:
//!   the phase byte equals `CLOSED | USED`.
//! * Outcomes of calls it admitted go to pending counters, one pair per
//!   thread stripe (no lock, no allocation), until a sync takes them.
//! * A sync takes the pending counts (and those a failed sync carried
//!   over), sends them in one step, and refreshes the mirror from the
//!   answer. At most one sync per breaker is in flight.
//! * The background (the facade's syncer) marks each interval whether the
//!   breaker was used; a mirror not refreshed for two intervals turns
//!   stale, and a stale mirror admits nothing: the next call syncs first.
//! * Counts a failed sync carried over are dropped once the window they
//!   were recorded in has surely ended, and counted as dropped.

use alloc::boxed::Box;
use alloc::string::String;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use lasier_rules::{Counts, Rule};

use crate::state::{Outcome, State};

/// The mirror's phase (low bits).
const STALE: u8 = 0;
const CLOSED: u8 = 1;
const DISABLED: u8 = 2;
const OPEN: u8 = 3;
const HALF_OPEN: u8 = 4;
const FORCED_OPEN: u8 = 5;
/// Set by a call, cleared by each background pass: the breaker was used
/// since.
const USED: u8 = 0x80;

#[cfg(feature = "std")]
const LANES: usize = crate::local::STRIPES;
#[cfg(not(feature = "std"))]
const LANES: usize = 1;

#[inline]
fn lane() -> usize {
    #[cfg(feature = "std")]
    {
        crate::local::stripe()
    }
    #[cfg(not(feature = "std"))]
    {
        0
    }
}

/// One thread stripe's pending counts, on cache lines of its own.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Lane {
    failures: AtomicU64,
    requests: AtomicU64,
}

/// What the mirror says of a call that did not pass the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Admit it from the mirror.
    Admit,
    /// Reject it: forced open.
    Reject,
    /// Ask the store, as a breaker without sync mode does (open past the
    /// deadline it read, half-open), or sync first if stale (see
    /// [`Mirror::sync_first`]).
    AskStore,
}

/// What a background pass should do with a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Due {
    /// Nothing yet: its interval has not passed since its last sync.
    NotYet,
    /// Sync it now (and the caller holds its sync).
    Sync,
    /// Its interval passed, but it was not used and holds nothing: no round
    /// trip (its mirror turns stale after two intervals).
    Idle,
    /// Another sync of it is in flight.
    Busy,
}

/// How many unanswered parts a breaker keeps: while that many syncs went
/// unanswered, new outcomes wait in the pending counters.
const OUTBOX: usize = 4;

/// A part of the outcomes that a sync sent and the store has not
/// acknowledged: sent again with every sync until one is answered.
#[derive(Debug, Default)]
struct Part {
    number: AtomicU64,
    failures: AtomicU64,
    requests: AtomicU64,
    /// The earliest its outcomes can have been recorded (ms).
    since: AtomicU64,
}

/// A batch taken for a sync, given back with the answer.
#[derive(Debug, Clone, Copy)]
#[must_use = "a batch must be given back to `synced`"]
pub struct Batch {
    parts: [(u64, Counts); OUTBOX],
    len: usize,
    /// When the sync started (ms).
    asked_at: u64,
    /// The mirror's count of pushes when the sync started: a push counted
    /// after it means its answer may predate a change.
    pushes: u64,
}

impl Batch {
    /// Its parts: (part number, counts), numbers rising.
    pub fn parts(&self) -> &[(u64, Counts)] {
        &self.parts[..self.len]
    }

    /// When the sync started (ms on the breaker's clock).
    pub(crate) fn asked_at(&self) -> u64 {
        self.asked_at
    }
}

#[derive(Debug)]
pub(crate) struct Mirror {
    interval_ms: u64,
    /// The phase and the USED bit.
    phase: AtomicU8,
    lanes: Box<[Lane; LANES]>,
    /// When (ms) the last sync that the store answered started.
    synced_at: AtomicU64,
    /// When (ms) the last sync started, answered or not.
    attempted_at: AtomicU64,
    /// When (ms) a sync last took the per-thread counters: the earliest
    /// their counts can date from.
    lanes_since: AtomicU64,
    fleet_failures: AtomicU64,
    fleet_requests: AtomicU64,
    /// Parts sent and not acknowledged (touched only by the holder of the
    /// sync), and how many.
    outbox: [Part; OUTBOX],
    outbox_len: AtomicUsize,
    /// The number of the next part.
    next_part: AtomicU64,
    /// Where the store keeps the last part it counted from this breaker.
    writer_key: String,
    in_flight: AtomicBool,
    /// Outcomes given up because their window ended before a sync could
    /// push them.
    dropped: AtomicU64,
    /// Pushes of a change by the store, counted.
    pushes: AtomicU64,
    /// The phase (code) the last push took the mirror out of, for a
    /// `FailOpen` breaker whose sync then fails.
    before_push: AtomicU8,
}

impl Mirror {
    /// A mirror for the circuit `name`, syncing every `interval_ms`.
    pub(crate) fn new(name: &str, interval_ms: u64, now: u64) -> Self {
        let writer = (u64::from(crate::kv::fresh_id()) << 32) | u64::from(crate::kv::fresh_id());
        Self {
            interval_ms: interval_ms.max(1),
            phase: AtomicU8::new(STALE),
            lanes: Box::default(),
            synced_at: AtomicU64::new(0),
            attempted_at: AtomicU64::new(now),
            lanes_since: AtomicU64::new(now),
            fleet_failures: AtomicU64::new(0),
            fleet_requests: AtomicU64::new(0),
            outbox: Default::default(),
            outbox_len: AtomicUsize::new(0),
            next_part: AtomicU64::new(1),
            writer_key: crate::keys::writer_key(name, writer),
            in_flight: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            pushes: AtomicU64::new(0),
            before_push: AtomicU8::new(STALE),
        }
    }

    /// Where the store keeps the last part it counted from this breaker.
    pub(crate) fn writer_key(&self) -> &str {
        &self.writer_key
    }

    pub(crate) fn interval_ms(&self) -> u64 {
        self.interval_ms
    }

    /// The hot path: whether the mirror admits a call, in one load.
    #[inline]
    pub(crate) fn admits(&self) -> bool {
        self.phase.load(Ordering::Relaxed) == CLOSED | USED
    }

    /// Past the hot path: marks the breaker used, and says what to do.
    pub(crate) fn verdict(&self) -> Verdict {
        let mut phase = self.phase.load(Ordering::Relaxed);
        if phase & USED == 0 {
            phase = self.phase.fetch_or(USED, Ordering::Relaxed);
        }
        match phase & !USED {
            CLOSED | DISABLED => Verdict::Admit,
            FORCED_OPEN => Verdict::Reject,
            _ => Verdict::AskStore,
        }
    }

    /// Whether it is stale and this caller now holds the sync that must
    /// refresh it before the call is decided.
    pub(crate) fn sync_first(&self) -> bool {
        self.phase.load(Ordering::Relaxed) & !USED == STALE && self.claim()
    }

    /// Whether calls it admits count towards the rule (not disabled).
    fn trips(&self) -> bool {
        self.phase.load(Ordering::Relaxed) & !USED != DISABLED
    }

    /// Holds `state`, as read from the store or learnt from a step.
    pub(crate) fn hold(&self, state: State) {
        let code = match state {
            State::Closed => CLOSED,
            State::Disabled => DISABLED,
            State::Open => OPEN,
            State::HalfOpen => HALF_OPEN,
            State::ForcedOpen => FORCED_OPEN,
        };
        if matches!(state, State::Open | State::HalfOpen | State::ForcedOpen) {
            // Leaving the closed state empties the shared window: the
            // counts last read from it no longer stand (an estimate on them
            // would trip the next closed period early).
            self.fleet_failures.store(0, Ordering::Relaxed);
            self.fleet_requests.store(0, Ordering::Relaxed);
        }
        let _ = self
            .phase
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(code | (p & USED))
            });
    }

    /// Counts a success of a call it admitted, under a rule that counts
    /// requests.
    #[inline]
    pub(crate) fn add_success(&self) {
        self.lanes[lane()].requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the outcome of a call it admitted. Returns whether this
    /// process's estimate of the fleet's counts (the last synced ones plus
    /// what is pending) now reaches the rule, and this caller holds the
    /// sync that must push it at once.
    #[inline]
    pub(crate) fn add(&self, outcome: Outcome, counts_requests: bool, rule: &dyn Rule) -> bool {
        let lane = &self.lanes[lane()];
        if counts_requests {
            lane.requests.fetch_add(1, Ordering::Relaxed);
        }
        if outcome != Outcome::Failure {
            return false;
        }
        lane.failures.fetch_add(1, Ordering::Relaxed);
        if !self.trips() || !rule.should_open(self.estimate()) {
            return false;
        }
        // The rule is reached as this process knows the fleet: nothing more
        // is admitted from the mirror (calls ask the store) until a sync
        // says what the store decided.
        self.stale();
        self.claim()
    }

    /// The fleet's counts as this process knows them: the last synced
    /// ones, plus what it has not pushed.
    pub(crate) fn estimate(&self) -> Counts {
        let pending = self.pending();
        Counts::new(
            self.fleet_failures
                .load(Ordering::Relaxed)
                .saturating_add(pending.failures),
            self.fleet_requests
                .load(Ordering::Relaxed)
                .saturating_add(pending.requests),
        )
    }

    /// What this process has not pushed yet (or pushed without an answer).
    pub(crate) fn pending(&self) -> Counts {
        let (mut failures, mut requests) = (0_u64, 0_u64);
        let sent = self.outbox_len.load(Ordering::Acquire).min(OUTBOX);
        for part in &self.outbox[..sent] {
            failures = failures.saturating_add(part.failures.load(Ordering::Relaxed));
            requests = requests.saturating_add(part.requests.load(Ordering::Relaxed));
        }
        for lane in self.lanes.iter() {
            failures = failures.saturating_add(lane.failures.load(Ordering::Relaxed));
            requests = requests.saturating_add(lane.requests.load(Ordering::Relaxed));
        }
        Counts::new(failures, requests)
    }

    /// Outcomes given up so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Takes the sync: `false` if another one is in flight.
    pub(crate) fn claim(&self) -> bool {
        self.in_flight
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Ends the sync the caller holds, without running it.
    pub(crate) fn release(&self) {
        self.in_flight.store(false, Ordering::Release);
    }

    /// For a background pass at `now`, the next one `ahead_ms` later:
    /// whether to sync (its interval ends before the next pass, so that
    /// breakers due about together sync together), and if so, the sync is
    /// claimed.
    pub(crate) fn due(&self, now: u64, ahead_ms: u64) -> Due {
        let attempted = self.attempted_at.load(Ordering::Relaxed);
        if now.saturating_add(ahead_ms).saturating_sub(attempted) < self.interval_ms {
            return Due::NotYet;
        }
        let synced = self.synced_at.load(Ordering::Relaxed);
        if now.saturating_sub(synced) >= 2 * self.interval_ms {
            // Not refreshed for two intervals (idle, or its syncs failed):
            // admit nothing from it.
            self.stale();
        }
        let used = self.phase.fetch_and(!USED, Ordering::Relaxed) & USED != 0;
        let pending = self.pending();
        if used || pending.failures > 0 || pending.requests > 0 {
            return if self.claim() { Due::Sync } else { Due::Busy };
        }
        Due::Idle
    }

    /// For a background pass at `now` that syncs other breakers: whether
    /// this one, used or holding counts, and not synced within the last
    /// `gap_ms` (since the previous pass), joins them, so that breakers of
    /// one storage fall into step and share round trips; if so, the sync is
    /// claimed.
    pub(crate) fn joins(&self, now: u64, gap_ms: u64) -> bool {
        let attempted = self.attempted_at.load(Ordering::Relaxed);
        if now.saturating_sub(attempted) < gap_ms {
            return false;
        }
        let used = self.phase.load(Ordering::Relaxed) & USED != 0;
        let pending = self.pending();
        if !used && pending.failures == 0 && pending.requests == 0 {
            return false;
        }
        if !self.claim() {
            return false;
        }
        let _ = self.phase.fetch_and(!USED, Ordering::Relaxed);
        true
    }

    /// Takes the pending counts for the sync this caller holds, at `now`:
    /// the parts no sync got an answer for (less those whose window has
    /// surely ended: dropped, and counted as dropped), and a new part with
    /// what the threads counted since, if there is room.
    pub(crate) fn begin(&self, now: u64, window_ms: u64) -> Batch {
        self.attempted_at.store(now, Ordering::Relaxed);
        let mut batch = Batch {
            parts: [(0, Counts::default()); OUTBOX],
            len: 0,
            asked_at: now,
            pushes: self.pushes.load(Ordering::Acquire),
        };
        let mut since = [0_u64; OUTBOX];
        let sent = self.outbox_len.load(Ordering::Acquire).min(OUTBOX);
        for part in &self.outbox[..sent] {
            let counts = Counts::new(
                part.failures.load(Ordering::Relaxed),
                part.requests.load(Ordering::Relaxed),
            );
            if now.saturating_sub(part.since.load(Ordering::Relaxed)) >= window_ms {
                // Its window has surely ended: it would count in a window
                // it was not part of.
                self.dropped
                    .fetch_add(counts.failures.max(counts.requests), Ordering::Relaxed);
                continue;
            }
            batch.parts[batch.len] = (part.number.load(Ordering::Relaxed), counts);
            since[batch.len] = part.since.load(Ordering::Relaxed);
            batch.len += 1;
        }
        if batch.len < OUTBOX {
            // (recorded since the counters were last taken, at the
            // earliest; while the outbox was full they were not)
            let before = self.lanes_since.swap(now, Ordering::Relaxed);
            let (mut failures, mut requests) = (0_u64, 0_u64);
            for lane in self.lanes.iter() {
                failures = failures.saturating_add(lane.failures.swap(0, Ordering::Relaxed));
                requests = requests.saturating_add(lane.requests.swap(0, Ordering::Relaxed));
            }
            if failures > 0 || requests > 0 {
                let number = self.next_part.fetch_add(1, Ordering::Relaxed);
                batch.parts[batch.len] = (number, Counts::new(failures, requests));
                since[batch.len] = before;
                batch.len += 1;
            }
        }
        // The outbox is now the batch: kept until a sync is answered.
        for ((slot, (number, counts)), since) in self.outbox.iter().zip(batch.parts()).zip(since) {
            slot.number.store(*number, Ordering::Relaxed);
            slot.since.store(since, Ordering::Relaxed);
            slot.failures.store(counts.failures, Ordering::Relaxed);
            slot.requests.store(counts.requests, Ordering::Relaxed);
        }
        self.outbox_len.store(batch.len, Ordering::Release);
        batch
    }

    /// The store's answer to the sync of `batch`: refreshes the fleet's
    /// counts and empties the outbox (the caller sets the state with
    /// [`hold`](Self::hold)), or, unanswered, keeps the outbox for the next
    /// sync. Ends the sync.
    pub(crate) fn end(&self, batch: Batch, answered: Option<Counts>) {
        self.end_held(&batch, answered);
        self.in_flight.store(false, Ordering::Release);
    }

    /// [`end`](Self::end) but for the sync's claim, which the caller still
    /// holds (and gives back with [`release`](Self::release) once it has
    /// applied the answer: a push meanwhile waits for it).
    pub(crate) fn end_held(&self, batch: &Batch, answered: Option<Counts>) {
        if let Some(counts) = answered {
            // (what a push left is settled by an answer)
            self.before_push.store(STALE, Ordering::Relaxed);
            self.fleet_failures
                .store(counts.failures, Ordering::Relaxed);
            self.fleet_requests
                .store(counts.requests, Ordering::Relaxed);
            self.synced_at.store(batch.asked_at, Ordering::Relaxed);
            self.outbox_len.store(0, Ordering::Release);
        }
    }

    /// Whether a push arrived while `batch` was in flight: its answer may
    /// predate a change.
    pub(crate) fn pushed_since(&self, batch: &Batch) -> bool {
        self.pushes.load(Ordering::Acquire) != batch.pushes
    }

    /// After a push, a failed sync under `FailOpen`: back to the phase the
    /// push left (availability first: the mirror keeps admitting for its
    /// two intervals, as after any failed sync), if nothing refreshed it
    /// since.
    pub(crate) fn undo_push(&self) {
        let before = self.before_push.swap(STALE, Ordering::Relaxed);
        if before != STALE {
            let _ = self
                .phase
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                    (p & !USED == STALE).then_some(before | (p & USED))
                });
        }
    }

    /// For a change the store pushed: the mirror admits nothing more until
    /// a sync refreshes it, and the caller syncs it now (`Sync`, the sync
    /// claimed); or another sync is in flight, whose answer may predate the
    /// change (`Busy`: ask again next pass); or it was stale already with
    /// nothing in flight (`Idle`: the next call syncs first, as it would).
    pub(crate) fn pushed(&self) -> Due {
        self.pushes.fetch_add(1, Ordering::AcqRel);
        let claimed = self.claim();
        if claimed && self.phase.load(Ordering::Relaxed) & !USED == STALE {
            self.release();
            return Due::Idle;
        }
        let before = self
            .phase
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(STALE | (p & USED))
            })
            .unwrap_or(STALE)
            & !USED;
        if before != STALE {
            self.before_push.store(before, Ordering::Relaxed);
        }
        if claimed {
            Due::Sync
        } else {
            Due::Busy
        }
    }

    /// Admits nothing more until a sync refreshes it.
    pub(crate) fn stale(&self) {
        let _ = self
            .phase
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(STALE | (p & USED))
            });
    }

    /// Forgets what it holds (a reset of the circuit): stale, nothing
    /// pending.
    pub(crate) fn forget(&self) {
        self.stale();
        self.outbox_len.store(0, Ordering::Release);
        for lane in self.lanes.iter() {
            lane.failures.store(0, Ordering::Relaxed);
            lane.requests.store(0, Ordering::Relaxed);
        }
        self.fleet_failures.store(0, Ordering::Relaxed);
        self.fleet_requests.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lasier_rules::MaxFailuresRule;

    const INTERVAL: u64 = 100;
    const WINDOW: u64 = 1_000;

    fn synced(mirror: &Mirror, now: u64, state: State, fleet: Counts) {
        let batch = mirror.begin(now, WINDOW);
        mirror.end(batch, Some(fleet));
        mirror.hold(state);
    }

    #[test]
    fn a_new_mirror_admits_nothing_until_a_sync() {
        let mirror = Mirror::new("svc", INTERVAL, 0);
        assert!(!mirror.admits());
        assert_eq!(mirror.verdict(), Verdict::AskStore);
        assert!(mirror.sync_first());
        // one sync at a time
        assert!(!mirror.sync_first());
        synced(&mirror, 0, State::Closed, Counts::default());
        // the verdict marked it used: the hot path admits from now on
        assert!(mirror.admits());
    }

    #[test]
    fn each_state_decides_as_the_store_would() {
        let mirror = Mirror::new("svc", INTERVAL, 0);
        for (state, verdict) in [
            (State::Closed, Verdict::Admit),
            (State::Disabled, Verdict::Admit),
            (State::ForcedOpen, Verdict::Reject),
            (State::Open, Verdict::AskStore),
            (State::HalfOpen, Verdict::AskStore),
        ] {
            mirror.hold(state);
            assert_eq!(mirror.verdict(), verdict, "{state:?}");
        }
    }

    #[test]
    fn outcomes_wait_in_the_mirror_and_a_sync_takes_them_once() {
        let mirror = Mirror::new("svc", INTERVAL, 0);
        synced(&mirror, 0, State::Closed, Counts::default());
        let rule = MaxFailuresRule::new(10).unwrap();
        for _ in 0..5 {
            mirror.add_success();
        }
        assert!(!mirror.add(Outcome::Failure, true, &rule));
        assert_eq!(mirror.pending(), Counts::new(1, 6));
        assert!(mirror.claim());
        let batch = mirror.begin(50, WINDOW);
        assert_eq!(batch.parts(), &[(1, Counts::new(1, 6))]);
        mirror.end(batch, Some(Counts::new(4, 20)));
        assert_eq!(mirror.pending(), Counts::default());
        assert_eq!(mirror.estimate(), Counts::new(4, 20));
        // nothing new: an empty batch (a sync only reads the state)
        assert!(mirror.claim());
        let batch = mirror.begin(150, WINDOW);
        assert!(batch.parts().is_empty());
        mirror.end(batch, Some(Counts::new(4, 20)));
        assert!(mirror.writer_key().starts_with("lasier:sync:svc:"));
    }

    #[test]
    fn a_failure_that_brings_the_estimate_to_the_rule_claims_a_sync_at_once() {
        let mirror = Mirror::new("svc", INTERVAL, 0);
        // the fleet had 2 failures at the last sync
        synced(&mirror, 0, State::Closed, Counts::new(2, 0));
        let rule = MaxFailuresRule::new(3).unwrap();
        let _ = mirror.verdict();
        assert!(mirror.admits());
        assert!(mirror.add(Outcome::Failure, false, &rule));
        // until that sync answers, calls ask the store
        assert!(!mirror.admits());
        assert_eq!(mirror.verdict(), Verdict::AskStore);
        // one sync at a time: the next failure does not claim another
        assert!(!mirror.add(Outcome::Failure, false, &rule));
        // disabled by hand: nothing trips
        let disabled = Mirror::new("svc", INTERVAL, 0);
        synced(&disabled, 0, State::Disabled, Counts::new(2, 0));
        assert!(!disabled.add(Outcome::Failure, false, &rule));
    }

    #[test]
    fn an_opening_learnt_otherwise_forgets_the_fleet_counts() {
        let mirror = Mirror::new("svc", INTERVAL, 0);
        synced(&mirror, 0, State::Closed, Counts::new(2, 0));
        // a per-call step saw the circuit open, then a trial closed it
        mirror.hold(State::Open);
        mirror.hold(State::Closed);
        let rule = MaxFailuresRule::new(3).unwrap();
        // one failure of a new period is not three
        assert!(!mirror.add(Outcome::Failure, false, &rule));
        assert_eq!(mirror.estimate(), Counts::new(1, 0));
    }

    #[test]
    fn an_unanswered_part_is_sent_again_with_its_number() {
        let mirror = Mirror::new("svc", INTERVAL, 0);
        synced(&mirror, 0, State::Closed, Counts::default());
        let rule = MaxFailuresRule::new(10).unwrap();
        let _ = mirror.add(Outcome::Failure, false, &rule);
        assert!(mirror.claim());
        let batch = mirror.begin(100, WINDOW);
        assert_eq!(batch.parts(), &[(1, Counts::new(1, 0))]);
        mirror.end(batch, None);
        assert_eq!(mirror.pending(), Counts::new(1, 0));
        let _ = mirror.add(Outcome::Failure, false, &rule);
        assert!(mirror.claim());
        let batch = mirror.begin(200, WINDOW);
        // the same part 1 (the store counts it only if it has not), and a
        // new part 2
        assert_eq!(
            batch.parts(),
            &[(1, Counts::new(1, 0)), (2, Counts::new(1, 0))]
        );
        mirror.end(batch, Some(Counts::new(2, 0)));
        assert_eq!(mirror.pending(), Counts::default());
        assert_eq!(mirror.dropped(), 0);
    }

    #[test]
    fn while_the_outbox_is_full_new_outcomes_wait_in_the_counters() {
        let mirror = Mirror::new("svc", INTERVAL, 0);
        synced(&mirror, 0, State::Closed, Counts::default());
        let rule = MaxFailuresRule::new(100).unwrap();
        for t in 1..=OUTBOX as u64 + 2 {
            let _ = mirror.add(Outcome::Failure, false, &rule);
            assert!(mirror.claim());
            let batch = mirror.begin(t * 10, WINDOW);
            assert_eq!(batch.parts().len() as u64, t.min(OUTBOX as u64));
            mirror.end(batch, None);
        }
        // nothing lost: 4 parts of 1, and 2 waiting
        assert_eq!(mirror.pending(), Counts::new(OUTBOX as u64 + 2, 0));
    }

    #[test]
    fn parts_are_dropped_and_counted_once_their_window_has_surely_ended() {
        let mirror = Mirror::new("svc", INTERVAL, 0);
        synced(&mirror, 0, State::Closed, Counts::default());
        let rule = MaxFailuresRule::new(10).unwrap();
        let _ = mirror.add(Outcome::Failure, true, &rule);
        assert!(mirror.claim());
        // recorded after the sync at 0: the part dates from 0 at the
        // earliest
        let batch = mirror.begin(100, WINDOW);
        mirror.end(batch, None);
        // still within a window of 0: kept
        assert!(mirror.claim());
        let batch = mirror.begin(999, WINDOW);
        assert_eq!(batch.parts(), &[(1, Counts::new(1, 1))]);
        mirror.end(batch, None);
        // a newer outcome
        mirror.add_success();
        assert!(mirror.claim());
        let batch = mirror.begin(1_000, WINDOW);
        // part 1 dates from 0: dropped; the new one is sent
        assert_eq!(batch.parts(), &[(2, Counts::new(0, 1))]);
        assert_eq!(mirror.dropped(), 1);
        mirror.end(batch, Some(Counts::new(0, 1)));
    }

    #[test]
    fn the_background_syncs_used_breakers_and_turns_idle_ones_stale() {
        let mirror = Mirror::new("svc", INTERVAL, 0);
        assert!(mirror.sync_first());
        synced(&mirror, 0, State::Closed, Counts::default());
        assert_eq!(mirror.due(50, 0), Due::NotYet);
        // used since: synced
        let _ = mirror.verdict();
        assert_eq!(mirror.due(100, 0), Due::Sync);
        synced(&mirror, 100, State::Closed, Counts::default());
        // not used for an interval: no round trip, still trusted
        assert_eq!(mirror.due(200, 0), Due::Idle);
        assert!(!mirror.admits());
        assert_eq!(mirror.verdict(), Verdict::Admit);
        // that verdict used it: synced again
        assert_eq!(mirror.due(210, 0), Due::Sync);
        synced(&mirror, 210, State::Closed, Counts::default());
        // idle two intervals: stale, the next call syncs first
        assert_eq!(mirror.due(320, 0), Due::Idle);
        assert_eq!(mirror.verdict(), Verdict::Admit);
        let _ = mirror.phase.fetch_and(!USED, Ordering::Relaxed);
        assert_eq!(mirror.due(420, 0), Due::Idle);
        assert!(!mirror.admits());
        assert_eq!(mirror.verdict(), Verdict::AskStore);
        assert!(mirror.sync_first());
    }

    #[test]
    fn breakers_in_use_join_a_pass_unless_synced_since_the_last() {
        let mirror = Mirror::new("svc", INTERVAL, 0);
        synced(&mirror, 0, State::Closed, Counts::default());
        // neither used nor holding counts: stays out
        assert!(!mirror.joins(60, 25));
        let _ = mirror.verdict();
        // synced within the last pass (25 ms): stays out
        assert!(!mirror.joins(20, 25));
        assert!(mirror.joins(60, 25));
        // it holds the sync now
        assert!(!mirror.claim());
        let batch = mirror.begin(60, WINDOW);
        mirror.end(batch, Some(Counts::default()));
        // and is not due again before a whole interval (less a pass)
        assert_eq!(mirror.due(100, 25), Due::NotYet);
    }

    #[test]
    fn a_breaker_with_pending_counts_is_synced_even_if_unused_since() {
        let mirror = Mirror::new("svc", INTERVAL, 0);
        synced(&mirror, 0, State::Closed, Counts::default());
        let rule = MaxFailuresRule::new(10).unwrap();
        let _ = mirror.add(Outcome::Failure, false, &rule);
        let _ = mirror.phase.fetch_and(!USED, Ordering::Relaxed);
        assert_eq!(mirror.due(100, 0), Due::Sync);
        // while that sync is in flight, another pass finds it busy
        assert_eq!(mirror.due(300, 0), Due::Busy);
    }

    #[test]
    fn a_push_then_a_failed_sync_is_undone_only_until_an_answer_settles_it() {
        let m = Mirror::new("x", INTERVAL, 0);
        assert!(m.claim());
        synced(&m, 0, State::Closed, Counts::default());
        assert_eq!(m.verdict(), Verdict::Admit);
        // a push: nothing admitted from the mirror until its sync answers
        assert_eq!(m.pushed(), Due::Sync);
        assert_eq!(m.verdict(), Verdict::AskStore);
        // its sync fails (FailOpen): back to what the push left
        let batch = m.begin(1, WINDOW);
        m.end(batch, None);
        m.undo_push();
        assert_eq!(m.verdict(), Verdict::Admit);
        // a push whose sync answered is settled: a later undo does nothing
        assert_eq!(m.pushed(), Due::Sync);
        synced(&m, 2, State::Open, Counts::default());
        m.stale();
        m.undo_push();
        assert_eq!(m.verdict(), Verdict::AskStore);
    }

    #[test]
    fn a_push_during_a_sync_leaves_its_answer_untrusted() {
        let m = Mirror::new("x", INTERVAL, 0);
        assert!(m.claim());
        let batch = m.begin(0, WINDOW);
        assert_eq!(m.pushed(), Due::Busy);
        m.end_held(&batch, Some(Counts::default()));
        m.hold(State::Closed);
        assert!(m.pushed_since(&batch));
        m.release();
        // a mirror that was stale and has nothing in flight needs no sync
        assert_eq!(m.phase.load(Ordering::Relaxed) & !USED, CLOSED);
        m.stale();
        assert_eq!(m.pushed(), Due::Idle);
        assert!(m.claim(), "the claim was given back");
    }
}
