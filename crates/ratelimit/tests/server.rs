//! `RateLimitLayer` as a tower service, in paused time: refusals and their headers, keys,
//! gRPC, criticality tiers, a failing limiter, a limiter that answers through a future,
//! and how the suite's classifiers read its refusals.

mod helpers;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt};
use tower_bulwark_core::testing::ReadinessProbe;
use tower_bulwark_core::{
    Classify, Criticality, GrpcClassifier, HttpClassifier, Outcome, Rejection, RejectionKind,
};
use tower_bulwark_ratelimit::key::HeaderKey;
use tower_bulwark_ratelimit::{
    key, LocalLimiter, OnLimiterError, Quota, RateLimitEvent, RateLimitLayer, RATELIMIT_POLICY,
};

use helpers::{counting, header, recorder, request, Broken, Remote};

fn by_client() -> impl Fn(&http::request::Parts) -> Option<HeaderKey> + Clone + Send + Sync {
    key::header(HeaderName::from_static("x-client"))
}

/// 2 a minute (one back every 30 s), both at once, named `api`.
fn quota() -> Quota {
    Quota::per_minute(2).unwrap().name("api")
}

#[tokio::test(start_paused = true)]
async fn over_the_limit_is_refused_at_once_with_429_retry_after_and_the_draft_headers() {
    let (inner, calls) = counting();
    let layer = RateLimitLayer::builder(LocalLimiter::new(quota()), key::global)
        .build()
        .unwrap();
    let service = layer.layer(inner);

    let first = service.clone().oneshot(request(&[])).await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(
        header(&first, "ratelimit-policy"),
        Some(r#""api";q=2;w=60"#)
    );
    assert_eq!(header(&first, "ratelimit"), Some(r#""api";r=1;t=30"#));
    assert_eq!(header(&first, "retry-after"), None);
    let second = service.clone().oneshot(request(&[])).await.unwrap();
    assert_eq!(header(&second, "ratelimit"), Some(r#""api";r=0;t=60"#));

    advance(Duration::from_millis(10_500)).await;
    let refused = service.clone().oneshot(request(&[])).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(
        header(&refused, "retry-after"),
        Some("20"),
        "19.5 s, rounded up"
    );
    assert_eq!(
        header(&refused, "ratelimit-policy"),
        Some(r#""api";q=2;w=60"#)
    );
    assert_eq!(header(&refused, "ratelimit"), Some(r#""api";r=0;t=50"#));
    assert_eq!(refused.body(), "");
    let rejection = refused.extensions().get::<Rejection>().unwrap();
    assert_eq!(rejection.kind(), RejectionKind::Throttled);
    assert_eq!(rejection.layer(), "ratelimit");
    assert_eq!(rejection.retry_after(), Some(Duration::from_millis(19_500)));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "a refusal never reaches the service"
    );

    advance(Duration::from_millis(19_500)).await;
    let again = service.oneshot(request(&[])).await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(header(&again, "ratelimit"), Some(r#""api";r=0;t=60"#));
}

#[tokio::test(start_paused = true)]
async fn admitted_responses_go_without_headers_when_asked() {
    let (inner, _) = counting();
    let layer = RateLimitLayer::builder(LocalLimiter::new(quota()), key::global)
        .admitted_headers(false)
        .build()
        .unwrap();
    let service = layer.layer(inner);
    for _ in 0..2 {
        let admitted = service.clone().oneshot(request(&[])).await.unwrap();
        assert!(admitted.headers().is_empty(), "{:?}", admitted.headers());
    }
    let refused = service.oneshot(request(&[])).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "ratelimit"), Some(r#""api";r=0;t=60"#));
}

#[tokio::test(start_paused = true)]
async fn stacked_limits_each_report_their_quota() {
    let (inner, _) = counting();
    let per_client = Quota::per_minute(10).unwrap().name("client");
    let per_client = RateLimitLayer::builder(LocalLimiter::new(per_client), by_client())
        .build()
        .unwrap();
    let overall = RateLimitLayer::builder(LocalLimiter::new(quota()), key::global)
        .build()
        .unwrap();
    let service = per_client.layer(overall.layer(inner));
    let response = service
        .oneshot(request(&[("x-client", "a")]))
        .await
        .unwrap();
    let all = |name| {
        let values = response.headers().get_all(name).iter();
        values.map(|v| v.to_str().unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(
        all("ratelimit-policy"),
        [r#""api";q=2;w=60"#, r#""client";q=10;w=60"#]
    );
    assert_eq!(
        all("ratelimit"),
        [r#""api";r=1;t=30"#, r#""client";r=9;t=6"#]
    );
}

#[tokio::test(start_paused = true)]
async fn keys_are_limited_apart_and_requests_without_one_pass_untouched() {
    let (inner, calls) = counting();
    let (listener, events) = recorder();
    let layer = RateLimitLayer::builder(LocalLimiter::new(quota()), by_client())
        .on_event(listener)
        .build()
        .unwrap();
    let service = layer.layer(inner);
    let status = |client: Option<&'static str>| {
        let service = service.clone();
        async move {
            let headers: &[(&str, &str)] = match client {
                Some(client) => &[("x-client", client)],
                None => &[],
            };
            let headers = headers.to_vec();
            service.oneshot(request(&headers)).await.unwrap()
        }
    };
    for _ in 0..2 {
        assert_eq!(status(Some("a")).await.status(), 200);
    }
    assert_eq!(status(Some("a")).await.status(), 429);
    assert_eq!(status(Some("b")).await.status(), 200, "b has its own limit");
    for _ in 0..5 {
        let keyless = status(None).await;
        assert_eq!(keyless.status(), 200);
        assert!(keyless.headers().is_empty(), "not limited, no headers");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 8);
    assert_eq!(
        events.lock().unwrap().len(),
        4,
        "keyless requests report nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn a_grpc_request_is_refused_with_resource_exhausted_trailers_only() {
    let (inner, _) = counting();
    let layer = RateLimitLayer::builder(LocalLimiter::new(quota()), key::global)
        .build()
        .unwrap();
    let service = layer.layer(inner);
    let grpc = || request(&[("content-type", "application/grpc+proto")]);
    for _ in 0..2 {
        assert_eq!(service.clone().oneshot(grpc()).await.unwrap().status(), 200);
    }
    advance(Duration::from_millis(100)).await;
    let refused = service.oneshot(grpc()).await.unwrap();
    assert_eq!(refused.status(), 200, "gRPC errors travel in grpc-status");
    assert_eq!(header(&refused, "grpc-status"), Some("8"));
    assert_eq!(header(&refused, "grpc-retry-pushback-ms"), Some("29900"));
    assert_eq!(header(&refused, "content-type"), Some("application/grpc"));
    assert_eq!(header(&refused, "retry-after"), None);
    assert_eq!(header(&refused, "ratelimit"), Some(r#""api";r=0;t=60"#));
    assert_eq!(
        refused.extensions().get::<Rejection>().unwrap().kind(),
        RejectionKind::Throttled
    );
}

/// 8 a minute per key; by default sheddable-plus (with sheddable) gets half, sheddable a
/// quarter.
fn tiered() -> RateLimitLayer<LocalLimiter<()>, ()> {
    let quota = Quota::per_minute(8).unwrap().name("api");
    RateLimitLayer::local(quota, key::global)
        .unwrap()
        .build()
        .unwrap()
}

fn tier(level: &str) -> http::Request<String> {
    request(&[("x-request-criticality", level)])
}

#[tokio::test(start_paused = true)]
async fn sheddable_traffic_is_refused_before_critical_and_the_total_stays_within_the_quota() {
    let (inner, calls) = counting();
    let service = tiered().layer(inner);
    let send = |request| service.clone().oneshot(request);

    // A sheddable request passes its quarter, the half above it, then the base.
    let first = send(tier("sheddable")).await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(
        header(&first, "ratelimit-policy"),
        Some(r#""api-sheddable";q=8;w=240, "api-sheddable-plus";q=8;w=120, "api";q=8;w=60"#)
    );
    assert_eq!(
        header(&first, "ratelimit"),
        Some(r#""api-sheddable";r=1;t=30, "api-sheddable-plus";r=3;t=15, "api";r=7;t=8"#)
    );
    assert_eq!(send(tier("sheddable")).await.unwrap().status(), 200);
    let shed = send(tier("sheddable")).await.unwrap();
    assert_eq!(shed.status(), 429, "sheddable's quarter is spent");
    assert_eq!(header(&shed, "retry-after"), Some("30"));
    assert_eq!(
        header(&shed, "ratelimit"),
        Some(r#""api-sheddable";r=0;t=60"#)
    );

    // sheddable-plus shares its half with sheddable: 4, of which 2 are left.
    for _ in 0..2 {
        assert_eq!(send(tier("sheddable-plus")).await.unwrap().status(), 200);
    }
    let half = send(tier("sheddable-plus")).await.unwrap();
    assert_eq!(half.status(), 429);
    assert_eq!(
        header(&half, "ratelimit"),
        Some(r#""api-sheddable-plus";r=0;t=60"#)
    );

    // Critical traffic gets what is left of the base quota (at least half), and no more.
    let critical = send(tier("critical")).await.unwrap();
    assert_eq!(critical.status(), 200);
    assert_eq!(
        header(&critical, "ratelimit-policy"),
        Some(r#""api";q=8;w=60"#)
    );
    assert_eq!(header(&critical, "ratelimit"), Some(r#""api";r=3;t=38"#));
    for _ in 0..3 {
        assert_eq!(send(tier("critical")).await.unwrap().status(), 200);
    }
    let over = send(request(&[])).await.unwrap();
    assert_eq!(
        over.status(),
        429,
        "a key's total never passes the base quota"
    );
    assert_eq!(header(&over, "ratelimit"), Some(r#""api";r=0;t=60"#));
    assert_eq!(calls.load(Ordering::SeqCst), 8);
}

#[tokio::test(start_paused = true)]
async fn critical_traffic_keeps_half_whatever_tiers_the_rest_claims() {
    // 100 a minute, all at once; the default tiers. In either order the low tiers take
    // at most half, sheddable at most a quarter.
    for order in [
        ["sheddable", "sheddable-plus"],
        ["sheddable-plus", "sheddable"],
    ] {
        let layer = RateLimitLayer::local(Quota::per_minute(100).unwrap(), key::global)
            .unwrap()
            .build()
            .unwrap();
        let (inner, _) = counting();
        let service = layer.layer(inner);
        let admitted = |level: &'static str| {
            let service = service.clone();
            async move {
                let mut count = 0;
                for _ in 0..100 {
                    let response = service.clone().oneshot(tier(level)).await.unwrap();
                    count += usize::from(response.status() == 200);
                }
                count
            }
        };
        let low = [admitted(order[0]).await, admitted(order[1]).await];
        let expected = if order[0] == "sheddable" {
            [25, 25]
        } else {
            [50, 0]
        };
        assert_eq!(low, expected, "{order:?}");
        assert_eq!(admitted("critical").await, 50, "{order:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_header_cannot_raise_a_request_but_the_server_can() {
    let (inner, _) = counting();
    let service = tiered().layer(inner);
    for _ in 0..8 {
        service.clone().oneshot(tier("critical")).await.unwrap();
    }
    // Claiming critical-plus does not get past the base quota either.
    let claimed = service
        .clone()
        .oneshot(tier("critical-plus"))
        .await
        .unwrap();
    assert_eq!(claimed.status(), 429);

    // A criticality the server put in the extensions is believed, even below the header.
    let (inner, _) = counting();
    let service = tiered().layer(inner);
    for expected in [200, 200, 429] {
        let mut request = tier("critical");
        request.extensions_mut().insert(Criticality::Sheddable);
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), expected);
    }
}

#[tokio::test(start_paused = true)]
async fn a_trust_rule_may_believe_a_raised_header() {
    let (inner, _) = counting();
    let quota = Quota::per_minute(4).unwrap();
    let layer = RateLimitLayer::local(quota, key::global)
        .unwrap()
        .criticality(|parts| {
            if parts.headers.contains_key("x-internal") {
                Criticality::from_headers(&parts.headers)
            } else {
                tower_bulwark_ratelimit::criticality_of(parts)
            }
        })
        .build()
        .unwrap();
    let service = layer.layer(inner);
    // Internal callers may label their batch as sheddable (a quarter: 1), and be believed.
    let internal = || request(&[("x-internal", "1"), ("x-request-criticality", "sheddable")]);
    assert_eq!(
        service.clone().oneshot(internal()).await.unwrap().status(),
        200
    );
    assert_eq!(
        service.clone().oneshot(internal()).await.unwrap().status(),
        429
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_limiter_lets_requests_through_by_default() {
    let (inner, calls) = counting();
    let (listener, events) = recorder();
    let layer = RateLimitLayer::builder(Broken(quota()), key::global)
        .on_event(listener)
        .build()
        .unwrap();
    let response = layer.layer(inner).oneshot(request(&[])).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().is_empty(), "no limit known, no headers");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let events = events.lock().unwrap();
    let [RateLimitEvent::LimiterFailed {
        failed_open,
        error,
        criticality,
        ..
    }] = &events[..]
    else {
        panic!("{events:?}");
    };
    assert!(*failed_open);
    assert_eq!(*criticality, Criticality::Critical);
    assert_eq!(error.to_string(), "rate limiter failed: connection refused");
}

#[tokio::test(start_paused = true)]
async fn a_failing_limiter_refuses_with_503_when_failing_closed() {
    let (inner, calls) = counting();
    let layer = RateLimitLayer::builder(Broken(quota()), key::global)
        .on_limiter_error(OnLimiterError::FailClosed)
        .build()
        .unwrap();
    let service = layer.layer(inner);
    let http = service.clone().oneshot(request(&[])).await.unwrap();
    assert_eq!(http.status(), 503);
    assert_eq!(header(&http, "ratelimit"), None);
    let grpc = service
        .oneshot(request(&[("content-type", "application/grpc")]))
        .await
        .unwrap();
    assert_eq!(grpc.status(), 200);
    assert_eq!(header(&grpc, "grpc-status"), Some("14"));
    assert_eq!(
        header(&grpc, "grpc-message"),
        Some("rate limiter unavailable")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_limiter_that_answers_later_holds_the_request_and_calls_the_readied_service() {
    let (inner, calls) = counting();
    let remote = Remote::new(Quota::per_minute(1).unwrap(), Duration::from_millis(5));
    let layer = RateLimitLayer::builder(remote.clone(), |_: &http::request::Parts| Some(7u8))
        .build()
        .unwrap();
    // Panics if the service called was not the one readied.
    let mut service = layer.layer(ReadinessProbe::new(inner));
    let start = tokio::time::Instant::now();
    let admitted = service
        .ready()
        .await
        .unwrap()
        .call(request(&[]))
        .await
        .unwrap();
    assert_eq!(admitted.status(), 200);
    assert_eq!(start.elapsed(), Duration::from_millis(5));
    assert_eq!(
        header(&admitted, "ratelimit"),
        Some(r#""default";r=0;t=60"#)
    );
    let refused = service
        .ready()
        .await
        .unwrap()
        .call(request(&[]))
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Dropped while the limiter answers: nothing is called, the request goes with it.
    advance(Duration::from_secs(60)).await;
    let waiting = service.ready().await.unwrap().call(request(&[]));
    drop(waiting);
    assert_eq!(remote.answered.load(Ordering::SeqCst), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let later = service
        .ready()
        .await
        .unwrap()
        .call(request(&[]))
        .await
        .unwrap();
    assert_eq!(later.status(), 200, "the dropped call took no permit");
}

#[tokio::test(start_paused = true)]
async fn tiers_over_a_limiter_that_answers_later() {
    let (inner, calls) = counting();
    let delay = Duration::from_millis(5);
    let base = Remote::new(Quota::per_minute(4).unwrap().name("all"), delay);
    let sheddable = Remote::new(Quota::per_minute(1).unwrap().name("low"), delay);
    let layer = RateLimitLayer::builder(base, |_: &http::request::Parts| Some(1u8))
        .tier(Criticality::Sheddable, sheddable)
        .build()
        .unwrap();
    let service = layer.layer(inner);
    let start = tokio::time::Instant::now();
    let low = service.clone().oneshot(tier("sheddable")).await.unwrap();
    assert_eq!(
        start.elapsed(),
        2 * delay,
        "two limiters asked, one after the other"
    );
    assert_eq!(
        header(&low, "ratelimit"),
        Some(r#""low";r=0;t=60, "all";r=3;t=15"#)
    );
    let refused = service.clone().oneshot(tier("sheddable")).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "ratelimit"), Some(r#""low";r=0;t=60"#));
    assert_eq!(
        service
            .clone()
            .oneshot(tier("critical"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn a_name_the_docs_accept_builds_with_the_default_tiers() {
    // Up to 64 characters; the default tiers append `-sheddable-plus` to it.
    let named = |len: usize| Quota::per_minute(100).unwrap().name("n".repeat(len));
    let built = RateLimitLayer::local(named(64), key::global)
        .unwrap()
        .build()
        .map(drop);
    assert!(built.is_ok(), "{built:?}");
    let err = RateLimitLayer::local(named(65), key::global)
        .unwrap()
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "quota");
}

#[tokio::test(start_paused = true)]
async fn a_sub_second_window_is_advertised_at_its_real_rate() {
    // 10 per 100 ms: 100 a second.
    let quota = Quota::per_window(10, Duration::from_millis(100))
        .unwrap()
        .name("fast");
    let layer = RateLimitLayer::builder(LocalLimiter::new(quota), key::global)
        .build()
        .unwrap();
    let (inner, _) = counting();
    let response = layer.layer(inner).oneshot(request(&[])).await.unwrap();
    assert_eq!(response.headers()[RATELIMIT_POLICY], r#""fast";q=100;w=1"#);
}

#[tokio::test(start_paused = true)]
async fn the_layers_own_refusal_reads_as_a_refusal_to_the_suites_classifiers() {
    let layer = RateLimitLayer::local(Quota::per_minute(1).unwrap(), key::global)
        .unwrap()
        .build()
        .unwrap();
    let (inner, _) = counting();
    let service = layer.layer(inner);
    let ok = service.clone().oneshot(request(&[])).await;
    assert_eq!(HttpClassifier.classify(&ok), Outcome::Success);
    // Rule 1 of docs/composition.md: a refusal by a bulwark layer says nothing about the
    // dependency. A shed limit, a breaker or a fallback above this layer (a per-route
    // limit under the server preset's shed) reads this response.
    let refused = service.clone().oneshot(request(&[])).await;
    assert_eq!(refused.as_ref().unwrap().status(), 429);
    assert_eq!(HttpClassifier.classify(&refused), Outcome::Ignored);
    assert_eq!(HttpClassifier.classify_load(&refused), Outcome::Ignored);
    let grpc = service
        .oneshot(request(&[("content-type", "application/grpc")]))
        .await;
    assert_eq!(header(grpc.as_ref().unwrap(), "grpc-status"), Some("8"));
    assert_eq!(GrpcClassifier.classify(&grpc), Outcome::Ignored);
    assert_eq!(GrpcClassifier.classify_load(&grpc), Outcome::Ignored);
}

#[tokio::test(start_paused = true)]
async fn a_header_key_does_not_keep_the_connections_read_buffer_alive() {
    // hyper's header values are slices of the connection's read buffer (8 KiB and up).
    let read_buffer = Bytes::from(vec![b'k'; 1 << 20]);
    let sanity = HeaderValue::from_maybe_shared(read_buffer.slice(0..8)).unwrap();
    drop(sanity);
    assert!(read_buffer.is_unique(), "the test's own check works");

    let by_api_key = key::header(HeaderName::from_static("x-api-key"));
    let layer = RateLimitLayer::local(Quota::per_minute(1).unwrap(), by_api_key)
        .unwrap()
        .admitted_headers(false)
        .build()
        .unwrap();
    let (inner, _) = counting();
    let service = layer.layer(inner);
    let with_key = |value: HeaderValue| {
        let mut request = Request::new(String::new());
        request.headers_mut().insert("x-api-key", value);
        service.clone().oneshot(request)
    };
    let api_key = HeaderValue::from_maybe_shared(read_buffer.slice(0..8)).unwrap();
    assert_eq!(with_key(api_key).await.unwrap().status(), 200);
    assert!(
        read_buffer.is_unique(),
        "an 8-byte key holds the whole 1 MiB buffer for as long as the key is remembered \
         (up to 100,000 keys)"
    );
    // The key is remembered all the same, by its bytes.
    let same = HeaderValue::from_static("kkkkkkkk");
    assert_eq!(with_key(same).await.unwrap().status(), 429);
}

#[test]
fn bad_layer_settings_name_their_field() {
    let named =
        |name: &'static str| LocalLimiter::<()>::new(Quota::per_second(1).unwrap().name(name));
    let err = RateLimitLayer::builder(named("bad\"\u{e9}"), key::global)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "quota");
    let err = RateLimitLayer::builder(named("same"), key::global)
        .tier(Criticality::Sheddable, named("same"))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "tier");
    let err = RateLimitLayer::builder(named("base"), key::global)
        .tier(Criticality::Sheddable, named("low"))
        .tier(Criticality::SheddablePlus, named("low"))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "tier");
    assert!(RateLimitLayer::builder(named("base"), key::global)
        .tier(Criticality::Sheddable, named("low"))
        .no_tier(Criticality::Sheddable)
        .tier(Criticality::SheddablePlus, named("low"))
        .build()
        .is_ok());
}
