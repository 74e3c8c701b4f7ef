//! A circuit breaker per downstream host, thousands of hosts, in bounded
//! memory: every breaker's state lives in one `MokaStorage` of at most
//! 2 000 keys, and the breaker handles themselves in a bounded moka cache.
//!
//! One host is down: its breaker opens and its calls are rejected without
//! running, while calls to the other hosts go on. Then 10 000 hosts are
//! called once each, and the storage still holds at most 2 000 keys.
//!
//! Run it with `cargo run --example moka_per_host`.

use std::sync::Arc;
use std::time::Duration;

use lasier_moka::{moka, MokaStorage};
use lasier_sync::{CircuitBreaker, ConfigError, Error};

/// A breaker per host, built on first use. A handle holds no state: one
/// evicted from `handles` and built again sees the same circuit, since the
/// circuit lives in `storage` under the host's name.
struct Breakers {
    storage: MokaStorage,
    handles: moka::sync::Cache<String, CircuitBreaker>,
}

impl Breakers {
    fn new(max_keys: u64, max_handles: u64) -> Self {
        Self {
            storage: MokaStorage::with_capacity(max_keys),
            handles: moka::sync::Cache::new(max_handles),
        }
    }

    fn for_host(&self, host: &str) -> Result<CircuitBreaker, Arc<ConfigError>> {
        self.handles.try_get_with_by_ref(host, || {
            CircuitBreaker::builder(host)
                .storage(self.storage.clone())
                .max_failures(3)
                .failure_timeout(Duration::from_secs(60))
                .circuit_timeout(Duration::from_secs(30))
                .build()
        })
    }
}

/// A fake HTTP client: `images.internal` refuses every connection.
fn fetch(host: &str, path: &str) -> Result<String, String> {
    if host == "images.internal" {
        Err(format!("{host}: connection refused"))
    } else {
        Ok(format!("200 OK from {host}{path}"))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let breakers = Breakers::new(2_000, 500);
    let hosts = ["payments.internal", "images.internal", "search.internal"];

    for round in 1..=4 {
        println!("round {round}");
        for host in hosts {
            let breaker = breakers.for_host(host)?;
            match breaker.call(|| fetch(host, "/health")) {
                Ok(body) => println!("  {host:<18} {body}"),
                Err(Error::Inner(e)) => println!("  {host:<18} failed: {e}"),
                Err(e) if e.is_open() => println!("  {host:<18} rejected: {e}"),
                Err(e) => println!("  {host:<18} {e}"),
            }
        }
    }
    let images = breakers.for_host("images.internal")?;
    println!("images.internal is {}", images.state()?);

    // Many more hosts than the storage has room for.
    for i in 0..10_000 {
        let host = format!("tenant-{i}.example.com");
        let _ = breakers.for_host(&host)?.call(|| Err::<(), _>("timeout"));
    }
    let cache = breakers.storage.cache();
    cache.run_pending_tasks();
    println!(
        "after 10 003 hosts: {} keys held (at most {}), {} breaker handles",
        cache.entry_count(),
        cache.policy().max_capacity().unwrap_or(0),
        breakers.handles.entry_count(),
    );
    Ok(())
}
