//! Request headers that change the answer (conditional requests, ranges, content
//! negotiation, the virtual host, what the answer's `Vary` names) keep callers from getting
//! an answer meant for another request.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark_coalesce::CoalesceLayer;

/// A backend that honours `If-None-Match`, `Range`, `Accept-Encoding` and `Host` like a real
/// origin (or a CDN) does.
fn origin(
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<()>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    service_fn(move |request: Request<()>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let h = request.headers();
            let host = h
                .get("host")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let full = format!("the whole document of {host}");
            let response = if h.get("if-none-match").is_some_and(|v| v == "\"v1\"") {
                Response::builder()
                    .status(StatusCode::NOT_MODIFIED)
                    .body(Full::new(Bytes::new()))
                    .unwrap()
            } else if h.get("range").is_some() {
                Response::builder()
                    .status(StatusCode::PARTIAL_CONTENT)
                    .header("content-range", "bytes 0-2/30")
                    .body(Full::new(Bytes::from(full[..3].to_owned())))
                    .unwrap()
            } else if h.get("accept-encoding").is_some_and(|v| v == "gzip") {
                Response::builder()
                    .header("content-encoding", "gzip")
                    .body(Full::new(Bytes::from_static(b"\x1f\x8b gzipped")))
                    .unwrap()
            } else {
                Response::builder()
                    .header("etag", "\"v1\"")
                    .body(Full::new(Bytes::from(full)))
                    .unwrap()
            };
            Ok::<_, Infallible>(response)
        }
    })
}

/// Sends `first` then, while it is in flight, a plain `GET` of the same URI with
/// `host: a.test`; returns what the plain one got.
async fn plain_after(first: Request<()>) -> (StatusCode, http::HeaderMap, Bytes, usize) {
    let calls = Arc::new(AtomicUsize::new(0));
    let service = CoalesceLayer::new().layer(origin(calls.clone()));
    let plain = Request::get("/doc")
        .header("host", "a.test")
        .body(())
        .unwrap();
    let (_, plain) = tokio::join!(service.clone().oneshot(first), async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        service.clone().oneshot(plain).await
    });
    let (parts, body) = plain.unwrap().into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        body,
        calls.load(Ordering::SeqCst),
    )
}

/// A client revalidating its cached copy (`If-None-Match`) leads; a client with no cache
/// joins and gets `304 Not Modified` with an empty body: nothing to show.
#[tokio::test(start_paused = true)]
async fn an_unconditional_get_never_gets_a_304_meant_for_a_conditional_one() {
    let conditional = Request::get("/doc")
        .header("host", "a.test")
        .header("if-none-match", "\"v1\"")
        .body(())
        .unwrap();
    let (status, _, body, calls) = plain_after(conditional).await;
    // "the whole document of a.test" is 28 bytes (the review's test said 26, a miscount).
    assert_eq!(
        (status, body.len(), calls),
        (StatusCode::OK, 28, 2),
        "a plain GET got the conditional GET's answer"
    );
}

/// A `Range` request leads; a plain `GET` joins and gets `206` with three bytes.
#[tokio::test(start_paused = true)]
async fn a_plain_get_never_gets_a_206_meant_for_a_range_request() {
    let range = Request::get("/doc")
        .header("host", "a.test")
        .header("range", "bytes=0-2")
        .body(())
        .unwrap();
    let (status, _, body, _) = plain_after(range).await;
    assert_eq!(status, StatusCode::OK, "got {status} with body {body:?}");
}

/// A client that accepts gzip leads; a client that does not joins and gets a gzipped body.
#[tokio::test(start_paused = true)]
async fn a_client_that_did_not_ask_for_gzip_never_gets_gzip() {
    let gzip = Request::get("/doc")
        .header("host", "a.test")
        .header("accept-encoding", "gzip")
        .body(())
        .unwrap();
    let (_, headers, _, _) = plain_after(gzip).await;
    assert!(
        headers.get("content-encoding").is_none(),
        "identity client got content-encoding {:?}",
        headers.get("content-encoding")
    );
}

/// On an HTTP/1 server the URI is origin-form (`/doc`): the virtual host is only in `Host`.
/// b.test's request leads; a.test's joins and gets b.test's page.
#[tokio::test(start_paused = true)]
async fn two_virtual_hosts_never_share_an_answer() {
    let other_host = Request::get("/doc")
        .header("host", "b.test")
        .body(())
        .unwrap();
    let (_, _, body, _) = plain_after(other_host).await;
    assert_eq!(body, "the whole document of a.test");
}

/// A backend whose answers vary by `Origin` (not in the key) says so with `Vary`: a waiter
/// from another origin sends its own call; one from the same origin shares the answer.
#[tokio::test(start_paused = true)]
async fn an_answer_that_varies_by_a_header_the_waiter_differs_in_is_not_shared() {
    use tower_bulwark_coalesce::{CoalesceEvent, CoalesceEventKind};
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let backend = service_fn(move |request: Request<()>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let origin = request.headers().get("origin").cloned();
            let mut response = Response::builder().header("vary", "Accept-Encoding, Origin");
            if let Some(origin) = origin {
                response = response.header("access-control-allow-origin", origin);
            }
            Ok::<_, Infallible>(response.body(Full::new(Bytes::from("answer"))).unwrap())
        }
    });
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    let layer = CoalesceLayer::builder()
        .on_event(move |event: &CoalesceEvent| seen.lock().unwrap().push(event.kind))
        .build()
        .unwrap();
    let service = layer.layer(backend);
    let get = |origin: &str| {
        Request::get("http://api.test/doc")
            .header("origin", origin)
            .body(())
            .unwrap()
    };
    let later = |origin: &'static str| {
        let service = service.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            service.oneshot(get(origin)).await.unwrap()
        }
    };
    let (a, same, other) = tokio::join!(
        service.clone().oneshot(get("https://a.test")),
        later("https://a.test"),
        later("https://b.test"),
    );
    let allowed =
        |response: &Response<_>| response.headers()["access-control-allow-origin"].clone();
    assert_eq!(allowed(&a.unwrap()), "https://a.test");
    assert_eq!(allowed(&same), "https://a.test");
    assert_eq!(allowed(&other), "https://b.test");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        *events.lock().unwrap(),
        [
            CoalesceEventKind::Led,
            CoalesceEventKind::Joined,
            CoalesceEventKind::Joined,
            CoalesceEventKind::Varied
        ]
    );
}
