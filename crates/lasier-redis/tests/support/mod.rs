//! A real `redis-server` for each test binary, started on a free port of
//! 127.0.0.1 and stopped when the binary exits, plus helpers.
//!
//! Never a mock, never the machine's shared server: every test talks to the
//! server this module started, and uses key names of its own (tests run in
//! parallel on one server), so nothing is ever flushed.
//!
//! Where `redis-server` is missing, tests print a loud message and pass
//! without running, unless `LASIER_REQUIRE_REDIS=1`, which makes them fail.
#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use lasier_redis::redis;

/// Whether a missing tool fails the tests instead of skipping them.
pub fn required() -> bool {
    std::env::var("LASIER_REQUIRE_REDIS").is_ok_and(|v| v == "1")
}

/// Says loudly, bypassing the test harness' output capture, that tests are
/// skipped, or fails if `LASIER_REQUIRE_REDIS=1`.
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

/// A `redis-server` this test binary started.
pub struct Server {
    pub port: u16,
    /// A shell that runs redis-server and kills it once its stdin closes,
    /// which happens when this process exits, however it exits.
    _watchdog: Mutex<(Child, ChildStdin)>,
}

/// The test binary's server, started on first use; `None` (after a loud
/// message) if `redis-server` is missing.
pub fn server() -> Option<&'static Server> {
    static SERVER: OnceLock<Option<Server>> = OnceLock::new();
    SERVER.get_or_init(start).as_ref()
}

/// Returns the server, or skips the calling test (see [`skip`]).
#[macro_export]
macro_rules! server_or_skip {
    () => {
        match support::server() {
            Some(server) => server,
            None => return,
        }
    };
}

fn start() -> Option<Server> {
    if Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        skip("redis-server is not installed (apt-get install redis-server)");
        return None;
    }
    let mut last = String::new();
    for _ in 0..5 {
        match try_start() {
            Ok(server) => return Some(server),
            Err(e) => last = e,
        }
    }
    panic!("could not start redis-server: {last}");
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn try_start() -> Result<Server, String> {
    let port = free_port()?;
    let dir = std::env::temp_dir();
    let mut child = Command::new("sh")
        .arg("-c")
        // redis-server in the background; a subshell kills it when our
        // stdin (kept as fd 3: background jobs get /dev/null as stdin)
        // reaches EOF; the shell itself exits when redis-server does.
        .arg(concat!(
            r#"exec 3<&0; redis-server "$@" </dev/null & pid=$!; "#,
            r#"(cat <&3 >/dev/null; kill "$pid" 2>/dev/null) & wait "$pid""#
        ))
        .arg("sh")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .args(["--logfile", ""])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawning redis-server: {e}"))?;
    let stdin = child.stdin.take().ok_or("no stdin for the watchdog")?;
    let url = format!("redis://127.0.0.1:{port}/");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("redis-server on port {port} exited with {status}"));
        }
        let ping = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
        if ping.is_ok() {
            return Ok(Server {
                port,
                _watchdog: Mutex::new((child, stdin)),
            });
        }
        if Instant::now() > deadline {
            drop(stdin);
            let _ = child.kill();
            return Err(format!("redis-server on port {port} did not answer"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Server {
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A plain connection, to look at keys and server stats.
    pub fn raw(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .expect("connecting to the test redis-server")
    }

    /// A new sync storage (a pool of its own) on this server.
    pub fn storage(&self) -> lasier_redis::RedisStorage {
        lasier_redis::RedisStorage::open(&self.url()).expect("valid url")
    }

    /// Runs `args` as one command on a plain connection.
    pub fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(&mut self.raw())
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }
}

impl Server {
    /// Redis' clock, in whole milliseconds.
    pub fn time_ms(&self) -> i64 {
        let (secs, micros): (i64, i64) = redis::cmd("TIME").query(&mut self.raw()).unwrap();
        secs * 1000 + micros / 1000
    }

    /// Runs `write` and checks that it gave `key` a TTL of exactly `ttl_ms`
    /// from the moment Redis ran it: the deadline is `ttl_ms` after a
    /// reading of Redis' clock taken between one just before and one just
    /// after. However slow the machine, nothing here depends on timing.
    pub fn assert_ttl(&self, key: &str, ttl_ms: i64, write: impl FnOnce()) {
        let before = self.time_ms();
        write();
        let after = self.time_ms();
        let deadline: i64 = self.cmd(&["PEXPIRETIME", key]);
        assert!(
            before + ttl_ms <= deadline && deadline <= after + ttl_ms,
            "{key}: TTL {} ms (± {} ms), expected {ttl_ms} ms",
            deadline - before,
            after - before
        );
    }
}

/// A circuit name no other test uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Waits (bounded) until `done` holds; for states that Redis' own clock
/// produces. Panics with `what` if it never does.
pub fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
