//! The open-loop load generator: Poisson arrivals from a seeded generator, each call sent
//! on its own task at its scheduled time whatever happened to the calls before it.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tower_bulwark::SeededRng;

/// How long a client waits for a whole answer; later answers count as timeouts. HTTP
/// clients send it as `x-request-timeout-ms`, gRPC clients as `grpc-timeout`.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);

/// What a call got, as its client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// HTTP 2xx or gRPC `OK`.
    Good,
    /// A shed: HTTP 503/429 marked `x-bulwark-overloaded` (or tower's bare 503), gRPC
    /// `RESOURCE_EXHAUSTED` marked the same.
    Refused,
    /// Any other answer, or a transport error.
    Error,
    /// No whole answer within [`CLIENT_TIMEOUT`].
    Timeout,
}

/// Makes one call to the server under test.
pub trait Caller: Clone + Send + Sync + 'static {
    /// One call, its answer read whole.
    fn call(&self) -> impl Future<Output = Answer> + Send;
}

/// One measured call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// From the call's task starting to its answer (or the timeout).
    pub latency: Duration,
    /// What it got.
    pub answer: Answer,
    /// Whether its task started before the window closed: when the client's runtime falls
    /// behind, calls wait to start.
    pub started_in_window: bool,
}

/// One run of load at a fixed rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Mean arrivals per second (more than 0).
    pub rate: f64,
    /// Load sent first and not measured.
    pub warmup: Duration,
    /// The measured window.
    pub window: Duration,
    /// Seeds the arrivals: every guard of a cell sees the same sequence.
    pub seed: u64,
}

/// What the measured window saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The calls sent in the window, answered or timed out.
    pub samples: Vec<Sample>,
    /// Arrivals scheduled in the window (when the generator falls behind past the
    /// window's end, the rest are not sent).
    pub scheduled: u64,
    /// The window's length.
    pub window: Duration,
}

/// Offers `plan`'s load through `caller`, calls `at_window_end` when the window closes,
/// and returns once every call sent has its answer or has timed out.
pub async fn run<C: Caller>(caller: C, plan: Plan, at_window_end: impl FnOnce()) -> Run {
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.window;
    let mut arrivals = SeededRng::new(plan.seed);
    let mut calls = JoinSet::new();
    let mut samples = Vec::new();
    let mut scheduled = 0;
    let mut next = start;
    loop {
        next += arrivals.next_gap(plan.rate);
        if next >= end {
            break;
        }
        let measured = next >= measure_from;
        scheduled += u64::from(measured);
        if Instant::now() < next {
            tokio::time::sleep_until(next).await;
        } else if Instant::now() >= end {
            continue; // Behind past the window: never sent.
        }
        calls.spawn(one(caller.clone(), measured, end));
        while let Some(done) = calls.try_join_next() {
            samples.extend(done.ok().flatten());
        }
    }
    tokio::time::sleep_until(end).await;
    at_window_end();
    while let Some(done) = calls.join_next().await {
        samples.extend(done.ok().flatten());
    }
    Run {
        samples,
        scheduled,
        window: plan.window,
    }
}

/// One call with the client's timeout; its sample if it was sent in the window.
async fn one<C: Caller>(caller: C, measured: bool, end: Instant) -> Option<Sample> {
    let started = Instant::now();
    let answer = tokio::time::timeout(CLIENT_TIMEOUT, caller.call())
        .await
        .unwrap_or(Answer::Timeout);
    let latency = started.elapsed();
    measured.then(|| Sample {
        latency,
        answer: in_time(answer, latency),
        started_in_window: started < end,
    })
}

/// `answer` if it came within [`CLIENT_TIMEOUT`], else a timeout (a busy runtime can poll a
/// finished call after its timer should have fired).
pub fn in_time(answer: Answer, latency: Duration) -> Answer {
    if latency > CLIENT_TIMEOUT {
        Answer::Timeout
    } else {
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_after_the_client_timeout_are_timeouts() {
        assert_eq!(in_time(Answer::Good, CLIENT_TIMEOUT), Answer::Good);
        let late = CLIENT_TIMEOUT + Duration::from_micros(1);
        assert_eq!(in_time(Answer::Good, late), Answer::Timeout);
        assert_eq!(in_time(Answer::Refused, late), Answer::Timeout);
        assert_eq!(in_time(Answer::Error, Duration::ZERO), Answer::Error);
    }
}
