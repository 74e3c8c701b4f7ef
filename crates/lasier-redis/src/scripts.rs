//! The Lua scripts behind the fused steps, and what both storages share:
//! building each invocation from a [`Circuit`] and reading its reply.
//!
//! Each script is atomic and runs in one round trip (`EVALSHA`, loaded with
//! `SCRIPT LOAD` and retried on `NOSCRIPT`). They implement the default
//! steps of `lasier-core` (same keys, TTLs and half-open protocol) with the
//! races of a read-then-write sequence gone. The sources are in
//! `src/scripts/*.lua`, each with a header that says its keys, arguments and
//! reply.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::Duration;

use lasier_core::state::{Admission, Outcome, Permit, Snapshot, State, SyncBatch, Transition};
use lasier_core::{Circuit, Counts, Rule, StorageError, StorageErrorKind, SyncItem, Window};
use redis::{Script, ScriptInvocation};

macro_rules! lua {
    ($file:literal) => {
        concat!(
            include_str!("scripts/prelude.lua"),
            include_str!(concat!("scripts/", $file))
        )
    };
}

/// The scripts, hashed once per process.
pub(crate) struct Scripts {
    admit: Script,
    record: Script,
    trial: Script,
    release: Script,
    open: Script,
    state: Script,
    counts: Script,
    register: Script,
}

/// Every script's source.
const SOURCES: [&str; 8] = [
    lua!("admit.lua"),
    lua!("record.lua"),
    lua!("trial.lua"),
    lua!("release.lua"),
    lua!("open.lua"),
    lua!("state.lua"),
    lua!("counts.lua"),
    lua!("register.lua"),
];

fn scripts() -> &'static Scripts {
    static SCRIPTS: OnceLock<Scripts> = OnceLock::new();
    SCRIPTS.get_or_init(|| {
        let [admit, record, trial, release, open, state, counts, register] =
            SOURCES.map(Script::new);
        Scripts {
            admit,
            record,
            trial,
            release,
            open,
            state,
            counts,
            register,
        }
    })
}

/// The source of our script whose SHA1 (hex) is `hash`: for an `EVAL`
/// where a cluster node answers `EVALSHA` with `NOSCRIPT`.
#[cfg(feature = "cluster")]
pub(crate) fn source_of(hash: &[u8]) -> Option<&'static str> {
    static HASHES: OnceLock<[String; 8]> = OnceLock::new();
    let hashes =
        HASHES.get_or_init(|| SOURCES.map(|source| Script::new(source).get_hash().to_owned()));
    hashes
        .iter()
        .zip(SOURCES)
        .find(|(known, _)| known.as_bytes().eq_ignore_ascii_case(hash))
        .map(|(_, source)| source)
}

/// Whole milliseconds, rounded up, at least 1 (Redis rejects `PX 0`), at
/// most what Redis accepts as a relative TTL.
pub(crate) fn ttl_ms(ttl: Duration) -> u64 {
    const MAX: u64 = 1 << 52;
    lasier_core::clock::ceil_millis(ttl).clamp(1, MAX)
}

fn flag(on: bool) -> u8 {
    u8::from(on)
}

/// The half-open marker's TTL from an opening: the open time, then the
/// retention (0: no half-open state).
fn marker_after_opening_ms(circuit: &Circuit) -> u64 {
    let timing = circuit.timing();
    if timing.half_open_max_calls == 0 {
        0
    } else {
        ttl_ms(timing.marker_ttl_after_opening())
    }
}

/// The half-open marker's TTL from the start of a lease: the lease, then
/// the retention.
/// The window keys the scripts declare, and what they need to know of the
/// window: a sliding window's number keys (newest, current), its bucket
/// count and bucket length; a count window's position and failures keys,
/// and its calls. For a fixed window, the failure counter twice (declared,
/// never touched) and zeros.
struct WindowArgs<'a> {
    keys: [Cow<'a, str>; 2],
    buckets: u64,
    bucket_ms: u64,
    calls: u64,
}

fn window_keys(circuit: &Circuit) -> WindowArgs<'_> {
    let name = &**circuit.name();
    match (circuit.window(), circuit.bucket_ms()) {
        (Window::Sliding { buckets }, Some(bucket_ms)) => WindowArgs {
            keys: [
                Cow::Owned(lasier_core::keys::window::seq(name)),
                Cow::Owned(lasier_core::keys::window::now(name)),
            ],
            buckets: u64::from(buckets),
            bucket_ms,
            calls: 0,
        },
        (Window::Count { calls, .. }, _) => WindowArgs {
            keys: [
                Cow::Owned(lasier_core::keys::ring::position(name)),
                Cow::Owned(lasier_core::keys::ring::failures(name)),
            ],
            buckets: 0,
            bucket_ms: 0,
            calls: u64::from(calls),
        },
        _ => {
            let failures = Cow::Borrowed(circuit.keys().failures());
            WindowArgs {
                keys: [failures.clone(), failures],
                buckets: 0,
                bucket_ms: 0,
                calls: 0,
            }
        }
    }
}

impl WindowArgs<'_> {
    /// For the scripts that empty the window (open, trial): its two keys
    /// after theirs, and its bucket count, its numbers' TTL and its calls
    /// after their arguments.
    fn declare_for_clearing(&self, circuit: &Circuit, invocation: &mut ScriptInvocation<'_>) {
        let [first, second] = &self.keys;
        invocation
            .key(&**first)
            .key(&**second)
            .arg(self.buckets)
            .arg(numbers_ttl_ms(circuit, self.bucket_ms))
            .arg(self.calls);
    }
}

/// How long a sliding window's bucket numbers live after a change: the
/// window and one bucket.
fn numbers_ttl_ms(circuit: &Circuit, bucket_ms: u64) -> u64 {
    circuit
        .timing()
        .failure_timeout_ms
        .saturating_add(bucket_ms)
}

fn marker_after_lease_ms(circuit: &Circuit) -> u64 {
    ttl_ms(circuit.timing().marker_ttl_after_lease())
}

/// The backoff's arguments of the scripts that open: multiplier
/// (thousandths; 0: no backoff, and the count of openings is left alone),
/// max_ms, jitter (thousandths), and how long the count of openings
/// outlives an opening's open time.
fn backoff_args(circuit: &Circuit) -> [u64; 4] {
    let timing = circuit.timing();
    match timing.backoff {
        None => [0; 4],
        Some(backoff) => [
            u64::from(backoff.multiplier_permille),
            u64::from(backoff.max_ms),
            u64::from(backoff.jitter_permille),
            ttl_ms(Duration::from_millis(
                timing.openings_ttl_after_opening_ms(0),
            )),
        ],
    }
}

pub(crate) fn admit(circuit: &Circuit) -> ScriptInvocation<'static> {
    let keys = circuit.keys();
    let timing = circuit.timing();
    let mut invocation = scripts().admit.prepare_invoke();
    invocation
        .key(keys.open())
        .key(keys.trials())
        .key(keys.mode())
        .key(keys.trial_lease())
        .key(keys.trials_passed())
        .arg(timing.half_open_max_calls)
        .arg(ttl_ms(timing.trial_lease()))
        .arg(marker_after_lease_ms(circuit));
    invocation
}

pub(crate) fn record(circuit: &Circuit, outcome: Outcome) -> ScriptInvocation<'static> {
    let batch = Counts::new(
        u64::from(outcome == Outcome::Failure),
        u64::from(circuit.counts_requests()),
    );
    count_batch(circuit, batch, false)
}

/// The sync step's script: the record script over the parts of a batch
/// not counted yet, reporting the window's counts and the state.
pub(crate) fn sync(circuit: &Circuit, batch: &SyncBatch<'_>) -> ScriptInvocation<'static> {
    let (keys, args) = record_call(circuit, Counts::default(), true, Some(batch));
    let mut invocation = scripts().record.prepare_invoke();
    for key in keys {
        invocation.key(key);
    }
    for arg in args {
        invocation.arg(arg);
    }
    invocation
}

/// The same as a command (`EVALSHA`), for a pipeline of several breakers'
/// syncs.
pub(crate) fn sync_cmd(circuit: &Circuit, batch: &SyncBatch<'_>) -> redis::Cmd {
    let (keys, args) = record_call(circuit, Counts::default(), true, Some(batch));
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(scripts().record.get_hash())
        .arg(keys.len())
        .arg(keys)
        .arg(args);
    cmd
}

/// Several breakers' syncs in one pipeline; every reply is kept, errors
/// too.
pub(crate) fn sync_pipeline(items: &[SyncItem<'_>]) -> redis::Pipeline {
    let mut pipeline = redis::pipe();
    pipeline.ignore_errors();
    for item in items {
        pipeline.add_command(sync_cmd(item.circuit, &item.batch));
    }
    pipeline
}

/// One reply of a sync pipeline.
pub(crate) enum Piped {
    /// The script's reply.
    Reply(Vec<i64>),
    /// The server lost the script: run this sync on its own, which loads it.
    NoScript,
    /// Anything else went wrong.
    Failed(StorageError),
}

pub(crate) fn piped(value: redis::Value) -> Piped {
    let value = match value.extract_error() {
        Ok(value) => value,
        Err(error)
            if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
        {
            return Piped::NoScript
        }
        Err(error) => return Piped::Failed(crate::error::from_redis(error)),
    };
    match <Vec<i64> as redis::FromRedisValue>::from_redis_value(value) {
        Ok(reply) => Piped::Reply(reply),
        Err(error) => Piped::Failed(StorageError::new(
            StorageErrorKind::Other,
            format!("unexpected reply from the record script: {error}"),
        )),
    }
}

/// `error` for each of `n` items (a pipeline that failed as a whole).
pub(crate) fn each_failed(error: &StorageError, n: usize) -> Vec<Result<Snapshot, StorageError>> {
    (0..n)
        .map(|_| Err(StorageError::new(error.kind(), error.to_string())))
        .collect()
}

fn count_batch(circuit: &Circuit, batch: Counts, report: bool) -> ScriptInvocation<'static> {
    let (keys, args) = record_call(circuit, batch, report, None);
    let mut invocation = scripts().record.prepare_invoke();
    for key in keys {
        invocation.key(key);
    }
    for arg in args {
        invocation.arg(arg);
    }
    invocation
}

/// The record script's keys and arguments: for one call's outcome (`batch`)
/// or for a sync's parts.
fn record_call<'a>(
    circuit: &'a Circuit,
    batch: Counts,
    report: bool,
    sync: Option<&SyncBatch<'a>>,
) -> (Vec<Cow<'a, str>>, Vec<u64>) {
    let keys = circuit.keys();
    let WindowArgs {
        keys: [newest, current],
        buckets,
        bucket_ms,
        calls,
    } = window_keys(circuit);
    let timing = circuit.timing();
    let counts_requests = circuit.counts_requests();
    let requests = |n: u64| if counts_requests { n } else { 0 };
    let capped = |n: u64| n.min(i64::MAX as u64);
    let mut key_list = vec![
        Cow::Borrowed(keys.open()),
        Cow::Borrowed(keys.trials()),
        Cow::Borrowed(keys.failures()),
        Cow::Borrowed(keys.requests()),
        Cow::Borrowed(keys.mode()),
        newest,
        current,
    ];
    let mut args = vec![
        capped(batch.failures),
        u64::from(flag(counts_requests)),
        u64::from(timing.half_open_max_calls),
        timing.failure_timeout_ms,
        capped(requests(batch.requests)),
        u64::from(flag(report)),
        buckets,
        bucket_ms,
        calls,
    ];
    if let Some(sync) = sync {
        key_list.push(Cow::Borrowed(sync.writer_key()));
        args.push(sync.parts().len() as u64);
        for (number, counts) in sync.parts() {
            args.extend([
                *number,
                capped(counts.failures),
                capped(requests(counts.requests)),
            ]);
        }
    }
    (key_list, args)
}

pub(crate) fn trial(
    circuit: &Circuit,
    outcome: Outcome,
    episode: u32,
) -> ScriptInvocation<'static> {
    let keys = circuit.keys();
    let timing = circuit.timing();
    let mut invocation = scripts().trial.prepare_invoke();
    invocation
        .key(keys.open())
        .key(keys.trials())
        .key(keys.trials_passed())
        .key(keys.failures())
        .key(keys.requests())
        .key(keys.trial_lease())
        .key(keys.openings())
        .arg(flag(outcome == Outcome::Failure))
        .arg(timing.half_open_successes)
        .arg(timing.circuit_timeout_ms)
        .arg(marker_after_opening_ms(circuit))
        .arg(episode)
        .arg(marker_after_lease_ms(circuit))
        .arg(crate::watch::CHANNEL)
        .arg(&**circuit.name())
        .arg(&backoff_args(circuit)[..])
        .arg(ttl_ms(timing.failure_timeout()));
    window_keys(circuit).declare_for_clearing(circuit, &mut invocation);
    invocation
}

pub(crate) fn release(circuit: &Circuit, episode: u32) -> ScriptInvocation<'static> {
    let mut invocation = scripts().release.prepare_invoke();
    invocation
        .key(circuit.keys().trials())
        .key(circuit.keys().trial_lease())
        .arg(episode);
    invocation
}

/// Opens the circuit; with `only_if_closed`, only if it is still closed
/// (the trip after a rule said open).
pub(crate) fn open(circuit: &Circuit, only_if_closed: bool) -> ScriptInvocation<'static> {
    let keys = circuit.keys();
    let mut invocation = scripts().open.prepare_invoke();
    invocation
        .key(keys.open())
        .key(keys.trials())
        .key(keys.trials_passed())
        .key(keys.failures())
        .key(keys.requests())
        .key(keys.mode())
        .key(keys.trial_lease())
        .key(keys.openings())
        .arg(circuit.timing().circuit_timeout_ms)
        .arg(marker_after_opening_ms(circuit))
        .arg(flag(only_if_closed))
        .arg(crate::watch::CHANNEL)
        .arg(&**circuit.name())
        .arg(&backoff_args(circuit)[..]);
    window_keys(circuit).declare_for_clearing(circuit, &mut invocation);
    invocation
}

/// How long a circuit's directory entry outlives its last registration
/// (a breaker in use writes it again every window): a day, as a half-open
/// state is kept.
const REGISTRATION_TTL: Duration = lasier_core::state::HALF_OPEN_RETENTION;

/// Writes `circuit`'s entry in the directory of circuits.
pub(crate) fn register(
    circuit: &Circuit,
    entry: &lasier_core::directory::Registration,
) -> ScriptInvocation<'static> {
    let mut invocation = scripts().register.prepare_invoke();
    invocation
        .key(lasier_core::directory::key(circuit.name()))
        .arg(ttl_ms(REGISTRATION_TTL));
    for (field, value) in &entry.fields {
        invocation.arg(*field).arg(value.as_str());
    }
    invocation
}

pub(crate) fn state(circuit: &Circuit) -> ScriptInvocation<'static> {
    let keys = circuit.keys();
    let mut invocation = scripts().state.prepare_invoke();
    invocation
        .key(keys.open())
        .key(keys.trials())
        .key(keys.mode())
        .arg(circuit.timing().half_open_max_calls);
    invocation
}

pub(crate) fn counts(circuit: &Circuit) -> ScriptInvocation<'static> {
    let keys = circuit.keys();
    let WindowArgs {
        keys: [newest, second],
        buckets,
        calls,
        ..
    } = window_keys(circuit);
    let mut invocation = scripts().counts.prepare_invoke();
    invocation
        .key(keys.failures())
        .key(keys.requests())
        .key(&*newest)
        .key(&*second)
        .arg(flag(circuit.counts_requests()))
        .arg(buckets)
        .arg(calls);
    invocation
}

/// A reply that our scripts cannot have sent.
fn unexpected(script: &str, reply: &[i64]) -> StorageError {
    StorageError::new(
        StorageErrorKind::Other,
        format!("unexpected reply {reply:?} from the {script} script"),
    )
}

fn count(key: &str, value: i64) -> Result<u64, StorageError> {
    u64::try_from(value)
        .map_err(|_| StorageError::corrupt(key, format!("negative counter {value}")))
}

pub(crate) fn admitted(reply: &[i64]) -> Result<(Admission, Option<Transition>), StorageError> {
    match *reply {
        [0, pttl, _, _] => {
            let retry_after = u64::try_from(pttl)
                .ok()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis);
            Ok((Admission::Rejected { retry_after }, None))
        }
        [1, _, _, _] => Ok((Admission::Admitted(Permit::Normal), None)),
        [2, _, episode, first] => {
            let episode = u32::try_from(episode).map_err(|_| unexpected("admit", reply))?;
            let transition = (first == 1).then_some(Transition {
                from: State::Open,
                to: State::HalfOpen,
            });
            Ok((Admission::Admitted(Permit::Trial { episode }), transition))
        }
        [3, _, _, _] => Ok((Admission::Rejected { retry_after: None }, None)),
        _ => Err(unexpected("admit", reply)),
    }
}

/// A permit of a kind these scripts do not know (one a later lasier-core
/// adds): an error, never a guess.
pub(crate) fn unknown_permit(permit: Permit) -> StorageError {
    StorageError::new(
        StorageErrorKind::Other,
        format!("a permit these scripts do not know: {permit:?}"),
    )
}

/// Whether a normal call's outcome needs no step at all: a success under
/// a rule that counts no requests.
pub(crate) fn records_nothing(circuit: &Circuit, outcome: Outcome) -> bool {
    outcome == Outcome::Success && !circuit.counts_requests()
}

/// What the record script did with a batch of outcomes.
pub(crate) enum Counted {
    /// Counted: the window's counts after it, and whether the circuit is
    /// disabled by hand (then nothing trips).
    Closed { counts: Counts, disabled: bool },
    /// Not counted: the circuit is in `state` (open, half-open or forced
    /// open), with `open_for` left if open.
    Not {
        state: State,
        open_for: Option<Duration>,
    },
}

pub(crate) fn counted(circuit: &Circuit, reply: &[i64]) -> Result<Counted, StorageError> {
    let keys = circuit.keys();
    match *reply {
        [counted @ (1 | 2), failures, requests, 0, _] => Ok(Counted::Closed {
            counts: Counts::new(
                count(keys.failures(), failures)?,
                count(keys.requests(), requests)?,
            ),
            disabled: counted == 2,
        }),
        [0, _, _, state, open_ms] => {
            let state = match state {
                1 => State::ForcedOpen,
                2 => State::Open,
                3 => State::HalfOpen,
                _ => return Err(unexpected("record", reply)),
            };
            let open_for = u64::try_from(open_ms)
                .ok()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis);
            Ok(Counted::Not { state, open_for })
        }
        _ => Err(unexpected("record", reply)),
    }
}

/// Whether a batch of outcomes (`failures` of them failures) trips the
/// circuit: the rule is asked on the counts the record script returned,
/// after counted failures.
pub(crate) fn trips(circuit: &Circuit, counted: &Counted, failures: u64, rule: &dyn Rule) -> bool {
    let minimum = match circuit.window() {
        Window::Count { minimum, .. } => u64::from(minimum),
        _ => 0,
    };
    match counted {
        Counted::Closed {
            counts,
            disabled: false,
        } => failures > 0 && counts.requests >= minimum && rule.should_open(*counts),
        _ => false,
    }
}

/// The snapshot of a sync whose batch was `counted` (and, if it tripped,
/// the opening script's reply: the open time if it `opened` it).
pub(crate) fn synced(circuit: &Circuit, counted: Counted, opened: Option<i64>) -> Snapshot {
    match (counted, opened) {
        (_, Some(opened)) => Snapshot::new(State::Open, Counts::default())
            .with_open_for(Some(open_time(opened).unwrap_or_else(|| {
                Duration::from_millis(circuit.timing().shortest_open_time_ms())
            })))
            .with_transition(tripped(opened)),
        (Counted::Closed { counts, disabled }, None) => Snapshot::new(
            if disabled {
                State::Disabled
            } else {
                State::Closed
            },
            counts,
        ),
        (Counted::Not { state, open_for }, None) => {
            Snapshot::new(state, Counts::default()).with_open_for(open_for)
        }
    }
}

/// The open time the opening script replied, if it opened the circuit.
/// (Another caller opened it first, when it replied 0: the time left is
/// then unknown here, and the shortest open time is the snapshot's guess,
/// never past the store's deadline.)
pub(crate) fn open_time(opened: i64) -> Option<Duration> {
    u64::try_from(opened)
        .ok()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

/// The transition of a trip that `opened` (the open script replied an
/// open time; 0 if it found the circuit no longer closed).
pub(crate) fn tripped(opened: i64) -> Option<Transition> {
    (opened > 0).then_some(Transition {
        from: State::Closed,
        to: State::Open,
    })
}

pub(crate) fn trial_ended(reply: i64) -> Result<Option<Transition>, StorageError> {
    match reply {
        0 => Ok(None),
        1 => Ok(Some(Transition {
            from: State::HalfOpen,
            to: State::Open,
        })),
        2 => Ok(Some(Transition {
            from: State::HalfOpen,
            to: State::Closed,
        })),
        _ => Err(unexpected("trial", &[reply])),
    }
}

pub(crate) fn state_of(reply: i64) -> Result<State, StorageError> {
    match reply {
        0 => Ok(State::Closed),
        1 => Ok(State::Open),
        2 => Ok(State::HalfOpen),
        3 => Ok(State::ForcedOpen),
        4 => Ok(State::Disabled),
        _ => Err(unexpected("state", &[reply])),
    }
}

pub(crate) fn counts_of(circuit: &Circuit, reply: &[i64]) -> Result<Counts, StorageError> {
    match *reply {
        [failures, requests] => {
            let keys = circuit.keys();
            Ok(Counts::new(
                count(keys.failures(), failures)?,
                count(keys.requests(), requests)?,
            ))
        }
        _ => Err(unexpected("counts", reply)),
    }
}

/// The value at `key` from a `GET` reply: `None` if missing, corrupt unless
/// a decimal integer.
pub(crate) fn integer(key: &str, reply: Option<Vec<u8>>) -> Result<Option<i64>, StorageError> {
    let Some(bytes) = reply else { return Ok(None) };
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| {
            StorageError::corrupt(
                key,
                format!("{:?} is not an integer", String::from_utf8_lossy(&bytes)),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_and_stay_in_range() {
        assert_eq!(ttl_ms(Duration::ZERO), 1);
        assert_eq!(ttl_ms(Duration::from_micros(1500)), 2);
        assert_eq!(ttl_ms(Duration::from_secs(2)), 2000);
        assert_eq!(ttl_ms(Duration::MAX), 1 << 52);
    }

    #[test]
    fn replies_that_scripts_cannot_send_are_errors_not_panics() {
        assert!(admitted(&[]).is_err());
        assert!(admitted(&[9, 9]).is_err());
        assert!(trial_ended(7).is_err());
        assert!(state_of(-1).is_err());
        let garbage = integer("k", Some(b"x1".to_vec())).unwrap_err();
        assert_eq!(garbage.kind(), StorageErrorKind::Corrupt);
        assert_eq!(integer("k", Some(b"-3".to_vec())).unwrap(), Some(-3));
        assert_eq!(integer("k", None).unwrap(), None);
    }

    #[cfg(feature = "cluster")]
    #[test]
    fn every_script_is_found_by_its_hash() {
        for source in SOURCES {
            let hash = Script::new(source).get_hash().to_owned();
            assert_eq!(source_of(hash.as_bytes()), Some(source));
        }
        assert_eq!(source_of(b"0000"), None);
    }

    #[test]
    fn rejection_carries_the_time_left_when_there_is_one() {
        let (admission, _) = admitted(&[0, 1500, 0, 0]).unwrap();
        assert_eq!(
            admission,
            Admission::Rejected {
                retry_after: Some(Duration::from_millis(1500))
            }
        );
        let (admission, _) = admitted(&[0, -1, 0, 0]).unwrap();
        assert_eq!(admission, Admission::Rejected { retry_after: None });
    }

    #[test]
    fn the_open_script_replies_its_open_time_or_0() {
        assert_eq!(open_time(2_000), Some(Duration::from_millis(2_000)));
        assert_eq!(open_time(0), None);
        assert_eq!(open_time(-1), None);
        assert!(tripped(1).is_some());
        assert!(tripped(86_400_000).is_some());
        assert!(tripped(0).is_none());
    }

    #[test]
    fn a_trial_carries_its_episode_and_a_bad_one_is_an_error() {
        let (admission, transition) = admitted(&[2, 1, 4_000_000_000, 1]).unwrap();
        assert_eq!(
            admission,
            Admission::Admitted(Permit::Trial {
                episode: 4_000_000_000
            })
        );
        assert!(transition.is_some());
        // only the first trial of a half-open period changes the state
        let (_, transition) = admitted(&[2, 1, 7, 0]).unwrap();
        assert!(transition.is_none());
        assert!(admitted(&[2, 1, -1, 0]).is_err());
        assert!(admitted(&[2, 1, 1 << 40, 0]).is_err());
        assert!(admitted(&[1, 0]).is_err());
        assert!(admitted(&[2, 1, 7]).is_err());
    }
}
