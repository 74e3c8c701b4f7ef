//! `MemoryStorage`, the in-process default, passes the whole suite: sync
//! and async, on a manual clock and in real time.

use lasier_core::MemoryStorage;
use lasier_testkit::Suite;

#[test]
fn memory_storage_passes_on_a_manual_clock() {
    lasier_testkit::check_storage_with_clock(MemoryStorage::with_clock);
}

#[test]
fn memory_storage_passes_in_real_time() {
    lasier_testkit::check_storage(MemoryStorage::new);
}

#[tokio::test]
async fn memory_storage_passes_async_on_a_manual_clock() {
    lasier_testkit::check_async_storage_with_clock(|clock| async move {
        MemoryStorage::with_clock(clock)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_storage_passes_async_in_real_time() {
    lasier_testkit::check_async_storage(|| async { MemoryStorage::new() }).await;
}

#[test]
fn the_report_lists_every_check_it_ran() {
    let with_clock = Suite::new().run_with_clock(MemoryStorage::with_clock);
    assert!(with_clock.is_ok(), "{with_clock}");
    assert!(with_clock
        .passed()
        .contains(&"ttls_are_exact_to_the_millisecond"));
    assert!(with_clock.passed().contains(&"incr_never_loses_an_update"));
    assert!(with_clock
        .passed()
        .contains(&"similar_names_do_not_share_state"));
    // The millisecond check needs a manual clock; the others run either way.
    let real_time = Suite::new().run(MemoryStorage::new);
    assert!(real_time.is_ok(), "{real_time}");
    assert_eq!(real_time.passed().len() + 1, with_clock.passed().len());
    println!("{with_clock}");
}
