//! Sync mode: a breaker whose circuit lives in Redis, shared by the fleet,
//! that serves its closed path from memory.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p lasier-redis --example redis_sync_mode
//! ```
//!
//! Four threads call a healthy service as fast as they can for one second,
//! then it starts failing. Watch how many calls a second pass and how few
//! round trips reach Redis (one sync per interval, whatever the call
//! rate), then the circuit open as soon as this process's own failures
//! reach the rule: the sync they trigger opens it for the whole fleet. Run
//! two at once: they add up in one window.
//!
//! It only touches its own breaker's keys (`lasier-example-sync-mode` and
//! the keys derived from it), and deletes them when it is done.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lasier_redis::{redis, RedisStorage};
use lasier_sync::{CircuitBreaker, Listener, State};

const NAME: &str = "lasier-example-sync-mode";

/// Prints the state changes this process causes.
#[derive(Debug)]
struct Printer;

impl Listener for Printer {
    fn on_state_change(&self, breaker: &str, from: State, to: State) {
        println!("  [{breaker}] {from} -> {to}");
    }
}

/// Script calls the server has run so far (`INFO commandstats`): the
/// breaker's round trips.
fn scripts_run(server: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(server)
        .unwrap_or_default();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    println!("circuit {NAME:?} in Redis at {url}, synced every 100 ms");
    let breaker = CircuitBreaker::builder(NAME)
        .storage(RedisStorage::open(url.as_str())?)
        .max_failures(100)
        .failure_timeout(Duration::from_secs(10))
        .circuit_timeout(Duration::from_secs(5))
        .sync_interval(Duration::from_millis(100))
        .listener(Printer)
        .build()?;
    // A clean start: this deletes this breaker's keys, and nothing else.
    breaker.reset()?;

    let mut server = redis::Client::open(url.as_str())?.get_connection()?;
    let scripts_before = scripts_run(&mut server);
    let failing = AtomicBool::new(false);
    let (passed, failed, rejected) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while started.elapsed() < Duration::from_millis(1_500) {
                    let result = breaker.call(|| {
                        if failing.load(Ordering::Relaxed) {
                            Err("the service is down")
                        } else {
                            Ok(())
                        }
                    });
                    let counter = match result {
                        Ok(()) => &passed,
                        Err(e) if e.is_open() => &rejected,
                        Err(_) => &failed,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_secs(1));
        println!(
            "after 1 s: {} calls passed; Redis ran {} scripts (from every process on it)",
            passed.load(Ordering::Relaxed),
            scripts_run(&mut server) - scripts_before,
        );
        failing.store(true, Ordering::Relaxed);
        println!("the service starts failing");
    });
    println!(
        "then: {} failed, {} rejected without running; state {}",
        failed.load(Ordering::Relaxed),
        rejected.load(Ordering::Relaxed),
        breaker
            .state()
            .map_or_else(|e| format!("unknown ({e})"), |s| s.to_string()),
    );
    breaker.flush()?;
    breaker.reset()?;
    Ok(())
}
