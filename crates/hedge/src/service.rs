//! [`Hedge`]: the service of a [`HedgeLayer`](crate::HedgeLayer).

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_bulwark_core::BoxError;
use tower_service::Service;

use crate::events::NotSent;
use crate::future::{InFlight, ResponseFuture};
use crate::rules::{MayHedge, Overload};
use crate::shared::Shared;
use crate::{Idempotent, OverloadSignals};

/// The service of a [`HedgeLayer`](crate::HedgeLayer).
///
/// `poll_ready` is the inner service's. `call` sends the first attempt on the readied
/// service and, for a request that may be hedged, keeps a clone of the service and a copy
/// of the request for the hedge (the copy is the layer's one cost per call: none for a
/// request whose clone allocates nothing; a request's header map allocates when copied).
/// Each hedge readies its own clone when it is due, and is skipped if the clone is not
/// ready then. Errors are boxed: `BoxError`, as tower's `Hedge`.
pub struct Hedge<S, M = Idempotent, O = OverloadSignals> {
    inner: S,
    shared: Arc<Shared<M, O>>,
}

impl<S, M, O> Hedge<S, M, O> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<M, O>>) -> Self {
        Hedge { inner, shared }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Clone, M, O> Clone for Hedge<S, M, O> {
    fn clone(&self) -> Self {
        Hedge {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, M, O> fmt::Debug for Hedge<S, M, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge")
            .field("inner", &self.inner)
            .field("name", &self.shared.state.reporter.name)
            .finish_non_exhaustive()
    }
}

impl<S, Req, M, O> Service<Req> for Hedge<S, M, O>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError> + 'static,
    Req: Clone,
    M: MayHedge<Req>,
    O: Overload<S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, M, O>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let shared = &*self.shared;
        let state = &shared.state;
        let started = Instant::now();
        let call = InFlight::new(self.shared.clone());
        state.budget.deposit(started);
        let delay = state.delay();
        let mut deadline = None;
        let spare = if !shared.may_hedge.may_hedge(&request) {
            state.not_sent(NotSent::NotIdempotent);
            None
        } else if state.is_paused(started) {
            state.not_sent(NotSent::Paused);
            None
        } else {
            deadline = shared.may_hedge.deadline(&request);
            if deadline.is_some_and(|d| d.remaining() <= delay.saturating_add(state.margin)) {
                // The deadline would be nearer than the margin when the hedge is due.
                state.not_sent(NotSent::Deadline);
                None
            } else {
                Some((self.inner.clone(), request.clone()))
            }
        };
        let primary = self.inner.call(request);
        ResponseFuture::new(primary, spare, started, delay, deadline, call)
    }
}
