//! Where a circuit's scripts go on a cluster: `EVALSHA` to the master of
//! the circuit's slot (the cluster client routes it by its keys); on
//! `NOSCRIPT`, `SCRIPT LOAD` to that same master, rather than to every
//! node as the cluster client would send it (a round trip per node, and a
//! failure while one of them is down), then `EVALSHA` again; should that
//! answer `NOSCRIPT` too (a slot map behind the redirections after a
//! failover or a resharding), `EVAL` with the source, which runs wherever
//! the slot is and leaves the script cached there.

use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Arg, Cmd, ErrorKind, RedisResult, ServerErrorKind};

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

/// Whether `result` is a `NOSCRIPT` error.
pub(crate) fn is_noscript<T>(result: &RedisResult<T>) -> bool {
    matches!(result, Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::tests::circuit;

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
}
