//! Storages that break the contract, one rule each, and the kit catching
//! every one of them with the check that names the rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lasier_core::clock::{Clock, MonotonicClock};
use lasier_core::kv::blocking as kv;
use lasier_core::{
    async_trait, Admission, AsyncStorage, Circuit, Counts, FusedSteps, Manual, Outcome, Permit,
    Rule, State, Storage, StorageError, Transition,
};
use lasier_testkit::{Report, Suite};

/// The one rule a [`Flawed`] storage breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bug {
    /// `add` writes whether or not the key exists, and always says it did.
    AddOverwrites,
    /// `incr` reads, lets others run, then writes: concurrent increments
    /// are lost.
    IncrLosesUpdates,
    /// TTLs are ignored: keys live forever.
    KeysNeverExpire,
    /// `incr` writes the new value without the key's TTL.
    IncrDropsTtl,
    /// `get` of a missing key is `Some(0)`.
    MissingReadsAsZero,
    /// Values go through an `f64`.
    FloatValues,
    /// Keys are lowercased, so `Svc` and `svc` share state.
    CaseInsensitiveKeys,
    /// `reset` deletes every key that contains the breaker's name.
    ResetByPattern,
    /// `record` is overridden and opens one failure late.
    OpensOneFailureLate,
    /// `repair` is overridden to do nothing, though the steps read the keys.
    RepairDoesNothing,
}

/// A `Mutex<HashMap>` storage with deadlines, correct but for its `bug`.
#[derive(Debug)]
struct Flawed {
    bug: Option<Bug>,
    clock: Arc<dyn Clock>,
    entries: Mutex<HashMap<String, (i64, Option<Duration>)>>,
}

impl Flawed {
    fn new(bug: impl Into<Option<Bug>>, clock: impl Clock + 'static) -> Self {
        Self {
            bug: bug.into(),
            clock: Arc::new(clock),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn has(&self, bug: Bug) -> bool {
        self.bug == Some(bug)
    }

    fn key(&self, key: &str) -> String {
        if self.has(Bug::CaseInsensitiveKeys) {
            key.to_lowercase()
        } else {
            key.to_owned()
        }
    }

    fn deadline(&self, ttl: Option<Duration>) -> Option<Duration> {
        if self.has(Bug::KeysNeverExpire) {
            return None;
        }
        ttl.map(|ttl| self.clock.now() + ttl)
    }

    /// The live entries, with expired ones dropped.
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, Option<Duration>)>> {
        let now = self.clock.now();
        let mut map = self.entries.lock().unwrap();
        map.retain(|_, (_, deadline)| deadline.is_none_or(|d| d > now));
        map
    }

    fn value(&self, value: i64) -> i64 {
        if self.has(Bug::FloatValues) {
            value as f64 as i64
        } else {
            value
        }
    }

    /// The read half of a lossy increment.
    fn read(&self, key: &str) -> (i64, Option<Duration>) {
        self.live()
            .get(&self.key(key))
            .copied()
            .unwrap_or((0, None))
    }

    /// The write half of a lossy increment.
    fn write(&self, key: &str, (value, deadline): (i64, Option<Duration>), delta: i64) -> i64 {
        self.live().insert(self.key(key), (value + delta, deadline));
        value + delta
    }
}

impl Storage for Flawed {
    fn add(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<bool, StorageError> {
        let entry = (self.value(value), self.deadline(ttl));
        let mut map = self.live();
        if !self.has(Bug::AddOverwrites) && map.contains_key(&self.key(key)) {
            return Ok(false);
        }
        map.insert(self.key(key), entry);
        Ok(true)
    }

    fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError> {
        let entry = (self.value(value), self.deadline(ttl));
        self.live().insert(self.key(key), entry);
        Ok(())
    }

    fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
        if self.has(Bug::IncrLosesUpdates) {
            let before = self.read(key);
            std::thread::sleep(Duration::from_micros(50));
            return Ok(self.write(key, before, delta));
        }
        let mut map = self.live();
        let entry = map.entry(self.key(key)).or_insert((0, None));
        entry.0 += delta;
        if self.has(Bug::IncrDropsTtl) {
            entry.1 = None;
        }
        Ok(entry.0)
    }

    fn get(&self, key: &str) -> Result<Option<i64>, StorageError> {
        let value = self.live().get(&self.key(key)).map(|(v, _)| *v);
        if self.has(Bug::MissingReadsAsZero) {
            return Ok(Some(value.unwrap_or(0)));
        }
        Ok(value)
    }

    fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError> {
        let deadline = self.deadline(Some(ttl));
        if let Some(entry) = self.live().get_mut(&self.key(key)) {
            entry.1 = deadline;
        }
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.live().remove(&self.key(key));
        Ok(())
    }

    fn fused_steps(&self) -> Option<&dyn FusedSteps> {
        Some(self)
    }
}

/// Three steps with bugs of their own; the others are the default bodies
/// (`kv::blocking`), which is what a storage that overrides some steps
/// falls back to.
impl FusedSteps for Flawed {
    fn admit(&self, circuit: &Circuit) -> Result<(Admission, Option<Transition>), StorageError> {
        kv::admit(self, circuit)
    }

    fn record(
        &self,
        circuit: &Circuit,
        permit: Permit,
        outcome: Outcome,
        rule: &dyn Rule,
    ) -> Result<Option<Transition>, StorageError> {
        if self.has(Bug::OpensOneFailureLate) {
            return kv::record(self, circuit, permit, outcome, &OneLate(rule));
        }
        kv::record(self, circuit, permit, outcome, rule)
    }

    fn release(&self, circuit: &Circuit, permit: Permit) -> Result<(), StorageError> {
        kv::release(self, circuit, permit)
    }

    fn open_circuit(&self, circuit: &Circuit) -> Result<(), StorageError> {
        kv::open_circuit(self, circuit)
    }

    fn state(&self, circuit: &Circuit) -> Result<State, StorageError> {
        kv::state(self, circuit)
    }

    fn counts(&self, circuit: &Circuit) -> Result<Counts, StorageError> {
        kv::counts(self, circuit)
    }

    fn repair(&self, circuit: &Circuit) -> Result<(), StorageError> {
        if self.has(Bug::RepairDoesNothing) {
            return Ok(());
        }
        kv::repair(self, circuit)
    }

    fn set_manual(
        &self,
        circuit: &Circuit,
        manual: Manual,
    ) -> Result<Option<Transition>, StorageError> {
        kv::set_manual(self, circuit, manual)
    }

    fn reset(&self, circuit: &Circuit) -> Result<(), StorageError> {
        if self.has(Bug::ResetByPattern) {
            // Like `DEL` of what `KEYS *<name>*` matches.
            let name = circuit.name().to_string();
            self.live().retain(|key, _| !key.contains(&name));
            return Ok(());
        }
        kv::reset(self, circuit)
    }
}

/// A rule that sees one failure fewer than there were.
#[derive(Debug)]
struct OneLate<'a>(&'a dyn Rule);

impl Rule for OneLate<'_> {
    fn should_open(&self, counts: Counts) -> bool {
        self.0.should_open(Counts::new(
            counts.failures.saturating_sub(1),
            counts.requests,
        ))
    }
    fn counts_requests(&self) -> bool {
        self.0.counts_requests()
    }
}

/// The async version, through the default async fused steps; its lossy
/// `incr` yields to other tasks between its read and its write.
#[async_trait]
impl AsyncStorage for Flawed {
    async fn add(
        &self,
        key: &str,
        value: i64,
        ttl: Option<Duration>,
    ) -> Result<bool, StorageError> {
        Storage::add(self, key, value, ttl)
    }
    async fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError> {
        Storage::set(self, key, value, ttl)
    }
    async fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
        if self.has(Bug::IncrLosesUpdates) {
            let before = self.read(key);
            tokio::task::yield_now().await;
            return Ok(self.write(key, before, delta));
        }
        Storage::incr(self, key, delta)
    }
    async fn get(&self, key: &str) -> Result<Option<i64>, StorageError> {
        Storage::get(self, key)
    }
    async fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError> {
        Storage::expire(self, key, ttl)
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        Storage::delete(self, key)
    }
}

fn sync_report(bug: Bug) -> Report {
    Suite::new().run_with_clock(|clock| Flawed::new(bug, clock))
}

/// Asserts that `report` failed `check` (and says so in its message).
fn rejected(report: &Report, check: &str) -> String {
    let failure = report
        .failure(check)
        .unwrap_or_else(|| panic!("the kit did not fail `{check}`:\n{report}"));
    let text = report.to_string();
    assert!(text.contains(&format!("check `{check}` failed")), "{text}");
    assert!(text.contains(failure.fix), "{text}");
    failure.seen.clone()
}

#[test]
fn the_same_storage_without_a_bug_passes() {
    // So every rejection below is the bug's doing.
    let report = Suite::new().run_with_clock(|clock| Flawed::new(None, clock));
    assert!(report.is_ok(), "{report}");
    let report = Suite::new().run(|| Flawed::new(None, MonotonicClock::new()));
    assert!(report.is_ok(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_async_storage_without_a_bug_passes() {
    let report = Suite::new()
        .run_async(|| async { Flawed::new(None, MonotonicClock::new()) })
        .await;
    assert!(report.is_ok(), "{report}");
}

#[test]
fn an_add_that_overwrites_is_rejected() {
    let report = sync_report(Bug::AddOverwrites);
    let seen = rejected(&report, "add_writes_only_when_absent");
    assert!(seen.contains("add overwrote a key that exists"), "{seen}");
    rejected(&report, "add_is_atomic");
}

#[test]
fn an_incr_that_loses_updates_is_rejected_with_threads() {
    let report = sync_report(Bug::IncrLosesUpdates);
    let seen = rejected(&report, "incr_never_loses_an_update");
    assert!(seen.contains("increments were lost"), "{seen}");
    // Everything else about it is right.
    assert_eq!(report.failures().len(), 1, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_incr_that_loses_updates_is_rejected_with_parallel_tasks() {
    let report = Suite::new()
        .run_async_with_clock(|clock| async move { Flawed::new(Bug::IncrLosesUpdates, clock) })
        .await;
    rejected(&report, "incr_never_loses_an_update");
    assert_eq!(report.failures().len(), 1, "{report}");
}

#[tokio::test]
async fn an_incr_that_loses_updates_is_rejected_with_interleaved_tasks() {
    let report = Suite::new()
        .run_async_with_clock(|clock| async move { Flawed::new(Bug::IncrLosesUpdates, clock) })
        .await;
    rejected(&report, "incr_never_loses_an_update");
}

#[test]
fn keys_that_never_expire_are_rejected() {
    let report = sync_report(Bug::KeysNeverExpire);
    let seen = rejected(&report, "ttls_expire");
    assert!(seen.contains("the TTL did not expire the key"), "{seen}");
    for check in [
        "expired_keys_are_missing",
        "expire_sets_the_ttl",
        "incr_keeps_the_ttl",
        "set_replaces_the_ttl",
        "ttls_are_exact_to_the_millisecond",
        "steps_failures_expire_with_their_window",
        "steps_half_open_trial_success_closes",
    ] {
        rejected(&report, check);
    }
}

#[test]
fn keys_that_never_expire_are_rejected_in_real_time() {
    let report = Suite::new().run(|| Flawed::new(Bug::KeysNeverExpire, MonotonicClock::new()));
    rejected(&report, "ttls_expire");
    rejected(&report, "steps_half_open_trial_success_closes");
    // The millisecond check needs a manual clock, so it did not run.
    assert!(report
        .failure("ttls_are_exact_to_the_millisecond")
        .is_none());
}

#[tokio::test]
async fn keys_that_never_expire_are_rejected_async_in_real_time() {
    let report = Suite::new()
        .run_async(|| async { Flawed::new(Bug::KeysNeverExpire, MonotonicClock::new()) })
        .await;
    rejected(&report, "ttls_expire");
}

#[test]
fn an_incr_that_drops_the_ttl_is_rejected() {
    let report = sync_report(Bug::IncrDropsTtl);
    let seen = rejected(&report, "incr_keeps_the_ttl");
    assert!(seen.contains("incr removed or extended the TTL"), "{seen}");
}

#[test]
fn a_missing_key_that_reads_as_zero_is_rejected() {
    let report = sync_report(Bug::MissingReadsAsZero);
    rejected(&report, "get_of_a_missing_key_is_none");
}

#[test]
fn values_that_go_through_a_float_are_rejected() {
    let report = sync_report(Bug::FloatValues);
    let seen = rejected(&report, "values_round_trip");
    assert!(seen.contains("9007199254740993"), "{seen}");
}

#[test]
fn case_insensitive_keys_are_rejected() {
    let report = sync_report(Bug::CaseInsensitiveKeys);
    rejected(&report, "similar_names_do_not_share_state");
}

#[test]
fn a_reset_by_pattern_is_rejected() {
    let report = sync_report(Bug::ResetByPattern);
    let seen = rejected(&report, "reset_deletes_only_its_keys");
    assert!(seen.contains("changed the unrelated key"), "{seen}");
    rejected(&report, "similar_names_do_not_share_state");
}

#[test]
fn an_overridden_step_that_disagrees_with_its_default_body_is_rejected() {
    let report = sync_report(Bug::OpensOneFailureLate);
    let seen = rejected(&report, "steps_max_failures_opens_the_circuit");
    assert!(
        seen.contains("the default bodies over the primitives answer"),
        "{seen}"
    );
    // Its primitives are right.
    assert!(report.passed().contains(&"incr_never_loses_an_update"));
}

#[test]
fn check_storage_panics_with_the_report() {
    let panic = std::panic::catch_unwind(|| {
        lasier_testkit::check_storage_with_clock(|clock| Flawed::new(Bug::AddOverwrites, clock));
    })
    .expect_err("a broken storage must fail the check");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("check `add_writes_only_when_absent` failed"),
        "{message}"
    );
    assert!(
        message.contains("rule: `add` writes only when the key is absent"),
        "{message}"
    );
    assert!(
        message.contains("fix:  Make `add` one atomic set-if-absent"),
        "{message}"
    );
}

#[test]
fn a_repair_that_does_nothing_is_rejected() {
    let report = sync_report(Bug::RepairDoesNothing);
    let seen = rejected(&report, "repair_deletes_only_corrupt_keys");
    assert!(seen.contains("expected Ok(Closed)"), "{seen}");
}

/// `MemoryStorage`, but `get` of the keys of one check takes 80 ms.
#[derive(Debug)]
struct SlowGets(lasier_core::MemoryStorage, &'static str);

#[async_trait]
impl AsyncStorage for SlowGets {
    async fn add(
        &self,
        key: &str,
        value: i64,
        ttl: Option<Duration>,
    ) -> Result<bool, StorageError> {
        Storage::add(&self.0, key, value, ttl)
    }
    async fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError> {
        Storage::set(&self.0, key, value, ttl)
    }
    async fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
        Storage::incr(&self.0, key, delta)
    }
    async fn get(&self, key: &str) -> Result<Option<i64>, StorageError> {
        if key.contains(self.1) {
            tokio::time::sleep(Duration::from_millis(80)).await;
        }
        Storage::get(&self.0, key)
    }
    async fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError> {
        Storage::expire(&self.0, key, ttl)
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        Storage::delete(&self.0, key)
    }
}

#[tokio::test]
async fn a_store_too_slow_for_the_tick_is_inconclusive_not_passed() {
    // Correct, but its 4 reads of the `ttls_expire` keys take longer than
    // half of even the longest tick tried (8 x 40 ms): the kit cannot tell
    // whether TTLs work, and says so.
    let report = Suite::new()
        .tick(Duration::from_millis(40))
        .run_async(|| async { SlowGets(lasier_core::MemoryStorage::new(), ":ttls_expire:") })
        .await;
    let seen = rejected(&report, "ttls_expire");
    assert!(seen.starts_with("inconclusive"), "{seen}");
    assert_eq!(report.failures().len(), 1, "{report}");
}
