//! What a breaker tells the world: state changes, rejections, its store
//! failing or coming back, and (for listeners that ask) each call's end.
//!
//! Register a [`Listener`] on the builder (`.listener(..)`, or the closure
//! shorthands `.on_state_change(..)` and `.on_call_rejected(..)`). Listeners
//! run on the caller's thread, inside the guarded call: keep them short and
//! never block in them. With the feature `tracing`, every breaker also emits
//! the same events as `tracing` events (target `lasier`); opening a circuit
//! is an `error!`, as the Python original logs it at CRITICAL.

use core::fmt;
use core::time::Duration;

use crate::error::StorageError;
use crate::state::State;

/// Receives a breaker's events. Every method has an empty default body:
/// implement the ones you need.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use lasier_core::events::Listener;
/// use lasier_core::State;
///
/// #[derive(Debug, Default)]
/// struct Opened(AtomicU64);
///
/// impl Listener for Opened {
///     fn on_state_change(&self, _breaker: &str, _from: State, to: State) {
///         if to == State::Open {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
/// ```
pub trait Listener: Send + Sync {
    /// The circuit went from `from` to `to`, through a call of this breaker.
    /// Changes made by other processes sharing the store are seen as they
    /// are met (a rejection, a trial), not as they happen.
    fn on_state_change(&self, breaker: &str, from: State, to: State) {
        let _ = (breaker, from, to);
    }

    /// A call was rejected without running.
    fn on_call_rejected(&self, breaker: &str, retry_after: Option<Duration>) {
        let _ = (breaker, retry_after);
    }

    /// The store failed and the breaker now protects calls with an
    /// in-process circuit until the store answers again.
    fn on_fallback_entered(&self, breaker: &str, error: &StorageError) {
        let _ = (breaker, error);
    }

    /// The store answers again: the breaker is back on the shared state.
    fn on_fallback_left(&self, breaker: &str) {
        let _ = breaker;
    }

    /// A storage operation failed (whatever the policy did about it).
    fn on_storage_error(&self, breaker: &str, error: &StorageError) {
        let _ = (breaker, error);
    }

    /// A call the breaker admitted ended: how it counted, and how long it
    /// ran from its admission, on the breaker's clock. Sent only if
    /// [`wants_call_finished`](Self::wants_call_finished) says so: timing
    /// every call costs two clock reads, which a breaker skips unless a
    /// listener asks, `slow_call_duration` is set or the feature `metrics`
    /// is on. A panic under the call is a failure; an async call whose
    /// future was dropped ended without an outcome, and is not told.
    fn on_call_finished(&self, breaker: &str, kind: CallKind, took: Duration) {
        let _ = (breaker, kind, took);
    }

    /// Whether this listener wants [`on_call_finished`](Self::on_call_finished)
    /// (asked once, when the breaker is built). Default: no.
    fn wants_call_finished(&self) -> bool {
        false
    }
}

/// How a call counted, for [`Listener::on_call_finished`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallKind {
    /// It succeeded in time.
    Success,
    /// It failed (an error that counts, or a panic).
    Failure,
    /// It succeeded (or failed with an error that does not count) slower
    /// than `slow_call_duration`: counted as a failure.
    Slow,
    /// It failed with an error that does not count
    /// (`call_filtered`'s predicate said so): counted as a success.
    Ignored,
}

impl CallKind {
    /// Its name in metrics: `successful`, `failed`, `slow` or `ignored`
    /// (resilience4j's `kind` tag values, and `slow`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "successful",
            Self::Failure => "failed",
            Self::Slow => "slow",
            Self::Ignored => "ignored",
        }
    }
}

/// A listener shared with the code that registered it, which keeps a handle
/// (to read what it gathered, say).
impl<L: Listener + ?Sized> Listener for alloc::sync::Arc<L> {
    fn on_state_change(&self, breaker: &str, from: State, to: State) {
        (**self).on_state_change(breaker, from, to);
    }
    fn on_call_rejected(&self, breaker: &str, retry_after: Option<Duration>) {
        (**self).on_call_rejected(breaker, retry_after);
    }
    fn on_fallback_entered(&self, breaker: &str, error: &StorageError) {
        (**self).on_fallback_entered(breaker, error);
    }
    fn on_fallback_left(&self, breaker: &str) {
        (**self).on_fallback_left(breaker);
    }
    fn on_call_finished(&self, breaker: &str, kind: CallKind, took: Duration) {
        (**self).on_call_finished(breaker, kind, took);
    }
    fn wants_call_finished(&self) -> bool {
        (**self).wants_call_finished()
    }
    fn on_storage_error(&self, breaker: &str, error: &StorageError) {
        (**self).on_storage_error(breaker, error);
    }
}

/// A listener made of closures; see the builders' `on_state_change` and
/// `on_call_rejected`.
pub struct FnListener<S, R> {
    /// Called on each state change.
    pub state_change: S,
    /// Called on each rejection.
    pub call_rejected: R,
}

impl<S, R> fmt::Debug for FnListener<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnListener")
    }
}

impl<S, R> Listener for FnListener<S, R>
where
    S: Fn(&str, State, State) + Send + Sync,
    R: Fn(&str, Option<Duration>) + Send + Sync,
{
    fn on_state_change(&self, breaker: &str, from: State, to: State) {
        (self.state_change)(breaker, from, to);
    }
    fn on_call_rejected(&self, breaker: &str, retry_after: Option<Duration>) {
        (self.call_rejected)(breaker, retry_after);
    }
}

/// The closure that does nothing, for the unused half of an [`FnListener`].
pub fn ignore_state_change(_: &str, _: State, _: State) {}

/// The closure that does nothing, for the unused half of an [`FnListener`].
pub fn ignore_rejection(_: &str, _: Option<Duration>) {}

/// The listener behind the feature `tracing`: every event as a `tracing`
/// event, target `lasier`.
#[cfg(feature = "tracing")]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tracing;

#[cfg(feature = "tracing")]
impl Listener for Tracing {
    fn on_state_change(&self, breaker: &str, from: State, to: State) {
        if to == State::Open {
            // The original logs an opening at CRITICAL.
            tracing::error!(target: "lasier", breaker, %from, %to, "circuit opened");
        } else {
            tracing::info!(target: "lasier", breaker, %from, %to, "circuit state changed");
        }
    }

    fn on_call_rejected(&self, breaker: &str, retry_after: Option<Duration>) {
        tracing::debug!(target: "lasier", breaker, ?retry_after, "call rejected");
    }

    fn on_fallback_entered(&self, breaker: &str, error: &StorageError) {
        tracing::warn!(target: "lasier", breaker, %error, "store failed; protecting calls in-process");
    }

    fn on_fallback_left(&self, breaker: &str) {
        tracing::info!(target: "lasier", breaker, "store answers again; back on the shared state");
    }

    fn on_storage_error(&self, breaker: &str, error: &StorageError) {
        tracing::warn!(target: "lasier", breaker, %error, "storage operation failed");
    }
}
