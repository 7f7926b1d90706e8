//! The ready+call harness shared by the benches (CONTRIBUTING.md, rule 10).
//!
//! Every layer is timed the same way: the service is built once, outside the timed loop;
//! each iteration awaits `ready()` then `call()` on a current-thread runtime; the inner
//! service is [`Noop`](tower_bulwark::testing::Noop), so what is measured is the
//! layer's own cost. Results are read as ratios to the peers measured in the same run.
#![forbid(unsafe_code)]

use std::future::{ready, Ready};
use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::BenchmarkGroup;
use tower::retry::budget::{Budget, TpsBudget};
use tower::{Service, ServiceExt};

/// Times `ready().await` + `call(request).await` on `service` in the benchmark `name`.
///
/// The whole batch of iterations runs in one `block_on`, so the runtime's entry cost is not
/// part of the per-call time.
pub fn bench_ready_call<S, Req>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    mut service: S,
    request: impl Fn() -> Req,
) where
    S: Service<Req>,
    S::Error: std::fmt::Debug,
{
    let runtime = current_thread_runtime();
    group.bench_function(name, |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(round_trips(&mut service, &request, iterations))
        })
    });
}

/// `iterations` ready+call round trips; returns how long they took.
async fn round_trips<S, Req>(
    service: &mut S,
    request: impl Fn() -> Req,
    iterations: u64,
) -> Duration
where
    S: Service<Req>,
    S::Error: std::fmt::Debug,
{
    let start = tokio::time::Instant::now();
    for _ in 0..iterations {
        let ready = service.ready().await.expect("ready");
        let response = ready.call(std::hint::black_box(request())).await;
        std::hint::black_box(response.expect("call"));
    }
    start.elapsed()
}

/// Times ready+call with `threads` threads sharing one service (each thread drives its own
/// clone on its own current-thread runtime, as a multi-threaded runtime's workers would).
/// The reported time is wall time per call across all threads: `threads` threads scaling
/// perfectly on as many cores show the single-thread time divided by `threads`.
pub fn bench_threads<S, Req>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    threads: u64,
    service: S,
    request: fn() -> Req,
) where
    Req: 'static,
    S: Service<Req> + Clone + Send + 'static,
    S::Error: std::fmt::Debug,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iterations| {
            let per_thread = iterations.div_ceil(threads);
            let barrier = Arc::new(std::sync::Barrier::new(threads as usize));
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let mut service = service.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        let runtime = current_thread_runtime();
                        barrier.wait();
                        runtime.block_on(round_trips(&mut service, request, per_thread))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|thread| thread.join().expect("bench thread"))
                .max()
                .unwrap_or_default()
        })
    });
}

/// The runtime the harness runs on: current-thread, with timers (for timeout layers).
pub fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

/// A `tower::retry` policy that retries errors while a [`TpsBudget`] allows, the way
/// tower's documentation pairs them: the peer of our retry layer.
#[derive(Clone, Debug)]
pub struct BudgetedRetry {
    budget: Arc<TpsBudget>,
}

impl BudgetedRetry {
    /// tower's usual budget: 10 s window, 10 retries per second minimum, 20% ratio.
    pub fn new() -> Self {
        BudgetedRetry {
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
        }
    }
}

impl Default for BudgetedRetry {
    fn default() -> Self {
        BudgetedRetry::new()
    }
}

impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for BudgetedRetry {
    type Future = Ready<()>;

    fn retry(&mut self, _request: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(_) => self.budget.withdraw().then(|| ready(())),
        }
    }

    fn clone_request(&mut self, request: &Req) -> Option<Req> {
        Some(request.clone())
    }
}
