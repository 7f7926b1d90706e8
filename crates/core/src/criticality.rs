//! [`Criticality`]: how much it matters that a request is served, for load shedding.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use pin_project::pin_project;

use crate::current::{self, Enter};

#[cfg(feature = "http")]
mod request;

#[cfg(feature = "http")]
pub use self::request::RequestHead;

thread_local! {
    /// The criticality of the future being polled on this thread (see `current.rs`).
    static CURRENT: Cell<Option<Criticality>> = const { Cell::new(None) };
}

/// How important a request is, in Google SRE's four levels, least important first.
///
/// Carried in request extensions and on the wire in the `x-request-criticality` header.
/// Under overload the shed layer rejects `Sheddable` work first and `CriticalPlus` last.
/// The default is `Critical`: a request nobody labelled is treated as ordinary production
/// traffic.
///
/// `Ord` follows importance: `Sheddable < SheddablePlus < Critical < CriticalPlus`.
///
/// ```
/// use tower_bulwark_core::Criticality;
///
/// assert_eq!("sheddable-plus".parse(), Ok(Criticality::SheddablePlus));
/// assert_eq!(Criticality::CriticalPlus.to_string(), "critical-plus");
/// assert!(Criticality::Sheddable < Criticality::Critical);
/// assert_eq!(Criticality::default(), Criticality::Critical);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Criticality {
    /// Work that may be dropped at any sign of overload: prefetches, batch jobs, retries of
    /// best-effort work.
    Sheddable,
    /// Work that may be dropped under real overload and retried later.
    SheddablePlus,
    /// Ordinary production traffic. The default.
    #[default]
    Critical,
    /// The most important traffic; shed only when nothing else is left to shed.
    CriticalPlus,
}

/// The header that carries a request's criticality between services.
pub const CRITICALITY_HEADER: &str = "x-request-criticality";

/// The same as a `HeaderName`: a lookup then needs no parsing (every request reads it).
#[cfg(feature = "http")]
const CRITICALITY_NAME: http::HeaderName = http::HeaderName::from_static(CRITICALITY_HEADER);

impl Criticality {
    /// The current task's criticality, set by an enclosing [`Criticality::scope`] (the shed
    /// layer sets it for its handler), so calls made while serving a request inherit the
    /// request's importance. `None` outside any scope; spawned tasks do not inherit it.
    pub fn current() -> Option<Criticality> {
        current::get(&CURRENT)
    }

    /// Runs `future` with this criticality as the current one (the innermost scope wins).
    ///
    /// ```
    /// use tower_bulwark_core::Criticality;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let seen = Criticality::Sheddable.scope(async { Criticality::current() }).await;
    /// assert_eq!(seen, Some(Criticality::Sheddable));
    /// assert_eq!(Criticality::current(), None);
    /// # }
    /// ```
    pub fn scope<F: Future>(self, future: F) -> CriticalityScope<F> {
        CriticalityScope {
            criticality: self,
            inner: future,
        }
    }

    /// Runs the closure `f` with this criticality as the current one.
    pub fn in_scope<R>(self, f: impl FnOnce() -> R) -> R {
        let _current = Enter::new(&CURRENT, self);
        f()
    }

    /// All levels, least important first.
    pub const ALL: [Criticality; 4] = [
        Criticality::Sheddable,
        Criticality::SheddablePlus,
        Criticality::Critical,
        Criticality::CriticalPlus,
    ];

    /// The header value: `sheddable`, `sheddable-plus`, `critical` or `critical-plus`.
    pub fn as_str(self) -> &'static str {
        match self {
            Criticality::Sheddable => "sheddable",
            Criticality::SheddablePlus => "sheddable-plus",
            Criticality::Critical => "critical",
            Criticality::CriticalPlus => "critical-plus",
        }
    }

    /// Parses a header value.
    ///
    /// Accepts the four names in any ASCII case, with `-` or `_` between the words
    /// (`critical-plus`, `CRITICAL_PLUS`), and ignores surrounding ASCII whitespace. Anything
    /// else is an error; it never panics.
    pub fn parse_bytes(value: &[u8]) -> Result<Criticality, ParseCriticalityError> {
        let value = value.trim_ascii();
        Criticality::ALL
            .into_iter()
            .find(|level| {
                let name = level.as_str().as_bytes();
                name.len() == value.len()
                    && name
                        .iter()
                        .zip(value)
                        .all(|(&n, &v)| n == v.to_ascii_lowercase() || (n == b'-' && v == b'_'))
            })
            .ok_or(ParseCriticalityError { _private: () })
    }

    /// The criticality of a request with these headers.
    ///
    /// A missing header gives the default (`Critical`). So does a value that is not one of
    /// the four names, or not text at all: an unknown label must neither promote a request
    /// above ordinary traffic nor let a malformed header get ordinary traffic shed. Such
    /// values are logged at `debug` level.
    ///
    /// ```
    /// use http::HeaderMap;
    /// use tower_bulwark_core::Criticality;
    ///
    /// let mut headers = HeaderMap::new();
    /// assert_eq!(Criticality::from_headers(&headers), Criticality::Critical);
    /// headers.insert("x-request-criticality", "sheddable".parse().unwrap());
    /// assert_eq!(Criticality::from_headers(&headers), Criticality::Sheddable);
    /// headers.insert("x-request-criticality", "urgent!!".parse().unwrap());
    /// assert_eq!(Criticality::from_headers(&headers), Criticality::Critical);
    /// ```
    #[cfg(feature = "http")]
    pub fn from_headers(headers: &http::HeaderMap) -> Criticality {
        Criticality::from_headers_or(headers, Criticality::default())
    }

    /// As [`from_headers`](Criticality::from_headers), with `default` for a missing or
    /// malformed header. It says what the sender asked for, not what it may have: a server
    /// decides whether to believe it ([`Criticality::of_request`]).
    ///
    /// ```
    /// use http::HeaderMap;
    /// use tower_bulwark_core::Criticality;
    ///
    /// let low = Criticality::Sheddable;
    /// let mut headers = HeaderMap::new();
    /// assert_eq!(Criticality::from_headers_or(&headers, low), low);
    /// headers.insert("x-request-criticality", "urgent!!".parse().unwrap());
    /// assert_eq!(Criticality::from_headers_or(&headers, low), low);
    /// headers.insert("x-request-criticality", "critical-plus".parse().unwrap());
    /// assert_eq!(Criticality::from_headers_or(&headers, low), Criticality::CriticalPlus);
    /// ```
    #[cfg(feature = "http")]
    pub fn from_headers_or(headers: &http::HeaderMap, default: Criticality) -> Criticality {
        let Some(value) = headers.get(&CRITICALITY_NAME) else {
            return default;
        };
        Criticality::parse_bytes(value.as_bytes()).unwrap_or_else(|_| {
            tracing::debug!(
                ?value,
                "unknown {CRITICALITY_HEADER} value; using the default"
            );
            default
        })
    }

    /// The header value, without allocating.
    #[cfg(feature = "http")]
    pub fn header_value(self) -> http::HeaderValue {
        http::HeaderValue::from_static(self.as_str())
    }
}

impl fmt::Display for Criticality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Criticality {
    type Err = ParseCriticalityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Criticality::parse_bytes(s.as_bytes())
    }
}

/// A criticality value was not one of the four known names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseCriticalityError {
    _private: (),
}

impl fmt::Display for ParseCriticalityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "unknown criticality: expected critical-plus, critical, sheddable-plus or sheddable",
        )
    }
}

impl std::error::Error for ParseCriticalityError {}

/// Future returned by [`Criticality::scope`]: the wrapped future, run with a current
/// criticality.
#[pin_project]
pub struct CriticalityScope<F> {
    criticality: Criticality,
    #[pin]
    inner: F,
}

impl<F: Future> Future for CriticalityScope<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _current = Enter::new(&CURRENT, *this.criticality);
        this.inner.poll(cx)
    }
}

impl<F> fmt::Debug for CriticalityScope<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CriticalityScope")
            .field("criticality", &self.criticality)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The scope's criticality is the current one while its future runs (the innermost
    /// scope wins, and the outer one is back after it), and none outside; `in_scope` the
    /// same for a closure, returning its value.
    #[tokio::test]
    async fn a_scope_sets_the_current_criticality_while_it_runs() {
        assert_eq!(Criticality::current(), None);
        let seen = Criticality::Sheddable
            .scope(async {
                let outer = Criticality::current();
                let inner = Criticality::CriticalPlus
                    .scope(async {
                        tokio::task::yield_now().await;
                        Criticality::current()
                    })
                    .await;
                (outer, inner, Criticality::current())
            })
            .await;
        assert_eq!(
            seen,
            (
                Some(Criticality::Sheddable),
                Some(Criticality::CriticalPlus),
                Some(Criticality::Sheddable)
            )
        );
        assert_eq!(Criticality::current(), None);
        let inside = Criticality::SheddablePlus.in_scope(|| (Criticality::current(), 7));
        assert_eq!(inside, (Some(Criticality::SheddablePlus), 7));
        assert_eq!(Criticality::current(), None);
    }

    #[test]
    fn every_level_round_trips_through_text() {
        for level in Criticality::ALL {
            assert_eq!(level.to_string().parse(), Ok(level));
        }
    }

    #[test]
    fn accepts_case_underscores_and_surrounding_whitespace() {
        assert_eq!("CRITICAL_PLUS".parse(), Ok(Criticality::CriticalPlus));
        assert_eq!("Sheddable_Plus".parse(), Ok(Criticality::SheddablePlus));
        assert_eq!(" \tcritical ".parse(), Ok(Criticality::Critical));
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            " ",
            "critical plus",
            "critical--plus",
            "critical-plus-plus",
            "critica",
            "criticalplus",
            "sheddable-",
            "high",
            "0",
            "crit\u{00ed}cal",
        ] {
            assert!(bad.parse::<Criticality>().is_err(), "{bad:?}");
        }
        assert!(Criticality::parse_bytes(b"\xff\xfe").is_err());
    }

    #[test]
    fn ordering_follows_importance() {
        let mut levels = Criticality::ALL;
        levels.reverse();
        levels.sort();
        assert_eq!(levels, Criticality::ALL);
        assert!(Criticality::SheddablePlus > Criticality::Sheddable);
        assert!(Criticality::CriticalPlus > Criticality::Critical);
    }

    #[cfg(feature = "http")]
    #[test]
    fn headers_with_bad_values_fall_back_to_the_default() {
        use http::{HeaderMap, HeaderValue};
        let mut headers = HeaderMap::new();
        for (value, expected) in [
            (&b"critical-plus"[..], Criticality::CriticalPlus),
            (b"sheddable", Criticality::Sheddable),
            (b"garbage", Criticality::Critical),
            (b"", Criticality::Critical),
            (b"\xfa\xfb", Criticality::Critical),
        ] {
            headers.insert(CRITICALITY_HEADER, HeaderValue::from_bytes(value).unwrap());
            assert_eq!(Criticality::from_headers(&headers), expected, "{value:?}");
        }
        for level in Criticality::ALL {
            headers.insert(CRITICALITY_HEADER, level.header_value());
            assert_eq!(Criticality::from_headers(&headers), level);
        }
    }

    #[cfg(feature = "http")]
    #[test]
    fn a_missing_or_bad_header_gives_the_default_asked_for() {
        use http::{HeaderMap, HeaderValue};
        let mut headers = HeaderMap::new();
        let default = Criticality::SheddablePlus;
        assert_eq!(Criticality::from_headers_or(&headers, default), default);
        for bad in [&b"garbage"[..], b"", b"\xfa\xfb"] {
            headers.insert(CRITICALITY_HEADER, HeaderValue::from_bytes(bad).unwrap());
            assert_eq!(Criticality::from_headers_or(&headers, default), default);
        }
        for level in Criticality::ALL {
            headers.insert(CRITICALITY_HEADER, level.header_value());
            assert_eq!(Criticality::from_headers_or(&headers, default), level);
        }
    }

    proptest! {
        #[test]
        fn every_spelling_of_a_level_parses_to_it(
            level in proptest::sample::select(Criticality::ALL.to_vec()),
            upper in proptest::collection::vec(any::<bool>(), 14),
            underscore in any::<bool>(),
            before in "[ \t]{0,3}",
            after in "[ \t]{0,3}",
        ) {
            let spelled: String = level
                .as_str()
                .chars()
                .zip(upper.iter().cycle())
                .map(|(c, up)| match c {
                    '-' if underscore => '_',
                    c if *up => c.to_ascii_uppercase(),
                    c => c,
                })
                .collect();
            let text = format!("{before}{spelled}{after}");
            prop_assert_eq!(text.parse::<Criticality>(), Ok(level));
        }

        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(level) = Criticality::parse_bytes(&bytes) {
                let normalized = String::from_utf8(bytes).unwrap().trim().to_ascii_lowercase().replace('_', "-");
                prop_assert_eq!(normalized, level.as_str());
            }
        }
    }
}
