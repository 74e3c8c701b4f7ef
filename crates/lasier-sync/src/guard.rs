use lasier_core::{Outcome, Permit};

use crate::breaker::CircuitBreaker;

/// A call in progress, from [`CircuitBreaker::enter`]: the context-manager
/// form of the Python original.
///
/// Say how the call ended with [`success`](Self::success) or
/// [`failure`](Self::failure). A guard dropped without a verdict counts as a
/// success, or as a failure if the thread is panicking.
///
/// ```
/// use lasier_sync::CircuitBreaker;
///
/// let breaker = CircuitBreaker::builder("db").max_failures(1).build()?;
/// let guard = breaker.enter()?;
/// // ... the guarded work ...
/// guard.failure();
/// assert!(breaker.enter().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "dropping the guard at once records a success for no work"]
pub struct Guard<'a> {
    breaker: &'a CircuitBreaker,
    permit: Option<Permit>,
}

impl<'a> Guard<'a> {
    pub(crate) fn new(breaker: &'a CircuitBreaker, permit: Permit) -> Self {
        Self {
            breaker,
            permit: Some(permit),
        }
    }

    /// The call succeeded.
    pub fn success(mut self) {
        self.finish(Outcome::Success);
    }

    /// The call failed, and the failure counts.
    pub fn failure(mut self) {
        self.finish(Outcome::Failure);
    }

    fn finish(&mut self, outcome: Outcome) {
        if let Some(permit) = self.permit.take() {
            self.breaker.record(permit, outcome);
        }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let outcome = if std::thread::panicking() {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        self.finish(outcome);
    }
}
