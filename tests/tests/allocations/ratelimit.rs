//! The rate limit layers allocate nothing per call for a key they already hold: the
//! limiter itself, the server layer (with the admitted response's headers off: writing
//! `RateLimit` allocates its value), and the client layer.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::Empty;
use tower::{Layer, Service, ServiceExt};
use tower_bulwark::ratelimit::{key, ClientRateLimitLayer, LocalLimiter, Quota, RateLimitLayer};
use tower_bulwark::testing::Noop;

use super::{allocations, http_noop, CALLS};

/// A quota no test here exhausts.
fn roomy() -> Quota {
    Quota::per_second(1_000_000).unwrap()
}

fn inner() -> impl Service<
    Request<Empty<Bytes>>,
    Response = Response<Empty<Bytes>>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    Noop.map_response(|_request: Request<Empty<Bytes>>| Response::new(Empty::<Bytes>::new()))
}

/// A request with an API key whose bytes are shared, as hyper's are (slices of the
/// connection's read buffer): cloning the value is a reference count.
fn with_api_key() -> Request<Empty<Bytes>> {
    Request::builder()
        .header("x-api-key", HeaderValue::from_static("k-123"))
        .body(Empty::new())
        .unwrap()
}

#[test]
fn the_local_limiter_allocates_nothing_for_a_key_it_holds() {
    let limiter = LocalLimiter::new(roomy());
    limiter.check(&7u64);
    let count = allocation_counter::measure(|| {
        for _ in 0..CALLS {
            std::hint::black_box(limiter.check(&7u64));
        }
    })
    .count_total;
    assert_eq!(count, 0);
    // Refusals allocate nothing either.
    let tight = LocalLimiter::new(Quota::per_minute(1).unwrap());
    tight.check(&7u64);
    let count = allocation_counter::measure(|| {
        for _ in 0..CALLS {
            assert!(!tight.check(&7u64).allowed);
        }
    })
    .count_total;
    assert_eq!(count, 0);
}

#[test]
fn the_server_layer_allocates_nothing_for_a_key_it_holds() {
    let global = RateLimitLayer::local(roomy(), key::global)
        .unwrap()
        .admitted_headers(false)
        .build()
        .unwrap();
    assert_eq!(
        allocations(global.layer(http_noop()), || Request::new(())),
        0
    );

    // Keyed by a header: the same count as the bare service (which builds the requests).
    let by_header =
        RateLimitLayer::local(roomy(), key::header(HeaderName::from_static("x-api-key")))
            .unwrap()
            .admitted_headers(false)
            .build()
            .unwrap();
    let bare = allocations(inner(), with_api_key);
    assert_eq!(allocations(by_header.layer(inner()), with_api_key), bare);
}

#[test]
fn the_rate_limit_headers_of_an_admitted_response_cost_their_allocations() {
    let layer = RateLimitLayer::local(roomy(), key::global)
        .unwrap()
        .build()
        .unwrap();
    // The `RateLimit` value, and the response's header map (empty until then): its
    // index table and its entries.
    assert_eq!(
        allocations(layer.layer(http_noop()), || Request::new(())),
        3 * CALLS
    );
}

#[test]
fn the_client_layer_allocates_nothing_with_a_permit() {
    let layer = ClientRateLimitLayer::builder(LocalLimiter::new(roomy()), key::global).build();
    assert_eq!(allocations(layer.layer(Noop), || 7u64), 0);
}
