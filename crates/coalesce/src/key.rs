//! Which requests are identical: the key of a request, hashed from its borrowed parts and
//! compared exactly against the key a call in flight stored.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    ACCEPT, ACCEPT_ENCODING, ACCEPT_LANGUAGE, AUTHORIZATION, COOKIE, HOST, IF_MATCH,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, RANGE, VARY,
};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

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

    /// The names of a key's headers, each with its index: the user headers, then the
    /// varying ones, then (default key, a URI without authority: an HTTP/1 origin-form
    /// request) `Host`.
    fn keyed<'a>(&'a self, parts: &Parts) -> impl Iterator<Item = (usize, &'a HeaderName)> {
        let host = self.custom.is_none() && parts.uri.authority().is_none();
        self.user_headers
            .iter()
            .chain(self.vary_headers.iter())
            .enumerate()
            .chain(host.then_some((HOST_INDEX, &HOST)))
    }

    /// The request's key hash (keyed SipHash, its keys drawn at random once per layer, so
    /// a client cannot aim collisions: request URIs and headers are attacker input), or
    /// `None` when the request is not coalesced: with the default key, a method other than
    /// `GET` and `HEAD` or a conditional or range request; or the user's function said so.
    ///
    /// Each part is written whole (one `write` per string, not per field of its type),
    /// after its length, so that no two different keys run together into the same bytes.
    pub(crate) fn probe(&self, parts: &Parts) -> Option<Probe> {
        let custom = match &self.custom {
            Some(key) => Some(key(parts)?),
            None if parts.method == Method::GET || parts.method == Method::HEAD => {
                if !parts.headers.is_empty()
                    && CONDITIONAL
                        .iter()
                        .any(|name| parts.headers.contains_key(name))
                {
                    return None;
                }
                None
            }
            None => return None,
        };
        let mut h = KeyHasher {
            hasher: self.hasher.build_hasher(),
            buffer: [0; 128],
            len: 0,
        };
        h.part(parts.method.as_str().as_bytes());
        match &custom {
            Some(custom) => h.part(custom),
            None => h.uri(&parts.uri),
        }
        if !parts.headers.is_empty() {
            for (index, name) in self.keyed(parts) {
                for value in parts.headers.get_all(name) {
                    h.len(index);
                    h.part(value.as_bytes());
                }
            }
        }
        Some(Probe {
            hash: h.finish(),
            custom,
        })
    }

    /// The key a leader stores for joiners to compare against: with a copy of its headers,
    /// to compare the ones its answer's `Vary` names (one block; none for a request
    /// without headers).
    pub(crate) fn store(&self, parts: &Parts, probe: &Probe) -> StoredKey {
        let base = match &probe.custom {
            Some(custom) => Base::Custom(custom.clone()),
            None => Base::Uri(parts.uri.clone()),
        };
        let headers = if parts.headers.is_empty() {
            Box::default()
        } else {
            let mut headers = Vec::with_capacity(parts.headers.len());
            headers.extend(
                parts
                    .headers
                    .iter()
                    .map(|(name, value)| (name.clone(), value.clone())),
            );
            headers.into_boxed_slice()
        };
        StoredKey {
            method: parts.method.clone(),
            base,
            headers,
        }
    }

    /// Whether the request has exactly the stored key.
    pub(crate) fn matches(&self, stored: &StoredKey, parts: &Parts, probe: &Probe) -> bool {
        if stored.method != parts.method {
            return false;
        }
        let same_base = match (&stored.base, &probe.custom) {
            (Base::Custom(stored), Some(custom)) => stored == custom,
            (Base::Uri(stored), None) => *stored == parts.uri && same_userinfo(stored, &parts.uri),
            _ => false,
        };
        if !same_base {
            return false;
        }
        if stored.headers.is_empty() && parts.headers.is_empty() {
            return true;
        }
        self.keyed(parts)
            .all(|(_, name)| stored.same_values(&parts.headers, name))
    }
}

/// Whether two URIs have the same userinfo (`user:password@`), byte for byte: `Uri`'s `==`
/// compares the whole authority without regard to ASCII case, as suits a host, but
/// credentials that differ in case are other credentials (RFC 3986, 6.2.2.1).
fn same_userinfo(a: &Uri, b: &Uri) -> bool {
    fn userinfo(uri: &Uri) -> Option<&str> {
        let (userinfo, _host) = uri.authority()?.as_str().rsplit_once('@')?;
        Some(userinfo)
    }
    userinfo(a) == userinfo(b)
}

/// The headers of conditional and range requests, where `probe` looks for them.
static CONDITIONAL: [HeaderName; 6] = CONDITIONAL_HEADERS;

/// A key's bytes gathered on the stack and handed to the (keyed SipHash) hasher in as few
/// `write`s as fit: one for a usual request. Each part is preceded by its length (a prefix
/// code: the bytes read from the start come apart into the key's parts one way only), so
/// that no two different keys run together into the same bytes. (A length written after
/// its part is not enough: its long form ends in zeros, which read as empty parts after a
/// shorter one.)
struct KeyHasher<H> {
    hasher: H,
    buffer: [u8; 128],
    len: usize,
}

impl<H: Hasher> KeyHasher<H> {
    fn flush(&mut self) {
        self.hasher.write(&self.buffer[..self.len]);
        self.len = 0;
    }

    /// Room for `n` more bytes in the buffer, if they fit in it at all.
    fn room(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.buffer.len() - self.len {
            self.flush();
            if n > self.buffer.len() {
                return None;
            }
        }
        let start = self.len;
        self.len += n;
        Some(&mut self.buffer[start..start + n])
    }

    fn bytes(&mut self, bytes: &[u8]) {
        match self.room(bytes.len()) {
            Some(room) => room.copy_from_slice(bytes),
            None => self.hasher.write(bytes),
        }
    }

    /// A part's length (or a header's index): one byte below 255, else 255 and eight
    /// bytes.
    fn len(&mut self, len: usize) {
        match u8::try_from(len) {
            Ok(short) if short < u8::MAX => self.bytes(&[short]),
            _ => {
                self.bytes(&[u8::MAX]);
                self.bytes(&(len as u64).to_le_bytes());
            }
        }
    }

    /// A part's length, then the part.
    fn part(&mut self, bytes: &[u8]) {
        self.len(bytes.len());
        self.bytes(bytes);
    }

    /// A part's length, then the part in ASCII lowercase.
    fn lowercase_part(&mut self, bytes: &[u8]) {
        self.len(bytes.len());
        for chunk in bytes.chunks(64) {
            if let Some(room) = self.room(chunk.len()) {
                room.copy_from_slice(chunk);
                room.make_ascii_lowercase();
            }
        }
    }

    /// A URI as `Uri`'s `==` compares it: the scheme and authority without regard to
    /// ASCII case, the path and query exactly. (Equal URIs hash equally; two that only
    /// hash equally are told apart by the exact comparison.)
    fn uri(&mut self, uri: &Uri) {
        self.lowercase_part(uri.scheme_str().unwrap_or("").as_bytes());
        self.lowercase_part(uri.authority().map_or("", |a| a.as_str()).as_bytes());
        self.part(uri.path().as_bytes());
        match uri.query() {
            Some(query) => {
                self.bytes(&[1]);
                self.part(query.as_bytes());
            }
            None => self.bytes(&[0]),
        }
    }

    fn finish(&mut self) -> u64 {
        self.flush();
        self.hasher.finish()
    }
}

/// Whether an answer to the stored request may go to a request with `headers`, by the
/// answer's `Vary` (RFC 9110, 12.5.5): every header it names has the same values in both
/// requests. `Vary: *`, or a name that is not a valid header name, means it may not.
pub(crate) fn vary_allows(stored: &StoredKey, answer: &HeaderMap, headers: &HeaderMap) -> bool {
    if answer.is_empty() {
        return true;
    }
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
                Ok(name) => stored.same_values(headers, &name),
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
    /// The leader's headers, in the order of `HeaderMap::iter` (the values of one name
    /// together, in order).
    headers: Box<[(HeaderName, HeaderValue)]>,
}

impl StoredKey {
    /// Whether the stored request and one with `headers` have the same values of `name`,
    /// in order.
    fn same_values(&self, headers: &HeaderMap, name: &HeaderName) -> bool {
        self.headers
            .iter()
            .filter(|(stored, _)| stored == name)
            .map(|(_, value)| value)
            .eq(headers.get_all(name).iter())
    }
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

    /// Userinfo in an absolute URI is a credential: case counts in it (not in the host).
    #[test]
    fn userinfo_that_differs_in_case_is_another_user() {
        let spec = KeySpec::new();
        let alice = parts(Method::GET, "http://alice:Secret@api.test/a", &[]);
        let other = parts(Method::GET, "http://alice:secret@api.test/a", &[]);
        assert!(!same(&spec, &alice, &other));
        assert!(!same(&spec, &other, &alice));
        assert!(same(
            &spec,
            &alice,
            &parts(Method::GET, "http://alice:Secret@API.test/a", &[])
        ));
    }

    /// The key's bytes are one unambiguous sequence: no two different keys hash from the
    /// same bytes, whatever bytes a custom key or a header value holds (a part's length
    /// written after it, its long form ending in zeros, ran into the empty header values
    /// after it: these two keys hashed alike under every SipHash key, so a client could
    /// aim its request at a hot key's place in the map and make it pass by uncoalesced).
    #[test]
    fn keys_never_run_together_into_the_same_bytes() {
        let mut spec = KeySpec::new();
        spec.custom = Some(Arc::new(|parts: &Parts| {
            parts.extensions.get::<Bytes>().cloned()
        }));
        let with = |key: Vec<u8>, authorizations: &[&[u8]]| {
            let mut request = Request::get("/a").body(()).unwrap();
            request.extensions_mut().insert(Bytes::from(key));
            for value in authorizations {
                request.headers_mut().append(
                    AUTHORIZATION,
                    HeaderValue::from_bytes(value).expect("a valid value"),
                );
            }
            request.into_parts().0
        };
        let base = vec![b'k'; 567];
        let mut longer = base.clone();
        longer.extend_from_slice(&[0xFF, 0x37, 0x02, 0, 0, 0, 0, 0, 0, 0]);
        let a = with(longer, &[]);
        let b = with(base, &[b"\xFFA", b"", b"", b""]);
        assert!(!same(&spec, &a, &b));
        assert_ne!(
            spec.probe(&a).unwrap().hash,
            spec.probe(&b).unwrap().hash,
            "two keys hashed from the same bytes"
        );
        // Long parts of every length around the long form's bound hash apart.
        let mut hashes = std::collections::HashSet::new();
        for len in 250..270 {
            for split in [0, 1, len / 2] {
                let mut value = vec![b'v'; len];
                value[split] = 0xFF;
                let request = with(value, &[]);
                assert!(hashes.insert(spec.probe(&request).unwrap().hash));
            }
        }
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
