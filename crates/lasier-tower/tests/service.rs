//! The service's contract with tower: readiness, calls on an open circuit,
//! classifiers; against an in-process backend whose readiness the test
//! sets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::{poll_fn, Ready};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use lasier_async::State;
use lasier_tower::{CircuitBreaker, CircuitBreakerLayer, CircuitBreakerService, Error};
use tower::{Layer, Service};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BackendError {
    Down,
    NotFound,
    Broken,
}

const READY: u8 = 0;
const PENDING: u8 = 1;
const BROKEN: u8 = 2;

/// Answers `n` with `Ok(n)`, except 0 (`Down`) and 404 (`NotFound`); its
/// readiness is whatever the test set.
#[derive(Clone, Default)]
struct Backend {
    readiness: Arc<AtomicU8>,
    calls: Arc<AtomicUsize>,
}

impl Backend {
    fn set(&self, readiness: u8) {
        self.readiness.store(readiness, Ordering::SeqCst);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<u32> for Backend {
    type Response = u32;
    type Error = BackendError;
    type Future = Ready<Result<u32, BackendError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BackendError>> {
        match self.readiness.load(Ordering::SeqCst) {
            READY => Poll::Ready(Ok(())),
            PENDING => Poll::Pending,
            _ => Poll::Ready(Err(BackendError::Broken)),
        }
    }

    fn call(&mut self, n: u32) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(match n {
            0 => Err(BackendError::Down),
            404 => Err(BackendError::NotFound),
            n => Ok(n),
        })
    }
}

fn breaker(name: &str, max_failures: u64) -> CircuitBreaker {
    CircuitBreaker::builder(name)
        .max_failures(max_failures)
        .build()
        .unwrap()
}

/// One poll of `poll_ready`, as a caller driving the service sees it.
async fn poll_ready_once<S: Service<R>, R>(service: &mut S) -> Poll<Result<(), S::Error>> {
    poll_fn(|cx| Poll::Ready(service.poll_ready(cx))).await
}

async fn ready_call<S: Service<R>, R>(
    service: &mut S,
    request: R,
) -> Result<S::Response, S::Error> {
    assert!(matches!(
        poll_ready_once(service).await,
        Poll::Ready(Ok(()))
    ));
    service.call(request).await
}

#[tokio::test]
async fn poll_ready_is_the_inner_services_readiness_whatever_the_circuit() {
    let backend = Backend::default();
    let mut service = CircuitBreakerService::new(backend.clone(), breaker("tower-ready", 1));

    backend.set(PENDING);
    assert!(poll_ready_once(&mut service).await.is_pending());
    backend.set(READY);
    assert!(matches!(
        poll_ready_once(&mut service).await,
        Poll::Ready(Ok(()))
    ));

    // Open the circuit: readiness is still the backend's, in both directions.
    assert!(matches!(
        service.call(0).await,
        Err(Error::Inner(BackendError::Down))
    ));
    assert_eq!(service.breaker().state().await.unwrap(), State::Open);
    assert!(matches!(
        poll_ready_once(&mut service).await,
        Poll::Ready(Ok(()))
    ));
    backend.set(PENDING);
    assert!(poll_ready_once(&mut service).await.is_pending());
}

#[tokio::test]
async fn an_open_circuit_rejects_in_call_without_calling_the_inner_service() {
    let backend = Backend::default();
    let mut service = CircuitBreakerLayer::new(breaker("tower-open", 2)).layer(backend.clone());

    assert_eq!(ready_call(&mut service, 7).await.unwrap(), 7);
    for _ in 0..2 {
        assert!(matches!(
            ready_call(&mut service, 0).await,
            Err(Error::Inner(BackendError::Down))
        ));
    }
    assert_eq!(backend.calls(), 3);

    for _ in 0..3 {
        let error = ready_call(&mut service, 7).await.unwrap_err();
        assert!(error.is_open(), "{error:?}");
        assert!(error.retry_after().is_some());
    }
    assert_eq!(backend.calls(), 3, "a rejected request reached the backend");
}

#[tokio::test]
async fn an_inner_poll_ready_error_is_an_inner_error_and_not_a_failure() {
    let backend = Backend::default();
    let mut service = CircuitBreakerService::new(backend.clone(), breaker("tower-broken", 1));

    backend.set(BROKEN);
    assert!(matches!(
        poll_ready_once(&mut service).await,
        Poll::Ready(Err(Error::Inner(BackendError::Broken)))
    ));
    assert_eq!(service.breaker().state().await.unwrap(), State::Closed);
    assert_eq!(service.breaker().counts().await.unwrap().failures, 0);
    assert_eq!(backend.calls(), 0);
}

#[tokio::test]
async fn a_closure_classifier_decides_which_outcomes_count() {
    let backend = Backend::default();
    // `NotFound` is an answer, not a failure; the answer 13 is a failure.
    let layer = CircuitBreakerLayer::new(breaker("tower-closure", 1)).classifier(
        |outcome: Result<&u32, &BackendError>| matches!(outcome, Ok(13) | Err(BackendError::Down)),
    );
    let mut service = layer.layer(backend.clone());

    for _ in 0..3 {
        assert!(matches!(
            ready_call(&mut service, 404).await,
            Err(Error::Inner(BackendError::NotFound))
        ));
    }
    assert_eq!(service.breaker().state().await.unwrap(), State::Closed);

    // Counted as a failure, and still returned as a response.
    assert_eq!(ready_call(&mut service, 13).await.unwrap(), 13);
    assert!(ready_call(&mut service, 7).await.unwrap_err().is_open());
    assert_eq!(backend.calls(), 4);
}

#[tokio::test]
async fn clones_of_the_service_share_one_circuit() {
    let backend = Backend::default();
    let layer = CircuitBreakerLayer::new(breaker("tower-clones", 1));
    let mut first = layer.layer(backend.clone());
    let mut second = first.clone();

    assert!(ready_call(&mut first, 0).await.is_err());
    assert!(ready_call(&mut second, 7).await.unwrap_err().is_open());
    assert_eq!(backend.calls(), 1);
}

#[tokio::test]
async fn a_keyed_layer_gives_each_key_its_own_circuit() {
    use lasier_tower::{KeyedCircuitBreakerLayer, Registry};
    let hosts = Registry::new(|host| {
        let builder = CircuitBreaker::builder(format!("host:{host}"));
        // host 2 has no rule: its breaker does not build
        if host == "2" {
            builder
        } else {
            builder.max_failures(2)
        }
    });
    let layer = KeyedCircuitBreakerLayer::new(hosts, |n: &u32| (n / 1000).to_string());
    let backend = Backend::default();
    let mut service = layer.layer(backend.clone());
    // host 0 fails twice and opens its own circuit
    for _ in 0..2 {
        assert!(matches!(
            ready_call(&mut service, 0).await,
            Err(Error::Inner(BackendError::Down))
        ));
    }
    assert!(ready_call(&mut service, 0).await.unwrap_err().is_open());
    assert_eq!(
        backend.calls(),
        2,
        "a rejected call never reaches the backend"
    );
    // host 1 goes on
    assert_eq!(ready_call(&mut service, 1_001).await.unwrap(), 1_001);
    // host 2's recipe is invalid: a storage error that says why, no call
    match ready_call(&mut service, 2_000).await {
        Err(Error::Storage(e)) => {
            assert!(
                e.to_string().contains("no circuit breaker for key \"2\""),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(backend.calls(), 3);
    let listed = layer.registry().metrics().await;
    let states: Vec<(&str, State)> = listed.iter().map(|(k, m)| (k.as_str(), m.state)).collect();
    assert_eq!(states, [("0", State::Open), ("1", State::Closed)]);
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "backend: {self:?}")
    }
}

impl std::error::Error for BackendError {}

#[tokio::test]
async fn in_a_box_error_stack_rejections_and_inner_errors_downcast() {
    use lasier_tower::Rejected;
    use tower::ServiceBuilder;
    let layer = CircuitBreakerLayer::new(breaker("boxed", 1)).box_errors();
    let backend = Backend::default();
    // tower's Timeout needs its inner service's errors Into<BoxError>
    let mut service = ServiceBuilder::new()
        .timeout(std::time::Duration::from_secs(5))
        .layer(layer)
        .service(backend.clone());
    let error = ready_call(&mut service, 0).await.unwrap_err();
    assert_eq!(
        error.downcast_ref::<BackendError>(),
        Some(&BackendError::Down),
        "the inner error as it was: {error}"
    );
    let error = ready_call(&mut service, 7).await.unwrap_err();
    let rejected = error.downcast_ref::<Rejected>().expect("a Rejected");
    assert_eq!(rejected.name(), "boxed");
    assert!(rejected.retry_after().is_some());
    assert_eq!(backend.calls(), 1);
    assert_eq!(
        ready_call(&mut service, 7).await.unwrap_err().to_string(),
        rejected.to_string()
    );
}
