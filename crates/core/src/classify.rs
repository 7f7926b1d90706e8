//! Outcome classification: one decision about "did this call fail?" shared by every layer.
//!
//! Breakers, retry budgets, adaptive limits and throttles all take a [`Classify`], so a
//! given result means the same thing to each of them.

#[cfg(feature = "http")]
mod grpc;
#[cfg(feature = "http")]
mod http;

#[cfg(feature = "http")]
pub use self::grpc::GrpcClassifier;
#[cfg(feature = "http")]
pub use self::http::HttpClassifier;

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
    /// Classifies one finished call.
    fn classify(&self, result: &Result<Res, E>) -> Outcome;
}

impl<F, Res, E> Classify<Res, E> for F
where
    F: Fn(&Result<Res, E>) -> Outcome,
{
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        self(result)
    }
}

/// The default classifier: every `Ok` is a success, every `Err` a failure.
///
/// ```
/// use tower_bulwark_core::{Classify, ErrorsAreFailures, Outcome};
///
/// let ok: Result<(), &str> = Ok(());
/// let err: Result<(), &str> = Err("connection refused");
/// assert_eq!(ErrorsAreFailures.classify(&ok), Outcome::Success);
/// assert_eq!(ErrorsAreFailures.classify(&err), Outcome::Failure);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorsAreFailures;

impl<Res, E> Classify<Res, E> for ErrorsAreFailures {
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
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
