//! The soak: 4 processes x 4 threads on shared circuits in one Redis,
//! 200 000 guarded calls in all, 10 % of them failing.
//!
//! The processes are this test binary run again (`soak_child`, an ignored
//! test that does nothing unless `LASIER_SOAK_URL` is set). Each thread
//! makes 12 500 calls: 10 000 on a circuit whose rule never trips (50 %
//! failures over more than 100 requests, with 10 % failing), to count, and
//! 2 500 on a circuit that trips every 10 failures and has 2 half-open
//! trials, to trip. Then, from outside:
//!
//! * the counters in Redis equal the outcomes every process recorded: no
//!   increment lost (and no storage error anywhere, so every outcome was
//!   recorded);
//! * the transitions to open that the processes' listeners saw, summed,
//!   equal the times Redis' open flag was set (keyspace notifications):
//!   exactly one per trip;
//! * per lease on trial permits, Redis handed out at most 2 of them (the
//!   `SET` that starts a lease takes the first, each `INCRBY` of the lease
//!   key one more, in the order Redis ran them).
//!
//! Figures are printed as `FIGURE ...` lines (`cargo test -- --nocapture`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lasier_redis::{Options, RedisStorage};
use lasier_sync::{CircuitBreaker, Error, Listener, State, StorageError};
use support::{figure, unique, RedisServer};

const PROCESSES: usize = 4;
const THREADS: usize = 4;
const COUNTED_CALLS: usize = 10_000;
const TRIPPING_CALLS: usize = 2_500;
const HALF_OPEN_MAX_CALLS: u32 = 2;
/// How long the children may take, all together, before the test gives up.
const CHILDREN_WITHIN: Duration = Duration::from_secs(240);

/// Every tenth call fails.
fn fails(i: usize) -> bool {
    i.is_multiple_of(10)
}

#[derive(Debug, Default)]
struct Seen {
    opened: AtomicU64,
    storage_errors: AtomicU64,
}

impl Listener for Seen {
    fn on_state_change(&self, _: &str, _: State, to: State) {
        if to == State::Open {
            self.opened.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn on_storage_error(&self, _: &str, _: &StorageError) {
        self.storage_errors.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct Outcomes {
    successes: AtomicU64,
    failures: AtomicU64,
    rejected: AtomicU64,
    storage: AtomicU64,
}

impl Outcomes {
    fn count<E>(&self, result: &Result<(), Error<E>>) {
        let counter = match result {
            Ok(()) => &self.successes,
            Err(Error::Inner(_)) => &self.failures,
            Err(Error::Open { .. }) => &self.rejected,
            Err(_) => &self.storage,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One process of the soak; does nothing unless run by the parent.
#[test]
#[ignore = "a child process of soak_4_processes_x_4_threads_200k_calls"]
fn soak_child() {
    let Ok(url) = std::env::var("LASIER_SOAK_URL") else {
        return;
    };
    let counted = std::env::var("LASIER_SOAK_COUNTED").unwrap();
    let tripping = std::env::var("LASIER_SOAK_TRIPPING").unwrap();
    // A generous timeout: a debug build on a busy machine must not turn a
    // slow reply into an outcome Redis counted and the process did not.
    let storage = RedisStorage::open_with_options(
        url.as_str(),
        Options::new().timeout(Duration::from_secs(10)),
    )
    .unwrap();
    let seen = Arc::new(Seen::default());
    let count_breaker = CircuitBreaker::builder(counted)
        .storage(storage.clone())
        .percentage_failures(50, 100)
        .failure_timeout(Duration::from_secs(600))
        .listener(Arc::clone(&seen))
        .build()
        .unwrap();
    let trip_breaker = CircuitBreaker::builder(tripping)
        .storage(storage)
        .max_failures(10)
        .failure_timeout(Duration::from_secs(600))
        .circuit_timeout(Duration::from_millis(50))
        .half_open_max_calls(HALF_OPEN_MAX_CALLS)
        .listener(Arc::clone(&seen))
        .build()
        .unwrap();
    let counts = Outcomes::default();
    let trips = Outcomes::default();
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for i in 0..COUNTED_CALLS {
                    let result = count_breaker.call(|| if fails(i) { Err(()) } else { Ok(()) });
                    counts.count(&result);
                }
                for i in 0..TRIPPING_CALLS {
                    let result = trip_breaker.call(|| if fails(i) { Err(()) } else { Ok(()) });
                    trips.count(&result);
                    if result.is_err_and(|e| e.is_open()) {
                        // Paces the rejected, so that open periods end
                        // while calls are still being made.
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            });
        }
    });
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "SOAK_RESULT successes={} failures={} rejected={} storage={} trip_successes={} \
         trip_failures={} trip_rejected={} trip_storage={} opened={} storage_errors={} \
         elapsed_ms={}",
        get(&counts.successes),
        get(&counts.failures),
        get(&counts.rejected),
        get(&counts.storage),
        get(&trips.successes),
        get(&trips.failures),
        get(&trips.rejected),
        get(&trips.storage),
        get(&seen.opened),
        get(&seen.storage_errors),
        started.elapsed().as_millis(),
    );
}

/// Records the keyspace events of `keys` until told to stop.
struct Notifications {
    events: Arc<Mutex<Vec<(String, String)>>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Notifications {
    fn start(server: &RedisServer, keys: &[String]) -> Self {
        server.cmd::<()>(&["CONFIG", "SET", "notify-keyspace-events", "K$gx"]);
        let mut connection = server.raw();
        let channels: Vec<String> = keys.iter().map(|k| format!("__keyspace@0__:{k}")).collect();
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (events, stop) = (Arc::clone(&events), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut pubsub = connection.as_pubsub();
                for channel in &channels {
                    pubsub.subscribe(channel).unwrap();
                }
                pubsub
                    .set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                ready_tx.send(()).unwrap();
                loop {
                    match pubsub.get_message() {
                        Ok(message) => {
                            let key = message
                                .get_channel_name()
                                .trim_start_matches("__keyspace@0__:")
                                .to_owned();
                            let event: String = message.get_payload().unwrap();
                            events.lock().unwrap().push((key, event));
                        }
                        Err(e) if e.is_timeout() => {
                            if stop.load(Ordering::Relaxed) {
                                return;
                            }
                        }
                        Err(e) => {
                            if !stop.load(Ordering::Relaxed) {
                                events.lock().unwrap().push(("!".to_owned(), e.to_string()));
                            }
                            return;
                        }
                    }
                }
            })
        };
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("subscribed");
        Self {
            events,
            stop,
            thread,
        }
    }

    fn finish(self) -> Vec<(String, String)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        let events = Arc::try_unwrap(self.events).unwrap().into_inner().unwrap();
        if let Some((_, error)) = events.iter().find(|(key, _)| key == "!") {
            panic!("keyspace notifications stopped: {error}");
        }
        events
    }
}

#[test]
fn soak_4_processes_x_4_threads_200k_calls() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let counted = unique("soak-counted");
    let tripping = unique("soak-tripping");
    let open_key = format!("circuit_{tripping}");
    let lease_key = format!("lasier:half_open_lease:{tripping}");
    let notifications = Notifications::start(&server, &[open_key.clone(), lease_key.clone()]);

    let started = Instant::now();
    let url = server.url();
    let env = [
        ("LASIER_SOAK_URL", url.as_str()),
        ("LASIER_SOAK_COUNTED", counted.as_str()),
        ("LASIER_SOAK_TRIPPING", tripping.as_str()),
    ];
    let children = (0..PROCESSES)
        .map(|_| support::spawn_child("soak_child", &env))
        .collect();
    let results = support::child_results(children, CHILDREN_WITHIN, "SOAK_RESULT");
    let elapsed = started.elapsed();
    // Lets the last notifications arrive.
    std::thread::sleep(Duration::from_millis(300));
    let events = notifications.finish();
    let sum = |key: &str| results.iter().map(|r| r[key]).sum::<u64>();

    let test = "soak";
    let calls = sum("successes")
        + sum("failures")
        + sum("rejected")
        + sum("storage")
        + sum("trip_successes")
        + sum("trip_failures")
        + sum("trip_rejected")
        + sum("trip_storage");
    figure(
        test,
        "processes x threads",
        format!("{PROCESSES} x {THREADS}"),
    );
    figure(test, "guarded calls", calls);
    figure(test, "wall time", format!("{elapsed:.1?}"));
    assert_eq!(
        calls,
        u64::try_from(PROCESSES * THREADS * (COUNTED_CALLS + TRIPPING_CALLS)).unwrap()
    );
    assert_eq!(sum("storage_errors"), 0, "every outcome reached Redis");
    assert_eq!(sum("storage") + sum("trip_storage"), 0);

    // No increment lost.
    let failures_in_redis: u64 = server.cmd(&["GET", &counted]);
    let requests_in_redis: u64 = server.cmd(&["GET", &format!("{counted}_requests")]);
    let recorded_failures = sum("failures");
    let recorded_requests = sum("successes") + sum("failures");
    figure(
        test,
        "recorded outcomes (requests, failures)",
        format!("{recorded_requests}, {recorded_failures}"),
    );
    figure(
        test,
        "counters in Redis (requests, failures)",
        format!("{requests_in_redis}, {failures_in_redis}"),
    );
    figure(
        test,
        "increments lost",
        recorded_requests.abs_diff(requests_in_redis)
            + recorded_failures.abs_diff(failures_in_redis),
    );
    assert_eq!(sum("rejected"), 0, "the counting circuit never trips");
    assert_eq!(requests_in_redis, recorded_requests);
    assert_eq!(failures_in_redis, recorded_failures);

    // One transition to open per time Redis opened the circuit.
    let opened_in_redis = events
        .iter()
        .filter(|(key, event)| *key == open_key && event == "set")
        .count();
    let opened_seen = sum("opened");
    figure(test, "times Redis opened the circuit", opened_in_redis);
    figure(
        test,
        "transitions to open seen by the processes",
        opened_seen,
    );
    assert!(opened_in_redis > 10, "the tripping circuit barely tripped");
    assert_eq!(u64::try_from(opened_in_redis).unwrap(), opened_seen);

    // Trial permits per lease. (The sync facade never releases a permit:
    // a guard dropped without a verdict is a success.)
    let mut per_lease = Vec::new();
    let mut current = 0_u32;
    for (key, event) in &events {
        if *key != lease_key {
            continue;
        }
        match event.as_str() {
            // A new lease, with its first trial.
            "set" => {
                per_lease.push(current);
                current = 1;
            }
            "incrby" => current += 1,
            _ => {}
        }
    }
    per_lease.push(current);
    let most = per_lease.iter().copied().max().unwrap_or(0);
    let over = per_lease
        .iter()
        .filter(|n| **n > HALF_OPEN_MAX_CALLS)
        .count();
    figure(test, "leases on trial permits", per_lease.len() - 1);
    figure(test, "most trial permits in one lease", most);
    figure(test, "leases over the bound", over);
    assert_eq!(over, 0, "{per_lease:?}");
    assert!(most >= 1, "no trial ever ran");
}
