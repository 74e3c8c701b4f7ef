//! Redis errors as [`StorageError`]s.

use lasier_core::{StorageError, StorageErrorKind};
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// The error code our scripts reply with for a value the breaker cannot
/// have written (see `scripts/prelude.lua`).
const CORRUPT: &str = "CORRUPT";

/// What kind of storage failure a Redis error is.
pub(crate) fn kind_of(error: &RedisError) -> StorageErrorKind {
    if error.is_timeout() {
        return StorageErrorKind::TimedOut;
    }
    if error.is_io_error() || error.is_connection_refusal() || error.is_connection_dropped() {
        return StorageErrorKind::Unavailable;
    }
    match error.code() {
        Some(CORRUPT | "WRONGTYPE") => return StorageErrorKind::Corrupt,
        Some("ERR")
            if error
                .detail()
                .is_some_and(|d| d.contains("not an integer") || d.contains("overflow")) =>
        {
            return StorageErrorKind::Corrupt
        }
        _ => {}
    }
    match error.kind() {
        // A cluster that is failing over or resharding: MOVED and ASK
        // surface only once the client ran out of retries following them.
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask,
        )
        | ErrorKind::ClusterConnectionNotFound => StorageErrorKind::Unavailable,
        _ => StorageErrorKind::Other,
    }
}

/// A Redis error as a storage error. The message is ours and says what it
/// means to the breaker; Redis' own words are its `source()`, once (a
/// report prints each cause once). A `CORRUPT` reply of our scripts says it
/// all in our words, and has no source.
pub(crate) fn from_redis(error: RedisError) -> StorageError {
    let kind = kind_of(&error);
    if let (StorageErrorKind::Corrupt, Some(CORRUPT), Some(detail)) =
        (kind, error.code(), error.detail())
    {
        return StorageError::new(kind, detail.to_owned());
    }
    let message: std::borrow::Cow<'static, str> = match (kind, error.code()) {
        _ if error.kind() == ErrorKind::AuthenticationFailed => {
            "Redis refused the credentials (check the password or user in the URL)".into()
        }
        (_, Some("NOAUTH")) => {
            "Redis wants a password and got none (NOAUTH): put it in the URL".into()
        }
        (StorageErrorKind::Unavailable, _) => "Redis cannot be reached".into(),
        (StorageErrorKind::TimedOut, _) => "Redis did not answer in time".into(),
        (StorageErrorKind::Corrupt, _) => {
            "Redis holds a value the breaker cannot have written".into()
        }
        (_, Some(code)) => format!("Redis answered with an error ({code})").into(),
        _ => "Redis answered with an error".into(),
    };
    StorageError::new(kind, message).with_source(error)
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_report_prints_each_cause_once() {
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let detail = refused.to_string();
        let error = from_redis(refused);
        assert_eq!(error.kind(), StorageErrorKind::Unavailable);
        assert!(!error.to_string().contains(&detail), "{error}");
        assert_eq!(
            error.source().map(ToString::to_string),
            Some(detail.clone())
        );
        // Through the breaker's error: its text and the storage error's
        // once, then Redis' own.
        let wrapped: lasier_core::Error<std::io::Error> = lasier_core::Error::Storage(error);
        let text = wrapped.to_string();
        assert_eq!(text.matches("storage unavailable").count(), 1, "{text}");
        assert!(!text.contains(&detail), "{text}");
        assert_eq!(wrapped.source().map(ToString::to_string), Some(detail));
    }
}
