//! The dependency every composed stack calls: the chaos layers' faults (error statuses,
//! aborts, latency, hangs) in front of a healthy service, behind a recorder that notes each
//! call's request, start, end and result in paused time.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use tokio::time::Instant;
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_bulwark::breaker::{BreakerHandle, State};
use tower_bulwark::chaos::{ChaosLayer, HttpChaosLayer, HttpFault, Latency};
use tower_bulwark::BoxError;

/// The body of every request and response.
pub(crate) type Body = Full<Bytes>;

/// Names the request (its index in the schedule); retries carry it too.
pub(crate) const REQUEST: &str = "x-test-request";
/// Added by the recorder to every answer of the dependency: the number of the call.
pub(crate) const CALL: &str = "x-test-call";
/// The deadline a client sends with each call (`PropagateDeadlineLayer`'s default header).
pub(crate) const TIMEOUT_MS: &str = "x-request-timeout-ms";

/// A hang: longer than any run.
const HANG: Duration = Duration::from_secs(3600);

/// What the chaos layers inject, for the calls that start inside `window`.
#[derive(Debug, Clone)]
pub(crate) struct Faults {
    /// Seeds both chaos layers, so a run replays exactly.
    pub(crate) seed: u64,
    /// The share of calls answered with `status`.
    pub(crate) error_rate: f64,
    /// The status of an injected error.
    pub(crate) status: StatusCode,
    /// The share of calls that fail as a broken connection would.
    pub(crate) abort_rate: f64,
    /// The share of calls delayed, and by how much.
    pub(crate) latency: (f64, Latency),
    /// The share of calls that never answer.
    pub(crate) hang_rate: f64,
    /// From when to when (since the run's start) faults are injected.
    pub(crate) window: (Duration, Duration),
}

impl Faults {
    /// A healthy dependency.
    pub(crate) fn none() -> Faults {
        Faults {
            seed: 0,
            error_rate: 0.0,
            status: StatusCode::SERVICE_UNAVAILABLE,
            abort_rate: 0.0,
            latency: (0.0, Latency::Fixed(Duration::ZERO)),
            hang_rate: 0.0,
            window: (Duration::ZERO, HANG),
        }
    }

    /// Faults injected only for calls starting in `from..until`.
    pub(crate) fn during(mut self, from: Duration, until: Duration) -> Faults {
        self.window = (from, until);
        self
    }
}

/// How a call to the dependency ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// It has not.
    Running,
    /// With a response of this status.
    Answered(StatusCode),
    /// With an error (an injected abort).
    Failed,
    /// Dropped before it answered: cut by a timeout or a deadline, or abandoned.
    Cut,
}

/// One call that reached the dependency.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// The request it was made for (from [`REQUEST`]).
    pub(crate) request: Option<usize>,
    /// The request's path.
    pub(crate) path: String,
    /// When it started, since the run's start.
    pub(crate) start: Duration,
    /// When it ended (answered, failed or was dropped).
    pub(crate) end: Option<Duration>,
    /// How.
    pub(crate) ended: Ended,
    /// When the deadline sent with it ([`TIMEOUT_MS`]) runs out, if one was sent.
    pub(crate) sent_deadline: Option<Duration>,
    /// The breaker's state as the call started, if a breaker is watched.
    pub(crate) breaker: Option<State>,
}

impl Call {
    /// Whether the dependency failed this call: an error status (5xx, 429), a broken
    /// connection, or no answer within a whole `attempt` (a call cut sooner, by a caller's
    /// deadline or by a timer that started before the call did, says nothing about it).
    pub(crate) fn failed(&self, attempt: Duration) -> bool {
        match self.ended {
            Ended::Answered(status) => {
                status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
            }
            Ended::Failed => true,
            Ended::Cut => self.slow(attempt),
            Ended::Running => false,
        }
    }

    /// Whether it was cut after running at least `attempt`.
    pub(crate) fn slow(&self, attempt: Duration) -> bool {
        self.ended == Ended::Cut && self.end.is_some_and(|end| end - self.start >= attempt)
    }
}

/// Every call the dependency received, in the order they started.
#[derive(Debug)]
pub(crate) struct Log {
    /// When the run started.
    pub(crate) base: Instant,
    calls: Mutex<Vec<Call>>,
}

impl Log {
    /// An empty log; the run starts now.
    pub(crate) fn new() -> Arc<Log> {
        Arc::new(Log {
            base: Instant::now(),
            calls: Mutex::new(Vec::new()),
        })
    }

    /// A copy of the calls so far.
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn start(&self, request: &Request<Body>, breaker: Option<State>) -> usize {
        let start = Instant::now() - self.base;
        let number = |name: &str| -> Option<u64> {
            request.headers().get(name)?.to_str().ok()?.parse().ok()
        };
        let mut calls = self.calls.lock().unwrap();
        calls.push(Call {
            request: number(REQUEST).map(|n| n as usize),
            path: request.uri().path().to_owned(),
            start,
            end: None,
            ended: Ended::Running,
            sent_deadline: number(TIMEOUT_MS).map(|ms| start + Duration::from_millis(ms)),
            breaker,
        });
        calls.len() - 1
    }

    fn end(&self, call: usize, ended: Ended) {
        let mut calls = self.calls.lock().unwrap();
        calls[call].end = Some(Instant::now() - self.base);
        calls[call].ended = ended;
    }
}

/// Ends a call in the log: as it answered, or as cut if dropped first.
struct Guard {
    log: Arc<Log>,
    call: usize,
    done: bool,
}

impl Guard {
    fn finish(mut self, ended: Ended) -> usize {
        self.log.end(self.call, ended);
        self.done = true;
        self.call
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.done {
            self.log.end(self.call, Ended::Cut);
        }
    }
}

/// The dependency: `faults` injected by the chaos layers (an `HttpChaosLayer` for error
/// statuses, aborts and latency, a `ChaosLayer` for hangs) in front of a service that
/// answers 200, every call recorded in `log` (with `breaker`'s state at its start).
pub(crate) fn dependency(
    faults: &Faults,
    log: &Arc<Log>,
    breaker: Option<BreakerHandle>,
) -> impl Service<
    Request<Body>,
    Response = Response<Body>,
    Error = BoxError,
    Future = impl Future<Output = Result<Response<Body>, BoxError>> + Send,
> + Clone
       + Send
       + 'static {
    let errors = HttpChaosLayer::new(
        ChaosLayer::builder()
            .error_rate(faults.error_rate)
            .abort_rate(faults.abort_rate)
            .latency(faults.latency.0, faults.latency.1)
            .seed(faults.seed),
    )
    .expect("valid faults")
    .answer(HttpFault::Status(faults.status));
    let hangs = ChaosLayer::builder()
        .latency(faults.hang_rate, Latency::Fixed(HANG))
        .seed(faults.seed.rotate_left(32))
        .build()
        .expect("valid faults");
    let switches = [errors.handle(), hangs.handle()];
    let healthy = service_fn(|_: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::from("fresh")))
    });
    let chaos = errors.layer(hangs.layer(healthy));
    let (log, window) = (log.clone(), faults.window);
    service_fn(move |request: Request<Body>| {
        let since = Instant::now() - log.base;
        let faulty = window.0 <= since && since < window.1;
        for switch in &switches {
            if faulty {
                switch.enable();
            } else {
                switch.disable();
            }
        }
        let call = log.start(&request, breaker.as_ref().map(BreakerHandle::state));
        let guard = Guard {
            log: log.clone(),
            call,
            done: false,
        };
        let chaos = chaos.clone();
        async move {
            let result = chaos.oneshot(request).await;
            let call = guard.finish(match &result {
                Ok(response) => Ended::Answered(response.status()),
                Err(_) => Ended::Failed,
            });
            result.map(|mut response| {
                response.headers_mut().insert(CALL, HeaderValue::from(call));
                response
            })
        }
    })
}
