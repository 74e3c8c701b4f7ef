//! A conformance suite for lasier storages: one call in your tests checks
//! the contract the circuit breaker relies on.
//!
//! Add the crate as a dev-dependency of your storage and call the check
//! that fits it from a `#[test]`:
//!
//! ```
//! use lasier_core::MemoryStorage;
//!
//! // A storage that takes a clock: the timed checks move it by hand.
//! lasier_testkit::check_storage_with_clock(MemoryStorage::with_clock);
//! ```
//!
//! | your storage                        | call                                                             |
//! |-------------------------------------|------------------------------------------------------------------|
//! | [`Storage`]                         | `check_storage(\|\| MyStorage::new())`                           |
//! | ... on a clock you give it          | `check_storage_with_clock(\|clock\| MyStorage::with_clock(clock))` |
//! | `AsyncStorage`                      | `check_async_storage(\|\| async { MyStorage::connect().await }).await` |
//! | ... on a clock you give it          | `check_async_storage_with_clock(\|clock\| async { .. }).await`    |
//!
//! `make` is called once per check, so each check starts on a storage of
//! its own; on a shared store (one Redis server for a whole test binary)
//! every check also writes keys of its own, under a
//! `lasier-testkit:{<unique>}:` prefix, and deletes them afterwards. The
//! braces make the unique part a Redis Cluster hash tag: all keys of a
//! check land in one slot, so a cluster storage (which requires that of a
//! breaker's keys) can be checked too.
//!
//! Each function panics with a [`Report`] that names every broken rule,
//! what the storage did and how to fix it:
//!
//! ```text
//! lasier-testkit: 27 of 28 storage checks passed, 1 failed:
//!
//! check `incr_never_loses_an_update` failed
//!   rule: `incr` never loses an increment under concurrent callers
//!   seen: 8 concurrent callers each ran incr("lasier-testkit:..:contended", 1) 250 times:
//!         get then returned Some(1733), expected Some(2000); ...
//!   fix:  Make `incr` one atomic read-modify-write ...
//! ```
//!
//! [`Suite`] runs the same checks without panicking and returns the
//! [`Report`], with options (how many concurrent callers, the real-time
//! tick).
//!
//! # The checks
//!
//! The primitives:
//!
//! * `get_of_a_missing_key_is_none`
//! * `add_writes_only_when_absent`, and `add_is_atomic` under concurrent
//!   callers
//! * `values_round_trip`: 0, ±1, ±2^31, 2^53 + 1, `i64::MIN`, `i64::MAX`
//! * `incr_treats_a_missing_key_as_zero` (the first `incr(key, 1)` is 1),
//!   with negative deltas
//! * `incr_never_loses_an_update`: 8 threads (or tasks) × 250 increments;
//!   the returned values must be exactly 1..=2000
//! * `delete_removes_the_key`, `expire_of_a_missing_key_does_nothing`
//! * TTLs: `ttls_expire`, `expired_keys_are_missing` (for `add`, `incr`
//!   and `expire` too), `expire_sets_the_ttl`, `incr_keeps_the_ttl` (neither
//!   removed nor extended), `set_replaces_the_ttl`, and on a manual clock
//!   `ttls_are_exact_to_the_millisecond`
//!
//! The fused steps (`admit`, `record`, `release`, `open_circuit`, `state`,
//! `counts`, `reset`): each `steps_*` check drives breakers through a
//! scenario on your storage and on a reference that has only the primitives
//! (so runs the default bodies), and compares every answer:
//! `steps_max_failures_opens_the_circuit`,
//! `steps_percentage_rule_counts_requests`,
//! `steps_outcomes_after_opening_are_not_counted`,
//! `steps_open_circuit_and_reset`, `steps_failures_expire_with_their_window`,
//! `steps_requests_and_failures_share_a_window`,
//! `steps_half_open_trial_success_closes`,
//! `steps_half_open_trial_failure_reopens`,
//! `steps_half_open_needs_every_trial`,
//! `steps_half_open_closes_after_enough_successes`,
//! `steps_half_open_one_success_closes_and_one_failure_reopens`,
//! `steps_released_trial_frees_its_slot`,
//! `steps_a_trial_of_an_earlier_period_decides_nothing`,
//! `steps_a_trial_that_outlives_its_lease_frees_its_slot`,
//! `steps_an_idle_half_open_circuit_stays_half_open`,
//! `steps_a_half_open_marker_without_a_ttl_heals`,
//! `steps_without_half_open_state`,
//! `steps_backoff_doubles_up_to_its_maximum_and_starts_again_after_a_closed_window`,
//! `steps_backoff_goes_on_after_a_closing_followed_by_a_trip_within_the_window`,
//! `steps_backoff_without_half_open_state`.
//! Compared are the admission (a normal call, a trial or a rejection; not
//! the `retry_after` hint nor the trial's episode number, which is the
//! storage's to choose), the state change that
//! `record` reports, and what `state` and `counts` say. A storage that
//! overrides no step passes these when its primitives are right; one that
//! overrides them (a Lua script per step) is held to what the default
//! bodies do.
//!
//! Isolation: `circuits_do_not_share_state` (two breakers; one opens and is
//! reset, the other keeps its counts), `similar_names_do_not_share_state`
//! (names differing by case, a suffix, a trailing space, a hash tag, an
//! accent, or the last of 200 characters) and `reset_deletes_only_its_keys`
//! (keys like `<name>*`, `<name>2` or a prefix of the name survive a reset).
//!
//! Repair: `repair_deletes_only_corrupt_keys` (after garbage in a circuit's
//! keys and a `repair`, `state` and `counts` answer again, and keys holding
//! what the breaker writes are kept).
//!
//! # A shared store
//!
//! `make` may hand out clients of one server: each check uses keys of its
//! own. For an async client, connect in the future `make` returns:
//!
//! ```no_run
//! # use lasier_core::MemoryStorage as MyStore;
//! # trait Connect { async fn connect(url: &str) -> Result<MyStore, String>; }
//! # impl Connect for MyStore { async fn connect(_: &str) -> Result<MyStore, String> { Ok(MyStore::new()) } }
//! # fn test_server_url() -> String { String::new() }
//! #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
//! async fn my_store_passes_the_kit() {
//!     let url = test_server_url();
//!     lasier_testkit::check_async_storage(|| {
//!         let url = url.clone();
//!         async move { MyStore::connect(&url).await.unwrap() }
//!     })
//!     .await;
//! }
//! ```
//!
//! On a multi-thread runtime the concurrency checks run their callers in
//! parallel; on a current-thread runtime, or another executor, they
//! interleave on one thread, which still catches an `incr` that awaits
//! between its read and its write.
//!
//! # Time
//!
//! A storage that takes a [`Clock`](lasier_core::clock::Clock) is checked
//! with the `*_with_clock` variants: the timed checks advance a
//! [`ManualClock`] and never sleep. Others
//! are checked in real time with short TTLs (two ticks of 60 ms). The kit
//! never asserts an upper bound on time: every observation is scheduled at
//! least half a tick from any deadline, and a run that fell so far behind
//! its schedule that an observation may have crossed a deadline (allowing
//! 15 ms for a coarse clock in the storage) is inconclusive and repeated
//! with a longer tick (see [`Suite::tick`]). The timed checks run
//! concurrently, so a run takes about a second.
//!
//! # Features
//!
//! * `async` (default): the checks of `AsyncStorage` implementations. It
//!   pulls in tokio's runtime core only to spread concurrent callers over
//!   the caller's runtime; the kit runs on any executor.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod checks;
mod primitives;
mod probe;
mod report;
mod runtime;
mod steps;
mod store;
mod suite;

pub use report::{Failure, Report};
pub use suite::Suite;

use lasier_core::clock::ManualClock;
use lasier_core::Storage;

/// Checks a [`Storage`] without a clock of its own; `make` returns a new,
/// working storage and is called once per check.
///
/// ```
/// use lasier_core::MemoryStorage;
///
/// lasier_testkit::check_storage(MemoryStorage::new);
/// ```
///
/// # Panics
///
/// If the storage breaks the contract: the message lists every failed
/// check with what the storage did and how to fix it.
#[track_caller]
pub fn check_storage<S: Storage + 'static>(make: impl FnMut() -> S) {
    Suite::new().run(make).assert_ok();
}

/// Checks a [`Storage`] that keeps time by the clock it is given: `make`
/// builds a new storage on the [`ManualClock`] it is passed, which the timed
/// checks advance instead of sleeping.
///
/// ```
/// use lasier_core::MemoryStorage;
///
/// lasier_testkit::check_storage_with_clock(|clock| MemoryStorage::with_clock(clock));
/// ```
///
/// # Panics
///
/// If the storage breaks the contract, as [`check_storage`].
#[track_caller]
pub fn check_storage_with_clock<S: Storage + 'static>(make: impl FnMut(ManualClock) -> S) {
    Suite::new().run_with_clock(make).assert_ok();
}

/// Checks an [`AsyncStorage`](lasier_core::AsyncStorage) without a clock of
/// its own; `make` returns a future of a new storage and is called once per
/// check.
///
/// ```
/// use lasier_core::MemoryStorage;
///
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() {
///     lasier_testkit::check_async_storage(|| async { MemoryStorage::new() }).await;
/// }
/// ```
///
/// # Panics
///
/// If the storage breaks the contract, as [`check_storage`].
#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub async fn check_async_storage<S, F, Fut>(make: F)
where
    S: lasier_core::AsyncStorage + 'static,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = S>,
{
    Suite::new().run_async(make).await.assert_ok();
}

/// Checks an [`AsyncStorage`](lasier_core::AsyncStorage) that keeps time by
/// the clock it is given: `make` returns a future of a new storage on the
/// [`ManualClock`] it is passed.
///
/// ```
/// use lasier_core::MemoryStorage;
///
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() {
///     lasier_testkit::check_async_storage_with_clock(|clock| async move {
///         MemoryStorage::with_clock(clock)
///     })
///     .await;
/// }
/// ```
///
/// # Panics
///
/// If the storage breaks the contract, as [`check_storage`].
#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub async fn check_async_storage_with_clock<S, F, Fut>(make: F)
where
    S: lasier_core::AsyncStorage + 'static,
    F: FnMut(ManualClock) -> Fut,
    Fut: std::future::Future<Output = S>,
{
    Suite::new().run_async_with_clock(make).await.assert_ok();
}
