//! problem+json bodies with hostile layer names, huge waits and HEAD requests.

use std::time::Duration;

use http::{Request, Response};
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_bulwark::{
    BoxError, HandleRejectionsLayer, ProblemDetailsLayer, Rejection, RejectionKind,
};

async fn answer(rejection: Rejection, method: http::Method) -> Response<String> {
    let inner = service_fn(move |_: Request<String>| {
        let rejection = rejection.clone();
        async move { Err::<Response<String>, BoxError>(rejection.into()) }
    });
    let service = ServiceBuilder::new()
        .layer(ProblemDetailsLayer::new().with_layer_names())
        .layer(HandleRejectionsLayer::new())
        .service(inner);
    let mut request = Request::new(String::new());
    *request.method_mut() = method;
    service.oneshot(request).await.unwrap()
}

#[tokio::test]
async fn hostile_layer_names_stay_valid_json() {
    let mut names: Vec<String> = vec![
        "\"}{\"x\":1".into(),
        "back\\slash\\".into(),
        "\u{0}\u{1f}\u{7f}\n\r\t".into(),
        "\u{2028}\u{2029}\u{feff}".into(),
        "emoji \u{1F4A5} and </script>".into(),
        String::new(),
    ];
    names.push((0u32..0x80).filter_map(char::from_u32).collect());
    for name in names {
        let rejection = Rejection::new(RejectionKind::Throttled, name.clone())
            .with_retry_after(Duration::from_millis(1));
        let response = answer(rejection, http::Method::GET).await;
        let body: serde_json::Value = serde_json::from_str(response.body())
            .unwrap_or_else(|e| panic!("{e}: {}", response.body()));
        assert_eq!(body["layer"], serde_json::Value::String(name));
        assert_eq!(body["status"], 429);
    }
}

/// `Retry-After` is capped at i32::MAX seconds; the body's `retry_after_s` should say the same.
#[tokio::test]
async fn retry_after_in_body_matches_the_header() {
    for wait in [
        Duration::from_nanos(1),
        Duration::new(1, 1),
        Duration::from_secs(u64::from(u32::MAX)),
        Duration::MAX,
    ] {
        let rejection = Rejection::new(RejectionKind::CircuitOpen, "b").with_retry_after(wait);
        let response = answer(rejection, http::Method::GET).await;
        let header: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(
            body["retry_after_s"].as_u64(),
            Some(header),
            "{wait:?}: {}",
            response.body()
        );
    }
}

/// HEAD on a draining server over loopback: no body, and the headers a GET would get.
#[tokio::test]
async fn head_requests_get_the_get_headers_and_no_body() {
    use axum::routing::get;
    use tower_bulwark::presets::ServerPreset;
    use tower_bulwark_tests::{get as get_request, send, serve_axum};

    let server = ServerPreset::http().unwrap();
    let app = axum::Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(server.layer())
        .layer(ProblemDetailsLayer::new());
    let addr = serve_axum(app).await;
    server.drain.handle().drain();
    let got = send(addr, get_request("/", &[])).await;
    let mut head = get_request("/", &[]);
    *head.method_mut() = http::Method::HEAD;
    let headed = send(addr, head).await;
    eprintln!(
        "GET {:?}\nHEAD {:?} body {:?}",
        got.head.headers, headed.head.headers, headed.body
    );
    assert!(headed.body.is_empty());
    assert_eq!(headed.head.status, 503);
    assert_eq!(
        headed.head.headers.get("content-type"),
        got.head.headers.get("content-type")
    );
    assert_eq!(
        headed.head.headers.get("content-length"),
        got.head.headers.get("content-length")
    );
}
