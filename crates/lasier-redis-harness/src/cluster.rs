//! A local Redis Cluster: six `redis-server` processes (three masters, three
//! replicas) that the test binary starts on free ports of 127.0.0.1 and
//! kills when it exits, however it exits.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::server::{installed, RedisServer, ServerOptions};
use crate::skip;

/// The number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// How long a node may stay silent before the others take it for failed
/// (`cluster-node-timeout`): short, so that a replica takes over within
/// seconds of its master's death.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(2000);

/// How long [`RedisCluster::wait_healthy`] waits.
pub const HEALTHY_WITHIN: Duration = Duration::from_secs(30);

const NODES: usize = 6;
/// A node's cluster bus listens on its port plus this.
const BUS_OFFSET: u16 = 10_000;

/// A Redis Cluster of real `redis-server` processes, three masters with one
/// replica each, on free ports of 127.0.0.1 (each node's cluster bus on its
/// port + 10000). Nodes are [`RedisServer`]s: kill one to fail it over,
/// restart it and it rejoins (as a replica, if its replica took over).
///
/// ```no_run
/// use lasier_redis_harness::{cluster_or_skip, unique};
///
/// #[test]
/// fn writes_a_key() {
///     // This test binary's cluster, started on first use; a loud skip (or
///     // a failure with LASIER_REQUIRE_REDIS=1) where redis-server or
///     // redis-cli is missing.
///     let cluster = cluster_or_skip!();
///     let master = cluster.masters()[0];
///     // A hash tag whose slot that master serves.
///     let key = format!("{}:counter", cluster.tag_on(master, "example"));
///     master.cmd::<()>(&["SET", &key, "1"]);
/// }
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    dir: PathBuf,
}

/// A phase of [`RedisCluster::migrate_slot_in_steps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Migration {
    /// The source migrates the slot and the target imports it; the keys
    /// have not moved yet.
    Migrating,
    /// Every key of the slot is on the target, which does not serve the
    /// slot yet: a client that asks the source is sent on (`ASK`), and the
    /// target serves a command all of whose keys it has.
    KeysMoved,
}

/// One node as a node's `CLUSTER NODES` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeView {
    /// Its node id.
    pub id: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Whether it is a master.
    pub master: bool,
    /// Whether it is taken for failed (`fail` or `fail?`).
    pub failed: bool,
    /// The id of its master, for a replica.
    pub master_id: Option<String>,
    /// The slot ranges it serves (inclusive), for a master.
    pub slots: Vec<(u16, u16)>,
}

/// This test binary's shared cluster, started on first use; `None` (after
/// a loud message, see [`skip`]) if `redis-server` or `redis-cli` is
/// missing.
pub fn cluster() -> Option<&'static RedisCluster> {
    static CLUSTER: OnceLock<Option<RedisCluster>> = OnceLock::new();
    CLUSTER.get_or_init(RedisCluster::start).as_ref()
}

/// This test binary's shared [`RedisCluster`], or returns from the calling
/// test after a loud skip message (see [`skip`]).
#[macro_export]
macro_rules! cluster_or_skip {
    () => {
        match $crate::cluster() {
            Some(cluster) => cluster,
            None => return,
        }
    };
}

/// Whether `redis-cli` (which creates the cluster) can be run; says so
/// loudly once if not.
fn cli_installed() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    let what = "redis-cli is not installed (apt-get install redis-tools)";
    let installed = *INSTALLED.get_or_init(|| {
        let found = Command::new("redis-cli")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            skip(what);
        }
        found
    });
    if !installed && crate::required() {
        skip(what);
    }
    installed
}

/// A port below 55535 that is free, and whose bus port (+10000) is free too.
fn free_node_port() -> Result<u16, String> {
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        if port >= u16::MAX - BUS_OFFSET {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + BUS_OFFSET)).is_ok() {
            return Ok(port);
        }
    }
    Err("no free pair of ports (port, port + 10000) below 55535".to_owned())
}

fn node_options(dir: &Path, port: u16) -> ServerOptions {
    let dir = dir.to_string_lossy();
    ServerOptions::new()
        .arg("--cluster-enabled")
        .arg("yes")
        .arg("--dir")
        .arg(&dir)
        .arg("--cluster-config-file")
        .arg(&format!("nodes-{port}.conf"))
        .arg("--cluster-node-timeout")
        .arg(&NODE_TIMEOUT.as_millis().to_string())
        // A replica may always take over, however long its master was gone.
        .arg("--cluster-replica-validity-factor")
        .arg("0")
        // A replica's first sync starts at once, not after 5 s.
        .arg("--repl-diskless-sync-delay")
        .arg("0")
        // Replicas stay with their masters: the topology the tests set up.
        .arg("--cluster-allow-replica-migration")
        .arg("no")
}

/// Whether the process `pid` exists.
fn pid_alive(pid: &str) -> bool {
    Command::new("kill")
        .args(["-0", pid])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Removes the node files of clusters whose test binary is gone.
fn remove_stale_dirs(temp: &Path) {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix("lasier-cluster-"))
        else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('-') else {
            continue;
        };
        if pid.chars().all(|c| c.is_ascii_digit()) && !pid_alive(pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A connection to `node` with short timeouts: `None` if it does not answer.
fn connect(node: &RedisServer) -> Option<redis::Connection> {
    let client = redis::Client::open(node.url()).ok()?;
    let connection = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    connection
        .set_read_timeout(Some(Duration::from_secs(2)))
        .ok()?;
    Some(connection)
}

fn query<T: redis::FromRedisValue>(node: &RedisServer, args: &[&str]) -> Result<T, String> {
    let mut connection = connect(node).ok_or_else(|| format!("node {} is down", node.port()))?;
    let (name, rest) = args.split_first().ok_or("an empty command")?;
    let mut cmd = redis::cmd(name);
    for arg in rest {
        cmd.arg(*arg);
    }
    cmd.query(&mut connection)
        .map_err(|e| format!("node {}: {args:?}: {e}", node.port()))
}

/// `field:value` lines of an `INFO` or `CLUSTER INFO` reply.
fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

fn parse_nodes(text: &str) -> Vec<NodeView> {
    let mut nodes = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() < 8 {
            continue;
        }
        let address = parts[1].split(['@', ',']).next().unwrap_or_default();
        let Some(port) = address
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse::<u16>().ok())
        else {
            continue;
        };
        let flags: Vec<&str> = parts[2].split(',').collect();
        let slots = parts[8..]
            .iter()
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => s.parse().ok().map(|n| (n, n)),
            })
            .collect();
        nodes.push(NodeView {
            id: parts[0].to_owned(),
            port,
            master: flags.contains(&"master"),
            failed: flags.iter().any(|f| *f == "fail" || *f == "fail?"),
            master_id: (parts[3] != "-").then(|| parts[3].to_owned()),
            slots,
        });
    }
    nodes
}

impl RedisCluster {
    /// Starts a cluster of the calling test's own (most tests share the
    /// binary's, [`cluster`]), and waits until it is
    /// [healthy](Self::wait_healthy). `None` (after a loud message) if
    /// `redis-server` or `redis-cli` is missing.
    ///
    /// # Panics
    ///
    /// If a tool is missing and `LASIER_REQUIRE_REDIS=1`, or if the cluster
    /// does not come up.
    pub fn start() -> Option<Self> {
        if !installed() || !cli_installed() {
            return None;
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let temp = std::env::temp_dir();
        remove_stale_dirs(&temp);
        let dir = temp.join(format!(
            "lasier-cluster-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let mut cluster = Self {
            nodes: Vec::with_capacity(NODES),
            dir,
        };
        while cluster.nodes.len() < NODES {
            let mut last = String::new();
            let mut started = None;
            for _ in 0..10 {
                let port = match free_node_port() {
                    Ok(port) => port,
                    Err(e) => {
                        last = e;
                        continue;
                    }
                };
                match RedisServer::start_on(port, node_options(&cluster.dir, port)) {
                    Ok(node) => {
                        started = Some(node);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            let node = started.unwrap_or_else(|| panic!("could not start a cluster node: {last}"));
            cluster.nodes.push(node);
        }
        cluster.create();
        cluster.wait_healthy();
        Some(cluster)
    }

    /// `redis-cli --cluster create`: the first three nodes become masters.
    fn create(&self) {
        let mut command = Command::new("redis-cli");
        command.args(["--cluster", "create"]);
        for node in &self.nodes {
            command.arg(format!("127.0.0.1:{}", node.port()));
        }
        command
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("running redis-cli --cluster create: {e}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("redis-cli --cluster create did not finish within 60 s");
                }
            }
        }
        let output = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("redis-cli --cluster create: {e}"));
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() || !text.contains("All 16384 slots covered") {
            panic!(
                "redis-cli --cluster create failed ({}):\n{text}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }

    /// Every node, running or not, in the order they were started.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The node on `port`.
    ///
    /// # Panics
    ///
    /// If no node of this cluster listens on `port`.
    pub fn node(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no node of this cluster on port {port}"))
    }

    /// `redis://127.0.0.1:port/` of every node: the seed list of a cluster
    /// client.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The cluster as the first running node that answers sees it.
    ///
    /// # Panics
    ///
    /// If no node answers.
    pub fn view(&self) -> Vec<NodeView> {
        let mut last = String::from("no node runs");
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            match query::<String>(node, &["CLUSTER", "NODES"]) {
                Ok(text) => return parse_nodes(&text),
                Err(e) => last = e,
            }
        }
        panic!("no cluster node answers: {last}");
    }

    /// The masters that serve slots, in the order of their first slot.
    pub fn masters(&self) -> Vec<&RedisServer> {
        let mut masters: Vec<NodeView> = self
            .view()
            .into_iter()
            .filter(|n| n.master && !n.slots.is_empty())
            .collect();
        masters.sort_by_key(|n| n.slots.iter().map(|(a, _)| *a).min());
        masters.iter().map(|n| self.node(n.port)).collect()
    }

    /// The master that serves `slot`.
    ///
    /// # Panics
    ///
    /// If no master serves it.
    pub fn master_of_slot(&self, slot: u16) -> &RedisServer {
        self.view()
            .into_iter()
            .find(|n| n.master && n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .map(|n| self.node(n.port))
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`).
    pub fn slot(&self, key: &str) -> u16 {
        let node = self.masters()[0];
        node.cmd(&["CLUSTER", "KEYSLOT", key])
    }

    /// The master that serves `key`.
    pub fn master_of(&self, key: &str) -> &RedisServer {
        self.master_of_slot(self.slot(key))
    }

    /// A running replica of `master`, if it has one.
    pub fn replica_of(&self, master: &RedisServer) -> Option<&RedisServer> {
        let view = self.view();
        let id = view.iter().find(|n| n.port == master.port())?.id.clone();
        view.iter()
            .filter(|n| n.master_id.as_deref() == Some(&id) && !n.failed)
            .map(|n| self.node(n.port))
            .find(|n| n.is_running())
    }

    /// The node id of `node` (`CLUSTER MYID`).
    pub fn id_of(&self, node: &RedisServer) -> String {
        node.cmd(&["CLUSTER", "MYID"])
    }

    /// A hash tag no other test uses, `{prefix-pid-n}`, whose slot `master`
    /// serves: name a breaker with it to put its keys there.
    pub fn tag_on(&self, master: &RedisServer, prefix: &str) -> String {
        let ranges: Vec<(u16, u16)> = self
            .view()
            .into_iter()
            .find(|n| n.port == master.port())
            .map(|n| n.slots)
            .unwrap_or_default();
        assert!(!ranges.is_empty(), "node {} serves no slot", master.port());
        let mut connection = master.raw();
        for _ in 0..10_000 {
            let tag = format!("{{{}}}", crate::unique(prefix));
            let slot: u16 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(&tag)
                .query(&mut connection)
                .unwrap_or_else(|e| panic!("CLUSTER KEYSLOT: {e}"));
            if ranges.iter().any(|(a, b)| (*a..=*b).contains(&slot)) {
                return tag;
            }
        }
        panic!("no hash tag lands on node {}", master.port());
    }

    /// What is wrong with the cluster now, if anything: every running node
    /// must say `cluster_state:ok` with every slot served, agree with the
    /// others on which running master serves which slot, and know every
    /// other running node as a master serving slots or as a replica, not
    /// failed; every running replica must be in sync with its master.
    pub fn health(&self) -> Result<(), String> {
        let running: Vec<&RedisServer> = self.nodes.iter().filter(|n| n.is_running()).collect();
        let mut reference: Option<BTreeMap<(u16, u16), u16>> = None;
        for node in &running {
            let port = node.port();
            let info: String = query(node, &["CLUSTER", "INFO"])?;
            if field(&info, "cluster_state") != Some("ok") {
                return Err(format!("node {port}: cluster_state is not ok"));
            }
            if field(&info, "cluster_slots_ok") != Some("16384") {
                return Err(format!("node {port}: not every slot is served"));
            }
            let view = parse_nodes(&query::<String>(node, &["CLUSTER", "NODES"])?);
            let mut owners = BTreeMap::new();
            for master in view.iter().filter(|n| n.master && !n.slots.is_empty()) {
                if master.failed || !running.iter().any(|n| n.port() == master.port) {
                    return Err(format!(
                        "node {port}: slots served by a failed node {}",
                        master.port
                    ));
                }
                for range in &master.slots {
                    owners.insert(*range, master.port);
                }
            }
            for other in &running {
                let known = view.iter().find(|n| n.port == other.port());
                if known.is_none_or(|n| n.failed) {
                    return Err(format!(
                        "node {port}: node {} unknown or failed",
                        other.port()
                    ));
                }
                // A master without slots is a replica whose role has not
                // reached this node yet.
                if known.is_some_and(|n| n.master && n.slots.is_empty()) {
                    return Err(format!(
                        "node {port}: node {} is neither serving slots nor a replica yet",
                        other.port()
                    ));
                }
            }
            match &reference {
                None => reference = Some(owners),
                Some(first) if *first != owners => {
                    return Err(format!("node {port} disagrees on who serves which slot"));
                }
                Some(_) => {}
            }
            let replication: String = query(node, &["INFO", "replication"])?;
            if field(&replication, "role") == Some("slave")
                && field(&replication, "master_link_status") != Some("up")
            {
                return Err(format!("replica {port}: not in sync with its master"));
            }
        }
        Ok(())
    }

    /// Waits until the cluster is [healthy](Self::health).
    ///
    /// # Panics
    ///
    /// If it is not within [`HEALTHY_WITHIN`].
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + HEALTHY_WITHIN;
        loop {
            let error = match self.health() {
                Ok(()) => return,
                Err(e) => e,
            };
            assert!(
                Instant::now() < deadline,
                "the cluster is not healthy after {HEALTHY_WITHIN:?}: {error}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Moves `slot` from the master that serves it to `target`, as
    /// `redis-cli --cluster reshard` does: `target` imports it, its master
    /// migrates it, its keys move (`MIGRATE ... KEYS`, all at once), and
    /// every master is told that `target` serves it. `during` runs while
    /// the slot is migrating, before its keys move: clients meet `ASK` and
    /// `TRYAGAIN` then (Redis answers a multi-key command `TRYAGAIN` while
    /// some of its keys are missing on the node), and `MOVED` after.
    ///
    /// # Panics
    ///
    /// If a step fails.
    pub fn migrate_slot(&self, slot: u16, target: &RedisServer, during: impl FnOnce()) {
        let mut during = Some(during);
        self.migrate_slot_in_steps(slot, target, |phase| {
            if phase == Migration::Migrating {
                if let Some(during) = during.take() {
                    during();
                }
            }
        });
    }

    /// As [`migrate_slot`](Self::migrate_slot), calling `at` at each
    /// [`Migration`] phase.
    ///
    /// # Panics
    ///
    /// If a step fails.
    pub fn migrate_slot_in_steps(
        &self,
        slot: u16,
        target: &RedisServer,
        mut at: impl FnMut(Migration),
    ) {
        let source = self.master_of_slot(slot);
        assert_ne!(source.port(), target.port(), "slot {slot} is there already");
        let (source_id, target_id) = (self.id_of(source), self.id_of(target));
        let slot_arg = slot.to_string();
        target.cmd::<()>(&["CLUSTER", "SETSLOT", &slot_arg, "IMPORTING", &source_id]);
        source.cmd::<()>(&["CLUSTER", "SETSLOT", &slot_arg, "MIGRATING", &target_id]);
        at(Migration::Migrating);
        loop {
            let keys: Vec<String> = source.cmd(&["CLUSTER", "GETKEYSINSLOT", &slot_arg, "1000"]);
            if keys.is_empty() {
                break;
            }
            let port = target.port().to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            source.cmd::<()>(&args);
        }
        at(Migration::KeysMoved);
        // The target first, so that the source's MOVED points at a node
        // that already knows it serves the slot.
        target.cmd::<()>(&["CLUSTER", "SETSLOT", &slot_arg, "NODE", &target_id]);
        source.cmd::<()>(&["CLUSTER", "SETSLOT", &slot_arg, "NODE", &target_id]);
        for master in self.masters() {
            if master.port() != source.port() && master.port() != target.port() {
                master.cmd::<()>(&["CLUSTER", "SETSLOT", &slot_arg, "NODE", &target_id]);
            }
        }
    }

    /// Error replies sent so far by each running node (by port), by code
    /// (`MOVED`, `ASK`, `TRYAGAIN`, `NOSCRIPT`, ...): `INFO errorstats`.
    pub fn error_counts(&self) -> BTreeMap<u16, BTreeMap<String, u64>> {
        let mut nodes = BTreeMap::new();
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let Ok(info) = query::<String>(node, &["INFO", "errorstats"]) else {
                continue;
            };
            let mut counts = BTreeMap::new();
            for line in info.lines() {
                let Some((code, rest)) = line
                    .strip_prefix("errorstat_")
                    .and_then(|l| l.split_once(':'))
                else {
                    continue;
                };
                let count = rest
                    .strip_prefix("count=")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                counts.insert(code.to_owned(), count);
            }
            nodes.insert(node.port(), counts);
        }
        nodes
    }

    /// Error replies the running nodes sent since `before` (an
    /// [`error_counts`](Self::error_counts)), by code, summed: a node that
    /// was down then counts from 0.
    pub fn errors_since(
        &self,
        before: &BTreeMap<u16, BTreeMap<String, u64>>,
    ) -> BTreeMap<String, u64> {
        let mut delta = BTreeMap::new();
        for (port, counts) in self.error_counts() {
            for (code, count) in counts {
                let earlier = before
                    .get(&port)
                    .and_then(|c| c.get(&code))
                    .copied()
                    .unwrap_or(0);
                // A node restarted since counts from 0 again.
                let new = if count >= earlier {
                    count - earlier
                } else {
                    count
                };
                if new > 0 {
                    *delta.entry(code).or_insert(0) += new;
                }
            }
        }
        delta
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_lines_are_parsed() {
        let text = "\
e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460 [93->-292f]
292f 127.0.0.1:30002@40002,host master,fail - 0 0 2 connected 5461 5462-10922
07c3 127.0.0.1:30004@40004 slave e7d1 0 0 4 connected
";
        let nodes = parse_nodes(text);
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[0].port, 30001);
        assert!(nodes[0].master && !nodes[0].failed);
        assert_eq!(nodes[0].slots, vec![(0, 5460)]);
        assert!(nodes[1].failed);
        assert_eq!(nodes[1].slots, vec![(5461, 5461), (5462, 10922)]);
        assert_eq!(nodes[2].master_id.as_deref(), Some("e7d1"));
        assert!(!nodes[2].master);
    }
}
