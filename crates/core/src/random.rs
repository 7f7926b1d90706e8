//! [`SeededRng`] and [`SharedRng`]: the small random number generator behind jitter and
//! sampling, seeded so tests are exact.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The splitmix64 step between states.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64's output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 64 random bits as a uniform number in `0..1`.
fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A splitmix64 generator: tiny, fast, and good enough for spreading timers (jitter), not
/// for anything secret. Nearby seeds give unrelated sequences.
///
/// ```
/// use tower_bulwark_core::SeededRng;
///
/// let mut a = SeededRng::new(7);
/// let mut b = SeededRng::new(7);
/// assert_eq!(a.next_unit(), b.next_unit());
/// let x = a.next_unit();
/// assert!((0.0..1.0).contains(&x));
/// ```
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SeededRng(seed)
    }

    /// A generator seeded differently in every process, so a fleet's jitter is not in step.
    pub fn from_entropy() -> Self {
        use std::hash::{BuildHasher, Hasher};
        SeededRng::new(
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish(),
        )
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// A uniform number in `0..1`.
    pub fn next_unit(&mut self) -> f64 {
        unit(self.next_u64())
    }

    /// The time to the next arrival of a Poisson process of `rate` per second: an
    /// exponential gap, for open-loop load. A rate that is not above zero never arrives
    /// (`Duration::MAX`).
    ///
    /// ```
    /// use tower_bulwark_core::SeededRng;
    ///
    /// let mut rng = SeededRng::new(1);
    /// let gap = rng.next_gap(1000.0);
    /// assert!(gap < std::time::Duration::from_secs(1));
    /// ```
    pub fn next_gap(&mut self, rate: f64) -> Duration {
        if rate.is_nan() || rate <= 0.0 {
            return Duration::MAX;
        }
        // `1 - u` is in (0, 1], so the logarithm is finite and not positive.
        let seconds = -(1.0 - self.next_unit()).ln() / rate;
        Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
    }
}

/// [`SeededRng`]'s sequence, drawn through `&self` by many callers at once (one relaxed
/// `fetch_add` per draw): for layers that sample per call, such as fault injection and
/// client-side throttling. With calls one at a time, a seed replays exactly.
///
/// ```
/// use tower_bulwark_core::{SeededRng, SharedRng};
///
/// let shared = SharedRng::new(7);
/// let mut single = SeededRng::new(7);
/// assert_eq!(shared.next_unit(), single.next_unit());
/// ```
#[derive(Debug)]
pub struct SharedRng(AtomicU64);

impl SharedRng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SharedRng(AtomicU64::new(seed))
    }

    /// A uniform number in `0..1`.
    #[inline]
    pub fn next_unit(&self) -> f64 {
        unit(mix(self.0.fetch_add(GOLDEN, Relaxed).wrapping_add(GOLDEN)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_enough_and_seeded() {
        let mut rng = SeededRng::new(42);
        let xs: Vec<f64> = (0..10_000).map(|_| rng.next_unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((0.48..0.52).contains(&mean), "{mean}");
        let firsts: Vec<f64> = (0..10)
            .map(|seed| SeededRng::new(seed).next_unit())
            .collect();
        let spread = firsts.iter().cloned().fold(f64::MIN, f64::max)
            - firsts.iter().cloned().fold(f64::MAX, f64::min);
        assert!(
            spread > 0.5,
            "nearby seeds must not start alike: {firsts:?}"
        );
    }

    #[test]
    fn gaps_are_exponential_with_a_mean_of_one_over_the_rate() {
        let mut rng = SeededRng::new(15);
        let n = 100_000;
        let gaps: Vec<Duration> = (0..n).map(|_| rng.next_gap(400.0)).collect();
        let mean = gaps.iter().sum::<Duration>().as_secs_f64() / n as f64;
        assert!((mean - 0.0025).abs() < 0.0025 * 0.01, "mean gap {mean}");
        // About e^-1 of an exponential's values exceed its mean.
        let longer = gaps.iter().filter(|g| g.as_secs_f64() > 0.0025).count();
        let share = longer as f64 / n as f64;
        assert!((share - (-1f64).exp()).abs() < 0.01, "share {share}");
        let (mut a, mut b) = (SeededRng::new(3), SeededRng::new(3));
        assert_eq!(a.next_gap(10.0), b.next_gap(10.0));
        for rate in [0.0, -1.0, f64::NAN] {
            assert_eq!(SeededRng::new(1).next_gap(rate), Duration::MAX, "{rate}");
        }
    }
}
