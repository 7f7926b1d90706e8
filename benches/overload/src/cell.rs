//! One cell of a table: a fresh server and a fresh load generator, each on its own runtime.
//!
//! Server and generator share the process but not a runtime: each is a multi-thread
//! runtime with one worker thread (the generator's schedule runs on the calling thread,
//! its calls and the client's connections on its worker), so a busy generator does not
//! delay the server's tasks in the same run queue, and the reverse, while both fit a
//! 2-core machine (separate processes would add nothing but a second program to start). Both runtimes are
//! made new for every cell and shut down after it (waiting for their threads), with the
//! backend's queue closed: no connection, queued call, learned limit or busy thread carries
//! over into the next cell.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::runtime::Runtime;
use tower_bulwark::shed::ShedHandle;
use tower_bulwark::BoxError;

use crate::client::{HttpCaller, Proto};
use crate::grpc::{self, GrpcCaller};
use crate::guard::{Guard, Guarded};
use crate::load::{self, Caller, Plan};
use crate::server;
use crate::shape::{Backend, Shape};
use crate::stats::Summary;

/// The longest a cell's runtimes may take to shut down.
const TEARDOWN: Duration = Duration::from_secs(10);

/// What one cell measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// The run's numbers.
    pub summary: Summary,
    /// The shed limit when the window closed (our guards only).
    pub limit: Option<usize>,
    /// The mean time a call held a worker.
    pub service_time: Option<Duration>,
}

/// `shape` behind `guard`, served over `proto`, under `plan`'s load.
pub fn measure(shape: Shape, guard: Guard, proto: Proto, plan: Plan) -> Result<Measured, BoxError> {
    let backend = Backend::new(shape);
    match proto {
        Proto::H1 | Proto::H2 => {
            let Guarded { app, shed } = guard.apply(backend.router(), shape.workers)?;
            run(
                backend,
                plan,
                async move { Ok((server::serve(app).await?, shed)) },
                |addr| Ok(HttpCaller::new(addr, proto, guard.refuses_with_bare_503())),
            )
        }
        Proto::Grpc => run(
            backend.clone(),
            plan,
            grpc::serve(backend, guard),
            GrpcCaller::new,
        ),
    }
}

fn run<S, C, M>(backend: Backend, plan: Plan, serve: S, caller: M) -> Result<Measured, BoxError>
where
    S: Future<Output = Result<(SocketAddr, Option<ShedHandle>), BoxError>>,
    C: Caller,
    M: FnOnce(SocketAddr) -> Result<C, BoxError>,
{
    let server = runtime("overload-server")?;
    let client = runtime("overload-client")?;
    let (addr, shed) = server.block_on(serve)?;
    let mut limit = None;
    let run = client.block_on(async {
        let caller = caller(addr)?;
        let at_window_end = || limit = shed.map(|shed| shed.snapshot().limit);
        Ok::<_, BoxError>(load::run(caller, plan, at_window_end).await)
    })?;
    backend.close();
    // Waits for the runtimes' threads to drop their tasks, so the next cell starts alone.
    client.shutdown_timeout(TEARDOWN);
    server.shutdown_timeout(TEARDOWN);
    Ok(Measured {
        summary: Summary::of(&run),
        limit,
        service_time: backend.mean_service_time(),
    })
}

fn runtime(name: &str) -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
}
