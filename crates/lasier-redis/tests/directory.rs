//! The directory of circuits: a breaker on Redis writes its entry
//! (`lasier:circuit:<name>`: rule, window, timeouts, when) when built and
//! then at most once per window while in use, off its calls' path, and a
//! store that fails it fails no call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lasier_redis::{Options, RedisStorage};
use lasier_sync::CircuitBreaker;
use support::unique;

/// The entry of `name`, once it is there (the write is in the background).
fn entry_within(server: &support::Server, name: &str, within: Duration) -> HashMap<String, String> {
    let key = format!("lasier:circuit:{name}");
    let deadline = Instant::now() + within;
    loop {
        let fields: HashMap<String, String> = server.cmd(&["HGETALL", &key]);
        if !fields.is_empty() || Instant::now() > deadline {
            return fields;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn now_unix_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

#[test]
fn a_breaker_registers_its_rule_window_and_timeouts_when_built() {
    let server = server_or_skip!();
    let name = format!("{{{}}}", unique("directory"));
    let _breaker = CircuitBreaker::builder(name.as_str())
        .storage(server.storage())
        .percentage_failures(50, 20)
        .sliding_window(6)
        .failure_timeout(Duration::from_secs(30))
        .circuit_timeout(Duration::from_secs(10))
        .half_open_max_calls(3)
        .half_open_successes(2)
        .build()
        .unwrap();
    let entry = entry_within(server, &name, Duration::from_secs(5));
    assert_eq!(
        entry.get("rule").map(String::as_str),
        Some("percentage_failures(50, 20)")
    );
    assert_eq!(entry.get("window").map(String::as_str), Some("sliding(6)"));
    assert_eq!(
        entry.get("failure_timeout_ms").map(String::as_str),
        Some("30000")
    );
    assert_eq!(
        entry.get("circuit_timeout_ms").map(String::as_str),
        Some("10000")
    );
    assert_eq!(
        entry.get("half_open_max_calls").map(String::as_str),
        Some("3")
    );
    assert_eq!(
        entry.get("half_open_successes").map(String::as_str),
        Some("2")
    );
    // When, by the server's clock (the same machine's here).
    let seen: u64 = entry["seen_ms"].parse().unwrap();
    assert!(seen.abs_diff(now_unix_ms()) < 5_000, "seen_ms {seen}");
    // Forgotten a day after the last registration.
    let ttl: i64 = server.cmd(&["PTTL", &format!("lasier:circuit:{name}")]);
    assert!(ttl > 23 * 3_600_000 && ttl <= 24 * 3_600_000, "{ttl}");
}

#[test]
fn a_breaker_in_use_registers_again_at_most_once_per_window() {
    let server = server_or_skip!();
    let name = unique("reregister");
    let key = format!("lasier:circuit:{name}");
    let breaker = CircuitBreaker::builder(name.as_str())
        .storage(server.storage())
        .max_failures(3)
        .failure_timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    assert!(!entry_within(server, &name, Duration::from_secs(5)).is_empty());
    server.cmd::<i64>(&["DEL", &key]);
    // Within the window: calls, and no new entry.
    let built = Instant::now();
    while built.elapsed() < Duration::from_millis(200) {
        breaker.call(|| Ok::<_, ()>(())).unwrap();
    }
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        server.cmd::<i64>(&["EXISTS", &key]),
        0,
        "registered twice in a window"
    );
    // A window later, the next call has it written again.
    std::thread::sleep(Duration::from_millis(400));
    breaker.call(|| Ok::<_, ()>(())).unwrap();
    let entry = entry_within(server, &name, Duration::from_secs(5));
    assert_eq!(
        entry.get("rule").map(String::as_str),
        Some("max_failures(3)")
    );
}

#[test]
fn a_breaker_in_sync_mode_registers_from_its_background_syncs() {
    let server = server_or_skip!();
    let name = unique("sync-directory");
    let key = format!("lasier:circuit:{name}");
    let breaker = CircuitBreaker::builder(name.as_str())
        .storage(server.storage())
        .max_failures(3)
        .count_window(50)
        .failure_timeout(Duration::from_millis(300))
        .sync_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let entry = entry_within(server, &name, Duration::from_secs(5));
    assert_eq!(entry.get("window").map(String::as_str), Some("count(50)"));
    server.cmd::<i64>(&["DEL", &key]);
    // No call asks the store (the mirror admits): the syncs write it again.
    breaker.call(|| Ok::<_, ()>(())).unwrap();
    assert!(!entry_within(server, &name, Duration::from_secs(5)).is_empty());
}

#[test]
fn a_store_that_does_not_answer_fails_no_build_and_no_call() {
    // A port nothing listens on: every step fails, fast.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let storage =
        RedisStorage::open_with_options(format!("redis://127.0.0.1:{port}"), Options::default())
            .unwrap();
    let started = Instant::now();
    let breaker = CircuitBreaker::builder(unique("dead-store").as_str())
        .storage(storage)
        .max_failures(3)
        .on_storage_failure(lasier_sync::StorageFailurePolicy::FailOpen)
        .build()
        .unwrap();
    // (the registration is the background thread's: the build does not wait)
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    for _ in 0..10 {
        assert_eq!(breaker.call(|| Ok::<_, ()>(7)).unwrap(), 7);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_breaker_registers_when_built_in_a_runtime() {
    let server = server_or_skip!();
    let name = unique("async-directory");
    let storage = support::async_storage(&server.url(), Options::default()).await;
    let _breaker = lasier_async::CircuitBreaker::builder(name.as_str())
        .storage(storage)
        .max_failures(2)
        .count_window(20)
        .minimum_calls(5)
        .build()
        .unwrap();
    let entry = tokio::task::spawn_blocking({
        let name = name.clone();
        move || entry_within(server, &name, Duration::from_secs(5))
    })
    .await
    .unwrap();
    assert_eq!(
        entry.get("rule").map(String::as_str),
        Some("max_failures(2)")
    );
    assert_eq!(entry.get("window").map(String::as_str), Some("count(20)"));
}

#[test]
fn a_storage_lists_registered_forced_and_python_opened_circuits() {
    let server = server_or_skip!();
    let registered = unique("listed-registered");
    let forced = unique("listed-forced");
    let python = unique("listed-python");
    let _breaker = CircuitBreaker::builder(registered.as_str())
        .storage(server.storage())
        .max_failures(3)
        .build()
        .unwrap();
    assert!(!entry_within(server, &registered, Duration::from_secs(5)).is_empty());
    CircuitBreaker::builder(forced.as_str())
        .storage(server.storage())
        .max_failures(3)
        .build()
        .unwrap()
        .force_open()
        .unwrap();
    // What Python lasier writes when it opens a circuit: its flag alone.
    server.cmd::<()>(&["SET", &format!("circuit_{python}"), "1", "PX", "60000"]);

    let found = server.storage().circuits().unwrap();
    use lasier_redis::listing::FoundBy;
    assert!(
        found[&registered].contains(&FoundBy::Directory),
        "{found:?}"
    );
    assert!(found[&forced].contains(&FoundBy::Mode), "{found:?}");
    assert!(found[&forced].contains(&FoundBy::OpenFlag), "{found:?}");
    assert_eq!(
        found[&python].iter().copied().collect::<Vec<_>>(),
        [FoundBy::OpenFlag]
    );
    // (the trial lease and passes are not names: no stray entry)
    assert!(found.keys().all(|name| !name.starts_with("lease:")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_storage_lists_circuits_too() {
    let server = server_or_skip!();
    let python = unique("async-listed");
    server.cmd::<()>(&["SET", &format!("circuit_{python}"), "1", "PX", "60000"]);
    let storage = support::async_storage(&server.url(), Options::default()).await;
    let found = storage.circuits().await.unwrap();
    assert!(found.contains_key(&python), "{found:?}");
}
