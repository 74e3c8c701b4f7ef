//! [`AsyncRedisStorage`]: the async storage, over redis' `ConnectionManager`.

use std::fmt;
use std::time::Duration;

use lasier_core::state::{Admission, Outcome, Permit, State, Transition};
use lasier_core::{async_trait, AsyncStorage, Circuit, Counts, Rule, StorageError};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, FromRedisValue, ScriptInvocation};

use crate::error::from_redis;
use crate::{commands, scripts, CONNECT_TIMEOUT, RESPONSE_TIMEOUT};

/// Reconnection attempts of a `ConnectionManager` made by
/// [`AsyncRedisStorage::connect`], 100 ms apart and doubling.
const RECONNECT_RETRIES: usize = 3;

/// Circuit state in Redis, for async code (tokio): implements
/// [`AsyncStorage`].
///
/// Runs over a [`ConnectionManager`]: one multiplexed connection that every
/// task shares without waiting for one another's replies, and that
/// reconnects by itself. Clones share the connection. Breakers with the
/// same name on the same Redis share one circuit, whatever process they run
/// in, including Python `lasier` services.
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
#[derive(Clone)]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub struct AsyncRedisStorage {
    connection: ConnectionManager,
    addr: Option<String>,
}

impl AsyncRedisStorage {
    /// Connects to the Redis server at `url` (see
    /// [`RedisStorage::open`](crate::RedisStorage::open) for the forms),
    /// with a 1 s connect timeout, a 500 ms timeout on every command and
    /// up to 3 reconnection attempts each time the connection drops.
    ///
    /// Needs a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`StorageErrorKind::Other`](lasier_core::StorageErrorKind::Other) if
    /// `url` is not a valid Redis URL;
    /// [`StorageErrorKind::Unavailable`](lasier_core::StorageErrorKind::Unavailable)
    /// or [`TimedOut`](lasier_core::StorageErrorKind::TimedOut) if the
    /// server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        let client = Client::open(url).map_err(from_redis)?;
        let addr = client.get_connection_info().addr().to_string();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(RECONNECT_RETRIES);
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(from_redis)?;
        Ok(Self {
            connection,
            addr: Some(addr),
        })
    }

    /// A storage over `connection`, with whatever timeouts and reconnection
    /// policy it was configured with.
    pub fn new(connection: ConnectionManager) -> Self {
        Self {
            connection,
            addr: None,
        }
    }

    async fn run<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StorageError> {
        let mut connection = self.connection.clone();
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(from_redis)
    }

    async fn query<T: FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, StorageError> {
        let mut connection = self.connection.clone();
        command
            .query_async(&mut connection)
            .await
            .map_err(from_redis)
    }
}

impl fmt::Debug for AsyncRedisStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncRedisStorage")
            .field("addr", &self.addr)
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
                let reply: Vec<i64> = self.run(&scripts::record(circuit, outcome)).await?;
                if !scripts::trips(circuit, outcome, &reply, rule)? {
                    return Ok(None);
                }
                let opened: i64 = self.run(&scripts::open(circuit, true)).await?;
                Ok(scripts::tripped(opened))
            }
            Permit::Trial { .. } => {
                let reply: i64 = self.run(&scripts::trial(circuit, outcome)).await?;
                scripts::trial_ended(reply)
            }
        }
    }

    async fn release(&self, circuit: &Circuit, permit: Permit) -> Result<(), StorageError> {
        if permit == Permit::Normal {
            return Ok(());
        }
        self.run::<i64>(&scripts::release(circuit)).await.map(drop)
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
