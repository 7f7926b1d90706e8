//! The life of a keyed request: fingerprint it, claim its key, run it, keep its answer;
//! or answer from what the key already holds.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, DATE, TE, TRANSFER_ENCODING, UPGRADE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Body;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower_service::Service;

use crate::body::{Keep, RequestBody, ResponseBody};
use crate::config::Shared;
use crate::events::Outcome;
use crate::fingerprint::Fingerprinter;
use crate::problem::{Problem, Protocol};
use crate::store::{Claimed, OnStoreError, Store, StoreError};
use crate::{Fingerprint, Record, RecordState, StoreKey, Token, IDEMPOTENT_REPLAYED};

/// Runs a request carrying `key`. `inner` is ready (its readiness travels with it).
pub(crate) async fn keyed<S, St, ReqB, ResB>(
    shared: Arc<Shared<St>>,
    mut inner: S,
    parts: Parts,
    body: ReqB,
    key: Vec<u8>,
) -> Result<Response<ResponseBody<ResB>>, S::Error>
where
    S: Service<Request<RequestBody<ReqB>>, Response = Response<ResB>>,
    St: Store,
    ReqB: Body<Data = Bytes>,
    ResB: Body<Data = Bytes> + Send + 'static,
{
    let settings = &shared.settings;
    let reporter = &shared.reporter;
    let protocol = Protocol::of(&parts.headers);
    let body = match read_body(body, settings.max_request_body).await {
        Ok(body) => body,
        Err(problem) => {
            reporter.report(match problem {
                Problem::BodyTooLarge => Outcome::BodyTooLarge,
                _ => Outcome::BodyUnreadable,
            });
            return Ok(problem.response(&protocol));
        }
    };
    let mut fingerprinter = Fingerprinter::new(&parts);
    fingerprinter.update(&body);
    let fingerprint = fingerprinter.finish();
    let store_key = StoreKey::new(&settings.scope(&parts), &key);
    let request = Request::from_parts(parts, RequestBody::Buffered(Some(body)));

    // The guard exists before the claim is sent: a caller leaving while the store
    // answers releases whatever the claim did (a release is checked against the token,
    // so it never frees another request's claim).
    let token = Token::random();
    let mut claim = ClaimGuard(Some(Claim::new(shared.clone(), store_key, token)));
    let claimed = shared
        .store
        .claim(store_key, fingerprint, token, settings.lease);
    match within(settings.store_timeout, claimed).await {
        Ok(Claimed::New) => {}
        Ok(Claimed::Existing(record)) => {
            claim.forget();
            return Ok(answer_from(record, fingerprint, &shared, &protocol));
        }
        Err(error) => {
            // A claim that timed out may have landed: take it back (owner-checked, so
            // harmless if it did not), or the key would refuse retries for a lease.
            if let Some(claim) = claim.0.take() {
                claim.take_back();
            }
            tracing::warn!(idempotency = %reporter.name, %error, "claiming a key failed");
            return match settings.on_store_error {
                OnStoreError::FailOpen => {
                    reporter.report(Outcome::StoreFailedOpen);
                    let response = inner.call(request).await?;
                    Ok(response.map(ResponseBody::passed))
                }
                OnStoreError::FailClosed => {
                    reporter.report(Outcome::StoreFailedClosed);
                    Ok(Problem::StoreUnavailable.response(&protocol))
                }
            };
        }
    }

    // The key is ours until the answer is kept; dropped (the caller left), the claim
    // is released.
    let response = match inner.call(request).await {
        Ok(response) => response,
        Err(error) => {
            claim.release().await;
            return Err(error);
        }
    };
    if !settings.keeps(response.status(), response.headers()) {
        claim.release().await;
        return Ok(response.map(ResponseBody::passed));
    }
    // The guard holds the claim until here: it is released only on the paths above.
    let Some(keep) = claim.into_keep(fingerprint) else {
        return Ok(response.map(ResponseBody::passed));
    };
    reporter.report(Outcome::Executed);
    let (parts, body) = response.into_parts();
    let body = ResponseBody::recorded(
        body,
        parts.status,
        kept_headers(&parts.headers),
        settings.max_response_body,
        keep,
    );
    Ok(Response::from_parts(parts, body))
}

/// What a taken key answers: 422 for another request, 409 while it runs or when its
/// answer was not kept, else the answer, marked replayed.
fn answer_from<St, B>(
    record: Record,
    fingerprint: Fingerprint,
    shared: &Shared<St>,
    protocol: &Protocol,
) -> Response<ResponseBody<B>> {
    let (outcome, problem) = if record.fingerprint != fingerprint {
        (Outcome::Mismatch, Problem::Mismatch)
    } else {
        match record.state {
            RecordState::Running(_) => (Outcome::InProgress, Problem::InProgress),
            RecordState::NotKept(_) => (Outcome::Spent, Problem::Spent),
            RecordState::Done(stored) => {
                shared.reporter.report(Outcome::Replayed);
                let mut response = Response::new(ResponseBody::full(stored.body, stored.trailers));
                *response.status_mut() = stored.status;
                *response.headers_mut() = stored.headers;
                response
                    .headers_mut()
                    .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
                return response;
            }
        }
    };
    shared.reporter.report(outcome);
    problem.response(protocol)
}

/// Reads a keyed request's body whole, up to `limit` bytes: 413 over it, 400 if it fails.
async fn read_body<B: Body<Data = Bytes>>(body: B, limit: usize) -> Result<Bytes, Problem> {
    if body.size_hint().lower() > limit as u64 {
        return Err(Problem::BodyTooLarge);
    }
    let mut body = pin!(body);
    // One chunk (the usual case) is kept as it is; more are joined.
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    while let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let Ok(data) = frame.map_err(|_| Problem::BodyUnreadable)?.into_data() else {
            continue;
        };
        let len = first.as_ref().map_or(0, Bytes::len) + joined.len() + data.len();
        if len > limit {
            return Err(Problem::BodyTooLarge);
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            None => joined.extend_from_slice(&data),
            Some(head) => {
                joined.extend_from_slice(&head);
                joined.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| joined.freeze()))
}

/// The headers kept for replay: all but those that describe one connection or one
/// transfer (RFC 9110 §7.6.1: the fixed ones and those `Connection` names), and `Date`,
/// which a replay must not repeat. `Trailer` stays: the trailers are replayed too.
fn kept_headers(headers: &HeaderMap) -> HeaderMap {
    let mut kept = headers.clone();
    for value in headers.get_all(CONNECTION) {
        for name in value.to_str().unwrap_or_default().split(',') {
            kept.remove(name.trim());
        }
    }
    for name in [CONNECTION, TE, TRANSFER_ENCODING, UPGRADE, DATE] {
        kept.remove(name);
    }
    for name in ["keep-alive", "proxy-connection"] {
        kept.remove(name);
    }
    kept
}

/// Runs a store operation within the layer's timeout.
async fn within<T>(
    timeout: Duration,
    operation: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(timeout, operation)
        .await
        .unwrap_or_else(|_| Err(StoreError::timed_out(timeout)))
}

/// Starts `task` on the current runtime, if there is one (a request dropped outside any
/// runtime leaves its claim to the lease).
fn spawn(task: impl Future<Output = ()> + Send + 'static) -> Option<JoinHandle<()>> {
    tokio::runtime::Handle::try_current()
        .ok()
        .map(|runtime| runtime.spawn(task))
}

/// A claim on a key, held while the request runs.
struct Claim<St> {
    shared: Arc<Shared<St>>,
    key: StoreKey,
    token: Token,
    /// When the store lets the claim go by itself: writes are pointless after it.
    lease_ends: Instant,
}

/// What a claim's owner writes when it is done with the key.
enum Write {
    /// Frees the key: the request was not carried out.
    Release,
    /// Replaces the claim by what the request answered.
    Complete(Record),
}

/// The first wait before a failed write is tried again; it doubles up to a second.
const FIRST_RETRY: Duration = Duration::from_millis(50);

impl<St: Store> Claim<St> {
    fn new(shared: Arc<Shared<St>>, key: StoreKey, token: Token) -> Self {
        let now = Instant::now();
        let lease_ends = now.checked_add(shared.settings.lease).unwrap_or(now);
        Claim {
            shared,
            key,
            token,
            lease_ends,
        }
    }

    /// Starts removing the claim, so a retry of the request runs.
    fn start_release(self) -> Option<JoinHandle<()>> {
        self.shared.reporter.report(Outcome::Released);
        self.write(Write::Release)
    }

    /// Releases a claim the store may or may not have made (its answer never came), with
    /// one attempt: a store that is down most likely never made it, and retrying for
    /// every refused request would pile up tasks against the store as it comes back. A
    /// claim that did land and is not released frees itself when its lease ends.
    fn take_back(self) {
        spawn(async move {
            let _ = self.attempt(&Write::Release).await;
        });
    }

    /// What keeps the answer once the response body has ended (or was dropped). A gRPC
    /// status in the trailers is judged like the headers were: an `UNAVAILABLE` after the
    /// data releases the key instead.
    fn into_keep(self, fingerprint: Fingerprint) -> Keep {
        Box::new(move |state, trailers_not_kept| {
            let trailers = match &state {
                RecordState::Done(stored) => stored.trailers.as_ref().map(|t| (stored.status, t)),
                RecordState::NotKept(status) => trailers_not_kept.map(|t| (*status, t)),
                RecordState::Running(_) => None,
            };
            if trailers.is_some_and(|(status, t)| !self.shared.settings.keeps(status, t)) {
                return self.start_release();
            }
            self.write(Write::Complete(Record { fingerprint, state }))
        })
    }

    /// Writes on a task of its own, so the write completes even if the caller leaves; the
    /// handle ends with the first attempt (what an answer's last frame waits for). A
    /// failed attempt is tried again in the background until the lease ends: a key left
    /// claimed would refuse the client's retries with 409 until then, and an answer not
    /// kept would let a retry after it run the request twice.
    fn write(self, write: Write) -> Option<JoinHandle<()>> {
        spawn(async move {
            match self.attempt(&write).await {
                Ok(done) => self.report(&write, done),
                Err(error) => {
                    tracing::warn!(
                        idempotency = %self.shared.reporter.name,
                        %error,
                        "a write to the idempotency store failed; trying again until the lease ends"
                    );
                    spawn(self.retry(write));
                }
            }
        })
    }

    async fn attempt(&self, write: &Write) -> Result<bool, StoreError> {
        let store = &self.shared.store;
        let settings = &self.shared.settings;
        let operation = match write {
            Write::Release => store.release(self.key, self.token),
            Write::Complete(record) => {
                store.complete(self.key, self.token, record.clone(), settings.ttl)
            }
        };
        within(settings.store_timeout, operation).await
    }

    async fn retry(self, write: Write) {
        let mut wait = FIRST_RETRY;
        while Instant::now() + wait < self.lease_ends {
            tokio::time::sleep(wait).await;
            // After a failed attempt, `false` may mean the failed one was written after
            // all: the claim is no longer there to replace, and nothing is lost.
            if self.attempt(&write).await.is_ok() {
                return;
            }
            wait = (wait * 2).min(Duration::from_secs(1));
        }
        if let Write::Complete(_) = write {
            self.shared.reporter.report(Outcome::KeepFailed);
        }
        tracing::warn!(
            idempotency = %self.shared.reporter.name,
            "gave up writing to the idempotency store: the claim's lease ended"
        );
    }

    fn report(&self, write: &Write, done: bool) {
        let reporter = &self.shared.reporter;
        match write {
            Write::Complete(record) if done => {
                if let RecordState::NotKept(_) = record.state {
                    reporter.report(Outcome::NotKept);
                }
            }
            Write::Complete(_) => {
                reporter.report(Outcome::KeepFailed);
                tracing::warn!(
                    idempotency = %reporter.name,
                    "an answer was not kept: the claim's lease ended while the request ran (make the lease longer than the longest run)"
                );
            }
            Write::Release => {}
        }
    }
}

/// Releases the claim if dropped while holding it.
struct ClaimGuard<St: Store>(Option<Claim<St>>);

impl<St: Store> ClaimGuard<St> {
    /// Gives the claim up without releasing it: it was never the caller's.
    fn forget(&mut self) {
        self.0 = None;
    }

    /// Hands the claim to what keeps the answer.
    fn into_keep(mut self, fingerprint: Fingerprint) -> Option<Keep> {
        self.0.take().map(|claim| claim.into_keep(fingerprint))
    }

    /// Releases the claim and waits for the store, so a retry sent right after the
    /// answer finds the key free.
    async fn release(&mut self) {
        if let Some(handle) = self.0.take().and_then(Claim::start_release) {
            let _ = handle.await;
        }
    }
}

impl<St: Store> Drop for ClaimGuard<St> {
    fn drop(&mut self) {
        if let Some(claim) = self.0.take() {
            claim.start_release();
        }
    }
}
