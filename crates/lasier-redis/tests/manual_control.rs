//! Manual control through Redis: what one process sets by hand, every
//! process sharing the circuit sees, and so does the Python original for a
//! forced open.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lasier_sync::{CircuitBreaker, Error, State};
use support::unique;

fn breaker(name: &str, server: &support::Server) -> CircuitBreaker {
    // Each breaker on a storage (a pool) of its own: two processes.
    CircuitBreaker::builder(name)
        .storage(server.storage())
        .max_failures(1)
        .circuit_timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn ok(b: &CircuitBreaker) -> Result<u32, Error<&'static str>> {
    b.call(|| Ok(7))
}

#[test]
fn force_open_and_force_close_are_seen_by_another_process() {
    let server = server_or_skip!();
    let name = unique("manual");
    let (here, there) = (breaker(&name, server), breaker(&name, server));
    here.force_open().unwrap();
    assert_eq!(there.state().unwrap(), State::ForcedOpen);
    let err = ok(&there).unwrap_err();
    assert!(err.is_open(), "{err:?}");
    assert_eq!(
        err.retry_after(),
        None,
        "no deadline: open until closed by hand"
    );
    // the original's flag is set too, without a TTL, for Python services
    assert_eq!(server.cmd::<i64>(&["PTTL", &format!("circuit_{name}")]), -1);
    there.force_close().unwrap();
    assert_eq!(here.state().unwrap(), State::Closed);
    assert_eq!(ok(&here).unwrap(), 7);
    assert_eq!(ok(&there).unwrap(), 7);
}

#[test]
fn disable_is_seen_by_another_process_and_keeps_counting() {
    let server = server_or_skip!();
    let name = unique("disabled");
    let (here, there) = (breaker(&name, server), breaker(&name, server));
    here.disable().unwrap();
    assert_eq!(there.state().unwrap(), State::Disabled);
    for _ in 0..5 {
        assert!(matches!(
            there.call(|| Err::<(), _>("boom")),
            Err(Error::Inner("boom"))
        ));
    }
    assert_eq!(here.counts().unwrap().failures, 5);
    assert_eq!(here.state().unwrap(), State::Disabled);
    here.force_close().unwrap();
    assert_eq!(there.state().unwrap(), State::Closed);
    assert_eq!(there.counts().unwrap().failures, 0);
}

#[test]
fn manual_changes_fire_events_in_the_process_that_made_them() {
    let server = server_or_skip!();
    let name = unique("manual-events");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let events = Arc::clone(&seen);
    let b = CircuitBreaker::builder(&name)
        .storage(server.storage())
        .max_failures(1)
        .on_state_change(move |_, from, to| events.lock().unwrap().push((from, to)))
        .build()
        .unwrap();
    b.force_open().unwrap();
    b.force_close().unwrap();
    b.disable().unwrap();
    b.force_close().unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (State::Closed, State::ForcedOpen),
            (State::ForcedOpen, State::Closed),
            (State::Closed, State::Disabled),
            (State::Disabled, State::Closed),
        ]
    );
}
