//! [`Suite`]: the options of a run, and the runner.

use std::future::{ready, Future};
use std::sync::Arc;
use std::time::Duration;

use lasier_core::clock::ManualClock;
use lasier_core::Storage;

use crate::checks::{self, Check, Load, Timing};
use crate::probe::{Broken, Names, Probe, Timeline, CLOCK_ALLOWANCE};
use crate::report::{Failure, Report};
use crate::runtime::{block_on, join_all, BoxFuture};
use crate::store::{Subject, SyncStore};

/// A tick on a manual clock: time moves by hand, so any length will do.
const MANUAL_TICK: Duration = Duration::from_secs(1);

/// How many times a timed check is tried in real time, the tick doubling
/// each time, before the kit gives up on the machine keeping time.
const ATTEMPTS: u32 = 4;

/// The suite's options, and its non-panicking entry points, which return a
/// [`Report`].
///
/// The `check_*` functions run `Suite::new()` and panic on failure; use a
/// `Suite` to tune the run or to inspect the report.
///
/// ```
/// use std::time::Duration;
/// use lasier_core::MemoryStorage;
/// use lasier_testkit::Suite;
///
/// let report = Suite::new()
///     .concurrency(4, 100)
///     .tick(Duration::from_millis(50))
///     .run_with_clock(MemoryStorage::with_clock);
/// assert!(report.is_ok(), "{report}");
/// ```
#[derive(Debug, Clone)]
pub struct Suite {
    load: Load,
    tick: Duration,
}

impl Default for Suite {
    fn default() -> Self {
        Self::new()
    }
}

impl Suite {
    /// The defaults: 8 concurrent callers of 250 increments each, and a
    /// real-time tick of 60 ms.
    pub fn new() -> Self {
        Self {
            load: Load {
                workers: 8,
                increments: 250,
            },
            tick: Duration::from_millis(60),
        }
    }

    /// The concurrency checks run `workers` callers at once (threads for a
    /// sync storage, tasks for an async one), each making
    /// `increments_per_worker` increments. Both are at least 2 and 1.
    #[must_use]
    pub fn concurrency(mut self, workers: usize, increments_per_worker: usize) -> Self {
        self.load = Load {
            workers: workers.max(2),
            increments: increments_per_worker.max(1),
        };
        self
    }

    /// The unit of time of the timed checks on a storage without a manual
    /// clock (default 60 ms, at least 40 ms). TTLs are two ticks, and every
    /// observation is at least half a tick from a deadline. The storage's
    /// clock may be off by up to 15 ms (a coarse clock, whole milliseconds);
    /// a run that falls further behind its schedule than the rest of half a
    /// tick (a slow store, a busy machine) proves nothing, and is repeated
    /// with the tick doubled, up to 3 times. Raise it for a store whose
    /// calls take several milliseconds.
    #[must_use]
    pub fn tick(mut self, tick: Duration) -> Self {
        self.tick = tick.max(Duration::from_millis(40));
        self
    }

    /// Checks a [`Storage`] without a clock of its own: `make` returns a
    /// new storage (it is called once per check); TTLs are checked with
    /// short real waits.
    pub fn run<S: Storage + 'static>(&self, mut make: impl FnMut() -> S) -> Report {
        block_on(self.run_subjects(false, move || {
            ready(Subject {
                store: Arc::new(SyncStore(make())),
                clock: None,
            })
        }))
    }

    /// Checks a [`Storage`] that keeps time by a clock it is given: `make`
    /// returns a new storage on the [`ManualClock`] it is passed, and the
    /// timed checks move that clock instead of waiting.
    pub fn run_with_clock<S: Storage + 'static>(
        &self,
        mut make: impl FnMut(ManualClock) -> S,
    ) -> Report {
        block_on(self.run_subjects(true, move || {
            let clock = ManualClock::new();
            ready(Subject {
                store: Arc::new(SyncStore(make(clock.clone()))),
                clock: Some(clock),
            })
        }))
    }

    /// Checks an [`AsyncStorage`](lasier_core::AsyncStorage) without a
    /// clock of its own; `make` returns a future of a new storage.
    ///
    /// Concurrent callers are tasks spawned on the current tokio runtime if
    /// there is one (in parallel on a multi-thread runtime), else futures
    /// interleaved on the current task. Waits need no timer driver.
    #[cfg(feature = "async")]
    #[cfg_attr(docsrs, doc(cfg(feature = "async")))]
    pub async fn run_async<S, F, Fut>(&self, mut make: F) -> Report
    where
        S: lasier_core::AsyncStorage + 'static,
        F: FnMut() -> Fut,
        Fut: Future<Output = S>,
    {
        self.run_subjects(false, move || {
            let storage = make();
            async move {
                Subject {
                    store: Arc::new(crate::store::AsyncStore(Arc::new(storage.await))),
                    clock: None,
                }
            }
        })
        .await
    }

    /// Checks an [`AsyncStorage`](lasier_core::AsyncStorage) that keeps
    /// time by a clock it is given: `make` returns a future of a new
    /// storage on the [`ManualClock`] it is passed.
    #[cfg(feature = "async")]
    #[cfg_attr(docsrs, doc(cfg(feature = "async")))]
    pub async fn run_async_with_clock<S, F, Fut>(&self, mut make: F) -> Report
    where
        S: lasier_core::AsyncStorage + 'static,
        F: FnMut(ManualClock) -> Fut,
        Fut: Future<Output = S>,
    {
        self.run_subjects(true, move || {
            let clock = ManualClock::new();
            let storage = make(clock.clone());
            async move {
                Subject {
                    store: Arc::new(crate::store::AsyncStore(Arc::new(storage.await))),
                    clock: Some(clock),
                }
            }
        })
        .await
    }

    /// Runs every check, each on a storage of its own: the untimed ones one
    /// after the other, then the timed ones all at once, so that their
    /// waits overlap.
    async fn run_subjects<M, Fut>(&self, manual: bool, mut make: M) -> Report
    where
        M: FnMut() -> Fut,
        Fut: Future<Output = Subject>,
    {
        let checks: Vec<Check> = checks::all()
            .into_iter()
            .filter(|c| manual || c.timing != Timing::ManualClockOnly)
            .collect();
        let mut results: Vec<Option<Result<(), Broken>>> = checks.iter().map(|_| None).collect();
        for (check, result) in checks.iter().zip(results.iter_mut()) {
            if check.timing == Timing::Untimed {
                let subject = make().await;
                *result = Some(self.run_once(check, &subject, self.tick).await);
            }
        }
        let mut timed = Vec::new();
        for (i, check) in checks.iter().enumerate() {
            if check.timing != Timing::Untimed {
                timed.push((i, check, make().await));
            }
        }
        let runs: Vec<BoxFuture<'_, _>> = timed
            .iter()
            .map(|(i, check, subject)| {
                Box::pin(async move { (*i, self.run_timed(check, subject).await) }) as _
            })
            .collect();
        for (i, result) in join_all(runs).await {
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(result);
            }
        }
        let mut report = Report::default();
        for (check, result) in checks.iter().zip(results) {
            match result {
                Some(Ok(())) => report.passed.push(check.name),
                Some(Err(Broken(seen))) => report.failures.push(Failure {
                    check: check.name,
                    rule: check.rule,
                    seen,
                    fix: check.fix,
                }),
                None => {}
            }
        }
        report
    }

    async fn run_once(
        &self,
        check: &Check,
        subject: &Subject,
        tick: Duration,
    ) -> Result<(), Broken> {
        let names = Names::new(check.name);
        let mut timeline = Timeline::new(subject.clock.clone(), tick);
        let probe = Probe(&*subject.store);
        let result = check.run(&probe, &names, &mut timeline, self.load).await;
        names.clean_up(&*subject.store).await;
        result
    }

    async fn run_timed(&self, check: &Check, subject: &Subject) -> Result<(), Broken> {
        if subject.clock.is_some() {
            return self.run_once(check, subject, MANUAL_TICK).await;
        }
        let mut tick = self.tick;
        let mut lag = Duration::ZERO;
        for _ in 0..ATTEMPTS {
            let names = Names::new(check.name);
            let mut timeline = Timeline::new(None, tick);
            let probe = Probe(&*subject.store);
            let result = check.run(&probe, &names, &mut timeline, self.load).await;
            let late = timeline.lag();
            names.clean_up(&*subject.store).await;
            match late {
                None => return result,
                Some(late) => lag = late,
            }
            tick *= 2;
        }
        Err(Broken(format!(
            "inconclusive: real time ran {lag:?} behind the check's schedule with a tick of \
             {:?} (too far, with {CLOCK_ALLOWANCE:?} allowed for the storage's clock, from half \
             a tick), so what the storage answered proves nothing either way. Each call must take \
             well under half a tick; give the kit a longer one with `Suite::new().tick(..)`, or \
             the storage a clock.",
            tick / 2
        )))
    }
}

#[cfg(all(test, feature = "async"))]
mod tests {
    use lasier_core::MemoryStorage;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn the_async_checks_can_be_spawned() {
        let check = crate::check_async_storage(|| async { MemoryStorage::new() });
        assert_send(&check);
        let suite = super::Suite::new();
        let run =
            suite.run_async_with_clock(|clock| async move { MemoryStorage::with_clock(clock) });
        assert_send(&run);
    }
}
