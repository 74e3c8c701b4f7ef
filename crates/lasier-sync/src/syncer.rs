//! The background syncs of breakers in sync mode: one thread per storage
//! group (a storage and its clones that share connections, see
//! `Storage::sync_group`) for all its breakers, started when the first of
//! them is built and ended when the last is gone. Breakers due together
//! share one pipelined round trip.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use lasier_core::engine::Due;
use lasier_core::{BreakerCore, Storage};

use crate::breaker::sync_many_held;

/// The most syncs sent in one round trip.
const PIPELINE: usize = 256;

type Core = BreakerCore<dyn Storage>;

/// The breakers in sync mode on one storage instance.
struct Syncer {
    /// The storages' group ([`Storage::sync_group`](lasier_core::Storage::sync_group)).
    storage: usize,
    breakers: Mutex<Vec<Weak<Core>>>,
    /// Wakes the thread early: a breaker with a shorter interval joined.
    wake: Condvar,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn syncers() -> &'static Mutex<Vec<Arc<Syncer>>> {
    static SYNCERS: OnceLock<Mutex<Vec<Arc<Syncer>>>> = OnceLock::new();
    SYNCERS.get_or_init(Mutex::default)
}

fn group(store: &Arc<dyn Storage>) -> usize {
    store.sync_group()
}

/// Has `core` (in sync mode, on a store) synced in the background.
pub(crate) fn register(core: &Arc<Core>) {
    let Some(store) = core.store() else { return };
    let storage = group(store);
    let mut all = lock(syncers());
    if let Some(syncer) = all.iter().find(|s| s.storage == storage) {
        lock(&syncer.breakers).push(Arc::downgrade(core));
        syncer.wake.notify_one();
        return;
    }
    let syncer = Arc::new(Syncer {
        storage,
        breakers: Mutex::new(vec![Arc::downgrade(core)]),
        wake: Condvar::new(),
    });
    let spawned = std::thread::Builder::new()
        .name("lasier-sync".into())
        .spawn({
            let syncer = Arc::clone(&syncer);
            move || run(&syncer)
        });
    // Without a thread (the system refused one), breakers still sync on
    // failures, when stale and on flush; only the periodic push is lost.
    if spawned.is_ok() {
        all.push(syncer);
    }
}

/// The thread: every quarter of the shortest interval, syncs the breakers
/// that are due, until none is left.
fn run(syncer: &Syncer) {
    loop {
        let mut live = Vec::new();
        let mut tick = Duration::from_millis(250);
        {
            let mut breakers = lock(&syncer.breakers);
            breakers.retain(|weak| weak.strong_count() > 0);
            if breakers.is_empty() {
                drop(breakers);
                // Under the registry lock, so that no breaker joins a
                // thread that is ending.
                let mut all = lock(syncers());
                if lock(&syncer.breakers).is_empty() {
                    all.retain(|s| !std::ptr::eq(&**s, syncer));
                    return;
                }
                continue;
            }
            for weak in breakers.iter() {
                if let Some(core) = weak.upgrade() {
                    if let Some(interval) = core.sync_period() {
                        tick = tick.min(interval / 4);
                    }
                    live.push(core);
                }
            }
        }
        // Those due together share one round trip (a pipeline), at most
        // PIPELINE at a time.
        let (mut due, rest): (Vec<&Core>, Vec<&Core>) = live
            .iter()
            .map(|core| &**core)
            .partition(|core| core.sync_due(tick) == Due::Sync);
        if !due.is_empty() {
            // The others in use come along, unless synced since the last
            // pass: the storage's breakers fall into step.
            due.extend(rest.into_iter().filter(|core| core.sync_joins(tick)));
        }
        for chunk in due.chunks(PIPELINE) {
            sync_many_held(chunk);
        }
        drop(live);
        let breakers = lock(&syncer.breakers);
        let _ = syncer
            .wake
            .wait_timeout(breakers, tick.max(Duration::from_millis(1)))
            .unwrap_or_else(PoisonError::into_inner);
    }
}
