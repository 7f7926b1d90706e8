//! The load generator: open loop, real requests over pooled connections.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Callers give up after this long (and say so in `x-request-timeout-ms`).
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);

/// One request: when it started (seconds into the run), how long it took, whether it
/// succeeded (a 200 within the timeout).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) at: f64,
    pub(crate) latency: Duration,
    pub(crate) ok: bool,
}

/// Sends `rate` requests per second to `edge`, evenly spaced, for `duration`; returns the
/// requests still running.
pub(crate) async fn offer(
    client: &Client<HttpConnector, Full<Bytes>>,
    edge: SocketAddr,
    rate: f64,
    duration: Duration,
    run_start: Instant,
    samples: &Arc<Mutex<Vec<Sample>>>,
) -> Vec<JoinHandle<()>> {
    let count = (rate * duration.as_secs_f64()) as u32;
    let gap = duration / count.max(1);
    let phase_start = Instant::now();
    let mut running = Vec::with_capacity(count as usize);
    for i in 0..count {
        tokio::time::sleep_until(phase_start + gap * i).await;
        let (client, samples) = (client.clone(), samples.clone());
        running.push(tokio::spawn(async move {
            let sent = Instant::now();
            let request = http::Request::get(format!("http://{edge}/"))
                .header("x-request-timeout-ms", CLIENT_TIMEOUT.as_millis() as u64)
                .body(Full::default())
                .expect("request");
            let ok = matches!(
                tokio::time::timeout(CLIENT_TIMEOUT, client.request(request)).await,
                Ok(Ok(response)) if response.status() == 200
            );
            samples.lock().expect("samples").push(Sample {
                at: sent.duration_since(run_start).as_secs_f64(),
                latency: sent.elapsed(),
                ok,
            });
        }));
    }
    running
}
