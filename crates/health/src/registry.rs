//! [`Health`]: what the process and its dependencies report, read cheaply.

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project::pin_project;
use tokio::time::MissedTickBehavior;
use tower_bulwark_core::config::non_zero_duration;
use tower_bulwark_core::ConfigError;

use crate::kind::Kind;
use crate::DrainHandle;

/// A component's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Working.
    Up,
    /// Working with less (a half-open breaker, a bulkhead with a queue, shedding).
    Degraded,
    /// Not working (an open breaker, a failing check).
    Down,
}

impl Status {
    /// `"up"`, `"degraded"` or `"down"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Up => "up",
            Status::Degraded => "degraded",
            Status::Down => "down",
        }
    }
}

/// One component's report: a status and a short detail for the JSON view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The state.
    pub status: Status,
    /// What a person reading the dashboard should know (`"circuit open"`, `"3 queued"`).
    pub detail: String,
}

impl Report {
    /// A report with a detail.
    pub fn new(status: Status, detail: impl Into<String>) -> Self {
        Report {
            status,
            detail: detail.into(),
        }
    }
}

type Probe = Box<dyn Fn() -> Report + Send + Sync>;

pub(crate) struct Component {
    pub(crate) name: String,
    /// Whether readiness depends on it.
    pub(crate) required: bool,
    probe: Probe,
    /// What it is, for views that show more than its report.
    #[cfg_attr(not(feature = "dashboard"), allow(dead_code))]
    pub(crate) kind: Kind,
}

impl Component {
    /// The probe's report; a panicking probe is down, so one bad probe cannot take the
    /// whole health endpoint with it.
    pub(crate) fn report(&self) -> Report {
        catch_unwind(AssertUnwindSafe(|| (self.probe)()))
            .unwrap_or_else(|_| Report::new(Status::Down, "probe panicked"))
    }
}

/// A registry of the components whose health the process reports, behind
/// [`HealthService`](crate::HealthService).
///
/// Components report through *probes*: cheap functions that read state already kept in
/// memory (a breaker's state, a bulkhead's queue), so serving `/health/ready` never calls a
/// dependency and cannot amplify load on one. A check that must do I/O is registered with
/// [`Health::add_check`]: it runs in the background every interval, with a timeout, and the
/// probe reads its cached result.
///
/// - Live: always, while the process can answer (dependencies never make it fail).
/// - Ready: not draining, and no *required* component `Down`.
///
/// ```
/// use tower_bulwark_health::{Health, Report, Status};
///
/// let health = Health::new();
/// health.add_probe("config", true, || Report::new(Status::Up, "loaded"));
/// assert!(health.is_ready());
/// health.add_probe("cache", false, || Report::new(Status::Down, "unreachable"));
/// assert!(health.is_ready(), "an optional component does not block readiness");
/// ```
#[derive(Clone, Default)]
pub struct Health {
    components: Arc<Mutex<Vec<Arc<Component>>>>,
    drain: Arc<Mutex<Option<DrainHandle>>>,
}

impl Health {
    /// An empty registry.
    pub fn new() -> Self {
        Health::default()
    }

    /// Adds a component reported by `probe`, a cheap function (it runs on every health
    /// request); `required` components being `Down` makes the process not ready. A probe
    /// that panics reports `Down` with the detail `"probe panicked"`: the health request
    /// still answers.
    pub fn add_probe(
        &self,
        name: impl Into<String>,
        required: bool,
        probe: impl Fn() -> Report + Send + Sync + 'static,
    ) {
        self.add(name.into(), required, Kind::Check, probe);
    }

    /// Adds a component of a known kind.
    pub(crate) fn add(
        &self,
        name: String,
        required: bool,
        kind: Kind,
        probe: impl Fn() -> Report + Send + Sync + 'static,
    ) {
        self.lock().push(Arc::new(Component {
            name,
            required,
            probe: Box::new(probe),
            kind,
        }));
    }

    /// The components, in the order they were added (a component is never removed, so its
    /// index names it for good).
    #[cfg_attr(not(feature = "dashboard"), allow(dead_code))]
    pub(crate) fn components(&self) -> Vec<Arc<Component>> {
        self.lock().clone()
    }

    /// The drain readiness follows, if any.
    #[cfg_attr(not(feature = "dashboard"), allow(dead_code))]
    pub(crate) fn drain(&self) -> Option<DrainHandle> {
        self.drain
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Adds a check that does I/O: `check` runs every `interval` in a background task
    /// (spawned here, on the current tokio runtime) and health requests read its last
    /// result, so they never wait for it or multiply it. Until its first result, the
    /// component is `Down` with the detail `"not checked yet"`.
    ///
    /// A run that takes longer than `timeout` is dropped and the component is `Down` with
    /// the detail `"check timed out after …"`: a hung dependency must not keep its last
    /// `Up`; a run that panics is `Down` with the detail `"check panicked"`, and the runs
    /// go on. A run that overruns its interval delays the next ones; missed runs are not
    /// made up in a burst. Zero `interval` or `timeout` is a [`ConfigError`] naming it, and
    /// so is a call outside a tokio runtime (field `runtime`), which has nowhere to run
    /// the check.
    pub fn add_check<F, Fut>(
        &self,
        name: impl Into<String>,
        required: bool,
        interval: Duration,
        timeout: Duration,
        check: F,
    ) -> Result<(), ConfigError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Report> + Send + 'static,
    {
        non_zero_duration("interval", interval)?;
        non_zero_duration("timeout", timeout)?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ConfigError::new("runtime", "add_check needs a tokio runtime"))?;
        let last = Arc::new(Mutex::new(Report::new(Status::Down, "not checked yet")));
        let cached = last.clone();
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let report = tokio::time::timeout(timeout, Run(async { check().await }))
                    .await
                    .unwrap_or_else(|_| {
                        Report::new(Status::Down, format!("check timed out after {timeout:?}"))
                    });
                *cached.lock().unwrap_or_else(PoisonError::into_inner) = report;
                if Arc::strong_count(&cached) == 1 {
                    return; // The registry is gone.
                }
            }
        });
        self.add_probe(name, required, move || {
            last.lock().unwrap_or_else(PoisonError::into_inner).clone()
        });
        Ok(())
    }

    /// Makes readiness follow a drain: not ready once it starts.
    pub fn watch_drain(&self, drain: DrainHandle) {
        *self.drain.lock().unwrap_or_else(PoisonError::into_inner) = Some(drain);
    }

    /// Whether a drain has started.
    pub fn is_draining(&self) -> bool {
        self.drain
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(DrainHandle::is_draining)
    }

    /// Every component's report, in the order they were added.
    pub fn reports(&self) -> Vec<(String, bool, Report)> {
        let components = self.lock().clone();
        components
            .iter()
            .map(|c| (c.name.clone(), c.required, c.report()))
            .collect()
    }

    /// Ready: not draining and no required component down.
    pub fn is_ready(&self) -> bool {
        !self.is_draining()
            && self
                .reports()
                .iter()
                .all(|(_, required, report)| !required || report.status != Status::Down)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Component>>> {
        self.components
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// One run of a check. A panic in it (an `unwrap` on a failed connection) is a `Down`
/// report: unwinding out of the background task would end it and keep the last report,
/// perhaps `Up`, forever.
#[pin_project]
struct Run<F>(#[pin] F);

impl<F: Future<Output = Report>> Future for Run<F> {
    type Output = Report;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Report> {
        let run = self.project().0;
        // Unwind safe enough: a run that panicked is dropped, never polled again.
        catch_unwind(AssertUnwindSafe(|| run.poll(cx)))
            .unwrap_or_else(|_| Poll::Ready(Report::new(Status::Down, "check panicked")))
    }
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.lock().iter().map(|c| c.name.clone()).collect();
        f.debug_struct("Health")
            .field("components", &names)
            .finish()
    }
}
