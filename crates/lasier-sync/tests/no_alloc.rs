//! The in-process closed path allocates nothing: counted with a global
//! allocator that tallies every allocation made on this test's thread.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// The counting allocator must implement the unsafe GlobalAlloc trait.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

use lasier_sync::{CircuitBreaker, Error};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

fn success(breaker: &CircuitBreaker) {
    let r: Result<u64, Error<()>> = breaker.call(|| Ok(black_box(1)));
    black_box(r.unwrap());
}

#[test]
fn a_success_on_a_closed_circuit_does_not_allocate() {
    for breaker in [
        CircuitBreaker::builder("max")
            .max_failures(5)
            .build()
            .unwrap(),
        CircuitBreaker::builder("pct")
            .percentage_failures(50, 10)
            .build()
            .unwrap(),
        CircuitBreaker::builder("slow")
            .percentage_failures(50, 10)
            .half_open_max_calls(3)
            .half_open_successes(2)
            .slow_call_duration(std::time::Duration::from_secs(1))
            .build()
            .unwrap(),
        CircuitBreaker::builder("sliding")
            .percentage_failures(50, 10)
            .sliding_window(10)
            .build()
            .unwrap(),
        CircuitBreaker::builder("count")
            .max_failures(5)
            .count_window(100)
            .build()
            .unwrap(),
    ] {
        success(&breaker); // warm up
        let n = allocations_during(|| {
            for _ in 0..10_000 {
                success(&breaker);
            }
        });
        assert_eq!(n, 0, "{breaker:?}");
    }
}

#[test]
fn failures_and_rejections_do_not_allocate_either() {
    let breaker = CircuitBreaker::builder("f")
        .max_failures(3)
        .build()
        .unwrap();
    let n = allocations_during(|| {
        for _ in 0..3 {
            let r: Result<(), Error<u8>> = breaker.call(|| Err(1));
            assert!(r.is_err());
        }
        for _ in 0..1_000 {
            let r: Result<(), Error<u8>> = breaker.call(|| Ok(()));
            assert!(black_box(r).unwrap_err().is_open());
        }
    });
    assert_eq!(n, 0);
}
