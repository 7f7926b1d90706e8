//! The query string of an action: `name=value` pairs, percent-decoded (`+` is a space, as
//! forms and `URLSearchParams` write it).

/// Why a query could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BadQuery {
    /// A `%` not followed by two hex digits.
    Escape,
    /// Decoded bytes that are not UTF-8.
    Utf8,
}

/// The decoded value of the first parameter named `name`, if any.
pub(super) fn param(query: Option<&str>, name: &str) -> Result<Option<String>, BadQuery> {
    let Some(query) = query else {
        return Ok(None);
    };
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(key)? == name {
            return decode(value).map(Some);
        }
    }
    Ok(None)
}

/// Percent-decodes `text`.
fn decode(text: &str) -> Result<String, BadQuery> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(BadQuery::Escape)?;
                let high = hex_digit(hex[0]).ok_or(BadQuery::Escape)?;
                let low = hex_digit(hex[1]).ok_or(BadQuery::Escape)?;
                out.push(high << 4 | low);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| BadQuery::Utf8)
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_percent_decoded() {
        let query = Some("component=pay%20ments&action=force_open&key=a%2Fb+c&empty=&flag");
        assert_eq!(param(query, "component"), Ok(Some("pay ments".into())));
        assert_eq!(param(query, "action"), Ok(Some("force_open".into())));
        assert_eq!(param(query, "key"), Ok(Some("a/b c".into())));
        assert_eq!(param(query, "empty"), Ok(Some(String::new())));
        assert_eq!(param(query, "flag"), Ok(Some(String::new())));
        assert_eq!(param(query, "missing"), Ok(None));
        assert_eq!(param(None, "component"), Ok(None));
        assert_eq!(
            param(Some("k%C3%A9y=%E2%9C%93"), "kéy"),
            Ok(Some("✓".into()))
        );
        assert_eq!(
            param(Some("a=1&a=2"), "a"),
            Ok(Some("1".into())),
            "the first one"
        );
    }

    #[test]
    fn bad_escapes_and_bad_utf8_are_refused() {
        assert_eq!(param(Some("a=%zz"), "a"), Err(BadQuery::Escape));
        assert_eq!(param(Some("a=%4"), "a"), Err(BadQuery::Escape));
        assert_eq!(param(Some("a=%"), "a"), Err(BadQuery::Escape));
        assert_eq!(param(Some("a=%FF%FE"), "a"), Err(BadQuery::Utf8));
        assert_eq!(param(Some("a=%C3"), "a"), Err(BadQuery::Utf8));
        // A bad pair before the one asked for is refused too: the query is malformed.
        assert_eq!(param(Some("%FF=1&a=2"), "a"), Err(BadQuery::Utf8));
    }
}
