//! The life of a keyed request: fingerprint it, claim its key, run it, keep its answer;
//! or answer from what the key already holds.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, DATE, TE, TRANSFER_ENCODING, UPGRADE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Body;
use tokio::task::JoinHandle;
use tower_service::Service;

use crate::body::{Keep, RequestBody, ResponseBody};
use crate::config::Shared;
use crate::events::Outcome;
use crate::fingerprint::Fingerprinter;
use crate::problem::Problem;
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
    let body = match read_body(body, settings.max_request_body).await {
        Ok(body) => body,
        Err(problem) => {
            if problem == Problem::BodyTooLarge {
                reporter.report(Outcome::BodyTooLarge);
            }
            return Ok(problem.response());
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
    let mut claim = ClaimGuard(Some(Claim {
        shared: shared.clone(),
        key: store_key,
        token,
    }));
    let claimed = shared
        .store
        .claim(store_key, fingerprint, token, settings.lease);
    match within(settings.store_timeout, claimed).await {
        Ok(Claimed::New) => {}
        Ok(Claimed::Existing(record)) => {
            claim.forget();
            return Ok(answer_from(record, fingerprint, &shared));
        }
        Err(error) => {
            claim.forget();
            tracing::warn!(idempotency = %reporter.name, %error, "claiming a key failed");
            return match settings.on_store_error {
                OnStoreError::FailOpen => {
                    reporter.report(Outcome::StoreFailedOpen);
                    let response = inner.call(request).await?;
                    Ok(response.map(ResponseBody::passed))
                }
                OnStoreError::FailClosed => {
                    reporter.report(Outcome::StoreFailedClosed);
                    Ok(Problem::StoreUnavailable.response())
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
    let Some(claim) = claim.0.take() else {
        unreachable!("the claim is taken only here or when released");
    };
    reporter.report(Outcome::Executed);
    let (parts, body) = response.into_parts();
    let body = ResponseBody::recorded(
        body,
        parts.status,
        kept_headers(&parts.headers),
        settings.max_response_body,
        claim.into_keep(fingerprint),
    );
    Ok(Response::from_parts(parts, body))
}

/// What a taken key answers: 422 for another request, 409 while it runs or when its
/// answer was not kept, else the answer, marked replayed.
fn answer_from<St, B>(
    record: Record,
    fingerprint: Fingerprint,
    shared: &Shared<St>,
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
    problem.response()
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
    timeout: std::time::Duration,
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
}

impl<St: Store> Claim<St> {
    /// Starts removing the claim, on its own task so that it completes even if the
    /// caller leaves.
    fn start_release(self) -> Option<JoinHandle<()>> {
        self.shared.reporter.report(Outcome::Released);
        spawn(async move {
            let shared = &self.shared;
            let release = shared.store.release(self.key, self.token);
            if let Err(error) = within(shared.settings.store_timeout, release).await {
                tracing::warn!(
                    idempotency = %shared.reporter.name,
                    %error,
                    "releasing a key failed: it stays taken until its lease ends"
                );
            }
        })
    }

    /// What keeps the answer once the response body has ended (or was dropped). A gRPC
    /// status in the trailers is judged like the headers were: an `UNAVAILABLE` after the
    /// data releases the key instead.
    fn into_keep(self, fingerprint: Fingerprint) -> Keep {
        Box::new(move |state| {
            if let RecordState::Done(stored) = &state {
                let settings = &self.shared.settings;
                if let Some(trailers) = &stored.trailers {
                    if !settings.keeps(stored.status, trailers) {
                        return self.start_release();
                    }
                }
            }
            let not_kept = matches!(state, RecordState::NotKept(_));
            spawn(async move {
                let shared = &self.shared;
                let record = Record { fingerprint, state };
                let complete =
                    shared
                        .store
                        .complete(self.key, self.token, record, shared.settings.ttl);
                match within(shared.settings.store_timeout, complete).await {
                    Ok(true) if not_kept => shared.reporter.report(Outcome::NotKept),
                    Ok(true) => {}
                    Ok(false) => {
                        shared.reporter.report(Outcome::KeepFailed);
                        tracing::warn!(
                            idempotency = %shared.reporter.name,
                            "an answer was not kept: the claim's lease ended while the request ran (make the lease longer than the longest run)"
                        );
                    }
                    Err(error) => {
                        shared.reporter.report(Outcome::KeepFailed);
                        tracing::warn!(idempotency = %shared.reporter.name, %error, "keeping an answer failed");
                    }
                }
            })
        })
    }
}

/// Releases the claim if dropped while holding it.
struct ClaimGuard<St: Store>(Option<Claim<St>>);

impl<St: Store> ClaimGuard<St> {
    /// Gives the claim up without releasing it: it was never the caller's.
    fn forget(&mut self) {
        self.0 = None;
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
