//! Round trips per guarded call, counted on the nodes that run the
//! commands (one server, or a cluster's masters, summed).
//!
//! How round trips are counted: `INFO commandstats` counts every command a
//! server runs, *including those a Lua script runs with `redis.call`*, under
//! their own names (`commandstats_counts_commands_run_inside_scripts` in
//! `command_budget.rs` shows it: one `EVAL` running two `GET`s adds 1 to
//! `eval` and 2 to `get`). So a round trip is a command a client sent:
//! `EVALSHA`, `EVAL` and `SCRIPT` calls, plus any command that none of our
//! scripts runs (found by reading the script sources). `GET`, `SET`, ...
//! sent from outside a script would hide among the scripts' own, so the
//! count is checked against a second one: with `slowlog-log-slower-than 0`
//! the slowlog records every command with the client that sent it, and
//! script commands with the Lua pseudo-client, which has no address; the
//! test counts the entries of real clients. Both counts must agree.
//!
//! A master of a cluster also hears from its replica (`REPLCONF ACK`, once
//! a second): replication, not a client's round trip, so `REPLCONF` is
//! left out of both counts. Replicas run only what their master sends them.
//!
//! The tests that use this run one at a time (they read server-wide
//! counters) on nodes no other binary uses.

use lasier_core::{AsyncSteps as _, Steps as _};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use lasier_core::state::{Outcome, Permit};
use lasier_core::{AsyncStorage, Config, Storage};
use lasier_redis::redis;
use lasier_redis_harness::RedisServer;
use lasier_sync::{CircuitBreaker, CircuitBreakerBuilder, Error, State};

use super::Target;

const SCRIPTS: [&str; 8] = [
    include_str!("../../src/scripts/prelude.lua"),
    include_str!("../../src/scripts/admit.lua"),
    include_str!("../../src/scripts/record.lua"),
    include_str!("../../src/scripts/trial.lua"),
    include_str!("../../src/scripts/release.lua"),
    include_str!("../../src/scripts/open.lua"),
    include_str!("../../src/scripts/state.lua"),
    include_str!("../../src/scripts/counts.lua"),
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
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

const PROBE: &str = "lasier-budget-probe";

/// Replication traffic a master gets from its replicas: not a round trip.
const REPLICATION: &str = "replconf";

/// Counts the round trips of an action, two ways, over some nodes.
pub struct Counter<'a> {
    probes: Vec<(&'a RedisServer, redis::Connection)>,
    inner: BTreeSet<String>,
}

/// What an action cost: round trips, and the commands behind them.
#[derive(Debug)]
pub struct Cost {
    /// Commands clients sent.
    pub round_trips: u64,
    /// Every command run, by name (with those scripts ran).
    pub commands: BTreeMap<String, u64>,
}

impl<'a> Counter<'a> {
    /// Counts on `nodes`.
    pub fn new(nodes: &[&'a RedisServer]) -> Self {
        let probes = nodes
            .iter()
            .map(|node| {
                let mut probe = node.raw();
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
                (*node, probe)
            })
            .collect();
        Self {
            probes,
            inner: script_commands(),
        }
    }

    /// Counts on the target's nodes.
    pub fn on(target: &'a impl Target) -> Self {
        Self::new(&target.nodes())
    }

    /// `calls + rejected_calls` of every command, from INFO commandstats.
    fn commandstats(probe: &mut redis::Connection) -> BTreeMap<String, u64> {
        let info: String = redis::cmd("INFO").arg("commandstats").query(probe).unwrap();
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
    fn slowlog_client_commands(probe: &mut redis::Connection) -> u64 {
        let entries: Vec<redis::Value> = redis::cmd("SLOWLOG")
            .arg("GET")
            .arg(-1)
            .query(probe)
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
            let command = match &fields[3] {
                redis::Value::Array(args) => args.first().map(text).unwrap_or_default(),
                other => panic!("{other:?}"),
            };
            let (addr, name) = (text(&fields[4]), text(&fields[5]));
            // The Lua pseudo-client has no address ("?:0" in Redis 7).
            let real_client = addr.starts_with(|c: char| c.is_ascii_digit() || c == '[');
            if real_client && name != PROBE && !command.eq_ignore_ascii_case(REPLICATION) {
                sent += 1;
            }
        }
        sent
    }

    /// Runs `action` and returns what it cost on every node, summed.
    pub fn cost(&mut self, action: impl FnOnce()) -> Cost {
        let mut before = Vec::new();
        for (_, probe) in &mut self.probes {
            redis::cmd("SLOWLOG")
                .arg("RESET")
                .query::<()>(probe)
                .unwrap();
            before.push(Self::commandstats(probe));
        }
        action();
        let mut commands = BTreeMap::new();
        let mut logged = 0;
        for ((_, probe), before) in self.probes.iter_mut().zip(before) {
            let after = Self::commandstats(probe);
            for (name, calls) in &after {
                // The probe's first INFO.
                let calls =
                    calls - before.get(name).copied().unwrap_or(0) - u64::from(name == "info");
                if calls > 0 && name != REPLICATION {
                    *commands.entry(name.clone()).or_insert(0) += calls;
                }
            }
            logged += Self::slowlog_client_commands(probe);
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
        assert_eq!(
            logged, cost.round_trips,
            "commandstats and slowlog disagree: {cost:?}"
        );
        cost
    }
}

fn fail(b: &CircuitBreaker) -> Result<(), Error<&'static str>> {
    b.call(|| Err("boom"))
}

fn ok(b: &CircuitBreaker) -> Result<(), Error<&'static str>> {
    b.call(|| Ok(()))
}

/// A breaker on a new storage whose connections are made already (as a
/// process that has been running a while): the cost of connecting is not
/// the cost of a call.
fn warm_breaker<T: Target>(
    t: &T,
    name: &str,
    configure: &impl Fn(CircuitBreakerBuilder) -> CircuitBreakerBuilder,
) -> CircuitBreaker {
    let storage = t.storage();
    storage
        .get(&t.name_beside(name, "warm-connection"))
        .unwrap();
    let breaker = configure(
        CircuitBreaker::builder(name)
            .storage(storage)
            .failure_timeout(Duration::from_secs(60))
            .circuit_timeout(Duration::from_secs(60)),
    )
    .build()
    .unwrap();
    registered(t, name);
    breaker
}

/// Waits for the directory entry a breaker of `name` writes in the
/// background when built: its round trip is not a call's.
fn registered<T: Target>(t: &T, name: &str) {
    let storage = t.storage();
    let key = format!("lasier:circuit:{name}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    // (a hash: `get` fails on it once it is there)
    while let Ok(None) = storage.get(&key) {
        assert!(std::time::Instant::now() < deadline, "{key} never written");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The budget of each kind of guarded call, for one rule.
pub fn budget<T: Target>(
    t: &T,
    counter: &mut Counter<'_>,
    rule: &str,
    configure: impl Fn(CircuitBreakerBuilder) -> CircuitBreakerBuilder,
    failures_before_trip: usize,
    success: u64,
) {
    let name = t.name("budget");
    let b = warm_breaker(t, &name, &configure);
    // Warm up: the pool's connection, and every script loaded on the
    // node (a trip and a reset, on a circuit of the same rule there).
    let warm_name = t.name_beside(&name, "warm");
    let warm = configure(CircuitBreaker::builder(warm_name.as_str()).storage(t.storage()))
        .build()
        .unwrap();
    registered(t, &warm_name);
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
    let other = warm_breaker(t, &name, &configure);
    let cost = counter.cost(|| {
        for _ in 0..100 {
            assert!(ok(&other).unwrap_err().is_open());
        }
    });
    assert_eq!(cost.round_trips, 1, "{rule}: another process: {cost:?}");
    println!(
        "{rule}: 100 rejections in another process: {} round trip",
        cost.round_trips
    );
}

/// MaxFailures(3): a success is not counted by this rule, admission only.
pub fn max_failures_budget(t: &impl Target) {
    let _serial = serial();
    let mut counter = Counter::on(t);
    budget(
        t,
        &mut counter,
        "MaxFailures(3)",
        |b| b.max_failures(3),
        2,
        1,
    );
}

/// PercentageFailures(50, 4): the 4th failure (5th request) trips.
pub fn percentage_failures_budget(t: &impl Target) {
    let _serial = serial();
    let mut counter = Counter::on(t);
    budget(
        t,
        &mut counter,
        "PercentageFailures(50, 4)",
        |b| b.percentage_failures(50, 4),
        3,
        2,
    );
}

/// The async storage's steps: admit and record, 2 round trips; a trip, 3.
pub fn async_steps_budget(t: &impl Target) {
    let _serial = serial();
    let mut counter = Counter::on(t);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let storage = runtime.block_on(t.async_storage());
    let mut config = Config::new(t.name("budget-async"));
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

    let cost = counter.cost(|| {
        let _ = call(Outcome::Success);
    });
    assert_eq!(cost.round_trips, 2, "{cost:?}");
    let cost = counter.cost(|| assert!(call(Outcome::Failure).is_some()));
    assert_eq!(cost.round_trips, 3, "{cost:?}");
}

/// A node that lost its scripts (`SCRIPT FLUSH`, a restart, a replica
/// that took over) costs two more round trips per script, once: `EVALSHA`
/// (`NOSCRIPT`), `SCRIPT LOAD` on that node, `EVALSHA`.
pub fn lost_scripts_budget(t: &impl Target) {
    let _serial = serial();
    let mut counter = Counter::on(t);
    let name = t.name("noscript");
    let b = warm_breaker(t, &name, &|b| b.max_failures(3));
    let _ = fail(&b); // warm
    t.node_of(&name).cmd::<()>(&["SCRIPT", "FLUSH"]);
    // EVALSHA (NOSCRIPT), SCRIPT LOAD, EVALSHA, for admit and for record.
    let cost = counter.cost(|| {
        let _ = fail(&b);
    });
    assert_eq!(cost.round_trips, 6, "{cost:?}");
    assert_eq!(cost.commands.get("script|load"), Some(&2), "{cost:?}");
    let cost = counter.cost(|| {
        let _ = fail(&b);
    });
    // admit and record are loaded again; the trip's script loads now.
    assert_eq!(cost.round_trips, 1 + 1 + 3, "{cost:?}");
    assert_eq!(b.state().unwrap(), State::Open);
}
