//! Behavioural suites that run on one redis-server and on a Redis Cluster
//! alike: test bodies generic over a [`Target`], and macros that declare
//! them as the tests of a binary.
//!
//! A binary declares `mod support; mod behaviour;` and then, for example,
//! `sync_breaker_suite!(support::server());`: one `#[test]` per body, named
//! as the body, skipped (loudly) where the target cannot be started.
#![allow(dead_code, unreachable_pub, unused_imports, unused_macros)]

pub mod async_breaker;
pub mod budget;
pub mod sync_breaker;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use lasier_core::{AsyncStorage, Storage};
use lasier_redis::{AsyncRedisStorage, Options, RedisStorage};
use lasier_redis_harness::{RedisCluster, RedisServer};

use crate::support::{self, Server, Storages};

/// Where a suite runs: one server, or a cluster.
pub trait Target: Sync {
    /// Its sync storage.
    type Storage: Storage + Clone + 'static;
    /// Its async storage.
    type AsyncStorage: AsyncStorage + Clone + 'static;

    /// A new sync storage (a pool of its own: another process, in effect).
    fn storage(&self) -> Self::Storage {
        self.storage_with(Options::default())
    }

    /// A new sync storage with `options`.
    fn storage_with(&self, options: Options) -> Self::Storage;

    /// A new async storage (connections of its own).
    fn async_storage(&self) -> impl Future<Output = Self::AsyncStorage> + Send;

    /// A breaker name that no other test uses (on a cluster, with a hash
    /// tag, on each master in turn).
    fn name(&self, prefix: &str) -> String;

    /// A name like [`name`](Self::name), whose keys live on the same node
    /// as those of the breaker `other`.
    fn name_beside(&self, other: &str, prefix: &str) -> String;

    /// The node that holds `key`.
    fn node_of(&self, key: &str) -> &RedisServer;

    /// The nodes that run clients' commands (a cluster's masters).
    fn nodes(&self) -> Vec<&RedisServer>;
}

impl Target for Server {
    type Storage = RedisStorage;
    type AsyncStorage = AsyncRedisStorage;

    fn storage_with(&self, options: Options) -> RedisStorage {
        Storages::storage_with(self.0, options)
    }

    fn async_storage(&self) -> impl Future<Output = AsyncRedisStorage> + Send {
        let url = self.url();
        async move { support::async_storage(&url, Options::default()).await }
    }

    fn name(&self, prefix: &str) -> String {
        support::unique(prefix)
    }

    fn name_beside(&self, _other: &str, prefix: &str) -> String {
        support::unique(prefix)
    }

    fn node_of(&self, _key: &str) -> &RedisServer {
        self.0
    }

    fn nodes(&self) -> Vec<&RedisServer> {
        vec![self.0]
    }
}

/// This binary's cluster as a [`Target`].
#[derive(Debug)]
pub struct ClusterTarget {
    /// The cluster.
    pub cluster: &'static RedisCluster,
    next: AtomicUsize,
}

/// This binary's cluster as a [`Target`]; `None` after a loud skip message.
pub fn cluster_target() -> Option<&'static ClusterTarget> {
    static TARGET: OnceLock<Option<ClusterTarget>> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            support::cluster().map(|cluster| ClusterTarget {
                cluster,
                next: AtomicUsize::new(0),
            })
        })
        .as_ref()
}

#[cfg(feature = "cluster")]
impl Target for ClusterTarget {
    type Storage = lasier_redis::ClusterRedisStorage;
    type AsyncStorage = lasier_redis::AsyncClusterRedisStorage;

    fn storage_with(&self, options: Options) -> Self::Storage {
        support::ClusterStorages::storage_with(self.cluster, options)
    }

    fn async_storage(&self) -> impl Future<Output = Self::AsyncStorage> + Send {
        support::ClusterStorages::async_storage_with(self.cluster, Options::default())
    }

    fn name(&self, prefix: &str) -> String {
        let masters = self.cluster.masters();
        let master = masters[self.next.fetch_add(1, Ordering::Relaxed) % masters.len()];
        self.cluster.tag_on(master, prefix)
    }

    fn name_beside(&self, other: &str, prefix: &str) -> String {
        self.cluster.tag_on(self.cluster.master_of(other), prefix)
    }

    fn node_of(&self, key: &str) -> &RedisServer {
        self.cluster.master_of(key)
    }

    fn nodes(&self) -> Vec<&RedisServer> {
        self.cluster.masters()
    }
}

/// Declares the tests of [`sync_breaker`] on a target: `$target` is an
/// `Option<&'static impl Target>`, `None` to skip.
#[macro_export]
macro_rules! sync_breaker_suite {
    ($target:expr) => {
        $crate::sync_breaker_suite!(@tests $target;
            opens_on_the_nth_failure_and_rejects_without_running,
            successes_do_not_open_under_max_failures,
            percentage_rule_boundaries_through_the_breaker,
            counters_expire_after_failure_timeout_from_the_first_count,
            half_open_trial_success_closes_with_fresh_counters,
            half_open_trial_failure_reopens_at_once,
            half_open_admits_exactly_max_calls_concurrent_trials_across_connections,
            without_half_open_the_circuit_closes_when_open_time_is_over,
            call_filtered_counts_only_matching_errors,
            guard_verdicts_and_drops,
            reset_closes_and_clears_only_this_breaker,
            breakers_in_different_processes_share_one_circuit,
            building_a_breaker_never_resets_the_shared_state,
            outcomes_of_calls_admitted_before_the_circuit_opened_are_not_counted,
            many_threads_on_one_breaker_lose_no_count,
            sync_mode_shares_one_window_across_processes,
        );
    };
    (@tests $target:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let Some(target) = $target else { return };
                behaviour::sync_breaker::$name(target);
            }
        )*
    };
}

/// Declares the tests of [`async_breaker`] on a target, as
/// [`sync_breaker_suite!`].
#[macro_export]
macro_rules! async_breaker_suite {
    ($target:expr) => {
        $crate::async_breaker_suite!(@tests $target;
            opens_on_the_nth_failure_and_rejects_without_polling,
            async_and_sync_services_share_one_circuit,
            a_cancelled_trial_gives_its_permit_back,
        );
    };
    (@tests $target:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(target) = $target else { return };
                behaviour::async_breaker::$name(target).await;
            }
        )*
    };
}
