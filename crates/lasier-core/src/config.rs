//! Configuration, validated once when a breaker is built.
//!
//! Both facades' builders fill a [`Config`]; [`Config::validate`] turns it
//! into the [`Circuit`] handed to storages and the rule, or a [`ConfigError`].

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use lasier_rules::{MaxFailuresRule, PercentageFailuresRule, Rule, RuleError};

use crate::events::Listener;
use crate::keys::CircuitKeys;
use crate::name::CircuitName;
use crate::state::{BackoffTiming, Timing, MAX_OPEN_BACKOFF};

/// The default `failure_timeout` and `circuit_timeout`: one minute, as in the
/// Python original.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The default number of trial calls while half-open.
pub const DEFAULT_HALF_OPEN_MAX_CALLS: u32 = 1;

/// The longest `failure_timeout` or `circuit_timeout` accepted: 100 years.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The default interval between two probes of a failed store, while in
/// [`StorageFailurePolicy::LocalFallback`].
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// What a breaker does when its store fails (down, slow past its timeout,
/// or holding garbage). Whatever the policy, the caller's own error is
/// never replaced by a storage error, and a storage error after the call
/// never turns its success into a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageFailurePolicy {
    /// Let the call through, uncounted: availability first, no protection
    /// while the store is down.
    FailOpen,
    /// Reject the call with `Error::Storage`: nothing passes unguarded.
    FailClosed,
    /// The default: keep protecting calls with an in-process circuit of the
    /// same rule and timeouts while the store does not answer, asking the
    /// store again at most once per `probe_interval`, and go back to the
    /// shared state when it answers.
    LocalFallback {
        /// How often a breaker in fallback probes the store.
        probe_interval: Duration,
    },
}

impl Default for StorageFailurePolicy {
    fn default() -> Self {
        Self::LocalFallback {
            probe_interval: DEFAULT_PROBE_INTERVAL,
        }
    }
}

/// Open-time backoff: each consecutive opening of a circuit lasts longer
/// than the one before, up to a maximum, optionally with jitter (compare
/// resilience4j's `IntervalFunction`, Polly's `BreakDurationGenerator`,
/// Envoy's `base_ejection_time` x ejections). Set it with the builders'
/// `.open_backoff(..)`; without it, every opening lasts `circuit_timeout`.
///
/// The first opening lasts `circuit_timeout`; each next one the time before
/// times the multiplier, at most [`max`](Self::max) (default: ten times
/// `circuit_timeout`, at most [`MAX_OPEN_BACKOFF`]); then moved by up to
/// [`jitter`](Self::jitter) of itself either way, at random (default 0).
/// Openings are consecutive while the circuit does not stay closed for a
/// whole window (`failure_timeout`) in between: a trip within the window
/// after trials closed the circuit goes on with the sequence. On a shared
/// store the count is fleet-wide: it lives in the store
/// (`lasier:openings:<name>`), so whichever process opens the circuit, the
/// fleet's sequence goes on.
///
/// Jitter spreads the deadlines of circuits opened at the same time in
/// different processes, or of different circuits; a shared circuit opens
/// once for the whole fleet anyway, so there it only moves that one
/// deadline.
///
/// ```
/// use std::time::Duration;
/// use lasier_core::OpenBackoff;
///
/// // 1 s, 2 s, 4 s, 8 s, 16 s, 30 s, 30 s, ... each within 10 % either way
/// let backoff = OpenBackoff::exponential(2.0)
///     .max(Duration::from_secs(30))
///     .jitter(0.1);
/// # let _ = backoff;
/// ```
///
/// Checked by `build()`: a multiplier from 1 to 100 (finite), a maximum
/// from `circuit_timeout` to [`MAX_OPEN_BACKOFF`], a jitter from 0 to
/// below 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenBackoff {
    multiplier: f64,
    max: Option<Duration>,
    jitter: f64,
}

impl OpenBackoff {
    /// Each opening lasts `multiplier` times the one before (from 1.0, the
    /// same time each opening, to 100.0; kept to thousandths).
    pub const fn exponential(multiplier: f64) -> Self {
        Self {
            multiplier,
            max: None,
            jitter: 0.0,
        }
    }

    /// The longest an opening lasts, jitter included (default: ten times
    /// `circuit_timeout`, at most [`MAX_OPEN_BACKOFF`]). From
    /// `circuit_timeout` to [`MAX_OPEN_BACKOFF`].
    #[must_use]
    pub const fn max(mut self, max: Duration) -> Self {
        self.max = Some(max);
        self
    }

    /// How far each open time is moved at random, either way, as a
    /// fraction of it: from 0 (the default: none) to below 1 (kept to
    /// thousandths).
    #[must_use]
    pub const fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }

    /// The integers the state machine uses, for a circuit timeout of
    /// `circuit_timeout_ms`; or what is wrong, said so that it can be
    /// fixed.
    fn timing(&self, circuit_timeout_ms: u64) -> Result<BackoffTiming, ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        let m = self.multiplier;
        if !m.is_finite() || !(1.0..=100.0).contains(&m) {
            return invalid(alloc::format!(
                "open_backoff multiplier must be from 1.0 to 100.0, got {m}: \
                 use OpenBackoff::exponential(2.0) to double each opening"
            ));
        }
        let j = self.jitter;
        if !j.is_finite() || !(0.0..1.0).contains(&j) {
            return invalid(alloc::format!(
                "open_backoff jitter must be a fraction from 0.0 to below 1.0, got {j}: \
                 .jitter(0.1) moves each open time by up to 10 % either way"
            ));
        }
        let longest = crate::clock::ceil_millis(MAX_OPEN_BACKOFF);
        if circuit_timeout_ms > longest {
            return invalid(alloc::format!(
                "open_backoff needs a circuit_timeout of at most {} hours, got {circuit_timeout_ms} ms",
                longest / 3_600_000
            ));
        }
        let max_ms = match self.max {
            None => circuit_timeout_ms.saturating_mul(10).min(longest),
            Some(max) if max > MAX_OPEN_BACKOFF => {
                return invalid(alloc::format!(
                    "open_backoff max must be at most {} hours, got {max:?}",
                    longest / 3_600_000
                ))
            }
            Some(max) => crate::clock::ceil_millis(max),
        };
        if max_ms < circuit_timeout_ms {
            return invalid(alloc::format!(
                "open_backoff max ({max_ms} ms) must not be shorter than circuit_timeout \
                 ({circuit_timeout_ms} ms), the first open time: raise .max(..) or lower \
                 circuit_timeout"
            ));
        }
        // (within the ranges checked above: no truncation)
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let (multiplier_permille, jitter_permille) =
            // (+ 0.5 then truncation: rounding, without std's `round`)
            ((m * 1000.0 + 0.5) as u32, (j * 1000.0) as u16);
        Ok(BackoffTiming {
            multiplier_permille,
            // (at most a day: it fits)
            max_ms: u32::try_from(max_ms).unwrap_or(u32::MAX),
            jitter_permille: jitter_permille.min(999),
        })
    }
}

/// The default [`Config::max_staleness`]: one second.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(1);

/// An invalid breaker configuration, from `build()`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The name is empty; it is the key of the circuit in the store.
    EmptyName,
    /// No rule was given.
    MissingRule,
    /// The rule's parameters are invalid.
    Rule(RuleError),
    /// A timeout is zero. (Other timeouts are rounded up to whole
    /// milliseconds, the store's resolution.)
    ZeroTimeout {
        /// Which setting: `"failure_timeout"`, `"circuit_timeout"`,
        /// `"trial_lease"`, `"probe_interval"`, `"sync_interval"` or
        /// `"slow_call_duration"`.
        setting: &'static str,
    },
    /// A timeout is longer than [`MAX_TIMEOUT`].
    TimeoutTooLong {
        /// Which setting.
        setting: &'static str,
    },
    /// `half_open_max_calls` is over 65 535.
    TooManyHalfOpenCalls(u32),
    /// The request key is empty, or is one of the circuit's other keys.
    InvalidRequestKey(String),
    /// Something a storage or facade could not accept, said in words.
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyName => f.write_str("the breaker name must not be empty"),
            Self::MissingRule => f.write_str(
                "no rule: call .max_failures(n), .percentage_failures(p, min) or .rule(..) on the builder",
            ),
            Self::Rule(e) => write!(f, "invalid rule: {e}"),
            Self::ZeroTimeout { setting } => {
                write!(f, "{setting} must not be zero")
            }
            Self::TimeoutTooLong { setting } => {
                write!(f, "{setting} must be at most {} days", MAX_TIMEOUT.as_secs() / 86_400)
            }
            Self::TooManyHalfOpenCalls(n) => {
                write!(f, "half_open_max_calls must be at most 65535, got {n}")
            }
            Self::InvalidRequestKey(key) => write!(
                f,
                "request key {key:?} must not be empty nor one of the circuit's other keys"
            ),
            Self::Invalid(message) => f.write_str(message),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ConfigError {}

impl From<RuleError> for ConfigError {
    fn from(e: RuleError) -> Self {
        Self::Rule(e)
    }
}

/// A breaker's settings before validation; the facades' builders wrap it.
#[derive(Clone)]
pub struct Config {
    name: String,
    rule: Option<Result<Arc<dyn Rule>, RuleError>>,
    failure_timeout: Duration,
    circuit_timeout: Duration,
    half_open_max_calls: u32,
    half_open_successes: Option<u32>,
    trial_lease: Option<Duration>,
    request_key: Option<String>,
    policy: StorageFailurePolicy,
    listeners: Vec<Arc<dyn Listener>>,
    max_staleness: Duration,
    sync_interval: Option<Duration>,
    slow_call_duration: Option<Duration>,
    /// `sliding_window`'s buckets, as given (checked by `validate`).
    sliding_buckets: Option<u32>,
    /// `count_window`'s calls and `minimum_calls`, as given.
    count_calls: Option<u32>,
    minimum_calls: Option<u32>,
    open_backoff: Option<OpenBackoff>,
}

/// How a circuit counts outcomes for its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Window {
    /// The Python original's window: the counters live for
    /// `failure_timeout` from their first increment, then start again from
    /// zero. Byte-compatible with Python `lasier` in a shared store.
    #[default]
    Fixed,
    /// `failure_timeout` cut into `buckets` buckets: an outcome counts
    /// from the moment it is recorded until its bucket ends, between
    /// `failure_timeout` less one bucket and `failure_timeout` later.
    /// A burst of failures that straddles the end of a fixed window is
    /// counted whole. See [`Config::sliding_window`].
    Sliding {
        /// How many buckets the window is cut into (2 to
        /// [`MAX_BUCKETS`]).
        buckets: u16,
    },
    /// The last `calls` outcomes of calls, whenever they ended (as
    /// resilience4j's COUNT_BASED window): no clock is read for it. The
    /// rule sees the failures among them and, as requests, how many there
    /// are (at most `calls`). See [`Config::count_window`].
    Count {
        /// How many outcomes the window holds (1 to [`MAX_CALLS`]).
        calls: u32,
        /// The rule is not asked until the window holds this many (1 to
        /// `calls`; see [`Config::minimum_calls`]).
        minimum: u32,
    },
}

/// The most outcomes a count window may hold.
pub const MAX_CALLS: u32 = 100_000;

/// The most buckets a sliding window may have: a step reads each of them.
pub const MAX_BUCKETS: u16 = 1000;

impl Window {
    /// How long one bucket of a sliding window is current, for a window of
    /// `failure_timeout_ms` (rounded up, so that the buckets cover the
    /// whole window); `None` for other windows.
    pub fn bucket_ms(&self, failure_timeout_ms: u64) -> Option<u64> {
        match *self {
            Window::Fixed | Window::Count { .. } => None,
            Window::Sliding { buckets } => {
                Some(failure_timeout_ms.div_ceil(u64::from(buckets.max(1))))
            }
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Window::Fixed => f.write_str("fixed"),
            Window::Sliding { buckets } => write!(f, "sliding({buckets})"),
            Window::Count { calls, .. } => write!(f, "count({calls})"),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("name", &self.name)
            .field("rule", &self.rule)
            .field("failure_timeout", &self.failure_timeout)
            .field("circuit_timeout", &self.circuit_timeout)
            .field("half_open_max_calls", &self.half_open_max_calls)
            .field("half_open_successes", &self.half_open_successes)
            .field("trial_lease", &self.trial_lease)
            .field("request_key", &self.request_key)
            .field("policy", &self.policy)
            .field("listeners", &self.listeners.len())
            .field("max_staleness", &self.max_staleness)
            .field("sync_interval", &self.sync_interval)
            .field("slow_call_duration", &self.slow_call_duration)
            .field("sliding_buckets", &self.sliding_buckets)
            .field("count_calls", &self.count_calls)
            .field("minimum_calls", &self.minimum_calls)
            .field("open_backoff", &self.open_backoff)
            .finish()
    }
}

impl Config {
    /// The defaults, for the breaker `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            rule: None,
            failure_timeout: DEFAULT_TIMEOUT,
            circuit_timeout: DEFAULT_TIMEOUT,
            half_open_max_calls: DEFAULT_HALF_OPEN_MAX_CALLS,
            half_open_successes: None,
            trial_lease: None,
            request_key: None,
            policy: StorageFailurePolicy::default(),
            listeners: Vec::new(),
            max_staleness: DEFAULT_MAX_STALENESS,
            sync_interval: None,
            slow_call_duration: None,
            sliding_buckets: None,
            count_calls: None,
            minimum_calls: None,
            open_backoff: None,
        }
    }

    /// Counts outcomes in a sliding window: `failure_timeout` cut into
    /// `buckets` buckets (Polly uses 10; one per second is resilience4j's
    /// time-based window). Each bucket is current for `failure_timeout /
    /// buckets` from the first outcome counted in it, and counts for
    /// `failure_timeout` from then on; the rule sees the sum of the live
    /// buckets. From 2 to [`MAX_BUCKETS`], each at least a millisecond.
    ///
    /// In a shared store the buckets live under `lasier:window_*:<name>`
    /// keys, which Python `lasier` does not read: a Python service and a
    /// Rust one share a circuit only with the default fixed window.
    pub fn sliding_window(&mut self, buckets: u32) -> &mut Self {
        self.sliding_buckets = Some(buckets);
        self
    }

    /// Counts the last `calls` outcomes, instead of a time window (as
    /// resilience4j's COUNT_BASED window, or recloser's ring): an outcome
    /// leaves the window when `calls` newer ones have come, however long
    /// that takes, and no clock is read for it. The rule sees the failures
    /// among them and, as requests, how many there are. Successes are
    /// counted under every rule (they push failures out). From 1 to
    /// [`MAX_CALLS`]; not with `sliding_window`.
    ///
    /// In a shared store the window lives under `lasier:ring_*:<name>`
    /// keys, which Python `lasier` does not read, and is forgotten after a
    /// day without calls.
    pub fn count_window(&mut self, calls: u32) -> &mut Self {
        self.count_calls = Some(calls);
        self
    }

    /// With `count_window`: the rule is not asked until the window holds
    /// at least `calls` outcomes (resilience4j's `minimumNumberOfCalls`),
    /// so that one early failure cannot open a fresh circuit. From 1 (the
    /// default) to the window's size.
    pub fn minimum_calls(&mut self, calls: u32) -> &mut Self {
        self.minimum_calls = Some(calls);
        self
    }

    /// Open-time backoff: each consecutive opening lasts longer (see
    /// [`OpenBackoff`]). Off by default: every opening lasts
    /// `circuit_timeout`, and no store keeps a count of openings.
    pub fn open_backoff(&mut self, backoff: OpenBackoff) -> &mut Self {
        self.open_backoff = Some(backoff);
        self
    }

    /// A call that succeeds but takes longer than `duration` (from its
    /// admission to its outcome, on the breaker's clock) counts as a
    /// failure, as a timeout does in Hystrix. Off by default: then no
    /// clock is read for it. At most [`MAX_TIMEOUT`], not zero.
    pub fn slow_call_duration(&mut self, duration: Duration) -> &mut Self {
        self.slow_call_duration = Some(duration);
        self
    }

    /// The slow-call duration, if set.
    pub fn slow_call_limit(&self) -> Option<Duration> {
        self.slow_call_duration
    }

    /// Sync mode, for a breaker on a shared store: admission on a closed
    /// circuit from an in-process mirror of the shared state, and outcomes
    /// added to the store in batches, about once per `interval` (and at
    /// once when this process's own failures bring the fleet's counts to
    /// the rule). Off by default: every call then asks the store. An
    /// in-process storage changes nothing with it: its circuits are local
    /// already. It must not be longer than `failure_timeout`.
    pub fn sync_interval(&mut self, interval: Duration) -> &mut Self {
        self.sync_interval = Some(interval);
        self
    }

    /// The sync interval, if sync mode is on.
    pub fn sync_period(&self) -> Option<Duration> {
        self.sync_interval
    }

    /// How long a breaker on a shared store trusts an open state it read
    /// before asking the store again (default one second). While the
    /// circuit is open this costs at most one round trip per interval, and
    /// it bounds how long a `force_close()` or `disable()` made by another
    /// process takes to reach this one. Zero: always ask.
    pub fn max_staleness(&mut self, staleness: Duration) -> &mut Self {
        self.max_staleness = staleness;
        self
    }

    /// See [`Config::max_staleness`](Self::max_staleness).
    pub fn staleness(&self) -> Duration {
        self.max_staleness
    }

    /// What to do when the store fails; see [`StorageFailurePolicy`].
    pub fn on_storage_failure(&mut self, policy: StorageFailurePolicy) -> &mut Self {
        self.policy = policy;
        self
    }

    /// Adds a listener for the breaker's events.
    pub fn listener(&mut self, listener: Arc<dyn Listener>) -> &mut Self {
        self.listeners.push(listener);
        self
    }

    /// The store-failure policy.
    pub fn storage_failure_policy(&self) -> StorageFailurePolicy {
        self.policy
    }

    /// The listeners, in the order they were added.
    pub fn listeners(&self) -> &[Arc<dyn Listener>] {
        &self.listeners
    }

    /// Sets the rule.
    pub fn rule(&mut self, rule: impl Rule + 'static) -> &mut Self {
        self.rule = Some(Ok(Arc::new(rule)));
        self
    }

    /// Sets the rule to `MaxFailuresRule::new(max_failures)`; an invalid
    /// value is reported by [`Config::validate`].
    pub fn max_failures(&mut self, max_failures: u64) -> &mut Self {
        self.rule = Some(MaxFailuresRule::new(max_failures).map(|r| Arc::new(r) as Arc<dyn Rule>));
        self
    }

    /// Sets the rule to `PercentageFailuresRule::new(..)`; an invalid value is
    /// reported by [`Config::validate`].
    pub fn percentage_failures(
        &mut self,
        max_failures_percentage: u8,
        min_accepted_requests: u64,
    ) -> &mut Self {
        self.rule = Some(
            PercentageFailuresRule::new(max_failures_percentage, min_accepted_requests)
                .map(|r| Arc::new(r) as Arc<dyn Rule>),
        );
        self
    }

    /// How long the counters of a window live after their first increment.
    pub fn failure_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.failure_timeout = timeout;
        self
    }

    /// How long the circuit stays open before trial calls may pass.
    pub fn circuit_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.circuit_timeout = timeout;
        self
    }

    /// How many trial calls pass while half-open (0: none; the circuit closes
    /// when the open time is over, as in the Python original).
    pub fn half_open_max_calls(&mut self, calls: u32) -> &mut Self {
        self.half_open_max_calls = calls;
        self
    }

    /// How many trials must pass to close the circuit (default: all
    /// `half_open_max_calls` of them). From 1 to `half_open_max_calls`; a
    /// failed trial reopens the circuit whatever passed before it.
    pub fn half_open_successes(&mut self, successes: u32) -> &mut Self {
        self.half_open_successes = Some(successes);
        self
    }

    /// How long a half-open trial may run before its permit is taken as
    /// lost and handed on (default: the circuit timeout). A lease admits
    /// at most `half_open_max_calls` trials; the first call after it ends
    /// starts the next, and the trials still out under the old one decide
    /// nothing. Set it longer than the slowest trial you expect to
    /// report; a trial that runs past it (a hung dependency, a process
    /// killed mid-call) then costs one lease, never the bound.
    pub fn trial_lease(&mut self, lease: Duration) -> &mut Self {
        self.trial_lease = Some(lease);
        self
    }

    /// Where the request counter lives, instead of `<name>_requests`.
    pub fn request_key(&mut self, key: impl Into<String>) -> &mut Self {
        self.request_key = Some(key.into());
        self
    }

    /// Checks everything and resolves the keys.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid setting.
    pub fn validate(&self) -> Result<(Circuit, Arc<dyn Rule>), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::EmptyName);
        }
        let rule = match &self.rule {
            None => return Err(ConfigError::MissingRule),
            Some(Err(e)) => return Err(ConfigError::Rule(*e)),
            Some(Ok(rule)) => Arc::clone(rule),
        };
        let failure_timeout_ms = timeout_ms(self.failure_timeout, "failure_timeout")?;
        let circuit_timeout_ms = timeout_ms(self.circuit_timeout, "circuit_timeout")?;
        let trial_lease_ms = match self.trial_lease {
            Some(lease) => timeout_ms(lease, "trial_lease")?,
            None => circuit_timeout_ms,
        };
        if let StorageFailurePolicy::LocalFallback { probe_interval } = self.policy {
            timeout_ms(probe_interval, "probe_interval")?;
        }
        if let Some(interval) = self.sync_interval {
            if timeout_ms(interval, "sync_interval")? > failure_timeout_ms {
                return Err(ConfigError::Invalid(String::from(
                    "sync_interval must not be longer than failure_timeout: outcomes held \
                     longer than their window would be lost",
                )));
            }
        }
        if let Some(duration) = self.slow_call_duration {
            if duration.is_zero() {
                return Err(ConfigError::ZeroTimeout {
                    setting: "slow_call_duration",
                });
            }
            if duration > MAX_TIMEOUT {
                return Err(ConfigError::TimeoutTooLong {
                    setting: "slow_call_duration",
                });
            }
        }
        let window = match (self.sliding_buckets, self.count_calls, self.minimum_calls) {
            (Some(_), Some(_), _) => {
                return Err(ConfigError::Invalid(String::from(
                    "sliding_window and count_window are two windows: choose one",
                )))
            }
            (_, None, Some(_)) => {
                return Err(ConfigError::Invalid(String::from(
                    "minimum_calls applies to count_window only (a time window's rule has \
                     its own minimum, as percentage_failures' min_accepted_requests)",
                )))
            }
            (None, Some(calls), minimum) => {
                let minimum = minimum.unwrap_or(1);
                if !(1..=MAX_CALLS).contains(&calls) {
                    return Err(ConfigError::Invalid(alloc::format!(
                        "count_window takes from 1 to {MAX_CALLS} calls, got {calls}"
                    )));
                }
                if !(1..=calls).contains(&minimum) {
                    return Err(ConfigError::Invalid(alloc::format!(
                        "minimum_calls must be from 1 to the count window's {calls} calls, got \
                         {minimum}"
                    )));
                }
                Window::Count { calls, minimum }
            }
            (sliding, None, None) => match sliding {
                None => Window::Fixed,
                Some(buckets) => match u16::try_from(buckets) {
                    Ok(b)
                        if (2..=MAX_BUCKETS).contains(&b) && u64::from(b) <= failure_timeout_ms =>
                    {
                        Window::Sliding { buckets: b }
                    }
                    _ => {
                        return Err(ConfigError::Invalid(alloc::format!(
                        "sliding_window takes from 2 to {MAX_BUCKETS} buckets of at least 1 ms \
                         each (failure_timeout is {failure_timeout_ms} ms), got {buckets}"
                    )))
                    }
                },
            },
        };
        let backoff = match &self.open_backoff {
            Some(backoff) => Some(backoff.timing(circuit_timeout_ms)?),
            None => None,
        };
        let half_open_max_calls = u16::try_from(self.half_open_max_calls)
            .map_err(|_| ConfigError::TooManyHalfOpenCalls(self.half_open_max_calls))?;
        let half_open_successes = match self.half_open_successes {
            None => half_open_max_calls,
            Some(k) if k >= 1 && k <= u32::from(half_open_max_calls) => {
                // (at most half_open_max_calls, a u16)
                u16::try_from(k).unwrap_or(half_open_max_calls)
            }
            Some(k) => {
                return Err(ConfigError::Invalid(alloc::format!(
                    "half_open_successes must be from 1 to half_open_max_calls ({half_open_max_calls}), \
                     got {k}: a lease admits at most half_open_max_calls trials"
                )))
            }
        };
        let keys = CircuitKeys::new(&self.name, self.request_key.as_deref());
        let requests = keys.requests();
        if requests.is_empty() || keys.all().iter().filter(|k| **k == requests).count() > 1 {
            return Err(ConfigError::InvalidRequestKey(String::from(requests)));
        }
        let circuit = Circuit {
            name: CircuitName::from(self.name.as_str()),
            #[cfg(feature = "std")]
            request_key: self.request_key.as_deref().map(Arc::from),
            #[cfg(feature = "std")]
            keys: std::sync::OnceLock::new(),
            #[cfg(not(feature = "std"))]
            keys,
            timing: Timing {
                failure_timeout_ms,
                circuit_timeout_ms,
                half_open_max_calls,
                half_open_successes,
                trial_lease_ms,
                backoff,
            },
            // (a count window keeps every outcome: successes push failures
            // out of it)
            counts_requests: rule.counts_requests() || matches!(window, Window::Count { .. }),
            window,
        };
        Ok((circuit, rule))
    }
}

/// Whole milliseconds, rounded up, within bounds.
fn timeout_ms(timeout: Duration, setting: &'static str) -> Result<u64, ConfigError> {
    if timeout > MAX_TIMEOUT {
        return Err(ConfigError::TimeoutTooLong { setting });
    }
    match crate::clock::ceil_millis(timeout) {
        0 => Err(ConfigError::ZeroTimeout { setting }),
        ms => Ok(ms),
    }
}

/// One circuit, as a storage sees it: its name, keys and timing. Built once
/// per breaker; storages receive it on every step.
#[derive(Clone)]
pub struct Circuit {
    name: CircuitName,
    #[cfg(feature = "std")]
    request_key: Option<Arc<str>>,
    /// Made on first use (with `std`): a circuit in this process never
    /// needs them, and a registry may hold thousands.
    #[cfg(feature = "std")]
    keys: std::sync::OnceLock<CircuitKeys>,
    #[cfg(not(feature = "std"))]
    keys: CircuitKeys,
    timing: Timing,
    counts_requests: bool,
    window: Window,
}

impl fmt::Debug for Circuit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Circuit")
            .field("name", &self.name)
            .field("keys", self.keys())
            .field("timing", &self.timing)
            .field("counts_requests", &self.counts_requests)
            .field("window", &self.window)
            .finish()
    }
}

impl Circuit {
    /// The breaker's name.
    pub fn name(&self) -> &CircuitName {
        &self.name
    }

    /// The circuit's keys.
    pub fn keys(&self) -> &CircuitKeys {
        #[cfg(feature = "std")]
        {
            self.keys
                .get_or_init(|| CircuitKeys::new(&self.name, self.request_key.as_deref()))
        }
        #[cfg(not(feature = "std"))]
        {
            &self.keys
        }
    }

    /// The circuit's timeouts, in milliseconds.
    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    /// Whether the rule counts requests (so the request counter is kept).
    pub fn counts_requests(&self) -> bool {
        self.counts_requests
    }

    /// The window outcomes are counted in.
    pub fn window(&self) -> Window {
        self.window
    }

    /// The length of a bucket of its sliding window, if it has one.
    pub fn bucket_ms(&self) -> Option<u64> {
        self.window.bucket_ms(self.timing.failure_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Config {
        let mut c = Config::new("svc");
        c.max_failures(3);
        c
    }

    #[test]
    fn defaults_are_the_originals() {
        let (circuit, rule) = valid().validate().unwrap();
        assert_eq!(circuit.timing().failure_timeout(), Duration::from_secs(60));
        assert_eq!(circuit.timing().circuit_timeout(), Duration::from_secs(60));
        assert_eq!(circuit.timing().half_open_max_calls, 1);
        // the trial lease follows the circuit timeout unless set
        assert_eq!(circuit.timing().trial_lease(), Duration::from_secs(60));
        let (circuit, _) = valid()
            .circuit_timeout(Duration::from_secs(5))
            .validate()
            .unwrap();
        assert_eq!(circuit.timing().trial_lease(), Duration::from_secs(5));
        let (circuit, _) = valid()
            .trial_lease(Duration::from_millis(1500))
            .validate()
            .unwrap();
        assert_eq!(circuit.timing().trial_lease_ms, 1500);
        assert!(!rule.counts_requests());
        assert!(!circuit.counts_requests());
        assert_eq!(circuit.keys().requests(), "svc_requests");
    }

    #[test]
    fn invalid_settings_are_typed_errors() {
        assert_eq!(
            Config::new("").validate().unwrap_err(),
            ConfigError::EmptyName
        );
        assert_eq!(
            Config::new("x").validate().unwrap_err(),
            ConfigError::MissingRule
        );
        assert_eq!(
            Config::new("x").max_failures(0).validate().unwrap_err(),
            ConfigError::Rule(RuleError::ZeroMaxFailures)
        );
        assert_eq!(
            Config::new("x")
                .percentage_failures(101, 0)
                .validate()
                .unwrap_err(),
            ConfigError::Rule(RuleError::PercentageOutOfRange(101))
        );
        assert_eq!(
            valid()
                .failure_timeout(Duration::ZERO)
                .validate()
                .unwrap_err(),
            ConfigError::ZeroTimeout {
                setting: "failure_timeout"
            }
        );
        assert_eq!(
            valid()
                .circuit_timeout(Duration::ZERO)
                .validate()
                .unwrap_err(),
            ConfigError::ZeroTimeout {
                setting: "circuit_timeout"
            }
        );
        assert_eq!(
            valid()
                .circuit_timeout(Duration::MAX)
                .validate()
                .unwrap_err(),
            ConfigError::TimeoutTooLong {
                setting: "circuit_timeout"
            }
        );
        assert_eq!(
            valid().trial_lease(Duration::ZERO).validate().unwrap_err(),
            ConfigError::ZeroTimeout {
                setting: "trial_lease"
            }
        );
        assert_eq!(
            valid().trial_lease(Duration::MAX).validate().unwrap_err(),
            ConfigError::TimeoutTooLong {
                setting: "trial_lease"
            }
        );
        assert_eq!(
            valid().half_open_max_calls(70_000).validate().unwrap_err(),
            ConfigError::TooManyHalfOpenCalls(70_000)
        );
        assert!(matches!(
            valid().request_key("").validate().unwrap_err(),
            ConfigError::InvalidRequestKey(_)
        ));
        assert!(matches!(
            valid().request_key("svc").validate().unwrap_err(),
            ConfigError::InvalidRequestKey(_)
        ));
    }

    #[cfg(feature = "std")]
    #[test]
    fn a_rule_error_is_said_once() {
        let error = ConfigError::Rule(RuleError::ZeroMaxFailures);
        let text = error.to_string();
        assert!(
            text.contains(&RuleError::ZeroMaxFailures.to_string()),
            "{text}"
        );
        assert!(std::error::Error::source(&error).is_none());
    }

    #[test]
    fn sub_millisecond_parts_round_up() {
        let (circuit, _) = valid()
            .failure_timeout(Duration::from_micros(1500))
            .validate()
            .unwrap();
        assert_eq!(circuit.timing().failure_timeout_ms, 2);
    }

    #[test]
    fn open_backoff_becomes_integers() {
        let (circuit, _) = valid()
            .circuit_timeout(Duration::from_secs(2))
            .open_backoff(OpenBackoff::exponential(1.5).jitter(0.25))
            .validate()
            .unwrap();
        assert_eq!(
            circuit.timing().backoff,
            Some(BackoffTiming {
                multiplier_permille: 1_500,
                max_ms: 20_000,
                jitter_permille: 250,
            })
        );
        let (circuit, _) = valid()
            .circuit_timeout(Duration::from_secs(2))
            .open_backoff(OpenBackoff::exponential(2.0).max(Duration::from_secs(2)))
            .validate()
            .unwrap();
        assert_eq!(circuit.timing().backoff.unwrap().max_ms, 2_000);
        // the default maximum stays within the bound
        let (circuit, _) = valid()
            .circuit_timeout(Duration::from_secs(3 * 3600))
            .open_backoff(OpenBackoff::exponential(2.0))
            .validate()
            .unwrap();
        assert_eq!(circuit.timing().backoff.unwrap().max_ms, 24 * 3_600_000);
        let (circuit, _) = valid().validate().unwrap();
        assert_eq!(circuit.timing().backoff, None);
    }

    #[test]
    fn invalid_open_backoff_says_how_to_fix_it() {
        let error = |backoff: OpenBackoff| {
            let e = valid()
                .circuit_timeout(Duration::from_secs(10))
                .open_backoff(backoff)
                .validate()
                .unwrap_err();
            assert!(matches!(e, ConfigError::Invalid(_)), "{e:?}");
            alloc::string::ToString::to_string(&e)
        };
        for m in [0.5, 0.999, 100.5, f64::NAN, f64::INFINITY, -2.0] {
            assert!(error(OpenBackoff::exponential(m)).contains("multiplier"));
        }
        for j in [-0.1, 1.0, 2.0, f64::NAN] {
            assert!(error(OpenBackoff::exponential(2.0).jitter(j)).contains("jitter"));
        }
        let short = error(OpenBackoff::exponential(2.0).max(Duration::from_secs(9)));
        assert!(short.contains("shorter than circuit_timeout"), "{short}");
        let long = error(OpenBackoff::exponential(2.0).max(Duration::from_secs(86_401)));
        assert!(long.contains("at most 24 hours"), "{long}");
        assert!(valid()
            .circuit_timeout(Duration::from_secs(86_401))
            .open_backoff(OpenBackoff::exponential(2.0))
            .validate()
            .is_err());
        // the bounds themselves are accepted
        for backoff in [
            OpenBackoff::exponential(1.0),
            OpenBackoff::exponential(100.0)
                .jitter(0.999)
                .max(MAX_OPEN_BACKOFF),
            OpenBackoff::exponential(2.0).max(Duration::from_secs(10)),
        ] {
            valid()
                .circuit_timeout(Duration::from_secs(10))
                .open_backoff(backoff)
                .validate()
                .unwrap();
        }
    }
}
