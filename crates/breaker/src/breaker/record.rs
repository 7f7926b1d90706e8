//! Recording outcomes: the closed path's counters and window, and the half-open probes.

use tokio::time::Instant;
use tower_bulwark_core::Outcome;

use super::{Breaker, Permit, PermitKind};
use crate::events::{BreakerEvent, Reason};
use crate::state::{Machine, Phase};
use crate::window::Sample;
use tower_bulwark_core::sync::Ordering::{AcqRel, Relaxed, SeqCst};

impl Breaker {
    #[inline]
    pub(super) fn record(&self, permit: &Permit, outcome: Outcome, started: Option<Instant>) {
        let kind = permit.kind();
        if kind == PermitKind::Untracked {
            return;
        }
        let slow = match (self.config.slow_call, started) {
            (Some((threshold, _)), Some(started)) => started.elapsed() >= threshold,
            _ => false,
        };
        self.listeners.emit(|| BreakerEvent::Recorded {
            breaker: self.config.name.clone(),
            outcome,
            slow,
            probe: kind == PermitKind::Probe,
        });
        let phase = permit.phase();
        if outcome == Outcome::Ignored || self.phase() != phase {
            return;
        }
        match kind {
            PermitKind::Normal => self.record_closed(phase, outcome, slow),
            PermitKind::Probe => self.record_probe(phase, outcome, slow),
            PermitKind::Untracked | PermitKind::Done => {}
        }
    }

    #[inline]
    fn record_closed(&self, phase: Phase, outcome: Outcome, slow: bool) {
        let failure = outcome == Outcome::Failure;
        let recorded = &self.recorded;
        if let Some(limit) = self.config.consecutive_failures {
            if failure {
                // Saturating: failures that raced past the largest limit find the count at
                // its maximum (the atomic wraps, harmlessly: that phase is over).
                let failures = recorded
                    .consecutive_failures
                    .fetch_add(1, AcqRel)
                    .saturating_add(1);
                if failures >= limit {
                    self.transition(phase, Machine::Open, Reason::ConsecutiveFailures(failures));
                    return;
                }
            } else if recorded.consecutive_failures.load(Relaxed) != 0 {
                recorded.consecutive_failures.store(0, Relaxed);
            }
        }
        let Some(window) = &recorded.window else {
            return;
        };
        let now = if window.needs_time() { self.now() } else { 0 };
        let (may_have_risen, bucket) = window.record(now, Sample { failure, slow });
        if !may_have_risen && !recorded.short_of_minimum.load(Relaxed) {
            return;
        }
        // What can take calls out of the window (a reset, a new time bucket) moves this,
        // read before the counts.
        let epoch = || (recorded.resets.load(SeqCst), window.latest_bucket());
        let before = epoch();
        let counts = window.counts(now);
        let short = counts.calls < u64::from(self.config.minimum_calls);
        if short {
            recorded.short_of_minimum.store(true, SeqCst);
            return;
        }
        if recorded.short_of_minimum.load(Relaxed) {
            recorded.short_of_minimum.store(false, SeqCst);
            // Counts read before calls left the window (a racing call of a new bucket
            // that found it short, or a reset), or read at a time already behind the
            // latest bucket (this call's clock read before another's), may hold calls
            // that have left: they must not leave it marked full, or the success
            // completing the minimum would not check it.
            let after = epoch();
            if after != before || after.1 > bucket {
                recorded.short_of_minimum.store(true, SeqCst);
            }
        }
        // The rate of `n` in the window, if it reaches `threshold`.
        let over = |threshold: Option<f64>, n: u64| {
            let rate = n as f64 / counts.calls as f64;
            threshold.is_some_and(|t| rate >= t).then_some(rate)
        };
        let calls = counts.calls;
        let reason = over(self.config.failure_rate, counts.failures)
            .map(|rate| Reason::FailureRate { rate, calls })
            .or_else(|| {
                over(self.config.slow_call.map(|(_, t)| t), counts.slow)
                    .map(|rate| Reason::SlowCallRate { rate, calls })
            });
        if let Some(reason) = reason {
            self.transition(phase, Machine::Open, reason);
        }
    }

    /// A failed probe reopens at once. Successes close once `success_threshold` are in,
    /// unless the slow ones among them reach the slow-call rate (as resilience4j weighs
    /// half-open calls): then it reopens.
    #[cold]
    fn record_probe(&self, phase: Phase, outcome: Outcome, slow: bool) {
        match outcome {
            Outcome::Success => {
                let Some(tally) = self.probes.succeed(phase.generation(), slow) else {
                    return;
                };
                // Only the success that completes the count decides, once.
                if tally.successes != self.config.success_threshold {
                    return;
                }
                let calls = u64::from(tally.successes);
                let rate = f64::from(tally.slow) / f64::from(tally.successes);
                match self.config.slow_call {
                    Some((_, threshold)) if rate >= threshold => {
                        self.transition(phase, Machine::Open, Reason::SlowCallRate { rate, calls })
                    }
                    _ => self.transition(
                        phase,
                        Machine::Closed,
                        Reason::ProbesSucceeded(tally.successes),
                    ),
                }
            }
            Outcome::Failure => {
                self.transition(phase, Machine::Open, Reason::ProbeFailed);
            }
            Outcome::Ignored => {}
        }
    }
}
