//! A store that answers slowly, or not at all: a TCP proxy between the
//! breakers and Redis delays replies or holds all traffic on command.
//!
//! Checked, with counts: no guarded call takes longer than the storage
//! timeout plus a generous margin (the number that did is 0, the longest is
//! printed); a store slow but within the timeout is still used; one past
//! the timeout sends the breaker to its in-process fallback, from which it
//! probes the store at most once per interval; it comes back when the store
//! does. Figures are printed as `FIGURE ...` lines
//! (`cargo test -- --nocapture`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use lasier_core::{AsyncSteps as _, Steps as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use lasier_redis::{Options, RedisStorage};
use support::{
    async_storage, eventually, figure, unique, until, Event, Events, Fault, Latencies, Proxy,
    RedisServer,
};

/// The storage timeout of these tests.
const TIMEOUT: Duration = Duration::from_millis(250);
/// Added to the timeout for the bound no call may exceed: generous, so
/// that a stalled CI machine cannot fail it; a hung call exceeds any.
const MARGIN: Duration = Duration::from_millis(750);
/// The default probe interval of `LocalFallback`.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Slow, but within the timeout.
const SLOW: Duration = Duration::from_millis(60);
/// Slower than the timeout.
const TOO_SLOW: Duration = Duration::from_millis(1000);
/// How long the store hangs.
const HANG: Duration = Duration::from_millis(3500);
/// Tolerance on the spacing of probes: the breaker's clock counts whole
/// milliseconds.
const CLOCK_TOLERANCE: Duration = Duration::from_millis(20);

/// Commands that set a connection up rather than ask the store something.
fn is_setup(name: &str) -> bool {
    matches!(
        name,
        "CLIENT SETINFO" | "HELLO" | "AUTH" | "SELECT" | "PING"
    )
}

/// What the hang phase showed.
#[derive(Debug)]
struct HangFigures {
    /// Storage errors from probes: reported at least a timeout after the
    /// breaker entered fallback (so not by calls already in flight).
    probes: usize,
    /// The most probes the hang's length allows: one per interval, plus
    /// the first.
    allowed: usize,
    /// The shortest time between two probes.
    min_gap: Option<Duration>,
    /// Requests (not connection setup) that reached the proxy while the
    /// store hung, after the in-flight ones.
    requests_while_probing: usize,
    /// Connection setup commands meanwhile.
    setups_while_probing: usize,
}

fn hang_figures(events: &Events, proxy: &Proxy, hung: Instant, lifted: Instant) -> HangFigures {
    let entered = events
        .log()
        .iter()
        .find(|(at, e)| *at >= hung && matches!(e, Event::FallbackEntered(_)))
        .map(|(at, _)| *at)
        .expect("the breaker fell back while the store hung");
    // Calls in flight when the store hung fail within one timeout of it;
    // storage errors after that come from probes.
    let settled = entered + TIMEOUT + Duration::from_millis(100);
    let probe_times: Vec<Instant> = events
        .log()
        .iter()
        .filter(|(at, e)| *at > settled && *at < lifted && matches!(e, Event::StorageError(_)))
        .map(|(at, _)| *at)
        .collect();
    let min_gap = probe_times.windows(2).map(|w| w[1] - w[0]).min();
    let window = lifted.saturating_duration_since(entered);
    let allowed = usize::try_from(window.as_millis() / PROBE_INTERVAL.as_millis()).unwrap() + 1;
    let sent: Vec<_> = proxy
        .sent()
        .into_iter()
        .filter(|c| c.at > settled && c.at < lifted)
        .collect();
    HangFigures {
        probes: probe_times.len(),
        allowed,
        min_gap,
        requests_while_probing: sent.iter().filter(|c| !is_setup(&c.name)).count(),
        setups_while_probing: sent.iter().filter(|c| is_setup(&c.name)).count(),
    }
}

fn check_hang(test: &str, figures: &HangFigures) {
    figure(test, "probes while the store hung", figures.probes);
    figure(test, "probes allowed (one per interval)", figures.allowed);
    figure(
        test,
        "shortest time between probes",
        format!("{:?}", figures.min_gap),
    );
    figure(
        test,
        "requests that reached the store while probing",
        figures.requests_while_probing,
    );
    figure(
        test,
        "connection setups meanwhile",
        figures.setups_while_probing,
    );
    assert!(figures.probes >= 1, "{figures:?}");
    assert!(figures.probes <= figures.allowed, "{figures:?}");
    if let Some(gap) = figures.min_gap {
        assert!(gap + CLOCK_TOLERANCE >= PROBE_INTERVAL, "{figures:?}");
    }
    // Each probe is at most one request; none reaches the store otherwise.
    assert!(
        figures.requests_while_probing <= figures.allowed,
        "{figures:?}"
    );
}

fn report(test: &str, latencies: &Latencies) {
    figure(test, "calls in all", latencies.calls());
    figure(
        test,
        format!("calls over {:?}", TIMEOUT + MARGIN),
        latencies.over(),
    );
    figure(test, "longest call", format!("{:?}", latencies.max()));
    assert_eq!(latencies.over(), 0, "longest: {:?}", latencies.max());
}

/// Tells the main thread a worker ended, and whether it panicked.
struct Done(mpsc::Sender<bool>);

impl Drop for Done {
    fn drop(&mut self) {
        let _ = self.0.send(!std::thread::panicking());
    }
}

#[test]
fn sync_calls_never_wait_past_the_timeout_on_a_slow_or_hung_store() {
    const THREADS: usize = 8;
    let Some(server) = RedisServer::start() else {
        return;
    };
    let proxy = Proxy::start(server.addr());
    let storage =
        RedisStorage::open_with_options(proxy.url(None), Options::new().timeout(TIMEOUT)).unwrap();
    let events = Arc::new(Events::default());
    let breaker = lasier_sync::CircuitBreaker::builder(unique("slow-sync"))
        .storage(storage)
        .max_failures(5)
        .listener(Arc::clone(&events))
        .build()
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Latencies::new(TIMEOUT + MARGIN));
    let (done_tx, done_rx) = mpsc::channel();
    for _ in 0..THREADS {
        let (b, stop, latencies) = (breaker.clone(), Arc::clone(&stop), Arc::clone(&latencies));
        let done = Done(done_tx.clone());
        std::thread::spawn(move || {
            let _done = done;
            while !stop.load(Ordering::Relaxed) {
                let began = Instant::now();
                let result = b.call(|| Ok::<_, ()>(()));
                latencies.record(began.elapsed());
                // The dependency is healthy: whatever the store does, the
                // call runs (through the store or the fallback).
                assert!(result.is_ok(), "{result:?}");
                std::thread::sleep(Duration::from_millis(2));
            }
        });
    }
    drop(done_tx);
    let calls_from = |n: u64| {
        let latencies = &*latencies;
        let start = latencies.calls();
        move || latencies.calls() >= start + n
    };

    eventually("calls through the store", calls_from(100));
    let errors = |events: &Events| events.count(|e| matches!(e, Event::StorageError(_)));

    // Slow, within the timeout: the store is still used.
    proxy.set(Fault::Delay(SLOW));
    eventually("calls through a slow store", calls_from(40));
    assert_eq!(errors(&events), 0, "a slow store within the timeout failed");
    assert!(!breaker.in_fallback());

    // Slower than the timeout: fallback, calls still bounded.
    proxy.set(Fault::Delay(TOO_SLOW));
    eventually("fallback on a too slow store", || breaker.in_fallback());
    eventually("calls on the fallback", calls_from(200));
    proxy.set(Fault::None);
    eventually("back on the store", || !breaker.in_fallback());

    // The store hangs: nothing comes back at all.
    let hung = Instant::now();
    proxy.set(Fault::Blackhole);
    eventually("fallback on a hung store", || breaker.in_fallback());
    // The length of the hang, not a wait for a state change.
    std::thread::sleep(HANG.saturating_sub(hung.elapsed()));
    let lifted = Instant::now();
    proxy.set(Fault::None);
    eventually("back on the store after the hang", || {
        !breaker.in_fallback()
    });
    eventually("calls through the store again", calls_from(50));

    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in 0..THREADS {
        let left = deadline.saturating_duration_since(Instant::now());
        let ended_well = done_rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("{} threads still in a call: a hang", THREADS - i));
        assert!(ended_well, "a worker panicked");
    }
    let test = "slow store sync 8 threads";
    report(test, &latencies);
    check_hang(test, &hang_figures(&events, &proxy, hung, lifted));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_calls_never_wait_past_the_timeout_on_a_slow_or_hung_store() {
    const TASKS: usize = 64;
    let Some(server) = RedisServer::start() else {
        return;
    };
    let proxy = Proxy::start(server.addr());
    let options = Options::new().timeout(TIMEOUT);
    let events = Arc::new(Events::default());
    let breaker = lasier_async::CircuitBreaker::builder(unique("slow-async"))
        .storage(async_storage(&proxy.url(None), options).await)
        .max_failures(5)
        .listener(Arc::clone(&events))
        .build()
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Latencies::new(TIMEOUT + MARGIN));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (b, stop, latencies) = (breaker.clone(), Arc::clone(&stop), Arc::clone(&latencies));
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let began = Instant::now();
                let result = b.call(async { Ok::<_, ()>(()) }).await;
                latencies.record(began.elapsed());
                assert!(result.is_ok(), "{result:?}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let calls_from = |n: u64| {
        let start = latencies.calls();
        let latencies = Arc::clone(&latencies);
        move || {
            let latencies = Arc::clone(&latencies);
            async move { latencies.calls() >= start + n }
        }
    };
    let errors = |events: &Events| events.count(|e| matches!(e, Event::StorageError(_)));

    until("calls through the store", calls_from(500)).await;

    proxy.set(Fault::Delay(SLOW));
    until("calls through a slow store", calls_from(300)).await;
    assert_eq!(errors(&events), 0, "a slow store within the timeout failed");
    assert!(!breaker.in_fallback());

    proxy.set(Fault::Delay(TOO_SLOW));
    until("fallback on a too slow store", || async {
        breaker.in_fallback()
    })
    .await;
    until("calls on the fallback", calls_from(1000)).await;
    proxy.set(Fault::None);
    until("back on the store", || async { !breaker.in_fallback() }).await;

    let hung = Instant::now();
    proxy.set(Fault::Blackhole);
    until("fallback on a hung store", || async {
        breaker.in_fallback()
    })
    .await;
    tokio::time::sleep(HANG.saturating_sub(hung.elapsed())).await;
    let lifted = Instant::now();
    proxy.set(Fault::None);
    until("back on the store after the hang", || async {
        !breaker.in_fallback()
    })
    .await;
    until("calls through the store again", calls_from(300)).await;

    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(10), task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("a task failed: {e}"),
            Err(_) => panic!("a task is still in a call: a hang"),
        }
    }
    let test = "slow store async 64 tasks";
    report(test, &latencies);
    check_hang(test, &hang_figures(&events, &proxy, hung, lifted));
}

/// A step that runs out of time is a `TimedOut` storage error, for both
/// storages, whether the store hangs before or after the connection is
/// made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_store_is_a_timed_out_error() {
    use lasier_core::{Config, StorageErrorKind};
    let Some(server) = RedisServer::start() else {
        return;
    };
    let proxy = Proxy::start(server.addr());
    let options = Options::new().timeout(TIMEOUT);
    let (circuit, _) = Config::new(unique("timed-out"))
        .max_failures(1)
        .validate()
        .unwrap();
    let sync_storage = RedisStorage::open_with_options(proxy.url(None), options).unwrap();
    let async_storage = async_storage(&proxy.url(None), options).await;
    // Connected (and a pooled connection made) before the store hangs...
    sync_storage.state(&circuit).unwrap();
    async_storage.state(&circuit).await.unwrap();
    proxy.set(Fault::Blackhole);
    let latencies = Latencies::new(TIMEOUT + MARGIN);
    for _ in 0..2 {
        // ... and, the second time, on a new connection (the pool dropped
        // the one that timed out).
        let began = Instant::now();
        let error = tokio::task::block_in_place(|| sync_storage.state(&circuit)).unwrap_err();
        latencies.record(began.elapsed());
        assert_eq!(error.kind(), StorageErrorKind::TimedOut, "{error}");
        let began = Instant::now();
        let error = async_storage.state(&circuit).await.unwrap_err();
        latencies.record(began.elapsed());
        assert_eq!(error.kind(), StorageErrorKind::TimedOut, "{error}");
    }
    proxy.set(Fault::None);
    report("timed-out errors", &latencies);
}
