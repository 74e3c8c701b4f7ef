//! A tower [`Layer`](tower::Layer) and [`Service`](tower::Service) that
//! guard any tower service with a lasier circuit breaker: a hyper or
//! reqwest client, a tonic channel, an axum route.
//!
//! When the circuit is open, calls fail at once with [`Error::Open`]
//! without reaching the inner service; a [`Classifier`] decides which
//! outcomes count as failures (by default, errors only; for HTTP,
//! [`ServerErrorsAsFailures`] counts `5xx` responses too, and still returns
//! them as responses). The breaker is the async facade's
//! [`CircuitBreaker`], so the circuit can live in memory or in a shared
//! store.
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response, StatusCode};
//! use lasier_tower::{rejection_response, CircuitBreaker, CircuitBreakerLayer, ServerErrorsAsFailures};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let breaker = CircuitBreaker::builder("inventory-api")
//!     .max_failures(2)
//!     .circuit_timeout(Duration::from_secs(30))
//!     .build()?;
//!
//! // A downstream that answers 500 Internal Server Error.
//! let downstream = tower::service_fn(|_: Request<()>| async {
//!     let mut response = Response::new(());
//!     *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
//!     Ok::<_, std::convert::Infallible>(response)
//! });
//! let mut client = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::new(breaker).classifier(ServerErrorsAsFailures))
//!     .service(downstream);
//!
//! for _ in 0..2 {
//!     // A 5xx is returned as a response, and counted as a failure.
//!     let response = client.ready().await?.call(Request::new(())).await?;
//!     assert_eq!(response.status(), 500);
//! }
//! // Open: the downstream is not called.
//! let error = client.ready().await?.call(Request::new(())).await.unwrap_err();
//! assert!(error.is_open());
//! // To answer your own clients: 503 with Retry-After.
//! let response: Response<()> = rejection_response(&error).unwrap();
//! assert_eq!(response.status(), 503);
//! assert_eq!(response.headers()["retry-after"], "30");
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! The service's error is the breaker's [`Error<E>`](Error), with `E` the
//! inner service's error: [`Error::Open`] when the circuit rejected the
//! call, [`Error::Storage`] when the breaker's storage failed, and
//! [`Error::Inner`] for the inner service's own error. It implements
//! `std::error::Error` when `E` does, so it converts into tower's
//! `BoxError`. [`rejection_response`] maps the first two to a `503 Service
//! Unavailable` with `Retry-After`, e.g. in axum's `HandleErrorLayer`:
//!
//! ```text
//! .layer(HandleErrorLayer::new(|error: lasier_tower::Error<_>| async move {
//!     lasier_tower::rejection_response(&error)
//!         .unwrap_or_else(|| StatusCode::BAD_GATEWAY.into_response())
//! }))
//! .layer(CircuitBreakerLayer::new(breaker))
//! ```
//!
//! # Readiness
//!
//! `poll_ready` is the inner service's, unchanged; the open circuit is
//! reported by the response future of `call`, never by `poll_ready` (see
//! [`CircuitBreakerService`] for why). The inner service must be `Clone`.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod boxed;
mod classify;
mod keyed;
mod layer;
mod response;
mod service;

pub use boxed::{into_box_error, BoxedErrors, BoxedErrorsService, Rejected};
pub use classify::{Classifier, ErrorsAsFailures, ServerErrorsAsFailures};
pub use keyed::{KeyedCircuitBreakerLayer, KeyedCircuitBreakerService};
pub use layer::CircuitBreakerLayer;
pub use response::{rejection_response, service_unavailable};
pub use service::{CircuitBreakerService, ResponseFuture};

pub use lasier_async::{CircuitBreaker, ConfigError, Error, Registry};
