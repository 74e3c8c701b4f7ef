//! `AsyncClusterRedisStorage`: the async storage on a Redis Cluster, over
//! redis' async cluster connection (one multiplexed connection per node,
//! link by every task), which the storage replaces should it wedge.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use lasier_core::{Circuit, ConfigError, StorageError, StorageErrorKind};
use redis::aio::ConnectionLike;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{
    Cmd, FromRedisValue, IntoConnectionInfo, Pipeline, RedisFuture, ScriptInvocation, Value,
};

use super::route::{eval_of, is_noscript, is_script_load, master_of};
use crate::error::from_redis;
use crate::transport::AsyncTransport;
use crate::{AsyncRedis, Options};

/// How long every step must have failed before the cluster connection is
/// replaced, and how often it may be replaced.
const REPLACE_AFTER: Duration = Duration::from_secs(1);

/// The connection under an `AsyncClusterRedisStorage`, and how to make a
/// new one.
pub struct AsyncCluster {
    link: Arc<Link>,
}

/// What the replacement task shares with the storage.
struct Link {
    client: ClusterClient,
    connection: RwLock<ClusterConnection>,
    /// Whether the last steps failed for want of the cluster: checked
    /// without a lock after each step that succeeds.
    failing: AtomicBool,
    health: Mutex<Health>,
    /// How long making a connection may take.
    connect_budget: Duration,
    nodes: String,
    /// The seed nodes, for the storage's watch (none when built from a
    /// client builder).
    seeds: Vec<redis::ConnectionInfo>,
    connect_timeout: Duration,
}

#[derive(Debug, Default)]
struct Health {
    /// Since when every step has failed, if they do.
    failing_since: Option<Instant>,
    /// When the last replacement started.
    replaced_at: Option<Instant>,
    /// A replacement is under way.
    replacing: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AsyncCluster {
    fn connection(&self) -> ClusterConnection {
        self.link
            .connection
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A replacement under way: over when dropped, even if its task never ran
/// to the end (a runtime shutting down).
struct Replacing(Arc<Link>);

impl Drop for Replacing {
    fn drop(&mut self) {
        lock(&self.0.health).replacing = false;
    }
}

impl AsyncTransport for AsyncCluster {
    async fn query<T: FromRedisValue + Send>(&self, cmd: &Cmd) -> Result<T, StorageError> {
        cmd.query_async(&mut self.connection())
            .await
            .map_err(from_redis)
    }

    async fn invoke<T: FromRedisValue + Send>(
        &self,
        circuit: &Circuit,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StorageError> {
        let mut route = ScriptRoute {
            cluster: self.connection(),
            key: circuit.keys().failures(),
            eval: false,
        };
        let mut result = invocation.invoke_async(&mut route).await;
        if is_noscript(&result) {
            route.eval = true;
            result = invocation.invoke_async(&mut route).await;
        }
        result.map_err(from_redis)
    }

    fn place(&self) -> String {
        format!("the Redis Cluster at {}", self.link.nodes)
    }

    /// Replaces the connection once every step has failed for
    /// [`REPLACE_AFTER`]: redis' async cluster client can wedge when a
    /// master dies under many requests in flight, and then times out every
    /// request even once a replica has taken over.
    fn observe<T>(&self, result: &Result<T, StorageError>) {
        let link = &self.link;
        let failed = matches!(
            result,
            Err(e) if matches!(e.kind(), StorageErrorKind::Unavailable | StorageErrorKind::TimedOut)
        );
        if !failed {
            if link.failing.load(Ordering::Relaxed) {
                link.failing.store(false, Ordering::Relaxed);
                lock(&link.health).failing_since = None;
            }
            return;
        }
        link.failing.store(true, Ordering::Relaxed);
        let now = Instant::now();
        let mut health = lock(&link.health);
        let since = *health.failing_since.get_or_insert(now);
        let due = now.duration_since(since) >= REPLACE_AFTER
            && !health.replacing
            && health
                .replaced_at
                .is_none_or(|at| now.duration_since(at) >= REPLACE_AFTER);
        if !due {
            return;
        }
        health.replacing = true;
        health.replaced_at = Some(now);
        drop(health);
        let replacing = Replacing(Arc::clone(link));
        tokio::spawn(async move {
            let link = &replacing.0;
            let fresh =
                tokio::time::timeout(link.connect_budget, link.client.get_async_connection()).await;
            if let Ok(Ok(connection)) = fresh {
                *link
                    .connection
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = connection;
            }
        });
    }

    fn describe(&self, timeout: Duration, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncClusterRedisStorage")
            .field("nodes", &self.link.nodes)
            .field("timeout", &timeout)
            .field("health", &*lock(&self.link.health))
            .finish_non_exhaustive()
    }

    fn validate(&self, circuit: &Circuit) -> Result<(), ConfigError> {
        super::hash_slot::validate(circuit)
    }

    fn watch_on(&self) -> Option<crate::watch::WatchOn> {
        crate::watch::WatchOn::new(self.link.seeds.clone(), self.link.connect_timeout)
    }
}

impl std::fmt::Debug for AsyncCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncCluster")
            .field("nodes", &self.link.nodes)
            .finish_non_exhaustive()
    }
}

/// The cluster connection for one circuit's scripts (see `route.rs`).
struct ScriptRoute<'k> {
    cluster: ClusterConnection,
    key: &'k str,
    eval: bool,
}

impl ConnectionLike for ScriptRoute<'_> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        if is_script_load(cmd) {
            let routing = master_of(self.key);
            return Box::pin(self.cluster.route_command(cmd.clone(), routing));
        }
        if self.eval {
            if let Some(eval) = eval_of(cmd) {
                return Box::pin(async move { self.cluster.req_packed_command(&eval).await });
            }
        }
        self.cluster.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.cluster.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// Circuit state in a Redis Cluster, for async code (tokio): implements
/// [`AsyncStorage`](lasier_core::AsyncStorage), with the same scripts, keys
/// and round trips as [`AsyncRedisStorage`](crate::AsyncRedisStorage).
///
/// As with `ClusterRedisStorage`, a breaker's keys must all hash to one
/// slot: name it with a hash tag, `"{payments}"`; building a breaker whose
/// keys would not fails with a [`ConfigError`] that shows the fix.
///
/// Runs over redis' async `ClusterConnection`: one multiplexed connection
/// per node, link by every task, that follows `MOVED` and `ASK` and
/// reconnects by itself. Clones share it. Should it stop answering for good
/// (redis' async cluster client can wedge when a master dies under many
/// requests in flight, and then times out every request even once a
/// replica has taken over), the storage replaces it: when every step has
/// failed for a second, a new connection is made in the background (at
/// most one a second), and the steps after it use it.
///
/// Every storage step ends within the [timeout](Options::timeout) of its
/// [`Options`], 500 ms by default, measured by tokio's timer around the
/// whole step, whatever the cluster client does meanwhile; a step that runs
/// out of time fails with
/// [`StorageErrorKind::TimedOut`] and is cancelled.
///
/// ```no_run
/// use lasier_async::CircuitBreaker;
/// use lasier_redis::AsyncClusterRedisStorage;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let storage = AsyncClusterRedisStorage::connect([
///     "redis://10.0.0.1:7000",
///     "redis://10.0.0.2:7000",
///     "redis://10.0.0.3:7000",
/// ])
/// .await?;
/// let breaker = CircuitBreaker::builder("{payments}")
///     .storage(storage)
///     .max_failures(5)
///     .build()?;
/// let answer = breaker.call(async { Ok::<_, std::io::Error>(42) }).await;
/// # Ok(())
/// # }
/// ```
///
/// # Panics
///
/// Its steps use tokio's timer and spawn tasks: they panic if run outside a
/// tokio runtime, or in one built without timers. The cluster connection
/// has the same needs.
#[cfg_attr(docsrs, doc(cfg(all(feature = "cluster", feature = "async"))))]
pub type AsyncClusterRedisStorage = AsyncRedis<AsyncCluster>;

impl AsyncRedis<AsyncCluster> {
    /// Connects to the Redis Cluster that the nodes at `nodes` belong to
    /// (URLs or `redis::ConnectionInfo`s; one is enough, the others are
    /// tried in turn if it does not answer; see
    /// [`ClusterRedisStorage::open`](crate::ClusterRedisStorage::open)), with
    /// the default [`Options`].
    ///
    /// Needs a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`StorageErrorKind::Other`] if a URL is invalid or the nodes refused
    /// the credentials; [`StorageErrorKind::Unavailable`] or
    /// [`TimedOut`](StorageErrorKind::TimedOut) if no node can be reached.
    pub async fn connect<I>(nodes: I) -> Result<Self, StorageError>
    where
        I: IntoIterator,
        I::Item: IntoConnectionInfo,
    {
        Self::connect_with_options(nodes, Options::default()).await
    }

    /// As [`connect`](Self::connect), with `options`: each connection to a
    /// node takes at most [`connect_timeout`](Options::connect_timeout),
    /// each request at most [`timeout`](Options::timeout), as does each
    /// step; connecting takes at most twice their sum.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn connect_with_options<I>(nodes: I, options: Options) -> Result<Self, StorageError>
    where
        I: IntoIterator,
        I::Item: IntoConnectionInfo,
    {
        let seeds = super::seeds(nodes)?;
        let described = super::describe(&seeds);
        Self::connect_as(
            ClusterClient::builder(seeds.clone()),
            options,
            described,
            seeds,
        )
        .await
    }

    /// Connects with a cluster client of your own (a password, TLS
    /// certificates, a user set on `builder`), with `options`; the storage
    /// sets the builder's connection and response timeouts, its retries and
    /// the waits between them, from `options`.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn connect_with_builder(
        builder: ClusterClientBuilder,
        options: Options,
    ) -> Result<Self, StorageError> {
        Self::connect_as(builder, options, "its seed nodes".to_owned(), Vec::new()).await
    }

    async fn connect_as(
        builder: ClusterClientBuilder,
        options: Options,
        nodes: String,
        seeds: Vec<redis::ConnectionInfo>,
    ) -> Result<Self, StorageError> {
        let client = super::configure(builder, &options)
            .build()
            .map_err(from_redis)?;
        // Connecting touches several nodes in turn.
        let budget = options
            .connect_timeout
            .saturating_add(options.timeout)
            .saturating_mul(2);
        let connection = match tokio::time::timeout(budget, client.get_async_connection()).await {
            Ok(connection) => connection.map_err(from_redis)?,
            Err(_elapsed) => {
                return Err(StorageError::new(
                    StorageErrorKind::TimedOut,
                    format!("could not connect to the Redis Cluster at {nodes} within {budget:?}"),
                ))
            }
        };
        let link = Arc::new(Link {
            client,
            connection: RwLock::new(connection),
            failing: AtomicBool::new(false),
            health: Mutex::new(Health::default()),
            connect_budget: budget,
            nodes,
            seeds,
            connect_timeout: options.connect_timeout,
        });
        Ok(Self::over(AsyncCluster { link }, options.timeout))
    }
}
