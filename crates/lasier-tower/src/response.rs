//! Mapping a call the breaker did not run to an HTTP response.

use std::time::Duration;

use http::header::RETRY_AFTER;
use http::{HeaderValue, Response, StatusCode};
use lasier_async::Error;

/// The HTTP response for a call that the breaker did not run: `503 Service
/// Unavailable`, with a `Retry-After` header when the error says how long
/// the circuit stays open. `None` for [`Error::Inner`], the inner service's
/// own error, which is yours to map.
///
/// A rejection by the open circuit ([`Error::Open`]) and a failure of the
/// breaker's storage ([`Error::Storage`]) both give `503`; only the first
/// can carry `Retry-After`. The body is `B::default()`: empty for
/// `http_body_util::Empty` or `Full`, and for axum's `Body`.
///
/// ```
/// use std::time::Duration;
/// use lasier_tower::{rejection_response, Error};
///
/// let rejected: Error<()> = Error::rejected("payments", Some(Duration::from_millis(1500)));
/// let response = rejection_response::<_, String>(&rejected).unwrap();
/// assert_eq!(response.status(), 503);
/// assert_eq!(response.headers()["retry-after"], "2");
///
/// assert!(rejection_response::<_, String>(&Error::Inner(())).is_none());
/// ```
pub fn rejection_response<E, B: Default>(error: &Error<E>) -> Option<Response<B>> {
    match error {
        Error::Inner(_) => None,
        Error::Open { retry_after, .. } => Some(service_unavailable(*retry_after)),
        // A storage failure, or a reason added later: the call did not run.
        _ => Some(service_unavailable(None)),
    }
}

/// A `503 Service Unavailable` response with an empty (`B::default()`)
/// body, and `Retry-After: <seconds>` if `retry_after` is known, in whole
/// seconds rounded up so that a client that waits that long finds the
/// circuit half-open.
///
/// ```
/// use std::time::Duration;
///
/// let response = lasier_tower::service_unavailable::<()>(Some(Duration::from_secs(30)));
/// assert_eq!(response.status(), 503);
/// assert_eq!(response.headers()["retry-after"], "30");
/// ```
pub fn service_unavailable<B: Default>(retry_after: Option<Duration>) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    if let Some(after) = retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds_rounded_up(after)));
    }
    response
}

fn seconds_rounded_up(duration: Duration) -> u64 {
    let partial = u64::from(duration.subsec_nanos() > 0);
    duration.as_secs().saturating_add(partial)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lasier_async::{StorageError, StorageErrorKind};

    fn retry_after(response: &Response<()>) -> Option<&str> {
        response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        for (after, header) in [
            (Duration::ZERO, "0"),
            (Duration::from_nanos(1), "1"),
            (Duration::from_millis(999), "1"),
            (Duration::from_secs(1), "1"),
            (Duration::from_millis(1001), "2"),
            (Duration::from_secs(60), "60"),
            (Duration::MAX, &u64::MAX.to_string()),
        ] {
            let response = service_unavailable::<()>(Some(after));
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(retry_after(&response), Some(header), "{after:?}");
        }
    }

    #[test]
    fn no_retry_after_when_the_delay_is_unknown() {
        let open: Error<()> = Error::rejected("api", None);
        let response = rejection_response::<_, ()>(&open);
        assert_eq!(
            response.as_ref().map(Response::status),
            Some(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(response.as_ref().and_then(retry_after), None);
    }

    #[test]
    fn storage_failures_are_503_and_inner_errors_are_left_to_the_caller() {
        let storage: Error<()> =
            Error::Storage(StorageError::new(StorageErrorKind::Unavailable, "down"));
        let response = rejection_response::<_, ()>(&storage);
        assert_eq!(
            response.as_ref().map(Response::status),
            Some(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(response.as_ref().and_then(retry_after), None);

        assert!(rejection_response::<_, ()>(&Error::Inner("boom")).is_none());
    }
}
