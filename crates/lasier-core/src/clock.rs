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

    /// [`now`](Self::now) in whole milliseconds (rounded down, saturating):
    /// the unit the circuit keeps time in, as Redis does for its TTLs.
    ///
    /// The breaker reads this on every success under a rule that counts
    /// requests; override it only to make it cheaper, and keep it equal to
    /// the default.
    #[inline]
    fn now_ms(&self) -> u64 {
        duration_ms(self.now())
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Duration {
        (**self).now()
    }

    #[inline]
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

#[cfg(feature = "alloc")]
impl<C: Clock + ?Sized> Clock for alloc::sync::Arc<C> {
    fn now(&self) -> Duration {
        (**self).now()
    }

    #[inline]
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

/// Whole milliseconds in `duration`, rounded down, saturating: two 64-bit
/// operations, not `as_millis`' 128-bit ones.
#[inline]
fn duration_ms(duration: Duration) -> u64 {
    duration
        .as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(duration.subsec_millis()))
}

/// Whole milliseconds since the clock's origin.
#[inline]
pub(crate) fn now_ms(clock: &dyn Clock) -> u64 {
    clock.now_ms()
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

    fn now_ms(&self) -> u64 {
        self.nanos.load(core::sync::atomic::Ordering::Acquire) / 1_000_000
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

    #[inline]
    fn now_ms(&self) -> u64 {
        self.origin.elapsed_ms()
    }
}

#[cfg(all(feature = "std", any(target_os = "linux", target_os = "android")))]
mod os {
    use core::time::Duration;
    use rustix::time::{clock_gettime, ClockId};

    /// The clock's origin, as a reading of `CLOCK_MONOTONIC_COARSE`.
    #[derive(Debug, Clone, Copy)]
    pub(super) struct Origin {
        secs: u64,
        nanos: u32,
    }

    /// Seconds and nanoseconds of `CLOCK_MONOTONIC_COARSE` (never negative;
    /// nanoseconds below 10^9).
    #[inline]
    fn coarse() -> (u64, u32) {
        let t = clock_gettime(ClockId::MonotonicCoarse);
        (
            u64::try_from(t.tv_sec).unwrap_or(0),
            u32::try_from(t.tv_nsec).unwrap_or(0).min(999_999_999),
        )
    }

    impl Origin {
        pub(super) fn now() -> Self {
            let (secs, nanos) = coarse();
            Self { secs, nanos }
        }

        #[inline]
        pub(super) fn elapsed(&self) -> Duration {
            let (secs, nanos) = coarse();
            Duration::new(secs, nanos).saturating_sub(Duration::new(self.secs, self.nanos))
        }

        /// `elapsed` in whole milliseconds, in 64-bit integer arithmetic:
        /// this is the clock read on the hot path.
        #[inline]
        pub(super) fn elapsed_ms(&self) -> u64 {
            let (secs, nanos) = coarse();
            let Some(mut secs) = secs.checked_sub(self.secs) else {
                return 0;
            };
            let mut nanos = u64::from(nanos);
            let origin_nanos = u64::from(self.nanos);
            if nanos < origin_nanos {
                let Some(borrowed) = secs.checked_sub(1) else {
                    return 0;
                };
                secs = borrowed;
                nanos += 1_000_000_000;
            }
            secs.saturating_mul(1000)
                .saturating_add((nanos - origin_nanos) / 1_000_000)
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

        pub(super) fn elapsed_ms(&self) -> u64 {
            super::duration_ms(self.elapsed())
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

    #[cfg(feature = "std")]
    #[test]
    fn monotonic_now_ms_agrees_with_now() {
        let clock = MonotonicClock::new();
        for _ in 0..1000 {
            let before = duration_ms(clock.now());
            let ms = clock.now_ms();
            let after = duration_ms(clock.now());
            assert!(before <= ms && ms <= after, "{before} <= {ms} <= {after}");
        }
    }

    #[test]
    fn duration_ms_rounds_down_and_saturates() {
        assert_eq!(duration_ms(Duration::from_nanos(1_999_999)), 1);
        assert_eq!(duration_ms(Duration::new(2, 999_999_999)), 2999);
        assert_eq!(duration_ms(Duration::MAX), u64::MAX);
    }

    #[test]
    fn manual_clock_saturates() {
        let a = ManualClock::new();
        a.advance(Duration::MAX);
        a.advance(Duration::MAX);
        assert_eq!(a.now(), Duration::from_nanos(u64::MAX));
    }
}
