//! The store the tool talks to: one Redis server, or a Redis Cluster from
//! its seed nodes.
//!
//! Two ways in, for two jobs. The breakers' own steps (a circuit's state
//! and counts, the manual modes, a reset) go through lasier-redis'
//! storage, so that the tool reads and writes exactly what a breaker
//! does. What no step gives (SCAN for discovery, the open flag's `PTTL`,
//! the trial lease, the mode key, the directory hash) is read with plain
//! redis commands. Every command has the tool's timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use lasier_core::{Circuit, CircuitKeys, Counts, Manual, State, Steps, Storage, StorageError};
use lasier_core::{StorageErrorKind, Transition};
use lasier_redis::redis::cluster::{ClusterClient, ClusterConnection};
use lasier_redis::redis::{
    self, Cmd, ConnectionInfo, ConnectionLike, ErrorKind, IntoConnectionInfo, RedisError, Value,
};
use lasier_redis::{listing, ClusterRedisStorage, Options, RedisStorage};
use serde::Serialize;

use crate::directory::{self, Registration};
use crate::error::{CliError, Exit};

/// Which key of a circuit showed it to the tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Found {
    /// `circuit_<name>`: the open flag (Python `lasier` writes it too).
    OpenFlag,
    /// `lasier:mode:<name>`: a mode set by hand.
    Mode,
    /// `lasier:half_open:<name>`: the half-open state.
    HalfOpen,
    /// `lasier:circuit:<name>`: the breaker registered itself.
    Directory,
    /// Another of its keys (asked for by name: its counters, the trials).
    OtherKey,
}

/// Everything the tool reads about one circuit.
#[derive(Debug)]
pub(crate) struct Inspection {
    /// The circuit's name.
    pub(crate) name: String,
    /// How the tool knows of it; empty if nothing of it is in the store.
    pub(crate) found: BTreeSet<Found>,
    /// Its directory entry, if it has one (possibly with garbage fields).
    pub(crate) registration: Option<Registration>,
    /// What the breaker's `state` step said, or why it could not.
    pub(crate) state: Result<State, String>,
    /// What the breaker's `counts` step said, `None` if they are not where
    /// the tool can read them (a window other than the fixed one).
    pub(crate) counts: Option<Result<Counts, String>>,
    /// Whether the rule counts requests (for a rule the tool does not
    /// know: whether a request counter exists).
    pub(crate) counts_requests: bool,
    /// `PTTL` of the open flag: `-2` no flag, `-1` no expiry.
    pub(crate) open_pttl_ms: Option<i64>,
    /// Trial slots used under the current lease, if there is one.
    pub(crate) permits_taken: Option<u32>,
    /// The raw mode value (`1` forced open, `2` disabled), if set.
    pub(crate) mode: Option<String>,
}

impl Inspection {
    /// Whether anything of the circuit is in the store.
    pub(crate) fn exists(&self) -> bool {
        !self.found.is_empty()
    }
}

/// The connections for plain commands.
enum Raw {
    Server(redis::Connection),
    Cluster {
        conn: Box<ClusterConnection>,
        /// Every master serving slots, for SCAN.
        masters: Vec<ConnectionInfo>,
    },
}

/// One Redis server or one Redis Cluster.
pub(crate) struct Store {
    steps: Box<dyn Storage>,
    raw: Raw,
    timeout: Duration,
    /// Where, without credentials, for messages.
    place: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.place)
    }
}

impl Store {
    /// Connects to the server at the one URL, or to the cluster whose seed
    /// nodes the URLs are. One URL of a cluster node is a cluster too.
    pub(crate) fn connect(urls: &[String], timeout: Duration) -> Result<Self, CliError> {
        if urls.iter().any(|url| url.starts_with("rediss://")) {
            return Err(CliError::usage(
                "rediss:// (TLS) is not supported by the lasier command yet",
            ));
        }
        let infos = urls
            .iter()
            .map(|url| {
                url.as_str()
                    .into_connection_info()
                    .map_err(|e| CliError::usage(format!("invalid Redis URL: {}", one_line(&e))))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let places: Vec<String> = infos.iter().map(|i| i.addr().to_string()).collect();
        let addrs = places.join(",");
        let place = addrs.clone();
        let options = Options::new()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_size(1);
        let first = infos
            .first()
            .ok_or_else(|| CliError::usage("no Redis URL: give --url or set LASIER_REDIS_URL"))?;
        if infos.len() == 1 {
            let mut conn = listing::connect(first, timeout)
                .map_err(|e| unreachable_error(&format!("Redis at {place}"), &e))?;
            if !listing::is_cluster(&mut conn)
                .map_err(|e| unreachable_error(&format!("Redis at {place}"), &e))?
            {
                let steps = RedisStorage::open_with_options(first.clone(), options)
                    .map_err(|e| CliError::usage(storage_message(&e)))?;
                return Ok(Self {
                    steps: Box::new(steps),
                    raw: Raw::Server(conn),
                    timeout,
                    place: format!("Redis at {place}"),
                });
            }
        }
        let place = format!("the Redis Cluster at {place}");
        let masters = listing::cluster_masters(&infos, timeout).map_err(|e| {
            if e.detail()
                .is_some_and(|d| d.contains("cluster support disabled"))
            {
                CliError::usage(format!(
                    "several --url name the seed nodes of a Redis Cluster, but the Redis at \
                     {addrs} has cluster support disabled: give one --url for one server"
                ))
            } else {
                unreachable_error(&place, &e)
            }
        })?;
        let client = ClusterClient::builder(infos.clone())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(2)
            .min_retry_wait(10)
            .max_retry_wait(50)
            .build()
            .map_err(|e| CliError::usage(one_line(&e)))?;
        let conn = client
            .get_connection()
            .map_err(|e| unreachable_error(&place, &e))?;
        let steps = ClusterRedisStorage::open_with_options(infos, options)
            .map_err(|e| CliError::usage(storage_message(&e)))?;
        Ok(Self {
            steps: Box::new(steps),
            raw: Raw::Cluster {
                conn: Box::new(conn),
                masters,
            },
            timeout,
            place,
        })
    }

    /// Every circuit name the store shows, with how each was found.
    pub(crate) fn discover(&mut self) -> Result<BTreeMap<String, BTreeSet<Found>>, CliError> {
        let mut names: BTreeMap<String, BTreeSet<Found>> = BTreeMap::new();
        let timeout = self.timeout;
        let place = self.place.clone();
        match &mut self.raw {
            Raw::Server(conn) => scan_all(conn, &mut names).map_err(|e| store_error(&place, &e))?,
            Raw::Cluster { masters, .. } => {
                for master in masters.iter() {
                    let here = format!("the cluster master at {}", master.addr());
                    let mut conn =
                        listing::connect(master, timeout).map_err(|e| store_error(&here, &e))?;
                    scan_all(&mut conn, &mut names).map_err(|e| store_error(&here, &e))?;
                }
            }
        }
        Ok(names)
    }

    /// Reads everything about the circuit `name`; `found` is what
    /// discovery saw of it already.
    ///
    /// A circuit the store holds garbage for still gives an inspection
    /// (its error said in it); only a store that does not answer fails.
    pub(crate) fn inspect(
        &mut self,
        name: &str,
        found: BTreeSet<Found>,
    ) -> Result<Inspection, CliError> {
        let keys = CircuitKeys::new(name, None);
        let directory_key = format!("{}{name}", directory::PREFIX);
        let mut cmds = vec![
            cmd(&["HGETALL", &directory_key]),
            cmd(&["PTTL", keys.open()]),
            cmd(&["GET", keys.trial_lease()]),
            cmd(&["GET", keys.mode()]),
        ];
        for key in keys.all() {
            cmds.push(cmd(&["EXISTS", key]));
        }
        let replies = self.pipeline(&cmds)?;
        let mut found = found;
        let registration = match replies.first() {
            Some(Ok(value)) => registration(value),
            // A key of another type: an entry, unreadable.
            Some(Err(_)) => Some(Registration::default()),
            None => None,
        };
        if registration.is_some() {
            found.insert(Found::Directory);
        }
        let open_pttl_ms = match replies.get(1) {
            Some(Ok(Value::Int(ms))) => Some(*ms),
            _ => None,
        };
        if open_pttl_ms.is_some_and(|ms| ms != -2) {
            found.insert(Found::OpenFlag);
        }
        let lease = replies.get(2).and_then(text);
        let mode = replies.get(3).and_then(text);
        if mode.is_some() {
            found.insert(Found::Mode);
        }
        let exists = |i: usize| matches!(replies.get(4 + i), Some(Ok(Value::Int(n))) if *n > 0);
        if exists(3) {
            found.insert(Found::HalfOpen);
        }
        if exists(0) || exists(1) || exists(4) || exists(5) {
            found.insert(Found::OtherKey);
        }
        let circuit = directory::circuit_for(name, registration.as_ref());
        let mut requests_kept = exists(1);
        if let (
            Ok(circuit),
            Some(Registration {
                request_key: Some(_),
                ..
            }),
        ) = (&circuit, &registration)
        {
            // Its request counter is elsewhere: does it exist?
            let replies = self.pipeline(&[cmd(&["EXISTS", circuit.keys().requests()])])?;
            requests_kept = matches!(replies.first(), Some(Ok(Value::Int(n))) if *n > 0);
            if requests_kept {
                found.insert(Found::OtherKey);
            }
        }
        // Under a rule the tool does not know, requests are shown where
        // a request counter is kept.
        let counts_requests = match registration.as_ref().map(Registration::rule_kind) {
            Some(directory::RuleKind::MaxFailures(_)) => false,
            Some(directory::RuleKind::PercentageFailures(..)) => true,
            Some(directory::RuleKind::Unknown) | None => requests_kept,
        };
        let fixed = registration
            .as_ref()
            .is_none_or(Registration::readable_window);
        let (state, counts) = match circuit.and_then(|c| self.usable(&c).map(|()| c)) {
            Err(why) => (Err(why.clone()), Some(Err(why))),
            Ok(circuit) => {
                let state = self.step(Steps::state(&*self.steps, &circuit))?;
                let counts = fixed
                    .then(|| self.step(Steps::counts(&*self.steps, &circuit)))
                    .transpose()?;
                (state, counts)
            }
        };
        Ok(Inspection {
            name: name.to_owned(),
            found,
            registration,
            state,
            counts,
            counts_requests,
            open_pttl_ms,
            permits_taken: lease.map(|lease| {
                lease
                    .parse::<u64>()
                    .map_or(u32::MAX, |v| u32::try_from(v % 65_536).unwrap_or(u32::MAX))
            }),
            mode,
        })
    }

    /// Sets the circuit's mode by hand, as `force_open()`, `force_close()`
    /// or `disable()` of a breaker does.
    pub(crate) fn set_manual(
        &self,
        circuit: &Circuit,
        manual: Manual,
    ) -> Result<Option<Transition>, CliError> {
        self.usable(circuit).map_err(CliError::usage)?;
        Steps::set_manual(&*self.steps, circuit, manual)
            .map_err(|e| CliError::new(Exit::Store, storage_message(&e)))
    }

    /// Deletes the circuit's keys, as `reset()` of a breaker does.
    pub(crate) fn reset(&self, circuit: &Circuit) -> Result<(), CliError> {
        self.usable(circuit).map_err(CliError::usage)?;
        Steps::reset(&*self.steps, circuit)
            .map_err(|e| CliError::new(Exit::Store, storage_message(&e)))
    }

    /// Fails with a usage error if the storage cannot run the circuit's
    /// steps (on a cluster: a name without a hash tag).
    pub(crate) fn check(&self, circuit: &Circuit) -> Result<(), CliError> {
        self.usable(circuit)
            .map_err(|e| CliError::usage(format!("{:?}: {e}", circuit.name())))
    }

    /// Whether the storage can run the circuit's steps (on a cluster: its
    /// keys share a slot).
    fn usable(&self, circuit: &Circuit) -> Result<(), String> {
        Steps::validate(&*self.steps, circuit).map_err(|e| e.to_string())
    }

    /// A step's answer: a store that does not answer fails the command;
    /// any other error is the circuit's own, said in its row.
    fn step<T>(&self, result: Result<T, StorageError>) -> Result<Result<T, String>, CliError> {
        match result {
            Ok(value) => Ok(Ok(value)),
            Err(e)
                if matches!(
                    e.kind(),
                    StorageErrorKind::Unavailable | StorageErrorKind::TimedOut
                ) =>
            {
                Err(CliError::new(
                    Exit::Store,
                    format!("{}: {}", self.place, storage_message(&e)),
                ))
            }
            Err(e) => Ok(Err(storage_message(&e))),
        }
    }

    /// Runs `cmds` (one round trip on a server); each command's server
    /// error is its own, a lost connection fails them all.
    fn pipeline(&mut self, cmds: &[Cmd]) -> Result<Vec<Result<Value, RedisError>>, CliError> {
        let place = self.place.clone();
        match &mut self.raw {
            Raw::Server(conn) => {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for c in cmds {
                    pipe.add_command(c.clone());
                }
                let values: Vec<Value> = pipe.query(conn).map_err(|e| store_error(&place, &e))?;
                Ok(values
                    .into_iter()
                    .map(|v| match v {
                        Value::ServerError(e) => Err(e.into()),
                        v => Ok(v),
                    })
                    .collect())
            }
            Raw::Cluster { conn, .. } => {
                let mut replies = Vec::with_capacity(cmds.len());
                for c in cmds {
                    match c.query::<Value>(&mut **conn) {
                        Ok(value) => replies.push(Ok(value)),
                        Err(e) if is_outage(&e) => return Err(store_error(&place, &e)),
                        Err(e) => replies.push(Err(e)),
                    }
                }
                Ok(replies)
            }
        }
    }
}

/// A command from its words.
fn cmd(words: &[&str]) -> Cmd {
    let mut c = redis::cmd(words.first().copied().unwrap_or("PING"));
    for word in words.iter().skip(1) {
        c.arg(*word);
    }
    c
}

/// SCANs one node (lasier-redis' listing), as the tool's kinds of keys.
fn scan_all(
    conn: &mut dyn ConnectionLike,
    names: &mut BTreeMap<String, BTreeSet<Found>>,
) -> Result<(), RedisError> {
    let mut found = listing::Found::new();
    listing::scan_node(conn, &mut found)?;
    for (name, by) in found {
        let kinds = names.entry(name).or_default();
        for by in by {
            kinds.insert(match by {
                listing::FoundBy::OpenFlag => Found::OpenFlag,
                listing::FoundBy::Mode => Found::Mode,
                listing::FoundBy::HalfOpen => Found::HalfOpen,
                listing::FoundBy::Directory => Found::Directory,
                _ => Found::OtherKey,
            });
        }
    }
    Ok(())
}

/// A directory entry from the reply to `HGETALL` (a map in RESP3, pairs in
/// RESP2); `None` for an empty reply (no entry).
fn registration(value: &Value) -> Option<Registration> {
    let pairs: Vec<(&[u8], &[u8])> = match value {
        Value::Map(pairs) => pairs
            .iter()
            .filter_map(|(k, v)| Some((bytes(k)?, bytes(v)?)))
            .collect(),
        Value::Array(items) => items
            .chunks_exact(2)
            .filter_map(|pair| Some((bytes(pair.first()?)?, bytes(pair.get(1)?)?)))
            .collect(),
        _ => return None,
    };
    if pairs.is_empty() && !matches!(value, Value::Array(a) if !a.is_empty()) {
        return None;
    }
    Some(Registration::from_fields(pairs))
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// A string reply as text (`None` for nil, an error or a non-string).
fn text(reply: &Result<Value, RedisError>) -> Option<String> {
    match reply {
        Ok(Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        Ok(Value::SimpleString(s)) => Some(s.clone()),
        Ok(Value::Int(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether the error means the store (or a node of it) is not answering,
/// rather than a command of ours being refused.
fn is_outage(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_cluster_error()
        || matches!(
            e.kind(),
            ErrorKind::AuthenticationFailed | ErrorKind::ClusterConnectionNotFound
        )
}

/// The error for a store that could not be reached at all.
fn unreachable_error(place: &str, e: &RedisError) -> CliError {
    store_error(place, e)
}

/// A Redis error of the store, in one line, without credentials.
fn store_error(place: &str, e: &RedisError) -> CliError {
    let what = if e.kind() == ErrorKind::AuthenticationFailed {
        String::from("Redis refused the credentials (check the password or user in the URL)")
    } else if e.code() == Some("NOAUTH") {
        String::from(
            "Redis wants a password (NOAUTH): put it in the URL, redis://:password@host:port",
        )
    } else if e.is_timeout() {
        String::from("did not answer in time (see --timeout)")
    } else if e.is_connection_refusal() || e.is_io_error() || e.is_connection_dropped() {
        format!("cannot be reached ({})", one_line(e))
    } else {
        one_line(e)
    };
    CliError::new(Exit::Store, format!("{place}: {what}"))
}

/// A storage error, its source included, in one line.
fn storage_message(e: &StorageError) -> String {
    let mut message = e.to_string();
    if let Some(source) = std::error::Error::source(e) {
        message.push_str(" (");
        message.push_str(&one_line(source));
        message.push(')');
    }
    one_line(&message)
}

/// Any text on one line.
pub(crate) fn one_line(text: &dyn std::fmt::Display) -> String {
    text.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn hgetall_replies_read_in_both_protocols() {
        let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let resp2 = Value::Array(vec![b("rule"), b("max_failures(2)"), b("seen_ms"), b("5")]);
        let entry = registration(&resp2).unwrap();
        assert_eq!(entry.rule.as_deref(), Some("max_failures(2)"));
        assert_eq!(entry.seen_ms, Some(5));
        let resp3 = Value::Map(vec![(b("seen_ms"), b("7"))]);
        assert_eq!(registration(&resp3).unwrap().seen_ms, Some(7));
        assert_eq!(registration(&Value::Array(vec![])), None);
        assert_eq!(registration(&Value::Nil), None);
    }
}
