//! Which requests use the last-good cache, and which responses it may keep.
//!
//! The cache is shared by every caller of the layer: it follows what RFC 9111 asks of a
//! shared cache, because a response kept for one caller is served to another.

use http::header::{HeaderName, AUTHORIZATION, CACHE_CONTROL, COOKIE, VARY};
use http::{HeaderMap, Method, Request, Response};

use crate::events::Unstorable;
use crate::Degraded;

/// The methods whose answers are cached by default: the safe ones (RFC 9110 §9.2.1) whose
/// answers a cache may reuse. `OPTIONS` is safe too, but its answers (CORS preflights)
/// depend on request headers the key does not hold.
pub const CACHE_METHODS: [Method; 2] = [Method::GET, Method::HEAD];

/// The response headers removed before a response is kept: they belong to the user who
/// got the answer (a session cookie, the proof of their authentication), never to whoever
/// gets it replayed.
/// [`FallbackBuilder::strip_headers`](crate::FallbackBuilder::strip_headers) replaces the
/// list.
pub const STRIPPED_HEADERS: [&str; 4] = [
    "set-cookie",
    "set-cookie2",
    "authentication-info",
    "proxy-authentication-info",
];

/// How a call may use the last-good cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheUse {
    /// Not at all: no cache, or a method that is not cached.
    Off,
    /// Served from it, and its success kept.
    On,
    /// Served from it; its success kept only if the response says it may be shared: the
    /// request carried credentials the answer may depend on (`Authorization`, RFC 9111
    /// §3.5, or a `Cookie`, the session of most browser-facing services). Says why not.
    Credentials(Unstorable),
}

impl CacheUse {
    pub(crate) fn of<T>(request: &Request<T>, methods: &[Method]) -> Self {
        let headers = request.headers();
        if !methods.contains(request.method()) {
            CacheUse::Off
        } else if headers.contains_key(AUTHORIZATION) {
            CacheUse::Credentials(Unstorable::Authorization)
        } else if headers.contains_key(COOKIE) {
            CacheUse::Credentials(Unstorable::Cookie)
        } else {
            CacheUse::On
        }
    }
}

/// Why `response` may not be kept, if it may not. Directives are matched by name, without
/// case; a header that is not valid text is read as bytes, so nothing is missed by failing
/// to parse it.
pub(crate) fn unstorable<B>(response: &Response<B>, cache: CacheUse) -> Option<Unstorable> {
    if Degraded::is_marked(response) {
        return Some(Unstorable::Degraded);
    }
    let headers = response.headers();
    let mut shareable = false;
    for directive in names(headers, &CACHE_CONTROL) {
        if directive.eq_ignore_ascii_case(b"no-store") {
            return Some(Unstorable::NoStore);
        }
        if directive.eq_ignore_ascii_case(b"private") {
            return Some(Unstorable::Private);
        }
        shareable |= [&b"public"[..], b"s-maxage", b"must-revalidate"]
            .iter()
            .any(|name| directive.eq_ignore_ascii_case(name));
    }
    let per_user = |name: &[u8]| {
        name == b"*"
            || name.eq_ignore_ascii_case(b"cookie")
            || name.eq_ignore_ascii_case(b"authorization")
    };
    if names(headers, &VARY).any(per_user) {
        return Some(Unstorable::Vary);
    }
    match cache {
        CacheUse::Credentials(why) if !shareable => Some(why),
        _ => None,
    }
}

/// The names in the comma-separated lists of every `header` field (a directive's name is
/// what comes before its `=`).
fn names<'a>(headers: &'a HeaderMap, header: &HeaderName) -> impl Iterator<Item = &'a [u8]> {
    headers
        .get_all(header)
        .into_iter()
        .flat_map(|value| value.as_bytes().split(|byte| *byte == b','))
        .map(|item| {
            let name = item.split(|byte| *byte == b'=').next().unwrap_or_default();
            name.trim_ascii()
        })
}
