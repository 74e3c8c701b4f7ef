//! `ClusterRedisStorage`: the blocking storage on a Redis Cluster, over a
//! pool of cluster connections.
//!
//! A redis `ClusterConnection` is one thread's at a time (it keeps one
//! connection per node and its slot map in `RefCell`s), so threads take one
//! each from the pool, as `RedisStorage` does with plain connections. The
//! cluster client retries on its own (following `MOVED` and `ASK`,
//! reconnecting to a node, waiting out `TRYAGAIN`) and connects to nodes as
//! it discovers them, all inside one request; its node connections are
//! [`Armed`], so the step's deadline bounds all of that.
//!
//! A cluster connection whose step failed for want of a node (refused,
//! dropped, timed out, `CLUSTERDOWN`) is dropped with every idle one: its
//! slot map may name a master that is gone, and the client only reads the
//! map again on `MOVED`, which a dead node never sends. A new one reads the
//! map from the first seed node that answers.

use lasier_core::{Circuit, ConfigError, StorageError};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConnection};
use redis::{
    Cmd, ConnectionLike, FromRedisValue, IntoConnectionInfo, RedisResult, ScriptInvocation, Value,
};

use super::route::{eval_of, is_noscript, is_script_load, master_of};
use crate::deadline::Armed;
use crate::error::from_redis;
use crate::pool::{pooled_transport, Connector, Pool};
use crate::{Options, Redis};

/// A cluster client, its seed nodes for messages, and for its watch (none
/// when built from a client builder).
pub(crate) struct Cluster {
    client: ClusterClient,
    nodes: String,
    seeds: Vec<redis::ConnectionInfo>,
}

impl Connector for Cluster {
    type Conn = ClusterConnection<Armed>;

    const NAME: &'static str = "ClusterRedisStorage";

    fn connect(&self, _: &Options) -> RedisResult<Self::Conn> {
        self.client.get_generic_connection::<Armed>()
    }

    // The cluster connection checks its nodes as it uses them.
    fn check(_: &mut Self::Conn) -> bool {
        true
    }

    fn is_open(_: &Self::Conn) -> bool {
        true
    }

    fn query<T: FromRedisValue>(conn: &mut Self::Conn, cmd: &Cmd) -> RedisResult<T> {
        cmd.query(conn)
    }

    fn invoke<T: FromRedisValue>(
        conn: &mut Self::Conn,
        circuit: &Circuit,
        invocation: &ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        let mut route = ScriptRoute {
            cluster: conn,
            key: circuit.keys().failures(),
            eval: false,
        };
        let result = invocation.invoke(&mut route);
        if is_noscript(&result) {
            route.eval = true;
            return invocation.invoke(&mut route);
        }
        result
    }

    fn place(&self) -> String {
        format!("the Redis Cluster at {}", self.nodes)
    }

    fn validate(&self, circuit: &Circuit) -> Result<(), ConfigError> {
        super::hash_slot::validate(circuit)
    }

    fn watch_nodes(&self) -> Vec<redis::ConnectionInfo> {
        self.seeds.clone()
    }
}

pooled_transport!(
    /// The pool of cluster connections under a `ClusterRedisStorage`: up to
    /// [`pool_size`](Options::pool_size) of them, each with a connection to
    /// every node it talks to, each storage step's deadline on their
    /// sockets.
    ClusterPool(Cluster)
);

/// A cluster connection for one circuit's scripts (see `route.rs`).
struct ScriptRoute<'a> {
    cluster: &'a mut ClusterConnection<Armed>,
    key: &'a str,
    eval: bool,
}

impl ConnectionLike for ScriptRoute<'_> {
    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        if is_script_load(cmd) {
            return self.cluster.route_command(cmd, master_of(self.key));
        }
        if self.eval {
            if let Some(eval) = eval_of(cmd) {
                return self.cluster.req_command(&eval);
            }
        }
        self.cluster.req_command(cmd)
    }

    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.cluster.req_packed_command(cmd)
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        self.cluster.req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        0
    }

    fn check_connection(&mut self) -> bool {
        self.cluster.check_connection()
    }

    fn is_open(&self) -> bool {
        self.cluster.is_open()
    }
}

/// Circuit state in a Redis Cluster, for blocking code: implements
/// [`Storage`](lasier_core::Storage), with the same scripts, keys and round
/// trips as [`RedisStorage`](crate::RedisStorage).
///
/// A breaker's scripts touch all of its keys at once, so they must all
/// hash to one slot: give the breaker a name with a hash tag,
/// `"{payments}"`, and its keys (`{payments}`, `{payments}_requests`,
/// `circuit_{payments}`, ...) all hash on `payments`. Building a breaker
/// whose keys would not fails with a
/// [`ConfigError`] that says so and shows the fix. Breakers with
/// different tags spread over the cluster's masters.
///
/// Holds a pool of cluster connections (up to
/// [`pool_size`](Options::pool_size), 16 by default), each with one
/// connection per node it talks to, so that threads sharing one storage do
/// not wait on one another's round trips. Clones share the pool.
///
/// Every storage step ends within the [timeout](Options::timeout) of its
/// [`Options`], 500 ms by default, whatever the cluster client does
/// meanwhile (following `MOVED` and `ASK`, reconnecting, waiting out
/// `TRYAGAIN` during a resharding): each round trip and each connection to
/// a node may take only the time the step has left. (The client sleeps
/// between retries, a tenth of the timeout at most, and a sleep that
/// outlasts the step makes it that much late.) While a master is down and
/// before its replica takes over, steps on its slots fail with
/// [`StorageErrorKind::Unavailable`](lasier_core::StorageErrorKind::Unavailable)
/// (or `TimedOut`), and the breaker's
/// [store-failure policy](lasier_core::StorageFailurePolicy) decides; the
/// next steps read the cluster's new layout.
///
/// ```no_run
/// use std::time::Duration;
/// use lasier_redis::{ClusterRedisStorage, Options};
/// use lasier_sync::CircuitBreaker;
///
/// let storage = ClusterRedisStorage::open_with_options(
///     ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000", "redis://10.0.0.3:7000"],
///     Options::new().timeout(Duration::from_millis(200)),
/// )?;
/// let breaker = CircuitBreaker::builder("{payments}")
///     .storage(storage)
///     .max_failures(5)
///     .build()?;
/// let answer = breaker.call(|| -> Result<u32, std::io::Error> { Ok(42) });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg_attr(docsrs, doc(cfg(all(feature = "cluster", feature = "sync"))))]
pub type ClusterRedisStorage = Redis<ClusterPool>;

impl Redis<ClusterPool> {
    /// A storage on the Redis Cluster that the nodes at `nodes` belong to
    /// (URLs or `redis::ConnectionInfo`s; one is enough, the others are tried
    /// in turn if it does not answer), with the default [`Options`].
    /// Connects on first use.
    ///
    /// URLs take the forms of [`RedisStorage::open`](crate::RedisStorage::open),
    /// without a database number (a cluster has one database); credentials
    /// in them apply to every node.
    ///
    /// # Errors
    ///
    /// [`StorageErrorKind::Other`](lasier_core::StorageErrorKind::Other) if
    /// a URL is invalid, there is none, or they carry different
    /// credentials.
    pub fn open<I>(nodes: I) -> Result<Self, StorageError>
    where
        I: IntoIterator,
        I::Item: IntoConnectionInfo,
    {
        Self::open_with_options(nodes, Options::default())
    }

    /// As [`open`](Self::open), with `options`.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with_options<I>(nodes: I, options: Options) -> Result<Self, StorageError>
    where
        I: IntoIterator,
        I::Item: IntoConnectionInfo,
    {
        let seeds = super::seeds(nodes)?;
        let described = super::describe(&seeds);
        Self::built(
            ClusterClient::builder(seeds.clone()),
            options,
            described,
            seeds,
        )
    }

    /// A storage with a cluster client of your own (a password, TLS
    /// certificates, a user set on `builder`), with `options`; the
    /// storage sets the builder's connection and response timeouts, its
    /// retries and the waits between them, from `options`. Connects on
    /// first use.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn with_builder(
        builder: ClusterClientBuilder,
        options: Options,
    ) -> Result<Self, StorageError> {
        Self::built(builder, options, "its seed nodes".to_owned(), Vec::new())
    }

    fn built(
        builder: ClusterClientBuilder,
        options: Options,
        nodes: String,
        seeds: Vec<redis::ConnectionInfo>,
    ) -> Result<Self, StorageError> {
        let client = super::configure(builder, &options)
            .build()
            .map_err(from_redis)?;
        Ok(Self::over(ClusterPool(Pool::new(
            Cluster {
                client,
                nodes,
                seeds,
            },
            options,
        ))))
    }

    /// The options it was built with.
    pub fn options(&self) -> &Options {
        self.transport().0.options()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use lasier_core::{Storage, StorageErrorKind};

    use super::*;

    #[test]
    fn a_cluster_that_refuses_connections_fails_the_step_and_frees_its_place() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let storage = ClusterRedisStorage::open_with_options(
            [format!("redis://127.0.0.1:{port}/")],
            Options::new().timeout(Duration::from_secs(30)).pool_size(1),
        )
        .unwrap();
        for _ in 0..3 {
            let began = Instant::now();
            let error = storage.get("k").unwrap_err();
            assert_eq!(error.kind(), StorageErrorKind::Unavailable, "{error}");
            assert!(began.elapsed() < Duration::from_secs(10));
        }
        assert_eq!(storage.transport().0.state(), (0, 0));
    }
}
