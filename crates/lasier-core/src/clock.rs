//! Time, as the breaker sees it.
//!
//! The breaker never asks the operating system for the time directly: it asks
//! a [`Clock`]. Production code uses [`MonotonicClock`] (the default of
//! `MemoryStorage`); tests and benches use [`ManualClock`] and move time by
//! hand, so no test ever sleeps to wait for a state change.

use core::fmt;
use core::time::Duration;

/// A monotonic source of time.
///
/// `now` is the time elapsed since an origin of the clock's choosing; only
/// differences between two readings of the same clock matter. It must never
/// go backwards.
pub trait Clock: fmt::Debug + Send + Sync {
    /// The time elapsed since this clock's origin.
    fn now(&self) -> Duration;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Duration {
        (**self).now()
    }
}

#[cfg(feature = "alloc")]
impl<C: Clock + ?Sized> Clock for alloc::sync::Arc<C> {
    fn now(&self) -> Duration {
        (**self).now()
    }
}

/// Whole milliseconds since the clock's origin: the unit the circuit keeps
/// time in, as Redis does for its TTLs.
pub(crate) fn now_ms(clock: &dyn Clock) -> u64 {
    u64::try_from(clock.now().as_millis()).unwrap_or(u64::MAX)
}

/// A clock that only moves when told to: for tests and benches.
///
/// Clones share one time, so a test keeps a clone and advances the clock that
/// a storage or breaker was given.
///
/// ```
/// use core::time::Duration;
/// use lasier_core::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let shared = clock.clone();
/// clock.advance(Duration::from_secs(61));
/// assert_eq!(shared.now(), Duration::from_secs(61));
/// ```
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: alloc::sync::Arc<core::sync::atomic::AtomicU64>,
}

#[cfg(feature = "alloc")]
impl ManualClock {
    /// A clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by` (saturating at about 584 years).
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self.nanos.fetch_update(
            core::sync::atomic::Ordering::AcqRel,
            core::sync::atomic::Ordering::Acquire,
            |t| Some(t.saturating_add(by)),
        );
    }
}

#[cfg(feature = "alloc")]
impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(core::sync::atomic::Ordering::Acquire))
    }
}

/// The operating system's monotonic clock (`std::time::Instant`), measured
/// from the moment this value was created.
#[cfg(feature = "std")]
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: std::time::Instant,
}

#[cfg(feature = "std")]
impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: std::time::Instant::now(),
        }
    }
}

#[cfg(feature = "std")]
impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "std")]
impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_clones_share_time() {
        let a = ManualClock::new();
        let b = a.clone();
        a.advance(Duration::from_millis(1500));
        b.advance(Duration::from_millis(500));
        assert_eq!(a.now(), Duration::from_secs(2));
        assert_eq!(now_ms(&b), 2000);
    }

    #[test]
    fn manual_clock_saturates() {
        let a = ManualClock::new();
        a.advance(Duration::MAX);
        a.advance(Duration::MAX);
        assert_eq!(a.now(), Duration::from_nanos(u64::MAX));
    }
}
