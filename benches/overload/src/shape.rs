//! The backends: a fixed-capacity handler (workers x service time), IO-bound or CPU-bound.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use http::StatusCode;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// What a call spends its service time on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Waiting (a database, another service): a worker permit held over a sleep.
    Io,
    /// Computing: a busy loop on a blocking thread.
    Cpu,
}

/// A backend of `workers` workers, each call taking `service` on one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// IO-bound or CPU-bound.
    pub work: Work,
    /// The time one call takes on a worker.
    pub service: Duration,
    /// Calls served at once.
    pub workers: usize,
}

impl Shape {
    /// Every shape of the issue: IO-bound 1, 10, 100 ms x 4, 64 workers, and CPU-bound 1 ms
    /// with a worker per core.
    pub fn all() -> Vec<Shape> {
        let mut shapes = Vec::new();
        for millis in [1, 10, 100] {
            for workers in [4, 64] {
                shapes.push(Shape::io(millis, workers));
            }
        }
        shapes.push(Shape::cpu(1));
        shapes
    }

    /// An IO-bound shape.
    pub fn io(millis: u64, workers: usize) -> Shape {
        Shape {
            work: Work::Io,
            service: Duration::from_millis(millis),
            workers,
        }
    }

    /// A CPU-bound shape with one worker per core.
    pub fn cpu(millis: u64) -> Shape {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Shape {
            work: Work::Cpu,
            service: Duration::from_millis(millis),
            workers: cores,
        }
    }

    /// The name the `--shape` filter matches: `10ms/4`, `cpu-1ms/2`.
    pub fn name(&self) -> String {
        let prefix = match self.work {
            Work::Io => "",
            Work::Cpu => "cpu-",
        };
        format!("{prefix}{}ms/{}", self.service.as_millis(), self.workers)
    }

    /// Nominal capacity in calls per second: workers / service time.
    pub fn capacity(&self) -> f64 {
        self.capacity_at(self.service)
    }

    /// Capacity in calls per second if each call holds its worker for `service`.
    pub fn capacity_at(&self, service: Duration) -> f64 {
        self.workers as f64 / service.as_secs_f64()
    }

    /// A heading for the shape's table.
    pub fn describe(&self) -> String {
        let kind = match self.work {
            Work::Io => "IO-bound",
            Work::Cpu => "CPU-bound",
        };
        format!(
            "{kind}, {} ms x {} workers",
            self.service.as_millis(),
            self.workers
        )
    }
}

/// One backend: its workers and what they measured. Clones share them.
#[derive(Debug, Clone)]
pub struct Backend {
    shape: Shape,
    workers: Arc<Semaphore>,
    /// Microseconds spent working, and calls served.
    busy_micros: Arc<AtomicU64>,
    served: Arc<AtomicU64>,
}

impl Backend {
    /// A backend of `shape`, its workers all free.
    pub fn new(shape: Shape) -> Self {
        Backend {
            shape,
            workers: Arc::new(Semaphore::new(shape.workers)),
            busy_micros: Arc::default(),
            served: Arc::default(),
        }
    }

    /// The axum app: `GET /` does one call's work, 200 when done.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(handle))
            .with_state(self.clone())
    }

    /// One call's work, spawned: like most servers, a client that gives up does not cancel
    /// work already started or queued. `false` once the backend is closed.
    pub async fn call(&self) -> bool {
        let backend = self.clone();
        tokio::spawn(async move { backend.work().await })
            .await
            .unwrap_or(false)
    }

    async fn work(self) -> bool {
        let Ok(_worker) = self.workers.acquire().await else {
            return false;
        };
        let started = Instant::now();
        match self.shape.work {
            Work::Io => tokio::time::sleep(self.shape.service).await,
            Work::Cpu => {
                let service = self.shape.service;
                if tokio::task::spawn_blocking(move || spin(service))
                    .await
                    .is_err()
                {
                    return false;
                }
            }
        }
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.busy_micros.fetch_add(micros, Relaxed);
        self.served.fetch_add(1, Relaxed);
        true
    }

    /// Ends the work still queued (at the end of a run, so it does not spill into the next).
    pub fn close(&self) {
        self.workers.close();
    }

    /// The mean time a call held a worker: the service time as the runtime delivered it
    /// (tokio's timer rounds sleeps up to the next millisecond).
    pub fn mean_service_time(&self) -> Option<Duration> {
        let served = self.served.load(Relaxed);
        (served > 0).then(|| Duration::from_micros(self.busy_micros.load(Relaxed) / served))
    }
}

async fn handle(State(backend): State<Backend>) -> StatusCode {
    if backend.call().await {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// Burns the CPU for `service`, checking the clock.
fn spin(service: Duration) {
    let started = Instant::now();
    while started.elapsed() < service {
        std::hint::black_box(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_capacities() {
        let shape = Shape::io(10, 4);
        assert_eq!(shape.name(), "10ms/4");
        assert_eq!(shape.capacity(), 400.0);
        assert_eq!(Shape::io(100, 64).capacity(), 640.0);
        assert_eq!(shape.capacity_at(Duration::from_micros(12_500)), 320.0);
        assert!(Shape::cpu(1).name().starts_with("cpu-1ms/"));
        assert_eq!(Shape::all().len(), 7);
    }

    #[tokio::test]
    async fn closing_a_backend_ends_its_queued_work() {
        // No free worker: the call waits in the queue until the backend closes.
        let backend = Backend::new(Shape {
            workers: 0,
            ..Shape::io(10, 4)
        });
        let queued = tokio::spawn({
            let backend = backend.clone();
            async move { backend.call().await }
        });
        tokio::task::yield_now().await;
        assert!(!queued.is_finished());
        backend.close();
        assert!(!queued.await.unwrap());
        assert_eq!(backend.mean_service_time(), None);
    }
}
