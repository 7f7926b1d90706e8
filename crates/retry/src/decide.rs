//! Which results are retried.

use std::time::Duration;

use tower_bulwark_core::Deadline;

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Keep this result: it succeeded, or failing again would not help.
    Done,
    /// Retry, waiting at least `pushback` if the server asked for it.
    Retry {
        /// The server's requested wait, if any.
        pushback: Option<Duration>,
    },
}

/// Decides whether an attempt's result should be retried.
///
/// Closures `Fn(&Req, &Result<Res, E>) -> Decision` implement it. [`RetryErrors`] (every
/// `Err`) is the default; with feature `http`, `HttpRetry` and `GrpcRetry` follow the rules
/// users know from HTTP and gRPC clients.
pub trait RetryClassify<Req, Res, E> {
    /// The decision for one finished attempt of `request`.
    fn decide(&self, request: &Req, result: &Result<Res, E>) -> Decision;

    /// Prepares the copy of the request sent as attempt number `attempt` (2 for the first
    /// retry). Does nothing by default; [`HttpRetry`](crate::HttpRetry) can mark the attempt
    /// in a header.
    fn prepare_retry(&self, request: &mut Req, attempt: u32) {
        let _ = (request, attempt);
    }

    /// The deadline the request itself carries, if any. The policy also honours the task's
    /// current deadline; the earlier one wins. `None` by default;
    /// [`HttpRetry`](crate::HttpRetry) reads the `Deadline` in request extensions.
    fn request_deadline(&self, request: &Req) -> Option<Deadline> {
        let _ = request;
        None
    }
}

impl<F, Req, Res, E> RetryClassify<Req, Res, E> for F
where
    F: Fn(&Req, &Result<Res, E>) -> Decision,
{
    fn decide(&self, request: &Req, result: &Result<Res, E>) -> Decision {
        self(request, result)
    }
}

/// Retries every `Err`; keeps every `Ok`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryErrors;

impl<Req, Res, E> RetryClassify<Req, Res, E> for RetryErrors {
    fn decide(&self, _request: &Req, result: &Result<Res, E>) -> Decision {
        match result {
            Ok(_) => Decision::Done,
            Err(_) => Decision::Retry { pushback: None },
        }
    }
}

/// Leaves refusals by bulwark layers alone: a call that a breaker, bulkhead, shed or
/// deadline layer refused (its error carries a core `Rejection`) is not retried, and every
/// other result is decided by the wrapped classifier. Place the retry layer outside those
/// layers and an open breaker stops the retries at once instead of burning the budget.
///
/// ```
/// use tower_bulwark_core::{BoxError, Rejection, RejectionKind};
/// use tower_bulwark_retry::{Decision, RetryClassify, RetryErrors, SkipRejections};
///
/// let classify = SkipRejections(RetryErrors);
/// let open: Result<(), BoxError> = Err(Rejection::new(RejectionKind::CircuitOpen, "db").into());
/// let reset: Result<(), BoxError> = Err("connection reset".into());
/// assert_eq!(classify.decide(&(), &open), Decision::Done);
/// assert_ne!(classify.decide(&(), &reset), Decision::Done);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SkipRejections<C>(pub C);

impl<C, Req, Res> RetryClassify<Req, Res, tower_bulwark_core::BoxError> for SkipRejections<C>
where
    C: RetryClassify<Req, Res, tower_bulwark_core::BoxError>,
{
    fn decide(
        &self,
        request: &Req,
        result: &Result<Res, tower_bulwark_core::BoxError>,
    ) -> Decision {
        if let Err(error) = result {
            if tower_bulwark_core::find_rejection(error).is_some() {
                return Decision::Done;
            }
        }
        self.0.decide(request, result)
    }

    fn prepare_retry(&self, request: &mut Req, attempt: u32) {
        self.0.prepare_retry(request, attempt);
    }

    fn request_deadline(&self, request: &Req) -> Option<Deadline> {
        self.0.request_deadline(request)
    }
}
