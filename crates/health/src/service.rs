//! [`HealthService`]: the health endpoints as a tower service.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
use tower_service::Service;

use crate::{Health, Status};

/// Serves a [`Health`] registry over HTTP. By the last segment of the path:
///
/// - `…/live`: `200 live`, always (a process that answers is alive; dependencies never make
///   it fail, or an outage would restart every instance at once).
/// - `…/ready`: `200 ready`, or `503 not ready` while draining or while a required
///   component is `Down`.
/// - anything else: the JSON view, `200` when ready and `503` when not:
///
/// ```json
/// {"status":"ready","draining":false,"components":[
///   {"name":"payments","required":true,"status":"up","detail":"circuit closed"}]}
/// ```
///
/// `status` is `"ready"` or `"not_ready"`; a component's `status` is `"up"`, `"degraded"`
/// or `"down"`. The shape is stable: fields may be added, never renamed or removed.
/// Responses are `Cache-Control: no-store`. With axum, one line:
/// `Router::new().nest_service("/health", health.service())`.
///
/// With feature `dashboard`, [`HealthService::dashboard`] adds the operator dashboard
/// under `…/ui`.
#[derive(Debug, Clone)]
pub struct HealthService {
    health: Health,
    #[cfg(feature = "dashboard")]
    dashboard: Option<crate::Dashboard>,
}

impl Health {
    /// The health endpoints over this registry.
    pub fn service(&self) -> HealthService {
        HealthService {
            health: self.clone(),
            #[cfg(feature = "dashboard")]
            dashboard: None,
        }
    }
}

#[cfg(feature = "dashboard")]
impl HealthService {
    /// Serves `dashboard` too: its page at `…/ui` (or `…/ui/`), its state document at
    /// `…/ui/state` and its operator actions at `…/ui/action` (see [`Dashboard`]); every
    /// other path answers as before.
    ///
    /// [`Dashboard`]: crate::Dashboard
    pub fn dashboard(mut self, dashboard: crate::Dashboard) -> HealthService {
        self.dashboard = Some(dashboard);
        self
    }
}

impl<B> Service<Request<B>> for HealthService {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        #[cfg(feature = "dashboard")]
        if let Some(dashboard) = &self.dashboard {
            if let Some(route) = crate::dashboard::Route::of(request.uri().path()) {
                let (parts, _body) = request.into_parts();
                return ready(Ok(dashboard.answer(route, &parts)));
            }
        }
        let last = request
            .uri()
            .path()
            .trim_end_matches('/')
            .rsplit('/')
            .next();
        let response = match last {
            Some("live") => text(StatusCode::OK, "live"),
            Some("ready") if self.health.is_ready() => text(StatusCode::OK, "ready"),
            Some("ready") => text(StatusCode::SERVICE_UNAVAILABLE, "not ready"),
            _ => self.json(),
        };
        ready(Ok(response))
    }
}

impl HealthService {
    fn json(&self) -> Response<String> {
        let reports = self.health.reports();
        let draining = self.health.is_draining();
        let ready = !draining
            && reports
                .iter()
                .all(|(_, required, report)| !required || report.status != Status::Down);
        let components: Vec<String> = reports
            .iter()
            .map(|(name, required, report)| {
                format!(
                    r#"{{"name":{},"required":{},"status":"{}","detail":{}}}"#,
                    crate::json::string(name),
                    required,
                    report.status.as_str(),
                    crate::json::string(&report.detail)
                )
            })
            .collect();
        let body = format!(
            r#"{{"status":"{}","draining":{},"components":[{}]}}"#,
            if ready { "ready" } else { "not_ready" },
            draining,
            components.join(",")
        );
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let mut response = text(status, body);
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<String> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
