//! The async facade (`lasier-async`) on a Redis storage. Run on one server
//! by `tests/async_breaker.rs`, on a cluster by `tests/cluster_breaker.rs`.

use std::time::Duration;

use lasier_async::{CircuitBreaker, Counts, Error, State};

use super::Target;

async fn breaker(t: &impl Target, name: &str, max_failures: u64) -> CircuitBreaker {
    CircuitBreaker::builder(name)
        .storage(t.async_storage().await)
        .failure_timeout(Duration::from_secs(60))
        .circuit_timeout(Duration::from_secs(60))
        .max_failures(max_failures)
        .build()
        .unwrap()
}

async fn fail(b: &CircuitBreaker) -> Result<(), Error<&'static str>> {
    b.call(async { Err("boom") }).await
}

pub async fn opens_on_the_nth_failure_and_rejects_without_polling(t: &impl Target) {
    let b = breaker(t, &t.name("facade-nth"), 2).await;
    assert!(matches!(fail(&b).await, Err(Error::Inner("boom"))));
    assert_eq!(b.counts().await.unwrap(), Counts::new(1, 0));
    let _ = fail(&b).await;
    assert_eq!(b.state().await.unwrap(), State::Open);
    let error = b
        .call(async {
            panic!("must not be polled");
            #[allow(unreachable_code)]
            Ok::<(), ()>(())
        })
        .await
        .unwrap_err();
    let left = error.retry_after().expect("the open flag's PTTL");
    assert!(
        left > Duration::ZERO && left <= Duration::from_secs(60),
        "{left:?}"
    );
}

pub async fn async_and_sync_services_share_one_circuit(t: &impl Target) {
    let name = t.name("facade-shared");
    let a = breaker(t, &name, 2).await;
    let _ = fail(&a).await;
    let (sync_name, storage) = (name.clone(), t.storage());
    let sync_state = tokio::task::spawn_blocking(move || {
        let s = lasier_sync::CircuitBreaker::builder(sync_name)
            .storage(storage)
            .max_failures(2)
            .build()
            .unwrap();
        let _ = s.call(|| -> Result<(), ()> { Err(()) });
        s.state().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(sync_state, State::Open);
    assert!(a
        .call(async { Ok::<(), ()>(()) })
        .await
        .unwrap_err()
        .is_open());
}

pub async fn a_cancelled_trial_gives_its_permit_back(t: &impl Target) {
    let name = t.name("facade-cancel");
    let b = breaker(t, &name, 1).await;
    // The state a trip leaves once its open time is over (no waiting).
    let trials = format!("lasier:half_open:{name}");
    t.node_of(&trials)
        .cmd::<()>(&["SET", &trials, "0", "PX", "120000"]);
    assert_eq!(b.state().await.unwrap(), State::HalfOpen);
    // The trial is cancelled: its future is dropped while it runs.
    let cancelled = tokio::time::timeout(
        Duration::from_millis(50),
        b.call(std::future::pending::<Result<(), ()>>()),
    )
    .await;
    assert!(cancelled.is_err());
    // Its permit goes back, so the next call is the trial, and closes.
    b.call(async { Ok::<(), ()>(()) }).await.unwrap();
    assert_eq!(b.state().await.unwrap(), State::Closed);
}
