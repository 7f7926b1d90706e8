//! Built-in key functions: what a request is limited by.
//!
//! A key function reads the request's head and returns its key, or `None` for a request
//! the layer does not limit (it passes untouched, and no limiter is asked). Any
//! `Fn(&http::request::Parts) -> Option<K>` is one, for a key type
//! `K: Hash + Eq + Clone + Send + Sync + 'static`; the built-ins return keys that cost no
//! allocation to make (a copy, or a reference count). A [`LocalLimiter`] clones a key only
//! to remember it (when the key is new), and keeps the clone until it forgets the key.
//!
//! [`LocalLimiter`]: crate::LocalLimiter

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

use http::request::Parts;
use http::{HeaderName, HeaderValue};

/// One key for every request: a single limit shared by all of them.
///
/// ```
/// use tower_bulwark_ratelimit::key;
///
/// let (parts, ()) = http::Request::new(()).into_parts();
/// assert_eq!(key::global(&parts), Some(()));
/// ```
pub fn global<T: ?Sized>(_request: &T) -> Option<()> {
    Some(())
}

/// The peer's IP address: axum's `ConnectInfo<SocketAddr>` (with
/// `into_make_service_with_connect_info::<SocketAddr>()`; feature `axum`, on by default,
/// and so in the umbrella crate's `ratelimit`), else a `SocketAddr` in the request's
/// extensions (put there by your own accept loop), else `None`: the request is not
/// limited. The port is left out, since a client opens connections from many.
///
/// Built without the `axum` feature, `ConnectInfo` is not read: behind axum every
/// request would then go unlimited.
///
/// Behind a proxy every request has the proxy's address: key by the header the proxy
/// sets instead ([`header`]), after making sure only the proxy can set it.
///
/// ```
/// use std::net::{IpAddr, SocketAddr};
/// use tower_bulwark_ratelimit::key;
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(SocketAddr::from(([10, 0, 0, 7], 51234)));
/// let (parts, ()) = request.into_parts();
/// assert_eq!(key::peer_ip(&parts), Some(IpAddr::from([10, 0, 0, 7])));
/// ```
pub fn peer_ip(parts: &Parts) -> Option<IpAddr> {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(peer)) = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(peer.ip());
    }
    parts.extensions.get::<SocketAddr>().map(SocketAddr::ip)
}

/// The value of the header `name` (its first, if repeated), such as an API key; `None`
/// when the request has no such header, so it is not limited: pair it with a layer that
/// requires the header, or limit keyless requests by another layer.
///
/// Taking the key costs a reference count: hyper's header values are slices of the
/// connection's read buffer. A limiter that remembers the key keeps a [`HeaderKey`] clone,
/// which copies the bytes, so no read buffer is kept alive by a key.
///
/// ```
/// use tower_bulwark_ratelimit::key;
///
/// let by_api_key = key::header(http::HeaderName::from_static("x-api-key"));
/// let request = http::Request::get("/").header("x-api-key", "k-123").body(()).unwrap();
/// let (parts, ()) = request.into_parts();
/// assert_eq!(by_api_key(&parts).unwrap().as_bytes(), b"k-123");
/// ```
pub fn header(name: HeaderName) -> impl Fn(&Parts) -> Option<HeaderKey> + Clone + Send + Sync {
    move |parts: &Parts| parts.headers.get(&name).cloned().map(HeaderKey)
}

/// A header's value as a key ([`header`]): compared and hashed by its bytes. Made from
/// the request's value at the cost of a reference count; a clone (what a limiter stores)
/// copies the bytes, so that the key does not hold on to the buffer the value was read
/// into.
pub struct HeaderKey(HeaderValue);

impl HeaderKey {
    /// The header value's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl From<HeaderValue> for HeaderKey {
    fn from(value: HeaderValue) -> Self {
        HeaderKey(value)
    }
}

/// Copies the bytes (one allocation).
impl Clone for HeaderKey {
    fn clone(&self) -> Self {
        // The bytes were a valid value already.
        HeaderKey(HeaderValue::from_bytes(self.as_bytes()).unwrap_or_else(|_| self.0.clone()))
    }
}

impl PartialEq for HeaderKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for HeaderKey {}

impl Hash for HeaderKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl fmt::Debug for HeaderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HeaderKey").field(&self.0).finish()
    }
}

/// The route the request matched, as axum's router wrote it (`/users/{id}`; feature
/// `axum`): one limit per route, whatever the path's parameters. `None` outside an axum
/// router, or in front of it: add the layer with `Router::layer` or `Router::route_layer`,
/// which run after routing.
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub fn route(parts: &Parts) -> Option<Route> {
    parts
        .extensions
        .get::<axum::extract::MatchedPath>()
        .cloned()
        .map(Route)
}

/// A route as a key ([`route`]): axum's `MatchedPath`, compared by its text.
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
#[derive(Clone)]
pub struct Route(axum::extract::MatchedPath);

#[cfg(feature = "axum")]
impl Route {
    /// The route's text (`/users/{id}`).
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

#[cfg(feature = "axum")]
impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

#[cfg(feature = "axum")]
impl Eq for Route {}

#[cfg(feature = "axum")]
impl Hash for Route {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

#[cfg(feature = "axum")]
impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Route").field(&self.as_str()).finish()
    }
}

#[cfg(feature = "axum")]
impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The header's bytes.
#[cfg(feature = "redis")]
impl crate::RedisKey for HeaderValue {
    fn write_bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

/// The header's bytes.
#[cfg(feature = "redis")]
impl crate::RedisKey for HeaderKey {
    fn write_bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

/// The route's text.
#[cfg(all(feature = "redis", feature = "axum"))]
impl crate::RedisKey for Route {
    fn write_bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_str().as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(request: http::Request<()>) -> Parts {
        request.into_parts().0
    }

    #[test]
    fn peer_ip_reads_a_socket_addr_and_leaves_the_port_out() {
        assert_eq!(peer_ip(&parts(http::Request::new(()))), None);
        let mut request = http::Request::new(());
        request
            .extensions_mut()
            .insert(SocketAddr::from(([0xfe80, 0, 0, 0, 0, 0, 0, 1], 443)));
        assert_eq!(
            peer_ip(&parts(request)),
            Some(IpAddr::from([0xfe80, 0, 0, 0, 0, 0, 0, 1]))
        );
    }

    #[cfg(feature = "axum")]
    #[test]
    fn peer_ip_prefers_axums_connect_info() {
        let mut request = http::Request::new(());
        request
            .extensions_mut()
            .insert(SocketAddr::from(([10, 0, 0, 1], 1)));
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(SocketAddr::from((
                [10, 0, 0, 2],
                2,
            ))));
        assert_eq!(peer_ip(&parts(request)), Some(IpAddr::from([10, 0, 0, 2])));
    }

    #[test]
    fn header_takes_the_first_value_and_none_without_one() {
        let key = header(HeaderName::from_static("x-api-key"));
        assert_eq!(key(&parts(http::Request::new(()))), None);
        let request = http::Request::get("/")
            .header("x-api-key", "first")
            .header("x-api-key", "second")
            .body(())
            .unwrap();
        assert_eq!(key(&parts(request)).unwrap().as_bytes(), b"first");
    }

    #[test]
    fn header_keys_compare_and_hash_by_bytes_and_clones_copy_them() {
        let shared = bytes::Bytes::from_static(b"k-1 and more");
        let key = HeaderKey::from(HeaderValue::from_maybe_shared(shared.slice(0..3)).unwrap());
        let copy = key.clone();
        assert_eq!(copy, key);
        assert_eq!(key.as_bytes().as_ptr(), shared.as_ptr(), "made as a slice");
        assert_ne!(
            copy.as_bytes().as_ptr(),
            shared.as_ptr(),
            "cloned as a copy"
        );
        assert_ne!(key, HeaderKey::from(HeaderValue::from_static("k-2")));
        let mut sensitive = HeaderValue::from_static("k-1");
        sensitive.set_sensitive(true);
        let state = std::collections::hash_map::RandomState::new();
        use std::hash::BuildHasher;
        assert_eq!(
            state.hash_one(HeaderKey::from(sensitive)),
            state.hash_one(&key),
            "only the bytes count"
        );
    }

    #[cfg(feature = "redis")]
    #[test]
    fn header_values_key_redis_by_their_bytes() {
        use crate::RedisKey;
        let mut out = Vec::new();
        HeaderValue::from_static("k-1").write_bytes(&mut out);
        HeaderKey::from(HeaderValue::from_static("/k-2")).write_bytes(&mut out);
        assert_eq!(out, b"k-1/k-2");
    }
}
