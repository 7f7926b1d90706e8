//! [`Quota`]: how many requests a key may send, over what window.

use std::time::Duration;

use tower_bulwark_core::{ConfigError, Name};

/// A limit: `limit` requests per `window` for each key, at most `burst` of them at once
/// (GCRA: one permit comes back every `window / limit`). Named for the `RateLimit-Policy`
/// header (`"default";q=100;w=60`).
///
/// ```
/// use std::time::Duration;
/// use tower_bulwark_ratelimit::Quota;
///
/// let quota = Quota::per_window(100, Duration::from_secs(60))?.burst(20)?.name("api");
/// assert_eq!(quota.limit(), 100);
/// assert_eq!(quota.burst_size(), 20);
/// assert_eq!(quota.interval(), Duration::from_millis(600));
/// assert!(Quota::per_second(0).is_err());
/// # Ok::<(), tower_bulwark_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    name: Name,
    limit: u32,
    window: Duration,
    burst: u32,
}

impl Quota {
    /// `limit` requests per `window`, all of them at once if need be (burst = limit).
    pub fn per_window(limit: u32, window: Duration) -> Result<Quota, ConfigError> {
        if limit == 0 {
            return Err(ConfigError::new("limit", "must be at least 1"));
        }
        if window.is_zero() {
            return Err(ConfigError::new("window", "must be longer than zero"));
        }
        if (window / limit).is_zero() {
            return Err(ConfigError::new(
                "limit",
                format!("{limit} per {window:?} is more than one per nanosecond"),
            ));
        }
        Ok(Quota {
            name: Name::new_static("default"),
            limit,
            window,
            burst: limit,
        })
    }

    /// `limit` requests per second.
    pub fn per_second(limit: u32) -> Result<Quota, ConfigError> {
        Quota::per_window(limit, Duration::from_secs(1))
    }

    /// `limit` requests per minute.
    pub fn per_minute(limit: u32) -> Result<Quota, ConfigError> {
        Quota::per_window(limit, Duration::from_secs(60))
    }

    /// At most `burst` requests at once (default: the limit), between 1 and the limit.
    pub fn burst(mut self, burst: u32) -> Result<Quota, ConfigError> {
        if burst == 0 || burst > self.limit {
            return Err(ConfigError::new(
                "burst",
                format!("must be within 1..={}, got {burst}", self.limit),
            ));
        }
        self.burst = burst;
        Ok(self)
    }

    /// `percent` of this quota: its limit and burst scaled down (each at least 1), over
    /// the same window and with the same name. For the quotas of less important tiers.
    ///
    /// ```
    /// use tower_bulwark_ratelimit::Quota;
    ///
    /// let quota = Quota::per_minute(100)?.burst(10)?;
    /// let quarter = quota.share(25)?;
    /// assert_eq!((quarter.limit(), quarter.burst_size()), (25, 2));
    /// assert_eq!(quota.share(0).unwrap_err().field(), "percent");
    /// # Ok::<(), tower_bulwark_core::ConfigError>(())
    /// ```
    pub fn share(&self, percent: u32) -> Result<Quota, ConfigError> {
        if percent == 0 || percent > 100 {
            return Err(ConfigError::new(
                "percent",
                format!("must be within 1..=100, got {percent}"),
            ));
        }
        let scale = |n: u32| u32::try_from(u64::from(n) * u64::from(percent) / 100).unwrap_or(n);
        Ok(Quota::per_window(scale(self.limit).max(1), self.window)?
            .burst(scale(self.burst).max(1))?
            .name(self.name.clone()))
    }

    /// The policy's name in the `RateLimit-Policy` and `RateLimit` headers (default
    /// `default`): up to 64 printable ASCII characters, checked when a layer is built.
    pub fn name(mut self, name: impl Into<Name>) -> Quota {
        self.name = name.into();
        self
    }

    /// The policy's name.
    pub fn policy_name(&self) -> &Name {
        &self.name
    }

    /// Requests per window.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The most requests at once.
    pub fn burst_size(&self) -> u32 {
        self.burst
    }

    /// How often one permit comes back: `window / limit`.
    pub fn interval(&self) -> Duration {
        self.window / self.limit
    }
}
