//! Where a request's criticality comes from.

#[cfg(feature = "http")]
use std::sync::Arc;

use tower_bulwark_core::Criticality;

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

/// The criticality of an HTTP request (feature `http`), believing only what the server can
/// vouch for:
///
/// 1. a `Criticality` in the request's extensions was put there by server code (a layer, an
///    authentication middleware), not by the client: it is taken as is;
/// 2. else the `x-request-criticality` header, which any client can write: it may lower the
///    request below the default, but raises it above the default only if the
///    [`trust`](FromRequest::trust) rule accepts the request; otherwise the request gets
///    the default;
/// 3. else the default: `Critical`, or the one set with
///    [`default_criticality`](FromRequest::default_criticality). A malformed header means
///    the default too (logged at debug).
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
        if let Some(set_by_server) = request.extensions().get::<Criticality>() {
            return *set_by_server;
        }
        let asked = Criticality::from_headers_or(request.headers(), self.default);
        let vouched = |rule: &Arc<TrustRule>| rule(&RequestHead::from(request));
        if asked <= self.default || self.trust.as_ref().is_some_and(vouched) {
            return asked;
        }
        tracing::debug!(
            %asked,
            given = %self.default,
            "a criticality above the default from a sender not trusted to raise it"
        );
        self.default
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

/// What a [`FromRequest::trust`] rule sees of a request: its head, borrowed (a rule cannot be
/// generic over the body type, and copying the head would allocate).
#[cfg(feature = "http")]
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    method: &'a http::Method,
    uri: &'a http::Uri,
    headers: &'a http::HeaderMap,
    extensions: &'a http::Extensions,
}

#[cfg(feature = "http")]
impl<'a> RequestHead<'a> {
    /// The request's method.
    pub fn method(&self) -> &'a http::Method {
        self.method
    }

    /// The request's URI (its route).
    pub fn uri(&self) -> &'a http::Uri {
        self.uri
    }

    /// The request's headers.
    pub fn headers(&self) -> &'a http::HeaderMap {
        self.headers
    }

    /// The request's extensions: the peer address (axum's `ConnectInfo`, tonic's
    /// `TcpConnectInfo`) and whatever identity the server's layers established.
    pub fn extensions(&self) -> &'a http::Extensions {
        self.extensions
    }
}

#[cfg(feature = "http")]
impl<'a, B> From<&'a http::Request<B>> for RequestHead<'a> {
    fn from(request: &'a http::Request<B>) -> Self {
        RequestHead {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }
}

#[cfg(all(test, feature = "http"))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

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
    fn an_untrusted_header_only_lowers() {
        let source = FromRequest::default();
        for (header, expected) in [
            (Some("sheddable"), Sheddable),
            (Some("sheddable-plus"), SheddablePlus),
            (Some("critical"), Critical),
            (Some("critical-plus"), Critical),
            (None, Critical),
        ] {
            assert_eq!(source.criticality(&request(header)), expected, "{header:?}");
        }
        // A rule that does not vouch for this sender changes nothing.
        assert_eq!(
            trusting().criticality(&request(Some("critical-plus"))),
            Critical
        );
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
        let everyone = FromRequest::default().trust(|_| true);
        assert_eq!(
            everyone.criticality(&request(Some("CRITICAL_PLUS"))),
            CriticalPlus
        );
    }

    #[test]
    fn a_malformed_header_means_the_default_trusted_or_not() {
        for bad in [&b"critical-plus-plus"[..], b"", b"\xff\xfe", b"urgent"] {
            let mut untrusted = request(None);
            let value = http::HeaderValue::from_bytes(bad).unwrap();
            untrusted.headers_mut().insert(CRITICALITY_HEADER, value);
            let mut vouched = untrusted.clone();
            vouched.extensions_mut().insert(Trusted);
            for source in [FromRequest::default(), trusting()] {
                assert_eq!(source.criticality(&untrusted), Critical, "{bad:?}");
                assert_eq!(source.criticality(&vouched), Critical, "{bad:?}");
                let low = source.default_criticality(SheddablePlus);
                assert_eq!(low.criticality(&untrusted), SheddablePlus, "{bad:?}");
                assert_eq!(low.criticality(&vouched), SheddablePlus, "{bad:?}");
            }
        }
    }

    #[test]
    fn a_criticality_set_by_the_server_wins() {
        let refuse = FromRequest::default()
            .default_criticality(Sheddable)
            .trust(|_| panic!("not asked: the server already decided"));
        for set in Criticality::ALL {
            for header in [None, Some("sheddable"), Some("critical-plus"), Some("bad")] {
                let mut request = request(header);
                request.extensions_mut().insert(set);
                assert_eq!(refuse.criticality(&request), set, "{header:?}");
                assert_eq!(FromRequest::default().criticality(&request), set);
            }
        }
    }

    #[test]
    fn the_rule_is_asked_only_to_raise_and_sees_the_head() {
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        let source = FromRequest::default().trust(move |head| {
            counter.fetch_add(1, Ordering::Relaxed);
            head.method() == http::Method::POST
                && head.uri().path() == "/admin"
                && head.headers().contains_key("x-mesh-identity")
        });
        for (header, expected) in [
            (None, Critical),
            (Some("sheddable"), Sheddable),
            (Some("critical"), Critical),
            (Some("nonsense"), Critical),
        ] {
            assert_eq!(source.criticality(&request(header)), expected, "{header:?}");
        }
        assert_eq!(asked.load(Ordering::Relaxed), 0);

        let admin = |method: http::Method, identity: bool| {
            let mut request = http::Request::builder()
                .method(method)
                .uri("/admin?x=1")
                .header(CRITICALITY_HEADER, "critical-plus");
            if identity {
                request = request.header("x-mesh-identity", "billing");
            }
            request.body(()).unwrap()
        };
        assert_eq!(
            source.criticality(&admin(http::Method::POST, true)),
            CriticalPlus
        );
        assert_eq!(
            source.criticality(&admin(http::Method::GET, true)),
            Critical
        );
        assert_eq!(
            source.criticality(&admin(http::Method::POST, false)),
            Critical
        );
        assert_eq!(asked.load(Ordering::Relaxed), 3);
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
