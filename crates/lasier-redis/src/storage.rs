//! [`Redis`] and [`AsyncRedis`]: the breaker's storage steps, written once
//! over a transport (see [`transport`](crate::transport)), for blocking
//! and for async code.
//!
//! Each primitive is one command; each fused step one script (two for a
//! failure that trips: the record, then the opening, within one step's
//! deadline). What a script's reply means is decided in `scripts.rs`, once
//! for both.

use std::fmt;
use std::sync::Arc;
#[cfg(feature = "async")]
use std::time::Duration;

use lasier_core::state::{
    Admission, Manual, Outcome, Permit, Snapshot, State, SyncBatch, Transition,
};
use lasier_core::{Changed, Circuit, ConfigError, Counts, Rule, StorageError, SyncItem, Watch};

use crate::{commands, scripts};

/// Circuit state in Redis for blocking code, over a transport: implements
/// [`Storage`](lasier_core::Storage). You name it
/// [`RedisStorage`](crate::RedisStorage) (one server) or
/// `ClusterRedisStorage` (a Redis Cluster, feature `cluster`), whose docs
/// say how to build one and what it guarantees.
///
/// Clones share the connections. Breakers with the same name on the same
/// Redis share one circuit, whatever process they run in, including Python
/// `lasier` services.
#[cfg(feature = "sync")]
pub struct Redis<T> {
    transport: Arc<T>,
}

/// Circuit state in Redis for async code (tokio), over a transport:
/// implements [`AsyncStorage`](lasier_core::AsyncStorage). You name it
/// [`AsyncRedisStorage`](crate::AsyncRedisStorage) (one server) or
/// `AsyncClusterRedisStorage` (a Redis Cluster, feature `cluster`), whose
/// docs say how to build one and what it guarantees.
///
/// Every step is bounded by tokio's timer at the storage's
/// [timeout](crate::Options::timeout), whatever the transport waits for.
#[cfg(feature = "async")]
pub struct AsyncRedis<T> {
    transport: Arc<T>,
    timeout: Duration,
}

#[cfg(feature = "sync")]
impl<T> Clone for Redis<T> {
    fn clone(&self) -> Self {
        Self {
            transport: Arc::clone(&self.transport),
        }
    }
}

#[cfg(feature = "async")]
impl<T> Clone for AsyncRedis<T> {
    fn clone(&self) -> Self {
        Self {
            transport: Arc::clone(&self.transport),
            timeout: self.timeout,
        }
    }
}

/// The error of a listing on a storage whose nodes are unknown.
#[cfg(any(feature = "sync", feature = "async"))]
fn unknown_nodes() -> StorageError {
    StorageError::new(
        lasier_core::StorageErrorKind::Other,
        "this storage was built from a connection builder of its own: its nodes are unknown, \
         so its circuits cannot be listed (list them with a storage built from URLs)",
    )
}

#[cfg(feature = "sync")]
mod blocking {
    use std::time::Duration;

    use lasier_core::{FusedSteps, Storage};
    use redis::{Cmd, FromRedisValue, ScriptInvocation};

    use super::*;
    use crate::transport::{Session, Transport};

    impl<T> Redis<T> {
        pub(crate) fn over(transport: T) -> Self {
            Self {
                transport: Arc::new(transport),
            }
        }

        pub(crate) fn transport(&self) -> &T {
            &self.transport
        }
    }

    #[allow(private_bounds)]
    impl<T: Transport> Redis<T> {
        /// Every circuit in this storage's Redis, by `SCAN` of the keys that
        /// name one, on the server or on every master of a cluster, with the
        /// keys that showed each (see [`crate::listing`]): circuits that
        /// breakers registered (within a day), and circuits whose state is
        /// not closed, including those Python `lasier` opened.
        ///
        /// # Errors
        ///
        /// The store's error; [`StorageErrorKind::Other`] for a storage
        /// built from a connection builder of your own, whose nodes it
        /// does not know.
        ///
        /// [`StorageErrorKind::Other`]: lasier_core::StorageErrorKind::Other
        pub fn circuits(&self) -> Result<crate::listing::Found, StorageError> {
            let on = self.transport.watch_on().ok_or_else(unknown_nodes)?;
            crate::listing::circuits_on(on.nodes(), on.connect_timeout())
                .map_err(crate::error::from_redis)
        }
    }

    // (crate-private helpers over the crate's own transport trait)
    #[allow(private_bounds)]
    impl<T: Transport> Redis<T> {
        fn query<R: FromRedisValue>(&self, cmd: &Cmd) -> Result<R, StorageError> {
            self.transport.session()?.query(cmd)
        }

        fn run<R: FromRedisValue>(
            &self,
            circuit: &Circuit,
            invocation: &ScriptInvocation<'_>,
        ) -> Result<R, StorageError> {
            self.transport.session()?.invoke(circuit, invocation)
        }

        /// Tells the watches of every storage that `circuit` changed by
        /// hand. The change is made: a failure here only delays it to their
        /// next sync, and is not reported.
        fn publish(&self, circuit: &Circuit) {
            let _ = self.query::<i64>(&commands::publish(circuit));
        }
    }

    impl<T: Transport> fmt::Debug for Redis<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.transport.describe(f)
        }
    }

    impl<T: Transport> Storage for Redis<T> {
        fn add(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<bool, StorageError> {
            let reply: Option<String> = self.query(&commands::add(key, value, ttl))?;
            Ok(reply.is_some())
        }

        fn set(&self, key: &str, value: i64, ttl: Option<Duration>) -> Result<(), StorageError> {
            self.query(&commands::set(key, value, ttl))
        }

        fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
            self.query(&commands::incr(key, delta))
        }

        fn get(&self, key: &str) -> Result<Option<i64>, StorageError> {
            scripts::integer(key, self.query(&commands::get(key))?)
        }

        fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError> {
            self.query(&commands::expire(key, ttl))
        }

        fn delete(&self, key: &str) -> Result<(), StorageError> {
            self.query(&commands::delete(key))
        }

        fn fused_steps(&self) -> Option<&dyn FusedSteps> {
            Some(self)
        }

        // Clones share the transport: their breakers sync together.
        fn sync_group(&self) -> usize {
            Arc::as_ptr(&self.transport).cast::<()>() as usize
        }

        fn watch(&self, changed: Changed) -> Option<Watch> {
            crate::watch::start(self.transport.watch_on()?, changed)
        }

        /// `PING`, within the storage's step timeout.
        fn ping(&self) -> Result<(), StorageError> {
            self.query::<String>(&redis::cmd("PING")).map(drop)
        }
    }

    /// One script round trip per step (two for a failure that trips).
    impl<T: Transport> FusedSteps for Redis<T> {
        fn admit(
            &self,
            circuit: &Circuit,
        ) -> Result<(Admission, Option<Transition>), StorageError> {
            scripts::admitted(&self.run::<Vec<i64>>(circuit, &scripts::admit(circuit))?)
        }

        fn record(
            &self,
            circuit: &Circuit,
            permit: Permit,
            outcome: Outcome,
            rule: &dyn Rule,
        ) -> Result<Option<Transition>, StorageError> {
            match permit {
                Permit::Normal if scripts::records_nothing(circuit, outcome) => Ok(None),
                Permit::Normal => {
                    // One step, one deadline: the trip's round trip too.
                    let mut session = self.transport.session()?;
                    let reply: Vec<i64> =
                        session.invoke(circuit, &scripts::record(circuit, outcome))?;
                    let counted = scripts::counted(circuit, &reply)?;
                    let failures = u64::from(outcome == Outcome::Failure);
                    if !scripts::trips(circuit, &counted, failures, rule) {
                        return Ok(None);
                    }
                    Ok(scripts::tripped(
                        session.invoke(circuit, &scripts::open(circuit, true))?,
                    ))
                }
                Permit::Trial { episode } => scripts::trial_ended(
                    self.run(circuit, &scripts::trial(circuit, outcome, episode))?,
                ),
                other => Err(scripts::unknown_permit(other)),
            }
        }

        fn release(&self, circuit: &Circuit, permit: Permit) -> Result<(), StorageError> {
            match permit {
                Permit::Trial { episode } => self
                    .run::<i64>(circuit, &scripts::release(circuit, episode))
                    .map(drop),
                // A normal call's permit holds nothing to give back.
                _ => Ok(()),
            }
        }

        fn open_circuit(&self, circuit: &Circuit) -> Result<(), StorageError> {
            self.run::<i64>(circuit, &scripts::open(circuit, false))
                .map(drop)
        }

        fn state(&self, circuit: &Circuit) -> Result<State, StorageError> {
            scripts::state_of(self.run(circuit, &scripts::state(circuit))?)
        }

        fn register(
            &self,
            circuit: &Circuit,
            entry: &lasier_core::directory::Registration,
        ) -> Result<(), StorageError> {
            self.run::<i64>(circuit, &scripts::register(circuit, entry))
                .map(drop)
        }

        fn counts(&self, circuit: &Circuit) -> Result<Counts, StorageError> {
            scripts::counts_of(
                circuit,
                &self.run::<Vec<i64>>(circuit, &scripts::counts(circuit))?,
            )
        }

        fn reset(&self, circuit: &Circuit) -> Result<(), StorageError> {
            if circuit.window() == lasier_core::Window::Fixed {
                self.query::<()>(&commands::reset(circuit))?;
            } else {
                // (a sliding window's buckets: a few commands, rarely)
                lasier_core::kv::blocking::reset(self, circuit)?;
            }
            self.publish(circuit);
            Ok(())
        }

        // Rare, and a few commands in a row do them well enough.
        fn repair(&self, circuit: &Circuit) -> Result<(), StorageError> {
            lasier_core::kv::blocking::repair(self, circuit)
        }

        fn set_manual(
            &self,
            circuit: &Circuit,
            manual: Manual,
        ) -> Result<Option<Transition>, StorageError> {
            let changed = lasier_core::kv::blocking::set_manual(self, circuit, manual)?;
            self.publish(circuit);
            Ok(changed)
        }

        fn sync(
            &self,
            circuit: &Circuit,
            batch: &SyncBatch<'_>,
            rule: &dyn Rule,
        ) -> Option<Result<Snapshot, StorageError>> {
            Some((|| {
                // One step, one deadline: the trip's round trip too.
                let mut session = self.transport.session()?;
                let reply: Vec<i64> = session.invoke(circuit, &scripts::sync(circuit, batch))?;
                let counted = scripts::counted(circuit, &reply)?;
                let opened =
                    if scripts::trips(circuit, &counted, batch.counts_after(0).failures, rule) {
                        Some(session.invoke(circuit, &scripts::open(circuit, true))?)
                    } else {
                        None
                    };
                Ok(scripts::synced(circuit, counted, opened))
            })())
        }

        /// One round trip for all (where the transport can pipeline: one
        /// server; a cluster syncs them one by one), plus one per opening.
        fn sync_many(&self, items: &[SyncItem<'_>]) -> Option<Vec<Result<Snapshot, StorageError>>> {
            if items.len() < 2 {
                return None;
            }
            let mut session = match self.transport.session() {
                Ok(session) => session,
                Err(e) => return Some(scripts::each_failed(&e, items.len())),
            };
            let values = match session.pipeline(&scripts::sync_pipeline(items))? {
                Ok(values) if values.len() == items.len() => values,
                Ok(_) => {
                    let e = StorageError::new(
                        lasier_core::StorageErrorKind::Other,
                        "a pipeline of syncs got the wrong number of replies",
                    );
                    return Some(scripts::each_failed(&e, items.len()));
                }
                Err(e) => return Some(scripts::each_failed(&e, items.len())),
            };
            let answers = items.iter().zip(values).map(|(item, value)| {
                let reply: Vec<i64> = match scripts::piped(value) {
                    scripts::Piped::Reply(reply) => reply,
                    scripts::Piped::NoScript => {
                        session.invoke(item.circuit, &scripts::sync(item.circuit, &item.batch))?
                    }
                    scripts::Piped::Failed(e) => return Err(e),
                };
                let counted = scripts::counted(item.circuit, &reply)?;
                let failures = item.batch.counts_after(0).failures;
                let opened = if scripts::trips(item.circuit, &counted, failures, item.rule) {
                    Some(session.invoke(item.circuit, &scripts::open(item.circuit, true))?)
                } else {
                    None
                };
                Ok(scripts::synced(item.circuit, counted, opened))
            });
            Some(answers.collect())
        }

        fn validate(&self, circuit: &Circuit) -> Result<(), ConfigError> {
            self.transport.validate(circuit)
        }
    }
}

#[cfg(feature = "async")]
mod nonblocking {
    use std::future::Future;

    use lasier_core::{async_trait, AsyncFusedSteps, AsyncStorage, StorageErrorKind};
    use redis::{Cmd, FromRedisValue, ScriptInvocation};

    use super::*;
    use crate::transport::AsyncTransport;

    #[allow(private_bounds)]
    impl<T: AsyncTransport> AsyncRedis<T> {
        /// Every circuit in this storage's Redis: as
        /// [`Redis::circuits`](crate::Redis::circuits), on tokio's blocking
        /// threads.
        ///
        /// # Errors
        ///
        /// As [`Redis::circuits`](crate::Redis::circuits).
        pub async fn circuits(&self) -> Result<crate::listing::Found, StorageError> {
            let on = self.transport.watch_on().ok_or_else(unknown_nodes)?;
            tokio::task::spawn_blocking(move || {
                crate::listing::circuits_on(on.nodes(), on.connect_timeout())
                    .map_err(crate::error::from_redis)
            })
            .await
            .map_err(|e| StorageError::new(StorageErrorKind::Other, e.to_string()))?
        }
    }

    impl<T> AsyncRedis<T> {
        pub(crate) fn over(transport: T, timeout: Duration) -> Self {
            Self {
                transport: Arc::new(transport),
                timeout,
            }
        }

        pub(crate) fn transport(&self) -> &T {
            &self.transport
        }

        /// The step timeout.
        pub fn timeout(&self) -> Duration {
            self.timeout
        }
    }

    // (crate-private helpers over the crate's own transport trait)
    #[allow(private_bounds)]
    impl<T: AsyncTransport> AsyncRedis<T> {
        /// Runs one storage step, within the timeout.
        async fn step<R>(
            &self,
            step: impl Future<Output = Result<R, StorageError>>,
        ) -> Result<R, StorageError> {
            let result = match tokio::time::timeout(self.timeout, step).await {
                Ok(result) => result,
                Err(_elapsed) => Err(StorageError::new(
                    StorageErrorKind::TimedOut,
                    format!(
                        "no answer from {} within {:?}",
                        self.transport.place(),
                        self.timeout
                    ),
                )),
            };
            self.transport.observe(&result);
            result
        }

        async fn query<R: FromRedisValue + Send>(&self, cmd: &Cmd) -> Result<R, StorageError> {
            self.step(self.transport.query(cmd)).await
        }

        async fn run<R: FromRedisValue + Send>(
            &self,
            circuit: &Circuit,
            invocation: &ScriptInvocation<'_>,
        ) -> Result<R, StorageError> {
            self.step(self.transport.invoke(circuit, invocation)).await
        }

        /// As the blocking storage's `publish`.
        async fn publish(&self, circuit: &Circuit) {
            let _ = self.query::<i64>(&commands::publish(circuit)).await;
        }
    }

    impl<T: AsyncTransport> fmt::Debug for AsyncRedis<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.transport.describe(self.timeout, f)
        }
    }

    #[async_trait]
    impl<T: AsyncTransport> AsyncStorage for AsyncRedis<T> {
        async fn add(
            &self,
            key: &str,
            value: i64,
            ttl: Option<Duration>,
        ) -> Result<bool, StorageError> {
            let reply: Option<String> = self.query(&commands::add(key, value, ttl)).await?;
            Ok(reply.is_some())
        }

        async fn set(
            &self,
            key: &str,
            value: i64,
            ttl: Option<Duration>,
        ) -> Result<(), StorageError> {
            self.query(&commands::set(key, value, ttl)).await
        }

        async fn incr(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
            self.query(&commands::incr(key, delta)).await
        }

        async fn get(&self, key: &str) -> Result<Option<i64>, StorageError> {
            scripts::integer(key, self.query(&commands::get(key)).await?)
        }

        async fn expire(&self, key: &str, ttl: Duration) -> Result<(), StorageError> {
            self.query(&commands::expire(key, ttl)).await
        }

        async fn delete(&self, key: &str) -> Result<(), StorageError> {
            self.query(&commands::delete(key)).await
        }

        fn fused_steps(&self) -> Option<&dyn AsyncFusedSteps> {
            Some(self)
        }

        // Clones share the transport: their breakers sync together.
        fn sync_group(&self) -> usize {
            Arc::as_ptr(&self.transport).cast::<()>() as usize
        }

        fn watch(&self, changed: Changed) -> Option<Watch> {
            crate::watch::start(self.transport.watch_on()?, changed)
        }

        /// `PING`, within the storage's step timeout.
        async fn ping(&self) -> Result<(), StorageError> {
            self.query::<String>(&redis::cmd("PING")).await.map(drop)
        }
    }

    /// One script round trip per step (two for a failure that trips).
    #[async_trait]
    impl<T: AsyncTransport> AsyncFusedSteps for AsyncRedis<T> {
        async fn admit(
            &self,
            circuit: &Circuit,
        ) -> Result<(Admission, Option<Transition>), StorageError> {
            scripts::admitted(
                &self
                    .run::<Vec<i64>>(circuit, &scripts::admit(circuit))
                    .await?,
            )
        }

        async fn record(
            &self,
            circuit: &Circuit,
            permit: Permit,
            outcome: Outcome,
            rule: &dyn Rule,
        ) -> Result<Option<Transition>, StorageError> {
            match permit {
                Permit::Normal if scripts::records_nothing(circuit, outcome) => Ok(None),
                Permit::Normal => {
                    // One step, one deadline: the trip's round trip too.
                    self.step(async {
                        let reply: Vec<i64> = self
                            .transport
                            .invoke(circuit, &scripts::record(circuit, outcome))
                            .await?;
                        let counted = scripts::counted(circuit, &reply)?;
                        let failures = u64::from(outcome == Outcome::Failure);
                        if !scripts::trips(circuit, &counted, failures, rule) {
                            return Ok(None);
                        }
                        Ok(scripts::tripped(
                            self.transport
                                .invoke(circuit, &scripts::open(circuit, true))
                                .await?,
                        ))
                    })
                    .await
                }
                Permit::Trial { episode } => scripts::trial_ended(
                    self.run(circuit, &scripts::trial(circuit, outcome, episode))
                        .await?,
                ),
                other => Err(scripts::unknown_permit(other)),
            }
        }

        async fn release(&self, circuit: &Circuit, permit: Permit) -> Result<(), StorageError> {
            match permit {
                Permit::Trial { episode } => self
                    .run::<i64>(circuit, &scripts::release(circuit, episode))
                    .await
                    .map(drop),
                // A normal call's permit holds nothing to give back.
                _ => Ok(()),
            }
        }

        async fn open_circuit(&self, circuit: &Circuit) -> Result<(), StorageError> {
            self.run::<i64>(circuit, &scripts::open(circuit, false))
                .await
                .map(drop)
        }

        async fn state(&self, circuit: &Circuit) -> Result<State, StorageError> {
            scripts::state_of(self.run(circuit, &scripts::state(circuit)).await?)
        }

        async fn register(
            &self,
            circuit: &Circuit,
            entry: &lasier_core::directory::Registration,
        ) -> Result<(), StorageError> {
            self.run::<i64>(circuit, &scripts::register(circuit, entry))
                .await
                .map(drop)
        }

        async fn counts(&self, circuit: &Circuit) -> Result<Counts, StorageError> {
            scripts::counts_of(
                circuit,
                &self
                    .run::<Vec<i64>>(circuit, &scripts::counts(circuit))
                    .await?,
            )
        }

        async fn reset(&self, circuit: &Circuit) -> Result<(), StorageError> {
            if circuit.window() == lasier_core::Window::Fixed {
                self.query::<()>(&commands::reset(circuit)).await?;
            } else {
                // (a sliding window's buckets: a few commands, rarely)
                lasier_core::kv::nonblocking::reset(self, circuit).await?;
            }
            self.publish(circuit).await;
            Ok(())
        }

        // Rare, and a few commands in a row do them well enough.
        async fn repair(&self, circuit: &Circuit) -> Result<(), StorageError> {
            lasier_core::kv::nonblocking::repair(self, circuit).await
        }

        async fn set_manual(
            &self,
            circuit: &Circuit,
            manual: Manual,
        ) -> Result<Option<Transition>, StorageError> {
            let changed = lasier_core::kv::nonblocking::set_manual(self, circuit, manual).await?;
            self.publish(circuit).await;
            Ok(changed)
        }

        async fn sync(
            &self,
            circuit: &Circuit,
            batch: &SyncBatch<'_>,
            rule: &dyn Rule,
        ) -> Option<Result<Snapshot, StorageError>> {
            // One step, one deadline: the trip's round trip too.
            Some(
                self.step(async {
                    let reply: Vec<i64> = self
                        .transport
                        .invoke(circuit, &scripts::sync(circuit, batch))
                        .await?;
                    let counted = scripts::counted(circuit, &reply)?;
                    let opened = if scripts::trips(
                        circuit,
                        &counted,
                        batch.counts_after(0).failures,
                        rule,
                    ) {
                        Some(
                            self.transport
                                .invoke(circuit, &scripts::open(circuit, true))
                                .await?,
                        )
                    } else {
                        None
                    };
                    Ok(scripts::synced(circuit, counted, opened))
                })
                .await,
            )
        }

        /// One round trip for all (where the transport can pipeline: one
        /// server; a cluster syncs them one by one), plus one per opening;
        /// all within one step's timeout.
        async fn sync_many(
            &self,
            items: &[SyncItem<'_>],
        ) -> Option<Vec<Result<Snapshot, StorageError>>> {
            if items.len() < 2 {
                return None;
            }
            let pipeline = scripts::sync_pipeline(items);
            let values = match self
                .step(async { Ok(self.transport.pipeline(&pipeline).await) })
                .await
            {
                Ok(None) => return None,
                Ok(Some(Ok(values))) if values.len() == items.len() => values,
                Ok(Some(Ok(_))) => {
                    let e = StorageError::new(
                        StorageErrorKind::Other,
                        "a pipeline of syncs got the wrong number of replies",
                    );
                    return Some(scripts::each_failed(&e, items.len()));
                }
                Ok(Some(Err(e))) | Err(e) => return Some(scripts::each_failed(&e, items.len())),
            };
            let mut answers = Vec::with_capacity(items.len());
            for (item, value) in items.iter().zip(values) {
                let answer = self
                    .step(async {
                        let reply: Vec<i64> = match scripts::piped(value) {
                            scripts::Piped::Reply(reply) => reply,
                            scripts::Piped::NoScript => {
                                self.transport
                                    .invoke(item.circuit, &scripts::sync(item.circuit, &item.batch))
                                    .await?
                            }
                            scripts::Piped::Failed(e) => return Err(e),
                        };
                        let counted = scripts::counted(item.circuit, &reply)?;
                        let failures = item.batch.counts_after(0).failures;
                        let opened = if scripts::trips(item.circuit, &counted, failures, item.rule)
                        {
                            Some(
                                self.transport
                                    .invoke(item.circuit, &scripts::open(item.circuit, true))
                                    .await?,
                            )
                        } else {
                            None
                        };
                        Ok(scripts::synced(item.circuit, counted, opened))
                    })
                    .await;
                answers.push(answer);
            }
            Some(answers)
        }

        fn validate(&self, circuit: &Circuit) -> Result<(), ConfigError> {
            self.transport.validate(circuit)
        }
    }
}
