//! A flaky service behind a circuit breaker whose state lives in Redis, so
//! that every process of a fleet shares it.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p lasier-redis --example redis_sync
//! ```
//!
//! The fake service answers, fails from 0.4 s to 1.6 s, then recovers. Watch
//! the circuit open after three failures, reject calls without running
//! them, let one trial through once its open time is over, and close. Run
//! two at once: they share one circuit. Stop Redis meanwhile: the breaker
//! keeps protecting calls in-process and says so, then goes back to Redis
//! when it answers.
//!
//! It only touches its own breaker's keys (`lasier-example-redis-sync`
//! and the keys derived from it), and deletes them when it is done.

use std::time::{Duration, Instant};

use lasier_redis::{Options, RedisStorage};
use lasier_sync::{CircuitBreaker, Error, Listener, State, StorageError};

const NAME: &str = "lasier-example-redis-sync";

/// Prints what the breaker tells.
#[derive(Debug)]
struct Printer;

impl Listener for Printer {
    fn on_state_change(&self, breaker: &str, from: State, to: State) {
        println!("  [{breaker}] {from} -> {to}");
    }

    fn on_fallback_entered(&self, breaker: &str, error: &StorageError) {
        println!("  [{breaker}] Redis failed ({error}): protecting calls in-process");
    }

    fn on_fallback_left(&self, breaker: &str) {
        println!("  [{breaker}] Redis answers again: back on the shared circuit");
    }
}

/// The flaky dependency: healthy at first, down from 0.4 s to 1.6 s after
/// it started, then healthy again.
struct FlakyService {
    started: Instant,
}

impl FlakyService {
    fn charge(&self, amount: u32) -> Result<String, String> {
        let down = Duration::from_millis(400)..Duration::from_millis(1600);
        if down.contains(&self.started.elapsed()) {
            Err(format!("payment provider timed out charging {amount}"))
        } else {
            Ok(format!("charged {amount}"))
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    println!("circuit {NAME:?} in Redis at {url}");
    // Each storage step gives up after 200 ms: a hung Redis costs a call
    // that much at most, then the breaker decides without it.
    let storage = RedisStorage::open_with_options(
        url.as_str(),
        Options::new().timeout(Duration::from_millis(200)),
    )?;
    let breaker = CircuitBreaker::builder(NAME)
        .storage(storage)
        .max_failures(3)
        .failure_timeout(Duration::from_secs(10))
        .circuit_timeout(Duration::from_millis(600))
        .listener(Printer)
        .build()?;
    // A clean start: this deletes this breaker's keys, and nothing else.
    if let Err(e) = breaker.reset() {
        println!("could not reset the circuit ({e}); carrying on");
    }

    let started = Instant::now();
    let service = FlakyService { started };
    for i in 1..=30_u32 {
        let began = Instant::now();
        let outcome = breaker.call(|| service.charge(i * 10));
        let took = began.elapsed();
        match outcome {
            Ok(receipt) => println!("call {i:2}: ok, {receipt} ({took:.1?})"),
            Err(Error::Open { retry_after, .. }) => match retry_after {
                Some(after) => println!("call {i:2}: rejected, circuit open for {after:?} more"),
                None => println!("call {i:2}: rejected, circuit open"),
            },
            Err(Error::Inner(e)) => println!("call {i:2}: failed: {e}"),
            Err(e) => println!("call {i:2}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "done in {:.1?}: state {}, in fallback: {}",
        started.elapsed(),
        breaker
            .state()
            .map_or_else(|e| format!("unknown ({e})"), |s| s.to_string()),
        breaker.in_fallback()
    );
    if let Err(e) = breaker.reset() {
        println!("could not delete the circuit's keys: {e}");
    }
    Ok(())
}
