//! Named settings for the limit algorithms with many of them ([`MinRtt`], [`Aimd`],
//! [`Gradient2`]): each builder starts from the algorithm's defaults, which live here once.

use std::time::Duration;

use tower_bulwark_core::ConfigError;

use crate::{Aimd, Gradient2, MinRtt};

/// Settings of a [`MinRtt`], from [`MinRtt::builder`]. Defaults: initial 20 (moved within
/// the bounds given), min 1, max 1000, buffer 0.1, a probe every 200 windows.
///
/// ```
/// use tower_bulwark_shed::MinRtt;
///
/// let algorithm = MinRtt::builder().min(4).max(200).buffer(0.2).build().unwrap();
/// # drop(algorithm);
/// ```
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct MinRttBuilder {
    initial: Option<usize>,
    min: usize,
    max: usize,
    buffer: f64,
    probe_every: u32,
}

impl MinRtt {
    /// Settings by name, from the defaults.
    pub fn builder() -> MinRttBuilder {
        MinRttBuilder {
            initial: None,
            min: 1,
            max: 1000,
            buffer: 0.1,
            probe_every: 200,
        }
    }
}

impl MinRttBuilder {
    /// The limit to start from (default 20, within `min..=max`).
    pub fn initial(mut self, limit: usize) -> Self {
        self.initial = Some(limit);
        self
    }

    /// The lowest limit (at least 1).
    pub fn min(mut self, limit: usize) -> Self {
        self.min = limit;
        self
    }

    /// The highest limit.
    pub fn max(mut self, limit: usize) -> Self {
        self.max = limit;
        self
    }

    /// How far the mean latency may rise over the minimum (0.1: 10%), within `(0, 10]`.
    pub fn buffer(mut self, buffer: f64) -> Self {
        self.buffer = buffer;
        self
    }

    /// Windows between probes of the minimum latency (at least 1).
    pub fn probe_every(mut self, windows: u32) -> Self {
        self.probe_every = windows;
        self
    }

    /// Checks the settings (see [`MinRtt::new`]).
    pub fn build(self) -> Result<MinRtt, ConfigError> {
        let initial = self
            .initial
            .unwrap_or_else(|| 20.max(self.min).min(self.max));
        MinRtt::new(initial, self.min, self.max, self.buffer, self.probe_every)
    }
}

/// Settings of an [`Aimd`], from [`Aimd::builder`]. Defaults (Netflix `AIMDLimit`):
/// initial 20, min 20, max 200, backoff ratio 0.9, timeout 5 s.
///
/// ```
/// use std::time::Duration;
/// use tower_bulwark_shed::Aimd;
///
/// let algorithm = Aimd::builder().timeout(Duration::from_millis(40)).build().unwrap();
/// # drop(algorithm);
/// ```
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct AimdBuilder {
    initial: usize,
    min: usize,
    max: usize,
    backoff_ratio: f64,
    timeout: Duration,
}

impl Aimd {
    /// Settings by name, from the defaults.
    pub fn builder() -> AimdBuilder {
        AimdBuilder {
            initial: 20,
            min: 20,
            max: 200,
            backoff_ratio: 0.9,
            timeout: Duration::from_secs(5),
        }
    }
}

impl AimdBuilder {
    /// The limit to start from.
    pub fn initial(mut self, limit: usize) -> Self {
        self.initial = limit;
        self
    }

    /// The lowest limit (at least 1).
    pub fn min(mut self, limit: usize) -> Self {
        self.min = limit;
        self
    }

    /// The highest limit.
    pub fn max(mut self, limit: usize) -> Self {
        self.max = limit;
        self
    }

    /// What the limit is multiplied by on a drop or a slow call, within `0.5..1`.
    pub fn backoff_ratio(mut self, ratio: f64) -> Self {
        self.backoff_ratio = ratio;
        self
    }

    /// A call slower than this counts as a drop.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the settings (see [`Aimd::new`]).
    pub fn build(self) -> Result<Aimd, ConfigError> {
        Aimd::new(
            self.initial,
            self.min,
            self.max,
            self.backoff_ratio,
            self.timeout,
        )
    }
}

/// Settings of a [`Gradient2`], from [`Gradient2::builder`]. Defaults (Netflix
/// `Gradient2Limit`): initial 20, min 20, max 200, smoothing 0.2, queue size 4, RTT
/// tolerance 1.5, long window 600.
///
/// ```
/// use tower_bulwark_shed::Gradient2;
///
/// let algorithm = Gradient2::builder().max(500).queue_size(8).build().unwrap();
/// # drop(algorithm);
/// ```
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct Gradient2Builder {
    initial: usize,
    min: usize,
    max: usize,
    smoothing: f64,
    queue_size: usize,
    rtt_tolerance: f64,
    long_window: usize,
}

impl Gradient2 {
    /// Settings by name, from the defaults.
    pub fn builder() -> Gradient2Builder {
        Gradient2Builder {
            initial: 20,
            min: 20,
            max: 200,
            smoothing: 0.2,
            queue_size: 4,
            rtt_tolerance: 1.5,
            long_window: 600,
        }
    }
}

impl Gradient2Builder {
    /// The limit to start from.
    pub fn initial(mut self, limit: usize) -> Self {
        self.initial = limit;
        self
    }

    /// The lowest limit (at least 1).
    pub fn min(mut self, limit: usize) -> Self {
        self.min = limit;
        self
    }

    /// The highest limit.
    pub fn max(mut self, limit: usize) -> Self {
        self.max = limit;
        self
    }

    /// How far the limit moves towards its new value per sample, within `(0, 1]`.
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }

    /// Calls allowed to queue over the gradient's limit.
    pub fn queue_size(mut self, calls: usize) -> Self {
        self.queue_size = calls;
        self
    }

    /// How far the short latency may exceed the long one before the limit falls (at
    /// least 1).
    pub fn rtt_tolerance(mut self, tolerance: f64) -> Self {
        self.rtt_tolerance = tolerance;
        self
    }

    /// Samples in the long latency average (at least 10).
    pub fn long_window(mut self, samples: usize) -> Self {
        self.long_window = samples;
        self
    }

    /// Checks the settings (see [`Gradient2::new`]).
    pub fn build(self) -> Result<Gradient2, ConfigError> {
        Gradient2::new(
            self.initial,
            self.min,
            self.max,
            self.smoothing,
            self.queue_size,
            self.rtt_tolerance,
            self.long_window,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LimitAlgorithm;

    #[test]
    fn builders_start_from_the_defaults_and_check_what_they_are_given() {
        assert_eq!(
            MinRtt::builder().build().unwrap().initial(),
            MinRtt::default().initial()
        );
        assert_eq!(
            Aimd::builder().build().unwrap().initial(),
            Aimd::default().initial()
        );
        assert_eq!(
            Gradient2::builder().build().unwrap().initial(),
            Gradient2::default().initial()
        );
        // The default initial limit moves within the bounds given.
        assert_eq!(MinRtt::builder().min(50).build().unwrap().initial(), 50);
        assert_eq!(MinRtt::builder().max(8).build().unwrap().initial(), 8);
        assert_eq!(MinRtt::builder().initial(7).build().unwrap().initial(), 7);

        assert_eq!(
            Aimd::builder()
                .backoff_ratio(1.0)
                .build()
                .unwrap_err()
                .field(),
            "backoff_ratio"
        );
        assert_eq!(
            Gradient2::builder()
                .long_window(5)
                .build()
                .unwrap_err()
                .field(),
            "long_window"
        );
        assert_eq!(
            MinRtt::builder().buffer(0.0).build().unwrap_err().field(),
            "buffer"
        );
    }
}
