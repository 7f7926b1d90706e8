//! Fallbacks over real HTTP: a catalogue service that works, then fails; the client keeps
//! answering from the last good response, a static one, or a function of the failure.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::Full;
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark::fallback::{
    Degraded, Failure, FallbackEvent, FallbackFailed, FallbackLayer, FallbackOn, Reason,
    RequestKey, Source,
};
use tower_bulwark::{BoxError, HttpClassifier, Rejection, RejectionKind};
use tower_bulwark_tests::{send, serve_axum};

/// A server answering `/item/{id}` with its id, or with the status set in `status`.
async fn catalogue(status: Arc<AtomicU16>) -> std::net::SocketAddr {
    let app = Router::new().route(
        "/item/{id}",
        get(
            move |axum::extract::Path(id): axum::extract::Path<String>| {
                let status = status.load(Ordering::SeqCst);
                async move {
                    match status {
                        200 => (StatusCode::OK, format!("item {id}")),
                        code => (StatusCode::from_u16(code).unwrap(), "down".to_string()),
                    }
                }
            },
        ),
    );
    serve_axum(app).await
}

/// A client of `addr`: the response and its body.
fn client(
    addr: std::net::SocketAddr,
) -> impl tower::Service<
    http::Request<Full<Bytes>>,
    Response = http::Response<Bytes>,
    Error = BoxError,
    Future = impl Send,
> + Clone {
    service_fn(move |request: http::Request<Full<Bytes>>| async move {
        let received = send(addr, request).await;
        Ok::<_, BoxError>(http::Response::from_parts(received.head, received.body))
    })
}

fn get_item(id: u32) -> http::Request<Full<Bytes>> {
    http::Request::get(format!("/item/{id}"))
        .body(Full::default())
        .unwrap()
}

#[tokio::test]
async fn the_last_good_response_then_a_static_one() {
    let status = Arc::new(AtomicU16::new(200));
    let addr = catalogue(status.clone()).await;
    let fallback = FallbackLayer::builder()
        .key(|request: &http::Request<Full<Bytes>>| request.uri().path().to_string())
        .last_good(Duration::from_secs(60), 100)
        .static_response(http::Response::new(Bytes::from_static(
            b"catalogue unavailable",
        )))
        .classify(HttpClassifier)
        .build()
        .unwrap();
    let service = fallback.layer(client(addr));

    let fresh = service.clone().oneshot(get_item(1)).await.unwrap();
    assert_eq!(&fresh.body()[..], b"item 1");
    assert!(fresh.headers().get("x-bulwark-degraded").is_none());

    status.store(503, Ordering::SeqCst);
    let stale = service.clone().oneshot(get_item(1)).await.unwrap();
    assert_eq!(stale.status(), 200);
    assert_eq!(
        &stale.body()[..],
        b"item 1",
        "the last good answer for this key"
    );
    assert_eq!(stale.headers()["x-bulwark-degraded"], "last-good");
    assert_eq!(
        stale.extensions().get::<Degraded>(),
        Some(&Degraded::LastGood)
    );

    let never_seen = service.clone().oneshot(get_item(2)).await.unwrap();
    assert_eq!(&never_seen.body()[..], b"catalogue unavailable");
    assert_eq!(never_seen.headers()["x-bulwark-degraded"], "fallback");

    // A client error is not a failure: it goes through untouched.
    status.store(404, Ordering::SeqCst);
    let missing = service.oneshot(get_item(1)).await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.headers().get("x-bulwark-degraded").is_none());
}

#[tokio::test]
async fn a_function_of_the_failure_and_its_own_failure_reported() {
    let status = Arc::new(AtomicU16::new(502));
    let addr = catalogue(status.clone()).await;
    let fallback = FallbackLayer::builder()
        .respond_with(
            |_: &RequestKey, failure: Failure<'_, Bytes>| match failure {
                Failure::Response(response) if response.status() == 502 => {
                    Ok(http::Response::new(Bytes::from("upstream 502, try later")))
                }
                _ => Err("no fallback for this".into()),
            },
        )
        .classify(HttpClassifier)
        .build()
        .unwrap();
    let service = fallback.layer(client(addr));
    let answer = service.clone().oneshot(get_item(1)).await.unwrap();
    assert_eq!(&answer.body()[..], b"upstream 502, try later");

    status.store(500, Ordering::SeqCst);
    let error = service.oneshot(get_item(1)).await.unwrap_err();
    let failed = error
        .downcast_ref::<FallbackFailed>()
        .expect("both errors kept");
    assert_eq!(failed.fallback.to_string(), "no fallback for this");
    assert!(
        failed.primary.to_string().contains("500"),
        "{}",
        failed.primary
    );
}

#[tokio::test]
async fn rejections_fall_back_and_can_be_the_only_thing_that_does() {
    let refusing = service_fn(|_: http::Request<()>| async {
        Err::<http::Response<Bytes>, BoxError>(
            Rejection::new(RejectionKind::CircuitOpen, "catalogue").into(),
        )
    });
    let failing = service_fn(|_: http::Request<()>| async {
        Err::<http::Response<Bytes>, BoxError>("connection reset".into())
    });
    let layer = FallbackLayer::builder()
        .static_response(http::Response::new(Bytes::from_static(b"cached page")))
        .on(FallbackOn::Rejections)
        .build()
        .unwrap();
    let answer = layer
        .layer(refusing)
        .oneshot(http::Request::new(()))
        .await
        .unwrap();
    assert_eq!(&answer.body()[..], b"cached page");
    let error = layer
        .layer(failing)
        .oneshot(http::Request::new(()))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "connection reset",
        "not a rejection: passed on"
    );
}

#[test]
fn a_fallback_needs_a_source() {
    let error = FallbackLayer::builder::<Bytes>().build().unwrap_err();
    assert_eq!(error.field(), "sources");
    let error = FallbackLayer::builder::<Bytes>()
        .last_good(Duration::ZERO, 10)
        .build()
        .unwrap_err();
    assert_eq!(error.field(), "last_good.ttl");
}

#[tokio::test]
async fn a_failed_call_goes_to_the_backup_service() {
    use tower_bulwark::fallback::BackupLayer;

    let primary_status = Arc::new(AtomicU16::new(503));
    let primary = catalogue(primary_status.clone()).await;
    let replica = catalogue(Arc::new(AtomicU16::new(200))).await;
    let service = BackupLayer::new(client(replica))
        .classify(HttpClassifier)
        .layer(client(primary));

    let answer = service.clone().oneshot(get_item(7)).await.unwrap();
    assert_eq!(&answer.body()[..], b"item 7");
    assert_eq!(answer.headers()["x-bulwark-degraded"], "backup");

    primary_status.store(200, Ordering::SeqCst);
    let answer = service.oneshot(get_item(8)).await.unwrap();
    assert_eq!(&answer.body()[..], b"item 8");
    assert!(
        answer.headers().get("x-bulwark-degraded").is_none(),
        "the primary answered"
    );
}

/// A shop answering `GET` and `POST` on `/item/{id}` with a session cookie, or with the
/// status set in `status`.
async fn shop(status: Arc<AtomicU16>) -> std::net::SocketAddr {
    let answer = move |method: &'static str| {
        let status = status.clone();
        move |axum::extract::Path(id): axum::extract::Path<String>| {
            let status = status.load(Ordering::SeqCst);
            async move {
                match status {
                    200 => (
                        StatusCode::OK,
                        [(http::header::SET_COOKIE, format!("session=user-of-{id}"))],
                        format!("{method} item {id}"),
                    ),
                    code => (
                        StatusCode::from_u16(code).unwrap(),
                        [(http::header::RETRY_AFTER, "1".to_string())],
                        "down".to_string(),
                    ),
                }
            }
        }
    };
    let app = Router::new().route("/item/{id}", get(answer("GET")).post(answer("POST")));
    serve_axum(app).await
}

fn post_item(id: u32) -> http::Request<Full<Bytes>> {
    http::Request::post(format!("/item/{id}"))
        .body(Full::default())
        .unwrap()
}

/// The defaults, over real HTTP: a key per method and path, only `GET`/`HEAD` cached, only
/// successes stored, and no cookie replayed.
#[tokio::test]
async fn the_default_last_good_answers_each_path_with_its_own_success_and_no_cookie() {
    let status = Arc::new(AtomicU16::new(503));
    let addr = shop(status.clone()).await;
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let fallback = FallbackLayer::builder()
        .last_good(Duration::from_secs(60), 100)
        .on_event(move |event: &FallbackEvent| sink.lock().unwrap().push(event.clone()))
        .build()
        .unwrap();
    let service = fallback.layer(client(addr));

    // A 503 before any success: passed on, unmarked, and not kept.
    let down = service.clone().oneshot(get_item(3)).await.unwrap();
    assert_eq!(down.status(), 503);
    assert!(down.headers().get("x-bulwark-degraded").is_none());

    status.store(200, Ordering::SeqCst);
    for id in [1, 2] {
        let fresh = service.clone().oneshot(get_item(id)).await.unwrap();
        assert_eq!(
            fresh.headers()["set-cookie"],
            format!("session=user-of-{id}")
        );
    }
    let posted = service.clone().oneshot(post_item(1)).await.unwrap();
    assert_eq!(&posted.body()[..], b"POST item 1");

    status.store(503, Ordering::SeqCst);
    for id in [1, 2] {
        let stale = service.clone().oneshot(get_item(id)).await.unwrap();
        assert_eq!(stale.status(), 200);
        assert_eq!(
            stale.body(),
            format!("GET item {id}").as_bytes(),
            "its own path"
        );
        assert_eq!(stale.headers()["x-bulwark-degraded"], "last-good");
        assert!(
            stale.headers().get("set-cookie").is_none(),
            "cookie replayed"
        );
    }
    for request in [get_item(3), post_item(1), post_item(2)] {
        let method = request.method().clone();
        let down = service.clone().oneshot(request).await.unwrap();
        assert_eq!(down.status(), 503, "{method}: nothing of another request's");
        assert!(down.headers().get("x-bulwark-degraded").is_none());
    }

    // Every degraded answer is reported, and every failure nothing could answer.
    let events = events.lock().unwrap();
    let count = |wanted: fn(&FallbackEvent) -> bool| events.iter().filter(|e| wanted(e)).count();
    let served = count(|e| {
        matches!(
            e,
            FallbackEvent::Served {
                source: Source::LastGood,
                reason: Reason::Status(StatusCode::SERVICE_UNAVAILABLE),
                ..
            }
        )
    });
    assert_eq!(served, 2);
    assert_eq!(count(|e| matches!(e, FallbackEvent::Unanswered { .. })), 4);
    assert_eq!(count(|e| matches!(e, FallbackEvent::Stored { .. })), 2);
    assert_eq!(events.len(), 8, "{events:?}");
}

/// A server answering `/page` in the encoding asked for (`Vary: Accept-Encoding`), and
/// `/live` with `Cache-Control: no-cache` (always revalidate); both with the status set
/// in `status`.
async fn negotiating(status: Arc<AtomicU16>) -> std::net::SocketAddr {
    let status_of = move || StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap();
    let page = {
        let status_of = status_of.clone();
        move |headers: http::HeaderMap| {
            let encoding = headers
                .get(http::header::ACCEPT_ENCODING)
                .map_or("identity", |value| value.to_str().unwrap())
                .to_string();
            let status = status_of();
            async move {
                (
                    status,
                    [(http::header::VARY, "accept-encoding")],
                    format!("page in {encoding}"),
                )
            }
        }
    };
    let live = move || {
        let status = status_of();
        async move {
            (
                status,
                [(http::header::CACHE_CONTROL, "max-age=5, no-cache")],
                "live score",
            )
        }
    };
    let app = Router::new()
        .route("/page", get(page))
        .route("/live", get(live));
    serve_axum(app).await
}

fn get_with(path: &str, headers: &[(&str, &str)]) -> http::Request<Full<Bytes>> {
    let mut request = http::Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Full::default()).unwrap()
}

/// Over real HTTP: a compressed answer is served stale only to a client that asked for
/// the same encoding (RFC 9111 §4.1), and an answer marked `no-cache` never stale
/// (§4.2.4).
#[tokio::test]
async fn the_last_good_honours_vary_and_never_serves_what_must_be_revalidated() {
    let status = Arc::new(AtomicU16::new(200));
    let addr = negotiating(status.clone()).await;
    let service = FallbackLayer::builder()
        .last_good(Duration::from_secs(60), 100)
        .build()
        .unwrap()
        .layer(client(addr));
    let gzip = [("accept-encoding", "gzip")];
    // The first answer that varies teaches the layer to keep request headers; the next
    // is stored.
    for _ in 0..2 {
        let fresh = service
            .clone()
            .oneshot(get_with("/page", &gzip))
            .await
            .unwrap();
        assert_eq!(&fresh.body()[..], b"page in gzip");
    }
    let live = service
        .clone()
        .oneshot(get_with("/live", &[]))
        .await
        .unwrap();
    assert_eq!(&live.body()[..], b"live score");

    status.store(503, Ordering::SeqCst);
    let plain = service
        .clone()
        .oneshot(get_with("/page", &[("accept-encoding", "identity")]))
        .await
        .unwrap();
    assert_eq!(
        plain.status(),
        503,
        "not the gzip answer: {:?}",
        plain.body()
    );
    assert!(plain.headers().get("x-bulwark-degraded").is_none());
    let stale = service
        .clone()
        .oneshot(get_with("/page", &gzip))
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
    assert_eq!(&stale.body()[..], b"page in gzip");
    assert_eq!(stale.headers()["x-bulwark-degraded"], "last-good");

    let live = service.oneshot(get_with("/live", &[])).await.unwrap();
    assert_eq!(live.status(), 503, "no-cache: never served stale");
    assert!(live.headers().get("x-bulwark-degraded").is_none());
}
