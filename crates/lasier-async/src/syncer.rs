//! The background syncs of breakers in sync mode: one tokio task per
//! storage group (a storage and its clones that share connections, see
//! `AsyncStorage::sync_group`) for all its breakers, spawned when the first
//! of them is first used inside a tokio runtime, and ended when the last is
//! gone. Breakers due together share one pipelined round trip.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use lasier_core::engine::Due;
use lasier_core::AsyncStorage;

use crate::breaker::Parts;

/// The most syncs sent in one round trip.
const PIPELINE: usize = 256;

/// The breakers in sync mode on one storage instance.
struct Syncer {
    /// The storages' group ([`Storage::sync_group`](lasier_core::Storage::sync_group)).
    storage: usize,
    breakers: Mutex<Vec<Weak<Parts>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn syncers() -> &'static Mutex<Vec<Arc<Syncer>>> {
    static SYNCERS: OnceLock<Mutex<Vec<Arc<Syncer>>>> = OnceLock::new();
    SYNCERS.get_or_init(Mutex::default)
}

fn group(store: &Arc<dyn AsyncStorage>) -> usize {
    store.sync_group()
}

/// Has `parts` (in sync mode, on a store) synced in the background.
/// Returns `false` outside a tokio runtime: try again later.
pub(crate) fn register(parts: &Arc<Parts>) -> bool {
    let Some(store) = parts.core.store() else {
        return true;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return false;
    };
    let storage = group(store);
    let mut all = lock(syncers());
    if let Some(syncer) = all.iter().find(|s| s.storage == storage) {
        lock(&syncer.breakers).push(Arc::downgrade(parts));
        return true;
    }
    let syncer = Arc::new(Syncer {
        storage,
        breakers: Mutex::new(vec![Arc::downgrade(parts)]),
    });
    all.push(Arc::clone(&syncer));
    runtime.spawn(run(syncer));
    true
}

/// The task: every quarter of the shortest interval (at most 250 ms),
/// syncs the breakers that are due, until none is left.
async fn run(syncer: Arc<Syncer>) {
    loop {
        let mut live = Vec::new();
        let mut tick = Duration::from_millis(250);
        {
            let mut breakers = lock(&syncer.breakers);
            breakers.retain(|weak| weak.strong_count() > 0);
            if breakers.is_empty() {
                drop(breakers);
                // Under the registry lock, so that no breaker joins a task
                // that is ending.
                let mut all = lock(syncers());
                if lock(&syncer.breakers).is_empty() {
                    all.retain(|s| !Arc::ptr_eq(s, &syncer));
                    return;
                }
                continue;
            }
            for weak in breakers.iter() {
                if let Some(parts) = weak.upgrade() {
                    if let Some(interval) = parts.core.sync_period() {
                        tick = tick.min(interval / 4);
                    }
                    live.push(parts);
                }
            }
        }
        // Those due together share one round trip (a pipeline), at most
        // PIPELINE at a time.
        let (mut due, rest): (Vec<&Parts>, Vec<&Parts>) = live
            .iter()
            .map(|parts| &**parts)
            .partition(|parts| parts.core.sync_due(tick) == Due::Sync);
        if !due.is_empty() {
            // The others in use come along, unless synced since the last
            // pass: the storage's breakers fall into step.
            due.extend(rest.into_iter().filter(|parts| parts.core.sync_joins(tick)));
        }
        for chunk in due.chunks(PIPELINE) {
            crate::breaker::sync_many_held(chunk).await;
        }
        drop(live);
        tokio::time::sleep(tick.max(Duration::from_millis(1))).await;
    }
}
