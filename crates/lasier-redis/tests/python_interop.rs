//! One circuit shared with the Python original: Python `lasier` (with
//! redis-py) runs in a subprocess against this binary's redis-server, with
//! the same circuit names, and each side sees what the other wrote. Where
//! they differ (half-open, which only lasier-rs has), a test shows what the
//! original does, and the recipe that makes a Python service respect the
//! half-open bound.
//!
//! Needs `python3` with `lasier` and `redis` installed
//! (`pip install lasier redis`); without them the tests say so loudly and
//! pass without running, unless `LASIER_REQUIRE_REDIS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use lasier_sync::{CircuitBreaker, Counts, Error, State};
use support::{unique, Server};

/// The recipe for a Python service that must respect lasier-rs' half-open
/// bound (Python `lasier` itself ignores the half-open marker): it also
/// treats the circuit as open while the marker exists. Such a service never
/// runs a trial itself.
const PYTHON_HALF_OPEN_AWARE: &str = r#"
from lasier.circuit_breaker.sync import CircuitBreaker


class HalfOpenAwareCircuitBreaker(CircuitBreaker):
    """Rejects calls while a lasier-rs breaker holds the circuit half-open."""

    def is_circuit_open(self) -> bool:
        marker = "lasier:half_open:" + self.rule.failure_cache_key
        # self.cache.cache: the redis.Redis client under lasier's adapter
        return super().is_circuit_open() or bool(self.cache.cache.exists(marker))
"#;

/// A Python `lasier` service: runs the calls given as arguments (`ok`,
/// `fail`) through a `CircuitBreaker` on the circuit `name`, then prints
/// what each call gave and what the breaker reads from Redis. Runs after
/// [`PYTHON_HALF_OPEN_AWARE`]: the rule `max+half-open-aware` is `max` with
/// that recipe's breaker.
const PYTHON: &str = r#"
import sys
import redis
from lasier.adapters.caches import RedisAdapter
from lasier.circuit_breaker.sync import CircuitBreaker
from lasier.circuit_breaker.rules import MaxFailuresRule, PercentageFailuresRule

class Open(Exception):
    pass

class Boom(Exception):
    pass

port, name, rule, calls = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
rule, _, flavour = rule.partition("+")
if flavour == "half-open-aware":
    CircuitBreaker = HalfOpenAwareCircuitBreaker
cache = RedisAdapter(redis.Redis(host="127.0.0.1", port=port))
if rule == "max":
    rule = MaxFailuresRule(max_failures=3, failure_cache_key=name)
else:
    rule = PercentageFailuresRule(
        max_failures_percentage=50,
        failure_cache_key=name,
        min_accepted_requests=4,
        request_cache_key=name + "_requests",
    )
breaker = CircuitBreaker(
    rule=rule, cache=cache, failure_exception=Open, failure_timeout=60, circuit_timeout=60
)
results = []
for call in calls:
    try:
        with breaker:
            if call == "fail":
                raise Boom()
        results.append("ok")
    except Open:
        results.append("open")
    except Boom:
        results.append("boom")
print("results=" + ",".join(results))
print("open=" + str(breaker.is_circuit_open()))
print("failures=" + str(breaker.get_total_failures()))
print("requests=" + str(breaker.get_total_requests()))
"#;

/// Whether Python `lasier` is there; skips loudly (or fails) if not.
fn python_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let found = Command::new("python3")
            .args(["-c", "import lasier, redis"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            support::skip(
                "python3 with the `lasier` and `redis` packages is missing \
                 (pip install lasier redis): the Python interop tests",
            );
        }
        found
    })
}

/// What the Python service said.
#[derive(Debug)]
struct Python {
    results: Vec<String>,
    open: bool,
    counts: Counts,
}

fn python(server: &Server, name: &str, rule: &str, calls: &[&str]) -> Python {
    let output = Command::new("python3")
        .args(["-c", &format!("{PYTHON_HALF_OPEN_AWARE}{PYTHON}")])
        .args([&server.port().to_string(), name, rule])
        .args(calls)
        .output()
        .expect("running python3");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let fields: HashMap<&str, &str> = stdout
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect();
    Python {
        results: fields["results"]
            .split(',')
            .filter(|r| !r.is_empty())
            .map(String::from)
            .collect(),
        open: fields["open"] == "True",
        counts: Counts::new(
            fields["failures"].parse().unwrap(),
            fields["requests"].parse().unwrap(),
        ),
    }
}

fn rust(server: &Server, name: &str, rule: &str) -> CircuitBreaker {
    let builder = CircuitBreaker::builder(name)
        .storage(server.storage())
        .failure_timeout(Duration::from_secs(60))
        .circuit_timeout(Duration::from_secs(60));
    match rule {
        "max" => builder.max_failures(3),
        _ => builder.percentage_failures(50, 4),
    }
    .build()
    .unwrap()
}

fn fail(b: &CircuitBreaker) -> Result<(), Error<&'static str>> {
    b.call(|| Err("boom"))
}

fn ok(b: &CircuitBreaker) -> Result<(), Error<&'static str>> {
    b.call(|| Ok(()))
}

#[test]
fn python_opens_the_circuit_and_rust_sees_it_open() {
    let server = server_or_skip!();
    if !python_available() {
        return;
    }
    for rule in ["max", "percentage"] {
        let name = unique("py-opens");
        let calls: &[&str] = match rule {
            "max" => &["fail", "fail", "fail"],
            _ => &["ok", "ok", "fail", "fail", "fail"],
        };
        let py = python(server, &name, rule, calls);
        assert_eq!(
            py.results.last().map(String::as_str),
            Some("open"),
            "{rule}: {py:?}"
        );
        assert!(py.open, "{rule}");

        let b = rust(server, &name, rule);
        assert_eq!(b.state().unwrap(), State::Open, "{rule}");
        let error = ok(&b).unwrap_err();
        assert!(error.is_open(), "{rule}");
        // Python set the flag with a TTL in seconds; Rust reads it in ms.
        let left = error.retry_after().expect("the time left");
        assert!(
            left > Duration::ZERO && left <= Duration::from_secs(60),
            "{left:?}"
        );
        // A flag written by Python carries no half-open marker: when it
        // expires, the circuit is closed, as in the original.
        assert_eq!(
            server.cmd::<i64>(&["EXISTS", &format!("lasier:half_open:{name}")]),
            0
        );
    }
}

#[test]
fn rust_opens_the_circuit_and_python_sees_it_open() {
    let server = server_or_skip!();
    if !python_available() {
        return;
    }
    for rule in ["max", "percentage"] {
        let name = unique("rust-opens");
        let b = rust(server, &name, rule);
        if rule == "percentage" {
            ok(&b).unwrap();
            ok(&b).unwrap();
        }
        while b.state().unwrap() == State::Closed {
            let _ = fail(&b);
        }
        assert_eq!(b.state().unwrap(), State::Open);
        let py = python(server, &name, rule, &["ok", "fail"]);
        assert_eq!(py.results, ["open", "open"], "{rule}: {py:?}");
        assert!(py.open);
        assert_eq!(
            py.counts,
            Counts::default(),
            "the trip cleared the counters"
        );
    }
}

#[test]
fn counters_written_by_one_are_read_and_continued_by_the_other() {
    let server = server_or_skip!();
    if !python_available() {
        return;
    }
    // PercentageFailures(50 %, more than 4 requests): both counters.
    let name = unique("shared-counts");
    let b = rust(server, &name, "percentage");
    let py = python(server, &name, "percentage", &["ok", "fail"]);
    assert_eq!(py.results, ["ok", "boom"]);
    assert_eq!(py.counts, Counts::new(1, 2));
    assert_eq!(
        b.counts().unwrap(),
        Counts::new(1, 2),
        "Rust reads Python's counters"
    );

    ok(&b).unwrap();
    let _ = fail(&b);
    let py = python(server, &name, "percentage", &[]);
    assert_eq!(py.counts, Counts::new(2, 4), "Python reads Rust's counters");
    assert!(!py.open);

    // The 5th request and 3rd failure, by Python: 60 % of 5 > 4, open.
    let py = python(server, &name, "percentage", &["fail"]);
    assert_eq!(py.results, ["open"]);
    assert_eq!(b.state().unwrap(), State::Open);

    // MaxFailures(3): failures from both sides add up to one trip.
    let name = unique("shared-max");
    let b = rust(server, &name, "max");
    let _ = fail(&b);
    let py = python(server, &name, "max", &["fail"]);
    assert_eq!(py.counts.failures, 2);
    assert_eq!(b.counts().unwrap().failures, 2);
    let _ = fail(&b);
    assert_eq!(b.state().unwrap(), State::Open);
    assert!(python(server, &name, "max", &[]).open);
}

/// Issue 17, part 5: a mixed fleet. While a Rust breaker holds the circuit
/// half-open (open flag gone, half-open marker present, its one trial in
/// flight), a stock Python `lasier` service passes its calls: the original
/// knows nothing of half-open, by design of a fleet that mixes both. A
/// Python service that must respect the bound uses the recipe
/// ([`PYTHON_HALF_OPEN_AWARE`]): its calls are rejected while the marker
/// exists and pass again once the Rust trial closed the circuit.
#[test]
fn python_ignores_half_open_and_the_recipe_respects_it() {
    let server = server_or_skip!();
    if !python_available() {
        return;
    }
    let name = unique("py-half-open");
    let marker = format!("lasier:half_open:{name}");
    let opener = rust(server, &name, "max");
    for _ in 0..3 {
        let _ = fail(&opener);
    }
    assert_eq!(opener.state().unwrap(), State::Open);
    // The open time is over: what the flag's TTL does, without the wait.
    server.cmd::<()>(&["DEL", &format!("circuit_{name}")]);
    // Another Rust process (the opener trusts the open state it read for a
    // while) takes the one trial, and holds it.
    let b = rust(server, &name, "max");
    assert_eq!(b.state().unwrap(), State::HalfOpen);
    let trial = b.enter().unwrap();
    assert!(b.enter().unwrap_err().is_open(), "one trial at a time");

    let stock = python(server, &name, "max", &["ok", "ok", "ok"]);
    assert_eq!(
        stock.results,
        ["ok", "ok", "ok"],
        "stock Python lasier while half-open: {stock:?}"
    );
    assert!(!stock.open, "stock Python reads the circuit closed");

    let aware = python(server, &name, "max+half-open-aware", &["ok", "ok", "ok"]);
    assert_eq!(
        aware.results,
        ["open", "open", "open"],
        "the recipe while half-open (marker PTTL {}): {aware:?}",
        server.cmd::<i64>(&["PTTL", &marker])
    );
    assert!(aware.open);

    trial.success();
    assert_eq!(b.state().unwrap(), State::Closed, "the Rust trial closes");
    assert_eq!(
        server.cmd::<i64>(&["EXISTS", &marker]),
        0,
        "closing deletes the marker"
    );
    let aware = python(server, &name, "max+half-open-aware", &["ok", "ok", "ok"]);
    assert_eq!(
        aware.results,
        ["ok", "ok", "ok"],
        "the recipe once closed: {aware:?}"
    );
    assert!(!aware.open);
}

/// Sync mode (`sync_interval`) beside Python services: Python's per-call
/// writes and the Rust breaker's batched ones add up in one window, and
/// each side trips on the other's counts.
#[test]
fn a_rust_breaker_in_sync_mode_shares_one_window_with_python() {
    let server = server_or_skip!();
    if !python_available() {
        return;
    }
    let name = unique("sync-mode-py");
    let b = CircuitBreaker::builder(name.as_str())
        .storage(server.storage())
        .percentage_failures(50, 4)
        .failure_timeout(Duration::from_secs(60))
        .circuit_timeout(Duration::from_secs(60))
        .sync_interval(Duration::from_secs(10))
        .build()
        .unwrap();
    ok(&b).unwrap();
    // The storage's watch subscribes to the channel of changes, and has the
    // breaker sync once then (a change made before it listened would be
    // missed): that sync pushes the first request.
    support::eventually("the watch subscribed", || {
        server
            .cmd::<(String, u64)>(&["PUBSUB", "NUMSUB", lasier_redis::CHANGES_CHANNEL])
            .1
            > 0
    });
    support::eventually("the first request pushed", || {
        python(server, &name, "percentage", &[]).counts == Counts::new(0, 1)
    });
    ok(&b).unwrap();
    let _ = fail(&b);
    // Python sees nothing more of it until the Rust breaker syncs
    let py = python(server, &name, "percentage", &["ok"]);
    assert_eq!(py.counts, Counts::new(0, 2));
    b.flush().unwrap();
    let py = python(server, &name, "percentage", &[]);
    assert_eq!(py.counts, Counts::new(1, 4), "Python reads the batch");
    // Python's 5th request and 2nd failure: 40 %, closed; its 6th and 3rd:
    // 50 % of 6 > 4 requests, open for both
    let py = python(server, &name, "percentage", &["fail", "fail"]);
    assert_eq!(py.results, ["boom", "open"], "{py:?}");
    b.flush().unwrap();
    assert!(ok(&b).unwrap_err().is_open(), "Rust's mirror sees it open");

    // MaxFailures(3): one failure from Python, two from Rust, pushed by the
    // failure that reaches the rule as Rust knows it.
    let name = unique("sync-mode-py-max");
    let b = CircuitBreaker::builder(name.as_str())
        .storage(server.storage())
        .max_failures(3)
        .failure_timeout(Duration::from_secs(60))
        .circuit_timeout(Duration::from_secs(60))
        .sync_interval(Duration::from_secs(10))
        .build()
        .unwrap();
    ok(&b).unwrap();
    let py = python(server, &name, "max", &["fail"]);
    assert_eq!(py.counts.failures, 1);
    b.flush().unwrap();
    let _ = fail(&b);
    let _ = fail(&b);
    assert_eq!(b.state().unwrap(), State::Open);
    assert!(python(server, &name, "max", &[]).open);
}
