//! Round trips per guarded call, counted on the test's own redis-server.
//!
//! How they are counted (`INFO commandstats`, checked against the slowlog)
//! is told in `behaviour/budget.rs`, shared with the cluster's budget
//! (`cluster_budget.rs`). The tests in this binary run one at a time (they
//! read server-wide counters) on a server no other binary uses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod behaviour;
mod support;

use behaviour::budget::{self, Counter};
use lasier_redis::redis;
use support::unique;

#[test]
fn commandstats_counts_commands_run_inside_scripts() {
    let server = server_or_skip!();
    let _serial = budget::serial();
    let mut counter = Counter::new(&[server]);
    let key = unique("inside");
    let mut connection = server.raw();
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

#[test]
fn round_trips_per_guarded_call_max_failures() {
    let server = server_or_skip!();
    budget::max_failures_budget(server);
}

#[test]
fn round_trips_per_guarded_call_percentage_failures() {
    let server = server_or_skip!();
    budget::percentage_failures_budget(server);
}

#[test]
fn round_trips_of_the_async_steps() {
    let server = server_or_skip!();
    budget::async_steps_budget(server);
}

#[test]
fn a_server_that_lost_its_scripts_costs_two_more_round_trips_once() {
    let server = server_or_skip!();
    budget::lost_scripts_budget(server);
}
