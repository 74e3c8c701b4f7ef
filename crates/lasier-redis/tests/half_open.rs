//! Half-open on a shared store, as a fleet sees it (issue 17): a trial
//! permit is a lease, the half-open state is not.
//!
//! * A fleet (four processes: two sync with 4 threads, two async with 16
//!   tasks, all this test binary run again through the ignored
//!   `half_open_child`) shares one circuit whose trials outlive their lease:
//!   at most `ceil(trial / lease) x half_open_max_calls` trials run at once,
//!   and about one round of trials is admitted per lease.
//! * A circuit nobody calls stays half-open: the first burst after a quiet
//!   spell runs one round of trials, not every call.
//! * State a crashed or older writer left without a TTL heals: a half-open
//!   marker whose permits are all taken, for ever, admits again.
//!
//! Every admitted call counts itself in Redis while it runs (a small script
//! keeps the running count and its maximum), so the figures are the
//! fleet's, in the order Redis saw them. They are printed as `FIGURE ...`
//! lines (`cargo test -- --nocapture`). The waits here are real: Redis'
//! TTLs run on Redis' clock, which no manual clock moves.
#![cfg(all(feature = "sync", feature = "async"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use lasier_redis::{AsyncRedisStorage, Options, RedisStorage};
use lasier_sync::{Error, State, StorageFailurePolicy};
use support::{async_storage, eventually, figure, unique, Server};

/// How long every admitted call of a fleet runs before it fails.
const TRIAL: Duration = Duration::from_millis(200);
/// The fleet: (kind, callers) per process.
const FLEET: [(&str, usize); 4] = [("sync", 4), ("sync", 4), ("async", 16), ("async", 16)];
/// How long a fleet's processes may take, all together.
const FLEET_WITHIN: Duration = Duration::from_secs(60);
/// A fleet test's storage steps never time out on a busy machine: a step
/// that failed would make the figures mean nothing (and is reported).
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// One fleet at a time: the figures of one must not depend on the load of
/// another on two cores.
static ONE_FLEET: Mutex<()> = Mutex::new(());

/// Counts the calls that run: `running` now, its maximum `most`, and every
/// call ever `admitted`.
const ENTER: &str = r"
local n = redis.call('INCR', KEYS[1])
if n > tonumber(redis.call('GET', KEYS[2]) or '0') then
  redis.call('SET', KEYS[2], n)
end
redis.call('INCR', KEYS[3])
return n
";

/// The keys a fleet test keeps beside its circuit.
#[derive(Debug, Clone)]
struct Probe {
    running: String,
    most: String,
    admitted: String,
    ready: String,
    go: String,
}

impl Probe {
    fn new(name: &str) -> Self {
        let key = |what: &str| format!("test:{name}:{what}");
        Self {
            running: key("running"),
            most: key("most"),
            admitted: key("admitted"),
            ready: key("ready"),
            go: key("go"),
        }
    }

    fn enter(&self) -> redis::ScriptInvocation<'static> {
        static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
        let mut invocation = SCRIPT
            .get_or_init(|| redis::Script::new(ENTER))
            .prepare_invoke();
        invocation
            .key(&self.running)
            .key(&self.most)
            .key(&self.admitted);
        invocation
    }
}

/// The sync interval of a fleet's breakers (`LASIER_HALF_OPEN_SYNC_MS`, 0
/// or unset: per-call mode).
fn sync_interval() -> Option<Duration> {
    std::env::var("LASIER_HALF_OPEN_SYNC_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

fn breaker_sync(name: &str, storage: RedisStorage, open: Duration) -> lasier_sync::CircuitBreaker {
    let builder = lasier_sync::CircuitBreaker::builder(name)
        .storage(storage)
        .max_failures(1)
        .failure_timeout(Duration::from_secs(60))
        .circuit_timeout(open)
        .half_open_max_calls(1)
        .on_storage_failure(StorageFailurePolicy::FailClosed);
    match sync_interval() {
        Some(interval) => builder.sync_interval(interval),
        None => builder,
    }
    .build()
    .unwrap()
}

fn breaker_async(
    name: &str,
    storage: AsyncRedisStorage,
    open: Duration,
) -> lasier_async::CircuitBreaker {
    let builder = lasier_async::CircuitBreaker::builder(name)
        .storage(storage)
        .max_failures(1)
        .failure_timeout(Duration::from_secs(60))
        .circuit_timeout(open)
        .half_open_max_calls(1)
        .on_storage_failure(StorageFailurePolicy::FailClosed);
    match sync_interval() {
        Some(interval) => builder.sync_interval(interval),
        None => builder,
    }
    .build()
    .unwrap()
}

/// What the callers of one child saw.
#[derive(Debug, Default)]
struct Tally {
    admitted: AtomicU64,
    rejected: AtomicU64,
    storage: AtomicU64,
    succeeded: AtomicU64,
}

impl Tally {
    /// Counts `result`; whether the caller should pause before it tries
    /// again.
    fn count(&self, result: &Result<(), Error<()>>) -> bool {
        let (counter, pause) = match result {
            Err(Error::Inner(())) => (&self.admitted, false),
            Err(Error::Open { .. }) => (&self.rejected, true),
            Err(_) => (&self.storage, true),
            Ok(()) => (&self.succeeded, false),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        pause
    }

    fn print(&self) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        support::print_result(
            "HALF_OPEN_RESULT",
            &[
                ("admitted", get(&self.admitted)),
                ("rejected", get(&self.rejected)),
                ("storage", get(&self.storage)),
                ("succeeded", get(&self.succeeded)),
            ],
        );
    }
}

/// 2 to 5 ms, different per caller: how long a rejected caller waits
/// before it tries again (keeps 40 callers from spinning 2 cores).
fn pause(caller: usize) -> Duration {
    Duration::from_millis(2 + (caller % 4) as u64)
}

/// One process of a fleet; does nothing unless run by a fleet test.
#[test]
#[ignore = "a child process of the fleet tests of this file"]
fn half_open_child() {
    let Ok(url) = std::env::var("LASIER_HALF_OPEN_URL") else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap();
    let name = var("LASIER_HALF_OPEN_NAME");
    let kind = var("LASIER_HALF_OPEN_KIND");
    let callers: usize = var("LASIER_HALF_OPEN_CALLERS").parse().unwrap();
    let open = Duration::from_millis(var("LASIER_HALF_OPEN_OPEN_MS").parse().unwrap());
    // 0: a burst, one call per caller; else calls until this is over.
    let run = Duration::from_millis(var("LASIER_HALF_OPEN_RUN_MS").parse().unwrap());
    let probe = Probe::new(&name);
    let client = redis::Client::open(url.as_str()).unwrap();
    let tally = Arc::new(Tally::default());
    let options = Options::new().timeout(STEP_TIMEOUT);
    match kind.as_str() {
        "sync" => {
            let breaker = breaker_sync(
                &name,
                RedisStorage::open_with_options(url.as_str(), options).unwrap(),
                open,
            );
            let mut connections: Vec<redis::Connection> = (0..callers)
                .map(|_| client.get_connection().unwrap())
                .collect();
            let until = ready_then_go(&client, &probe) + run;
            std::thread::scope(|s| {
                for (caller, connection) in connections.iter_mut().enumerate() {
                    let (breaker, probe, tally) = (&breaker, &probe, &*tally);
                    s.spawn(move || loop {
                        let result = breaker.call(|| {
                            probe.enter().invoke::<i64>(connection).unwrap();
                            std::thread::sleep(TRIAL);
                            redis::cmd("DECR")
                                .arg(&probe.running)
                                .exec(connection)
                                .unwrap();
                            Err(())
                        });
                        let pause_now = tally.count(&result);
                        if run.is_zero() || Instant::now() >= until {
                            break;
                        }
                        if pause_now {
                            std::thread::sleep(pause(caller));
                        }
                    });
                }
            });
        }
        "async" => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let breaker = breaker_async(&name, async_storage(&url, options).await, open);
                let connection = client.get_multiplexed_async_connection().await.unwrap();
                let until = ready_then_go(&client, &probe) + run;
                let tasks: Vec<_> = (0..callers)
                    .map(|caller| {
                        let (breaker, probe, tally) =
                            (breaker.clone(), probe.clone(), Arc::clone(&tally));
                        let mut connection = connection.clone();
                        tokio::spawn(async move {
                            loop {
                                let result = breaker
                                    .call(async {
                                        probe
                                            .enter()
                                            .invoke_async::<i64>(&mut connection)
                                            .await
                                            .unwrap();
                                        tokio::time::sleep(TRIAL).await;
                                        redis::cmd("DECR")
                                            .arg(&probe.running)
                                            .exec_async(&mut connection)
                                            .await
                                            .unwrap();
                                        Err(())
                                    })
                                    .await;
                                let pause_now = tally.count(&result);
                                if run.is_zero() || Instant::now() >= until {
                                    break;
                                }
                                if pause_now {
                                    tokio::time::sleep(pause(caller)).await;
                                }
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
            });
        }
        other => panic!("no such kind of child: {other}"),
    }
    tally.print();
}

/// Says this child is ready, and waits (blocking: before any caller
/// starts) for the parent's signal; returns when it came.
fn ready_then_go(client: &redis::Client, probe: &Probe) -> Instant {
    let mut connection = client.get_connection().unwrap();
    redis::cmd("INCR")
        .arg(&probe.ready)
        .exec(&mut connection)
        .unwrap();
    let deadline = Instant::now() + FLEET_WITHIN;
    loop {
        let go: bool = redis::cmd("EXISTS")
            .arg(&probe.go)
            .query(&mut connection)
            .unwrap();
        if go {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "no signal to go");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What a fleet did, from Redis and from its processes.
#[derive(Debug)]
struct Figures {
    /// The most calls that ran at once, fleet-wide.
    most: u64,
    /// The calls admitted, as Redis counted them.
    admitted: u64,
    /// The same, as the processes counted them.
    admitted_seen: u64,
    rejected: u64,
    storage_errors: u64,
    succeeded: u64,
}

/// Starts the fleet on the circuit `name` (open time `open`), waits until
/// every process is ready, opens the circuit from here (so that what is
/// measured is half-open, not the first closed burst), runs `meanwhile`,
/// lets the fleet go (for `run`, or one call per caller if zero) and
/// returns what it did.
fn run_fleet(
    server: &Server,
    name: &str,
    open: Duration,
    run: Duration,
    sync: Option<Duration>,
    meanwhile: impl FnOnce(&lasier_sync::CircuitBreaker),
) -> Figures {
    let probe = Probe::new(name);
    let url = server.url();
    let open_ms = open.as_millis().to_string();
    let run_ms = run.as_millis().to_string();
    let sync_ms = sync.map_or(0, |d| d.as_millis()).to_string();
    let children = FLEET
        .iter()
        .map(|(kind, callers)| {
            let callers = callers.to_string();
            support::spawn_child(
                "half_open_child",
                &[
                    ("LASIER_HALF_OPEN_URL", &url),
                    ("LASIER_HALF_OPEN_NAME", name),
                    ("LASIER_HALF_OPEN_KIND", kind),
                    ("LASIER_HALF_OPEN_CALLERS", &callers),
                    ("LASIER_HALF_OPEN_OPEN_MS", &open_ms),
                    ("LASIER_HALF_OPEN_RUN_MS", &run_ms),
                    ("LASIER_HALF_OPEN_SYNC_MS", &sync_ms),
                ],
            )
        })
        .collect();
    eventually("every process of the fleet is ready", || {
        server.cmd::<Option<usize>>(&["GET", &probe.ready]) == Some(FLEET.len())
    });
    let breaker = breaker_sync(name, server.storage(), open);
    assert!(matches!(
        breaker.call(|| Err::<(), _>(())),
        Err(Error::Inner(()))
    ));
    assert_eq!(breaker.state().unwrap(), State::Open, "one failure opens");
    meanwhile(&breaker);
    server.cmd::<()>(&["SET", &probe.go, "1"]);
    let results = support::child_results(children, FLEET_WITHIN, "HALF_OPEN_RESULT");
    let sum = |key: &str| results.iter().map(|r: &HashMap<String, u64>| r[key]).sum();
    Figures {
        most: server
            .cmd::<Option<u64>>(&["GET", &probe.most])
            .unwrap_or(0),
        admitted: server
            .cmd::<Option<u64>>(&["GET", &probe.admitted])
            .unwrap_or(0),
        admitted_seen: sum("admitted"),
        rejected: sum("rejected"),
        storage_errors: sum("storage"),
        succeeded: sum("succeeded"),
    }
}

/// What every fleet test checks besides its own bounds: the figures are
/// sound.
fn check_sound(test: &str, figures: &Figures) {
    assert_eq!(
        figures.admitted, figures.admitted_seen,
        "{test}: Redis counted {} admitted calls, the processes {}",
        figures.admitted, figures.admitted_seen
    );
    assert_eq!(figures.succeeded, 0, "{test}: every call fails");
    assert_eq!(
        figures.storage_errors, 0,
        "{test}: {} storage steps failed (timeout {STEP_TIMEOUT:?}): the figures mean little",
        figures.storage_errors
    );
}

/// Issue 17, part 1: trials that outlive their lease (200 ms trials, a
/// 150 ms lease) must not let the fleet through. A permit whose trial
/// overran is freed when its lease ends, and the circuit stays half-open:
/// at most `ceil(200 / 150) x 1 = 2` trials at once, and one per lease.
#[test]
fn slow_trials_of_a_fleet_stay_bounded_by_their_leases() {
    slow_trials(None);
}

/// The same with every process in sync mode (50 ms): trials still ask the
/// store, so the bound is the same.
#[test]
fn slow_trials_stay_bounded_in_sync_mode() {
    slow_trials(Some(Duration::from_millis(50)));
}

fn slow_trials(sync: Option<Duration>) {
    let server = server_or_skip!();
    let _one = ONE_FLEET.lock().unwrap_or_else(PoisonError::into_inner);
    /// The open time, and so the trial lease (its default).
    const OPEN: Duration = Duration::from_millis(150);
    const RUN: Duration = Duration::from_secs(6);
    /// ceil(TRIAL / OPEN) x half_open_max_calls.
    const MOST_AT_ONCE: u64 = 2;
    /// One lease at each end of the run (rounding), and one for the
    /// processes seeing the signal to go (and the end) a moment apart.
    const SLACK: u64 = 2;
    const MOST_ADMITTED: u64 = (RUN.as_millis() / OPEN.as_millis()) as u64 + SLACK;
    /// Were every trial to decide (fail and reopen: 150 ms open, 200 ms
    /// trial), one trial per 350 ms: 16 in 6 s. Half of that is the least
    /// that shows the fleet was not shut out for good.
    const LEAST_ADMITTED: u64 = 8;

    let test = if sync.is_some() {
        "slow trials, sync mode"
    } else {
        "slow trials"
    };
    let name = unique("slow-trials");
    let figures = run_fleet(server, &name, OPEN, RUN, sync, |_| {});
    let breaker = breaker_sync(&name, server.storage(), OPEN);
    let state_after = breaker.state().unwrap();
    figure(test, "fleet", "2 sync x 4 threads + 2 async x 16 tasks");
    figure(test, "most calls at once", figures.most);
    figure(test, "calls admitted in 6 s", figures.admitted);
    figure(test, "calls rejected", figures.rejected);
    figure(test, "state after", format!("{state_after:?}"));
    assert!(
        figures.most <= MOST_AT_ONCE,
        "{test}: {} calls ran at once, at most {MOST_AT_ONCE} may \
         (ceil({TRIAL:?} / {OPEN:?}) x 1); {} admitted in {RUN:?}",
        figures.most,
        figures.admitted
    );
    assert!(
        figures.admitted <= MOST_ADMITTED,
        "{test}: {} calls admitted in {RUN:?}, at most {MOST_ADMITTED} may \
         (one per {OPEN:?} lease, + {SLACK}); {} ran at once",
        figures.admitted,
        figures.most
    );
    assert!(
        figures.admitted >= LEAST_ADMITTED,
        "{test}: only {} calls admitted in {RUN:?}: the circuit shut the fleet out",
        figures.admitted
    );
    assert_ne!(
        state_after,
        State::Closed,
        "{test}: no trial ever succeeded, yet the circuit reads closed"
    );
    check_sound(test, &figures);
}

/// Issue 17, part 2: a circuit nobody calls for 2.5 open times after it
/// opened still reads half-open, so the first burst after the quiet spell
/// (40 callers at once, over four processes) runs one trial, not 40 calls.
#[test]
fn an_idle_circuit_stays_half_open_and_a_burst_runs_one_trial() {
    let server = server_or_skip!();
    let _one = ONE_FLEET.lock().unwrap_or_else(PoisonError::into_inner);
    /// The open time and trial lease: longer than the burst takes to
    /// arrive on a busy machine, so that one lease sees all of it.
    const OPEN: Duration = Duration::from_millis(300);

    let test = "idle then burst";
    let name = unique("idle-burst");
    let mut state_before = None;
    let figures = run_fleet(server, &name, OPEN, Duration::ZERO, None, |breaker| {
        std::thread::sleep(OPEN * 5 / 2);
        state_before = Some(breaker.state().unwrap());
    });
    let state_before = state_before.unwrap();
    let state_after = breaker_sync(&name, server.storage(), OPEN).state().unwrap();
    figure(
        test,
        "state after 2.5 open times idle",
        format!("{state_before:?}"),
    );
    figure(test, "burst", "40 callers over 4 processes");
    figure(test, "most calls at once", figures.most);
    figure(test, "calls admitted", figures.admitted);
    figure(test, "state after the burst", format!("{state_after:?}"));
    assert_eq!(
        state_before,
        State::HalfOpen,
        "{test}: after {:?} idle the circuit read {state_before:?}; then {} of the \
         40 calls ran, {} at once",
        OPEN * 5 / 2,
        figures.admitted,
        figures.most
    );
    assert_eq!(
        (figures.most, figures.admitted),
        (1, 1),
        "{test}: (most at once, admitted) of the burst: one trial, and only one"
    );
    assert!(
        matches!(state_after, State::Open | State::HalfOpen),
        "{test}: the trial failed, yet the circuit reads {state_after:?}"
    );
    check_sound(test, &figures);
}

/// Opens the circuit of `breaker` (`max_failures(1)`), waits until its
/// open time is over, and replaces the half-open marker by one of the same
/// half-open period with both permits taken and no TTL: what a writer
/// leaves that died between its `INCR` and its `PEXPIRE`, or an older
/// version. Returns the marker's key.
fn leave_a_marker_without_ttl(server: &Server, name: &str, state: impl Fn() -> State) -> String {
    let marker = format!("lasier:half_open:{name}");
    let open_flag = format!("circuit_{name}");
    eventually("the open time is over", || {
        server.cmd::<i64>(&["EXISTS", &open_flag]) == 0
    });
    let value: Option<u64> = server.cmd(&["GET", &marker]);
    let value = value.unwrap_or_else(|| {
        panic!(
            "the half-open marker expired as soon as the open time was over \
             (state {:?})",
            state()
        )
    });
    let episode = value / 65_536;
    server.cmd::<()>(&["SET", &marker, &(episode * 65_536 + 2).to_string()]);
    assert_eq!(server.cmd::<i64>(&["PTTL", &marker]), -1);
    assert_eq!(state(), State::HalfOpen, "every permit taken: half-open");
    marker
}

/// The open time of the TTL-less marker tests: waited out once per test.
const SHORT_OPEN: Duration = Duration::from_millis(200);

/// Issue 17, part 3: a half-open marker without a TTL (every permit taken)
/// must not reject every call for ever: the scripts repair it.
#[test]
fn a_half_open_marker_without_ttl_heals_sync() {
    let server = server_or_skip!();
    let name = unique("marker-no-ttl-sync");
    let b = lasier_sync::CircuitBreaker::builder(&name)
        .storage(server.storage())
        .max_failures(1)
        .circuit_timeout(SHORT_OPEN)
        .half_open_max_calls(2)
        .build()
        .unwrap();
    let _ = b.call(|| Err::<(), _>(()));
    assert_eq!(b.state().unwrap(), State::Open);
    let marker = leave_a_marker_without_ttl(server, &name, || b.state().unwrap());

    let first = b.call(|| Ok::<_, ()>(()));
    let pttl: i64 = server.cmd(&["PTTL", &marker]);
    assert!(
        first.is_ok(),
        "the first call after the TTL-less marker: {first:?}, state {:?}, marker PTTL {pttl}",
        b.state().unwrap()
    );
    assert!(pttl > 0, "the marker's PTTL after a trial: {pttl}");
    assert_eq!(
        b.state().unwrap(),
        State::HalfOpen,
        "one of two trials passed"
    );
    let second = b.call(|| Ok::<_, ()>(()));
    assert!(second.is_ok(), "the second trial: {second:?}");
    assert_eq!(b.state().unwrap(), State::Closed, "two trials passed");
}

/// [`a_half_open_marker_without_ttl_heals_sync`], on `AsyncRedisStorage`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_marker_without_ttl_heals_async() {
    let server = server_or_skip!();
    let name = unique("marker-no-ttl-async");
    let b = lasier_async::CircuitBreaker::builder(&name)
        .storage(async_storage(&server.url(), Options::default()).await)
        .max_failures(1)
        .circuit_timeout(SHORT_OPEN)
        .half_open_max_calls(2)
        .build()
        .unwrap();
    let _ = b.call(async { Err::<(), _>(()) }).await;
    assert_eq!(b.state().await.unwrap(), State::Open);
    // The waits are on Redis' clock, as in the sync test; a blocking thread
    // keeps them off the runtime.
    let (marker, state) = {
        let name = name.clone();
        let handle = tokio::runtime::Handle::current();
        let b = b.clone();
        tokio::task::spawn_blocking(move || {
            let marker =
                leave_a_marker_without_ttl(server, &name, || handle.block_on(b.state()).unwrap());
            (marker, handle.block_on(b.state()).unwrap())
        })
        .await
        .unwrap()
    };
    assert_eq!(state, State::HalfOpen);

    let first = b.call(async { Ok::<_, ()>(()) }).await;
    let pttl: i64 = server.cmd(&["PTTL", &marker]);
    assert!(
        first.is_ok(),
        "the first call after the TTL-less marker: {first:?}, state {:?}, marker PTTL {pttl}",
        b.state().await.unwrap()
    );
    assert!(pttl > 0, "the marker's PTTL after a trial: {pttl}");
    assert_eq!(
        b.state().await.unwrap(),
        State::HalfOpen,
        "one of two trials passed"
    );
    let second = b.call(async { Ok::<_, ()>(()) }).await;
    assert!(second.is_ok(), "the second trial: {second:?}");
    assert_eq!(b.state().await.unwrap(), State::Closed, "two trials passed");
}
