//! The breakers on a Redis Cluster: the Redis adapter's behavioural suite,
//! sync (`ClusterRedisStorage`) and async (`AsyncClusterRedisStorage`), on
//! a local cluster of three masters and three replicas that this binary
//! starts; breaker names carry hash tags that land on each master in turn.
//! Plus what only a cluster has: names whose keys cannot share a slot are
//! refused by `build()`, and each breaker's scripts run on its own master.
#![cfg(all(feature = "cluster", feature = "sync", feature = "async"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod behaviour;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use behaviour::{cluster_target, Target};
use lasier_core::ConfigError;
use lasier_sync::{CircuitBreaker, Error, State};

sync_breaker_suite!(cluster_target());

mod async_suite {
    use super::{behaviour, cluster_target};

    crate::async_breaker_suite!(cluster_target());
}

/// The message of the error `build()` returns for `name` (and `request_key`).
fn refused(t: &impl Target, name: &str, request_key: Option<&str>) -> String {
    let mut builder = CircuitBreaker::builder(name)
        .storage(t.storage())
        .max_failures(3);
    if let Some(key) = request_key {
        builder = builder.request_key(key);
    }
    match builder.build() {
        Err(ConfigError::Invalid(message)) => message,
        Err(other) => panic!("{name}: another error: {other:?}"),
        Ok(_) => panic!("{name}: built"),
    }
}

#[test]
fn a_name_without_a_hash_tag_is_a_config_error_that_shows_the_fix() {
    let Some(t) = cluster_target() else { return };
    let message = refused(t, "payments", None);
    assert!(
        message.contains(r#"use a hash tag: name it "{payments}""#),
        "{message}"
    );
    println!("sync build(\"payments\"): {message}");
    // A tag of its own works, and so does a request key with the same tag.
    let tag = t.name("payments");
    CircuitBreaker::builder(&tag)
        .storage(t.storage())
        .max_failures(3)
        .build()
        .unwrap();
    let message = refused(t, &tag, Some("payments_requests"));
    assert!(
        message.contains("use a hash tag: .request_key("),
        "{message}"
    );
    println!("sync request_key elsewhere: {message}");
    CircuitBreaker::builder(&tag)
        .storage(t.storage())
        .percentage_failures(50, 10)
        .request_key(format!("{tag}:requests"))
        .build()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_builder_refuses_it_too() {
    let Some(t) = cluster_target() else { return };
    let error = lasier_async::CircuitBreaker::builder("payments")
        .storage(t.async_storage().await)
        .max_failures(3)
        .build()
        .unwrap_err();
    assert!(
        matches!(&error, ConfigError::Invalid(m) if m.contains(r#"name it "{payments}""#)),
        "{error:?}"
    );
}

/// `circuits()` scans every master: a breaker's circuit on each is listed,
/// from its registration and from its open flag.
#[test]
fn the_cluster_storage_lists_the_circuits_of_every_master() {
    let Some(t) = cluster_target() else { return };
    let cluster = t.cluster;
    let storage = t.storage();
    let mut names = Vec::new();
    for master in cluster.masters() {
        let name = cluster.tag_on(master, "listed");
        let b = CircuitBreaker::builder(&name)
            .storage(storage.clone())
            .max_failures(1)
            .circuit_timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let _ = b.call(|| Err::<(), _>("boom"));
        names.push(name);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let found = storage.circuits().unwrap();
        let listed = names.iter().all(|name| {
            found.get(name).is_some_and(|by| {
                by.contains(&lasier_redis::listing::FoundBy::OpenFlag)
                    && by.contains(&lasier_redis::listing::FoundBy::Directory)
            })
        });
        if listed {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{names:?} in {found:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn each_breaker_lives_on_the_master_of_its_tag() {
    let Some(t) = cluster_target() else { return };
    let cluster = t.cluster;
    let storage = t.storage();
    let mut masters = BTreeSet::new();
    for master in cluster.masters() {
        let name = cluster.tag_on(master, "spread");
        let b = CircuitBreaker::builder(&name)
            .storage(storage.clone())
            .max_failures(1)
            .circuit_timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        assert!(matches!(
            b.call(|| Err::<(), _>("boom")),
            Err(Error::Inner("boom"))
        ));
        assert_eq!(b.state().unwrap(), State::Open);
        // On that master itself (a plain connection: a key held elsewhere
        // would be a MOVED error here), the flag the script set.
        let flag: Option<i64> = master.cmd(&["GET", &format!("circuit_{name}")]);
        assert_eq!(flag, Some(1), "{name} on {}", master.port());
        masters.insert(master.port());
        b.reset().unwrap();
    }
    assert_eq!(masters.len(), 3);
}

#[test]
fn cluster_storage_passes_the_conformance_suite() {
    let Some(target) = cluster_target() else {
        return;
    };
    // The kit's keys carry a hash tag per check, so each check's keys share
    // a slot, as this storage requires of a breaker's keys.
    let report = lasier_testkit::Suite::new().run(|| target.storage());
    println!("{report}");
    assert!(report.is_ok(), "{report}");
    assert!(report
        .passed()
        .contains(&"steps_a_trial_of_an_earlier_period_decides_nothing"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_cluster_storage_passes_the_conformance_suite() {
    let Some(target) = cluster_target() else {
        return;
    };
    lasier_testkit::check_async_storage(|| target.async_storage()).await;
}
