//! gRPC services (one file each), error mapping and the listener setup.

pub mod admin;
pub mod data;
pub mod groups;
pub mod http;
pub mod peer;
pub mod status;

use std::future::Future;
use std::sync::Arc;

use strata_proto::v1::admin_server::AdminServer;
use strata_proto::v1::broker_server::BrokerServer;
use strata_proto::v1::groups_server::GroupsServer;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic::transport::server::{Router, TcpIncoming};

use crate::broker::Broker;
use crate::security::tls::{ClientAuth, ReloadingConfig, TlsError};

/// Largest request or response message (a produce request may carry many
/// batches; a fetch response stays below `broker::fetch::MAX_FETCH_BYTES`).
pub const MAX_MESSAGE: usize = 64 << 20;

/// Why a listener stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("{0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("server reflection: {0}")]
    Reflection(String),
}

/// Keeps `grpc.health.v1` in line with `/ready`: SERVING for the whole
/// server ("") and each API once the broker is ready, else NOT_SERVING.
async fn report_health(
    broker: std::sync::Weak<Broker>,
    reporter: tonic_health::server::HealthReporter,
) {
    use tonic_health::ServingStatus;
    const SERVICES: [&str; 4] = [
        "",
        "strata.v1.Broker",
        "strata.v1.Admin",
        "strata.v1.Groups",
    ];
    let mut last = None;
    loop {
        let Some(b) = broker.upgrade() else { return };
        let status = if b.check_ready().is_ok() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        drop(b);
        if last != Some(status) {
            for s in SERVICES {
                reporter.set_service_status(s, status).await;
            }
            last = Some(status);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Serves `router` on `listener`: plaintext, or TLS with the listener's
/// (reloading) server configuration.
async fn run(
    router: Router,
    listener: TcpListener,
    tls: Option<Arc<ReloadingConfig>>,
    what: &'static str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    match tls {
        None => {
            // Options of `Server::builder()` about sockets do not reach an
            // incoming stream: set them here, or Nagle delays every
            // response's trailers.
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await?;
        }
        Some(cfg) => {
            router
                .serve_with_incoming_shutdown(
                    crate::security::tls::incoming(listener, cfg, what),
                    shutdown,
                )
                .await?;
        }
    }
    Ok(())
}

/// Serves the client API on `listener` until `shutdown` resolves.
pub async fn serve(
    broker: Arc<Broker>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let tls = match &broker.config().tls {
        Some(t) => Some(ReloadingConfig::new(t.clone(), t.client_auth)?),
        None => None,
    };
    let (reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(report_health(Arc::downgrade(&broker), reporter));
    // The client listener's services (not the peer API, which shares the
    // descriptor file).
    let reflection = |b: tonic_reflection::server::Builder<'static>| {
        b.register_encoded_file_descriptor_set(strata_proto::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("strata.v1.Broker")
            .with_service_name("strata.v1.Admin")
            .with_service_name("strata.v1.Groups")
            .with_service_name("grpc.health.v1.Health")
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .with_service_name("grpc.reflection.v1alpha.ServerReflection")
    };
    let reflection_v1 = reflection(tonic_reflection::server::Builder::configure())
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let reflection_v1alpha = reflection(tonic_reflection::server::Builder::configure())
        .build_v1alpha()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let router = Server::builder()
        .initial_stream_window_size(Some(32 << 20))
        .initial_connection_window_size(Some(64 << 20))
        .max_frame_size(Some((1 << 24) - 1))
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        // grpc.health.v1 and server reflection (grpcurl and the like).
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            BrokerServer::new(data::DataService::new(Arc::clone(&broker)))
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            AdminServer::new(admin::AdminService::new(Arc::clone(&broker)))
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            GroupsServer::new(groups::GroupsService::new(broker))
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        );
    run(router, listener, tls, "client", shutdown).await
}

/// With TLS, only brokers reach the peer API: a certificate signed by the
/// CA gets through the handshake, and its principal must then be a
/// superuser (the brokers' own principal is one). Refusals are audited.
fn peer_guard(
    broker: &Broker,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone + use<> {
    let auth = broker.config().auth.clone();
    let tls = broker.config().tls.is_some();
    move |req: tonic::Request<()>| {
        if !tls {
            return Ok(req);
        }
        let who = auth.identify(&req);
        if auth.superusers.contains(&who.principal) {
            return Ok(req);
        }
        tracing::warn!(target: "strata::audit", principal = %who.principal,
            peer = %who.peer.map(|p| p.to_string()).unwrap_or_default(),
            "denied on the peer listener: not a broker");
        Err(crate::error::BrokerError::Unauthorized(format!(
            "principal '{}' may not use the peer listener",
            who.principal
        ))
        .into())
    }
}

/// Serves the peer API (Raft traffic, internal RPCs) on `listener`. With
/// TLS, only brokers with a certificate signed by the CA get in.
pub async fn serve_peers(
    broker: Arc<Broker>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let tls = match &broker.config().tls {
        Some(t) => Some(ReloadingConfig::new(t.clone(), ClientAuth::Required)?),
        None => None,
    };
    let router = Server::builder()
        .initial_stream_window_size(Some(16 << 20))
        .initial_connection_window_size(Some(32 << 20))
        .max_frame_size(Some((1 << 24) - 1))
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(1)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(2)))
        .add_service(InterceptedService::new(
            strata_proto::v1::peer_server::PeerServer::new(peer::PeerService::new(Arc::clone(
                &broker,
            )))
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20),
            peer_guard(&broker),
        ));
    run(router, listener, tls, "peer", shutdown).await
}
