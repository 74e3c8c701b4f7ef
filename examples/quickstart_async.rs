//! A flaky service behind a circuit breaker, on the in-memory default: the
//! async twin of `quickstart_sync`.
//!
//! The service fails for its first 1.5 seconds, then recovers. Watch the
//! breaker open after 3 failures, reject calls without running them, let one
//! trial call through after its 1 s open time (half-open), reopen when the
//! trial fails, and close once a trial succeeds.
//!
//! Run it with `cargo run -p lasier-async --example quickstart_async`.

use std::time::Duration;

use lasier_async::{CircuitBreaker, Error, State};
use tokio::time::{sleep, Instant};

/// A fake downstream service that is down until `recovers_at`.
struct FlakyService {
    recovers_at: Instant,
}

impl FlakyService {
    async fn fetch(&self, id: u32) -> Result<String, String> {
        // a network round trip
        sleep(Duration::from_millis(5)).await;
        if Instant::now() < self.recovers_at {
            Err(format!("connection refused (request {id})"))
        } else {
            Ok(format!("order #{id}"))
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
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

    let mut last_state = breaker.state().await?;
    println!("[    0 ms] circuit {last_state}");
    for id in 1..=40 {
        watch(&breaker, start, &mut last_state).await?;
        let elapsed = start.elapsed().as_millis();
        match breaker.call(service.fetch(id)).await {
            Ok(order) => println!("[{elapsed:>5} ms] call {id:>2}: ok, {order}"),
            Err(Error::Inner(e)) => println!("[{elapsed:>5} ms] call {id:>2}: failed, {e}"),
            Err(e @ Error::Open { .. }) => {
                println!("[{elapsed:>5} ms] call {id:>2}: rejected, {e}")
            }
            Err(e) => println!("[{elapsed:>5} ms] call {id:>2}: {e}"),
        }
        let state = watch(&breaker, start, &mut last_state).await?;
        if start.elapsed() > Duration::from_millis(2500) && state == State::Closed {
            break;
        }
        sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Prints the state whenever it changed since last seen.
async fn watch(
    breaker: &CircuitBreaker,
    start: Instant,
    last_state: &mut State,
) -> Result<State, lasier_async::StorageError> {
    let state = breaker.state().await?;
    if state != *last_state {
        let elapsed = start.elapsed().as_millis();
        println!("[{elapsed:>5} ms] ---- circuit {last_state} -> {state} ----");
        *last_state = state;
    }
    Ok(state)
}
