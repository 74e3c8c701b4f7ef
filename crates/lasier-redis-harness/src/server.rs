//! `redis-server` processes started by the test binary.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::skip;

/// How to start a [`RedisServer`]: a password, TLS, other arguments.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    password: Option<String>,
    tls: Option<Tls>,
    args: Vec<String>,
}

/// Certificates of a TLS port.
#[derive(Debug, Clone)]
struct Tls {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl ServerOptions {
    /// A plain server: no password, no TLS.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires `password` (`--requirepass`); [`RedisServer::url`] carries
    /// it.
    #[must_use]
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    /// Serves TLS only (`--tls-port`, no plain port), with the certificate
    /// and key at `cert` and `key`, signed by the CA at `ca`; clients need
    /// no certificate of their own. [`RedisServer::url`] is then
    /// `rediss://`.
    #[must_use]
    pub fn tls(mut self, cert: PathBuf, key: PathBuf, ca: PathBuf) -> Self {
        self.tls = Some(Tls { cert, key, ca });
        self
    }

    /// Passes `arg` to `redis-server` as it is.
    #[must_use]
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }
}

/// A `redis-server` that this test binary started on a free port of
/// 127.0.0.1. Killed when dropped, and when the test binary exits however it
/// exits (even killed: a watchdog shell notices its stdin close).
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    options: ServerOptions,
    process: Mutex<Option<Process>>,
}

#[derive(Debug)]
struct Process {
    /// The shell that runs redis-server and kills it once `watchdog`
    /// closes.
    shell: Child,
    watchdog: ChildStdin,
    pid: u32,
}

/// This test binary's shared server, started on first use; `None` (after a
/// loud message, see [`skip`]) if `redis-server` is missing. Tests share
/// it, each with keys of its own; a test that kills or slows its server
/// starts its own with [`RedisServer::start`].
pub fn server() -> Option<&'static RedisServer> {
    static SERVER: OnceLock<Option<RedisServer>> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start).as_ref()
}

/// Whether `redis-server` can be run; says so loudly once if not.
pub(crate) fn installed() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    let installed = *INSTALLED.get_or_init(|| {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            skip("redis-server is not installed (apt-get install redis-server)");
        }
        found
    });
    if !installed && crate::required() {
        skip("redis-server is not installed (apt-get install redis-server)");
    }
    installed
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

impl RedisServer {
    /// Starts a plain server of the calling test's own. `None` (after a
    /// loud message) if `redis-server` is missing.
    ///
    /// # Panics
    ///
    /// If `redis-server` is missing and `LASIER_REQUIRE_REDIS=1`, or if it
    /// does not start.
    pub fn start() -> Option<Self> {
        Self::start_with(ServerOptions::new())
    }

    /// Starts a server with `options`; as [`start`](Self::start).
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_with(options: ServerOptions) -> Option<Self> {
        if !installed() {
            return None;
        }
        let mut last = String::new();
        for _ in 0..5 {
            let port = match free_port() {
                Ok(port) => port,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            match spawn(port, &options) {
                Ok(process) => {
                    return Some(Self {
                        port,
                        options,
                        process: Mutex::new(Some(process)),
                    })
                }
                Err(e) => last = e,
            }
        }
        panic!("could not start redis-server: {last}");
    }

    /// Starts a server with `options` on `port`, once: the cluster harness
    /// picks its ports itself (each node's bus port is `port + 10000`).
    pub(crate) fn start_on(port: u16, options: ServerOptions) -> Result<Self, String> {
        let process = spawn(port, &options)?;
        Ok(Self {
            port,
            options,
            process: Mutex::new(Some(process)),
        })
    }

    /// The port it listens on (TLS only, with [`ServerOptions::tls`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:port/`, with the password if there is one
    /// (`redis://:password@...`), `rediss://` with TLS.
    pub fn url(&self) -> String {
        url(self.port, &self.options)
    }

    /// The password it requires, if any.
    pub fn password(&self) -> Option<&str> {
        self.options.password.as_deref()
    }

    fn process(&self) -> MutexGuard<'_, Option<Process>> {
        self.process.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether it runs (it was not [killed](Self::kill), or was
    /// [restarted](Self::restart) since).
    pub fn is_running(&self) -> bool {
        self.process().is_some()
    }

    /// Kills it (`SIGKILL`: a crash, not a shutdown) and waits until it is
    /// gone. Its data is lost. Does nothing if it is not running.
    pub fn kill(&self) {
        let Some(process) = self.process().take() else {
            return;
        };
        stop(process);
    }

    /// Starts it again on the same port, with the same options, and waits
    /// until it answers. It starts empty. Does nothing if it runs.
    ///
    /// # Panics
    ///
    /// If it does not start.
    pub fn restart(&self) {
        let mut process = self.process();
        if process.is_some() {
            return;
        }
        let mut last = String::new();
        for _ in 0..20 {
            match spawn(self.port, &self.options) {
                Ok(started) => {
                    *process = Some(started);
                    return;
                }
                // The port may be held for a moment by the old process.
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "could not restart redis-server on port {}: {last}",
            self.port
        );
    }

    /// A plain connection, to look at keys and server stats.
    ///
    /// # Panics
    ///
    /// If it cannot connect within 2 s.
    pub fn raw(&self) -> redis::Connection {
        client(self.port, &self.options)
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .unwrap_or_else(|e| panic!("connecting to the test redis-server: {e}"))
    }

    /// Runs `args` as one command on a plain connection.
    ///
    /// The script calls this server has run so far (`EVALSHA`, `EVAL` and
    /// `SCRIPT` in `INFO commandstats`): a breaker's round trips, since
    /// each of its steps is one script.
    pub fn script_calls(&self) -> u64 {
        let info: String = self.cmd(&["INFO", "commandstats"]);
        info.lines()
            .filter(|l| {
                [
                    "cmdstat_evalsha:",
                    "cmdstat_eval:",
                    "cmdstat_script|",
                    "cmdstat_script:",
                ]
                .iter()
                .any(|prefix| l.starts_with(prefix))
            })
            .filter_map(|l| {
                l.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }

    /// # Panics
    ///
    /// If the command fails, or its reply is not a `T`.
    pub fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let Some((name, rest)) = args.split_first() else {
            panic!("cmd needs at least a command name");
        };
        let mut cmd = redis::cmd(name);
        for arg in rest {
            cmd.arg(*arg);
        }
        cmd.query(&mut self.raw())
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Redis' clock, in whole milliseconds.
    pub fn time_ms(&self) -> i64 {
        let (secs, micros): (i64, i64) = self.cmd(&["TIME"]);
        secs * 1000 + micros / 1000
    }

    /// Runs `write` and checks that it gave `key` a TTL of exactly `ttl_ms`
    /// from the moment Redis ran it: the deadline is `ttl_ms` after a
    /// reading of Redis' clock taken between one just before and one just
    /// after. However slow the machine, nothing here depends on timing.
    ///
    /// # Panics
    ///
    /// If the TTL is another.
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

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn url(port: u16, options: &ServerOptions) -> String {
    let scheme = if options.tls.is_some() {
        "rediss"
    } else {
        "redis"
    };
    match &options.password {
        Some(password) => format!("{scheme}://:{password}@127.0.0.1:{port}/"),
        None => format!("{scheme}://127.0.0.1:{port}/"),
    }
}

/// A client for the harness' own connections (TLS needs the `tls-rustls`
/// feature of `redis`, which this crate does not turn on: a TLS server is
/// checked and queried over its TLS port by the test itself).
fn client(port: u16, options: &ServerOptions) -> redis::RedisResult<redis::Client> {
    redis::Client::open(url(port, options))
}

fn stop(mut process: Process) {
    let _ = Command::new("kill")
        .args(["-KILL", &process.pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    drop(process.watchdog);
    let _ = process.shell.wait();
}

fn spawn(port: u16, options: &ServerOptions) -> Result<Process, String> {
    let dir = std::env::temp_dir();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        // redis-server in the background; its pid on our stdout; a subshell
        // kills it when our stdin (kept as fd 3: background jobs get
        // /dev/null as stdin) reaches EOF, which happens when this process
        // exits, however it exits; the shell itself exits when redis-server
        // does.
        .arg(concat!(
            r#"exec 3<&0; redis-server "$@" </dev/null >/dev/null 2>&1 & pid=$!; echo "$pid"; "#,
            r#"(cat <&3 >/dev/null; kill "$pid" 2>/dev/null) >/dev/null 2>&1 & wait "$pid""#
        ))
        .arg("sh")
        .args(["--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .args(["--logfile", ""]);
    match &options.tls {
        Some(tls) => {
            command
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(&tls.cert)
                .arg("--tls-key-file")
                .arg(&tls.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca)
                .args(["--tls-auth-clients", "no"]);
        }
        None => {
            command.args(["--port", &port.to_string()]);
        }
    }
    if let Some(password) = &options.password {
        command.args(["--requirepass", password]);
    }
    command.args(&options.args);
    let mut shell = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawning redis-server: {e}"))?;
    let watchdog = shell.stdin.take().ok_or("no stdin for the watchdog")?;
    let stdout = shell.stdout.take().ok_or("no stdout for the pid")?;
    let mut line = String::new();
    let pid = BufReader::new(stdout)
        .read_line(&mut line)
        .ok()
        .and_then(|_| line.trim().parse::<u32>().ok());
    let Some(pid) = pid else {
        drop(watchdog);
        let _ = shell.kill();
        let _ = shell.wait();
        return Err(format!("no pid from the redis-server shell: {line:?}"));
    };
    let process = Process {
        shell,
        watchdog,
        pid,
    };
    let up = wait_until_up(port, options, process.pid, &mut alive(process.pid));
    match up {
        Ok(()) => Ok(process),
        Err(e) => {
            stop(process);
            Err(e)
        }
    }
}

/// Whether the process `pid` is still there (`kill -0`).
fn alive(pid: u32) -> impl FnMut() -> bool {
    move || {
        Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// The process id of the server answering on `port`, if one answers.
fn answering_pid(port: u16, options: &ServerOptions) -> Option<u32> {
    let info: String = client(port, options)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
        .and_then(|mut c| redis::cmd("INFO").arg("server").query(&mut c))
        .ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
}

/// Waits until the server `pid` answers on `port`. Another process may have
/// taken the port between the moment it was found free and the moment the
/// server tried to listen: then the server exits, and whoever answers is
/// not it, which the process id tells.
fn wait_until_up(
    port: u16,
    options: &ServerOptions,
    pid: u32,
    alive: &mut dyn FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let up = if options.tls.is_some() {
            // No TLS client here: a TCP connection accepted is enough.
            std::net::TcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_millis(200),
            )
            .is_ok()
        } else {
            match answering_pid(port, options) {
                Some(answering) if answering == pid => true,
                Some(answering) => {
                    return Err(format!(
                        "port {port} is taken by another redis-server (pid {answering})"
                    ))
                }
                None => false,
            }
        };
        if up {
            return Ok(());
        }
        if !alive() {
            return Err(format!(
                "redis-server on port {port} exited (port taken? options unsupported?)"
            ));
        }
        if Instant::now() > deadline {
            return Err(format!("redis-server on port {port} did not answer"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
