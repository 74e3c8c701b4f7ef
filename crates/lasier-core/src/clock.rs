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
#[inline]
pub(crate) fn now_ms(clock: &dyn Clock) -> u64 {
    let now = clock.now();
    // Two 64-bit operations, not `as_millis`' 128-bit ones: this runs on
    // every success under a rule that counts requests.
    now.as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(now.subsec_millis()))
}

/// Whole milliseconds in `duration`, rounded up: how long a TTL given in
/// milliseconds (as Redis takes them) must be to last at least `duration`.
/// Saturates at `u64::MAX`.
pub fn ceil_millis(duration: Duration) -> u64 {
    let ms = duration.as_millis() + u128::from(!duration.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(ms).unwrap_or(u64::MAX)
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

/// The operating system's monotonic clock, measured from the moment this
/// value was created.
///
/// On Linux it reads `CLOCK_MONOTONIC_COARSE`: a few nanoseconds a read
/// instead of tens for `std::time::Instant`, with the kernel tick as its
/// resolution (1 to 4 ms). The circuit keeps time in whole milliseconds, so
/// windows and open times are as exact as the tick. Elsewhere it reads
/// `std::time::Instant`.
#[cfg(feature = "std")]
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: os::Origin,
}

#[cfg(feature = "std")]
impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: os::Origin::now(),
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
    #[inline]
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

#[cfg(all(feature = "std", any(target_os = "linux", target_os = "android")))]
mod os {
    use core::time::Duration;
    use rustix::time::{clock_gettime, ClockId};

    #[derive(Debug, Clone, Copy)]
    pub(super) struct Origin(Duration);

    #[inline]
    fn coarse() -> Duration {
        let t = clock_gettime(ClockId::MonotonicCoarse);
        // A monotonic clock is never negative.
        Duration::new(
            u64::try_from(t.tv_sec).unwrap_or(0),
            u32::try_from(t.tv_nsec).unwrap_or(0),
        )
    }

    impl Origin {
        pub(super) fn now() -> Self {
            Self(coarse())
        }

        #[inline]
        pub(super) fn elapsed(&self) -> Duration {
            coarse().saturating_sub(self.0)
        }
    }
}

#[cfg(all(feature = "std", not(any(target_os = "linux", target_os = "android"))))]
mod os {
    use core::time::Duration;
    use std::time::Instant;

    #[derive(Debug, Clone, Copy)]
    pub(super) struct Origin(Instant);

    impl Origin {
        pub(super) fn now() -> Self {
            Self(Instant::now())
        }

        pub(super) fn elapsed(&self) -> Duration {
            self.0.elapsed()
        }
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
