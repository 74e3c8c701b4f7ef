//! A count that many threads add to at once: the calls a breaker rejected.
//!
//! Every call on an open circuit adds one, so on a busy service the threads
//! that reject add to it together. On a single word they would pass its
//! cache line between cores on every rejection, and rejecting would cost
//! several times more with each thread. So the count is one word until two
//! threads meet on it, then one word per thread stripe, each on cache lines
//! of its own, as the request counter of a circuit does. It stays exact: no
//! add is ever lost.

use core::sync::atomic::{AtomicU64, Ordering};

/// An exact count, spread over thread stripes once threads meet on it.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// The count while one thread at a time adds to it, and what it held
    /// when the stripes were made.
    shared: AtomicU64,
    /// Made when an add finds that another thread added meanwhile: 512
    /// bytes, which a breaker that never rejects from two threads at once
    /// never pays.
    #[cfg(feature = "std")]
    stripes: std::sync::OnceLock<crate::local::Stripes>,
}

impl Tally {
    /// Adds one.
    #[inline]
    pub(crate) fn add_one(&self) {
        #[cfg(feature = "std")]
        {
            if let Some(stripes) = self.stripes.get() {
                stripes[crate::local::stripe()]
                    .0
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            // A compare-and-swap, not an add, so that a meeting shows: it
            // fails only if another thread added since the load.
            let seen = self.shared.load(Ordering::Relaxed);
            if self
                .shared
                .compare_exchange(
                    seen,
                    seen.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                self.spread_and_add_one();
            }
        }
        #[cfg(not(feature = "std"))]
        self.shared.fetch_add(1, Ordering::Relaxed);
    }

    /// Threads met on the shared word: from now on each adds on its stripe,
    /// starting with this add (which the failed swap did not make).
    #[cfg(feature = "std")]
    #[cold]
    #[inline(never)]
    fn spread_and_add_one(&self) {
        let stripes = self.stripes.get_or_init(crate::local::Stripes::default);
        stripes[crate::local::stripe()]
            .0
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The count: the shared word and every stripe.
    pub(crate) fn get(&self) -> u64 {
        let shared = self.shared.load(Ordering::Relaxed);
        #[cfg(feature = "std")]
        if let Some(stripes) = self.stripes.get() {
            return stripes.iter().fold(shared, |sum, stripe| {
                sum.wrapping_add(stripe.0.load(Ordering::Relaxed))
            });
        }
        shared
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn one_thread_counts_on_the_shared_word() {
        let tally = Tally::default();
        for _ in 0..1000 {
            tally.add_one();
        }
        assert_eq!(tally.get(), 1000);
        assert!(tally.stripes.get().is_none(), "one thread never needs them");
    }

    #[test]
    fn threads_that_meet_spread_and_lose_no_add() {
        const THREADS: u64 = 4;
        const ADDS: u64 = 200_000;
        let tally = Tally::default();
        let start = std::sync::Barrier::new(THREADS as usize);
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    start.wait();
                    for _ in 0..ADDS {
                        tally.add_one();
                    }
                });
            }
        });
        assert_eq!(tally.get(), THREADS * ADDS);
    }

    #[test]
    fn the_count_made_before_the_stripes_stays_in_the_sum() {
        let tally = Tally::default();
        tally.add_one();
        tally.add_one();
        // As a meeting would: the next adds land on stripes.
        tally.spread_and_add_one();
        tally.add_one();
        assert!(tally.stripes.get().is_some());
        assert_eq!(tally.get(), 4);
    }
}
