//! `rediss://` (feature `tls`): a `redis-server` serving TLS only, with a
//! certificate signed by a CA the test makes (with `openssl`), and a client
//! that trusts that CA.
#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use lasier_core::{AsyncSteps, Config, Steps};
use lasier_redis::redis::{self, TlsCertificates};
use lasier_redis::{AsyncRedisStorage, Options, RedisStorage};
use lasier_sync::{State, StorageErrorKind};
use support::{skip, unique, RedisServer, ServerOptions};

/// A CA and a certificate for 127.0.0.1 signed by it, in a fresh
/// directory; `None` (after a loud skip) without `openssl`.
fn certificates() -> Option<PathBuf> {
    let dir = std::env::temp_dir().join(unique("lasier-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !run(&["version"]) {
        skip("openssl is not installed (apt-get install openssl): no TLS test");
        return None;
    }
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let made = run(&[
        &[
            "req",
            "-x509",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=lasier test CA",
        ][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.crt"],
    ]
    .concat())
        && run(&[
            &["req", "-nodes", "-subj", "/CN=localhost"][..],
            &ec,
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat())
        && run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.crt",
        ]);
    assert!(made, "openssl could not make the test certificates");
    Some(dir)
}

fn tls_server(dir: &Path) -> Option<RedisServer> {
    RedisServer::start_with(ServerOptions::new().tls(
        dir.join("server.crt"),
        dir.join("server.key"),
        dir.join("ca.crt"),
    ))
}

/// A client for `url` that trusts the test CA.
fn client(url: &str, dir: &Path) -> redis::Client {
    redis::Client::build_with_tls(
        url,
        TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(dir.join("ca.crt")).unwrap()),
        },
    )
    .unwrap()
}

#[test]
fn rediss_urls_work_with_the_tls_feature() {
    let Some(dir) = certificates() else { return };
    let Some(server) = tls_server(&dir) else {
        return;
    };
    let url = server.url();
    assert!(url.starts_with("rediss://"), "{url}");
    let storage = RedisStorage::with_options(client(&url, &dir), Options::default());
    let breaker = lasier_sync::CircuitBreaker::builder(unique("tls"))
        .storage(storage)
        .max_failures(1)
        .build()
        .unwrap();
    let _ = breaker.call(|| Err::<(), _>("boom"));
    assert_eq!(breaker.state().unwrap(), State::Open);
    assert!(!breaker.in_fallback());

    // Without the CA, the server's certificate is not trusted: an error
    // that says so, never a plain-text fallback.
    let untrusted = RedisStorage::open(url.as_str()).unwrap();
    let c = Config::new(unique("tls"))
        .max_failures(1)
        .validate()
        .unwrap()
        .0;
    let error = untrusted.state(&c).unwrap_err();
    assert!(
        matches!(
            error.kind(),
            StorageErrorKind::Other | StorageErrorKind::Unavailable
        ),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_storages_speak_tls_too() {
    let Some(dir) = certificates() else { return };
    let Some(server) = tls_server(&dir) else {
        return;
    };
    let manager = redis::aio::ConnectionManager::new(client(&server.url(), &dir))
        .await
        .unwrap();
    let storage = AsyncRedisStorage::with_options(manager, Options::default());
    let c = Config::new(unique("tls"))
        .max_failures(1)
        .validate()
        .unwrap()
        .0;
    storage.open_circuit(&c).await.unwrap();
    assert_eq!(storage.state(&c).await.unwrap(), State::Open);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sync mode's push over TLS: the storage's watch subscribes with the same
/// certificates as its pool, and an opening made through another storage
/// reaches the breaker long before its 30 s interval.
#[test]
fn the_push_of_sync_mode_speaks_tls_too() {
    let Some(dir) = certificates() else { return };
    let Some(server) = tls_server(&dir) else {
        return;
    };
    let url = server.url();
    let name = unique("tls-push");
    let storage = || RedisStorage::with_options(client(&url, &dir), Options::default());
    let watched = lasier_sync::CircuitBreaker::builder(name.as_str())
        .storage(storage())
        .max_failures(1)
        .sync_interval(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    watched.call(|| Ok::<(), ()>(())).unwrap();
    let other = lasier_sync::CircuitBreaker::builder(name.as_str())
        .storage(storage())
        .max_failures(1)
        .build()
        .unwrap();
    // once the watch listens (its first sync), trip the circuit elsewhere
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = other.call(|| Err::<(), _>("boom"));
    support::eventually("the opening pushed over TLS", || {
        watched.call(|| Ok::<(), ()>(())).is_err()
    });
    let _ = std::fs::remove_dir_all(&dir);
}
