//! The connections of a [`RedisStorage`](crate::RedisStorage), and the
//! deadline of each storage step.
//!
//! A small pool of its own rather than r2d2's, for three things a breaker
//! needs from it:
//!
//! * a step's deadline covers everything the step waits for: a free
//!   connection, making a new one, each round trip (the socket timeouts are
//!   set to the time the step has left);
//! * a server that refuses connections fails the step at once, instead of
//!   waiting the whole timeout for a pool that retries in the background;
//! * a connection that failed (an I/O error or a timeout, after which a
//!   late reply could still arrive) is never reused, and neither are the
//!   idle ones made before it, which a restarted server has closed too;
//! * a connection idle for a while (which the server's `timeout`, a
//!   firewall or a restart may have closed) is checked with a `PING` before
//!   use, within the step's deadline, so that a quiet service's next call
//!   does not fail on it.

use std::io;
use std::time::{Duration, Instant};

use lasier_core::{StorageError, StorageErrorKind};
use redis::{Client, Connection, ConnectionLike, RedisError, RedisResult, Value};

use crate::error::from_redis;
use crate::slots::{Entry, Slots, Taken};
use crate::Options;

/// Socket timeouts are left alone while they are this close to the time a
/// step has left: setting them costs two system calls, and a step's first
/// round trip almost always starts with its whole timeout ahead.
const SLACK: Duration = Duration::from_millis(2);

/// A connection idle for this long is checked with a `PING` before use.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(5);

/// A pool of up to `pool_size` connections, made on demand.
#[derive(Debug)]
pub(crate) struct Pool {
    client: Client,
    options: Options,
    slots: Slots<Conn>,
}

/// A pooled connection and what the pool knows about it.
struct Conn {
    inner: Connection,
    /// What its socket timeouts are set to.
    io_timeout: Duration,
    /// It failed: a reply may still be on its way, or it is closed.
    broken: bool,
    /// When it last went back to the pool.
    idle_since: Instant,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Pool {
    pub(crate) fn new(client: Client, options: Options) -> Self {
        Self {
            client,
            options,
            slots: Slots::new(),
        }
    }

    pub(crate) fn options(&self) -> &Options {
        &self.options
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// (open, idle) connections now.
    pub(crate) fn state(&self) -> (u32, usize) {
        self.slots.state()
    }

    /// Starts a storage step: a connection, and the deadline the step must
    /// end by.
    pub(crate) fn session(&self) -> Result<Session<'_>, StorageError> {
        let started = Instant::now();
        let timeout = self.options.timeout;
        // A timeout so long that the deadline overflows: no deadline worth
        // the name, a year will do.
        let deadline = started
            .checked_add(timeout)
            .or_else(|| started.checked_add(Duration::from_secs(365 * 24 * 3600)))
            .unwrap_or(started);
        let mut conn = self.checkout(deadline)?;
        if conn.item.idle_since.elapsed() >= CHECK_AFTER_IDLE {
            let mut link = Link {
                conn: Some(&mut conn.item),
                deadline,
            };
            if redis::cmd("PING").query::<()>(&mut link).is_err() {
                // Gone while idle: so are the others made before it most
                // likely (`broken` drops them); a new one, same deadline.
                conn.item.broken = true;
                self.checkin(conn);
                conn = self.checkout(deadline)?;
            }
        }
        Ok(Session {
            pool: self,
            conn: Some(conn),
            deadline,
        })
    }

    fn checkout(&self, deadline: Instant) -> Result<Entry<Conn>, StorageError> {
        match self.slots.take(self.options.pool_size, deadline) {
            Some(Taken::Idle(entry)) => Ok(entry),
            Some(Taken::Make { generation }) => self
                .connect(deadline)
                .map(|item| Entry { item, generation })
                .inspect_err(|_| self.slots.make_failed()),
            None => Err(StorageError::new(
                StorageErrorKind::TimedOut,
                format!(
                    "no free Redis connection within {:?}: all {} are busy",
                    self.options.timeout, self.options.pool_size
                ),
            )),
        }
    }

    fn connect(&self, deadline: Instant) -> Result<Conn, StorageError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out(self.options.timeout));
        }
        // redis waits for each reply of the connection's setup (AUTH, SELECT,
        // CLIENT SETINFO) with the whole timeout it was given: share the
        // budget out so that a server that accepts but never answers costs
        // the step no more than its time left.
        let budget = left.min(self.options.connect_timeout) / setup_replies(&self.client);
        let inner = self
            .client
            .get_connection_with_timeout(budget)
            .map_err(from_redis)?;
        Ok(Conn {
            inner,
            // `connect` leaves the socket without timeouts: `arm` sets them
            // before the first round trip.
            io_timeout: Duration::ZERO,
            broken: false,
            idle_since: Instant::now(),
        })
    }

    fn checkin(&self, mut conn: Entry<Conn>) {
        let failed = conn.item.broken;
        let usable = conn.item.inner.is_open();
        conn.item.idle_since = Instant::now();
        self.slots.give_back(conn, failed, usable);
    }
}

/// How many replies a new connection waits for before it is ready.
pub(crate) fn setup_replies(client: &Client) -> u32 {
    let redis = client.get_connection_info().redis_settings();
    let auth = redis.protocol().supports_resp3() || redis.password().is_some();
    let select = redis.db() != 0;
    let lib_name = if redis.skip_set_lib_name() { 0 } else { 2 };
    (u32::from(auth) + u32::from(select) + lib_name).max(1)
}

/// The error of a step that ran out of time before its next round trip.
fn timed_out(timeout: Duration) -> StorageError {
    StorageError::new(
        StorageErrorKind::TimedOut,
        format!("no answer from Redis within {timeout:?}"),
    )
}

/// One storage step: a connection from the pool, given back when the step
/// ends, and the deadline every round trip of the step must meet.
pub(crate) struct Session<'a> {
    pool: &'a Pool,
    conn: Option<Entry<Conn>>,
    deadline: Instant,
}

impl Session<'_> {
    /// The connection, as redis' commands and scripts take it.
    pub(crate) fn link(&mut self) -> Link<'_> {
        Link {
            conn: self.conn.as_mut().map(|c| &mut c.item),
            deadline: self.deadline,
        }
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.checkin(conn);
        }
    }
}

/// A connection with a deadline: each round trip may take only the time
/// the step has left, and a failed one marks the connection broken.
pub(crate) struct Link<'a> {
    conn: Option<&'a mut Conn>,
    deadline: Instant,
}

impl Link<'_> {
    fn conn(&mut self) -> RedisResult<&mut Conn> {
        self.conn
            .as_deref_mut()
            .ok_or_else(|| RedisError::from(io::Error::from(io::ErrorKind::NotConnected)))
    }

    /// Sets the socket timeouts to the time left, or fails if none is.
    fn arm(&mut self) -> RedisResult<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let conn = self.conn()?;
        if left.is_zero() {
            return Err(RedisError::from(io::Error::new(
                io::ErrorKind::TimedOut,
                "the storage step ran out of time",
            )));
        }
        if conn.io_timeout.abs_diff(left) > SLACK {
            let set = conn
                .inner
                .set_read_timeout(Some(left))
                .and_then(|()| conn.inner.set_write_timeout(Some(left)));
            if let Err(e) = set {
                conn.broken = true;
                return Err(e);
            }
            conn.io_timeout = left;
        }
        Ok(())
    }

    fn settle<T>(&mut self, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(e) = &result {
            // After a timeout the reply may still come, and a half-read
            // reply leaves the parser out of step: never reuse it.
            if e.is_io_error()
                || e.is_timeout()
                || e.is_connection_dropped()
                || e.is_unrecoverable_error()
            {
                if let Ok(conn) = self.conn() {
                    conn.broken = true;
                }
            }
        }
        result
    }
}

impl ConnectionLike for Link<'_> {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.arm()?;
        let result = self.conn()?.inner.req_packed_command(cmd);
        self.settle(result)
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        self.arm()?;
        let result = self.conn()?.inner.req_packed_commands(cmd, offset, count);
        self.settle(result)
    }

    fn get_db(&self) -> i64 {
        self.conn.as_ref().map_or(0, |c| c.inner.get_db())
    }

    fn check_connection(&mut self) -> bool {
        self.conn().is_ok_and(|c| c.inner.check_connection())
    }

    fn is_open(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.inner.is_open())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_refused_connection_fails_at_once_and_frees_its_slot() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
        let pool = Pool::new(
            client,
            Options::new().timeout(Duration::from_secs(30)).pool_size(1),
        );
        for _ in 0..3 {
            let began = Instant::now();
            let error = pool.session().map(drop).unwrap_err();
            assert_eq!(error.kind(), StorageErrorKind::Unavailable, "{error}");
            // Far from the 30 s timeout: refused is an answer.
            assert!(began.elapsed() < Duration::from_secs(10));
        }
        assert_eq!(pool.state(), (0, 0));
    }

    #[test]
    fn a_huge_timeout_is_no_panic() {
        let client = Client::open("redis://127.0.0.1:1/").unwrap();
        let pool = Pool::new(client, Options::new().timeout(Duration::MAX));
        assert!(pool.session().is_err());
    }
}
