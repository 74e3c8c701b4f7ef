//! The per-key registry: the lookup every guarded call through it pays
//! (a hit, on one and two threads), and the cost of a new key once the
//! registry is full, which is what keys chosen by an attacker (hosts,
//! tenants) cost it.
//!
//! `LASIER_BENCH_REGISTRY_KEYS` sets how many new keys one iteration of the
//! insertion bench makes (default 1 000 000).

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use lasier_sync::{CircuitBreaker, Registry, DEFAULT_CAPACITY, DEFAULT_MAX_IDLE};

fn registry() -> Registry {
    Registry::with_limits(
        |host| CircuitBreaker::builder(format!("http:{host}")).max_failures(5),
        DEFAULT_CAPACITY,
        DEFAULT_MAX_IDLE,
    )
}

/// A registry holding `DEFAULT_CAPACITY` breakers, keys `host-0..`.
fn full_registry() -> Registry {
    let hosts = registry();
    let mut key = String::new();
    for i in 0..DEFAULT_CAPACITY {
        host(&mut key, i as u64);
        hosts.get(&key).unwrap();
    }
    hosts
}

fn host(key: &mut String, i: u64) {
    key.clear();
    let _ = write!(key, "host-{i}.internal");
}

/// Runs `get` `iters` times on each of `threads` threads at once (thread
/// `t` on key `host-t`, or all on `host-0` when `same_key`); returns the
/// wall time, which is the time per lookup per thread times `iters`.
fn on_threads(hosts: &Registry, threads: usize, same_key: bool, iters: u64) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let barrier = &barrier;
            s.spawn(move || {
                let mut key = String::new();
                host(&mut key, if same_key { 0 } else { t as u64 });
                barrier.wait();
                for _ in 0..iters {
                    black_box(hosts.get(black_box(&key)).unwrap());
                }
            });
        }
        barrier.wait();
        Instant::now()
    })
    .elapsed()
}

pub(crate) fn hit(c: &mut Criterion) {
    let hosts = full_registry();
    let mut group = c.benchmark_group("registry_hit");
    group.bench_function("1 thread", |b| {
        b.iter_custom(|iters| on_threads(&hosts, 1, false, iters))
    });
    group.bench_function("2 threads, two keys", |b| {
        b.iter_custom(|iters| on_threads(&hosts, 2, false, iters))
    });
    group.bench_function("2 threads, one key", |b| {
        b.iter_custom(|iters| on_threads(&hosts, 2, true, iters))
    });
    group.finish();
}

pub(crate) fn insert_when_full(c: &mut Criterion) {
    let keys: u64 = std::env::var("LASIER_BENCH_REGISTRY_KEYS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let hosts = full_registry();
    // Every key of every iteration is new: numbered on from the full set.
    let next = AtomicU64::new(DEFAULT_CAPACITY as u64);
    let mut group = c.benchmark_group("registry_new_keys_when_full");
    // One iteration is many keys: ten of them, not criterion's 55.
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    group.throughput(Throughput::Elements(keys));
    group.bench_function(BenchmarkId::from_parameter(keys), |b| {
        b.iter_custom(|iters| {
            let mut key = String::new();
            let start = Instant::now();
            for _ in 0..iters * keys {
                host(&mut key, next.fetch_add(1, Ordering::Relaxed));
                black_box(hosts.get(&key).unwrap());
            }
            start.elapsed()
        })
    });
    group.finish();
}
