//! Redis: guarded calls per second and Redis round trips per guarded call,
//! against a real `redis-server` the bench starts on a free port (skipped,
//! with a message, where `redis-server` is missing).
//!
//! Sync sequential, sync with 8 threads, async with 1 and with 64
//! concurrent tasks on one `ConnectionManager`; success path and 10 %
//! failures; both rules. Twice: on loopback (group `redis`), where client
//! and server share this machine's CPUs and a round trip costs CPU rather
//! than waiting, and through a proxy that adds [`LINK_RTT`] to every round
//! trip (group `redis_rtt_500us`), as a Redis on another host of the same
//! network would (this kernel has no `netem`, so the delay is added in user
//! space by `lasier_redis_harness::Proxy`). The round trips per call are
//! counted with `INFO commandstats` (script calls: `EVALSHA`, `EVAL`,
//! `SCRIPT`) over a fixed batch and written to
//! `target/criterion/lasier-extra.md`, which the report binary prints under
//! its table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use lasier_redis::{AsyncRedisStorage, RedisStorage};
use lasier_redis_harness::{Fault, Proxy, RedisServer};

const OPEN: Duration = Duration::from_secs(3600);

/// The round trip the second group adds, as a link between two hosts of one
/// data centre would.
const LINK_RTT: Duration = Duration::from_micros(500);

/// A rule that never opens in these benches: the figures are the closed
/// path's, with 0 % or 10 % failures counted.
#[derive(Clone, Copy)]
enum Rule {
    Max,
    Percentage,
}

impl Rule {
    fn name(self) -> &'static str {
        match self {
            Rule::Max => "MaxFailures",
            Rule::Percentage => "PercentageFailures",
        }
    }
}

fn sync_breaker(storage: RedisStorage, rule: Rule, name: &str) -> lasier_sync::CircuitBreaker {
    let b = lasier_sync::CircuitBreaker::builder(name)
        .storage(storage)
        .circuit_timeout(OPEN);
    match rule {
        Rule::Max => b.max_failures(u64::MAX),
        Rule::Percentage => b.percentage_failures(100, u64::MAX - 1),
    }
    .build()
    .unwrap()
}

fn async_breaker(
    storage: AsyncRedisStorage,
    rule: Rule,
    name: &str,
) -> lasier_async::CircuitBreaker {
    let b = lasier_async::CircuitBreaker::builder(name)
        .storage(storage)
        .circuit_timeout(OPEN);
    match rule {
        Rule::Max => b.max_failures(u64::MAX),
        Rule::Percentage => b.percentage_failures(100, u64::MAX - 1),
    }
    .build()
    .unwrap()
}

/// Call number `i` fails one time in ten when `failing`.
fn outcome(i: u64, failing: bool) -> Result<u64, u64> {
    if failing && i.is_multiple_of(10) {
        Err(i)
    } else {
        Ok(i)
    }
}

/// One group of Redis benches against the server at `url`; with `count`,
/// also the round trips per call (counted on that server) into the map.
fn group(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    url: &str,
    mut count: Option<(&RedisServer, &mut BTreeMap<String, f64>)>,
) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));

    for rule in [Rule::Max, Rule::Percentage] {
        for failing in [false, true] {
            let case = format!(
                "{} {}",
                rule.name(),
                if failing { "10% failures" } else { "success" }
            );
            let key = format!("bench:{name}:{}:{failing}", rule.name());

            // sync, sequential
            let storage = RedisStorage::open(url).unwrap();
            let b = sync_breaker(storage, rule, &key);
            let counter = AtomicU64::new(0);
            let call = |b: &lasier_sync::CircuitBreaker| {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let _ = b.call(|| outcome(i, failing));
            };
            group.bench_function(BenchmarkId::new("sync sequential", &case), |bench| {
                bench.iter(|| call(&b))
            });
            if let Some((server, extra)) = &mut count {
                let before = server.script_calls();
                for _ in 0..1000 {
                    call(&b);
                }
                let per_call = (server.script_calls() - before) as f64 / 1000.0;
                extra.insert(case.clone(), per_call);
            }

            // sync, 8 threads on one breaker (and one pool)
            group.bench_function(BenchmarkId::new("sync 8 threads", &case), |bench| {
                bench.iter_custom(|iters| {
                    let per_thread = iters.div_ceil(8);
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for _ in 0..8 {
                            s.spawn(|| {
                                for _ in 0..per_thread {
                                    call(&b);
                                }
                            });
                        }
                    });
                    start.elapsed()
                })
            });

            // async, 1 and 64 concurrent tasks on one ConnectionManager
            let storage = runtime.block_on(AsyncRedisStorage::connect(url)).unwrap();
            let b = Arc::new(async_breaker(storage, rule, &key));
            for tasks in [1_u64, 64] {
                let label = if tasks == 1 {
                    "async 1 task"
                } else {
                    "async 64 tasks"
                };
                group.bench_function(BenchmarkId::new(label, &case), |bench| {
                    bench.to_async(runtime).iter_custom(|iters| {
                        let b = Arc::clone(&b);
                        async move {
                            let per_task = iters.div_ceil(tasks);
                            let start = Instant::now();
                            let handles: Vec<_> = (0..tasks)
                                .map(|t| {
                                    let b = Arc::clone(&b);
                                    tokio::spawn(async move {
                                        for i in 0..per_task {
                                            let n = t * per_task + i;
                                            let _ =
                                                b.call(async move { outcome(n, failing) }).await;
                                        }
                                    })
                                })
                                .collect();
                            for h in handles {
                                let _ = h.await;
                            }
                            start.elapsed()
                        }
                    })
                });
            }
        }
    }
    group.finish();
}

/// Sync mode (`sync_interval`): a success on the closed path of a breaker
/// on Redis, against the in-memory breaker with the same rule, at 1 and at
/// 2 threads on one breaker (group `redis_sync_mode`).
fn sync_mode(c: &mut Criterion, server: &RedisServer) {
    let mut group = c.benchmark_group("redis_sync_mode");
    group.throughput(Throughput::Elements(1));
    for rule in [Rule::Max, Rule::Percentage] {
        let build = |storage: Option<RedisStorage>| {
            let b =
                lasier_sync::CircuitBreaker::builder(format!("bench:sync_mode:{}", rule.name()))
                    .circuit_timeout(OPEN)
                    .failure_timeout(OPEN);
            let b = match storage {
                Some(storage) => b.storage(storage).sync_interval(Duration::from_millis(100)),
                None => b,
            };
            match rule {
                Rule::Max => b.max_failures(u64::MAX),
                Rule::Percentage => b.percentage_failures(100, u64::MAX - 1),
            }
            .build()
            .unwrap()
        };
        for (label, b) in [
            ("memory", build(None)),
            (
                "redis sync 100ms",
                build(Some(RedisStorage::open(server.url()).unwrap())),
            ),
        ] {
            let call = |b: &lasier_sync::CircuitBreaker| {
                let _ = b.call(|| Ok::<u64, u64>(std::hint::black_box(1)));
            };
            group.bench_function(
                BenchmarkId::new(format!("{label} 1 thread"), rule.name()),
                |bench| bench.iter(|| call(&b)),
            );
            group.bench_function(
                BenchmarkId::new(format!("{label} 2 threads"), rule.name()),
                |bench| {
                    bench.iter_custom(|iters| {
                        let start = Instant::now();
                        std::thread::scope(|s| {
                            for _ in 0..2 {
                                s.spawn(|| {
                                    for _ in 0..iters {
                                        call(&b);
                                    }
                                });
                            }
                        });
                        start.elapsed()
                    })
                },
            );
        }
    }
    group.finish();
}

pub(crate) fn redis(c: &mut Criterion) {
    let Some(server) = RedisServer::start() else {
        eprintln!("\n*** redis-server is missing: the Redis benches are skipped ***\n");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut extra = BTreeMap::new();
    group(
        c,
        &runtime,
        "redis",
        &server.url(),
        Some((&server, &mut extra)),
    );

    sync_mode(c, &server);

    let proxy = Proxy::start(server.addr());
    proxy.set_recording(false);
    proxy.set(Fault::Delay(LINK_RTT));
    group(c, &runtime, "redis_rtt_500us", &proxy.url(None), None);

    let mut table = String::from(
        "| Redis round trips per guarded call (1000 calls, INFO commandstats) | per call |\n|---|---:|\n",
    );
    for (case, per_call) in &extra {
        let _ = writeln!(table, "| {case} | {per_call:.2} |");
    }
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("criterion");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("lasier-extra.md"), table);
}
