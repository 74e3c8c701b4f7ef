//! lasier-rs benches: one entry file, one module per area.
//!
//! `cargo bench -p lasier-benches`, then
//! `cargo run -p lasier-benches --bin report` for the markdown table.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main};

mod facades;
mod local;
mod redis;
mod registry;

criterion_group!(
    benches,
    local::closed_path,
    local::rejection,
    facades::facades,
    facades::facades_rejected,
    registry::hit,
    registry::insert_when_full,
    redis::redis
);
criterion_main!(benches);
