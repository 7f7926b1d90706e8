//! A bulkhead for blocking work: a dedicated, bounded pool of threads with its own bounded
//! queue, so a slow blocking dependency cannot starve tokio's shared blocking pool.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use tokio::sync::oneshot;
use tower_bulwark_core::config::{at_most, non_zero};
use tower_bulwark_core::{BoxError, ConfigError, Listeners, Name};
use tower_service::Service;

use crate::compartment::Compartment;
use crate::FullReason;

type Job = Box<dyn FnOnce() + Send>;

/// A dedicated pool of `threads` threads that runs blocking closures, with at most
/// `max_queue` closures waiting. A closure that finds the queue full is refused with
/// [`BulkheadFull`](crate::BulkheadFull) at once; a closure whose future is dropped before it
/// starts is skipped. The threads stop when the last clone of the pool is dropped, after
/// finishing the closures already queued.
///
/// ```
/// use tower_bulwark_bulkhead::BlockingBulkhead;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pool = BlockingBulkhead::new("legacy-db", 4, 16).unwrap();
/// let answer = pool.run(|| 6 * 7).await.unwrap();
/// assert_eq!(answer, 42);
/// # }
/// ```
#[derive(Clone)]
pub struct BlockingBulkhead {
    owner: Arc<Owner>,
}

/// Stops the threads when the last user handle goes.
struct Owner {
    shared: Arc<Shared>,
}

struct Shared {
    jobs: Mutex<Queue>,
    ready: Condvar,
    max_queue: usize,
    busy: AtomicUsize,
    /// For the rejection's name and counters, shared with the async bulkhead's handle.
    compartment: Compartment,
}

struct Queue {
    jobs: VecDeque<Job>,
    stopping: bool,
}

impl BlockingBulkhead {
    /// The most threads a pool may have.
    pub const MAX_THREADS: usize = 1024;

    /// Starts `threads` threads (1 to [`MAX_THREADS`](Self::MAX_THREADS)) named after
    /// `name`, with room for `max_queue` waiting closures (`usize::MAX`: no bound). If a
    /// thread cannot be started, those already started are stopped and joined.
    pub fn new(
        name: impl Into<Name>,
        threads: usize,
        max_queue: usize,
    ) -> Result<Self, ConfigError> {
        non_zero("threads", threads)?;
        at_most("threads", threads, "MAX_THREADS", Self::MAX_THREADS)?;
        let name = name.into();
        if name.contains('\0') {
            return Err(ConfigError::new(
                "name",
                "a thread name cannot contain a NUL byte",
            ));
        }
        let shared = Shared::new(name.clone(), threads, max_queue);
        start(&shared, threads, |i, shared| {
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || shared.work())
        })?;
        Ok(BlockingBulkhead {
            owner: Arc::new(Owner { shared }),
        })
    }

    /// Runs `work` on the pool; the future resolves with its result.
    pub fn run<F, T>(&self, work: F) -> BlockingFuture<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let shared = &self.owner.shared;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            // Nobody waits for the answer any more: skip the work.
            if !tx.is_closed() {
                let _ = tx.send(work());
            }
        });
        let mut queue = shared.jobs.lock().unwrap_or_else(|e| e.into_inner());
        // Queued jobs beyond the idle threads are the ones that wait.
        let idle = shared
            .compartment
            .max_concurrent()
            .saturating_sub(shared.busy.load(SeqCst));
        if queue.jobs.len() >= idle.saturating_add(shared.max_queue) {
            drop(queue);
            let error = shared.compartment.refuse(FullReason::QueueFull);
            return BlockingFuture(Outcome::Refused(Some(error)));
        }
        queue.jobs.push_back(job);
        drop(queue);
        shared.ready.notify_one();
        BlockingFuture(Outcome::Waiting(rx))
    }

    /// Closures running now.
    pub fn busy(&self) -> usize {
        self.owner.shared.busy.load(SeqCst)
    }

    /// Closures waiting for a thread.
    pub fn queued(&self) -> usize {
        let queue = self
            .owner
            .shared
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        queue.jobs.len()
    }

    /// Closures refused because the queue was full.
    pub fn rejected(&self) -> u64 {
        self.owner
            .shared
            .compartment
            .stats
            .rejected_queue_full
            .load(Relaxed)
    }
}

/// Starts `threads` workers with `spawn`. If one cannot start, the ones that did are
/// stopped and joined, so a failed pool leaves no thread behind.
fn start(
    shared: &Arc<Shared>,
    threads: usize,
    mut spawn: impl FnMut(usize, Arc<Shared>) -> std::io::Result<JoinHandle<()>>,
) -> Result<(), ConfigError> {
    let mut started = Vec::with_capacity(threads);
    for i in 0..threads {
        match spawn(i, shared.clone()) {
            Ok(thread) => started.push(thread),
            Err(e) => {
                shared.stop();
                for thread in started {
                    let _ = thread.join();
                }
                return Err(ConfigError::new(
                    "threads",
                    format!("cannot start thread {i} of {threads}: {e}"),
                ));
            }
        }
    }
    Ok(())
}

impl Shared {
    fn new(name: Name, threads: usize, max_queue: usize) -> Arc<Self> {
        Arc::new(Shared {
            jobs: Mutex::new(Queue {
                jobs: VecDeque::new(),
                stopping: false,
            }),
            ready: Condvar::new(),
            max_queue,
            busy: AtomicUsize::new(0),
            compartment: Compartment::new(name, threads, max_queue, Listeners::new()),
        })
    }

    fn work(&self) {
        while let Some(job) = self.next_job() {
            // A panicking closure must not take the thread down: its caller sees the
            // dropped channel as an error.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            self.busy.fetch_sub(1, SeqCst);
        }
    }

    /// The next closure to run, waiting for one; `None` once stopping with none queued.
    /// It is counted busy before the queue unlocks: `run` always sees it queued or busy,
    /// else it would let one more closure wait than `max_queue` allows.
    fn next_job(&self) -> Option<Job> {
        let mut queue = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(job) = queue.jobs.pop_front() {
                self.busy.fetch_add(1, SeqCst);
                return Some(job);
            }
            if queue.stopping {
                return None;
            }
            queue = self.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Lets the threads finish the queued closures and exit.
    fn stop(&self) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).stopping = true;
        self.ready.notify_all();
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.stop();
    }
}

impl fmt::Debug for BlockingBulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingBulkhead")
            .field("name", &self.owner.shared.compartment.name)
            .field("busy", &self.busy())
            .finish_non_exhaustive()
    }
}

/// The result of a closure run by [`BlockingBulkhead::run`]. Dropping it before the
/// closure starts skips the closure.
#[derive(Debug)]
pub struct BlockingFuture<T>(Outcome<T>);

#[derive(Debug)]
enum Outcome<T> {
    Waiting(oneshot::Receiver<T>),
    Refused(Option<BoxError>),
}

impl<T> Future for BlockingFuture<T> {
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            Outcome::Waiting(rx) => Pin::new(rx)
                .poll(cx)
                .map_err(|_| "the blocking closure panicked".into()),
            Outcome::Refused(error) => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(tower_bulwark_core::polled_after_completion))),
        }
    }
}

/// A tower service that runs a blocking function on a [`BlockingBulkhead`].
///
/// ```
/// use tower::ServiceExt;
/// use tower_bulwark_bulkhead::{BlockingBulkhead, BlockingService};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pool = BlockingBulkhead::new("checksum", 2, 8).unwrap();
/// let service = BlockingService::new(pool, |data: Vec<u8>| -> Result<u32, std::io::Error> {
///     Ok(data.iter().map(|b| u32::from(*b)).sum())
/// });
/// assert_eq!(service.oneshot(vec![1, 2, 3]).await.unwrap(), 6);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BlockingService<F> {
    pool: BlockingBulkhead,
    function: Arc<F>,
}

impl<F> BlockingService<F> {
    /// Runs `function` for each request on `pool`.
    pub fn new(pool: BlockingBulkhead, function: F) -> Self {
        BlockingService {
            pool,
            function: Arc::new(function),
        }
    }
}

impl<F, Req, T, E> Service<Req> for BlockingService<F>
where
    F: Fn(Req) -> Result<T, E> + Send + Sync + 'static,
    Req: Send + 'static,
    T: Send + 'static,
    E: Into<BoxError> + Send + 'static,
{
    type Response = T;
    type Error = BoxError;
    type Future = FlattenBlocking<T, E>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let function = self.function.clone();
        FlattenBlocking(self.pool.run(move || function(request)))
    }
}

/// Response future of [`BlockingService`].
#[derive(Debug)]
pub struct FlattenBlocking<T, E>(BlockingFuture<Result<T, E>>);

impl<T, E: Into<BoxError>> Future for FlattenBlocking<T, E> {
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().0)
            .poll(cx)
            .map(|result| result.and_then(|inner| inner.map_err(Into::into)))
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    #[test]
    fn threads_started_before_a_failed_start_are_stopped_and_joined() {
        let shared = Shared::new(Name::from("failing"), 8, 0);
        let error = start(&shared, 8, |i, shared| {
            if i == 3 {
                return Err(std::io::Error::other("no more threads"));
            }
            std::thread::Builder::new().spawn(move || shared.work())
        })
        .unwrap_err();
        assert_eq!(error.field(), "threads");
        // Every worker held a clone of `shared`: they have all exited.
        assert_eq!(Arc::strong_count(&shared), 1);
    }

    /// A closure taken by a thread is busy from the moment it leaves the queue, so the
    /// queue bound holds: with one thread and no queue, a closure submitted while the
    /// thread is starting the first one is refused, not queued.
    #[test]
    fn a_closure_leaving_the_queue_is_counted_busy_at_once() {
        // No threads: the test plays the worker.
        let shared = Shared::new(Name::from("exact"), 1, 0);
        let pool = BlockingBulkhead {
            owner: Arc::new(Owner {
                shared: shared.clone(),
            }),
        };
        let first = pool.run(|| 1);
        assert_eq!(pool.queued(), 1, "waiting for the idle thread");
        let job = shared.next_job().expect("the queued closure");
        // The thread has the first closure and has not started it yet.
        let second = pool.run(|| 2);
        assert_eq!(
            (pool.busy(), pool.queued(), pool.rejected()),
            (1, 0, 1),
            "a closure waits with no room in the queue"
        );
        drop((job, first, second));
    }
}
