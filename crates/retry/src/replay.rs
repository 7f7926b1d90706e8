//! [`ReplayBody`]: a request body that can be sent again, recorded up to a size limit.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tower_bulwark_core::BoxError;

/// A request body that retries can send again.
///
/// tower's retry sends a *copy* of the request for each attempt, so the body must be copied
/// too. A cloneable body (`Full<Bytes>`, `String`, ...) needs nothing; a streaming body (an
/// axum or hyper `Incoming` body being proxied, an upload) is wrapped in a `ReplayBody`.
///
/// The first attempt streams the body through as it is read, without waiting for it to
/// end; every data frame read is also recorded, up to `limit` bytes. A copy made with
/// `clone` replays the recorded frames and then goes on reading the original body where it
/// stopped, so a retry that starts before the first attempt finished sending still sends
/// the whole body. Once more than `limit` bytes have been read, the recording is dropped
/// and the body can no longer be replayed: the request is **sent once and never
/// retried** ([`RetryPolicy`](crate::RetryPolicy) checks [`can_replay`](Self::can_replay)
/// before each retry and reports `NotRetried { reason: BodyTooLarge }`). A body whose
/// declared size already exceeds the limit is never recorded at all.
///
/// Build it with [`ReplayLayer`](crate::ReplayLayer), or with [`ReplayBody::new`].
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use tower_bulwark_retry::ReplayBody;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let body = ReplayBody::new(Full::new(Bytes::from_static(b"hello")), 1024);
/// let retry = body.clone();
/// assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
/// assert!(retry.can_replay());
/// assert_eq!(retry.collect().await.unwrap().to_bytes(), "hello");
/// # }
/// ```
pub struct ReplayBody {
    shared: Arc<Mutex<Recording>>,
    /// How many recorded data frames this copy has sent.
    sent_frames: usize,
    /// How many bytes this copy has sent.
    sent_bytes: u64,
    /// Whether this copy has sent the trailers (or the end, when there are none).
    finished: bool,
}

/// The original body and what has been read of it, shared by every copy.
struct Recording {
    /// The original body, read once by whichever copy gets ahead.
    inner: Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send>>,
    /// The data frames read so far (while `replayable`).
    frames: Vec<Bytes>,
    /// Data frames read from the original body so far.
    read_frames: usize,
    /// Bytes read from the original body so far.
    read_bytes: u64,
    limit: u64,
    /// False once more than `limit` bytes were read (or the body failed): no copy made
    /// from then on can send the whole body.
    replayable: bool,
    trailers: Option<HeaderMap>,
    /// The original body has ended.
    ended: bool,
}

impl ReplayBody {
    /// Wraps `body`, recording up to `limit` bytes of it for replay.
    pub fn new<B>(body: B, limit: usize) -> Self
    where
        B: Body + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        let replayable = body.size_hint().lower() <= limit;
        ReplayBody {
            shared: Arc::new(Mutex::new(Recording {
                inner: Box::pin(IntoBytes(body)),
                frames: Vec::new(),
                read_frames: 0,
                read_bytes: 0,
                limit,
                replayable,
                trailers: None,
                ended: false,
            })),
            sent_frames: 0,
            sent_bytes: 0,
            finished: false,
        }
    }

    /// Whether a copy of this body can still send the whole body: false once more than the
    /// limit has been read, or reading it failed.
    pub fn can_replay(&self) -> bool {
        self.lock().replayable
    }

    fn lock(&self) -> MutexGuard<'_, Recording> {
        // A panic in the original body while locked leaves consistent state behind.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clone for ReplayBody {
    /// A copy that sends the body from its start.
    fn clone(&self) -> Self {
        ReplayBody {
            shared: self.shared.clone(),
            sent_frames: 0,
            sent_bytes: 0,
            finished: false,
        }
    }
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let mut recording = this.shared.lock().unwrap_or_else(PoisonError::into_inner);
        // Replay what another copy already read.
        if this.sent_frames < recording.read_frames {
            let Some(frame) = recording.frames.get(this.sent_frames).cloned() else {
                return Poll::Ready(Some(Err(NotReplayable.into())));
            };
            this.sent_frames += 1;
            this.sent_bytes += frame.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
        if recording.ended {
            if this.finished {
                return Poll::Ready(None);
            }
            this.finished = true;
            if !recording.replayable {
                // Another copy read past the limit, or reading failed.
                return Poll::Ready(Some(Err(NotReplayable.into())));
            }
            return Poll::Ready(recording.trailers.clone().map(|t| Ok(Frame::trailers(t))));
        }
        // Caught up: read on from the original body.
        match ready!(recording.inner.as_mut().poll_frame(cx)) {
            None => {
                recording.ended = true;
                this.finished = true;
                Poll::Ready(None)
            }
            Some(Err(error)) => {
                recording.replayable = false;
                recording.frames = Vec::new();
                recording.ended = true;
                this.finished = true;
                Poll::Ready(Some(Err(error)))
            }
            Some(Ok(frame)) => {
                let frame = match frame.into_data() {
                    Ok(data) => {
                        recording.record(&data);
                        this.sent_frames += 1;
                        this.sent_bytes += data.len() as u64;
                        Frame::data(data)
                    }
                    Err(frame) => {
                        // Trailers are the last frame: the body has ended.
                        if let Some(trailers) = frame.trailers_ref() {
                            recording.trailers = Some(trailers.clone());
                            recording.ended = true;
                            this.finished = true;
                        }
                        frame
                    }
                };
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.finished {
            return true;
        }
        let recording = self.lock();
        let caught_up = self.sent_frames == recording.read_frames;
        if recording.ended {
            caught_up && recording.trailers.is_none()
        } else {
            caught_up && recording.inner.is_end_stream()
        }
    }

    fn size_hint(&self) -> SizeHint {
        let recording = self.lock();
        let replay = recording.read_bytes - self.sent_bytes;
        if recording.ended {
            return SizeHint::with_exact(replay);
        }
        let rest = recording.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(replay));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(replay));
        }
        hint
    }
}

impl Recording {
    /// Counts a data frame read from the original body and keeps it while under the limit.
    fn record(&mut self, data: &Bytes) {
        self.read_frames += 1;
        self.read_bytes += data.len() as u64;
        if !self.replayable {
            return;
        }
        if self.read_bytes > self.limit {
            self.replayable = false;
            self.frames = Vec::new();
        } else {
            self.frames.push(data.clone());
        }
    }
}

impl fmt::Debug for ReplayBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let recording = self.lock();
        f.debug_struct("ReplayBody")
            .field("limit", &recording.limit)
            .field("read_bytes", &recording.read_bytes)
            .field("replayable", &recording.replayable)
            .field("sent_bytes", &self.sent_bytes)
            .finish()
    }
}

/// A body with its data as `Bytes` and its error boxed, its size hint kept (hyper sets
/// `content-length` from it).
#[pin_project::pin_project]
struct IntoBytes<B>(#[pin] B);

impl<B> Body for IntoBytes<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = ready!(self.project().0.poll_frame(cx));
        Poll::Ready(frame.map(|frame| {
            frame
                .map(|frame| frame.map_data(|mut data| data.copy_to_bytes(data.remaining())))
                .map_err(Into::into)
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

/// The error of a copy asked to send a body that cannot be replayed. The retry policy does
/// not send such copies; this only reaches a caller that clones a [`ReplayBody`] itself.
#[derive(Debug)]
struct NotReplayable;

impl fmt::Display for NotReplayable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the request body cannot be sent again: it was larger than the replay limit, \
             or reading it failed",
        )
    }
}

impl std::error::Error for NotReplayable {}

/// Wraps request bodies in a [`ReplayBody`] recording up to `limit` bytes, so a retry layer
/// inside it can send streaming bodies again.
///
/// Place it outside the retry layer. A request whose body turns out larger than `limit`
/// is sent once and not retried; a smaller one is replayed from memory (the recording is
/// freed with the last copy, when the call ends).
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_bulwark_retry::{HttpRetry, ReplayLayer, RetryPolicy};
///
/// let policy = RetryPolicy::builder().classify(HttpRetry::default()).build().unwrap();
/// let client = ServiceBuilder::new()
///     .layer(ReplayLayer::new(64 * 1024))
///     .layer(policy.layer())
///     .service_fn(|request: http::Request<tower_bulwark_retry::ReplayBody>| async move {
///         Ok::<_, std::convert::Infallible>(http::Response::new(()))
///     });
/// # let _ = client;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ReplayLayer {
    limit: usize,
}

impl ReplayLayer {
    /// Records up to `limit` bytes of each request body.
    pub fn new(limit: usize) -> Self {
        ReplayLayer { limit }
    }
}

impl<S> tower::Layer<S> for ReplayLayer {
    type Service = Replay<S>;

    fn layer(&self, inner: S) -> Replay<S> {
        Replay {
            inner,
            limit: self.limit,
        }
    }
}

/// The service of a [`ReplayLayer`]: passes requests on with a [`ReplayBody`].
#[derive(Debug, Clone)]
pub struct Replay<S> {
    inner: S,
    limit: usize,
}

impl<S, B> tower::Service<http::Request<B>> for Replay<S>
where
    S: tower::Service<http::Request<ReplayBody>>,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> S::Future {
        let limit = self.limit;
        self.inner
            .call(request.map(|body| ReplayBody::new(body, limit)))
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;
    use http_body_util::channel::Channel;
    use http_body_util::{BodyExt, Full};

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

    #[test]
    fn a_body_declared_larger_than_the_limit_is_never_recorded() {
        let body = ReplayBody::new(Full::new(Bytes::from_static(b"123456789")), 8);
        assert!(!body.can_replay());
        assert_eq!(body.size_hint().exact(), Some(9));
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
}
