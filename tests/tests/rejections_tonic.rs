//! Rejections from layers in a tonic server become gRPC statuses, seen by a real tonic
//! client over HTTP/2 on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use http::Request;
use tokio::net::TcpListener;
use tonic::transport::{Channel, Server};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::filter::FilterLayer;
use tower::ServiceBuilder;
use tower_bulwark::{BoxError, HandleRejectionsLayer, Rejection, RejectionKind};

/// Refuses calls as the `x-test-reject` metadata says, the way a bulwark layer would.
fn refuse_on_demand<B>(request: Request<B>) -> Result<Request<B>, BoxError> {
    let Some(what) = request.headers().get("x-test-reject") else {
        return Ok(request);
    };
    let rejection = match what.as_bytes() {
        b"circuit-open" => Rejection::new(RejectionKind::CircuitOpen, "users")
            .with_retry_after(Duration::from_millis(1250)),
        b"overloaded" => Rejection::new(RejectionKind::Overloaded, "shed")
            .with_retry_after(Duration::from_millis(200)),
        b"deadline" => Rejection::new(RejectionKind::DeadlineExceeded, "edge"),
        _ => return Err("not a rejection".into()),
    };
    Err(rejection.into())
}

async fn serve() -> SocketAddr {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        let _keep_reporting = reporter;
        Server::builder()
            .layer(
                ServiceBuilder::new()
                    .layer(HandleRejectionsLayer::new())
                    .layer(FilterLayer::new(refuse_on_demand)),
            )
            .add_service(health)
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    addr
}

async fn check(
    addr: SocketAddr,
    reject: Option<&'static str>,
) -> Result<ServingStatus, tonic::Status> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    if let Some(what) = reject {
        request
            .metadata_mut()
            .insert("x-test-reject", what.parse().unwrap());
    }
    let response = client.check(request).await?;
    Ok(response.into_inner().status())
}

#[tokio::test]
async fn calls_pass_when_nothing_rejects() {
    let addr = serve().await;
    assert_eq!(check(addr, None).await.unwrap(), ServingStatus::Serving);
}

#[tokio::test]
async fn rejections_arrive_as_grpc_statuses_with_pushback() {
    let addr = serve().await;
    let cases = [
        (
            "circuit-open",
            Code::Unavailable,
            "circuit open",
            Some("1250"),
        ),
        // A shed: gRPC's "do not retry", whatever wait the layer gave.
        (
            "overloaded",
            Code::ResourceExhausted,
            "overloaded",
            Some("-1"),
        ),
        (
            "deadline",
            Code::DeadlineExceeded,
            "deadline exceeded",
            None,
        ),
    ];
    for (what, code, message, pushback) in cases {
        let status = check(addr, Some(what)).await.unwrap_err();
        assert_eq!(status.code(), code, "{what}: {status:?}");
        // The kind, not the server's internal layer names.
        assert_eq!(status.message(), message, "{what}");
        let header = status.metadata().get("grpc-retry-pushback-ms");
        assert_eq!(header.map(|v| v.to_str().unwrap()), pushback, "{what}");
    }
}

#[tokio::test]
async fn other_errors_arrive_as_unknown() {
    let addr = serve().await;
    let status = check(addr, Some("other")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unknown);
    assert_eq!(status.message(), "internal error");
}
