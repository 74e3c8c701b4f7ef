//! What a Redis storage runs on: the connections, and how one storage step
//! reaches the server within its deadline.
//!
//! The breaker's steps are written once, over a small seam: a *transport*
//! runs a command, or one of the breaker's scripts for a circuit, within
//! the step's timeout. [`Redis`](crate::Redis) implements
//! [`Storage`](lasier_core::Storage) over any blocking transport,
//! [`AsyncRedis`](crate::AsyncRedis) implements
//! [`AsyncStorage`](lasier_core::AsyncStorage) over any async one, and the
//! storages you name are those two over the transports here:
//!
//! | storage | transport | what it is |
//! |---|---|---|
//! | [`RedisStorage`](crate::RedisStorage) | [`ServerPool`] | a pool of plain connections, each step's deadline on its sockets |
//! | `ClusterRedisStorage` | `ClusterPool` | a pool of cluster connections, the same way (feature `cluster`) |
//! | [`AsyncRedisStorage`](crate::AsyncRedisStorage) | [`Multiplexed`] | one multiplexed connection: a `ConnectionManager`, or a `MultiplexedConnection` of yours |
//! | `AsyncClusterRedisStorage` | `AsyncCluster` | redis' async cluster connection (feature `cluster`) |
//!
//! You never build a transport yourself: the storages' constructors do.
//! The traits behind the seam are the crate's own.

#[cfg(feature = "async")]
use std::future::Future;

use lasier_core::{Circuit, ConfigError, StorageError};
use redis::{Cmd, FromRedisValue, ScriptInvocation};

#[cfg(feature = "sync")]
pub use crate::server::ServerPool;

#[cfg(all(feature = "cluster", feature = "sync"))]
pub use crate::cluster::pooled::ClusterPool;

#[cfg(feature = "async")]
pub use crate::multiplexed::Multiplexed;

#[cfg(all(feature = "cluster", feature = "async"))]
pub use crate::cluster::multiplexed::AsyncCluster;

/// A blocking transport: starts storage steps.
#[cfg(feature = "sync")]
pub(crate) trait Transport: Send + Sync + 'static {
    /// One storage step: a connection, and the step's deadline.
    type Session<'a>: Session
    where
        Self: 'a;

    /// Starts a step: a connection, within the step's deadline.
    fn session(&self) -> Result<Self::Session<'_>, StorageError>;

    /// The storage's name and where it talks to, for `Debug`.
    fn describe(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result;

    /// Whether this server can hold `circuit` (a cluster needs its keys in
    /// one hash slot).
    fn validate(&self, circuit: &Circuit) -> Result<(), ConfigError> {
        let _ = circuit;
        Ok(())
    }

    /// Where the storage's watch subscribes, if it knows.
    fn watch_on(&self) -> Option<crate::watch::WatchOn> {
        None
    }
}

/// One storage step of a blocking transport: each command and script runs
/// within the step's deadline.
#[cfg(feature = "sync")]
pub(crate) trait Session {
    /// Runs `cmd`.
    fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> Result<T, StorageError>;

    /// Runs one of `circuit`'s scripts (loading it where the server lost
    /// it).
    fn invoke<T: FromRedisValue>(
        &mut self,
        circuit: &Circuit,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StorageError>;

    /// Runs `pipeline` in one round trip, every reply kept (errors too), if
    /// this transport can: `None` where it cannot (a cluster, whose
    /// commands go to several nodes).
    fn pipeline(
        &mut self,
        pipeline: &redis::Pipeline,
    ) -> Option<Result<Vec<redis::Value>, StorageError>> {
        let _ = pipeline;
        None
    }
}

/// An async transport: runs commands and scripts; the storage bounds each
/// step with tokio's timer.
#[cfg(feature = "async")]
pub(crate) trait AsyncTransport: Send + Sync + 'static {
    /// Runs `cmd`.
    fn query<T: FromRedisValue + Send>(
        &self,
        cmd: &Cmd,
    ) -> impl Future<Output = Result<T, StorageError>> + Send;

    /// Runs one of `circuit`'s scripts (loading it where the server lost
    /// it).
    fn invoke<T: FromRedisValue + Send>(
        &self,
        circuit: &Circuit,
        invocation: &ScriptInvocation<'_>,
    ) -> impl Future<Output = Result<T, StorageError>> + Send;

    /// Runs `pipeline` in one round trip, every reply kept, if this
    /// transport can (`None`: a cluster).
    fn pipeline(
        &self,
        pipeline: &redis::Pipeline,
    ) -> impl Future<Output = Option<Result<Vec<redis::Value>, StorageError>>> + Send {
        let _ = pipeline;
        async { None }
    }

    /// Where it talks to, for the message of a step that timed out:
    /// "Redis at 10.0.0.1:6379".
    fn place(&self) -> String;

    /// Hears how each step ended (a cluster connection replaces itself
    /// after a second of failures).
    fn observe<T>(&self, result: &Result<T, StorageError>) {
        let _ = result;
    }

    /// The storage's name, where it talks to and its step `timeout`, for
    /// `Debug`.
    fn describe(
        &self,
        timeout: std::time::Duration,
        f: &mut std::fmt::Formatter<'_>,
    ) -> std::fmt::Result;

    /// Whether this server can hold `circuit`.
    fn validate(&self, circuit: &Circuit) -> Result<(), ConfigError> {
        let _ = circuit;
        Ok(())
    }

    /// Where the storage's watch subscribes, if it knows.
    fn watch_on(&self) -> Option<crate::watch::WatchOn> {
        None
    }
}
