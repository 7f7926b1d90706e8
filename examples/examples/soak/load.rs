//! The load: callers in a closed loop, each drawing keys at random from a large set, so
//! that every keyed layer sees a churn of distinct keys.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinSet;
use tower_bulwark::fallback::DEGRADED_HEADER;
use tower_bulwark::BoxError;

use crate::edge::CLIENT_ID;

/// The keys most calls ask for.
const HOT_KEYS: u64 = 100;

/// The caller's id for the rate limit: one call in ten comes from one busy client, which
/// the limit refuses at times; the others each from a client of their own.
fn client_id(draw: u64, key: u64) -> String {
    if draw % 10 == 1 {
        "busy".to_string()
    } else {
        key.to_string()
    }
}

/// Answers by kind, counted as they come.
#[derive(Default)]
pub(crate) struct Counts {
    /// 2xx from the backends.
    pub(crate) fresh: AtomicU64,
    /// 2xx marked degraded (a last good copy).
    pub(crate) degraded: AtomicU64,
    /// Refused: 429 (rate limit) or 503 (shed, drain).
    pub(crate) refused: AtomicU64,
    /// Of which 429.
    pub(crate) limited: AtomicU64,
    /// Any other status (502: no backend answer and no copy).
    pub(crate) failed: AtomicU64,
    /// No answer at all (a connection error).
    pub(crate) errors: AtomicU64,
}

impl Counts {
    /// All answers and errors so far.
    pub(crate) fn total(&self) -> u64 {
        [
            &self.fresh,
            &self.degraded,
            &self.refused,
            &self.failed,
            &self.errors,
        ]
        .iter()
        .map(|count| count.load(Relaxed))
        .sum()
    }
}

/// The running callers.
pub(crate) struct Load {
    pub(crate) counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    callers: JoinSet<Result<(), BoxError>>,
}

impl Load {
    /// Starts `callers` callers against the edge at `edge`, drawing keys from `0..keys`.
    pub(crate) fn start(edge: SocketAddr, keys: u64, callers: usize) -> Load {
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut set = JoinSet::new();
        for caller in 0..callers {
            let (client, counts, stop) = (client.clone(), counts.clone(), stop.clone());
            set.spawn(async move {
                // xorshift64*, seeded per caller: no shared state between callers.
                let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ (caller as u64 + 1);
                while !stop.load(Relaxed) {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let draw = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
                    // Half the calls ask for one of the first 100 keys, so the last-good
                    // cache holds answers to serve in an outage; the rest churn.
                    let key = if draw % 2 == 0 {
                        draw / 2 % HOT_KEYS
                    } else {
                        draw % keys
                    };
                    let request = if key % 10 == 0 {
                        Request::post(format!("http://{edge}/orders"))
                            .header("idempotency-key", format!("\"order-{key}\""))
                            .header("content-type", "text/plain")
                            .body(Full::new(Bytes::from(format!("order {key}"))))?
                    } else {
                        Request::get(format!("http://{edge}/items/{key}"))
                            .body(Full::new(Bytes::new()))?
                    };
                    let mut request = request;
                    request
                        .headers_mut()
                        .insert(CLIENT_ID, client_id(draw, key).parse()?);
                    request
                        .headers_mut()
                        .insert("x-request-timeout-ms", "2000".parse()?);
                    let wait = count(&counts, client.request(request).await).await;
                    // A refused caller waits as asked (at most a second), as a client
                    // that honours Retry-After does.
                    if let Some(wait) = wait {
                        tokio::time::sleep(wait).await;
                    }
                }
                Ok(())
            });
        }
        Load {
            counts,
            stop,
            callers: set,
        }
    }

    /// Stops the callers after their current call; the first caller's error, if any. A
    /// caller still waiting 15 s later (its call hung: every answer should come within the
    /// 2 s deadline it sends) is an error, not a soak that never ends.
    pub(crate) async fn stop(mut self) -> Result<Arc<Counts>, BoxError> {
        self.stop.store(true, Relaxed);
        let stopped = tokio::time::timeout(Duration::from_secs(15), async {
            while let Some(joined) = self.callers.join_next().await {
                joined??;
            }
            Ok::<_, BoxError>(())
        })
        .await;
        match stopped {
            Ok(result) => result?,
            Err(_) => {
                let hung = self.callers.len();
                self.callers.shutdown().await;
                return Err(format!(
                    "{hung} caller(s) still waiting for an answer 15 s after the load stopped"
                )
                .into());
            }
        }
        Ok(self.counts)
    }
}

/// Sorts one answer; returns how long a refused caller is asked to wait.
async fn count<B>(
    counts: &Counts,
    answer: Result<http::Response<B>, impl std::error::Error>,
) -> Option<Duration>
where
    B: http_body::Body,
{
    let Ok(response) = answer else {
        counts.errors.fetch_add(1, Relaxed);
        return None;
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
        .map(|seconds| Duration::from_secs(seconds).min(Duration::from_secs(1)));
    let degraded = response.headers().contains_key(DEGRADED_HEADER);
    // Read the body whole, so the connection goes back to the pool.
    let read = response.into_body().collect().await.is_ok();
    let counter = match status.as_u16() {
        _ if !read => &counts.errors,
        200..=299 if degraded => &counts.degraded,
        200..=299 => &counts.fresh,
        429 => {
            counts.limited.fetch_add(1, Relaxed);
            &counts.refused
        }
        503 => &counts.refused,
        _ => &counts.failed,
    };
    counter.fetch_add(1, Relaxed);
    retry_after
}
