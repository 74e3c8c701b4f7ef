//! The deadline of a blocking storage step, and the connections that keep
//! to it.
//!
//! A step sets its deadline for its thread ([`DeadlineScope`]); every
//! connection it touches ([`Armed`]: a plain connection, or a cluster
//! connection's node connection, which the cluster client makes on its own)
//! arms its socket timeouts with the time the step has left before each
//! round trip, and a new connection takes no longer than that either. Once
//! the deadline has passed, every round trip and connection attempt fails
//! at once, and a cluster client's retries with it. One mechanism for every
//! blocking transport.

use std::cell::Cell;
use std::io;
use std::time::{Duration, Instant};

use redis::{Client, Connection, ConnectionLike, RedisError, RedisResult, Value};

use crate::Options;

/// Socket timeouts are left alone while they are this close to the time a
/// step has left: setting them costs two system calls, and a step's first
/// round trip almost always starts with its whole timeout ahead.
const SLACK: Duration = Duration::from_millis(2);

thread_local! {
    /// The deadline of the storage step running on this thread.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The deadline `timeout` from now (a year for a timeout so long that the
/// deadline would overflow).
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

/// Sets the deadline of this thread's connections until dropped.
#[derive(Debug)]
pub(crate) struct DeadlineScope {
    previous: Option<Instant>,
}

impl DeadlineScope {
    pub(crate) fn enter(deadline: Instant) -> Self {
        Self {
            previous: DEADLINE.with(|d| d.replace(Some(deadline))),
        }
    }
}

impl Drop for DeadlineScope {
    fn drop(&mut self) {
        DEADLINE.with(|d| d.set(self.previous));
    }
}

/// The time the step running on this thread has left; an error once it
/// has none. Outside a step (never, in this crate) the default timeout.
pub(crate) fn time_left() -> RedisResult<Duration> {
    let left = DEADLINE
        .with(Cell::get)
        .map_or(Options::DEFAULT_TIMEOUT, |deadline| {
            deadline.saturating_duration_since(Instant::now())
        });
    if left.is_zero() {
        return Err(RedisError::from(io::Error::new(
            io::ErrorKind::TimedOut,
            "the storage step ran out of time",
        )));
    }
    Ok(left)
}

/// How many replies a new connection to `client`'s server waits for
/// before it is ready: the setup redis sends on connecting (`HELLO` or
/// `AUTH`, `SELECT`, `CLIENT SETINFO` twice). Each waits with the whole
/// timeout it is given, so a connection's budget is shared out among them.
/// `tests/handshake.rs` pins this to what the redis version in use sends.
pub(crate) fn setup_replies(client: &Client) -> u32 {
    let redis = client.get_connection_info().redis_settings();
    let auth = redis.protocol().supports_resp3() || redis.password().is_some();
    let select = redis.db() != 0;
    let lib_name = if redis.skip_set_lib_name() { 0 } else { 2 };
    (u32::from(auth) + u32::from(select) + lib_name).max(1)
}

/// A connection that keeps to the deadline of the step running on its
/// thread: each round trip may take only the time the step has left.
pub(crate) struct Armed {
    inner: Connection,
    /// What its socket timeouts are set to.
    io_timeout: Duration,
}

impl std::fmt::Debug for Armed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Armed")
            .field("io_timeout", &self.io_timeout)
            .finish_non_exhaustive()
    }
}

impl Armed {
    /// A connection to `client`'s server, made within the time the step
    /// has left and `connect_timeout`.
    pub(crate) fn connect(client: &Client, connect_timeout: Duration) -> RedisResult<Self> {
        let budget = time_left()?.min(connect_timeout) / setup_replies(client);
        let inner = client.get_connection_with_timeout(budget.max(Duration::from_millis(1)))?;
        Ok(Self {
            inner,
            // A new connection has no socket timeouts: `arm` sets them
            // before the first round trip.
            io_timeout: Duration::ZERO,
        })
    }

    /// Sets the socket timeouts to the time left, or fails if none is.
    fn arm(&mut self) -> RedisResult<()> {
        let left = time_left()?;
        if self.io_timeout.abs_diff(left) > SLACK {
            self.inner.set_read_timeout(Some(left))?;
            self.inner.set_write_timeout(Some(left))?;
            self.io_timeout = left;
        }
        Ok(())
    }
}

impl ConnectionLike for Armed {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.arm()?;
        self.inner.req_packed_command(cmd)
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        self.arm()?;
        self.inner.req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }

    fn check_connection(&mut self) -> bool {
        redis::cmd("PING").query::<()>(self).is_ok()
    }

    fn is_open(&self) -> bool {
        self.inner.is_open()
    }
}

/// A cluster client makes its node connections itself, through this.
#[cfg(feature = "cluster")]
impl redis::cluster::Connect for Armed {
    fn connect<T>(info: T, timeout: Option<Duration>) -> RedisResult<Self>
    where
        T: redis::IntoConnectionInfo,
    {
        let client = Client::open(info)?;
        Self::connect(&client, timeout.unwrap_or(Duration::MAX))
    }

    fn send_packed_command(&mut self, cmd: &[u8]) -> RedisResult<()> {
        self.arm()?;
        self.inner.send_packed_command(cmd)
    }

    // The client sets its own timeouts on each new node connection; ours
    // are set before each round trip instead.
    fn set_write_timeout(&self, _: Option<Duration>) -> RedisResult<()> {
        Ok(())
    }

    fn set_read_timeout(&self, _: Option<Duration>) -> RedisResult<()> {
        Ok(())
    }

    fn recv_response(&mut self) -> RedisResult<Value> {
        self.arm()?;
        self.inner.recv_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passed_deadline_fails_every_round_trip_at_once() {
        let scope = DeadlineScope::enter(Instant::now());
        let error = time_left().unwrap_err();
        assert!(error.is_timeout(), "{error}");
        assert_eq!(
            crate::error::from_redis(error).kind(),
            lasier_core::StorageErrorKind::TimedOut
        );
        drop(scope);
        // Outside a step: the default.
        assert_eq!(time_left().unwrap(), Options::DEFAULT_TIMEOUT);
    }

    #[test]
    fn scopes_nest() {
        let outer = Instant::now() + Duration::from_secs(60);
        let _outer = DeadlineScope::enter(outer);
        {
            let _inner = DeadlineScope::enter(Instant::now());
            assert!(time_left().is_err());
        }
        assert!(time_left().unwrap() > Duration::from_secs(50));
    }

    #[test]
    fn a_huge_timeout_is_no_panic() {
        let _scope = DeadlineScope::enter(deadline_after(Duration::MAX));
        assert!(time_left().unwrap() > Duration::from_secs(3600));
    }

    /// What the handshake of the redis version in use sends, counted on a
    /// real server through a recording proxy: a redis release that changes
    /// it fails here rather than silently breaking the timeout budget of
    /// new connections.
    #[test]
    fn setup_replies_are_what_this_redis_version_sends() {
        use lasier_redis_harness::{Proxy, RedisServer, ServerOptions};
        let (Some(open), Some(locked)) = (
            RedisServer::start(),
            RedisServer::start_with(ServerOptions::new().password("pw")),
        ) else {
            lasier_redis_harness::skip("redis-server is not installed");
            return;
        };
        for (server, rest) in [
            (&open, ""),
            (&open, "3"),
            (&locked, ""),
            (&locked, "3"),
            (&locked, "?protocol=resp3"),
        ] {
            let proxy = Proxy::start(server.addr());
            let auth = if std::ptr::eq(server, &locked) {
                ":pw@"
            } else {
                ""
            };
            let url = format!("redis://{auth}127.0.0.1:{}/{rest}", proxy.port());
            let client = Client::open(url.as_str()).unwrap();
            let mut conn = client.get_connection().unwrap();
            redis::cmd("PING").query::<()>(&mut conn).unwrap();
            let sent = proxy.sent();
            let setup: Vec<&str> = sent
                .iter()
                .take_while(|c| c.name != "PING")
                .map(|c| c.name.as_str())
                .collect();
            assert_eq!(
                setup.len(),
                setup_replies(&client) as usize,
                "{url}: the handshake sent {setup:?}"
            );
        }
    }

    #[test]
    fn setup_replies_follow_the_url() {
        let replies = |url: &str| setup_replies(&Client::open(url).unwrap());
        // CLIENT SETINFO twice.
        assert_eq!(replies("redis://127.0.0.1:1/"), 2);
        // AUTH, SELECT, CLIENT SETINFO twice.
        assert_eq!(replies("redis://:pw@127.0.0.1:1/3"), 4);
        // HELLO (with the credentials), CLIENT SETINFO twice.
        assert_eq!(replies("redis://:pw@127.0.0.1:1/?protocol=resp3"), 3);
    }
}
