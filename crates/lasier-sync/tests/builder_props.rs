//! Any builder input gives a typed error or a working breaker, never a
//! panic; and the rules decide exactly as documented, for any counts.
//!
//! The expected validity is written from the documented rules of
//! `build()`, not from its code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use lasier_core::clock::ManualClock;
use lasier_sync::{
    CircuitBreaker, ConfigError, Counts, Error, MaxFailuresRule, MemoryStorage,
    PercentageFailuresRule, Rule, RuleError, State, StorageFailurePolicy,
};
use proptest::prelude::*;

/// The longest timeout `build()` accepts: 100 years.
const MAX_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

#[derive(Debug, Clone)]
enum RuleInput {
    None,
    Max(u64),
    Percentage(u8, u64),
}

#[derive(Debug, Clone)]
enum PolicyInput {
    Default,
    FailOpen,
    FailClosed,
    LocalFallback(Duration),
}

#[derive(Debug, Clone)]
struct Input {
    name: String,
    rule: RuleInput,
    failure_timeout: Option<Duration>,
    circuit_timeout: Option<Duration>,
    half_open_max_calls: Option<u32>,
    request_key: Option<String>,
    policy: PolicyInput,
}

/// Durations around every boundary: zero, under a millisecond, ordinary,
/// the longest accepted, just over it, and the largest there is.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        (1_u64..1_000_000).prop_map(Duration::from_nanos),
        (1_u64..10_000_000).prop_map(Duration::from_millis),
        Just(MAX_TIMEOUT),
        Just(MAX_TIMEOUT + Duration::from_nanos(1)),
        Just(Duration::MAX),
        any::<(u64, u32)>().prop_map(|(s, n)| Duration::new(s, n % 1_000_000_000)),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z]{1,8}",
        any::<String>(),
        Just("svc with spaces and ünïcödé ✓".to_owned()),
    ]
}

fn input() -> impl Strategy<Value = Input> {
    let rule = prop_oneof![
        Just(RuleInput::None),
        prop_oneof![Just(0_u64), Just(1), Just(u64::MAX), any::<u64>()].prop_map(RuleInput::Max),
        (
            prop_oneof![Just(0_u8), Just(1), Just(100), Just(101), any::<u8>()],
            prop_oneof![Just(0_u64), Just(u64::MAX), any::<u64>()]
        )
            .prop_map(|(p, m)| RuleInput::Percentage(p, m)),
    ];
    let policy = prop_oneof![
        Just(PolicyInput::Default),
        Just(PolicyInput::FailOpen),
        Just(PolicyInput::FailClosed),
        duration().prop_map(PolicyInput::LocalFallback),
    ];
    let half_open = prop::option::of(prop_oneof![
        Just(0_u32),
        Just(65_535),
        Just(65_536),
        any::<u32>()
    ]);
    (
        name(),
        rule,
        prop::option::of(duration()),
        prop::option::of(duration()),
        half_open,
        prop::option::of(prop_oneof![
            Just(String::new()),
            Just("=name".to_owned()),
            "[a-z_]{1,12}",
            any::<String>()
        ]),
        policy,
    )
        .prop_map(
            |(name, rule, failure_timeout, circuit_timeout, half_open_max_calls, key, policy)| {
                // Sometimes the request key collides with the failure key.
                let request_key = key.map(|k| if k == "=name" { name.clone() } else { k });
                Input {
                    name,
                    rule,
                    failure_timeout,
                    circuit_timeout,
                    half_open_max_calls,
                    request_key,
                    policy,
                }
            },
        )
}

fn timeout_ok(d: Duration) -> bool {
    !d.is_zero() && d <= MAX_TIMEOUT
}

/// Whether `build()` must succeed, from its documentation. (A request key
/// equal to another key of the circuit is only checked for the failure
/// counter's and the open flag's, whose names are the original's.)
fn valid(input: &Input) -> Option<bool> {
    let rule_ok = match input.rule {
        RuleInput::None => false,
        RuleInput::Max(n) => n > 0,
        RuleInput::Percentage(p, _) => (1..=100).contains(&p),
    };
    let policy_ok = match input.policy {
        PolicyInput::LocalFallback(d) => timeout_ok(d),
        _ => true,
    };
    let key_ok = match &input.request_key {
        None => true,
        Some(k) if k.is_empty() || *k == input.name || *k == format!("circuit_{}", input.name) => {
            false
        }
        // Might collide with a key of the half-open state: not predicted.
        Some(k) if k.starts_with("lasier:") => return None,
        Some(_) => true,
    };
    Some(
        !input.name.is_empty()
            && rule_ok
            && input.failure_timeout.is_none_or(timeout_ok)
            && input.circuit_timeout.is_none_or(timeout_ok)
            && input.half_open_max_calls.is_none_or(|n| n <= 65_535)
            && policy_ok
            && key_ok,
    )
}

fn build(input: &Input, clock: &ManualClock) -> Result<CircuitBreaker, ConfigError> {
    let mut b = CircuitBreaker::builder(input.name.clone())
        .storage(MemoryStorage::with_clock(clock.clone()))
        .clock(clock.clone());
    b = match input.rule {
        RuleInput::None => b,
        RuleInput::Max(n) => b.max_failures(n),
        RuleInput::Percentage(p, m) => b.percentage_failures(p, m),
    };
    if let Some(d) = input.failure_timeout {
        b = b.failure_timeout(d);
    }
    if let Some(d) = input.circuit_timeout {
        b = b.circuit_timeout(d);
    }
    if let Some(n) = input.half_open_max_calls {
        b = b.half_open_max_calls(n);
    }
    if let Some(k) = &input.request_key {
        b = b.request_key(k.clone());
    }
    b = match input.policy {
        PolicyInput::Default => b,
        PolicyInput::FailOpen => b.on_storage_failure(StorageFailurePolicy::FailOpen),
        PolicyInput::FailClosed => b.on_storage_failure(StorageFailurePolicy::FailClosed),
        PolicyInput::LocalFallback(probe_interval) => {
            b.on_storage_failure(StorageFailurePolicy::LocalFallback { probe_interval })
        }
    };
    b.build()
}

#[derive(Debug, Clone)]
enum Op {
    Call(bool),
    Enter(bool),
    Advance(Duration),
    Read,
    Reset,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            4 => any::<bool>().prop_map(Op::Call),
            1 => any::<bool>().prop_map(Op::Enter),
            2 => prop_oneof![
                (0_u64..5_000).prop_map(Duration::from_millis),
                duration(),
            ]
            .prop_map(Op::Advance),
            1 => Just(Op::Read),
            1 => Just(Op::Reset),
        ],
        0..40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any input: a typed error, or a breaker that takes any sequence of
    /// calls, clock moves and reads without panicking.
    #[test]
    fn any_input_builds_a_breaker_or_says_why(input in input(), ops in ops()) {
        let clock = ManualClock::new();
        let built = build(&input, &clock);
        if let Some(expected) = valid(&input) {
            prop_assert_eq!(built.is_ok(), expected, "{:?}: {:?}", input, built.as_ref().err());
        }
        let breaker = match built {
            Ok(breaker) => breaker,
            Err(error) => {
                // Every error explains itself.
                prop_assert!(!error.to_string().is_empty());
                if input.name.is_empty() {
                    prop_assert_eq!(error, ConfigError::EmptyName);
                }
                return Ok(());
            }
        };
        prop_assert_eq!(breaker.name(), input.name.as_str());
        for op in ops {
            match op {
                Op::Call(fails) => {
                    let mut ran = false;
                    let result = breaker.call(|| {
                        ran = true;
                        if fails { Err("boom") } else { Ok(()) }
                    });
                    match result {
                        Ok(()) => prop_assert!(ran && !fails),
                        Err(Error::Inner("boom")) => prop_assert!(ran && fails),
                        Err(Error::Open { .. }) => prop_assert!(!ran),
                        Err(other) => prop_assert!(false, "in memory: {:?}", other),
                    }
                }
                Op::Enter(fails) => {
                    if let Ok(guard) = breaker.enter() {
                        if fails { guard.failure() } else { guard.success() }
                    }
                }
                Op::Advance(by) => clock.advance(by),
                Op::Read => {
                    let state = breaker.state().unwrap();
                    let metrics = breaker.metrics();
                    let counts = breaker.counts().unwrap();
                    prop_assert!(counts.failures <= counts.requests || !matches!(input.rule, RuleInput::Percentage(..)));
                    prop_assert_eq!(metrics.in_fallback, false);
                    if state != State::Open {
                        prop_assert_eq!(metrics.open_for, None);
                    }
                }
                Op::Reset => {
                    breaker.reset().unwrap();
                    prop_assert_eq!(breaker.counts().unwrap(), Counts::default());
                }
            }
        }
    }

    /// MaxFailuresRule: valid for any n > 0, opens at exactly n failures.
    #[test]
    fn max_failures_rule_is_exact(n in any::<u64>(), failures in any::<u64>(), requests in any::<u64>()) {
        match MaxFailuresRule::new(n) {
            Ok(rule) => {
                prop_assert!(n > 0);
                prop_assert_eq!(rule.should_open(Counts::new(failures, requests)), failures >= n);
                prop_assert!(!rule.counts_requests());
            }
            Err(e) => {
                prop_assert_eq!(n, 0);
                prop_assert_eq!(e, RuleError::ZeroMaxFailures);
            }
        }
    }

    /// PercentageFailuresRule: valid for 1 to 100 %, opens past the minimum
    /// of requests at the exact ratio, whatever the counts (no overflow).
    #[test]
    fn percentage_rule_is_exact(
        pct in any::<u8>(),
        min in prop_oneof![Just(0_u64), any::<u64>()],
        failures in prop_oneof![Just(u64::MAX), any::<u64>(), 0_u64..1000],
        requests in prop_oneof![Just(u64::MAX), any::<u64>(), 0_u64..1000],
    ) {
        match PercentageFailuresRule::new(pct, min) {
            Ok(rule) => {
                prop_assert!((1..=100).contains(&pct));
                let expected = requests > min
                    && u128::from(failures) * 100 >= u128::from(pct) * u128::from(requests);
                prop_assert_eq!(rule.should_open(Counts::new(failures, requests)), expected);
                prop_assert!(rule.counts_requests());
            }
            Err(e) => {
                prop_assert!(pct == 0 || pct > 100);
                prop_assert_eq!(e, RuleError::PercentageOutOfRange(pct));
            }
        }
    }
}

#[test]
fn request_key_collisions_are_errors() {
    for key in ["", "svc", "circuit_svc"] {
        let built = CircuitBreaker::builder("svc")
            .max_failures(1)
            .request_key(key)
            .build();
        assert!(
            matches!(built, Err(ConfigError::InvalidRequestKey(_))),
            "{key:?}: {built:?}"
        );
    }
}
