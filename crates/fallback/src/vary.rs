//! `Vary` (RFC 9111 §4.1): an answer chosen by request headers is served only to requests
//! that send the same values of them.

use http::header::{HeaderName, AUTHORIZATION, COOKIE, VARY};
use http::HeaderMap;

use crate::events::Unstorable;

/// The most request headers an answer may vary on and still be kept: a few cover content
/// negotiation and CORS (`Accept-Encoding`, `Origin`, ...); more would make each lookup
/// compare many values for an answer rarely asked for again with all of them equal.
pub(crate) const MAX_VARY: usize = 4;

/// The request headers `response` varies on (none for most answers: no allocation). Not
/// storable: `Vary: *` (the answer depends on more than headers), a name that is not a
/// header name (it could never be matched), more than [`MAX_VARY`] names, or `Cookie` or
/// `Authorization` (the answer differs per user, and the cache keeps no credentials).
pub(crate) fn varies_on(response: &HeaderMap) -> Result<Vec<HeaderName>, Unstorable> {
    let mut names = Vec::new();
    let items = response
        .get_all(VARY)
        .into_iter()
        .flat_map(|value| value.as_bytes().split(|byte| *byte == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|item| !item.is_empty());
    for item in items {
        let name = HeaderName::from_bytes(item).map_err(|_| Unstorable::Vary)?;
        if name == COOKIE || name == AUTHORIZATION || names.len() == MAX_VARY {
            return Err(Unstorable::Vary);
        }
        names.push(name);
    }
    Ok(names)
}

/// The values a stored answer was chosen by: for each header it varies on, the request's
/// value as sent, its field lines combined (`None` if the request had none).
#[derive(Debug, Default)]
pub(crate) struct Variant(Box<[(HeaderName, Option<Vec<u8>>)]>);

impl Variant {
    /// The variant of an answer varying on `names` to a request with `headers`.
    pub(crate) fn of(names: Vec<HeaderName>, headers: &HeaderMap) -> Self {
        let values = names.into_iter().map(|name| {
            let value = combined(headers, &name);
            (name, value)
        });
        Variant(values.collect())
    }

    /// Whether a request with `headers` (`None`: not kept) may be served this answer: it
    /// varies on nothing, or the request sends the same values (RFC 9111 §4.1, compared as
    /// sent, field lines combined).
    pub(crate) fn matches(&self, headers: Option<&HeaderMap>) -> bool {
        if self.0.is_empty() {
            return true;
        }
        headers.is_some_and(|headers| {
            self.0
                .iter()
                .all(|(name, value)| combined(headers, name) == *value)
        })
    }
}

/// The value of `name` in `headers`, its field lines joined by `", "` as RFC 9110 §5.3
/// combines them; `None` if there is none.
fn combined(headers: &HeaderMap, name: &HeaderName) -> Option<Vec<u8>> {
    let mut lines = headers.get_all(name).into_iter();
    let mut value = lines.next()?.as_bytes().to_vec();
    for line in lines {
        value.extend_from_slice(b", ");
        value.extend_from_slice(line.as_bytes());
    }
    Some(value)
}
