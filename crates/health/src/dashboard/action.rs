//! Operator actions: who may take them (the predicate, the cross-site checks), and taking
//! them.

use http::header::{HOST, ORIGIN};
use http::request::Parts;
use http::{HeaderMap, Response, StatusCode, Uri};
use tokio::time::Instant;

use super::query::param;
use super::routes::{answer, problem};
use super::samples::Event;
use super::Dashboard;
use crate::kind::Kind;

/// A breaker's actions: its handle's methods of the same names.
#[cfg(feature = "breaker")]
const BREAKER: &[&str] = &[
    "force_open",
    "force_closed",
    "disable",
    "metrics_only",
    "resume",
    "reset",
];

/// A switch's actions.
#[cfg(feature = "degrade")]
const SWITCH: &[&str] = &["force_on", "force_off", "automatic"];

/// The actions a component of `kind` takes.
pub(super) fn actions_of(kind: &Kind) -> &'static [&'static str] {
    match kind {
        #[cfg(feature = "breaker")]
        Kind::Breaker(_) | Kind::KeyedBreaker(_) => BREAKER,
        #[cfg(feature = "degrade")]
        Kind::Switch { .. } => SWITCH,
        _ => &[],
    }
}

/// Why an action was refused: a status and the crate's own words (never the request's).
type Refusal = (StatusCode, &'static str);

/// An action taken.
struct Done {
    /// The registered name.
    component: String,
    action: &'static str,
    from: String,
    to: String,
    /// The breaker of a keyed breaker it was taken on.
    key: Option<String>,
}

impl Dashboard {
    /// Takes the action a `POST …/ui/action` asks for, if allowed.
    pub(super) fn act(&self, request: &Parts) -> Response<String> {
        match self.try_act(request) {
            Ok(done) => {
                tracing::warn!(
                    component = %done.component,
                    action = done.action,
                    key = done.key.as_deref(),
                    from = %done.from,
                    to = %done.to,
                    result = "done",
                    "dashboard operator action"
                );
                let reason = match &done.key {
                    Some(key) => format!("operator action `{}` on key {key}", done.action),
                    None => format!("operator action `{}`", done.action),
                };
                // Logged either way; shown among the transitions only if it was one.
                if done.from != done.to {
                    self.shared.lock().push_event(Event {
                        at: Instant::now(),
                        component: done.component,
                        kind: "action",
                        from: done.from,
                        to: done.to,
                        reason,
                    });
                }
                answer(StatusCode::NO_CONTENT, "text/plain; charset=utf-8", "")
            }
            Err((status, why)) => {
                tracing::warn!(
                    status = status.as_u16(),
                    reason = why,
                    result = "refused",
                    "dashboard operator action"
                );
                problem(status, why)
            }
        }
    }

    #[cfg_attr(
        not(any(feature = "breaker", feature = "degrade")),
        allow(unreachable_code)
    )]
    #[cfg_attr(not(feature = "breaker"), allow(unused_variables))]
    fn try_act(&self, request: &Parts) -> Result<Done, Refusal> {
        let shared = &self.shared;
        if !shared.actions_enabled() {
            return Err((StatusCode::FORBIDDEN, "operator actions are not enabled"));
        }
        same_origin(&request.headers, &request.uri).map_err(|why| (StatusCode::FORBIDDEN, why))?;
        if !shared.authorized(request) {
            return Err((
                StatusCode::FORBIDDEN,
                "not authorized to take operator actions",
            ));
        }
        let query = request.uri.query();
        let read = |name| {
            param(query, name).map_err(|_| {
                (
                    StatusCode::BAD_REQUEST,
                    "the query string is not percent-encoded UTF-8",
                )
            })
        };
        let component = read("component")?;
        let action = read("action")?;
        let key = read("key")?;
        let Some(component) = component else {
            return Err((StatusCode::BAD_REQUEST, "missing parameter `component`"));
        };
        let Some(action) = action else {
            return Err((StatusCode::BAD_REQUEST, "missing parameter `action`"));
        };
        let drain = shared.health.drain();
        // Only the drain takes `start`, so a component named "drain" keeps its actions.
        if let (Some(drain), "drain", "start") = (&drain, component.as_str(), action.as_str()) {
            let from = state_of_drain(drain.is_draining());
            drain.drain();
            return Ok(Done {
                component: "drain".into(),
                action: "start",
                from: from.into(),
                to: state_of_drain(true).into(),
                key: None,
            });
        }
        let components = shared.health.components();
        let mut named = components.iter().filter(|c| c.name == component);
        let Some(found) = named.next() else {
            if drain.is_some() && component == "drain" {
                return Err(unknown_action());
            }
            return Err((StatusCode::NOT_FOUND, "no component of that name"));
        };
        // Acting on the first of two would act on one the operator may not have meant.
        if named.next().is_some() {
            return Err((
                StatusCode::CONFLICT,
                "more than one component has that name: register them under distinct names",
            ));
        }
        let Some(&action) = actions_of(&found.kind).iter().find(|&&a| a == action) else {
            return Err(unknown_action());
        };
        let (from, to, key) = match &found.kind {
            #[cfg(feature = "breaker")]
            Kind::Breaker(handle) => {
                let (from, to) = breaker_action(handle, action);
                (from, to, None)
            }
            #[cfg(feature = "breaker")]
            Kind::KeyedBreaker(keyed) => {
                let Some(key) = key else {
                    return Err((StatusCode::BAD_REQUEST, "missing parameter `key`"));
                };
                let breakers = keyed.breakers();
                let Some((key, handle)) = breakers.into_iter().find(|(k, _)| *k == key) else {
                    return Err((StatusCode::NOT_FOUND, "no breaker of that key"));
                };
                let (from, to) = breaker_action(&handle, action);
                (from, to, Some(key))
            }
            #[cfg(feature = "degrade")]
            Kind::Switch { handle, .. } => {
                let Some(switch) = handle.upgrade() else {
                    return Err((StatusCode::NOT_FOUND, "the switches are gone"));
                };
                let from = switch.status().state();
                match action {
                    "force_on" => switch.force_on(),
                    "force_off" => switch.force_off(),
                    _ => switch.automatic(),
                }
                (from, switch.status().state(), None)
            }
            // No other kind lists an action.
            _ => return Err(unknown_action()),
        };
        Ok(Done {
            component: found.name.clone(),
            action,
            from,
            to,
            key,
        })
    }
}

fn unknown_action() -> Refusal {
    (StatusCode::BAD_REQUEST, "unknown action for this component")
}

fn state_of_drain(draining: bool) -> &'static str {
    if draining {
        "draining"
    } else {
        "serving"
    }
}

/// Calls the breaker handle's method named `action`; the states before and after.
#[cfg(feature = "breaker")]
fn breaker_action(handle: &tower_bulwark_breaker::BreakerHandle, action: &str) -> (String, String) {
    let from = handle.state();
    match action {
        "force_open" => handle.force_open(),
        "force_closed" => handle.force_closed(),
        "disable" => handle.disable(),
        "metrics_only" => handle.metrics_only(),
        "resume" => handle.resume(),
        _ => handle.reset(),
    }
    (from.as_str().into(), handle.state().as_str().into())
}

/// The cross-site request forgery checks: the action header (which no form can set, and
/// which a cross-site `fetch` can only send after a CORS preflight nobody approves), then,
/// when the browser sends them, `Sec-Fetch-Site` and `Origin`.
fn same_origin(headers: &HeaderMap, uri: &Uri) -> Result<(), &'static str> {
    if headers
        .get("x-bulwark-action")
        .is_none_or(|value| value.as_bytes() != b"1")
    {
        return Err("an action needs the header `X-Bulwark-Action: 1`");
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        if !matches!(site.as_bytes(), b"same-origin" | b"none") {
            return Err("cross-site request");
        }
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let host = headers
            .get(HOST)
            .and_then(|host| host.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()));
        let same = match (origin.to_str(), host) {
            (Ok(origin), Some(host)) => same_host(origin, host),
            _ => false,
        };
        if !same {
            return Err("`Origin` does not name the `Host`");
        }
    }
    Ok(())
}

/// Whether `origin` (`scheme://host[:port]`) names `host` (`host[:port]`), a scheme's
/// default port written or not.
fn same_host(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false; // `null`, or not an origin
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let strip = |s: &'_ str| -> String {
        let lower = s.to_ascii_lowercase();
        match lower.strip_suffix(default_port) {
            Some(bare) => bare.to_string(),
            None => lower,
        }
    };
    !authority.is_empty() && !authority.contains(['/', '@']) && strip(authority) == strip(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_their_host_with_or_without_default_ports() {
        assert!(same_host("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(same_host("https://Example.com", "example.com"));
        assert!(same_host("https://example.com", "example.com:443"));
        assert!(same_host("http://example.com:80", "example.com"));
        assert!(!same_host("http://example.com:443", "example.com"));
        assert!(!same_host("https://evil.example", "example.com"));
        assert!(!same_host("http://127.0.0.1:8081", "127.0.0.1:8080"));
        assert!(!same_host("null", "example.com"));
        assert!(!same_host("ftp://example.com", "example.com"));
        assert!(!same_host("http://", ""));
        assert!(!same_host("http://user@example.com", "user@example.com"));
    }

    #[test]
    fn the_action_header_is_required_and_cross_site_requests_refused() {
        let uri: Uri = "/health/ui/action".parse().unwrap();
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.append(*name, value.parse().unwrap());
            }
            map
        };
        let action = ("x-bulwark-action", "1");
        let host = ("host", "ops.internal:9000");
        assert!(same_origin(&headers(&[action]), &uri).is_ok());
        assert!(same_origin(&headers(&[]), &uri).is_err());
        assert!(same_origin(&headers(&[("x-bulwark-action", "yes")]), &uri).is_err());
        for site in ["same-origin", "none"] {
            let ok = headers(&[action, ("sec-fetch-site", site)]);
            assert!(same_origin(&ok, &uri).is_ok(), "{site}");
        }
        for site in ["cross-site", "same-site", ""] {
            let refused = headers(&[action, ("sec-fetch-site", site)]);
            assert!(same_origin(&refused, &uri).is_err(), "{site}");
        }
        let same = headers(&[action, host, ("origin", "http://ops.internal:9000")]);
        assert!(same_origin(&same, &uri).is_ok());
        let evil = headers(&[action, host, ("origin", "https://evil.example")]);
        assert!(same_origin(&evil, &uri).is_err());
        let no_host = headers(&[action, ("origin", "http://ops.internal:9000")]);
        assert!(
            same_origin(&no_host, &uri).is_err(),
            "nothing to compare with"
        );
        let absolute: Uri = "http://ops.internal:9000/health/ui/action".parse().unwrap();
        assert!(
            same_origin(&no_host, &absolute).is_ok(),
            "HTTP/2: the URI's authority"
        );
    }
}
