use tower::{service_fn, ServiceBuilder};
use tower_bulwark::presets::ClientPreset;
use tower_bulwark::BoxError;

fn main() {
    let transport = service_fn(|_: http::Request<axum::body::Body>| async {
        Ok::<_, BoxError>(http::Response::new(String::new()))
    });
    let client = ServiceBuilder::new()
        .layer(ClientPreset::http("inventory").unwrap().layer())
        .service(transport);
    tower_bulwark::expect_service::<http::Request<axum::body::Body>, _>(&client);
}
