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

/// A Redis error as a storage error, with the Redis error as its source.
pub(crate) fn from_redis(error: RedisError) -> StorageError {
    let kind = kind_of(&error);
    let message = match (kind, error.code(), error.detail()) {
        // Our own reply says it all: `key "...": ...`.
        (StorageErrorKind::Corrupt, Some(CORRUPT), Some(detail)) => detail.to_owned(),
        _ if error.kind() == ErrorKind::AuthenticationFailed => format!(
            "Redis refused the credentials (check the password or user in the URL): {error}"
        ),
        _ => error.to_string(),
    };
    StorageError::new(kind, message).with_source(error)
}
