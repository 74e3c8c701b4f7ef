//! The background syncs of breakers in sync mode: one tokio task per
//! storage group (a storage and its clones that share connections, see
//! `AsyncStorage::sync_group`) for all its breakers, spawned when the first
//! of them is first used inside a tokio runtime, and ended when the last is
//! gone. Breakers due together share one pipelined round trip. A store
//! that pushes its changes (`AsyncStorage::watch`) wakes the task, which
//! syncs the breakers named.

use std::sync::Arc;

use lasier_core::facade::{due_now, SyncGroups, PASS_GAP};

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
    if let Some(group) = GROUPS.join(store.sync_group(), Arc::clone(store), parts) {
        // (made here, not in the task: a task never polled, its runtime
        // shutting down, still marks the group dead when dropped)
        let running = group.running();
        runtime.spawn(async move {
            let _running = running;
            // The store's pushes, if it can: asked for once, on the first
            // pass, and stopped when the task ends.
            let woken = Arc::new(tokio::sync::Notify::new());
            let mut watch = None;
            let mut asked = false;
            while let Some((live, tick)) = GROUPS.pass(&group, |parts| parts.core.sync_period()) {
                // (their directory entries, a window apart: a breaker whose
                // calls the mirror serves never asks the store itself)
                for parts in &live {
                    crate::registrar::register_if_due(parts);
                }
                if let (false, Some(store)) = (asked, live.first().and_then(|p| p.core.store())) {
                    asked = true;
                    let woken = Arc::clone(&woken);
                    watch = store.watch(group.on_change(move || woken.notify_one()));
                }
                // (pushed first: a breaker both pushed and due syncs once)
                let mut due = group.pushed_now(&live, |parts| &parts.core);
                due.extend(due_now(&live, tick, |parts| &parts.core));
                for chunk in due.chunks(PIPELINE) {
                    crate::breaker::sync_many_held(chunk).await;
                }
                drop(live);
                // (a push ends the wait early; one whose breaker was syncing
                // already is taken up after the gap)
                let wait = if group.has_pushed() { PASS_GAP } else { tick };
                let waited = tokio::time::Instant::now();
                let _ = tokio::time::timeout(wait, woken.notified()).await;
                if let Some(rest) = PASS_GAP.checked_sub(waited.elapsed()) {
                    tokio::time::sleep(rest).await;
                }
            }
            drop(watch);
        });
    }
    true
}
