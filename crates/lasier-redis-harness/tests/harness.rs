//! The harness does what the tests built on it rely on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use lasier_redis_harness::{unique, Fault, Proxy, RedisServer, ServerOptions};

fn ping(url: &str, read_timeout: Duration) -> redis::RedisResult<String> {
    let client = redis::Client::open(url)?;
    let mut connection = client.get_connection_with_timeout(Duration::from_secs(2))?;
    connection.set_read_timeout(Some(read_timeout))?;
    redis::cmd("PING").query(&mut connection)
}

#[test]
fn a_server_can_be_killed_and_restarted_on_its_port() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let key = unique("harness");
    server.cmd::<()>(&["SET", &key, "1"]);
    let port = server.port();
    assert_ne!(port, 6379, "never the machine's shared server");
    server.kill();
    assert!(!server.is_running());
    assert!(ping(&server.url(), Duration::from_secs(1)).is_err());
    server.restart();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    // A crash loses everything: the server starts empty.
    assert_eq!(server.cmd::<i64>(&["EXISTS", &key]), 0);
}

#[test]
fn a_password_protected_server_wants_its_password() {
    let Some(server) = RedisServer::start_with(ServerOptions::new().password("pw")) else {
        return;
    };
    assert!(server.url().starts_with("redis://:pw@127.0.0.1:"));
    assert_eq!(ping(&server.url(), Duration::from_secs(1)).unwrap(), "PONG");
    let bare = format!("redis://127.0.0.1:{}/", server.port());
    let error = ping(&bare, Duration::from_secs(1)).unwrap_err();
    assert!(error.to_string().contains("NOAUTH"), "{error}");
}

#[test]
fn the_proxy_forwards_delays_and_holds_on_command() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let proxy = Proxy::start(server.addr());
    let url = proxy.url(None);
    assert_eq!(ping(&url, Duration::from_secs(1)).unwrap(), "PONG");
    assert!(proxy.sent().iter().any(|c| c.name == "PING"));

    proxy.set(Fault::Delay(Duration::from_millis(100)));
    let began = Instant::now();
    assert_eq!(ping(&url, Duration::from_secs(5)).unwrap(), "PONG");
    assert!(began.elapsed() >= Duration::from_millis(100));

    proxy.set(Fault::Blackhole);
    let client = redis::Client::open(url.as_str()).unwrap();
    // Connecting waits for replies too: the connection is made first.
    proxy.set(Fault::None);
    let mut connection = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap();
    proxy.set(Fault::Blackhole);
    connection
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let error = redis::cmd("PING")
        .query::<String>(&mut connection)
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    let pings = proxy.sent().iter().filter(|c| c.name == "PING").count();
    assert_eq!(pings, 3, "the held PING was received all the same");

    // Lifted: what was held is delivered, and new traffic flows.
    proxy.set(Fault::None);
    assert_eq!(ping(&url, Duration::from_secs(1)).unwrap(), "PONG");
    let before = proxy.connections();
    proxy.cut_connections();
    assert_eq!(ping(&url, Duration::from_secs(1)).unwrap(), "PONG");
    assert_eq!(proxy.connections(), before + 1);
}

#[test]
fn a_cluster_serves_every_slot_and_fails_over_when_a_master_dies() {
    let began = Instant::now();
    let Some(cluster) = lasier_redis_harness::RedisCluster::start() else {
        return;
    };
    println!("FIGURE harness: cluster started in {:?}", began.elapsed());
    assert_eq!(cluster.nodes().len(), 6);
    for node in cluster.nodes() {
        assert_ne!(node.port(), 6379, "never the machine's shared server");
        assert!(node.port() < 55535, "the bus port is port + 10000");
    }
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    // A tag lands where it is asked to.
    for master in &masters {
        let tag = cluster.tag_on(master, "harness");
        assert_eq!(cluster.master_of(&tag).port(), master.port());
        assert_eq!(cluster.master_of(&format!("x{tag}y")).port(), master.port());
    }
    let victim = masters[1];
    let tag = cluster.tag_on(victim, "harness");
    let slot = cluster.slot(&tag);
    let replica = cluster
        .replica_of(victim)
        .unwrap_or_else(|| panic!("no replica of {}: {:#?}", victim.port(), cluster.view()))
        .port();
    let killed = Instant::now();
    victim.kill();
    cluster.wait_healthy();
    println!("FIGURE harness: failed over in {:?}", killed.elapsed());
    assert_eq!(cluster.master_of_slot(slot).port(), replica);
    // Back, as a replica of the node that took over.
    let restarted = Instant::now();
    victim.restart();
    cluster.wait_healthy();
    println!("FIGURE harness: rejoined in {:?}", restarted.elapsed());
    assert_eq!(cluster.master_of_slot(slot).port(), replica);
    assert_eq!(
        cluster.replica_of(cluster.node(replica)).map(|n| n.port()),
        Some(victim.port())
    );
}
