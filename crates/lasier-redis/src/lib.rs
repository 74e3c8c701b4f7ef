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
//! layout), and `lasier:half_open:<name>`, `lasier:half_open_lease:<name>`,
//! `lasier:half_open_ok:<name>` for the half-open state and its trial
//! leases (Python `lasier` reads none of these three). A sliding window
//! (`sliding_window(n)`) keeps numbered buckets at `lasier:window_*` keys,
//! a count window (`count_window(n)`) a ring of bits at `lasier:ring_*`
//! keys; the scripts make a bucket's or a ring word's key from the name
//! (so it shares the name's hash tag) and read the live ones in the same
//! step. All TTLs are in milliseconds, and Redis' clock keeps time for
//! every process.
//!
//! The storage primitives are single commands: `add` is `SET .. NX PX`,
//! `set` is `SET .. PX`, `incr` is `INCRBY`, `get` is `GET`, `expire` is
//! `PEXPIRE`, `delete` is `DEL`. The breaker's fused steps are Lua scripts,
//! each atomic and one round trip (`EVALSHA`; on `NOSCRIPT`, `SCRIPT LOAD`
//! and `EVALSHA` again, once per server restart):
//!
//! | script    | step            | what it does |
//! |-----------|-----------------|--------------|
//! | `admit`   | `admit`         | open flag set: reject, with its `PTTL` as the time left; half-open: hand out a trial permit if the lease has a free slot, starting a new lease when the last one ended; else admit |
//! | `record`  | `record`        | unless open or half-open: count the request (starting both counters of a new window with one deadline) and the failure, and return the counts for the rule |
//! | `open`    | trip, `open_circuit` | set the open flag for the open time (the circuit timeout; with [open-time backoff](lasier_core::OpenBackoff), count the opening at `lasier:openings:<name>` and take the sequence's next time), mark the half-open period, clear the counters; when tripping, only if still closed, so one caller opens it; replies the open time |
//! | `trial`   | `record` of a trial | a failure reopens (for the backoff's next time, if any); the last needed success closes and clears the counters, and leaves the count of openings one window to live |
//! | `release` | `release`       | give back a trial permit |
//! | `state`   | `state`         | closed, open or half-open |
//! | `counts`  | `counts`        | the window's counters |
//!
//! `reset` is one `DEL` of the circuit's eight keys (see
//! [`CircuitKeys`](lasier_core::CircuitKeys); `lasier:openings:<name>` is
//! written only with open-time backoff, and Python `lasier` neither reads
//! nor writes it). The rule runs in Rust on
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
//! In sync mode (`.sync_interval(d)` on the builder) a busy breaker costs
//! about one round trip per interval instead, whatever the call rate. Every
//! step that changes a circuit's state publishes its name on
//! [`CHANGES_CHANNEL`], and each storage with breakers in sync mode keeps
//! one connection subscribed to it, so that a change made by another
//! process reaches them in about one round trip, not one interval.
//!
//! # Values it did not write
//!
//! Text in a counter, a key of another type, a negative count, an open flag
//! other than `1`: every step fails with
//! [`StorageErrorKind::Corrupt`](lasier_core::StorageErrorKind::Corrupt),
//! and the scripts check everything before writing anything. Nothing
//! panics on a reply.
//!
//! # When Redis fails
//!
//! Every storage step (an admission, a record, a read) ends within its
//! [timeout](Options::timeout), 500 ms by default (see [`Options`] for why):
//! [`RedisStorage`] sets its sockets' timeouts to the time the step has
//! left and bounds the wait for a pooled connection; [`AsyncRedisStorage`]
//! runs each step under tokio's timer. A step that runs out of time fails
//! with [`StorageErrorKind::TimedOut`](lasier_core::StorageErrorKind::TimedOut),
//! one that cannot reach the server with
//! [`Unavailable`](lasier_core::StorageErrorKind::Unavailable). What the
//! breaker then does with the call is its
//! [store-failure policy](lasier_core::StorageFailurePolicy): by default it
//! protects calls with an in-process circuit and probes Redis once a
//! second until it answers.
//!
//! ```no_run
//! use std::time::Duration;
//! use lasier_redis::{Options, RedisStorage};
//!
//! let storage = RedisStorage::open_with_options(
//!     "redis://127.0.0.1:6379",
//!     Options::new().timeout(Duration::from_millis(100)).pool_size(32),
//! )?;
//! # let _ = storage;
//! # Ok::<(), lasier_core::StorageError>(())
//! ```
//!
//! # Passwords, users, TLS
//!
//! Credentials go in the URL, as redis takes them:
//! `redis://:password@host:6379` (`requirepass`) or
//! `redis://user:password@host:6379` (an ACL user), percent-encoded. A
//! wrong password fails the first step (the connection is made on first
//! use) with a [`StorageError`](lasier_core::StorageError) of kind
//! [`Other`](lasier_core::StorageErrorKind::Other) whose source is redis'
//! authentication error; [`AsyncRedisStorage::connect`] fails with it.
//!
//! With the feature `tls`, `rediss://host:6380` connects over TLS (rustls,
//! checking the server against the system's root certificates). rustls
//! needs a crypto provider, and that choice is the application's: enable
//! exactly one of rustls' `ring` or `aws-lc-rs` features in your
//! `Cargo.toml` (rustls then uses it), or install one at start with
//! `rustls::crypto::CryptoProvider::install_default`. Without one, rustls
//! panics when the first TLS connection is made. For a private CA or client
//! certificates, build the client with `redis::Client::build_with_tls`
//! (feature `tls`) and pass it to [`RedisStorage::with_options`] or to a
//! `ConnectionManager` for [`AsyncRedisStorage::with_options`]. Nothing
//! else changes.
//!
//! # Redis Cluster
//!
//! With the feature `cluster`, [`ClusterRedisStorage`] (sync) and
//! [`AsyncClusterRedisStorage`] keep circuits in a Redis Cluster, with the
//! same keys, scripts and round trips per call as on one server. A
//! breaker's scripts touch all of its keys at once, and a cluster runs a
//! script only if its keys hash to one slot, so **name the breaker with a
//! hash tag**: `"{payments}"` keeps `{payments}`, `{payments}_requests`,
//! `circuit_{payments}`, ... in the slot of `payments`, on one master.
//! Breakers with different tags spread over the masters.
//!
//! `build()` checks it, by computing each key's slot (with redis'
//! `Slot::for_key`), and refuses a breaker whose keys would not share one with
//! [`ConfigError::Invalid`](lasier_core::ConfigError::Invalid), whose
//! message shows the fix:
//!
//! ```no_run
//! # #[cfg(all(feature = "cluster", feature = "sync"))] {
//! use lasier_redis::ClusterRedisStorage;
//! use lasier_sync::CircuitBreaker;
//!
//! let storage = ClusterRedisStorage::open(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])?;
//! let error = CircuitBreaker::builder("payments")
//!     .storage(storage.clone())
//!     .max_failures(5)
//!     .build()
//!     .unwrap_err();
//! assert!(error.to_string().contains(r#"use a hash tag: name it "{payments}""#));
//! let breaker = CircuitBreaker::builder("{payments}")
//!     .storage(storage)
//!     .max_failures(5)
//!     .build()?;
//! # let _ = breaker;
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A request key set with `request_key` must carry the same tag
//! (`"{payments}:requests"`); a Python `lasier` service sharing the circuit
//! uses the same name, braces included.
//!
//! Scripts run on the master that serves the circuit's slot. `MOVED` and
//! `ASK` (a slot moving between masters) are followed by redis' cluster
//! client, `TRYAGAIN` (a script whose keys are half moved) waited out
//! within the step's timeout; none reaches the breaker. A master that never
//! ran the scripts (after a failover or a resharding) answers `NOSCRIPT`:
//! the storage loads them there, on that node only, and runs them again.
//!
//! When a master dies, its replica takes over after the cluster's
//! `cluster-node-timeout` and an election (about 3.5 s with a 2 s node
//! timeout, in the tests). Meanwhile steps on that master's slots fail
//! (and, while the cluster requires full coverage, those on every slot for
//! a moment) with [`Unavailable`](lasier_core::StorageErrorKind::Unavailable)
//! or [`TimedOut`](lasier_core::StorageErrorKind::TimedOut) within the
//! step timeout, and the breaker's store-failure policy decides; by default
//! it protects calls in-process and probes once a second, so it is back on
//! the shared circuit about a second after the promotion.
//!
//! # Features
//!
//! * `sync` (default): [`RedisStorage`].
//! * `async` (default): [`AsyncRedisStorage`], on tokio.
//! * `tls`: `rediss://` URLs, with rustls (for the async storage, through
//!   tokio-rustls; enabling it brings tokio in even without `async`); the
//!   application picks rustls' crypto provider (see above).
//! * `cluster`: [`ClusterRedisStorage`] with `sync`,
//!   [`AsyncClusterRedisStorage`] with `async` (enabling it brings tokio in
//!   even without `async`).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

#[cfg(all(feature = "cluster", any(feature = "sync", feature = "async")))]
mod cluster;
#[cfg(any(feature = "sync", feature = "async"))]
mod commands;
#[cfg(feature = "sync")]
mod deadline;
#[cfg(any(feature = "sync", feature = "async"))]
mod error;
#[cfg(feature = "sync")]
mod ledger;
pub mod listing;
#[cfg(feature = "async")]
mod multiplexed;
mod options;
#[cfg(feature = "sync")]
mod pool;
#[cfg(any(feature = "sync", feature = "async"))]
mod scripts;
#[cfg(feature = "sync")]
mod server;
#[cfg(any(feature = "sync", feature = "async"))]
mod storage;
#[cfg(any(feature = "sync", feature = "async"))]
pub mod transport;
#[cfg(any(feature = "sync", feature = "async"))]
mod watch;

#[cfg(all(feature = "cluster", feature = "async"))]
pub use cluster::multiplexed::AsyncClusterRedisStorage;
#[cfg(all(feature = "cluster", feature = "sync"))]
pub use cluster::pooled::ClusterRedisStorage;
#[cfg(feature = "async")]
pub use multiplexed::AsyncRedisStorage;
pub use options::Options;
#[cfg(feature = "sync")]
pub use server::RedisStorage;
#[cfg(feature = "async")]
pub use storage::AsyncRedis;
#[cfg(feature = "sync")]
pub use storage::Redis;
#[cfg(any(feature = "sync", feature = "async"))]
pub use watch::CHANNEL as CHANGES_CHANNEL;

/// The `redis` crate this one is built on, to name its `Client` and
/// `aio::ConnectionManager` without a version mismatch.
pub use redis;
