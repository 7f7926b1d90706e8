//! The builder: every source kept whatever the order of its calls, and bad settings refused
//! with the field named.

mod support;

use std::time::Duration;

use http::{Method, Request, Response};
use support::{call, get, marker, request, Backend};
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark_core::BoxError;
use tower_bulwark_fallback::{Failure, FallbackLayer, RequestKey, DEGRADED_HEADER};

fn down() -> impl tower::Service<
    Request<()>,
    Response = Response<&'static str>,
    Error = BoxError,
    Future = impl std::future::Future<Output = Result<Response<&'static str>, BoxError>>,
> + Clone {
    service_fn(|_: Request<()>| async { Err::<Response<&'static str>, BoxError>("refused".into()) })
}

fn path(request: &Request<()>) -> String {
    request.uri().path().to_string()
}

#[tokio::test(start_paused = true)]
async fn a_static_response_given_before_the_key_still_answers() {
    let layer = FallbackLayer::builder()
        .static_response(Response::new("static"))
        .key(path)
        .build()
        .expect("the static response is a source");
    let response = layer.layer(down()).oneshot(Request::new(())).await.unwrap();
    assert_eq!(*response.body(), "static");
    assert_eq!(response.headers()[DEGRADED_HEADER], "fallback");
}

#[test]
fn a_function_given_before_the_key_is_refused_not_dropped() {
    let error = FallbackLayer::builder()
        .respond_with(|_: &RequestKey, _| Ok(Response::new("written for the default key")))
        .key(path)
        .last_good(Duration::from_secs(60), 10)
        .build()
        .unwrap_err();
    assert_eq!(error.field(), "key");
}

#[tokio::test(start_paused = true)]
async fn a_function_given_after_the_key_sees_the_key() {
    let layer = FallbackLayer::builder()
        .key(path)
        .respond_with(|key: &String, _| Ok(Response::new(if key == "/a" { "a" } else { "other" })))
        .build()
        .unwrap();
    let request = Request::get("/a").body(()).unwrap();
    let response = layer.layer(down()).oneshot(request).await.unwrap();
    assert_eq!(*response.body(), "a");
}

#[tokio::test(start_paused = true)]
async fn the_function_sees_the_default_key_and_the_failure() {
    let layer = FallbackLayer::builder()
        .respond_with(|key: &RequestKey, failure| match failure {
            Failure::Error(error) => {
                assert_eq!(error.to_string(), "refused");
                let answer = format!("{} {} {:?}", key.method(), key.path(), key.query());
                Ok(Response::new(&*answer.leak()))
            }
            Failure::Response(_) => Err("not a response failure".into()),
        })
        .build()
        .unwrap();
    let request = Request::post("/orders?id=7").body(()).unwrap();
    let response = layer.layer(down()).oneshot(request).await.unwrap();
    assert_eq!(*response.body(), "POST /orders Some(\"id=7\")");
    assert_eq!(response.headers()[DEGRADED_HEADER], "fallback");
}

#[test]
fn bad_settings_name_their_field() {
    let field = |builder: Result<_, tower_bulwark_core::ConfigError>| builder.unwrap_err().field();
    let builder = FallbackLayer::builder::<String>;
    assert_eq!(field(builder().build()), "sources");
    assert_eq!(
        field(builder().last_good(Duration::ZERO, 10).build()),
        "last_good.ttl"
    );
    assert_eq!(
        field(builder().last_good(Duration::from_secs(1), 0).build()),
        "last_good.capacity"
    );
    assert_eq!(
        field(
            builder()
                .last_good(Duration::from_secs(1), 10)
                .cache_methods([])
                .build()
        ),
        "cache_methods"
    );
}

#[tokio::test(start_paused = true)]
async fn cache_methods_opts_other_methods_in() {
    let backend = Backend::new();
    let layer = FallbackLayer::builder()
        .last_good(Duration::from_secs(60), 10)
        .cache_methods([Method::POST])
        .build()
        .unwrap();
    let service = layer.layer(backend.service());
    call(&service, request(Method::POST, "/shop.Catalogue/List"))
        .await
        .unwrap();
    call(&service, get("/page")).await.unwrap();
    backend.fail();
    let stale = call(&service, request(Method::POST, "/shop.Catalogue/List"))
        .await
        .unwrap();
    assert_eq!(stale.body(), "POST /shop.Catalogue/List");
    assert_eq!(marker(&stale), Some("last-good"));
    let error = call(&service, get("/page")).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "connection refused",
        "GET is no longer cached"
    );
}

#[tokio::test(start_paused = true)]
async fn strip_headers_replaces_the_list() {
    let backend = Backend::new();
    let layer = FallbackLayer::builder()
        .last_good(Duration::from_secs(60), 10)
        .strip_headers([
            http::header::SET_COOKIE,
            http::HeaderName::from_static("x-user"),
        ])
        .build()
        .unwrap();
    let service = layer.layer(backend.service());
    backend.respond(
        200,
        &[
            ("set-cookie", "session=alice"),
            ("x-user", "alice"),
            ("authentication-info", "rspauth=\"abc\""),
        ],
    );
    call(&service, get("/a")).await.unwrap();
    backend.fail();
    let stale = call(&service, get("/a")).await.unwrap();
    assert!(stale.headers().get("set-cookie").is_none());
    assert!(stale.headers().get("x-user").is_none());
    assert_eq!(
        stale.headers()["authentication-info"],
        "rspauth=\"abc\"",
        "no longer in the list"
    );
}
