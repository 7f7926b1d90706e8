//! [`Rejection`]: the common view of "a bulwark layer refused this call".

#[cfg(feature = "http")]
pub(crate) mod response;
#[cfg(feature = "http")]
mod shed;

use std::any::Any;
use std::error::Error;
use std::fmt;
use std::time::Duration;

use crate::{BoxError, GrpcCode, Name, Outcome};

#[cfg(feature = "http")]
pub use self::response::is_grpc_request;
#[cfg(feature = "http")]
pub(crate) use self::response::Protocol;
#[cfg(feature = "http")]
pub(crate) use self::shed::is_shed_response;
#[cfg(feature = "http")]
pub use self::shed::{is_shed_for_overload, ENVOY_OVERLOADED_HEADER, OVERLOADED_HEADER};

/// Why a layer refused a call. Decides the HTTP status and gRPC code it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// A circuit breaker is open: the dependency is failing. HTTP 503, gRPC `UNAVAILABLE`.
    CircuitOpen,
    /// A bulkhead has no free place, or the wait for one timed out. HTTP 503, gRPC
    /// `RESOURCE_EXHAUSTED`.
    BulkheadFull,
    /// The service is overloaded and shed the call. HTTP 503, gRPC `RESOURCE_EXHAUSTED`.
    Overloaded,
    /// The caller is sending too much: client-side throttling or a rate limit. HTTP 429, gRPC
    /// `RESOURCE_EXHAUSTED`.
    Throttled,
    /// The caller's deadline passed, or too little of it is left to be useful. HTTP 504,
    /// gRPC `DEADLINE_EXCEEDED`.
    DeadlineExceeded,
    /// A layer's own attempt timeout ran out before the dependency answered: the dependency
    /// was too slow, while the caller still had time. HTTP 504, gRPC `DEADLINE_EXCEEDED`
    /// (no overload marker).
    TimedOut,
    /// The request is malformed in a way a layer was told to refuse (such as a garbled
    /// deadline header under strict parsing). HTTP 400, gRPC `INVALID_ARGUMENT`.
    InvalidRequest,
    /// The server is shutting down and takes no new work: try another instance. HTTP 503
    /// with `Connection: close`, gRPC `UNAVAILABLE`.
    Draining,
}

impl RejectionKind {
    /// The gRPC status code a rejection of this kind is reported as.
    pub fn grpc_code(self) -> GrpcCode {
        match self {
            RejectionKind::CircuitOpen | RejectionKind::Draining => GrpcCode::Unavailable,
            RejectionKind::BulkheadFull | RejectionKind::Overloaded | RejectionKind::Throttled => {
                GrpcCode::ResourceExhausted
            }
            RejectionKind::DeadlineExceeded | RejectionKind::TimedOut => GrpcCode::DeadlineExceeded,
            RejectionKind::InvalidRequest => GrpcCode::InvalidArgument,
        }
    }

    /// The HTTP status a rejection of this kind is reported as.
    #[cfg(feature = "http")]
    pub fn http_status(self) -> http::StatusCode {
        match self {
            RejectionKind::CircuitOpen
            | RejectionKind::BulkheadFull
            | RejectionKind::Overloaded
            | RejectionKind::Draining => http::StatusCode::SERVICE_UNAVAILABLE,
            RejectionKind::Throttled => http::StatusCode::TOO_MANY_REQUESTS,
            RejectionKind::DeadlineExceeded | RejectionKind::TimedOut => {
                http::StatusCode::GATEWAY_TIMEOUT
            }
            RejectionKind::InvalidRequest => http::StatusCode::BAD_REQUEST,
        }
    }

    /// What a result carrying this rejection says about the dependency, for every
    /// classifier (breakers, adaptive limits, throttles, fallbacks): [`TimedOut`] is the
    /// dependency being too slow, a [`Failure`](Outcome::Failure); every other kind is a
    /// refusal made on this side that says nothing about it ([`Ignored`](Outcome::Ignored)).
    /// Counting a full bulkhead as a failure would let five local refusals open the breaker
    /// in front of a healthy dependency.
    ///
    /// ```
    /// use tower_bulwark_core::{Outcome, RejectionKind};
    ///
    /// assert_eq!(RejectionKind::TimedOut.outcome(), Outcome::Failure);
    /// assert_eq!(RejectionKind::BulkheadFull.outcome(), Outcome::Ignored);
    /// assert_eq!(RejectionKind::DeadlineExceeded.outcome(), Outcome::Ignored);
    /// ```
    ///
    /// [`TimedOut`]: RejectionKind::TimedOut
    pub fn outcome(self) -> Outcome {
        match self {
            RejectionKind::TimedOut => Outcome::Failure,
            _ => Outcome::Ignored,
        }
    }

    /// Whether a call refused with this kind is worth another attempt, for every retry
    /// classifier: only [`TimedOut`] (the next attempt may be faster, and the retry policy
    /// still holds it to its budget and the caller's deadline). A local refusal would be
    /// refused again, and a passed deadline leaves no time for one.
    ///
    /// ```
    /// use tower_bulwark_core::RejectionKind;
    ///
    /// assert!(RejectionKind::TimedOut.is_retryable());
    /// assert!(!RejectionKind::CircuitOpen.is_retryable());
    /// assert!(!RejectionKind::DeadlineExceeded.is_retryable());
    /// ```
    ///
    /// [`TimedOut`]: RejectionKind::TimedOut
    pub fn is_retryable(self) -> bool {
        self == RejectionKind::TimedOut
    }

    /// Whether the server refused the call because it is out of capacity ([`Overloaded`],
    /// [`BulkheadFull`]). Responses for these kinds carry the
    /// [`OVERLOADED_HEADER`](crate::OVERLOADED_HEADER) marker, so retry layers upstream do
    /// not amplify the overload.
    ///
    /// [`Overloaded`]: RejectionKind::Overloaded
    /// [`BulkheadFull`]: RejectionKind::BulkheadFull
    pub fn is_shed(self) -> bool {
        matches!(
            self,
            RejectionKind::Overloaded | RejectionKind::BulkheadFull
        )
    }

    fn as_str(self) -> &'static str {
        match self {
            RejectionKind::CircuitOpen => "circuit open",
            RejectionKind::BulkheadFull => "bulkhead full",
            RejectionKind::Overloaded => "overloaded",
            RejectionKind::Throttled => "throttled",
            RejectionKind::DeadlineExceeded => "deadline exceeded",
            RejectionKind::TimedOut => "timed out",
            RejectionKind::InvalidRequest => "invalid request",
            RejectionKind::Draining => "draining",
        }
    }
}

impl fmt::Display for RejectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bulwark layer refused the call without (or before) letting it reach the inner service.
///
/// Every refusing layer of tower-bulwark reports a `Rejection`: either its error *is* one,
/// or its error type (such as a breaker's `CircuitOpen`) carries one and returns it from
/// [`Error::source`]. Either way [`find_rejection`] finds it in a [`BoxError`], however many
/// layers of wrapping lie on top, and [`HandleRejectionsLayer`](crate::HandleRejectionsLayer)
/// turns it into an HTTP or gRPC response.
///
/// ```
/// use std::time::Duration;
/// use tower_bulwark_core::{find_rejection, BoxError, Rejection, RejectionKind};
///
/// let err: BoxError = Rejection::new(RejectionKind::CircuitOpen, "payments")
///     .with_retry_after(Duration::from_secs(5))
///     .into();
///
/// let rejection = find_rejection(&err).expect("a rejection");
/// assert_eq!(rejection.kind(), RejectionKind::CircuitOpen);
/// assert_eq!(rejection.layer(), "payments");
/// assert_eq!(rejection.retry_after(), Some(Duration::from_secs(5)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    kind: RejectionKind,
    layer: Name,
    retry_after: Option<Duration>,
    reason: Option<&'static str>,
}

impl Rejection {
    /// A rejection of `kind` by the layer instance named `layer`.
    pub fn new(kind: RejectionKind, layer: impl Into<Name>) -> Self {
        Rejection {
            kind,
            layer: layer.into(),
            retry_after: None,
            reason: None,
        }
    }

    /// Tells the caller when trying again makes sense (sent as `Retry-After` /
    /// `grpc-retry-pushback-ms`).
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Adds a short, fixed detail (`"queue full"`, `"wait timed out"`).
    pub fn with_reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }

    /// Why the call was refused.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The name of the layer instance that refused it.
    pub fn layer(&self) -> &Name {
        &self.layer
    }

    /// When the caller may try again, if the layer knows.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The layer's detail, if it gave one.
    pub fn reason(&self) -> Option<&'static str> {
        self.reason
    }

    /// Finds a rejection in an error or anywhere in its [`source`](Error::source) chain
    /// (its first 64 errors: real chains are a few deep, and the bound keeps an error that
    /// is its own source from hanging every classifier above it).
    ///
    /// The same as [`find_rejection`], for errors that are not a [`BoxError`].
    pub fn find<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a Rejection> {
        let mut next = Some(error);
        for _ in 0..MAX_SOURCES {
            let error = next?;
            if let Some(rejection) = error.downcast_ref::<Rejection>() {
                return Some(rejection);
            }
            if let Some(rejection) = tower_equivalent(error) {
                return Some(rejection);
            }
            next = error.source();
        }
        None
    }

    /// Finds a rejection in an error of any type: a [`BoxError`] (what every bulwark layer
    /// returns) or another boxed `dyn Error`, searched through its
    /// [`source`](Error::source) chain, or a `Rejection` itself. Other types carry none. This
    /// is how classifiers that are generic over the error type see refusals; for types
    /// other than those it costs nothing (the type checks are resolved at compile time).
    ///
    /// ```
    /// use tower_bulwark_core::{BoxError, Rejection, RejectionKind};
    ///
    /// let refused: BoxError = Rejection::new(RejectionKind::Overloaded, "shed").into();
    /// assert_eq!(Rejection::find_in(&refused).unwrap().kind(), RejectionKind::Overloaded);
    /// assert!(Rejection::find_in(&std::io::Error::other("reset")).is_none());
    /// ```
    pub fn find_in<E: 'static>(error: &E) -> Option<&Rejection> {
        as_error(error).and_then(Rejection::find)
    }
}

/// An error of any type as a `dyn Error`, if it is one of the types
/// [`Rejection::find_in`] searches.
pub(crate) fn as_error<E: 'static>(error: &E) -> Option<&(dyn Error + 'static)> {
    let error: &dyn Any = error;
    if let Some(error) = error.downcast_ref::<BoxError>() {
        Some(&**error)
    } else if let Some(error) = error.downcast_ref::<Box<dyn Error + Send>>() {
        Some(&**error)
    } else if let Some(error) = error.downcast_ref::<Box<dyn Error>>() {
        Some(&**error)
    } else {
        error.downcast_ref::<Rejection>().map(|r| r as _)
    }
}

/// How many errors of a `source()` chain [`Rejection::find`] (and every other search of a
/// chain in this crate) reads.
pub(crate) const MAX_SOURCES: usize = 64;

/// tower's own refusals read as ours (feature `http`): `LoadShed`'s `Overloaded` is a shed
/// (layer `tower-load-shed`), `Timeout`'s `Elapsed` an attempt timeout (`tower-timeout`), so
/// a breaker over tower's `LoadShed` ignores its refusals, as it ignores a full bulkhead.
#[cfg(feature = "http")]
fn tower_equivalent(error: &(dyn Error + 'static)) -> Option<&'static Rejection> {
    const fn fixed(kind: RejectionKind, layer: &'static str) -> Rejection {
        Rejection {
            kind,
            layer: Name::new_static(layer),
            retry_after: None,
            reason: None,
        }
    }
    static SHED: Rejection = fixed(RejectionKind::Overloaded, "tower-load-shed");
    static ELAPSED: Rejection = fixed(RejectionKind::TimedOut, "tower-timeout");
    if error.is::<tower::load_shed::error::Overloaded>() {
        Some(&SHED)
    } else if error.is::<tower::timeout::error::Elapsed>() {
        Some(&ELAPSED)
    } else {
        None
    }
}

#[cfg(not(feature = "http"))]
fn tower_equivalent(_: &(dyn Error + 'static)) -> Option<&'static Rejection> {
    None
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(reason) = self.reason {
            write!(f, " ({reason})")?;
        }
        write!(f, ", rejected by `{}`", self.layer)?;
        if let Some(retry_after) = self.retry_after {
            write!(f, "; retry after {retry_after:?}")?;
        }
        Ok(())
    }
}

impl Error for Rejection {}

/// Finds the [`Rejection`] in a boxed error, walking its [`source`](Error::source) chain.
///
/// `None` means no bulwark layer refused the call (nor tower's `LoadShed` or `Timeout`,
/// which read as a shed and an attempt timeout with feature `http`): the error came from
/// the inner service or the transport.
///
/// ```
/// use tower_bulwark_core::{find_rejection, BoxError};
///
/// let err: BoxError = "connection refused".into();
/// assert!(find_rejection(&err).is_none());
/// ```
pub fn find_rejection(error: &BoxError) -> Option<&Rejection> {
    Rejection::find(&**error)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error of another layer that wraps the rejection, the way a pattern crate's own
    /// error type does.
    #[derive(Debug)]
    struct Wrapper(Rejection);

    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }

    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[derive(Debug)]
    struct Outer(BoxError);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("outer")
        }
    }

    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn found_at_the_top_and_deep_in_the_source_chain() {
        let rejection = Rejection::new(RejectionKind::Overloaded, "shed");
        let top: BoxError = rejection.clone().into();
        assert_eq!(find_rejection(&top), Some(&rejection));

        let deep: BoxError = Box::new(Outer(Box::new(Outer(Box::new(Wrapper(rejection.clone()))))));
        assert_eq!(find_rejection(&deep), Some(&rejection));
    }

    #[test]
    fn other_errors_have_none() {
        let plain: BoxError = "boom".into();
        assert_eq!(find_rejection(&plain), None);
        let nested: BoxError = Box::new(Outer("boom".into()));
        assert_eq!(find_rejection(&nested), None);
    }

    #[test]
    fn display_names_kind_reason_layer_and_wait() {
        let rejection = Rejection::new(RejectionKind::BulkheadFull, String::from("inventory"))
            .with_reason("queue full")
            .with_retry_after(Duration::from_millis(1500));
        assert_eq!(
            rejection.to_string(),
            "bulkhead full (queue full), rejected by `inventory`; retry after 1.5s"
        );
        assert_eq!(
            Rejection::new(RejectionKind::DeadlineExceeded, "edge").to_string(),
            "deadline exceeded, rejected by `edge`"
        );
    }

    #[test]
    fn only_capacity_refusals_are_sheds() {
        use RejectionKind::*;
        assert!(Overloaded.is_shed());
        assert!(BulkheadFull.is_shed());
        for kind in [
            CircuitOpen,
            Throttled,
            DeadlineExceeded,
            TimedOut,
            InvalidRequest,
            Draining,
        ] {
            assert!(!kind.is_shed(), "{kind:?}");
        }
    }

    const KINDS: [RejectionKind; 8] = [
        RejectionKind::CircuitOpen,
        RejectionKind::BulkheadFull,
        RejectionKind::Overloaded,
        RejectionKind::Throttled,
        RejectionKind::DeadlineExceeded,
        RejectionKind::TimedOut,
        RejectionKind::InvalidRequest,
        RejectionKind::Draining,
    ];

    #[test]
    fn only_the_own_timeout_is_a_failure_and_retryable() {
        for kind in KINDS {
            let timed_out = kind == RejectionKind::TimedOut;
            let outcome = if timed_out {
                Outcome::Failure
            } else {
                Outcome::Ignored
            };
            assert_eq!(kind.outcome(), outcome, "{kind:?}");
            assert_eq!(kind.is_retryable(), timed_out, "{kind:?}");
        }
        assert!(!RejectionKind::TimedOut.is_shed());
        assert_eq!(RejectionKind::TimedOut.to_string(), "timed out");
    }

    #[test]
    fn found_in_boxed_errors_of_any_kind_and_in_itself() {
        let rejection = Rejection::new(RejectionKind::TimedOut, "timeout");
        let boxed: BoxError = Box::new(Outer(Box::new(Wrapper(rejection.clone()))));
        assert_eq!(Rejection::find_in(&boxed), Some(&rejection));
        let send: Box<dyn Error + Send> = Box::new(Wrapper(rejection.clone()));
        assert_eq!(Rejection::find_in(&send), Some(&rejection));
        let local: Box<dyn Error> = Box::new(rejection.clone());
        assert_eq!(Rejection::find_in(&local), Some(&rejection));
        assert_eq!(Rejection::find_in(&rejection), Some(&rejection));
        let plain: BoxError = "boom".into();
        assert_eq!(Rejection::find_in(&plain), None);
        assert_eq!(Rejection::find_in(&"bulkhead full"), None);
        assert_eq!(Rejection::find_in(&()), None);
    }

    /// An error whose `source()` is itself: a buggy error type, but one that must not hang
    /// the classifier of every layer above it. It counts how often it was asked.
    #[derive(Debug, Default)]
    struct Cyclic(std::sync::atomic::AtomicUsize);

    impl fmt::Display for Cyclic {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("cyclic")
        }
    }

    impl Error for Cyclic {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            let asked = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            assert!(asked < 100_000, "the source chain was walked for ever");
            Some(self)
        }
    }

    #[test]
    fn a_cyclic_source_chain_is_searched_a_bounded_number_of_steps() {
        let cyclic: BoxError = Box::<Cyclic>::default();
        assert_eq!(find_rejection(&cyclic), None);
        assert_eq!(Rejection::find_in(&cyclic), None);
        assert_eq!(
            crate::Classify::classify(&crate::ErrorsAreFailures, &Err::<(), _>(cyclic)),
            Outcome::Failure
        );
        // A rejection within the bound is still found.
        let mut deep: BoxError = Box::new(Rejection::new(RejectionKind::BulkheadFull, "db"));
        for _ in 0..30 {
            deep = Box::new(Outer(deep));
        }
        assert_eq!(
            find_rejection(&deep).map(Rejection::kind),
            Some(RejectionKind::BulkheadFull)
        );
    }

    /// tower's own `LoadShed` and `Timeout` refuse and cut calls as ours do; classifiers,
    /// retries and fallbacks must read them the same way `HandleRejectionsLayer` answers
    /// them: a shed is a local refusal (ignored, not retried), an elapsed timeout the
    /// dependency being slow (a failure, retried).
    #[cfg(feature = "http")]
    #[test]
    fn towers_own_shed_and_timeout_read_as_ours() {
        use crate::{Classify, ErrorsAreFailures};
        let shed: BoxError = Box::new(tower::load_shed::error::Overloaded::new());
        let found = find_rejection(&shed).expect("tower's shed is a refusal");
        assert_eq!(found.kind(), RejectionKind::Overloaded);
        assert_eq!(found.layer(), "tower-load-shed");
        assert_eq!(
            ErrorsAreFailures.classify(&Err::<(), _>(shed)),
            Outcome::Ignored
        );
        let wrapped: BoxError =
            Box::new(Outer(Box::new(tower::load_shed::error::Overloaded::new())));
        assert_eq!(
            Rejection::find_in(&wrapped).map(Rejection::kind),
            Some(RejectionKind::Overloaded)
        );

        let elapsed: BoxError = Box::new(tower::timeout::error::Elapsed::new());
        let found = find_rejection(&elapsed).expect("tower's timeout is an attempt timeout");
        assert_eq!(found.kind(), RejectionKind::TimedOut);
        assert_eq!(found.layer(), "tower-timeout");
        assert_eq!(
            ErrorsAreFailures.classify(&Err::<(), _>(elapsed)),
            Outcome::Failure
        );
    }

    #[test]
    fn grpc_codes_by_kind() {
        use RejectionKind::*;
        assert_eq!(CircuitOpen.grpc_code(), GrpcCode::Unavailable);
        assert_eq!(BulkheadFull.grpc_code(), GrpcCode::ResourceExhausted);
        assert_eq!(Overloaded.grpc_code(), GrpcCode::ResourceExhausted);
        assert_eq!(Throttled.grpc_code(), GrpcCode::ResourceExhausted);
        assert_eq!(DeadlineExceeded.grpc_code(), GrpcCode::DeadlineExceeded);
        assert_eq!(TimedOut.grpc_code(), GrpcCode::DeadlineExceeded);
        assert_eq!(InvalidRequest.grpc_code(), GrpcCode::InvalidArgument);
    }
}
