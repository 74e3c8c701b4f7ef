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
//! | `lasier:openings:<name>`         | open-time backoff only: consecutive openings, with a TTL (through the half-open period, then one closed window) | lasier-rs |
//! | `lasier:sync:<name>:<writer>`    | sync mode: the last part of a breaker's batches the store counted, with the window as TTL (one per breaker) | lasier-rs |
//! | `lasier:window_seq:<name>`       | sliding window: the number of its newest bucket (a counter that jumps by the bucket count when the window is emptied) | lasier-rs |
//! | `lasier:window_now:<name>`       | sliding window: the current bucket's number, with one bucket's length as TTL | lasier-rs |
//! | `lasier:window_f:<n>:<name>`, `lasier:window_r:<n>:<name>` | sliding window: failures and requests of bucket `n`, with the window as TTL | lasier-rs |
//! | `lasier:ring_pos:<name>`, `lasier:ring_f:<name>`, `lasier:ring_w:<j>:<name>` | count window: outcomes recorded, failures in the ring, and the ring's bits, 24 to a key (a day's TTL, renewed as the ring turns) | lasier-rs |
//!
//! Python `lasier` neither reads nor writes the `lasier:` keys: a circuit
//! it opens does not advance the count of openings.
//!
//! Every key contains the name unchanged, so a name with a Redis Cluster hash
//! tag (`{payments}`) keeps all of a breaker's keys in one slot.

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;

/// The prefixes of the keys after the request counter, in the order they
/// sit in [`CircuitKeys`]' buffer.
const OPEN: &str = "circuit_";
const TRIALS: &str = "lasier:half_open:";
const LEASE: &str = "lasier:half_open_lease:";
const TRIALS_PASSED: &str = "lasier:half_open_ok:";
const MODE: &str = "lasier:mode:";
const OPENINGS: &str = "lasier:openings:";

/// The keys of a sliding window (`sliding_window(n)`), made on each use:
/// the fixed window's counters are the Python original's keys, these are
/// ours, and Python `lasier` reads none of them.
pub mod window {
    use alloc::string::String;

    /// The number of the newest bucket: `lasier:window_seq:<name>`.
    pub fn seq(name: &str) -> String {
        alloc::format!("lasier:window_seq:{name}")
    }

    /// The current bucket's number, while it is current:
    /// `lasier:window_now:<name>`.
    pub fn now(name: &str) -> String {
        alloc::format!("lasier:window_now:{name}")
    }

    /// The failures of bucket `n`: `lasier:window_f:<n>:<name>`.
    pub fn failures(name: &str, n: i64) -> String {
        alloc::format!("lasier:window_f:{n}:{name}")
    }

    /// The requests of bucket `n`: `lasier:window_r:<n>:<name>`.
    pub fn requests(name: &str, n: i64) -> String {
        alloc::format!("lasier:window_r:{n}:{name}")
    }
}

/// The keys of a count window (`count_window(n)`), made on each use; Python
/// `lasier` reads none of them. The window is a ring of `n` bits (1: a
/// failure), [`RING_WORD_BITS`] to a key, written with `incr` of plus or
/// minus a power of two (so writers of other bits of a word never undo
/// each other), the outcomes recorded so far, and the failures among the
/// ring's bits.
pub mod ring {
    use alloc::string::String;

    /// The outcomes recorded: `lasier:ring_pos:<name>`. The next one takes
    /// bit `pos % n`.
    pub fn position(name: &str) -> String {
        alloc::format!("lasier:ring_pos:{name}")
    }

    /// The failures in the ring: `lasier:ring_f:<name>`.
    pub fn failures(name: &str) -> String {
        alloc::format!("lasier:ring_f:{name}")
    }

    /// Bits `24 j` to `24 j + 23` of the ring: `lasier:ring_w:<j>:<name>`.
    pub fn word(name: &str, j: i64) -> String {
        alloc::format!("lasier:ring_w:{j}:{name}")
    }
}

/// Bits of a count window's ring in one key (few enough for the 32-bit
/// bit operations of Redis' Lua).
pub const RING_WORD_BITS: i64 = 24;

/// The key where a store keeps the last part it counted from one breaker
/// in sync mode: `lasier:sync:<name>:<writer>`, `writer` in hex.
pub(crate) fn writer_key(name: &str, writer: u64) -> String {
    alloc::format!("lasier:sync:{name}:{writer:016x}")
}

/// The keys of one circuit, built once when the breaker is built.
///
/// The eight keys sit back to back in one buffer: one allocation per
/// breaker instead of eight, since every breaker has them (an in-process
/// one too) and a registry may hold thousands of breakers.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CircuitKeys {
    /// failures, requests, open, trials, lease, trials passed, mode,
    /// openings.
    buf: Box<str>,
    /// Where each key ends in `buf`; each starts where the previous ends.
    ends: [usize; 8],
}

impl CircuitKeys {
    /// The keys of the circuit `name`; the request counter is at
    /// `request_key` if given, else at `<name>_requests`.
    pub fn new(name: &str, request_key: Option<&str>) -> Self {
        let requests_len = request_key.map_or(name.len() + "_requests".len(), str::len);
        let lens = [
            name.len(),
            requests_len,
            OPEN.len() + name.len(),
            TRIALS.len() + name.len(),
            LEASE.len() + name.len(),
            TRIALS_PASSED.len() + name.len(),
            MODE.len() + name.len(),
            OPENINGS.len() + name.len(),
        ];
        let mut buf = String::with_capacity(lens.iter().sum());
        let mut ends = [0; 8];
        let mut push = |i: usize, parts: &[&str]| {
            for part in parts {
                buf.push_str(part);
            }
            ends[i] = buf.len();
        };
        push(0, &[name]);
        match request_key {
            Some(key) => push(1, &[key]),
            None => push(1, &[name, "_requests"]),
        }
        push(2, &[OPEN, name]);
        push(3, &[TRIALS, name]);
        push(4, &[LEASE, name]);
        push(5, &[TRIALS_PASSED, name]);
        push(6, &[MODE, name]);
        push(7, &[OPENINGS, name]);
        Self {
            buf: buf.into_boxed_str(),
            ends,
        }
    }

    /// Key `i` of the buffer.
    fn key(&self, i: usize) -> &str {
        let start = match i.checked_sub(1) {
            Some(previous) => self.ends.get(previous).copied().unwrap_or(0),
            None => 0,
        };
        let end = self.ends.get(i).copied().unwrap_or(0);
        // The ends are char boundaries by construction: never empty but
        // for an empty name or request key.
        self.buf.get(start..end).unwrap_or_default()
    }

    /// The failure counter: `<name>`.
    pub fn failures(&self) -> &str {
        self.key(0)
    }

    /// The request counter: `<name>_requests` unless overridden.
    pub fn requests(&self) -> &str {
        self.key(1)
    }

    /// The open flag: `circuit_<name>`, holding `1` while open.
    pub fn open(&self) -> &str {
        self.key(2)
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
        self.key(3)
    }

    /// The current lease on half-open trial permits:
    /// `lasier:half_open_lease:<name>`, with the trial lease as its TTL. It
    /// holds the lease's episode times 65 536, plus the trial slots used:
    /// the trials that passed before the lease started, and those admitted
    /// under it and not given back. When it expires, the slots of trials
    /// still out are free again.
    pub fn trial_lease(&self) -> &str {
        self.key(4)
    }

    /// Half-open trials that succeeded: `lasier:half_open_ok:<name>`.
    pub fn trials_passed(&self) -> &str {
        self.key(5)
    }

    /// The manual mode, set by `force_open()` (`1`) or `disable()` (`2`):
    /// `lasier:mode:<name>`.
    pub fn mode(&self) -> &str {
        self.key(6)
    }

    /// The count of consecutive openings, for open-time backoff:
    /// `lasier:openings:<name>`. Written only when a backoff is configured;
    /// see [`Openings`](crate::state::Openings) for its lifetime.
    pub fn openings(&self) -> &str {
        self.key(7)
    }

    /// All keys of the circuit, for a scoped reset.
    pub fn all(&self) -> [&str; 8] {
        [
            self.failures(),
            self.requests(),
            self.open(),
            self.trials(),
            self.trial_lease(),
            self.trials_passed(),
            self.mode(),
            self.openings(),
        ]
    }
}

impl fmt::Debug for CircuitKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitKeys")
            .field("failures", &self.failures())
            .field("requests", &self.requests())
            .field("open", &self.open())
            .field("trials", &self.trials())
            .field("trial_lease", &self.trial_lease())
            .field("trials_passed", &self.trials_passed())
            .field("mode", &self.mode())
            .field("openings", &self.openings())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

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

    #[test]
    fn every_key_is_what_the_eight_strings_were() {
        for (name, request_key) in [
            ("payments", None),
            ("{payments}", Some("{payments}:reqs")),
            ("é", Some("requêtes")),
            ("", None),
            ("x", Some("")),
        ] {
            let keys = CircuitKeys::new(name, request_key);
            let requests = request_key.map_or_else(|| format!("{name}_requests"), String::from);
            let expected = [
                String::from(name),
                requests,
                format!("circuit_{name}"),
                format!("lasier:half_open:{name}"),
                format!("lasier:half_open_lease:{name}"),
                format!("lasier:half_open_ok:{name}"),
                format!("lasier:mode:{name}"),
                format!("lasier:openings:{name}"),
            ];
            assert_eq!(keys.all(), expected.each_ref().map(String::as_str));
            assert_eq!(keys.failures(), expected[0]);
            assert_eq!(keys.requests(), expected[1]);
            assert_eq!(keys.open(), expected[2]);
            assert_eq!(keys.trials(), expected[3]);
            assert_eq!(keys.trial_lease(), expected[4]);
            assert_eq!(keys.trials_passed(), expected[5]);
            assert_eq!(keys.mode(), expected[6]);
            assert_eq!(keys.openings(), expected[7]);
        }
    }
}
