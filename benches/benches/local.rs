//! Local overhead: a guarded call that succeeds on a closed circuit, on the
//! in-memory storage, next to a bare call, failsafe and recloser configured
//! as close to equivalent as they allow; and the cost of a rejection.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use failsafe::{backoff, failure_policy, CircuitBreaker as _, Config};

const OPEN: Duration = Duration::from_secs(3600);

/// Keeps a result from being optimised away.
fn consume<T>(value: T) {
    drop(black_box(value));
}

#[inline(never)]
fn work() -> Result<u64, ()> {
    Ok(black_box(1))
}

fn lasier_max() -> lasier_sync::CircuitBreaker {
    lasier_sync::CircuitBreaker::builder("bench")
        .max_failures(5)
        .circuit_timeout(OPEN)
        .build()
        .unwrap()
}

/// MaxFailures with `slow_call_duration`: two clock reads per call.
fn lasier_max_slow_calls() -> lasier_sync::CircuitBreaker {
    lasier_sync::CircuitBreaker::builder("bench")
        .max_failures(5)
        .circuit_timeout(OPEN)
        .slow_call_duration(Duration::from_secs(1))
        .build()
        .unwrap()
}

fn lasier_percentage() -> lasier_sync::CircuitBreaker {
    lasier_sync::CircuitBreaker::builder("bench")
        .percentage_failures(50, 100)
        .circuit_timeout(OPEN)
        .build()
        .unwrap()
}

/// PercentageFailures over the last 100 calls: like recloser's ring, a
/// count of calls, and no clock read.
fn lasier_count_window() -> lasier_sync::CircuitBreaker {
    lasier_sync::CircuitBreaker::builder("bench")
        .percentage_failures(50, 100)
        .count_window(100)
        .circuit_timeout(OPEN)
        .build()
        .unwrap()
}

/// PercentageFailures over 60 s in 10 buckets: like failsafe's success
/// rate over a time window.
fn lasier_sliding_window() -> lasier_sync::CircuitBreaker {
    lasier_sync::CircuitBreaker::builder("bench")
        .percentage_failures(50, 100)
        .failure_timeout(Duration::from_secs(60))
        .sliding_window(10)
        .circuit_timeout(OPEN)
        .build()
        .unwrap()
}

/// Runs `call` `iters` times on each of `threads` threads at once; returns
/// the wall time, which is the time per call per thread times `iters`.
fn on_threads(threads: usize, iters: u64, call: &(dyn Fn() + Sync)) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                barrier.wait();
                for _ in 0..iters {
                    call();
                }
            });
        }
        barrier.wait();
        let start = Instant::now();
        // scope joins every thread before returning
        start
    })
    .elapsed()
}

pub(crate) fn closed_path(c: &mut Criterion) {
    let max = lasier_max();
    let pct = lasier_percentage();
    let max_slow = lasier_max_slow_calls();
    let count = lasier_count_window();
    let sliding = lasier_sliding_window();
    let failsafe_consecutive = Config::new()
        .failure_policy(failure_policy::consecutive_failures(
            5,
            backoff::constant(OPEN),
        ))
        .build();
    let failsafe_rate = Config::new()
        .failure_policy(failure_policy::success_rate_over_time_window(
            0.5,
            100,
            Duration::from_secs(60),
            backoff::constant(OPEN),
        ))
        .build();
    let recloser = recloser::Recloser::custom()
        .error_rate(0.5)
        .closed_len(100)
        .half_open_len(1)
        .open_wait(OPEN)
        .build();

    let calls: Vec<Call<'_>> = vec![
        ("bare call", Box::new(|| consume(work()))),
        ("lasier MaxFailures", Box::new(|| consume(max.call(work)))),
        (
            "lasier MaxFailures, slow_call_duration",
            Box::new(|| consume(max_slow.call(work))),
        ),
        (
            "lasier PercentageFailures",
            Box::new(|| consume(pct.call(work))),
        ),
        (
            "lasier PercentageFailures, count window",
            Box::new(|| consume(count.call(work))),
        ),
        (
            "lasier PercentageFailures, sliding window",
            Box::new(|| consume(sliding.call(work))),
        ),
        (
            "failsafe consecutive",
            Box::new(|| consume(failsafe_consecutive.call(work))),
        ),
        (
            "failsafe success rate",
            Box::new(|| consume(failsafe_rate.call(work))),
        ),
        (
            "recloser error rate",
            Box::new(|| consume(recloser.call(work))),
        ),
    ];

    for threads in [1_usize, 2] {
        on_each(
            c,
            &format!("closed_success_{threads}_threads"),
            threads,
            &calls,
        );
    }
}

/// A benchmark's name and its call.
type Call<'a> = (&'a str, Box<dyn Fn() + Sync + 'a>);

/// Benches each of `calls` in `group`, from `threads` threads at once.
fn on_each(c: &mut Criterion, group: &str, threads: usize, calls: &[Call<'_>]) {
    let mut group = c.benchmark_group(group);
    for (name, call) in calls {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            if threads == 1 {
                b.iter(call);
            } else {
                b.iter_custom(|iters| on_threads(threads, iters, &**call));
            }
        });
    }
    group.finish();
}

/// An open lasier breaker named `name`.
fn lasier_open(name: &str) -> lasier_sync::CircuitBreaker {
    let lasier = lasier_sync::CircuitBreaker::builder(name)
        .max_failures(5)
        .circuit_timeout(OPEN)
        .build()
        .unwrap();
    for _ in 0..5 {
        let _ = lasier.call(|| Err::<(), ()>(()));
    }
    assert!(lasier.call(work).is_err());
    lasier
}

pub(crate) fn rejection(c: &mut Criterion) {
    let lasier = lasier_open("bench");
    // Longer than a name kept inline: its clone is a reference count.
    let lasier_long_name = lasier_open("bench-circuit-with-a-long-name");

    let failsafe = Config::new()
        .failure_policy(failure_policy::consecutive_failures(
            1,
            backoff::constant(OPEN),
        ))
        .build();
    let _ = failsafe.call(|| Err::<(), ()>(()));
    assert!(failsafe.call(work).is_err());

    let recloser = recloser::Recloser::custom()
        .error_rate(0.5)
        .closed_len(1)
        .open_wait(OPEN)
        .build();
    let _ = recloser.call(|| Err::<(), ()>(()));
    let _ = recloser.call(|| Err::<(), ()>(()));
    assert!(recloser.call(work).is_err());

    let calls: [Call<'_>; 4] = [
        ("lasier", Box::new(|| consume(lasier.call(work)))),
        (
            "lasier, long name",
            Box::new(|| consume(lasier_long_name.call(work))),
        ),
        ("failsafe", Box::new(|| consume(failsafe.call(work)))),
        ("recloser", Box::new(|| consume(recloser.call(work)))),
    ];
    on_each(c, "rejected_while_open", 1, &calls);
    on_each(c, "rejected_while_open_2_threads", 2, &calls);
}
