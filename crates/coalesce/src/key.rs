//! Which requests are identical: the key of a request, hashed from its borrowed parts and
//! compared exactly against the key a call in flight stored.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    ACCEPT, ACCEPT_ENCODING, ACCEPT_LANGUAGE, AUTHORIZATION, COOKIE, HOST, IF_MATCH,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, RANGE, VARY,
};
use http::request::Parts;
use http::{HeaderMap, HeaderName, Method, Uri};

/// A user's key function: `None` lets the request pass by, uncoalesced.
pub(crate) type KeyFn = dyn Fn(&Parts) -> Option<Bytes> + Send + Sync;

/// The per-user headers that are part of every key by default.
pub const DEFAULT_USER_HEADERS: [HeaderName; 2] = [AUTHORIZATION, COOKIE];

/// The headers of content negotiation, part of every key by default: requests that differ
/// in them may get different answers (a gzipped body, another language, JSON instead of
/// HTML).
pub const DEFAULT_VARY_HEADERS: [HeaderName; 3] = [ACCEPT, ACCEPT_ENCODING, ACCEPT_LANGUAGE];

/// The headers of conditional and range requests: with the default key, a request with
/// any of them passes by uncoalesced (its answer, a `304` or a `206`, is not the answer to
/// the plain request).
pub const CONDITIONAL_HEADERS: [HeaderName; 6] = [
    RANGE,
    IF_RANGE,
    IF_MATCH,
    IF_NONE_MATCH,
    IF_MODIFIED_SINCE,
    IF_UNMODIFIED_SINCE,
];

/// The index `Host` hashes under, apart from the configured headers.
const HOST_INDEX: usize = usize::MAX;

/// How a layer keys requests.
#[derive(Clone)]
pub(crate) struct KeySpec {
    pub(crate) custom: Option<Arc<KeyFn>>,
    pub(crate) user_headers: Vec<HeaderName>,
    pub(crate) vary_headers: Vec<HeaderName>,
    hasher: RandomState,
}

impl KeySpec {
    pub(crate) fn new() -> Self {
        KeySpec {
            custom: None,
            user_headers: DEFAULT_USER_HEADERS.to_vec(),
            vary_headers: DEFAULT_VARY_HEADERS.to_vec(),
            hasher: RandomState::new(),
        }
    }

    /// Whether a request of `method` may be coalesced at all: with the default key, only
    /// `GET` and `HEAD`; a user's key function decides for every method.
    pub(crate) fn may_coalesce(&self, method: &Method) -> bool {
        self.custom.is_some() || *method == Method::GET || *method == Method::HEAD
    }

    /// The headers of a key, each with its index: the user headers, then the varying
    /// ones, then (default key, a URI without authority: an HTTP/1 origin-form request)
    /// `Host`.
    fn keyed<'a>(&'a self, parts: &Parts) -> impl Iterator<Item = (usize, &'a HeaderName)> {
        let host = self.custom.is_none() && parts.uri.authority().is_none();
        self.user_headers
            .iter()
            .chain(self.vary_headers.iter())
            .enumerate()
            .chain(host.then_some((HOST_INDEX, &HOST)))
    }

    /// The request's key hash (keyed SipHash, so a client cannot aim collisions), or
    /// `None` when the request is not coalesced: with the default key, a method other than
    /// `GET` and `HEAD` or a conditional or range request; or the user's function said so.
    pub(crate) fn probe(&self, parts: &Parts) -> Option<Probe> {
        let custom = match &self.custom {
            Some(key) => Some(key(parts)?),
            None if parts.method == Method::GET || parts.method == Method::HEAD => {
                if CONDITIONAL_HEADERS
                    .iter()
                    .any(|name| parts.headers.contains_key(name))
                {
                    return None;
                }
                None
            }
            None => return None,
        };
        let mut h = self.hasher.build_hasher();
        parts.method.hash(&mut h);
        match &custom {
            Some(custom) => custom.hash(&mut h),
            None => parts.uri.hash(&mut h),
        }
        for (index, name) in self.keyed(parts) {
            for value in parts.headers.get_all(name) {
                index.hash(&mut h);
                value.as_bytes().hash(&mut h);
            }
        }
        Some(Probe {
            hash: h.finish(),
            custom,
        })
    }

    /// The key a leader stores for joiners to compare against: with a copy of its headers,
    /// to compare the ones its answer's `Vary` names.
    pub(crate) fn store(&self, parts: &Parts, probe: &Probe) -> StoredKey {
        let base = match &probe.custom {
            Some(custom) => Base::Custom(custom.clone()),
            None => Base::Uri(parts.uri.clone()),
        };
        StoredKey {
            method: parts.method.clone(),
            base,
            headers: parts.headers.clone(),
        }
    }

    /// Whether the request has exactly the stored key.
    pub(crate) fn matches(&self, stored: &StoredKey, parts: &Parts, probe: &Probe) -> bool {
        if stored.method != parts.method {
            return false;
        }
        let same_base = match (&stored.base, &probe.custom) {
            (Base::Custom(stored), Some(custom)) => stored == custom,
            (Base::Uri(stored), None) => *stored == parts.uri,
            _ => false,
        };
        same_base
            && self
                .keyed(parts)
                .all(|(_, name)| same_values(&stored.headers, &parts.headers, name))
    }
}

/// Whether two requests have the same values of `name`, in order.
fn same_values(a: &HeaderMap, b: &HeaderMap, name: &HeaderName) -> bool {
    a.get_all(name).iter().eq(b.get_all(name).iter())
}

/// Whether an answer to the stored request may go to a request with `headers`, by the
/// answer's `Vary` (RFC 9110, 12.5.5): every header it names has the same values in both
/// requests. `Vary: *`, or a name that is not a valid header name, means it may not.
pub(crate) fn vary_allows(stored: &StoredKey, answer: &HeaderMap, headers: &HeaderMap) -> bool {
    answer.get_all(VARY).iter().all(|value| {
        let Ok(value) = value.to_str() else {
            return false;
        };
        value
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .all(|name| match HeaderName::from_bytes(name.as_bytes()) {
                _ if name == "*" => false,
                Ok(name) => same_values(&stored.headers, headers, &name),
                Err(_) => false,
            })
    })
}

impl fmt::Debug for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySpec")
            .field("custom", &self.custom.is_some())
            .field("user_headers", &self.user_headers)
            .field("vary_headers", &self.vary_headers)
            .finish()
    }
}

/// A request's key hash and the user's key bytes, if a function made them.
#[derive(Debug)]
pub(crate) struct Probe {
    pub(crate) hash: u64,
    custom: Option<Bytes>,
}

/// The key of a call in flight: the method, the URI (or the user's key bytes) and the
/// leader's headers, of which the keyed ones are compared exactly: a hash match alone
/// never joins a call.
#[derive(Debug)]
pub(crate) struct StoredKey {
    method: Method,
    base: Base,
    headers: HeaderMap,
}

#[derive(Debug)]
enum Base {
    Uri(Uri),
    Custom(Bytes),
}

/// A hasher for keys that are hashes already.
#[derive(Default)]
pub(crate) struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;
    use http::Request;

    fn parts(method: Method, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn same(spec: &KeySpec, a: &Parts, b: &Parts) -> bool {
        let (pa, pb) = (spec.probe(a).unwrap(), spec.probe(b).unwrap());
        let stored = spec.store(a, &pa);
        let matches = spec.matches(&stored, b, &pb);
        if matches {
            assert_eq!(pa.hash, pb.hash, "equal keys hash equally");
        }
        matches
    }

    #[test]
    fn get_and_head_are_keyed_other_methods_pass() {
        let spec = KeySpec::new();
        assert!(spec.probe(&parts(Method::GET, "/a", &[])).is_some());
        assert!(spec.probe(&parts(Method::HEAD, "/a", &[])).is_some());
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            assert!(spec.probe(&parts(method, "/a", &[])).is_none());
        }
    }

    #[test]
    fn method_uri_and_user_headers_all_count() {
        let spec = KeySpec::new();
        let a = parts(Method::GET, "/a?x=1", &[("authorization", "A")]);
        assert!(same(&spec, &a, &a));
        assert!(!same(
            &spec,
            &a,
            &parts(Method::HEAD, "/a?x=1", &[("authorization", "A")])
        ));
        assert!(!same(
            &spec,
            &a,
            &parts(Method::GET, "/a?x=2", &[("authorization", "A")])
        ));
        assert!(!same(
            &spec,
            &a,
            &parts(Method::GET, "/a?x=1", &[("authorization", "B")])
        ));
        assert!(!same(&spec, &a, &parts(Method::GET, "/a?x=1", &[])));
        assert!(!same(&spec, &parts(Method::GET, "/a?x=1", &[]), &a));
        // A cookie is not an authorization with the same value.
        assert!(!same(
            &spec,
            &a,
            &parts(Method::GET, "/a?x=1", &[("cookie", "A")])
        ));
        // Two values against one.
        let two = parts(
            Method::GET,
            "/a?x=1",
            &[("authorization", "A"), ("authorization", "A")],
        );
        assert!(!same(&spec, &a, &two));
        assert!(!same(&spec, &two, &a));
        // Other headers do not count.
        assert!(same(
            &spec,
            &a,
            &parts(
                Method::GET,
                "/a?x=1",
                &[("authorization", "A"), ("user-agent", "x")]
            )
        ));
    }

    #[test]
    fn conditional_and_range_requests_pass_by_with_the_default_key() {
        let spec = KeySpec::new();
        for name in CONDITIONAL_HEADERS {
            let request = parts(Method::GET, "/a", &[(name.as_str(), "x")]);
            assert!(spec.probe(&request).is_none(), "{name}");
        }
    }

    #[test]
    fn negotiation_headers_and_the_host_of_an_origin_form_uri_count() {
        let spec = KeySpec::new();
        let a = parts(Method::GET, "/a", &[("host", "a.test")]);
        assert!(!same(
            &spec,
            &a,
            &parts(Method::GET, "/a", &[("host", "b.test")])
        ));
        for name in DEFAULT_VARY_HEADERS {
            let b = parts(
                Method::GET,
                "/a",
                &[("host", "a.test"), (name.as_str(), "x")],
            );
            assert!(!same(&spec, &a, &b), "{name}");
        }
        // With an authority in the URI (HTTP/2, absolute-form), the URI decides.
        let c = parts(Method::GET, "http://a.test/a", &[("host", "a.test")]);
        let d = parts(Method::GET, "http://a.test/a", &[("host", "b.test")]);
        assert!(same(&spec, &c, &d));
    }

    #[test]
    fn vary_names_headers_that_must_match() {
        let spec = KeySpec::new();
        let a = parts(Method::GET, "/a", &[("origin", "o1"), ("user-agent", "u")]);
        let stored = spec.store(&a, &spec.probe(&a).unwrap());
        let answer = |vary: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(VARY, vary.parse().unwrap());
            headers
        };
        let same_origin = parts(Method::GET, "/a", &[("origin", "o1")]).headers;
        let other_origin = parts(Method::GET, "/a", &[("origin", "o2")]).headers;
        assert!(vary_allows(&stored, &HeaderMap::new(), &other_origin));
        assert!(vary_allows(&stored, &answer("Origin"), &same_origin));
        assert!(!vary_allows(&stored, &answer("Origin"), &other_origin));
        assert!(!vary_allows(
            &stored,
            &answer("accept, User-Agent"),
            &same_origin
        ));
        assert!(!vary_allows(&stored, &answer("*"), &same_origin));
        assert!(!vary_allows(&stored, &answer("bad header"), &same_origin));
    }

    #[test]
    fn ignored_user_headers_share_and_custom_keys_keep_the_method() {
        let mut spec = KeySpec::new();
        spec.user_headers.clear();
        let a = parts(Method::GET, "/a", &[("authorization", "A")]);
        let b = parts(Method::GET, "/a", &[("authorization", "B")]);
        assert!(same(&spec, &a, &b));

        spec.custom = Some(Arc::new(|parts: &Parts| {
            Some(Bytes::copy_from_slice(parts.uri.path().as_bytes()))
        }));
        assert!(same(
            &spec,
            &parts(Method::GET, "/a?x", &[]),
            &parts(Method::GET, "/a?y", &[])
        ));
        assert!(!same(
            &spec,
            &parts(Method::GET, "/a", &[]),
            &parts(Method::HEAD, "/a", &[])
        ));
        assert!(
            spec.probe(&parts(Method::POST, "/a", &[])).is_some(),
            "the function decides"
        );
    }
}
