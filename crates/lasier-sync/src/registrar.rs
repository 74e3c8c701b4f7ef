//! The writes of breakers' entries in their store's directory of circuits
//! (see `lasier_core::directory`), off the calls' path: one thread for the
//! process, started by the first breaker built on a store, that writes each
//! entry handed to it, one after the other. A full queue (a store that
//! does not answer) drops the entry: it is written again a window later.

use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, OnceLock};

use lasier_core::{BreakerCore, Steps, Storage};

type Core = BreakerCore<dyn Storage>;

/// Entries waiting for the thread, at most.
const QUEUE: usize = 1024;

static QUEUE_IN: OnceLock<Option<SyncSender<Arc<Core>>>> = OnceLock::new();

/// Hands `core`'s entry to the thread if it is due (a new breaker, or a
/// window since the last); a breaker without a store has none.
pub(crate) fn register_if_due(core: &Arc<Core>) {
    if !core.registration_due() {
        return;
    }
    if let Some(queue) = QUEUE_IN.get_or_init(start) {
        // (full: dropped, and written again a window later)
        let _ = queue.try_send(Arc::clone(core));
    }
}

fn start() -> Option<SyncSender<Arc<Core>>> {
    let (queue, entries) = sync_channel::<Arc<Core>>(QUEUE);
    std::thread::Builder::new()
        .name("lasier-registrar".into())
        .spawn(move || {
            for core in entries {
                if let Some(store) = core.store() {
                    // (an error reaches no caller: the next window tries
                    // again)
                    let _ = store.register(core.circuit(), &core.registration());
                }
            }
        })
        .ok()?;
    Some(queue)
}
