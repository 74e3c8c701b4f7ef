//! The background syncs of breakers in sync mode: one thread per storage
//! group (a storage and its clones that share connections, see
//! `Storage::sync_group`) for all its breakers, started when the first of
//! them is built and ended when the last is gone. Breakers due together
//! share one pipelined round trip.

use std::sync::Arc;

use lasier_core::facade::{due_now, SyncGroups};
use lasier_core::{BreakerCore, Storage};

use crate::breaker::sync_many_held;

type Core = BreakerCore<dyn Storage>;

/// The most syncs sent in one round trip.
const PIPELINE: usize = 256;

static GROUPS: SyncGroups<Core> = SyncGroups::new();

/// Has `core` (in sync mode, on a store) synced in the background.
pub(crate) fn register(core: &Arc<Core>) {
    let Some(store) = core.store() else { return };
    let Some(group) = GROUPS.join(store.sync_group(), core) else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("lasier-sync".into())
        .spawn({
            let group = Arc::clone(&group);
            move || {
                let _running = group.running();
                while let Some((live, tick)) = GROUPS.pass(&group, Core::sync_period) {
                    let due = due_now(&live, tick, |core| core);
                    for chunk in due.chunks(PIPELINE) {
                        sync_many_held(chunk);
                    }
                    drop(live);
                    std::thread::sleep(tick);
                }
            }
        });
    if spawned.is_err() {
        GROUPS.abandon(&group);
    }
}
