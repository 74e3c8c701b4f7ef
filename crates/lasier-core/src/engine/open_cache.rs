//! The open deadline a breaker on a shared store last read: while it has not
//! passed, calls are rejected without a round trip. It never outlives the
//! store's own deadline, nor the staleness bound, so that a `force_close()`
//! made by another process reaches this one in time.

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

/// A few milliseconds short of the store's deadline: this process's clock
/// may be a tick (1 to 4 ms, coarse) behind, and a cached "open" must never
/// outlive the store's.
const CLOCK_SLACK_MS: u64 = 5;

/// Until when (ms on the breaker's clock, exclusive) the store said the
/// circuit is open; 0 when unknown.
#[derive(Debug)]
pub(crate) struct OpenCache {
    until: AtomicU64,
    /// How long (ms) an open state read from the store is trusted.
    max_staleness_ms: u64,
}

impl OpenCache {
    pub(crate) fn new(max_staleness_ms: u64) -> Self {
        Self {
            until: AtomicU64::new(0),
            max_staleness_ms,
        }
    }

    /// At `now`: how long the circuit is still known open, or `None` (ask
    /// the store). A deadline found passed is forgotten.
    pub(crate) fn open_for(&self, now: u64) -> Option<Duration> {
        let until = self.until.load(Ordering::Acquire);
        if until == 0 {
            return None;
        }
        if now < until {
            return Some(Duration::from_millis(until - now));
        }
        let _ = self
            .until
            .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Acquire);
        None
    }

    /// Trusts an open state read from the store for `open_ms` from
    /// `asked_at` (before the store was asked, so never past the store's own
    /// deadline), or for the staleness bound if shorter; `now` is after the
    /// answer came.
    pub(crate) fn remember(&self, asked_at: u64, open_ms: u64, now: u64) {
        let ms = open_ms
            .min(self.max_staleness_ms)
            .saturating_sub(CLOCK_SLACK_MS);
        if ms == 0 {
            return;
        }
        let until = asked_at.saturating_add(ms).max(1);
        if until > now {
            self.until.store(until, Ordering::Release);
        }
    }

    /// Forgets what it knew: the circuit closed, or was changed by hand.
    pub(crate) fn forget(&self) {
        self.until.store(0, Ordering::Release);
    }

    /// What it knows at `now`, without forgetting a passed deadline.
    pub(crate) fn peek(&self, now: u64) -> Option<Duration> {
        let until = self.until.load(Ordering::Acquire);
        (until > now).then(|| Duration::from_millis(until - now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_state_is_trusted_short_of_the_stores_deadline() {
        let cache = OpenCache::new(1_000);
        assert_eq!(cache.open_for(0), None);
        // asked at 100, open 300 ms more by the store's clock
        cache.remember(100, 300, 102);
        assert_eq!(cache.open_for(102), Some(Duration::from_millis(293)));
        assert_eq!(cache.open_for(394), Some(Duration::from_millis(1)));
        assert_eq!(cache.open_for(395), None, "5 ms short of the store's");
        assert_eq!(cache.peek(395), None);
    }

    #[test]
    fn never_longer_than_the_staleness_bound() {
        let cache = OpenCache::new(1_000);
        cache.remember(0, 60_000, 1);
        assert_eq!(cache.open_for(1), Some(Duration::from_millis(994)));
        assert_eq!(cache.open_for(995), None);
    }

    #[test]
    fn an_answer_already_out_of_date_or_too_short_is_not_kept() {
        let cache = OpenCache::new(1_000);
        // the answer took so long that its deadline passed meanwhile
        cache.remember(0, 100, 200);
        assert_eq!(cache.open_for(200), None);
        // shorter than the slack
        cache.remember(0, 5, 0);
        assert_eq!(cache.open_for(0), None);
        // a staleness bound of zero trusts nothing
        let never = OpenCache::new(0);
        never.remember(0, 60_000, 0);
        assert_eq!(never.open_for(0), None);
    }

    #[test]
    fn forgetting_asks_the_store_again() {
        let cache = OpenCache::new(1_000);
        cache.remember(0, 500, 0);
        cache.forget();
        assert_eq!(cache.open_for(1), None);
    }
}
