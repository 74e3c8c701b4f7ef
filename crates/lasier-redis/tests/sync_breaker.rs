//! The sync breaker's behaviour on `RedisStorage`: the same behaviours as
//! lasier-sync's tests on the in-memory storage, with Redis' own clock.
//! The bodies are in `behaviour/sync_breaker.rs`, shared with the cluster's
//! tests (`cluster_breaker.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod behaviour;
mod support;

sync_breaker_suite!(support::server());
