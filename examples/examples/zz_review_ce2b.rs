use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_bulwark::presets::ClientPreset;
use tower_bulwark::BoxError;

#[tokio::main]
async fn main() {
    let transport = service_fn(|_: http::Request<axum::body::Body>| async {
        Ok::<_, BoxError>(http::Response::new(String::new()))
    });
    let client = ServiceBuilder::new()
        .layer(ClientPreset::http("inventory").unwrap().layer())
        .service(transport);
    let _ = client.oneshot(http::Request::new(axum::body::Body::empty())).await;
}
