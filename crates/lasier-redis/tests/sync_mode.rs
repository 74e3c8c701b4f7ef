//! Sync mode on a real Redis: the sync step's script against its default
//! body, and exact counts from several breakers (standing for processes)
//! each on its own pool, under threads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lasier_core::{Circuit, Config, Counts, Rule, Snapshot, State, Steps, SyncBatch, SyncItem};
use lasier_redis::{Options, RedisStorage};
use lasier_sync::{CircuitBreaker, StorageFailurePolicy};
use support::{unique, Fault, Proxy, Storages};

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
        let name = unique("sync");
        let (circuit, rule) = circuit(&name, percentage);
        let writer = format!("lasier:sync:{name}:1");
        let part = std::cell::Cell::new(0);
        let sync = |counts: Counts| {
            part.set(part.get() + 1);
            let parts = [(part.get(), counts)];
            let batch = SyncBatch::new(&writer, &parts);
            let snapshot = if via_script {
                storage.sync(&circuit, &batch, &*rule).unwrap()
            } else {
                lasier_core::kv::blocking::sync(storage, &circuit, &batch, &*rule).unwrap()
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
    let parts = [(1, Counts::new(5, 0))];
    let opened = storage
        .sync(&circuit, &SyncBatch::new("lasier:sync:w", &parts), &*rule)
        .unwrap();
    assert_eq!(opened.open_for, Some(Duration::from_secs(30)));
    let later = storage
        .sync(&circuit, &SyncBatch::new("lasier:sync:w", &[]), &*rule)
        .unwrap();
    let left = later.open_for.unwrap();
    assert!(
        left <= Duration::from_secs(30) && left > Duration::from_secs(25),
        "{left:?}"
    );
}

#[test]
fn a_batch_sent_again_after_a_lost_answer_counts_once() {
    let server = server_or_skip!();
    let storage = server.storage();
    for via_script in [true, false] {
        let name = unique("sync_again");
        let (circuit, rule) = circuit(&name, true);
        let writer = format!("lasier:sync:{name}:1");
        let sync = |parts: &[(u64, Counts)]| {
            let batch = SyncBatch::new(&writer, parts);
            if via_script {
                storage.sync(&circuit, &batch, &*rule).unwrap()
            } else {
                lasier_core::kv::blocking::sync(&storage, &circuit, &batch, &*rule).unwrap()
            }
        };
        assert_eq!(sync(&[(1, Counts::new(1, 3))]).counts, Counts::new(1, 3));
        // the answer was lost: part 1 again, with a new part 2
        let again = sync(&[(1, Counts::new(1, 3)), (2, Counts::new(0, 2))]);
        assert_eq!(again.counts, Counts::new(1, 5), "via script: {via_script}");
        // and once more, all of it: nothing more
        let again = sync(&[(1, Counts::new(1, 3)), (2, Counts::new(0, 2))]);
        assert_eq!(again.counts, Counts::new(1, 5), "via script: {via_script}");
        // the writer key lives as long as a window
        let ttl: i64 = server.cmd(&["PTTL", &writer]);
        assert!(ttl > 0, "{ttl}");
    }
}

/// Three "processes" (breakers on pools of their own) × 4 threads, random
/// outcomes for 3 s on one window that covers the run, a rule that never
/// trips. The first reaches Redis through a proxy that holds everything for
/// 0.6 s mid-run (longer than the storage's timeout): its syncs time out,
/// and Redis runs them when the link comes back, so the batches it sends
/// again were counted already. The store ends with exactly what they
/// recorded.
#[test]
fn the_fleet_loses_nothing_and_counts_nothing_twice() {
    let server = server_or_skip!();
    let proxy = Proxy::start(server.addr());
    proxy.set_recording(false);
    let name = unique("sync_exact");
    let options = Options::new().timeout(Duration::from_millis(200));
    let breakers: Vec<CircuitBreaker> = (0..3)
        .map(|i| {
            let storage = if i == 0 {
                RedisStorage::open_with_options(proxy.url(None), options).unwrap()
            } else {
                server.storage_with(options)
            };
            CircuitBreaker::builder(name.as_str())
                .storage(storage)
                .percentage_failures(100, u64::MAX / 2)
                .failure_timeout(Duration::from_secs(600))
                .sync_interval(Duration::from_millis(500))
                // calls keep coming from the mirror while the link is cut
                .on_storage_failure(StorageFailurePolicy::FailOpen)
                .build()
                .unwrap()
        })
        .collect();
    let (failures, requests) = (AtomicU64::new(0), AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(3);
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
        std::thread::sleep(Duration::from_secs(1));
        proxy.set(Fault::Blackhole);
        std::thread::sleep(Duration::from_millis(600));
        proxy.set(Fault::None);
    });
    let dropped: u64 = breakers.iter().map(|b| b.metrics().dropped).sum();
    for breaker in &breakers {
        breaker.flush().unwrap();
    }
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

/// Several breakers' syncs in one pipeline answer as each sync alone does.
#[test]
fn a_pipeline_of_syncs_answers_as_each_sync_alone() {
    let server = server_or_skip!();
    let storage = server.storage();
    let names: Vec<String> = (0..4).map(|i| unique(&format!("pipe{i}"))).collect();
    let alone: Vec<String> = (0..4).map(|i| unique(&format!("alone{i}"))).collect();
    let batches = [
        Counts::new(0, 0),
        Counts::new(1, 2),
        Counts::new(5, 5), // trips MaxFailures(5)
        Counts::new(2, 0),
    ];
    let run = |names: &[String], piped: bool| -> Vec<Snapshot> {
        let circuits: Vec<_> = names.iter().map(|n| circuit(n, false)).collect();
        let writers: Vec<String> = names.iter().map(|n| format!("lasier:sync:{n}:1")).collect();
        let parts: Vec<[(u64, Counts); 1]> = batches.iter().map(|c| [(1, *c)]).collect();
        let items: Vec<SyncItem<'_>> = circuits
            .iter()
            .zip(&writers)
            .zip(&parts)
            .map(|(((c, rule), w), p)| SyncItem::new(c, SyncBatch::new(w, p), &**rule))
            .collect();
        let answers = if piped {
            storage.sync_many(&items)
        } else {
            items
                .iter()
                .map(|i| storage.sync(i.circuit, &i.batch, i.rule))
                .collect()
        };
        answers.into_iter().map(|a| a.unwrap()).collect()
    };
    let piped = run(&names, true);
    assert_eq!(piped, run(&alone, false));
    assert_eq!(piped[2].state, State::Open);
    assert!(piped[2].transition.is_some());
    // the server lost its scripts: the pipeline still answers
    server.cmd::<()>(&["SCRIPT", "FLUSH"]);
    let again: Vec<String> = (0..4).map(|i| unique(&format!("again{i}"))).collect();
    assert_eq!(run(&again, true), piped);
}

/// The breakers on one storage (and its clones) that a background pass
/// finds due send their syncs in one round trip: through a proxy that
/// delays every reply by 40 ms, the sync scripts of a pass all reach the
/// server within a few milliseconds of each other.
#[test]
fn a_background_pass_pipelines_the_syncs_of_its_breakers() {
    let server = server_or_skip!();
    let proxy = Proxy::start(server.addr());
    proxy.set(Fault::Delay(Duration::from_millis(40)));
    let storage = RedisStorage::open(proxy.url(None)).unwrap();
    let breakers: Vec<CircuitBreaker> = (0..8)
        .map(|i| {
            CircuitBreaker::builder(unique(&format!("piped{i}")))
                .storage(storage.clone())
                .max_failures(1_000)
                .sync_interval(Duration::from_millis(300))
                .build()
                .unwrap()
        })
        .collect();
    for b in &breakers {
        b.call(|| Ok::<(), ()>(())).unwrap();
    }
    // every breaker busy for a few intervals; their first syncs (each
    // breaker's first call) were spread over several round trips
    let until = Instant::now() + Duration::from_millis(1_500);
    while Instant::now() < until {
        for b in &breakers {
            let _ = b.call(|| Err::<(), ()>(()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent: Vec<Instant> = proxy
        .sent()
        .into_iter()
        .filter(|c| c.name == "EVALSHA")
        .map(|c| c.at)
        .collect();
    assert!(
        sent.len() >= 2 * breakers.len(),
        "{} syncs sent",
        sent.len()
    );
    let t0 = sent[0];
    eprintln!(
        "{:?}",
        sent.iter()
            .map(|t| (*t - t0).as_millis())
            .collect::<Vec<_>>()
    );
    // the last pass: its 8 syncs arrive together
    let last = &sent[sent.len() - breakers.len()..];
    let spread = *last.iter().max().unwrap() - *last.iter().min().unwrap();
    assert!(
        spread < Duration::from_millis(20),
        "the syncs of one pass were {spread:?} apart (a round trip is 40 ms)"
    );
}

#[test]
fn slow_successes_trip_a_shared_circuit_in_sync_mode() {
    let server = server_or_skip!();
    let name = unique("slow-calls");
    let breaker = CircuitBreaker::builder(&name)
        .storage(server.storage())
        .max_failures(3)
        .slow_call_duration(Duration::from_millis(20))
        .sync_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    for _ in 0..3 {
        let result = breaker.call(|| {
            std::thread::sleep(Duration::from_millis(30));
            Ok::<(), ()>(())
        });
        // the caller gets its result; the breaker counts a failure
        assert!(result.is_ok());
    }
    assert_eq!(breaker.metrics().slow, 3);
    // the third slow call reached the rule: it tripped the shared circuit
    let other = server.storage();
    let (circuit, _) = {
        let mut config = Config::new(&name);
        config.max_failures(3);
        config.validate().unwrap()
    };
    support::eventually("the slow calls open the shared circuit", || {
        other.state(&circuit).unwrap() == State::Open
    });
}
