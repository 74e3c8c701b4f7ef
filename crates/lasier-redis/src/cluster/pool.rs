//! The cluster connections of a
//! [`ClusterRedisStorage`](crate::ClusterRedisStorage), and the deadline of
//! each storage step.
//!
//! A redis `ClusterConnection` is one thread's at a time (it keeps one
//! connection per node and its slot map in `RefCell`s), so threads take one
//! each from a pool, as `RedisStorage` does with plain connections: no
//! thread waits on another's round trip.
//!
//! The cluster client retries on its own (following `MOVED` and `ASK`,
//! reconnecting to a node, waiting out `TRYAGAIN`), and connects to nodes
//! as it discovers them, all inside one request. For the step's timeout to
//! bound all of that, its node connections are ours ([`NodeConnection`]):
//! each round trip may take only the time the step has left, and each new
//! connection too, by a deadline the step sets for its thread
//! ([`DeadlineScope`]). Once it has passed, every round trip and connection
//! attempt fails at once, and the client's retries with it.
//!
//! A cluster connection whose step failed for want of a node (refused,
//! dropped, timed out, `CLUSTERDOWN`) is dropped with every idle one: its
//! slot map may name a master that is gone, and the client only reads the
//! map again on `MOVED`, which a dead node never sends. A new one reads the
//! map from the first seed node that answers.

use std::cell::Cell;
use std::io;
use std::time::{Duration, Instant};

use lasier_core::{StorageError, StorageErrorKind};
use redis::cluster::{ClusterClient, ClusterConnection, Connect};
use redis::{
    Client, Connection, ConnectionLike, IntoConnectionInfo, RedisError, RedisResult, Value,
};

use crate::error::from_redis;
use crate::slots::{Entry, Slots, Taken};
use crate::Options;

/// Socket timeouts are left alone while they are this close to the time a
/// step has left (see `pool.rs`).
const SLACK: Duration = Duration::from_millis(2);

thread_local! {
    /// The deadline of the storage step running on this thread.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Sets the deadline of this thread's node connections until dropped.
#[derive(Debug)]
pub(crate) struct DeadlineScope {
    previous: Option<Instant>,
}

impl DeadlineScope {
    fn enter(deadline: Instant) -> Self {
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
fn time_left() -> RedisResult<Duration> {
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

/// A connection to one cluster node, whose every round trip and whose
/// connection keep to the deadline of the step running on this thread.
pub(crate) struct NodeConnection {
    inner: Connection,
    /// What its socket timeouts are set to.
    io_timeout: Duration,
}

impl NodeConnection {
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

impl Connect for NodeConnection {
    fn connect<T>(info: T, timeout: Option<Duration>) -> RedisResult<Self>
    where
        T: IntoConnectionInfo,
    {
        let left = time_left()?;
        let client = Client::open(info)?;
        // As the pool shares it out: each reply of the connection's setup
        // gets a part of the budget.
        let budget = timeout.map_or(left, |t| t.min(left)) / crate::pool::setup_replies(&client);
        let inner = client.get_connection_with_timeout(budget.max(Duration::from_millis(1)))?;
        Ok(Self {
            inner,
            io_timeout: Duration::ZERO,
        })
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

impl ConnectionLike for NodeConnection {
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

/// A cluster connection over [`NodeConnection`]s.
pub(crate) type Cluster = ClusterConnection<NodeConnection>;

/// A pool of up to `pool_size` cluster connections, made on demand.
pub(crate) struct ClusterPool {
    client: ClusterClient,
    options: Options,
    slots: Slots<Cluster>,
}

impl std::fmt::Debug for ClusterPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (open, idle) = self.state();
        f.debug_struct("ClusterPool")
            .field("open", &open)
            .field("idle", &idle)
            .finish_non_exhaustive()
    }
}

impl ClusterPool {
    pub(crate) fn new(client: ClusterClient, options: Options) -> Self {
        Self {
            client,
            options,
            slots: Slots::new(),
        }
    }

    pub(crate) fn options(&self) -> &Options {
        &self.options
    }

    /// (open, idle) cluster connections now.
    pub(crate) fn state(&self) -> (u32, usize) {
        self.slots.state()
    }

    /// Starts a storage step: its deadline, set for this thread, and a
    /// cluster connection.
    pub(crate) fn session(&self) -> Result<Session<'_>, StorageError> {
        let started = Instant::now();
        let deadline = started
            .checked_add(self.options.timeout)
            .or_else(|| started.checked_add(Duration::from_secs(365 * 24 * 3600)))
            .unwrap_or(started);
        let scope = DeadlineScope::enter(deadline);
        let pooled = self.checkout(deadline)?;
        Ok(Session {
            pool: self,
            pooled: Some(pooled),
            failed: false,
            _scope: scope,
        })
    }

    fn checkout(&self, deadline: Instant) -> Result<Entry<Cluster>, StorageError> {
        match self.slots.take(self.options.pool_size, deadline) {
            Some(Taken::Idle(entry)) => Ok(entry),
            Some(Taken::Make { generation }) => self
                .client
                .get_generic_connection::<NodeConnection>()
                .map(|item| Entry { item, generation })
                .map_err(from_redis)
                .inspect_err(|_| self.slots.make_failed()),
            None => Err(StorageError::new(
                StorageErrorKind::TimedOut,
                format!(
                    "no free Redis Cluster connection within {:?}: all {} are busy",
                    self.options.timeout, self.options.pool_size
                ),
            )),
        }
    }
}

/// One storage step: a cluster connection from the pool, given back when
/// the step ends, and the deadline every round trip of the step must meet
/// (for this thread, while it lives).
pub(crate) struct Session<'a> {
    pool: &'a ClusterPool,
    pooled: Option<Entry<Cluster>>,
    failed: bool,
    _scope: DeadlineScope,
}

impl Session<'_> {
    /// The cluster connection.
    pub(crate) fn cluster(&mut self) -> Result<&mut Cluster, StorageError> {
        self.pooled
            .as_mut()
            .map(|p| &mut p.item)
            .ok_or_else(|| StorageError::new(StorageErrorKind::Other, "no cluster connection"))
    }

    /// Passes `result` on, noting whether it says a node is missing.
    pub(crate) fn settle<T>(&mut self, result: Result<T, StorageError>) -> Result<T, StorageError> {
        if let Err(e) = &result {
            if matches!(
                e.kind(),
                StorageErrorKind::Unavailable | StorageErrorKind::TimedOut
            ) {
                self.failed = true;
            }
        }
        result
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        if let Some(pooled) = self.pooled.take() {
            // A failed step's slot map, and the idle ones', may point at a
            // node that is gone: new connections read it afresh.
            self.pool.slots.give_back(pooled, self.failed, true);
        }
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
        assert_eq!(from_redis(error).kind(), StorageErrorKind::TimedOut);
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
    fn a_cluster_that_refuses_connections_fails_the_step_and_frees_its_slot() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = ClusterClient::new([format!("redis://127.0.0.1:{port}/")]).unwrap();
        let pool = ClusterPool::new(
            client,
            Options::new().timeout(Duration::from_secs(30)).pool_size(1),
        );
        for _ in 0..3 {
            let began = Instant::now();
            let error = pool.session().map(drop).unwrap_err();
            assert_eq!(error.kind(), StorageErrorKind::Unavailable, "{error}");
            assert!(began.elapsed() < Duration::from_secs(10));
        }
        assert_eq!(pool.state(), (0, 0));
    }
}
