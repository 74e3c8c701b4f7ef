//! Redis Cluster: what both cluster storages share.
//!
//! * `hash_slot`: the check behind `validate` (all of a breaker's keys in
//!   one hash slot);
//! * `route`: where a circuit's scripts go;
//! * the cluster client's settings, from [`Options`].
//!
//! The storages: `pooled` (blocking, `ClusterRedisStorage`) and
//! `multiplexed` (async, `AsyncClusterRedisStorage`).

use redis::cluster::ClusterClientBuilder;
use redis::IntoConnectionInfo;

use crate::Options;

pub(crate) mod hash_slot;
#[cfg(feature = "async")]
pub(crate) mod multiplexed;
#[cfg(feature = "sync")]
pub(crate) mod pooled;
pub(crate) mod route;

/// How many times the cluster client retries a request (following `MOVED`
/// and `ASK`, reconnecting, waiting out `TRYAGAIN`) before it gives up:
/// enough that the step's timeout, not the count, ends a step that keeps
/// meeting a slot on the move (each round there, `ASK` then `TRYAGAIN`,
/// takes two retries and one wait).
const RETRIES: u32 = 32;

/// The cluster client's timeouts and retries, from `options`.
pub(crate) fn configure(builder: ClusterClientBuilder, options: &Options) -> ClusterClientBuilder {
    // Waits between retries (TRYAGAIN while a slot migrates, CLUSTERDOWN
    // during a failover) of a twenty-fifth to a tenth of the step timeout
    // (20 to 50 ms by default), growing: the retries of one step span its
    // timeout, which is what a migration's window needs (Redis answers a
    // script TRYAGAIN until the slot has moved), and a wait that outlasts
    // the step (the sync client sleeps through it) overruns it by a tenth
    // at most.
    let timeout_ms = u64::try_from(options.timeout.as_millis()).unwrap_or(u64::MAX);
    let min_wait = (timeout_ms / 25).max(1);
    let max_wait = (timeout_ms / 10).max(min_wait + 1);
    builder
        .connection_timeout(options.connect_timeout)
        .response_timeout(options.timeout)
        .retries(RETRIES)
        .min_retry_wait(min_wait)
        .max_retry_wait(max_wait)
}

/// The seed nodes, for messages: their addresses, without credentials.
pub(crate) fn describe(nodes: &[redis::ConnectionInfo]) -> String {
    let addrs: Vec<String> = nodes.iter().map(|node| node.addr().to_string()).collect();
    addrs.join(",")
}

/// The seed nodes `nodes` as connection infos.
pub(crate) fn seeds<I>(nodes: I) -> Result<Vec<redis::ConnectionInfo>, lasier_core::StorageError>
where
    I: IntoIterator,
    I::Item: IntoConnectionInfo,
{
    nodes
        .into_iter()
        .map(|node| {
            node.into_connection_info()
                .map_err(crate::error::from_redis)
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use lasier_core::{Circuit, Config};

    /// A circuit of a breaker named `name` (3 failures open it).
    pub(crate) fn circuit(name: &str, request_key: Option<&str>) -> Circuit {
        let mut config = Config::new(name);
        config.max_failures(3);
        if let Some(key) = request_key {
            config.request_key(key);
        }
        config.validate().unwrap().0
    }

    #[test]
    fn messages_carry_no_credentials() {
        assert_eq!(
            describe(
                &seeds(["redis://:secret@127.0.0.1:7000/", "redis://127.0.0.1:7001"]).unwrap()
            ),
            "127.0.0.1:7000,127.0.0.1:7001"
        );
    }
}
