//! [`RedisStorage`]: the blocking storage, over a pool of connections.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use lasier_core::state::{Admission, Outcome, Permit, State, Transition};
use lasier_core::{Circuit, Counts, Rule, Storage, StorageError};
use redis::{Client, FromRedisValue, ScriptInvocation};

use crate::error::from_redis;
use crate::pool::{Pool, Session};
use crate::{scripts, Options};

/// Circuit state in Redis, for blocking code: implements [`Storage`].
///
/// Holds a pool of connections (up to 16 by default), so that threads
/// sharing one storage do not wait on one another's round trips. Clones
/// share the pool. Breakers with the same name on the same Redis share one
/// circuit, whatever process they run in, including Python `lasier`
/// services.
///
/// Every storage step (an admission, a record, a read) ends within the
/// [timeout](Options::timeout) of its [`Options`], 500 ms by default,
/// whatever it waits for: a free connection, a new one, or replies. A step
/// that runs out of time fails with [`StorageErrorKind::TimedOut`]; a
/// server that cannot be reached fails it with
/// [`StorageErrorKind::Unavailable`], at once when it refuses connections.
/// No call blocks forever.
///
/// ```no_run
/// use std::time::Duration;
/// use lasier_redis::{Options, RedisStorage};
/// use lasier_sync::CircuitBreaker;
///
/// let storage = RedisStorage::open_with_options(
///     "redis://127.0.0.1:6379",
///     Options::new().timeout(Duration::from_millis(200)),
/// )?;
/// let breaker = CircuitBreaker::builder("payments")
///     .storage(storage)
///     .max_failures(5)
///     .build()?;
/// let answer = breaker.call(|| -> Result<u32, std::io::Error> { Ok(42) });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// [`StorageErrorKind::TimedOut`]: lasier_core::StorageErrorKind::TimedOut
/// [`StorageErrorKind::Unavailable`]: lasier_core::StorageErrorKind::Unavailable
#[derive(Clone)]
#[cfg_attr(docsrs, doc(cfg(feature = "sync")))]
pub struct RedisStorage {
    pool: Arc<Pool>,
    addr: Arc<str>,
}

impl RedisStorage {
    /// A storage on the Redis server at `url`, with the default [`Options`].
    /// Connections are made on first use, as with [`Client::open`].
    ///
    /// The URL forms are redis': `redis://[[user]:password@]host[:port][/db]`,
    /// `rediss://` for TLS (feature `tls`), `redis+unix:///path`.
    /// A password or user in the URL authenticates every connection (`AUTH`);
    /// percent-encode characters such as `@` or `/` in it.
    ///
    /// # Errors
    ///
    /// [`StorageErrorKind::Other`](lasier_core::StorageErrorKind::Other) if
    /// `url` is not a valid Redis URL (or asks for TLS without the `tls`
    /// feature).
    pub fn open(url: &str) -> Result<Self, StorageError> {
        Self::open_with_options(url, Options::default())
    }

    /// As [`open`](Self::open), with `options`.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with_options(url: &str, options: Options) -> Result<Self, StorageError> {
        Ok(Self::with_options(
            Client::open(url).map_err(from_redis)?,
            options,
        ))
    }

    /// A storage on the server of `client`, with the default [`Options`].
    /// Connects on first use.
    pub fn new(client: Client) -> Self {
        Self::with_options(client, Options::default())
    }

    /// A storage on the server of `client` (for instance one built with
    /// `Client::build_with_tls` (feature `tls`) and certificates of your own), with
    /// `options`. Connects on first use.
    pub fn with_options(client: Client, options: Options) -> Self {
        crate::install_crypto_provider();
        let addr = Arc::from(client.get_connection_info().addr().to_string());
        Self {
            pool: Arc::new(Pool::new(client, options)),
            addr,
        }
    }

    /// The options it was built with.
    pub fn options(&self) -> &Options {
        self.pool.options()
    }

    /// The client it connects with.
    pub fn client(&self) -> &Client {
        self.pool.client()
    }

    /// Starts a storage step: a connection and a deadline.
    fn session(&self) -> Result<Session<'_>, StorageError> {
        self.pool.session()
    }

    fn run<T: FromRedisValue>(&self, invocation: &ScriptInvocation<'_>) -> Result<T, StorageError> {
        run(&mut self.session()?, invocation)
    }

    fn query<T: FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, StorageError> {
        let mut session = self.session()?;
        command.query(&mut session.link()).map_err(from_redis)
    }
}

/// Runs a script within the session's deadline (loading it first if the
/// server lost it).
fn run<T: FromRedisValue>(
    session: &mut Session<'_>,
    invocation: &ScriptInvocation<'_>,
) -> Result<T, StorageError> {
    invocation.invoke(&mut session.link()).map_err(from_redis)
}

impl fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (connections, idle) = self.pool.state();
        f.debug_struct("RedisStorage")
            .field("addr", &self.addr)
            .field("timeout", &self.options().timeout)
            .field("connections", &connections)
            .field("idle", &idle)
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
                // One step, one deadline: the trip's round trip too.
                let mut session = self.session()?;
                let reply: Vec<i64> = run(&mut session, &scripts::record(circuit, outcome))?;
                if !scripts::trips(circuit, outcome, &reply, rule)? {
                    return Ok(None);
                }
                let opened: i64 = run(&mut session, &scripts::open(circuit, true))?;
                Ok(scripts::tripped(opened))
            }
            Permit::Trial { episode } => {
                let reply: i64 = self.run(&scripts::trial(circuit, outcome, episode))?;
                scripts::trial_ended(reply)
            }
        }
    }

    fn release(&self, circuit: &Circuit, permit: Permit) -> Result<(), StorageError> {
        let Permit::Trial { episode } = permit else {
            return Ok(());
        };
        self.run::<i64>(&scripts::release(circuit, episode))
            .map(drop)
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
