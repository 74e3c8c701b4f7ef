use std::mem::ManuallyDrop;

use lasier_core::{Outcome, Ticket};

use crate::breaker::CircuitBreaker;

/// A call in progress, from [`CircuitBreaker::enter`]: the async context
/// manager of the Python original.
///
/// Say how the call ended with [`success`](Self::success) or
/// [`failure`](Self::failure), and await it: on a shared store, recording
/// takes a round trip.
///
/// ```
/// use lasier_async::CircuitBreaker;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let breaker = CircuitBreaker::builder("db").max_failures(1).build()?;
/// let guard = breaker.enter().await?;
/// // ... the guarded work ...
/// guard.failure().await;
/// assert!(breaker.enter().await.is_err());
/// # Ok(())
/// # }
/// ```
///
/// # Dropped without a verdict: a cancellation
///
/// Unlike the sync facade's guard, where a drop without a verdict counts as
/// a success, a guard dropped here is a **cancelled** call: the future
/// holding it was dropped before it completed (a `tokio::time::timeout`
/// that fired, a `select!` branch that lost, an aborted task). Nothing is
/// recorded, not even a request, and a half-open trial permit the call held
/// is given back, so a cancelled trial never leaves the circuit stuck:
///
/// * **in-memory storage** (the default): the slot is free again when
///   `drop` returns;
/// * **shared store**: giving the slot back is a store round trip, which
///   `drop` cannot await (and the breaker spawns no task). The guard leaves
///   the permit with its breaker, and the next [`enter`](CircuitBreaker::enter)
///   (or [`call`](CircuitBreaker::call)) on this breaker or a clone of it
///   gives it back to the store before asking for its own admission. If no
///   such call comes (the process exits, or that call is itself cancelled
///   while giving the permit back), the store's trial key expires
///   `circuit_timeout` after the half-open period's first trial, and the
///   period ends with it: with the default storage steps the circuit is then
///   closed, as the Python original closes an open circuit after
///   `circuit_timeout`. A permit of a half-open period that this breaker
///   saw end (a trial's verdict closed or reopened the circuit, or a new
///   period began) is not given back, as it would free a slot of a later
///   period.
///
/// A guard dropped while its thread panics counts as a failure, as in the
/// sync facade, on the in-memory storage: a panic in the guarded code
/// unwinds through the async function or block holding the guard, which
/// drops it then, whatever the executor does with the future afterwards. On
/// a shared store, whose record needs a round trip, it is a cancellation.
///
/// To count a timeout as a failure rather than a cancellation, put the
/// timeout inside the guarded future, e.g.
/// `breaker.call(async { timeout(d, work).await.map_err(..)? })`.
#[derive(Debug)]
#[must_use = "dropping the guard at once cancels the call: nothing is recorded"]
pub struct Guard<'a> {
    breaker: &'a CircuitBreaker,
    ticket: Ticket,
    /// The breaker's count of ended half-open periods at admission.
    period: u32,
    /// When the call started, with `slow_call_duration`.
    started: Option<std::time::Duration>,
}

impl<'a> Guard<'a> {
    // (inline, as the sync guard's: out of line, the ticket goes through
    // memory on every call)
    #[inline]
    pub(crate) fn new(breaker: &'a CircuitBreaker, ticket: Ticket, period: u32) -> Self {
        Self {
            breaker,
            ticket,
            period,
            started: breaker.core().call_started(),
        }
    }

    /// The call succeeded.
    #[inline]
    pub async fn success(self) {
        self.finish(Outcome::Success).await;
    }

    /// The call failed, and the failure counts.
    #[inline]
    pub async fn failure(self) {
        self.finish(Outcome::Failure).await;
    }

    #[inline]
    async fn finish(self, outcome: Outcome) {
        // Disarmed before the round trip: if this future is dropped during
        // it, the outcome may or may not have reached the store, and giving
        // the permit back as well could count the call twice.
        let this = ManuallyDrop::new(self);
        let outcome = this.breaker.core().outcome_of(outcome, false, this.started);
        this.breaker.record(this.ticket, outcome).await;
    }

    /// Drops the guard without a cancellation: the caller records the
    /// outcome itself.
    #[inline]
    pub(crate) fn disarm(self) -> Option<std::time::Duration> {
        ManuallyDrop::new(self).started
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.breaker.abandon(
            self.ticket,
            self.period,
            std::thread::panicking(),
            self.started,
        );
    }
}
