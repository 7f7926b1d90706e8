//! Request coalescing for [tower]: identical requests in flight share one upstream call,
//! and every caller waiting for it gets the answer (or the error).
//!
//! A cache entry expires and a thousand requests for it arrive in the same millisecond: a
//! cache stampede. Behind this layer they make one call to the backend; the 999 others
//! wait for it and get a copy of its answer. There is no caching: once the call ends, the
//! next request starts a new one.
//!
//! - **Which requests are identical**: by default `GET` and `HEAD` requests with the same
//!   method and full URI (scheme, authority, path and query, userinfo compared byte for byte; and `Host` when the URI has
//!   no authority, as on HTTP/1 servers, so two virtual hosts never share), the same
//!   values of the per-user headers, `Authorization` and `Cookie`, so one user's answer
//!   never reaches another ([`user_headers`](CoalesceBuilder::user_headers),
//!   [`ignore_user_headers`](CoalesceBuilder::ignore_user_headers)), and the same values
//!   of the headers answers vary by, `Accept`, `Accept-Encoding` and `Accept-Language`
//!   ([`vary_headers`](CoalesceBuilder::vary_headers)). Conditional and range requests
//!   ([`CONDITIONAL_HEADERS`]: `Range`, `If-Range`, `If-Match`, `If-None-Match`,
//!   `If-Modified-Since`, `If-Unmodified-Since`: their `304` or `206` is not the answer to
//!   a plain request) and other methods pass by untouched. [`key`](CoalesceBuilder::key)
//!   takes your own key function. Keys are hashed (keyed SipHash) to find the call in
//!   flight, then compared exactly with the key it stored, from the borrowed request: a
//!   hash collision never joins a call.
//! - **`Vary`**: whatever the key, a joiner whose request differs from the leader's in a
//!   header the answer's `Vary` names (or `Vary: *`, or a name that does not parse) does
//!   not take the answer: it sends its own call ([`Varied`](CoalesceEventKind::Varied)).
//! - **What waiters get**: an `http::Response` rebuilt from the shared answer: its status,
//!   version, headers, extensions (cloned: `http` 1 extensions are `Clone`) and trailers,
//!   and a body of the same shared `Bytes` ([`CoalesceBody`]). The last waiter to take
//!   the answer gets the originals, so a call nobody joined clones nothing. An error
//!   reaches every waiter: a [`CoalescedError`] whose `source()` is the original (a caller
//!   alone, or the last one once no other copy is alive, gets the original itself), so a
//!   core `Rejection` from a
//!   layer below is found in it by `tower_bulwark_core::find_rejection` and the
//!   composition contract holds (docs/composition.md).
//! - **Bodies over the limit** ([`max_body_bytes`](CoalesceBuilder::max_body_bytes),
//!   1 MiB by default; known from the body's size hint, such as a `content-length`, or
//!   found while reading) are not shared: the leader gets it whole if it still waits (its
//!   request went upstream), else the waiter whose poll found it (what was read, then the
//!   rest as it streams); every other waiter then sends its own call ([`OverBody`](CoalesceEventKind::OverBody),
//!   [`Resent`](CoalesceEventKind::Resent)). A body error while reading is the call's
//!   error, for every waiter.
//! - **Who drives the call**: the upstream future is shared, as with
//!   `futures::future::Shared`: a waiter that is polled and finds no other waiter polling
//!   it at that moment polls it once; it is polled with a waker that wakes every waiter,
//!   so whichever waiter's task runs next makes progress, and a waiter whose future is
//!   alive but not polled holds no one up (a wake that came while another waiter was
//!   polling the upstream is passed on once that poll ends; a waiter that leaves with a
//!   wake it did not act on passes it on; a panic in the upstream wakes every waiter, and
//!   each fails with the call). If the leader's caller drops its future, the
//!   call goes on; when every waiter has gone, the upstream future is dropped (the call
//!   cancelled, [`Abandoned`](CoalesceEventKind::Abandoned)). No task is spawned.
//! - **Deadlines**: each waiter waits until its own deadline (its request's `Deadline`
//!   extension or the current one, the earlier; a timer only when it has one), then
//!   fails with core's `Rejection` of kind `DeadlineExceeded` and leaves the call (the
//!   last to leave cancels it). The upstream call carries **no caller's deadline**: it is
//!   polled with no current deadline (`Deadline::unscoped`), and the leader's request goes
//!   up without its `Deadline` extension, so a leader in a hurry never fails the waiters
//!   who are not; bound it with an attempt timeout below the layer.
//! - **Readiness** (the tower contract): `poll_ready` is always ready; like tower's
//!   `Buffer`, the layer takes the inner service's readiness per call, inside the
//!   response future: the shared call readies and calls a clone of the inner service
//!   when first polled, a request going upstream alone readies its own clone, and a
//!   joiner takes none unless it sends its own call. A readiness bound below (a bulkhead
//!   in readiness mode, tower's `ConcurrencyLimit`) bounds upstream calls, never joiners.
//! - **Bounds**: at most [`max_keys`](CoalesceBuilder::max_keys) calls in flight and
//!   [`max_waiters`](CoalesceBuilder::max_waiters) callers joining each (10,000 both by
//!   default). Over either bound a request goes upstream on its own: nothing is refused
//!   but a waiter's deadline passing.
//! - **Cost**: a request that is not coalesced allocates nothing. A request that leads a
//!   call allocates its shared slot and the pinned upstream future (two allocations: the
//!   crate forbids `unsafe`, so a future polled by whichever waiter is left needs its own
//!   pinned box; the slot itself is the upstream's waker, no more), the key's copy of its
//!   headers (one block of name-value pairs, which the `Vary` check compares against;
//!   none for a request without headers), plus the key's copy of the URI where it is not
//!   already shared `Bytes` (a hyper server's are; a URI parsed from a `&str` is copied
//!   once). A leader that polls the call to its end alone takes the answer as it came
//!   (nothing cloned, nothing stored in the slot). A joiner allocates its copy of the
//!   answer's headers (a `HeaderMap`, when the answer has headers) and, only if it has to
//!   wait, its place in the call's list of wakers (a `Vec` grown as joiners register).
//!   Keys are hashed once, in one pass over the key's bytes gathered on the stack, with
//!   SipHash keyed at random per layer (URIs and headers are attacker input, so a fast
//!   unkeyed hash would let a client aim collisions).
//!   The calls in flight are a map under a short `std::sync::Mutex` (CONTRIBUTING.md,
//!   rule 4: the layer's job is a shared store), taken once per keyed request and once
//!   when its call ends; each call's waiters are under a mutex of their own, taken when
//!   a waiter joins, when a poll finds the call ended or being polled by another waiter,
//!   and after each poll of the upstream; the upstream future is under another, which a
//!   waiter only tries.
//!
//! The response body type of the inner service must be `Unpin` (hyper's `Incoming`,
//! axum's `Body`, `http_body_util::Full` are); box others.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//!
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower::{service_fn, Layer, ServiceExt};
//! use tower_bulwark_coalesce::CoalesceLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let calls = Arc::new(AtomicUsize::new(0));
//! let counted = calls.clone();
//! let backend = service_fn(move |_request: Request<()>| {
//!     counted.fetch_add(1, Ordering::SeqCst);
//!     async {
//!         tokio::task::yield_now().await;
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("price: 42"))))
//!     }
//! });
//! let coalesce = CoalesceLayer::builder().name("prices").max_waiters(100).build()?;
//! let service = coalesce.layer(backend);
//!
//! let get = || Request::get("http://prices.internal/items/7").body(()).unwrap();
//! let (a, b) = tokio::join!(
//!     service.clone().oneshot(get()),
//!     service.clone().oneshot(get()),
//! );
//! assert_eq!(calls.load(Ordering::SeqCst), 1); // one call upstream, two answers
//! assert_eq!(a?.into_body().collect().await?.to_bytes(), "price: 42");
//! assert_eq!(b?.into_body().collect().await?.to_bytes(), "price: 42");
//! assert_eq!(coalesce.handle().snapshot().keys, 0); // nothing kept after the call
//! # Ok(())
//! # }
//! ```
//!
//! # Events and metrics
//!
//! Every keyed request is a [`CoalesceEvent`]: [`Led`](CoalesceEventKind::Led),
//! [`Joined`](CoalesceEventKind::Joined), over a bound
//! ([`OverKeys`](CoalesceEventKind::OverKeys),
//! [`OverWaiters`](CoalesceEventKind::OverWaiters)), or
//! [`Collided`](CoalesceEventKind::Collided) (its key's place held by another key of the
//! same hash, or a call of another service type); each call that ends unshared is
//! [`OverBody`](CoalesceEventKind::OverBody) (then one
//! [`Resent`](CoalesceEventKind::Resent) per waiter) or
//! [`Abandoned`](CoalesceEventKind::Abandoned); a joiner that sends its own call for
//! `Vary` is [`Varied`](CoalesceEventKind::Varied). With the `metrics` feature,
//! `with_metrics()` records `bulwark_coalesce_events_total` (labels `coalesce`, `event`).
//! Upstream calls are at most `led + over_keys + over_waiters + collided + resent +
//! varied` (a call whose every caller left before it was first polled is `Abandoned`
//! without having been sent); calls saved are `joined - resent - varied`.
//!
//! [tower]: https://docs.rs/tower
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod config;
mod error;
mod events;
mod future;
mod handle;
mod key;
mod layer;
mod service;
#[cfg(feature = "serde")]
mod settings;
mod slot;
mod upstream;

pub use self::body::CoalesceBody;
pub use self::config::{
    CoalesceBuilder, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_KEYS, DEFAULT_MAX_WAITERS,
};
pub use self::error::CoalescedError;
pub use self::events::{CoalesceEvent, CoalesceEventKind};
pub use self::future::ResponseFuture;
pub use self::handle::{CoalesceHandle, Snapshot};
pub use self::key::{CONDITIONAL_HEADERS, DEFAULT_USER_HEADERS, DEFAULT_VARY_HEADERS};
pub use self::layer::CoalesceLayer;
pub use self::service::Coalesce;
#[cfg(feature = "serde")]
pub use self::settings::CoalesceConfig;
