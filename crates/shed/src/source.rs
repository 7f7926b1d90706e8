//! Where a request's criticality comes from.

#[cfg(feature = "http")]
use std::sync::Arc;

use tower_bulwark_core::Criticality;
#[cfg(feature = "http")]
use tower_bulwark_core::RequestHead;

/// Finds how important a request is.
///
/// [`AllCritical`] treats every request as `Critical` (any request type). With feature
/// `http`, [`FromRequest`] reads a `Criticality` in the request's extensions, else the
/// `x-request-criticality` header, which only lowers a request unless a trust rule vouches
/// for its sender. Closures `Fn(&Req) -> Criticality` are sources too.
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

/// The criticality of an HTTP request (feature `http`), by the rule the rate limiter applies
/// too ([`Criticality::of_request`]): a `Criticality` in the request's extensions (put there
/// by server code) as is; else the `x-request-criticality` header, which may lower the
/// request below the default but raises it above only if the [`trust`](FromRequest::trust)
/// rule accepts the request; else, or if the header is malformed, the default: `Critical`,
/// or the one set with [`default_criticality`](FromRequest::default_criticality).
///
/// `FromRequest::default()` trusts no one: at an edge, a client that claims `critical-plus`
/// is served, and shed, as `critical`. Behind an edge that already vetted the header (an
/// internal hop), `.trust(|_| true)` believes every sender.
///
/// ```
/// use tower_bulwark_core::Criticality;
/// use tower_bulwark_shed::{CriticalityOf, FromRequest};
///
/// /// Put in the extensions by the server's authentication layer.
/// #[derive(Clone)]
/// struct Peer {
///     internal: bool,
/// }
///
/// let source = FromRequest::default()
///     .trust(|head| head.extensions().get::<Peer>().is_some_and(|peer| peer.internal));
/// let mut request = http::Request::get("/")
///     .header("x-request-criticality", "critical-plus")
///     .body(())
///     .unwrap();
/// assert_eq!(source.criticality(&request), Criticality::Critical, "anyone can write a header");
/// request.extensions_mut().insert(Peer { internal: true });
/// assert_eq!(source.criticality(&request), Criticality::CriticalPlus);
/// ```
#[cfg(feature = "http")]
#[derive(Clone, Default)]
pub struct FromRequest {
    default: Criticality,
    trust: Option<Arc<TrustRule>>,
}

/// A predicate on the request's head: may its sender raise its criticality?
#[cfg(feature = "http")]
type TrustRule = dyn Fn(&RequestHead<'_>) -> bool + Send + Sync;

#[cfg(feature = "http")]
impl FromRequest {
    /// The criticality of a request that carries none (and the most an untrusted header can
    /// ask for). `Critical` by default.
    pub fn default_criticality(mut self, criticality: Criticality) -> Self {
        self.default = criticality;
        self
    }

    /// Believes a header that raises the request above the default when `rule` returns
    /// `true` for the request (its peer address, an authenticated identity in its
    /// extensions, its route). Asked only for such requests. Replaces any earlier rule.
    pub fn trust<F>(mut self, rule: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> bool + Send + Sync + 'static,
    {
        self.trust = Some(Arc::new(rule));
        self
    }
}

#[cfg(feature = "http")]
impl<B> CriticalityOf<http::Request<B>> for FromRequest {
    #[inline]
    fn criticality(&self, request: &http::Request<B>) -> Criticality {
        let vouched = |head: &RequestHead<'_>| self.trust.as_ref().is_some_and(|rule| rule(head));
        Criticality::of_request(request, self.default, vouched)
    }
}

#[cfg(feature = "http")]
impl std::fmt::Debug for FromRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FromRequest")
            .field("default", &self.default)
            .field("trust", &self.trust.as_ref().map(|_| "a rule"))
            .finish()
    }
}

/// How `FromRequest` passes its default and trust rule to the rule in core, which core's
/// tests cover in full.
#[cfg(all(test, feature = "http"))]
mod tests {
    use tower_bulwark_core::CRITICALITY_HEADER;

    use super::*;

    use Criticality::{Critical, CriticalPlus, Sheddable, SheddablePlus};

    fn request(header: Option<&str>) -> http::Request<()> {
        let mut request = http::Request::get("/");
        if let Some(value) = header {
            request = request.header(CRITICALITY_HEADER, value);
        }
        request.body(()).unwrap()
    }

    /// Marks a request as sent by a trusted peer.
    #[derive(Clone)]
    struct Trusted;

    fn trusted(header: Option<&str>) -> http::Request<()> {
        let mut request = request(header);
        request.extensions_mut().insert(Trusted);
        request
    }

    fn trusting() -> FromRequest {
        FromRequest::default().trust(|head| head.extensions().get::<Trusted>().is_some())
    }

    #[test]
    fn an_untrusted_header_never_rises_above_a_lower_default() {
        let source = FromRequest::default().default_criticality(SheddablePlus);
        for (header, expected) in [
            (Some("sheddable"), Sheddable),
            (Some("sheddable-plus"), SheddablePlus),
            (Some("critical"), SheddablePlus),
            (Some("critical-plus"), SheddablePlus),
            (None, SheddablePlus),
        ] {
            assert_eq!(source.criticality(&request(header)), expected, "{header:?}");
        }
    }

    #[test]
    fn a_trusted_header_raises_and_lowers() {
        for level in Criticality::ALL {
            let header = Some(level.as_str());
            assert_eq!(trusting().criticality(&trusted(header)), level);
            let low_default = trusting().default_criticality(Sheddable);
            assert_eq!(low_default.criticality(&trusted(header)), level);
        }
        assert_eq!(trusting().criticality(&trusted(None)), Critical);
        let not_vouched = request(Some("critical-plus"));
        assert_eq!(trusting().criticality(&not_vouched), Critical);
        let everyone = FromRequest::default().trust(|_| true);
        assert_eq!(
            everyone.criticality(&request(Some("CRITICAL_PLUS"))),
            CriticalPlus
        );
    }

    #[test]
    fn clones_share_the_rule_and_debug_names_it() {
        fn shareable<T: Clone + Send + Sync + 'static>(value: &T) -> T {
            value.clone()
        }
        let source = shareable(&trusting().default_criticality(SheddablePlus));
        assert_eq!(
            source.criticality(&trusted(Some("critical-plus"))),
            CriticalPlus
        );
        assert_eq!(
            format!("{:?}", source),
            r#"FromRequest { default: SheddablePlus, trust: Some("a rule") }"#
        );
        assert_eq!(
            format!("{:?}", FromRequest::default()),
            "FromRequest { default: Critical, trust: None }"
        );
    }
}
