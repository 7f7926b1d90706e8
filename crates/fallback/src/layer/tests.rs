//! The builder keeps every source whatever the order of its calls.

use std::time::Duration;

use http::{Request, Response};
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark_core::BoxError;

use super::{Failure, FallbackLayer, DEGRADED_HEADER};

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

#[tokio::test(start_paused = true)]
async fn a_function_given_before_the_key_still_answers_next_to_last_good() {
    let layer = FallbackLayer::builder()
        .respond_with(|(), failure| match failure {
            Failure::Error(error) => {
                assert_eq!(error.to_string(), "refused");
                Ok(Response::new("from the function"))
            }
            Failure::Response(_) => Err("not a response failure".into()),
        })
        .key(path)
        .last_good(Duration::from_secs(60), 10)
        .build()
        .unwrap();
    let response = layer.layer(down()).oneshot(Request::new(())).await.unwrap();
    assert_eq!(*response.body(), "from the function");
    assert_eq!(response.headers()[DEGRADED_HEADER], "fallback");
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
