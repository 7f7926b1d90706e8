//! The backends: small axum servers behind chaos layers that the schedule turns on and
//! off, and that can be stopped and started again on the same port.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use http::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinHandle;
use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};
use tower_bulwark::chaos::{ChaosHandle, ChaosLayer, HttpChaosLayer, HttpFault, Latency};
use tower_bulwark::{BoxError, HandleRejectionsLayer};

/// How long a hung call hangs: past every timeout above it (the endpoint's 500 ms, the
/// attempt's 1 s, the caller's 2 s deadline), so that it fails its caller. The handler
/// ends sooner when its caller gives up and closes the connection (hyper notices).
pub(crate) const HANG: Duration = Duration::from_secs(3);
/// At most this many calls of one backend are in its hang fault at once, so at most this
/// many hang together. Without a bound, how many hung handlers a hangs phase piled up
/// depended on how fast the callers above found the backend slow, and the memory they
/// (and the connections their callers opened instead) held at once moved the soak's
/// reading by several percent from cycle to cycle: noise, not a leak. With it a cycle
/// hangs at most this many at once; the soak prints each hangs phase's peak.
pub(crate) const MAX_HUNG: usize = 4;
/// The latency a slow backend adds.
pub(crate) const SLOW: Duration = Duration::from_millis(50);

/// The faults of one backend, each off until the schedule turns it on.
#[derive(Clone)]
pub(crate) struct Faults {
    /// Every call answered 503.
    pub(crate) down: ChaosHandle,
    /// Half the calls answered 503.
    pub(crate) errors: ChaosHandle,
    /// Every call 50 ms slower.
    pub(crate) slow: ChaosHandle,
    /// One call in ten of those let into the fault hangs for 3 s; at most [`MAX_HUNG`]
    /// calls are let in at once, the others pass it by.
    pub(crate) hangs: ChaosHandle,
    /// The most calls in the hang fault at once since it was last read (and reset).
    pub(crate) hang_peak: Arc<AtomicUsize>,
}

impl Faults {
    pub(crate) fn all(&self) -> [&ChaosHandle; 4] {
        [&self.down, &self.errors, &self.slow, &self.hangs]
    }
}

/// A running backend.
pub(crate) struct Backend {
    pub(crate) addr: SocketAddr,
    pub(crate) faults: Faults,
    router: Router,
    running: Option<Running>,
}

struct Running {
    stop: oneshot::Sender<()>,
    served: JoinHandle<std::io::Result<()>>,
}

/// Sends a call through the hang fault while fewer than [`MAX_HUNG`] calls are in it, and
/// past it otherwise; notes the most in it at once in `peak`.
fn gate_hangs(
    items: Router,
    hangs: HttpChaosLayer,
    peak: Arc<AtomicUsize>,
) -> impl Service<Request, Response = Response, Error = BoxError, Future: Send> + Clone + Send {
    let hanging = ServiceBuilder::new().layer(hangs).service(items.clone());
    let gate = Arc::new(Semaphore::new(MAX_HUNG));
    service_fn(move |request: Request| {
        let (items, hanging, gate, peak) =
            (items.clone(), hanging.clone(), gate.clone(), peak.clone());
        async move {
            match gate.clone().try_acquire_owned() {
                Ok(_in_the_fault) => {
                    peak.fetch_max(MAX_HUNG - gate.available_permits(), Relaxed);
                    hanging.oneshot(request).await
                }
                Err(_) => Ok(items.oneshot(request).await?),
            }
        }
    })
}

impl Backend {
    /// Starts a backend on a free loopback port.
    pub(crate) async fn start(seed: u64) -> Result<Backend, BoxError> {
        let unavailable = HttpFault::Status(StatusCode::SERVICE_UNAVAILABLE);
        let down =
            HttpChaosLayer::new(ChaosLayer::builder().error_rate(1.0).seed(seed).disabled())?
                .answer(unavailable);
        let errors =
            HttpChaosLayer::new(ChaosLayer::builder().error_rate(0.5).seed(seed).disabled())?
                .answer(unavailable);
        let slow = HttpChaosLayer::new(
            ChaosLayer::builder()
                .latency(1.0, Latency::Fixed(SLOW))
                .seed(seed + 1)
                .disabled(),
        )?;
        let hangs = HttpChaosLayer::new(
            ChaosLayer::builder()
                .latency(0.1, Latency::Fixed(HANG))
                .seed(seed + 2)
                .disabled(),
        )?;
        let faults = Faults {
            down: down.handle(),
            errors: errors.handle(),
            slow: slow.handle(),
            hangs: hangs.handle(),
            hang_peak: Arc::default(),
        };
        let items = Router::new().route(
            "/items/{key}",
            get(|Path(key): Path<u64>| async move { format!("item {key}") }),
        );
        let router = Router::new()
            .fallback_service(HandleRejectionsLayer::new().layer(gate_hangs(
                items,
                hangs,
                faults.hang_peak.clone(),
            )))
            .layer(
                ServiceBuilder::new()
                    .layer(HandleRejectionsLayer::new())
                    .layer(down)
                    .layer(errors)
                    .layer(slow),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let mut backend = Backend {
            addr: listener.local_addr()?,
            faults,
            router,
            running: None,
        };
        backend.serve(listener);
        Ok(backend)
    }

    fn serve(&mut self, listener: TcpListener) {
        let (stop, stopped) = oneshot::channel::<()>();
        let router = self.router.clone();
        let served = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        self.running = Some(Running { stop, served });
    }

    /// Stops serving: no new connections, and open ones close once their calls end, or
    /// after 5 s (a hung call's connection).
    pub(crate) async fn stop(&mut self) -> Result<(), BoxError> {
        if let Some(Running { stop, mut served }) = self.running.take() {
            let _ = stop.send(());
            match tokio::time::timeout(Duration::from_secs(5), &mut served).await {
                Ok(result) => result??,
                Err(_) => {
                    // Aborting only asks: wait until the task (and its listener) is gone,
                    // or the port is still taken when it is bound again.
                    served.abort();
                    let _ = served.await;
                }
            }
        }
        Ok(())
    }

    /// Serves again on the same port. The port may be briefly taken (a connection of
    /// the old server not yet gone, or an outgoing connection given it as its ephemeral
    /// port on a busy machine): binding is retried for up to 10 s.
    pub(crate) async fn restart(&mut self) -> Result<(), BoxError> {
        self.stop().await?;
        let started = tokio::time::Instant::now();
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(error)
                    if error.kind() == std::io::ErrorKind::AddrInUse
                        && started.elapsed() < Duration::from_secs(10) =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => {
                    return Err(format!("{} could not be bound again: {error}", self.addr).into())
                }
            }
        };
        self.serve(listener);
        Ok(())
    }
}
