//! The count window of a [`LocalCircuit`](super::LocalCircuit)
//! (`count_window(n)`): the last `n` outcomes, as a ring of bits (1: a
//! failure), with the failures among them kept as a count.
//!
//! O(1) per call and no clock: a call takes the next position (one
//! compare-and-swap), sets or clears its bit (one compare-and-swap on the
//! word that holds it), and moves the failure count only when the bit
//! changed. Every word carries the window's generation (16 bits; 48 bits of
//! ring or count), so that emptying the window is one store plus a stamp of
//! each word, and an outcome of an earlier window never lands in this one.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use lasier_rules::Counts;

use super::window::{generation, is_newer, GEN_SHIFT, LOW_48};

/// Bits of the ring in a word.
const BITS: u64 = 48;
/// The position word's flag: the ring has been round once.
const FULL: u64 = 1 << 47;
/// The position word's index.
const INDEX: u64 = FULL - 1;

/// The ring of one circuit. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Ring {
    calls: u64,
    /// Generation, whether the ring has been round once (bit 47), and the
    /// index of the next outcome (brought back into the ring as it passes
    /// `calls`, without a division on the way).
    position: AtomicU64,
    /// Generation, and the failures in the ring.
    failures: AtomicU64,
    /// Generation, and 48 outcomes each.
    words: Box<[AtomicU64]>,
}

impl Ring {
    /// A ring of the last `calls` outcomes.
    pub(crate) fn new(calls: u32) -> Self {
        let calls = u64::from(calls.max(1));
        let words: Vec<AtomicU64> = (0..calls.div_ceil(BITS))
            .map(|_| AtomicU64::new(0))
            .collect();
        Self {
            calls,
            position: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            words: words.into_boxed_slice(),
        }
    }

    /// How many outcomes the ring holds when full.
    pub(crate) fn calls(&self) -> u64 {
        self.calls
    }

    /// Takes the next position: returns the window's generation and the
    /// position's index in the ring, and how many outcomes the ring holds
    /// with this one.
    ///
    /// One `fetch_add`; the caller that takes the ring's last index (or
    /// finds it passed, under contention) brings the index back into the
    /// ring by a multiple of its size, so every index stays where the
    /// sequence puts it.
    #[inline]
    fn take_position(&self) -> (u64, u64, u64) {
        let word = self.position.fetch_add(1, Ordering::AcqRel);
        let taken = word & INDEX;
        if taken + 1 < self.calls {
            let held = if word & FULL != 0 {
                self.calls
            } else {
                taken + 1
            };
            return (generation(word), taken, held);
        }
        self.wrap();
        (generation(word), taken % self.calls, self.calls)
    }

    /// Brings the index back into the ring, and marks it full.
    #[cold]
    fn wrap(&self) {
        let mut word = self.position.load(Ordering::Acquire);
        while word & INDEX >= self.calls {
            let next = (word & !LOW_48) | FULL | ((word & INDEX) % self.calls);
            match self.position.compare_exchange_weak(
                word,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => word = actual,
            }
        }
    }

    /// Records a success, when its counts are not needed.
    #[inline]
    pub(crate) fn record_success(&self) {
        let _ = self.write(false);
    }

    /// Records one outcome; returns the counts of the ring with it (`None`
    /// if the window was emptied meanwhile: it belongs to no window).
    #[inline]
    pub(crate) fn record(&self, failed: bool) -> Option<Counts> {
        let (gen, held, failures) = self.write(failed)?;
        let failures = match failures {
            Some(failures) => failures,
            None => {
                let word = self.failures.load(Ordering::Acquire);
                if generation(word) == gen {
                    word & LOW_48
                } else {
                    0
                }
            }
        };
        Some(Counts::new(failures, held))
    }

    /// Writes one outcome: returns the generation, the outcomes held, and
    /// the failure count if it moved (`None` overall if the window was
    /// emptied meanwhile).
    #[inline]
    fn write(&self, failed: bool) -> Option<(u64, u64, Option<u64>)> {
        let (gen, index, held) = self.take_position();
        // (index < calls: in bounds)
        let cell = self.words.get(usize::try_from(index / BITS).ok()?)?;
        let mask = 1_u64 << (index % BITS);
        let mut word = cell.load(Ordering::Acquire);
        let was_failure = loop {
            let bits = if generation(word) == gen {
                word & LOW_48
            } else if is_newer(generation(word), gen) {
                return None;
            } else {
                0
            };
            let old = bits & mask != 0;
            if old == failed && generation(word) == gen {
                break old;
            }
            let bits = if failed { bits | mask } else { bits & !mask };
            match cell.compare_exchange_weak(
                word,
                (gen << GEN_SHIFT) | bits,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break old,
                Err(actual) => word = actual,
            }
        };
        let failures = match (was_failure, failed) {
            (false, true) => Some(self.move_failures(gen, 1)?),
            (true, false) => Some(self.move_failures(gen, -1)?),
            _ => None,
        };
        Some((gen, held, failures))
    }

    /// Adds `delta` to the failure count of generation `gen`.
    fn move_failures(&self, gen: u64, delta: i64) -> Option<u64> {
        let mut word = self.failures.load(Ordering::Acquire);
        loop {
            let count = if generation(word) == gen {
                word & LOW_48
            } else if is_newer(generation(word), gen) {
                return None;
            } else {
                0
            };
            let count = count.saturating_add_signed(delta).min(LOW_48);
            match self.failures.compare_exchange_weak(
                word,
                (gen << GEN_SHIFT) | count,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(count),
                Err(actual) => word = actual,
            }
        }
    }

    /// The failures in the ring, and how many outcomes it holds.
    pub(crate) fn counts(&self) -> Counts {
        let position = self.position.load(Ordering::Acquire);
        let gen = generation(position);
        let failures = self.failures.load(Ordering::Acquire);
        let failures = if generation(failures) == gen {
            failures & LOW_48
        } else {
            0
        };
        let held = if position & FULL != 0 {
            self.calls
        } else {
            (position & INDEX).min(self.calls)
        };
        Counts::new(failures, held)
    }

    /// Empties the ring: a new generation, and every word stamped with it
    /// (so that none lags a generation behind, and the 16-bit generations
    /// compare safely across their wrap-around).
    pub(crate) fn clear(&self) {
        let Ok(previous) = self
            .position
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                Some(((generation(w) + 1) & 0xFFFF) << GEN_SHIFT)
            })
        else {
            return;
        };
        let gen = (generation(previous) + 1) & 0xFFFF;
        for word in self.words.iter().chain(core::iter::once(&self.failures)) {
            let _ = word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                is_newer(gen, generation(w)).then_some(gen << GEN_SHIFT)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: the last `n` outcomes in a queue.
    fn expected(outcomes: &[bool], n: usize) -> Counts {
        let last = &outcomes[outcomes.len().saturating_sub(n)..];
        Counts::new(
            last.iter().filter(|f| **f).count() as u64,
            last.len() as u64,
        )
    }

    #[test]
    fn holds_the_last_n_outcomes() {
        for n in [1_u32, 2, 47, 48, 49, 100] {
            let ring = Ring::new(n);
            let mut outcomes = Vec::new();
            for i in 0..1_000_u64 {
                let failed = (i * 7 + i / 3) % 5 < 2;
                outcomes.push(failed);
                let got = ring.record(failed).unwrap();
                assert_eq!(got, expected(&outcomes, n as usize), "n {n}, call {i}");
                assert_eq!(ring.counts(), got);
            }
        }
    }

    #[test]
    fn clear_empties_it_and_a_late_outcome_lands_nowhere() {
        let ring = Ring::new(10);
        for _ in 0..5 {
            ring.record(true);
        }
        let (gen, _, _) = ring.take_position();
        ring.clear();
        assert_eq!(ring.counts(), Counts::default());
        // An outcome of the emptied window arriving late changes nothing.
        assert_eq!(ring.move_failures(gen, 1), None);
        assert_eq!(ring.record(false), Some(Counts::new(0, 1)));
        assert_eq!(ring.record(true), Some(Counts::new(1, 2)));
    }

    #[test]
    fn many_clears_never_bring_old_bits_back() {
        let ring = Ring::new(96);
        for round in 0..70_000_u32 {
            ring.record(round % 3 == 0);
            if round % 2 == 1 {
                ring.clear();
                assert_eq!(ring.counts(), Counts::default());
            }
        }
    }

    #[cfg(feature = "std")]
    #[test]
    fn threads_lose_no_outcome() {
        let ring = Ring::new(64);
        std::thread::scope(|s| {
            for t in 0..4 {
                let ring = &ring;
                s.spawn(move || {
                    for i in 0..10_000 {
                        ring.record((i + t) % 4 == 0);
                    }
                });
            }
        });
        // The failure count is the number of bits set, whatever the order.
        let bits: u64 = ring
            .words
            .iter()
            .map(|w| u64::from((w.load(Ordering::Acquire) & LOW_48).count_ones()))
            .sum();
        assert_eq!(ring.counts(), Counts::new(bits, 64));
    }
}
