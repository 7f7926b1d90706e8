//! A scripted backend for the hedge layer's tests: each attempt's latency and answer by
//! its number, attempts in flight counted by a guard in the attempt's future.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use tower::Service;
use tower_bulwark_core::{BoxError, Rejection, RejectionKind};

/// What an attempt answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with the attempt's number as the body.
    Ok,
    /// This status and headers.
    Status(u16, Vec<(&'static str, &'static str)>),
    /// A transport error.
    Fail,
    /// A refusal by a layer below.
    Reject(RejectionKind, Option<Duration>),
}

/// What the backend saw.
#[derive(Debug, Default)]
pub struct Stats {
    pub calls: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub cancelled: AtomicUsize,
}

impl Stats {
    pub fn calls(&self) -> usize {
        self.calls.load(SeqCst)
    }
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(SeqCst)
    }
    pub fn cancelled(&self) -> usize {
        self.cancelled.load(SeqCst)
    }
}

struct Attempt {
    stats: Arc<Stats>,
    done: bool,
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, SeqCst);
        if !self.done {
            self.stats.cancelled.fetch_add(1, SeqCst);
        }
    }
}

pub type Plan = Arc<dyn Fn(usize) -> (Duration, Reply) + Send + Sync>;

#[allow(clippy::type_complexity)]
/// A backend: attempt `n` (0-based) waits and answers as `plan(n)` says.
pub fn backend(
    plan: impl Fn(usize) -> (Duration, Reply) + Send + Sync + 'static,
) -> (
    impl Service<
            Request<()>,
            Response = Response<String>,
            Error = BoxError,
            Future = impl Future<Output = Result<Response<String>, BoxError>> + Send,
        > + Clone
        + Send
        + 'static,
    Arc<Stats>,
) {
    let stats = Arc::new(Stats::default());
    let plan: Plan = Arc::new(plan);
    let service = {
        let stats = stats.clone();
        tower::service_fn(move |_request: Request<()>| {
            let n = stats.calls.fetch_add(1, SeqCst);
            stats.in_flight.fetch_add(1, SeqCst);
            let mut attempt = Attempt {
                stats: stats.clone(),
                done: false,
            };
            let (latency, reply) = plan(n);
            async move {
                tokio::time::sleep(latency).await;
                attempt.done = true;
                drop(attempt);
                match reply {
                    Reply::Ok => Ok(Response::new(n.to_string())),
                    Reply::Status(status, headers) => {
                        let mut builder = Response::builder().status(status);
                        for (name, value) in headers {
                            builder = builder.header(name, value);
                        }
                        Ok(builder.body(n.to_string()).unwrap())
                    }
                    Reply::Fail => Err::<_, BoxError>(format!("attempt {n} failed").into()),
                    Reply::Reject(kind, wait) => {
                        let mut rejection = Rejection::new(kind, "below");
                        if let Some(wait) = wait {
                            rejection = rejection.with_retry_after(wait);
                        }
                        Err(rejection.into())
                    }
                }
            }
        })
    };
    (service, stats)
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn get() -> Request<()> {
    Request::get("/items/7").body(()).unwrap()
}
