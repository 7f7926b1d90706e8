//! Limiters and services shared by the rate limit tests that are not about Redis.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use tower::service_fn;
use tower::Service;
use tower_bulwark_ratelimit::{Decision, LimitError, Limiter, LocalLimiter, Quota, RateLimitEvent};

/// A limiter whose store is down: every answer is an error.
#[derive(Debug, Clone)]
pub struct Broken(pub Quota);

impl<K> Limiter<K> for Broken {
    type Future = Ready<Result<Decision, LimitError>>;

    fn acquire(&self, _key: &K) -> Self::Future {
        ready(Err(LimitError::new("connection refused")))
    }

    fn acquire_now(&self, _key: &K) -> Option<Result<Decision, LimitError>> {
        Some(Err(LimitError::new("connection refused")))
    }

    fn quota(&self) -> &Quota {
        &self.0
    }
}

/// A local limiter that answers only through a future, after `delay` (as one over the
/// network does); counts the answers it gave.
#[derive(Debug, Clone)]
pub struct Remote {
    pub local: LocalLimiter<u8>,
    pub delay: Duration,
    pub answered: Arc<AtomicUsize>,
}

impl Remote {
    pub fn new(quota: Quota, delay: Duration) -> Self {
        Remote {
            local: LocalLimiter::new(quota),
            delay,
            answered: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl Limiter<u8> for Remote {
    type Future = Pin<Box<dyn Future<Output = Result<Decision, LimitError>> + Send>>;

    fn acquire(&self, key: &u8) -> Self::Future {
        let (local, delay, answered, key) =
            (self.local.clone(), self.delay, self.answered.clone(), *key);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            answered.fetch_add(1, Ordering::SeqCst);
            Ok(local.check(&key))
        })
    }

    fn quota(&self) -> &Quota {
        Limiter::<u8>::quota(&self.local)
    }
}

/// An HTTP service answering `200 ok`, counting its calls.
pub fn counting() -> (
    impl Service<
            Request<String>,
            Response = Response<String>,
            Error = Infallible,
            Future = impl Future + Send,
        > + Clone
        + Send,
    Arc<AtomicUsize>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let service = service_fn(move |_request: Request<String>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new("ok".to_string())) }
    });
    (service, calls)
}

/// Every event a layer reported, in order.
pub fn recorder() -> (
    impl Fn(&RateLimitEvent) + Send + Sync + 'static,
    Arc<Mutex<Vec<RateLimitEvent>>>,
) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (
        move |event: &RateLimitEvent| sink.lock().unwrap().push(event.clone()),
        events,
    )
}

/// A request with these headers.
pub fn request(headers: &[(&str, &str)]) -> Request<String> {
    let mut request = Request::get("/");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(String::new()).unwrap()
}

/// A header's value as text, or `None`.
pub fn header<'a, B>(response: &'a Response<B>, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}
