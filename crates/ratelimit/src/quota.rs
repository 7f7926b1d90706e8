//! [`Quota`]: how many requests a key may send, over what window.

use std::time::Duration;

use tower_bulwark_core::{ConfigError, Name};

/// A limit: `limit` requests per `window` for each key, at most `burst` of them at once
/// (GCRA: one permit comes back every `window / limit`). Named for the `RateLimit-Policy`
/// header (`"default";q=100;w=60`). The window is at most [`Quota::MAX_WINDOW`] (100
/// years), so every limiter can count it (governor counts time in `u64` nanoseconds:
/// 584 years, the process's uptime included).
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
    /// The longest window: 100 years of 365 days. A whole burst (`interval * burst`) is
    /// never longer than the window, so it bounds every time a limiter adds up.
    pub const MAX_WINDOW: Duration = Duration::from_secs(100 * 365 * 86_400);

    /// `limit` requests per `window`, all of them at once if need be (burst = limit).
    pub fn per_window(limit: u32, window: Duration) -> Result<Quota, ConfigError> {
        if limit == 0 {
            return Err(ConfigError::new("limit", "must be at least 1"));
        }
        if window.is_zero() {
            return Err(ConfigError::new("window", "must be longer than zero"));
        }
        if window > Quota::MAX_WINDOW {
            return Err(ConfigError::new(
                "window",
                format!("{window:?} is longer than the longest window, 100 years"),
            ));
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

    /// `percent` of this quota's rate, for the quotas of less important tiers: the same
    /// limit over a window `100 / percent` times as long (one permit every
    /// `interval * 100 / percent`, to the nanosecond), the burst scaled down (at least 1),
    /// the same name. Fails, naming `percent`, if the window would pass [`Quota::MAX_WINDOW`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bulwark_ratelimit::Quota;
    ///
    /// let quota = Quota::per_minute(100)?.burst(10)?;
    /// let quarter = quota.share(25)?;
    /// assert_eq!(quarter.interval(), quota.interval() * 4);
    /// assert_eq!(quarter.window(), Duration::from_secs(240));
    /// assert_eq!((quarter.limit(), quarter.burst_size()), (100, 2));
    /// // A quarter of one a minute is one every four minutes.
    /// assert_eq!(Quota::per_minute(1)?.share(25)?.interval(), Duration::from_secs(240));
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
        // Within `MAX_WINDOW * 100`: no overflow.
        let window = self.window * 100 / percent;
        if window > Quota::MAX_WINDOW {
            return Err(ConfigError::new(
                "percent",
                format!(
                    "{percent}% of a quota over {:?} is a window longer than 100 years",
                    self.window
                ),
            ));
        }
        let burst = u64::from(self.burst) * u64::from(percent) / 100;
        let burst = u32::try_from(burst).unwrap_or(self.burst).max(1);
        Ok(Quota::per_window(self.limit, window)?
            .burst(burst)?
            .name(self.name.clone()))
    }

    /// The policy's name in the `RateLimit-Policy` and `RateLimit` headers (default
    /// `default`): 1 to 64 printable ASCII characters, checked when a layer is built (a
    /// tier's quota may have 15 more, room for the `-sheddable-plus` that
    /// [`RateLimitLayer::local`](crate::RateLimitLayer::local) adds).
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
