//! With the feature `metrics`: a breaker's series in the `metrics` facade,
//! named after resilience4j's Micrometer ones (`resilience4j_` becomes
//! `lasier_`), so that dashboards port with a rename:
//!
//! | series | kind | labels | what |
//! |---|---|---|---|
//! | `lasier_circuitbreaker_state` | gauge | `name`, `state` | 1 on the current state, 0 on the others |
//! | `lasier_circuitbreaker_calls_seconds` | histogram | `name`, `kind` | each admitted call's duration; `kind` is `successful`, `failed`, `slow` or `ignored` |
//! | `lasier_circuitbreaker_not_permitted_calls_total` | counter | `name` | calls rejected |
//! | `lasier_circuitbreaker_failure_rate` | gauge | `name` | failures per 100 requests of the window, where the rule counts requests |
//! | `lasier_circuitbreaker_fallback` | gauge | `name` | 1 while the breaker protects calls in-process because its store fails |
//!
//! The handles are registered once, when the breaker is built, with the
//! recorder installed then: install yours (an exporter) before building
//! breakers. A breaker on a store sets its state gauge once it sees a
//! transition or `metrics()` reads the state; an in-process one starts at
//! `closed`. Without the feature every method here is empty.

use core::time::Duration;

use crate::events::CallKind;
use crate::state::State;
use lasier_rules::Counts;

#[cfg(feature = "metrics")]
mod on {
    use alloc::string::String;

    use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

    use super::{CallKind, Counts, Duration, State};

    const STATES: [(State, &str); 5] = [
        (State::Closed, "closed"),
        (State::Open, "open"),
        (State::HalfOpen, "half_open"),
        (State::ForcedOpen, "forced_open"),
        (State::Disabled, "disabled"),
    ];

    const KINDS: [CallKind; 4] = [
        CallKind::Success,
        CallKind::Failure,
        CallKind::Slow,
        CallKind::Ignored,
    ];

    /// One breaker's handles.
    #[derive(Debug)]
    pub(crate) struct Meters {
        states: [Gauge; 5],
        calls: [Histogram; 4],
        not_permitted: Counter,
        failure_rate: Gauge,
        fallback: Gauge,
    }

    impl Meters {
        pub(crate) fn new(name: &str) -> Self {
            let name = String::from(name);
            Self {
                states: STATES.map(|(_, state)| {
                    gauge!("lasier_circuitbreaker_state", "name" => name.clone(), "state" => state)
                }),
                calls: KINDS.map(|kind| {
                    histogram!(
                        "lasier_circuitbreaker_calls_seconds",
                        "name" => name.clone(),
                        "kind" => kind.as_str()
                    )
                }),
                not_permitted: counter!(
                    "lasier_circuitbreaker_not_permitted_calls_total",
                    "name" => name.clone()
                ),
                failure_rate: gauge!("lasier_circuitbreaker_failure_rate", "name" => name.clone()),
                fallback: gauge!("lasier_circuitbreaker_fallback", "name" => name),
            }
        }

        pub(crate) fn state(&self, now: State) {
            for ((state, _), gauge) in STATES.iter().zip(&self.states) {
                gauge.set(if *state == now { 1.0 } else { 0.0 });
            }
        }

        pub(crate) fn call(&self, kind: CallKind, took: Duration) {
            if let Some(at) = KINDS.iter().position(|known| *known == kind) {
                self.calls[at].record(took.as_secs_f64());
            }
        }

        pub(crate) fn rejected(&self) {
            self.not_permitted.increment(1);
        }

        pub(crate) fn counts(&self, counts: Counts) {
            if counts.requests > 0 {
                // (counts far past 2^53 lose precision, not meaning)
                #[allow(clippy::cast_precision_loss)]
                let rate = counts.failures as f64 * 100.0 / counts.requests as f64;
                self.failure_rate.set(rate);
            }
        }

        pub(crate) fn fallback(&self, on: bool) {
            self.fallback.set(if on { 1.0 } else { 0.0 });
        }

        /// Whether breakers must time their calls for these series.
        pub(crate) const TIMES_CALLS: bool = true;
    }
}

#[cfg(not(feature = "metrics"))]
mod on {
    use super::{CallKind, Counts, Duration, State};

    /// Nothing: the feature `metrics` is off.
    #[derive(Debug)]
    pub(crate) struct Meters;

    impl Meters {
        #[inline]
        pub(crate) fn new(_name: &str) -> Self {
            Self
        }
        #[inline]
        pub(crate) fn state(&self, _now: State) {}
        #[inline]
        pub(crate) fn call(&self, _kind: CallKind, _took: Duration) {}
        #[inline]
        pub(crate) fn rejected(&self) {}
        #[inline]
        pub(crate) fn counts(&self, _counts: Counts) {}
        #[inline]
        pub(crate) fn fallback(&self, _on: bool) {}

        pub(crate) const TIMES_CALLS: bool = false;
    }
}

pub(crate) use on::Meters;

/// How a breaker holds its [`Meters`]: boxed with the feature (a dozen
/// handles, which most breakers of a registry would carry unused
/// otherwise... and do, with the feature on: one series per breaker name),
/// nothing without it.
#[cfg(feature = "metrics")]
pub(crate) type Held = alloc::boxed::Box<Meters>;
/// See above.
#[cfg(not(feature = "metrics"))]
pub(crate) type Held = Meters;

/// The meters of the breaker `name`, registered now.
pub(crate) fn held(name: &str) -> Held {
    #[cfg(feature = "metrics")]
    {
        alloc::boxed::Box::new(Meters::new(name))
    }
    #[cfg(not(feature = "metrics"))]
    {
        Meters::new(name)
    }
}
