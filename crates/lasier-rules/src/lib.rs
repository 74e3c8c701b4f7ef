//! Rules that decide when a circuit opens.
//!
//! A rule looks at the counts of the current window (failures and, if it asks
//! for them, requests) after a counted failure and says whether the circuit
//! should open. This crate is shared by every lasier facade and storage; it is
//! `no_std` and has no dependencies, so a rule of your own needs nothing else.
//!
//! ```
//! use lasier_rules::{Counts, MaxFailuresRule, PercentageFailuresRule, Rule};
//!
//! let max = MaxFailuresRule::new(3)?;
//! assert!(!max.should_open(Counts::new(2, 0)));
//! assert!(max.should_open(Counts::new(3, 0)));
//!
//! // 50 % of failures, once more than 5 requests were seen in the window.
//! let pct = PercentageFailuresRule::new(50, 5)?;
//! assert!(!pct.should_open(Counts::new(5, 5)));
//! assert!(pct.should_open(Counts::new(20, 40)));
//! # Ok::<(), lasier_rules::RuleError>(())
//! ```
//!
//! # Writing a rule
//!
//! ```
//! use lasier_rules::{Counts, Rule};
//!
//! /// Opens after `n` failures, but only once at least `min` requests were seen.
//! #[derive(Debug)]
//! struct FailuresAfterWarmup { n: u64, min: u64 }
//!
//! impl Rule for FailuresAfterWarmup {
//!     fn should_open(&self, counts: Counts) -> bool {
//!         counts.requests >= self.min && counts.failures >= self.n
//!     }
//!     // The breaker only counts requests for rules that ask for it.
//!     fn counts_requests(&self) -> bool { true }
//! }
//!
//! let rule = FailuresAfterWarmup { n: 2, min: 10 };
//! assert!(!rule.should_open(Counts::new(5, 9)));
//! assert!(rule.should_open(Counts::new(2, 10)));
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(not(feature = "std"), no_std)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use core::fmt;

/// The counters of the current window, as the rule sees them.
///
/// `requests` is only counted for rules whose [`Rule::counts_requests`] is
/// true; for the others it is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct Counts {
    /// Failures counted in the current window.
    pub failures: u64,
    /// Requests (successes and failures) counted in the current window.
    pub requests: u64,
}

impl Counts {
    /// Counts of `failures` failures out of `requests` requests.
    pub const fn new(failures: u64, requests: u64) -> Self {
        Self { failures, requests }
    }
}

/// Decides, from the counts of the current window, whether a circuit opens.
///
/// The breaker asks after every counted failure. Rules must be cheap and
/// must not block: they run on the caller's thread, inside the guarded call.
pub trait Rule: fmt::Debug + Send + Sync {
    /// Whether the circuit should open, given the counts of the current window
    /// (which include the failure just counted).
    fn should_open(&self, counts: Counts) -> bool;

    /// Whether this rule needs the request counter. Counting requests costs
    /// a shared write per call, so the breaker only does it when asked.
    /// The default is `false`.
    fn counts_requests(&self) -> bool {
        false
    }

    /// The rule in a few words, for people who look at a store's circuits
    /// (the `lasier` command lists it): `max_failures(5)`,
    /// `percentage_failures(50, 20)`. The default is the rule's `Debug`.
    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl<R: Rule + ?Sized> Rule for &R {
    fn should_open(&self, counts: Counts) -> bool {
        (**self).should_open(counts)
    }
    fn counts_requests(&self) -> bool {
        (**self).counts_requests()
    }
    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).describe(f)
    }
}

/// Invalid parameters for a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuleError {
    /// `MaxFailuresRule::new(0)`: a circuit that opens before any failure
    /// would never let a call through.
    ZeroMaxFailures,
    /// The failure percentage must be between 1 and 100.
    PercentageOutOfRange(u8),
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroMaxFailures => f.write_str(
                "max_failures must be at least 1 (0 would open the circuit before any failure)",
            ),
            Self::PercentageOutOfRange(p) => write!(
                f,
                "max_failures_percentage must be between 1 and 100, got {p}"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for RuleError {}

/// Opens the circuit when `failures >= max_failures` in the current window.
///
/// The Python original's `MaxFailuresRule`. It does not count requests, so a
/// successful call costs no shared write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxFailuresRule {
    max_failures: u64,
}

impl MaxFailuresRule {
    /// A rule that opens after `max_failures` failures in one window.
    ///
    /// # Errors
    ///
    /// [`RuleError::ZeroMaxFailures`] when `max_failures` is 0.
    pub const fn new(max_failures: u64) -> Result<Self, RuleError> {
        if max_failures == 0 {
            return Err(RuleError::ZeroMaxFailures);
        }
        Ok(Self { max_failures })
    }

    /// The number of failures that opens the circuit.
    pub const fn max_failures(&self) -> u64 {
        self.max_failures
    }
}

impl Rule for MaxFailuresRule {
    fn should_open(&self, counts: Counts) -> bool {
        counts.failures >= self.max_failures
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "max_failures({})", self.max_failures)
    }
}

/// Opens the circuit when more than `min_accepted_requests` requests were
/// seen in the window and at least `max_failures_percentage` % of them failed.
///
/// The Python original's `PercentageFailuresRule`, with the same boundaries:
/// `requests > min_accepted_requests && failures * 100 / requests >= percentage`.
/// The ratio is compared exactly, in integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PercentageFailuresRule {
    max_failures_percentage: u8,
    min_accepted_requests: u64,
}

impl PercentageFailuresRule {
    /// A rule that opens at `max_failures_percentage` % failures, once more
    /// than `min_accepted_requests` requests were seen in the window.
    ///
    /// # Errors
    ///
    /// [`RuleError::PercentageOutOfRange`] when the percentage is 0 or over 100.
    pub const fn new(
        max_failures_percentage: u8,
        min_accepted_requests: u64,
    ) -> Result<Self, RuleError> {
        if max_failures_percentage == 0 || max_failures_percentage > 100 {
            return Err(RuleError::PercentageOutOfRange(max_failures_percentage));
        }
        Ok(Self {
            max_failures_percentage,
            min_accepted_requests,
        })
    }

    /// The failure percentage (1 to 100) that opens the circuit.
    pub const fn max_failures_percentage(&self) -> u8 {
        self.max_failures_percentage
    }

    /// The number of requests that must be exceeded before the rule opens.
    pub const fn min_accepted_requests(&self) -> u64 {
        self.min_accepted_requests
    }
}

impl Rule for PercentageFailuresRule {
    fn should_open(&self, counts: Counts) -> bool {
        // failures * 100 / requests >= pct  <=>  failures * 100 >= pct * requests
        // for requests > 0; u128 keeps both products exact.
        counts.requests > self.min_accepted_requests
            && u128::from(counts.failures) * 100
                >= u128::from(self.max_failures_percentage) * u128::from(counts.requests)
    }

    fn counts_requests(&self) -> bool {
        true
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "percentage_failures({}, {})",
            self.max_failures_percentage, self.min_accepted_requests
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_failures_opens_at_the_threshold() {
        let rule = MaxFailuresRule::new(3).unwrap();
        assert!(!rule.should_open(Counts::new(0, 0)));
        assert!(!rule.should_open(Counts::new(2, 100)));
        assert!(rule.should_open(Counts::new(3, 0)));
        assert!(rule.should_open(Counts::new(4, 0)));
        assert!(!rule.counts_requests());
    }

    #[test]
    fn max_failures_of_one_opens_on_the_first_failure() {
        let rule = MaxFailuresRule::new(1).unwrap();
        assert!(rule.should_open(Counts::new(1, 0)));
    }

    #[test]
    fn zero_max_failures_is_an_error() {
        assert_eq!(MaxFailuresRule::new(0), Err(RuleError::ZeroMaxFailures));
    }

    #[test]
    fn percentage_boundaries_match_the_original() {
        let rule = PercentageFailuresRule::new(50, 5).unwrap();
        // requests must exceed the minimum
        assert!(!rule.should_open(Counts::new(5, 5)));
        assert!(rule.should_open(Counts::new(3, 6)));
        assert!(!rule.should_open(Counts::new(2, 6)));
        assert!(rule.should_open(Counts::new(20, 40)));
        assert!(!rule.should_open(Counts::new(19, 40)));
        assert!(rule.counts_requests());
    }

    #[test]
    fn percentage_is_compared_exactly() {
        // 1/3 = 33.33 %: opens at 33, not at 34
        assert!(PercentageFailuresRule::new(33, 0)
            .unwrap()
            .should_open(Counts::new(1, 3)));
        assert!(!PercentageFailuresRule::new(34, 0)
            .unwrap()
            .should_open(Counts::new(1, 3)));
        // no overflow at the extremes
        let rule = PercentageFailuresRule::new(100, 0).unwrap();
        assert!(rule.should_open(Counts::new(u64::MAX, u64::MAX)));
        assert!(!rule.should_open(Counts::new(u64::MAX - 1, u64::MAX)));
    }

    #[test]
    fn percentage_with_zero_minimum_needs_one_request() {
        let rule = PercentageFailuresRule::new(1, 0).unwrap();
        assert!(!rule.should_open(Counts::new(0, 0)));
        assert!(rule.should_open(Counts::new(1, 1)));
    }

    #[test]
    fn percentage_out_of_range_is_an_error() {
        assert_eq!(
            PercentageFailuresRule::new(0, 1),
            Err(RuleError::PercentageOutOfRange(0))
        );
        assert_eq!(
            PercentageFailuresRule::new(101, 1),
            Err(RuleError::PercentageOutOfRange(101))
        );
        assert!(PercentageFailuresRule::new(100, 1).is_ok());
    }
}
