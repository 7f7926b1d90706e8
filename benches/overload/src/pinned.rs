//! One run of the end-to-end bench: the server on a thread pinned to the first core, the
//! load generator on a thread pinned to the second, each with a current-thread runtime of
//! its own (or, with `Plan::server_threads` above 1, the server on a multi-thread runtime,
//! unpinned).
//!
//! A current-thread runtime on a pinned thread keeps the whole of one side (accept loop,
//! connections, handler and middleware; or callers, pool and connections) on one core, so
//! neither side steals the other's core and each thread's CPU time is that side's cost.
//! Both threads are new for every run and end with it: no connection, learned limit or
//! warm cache carries over into the next run.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::Full;
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};
use tower::Service;
use tower_bulwark::shed::ShedHandle;
use tower_bulwark::BoxError;

use crate::closed::{self, Plan, Tally, Window};
use crate::cores;
use crate::server;

/// The core index (among those the process may use) of the server's thread.
pub const SERVER_CORE: usize = 0;
/// The core index of the load generator's thread.
pub const CLIENT_CORE: usize = 1;
/// How often the shed limit is read during the window.
const LIMIT_EVERY: Duration = Duration::from_millis(20);

/// The shed limit over one run's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitTrace {
    /// When the window closed.
    pub end: usize,
    /// The lowest read during the window (every 20 ms).
    pub lowest: usize,
    /// The highest read during the window.
    pub highest: usize,
    /// Calls the layer had shed by the window's end, warm-up included.
    pub shed: u64,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// What the callers saw.
    pub tally: Tally,
    /// The server thread's CPU time in the window.
    pub server_cpu: Option<Duration>,
    /// The load generator thread's CPU time in the window.
    pub client_cpu: Option<Duration>,
    /// Connections the server accepted over the whole run.
    pub connections: u64,
    /// The server's shed limit, where it has one.
    pub limit: Option<LimitTrace>,
    /// The cores the server and the generator ran on (`None`: unpinned).
    pub cores: (Option<usize>, Option<usize>),
}

/// A request to the server's thread for its CPU time so far.
type CpuProbe = oneshot::Sender<Option<Duration>>;

/// Serves `app` on the server's core and loads it through `client` on the generator's,
/// under `plan`. `shed` reads the server's shed limit, if it has one.
pub fn run<S>(
    app: Router,
    shed: Option<ShedHandle>,
    client: S,
    plan: Plan,
) -> Result<Measured, BoxError>
where
    S: Service<Request<Full<Bytes>>, Response = Response<Bytes>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
{
    let (probes, probed) = mpsc::channel::<CpuProbe>(1);
    let (bound, listening) = std::sync::mpsc::channel();
    let threads = plan.server_threads;
    let server = thread::Builder::new()
        .name("e2e-server".into())
        .spawn(move || serve(app, threads, bound, probed))?;
    let addr: SocketAddr = match listening.recv() {
        Ok(bound) => bound?,
        Err(_) => return Err(joined(server).err().unwrap_or_else(|| "no server".into())),
    };
    let uri: Uri = format!("http://{addr}/").parse()?;
    let generator =
        thread::Builder::new()
            .name("e2e-load".into())
            .spawn(move || -> Result<_, BoxError> {
                let core = cores::pin_current(CLIENT_CORE);
                let measured = runtime()?.block_on(load(client, uri, plan, probes, shed));
                Ok((measured, core))
            })?;
    let generated = joined(generator);
    let (connections, server_core) = joined(server)?;
    let ((tally, server_cpu, client_cpu, limit), client_core) = generated?;
    Ok(Measured {
        tally,
        server_cpu,
        client_cpu,
        connections,
        limit,
        cores: (server_core, client_core),
    })
}

/// The generator's side of a run: the callers, the CPU times at the window's edges, the
/// shed limit every [`LIMIT_EVERY`] in the window.
async fn load<S>(
    client: S,
    uri: Uri,
    plan: Plan,
    probes: mpsc::Sender<CpuProbe>,
    shed: Option<ShedHandle>,
) -> (
    Tally,
    Option<Duration>,
    Option<Duration>,
    Option<LimitTrace>,
)
where
    S: Service<Request<Full<Bytes>>, Response = Response<Bytes>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
{
    let window = Window::starting_now(&plan);
    let callers = tokio::spawn(closed::run(client, uri, plan.connections, window));
    tokio::time::sleep_until(window.from).await;
    let (server_start, client_start) = (server_cpu(&probes).await, cores::thread_cpu());
    let mut trace = shed.as_ref().map(|shed| {
        let limit = shed.snapshot().limit;
        LimitTrace {
            end: limit,
            lowest: limit,
            highest: limit,
            shed: 0,
        }
    });
    let mut next = window.from;
    while next < window.end {
        next = (next + LIMIT_EVERY).min(window.end);
        tokio::time::sleep_until(next).await;
        if let (Some(shed), Some(trace)) = (&shed, &mut trace) {
            let snapshot = shed.snapshot();
            trace.end = snapshot.limit;
            trace.lowest = trace.lowest.min(snapshot.limit);
            trace.highest = trace.highest.max(snapshot.limit);
            trace.shed = snapshot.shed.iter().sum();
        }
    }
    let (server_end, client_end) = (server_cpu(&probes).await, cores::thread_cpu());
    let tally = callers
        .await
        .unwrap_or_else(|_| Tally::new(window.length()));
    drop(probes); // The callers are done: the server stops.
    let spent = |start: Option<Duration>, end: Option<Duration>| Some(end? - start?);
    (
        tally,
        spent(server_start, server_end),
        spent(client_start, client_end),
        trace,
    )
}

/// The server's thread: serves `app` (telling its address on `bound`) and answers CPU
/// probes until their sender is dropped; returns the connections accepted and its core.
fn serve(
    app: Router,
    threads: usize,
    bound: std::sync::mpsc::Sender<std::io::Result<SocketAddr>>,
    mut probed: mpsc::Receiver<CpuProbe>,
) -> Result<(u64, Option<usize>), BoxError> {
    let (core, runtime) = if threads <= 1 {
        (cores::pin_current(SERVER_CORE), runtime()?)
    } else {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("e2e-server")
            .enable_all()
            .build()?;
        (None, runtime)
    };
    let accepted = Arc::new(AtomicU64::new(0));
    runtime.block_on(async {
        let _ = bound.send(server::serve_counting(app, accepted.clone()).await);
        // With several workers this thread is not the one serving: no CPU time to tell.
        while let Some(probe) = probed.recv().await {
            let _ = probe.send(cores::thread_cpu().filter(|_| threads <= 1));
        }
    });
    Ok((accepted.load(Ordering::Relaxed), core))
}

/// The server thread's CPU time so far.
async fn server_cpu(probes: &mpsc::Sender<CpuProbe>) -> Option<Duration> {
    let (probe, answer) = oneshot::channel();
    probes.send(probe).await.ok()?;
    answer.await.ok().flatten()
}

fn runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// A thread's result, a panic as an error.
fn joined<T>(thread: thread::JoinHandle<Result<T, BoxError>>) -> Result<T, BoxError> {
    thread.join().map_err(|_| "a bench thread panicked")?
}
