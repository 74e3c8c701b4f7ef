//! [`ClusterRedisStorage`]: the blocking storage on a Redis Cluster.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use lasier_core::state::{Admission, Outcome, Permit, State, Transition};
use lasier_core::{Circuit, ConfigError, Counts, Rule, Storage, StorageError};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::{
    Cmd, ConnectionLike, ErrorKind, FromRedisValue, RedisResult, ScriptInvocation, ServerErrorKind,
    Value,
};

use super::pool::{Cluster, ClusterPool, Session};
use crate::error::from_redis;
use crate::{commands, scripts, Options};

/// Circuit state in a Redis Cluster, for blocking code: implements
/// [`Storage`], with the same scripts, keys and round trips as
/// [`RedisStorage`](crate::RedisStorage).
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
/// outlasts the step makes it that much late.) While a master is down and before its
/// replica takes over, steps on its slots fail with
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
#[derive(Clone)]
#[cfg_attr(docsrs, doc(cfg(all(feature = "cluster", feature = "sync"))))]
pub struct ClusterRedisStorage {
    pool: Arc<ClusterPool>,
    nodes: Arc<str>,
}

impl ClusterRedisStorage {
    /// A storage on the Redis Cluster that the nodes at `urls` belong to
    /// (one is enough; the others are tried in turn if it does not
    /// answer), with the default [`Options`]. Connects on first use.
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
    pub fn open<I>(urls: I) -> Result<Self, StorageError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::open_with_options(urls, Options::default())
    }

    /// As [`open`](Self::open), with `options`.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with_options<I>(urls: I, options: Options) -> Result<Self, StorageError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let urls: Vec<String> = urls.into_iter().map(|u| u.as_ref().to_owned()).collect();
        let nodes = super::describe(&urls);
        let mut storage = Self::with_builder(ClusterClient::builder(urls), options)?;
        storage.nodes = Arc::from(nodes);
        Ok(storage)
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
        crate::install_crypto_provider();
        let client = super::configure(builder, &options)
            .build()
            .map_err(from_redis)?;
        Ok(Self {
            pool: Arc::new(ClusterPool::new(client, options)),
            nodes: Arc::from("a Redis Cluster"),
        })
    }

    /// The options it was built with.
    pub fn options(&self) -> &Options {
        self.pool.options()
    }

    fn session(&self) -> Result<Session<'_>, StorageError> {
        self.pool.session()
    }

    fn run<T: FromRedisValue>(
        &self,
        circuit: &Circuit,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StorageError> {
        run(&mut self.session()?, circuit, invocation)
    }

    fn query<T: FromRedisValue>(&self, command: &Cmd) -> Result<T, StorageError> {
        let mut session = self.session()?;
        let result = session
            .cluster()
            .and_then(|cluster| command.query(cluster).map_err(from_redis));
        session.settle(result)
    }
}

/// A cluster connection for one circuit's scripts: `SCRIPT LOAD` goes to
/// the master of the circuit's slot, where the script runs, rather than to
/// every node as the cluster client would send it (a round trip per node,
/// and a failure while one of them is down).
/// With `eval`, `EVALSHA` goes as `EVAL` with the script's source.
struct ScriptRoute<'a> {
    cluster: &'a mut Cluster,
    key: &'a str,
    eval: bool,
}

impl ConnectionLike for ScriptRoute<'_> {
    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        if super::is_script_load(cmd) {
            return self.cluster.route_command(cmd, super::master_of(self.key));
        }
        if self.eval {
            if let Some(eval) = super::eval_of(cmd) {
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

fn is_noscript<T>(result: &RedisResult<T>) -> bool {
    matches!(result, Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript))
}

/// Runs a script of `circuit` within the session's deadline: `EVALSHA` on
/// the master of its slot; on `NOSCRIPT`, `SCRIPT LOAD` there and
/// `EVALSHA` again.
///
/// Should that answer `NOSCRIPT` too, the client's slot map names another
/// node than the one the redirections lead to (a failover or a resharding
/// that the map has not caught up with), and the script goes as `EVAL`
/// with its source, which runs wherever the slot is and leaves the script
/// cached there.
fn run<T: FromRedisValue>(
    session: &mut Session<'_>,
    circuit: &Circuit,
    invocation: &ScriptInvocation<'_>,
) -> Result<T, StorageError> {
    let result = session.cluster().and_then(|cluster| {
        let mut route = ScriptRoute {
            cluster,
            key: circuit.keys().failures(),
            eval: false,
        };
        let mut result = invocation.invoke(&mut route);
        if is_noscript(&result) {
            route.eval = true;
            result = invocation.invoke(&mut route);
        }
        result.map_err(from_redis)
    });
    session.settle(result)
}

impl fmt::Debug for ClusterRedisStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (connections, idle) = self.pool.state();
        f.debug_struct("ClusterRedisStorage")
            .field("nodes", &self.nodes)
            .field("timeout", &self.options().timeout)
            .field("connections", &connections)
            .field("idle", &idle)
            .finish()
    }
}

impl Storage for ClusterRedisStorage {
    fn add(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<bool, StorageError> {
        let reply: Option<String> = self.query(&commands::add(key, value, ttl))?;
        Ok(reply.is_some())
    }

    fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError> {
        self.query::<()>(&commands::set(key, value, ttl))
    }

    fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
        self.query(redis::cmd("INCRBY").arg(key).arg(delta))
    }

    fn get(&self, key: &str) -> Result<Option<i64>, StorageError> {
        let reply: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(key))?;
        scripts::integer(key, reply)
    }

    fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError> {
        self.query::<()>(&commands::expire(key, ttl))
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.query::<()>(redis::cmd("DEL").arg(key))
    }

    fn admit(&self, circuit: &Circuit) -> Result<(Admission, Option<Transition>), StorageError> {
        let reply: Vec<i64> = self.run(circuit, &scripts::admit(circuit))?;
        scripts::admitted(&reply)
    }

    fn record(
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
                let mut session = self.session()?;
                let reply: Vec<i64> =
                    run(&mut session, circuit, &scripts::record(circuit, outcome))?;
                if !scripts::trips(circuit, outcome, &reply, rule)? {
                    return Ok(None);
                }
                let opened: i64 = run(&mut session, circuit, &scripts::open(circuit, true))?;
                Ok(scripts::tripped(opened))
            }
            Permit::Trial { episode } => {
                let reply: i64 = self.run(circuit, &scripts::trial(circuit, outcome, episode))?;
                scripts::trial_ended(reply)
            }
        }
    }

    fn release(&self, circuit: &Circuit, permit: Permit) -> Result<(), StorageError> {
        let Permit::Trial { episode } = permit else {
            return Ok(());
        };
        self.run::<i64>(circuit, &scripts::release(circuit, episode))
            .map(drop)
    }

    fn open_circuit(&self, circuit: &Circuit) -> Result<(), StorageError> {
        self.run::<i64>(circuit, &scripts::open(circuit, false))
            .map(drop)
    }

    fn state(&self, circuit: &Circuit) -> Result<State, StorageError> {
        scripts::state_of(self.run(circuit, &scripts::state(circuit))?)
    }

    fn counts(&self, circuit: &Circuit) -> Result<Counts, StorageError> {
        let reply: Vec<i64> = self.run(circuit, &scripts::counts(circuit))?;
        scripts::counts_of(circuit, &reply)
    }

    fn reset(&self, circuit: &Circuit) -> Result<(), StorageError> {
        self.query::<()>(&commands::reset(circuit))
    }

    /// Refuses a circuit whose keys do not all hash to one slot, with a
    /// message that shows the fix (a hash tag).
    fn validate(&self, circuit: &Circuit) -> Result<(), ConfigError> {
        super::validate(circuit)
    }
}
