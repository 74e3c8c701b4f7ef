//! Breakers of `lasier-sync` on a `MokaStorage`: one storage for many
//! breakers, each with its own circuit, in bounded memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use lasier_moka::MokaStorage;
use lasier_sync::{CircuitBreaker, Error, State};

fn breaker(storage: &MokaStorage, host: &str) -> CircuitBreaker {
    CircuitBreaker::builder(host)
        .storage(storage.clone())
        .max_failures(3)
        .circuit_timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn fail(b: &CircuitBreaker) -> Result<(), Error<&'static str>> {
    b.call(|| Err("connection refused"))
}

#[test]
fn a_breaker_opens_on_moka_and_rejects_without_running() {
    let storage = MokaStorage::with_capacity(1_000);
    let b = breaker(&storage, "images.internal");
    for _ in 0..2 {
        assert!(matches!(fail(&b), Err(Error::Inner(_))));
    }
    assert_eq!(b.counts().unwrap().failures, 2);
    assert_eq!(b.state().unwrap(), State::Closed);
    assert!(matches!(fail(&b), Err(Error::Inner(_))));
    assert_eq!(b.state().unwrap(), State::Open);
    let mut ran = false;
    let rejected = b.call(|| -> Result<(), ()> {
        ran = true;
        Ok(())
    });
    assert!(rejected.unwrap_err().is_open());
    assert!(!ran);
}

#[test]
fn breakers_of_different_hosts_do_not_share_a_circuit() {
    let storage = MokaStorage::with_capacity(1_000);
    let down = breaker(&storage, "images.internal");
    let up = breaker(&storage, "search.internal");
    for _ in 0..3 {
        let _ = fail(&down);
    }
    assert_eq!(down.state().unwrap(), State::Open);
    assert_eq!(up.call(|| Ok::<_, ()>(7)).unwrap(), 7);
    assert_eq!(up.state().unwrap(), State::Closed);
    down.reset().unwrap();
    assert_eq!(down.state().unwrap(), State::Closed);
}

#[test]
fn a_breaker_rebuilt_with_the_same_name_sees_the_same_circuit() {
    let storage = MokaStorage::with_capacity(1_000);
    for _ in 0..3 {
        // A handle per call, as a per-host registry that forgot it would do.
        let _ = fail(&breaker(&storage, "images.internal"));
    }
    assert_eq!(
        breaker(&storage, "images.internal").state().unwrap(),
        State::Open
    );
}

#[test]
fn calls_pass_again_once_the_open_time_is_over() {
    // moka keeps real time, so this waits (a lower bound only: the open
    // flag has expired by then, whatever the machine's speed).
    let storage = MokaStorage::with_capacity(1_000);
    let b = CircuitBreaker::builder("flaky.internal")
        .storage(storage)
        .max_failures(1)
        .circuit_timeout(Duration::from_millis(30))
        .build()
        .unwrap();
    let _ = fail(&b);
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(b.call(|| Ok::<_, ()>("recovered")).unwrap(), "recovered");
    assert_eq!(b.state().unwrap(), State::Closed);
}

#[test]
fn memory_stays_bounded_with_many_more_breakers_than_capacity() {
    let capacity = 500;
    let storage = MokaStorage::with_capacity(capacity);
    for i in 0..5_000 {
        let _ = fail(&breaker(&storage, &format!("tenant-{i}.example.com")));
    }
    storage.cache().run_pending_tasks();
    let held = storage.cache().entry_count();
    assert!(held <= capacity, "{held} keys held, capacity {capacity}");
    // The breakers called last keep their counts.
    let recent = breaker(&storage, "tenant-4999.example.com");
    assert_eq!(recent.counts().unwrap().failures, 1);
}
