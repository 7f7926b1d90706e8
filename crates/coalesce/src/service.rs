//! [`Coalesce`], the service of a [`CoalesceLayer`](crate::CoalesceLayer).

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_bulwark_core::BoxError;
use tower_service::Service;

use tower_bulwark_core::Deadline;

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
/// `poll_ready` is always ready: like tower's `Buffer`, the layer takes the inner
/// service's readiness per call, inside the response future, with a clone of the inner
/// service (`poll_ready` then `call`, always in that order):
///
/// - a request that is not coalesced (another method, a conditional or range request, the
///   user's key function said `None`, a bound reached) readies its clone and calls it;
/// - a request that leads a new call hands its clone and its request to the shared
///   upstream call, which readies and calls it when a waiter first polls it;
/// - a request that joins a call in flight takes no readiness at all, unless the shared
///   answer is not its to take (over the body limit, or a `Vary` header names a header
///   its request differs in) and it sends its own call.
///
/// So a readiness bound below (a bulkhead in readiness mode, tower's `ConcurrencyLimit`)
/// bounds upstream calls, and a joiner never waits for a permit it does not use. A
/// caller's wait for readiness is inside its response future, so it ends at its deadline
/// as any wait does.
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
enum Decision<U: Send + 'static, B: Send + 'static> {
    Join(Waiter<U, B>),
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
    ReqB: Send + 'static,
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<crate::CoalesceBody<B>>;
    type Error = BoxError;
    type Future = ResponseFuture<S, ReqB, B>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Readiness is taken per call, in the response future (see the type's docs).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let shared = &self.shared;
        let service = self.inner.clone();
        if !shared.key.may_coalesce(request.method()) {
            // Passed by without taking the request apart.
            return ResponseFuture::passed(service, request);
        }
        let (mut parts, body) = request.into_parts();
        let Some(probe) = shared.key.probe(&parts) else {
            let request = Request::from_parts(parts, body);
            return ResponseFuture::passed(service, request);
        };
        let mut map = lock_map(shared);
        let found = match map.get(&probe.hash) {
            None => None,
            Some(entry) if !shared.key.matches(entry.key(), &parts, &probe) => Some(Decision::Pass),
            Some(entry) => match entry
                .clone()
                .into_any()
                .downcast::<Slot<Upstream<S, ReqB, B>, B>>()
            {
                Err(_) => Some(Decision::Pass),
                Ok(slot) => match slot.join(shared.max_waiters) {
                    Join::Joined(waiter) => Some(Decision::Join(waiter)),
                    Join::Full => Some(Decision::OverWaiters),
                    // The call ended: this request starts the next one in its place.
                    Join::Ended => None,
                },
            },
        };
        let decision = match found {
            Some(decision) => decision,
            None if map.len() >= shared.max_keys && !map.contains_key(&probe.hash) => {
                Decision::OverKeys
            }
            None => {
                // Leads: the call goes into its slot before the map's lock is released, so
                // any waiter may poll it from the start.
                let key = shared.key.store(&parts, &probe);
                // The caller's own wait ends at its deadline; the shared call carries none
                // (it is every waiter's): polled with no current deadline, and the
                // leader's request goes without its `Deadline` extension.
                let deadline = Deadline::of_request(&parts.extensions);
                parts.extensions.remove::<Deadline>();
                let request = Request::from_parts(parts, body);
                let upstream = Box::pin(Upstream::new(service, request, shared.max_body));
                let waiter = Slot::lead(shared.clone(), probe.hash, key, upstream);
                let replaced = map.insert(probe.hash, waiter.slot().clone());
                drop(map);
                // Dropped outside the map's lock.
                drop(replaced);
                shared.reporter.report(CoalesceEventKind::Led);
                return ResponseFuture::waiting(waiter, None, deadline);
            }
        };
        drop(map);
        match decision {
            Decision::Join(waiter) => {
                shared.reporter.report(CoalesceEventKind::Joined);
                let deadline = Deadline::of_request(&parts.extensions);
                let resend = (service, Request::from_parts(parts, body));
                ResponseFuture::waiting(waiter, Some(resend), deadline)
            }
            Decision::OverKeys => {
                shared.reporter.report(CoalesceEventKind::OverKeys);
                ResponseFuture::passed(service, Request::from_parts(parts, body))
            }
            Decision::OverWaiters => {
                shared.reporter.report(CoalesceEventKind::OverWaiters);
                ResponseFuture::passed(service, Request::from_parts(parts, body))
            }
            Decision::Pass => {
                shared.reporter.report(CoalesceEventKind::Collided);
                ResponseFuture::passed(service, Request::from_parts(parts, body))
            }
        }
    }
}
