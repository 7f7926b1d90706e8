//! Loom models of the breaker's real admission, recording and transition paths (run with
//! `RUSTFLAGS="--cfg bulwark_loom"`). Each model is a handful of operations on two threads,
//! so loom explores every interleaving in seconds.

use super::*;
use crate::config::Builder;
use crate::state::Machine;

fn config(builder: Builder) -> Config {
    builder.into_parts().expect("valid configuration").0
}

/// A breaker moved into half-open through its own transitions.
fn half_open(config: &Config) -> Holder {
    let breaker = Stripe::new(Arc::new(Breaker::new(config.clone(), Listeners::new())));
    breaker.transition(Phase::INITIAL, Machine::Open, Reason::Operator);
    breaker.transition(breaker.phase(), Machine::HalfOpen, Reason::OpenElapsed);
    assert_eq!(breaker.state(), State::HalfOpen);
    breaker
}

/// A call decides while the only probe fails, reopens the breaker and frees its slot. The
/// call must not be admitted: the breaker is open.
#[test]
fn no_probe_is_admitted_after_a_failing_probe_reopens() {
    let config = config(
        Builder::default()
            .consecutive_failures(1)
            .half_open_probes(1),
    );
    loom::model(move || {
        let breaker = half_open(&config);
        let probe = Breaker::acquire(&breaker).expect("the first probe");
        let failing = loom::thread::spawn(move || probe.finish(Outcome::Failure, None));
        let admitted = Breaker::acquire(&breaker);
        failing.join().unwrap();
        assert_eq!(breaker.state(), State::Open);
        if let Ok(permit) = &admitted {
            panic!("admitted as {:?} while open", permit.kind());
        }
        assert_eq!(breaker.probes.in_flight(), 0);
    });
}

/// Two probes finish at once, one failing and one succeeding: exactly one of them moves
/// the breaker on, and whichever wins, the loser's outcome leaves no trace in the state it
/// moved to.
#[test]
fn a_succeeding_probe_racing_a_failing_one_makes_one_transition() {
    let config = config(
        Builder::default()
            .consecutive_failures(1)
            .half_open_probes(2)
            .failure_rate(0.5)
            .minimum_calls(1),
    );
    loom::model(move || {
        let breaker = half_open(&config);
        let generation = breaker.phase().generation();
        let failing = Breaker::acquire(&breaker).expect("a probe");
        let succeeding = Breaker::acquire(&breaker).expect("a second probe");
        let failing = loom::thread::spawn(move || failing.finish(Outcome::Failure, None));
        succeeding.finish(Outcome::Success, None);
        failing.join().unwrap();

        assert_eq!(
            breaker.phase().generation(),
            generation + 1,
            "one transition"
        );
        assert_eq!(breaker.probes.in_flight(), 0);
        let snapshot = breaker.snapshot();
        match snapshot.state {
            State::Closed => {
                assert_eq!(snapshot.calls, 0, "the failed probe is not in the window");
                assert_eq!(snapshot.consecutive_failures, 0);
            }
            State::Open => assert_eq!(snapshot.trips, 2),
            state => panic!("{state:?}"),
        }
    });
}

/// Two calls admitted while closed fail at once, each reaching the trip condition: the
/// breaker trips once, and the loser's record does not run into the new state.
#[test]
fn failures_racing_to_trip_trip_once() {
    let config = config(Builder::default().consecutive_failures(2));
    loom::model(move || {
        let breaker = Stripe::new(Arc::new(Breaker::new(config.clone(), Listeners::new())));
        let first = Breaker::acquire(&breaker).expect("closed");
        Breaker::acquire(&breaker)
            .expect("closed")
            .finish(Outcome::Failure, None);
        let second = Breaker::acquire(&breaker).expect("closed");
        let racing = loom::thread::spawn(move || first.finish(Outcome::Failure, None));
        second.finish(Outcome::Failure, None);
        racing.join().unwrap();

        let snapshot = breaker.snapshot();
        assert_eq!(snapshot.state, State::Open);
        assert_eq!(snapshot.trips, 1);
        assert_eq!(breaker.phase().generation(), 1, "one transition");
    });
}

/// A call trips the breaker while another thread, once it sees it open, moves it on to
/// half-open: the two state changes are announced in the order they happened. (The
/// listener takes a loom lock, so loom can switch threads inside an announcement.)
#[test]
fn racing_transitions_are_announced_in_order() {
    let config = config(Builder::default().consecutive_failures(1));
    loom::model(move || {
        let changes = Arc::new(Mutex::new(Vec::new()));
        let mut listeners = Listeners::new();
        let sink = changes.clone();
        listeners.push(move |event: &BreakerEvent| {
            if let BreakerEvent::StateChanged { from, to, .. } = event {
                sink.lock().unwrap().push((*from, *to));
            }
        });
        let breaker = Stripe::new(Arc::new(Breaker::new(config.clone(), listeners)));
        let call = Breaker::acquire(&breaker).expect("closed");
        let tripping = loom::thread::spawn(move || call.finish(Outcome::Failure, None));
        loop {
            let phase = breaker.phase();
            if phase.machine() == Machine::Open {
                breaker.transition(phase, Machine::HalfOpen, Reason::OpenElapsed);
                break;
            }
            loom::thread::yield_now();
        }
        tripping.join().unwrap();
        assert_eq!(
            *changes.lock().unwrap(),
            [(State::Closed, State::Open), (State::Open, State::HalfOpen)]
        );
    });
}

/// The largest consecutive-failure limit: two failures that both passed the phase check
/// race past it, and the second finds the count already at its maximum. It must not
/// overflow (a panic in debug builds).
#[test]
fn failures_racing_past_the_largest_limit_do_not_overflow() {
    let config = config(Builder::default().consecutive_failures(u32::MAX));
    loom::model(move || {
        let breaker = Stripe::new(Arc::new(Breaker::new(config.clone(), Listeners::new())));
        breaker
            .recorded
            .consecutive_failures
            .store(u32::MAX - 1, Relaxed);
        let first = Breaker::acquire(&breaker).expect("closed");
        let second = Breaker::acquire(&breaker).expect("closed");
        let racing = loom::thread::spawn(move || first.finish(Outcome::Failure, None));
        second.finish(Outcome::Failure, None);
        racing.join().unwrap();
        assert_eq!(breaker.state(), State::Open);
    });
}
