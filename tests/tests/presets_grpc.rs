//! The gRPC presets end to end: a tonic server (tonic-health's service) behind the server
//! preset, a tonic client through the client preset, over HTTP/2 on loopback.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tonic::transport::{Channel, Server};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::ServiceBuilder;
use tower_bulwark::breaker::State;
use tower_bulwark::health::DrainHandle;
use tower_bulwark::presets::{ClientPreset, ServerPreset};
use tower_bulwark::retry::{GrpcRetry, ReplayBody, ReplayLayer};

async fn serve() -> (SocketAddr, DrainHandle) {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let preset = ServerPreset::grpc().unwrap();
    let drain = preset.drain.handle();
    let layer = preset.layer();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        let _keep_reporting = reporter;
        Server::builder()
            .layer(layer)
            .add_service(health)
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    (addr, drain)
}

#[tokio::test]
async fn calls_pass_both_presets_and_a_drained_server_trips_the_client_breaker() {
    let (addr, drain) = serve().await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    // Health checks are safe to repeat: retried on UNAVAILABLE.
    let retry = GrpcRetry::new().service("grpc.health.v1.Health").unwrap();
    let preset = ClientPreset::grpc_with("health", retry).unwrap();
    let breaker = preset.breaker.handle();
    let stack = ServiceBuilder::new()
        .layer(ReplayLayer::new(64 * 1024))
        .layer(preset.layer())
        .map_request(|request: http::Request<ReplayBody>| request.map(tonic::body::Body::new))
        .service(channel);
    let mut client = HealthClient::new(stack);
    let check = || HealthCheckRequest {
        service: String::new(),
    };

    let status = client.check(check()).await.unwrap().into_inner().status();
    assert_eq!(status, ServingStatus::Serving);

    // Draining: the server answers UNAVAILABLE; the client preset retries within its
    // budget, the breaker counts the failures and opens after 5, and from then on calls
    // are refused locally.
    drain.drain();
    for _ in 0..3 {
        let error = client.check(check()).await.unwrap_err();
        assert!(
            matches!(error.code(), Code::Unavailable | Code::Unknown),
            "{error:?}"
        );
    }
    assert_eq!(breaker.snapshot().state, State::Open);
}
