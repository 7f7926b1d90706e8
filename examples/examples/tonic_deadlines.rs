//! A tonic server and client with the gRPC presets: the client's deadline reaches the
//! server's handler, calls the server makes inherit what is left, and a handler that runs
//! past it is stopped with `DEADLINE_EXCEEDED`.
//!
//! `cargo run --example tonic_deadlines`
//!
//! The service is hand-written on tonic's server and client machinery with the health
//! protocol's messages (so no protoc is needed): `test.Echo/Call` answers at once, or after
//! the number of milliseconds in the request's `service` field.
//!
//! The client stack is the client preset's `tonic_layer()` (feature `tonic`) around the
//! `Channel`, nothing else: refusals in the stack reach the client as their
//! `tonic::Status` (an attempt timeout as `DEADLINE_EXCEEDED`, an open breaker as
//! `UNAVAILABLE`, not `UNKNOWN`), and request bodies are kept so a retry can send them
//! again. `test.Echo/Call` is marked safe to retry on `UNAVAILABLE`; other methods would be
//! retried only when the call never reached the server.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::{Channel, Server};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower::Service;
use tower_bulwark::presets::{ClientPreset, ServerPreset};
use tower_bulwark::retry::GrpcRetry;
use tower_bulwark::{BoxError, Deadline};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// `test.Echo/Call`: reports the deadline it saw, after sleeping the asked milliseconds.
#[derive(Clone)]
struct Echo;

impl tonic::server::NamedService for Echo {
    const NAME: &'static str = "test.Echo";
}

impl<B> Service<http::Request<B>> for Echo
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        Box::pin(async move {
            let codec =
                tonic_prost::ProstCodec::<HealthCheckResponse, HealthCheckRequest>::default();
            Ok(tonic::server::Grpc::new(codec).unary(Echo, request).await)
        })
    }
}

impl tonic::server::UnaryService<HealthCheckRequest> for Echo {
    type Response = HealthCheckResponse;
    type Future = BoxFuture<Result<tonic::Response<HealthCheckResponse>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<HealthCheckRequest>) -> Self::Future {
        let left = Deadline::current().map(Deadline::remaining);
        Box::pin(async move {
            println!("  server: handler sees {left:?} left");
            let millis: u64 = request.into_inner().service.parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(millis)).await;
            println!("  server: finished {millis} ms of work");
            Ok(tonic::Response::new(HealthCheckResponse { status: 1 }))
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = ServerPreset::grpc()?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let layer = server.layer();
    tokio::spawn(async move {
        Server::builder()
            .layer(layer)
            .add_service(Echo)
            .serve_with_incoming(incoming)
            .await
    });

    let channel = Channel::from_shared(format!("http://{addr}"))?.connect_lazy();
    let retry = GrpcRetry::new().method("/test.Echo/Call")?;
    let preset = ClientPreset::grpc_with("echo", retry)?;
    let mut client = tonic::client::Grpc::new(preset.tonic_layer().service(channel));

    for (work_ms, timeout_ms) in [(10u64, 500u64), (2_000, 300)] {
        println!("call: {work_ms} ms of work, client timeout {timeout_ms} ms");
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: work_ms.to_string(),
        });
        request.set_timeout(Duration::from_millis(timeout_ms));
        client
            .ready()
            .await
            .map_err(|e: BoxError| tonic::Status::unknown(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
        let path = http::uri::PathAndQuery::from_static("/test.Echo/Call");
        match client.unary(request, path, codec).await {
            Ok(_) => println!("  client: OK"),
            Err(status) => println!("  client: {:?} ({})", status.code(), status.message()),
        }
    }
    Ok(())
}
