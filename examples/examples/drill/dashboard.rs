//! `--dashboard`: the operator dashboard of the protected run being driven, served on
//! loopback for the whole drill. Each protected run registers its parts with a registry of
//! its own; the server answers from the newest one, so the page (which polls) follows each
//! run as it starts.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use axum::body::Body;
use axum::Router;
use http::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tower::{service_fn, ServiceExt};
use tower_bulwark::health::{Dashboard, Health, HealthService};
use tower_bulwark::BoxError;

/// The dashboard server; `show` puts a run's registry on it.
#[derive(Clone)]
pub(crate) struct DashboardServer {
    pub(crate) addr: SocketAddr,
    current: Arc<RwLock<Option<HealthService>>>,
}

impl DashboardServer {
    /// Serves on `127.0.0.1:port` (0: any free port), under `/health`; until a run is
    /// shown, every path answers 503.
    pub(crate) async fn start(port: u16) -> Result<Self, BoxError> {
        let current: Arc<RwLock<Option<HealthService>>> = Arc::default();
        let serving = current.clone();
        let health = service_fn(move |request: Request<Body>| {
            let service = serving
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            async move {
                let Some(service) = service else {
                    let mut waiting = Response::new("no protected run yet\n".to_string());
                    *waiting.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    return Ok(waiting);
                };
                service.oneshot(request).await
            }
        });
        let app = Router::new().nest_service("/health", health);
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(DashboardServer { addr, current })
    }

    /// The page's address.
    pub(crate) fn url(&self) -> String {
        format!("http://{}/health/ui", self.addr)
    }

    /// Serves the dashboard of `health` from now on (read-only: no operator actions); the
    /// one shown before stops sampling.
    pub(crate) fn show(&self, health: &Health, title: String) -> Result<(), BoxError> {
        let dashboard = Dashboard::builder(health).title(title).build()?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) =
            Some(health.service().dashboard(dashboard));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use tower_bulwark::health::{Report, Status};

    async fn get(server: &DashboardServer, path: &str) -> (StatusCode, String) {
        let client = crate::edge::pooled();
        let request = Request::get(format!("http://{}{path}", server.addr))
            .body(Full::default())
            .unwrap();
        let response = client.request(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn the_server_follows_the_newest_run() {
        let server = DashboardServer::start(0).await.unwrap();
        assert!(server.url().ends_with("/health/ui"));
        let (status, _) = get(&server, "/health/ui/state").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

        let first = Health::new();
        first.add_probe("first", false, || Report::new(Status::Up, "ok"));
        server.show(&first, "run 1".into()).unwrap();
        let (status, state) = get(&server, "/health/ui/state").await;
        assert_eq!(status, StatusCode::OK);
        assert!(state.contains(r#""title":"run 1""#), "{state}");
        assert!(state.contains(r#""name":"first""#), "{state}");

        let second = Health::new();
        second.add_probe("second", false, || Report::new(Status::Up, "ok"));
        server.show(&second, "run 2".into()).unwrap();
        let (_, state) = get(&server, "/health/ui/state").await;
        assert!(state.contains(r#""name":"second""#), "{state}");
        assert!(!state.contains(r#""name":"first""#), "{state}");
        let (status, page) = get(&server, "/health/ui").await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("<html"));
        // Read-only: actions are refused.
        let client = crate::edge::pooled();
        let action = Request::post(format!(
            "http://{}/health/ui/action?component=second&action=reset",
            server.addr
        ))
        .header("x-bulwark-action", "1")
        .body(Full::default())
        .unwrap();
        let refused = client.request(action).await.unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    }
}
