//! A waiter's deadline timer is made when it is first polled, not in `call`.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::{service_fn, Layer, Service};
use tower_bulwark_coalesce::CoalesceLayer;
use tower_bulwark_core::Deadline;

/// A `tokio::time::Sleep` needs a Tokio runtime with timers when it is made, so a waiter's
/// timer is made in `poll` (at its first `Pending`), as the other layers do: `call` on a
/// request that carries a `Deadline`, made outside a runtime (or on one built without
/// `enable_time`), does not panic (CONTRIBUTING.md, rule 5).
#[test]
fn calling_with_a_deadline_outside_a_runtime_does_not_panic() {
    let backend = service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("answer"))))
    });
    let mut service = CoalesceLayer::new().layer(backend);
    let mut request = Request::get("http://api.test/hot").body(()).unwrap();
    request
        .extensions_mut()
        .insert(Deadline::after(Duration::from_secs(1)));
    let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        drop(service.call(request));
    }));
    assert!(
        called.is_ok(),
        "`call` panicked building the waiter's timer"
    );
}
