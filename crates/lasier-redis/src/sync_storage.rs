//! [`RedisStorage`]: the blocking storage, over a pool of connections.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use lasier_core::state::{Admission, Outcome, Permit, State, Transition};
use lasier_core::{Circuit, Counts, Rule, Storage, StorageError};
use redis::{Client, Connection, ConnectionLike, FromRedisValue, RedisError, ScriptInvocation};

use crate::error::{from_pool, from_redis};
use crate::{scripts, CONNECT_TIMEOUT, POOL_SIZE, RESPONSE_TIMEOUT};

type Pool = r2d2::Pool<Manager>;
type Pooled = r2d2::PooledConnection<Manager>;

/// Circuit state in Redis, for blocking code: implements [`Storage`].
///
/// Holds a pool of connections (r2d2, up to 16), so that threads sharing one
/// storage do not wait on one another's round trips. Clones share the pool.
/// Breakers with the same name on the same Redis share one circuit, whatever
/// process they run in, including Python `lasier` services.
///
/// Connections are made on first use, each with a 1 s connect timeout and a
/// 500 ms timeout on every command; a call that cannot get a connection
/// within 1 s fails with [`StorageErrorKind::Unavailable`]. No call blocks
/// forever.
///
/// ```no_run
/// use lasier_redis::RedisStorage;
/// use lasier_sync::CircuitBreaker;
///
/// let breaker = CircuitBreaker::builder("payments")
///     .storage(RedisStorage::open("redis://127.0.0.1:6379")?)
///     .max_failures(5)
///     .build()?;
/// let answer = breaker.call(|| -> Result<u32, std::io::Error> { Ok(42) });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// [`StorageErrorKind::Unavailable`]: lasier_core::StorageErrorKind::Unavailable
#[derive(Clone)]
#[cfg_attr(docsrs, doc(cfg(feature = "sync")))]
pub struct RedisStorage {
    pool: Pool,
    addr: Arc<str>,
}

impl RedisStorage {
    /// A storage on the Redis server at `url` (`redis://[:password@]host[:port][/db]`,
    /// `rediss://` for TLS if redis' TLS features are on, `redis+unix:///path`).
    /// Connections are made on first use, as with [`Client::open`].
    ///
    /// # Errors
    ///
    /// [`StorageErrorKind::Other`](lasier_core::StorageErrorKind::Other) if
    /// `url` is not a valid Redis URL.
    pub fn open(url: &str) -> Result<Self, StorageError> {
        Ok(Self::new(Client::open(url).map_err(from_redis)?))
    }

    /// A storage on the server of `client`. Connects on first use.
    pub fn new(client: Client) -> Self {
        let addr = Arc::from(client.get_connection_info().addr().to_string());
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            // Connections are made when needed; none is kept open idle.
            .min_idle(Some(0))
            // No PING before each use: it would double the round trips.
            // A broken connection is dropped when it fails instead.
            .test_on_check_out(false)
            .connection_timeout(CONNECT_TIMEOUT)
            .build_unchecked(Manager {
                client,
                connect_timeout: CONNECT_TIMEOUT,
                response_timeout: RESPONSE_TIMEOUT,
            });
        Self { pool, addr }
    }

    fn connection(&self) -> Result<Pooled, StorageError> {
        self.pool.get().map_err(from_pool)
    }

    fn run<T: FromRedisValue>(&self, invocation: &ScriptInvocation<'_>) -> Result<T, StorageError> {
        let mut connection = self.connection()?;
        invocation.invoke(&mut *connection).map_err(from_redis)
    }

    fn query<T: FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, StorageError> {
        let mut connection = self.connection()?;
        command.query(&mut *connection).map_err(from_redis)
    }
}

impl fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.pool.state();
        f.debug_struct("RedisStorage")
            .field("addr", &self.addr)
            .field("connections", &state.connections)
            .field("idle", &state.idle_connections)
            .finish()
    }
}

impl Storage for RedisStorage {
    fn add(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<bool, StorageError> {
        let reply: Option<String> = self.query(&crate::commands::add(key, value, ttl))?;
        Ok(reply.is_some())
    }

    fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError> {
        self.query::<()>(&crate::commands::set(key, value, ttl))
    }

    fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
        self.query(redis::cmd("INCRBY").arg(key).arg(delta))
    }

    fn get(&self, key: &str) -> Result<Option<i64>, StorageError> {
        let reply: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(key))?;
        scripts::integer(key, reply)
    }

    fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError> {
        self.query::<()>(&crate::commands::expire(key, ttl))
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.query::<()>(redis::cmd("DEL").arg(key))
    }

    fn admit(&self, circuit: &Circuit) -> Result<(Admission, Option<Transition>), StorageError> {
        let reply: Vec<i64> = self.run(&scripts::admit(circuit))?;
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
                let reply: Vec<i64> = self.run(&scripts::record(circuit, outcome))?;
                if !scripts::trips(circuit, outcome, &reply, rule)? {
                    return Ok(None);
                }
                let opened: i64 = self.run(&scripts::open(circuit, true))?;
                Ok(scripts::tripped(opened))
            }
            Permit::Trial { .. } => {
                let reply: i64 = self.run(&scripts::trial(circuit, outcome))?;
                scripts::trial_ended(reply)
            }
        }
    }

    fn release(&self, circuit: &Circuit, permit: Permit) -> Result<(), StorageError> {
        if permit == Permit::Normal {
            return Ok(());
        }
        self.run::<i64>(&scripts::release(circuit)).map(drop)
    }

    fn open_circuit(&self, circuit: &Circuit) -> Result<(), StorageError> {
        self.run::<i64>(&scripts::open(circuit, false)).map(drop)
    }

    fn state(&self, circuit: &Circuit) -> Result<State, StorageError> {
        scripts::state_of(self.run(&scripts::state(circuit))?)
    }

    fn counts(&self, circuit: &Circuit) -> Result<Counts, StorageError> {
        let reply: Vec<i64> = self.run(&scripts::counts(circuit))?;
        scripts::counts_of(circuit, &reply)
    }

    fn reset(&self, circuit: &Circuit) -> Result<(), StorageError> {
        self.query::<()>(&crate::commands::reset(circuit))
    }
}

/// Makes the pool's connections, with timeouts.
#[derive(Debug)]
struct Manager {
    client: Client,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl r2d2::ManageConnection for Manager {
    type Connection = Connection;
    type Error = RedisError;

    fn connect(&self) -> Result<Connection, RedisError> {
        let connection = self
            .client
            .get_connection_with_timeout(self.connect_timeout)?;
        connection.set_read_timeout(Some(self.response_timeout))?;
        connection.set_write_timeout(Some(self.response_timeout))?;
        Ok(connection)
    }

    fn is_valid(&self, connection: &mut Connection) -> Result<(), RedisError> {
        redis::cmd("PING").query::<()>(connection)
    }

    fn has_broken(&self, connection: &mut Connection) -> bool {
        !connection.is_open()
    }
}
