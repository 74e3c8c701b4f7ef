//! [`AsyncRedisStorage`]: the async storage on one Redis server, over one
//! multiplexed connection: redis' reconnecting `ConnectionManager` (made
//! now, or on the first step), or a `MultiplexedConnection` of yours.

use std::time::Duration;

use lasier_core::{Circuit, StorageError, StorageErrorKind};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Client, Cmd, FromRedisValue, IntoConnectionInfo, ScriptInvocation,
};
use tokio::sync::OnceCell;

use crate::error::from_redis;
use crate::transport::AsyncTransport;
use crate::{AsyncRedis, Options};

/// The connection under an [`AsyncRedisStorage`]: one multiplexed
/// connection that every task shares without waiting for one another's
/// replies.
pub struct Multiplexed {
    link: Link,
    /// Where it talks to, for messages; `None` for a connection given.
    addr: Option<String>,
}

enum Link {
    /// A `ConnectionManager`, made on the first step that needs it when the
    /// storage was [opened](AsyncRedis::open) rather than connected.
    Managed {
        manager: OnceCell<ConnectionManager>,
        /// How to make it (and the timeout of one connection attempt);
        /// `None` when it was given.
        make: Option<Box<Recipe>>,
    },
    /// A connection given, which does not reconnect by itself.
    Given(MultiplexedConnection),
}

/// How to make a `ConnectionManager`: the client, the manager's settings,
/// and the timeout of one connection attempt.
type Recipe = (Client, ConnectionManagerConfig, Duration);

/// A connection to run a step on: both kinds are cheap clones of a handle.
#[derive(Clone)]
enum Conn {
    Managed(ConnectionManager),
    Given(MultiplexedConnection),
}

impl Multiplexed {
    /// Makes the manager now, with its retries (what `connect` does).
    async fn connect(&self) -> Result<(), StorageError> {
        let Link::Managed { manager, make } = &self.link else {
            return Ok(());
        };
        manager
            .get_or_try_init(|| async {
                let (client, config, _) = recipe(make)?;
                ConnectionManager::new_with_config(client.clone(), config.clone())
                    .await
                    .map_err(from_redis)
            })
            .await
            .map(drop)
    }

    /// The connection, made on first use after one plain attempt.
    async fn conn(&self) -> Result<Conn, StorageError> {
        let (manager, make) = match &self.link {
            Link::Given(conn) => return Ok(Conn::Given(conn.clone())),
            Link::Managed { manager, make } => (manager, make),
        };
        manager
            .get_or_try_init(|| async {
                let (client, config, connect_timeout) = recipe(make)?;
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
            .map(Conn::Managed)
    }
}

/// How to make the manager.
fn recipe(make: &Option<Box<Recipe>>) -> Result<&Recipe, StorageError> {
    make.as_deref().ok_or_else(|| {
        StorageError::new(
            StorageErrorKind::Other,
            "no Redis connection and no way to make one",
        )
    })
}

impl AsyncTransport for Multiplexed {
    async fn query<T: FromRedisValue + Send>(&self, cmd: &Cmd) -> Result<T, StorageError> {
        match self.conn().await? {
            Conn::Managed(mut conn) => cmd.query_async(&mut conn).await,
            Conn::Given(mut conn) => cmd.query_async(&mut conn).await,
        }
        .map_err(from_redis)
    }

    async fn invoke<T: FromRedisValue + Send>(
        &self,
        _: &Circuit,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StorageError> {
        match self.conn().await? {
            Conn::Managed(mut conn) => invocation.invoke_async(&mut conn).await,
            Conn::Given(mut conn) => invocation.invoke_async(&mut conn).await,
        }
        .map_err(from_redis)
    }

    async fn pipeline(
        &self,
        pipeline: &redis::Pipeline,
    ) -> Option<Result<Vec<redis::Value>, StorageError>> {
        let conn = match self.conn().await {
            Ok(conn) => conn,
            Err(e) => return Some(Err(e)),
        };
        Some(
            match conn {
                Conn::Managed(mut conn) => pipeline.query_async(&mut conn).await,
                Conn::Given(mut conn) => pipeline.query_async(&mut conn).await,
            }
            .map_err(from_redis),
        )
    }

    fn place(&self) -> String {
        match &self.addr {
            Some(addr) => format!("Redis at {addr}"),
            None => "Redis".to_owned(),
        }
    }

    fn describe(&self, timeout: Duration, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncRedisStorage")
            .field("addr", &self.addr)
            .field("timeout", &timeout)
            .finish_non_exhaustive()
    }

    fn watch_on(&self) -> Option<crate::watch::WatchOn> {
        let Link::Managed {
            make: Some(make), ..
        } = &self.link
        else {
            return None;
        };
        let (client, _, connect_timeout) = &**make;
        crate::watch::WatchOn::new(vec![client.get_connection_info().clone()], *connect_timeout)
    }
}

impl std::fmt::Debug for Multiplexed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Multiplexed")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Circuit state in Redis, for async code (tokio): implements
/// [`AsyncStorage`](lasier_core::AsyncStorage).
///
/// Runs over one multiplexed connection that every task shares without
/// waiting for one another's replies: a [`ConnectionManager`], which
/// reconnects by itself, or a [`MultiplexedConnection`] you give it. Clones
/// share the connection. Breakers with the same name on the same Redis
/// share one circuit, whatever process they run in, including Python
/// `lasier` services.
///
/// Every storage step (an admission, a record, a read) ends within the
/// [timeout](Options::timeout) of its [`Options`], 500 ms by default,
/// measured by tokio's timer around the whole step, whatever it waits for
/// (a reconnection, replies); a step that runs out of time fails with
/// [`StorageErrorKind::TimedOut`] and is cancelled.
///
/// [`connect`](AsyncRedis::connect) connects before it returns, and fails
/// if Redis cannot be reached; [`open`](AsyncRedis::open) returns at once
/// and connects on the first step (and on each step after that while Redis
/// cannot be reached), so that a service can start, and its breakers follow
/// their [storage failure policy](lasier_core::StorageFailurePolicy), while
/// Redis is down.
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
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub type AsyncRedisStorage = AsyncRedis<Multiplexed>;

impl AsyncRedis<Multiplexed> {
    /// Connects to the Redis server at `info` (a URL, or a
    /// `redis::ConnectionInfo`; see
    /// [`RedisStorage::open`](crate::RedisStorage::open) for the forms,
    /// passwords and TLS), with the default [`Options`]: a 1 s connect
    /// timeout per attempt, 3 reconnection attempts each time the connection
    /// drops, and a 500 ms timeout on every step.
    ///
    /// Needs a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`StorageErrorKind::Other`] if `info` is not a valid Redis URL or the
    /// server refused the credentials;
    /// [`StorageErrorKind::Unavailable`] or [`TimedOut`](StorageErrorKind::TimedOut)
    /// if the server cannot be reached (after the retries).
    pub async fn connect(info: impl IntoConnectionInfo) -> Result<Self, StorageError> {
        Self::connect_with_options(info, Options::default()).await
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
    pub async fn connect_with_options(
        info: impl IntoConnectionInfo,
        options: Options,
    ) -> Result<Self, StorageError> {
        let storage = Self::open_with_options(info, options)?;
        storage.transport().connect().await?;
        Ok(storage)
    }

    /// A storage for the Redis server at `info` (see
    /// [`connect`](Self::connect) for the defaults) that connects on its
    /// first step rather than now: it returns at once, whether or not Redis
    /// can be reached. A step that finds no connection makes one, within the
    /// step's [timeout](Options::timeout); until one is made, steps fail
    /// with [`StorageErrorKind::Unavailable`] or
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
    /// [`StorageErrorKind::Other`] if `info` is not a valid Redis URL.
    pub fn open(info: impl IntoConnectionInfo) -> Result<Self, StorageError> {
        Self::open_with_options(info, Options::default())
    }

    /// As [`open`](Self::open), with `options` (as
    /// [`connect_with_options`](Self::connect_with_options) takes them).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with_options(
        info: impl IntoConnectionInfo,
        options: Options,
    ) -> Result<Self, StorageError> {
        let client = Client::open(info).map_err(from_redis)?;
        let addr = client.get_connection_info().addr().to_string();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(options.reconnect_retries);
        let link = Link::Managed {
            manager: OnceCell::new(),
            make: Some(Box::new((client, config, options.connect_timeout))),
        };
        Ok(Self::over(
            Multiplexed {
                link,
                addr: Some(addr),
            },
            options.timeout,
        ))
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
        let link = Link::Managed {
            manager: OnceCell::new_with(Some(connection)),
            make: None,
        };
        Self::over(Multiplexed { link, addr: None }, options.timeout)
    }

    /// A storage over a multiplexed connection you made (with
    /// `Client::get_multiplexed_async_connection`, say), with `options`' step
    /// [timeout](Options::timeout). It does not reconnect: once the
    /// connection is lost, steps fail with
    /// [`StorageErrorKind::Unavailable`] and the breakers' store-failure
    /// policy decides; prefer [`open`](Self::open) or
    /// [`with_options`](Self::with_options) for a connection that heals.
    pub fn with_multiplexed(connection: MultiplexedConnection, options: Options) -> Self {
        Self::over(
            Multiplexed {
                link: Link::Given(connection),
                addr: None,
            },
            options.timeout,
        )
    }
}
