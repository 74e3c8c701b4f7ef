//! Where a circuit lives in a store: the key layout.
//!
//! Byte-compatible with the Python original, so that a Python `lasier`
//! service and a Rust service sharing a store and a name share one circuit:
//!
//! | key                              | holds                                   | from         |
//! |----------------------------------|-----------------------------------------|--------------|
//! | `<name>`                         | failures in the current window          | the original |
//! | `<name>_requests` (overridable)  | requests in the current window          | the original |
//! | `circuit_<name>`                 | `1` while open, with the open time as TTL | the original |
//! | `lasier:half_open:<name>`        | the half-open state: episode of the current lease x 65536 + leases started | lasier-rs |
//! | `lasier:half_open_lease:<name>`  | the current lease on trial permits: its episode x 65536 + slots used, with the lease as TTL | lasier-rs |
//! | `lasier:half_open_ok:<name>`     | half-open trials that succeeded         | lasier-rs    |
//! | `lasier:mode:<name>`             | set by hand: `1` forced open, `2` disabled | lasier-rs |
//!
//! Every key contains the name unchanged, so a name with a Redis Cluster hash
//! tag (`{payments}`) keeps all of a breaker's keys in one slot.

use alloc::format;
use alloc::string::String;

/// The keys of one circuit, built once when the breaker is built.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CircuitKeys {
    failures: String,
    requests: String,
    open: String,
    trials: String,
    lease: String,
    trials_passed: String,
    mode: String,
}

impl CircuitKeys {
    /// The keys of the circuit `name`; the request counter is at
    /// `request_key` if given, else at `<name>_requests`.
    pub fn new(name: &str, request_key: Option<&str>) -> Self {
        Self {
            failures: String::from(name),
            requests: request_key.map_or_else(|| format!("{name}_requests"), String::from),
            open: format!("circuit_{name}"),
            trials: format!("lasier:half_open:{name}"),
            lease: format!("lasier:half_open_lease:{name}"),
            trials_passed: format!("lasier:half_open_ok:{name}"),
            mode: format!("lasier:mode:{name}"),
        }
    }

    /// The failure counter: `<name>`.
    pub fn failures(&self) -> &str {
        &self.failures
    }

    /// The request counter: `<name>_requests` unless overridden.
    pub fn requests(&self) -> &str {
        &self.requests
    }

    /// The open flag: `circuit_<name>`, holding `1` while open.
    pub fn open(&self) -> &str {
        &self.open
    }

    /// The half-open marker: `lasier:half_open:<name>`. Its presence is
    /// what marks the circuit half-open once the open flag expires; it lives
    /// for [`HALF_OPEN_RETENTION`](crate::state::HALF_OPEN_RETENTION) after
    /// the open time or the last lease, so an idle circuit stays half-open.
    /// It holds the episode number of the current lease times 65 536, plus
    /// the number of leases started in this half-open period (at most
    /// 65 535): a trial permit carries its episode, and its verdict or
    /// release counts only while that lease is the current one.
    pub fn trials(&self) -> &str {
        &self.trials
    }

    /// The current lease on half-open trial permits:
    /// `lasier:half_open_lease:<name>`, with the trial lease as its TTL. It
    /// holds the lease's episode times 65 536, plus the trial slots used:
    /// the trials that passed before the lease started, and those admitted
    /// under it and not given back. When it expires, the slots of trials
    /// still out are free again.
    pub fn trial_lease(&self) -> &str {
        &self.lease
    }

    /// Half-open trials that succeeded: `lasier:half_open_ok:<name>`.
    pub fn trials_passed(&self) -> &str {
        &self.trials_passed
    }

    /// The manual mode, set by `force_open()` (`1`) or `disable()` (`2`):
    /// `lasier:mode:<name>`.
    pub fn mode(&self) -> &str {
        &self.mode
    }

    /// All keys of the circuit, for a scoped reset.
    pub fn all(&self) -> [&str; 7] {
        [
            &self.failures,
            &self.requests,
            &self.open,
            &self.trials,
            &self.lease,
            &self.trials_passed,
            &self.mode,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_original() {
        let keys = CircuitKeys::new("payments", None);
        assert_eq!(keys.failures(), "payments");
        assert_eq!(keys.requests(), "payments_requests");
        assert_eq!(keys.open(), "circuit_payments");
        let keys = CircuitKeys::new("{payments}", Some("{payments}:reqs"));
        assert_eq!(keys.requests(), "{payments}:reqs");
        for key in keys.all() {
            assert!(key.contains("{payments}"), "{key}");
        }
    }
}
