//! lasier-testkit's conformance suite on both storages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

#[test]
fn redis_storage_passes_the_conformance_suite() {
    let server = server_or_skip!();
    lasier_testkit::check_storage(|| server.storage());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_redis_storage_passes_the_conformance_suite() {
    let server = server_or_skip!();
    let url = server.url();
    lasier_testkit::check_async_storage(|| {
        let url = url.clone();
        async move {
            lasier_redis::AsyncRedisStorage::connect(url.as_str())
                .await
                .unwrap()
        }
    })
    .await;
}
