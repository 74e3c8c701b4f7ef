//! A Redis Cluster that changes under a breaker's calls, on a local cluster
//! of three masters and three replicas that this binary starts
//! (`cluster-node-timeout` 2 s):
//!
//! * a slot moves between masters while calls run, back and forth, and a
//!   replica takes over from its master by `CLUSTER FAILOVER`: the clients
//!   meet `ASK`, `TRYAGAIN` and `MOVED`, and `NOSCRIPT` on a master that
//!   never ran the scripts; none of it reaches a caller, and no count is
//!   lost or doubled;
//! * a script that the client's slot map sends to one node while the
//!   redirections lead to another (which never ran it) runs as `EVAL`;
//! * a master dies under 8 threads (sync) or 64 tasks (async): its replica
//!   takes over; every call returns (the store-failure policy during the
//!   gap, within the storage timeout plus a margin, no panic); after the
//!   promotion the breakers are back on the shared circuit, and one opened
//!   by another process is seen open. How long the gap lasted and what the
//!   callers saw are printed as `FIGURE` lines (`-- --nocapture`).
//!
//! The tests run one at a time (each changes the cluster), and leave it
//! healthy: a killed master is restarted and rejoins as a replica.
#![cfg(all(feature = "cluster", feature = "sync", feature = "async"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lasier_redis::Options;
use lasier_redis_harness::Migration;
use lasier_sync::{Counts, Error, State, StorageFailurePolicy};
use support::{eventually, figure, until, ClusterStorages, Event, Events, RedisCluster};

/// The storage timeout of the failover tests.
const TIMEOUT: Duration = Duration::from_millis(250);
/// Added to two timeouts (a call makes at most two storage steps) for the
/// bound no call may exceed: generous, so that a stalled CI machine cannot
/// fail it; a hung call exceeds any.
const MARGIN: Duration = Duration::from_millis(750);
/// How long to wait for threads or tasks to stop once told to.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// One test at a time: each changes the cluster.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a caller got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    Ok,
    Open,
    Storage,
    Inner,
}

fn seen<T, E>(result: &Result<T, Error<E>>) -> Seen {
    match result {
        Ok(_) => Seen::Ok,
        Err(Error::Open { .. }) => Seen::Open,
        Err(Error::Storage(_)) => Seen::Storage,
        Err(_) => Seen::Inner,
    }
}

/// One guarded call: when it started, how long it took, what it returned.
#[derive(Debug, Clone, Copy)]
struct Call {
    at: Instant,
    took: Duration,
    seen: Seen,
}

/// The last storage errors a breaker reported, with their messages: what a
/// failed wait shows.
#[derive(Debug, Default)]
struct LastErrors(Mutex<Vec<String>>);

impl LastErrors {
    fn push(&self, what: &str, error: &lasier_core::StorageError) {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if last.len() == 20 {
            last.remove(0);
        }
        last.push(format!("{what}: {error}"));
    }

    /// A message for a wait that timed out.
    fn explain(&self, what: &str) -> String {
        format!(
            "never happened: {what}; last storage errors: {:#?}",
            self.0.lock().unwrap()
        )
    }
}

impl lasier_core::events::Listener for LastErrors {
    fn on_fallback_entered(&self, _: &str, error: &lasier_core::StorageError) {
        self.push("fallback entered", error);
    }

    fn on_storage_error(&self, _: &str, error: &lasier_core::StorageError) {
        self.push("storage error", error);
    }
}

/// Tells the main thread a worker ended (however it ended).
struct Done(mpsc::Sender<()>);

impl Drop for Done {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// Waits for `workers` [`Done`]s; a worker that does not end is a hang.
fn wait_done(done: &mpsc::Receiver<()>, workers: usize) {
    let deadline = Instant::now() + STOP_WITHIN;
    for i in 0..workers {
        let left = deadline.saturating_duration_since(Instant::now());
        done.recv_timeout(left)
            .unwrap_or_else(|_| panic!("{} workers still in a call: a hang", workers - i));
    }
}

fn count(counts: &BTreeMap<String, u64>, code: &str) -> u64 {
    counts.get(code).copied().unwrap_or(0)
}

/// The outcome a call of worker `worker` makes on its `i`th call: every
/// third one fails.
fn fails(worker: usize, i: u64) -> bool {
    (worker as u64 + i).is_multiple_of(3)
}

/// Sync threads and async tasks making guarded calls on one circuit, with
/// FailClosed breakers (a storage error would reach the caller, not hide in
/// a fallback) and a rule that never opens: every call must get its own
/// result, and every outcome must be counted once.
struct Workload {
    /// When the callers started: the origin of the times in messages.
    began: Instant,
    breaker: lasier_sync::CircuitBreaker,
    events: Arc<Events>,
    runtime: tokio::runtime::Runtime,
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    /// The longest call, in microseconds.
    slowest: Arc<AtomicU64>,
    unexpected: Arc<Mutex<Vec<String>>>,
    done: mpsc::Receiver<()>,
    threads: Vec<std::thread::JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    const THREADS: usize = 4;
    const TASKS: usize = 8;

    fn start(cluster: &RedisCluster, name: &str, options: Options) -> Self {
        let events = Arc::new(Events::default());
        let breaker = lasier_sync::CircuitBreaker::builder(name)
            .storage(cluster.storage_with(options))
            .percentage_failures(100, 1_000_000)
            .failure_timeout(Duration::from_secs(300))
            .on_storage_failure(StorageFailurePolicy::FailClosed)
            .listener(Arc::clone(&events))
            .build()
            .unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let async_breaker = runtime.block_on(async {
            lasier_async::CircuitBreaker::builder(name)
                .storage(cluster.async_storage_with(options).await)
                .percentage_failures(100, 1_000_000)
                .failure_timeout(Duration::from_secs(300))
                .on_storage_failure(StorageFailurePolicy::FailClosed)
                .listener(Arc::clone(&events))
                .build()
                .unwrap()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let slowest = Arc::new(AtomicU64::new(0));
        let unexpected = Arc::new(Mutex::new(Vec::<String>::new()));
        let began = Instant::now();
        // What a call got, checked against what it returned.
        let check = {
            let (calls, failures, slowest, unexpected) = (
                Arc::clone(&calls),
                Arc::clone(&failures),
                Arc::clone(&slowest),
                Arc::clone(&unexpected),
            );
            move |who: &str, fail: bool, at: Instant, result: Result<(), Error<&'static str>>| {
                let took = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX);
                slowest.fetch_max(took, Ordering::Relaxed);
                match (fail, result) {
                    (false, Ok(())) => {}
                    (true, Err(Error::Inner("boom"))) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    (_, other) => unexpected.lock().unwrap().push(format!(
                        "{who}, {} ms in: {other:?}",
                        began.elapsed().as_millis()
                    )),
                }
                calls.fetch_add(1, Ordering::Relaxed);
            }
        };
        let (done_tx, done) = mpsc::channel();
        let mut threads = Vec::new();
        for worker in 0..Self::THREADS {
            let (b, stop, check) = (breaker.clone(), Arc::clone(&stop), check.clone());
            let done = Done(done_tx.clone());
            threads.push(std::thread::spawn(move || {
                let _done = done;
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let fail = fails(worker, i);
                    i += 1;
                    let at = Instant::now();
                    let result = b.call(|| if fail { Err("boom") } else { Ok(()) });
                    check("sync", fail, at, result);
                }
            }));
        }
        let mut tasks = Vec::new();
        for task in 0..Self::TASKS {
            let (b, stop, check) = (async_breaker.clone(), Arc::clone(&stop), check.clone());
            let done = Done(done_tx.clone());
            tasks.push(runtime.spawn(async move {
                let _done = done;
                let worker = Self::THREADS + task;
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let fail = fails(worker, i);
                    i += 1;
                    let at = Instant::now();
                    let result = b
                        .call(async move {
                            if fail {
                                Err("boom")
                            } else {
                                Ok(())
                            }
                        })
                        .await;
                    check("async", fail, at, result);
                    tokio::task::yield_now().await;
                }
            }));
        }
        let workload = Self {
            began,
            breaker,
            events,
            runtime,
            stop,
            calls,
            failures,
            slowest,
            unexpected,
            done,
            threads,
            tasks,
        };
        workload.run_a_while();
        workload
    }

    /// Waits until 200 more calls have been made.
    fn run_a_while(&self) {
        let now = self.calls.load(Ordering::Relaxed);
        eventually("calls run", || {
            self.calls.load(Ordering::Relaxed) >= now + 200
        });
    }

    /// Milliseconds since the callers started.
    fn ms(&self) -> u128 {
        self.began.elapsed().as_millis()
    }

    /// Stops the callers and checks what they got: their own results only
    /// (`context` is shown if not), no storage error, every outcome counted
    /// once.
    fn finish(self, test: &str, context: impl Fn() -> String) {
        self.stop.store(true, Ordering::Relaxed);
        wait_done(&self.done, Self::THREADS + Self::TASKS);
        for thread in self.threads {
            thread.join().expect("a caller panicked");
        }
        for task in self.tasks {
            self.runtime.block_on(task).expect("a caller panicked");
        }
        let calls = self.calls.load(Ordering::Relaxed);
        let unexpected = self.unexpected.lock().unwrap();
        figure(test, "guarded calls (sync and async)", calls);
        figure(
            test,
            "slowest call (ms)",
            self.slowest.load(Ordering::Relaxed) / 1000,
        );
        figure(
            test,
            "calls that got anything but their own result",
            unexpected.len(),
        );
        assert!(
            unexpected.is_empty(),
            "{:?}; {}",
            &unexpected[..unexpected.len().min(5)],
            context()
        );
        assert_eq!(
            self.events.count(|e| matches!(e, Event::StorageError(_))),
            0,
            "{:?}",
            self.events.log()
        );
        // Every outcome counted once, wherever the slot was at the time.
        assert_eq!(
            self.breaker.counts().unwrap(),
            Counts::new(self.failures.load(Ordering::Relaxed), calls)
        );
        self.breaker.reset().unwrap();
    }
}

#[test]
fn a_slot_moving_between_masters_is_no_breaker_error() {
    const MOVES: usize = 4;
    let cluster = cluster_or_skip!();
    let _serial = serial();
    cluster.wait_healthy();
    let masters = cluster.masters();
    let (home, away) = (masters[0], masters[1]);
    let name = cluster.tag_on(home, "moving");
    let slot = cluster.slot(&name);
    let workload = Workload::start(cluster, &name, Options::default());

    let before = cluster.error_counts();
    let began = Instant::now();
    let mut windows = Vec::new();
    let mut timeline = Vec::new();
    for round in 0..MOVES {
        let to = if round % 2 == 0 { away } else { home };
        let start = workload.ms();
        // The new master has never run the scripts: NOSCRIPT there.
        to.cmd::<()>(&["SCRIPT", "FLUSH"]);
        cluster.migrate_slot(slot, to, || {
            // Hold the migration open for 20 ms and until a call has met it
            // (an ASK or a TRYAGAIN), 100 ms at most: well within the
            // retries of a step.
            let opened = Instant::now();
            let met = |c: &BTreeMap<String, u64>| count(c, "ASK") + count(c, "TRYAGAIN");
            let at_start = met(&cluster.errors_since(&before));
            while (met(&cluster.errors_since(&before)) == at_start
                || opened.elapsed() < Duration::from_millis(20))
                && opened.elapsed() < Duration::from_millis(100)
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            windows.push(opened.elapsed());
        });
        timeline.push(format!(
            "to {} from {start} to {} ms",
            to.port(),
            workload.ms()
        ));
        assert_eq!(cluster.master_of_slot(slot).port(), to.port());
        // Calls go on against the new layout (and meet MOVED first).
        workload.run_a_while();
    }
    let moving = began.elapsed();
    let test = "slot_moving";
    workload.finish(test, || {
        format!(
            "slot {slot} moved {timeline:?}; replies {:?}",
            cluster.errors_since(&before)
        )
    });

    let seen_by_nodes = cluster.errors_since(&before);
    figure(
        test,
        "slot moves (back and forth between two masters)",
        MOVES,
    );
    figure(test, "time with the slot moving (ms)", moving.as_millis());
    figure(
        test,
        "migration windows held open (ms)",
        format!("{windows:?}"),
    );
    for code in ["MOVED", "ASK", "TRYAGAIN", "NOSCRIPT"] {
        figure(
            test,
            format!("{code} replies the nodes sent"),
            count(&seen_by_nodes, code),
        );
    }
    // The redirections happened, and the clients absorbed them.
    assert!(count(&seen_by_nodes, "MOVED") > 0, "{seen_by_nodes:?}");
    assert!(
        count(&seen_by_nodes, "ASK") + count(&seen_by_nodes, "TRYAGAIN") > 0,
        "{seen_by_nodes:?}"
    );
    assert!(count(&seen_by_nodes, "NOSCRIPT") > 0, "{seen_by_nodes:?}");
}

/// How many times `node` ran `command` (`INFO commandstats`).
fn calls_of(node: &lasier_redis_harness::RedisServer, command: &str) -> u64 {
    let info: String = node.cmd(&["INFO", "commandstats"]);
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_script_the_slot_map_sends_elsewhere_runs_as_eval_where_the_keys_are() {
    let cluster = cluster_or_skip!();
    let _serial = serial();
    cluster.wait_healthy();
    let masters = cluster.masters();
    let (home, away) = (masters[0], masters[1]);
    let name = cluster.tag_on(home, "eval");
    let slot = cluster.slot(&name);
    let breaker = lasier_sync::CircuitBreaker::builder(&name)
        .storage(cluster.storage_with(Options::default()))
        .percentage_failures(100, 1_000_000)
        .failure_timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let async_breaker = runtime.block_on(async {
        lasier_async::CircuitBreaker::builder(&name)
            .storage(cluster.async_storage_with(Options::default()).await)
            .percentage_failures(100, 1_000_000)
            .failure_timeout(Duration::from_secs(300))
            .build()
            .unwrap()
    });
    // Both counters exist, and both storages know the slot is home's.
    for _ in 0..3 {
        let _ = breaker.call(|| Err::<(), _>("boom"));
    }
    assert_eq!(breaker.counts().unwrap(), Counts::new(3, 3));
    assert_eq!(
        runtime.block_on(async_breaker.counts()).unwrap(),
        Counts::new(3, 3)
    );
    away.cmd::<()>(&["SCRIPT", "FLUSH"]);
    let before = cluster.error_counts();
    let evals = calls_of(away, "eval");
    cluster.migrate_slot_in_steps(slot, away, |phase| {
        if phase != Migration::KeysMoved {
            return;
        }
        // The keys are on `away`, which serves the `counts` script (all of
        // whose keys it has) to clients sent there by `ASK`, and has never
        // run it; the slot maps still name `home`, where `SCRIPT LOAD`
        // goes. EVALSHA, NOSCRIPT, SCRIPT LOAD (home), EVALSHA, NOSCRIPT:
        // then EVAL, which `ASK` takes to `away`.
        assert_eq!(breaker.counts().unwrap(), Counts::new(3, 3));
        // The EVAL left the script on `away`: again, for the async storage.
        away.cmd::<()>(&["SCRIPT", "FLUSH"]);
        assert_eq!(
            runtime.block_on(async_breaker.counts()).unwrap(),
            Counts::new(3, 3)
        );
    });
    let seen_by_nodes = cluster.errors_since(&before);
    let evals = calls_of(away, "eval") - evals;
    let test = "eval_fallback";
    figure(test, "NOSCRIPT replies", count(&seen_by_nodes, "NOSCRIPT"));
    figure(test, "ASK replies", count(&seen_by_nodes, "ASK"));
    figure(test, "EVAL run on the node that has the keys", evals);
    assert_eq!(evals, 2, "one EVAL per storage: {seen_by_nodes:?}");
    assert!(count(&seen_by_nodes, "NOSCRIPT") >= 4, "{seen_by_nodes:?}");
    // And on the new master, once it serves the slot: the script is there.
    assert_eq!(breaker.counts().unwrap(), Counts::new(3, 3));
    assert_eq!(
        runtime.block_on(async_breaker.counts()).unwrap(),
        Counts::new(3, 3)
    );
    breaker.reset().unwrap();
}

#[test]
fn a_manual_failover_is_no_breaker_error() {
    let cluster = cluster_or_skip!();
    let _serial = serial();
    cluster.wait_healthy();
    let master = cluster.masters()[2];
    let replica = cluster.replica_of(master).expect("a replica");
    let name = cluster.tag_on(master, "handover");
    let slot = cluster.slot(&name);
    // The old master holds writes for the handover (until the replica has
    // caught up and taken over: hundreds of milliseconds on a busy machine),
    // so a call then may wait longer than the default 500 ms; a timeout of
    // 2 s lets it see what comes after, the MOVED to the new master.
    let workload = Workload::start(
        cluster,
        &name,
        Options::new().timeout(Duration::from_secs(2)),
    );

    let before = cluster.error_counts();
    let began = Instant::now();
    // The replica takes over with its master's agreement: no data lost,
    // writes paused for the handover, the old master a replica after it.
    replica.cmd::<()>(&["CLUSTER", "FAILOVER"]);
    eventually("the replica serves the slot", || {
        cluster.master_of_slot(slot).port() == replica.port()
    });
    cluster.wait_healthy();
    let handover = began.elapsed();
    workload.run_a_while();
    let test = "manual_failover";
    workload.finish(test, || {
        format!("replies {:?}", cluster.errors_since(&before))
    });

    let seen_by_nodes = cluster.errors_since(&before);
    figure(
        test,
        "handover, until the cluster is healthy (ms)",
        handover.as_millis(),
    );
    for code in ["MOVED", "NOSCRIPT", "READONLY"] {
        figure(
            test,
            format!("{code} replies the nodes sent"),
            count(&seen_by_nodes, code),
        );
    }
    assert!(count(&seen_by_nodes, "MOVED") > 0, "{seen_by_nodes:?}");
    assert!(count(&seen_by_nodes, "NOSCRIPT") > 0, "{seen_by_nodes:?}");
}

/// What callers saw between `from` and `to`, by kind.
fn saw(calls: &[Call], from: Instant, to: Instant) -> BTreeMap<Seen, usize> {
    saw_all(calls.iter().filter(|c| c.at >= from && c.at <= to))
}

/// What callers saw, by kind.
fn saw_all<'a>(calls: impl IntoIterator<Item = &'a Call>) -> BTreeMap<Seen, usize> {
    let mut seen = BTreeMap::new();
    for call in calls {
        *seen.entry(call.seen).or_insert(0) += 1;
    }
    seen
}

/// The gap a FailClosed gauge saw: its first storage error, and its first
/// success after its last storage error.
fn gap(gauge: &[Call]) -> Option<(Instant, Instant)> {
    let first_error = gauge.iter().find(|c| c.seen == Seen::Storage)?.at;
    let last_error = gauge.iter().rev().find(|c| c.seen == Seen::Storage)?.at;
    let back = gauge
        .iter()
        .find(|c| c.at > last_error && c.seen == Seen::Ok)?
        .at;
    Some((first_error, back))
}

/// Prints the figures of a failover and checks what must hold.
#[allow(clippy::too_many_arguments)]
fn report(
    test: &str,
    killed: Instant,
    promoted: Instant,
    callers: &[Call],
    gauge: &[Call],
    bystander: &[Call],
    events: &Events,
    noscript: u64,
) {
    let bound = TIMEOUT * 2 + MARGIN;
    figure(test, "callers' guarded calls", callers.len());
    figure(
        test,
        "promotion: master killed -> cluster healthy again (ms)",
        promoted.duration_since(killed).as_millis(),
    );
    let (from, to) = gap(gauge).expect("the gauge saw the store fail and come back");
    figure(
        test,
        "gap: first storage error -> first success after (ms, FailClosed gauge)",
        to.duration_since(from).as_millis(),
    );
    figure(
        test,
        "gap started after the kill (ms)",
        from.duration_since(killed).as_millis(),
    );
    figure(
        test,
        "callers saw during the gap (LocalFallback)",
        format!("{:?}", saw(callers, from, to)),
    );
    figure(
        test,
        "callers saw, from the start until the circuit was opened on purpose",
        format!("{:?}", saw_all(callers)),
    );
    let entered = events.first(|e| matches!(e, Event::FallbackEntered(_)));
    let left = events.first(|e| *e == Event::FallbackLeft);
    figure(
        test,
        "fallback entered / left (times)",
        format!(
            "{} / {}",
            events.count(|e| matches!(e, Event::FallbackEntered(_))),
            events.count(|e| *e == Event::FallbackLeft)
        ),
    );
    if let (Some(entered), Some(left)) = (entered, left) {
        figure(
            test,
            "in fallback (ms; probes once a second)",
            left.duration_since(entered).as_millis(),
        );
    }
    let errors: BTreeMap<String, usize> =
        events.log().iter().fold(BTreeMap::new(), |mut m, (_, e)| {
            if let Event::StorageError(kind) | Event::FallbackEntered(kind) = e {
                *m.entry(format!("{kind:?}")).or_insert(0) += 1;
            }
            m
        });
    figure(
        test,
        "storage errors the breaker reported, by kind",
        format!("{errors:?}"),
    );
    figure(
        test,
        "a breaker on another master saw",
        format!("{:?}", saw(bystander, killed, Instant::now())),
    );
    figure(
        test,
        "NOSCRIPT replies (the new master had never run the scripts)",
        noscript,
    );
    let all = callers.iter().chain(gauge).chain(bystander);
    let slowest = all.clone().map(|c| c.took).max().unwrap_or_default();
    let over = all.filter(|c| c.took > bound).count();
    figure(test, "slowest call (ms)", slowest.as_millis());
    figure(test, format!("calls over {bound:?}"), over);
    assert_eq!(over, 0, "calls took longer than {bound:?}: a hang");
    // LocalFallback and a healthy dependency: callers never see the store.
    let callers_saw = saw_all(callers);
    assert_eq!(callers_saw.get(&Seen::Storage), None, "{callers_saw:?}");
    assert_eq!(callers_saw.get(&Seen::Inner), None, "{callers_saw:?}");
    // SCRIPT LOAD went to the old master only (Redis does not pass it on
    // to replicas): the new one answered NOSCRIPT, and the storage loaded
    // the scripts there.
    assert!(noscript > 0, "no NOSCRIPT from the new master");
    assert!(entered.is_some(), "the breaker noticed the dead master");
    assert!(
        left.is_some(),
        "the breaker went back to the shared circuit"
    );
}

#[test]
fn sync_breakers_ride_out_a_master_failover_under_8_threads() {
    const THREADS: usize = 8;
    let cluster = cluster_or_skip!();
    let _serial = serial();
    cluster.wait_healthy();
    let masters = cluster.masters();
    let (victim, elsewhere) = (masters[0], masters[1]);
    let name = cluster.tag_on(victim, "failover-sync");
    let slot = cluster.slot(&name);
    let replica = cluster.replica_of(victim).expect("a replica").port();
    let options = Options::new().timeout(TIMEOUT);
    let builder = |name: &str| {
        lasier_sync::CircuitBreaker::builder(name)
            .storage(cluster.storage_with(options))
            .max_failures(5)
            .failure_timeout(Duration::from_secs(60))
            .circuit_timeout(Duration::from_secs(60))
    };
    let events = Arc::new(Events::default());
    let last_errors = Arc::new(LastErrors::default());
    // The default policy, LocalFallback, for the callers; FailClosed gauges
    // on the circuit and on a circuit of another master, which meet the
    // store on every call.
    let breaker = builder(&name)
        .listener(Arc::clone(&events))
        .listener(Arc::clone(&last_errors))
        .build()
        .unwrap();
    let gauge = builder(&name)
        .on_storage_failure(StorageFailurePolicy::FailClosed)
        .build()
        .unwrap();
    let bystander = builder(&cluster.tag_on(elsewhere, "bystander-sync"))
        .on_storage_failure(StorageFailurePolicy::FailClosed)
        .build()
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel();
    let spawn = |b: lasier_sync::CircuitBreaker, pause: Duration| {
        let (stop, done) = (Arc::clone(&stop), Done(done_tx.clone()));
        std::thread::spawn(move || {
            let _done = done;
            let mut calls = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let at = Instant::now();
                let result = b.call(|| Ok::<_, &str>(()));
                calls.push(Call {
                    at,
                    took: at.elapsed(),
                    seen: seen(&result),
                });
                std::thread::sleep(pause);
            }
            calls
        })
    };
    let callers: Vec<_> = (0..THREADS)
        .map(|_| spawn(breaker.clone(), Duration::from_millis(1)))
        .collect();
    let gauge_thread = spawn(gauge.clone(), Duration::from_millis(5));
    let bystander_thread = spawn(bystander, Duration::from_millis(5));
    drop(done_tx);

    eventually("calls go through the shared circuit", || {
        breaker.counts().is_ok() && gauge.state().is_ok_and(|s| s == State::Closed)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!breaker.in_fallback());
    let noscript_before = cluster.error_counts();

    let killed = Instant::now();
    victim.kill();
    cluster.wait_healthy();
    let promoted = Instant::now();
    assert_eq!(cluster.master_of_slot(slot).port(), replica);
    let deadline = Instant::now() + Duration::from_secs(10);
    while breaker.in_fallback() {
        assert!(
            Instant::now() < deadline,
            "{}",
            last_errors.explain("the breaker is back on the shared circuit")
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    eventually("the gauge answers from the new master", || {
        gauge.state().is_ok()
    });
    std::thread::sleep(Duration::from_millis(300));

    // The shared state works again: another process opens the circuit,
    // this one sees it open.
    let reopened = Instant::now();
    let other = builder(&name).build().unwrap();
    for _ in 0..5 {
        let _ = other.call(|| Err::<(), _>("boom"));
    }
    assert_eq!(other.state().unwrap(), State::Open);
    eventually("the circuit another process opened rejects here", || {
        breaker.call(|| Ok::<_, ()>(())).is_err_and(|e| e.is_open())
    });
    assert!(!breaker.in_fallback());

    stop.store(true, Ordering::Relaxed);
    wait_done(&done_rx, THREADS + 2);
    let callers: Vec<Call> = callers
        .into_iter()
        .flat_map(|t| t.join().expect("a caller panicked"))
        .filter(|c| c.at < reopened)
        .collect();
    let gauge_calls = gauge_thread.join().expect("the gauge panicked");
    let bystander_calls = bystander_thread.join().expect("the bystander panicked");
    let noscript = count(&cluster.errors_since(&noscript_before), "NOSCRIPT");
    report(
        "failover_sync",
        killed,
        promoted,
        &callers,
        &gauge_calls,
        &bystander_calls,
        &events,
        noscript,
    );
    breaker.reset().unwrap();

    victim.restart();
    cluster.wait_healthy();
}

#[test]
fn async_breakers_ride_out_a_master_failover_under_64_tasks() {
    let cluster = cluster_or_skip!();
    let _serial = serial();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async_failover(cluster));
}

async fn async_failover(cluster: &'static RedisCluster) {
    const TASKS: usize = 64;
    tokio::task::block_in_place(|| cluster.wait_healthy());
    let masters = tokio::task::block_in_place(|| cluster.masters());
    let (victim, elsewhere) = (masters[1], masters[2]);
    let (name, bystander_name, slot, replica) = tokio::task::block_in_place(|| {
        let name = cluster.tag_on(victim, "failover-async");
        let slot = cluster.slot(&name);
        let replica = cluster.replica_of(victim).expect("a replica").port();
        (
            name,
            cluster.tag_on(elsewhere, "bystander-async"),
            slot,
            replica,
        )
    });
    let options = Options::new().timeout(TIMEOUT);
    let builder = |name: &str, storage| {
        lasier_async::CircuitBreaker::builder(name)
            .storage(storage)
            .max_failures(5)
            .failure_timeout(Duration::from_secs(60))
            .circuit_timeout(Duration::from_secs(60))
    };
    let events = Arc::new(Events::default());
    let last_errors = Arc::new(LastErrors::default());
    let breaker = builder(&name, cluster.async_storage_with(options).await)
        .listener(Arc::clone(&events))
        .listener(Arc::clone(&last_errors))
        .build()
        .unwrap();
    let gauge = builder(&name, cluster.async_storage_with(options).await)
        .on_storage_failure(StorageFailurePolicy::FailClosed)
        .build()
        .unwrap();
    let bystander = builder(&bystander_name, cluster.async_storage_with(options).await)
        .on_storage_failure(StorageFailurePolicy::FailClosed)
        .build()
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel();
    let spawn = |b: lasier_async::CircuitBreaker, pause: Duration| {
        let (stop, done) = (Arc::clone(&stop), Done(done_tx.clone()));
        tokio::spawn(async move {
            let _done = done;
            let mut calls = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let at = Instant::now();
                let result = b.call(async { Ok::<_, &str>(()) }).await;
                calls.push(Call {
                    at,
                    took: at.elapsed(),
                    seen: seen(&result),
                });
                tokio::time::sleep(pause).await;
            }
            calls
        })
    };
    let callers: Vec<_> = (0..TASKS)
        .map(|_| spawn(breaker.clone(), Duration::from_millis(1)))
        .collect();
    let gauge_task = spawn(gauge.clone(), Duration::from_millis(5));
    let bystander_task = spawn(bystander, Duration::from_millis(5));
    drop(done_tx);

    until("calls go through the shared circuit", || async {
        gauge.state().await.is_ok_and(|s| s == State::Closed)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!breaker.in_fallback());
    let noscript_before = tokio::task::block_in_place(|| cluster.error_counts());

    let killed = Instant::now();
    tokio::task::block_in_place(|| {
        victim.kill();
        cluster.wait_healthy();
    });
    let promoted = Instant::now();
    assert_eq!(
        tokio::task::block_in_place(|| cluster.master_of_slot(slot).port()),
        replica
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while breaker.in_fallback() {
        assert!(
            Instant::now() < deadline,
            "{}",
            last_errors.explain("the breaker is back on the shared circuit")
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    until("the gauge answers from the new master", || async {
        gauge.state().await.is_ok()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The shared state works again: another process opens the circuit,
    // this one sees it open.
    let reopened = Instant::now();
    let other = builder(&name, cluster.async_storage_with(options).await)
        .build()
        .unwrap();
    for _ in 0..5 {
        let _ = other.call(async { Err::<(), _>("boom") }).await;
    }
    assert_eq!(other.state().await.unwrap(), State::Open);
    until(
        "the circuit another process opened rejects here",
        || async {
            breaker
                .call(async { Ok::<_, ()>(()) })
                .await
                .is_err_and(|e| e.is_open())
        },
    )
    .await;
    assert!(!breaker.in_fallback());

    stop.store(true, Ordering::Relaxed);
    tokio::task::block_in_place(|| wait_done(&done_rx, TASKS + 2));
    let mut caller_calls = Vec::new();
    for task in callers {
        caller_calls.extend(task.await.expect("a caller panicked"));
    }
    caller_calls.retain(|c| c.at < reopened);
    let gauge_calls = gauge_task.await.expect("the gauge panicked");
    let bystander_calls = bystander_task.await.expect("the bystander panicked");
    let noscript = count(
        &tokio::task::block_in_place(|| cluster.errors_since(&noscript_before)),
        "NOSCRIPT",
    );
    report(
        "failover_async",
        killed,
        promoted,
        &caller_calls,
        &gauge_calls,
        &bystander_calls,
        &events,
        noscript,
    );
    breaker.reset().await.unwrap();

    tokio::task::block_in_place(|| {
        victim.restart();
        cluster.wait_healthy();
    });
}
