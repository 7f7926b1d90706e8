//! Idempotency keys for [tower] servers: a request retried with the same `Idempotency-Key`
//! runs once, and every repeat gets the first answer. Clients retry, networks retry, users
//! press "pay" twice; with this layer in front of the handler, the card is charged once.
//!
//! It follows the IETF HTTPAPI draft "The Idempotency-Key HTTP Header Field" and Stripe's
//! published behaviour. On the methods it guards (`POST` and `PATCH` by default), a request
//! carrying a key is:
//!
//! | what the key holds | answer |
//! |---|---|
//! | nothing (or an expired answer) | the request runs; its answer is kept for 24 h |
//! | the answer of the same request | that answer again, with `Idempotent-Replayed: true` |
//! | the same request, still running | `409 Conflict`, `Retry-After: 1` |
//! | the same request, run, answer not kept (too large, client left mid-body) | `409 Conflict` |
//! | a different request (method, path with query, or body) | `422 Unprocessable Content` |
//!
//! and a request with a bad key (empty, repeated, over 255 bytes, not a structured-field
//! string such as `"8e03978e"`) gets `400`, as does one without a key where the route
//! [requires one](IdempotencyBuilder::require_key_when). Every refusal is an RFC 9457
//! `application/problem+json` body whose `type` links to its description in the crate's
//! README; a gRPC request (`content-type: application/grpc...`) is refused with a gRPC
//! status instead (`INVALID_ARGUMENT` for 400, `ABORTED` for in progress,
//! `ALREADY_EXISTS` for an answer not kept, `FAILED_PRECONDITION` for 422,
//! `RESOURCE_EXHAUSTED` for 413, `UNAVAILABLE` for 503). Requests of other methods, and
//! keyless ones where no key is required, pass by without a heap allocation.
//!
//! - **What is kept**: the status, the headers (not `Date` nor those of one connection),
//!   the body up to 1 MiB, the trailers. An answer that says the request was not (surely)
//!   carried out, a 5xx, a 429 or a 408 ([`keep_when`](IdempotencyBuilder::keep_when)), or
//!   an error of the service, releases the key so the client's retry runs again. The
//!   response streams to the client while it is recorded; its end reaches the client only
//!   once the store has it, so a client that read the whole answer and sends the key again
//!   is replayed, never told "in progress".
//! - **The fingerprint**: SHA-256 of method, path with query and body. The layer reads a
//!   keyed request's body whole before the handler (up to 1 MiB, else `413`), and hands
//!   the handler those bytes ([`RequestBody`]).
//! - **Scopes**: keys are kept per scope, by default the `Authorization` header's value, so
//!   two users' keys never meet; [`scope`](IdempotencyBuilder::scope) takes your tenant or
//!   account id instead.
//! - **Leases**: a running request holds its key for a lease (60 s), until its answer has
//!   been sent and kept. A caller that leaves mid-run releases it at once; a replica that
//!   crashes holds it until the lease ends. A repeat sent after the lease ended runs, even
//!   if the first is still running or sending its answer: keep the lease above the longest
//!   run plus the time to send its answer. (A first run that overran its lease with no
//!   repeat meanwhile still keeps its answer.) A store write that fails is tried again
//!   until the lease ends.
//! - **Cancellation**: hyper drops a handler's future when its client disconnects, and the
//!   key is then released, so the client's retry runs the handler again. A handler with an
//!   irreversible side effect (a charge) should not stop half-way: spawn the side effect
//!   and await its handle, so the run completes and its answer is kept.
//! - **Stores**: [`MemoryStore`] (the default: one replica; bounded to 100,000 keys and
//!   64 MiB of answers, expiring) or `RedisStore` (feature `redis`), shared by every replica
//!   behind a load balancer. A failing store refuses the request with `503`
//!   ([`OnStoreError::FailClosed`], the default) or lets it run unprotected
//!   ([`OnStoreError::FailOpen`]).
//! - **Where it goes**: after deadline acceptance and before load shedding, so a replay or
//!   a 409 takes no shed slot and a slow upload holds none;
//!   `ServerPreset::layer_with(idempotency)` of [tower-bulwark] puts it there. Refusals of
//!   the layers below it (a shed, a passed deadline) are 5xx answers or errors: not kept,
//!   the key released.
//!
//! ```
//! use axum::{routing::post, Router};
//! use tower_bulwark_idempotency::IdempotencyLayer;
//!
//! # fn main() -> Result<(), tower_bulwark_core::ConfigError> {
//! let idempotency = IdempotencyLayer::builder()
//!     // Payments must say which attempt they are; other routes may.
//!     .require_key_when(|request| request.uri.path().starts_with("/payments"))
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/payments", post(|| async { "charged" }))
//!     .layer(idempotency);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! A client retrying through the client preset of [tower-bulwark] retries a `POST` only when
//! it carries an `Idempotency-Key`: the two sides agree on which requests are safe to send
//! again.
//!
//! # Events and metrics
//!
//! Every request the layer looks at is an [`IdempotencyEvent`] with its [`Outcome`]
//! (executed, replayed, in progress, key reused, store failed, ...). With the `metrics`
//! feature, `with_metrics()` records `bulwark_idempotency_requests_total` (labels
//! `idempotency`, `outcome`).
//!
//! [tower]: https://docs.rs/tower
//! [tower-bulwark]: https://docs.rs/tower-bulwark
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod config;
mod events;
mod fingerprint;
mod future;
mod key;
mod keyed;
mod layer;
mod memory;
mod problem;
mod record;
#[cfg(feature = "redis")]
mod redis_store;
mod store;

pub use self::body::{RequestBody, ResponseBody};
pub use self::config::{keeps_by_default, IdempotencyBuilder, DEFAULT_METHODS};
pub use self::events::{IdempotencyEvent, Outcome};
pub use self::fingerprint::{Fingerprint, StoreKey};
pub use self::future::ResponseFuture;
pub use self::key::{KeyFormat, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED};
pub use self::layer::{Idempotency, IdempotencyLayer};
pub use self::memory::{MemoryStore, DEFAULT_MEMORY_BYTES, DEFAULT_MEMORY_CAPACITY};
pub use self::record::{DecodeError, Record, RecordState, StoredResponse, Token};
#[cfg(feature = "redis")]
pub use self::redis_store::{RedisStore, RedisStoreBuilder};
pub use self::store::{Claimed, OnStoreError, Store, StoreError, StoreFuture};
