//! The list of checks: each one's name, the rule it checks, how to fix a
//! storage that breaks it, and how it runs.

use crate::primitives as p;
use crate::probe::{Broken, Names, Probe, Timeline};
use crate::steps::{self, Scenario, SCENARIOS};

/// How a check uses time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timing {
    /// Does not depend on time.
    Untimed,
    /// Moves time on: a manual clock, or real waits with a drift check.
    Timed,
    /// Needs a manual clock (exact to the millisecond).
    ManualClockOnly,
}

#[derive(Debug, Clone, Copy)]
enum Body {
    GetMissing,
    AddOnlyWhenAbsent,
    AddAtomic,
    ValuesRoundTrip,
    IncrMissing,
    IncrAtomic,
    Delete,
    ExpireMissing,
    TtlsExpire,
    ExpiredKeysMissing,
    ExpireSetsTtl,
    IncrKeepsTtl,
    SetReplacesTtl,
    ExactTtl,
    ResetOnlyItsKeys,
    RepairOnlyCorrupt,
    Steps(&'static Scenario),
}

/// One check of the suite.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Check {
    pub(crate) name: &'static str,
    pub(crate) rule: &'static str,
    pub(crate) fix: &'static str,
    pub(crate) timing: Timing,
    body: Body,
}

const fn check(
    name: &'static str,
    timing: Timing,
    body: Body,
    rule: &'static str,
    fix: &'static str,
) -> Check {
    Check {
        name,
        rule,
        fix,
        timing,
        body,
    }
}

const ADD_FIX: &str = "Make `add` one atomic set-if-absent that returns whether it wrote: Redis \
    `SET key value NX PX ttl`; in a map, look up and insert under one lock; moka: \
    `entry().and_compute_with`. A `get` followed by a `set` lets two callers both create the key. \
    The breaker relies on it to create a window's failure counter once, with its TTL.";

const INCR_FIX: &str = "Make `incr` one atomic read-modify-write that returns the value its own \
    increment produced: Redis `INCRBY`; in a map, read and write under one lock; moka: \
    `entry().and_compute_with`. A `get` followed by a `set` loses the increments of overlapping \
    callers, and the breaker then undercounts failures.";

const TTL_FIX: &str = "Keep a deadline with each key (or use the store's own TTLs: Redis `PX`) \
    and treat a key past its deadline as missing in every primitive, not only in `get`.";

const STEPS_RULE: &str = "the fused steps (`admit`, `record`, `release`, `open_circuit`, \
    `state`, `counts`, `reset`) give the same results as their default bodies over the \
    primitives";

const STEPS_FIX: &str = "If you override fused steps, make each do what its default body in \
    lasier-core (`src/steps.rs`) does over the primitives, or drop the override. If you override \
    none, a primitive is at fault: fix the failed primitive checks first.";

const ISOLATION_RULE: &str = "one breaker's keys and state never touch another breaker's, \
    however alike their names";

const ISOLATION_FIX: &str = "Keep each circuit under its own keys (`circuit.keys()`), compared \
    byte for byte: no case folding, trimming, truncation or lossy hashing of names; and make \
    `reset` delete exactly `circuit.keys().all()`, by name (no prefix or pattern match: `KEYS` \
    and `SCAN` globs treat `*?[` specially; never `FLUSHDB`).";

const PRIMITIVE_CHECKS: [Check; 16] = [
    check(
        "get_of_a_missing_key_is_none",
        Timing::Untimed,
        Body::GetMissing,
        "`get` of a missing key is `Ok(None)`",
        "Return `Ok(None)` when the key does not exist, not `Some(0)` and not an error: the \
         breaker tells a missing key from a zero.",
    ),
    check(
        "add_writes_only_when_absent",
        Timing::Untimed,
        Body::AddOnlyWhenAbsent,
        "`add` writes only when the key is absent, and returns whether it wrote",
        ADD_FIX,
    ),
    check(
        "add_is_atomic",
        Timing::Untimed,
        Body::AddAtomic,
        "of concurrent `add`s of one absent key, exactly one writes and returns true",
        ADD_FIX,
    ),
    check(
        "values_round_trip",
        Timing::Untimed,
        Body::ValuesRoundTrip,
        "`get` returns exactly the i64 that `set` or `add` wrote (negative, large, i64::MIN and \
         i64::MAX included), and `set` overwrites",
        "Store the full signed 64-bit integer: no float (2^53 + 1 must survive), no 32-bit or \
         unsigned type, no text that loses digits.",
    ),
    check(
        "incr_treats_a_missing_key_as_zero",
        Timing::Untimed,
        Body::IncrMissing,
        "`incr(key, delta)` adds `delta` (negative too) and returns the new value; a missing key \
         counts as 0, so the first `incr(key, 1)` returns 1",
        "Create a missing key at `delta` (not at 0, not as an error) and return the value after \
         adding.",
    ),
    check(
        "incr_never_loses_an_update",
        Timing::Untimed,
        Body::IncrAtomic,
        "`incr` never loses an increment under concurrent callers",
        INCR_FIX,
    ),
    check(
        "delete_removes_the_key",
        Timing::Untimed,
        Body::Delete,
        "`delete` removes the key: `get` is None and `add`/`incr` see it as new; deleting a \
         missing key is not an error",
        "Remove the entry itself (not its value only), and return `Ok(())` when there was none.",
    ),
    check(
        "expire_of_a_missing_key_does_nothing",
        Timing::Untimed,
        Body::ExpireMissing,
        "`expire` of a missing key does nothing: it neither creates the key nor leaves a TTL \
         behind",
        "Change the TTL only of a key that exists (Redis `PEXPIRE` does so); on a missing key, \
         return `Ok(())` and write nothing.",
    ),
    check(
        "ttls_expire",
        Timing::Timed,
        Body::TtlsExpire,
        "a key written with a TTL by `set` or `add` reads as missing from its deadline on, and \
         not before",
        TTL_FIX,
    ),
    check(
        "expired_keys_are_missing",
        Timing::Timed,
        Body::ExpiredKeysMissing,
        "a key past its deadline is missing for every primitive: `add` writes it again, `incr` \
         starts again from 0, `expire` does not bring it back",
        TTL_FIX,
    ),
    check(
        "expire_sets_the_ttl",
        Timing::Timed,
        Body::ExpireSetsTtl,
        "`expire(key, ttl)` replaces the key's TTL with `ttl` from now, shorter or longer",
        "Set the key's deadline to now + ttl, whatever it was (Redis `PEXPIRE`).",
    ),
    check(
        "incr_keeps_the_ttl",
        Timing::Timed,
        Body::IncrKeepsTtl,
        "`incr` keeps the key's TTL: it neither removes nor extends it",
        "Keep the entry's deadline when incrementing (Redis `INCRBY` does); do not write the new \
         value with a fresh TTL or none. A breaker's counting window is the TTL set at its first \
         count; a lost TTL keeps failures forever, a refreshed one never ends the window.",
    ),
    check(
        "set_replaces_the_ttl",
        Timing::Timed,
        Body::SetReplacesTtl,
        "`set` with a TTL replaces the value and the TTL of a key that exists",
        "Write the new deadline together with the new value, even when the key exists (Redis \
         `SET key value PX ttl`). Reopening a circuit relies on it.",
    ),
    check(
        "ttls_are_exact_to_the_millisecond",
        Timing::ManualClockOnly,
        Body::ExactTtl,
        "on the clock the storage was given, a key with a TTL of 1 s is there 999 ms later and \
         missing exactly 1 s later",
        "Compute deadlines on the clock passed to the storage, in milliseconds, and treat a key \
         as missing when `now >= deadline`.",
    ),
    check(
        "reset_deletes_only_its_keys",
        Timing::Untimed,
        Body::ResetOnlyItsKeys,
        ISOLATION_RULE,
        ISOLATION_FIX,
    ),
    check(
        "repair_deletes_only_corrupt_keys",
        Timing::Untimed,
        Body::RepairOnlyCorrupt,
        "`repair` makes a circuit whose keys hold what the breaker cannot have written (an \
         open flag of 5, a negative count) usable again, and keeps every key that holds what \
         the breaker writes",
        "Use the default body of `repair` (it deletes each of `circuit.keys().all()` that holds \
         a negative count, an open flag other than 1, or a value `get` reports as Corrupt), or \
         an override that does the same; a storage whose steps never read those keys may make \
         it a no-op.",
    ),
];

/// Every check, in the order they are reported.
pub(crate) fn all() -> Vec<Check> {
    let mut checks = PRIMITIVE_CHECKS.to_vec();
    for scenario in SCENARIOS {
        let isolation = !scenario.check.starts_with("steps_");
        checks.push(Check {
            name: scenario.check,
            rule: if isolation {
                ISOLATION_RULE
            } else {
                STEPS_RULE
            },
            fix: if isolation { ISOLATION_FIX } else { STEPS_FIX },
            timing: if scenario.is_timed() {
                Timing::Timed
            } else {
                Timing::Untimed
            },
            body: Body::Steps(scenario),
        });
    }
    checks
}

/// How hard the concurrency checks push.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    pub(crate) workers: usize,
    pub(crate) increments: usize,
}

impl Check {
    /// Runs the check once.
    pub(crate) async fn run(
        &self,
        probe: &Probe<'_>,
        names: &Names,
        t: &mut Timeline,
        load: Load,
    ) -> Result<(), Broken> {
        let (p, n) = (probe, names);
        match self.body {
            Body::GetMissing => p::get_of_a_missing_key_is_none(p, n).await,
            Body::AddOnlyWhenAbsent => p::add_writes_only_when_absent(p, n).await,
            Body::AddAtomic => p::add_is_atomic(p, n, load.workers).await,
            Body::ValuesRoundTrip => p::values_round_trip(p, n).await,
            Body::IncrMissing => p::incr_treats_a_missing_key_as_zero(p, n).await,
            Body::IncrAtomic => {
                p::incr_never_loses_an_update(p, n, load.workers, load.increments).await
            }
            Body::Delete => p::delete_removes_the_key(p, n).await,
            Body::ExpireMissing => p::expire_of_a_missing_key_does_nothing(p, n).await,
            Body::TtlsExpire => p::ttls_expire(p, n, t).await,
            Body::ExpiredKeysMissing => p::expired_keys_are_missing(p, n, t).await,
            Body::ExpireSetsTtl => p::expire_sets_the_ttl(p, n, t).await,
            Body::IncrKeepsTtl => p::incr_keeps_the_ttl(p, n, t).await,
            Body::SetReplacesTtl => p::set_replaces_the_ttl(p, n, t).await,
            Body::ExactTtl => p::ttls_are_exact_to_the_millisecond(p, n, t).await,
            Body::ResetOnlyItsKeys => steps::reset_deletes_only_its_keys(p, n).await,
            Body::RepairOnlyCorrupt => steps::repair_deletes_only_corrupt_keys(p, n).await,
            Body::Steps(scenario) => steps::compare(scenario, p, n, t).await,
        }
    }
}
