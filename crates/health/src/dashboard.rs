//! [`Dashboard`]: the operator dashboard (feature `dashboard`), a live page served by the
//! health service for the person on call.
//!
//! It shows every component of a [`Health`] registry (breakers, keyed breakers, bulkheads,
//! shedding layers, retry budgets, degradation switches, checks) with its own numbers and a
//! sparkline of the last five minutes, the drain, and the most recent transitions with
//! their reasons. The page is one self-contained HTML file compiled into the crate (no CDN,
//! no external fetch, no cookies); it polls the state document once per sampling interval,
//! so it holds no connection open (an open stream would hold a graceful drain).
//!
//! Routes, under the health service's mount point (`/health` below):
//!
//! | route | answer |
//! |---|---|
//! | `GET …/ui` (or `…/ui/`) | the page, `text/html; charset=utf-8` |
//! | `GET …/ui/state` | the state document, `application/json` |
//! | `POST …/ui/action?component=<name>&action=<action>` | an operator action |
//!
//! Every answer is `Cache-Control: no-store` and `X-Content-Type-Options: nosniff`; the page
//! carries a `Content-Security-Policy` that allows only itself. Nothing a request carries
//! is echoed into an answer or the state document: names shown are the ones registered
//! (a keyed breaker's keys are what its key function took from earlier requests, shown as
//! text). The state document names every component: serve the health service where only
//! operators reach it. The state document's shape is stable (fields may be added, never renamed or removed)
//! and is described field by field in the repository's `docs/dashboard.md`.
//!
//! # Operator actions
//!
//! Off unless [`DashboardBuilder::actions`] gives a predicate that authorizes each request
//! from its head (a token, a client certificate's identity: a credential, never the peer
//! address alone, which DNS rebinding gets around). An action is
//! a `POST` with no body; `component` and `action` (and `key`, for one breaker of a keyed
//! breaker) come from the query string, percent-decoded:
//!
//! | kind | actions |
//! |---|---|
//! | `breaker`, `keyed_breaker` (with `&key=`) | `force_open`, `force_closed`, `disable`, `metrics_only`, `resume`, `reset` |
//! | `switch` | `force_on`, `force_off`, `automatic` |
//! | the drain (component `drain`) | `start` |
//!
//! `204` done; `400` unknown action, missing parameter or a value that is not UTF-8; `404`
//! no such component or key; `409` a name more than one component has; `403` actions not enabled, the predicate refused, or the
//! request failed the cross-site checks; `405` not a `POST`. Refusals are
//! `application/problem+json`. Against cross-site request forgery a request must carry
//! `X-Bulwark-Action: 1` (a form cannot set a header, and a cross-site `fetch` that sets one
//! needs a CORS preflight that is never approved), and when the browser sends them,
//! `Sec-Fetch-Site` must be `same-origin` or `none` and `Origin` must name the `Host`.
//! Every action is logged at `WARN` through `tracing` and shown among the events.
//!
//! The predicate also judges each `GET …/ui/state`: the document's `actions` says whether
//! that reader may act, and the page shows buttons only then. When actions are enabled but
//! the reader is not approved, the page offers a field for an operator token, keeps it in
//! the tab's `sessionStorage` and sends it as `Authorization: Bearer <token>`.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use axum::Router;
//! use tower_bulwark_health::{Dashboard, Health, Report, Status};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let health = Health::new();
//! health.add_probe("config", true, || Report::new(Status::Up, "loaded"));
//! // health.add_breaker(..), add_bulkhead(..), add_shed(..), add_budget(..), ...
//! let dashboard = Dashboard::builder(&health)
//!     .title("checkout")
//!     .interval(Duration::from_secs(1))
//!     // Operator actions only for requests carrying the operators' token.
//!     .actions(|request: &http::request::Parts| {
//!         request.headers.get("authorization").is_some_and(|v| v == "Bearer ops-token")
//!     })
//!     .build()
//!     .expect("valid dashboard settings");
//! let app: Router = Router::new().nest_service("/health", health.service().dashboard(dashboard.clone()));
//! // The page: GET /health/ui
//! assert!(dashboard.state_json().starts_with(r#"{"version":1,"title":"checkout""#));
//! # drop(app);
//! # }
//! ```

use std::fmt;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::Poll;
use std::time::Duration;

use http::request::Parts;
use tokio::sync::oneshot;
use tokio::time::{Instant, MissedTickBehavior};
use tower_bulwark_core::ConfigError;

use crate::Health;

mod action;
mod query;
mod reading;
mod routes;
mod samples;
mod state;

pub(crate) use self::routes::Route;
use self::samples::Samples;

/// The page, compiled into the crate.
const PAGE: &str = include_str!("dashboard/page.html");

/// Decides whether a request may take an operator action, from its head.
type Authorize = dyn Fn(&Parts) -> bool + Send + Sync;

/// The operator dashboard over a [`Health`] registry: samples its components in the
/// background and answers the page, the state document and operator actions when given to
/// [`HealthService::dashboard`](crate::HealthService::dashboard). See the
/// [module docs](crate::dashboard) for the routes and actions.
///
/// Cheap to clone; clones share the samples. The sampler (a task spawned by
/// [`DashboardBuilder::build`]) ends when the last clone is dropped.
#[derive(Clone)]
pub struct Dashboard {
    shared: Arc<Shared>,
}

struct Shared {
    health: Health,
    title: String,
    interval: Duration,
    top_keys: usize,
    authorize: Option<Arc<Authorize>>,
    started: Instant,
    samples: Mutex<Samples>,
    /// Dropped with the last dashboard: ends the sampler at once.
    _stop: oneshot::Sender<()>,
}

/// Settings of a [`Dashboard`]; from [`Dashboard::builder`].
pub struct DashboardBuilder {
    health: Health,
    title: String,
    interval: Duration,
    history: usize,
    top_keys: usize,
    authorize: Option<Arc<Authorize>>,
}

impl Dashboard {
    /// Settings for a dashboard over `health`: title `"bulwark"`, one sample per second,
    /// 300 points per series (five minutes), the 10 most notable keys of a keyed breaker,
    /// no operator actions.
    pub fn builder(health: &Health) -> DashboardBuilder {
        DashboardBuilder {
            health: health.clone(),
            title: "bulwark".to_string(),
            interval: Duration::from_secs(1),
            history: 300,
            top_keys: 10,
            authorize: None,
        }
    }

    /// The state document the page polls (`…/ui/state`), as JSON: every component in
    /// registration order with its own numbers and series, the drain, and the most recent
    /// events, newest first. Components registered since the last sample are listed, with
    /// no points yet.
    ///
    /// `actions` is `false` here: whether a reader may take actions depends on its request,
    /// which `…/ui/state` passes to the predicate.
    pub fn state_json(&self) -> String {
        self.shared.state(false).to_json()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Samples> {
        self.samples.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn actions_enabled(&self) -> bool {
        self.authorize.is_some()
    }

    /// Whether the predicate approves `request`. A panicking predicate refuses: it must
    /// not take the connection with it.
    fn authorized(&self, request: &Parts) -> bool {
        self.authorize.as_ref().is_some_and(|authorize| {
            catch_unwind(AssertUnwindSafe(|| authorize(request))).unwrap_or(false)
        })
    }
}

impl DashboardBuilder {
    /// The page's title (default `"bulwark"`), shown as given (escaped).
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// How often components are sampled and the page polls: 1 ms to 1 hour, default 1 s.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Points kept per series, one per interval: 1 to 3600, default 300 (five minutes at
    /// one per second).
    pub fn history(mut self, points: usize) -> Self {
        self.history = points;
        self
    }

    /// How many breakers of a keyed breaker are shown (those not closed first, then the
    /// busiest): 1 to 100, default 10.
    pub fn top_keys(mut self, keys: usize) -> Self {
        self.top_keys = keys;
        self
    }

    /// Enables operator actions for the requests `authorize` approves. It sees the request
    /// head only (method, URI, headers, extensions such as a TLS layer's client identity);
    /// a panic in it refuses the request. The cross-site checks apply on top of it.
    pub fn actions(mut self, authorize: impl Fn(&Parts) -> bool + Send + Sync + 'static) -> Self {
        self.authorize = Some(Arc::new(authorize));
        self
    }

    /// Checks the settings and starts sampling, on the current tokio runtime: an interval
    /// outside 1 ms..=1 h, a history outside 1..=3600 or `top_keys` outside 1..=100 is a
    /// [`ConfigError`] naming it, and so is a call outside a tokio runtime (field
    /// `runtime`). The first sample is taken here.
    pub fn build(self) -> Result<Dashboard, ConfigError> {
        if !(Duration::from_millis(1)..=Duration::from_secs(3600)).contains(&self.interval) {
            return Err(ConfigError::new(
                "interval",
                format!("must be within 1ms..=1h, got {:?}", self.interval),
            ));
        }
        if !(1..=3600).contains(&self.history) {
            return Err(ConfigError::new(
                "history",
                format!("must be within 1..=3600 points, got {}", self.history),
            ));
        }
        if !(1..=100).contains(&self.top_keys) {
            return Err(ConfigError::new(
                "top_keys",
                format!("must be within 1..=100, got {}", self.top_keys),
            ));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ConfigError::new("runtime", "a dashboard samples on a tokio runtime"))?;
        let (stop, stopped) = oneshot::channel();
        let shared = Arc::new(Shared {
            health: self.health,
            title: self.title,
            interval: self.interval,
            top_keys: self.top_keys,
            authorize: self.authorize,
            started: Instant::now(),
            samples: Mutex::new(Samples::new(self.history)),
            _stop: stop,
        });
        shared.sample();
        let ticks = tokio::time::interval_at(shared.started + self.interval, self.interval);
        runtime.spawn(sampler(Arc::downgrade(&shared), ticks, stopped));
        Ok(Dashboard { shared })
    }
}

/// Samples at every tick until the dashboard is gone. The ticks are set when the
/// dashboard is built, not when the task first runs.
async fn sampler(
    dashboard: Weak<Shared>,
    mut ticks: tokio::time::Interval,
    mut stopped: oneshot::Receiver<()>,
) {
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let tick = poll_fn(|cx| {
            if Pin::new(&mut stopped).poll(cx).is_ready() {
                return Poll::Ready(false);
            }
            ticks.poll_tick(cx).map(|_| true)
        });
        if !tick.await {
            return;
        }
        let Some(shared) = dashboard.upgrade() else {
            return;
        };
        shared.sample();
    }
}

impl fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.shared;
        f.debug_struct("Dashboard")
            .field("title", &shared.title)
            .field("interval", &shared.interval)
            .field("history", &shared.lock().capacity())
            .field("top_keys", &shared.top_keys)
            .field("actions", &shared.actions_enabled())
            .finish()
    }
}

impl fmt::Debug for DashboardBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DashboardBuilder")
            .field("title", &self.title)
            .field("interval", &self.interval)
            .field("history", &self.history)
            .field("top_keys", &self.top_keys)
            .field("actions", &self.authorize.is_some())
            .finish()
    }
}
