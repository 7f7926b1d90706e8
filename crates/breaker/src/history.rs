//! The breaker's record of its last state changes, for dashboards that sample it slower
//! than it may change.

use std::collections::VecDeque;

use tokio::time::Instant;

use crate::{Reason, State};

/// How many state changes a breaker remembers.
pub(crate) const KEPT: usize = 16;

/// One state change of a breaker, as [`BreakerHandle::transitions`] lists it.
///
/// [`BreakerHandle::transitions`]: crate::BreakerHandle::transitions
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Transition {
    /// The state it left.
    pub from: State,
    /// The state it entered.
    pub to: State,
    /// Why.
    pub reason: Reason,
    /// When.
    pub at: Instant,
    /// Its number: the breaker's first transition is 1, each one after counts up by one,
    /// so a reader that remembers the last number it saw reads each change once and can
    /// tell when some left the record before it looked.
    pub sequence: u64,
}

/// The last [`KEPT`] transitions, oldest first. Written under the transition lock; its
/// room is taken when the breaker is built, so recording never allocates.
#[derive(Debug)]
pub(crate) struct History {
    kept: VecDeque<Transition>,
    sequence: u64,
}

impl History {
    pub(crate) fn new() -> Self {
        History {
            kept: VecDeque::with_capacity(KEPT),
            sequence: 0,
        }
    }

    pub(crate) fn record(&mut self, from: State, to: State, reason: Reason, at: Instant) {
        if self.kept.len() == KEPT {
            self.kept.pop_front();
        }
        self.sequence += 1;
        self.kept.push_back(Transition {
            from,
            to,
            reason,
            at,
            sequence: self.sequence,
        });
    }

    pub(crate) fn list(&self) -> Vec<Transition> {
        self.kept.iter().cloned().collect()
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_transitions_numbered_in_order() {
        let mut history = History::new();
        let room = history.kept.capacity();
        let at = Instant::now();
        assert!(history.list().is_empty());
        for _ in 0..KEPT + 3 {
            history.record(State::Closed, State::Open, Reason::ProbeFailed, at);
        }
        let list = history.list();
        assert_eq!(list.len(), KEPT);
        let numbers: Vec<u64> = list.iter().map(|t| t.sequence).collect();
        let expected: Vec<u64> = (4..=(KEPT as u64 + 3)).collect();
        assert_eq!(numbers, expected);
        assert_eq!(
            history.kept.capacity(),
            room,
            "no growth: recording never allocates"
        );
    }
}
