//! Review of `ReplayBody` under random schedules: copies cloned, polled (only when woken,
//! as an executor would), asked `is_end_stream`/`size_hint`, and dropped at any point while
//! the original body arrives a frame at a time. Every copy that ends sends the whole body
//! (or errors), no copy is left waiting without a wake-up, and the size a copy claims is
//! what it then sends.
#![cfg(feature = "http")]

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use tower_bulwark_core::BoxError;
use tower_bulwark_retry::ReplayBody;

/// What the original body has received so far.
#[derive(Default)]
struct Source {
    frames: VecDeque<Result<Frame<Bytes>, BoxError>>,
    ended: bool,
    /// Bytes not yet read, when the body declares its length.
    declared: Option<u64>,
    waker: Option<Waker>,
}

/// The original body: frames pushed by the test, a waker kept while it has none.
#[derive(Clone, Default)]
struct Original(Arc<Mutex<Source>>);

impl Original {
    fn push(&self, frame: Result<Frame<Bytes>, BoxError>) {
        let waker = {
            let mut source = self.0.lock().unwrap();
            source.frames.push_back(frame);
            source.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn end(&self) {
        let waker = {
            let mut source = self.0.lock().unwrap();
            source.ended = true;
            source.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Body for Original {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut source = self.0.lock().unwrap();
        if let Some(frame) = source.frames.pop_front() {
            if let (Ok(frame), Some(declared)) = (&frame, source.declared.as_mut()) {
                if let Some(data) = frame.data_ref() {
                    *declared -= data.len() as u64;
                }
            }
            return Poll::Ready(Some(frame));
        }
        if source.ended {
            return Poll::Ready(None);
        }
        source.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        let source = self.0.lock().unwrap();
        source.ended && source.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        let source = self.0.lock().unwrap();
        match source.declared {
            Some(declared) => SizeHint::with_exact(declared),
            None => SizeHint::default(),
        }
    }
}

#[derive(Default)]
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// How a copy ended.
#[derive(Debug, PartialEq)]
enum Ended {
    Whole,
    Error,
}

/// One copy, driven as an executor drives a task: polled again only once woken, or when
/// its last poll was ready.
struct Copy {
    body: ReplayBody,
    woken: Arc<Counter>,
    waker: Waker,
    /// The wake-ups counted when it last returned `Pending`.
    pending_since: Option<usize>,
    data: Vec<u8>,
    trailers: Option<HeaderMap>,
    /// The sizes it claimed, with the bytes it had sent then.
    hints: Vec<(SizeHint, usize)>,
    ended: Option<Ended>,
}

impl Copy {
    fn new(body: ReplayBody) -> Self {
        let woken = Arc::new(Counter::default());
        let waker = Waker::from(woken.clone());
        Copy {
            body,
            woken,
            waker,
            pending_since: None,
            data: Vec::new(),
            trailers: None,
            hints: Vec::new(),
            ended: None,
        }
    }

    fn runnable(&self) -> bool {
        self.ended.is_none()
            && self
                .pending_since
                .is_none_or(|since| self.woken.0.load(SeqCst) > since)
    }

    /// One step of a consumer like hyper: asks whether the body ended and its size, then
    /// polls it.
    fn step(&mut self) {
        self.hints.push((self.body.size_hint(), self.data.len()));
        if self.body.is_end_stream() {
            // What it claimed must hold: nothing more comes.
            let mut cx = Context::from_waker(&self.waker);
            assert!(
                matches!(
                    Pin::new(&mut self.body).poll_frame(&mut cx),
                    Poll::Ready(None)
                ),
                "is_end_stream said the body ended, but it has more to send"
            );
            self.ended = Some(Ended::Whole);
            return;
        }
        let since = self.woken.0.load(SeqCst);
        let mut cx = Context::from_waker(&self.waker);
        match Pin::new(&mut self.body).poll_frame(&mut cx) {
            Poll::Pending => self.pending_since = Some(since),
            Poll::Ready(frame) => {
                self.pending_since = None;
                match frame {
                    None => self.ended = Some(Ended::Whole),
                    Some(Err(_)) => self.ended = Some(Ended::Error),
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => {
                            assert!(self.trailers.is_none(), "data after the trailers");
                            self.data.extend_from_slice(&data);
                        }
                        Err(frame) => {
                            assert!(self.trailers.is_none(), "trailers twice");
                            self.trailers = Some(frame.into_trailers().unwrap());
                        }
                    },
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// The original body receives its next frame (or its end).
    Arrive,
    Poll(usize),
    Clone(usize),
    Drop(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => Just(Step::Arrive),
        6 => (0..8usize).prop_map(Step::Poll),
        1 => (0..8usize).prop_map(Step::Clone),
        1 => (0..8usize).prop_map(Step::Drop),
    ]
}

/// The whole original body.
#[derive(Debug, Clone)]
struct Script {
    chunks: Vec<Vec<u8>>,
    trailers: bool,
    /// Fails after this many chunks instead of ending.
    fail_after: Option<usize>,
    declared: bool,
    limit: usize,
}

fn script() -> impl Strategy<Value = Script> {
    (
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..4), 0..5),
        any::<bool>(),
        proptest::option::weighted(0.2, 0..6usize),
        any::<bool>(),
        prop_oneof![Just(0usize), Just(3), Just(8), Just(1024)],
    )
        .prop_map(|(chunks, trailers, fail_after, declared, limit)| Script {
            chunks,
            trailers,
            fail_after,
            declared,
            limit,
        })
}

fn trailers() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "42".parse().unwrap());
    trailers
}

/// The frames still to reach the original body; `None` is its end.
type Arrivals = VecDeque<Option<Result<Frame<Bytes>, BoxError>>>;

fn run(script: Script, steps: Vec<Step>) {
    let total: usize = script.chunks.iter().map(Vec::len).sum();
    let whole: Vec<u8> = script.chunks.concat();
    let fails = script.fail_after.filter(|n| *n <= script.chunks.len());
    let original = Original::default();
    if script.declared && fails.is_none() {
        original.0.lock().unwrap().declared = Some(total as u64);
    }
    // The frames still to arrive, the end last.
    let mut arrivals = Arrivals::new();
    for (i, chunk) in script.chunks.iter().enumerate() {
        if fails == Some(i) {
            break;
        }
        arrivals.push_back(Some(Ok(Frame::data(Bytes::from(chunk.clone())))));
    }
    match fails {
        Some(_) => arrivals.push_back(Some(Err("the upload broke".into()))),
        None => {
            if script.trailers {
                arrivals.push_back(Some(Ok(Frame::trailers(trailers()))));
            }
            arrivals.push_back(None);
        }
    }
    let arrive = |arrivals: &mut Arrivals| match arrivals.pop_front() {
        Some(Some(frame)) => original.push(frame),
        Some(None) => original.end(),
        None => {}
    };

    let mut live = vec![Copy::new(ReplayBody::new(original.clone(), script.limit))];
    let mut finished = Vec::new();
    for step in steps {
        match step {
            Step::Arrive => arrive(&mut arrivals),
            Step::Poll(i) if !live.is_empty() => {
                let i = i % live.len();
                if live[i].runnable() {
                    live[i].step();
                }
            }
            Step::Clone(i) if !live.is_empty() && live.len() < 6 => {
                let copy = live[i % live.len()].body.clone();
                live.push(Copy::new(copy));
            }
            Step::Drop(i) if live.len() > 1 => {
                drop(live.swap_remove(i % live.len()));
            }
            _ => {}
        }
        let (done, going): (Vec<Copy>, Vec<Copy>) =
            live.into_iter().partition(|copy| copy.ended.is_some());
        finished.extend(done);
        live = going;
    }
    // The rest of the body arrives; the copies left run until none can.
    while !arrivals.is_empty() {
        arrive(&mut arrivals);
    }
    let mut rounds = 0;
    while let Some(copy) = live.iter_mut().find(|copy| copy.runnable()) {
        copy.step();
        rounds += 1;
        assert!(rounds < 10_000, "a copy keeps being woken without progress");
    }
    for copy in &live {
        assert!(
            copy.ended.is_some(),
            "a copy waits for a wake-up that never comes (sent {} of {total} bytes)",
            copy.data.len()
        );
    }
    finished.extend(live);

    let replayable = fails.is_none() && total <= script.limit;
    for copy in &finished {
        match copy.ended {
            Some(Ended::Whole) => {
                assert_eq!(copy.data, whole, "a copy ended without the whole body");
                let expected = (script.trailers && fails.is_none()).then(trailers);
                assert_eq!(copy.trailers, expected);
                // Every size it claimed is what it then sent.
                for (hint, sent) in &copy.hints {
                    let rest = (total - sent) as u64;
                    assert!(
                        hint.lower() <= rest && hint.upper().is_none_or(|upper| rest <= upper),
                        "claimed {hint:?} with {rest} bytes left to send"
                    );
                }
            }
            Some(Ended::Error) => assert!(
                !replayable,
                "a copy of a body that fits its recording failed"
            ),
            None => unreachable!(),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn copies_under_any_schedule_send_the_whole_body_or_fail(
        script in script(),
        steps in proptest::collection::vec(step(), 0..60),
    ) {
        run(script, steps);
    }
}

/// `can_replay` answers whether a copy made now can send the whole body (what retries and
/// `BackupLayer` ask). A body too large to record can still be sent whole by a copy as
/// long as nothing of it has been read: an attempt refused before sending (circuit open,
/// connection refused) leaves it untouched, and a retry or the backup can send it.
#[tokio::test]
async fn a_body_too_large_to_record_can_be_sent_whole_until_it_is_read() {
    let first = ReplayBody::new(Full::new(Bytes::from_static(b"123456789")), 8);
    let retry = first.clone();
    // The first attempt was refused without reading the body.
    drop(first);
    assert!(
        retry.can_replay(),
        "nothing was read: a copy made now sends it all"
    );
    assert!(retry.replayable().can_replay());
    let late = retry.clone();
    assert_eq!(retry.collect().await.unwrap().to_bytes(), "123456789");
    // Now read past the limit: no copy can send it again.
    assert!(!late.can_replay());
    assert!(late.collect().await.is_err());
}
