//! Backoff between attempts, with jitter (AWS, "Exponential Backoff and Jitter").

use std::time::Duration;

use tower_bulwark_core::{ConfigError, SeededRng};

/// How the wait before a retry grows with the attempt number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backoff {
    /// The same wait every time.
    Constant(Duration),
    /// `initial`, `initial + step`, `initial + 2 step`, ...
    Linear {
        /// The first wait.
        initial: Duration,
        /// Added per retry.
        step: Duration,
    },
    /// `initial`, `initial × multiplier`, `initial × multiplier²`, ...
    Exponential {
        /// The first wait.
        initial: Duration,
        /// The growth per retry, at least 1.
        multiplier: f64,
    },
    /// `initial × 1, 1, 2, 3, 5, 8, ...`: gentler than doubling.
    Fibonacci {
        /// The first wait.
        initial: Duration,
    },
}

/// How the computed wait is spread, so that clients that failed together do not retry
/// together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// Exactly the computed wait.
    None,
    /// Uniform in `0..wait`: the most spread, AWS's recommendation.
    #[default]
    Full,
    /// `wait / 2` plus uniform in `0..wait / 2`: never shorter than half.
    Equal,
    /// Uniform in `initial..3 × previous wait`, capped: each wait depends on the last.
    Decorrelated,
}

/// The waits of one call's retries: a [`Backoff`], a [`Jitter`] and a cap, with a seeded
/// random generator so tests are exact.
///
/// ```
/// use std::time::Duration;
/// use tower_bulwark_retry::{Backoff, Backoffs, Jitter};
///
/// let exponential = Backoff::Exponential { initial: Duration::from_millis(100), multiplier: 2.0 };
/// let mut waits = Backoffs::new(exponential, Jitter::None, Duration::from_millis(500)).unwrap();
/// let ms: Vec<u128> = (1..=5).map(|retry| waits.wait(retry).as_millis()).collect();
/// assert_eq!(ms, [100, 200, 400, 500, 500]);
/// ```
#[derive(Debug, Clone)]
pub struct Backoffs {
    backoff: Backoff,
    jitter: Jitter,
    max: Duration,
    rng: SeededRng,
    previous: Duration,
}

impl Backoffs {
    /// Waits following `backoff`, spread by `jitter`, never longer than `max`. Checks that
    /// the multiplier is finite and at least 1.
    pub fn new(backoff: Backoff, jitter: Jitter, max: Duration) -> Result<Self, ConfigError> {
        if let Backoff::Exponential { multiplier, .. } = backoff {
            if !(multiplier.is_finite() && multiplier >= 1.0) {
                return Err(ConfigError::new(
                    "backoff.multiplier",
                    format!("must be a finite number >= 1, got {multiplier}"),
                ));
            }
        }
        Ok(Backoffs {
            backoff,
            jitter,
            max,
            rng: SeededRng::from_entropy(),
            previous: Duration::ZERO,
        })
    }

    /// Seeds the jitter, for exact tests.
    pub fn seeded(mut self, seed: u64) -> Self {
        self.rng = SeededRng::new(seed);
        self
    }

    fn initial(&self) -> Duration {
        match self.backoff {
            Backoff::Constant(wait) => wait,
            Backoff::Linear { initial, .. }
            | Backoff::Exponential { initial, .. }
            | Backoff::Fibonacci { initial } => initial,
        }
    }

    /// The computed wait before the `retry`-th retry (1 for the first), before jitter.
    fn base(&self, retry: u32) -> Duration {
        let n = retry.max(1) - 1;
        let seconds = match self.backoff {
            Backoff::Constant(wait) => wait.as_secs_f64(),
            Backoff::Linear { initial, step } => {
                initial.as_secs_f64() + step.as_secs_f64() * f64::from(n)
            }
            Backoff::Exponential {
                initial,
                multiplier,
            } => initial.as_secs_f64() * multiplier.powi(i32::try_from(n).unwrap_or(i32::MAX)),
            Backoff::Fibonacci { initial } => {
                let (mut a, mut b) = (1.0f64, 1.0f64);
                for _ in 0..n.min(200) {
                    (a, b) = (b, a + b);
                }
                initial.as_secs_f64() * a
            }
        };
        duration(seconds.min(self.max.as_secs_f64()))
    }

    /// The wait before the `retry`-th retry (1 for the first).
    pub fn wait(&mut self, retry: u32) -> Duration {
        let base = self.base(retry);
        let wait = match self.jitter {
            Jitter::None => base,
            Jitter::Full => base.mul_f64(self.rng.next_unit()),
            Jitter::Equal => base / 2 + (base / 2).mul_f64(self.rng.next_unit()),
            Jitter::Decorrelated => {
                let low = self.initial().as_secs_f64();
                let high = (self.previous.max(self.initial()).as_secs_f64() * 3.0).max(low);
                duration(low + (high - low) * self.rng.next_unit())
            }
        }
        .min(self.max);
        self.previous = wait;
        wait
    }
}

/// Seconds as a `Duration`; NaN, negative and huge values saturate instead of panicking.
fn duration(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::MAX)
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn waits(backoff: Backoff, jitter: Jitter, max: Duration, n: u32) -> Vec<u128> {
        let mut waits = Backoffs::new(backoff, jitter, max).unwrap().seeded(1);
        (1..=n).map(|retry| waits.wait(retry).as_millis()).collect()
    }

    #[test]
    fn each_backoff_without_jitter() {
        let max = ms(10_000);
        assert_eq!(
            waits(Backoff::Constant(ms(50)), Jitter::None, max, 3),
            [50, 50, 50]
        );
        let linear = Backoff::Linear {
            initial: ms(100),
            step: ms(50),
        };
        assert_eq!(waits(linear, Jitter::None, max, 4), [100, 150, 200, 250]);
        let exponential = Backoff::Exponential {
            initial: ms(10),
            multiplier: 3.0,
        };
        assert_eq!(waits(exponential, Jitter::None, max, 4), [10, 30, 90, 270]);
        let fibonacci = Backoff::Fibonacci { initial: ms(10) };
        assert_eq!(
            waits(fibonacci, Jitter::None, max, 7),
            [10, 10, 20, 30, 50, 80, 130]
        );
    }

    #[test]
    fn the_cap_holds_for_huge_attempt_numbers() {
        let exponential = Backoff::Exponential {
            initial: ms(10),
            multiplier: 2.0,
        };
        let mut waits = Backoffs::new(exponential, Jitter::None, ms(1_000)).unwrap();
        assert_eq!(waits.wait(u32::MAX), ms(1_000));
        let mut fib =
            Backoffs::new(Backoff::Fibonacci { initial: ms(1) }, Jitter::None, ms(5)).unwrap();
        assert_eq!(fib.wait(u32::MAX), ms(5));
    }

    #[test]
    fn jitters_stay_in_their_ranges_and_are_exact_for_a_seed() {
        let base = Backoff::Constant(ms(1_000));
        let max = ms(10_000);
        assert_eq!(
            waits(base, Jitter::Full, max, 20),
            waits(base, Jitter::Full, max, 20)
        );
        for (jitter, low, high) in [
            (Jitter::Full, 0, 1_000),
            (Jitter::Equal, 500, 1_000),
            (Jitter::Decorrelated, 1_000, 10_000),
        ] {
            let all = waits(base, jitter, max, 200);
            assert!(
                all.iter().all(|w| (low..=high).contains(w)),
                "{jitter:?}: {all:?}"
            );
            let distinct: std::collections::HashSet<_> = all.iter().collect();
            assert!(distinct.len() > 50, "{jitter:?} spreads");
        }
    }

    #[test]
    fn decorrelated_grows_from_the_previous_wait_and_respects_the_cap() {
        let mut waits = Backoffs::new(Backoff::Constant(ms(100)), Jitter::Decorrelated, ms(2_000))
            .unwrap()
            .seeded(9);
        let all: Vec<Duration> = (1..=50).map(|retry| waits.wait(retry)).collect();
        assert!(all.iter().all(|w| *w >= ms(100) && *w <= ms(2_000)));
        assert!(
            all.iter().any(|w| *w > ms(300)),
            "it can grow past 3 × initial"
        );
    }

    #[test]
    fn decorrelated_waits_stay_within_three_times_the_previous_one() {
        for seed in 0..20 {
            let mut waits =
                Backoffs::new(Backoff::Constant(ms(100)), Jitter::Decorrelated, ms(60_000))
                    .unwrap()
                    .seeded(seed);
            let mut previous = ms(100);
            for retry in 1..=30 {
                let wait = waits.wait(retry);
                assert!(
                    wait >= ms(100) && wait <= previous * 3,
                    "seed {seed}, retry {retry}: {wait:?} after {previous:?}"
                );
                previous = wait.max(ms(100));
            }
        }
    }

    #[test]
    fn a_bad_multiplier_is_refused() {
        for multiplier in [0.5, f64::NAN, f64::INFINITY] {
            let backoff = Backoff::Exponential {
                initial: ms(1),
                multiplier,
            };
            let err = Backoffs::new(backoff, Jitter::None, ms(1)).unwrap_err();
            assert_eq!(err.field(), "backoff.multiplier");
        }
    }
}
