//! Redis storage for the lasier circuit breaker: one circuit shared by every
//! process of a fleet.
//!
//! [`RedisStorage`] (blocking, feature `sync`) and [`AsyncRedisStorage`]
//! (tokio, feature `async`) keep a breaker's counters and open flag in
//! Redis. Breakers with the same name on the same Redis share one circuit:
//! when one process trips it, the others reject at once, and a Python
//! service using the original `lasier` with the same key names shares it
//! too (the key layout and values are byte-compatible).
//!
//! ```no_run
//! use std::time::Duration;
//! use lasier_redis::RedisStorage;
//! use lasier_sync::{CircuitBreaker, Error};
//!
//! let breaker = CircuitBreaker::builder("payments")
//!     .storage(RedisStorage::open("redis://127.0.0.1:6379")?)
//!     .percentage_failures(50, 20)
//!     .circuit_timeout(Duration::from_secs(30))
//!     .build()?;
//!
//! match breaker.call(|| charge_card()) {
//!     Ok(receipt) => println!("paid: {receipt}"),
//!     Err(Error::Open { retry_after, .. }) => println!("payments are down, retry in {retry_after:?}"),
//!     Err(other) => println!("failed: {other}"),
//! }
//! # fn charge_card() -> Result<String, std::io::Error> { Ok(String::new()) }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The async storage is connected once and handed to a `lasier-async`
//! breaker the same way:
//!
//! ```no_run
//! # async fn run() -> Result<(), lasier_core::StorageError> {
//! let storage = lasier_redis::AsyncRedisStorage::connect("redis://127.0.0.1:6379").await?;
//! # let _ = storage;
//! # Ok(())
//! # }
//! ```
//!
//! # How it talks to Redis
//!
//! Keys (see [`lasier_core::keys`]): `<name>` failures, `<name>_requests`
//! requests, `circuit_<name>` = `1` while open (the Python original's
//! layout), and `lasier:half_open:<name>`, `lasier:half_open_ok:<name>` for
//! the half-open state. All TTLs are in milliseconds, and Redis' clock
//! keeps time for every process.
//!
//! The storage primitives are single commands: `add` is `SET .. NX PX`,
//! `set` is `SET .. PX`, `incr` is `INCRBY`, `get` is `GET`, `expire` is
//! `PEXPIRE`, `delete` is `DEL`. The breaker's fused steps are Lua scripts,
//! each atomic and one round trip (`EVALSHA`; on `NOSCRIPT`, `SCRIPT LOAD`
//! and `EVALSHA` again, once per server restart):
//!
//! | script    | step            | what it does |
//! |-----------|-----------------|--------------|
//! | `admit`   | `admit`         | open flag set: reject, with its `PTTL` as the time left; half-open: hand out a trial permit if one is free; else admit |
//! | `record`  | `record`        | unless open or half-open: count the request (starting both counters of a new window with one deadline) and the failure, and return the counts for the rule |
//! | `open`    | trip, `open_circuit` | set the open flag for the circuit timeout, mark the half-open period, clear the counters; when tripping, only if still closed, so one caller opens it |
//! | `trial`   | `record` of a trial | a failure reopens; the last needed success closes and clears the counters |
//! | `release` | `release`       | give back a trial permit |
//! | `state`   | `state`         | closed, open or half-open |
//! | `counts`  | `counts`        | the window's counters |
//!
//! `reset` is one `DEL` of the circuit's five keys. The rule runs in Rust on
//! the counts a script returns, so custom rules work.
//!
//! ## Round trips per guarded call
//!
//! Measured by the tests (`tests/command_budget.rs`, with `INFO
//! commandstats` on a real server); the Python original's figures, for
//! comparison, are its commands on a real Redis:
//!
//! | call                                 | MaxFailures | PercentageFailures | Python, MaxFailures | Python, PercentageFailures |
//! |--------------------------------------|-------------|--------------------|---------------------|----------------------------|
//! | success on a closed circuit          | 1           | 2                  | 2                   | 4                          |
//! | failure that does not trip           | 2           | 2                  | 5                   | 9                          |
//! | failure that trips                   | 3           | 3                  | 7                   | 12                         |
//! | rejected while open, once seen open  | 0           | 0                  | 1                   | 1                          |
//!
//! A breaker that reads the open flag (a rejection) remembers the time it
//! has left, by Redis' clock, and rejects without asking Redis until then;
//! so the first rejection a process sees costs one round trip (also right
//! after its own trip), and the next ones none. A server that lost its
//! scripts (restart, `SCRIPT FLUSH`) costs two more round trips per script,
//! once.
//!
//! # Values it did not write
//!
//! Text in a counter, a key of another type, a negative count, an open flag
//! other than `1`: every step fails with
//! [`StorageErrorKind::Corrupt`](lasier_core::StorageErrorKind::Corrupt),
//! and the scripts check everything before writing anything. Nothing
//! panics on a reply.
//!
//! # Timeouts
//!
//! Connecting times out after 1 s, every command after 500 ms, and waiting
//! for a free pooled connection (sync) after 1 s. What a breaker does when
//! the store fails is the facade's business.
//!
//! # Features
//!
//! * `sync` (default): [`RedisStorage`].
//! * `async` (default): [`AsyncRedisStorage`], on tokio.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(any(feature = "sync", feature = "async"))]
use std::time::Duration;

#[cfg(any(feature = "sync", feature = "async"))]
mod commands;
#[cfg(any(feature = "sync", feature = "async"))]
mod error;
#[cfg(any(feature = "sync", feature = "async"))]
mod scripts;

#[cfg(feature = "async")]
mod async_storage;
#[cfg(feature = "sync")]
mod sync_storage;

#[cfg(feature = "async")]
pub use async_storage::AsyncRedisStorage;
#[cfg(feature = "sync")]
pub use sync_storage::RedisStorage;

/// The `redis` crate this one is built on, to name its `Client` and
/// `aio::ConnectionManager` without a version mismatch.
pub use redis;

/// How long a connection attempt may take.
#[cfg(any(feature = "sync", feature = "async"))]
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a command may wait for its reply.
#[cfg(any(feature = "sync", feature = "async"))]
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
/// Connections in a `RedisStorage`'s pool.
#[cfg(feature = "sync")]
const POOL_SIZE: u32 = 16;
