//! What a run of the suite found.

use std::fmt;

/// One broken rule of the storage contract: which check caught it, the rule,
/// what the storage did, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Failure {
    /// The check's name, as listed in the [crate docs](crate#the-checks),
    /// e.g. `"incr_never_loses_an_update"`.
    pub check: &'static str,
    /// The rule of the contract that was broken.
    pub rule: &'static str,
    /// What the storage did instead.
    pub seen: String,
    /// How to fix it.
    pub fix: &'static str,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "check `{}` failed\n  rule: {}\n  seen: {}\n  fix:  {}",
            self.check,
            self.rule,
            indent(&self.seen),
            indent(self.fix)
        )
    }
}

fn indent(text: &str) -> String {
    text.replace('\n', "\n        ")
}

/// The outcome of a run: the checks that passed and the ones that failed.
///
/// From [`Suite::run`](crate::Suite::run) and its siblings; the `check_*`
/// functions turn a failed report into a panic.
///
/// ```
/// use lasier_core::MemoryStorage;
///
/// let report = lasier_testkit::Suite::new().run_with_clock(MemoryStorage::with_clock);
/// assert!(report.is_ok(), "{report}");
/// assert!(report.passed().contains(&"add_writes_only_when_absent"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub(crate) passed: Vec<&'static str>,
    pub(crate) failures: Vec<Failure>,
}

impl Report {
    /// Whether every check passed.
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// The names of the checks that passed, in the order they ran.
    pub fn passed(&self) -> &[&'static str] {
        &self.passed
    }

    /// The checks that failed, in the order they ran.
    pub fn failures(&self) -> &[Failure] {
        &self.failures
    }

    /// The failure of the check `check`, if it failed.
    pub fn failure(&self, check: &str) -> Option<&Failure> {
        self.failures.iter().find(|f| f.check == check)
    }

    /// Panics with the whole report unless every check passed: what the
    /// `check_*` functions do, for use in a `#[test]`.
    ///
    /// # Panics
    ///
    /// If a check failed; the message lists each failure with its fix.
    #[track_caller]
    pub fn assert_ok(&self) {
        if !self.is_ok() {
            // The kit's purpose: fail the implementor's test, saying why.
            #[allow(clippy::panic)]
            {
                panic!("{self}");
            }
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.passed.len() + self.failures.len();
        write!(
            f,
            "lasier-testkit: {} of {total} storage checks passed",
            self.passed.len()
        )?;
        if self.failures.is_empty() {
            return Ok(());
        }
        write!(f, ", {} failed:", self.failures.len())?;
        for failure in &self.failures {
            write!(f, "\n\n{failure}")?;
        }
        Ok(())
    }
}
