//! The detector's builder and its checked settings.

use std::time::Duration;

use tower_bulwark_core::config::{non_negative, non_zero, non_zero_duration, ratio};
use tower_bulwark_core::{ConfigError, Listener, Listeners, Name};

use crate::detector::OutlierDetector;
use crate::events::OutlierEvent;

/// The success-rate rule (Envoy's `success_rate_*`): once an interval, the endpoints with at
/// least `request_volume` calls in it are compared; when there are at least
/// `minimum_hosts` of them, each whose success rate is below
/// `mean - stdev_factor x stdev` (population standard deviation over those endpoints) is
/// ejected, worst first, within the cap.
///
/// Defaults as Envoy's: 5 hosts, 100 requests, factor 1.9.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SuccessRate {
    pub(crate) minimum_hosts: usize,
    pub(crate) request_volume: u64,
    pub(crate) stdev_factor: f64,
}

impl Default for SuccessRate {
    fn default() -> Self {
        SuccessRate {
            minimum_hosts: 5,
            request_volume: 100,
            stdev_factor: 1.9,
        }
    }
}

impl SuccessRate {
    /// Envoy's defaults: 5 hosts with 100 calls each, factor 1.9.
    pub fn new() -> Self {
        SuccessRate::default()
    }

    /// How many endpoints must have enough calls in the interval for the rule to run.
    pub fn minimum_hosts(mut self, hosts: usize) -> Self {
        self.minimum_hosts = hosts;
        self
    }

    /// How many calls (successes and failures; ignored results do not count) an endpoint
    /// needs in the interval to be compared.
    pub fn request_volume(mut self, calls: u64) -> Self {
        self.request_volume = calls;
        self
    }

    /// How many standard deviations below the mean an endpoint's rate must be.
    pub fn stdev_factor(mut self, factor: f64) -> Self {
        self.stdev_factor = factor;
        self
    }

    fn check(self) -> Result<Self, ConfigError> {
        non_zero("success_rate_minimum_hosts", self.minimum_hosts)?;
        non_zero("success_rate_request_volume", self.request_volume)?;
        non_negative("success_rate_stdev_factor", self.stdev_factor)?;
        Ok(self)
    }
}

/// The failure-percentage rule (Envoy's `failure_percentage_*`): once an interval, when at
/// least `minimum_hosts` endpoints have `request_volume` calls or more in it, each of them
/// whose share of failures is `threshold` or more is ejected, within the cap.
///
/// Defaults as Envoy's: threshold 0.85 (85%), 5 hosts, 50 requests. Off unless set with
/// [`Builder::failure_percentage`] (Envoy's enforcement of it is 0% by default too).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailurePercentage {
    pub(crate) threshold: f64,
    pub(crate) minimum_hosts: usize,
    pub(crate) request_volume: u64,
}

impl Default for FailurePercentage {
    fn default() -> Self {
        FailurePercentage {
            threshold: 0.85,
            minimum_hosts: 5,
            request_volume: 50,
        }
    }
}

impl FailurePercentage {
    /// Envoy's defaults: 85% failures, 5 hosts with 50 calls each.
    pub fn new() -> Self {
        FailurePercentage::default()
    }

    /// The share of failures (within `0..=1`) at or above which an endpoint is ejected.
    pub fn threshold(mut self, share: f64) -> Self {
        self.threshold = share;
        self
    }

    /// How many endpoints must have enough calls in the interval for the rule to run.
    pub fn minimum_hosts(mut self, hosts: usize) -> Self {
        self.minimum_hosts = hosts;
        self
    }

    /// How many calls an endpoint needs in the interval to be judged.
    pub fn request_volume(mut self, calls: u64) -> Self {
        self.request_volume = calls;
        self
    }

    fn check(self) -> Result<Self, ConfigError> {
        ratio("failure_percentage_threshold", self.threshold)?;
        non_zero("failure_percentage_minimum_hosts", self.minimum_hosts)?;
        non_zero("failure_percentage_request_volume", self.request_volume)?;
        Ok(self)
    }
}

/// The slow-endpoint rule: once an interval, the endpoints with at least `request_volume`
/// timed calls in it (successes and timeouts, see below) are compared by their mean latency; when there are at least
/// `minimum_hosts` of them, each whose mean is more than `factor x` the **median** of
/// their means, and more than `minimum_excess` above that median, is ejected, slowest
/// first, within the cap.
///
/// Envoy's outlier detection has no latency rule; this one is ours, and it is built to act
/// on large gaps only. Smaller differences between endpoints are the balancer's job:
/// latency-aware balancing (Finagle's and linkerd's peak-EWMA power of two choices,
/// tower's `PeakEwma` load for `p2c`) sends a slower endpoint less, in proportion, and keeps
/// its capacity; an ejection takes it all away for at least `base_ejection_time`. So:
///
/// - **The median**, not the mean, is the reference: one endpoint ten times slower moves a
///   mean of five by a factor of almost three, and would hide itself; the median does not
///   move until half the endpoints are slow (and then no one endpoint is an outlier).
/// - **`factor` 5**: an endpoint five times slower than the typical one is not a variance
///   a balancer should smooth but a broken host (a failing disk, a throttled container, a
///   degraded link); 2 or 3 would eject healthy hosts with a heavier share of expensive
///   requests.
/// - **`minimum_excess` 50 ms**: a ratio alone ejects noise on fast services (1 ms against
///   0.1 ms is 10x and harmless). And the rule reads a mean, which counts stalls: one 2.5 s
///   pause among 50 calls of 2 ms adds 50 ms to the mean. 50 ms keeps one such stall per
///   interval from ejecting an endpoint, while an endpoint slow throughout the interval,
///   by tens of milliseconds or more, goes. Lower it for fast services that must stay fast
///   (an endpoint at 20 ms among peers at 2 ms is 10x slower, but only 18 ms so: it goes
///   with `minimum_excess` below that, 10 ms say).
/// - **`minimum_hosts` 3**: a median of two is their mean; three is the fewest for which
///   the median ignores the one slow endpoint.
/// - **`request_volume` 50**: a mean over fewer calls is mostly chance (the failure
///   percentage rule's volume, Envoy's default there). Under `p2c` with a load metric a
///   slow endpoint gets fewer calls than its peers; it is only judged in intervals where it
///   still gets this many.
///
/// What counts ("timed calls"): every call the classifier calls a success, and the
/// failures that are timeouts, from `call` to the end of its response future. A timeout
/// is an attempt timeout under the layer (an error carrying a core `Rejection` of kind
/// `TimedOut`: a failure that took the whole timeout, the strongest sign of a slow
/// endpoint) and, with the HTTP readings ([`OutlierLayer::http`](crate::OutlierLayer::http),
/// or [`GatewayTimeouts`](crate::GatewayTimeouts) set with
/// [`OutlierLayer::timeouts`](crate::OutlierLayer::timeouts)), a 504 or gRPC
/// `DEADLINE_EXCEEDED` answer; see [`Timeouts`](crate::Timeouts). Other failures are not
/// timed: a refused connection or a reset answered in 0.1 ms says nothing about speed,
/// and timed it would be a fast answer: three such endpoints among five would make the
/// median 0.1 ms, and a healthy endpoint at 60 ms would be ejected as slow. (The failure
/// rules are for failing endpoints; an endpoint failing every call slowly, not by timing
/// out, is theirs too.) Results the classifier ignores (a refusal by a layer below, the
/// caller's deadline) and calls dropped before they finish do not count, nor do calls that
/// started before the endpoint's return from an ejection (in flight through it, they
/// measured what the ejection acted on). So the rule sees only the slow calls that finish:
/// a hedge above the balancer that wins drops the slow attempt, and a caller's deadline
/// shorter than the attempt timeout ends it as ignored; an endpoint whose slow calls all
/// end that way is measured by its fast ones only. Off unless set with
/// [`Builder::slow_endpoint`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowEndpoint {
    pub(crate) minimum_hosts: usize,
    pub(crate) request_volume: u64,
    pub(crate) factor: f64,
    pub(crate) minimum_excess: Duration,
}

impl Default for SlowEndpoint {
    fn default() -> Self {
        SlowEndpoint {
            minimum_hosts: 3,
            request_volume: 50,
            factor: 5.0,
            minimum_excess: Duration::from_millis(50),
        }
    }
}

impl SlowEndpoint {
    /// The defaults: 3 hosts with 50 timed calls each; slower than 5x the median and
    /// by more than 50 ms.
    pub fn new() -> Self {
        SlowEndpoint::default()
    }

    /// How many endpoints must have enough calls in the interval for the rule to run (at
    /// least 1; below 3 the median is not robust to the slow endpoint itself).
    pub fn minimum_hosts(mut self, hosts: usize) -> Self {
        self.minimum_hosts = hosts;
        self
    }

    /// How many timed calls (successes and timeouts; other failures and ignored results do
    /// not count) an endpoint needs in the interval to be compared.
    pub fn request_volume(mut self, calls: u64) -> Self {
        self.request_volume = calls;
        self
    }

    /// How many times the median an endpoint's mean latency must exceed (finite, more than
    /// 1).
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// By how much an endpoint's mean must exceed the median, whatever the factor
    /// (zero: the factor alone).
    pub fn minimum_excess(mut self, excess: Duration) -> Self {
        self.minimum_excess = excess;
        self
    }

    fn check(self) -> Result<Self, ConfigError> {
        non_zero("slow_endpoint_minimum_hosts", self.minimum_hosts)?;
        non_zero("slow_endpoint_request_volume", self.request_volume)?;
        if !(self.factor.is_finite() && self.factor > 1.0) {
            return Err(ConfigError::new(
                "slow_endpoint_factor",
                format!(
                    "must be a finite number greater than 1, got {}",
                    self.factor
                ),
            ));
        }
        Ok(self)
    }
}

/// The checked settings a detector runs with.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) consecutive_gateway_failures: Option<u32>,
    pub(crate) interval: Duration,
    pub(crate) base_ejection_time: Duration,
    pub(crate) max_ejection_time: Duration,
    pub(crate) max_ejection_percent: u32,
    pub(crate) success_rate: Option<SuccessRate>,
    pub(crate) failure_percentage: Option<FailurePercentage>,
    pub(crate) slow_endpoint: Option<SlowEndpoint>,
}

impl Config {
    /// The most endpoints that may be ejected at once out of `endpoints`:
    /// `floor(endpoints x max_ejection_percent / 100)`, but at least one when the percent is
    /// not zero and there are two endpoints or more (as Envoy: a small set can still lose
    /// its one bad endpoint). One endpoint alone is never ejected unless the percent is 100.
    pub(crate) fn max_ejected(&self, endpoints: usize) -> usize {
        let share = endpoints.saturating_mul(self.max_ejection_percent as usize) / 100;
        if self.max_ejection_percent > 0 && endpoints >= 2 {
            share.max(1)
        } else {
            share
        }
    }

    /// `base_ejection_time x times`, at most `max_ejection_time`.
    pub(crate) fn ejection_time(&self, times: u32) -> Duration {
        self.base_ejection_time
            .checked_mul(times.max(1))
            .map_or(self.max_ejection_time, |time| {
                time.min(self.max_ejection_time)
            })
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            consecutive_failures: Some(5),
            consecutive_gateway_failures: None,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            success_rate: Some(SuccessRate::default()),
            failure_percentage: None,
            slow_endpoint: None,
        }
    }
}

/// Builds an [`OutlierDetector`]; from [`OutlierDetector::builder`].
///
/// Defaults (Envoy's): eject after 5 consecutive failures; consecutive gateway failures
/// off; success-rate rule every 10 s (5 hosts, 100 calls, factor 1.9); failure-percentage
/// rule off; slow-endpoint rule off; ejection `30 s x times ejected`, at most 300 s; at
/// most 10% of the endpoints ejected (at least one, see
/// [`max_ejection_percent`](Builder::max_ejection_percent)).
#[derive(Debug)]
pub struct Builder {
    name: Name,
    config: Config,
    listeners: Listeners<OutlierEvent>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            name: Name::new_static("outlier"),
            config: Config::default(),
            listeners: Listeners::new(),
        }
    }
}

impl Builder {
    /// The detector's name, in events, logs and the `outlier` label of its metrics.
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.name = name.into();
        self
    }

    /// Failures in a row (as the endpoint layer's classifier calls them) that eject an
    /// endpoint at once; `0` turns the rule off. Default 5.
    pub fn consecutive_failures(mut self, failures: u32) -> Self {
        self.config.consecutive_failures = (failures > 0).then_some(failures);
        self
    }

    /// Gateway failures in a row (as the endpoint layer's gateway classifier calls them:
    /// [`GatewayErrors`](crate::GatewayErrors) counts 502, 503, 504 and transport errors)
    /// that eject an endpoint at once; `0` (the default) turns the rule off.
    pub fn consecutive_gateway_failures(mut self, failures: u32) -> Self {
        self.config.consecutive_gateway_failures = (failures > 0).then_some(failures);
        self
    }

    /// How often the success-rate, failure-percentage and slow-endpoint rules run, expired
    /// ejections are swept and the ejection counts of healthy endpoints decay. Default
    /// 10 s.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.config.interval = interval;
        self
    }

    /// The first ejection's length; the n-th lasts `n x` this, at most
    /// [`max_ejection_time`](Self::max_ejection_time). Default 30 s.
    pub fn base_ejection_time(mut self, time: Duration) -> Self {
        self.config.base_ejection_time = time;
        self
    }

    /// The longest ejection. Default 300 s; at least `base_ejection_time`.
    pub fn max_ejection_time(mut self, time: Duration) -> Self {
        self.config.max_ejection_time = time;
        self
    }

    /// The largest share of the registered endpoints ejected at once, in percent
    /// (`0..=100`). Default 10. The cap is `floor(endpoints x percent / 100)`, but at least
    /// one when the percent is not 0 and two endpoints or more are registered (Envoy's
    /// rule: with 5 endpoints and 10%, one may go). `0` ejects nothing, only reports.
    pub fn max_ejection_percent(mut self, percent: u32) -> Self {
        self.config.max_ejection_percent = percent;
        self
    }

    /// The success-rate rule's settings (on by default with Envoy's).
    pub fn success_rate(mut self, rule: SuccessRate) -> Self {
        self.config.success_rate = Some(rule);
        self
    }

    /// Turns the success-rate rule off.
    pub fn no_success_rate(mut self) -> Self {
        self.config.success_rate = None;
        self
    }

    /// Turns the failure-percentage rule on with these settings (off by default).
    pub fn failure_percentage(mut self, rule: FailurePercentage) -> Self {
        self.config.failure_percentage = Some(rule);
        self
    }

    /// Turns the failure-percentage rule off.
    pub fn no_failure_percentage(mut self) -> Self {
        self.config.failure_percentage = None;
        self
    }

    /// Turns the slow-endpoint rule on with these settings (off by default; see
    /// [`SlowEndpoint`] for what it compares and why its defaults are what they are).
    pub fn slow_endpoint(mut self, rule: SlowEndpoint) -> Self {
        self.config.slow_endpoint = Some(rule);
        self
    }

    /// Turns the slow-endpoint rule off.
    pub fn no_slow_endpoint(mut self) -> Self {
        self.config.slow_endpoint = None;
        self
    }

    /// Adds a listener for the detector's events (ejections, returns, ejections the cap
    /// prevented).
    pub fn on_event(mut self, listener: impl Listener<OutlierEvent> + 'static) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Records the events through the `metrics` facade (`bulwark_outlier_*`, see the
    /// crate docs).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(self) -> Self {
        self.on_event(tower_bulwark_core::metrics::MetricsListener)
    }

    /// Checks the settings and builds the detector.
    pub fn build(self) -> Result<OutlierDetector, ConfigError> {
        let config = self.config;
        non_zero_duration("interval", config.interval)?;
        non_zero_duration("base_ejection_time", config.base_ejection_time)?;
        non_zero_duration("max_ejection_time", config.max_ejection_time)?;
        if config.max_ejection_time < config.base_ejection_time {
            return Err(ConfigError::new(
                "max_ejection_time",
                format!(
                    "must be at least `base_ejection_time` ({:?}), got {:?}",
                    config.base_ejection_time, config.max_ejection_time
                ),
            ));
        }
        if config.max_ejection_percent > 100 {
            return Err(ConfigError::new(
                "max_ejection_percent",
                format!(
                    "must be within 0..=100, got {}",
                    config.max_ejection_percent
                ),
            ));
        }
        // Times in nanoseconds since the detector was built fit a u64 for 584 years; a
        // setting near that would overflow the arithmetic.
        let limit = Duration::from_secs(100 * 365 * 24 * 3600);
        for (field, value) in [
            ("interval", config.interval),
            ("max_ejection_time", config.max_ejection_time),
        ] {
            if value > limit {
                return Err(ConfigError::new(
                    field,
                    format!("must be at most 100 years, got {value:?}"),
                ));
            }
        }
        let config = Config {
            success_rate: config.success_rate.map(SuccessRate::check).transpose()?,
            failure_percentage: config
                .failure_percentage
                .map(FailurePercentage::check)
                .transpose()?,
            slow_endpoint: config.slow_endpoint.map(SlowEndpoint::check).transpose()?,
            ..config
        };
        Ok(OutlierDetector::new(self.name, config, self.listeners))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_a_floor_share_but_at_least_one_of_two_or_more() {
        let with = |percent| Config {
            max_ejection_percent: percent,
            ..Config::default()
        };
        assert_eq!(with(10).max_ejected(5), 1);
        assert_eq!(with(20).max_ejected(5), 1);
        assert_eq!(with(40).max_ejected(5), 2);
        assert_eq!(with(10).max_ejected(30), 3);
        assert_eq!(with(0).max_ejected(30), 0);
        assert_eq!(with(50).max_ejected(1), 0);
        assert_eq!(with(100).max_ejected(1), 1);
        assert_eq!(with(100).max_ejected(5), 5);
        assert_eq!(with(10).max_ejected(0), 0);
        assert_eq!(with(100).max_ejected(usize::MAX), usize::MAX / 100);
    }

    #[test]
    fn ejection_time_grows_linearly_and_is_capped() {
        let config = Config::default();
        assert_eq!(config.ejection_time(0), Duration::from_secs(30));
        assert_eq!(config.ejection_time(1), Duration::from_secs(30));
        assert_eq!(config.ejection_time(3), Duration::from_secs(90));
        assert_eq!(config.ejection_time(10), Duration::from_secs(300));
        assert_eq!(config.ejection_time(u32::MAX), Duration::from_secs(300));
    }
}
