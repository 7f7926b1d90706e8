//! Which calls may be hedged ([`MayHedge`]) and which answers say the dependency is
//! overloaded ([`Overload`]).

use std::time::{Duration, SystemTime};

use http::{Request, Response, StatusCode};
use tower_bulwark_core::grpc::{GRPC_RETRY_PUSHBACK_MS, GRPC_STATUS};
use tower_bulwark_core::pushback::{grpc_retry_pushback, retry_after};
use tower_bulwark_core::repeat::{is_idempotent, GrpcMethods};
use tower_bulwark_core::{
    is_shed_for_overload, Deadline, GrpcCode, Rejection, RejectionKind, Replayable,
};

/// Which requests may be hedged: sending one twice must be harmless. The layer asks
/// [`may_hedge`](Self::may_hedge) when the call is made (a request it says no to is not
/// copied and gets no timer), [`can_send`](Self::can_send) on the copy when the hedge is due,
/// and [`deadline`](Self::deadline) for the caller's deadline, past which no hedge is sent.
///
/// Closures `Fn(&Req) -> bool` are rules (for any request type: they read the task's
/// deadline only). The rules for HTTP keep those of the retry and backup layers
/// (`tower_bulwark_core::repeat`): [`Idempotent`] (the default) and core's
/// [`GrpcMethods`] for gRPC.
pub trait MayHedge<Req> {
    /// Whether `request` may be sent more than once.
    fn may_hedge(&self, request: &Req) -> bool;

    /// Whether the copy can still be sent in full, when the hedge is due (a streamed body
    /// recorded for replay may have outgrown its recording). `true` by default.
    fn can_send(&self, copy: &Req) -> bool {
        let _ = copy;
        true
    }

    /// The caller's deadline for `request`: by default the task's current one
    /// ([`Deadline::current`]).
    fn deadline(&self, request: &Req) -> Option<Deadline> {
        let _ = request;
        Deadline::current()
    }
}

impl<Req, F> MayHedge<Req> for F
where
    F: Fn(&Req) -> bool,
{
    fn may_hedge(&self, request: &Req) -> bool {
        self(request)
    }
}

/// The default rule for HTTP requests: idempotent methods (`GET`, `HEAD`, `OPTIONS`, `PUT`,
/// `DELETE`, `TRACE`) or a non-blank `Idempotency-Key` header
/// ([`is_idempotent`](tower_bulwark_core::repeat::is_idempotent), the retry layers' rule);
/// a body recorded for replay must still be whole ([`Replayable::check`]); the deadline is
/// the earlier of the request's and the task's ([`Deadline::of_request`]).
///
/// ```
/// use tower_bulwark_hedge::{Idempotent, MayHedge};
///
/// let get = http::Request::get("/items/7").body(()).unwrap();
/// let post = http::Request::post("/orders").body(()).unwrap();
/// let keyed = http::Request::post("/orders").header("idempotency-key", "k-1").body(()).unwrap();
/// assert!(Idempotent.may_hedge(&get));
/// assert!(!Idempotent.may_hedge(&post));
/// assert!(Idempotent.may_hedge(&keyed));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Idempotent;

impl<B> MayHedge<Request<B>> for Idempotent {
    fn may_hedge(&self, request: &Request<B>) -> bool {
        is_idempotent(request)
    }

    fn can_send(&self, copy: &Request<B>) -> bool {
        Replayable::check(copy)
    }

    fn deadline(&self, request: &Request<B>) -> Option<Deadline> {
        Deadline::of_request(request.extensions())
    }
}

/// gRPC: the methods in the set may be hedged (gRPC calls are all `POST`s, so which are
/// idempotent is told per method, as gRPC's own hedging policy is configured per method).
/// Bodies and deadlines as for [`Idempotent`].
impl<B> MayHedge<Request<B>> for GrpcMethods {
    fn may_hedge(&self, request: &Request<B>) -> bool {
        self.contains(request.uri().path())
    }

    fn can_send(&self, copy: &Request<B>) -> bool {
        Replayable::check(copy)
    }

    fn deadline(&self, request: &Request<B>) -> Option<Deadline> {
        Deadline::of_request(request.extensions())
    }
}

/// Every request may be hedged, whatever its type (the task's deadline still applies):
/// for request types that carry no method, such as a key lookup.
#[derive(Debug, Clone, Copy, Default)]
pub struct Every;

impl<Req> MayHedge<Req> for Every {
    fn may_hedge(&self, _: &Req) -> bool {
        true
    }
}

/// What an answer says about the dependency's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Nothing about overload.
    Normal,
    /// The dependency (or a guard in front of it) refused for lack of capacity: hedging
    /// pauses, for the pushback it gave or the layer's default pause.
    Overloaded(Option<Duration>),
}

/// Which answers say the dependency is overloaded, so hedging pauses: hedges then stop
/// adding load to a dependency that sheds. An overloaded answer never wins while another
/// attempt is still running (see the crate docs).
///
/// Closures `Fn(&Result<Res, E>) -> Load` are classifiers.
pub trait Overload<Res, E> {
    /// What `result` says.
    fn load(&self, result: &Result<Res, E>) -> Load;
}

impl<Res, E, F> Overload<Res, E> for F
where
    F: Fn(&Result<Res, E>) -> Load,
{
    fn load(&self, result: &Result<Res, E>) -> Load {
        self(result)
    }
}

/// Whether a rejection's kind says "less load": the dependency or a guard in front of it is
/// out of capacity (`Overloaded`, `BulkheadFull`), its breaker is not closed
/// (`CircuitOpen`), or a throttle or rate limit refused (`Throttled`).
fn sheds(rejection: &Rejection) -> Option<Load> {
    matches!(
        rejection.kind(),
        RejectionKind::Overloaded
            | RejectionKind::BulkheadFull
            | RejectionKind::CircuitOpen
            | RejectionKind::Throttled
    )
    .then(|| Load::Overloaded(rejection.retry_after()))
}

/// Errors only, for any response type: an error carrying a core [`Rejection`] of kind
/// `Overloaded`, `BulkheadFull`, `CircuitOpen` or `Throttled` (a guard below refused, or
/// the breaker is not closed), with its `retry_after` as the pause.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rejections;

impl<Res, E: 'static> Overload<Res, E> for Rejections {
    fn load(&self, result: &Result<Res, E>) -> Load {
        match result {
            Err(error) => Rejection::find_in(error)
                .and_then(sheds)
                .unwrap_or(Load::Normal),
            Ok(_) => Load::Normal,
        }
    }
}

/// The default for HTTP and gRPC responses: [`Rejections`] in errors, and responses that
/// say the server sheds:
///
/// - a response carrying such a `Rejection` in its extensions (a refusal answered in this
///   process), with its `retry_after`;
/// - a 503 or 429 with the shed marker (`x-bulwark-overloaded` or `x-envoy-overloaded`)
///   or a `Retry-After` header;
/// - a gRPC `RESOURCE_EXHAUSTED` with `grpc-retry-pushback-ms` or the marker.
///
/// The pause is the wait the header asks for, read as the retry layer reads it (core's
/// [`pushback`](tower_bulwark_core::pushback) module): `Retry-After` in seconds or until
/// its HTTP-date, `grpc-retry-pushback-ms` in milliseconds, a `Retry-After` too large for
/// `u64` the longest wait (the layer pauses at most 60 s), `0` or a date in the past no
/// pause.
/// A value that gives no wait (garbage, a negative `grpc-retry-pushback-ms`, "do not
/// retry") still says the dependency sheds: the default pause.
///
/// ```
/// use std::time::Duration;
/// use tower_bulwark_hedge::{Load, Overload, OverloadSignals};
///
/// let shed = http::Response::builder()
///     .status(503)
///     .header("retry-after", "2")
///     .body(())
///     .unwrap();
/// let load = OverloadSignals.load(&Ok::<_, std::io::Error>(shed));
/// assert_eq!(load, Load::Overloaded(Some(Duration::from_secs(2))));
/// let plain = http::Response::builder().status(503).body(()).unwrap();
/// assert_eq!(OverloadSignals.load(&Ok::<_, std::io::Error>(plain)), Load::Normal);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct OverloadSignals;

impl<B, E: 'static> Overload<Response<B>, E> for OverloadSignals {
    fn load(&self, result: &Result<Response<B>, E>) -> Load {
        let response = match result {
            Ok(response) => response,
            Err(_) => return Rejections.load(result),
        };
        if let Some(rejection) = Rejection::in_response(response) {
            return sheds(rejection).unwrap_or(Load::Normal);
        }
        let headers = response.headers();
        if matches!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            let header = headers.get(http::header::RETRY_AFTER);
            if header.is_some() || is_shed_for_overload(headers) {
                return Load::Overloaded(
                    header
                        .and_then(|value| retry_after(value.as_bytes(), SystemTime::now()).wait()),
                );
            }
        }
        let code = headers
            .get(GRPC_STATUS)
            .and_then(|value| GrpcCode::parse(value.as_bytes()));
        if code == Some(GrpcCode::ResourceExhausted) {
            let pushback = headers.get(GRPC_RETRY_PUSHBACK_MS);
            if pushback.is_some() || is_shed_for_overload(headers) {
                return Load::Overloaded(
                    pushback.and_then(|value| grpc_retry_pushback(value.as_bytes()).wait()),
                );
            }
        }
        Load::Normal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_bulwark_core::BoxError;

    fn response(status: u16, headers: &[(&str, &str)]) -> Result<Response<()>, BoxError> {
        let mut builder = Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        Ok(builder.body(()).unwrap())
    }

    #[test]
    fn overload_signals() {
        let over = |d: Option<u64>| Load::Overloaded(d.map(Duration::from_millis));
        let longest_s = Load::Overloaded(Some(Duration::from_secs(u64::MAX)));
        let longest_ms = Load::Overloaded(Some(Duration::from_millis(u64::MAX)));
        type Case<'a> = (u16, &'a [(&'a str, &'a str)], Load);
        let cases: [Case<'_>; 22] = [
            (200, &[], Load::Normal),
            (503, &[], Load::Normal),
            (500, &[("retry-after", "1")], Load::Normal),
            (503, &[("retry-after", "3")], over(Some(3000))),
            (503, &[("retry-after", " 3\t")], over(Some(3000))),
            (429, &[("retry-after", "0")], over(Some(0))),
            // A date in the past asks for no wait, as `0` does (core's `pushback`).
            (
                503,
                &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")],
                over(Some(0)),
            ),
            // Garbage and signed values give no wait: the default pause.
            (503, &[("retry-after", "-1")], over(None)),
            (503, &[("retry-after", "soon")], over(None)),
            // Too many digits: the longest wait (the layer pauses at most 60 s).
            (
                503,
                &[("retry-after", "99999999999")],
                over(Some(99_999_999_999_000)),
            ),
            (
                503,
                &[("retry-after", "99999999999999999999999")],
                longest_s,
            ),
            (503, &[("x-bulwark-overloaded", "true")], over(None)),
            (429, &[("x-envoy-overloaded", "true")], over(None)),
            (
                200,
                &[("grpc-status", "8"), ("grpc-retry-pushback-ms", "250")],
                over(Some(250)),
            ),
            // "Do not retry" and garbage give no wait: the default pause.
            (
                200,
                &[("grpc-status", "8"), ("grpc-retry-pushback-ms", "-1")],
                over(None),
            ),
            (
                200,
                &[("grpc-status", "8"), ("grpc-retry-pushback-ms", "1.5")],
                over(None),
            ),
            (
                200,
                &[("grpc-status", "8"), ("grpc-retry-pushback-ms", "")],
                over(None),
            ),
            (
                200,
                &[("grpc-status", "8"), ("grpc-retry-pushback-ms", "-0")],
                over(Some(0)),
            ),
            (
                200,
                &[
                    ("grpc-status", "8"),
                    ("grpc-retry-pushback-ms", "18446744073709551615"),
                ],
                longest_ms,
            ),
            (200, &[("grpc-status", "8")], Load::Normal),
            (
                200,
                &[("grpc-status", "14"), ("grpc-retry-pushback-ms", "5")],
                Load::Normal,
            ),
            // A 503 reads `Retry-After` only, whatever else it carries.
            (
                503,
                &[("retry-after", "2"), ("grpc-retry-pushback-ms", "-1")],
                over(Some(2000)),
            ),
        ];
        for (status, headers, load) in cases {
            assert_eq!(
                OverloadSignals.load(&response(status, headers)),
                load,
                "{status} {headers:?}"
            );
        }
    }

    #[test]
    fn a_date_ahead_is_the_time_until_it() {
        let ahead = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let load = OverloadSignals.load(&response(503, &[("retry-after", &ahead)]));
        let Load::Overloaded(Some(pause)) = load else {
            panic!("{load:?}")
        };
        // Whole seconds on the wire, read against the wall clock.
        assert!(
            pause <= Duration::from_secs(30) && pause >= Duration::from_secs(20),
            "{pause:?}"
        );
    }

    proptest::proptest! {
        /// Any header bytes: an answer, never a panic; a present header on a shed is
        /// always "overloaded".
        #[test]
        fn header_values_never_panic(value in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let Ok(value) = http::HeaderValue::from_bytes(&value) else { return Ok(()) };
            let mut http = Response::new(());
            *http.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            http.headers_mut().insert(http::header::RETRY_AFTER, value.clone());
            let load = OverloadSignals.load(&Ok::<_, BoxError>(http));
            proptest::prop_assert!(matches!(load, Load::Overloaded(_)));
            let mut grpc = Response::new(());
            grpc.headers_mut().insert(GRPC_STATUS, http::HeaderValue::from_static("8"));
            grpc.headers_mut().insert(GRPC_RETRY_PUSHBACK_MS, value);
            let load = OverloadSignals.load(&Ok::<_, BoxError>(grpc));
            proptest::prop_assert!(matches!(load, Load::Overloaded(_)));
        }
    }
}
