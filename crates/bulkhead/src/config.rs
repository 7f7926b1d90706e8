//! The bulkhead's settings and their builder.

use std::time::Duration;

use tower_bulwark_core::config::non_zero;
use tower_bulwark_core::{ConfigError, Listener, Listeners, Name};

use crate::{BulkheadEvent, BulkheadLayer, TaskDeadline};

/// What `poll_ready` does when every permit is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Admission {
    /// `poll_ready` is ready; `call` waits in the bounded queue for at most `max_wait`, and
    /// is refused with [`BulkheadFull`](crate::BulkheadFull) when the queue is full or the
    /// wait runs out. For servers and clients that must not pile up work.
    #[default]
    Reject,
    /// `poll_ready` waits for a permit in the same FIFO order, like tower's
    /// `ConcurrencyLimit`, with no bound on the number waiting (`max_queue` does not apply).
    /// A wait lasts at most `max_wait` and never past the task's current deadline
    /// ([`Deadline::current`](tower_bulwark_core::Deadline::current): the request, and so
    /// the deadline source, is known only in `call`); when it runs out `poll_ready` is
    /// ready and `call` answers [`BulkheadFull`](crate::BulkheadFull), so the service stays
    /// usable (behind tower's `Buffer` too). For callers that want backpressure; a
    /// `max_wait` of `Duration::MAX` waits for as long as it takes.
    Backpressure,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) listeners: Listeners<BulkheadEvent>,
    pub(crate) name: Name,
    pub(crate) max_concurrent: usize,
    pub(crate) max_queue: usize,
    pub(crate) max_wait: Duration,
    pub(crate) admission: Admission,
}

/// Builds a [`BulkheadLayer`]; [`Builder::build`] checks every setting.
///
/// Defaults: 25 calls in flight, no queue (a call that finds no free permit is refused at
/// once), a wait of at most 1 s once a queue is set, reject admission, the task's current
/// deadline.
///
/// ```
/// use std::time::Duration;
/// use tower_bulwark_bulkhead::BulkheadLayer;
///
/// let layer = BulkheadLayer::builder()
///     .name("payments")
///     .max_concurrent(10)
///     .max_queue(20)
///     .max_wait(Duration::from_millis(200))
///     .build()
///     .expect("valid configuration");
/// # let _ = layer;
/// assert_eq!(
///     BulkheadLayer::builder().max_concurrent(0).build().unwrap_err().field(),
///     "max_concurrent"
/// );
/// ```
#[derive(Debug, Clone)]
pub struct Builder<D = TaskDeadline> {
    config: Config,
    deadline: D,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            config: Config {
                listeners: Listeners::new(),
                name: Name::new_static("bulkhead"),
                max_concurrent: 25,
                max_queue: 0,
                max_wait: Duration::from_secs(1),
                admission: Admission::Reject,
            },
            deadline: TaskDeadline,
        }
    }
}

/// Presets; each is a starting point whose every setting can still be changed.
impl Builder {
    /// Refuse at once when full: no queue. For servers shedding excess, where a waiting
    /// call only adds latency.
    pub fn fail_fast(max_concurrent: usize) -> Self {
        Builder::default()
            .max_concurrent(max_concurrent)
            .max_queue(0)
    }

    /// Absorb short bursts: a queue as long as the limit, waiting at most 100 ms. For
    /// clients of a dependency with steady latency.
    pub fn absorb_bursts(max_concurrent: usize) -> Self {
        Builder::default()
            .max_concurrent(max_concurrent)
            .max_queue(max_concurrent)
            .max_wait(Duration::from_millis(100))
    }
}

impl<D> Builder<D> {
    /// The name in rejections and the handle.
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Calls in flight at once, across every clone (default 25).
    pub fn max_concurrent(mut self, calls: usize) -> Self {
        self.config.max_concurrent = calls;
        self
    }

    /// Calls that may wait for a permit; 0 refuses at once (default 0).
    pub fn max_queue(mut self, calls: usize) -> Self {
        self.config.max_queue = calls;
        self
    }

    /// The longest a call waits in the queue, or in `poll_ready` with backpressure
    /// admission (default 1 s).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.config.max_wait = wait;
        self
    }

    /// Reject (default) or backpressure admission.
    pub fn admission(mut self, admission: Admission) -> Self {
        self.config.admission = admission;
        self
    }

    /// Adds a listener for the bulkhead's events (refusals, waits). Calls that find a free
    /// permit emit nothing.
    pub fn on_event(mut self, listener: impl Listener<BulkheadEvent> + 'static) -> Self {
        self.config.listeners.push(listener);
        self
    }

    /// Records events through the `metrics` facade (`bulwark_bulkhead_*`).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(self) -> Self {
        self.on_event(crate::events::BulkheadMetricsListener::new())
    }

    /// Where a request's deadline comes from (default [`TaskDeadline`]: the task's current
    /// deadline). With feature `http`, `HttpDeadline` also reads the one in an
    /// `http::Request`'s extensions; a closure `Fn(&Req) -> Option<Deadline>` works for any
    /// request type.
    ///
    /// ```
    /// # #[cfg(feature = "http")] {
    /// use tower_bulwark_bulkhead::{BulkheadLayer, HttpDeadline};
    ///
    /// let layer = BulkheadLayer::builder()
    ///     .max_queue(10)
    ///     .deadline_source(HttpDeadline)
    ///     .build()
    ///     .unwrap();
    /// # let _ = layer;
    /// # }
    /// ```
    pub fn deadline_source<D2>(self, deadline: D2) -> Builder<D2> {
        Builder {
            config: self.config,
            deadline,
        }
    }

    /// Checks the settings and builds the layer.
    pub fn build(self) -> Result<BulkheadLayer<D>, ConfigError> {
        let deadline = self.deadline;
        let config = Builder {
            config: self.config,
            deadline: (),
        }
        .into_config()?;
        Ok(BulkheadLayer::from_parts(config, deadline))
    }

    /// The checked settings.
    pub(crate) fn into_config(self) -> Result<Config, ConfigError> {
        non_zero("max_concurrent", self.config.max_concurrent)?;
        if self.config.max_wait.is_zero() {
            if self.config.admission == Admission::Backpressure {
                return Err(ConfigError::new(
                    "max_wait",
                    "must be longer than zero with backpressure admission (use reject admission to refuse at once)",
                ));
            }
            if self.config.max_queue > 0 {
                return Err(ConfigError::new(
                    "max_wait",
                    "must be longer than zero when a queue is set (use max_queue(0) to refuse at once)",
                ));
            }
        }
        Ok(self.config)
    }

    /// Whether no name was set.
    pub(crate) fn has_default_name(&self) -> bool {
        self.config.name == "bulkhead"
    }
}
