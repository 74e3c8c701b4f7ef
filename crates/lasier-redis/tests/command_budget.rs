//! Round trips per guarded call, counted on the test's own redis-server.
//!
//! How round trips are counted: `INFO commandstats` counts every command a
//! server runs, *including those a Lua script runs with `redis.call`*, under
//! their own names (`commandstats_counts_commands_run_inside_scripts` below
//! shows it: one `EVAL` running two `GET`s adds 1 to `eval` and 2 to
//! `get`). So a round trip is a command a client sent: `EVALSHA`, `EVAL`
//! and `SCRIPT` calls, plus any command that none of our scripts runs
//! (found by reading the script sources). `GET`, `SET`, ... sent from
//! outside a script would hide among the scripts' own, so the count is
//! checked against a second one: with `slowlog-log-slower-than 0` the
//! slowlog records every command with the client that sent it, and script
//! commands with the Lua pseudo-client, which has no address; the test
//! counts the entries of real clients. Both counts must agree.
//!
//! The tests in this binary run one at a time (they read server-wide
//! counters) on a server no other binary uses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use lasier_core::state::{Outcome, Permit};
use lasier_core::{AsyncStorage, Config};
use lasier_redis::redis;
use lasier_sync::{CircuitBreaker, CircuitBreakerBuilder, Error, State};
use support::{unique, Server};

const SCRIPTS: [&str; 8] = [
    include_str!("../src/scripts/prelude.lua"),
    include_str!("../src/scripts/admit.lua"),
    include_str!("../src/scripts/record.lua"),
    include_str!("../src/scripts/trial.lua"),
    include_str!("../src/scripts/release.lua"),
    include_str!("../src/scripts/open.lua"),
    include_str!("../src/scripts/state.lua"),
    include_str!("../src/scripts/counts.lua"),
];

/// The commands our scripts run inside Redis, lower case.
fn script_commands() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for source in SCRIPTS {
        for call in ["redis.call('", "redis.pcall('"] {
            for (at, _) in source.match_indices(call) {
                let rest = &source[at + call.len()..];
                let name = &rest[..rest.find('\'').unwrap()];
                names.insert(name.to_lowercase());
            }
        }
    }
    assert!(
        names.contains("get") && names.contains("incrby"),
        "{names:?}"
    );
    names
}

/// One test at a time: the counters are server-wide.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

const PROBE: &str = "lasier-budget-probe";

/// Counts the round trips of an action, two ways.
struct Counter<'a> {
    server: &'a Server,
    probe: redis::Connection,
    inner: BTreeSet<String>,
}

/// What an action cost: round trips, and the commands behind them.
#[derive(Debug)]
struct Cost {
    round_trips: u64,
    commands: BTreeMap<String, u64>,
}

impl<'a> Counter<'a> {
    fn new(server: &'a Server) -> Self {
        let mut probe = server.raw();
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(PROBE)
            .query::<()>(&mut probe)
            .unwrap();
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-log-slower-than")
            .arg(0)
            .arg("slowlog-max-len")
            .arg(100_000)
            .query::<()>(&mut probe)
            .unwrap();
        Self {
            server,
            probe,
            inner: script_commands(),
        }
    }

    /// `calls + rejected_calls` of every command, from INFO commandstats.
    fn commandstats(&mut self) -> BTreeMap<String, u64> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.probe)
            .unwrap();
        let mut stats = BTreeMap::new();
        for line in info.lines() {
            let Some((name, fields)) = line
                .strip_prefix("cmdstat_")
                .and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            let mut total = 0;
            for field in fields.split(',') {
                if let Some(n) = field
                    .strip_prefix("calls=")
                    .or_else(|| field.strip_prefix("rejected_calls="))
                {
                    total += n.parse::<u64>().unwrap();
                }
            }
            stats.insert(name.to_owned(), total);
        }
        stats
    }

    /// Commands real clients other than the probe sent, from the slowlog.
    fn slowlog_client_commands(&mut self) -> u64 {
        let entries: Vec<redis::Value> = redis::cmd("SLOWLOG")
            .arg("GET")
            .arg(-1)
            .query(&mut self.probe)
            .unwrap();
        let mut sent = 0;
        for entry in entries {
            let redis::Value::Array(fields) = entry else {
                panic!("slowlog entry {entry:?}")
            };
            let text = |v: &redis::Value| match v {
                redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                redis::Value::SimpleString(s) => s.clone(),
                other => panic!("{other:?}"),
            };
            let (addr, name) = (text(&fields[4]), text(&fields[5]));
            // The Lua pseudo-client has no address ("?:0" in Redis 7).
            let real_client = addr.starts_with(|c: char| c.is_ascii_digit() || c == '[');
            if real_client && name != PROBE {
                sent += 1;
            }
        }
        sent
    }

    /// Runs `action` and returns what it cost.
    fn cost(&mut self, action: impl FnOnce()) -> Cost {
        redis::cmd("SLOWLOG")
            .arg("RESET")
            .query::<()>(&mut self.probe)
            .unwrap();
        let before = self.commandstats();
        action();
        let after = self.commandstats();
        let mut commands = BTreeMap::new();
        for (name, calls) in &after {
            // The probe's first INFO.
            let calls = calls - before.get(name).copied().unwrap_or(0) - u64::from(name == "info");
            if calls > 0 {
                commands.insert(name.clone(), calls);
            }
        }
        let round_trips = commands
            .iter()
            .filter(|(name, _)| {
                !self.inner.contains(*name)
                    || matches!(name.as_str(), "evalsha" | "eval")
                    || name.starts_with("script")
            })
            .map(|(_, calls)| calls)
            .sum();
        let cost = Cost {
            round_trips,
            commands,
        };
        let logged = self.slowlog_client_commands();
        assert_eq!(
            logged, cost.round_trips,
            "commandstats and slowlog disagree: {cost:?}"
        );
        cost
    }

    fn server(&self) -> &'a Server {
        self.server
    }
}

fn fail(b: &CircuitBreaker) -> Result<(), Error<&'static str>> {
    b.call(|| Err("boom"))
}

fn ok(b: &CircuitBreaker) -> Result<(), Error<&'static str>> {
    b.call(|| Ok(()))
}

#[test]
fn commandstats_counts_commands_run_inside_scripts() {
    let server = server_or_skip!();
    let _serial = serial();
    let mut counter = Counter::new(server);
    let key = unique("inside");
    let mut connection = counter.server().raw();
    let cost = counter.cost(|| {
        redis::cmd("EVAL")
            .arg("redis.call('GET', KEYS[1]); return redis.call('GET', KEYS[1])")
            .arg(1)
            .arg(&key)
            .query::<Option<String>>(&mut connection)
            .unwrap();
    });
    assert_eq!(cost.commands.get("eval"), Some(&1), "{cost:?}");
    assert_eq!(cost.commands.get("get"), Some(&2), "{cost:?}");
    assert_eq!(cost.round_trips, 1);
}

/// The budget of each kind of guarded call, for one rule.
fn budget(
    counter: &mut Counter<'_>,
    rule: &str,
    configure: impl Fn(CircuitBreakerBuilder) -> CircuitBreakerBuilder,
    failures_before_trip: usize,
    success: u64,
) {
    let name = unique("budget");
    let server = counter.server();
    let build = || {
        configure(
            CircuitBreaker::builder(&name)
                .storage(server.storage())
                .failure_timeout(Duration::from_secs(60))
                .circuit_timeout(Duration::from_secs(60)),
        )
        .build()
        .unwrap()
    };
    let b = build();
    // Warm up: the pool's connection, and every script loaded on the
    // server (a trip and a reset, on a circuit of the same rule).
    let warm =
        configure(CircuitBreaker::builder(unique("warm")).storage(counter.server().storage()))
            .build()
            .unwrap();
    ok(&b).unwrap();
    b.reset().unwrap();
    while warm.state().unwrap() == State::Closed {
        let _ = fail(&warm);
    }
    let _ = warm.counts();

    let cost = counter.cost(|| ok(&b).unwrap());
    assert_eq!(
        cost.round_trips, success,
        "{rule}: success on a closed circuit: {cost:?}"
    );
    println!(
        "{rule}: success on a closed circuit: {} round trips {:?}",
        cost.round_trips, cost.commands
    );

    let cost = counter.cost(|| {
        let _ = fail(&b);
    });
    assert!(
        cost.round_trips <= 2,
        "{rule}: failure that does not trip: {cost:?}"
    );
    assert_eq!(b.state().unwrap(), State::Closed);
    println!(
        "{rule}: failure that does not trip: {} round trips {:?}",
        cost.round_trips, cost.commands
    );

    for _ in 1..failures_before_trip {
        let _ = fail(&b);
    }
    assert_eq!(b.state().unwrap(), State::Closed, "{rule}");
    let cost = counter.cost(|| {
        let _ = fail(&b);
    });
    assert_eq!(b.state().unwrap(), State::Open, "{rule}");
    assert!(
        cost.round_trips <= 3,
        "{rule}: failure that trips: {cost:?}"
    );
    println!(
        "{rule}: failure that trips: {} round trips {:?}",
        cost.round_trips, cost.commands
    );

    // The process that tripped the circuit knows how long it is open:
    // its rejections cost nothing until then.
    let cost = counter.cost(|| {
        for _ in 0..100 {
            assert!(ok(&b).unwrap_err().is_open());
        }
    });
    assert_eq!(
        cost.round_trips, 0,
        "{rule}: rejections in the tripping process: {cost:?}"
    );
    println!(
        "{rule}: 100 rejections in the process that tripped it: {} round trips",
        cost.round_trips
    );

    // Another process that has not seen it open yet pays one, then nothing.
    let other = build();
    let cost = counter.cost(|| {
        for _ in 0..100 {
            assert!(ok(&other).unwrap_err().is_open());
        }
    });
    assert_eq!(cost.round_trips, 1, "{rule}: another process: {cost:?}");
}

#[test]
fn round_trips_per_guarded_call_max_failures() {
    let server = server_or_skip!();
    let _serial = serial();
    let mut counter = Counter::new(server);
    // A success is not counted by this rule: admission only.
    budget(&mut counter, "MaxFailures(3)", |b| b.max_failures(3), 2, 1);
}

#[test]
fn round_trips_per_guarded_call_percentage_failures() {
    let server = server_or_skip!();
    let _serial = serial();
    let mut counter = Counter::new(server);
    // 50 % once more than 4 requests: the 4th failure (5th request) trips.
    budget(
        &mut counter,
        "PercentageFailures(50, 4)",
        |b| b.percentage_failures(50, 4),
        3,
        2,
    );
}

#[test]
fn round_trips_of_the_async_steps() {
    let server = server_or_skip!();
    let _serial = serial();
    let mut counter = Counter::new(server);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let storage = runtime
        .block_on(lasier_redis::AsyncRedisStorage::connect(&server.url()))
        .unwrap();
    let mut config = Config::new(unique("budget-async"));
    config.percentage_failures(50, 0);
    let (circuit, rule) = config.validate().unwrap();
    let call = |outcome| {
        runtime.block_on(async {
            storage.admit(&circuit).await.unwrap();
            storage
                .record(&circuit, Permit::Normal, outcome, &*rule)
                .await
                .unwrap()
        })
    };
    // warm up (loads the scripts)
    call(Outcome::Success);
    runtime.block_on(storage.reset(&circuit)).unwrap();
    runtime.block_on(storage.open_circuit(&circuit)).unwrap();
    runtime.block_on(storage.reset(&circuit)).unwrap();

    assert_eq!(
        counter
            .cost(|| {
                let _ = call(Outcome::Success);
            })
            .round_trips,
        2
    );
    let cost = counter.cost(|| assert!(call(Outcome::Failure).is_some()));
    assert_eq!(cost.round_trips, 3, "{cost:?}");
}

#[test]
fn a_server_that_lost_its_scripts_costs_two_more_round_trips_once() {
    let server = server_or_skip!();
    let _serial = serial();
    let mut counter = Counter::new(server);
    let b = CircuitBreaker::builder(unique("noscript"))
        .storage(server.storage())
        .max_failures(3)
        .build()
        .unwrap();
    let _ = fail(&b); // warm
    server.cmd::<()>(&["SCRIPT", "FLUSH"]);
    // EVALSHA (NOSCRIPT), SCRIPT LOAD, EVALSHA, for admit and for record.
    let cost = counter.cost(|| {
        let _ = fail(&b);
    });
    assert_eq!(cost.round_trips, 6, "{cost:?}");
    let cost = counter.cost(|| {
        let _ = fail(&b);
    });
    // admit and record are loaded again; the trip's script loads now.
    assert_eq!(cost.round_trips, 1 + 1 + 3, "{cost:?}");
    assert_eq!(b.state().unwrap(), State::Open);
}
