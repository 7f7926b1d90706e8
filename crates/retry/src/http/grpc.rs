//! [`GrpcRetry`]: the retry rules of gRPC clients, method by method.

use std::fmt;
use std::sync::Arc;

use http::{Request, Response};
use tower_bulwark_core::repeat::{never_sent, GrpcMethods};
use tower_bulwark_core::{ConfigError, Deadline, GrpcClassifier, GrpcCode, Name};

use super::with_pushback;
use crate::decide::retry_error;
use crate::{Decision, RetryClassify};

/// The rules gRPC clients follow, per method, like the `retryPolicy` of gRPC's service
/// config (gRFC A6): only methods marked retryable are retried, each on its own status
/// codes, because a gRPC method says nothing on the wire about being safe to repeat (every
/// call is a `POST`).
///
/// - **Marked methods** ([`method`](Self::method), [`service`](Self::service):
///   `UNAVAILABLE`; [`methods`](Self::methods): the codes given). A response with one of
///   the rule's codes (read from `grpc-status`, or inferred from the HTTP status when a
///   proxy answered) is retried, honouring `grpc-retry-pushback-ms` up to the policy's
///   maximum wait: a negative or unparseable pushback means "do not retry" (gRFC A6), and
///   so does the shed-for-overload marker
///   ([`OVERLOADED_HEADER`](tower_bulwark_core::OVERLOADED_HEADER)). Transport errors and
///   the stack's own attempt timeout are retried too: the method is safe to repeat, so a
///   call that may have run can run again. As in gRPC's service config, the most
///   specific rule decides: one naming the method beats one naming its service, which
///   beats a predicate; among equals, the first.
/// - **Every method**: a call that provably never reached the server is retried, as
///   gRPC's transparent retry does: a connection refused, tonic's connect errors, an
///   HTTP/2 stream the server refused (`REFUSED_STREAM`); see
///   [`never_sent`](tower_bulwark_core::repeat::never_sent) for exactly what counts.
/// - **Never**: a refusal by a bulwark layer below (an open breaker, a full bulkhead: the
///   composition contract), and on methods not marked, any answer or any error after
///   which the server may have run the call (a reset, a timeout).
///
/// The `Deadline` in the request's extensions is honoured like the task's current one
/// (behind a `Buffer`, it is the only one left). Cloning costs one `Arc` clone (tower's
/// `Retry` clones the policy for every call); deciding allocates nothing.
///
/// ```
/// use http::{Request, Response};
/// use tower_bulwark_core::repeat::GrpcMethods;
/// use tower_bulwark_core::GrpcCode;
/// use tower_bulwark_retry::{Decision, GrpcRetry, RetryClassify};
///
/// # fn main() -> Result<(), tower_bulwark_core::ConfigError> {
/// let retry = GrpcRetry::new()
///     .method("/shop.Orders/Get")?
///     .service("shop.Catalog")?
///     .methods(
///         GrpcMethods::new().matching(|path| path.ends_with("/List")),
///         &[GrpcCode::Unavailable, GrpcCode::ResourceExhausted],
///     )?;
///
/// let unavailable: Result<Response<()>, ()> =
///     Ok(Response::builder().header("grpc-status", "14").body(()).unwrap());
/// let call = |path: &str| Request::post(path).body(()).unwrap();
/// assert_ne!(retry.decide(&call("/shop.Orders/Get"), &unavailable), Decision::Done);
/// assert_ne!(retry.decide(&call("/shop.Catalog/Search"), &unavailable), Decision::Done);
/// assert_eq!(retry.decide(&call("/shop.Orders/Create"), &unavailable), Decision::Done);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct GrpcRetry {
    rules: Arc<[Rule]>,
}

#[derive(Clone)]
struct Rule {
    methods: GrpcMethods,
    codes: Codes,
}

impl GrpcRetry {
    /// No method marked retryable: only calls that never reached the server are retried.
    pub fn new() -> Self {
        GrpcRetry::default()
    }

    /// Marks one method (`/package.Service/Method`) retryable on `UNAVAILABLE`. A
    /// malformed path is a [`ConfigError`] (field `method`).
    pub fn method(self, path: impl Into<Name>) -> Result<Self, ConfigError> {
        self.methods(GrpcMethods::new().method(path)?, &[GrpcCode::Unavailable])
    }

    /// Marks every method of a service (`package.Service`) retryable on `UNAVAILABLE`. A
    /// malformed name is a [`ConfigError`] (field `service`).
    pub fn service(self, name: impl Into<Name>) -> Result<Self, ConfigError> {
        self.methods(GrpcMethods::new().service(name)?, &[GrpcCode::Unavailable])
    }

    /// Marks `methods` retryable on `codes` (gRPC's `retryableStatusCodes`). An empty set
    /// (field `methods`), no codes, or `OK` among them (field `codes`) is a
    /// [`ConfigError`].
    pub fn methods(self, methods: GrpcMethods, codes: &[GrpcCode]) -> Result<Self, ConfigError> {
        if methods.is_empty() {
            return Err(ConfigError::new("methods", "no method given"));
        }
        let codes = Codes::new(codes)?;
        let rules = self.rules.iter().cloned().chain([Rule { methods, codes }]);
        Ok(GrpcRetry {
            rules: rules.collect(),
        })
    }

    /// The codes the method with this path is retried on, if it is marked: the most
    /// specific rule's, the first of them on a tie.
    fn codes_for(&self, path: &str) -> Option<Codes> {
        let mut best = None;
        for rule in self.rules.iter() {
            let Some(specificity) = rule.methods.specificity(path) else {
                continue;
            };
            if best.is_none_or(|(most, _)| specificity > most) {
                best = Some((specificity, rule.codes));
            }
        }
        best.map(|(_, codes)| codes)
    }
}

impl<ReqB, ResB, E: 'static> RetryClassify<Request<ReqB>, Response<ResB>, E> for GrpcRetry {
    fn decide(&self, request: &Request<ReqB>, result: &Result<Response<ResB>, E>) -> Decision {
        match result {
            Ok(response) => {
                let code = GrpcClassifier::code_of(response);
                if code == GrpcCode::Ok {
                    return Decision::Done;
                }
                match self.codes_for(request.uri().path()) {
                    Some(codes) if codes.contains(code) => with_pushback(response),
                    _ => Decision::Done,
                }
            }
            Err(error) => {
                if self.codes_for(request.uri().path()).is_some() || never_sent(error) {
                    // Still not a refusal by a layer below (which `never_sent` includes).
                    retry_error(error)
                } else {
                    Decision::Done
                }
            }
        }
    }

    fn request_deadline(&self, request: &Request<ReqB>) -> Option<Deadline> {
        request.extensions().get::<Deadline>().copied()
    }
}

impl fmt::Debug for GrpcRetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.rules.iter().map(|rule| (&rule.methods, rule.codes)))
            .finish()
    }
}

/// A set of gRPC codes, a bit per code.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Codes(u32);

impl Codes {
    fn new(codes: &[GrpcCode]) -> Result<Codes, ConfigError> {
        if codes.is_empty() {
            return Err(ConfigError::new("codes", "no status code given"));
        }
        if codes.contains(&GrpcCode::Ok) {
            return Err(ConfigError::new("codes", "`OK` is not a failure to retry"));
        }
        Ok(Codes(
            codes.iter().fold(0, |bits, code| bits | Self::bit(*code)),
        ))
    }

    fn bit(code: GrpcCode) -> u32 {
        1 << code.as_i32()
    }

    fn contains(self, code: GrpcCode) -> bool {
        self.0 & Self::bit(code) != 0
    }
}

impl fmt::Debug for Codes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codes = (0..=16).filter_map(GrpcCode::from_i32);
        f.debug_set()
            .entries(codes.filter(|code| self.contains(*code)))
            .finish()
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use std::time::Duration;

    use tower_bulwark_core::{BoxError, Rejection, RejectionKind};

    use super::*;

    const GET: &str = "/shop.Orders/Get";
    const CREATE: &str = "/shop.Orders/Create";

    fn call(path: &str) -> Request<()> {
        Request::post(path).body(()).unwrap()
    }

    fn answer(headers: &[(&str, &str)]) -> Result<Response<()>, BoxError> {
        let mut builder = Response::builder();
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        Ok(builder.body(()).unwrap())
    }

    fn marked() -> GrpcRetry {
        GrpcRetry::new().method(GET).unwrap()
    }

    const RETRY: Decision = Decision::Retry { pushback: None };

    #[test]
    fn unmarked_methods_are_left_alone_unless_the_call_never_left() {
        let unavailable = answer(&[("grpc-status", "14")]);
        let reset: Result<Response<()>, BoxError> = Err("connection reset".into());
        let refused: Result<Response<()>, BoxError> =
            Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into());
        let slow: Result<Response<()>, BoxError> =
            Err(Rejection::new(RejectionKind::TimedOut, "timeout").into());
        for retry in [GrpcRetry::new(), marked()] {
            assert_eq!(retry.decide(&call(CREATE), &unavailable), Decision::Done);
            assert_eq!(retry.decide(&call(CREATE), &reset), Decision::Done);
            assert_eq!(retry.decide(&call(CREATE), &slow), Decision::Done);
            assert_eq!(retry.decide(&call(CREATE), &refused), RETRY);
        }
        // The marked one: every failure that may pass.
        let retry = marked();
        assert_eq!(retry.decide(&call(GET), &unavailable), RETRY);
        assert_eq!(retry.decide(&call(GET), &reset), RETRY);
        assert_eq!(retry.decide(&call(GET), &slow), RETRY);
        assert_eq!(retry.decide(&call(GET), &refused), RETRY);
    }

    #[test]
    fn refusals_by_layers_below_are_never_retried() {
        for kind in [
            RejectionKind::CircuitOpen,
            RejectionKind::BulkheadFull,
            RejectionKind::Overloaded,
            RejectionKind::Throttled,
            RejectionKind::DeadlineExceeded,
            RejectionKind::Draining,
        ] {
            let refused: Result<Response<()>, BoxError> = Err(Rejection::new(kind, "x").into());
            for path in [GET, CREATE] {
                assert_eq!(marked().decide(&call(path), &refused), Decision::Done);
            }
        }
    }

    #[test]
    fn each_rule_retries_its_own_codes_and_the_most_specific_decides() {
        let retry = GrpcRetry::new()
            .method(GET)
            .unwrap()
            .methods(
                GrpcMethods::new().service("shop.Orders").unwrap(),
                &[GrpcCode::ResourceExhausted, GrpcCode::Aborted],
            )
            .unwrap();
        let code = |code: &str| answer(&[("grpc-status", code)]);
        // `Get` is named by its own rule: UNAVAILABLE only.
        assert_eq!(retry.decide(&call(GET), &code("14")), RETRY);
        assert_eq!(retry.decide(&call(GET), &code("8")), Decision::Done);
        // Other methods of the service: their rule's codes.
        assert_eq!(retry.decide(&call(CREATE), &code("8")), RETRY);
        assert_eq!(retry.decide(&call(CREATE), &code("10")), RETRY);
        assert_eq!(retry.decide(&call(CREATE), &code("14")), Decision::Done);
        for other in ["0", "2", "4", "13", "garbage"] {
            assert_eq!(retry.decide(&call(CREATE), &code(other)), Decision::Done);
        }
        assert_eq!(
            retry.decide(&call(CREATE), &answer(&[])),
            Decision::Done,
            "no status in headers: the call went on normally"
        );
        assert_eq!(
            retry.decide(&call("/shop.Users/Get"), &code("14")),
            Decision::Done
        );
    }

    #[test]
    fn a_proxy_answer_without_a_grpc_status_is_read_as_grpc_clients_do() {
        let busy: Result<Response<()>, BoxError> =
            Ok(Response::builder().status(503).body(()).unwrap());
        assert_eq!(marked().decide(&call(GET), &busy), RETRY);
        assert_eq!(GrpcRetry::new().decide(&call(GET), &busy), Decision::Done);
    }

    #[test]
    fn pushback_and_the_shed_marker_are_honoured() {
        let retry = GrpcRetry::new()
            .methods(
                GrpcMethods::new().method(GET).unwrap(),
                &[GrpcCode::Unavailable, GrpcCode::ResourceExhausted],
            )
            .unwrap();
        let decide = |headers: &[(&str, &str)]| retry.decide(&call(GET), &answer(headers));
        assert_eq!(
            decide(&[("grpc-status", "8"), ("grpc-retry-pushback-ms", "250")]),
            Decision::Retry {
                pushback: Some(Duration::from_millis(250))
            }
        );
        // gRFC A6: a negative or unparseable pushback means "do not retry".
        for never in ["-1", "-99999999999999999999", "", "soon", "1.5", "--1"] {
            assert_eq!(
                decide(&[("grpc-status", "14"), ("grpc-retry-pushback-ms", never)]),
                Decision::Done,
                "{never:?}"
            );
        }
        // Digits beyond `u64`: no client reads them as a number, so "do not retry" too.
        assert_eq!(
            decide(&[
                ("grpc-status", "14"),
                ("grpc-retry-pushback-ms", "99999999999999999999")
            ]),
            Decision::Done
        );
        for marker in ["x-bulwark-overloaded", "x-envoy-overloaded"] {
            assert_eq!(
                decide(&[("grpc-status", "8"), (marker, "true")]),
                Decision::Done,
                "{marker}"
            );
        }
        // A shed as our own servers answer it: `-1` and the marker.
        let shed = Rejection::new(RejectionKind::Overloaded, "server")
            .with_retry_after(Duration::from_millis(100));
        assert_eq!(
            retry.decide(&call(GET), &Ok::<_, ()>(shed.to_grpc_response::<()>())),
            Decision::Done
        );
    }

    #[test]
    fn bad_rules_are_config_errors_naming_the_field() {
        let field = |result: Result<GrpcRetry, ConfigError>| result.unwrap_err().field();
        assert_eq!(field(GrpcRetry::new().method("shop.Orders/Get")), "method");
        assert_eq!(field(GrpcRetry::new().service("shop/Orders")), "service");
        let orders = || GrpcMethods::new().service("shop.Orders").unwrap();
        assert_eq!(field(GrpcRetry::new().methods(orders(), &[])), "codes");
        assert_eq!(
            field(GrpcRetry::new().methods(orders(), &[GrpcCode::Ok])),
            "codes"
        );
        assert_eq!(
            field(GrpcRetry::new().methods(GrpcMethods::new(), &[GrpcCode::Unavailable])),
            "methods"
        );
    }

    #[test]
    fn debug_shows_the_rules() {
        assert_eq!(
            format!("{:?}", marked()),
            r#"{["/shop.Orders/Get"]: {Unavailable}}"#
        );
    }
}
