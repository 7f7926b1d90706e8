//! Where a request's deadline comes from.

use tower_bulwark_core::Deadline;

/// Finds the deadline of a request, so that a queued call never waits past it.
///
/// [`TaskDeadline`] (the default) reads the task's current deadline
/// ([`Deadline::current`]), which works for any request type. With feature `http`,
/// [`HttpDeadline`] also reads the `Deadline` in an `http::Request`'s extensions (the
/// earlier of the two wins). Closures `Fn(&Req) -> Option<Deadline>` are sources too.
pub trait DeadlineSource<Req> {
    /// The request's deadline, if it has one.
    fn deadline(&self, request: &Req) -> Option<Deadline>;
}

/// The task's current deadline ([`Deadline::current`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct TaskDeadline;

impl<Req> DeadlineSource<Req> for TaskDeadline {
    fn deadline(&self, _request: &Req) -> Option<Deadline> {
        Deadline::current()
    }
}

impl<Req, F> DeadlineSource<Req> for F
where
    F: Fn(&Req) -> Option<Deadline>,
{
    fn deadline(&self, request: &Req) -> Option<Deadline> {
        self(request)
    }
}

/// The earlier of the `Deadline` in an `http::Request`'s extensions and the task's current
/// one (feature `http`).
///
/// ```
/// use tower_bulwark_bulkhead::{BulkheadLayer, HttpDeadline};
///
/// let layer = BulkheadLayer::builder()
///     .max_queue(10)
///     .deadline_source(HttpDeadline)
///     .build()
///     .unwrap();
/// # let _ = layer;
/// ```
#[cfg(feature = "http")]
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpDeadline;

#[cfg(feature = "http")]
impl<B> DeadlineSource<http::Request<B>> for HttpDeadline {
    fn deadline(&self, request: &http::Request<B>) -> Option<Deadline> {
        Deadline::of_request(request.extensions())
    }
}
