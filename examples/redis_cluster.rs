//! A flaky service behind a circuit breaker whose state lives in a Redis
//! Cluster, so that every process of a fleet shares it.
//!
//! ```text
//! REDIS_CLUSTER_URLS=redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002 \
//!     cargo run -p lasier-redis --features cluster --example redis_cluster
//! ```
//!
//! One node of the cluster is enough; the others are tried in turn if it
//! does not answer. Without `REDIS_CLUSTER_URLS` it says how to run it and
//! exits.
//!
//! First it shows what a cluster asks of a breaker's name: its keys must
//! hash to one slot, so `build()` refuses a name without a hash tag and
//! says how to fix it. Then the breaker named `{lasier-example-cluster}`
//! guards a fake service that fails from 0.4 s to 1.6 s: watch the circuit
//! open after three failures, reject calls without running them, let one
//! trial through once its open time is over, and close. Kill the master
//! that serves the breaker's slot meanwhile (`redis-cli -p <port> CLUSTER
//! KEYSLOT "{lasier-example-cluster}"` tells which slot): the breaker keeps
//! protecting calls in-process while the replica takes over, then goes
//! back to the cluster.
//!
//! It only touches its own breaker's keys, and deletes them when it is done.

use std::time::{Duration, Instant};

use lasier_redis::{ClusterRedisStorage, Options};
use lasier_sync::{CircuitBreaker, Error, Listener, State, StorageError};

/// Every key of this breaker hashes on the part in braces, so they all
/// live in one slot, on one master.
const NAME: &str = "{lasier-example-cluster}";

/// Prints what the breaker tells.
#[derive(Debug)]
struct Printer;

impl Listener for Printer {
    fn on_state_change(&self, breaker: &str, from: State, to: State) {
        println!("  [{breaker}] {from} -> {to}");
    }

    fn on_fallback_entered(&self, breaker: &str, error: &StorageError) {
        println!("  [{breaker}] the cluster failed ({error}): protecting calls in-process");
    }

    fn on_fallback_left(&self, breaker: &str) {
        println!("  [{breaker}] the cluster answers again: back on the shared circuit");
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
    let Ok(urls) = std::env::var("REDIS_CLUSTER_URLS") else {
        println!(
            "REDIS_CLUSTER_URLS is not set: nothing to do.\n\
             Run it against a Redis Cluster, with the URL of one node or more, comma-separated:\n\
             \n    REDIS_CLUSTER_URLS=redis://127.0.0.1:7000,redis://127.0.0.1:7001 \\\n\
             \x20       cargo run -p lasier-redis --features cluster --example redis_cluster\n\
             \n\
             (a local cluster: `redis-server --port P --cluster-enabled yes --cluster-config-file nodes-P.conf`\n\
             on six ports, then `redis-cli --cluster create 127.0.0.1:P1 ... --cluster-replicas 1`)"
        );
        return Ok(());
    };
    let urls: Vec<&str> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    println!(
        "circuit {NAME:?} in the Redis Cluster at {}",
        urls.join(", ")
    );
    // Each storage step gives up after 200 ms: a dead master costs a call
    // that much at most, then the breaker decides without the cluster.
    let storage = ClusterRedisStorage::open_with_options(
        urls.iter().copied(),
        Options::new().timeout(Duration::from_millis(200)),
    )?;

    // A name without a hash tag: its keys would land in several slots.
    match CircuitBreaker::builder("lasier-example-cluster")
        .storage(storage.clone())
        .max_failures(3)
        .build()
    {
        Err(e) => println!("a name without a hash tag is refused:\n  {e}\n"),
        Ok(_) => println!("unexpected: a name without a hash tag was accepted"),
    }

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
