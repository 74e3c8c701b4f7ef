//! The blocking storages' pool: connections made on demand, up to a
//! number, each storage step taking one for itself (a redis connection is
//! one thread's at a time), so that no thread waits on another's round
//! trip. One pool for both blocking storages: a connection is a plain one
//! to a server, or a cluster connection; they differ only in how one is
//! made, checked and used, which [`Connector`] says.
//!
//! What a breaker needs from its pool, and why it is ours rather than
//! r2d2's:
//!
//! * a step's deadline covers everything the step waits for: a free
//!   connection, making a new one, each round trip (`deadline.rs`);
//! * a server that refuses connections fails the step at once, instead of
//!   waiting the whole timeout for a pool that retries in the background;
//! * a connection whose step failed for want of the server (an I/O error,
//!   a timeout after which a late reply could still arrive, a cluster node
//!   gone) is never reused, and neither are the idle ones made before it,
//!   which a restarted server has closed too (or whose slot map names a
//!   dead master);
//! * a plain connection idle for a while (which the server's `timeout`, a
//!   firewall or a restart may have closed) is checked with a `PING` before
//!   use, within the step's deadline, so that a quiet service's next call
//!   does not fail on it.

use std::time::{Duration, Instant};

use lasier_core::{Circuit, ConfigError, StorageError, StorageErrorKind};
use redis::{Cmd, FromRedisValue, RedisError, RedisResult, ScriptInvocation};

use crate::deadline::{deadline_after, DeadlineScope};
use crate::error::{from_redis, kind_of};
use crate::ledger::{Entry, Ledger, Taken};
use crate::transport::Session;
use crate::Options;

/// A connection idle for this long is checked before use.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(5);

/// How a pool's connections are made, checked and used.
pub(crate) trait Connector: Send + Sync + 'static {
    /// A pooled connection.
    type Conn: Send;

    /// The storage's name, for `Debug`.
    const NAME: &'static str;

    /// Makes a connection, within the step's deadline.
    fn connect(&self, options: &Options) -> RedisResult<Self::Conn>;

    /// Whether a connection idle for a while still answers.
    fn check(conn: &mut Self::Conn) -> bool;

    /// Whether a connection may go back to the pool.
    fn is_open(conn: &Self::Conn) -> bool;

    /// Runs `cmd` on `conn`.
    fn query<T: FromRedisValue>(conn: &mut Self::Conn, cmd: &Cmd) -> RedisResult<T>;

    /// Runs one of `circuit`'s scripts on `conn`.
    fn invoke<T: FromRedisValue>(
        conn: &mut Self::Conn,
        circuit: &Circuit,
        invocation: &ScriptInvocation<'_>,
    ) -> RedisResult<T>;

    /// Runs `pipeline` on `conn`, if this kind of connection can.
    fn pipeline(
        conn: &mut Self::Conn,
        pipeline: &redis::Pipeline,
    ) -> Option<RedisResult<Vec<redis::Value>>> {
        let _ = (conn, pipeline);
        None
    }

    /// Where it connects to, for messages (no credentials).
    fn place(&self) -> String;

    /// Whether its server can hold `circuit`.
    fn validate(&self, circuit: &Circuit) -> Result<(), ConfigError> {
        let _ = circuit;
        Ok(())
    }

    /// The nodes a watch of the storage's changes may subscribe on: none
    /// by default.
    fn watch_nodes(&self) -> Vec<redis::ConnectionInfo> {
        Vec::new()
    }
}

/// The connections of a blocking storage: up to
/// [`pool_size`](Options::pool_size) of them, made on demand.
pub(crate) struct Pool<C: Connector> {
    connector: C,
    options: Options,
    ledger: Ledger<Pooled<C::Conn>>,
}

/// A pooled connection, and when it last went back to the pool.
struct Pooled<T> {
    conn: T,
    idle_since: Instant,
}

impl<C: Connector> Pool<C> {
    pub(crate) fn new(connector: C, options: Options) -> Self {
        Self {
            connector,
            options,
            ledger: Ledger::new(),
        }
    }

    pub(crate) fn options(&self) -> &Options {
        &self.options
    }

    pub(crate) fn connector(&self) -> &C {
        &self.connector
    }

    /// (open, idle) connections now.
    pub(crate) fn state(&self) -> (u32, usize) {
        self.ledger.state()
    }

    fn checkout(&self, deadline: Instant) -> Result<Entry<Pooled<C::Conn>>, StorageError> {
        match self.ledger.take(self.options.pool_size, deadline) {
            Some(Taken::Idle(entry)) => Ok(entry),
            Some(Taken::Make { generation }) => match self.connector.connect(&self.options) {
                Ok(conn) => Ok(Entry {
                    item: Pooled {
                        conn,
                        idle_since: Instant::now(),
                    },
                    generation,
                }),
                Err(e) => {
                    self.ledger.make_failed();
                    Err(from_redis(e))
                }
            },
            None => Err(StorageError::new(
                StorageErrorKind::TimedOut,
                format!(
                    "no free connection to {} within {:?}: all {} are busy",
                    self.connector.place(),
                    self.options.timeout,
                    self.options.pool_size
                ),
            )),
        }
    }

    fn checkin(&self, mut entry: Entry<Pooled<C::Conn>>, failed: bool) {
        let usable = C::is_open(&entry.item.conn);
        entry.item.idle_since = Instant::now();
        self.ledger.give_back(entry, failed, usable);
    }
}

impl<C: Connector> std::fmt::Debug for Pool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (connections, idle) = self.state();
        f.debug_struct(C::NAME)
            .field("addr", &self.connector.place())
            .field("timeout", &self.options.timeout)
            .field("connections", &connections)
            .field("idle", &idle)
            .finish()
    }
}

impl<C: Connector> Pool<C> {
    /// A step: its deadline, set for this thread, and a connection.
    pub(crate) fn session(&self) -> Result<PoolSession<'_, C>, StorageError> {
        let deadline = deadline_after(self.options.timeout);
        let scope = DeadlineScope::enter(deadline);
        let mut entry = self.checkout(deadline)?;
        if entry.item.idle_since.elapsed() >= CHECK_AFTER_IDLE && !C::check(&mut entry.item.conn) {
            // Gone while idle: so are the others made before it most
            // likely (a failed give-back drops them); a new one, same
            // deadline.
            self.checkin(entry, true);
            entry = self.checkout(deadline)?;
        }
        Ok(PoolSession {
            pool: self,
            entry: Some(entry),
            failed: false,
            _deadline: scope,
        })
    }
}

/// Declares `$name`, the public face of a pool over `$connector`, as the
/// transport of a blocking storage.
macro_rules! pooled_transport {
    ($(#[$doc:meta])* $name:ident($connector:ty)) => {
        $(#[$doc])*
        pub struct $name(pub(crate) $crate::pool::Pool<$connector>);

        impl $crate::transport::Transport for $name {
            type Session<'a> = $crate::pool::PoolSession<'a, $connector>;

            fn session(&self) -> Result<Self::Session<'_>, lasier_core::StorageError> {
                self.0.session()
            }

            fn describe(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(&self.0, f)
            }

            fn validate(
                &self,
                circuit: &lasier_core::Circuit,
            ) -> Result<(), lasier_core::ConfigError> {
                $crate::pool::Connector::validate(self.0.connector(), circuit)
            }

            fn watch_on(&self) -> Option<$crate::watch::WatchOn> {
                $crate::watch::WatchOn::new(
                    $crate::pool::Connector::watch_nodes(self.0.connector()),
                    self.0.options().connect_timeout,
                )
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(&self.0, f)
            }
        }
    };
}
pub(crate) use pooled_transport;

/// One storage step: a connection from the pool, given back when the step
/// ends, and the deadline every round trip of the step must meet (for this
/// thread, while it lives).
pub(crate) struct PoolSession<'a, C: Connector> {
    pool: &'a Pool<C>,
    entry: Option<Entry<Pooled<C::Conn>>>,
    failed: bool,
    _deadline: DeadlineScope,
}

impl<C: Connector> PoolSession<'_, C> {
    fn conn(&mut self) -> Result<&mut C::Conn, StorageError> {
        self.entry
            .as_mut()
            .map(|entry| &mut entry.item.conn)
            .ok_or_else(|| StorageError::new(StorageErrorKind::Other, "no connection"))
    }

    /// `error` as a storage error, noting whether the connection may go
    /// back: not after an I/O error or a timeout (a late reply could still
    /// arrive, or a half-read one left the parser out of step), nor for want
    /// of a server (a cluster's slot map may name a node that is gone).
    fn fail(&mut self, error: RedisError) -> StorageError {
        if error.is_unrecoverable_error()
            || error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || matches!(
                kind_of(&error),
                StorageErrorKind::Unavailable | StorageErrorKind::TimedOut
            )
        {
            self.failed = true;
        }
        from_redis(error)
    }
}

impl<C: Connector> Session for PoolSession<'_, C> {
    fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> Result<T, StorageError> {
        let result = C::query(self.conn()?, cmd);
        result.map_err(|e| self.fail(e))
    }

    fn invoke<T: FromRedisValue>(
        &mut self,
        circuit: &Circuit,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StorageError> {
        let result = C::invoke(self.conn()?, circuit, invocation);
        result.map_err(|e| self.fail(e))
    }

    fn pipeline(
        &mut self,
        pipeline: &redis::Pipeline,
    ) -> Option<Result<Vec<redis::Value>, StorageError>> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(e) => return Some(Err(e)),
        };
        let result = C::pipeline(conn, pipeline)?;
        Some(result.map_err(|e| self.fail(e)))
    }
}

impl<C: Connector> Drop for PoolSession<'_, C> {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            self.pool.checkin(entry, self.failed);
        }
    }
}
