//! The breaker's states, and the packed word that holds the automatic one.

use std::fmt;

/// The state of a circuit breaker, as reported by its handle and its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls flow; outcomes are recorded and the trip conditions watched.
    Closed,
    /// Calls are refused until the open duration has passed.
    Open,
    /// A limited number of probe calls test whether the dependency has recovered.
    HalfOpen,
    /// Set by an operator: every call is refused until the handle changes it.
    ForcedOpen,
    /// Set by an operator: every call is admitted and nothing is recorded.
    Disabled,
    /// Set by an operator: the breaker decides as usual and counts what it would refuse,
    /// but refuses nothing (shadow mode).
    MetricsOnly,
}

impl State {
    /// A stable lower-case name: `closed`, `open`, `half_open`, `forced_open`, `disabled`,
    /// `metrics_only`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::Disabled => "disabled",
            State::MetricsOnly => "metrics_only",
        }
    }

    /// The value of the `bulwark_breaker_state` gauge: 0 closed, 1 open, 2 half-open,
    /// 3 forced open, 4 disabled, 5 metrics-only.
    pub fn as_gauge(self) -> f64 {
        match self {
            State::Closed => 0.0,
            State::Open => 1.0,
            State::HalfOpen => 2.0,
            State::ForcedOpen => 3.0,
            State::Disabled => 4.0,
            State::MetricsOnly => 5.0,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The automatic state machine's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Machine {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl Machine {
    pub(crate) fn state(self) -> State {
        match self {
            Machine::Closed => State::Closed,
            Machine::Open => State::Open,
            Machine::HalfOpen => State::HalfOpen,
        }
    }
}

/// The operator's override, set through the handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Normal = 0,
    ForcedOpen = 1,
    Disabled = 2,
    MetricsOnly = 3,
}

impl Mode {
    pub(crate) fn from_u8(value: u8) -> Mode {
        match value {
            1 => Mode::ForcedOpen,
            2 => Mode::Disabled,
            3 => Mode::MetricsOnly,
            _ => Mode::Normal,
        }
    }
}

/// The machine state and the number of transitions so far, in one word, so both are read
/// together. Outcomes carry the phase they were admitted in; one from an earlier phase is
/// not counted in the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Phase(u64);

impl Phase {
    pub(crate) const INITIAL: Phase = Phase(0);

    /// The phase from its bits; only the low 62 are kept, so a phase fits beside a permit's
    /// kind in one word (2^60 transitions never wrap in practice).
    pub(crate) fn from_bits(bits: u64) -> Phase {
        Phase(bits & (u64::MAX >> 2))
    }

    pub(crate) fn bits(self) -> u64 {
        self.0
    }

    pub(crate) fn machine(self) -> Machine {
        match self.0 & 0b11 {
            1 => Machine::Open,
            2 => Machine::HalfOpen,
            _ => Machine::Closed,
        }
    }

    /// The phase after a transition to `to`.
    pub(crate) fn next(self, to: Machine) -> Phase {
        Phase::from_bits(((self.0 >> 2).wrapping_add(1) << 2) | to as u64)
    }

    /// The transition count, which tags the half-open success counter.
    pub(crate) fn generation(self) -> u64 {
        self.0 >> 2
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    #[test]
    fn phases_advance_and_keep_their_machine_state() {
        let closed = Phase::INITIAL;
        assert_eq!(closed.machine(), Machine::Closed);
        let open = closed.next(Machine::Open);
        let half = open.next(Machine::HalfOpen);
        assert_eq!(open.machine(), Machine::Open);
        assert_eq!(half.machine(), Machine::HalfOpen);
        assert_eq!(half.generation(), 2);
        assert_ne!(closed.next(Machine::Closed), closed);
    }

    /// The gauge values and names are documented, and dashboards read them.
    #[test]
    fn each_state_has_its_documented_gauge_value_and_name() {
        let states = [
            (State::Closed, 0.0, "closed"),
            (State::Open, 1.0, "open"),
            (State::HalfOpen, 2.0, "half_open"),
            (State::ForcedOpen, 3.0, "forced_open"),
            (State::Disabled, 4.0, "disabled"),
            (State::MetricsOnly, 5.0, "metrics_only"),
        ];
        for (state, gauge, name) in states {
            assert_eq!(state.as_gauge(), gauge, "{state:?}");
            assert_eq!(state.as_str(), name);
            assert_eq!(state.to_string(), name);
        }
    }

    #[test]
    fn unknown_mode_bytes_are_normal() {
        for mode in [
            Mode::Normal,
            Mode::ForcedOpen,
            Mode::Disabled,
            Mode::MetricsOnly,
        ] {
            assert_eq!(Mode::from_u8(mode as u8), mode);
        }
        assert_eq!(Mode::from_u8(200), Mode::Normal);
    }
}
