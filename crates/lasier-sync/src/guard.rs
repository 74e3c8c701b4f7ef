use std::mem::ManuallyDrop;

use lasier_core::{Outcome, Ticket};

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
    ticket: Ticket,
    /// When the call started, with `slow_call_duration`.
    started: Option<std::time::Duration>,
}

impl<'a> Guard<'a> {
    // (inline: out of line, the ticket went through memory on every call,
    // a store-to-load round trip that cost a third of a closed call)
    #[inline]
    pub(crate) fn new(breaker: &'a CircuitBreaker, ticket: Ticket) -> Self {
        Self {
            breaker,
            ticket,
            started: breaker.core().call_started(),
        }
    }

    /// The call succeeded.
    #[inline]
    pub fn success(self) {
        self.finish(Outcome::Success);
    }

    /// The call failed, and the failure counts.
    #[inline]
    pub fn failure(self) {
        self.finish(Outcome::Failure);
    }

    #[inline]
    fn finish(self, outcome: Outcome) {
        let this = ManuallyDrop::new(self);
        let outcome = this.breaker.core().outcome_of(outcome, false, this.started);
        this.breaker.record(this.ticket, outcome);
    }

    /// Drops the guard without recording anything: the caller records the
    /// outcome itself.
    #[inline]
    pub(crate) fn disarm(self) -> Option<std::time::Duration> {
        ManuallyDrop::new(self).started
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let outcome = if std::thread::panicking() {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        let outcome = self.breaker.core().outcome_of(outcome, false, self.started);
        self.breaker.record(self.ticket, outcome);
    }
}
