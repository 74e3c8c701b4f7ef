//! The layer: wraps services in [`CircuitBreakerService`].

use lasier_async::CircuitBreaker;
use tower::Layer;

use crate::classify::ErrorsAsFailures;
use crate::service::CircuitBreakerService;

/// A [`Layer`] that guards services with one [`CircuitBreaker`].
///
/// Every service the layer wraps (every clone of it, too) shares the
/// breaker, and through its storage, every process that shares the store.
/// By default every error of the inner service counts as a failure and
/// every response as a success; choose otherwise with
/// [`classifier`](Self::classifier).
///
/// ```
/// use std::time::Duration;
/// use lasier_tower::{CircuitBreaker, CircuitBreakerLayer, ServerErrorsAsFailures};
/// use tower::ServiceBuilder;
///
/// let breaker = CircuitBreaker::builder("inventory-api")
///     .max_failures(5)
///     .circuit_timeout(Duration::from_secs(30))
///     .build()?;
/// let layer = CircuitBreakerLayer::new(breaker).classifier(ServerErrorsAsFailures);
/// let service = ServiceBuilder::new()
///     .layer(layer)
///     .service_fn(|_request: http::Request<()>| async {
///         Ok::<_, std::io::Error>(http::Response::new(()))
///     });
/// # let _ = service;
/// # Ok::<(), lasier_tower::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct CircuitBreakerLayer<C = ErrorsAsFailures> {
    breaker: CircuitBreaker,
    classifier: C,
}

impl CircuitBreakerLayer {
    /// A layer guarding services with `breaker`, counting their errors as
    /// failures ([`ErrorsAsFailures`]).
    pub fn new(breaker: CircuitBreaker) -> Self {
        Self {
            breaker,
            classifier: ErrorsAsFailures,
        }
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// Decides with `classifier` which outcomes count as failures: a
    /// [`Classifier`](crate::Classifier), such as
    /// [`ServerErrorsAsFailures`](crate::ServerErrorsAsFailures) or a
    /// closure.
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier,
        }
    }

    /// The breaker guarding the services.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// For stacks that need `BoxError` (`Timeout`, `Buffer`): its services
    /// fail with a [`Rejected`](crate::Rejected) or a
    /// [`StorageError`](lasier_async::StorageError) to downcast to, and
    /// the inner service's errors as they are.
    pub fn box_errors(self) -> crate::BoxedErrors<Self> {
        crate::BoxedErrors::new(self)
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService::new(inner, self.breaker.clone()).classifier(self.classifier.clone())
    }
}
