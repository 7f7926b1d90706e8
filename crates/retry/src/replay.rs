//! [`ReplayBody`]: a request body that can be sent again, recorded up to a size limit.

mod layer;
mod waiters;

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll, Waker};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tower_bulwark_core::{BoxError, CanReplay, Replayable};

pub use self::layer::{Replay, ReplayLayer};
use self::waiters::Waiters;

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
/// the whole body. Copies may be sent at the same time (over HTTP/2 a 503 can arrive
/// before the upload ends): whichever reads the original body next records the frame for
/// the others, and every copy waiting for the original body is woken when it is ready.
///
/// Once more than `limit` bytes have been read, the recording is dropped and the body can
/// no longer be replayed: the request is **sent once and never retried**
/// ([`RetryPolicy`](crate::RetryPolicy) checks [`can_replay`](Self::can_replay) before each
/// retry and reports `NotRetried { reason: BodyTooLarge }`). A body whose declared size
/// already exceeds the limit is never recorded: it can be sent whole once, by whichever
/// copy reads it first. One whose reading failed cannot be replayed either. A copy that
/// cannot send the whole body claims no size (unknown `size_hint`, `is_end_stream` false)
/// and yields an error when polled: never a truncated or empty body.
///
/// Build it with [`ReplayLayer`], or with [`ReplayBody::new`].
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
    shared: Arc<Shared>,
    /// This copy's number among the waiters.
    copy: u64,
    sent: Sent,
}

/// What a copy has sent.
#[derive(Debug, Default)]
struct Sent {
    /// Data frames.
    frames: usize,
    /// Bytes.
    bytes: u64,
    /// Its last frame (the trailers, the end, or an error).
    finished: bool,
}

/// What every copy shares.
struct Shared {
    recording: Mutex<Recording>,
    /// Woken when the original body is ready. In an `Arc` of its own: the original body
    /// keeps this waker, which must not keep the original body alive.
    waiters: Arc<Waiters>,
}

/// The original body and what has been read of it.
struct Recording {
    /// The original body, read by one copy at a time (under the lock), whichever needs
    /// the next frame; always polled with the waiters' waker.
    inner: Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send>>,
    /// The data frames read so far, while `recorded`.
    frames: Vec<Bytes>,
    /// Data frames read from the original body so far.
    read_frames: usize,
    /// Bytes read from the original body so far.
    read_bytes: u64,
    limit: u64,
    /// `frames` holds every data frame read: false once more than `limit` bytes were read,
    /// or reading failed. A copy behind the reader then cannot catch up.
    recorded: bool,
    end: End,
}

/// How far the original body has been read.
enum End {
    /// Not to its end yet.
    Reading,
    /// To its end, with its trailers if any.
    Ended(Option<HeaderMap>),
    /// Reading it failed: no copy can send it whole.
    Failed,
}

/// What a copy sends next.
enum Next<'a> {
    /// A data frame another copy already read.
    Replay(&'a Bytes),
    /// The original body's next frame.
    Read,
    /// The end, with the trailers if any.
    End(Option<&'a HeaderMap>),
    /// An error: this copy cannot send the whole body.
    Broken,
}

impl ReplayBody {
    /// Wraps `body`, recording up to `limit` bytes of it for replay.
    pub fn new<B>(body: B, limit: usize) -> Self
    where
        B: Body + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        let recorded = body.size_hint().lower() <= limit;
        let recording = Recording {
            inner: Box::pin(IntoBytes(body)),
            frames: Vec::new(),
            read_frames: 0,
            read_bytes: 0,
            limit,
            recorded,
            end: End::Reading,
        };
        let waiters = Arc::new(Waiters::default());
        ReplayBody {
            copy: waiters.new_copy(),
            shared: Arc::new(Shared {
                recording: Mutex::new(recording),
                waiters,
            }),
            sent: Sent::default(),
        }
    }

    /// Whether a copy made now can send the whole body: false once a part that was not
    /// recorded has been read (more than the limit), or reading it failed.
    pub fn can_replay(&self) -> bool {
        self.shared.can_replay()
    }

    /// The same answer as [`can_replay`](Self::can_replay), to put in the request's
    /// extensions for layers that resend requests without knowing this type (the fallback
    /// crate's `BackupLayer`). [`ReplayLayer`] does it.
    pub fn replayable(&self) -> Replayable {
        Replayable::new(self.shared.clone())
    }
}

impl Clone for ReplayBody {
    /// A copy that sends the body from its start.
    fn clone(&self) -> Self {
        ReplayBody {
            shared: self.shared.clone(),
            copy: self.shared.waiters.new_copy(),
            sent: Sent::default(),
        }
    }
}

impl Drop for ReplayBody {
    fn drop(&mut self) {
        self.shared.waiters.forget(self.copy);
    }
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let ReplayBody { shared, copy, sent } = &mut *self;
        if sent.finished {
            return Poll::Ready(None);
        }
        let mut recording = shared.lock();
        match recording.next(sent.frames) {
            Next::Replay(data) => {
                let data = data.clone();
                sent.data(&data);
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            Next::End(trailers) => {
                sent.finished = true;
                return Poll::Ready(trailers.cloned().map(|t| Ok(Frame::trailers(t))));
            }
            Next::Broken => {
                sent.finished = true;
                return Poll::Ready(Some(Err(NotReplayable.into())));
            }
            Next::Read => {}
        }
        // Waiting before polling, so a wake-up between the two is not lost.
        shared.waiters.wait(*copy, cx.waker());
        let waker = Waker::from(shared.waiters.clone());
        let frame = ready!(recording
            .inner
            .as_mut()
            .poll_frame(&mut Context::from_waker(&waker)));
        Poll::Ready(match frame {
            None => {
                recording.end = End::Ended(None);
                sent.finished = true;
                None
            }
            Some(Err(error)) => {
                recording.fail();
                sent.finished = true;
                Some(Err(error))
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    recording.record(&data);
                    sent.data(&data);
                    Some(Ok(Frame::data(data)))
                }
                Err(frame) => {
                    // Trailers are the last frame: the body has ended.
                    if let Some(trailers) = frame.trailers_ref() {
                        recording.end = End::Ended(Some(trailers.clone()));
                        sent.finished = true;
                    }
                    Some(Ok(frame))
                }
            },
        })
    }

    fn is_end_stream(&self) -> bool {
        if self.sent.finished {
            return true;
        }
        let recording = self.shared.lock();
        match recording.next(self.sent.frames) {
            Next::End(trailers) => trailers.is_none(),
            Next::Read => recording.inner.is_end_stream(),
            Next::Replay(_) | Next::Broken => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        if self.sent.finished {
            return SizeHint::with_exact(0);
        }
        let recording = self.shared.lock();
        if let Next::Broken = recording.next(self.sent.frames) {
            // It will never send a whole body: claim nothing.
            return SizeHint::default();
        }
        let replay = recording.read_bytes.saturating_sub(self.sent.bytes);
        if !matches!(recording.end, End::Reading) {
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

impl Sent {
    fn data(&mut self, data: &Bytes) {
        self.frames += 1;
        self.bytes += data.len() as u64;
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Recording> {
        // A panic in the original body while locked leaves consistent state behind.
        self.recording
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl CanReplay for Shared {
    fn can_replay(&self) -> bool {
        // A new copy starts at the first frame: it can send the body if it can start (an
        // unrecorded body nobody has read yet is read by that copy).
        !matches!(self.lock().next(0), Next::Broken)
    }
}

impl Recording {
    /// What a copy that has sent `sent_frames` data frames sends next.
    fn next(&self, sent_frames: usize) -> Next<'_> {
        if sent_frames < self.read_frames {
            return match self.frames.get(sent_frames) {
                Some(data) if self.recorded => Next::Replay(data),
                _ => Next::Broken,
            };
        }
        match &self.end {
            End::Reading => Next::Read,
            End::Ended(trailers) => Next::End(trailers.as_ref()),
            End::Failed => Next::Broken,
        }
    }

    /// Counts a data frame read from the original body and keeps it while under the limit.
    fn record(&mut self, data: &Bytes) {
        self.read_frames += 1;
        self.read_bytes += data.len() as u64;
        if !self.recorded {
            return;
        }
        if self.read_bytes > self.limit {
            self.recorded = false;
            self.frames = Vec::new();
        } else {
            self.frames.push(data.clone());
        }
    }

    /// Reading the original body failed: no copy can send it whole.
    fn fail(&mut self) {
        self.end = End::Failed;
        self.recorded = false;
        self.frames = Vec::new();
    }
}

impl fmt::Debug for ReplayBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let recording = self.shared.lock();
        f.debug_struct("ReplayBody")
            .field("limit", &recording.limit)
            .field("read_bytes", &recording.read_bytes)
            .field("recorded", &recording.recorded)
            .field("sent", &self.sent)
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
/// not send such copies; this reaches a copy sent at the same time as the one that read
/// past the limit, or a caller that clones a [`ReplayBody`] itself.
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
