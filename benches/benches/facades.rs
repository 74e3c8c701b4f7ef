//! The same guarded call through each facade and storage: sync and async,
//! in-memory and moka, on a closed circuit; and a rejection through each
//! facade.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};

const OPEN: Duration = Duration::from_secs(3600);

#[inline(never)]
fn work() -> Result<u64, ()> {
    Ok(black_box(1))
}

async fn work_async() -> Result<u64, ()> {
    Ok(black_box(1))
}

fn sync_breaker(
    storage: Option<lasier_moka::MokaStorage>,
    percentage: bool,
) -> lasier_sync::CircuitBreaker {
    let mut builder = lasier_sync::CircuitBreaker::builder("bench").circuit_timeout(OPEN);
    builder = if percentage {
        builder.percentage_failures(50, 100)
    } else {
        builder.max_failures(5)
    };
    if let Some(storage) = storage {
        builder = builder.storage(storage);
    }
    builder.build().unwrap()
}

fn async_breaker(
    storage: Option<lasier_moka::AsyncMokaStorage>,
    percentage: bool,
) -> lasier_async::CircuitBreaker {
    let mut builder = lasier_async::CircuitBreaker::builder("bench").circuit_timeout(OPEN);
    builder = if percentage {
        builder.percentage_failures(50, 100)
    } else {
        builder.max_failures(5)
    };
    if let Some(storage) = storage {
        builder = builder.storage(storage);
    }
    builder.build().unwrap()
}

pub(crate) fn facades(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("facades_closed_success");
    for (rule, percentage) in [("MaxFailures", false), ("PercentageFailures", true)] {
        let memory = sync_breaker(None, percentage);
        group.bench_function(BenchmarkId::new("sync memory", rule), |b| {
            b.iter(|| black_box(memory.call(work)))
        });
        let moka = sync_breaker(
            Some(lasier_moka::MokaStorage::with_capacity(10_000)),
            percentage,
        );
        group.bench_function(BenchmarkId::new("sync moka", rule), |b| {
            b.iter(|| black_box(moka.call(work)))
        });
        let memory = async_breaker(None, percentage);
        group.bench_function(BenchmarkId::new("async memory", rule), |b| {
            b.to_async(&runtime)
                .iter(|| async { black_box(memory.call(work_async()).await) })
        });
        let moka = async_breaker(
            Some(lasier_moka::AsyncMokaStorage::with_capacity(10_000)),
            percentage,
        );
        group.bench_function(BenchmarkId::new("async moka", rule), |b| {
            b.to_async(&runtime)
                .iter(|| async { black_box(moka.call(work_async()).await) })
        });
    }
    group.finish();
}

/// A rejection through each facade: the circuit opened by five failures.
pub(crate) fn facades_rejected(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("facades_rejected");
    let sync = sync_breaker(None, false);
    for _ in 0..5 {
        let _ = sync.call(|| Err::<(), ()>(()));
    }
    assert!(sync.call(work).is_err());
    group.bench_function("sync memory", |b| b.iter(|| black_box(sync.call(work))));
    let asynchronous = async_breaker(None, false);
    runtime.block_on(async {
        for _ in 0..5 {
            let _ = asynchronous.call(async { Err::<(), ()>(()) }).await;
        }
        assert!(asynchronous.call(work_async()).await.is_err());
    });
    group.bench_function("async memory", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(asynchronous.call(work_async()).await) })
    });
    group.finish();
}
