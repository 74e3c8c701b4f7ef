//! What the cache holds, its expiry policy, and the primitives as pure
//! functions of an entry, shared by the sync and async storages.

use std::time::{Duration, Instant};

use lasier_core::StorageError;
use moka::ops::compute::Op;
use moka::Expiry;

/// A value as the storages keep it: an integer and the instant it expires
/// at, if any.
///
/// It carries its own deadline so that a key is missing from its deadline
/// on, whenever moka gets round to evicting it, and so that an increment
/// keeps the TTL of the key it increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value {
    value: i64,
    expires_at: Option<Instant>,
}

impl Value {
    /// The integer.
    pub fn get(&self) -> i64 {
        self.value
    }

    /// When the value expires, if it does.
    pub fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }

    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// The [`Expiry`] policy that makes moka evict each [`Value`] at its own
/// deadline. The caches that `MokaStorage` and `AsyncMokaStorage` build
/// have it, and so do those from their `cache_builder()`; give it to any
/// other cache you build for them.
///
/// Without it a storage is still correct (a value past its deadline reads
/// as missing), but expired values hold memory until the cache's capacity
/// pushes them out.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValueExpiry;

impl Expiry<String, Value> for ValueExpiry {
    fn expire_after_create(
        &self,
        _: &String,
        value: &Value,
        created_at: Instant,
    ) -> Option<Duration> {
        value
            .expires_at
            .map(|at| at.saturating_duration_since(created_at))
    }

    fn expire_after_update(
        &self,
        _: &String,
        value: &Value,
        updated_at: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        value
            .expires_at
            .map(|at| at.saturating_duration_since(updated_at))
    }
}

/// The value, unless it has expired.
pub(crate) fn live(value: Option<Value>, now: Instant) -> Option<Value> {
    value.filter(|v| v.is_live(now))
}

/// `now + ttl`; a TTL too long for the clock never expires.
fn deadline(now: Instant, ttl: Option<Duration>) -> Option<Instant> {
    ttl.and_then(|ttl| now.checked_add(ttl))
}

/// What one primitive does to the entry of its key, and what it returns.
pub(crate) type Update<T> = (Op<Value>, T);

pub(crate) fn add(current: Option<Value>, value: i64, ttl: Option<Duration>) -> Update<bool> {
    let now = Instant::now();
    if live(current, now).is_some() {
        return (Op::Nop, false);
    }
    let expires_at = deadline(now, ttl);
    (Op::Put(Value { value, expires_at }), true)
}

pub(crate) fn set(value: i64, ttl: Option<Duration>) -> Op<Value> {
    let expires_at = deadline(Instant::now(), ttl);
    Op::Put(Value { value, expires_at })
}

pub(crate) fn incr(
    current: Option<Value>,
    key: &str,
    delta: i64,
) -> Result<Update<i64>, StorageError> {
    let next = match live(current, Instant::now()) {
        None => Value {
            value: delta,
            expires_at: None,
        },
        Some(v) => Value {
            value: v.value.checked_add(delta).ok_or_else(|| {
                StorageError::corrupt(key, "increment would overflow a 64-bit counter")
            })?,
            // The key keeps its TTL: the counting window ends on time.
            expires_at: v.expires_at,
        },
    };
    Ok((Op::Put(next), next.value))
}

pub(crate) fn expire(current: Option<Value>, ttl: Duration) -> Op<Value> {
    let now = Instant::now();
    match (live(current, now), current) {
        (Some(v), _) => Op::Put(Value {
            value: v.value,
            expires_at: deadline(now, Some(ttl)),
        }),
        // Expired but not evicted yet: it is missing, so let it go.
        (None, Some(_)) => Op::Remove,
        (None, None) => Op::Nop,
    }
}

pub(crate) fn delete(current: Option<Value>) -> Op<Value> {
    match current {
        Some(_) => Op::Remove,
        None => Op::Nop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_value_is_missing_to_every_primitive() {
        let past = Some(Value {
            value: 7,
            expires_at: Some(Instant::now()),
        });
        assert_eq!(live(past, Instant::now()), None);
        assert!(add(past, 1, None).1);
        assert_eq!(incr(past, "k", 2).map(|s| s.1).ok(), Some(2));
        assert!(matches!(expire(past, Duration::from_secs(1)), Op::Remove));
    }

    #[test]
    fn incr_keeps_the_deadline_and_reports_overflow() {
        let at = Instant::now() + Duration::from_secs(60);
        let current = Some(Value {
            value: 1,
            expires_at: Some(at),
        });
        let Ok((Op::Put(next), 3)) = incr(current, "k", 2) else {
            panic!("incr of a live value")
        };
        assert_eq!(next.expires_at(), Some(at));
        let full = Some(Value {
            value: i64::MAX,
            expires_at: None,
        });
        let err = incr(full, "k", 1).map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), lasier_core::StorageErrorKind::Corrupt);
    }

    #[test]
    fn the_expiry_policy_evicts_at_the_deadline() {
        let now = Instant::now();
        let value = Value {
            value: 1,
            expires_at: Some(now + Duration::from_millis(1500)),
        };
        let key = String::from("k");
        assert_eq!(
            ValueExpiry.expire_after_create(&key, &value, now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            ValueExpiry.expire_after_update(&key, &value, now + Duration::from_secs(1), None),
            Some(Duration::from_millis(500))
        );
        let forever = Value {
            value: 1,
            expires_at: None,
        };
        assert_eq!(ValueExpiry.expire_after_create(&key, &forever, now), None);
    }
}
