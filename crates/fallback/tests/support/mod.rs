//! Shared helpers of the fallback's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use tower::{service_fn, Service, ServiceExt};
use tower_bulwark_core::BoxError;

/// What the backend does with the next calls.
#[derive(Clone)]
pub enum Answer {
    /// Answers with this status and these headers; the body names the request.
    Respond(StatusCode, Vec<(&'static str, &'static str)>),
    /// Fails with a transport error.
    Fail,
}

/// A backend whose answer the test changes between calls.
#[derive(Clone)]
pub struct Backend(Arc<Mutex<Answer>>);

impl Backend {
    /// Answers 200 with no headers until told otherwise.
    pub fn new() -> Self {
        Backend(Arc::new(Mutex::new(Answer::Respond(
            StatusCode::OK,
            vec![],
        ))))
    }

    /// Answers `status` with `headers` from now on.
    pub fn respond(&self, status: u16, headers: &[(&'static str, &'static str)]) {
        *self.0.lock().unwrap() =
            Answer::Respond(StatusCode::from_u16(status).unwrap(), headers.to_vec());
    }

    /// Fails every call from now on.
    pub fn fail(&self) {
        *self.0.lock().unwrap() = Answer::Fail;
    }

    /// The backend as a service: the body of a response is `"<method> <uri>"`.
    pub fn service(
        &self,
    ) -> impl Service<
        Request<()>,
        Response = Response<String>,
        Error = BoxError,
        Future = impl std::future::Future<Output = Result<Response<String>, BoxError>>,
    > + Clone {
        let answer = self.0.clone();
        service_fn(move |request: Request<()>| {
            let answer = answer.lock().unwrap().clone();
            let result = match answer {
                Answer::Fail => Err::<_, BoxError>("connection refused".into()),
                Answer::Respond(status, headers) => {
                    let mut response = Response::builder().status(status);
                    for (name, value) in headers {
                        response = response.header(name, value);
                    }
                    Ok(response
                        .body(format!("{} {}", request.method(), request.uri()))
                        .unwrap())
                }
            };
            std::future::ready(result)
        })
    }
}

/// A request with this method and URI.
pub fn request(method: Method, uri: &str) -> Request<()> {
    Request::builder().method(method).uri(uri).body(()).unwrap()
}

/// A GET of `uri`.
pub fn get(uri: &str) -> Request<()> {
    request(Method::GET, uri)
}

/// One call through `service`.
pub async fn call<S>(service: &S, request: Request<()>) -> Result<Response<String>, BoxError>
where
    S: Service<Request<()>, Response = Response<String>, Error = BoxError> + Clone,
{
    service.clone().oneshot(request).await
}

/// The degraded marker of a response, if any.
pub fn marker(response: &Response<String>) -> Option<&str> {
    response
        .headers()
        .get("x-bulwark-degraded")
        .map(|value| value.to_str().unwrap())
}
