//! The circuits in a Redis: by `SCAN` (never `KEYS`) of the keys that
//! name one, on the server or on every master of a cluster. What the
//! `lasier` command lists, and what [`Redis::circuits`](crate::Redis::circuits)
//! and [`AsyncRedis::circuits`](crate::AsyncRedis::circuits) return.
//!
//! A circuit shows itself by its open flag (`circuit_<name>`, which Python
//! `lasier` writes too), a mode set by hand, a half-open marker, or its
//! breakers' entry in the directory of circuits (`lasier:circuit:<name>`,
//! see `lasier_core::directory`). A closed circuit that none of its
//! breakers has registered for a day has only its failure counter, whose
//! key is its bare name: it cannot be told from any other key.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, ConnectionLike, ErrorKind, RedisError, RedisResult};

/// Which key of a circuit showed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum FoundBy {
    /// `circuit_<name>`: the open flag (Python `lasier` writes it too).
    OpenFlag,
    /// `lasier:mode:<name>`: a mode set by hand.
    Mode,
    /// `lasier:half_open:<name>`: the half-open state.
    HalfOpen,
    /// `lasier:circuit:<name>`: a breaker registered it.
    Directory,
}

/// Key prefixes that tell a circuit's name, and what each is.
pub const PREFIXES: [(&str, FoundBy); 4] = [
    ("circuit_", FoundBy::OpenFlag),
    ("lasier:mode:", FoundBy::Mode),
    ("lasier:half_open:", FoundBy::HalfOpen),
    ("lasier:circuit:", FoundBy::Directory),
];

/// Every circuit name found, with the keys that showed it.
pub type Found = BTreeMap<String, BTreeSet<FoundBy>>;

/// SCANs one node for every prefix of [`PREFIXES`], adding what it finds
/// to `found`.
///
/// # Errors
///
/// The node's error (a cluster node answers for its own keys only: scan
/// each master, see [`cluster_masters`]).
pub fn scan_node(conn: &mut dyn ConnectionLike, found: &mut Found) -> RedisResult<()> {
    for (prefix, by) in PREFIXES {
        let mut cursor = String::from("0");
        loop {
            let (next, keys): (String, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(&cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000)
                .query(conn)?;
            for key in keys {
                if let Some(name) = name_of(&key, prefix) {
                    found.entry(name).or_default().insert(by);
                }
            }
            if next == "0" {
                break;
            }
            cursor = next;
        }
    }
    Ok(())
}

/// The circuit name in `key` after `prefix`, if it is UTF-8 and not empty.
/// (MATCH is a glob and the prefixes hold no glob characters, so this is
/// only a check: `lasier:half_open:*` cannot match the lease's
/// `lasier:half_open_lease:` nor `lasier:half_open_ok:`.)
fn name_of(key: &[u8], prefix: &str) -> Option<String> {
    let rest = key.strip_prefix(prefix.as_bytes())?;
    let name = std::str::from_utf8(rest).ok()?;
    (!name.is_empty()).then(|| name.to_owned())
}

/// A plain connection to one node, with `timeout` on its socket, checked
/// with a `PING` (wrong credentials fail here).
///
/// # Errors
///
/// The connection's or the server's error.
pub fn connect(info: &ConnectionInfo, timeout: Duration) -> RedisResult<redis::Connection> {
    let client = redis::Client::open(info.clone())?;
    let mut conn = client.get_connection_with_timeout(timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    redis::cmd("PING").query::<String>(&mut conn)?;
    Ok(conn)
}

/// Whether the server is a cluster node (`INFO cluster`; a user whose ACL
/// denies `INFO` is taken to be on one server).
///
/// # Errors
///
/// A connection that failed.
pub fn is_cluster(conn: &mut dyn ConnectionLike) -> RedisResult<bool> {
    match redis::cmd("INFO").arg("cluster").query::<String>(conn) {
        Ok(info) => Ok(info.lines().any(|l| l.trim() == "cluster_enabled:1")),
        Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => Err(e),
        Err(_) => Ok(false),
    }
}

/// The masters serving slots, from the first seed that answers `CLUSTER
/// NODES`, with the seeds' credentials and TLS.
///
/// # Errors
///
/// The last seed's error, if none answered.
pub fn cluster_masters(
    seeds: &[ConnectionInfo],
    timeout: Duration,
) -> RedisResult<Vec<ConnectionInfo>> {
    let mut last = None;
    for seed in seeds {
        let nodes = connect(seed, timeout).and_then(|mut conn| {
            redis::cmd("CLUSTER")
                .arg("NODES")
                .query::<String>(&mut conn)
        });
        match nodes {
            Ok(text) => {
                let (seed_host, tls) = match seed.addr() {
                    ConnectionAddr::Tcp(host, _) => (host.clone(), None),
                    ConnectionAddr::TcpTls {
                        host,
                        insecure,
                        tls_params,
                        ..
                    } => (host.clone(), Some((*insecure, tls_params.clone()))),
                    _ => (String::from("127.0.0.1"), None),
                };
                return Ok(parse_masters(&text, &seed_host)
                    .into_iter()
                    .map(|(host, port)| {
                        let addr = match &tls {
                            None => ConnectionAddr::Tcp(host, port),
                            Some((insecure, tls_params)) => ConnectionAddr::TcpTls {
                                host,
                                port,
                                insecure: *insecure,
                                tls_params: tls_params.clone(),
                            },
                        };
                        seed.clone().set_addr(addr)
                    })
                    .collect());
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| RedisError::from((ErrorKind::InvalidClientConfig, "no seed node"))))
}

/// `(host, port)` of each master that serves slots and is not failed, from
/// the text of `CLUSTER NODES`; a node with no address known to it (`:0`)
/// is skipped, one with an empty host is on `seed_host`.
fn parse_masters(nodes: &str, seed_host: &str) -> Vec<(String, u16)> {
    let mut masters = Vec::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else {
            continue;
        };
        let flags: Vec<&str> = flags.split(',').collect();
        let failed = flags
            .iter()
            .any(|f| matches!(*f, "fail" | "fail?" | "noaddr" | "handshake"));
        let serves = fields.iter().skip(8).any(|s| !s.starts_with('['));
        if !flags.contains(&"master") || failed || !serves {
            continue;
        }
        // ip:port@cport[,hostname]
        let addr = addr.split(['@', ',']).next().unwrap_or_default();
        let Some((host, port)) = addr.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        if port == 0 {
            continue;
        }
        let host = if host.is_empty() { seed_host } else { host };
        masters.push((host.to_owned(), port));
    }
    masters
}

/// The circuits on the server or cluster of `nodes` (a server, or a
/// cluster's seeds, tried in turn): a cluster's masters are each scanned.
///
/// # Errors
///
/// The first node or master that failed.
pub fn circuits_on(nodes: &[ConnectionInfo], timeout: Duration) -> RedisResult<Found> {
    let mut last = None;
    for node in nodes {
        let mut conn = match connect(node, timeout) {
            Ok(conn) => conn,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        let mut found = Found::new();
        if is_cluster(&mut conn)? {
            for master in cluster_masters(nodes, timeout)? {
                scan_node(&mut connect(&master, timeout)?, &mut found)?;
            }
        } else {
            scan_node(&mut conn, &mut found)?;
        }
        return Ok(found);
    }
    Err(last.unwrap_or_else(|| RedisError::from((ErrorKind::InvalidClientConfig, "no node"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masters_come_from_cluster_nodes() {
        let text = "\
a1 10.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 10.0.0.2:7001@17001 master - 0 0 2 connected 5461-10922
c3 :7002@17002 master - 0 0 3 connected 10923-16383
d4 10.0.0.4:7003@17003 slave a1 0 0 1 connected
e5 10.0.0.5:7004@17004 master,fail - 0 0 4 disconnected 1-2
f6 10.0.0.6:7005@17005 master - 0 0 5 connected
g7 10.0.0.7:0@0 master,noaddr - 0 0 6 connected 3-4
h8 10.0.0.8:7007@17007,node-8.example master - 0 0 7 connected [5-<-x]
";
        assert_eq!(
            parse_masters(text, "seed"),
            vec![
                (String::from("10.0.0.1"), 7000),
                (String::from("10.0.0.2"), 7001),
                (String::from("seed"), 7002),
            ]
        );
    }

    #[test]
    fn masters_come_from_a_real_cluster_nodes_reply() {
        let text = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 master,fail - 0 1426238316232 5 connected 1-2
824fe116063bc5fcf9f4ffd895bc17aee7731ac3 127.0.0.1:30006@31006 master - 0 1426238317741 6 connected [5460->-e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca]
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca :30001@31001 myself,master - 0 0 1 connected 0-5460
";
        assert_eq!(
            parse_masters(text, "10.1.1.1"),
            [
                ("127.0.0.1".to_owned(), 30002),
                ("127.0.0.1".to_owned(), 30003),
                ("10.1.1.1".to_owned(), 30001),
            ]
        );
    }

    #[test]
    fn names_are_what_follows_the_prefix() {
        assert_eq!(
            name_of(b"lasier:half_open_lease:x", "lasier:half_open:"),
            None
        );
        assert_eq!(
            name_of(b"circuit_pay", "circuit_"),
            Some(String::from("pay"))
        );
        assert_eq!(name_of(b"circuit_", "circuit_"), None);
        assert_eq!(name_of(b"circuit_\xff", "circuit_"), None);
        assert_eq!(name_of(b"other", "circuit_"), None);
    }
}
