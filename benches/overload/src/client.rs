//! The HTTP clients: hyper-util's pooled client over HTTP/1.1 keep-alive (it opens a
//! connection whenever every pooled one is busy, as an open-loop load needs) or over HTTP/2
//! with prior knowledge (one connection, every call a stream on it).

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower_bulwark::is_shed_for_overload;

use crate::load::{Answer, Caller, CLIENT_TIMEOUT};

/// The protocol between the load generator and the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1 keep-alive.
    H1,
    /// HTTP/2, prior knowledge, one connection.
    H2,
    /// gRPC (tonic, HTTP/2, one connection).
    Grpc,
}

impl Proto {
    /// How tables name it.
    pub fn label(&self) -> &'static str {
        match self {
            Proto::H1 => "HTTP/1.1",
            Proto::H2 => "HTTP/2",
            Proto::Grpc => "gRPC",
        }
    }
}

/// Calls `GET /` on one server; clones share the connections.
#[derive(Debug, Clone)]
pub struct HttpCaller {
    client: Client<HttpConnector, Empty<Bytes>>,
    uri: Uri,
    bare_503_refused: bool,
}

impl HttpCaller {
    /// A client of `addr` over `proto` (`H1` or `H2`). `bare_503_refused`: count a 503
    /// without our marker as a refusal (tower's `LoadShed`).
    pub fn new(addr: SocketAddr, proto: Proto, bare_503_refused: bool) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(usize::MAX)
            .http2_only(proto != Proto::H1)
            .build(connector);
        HttpCaller {
            client,
            uri: format!("http://{addr}/").parse().expect("a valid URI"),
            bare_503_refused,
        }
    }
}

impl Caller for HttpCaller {
    async fn call(&self) -> Answer {
        let mut request = http::Request::new(Empty::new());
        *request.uri_mut() = self.uri.clone();
        let timeout_ms = HeaderValue::from(CLIENT_TIMEOUT.as_millis() as u64);
        request
            .headers_mut()
            .insert("x-request-timeout-ms", timeout_ms);
        let Ok(response) = self.client.request(request).await else {
            return Answer::Error;
        };
        let answer = classify(response.status(), response.headers(), self.bare_503_refused);
        match response.into_body().collect().await {
            Ok(_) => answer,
            Err(_) => Answer::Error,
        }
    }
}

/// Sorts an HTTP answer: 2xx is goodput; 503 or 429 marked `x-bulwark-overloaded` is a
/// refusal (and a bare 503 too when `bare_503_refused`); anything else is an error.
pub fn classify(status: StatusCode, headers: &HeaderMap, bare_503_refused: bool) -> Answer {
    let marked = matches!(
        status,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
    ) && is_shed_for_overload(headers);
    let bare = status == StatusCode::SERVICE_UNAVAILABLE && bare_503_refused;
    if status.is_success() {
        Answer::Good
    } else if marked || bare {
        Answer::Refused
    } else {
        Answer::Error
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tower_bulwark::{Rejection, RejectionKind};

    use super::*;

    #[test]
    fn answers_are_sorted_by_status_and_marker() {
        let none = HeaderMap::new();
        assert_eq!(classify(StatusCode::OK, &none, false), Answer::Good);
        assert_eq!(classify(StatusCode::NO_CONTENT, &none, false), Answer::Good);
        let shed: http::Response<()> = Rejection::new(RejectionKind::Overloaded, "server")
            .with_retry_after(Duration::from_secs(1))
            .to_http_response();
        assert_eq!(
            classify(shed.status(), shed.headers(), false),
            Answer::Refused
        );
        // A bare 503 is tower's shed only where tower's LoadShed is the guard.
        let bare = StatusCode::SERVICE_UNAVAILABLE;
        assert_eq!(classify(bare, &none, false), Answer::Error);
        assert_eq!(classify(bare, &none, true), Answer::Refused);
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &none, true),
            Answer::Error
        );
        // The marker on another status (the deadline's 504, a 500) is no refusal.
        for status in [
            StatusCode::GATEWAY_TIMEOUT,
            StatusCode::INTERNAL_SERVER_ERROR,
        ] {
            assert_eq!(classify(status, shed.headers(), true), Answer::Error);
        }
    }
}
