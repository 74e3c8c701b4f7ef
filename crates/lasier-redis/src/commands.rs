//! The plain commands behind the primitives (and the reset). TTLs are in
//! milliseconds.

use std::time::Duration;

use lasier_core::Circuit;
use redis::Cmd;

use crate::scripts::ttl_ms;

/// `SET key value NX [PX ttl]`: replies `OK` if written, nil if not.
pub(crate) fn add(key: &str, value: i64, ttl: Option<Duration>) -> Cmd {
    let mut cmd = set(key, value, ttl);
    cmd.arg("NX");
    cmd
}

/// `SET key value [PX ttl]`.
pub(crate) fn set(key: &str, value: i64, ttl: Option<Duration>) -> Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(value);
    if let Some(ttl) = ttl {
        cmd.arg("PX").arg(ttl_ms(ttl));
    }
    cmd
}

/// `INCRBY key delta`.
pub(crate) fn incr(key: &str, delta: i64) -> Cmd {
    let mut cmd = redis::cmd("INCRBY");
    cmd.arg(key).arg(delta);
    cmd
}

/// `GET key`.
pub(crate) fn get(key: &str) -> Cmd {
    let mut cmd = redis::cmd("GET");
    cmd.arg(key);
    cmd
}

/// `DEL key`.
pub(crate) fn delete(key: &str) -> Cmd {
    let mut cmd = redis::cmd("DEL");
    cmd.arg(key);
    cmd
}

/// `PEXPIRE key ttl`: does nothing to a missing key.
pub(crate) fn expire(key: &str, ttl: Duration) -> Cmd {
    let mut cmd = redis::cmd("PEXPIRE");
    cmd.arg(key).arg(ttl_ms(ttl));
    cmd
}

/// `DEL` of the circuit's keys, and nothing else: one round trip.
pub(crate) fn reset(circuit: &Circuit) -> Cmd {
    let mut cmd = redis::cmd("DEL");
    for key in circuit.keys().all() {
        cmd.arg(key);
    }
    cmd
}

/// `PUBLISH` of the circuit's name on the channel of changes (see
/// `watch.rs`).
pub(crate) fn publish(circuit: &Circuit) -> Cmd {
    let mut cmd = redis::cmd("PUBLISH");
    cmd.arg(crate::watch::CHANNEL).arg(&**circuit.name());
    cmd
}
