//! The response marker that says "shed for overload: do not retry".

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The response header a server sets when it shed the call because it is overloaded
/// (value `true`).
///
/// A retry layer that sees it does not retry the call: retrying a shed only adds load to a
/// server that is already refusing work, and when every hop of a call chain retries, the
/// load multiplies at each hop. On a 503 or 429, [`HttpClassifier`](crate::HttpClassifier)
/// and [`GrpcClassifier`](crate::GrpcClassifier) call it `Ignored` for breakers (the server
/// is alive and protecting itself) and a `Failure` for throttles, adaptive limits and
/// fallbacks ([`Classify::classify_load`](crate::Classify::classify_load)). Rejections of kind
/// [`Overloaded`](crate::RejectionKind::Overloaded) and
/// [`BulkheadFull`](crate::RejectionKind::BulkheadFull) carry it on HTTP and gRPC responses
/// (tower's `LoadShed` refusals too, through
/// [`HandleRejectionsLayer`](crate::HandleRejectionsLayer)).
pub const OVERLOADED_HEADER: &str = "x-bulwark-overloaded";

/// Envoy's header with the same meaning, set when Envoy itself sheds (circuit breaking,
/// overload manager); honoured so a chain with Envoy sidecars does not amplify either.
pub const ENVOY_OVERLOADED_HEADER: &str = "x-envoy-overloaded";

/// Whether a response marks itself as shed for overload: [`OVERLOADED_HEADER`] or
/// [`ENVOY_OVERLOADED_HEADER`] with the value `true` (in any case).
///
/// ```
/// use http::HeaderMap;
/// use tower_bulwark_core::{is_shed_for_overload, OVERLOADED_HEADER};
///
/// let mut headers = HeaderMap::new();
/// assert!(!is_shed_for_overload(&headers));
/// headers.insert(OVERLOADED_HEADER, "true".parse().unwrap());
/// assert!(is_shed_for_overload(&headers));
/// ```
pub fn is_shed_for_overload(headers: &HeaderMap) -> bool {
    // As `HeaderName`s: a lookup then needs no parsing.
    const OVERLOADED: HeaderName = HeaderName::from_static(OVERLOADED_HEADER);
    const ENVOY_OVERLOADED: HeaderName = HeaderName::from_static(ENVOY_OVERLOADED_HEADER);
    let marked = |name: HeaderName| {
        headers
            .get(name)
            .is_some_and(|value: &HeaderValue| value.as_bytes().eq_ignore_ascii_case(b"true"))
    };
    marked(OVERLOADED) || marked(ENVOY_OVERLOADED)
}

/// Whether an HTTP response is a shed for overload: a 503 or 429 with the marker.
pub(crate) fn is_shed_response<B>(response: &http::Response<B>) -> bool {
    matches!(
        response.status(),
        http::StatusCode::SERVICE_UNAVAILABLE | http::StatusCode::TOO_MANY_REQUESTS
    ) && is_shed_for_overload(response.headers())
}

/// Marks a response as shed for overload.
pub(crate) fn mark_shed(headers: &mut HeaderMap) {
    headers.insert(OVERLOADED_HEADER, HeaderValue::from_static("true"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_value_true_marks_a_shed() {
        for (name, value, shed) in [
            (OVERLOADED_HEADER, "true", true),
            (OVERLOADED_HEADER, "TRUE", true),
            (ENVOY_OVERLOADED_HEADER, "true", true),
            (OVERLOADED_HEADER, "false", false),
            (OVERLOADED_HEADER, "", false),
            (OVERLOADED_HEADER, "1", false),
            (ENVOY_OVERLOADED_HEADER, "yes", false),
            ("x-overloaded", "true", false),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(name, HeaderValue::from_static(value));
            assert_eq!(is_shed_for_overload(&headers), shed, "{name}: {value:?}");
        }
    }

    #[test]
    fn marking_sets_our_header() {
        let mut headers = HeaderMap::new();
        mark_shed(&mut headers);
        assert_eq!(headers[OVERLOADED_HEADER], "true");
        assert!(is_shed_for_overload(&headers));
    }
}
