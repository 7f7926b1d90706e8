//! Reading the `Idempotency-Key` header.

use http::HeaderMap;
use http::HeaderName;

/// The header that carries the key (IETF HTTPAPI draft "The Idempotency-Key HTTP Header
/// Field").
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The header set on a replayed response, as Stripe does.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Which spellings of a key are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KeyFormat {
    /// What the draft says: a structured-field string (RFC 8941 §3.3.3), in double
    /// quotes, printable ASCII, `\"` and `\\` escaped: `Idempotency-Key: "8e03978e"`.
    #[default]
    StructuredString,
    /// A structured-field string, or the bare text most clients send today (Stripe's
    /// `Idempotency-Key: 8e03978e-40d5`): printable ASCII with no spaces.
    StringOrBare,
}

/// Why a key was refused with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadKey {
    /// The header appears more than once.
    Repeated,
    /// It is empty.
    Empty,
    /// It is longer than the limit.
    TooLong,
    /// It is not written as the format asks.
    Malformed,
}

impl BadKey {
    pub(crate) fn detail(self) -> &'static str {
        match self {
            BadKey::Repeated => "the Idempotency-Key header appears more than once",
            BadKey::Empty => "the Idempotency-Key is empty",
            BadKey::TooLong => "the Idempotency-Key is longer than this server accepts",
            BadKey::Malformed => {
                "the Idempotency-Key is not a structured-field string (RFC 8941 section 3.3.3)"
            }
        }
    }
}

/// The key of a request: `Ok(None)` without the header, else its text (quotes removed,
/// escapes resolved), at most `max_len` bytes.
pub(crate) fn read_key(
    headers: &HeaderMap,
    format: KeyFormat,
    max_len: usize,
) -> Result<Option<Vec<u8>>, BadKey> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(BadKey::Repeated);
    }
    let raw = trim(value.as_bytes());
    // Quotes and escapes at most double a key: anything longer is over the limit, and is
    // refused before it is copied.
    if raw.len() > max_len.saturating_mul(2).saturating_add(2) {
        return Err(BadKey::TooLong);
    }
    let key = match (raw.first(), format) {
        (Some(b'"'), _) => parse_sf_string(raw)?,
        (_, KeyFormat::StringOrBare) => {
            if raw.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
                raw.to_vec()
            } else {
                return Err(BadKey::Malformed);
            }
        }
        (None, KeyFormat::StructuredString) => return Err(BadKey::Empty),
        (Some(_), KeyFormat::StructuredString) => return Err(BadKey::Malformed),
    };
    if key.is_empty() {
        Err(BadKey::Empty)
    } else if key.len() > max_len {
        Err(BadKey::TooLong)
    } else {
        Ok(Some(key))
    }
}

/// Leading and trailing spaces and tabs are not part of a field value (RFC 9110 §5.5).
fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// An RFC 8941 sf-string: `"` then printable ASCII with `\"` and `\\` escapes, then `"`,
/// and nothing after it.
fn parse_sf_string(raw: &[u8]) -> Result<Vec<u8>, BadKey> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter().skip(1);
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => match bytes.next() {
                Some(&escaped @ (b'"' | b'\\')) => out.push(escaped),
                _ => return Err(BadKey::Malformed),
            },
            b'"' => {
                return if bytes.next().is_none() {
                    Ok(out)
                } else {
                    Err(BadKey::Malformed)
                };
            }
            0x20..=0x7e => out.push(b),
            _ => return Err(BadKey::Malformed),
        }
    }
    // No closing quote.
    Err(BadKey::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn read(values: &[&[u8]], format: KeyFormat) -> Result<Option<Vec<u8>>, BadKey> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(IDEMPOTENCY_KEY, HeaderValue::from_bytes(value).unwrap());
        }
        read_key(&headers, format, 16)
    }

    #[test]
    fn structured_strings_are_unquoted_and_unescaped() {
        let s = KeyFormat::StructuredString;
        assert_eq!(read(&[], s), Ok(None));
        assert_eq!(read(&[b"\"abc\""], s), Ok(Some(b"abc".to_vec())));
        assert_eq!(read(&[b"  \"a b\"\t"], s), Ok(Some(b"a b".to_vec())));
        assert_eq!(read(&[br#""a\"b\\c""#], s), Ok(Some(br#"a"b\c"#.to_vec())));
        assert_eq!(
            read(&[b"\"0123456789abcdef\""], s),
            Ok(Some(b"0123456789abcdef".to_vec()))
        );
    }

    #[test]
    fn bad_keys_are_refused_with_their_reason() {
        let s = KeyFormat::StructuredString;
        assert_eq!(read(&[b"\"a\"", b"\"b\""], s), Err(BadKey::Repeated));
        assert_eq!(read(&[b""], s), Err(BadKey::Empty));
        assert_eq!(read(&[b"\"\""], s), Err(BadKey::Empty));
        assert_eq!(read(&[b"   "], s), Err(BadKey::Empty));
        assert_eq!(read(&[b"\"0123456789abcdefg\""], s), Err(BadKey::TooLong));
        assert_eq!(read(&[b"abc"], s), Err(BadKey::Malformed));
        assert_eq!(read(&[b"\"abc"], s), Err(BadKey::Malformed));
        assert_eq!(read(&[b"\"abc\"x"], s), Err(BadKey::Malformed));
        assert_eq!(read(&[br#""a\b""#], s), Err(BadKey::Malformed));
        assert_eq!(read(&[b"\"a\\"], s), Err(BadKey::Malformed));
        assert_eq!(read(&[b"\"caf\xc3\xa9\""], s), Err(BadKey::Malformed));
    }

    #[test]
    fn bare_keys_are_accepted_only_when_asked() {
        let bare = KeyFormat::StringOrBare;
        assert_eq!(read(&[b"8e03-40d5"], bare), Ok(Some(b"8e03-40d5".to_vec())));
        assert_eq!(
            read(&[b"\"quoted ok\""], bare),
            Ok(Some(b"quoted ok".to_vec()))
        );
        assert_eq!(read(&[b"has space"], bare), Err(BadKey::Malformed));
        assert_eq!(read(&[b"caf\xc3\xa9"], bare), Err(BadKey::Malformed));
        assert_eq!(read(&[b""], bare), Err(BadKey::Empty));
        assert_eq!(read(&[b"0123456789abcdefg"], bare), Err(BadKey::TooLong));
    }
}
