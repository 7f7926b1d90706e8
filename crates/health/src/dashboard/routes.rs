//! The dashboard's routes and the headers of its answers.

use http::header::{
    ALLOW, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};

use super::{Dashboard, PAGE};

/// Allows the page only itself: its inline script and style, fetches of its own origin,
/// no framing.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src data:; frame-ancestors 'none'";

/// A dashboard route, by the path's last segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `…/ui` or `…/ui/`.
    Page,
    /// `…/ui/state`.
    State,
    /// `…/ui/action`.
    Action,
}

impl Route {
    /// The route of `path`, if it is one of the dashboard's.
    pub(crate) fn of(path: &str) -> Option<Route> {
        let path = path.strip_suffix('/').unwrap_or(path);
        let mut segments = path.rsplit('/');
        match (segments.next(), segments.next()) {
            (Some("ui"), _) => Some(Route::Page),
            (Some("state"), Some("ui")) => Some(Route::State),
            (Some("action"), Some("ui")) => Some(Route::Action),
            _ => None,
        }
    }
}

impl Dashboard {
    /// The answer to a request for `route`.
    pub(crate) fn answer(&self, route: Route, request: &Parts) -> Response<String> {
        let read = request.method == Method::GET || request.method == Method::HEAD;
        match route {
            Route::Page if read => {
                let mut response = answer(StatusCode::OK, "text/html; charset=utf-8", PAGE);
                response
                    .headers_mut()
                    .insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
                response
            }
            Route::State if read => {
                let authorized = self.shared.authorized(request);
                let state = self.shared.state(authorized).to_json();
                answer(StatusCode::OK, "application/json", state)
            }
            Route::Page | Route::State => method_not_allowed("GET, HEAD"),
            Route::Action if request.method != Method::POST => method_not_allowed("POST"),
            Route::Action => self.act(request),
        }
    }
}

/// An answer with the headers every dashboard answer carries.
pub(super) fn answer(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<String>,
) -> Response<String> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// An RFC 9457 problem details answer. `detail` is always the crate's own text, never
/// anything from the request.
pub(super) fn problem(status: StatusCode, detail: &'static str) -> Response<String> {
    let title = status.canonical_reason().unwrap_or("Error");
    let mut body = String::from(r#"{"type":"about:blank","title":"#);
    crate::json::write_string(title, &mut body);
    body.push_str(&format!(r#","status":{},"detail":"#, status.as_u16()));
    crate::json::write_string(detail, &mut body);
    body.push('}');
    answer(status, "application/problem+json", body)
}

fn method_not_allowed(allow: &'static str) -> Response<String> {
    let mut response = problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "this route does not take that method",
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_found_by_the_last_segments() {
        for (path, route) in [
            ("/health/ui", Some(Route::Page)),
            ("/health/ui/", Some(Route::Page)),
            ("/ui", Some(Route::Page)),
            ("/health/ui/state", Some(Route::State)),
            ("/health/ui/state/", Some(Route::State)),
            ("/health/ui/ui/state", Some(Route::State)),
            ("/health/ui/action", Some(Route::Action)),
            ("/health/state", None),
            ("/health/action", None),
            ("/health/ready", None),
            ("/health", None),
            ("/", None),
            ("", None),
            ("/health/uix", None),
            ("/health/ui//", None),
        ] {
            assert_eq!(Route::of(path), route, "{path}");
        }
    }

    #[test]
    fn problems_are_json_with_their_status() {
        let response = problem(StatusCode::FORBIDDEN, "say \"why\"");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        assert_eq!(
            response.body(),
            r#"{"type":"about:blank","title":"Forbidden","status":403,"detail":"say \"why\""}"#
        );
    }
}
