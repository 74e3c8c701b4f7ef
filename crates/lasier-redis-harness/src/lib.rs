//! The lasier workspace's test harness (not published): real
//! `redis-server` processes, a local Redis Cluster of them
//! ([`RedisCluster`]), a TCP proxy that makes a store slow or silent on
//! command, and small helpers.
//!
//! ```no_run
//! use lasier_redis_harness::{server_or_skip, unique};
//!
//! #[test]
//! fn writes_a_key() {
//!     // This test binary's server, started on first use; a loud skip (or a
//!     // failure with LASIER_REQUIRE_REDIS=1) where redis-server is missing.
//!     let server = server_or_skip!();
//!     let key = unique("example");
//!     server.cmd::<()>(&["SET", &key, "1"]);
//! }
//! ```
//!
//! Rules every test keeps, so that tests run in parallel on one server and
//! never touch anyone else's data:
//!
//! * never a mock of Redis, never the machine's shared server (port 6379):
//!   every server here is started by the test binary on a free port of
//!   127.0.0.1, and killed when the binary exits, however it exits;
//! * keys of its own ([`unique`]), and never `FLUSHDB`;
//! * a test that kills or slows its server starts one of its own
//!   ([`RedisServer::start`]), and leaves the binary's shared one alone;
//! * a test that kills a cluster node or moves a slot runs in a binary
//!   whose tests do not mind (one [`cluster`] per binary), and leaves the
//!   cluster [healthy](RedisCluster::wait_healthy).
//!
//! Where `redis-server` (or, for a cluster, `redis-cli`) is missing, tests
//! say so loudly and pass without running, unless `LASIER_REQUIRE_REDIS=1`
//! (CI sets it), which makes them fail instead ([`skip`]).
#![forbid(unsafe_code)]
// A test harness: failing loudly is its job, so its helpers panic with a
// message instead of returning errors that every test would unwrap.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod cluster;
mod proxy;
mod resp;
mod server;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use cluster::{
    cluster, Migration, NodeView, RedisCluster, HEALTHY_WITHIN, NODE_TIMEOUT, SLOTS,
};
pub use proxy::{Fault, Proxy, SentCommand};
pub use redis;
pub use server::{server, RedisServer, ServerOptions};

/// Whether a missing tool fails the tests instead of skipping them: the
/// environment variable `LASIER_REQUIRE_REDIS` is `1`.
pub fn required() -> bool {
    std::env::var("LASIER_REQUIRE_REDIS").is_ok_and(|v| v == "1")
}

/// Says loudly, bypassing the test harness' output capture, that the tests
/// of this binary that need `what` do not run; or panics if
/// [`required`].
///
/// # Panics
///
/// With `LASIER_REQUIRE_REDIS=1`.
pub fn skip(what: &str) {
    if required() {
        panic!("{what}, and LASIER_REQUIRE_REDIS=1: failing instead of skipping");
    }
    let bar = "!".repeat(78);
    let _ = writeln!(
        std::io::stderr(),
        "\n{bar}\n!! SKIPPED: {what}.\n!! Tests of {} did not run. Set LASIER_REQUIRE_REDIS=1 to fail instead.\n{bar}\n",
        std::env::args().next().unwrap_or_default(),
    );
}

/// This test binary's shared [`RedisServer`], or returns from the calling
/// test after a loud skip message (see [`skip`]).
#[macro_export]
macro_rules! server_or_skip {
    () => {
        match $crate::server() {
            Some(server) => server,
            None => return,
        }
    };
}

/// A name no other test uses, in this process or any other: `prefix`, the
/// process id and a counter. Use it for circuit names and keys.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// How long [`eventually`] waits.
pub const EVENTUALLY: Duration = Duration::from_secs(10);

/// Waits (bounded, [`EVENTUALLY`]) until `done` holds; for states that a
/// real clock produces (Redis' TTLs, a server coming back). Never a
/// substitute for a manual clock where one can be used.
///
/// # Panics
///
/// With `what` if `done` never holds.
pub fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + EVENTUALLY;
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// [`eventually`] for a value that must come to equal `want`: a failure
/// says what it was last, which tells a value that never moved from one
/// that went past.
///
/// # Panics
///
/// With `what`, `want` and the last value read, if it never equals `want`.
pub fn eventually_equal<T: PartialEq + std::fmt::Debug>(
    what: &str,
    want: T,
    mut read: impl FnMut() -> T,
) {
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let seen = read();
        if seen == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never happened: {what} (wanted {want:?}, last read {seen:?})"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
