//! The last-good cache replaces a key's answer at most once per refresh period, so a hot
//! key's successes are not copied each time; answers that vary are always stored.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{call, get, Backend};
use tower::{Layer, Service};
use tower_bulwark_core::BoxError;
use tower_bulwark_fallback::{FallbackEvent, FallbackLayer};

/// A last-good fallback (TTL 60 s) refreshing every `refresh` (`None`: the default)
/// around `backend`, and how many answers it stored.
fn cached(
    backend: &Backend,
    refresh: Option<Duration>,
) -> (
    impl Service<http::Request<()>, Response = http::Response<String>, Error = BoxError> + Clone,
    Arc<Mutex<usize>>,
) {
    let stored = Arc::new(Mutex::new(0));
    let count = stored.clone();
    let mut builder = FallbackLayer::builder()
        .last_good(Duration::from_secs(60), 100)
        .on_event(move |event: &FallbackEvent| {
            if matches!(event, FallbackEvent::Stored { .. }) {
                *count.lock().unwrap() += 1;
            }
        });
    if let Some(refresh) = refresh {
        builder = builder.last_good_refresh(refresh);
    }
    (builder.build().unwrap().layer(backend.service()), stored)
}

/// The `etag` of the answer the fallback serves for `/a` while the backend is down.
async fn served_etag<S>(service: &S, backend: &Backend) -> String
where
    S: Service<http::Request<()>, Response = http::Response<String>, Error = BoxError> + Clone,
{
    backend.fail();
    let response = call(service, get("/a")).await.unwrap();
    response.headers()["etag"].to_str().unwrap().to_string()
}

#[tokio::test(start_paused = true)]
async fn by_default_a_key_is_stored_again_after_a_second() {
    let backend = Backend::new();
    let (service, stored) = cached(&backend, None);
    backend.respond(200, &[("etag", "1")]);
    call(&service, get("/a")).await.unwrap();
    backend.respond(200, &[("etag", "2")]);
    for _ in 0..100 {
        call(&service, get("/a")).await.unwrap();
    }
    assert_eq!(*stored.lock().unwrap(), 1, "101 successes, one copy");
    assert_eq!(served_etag(&service, &backend).await, "1");

    tokio::time::advance(Duration::from_millis(999)).await;
    backend.respond(200, &[("etag", "2")]);
    call(&service, get("/a")).await.unwrap();
    assert_eq!(*stored.lock().unwrap(), 1, "within the second");

    tokio::time::advance(Duration::from_millis(1)).await;
    backend.respond(200, &[("etag", "3")]);
    call(&service, get("/a")).await.unwrap();
    assert_eq!(*stored.lock().unwrap(), 2, "a second later");
    assert_eq!(served_etag(&service, &backend).await, "3");

    // Another key is stored at once.
    backend.respond(200, &[("etag", "b")]);
    call(&service, get("/b")).await.unwrap();
    assert_eq!(*stored.lock().unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_short_ttl_refreshes_every_tenth_of_it() {
    let backend = Backend::new();
    let stored = Arc::new(Mutex::new(0));
    let count = stored.clone();
    let service = FallbackLayer::builder()
        .last_good(Duration::from_millis(500), 100)
        .on_event(move |event: &FallbackEvent| {
            if matches!(event, FallbackEvent::Stored { .. }) {
                *count.lock().unwrap() += 1;
            }
        })
        .build()
        .unwrap()
        .layer(backend.service());
    call(&service, get("/a")).await.unwrap();
    tokio::time::advance(Duration::from_millis(49)).await;
    call(&service, get("/a")).await.unwrap();
    assert_eq!(*stored.lock().unwrap(), 1);
    tokio::time::advance(Duration::from_millis(1)).await;
    call(&service, get("/a")).await.unwrap();
    assert_eq!(*stored.lock().unwrap(), 2, "50 ms is a tenth of 500 ms");
}

#[tokio::test(start_paused = true)]
async fn a_zero_period_stores_every_success() {
    let backend = Backend::new();
    let (service, stored) = cached(&backend, Some(Duration::ZERO));
    for etag in ["1", "2", "3"] {
        backend.respond(200, &[("etag", etag)]);
        call(&service, get("/a")).await.unwrap();
    }
    assert_eq!(*stored.lock().unwrap(), 3);
    assert_eq!(served_etag(&service, &backend).await, "3", "the latest");
}

#[tokio::test(start_paused = true)]
async fn an_answer_that_varies_is_stored_each_time() {
    let backend = Backend::new();
    let (service, stored) = cached(&backend, None);
    for etag in ["1", "2", "3"] {
        backend.respond(200, &[("vary", "accept-language"), ("etag", etag)]);
        call(&service, get("/a")).await.unwrap();
    }
    // The first could not be kept (the cache did not yet keep request headers); the next
    // two were, within the same instant.
    assert_eq!(*stored.lock().unwrap(), 2);
    assert_eq!(served_etag(&service, &backend).await, "3");
}

#[test]
fn the_refresh_period_is_checked() {
    let builder = || FallbackLayer::builder::<String>().last_good(Duration::from_secs(1), 10);
    for period in [
        Duration::from_secs(1),
        Duration::from_secs(2),
        Duration::MAX,
    ] {
        let error = builder().last_good_refresh(period).build().unwrap_err();
        assert_eq!(error.field(), "last_good.refresh", "{period:?}");
    }
    assert!(builder()
        .last_good_refresh(Duration::from_millis(999))
        .build()
        .is_ok());
    let without_cache = FallbackLayer::builder::<String>()
        .static_response(http::Response::new(String::new()))
        .last_good_refresh(Duration::from_millis(10))
        .build()
        .unwrap_err();
    assert_eq!(without_cache.field(), "last_good.refresh");
}

#[tokio::test(start_paused = true)]
async fn a_key_dropped_by_the_bound_is_stored_again_at_its_next_success() {
    let backend = Backend::new();
    let service = FallbackLayer::builder()
        .last_good(Duration::from_secs(60), 2)
        .build()
        .unwrap()
        .layer(backend.service());
    backend.respond(200, &[("etag", "1")]);
    call(&service, get("/a")).await.unwrap();
    // Two other keys: "/a" is dropped by the bound, its stamp still fresh.
    call(&service, get("/b")).await.unwrap();
    call(&service, get("/c")).await.unwrap();
    backend.respond(200, &[("etag", "2")]);
    call(&service, get("/a")).await.unwrap();
    let served = served_etag(&service, &backend).await;
    assert_eq!(served, "2", "the success after the drop was kept");
}

#[tokio::test(start_paused = true)]
async fn an_answer_that_stops_varying_replaces_the_varied_one_at_once() {
    let backend = Backend::new();
    let (service, _) = cached(&backend, None);
    let with_language = |language: &'static str| {
        http::Request::get("/a")
            .header("accept-language", language)
            .body(())
            .unwrap()
    };
    backend.respond(200, &[("etag", "1")]);
    call(&service, get("/a")).await.unwrap();
    // The backend varies for a while: the answer kept is the one for English.
    backend.respond(200, &[("vary", "accept-language"), ("etag", "en")]);
    call(&service, with_language("en")).await.unwrap();
    call(&service, with_language("en")).await.unwrap();
    // It stops varying, within the refresh period of the first store.
    backend.respond(200, &[("etag", "3")]);
    call(&service, with_language("en")).await.unwrap();
    backend.fail();
    let response = call(&service, with_language("fr"))
        .await
        .expect("the latest answer varies on nothing: it answers French too");
    assert_eq!(response.headers()["etag"], "3");
}
