//! The layer in paused time, around a backend that takes 50 ms: exact counts of upstream
//! calls, answers, cancellations and events.

mod support;

use std::time::Duration;

use http::{Method, Request};
use support::*;
use tokio::time::sleep;
use tower::{Service, ServiceExt};
use tower_bulwark_coalesce::{CoalesceEventKind as Kind, CoalesceLayer, CoalescedError};
use tower_bulwark_core::{find_rejection, RejectionKind, SeededRng};

fn layer(events: &Events) -> CoalesceLayer {
    builder(events).build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_thousand_identical_gets_make_one_call() {
    let events = Events::default();
    let layer = layer(&events);
    let backend = Backend::new(Reply::Text);
    let service = service(&layer, &backend);
    let callers: Vec<_> = (0..1000)
        .map(|_| spawn_send(&service, get("http://api.test/items/7?x=1")))
        .collect();
    sleep(Duration::from_millis(1)).await;
    assert_eq!(layer.handle().snapshot().keys, 1);
    assert_eq!(layer.handle().snapshot().waiters, 1000);
    let mut answers = Vec::new();
    for caller in callers {
        answers.push(caller.await.unwrap().unwrap());
    }
    assert_eq!(backend.stats.calls(), 1);
    assert_eq!(backend.stats.finished(), 1);
    assert_eq!(answers.len(), 1000);
    for answer in &answers {
        assert_eq!(answer, &answers[0]);
    }
    assert_eq!(answers[0].body, "answer to http://api.test/items/7?x=1");
    assert_eq!(answers[0].headers["x-call"], "1");
    assert!(answers[0].shared);
    assert_eq!(events.count(Kind::Led), 1);
    assert_eq!(events.count(Kind::Joined), 999);
    assert_eq!(events.all().len(), 1000);
    let snapshot = layer.handle().snapshot();
    assert_eq!((snapshot.keys, snapshot.waiters), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_stampede_after_an_expiry_makes_one_call_and_nothing_is_cached() {
    let events = Events::default();
    let layer = layer(&events);
    let backend = Backend::new(Reply::Text);
    let service = service(&layer, &backend);
    // The cache entry expires: callers keep arriving, ten every millisecond, for 45 ms.
    let mut callers = Vec::new();
    for _ in 0..45 {
        for _ in 0..10 {
            callers.push(spawn_send(&service, get("/hot")));
        }
        sleep(Duration::from_millis(1)).await;
    }
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap().headers["x-call"], "1");
    }
    assert_eq!(backend.stats.calls(), 1);
    // The call has ended: the next wave starts a new one.
    let next: Vec<_> = (0..10).map(|_| spawn_send(&service, get("/hot"))).collect();
    for caller in next {
        assert_eq!(caller.await.unwrap().unwrap().headers["x-call"], "2");
    }
    assert_eq!(backend.stats.calls(), 2);
    assert_eq!(events.count(Kind::Led), 2);
    assert_eq!(events.count(Kind::Joined), 449 + 9);
}

#[tokio::test(start_paused = true)]
async fn the_leader_leaving_does_not_cancel_the_call() {
    let events = Events::default();
    let layer = layer(&events);
    let backend = Backend::new(Reply::Text);
    let service = service(&layer, &backend);
    let leader = spawn_send(&service, get("/a"));
    sleep(Duration::from_millis(1)).await;
    let waiters: Vec<_> = (0..10).map(|_| spawn_send(&service, get("/a"))).collect();
    sleep(Duration::from_millis(10)).await;
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap().unwrap().body, "answer to /a");
    }
    assert_eq!(backend.stats.calls(), 1);
    assert_eq!(backend.stats.finished(), 1);
    assert_eq!(backend.stats.cancelled(), 0);
    assert_eq!(events.count(Kind::Abandoned), 0);
    let snapshot = layer.handle().snapshot();
    assert_eq!((snapshot.keys, snapshot.waiters), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn drivers_leaving_one_after_another_hand_the_call_on() {
    let events = Events::default();
    let layer = layer(&events);
    let backend = Backend::new(Reply::Text);
    let service = service(&layer, &backend);
    let mut callers: Vec<_> = (0..6).map(|_| spawn_send(&service, get("/a"))).collect();
    sleep(Duration::from_millis(1)).await;
    // Every 5 ms the oldest caller (the driver, at first the leader) leaves.
    for _ in 0..5 {
        callers.remove(0).abort();
        sleep(Duration::from_millis(5)).await;
    }
    let last = callers.pop().unwrap();
    assert_eq!(last.await.unwrap().unwrap().body, "answer to /a");
    assert_eq!(backend.stats.calls(), 1);
    assert_eq!(backend.stats.cancelled(), 0);
    assert_eq!(layer.handle().snapshot().waiters, 0);
}

#[tokio::test(start_paused = true)]
async fn when_every_caller_leaves_the_upstream_future_is_dropped() {
    let events = Events::default();
    let layer = layer(&events);
    let backend = Backend::new(Reply::Text);
    let service = service(&layer, &backend);
    let callers: Vec<_> = (0..20).map(|_| spawn_send(&service, get("/a"))).collect();
    sleep(Duration::from_millis(10)).await;
    assert_eq!(backend.stats.cancelled(), 0);
    for caller in &callers {
        caller.abort();
    }
    for caller in callers {
        assert!(caller.await.unwrap_err().is_cancelled());
    }
    assert_eq!(backend.stats.calls(), 1);
    assert_eq!(
        backend.stats.cancelled(),
        1,
        "the upstream future was dropped"
    );
    assert_eq!(backend.stats.finished(), 0);
    assert_eq!(events.count(Kind::Abandoned), 1);
    let snapshot = layer.handle().snapshot();
    assert_eq!((snapshot.keys, snapshot.waiters), (0, 0));
    // A later request starts a fresh call.
    assert_eq!(
        send(&service, get("/a")).await.unwrap().headers["x-call"],
        "2"
    );
}

#[tokio::test(start_paused = true)]
async fn different_users_never_share_an_answer() {
    let events = Events::default();
    let layer = layer(&events);
    let backend = Backend::new(Reply::Echo);
    let service = service(&layer, &backend);
    let a: Vec<_> = (0..5)
        .map(|_| spawn_send(&service, get_as("/me", "Bearer A")))
        .collect();
    let b: Vec<_> = (0..5)
        .map(|_| spawn_send(&service, get_as("/me", "Bearer B")))
        .collect();
    let cookie = spawn_send(
        &service,
        Request::get("/me")
            .header("cookie", "Bearer A")
            .body(())
            .unwrap(),
    );
    let anonymous = spawn_send(&service, get("/me"));
    for caller in a {
        assert_eq!(caller.await.unwrap().unwrap().body, "Bearer A");
    }
    for caller in b {
        assert_eq!(caller.await.unwrap().unwrap().body, "Bearer B");
    }
    assert_eq!(cookie.await.unwrap().unwrap().body, "");
    assert_eq!(anonymous.await.unwrap().unwrap().body, "");
    assert_eq!(backend.stats.calls(), 4);
    assert_eq!(events.count(Kind::Led), 4);
    assert_eq!(events.count(Kind::Joined), 8);
}

#[tokio::test(start_paused = true)]
async fn ignoring_user_headers_shares_across_users() {
    let events = Events::default();
    let layer = builder(&events).ignore_user_headers().build().unwrap();
    let backend = Backend::new(Reply::Echo);
    let service = service(&layer, &backend);
    let a = spawn_send(&service, get_as("/public", "Bearer A"));
    let b = spawn_send(&service, get_as("/public", "Bearer B"));
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    assert_eq!(a.body, b.body);
    assert_eq!(backend.stats.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn other_methods_pass_by_untouched() {
    let events = Events::default();
    let layer = layer(&events);
    let backend = Backend::new(Reply::Text);
    let service = service(&layer, &backend);
    let posts: Vec<_> = (0..3)
        .map(|_| spawn_send(&service, Request::post("/a").body(()).unwrap()))
        .collect();
    for post in posts {
        assert!(!post.await.unwrap().unwrap().shared);
    }
    assert_eq!(backend.stats.calls(), 3);
    assert!(events.all().is_empty());
    // GET and HEAD of one URI are different keys.
    let get = spawn_send(&service, get("/a"));
    let head = spawn_send(&service, Request::head("/a").body(()).unwrap());
    get.await.unwrap().unwrap();
    head.await.unwrap().unwrap();
    assert_eq!(backend.stats.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_custom_key_decides() {
    let events = Events::default();
    let layer = builder(&events)
        .key(|parts| {
            (parts.method == Method::POST)
                .then(|| bytes::Bytes::copy_from_slice(parts.uri.path().as_bytes()))
        })
        .build()
        .unwrap();
    let backend = Backend::new(Reply::Text);
    let service = service(&layer, &backend);
    let posts: Vec<_> = (0..3)
        .map(|i| {
            spawn_send(
                &service,
                Request::post(format!("/search?page={i}")).body(()).unwrap(),
            )
        })
        .collect();
    for post in posts {
        post.await.unwrap().unwrap();
    }
    assert_eq!(backend.stats.calls(), 1);
    send(&service, get("/search")).await.unwrap();
    assert_eq!(backend.stats.calls(), 2);
    assert_eq!(events.count(Kind::Led), 1);
}

#[tokio::test(start_paused = true)]
async fn over_max_keys_goes_upstream_alone() {
    let events = Events::default();
    let layer = builder(&events).max_keys(2).build().unwrap();
    let backend = Backend::new(Reply::Text);
    let service = service(&layer, &backend);
    let callers: Vec<_> = ["/a", "/b", "/c", "/a", "/c"]
        .iter()
        .map(|uri| spawn_send(&service, get(uri)))
        .collect();
    for caller in callers {
        caller.await.unwrap().unwrap();
    }
    // /a and /b lead, /c twice over the bound, the second /a joins.
    assert_eq!(backend.stats.calls(), 4);
    assert_eq!(events.count(Kind::Led), 2);
    assert_eq!(events.count(Kind::OverKeys), 2);
    assert_eq!(events.count(Kind::Joined), 1);
    assert_eq!(layer.handle().snapshot().keys, 0);
}

#[tokio::test(start_paused = true)]
async fn over_max_waiters_goes_upstream_alone() {
    let events = Events::default();
    let layer = builder(&events).max_waiters(2).build().unwrap();
    let backend = Backend::new(Reply::Text);
    let service = service(&layer, &backend);
    let callers: Vec<_> = (0..6).map(|_| spawn_send(&service, get("/a"))).collect();
    let mut shared = 0;
    for caller in callers {
        shared += usize::from(caller.await.unwrap().unwrap().shared);
    }
    assert_eq!(shared, 3);
    assert_eq!(backend.stats.calls(), 4);
    assert_eq!(events.count(Kind::OverWaiters), 3);
    assert_eq!(events.count(Kind::Joined), 2);
}

async fn over_the_body_limit(announced: bool) {
    let events = Events::default();
    let layer = builder(&events).max_body_bytes(4096).build().unwrap();
    let backend = Backend::new(Reply::Big {
        len: 10_000,
        announced,
    });
    let service = service(&layer, &backend);
    let leader = spawn_send(&service, get("/big"));
    sleep(Duration::from_millis(1)).await;
    let waiters: Vec<_> = (0..3).map(|_| spawn_send(&service, get("/big"))).collect();
    let leader = leader.await.unwrap().unwrap();
    assert_eq!(
        leader.body.len(),
        10_000,
        "the leader gets its whole answer"
    );
    assert_eq!(leader.headers["x-call"], "1");
    assert!(!leader.shared);
    for waiter in waiters {
        let waiter = waiter.await.unwrap().unwrap();
        assert_eq!(waiter.body.len(), 10_000);
        assert_ne!(
            waiter.headers["x-call"], "1",
            "each waiter sent its own call"
        );
    }
    assert_eq!(backend.stats.calls(), 4);
    assert_eq!(events.count(Kind::OverBody), 1);
    assert_eq!(events.count(Kind::Resent), 3);
    let snapshot = layer.handle().snapshot();
    assert_eq!((snapshot.keys, snapshot.waiters), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_body_announced_over_the_limit_is_not_shared() {
    over_the_body_limit(true).await;
}

#[tokio::test(start_paused = true)]
async fn a_body_found_over_the_limit_while_read_is_not_shared() {
    over_the_body_limit(false).await;
}

#[tokio::test(start_paused = true)]
async fn a_body_at_the_limit_is_shared_in_chunks() {
    let events = Events::default();
    let layer = builder(&events).max_body_bytes(4096).build().unwrap();
    let backend = Backend::new(Reply::Big {
        len: 4096,
        announced: false,
    });
    let service = service(&layer, &backend);
    let callers: Vec<_> = (0..3).map(|_| spawn_send(&service, get("/big"))).collect();
    for caller in callers {
        let answer = caller.await.unwrap().unwrap();
        assert_eq!(answer.body.len(), 4096);
        assert!(answer.shared);
    }
    assert_eq!(backend.stats.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn errors_reach_every_waiter_with_their_rejection() {
    let events = Events::default();
    let layer = layer(&events);
    let backend = Backend::new(Reply::Refuse);
    let service = service(&layer, &backend);
    let callers: Vec<_> = (0..5).map(|_| spawn_send(&service, get("/a"))).collect();
    let mut wrapped = 0;
    for caller in callers {
        let error = caller.await.unwrap().unwrap_err();
        let rejection = find_rejection(&error).expect("the rejection reaches every waiter");
        assert_eq!(rejection.kind(), RejectionKind::Overloaded);
        assert_eq!(rejection.layer(), "below");
        wrapped += usize::from(error.is::<CoalescedError>());
    }
    // Each gets a wrapper around the one error: even the last to take it, since the
    // others' copies are still alive (in their finished tasks) when it does.
    assert_eq!(wrapped, 5);
    assert_eq!(backend.stats.calls(), 1);
    // A caller alone gets the original error, unwrapped.
    let error = send(&service, get("/a")).await.unwrap_err();
    assert!(!error.is::<CoalescedError>());
    assert_eq!(
        find_rejection(&error).unwrap().kind(),
        RejectionKind::Overloaded
    );

    let backend = Backend::new(Reply::Fail);
    let service = support::service(&layer, &backend);
    let callers: Vec<_> = (0..3).map(|_| spawn_send(&service, get("/a"))).collect();
    for caller in callers {
        let error = caller.await.unwrap().unwrap_err();
        assert!(error.to_string().contains("backend broke"), "{error}");
        assert!(find_rejection(&error).is_none());
    }
    assert_eq!(backend.stats.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_answered_below_reads_the_same_for_every_waiter() {
    let events = Events::default();
    let layer = layer(&events);
    let backend = Backend::new(Reply::Throttled);
    let service = service(&layer, &backend);
    let callers: Vec<_> = (0..4).map(|_| spawn_send(&service, get("/a"))).collect();
    for caller in callers {
        let answer = caller.await.unwrap().unwrap();
        assert_eq!(answer.status, 429);
        let rejection = answer.rejection.expect("the extensions are shared");
        assert_eq!(rejection.kind(), RejectionKind::Throttled);
    }
    assert_eq!(backend.stats.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn joiners_keep_the_service_ready_for_its_next_call() {
    // ReadinessProbe panics on a call without poll_ready: a joiner that used (or
    // consumed) the readiness of the service it was called on would trip it.
    let events = Events::default();
    let layer = layer(&events);
    let backend = Backend::new(Reply::Text);
    let mut service = support::service(&layer, &backend);
    let leader = spawn_send(&service, get("/a"));
    sleep(Duration::from_millis(1)).await;
    let ready = service.ready().await.unwrap();
    let joiner = tokio::spawn(ready.call(get("/a")));
    sleep(Duration::from_millis(1)).await;
    // The same service value, readied again, leads a different key.
    let other = service.ready().await.unwrap().call(get("/b"));
    assert!(joiner.await.unwrap().is_ok());
    assert!(other.await.is_ok());
    leader.await.unwrap().unwrap();
    assert_eq!(backend.stats.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn random_drops_leave_nothing_behind() {
    for seed in 0..20u64 {
        let mut rng = SeededRng::new(seed);
        let events = Events::default();
        // No bound reached: every upstream call is a shared one, so each cancelled call
        // is an abandoned one.
        let layer = builder(&events).build().unwrap();
        let backend = Backend::new(Reply::Text);
        let service = service(&layer, &backend);
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        for _ in 0..60 {
            let uri = ["/a", "/b", "/c"][(rng.next_u64() % 3) as usize];
            let caller = spawn_send(&service, get(uri));
            if rng.next_unit() < 0.5 {
                let at = Duration::from_micros(rng.next_u64() % 60_000);
                dropped.push((caller, at));
            } else {
                kept.push((caller, uri));
            }
            sleep(Duration::from_micros(rng.next_u64() % 2_000)).await;
        }
        let aborts: Vec<_> = dropped
            .into_iter()
            .map(|(caller, at)| {
                tokio::spawn(async move {
                    sleep(at).await;
                    caller.abort();
                    let _ = caller.await;
                })
            })
            .collect();
        for abort in aborts {
            abort.await.unwrap();
        }
        for (caller, uri) in kept {
            let answer = caller.await.unwrap().unwrap();
            assert_eq!(answer.body, format!("answer to {uri}"), "seed {seed}");
        }
        let snapshot = layer.handle().snapshot();
        assert_eq!((snapshot.keys, snapshot.waiters), (0, 0), "seed {seed}");
        let stats = &backend.stats;
        assert_eq!(
            stats.calls(),
            stats.finished() + stats.cancelled(),
            "seed {seed}"
        );
        assert_eq!(
            stats.cancelled(),
            events.count(Kind::Abandoned),
            "seed {seed}"
        );
        assert_eq!(stats.calls(), events.count(Kind::Led), "seed {seed}");
        assert_eq!(
            events.count(Kind::Led) + events.count(Kind::Joined),
            60,
            "seed {seed}"
        );
    }
}

#[test]
fn every_setting_is_validated() {
    for (field, builder) in [
        ("max_keys", CoalesceLayer::builder().max_keys(0)),
        ("max_waiters", CoalesceLayer::builder().max_waiters(0)),
        ("max_body_bytes", CoalesceLayer::builder().max_body_bytes(0)),
    ] {
        let error = builder.build().unwrap_err();
        assert_eq!(error.field(), field);
        assert!(error.to_string().contains(field), "{error}");
    }
    let layer = CoalesceLayer::builder()
        .max_keys(usize::MAX)
        .max_waiters(usize::MAX)
        .max_body_bytes(usize::MAX)
        .build()
        .unwrap();
    assert_eq!(layer.handle().snapshot().max_keys, usize::MAX);
    assert_eq!(layer.handle().name(), "coalesce");
}

/// The same invariants with callers on two worker threads racing each other (joins,
/// hand-overs, abandonments and completions interleaved for real).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_callers_on_threads_leave_nothing_behind() {
    let events = Events::default();
    let layer = builder(&events).max_waiters(16).build().unwrap();
    let mut backend = Backend::new(Reply::Text);
    backend.latency = Duration::from_millis(1);
    let service = service(&layer, &backend);
    let mut rng = SeededRng::new(7);
    let mut kept = Vec::new();
    for i in 0..2000 {
        let uri = ["/a", "/b", "/c", "/d"][(rng.next_u64() % 4) as usize];
        let caller = spawn_send(&service, get(uri));
        if rng.next_unit() < 0.4 {
            if i % 2 == 0 {
                tokio::task::yield_now().await;
            }
            caller.abort();
            let _ = caller.await;
        } else {
            kept.push((caller, uri));
        }
    }
    for (caller, uri) in kept {
        assert_eq!(
            caller.await.unwrap().unwrap().body,
            format!("answer to {uri}")
        );
    }
    let snapshot = layer.handle().snapshot();
    assert_eq!((snapshot.keys, snapshot.waiters), (0, 0));
    let stats = &backend.stats;
    assert_eq!(stats.calls(), stats.finished() + stats.cancelled());
    assert_eq!(
        stats.calls(),
        events.count(Kind::Led) + events.count(Kind::OverWaiters)
    );
}
