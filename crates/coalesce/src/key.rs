//! Which requests are identical: the key of a request, hashed from its borrowed parts and
//! compared exactly against the key a call in flight stored.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, COOKIE};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Uri};

/// A user's key function: `None` lets the request pass by, uncoalesced.
pub(crate) type KeyFn = dyn Fn(&Parts) -> Option<Bytes> + Send + Sync;

/// The per-user headers that are part of every key by default.
pub const DEFAULT_USER_HEADERS: [HeaderName; 2] = [AUTHORIZATION, COOKIE];

/// How a layer keys requests.
#[derive(Clone)]
pub(crate) struct KeySpec {
    pub(crate) custom: Option<Arc<KeyFn>>,
    pub(crate) user_headers: Vec<HeaderName>,
    hasher: RandomState,
}

impl KeySpec {
    pub(crate) fn new() -> Self {
        KeySpec {
            custom: None,
            user_headers: DEFAULT_USER_HEADERS.to_vec(),
            hasher: RandomState::new(),
        }
    }

    /// Whether a request of `method` may be coalesced at all: with the default key, only
    /// `GET` and `HEAD`; a user's key function decides for every method.
    pub(crate) fn may_coalesce(&self, method: &Method) -> bool {
        self.custom.is_some() || *method == Method::GET || *method == Method::HEAD
    }

    /// The request's key hash (keyed SipHash, so a client cannot aim collisions), or
    /// `None` when the request is not coalesced: a method other than `GET` and `HEAD` with
    /// the default key, or the user's function said so.
    pub(crate) fn probe(&self, parts: &Parts) -> Option<Probe> {
        let custom = match &self.custom {
            Some(key) => Some(key(parts)?),
            None if parts.method == Method::GET || parts.method == Method::HEAD => None,
            None => return None,
        };
        let mut h = self.hasher.build_hasher();
        parts.method.hash(&mut h);
        match &custom {
            Some(custom) => custom.hash(&mut h),
            None => parts.uri.hash(&mut h),
        }
        for (index, name) in self.user_headers.iter().enumerate() {
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

    /// The key a leader stores for joiners to compare against.
    pub(crate) fn store(&self, parts: &Parts, probe: &Probe) -> StoredKey {
        let base = match &probe.custom {
            Some(custom) => Base::Custom(custom.clone()),
            None => Base::Uri(parts.uri.clone()),
        };
        let mut user = Vec::new();
        for (index, name) in self.user_headers.iter().enumerate() {
            for value in parts.headers.get_all(name) {
                user.push((index, value.clone()));
            }
        }
        StoredKey {
            method: parts.method.clone(),
            base,
            user,
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
        if !same_base {
            return false;
        }
        let mut stored_user = stored.user.iter();
        for (index, name) in self.user_headers.iter().enumerate() {
            for value in parts.headers.get_all(name) {
                match stored_user.next() {
                    Some((i, v)) if *i == index && v == value => {}
                    _ => return false,
                }
            }
        }
        stored_user.next().is_none()
    }
}

impl fmt::Debug for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySpec")
            .field("custom", &self.custom.is_some())
            .field("user_headers", &self.user_headers)
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
/// per-user headers' values, compared exactly: a hash match alone never joins a call.
#[derive(Debug)]
pub(crate) struct StoredKey {
    method: Method,
    base: Base,
    user: Vec<(usize, HeaderValue)>,
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

#[cfg(test)]
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
                &[("authorization", "A"), ("accept", "x")]
            )
        ));
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
