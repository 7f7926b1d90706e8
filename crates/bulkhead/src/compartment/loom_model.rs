//! Loom models of the compartment (`--cfg bulwark_loom`): no permit lost or doubled, no
//! wake-up lost.

use super::*;
use std::task::{Context, Waker};

fn compartment(max: usize) -> Holder {
    Stripe::new(Arc::new(Compartment::new(
        Name::from("loom"),
        max,
        4,
        Listeners::new(),
    )))
}

/// One caller holds the only permit and releases it while another queues: the permit
/// is never lost (the waiter is granted it, or got it at once), never doubled, and the
/// books balance at the end.
#[test]
fn a_release_racing_a_queueing_call_is_never_lost() {
    loom::model(|| {
        let c = compartment(1);
        let held = match c.admit(true) {
            Admission::Admitted(permit) => permit,
            _ => unreachable!("the first call finds the permit free"),
        };
        let releaser = loom::thread::spawn(move || drop(held));
        let mut cx = Context::from_waker(Waker::noop());
        let permit = match c.admit(true) {
            Admission::Admitted(permit) => Some(permit),
            Admission::Queued(mut ticket) => {
                releaser.join().unwrap();
                match ticket.poll_permit(&mut cx) {
                    Poll::Ready(permit) => Some(permit),
                    Poll::Pending => panic!("the released permit was not handed on"),
                }
            }
            Admission::QueueFull => unreachable!(),
        };
        assert!(c.in_flight() <= 1);
        drop(permit);
        assert_eq!((c.in_flight(), c.queued()), (0, 0));
    });
}

/// Two cores' spares (the fast zone): a permit given back as a spare by a call that saw
/// nobody waiting, while another call fills the compartment and queues. The waiter must
/// get it (its second look at the spares, or the giver seeing it counted), never wait
/// while a permit sits spare.
#[test]
fn a_spare_given_back_while_a_call_queues_is_not_lost() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(|| {
        // Limit 32 with two stripes: batches of two, one spare.
        let c = Stripe::new(Arc::new(
            Compartment::new(Name::from("loom"), 32, 4, Listeners::new()).with_stripes(2),
        ));
        let held = match c.admit(true) {
            Admission::Admitted(permit) => permit,
            _ => unreachable!("the first call finds a permit"),
        };
        // Given back as a spare (the fast zone) while a call queues: the limit falls to
        // one, so the next call queues unless it finds the permit.
        let releaser = loom::thread::spawn(move || drop(held));
        c.set_limits(1, 4);
        let admission = c.admit(true);
        releaser.join().unwrap();
        let permit = match admission {
            Admission::Admitted(permit) => permit,
            Admission::Queued(mut ticket) => {
                let mut cx = Context::from_waker(Waker::noop());
                match ticket.poll_permit(&mut cx) {
                    Poll::Ready(permit) => permit,
                    Poll::Pending => panic!("a waiter waits while a permit is spare"),
                }
            }
            Admission::QueueFull => unreachable!(),
        };
        assert_eq!(c.in_flight(), 1);
        drop(permit);
        assert_eq!((c.in_flight(), c.queued()), (0, 0));
    });
}

/// A waiter that gives up while the permit is being handed to it passes the permit on
/// rather than leaking it.
#[test]
fn a_ticket_dropped_during_its_grant_passes_the_permit_on() {
    loom::model(|| {
        let c = compartment(1);
        let held = match c.admit(true) {
            Admission::Admitted(permit) => permit,
            _ => unreachable!(),
        };
        let ticket = match c.admit(true) {
            Admission::Queued(ticket) => ticket,
            _ => unreachable!("the only permit is held"),
        };
        let releaser = loom::thread::spawn(move || drop(held));
        drop(ticket);
        releaser.join().unwrap();
        assert_eq!((c.in_flight(), c.queued()), (0, 0));
    });
}

/// Wakes by raising a flag the model can check.
struct Flag(AtomicU8);

impl std::task::Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(1, SeqCst);
    }
}

/// A waiter polls while the permit is handed to it (and its waker taken after the
/// queue is unlocked): it sees the permit, or is woken. No wake-up is lost.
#[test]
fn a_grant_racing_a_poll_wakes_or_is_seen() {
    loom::model(|| {
        let c = compartment(1);
        let held = match c.admit(true) {
            Admission::Admitted(permit) => permit,
            _ => unreachable!(),
        };
        let mut ticket = match c.admit(true) {
            Admission::Queued(ticket) => ticket,
            _ => unreachable!("the only permit is held"),
        };
        let flag = Arc::new(Flag(AtomicU8::new(0)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let releaser = loom::thread::spawn(move || drop(held));
        let first = ticket.poll_permit(&mut cx);
        releaser.join().unwrap();
        let permit = match first {
            Poll::Ready(permit) => permit,
            Poll::Pending => {
                assert_eq!(flag.0.load(SeqCst), 1, "the granted waiter was not woken");
                match ticket.poll_permit(&mut cx) {
                    Poll::Ready(permit) => permit,
                    Poll::Pending => panic!("woken without its permit"),
                }
            }
        };
        assert_eq!((c.in_flight(), c.queued()), (1, 0));
        drop(permit);
        assert_eq!(c.in_flight(), 0);
    });
}

/// Two permits released at once with two waiters: whichever granter stops early, both
/// waiters get a permit.
#[test]
fn two_releases_racing_hand_on_both_permits() {
    loom::model(|| {
        let c = compartment(2);
        let held: Vec<Permit> = (0..2)
            .map(|_| match c.admit(true) {
                Admission::Admitted(permit) => permit,
                _ => unreachable!(),
            })
            .collect();
        let mut tickets: Vec<Ticket> = (0..2)
            .map(|_| match c.admit(true) {
                Admission::Queued(ticket) => ticket,
                _ => unreachable!("both permits are held"),
            })
            .collect();
        let releasers: Vec<_> = held
            .into_iter()
            .map(|permit| loom::thread::spawn(move || drop(permit)))
            .collect();
        for releaser in releasers {
            releaser.join().unwrap();
        }
        let mut cx = Context::from_waker(Waker::noop());
        let permits: Vec<Permit> = tickets
            .iter_mut()
            .map(|ticket| match ticket.poll_permit(&mut cx) {
                Poll::Ready(permit) => permit,
                Poll::Pending => panic!("a released permit was not handed on"),
            })
            .collect();
        assert_eq!((c.in_flight(), c.queued()), (2, 0));
        drop(permits);
        assert_eq!(c.in_flight(), 0);
    });
}

/// A batch taken from the count (`try_fast`'s compare-and-swap) reaches the core's spares
/// only afterwards. A call that queues in between (here the limit is lowered first; with
/// more threads, others filling the compartment do the same) looks at the spares before
/// they are there: the batch's taker looks for a waiter after adding them, so the waiter
/// gets the spare permit, and never waits while one sits spare.
#[test]
fn a_batch_taken_while_a_call_queues_is_not_left_spare() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(2);
    model.check(|| {
        // Limit 32 with two stripes: batches of two (one used, one spare).
        let c = Stripe::new(Arc::new(
            Compartment::new(Name::from("loom"), 32, 4, Listeners::new()).with_stripes(2),
        ));
        let taker = {
            let c = c.clone();
            loom::thread::spawn(move || match c.admit(true) {
                Admission::Admitted(permit) => permit,
                _ => unreachable!("far below the limit"),
            })
        };
        // The limit falls to two: the taker's call holds one, the other is free.
        c.set_limits(2, 4);
        let admission = c.admit(true);
        let held = taker.join().unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        let permit = match admission {
            Admission::Admitted(permit) => permit,
            Admission::Queued(mut ticket) => match ticket.poll_permit(&mut cx) {
                Poll::Ready(permit) => permit,
                Poll::Pending => panic!(
                    "a waiter waits with one call in flight under a limit of 2 \
                     (in_flight() = {}, spares = {})",
                    c.in_flight(),
                    c.spares()
                ),
            },
            Admission::QueueFull => unreachable!(),
        };
        drop((held, permit));
        assert_eq!((c.in_flight(), c.queued()), (0, 0));
    });
}

/// `in_flight()` (the handle's `in_flight` and `available`) while a core's spares go back
/// to the count (a swap out of the stripe, then a subtraction from the count): a call in
/// flight throughout is seen.
#[test]
fn in_flight_sees_a_call_in_flight_while_spares_go_back() {
    loom::model(|| {
        // Limit 1024 with two stripes: batches of 64, 63 of them spare.
        let c = Stripe::new(Arc::new(
            Compartment::new(Name::from("loom"), 1024, 4, Listeners::new()).with_stripes(2),
        ));
        let permit = match c.admit(true) {
            Admission::Admitted(permit) => permit,
            _ => unreachable!("far below the limit"),
        };
        let reader = {
            let c = c.clone();
            loom::thread::spawn(move || c.in_flight())
        };
        c.reclaim();
        let seen = reader.join().unwrap();
        assert!(seen >= 1, "in_flight() read {seen} with a call in flight");
        drop(permit);
    });
}

/// `in_flight()` while another core takes a batch (the count first, then its spares): a
/// count read before the batch and spares read after it would subtract spares the count
/// never held. A call in flight throughout is seen.
#[test]
fn in_flight_sees_a_call_in_flight_while_a_batch_is_taken() {
    loom::model(|| {
        // Limit 32 with two stripes: batches of 2, the fast zone up to 16 out.
        let c = Stripe::new(Arc::new(
            Compartment::new(Name::from("loom"), 32, 4, Listeners::new()).with_stripes(2),
        ));
        // A call counted on core 1: no spares anywhere.
        let held = admit_on(&c, 1);
        let reader = {
            let c = c.clone();
            loom::thread::spawn(move || c.in_flight())
        };
        // Core 0 (every loom thread is): a batch, one of it spare.
        let permit = match c.admit(true) {
            Admission::Admitted(permit) => permit,
            _ => unreachable!("far below the limit"),
        };
        let seen = reader.join().unwrap();
        // At most the permits out: a batch being taken (counted, not yet in its core's
        // spares) reads as calls for that moment.
        assert!(
            (1..=3).contains(&seen),
            "in_flight() read {seen} with one or two calls in flight"
        );
        drop((held, permit));
        assert_eq!(c.in_flight(), 0, "every permit back (as spares)");
    });
}

/// A permit on core `stripe`, taken from the count (limits under 16 a core: no spares).
fn admit_on(c: &Holder, stripe: usize) -> Permit {
    let max = c.max_concurrent.load(Relaxed);
    c.counts
        .fetch_update(SeqCst, Acquire, |word| {
            (queued_of(word) == 0 && in_flight_of(word) < max).then_some(word + 1)
        })
        .expect("a free permit");
    c.enter(stripe);
    Permit::new(c, stripe)
}

/// Review: one call holds a permit on core 0 while another joins it on core 1; then the
/// first ends and a third takes its permit on core 1. Never more than two at once, but the
/// second call's reading of every core's count (core 0, then core 1) may see the first
/// before it ends and the third after it began: a peak of three. At a limit of 2 a cap by
/// the limit hides it; at 3 only the cap by the permits out does.
#[test]
fn the_peak_never_exceeds_the_calls_at_once_while_calls_change_cores() {
    for limit in [2, 3] {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(3);
        model.check(move || {
            let c = Stripe::new(Arc::new(
                Compartment::new(Name::from("loom"), limit, 0, Listeners::new()).with_stripes(2),
            ));
            let first = admit_on(&c, 0);
            let other = {
                let c = c.clone();
                loom::thread::spawn(move || {
                    drop(first);
                    admit_on(&c, 1)
                })
            };
            let second = admit_on(&c, 1);
            let third = other.join().unwrap();
            let peak = c.peak_in_flight();
            assert!(
                peak <= 2,
                "a peak of {peak} with never more than 2 calls at once (limit {limit})"
            );
            drop((second, third));
        });
    }
}

/// Review: with calls on one core, "every rise is seen": a call that joins another (its
/// core's count rises to two) while the other ends must leave a peak of two, even if the
/// other ended before the total was read.
#[test]
fn with_calls_on_one_core_every_rise_is_seen() {
    loom::model(|| {
        let c = compartment(2);
        let first = admit_on(&c, 0);
        let other = loom::thread::spawn(move || drop(first));
        let second = admit_on(&c, 0);
        other.join().unwrap();
        // The mark is two exactly when the second call's count included the first.
        let both = c.cores.get(0).high.load(Relaxed) == 2;
        if both {
            assert_eq!(c.peak_in_flight(), 2, "two calls were in flight at once");
        }
        drop(second);
    });
}
