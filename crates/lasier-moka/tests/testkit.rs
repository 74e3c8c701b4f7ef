//! Both moka storages pass the storage conformance suite. moka has no clock
//! to inject, so the kit checks TTLs with short real waits.

use lasier_moka::{AsyncMokaStorage, MokaStorage};

#[test]
fn moka_storage_passes_the_testkit() {
    lasier_testkit::check_storage(|| MokaStorage::with_capacity(10_000));
}

#[test]
fn moka_storage_on_a_cache_of_your_own_passes_the_testkit() {
    lasier_testkit::check_storage(|| {
        MokaStorage::new(
            MokaStorage::cache_builder()
                .name("mine")
                .max_capacity(10_000)
                .build(),
        )
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_moka_storage_passes_the_testkit() {
    lasier_testkit::check_async_storage(|| async { AsyncMokaStorage::with_capacity(10_000) }).await;
}

#[tokio::test]
async fn async_moka_storage_passes_the_testkit_on_one_thread() {
    lasier_testkit::check_async_storage(|| async { AsyncMokaStorage::with_capacity(10_000) }).await;
}
