//! When a breaker whose store failed asks it again: while in fallback, one
//! caller per probe interval probes the store; the others stay on the
//! in-process fallback circuit.

use core::sync::atomic::{AtomicU64, Ordering};

/// While in fallback: when (ms on the breaker's clock) the store may be
/// probed next; 0 when not in fallback.
#[derive(Debug)]
pub(crate) struct Probe {
    next: AtomicU64,
    interval_ms: u64,
}

impl Probe {
    pub(crate) fn new(interval_ms: u64) -> Self {
        Self {
            next: AtomicU64::new(0),
            interval_ms,
        }
    }

    /// Whether the store failed and the fallback circuit protects calls.
    pub(crate) fn in_fallback(&self) -> bool {
        self.next.load(Ordering::Acquire) != 0
    }

    /// At `now`, in fallback: `Some(true)` for the one caller that probes
    /// the store now, `Some(false)` for the others; `None` when not in
    /// fallback.
    pub(crate) fn due(&self, now: u64) -> Option<bool> {
        let at = self.next.load(Ordering::Acquire);
        if at == 0 {
            return None;
        }
        let next = now.saturating_add(self.interval_ms).max(1);
        Some(
            now >= at
                && self
                    .next
                    .compare_exchange(at, next, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok(),
        )
    }

    /// The store failed at `now`: in fallback until it answers, the first
    /// probe one interval on. Whether this call entered it.
    pub(crate) fn enter(&self, now: u64) -> bool {
        let next = now.saturating_add(self.interval_ms).max(1);
        self.next
            .compare_exchange(0, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The store answered: out of fallback. Whether this call left it.
    pub(crate) fn leave(&self) -> bool {
        self.next.load(Ordering::Acquire) != 0 && self.next.swap(0, Ordering::AcqRel) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_caller_per_interval_probes() {
        let probe = Probe::new(1_000);
        assert_eq!(probe.due(0), None);
        assert!(probe.enter(10));
        assert!(!probe.enter(20), "entered once");
        assert!(probe.in_fallback());
        assert_eq!(probe.due(1_009), Some(false));
        assert_eq!(probe.due(1_010), Some(true));
        assert_eq!(probe.due(1_010), Some(false), "the next one waits");
        assert_eq!(probe.due(2_010), Some(true));
        assert!(probe.leave());
        assert!(!probe.leave(), "left once");
        assert_eq!(probe.due(5_000), None);
    }

    #[cfg(feature = "std")]
    #[test]
    fn threads_racing_for_a_probe_get_one() {
        use core::sync::atomic::AtomicUsize;
        let probe = Probe::new(1_000);
        probe.enter(0);
        let probes = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..100 {
                        if probe.due(1_000) == Some(true) {
                            probes.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(probes.load(Ordering::Relaxed), 1);
    }
}
