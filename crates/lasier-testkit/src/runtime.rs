//! Just enough of an async runtime for the kit, on any executor: a
//! `block_on` for the sync entry points, a sleep that needs no timer
//! driver, and a join of several futures.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Duration;

/// A boxed future, as [`join_all`] takes them.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on this thread.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        thread::park();
    }
}

#[derive(Default)]
struct SleepState {
    done: bool,
    waker: Option<Waker>,
}

/// Completes after `duration` (or later, never earlier). A thread does the
/// waiting, so it works on any executor, timer driver or not.
pub(crate) async fn sleep(duration: Duration) {
    let state = Arc::new(Mutex::new(SleepState::default()));
    let shared = Arc::clone(&state);
    let timer = thread::Builder::new()
        .name("lasier-testkit-sleep".into())
        .spawn(move || {
            thread::sleep(duration);
            let mut state = shared.lock().unwrap_or_else(PoisonError::into_inner);
            state.done = true;
            if let Some(waker) = state.waker.take() {
                waker.wake();
            }
        });
    if timer.is_err() {
        // No thread to spare: wait here instead.
        thread::sleep(duration);
        return;
    }
    poll_fn(|cx| {
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.done {
            Poll::Ready(())
        } else {
            state.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    })
    .await;
}

/// Runs `futures` concurrently on the current task; their outputs in order.
pub(crate) async fn join_all<T>(futures: Vec<BoxFuture<'_, T>>) -> Vec<T> {
    let mut pending: Vec<Option<BoxFuture<'_, T>>> = futures.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<T>> = pending.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut all_done = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Runs `work(i)` for `workers` callers as concurrent tasks: spawned on the
/// caller's tokio runtime when there is one (in parallel on a multi-thread
/// runtime), else interleaved on the current task.
#[cfg(feature = "async")]
pub(crate) async fn in_tasks<T, F, Fut>(
    workers: usize,
    work: F,
) -> Result<Vec<T>, lasier_core::StorageError>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, lasier_core::StorageError>> + Send + 'static,
    T: Send + 'static,
{
    use lasier_core::{StorageError, StorageErrorKind};

    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        let tasks: Vec<_> = (0..workers).map(|i| handle.spawn(work(i))).collect();
        let mut outputs = Vec::with_capacity(workers);
        for task in tasks {
            match task.await {
                Ok(output) => outputs.push(output?),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => {
                    return Err(StorageError::new(
                        StorageErrorKind::Other,
                        format!("a task of the kit was cancelled: {e}"),
                    ))
                }
            }
        }
        Ok(outputs)
    } else {
        let futures: Vec<BoxFuture<'_, _>> = (0..workers).map(|i| Box::pin(work(i)) as _).collect();
        join_all(futures).await.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn sleep_waits_at_least_its_duration_without_a_runtime() {
        let start = Instant::now();
        block_on(sleep(Duration::from_millis(20)));
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn join_all_waits_for_every_future_and_keeps_their_order() {
        let futures: Vec<BoxFuture<'_, u32>> = (0..4_u32)
            .map(|i| {
                Box::pin(async move {
                    // The first ones finish last.
                    sleep(Duration::from_millis(u64::from(4 - i) * 5)).await;
                    i
                }) as _
            })
            .collect();
        assert_eq!(block_on(join_all(futures)), vec![0, 1, 2, 3]);
    }
}
