//! The background syncs of breakers in sync mode: one tokio task per
//! storage group (a storage and its clones that share connections, see
//! `AsyncStorage::sync_group`) for all its breakers, spawned when the first
//! of them is first used inside a tokio runtime, and ended when the last is
//! gone. Breakers due together share one pipelined round trip.

use std::sync::Arc;

use lasier_core::facade::{due_now, SyncGroups};

use crate::breaker::Parts;

/// The most syncs sent in one round trip.
const PIPELINE: usize = 256;

static GROUPS: SyncGroups<Parts> = SyncGroups::new();

/// Has `parts` (in sync mode, on a store) synced in the background.
/// Returns `false` outside a tokio runtime: try again later.
pub(crate) fn register(parts: &Arc<Parts>) -> bool {
    let Some(store) = parts.core.store() else {
        return true;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return false;
    };
    if let Some(group) = GROUPS.join(store.sync_group(), parts) {
        // (made here, not in the task: a task never polled, its runtime
        // shutting down, still marks the group dead when dropped)
        let running = group.running();
        runtime.spawn(async move {
            let _running = running;
            while let Some((live, tick)) = GROUPS.pass(&group, |parts| parts.core.sync_period()) {
                let due = due_now(&live, tick, |parts| &parts.core);
                for chunk in due.chunks(PIPELINE) {
                    crate::breaker::sync_many_held(chunk).await;
                }
                drop(live);
                tokio::time::sleep(tick).await;
            }
        });
    }
    true
}
