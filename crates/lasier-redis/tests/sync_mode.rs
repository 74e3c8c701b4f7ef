//! Sync mode on a real Redis: the sync step's script against its default
//! body, and exact counts from several breakers (standing for processes)
//! each on its own pool, under threads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lasier_core::{Circuit, Config, Counts, Rule, Snapshot, State, Steps};
use lasier_redis::RedisStorage;
use lasier_sync::CircuitBreaker;
use support::unique;

fn circuit(name: &str, percentage: bool) -> (Circuit, Arc<dyn Rule>) {
    let mut config = Config::new(name);
    if percentage {
        config.percentage_failures(50, 4);
    } else {
        config.max_failures(5);
    }
    config.circuit_timeout(Duration::from_secs(30));
    config.validate().unwrap()
}

/// The same steps on a fresh circuit, through the script and through the
/// default body over the primitives: the same snapshots (the default body
/// cannot read how long an opening has left).
fn both(
    storage: &RedisStorage,
    percentage: bool,
    steps: impl Fn(&dyn Fn(Counts) -> Snapshot, &Circuit),
) {
    for via_script in [true, false] {
        let (circuit, rule) = circuit(&unique("sync"), percentage);
        let sync = |batch: Counts| {
            let snapshot = if via_script {
                storage.sync(&circuit, batch, &*rule).unwrap()
            } else {
                lasier_core::kv::blocking::sync(storage, &circuit, batch, &*rule).unwrap()
            };
            snapshot.with_open_for(None)
        };
        steps(&sync, &circuit);
    }
}

#[test]
fn the_script_and_the_default_body_give_the_same_answers() {
    let server = server_or_skip!();
    let storage = server.storage();
    let closed = |f, r| Snapshot::new(State::Closed, Counts::new(f, r));
    both(&storage, false, |sync, _| {
        assert_eq!(sync(Counts::new(0, 0)), closed(0, 0));
        // a rule that counts no requests ignores them
        assert_eq!(sync(Counts::new(2, 9)), closed(2, 0));
        assert_eq!(sync(Counts::new(0, 0)), closed(2, 0));
        let opened = sync(Counts::new(3, 0));
        assert_eq!(opened.state, State::Open);
        assert!(opened.transition.is_some());
        // nothing is counted while open
        assert_eq!(
            sync(Counts::new(4, 0)),
            Snapshot::new(State::Open, Counts::default())
        );
    });
    both(&storage, true, |sync, _| {
        assert_eq!(sync(Counts::new(1, 3)), closed(1, 3));
        // 2 of 6: under 50 %
        assert_eq!(sync(Counts::new(1, 3)), closed(2, 6));
        let opened = sync(Counts::new(4, 4));
        assert_eq!(opened.state, State::Open);
        assert_eq!(opened.counts, Counts::default());
    });
    both(&storage, false, |sync, circuit| {
        storage
            .set_manual(circuit, lasier_core::Manual::Disable)
            .unwrap();
        // disabled: counted, never trips
        assert_eq!(
            sync(Counts::new(9, 0)),
            Snapshot::new(State::Disabled, Counts::new(9, 0))
        );
        storage
            .set_manual(circuit, lasier_core::Manual::ForceOpen)
            .unwrap();
        assert_eq!(
            sync(Counts::new(1, 0)),
            Snapshot::new(State::ForcedOpen, Counts::default())
        );
    });
}

#[test]
fn the_script_reports_how_long_an_opening_has_left() {
    let server = server_or_skip!();
    let storage = server.storage();
    let (circuit, rule) = circuit(&unique("sync_open"), false);
    let opened = storage.sync(&circuit, Counts::new(5, 0), &*rule).unwrap();
    assert_eq!(opened.open_for, Some(Duration::from_secs(30)));
    let later = storage.sync(&circuit, Counts::default(), &*rule).unwrap();
    let left = later.open_for.unwrap();
    assert!(
        left <= Duration::from_secs(30) && left > Duration::from_secs(25),
        "{left:?}"
    );
}

/// Three "processes" (breakers on pools of their own) × 4 threads, random
/// outcomes for 2 s on one window that covers the run, a rule that never
/// trips: the store ends with exactly what they recorded.
#[test]
fn the_fleet_loses_nothing_and_counts_nothing_twice() {
    let server = server_or_skip!();
    let name = unique("sync_exact");
    let breakers: Vec<CircuitBreaker> = (0..3)
        .map(|_| {
            CircuitBreaker::builder(name.as_str())
                .storage(server.storage())
                .percentage_failures(100, u64::MAX / 2)
                .failure_timeout(Duration::from_secs(600))
                .sync_interval(Duration::from_millis(20))
                .build()
                .unwrap()
        })
        .collect();
    let (failures, requests) = (AtomicU64::new(0), AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(2);
    std::thread::scope(|scope| {
        for (i, breaker) in breakers.iter().enumerate() {
            for t in 0..4u64 {
                let (failures, requests) = (&failures, &requests);
                scope.spawn(move || {
                    let mut seed = (i as u64 + 1) * 7919 + t;
                    while Instant::now() < deadline {
                        seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let failed = (seed >> 33).is_multiple_of(3);
                        let result = breaker.call(|| if failed { Err("boom") } else { Ok(()) });
                        assert!(!result.is_err_and(|e| e.is_open()));
                        requests.fetch_add(1, Ordering::Relaxed);
                        if failed {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        }
    });
    let dropped: u64 = breakers.iter().map(|b| b.metrics().unwrap().dropped).sum();
    drop(breakers);
    let reader = CircuitBreaker::builder(name.as_str())
        .storage(server.storage())
        .percentage_failures(100, u64::MAX / 2)
        .build()
        .unwrap();
    let counts = reader.counts().unwrap();
    let recorded = Counts::new(failures.into_inner(), requests.into_inner());
    println!("recorded {recorded:?}, in the store {counts:?}, dropped {dropped}");
    assert_eq!(dropped, 0);
    assert_eq!(counts, recorded);
}
