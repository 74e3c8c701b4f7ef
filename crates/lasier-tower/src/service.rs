//! The service: a tower service guarded by a circuit breaker.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use lasier_async::{CircuitBreaker, Error};
use tower::Service;

use crate::classify::{Classifier, ErrorsAsFailures};

/// A tower service guarded by a [`CircuitBreaker`]; from
/// [`CircuitBreakerLayer`](crate::CircuitBreakerLayer) or
/// [`new`](Self::new).
///
/// # Readiness and calls
///
/// [`poll_ready`](Service::poll_ready) is the inner service's, unchanged:
/// an open circuit does not show there. In tower, an error from
/// `poll_ready` means the service has failed for good and is to be
/// dropped (axum and hyper close the connection), and `Pending` would need a
/// timer to wake the caller when the circuit half-opens; an open circuit is
/// neither. So backpressure stays the inner service's, and the circuit is
/// checked by [`call`](Service::call): on an open circuit its future fails
/// at once with [`Error::Open`], the inner service is not called and the
/// request is dropped. (tower's own `AsyncFilter` works the same way.) An
/// error of the inner service's `poll_ready` is returned as
/// [`Error::Inner`] and does not count as a failure: no call was made.
///
/// The breaker is asked for admission inside the response future, which may
/// have to wait for a shared store; so `call` moves the inner service,
/// made ready by `poll_ready`, into that future and keeps a clone of it for
/// the next request. This is why the inner service must be `Clone`: wrap
/// one that is not in `tower::buffer::Buffer`.
///
/// # Outcomes
///
/// When the inner call completes, the [`Classifier`] decides whether its
/// outcome counts as a failure; the response or error is then returned as
/// it is (an error wrapped in [`Error::Inner`]). A response future dropped
/// before it completes (a timeout around this service, a client gone) is a
/// cancelled call: nothing is recorded. To count timeouts as failures, put
/// the timeout inside, between this service and the inner one:
/// `ServiceBuilder::new().layer(breaker_layer).timeout(d).service(inner)`.
#[derive(Clone, Debug)]
pub struct CircuitBreakerService<S, C = ErrorsAsFailures> {
    inner: S,
    breaker: CircuitBreaker,
    classifier: C,
}

impl<S> CircuitBreakerService<S> {
    /// Guards `inner` with `breaker`; every error of `inner` counts as a
    /// failure ([`ErrorsAsFailures`]).
    pub fn new(inner: S, breaker: CircuitBreaker) -> Self {
        Self {
            inner,
            breaker,
            classifier: ErrorsAsFailures,
        }
    }
}

impl<S, C> CircuitBreakerService<S, C> {
    /// Decides with `classifier` which outcomes count as failures, e.g.
    /// [`ServerErrorsAsFailures`](crate::ServerErrorsAsFailures).
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerService<S, C2> {
        CircuitBreakerService {
            inner: self.inner,
            breaker: self.breaker,
            classifier,
        }
    }

    /// The breaker guarding the service.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unguarded.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, Request> Service<Request> for CircuitBreakerService<S, C>
where
    S: Service<Request> + Clone + Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    S::Future: Send + 'static,
    C: Classifier<S::Response, S::Error> + Clone + Send + 'static,
    Request: Send + 'static,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Inner)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The ready service goes into the future; the clone left behind
        // is polled ready before the next call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        guarded(
            inner,
            self.breaker.clone(),
            self.classifier.clone(),
            request,
        )
    }
}

/// The call of `request` on the ready `inner`, guarded by `breaker`, its
/// outcome judged by `classifier`.
pub(crate) fn guarded<S, C, Request>(
    mut inner: S,
    breaker: CircuitBreaker,
    classifier: C,
    request: Request,
) -> ResponseFuture<S::Response, S::Error>
where
    S: Service<Request> + Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    S::Future: Send + 'static,
    C: Classifier<S::Response, S::Error> + Send + 'static,
    Request: Send + 'static,
{
    ResponseFuture {
        inner: Box::pin(async move {
            let guard = breaker.enter().await.map_err(Error::cast)?;
            let outcome = inner.call(request).await;
            if classifier.is_failure(outcome.as_ref()) {
                guard.failure().await;
            } else {
                guard.success().await;
            }
            outcome.map_err(Error::Inner)
        }),
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The response future of [`CircuitBreakerService`].
///
/// Fails at once with [`Error::Open`] when the circuit is open, without
/// calling the inner service. Dropping it before it completes cancels the
/// call: nothing is recorded.
pub struct ResponseFuture<T, E> {
    inner: BoxFuture<Result<T, Error<E>>>,
}

impl<T: Send + 'static, E: Send + 'static> ResponseFuture<T, E> {
    /// A future that fails at once with `error`.
    pub(crate) fn failed(error: Error<E>) -> Self {
        Self {
            inner: Box::pin(std::future::ready(Err(error))),
        }
    }
}

impl<T, E> Future for ResponseFuture<T, E> {
    type Output = Result<T, Error<E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<T, E> fmt::Debug for ResponseFuture<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
