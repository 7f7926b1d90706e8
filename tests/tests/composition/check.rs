//! The invariants of a composed stack, checked after every run. Each broken one is a
//! [`Violation`]; a correct stack has none, whatever the faults.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use tower_bulwark::breaker::{BreakerEvent, BreakerHandle, State};
use tower_bulwark::bulkhead::BulkheadHandle;
use tower_bulwark::fallback::Degraded;
use tower_bulwark::health::DrainHandle;
use tower_bulwark::shed::ShedHandle;
use tower_bulwark::{Outcome as Classified, RejectionKind};

use super::dependency::{Call, Ended};
use super::drive::{Answer, Outcome};

/// A broken invariant.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Violation {
    /// (1) The breaker counted more failures than the dependency had: error statuses,
    /// broken connections, calls that ran a whole attempt timeout without an answer.
    BreakerCountedLocalFailures { counted: usize, dependency: usize },
    /// (1) The breaker opened before the dependency failed `threshold` times.
    BreakerOpenedEarly { dependency: usize },
    /// (2) More calls reached the dependency than requests x (1 + budget) + allowance.
    Amplified { calls: usize, bound: usize },
    /// (3) A dependency call went on past its caller's deadline.
    WorkPastDeadline { request: usize, call: usize },
    /// (3) A call was sent with more time than its caller had left.
    SentPastDeadline { request: usize, call: usize },
    /// (3) A call of a caller with a deadline went without one.
    DeadlineNotSent { request: usize, call: usize },
    /// (3) A caller got its answer after its deadline.
    AnsweredPastDeadline { request: usize },
    /// (3) A dependency call went on after its caller dropped it.
    WorkPastGiveUp { request: usize, call: usize },
    /// (4) A permit, probe slot or in-flight count did not return to zero.
    NotReleased { what: &'static str, left: usize },
    /// (5) An answer that is not the dependency's, nor a degraded fallback, nor a refusal.
    Unexplained { request: usize, answer: String },
    /// (5) A refusal whose kind is not what happened, or that this stack cannot make.
    FalseRefusal {
        request: usize,
        kind: RejectionKind,
        why: &'static str,
    },
    /// (5) A refusal answered with another status than its kind maps to.
    WrongStatus {
        request: usize,
        kind: RejectionKind,
        status: StatusCode,
    },
    /// (6) A dependency call started while the breaker was open.
    CalledWhileOpen { request: Option<usize>, call: usize },
}

/// The status a refusal of `kind` maps to (docs/composition.md, README).
fn status_of(kind: RejectionKind) -> StatusCode {
    match kind {
        RejectionKind::Throttled => StatusCode::TOO_MANY_REQUESTS,
        RejectionKind::DeadlineExceeded | RejectionKind::TimedOut => StatusCode::GATEWAY_TIMEOUT,
        RejectionKind::InvalidRequest => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// A breaker under watch: its handle, its events (with their instants), its threshold.
#[derive(Debug, Clone)]
pub(crate) struct BreakerWatch {
    pub(crate) handle: BreakerHandle,
    pub(crate) events: Arc<Mutex<Vec<BreakerEvent>>>,
    pub(crate) threshold: u32,
}

impl BreakerWatch {
    /// Failures the breaker recorded, and times it opened.
    fn counts(&self) -> (usize, usize) {
        let events = self.events.lock().unwrap();
        let failures = events
            .iter()
            .filter(|event| {
                matches!(
                    event,
                    BreakerEvent::Recorded {
                        outcome: Classified::Failure,
                        ..
                    }
                )
            })
            .count();
        let opens = events
            .iter()
            .filter(|event| {
                matches!(
                    event,
                    BreakerEvent::StateChanged {
                        to: State::Open,
                        ..
                    }
                )
            })
            .count();
        (failures, opens)
    }
}

/// What a run of one stack is checked against.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    pub(crate) breaker: Option<BreakerWatch>,
    pub(crate) bulkhead: Option<BulkheadHandle>,
    pub(crate) shed: Option<ShedHandle>,
    /// The drain, and when it started (since the run's start), if it did.
    pub(crate) drain: Option<(DrainHandle, Option<Duration>)>,
    /// A client's attempt timeout: a call cut after running this long was too slow.
    pub(crate) attempt_timeout: Option<Duration>,
    /// The retry budget's ratio; no allowance (`min_per_sec` 0, no window expiry in a run).
    pub(crate) budget: Option<f64>,
    /// The refusal kinds the stack's layers can make.
    pub(crate) refusals: Vec<RejectionKind>,
    /// Whether every call goes from the breaker to the dependency without waiting (no
    /// bulkhead queue between them), so none may start while the breaker is open.
    pub(crate) open_breaker_stops_calls: bool,
    /// A server: the accepted deadline of a request without one, and the headroom.
    pub(crate) server: Option<(Duration, Duration)>,
}

impl Watch {
    /// Every invariant, over the calls the dependency saw and what the callers got.
    pub(crate) fn check(&self, calls: &[Call], outcomes: &[Outcome]) -> Vec<Violation> {
        let mut violations = Vec::new();
        self.breaker_opens_on_dependency_failures(calls, &mut violations);
        self.calls_within_budget(calls, outcomes.len(), &mut violations);
        self.no_work_past_deadlines(calls, outcomes, &mut violations);
        self.everything_released(calls, &mut violations);
        for (request, outcome) in outcomes.iter().enumerate() {
            self.answer_explained(request, outcome, calls, &mut violations);
        }
        violations
    }

    fn breaker_opens_on_dependency_failures(&self, calls: &[Call], out: &mut Vec<Violation>) {
        let Some(breaker) = &self.breaker else { return };
        let attempt = self.attempt_timeout.unwrap_or(Duration::MAX);
        let dependency = calls.iter().filter(|call| call.failed(attempt)).count();
        let (counted, opens) = breaker.counts();
        if counted > dependency {
            out.push(Violation::BreakerCountedLocalFailures {
                counted,
                dependency,
            });
        }
        if opens > 0 && dependency < breaker.threshold as usize {
            out.push(Violation::BreakerOpenedEarly { dependency });
        }
        if self.open_breaker_stops_calls {
            for (number, call) in calls.iter().enumerate() {
                if matches!(call.breaker, Some(State::Open | State::ForcedOpen)) {
                    out.push(Violation::CalledWhileOpen {
                        request: call.request,
                        call: number,
                    });
                }
            }
        }
    }

    fn calls_within_budget(&self, calls: &[Call], requests: usize, out: &mut Vec<Violation>) {
        let Some(ratio) = self.budget else { return };
        let bound = requests + (requests as f64 * ratio + 1e-9).floor() as usize;
        if calls.len() > bound {
            out.push(Violation::Amplified {
                calls: calls.len(),
                bound,
            });
        }
    }

    /// The deadline a caller had: its own, or a server's default for one that sent none.
    fn deadline_of(&self, outcome: &Outcome) -> Option<Duration> {
        match self.server {
            Some((default, _)) => Some(outcome.deadline.unwrap_or(outcome.sent + default)),
            None => outcome.deadline,
        }
    }

    fn no_work_past_deadlines(
        &self,
        calls: &[Call],
        outcomes: &[Outcome],
        out: &mut Vec<Violation>,
    ) {
        for (number, call) in calls.iter().enumerate() {
            let Some(request) = call.request else {
                continue;
            };
            let outcome = &outcomes[request];
            // A call still running never ends.
            let end = call.end.unwrap_or(Duration::MAX);
            if let Some(deadline) = self.deadline_of(outcome) {
                if end > deadline {
                    out.push(Violation::WorkPastDeadline {
                        request,
                        call: number,
                    });
                }
                // What a client sends is what the next hop will spend.
                if self.server.is_none() {
                    match call.sent_deadline {
                        None => out.push(Violation::DeadlineNotSent {
                            request,
                            call: number,
                        }),
                        Some(sent) if sent > deadline => out.push(Violation::SentPastDeadline {
                            request,
                            call: number,
                        }),
                        Some(_) => {}
                    }
                }
            }
            if matches!(outcome.answer, Answer::Abandoned) && end > outcome.answered {
                out.push(Violation::WorkPastGiveUp {
                    request,
                    call: number,
                });
            }
        }
        for (request, outcome) in outcomes.iter().enumerate() {
            let abandoned = matches!(outcome.answer, Answer::Abandoned);
            if let Some(deadline) = self.deadline_of(outcome) {
                if !abandoned && outcome.answered > deadline {
                    out.push(Violation::AnsweredPastDeadline { request });
                }
            }
        }
    }

    fn everything_released(&self, calls: &[Call], out: &mut Vec<Violation>) {
        let mut left = |what, left: usize| {
            if left > 0 {
                out.push(Violation::NotReleased { what, left });
            }
        };
        let running = calls.iter().filter(|call| call.ended == Ended::Running);
        left("dependency calls", running.count());
        if let Some(breaker) = &self.breaker {
            left(
                "breaker probe slots",
                breaker.handle.snapshot().probes_in_flight as usize,
            );
        }
        if let Some(bulkhead) = &self.bulkhead {
            let snapshot = bulkhead.snapshot();
            left("bulkhead permits", snapshot.in_flight);
            left("bulkhead queue places", snapshot.queued);
        }
        if let Some(shed) = &self.shed {
            left("shed in-flight count", shed.snapshot().in_flight);
        }
        if let Some((drain, _)) = &self.drain {
            left("drain in-flight count", drain.in_flight());
        }
    }

    fn answer_explained(
        &self,
        request: usize,
        outcome: &Outcome,
        calls: &[Call],
        out: &mut Vec<Violation>,
    ) {
        let last_call = calls
            .iter()
            .rev()
            .find(|call| call.request == Some(request));
        let unexplained = |answer: String| Violation::Unexplained { request, answer };
        match &outcome.answer {
            Answer::Abandoned => {}
            Answer::Nothing => out.push(unexplained("no answer".into())),
            Answer::Error {
                rejection: Some(rejection),
                ..
            } if self.server.is_none() => {
                self.refusal_true(request, rejection.kind(), outcome, last_call, out);
            }
            Answer::Error { aborted: true, .. } if self.server.is_none() => {
                if last_call.map(|call| call.ended) != Some(Ended::Failed) {
                    out.push(unexplained("an abort the dependency did not make".into()));
                }
            }
            Answer::Error { text, .. } => out.push(unexplained(format!("error: {text}"))),
            Answer::Response {
                status,
                call,
                degraded_header,
                degraded,
                rejection,
            } => {
                if let Some(rejection) = rejection {
                    let kind = rejection.kind();
                    if *status != status_of(kind) {
                        out.push(Violation::WrongStatus {
                            request,
                            kind,
                            status: *status,
                        });
                    }
                    self.refusal_true(request, kind, outcome, last_call, out);
                } else if degraded_header.is_some() || degraded.is_some() {
                    let Some(call) = call.and_then(|call| calls.get(call)) else {
                        return out.push(unexplained(format!("degraded {status} from no call")));
                    };
                    // A last-good answer: one the dependency gave earlier to the same path.
                    let good = degraded_header.as_deref() == Some("last-good")
                        && *degraded == Some(Degraded::LastGood)
                        && call.ended == Ended::Answered(StatusCode::OK)
                        && *status == StatusCode::OK
                        && call.end.is_some_and(|end| end <= outcome.answered)
                        && call.path == outcome.path;
                    if !good {
                        out.push(unexplained(format!(
                            "degraded {status} {degraded_header:?}"
                        )));
                    }
                } else if let Some(number) = call {
                    let fresh = calls.get(*number).is_some_and(|call| {
                        call.request == Some(request) && call.ended == Ended::Answered(*status)
                    });
                    if !fresh {
                        out.push(unexplained(format!("{status} from call {number}")));
                    }
                } else if !(*status == StatusCode::INTERNAL_SERVER_ERROR
                    && last_call.map(|call| call.ended) == Some(Ended::Failed))
                {
                    // The only other answer: the handler's own error, as a 500.
                    out.push(unexplained(format!("{status} from nowhere")));
                }
            }
        }
    }

    /// Whether a refusal of `kind` is one this stack makes, and says what happened.
    fn refusal_true(
        &self,
        request: usize,
        kind: RejectionKind,
        outcome: &Outcome,
        last_call: Option<&Call>,
        out: &mut Vec<Violation>,
    ) {
        let attempt = self.attempt_timeout.unwrap_or(Duration::MAX);
        let opened = self.breaker.as_ref().is_some_and(|b| b.counts().1 > 0);
        let drained = self.drain.as_ref().and_then(|(_, started)| *started);
        let why = match kind {
            _ if !self.refusals.contains(&kind) => "no layer of this stack refuses so",
            RejectionKind::TimedOut if !last_call.is_some_and(|call| call.slow(attempt)) => {
                "timed out, but the dependency had no whole attempt"
            }
            RejectionKind::DeadlineExceeded
                if self.server.is_none() && outcome.deadline.is_none() =>
            {
                "deadline exceeded, but the caller set none"
            }
            RejectionKind::DeadlineExceeded
                if self
                    .accepted(outcome)
                    .is_some_and(|at| outcome.answered < at) =>
            {
                "deadline exceeded before the accepted deadline"
            }
            RejectionKind::CircuitOpen if !opened => "circuit open, but the breaker never opened",
            RejectionKind::Draining if drained.is_none_or(|at| at > outcome.sent) => {
                "draining, but no drain had started"
            }
            _ => return,
        };
        out.push(Violation::FalseRefusal { request, kind, why });
    }

    /// A server's deadline for a request: what the caller gave less the headroom, or the
    /// default.
    fn accepted(&self, outcome: &Outcome) -> Option<Duration> {
        let (default, headroom) = self.server?;
        let given = outcome.deadline.map_or(default, |deadline| {
            (deadline - outcome.sent).saturating_sub(headroom)
        });
        Some(outcome.sent + given)
    }
}
