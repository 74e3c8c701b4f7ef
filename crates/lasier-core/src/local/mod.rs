//! One circuit held in this process, on atomics.
//!
//! [`LocalCircuit`] is the in-process state of one circuit: the phase of the
//! state machine in [`crate::state`], and the counting window. It is what
//! `MemoryStorage` hands to breakers, and what a shared breaker can fall back
//! to. It takes no lock and allocates nothing:
//!
//! * admission on a closed circuit is one atomic load, without reading the
//!   clock;
//! * a success under a rule that does not count requests
//!   ([`Rule::counts_requests`](crate::Rule::counts_requests) false, as `MaxFailuresRule`) writes nothing;
//! * counting (requests, failures) is a compare-and-swap on a word that
//!   carries the window's generation, so an increment never lands in a window
//!   that has been replaced, and a new window starts with both counters at 0;
//! * requests are counted on one word until two threads meet there (a
//!   compare-and-swap that fails); then, with `std`, on [`STRIPES`] cache
//!   lines allocated for the purpose, one chosen per thread, so that threads
//!   sharing a circuit do not fight over one line; the count is the sum.
//!   A circuit that no two threads count on at once stays small: its state
//!   is a few words, not a few cache lines, which matters to a registry of
//!   thousands of breakers.

//!
//! Three files: `word.rs` (the phase in one word), `window.rs` (the
//! generational counters and their stripes), `circuit.rs` (the state
//! machine over both).

mod circuit;
#[cfg(feature = "alloc")]
mod ring;
#[cfg(feature = "alloc")]
mod sliding;
mod window;
mod word;

#[cfg(feature = "alloc")]
pub use circuit::LocalBinding;
pub use circuit::LocalCircuit;
pub use window::STRIPES;
#[cfg(feature = "std")]
pub(crate) use window::{stripe, Stripes};
