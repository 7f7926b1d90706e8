//! RFC 9111 in the last-good cache: an answer chosen by request headers (`Vary`, §4.1) is
//! served only to requests with the same values, and answers that must not be served stale
//! (§4.2.4) are never kept, since the cache only ever serves stale copies.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use support::{call, get, marker, Backend};
use tower::{service_fn, Layer, Service};
use tower_bulwark_core::BoxError;
use tower_bulwark_fallback::{FallbackEvent, FallbackLayer, Unstorable};

/// A backend that answers with `vary` and a body naming the request's `accept-encoding`
/// lines (`-` when it has none); fails every call once `down` is set.
fn negotiating(
    vary: &'static str,
    down: Arc<AtomicBool>,
) -> impl Service<
    Request<()>,
    Response = Response<String>,
    Error = BoxError,
    Future = impl std::future::Future<Output = Result<Response<String>, BoxError>>,
> + Clone {
    service_fn(move |request: Request<()>| {
        let lines: Vec<_> = request
            .headers()
            .get_all("accept-encoding")
            .iter()
            .map(|value| value.to_str().unwrap())
            .collect();
        let body = if lines.is_empty() {
            "-".to_string()
        } else {
            lines.join(" | ")
        };
        let result = if down.load(Ordering::Relaxed) {
            Err::<_, BoxError>("connection refused".into())
        } else {
            Ok(Response::builder().header("vary", vary).body(body).unwrap())
        };
        std::future::ready(result)
    })
}

/// A GET of `/page` with these headers.
fn page(headers: &[(&str, &str)]) -> Request<()> {
    let mut request = Request::get("/page");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(()).unwrap()
}

/// A listener and what it heard.
type Heard = Arc<Mutex<Vec<FallbackEvent>>>;

/// A last-good fallback around `inner`, and the events it reports.
fn cached<S>(
    inner: S,
) -> (
    impl Service<Request<()>, Response = Response<String>, Error = BoxError> + Clone,
    Heard,
)
where
    S: Service<Request<()>, Response = Response<String>, Error = BoxError> + Clone,
{
    let events = Heard::default();
    let sink = events.clone();
    let service = FallbackLayer::builder()
        .last_good(Duration::from_secs(60), 100)
        .on_event(move |event: &FallbackEvent| sink.lock().unwrap().push(event.clone()))
        .build()
        .unwrap()
        .layer(inner);
    (service, events)
}

/// The `why` labels of the `NotStored` events heard so far, and how many were stored.
fn decisions(events: &Heard) -> (Vec<&'static str>, usize) {
    let events = std::mem::take(&mut *events.lock().unwrap());
    let not_stored = events
        .iter()
        .filter_map(|event| match event {
            FallbackEvent::NotStored { why, .. } => Some(why.as_str()),
            _ => None,
        })
        .collect();
    let stored = events
        .iter()
        .filter(|event| matches!(event, FallbackEvent::Stored { .. }))
        .count();
    (not_stored, stored)
}

#[tokio::test(start_paused = true)]
async fn an_answer_that_varies_on_accept_encoding_is_served_only_to_the_same_encoding() {
    let down = Arc::new(AtomicBool::new(false));
    let (service, events) = cached(negotiating("Accept-Encoding", down.clone()));
    let gzip = [("accept-encoding", "gzip")];
    for _ in 0..2 {
        let fresh = call(&service, page(&gzip)).await.unwrap();
        assert_eq!(fresh.body(), "gzip");
    }
    // The layer keeps request headers only once it has seen an answer that varies: the
    // first such answer cannot be kept, the next can.
    assert_eq!(decisions(&events), (vec!["vary"], 1));

    down.store(true, Ordering::Relaxed);
    for other in [
        &[("accept-encoding", "identity")][..],
        &[("accept-encoding", "GZIP")],
        &[("accept-encoding", "gzip, br")],
        &[("accept-encoding", "gzip"), ("accept-encoding", "br")],
        &[],
    ] {
        match call(&service, page(other)).await {
            Err(error) => assert_eq!(error.to_string(), "connection refused", "{other:?}"),
            Ok(response) => panic!("{other:?} was served {:?}", response.body()),
        }
    }
    let stale = call(&service, page(&gzip)).await.unwrap();
    assert_eq!(stale.body(), "gzip");
    assert_eq!(marker(&stale), Some("last-good"));
    // Other headers are not compared.
    let stale = call(&service, page(&[gzip[0], ("accept", "text/html")]))
        .await
        .unwrap();
    assert_eq!(stale.body(), "gzip");
}

#[tokio::test(start_paused = true)]
async fn field_lines_are_combined_and_an_absent_header_matches_only_its_absence() {
    let down = Arc::new(AtomicBool::new(false));
    let (service, _) = cached(negotiating("accept-encoding, ACCEPT", down.clone()));
    let split = [("accept-encoding", "gzip"), ("accept-encoding", "br")];
    call(&service, page(&split)).await.unwrap();
    let fresh = call(&service, page(&split)).await.unwrap();
    assert_eq!(fresh.body(), "gzip | br");

    down.store(true, Ordering::Relaxed);
    // One line or two, the same value as sent (RFC 9111 §4.1, RFC 9110 §5.3).
    let joined = call(&service, page(&[("accept-encoding", "gzip, br")]))
        .await
        .unwrap();
    assert_eq!(joined.body(), "gzip | br");
    assert_eq!(marker(&joined), Some("last-good"));
    // `Accept` was absent when the answer was stored: present now, it does not match.
    let error = call(&service, page(&[split[0], split[1], ("accept", "*/*")]))
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "connection refused");
    // The order of the values is part of them.
    let error = call(&service, page(&[("accept-encoding", "br, gzip")]))
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "connection refused");
}

#[tokio::test(start_paused = true)]
async fn an_answer_without_vary_is_served_whatever_the_request_headers() {
    let backend = Backend::new();
    let (service, events) = cached(backend.service());
    call(&service, get("/a")).await.unwrap();
    assert_eq!(decisions(&events), (vec![], 1), "stored at once");
    backend.fail();
    let mut request = get("/a");
    request
        .headers_mut()
        .insert("accept-encoding", "br".parse().unwrap());
    let stale = call(&service, request).await.unwrap();
    assert_eq!(marker(&stale), Some("last-good"));
}

#[tokio::test(start_paused = true)]
async fn an_answer_varying_on_too_many_or_unreadable_names_is_not_stored() {
    for (vary, kept) in [
        ("a, b, c, d", true),
        ("a, b, c, d, e", false),
        ("accept encoding", false),
        ("accept-encoding, , ", true),
        ("Origin", true),
    ] {
        let backend = Backend::new();
        let (service, events) = cached(backend.service());
        backend.respond(200, &[("vary", vary)]);
        call(&service, get("/a")).await.unwrap();
        call(&service, get("/a")).await.unwrap();
        let (not_stored, stored) = decisions(&events);
        assert_eq!(stored, usize::from(kept), "{vary}: {not_stored:?}");
        backend.fail();
        let result = call(&service, get("/a")).await;
        assert_eq!(result.is_ok(), kept, "{vary}");
    }
}

#[tokio::test(start_paused = true)]
async fn vary_names_in_two_field_lines_count_together() {
    let backend = Backend::new();
    let (service, events) = cached(backend.service());
    backend.respond(200, &[("vary", "a, b, c"), ("vary", "d, e")]);
    call(&service, get("/a")).await.unwrap();
    call(&service, get("/a")).await.unwrap();
    assert_eq!(decisions(&events), (vec!["vary", "vary"], 0));
}

#[tokio::test(start_paused = true)]
async fn answers_that_must_not_be_served_stale_are_not_stored() {
    assert_eq!(Unstorable::MustRevalidate.as_str(), "must_revalidate");
    for cache_control in [
        "no-cache",
        "No-Cache",
        "no-cache=\"set-cookie\"",
        "max-age=60, must-revalidate",
        "proxy-revalidate",
        "public, s-maxage=60",
        "S-MAXAGE=0",
    ] {
        let backend = Backend::new();
        let (service, events) = cached(backend.service());
        backend.respond(200, &[("cache-control", cache_control)]);
        call(&service, get("/a")).await.unwrap();
        assert_eq!(
            decisions(&events),
            (vec!["must_revalidate"], 0),
            "{cache_control}"
        );
        backend.fail();
        let error = call(&service, get("/a")).await.unwrap_err();
        assert_eq!(error.to_string(), "connection refused", "{cache_control}");
    }
    for cache_control in [
        "public, max-age=60",
        "max-age=0",
        "x-no-cache",
        "no-transform",
    ] {
        let backend = Backend::new();
        let (service, _) = cached(backend.service());
        backend.respond(200, &[("cache-control", cache_control)]);
        call(&service, get("/a")).await.unwrap();
        backend.fail();
        let stale = call(&service, get("/a")).await.unwrap();
        assert_eq!(marker(&stale), Some("last-good"), "{cache_control}");
    }
}

#[tokio::test(start_paused = true)]
async fn only_public_lets_an_answer_to_a_request_with_credentials_be_kept() {
    for credentials in [
        ("authorization", "Bearer alice"),
        ("cookie", "session=alice"),
    ] {
        let with = || {
            let mut request = get("/me");
            request
                .headers_mut()
                .insert(credentials.0, credentials.1.parse().unwrap());
            request
        };
        for (cache_control, kept) in [
            ("public", true),
            ("public, max-age=60", true),
            ("max-age=60", false),
            ("s-maxage=60", false),
            ("must-revalidate", false),
        ] {
            let backend = Backend::new();
            let (service, _) = cached(backend.service());
            backend.respond(200, &[("cache-control", cache_control)]);
            call(&service, with()).await.unwrap();
            backend.fail();
            let result = call(&service, get("/me")).await;
            assert_eq!(result.is_ok(), kept, "{credentials:?} {cache_control}");
        }
    }
}
