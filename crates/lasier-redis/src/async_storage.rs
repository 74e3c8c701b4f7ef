//! [`AsyncRedisStorage`]: the async storage, over redis' `ConnectionManager`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lasier_core::state::{Admission, Outcome, Permit, State, Transition};
use lasier_core::{
    async_trait, AsyncStorage, Circuit, Counts, Rule, StorageError, StorageErrorKind,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncConnectionConfig, Client, FromRedisValue, ScriptInvocation};
use tokio::sync::OnceCell;

use crate::error::from_redis;
use crate::{commands, scripts, Options};

/// Circuit state in Redis, for async code (tokio): implements
/// [`AsyncStorage`].
///
/// Runs over a [`ConnectionManager`]: one multiplexed connection that every
/// task shares without waiting for one another's replies, and that
/// reconnects by itself. Clones share the connection. Breakers with the
/// same name on the same Redis share one circuit, whatever process they run
/// in, including Python `lasier` services.
///
/// Every storage step (an admission, a record, a read) ends within the
/// [timeout](Options::timeout) of its [`Options`], 500 ms by default,
/// measured by tokio's timer around the whole step, whatever it waits for
/// (a reconnection, replies); a step that runs out of time fails with
/// [`StorageErrorKind::TimedOut`] and is cancelled.
///
/// [`connect`](Self::connect) connects before it returns, and fails if
/// Redis cannot be reached; [`open`](Self::open) returns at once and
/// connects on the first step (and on each step after that while Redis
/// cannot be reached), so that a service can start, and its breakers
/// follow their [storage failure policy](lasier_core::StorageFailurePolicy),
/// while Redis is down.
///
/// ```no_run
/// use lasier_core::AsyncStorage;
/// use lasier_redis::AsyncRedisStorage;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let storage = AsyncRedisStorage::connect("redis://127.0.0.1:6379").await?;
/// // Hand it to a breaker of `lasier-async`, or use the steps directly:
/// storage.set("example", 1, None).await?;
/// assert_eq!(storage.get("example").await?, Some(1));
/// # Ok(())
/// # }
/// ```
///
/// # Panics
///
/// Its steps use tokio's timer: they panic if run outside a tokio runtime,
/// or in one built without timers (`Builder::enable_time`, which
/// `#[tokio::main]` and `#[tokio::test]` turn on). The `ConnectionManager`
/// has the same needs.
#[derive(Clone)]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub struct AsyncRedisStorage {
    connection: Arc<Connection>,
    timeout: Duration,
    addr: Option<String>,
}

/// The `ConnectionManager`, made on the first step that needs it when the
/// storage was [opened](AsyncRedisStorage::open) rather than connected.
struct Connection {
    manager: OnceCell<ConnectionManager>,
    /// How to make it (and the timeout of one connection attempt); `None`
    /// when it was given.
    make: Option<(Client, ConnectionManagerConfig, Duration)>,
}

impl Connection {
    /// How to make the manager.
    fn recipe(&self) -> Result<&(Client, ConnectionManagerConfig, Duration), StorageError> {
        self.make.as_ref().ok_or_else(|| {
            StorageError::new(
                StorageErrorKind::Other,
                "no Redis connection and no way to make one",
            )
        })
    }

    /// Makes the manager now, with its retries (what `connect` does).
    async fn connect(&self) -> Result<(), StorageError> {
        self.manager
            .get_or_try_init(|| async {
                let (client, config, _) = self.recipe()?;
                ConnectionManager::new_with_config(client.clone(), config.clone())
                    .await
                    .map_err(from_redis)
            })
            .await
            .map(drop)
    }

    /// The manager, made on first use after one plain attempt.
    async fn get(&self) -> Result<ConnectionManager, StorageError> {
        self.manager
            .get_or_try_init(|| async {
                let (client, config, connect_timeout) = self.recipe()?;
                // One attempt first: a refused connection fails the step at
                // once (the manager would retry, with back-off, past the
                // step's timeout); credentials are checked here too.
                let probe =
                    AsyncConnectionConfig::new().set_connection_timeout(Some(*connect_timeout));
                drop(
                    client
                        .get_multiplexed_async_connection_with_config(&probe)
                        .await
                        .map_err(from_redis)?,
                );
                ConnectionManager::new_with_config(client.clone(), config.clone())
                    .await
                    .map_err(from_redis)
            })
            .await
            .cloned()
    }
}

impl AsyncRedisStorage {
    /// Connects to the Redis server at `url` (see
    /// [`RedisStorage::open`](crate::RedisStorage::open) for the forms,
    /// passwords and TLS), with the default [`Options`]: a 1 s connect
    /// timeout per attempt, 3 reconnection attempts each time the connection
    /// drops, and a 500 ms timeout on every step.
    ///
    /// Needs a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`StorageErrorKind::Other`] if `url` is not a valid Redis URL or the
    /// server refused the credentials;
    /// [`StorageErrorKind::Unavailable`] or [`TimedOut`](StorageErrorKind::TimedOut)
    /// if the server cannot be reached (after the retries).
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        Self::connect_with_options(url, Options::default()).await
    }

    /// As [`connect`](Self::connect), with `options`: each connection
    /// attempt (the first and those after a lost connection) takes at most
    /// [`connect_timeout`](Options::connect_timeout), with
    /// [`reconnect_retries`](Options::reconnect_retries) retries; each
    /// request on the connection at most [`timeout`](Options::timeout), as
    /// does each step.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn connect_with_options(url: &str, options: Options) -> Result<Self, StorageError> {
        let storage = Self::open_with_options(url, options)?;
        storage.connection.connect().await?;
        Ok(storage)
    }

    /// A storage for the Redis server at `url` (see [`connect`](Self::connect)
    /// for the defaults) that connects on its first step rather than now:
    /// it returns at once, whether or not Redis can be reached. A step that
    /// finds no connection makes one, within the step's
    /// [timeout](Options::timeout); until one is made, steps fail with
    /// [`StorageErrorKind::Unavailable`] or
    /// [`TimedOut`](StorageErrorKind::TimedOut), and breakers follow their
    /// storage failure policy. Once connected, the `ConnectionManager`
    /// reconnects by itself, as with `connect`.
    ///
    /// While Redis cannot be reached, a step tries one connection: refused,
    /// it fails at once (as the sync storage's steps do); unanswered, it
    /// takes the step's timeout. Under the default `LocalFallback` policy
    /// only the probe of each interval tries.
    ///
    /// Needs a tokio runtime for its steps, not to be called.
    ///
    /// # Errors
    ///
    /// [`StorageErrorKind::Other`] if `url` is not a valid Redis URL.
    pub fn open(url: &str) -> Result<Self, StorageError> {
        Self::open_with_options(url, Options::default())
    }

    /// As [`open`](Self::open), with `options` (as
    /// [`connect_with_options`](Self::connect_with_options) takes them).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with_options(url: &str, options: Options) -> Result<Self, StorageError> {
        crate::install_crypto_provider();
        let client = Client::open(url).map_err(from_redis)?;
        let addr = client.get_connection_info().addr().to_string();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(options.reconnect_retries);
        Ok(Self {
            connection: Arc::new(Connection {
                manager: OnceCell::new(),
                make: Some((client, config, options.connect_timeout)),
            }),
            timeout: options.timeout,
            addr: Some(addr),
        })
    }

    /// A storage over `connection`, with its own timeouts and reconnection
    /// policy, and the default step [timeout](Options::timeout) (500 ms)
    /// on top.
    pub fn new(connection: ConnectionManager) -> Self {
        Self::with_options(connection, Options::default())
    }

    /// A storage over `connection`, with its own timeouts and reconnection
    /// policy; of `options`, only the step [timeout](Options::timeout)
    /// applies (the others are the `ConnectionManager`'s business).
    pub fn with_options(connection: ConnectionManager, options: Options) -> Self {
        crate::install_crypto_provider();
        Self {
            connection: Arc::new(Connection {
                manager: OnceCell::new_with(Some(connection)),
                make: None,
            }),
            timeout: options.timeout,
            addr: None,
        }
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
        match tokio::time::timeout(self.timeout, step).await {
            Ok(result) => result,
            Err(_elapsed) => Err(StorageError::new(
                StorageErrorKind::TimedOut,
                match &self.addr {
                    Some(addr) => {
                        format!("no answer from Redis at {addr} within {:?}", self.timeout)
                    }
                    None => format!("no answer from Redis within {:?}", self.timeout),
                },
            )),
        }
    }

    async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StorageError> {
        let mut connection = self.connection.get().await?;
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(from_redis)
    }

    async fn run<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StorageError> {
        self.step(self.invoke(invocation)).await
    }

    async fn query<T: FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, StorageError> {
        self.step(async {
            let mut connection = self.connection.get().await?;
            command
                .query_async(&mut connection)
                .await
                .map_err(from_redis)
        })
        .await
    }
}

impl fmt::Debug for AsyncRedisStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncRedisStorage")
            .field("addr", &self.addr)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl AsyncStorage for AsyncRedisStorage {
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
        let reply: Vec<i64> = self.run(&scripts::admit(circuit)).await?;
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
                    let reply: Vec<i64> = self.invoke(&scripts::record(circuit, outcome)).await?;
                    if !scripts::trips(circuit, outcome, &reply, rule)? {
                        return Ok(None);
                    }
                    let opened: i64 = self.invoke(&scripts::open(circuit, true)).await?;
                    Ok(scripts::tripped(opened))
                })
                .await
            }
            Permit::Trial { episode } => {
                let reply: i64 = self.run(&scripts::trial(circuit, outcome, episode)).await?;
                scripts::trial_ended(reply)
            }
        }
    }

    async fn release(&self, circuit: &Circuit, permit: Permit) -> Result<(), StorageError> {
        let Permit::Trial { episode } = permit else {
            return Ok(());
        };
        self.run::<i64>(&scripts::release(circuit, episode))
            .await
            .map(drop)
    }

    async fn open_circuit(&self, circuit: &Circuit) -> Result<(), StorageError> {
        self.run::<i64>(&scripts::open(circuit, false))
            .await
            .map(drop)
    }

    async fn state(&self, circuit: &Circuit) -> Result<State, StorageError> {
        scripts::state_of(self.run(&scripts::state(circuit)).await?)
    }

    async fn counts(&self, circuit: &Circuit) -> Result<Counts, StorageError> {
        let reply: Vec<i64> = self.run(&scripts::counts(circuit)).await?;
        scripts::counts_of(circuit, &reply)
    }

    async fn reset(&self, circuit: &Circuit) -> Result<(), StorageError> {
        self.query::<()>(&commands::reset(circuit)).await
    }
}
