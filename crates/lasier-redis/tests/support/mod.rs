//! lasier-redis-harness's harness, plus what only lasier-redis' tests need:
//! storages on a test server.
//!
//! Every test binary gets a real `redis-server` of its own, started on a
//! free port of 127.0.0.1 on first use and killed when the binary exits;
//! tests share it, each with keys of its own (never a mock, never the
//! machine's shared server, never a flush). Where `redis-server` is
//! missing, tests skip loudly, or fail with `LASIER_REQUIRE_REDIS=1`.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::ops::Deref;
use std::sync::OnceLock;

pub use lasier_redis_harness::{
    eventually, eventually_equal, required, skip, unique, Fault, Proxy, RedisCluster, RedisServer,
    SentCommand, ServerOptions,
};

use lasier_redis::{AsyncRedisStorage, Options, RedisStorage};

/// A test server, with storage constructors.
#[derive(Debug, Clone, Copy)]
pub struct Server(pub &'static RedisServer);

impl Deref for Server {
    type Target = RedisServer;

    fn deref(&self) -> &RedisServer {
        self.0
    }
}

/// This test binary's shared server; `None` after a loud skip message.
pub fn server() -> Option<&'static Server> {
    static SERVER: OnceLock<Option<Server>> = OnceLock::new();
    SERVER
        .get_or_init(|| lasier_redis_harness::server().map(Server))
        .as_ref()
}

/// Returns this binary's shared server, or skips the calling test.
#[macro_export]
macro_rules! server_or_skip {
    () => {
        match support::server() {
            Some(server) => server,
            None => return,
        }
    };
}

/// Storages on any test server.
pub trait Storages {
    /// A new sync storage (a pool of its own) on this server.
    fn storage(&self) -> RedisStorage;
    /// A new sync storage with `options`.
    fn storage_with(&self, options: Options) -> RedisStorage;
}

impl Storages for RedisServer {
    fn storage(&self) -> RedisStorage {
        self.storage_with(Options::default())
    }

    fn storage_with(&self, options: Options) -> RedisStorage {
        RedisStorage::open_with_options(self.url(), options).expect("valid url")
    }
}

impl Server {
    /// A new sync storage (a pool of its own) on this server.
    pub fn storage(&self) -> RedisStorage {
        Storages::storage(self.0)
    }
}

/// A new async storage (a connection of its own) on the server at `url`.
pub async fn async_storage(url: &str, options: Options) -> AsyncRedisStorage {
    AsyncRedisStorage::connect_with_options(url, options)
        .await
        .expect("connecting to the test server")
}

/// What a breaker told its listener, with when.
#[derive(Debug, Default)]
pub struct Events {
    log: std::sync::Mutex<Vec<(std::time::Instant, Event)>>,
}

/// One event of [`Events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A state change.
    Changed(lasier_core::State, lasier_core::State),
    /// A rejection.
    Rejected,
    /// The store failed: fallback.
    FallbackEntered(lasier_core::StorageErrorKind),
    /// The store answers again.
    FallbackLeft,
    /// A storage operation failed.
    StorageError(lasier_core::StorageErrorKind),
}

impl Events {
    fn push(&self, event: Event) {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((std::time::Instant::now(), event));
    }

    /// Every event so far, with when it happened.
    pub fn log(&self) -> Vec<(std::time::Instant, Event)> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// How many events `keep` selects.
    pub fn count(&self, keep: impl Fn(&Event) -> bool) -> usize {
        self.log().iter().filter(|(_, e)| keep(e)).count()
    }

    /// When the first event that `keep` selects happened.
    pub fn first(&self, keep: impl Fn(&Event) -> bool) -> Option<std::time::Instant> {
        self.log().iter().find(|(_, e)| keep(e)).map(|(at, _)| *at)
    }
}

impl lasier_core::events::Listener for Events {
    fn on_state_change(&self, _: &str, from: lasier_core::State, to: lasier_core::State) {
        self.push(Event::Changed(from, to));
    }
    fn on_call_rejected(&self, _: &str, _: Option<std::time::Duration>) {
        self.push(Event::Rejected);
    }
    fn on_fallback_entered(&self, _: &str, error: &lasier_core::StorageError) {
        self.push(Event::FallbackEntered(error.kind()));
    }
    fn on_fallback_left(&self, _: &str) {
        self.push(Event::FallbackLeft);
    }
    fn on_storage_error(&self, _: &str, error: &lasier_core::StorageError) {
        self.push(Event::StorageError(error.kind()));
    }
}

/// How long guarded calls took: the longest, and how many took longer than
/// a bound.
#[derive(Debug)]
pub struct Latencies {
    bound: std::time::Duration,
    calls: std::sync::atomic::AtomicU64,
    over: std::sync::atomic::AtomicU64,
    max_micros: std::sync::atomic::AtomicU64,
}

impl Latencies {
    /// Counts calls longer than `bound`.
    pub fn new(bound: std::time::Duration) -> Self {
        Self {
            bound,
            calls: 0.into(),
            over: 0.into(),
            max_micros: 0.into(),
        }
    }

    /// Records one call that took `took`.
    pub fn record(&self, took: std::time::Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        self.calls.fetch_add(1, Relaxed);
        if took > self.bound {
            self.over.fetch_add(1, Relaxed);
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.max_micros.fetch_max(micros, Relaxed);
    }

    /// Calls recorded.
    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Calls that took longer than the bound.
    pub fn over(&self) -> u64 {
        self.over.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The longest call.
    pub fn max(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.max_micros.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// Prints a figure of a proof test where `cargo test -- --nocapture` (and
/// CI's log) shows it.
pub fn figure(test: &str, what: impl std::fmt::Display, value: impl std::fmt::Display) {
    println!("FIGURE {test}: {what} = {value}");
}

/// This test binary run again as a child process, to run only its ignored
/// test `test` with the environment `env`: how a test makes a fleet of
/// processes on one circuit. The child's stdout is piped, for
/// [`child_results`]; its stderr is inherited.
pub fn spawn_child(test: &str, env: &[(&str, &str)]) -> std::process::Child {
    let exe = std::env::current_exe().expect("this test binary's path");
    std::process::Command::new(exe)
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting the child {test}: {e}"))
}

/// Prints what a child process saw, as one line `tag key=value ...` that
/// [`child_results`] reads.
pub fn print_result(tag: &str, pairs: &[(&str, u64)]) {
    let pairs: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("{tag} {}", pairs.join(" "));
}

/// Waits for `children` (all killed, and the test failed, if they are not
/// done `within`), checks that each one passed, and returns the
/// `key=value` pairs of each one's line starting `tag `.
pub fn child_results(
    mut children: Vec<std::process::Child>,
    within: std::time::Duration,
    tag: &str,
) -> Vec<std::collections::HashMap<String, u64>> {
    let deadline = std::time::Instant::now() + within;
    while children
        .iter_mut()
        .any(|c| c.try_wait().expect("waiting for a child").is_none())
    {
        if std::time::Instant::now() > deadline {
            for child in &mut children {
                let _ = child.kill();
            }
            panic!("the child processes did not finish within {within:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().expect("a child's output");
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "a child failed: {}\n{stdout}",
                output.status
            );
            let prefix = format!("{tag} ");
            let line = stdout
                .lines()
                .find_map(|l| l.split_once(prefix.as_str()).map(|(_, result)| result))
                .unwrap_or_else(|| panic!("no {tag} line in the child's output:\n{stdout}"));
            line.split_whitespace()
                .map(|pair| {
                    let (k, v) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("{tag}: not key=value: {pair}"));
                    let v = v
                        .parse()
                        .unwrap_or_else(|_| panic!("{tag}: not a number: {pair}"));
                    (k.to_owned(), v)
                })
                .collect()
        })
        .collect()
}

/// [`eventually`] for async checks: waits (bounded, 10 s) until `done`
/// resolves to true, without blocking the runtime.
pub async fn until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + lasier_redis_harness::EVENTUALLY;
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// This test binary's shared cluster; `None` after a loud skip message.
pub fn cluster() -> Option<&'static RedisCluster> {
    lasier_redis_harness::cluster()
}

/// Returns this binary's shared cluster, or skips the calling test.
#[macro_export]
macro_rules! cluster_or_skip {
    () => {
        match support::cluster() {
            Some(cluster) => cluster,
            None => return,
        }
    };
}

/// Storages on a test cluster.
#[cfg(feature = "cluster")]
pub trait ClusterStorages {
    /// A new sync storage (a pool of its own) on this cluster.
    fn storage_with(&self, options: Options) -> lasier_redis::ClusterRedisStorage;
    /// A new async storage (connections of its own) on this cluster.
    fn async_storage_with(
        &self,
        options: Options,
    ) -> impl std::future::Future<Output = lasier_redis::AsyncClusterRedisStorage> + Send;
}

#[cfg(feature = "cluster")]
impl ClusterStorages for RedisCluster {
    fn storage_with(&self, options: Options) -> lasier_redis::ClusterRedisStorage {
        lasier_redis::ClusterRedisStorage::open_with_options(self.urls(), options)
            .expect("valid urls")
    }

    fn async_storage_with(
        &self,
        options: Options,
    ) -> impl std::future::Future<Output = lasier_redis::AsyncClusterRedisStorage> + Send {
        let urls = self.urls();
        async move {
            lasier_redis::AsyncClusterRedisStorage::connect_with_options(urls, options)
                .await
                .expect("connecting to the test cluster")
        }
    }
}
