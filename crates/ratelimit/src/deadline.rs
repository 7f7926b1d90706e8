//! Where a client request's deadline comes from, so that its wait for a permit never
//! outlives it.

use tower_bulwark_core::Deadline;

/// Finds the deadline of a request. [`TaskDeadline`] (the default) reads the task's
/// current deadline, for any request type; [`HttpDeadline`] also reads the `Deadline` in
/// an `http::Request`'s extensions (the earlier wins). Closures
/// `Fn(&Req) -> Option<Deadline>` are sources too.
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

/// The earlier of the `Deadline` in an `http::Request`'s extensions and the task's
/// current one ([`Deadline::of_request`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpDeadline;

impl<B> DeadlineSource<http::Request<B>> for HttpDeadline {
    fn deadline(&self, request: &http::Request<B>) -> Option<Deadline> {
        Deadline::of_request(request.extensions())
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
