//! Which results are retried.

use std::time::Duration;

use tower_bulwark_core::{Deadline, Rejection};

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

/// Retries every `Err` but refusals by bulwark layers; keeps every `Ok`.
///
/// An error carrying a core [`Rejection`] (found by [`Rejection::find_in`]) is retried only
/// if its kind [is retryable](tower_bulwark_core::RejectionKind::is_retryable): an attempt
/// timeout is, an open breaker, a full bulkhead, a shed or a passed deadline are not (they
/// would refuse again, or no time is left).
///
/// ```
/// use tower_bulwark_core::{BoxError, Rejection, RejectionKind};
/// use tower_bulwark_retry::{Decision, RetryClassify, RetryErrors};
///
/// let open: Result<(), BoxError> = Err(Rejection::new(RejectionKind::CircuitOpen, "db").into());
/// let slow: Result<(), BoxError> = Err(Rejection::new(RejectionKind::TimedOut, "db").into());
/// assert_eq!(RetryErrors.decide(&(), &open), Decision::Done);
/// assert_eq!(RetryErrors.decide(&(), &slow), Decision::Retry { pushback: None });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryErrors;

impl<Req, Res, E: 'static> RetryClassify<Req, Res, E> for RetryErrors {
    fn decide(&self, _request: &Req, result: &Result<Res, E>) -> Decision {
        match result {
            Ok(_) => Decision::Done,
            Err(error) => retry_error(error),
        }
    }
}

/// The decision for an `Err`: retried, unless it carries a rejection that is not
/// retryable.
pub(crate) fn retry_error<E: 'static>(error: &E) -> Decision {
    match Rejection::find_in(error) {
        Some(rejection) if !rejection.kind().is_retryable() => Decision::Done,
        _ => Decision::Retry { pushback: None },
    }
}

/// Leaves refusals by bulwark layers alone, whatever the wrapped classifier says: a call
/// that a breaker, bulkhead, shed or deadline layer refused (its error carries a core
/// `Rejection` whose kind is not [retryable](tower_bulwark_core::RejectionKind::is_retryable))
/// is not retried, and every other result, an attempt timeout included, is decided by the
/// wrapped classifier. The built-in classifiers ([`RetryErrors`], `HttpRetry`, `GrpcRetry`)
/// already do this; the wrapper is kept for user-written classifiers. Place the retry
/// layer outside those layers and an open breaker stops the retries at once instead of
/// burning the budget.
///
/// ```
/// use tower_bulwark_core::{BoxError, Rejection, RejectionKind};
/// use tower_bulwark_retry::{Decision, RetryClassify, SkipRejections};
///
/// // A user-written rule that retries every error.
/// let classify = SkipRejections(|_: &(), result: &Result<(), BoxError>| match result {
///     Ok(_) => Decision::Done,
///     Err(_) => Decision::Retry { pushback: None },
/// });
/// let open: Result<(), BoxError> = Err(Rejection::new(RejectionKind::CircuitOpen, "db").into());
/// let slow: Result<(), BoxError> = Err(Rejection::new(RejectionKind::TimedOut, "db").into());
/// let reset: Result<(), BoxError> = Err("connection reset".into());
/// assert_eq!(classify.decide(&(), &open), Decision::Done);
/// assert_ne!(classify.decide(&(), &slow), Decision::Done);
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
            if retry_error(error) == Decision::Done {
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

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;
    use tower_bulwark_core::{BoxError, Rejection, RejectionKind};

    fn refused(kind: RejectionKind) -> Result<(), BoxError> {
        Err(Rejection::new(kind, "below").into())
    }

    #[test]
    fn refusals_are_not_retried() {
        for kind in [
            RejectionKind::CircuitOpen,
            RejectionKind::BulkheadFull,
            RejectionKind::Overloaded,
            RejectionKind::Throttled,
            RejectionKind::DeadlineExceeded,
            RejectionKind::InvalidRequest,
            RejectionKind::Draining,
        ] {
            assert_eq!(
                RetryErrors.decide(&(), &refused(kind)),
                Decision::Done,
                "{kind:?}"
            );
            assert_eq!(
                SkipRejections(RetryErrors).decide(&(), &refused(kind)),
                Decision::Done,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn the_attempt_timeout_is_retried_even_through_skip_rejections() {
        let slow = refused(RejectionKind::TimedOut);
        let retry = Decision::Retry { pushback: None };
        assert_eq!(RetryErrors.decide(&(), &slow), retry);
        assert_eq!(SkipRejections(RetryErrors).decide(&(), &slow), retry);
        // A user rule that keeps it has the last word.
        let never = |_: &(), _: &Result<(), BoxError>| Decision::Done;
        assert_eq!(SkipRejections(never).decide(&(), &slow), Decision::Done);
    }

    /// A user classifier that numbers its retries and reads a deadline off the request.
    #[derive(Clone, Copy)]
    struct Numbered(Deadline);

    impl RetryClassify<Vec<u32>, (), BoxError> for Numbered {
        fn decide(&self, _: &Vec<u32>, _: &Result<(), BoxError>) -> Decision {
            Decision::Retry { pushback: None }
        }

        fn prepare_retry(&self, request: &mut Vec<u32>, attempt: u32) {
            request.push(attempt);
        }

        fn request_deadline(&self, _: &Vec<u32>) -> Option<Deadline> {
            Some(self.0)
        }
    }

    #[test]
    fn skip_rejections_passes_retry_preparation_and_the_deadline_through() {
        let deadline = Deadline::after(std::time::Duration::from_secs(5));
        let classify = SkipRejections(Numbered(deadline));
        let mut request = Vec::new();
        classify.prepare_retry(&mut request, 2);
        classify.prepare_retry(&mut request, 3);
        assert_eq!(request, [2, 3]);
        assert_eq!(classify.request_deadline(&request), Some(deadline));
    }

    #[test]
    fn other_errors_are_retried_and_answers_kept() {
        let reset: Result<(), BoxError> = Err("connection reset".into());
        assert_eq!(
            RetryErrors.decide(&(), &reset),
            Decision::Retry { pushback: None }
        );
        assert_eq!(
            RetryErrors.decide(&(), &Err::<(), _>("busy")),
            Decision::Retry { pushback: None }
        );
        assert_eq!(
            RetryErrors.decide(&(), &Ok::<_, BoxError>(())),
            Decision::Done
        );
    }
}
