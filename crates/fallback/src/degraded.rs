//! What the fallback layers share: the degraded marker, which calls fall back, and why.

use http::{HeaderValue, Response};
use tower_bulwark_core::{find_rejection, BoxError, Outcome};

use crate::events::Reason;

/// The response header that marks a degraded answer: `last-good`, `fallback` or `backup`.
pub const DEGRADED_HEADER: &str = "x-bulwark-degraded";

/// In the extensions of a degraded response: where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Degraded {
    /// The last good response for the same key.
    LastGood,
    /// The fallback function (or static response).
    Fallback,
    /// The backup service ([`BackupLayer`](crate::BackupLayer)).
    Backup,
}

impl Degraded {
    fn as_str(self) -> &'static str {
        match self {
            Degraded::LastGood => "last-good",
            Degraded::Fallback => "fallback",
            Degraded::Backup => "backup",
        }
    }

    /// Whether `response` is already marked degraded (by a fallback further down, or
    /// across the wire).
    pub(crate) fn is_marked<B>(response: &Response<B>) -> bool {
        response.headers().contains_key(DEGRADED_HEADER)
            || response.extensions().get::<Degraded>().is_some()
    }
}

/// Which failed calls fall back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FallbackOn {
    /// Rejections by bulwark layers and failures per the classifier (the default), an
    /// attempt timeout included. Ignored outcomes never fall back.
    #[default]
    RejectionsAndFailures,
    /// Only rejections (an open breaker, a full bulkhead, a shed): the dependency was not
    /// even asked. An attempt timeout
    /// ([`TimedOut`](tower_bulwark_core::RejectionKind::TimedOut)) is not one: the
    /// dependency was asked and was too slow.
    Rejections,
}

impl FallbackOn {
    /// Why this result falls back, or `None` if it goes through as it is.
    pub(crate) fn reason<B>(
        self,
        result: &Result<Response<B>, BoxError>,
        outcome: Outcome,
    ) -> Option<Reason> {
        let failures = self == FallbackOn::RejectionsAndFailures && outcome == Outcome::Failure;
        match result {
            Err(error) => match find_rejection(error) {
                // An attempt timeout (`TimedOut`) is no refusal: the dependency was asked
                // and was too slow, a failure.
                Some(rejection) if rejection.kind().outcome() == Outcome::Failure => {
                    failures.then_some(Reason::Rejected(rejection.kind()))
                }
                Some(rejection) => Some(Reason::Rejected(rejection.kind())),
                None => failures.then_some(Reason::Error),
            },
            Ok(response) => failures.then(|| Reason::Status(response.status())),
        }
    }
}

/// Marks `response` as a degraded answer from `source`.
pub(crate) fn mark<B>(mut response: Response<B>, source: Degraded) -> Response<B> {
    response
        .headers_mut()
        .insert(DEGRADED_HEADER, HeaderValue::from_static(source.as_str()));
    response.extensions_mut().insert(source);
    response
}
