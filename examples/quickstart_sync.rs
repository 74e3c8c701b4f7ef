//! A flaky service behind a circuit breaker, on the in-memory default.
//!
//! The service fails for its first 1.5 seconds, then recovers. Watch the
//! breaker open after 3 failures, reject calls without running them, let one
//! trial call through after its 1 s open time (half-open), reopen when the
//! trial fails, and close once a trial succeeds.
//!
//! Run it with `cargo run --example quickstart_sync`.

use std::thread::sleep;
use std::time::{Duration, Instant};

use lasier_sync::{CircuitBreaker, Error, State};

/// A fake downstream service that is down until `recovers_at`.
struct FlakyService {
    recovers_at: Instant,
}

impl FlakyService {
    fn fetch(&self, id: u32) -> Result<String, String> {
        if Instant::now() < self.recovers_at {
            Err(format!("connection refused (request {id})"))
        } else {
            Ok(format!("order #{id}"))
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let service = FlakyService {
        recovers_at: start + Duration::from_millis(1500),
    };
    let breaker = CircuitBreaker::builder("orders")
        .max_failures(3)
        .failure_timeout(Duration::from_secs(10))
        .circuit_timeout(Duration::from_secs(1))
        .half_open_max_calls(1)
        .build()?;

    let mut last_state = breaker.state()?;
    println!("[    0 ms] circuit {last_state}");
    // Prints the state whenever it changed since last seen.
    let mut watch = |breaker: &CircuitBreaker| -> Result<State, lasier_sync::StorageError> {
        let state = breaker.state()?;
        if state != last_state {
            let elapsed = start.elapsed().as_millis();
            println!("[{elapsed:>5} ms] ---- circuit {last_state} -> {state} ----");
            last_state = state;
        }
        Ok(state)
    };
    for id in 1..=40 {
        watch(&breaker)?;
        let elapsed = start.elapsed().as_millis();
        match breaker.call(|| service.fetch(id)) {
            Ok(order) => println!("[{elapsed:>5} ms] call {id:>2}: ok, {order}"),
            Err(Error::Inner(e)) => println!("[{elapsed:>5} ms] call {id:>2}: failed, {e}"),
            Err(e @ Error::Open { .. }) => {
                println!("[{elapsed:>5} ms] call {id:>2}: rejected, {e}")
            }
            Err(e) => println!("[{elapsed:>5} ms] call {id:>2}: {e}"),
        }
        let state = watch(&breaker)?;
        if start.elapsed() > Duration::from_millis(2500) && state == State::Closed {
            break;
        }
        sleep(Duration::from_millis(100));
    }
    Ok(())
}
