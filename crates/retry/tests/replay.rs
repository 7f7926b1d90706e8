//! `ReplayBody`: copies polled concurrently, cancelled copies, bodies that cannot be replayed.
#![cfg(feature = "http")]

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::channel::{Channel, Sender};
use http_body_util::{BodyExt, Full};
use tower_bulwark_core::BoxError;
use tower_bulwark_retry::ReplayBody;

/// A waker that counts its wake-ups.
#[derive(Default)]
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A copy polled by hand with its own counting waker.
struct Copy {
    body: ReplayBody,
    woken: Arc<Counter>,
    waker: Waker,
}

impl Copy {
    fn new(body: ReplayBody) -> Self {
        let woken = Arc::new(Counter::default());
        let waker = Waker::from(woken.clone());
        Copy { body, woken, waker }
    }

    fn poll(&mut self) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(&mut Context::from_waker(&self.waker))
    }

    /// The next data frame, which must be ready.
    fn data(&mut self) -> Bytes {
        match self.poll() {
            Poll::Ready(Some(Ok(frame))) => frame.into_data().expect("a data frame"),
            other => panic!("expected a data frame, got {other:?}"),
        }
    }

    fn woken(&self) -> usize {
        self.woken.0.load(Ordering::SeqCst)
    }
}

fn channel() -> (Sender<Bytes, BoxError>, ReplayBody) {
    let (tx, stream) = Channel::<Bytes, BoxError>::new(4);
    (tx, ReplayBody::new(stream, 1024))
}

fn send(tx: &mut Sender<Bytes, BoxError>, data: &'static [u8]) {
    tx.try_send(Frame::data(Bytes::from_static(data)))
        .expect("room in the channel");
}

/// Everything a copy sends: its data, and its trailers if any.
async fn read_all(body: ReplayBody) -> Result<(Bytes, Option<HeaderMap>), BoxError> {
    let collected = body.collect().await?;
    let trailers = collected.trailers().cloned();
    Ok((collected.to_bytes(), trailers))
}

fn trailers() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "42".parse().unwrap());
    trailers
}

/// Whether a hint claims nothing: at least nothing, at most anything.
fn claims_nothing(hint: SizeHint) -> bool {
    hint.lower() == 0 && hint.upper().is_none()
}

#[test]
fn two_copies_waiting_for_the_body_are_both_woken() {
    let (mut tx, body) = channel();
    let mut first = Copy::new(body.clone());
    let mut retry = Copy::new(body);
    assert!(first.poll().is_pending());
    assert!(retry.poll().is_pending());

    send(&mut tx, b"a");
    assert!(first.woken() >= 1, "the first copy was not woken");
    assert!(retry.woken() >= 1, "the retry was not woken");
    // Whichever reads first, the other replays the same frame.
    assert_eq!(first.data(), "a");
    assert_eq!(retry.data(), "a");

    // And again, the other copy reading first this time.
    assert!(first.poll().is_pending());
    assert!(retry.poll().is_pending());
    let (first_woken, retry_woken) = (first.woken(), retry.woken());
    send(&mut tx, b"b");
    assert!(first.woken() > first_woken);
    assert!(retry.woken() > retry_woken);
    assert_eq!(retry.data(), "b");
    assert_eq!(first.data(), "b");

    drop(tx);
    assert!(matches!(first.poll(), Poll::Ready(None)));
    assert!(matches!(retry.poll(), Poll::Ready(None)));
}

#[test]
fn a_copy_dropped_while_waiting_does_not_strand_the_one_polled_before_it() {
    let (mut tx, body) = channel();
    let mut first = Copy::new(body.clone());
    let mut retry = Copy::new(body);
    assert!(first.poll().is_pending());
    // The retry polls the original body last, then its attempt is cancelled.
    assert!(retry.poll().is_pending());
    drop(retry);

    send(&mut tx, b"a");
    assert!(first.woken() >= 1, "the first copy was not woken");
    assert_eq!(first.data(), "a");
    drop(tx);
    assert!(matches!(first.poll(), Poll::Ready(None)));
}

#[test]
fn a_copy_dropped_while_waiting_does_not_strand_the_one_polled_after_it() {
    let (mut tx, body) = channel();
    let mut first = Copy::new(body.clone());
    let mut retry = Copy::new(body);
    assert!(first.poll().is_pending());
    assert!(retry.poll().is_pending());
    drop(first);

    send(&mut tx, b"a");
    assert!(retry.woken() >= 1, "the retry was not woken");
    assert_eq!(retry.data(), "a");
    drop(tx);
    assert!(matches!(retry.poll(), Poll::Ready(None)));
}

#[tokio::test(start_paused = true)]
async fn two_tasks_reading_copies_at_once_both_send_the_whole_body() {
    let (mut tx, body) = channel();
    let first = tokio::spawn(read_all(body.clone()));
    let retry = tokio::spawn(read_all(body));
    // Both tasks wait for the body, then it arrives a frame at a time.
    tokio::task::yield_now().await;
    for chunk in [&b"hello "[..], b"upload ", b"world"] {
        tx.send_data(Bytes::copy_from_slice(chunk)).await.unwrap();
        tokio::task::yield_now().await;
    }
    tx.send_trailers(trailers()).await.unwrap();
    drop(tx);

    let whole = (Bytes::from_static(b"hello upload world"), Some(trailers()));
    let both = tokio::time::timeout(Duration::from_secs(1), async {
        (first.await.unwrap().unwrap(), retry.await.unwrap().unwrap())
    });
    let (first, retry) = both.await.expect("a copy was never woken");
    assert_eq!(first, whole);
    assert_eq!(retry, whole);
}

#[tokio::test]
async fn a_copy_of_a_body_that_failed_before_its_first_frame_is_not_an_empty_body() {
    let (tx, body) = channel();
    let early = body.clone();
    tx.abort("the upload broke".into());
    let error = read_all(body.clone()).await.unwrap_err();
    assert_eq!(error.to_string(), "the upload broke");

    // A copy made before the failure, and one made after it.
    for retry in [early, body.clone()] {
        assert!(!retry.can_replay());
        assert!(
            !retry.is_end_stream(),
            "a broken copy is not a complete body"
        );
        assert!(claims_nothing(retry.size_hint()), "{:?}", retry.size_hint());
        let mut retry = Copy::new(retry);
        assert!(
            matches!(retry.poll(), Poll::Ready(Some(Err(_)))),
            "never an empty body"
        );
    }
}

#[tokio::test]
async fn a_copy_that_cannot_be_replayed_claims_no_size() {
    // Failed after a frame.
    let (mut tx, body) = channel();
    let retry = body.clone();
    send(&mut tx, b"partial");
    tx.abort("the upload broke".into());
    assert!(read_all(body).await.is_err());
    assert!(!retry.is_end_stream());
    assert!(claims_nothing(retry.size_hint()), "{:?}", retry.size_hint());
    assert!(read_all(retry).await.is_err(), "never a truncated body");

    // Larger than the limit.
    let (mut tx, stream) = Channel::<Bytes, BoxError>::new(4);
    let body = ReplayBody::new(stream, 8);
    let retry = body.clone();
    send(&mut tx, b"12345");
    send(&mut tx, b"6789");
    drop(tx);
    assert_eq!(read_all(body).await.unwrap().0, "123456789");
    assert!(!retry.can_replay());
    assert!(!retry.is_end_stream());
    assert!(claims_nothing(retry.size_hint()), "{:?}", retry.size_hint());
    let mut retry = Copy::new(retry);
    assert!(matches!(retry.poll(), Poll::Ready(Some(Err(_)))));
    assert!(
        matches!(retry.poll(), Poll::Ready(None)),
        "the error ends it"
    );
    assert!(retry.body.is_end_stream());
}

#[tokio::test]
async fn a_replayable_copy_still_reports_its_exact_size() {
    let body = ReplayBody::new(Full::new(Bytes::from_static(b"12345678")), 8);
    let retry = body.clone();
    assert_eq!(retry.size_hint().exact(), Some(8));
    assert_eq!(read_all(body).await.unwrap().0, "12345678");
    assert_eq!(retry.size_hint().exact(), Some(8));
    assert!(!retry.is_end_stream());
    assert_eq!(read_all(retry).await.unwrap().0, "12345678");
}

#[tokio::test]
async fn every_copy_sends_the_whole_body_and_its_trailers() {
    let (mut tx, stream) = Channel::<Bytes, BoxError>::new(4);
    let first = ReplayBody::new(stream, 1024);
    let retry = first.clone();
    tx.send_data(Bytes::from_static(b"hello ")).await.unwrap();
    tx.send_data(Bytes::from_static(b"world")).await.unwrap();
    tx.send_trailers(trailers()).await.unwrap();
    drop(tx);

    assert_eq!(
        read_all(first).await.unwrap(),
        (Bytes::from_static(b"hello world"), Some(trailers()))
    );
    assert!(retry.can_replay());
    assert_eq!(retry.size_hint().exact(), Some(11));
    assert_eq!(
        read_all(retry.clone()).await.unwrap(),
        (Bytes::from_static(b"hello world"), Some(trailers()))
    );
    let copy = retry.clone();
    let mut copy = std::pin::pin!(copy);
    while copy.as_mut().frame().await.is_some() {}
    assert!(copy.is_end_stream());
}

#[tokio::test]
async fn a_retry_that_starts_before_the_first_attempt_finished_still_sends_everything() {
    let (mut tx, stream) = Channel::<Bytes, BoxError>::new(4);
    let mut first = ReplayBody::new(stream, 1024);
    tx.send_data(Bytes::from_static(b"a")).await.unwrap();
    let frame = first.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "a");

    // The first attempt stalls (its response came early); the retry reads on.
    let mut retry = first.clone();
    tx.send_data(Bytes::from_static(b"b")).await.unwrap();
    let mut sent = Vec::new();
    for _ in 0..2 {
        sent.push(retry.frame().await.unwrap().unwrap().into_data().unwrap());
    }
    assert_eq!(sent, ["a", "b"]);
    tx.send_data(Bytes::from_static(b"c")).await.unwrap();
    drop(tx);
    // The stalled copy catches up from the recording, then both end.
    assert_eq!(read_all(first).await.unwrap().0, "bc");
    assert_eq!(read_all(retry).await.unwrap().0, "c");
}

#[tokio::test]
async fn a_body_larger_than_the_limit_is_sent_once_and_cannot_be_replayed() {
    let (mut tx, stream) = Channel::<Bytes, BoxError>::new(4);
    let first = ReplayBody::new(stream, 8);
    let retry = first.clone();
    tokio::spawn(async move {
        for chunk in [&b"12345"[..], b"678", b"9"] {
            tx.send_data(Bytes::from_static(chunk)).await.unwrap();
        }
    });
    assert_eq!(read_all(first).await.unwrap().0, "123456789");
    assert!(!retry.can_replay());
    assert!(read_all(retry).await.is_err());
}

#[tokio::test]
async fn a_body_exactly_at_the_limit_can_be_replayed() {
    let first = ReplayBody::new(Full::new(Bytes::from_static(b"12345678")), 8);
    let retry = first.clone();
    assert_eq!(read_all(first).await.unwrap().0, "12345678");
    assert!(retry.can_replay());
    assert_eq!(read_all(retry).await.unwrap().0, "12345678");
}

#[tokio::test]
async fn a_body_declared_larger_than_the_limit_is_never_recorded() {
    let mut body = ReplayBody::new(Full::new(Bytes::from_static(b"123456789")), 8);
    let retry = body.clone();
    // Until some of it is read, a copy can still send it whole (once).
    assert!(body.can_replay());
    assert_eq!(body.size_hint().exact(), Some(9));
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        "123456789"
    );
    assert!(!retry.can_replay(), "read and not recorded");
    assert!(read_all(retry).await.is_err());
}

#[tokio::test]
async fn a_body_that_failed_cannot_be_replayed() {
    let (mut tx, stream) = Channel::<Bytes, BoxError>::new(4);
    let first = ReplayBody::new(stream, 1024);
    let retry = first.clone();
    tx.send_data(Bytes::from_static(b"partial")).await.unwrap();
    tx.abort("the upload broke".into());
    assert!(read_all(first).await.is_err());
    assert!(!retry.can_replay());
    assert!(read_all(retry).await.is_err(), "never a truncated body");
}

#[tokio::test]
async fn an_empty_body_ends_at_once_for_every_copy() {
    let first = ReplayBody::new(http_body_util::Empty::<Bytes>::new(), 0);
    assert!(first.is_end_stream());
    assert_eq!(first.size_hint().exact(), Some(0));
    let retry = first.clone();
    assert_eq!(read_all(first).await.unwrap().0, "");
    assert!(retry.can_replay());
    assert_eq!(read_all(retry).await.unwrap().0, "");
}

#[tokio::test]
async fn the_replay_layer_tells_other_layers_whether_the_request_can_be_sent_again() {
    use tower::{Layer, ServiceExt};
    use tower_bulwark_core::Replayable;

    let inner = tower::service_fn(|request: http::Request<ReplayBody>| async move {
        let before = Replayable::check(&request);
        let (parts, body) = request.into_parts();
        let read = read_all(body).await;
        let request = http::Request::from_parts(parts, ());
        Ok::<_, BoxError>((before, read.is_ok(), Replayable::check(&request)))
    });
    let service = tower_bulwark_retry::ReplayLayer::new(8).layer(inner);
    let small = http::Request::new(Full::new(Bytes::from_static(b"12345678")));
    assert_eq!(
        service.clone().oneshot(small).await.unwrap(),
        (true, true, true)
    );
    let (mut tx, stream) = Channel::<Bytes, BoxError>::new(4);
    send(&mut tx, b"12345");
    send(&mut tx, b"6789");
    drop(tx);
    let large = http::Request::new(stream);
    assert_eq!(
        service.oneshot(large).await.unwrap(),
        (true, true, false),
        "read past the limit: it cannot be sent again"
    );
}
