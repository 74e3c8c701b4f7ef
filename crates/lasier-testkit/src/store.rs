//! The storage under test, sync or async, behind one async interface, so
//! that every check is written once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lasier_core::clock::ManualClock;
use lasier_core::{
    Admission, AsyncSteps as _, Circuit, Counts, MemoryStorage, Outcome, Permit, Rule, Snapshot,
    State, Steps as _, Storage, StorageError, SyncBatch, Transition,
};

/// What the checks call: the primitives, the fused steps, and concurrent
/// callers (threads for a sync storage, tasks for an async one).
#[async_trait]
pub(crate) trait Store: Send + Sync {
    async fn add(&self, key: &str, value: i64, ttl: Option<Duration>)
        -> Result<bool, StorageError>;
    async fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError>;
    async fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError>;
    async fn get(&self, key: &str) -> Result<Option<i64>, StorageError>;
    async fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError>;
    async fn delete(&self, key: &str) -> Result<(), StorageError>;

    async fn admit(&self, c: &Circuit) -> Result<(Admission, Option<Transition>), StorageError>;
    async fn record(
        &self,
        c: &Circuit,
        permit: Permit,
        outcome: Outcome,
        rule: &dyn Rule,
    ) -> Result<Option<Transition>, StorageError>;
    async fn release(&self, c: &Circuit, permit: Permit) -> Result<(), StorageError>;
    async fn open_circuit(&self, c: &Circuit) -> Result<(), StorageError>;
    async fn state(&self, c: &Circuit) -> Result<State, StorageError>;
    async fn counts(&self, c: &Circuit) -> Result<Counts, StorageError>;
    async fn repair(&self, c: &Circuit) -> Result<(), StorageError>;
    async fn reset(&self, c: &Circuit) -> Result<(), StorageError>;
    async fn sync(
        &self,
        c: &Circuit,
        batch: &SyncBatch<'_>,
        rule: &dyn Rule,
    ) -> Result<Snapshot, StorageError>;

    /// `workers` concurrent callers each add 1 to `key`, `each` times;
    /// returns every value the storage returned.
    async fn incr_concurrently(
        &self,
        key: &str,
        workers: usize,
        each: usize,
    ) -> Result<Vec<i64>, StorageError>;

    /// `workers` concurrent callers each `add` `key` once (caller `i` adds
    /// the value `i`); returns what each add returned, in caller order.
    async fn add_concurrently(&self, key: &str, workers: usize) -> Result<Vec<bool>, StorageError>;
}

/// A storage under test, with the manual clock it was given, if any.
pub(crate) struct Subject {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Option<ManualClock>,
}

/// A blocking [`Storage`], called from the checks' futures.
pub(crate) struct SyncStore<S>(pub(crate) S);

#[async_trait]
impl<S: Storage> Store for SyncStore<S> {
    async fn add(
        &self,
        key: &str,
        value: i64,
        ttl: Option<Duration>,
    ) -> Result<bool, StorageError> {
        self.0.add(key, value, ttl)
    }
    async fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError> {
        self.0.set(key, value, ttl)
    }
    async fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
        self.0.incr(key, delta)
    }
    async fn get(&self, key: &str) -> Result<Option<i64>, StorageError> {
        self.0.get(key)
    }
    async fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError> {
        self.0.expire(key, ttl)
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.0.delete(key)
    }
    async fn admit(&self, c: &Circuit) -> Result<(Admission, Option<Transition>), StorageError> {
        self.0.admit(c)
    }
    async fn record(
        &self,
        c: &Circuit,
        permit: Permit,
        outcome: Outcome,
        rule: &dyn Rule,
    ) -> Result<Option<Transition>, StorageError> {
        self.0.record(c, permit, outcome, rule)
    }
    async fn release(&self, c: &Circuit, permit: Permit) -> Result<(), StorageError> {
        self.0.release(c, permit)
    }
    async fn open_circuit(&self, c: &Circuit) -> Result<(), StorageError> {
        self.0.open_circuit(c)
    }
    async fn state(&self, c: &Circuit) -> Result<State, StorageError> {
        self.0.state(c)
    }
    async fn counts(&self, c: &Circuit) -> Result<Counts, StorageError> {
        self.0.counts(c)
    }
    async fn repair(&self, c: &Circuit) -> Result<(), StorageError> {
        self.0.repair(c)
    }
    async fn reset(&self, c: &Circuit) -> Result<(), StorageError> {
        self.0.reset(c)
    }
    async fn sync(
        &self,
        c: &Circuit,
        batch: &SyncBatch<'_>,
        rule: &dyn Rule,
    ) -> Result<Snapshot, StorageError> {
        self.0.sync(c, batch, rule)
    }

    async fn incr_concurrently(
        &self,
        key: &str,
        workers: usize,
        each: usize,
    ) -> Result<Vec<i64>, StorageError> {
        let per_thread = in_threads(workers, |_| {
            (0..each)
                .map(|_| self.0.incr(key, 1))
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok(per_thread.into_iter().flatten().collect())
    }

    async fn add_concurrently(&self, key: &str, workers: usize) -> Result<Vec<bool>, StorageError> {
        in_threads(workers, |i| self.0.add(key, value_of(i), None))
    }
}

/// Caller `i`'s value in [`Store::add_concurrently`].
pub(crate) fn value_of(caller: usize) -> i64 {
    i64::try_from(caller).unwrap_or(i64::MAX)
}

/// Runs `work(i)` on `workers` threads released together by a barrier.
fn in_threads<T: Send>(
    workers: usize,
    work: impl Fn(usize) -> Result<T, StorageError> + Sync,
) -> Result<Vec<T>, StorageError> {
    let barrier = std::sync::Barrier::new(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|i| {
                let (barrier, work) = (&barrier, &work);
                scope.spawn(move || {
                    barrier.wait();
                    work(i)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| match handle.join() {
                Ok(result) => result,
                // The storage panicked on a worker thread: let the panic
                // reach the test, as it would have on the test's thread.
                Err(payload) => std::panic::resume_unwind(payload),
            })
            .collect()
    })
}

/// An [`AsyncStorage`](lasier_core::AsyncStorage), shared with the tasks of
/// the concurrency checks.
#[cfg(feature = "async")]
pub(crate) struct AsyncStore<S>(pub(crate) Arc<S>);

#[cfg(feature = "async")]
#[async_trait]
impl<S: lasier_core::AsyncStorage + 'static> Store for AsyncStore<S> {
    async fn add(
        &self,
        key: &str,
        value: i64,
        ttl: Option<Duration>,
    ) -> Result<bool, StorageError> {
        self.0.add(key, value, ttl).await
    }
    async fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError> {
        self.0.set(key, value, ttl).await
    }
    async fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
        self.0.incr(key, delta).await
    }
    async fn get(&self, key: &str) -> Result<Option<i64>, StorageError> {
        self.0.get(key).await
    }
    async fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError> {
        self.0.expire(key, ttl).await
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.0.delete(key).await
    }
    async fn admit(&self, c: &Circuit) -> Result<(Admission, Option<Transition>), StorageError> {
        self.0.admit(c).await
    }
    async fn record(
        &self,
        c: &Circuit,
        permit: Permit,
        outcome: Outcome,
        rule: &dyn Rule,
    ) -> Result<Option<Transition>, StorageError> {
        self.0.record(c, permit, outcome, rule).await
    }
    async fn release(&self, c: &Circuit, permit: Permit) -> Result<(), StorageError> {
        self.0.release(c, permit).await
    }
    async fn open_circuit(&self, c: &Circuit) -> Result<(), StorageError> {
        self.0.open_circuit(c).await
    }
    async fn state(&self, c: &Circuit) -> Result<State, StorageError> {
        self.0.state(c).await
    }
    async fn counts(&self, c: &Circuit) -> Result<Counts, StorageError> {
        self.0.counts(c).await
    }
    async fn repair(&self, c: &Circuit) -> Result<(), StorageError> {
        self.0.repair(c).await
    }
    async fn reset(&self, c: &Circuit) -> Result<(), StorageError> {
        self.0.reset(c).await
    }
    async fn sync(
        &self,
        c: &Circuit,
        batch: &SyncBatch<'_>,
        rule: &dyn Rule,
    ) -> Result<Snapshot, StorageError> {
        self.0.sync(c, batch, rule).await
    }

    async fn incr_concurrently(
        &self,
        key: &str,
        workers: usize,
        each: usize,
    ) -> Result<Vec<i64>, StorageError> {
        let per_task = crate::runtime::in_tasks(workers, |_| {
            let (storage, key) = (Arc::clone(&self.0), key.to_owned());
            async move {
                let mut seen = Vec::with_capacity(each);
                for _ in 0..each {
                    seen.push(storage.incr(&key, 1).await?);
                }
                Ok(seen)
            }
        })
        .await?;
        Ok(per_task.into_iter().flatten().collect())
    }

    async fn add_concurrently(&self, key: &str, workers: usize) -> Result<Vec<bool>, StorageError> {
        crate::runtime::in_tasks(workers, |i| {
            let (storage, key) = (Arc::clone(&self.0), key.to_owned());
            async move { storage.add(&key, value_of(i), None).await }
        })
        .await
    }
}

/// The reference the fused steps are compared with: the six primitives of
/// a correct storage and nothing else, so that every fused step runs its
/// default body.
#[derive(Debug)]
pub(crate) struct Reference(MemoryStorage);

impl Reference {
    /// On `clock` if given, else on the monotonic clock.
    pub(crate) fn new(clock: Option<&ManualClock>) -> Self {
        Self(clock.map_or_else(MemoryStorage::new, |clock| {
            MemoryStorage::with_clock(clock.clone())
        }))
    }
}

impl Storage for Reference {
    fn add(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<bool, StorageError> {
        self.0.add(key, value, ttl)
    }
    fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError> {
        self.0.set(key, value, ttl)
    }
    fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
        self.0.incr(key, delta)
    }
    fn get(&self, key: &str) -> Result<Option<i64>, StorageError> {
        self.0.get(key)
    }
    fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError> {
        self.0.expire(key, ttl)
    }
    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.0.delete(key)
    }
}
