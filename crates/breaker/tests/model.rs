//! The breaker's decisions against a plain reference model, over random sequences of
//! outcomes, call durations (slow calls), bursts of concurrent calls (several probes at
//! once) and pauses, with count or time windows, the half-open maximum wait and the
//! recovery ramp.

use std::collections::VecDeque;
use std::time::Duration;

use proptest::prelude::*;
use tower::{Layer, Service, ServiceExt};
use tower_bulwark_breaker::{CircuitBreakerLayer, CircuitOpen, OpenDuration, State, WindowKind};
use tower_bulwark_core::testing::controlled;
use tower_bulwark_core::{BoxError, Outcome};

const MS: u64 = 1_000_000;

/// One call: its outcome and how long it takes, in milliseconds.
type Call = (Outcome, u64);

#[derive(Debug, Clone)]
enum Op {
    Wait(u64),
    /// Calls started at the same instant, in order; they finish after their durations.
    Burst(Vec<Call>),
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        3 => Just(Outcome::Success),
        3 => Just(Outcome::Failure),
        1 => Just(Outcome::Ignored),
    ]
}

fn call() -> impl Strategy<Value = Call> {
    (outcome(), prop_oneof![3 => Just(0u64), 1 => 1u64..60])
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0u64..3_000).prop_map(Op::Wait),
        5 => call().prop_map(|call| Op::Burst(vec![call])),
        1 => proptest::collection::vec(call(), 2..6).prop_map(|mut calls| {
            // Distinct durations, so the order they finish in is known.
            for (i, call) in calls.iter_mut().enumerate() {
                call.1 = call.1 * 8 + i as u64;
            }
            Op::Burst(calls)
        }),
    ]
}

#[derive(Debug, Clone, Copy)]
enum Window {
    Count(u32),
    Time { buckets: u32, bucket_ms: u64 },
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    consecutive: Option<u32>,
    rate: Option<f64>,
    /// Threshold in milliseconds, and rate.
    slow: Option<(u64, f64)>,
    window: Window,
    minimum: u32,
    open_ms: u64,
    probes: u32,
    successes: u32,
    max_wait_ms: u64,
    ramp_ms: Option<u64>,
}

fn rate() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.25), Just(0.5), Just(0.75), Just(1.0)]
}

fn settings() -> impl Strategy<Value = Settings> {
    let window = prop_oneof![
        (1u32..12).prop_map(Window::Count),
        (1u32..6, 1u64..400).prop_map(|(buckets, bucket_ms)| Window::Time { buckets, bucket_ms }),
    ];
    (
        (
            proptest::option::of(1u32..6),
            proptest::option::of(rate()),
            proptest::option::of((1u64..50, rate())),
            window,
            1u32..12,
        ),
        (
            1u64..2_000,
            1u32..4,
            1u32..4,
            1u64..5_000,
            proptest::option::of(1u64..3_000),
        ),
    )
        .prop_map(
            |(
                (consecutive, rate, slow, window, minimum),
                (open_ms, probes, successes, max_wait_ms, ramp_ms),
            )| Settings {
                consecutive,
                rate,
                slow,
                window,
                minimum: match window {
                    Window::Count(size) => minimum.min(size),
                    Window::Time { .. } => minimum,
                },
                open_ms,
                probes,
                successes,
                max_wait_ms,
                ramp_ms,
            },
        )
        .prop_filter("a breaker needs a trip condition", |s| {
            s.consecutive.is_some() || s.rate.is_some() || s.slow.is_some()
        })
}

// === the reference model ===

/// The rules, written as plainly as possible. Times are nanoseconds since the breaker was
/// built.
#[derive(Debug)]
struct Model {
    s: Settings,
    state: Machine,
    /// Counts transitions: a permit only counts in the phase it was admitted in.
    phase: u64,
    /// Failures in a row, while closed.
    run: u32,
    /// The rate conditions' calls, `(recorded at, failed, slow)`, oldest first; kept until
    /// the breaker closes again.
    window: VecDeque<(u64, bool, bool)>,
}

#[derive(Debug)]
enum Machine {
    Closed {
        /// The end of the recovery ramp, its length and the calls it has decided so far.
        ramp: Option<(u64, u64, u64)>,
    },
    Open {
        until: u64,
    },
    HalfOpen {
        entered: u64,
        in_flight: u32,
        successes: u32,
        slow: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Permit {
    Normal(u64),
    Probe(u64),
}

impl Model {
    fn new(s: Settings) -> Model {
        Model {
            s,
            state: Machine::Closed { ramp: None },
            phase: 0,
            run: 0,
            window: VecDeque::new(),
        }
    }

    fn state(&self) -> State {
        match self.state {
            Machine::Closed { .. } => State::Closed,
            Machine::Open { .. } => State::Open,
            Machine::HalfOpen { .. } => State::HalfOpen,
        }
    }

    fn close(&mut self, now: u64) {
        self.phase += 1;
        self.run = 0;
        self.window.clear();
        self.state = Machine::Closed {
            ramp: self
                .s
                .ramp_ms
                .map(|ramp| ((now + ramp * MS).max(1), ramp * MS, 0)),
        };
    }

    fn open(&mut self, now: u64) {
        self.phase += 1;
        self.state = Machine::Open {
            until: now + self.s.open_ms * MS,
        };
    }

    /// Decides a call starting at `now`.
    fn admit(&mut self, now: u64) -> Option<Permit> {
        if let Machine::Open { until } = self.state {
            if now < until {
                return None;
            }
            self.phase += 1;
            self.state = Machine::HalfOpen {
                entered: now,
                in_flight: 0,
                successes: 0,
                slow: 0,
            };
        }
        let phase = self.phase;
        match &mut self.state {
            Machine::Closed { ramp, .. } => {
                if let Some((until, length, calls)) = ramp {
                    if now >= *until {
                        *ramp = None;
                    } else {
                        // The share admitted grows from 0 to 1 over the ramp; the calls it
                        // admits are spread evenly.
                        let share = 1.0 - (*until - now) as f64 / *length as f64;
                        let n = *calls as f64;
                        *calls += 1;
                        if ((n + 1.0) * share).floor() <= (n * share).floor() {
                            return None;
                        }
                    }
                }
                Some(Permit::Normal(phase))
            }
            Machine::HalfOpen {
                entered, in_flight, ..
            } => {
                if now - *entered >= self.s.max_wait_ms * MS {
                    self.open(now);
                    return None;
                }
                if *in_flight == self.s.probes {
                    return None;
                }
                *in_flight += 1;
                Some(Permit::Probe(phase))
            }
            Machine::Open { .. } => unreachable!(),
        }
    }

    /// The admitted call finished at `now` after `took` nanoseconds.
    fn finish(&mut self, permit: Permit, now: u64, took: u64, outcome: Outcome) {
        let s = self.s;
        let slow = s.slow.is_some_and(|(threshold, _)| took >= threshold * MS);
        let (Permit::Normal(phase) | Permit::Probe(phase)) = permit;
        if phase != self.phase {
            return;
        }
        if let Machine::HalfOpen { in_flight, .. } = &mut self.state {
            *in_flight -= 1;
        }
        if outcome == Outcome::Ignored {
            return;
        }
        let failed = outcome == Outcome::Failure;
        match &mut self.state {
            Machine::Closed { .. } => {
                if let Some(limit) = s.consecutive {
                    self.run = if failed { self.run + 1 } else { 0 };
                    if self.run >= limit {
                        return self.open(now);
                    }
                }
                if s.rate.is_none() && s.slow.is_none() {
                    return;
                }
                let window = &mut self.window;
                window.push_back((now, failed, slow));
                match s.window {
                    Window::Count(size) => {
                        if window.len() > size as usize {
                            window.pop_front();
                        }
                    }
                    Window::Time { buckets, bucket_ms } => {
                        let bucket = bucket_ms * MS;
                        window.retain(|(at, ..)| now / bucket - at / bucket < u64::from(buckets));
                    }
                }
                let calls = window.len() as f64;
                let failures = window.iter().filter(|c| c.1).count() as f64;
                let slow_calls = window.iter().filter(|c| c.2).count() as f64;
                let reached = |rate: Option<f64>, n: f64| rate.is_some_and(|r| n / calls >= r);
                if window.len() >= s.minimum as usize
                    && (reached(s.rate, failures) || reached(s.slow.map(|s| s.1), slow_calls))
                {
                    self.open(now);
                }
            }
            Machine::HalfOpen {
                successes,
                slow: slow_probes,
                ..
            } => {
                if failed {
                    return self.open(now);
                }
                *successes += 1;
                *slow_probes += u32::from(slow);
                if *successes == s.successes {
                    let rate = f64::from(*slow_probes) / f64::from(*successes);
                    if s.slow.is_some_and(|(_, threshold)| rate >= threshold) {
                        self.open(now);
                    } else {
                        self.close(now);
                    }
                }
            }
            Machine::Open { .. } => {}
        }
    }

    /// Calls, failures and slow calls in the window at `now`.
    fn window(&self, now: u64) -> (u64, u64, u64) {
        let live = |at: u64| match self.s.window {
            Window::Count(_) => true,
            Window::Time { buckets, bucket_ms } => {
                now / (bucket_ms * MS) - at / (bucket_ms * MS) < u64::from(buckets)
            }
        };
        let live: Vec<_> = self.window.iter().filter(|c| live(c.0)).collect();
        let count = |f: fn(&&(u64, bool, bool)) -> bool| live.iter().filter(|c| f(c)).count();
        (
            live.len() as u64,
            count(|c| c.1) as u64,
            count(|c| c.2) as u64,
        )
    }
}

// === the breaker ===

type Classifier = fn(&Result<u32, BoxError>) -> Outcome;

/// Request 2 answers with an ignored outcome.
fn classify(result: &Result<u32, BoxError>) -> Outcome {
    match result {
        Ok(2) => Outcome::Ignored,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    }
}

fn layer(s: Settings) -> CircuitBreakerLayer<Classifier> {
    let mut builder = CircuitBreakerLayer::builder()
        .window(match s.window {
            Window::Count(size) => WindowKind::Count(size),
            Window::Time { buckets, bucket_ms } => WindowKind::Time {
                length: Duration::from_millis(bucket_ms * u64::from(buckets)),
                buckets,
            },
        })
        .minimum_calls(s.minimum)
        .open_duration(OpenDuration::Fixed(Duration::from_millis(s.open_ms)))
        .half_open_probes(s.probes)
        .success_threshold(s.successes)
        .half_open_max_wait(Duration::from_millis(s.max_wait_ms));
    builder = match s.consecutive {
        Some(n) => builder.consecutive_failures(n),
        None => builder.no_consecutive_failures(),
    };
    if let Some(rate) = s.rate {
        builder = builder.failure_rate(rate);
    }
    if let Some((threshold, rate)) = s.slow {
        builder = builder.slow_calls(Duration::from_millis(threshold), rate);
    }
    if let Some(ramp) = s.ramp_ms {
        builder = builder.recovery_ramp(Duration::from_millis(ramp));
    }
    builder.classify(classify as Classifier).build().unwrap()
}

fn run(settings: Settings, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async move {
        // Built at time 0 of the model.
        let started = tokio::time::Instant::now();
        let layer = layer(settings);
        let handle = layer.handle();
        let (inner, control) = controlled::<u32>();
        let service = layer.layer(inner);
        let mut model = Model::new(settings);
        let now = || started.elapsed().as_nanos() as u64;
        for (step, op) in ops.into_iter().enumerate() {
            match &op {
                Op::Wait(ms) => tokio::time::advance(Duration::from_millis(*ms)).await,
                Op::Burst(calls) => {
                    // Every call of the burst is decided before any of them runs.
                    let at = now();
                    let mut running = Vec::new();
                    for &(outcome, ms) in calls {
                        match outcome {
                            Outcome::Failure => control.fail(),
                            _ => control.succeed(),
                        }
                        control.delay(Duration::from_millis(ms));
                        let request = if outcome == Outcome::Ignored { 2 } else { 1 };
                        let mut service = service.clone();
                        service.ready().await.unwrap();
                        let task = tokio::spawn(service.call(request));
                        running.push((task, model.admit(at), outcome, ms));
                    }
                    // They finish in the order of their durations.
                    running.sort_by_key(|call| call.3);
                    for (call, (task, admitted, outcome, ms)) in running.into_iter().enumerate() {
                        let result = task.await.unwrap();
                        let refused = matches!(&result, Err(e) if e.is::<CircuitOpen>());
                        prop_assert_eq!(
                            !refused,
                            admitted.is_some(),
                            "step {}, call {}: {:?}",
                            step,
                            call,
                            op
                        );
                        if let Some(permit) = admitted {
                            model.finish(permit, at + ms * MS, ms * MS, outcome);
                        }
                    }
                }
            }
            prop_assert_eq!(handle.state(), model.state(), "step {}: {:?}", step, op);
            let snapshot = handle.snapshot();
            prop_assert_eq!(snapshot.consecutive_failures, model.run, "step {}", step);
            prop_assert_eq!(
                (snapshot.calls, snapshot.failures, snapshot.slow_calls),
                model.window(now()),
                "window after step {}: {:?}",
                step,
                op
            );
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_breaker_decides_like_the_reference_model(
        settings in settings(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        run(settings, ops)?;
    }
}
