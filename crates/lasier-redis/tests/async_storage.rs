//! `AsyncRedisStorage` through lasier-core's `AsyncStorage` steps, as the
//! async facade drives them: admit, run, record.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use lasier_core::{AsyncSteps as _, Steps as _};
use std::sync::Arc;
use std::time::Duration;

use lasier_core::state::{Admission, Outcome, Permit, State, Transition};
use lasier_core::{AsyncStorage, Circuit, Config, Counts, Rule, StorageErrorKind};
use lasier_redis::AsyncRedisStorage;
use support::unique;

const MINUTE: Duration = Duration::from_secs(60);

fn circuit(
    name: &str,
    configure: impl FnOnce(&mut Config) -> &mut Config,
) -> (Circuit, Arc<dyn Rule>) {
    let mut config = Config::new(name);
    configure(config.failure_timeout(MINUTE).circuit_timeout(MINUTE));
    config.validate().unwrap()
}

async fn storage(server: &support::Server) -> AsyncRedisStorage {
    AsyncRedisStorage::connect(server.url()).await.unwrap()
}

/// One guarded call, as the facade makes it.
async fn call(
    s: &AsyncRedisStorage,
    c: &Circuit,
    rule: &dyn Rule,
    outcome: Outcome,
) -> Result<Option<Transition>, Admission> {
    match s.admit(c).await.unwrap().0 {
        Admission::Admitted(permit) => Ok(s.record(c, permit, outcome, rule).await.unwrap()),
        rejected => Err(rejected),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn primitives_follow_the_contract() {
    let server = server_or_skip!();
    let s = storage(server).await;
    let k = unique("async-prim");
    assert_eq!(s.get(&k).await.unwrap(), None);
    let before = server.time_ms();
    assert!(s.add(&k, 5, Some(Duration::from_secs(2))).await.unwrap());
    let after = server.time_ms();
    let deadline: i64 = server.cmd(&["PEXPIRETIME", &k]);
    assert!((before + 2000..=after + 2000).contains(&deadline));
    assert!(!s.add(&k, 7, None).await.unwrap());
    assert_eq!(s.incr(&k, 2).await.unwrap(), 7);
    assert_eq!(
        server.cmd::<i64>(&["PEXPIRETIME", &k]),
        deadline,
        "INCRBY keeps the TTL"
    );
    s.set(&k, 1, None).await.unwrap();
    assert_eq!(server.cmd::<i64>(&["PTTL", &k]), -1);
    let before = server.time_ms();
    s.expire(&k, Duration::from_millis(1500)).await.unwrap();
    let after = server.time_ms();
    let deadline: i64 = server.cmd(&["PEXPIRETIME", &k]);
    assert!((before + 1500..=after + 1500).contains(&deadline));
    s.delete(&k).await.unwrap();
    assert_eq!(s.get(&k).await.unwrap(), None);
    server.cmd::<()>(&["SET", &k, "text"]);
    assert_eq!(
        s.get(&k).await.unwrap_err().kind(),
        StorageErrorKind::Corrupt
    );
    assert_eq!(
        s.incr(&k, 1).await.unwrap_err().kind(),
        StorageErrorKind::Corrupt
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opens_on_the_nth_failure_and_rejects_with_the_time_left() {
    let server = server_or_skip!();
    let s = storage(server).await;
    for configure in [
        (|c: &mut Config| c.max_failures(3)) as fn(&mut Config) -> &mut Config,
        |c| c.percentage_failures(60, 3),
    ] {
        let (c, rule) = circuit(&unique("async-nth"), configure);
        assert_eq!(call(&s, &c, &*rule, Outcome::Success).await, Ok(None));
        assert_eq!(call(&s, &c, &*rule, Outcome::Failure).await, Ok(None));
        assert_eq!(call(&s, &c, &*rule, Outcome::Failure).await, Ok(None));
        assert_eq!(s.state(&c).await.unwrap(), State::Closed);
        assert_eq!(
            call(&s, &c, &*rule, Outcome::Failure).await,
            Ok(Some(Transition {
                from: State::Closed,
                to: State::Open
            }))
        );
        assert_eq!(s.state(&c).await.unwrap(), State::Open);
        assert_eq!(
            s.counts(&c).await.unwrap(),
            Counts::default(),
            "a fresh window"
        );
        match call(&s, &c, &*rule, Outcome::Success).await {
            Err(Admission::Rejected {
                retry_after: Some(left),
            }) => {
                assert!(left > Duration::ZERO && left <= MINUTE, "{left:?}");
            }
            other => panic!("{other:?}"),
        }
        s.reset(&c).await.unwrap();
        assert_eq!(s.state(&c).await.unwrap(), State::Closed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_open_trials_close_or_reopen() {
    let server = server_or_skip!();
    let s = storage(server).await;
    let (c, rule) = circuit(&unique("async-trial"), |c| {
        c.max_failures(1).half_open_max_calls(2)
    });
    s.open_circuit(&c).await.unwrap();
    // The open time is over; the half-open marker is left (no waiting).
    server.cmd::<i64>(&["DEL", c.keys().open()]);
    assert_eq!(s.state(&c).await.unwrap(), State::HalfOpen);
    let (a, transition) = s.admit(&c).await.unwrap();
    let Admission::Admitted(trial @ Permit::Trial { .. }) = a else {
        panic!("{a:?}")
    };
    assert_eq!(
        transition,
        Some(Transition {
            from: State::Open,
            to: State::HalfOpen
        })
    );
    assert_eq!(s.admit(&c).await.unwrap().0, Admission::Admitted(trial));
    assert_eq!(
        s.admit(&c).await.unwrap().0,
        Admission::Rejected { retry_after: None }
    );
    // a normal call's outcome is not counted while half-open
    assert_eq!(
        s.record(&c, Permit::Normal, Outcome::Failure, &*rule)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.record(&c, trial, Outcome::Success, &*rule).await.unwrap(),
        None
    );
    assert_eq!(
        s.record(&c, trial, Outcome::Success, &*rule).await.unwrap(),
        Some(Transition {
            from: State::HalfOpen,
            to: State::Closed
        })
    );
    assert_eq!(s.state(&c).await.unwrap(), State::Closed);
    for key in c.keys().all() {
        assert_eq!(server.cmd::<i64>(&["EXISTS", key]), 0, "{key}");
    }

    s.open_circuit(&c).await.unwrap();
    server.cmd::<i64>(&["DEL", c.keys().open()]);
    let (a, _) = s.admit(&c).await.unwrap();
    let Admission::Admitted(trial @ Permit::Trial { .. }) = a else {
        panic!("{a:?}")
    };
    assert_eq!(
        s.record(&c, trial, Outcome::Failure, &*rule).await.unwrap(),
        Some(Transition {
            from: State::HalfOpen,
            to: State::Open
        })
    );
    assert_eq!(s.state(&c).await.unwrap(), State::Open);
    // a trial that outlived its half-open period decides nothing, not even
    // once the next one has begun
    assert_eq!(
        s.record(&c, trial, Outcome::Success, &*rule).await.unwrap(),
        None
    );
    assert_eq!(s.state(&c).await.unwrap(), State::Open);
    server.cmd::<i64>(&["DEL", c.keys().open()]);
    let (a, _) = s.admit(&c).await.unwrap();
    let Admission::Admitted(next @ Permit::Trial { .. }) = a else {
        panic!("{a:?}")
    };
    assert_ne!(next, trial);
    for outcome in [Outcome::Success, Outcome::Failure] {
        assert_eq!(s.record(&c, trial, outcome, &*rule).await.unwrap(), None);
    }
    // nor does its cancellation free a slot of the new period
    s.release(&c, trial).await.unwrap();
    assert_eq!(s.admit(&c).await.unwrap().0, Admission::Admitted(next));
    assert_eq!(
        s.admit(&c).await.unwrap().0,
        Admission::Rejected { retry_after: None }
    );
    assert_eq!(s.state(&c).await.unwrap(), State::HalfOpen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_vanished_trial_holder_frees_its_slot_when_its_lease_ends() {
    let server = server_or_skip!();
    let s = storage(server).await;
    let mut config = Config::new(unique("async-vanished"));
    config
        .max_failures(1)
        .circuit_timeout(Duration::from_secs(1))
        .trial_lease(Duration::from_millis(300));
    let (c, rule) = config.validate().unwrap();
    s.open_circuit(&c).await.unwrap();
    wait_for(&s, &c, State::HalfOpen).await;
    // A trial is handed out, and its holder never reports.
    let lost = match s.admit(&c).await.unwrap().0 {
        Admission::Admitted(permit @ Permit::Trial { .. }) => permit,
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        s.admit(&c).await.unwrap().0,
        Admission::Rejected { .. }
    ));
    // Its slot lives one lease; then the next call is a trial again (never
    // a normal call: the circuit stays half-open).
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(s.state(&c).await.unwrap(), State::HalfOpen);
    let next = match s.admit(&c).await.unwrap().0 {
        Admission::Admitted(permit @ Permit::Trial { .. }) => permit,
        other => panic!("{other:?}"),
    };
    assert_ne!(next, lost);
    // The lost trial's late verdict decides nothing; the new one's does.
    assert_eq!(
        s.record(&c, lost, Outcome::Failure, &*rule).await.unwrap(),
        None
    );
    assert_eq!(s.state(&c).await.unwrap(), State::HalfOpen);
    assert!(s
        .record(&c, next, Outcome::Success, &*rule)
        .await
        .unwrap()
        .is_some());
    assert_eq!(s.state(&c).await.unwrap(), State::Closed);
}

/// Waits (bounded) until Redis' clock has brought the circuit to `want`.
async fn wait_for(s: &AsyncRedisStorage, c: &Circuit, want: State) {
    for _ in 0..2000 {
        if s.state(c).await.unwrap() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("never {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_lose_no_count_and_open_once() {
    let server = server_or_skip!();
    let s = storage(server).await;
    let (c, rule) = circuit(&unique("async-tasks"), |c| {
        c.percentage_failures(100, 1_000_000)
    });
    let mut tasks = Vec::new();
    for t in 0..64_u64 {
        let (s, c, rule) = (s.clone(), c.clone(), Arc::clone(&rule));
        tasks.push(tokio::spawn(async move {
            let outcome = if t % 4 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            for _ in 0..10 {
                call(&s, &c, &*rule, outcome).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(s.counts(&c).await.unwrap(), Counts::new(160, 640));

    let (c, rule) = circuit(&unique("async-once"), |c| c.max_failures(10));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        // separate connections, as separate processes would have
        let (s, c, rule) = (storage(server).await, c.clone(), Arc::clone(&rule));
        tasks.push(tokio::spawn(async move {
            s.record(&c, Permit::Normal, Outcome::Failure, &*rule)
                .await
                .unwrap()
        }));
    }
    let mut opened = 0;
    for task in tasks {
        if task.await.unwrap()
            == Some(Transition {
                from: State::Closed,
                to: State::Open,
            })
        {
            opened += 1;
        }
    }
    assert_eq!(opened, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_and_async_storages_share_one_circuit() {
    let server = server_or_skip!();
    let a = storage(server).await;
    let (c, rule) = circuit(&unique("async-shared"), |c| c.max_failures(2));
    a.record(&c, Permit::Normal, Outcome::Failure, &*rule)
        .await
        .unwrap();
    let (c2, rule2) = (c.clone(), Arc::clone(&rule));
    let sync = server.storage();
    let transition = tokio::task::spawn_blocking(move || {
        sync.record(&c2, Permit::Normal, Outcome::Failure, &*rule2)
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        transition,
        Some(Transition {
            from: State::Closed,
            to: State::Open
        })
    );
    assert_eq!(a.state(&c).await.unwrap(), State::Open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_is_corrupt() {
    let server = server_or_skip!();
    let s = storage(server).await;
    let (c, rule) = circuit(&unique("async-garbage"), |c| c.percentage_failures(50, 0));
    server.cmd::<()>(&["HSET", c.keys().requests(), "f", "1"]);
    let e = s
        .record(&c, Permit::Normal, Outcome::Success, &*rule)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::Corrupt, "{e}");
    assert_eq!(
        s.counts(&c).await.unwrap_err().kind(),
        StorageErrorKind::Corrupt
    );
    server.cmd::<()>(&["SET", c.keys().open(), "yes"]);
    assert_eq!(
        s.admit(&c).await.unwrap_err().kind(),
        StorageErrorKind::Corrupt
    );
    assert_eq!(
        s.state(&c).await.unwrap_err().kind(),
        StorageErrorKind::Corrupt
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_nothing_fails_in_bounded_time() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let error = AsyncRedisStorage::connect(format!("redis://127.0.0.1:{port}/"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), StorageErrorKind::Unavailable, "{error}");
    let error = AsyncRedisStorage::connect("nonsense").await.unwrap_err();
    assert_eq!(error.kind(), StorageErrorKind::Other, "{error}");
}
