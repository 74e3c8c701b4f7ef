//! One breaker per key: written once in `lasier-core`.

lasier_core::__define_registry!("```\nuse lasier_sync::{CircuitBreaker, MemoryStorage, Registry};\n\nlet storage = MemoryStorage::new();\nlet hosts = Registry::new(move |host| {\n    CircuitBreaker::builder(format!(\"db:{host}\"))\n        .max_failures(5)\n        .storage(storage.clone())\n});\nlet breaker = hosts.get(\"db-1.internal\")?;\nlet rows: Result<u32, lasier_sync::Error<std::io::Error>> = breaker.call(|| Ok(3));\n# assert_eq!(rows.unwrap(), 3);\n# Ok::<(), Box<dyn std::error::Error>>(())\n```");

impl Registry {
    /// Every breaker it holds, by key (sorted), with its metrics: what a
    /// health endpoint shows. One store round trip or two per breaker on a
    /// shared store (none in-process); never fails (see
    /// [`CircuitBreaker::metrics`]). Once a storage is found down (it
    /// timed out or was unavailable), the other breakers on it answer from
    /// what they last knew, without waiting for it again.
    pub fn metrics(&self) -> Vec<(String, lasier_core::Metrics)> {
        let mut down = lasier_core::facade::DownStores::default();
        self.breakers()
            .into_iter()
            .map(|(key, breaker)| {
                let core = breaker.core();
                let group = core.store().map(|store| store.sync_group());
                let metrics = match down.kind(group) {
                    Some(kind) => core.metrics_known(kind),
                    None => breaker.metrics(),
                };
                down.note(group, &metrics);
                (key, metrics)
            })
            .collect()
    }
}
