//! The pool's ledger: how many connections may exist, who waits for a free
//! one, and which ones may go back after a failure. Kept apart from the
//! pool (`pool.rs`), which makes and checks connections, so that it can be
//! tested without a server.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// A connection the pool holds, and the generation it was made in.
#[derive(Debug)]
pub(crate) struct Entry<T> {
    pub(crate) item: T,
    pub(crate) generation: u64,
}

/// What [`Ledger::take`] gives a step.
#[derive(Debug)]
pub(crate) enum Taken<T> {
    /// An idle connection.
    Idle(Entry<T>),
    /// Leave to make a connection of this generation. It counts as open
    /// from now: call [`Ledger::make_failed`] if making it fails.
    Make { generation: u64 },
}

/// Up to a number of connections, made on demand, and the steps waiting for
/// one.
#[derive(Debug)]
pub(crate) struct Ledger<T> {
    state: Mutex<State<T>>,
    freed: Condvar,
}

#[derive(Debug)]
struct State<T> {
    idle: Vec<Entry<T>>,
    /// Connections that exist or are being made, idle or not.
    open: u32,
    /// Bumped when a connection fails: those of an older generation are
    /// dropped instead of going back to the pool.
    generation: u64,
    /// Steps waiting for a connection. One is woken only if there are any:
    /// `Condvar::notify_*` is a system call whether or not anyone waits,
    /// and giving a connection back is on every step's path.
    waiting: u32,
}

impl<T> Ledger<T> {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
                generation: 0,
                waiting: 0,
            }),
            freed: Condvar::new(),
        }
    }

    // Nothing panics while holding the lock, but a poisoned lock must not
    // take the breaker down either: the state stays consistent.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// (open, idle) connections now.
    pub(crate) fn state(&self) -> (u32, usize) {
        let state = self.lock();
        (state.open, state.idle.len())
    }

    /// An idle connection, or leave to make one while fewer than `size`
    /// are open; otherwise waits for one to be given back, until
    /// `deadline`. `None` if none was by then.
    pub(crate) fn take(&self, size: u32, deadline: Instant) -> Option<Taken<T>> {
        let mut state = self.lock();
        loop {
            if let Some(entry) = state.idle.pop() {
                return Some(Taken::Idle(entry));
            }
            if state.open < size {
                state.open += 1;
                return Some(Taken::Make {
                    generation: state.generation,
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            state.waiting += 1;
            state = self
                .freed
                .wait_timeout(state, left)
                .map_or_else(|e| e.into_inner().0, |(state, _)| state);
            state.waiting -= 1;
        }
    }

    /// Making the connection [`take`](Self::take) gave leave for failed:
    /// its place is free again.
    pub(crate) fn make_failed(&self) {
        let mut state = self.lock();
        state.open = state.open.saturating_sub(1);
        let waiting = state.waiting > 0;
        drop(state);
        if waiting {
            self.freed.notify_one();
        }
    }

    /// Gives `entry` back at the end of a step.
    ///
    /// * `failed`: the server may be gone or hung, and so, most likely, are
    ///   the other connections to it: the idle ones are dropped, and those
    ///   in use are when they come back, rather than failing one step on
    ///   each;
    /// * otherwise it goes back idle if it is of the current generation and
    ///   `usable` (still open), and is dropped if not.
    pub(crate) fn give_back(&self, entry: Entry<T>, failed: bool, usable: bool) {
        let mut state = self.lock();
        let mut dropped = Vec::new();
        if failed {
            state.generation += 1;
            dropped = std::mem::take(&mut state.idle);
            let gone = u32::try_from(dropped.len()).unwrap_or(u32::MAX);
            state.open = state.open.saturating_sub(gone.saturating_add(1));
        } else if entry.generation != state.generation || !usable {
            state.open = state.open.saturating_sub(1);
        } else {
            state.idle.push(entry);
            let waiting = state.waiting > 0;
            drop(state);
            if waiting {
                self.freed.notify_one();
            }
            return;
        }
        let waiting = state.waiting > 0;
        drop(state);
        // Closing sockets outside the lock.
        drop(dropped);
        drop(entry);
        if waiting {
            self.freed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[test]
    fn makes_up_to_size_then_reuses() {
        let ledger = Ledger::<u32>::new();
        let Some(Taken::Make { generation }) = ledger.take(1, soon()) else {
            panic!("expected leave to make one")
        };
        // the only place is taken: nothing by a deadline already passed
        assert!(ledger.take(1, Instant::now()).is_none());
        ledger.give_back(
            Entry {
                item: 7,
                generation,
            },
            false,
            true,
        );
        assert_eq!(ledger.state(), (1, 1));
        let Some(Taken::Idle(entry)) = ledger.take(1, soon()) else {
            panic!("expected the idle one")
        };
        assert_eq!(entry.item, 7);
    }

    #[test]
    fn a_failure_drops_the_idle_ones_and_the_older_generation() {
        let ledger = Ledger::<u32>::new();
        let (
            Some(Taken::Make { generation: a }),
            Some(Taken::Make { generation: b }),
            Some(Taken::Make { generation: c }),
        ) = (
            ledger.take(3, soon()),
            ledger.take(3, soon()),
            ledger.take(3, soon()),
        )
        else {
            panic!("expected leave to make three")
        };
        ledger.give_back(
            Entry {
                item: 1,
                generation: a,
            },
            false,
            true,
        );
        assert_eq!(ledger.state(), (3, 1));
        // the third fails: the idle first is dropped with it
        ledger.give_back(
            Entry {
                item: 3,
                generation: c,
            },
            true,
            true,
        );
        assert_eq!(ledger.state(), (1, 0));
        // the second comes back from before the failure: dropped
        ledger.give_back(
            Entry {
                item: 2,
                generation: b,
            },
            false,
            true,
        );
        assert_eq!(ledger.state(), (0, 0));
    }

    #[test]
    fn waiters_get_every_connection_given_back() {
        // One connection, eight threads: each step waits for the one before
        // it. A lost wake-up would leave a thread waiting until its 30 s
        // deadline and fail the test.
        let ledger = Ledger::<u32>::new();
        let made = AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..500 {
                        let entry = match ledger.take(1, soon()) {
                            Some(Taken::Idle(entry)) => entry,
                            Some(Taken::Make { generation }) => {
                                made.fetch_add(1, Ordering::Relaxed);
                                Entry {
                                    item: 0,
                                    generation,
                                }
                            }
                            None => panic!("no connection within 30 s"),
                        };
                        ledger.give_back(entry, false, true);
                    }
                });
            }
        });
        assert_eq!(made.load(Ordering::Relaxed), 1);
        assert_eq!(ledger.state(), (1, 1));
    }
}
