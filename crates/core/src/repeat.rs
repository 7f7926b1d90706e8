//! Whether a call may be sent again: requests that are safe to repeat, and failed calls
//! that provably never reached the server (feature `http`).
//!
//! `HttpRetry`, `GrpcRetry` (retry crate) and `BackupLayer` (fallback crate) share these
//! rules, so a request is repeated by all of them or by none.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use http::{Method, Request};

use crate::rejection::{as_error, MAX_SOURCES};
use crate::{ConfigError, Name, Rejection, RejectionKind};

/// The request header that makes a non-idempotent request safe to repeat: the server
/// deduplicates requests by it.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Whether `request` is safe to send twice: an idempotent method (`GET`, `HEAD`,
/// `OPTIONS`, `PUT`, `DELETE`, `TRACE`, RFC 9110 9.2.2) or an [`IDEMPOTENCY_KEY`] header
/// with a key in it (an empty or blank one gives the server nothing to deduplicate by).
/// gRPC calls are all `POST`s: which gRPC methods are idempotent is told with
/// [`GrpcMethods`].
///
/// ```
/// use tower_bulwark_core::repeat::is_idempotent;
///
/// assert!(is_idempotent(&http::Request::get("/").body(()).unwrap()));
/// assert!(!is_idempotent(&http::Request::post("/orders").body(()).unwrap()));
/// let keyed = http::Request::post("/orders").header("idempotency-key", "k-1").body(()).unwrap();
/// assert!(is_idempotent(&keyed));
/// let blank = http::Request::post("/orders").header("idempotency-key", "").body(()).unwrap();
/// assert!(!is_idempotent(&blank));
/// ```
pub fn is_idempotent<B>(request: &Request<B>) -> bool {
    let keyed = |value: &http::HeaderValue| {
        value
            .as_bytes()
            .iter()
            .any(|byte| !byte.is_ascii_whitespace())
    };
    matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    ) || {
        // As a `HeaderName`: a lookup then needs no parsing.
        const KEY: http::HeaderName = http::HeaderName::from_static(IDEMPOTENCY_KEY);
        request.headers().get(KEY).is_some_and(keyed)
    }
}

/// A set of gRPC methods, named as gRPC's service config names them: one method
/// (`/package.Service/Method`, the request's path), every method of a service
/// (`package.Service`), or the methods a predicate accepts. Used to mark the methods that
/// are safe to repeat (`GrpcRetry`, `BackupLayer`).
///
/// Cloning costs one `Arc` clone; [`contains`](Self::contains) allocates nothing.
///
/// ```
/// use tower_bulwark_core::repeat::GrpcMethods;
///
/// # fn main() -> Result<(), tower_bulwark_core::ConfigError> {
/// let idempotent = GrpcMethods::new()
///     .method("/shop.Orders/Get")?
///     .service("shop.Catalog")?
///     .matching(|path| path.ends_with("/List"));
/// assert!(idempotent.contains("/shop.Orders/Get"));
/// assert!(idempotent.contains("/shop.Catalog/Search"));
/// assert!(idempotent.contains("/shop.Orders/List"));
/// assert!(!idempotent.contains("/shop.Orders/Create"));
/// assert!(GrpcMethods::new().method("shop.Orders/Get").is_err(), "a path starts with /");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct GrpcMethods {
    entries: Arc<[Entry]>,
}

#[derive(Clone)]
enum Entry {
    Method(Name),
    Service(Name),
    Matching(Arc<dyn Fn(&str) -> bool + Send + Sync>),
}

impl Entry {
    fn matches(&self, path: &str) -> Option<Specificity> {
        let (matched, specificity) = match self {
            Entry::Method(method) => (method.as_str() == path, Specificity::Method),
            Entry::Service(service) => (
                split_path(path).is_some_and(|(name, _)| name == service.as_str()),
                Specificity::Service,
            ),
            Entry::Matching(predicate) => (predicate(path), Specificity::Predicate),
        };
        matched.then_some(specificity)
    }
}

/// How a [`GrpcMethods`] set names a method, least specific first (see
/// [`GrpcMethods::specificity`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Specificity {
    /// Only a predicate accepts it.
    Predicate,
    /// By its service's name.
    Service,
    /// By its own path.
    Method,
}

impl GrpcMethods {
    /// The empty set.
    pub fn new() -> Self {
        GrpcMethods::default()
    }

    /// Adds one method, by its path: `/package.Service/Method`. Anything else is a
    /// [`ConfigError`] (field `method`).
    pub fn method(self, path: impl Into<Name>) -> Result<Self, ConfigError> {
        let path = path.into();
        if split_path(&path).is_none() {
            return Err(ConfigError::new(
                "method",
                format!(
                    "expected `/package.Service/Method`, got {:?}",
                    path.as_str()
                ),
            ));
        }
        Ok(self.with(Entry::Method(path)))
    }

    /// Adds every method of a service: `package.Service`. An empty name, or one with `/`
    /// or blanks, is a [`ConfigError`] (field `service`).
    pub fn service(self, name: impl Into<Name>) -> Result<Self, ConfigError> {
        let name = name.into();
        if !is_name(&name) {
            return Err(ConfigError::new(
                "service",
                format!("expected `package.Service`, got {:?}", name.as_str()),
            ));
        }
        Ok(self.with(Entry::Service(name)))
    }

    /// Adds the methods whose path `predicate` accepts.
    pub fn matching(self, predicate: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        self.with(Entry::Matching(Arc::new(predicate)))
    }

    /// Whether the method with this path (`/package.Service/Method`) is in the set.
    pub fn contains(&self, path: &str) -> bool {
        self.entries
            .iter()
            .any(|entry| entry.matches(path).is_some())
    }

    /// How specifically the set names the method with this path: by its path, by its
    /// service, or only through a predicate (the most specific entry that matches); `None`
    /// if it is not in the set. gRPC's service config lets a method's own entry beat its
    /// service's; `GrpcRetry` uses this to do the same.
    ///
    /// ```
    /// use tower_bulwark_core::repeat::{GrpcMethods, Specificity};
    ///
    /// # fn main() -> Result<(), tower_bulwark_core::ConfigError> {
    /// let set = GrpcMethods::new().service("shop.Orders")?.method("/shop.Orders/Get")?;
    /// assert_eq!(set.specificity("/shop.Orders/Get"), Some(Specificity::Method));
    /// assert_eq!(set.specificity("/shop.Orders/List"), Some(Specificity::Service));
    /// assert_eq!(set.specificity("/shop.Users/Get"), None);
    /// assert!(Specificity::Method > Specificity::Service);
    /// # Ok(())
    /// # }
    /// ```
    pub fn specificity(&self, path: &str) -> Option<Specificity> {
        self.entries
            .iter()
            .filter_map(|entry| entry.matches(path))
            .max()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn with(self, entry: Entry) -> Self {
        let entries = self.entries.iter().cloned().chain([entry]).collect();
        GrpcMethods { entries }
    }
}

impl fmt::Debug for GrpcMethods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|entry| match entry {
                Entry::Method(path) => path.as_str(),
                Entry::Service(name) => name.as_str(),
                Entry::Matching(_) => "<predicate>",
            }))
            .finish()
    }
}

/// `/package.Service/Method` as (`package.Service`, `Method`).
fn split_path(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (is_name(service) && is_name(method)).then_some((service, method))
}

fn is_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

/// Whether a failed call provably never reached the server, so sending it again (there or
/// elsewhere) cannot repeat what it does, whatever its method. What counts:
///
/// - a refusal by a bulwark layer on this side: a [`Rejection`] in the error, of any kind
///   but [`TimedOut`](RejectionKind::TimedOut) and
///   [`DeadlineExceeded`](RejectionKind::DeadlineExceeded), which may end a call that was
///   already sent;
/// - a connection that could not be made: an [`std::io::Error`] of kind
///   `ConnectionRefused` anywhere in the source chain (hyper-util's and tonic's connectors
///   keep it there) and, with feature `tonic`, any `tonic::ConnectError` (tonic wraps in it
///   only the errors of making a connection: name resolution, connect, TLS handshake);
/// - with feature `tonic`: an HTTP/2 stream the server reset with `REFUSED_STREAM`, which
///   promises that it did no processing (RFC 9113, section 8.7).
///
/// Anything else may have reached the server: resets and closed connections after the
/// request was written, timeouts, HTTP/2 `GOAWAY` (hyper does not say whether the stream
/// was above the server's last processed one).
///
/// ```
/// use tower_bulwark_core::repeat::never_sent;
/// use tower_bulwark_core::{BoxError, Rejection, RejectionKind};
///
/// let refused: BoxError = std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into();
/// assert!(never_sent(&refused));
/// let open: BoxError = Rejection::new(RejectionKind::CircuitOpen, "db").into();
/// assert!(never_sent(&open));
/// let reset: BoxError = std::io::Error::from(std::io::ErrorKind::ConnectionReset).into();
/// assert!(!never_sent(&reset));
/// let slow: BoxError = Rejection::new(RejectionKind::TimedOut, "db").into();
/// assert!(!never_sent(&slow));
/// ```
pub fn never_sent<E: 'static>(error: &E) -> bool {
    if let Some(rejection) = Rejection::find_in(error) {
        return refused_before_sending(rejection.kind());
    }
    as_error(error).is_some_and(not_delivered)
}

fn refused_before_sending(kind: RejectionKind) -> bool {
    match kind {
        RejectionKind::CircuitOpen
        | RejectionKind::BulkheadFull
        | RejectionKind::Overloaded
        | RejectionKind::Throttled
        | RejectionKind::InvalidRequest
        | RejectionKind::Draining => true,
        RejectionKind::TimedOut | RejectionKind::DeadlineExceeded => false,
    }
}

/// A transport error that says the request was not delivered. Only the first 64 errors of
/// the chain are read, as [`Rejection::find`] does, so an error that is its own source
/// cannot hang the caller.
fn not_delivered(error: &(dyn Error + 'static)) -> bool {
    let mut next = Some(error);
    for _ in 0..MAX_SOURCES {
        let Some(error) = next else {
            return false;
        };
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
            // A custom `io::Error` reports its inner error's source, not the inner error.
            if let Some(inner) = io.get_ref() {
                if not_delivered(inner) {
                    return true;
                }
            }
        }
        #[cfg(feature = "tonic")]
        if error.is::<::tonic::ConnectError>() {
            return true;
        }
        #[cfg(feature = "tonic")]
        if error.downcast_ref::<h2::Error>().is_some_and(|h2| {
            h2.is_reset() && h2.is_remote() && h2.reason() == Some(h2::Reason::REFUSED_STREAM)
        }) {
            return true;
        }
        next = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BoxError;

    #[derive(Debug)]
    struct Wrapper(BoxError);

    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("transport error")
        }
    }

    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    fn io(kind: std::io::ErrorKind) -> BoxError {
        Box::new(Wrapper(Box::new(Wrapper(
            std::io::Error::from(kind).into(),
        ))))
    }

    #[test]
    fn only_refusals_here_and_undelivered_calls_were_never_sent() {
        use RejectionKind::*;
        for kind in [
            CircuitOpen,
            BulkheadFull,
            Overloaded,
            Throttled,
            InvalidRequest,
            Draining,
        ] {
            let error: BoxError = Box::new(Wrapper(Rejection::new(kind, "x").into()));
            assert!(never_sent(&error), "{kind:?}");
        }
        for kind in [TimedOut, DeadlineExceeded] {
            let error: BoxError = Rejection::new(kind, "x").into();
            assert!(!never_sent(&error), "{kind:?}");
        }
        assert!(never_sent(&io(std::io::ErrorKind::ConnectionRefused)));
        let custom: BoxError = std::io::Error::other(Wrapper(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
        ))
        .into();
        assert!(never_sent(&custom), "inside a custom io::Error");
        for kind in [
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::ConnectionAborted,
            std::io::ErrorKind::BrokenPipe,
            std::io::ErrorKind::TimedOut,
            std::io::ErrorKind::UnexpectedEof,
        ] {
            assert!(!never_sent(&io(kind)), "{kind:?}");
        }
        let plain: BoxError = "connection closed".into();
        assert!(!never_sent(&plain));
        assert!(!never_sent(&()), "not an error type");
    }

    #[cfg(feature = "tonic")]
    #[test]
    fn tonic_connect_errors_and_refused_streams_were_never_sent() {
        let connect: BoxError =
            Box::new(Wrapper(Box::new(::tonic::ConnectError("dns error".into()))));
        assert!(never_sent(&connect));
        // Built by h2 itself: a reason without a remote reset says nothing about the peer.
        let local: BoxError = Box::new(h2::Error::from(h2::Reason::REFUSED_STREAM));
        assert!(!never_sent(&local));
    }

    #[test]
    fn methods_services_and_predicates() {
        let set = GrpcMethods::new()
            .method("/a.B/Get")
            .unwrap()
            .service("c.D")
            .unwrap()
            .matching(|path| path == "/x.Y/Z");
        for path in ["/a.B/Get", "/c.D/Get", "/c.D/Put", "/x.Y/Z"] {
            assert!(set.contains(path), "{path}");
        }
        for path in [
            "/a.B/Put",
            "/a.B/Get/",
            "/a.B/GetMore",
            "/c.DE/Get",
            "/c.D",
            "/c.D/",
            "c.D/Get",
            "/c.D/Get/x",
            "",
            "/",
        ] {
            assert!(!set.contains(path), "{path}");
        }
        assert!(GrpcMethods::new().is_empty());
        assert!(!set.is_empty());
        assert!(!GrpcMethods::new().contains("/a.B/Get"));
        // The most specific entry, whatever the order.
        let mixed = GrpcMethods::new()
            .matching(|_| true)
            .service("a.B")
            .unwrap()
            .method("/a.B/Get")
            .unwrap();
        assert_eq!(mixed.specificity("/a.B/Get"), Some(Specificity::Method));
        assert_eq!(mixed.specificity("/a.B/Put"), Some(Specificity::Service));
        assert_eq!(mixed.specificity("/x.Y/Z"), Some(Specificity::Predicate));
        assert_eq!(set.specificity("/a.B/Put"), None);
        assert_eq!(format!("{set:?}"), r#"["/a.B/Get", "c.D", "<predicate>"]"#);
    }

    #[test]
    fn bad_names_are_config_errors_naming_the_field() {
        for path in [
            "",
            "/",
            "a.B/Get",
            "/a.B",
            "/a.B/",
            "//Get",
            "/a.B/Get/x",
            "/a B/Get",
        ] {
            let error = GrpcMethods::new().method(path).unwrap_err();
            assert_eq!(error.field(), "method", "{path:?}");
        }
        for name in ["", "a/B", "a B", "/a.B", "a.B\n"] {
            let error = GrpcMethods::new().service(name).unwrap_err();
            assert_eq!(error.field(), "service", "{name:?}");
        }
    }

    #[test]
    fn idempotent_methods_or_a_key() {
        let request = |method: &str, key: bool| {
            let mut builder = Request::builder().method(method).uri("/");
            if key {
                builder = builder.header(IDEMPOTENCY_KEY, "k");
            }
            builder.body(()).unwrap()
        };
        for method in ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"] {
            assert!(is_idempotent(&request(method, false)), "{method}");
        }
        for method in ["POST", "PATCH", "CONNECT"] {
            assert!(!is_idempotent(&request(method, false)), "{method}");
            assert!(is_idempotent(&request(method, true)), "{method} with a key");
        }
        for blank in ["", " ", " \t "] {
            let request = Request::post("/").header(IDEMPOTENCY_KEY, blank).body(());
            assert!(!is_idempotent(&request.unwrap()), "{blank:?}");
        }
    }
}
