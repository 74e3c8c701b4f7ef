//! The background syncs of breakers in sync mode: one thread per storage
//! group (a storage and its clones that share connections, see
//! `Storage::sync_group`) for all its breakers, started when the first of
//! them is built and ended when the last is gone. Breakers due together
//! share one pipelined round trip. A store that pushes its changes
//! (`Storage::watch`) wakes the thread, which syncs the breakers named.

use std::sync::Arc;

use lasier_core::facade::{due_now, SyncGroups, PASS_GAP};
use lasier_core::{BreakerCore, Storage};

use crate::breaker::sync_many_held;

type Core = BreakerCore<dyn Storage>;

/// The most syncs sent in one round trip.
const PIPELINE: usize = 256;

static GROUPS: SyncGroups<Core> = SyncGroups::new();

/// Has `core` (in sync mode, on a store) synced in the background.
pub(crate) fn register(core: &Arc<Core>) {
    let Some(store) = core.store() else { return };
    let Some(group) = GROUPS.join(store.sync_group(), Arc::clone(store), core) else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("lasier-sync".into())
        .spawn({
            let group = Arc::clone(&group);
            move || {
                let _running = group.running();
                // The store's pushes, if it can: asked for once, on the
                // first pass, and stopped when the thread ends.
                let mut watch = None;
                let mut asked = false;
                while let Some((live, tick)) = GROUPS.pass(&group, Core::sync_period) {
                    if let (false, Some(store)) = (asked, live.first().and_then(|c| c.store())) {
                        asked = true;
                        let thread = std::thread::current();
                        watch = store.watch(group.on_change(move || thread.unpark()));
                    }
                    // (their directory entries, a window apart: a
                    // breaker whose calls the mirror serves never asks the
                    // store itself)
                    for core in &live {
                        crate::registrar::register_if_due(core);
                    }
                    // (pushed first: a breaker both pushed and due syncs
                    // once)
                    let mut due = group.pushed_now(&live, |core| core);
                    due.extend(due_now(&live, tick, |core| core));
                    for chunk in due.chunks(PIPELINE) {
                        sync_many_held(chunk);
                    }
                    drop(live);
                    // (a push unparks it early; one whose breaker was
                    // syncing already is taken up after the gap)
                    let wait = if group.has_pushed() { PASS_GAP } else { tick };
                    let parked = std::time::Instant::now();
                    std::thread::park_timeout(wait);
                    if let Some(rest) = PASS_GAP.checked_sub(parked.elapsed()) {
                        std::thread::sleep(rest);
                    }
                }
                drop(watch);
            }
        });
    if spawned.is_err() {
        GROUPS.abandon(&group);
    }
}
