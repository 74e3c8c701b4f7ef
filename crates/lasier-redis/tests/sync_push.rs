//! Sync mode's push on a real Redis: an opening, a verdict of trials or a
//! change by hand, made through another storage (standing for another
//! process), reaches a breaker in sync mode about one round trip later,
//! far sooner than its sync interval; on one server and on a cluster, in
//! both facades; and the watch comes back after its connection is killed,
//! and ends with the last breaker of its storage.
#![cfg(all(feature = "sync", feature = "async"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use lasier_redis::redis;
use lasier_redis::{RedisStorage, CHANGES_CHANNEL};
use lasier_sync::CircuitBreaker;
use support::{figure, unique};

/// Far longer than any test waits: what the breakers see sooner came by
/// push, not by their background sync.
const INTERVAL: Duration = Duration::from_secs(30);

/// How long a pushed change may take to reach the mirror here: a round
/// trip, a background pass woken at once, and a loaded CI machine.
const PUSH_BOUND: Duration = Duration::from_secs(3);

fn sync_mode(name: &str, storage: impl lasier_core::Storage + 'static) -> CircuitBreaker {
    CircuitBreaker::builder(name)
        .storage(storage)
        .max_failures(3)
        .circuit_timeout(Duration::from_secs(60))
        .sync_interval(INTERVAL)
        .build()
        .unwrap()
}

fn per_call(name: &str, storage: impl lasier_core::Storage + 'static) -> CircuitBreaker {
    CircuitBreaker::builder(name)
        .storage(storage)
        .max_failures(3)
        .circuit_timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// How long until `breaker` (whose mirror is fresh) rejects a call, or
/// admits one with `admits`; panics past [`PUSH_BOUND`].
fn until_it(breaker: &CircuitBreaker, admits: bool, what: &str) -> Duration {
    let start = Instant::now();
    loop {
        let admitted = breaker.call(|| Ok::<(), ()>(())).is_ok();
        if admitted == admits {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < PUSH_BOUND,
            "{what}: not seen after {PUSH_BOUND:?} (sync interval {INTERVAL:?})"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Trips `name`'s circuit through `other` (3 failures), then waits for
/// `watched`, in sync mode on another storage, to reject.
fn an_opening_elsewhere_reaches(watched: &CircuitBreaker, other: &CircuitBreaker) -> Duration {
    for _ in 0..3 {
        let _ = other.call(|| Err::<(), ()>(()));
    }
    assert!(other.call(|| Ok::<(), ()>(())).unwrap_err().is_open());
    until_it(watched, false, "an opening made elsewhere")
}

#[test]
fn an_opening_elsewhere_reaches_a_breaker_in_sync_mode_at_once() {
    let server = server_or_skip!();
    let name = unique("push-open");
    let watched = sync_mode(&name, server.storage());
    // in use, synced, its watch subscribed
    watched.call(|| Ok::<(), ()>(())).unwrap();
    watched.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let took = an_opening_elsewhere_reaches(&watched, &per_call(&name, server.storage()));
    figure("sync_push", "opening seen after", format!("{took:?}"));
}

#[test]
fn changes_by_hand_elsewhere_reach_a_breaker_in_sync_mode_at_once() {
    let server = server_or_skip!();
    let name = unique("push-manual");
    let watched = sync_mode(&name, server.storage());
    let operator = per_call(&name, server.storage());
    watched.call(|| Ok::<(), ()>(())).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    operator.force_open().unwrap();
    let took = until_it(&watched, false, "force_open");
    figure("sync_push", "force_open seen after", format!("{took:?}"));

    operator.force_close().unwrap();
    let took = until_it(&watched, true, "force_close");
    figure("sync_push", "force_close seen after", format!("{took:?}"));

    // open, then a reset by hand closes it for everyone
    operator.force_open().unwrap();
    until_it(&watched, false, "force_open again");
    operator.reset().unwrap();
    let took = until_it(&watched, true, "reset");
    figure("sync_push", "reset seen after", format!("{took:?}"));
}

#[test]
fn a_verdict_of_trials_elsewhere_reaches_a_breaker_in_sync_mode_at_once() {
    let server = server_or_skip!();
    let name = unique("push-trial");
    let storage = server.storage();
    let watched = sync_mode(&name, storage.clone());
    watched.call(|| Ok::<(), ()>(())).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let clock = lasier_core::clock::ManualClock::new();
    let other = CircuitBreaker::builder(&name)
        .storage(server.storage())
        .max_failures(3)
        .circuit_timeout(Duration::from_millis(200))
        .clock(clock.clone())
        .build()
        .unwrap();
    an_opening_elsewhere_reaches(&watched, &other);
    // the opening lasts 200 ms in the store: then a trial succeeds and
    // closes the circuit, and the breaker in sync mode admits at once
    std::thread::sleep(Duration::from_millis(300));
    clock.advance(Duration::from_millis(300));
    other.call(|| Ok::<(), ()>(())).unwrap();
    let took = until_it(&watched, true, "a trial that closed the circuit");
    figure(
        "sync_push",
        "closing by a trial seen after",
        format!("{took:?}"),
    );
}

#[test]
fn the_watch_subscribes_again_after_its_connection_is_killed() {
    let server = lasier_redis_harness::RedisServer::start().expect("a redis-server of its own");
    let name = unique("push-killed");
    let watched = sync_mode(&name, RedisStorage::open(server.url()).unwrap());
    watched.call(|| Ok::<(), ()>(())).unwrap();
    let admin = redis::Client::open(server.url()).unwrap();
    let mut admin = admin.get_connection().unwrap();
    let subscribers = |admin: &mut redis::Connection| -> usize {
        redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(CHANGES_CHANNEL)
            .query::<(String, usize)>(admin)
            .unwrap()
            .1
    };
    support::eventually_equal("the watch subscribed", 1, || subscribers(&mut admin));
    let killed: usize = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut admin)
        .unwrap();
    assert_eq!(killed, 1);
    support::eventually_equal("the watch subscribed again", 1, || subscribers(&mut admin));
    let took = an_opening_elsewhere_reaches(
        &watched,
        &per_call(&name, RedisStorage::open(server.url()).unwrap()),
    );
    figure(
        "sync_push",
        "opening seen after a resubscription",
        format!("{took:?}"),
    );

    // the watch ends with the last breaker of its storage
    drop(watched);
    support::eventually_equal("the watch unsubscribed", 0, || subscribers(&mut admin));
}

#[test]
fn anyone_may_publish_a_name_to_have_its_breakers_sync() {
    let server = server_or_skip!();
    let name = unique("push-publish");
    let watched = sync_mode(&name, server.storage());
    watched.call(|| Ok::<(), ()>(())).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // opened by hand, as Python `lasier` does (it does not publish): seen
    // only once someone publishes the name
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    redis::cmd("SET")
        .arg(format!("circuit_{name}"))
        .arg(1)
        .arg("PX")
        .arg(60_000)
        .query::<()>(&mut conn)
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        watched.call(|| Ok::<(), ()>(())).is_ok(),
        "seen before any push"
    );
    redis::cmd("PUBLISH")
        .arg(CHANGES_CHANNEL)
        .arg(&name)
        .query::<i64>(&mut conn)
        .unwrap();
    until_it(&watched, false, "an opening by hand, then published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opening_elsewhere_reaches_an_async_breaker_in_sync_mode_at_once() {
    let server = server_or_skip!();
    let name = unique("push-async");
    let storage = lasier_redis::AsyncRedisStorage::open(server.url()).unwrap();
    let watched = lasier_async::CircuitBreaker::builder(&name)
        .storage(storage)
        .max_failures(3)
        .circuit_timeout(Duration::from_secs(60))
        .sync_interval(INTERVAL)
        .build()
        .unwrap();
    watched.call(async { Ok::<(), ()>(()) }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = per_call(&name, server.storage());
    tokio::task::spawn_blocking(move || {
        for _ in 0..3 {
            let _ = other.call(|| Err::<(), ()>(()));
        }
    })
    .await
    .unwrap();
    let start = Instant::now();
    while watched.call(async { Ok::<(), ()>(()) }).await.is_ok() {
        assert!(
            start.elapsed() < PUSH_BOUND,
            "not seen after {PUSH_BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    figure(
        "sync_push",
        "opening seen by an async breaker after",
        format!("{:?}", start.elapsed()),
    );
}

#[cfg(feature = "cluster")]
#[test]
fn on_a_cluster_an_opening_elsewhere_reaches_a_breaker_in_sync_mode_at_once() {
    let cluster = cluster_or_skip!();
    // every key of the circuit in one slot, whatever the master
    let name = format!("{{{}}}", unique("push-cluster"));
    let open = || lasier_redis::ClusterRedisStorage::open(cluster.urls()).unwrap();
    let watched = sync_mode(&name, open());
    watched.call(|| Ok::<(), ()>(())).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let took = an_opening_elsewhere_reaches(&watched, &per_call(&name, open()));
    figure(
        "sync_push",
        "opening seen on a cluster after",
        format!("{took:?}"),
    );
}
