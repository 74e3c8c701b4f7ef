//! The `lasier` command end to end: the built binary against a real
//! redis-server that this test binary starts (lasier-redis-harness), with
//! real breakers (lasier-sync on RedisStorage) and Python `lasier` on the
//! other side.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lasier_redis::{Options, RedisStorage};
use lasier_redis_harness::server_or_skip;
use lasier_redis_harness::ServerOptions;
use lasier_sync::{CircuitBreaker, Error, State};
use support::*;

/// A storage (a process) of its own, patient: the tests run lasier
/// processes in parallel on two cores.
fn storage(server: &RedisServer) -> RedisStorage {
    RedisStorage::open_with_options(
        server.url().as_str(),
        Options::new().timeout(Duration::from_secs(5)),
    )
    .unwrap()
}

/// A breaker of the fleet, on a storage of its own.
fn breaker(server: &RedisServer, name: &str) -> CircuitBreaker {
    registered(
        server,
        CircuitBreaker::builder(name)
            .storage(storage(server))
            .max_failures(1)
            .circuit_timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
    )
}

/// A breaker that asks the store whenever it would reject on an open
/// state it read: it sees a change made by hand at its next call.
fn asking_breaker(server: &RedisServer, name: &str) -> CircuitBreaker {
    registered(
        server,
        CircuitBreaker::builder(name)
            .storage(storage(server))
            .max_failures(1)
            .circuit_timeout(Duration::from_secs(60))
            .max_staleness(Duration::ZERO)
            .build()
            .unwrap(),
    )
}

/// `b`, once its entry in the store's directory is written (a background
/// thread writes it when the breaker is built).
fn registered(server: &RedisServer, b: CircuitBreaker) -> CircuitBreaker {
    let key = format!("lasier:circuit:{}", b.name());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while server.cmd::<i64>(&["EXISTS", &key]) == 0 {
        assert!(std::time::Instant::now() < deadline, "{key} never written");
        std::thread::sleep(Duration::from_millis(5));
    }
    b
}

fn trip(b: &CircuitBreaker) {
    assert!(matches!(
        b.call(|| Err::<(), _>("boom")),
        Err(Error::Inner("boom"))
    ));
    assert_eq!(b.state().unwrap(), State::Open);
    let m = b.metrics();
    assert!(!m.in_fallback, "{m:?}");
}

fn exists(server: &RedisServer, key: &str) -> bool {
    server.cmd::<i64>(&["EXISTS", key]) == 1
}

/// Writes a directory entry by hand, as a registering breaker will.
fn register(server: &RedisServer, name: &str, fields: &[(&str, &str)]) {
    let key = format!("lasier:circuit:{name}");
    let mut args = vec!["HSET", key.as_str()];
    for (field, value) in fields {
        args.push(field);
        args.push(value);
    }
    server.cmd::<i64>(&args);
    server.cmd::<i64>(&["PEXPIRE", &key, "600000"]);
}

#[test]
fn list_shows_every_kind_of_circuit_as_a_table_and_as_json() {
    let server = server_or_skip!();
    let url = server.url();
    let tripped = unique("tripped");
    let forced = unique("forced");
    let disabled = unique("disabled");
    trip(&breaker(server, &tripped));
    breaker(server, &forced).force_open().unwrap();
    breaker(server, &disabled).disable().unwrap();

    let table = ok(&lasier(&url, &["list"]));
    let header = table.lines().next().unwrap();
    for column in [
        "NAME",
        "STATE",
        "FAIL/REQ",
        "OPEN FOR",
        "HALF-OPEN",
        "MANUAL",
        "LAST SEEN",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} not listed:\n{table}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    let open = row(&tripped);
    assert_eq!(open[1], "open", "{open:?}");
    assert!(open[3].ends_with('s'), "time left open: {open:?}");
    assert_eq!(row(&forced)[1..=3], ["forced-open", "0/-", "until"]);
    assert!(row(&forced).contains(&"forced-open"));
    assert_eq!(row(&disabled)[1], "disabled");

    let open = listed(&url, &tripped).unwrap();
    assert_eq!(open["state"], "open");
    let left = open["open_for_ms"].as_u64().unwrap();
    assert!(left > 50_000 && left <= 60_000, "{open}");
    assert_eq!(open["manual"], serde_json::Value::Null);
    assert!(open["found_by"]
        .as_array()
        .unwrap()
        .contains(&"open_flag".into()));
    let forced = listed(&url, &forced).unwrap();
    assert_eq!(forced["state"], "forced_open");
    assert_eq!(forced["manual"], "forced_open");
    assert_eq!(forced["open_for_ms"], serde_json::Value::Null);
    let disabled = listed(&url, &disabled).unwrap();
    assert_eq!(disabled["state"], "disabled");
    assert_eq!(disabled["manual"], "disabled");
}

#[test]
fn a_half_open_circuit_shows_its_permits_taken() {
    let server = server_or_skip!();
    let name = unique("half-open");
    let b = CircuitBreaker::builder(&name)
        .storage(storage(server))
        .max_failures(1)
        .circuit_timeout(Duration::from_millis(50))
        .half_open_max_calls(2)
        .build()
        .unwrap();
    trip(&b);
    eventually("half-open", || b.state().unwrap() == State::HalfOpen);
    // One trial admitted and still running: one permit of the lease taken.
    let guard = b.enter().unwrap();
    let seen = listed(&server.url(), &name).unwrap();
    assert_eq!(seen["state"], "half_open", "{seen}");
    assert_eq!(seen["half_open_permits_taken"], 1, "{seen}");
    guard.success();
}

#[test]
fn a_registration_made_by_hand_is_listed_with_its_rule_and_last_seen() {
    let server = server_or_skip!();
    let url = server.url();
    let name = unique("registered");
    let seen = (now_ms() - 5_000).to_string();
    register(
        server,
        &name,
        &[
            ("rule", "percentage_failures(50, 20)"),
            ("failure_timeout_ms", "60000"),
            ("circuit_timeout_ms", "30000"),
            ("half_open_max_calls", "3"),
            ("half_open_successes", "2"),
            ("window", "fixed"),
            ("seen_ms", &seen),
        ],
    );
    let entry = listed(&url, &name).expect("a registered circuit is listed");
    assert_eq!(entry["state"], "closed");
    assert_eq!(entry["failures"], 0);
    assert_eq!(entry["requests"], 0, "the rule counts requests");
    assert_eq!(entry["half_open_max_calls"], 3);
    assert_eq!(entry["seen_ms"].as_u64().unwrap().to_string(), seen);
    let ago = entry["seen_ago_ms"].as_u64().unwrap();
    assert!((5_000..60_000).contains(&ago), "{entry}");
    let registration = &entry["registration"];
    assert_eq!(registration["rule"], "percentage_failures(50, 20)");
    assert_eq!(registration["circuit_timeout_ms"], 30_000);
    assert_eq!(registration["window"], "fixed");
    assert_eq!(entry["found_by"], serde_json::json!(["directory"]));

    let table = ok(&lasier(&url, &["list"]));
    let row = table.lines().find(|l| l.starts_with(&name)).unwrap();
    assert!(row.contains(" ago"), "last seen: {row}");
    assert!(row.contains("0/0"), "{row}");

    let status = ok(&lasier(&url, &["status", &name]));
    assert!(
        status.contains("rule:              percentage_failures(50, 20)"),
        "{status}"
    );
    assert!(status.contains("circuit timeout:   30.0s"), "{status}");
    assert!(status.contains("last seen:"), "{status}");
}

#[test]
fn a_bad_entry_shows_dashes_and_never_fails_the_listing() {
    let server = server_or_skip!();
    let url = server.url();
    let garbage = unique("garbage");
    register(
        server,
        &garbage,
        &[
            ("rule", "my own rule"),
            ("failure_timeout_ms", "soon"),
            ("half_open_max_calls", "-1"),
            ("window", "sliding(zero)"),
            ("seen_ms", "yesterday"),
        ],
    );
    // A directory key of another type, and text where the open flag is.
    let wrong_type = unique("wrong-type");
    server.cmd::<()>(&[
        "SET",
        &format!("lasier:circuit:{wrong_type}"),
        "x",
        "PX",
        "600000",
    ]);
    let corrupt = unique("corrupt");
    server.cmd::<()>(&[
        "SET",
        &format!("circuit_{corrupt}"),
        "maybe",
        "PX",
        "600000",
    ]);

    let entry = listed(&url, &garbage).unwrap();
    assert_eq!(entry["state"], "closed");
    assert_eq!(entry["seen_ms"], serde_json::Value::Null);
    assert_eq!(entry["registration"]["rule"], "my own rule");
    assert_eq!(entry["registration"]["window"], serde_json::Value::Null);
    let wrong = listed(&url, &wrong_type).unwrap();
    assert_eq!(wrong["state"], "closed", "{wrong}");
    let bad = listed(&url, &corrupt).unwrap();
    assert_eq!(bad["state"], serde_json::Value::Null, "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("corrupt"), "{bad}");

    let table = ok(&lasier(&url, &["list"]));
    let row = table.lines().find(|l| l.starts_with(&garbage)).unwrap();
    assert!(row.trim_end().ends_with('-'), "last seen unknown: {row}");
    let row = table.lines().find(|l| l.starts_with(&corrupt)).unwrap();
    assert!(row.contains("error"), "{row}");
}

#[test]
fn status_of_a_circuit_and_of_a_missing_name() {
    let server = server_or_skip!();
    let url = server.url();
    let name = unique("status");
    trip(&breaker(server, &name));
    let text = ok(&lasier(&url, &["status", &name]));
    assert!(text.contains("state:             open"), "{text}");
    // The breaker registered itself when built: its rule, and when.
    assert!(
        text.contains("rule:              max_failures(1)"),
        "{text}"
    );
    assert!(text.contains("ms ago") || text.contains("s ago"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&lasier(&url, &["status", &name, "--json"]))).unwrap();
    assert_eq!(json["name"], name.as_str());
    assert_eq!(json["state"], "open");

    // Known by its failure counter only (not discoverable, but by name).
    let counted = unique("counted");
    server.cmd::<()>(&["SET", &counted, "2", "PX", "600000"]);
    let json: serde_json::Value =
        serde_json::from_str(&ok(&lasier(&url, &["status", &counted, "--json"]))).unwrap();
    assert_eq!(json["failures"], 2);

    let missing = unique("missing");
    let line = failed(&lasier(&url, &["status", &missing]), 3);
    assert!(
        line.contains(&format!("no circuit named \"{missing}\"")),
        "{line}"
    );
    failed(&lasier(&url, &["status", &missing, "--json"]), 3);
    failed(&lasier(&url, &["close", &missing, "--yes"]), 3);
    failed(&lasier(&url, &["reset", &missing, "--yes"]), 3);
}

#[test]
fn an_unreachable_store_is_exit_code_2_in_one_line_at_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    for args in [
        &["list"][..],
        &["status", "x"],
        &["open", "x", "--yes"],
        &["watch", "--count", "1"],
    ] {
        let began = Instant::now();
        let output = lasier(&url, args);
        let took = began.elapsed();
        let line = failed(&output, 2);
        assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
        assert!(line.contains("cannot be reached"), "{line}");
        assert!(took < Duration::from_secs(3), "{args:?} took {took:?}");
    }
    // A server that takes connections and never answers: the timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", silent.local_addr().unwrap());
    let began = Instant::now();
    let line = failed(&lasier(&url, &["--timeout", "200ms", "list"]), 2);
    assert!(line.contains("did not answer in time"), "{line}");
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
    drop(silent);
    // Several URLs: seed nodes of a cluster, none of which answers.
    let output = command()
        .args(["--url", &url, "--url", &url, "list"])
        .output()
        .unwrap();
    failed(&output, 2);
}

#[test]
fn usage_errors_are_exit_code_1() {
    let output = command().arg("list").output().unwrap();
    let line = failed(&output, 1);
    assert!(line.contains("LASIER_REDIS_URL"), "{line}");
    let output = command()
        .args(["--url", "nonsense", "list"])
        .output()
        .unwrap();
    assert!(failed(&output, 1).contains("invalid Redis URL"));
    let output = command()
        .args(["--url", "redis://x", "frobnicate"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let output = command().arg("--help").output().unwrap();
    let help = ok(&output);
    assert!(help.contains("Exit codes:"), "{help}");
    assert!(help.contains("4  the change was not confirmed"), "{help}");
}

#[test]
fn the_store_can_come_from_the_environment() {
    let server = server_or_skip!();
    let name = unique("from-env");
    breaker(server, &name).force_open().unwrap();
    let output = command()
        .env("LASIER_REDIS_URL", server.url())
        .args(["status", &name, "--json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&ok(&output)).unwrap();
    assert_eq!(json["state"], "forced_open");
    // Several URLs of a server that is not a cluster node.
    let output = command()
        .args(["--url", &server.url(), "--url", &server.url(), "list"])
        .output()
        .unwrap();
    assert!(failed(&output, 1).contains("cluster support disabled"));
}

#[test]
fn every_change_with_yes_is_what_the_fleet_sees() {
    let server = server_or_skip!();
    let url = server.url();
    let name = unique("steered");
    let fleet = asking_breaker(server, &name);
    trip(&fleet);

    let out = ok(&lasier(&url, &["open", &name, "--yes"]));
    assert_eq!(out, format!("{name}: forced open (was open)\n"));
    assert_eq!(fleet.state().unwrap(), State::ForcedOpen);

    let out = ok(&lasier(&url, &["close", &name, "--yes"]));
    assert_eq!(out, format!("{name}: closed (was forced open)\n"));
    assert_eq!(fleet.state().unwrap(), State::Closed);

    let out = ok(&lasier(&url, &["disable", &name, "-y"]));
    // (the breaker's own registration keeps it in the store's directory)
    assert_eq!(out, format!("{name}: disabled (was closed)\n"));
    assert_eq!(fleet.state().unwrap(), State::Disabled);
    for _ in 0..3 {
        assert!(matches!(
            fleet.call(|| Err::<(), _>("boom")),
            Err(Error::Inner(_))
        ));
    }
    assert_eq!(fleet.state().unwrap(), State::Disabled, "never opens");

    let out = ok(&lasier(&url, &["enable", &name, "--yes"]));
    assert_eq!(out, format!("{name}: enabled; now closed (was disabled)\n"));
    assert_eq!(fleet.state().unwrap(), State::Closed);
    // enable does nothing to a circuit that is not disabled
    fleet.force_open().unwrap();
    let out = ok(&lasier(&url, &["enable", &name, "--yes"]));
    assert!(out.contains("not disabled"), "{out}");
    assert_eq!(fleet.state().unwrap(), State::ForcedOpen);

    let out = ok(&lasier(&url, &["reset", &name, "--yes"]));
    assert!(out.contains("reset, its keys deleted"), "{out}");
    for key in [
        name.clone(),
        format!("circuit_{name}"),
        format!("lasier:mode:{name}"),
        format!("lasier:half_open:{name}"),
    ] {
        assert!(!exists(server, &key), "{key} left");
    }
    assert_eq!(fleet.state().unwrap(), State::Closed);
}

#[test]
fn a_refused_confirmation_changes_nothing() {
    let server = server_or_skip!();
    let url = server.url();
    let name = unique("refused");
    let fleet = breaker(server, &name);
    trip(&fleet);
    // Without a terminal, even a "y" piped in does not confirm.
    for (args, typed) in [
        (["close", name.as_str()], "n\n"),
        (["close", name.as_str()], "y\n"),
        (["reset", name.as_str()], ""),
        (["disable", name.as_str()], "n\n"),
    ] {
        let line = failed(&lasier_with_stdin(&url, &args, typed), 4);
        assert!(line.contains("pass --yes"), "{line}");
        assert_eq!(fleet.state().unwrap(), State::Open, "{args:?}");
    }
    assert!(exists(server, &format!("circuit_{name}")));
    if !script_available() {
        return;
    }
    // On a terminal: it asks, and "n" (or anything but y/yes) refuses.
    for typed in ["n\n", "\n", "nope\n"] {
        let output = lasier_on_a_terminal(&url, &["close", &name], typed);
        assert_eq!(output.status.code(), Some(4), "{}", stdout(&output));
        let screen = stdout(&output);
        assert!(
            screen.contains(&format!("Close \"{name}\" (now open)?")),
            "{screen}"
        );
        assert!(screen.contains("[y/N]"), "{screen}");
        assert!(
            screen.contains("lasier: not confirmed; nothing changed"),
            "{screen}"
        );
        assert_eq!(fleet.state().unwrap(), State::Open);
    }
    let output = lasier_on_a_terminal(&url, &["close", &name], "y\n");
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert_eq!(fleet.state().unwrap(), State::Closed);
}

#[test]
fn open_of_a_name_nothing_registered_warns_and_works() {
    let server = server_or_skip!();
    let url = server.url();
    let name = unique("not-yet");
    let output = lasier(&url, &["open", &name, "--yes"]);
    let out = ok(&output);
    assert_eq!(out, format!("{name}: forced open (was not in the store)\n"));
    let warning = stderr(&output);
    assert_eq!(warning.lines().count(), 1, "{warning}");
    assert!(
        warning.starts_with("lasier: warning: no circuit named"),
        "{warning}"
    );
    // The service starting afterwards rejects at once.
    let late = breaker(server, &name);
    let error = late.call(|| Ok::<_, &str>(1)).unwrap_err();
    assert!(error.is_open(), "{error:?}");
    assert_eq!(listed(&url, &name).unwrap()["state"], "forced_open");
}

#[test]
fn a_close_reaches_a_running_rust_breaker() {
    let server = server_or_skip!();
    let url = server.url();
    let name = unique("close-reaches");
    // One that asks the store whenever it rejects, and one that trusts
    // an open state it read for a second (the default).
    let asking = asking_breaker(server, &name);
    let trusting = breaker(server, &name);
    trip(&asking);
    assert!(trusting.call(|| Ok::<_, &str>(1)).unwrap_err().is_open());
    assert!(asking.call(|| Ok::<_, &str>(1)).unwrap_err().is_open());

    ok(&lasier(&url, &["close", &name, "--yes"]));
    assert_eq!(
        asking.call(|| Ok::<_, &str>(7)).unwrap(),
        7,
        "its next call passes"
    );
    let began = Instant::now();
    eventually("the default breaker passes again", || {
        trusting.call(|| Ok::<_, &str>(7)).is_ok()
    });
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
}

#[test]
fn watch_refreshes_the_table_or_prints_one_json_document_each_time() {
    let server = server_or_skip!();
    let url = server.url();
    let name = unique("watched");
    breaker(server, &name).force_open().unwrap();
    let began = Instant::now();
    let out = ok(&lasier(
        &url,
        &["watch", "--interval", "200ms", "--count", "3"],
    ));
    assert!(began.elapsed() >= Duration::from_millis(400));
    assert_eq!(out.matches("NAME").count(), 3, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with(&name)).count(),
        3,
        "{out}"
    );
    assert!(
        !out.contains('\x1b'),
        "no ANSI codes when stdout is not a terminal"
    );

    let out = ok(&lasier(
        &url,
        &["watch", "--json", "--interval", "100ms", "--count", "2"],
    ));
    let documents: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(documents.len(), 2);
    for doc in documents {
        let circuits = doc["circuits"].as_array().unwrap();
        assert!(circuits.iter().any(|c| c["name"] == name.as_str()));
    }
    if script_available() {
        let output =
            lasier_on_a_terminal(&url, &["watch", "--interval", "100ms", "--count", "2"], "");
        let screen = stdout(&output);
        assert_eq!(screen.matches("\x1b[H\x1b[2J").count(), 2, "{screen:?}");
    }
}

/// Whether Python `lasier` is there; skips loudly (or fails with
/// LASIER_REQUIRE_REDIS=1) if not.
fn python_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let found = Command::new("python3")
            .args(["-c", "import lasier, redis"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            skip(
                "python3 with the `lasier` and `redis` packages is missing \
                 (pip install lasier redis): the Python interop test of lasier-cli",
            );
        }
        found
    })
}

/// Trips the circuit `name` from Python `lasier` (three failures under
/// `MaxFailuresRule(3)`, a 60 s open time).
const PYTHON_TRIP: &str = r#"
import sys
import redis
from lasier.adapters.caches import RedisAdapter
from lasier.circuit_breaker.sync import CircuitBreaker
from lasier.circuit_breaker.rules import MaxFailuresRule

class Open(Exception):
    pass

port, name = int(sys.argv[1]), sys.argv[2]
breaker = CircuitBreaker(
    rule=MaxFailuresRule(max_failures=3, failure_cache_key=name),
    cache=RedisAdapter(redis.Redis(host="127.0.0.1", port=port)),
    failure_exception=Open, failure_timeout=60, circuit_timeout=60,
)
for _ in range(3):
    try:
        with breaker:
            raise ValueError("boom")
    except (ValueError, Open):
        pass
print("open=" + str(breaker.is_circuit_open()))
"#;

#[test]
fn a_circuit_opened_by_python_lasier_is_listed_open() {
    let server = server_or_skip!();
    if !python_available() {
        return;
    }
    let name = unique("python");
    let output = Command::new("python3")
        .args(["-c", PYTHON_TRIP, &server.port().to_string(), &name])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "open=True");
    let url = server.url();
    let entry = listed(&url, &name).expect("listed");
    assert_eq!(entry["state"], "open", "{entry}");
    let left = entry["open_for_ms"].as_u64().unwrap();
    assert!(left > 50_000 && left <= 60_000, "{entry}");
    assert!(entry["found_by"]
        .as_array()
        .unwrap()
        .contains(&"open_flag".into()));
    // And closed from here, Python sees it closed.
    ok(&lasier(&url, &["close", &name, "--yes"]));
    assert!(!exists(server, &format!("circuit_{name}")));
}

#[test]
fn credentials_come_from_the_url_and_never_show() {
    if support::server_or_none().is_none() {
        return;
    }
    let Some(server) = RedisServer::start_with(ServerOptions::new().password("s3cret-pw")) else {
        return;
    };
    let name = unique("auth");
    let url = server.url();
    assert!(url.contains("s3cret-pw"), "{url}");
    ok(&lasier(&url, &["open", &name, "--yes"]));
    assert_eq!(listed(&url, &name).unwrap()["state"], "forced_open");
    let wrong = url.replace("s3cret-pw", "guess-pw");
    let line = failed(&lasier(&wrong, &["list"]), 2);
    assert!(line.contains("refused the credentials"), "{line}");
    assert!(!line.contains("guess-pw"), "{line}");
    let none = format!("redis://127.0.0.1:{}", server.port());
    let line = failed(&lasier(&none, &["status", &name]), 2);
    assert!(line.contains("NOAUTH"), "{line}");
    let line = failed(&lasier(&url.replace("redis://", "rediss://"), &["list"]), 1);
    assert!(line.contains("TLS"), "{line}");
    assert!(!line.contains("s3cret-pw"), "{line}");
}
