//! [`RateLimitBuilder`]: the validated settings of a [`RateLimitLayer`], and what the
//! layer makes of a [`Verdict`].

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use tower_bulwark_core::grpc::{GRPC_MESSAGE, GRPC_STATUS};
use tower_bulwark_core::{
    is_grpc_request, ConfigError, Criticality, GrpcCode, Listener, Rejection, RejectionKind,
};

use crate::check::{Quotas, Verdict};
use crate::events::Reporter;
use crate::headers::{self, RATELIMIT, RATELIMIT_POLICY};
use crate::tiers::{criticality_of, tier_quota, DEFAULT_TIER_SHARES};
use crate::{Decision, Limiter, LocalLimiter, Quota, RateLimitEvent, RateLimitLayer};

/// What a request gets when the limiter cannot answer (a shared store down or slow).
///
/// Failing open is the default: a rate limit keeps one client from taking more than its
/// share, it does not keep the service up (the shed layer and bulkheads below it do), so
/// an outage of the limit's store should not become an outage of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnLimiterError {
    /// The request goes on, unlimited (and without rate limit headers).
    #[default]
    FailOpen,
    /// The request is refused: `503 Service Unavailable` (gRPC `UNAVAILABLE`) on a server,
    /// a `Throttled` rejection on a client.
    FailClosed,
}

pub(crate) type KeyFn<K> = dyn Fn(&Parts) -> Option<K> + Send + Sync;
type CriticalityFn = dyn Fn(&Parts) -> Criticality + Send + Sync;

/// Builds a [`RateLimitLayer`]: [`RateLimitLayer::builder`] for any limiter,
/// [`RateLimitLayer::local`] for a [`LocalLimiter`] with default tiers.
pub struct RateLimitBuilder<L, K> {
    quotas: Quotas<L>,
    key_of: Arc<KeyFn<K>>,
    criticality_of: Arc<CriticalityFn>,
    on_error: OnLimiterError,
    admitted_headers: bool,
    reporter: Reporter,
}

impl<L: Limiter<K>, K> RateLimitBuilder<L, K> {
    pub(crate) fn new(
        limiter: L,
        key_of: impl Fn(&Parts) -> Option<K> + Send + Sync + 'static,
    ) -> Self {
        RateLimitBuilder {
            quotas: Quotas::base(limiter),
            key_of: Arc::new(key_of),
            criticality_of: Arc::new(criticality_of),
            on_error: OnLimiterError::default(),
            admitted_headers: true,
            reporter: Reporter::new("ratelimit"),
        }
    }

    /// Requests of `tier`, and of every less important tier, must also pass `limiter`'s
    /// quota, asked before the base one (see the [`tiers`](crate::tiers) docs). Its
    /// quota's name must differ from the others'. Replaces the tier's limiter, if it had
    /// one.
    pub fn tier(mut self, tier: Criticality, limiter: L) -> Self {
        self.quotas.tiers[tier as usize] = Some(limiter);
        self
    }

    /// Removes `tier`'s own quota: its requests count against the base quota only.
    pub fn no_tier(mut self, tier: Criticality) -> Self {
        self.quotas.tiers[tier as usize] = None;
        self
    }

    /// How a request's tier is found (default [`criticality_of`]: the server's
    /// `Criticality` extension, else the header, which may only lower it). To believe a
    /// raised header from trusted peers, check them here.
    pub fn criticality(
        mut self,
        criticality_of: impl Fn(&Parts) -> Criticality + Send + Sync + 'static,
    ) -> Self {
        self.criticality_of = Arc::new(criticality_of);
        self
    }

    /// What a request gets when the limiter fails (default [`OnLimiterError::FailOpen`]).
    pub fn on_limiter_error(mut self, on_error: OnLimiterError) -> Self {
        self.on_error = on_error;
        self
    }

    /// Whether admitted responses carry `RateLimit-Policy` and `RateLimit` too (default
    /// `true`; refusals always do). Writing `RateLimit` allocates its value (and the
    /// response's header map, if empty): `false` keeps the admitted path allocation-free.
    pub fn admitted_headers(mut self, admitted_headers: bool) -> Self {
        self.admitted_headers = admitted_headers;
        self
    }

    /// The name in rejections, events and metric labels (default `ratelimit`).
    pub fn name(mut self, name: impl Into<tower_bulwark_core::Name>) -> Self {
        self.reporter.name = name.into();
        self
    }

    /// Adds a listener for the layer's events. Listeners run inline: keep them quick.
    pub fn on_event(mut self, listener: impl Listener<RateLimitEvent> + 'static) -> Self {
        self.reporter.listeners.push(listener);
        self
    }

    /// Records events through the `metrics` facade (`bulwark_ratelimit_requests_total`).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(self) -> Self {
        self.on_event(crate::events::RateLimitMetricsListener::new())
    }

    /// Checks the quotas' names: each 1 to 64 printable ASCII characters (they are written
    /// in the headers; a tier's may have 15 more, room for the `-sheddable-plus` that
    /// [`RateLimitLayer::local`] adds), and each tier's different from the base's and the
    /// other tiers' (a shared store would otherwise mix their states).
    pub fn build(self) -> Result<RateLimitLayer<L, K>, ConfigError> {
        let base = self.quotas.base.quota();
        headers::check_name(base, false)?;
        let tiers: Vec<&Quota> = self.quotas.tiers.iter().flatten().map(L::quota).collect();
        for (i, tier) in tiers.iter().enumerate() {
            headers::check_name(tier, true)?;
            let name = tier.policy_name();
            if name == base.policy_name() || tiers[..i].iter().any(|t| t.policy_name() == name) {
                return Err(ConfigError::new(
                    "tier",
                    format!("two quotas are named {name:?}: each tier's needs its own name"),
                ));
            }
        }
        let quotas = &self.quotas;
        let policies = Criticality::ALL
            .map(|tier| headers::policy(quotas.walk(tier).map(|step| quotas.at(step).quota())));
        Ok(RateLimitLayer {
            shared: Arc::new(Shared {
                quotas: self.quotas,
                policies,
                key_of: self.key_of,
                criticality_of: self.criticality_of,
                on_error: self.on_error,
                admitted_headers: self.admitted_headers,
                reporter: self.reporter,
            }),
        })
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> RateLimitBuilder<LocalLimiter<K>, K> {
    /// A builder over [`LocalLimiter`]s of `quota`, with the default tiers:
    /// `sheddable-plus` (and below) gets half of it, `sheddable` a quarter
    /// ([`DEFAULT_TIER_SHARES`]), named `<name>-sheddable-plus` and `<name>-sheddable`.
    pub(crate) fn local(
        quota: Quota,
        key_of: impl Fn(&Parts) -> Option<K> + Send + Sync + 'static,
    ) -> Result<Self, ConfigError> {
        let mut builder = RateLimitBuilder::new(LocalLimiter::new(quota.clone()), key_of);
        for (tier, share) in DEFAULT_TIER_SHARES {
            let limiter = LocalLimiter::new(tier_quota(&quota, tier, share)?);
            builder = builder.tier(tier, limiter);
        }
        Ok(builder)
    }
}

/// What every service of a layer shares.
pub(crate) struct Shared<L, K> {
    pub(crate) quotas: Quotas<L>,
    /// `RateLimit-Policy` by tier: the quotas of its walk (its own and the more important
    /// tiers', where they have one), then the base.
    policies: [HeaderValue; 4],
    pub(crate) key_of: Arc<KeyFn<K>>,
    pub(crate) criticality_of: Arc<CriticalityFn>,
    on_error: OnLimiterError,
    admitted_headers: bool,
    pub(crate) reporter: Reporter,
}

/// What a verdict means for the request.
pub(crate) enum Judged<B> {
    /// It goes on; its response gets these headers, if any.
    Pass(Option<RateHeaders>),
    /// It is answered with this.
    Answer(Response<B>),
}

/// `RateLimit-Policy` and `RateLimit` for an admitted request's response.
#[derive(Debug)]
pub(crate) struct RateHeaders {
    policy: HeaderValue,
    state: HeaderValue,
}

impl RateHeaders {
    /// Appends, so that the headers of a rate limit layered inside this one stay: two
    /// field lines of a structured-field list read as one list.
    pub(crate) fn write(self, headers: &mut HeaderMap) {
        headers.append(RATELIMIT_POLICY, self.policy);
        headers.append(RATELIMIT, self.state);
    }
}

impl<L: Limiter<K>, K> Shared<L, K> {
    /// Turns a verdict into what the request gets, and reports it. `request` is the
    /// request's headers (a gRPC request is refused with a gRPC status).
    pub(crate) fn judge<B: Default>(
        &self,
        verdict: Verdict,
        criticality: Criticality,
        request: &HeaderMap,
    ) -> Judged<B> {
        let quotas = &self.quotas;
        match verdict {
            Verdict::Admitted { tiers, base } => {
                let remaining = tiers
                    .iter()
                    .flatten()
                    .fold(base.remaining, |least, tier| least.min(tier.remaining));
                self.reporter.admitted(criticality, remaining);
                if !self.admitted_headers {
                    return Judged::Pass(None);
                }
                // The quotas asked, in the order asked: the tiers answered, then the base.
                let asked = quotas.walk(criticality).filter_map(|step| {
                    let decision = tiers.get(step).map_or(Some(&base), Option::as_ref)?;
                    Some((quotas.at(step).quota(), decision))
                });
                Judged::Pass(Some(RateHeaders {
                    policy: self.policies[criticality as usize].clone(),
                    state: headers::state(asked),
                }))
            }
            Verdict::Limited { step, decision } => {
                let quota = quotas.at(step).quota();
                self.reporter
                    .limited(criticality, quota.policy_name(), decision.retry_after);
                Judged::Answer(self.refusal(criticality, quota, &decision, request))
            }
            Verdict::Failed(error) => {
                let open = self.on_error == OnLimiterError::FailOpen;
                self.reporter.failed(criticality, error, open);
                if open {
                    Judged::Pass(None)
                } else {
                    Judged::Answer(unavailable(is_grpc_request(request)))
                }
            }
        }
    }

    /// 429 (or gRPC `RESOURCE_EXHAUSTED`) with `Retry-After` (or
    /// `grpc-retry-pushback-ms`), `RateLimit-Policy` (the quotas the request is under) and
    /// `RateLimit` (the quota that refused it); the rejection in its extensions, as
    /// `HandleRejectionsLayer` leaves it.
    #[cold]
    fn refusal<B: Default>(
        &self,
        criticality: Criticality,
        quota: &Quota,
        decision: &Decision,
        request: &HeaderMap,
    ) -> Response<B> {
        let rejection = Rejection::new(RejectionKind::Throttled, self.reporter.name.clone())
            .with_retry_after(decision.retry_after)
            .with_reason("rate limit");
        let mut response = if is_grpc_request(request) {
            rejection.to_grpc_response()
        } else {
            rejection.to_http_response()
        };
        let headers = response.headers_mut();
        headers.insert(
            RATELIMIT_POLICY,
            self.policies[criticality as usize].clone(),
        );
        headers.insert(RATELIMIT, headers::state([(quota, decision)]));
        response.extensions_mut().insert(rejection);
        response
    }
}

/// The answer to a request the failed limiter could not judge, with
/// [`OnLimiterError::FailClosed`]: 503, or a trailers-only gRPC `UNAVAILABLE`.
fn unavailable<B: Default>(grpc: bool) -> Response<B> {
    let mut response = Response::new(B::default());
    if grpc {
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(
            GRPC_STATUS,
            HeaderValue::from_static(GrpcCode::Unavailable.as_header_str()),
        );
        headers.insert(
            GRPC_MESSAGE,
            HeaderValue::from_static("rate limiter unavailable"),
        );
    } else {
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    response
}

impl<L: fmt::Debug, K> fmt::Debug for RateLimitBuilder<L, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitBuilder")
            .field("quotas", &self.quotas)
            .field("on_error", &self.on_error)
            .field("admitted_headers", &self.admitted_headers)
            .field("name", &self.reporter.name)
            .finish_non_exhaustive()
    }
}

impl<L: fmt::Debug, K> fmt::Debug for Shared<L, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("quotas", &self.quotas)
            .field("on_error", &self.on_error)
            .field("admitted_headers", &self.admitted_headers)
            .field("name", &self.reporter.name)
            .finish_non_exhaustive()
    }
}
