//! Prometheus export of the layers' metrics: a server with the shedding layer and a client
//! with a breaker and retries, under some traffic; then the `/metrics` page it serves.
//!
//! `cargo run --example prometheus_metrics`
//!
//! `examples/grafana/bulwark.json` is a Grafana dashboard of every metric the crates
//! record. The metrics (all prefixed `bulwark_`; labels in parentheses), for a dashboard:
//!
//! | metric | type | what |
//! |---|---|---|
//! | `bulwark_breaker_state` (`breaker`) | gauge | 0 closed, 1 open, 2 half-open, 3 forced open, 4 disabled, 5 metrics only |
//! | `bulwark_breaker_transitions_total` (`breaker`, `from`, `to`) | counter | state changes |
//! | `bulwark_breaker_calls_total` (`breaker`, `outcome`, `slow`) | counter | calls by outcome |
//! | `bulwark_breaker_rejections_total` (`breaker`) | counter | calls refused while open |
//! | `bulwark_breaker_would_reject_total` (`breaker`) | counter | refusals in shadow (disabled) mode |
//! | `bulwark_bulkhead_rejections_total` (`bulkhead`, `reason`) | counter | refusals: queue full, wait timeout, deadline |
//! | `bulwark_bulkhead_wait_seconds` (`bulkhead`) | histogram | queue waits |
//! | `bulwark_retries_total` | counter | retries made |
//! | `bulwark_retry_not_retried_total` (`reason`) | counter | retries refused: max attempts, budget, deadline, pushback, body too large |
//! | `bulwark_retry_wait_seconds` | histogram | waits before retries |
//! | `bulwark_shed_limit` (`shed`) | gauge | the concurrency limit |
//! | `bulwark_shed_rejections_total` (`shed`, `tier`, `mode`) | counter | calls shed (or, in shadow mode, that would have been) |

use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::net::TcpListener;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_bulwark::breaker::CircuitBreakerLayer;
use tower_bulwark::retry::{HttpRetry, RetryPolicy, SkipRejections};
use tower_bulwark::shed::{FromRequest, ShedLayer};
use tower_bulwark::{BoxError, BulwarkExt, HttpClassifier};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let prometheus = PrometheusBuilder::new().install_recorder()?;

    // A server: shedding with metrics, and the metrics page.
    let shed = ShedLayer::builder()
        .name("api")
        .criticality(FromRequest::default())
        .classify(HttpClassifier)
        .with_metrics()
        .build()?;
    let page = prometheus.clone();
    let app = Router::new()
        .route("/flaky", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .layer(ServiceBuilder::new().handle_rejections().shed(shed))
        .route("/metrics", get(move || std::future::ready(page.render())));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    // A client of `/flaky`: retries and a breaker, both with metrics.
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let client = ServiceBuilder::new()
        .retry_with(
            RetryPolicy::builder()
                .classify(SkipRejections(HttpRetry::default()))
                .with_metrics()
                .build()?,
        )
        .circuit_breaker(
            CircuitBreakerLayer::builder()
                .name("flaky")
                .consecutive_failures(4)
                .classify(HttpClassifier)
                .with_metrics()
                .build()?,
        )
        .service(service_fn(move |request: http::Request<Full<Bytes>>| {
            let hyper = hyper.clone();
            async move {
                let response = hyper.request(request).await?;
                let (head, body) = response.into_parts();
                Ok::<_, BoxError>(http::Response::from_parts(
                    head,
                    body.collect().await?.to_bytes(),
                ))
            }
        }));
    for _ in 0..5 {
        let request = http::Request::get(format!("http://{addr}/flaky")).body(Full::default())?;
        let _ = client.clone().oneshot(request).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // What Prometheus would scrape.
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let uri: http::Uri = format!("http://{addr}/metrics").parse()?;
    let page = hyper
        .get(uri)
        .await?
        .into_body()
        .collect()
        .await?
        .to_bytes();
    println!("{}", String::from_utf8_lossy(&page));
    Ok(())
}
