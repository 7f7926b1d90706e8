//! Which requests use the last-good cache, and which responses it may keep.
//!
//! The cache is shared by every caller of the layer: it follows what RFC 9111 asks of a
//! shared cache, because a response kept for one caller is served to another.

use http::header::{HeaderName, AUTHORIZATION, CACHE_CONTROL, COOKIE};
use http::{HeaderMap, Method, Request, Response};

use crate::events::Unstorable;
use crate::vary::varies_on;
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
    /// Served from it; its success kept only if the response says `public`: the request
    /// carried credentials the answer may depend on (`Authorization`, RFC 9111 §3.5, or a
    /// `Cookie`, the session of most browser-facing services). Says why not.
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

/// The request headers `response` varies on if it may be kept, else why not. Directives
/// are matched by name, without case; a header that is not valid text is read as bytes, so
/// nothing is missed by failing to parse it.
///
/// The cache serves a copy only when the origin failed, so every copy it serves is stale:
/// it keeps nothing RFC 9111 §4.2.4 forbids serving stale (`no-cache`, `must-revalidate`,
/// `proxy-revalidate`, and `s-maxage` for a shared cache). Of the directives that let a
/// shared cache keep an answer to a request with credentials (§3.5: `public`, `s-maxage`,
/// `must-revalidate`), that leaves `public`.
pub(crate) fn storable<B>(
    response: &Response<B>,
    cache: CacheUse,
) -> Result<Vec<HeaderName>, Unstorable> {
    if Degraded::is_marked(response) {
        return Err(Unstorable::Degraded);
    }
    let headers = response.headers();
    let mut public = false;
    for directive in directives(headers) {
        let is = |name: &str| directive.eq_ignore_ascii_case(name.as_bytes());
        if is("no-store") {
            return Err(Unstorable::NoStore);
        }
        if is("private") {
            return Err(Unstorable::Private);
        }
        if is("no-cache") || is("must-revalidate") || is("proxy-revalidate") || is("s-maxage") {
            return Err(Unstorable::MustRevalidate);
        }
        public |= is("public");
    }
    let names = varies_on(headers)?;
    match cache {
        CacheUse::Credentials(why) if !public => Err(why),
        _ => Ok(names),
    }
}

/// The names of the `Cache-Control` directives (a directive's name is what comes before its
/// `=`).
fn directives(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(CACHE_CONTROL)
        .into_iter()
        .flat_map(|value| value.as_bytes().split(|byte| *byte == b','))
        .map(|item| {
            let name = item.split(|byte| *byte == b'=').next().unwrap_or_default();
            name.trim_ascii()
        })
}
