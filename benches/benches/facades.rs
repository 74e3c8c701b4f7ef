//! The same guarded call through each facade and storage: sync and async,
//! in-memory and moka, on a closed circuit.

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
