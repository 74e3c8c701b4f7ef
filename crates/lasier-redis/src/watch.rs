//! The store's pushes of circuit changes, for breakers in sync mode.
//!
//! The scripts that change a circuit's state (`open.lua` on an opening,
//! `trial.lua` on the trials' verdict) and the storage's manual steps
//! (`set_manual`, `reset`) `PUBLISH` the circuit's name on [`CHANNEL`]. A
//! storage's watch ([`Storage::watch`](lasier_core::Storage::watch)) is one
//! thread with one connection subscribed to it, which tells the breakers'
//! background sync: the breakers of that name then sync at once, and see
//! the change about one round trip after it was made instead of up to one
//! sync interval later.
//!
//! On a Redis Cluster a plain `PUBLISH` reaches the subscribers of every
//! node, so the watch subscribes on one seed node (the next one when it
//! fails). Changes are rare (openings, verdicts, changes by hand), so the
//! broadcast costs the cluster little.
//!
//! What the watch misses is still seen at the next sync: a message lost
//! while its connection was down (it then has every breaker sync once it is
//! back), a circuit opened by Python `lasier` (which does not publish), or
//! a storage made from a connection or a cluster builder of yours (which
//! has no address to subscribe with).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lasier_core::{Change, Changed, Watch};
use redis::{ConnectionInfo, RedisResult};

/// The channel on which lasier publishes the name of each circuit whose
/// state it changed. Publish a name there yourself (after changing a
/// circuit's keys by hand) and the breakers in sync mode that share it
/// sync at once.
pub const CHANNEL: &str = "lasier:changes";

/// How long the watch's thread waits for a message before it checks
/// whether its watch was dropped: it ends at most this long after.
const POLL: Duration = Duration::from_millis(200);

/// The longest wait between two attempts to subscribe again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The wait after the server refused the channel (`NOPERM`).
const DENIED_BACKOFF: Duration = Duration::from_secs(60);

/// Where a storage's watch subscribes: its server, or a cluster's seed
/// nodes (tried in turn).
pub(crate) struct WatchOn {
    nodes: Vec<ConnectionInfo>,
    connect_timeout: Duration,
}

impl WatchOn {
    /// `None` without a node to subscribe on.
    pub(crate) fn new(nodes: Vec<ConnectionInfo>, connect_timeout: Duration) -> Option<Self> {
        (!nodes.is_empty()).then_some(Self {
            nodes,
            connect_timeout,
        })
    }

    /// The nodes: a server, or a cluster's seeds.
    pub(crate) fn nodes(&self) -> &[ConnectionInfo] {
        &self.nodes
    }

    /// The timeout of a connection to one of them.
    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
}

/// Sets the flag that ends the watch's thread when the watch is dropped.
struct Stop(Arc<AtomicBool>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Starts the watch: `None` if its thread could not be started (the
/// breakers then see changes at their next sync, as without a watch).
pub(crate) fn start(on: WatchOn, changed: Changed) -> Option<Watch> {
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::Builder::new()
        .name("lasier-watch".into())
        .spawn({
            let stop = Arc::clone(&stop);
            move || run(&on, &*changed, &stop)
        })
        .ok()?;
    Some(Watch::new(Stop(stop)))
}

/// The watch's thread: subscribes, and again after each failure, on the
/// next node, waiting longer each time, until stopped.
fn run(on: &WatchOn, changed: &(dyn Fn(Change<'_>) + Send + Sync), stop: &AtomicBool) {
    let mut node = 0;
    let mut backoff = POLL;
    while !stop.load(Ordering::Acquire) {
        match listen(on, &on.nodes[node], changed, stop, &mut backoff) {
            Ok(()) => return,
            // An ACL that denies the channel: no retry will do better soon
            // (the breakers sync on their interval meanwhile).
            Err(e) if e.code() == Some("NOPERM") => backoff = backoff.max(DENIED_BACKOFF),
            Err(_) => {}
        }
        node = (node + 1) % on.nodes.len();
        let mut waited = Duration::ZERO;
        while waited < backoff && !stop.load(Ordering::Acquire) {
            std::thread::sleep(POLL);
            waited += POLL;
        }
        if backoff < DENIED_BACKOFF {
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Subscribes on `node` and passes each message on, until stopped (`Ok`)
/// or the connection fails (`Err`). Once subscribed, it has every breaker
/// sync (what changed while it was not subscribed is unknown) and resets
/// `backoff`.
fn listen(
    on: &WatchOn,
    node: &ConnectionInfo,
    changed: &(dyn Fn(Change<'_>) + Send + Sync),
    stop: &AtomicBool,
    backoff: &mut Duration,
) -> RedisResult<()> {
    let client = redis::Client::open(node.clone())?;
    let mut conn = client.get_connection_with_timeout(on.connect_timeout)?;
    let mut pubsub = conn.as_pubsub();
    pubsub.set_read_timeout(Some(on.connect_timeout))?;
    pubsub.subscribe(CHANNEL)?;
    pubsub.set_read_timeout(Some(POLL))?;
    *backoff = POLL;
    changed(Change::All);
    loop {
        if stop.load(Ordering::Acquire) {
            return Ok(());
        }
        match pubsub.get_message() {
            // (a name that is not UTF-8 is no breaker's)
            Ok(message) => {
                if let Ok(name) = std::str::from_utf8(message.get_payload_bytes()) {
                    changed(Change::Circuit(name));
                }
            }
            Err(e) if e.is_timeout() => {}
            Err(e) => return Err(e),
        }
    }
}
