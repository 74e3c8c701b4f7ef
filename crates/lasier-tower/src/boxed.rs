//! The error mode for `BoxError` stacks: a breaker's own errors as
//! concrete types, the inner service's errors as they are.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use lasier_async::{CircuitName, Error};
use tower::{BoxError, Layer, Service};

/// A call rejected by an open circuit, in [`BoxedErrors`] mode: downcast a
/// `BoxError` to it (`error.downcast_ref::<Rejected>()`), as to tower's
/// `Elapsed` or `Overloaded`. A storage failure is the
/// [`StorageError`](lasier_async::StorageError) itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    name: CircuitName,
    retry_after: Option<Duration>,
}

impl Rejected {
    /// The name of the breaker whose circuit is open.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long until a call may pass again, where known.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.retry_after {
            Some(after) => write!(f, "circuit {:?} is open; retry in {after:?}", self.name),
            None => write!(f, "circuit {:?} is open", self.name),
        }
    }
}

impl std::error::Error for Rejected {}

/// A breaker's error as a `BoxError`: a rejection as [`Rejected`], a
/// storage failure as the [`StorageError`](lasier_async::StorageError),
/// the inner service's error as it was (not wrapped).
pub fn into_box_error<E: Into<BoxError>>(error: Error<E>) -> BoxError {
    match error {
        Error::Open {
            name, retry_after, ..
        } => Box::new(Rejected { name, retry_after }),
        Error::Inner(e) => e.into(),
        Error::Storage(e) => Box::new(e),
        // (Error is non-exhaustive: a kind added later says what it is)
        other => other.map_inner(|e| e.into().to_string()).to_string().into(),
    }
}

/// Wraps a breaker layer ([`CircuitBreakerLayer`](crate::CircuitBreakerLayer)
/// or [`KeyedCircuitBreakerLayer`](crate::KeyedCircuitBreakerLayer)) so
/// that its services fail with `BoxError`, for stacks whose layers need it
/// (`Timeout`, `Buffer`, `LoadShed`); from their `box_errors()`.
#[derive(Clone, Debug)]
pub struct BoxedErrors<L> {
    inner: L,
}

impl<L> BoxedErrors<L> {
    pub(crate) fn new(inner: L) -> Self {
        Self { inner }
    }

    /// The wrapped layer.
    pub fn get_ref(&self) -> &L {
        &self.inner
    }
}

impl<S, L: Layer<S>> Layer<S> for BoxedErrors<L> {
    type Service = BoxedErrorsService<L::Service>;

    fn layer(&self, inner: S) -> Self::Service {
        BoxedErrorsService {
            inner: self.inner.layer(inner),
        }
    }
}

/// A breaker service whose errors are `BoxError`s; from [`BoxedErrors`].
#[derive(Clone, Debug)]
pub struct BoxedErrorsService<S> {
    inner: S,
}

impl<S, E, Request> Service<Request> for BoxedErrorsService<S>
where
    S: Service<Request, Error = Error<E>>,
    S::Future: Send + 'static,
    E: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(into_box_error)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let future = self.inner.call(request);
        Box::pin(async move { future.await.map_err(into_box_error) })
    }
}
