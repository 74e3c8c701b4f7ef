//! Redis Cluster: what both cluster storages share.
//!
//! * The slot check behind `validate`: a script touches every key of a
//!   circuit, and a cluster runs a script only if all its keys hash to one
//!   slot, so a circuit whose keys do not is refused when its breaker is
//!   built, with a message that shows the fix.
//! * Where `SCRIPT LOAD` goes: redis' cluster client sends it to every
//!   node, which fails while one is down and costs a round trip per node;
//!   the storages send it to the master of the circuit's slot, where the
//!   script that answered `NOSCRIPT` runs (after a failover or a resharding
//!   that node may never have seen it).
//! * The cluster client's settings, from [`Options`].

use lasier_core::{Circuit, ConfigError};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Arg, Cmd};

use crate::Options;

#[cfg(feature = "async")]
pub(crate) mod async_storage;
#[cfg(feature = "sync")]
pub(crate) mod pool;
#[cfg(feature = "sync")]
pub(crate) mod sync_storage;

/// The number of hash slots of a Redis Cluster.
const SLOTS: u16 = 16384;

/// How many times the cluster client retries a request (following `MOVED`
/// and `ASK`, reconnecting, waiting out `TRYAGAIN`) before it gives up:
/// enough that the step's timeout, not the count, ends a step that keeps
/// meeting a slot on the move (each round there, `ASK` then `TRYAGAIN`,
/// takes two retries and one wait).
const RETRIES: u32 = 32;

/// CRC16-XMODEM (polynomial 0x1021, initial value 0), the checksum Redis
/// Cluster hashes keys with.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for byte in bytes {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 == 0 {
                crc << 1
            } else {
                (crc << 1) ^ 0x1021
            };
        }
    }
    crc
}

/// The part of `key` that Redis Cluster hashes: what is between the first
/// `{` and the first `}` after it, if that is not empty; else all of it.
fn hashed_part(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|b| *b == b'{') else {
        return key;
    };
    let rest = &key[open + 1..];
    match rest.iter().position(|b| *b == b'}') {
        Some(close) if close > 0 => &rest[..close],
        _ => key,
    }
}

/// The hash slot of `key` in a Redis Cluster.
pub(crate) fn key_slot(key: &str) -> u16 {
    crc16(hashed_part(key.as_bytes())) % SLOTS
}

/// A name whose keys all hash on one tag: the name itself in braces, with
/// any braces it has taken out (so that the tag is the first one).
fn tagged(name: &str) -> String {
    let bare: String = name.chars().filter(|c| *c != '{' && *c != '}').collect();
    if bare.is_empty() {
        "{breaker}".to_owned()
    } else {
        format!("{{{bare}}}")
    }
}

/// Checks that every key of `circuit` hashes to one slot, or says how to
/// make it so.
pub(crate) fn validate(circuit: &Circuit) -> Result<(), ConfigError> {
    let keys = circuit.keys();
    let name = circuit.name();
    let home = key_slot(keys.failures());
    // The keys made from the name: all in one slot if the name has a tag.
    let derived = [
        keys.failures(),
        keys.open(),
        keys.trials(),
        keys.trial_lease(),
        keys.trials_passed(),
        keys.mode(),
    ];
    let strays: Vec<(&str, u16)> = derived
        .iter()
        .map(|key| (*key, key_slot(key)))
        .filter(|(_, slot)| *slot != home)
        .collect();
    if !strays.is_empty() {
        let shown: Vec<String> = std::iter::once((keys.failures(), home))
            .chain(strays.iter().copied())
            .take(3)
            .map(|(key, slot)| format!("{key:?} in slot {slot}"))
            .collect();
        return Err(ConfigError::Invalid(format!(
            "breaker {name:?}: on a Redis Cluster all of a breaker's keys must hash to one slot, \
             and its keys do not ({}, ...); use a hash tag: name it {:?}, so that every key \
             hashes on the part in braces (a Python lasier service sharing the circuit must use \
             the same name)",
            shown.join(", "),
            tagged(name),
        )));
    }
    let requests = keys.requests();
    let slot = key_slot(requests);
    if slot != home {
        let tag = String::from_utf8_lossy(hashed_part(keys.failures().as_bytes())).into_owned();
        let bare: String = requests
            .chars()
            .filter(|c| *c != '{' && *c != '}')
            .collect();
        return Err(ConfigError::Invalid(format!(
            "breaker {name:?}: on a Redis Cluster all of a breaker's keys must hash to one slot, \
             and its request key {requests:?} is in slot {slot}, its other keys in slot {home}; \
             use a hash tag: .request_key({:?})",
            format!("{{{tag}}}:{bare}"),
        )));
    }
    Ok(())
}

/// Whether `cmd` is `SCRIPT LOAD`.
pub(crate) fn is_script_load(cmd: &Cmd) -> bool {
    let mut args = cmd.args_iter();
    let mut next_is = |word: &str| matches!(args.next(), Some(Arg::Simple(arg)) if arg.eq_ignore_ascii_case(word.as_bytes()));
    next_is("SCRIPT") && next_is("LOAD")
}

/// `EVALSHA <hash> <keys and args>` of one of our scripts as `EVAL
/// <source> <keys and args>`; `None` for any other command.
pub(crate) fn eval_of(cmd: &Cmd) -> Option<Cmd> {
    let mut args = cmd.args_iter();
    match args.next()? {
        Arg::Simple(name) if name.eq_ignore_ascii_case(b"EVALSHA") => {}
        _ => return None,
    }
    let Arg::Simple(hash) = args.next()? else {
        return None;
    };
    let mut eval = redis::cmd("EVAL");
    eval.arg(crate::scripts::source_of(hash)?);
    for arg in args {
        let Arg::Simple(arg) = arg else { return None };
        eval.arg(arg);
    }
    Some(eval)
}

/// To the master that serves `key`'s slot.
pub(crate) fn master_of(key: &str) -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(
        key,
        SlotAddr::Master,
    )))
}

/// The cluster client's timeouts and retries, from `options`.
pub(crate) fn configure(builder: ClusterClientBuilder, options: &Options) -> ClusterClientBuilder {
    // Waits between retries (TRYAGAIN while a slot migrates, CLUSTERDOWN
    // during a failover) of a twenty-fifth to a tenth of the step timeout
    // (20 to 50 ms by default), growing: the retries of one step span its
    // timeout, which is what a migration's window needs (Redis answers a
    // script TRYAGAIN until the slot has moved), and a wait that outlasts
    // the step (the sync client sleeps through it) overruns it by a tenth
    // at most.
    let timeout_ms = u64::try_from(options.timeout.as_millis()).unwrap_or(u64::MAX);
    let min_wait = (timeout_ms / 25).max(1);
    let max_wait = (timeout_ms / 10).max(min_wait + 1);
    builder
        .connection_timeout(options.connect_timeout)
        .response_timeout(options.timeout)
        .retries(RETRIES)
        .min_retry_wait(min_wait)
        .max_retry_wait(max_wait)
}

/// The seed list, for messages.
pub(crate) fn describe<S: AsRef<str>>(urls: &[S]) -> String {
    let hosts: Vec<&str> = urls
        .iter()
        .map(|url| {
            let url = url.as_ref();
            let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
            // No credentials in messages: what follows the last `@`, if any.
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            host.trim_end_matches('/')
        })
        .collect();
    hosts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use lasier_core::Config;
    use redis::cluster_routing::Slot;

    fn circuit(name: &str, request_key: Option<&str>) -> Circuit {
        let mut config = Config::new(name);
        config.max_failures(3);
        if let Some(key) = request_key {
            config.request_key(key);
        }
        config.validate().unwrap().0
    }

    #[test]
    fn slots_are_redis_slots() {
        // Redis' documentation: CRC16("123456789") is 0x31C3.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        for key in [
            "",
            "a",
            "foo",
            "bar",
            "{user1000}.following",
            "{}x",
            "a{}{b}",
            "{",
            "}{",
            "x{y",
            "é{ü}",
            "circuit_{payments}",
            "lasier:half_open:{payments}",
        ] {
            assert_eq!(
                Slot::new(key_slot(key)),
                Some(Slot::for_key(key)),
                "{key:?}"
            );
        }
        for n in 0..5000 {
            let key = format!("key-{n}-{{tag{}}}-{}", n % 7, n * 31);
            assert_eq!(
                Slot::new(key_slot(&key)),
                Some(Slot::for_key(&key)),
                "{key:?}"
            );
        }
        assert_eq!(
            key_slot("{user1000}.following"),
            key_slot("{user1000}.followers")
        );
    }

    #[test]
    fn a_name_with_a_hash_tag_keeps_every_key_in_one_slot() {
        for name in ["{payments}", "svc:{payments}", "{payments}:v2", "a}b{c}"] {
            validate(&circuit(name, None)).unwrap();
        }
        validate(&circuit("{payments}", Some("{payments}:requests"))).unwrap();
    }

    #[test]
    fn a_name_without_a_hash_tag_is_refused_with_the_fix() {
        let error = validate(&circuit("payments", None)).unwrap_err();
        let ConfigError::Invalid(message) = &error else {
            panic!("{error:?}")
        };
        assert!(
            message.contains(r#"use a hash tag: name it "{payments}""#),
            "{message}"
        );
        assert!(message.contains(r#""payments" in slot"#), "{message}");
        // An empty tag is no tag.
        let error = validate(&circuit("{}payments", None)).unwrap_err();
        assert!(
            error.to_string().contains(r#"name it "{payments}""#),
            "{error}"
        );
        // The fix it shows works.
        validate(&circuit(&tagged("{}payments"), None)).unwrap();
        validate(&circuit(&tagged("{}"), None)).unwrap();
    }

    #[test]
    fn a_request_key_elsewhere_is_refused_with_the_fix() {
        let error = validate(&circuit("{payments}", Some("payments_reqs"))).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains(r#"use a hash tag: .request_key("{payments}:payments_reqs")"#),
            "{message}"
        );
        validate(&circuit("{payments}", Some("{payments}:payments_reqs"))).unwrap();
    }

    #[test]
    fn script_load_is_recognised() {
        assert!(is_script_load(
            redis::cmd("SCRIPT").arg("LOAD").arg("return 1")
        ));
        assert!(is_script_load(
            redis::cmd("script").arg("load").arg("return 1")
        ));
        assert!(!is_script_load(redis::cmd("SCRIPT").arg("FLUSH")));
        assert!(!is_script_load(redis::cmd("EVALSHA").arg("abc").arg(0)));
        assert!(!is_script_load(&redis::cmd("SCRIPT")));
    }

    #[test]
    fn evalsha_of_our_scripts_turns_into_eval() {
        let circuit = circuit("{payments}", None);
        let invocation = crate::scripts::admit(&circuit);
        // The EVALSHA the invocation sends, as a cluster connection sees it.
        let mut seen = None;
        struct Spy<'a>(&'a mut Option<Cmd>);
        impl redis::ConnectionLike for Spy<'_> {
            fn req_command(&mut self, cmd: &Cmd) -> redis::RedisResult<redis::Value> {
                *self.0 = Some(cmd.clone());
                Ok(redis::Value::Array(vec![
                    redis::Value::Int(1),
                    redis::Value::Int(0),
                ]))
            }
            fn req_packed_command(&mut self, _: &[u8]) -> redis::RedisResult<redis::Value> {
                unreachable!()
            }
            fn req_packed_commands(
                &mut self,
                _: &[u8],
                _: usize,
                _: usize,
            ) -> redis::RedisResult<Vec<redis::Value>> {
                unreachable!()
            }
            fn get_db(&self) -> i64 {
                0
            }
            fn check_connection(&mut self) -> bool {
                true
            }
            fn is_open(&self) -> bool {
                true
            }
        }
        let _: Vec<i64> = invocation.invoke(&mut Spy(&mut seen)).unwrap();
        let evalsha = seen.unwrap();
        let eval = eval_of(&evalsha).unwrap();
        let args = |cmd: &Cmd| -> Vec<Vec<u8>> {
            cmd.args_iter()
                .map(|a| match a {
                    Arg::Simple(a) => a.to_vec(),
                    _ => panic!("not a plain argument"),
                })
                .collect()
        };
        let (evalsha, eval) = (args(&evalsha), args(&eval));
        assert_eq!(eval[0], b"EVAL");
        assert!(
            String::from_utf8_lossy(&eval[1]).contains("admit"),
            "the admit script"
        );
        assert_eq!(eval[2..], evalsha[2..], "same keys and arguments");
        assert!(eval_of(redis::cmd("EVALSHA").arg("0000").arg(0)).is_none());
        assert!(eval_of(redis::cmd("GET").arg("k")).is_none());
    }

    #[test]
    fn messages_carry_no_credentials() {
        assert_eq!(
            describe(&["redis://:secret@127.0.0.1:7000/", "redis://127.0.0.1:7001"]),
            "127.0.0.1:7000,127.0.0.1:7001"
        );
    }
}
