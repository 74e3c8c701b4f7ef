//! Which outcomes of the inner service count as failures.

use http::Response;

/// Decides whether an outcome of the inner service counts as a failure for
/// the circuit.
///
/// The outcome is returned to the caller unchanged either way: a response
/// counted as a failure is still a response, not an error. Ready-made:
/// [`ErrorsAsFailures`] (the default) and [`ServerErrorsAsFailures`] for
/// HTTP. Any `Fn(Result<&Res, &E>) -> bool` is a classifier too; name the
/// argument's type, as the compiler cannot infer it from the layer:
///
/// ```
/// use lasier_tower::{CircuitBreaker, CircuitBreakerLayer};
///
/// #[derive(Debug)]
/// enum DbError { NotFound, Unavailable }
///
/// let breaker = CircuitBreaker::builder("db").max_failures(5).build()?;
/// // Only `Unavailable` counts; an empty result is a success.
/// let layer = CircuitBreakerLayer::new(breaker).classifier(
///     |outcome: Result<&Vec<u8>, &DbError>| matches!(outcome, Err(DbError::Unavailable)),
/// );
/// # let _ = layer;
/// # Ok::<(), lasier_tower::ConfigError>(())
/// ```
///
/// Implement it on a type of your own for a classifier with a name, or one
/// that only applies to some response types:
///
/// ```
/// use lasier_tower::Classifier;
///
/// /// 5xx and 429 Too Many Requests are failures; so is every error.
/// #[derive(Clone, Copy, Debug)]
/// struct Overloaded;
///
/// impl<B, E> Classifier<http::Response<B>, E> for Overloaded {
///     fn is_failure(&self, outcome: Result<&http::Response<B>, &E>) -> bool {
///         outcome.map_or(true, |response| {
///             response.status().is_server_error()
///                 || response.status() == http::StatusCode::TOO_MANY_REQUESTS
///         })
///     }
/// }
/// ```
pub trait Classifier<Res, E> {
    /// Whether `outcome`, the inner service's response or error, counts as
    /// a failure.
    fn is_failure(&self, outcome: Result<&Res, &E>) -> bool;
}

impl<F, Res, E> Classifier<Res, E> for F
where
    F: Fn(Result<&Res, &E>) -> bool,
{
    fn is_failure(&self, outcome: Result<&Res, &E>) -> bool {
        self(outcome)
    }
}

/// The default classifier: every error of the inner service counts as a
/// failure, every response as a success (as the facades' `call` counts
/// every `Err`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorsAsFailures;

impl<Res, E> Classifier<Res, E> for ErrorsAsFailures {
    fn is_failure(&self, outcome: Result<&Res, &E>) -> bool {
        outcome.is_err()
    }
}

/// The HTTP classifier: a response with a `5xx` status counts as a failure,
/// and so does every error (the server could not be reached, the connection
/// broke). `4xx` responses are the client's mistakes and count as
/// successes.
///
/// The response is still returned to the caller as a response: a `500` is
/// counted, not turned into an error. The status is all that is looked at,
/// when the response head arrives: a body that fails later while streaming
/// is not counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerErrorsAsFailures;

impl<B, E> Classifier<Response<B>, E> for ServerErrorsAsFailures {
    fn is_failure(&self, outcome: Result<&Response<B>, &E>) -> bool {
        outcome.map_or(true, |response| response.status().is_server_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn response(status: u16) -> Response<()> {
        let mut response = Response::new(());
        *response.status_mut() = StatusCode::from_u16(status).unwrap_or_default();
        response
    }

    #[test]
    fn errors_as_failures_counts_errors_only() {
        let classifier = ErrorsAsFailures;
        assert!(!classifier.is_failure(Ok::<_, &()>(&response(500))));
        assert!(classifier.is_failure(Err::<&Response<()>, _>(&())));
    }

    #[test]
    fn server_errors_as_failures_counts_5xx_and_errors() {
        let classifier = ServerErrorsAsFailures;
        for status in [500, 502, 503, 504, 599] {
            assert!(
                classifier.is_failure(Ok::<_, &()>(&response(status))),
                "{status}"
            );
        }
        for status in [200, 204, 301, 400, 404, 429] {
            assert!(
                !classifier.is_failure(Ok::<_, &()>(&response(status))),
                "{status}"
            );
        }
        assert!(classifier.is_failure(Err::<&Response<()>, _>(&())));
    }
}
