//! Fingerprints: which request a key was first used for, and where a key is stored.

use std::fmt;

use http::request::Parts;
use sha2::{Digest, Sha256};

/// A SHA-256 digest of a request's method, path with query, and body: a key reused for a
/// different request is refused with 422 instead of answered with another request's
/// response. The same in every process and version of this crate, so replicas sharing a
/// store agree on it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// A fingerprint from its bytes (as kept by a store).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Fingerprint(bytes)
    }

    /// Its bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint(")?;
        for byte in &self.0[..8] {
            write!(f, "{byte:02x}")?;
        }
        write!(f, "..)")
    }
}

/// Computes a request's [`Fingerprint`] as its body is read.
pub(crate) struct Fingerprinter(Sha256);

impl Fingerprinter {
    /// Starts with the request's method and path with query, each length-prefixed so that
    /// no two requests share a prefix by moving bytes between the parts.
    pub(crate) fn new(parts: &Parts) -> Self {
        let mut hash = Sha256::new();
        let path = parts
            .uri
            .path_and_query()
            .map_or(parts.uri.path(), |p| p.as_str());
        for part in [parts.method.as_str().as_bytes(), path.as_bytes()] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        Fingerprinter(hash)
    }

    /// Adds body bytes.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The fingerprint.
    pub(crate) fn finish(self) -> Fingerprint {
        Fingerprint(self.0.finalize().into())
    }
}

/// Where a key is stored: a digest of the scope and the key, so keys of different scopes
/// never meet, and what a client sends never reaches a store's key space as it is.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StoreKey([u8; 32]);

impl StoreKey {
    /// The store key of `key` in `scope`.
    pub fn new(scope: &[u8], key: &[u8]) -> Self {
        let mut hash = Sha256::new();
        hash.update((scope.len() as u64).to_be_bytes());
        hash.update(scope);
        hash.update(key);
        StoreKey(hash.finalize().into())
    }

    /// Its bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Its bytes in lower-case hexadecimal, for stores keyed by text.
    pub fn to_hex(&self) -> String {
        use fmt::Write;
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            let _ = write!(out, "{byte:02x}");
        }
        out
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreKey({}..)", &self.to_hex()[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(method: &str, uri: &str, body: &[&[u8]]) -> Fingerprint {
        let (parts, ()) = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .unwrap()
            .into_parts();
        let mut f = Fingerprinter::new(&parts);
        for chunk in body {
            f.update(chunk);
        }
        f.finish()
    }

    #[test]
    fn fingerprints_differ_by_method_path_query_and_body_not_by_chunking() {
        let base = fingerprint("POST", "/pay?x=1", &[b"{\"amount\":10}"]);
        assert_eq!(
            base,
            fingerprint("POST", "/pay?x=1", &[b"{\"amou", b"nt\":10}"])
        );
        assert_ne!(
            base,
            fingerprint("PATCH", "/pay?x=1", &[b"{\"amount\":10}"])
        );
        assert_ne!(base, fingerprint("POST", "/pay?x=2", &[b"{\"amount\":10}"]));
        assert_ne!(base, fingerprint("POST", "/pay", &[b"{\"amount\":10}"]));
        assert_ne!(base, fingerprint("POST", "/pay?x=1", &[b"{\"amount\":11}"]));
        // Bytes moved from the path to the body do not collide.
        assert_ne!(
            fingerprint("POST", "/ab", &[b"c"]),
            fingerprint("POST", "/a", &[b"bc"])
        );
    }

    #[test]
    fn store_keys_are_scoped() {
        assert_eq!(
            StoreKey::new(b"alice", b"k1"),
            StoreKey::new(b"alice", b"k1")
        );
        assert_ne!(StoreKey::new(b"alice", b"k1"), StoreKey::new(b"bob", b"k1"));
        // The scope's length is part of the digest: "ab"+"c" is not "a"+"bc".
        assert_ne!(StoreKey::new(b"ab", b"c"), StoreKey::new(b"a", b"bc"));
        assert_eq!(StoreKey::new(b"", b"k").to_hex().len(), 64);
    }
}
