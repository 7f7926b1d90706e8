//! [`ResponseFuture`]: the inner call, run inside its deadline and dropped when it passes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project::pin_project;
use tokio::time::{Instant, Sleep};
use tower_bulwark_core::{
    find_rejection, polled_after_completion, BoxError, Deadline, DeadlineScope, Rejection,
    RejectionKind,
};

use crate::events::Reporter;
use crate::latency::LatencyRecord;

/// Response future of the deadline layers.
///
/// Runs the inner future with the deadline as the task's current one. If the deadline
/// passes first, the inner future is dropped at once (its work stops) and the call fails
/// with a [`Rejection`]: `TimedOut` when the bound was a timeout layer's own, otherwise
/// `DeadlineExceeded` (the caller's deadline). A layer inside that ends the call when a
/// timeout layer's own bound passes (it saw the bound as its caller's deadline) is that
/// timeout: `TimedOut`. A call refused before it started fails with `DeadlineExceeded`
/// without an inner future.
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    kind: Kind<F>,
}

// The bounded variant is the one most calls take; boxing it to even the sizes out would
// allocate on every call.
#[allow(clippy::large_enum_variant)]
#[pin_project(project = KindProjection)]
#[derive(Debug)]
enum Kind<F> {
    /// No deadline applies: the inner future as it is.
    Unbounded {
        #[pin]
        future: F,
    },
    Bounded {
        #[pin]
        future: DeadlineScope<F>,
        /// When it passes; the timer is only made if the inner future has to wait, so a
        /// call answered at once never touches the timer wheel.
        deadline: Deadline,
        #[pin]
        expiry: Option<Sleep>,
        /// The layer's name, and its listeners told of a cut-off.
        layer: Reporter,
        /// What expiry is reported as: `TimedOut` ("timed out") for a layer's own timeout,
        /// `DeadlineExceeded` ("deadline passed") for the caller's deadline.
        kind: RejectionKind,
        reason: &'static str,
        /// Where successful latencies are recorded, when a layer learns from them.
        latencies: Option<(Arc<LatencyRecord>, Instant)>,
        /// Whether a call cut off at expiry is recorded too (as long as it ran): only when
        /// the expiry is the layer's own timeout, not a caller's shorter deadline.
        record_cutoffs: bool,
    },
    /// Refused before calling the inner service, or expired; the error is taken once.
    Done { error: Option<BoxError> },
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(crate) fn unbounded(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Unbounded { future },
        }
    }

    #[inline]
    pub(crate) fn bounded(
        future: F,
        deadline: Deadline,
        layer: Reporter,
        reason: &'static str,
    ) -> Self
    where
        F: Future,
    {
        ResponseFuture::bounded_at(future, deadline, deadline, layer, reason)
    }

    /// Runs `future` with `current` as the task's deadline, and drops it at `expiry`, the
    /// caller's deadline.
    #[inline]
    pub(crate) fn bounded_at(
        future: F,
        current: Deadline,
        expiry: Deadline,
        layer: Reporter,
        reason: &'static str,
    ) -> Self
    where
        F: Future,
    {
        ResponseFuture::expiring(
            future,
            current,
            expiry,
            layer,
            RejectionKind::DeadlineExceeded,
            reason,
        )
    }

    /// Runs `future` until `deadline`, the layer's own timeout: expiry is `TimedOut`.
    #[inline]
    pub(crate) fn timing_out(future: F, deadline: Deadline, layer: Reporter) -> Self
    where
        F: Future,
    {
        ResponseFuture::expiring(
            future,
            deadline,
            deadline,
            layer,
            RejectionKind::TimedOut,
            "timed out",
        )
    }

    #[inline]
    fn expiring(
        future: F,
        current: Deadline,
        expiry: Deadline,
        layer: Reporter,
        kind: RejectionKind,
        reason: &'static str,
    ) -> Self
    where
        F: Future,
    {
        ResponseFuture {
            kind: Kind::Bounded {
                future: current.scope(future),
                deadline: expiry,
                expiry: None,
                layer,
                kind,
                reason,
                latencies: None,
                record_cutoffs: false,
            },
        }
    }

    /// Records the latency of every call that completes in time into `record`, and with
    /// `cutoffs`, of calls cut off at expiry (as long as they ran).
    pub(crate) fn recording(
        mut self,
        record: Arc<LatencyRecord>,
        started: Instant,
        cutoffs: bool,
    ) -> Self {
        if let Kind::Bounded {
            latencies,
            record_cutoffs,
            ..
        } = &mut self.kind
        {
            *latencies = Some((record, started));
            *record_cutoffs = cutoffs;
        }
        self
    }

    /// Refused: the deadline passed before the call.
    pub(crate) fn too_late(layer: &Reporter) -> Self {
        ResponseFuture::refused(layer.refuse(
            RejectionKind::DeadlineExceeded,
            "deadline passed before the call",
        ))
    }

    pub(crate) fn refused(rejection: Rejection) -> Self {
        ResponseFuture {
            kind: Kind::Done {
                error: Some(Box::new(rejection)),
            },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        let expired = match kind.as_mut().project() {
            KindProjection::Unbounded { future } => {
                return future.poll(cx).map_err(Into::into);
            }
            KindProjection::Bounded {
                future,
                deadline,
                mut expiry,
                layer,
                kind: expired,
                reason,
                latencies,
                record_cutoffs,
            } => {
                match future.poll(cx) {
                    Poll::Ready(Ok(response)) => {
                        if let Some((record, started)) = latencies.as_ref() {
                            record.record(started.elapsed());
                        }
                        return Poll::Ready(Ok(response));
                    }
                    Poll::Ready(Err(error)) => {
                        let error = error.into();
                        if !cut_inside_by_own_timeout(*expired, *deadline, &error) {
                            return Poll::Ready(Err(error));
                        }
                    }
                    Poll::Pending => {
                        if expiry.is_none() {
                            expiry.set(Some(tokio::time::sleep_until(deadline.instant())));
                        }
                        if let Some(expiry) = expiry.as_pin_mut() {
                            ready!(expiry.poll(cx));
                        }
                    }
                }
                let rejection = layer.cut_off(*expired, reason);
                if let (Some((record, started)), true) = (latencies.as_ref(), *record_cutoffs) {
                    // A call cut off by the layer's own timeout counts as long as it ran, so
                    // the record follows latency up instead of seeing only the fast calls.
                    record.record(started.elapsed());
                }
                rejection
            }
            KindProjection::Done { error } => {
                return Poll::Ready(Err(error.take().unwrap_or_else(polled_after_completion)));
            }
        };
        // Drop the inner future now: the work stops when the deadline passes.
        kind.set(Kind::Done { error: None });
        Poll::Ready(Err(Box::new(expired)))
    }
}

/// Whether `error`, from inside a layer whose own timeout ends at `deadline`, is that
/// timeout: a layer inside (another timeout, deadline propagation) sees the bound as the
/// caller's deadline and reports `DeadlineExceeded` when it passes, at the same instant and
/// polled first. Reported as it is, an attempt timeout would be neither counted by breakers
/// nor retried.
fn cut_inside_by_own_timeout(kind: RejectionKind, deadline: Deadline, error: &BoxError) -> bool {
    kind == RejectionKind::TimedOut
        && Instant::now() >= deadline.instant()
        && find_rejection(error).is_some_and(|r| r.kind() == RejectionKind::DeadlineExceeded)
}
