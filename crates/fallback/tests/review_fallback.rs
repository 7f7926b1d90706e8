//! Review: whom the last-good cache answers, and which calls fall back.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_bulwark_core::{BoxError, Rejection, RejectionKind};
use tower_bulwark_fallback::{FallbackEvent, FallbackLayer, FallbackOn, Unstorable};

/// A backend whose answers are personal: the body names the `cookie` and `host` it was
/// asked with. Fails every call once `down` is set.
fn personal(
    down: Arc<AtomicBool>,
) -> impl Service<
    Request<()>,
    Response = Response<String>,
    Error = BoxError,
    Future = impl std::future::Future<Output = Result<Response<String>, BoxError>>,
> + Clone {
    service_fn(move |request: Request<()>| {
        let header = |name| {
            request
                .headers()
                .get(name)
                .map_or("-", |value: &http::HeaderValue| value.to_str().unwrap())
                .to_string()
        };
        let result = if down.load(Ordering::Relaxed) {
            Err::<_, BoxError>("connection refused".into())
        } else {
            Ok(Response::new(format!(
                "{} {} for {}",
                header("host"),
                request.uri().path(),
                header("cookie")
            )))
        };
        std::future::ready(result)
    })
}

fn get(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(()).unwrap()
}

fn cached<S>(
    inner: S,
) -> impl Service<Request<()>, Response = Response<String>, Error = BoxError> + Clone
where
    S: Service<Request<()>, Response = Response<String>, Error = BoxError> + Clone,
{
    FallbackLayer::builder()
        .last_good(Duration::from_secs(60), 100)
        .build()
        .unwrap()
        .layer(inner)
}

#[tokio::test(start_paused = true)]
async fn an_answer_to_a_request_with_a_cookie_is_not_served_to_another_user() {
    let down = Arc::new(AtomicBool::new(false));
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let service = FallbackLayer::builder()
        .last_good(Duration::from_secs(60), 100)
        .on_event(move |event: &FallbackEvent| sink.lock().unwrap().push(event.clone()))
        .build()
        .unwrap()
        .layer(personal(down.clone()));
    let alice = [("cookie", "session=alice")];
    let mine = service
        .clone()
        .oneshot(get("/account", &alice))
        .await
        .unwrap();
    assert_eq!(mine.body(), "- /account for session=alice");

    down.store(true, Ordering::Relaxed);
    let bob = [("cookie", "session=bob")];
    match service.clone().oneshot(get("/account", &bob)).await {
        Err(error) => assert_eq!(error.to_string(), "connection refused"),
        Ok(response) => panic!("bob was served {:?}", response.body()),
    }
    assert_eq!(
        events.lock().unwrap()[0],
        FallbackEvent::NotStored {
            fallback: "fallback".into(),
            why: Unstorable::Cookie,
        }
    );
    assert_eq!(Unstorable::Cookie.as_str(), "cookie");
}

#[tokio::test(start_paused = true)]
async fn an_answer_to_a_request_with_a_cookie_is_kept_when_it_says_it_may_be_shared() {
    let down = Arc::new(AtomicBool::new(false));
    let shared = service_fn({
        let down = down.clone();
        move |_: Request<()>| {
            let result = if down.load(Ordering::Relaxed) {
                Err::<_, BoxError>("connection refused".into())
            } else {
                Ok(Response::builder()
                    .header("cache-control", "public, max-age=60")
                    .body("the catalogue".to_string())
                    .unwrap())
            };
            std::future::ready(result)
        }
    });
    let service = cached(shared);
    let with_cookie = [("cookie", "session=alice")];
    service
        .clone()
        .oneshot(get("/catalogue", &with_cookie))
        .await
        .unwrap();
    down.store(true, Ordering::Relaxed);
    let stale = service.oneshot(get("/catalogue", &[])).await.unwrap();
    assert_eq!(stale.body(), "the catalogue");
    assert_eq!(stale.headers()["x-bulwark-degraded"], "last-good");
}

#[tokio::test(start_paused = true)]
async fn origin_form_requests_to_two_hosts_get_their_own_last_good() {
    // An HTTP/1.1 server sees `GET /` with a `Host` header, not an absolute URI.
    let down = Arc::new(AtomicBool::new(false));
    let service = cached(personal(down.clone()));
    let a = service
        .clone()
        .oneshot(get("/", &[("host", "tenant-a.example")]))
        .await
        .unwrap();
    assert_eq!(a.body(), "tenant-a.example / for -");

    down.store(true, Ordering::Relaxed);
    match service
        .clone()
        .oneshot(get("/", &[("host", "tenant-b.example")]))
        .await
    {
        Err(error) => assert_eq!(error.to_string(), "connection refused"),
        Ok(response) => panic!("tenant b was served {:?}", response.body()),
    }
    let stale = service
        .oneshot(get("/", &[("host", "tenant-a.example")]))
        .await
        .unwrap();
    assert_eq!(stale.body(), "tenant-a.example / for -");
    assert_eq!(stale.headers()["x-bulwark-degraded"], "last-good");
}

/// A layer below that answers every call with `error`.
fn refusing(
    kind: RejectionKind,
) -> impl Service<
    Request<()>,
    Response = Response<String>,
    Error = BoxError,
    Future = impl std::future::Future<Output = Result<Response<String>, BoxError>>,
> + Clone {
    service_fn(move |_: Request<()>| {
        std::future::ready(Err::<Response<String>, BoxError>(
            Rejection::new(kind, "below").into(),
        ))
    })
}

#[tokio::test(start_paused = true)]
async fn only_rejections_means_refusals_not_an_attempt_that_timed_out() {
    let layer = FallbackLayer::builder()
        .static_response(Response::new("later".to_string()))
        .on(FallbackOn::Rejections)
        .build()
        .unwrap();
    for kind in [
        RejectionKind::CircuitOpen,
        RejectionKind::BulkheadFull,
        RejectionKind::Overloaded,
    ] {
        let answer = layer
            .layer(refusing(kind))
            .oneshot(get("/", &[]))
            .await
            .unwrap();
        assert_eq!(
            answer.body(),
            "later",
            "{kind:?}: the dependency was not asked"
        );
    }
    // The dependency was asked and was too slow: a failure, which this mode passes on.
    let error = layer
        .layer(refusing(RejectionKind::TimedOut))
        .oneshot(get("/", &[]))
        .await
        .unwrap_err();
    assert_eq!(
        tower_bulwark_core::find_rejection(&error).map(Rejection::kind),
        Some(RejectionKind::TimedOut)
    );

    // With the default, failures fall back too, the attempt timeout included.
    let answer = FallbackLayer::builder()
        .static_response(Response::new("later".to_string()))
        .build()
        .unwrap()
        .layer(refusing(RejectionKind::TimedOut))
        .oneshot(get("/", &[]))
        .await
        .unwrap();
    assert_eq!(answer.body(), "later");
}
