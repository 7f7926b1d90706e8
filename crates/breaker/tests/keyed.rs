//! Keyed breakers: isolation per key, the bound on keys, idle and LRU eviction.

use std::time::Duration;

use tokio::time::advance;
use tower::{Layer, ServiceExt};
use tower_bulwark_breaker::{
    Admission, CircuitBreakerLayer, CircuitOpen, KeyedCircuitBreakerLayer, OpenDuration, State,
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

/// `n` distinct host names.
fn hosts(n: usize) -> Vec<&'static str> {
    (0..n).map(|i| &*format!("host-{i}").leak()).collect()
}

async fn trip<S>(service: &S, host: &'static str)
where
    S: tower::Service<Request, Response = (), Error = tower_bulwark_core::BoxError> + Clone,
{
    for _ in 0..2 {
        send(service, host, true).await.unwrap_err();
    }
}

/// The attack the bound invites: a stream of new keys at the bound must not reset the trip
/// of an open breaker while a closed one can go instead.
#[tokio::test(start_paused = true)]
async fn a_stream_of_new_keys_does_not_reset_open_breakers() {
    let layer = layer(8);
    let handle = layer.handle();
    let service = layer.layer(inner());
    trip(&service, "a").await;
    trip(&service, "b").await;
    for (i, host) in hosts(100).into_iter().enumerate() {
        advance(Duration::from_millis(10)).await;
        send(&service, host, false).await.unwrap();
        assert_eq!(handle.len(), (i + 3).min(8));
        assert_eq!(
            handle.get(&"a").map(|a| a.state()),
            Some(State::Open),
            "{host}"
        );
        assert_eq!(
            handle.get(&"b").map(|b| b.state()),
            Some(State::Open),
            "{host}"
        );
    }
}

/// At the bound an idle closed breaker goes, not an open one, even one idle for longer.
#[tokio::test(start_paused = true)]
async fn an_idle_closed_breaker_goes_before_an_idle_open_one() {
    let layer = layer(3);
    let handle = layer.handle();
    let service = layer.layer(inner());
    trip(&service, "open").await;
    advance(Duration::from_secs(1)).await;
    send(&service, "closed", false).await.unwrap();
    send(&service, "busy", false).await.unwrap();
    advance(Duration::from_secs(120)).await;
    send(&service, "busy", false).await.unwrap();
    send(&service, "new", false).await.unwrap();
    let mut keys = handle.keys();
    keys.sort();
    assert_eq!(keys, ["busy", "new", "open"]);
    assert_eq!(handle.get(&"open").unwrap().state(), State::Open);
}

/// Half-open breakers and the states an operator set are kept like open ones: the closed
/// breaker goes, though it was used last.
#[tokio::test(start_paused = true)]
async fn half_open_and_operator_states_are_kept_like_open_ones() {
    let layer = KeyedCircuitBreakerLayer::new(
        CircuitBreakerLayer::builder()
            .name("hosts")
            .consecutive_failures(2)
            .open_duration(OpenDuration::Fixed(Duration::from_secs(5)))
            .success_threshold(2),
        (|request: &Request| request.0) as fn(&Request) -> &'static str,
        4,
        Duration::from_secs(60),
    )
    .unwrap();
    let handle = layer.handle();
    let service = layer.layer(inner());
    trip(&service, "half-open").await;
    advance(Duration::from_secs(5)).await;
    send(&service, "half-open", false).await.unwrap();
    assert_eq!(handle.get(&"half-open").unwrap().state(), State::HalfOpen);
    send(&service, "forced-open", false).await.unwrap();
    handle.get(&"forced-open").unwrap().force_open();
    send(&service, "disabled", false).await.unwrap();
    handle.get(&"disabled").unwrap().disable();
    send(&service, "closed", false).await.unwrap();
    send(&service, "new", false).await.unwrap();
    let mut keys = handle.keys();
    keys.sort();
    assert_eq!(keys, ["disabled", "forced-open", "half-open", "new"]);
}

/// When every breaker is open, the least recently used ones go (a refused call is a use):
/// a new key is never refused for lack of room.
#[tokio::test(start_paused = true)]
async fn when_every_breaker_is_open_the_least_recently_used_goes() {
    let layer = layer(2);
    let handle = layer.handle();
    let service = layer.layer(inner());
    trip(&service, "a").await;
    advance(Duration::from_secs(1)).await;
    trip(&service, "b").await;
    advance(Duration::from_secs(1)).await;
    send(&service, "a", false).await.unwrap_err();
    send(&service, "c", false).await.unwrap();
    let mut keys = handle.keys();
    keys.sort();
    assert_eq!(keys, ["a", "c"]);
    assert_eq!(handle.get(&"a").unwrap().state(), State::Open);
}

/// A sweep at the bound makes room for an eighth of the bound at once: the least recently
/// used closed breakers go, open ones stay.
#[tokio::test(start_paused = true)]
async fn a_sweep_makes_room_for_an_eighth_of_the_bound() {
    let layer = layer(16);
    let handle = layer.handle();
    let service = layer.layer(inner());
    trip(&service, "open").await;
    let hosts = hosts(15);
    for host in &hosts {
        advance(Duration::from_millis(10)).await;
        send(&service, host, false).await.unwrap();
    }
    send(&service, "new", false).await.unwrap();
    // The two least recently used closed breakers went; the open one, older, stayed.
    assert_eq!(handle.len(), 15);
    assert!(handle.get(&hosts[0]).is_none() && handle.get(&hosts[1]).is_none());
    assert!(handle.get(&hosts[2]).is_some());
    assert_eq!(handle.get(&"open").unwrap().state(), State::Open);
    // The next new key fits without a sweep.
    send(&service, "newer", false).await.unwrap();
    assert_eq!(handle.len(), 16);
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
