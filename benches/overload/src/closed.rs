//! The closed-loop load generator of the end-to-end bench: `connections` callers, each
//! sending its next request as soon as the previous answer is read whole. The server is
//! never offered more than `connections` calls at once, so the run measures the most the
//! pair can serve, not how it copes with an overload (the open-loop harness does that).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::Full;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::{Service, ServiceExt};
use tower_bulwark::BoxError;

/// One run of closed-loop load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Callers, each with its own keep-alive connection (a pooled client opens one per
    /// caller, and keeps them).
    pub connections: usize,
    /// Load sent first and not measured.
    pub warmup: Duration,
    /// The measured window.
    pub window: Duration,
    /// The server's runtime: 1 is a current-thread runtime on a thread pinned to its core
    /// (one handler runs at a time); more is a multi-thread runtime of that many workers,
    /// unpinned, whose CPU time is not read.
    pub server_threads: usize,
}

/// The measured window and its place in time, fixed when the load starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// When the measured window opens.
    pub from: Instant,
    /// When it closes: no call starts after it, no call ending after it counts.
    pub end: Instant,
}

impl Window {
    /// The window of `plan`, starting its warm-up now.
    pub fn starting_now(plan: &Plan) -> Window {
        let from = Instant::now() + plan.warmup;
        Window {
            from,
            end: from + plan.window,
        }
    }

    /// Its length.
    pub fn length(&self) -> Duration {
        self.end - self.from
    }
}

/// What the callers saw. Answers count in the window they *ended* in.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Latencies of the 2xx answers ended in the window, in microseconds.
    pub latencies: Histogram<u64>,
    /// Answers ended in the window, by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Calls that failed without an answer in the window (transport errors, and refusals
    /// by client-side layers).
    pub errors: u64,
    /// 503 answers during the warm-up (a shed while the limit learns counts too).
    pub warmup_503: u64,
    /// The window's length.
    pub window: Duration,
}

impl Tally {
    /// Nothing yet, for a window of `window`.
    pub fn new(window: Duration) -> Tally {
        Tally {
            // Microseconds, up to a minute (longer ones count as a minute).
            latencies: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            statuses: BTreeMap::new(),
            errors: 0,
            warmup_503: 0,
            window,
        }
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Tally) {
        self.latencies
            .add(&other.latencies)
            .expect("histograms of the same bounds");
        for (status, count) in &other.statuses {
            *self.statuses.entry(*status).or_default() += count;
        }
        self.errors += other.errors;
        self.warmup_503 += other.warmup_503;
    }

    /// Answers with `status` in the window.
    pub fn count(&self, status: StatusCode) -> u64 {
        self.statuses
            .get(&status.as_u16())
            .copied()
            .unwrap_or_default()
    }

    /// Answers of any status in the window.
    pub fn answers(&self) -> u64 {
        self.statuses.values().sum()
    }

    /// 2xx answers in the window.
    pub fn good(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(status, _)| (200..300).contains(*status))
            .map(|(_, count)| count)
            .sum()
    }

    /// 2xx answers per second.
    pub fn throughput(&self) -> f64 {
        self.good() as f64 / self.window.as_secs_f64()
    }

    /// The `quantile` (0..=1) of the 2xx latencies; `None` if there were none.
    pub fn latency(&self, quantile: f64) -> Option<Duration> {
        (!self.latencies.is_empty())
            .then(|| Duration::from_micros(self.latencies.value_at_quantile(quantile)))
    }

    /// Records one call that ended at `done`, `latency` after it started.
    fn record(
        &mut self,
        window: &Window,
        done: Instant,
        latency: Duration,
        status: Option<StatusCode>,
    ) {
        if done < window.from {
            self.warmup_503 += u64::from(status == Some(StatusCode::SERVICE_UNAVAILABLE));
            return;
        }
        if done >= window.end {
            return;
        }
        match status {
            Some(status) => {
                *self.statuses.entry(status.as_u16()).or_default() += 1;
                if status.is_success() {
                    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                    self.latencies.saturating_record(micros.max(1));
                }
            }
            None => self.errors += 1,
        }
    }
}

/// Runs `connections` callers of `GET uri` through clones of `client` until
/// `window.end`, and sums up what they saw.
pub async fn run<S>(client: S, uri: Uri, connections: usize, window: Window) -> Tally
where
    S: Service<Request<Full<Bytes>>, Response = Response<Bytes>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
{
    let mut callers = JoinSet::new();
    for _ in 0..connections {
        callers.spawn(caller(client.clone(), uri.clone(), window));
    }
    let mut tally = Tally::new(window.length());
    while let Some(done) = callers.join_next().await {
        if let Ok(caller) = done {
            tally.merge(&caller);
        }
    }
    tally
}

/// One caller: a call, its answer read whole, the next call, until the window ends.
async fn caller<S>(mut client: S, uri: Uri, window: Window) -> Tally
where
    S: Service<Request<Full<Bytes>>, Response = Response<Bytes>>,
    S::Error: Into<BoxError>,
{
    let mut tally = Tally::new(window.length());
    loop {
        let started = Instant::now();
        if started >= window.end {
            return tally;
        }
        let mut request = Request::new(Full::new(Bytes::new()));
        *request.uri_mut() = uri.clone();
        let ready = client.ready().await.ok();
        let status = match ready {
            Some(ready) => ready.call(request).await.ok().map(|answer| answer.status()),
            None => None,
        };
        let done = Instant::now();
        tally.record(&window, done, done - started, status);
        if status.is_none() {
            // A refused connection fails at once: do not spin on it.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> Window {
        let from = Instant::now() + Duration::from_secs(1);
        Window {
            from,
            end: from + Duration::from_secs(2),
        }
    }

    #[test]
    fn answers_count_in_the_window_they_end_in() {
        let w = window();
        let ms = Duration::from_millis;
        let mut tally = Tally::new(w.length());
        let ok = Some(StatusCode::OK);
        let shed = Some(StatusCode::SERVICE_UNAVAILABLE);
        tally.record(&w, w.from - ms(1), ms(1), shed); // warm-up
        tally.record(&w, w.from - ms(1), ms(1), ok); // warm-up
        tally.record(&w, w.from, ms(2), ok);
        tally.record(&w, w.end - ms(1), ms(4), ok);
        tally.record(&w, w.end - ms(1), ms(1), shed);
        tally.record(&w, w.end - ms(1), ms(1), None);
        tally.record(&w, w.end, ms(1), ok); // after
        assert_eq!(tally.warmup_503, 1);
        assert_eq!(tally.good(), 2);
        assert_eq!(tally.answers(), 3);
        assert_eq!(tally.count(StatusCode::SERVICE_UNAVAILABLE), 1);
        assert_eq!(tally.errors, 1);
        assert_eq!(tally.throughput(), 1.0);
        // Within the histogram's three significant digits.
        let near = |got: Option<Duration>, want: Duration| {
            got.is_some_and(|got| got.abs_diff(want) <= want / 500)
        };
        assert!(near(tally.latency(1.0), ms(4)), "{:?}", tally.latency(1.0));
        assert!(near(tally.latency(0.0), ms(2)), "{:?}", tally.latency(0.0));

        let mut sum = Tally::new(w.length());
        sum.merge(&tally);
        sum.merge(&tally);
        assert_eq!(sum.good(), 4);
        assert_eq!(sum.warmup_503, 2);
        assert_eq!(sum.errors, 2);
        assert_eq!(sum.latencies.len(), 4);
        assert_eq!(Tally::new(w.length()).latency(0.5), None);
    }
}
