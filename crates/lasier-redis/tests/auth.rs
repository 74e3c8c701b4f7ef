//! Passwords and ACL users in the URL, against a password-protected
//! `redis-server` (`--requirepass`) of the test's own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::error::Error as _;
use std::time::Duration;

use lasier_core::{AsyncSteps, Config, Steps};
use lasier_redis::{AsyncRedisStorage, RedisStorage};
use lasier_sync::{Error, State, StorageError, StorageErrorKind, StorageFailurePolicy};
use support::{unique, RedisServer, ServerOptions};

const PASSWORD: &str = "s3cret-Pa55";

fn protected() -> Option<RedisServer> {
    RedisServer::start_with(ServerOptions::new().password(PASSWORD))
}

fn url(server: &RedisServer, credentials: &str) -> String {
    format!("redis://{credentials}127.0.0.1:{}/", server.port())
}

fn circuit() -> lasier_core::Circuit {
    Config::new(unique("auth"))
        .max_failures(1)
        .validate()
        .unwrap()
        .0
}

/// A clear error: not a timeout nor a corrupt value, redis' error as its
/// source, no password in what it says.
fn check_refused(error: &StorageError, said: &str) {
    assert!(
        matches!(
            error.kind(),
            StorageErrorKind::Other | StorageErrorKind::Unavailable
        ),
        "{error}"
    );
    assert!(error.source().is_some(), "{error:?}: no source");
    let text = error.to_string();
    assert!(text.to_lowercase().contains(said), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
}

#[test]
fn a_password_in_the_url_authenticates_every_connection() {
    let Some(server) = protected() else { return };
    let storage = RedisStorage::open(server.url()).unwrap();
    assert!(!format!("{storage:?}").contains(PASSWORD));
    let breaker = lasier_sync::CircuitBreaker::builder(unique("auth-ok"))
        .storage(storage)
        .max_failures(1)
        .on_storage_failure(StorageFailurePolicy::FailClosed)
        .build()
        .unwrap();
    assert!(matches!(
        breaker.call(|| Err::<(), _>("boom")),
        Err(Error::Inner("boom"))
    ));
    assert_eq!(breaker.state().unwrap(), State::Open);
}

#[test]
fn a_wrong_or_missing_password_is_a_clear_storage_error() {
    let Some(server) = protected() else { return };
    let c = circuit();
    let wrong = RedisStorage::open(url(&server, ":wrong@")).unwrap();
    check_refused(&wrong.state(&c).unwrap_err(), "refused the credentials");
    let missing = RedisStorage::open(url(&server, "")).unwrap();
    check_refused(&missing.state(&c).unwrap_err(), "noauth");

    // Through a breaker: the policy decides, the error says why.
    let breaker = lasier_sync::CircuitBreaker::builder(unique("auth-wrong"))
        .storage(wrong)
        .max_failures(1)
        .on_storage_failure(StorageFailurePolicy::FailClosed)
        .build()
        .unwrap();
    match breaker.call(|| -> Result<(), ()> { panic!("must not run") }) {
        Err(Error::Storage(e)) => check_refused(&e, "refused the credentials"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_acl_user_in_the_url_authenticates() {
    let Some(server) = protected() else { return };
    let user = unique("lasier-user");
    server.cmd::<()>(&["ACL", "SETUSER", &user, "on", ">user-pw", "~*", "+@all"]);
    let storage = RedisStorage::open(url(&server, &format!("{user}:user-pw@"))).unwrap();
    let c = circuit();
    assert_eq!(storage.state(&c).unwrap(), State::Closed);
    // (a user without the right to publish on the channel of changes, as
    // Redis 7 makes new users, still opens and resets circuits)
    storage.open_circuit(&c).unwrap();
    assert_eq!(storage.state(&c).unwrap(), State::Open);
    storage.reset(&c).unwrap();
    assert_eq!(storage.state(&c).unwrap(), State::Closed);
    let wrong = RedisStorage::open(url(&server, &format!("{user}:nope@"))).unwrap();
    check_refused(&wrong.state(&c).unwrap_err(), "refused the credentials");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_storages_authenticate_too() {
    let Some(server) = protected() else { return };
    let storage = AsyncRedisStorage::connect(server.url()).await.unwrap();
    let c = circuit();
    assert_eq!(storage.state(&c).await.unwrap(), State::Closed);
    let error = AsyncRedisStorage::connect(url(&server, ":wrong@"))
        .await
        .unwrap_err();
    check_refused(&error, "refused the credentials");
}

/// Sync mode's push with credentials: the watch subscribes with the
/// password of the URL; an ACL user denied the channel (Redis 7 gives new
/// users none) gets no push, and everything else still works: steps run,
/// and the breaker learns of changes at its syncs.
#[test]
fn the_push_authenticates_and_an_acl_without_the_channel_only_loses_it() {
    let Some(server) = protected() else { return };
    let user = unique("no-channels");
    server.cmd::<()>(&["ACL", "SETUSER", &user, "on", ">user-pw", "~*", "+@all"]);
    let name = unique("auth-push");
    let breaker = |credentials: &str, interval: Option<Duration>| {
        let builder = lasier_sync::CircuitBreaker::builder(name.as_str())
            .storage(RedisStorage::open(url(&server, credentials)).unwrap())
            .max_failures(1);
        match interval {
            Some(interval) => builder.sync_interval(interval),
            None => builder,
        }
        .build()
        .unwrap()
    };
    let with_password = format!(":{PASSWORD}@");
    let watched = breaker(&with_password, Some(Duration::from_secs(30)));
    let denied = breaker(
        &format!("{user}:user-pw@"),
        Some(Duration::from_millis(300)),
    );
    watched.call(|| Ok::<(), ()>(())).unwrap();
    denied.call(|| Ok::<(), ()>(())).unwrap();
    std::thread::sleep(Duration::from_millis(500));

    let _ = breaker(&with_password, None).call(|| Err::<(), ()>(()));
    support::eventually("the opening pushed to the breaker with a password", || {
        watched.call(|| Ok::<(), ()>(())).is_err()
    });
    // no push for the user denied the channel: seen at a sync (300 ms)
    support::eventually("the opening seen at a sync without the push", || {
        denied.call(|| Ok::<(), ()>(())).is_err()
    });
    assert!(!denied.in_fallback());
}
