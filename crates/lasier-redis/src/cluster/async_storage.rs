//! [`AsyncClusterRedisStorage`]: the async storage on a Redis Cluster.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use lasier_core::state::{Admission, Outcome, Permit, State, Transition};
use lasier_core::{
    async_trait, AsyncStorage, Circuit, ConfigError, Counts, Rule, StorageError, StorageErrorKind,
};
use redis::aio::ConnectionLike;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{
    Cmd, ErrorKind, FromRedisValue, Pipeline, RedisFuture, ScriptInvocation, ServerErrorKind, Value,
};

use crate::error::from_redis;
use crate::{commands, scripts, Options};

/// How long every step must have failed before the cluster connection is
/// replaced, and how often it may be replaced.
const REPLACE_AFTER: Duration = Duration::from_secs(1);

/// Circuit state in a Redis Cluster, for async code (tokio): implements
/// [`AsyncStorage`], with the same scripts, keys and round trips as
/// [`AsyncRedisStorage`](crate::AsyncRedisStorage).
///
/// As with [`ClusterRedisStorage`](crate::ClusterRedisStorage), a
/// breaker's keys must all hash to one slot: name it with a hash tag,
/// `"{payments}"`; building a breaker whose keys would not fails with a
/// [`ConfigError`] that shows the fix.
///
/// Runs over redis' async `ClusterConnection`: one multiplexed connection
/// per node, shared by every task, that follows `MOVED` and `ASK` and
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
#[derive(Clone)]
#[cfg_attr(docsrs, doc(cfg(all(feature = "cluster", feature = "async"))))]
pub struct AsyncClusterRedisStorage {
    shared: Arc<Shared>,
    timeout: Duration,
}

/// What clones share: the connection, and how to make a new one.
struct Shared {
    client: ClusterClient,
    connection: RwLock<ClusterConnection>,
    /// Whether the last steps failed for want of the cluster: checked
    /// without a lock after each step that succeeds.
    failing: AtomicBool,
    health: Mutex<Health>,
    /// How long making a connection may take.
    connect_budget: Duration,
    nodes: Arc<str>,
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

impl Shared {
    fn connection(&self) -> ClusterConnection {
        self.connection
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Notes how a step ended; replaces the connection once every step has
    /// failed for [`REPLACE_AFTER`].
    fn observe<T>(self: &Arc<Self>, result: &Result<T, StorageError>) {
        let failed = matches!(
            result,
            Err(e) if matches!(e.kind(), StorageErrorKind::Unavailable | StorageErrorKind::TimedOut)
        );
        if !failed {
            if self.failing.load(Ordering::Relaxed) {
                self.failing.store(false, Ordering::Relaxed);
                lock(&self.health).failing_since = None;
            }
            return;
        }
        self.failing.store(true, Ordering::Relaxed);
        let now = Instant::now();
        let mut health = lock(&self.health);
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
        let replacing = Replacing(Arc::clone(self));
        tokio::spawn(async move {
            let shared = &replacing.0;
            let fresh =
                tokio::time::timeout(shared.connect_budget, shared.client.get_async_connection())
                    .await;
            if let Ok(Ok(connection)) = fresh {
                *shared
                    .connection
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = connection;
            }
        });
    }
}

/// A replacement under way: over when dropped, even if its task never ran
/// to the end (a runtime shutting down).
struct Replacing(Arc<Shared>);

impl Drop for Replacing {
    fn drop(&mut self) {
        lock(&self.0.health).replacing = false;
    }
}

impl AsyncClusterRedisStorage {
    /// Connects to the Redis Cluster that the nodes at `urls` belong to
    /// (one is enough; the others are tried in turn if it does not answer;
    /// see [`ClusterRedisStorage::open`](crate::ClusterRedisStorage::open)
    /// for the URLs), with the default [`Options`].
    ///
    /// Needs a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`StorageErrorKind::Other`] if a URL is invalid or the nodes refused
    /// the credentials; [`StorageErrorKind::Unavailable`] or
    /// [`TimedOut`](StorageErrorKind::TimedOut) if no node can be reached.
    pub async fn connect<I>(urls: I) -> Result<Self, StorageError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::connect_with_options(urls, Options::default()).await
    }

    /// As [`connect`](Self::connect), with `options`: each connection to a
    /// node takes at most [`connect_timeout`](Options::connect_timeout),
    /// each request at most [`timeout`](Options::timeout), as does each
    /// step; connecting takes at most twice their sum.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn connect_with_options<I>(urls: I, options: Options) -> Result<Self, StorageError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let urls: Vec<String> = urls.into_iter().map(|u| u.as_ref().to_owned()).collect();
        let nodes = super::describe(&urls);
        Self::connect_as(ClusterClient::builder(urls), options, nodes).await
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
        Self::connect_as(builder, options, "a Redis Cluster".to_owned()).await
    }

    async fn connect_as(
        builder: ClusterClientBuilder,
        options: Options,
        nodes: String,
    ) -> Result<Self, StorageError> {
        crate::install_crypto_provider();
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
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                connection: RwLock::new(connection),
                failing: AtomicBool::new(false),
                health: Mutex::new(Health::default()),
                connect_budget: budget,
                nodes: Arc::from(nodes),
            }),
            timeout: options.timeout,
        })
    }

    /// The step timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs one storage step, within the timeout.
    async fn step<T>(
        &self,
        step: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        let result = match tokio::time::timeout(self.timeout, step).await {
            Ok(result) => result,
            Err(_elapsed) => Err(StorageError::new(
                StorageErrorKind::TimedOut,
                format!(
                    "no answer from the Redis Cluster at {} within {:?}",
                    self.shared.nodes, self.timeout
                ),
            )),
        };
        self.shared.observe(&result);
        result
    }

    /// `EVALSHA` on the master of the circuit's slot; on `NOSCRIPT`,
    /// `SCRIPT LOAD` there and `EVALSHA` again; on `NOSCRIPT` again (a slot
    /// map behind the redirections), `EVAL` with the source, as the sync
    /// storage does.
    async fn invoke<T: FromRedisValue>(
        &self,
        circuit: &Circuit,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StorageError> {
        let mut route = ScriptRoute {
            cluster: self.shared.connection(),
            key: circuit.keys().failures(),
            eval: false,
        };
        let mut result = invocation.invoke_async(&mut route).await;
        if matches!(&result, Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)) {
            route.eval = true;
            result = invocation.invoke_async(&mut route).await;
        }
        result.map_err(from_redis)
    }

    async fn run<T: FromRedisValue>(
        &self,
        circuit: &Circuit,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StorageError> {
        self.step(self.invoke(circuit, invocation)).await
    }

    async fn query<T: FromRedisValue>(&self, command: &Cmd) -> Result<T, StorageError> {
        self.step(async {
            let mut connection = self.shared.connection();
            command
                .query_async(&mut connection)
                .await
                .map_err(from_redis)
        })
        .await
    }
}

/// The cluster connection for one circuit's scripts: `SCRIPT LOAD` goes to
/// the master of the circuit's slot, where the script runs, rather than to
/// every node as the cluster client would send it (a round trip per node,
/// and a failure while one of them is down).
/// With `eval`, `EVALSHA` goes as `EVAL` with the script's source.
struct ScriptRoute<'k> {
    cluster: ClusterConnection,
    key: &'k str,
    eval: bool,
}

impl ConnectionLike for ScriptRoute<'_> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        if super::is_script_load(cmd) {
            let routing = super::master_of(self.key);
            return Box::pin(self.cluster.route_command(cmd.clone(), routing));
        }
        if self.eval {
            if let Some(eval) = super::eval_of(cmd) {
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

impl fmt::Debug for AsyncClusterRedisStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncClusterRedisStorage")
            .field("nodes", &self.shared.nodes)
            .field("timeout", &self.timeout)
            .field("health", &*lock(&self.shared.health))
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl AsyncStorage for AsyncClusterRedisStorage {
    async fn add(
        &self,
        key: &str,
        value: i64,
        ttl: Option<Duration>,
    ) -> Result<bool, StorageError> {
        let reply: Option<String> = self.query(&commands::add(key, value, ttl)).await?;
        Ok(reply.is_some())
    }

    async fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError> {
        self.query::<()>(&commands::set(key, value, ttl)).await
    }

    async fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
        self.query(redis::cmd("INCRBY").arg(key).arg(delta)).await
    }

    async fn get(&self, key: &str) -> Result<Option<i64>, StorageError> {
        let reply: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(key)).await?;
        scripts::integer(key, reply)
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError> {
        self.query::<()>(&commands::expire(key, ttl)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.query::<()>(redis::cmd("DEL").arg(key)).await
    }

    async fn admit(
        &self,
        circuit: &Circuit,
    ) -> Result<(Admission, Option<Transition>), StorageError> {
        let reply: Vec<i64> = self.run(circuit, &scripts::admit(circuit)).await?;
        scripts::admitted(&reply)
    }

    async fn record(
        &self,
        circuit: &Circuit,
        permit: Permit,
        outcome: Outcome,
        rule: &dyn Rule,
    ) -> Result<Option<Transition>, StorageError> {
        match permit {
            Permit::Normal => {
                if outcome == Outcome::Success && !circuit.counts_requests() {
                    return Ok(None);
                }
                // One step, one deadline: the trip's round trip too.
                self.step(async {
                    let reply: Vec<i64> = self
                        .invoke(circuit, &scripts::record(circuit, outcome))
                        .await?;
                    if !scripts::trips(circuit, outcome, &reply, rule)? {
                        return Ok(None);
                    }
                    let opened: i64 = self.invoke(circuit, &scripts::open(circuit, true)).await?;
                    Ok(scripts::tripped(opened))
                })
                .await
            }
            Permit::Trial { episode } => {
                let reply: i64 = self
                    .run(circuit, &scripts::trial(circuit, outcome, episode))
                    .await?;
                scripts::trial_ended(reply)
            }
        }
    }

    async fn release(&self, circuit: &Circuit, permit: Permit) -> Result<(), StorageError> {
        let Permit::Trial { episode } = permit else {
            return Ok(());
        };
        self.run::<i64>(circuit, &scripts::release(circuit, episode))
            .await
            .map(drop)
    }

    async fn open_circuit(&self, circuit: &Circuit) -> Result<(), StorageError> {
        self.run::<i64>(circuit, &scripts::open(circuit, false))
            .await
            .map(drop)
    }

    async fn state(&self, circuit: &Circuit) -> Result<State, StorageError> {
        scripts::state_of(self.run(circuit, &scripts::state(circuit)).await?)
    }

    async fn counts(&self, circuit: &Circuit) -> Result<Counts, StorageError> {
        let reply: Vec<i64> = self.run(circuit, &scripts::counts(circuit)).await?;
        scripts::counts_of(circuit, &reply)
    }

    async fn reset(&self, circuit: &Circuit) -> Result<(), StorageError> {
        self.query::<()>(&commands::reset(circuit)).await
    }

    /// Refuses a circuit whose keys do not all hash to one slot, with a
    /// message that shows the fix (a hash tag).
    fn validate(&self, circuit: &Circuit) -> Result<(), ConfigError> {
        super::validate(circuit)
    }
}
