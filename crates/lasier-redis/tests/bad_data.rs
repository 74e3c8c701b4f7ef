//! Garbage in a circuit's keys, met through a breaker: text in a counter, a
//! key of the wrong type, a negative counter, a counter that would
//! overflow, an open flag that is not `1`. For both rules, sync and async:
//! the storage reports a `Corrupt` error, the policy handles it (the
//! default falls back to the in-process circuit), the caller gets its own
//! result, nothing panics, the garbage is deleted (the repair step) and the
//! next window starts clean once the breaker is back on Redis.
//!
//! And a leftover that is not garbage: a failure counter without a TTL (a
//! writer died between its `INCR` and its `EXPIRE`, as the Python original
//! can) belongs to a window that has ended. It starts again from 0, with a
//! TTL, instead of counting towards the next trip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use lasier_core::clock::ManualClock;
use lasier_core::keys::CircuitKeys;
use lasier_redis::Options;
use lasier_sync::{Counts, Error, State, StorageErrorKind};
use support::{async_storage, unique, Event, Events, Server};

/// The default probe interval, which the manual clock skips.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    MaxFailures,
    Percentage,
}

#[derive(Debug, Clone, Copy)]
enum Key {
    Failures,
    Requests,
    Open,
    Trials,
}

/// What a test writes into a key: `SET` of a value, or a key of another
/// type.
#[derive(Debug, Clone, Copy)]
enum Garbage {
    Set(&'static str),
    Hash,
    List,
}

const CASES: &[(Key, Garbage)] = &[
    (Key::Failures, Garbage::Set("many")),
    (Key::Failures, Garbage::Hash),
    (Key::Failures, Garbage::Set("-5")),
    (Key::Failures, Garbage::Set("9223372036854775807")),
    (Key::Failures, Garbage::Set("99999999999999999999")),
    (Key::Requests, Garbage::Set("many")),
    (Key::Requests, Garbage::List),
    (Key::Requests, Garbage::Set("-1")),
    (Key::Requests, Garbage::Set("9223372036854775807")),
    (Key::Open, Garbage::Hash),
    (Key::Open, Garbage::Set("yes")),
    (Key::Open, Garbage::Set("2")),
    (Key::Trials, Garbage::Set("some")),
    (Key::Trials, Garbage::Hash),
    (Key::Trials, Garbage::Set("-3")),
    // beyond the largest episode (2^32 - 1) x 65536 + permits
    (Key::Trials, Garbage::Set("1125899906842624")),
];

/// The cases that a rule's steps meet (the request counter is only read
/// by rules that count requests).
fn cases(rule: Rule) -> impl Iterator<Item = (Key, Garbage)> {
    CASES
        .iter()
        .copied()
        .filter(move |(key, _)| rule == Rule::Percentage || !matches!(key, Key::Requests))
}

fn key_name(name: &str, key: Key) -> String {
    let keys = CircuitKeys::new(name, None);
    match key {
        Key::Failures => keys.failures(),
        Key::Requests => keys.requests(),
        Key::Open => keys.open(),
        Key::Trials => keys.trials(),
    }
    .to_owned()
}

fn write(server: &Server, key: &str, garbage: Garbage) {
    match garbage {
        Garbage::Set(value) => server.cmd::<()>(&["SET", key, value]),
        Garbage::Hash => server.cmd::<()>(&["HSET", key, "f", "1"]),
        Garbage::List => server.cmd::<()>(&["RPUSH", key, "1"]),
    }
}

/// What every case must show once its first call is over.
fn check_first_call<E: std::fmt::Debug>(
    case: &str,
    server: &Server,
    key: &str,
    events: &Events,
    result: &Result<(), Error<E>>,
) {
    // The caller's own error, never a storage error (LocalFallback).
    assert!(matches!(result, Err(Error::Inner(_))), "{case}: {result:?}");
    let errors: Vec<_> = events
        .log()
        .into_iter()
        .filter_map(|(_, e)| match e {
            Event::StorageError(kind) => Some(kind),
            _ => None,
        })
        .collect();
    assert!(!errors.is_empty(), "{case}: no storage error reported");
    assert!(
        errors.iter().all(|k| *k == StorageErrorKind::Corrupt),
        "{case}: {errors:?}"
    );
    assert_eq!(
        events.count(|e| matches!(e, Event::FallbackEntered(StorageErrorKind::Corrupt))),
        1,
        "{case}"
    );
    // The repair step deleted the garbage, and only that.
    assert_eq!(
        server.cmd::<i64>(&["EXISTS", key]),
        0,
        "{case}: garbage left"
    );
}

/// A number in the failure counter without a TTL (and, for a rule that
/// counts requests, without a request counter) is a leftover of a window
/// that has ended, however large: the new window starts it again from 0, no
/// error to report (issue 17, part 3; see
/// `sync_a_failure_counter_without_ttl_starts_again_from_zero`).
fn starts_over(key: Key, garbage: Garbage) -> bool {
    matches!(key, Key::Failures)
        && matches!(garbage, Garbage::Set(v) if v.bytes().all(|b| b.is_ascii_digit()))
}

fn expected_counts(rule: Rule) -> Counts {
    match rule {
        Rule::MaxFailures => Counts::new(1, 0),
        Rule::Percentage => Counts::new(1, 1),
    }
}

#[test]
fn sync_breakers_repair_garbage_and_start_the_next_window_clean() {
    let server = server_or_skip!();
    for rule in [Rule::MaxFailures, Rule::Percentage] {
        for (key_kind, garbage) in cases(rule) {
            let case = format!("{garbage:?} at {key_kind:?}, {rule:?}, sync");
            let name = unique("bad-data-sync");
            let key = key_name(&name, key_kind);
            let clock = ManualClock::new();
            let events = Arc::new(Events::default());
            let builder = lasier_sync::CircuitBreaker::builder(&name)
                .storage(server.storage())
                .clock(clock.clone())
                .listener(Arc::clone(&events));
            let breaker = match rule {
                Rule::MaxFailures => builder.max_failures(5),
                Rule::Percentage => builder.percentage_failures(50, 10),
            }
            .build()
            .unwrap();
            write(server, &key, garbage);

            let result = breaker.call(|| Err::<(), _>("boom"));
            if starts_over(key_kind, garbage) {
                assert!(matches!(result, Err(Error::Inner("boom"))), "{case}");
                assert_eq!(
                    events.count(|e| matches!(e, Event::StorageError(_))),
                    0,
                    "{case}: a leftover to start again from 0, yet a storage error: {:?}",
                    events.log().into_iter().map(|(_, e)| e).collect::<Vec<_>>()
                );
                assert_eq!(breaker.counts().unwrap(), expected_counts(rule), "{case}");
                continue;
            }
            check_first_call(&case, server, &key, &events, &result);
            assert!(breaker.in_fallback(), "{case}");

            // One probe interval later the breaker asks Redis again: the
            // garbage is gone, the window starts from this call.
            clock.advance(PROBE_INTERVAL + Duration::from_millis(1));
            let result = breaker.call(|| Err::<(), _>("boom"));
            assert!(matches!(result, Err(Error::Inner("boom"))), "{case}");
            assert!(!breaker.in_fallback(), "{case}: still in fallback");
            assert_eq!(breaker.counts().unwrap(), expected_counts(rule), "{case}");
            breaker.reset().unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_breakers_repair_garbage_and_start_the_next_window_clean() {
    let server = server_or_skip!();
    let storage = async_storage(&server.url(), Options::default()).await;
    for rule in [Rule::MaxFailures, Rule::Percentage] {
        for (key_kind, garbage) in cases(rule) {
            let case = format!("{garbage:?} at {key_kind:?}, {rule:?}, async");
            let name = unique("bad-data-async");
            let key = key_name(&name, key_kind);
            let clock = ManualClock::new();
            let events = Arc::new(Events::default());
            let builder = lasier_async::CircuitBreaker::builder(&name)
                .storage(storage.clone())
                .clock(clock.clone())
                .listener(Arc::clone(&events));
            let breaker = match rule {
                Rule::MaxFailures => builder.max_failures(5),
                Rule::Percentage => builder.percentage_failures(50, 10),
            }
            .build()
            .unwrap();
            write(server, &key, garbage);

            let result = breaker.call(async { Err::<(), _>("boom") }).await;
            if starts_over(key_kind, garbage) {
                assert!(matches!(result, Err(Error::Inner("boom"))), "{case}");
                assert_eq!(
                    events.count(|e| matches!(e, Event::StorageError(_))),
                    0,
                    "{case}: a leftover to start again from 0, yet a storage error: {:?}",
                    events.log().into_iter().map(|(_, e)| e).collect::<Vec<_>>()
                );
                assert_eq!(
                    breaker.counts().await.unwrap(),
                    expected_counts(rule),
                    "{case}"
                );
                continue;
            }
            check_first_call(&case, server, &key, &events, &result);
            assert!(breaker.in_fallback(), "{case}");

            clock.advance(PROBE_INTERVAL + Duration::from_millis(1));
            let result = breaker.call(async { Err::<(), _>("boom") }).await;
            assert!(matches!(result, Err(Error::Inner("boom"))), "{case}");
            assert!(!breaker.in_fallback(), "{case}: still in fallback");
            assert_eq!(
                breaker.counts().await.unwrap(),
                expected_counts(rule),
                "{case}"
            );
            breaker.reset().await.unwrap();
        }
    }
}

/// A failure counter without a TTL, and the counts that must follow the
/// first failure counted on it: `percentage_failures(50, 2)` on a stale 5
/// without a request counter, and `max_failures(3)` on a stale 2 (which,
/// were it counted, would open the circuit).
const STALE: &[(Rule, &str, Counts)] = &[
    (Rule::Percentage, "5", Counts::new(1, 1)),
    (Rule::MaxFailures, "2", Counts::new(1, 0)),
];

fn stale_case(rule: Rule, stale: &str) -> String {
    format!("{rule:?}, a failure counter of {stale} without TTL")
}

/// What every stale-counter case must show once its failure is counted.
fn check_stale(
    case: &str,
    server: &Server,
    name: &str,
    state: State,
    counts: Counts,
    want: Counts,
) {
    assert_eq!(
        state,
        State::Closed,
        "{case}: one failure opened the circuit (counts now {counts:?})"
    );
    assert_eq!(counts, want, "{case}: counted on top of the stale value");
    let pttl: i64 = server.cmd(&["PTTL", name]);
    assert!(pttl > 0, "{case}: the failure counter's PTTL is {pttl}");
}

#[test]
fn sync_a_failure_counter_without_ttl_starts_again_from_zero() {
    let server = server_or_skip!();
    for &(rule, stale, want) in STALE {
        let case = stale_case(rule, stale);
        let name = unique("stale-sync");
        let builder = lasier_sync::CircuitBreaker::builder(&name).storage(server.storage());
        let breaker = match rule {
            Rule::MaxFailures => builder.max_failures(3),
            Rule::Percentage => builder.percentage_failures(50, 2),
        }
        .build()
        .unwrap();
        server.cmd::<()>(&["SET", &name, stale]);

        let result = breaker.call(|| Err::<(), _>("boom"));
        assert!(
            matches!(result, Err(Error::Inner("boom"))),
            "{case}: {result:?}"
        );
        let (state, counts) = (breaker.state().unwrap(), breaker.counts().unwrap());
        check_stale(&case, server, &name, state, counts, want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_a_failure_counter_without_ttl_starts_again_from_zero() {
    let server = server_or_skip!();
    let storage = async_storage(&server.url(), Options::default()).await;
    for &(rule, stale, want) in STALE {
        let case = stale_case(rule, stale);
        let name = unique("stale-async");
        let builder = lasier_async::CircuitBreaker::builder(&name).storage(storage.clone());
        let breaker = match rule {
            Rule::MaxFailures => builder.max_failures(3),
            Rule::Percentage => builder.percentage_failures(50, 2),
        }
        .build()
        .unwrap();
        server.cmd::<()>(&["SET", &name, stale]);

        let result = breaker.call(async { Err::<(), _>("boom") }).await;
        assert!(
            matches!(result, Err(Error::Inner("boom"))),
            "{case}: {result:?}"
        );
        let (state, counts) = (
            breaker.state().await.unwrap(),
            breaker.counts().await.unwrap(),
        );
        check_stale(&case, server, &name, state, counts, want);
    }
}
