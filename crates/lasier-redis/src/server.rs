//! [`RedisStorage`]: the blocking storage on one Redis server, over a pool
//! of plain connections.

use lasier_core::{Circuit, StorageError};
use redis::{
    Client, Cmd, ConnectionLike, FromRedisValue, IntoConnectionInfo, RedisResult, ScriptInvocation,
};

use crate::deadline::Armed;
use crate::error::from_redis;
use crate::pool::{pooled_transport, Connector, Pool};
use crate::{Options, Redis};

impl Connector for Client {
    type Conn = Armed;

    const NAME: &'static str = "RedisStorage";

    fn connect(&self, options: &Options) -> RedisResult<Armed> {
        Armed::connect(self, options.connect_timeout)
    }

    fn check(conn: &mut Armed) -> bool {
        conn.check_connection()
    }

    fn is_open(conn: &Armed) -> bool {
        conn.is_open()
    }

    fn query<T: FromRedisValue>(conn: &mut Armed, cmd: &Cmd) -> RedisResult<T> {
        cmd.query(conn)
    }

    fn invoke<T: FromRedisValue>(
        conn: &mut Armed,
        _: &Circuit,
        invocation: &ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        invocation.invoke(conn)
    }

    fn pipeline(
        conn: &mut Armed,
        pipeline: &redis::Pipeline,
    ) -> Option<RedisResult<Vec<redis::Value>>> {
        Some(pipeline.query(conn))
    }

    fn place(&self) -> String {
        format!("Redis at {}", self.get_connection_info().addr())
    }

    fn watch_nodes(&self) -> Vec<redis::ConnectionInfo> {
        vec![self.get_connection_info().clone()]
    }
}

pooled_transport!(
    /// The pool of connections under a [`RedisStorage`]: up to
    /// [`pool_size`](Options::pool_size) plain connections to one server,
    /// made on demand, each storage step's deadline on their sockets.
    ServerPool(Client)
);

/// Circuit state in Redis, for blocking code: implements
/// [`Storage`](lasier_core::Storage).
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
#[cfg_attr(docsrs, doc(cfg(feature = "sync")))]
pub type RedisStorage = Redis<ServerPool>;

impl Redis<ServerPool> {
    /// A storage on the Redis server at `info` (a URL, or a
    /// `redis::ConnectionInfo`), with the default [`Options`]. Connections
    /// are made on first use, as with [`Client::open`].
    ///
    /// The URL forms are redis': `redis://[[user]:password@]host[:port][/db]`,
    /// `rediss://` for TLS (feature `tls`), `redis+unix:///path`.
    /// A password or user in the URL authenticates every connection (`AUTH`);
    /// percent-encode characters such as `@` or `/` in it.
    ///
    /// # Errors
    ///
    /// [`StorageErrorKind::Other`](lasier_core::StorageErrorKind::Other) if
    /// `info` is not a valid Redis URL (or asks for TLS without the `tls`
    /// feature).
    pub fn open(info: impl IntoConnectionInfo) -> Result<Self, StorageError> {
        Self::open_with_options(info, Options::default())
    }

    /// As [`open`](Self::open), with `options`.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with_options(
        info: impl IntoConnectionInfo,
        options: Options,
    ) -> Result<Self, StorageError> {
        Ok(Self::with_options(
            Client::open(info).map_err(from_redis)?,
            options,
        ))
    }

    /// A storage on the server of `client`, with the default [`Options`].
    /// Connects on first use.
    pub fn new(client: Client) -> Self {
        Self::with_options(client, Options::default())
    }

    /// A storage on the server of `client` (for instance one built with
    /// `Client::build_with_tls` (feature `tls`) and certificates of your
    /// own), with `options`. Connects on first use.
    pub fn with_options(client: Client, options: Options) -> Self {
        Self::over(ServerPool(Pool::new(client, options)))
    }

    /// The options it was built with.
    pub fn options(&self) -> &Options {
        self.transport().0.options()
    }

    /// The client it connects with.
    pub fn client(&self) -> &Client {
        self.transport().0.connector()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use lasier_core::{Storage, StorageErrorKind};

    use super::*;

    fn refusing_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn a_refused_connection_fails_at_once_and_frees_its_place() {
        let storage = RedisStorage::open_with_options(
            format!("redis://127.0.0.1:{}/", refusing_port()).as_str(),
            Options::new().timeout(Duration::from_secs(30)).pool_size(1),
        )
        .unwrap();
        for _ in 0..3 {
            let began = Instant::now();
            let error = storage.get("k").unwrap_err();
            assert_eq!(error.kind(), StorageErrorKind::Unavailable, "{error}");
            // Far from the 30 s timeout: refused is an answer.
            assert!(began.elapsed() < Duration::from_secs(10));
        }
        assert_eq!(storage.transport().0.state(), (0, 0));
    }

    #[test]
    fn a_huge_timeout_is_no_panic() {
        let storage = RedisStorage::open_with_options(
            format!("redis://127.0.0.1:{}/", refusing_port()).as_str(),
            Options::new().timeout(Duration::MAX),
        )
        .unwrap();
        assert!(storage.get("k").is_err());
    }
}
