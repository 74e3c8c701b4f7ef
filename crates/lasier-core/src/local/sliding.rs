//! The sliding window of a [`LocalCircuit`](super::LocalCircuit)
//! (`sliding_window(n)`): `n` buckets, kept as the shared stores keep
//! theirs, so that every storage counts alike.
//!
//! A bucket starts with the first outcome counted once no bucket is
//! current; it is current for one bucket length, and counts for the whole
//! window (`failure_timeout`) from its start. The rule sees the sum of the
//! live buckets. Buckets are numbered; bucket `s` sits in slot `s % n`, and
//! each word of a slot carries its bucket's number, so that a count never
//! lands in a bucket that has been replaced and a slot's old counts are
//! never read as the new bucket's.
//!
//! No lock: the newest bucket is one word, changed by compare-and-swap;
//! each counter is a compare-and-swap on a word of its slot.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use lasier_rules::Counts;

/// Bits of a word that hold a bucket number; the other 40 hold a count or
/// a start time (ms, plus one, so that 0 means none).
const SEQ_SHIFT: u32 = 40;
const LOW_40: u64 = (1 << SEQ_SHIFT) - 1;
const SEQ_SPACE: u64 = 1 << (64 - SEQ_SHIFT);

/// One bucket's words, each `number << 40 | value`.
#[derive(Debug, Default)]
struct Bucket {
    /// The bucket's start, plus one.
    start: AtomicU64,
    failures: AtomicU64,
    requests: AtomicU64,
}

/// The buckets of one circuit. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Sliding {
    bucket_ms: u64,
    window_ms: u64,
    /// Bucket numbers wrap at a multiple of the slot count, so that a
    /// bucket's slot never changes across the wrap.
    modulus: u64,
    /// The newest bucket: its number, and its start plus one (0: no bucket
    /// is current; the next count starts the next one).
    newest: AtomicU64,
    slots: Box<[Bucket]>,
}

fn seq(word: u64) -> u64 {
    word >> SEQ_SHIFT
}

fn value(word: u64) -> u64 {
    word & LOW_40
}

impl Sliding {
    /// A window of `buckets` buckets of `bucket_ms` over `window_ms`.
    pub(crate) fn new(buckets: u16, bucket_ms: u64, window_ms: u64) -> Self {
        let n = u64::from(buckets.max(1));
        let slots: Vec<Bucket> = (0..n).map(|_| Bucket::default()).collect();
        Self {
            bucket_ms: bucket_ms.max(1),
            window_ms,
            modulus: SEQ_SPACE - SEQ_SPACE % n,
            newest: AtomicU64::new(0),
            slots: slots.into_boxed_slice(),
        }
    }

    /// Whether this is the window of `buckets` buckets of `bucket_ms`
    /// over `window_ms`.
    pub(crate) fn is(&self, buckets: u16, bucket_ms: u64, window_ms: u64) -> bool {
        self.n() == u64::from(buckets) && self.bucket_ms == bucket_ms && self.window_ms == window_ms
    }

    fn n(&self) -> u64 {
        self.slots.len() as u64
    }

    fn slot(&self, seq: u64) -> &Bucket {
        // (seq % n < n = slots.len(): never out of bounds)
        let i = usize::try_from(seq % self.n()).unwrap_or(0);
        &self.slots[i.min(self.slots.len() - 1)]
    }

    /// Whether bucket `a` came after bucket `b`.
    fn is_after(&self, a: u64, b: u64) -> bool {
        let d = (a + self.modulus - b) % self.modulus;
        d != 0 && d < self.modulus / 2
    }

    /// The number of the bucket current at `now`, starting the next one if
    /// none is.
    fn current(&self, now: u64) -> u64 {
        let mut newest = self.newest.load(Ordering::Acquire);
        loop {
            let start = value(newest);
            if start != 0 && now < (start - 1).saturating_add(self.bucket_ms) {
                return seq(newest);
            }
            let next = (seq(newest) + 1) % self.modulus;
            let word = (next << SEQ_SHIFT) | (now.min(LOW_40 - 1) + 1);
            match self.newest.compare_exchange_weak(
                newest,
                word,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // Slots are taken in turn: the one of `next` held the
                    // bucket n before it, long ended.
                    self.slot(next).start.store(word, Ordering::Release);
                    return next;
                }
                Err(actual) => newest = actual,
            }
        }
    }

    /// Adds `delta` to `counter` in bucket `seq`; returns false if the
    /// slot holds a later bucket already (this count came too late to
    /// matter).
    fn bump(&self, counter: &AtomicU64, seq_now: u64, delta: u64) -> bool {
        let mut word = counter.load(Ordering::Acquire);
        loop {
            let next = if seq(word) == seq_now {
                (seq_now << SEQ_SHIFT) | value(word).saturating_add(delta).min(LOW_40)
            } else if self.is_after(seq(word), seq_now) {
                return false;
            } else {
                (seq_now << SEQ_SHIFT) | delta.min(LOW_40)
            };
            match counter.compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(actual) => word = actual,
            }
        }
    }

    /// Counts `failures` and `requests` at `now`.
    pub(crate) fn add(&self, now: u64, failures: u64, requests: u64) {
        let seq = self.current(now);
        let slot = self.slot(seq);
        if requests > 0 {
            self.bump(&slot.requests, seq, requests);
        }
        if failures > 0 {
            self.bump(&slot.failures, seq, failures);
        }
    }

    /// The counts of the live buckets at `now`.
    pub(crate) fn counts(&self, now: u64) -> Counts {
        let newest = self.newest.load(Ordering::Acquire);
        let last = seq(newest);
        let mut counts = Counts::default();
        for k in 0..self.n() {
            let s = (last + self.modulus - k) % self.modulus;
            let slot = self.slot(s);
            let start = if k == 0 {
                newest
            } else {
                slot.start.load(Ordering::Acquire)
            };
            if seq(start) != s || value(start) == 0 {
                continue;
            }
            if now >= (value(start) - 1).saturating_add(self.window_ms) {
                // This bucket is over, and every older one with it.
                break;
            }
            let read = |counter: &AtomicU64| {
                let word = counter.load(Ordering::Acquire);
                if seq(word) == s {
                    value(word)
                } else {
                    0
                }
            };
            counts.failures += read(&slot.failures);
            counts.requests += read(&slot.requests);
        }
        counts
    }

    /// Ends every bucket: the next count starts an empty window. The
    /// numbers jump by the slot count, so that no count in flight for an
    /// old bucket can land in a bucket that will be read.
    pub(crate) fn clear(&self) {
        let _ = self
            .newest
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                Some(((seq(w) + self.n()) % self.modulus) << SEQ_SHIFT)
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_across_a_bucket_boundary_is_counted_whole() {
        // 10 buckets of 100 ms over 1 s.
        let w = Sliding::new(10, 100, 1000);
        w.add(950, 1, 1);
        w.add(1050, 1, 1);
        assert_eq!(w.counts(1050), Counts::new(2, 2));
        // The first bucket (started at 950) counts until 1950.
        assert_eq!(w.counts(1949), Counts::new(2, 2));
        assert_eq!(w.counts(1950), Counts::new(1, 1));
        assert_eq!(w.counts(2050), Counts::new(0, 0));
    }

    #[test]
    fn buckets_start_lazily_and_live_one_window() {
        let w = Sliding::new(4, 250, 1000);
        for t in [0, 100, 200] {
            w.add(t, 1, 1);
        }
        // one bucket, started at 0: current until 250
        w.add(300, 0, 1);
        assert_eq!(w.counts(300), Counts::new(3, 4));
        assert_eq!(w.counts(999), Counts::new(3, 4));
        assert_eq!(w.counts(1000), Counts::new(0, 1));
        assert_eq!(w.counts(1300), Counts::new(0, 0));
    }

    #[test]
    fn a_long_run_reuses_slots_without_reading_old_counts() {
        let w = Sliding::new(3, 10, 30);
        for t in (0..10_000).step_by(5) {
            w.add(t, 1, 1);
            let c = w.counts(t);
            // at most three live buckets of two counts each
            assert!(c.failures <= 6 && c.failures >= 1, "{c:?} at {t}");
        }
    }

    #[test]
    fn clear_empties_the_window_and_late_counts_stay_out() {
        let w = Sliding::new(4, 250, 1000);
        w.add(0, 2, 2);
        let before = seq(w.newest.load(Ordering::Acquire));
        w.clear();
        assert_eq!(w.counts(10), Counts::default());
        // A count for the bucket current before the clear, landing late.
        let slot = w.slot(before);
        w.bump(&slot.failures, before, 1);
        w.add(20, 1, 1);
        assert_eq!(w.counts(20), Counts::new(1, 1));
    }

    #[test]
    fn bucket_numbers_wrap_on_a_multiple_of_the_slots() {
        let w = Sliding::new(7, 1, 7);
        assert_eq!(w.modulus % 7, 0);
        w.newest
            .store(((w.modulus - 2) << SEQ_SHIFT) | 1, Ordering::Release);
        for t in 10..40 {
            w.add(t, 1, 0);
            assert!(w.counts(t).failures <= 7);
        }
        assert_eq!(w.counts(39).failures, 7);
    }
}
