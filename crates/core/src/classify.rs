//! Outcome classification: one decision about "did this call fail?" shared by every layer.
//!
//! Breakers, retry budgets, adaptive limits and throttles all take a [`Classify`], so a
//! given result means the same thing to each of them. The built-in classifiers keep the
//! composition contract (`docs/composition.md`): a refusal by a bulwark layer (a
//! [`Rejection`] in the error) is [`Ignored`](Outcome::Ignored), except a layer's own attempt
//! timeout ([`RejectionKind::TimedOut`](crate::RejectionKind::TimedOut)), which is a
//! [`Failure`](Outcome::Failure); see [`RejectionKind::outcome`](crate::RejectionKind::outcome).

#[cfg(feature = "http")]
mod grpc;
#[cfg(feature = "http")]
mod http;

#[cfg(feature = "http")]
pub use self::grpc::GrpcClassifier;
#[cfg(feature = "http")]
pub use self::http::HttpClassifier;

use crate::Rejection;

/// What a finished call means for the health of the service behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The dependency did its job.
    Success,
    /// The dependency failed; this counts against it.
    Failure,
    /// Says nothing about the dependency's health (a client error, a cancelled call).
    /// Counts toward neither side.
    Ignored,
}

/// Maps the result of a call to an [`Outcome`].
///
/// Closures `Fn(&Result<Res, E>) -> Outcome` implement it, so a one-off rule needs no type:
///
/// ```
/// use tower_bulwark_core::{Classify, Outcome};
///
/// // A cache lookup: a miss (`Ok(None)`) is fine, only errors count.
/// let classify = |result: &Result<Option<u32>, std::io::Error>| match result {
///     Ok(_) => Outcome::Success,
///     Err(e) if e.kind() == std::io::ErrorKind::NotFound => Outcome::Ignored,
///     Err(_) => Outcome::Failure,
/// };
/// assert_eq!(classify.classify(&Ok(None)), Outcome::Success);
/// ```
pub trait Classify<Res, E> {
    /// Classifies one finished call: what it says about the dependency's health (what
    /// breakers count).
    fn classify(&self, result: &Result<Res, E>) -> Outcome;

    /// Classifies one finished call for the layers that control load (adaptive throttles,
    /// adaptive limits) and for fallbacks. The same as [`classify`](Classify::classify)
    /// (the default), except for a dependency that refused the call because it is
    /// overloaded (a shed marked `x-bulwark-overloaded` or `x-envoy-overloaded`, a gRPC
    /// `RESOURCE_EXHAUSTED` with pushback): `classify` calls it `Ignored` (the dependency is
    /// alive and protecting itself; opening a breaker would turn a partial shed into a total
    /// outage), this a `Failure` (the call was not served, and the load must come down).
    /// A classifier that delegates to others forwards both methods.
    fn classify_load(&self, result: &Result<Res, E>) -> Outcome {
        self.classify(result)
    }
}

impl<F, Res, E> Classify<Res, E> for F
where
    F: Fn(&Result<Res, E>) -> Outcome,
{
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        self(result)
    }
}

/// The default classifier: every `Ok` is a success, every `Err` a failure, except an error
/// carrying a [`Rejection`] (found by [`Rejection::find_in`]), which is what its kind says:
/// `Ignored` for a refusal by a bulwark layer, `Failure` for an attempt timeout.
///
/// ```
/// use tower_bulwark_core::{BoxError, Classify, ErrorsAreFailures, Outcome, Rejection, RejectionKind};
///
/// let ok: Result<(), BoxError> = Ok(());
/// let err: Result<(), BoxError> = Err("connection refused".into());
/// let full: Result<(), BoxError> = Err(Rejection::new(RejectionKind::BulkheadFull, "db").into());
/// assert_eq!(ErrorsAreFailures.classify(&ok), Outcome::Success);
/// assert_eq!(ErrorsAreFailures.classify(&err), Outcome::Failure);
/// assert_eq!(ErrorsAreFailures.classify(&full), Outcome::Ignored);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorsAreFailures;

impl<Res, E: 'static> Classify<Res, E> for ErrorsAreFailures {
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(error) => error_outcome(error),
        }
    }
}

/// The outcome of an error: its rejection's, or a failure.
fn error_outcome<E: 'static>(error: &E) -> Outcome {
    Rejection::find_in(error).map_or(Outcome::Failure, |rejection| rejection.kind().outcome())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify_with<C: Classify<u8, String>>(c: &C, r: Result<u8, String>) -> Outcome {
        c.classify(&r)
    }

    #[test]
    fn errors_are_failures() {
        assert_eq!(classify_with(&ErrorsAreFailures, Ok(1)), Outcome::Success);
        assert_eq!(
            classify_with(&ErrorsAreFailures, Err("boom".into())),
            Outcome::Failure
        );
    }

    #[test]
    fn a_refusal_by_a_bulwark_layer_is_ignored_wherever_it_is_carried() {
        use crate::{BoxError, Rejection, RejectionKind};
        let refusal = || Rejection::new(RejectionKind::BulkheadFull, "db");
        let boxed: Result<(), BoxError> = Err(refusal().into());
        assert_eq!(ErrorsAreFailures.classify(&boxed), Outcome::Ignored);
        let deep: Result<(), BoxError> = Err(Box::new(Wrapped(Box::new(refusal()))));
        assert_eq!(ErrorsAreFailures.classify(&deep), Outcome::Ignored);
        let bare: Result<(), Rejection> = Err(refusal());
        assert_eq!(ErrorsAreFailures.classify(&bare), Outcome::Ignored);
        let send_only: Result<(), Box<dyn std::error::Error + Send>> = Err(Box::new(refusal()));
        assert_eq!(ErrorsAreFailures.classify(&send_only), Outcome::Ignored);
        let plain: Result<(), Box<dyn std::error::Error>> = Err(Box::new(refusal()));
        assert_eq!(ErrorsAreFailures.classify(&plain), Outcome::Ignored);
    }

    #[test]
    fn the_own_timeout_is_a_failure_and_the_callers_deadline_is_not() {
        use crate::{BoxError, Rejection, RejectionKind};
        let of = |kind| {
            let result: Result<(), BoxError> = Err(Rejection::new(kind, "t").into());
            (
                ErrorsAreFailures.classify(&result),
                ErrorsAreFailures.classify_load(&result),
            )
        };
        assert_eq!(
            of(RejectionKind::TimedOut),
            (Outcome::Failure, Outcome::Failure)
        );
        assert_eq!(
            of(RejectionKind::DeadlineExceeded),
            (Outcome::Ignored, Outcome::Ignored)
        );
    }

    #[test]
    fn errors_without_a_refusal_stay_failures() {
        use crate::BoxError;
        let boxed: Result<(), BoxError> = Err("connection reset".into());
        assert_eq!(ErrorsAreFailures.classify(&boxed), Outcome::Failure);
        let nested: Result<(), BoxError> = Err(Box::new(Wrapped("reset".into())));
        assert_eq!(ErrorsAreFailures.classify(&nested), Outcome::Failure);
        let io: Result<(), std::io::Error> = Err(std::io::ErrorKind::TimedOut.into());
        assert_eq!(ErrorsAreFailures.classify(&io), Outcome::Failure);
        assert_eq!(
            classify_with(&ErrorsAreFailures, Err("bulkhead full".into())),
            Outcome::Failure
        );
    }

    /// Another layer's error around the real cause, as tower's `Buffer` wraps them.
    #[derive(Debug)]
    struct Wrapped(crate::BoxError);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapped")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn closures_classify() {
        let odd_is_ignored = |r: &Result<u8, String>| match r {
            Ok(n) if n % 2 == 1 => Outcome::Ignored,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        };
        assert_eq!(classify_with(&odd_is_ignored, Ok(3)), Outcome::Ignored);
        assert_eq!(classify_with(&odd_is_ignored, Ok(4)), Outcome::Success);
        assert_eq!(
            classify_with(&odd_is_ignored, Err(String::new())),
            Outcome::Failure
        );
    }
}
