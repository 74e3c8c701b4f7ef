//! The counting window of a [`LocalCircuit`](super::LocalCircuit): each
//! counter is a word that carries the window's generation (16 bits) and its
//! count (48 bits), so that an increment never lands in a window that has
//! been replaced and a new window starts every counter at 0; and the
//! request counter's stripes, made once threads meet on it.

use core::sync::atomic::{AtomicU64, Ordering};

use super::LocalCircuit;
use crate::state::Timing;

pub(super) const GEN_SHIFT: u32 = 48;
pub(super) const LOW_48: u64 = (1 << GEN_SHIFT) - 1;

pub(super) fn generation(word: u64) -> u64 {
    word >> GEN_SHIFT
}

/// Whether generation `a` came after generation `b` (16 bits, wrapping).
pub(super) fn is_newer(a: u64, b: u64) -> bool {
    let d = a.wrapping_sub(b) & 0xFFFF;
    d != 0 && d < 0x8000
}

/// How many cache lines the request counter is spread over.
pub const STRIPES: usize = 4;

/// The stripe of the request counter this thread counts on.
#[cfg(feature = "std")]
#[inline]
pub(crate) fn stripe() -> usize {
    use core::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.try_with(|s| *s).unwrap_or(0)
}

/// Keeps a hot word on a cache line of its own (two lines, as adjacent-line
/// prefetchers pair them), so that threads counting requests on different
/// stripes do not slow each other down.
#[cfg(feature = "std")]
#[repr(align(128))]
#[derive(Debug, Default)]
pub(crate) struct Padded(pub(crate) AtomicU64);

/// The stripes of a counter that threads add to at once.
#[cfg(feature = "std")]
pub(crate) type Stripes = std::boxed::Box<[Padded; STRIPES]>;

impl LocalCircuit {
    /// The word this thread counts requests on: its stripe once threads
    /// met on the shared word, else that word.
    #[inline]
    pub(super) fn request_counter(&self) -> &AtomicU64 {
        #[cfg(feature = "std")]
        if let Some(stripes) = self.stripes.get() {
            return &stripes[stripe()].0;
        }
        &self.requests
    }

    /// Threads meet on the shared request word: give each a stripe of its
    /// own from now on.
    #[cold]
    #[inline(never)]
    pub(super) fn spread_requests(&self) {
        #[cfg(feature = "std")]
        self.stripes.get_or_init(Stripes::default);
    }

    /// Every request counter: the shared word, then the stripes if any.
    #[cfg(feature = "std")]
    pub(super) fn request_counters(&self) -> impl Iterator<Item = &AtomicU64> {
        let stripes: &[Padded] = self.stripes.get().map_or(&[], |s| &s[..]);
        core::iter::once(&self.requests).chain(stripes.iter().map(|s| &s.0))
    }

    /// Every request counter: without `std`, the shared word only.
    #[cfg(not(feature = "std"))]
    pub(super) fn request_counters(&self) -> impl Iterator<Item = &AtomicU64> {
        core::iter::once(&self.requests)
    }

    /// The requests counted in the window of generation `gen`.
    pub(super) fn requests_in(&self, gen: u64) -> u64 {
        self.request_counters()
            .map(|counter| {
                let word = counter.load(Ordering::Acquire);
                if generation(word) == gen {
                    word & LOW_48
                } else {
                    0
                }
            })
            .sum()
    }

    /// Ends the current window: the next count starts a new one at 0.
    pub(super) fn new_window(&self) {
        #[cfg(feature = "alloc")]
        match self.counting.as_deref() {
            Some(super::circuit::Counting::Sliding(sliding)) => sliding.clear(),
            Some(super::circuit::Counting::Count { ring, .. }) => ring.clear(),
            None => {}
        }
        if let Ok(previous) = self
            .window
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                Some(((generation(w) + 1) & 0xFFFF) << GEN_SHIFT)
            })
        {
            self.stamp((generation(previous) + 1) & 0xFFFF);
        }
    }

    /// Brings every counter still in an older generation to `gen` at 0.
    ///
    /// Done at each change of window, so that no counter ever lags more than
    /// a generation or two behind the window: the 16-bit generations then
    /// compare safely across their wrap-around, and a count from a window
    /// long gone can never come back as the current one's.
    pub(super) fn stamp(&self, gen: u64) {
        let fresh = gen << GEN_SHIFT;
        for counter in core::iter::once(&self.failures).chain(self.request_counters()) {
            let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                is_newer(gen, generation(word)).then_some(fresh)
            });
        }
    }

    /// The current window at `now`, starting a new one if it has expired.
    pub(super) fn window_at(&self, now: u64, timing: &Timing) -> u64 {
        let mut window = self.window.load(Ordering::Acquire);
        loop {
            let end = window & LOW_48;
            if end != 0 && now < end {
                return window;
            }
            let next = (((generation(window) + 1) & 0xFFFF) << GEN_SHIFT)
                | now.saturating_add(timing.failure_timeout_ms).min(LOW_48);
            match self.window.compare_exchange_weak(
                window,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.stamp(generation(next));
                    return next;
                }
                Err(actual) => window = actual,
            }
        }
    }

    /// Adds one to `counter` in the window current at `now`; returns that
    /// window's generation and the counter's count in it.
    pub(super) fn bump(&self, counter: &AtomicU64, now: u64, timing: &Timing) -> (u64, u64) {
        'window: loop {
            let gen = generation(self.window_at(now, timing));
            let mut word = counter.load(Ordering::Acquire);
            loop {
                let word_gen = generation(word);
                let next = if word_gen == gen {
                    (gen << GEN_SHIFT) | ((word & LOW_48) + 1).min(LOW_48)
                } else if is_newer(word_gen, gen)
                    && generation(self.window.load(Ordering::Acquire)) != gen
                {
                    // another thread started a newer window meanwhile
                    continue 'window;
                } else {
                    (gen << GEN_SHIFT) | 1
                };
                match counter.compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return (gen, next & LOW_48),
                    Err(actual) => word = actual,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_compare_across_wrap_around() {
        assert!(is_newer(1, 0));
        assert!(is_newer(0, 0xFFFF));
        assert!(!is_newer(0, 0));
        assert!(!is_newer(0xFFFF, 0));
    }
}
