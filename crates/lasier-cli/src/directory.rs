//! The circuit directory: what a breaker says about itself when it
//! registers, in a Redis hash at `lasier:circuit:<name>` with a TTL.
//!
//! Fields, all strings: `rule` (`max_failures(5)`,
//! `percentage_failures(50, 20)` or a custom rule's description),
//! `failure_timeout_ms`, `circuit_timeout_ms`, `half_open_max_calls`,
//! `half_open_successes`, `window` (`fixed`, `sliding(10)`, `count(100)`),
//! `request_key` (optional) and `seen_ms` (unix epoch milliseconds of the
//! last registration). Any field may be missing or hold garbage: it then
//! reads as unknown, and the rest of the entry still counts.

use std::time::Duration;

use lasier_core::{Circuit, Config};
use serde::Serialize;

/// The prefix of a directory entry's key.
pub(crate) const PREFIX: &str = "lasier:circuit:";

/// A directory entry, each field `None` where missing or unreadable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Registration {
    /// The rule, as the breaker described it.
    pub(crate) rule: Option<String>,
    /// The counting window, in milliseconds.
    pub(crate) failure_timeout_ms: Option<u64>,
    /// How long the circuit stays open, in milliseconds.
    pub(crate) circuit_timeout_ms: Option<u64>,
    /// Trial calls per lease while half-open.
    pub(crate) half_open_max_calls: Option<u32>,
    /// Trials that must pass to close.
    pub(crate) half_open_successes: Option<u32>,
    /// `fixed`, `sliding(n)` or `count(n)`.
    pub(crate) window: Option<String>,
    /// Where the request counter lives, if not at `<name>_requests`.
    pub(crate) request_key: Option<String>,
    /// When the breaker last registered: unix epoch milliseconds.
    pub(crate) seen_ms: Option<u64>,
}

/// What the entry's rule is, as far as the tool can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleKind {
    /// `max_failures(n)`: no request counter is kept.
    MaxFailures(u64),
    /// `percentage_failures(p, min)`: failures and requests.
    PercentageFailures(u8, u64),
    /// Missing, or a custom rule: whether it counts requests is unknown.
    Unknown,
}

impl Registration {
    /// The entry from the field-value pairs of `HGETALL`; unknown fields
    /// are ignored, and a field that is not UTF-8 or not a number where a
    /// number is due reads as missing.
    pub(crate) fn from_fields<'a>(fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Self {
        let mut entry = Self::default();
        for (field, value) in fields {
            let Ok(value) = std::str::from_utf8(value) else {
                continue;
            };
            let value = value.trim();
            match field {
                b"rule" => entry.rule = text(value),
                b"failure_timeout_ms" => entry.failure_timeout_ms = value.parse().ok(),
                b"circuit_timeout_ms" => entry.circuit_timeout_ms = value.parse().ok(),
                b"half_open_max_calls" => entry.half_open_max_calls = value.parse().ok(),
                b"half_open_successes" => entry.half_open_successes = value.parse().ok(),
                b"window" => entry.window = window(value),
                b"request_key" => entry.request_key = text(value),
                b"seen_ms" => entry.seen_ms = value.parse().ok(),
                _ => {}
            }
        }
        entry
    }

    /// The rule, parsed where it is one of lasier's own.
    pub(crate) fn rule_kind(&self) -> RuleKind {
        self.rule.as_deref().map_or(RuleKind::Unknown, parse_rule)
    }

    /// Whether the tool can read the window's counts: the fixed one (or
    /// unknown, taken as the default), a sliding or a count window.
    pub(crate) fn readable_window(&self) -> bool {
        self.window.as_deref().is_none_or(|w| {
            w == "fixed" || self.sliding_buckets().is_some() || self.count_calls().is_some()
        })
    }

    /// The buckets of a `sliding(n)` window.
    pub(crate) fn sliding_buckets(&self) -> Option<u32> {
        call(self.window.as_deref()?, "sliding")?
            .trim()
            .parse()
            .ok()
    }

    /// The calls of a `count(n)` window.
    pub(crate) fn count_calls(&self) -> Option<u32> {
        call(self.window.as_deref()?, "count")?.trim().parse().ok()
    }
}

fn text(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

/// `fixed`, `sliding(n)` or `count(n)` with n a positive number.
fn window(value: &str) -> Option<String> {
    if value == "fixed" {
        return Some(value.to_owned());
    }
    let n = call(value, "sliding").or_else(|| call(value, "count"))?;
    match n.trim().parse::<u64>() {
        Ok(n) if n > 0 => Some(value.to_owned()),
        _ => None,
    }
}

/// The argument text of `name(args)`.
fn call<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    value
        .strip_prefix(name)?
        .strip_prefix('(')?
        .strip_suffix(')')
}

fn parse_rule(rule: &str) -> RuleKind {
    let rule = rule.trim();
    if let Some(n) = call(rule, "max_failures").and_then(|n| n.trim().parse().ok()) {
        return RuleKind::MaxFailures(n);
    }
    if let Some((p, min)) = call(rule, "percentage_failures").and_then(|args| args.split_once(','))
    {
        if let (Ok(p), Ok(min)) = (p.trim().parse(), min.trim().parse()) {
            return RuleKind::PercentageFailures(p, min);
        }
    }
    RuleKind::Unknown
}

/// The circuit the tool reads and steers for `name`: its keys (with the
/// entry's request key) and timing from `entry` where it has them, the
/// defaults otherwise. A rule the tool cannot rebuild (a custom one, or
/// none known) is stood in for by one that counts requests, so that both
/// counters are read.
///
/// A setting the breaker could not have registered (a zero timeout, more
/// successes than trials) is dropped for its default rather than failing.
pub(crate) fn circuit_for(name: &str, entry: Option<&Registration>) -> Result<Circuit, String> {
    let full = config_for(name, entry, true);
    match full.validate() {
        Ok((circuit, _)) => Ok(circuit),
        Err(_) => config_for(name, entry, false)
            .validate()
            .map(|(circuit, _)| circuit)
            .map_err(|e| e.to_string()),
    }
}

fn config_for(name: &str, entry: Option<&Registration>, with_entry: bool) -> Config {
    let mut config = Config::new(name);
    // One trial visible while half-open, as the default breaker has.
    config.half_open_max_calls(lasier_core::config::DEFAULT_HALF_OPEN_MAX_CALLS);
    match entry.map_or(RuleKind::Unknown, Registration::rule_kind) {
        RuleKind::MaxFailures(n) if n > 0 => config.max_failures(n),
        RuleKind::PercentageFailures(p, min) if p <= 100 => config.percentage_failures(p, min),
        _ => config.percentage_failures(50, 1),
    };
    let Some(entry) = entry.filter(|_| with_entry) else {
        return config;
    };
    if let Some(ms) = entry.failure_timeout_ms.filter(|ms| *ms > 0) {
        config.failure_timeout(Duration::from_millis(ms));
    }
    if let Some(ms) = entry.circuit_timeout_ms.filter(|ms| *ms > 0) {
        config.circuit_timeout(Duration::from_millis(ms));
    }
    if let Some(calls) = entry.half_open_max_calls {
        config.half_open_max_calls(calls);
    }
    if let Some(successes) = entry.half_open_successes {
        config.half_open_successes(successes);
    }
    if let Some(key) = &entry.request_key {
        config.request_key(key.as_str());
    }
    if let Some(buckets) = entry.sliding_buckets() {
        config.sliding_window(buckets);
    }
    if let Some(calls) = entry.count_calls() {
        config.count_window(calls);
    }
    config
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn entry(fields: &[(&str, &str)]) -> Registration {
        Registration::from_fields(fields.iter().map(|(f, v)| (f.as_bytes(), v.as_bytes())))
    }

    #[test]
    fn a_full_entry_reads_whole() {
        let e = entry(&[
            ("rule", "percentage_failures(50, 20)"),
            ("failure_timeout_ms", "60000"),
            ("circuit_timeout_ms", "30000"),
            ("half_open_max_calls", "3"),
            ("half_open_successes", "2"),
            ("window", "sliding(10)"),
            ("request_key", "{p}:reqs"),
            ("seen_ms", "1700000000000"),
            ("something_new", "ignored"),
        ]);
        assert_eq!(e.rule_kind(), RuleKind::PercentageFailures(50, 20));
        assert_eq!(e.failure_timeout_ms, Some(60_000));
        assert_eq!(e.half_open_successes, Some(2));
        assert_eq!(e.window.as_deref(), Some("sliding(10)"));
        assert_eq!(e.sliding_buckets(), Some(10));
        assert!(
            e.readable_window(),
            "a sliding window's counts are readable"
        );
        assert_eq!(e.seen_ms, Some(1_700_000_000_000));
        let circuit = circuit_for("{p}", Some(&e)).unwrap();
        assert_eq!(circuit.keys().requests(), "{p}:reqs");
        assert_eq!(circuit.timing().circuit_timeout_ms, 30_000);
        assert_eq!(circuit.timing().half_open_max_calls, 3);
    }

    #[test]
    fn garbage_reads_as_unknown_and_never_fails() {
        let e = entry(&[
            ("rule", "max_failures(five)"),
            ("failure_timeout_ms", "-3"),
            ("circuit_timeout_ms", ""),
            ("half_open_max_calls", "99999999999"),
            ("window", "sliding(0)"),
            ("request_key", ""),
            ("seen_ms", "yesterday"),
        ]);
        assert_eq!(e.rule.as_deref(), Some("max_failures(five)"));
        assert_eq!(e.rule_kind(), RuleKind::Unknown);
        assert_eq!(e.failure_timeout_ms, None);
        assert_eq!(e.circuit_timeout_ms, None);
        assert_eq!(e.half_open_max_calls, None);
        assert_eq!(e.window, None);
        assert_eq!(e.request_key, None);
        assert_eq!(e.seen_ms, None);
        assert!(circuit_for("x", Some(&e)).is_ok());
        // not UTF-8
        let e = Registration::from_fields([(&b"rule"[..], &[0xff, 0xfe][..])]);
        assert_eq!(e.rule, None);
    }

    #[test]
    fn settings_no_breaker_has_fall_back_to_the_defaults() {
        let e = entry(&[
            ("rule", "max_failures(3)"),
            ("half_open_max_calls", "2"),
            ("half_open_successes", "5"),
            ("request_key", "x"),
        ]);
        let circuit = circuit_for("x", Some(&e)).unwrap();
        assert_eq!(circuit.keys().requests(), "x_requests");
        assert_eq!(circuit.timing().half_open_max_calls, 1);
        assert!(!circuit.counts_requests());
    }

    #[test]
    fn rules_parse() {
        assert_eq!(parse_rule("max_failures(5)"), RuleKind::MaxFailures(5));
        assert_eq!(
            parse_rule(" percentage_failures( 50 ,20 ) "),
            RuleKind::PercentageFailures(50, 20)
        );
        assert_eq!(parse_rule("my rule"), RuleKind::Unknown);
        assert_eq!(parse_rule("percentage_failures(500, 2)"), RuleKind::Unknown);
        let unknown = circuit_for("x", None).unwrap();
        assert!(unknown.counts_requests(), "both counters are read");
        assert_eq!(unknown.timing().half_open_max_calls, 1);
    }
}
