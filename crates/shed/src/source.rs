//! Where a request's criticality comes from.

use tower_bulwark_core::Criticality;

/// Finds how important a request is.
///
/// [`AllCritical`] treats every request as `Critical` (any request type). With feature
/// `http`, [`FromRequest`] reads a `Criticality` in the request's extensions, else the
/// `x-request-criticality` header (unknown or malformed values mean `Critical`, logged at
/// debug). Closures `Fn(&Req) -> Criticality` are sources too.
pub trait CriticalityOf<Req> {
    /// The request's tier.
    fn criticality(&self, request: &Req) -> Criticality;
}

/// Every request is [`Criticality::Critical`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AllCritical;

impl<Req> CriticalityOf<Req> for AllCritical {
    #[inline]
    fn criticality(&self, _request: &Req) -> Criticality {
        Criticality::Critical
    }
}

impl<Req, F> CriticalityOf<Req> for F
where
    F: Fn(&Req) -> Criticality,
{
    fn criticality(&self, request: &Req) -> Criticality {
        self(request)
    }
}

/// A `Criticality` in the request's extensions (set by a layer or the caller), else the
/// `x-request-criticality` header, else `Critical` (feature `http`).
#[cfg(feature = "http")]
#[derive(Debug, Clone, Copy, Default)]
pub struct FromRequest;

#[cfg(feature = "http")]
impl<B> CriticalityOf<http::Request<B>> for FromRequest {
    #[inline]
    fn criticality(&self, request: &http::Request<B>) -> Criticality {
        match request.extensions().get::<Criticality>() {
            Some(criticality) => *criticality,
            None => Criticality::from_headers(request.headers()),
        }
    }
}
