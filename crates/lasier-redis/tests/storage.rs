//! `RedisStorage` at the storage level: the primitives' contract, what the
//! scripts leave in Redis (TTLs, keys), garbage in keys, concurrency and
//! connection failures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use lasier_core::Steps as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::Duration;

use lasier_core::state::{Admission, Outcome, Permit, State, Transition};
use lasier_core::{Circuit, Config, Rule, Storage, StorageErrorKind};
use lasier_redis::RedisStorage;
use support::unique;

const MINUTE: Duration = Duration::from_secs(60);

/// A circuit as a breaker would build it.
fn circuit(
    name: &str,
    rule: impl FnOnce(&mut Config) -> &mut Config,
) -> (Circuit, std::sync::Arc<dyn Rule>) {
    let mut config = Config::new(name);
    rule(&mut config)
        .failure_timeout(MINUTE)
        .circuit_timeout(Duration::from_secs(30));
    config.validate().unwrap()
}

const OPENED: Option<Transition> = Some(Transition {
    from: State::Closed,
    to: State::Open,
});

#[test]
fn primitives_follow_the_contract_with_millisecond_ttls() {
    let server = server_or_skip!();
    let s = server.storage();
    let k = unique("prim");
    assert_eq!(s.get(&k).unwrap(), None);
    server.assert_ttl(&k, 2500, || {
        assert!(s.add(&k, 5, Some(Duration::from_millis(2500))).unwrap());
    });
    assert!(!s.add(&k, 7, None).unwrap());
    assert_eq!(s.incr(&k, 2).unwrap(), 7);
    assert_eq!(s.incr(&k, -10).unwrap(), -3);
    // INCRBY keeps the TTL
    let pttl: i64 = server.cmd(&["PTTL", &k]);
    assert!(pttl > 0, "{pttl}");
    assert_eq!(s.get(&k).unwrap(), Some(-3));

    s.set(&k, 1, None).unwrap();
    assert_eq!(server.cmd::<i64>(&["PTTL", &k]), -1);
    // rounded up to whole milliseconds
    server.assert_ttl(&k, 1501, || {
        s.expire(&k, Duration::from_micros(1_500_001)).unwrap();
    });
    s.delete(&k).unwrap();
    assert_eq!(s.get(&k).unwrap(), None);
    // expire of a missing key does nothing
    s.expire(&k, MINUTE).unwrap();
    assert_eq!(server.cmd::<i64>(&["EXISTS", &k]), 0);
    // a counter is a plain Redis integer, as INCR writes it
    s.incr(&k, 3).unwrap();
    assert_eq!(server.cmd::<String>(&["GET", &k]), "3");
    // a zero TTL rounds up to the smallest Redis accepts
    s.set(&k, 1, Some(Duration::ZERO)).unwrap();
    support::eventually("1 ms TTL", || s.get(&k).unwrap().is_none());
}

#[test]
fn keys_and_values_are_the_python_originals() {
    let server = server_or_skip!();
    let s = server.storage();
    let name = unique("layout");
    let (c, rule) = circuit(&name, |c| c.percentage_failures(50, 0));
    server.assert_ttl(&format!("circuit_{name}"), 30_000, || {
        s.record(&c, Permit::Normal, Outcome::Failure, &*rule)
            .unwrap();
    });
    assert_eq!(server.cmd::<Option<String>>(&["GET", &name]), None); // tripped: cleared
    assert_eq!(
        server.cmd::<String>(&["GET", &format!("circuit_{name}")]),
        "1"
    );
    s.reset(&c).unwrap();
    let (c, rule) = circuit(&name, |c| c.percentage_failures(100, 10));
    s.record(&c, Permit::Normal, Outcome::Failure, &*rule)
        .unwrap();
    s.record(&c, Permit::Normal, Outcome::Success, &*rule)
        .unwrap();
    assert_eq!(server.cmd::<String>(&["GET", &name]), "1");
    assert_eq!(
        server.cmd::<String>(&["GET", &format!("{name}_requests")]),
        "2"
    );
    assert_eq!(
        server.cmd::<String>(&["TYPE", &name]),
        "string",
        "plain string counters"
    );
}

#[test]
fn both_counters_of_a_window_expire_at_the_same_instant() {
    // The original restarts the failure counter's TTL at the first failure
    // of a window, so failures outlive requests and the ratio inflates.
    let server = server_or_skip!();
    let s = server.storage();
    let name = unique("drift");
    let (c, rule) = circuit(&name, |c| c.percentage_failures(100, 1000));
    s.record(&c, Permit::Normal, Outcome::Success, &*rule)
        .unwrap();
    let requests_deadline: i64 = server.cmd(&["PEXPIRETIME", &format!("{name}_requests")]);
    // Let Redis' clock move on before the first failure of the window.
    std::thread::sleep(Duration::from_millis(20));
    s.record(&c, Permit::Normal, Outcome::Failure, &*rule)
        .unwrap();
    s.record(&c, Permit::Normal, Outcome::Failure, &*rule)
        .unwrap();
    let failures_deadline: i64 = server.cmd(&["PEXPIRETIME", &name]);
    // The same instant, but for Redis' clock moving on by a millisecond
    // between two commands of one script (Redis 7.0 does not freeze it);
    // harmless, as a new window starts its failure counter again at 0.
    assert!(
        (requests_deadline..=requests_deadline + 1).contains(&failures_deadline),
        "{failures_deadline} vs {requests_deadline}"
    );
    assert_eq!(
        server.cmd::<i64>(&["PEXPIRETIME", &format!("{name}_requests")]),
        requests_deadline,
        "later requests keep the window's deadline"
    );
    // A failure counter lost mid-window comes back with the window's end.
    server.cmd::<i64>(&["DEL", &name]);
    s.record(&c, Permit::Normal, Outcome::Failure, &*rule)
        .unwrap();
    let failures_deadline: i64 = server.cmd(&["PEXPIRETIME", &name]);
    assert!(
        (requests_deadline - 1..=requests_deadline).contains(&failures_deadline),
        "{failures_deadline} vs {requests_deadline}"
    );

    // A failure counter that outlived its window's request counter (as the
    // original's drift leaves them) does not leak into the next window.
    let name = unique("drift-leftover");
    let (c, rule) = circuit(&name, |c| c.percentage_failures(100, 1000));
    server.cmd::<()>(&["SET", &name, "7", "PX", "60000"]);
    s.record(&c, Permit::Normal, Outcome::Failure, &*rule)
        .unwrap();
    assert_eq!(s.counts(&c).unwrap(), lasier_core::Counts::new(1, 1));
    let requests_deadline: i64 = server.cmd(&["PEXPIRETIME", &format!("{name}_requests")]);
    let failures_deadline: i64 = server.cmd(&["PEXPIRETIME", &name]);
    assert!(
        (requests_deadline..=requests_deadline + 1).contains(&failures_deadline),
        "{failures_deadline} vs {requests_deadline}"
    );

    // MaxFailures: the failure counter's TTL runs from its first increment.
    let name = unique("drift-max");
    let (c, rule) = circuit(&name, |c| c.max_failures(100));
    s.record(&c, Permit::Normal, Outcome::Failure, &*rule)
        .unwrap();
    let deadline: i64 = server.cmd(&["PEXPIRETIME", &name]);
    std::thread::sleep(Duration::from_millis(20));
    s.record(&c, Permit::Normal, Outcome::Failure, &*rule)
        .unwrap();
    assert_eq!(server.cmd::<i64>(&["PEXPIRETIME", &name]), deadline);
}

#[test]
fn counters_left_without_a_ttl_get_one() {
    // A Python process that died between its INCR and EXPIRE leaves a
    // counter that would never expire.
    let server = server_or_skip!();
    let s = server.storage();
    let name = unique("no-ttl");
    let (c, rule) = circuit(&name, |c| c.percentage_failures(100, 1000));
    server.cmd::<()>(&["SET", &format!("{name}_requests"), "3"]);
    server.cmd::<()>(&["SET", &name, "1"]);
    s.record(&c, Permit::Normal, Outcome::Failure, &*rule)
        .unwrap();
    assert!(server.cmd::<i64>(&["PTTL", &format!("{name}_requests")]) > 0);
    assert!(server.cmd::<i64>(&["PTTL", &name]) > 0);
    assert_eq!(s.counts(&c).unwrap(), lasier_core::Counts::new(2, 4));
}

#[test]
fn garbage_in_keys_is_a_corrupt_error_never_a_panic() {
    let server = server_or_skip!();
    let s = server.storage();
    let rules: [fn(&mut Config) -> &mut Config; 2] =
        [|c| c.max_failures(3), |c| c.percentage_failures(50, 0)];
    for rule in rules {
        for (which, garbage) in [
            ("failures", "SET text"),
            ("failures", "HSET hash"),
            ("failures", "SET -4"),
            ("requests", "SET text"),
            ("requests", "LIST list"),
            ("open", "SET 2"),
            ("open", "SET text"),
            ("open", "HSET hash"),
            ("trials", "SET text"),
            ("lease", "SET text"),
            ("lease", "HSET hash"),
        ] {
            let name = unique("garbage");
            let (c, rule) = circuit(&name, rule);
            let keys = c.keys();
            let key = match which {
                "failures" => keys.failures(),
                "requests" => keys.requests(),
                "open" => keys.open(),
                "lease" => keys.trial_lease(),
                _ => keys.trials(),
            };
            match garbage.split_once(' ').unwrap() {
                ("SET", value) => server.cmd::<()>(&["SET", key, value]),
                ("HSET", _) => server.cmd::<()>(&["HSET", key, "f", "1"]),
                (_, _) => server.cmd::<()>(&["RPUSH", key, "1"]),
            }
            let case = format!("{garbage} at {which}, rule {rule:?}");
            let corrupt = |result: Result<(), lasier_core::StorageError>, step: &str| {
                let error = result.expect_err(&format!("{step}: {case}"));
                assert_eq!(
                    error.kind(),
                    StorageErrorKind::Corrupt,
                    "{step}: {case}: {error}"
                );
                assert!(error.to_string().contains(key), "{error}");
            };
            let requests_unused = which == "requests" && !c.counts_requests();
            let half_open = which == "trials" || which == "lease";
            if which == "lease" {
                // a lease is read once the circuit is half-open (episode 1)
                server.cmd::<()>(&["SET", keys.trials(), "65537", "PX", "60000"]);
            }
            if !requests_unused && !half_open {
                corrupt(
                    s.record(&c, Permit::Normal, Outcome::Failure, &*rule)
                        .map(drop),
                    "record",
                );
                if which != "open" {
                    corrupt(s.counts(&c).map(drop), "counts");
                }
            }
            if which == "open" || which == "trials" {
                corrupt(s.state(&c).map(drop), "state");
            }
            if which == "open" || half_open {
                corrupt(s.admit(&c).map(drop), "admit");
            }
            if half_open {
                corrupt(s.release(&c, Permit::Trial { episode: 1 }), "release");
            }
            if which == "trials" {
                corrupt(
                    s.record(&c, Permit::Trial { episode: 0 }, Outcome::Success, &*rule)
                        .map(drop),
                    "trial",
                );
            }
            if !matches!(garbage, "SET -4" | "SET 2") {
                // the primitives too (where the value is not an integer)
                let error = s.get(key).map(drop).unwrap_err();
                assert_eq!(error.kind(), StorageErrorKind::Corrupt, "get: {case}");
                let error = s.incr(key, 1).map(drop).unwrap_err();
                assert_eq!(error.kind(), StorageErrorKind::Corrupt, "incr: {case}");
            }
            // The scripts check before writing: nothing else was touched.
            let written: i64 = server.cmd(&[
                "EXISTS",
                keys.failures(),
                keys.requests(),
                keys.open(),
                keys.trials(),
                keys.trial_lease(),
                keys.trials_passed(),
            ]);
            // (the garbage, and the marker a lease is met under)
            let expected = if which == "lease" { 2 } else { 1 };
            assert_eq!(written, expected, "{case}");
            s.reset(&c).unwrap();
        }
    }
}

#[test]
fn a_breaker_on_a_corrupt_circuit_does_not_panic() {
    let server = server_or_skip!();
    let name = unique("corrupt-breaker");
    server.cmd::<()>(&["HSET", &format!("circuit_{name}"), "f", "1"]);
    let storage = server.storage();
    let (c, _) = circuit(&name, |c| c.max_failures(1));
    assert_eq!(
        storage.admit(&c).unwrap_err().kind(),
        StorageErrorKind::Corrupt
    );
    let b = lasier_sync::CircuitBreaker::builder(&name)
        .storage(storage)
        .max_failures(1)
        .build()
        .unwrap();
    // What the breaker does then (report it, let the call through...) is
    // its storage-failure policy's business; an error it reports is the
    // storage's, with its kind.
    for _ in 0..3 {
        match b.call(|| -> Result<(), ()> { Ok(()) }) {
            Ok(()) => {}
            Err(lasier_sync::Error::Storage(e)) => {
                assert_eq!(e.kind(), StorageErrorKind::Corrupt, "{e}");
            }
            Err(other) => panic!("{other:?}"),
        }
    }
}

#[test]
fn concurrent_failures_open_the_circuit_exactly_once() {
    let server = server_or_skip!();
    for rule in [
        (|c: &mut Config| c.max_failures(5)) as fn(&mut Config) -> &mut Config,
        |c| c.percentage_failures(50, 4),
    ] {
        let name = unique("once");
        let (c, rule) = circuit(&name, rule);
        let storages: Vec<RedisStorage> = (0..4).map(|_| server.storage()).collect();
        let threads = 32;
        let start = Barrier::new(threads);
        let opened = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for t in 0..threads {
                let (storage, start, opened, c, rule) =
                    (&storages[t % storages.len()], &start, &opened, &c, &rule);
                s.spawn(move || {
                    start.wait();
                    let transition = storage
                        .record(c, Permit::Normal, Outcome::Failure, &**rule)
                        .unwrap();
                    if transition == OPENED {
                        opened.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(opened.load(Ordering::SeqCst), 1, "{rule:?}");
        assert_eq!(storages[0].state(&c).unwrap(), State::Open);
    }
}

#[test]
fn trial_permits_are_bounded_and_a_released_one_is_reused() {
    let server = server_or_skip!();
    let s = server.storage();
    let name = unique("permits");
    let mut config = Config::new(&name);
    config
        .max_failures(1)
        .half_open_max_calls(2)
        .circuit_timeout(MINUTE);
    let (c, _) = config.validate().unwrap();
    // The state a trip leaves once its open time is over: the half-open
    // marker without the flag (no waiting for the flag to expire).
    server.cmd::<()>(&["SET", c.keys().trials(), "0", "PX", "120000"]);
    assert_eq!(s.state(&c).unwrap(), State::HalfOpen);
    let trial = Admission::Admitted(Permit::Trial { episode: 0 });
    let mut answer = None;
    // The first trial starts a lease of one circuit timeout (the default
    // trial lease); the half-open state itself lasts a day more.
    server.assert_ttl(c.keys().trial_lease(), 60_000, || {
        answer = Some(s.admit(&c).unwrap())
    });
    let marker_ttl: i64 = server.cmd(&["PTTL", c.keys().trials()]);
    assert!(marker_ttl > 24 * 3_600_000, "{marker_ttl}");
    let (first, transition) = answer.unwrap();
    assert_eq!(first, trial);
    assert_eq!(
        transition,
        Some(Transition {
            from: State::Open,
            to: State::HalfOpen
        })
    );
    assert_eq!(s.admit(&c).unwrap(), (trial, None));
    for _ in 0..5 {
        assert_eq!(
            s.admit(&c).unwrap().0,
            Admission::Rejected { retry_after: None }
        );
    }
    s.release(&c, Permit::Trial { episode: 0 }).unwrap();
    assert_eq!(s.admit(&c).unwrap().0, trial, "the released slot is reused");
    assert_eq!(
        s.admit(&c).unwrap().0,
        Admission::Rejected { retry_after: None }
    );
}

#[test]
fn an_unreachable_server_is_unavailable_not_a_hang_or_panic() {
    // A port nothing listens on: bind, take the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = RedisStorage::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let (c, rule) = circuit("unreachable", |c| c.max_failures(1));
    let error = s.admit(&c).unwrap_err();
    assert_eq!(error.kind(), StorageErrorKind::Unavailable, "{error}");
    let error = s
        .record(&c, Permit::Normal, Outcome::Failure, &*rule)
        .unwrap_err();
    assert_eq!(error.kind(), StorageErrorKind::Unavailable, "{error}");
    assert!(format!("{s:?}").contains(&port.to_string()));

    let error = RedisStorage::open("not a url").unwrap_err();
    assert_eq!(error.kind(), StorageErrorKind::Other, "{error}");
}

#[test]
fn debug_output_does_not_show_the_password() {
    let s = RedisStorage::open("redis://:hunter2@127.0.0.1:1/").unwrap();
    let shown = format!("{s:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
}
