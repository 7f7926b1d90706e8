//! A tier's demand with calls on several cores: reservations fade, and calls of a tier on
//! several cores in turn reserve room for their peak at once, not the sum of each core's.

use tokio_test::task;
use tower::{Layer, Service, ServiceExt};
use tower_bulwark_core::stripes::{thread_index, PerCore};
use tower_bulwark_core::testing::{controlled, Controlled, ReadinessProbe};
use tower_bulwark_core::{find_rejection, BoxError, Criticality, RejectionKind};
use tower_bulwark_shed::{Fixed, ShedLayer};

type Call = (Criticality, u32);

fn fixed(limit: usize) -> ShedLayer<fn(&Call) -> Criticality> {
    ShedLayer::builder()
        .name("test")
        .fixed(Fixed::new(limit).unwrap())
        .criticality((|call: &Call| call.0) as fn(&Call) -> Criticality)
        .build()
        .unwrap()
}

async fn admitted<S>(service: &mut S, criticality: Criticality) -> Option<task::Spawn<S::Future>>
where
    S: Service<Call, Error = BoxError>,
{
    let mut call = task::spawn(service.ready().await.unwrap().call((criticality, 0)));
    match call.poll() {
        std::task::Poll::Ready(Err(ref e))
            if find_rejection(e).is_some_and(|r| r.kind() == RejectionKind::Overloaded) =>
        {
            None
        }
        _ => Some(call),
    }
}

fn stripes() -> usize {
    PerCore::new(|| ()).len()
}

/// Runs `work` on a fresh thread whose stripe is not this thread's (threads are numbered
/// in first-use order; a few tries find one), and waits for it to end.
fn on_another_stripe(work: impl FnOnce() + Send + 'static) {
    let mask = stripes() - 1;
    let mine = thread_index() & mask;
    let mut work = Some(work);
    for _ in 0..64 {
        let handle = std::thread::spawn({
            let work = work.take().unwrap();
            move || {
                if thread_index() & mask == mine {
                    return Some(work);
                }
                work();
                None
            }
        });
        match handle.join().unwrap() {
            None => return,
            Some(back) => work = Some(back),
        }
    }
    panic!("no thread on another stripe");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// "Peaks decay by an eighth every `limit` arriving calls ..., so a burst of important
/// calls reserves room for a while, not for ever": also a burst of 40 critical calls made
/// on a thread that has since ended (a blocking-pool thread, a one-off thread), while
/// 10,000 sheddable calls arrive on another.
#[test]
fn a_burst_on_a_thread_that_ended_fades_too() {
    if stripes() < 2 {
        return;
    }
    let layer = fixed(100);
    let (inner, control) = controlled::<Call>();
    control.hang();
    {
        let layer = layer.clone();
        let inner = inner.clone();
        on_another_stripe(move || {
            runtime().block_on(async move {
                let mut service = layer.layer(ReadinessProbe::new(inner));
                let mut held = Vec::new();
                for _ in 0..40 {
                    held.push(
                        admitted(&mut service, Criticality::Critical)
                            .await
                            .expect("room"),
                    );
                }
            })
        });
    }
    assert_eq!(layer.handle().snapshot().in_flight_by_tier, [0, 0, 0, 0]);
    runtime().block_on(async move {
        let mut service = layer.layer(ReadinessProbe::new(inner));
        // 10,000 sheddable calls, one at a time: 100 limits' worth of arrivals.
        for _ in 0..10_000 {
            drop(admitted(&mut service, Criticality::Sheddable).await.expect("room"));
        }
        let mut held = Vec::new();
        while let Some(call) = admitted(&mut service, Criticality::Sheddable).await {
            held.push(call);
        }
        assert_eq!(
            held.len(),
            100,
            "sheddable calls refused at {} of 100, 10,000 arrivals after a critical burst of 40 ended",
            held.len()
        );
    });
}

/// Calls of one tier that were never more than 60 at once, on two threads in turn (60 on
/// one, all finished, then 60 on another: a task's calls moving between workers), keep
/// room for their peak plus a quarter (75: 25 left for sheddable calls), not for the sum
/// of each thread's peak (150: none left with nothing in flight).
#[test]
fn a_tier_never_above_60_does_not_shut_out_the_tiers_below() {
    if stripes() < 2 {
        return;
    }
    let layer = fixed(100);
    let (inner, control) = controlled::<Call>();
    control.hang();
    let burst = |layer: ShedLayer<fn(&Call) -> Criticality>, inner: Controlled<Call>| {
        move || {
            runtime().block_on(async move {
                let mut service = layer.layer(ReadinessProbe::new(inner));
                let mut held = Vec::new();
                for _ in 0..60 {
                    held.push(
                        admitted(&mut service, Criticality::Critical)
                            .await
                            .expect("room"),
                    );
                }
            })
        }
    };
    on_another_stripe(burst(layer.clone(), inner.clone()));
    // This thread's turn (its stripe is not the other one).
    burst(layer.clone(), inner.clone())();
    assert_eq!(layer.handle().snapshot().in_flight_by_tier, [0, 0, 0, 0]);
    runtime().block_on(async move {
        let mut service = layer.layer(ReadinessProbe::new(inner));
        let mut held = Vec::new();
        while let Some(call) = admitted(&mut service, Criticality::Sheddable).await {
            held.push(call);
        }
        assert!(
            held.len() >= 25,
            "sheddable calls refused at {} with nothing in flight; critical peaked at 60",
            held.len()
        );
    });
}

/// Review: critical calls on two threads in turn (100 on one, all finished, then 100 on
/// the other), then on both at once (200 in flight, each thread at its own earlier
/// count). Their peak is 200 and plus a quarter 250: 50 places kept for them, sheddable
/// calls may take 750. No thread's count passed its own mark, so the layer saw a peak of
/// 100: it kept nothing, and sheddable calls took the places the critical ones had just
/// shown they use (800 here: the whole limit).
#[test]
fn critical_calls_on_two_threads_at_once_keep_room_for_their_peak() {
    if stripes() < 2 {
        return;
    }
    let layer = fixed(1000);
    let (inner, control) = controlled::<Call>();
    control.hang();
    let mask = stripes() - 1;
    let mine = thread_index() & mask;
    // A thread on another stripe that holds `n` critical calls when told (0: ends them).
    let (commands, acks, worker) = loop {
        let (ready_tx, ready) = std::sync::mpsc::channel::<bool>();
        let (commands, command) = std::sync::mpsc::channel::<usize>();
        let (ack, acks) = std::sync::mpsc::channel::<()>();
        let (layer, inner) = (layer.clone(), inner.clone());
        let worker = std::thread::spawn(move || {
            if thread_index() & mask == mine {
                ready_tx.send(false).unwrap();
                return;
            }
            ready_tx.send(true).unwrap();
            runtime().block_on(async move {
                let mut service = layer.layer(ReadinessProbe::new(inner));
                let mut held = Vec::new();
                while let Ok(n) = command.recv() {
                    if n == 0 {
                        held.clear();
                    }
                    for _ in 0..n {
                        held.push(
                            admitted(&mut service, Criticality::Critical)
                                .await
                                .expect("room"),
                        );
                    }
                    ack.send(()).unwrap();
                }
            })
        });
        if ready.recv().unwrap() {
            break (commands, acks, worker);
        }
        worker.join().unwrap();
    };
    let on_worker = |n: usize| {
        commands.send(n).unwrap();
        acks.recv().unwrap();
    };
    let here = |n: usize, then_end: bool| {
        let (layer, inner) = (layer.clone(), inner.clone());
        runtime().block_on(async move {
            let mut service = layer.layer(ReadinessProbe::new(inner));
            let mut held = Vec::new();
            for _ in 0..n {
                held.push(
                    admitted(&mut service, Criticality::Critical)
                        .await
                        .expect("room"),
                );
            }
            if then_end {
                held.clear();
            }
            held
        })
    };
    // In turn: 100 on the worker, ended; 100 here, ended.
    on_worker(100);
    on_worker(0);
    drop(here(100, true));
    // At once: 100 on each.
    on_worker(100);
    let critical = here(100, false);
    assert_eq!(layer.handle().snapshot().in_flight_by_tier, [0, 0, 200, 0]);
    runtime().block_on({
        let (layer, inner) = (layer.clone(), inner.clone());
        async move {
            let mut service = layer.layer(ReadinessProbe::new(inner));
            let mut held = Vec::new();
            while let Some(call) = admitted(&mut service, Criticality::Sheddable).await {
                held.push(call);
            }
            assert!(
                held.len() <= 750,
                "sheddable calls took {} places with 200 critical calls in flight (250 kept)",
                held.len()
            );
        }
    });
    drop(critical);
    drop(commands);
    worker.join().unwrap();
}
