//! The coalescing layer allocates nothing on the requests it passes by (other methods,
//! other keys' bounds): the layer's count equals the bare service's. A request that leads
//! a call (the only one in flight for its key) allocates exactly two blocks: the shared
//! slot and the pinned upstream future (see the crate docs: the crate forbids `unsafe`,
//! so the future any waiter may poll needs a box of its own; the slot is the upstream's
//! waker itself, no more), plus the key's copy of its headers (one block) when it has any.
//! A joiner answered at its first poll allocates nothing but its copy of the answer's
//! headers (none here); one that waits takes a place in the call's list of wakers (a
//! `Vec`, grown as joiners register).

use bytes::Bytes;
use http::{Method, Request, Response, Uri};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};
use tower_bulwark::coalesce::CoalesceLayer;
use tower_bulwark::testing::Noop;

use super::{allocations, CALLS};

fn inner() -> impl Service<
    Request<()>,
    Response = Response<Full<Bytes>>,
    Error = std::convert::Infallible,
    Future = impl Send + 'static,
> + Clone
       + Send
       + 'static {
    Noop.map_response(|_request: Request<()>| {
        Response::new(Full::new(Bytes::from_static(b"shared answer")))
    })
}

fn request(method: Method, authorization: bool) -> Request<()> {
    request_to(
        method,
        Uri::from_static("/items/7?view=full"),
        authorization,
    )
}

fn request_to(method: Method, uri: Uri, authorization: bool) -> Request<()> {
    let mut request = Request::builder().method(method).uri(uri);
    if authorization {
        request = request.header("authorization", http::HeaderValue::from_static("Bearer A"));
    }
    request.body(()).unwrap()
}

#[test]
fn the_coalescing_layer_allocates_nothing_on_the_requests_it_passes_by() {
    let layer = CoalesceLayer::builder().build().unwrap();
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        let make = || request(method.clone(), true);
        let bare = allocations(inner(), make);
        let layered = allocations(layer.layer(inner()), make);
        assert_eq!(layered, bare, "{method}");
    }
}

/// A case's name, its request, and the allocations per call over the bare service's.
type Case = (&'static str, fn() -> Request<()>, u64);

#[test]
fn a_request_leading_a_call_allocates_its_slot_and_its_upstream_future() {
    let layer = CoalesceLayer::builder().build().unwrap();
    // The slot and the pinned upstream future; with a header, the key's copy of the
    // headers (one block of name-value pairs; the answer's `Vary` is checked against it,
    // so it holds every header, not only the keyed ones); with a
    // URI parsed from a string (its bytes copied into a `Vec`-backed `Bytes`), the key's
    // copy of it, made shareable once. (A hyper server's URIs and header values are slices
    // of shared `Bytes` already: nothing more.)
    let cases: [Case; 3] = [
        ("static URI", || request(Method::GET, false), 2),
        (
            "static URI, Authorization",
            || request(Method::GET, true),
            3,
        ),
        (
            "parsed URI",
            || request_to(Method::GET, "/items/7?view=full".parse().unwrap(), false),
            3,
        ),
    ];
    for (name, make, per_call) in cases {
        let bare = allocations(inner(), make);
        let layered = allocations(layer.layer(inner()), make);
        assert_eq!(layered - bare, per_call * CALLS, "{name}");
    }
}

#[test]
fn a_request_joining_a_call_answered_at_its_first_poll_allocates_nothing() {
    // Both requests are called before either future is polled (readiness is taken inside
    // the futures), so the second joins the first's call.
    fn pairs(joiner: bool) -> u64 {
        let layer = CoalesceLayer::builder().build().unwrap();
        let mut service = layer.layer(inner());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let mut round_trips = |count: u64| {
            runtime.block_on(async {
                for _ in 0..count {
                    let ready = service.ready().await.unwrap();
                    let leader = ready.call(request(Method::GET, false));
                    if joiner {
                        let ready = service.ready().await.unwrap();
                        let joined = ready.call(request(Method::GET, false));
                        let (a, b) = tokio::join!(leader, joined);
                        std::hint::black_box((a.unwrap(), b.unwrap()));
                    } else {
                        std::hint::black_box(leader.await.unwrap());
                    }
                }
            })
        };
        round_trips(100);
        allocation_counter::measure(|| round_trips(CALLS)).count_total
    }
    // The joiner is polled after the leader's poll ended the call: it takes a copy of the
    // answer (its headers, none here, and the shared body's bytes) and no place among
    // the waiters.
    assert_eq!(pairs(true) - pairs(false), 0);
}
