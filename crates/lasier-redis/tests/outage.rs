//! Redis dies under load, then comes back on the same port.
//!
//! Every guarded call returns (within the storage timeout plus a generous
//! margin, and none panics); under the default `LocalFallback` a failing
//! dependency still opens the in-process circuit during the outage;
//! `FailOpen` and `FailClosed` do what they say; once Redis answers again
//! the breakers go back to the shared circuit, and see a circuit that
//! another process opened after the restart.
//!
//! Each test starts a server of its own, since it kills it. Figures are
//! printed as `FIGURE ...` lines (`cargo test -- --nocapture`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use lasier_redis::Options;
use lasier_sync::{Error, State, StorageErrorKind, StorageFailurePolicy};
use support::{
    async_storage, eventually, figure, unique, until, Event, Events, Latencies, RedisServer,
    Storages,
};

/// The storage timeout of these tests.
const TIMEOUT: Duration = Duration::from_millis(250);
/// Added to the timeout for the bound no call may exceed: generous, so
/// that a stalled CI machine cannot fail it; a hung call exceeds any.
const MARGIN: Duration = Duration::from_millis(750);
/// How long to wait for threads or tasks to stop once told to.
const STOP_WITHIN: Duration = Duration::from_secs(10);

const HEALTHY: u8 = 0;
const OUTAGE: u8 = 1;
const RECOVERED: u8 = 2;

/// Calls per phase, by outcome.
#[derive(Debug, Default)]
struct Tally {
    calls: [AtomicU64; 3],
    rejected: [AtomicU64; 3],
    storage_errors: [AtomicU64; 3],
}

impl Tally {
    fn count<T, E>(&self, phase: u8, result: &Result<T, Error<E>>) {
        let p = usize::from(phase);
        self.calls[p].fetch_add(1, Ordering::Relaxed);
        match result {
            Err(Error::Open { .. }) => {
                self.rejected[p].fetch_add(1, Ordering::Relaxed);
            }
            Err(Error::Storage(_)) => {
                self.storage_errors[p].fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    fn get(counters: &[AtomicU64; 3], phase: u8) -> u64 {
        counters[usize::from(phase)].load(Ordering::Relaxed)
    }
}

/// The dependency: healthy, except during the outage, when it fails too
/// (the worst case: the store and the service go down together).
fn dependency(phase: u8) -> Result<(), &'static str> {
    if phase == OUTAGE {
        Err("dependency down")
    } else {
        Ok(())
    }
}

/// Tells the main thread a worker ended, and whether it panicked.
struct Done(mpsc::Sender<bool>);

impl Drop for Done {
    fn drop(&mut self) {
        let _ = self.0.send(!std::thread::panicking());
    }
}

fn fallback_opened(events: &Events) -> bool {
    events.count(|e| *e == Event::Changed(State::Closed, State::Open)) > 0
}

/// A storage error reported at least one probe interval after the breaker
/// entered fallback: a probe, not a call that was in flight.
fn probed(events: &Events) -> bool {
    let Some(entered) = events.first(|e| matches!(e, Event::FallbackEntered(_))) else {
        return false;
    };
    events.log().iter().any(|(at, e)| {
        matches!(e, Event::StorageError(_)) && *at >= entered + Duration::from_secs(1)
    })
}

#[test]
fn sync_breakers_survive_redis_dying_under_8_threads() {
    const THREADS: usize = 8;
    let Some(server) = RedisServer::start() else {
        return;
    };
    let options = Options::new().timeout(TIMEOUT);
    let name = unique("outage-sync");
    let events = Arc::new(Events::default());
    let builder = |name: &str, storage| {
        lasier_sync::CircuitBreaker::builder(name)
            .storage(storage)
            .max_failures(5)
            .failure_timeout(Duration::from_secs(60))
            .circuit_timeout(Duration::from_secs(60))
    };
    // The default policy: LocalFallback, probing once a second.
    let breaker = builder(&name, server.storage_with(options))
        .listener(Arc::clone(&events))
        .build()
        .unwrap();
    let fail_open = builder(&unique("outage-open"), server.storage_with(options))
        .on_storage_failure(StorageFailurePolicy::FailOpen)
        .build()
        .unwrap();
    let fail_closed = builder(&unique("outage-closed"), server.storage_with(options))
        .on_storage_failure(StorageFailurePolicy::FailClosed)
        .build()
        .unwrap();

    let phase = Arc::new(AtomicU8::new(HEALTHY));
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Latencies::new(TIMEOUT + MARGIN));
    let tally = Arc::new(Tally::default());
    let (done_tx, done_rx) = mpsc::channel();
    for _ in 0..THREADS {
        let (b, phase, stop, latencies, tally) = (
            breaker.clone(),
            Arc::clone(&phase),
            Arc::clone(&stop),
            Arc::clone(&latencies),
            Arc::clone(&tally),
        );
        let done = Done(done_tx.clone());
        std::thread::spawn(move || {
            let _done = done;
            while !stop.load(Ordering::Relaxed) {
                let p = phase.load(Ordering::Relaxed);
                let began = Instant::now();
                let result = b.call(|| dependency(p));
                latencies.record(began.elapsed());
                tally.count(p, &result);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
    }
    drop(done_tx);

    eventually("calls go through the shared circuit", || {
        Tally::get(&tally.calls, HEALTHY) >= 200
    });
    assert_eq!(breaker.state().unwrap(), State::Closed);
    assert!(!breaker.in_fallback());

    // Redis crashes, and then the dependency fails too. (In this order: a
    // dependency failing first could open the shared circuit before Redis
    // is gone, and a breaker that knows the circuit is open rejects without
    // asking Redis, so it would never notice the crash.)
    server.kill();
    phase.store(OUTAGE, Ordering::Relaxed);
    eventually("the breaker falls back", || breaker.in_fallback());
    eventually("the in-process circuit opens", || fallback_opened(&events));
    assert_eq!(breaker.state().unwrap(), State::Open);
    assert!(breaker
        .call(|| -> Result<(), ()> { panic!("must not run") })
        .unwrap_err()
        .is_open());
    eventually("a rejection during the outage", || {
        Tally::get(&tally.rejected, OUTAGE) > 0
    });

    // FailOpen: the call runs, uncounted; the dependency's own result.
    for fails in [false, true] {
        let ran = AtomicBool::new(false);
        let began = Instant::now();
        let result = fail_open.call(|| {
            ran.store(true, Ordering::Relaxed);
            if fails {
                Err("boom")
            } else {
                Ok(7)
            }
        });
        latencies.record(began.elapsed());
        assert!(ran.load(Ordering::Relaxed));
        match result {
            Ok(7) => assert!(!fails),
            Err(Error::Inner("boom")) => assert!(fails),
            other => panic!("FailOpen: {other:?}"),
        }
        assert!(!fail_open.in_fallback());
    }
    // FailClosed: rejected with the storage error, the call does not run.
    for _ in 0..3 {
        let began = Instant::now();
        let result = fail_closed.call(|| -> Result<(), ()> { panic!("must not run") });
        latencies.record(began.elapsed());
        match result {
            Err(Error::Storage(e)) => assert!(
                matches!(
                    e.kind(),
                    StorageErrorKind::Unavailable | StorageErrorKind::TimedOut
                ),
                "{e}"
            ),
            other => panic!("FailClosed: {other:?}"),
        }
    }
    eventually("a probe fails while Redis is down", || probed(&events));

    // Redis comes back on the same port, empty.
    phase.store(RECOVERED, Ordering::Relaxed);
    server.restart();
    eventually("the breaker is back on the shared circuit", || {
        !breaker.in_fallback()
    });
    assert_eq!(breaker.state().unwrap(), State::Closed);
    assert!(events.count(|e| *e == Event::FallbackLeft) >= 1);

    // Another process opens the circuit after the restart: this one sees it.
    let other = builder(&name, server.storage_with(options))
        .build()
        .unwrap();
    for _ in 0..5 {
        let _ = other.call(|| -> Result<(), _> { Err("boom") });
    }
    assert_eq!(other.state().unwrap(), State::Open);
    eventually("the shared open circuit rejects here too", || {
        breaker.call(|| Ok::<_, ()>(())).is_err_and(|e| e.is_open())
    });
    assert_eq!(breaker.state().unwrap(), State::Open);
    assert!(!breaker.in_fallback());

    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + STOP_WITHIN;
    for i in 0..THREADS {
        let left = deadline.saturating_duration_since(Instant::now());
        let ended_well = done_rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("{} threads still in a call: a hang", THREADS - i));
        assert!(ended_well, "a worker panicked");
    }

    let test = "outage sync 8 threads";
    figure(
        test,
        "calls during the outage",
        Tally::get(&tally.calls, OUTAGE),
    );
    figure(
        test,
        "of which rejected by the in-process circuit",
        Tally::get(&tally.rejected, OUTAGE),
    );
    figure(test, "calls in all", latencies.calls());
    figure(
        test,
        format!("calls over {:?}", TIMEOUT + MARGIN),
        latencies.over(),
    );
    figure(test, "longest call", format!("{:?}", latencies.max()));
    figure(
        test,
        "storage errors reported",
        events.count(|e| matches!(e, Event::StorageError(_))),
    );
    assert_eq!(
        Tally::get(&tally.storage_errors, OUTAGE),
        0,
        "LocalFallback"
    );
    assert_eq!(latencies.over(), 0, "longest: {:?}", latencies.max());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_breakers_survive_redis_dying_under_64_tasks() {
    const TASKS: usize = 64;
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = server.url();
    let options = Options::new().timeout(TIMEOUT).connect_timeout(TIMEOUT);
    let name = unique("outage-async");
    let events = Arc::new(Events::default());
    let builder = |name: &str, storage| {
        lasier_async::CircuitBreaker::builder(name)
            .storage(storage)
            .max_failures(5)
            .failure_timeout(Duration::from_secs(60))
            .circuit_timeout(Duration::from_secs(60))
    };
    let breaker = builder(&name, async_storage(&url, options).await)
        .listener(Arc::clone(&events))
        .build()
        .unwrap();
    let fail_open = builder(&unique("outage-open"), async_storage(&url, options).await)
        .on_storage_failure(StorageFailurePolicy::FailOpen)
        .build()
        .unwrap();
    let fail_closed = builder(&unique("outage-closed"), async_storage(&url, options).await)
        .on_storage_failure(StorageFailurePolicy::FailClosed)
        .build()
        .unwrap();

    let phase = Arc::new(AtomicU8::new(HEALTHY));
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Latencies::new(TIMEOUT + MARGIN));
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (b, phase, stop, latencies, tally) = (
            breaker.clone(),
            Arc::clone(&phase),
            Arc::clone(&stop),
            Arc::clone(&latencies),
            Arc::clone(&tally),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let p = phase.load(Ordering::Relaxed);
                let began = Instant::now();
                let result = b.call(async { dependency(p) }).await;
                latencies.record(began.elapsed());
                tally.count(p, &result);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }

    until("calls go through the shared circuit", || async {
        Tally::get(&tally.calls, HEALTHY) >= 500
    })
    .await;
    assert_eq!(breaker.state().await.unwrap(), State::Closed);

    tokio::task::block_in_place(|| server.kill());
    phase.store(OUTAGE, Ordering::Relaxed);
    until("the breaker falls back", || async { breaker.in_fallback() }).await;
    until("the in-process circuit opens", || async {
        fallback_opened(&events)
    })
    .await;
    assert_eq!(breaker.state().await.unwrap(), State::Open);
    until("a rejection during the outage", || async {
        Tally::get(&tally.rejected, OUTAGE) > 0
    })
    .await;

    for fails in [false, true] {
        let ran = AtomicBool::new(false);
        let began = Instant::now();
        let result = fail_open
            .call(async {
                ran.store(true, Ordering::Relaxed);
                if fails {
                    Err("boom")
                } else {
                    Ok(7)
                }
            })
            .await;
        latencies.record(began.elapsed());
        assert!(ran.load(Ordering::Relaxed));
        match result {
            Ok(7) => assert!(!fails),
            Err(Error::Inner("boom")) => assert!(fails),
            other => panic!("FailOpen: {other:?}"),
        }
    }
    for _ in 0..3 {
        let began = Instant::now();
        let result = fail_closed
            .call(async {
                panic!("must not run");
                #[allow(unreachable_code)]
                Ok::<(), ()>(())
            })
            .await;
        latencies.record(began.elapsed());
        match result {
            Err(Error::Storage(e)) => assert!(
                matches!(
                    e.kind(),
                    StorageErrorKind::Unavailable | StorageErrorKind::TimedOut
                ),
                "{e}"
            ),
            other => panic!("FailClosed: {other:?}"),
        }
    }
    until("a probe fails while Redis is down", || async {
        probed(&events)
    })
    .await;

    phase.store(RECOVERED, Ordering::Relaxed);
    tokio::task::block_in_place(|| server.restart());
    until("the breaker is back on the shared circuit", || async {
        !breaker.in_fallback()
    })
    .await;
    assert_eq!(breaker.state().await.unwrap(), State::Closed);

    let other = builder(&name, async_storage(&url, options).await)
        .build()
        .unwrap();
    for _ in 0..5 {
        let _ = other.call(async { Err::<(), _>("boom") }).await;
    }
    assert_eq!(other.state().await.unwrap(), State::Open);
    until("the shared open circuit rejects here too", || async {
        breaker
            .call(async { Ok::<_, ()>(()) })
            .await
            .is_err_and(|e| e.is_open())
    })
    .await;
    assert_eq!(breaker.state().await.unwrap(), State::Open);

    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        match tokio::time::timeout(STOP_WITHIN, task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("a task failed: {e}"),
            Err(_) => panic!("a task is still in a call: a hang"),
        }
    }

    let test = "outage async 64 tasks";
    figure(
        test,
        "calls during the outage",
        Tally::get(&tally.calls, OUTAGE),
    );
    figure(
        test,
        "of which rejected by the in-process circuit",
        Tally::get(&tally.rejected, OUTAGE),
    );
    figure(test, "calls in all", latencies.calls());
    figure(
        test,
        format!("calls over {:?}", TIMEOUT + MARGIN),
        latencies.over(),
    );
    figure(test, "longest call", format!("{:?}", latencies.max()));
    figure(
        test,
        "storage errors reported",
        events.count(|e| matches!(e, Event::StorageError(_))),
    );
    assert_eq!(
        Tally::get(&tally.storage_errors, OUTAGE),
        0,
        "LocalFallback"
    );
    assert_eq!(latencies.over(), 0, "longest: {:?}", latencies.max());
}

/// A server restarted while the pool sat idle (or a connection closed by
/// the server's `timeout`, or a firewall): the connections are checked
/// before use once idle for a while, so the next call does not fail on a
/// dead one.
#[test]
fn a_pool_idle_through_a_restart_fails_no_call() {
    /// Longer than the pool's idle check (5 s): the length of the quiet
    /// period, not a wait for a state change.
    const QUIET: Duration = Duration::from_millis(5_500);
    let Some(server) = RedisServer::start() else {
        return;
    };
    let events = Arc::new(Events::default());
    let breaker = lasier_sync::CircuitBreaker::builder(unique("idle-restart"))
        .storage(server.storage_with(Options::new().timeout(TIMEOUT)))
        .max_failures(5)
        .listener(Arc::clone(&events))
        .build()
        .unwrap();
    // Several connections in the pool.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..20 {
                    breaker.call(|| Ok::<_, ()>(())).unwrap();
                }
            });
        }
    });
    server.kill();
    server.restart();
    std::thread::sleep(QUIET);
    for _ in 0..10 {
        breaker.call(|| Err::<(), _>("boom")).unwrap_err();
    }
    assert_eq!(
        events.count(|e| matches!(e, Event::StorageError(_))),
        0,
        "{:?}",
        events.log()
    );
    assert!(!breaker.in_fallback());
    assert_eq!(breaker.state().unwrap(), State::Open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_service_starts_while_redis_is_down() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    server.kill();
    // `connect` needs Redis; `open` does not.
    assert!(lasier_redis::AsyncRedisStorage::connect(server.url())
        .await
        .is_err());
    let storage = lasier_redis::AsyncRedisStorage::open_with_options(
        server.url(),
        Options::new().timeout(TIMEOUT),
    )
    .unwrap();
    // A refused connection fails a step at once, not at its timeout.
    {
        use lasier_core::AsyncStorage;
        let began = Instant::now();
        let error = storage.get("lasier-test:down").await.unwrap_err();
        assert_eq!(error.kind(), StorageErrorKind::Unavailable, "{error}");
        assert!(began.elapsed() < TIMEOUT, "{:?}", began.elapsed());
    }
    let breaker = lasier_async::CircuitBreaker::builder(unique("starts-down"))
        .storage(storage.clone())
        .max_failures(2)
        .on_storage_failure(StorageFailurePolicy::LocalFallback {
            probe_interval: Duration::from_millis(100),
        })
        .build()
        .unwrap();
    // Calls run on the fallback circuit, which still opens on failures.
    assert_eq!(breaker.call(async { Ok::<_, ()>(1) }).await.unwrap(), 1);
    assert!(breaker.in_fallback());
    for _ in 0..2 {
        let _ = breaker.call(async { Err::<(), _>("down") }).await;
    }
    assert!(breaker
        .call(async { Ok::<_, ()>(()) })
        .await
        .unwrap_err()
        .is_open());

    // Redis comes up: the storage connects on a step, and the breaker goes
    // back to the shared circuit (closed: the fallback's failures were not
    // the shared circuit's) at its next probe.
    server.restart();
    let began = Instant::now();
    loop {
        if breaker.call(async { Ok::<_, ()>(()) }).await.is_ok() && !breaker.in_fallback() {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "still in fallback 10 s after Redis came up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(breaker.state().await.unwrap(), State::Closed);
    use lasier_core::AsyncStorage;
    storage
        .set("lasier-test:started-down", 7, None)
        .await
        .unwrap();
    assert_eq!(
        storage.get("lasier-test:started-down").await.unwrap(),
        Some(7)
    );
}
