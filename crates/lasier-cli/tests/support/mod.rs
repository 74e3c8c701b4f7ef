//! Running the built `lasier` binary against the test binary's real
//! redis-server (lasier-redis-harness: a free port, never 6379, never a
//! flush, names of its own per test).
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

pub use lasier_redis_harness::{eventually, skip, unique, RedisServer};

/// The `lasier` binary, without the environment's store.
pub fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lasier"));
    command.env_remove("LASIER_REDIS_URL");
    command
}

/// `lasier --url <url> <args>`, stdin empty (not a terminal).
pub fn lasier(url: &str, args: &[&str]) -> Output {
    lasier_with_stdin(url, args, "")
}

/// `lasier --url <url> <args>` with `stdin` piped in.
pub fn lasier_with_stdin(url: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = command()
        .arg("--url")
        .arg(url)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running lasier");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    child.wait_with_output().expect("waiting for lasier")
}

/// What it printed on stdout.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What it printed on stderr.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts success, and returns stdout.
pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "lasier failed ({:?}): {}{}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

/// Asserts that it failed with `code` and one line on stderr starting
/// `lasier: `, and returns that line.
pub fn failed(output: &Output, code: i32) -> String {
    let err = stderr(output);
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {err}",
        stdout(output)
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {err:?}");
    assert!(lines[0].starts_with("lasier: "), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    lines[0].to_owned()
}

/// `list --json`, parsed; the circuit named `name` in it.
pub fn listed(url: &str, name: &str) -> Option<serde_json::Value> {
    let text = ok(&lasier(url, &["list", "--json"]));
    let listing: serde_json::Value = serde_json::from_str(&text).expect("list --json is JSON");
    listing["circuits"]
        .as_array()
        .expect("circuits is an array")
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
}

/// Unix epoch milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Whether `script` (util-linux) can give the tool a terminal; says so
/// loudly if not.
pub fn script_available() -> bool {
    let found = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        skip("`script` (util-linux) is missing: the confirmation-on-a-terminal tests");
    }
    found
}

/// Runs `lasier --url <url> <args>` on a pseudo-terminal (through
/// `script`), typing `typed` at it.
pub fn lasier_on_a_terminal(url: &str, args: &[&str], typed: &str) -> Output {
    let mut line = format!("'{}' --url '{url}'", env!("CARGO_BIN_EXE_lasier"));
    for arg in args {
        line.push_str(&format!(" '{arg}'"));
    }
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_remove("LASIER_REDIS_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running script");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(typed.as_bytes());
    }
    child.wait_with_output().expect("waiting for script")
}

/// This binary's shared server, or `None` after a loud skip: whether
/// redis-server is there at all.
pub fn server_or_none() -> Option<&'static RedisServer> {
    lasier_redis_harness::server()
}
