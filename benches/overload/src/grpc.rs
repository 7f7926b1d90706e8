//! The gRPC run: a tonic server doing the backend's work (unprotected, or behind
//! `ServerPreset::grpc()?.layer()`), called by a tonic client over one HTTP/2 connection.
//!
//! The service is hand-written on tonic's machinery with the health protocol's messages,
//! so no protoc is needed: `overload.Work/Call` does one call's work and answers `OK`.

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_prost::ProstCodec;
use tower::Service;
use tower_bulwark::presets::ServerPreset;
use tower_bulwark::shed::ShedHandle;
use tower_bulwark::{is_shed_for_overload, BoxError};

use crate::guard::Guard;
use crate::load::{Answer, Caller, CLIENT_TIMEOUT};
use crate::server::MAX_STREAMS;
use crate::shape::Backend;

/// The one method.
const PATH: &str = "/overload.Work/Call";

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The guards measured over gRPC.
pub fn guards() -> [Guard; 2] {
    [Guard::Unprotected, Guard::Preset]
}

/// Serves `backend` behind `guard` (one of [`guards`]) on a loopback port, on the current
/// runtime; returns its address and the shedding layer's handle, if any.
pub async fn serve(
    backend: Backend,
    guard: Guard,
) -> Result<(SocketAddr, Option<ShedHandle>), BoxError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut server = Server::builder().max_concurrent_streams(Some(MAX_STREAMS));
    let service = Work(backend);
    let shed = match guard {
        Guard::Unprotected => {
            let router = server.add_service(service);
            tokio::spawn(router.serve_with_incoming(incoming));
            None
        }
        Guard::Preset => {
            let preset = ServerPreset::grpc()?;
            let router = server.layer(preset.layer()).add_service(service);
            tokio::spawn(router.serve_with_incoming(incoming));
            Some(preset.shed.handle())
        }
        other => return Err(format!("{} is not measured over gRPC", other.name()).into()),
    };
    Ok((addr, shed))
}

/// `overload.Work/Call`.
#[derive(Debug, Clone)]
struct Work(Backend);

impl tonic::server::NamedService for Work {
    const NAME: &'static str = "overload.Work";
}

impl<B> Service<http::Request<B>> for Work
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
        let work = self.clone();
        Box::pin(async move {
            let codec = ProstCodec::<HealthCheckResponse, HealthCheckRequest>::default();
            Ok(tonic::server::Grpc::new(codec).unary(work, request).await)
        })
    }
}

impl tonic::server::UnaryService<HealthCheckRequest> for Work {
    type Response = HealthCheckResponse;
    type Future = BoxFuture<Result<tonic::Response<HealthCheckResponse>, tonic::Status>>;

    fn call(&mut self, _request: tonic::Request<HealthCheckRequest>) -> Self::Future {
        let backend = self.0.clone();
        Box::pin(async move {
            if backend.call().await {
                Ok(tonic::Response::new(HealthCheckResponse { status: 1 }))
            } else {
                Err(tonic::Status::internal("backend closed"))
            }
        })
    }
}

/// Calls `overload.Work/Call` with a 1 s `grpc-timeout`; clones share the connection.
/// `OK` is goodput, errors are sorted by [`classify`].
#[derive(Debug, Clone)]
pub struct GrpcCaller {
    client: tonic::client::Grpc<Channel>,
}

impl GrpcCaller {
    /// A client of `addr` (connects at the first call; needs a runtime).
    pub fn new(addr: SocketAddr) -> Result<Self, BoxError> {
        let channel = Channel::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(GrpcCaller {
            client: tonic::client::Grpc::new(channel),
        })
    }
}

impl Caller for GrpcCaller {
    async fn call(&self) -> Answer {
        let mut client = self.client.clone();
        if client.ready().await.is_err() {
            return Answer::Error;
        }
        let mut request = tonic::Request::new(HealthCheckRequest::default());
        request.set_timeout(CLIENT_TIMEOUT);
        let codec = ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
        let path = PathAndQuery::from_static(PATH);
        match client.unary(request, path, codec).await {
            Ok(_) => Answer::Good,
            Err(status) => classify(&status),
        }
    }
}

/// Sorts a gRPC error: `RESOURCE_EXHAUSTED` marked `x-bulwark-overloaded` is a refusal;
/// the rest are errors, an unmarked `RESOURCE_EXHAUSTED` too (tonic's name for an HTTP/2
/// `ENHANCE_YOUR_CALM`, a server closing a connection that reset too many streams).
pub fn classify(status: &tonic::Status) -> Answer {
    if status.code() == Code::ResourceExhausted && is_shed_for_overload(status.metadata().as_ref())
    {
        Answer::Refused
    } else {
        Answer::Error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_marked_sheds_are_refusals() {
        let mut marked = tonic::metadata::MetadataMap::new();
        marked.insert("x-bulwark-overloaded", "true".parse().unwrap());
        let shed = tonic::Status::with_metadata(Code::ResourceExhausted, "shed", marked.clone());
        assert_eq!(classify(&shed), Answer::Refused);
        let calm = tonic::Status::resource_exhausted("h2 protocol error: ENHANCE_YOUR_CALM");
        assert_eq!(classify(&calm), Answer::Error);
        for code in [Code::Unavailable, Code::DeadlineExceeded, Code::Internal] {
            let status = tonic::Status::with_metadata(code, "", marked.clone());
            assert_eq!(classify(&status), Answer::Error);
        }
    }
}
