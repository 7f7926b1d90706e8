//! Drives a stack with a schedule of requests, each sent at its own instant by its own
//! task, and notes what each caller got back and when.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use http::{Response, StatusCode};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::{Service, ServiceExt};
use tower_bulwark::chaos::ChaosError;
use tower_bulwark::fallback::{Degraded, DEGRADED_HEADER};
use tower_bulwark::{find_rejection, BoxError, Deadline, Rejection, CRITICALITY_HEADER};

use super::dependency::{Body, CALL, REQUEST, TIMEOUT_MS};

/// Longer than any run: a caller still waiting then got no answer at all.
const WATCHDOG: Duration = Duration::from_secs(2 * 3600);

/// One request of a schedule.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    /// When it is sent, from the run's start.
    pub(crate) at: Duration,
    /// `GET /item/{path}`.
    pub(crate) path: u8,
    /// The caller's deadline, from when it is sent.
    pub(crate) deadline: Option<Duration>,
    /// When the caller stops waiting and drops the call, from when it is sent.
    pub(crate) give_up: Option<Duration>,
    /// Its `x-request-criticality`.
    pub(crate) criticality: Option<&'static str>,
}

impl Planned {
    /// A `GET /item/0` sent at `at` ms, with no deadline.
    pub(crate) fn at(at: u64) -> Planned {
        Planned {
            at: Duration::from_millis(at),
            path: 0,
            deadline: None,
            give_up: None,
            criticality: None,
        }
    }

    /// With a deadline of `ms` milliseconds.
    pub(crate) fn within(mut self, ms: u64) -> Planned {
        self.deadline = Some(Duration::from_millis(ms));
        self
    }
}

/// How the caller's deadline reaches the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Carry {
    /// As the task's current deadline (a client called from a handler).
    Scope,
    /// In `x-request-timeout-ms` (a server's caller).
    Header,
}

/// What a caller got back.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A response.
    Response {
        status: StatusCode,
        /// The dependency call it carries ([`CALL`]).
        call: Option<usize>,
        /// Its `x-bulwark-degraded` header, if any.
        degraded_header: Option<String>,
        /// Its `Degraded` extension, if any.
        degraded: Option<Degraded>,
        /// Its `Rejection` extension (a refusal turned into a response), if any.
        rejection: Option<Rejection>,
    },
    /// An error.
    Error {
        /// The rejection in its source chain, if any.
        rejection: Option<Rejection>,
        /// Whether it is the dependency's own error (an injected abort).
        aborted: bool,
        text: String,
    },
    /// The caller gave up first.
    Abandoned,
    /// Nothing came back, ever.
    Nothing,
}

/// One request's fate.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Its path.
    pub(crate) path: String,
    /// When it was sent, since the run's start.
    pub(crate) sent: Duration,
    /// When the caller's deadline ran out, if it had one.
    pub(crate) deadline: Option<Duration>,
    /// When the caller got its answer (or gave up).
    pub(crate) answered: Duration,
    pub(crate) answer: Answer,
}

impl Planned {
    fn request(&self, index: usize, carry: Carry) -> http::Request<Body> {
        let mut request = http::Request::get(format!("/item/{}", self.path)).header(REQUEST, index);
        if let (Carry::Header, Some(deadline)) = (carry, self.deadline) {
            request = request.header(TIMEOUT_MS, deadline.as_millis() as u64);
        }
        if let Some(criticality) = self.criticality {
            request = request.header(CRITICALITY_HEADER, criticality);
        }
        request.body(Body::default()).expect("valid request")
    }
}

fn read<B, E: Into<BoxError>>(result: Result<Response<B>, E>) -> Answer {
    match result {
        Ok(response) => Answer::Response {
            status: response.status(),
            call: response
                .headers()
                .get(CALL)
                .and_then(|value| value.to_str().ok()?.parse().ok()),
            degraded_header: response
                .headers()
                .get(DEGRADED_HEADER)
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned()),
            degraded: response.extensions().get::<Degraded>().copied(),
            rejection: response.extensions().get::<Rejection>().cloned(),
        },
        Err(error) => {
            let error = error.into();
            let mut aborted = false;
            let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&*error);
            while let Some(error) = next {
                aborted |= error.downcast_ref::<ChaosError>() == Some(&ChaosError::Aborted);
                next = error.source();
            }
            Answer::Error {
                rejection: find_rejection(&error).cloned(),
                aborted,
                text: error.to_string(),
            }
        }
    }
}

type Pending<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>;

/// Sends every planned request at its instant (from `base`), each from its own task, and
/// returns their outcomes in order. Responses are dropped once read.
pub(crate) async fn drive<S, B, E>(
    service: S,
    plan: &[Planned],
    carry: Carry,
    base: Instant,
) -> Vec<Outcome>
where
    S: Service<http::Request<Body>, Response = Response<B>, Error = E> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: 'static,
    E: Into<BoxError> + 'static,
{
    let mut tasks = JoinSet::new();
    for (index, planned) in plan.iter().cloned().enumerate() {
        let service = service.clone();
        tasks.spawn(async move {
            tokio::time::sleep_until(base + planned.at).await;
            let sent = Instant::now();
            let call = service.oneshot(planned.request(index, carry));
            let call: Pending<B, E> = match (carry, planned.deadline) {
                (Carry::Scope, Some(deadline)) => Box::pin(Deadline::after(deadline).scope(call)),
                _ => Box::pin(call),
            };
            let answer = match tokio::time::timeout(planned.give_up.unwrap_or(WATCHDOG), call).await
            {
                Ok(result) => read(result),
                Err(_) if planned.give_up.is_some() => Answer::Abandoned,
                Err(_) => Answer::Nothing,
            };
            let sent = sent - base;
            let outcome = Outcome {
                path: format!("/item/{}", planned.path),
                sent,
                deadline: planned.deadline.map(|deadline| sent + deadline),
                answered: Instant::now() - base,
                answer,
            };
            (index, outcome)
        });
    }
    let mut outcomes: Vec<Option<Outcome>> = (0..plan.len()).map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        let (index, outcome) = done.expect("a caller task panicked");
        outcomes[index] = Some(outcome);
    }
    outcomes.into_iter().map(Option::unwrap).collect()
}
