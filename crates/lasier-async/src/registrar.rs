//! The writes of breakers' entries in their store's directory of circuits
//! (see `lasier_core::directory`), off the calls' path: each a short task
//! on the tokio runtime the breaker is used in. Without a runtime (a
//! breaker built outside one), the entry waits for the breaker's first
//! call that asks the store, or its next background sync.

use std::sync::Arc;

use lasier_core::AsyncSteps;

use crate::breaker::Parts;

/// Spawns the write of `parts`' entry if it is due (a new breaker, or a
/// window since the last); a breaker without a store has none.
pub(crate) fn register_if_due(parts: &Arc<Parts>) {
    // (the runtime first: without one, the entry stays due)
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if !parts.core.registration_due() {
        return;
    }
    let parts = Arc::clone(parts);
    runtime.spawn(async move {
        let core = &parts.core;
        if let Some(store) = core.store() {
            // (an error reaches no caller: the next window tries again)
            let _ = store.register(core.circuit(), &core.registration()).await;
        }
    });
}
