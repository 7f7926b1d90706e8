//! Keyed breakers: isolation per key, the bound on keys, idle and LRU eviction.

use std::time::Duration;

use tokio::time::advance;
use tower::{Layer, ServiceExt};
use tower_bulwark_breaker::{
    Admission, CircuitBreakerLayer, CircuitOpen, KeyedCircuitBreakerLayer, State,
};
use tower_bulwark_core::find_rejection;
use tower_bulwark_core::testing::controlled;

type Request = (&'static str, bool);

/// Requests name their host and whether the host fails them.
fn layer(
    max_keys: usize,
) -> KeyedCircuitBreakerLayer<
    &'static str,
    fn(&Request) -> &'static str,
    tower_bulwark_core::ErrorsAreFailures,
> {
    KeyedCircuitBreakerLayer::new(
        CircuitBreakerLayer::builder()
            .name("hosts")
            .consecutive_failures(2),
        (|request: &Request| request.0) as fn(&Request) -> &'static str,
        max_keys,
        Duration::from_secs(60),
    )
    .unwrap()
}

async fn send<S>(
    service: &S,
    host: &'static str,
    fail: bool,
) -> Result<(), tower_bulwark_core::BoxError>
where
    S: tower::Service<Request, Response = (), Error = tower_bulwark_core::BoxError> + Clone,
{
    service.clone().oneshot((host, fail)).await
}

fn inner() -> impl tower::Service<
    Request,
    Response = (),
    Error = tower_bulwark_core::BoxError,
    Future = impl Send,
> + Clone {
    let (inner, _control) = controlled::<Request>();
    inner.and_then(|(_, fail): Request| async move {
        if fail {
            Err::<(), tower_bulwark_core::BoxError>("host failed".into())
        } else {
            Ok(())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn each_key_has_its_own_breaker() {
    let layer = layer(10);
    let service = layer.layer(inner());
    for _ in 0..2 {
        send(&service, "a", true).await.unwrap_err();
    }
    let refused = send(&service, "a", false).await.unwrap_err();
    assert!(refused.is::<CircuitOpen>());
    assert_eq!(find_rejection(&refused).unwrap().layer(), "hosts:a");
    send(&service, "b", false).await.unwrap();
    let handle = layer.handle();
    assert_eq!(handle.get(&"a").unwrap().state(), State::Open);
    assert_eq!(handle.get(&"b").unwrap().state(), State::Closed);
    assert_eq!(handle.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn at_the_bound_idle_breakers_go_first_then_the_least_recently_used() {
    let layer = layer(3);
    let handle = layer.handle();
    let service = layer.layer(inner());
    send(&service, "a", false).await.unwrap();
    advance(Duration::from_secs(30)).await;
    send(&service, "b", false).await.unwrap();
    advance(Duration::from_secs(30)).await;
    send(&service, "c", false).await.unwrap();
    // "a" has been idle for 60 s: it goes when "d" arrives.
    send(&service, "d", false).await.unwrap();
    let mut keys = handle.keys();
    keys.sort();
    assert_eq!(keys, ["b", "c", "d"]);
    // Nobody is idle now: the least recently used ("b") goes.
    send(&service, "c", false).await.unwrap();
    send(&service, "e", false).await.unwrap();
    let mut keys = handle.keys();
    keys.sort();
    assert_eq!(keys, ["c", "d", "e"]);
    assert_eq!(handle.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_evicted_key_starts_over_with_a_fresh_breaker() {
    let layer = layer(1);
    let service = layer.layer(inner());
    for _ in 0..2 {
        send(&service, "a", true).await.unwrap_err();
    }
    assert_eq!(layer.handle().get(&"a").unwrap().state(), State::Open);
    send(&service, "b", false).await.unwrap();
    assert!(layer.handle().get(&"a").is_none());
    send(&service, "a", false).await.unwrap();
    assert_eq!(layer.handle().get(&"a").unwrap().state(), State::Closed);
}

#[test]
fn bad_settings_are_refused() {
    let key = |r: &Request| r.0;
    let err = KeyedCircuitBreakerLayer::new(
        CircuitBreakerLayer::builder(),
        key,
        0,
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert_eq!(err.field(), "max_keys");
    let err = KeyedCircuitBreakerLayer::new(CircuitBreakerLayer::builder(), key, 5, Duration::ZERO)
        .unwrap_err();
    assert_eq!(err.field(), "idle_timeout");
    let err = KeyedCircuitBreakerLayer::new(
        CircuitBreakerLayer::builder().admission(Admission::Readiness),
        key,
        5,
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert_eq!(err.field(), "admission");
    let err = KeyedCircuitBreakerLayer::new(
        CircuitBreakerLayer::builder().failure_rate(2.0),
        key,
        5,
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert_eq!(err.field(), "failure_rate");
}
