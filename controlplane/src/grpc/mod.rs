//! The gRPC server: one port serves Raft's own RPCs (`raft.rs`), the Watch
//! stream, route registration and heartbeats (`controlplane.rs`) and the
//! admin API (`admin.rs`), every service behind the credential check of its
//! role (`auth.rs`).
//! `status.rs` maps our errors to gRPC status codes.
//!
//! Invariant: handlers never panic on input; bad input is `InvalidArgument`,
//! a missing thing `NotFound`, no leader `Unavailable`.

mod admin;
mod auth;
mod controlplane;
mod raft;
mod status;

use std::sync::Arc;

use proto::admin::admin_server::AdminServer;
use proto::controlplane::control_plane_server::ControlPlaneServer;
use proto::raft::raft_server::RaftServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Server, ServerTlsConfig};

pub(crate) use admin::AdminService;
pub(crate) use auth::{Credentials, ServerAuth, Service};
pub(crate) use controlplane::ControlPlaneService;
pub(crate) use raft::RaftService;

use crate::network::MAX_MESSAGE_BYTES;

/// Serves the three services on `listener` (over TLS when `tls` is given)
/// until `shutdown` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    raft: RaftService,
    controlplane: ControlPlaneService,
    admin: AdminService,
    credentials: Arc<Credentials>,
    tls: Option<ServerTlsConfig>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let raft = RaftServer::new(raft)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let controlplane = ControlPlaneServer::new(controlplane).max_encoding_message_size(MAX_MESSAGE_BYTES);
    let admin = AdminServer::new(admin);
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    builder
        .add_service(InterceptedService::new(raft, ServerAuth::new(credentials.clone(), Service::Raft)))
        .add_service(InterceptedService::new(
            controlplane,
            ServerAuth::new(credentials.clone(), Service::ControlPlane),
        ))
        .add_service(InterceptedService::new(admin, ServerAuth::new(credentials, Service::Admin)))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), async move {
            // An error means the sender is gone, which is a shutdown too.
            let _ = shutdown.wait_for(|stopped| *stopped).await;
        })
        .await
}
