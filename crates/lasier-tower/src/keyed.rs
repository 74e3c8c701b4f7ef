//! One breaker per key (a host, a route): a layer over a [`Registry`].

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use lasier_async::{Error, Registry, StorageError, StorageErrorKind};
use tower::{Layer, Service};

use crate::classify::{Classifier, ErrorsAsFailures};
use crate::service::{guarded, ResponseFuture};

/// A [`Layer`] that guards each request with the breaker of its key: a
/// closure picks the key from the request (the host of an outgoing call,
/// the route of an incoming one), and a [`Registry`] builds one breaker per
/// key on first use, bounded in number and idle time. One failing host then
/// opens its own circuit, and the others keep going.
///
/// ```
/// use lasier_tower::{CircuitBreaker, KeyedCircuitBreakerLayer, Registry, ServerErrorsAsFailures};
/// use tower::ServiceBuilder;
///
/// let hosts = Registry::new(|host| CircuitBreaker::builder(format!("http:{host}")).max_failures(5));
/// let layer = KeyedCircuitBreakerLayer::new(hosts, |request: &http::Request<()>| {
///     request.uri().host().unwrap_or("").to_owned()
/// })
/// .classifier(ServerErrorsAsFailures);
/// let service = ServiceBuilder::new()
///     .layer(layer)
///     .service_fn(|_request: http::Request<()>| async {
///         Ok::<_, std::io::Error>(http::Response::new(()))
///     });
/// # let _ = service;
/// ```
///
/// A key whose recipe does not build (an invalid name, say) fails its
/// requests with [`Error::Storage`] of kind `Other`, which says why; the
/// inner service is not called.
pub struct KeyedCircuitBreakerLayer<K, C = ErrorsAsFailures> {
    registry: Arc<Registry>,
    key: Arc<K>,
    classifier: C,
}

impl<K> KeyedCircuitBreakerLayer<K> {
    /// A layer guarding each request with `registry`'s breaker for
    /// `key(&request)`, counting errors as failures.
    pub fn new(registry: Registry, key: K) -> Self {
        Self {
            registry: Arc::new(registry),
            key: Arc::new(key),
            classifier: ErrorsAsFailures,
        }
    }
}

impl<K, C> KeyedCircuitBreakerLayer<K, C> {
    /// Decides with `classifier` which outcomes count as failures.
    pub fn classifier<C2>(self, classifier: C2) -> KeyedCircuitBreakerLayer<K, C2> {
        KeyedCircuitBreakerLayer {
            registry: self.registry,
            key: self.key,
            classifier,
        }
    }

    /// The registry of the breakers (for a health endpoint: its
    /// `metrics()`).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// For stacks that need `BoxError`: see
    /// [`CircuitBreakerLayer::box_errors`](crate::CircuitBreakerLayer::box_errors).
    pub fn box_errors(self) -> crate::BoxedErrors<Self> {
        crate::BoxedErrors::new(self)
    }
}

impl<K, C: Clone> Clone for KeyedCircuitBreakerLayer<K, C> {
    fn clone(&self) -> Self {
        Self {
            registry: Arc::clone(&self.registry),
            key: Arc::clone(&self.key),
            classifier: self.classifier.clone(),
        }
    }
}

impl<K, C: fmt::Debug> fmt::Debug for KeyedCircuitBreakerLayer<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerLayer")
            .field("registry", &self.registry)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

impl<S, K, C: Clone> Layer<S> for KeyedCircuitBreakerLayer<K, C> {
    type Service = KeyedCircuitBreakerService<S, K, C>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedCircuitBreakerService {
            inner,
            registry: Arc::clone(&self.registry),
            key: Arc::clone(&self.key),
            classifier: self.classifier.clone(),
        }
    }
}

/// A tower service guarded by one breaker per key; from
/// [`KeyedCircuitBreakerLayer`]. Readiness, outcomes and cancellation work
/// as in [`CircuitBreakerService`](crate::CircuitBreakerService).
pub struct KeyedCircuitBreakerService<S, K, C = ErrorsAsFailures> {
    inner: S,
    registry: Arc<Registry>,
    key: Arc<K>,
    classifier: C,
}

impl<S: Clone, K, C: Clone> Clone for KeyedCircuitBreakerService<S, K, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            registry: Arc::clone(&self.registry),
            key: Arc::clone(&self.key),
            classifier: self.classifier.clone(),
        }
    }
}

impl<S: fmt::Debug, K, C: fmt::Debug> fmt::Debug for KeyedCircuitBreakerService<S, K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerService")
            .field("inner", &self.inner)
            .field("registry", &self.registry)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

impl<S, K, C, Request> Service<Request> for KeyedCircuitBreakerService<S, K, C>
where
    S: Service<Request> + Clone + Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    S::Future: Send + 'static,
    K: Fn(&Request) -> String,
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
        let key = (self.key)(&request);
        let breaker = match self.registry.get(&key) {
            Ok(breaker) => breaker,
            Err(e) => {
                let error = StorageError::new(
                    StorageErrorKind::Other,
                    format!("no circuit breaker for key {key:?}: {e}"),
                );
                return ResponseFuture::failed(Error::Storage(error));
            }
        };
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        guarded(inner, breaker, self.classifier.clone(), request)
    }
}
