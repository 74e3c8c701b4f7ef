//! A fleet on one shared breaker: 8 processes × 4 threads hammering one
//! circuit on one local Redis for a few seconds, in per-call mode and in
//! sync mode (`sync_interval` 100 ms), one after the other in the same run.
//! Prints guarded calls per second and Redis round trips per second (script
//! calls in `INFO commandstats`) for both, and writes the table to
//! `target/criterion/lasier-fleet.md`, which the report binary prints.
//!
//! Not a criterion bench: a fleet is several OS processes (this binary run
//! again with `LASIER_FLEET_CHILD`), which criterion's iterations cannot
//! hold. `cargo bench -p lasier-benches --bench fleet`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lasier_redis::RedisStorage;
use lasier_redis_harness::RedisServer;
use lasier_sync::CircuitBreaker;

const PROCESSES: usize = 8;
const THREADS: usize = 4;
const RUN: Duration = Duration::from_secs(5);

fn unix_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// One process of the fleet: calls until the end, prints its count.
fn child(url: &str, name: &str, sync_ms: u64, start: u64) {
    let builder = CircuitBreaker::builder(name)
        .storage(RedisStorage::open(url).unwrap())
        // never trips: the closed path, with every request counted
        .percentage_failures(100, u64::MAX / 2)
        .failure_timeout(Duration::from_secs(3600));
    let breaker = if sync_ms > 0 {
        builder.sync_interval(Duration::from_millis(sync_ms))
    } else {
        builder
    }
    .build()
    .unwrap();
    let _ = breaker.call(|| Ok::<(), ()>(()));
    let now = unix_ms();
    if start > now {
        std::thread::sleep(Duration::from_millis(start - now));
    }
    let calls = AtomicU64::new(0);
    let deadline = Instant::now() + RUN;
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                let mut n = 0_u64;
                while Instant::now() < deadline {
                    for _ in 0..64 {
                        let _ = breaker.call(|| Ok::<(), ()>(()));
                    }
                    n += 64;
                }
                calls.fetch_add(n, Ordering::Relaxed);
            });
        }
    });
    println!("FLEET_CALLS {}", calls.into_inner());
}

/// Runs the fleet in one mode; returns (calls per second, round trips per
/// second) over the run.
fn fleet(server: &RedisServer, sync_ms: u64) -> (f64, f64) {
    let name = format!("bench:fleet:{sync_ms}:{}", unix_ms());
    let start = unix_ms() + 1_500;
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            std::process::Command::new(&exe)
                .env("LASIER_FLEET_CHILD", "1")
                .env("LASIER_FLEET_URL", server.url())
                .env("LASIER_FLEET_NAME", &name)
                .env("LASIER_FLEET_SYNC_MS", sync_ms.to_string())
                .env("LASIER_FLEET_START", start.to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let now = unix_ms();
    std::thread::sleep(Duration::from_millis(start.saturating_sub(now)));
    let before = server.script_calls();
    std::thread::sleep(RUN);
    let during = server.script_calls() - before;
    let calls: u64 = children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success(), "a fleet process failed");
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("FLEET_CALLS ")?.trim().parse::<u64>().ok())
                .expect("a fleet process's count")
        })
        .sum();
    let secs = RUN.as_secs_f64();
    (calls as f64 / secs, during as f64 / secs)
}

fn main() {
    if std::env::var_os("LASIER_FLEET_CHILD").is_some() {
        let var = |name: &str| std::env::var(name).unwrap();
        child(
            &var("LASIER_FLEET_URL"),
            &var("LASIER_FLEET_NAME"),
            var("LASIER_FLEET_SYNC_MS").parse().unwrap(),
            var("LASIER_FLEET_START").parse().unwrap(),
        );
        return;
    }
    // `cargo bench` passes `--bench`; a filter that names another bench
    // skips this one.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"fleet".contains(a.as_str()))
    {
        return;
    }
    let Some(server) = RedisServer::start() else {
        eprintln!("\n*** redis-server is missing: the fleet bench is skipped ***\n");
        return;
    };
    let mut table = format!(
        "| {PROCESSES} processes x {THREADS} threads, one breaker (PercentageFailures), {}s | guarded calls/s | Redis round trips/s |\n|---|---:|---:|\n",
        RUN.as_secs()
    );
    let per_call = fleet(&server, 0);
    let synced = fleet(&server, 100);
    for (mode, (calls, trips)) in [("per call", per_call), ("sync mode, 100 ms", synced)] {
        println!("fleet {mode}: {calls:.0} guarded calls/s, {trips:.0} Redis round trips/s");
        let _ = writeln!(table, "| {mode} | {calls:.0} | {trips:.0} |");
    }
    println!(
        "sync mode / per call: {:.0}x the calls",
        synced.0 / per_call.0
    );
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("criterion");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("lasier-fleet.md"), table);
}
