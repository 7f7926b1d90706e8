//! What a server believes of a request's criticality (feature `http`): the one rule the shed
//! layer and the rate limiter both apply, so a request gets the same tier in each.

use super::Criticality;

impl Criticality {
    /// The criticality of a request, believing only what the server can vouch for:
    ///
    /// 1. a `Criticality` in the request's extensions was put there by server code (a layer,
    ///    an authentication middleware), not by the client: it is taken as is;
    /// 2. else the `x-request-criticality` header, which any client can write: it may lower
    ///    the request below `default`, but raises it above `default` only if `trust`
    ///    returns `true` for the request (asked only then); otherwise the request gets
    ///    `default`;
    /// 3. else `default`. A malformed header means `default` too (logged at debug).
    ///
    /// `|_| false` trusts no one: at an edge, a client that claims `critical-plus` is
    /// served as `default`. The request's head is an `&http::Request<B>` or an
    /// `&http::request::Parts` ([`RequestHead`]).
    ///
    /// ```
    /// use tower_bulwark_core::Criticality;
    ///
    /// let request = http::Request::get("/")
    ///     .header("x-request-criticality", "critical-plus")
    ///     .body(())
    ///     .unwrap();
    /// let believed = |trusted: bool| {
    ///     Criticality::of_request(&request, Criticality::Critical, |_| trusted)
    /// };
    /// assert_eq!(believed(false), Criticality::Critical, "anyone can write a header");
    /// assert_eq!(believed(true), Criticality::CriticalPlus);
    /// ```
    pub fn of_request<'a>(
        head: impl Into<RequestHead<'a>>,
        default: Criticality,
        trust: impl FnOnce(&RequestHead<'a>) -> bool,
    ) -> Criticality {
        let head = head.into();
        if let Some(set_by_server) = head.extensions.get::<Criticality>() {
            return *set_by_server;
        }
        let asked = Criticality::from_headers_or(head.headers, default);
        if asked <= default || trust(&head) {
            return asked;
        }
        tracing::debug!(
            %asked,
            given = %default,
            "a criticality above the default from a sender not trusted to raise it"
        );
        default
    }
}

/// What a trust rule sees of a request ([`Criticality::of_request`]): its head, borrowed (a
/// rule cannot be generic over the body type, and copying the head would allocate).
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    method: &'a http::Method,
    uri: &'a http::Uri,
    headers: &'a http::HeaderMap,
    extensions: &'a http::Extensions,
}

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

impl<'a> From<&'a http::request::Parts> for RequestHead<'a> {
    fn from(parts: &'a http::request::Parts) -> Self {
        RequestHead {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            extensions: &parts.extensions,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use crate::CRITICALITY_HEADER;

    use super::*;

    use Criticality::{Critical, CriticalPlus, Sheddable, SheddablePlus};

    fn request(header: Option<&[u8]>) -> http::Request<()> {
        let mut request = http::Request::new(());
        if let Some(value) = header {
            let value = http::HeaderValue::from_bytes(value).unwrap();
            request.headers_mut().insert(CRITICALITY_HEADER, value);
        }
        request
    }

    /// Marks a request as sent by a trusted peer.
    #[derive(Clone)]
    struct Trusted;

    fn trusted(header: Option<&[u8]>) -> http::Request<()> {
        let mut request = request(header);
        request.extensions_mut().insert(Trusted);
        request
    }

    fn vouches(head: &RequestHead<'_>) -> bool {
        head.extensions().get::<Trusted>().is_some()
    }

    /// The rule applied to the request and to its parts, which must agree.
    fn believed(
        request: &http::Request<()>,
        default: Criticality,
        trust: impl Fn(&RequestHead<'_>) -> bool,
    ) -> Criticality {
        let of_request = Criticality::of_request(request, default, &trust);
        let (parts, ()) = request.clone().into_parts();
        assert_eq!(Criticality::of_request(&parts, default, &trust), of_request);
        of_request
    }

    #[test]
    fn an_untrusted_header_only_lowers() {
        for (header, expected) in [
            (None, Critical),
            (Some(&b"sheddable"[..]), Sheddable),
            (Some(b"sheddable-plus"), SheddablePlus),
            (Some(b"SHEDDABLE_PLUS"), SheddablePlus),
            (Some(b"critical"), Critical),
            (Some(b"critical-plus"), Critical),
        ] {
            assert_eq!(believed(&request(header), Critical, |_| false), expected);
            // A rule that does not vouch for this sender changes nothing.
            assert_eq!(believed(&request(header), Critical, vouches), expected);
        }
    }

    #[test]
    fn an_untrusted_header_never_rises_above_a_lower_default() {
        for (header, expected) in [
            (None, SheddablePlus),
            (Some(&b"sheddable"[..]), Sheddable),
            (Some(b"sheddable-plus"), SheddablePlus),
            (Some(b"critical"), SheddablePlus),
            (Some(b"critical-plus"), SheddablePlus),
        ] {
            assert_eq!(
                believed(&request(header), SheddablePlus, |_| false),
                expected
            );
        }
    }

    #[test]
    fn a_trusted_header_raises_and_lowers() {
        for level in Criticality::ALL {
            let header = Some(level.as_str().as_bytes());
            assert_eq!(believed(&trusted(header), Critical, vouches), level);
            assert_eq!(believed(&trusted(header), Sheddable, vouches), level);
        }
        assert_eq!(believed(&trusted(None), Critical, vouches), Critical);
        assert_eq!(believed(&trusted(None), Sheddable, vouches), Sheddable);
        let everyone = |_: &RequestHead<'_>| true;
        let request = request(Some(b"CRITICAL_PLUS"));
        assert_eq!(believed(&request, Critical, everyone), CriticalPlus);
    }

    #[test]
    fn a_malformed_header_means_the_default_trusted_or_not() {
        for bad in [
            &b"critical-plus-plus"[..],
            b"",
            b"\xff\xfe",
            b"urgent",
            b"garbage",
        ] {
            for default in [Critical, SheddablePlus] {
                let untrusted = request(Some(bad));
                assert_eq!(believed(&untrusted, default, |_| false), default, "{bad:?}");
                assert_eq!(believed(&untrusted, default, |_| true), default, "{bad:?}");
                assert_eq!(believed(&trusted(Some(bad)), default, vouches), default);
            }
        }
    }

    #[test]
    fn a_criticality_set_by_the_server_wins() {
        let not_asked = |_: &RequestHead<'_>| panic!("not asked: the server already decided");
        for set in Criticality::ALL {
            for header in [
                None,
                Some(&b"sheddable"[..]),
                Some(b"critical-plus"),
                Some(b"bad"),
            ] {
                let mut request = request(header);
                request.extensions_mut().insert(set);
                for default in Criticality::ALL {
                    assert_eq!(believed(&request, default, not_asked), set, "{header:?}");
                }
            }
        }
    }

    #[test]
    fn the_rule_is_asked_only_to_raise_and_sees_the_head() {
        let asked = Cell::new(0);
        let rule = |head: &RequestHead<'_>| {
            asked.set(asked.get() + 1);
            head.method() == http::Method::POST
                && head.uri().path() == "/admin"
                && head.headers().contains_key("x-mesh-identity")
        };
        for (header, expected) in [
            (None, Critical),
            (Some(&b"sheddable"[..]), Sheddable),
            (Some(b"critical"), Critical),
            (Some(b"nonsense"), Critical),
        ] {
            assert_eq!(believed(&request(header), Critical, rule), expected);
        }
        assert_eq!(asked.get(), 0);

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
        let post = admin(http::Method::POST, true);
        assert_eq!(believed(&post, Critical, rule), CriticalPlus);
        let get = admin(http::Method::GET, true);
        assert_eq!(believed(&get, Critical, rule), Critical);
        let anonymous = admin(http::Method::POST, false);
        assert_eq!(believed(&anonymous, Critical, rule), Critical);
        assert_eq!(
            asked.get(),
            6,
            "three requests, each as a request and as parts"
        );
    }
}
