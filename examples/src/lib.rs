//! Runnable examples of tower-bulwark: `cargo run --example <name>` from the workspace root.
//!
//! - `drill` (`cargo run --release --example drill`): a dependency broken on a schedule,
//!   the same service unprotected and with the bulwark presets, side by side, over real
//!   sockets; prints a table (fresh, degraded, refused and failed answers apart) and
//!   writes an SVG timeline. `--dashboard` serves the operator dashboard of the protected
//!   run, to watch its breaker open in the outage.
//! - `dashboard`: the operator dashboard (`/health/ui`) of an edge service whose backend
//!   fails on a cycle: breaker, bulkhead, retry budget, shedding layer, a degradation
//!   switch and the drain on one live page; operator actions with a bearer token.
//! - `criticality_shedding`: an axum server that sheds `sheddable` requests with a
//!   `Retry-After`, turning the rejection into a response with `HandleRejectionsLayer`.
//! - `breaker_http_client`: an HTTP client with a circuit breaker against a local server
//!   that breaks for two seconds, printing the state changes.
//! - `bulkhead_compartments`: an axum server where a slow route saturates its bulkhead
//!   while a fast route in its own compartment stays fast.
//! - `deadline_three_hops`: three axum services passing a 500 ms deadline along, printing
//!   the time left at each hop; a slow last hop is stopped at its deadline.
//! - `shed_load_burst`: an axum server with an adaptive concurrency limit under a local
//!   burst of load, printing the limit as it adapts; sheddable calls go first.
//! - `degradation_game_day`: fault injection breaks a dependency; a breaker and a
//!   last-good fallback keep answering (marked degraded), `/health` tells the truth, and a
//!   drain ends it cleanly.
//! - `client_preset_hyper`: the client preset around a hyper-util client, with one circuit
//!   breaker per host across three local servers.
//! - `prometheus_metrics`: the layers' metrics exported for Prometheus, with the list of
//!   metrics for a dashboard; `examples/grafana/bulwark.json` is a Grafana dashboard of
//!   them (import it and pick the Prometheus data source).
//! - `tonic_deadlines`: a tonic server and client with the gRPC presets: the client's
//!   deadline reaches the handler; a slow handler is stopped with `DEADLINE_EXCEEDED`.
//! - `retry_budget_http_client`: an HTTP client retrying under a shared 10% budget, against
//!   a server that fails one request in ten and then everything: retries rescue the first,
//!   the budget keeps the outage's load near the offered load.
#![forbid(unsafe_code)]
