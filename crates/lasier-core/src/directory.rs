//! What a breaker tells a shared store about itself: its [`Registration`]
//! in the store's directory of circuits (`lasier:circuit:<name>`), so that
//! operators can list every circuit in a store with its rule and timeouts
//! (the `lasier` command does).
//!
//! A breaker on a store with fused steps registers when it is built and
//! then at most once per window while it is in use, off its calls' path
//! (a background thread or task); a failed registration reaches no caller
//! and is tried again a window later. A store without fused steps (six
//! primitives, which cannot write the entry's fields) has no directory.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use lasier_rules::Rule;

use crate::config::{Circuit, Window};

/// The key of a circuit's entry in a store's directory:
/// `lasier:circuit:<name>` (the name unchanged, so a Redis Cluster hash tag
/// keeps it in the circuit's slot).
pub fn key(name: &str) -> String {
    alloc::format!("lasier:circuit:{name}")
}

/// A circuit's entry in a store's directory: a few fields of text, as a
/// Redis hash holds them. The store adds `seen_ms`, the time of the
/// registration (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Registration {
    /// The fields, in a fixed order: `rule`, `window`, `failure_timeout_ms`,
    /// `circuit_timeout_ms`, `half_open_max_calls`, `half_open_successes`,
    /// and `request_key` if the breaker moved its request counter.
    pub fields: Vec<(&'static str, String)>,
}

/// A rule's [`Rule::describe`], as a `Display`.
struct Described<'a>(&'a dyn Rule);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.describe(f)
    }
}

impl Registration {
    /// The entry of `circuit` under `rule`.
    pub fn of(circuit: &Circuit, rule: &dyn Rule) -> Self {
        let timing = circuit.timing();
        let window = match circuit.window() {
            Window::Fixed => String::from("fixed"),
            other => alloc::format!("{other}"),
        };
        let mut fields = alloc::vec![
            ("rule", alloc::format!("{}", Described(rule))),
            ("window", window),
            (
                "failure_timeout_ms",
                alloc::format!("{}", timing.failure_timeout_ms)
            ),
            (
                "circuit_timeout_ms",
                alloc::format!("{}", timing.circuit_timeout_ms)
            ),
            (
                "half_open_max_calls",
                alloc::format!("{}", timing.half_open_max_calls)
            ),
            (
                "half_open_successes",
                alloc::format!("{}", timing.half_open_successes)
            ),
        ];
        let requests = circuit.keys().requests();
        if requests != alloc::format!("{}_requests", circuit.name()) {
            fields.push(("request_key", String::from(requests)));
        }
        Self { fields }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn an_entry_says_the_rule_window_and_timeouts() {
        let mut config = Config::new("{pay}ments");
        config
            .percentage_failures(50, 20)
            .count_window(100)
            .half_open_max_calls(3)
            .half_open_successes(2);
        let (circuit, rule) = config.validate().unwrap_or_else(|e| panic!("{e}"));
        let entry = Registration::of(&circuit, &*rule);
        let get = |k: &str| {
            entry
                .fields
                .iter()
                .find(|(f, _)| *f == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("rule"), Some("percentage_failures(50, 20)"));
        assert_eq!(get("window"), Some("count(100)"));
        assert_eq!(get("failure_timeout_ms"), Some("60000"));
        assert_eq!(get("half_open_max_calls"), Some("3"));
        assert_eq!(get("half_open_successes"), Some("2"));
        assert_eq!(get("request_key"), None);
        assert_eq!(key(circuit.name()), "lasier:circuit:{pay}ments");
    }
}
