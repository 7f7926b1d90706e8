//! Where a request's deadline comes from.

use tower_bulwark_core::Deadline;

/// Finds the deadline of a request, so that a queued call never waits past it.
///
/// [`TaskDeadline`] (the default) reads the task's current deadline
/// ([`Deadline::current`]), which works for any request type. Closures
/// `Fn(&Req) -> Option<Deadline>` are sources too; for `http::Request`, pass
/// `|r: &http::Request<_>| Deadline::of_request(r.extensions())` to honour the deadline in
/// request extensions as well.
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
