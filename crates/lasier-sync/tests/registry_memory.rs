//! A registry's memory follows its capacity, whatever its keys: counted
//! with a global allocator that tallies the bytes alive. One test in this
//! binary, so that nothing else allocates while it counts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// The counting allocator must implement the unsafe GlobalAlloc trait.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use lasier_sync::{CircuitBreaker, CircuitBreakerBuilder, Error, Registry, DEFAULT_MAX_IDLE};

struct Counting;

/// Bytes allocated and not yet freed, as the program asked for them (what
/// the system allocator adds on top is not counted).
static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::SeqCst)
}

fn since(before: usize) -> usize {
    live().saturating_sub(before)
}

/// Resident memory of the process, in bytes (Linux; 0 elsewhere): printed
/// beside the count, never asserted, since freed pages need not go back.
fn rss() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

const CAPACITY: usize = 10_000;

/// New keys pushed through the full registry, each recording one failure
/// (about 8 s in a debug build; the bench `registry_new_keys_when_full`
/// times as many).
const KEYS: usize = 1_000_000;

/// The most bytes one idle breaker without a storage may take, all its
/// allocations together: measured 456 for these names (26 bytes), see the
/// figures this test prints: its `BreakerCore` in an `Arc`, its
/// `LocalCircuit` in an `Arc` (a few words: request stripes are made only
/// when threads meet on its counter), its name and its rule. Its keys are
/// made only if a storage asks for them. With the feature `metrics`, its
/// dozen metric handles and its call timing too (measured 728 B, against
/// 456 B without; 528 B since open-time backoff added a word to
/// `LocalCircuit` and its settings to `Timing`; 544 B since the sliding and
/// count windows added a word to `LocalCircuit` and the window to
/// `Circuit`; 568 B since the name became a `CircuitName`, a word wider
/// than `Arc<str>` so that a short one is copied, not counted, on each
/// rejection, and the rejected-calls count got the two words of its
/// stripes' `OnceLock`).
const BREAKER_BYTES: usize = if cfg!(feature = "metrics") { 820 } else { 580 };

/// The most bytes a full registry may take per breaker it holds beyond the
/// breaker itself: the key, the entry's slot and the cache's share, ghost
/// entries (keys recently evicted, remembered by hash) included. Measured
/// about 160 once the ghosts have filled up.
const ENTRY_BYTES: usize = 256;

/// What else may be alive at the end: the test harness, thread-locals.
const SLACK: usize = 256 * 1024;

fn host(i: usize) -> String {
    format!("host-{i:07}.internal")
}

fn recipe(host: &str) -> CircuitBreakerBuilder {
    CircuitBreaker::builder(format!("http:{host}")).max_failures(5)
}

#[test]
fn a_registry_holds_memory_for_its_capacity_whatever_the_keys() {
    // One idle breaker, as the registry builds it.
    let mut breakers = Vec::with_capacity(1_000);
    let names: Vec<String> = (0..1_000).map(host).collect();
    let before = live();
    for name in &names {
        breakers.push(recipe(name).build().unwrap());
    }
    let per_breaker = since(before) / breakers.len();
    drop(breakers);
    drop(names);

    // A full registry of idle breakers.
    let before = live();
    let rss_before = rss();
    let hosts = Registry::with_limits(recipe, CAPACITY, DEFAULT_MAX_IDLE);
    for i in 0..CAPACITY {
        hosts.get(&host(i)).unwrap();
    }
    let full = since(before);
    // Shards fill unevenly: a few keys may have gone already.
    let held = hosts.len();
    assert!((CAPACITY * 95 / 100..=CAPACITY).contains(&held), "{held}");

    // Then new keys, each recording one failure.
    let start = Instant::now();
    for i in CAPACITY..CAPACITY + KEYS {
        let breaker = hosts.get(&host(i)).unwrap();
        let failed: Result<(), Error<()>> = breaker.call(|| Err(()));
        assert!(matches!(failed, Err(Error::Inner(()))));
    }
    let elapsed = start.elapsed();
    let churned = since(before);
    eprintln!(
        "one idle breaker: {per_breaker} B; a registry of {CAPACITY} with {held} breakers: {full} B \
         ({} B per breaker); after {KEYS} more keys with one failure each ({elapsed:.1?}): \
         {churned} B ({} B per breaker held), {} breakers held; RSS {} MB -> {} MB",
        full / held,
        churned / hosts.len().max(1),
        hosts.len(),
        rss_before / 1_000_000,
        rss() / 1_000_000,
    );

    assert!(per_breaker <= BREAKER_BYTES, "{per_breaker} B per breaker");
    assert!(hosts.len() <= CAPACITY);
    let bound = CAPACITY * (BREAKER_BYTES + ENTRY_BYTES) + SLACK;
    assert!(
        churned <= bound,
        "{churned} B alive after {KEYS} keys, over {bound} B"
    );
}
