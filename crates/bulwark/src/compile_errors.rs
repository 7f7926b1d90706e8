//! # When it doesn't compile
//!
//! A stack of tower layers is one long type, and when one requirement deep inside it fails,
//! the compiler often reports the whole stack instead of the requirement. These are the
//! three errors users of this crate meet most, what each means and its fix. The messages
//! are quoted from rustc 1.95; each failing example is a `compile_fail` test of this
//! crate beside its fixed twin, which compiles.
//!
//! First, a tool: when a call says *"the method `oneshot` exists for struct `…`, but its
//! trait bounds were not satisfied"* (E0599), put [`expect_service`](crate::expect_service)
//! on the line before it. The compiler then names the requirement that fails (E0277)
//! instead of the stack:
//!
//! ```text
//! tower_bulwark::expect_service::<http::Request<MyBody>, _>(&client);
//! ```
//!
//! ## 1. A layer on an axum `Router`: `Infallible: From<Box<dyn Error + Send + Sync>>`
//!
//! ```text
//! error[E0277]: the trait bound `Infallible: From<Box<(dyn std::error::Error + Send + Sync + 'static)>>` is not satisfied
//!     = note: required for `Box<(dyn std::error::Error + Send + Sync + 'static)>` to implement `Into<Infallible>`
//! note: required by a bound in `Router::<S>::layer`
//! ```
//!
//! axum answers every request with a response, so it takes only layers that never fail
//! (error type `Infallible`). The layers of this crate refuse calls with an error (a
//! [`Rejection`](crate::Rejection): circuit open, bulkhead full, shed), which a server
//! must turn into a response:
//!
//! ```compile_fail,E0277
//! use axum::{routing::get, Router};
//! use tower_bulwark::breaker::CircuitBreakerLayer;
//!
//! let breaker = CircuitBreakerLayer::builder().name("checkout").build().unwrap();
//! let app: Router = Router::new().route("/", get(|| async { "hi" })).layer(breaker);
//! ```
//!
//! Fix: put [`HandleRejectionsLayer`](crate::HandleRejectionsLayer) above them
//! (`handle_rejections()` on a `ServiceBuilder`, through [`BulwarkExt`](crate::BulwarkExt)),
//! which answers each refusal with its status (503, 429, 504) and `Retry-After`; or use the
//! server preset, which starts with it:
//!
//! ```
//! use axum::{routing::get, Router};
//! use tower::ServiceBuilder;
//! use tower_bulwark::breaker::CircuitBreakerLayer;
//! use tower_bulwark::presets::ServerPreset;
//! use tower_bulwark::{BulwarkExt, HttpClassifier};
//!
//! // axum answers a failing handler with a 500, never an error: count 5xx as failures.
//! let breaker = CircuitBreakerLayer::builder()
//!     .name("checkout")
//!     .classify(HttpClassifier)
//!     .build()
//!     .unwrap();
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hi" }))
//!     .layer(ServiceBuilder::new().handle_rejections().circuit_breaker(breaker));
//!
//! let server = ServerPreset::http().unwrap();
//! let app: Router = app.layer(server.layer());
//! # drop(app);
//! ```
//!
//! ## 2. Retries over a streaming body: `Body: Clone`
//!
//! ```text
//! error[E0599]: the method `oneshot` exists for struct `Retry<RetryPolicy<SkipRejections<HttpRetry>>, ...>`, but its trait bounds were not satisfied
//! ```
//!
//! and with `expect_service`:
//!
//! ```text
//! error[E0277]: the trait bound `Body: Clone` is not satisfied
//!    = note: required for `http::Request<Body>` to implement `Clone`
//!    = note: required for `RetryPolicy<SkipRejections<HttpRetry>>` to implement `Policy<Request<Body>, ...>`
//! ```
//!
//! A retry sends the request again, so it keeps a copy: the request must be `Clone`, and
//! a streaming body (axum's `Body`, hyper's `Incoming`) is not. This is the client preset
//! over a transport that takes axum's body:
//!
//! ```compile_fail,E0277
//! use tower::{service_fn, ServiceBuilder};
//! use tower_bulwark::presets::ClientPreset;
//! use tower_bulwark::BoxError;
//!
//! let transport = service_fn(|_: http::Request<axum::body::Body>| async {
//!     Ok::<_, BoxError>(http::Response::new(String::new()))
//! });
//! let client = ServiceBuilder::new()
//!     .layer(ClientPreset::http("inventory").unwrap().layer())
//!     .service(transport);
//! tower_bulwark::expect_service::<http::Request<axum::body::Body>, _>(&client);
//! ```
//!
//! Fix: send a body held in memory (`String`, `Vec<u8>`, `Bytes`; `http_body_util::Full`
//! for a hyper transport), read with a size limit first when it comes from a caller; or,
//! to retry a streaming body over hyper without buffering all of it up front, the retry
//! crate's [`ReplayLayer`](crate::retry::ReplayLayer) records it as it streams.
//!
//! ```
//! use tower::{service_fn, ServiceBuilder};
//! use tower_bulwark::presets::ClientPreset;
//! use tower_bulwark::BoxError;
//!
//! let transport = service_fn(|_: http::Request<String>| async {
//!     Ok::<_, BoxError>(http::Response::new(String::new()))
//! });
//! let client = ServiceBuilder::new()
//!     .layer(ClientPreset::http("inventory").unwrap().layer())
//!     .service(transport);
//! tower_bulwark::expect_service::<http::Request<String>, _>(&client);
//! ```
//!
//! ## 3. A client that does not answer `http::Response`: `Classify<reqwest::Response, …>`
//!
//! ```text
//! error[E0599]: the method `oneshot` exists for struct `CircuitBreaker<Client, HttpClassifier>`, but its trait bounds were not satisfied
//! ```
//!
//! and with `expect_service`:
//!
//! ```text
//! error[E0277]: expected a `Fn(&Result<reqwest::Response, reqwest::Error>)` closure, found `HttpClassifier`
//!    = note: required for `HttpClassifier` to implement `Classify<reqwest::Response, reqwest::Error>`
//! ```
//!
//! The HTTP classifiers (which decide what a breaker counts as a failure and what a retry
//! repeats) read an `http::Response`; `reqwest::Client`'s own service answers a
//! `reqwest::Response`. (The message speaks of a closure because any
//! `Fn(&Result<Res, E>) -> Outcome` is a classifier too; the note under it is the
//! requirement.)
//!
//! ```compile_fail,E0277
//! use tower::ServiceBuilder;
//! use tower_bulwark::breaker::CircuitBreakerLayer;
//! use tower_bulwark::HttpClassifier;
//!
//! let breaker = CircuitBreakerLayer::builder().classify(HttpClassifier).build().unwrap();
//! let client = ServiceBuilder::new().layer(breaker).service(reqwest::Client::new());
//! tower_bulwark::expect_service::<reqwest::Request, _>(&client);
//! ```
//!
//! Fix: put [`ReqwestService`](crate::ReqwestService) (feature `reqwest`) under the layers:
//! it takes an `http::Request` and answers an `http::Response`. Another client: adapt it
//! the same way, or classify its own response type with a closure.
//!
//! ```
//! use tower::ServiceBuilder;
//! use tower_bulwark::breaker::CircuitBreakerLayer;
//! use tower_bulwark::{HttpClassifier, ReqwestService};
//!
//! let breaker = CircuitBreakerLayer::builder().classify(HttpClassifier).build().unwrap();
//! let client = ServiceBuilder::new()
//!     .layer(breaker)
//!     .service(ReqwestService::new(reqwest::Client::new()));
//! tower_bulwark::expect_service::<http::Request<String>, _>(&client);
//! ```
