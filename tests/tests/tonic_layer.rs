//! `ClientPreset::tonic_layer` with the bodies a tonic client sends: over the replay limit,
//! bodies answered early, refusals as statuses. Fake transport, paused time.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tower::{service_fn, ServiceExt};
use tower_bulwark::presets::ClientPreset;
use tower_bulwark::retry::GrpcRetry;
use tower_bulwark::{BoxError, Deadline};

const CHECK: &str = "/grpc.health.v1.Health/Check";

fn request(body: tonic::body::Body) -> http::Request<tonic::body::Body> {
    http::Request::post(format!("http://backend{CHECK}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .unwrap()
}

fn unavailable() -> http::Response<tonic::body::Body> {
    http::Response::builder()
        .header("content-type", "application/grpc")
        .header("grpc-status", "14")
        .body(tonic::body::Body::empty())
        .unwrap()
}

/// A streaming body (size unknown, as tonic's encoder gives) of `chunks` chunks of `size`.
struct Chunks(VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(|data| Ok(Frame::data(data))))
    }
}

fn streaming(chunks: usize, size: usize) -> tonic::body::Body {
    tonic::body::Body::new(Chunks(
        (0..chunks)
            .map(|i| Bytes::from(vec![i as u8; size]))
            .collect(),
    ))
}

fn retryable() -> ClientPreset<GrpcRetry, tower_bulwark::GrpcClassifier> {
    let retry = GrpcRetry::new().method(CHECK).unwrap();
    ClientPreset::grpc_with("health", retry).unwrap()
}

/// A body over the 64 KiB replay limit, read whole and answered `UNAVAILABLE` on a method
/// marked retryable: sent once (it cannot be replayed), the answer passed through.
#[tokio::test(start_paused = true)]
async fn a_body_over_the_replay_limit_is_sent_once_and_whole() {
    let seen: Arc<Mutex<Vec<usize>>> = Default::default();
    let transport = {
        let seen = seen.clone();
        service_fn(move |request: http::Request<tonic::body::Body>| {
            let seen = seen.clone();
            async move {
                let body = request.into_body().collect().await?.to_bytes();
                seen.lock().unwrap().push(body.len());
                Ok::<_, BoxError>(unavailable())
            }
        })
    };
    let stack = retryable().tonic_layer().service(transport);
    let answer = stack
        .oneshot(request(streaming(3, 30 * 1024)))
        .await
        .unwrap();
    assert_eq!(answer.headers()["grpc-status"], "14");
    assert_eq!(
        *seen.lock().unwrap(),
        [90 * 1024],
        "one attempt, whole body"
    );
}

/// A streaming body the server answers `UNAVAILABLE` before reading: the retry sends it
/// again, whole, from the original stream (no truncated or empty body).
#[tokio::test(start_paused = true)]
async fn a_stream_answered_before_it_was_read_is_retried_whole() {
    let seen: Arc<Mutex<Vec<usize>>> = Default::default();
    let transport = {
        let seen = seen.clone();
        service_fn(move |request: http::Request<tonic::body::Body>| {
            let seen = seen.clone();
            async move {
                let first = seen.lock().unwrap().is_empty();
                if first {
                    seen.lock().unwrap().push(0);
                    // Hold the unread body while answering, as hyper does mid-upload.
                    drop(request);
                    return Ok::<_, BoxError>(unavailable());
                }
                let body = request.into_body().collect().await?.to_bytes();
                seen.lock().unwrap().push(body.len());
                Ok(http::Response::new(tonic::body::Body::empty()))
            }
        })
    };
    let stack = retryable().tonic_layer().service(transport);
    let answer = stack.oneshot(request(streaming(4, 1024))).await.unwrap();
    assert!(answer.headers().get("grpc-status").is_none());
    assert_eq!(*seen.lock().unwrap(), [0, 4 * 1024]);
}

/// A caller whose deadline has (nearly) passed: the propagate layer refuses before the
/// transport; the generated client must see `DEADLINE_EXCEEDED`, not `UNKNOWN`.
#[tokio::test(start_paused = true)]
async fn a_passed_caller_deadline_is_deadline_exceeded() {
    let transport = service_fn(|_: http::Request<tonic::body::Body>| async {
        Ok::<_, BoxError>(unavailable())
    });
    let stack = retryable().tonic_layer().service(transport);
    let error = Deadline::after(Duration::from_micros(500))
        .scope(stack.oneshot(request(tonic::body::Body::empty())))
        .await
        .unwrap_err();
    let status = tonic::Status::from_error(error);
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
}
