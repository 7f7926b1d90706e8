//! The key of a request in the last-good cache.

use http::header::HOST;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Method, Request};

/// The key of a request for the last-good cache. Closures `Fn(&Req) -> K` are keys;
/// [`DefaultKey`] is the default.
pub trait KeyOf<Req> {
    /// The key's type.
    type Key;
    /// The request's key.
    fn key(&self, request: &Req) -> Self::Key;
}

impl<Req, K, F: Fn(&Req) -> K> KeyOf<Req> for F {
    type Key = K;
    fn key(&self, request: &Req) -> K {
        self(request)
    }
}

/// The default key: a request's [`RequestKey`] (method, authority, path and query).
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultKey;

impl<T> KeyOf<Request<T>> for DefaultKey {
    type Key = RequestKey;
    fn key(&self, request: &Request<T>) -> RequestKey {
        RequestKey::of(request)
    }
}

/// A request's method, authority, path and query: what identifies the resource it asks for
/// (RFC 9111 §2 keys a cache by method and target URI). The authority is the URI's, as a
/// client's requests and HTTP/2 requests carry it, else the `Host` header, as an HTTP/1.1
/// server sees `GET /` (so two hosts served by one server never share an answer). For
/// gRPC the path is the method (`/package.Service/Method`).
///
/// The query is part of it: `/search?q=shoes` and `/search?q=hats` are different answers,
/// and serving one for the other is worse than failing. Headers and the body are not: a
/// response that depends on them must say so (`Vary`, `Cache-Control: private`) or be
/// given a key that holds them ([`FallbackBuilder::key`](crate::FallbackBuilder::key)).
///
/// Making one clones the method, authority (or `Host`) and path (reference counts, no
/// copy of the text for a request parsed from shared bytes, as hyper's are).
///
/// ```
/// use tower_bulwark_fallback::RequestKey;
///
/// let request = http::Request::get("http://shop.example/search?q=hats").body(()).unwrap();
/// let key = RequestKey::of(&request);
/// assert_eq!(key.method(), http::Method::GET);
/// assert_eq!(key.authority().map(|a| a.as_str()), Some("shop.example"));
/// assert_eq!(key.path(), "/search");
/// assert_eq!(key.query(), Some("q=hats"));
///
/// // Origin form, as an HTTP/1.1 server sees it: the host is the `Host` header.
/// let request = http::Request::get("/").header("host", "a.example").body(()).unwrap();
/// assert_eq!(RequestKey::of(&request).host().unwrap(), "a.example");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestKey {
    method: Method,
    authority: Option<Authority>,
    /// The `Host` header, only when the URI has no authority.
    host: Option<HeaderValue>,
    path_and_query: Option<PathAndQuery>,
}

impl RequestKey {
    /// The key of `request`.
    pub fn of<T>(request: &Request<T>) -> Self {
        let uri = request.uri();
        let authority = uri.authority().cloned();
        let host = match authority {
            Some(_) => None,
            None => request.headers().get(HOST).cloned(),
        };
        RequestKey {
            method: request.method().clone(),
            authority,
            host,
            path_and_query: uri.path_and_query().cloned(),
        }
    }

    /// The request's method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The request's authority, if its URI had one.
    pub fn authority(&self) -> Option<&Authority> {
        self.authority.as_ref()
    }

    /// The request's `Host` header, when its URI had no authority.
    pub fn host(&self) -> Option<&HeaderValue> {
        self.host.as_ref()
    }

    /// The request's path (empty for a URI without one, such as `CONNECT`'s).
    pub fn path(&self) -> &str {
        self.path_and_query.as_ref().map_or("", PathAndQuery::path)
    }

    /// The request's query, if it had one.
    pub fn query(&self) -> Option<&str> {
        self.path_and_query.as_ref()?.query()
    }
}
