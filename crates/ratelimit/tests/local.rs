//! `LocalLimiter` and `Quota` in paused time: GCRA exactness against a token-bucket
//! model, per-key isolation, idle eviction and the key bound, shares, the longest window,
//! and bad settings.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::advance;
use tower_bulwark_ratelimit::{Decision, Limiter, LocalLimiter, Quota};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn allowed(remaining: u32, reset: Duration) -> Decision {
    Decision {
        allowed: true,
        remaining,
        reset,
        retry_after: Duration::ZERO,
    }
}

fn refused(retry_after: Duration, reset: Duration) -> Decision {
    Decision {
        allowed: false,
        remaining: 0,
        reset,
        retry_after,
    }
}

#[tokio::test(start_paused = true)]
async fn a_burst_then_one_permit_per_interval() {
    // 6 a minute: one permit back every 10 s, 3 at once.
    let limiter = LocalLimiter::new(Quota::per_minute(6).unwrap().burst(3).unwrap());
    assert_eq!(limiter.check(&1), allowed(2, ms(10_000)));
    assert_eq!(limiter.check(&1), allowed(1, ms(20_000)));
    assert_eq!(limiter.check(&1), allowed(0, ms(30_000)));
    assert_eq!(limiter.check(&1), refused(ms(10_000), ms(30_000)));

    advance(ms(9_999)).await;
    assert_eq!(limiter.check(&1), refused(ms(1), ms(20_001)));
    advance(ms(1)).await;
    assert_eq!(limiter.check(&1), allowed(0, ms(30_000)));
    assert_eq!(limiter.check(&1), refused(ms(10_000), ms(30_000)));

    // A long idle refills the burst, and no more than the burst.
    advance(Duration::from_secs(3600)).await;
    for remaining in [2, 1, 0] {
        assert_eq!(limiter.check(&1).remaining, remaining);
    }
    assert!(!limiter.check(&1).allowed);
}

#[tokio::test(start_paused = true)]
async fn an_admitted_reset_counts_the_permits_used_in_whole_intervals() {
    let limiter = LocalLimiter::new(Quota::per_minute(6).unwrap().burst(3).unwrap());
    assert_eq!(limiter.check(&"k"), allowed(2, ms(10_000)));
    advance(ms(1_000)).await;
    // Exactly 19 s until the burst is whole; governor reports 1 permit left, so 2 used.
    assert_eq!(limiter.check(&"k"), allowed(1, ms(20_000)));
    advance(ms(9_000)).await;
    // 10 s since the first: one permit back.
    assert_eq!(limiter.check(&"k"), allowed(1, ms(20_000)));
}

#[tokio::test(start_paused = true)]
async fn keys_have_their_own_limits() {
    let limiter = LocalLimiter::new(Quota::per_second(1).unwrap());
    assert!(limiter.check(&"alice").allowed);
    assert!(!limiter.check(&"alice").allowed);
    assert!(limiter.check(&"bob").allowed, "alice's use is not bob's");
    assert!(!limiter.check(&"bob").allowed);
    // A clone shares the limits.
    assert!(!limiter.clone().check(&"alice").allowed);
    // Another limiter does not.
    assert!(
        LocalLimiter::new(Quota::per_second(1).unwrap())
            .check(&"alice")
            .allowed
    );
}

#[tokio::test(start_paused = true)]
async fn the_limiter_contract_answers_at_once_and_names_the_quota() {
    let quota = Quota::per_second(2).unwrap().name("api");
    let limiter = LocalLimiter::<u8>::new(quota.clone());
    assert_eq!(Limiter::quota(&limiter), &quota);
    let now = limiter.acquire_now(&1).unwrap().unwrap();
    assert_eq!(now, allowed(1, ms(500)));
    let later = limiter.acquire(&1).await.unwrap();
    assert_eq!(later, allowed(0, ms(1_000)));
}

/// The GCRA as a token bucket: `burst * interval` of credit, refilled one nanosecond per
/// nanosecond, one interval's worth per permit.
struct Bucket {
    interval: u64,
    full: u64,
    credit: HashMap<u8, (u64, u64)>,
}

impl Bucket {
    fn check(&mut self, key: u8, now: u64) -> Decision {
        let (credit, at) = self.credit.get(&key).copied().unwrap_or((self.full, now));
        let credit = (credit + (now - at)).min(self.full);
        if credit < self.interval {
            self.credit.insert(key, (credit, now));
            let wait = self.interval - credit;
            return refused(
                Duration::from_nanos(wait),
                Duration::from_nanos(wait + self.full - self.interval),
            );
        }
        let left = credit - self.interval;
        self.credit.insert(key, (left, now));
        let remaining = (left / self.interval) as u32;
        let used = (self.full / self.interval) as u32 - remaining;
        allowed(
            remaining,
            Duration::from_nanos(self.interval * u64::from(used)),
        )
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_limiter_is_the_token_bucket(
        limit in 1u32..20,
        burst_part in 0u32..20,
        window_ms in 1u64..5_000,
        steps in proptest::collection::vec((0u64..700, 0u8..3), 1..80),
    ) {
        let burst = 1 + burst_part % limit;
        let quota = Quota::per_window(limit, ms(window_ms)).unwrap().burst(burst).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let interval = quota.interval().as_nanos() as u64;
            let mut model = Bucket {
                interval,
                full: interval * u64::from(burst),
                credit: HashMap::new(),
            };
            let limiter = LocalLimiter::new(quota);
            let mut now = 0;
            for (wait, key) in steps {
                advance(ms(wait)).await;
                now += wait * 1_000_000;
                prop_assert_eq!(limiter.check(&key), model.check(key, now), "at {} ns", now);
            }
            Ok(())
        })?;
    }
}

#[tokio::test(start_paused = true)]
async fn keys_whose_burst_is_whole_again_are_forgotten_periodically() {
    let limiter = LocalLimiter::<u32>::builder(Quota::per_second(2).unwrap())
        .sweep_interval(Duration::from_secs(10))
        .build()
        .unwrap();
    for key in 0..100 {
        limiter.check(&key);
    }
    assert_eq!(limiter.key_count(), 100);
    advance(Duration::from_secs(5)).await;
    limiter.check(&2_000); // not due yet: nothing is forgotten
    assert_eq!(limiter.key_count(), 101);
    advance(ms(4_800)).await;
    // A busy key: its whole burst used just before the sweep is due.
    assert!(limiter.check(&1_000).allowed);
    assert!(limiter.check(&1_000).allowed);
    advance(ms(200)).await;
    // Due now; a call of a key held adds nothing and sweeps nothing.
    assert!(!limiter.check(&1_000).allowed);
    assert_eq!(limiter.key_count(), 102);
    // A call that adds a key sweeps: only the busy key and the new one are left.
    limiter.check(&3_000);
    assert_eq!(limiter.key_count(), 2);
    assert!(
        !limiter.check(&1_000).allowed,
        "the busy key kept its state"
    );
    // The next sweep is due 10 s later.
    advance(Duration::from_secs(9)).await;
    limiter.check(&3_001);
    assert_eq!(limiter.key_count(), 3);
    advance(Duration::from_secs(1)).await;
    limiter.check(&3_002);
    assert_eq!(limiter.key_count(), 1);
}

/// One permit every 10 s, one at a time, at most 8 keys.
fn eight_keys() -> LocalLimiter<u32> {
    LocalLimiter::builder(Quota::per_window(1, Duration::from_secs(10)).unwrap())
        .max_keys(8)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn busy_keys_within_the_bound_are_never_forgotten() {
    let limiter = eight_keys();
    // Eight clients, one a second: each uses its permit, each is due again 10 s later.
    for key in 0..8 {
        assert!(limiter.check(&key).allowed);
        advance(Duration::from_secs(1)).await;
    }
    // t = 8 s. Client 0 at 10 s, then client 1 at 10 s: its permit is due at 11 s.
    advance(Duration::from_secs(2)).await;
    assert!(limiter.check(&0).allowed);
    assert_eq!(limiter.key_count(), 8);
    let early = limiter.check(&1);
    assert!(
        !early.allowed,
        "8 keys held, max_keys 8: client 1 was forgotten and admitted a second early"
    );
    assert_eq!(early.retry_after, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_sweep_at_the_bound_forgets_down_to_seven_eighths_not_everything() {
    let limiter = eight_keys();
    // Nine clients at once, one request each: the ninth passes the bound, and every key
    // is as busy as the others.
    for key in 0..9 {
        assert!(limiter.check(&key).allowed);
    }
    assert_eq!(
        limiter.key_count(),
        7,
        "the sweep keeps seven eighths of the bound"
    );
    let admitted_again = (0..9).filter(|key| limiter.check(key).allowed).count();
    assert_eq!(admitted_again, 2, "the two forgotten clients, and no other");
}

#[tokio::test(start_paused = true)]
async fn the_key_bound_holds_and_forgets_the_keys_nearest_a_whole_burst_first() {
    // 4 at once, one back every 10 s.
    let quota = Quota::per_window(4, Duration::from_secs(40)).unwrap();
    let limiter = LocalLimiter::<u32>::builder(quota)
        .max_keys(16)
        .build()
        .unwrap();
    // Heavy keys: their whole burst used.
    for key in 0..4 {
        for _ in 0..4 {
            assert!(limiter.check(&key).allowed);
        }
    }
    // A flood of new keys, one request each.
    for key in 100..1_000 {
        assert!(limiter.check(&key).allowed, "new keys are never refused");
        assert!(limiter.key_count() <= 16, "{} keys", limiter.key_count());
    }
    assert!(limiter.key_count() >= 4);
    for key in 0..4 {
        assert!(
            !limiter.check(&key).allowed,
            "heavy key {key} was not forgotten"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn when_every_key_is_heavy_the_bound_still_holds() {
    let limiter = LocalLimiter::<u32>::builder(Quota::per_minute(1).unwrap())
        .max_keys(1)
        .build()
        .unwrap();
    for key in 0..50 {
        assert!(limiter.check(&key).allowed);
        assert!(limiter.key_count() <= 1);
    }
}

#[test]
fn windows_past_a_hundred_years_are_refused_by_the_quota() {
    const YEAR: Duration = Duration::from_secs(365 * 86_400);
    assert_eq!(Quota::MAX_WINDOW, 100 * YEAR);
    let field =
        |result: Result<Quota, tower_bulwark_core::ConfigError>| result.unwrap_err().field();
    // One request every 600 years: past the 584 years governor counts in nanoseconds.
    assert_eq!(field(Quota::per_window(1, 600 * YEAR)), "window");
    // A burst of 1,000 at one a year: 999 years of burst tolerance.
    assert_eq!(field(Quota::per_window(1_000, 1_000 * YEAR)), "window");
    assert_eq!(field(Quota::per_window(1, Duration::MAX)), "window");
    assert_eq!(
        field(Quota::per_window(
            1,
            Quota::MAX_WINDOW + Duration::from_nanos(1)
        )),
        "window"
    );
    // A share stretches the window: past the longest, it names the share.
    let long = Quota::per_window(1, 30 * YEAR).unwrap();
    assert_eq!(field(long.share(25)), "percent");
    assert!(long.share(30).is_ok());
}

#[tokio::test(start_paused = true)]
async fn the_longest_window_and_largest_burst_build_and_count() {
    // The whole burst worth the whole window (100 years), and one a century.
    for quota in [
        Quota::per_window(u32::MAX, Quota::MAX_WINDOW).unwrap(),
        Quota::per_window(1, Quota::MAX_WINDOW).unwrap(),
    ] {
        let limiter = LocalLimiter::<u8>::builder(quota.clone()).build().unwrap();
        let first = limiter.check(&1);
        assert!(first.allowed);
        assert_eq!(first.remaining, quota.burst_size() - 1);
        assert!(first.reset <= Quota::MAX_WINDOW, "{first:?}");
        // Ten years on, time adds up without overflow.
        advance(10 * Duration::from_secs(365 * 86_400)).await;
        assert_eq!(limiter.check(&1).allowed, quota.limit() > 1);
    }
}

#[test]
fn a_share_is_that_share_of_the_rate() {
    for (limit, percent) in [(1, 25), (2, 25), (3, 50), (10, 25), (7, 100)] {
        let base = Quota::per_minute(limit).unwrap();
        let share = base.share(percent).unwrap();
        assert_eq!(
            share.interval(),
            base.interval() * 100 / percent,
            "{percent}% of {limit} a minute is one permit every {:?}, not {:?}",
            base.interval() * 100 / percent,
            share.interval()
        );
        assert_eq!(share.limit(), limit);
        assert_eq!(share.window(), base.window() * 100 / percent);
    }
    // The burst is scaled down, at least 1.
    let base = Quota::per_minute(100)
        .unwrap()
        .burst(10)
        .unwrap()
        .name("api");
    assert_eq!(base.share(25).unwrap().burst_size(), 2);
    assert_eq!(base.share(5).unwrap().burst_size(), 1);
    assert_eq!(base.share(100).unwrap(), base);
}

#[test]
fn bad_settings_name_their_field() {
    let field =
        |result: Result<Quota, tower_bulwark_core::ConfigError>| result.unwrap_err().field();
    assert_eq!(field(Quota::per_second(0)), "limit");
    assert_eq!(field(Quota::per_window(1, Duration::ZERO)), "window");
    assert_eq!(
        field(Quota::per_window(u32::MAX, Duration::from_secs(1))),
        "limit"
    );
    assert_eq!(field(Quota::per_second(5).unwrap().burst(0)), "burst");
    assert_eq!(field(Quota::per_second(5).unwrap().burst(6)), "burst");
    assert_eq!(field(Quota::per_second(5).unwrap().share(0)), "percent");
    assert_eq!(field(Quota::per_second(5).unwrap().share(101)), "percent");
    let quota = Quota::per_second(5).unwrap();
    let builder = || LocalLimiter::<u8>::builder(quota.clone());
    assert_eq!(
        builder().max_keys(0).build().unwrap_err().field(),
        "max_keys"
    );
    assert_eq!(
        builder()
            .sweep_interval(Duration::ZERO)
            .build()
            .unwrap_err()
            .field(),
        "sweep_interval"
    );
}
