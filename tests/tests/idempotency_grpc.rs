//! Idempotency keys on a tonic server, over real HTTP/2 on loopback: a unary answer (data
//! and trailers) is kept and replayed; a trailers-only answer (`NOT_FOUND`) is an answer and
//! is kept; a refusal below the layer (`UNAVAILABLE`) releases the key; the layer's own
//! refusals reach the tonic client as gRPC statuses, not HTTP ones.

use std::net::SocketAddr;
use std::time::Duration;

use http::Request;
use tokio::net::TcpListener;
use tonic::transport::{Channel, Server};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::server::HealthReporter;
use tower::filter::FilterLayer;
use tower::ServiceBuilder;
use tower_bulwark::idempotency::IdempotencyLayer;
use tower_bulwark::{BoxError, HandleRejectionsLayer, Rejection, RejectionKind};

fn refuse_on_demand<B>(request: Request<B>) -> Result<Request<B>, BoxError> {
    if request.headers().contains_key("x-test-reject") {
        let rejection = Rejection::new(RejectionKind::CircuitOpen, "users")
            .with_retry_after(Duration::from_millis(1250));
        return Err(rejection.into());
    }
    Ok(request)
}

async fn serve() -> (SocketAddr, HealthReporter) {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        Server::builder()
            .layer(
                ServiceBuilder::new()
                    .layer(IdempotencyLayer::builder().build().unwrap())
                    .layer(HandleRejectionsLayer::new())
                    .layer(FilterLayer::new(refuse_on_demand)),
            )
            .add_service(health)
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    (addr, reporter)
}

async fn check(
    addr: SocketAddr,
    service: &str,
    key: &str,
    reject: bool,
) -> Result<(ServingStatus, bool), tonic::Status> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    });
    request
        .metadata_mut()
        .insert("idempotency-key", key.parse().unwrap());
    if reject {
        request
            .metadata_mut()
            .insert("x-test-reject", "1".parse().unwrap());
    }
    let response = client.check(request).await?;
    let replayed = response.metadata().contains_key("idempotent-replayed");
    Ok((response.into_inner().status(), replayed))
}

#[tokio::test]
async fn grpc_calls_are_replayed_released_and_refused_over_http2() {
    let (addr, reporter) = serve().await;

    // A unary answer (data + trailers) is kept and replayed from the store.
    assert_eq!(
        check(addr, "", "\"g1\"", false).await.unwrap(),
        (ServingStatus::Serving, false)
    );
    reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    assert_eq!(
        check(addr, "", "\"g1\"", false).await.unwrap(),
        (ServingStatus::Serving, true)
    );

    // A trailers-only answer (NOT_FOUND) is an answer: kept and replayed as such.
    let first = check(addr, "nope", "\"g2\"", false).await.unwrap_err();
    assert_eq!(first.code(), Code::NotFound);
    let replay = check(addr, "nope", "\"g2\"", false).await.unwrap_err();
    assert_eq!(replay.code(), Code::NotFound, "{replay:?}");
    assert!(replay.metadata().contains_key("idempotent-replayed"));

    // A rejection below the layer (UNAVAILABLE, trailers-only) releases the key.
    let refused = check(addr, "", "\"g3\"", true).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert_eq!(
        check(addr, "", "\"g3\"", false).await.unwrap(),
        (ServingStatus::NotServing, false)
    );

    // The layer's own refusals reach a tonic client as gRPC statuses.
    let bad = check(addr, "", "unquoted", false).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    assert!(bad.message().contains("structured-field string"), "{bad:?}");
    let reused = check(addr, "other", "\"g1\"", false).await.unwrap_err();
    assert_eq!(reused.code(), Code::FailedPrecondition, "{reused:?}");
}
