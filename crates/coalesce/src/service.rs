//! [`Coalesce`], the service of a [`CoalesceLayer`](crate::CoalesceLayer).

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_bulwark_core::BoxError;
use tower_service::Service;

use crate::config::{lock_map, Shared};
use crate::events::CoalesceEventKind;
use crate::future::ResponseFuture;
use crate::slot::{Join, Slot, Waiter};
use crate::upstream::Upstream;
use crate::CoalesceHandle;

/// The service of a [`CoalesceLayer`](crate::CoalesceLayer).
///
/// # The tower contract
///
/// `poll_ready` is the inner service's. What `call` does with that readiness depends on
/// the request:
///
/// - a request that is not coalesced (another method, the user's key function said
///   `None`, a bound reached) and a request that leads a new call use it: the inner
///   service is called at once;
/// - a request that joins a call in flight does not use it (the service stays ready for
///   the next call). It keeps an unreadied clone of the inner service with its request,
///   and uses them, `poll_ready` then `call`, only if the shared answer turns out over the
///   body limit and it must send its own call.
pub struct Coalesce<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S: Clone> Clone for Coalesce<S> {
    fn clone(&self) -> Self {
        Coalesce {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Coalesce<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coalesce")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .finish()
    }
}

impl<S> Coalesce<S> {
    /// A handle to read the layer's state.
    pub fn handle(&self) -> CoalesceHandle {
        CoalesceHandle::new(self.shared.clone())
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// What `call` decided under the map's lock.
enum Decision<F: Send + 'static, B: Send + 'static> {
    Lead(Waiter<F, B>),
    Join(Waiter<F, B>),
    OverKeys,
    OverWaiters,
    /// Another key with the same hash (or a slot of another service type) holds the
    /// place: pass by.
    Pass,
}

impl<S, ReqB, B> Service<Request<ReqB>> for Coalesce<S>
where
    S: Service<Request<ReqB>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<crate::CoalesceBody<B>>;
    type Error = BoxError;
    type Future = ResponseFuture<S, ReqB, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let shared = &self.shared;
        if !shared.key.may_coalesce(request.method()) {
            // Passed by without taking the request apart.
            return ResponseFuture::passed(self.inner.call(request));
        }
        let (parts, body) = request.into_parts();
        let Some(probe) = shared.key.probe(&parts) else {
            let request = Request::from_parts(parts, body);
            return ResponseFuture::passed(self.inner.call(request));
        };
        let mut replaced = None;
        let decision = {
            let mut map = lock_map(shared);
            let found = map.get(&probe.hash).map(|entry| {
                let same = shared.key.matches(entry.key(), &parts, &probe);
                (same, entry.clone())
            });
            let join = match found {
                None => None,
                Some((false, _)) => Some(Decision::Pass),
                Some((true, entry)) => match entry.into_any().downcast::<Slot<S::Future, B>>() {
                    Err(_) => Some(Decision::Pass),
                    Ok(slot) => match slot.join(shared.max_waiters) {
                        Join::Joined(waiter) => Some(Decision::Join(waiter)),
                        Join::Full => Some(Decision::OverWaiters),
                        // The call ended: this request starts the next one in its place.
                        Join::Ended => None,
                    },
                },
            };
            match join {
                Some(decision) => decision,
                None if map.len() >= shared.max_keys && !map.contains_key(&probe.hash) => {
                    Decision::OverKeys
                }
                None => {
                    let key = shared.key.store(&parts, &probe);
                    let waiter = Slot::lead(shared.clone(), probe.hash, key);
                    replaced = map.insert(probe.hash, waiter.slot().clone());
                    Decision::Lead(waiter)
                }
            }
        };
        drop(replaced);
        let request = Request::from_parts(parts, body);
        match decision {
            Decision::Lead(waiter) => {
                shared.reporter.report(CoalesceEventKind::Led);
                let future = self.inner.call(request);
                waiter
                    .slot()
                    .start(Box::pin(Upstream::new(future, shared.max_body)));
                ResponseFuture::waiting(waiter, None)
            }
            Decision::Join(waiter) => {
                shared.reporter.report(CoalesceEventKind::Joined);
                let resend = (self.inner.clone(), request);
                ResponseFuture::waiting(waiter, Some(resend))
            }
            Decision::OverKeys => {
                shared.reporter.report(CoalesceEventKind::OverKeys);
                ResponseFuture::passed(self.inner.call(request))
            }
            Decision::OverWaiters => {
                shared.reporter.report(CoalesceEventKind::OverWaiters);
                ResponseFuture::passed(self.inner.call(request))
            }
            Decision::Pass => ResponseFuture::passed(self.inner.call(request)),
        }
    }
}
