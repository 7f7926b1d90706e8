//! Graceful degradation for [tower]: when a dependency fails or a bulwark layer refuses a
//! call, answer with something useful instead, and say that it is degraded.
//!
//! [`FallbackLayer`] tries the last good response for the same key (a bounded, expiring
//! cache of recent successes), then a function of the failure or a static response; it
//! marks what it serves with `x-bulwark-degraded` and a [`Degraded`] extension.
//! [`BackupLayer`] sends the failed call to a backup service instead. [`FallbackLayer`]
//! copies responses, so their body must be `Clone` (buffered, such as `Full<Bytes>`): its
//! docs show how to buffer a streaming one, such as axum's `Body`, with a bound.
//!
//! # The last-good cache's defaults
//!
//! One cache answers every caller of the layer, so it keeps only what a shared cache may
//! (RFC 9111), and serves a request only what was answered to a request with the same key
//! and the same values of the headers the answer varies on:
//!
//! - **Key**: the request's method, authority (the URI's, else `Host`), path and query
//!   ([`RequestKey`]); for gRPC the path is the method. The query is included because it
//!   selects the answer (`?q=shoes` is not `?q=hats`); give a [key](FallbackBuilder::key)
//!   to drop noise.
//! - **Methods**: only `GET` and `HEAD` requests are served from the cache or stored in it
//!   ([`CACHE_METHODS`], [`FallbackBuilder::cache_methods`]): a `POST` never gets another
//!   request's answer (the function or static response still answers it).
//! - **`Vary`** (RFC 9111 §4.1): an answer that varies on request headers is stored with
//!   the request's values of them (as sent, field lines combined) and served only to a
//!   request with the same values: a gzip body only to a client that asked for gzip. One
//!   answer is kept per key, the last. Not stored: `Vary: *`, more than four names, a
//!   name that is not a header name, `Cookie` or `Authorization` (it differs per user).
//!   The layer keeps each call's request headers only once an answer has varied, so a
//!   layer whose answers never vary pays nothing for it, and the first varying answer is
//!   not stored (the next ones are).
//! - **What is stored**: a response the classifier calls
//!   [`Outcome::Success`](tower_bulwark_core::Outcome::Success), by default [`HttpOrGrpc`]
//!   (a 503, a 429, a shed or a trailers-only gRPC error is never "last good"). Not stored:
//!   `Cache-Control: no-store` (RFC 9111 §5.2.2.5: no cache may store it) or `private`
//!   (§5.2.2.7: a shared cache must not); an answer that must not be served stale
//!   (§4.2.4: `no-cache`, `must-revalidate`, `proxy-revalidate`, `s-maxage`), since the
//!   cache serves copies only when the origin failed, so only stale ones; an answer to a
//!   request with `Authorization` (§3.5) or a `Cookie` (a session: the answer may be that
//!   user's own page) unless it says `public` (of §3.5's other permissions, `s-maxage`
//!   and `must-revalidate` forbid serving stale); an answer already marked degraded.
//! - **Headers never replayed**: [`STRIPPED_HEADERS`] (`Set-Cookie`, `Set-Cookie2`,
//!   `Authentication-Info`, `Proxy-Authentication-Info`) are removed from the stored copy
//!   ([`FallbackBuilder::strip_headers`]).
//!
//! The layers read a result through [`Classify::classify_load`], the view of a caller who
//! needs an answer: a dependency shedding for overload did not serve the call, so it falls
//! back, though a breaker ignores it. A call that is not stored takes no lock; a stored
//! one takes the cache's lock once.
//!
//! [`Classify::classify_load`]: tower_bulwark_core::Classify::classify_load
//!
//! # Events and metrics
//!
//! Every degraded answer is a [`FallbackEvent::Served`] (with its [`Source`] and
//! [`Reason`]); a call that fell back with nothing to answer is
//! [`FallbackEvent::Unanswered`]; the cache reports [`FallbackEvent::Stored`] and
//! [`FallbackEvent::NotStored`]. With no listener no event is built. With the `metrics`
//! feature, `with_metrics()` records `bulwark_fallback_served_total` (labels `fallback`,
//! `source`, `reason`), `bulwark_fallback_unanswered_total` (`fallback`, `reason`),
//! `bulwark_fallback_stored_total` (`fallback`) and `bulwark_fallback_not_stored_total`
//! (`fallback`, `why`), each registered once per layer.
//!
//! [tower]: https://docs.rs/tower
#![forbid(unsafe_code)]

mod backup;
mod cache;
mod classify;
mod config;
mod degraded;
mod error;
mod events;
mod future;
mod key;
mod layer;
mod recent;
mod store;
mod vary;

pub use self::backup::{Backup, BackupFuture, BackupLayer};
pub use self::classify::HttpOrGrpc;
pub use self::config::FallbackBuilder;
pub use self::degraded::{Degraded, FallbackOn, DEGRADED_HEADER};
pub use self::error::{Failure, FallbackFailed};
pub use self::events::{FallbackEvent, Reason, Source, Unstorable};
pub use self::future::ResponseFuture;
pub use self::key::{DefaultKey, KeyOf, RequestKey};
pub use self::layer::{Fallback, FallbackLayer};
pub use self::store::{CACHE_METHODS, STRIPPED_HEADERS};
