//! A tonic client under the gRPC client preset, with no glue (feature `tonic`).

use tower::layer::util::{Identity, Stack};
use tower::util::MapRequestLayer;
use tower::ServiceBuilder;
use tower_bulwark_core::GrpcClassifier;

use super::{ClientLayer, ClientPreset};
use crate::retry::{GrpcRetry, ReplayBody, ReplayLayer};
use crate::RejectionsAsStatusLayer;

/// How much of a request body [`ClientPreset::tonic_layer`] keeps to send it again: 64 KiB.
/// A call whose body is larger goes out once, never retried.
pub const TONIC_REPLAY_LIMIT: usize = 64 * 1024;

/// The layer of [`ClientPreset::tonic_layer`]: refusals as `tonic::Status`, request bodies
/// kept for retries, the client preset, and the body tonic's `Channel` takes.
pub type TonicClientLayer = ServiceBuilder<
    Stack<
        MapRequestLayer<IntoTonicBody>,
        Stack<
            ClientLayer<GrpcRetry, GrpcClassifier>,
            Stack<ReplayLayer, Stack<RejectionsAsStatusLayer, Identity>>,
        >,
    >,
>;

/// The function that gives tonic's `Channel` the body type it takes.
pub type IntoTonicBody = fn(http::Request<ReplayBody>) -> http::Request<tonic::body::Body>;

impl ClientPreset<GrpcRetry, GrpcClassifier> {
    /// The whole stack for a tonic client (feature `tonic`): wrap a tonic `Channel` in it
    /// and hand it to the generated client. Outermost first:
    ///
    /// - a [`RejectionsAsStatusLayer`], so that a refusal in the stack reaches the
    ///   generated client as its `tonic::Status` (an open breaker as `UNAVAILABLE`, a full
    ///   bulkhead as `RESOURCE_EXHAUSTED`, an attempt timeout as `DEADLINE_EXCEEDED`), not
    ///   `UNKNOWN`;
    /// - a [`ReplayLayer`] keeping up to [`TONIC_REPLAY_LIMIT`] of each request body, so
    ///   the retry can send it again (a streaming call with a larger body is sent once);
    /// - [`layer`](Self::layer): retry, breaker, bulkhead, deadline propagation
    ///   (`grpc-timeout`), attempt timeout;
    /// - the request body turned into `tonic::body::Body`, which the `Channel` takes.
    ///
    /// ```no_run
    /// use tonic::transport::Channel;
    /// use tonic_health::pb::health_client::HealthClient;
    /// use tonic_health::pb::HealthCheckRequest;
    /// use tower_bulwark::presets::ClientPreset;
    /// use tower_bulwark::retry::GrpcRetry;
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), tower_bulwark::BoxError> {
    /// let channel = Channel::from_static("http://[::1]:50051").connect_lazy();
    /// // Health checks are safe to repeat: retried on UNAVAILABLE.
    /// let retry = GrpcRetry::new().service("grpc.health.v1.Health")?;
    /// let preset = ClientPreset::grpc_with("health", retry)?;
    /// let mut client = HealthClient::new(preset.tonic_layer().service(channel));
    /// let answer = client.check(HealthCheckRequest::default()).await?;
    /// # drop(answer);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// What the generated client sees when the stack refuses a call:
    ///
    /// ```
    /// use tower::{service_fn, ServiceExt};
    /// use tower_bulwark::presets::ClientPreset;
    /// use tower_bulwark::BoxError;
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), BoxError> {
    /// let preset = ClientPreset::grpc("users")?;
    /// preset.breaker.handle().force_open();
    /// // In a real client, the transport is a tonic `Channel`.
    /// let transport = service_fn(|_: http::Request<tonic::body::Body>| async {
    ///     Ok::<_, BoxError>(http::Response::new(String::new()))
    /// });
    /// let client_stack = preset.tonic_layer().service(transport);
    /// let request = http::Request::new(tonic::body::Body::empty());
    /// let error = client_stack.oneshot(request).await.unwrap_err();
    /// let status = tonic::Status::from_error(error);
    /// assert_eq!(status.code(), tonic::Code::Unavailable);
    /// # Ok(())
    /// # }
    /// ```
    pub fn tonic_layer(&self) -> TonicClientLayer {
        let into_tonic_body: IntoTonicBody = |request| request.map(tonic::body::Body::new);
        ServiceBuilder::new()
            .layer(RejectionsAsStatusLayer::new())
            .layer(ReplayLayer::new(TONIC_REPLAY_LIMIT))
            .layer(self.layer())
            .layer(MapRequestLayer::new(into_tonic_body))
    }
}
