//! The breaker's decisions against a plain reference model, over random sequences of
//! outcomes and pauses.

use std::collections::VecDeque;
use std::time::Duration;

use proptest::prelude::*;
use tower::{Layer, ServiceExt};
use tower_bulwark_breaker::{CircuitBreakerLayer, CircuitOpen, OpenDuration, State, WindowKind};
use tower_bulwark_core::testing::controlled;
use tower_bulwark_core::{BoxError, Outcome};

#[derive(Debug, Clone, Copy)]
enum Op {
    Wait(u64),
    Call(Outcome),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0u64..3_000).prop_map(Op::Wait),
        3 => Just(Op::Call(Outcome::Success)),
        3 => Just(Op::Call(Outcome::Failure)),
        1 => Just(Op::Call(Outcome::Ignored)),
    ]
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    consecutive: Option<u32>,
    rate: Option<f64>,
    window: u32,
    minimum: u32,
    open_ms: u64,
    successes: u32,
}

fn settings() -> impl Strategy<Value = Settings> {
    (
        proptest::option::of(1u32..6),
        proptest::option::of(prop_oneof![Just(0.25), Just(0.5), Just(0.75), Just(1.0)]),
        1u32..12,
        1u32..12,
        1u64..2_000,
        1u32..4,
    )
        .prop_map(
            |(consecutive, rate, window, minimum, open_ms, successes)| Settings {
                consecutive,
                rate,
                window,
                minimum: minimum.min(window),
                open_ms,
                successes,
            },
        )
        .prop_filter("a breaker needs a trip condition", |s| {
            s.consecutive.is_some() || s.rate.is_some()
        })
}

/// The rules, written as plainly as possible.
#[derive(Debug)]
enum Model {
    Closed { run: u32, window: VecDeque<bool> },
    Open { until: u64 },
    HalfOpen { successes: u32 },
}

impl Model {
    fn closed() -> Model {
        Model::Closed {
            run: 0,
            window: VecDeque::new(),
        }
    }

    fn state(&self) -> State {
        match self {
            Model::Closed { .. } => State::Closed,
            Model::Open { .. } => State::Open,
            Model::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// Whether the call is admitted; updates the state with its outcome.
    fn call(&mut self, s: &Settings, now: u64, outcome: Outcome) -> bool {
        if let Model::Open { until } = *self {
            if now < until {
                return false;
            }
            *self = Model::HalfOpen { successes: 0 };
        }
        let open = Model::Open {
            until: now + s.open_ms,
        };
        match self {
            Model::Closed { run, window } => {
                if outcome == Outcome::Ignored {
                    return true;
                }
                let failed = outcome == Outcome::Failure;
                *run = if failed { *run + 1 } else { 0 };
                if s.consecutive.is_some_and(|limit| *run >= limit) {
                    *self = open;
                    return true;
                }
                if let Some(rate) = s.rate {
                    window.push_back(failed);
                    if window.len() > s.window as usize {
                        window.pop_front();
                    }
                    let failures = window.iter().filter(|f| **f).count() as f64;
                    let calls = window.len() as f64;
                    if window.len() >= s.minimum as usize && failures / calls >= rate {
                        *self = open;
                    }
                }
                true
            }
            Model::HalfOpen { successes } => {
                match outcome {
                    Outcome::Success => {
                        *successes += 1;
                        if *successes >= s.successes {
                            *self = Model::closed();
                        }
                    }
                    Outcome::Failure => *self = open,
                    Outcome::Ignored => {}
                }
                true
            }
            Model::Open { .. } => unreachable!(),
        }
    }
}

fn run(settings: Settings, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut builder = CircuitBreakerLayer::builder()
            .window(WindowKind::Count(settings.window))
            .minimum_calls(settings.minimum)
            .open_duration(OpenDuration::Fixed(Duration::from_millis(settings.open_ms)))
            .success_threshold(settings.successes);
        builder = match settings.consecutive {
            Some(n) => builder.consecutive_failures(n),
            None => builder.no_consecutive_failures(),
        };
        if let Some(rate) = settings.rate {
            builder = builder.failure_rate(rate);
        }
        // Request 2 answers with an ignored outcome.
        let classify = |result: &Result<u32, BoxError>| match result {
            Ok(2) => Outcome::Ignored,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        };
        let layer = builder.classifier(classify).build().unwrap();
        let handle = layer.handle();
        let (inner, control) = controlled::<u32>();
        let service = layer.layer(inner);
        let mut model = Model::closed();
        let mut now = 0u64;
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Wait(ms) => {
                    tokio::time::advance(Duration::from_millis(ms)).await;
                    now += ms;
                }
                Op::Call(outcome) => {
                    let request = match outcome {
                        Outcome::Failure => {
                            control.fail();
                            1
                        }
                        Outcome::Success => {
                            control.succeed();
                            1
                        }
                        Outcome::Ignored => {
                            control.succeed();
                            2
                        }
                    };
                    let result = service.clone().oneshot(request).await;
                    let refused = matches!(&result, Err(e) if e.is::<CircuitOpen>());
                    let expected = model.call(&settings, now, outcome);
                    prop_assert_eq!(!refused, expected, "step {}: {:?}", step, op);
                }
            }
            prop_assert_eq!(handle.state(), model.state(), "step {}: {:?}", step, op);
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
