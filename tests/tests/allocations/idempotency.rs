//! The idempotency layer allocates nothing on the paths it passes by (other methods; no
//! key where none is required): the layer's count equals the bare service's on the same
//! requests. A keyed request allocates by design (it is fingerprinted, stored, replayed).

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Empty;
use tower::{Layer, Service, ServiceExt};
use tower_bulwark::idempotency::IdempotencyLayer;
use tower_bulwark::testing::Noop;

use super::allocations;

fn inner<B: Send + 'static>() -> impl Service<
    Request<B>,
    Response = Response<Empty<Bytes>>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    Noop.map_response(|_request: Request<B>| Response::new(Empty::<Bytes>::new()))
}

fn request(method: Method, path: &'static str, key: bool) -> Request<Empty<Bytes>> {
    let mut request = Request::builder().method(method).uri(path);
    if key {
        request = request.header("idempotency-key", "\"k1\"");
    }
    request.body(Empty::new()).unwrap()
}

#[test]
fn the_idempotency_layer_allocates_nothing_on_the_paths_it_passes_by() {
    let plain = IdempotencyLayer::builder().build().unwrap();
    let required = IdempotencyLayer::builder()
        .require_key_when(|parts| parts.uri.path() == "/payments")
        .build()
        .unwrap();
    let cases: [(&str, Method, &'static str, bool); 5] = [
        ("GET", Method::GET, "/", false),
        ("GET with a key", Method::GET, "/", true),
        ("DELETE with a key", Method::DELETE, "/payments", true),
        ("POST without a key", Method::POST, "/", false),
        ("PATCH without a key", Method::PATCH, "/", false),
    ];
    for layer in [&plain, &required] {
        for (name, method, path, key) in &cases {
            let make = || request(method.clone(), path, *key);
            let bare = allocations(inner(), make);
            let layered = allocations(layer.layer(inner()), make);
            assert_eq!(layered, bare, "{name}");
        }
    }
}
