//! [`IdempotencyLayer`] and the [`Idempotency`] service it builds.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::{RequestBody, ResponseBody};
use crate::config::Shared;
use crate::events::Outcome;
use crate::future::ResponseFuture;
use crate::key::read_key;
use crate::keyed::keyed;
use crate::problem::{Problem, Protocol};
use crate::{MemoryStore, Store};

/// Makes requests carrying an `Idempotency-Key` run at most once per key: see the
/// [crate docs](crate). Build it with [`IdempotencyLayer::builder`]; cloning shares the
/// store.
pub struct IdempotencyLayer<St = MemoryStore> {
    pub(crate) shared: Arc<Shared<St>>,
}

impl<St> Clone for IdempotencyLayer<St> {
    fn clone(&self) -> Self {
        IdempotencyLayer {
            shared: self.shared.clone(),
        }
    }
}

impl<St: fmt::Debug> fmt::Debug for IdempotencyLayer<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("IdempotencyLayer")
            .field(&self.shared)
            .finish()
    }
}

impl<S, St> Layer<S> for IdempotencyLayer<St> {
    type Service = Idempotency<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        Idempotency {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of an [`IdempotencyLayer`]. It hands its inner service the request with a
/// [`RequestBody`] and answers with a [`ResponseBody`]; its own refusals (400, 409, 413,
/// 422, 503) are responses, never errors, so it fits axum as it is.
pub struct Idempotency<S, St = MemoryStore> {
    inner: S,
    shared: Arc<Shared<St>>,
}

impl<S: Clone, St> Clone for Idempotency<S, St> {
    fn clone(&self) -> Self {
        Idempotency {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, St: fmt::Debug> fmt::Debug for Idempotency<S, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotency")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .finish()
    }
}

impl<S, St, ReqB, ResB> Service<Request<ReqB>> for Idempotency<S, St>
where
    S: Service<Request<RequestBody<ReqB>>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    St: Store,
    ReqB: Body<Data = Bytes> + Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let settings = &self.shared.settings;
        let (parts, body) = request.into_parts();
        if !settings.methods.contains(&parts.method) {
            let request = Request::from_parts(parts, RequestBody::Streaming(body));
            return ResponseFuture::passed(self.inner.call(request));
        }
        let refuse = |outcome, problem: Problem| {
            self.shared.reporter.report(outcome);
            ResponseFuture::ready(problem.response(&Protocol::of(&parts.headers)))
        };
        match read_key(&parts.headers, settings.format, settings.max_key_len) {
            Ok(Some(key)) => {
                // The ready service goes with the request; a clone takes its place.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::keyed(Box::pin(keyed(
                    self.shared.clone(),
                    inner,
                    parts,
                    body,
                    key,
                )))
            }
            Ok(None) if settings.requires_key(&parts) => {
                refuse(Outcome::MissingKey, Problem::MissingKey)
            }
            Ok(None) => {
                let request = Request::from_parts(parts, RequestBody::Streaming(body));
                ResponseFuture::passed(self.inner.call(request))
            }
            Err(bad) => refuse(Outcome::BadKey, Problem::BadKey(bad)),
        }
    }
}
