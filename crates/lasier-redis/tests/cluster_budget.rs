//! Round trips per guarded call on a Redis Cluster: the same figures as on
//! one redis-server (`command_budget.rs`), counted with `INFO
//! commandstats` on every master of a local cluster this binary starts,
//! summed, and checked against the slowlog (see `behaviour/budget.rs`).
//! A breaker's calls cost the same on a cluster: each step is one script on
//! the master of its slot, and nothing else (no `CLUSTER SLOTS`, no
//! `SCRIPT LOAD` on every node, no `ASKING`) once the cluster is stable.
//!
//! The tests in this binary run one at a time (they read server-wide
//! counters) on a cluster no other binary uses.
#![cfg(all(feature = "cluster", feature = "sync", feature = "async"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod behaviour;
mod support;

use behaviour::{budget, cluster_target};

#[test]
fn round_trips_per_guarded_call_max_failures() {
    let Some(t) = cluster_target() else { return };
    budget::max_failures_budget(t);
}

#[test]
fn round_trips_per_guarded_call_percentage_failures() {
    let Some(t) = cluster_target() else { return };
    budget::percentage_failures_budget(t);
}

#[test]
fn round_trips_of_the_async_steps() {
    let Some(t) = cluster_target() else { return };
    budget::async_steps_budget(t);
}

#[test]
fn a_master_that_lost_its_scripts_costs_two_more_round_trips_once() {
    let Some(t) = cluster_target() else { return };
    budget::lost_scripts_budget(t);
}
