//! The async facade (`lasier-async`) on `AsyncRedisStorage`. The bodies are
//! in `behaviour/async_breaker.rs`, shared with the cluster's tests
//! (`cluster_breaker.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod behaviour;
mod support;

async_breaker_suite!(support::server());
