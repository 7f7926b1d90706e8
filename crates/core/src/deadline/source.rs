//! [`DeadlineSource`]: where a request's deadline comes from, for the layers that wait (a
//! bulkhead's queue, a client rate limiter) and must never wait past it.

use super::Deadline;

/// Finds the deadline of a request, so that a wait on its behalf never outlives it.
///
/// [`TaskDeadline`] reads the task's current deadline ([`Deadline::current`]), which works
/// for any request type. With feature `http`, [`HttpDeadline`] also reads the `Deadline` in
/// an `http::Request`'s extensions (the earlier of the two wins). Closures
/// `Fn(&Req) -> Option<Deadline>` are sources too.
///
/// ```
/// use std::time::Duration;
/// use tower_bulwark_core::{Deadline, DeadlineSource, TaskDeadline};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let deadline = Deadline::after(Duration::from_secs(1));
/// assert_eq!(TaskDeadline.deadline(&"request"), None);
/// let seen = deadline.scope(async { TaskDeadline.deadline(&"request") }).await;
/// assert_eq!(seen, Some(deadline));
///
/// // A request type that carries its own deadline.
/// struct Job {
///     due: Deadline,
/// }
/// let from_job = |job: &Job| Some(job.due);
/// assert_eq!(from_job.deadline(&Job { due: deadline }), Some(deadline));
/// # }
/// ```
pub trait DeadlineSource<Req> {
    /// The request's deadline, if it has one.
    fn deadline(&self, request: &Req) -> Option<Deadline>;
}

/// The task's current deadline ([`Deadline::current`]), whatever the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct TaskDeadline;

impl<Req> DeadlineSource<Req> for TaskDeadline {
    #[inline]
    fn deadline(&self, _request: &Req) -> Option<Deadline> {
        Deadline::current()
    }
}

impl<Req, F> DeadlineSource<Req> for F
where
    F: Fn(&Req) -> Option<Deadline>,
{
    #[inline]
    fn deadline(&self, request: &Req) -> Option<Deadline> {
        self(request)
    }
}

/// The earlier of the `Deadline` in an `http::Request`'s extensions and the task's current
/// one ([`Deadline::of_request`]; feature `http`).
///
/// ```
/// use std::time::Duration;
/// use tower_bulwark_core::{Deadline, DeadlineSource, HttpDeadline};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut request = http::Request::new(());
/// assert_eq!(HttpDeadline.deadline(&request), None);
/// let deadline = Deadline::after(Duration::from_secs(1));
/// request.extensions_mut().insert(deadline);
/// assert_eq!(HttpDeadline.deadline(&request), Some(deadline));
/// # }
/// ```
#[cfg(feature = "http")]
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpDeadline;

#[cfg(feature = "http")]
impl<B> DeadlineSource<http::Request<B>> for HttpDeadline {
    #[inline]
    fn deadline(&self, request: &http::Request<B>) -> Option<Deadline> {
        Deadline::of_request(request.extensions())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Reads the deadline through the trait, as the layers do.
    fn read<Req, D: DeadlineSource<Req>>(source: &D, request: &Req) -> Option<Deadline> {
        source.deadline(request)
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_source_reads_the_innermost_scope_and_ignores_the_request() {
        assert_eq!(read(&TaskDeadline, &()), None);
        let outer = Deadline::after(Duration::from_secs(5));
        let inner = Deadline::after(Duration::from_secs(1));
        let seen = outer
            .scope(async {
                let in_outer = read(&TaskDeadline, &42_u32);
                let in_inner = inner.scope(async { read(&TaskDeadline, &"x") }).await;
                (in_outer, in_inner)
            })
            .await;
        assert_eq!(seen, (Some(outer), Some(inner)));
        assert_eq!(read(&TaskDeadline, &()), None, "the scope ended");
    }

    #[tokio::test(start_paused = true)]
    async fn a_closure_is_a_source_and_alone_decides() {
        let own = Deadline::after(Duration::from_secs(2));
        let scoped = Deadline::after(Duration::from_secs(1));
        let by_value = |request: &u64| (*request > 0).then_some(own);
        let seen = scoped
            .scope(async { (read(&by_value, &1), read(&by_value, &0)) })
            .await;
        assert_eq!(
            seen,
            (Some(own), None),
            "the task's deadline is not mixed in"
        );
    }

    #[cfg(feature = "http")]
    #[tokio::test(start_paused = true)]
    async fn the_http_source_takes_the_earlier_of_extension_and_task() {
        let early = Deadline::after(Duration::from_secs(1));
        let late = Deadline::after(Duration::from_secs(3));
        let mut request = http::Request::new(());
        assert_eq!(read(&HttpDeadline, &request), None);
        assert_eq!(
            late.scope(async { read(&HttpDeadline, &request) }).await,
            Some(late),
            "none in the extensions: the task's"
        );
        request.extensions_mut().insert(late);
        assert_eq!(read(&HttpDeadline, &request), Some(late));
        assert_eq!(
            early.scope(async { read(&HttpDeadline, &request) }).await,
            Some(early)
        );
        request.extensions_mut().insert(early);
        assert_eq!(
            late.scope(async { read(&HttpDeadline, &request) }).await,
            Some(early)
        );
    }
}
