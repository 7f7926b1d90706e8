//! The load generator: open loop (Poisson arrivals, seeded), real requests over pooled
//! connections, each answer sorted into fresh, degraded, refused, error or timeout.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower_bulwark::fallback::DEGRADED_HEADER;
use tower_bulwark::{is_shed_for_overload, SeededRng};

/// Callers give up after this long (and say so in `x-request-timeout-ms`).
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);

/// What one call got, as the caller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A success from the dependencies themselves.
    Fresh,
    /// A success marked `x-bulwark-degraded`: served by a fallback, not by the dependency.
    Degraded,
    /// A refusal by a bulwark layer: 503 or 429 with `x-bulwark-overloaded` or `Retry-After`
    /// (in the drill, the edge's shed layer).
    Refused,
    /// Any other status, or a transport error.
    Error,
    /// No whole answer within [`CLIENT_TIMEOUT`].
    Timeout,
}

/// Sorts a response the caller received in time.
pub(crate) fn classify(status: StatusCode, headers: &HeaderMap) -> Answer {
    let refusal = matches!(
        status,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
    );
    if status.is_success() && headers.contains_key(DEGRADED_HEADER) {
        Answer::Degraded
    } else if status.is_success() {
        Answer::Fresh
    } else if refusal && (is_shed_for_overload(headers) || headers.contains_key(RETRY_AFTER)) {
        Answer::Refused
    } else {
        Answer::Error
    }
}

/// One call: when it was sent (seconds into the run), how long its answer took, what it was.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    pub(crate) at: f64,
    pub(crate) latency: Duration,
    pub(crate) answer: Answer,
}

pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// One call to `edge`, its answer read whole.
pub(crate) async fn call(client: &HttpClient, edge: SocketAddr, run_start: Instant) -> Sample {
    let sent = Instant::now();
    let request = http::Request::get(format!("http://{edge}/"))
        .header("x-request-timeout-ms", CLIENT_TIMEOUT.as_millis() as u64)
        .body(Full::default())
        .expect("a valid request");
    let answer = tokio::time::timeout(CLIENT_TIMEOUT, async {
        let response = client.request(request).await?;
        let answer = classify(response.status(), response.headers());
        response.into_body().collect().await?;
        Ok::<_, tower_bulwark::BoxError>(answer)
    })
    .await;
    Sample {
        at: sent.duration_since(run_start).as_secs_f64(),
        latency: sent.elapsed(),
        answer: match answer {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Answer::Error,
            Err(_) => Answer::Timeout,
        },
    }
}

/// The open-loop load on one edge: sends requests on schedule whatever the answers, and
/// keeps what each got.
pub(crate) struct Generator {
    client: HttpClient,
    edge: SocketAddr,
    /// Where the run's clock starts.
    pub(crate) start: Instant,
    arrivals: SeededRng,
    samples: Arc<Mutex<Vec<Sample>>>,
    running: Vec<JoinHandle<()>>,
}

impl Generator {
    /// A generator for `edge` whose arrivals follow `seed`, its clock starting now.
    pub(crate) fn new(edge: SocketAddr, seed: u64) -> Self {
        Generator {
            client: crate::edge::pooled(),
            edge,
            start: Instant::now(),
            arrivals: SeededRng::new(seed),
            samples: Arc::default(),
            running: Vec::new(),
        }
    }

    /// Sends requests at `rate` per second on average (exponential gaps) from `from` until
    /// `until`, then returns (their answers still coming).
    pub(crate) async fn offer(&mut self, rate: f64, (from, until): (Instant, Instant)) {
        let mut next = from + self.arrivals.next_gap(rate);
        while next < until {
            tokio::time::sleep_until(next).await;
            let (client, edge, start) = (self.client.clone(), self.edge, self.start);
            let samples = self.samples.clone();
            self.running.push(tokio::spawn(async move {
                let sample = call(&client, edge, start).await;
                samples.lock().expect("samples").push(sample);
            }));
            next += self.arrivals.next_gap(rate);
        }
        tokio::time::sleep_until(until).await;
    }

    /// The answers in so far.
    pub(crate) fn so_far(&self) -> Vec<Sample> {
        self.samples.lock().expect("samples").clone()
    }

    /// Every answer, once the last has come.
    pub(crate) async fn finish(mut self) -> Vec<Sample> {
        for call in std::mem::take(&mut self.running) {
            let _ = call.await;
        }
        self.so_far()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use tokio::net::TcpListener;
    use tower_bulwark::{Rejection, RejectionKind};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.parse().unwrap(), HeaderValue::from_static(value)))
            .collect()
    }

    #[test]
    fn a_success_is_fresh_unless_marked_degraded() {
        assert_eq!(classify(StatusCode::OK, &headers(&[])), Answer::Fresh);
        assert_eq!(
            classify(StatusCode::NO_CONTENT, &headers(&[])),
            Answer::Fresh
        );
        for source in ["last-good", "fallback", "backup", ""] {
            let marked = headers(&[("x-bulwark-degraded", source)]);
            assert_eq!(classify(StatusCode::OK, &marked), Answer::Degraded);
        }
    }

    #[test]
    fn what_our_shed_layer_sends_is_a_refusal() {
        let shed: http::Response<()> = Rejection::new(RejectionKind::Overloaded, "edge")
            .with_retry_after(Duration::from_secs(1))
            .to_http_response();
        assert_eq!(classify(shed.status(), shed.headers()), Answer::Refused);
        let unmarked_but_retry_after = headers(&[("retry-after", "1")]);
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &unmarked_but_retry_after),
            Answer::Refused
        );
        let envoy = headers(&[("x-envoy-overloaded", "true")]);
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, &envoy),
            Answer::Refused
        );
    }

    #[test]
    fn other_failures_are_errors() {
        // A bare 503 (the backend's outage, or a drain) says nothing about shedding.
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, &headers(&[])),
            Answer::Error
        );
        // Markers on a status that is not a refusal do not make it one.
        let marked = headers(&[("x-bulwark-overloaded", "true"), ("retry-after", "1")]);
        for status in [
            StatusCode::BAD_GATEWAY,
            StatusCode::GATEWAY_TIMEOUT,
            StatusCode::INTERNAL_SERVER_ERROR,
        ] {
            assert_eq!(classify(status, &marked), Answer::Error, "{status}");
        }
        // A marker that says "not overloaded" is no refusal.
        let not_shed = headers(&[("x-bulwark-overloaded", "false")]);
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, &not_shed),
            Answer::Error
        );
        // The degraded marker does not turn a failure into a degraded success.
        let degraded_failure = headers(&[("x-bulwark-degraded", "last-good")]);
        assert_eq!(
            classify(StatusCode::BAD_GATEWAY, &degraded_failure),
            Answer::Error
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_never_answers_is_a_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts and keeps the connection, never answering.
        let _server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let client = crate::edge::pooled();
        let sample = call(&client, addr, Instant::now()).await;
        assert_eq!(sample.answer, Answer::Timeout);
        assert_eq!(sample.latency, CLIENT_TIMEOUT);
    }

    #[tokio::test]
    async fn nobody_listening_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let sample = call(&crate::edge::pooled(), addr, Instant::now()).await;
        assert_eq!(sample.answer, Answer::Error);
    }
}
