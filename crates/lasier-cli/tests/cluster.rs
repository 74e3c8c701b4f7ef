//! `lasier` on a Redis Cluster: a local cluster of three masters and three
//! replicas that this test binary starts (lasier-redis-harness), with
//! circuits on different masters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use lasier_redis::{ClusterRedisStorage, Options};
use lasier_redis_harness::cluster_or_skip;
use lasier_sync::{CircuitBreaker, Error, State};
use support::*;

fn circuits(output: &std::process::Output) -> Vec<serde_json::Value> {
    let listing: serde_json::Value = serde_json::from_str(&ok(output)).unwrap();
    listing["circuits"].as_array().unwrap().clone()
}

#[test]
fn list_finds_the_circuits_of_every_master() {
    let cluster = cluster_or_skip!();
    let masters = cluster.masters();
    assert!(masters.len() >= 3);
    let urls = cluster.urls();
    let storage = ClusterRedisStorage::open_with_options(
        urls.clone(),
        Options::new().timeout(Duration::from_secs(5)),
    )
    .unwrap();

    // One tripped by a breaker, on the first master.
    let tripped = cluster.tag_on(masters[0], "cli-tripped");
    let breaker = CircuitBreaker::builder(&tripped)
        .storage(storage.clone())
        .max_failures(1)
        .circuit_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    assert!(matches!(
        breaker.call(|| Err::<(), _>("boom")),
        Err(Error::Inner("boom"))
    ));
    assert_eq!(breaker.state().unwrap(), State::Open);

    // One forced open by the tool, on the second master: one URL of a
    // cluster node is the cluster.
    let forced = cluster.tag_on(masters[1], "cli-forced");
    let out = ok(&lasier(&urls[0], &["open", &forced, "--yes"]));
    assert!(out.contains("forced open"), "{out}");
    let flag: Option<i64> = masters[1].cmd(&["GET", &format!("circuit_{forced}")]);
    assert_eq!(flag, Some(1), "on the master of its slot");

    // One registered by hand, on the third.
    let registered = cluster.tag_on(masters[2], "cli-registered");
    let key = format!("lasier:circuit:{registered}");
    masters[2].cmd::<i64>(&[
        "HSET",
        &key,
        "rule",
        "max_failures(3)",
        "seen_ms",
        &now_ms().to_string(),
    ]);
    masters[2].cmd::<i64>(&["PEXPIRE", &key, "600000"]);

    let mut seeds = Vec::new();
    for url in &urls[..2] {
        seeds.push("--url");
        seeds.push(url.as_str());
    }
    let mut args = seeds.clone();
    args.extend(["list", "--json"]);
    let output = command().args(&args).output().unwrap();
    let listed = circuits(&output);
    let find = |name: &str| {
        listed
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {listed:?}"))
    };
    assert_eq!(find(&tripped)["state"], "open");
    assert!(find(&tripped)["open_for_ms"].as_u64().unwrap() > 50_000);
    assert_eq!(find(&forced)["state"], "forced_open");
    assert_eq!(find(&forced)["manual"], "forced_open");
    assert_eq!(find(&registered)["state"], "closed");
    assert_eq!(find(&registered)["registration"]["rule"], "max_failures(3)");

    let mut args = seeds.clone();
    args.push("list");
    let table = ok(&command().args(&args).output().unwrap());
    for name in [&tripped, &forced, &registered] {
        assert!(
            table.lines().any(|l| l.starts_with(name.as_str())),
            "{table}"
        );
    }

    // Closed by the tool, the breaker's circuit is closed.
    ok(&lasier(&urls[1], &["close", &tripped, "--yes"]));
    assert_eq!(breaker.state().unwrap(), State::Closed);

    // A name whose keys cannot share a slot is refused, with the fix.
    let line = failed(&lasier(&urls[0], &["open", "payments", "--yes"]), 1);
    assert!(line.contains("hash tag"), "{line}");

    for name in [&forced, &registered] {
        ok(&lasier(&urls[0], &["reset", name, "--yes"]));
    }
    masters[2].cmd::<i64>(&["DEL", &key]);
}
