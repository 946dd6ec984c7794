//! The three ways to run `mqttd`: standalone (an embedded single-voter
//! control plane plus one data-plane node, the default), a control-plane
//! member alone, or a data-plane node alone.
//!
//! Standalone mode goes through the same contract as a cluster: the data
//! plane follows the embedded control plane over loopback gRPC, exactly as
//! it would follow a remote one, with a credential the embedded control
//! plane makes for it in memory.

use std::time::Duration;

use anyhow::{bail, Context};
use controlplane::{ControlPlane, ControlPlaneConfig, ControlPlaneHandle};
use dataplane::cluster::link::LinkConfig;
use proto::tls::ClientTls;
use tracing::info;

use crate::config::Config;

/// Time allowed for connections to close on shutdown.
const GRACE: Duration = Duration::from_secs(5);

/// Which parts this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum Role {
    /// Control plane and one data-plane node in one process (the default).
    Standalone,
    /// One control-plane (Raft) member.
    Controlplane,
    /// One data-plane node following the control plane in `dataplane.controlplane`.
    Dataplane,
}

pub async fn run(role: Role, config: Config) -> anyhow::Result<()> {
    // Created private (0700): it holds the admin token and the Raft log.
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.node.data_dir)
        .with_context(|| format!("node.data_dir: cannot create {}", config.node.data_dir.display()))?;
    match role {
        Role::Standalone => standalone(config).await,
        Role::Controlplane => controlplane_only(config).await,
        Role::Dataplane => dataplane_only(config).await,
    }
}

fn controlplane_config(config: &Config, bootstrap: bool) -> anyhow::Result<ControlPlaneConfig> {
    let section = &config.controlplane;
    let mut cp = ControlPlaneConfig::new(config.node.id, &config.node.data_dir, section.bind);
    cp.bootstrap = bootstrap;
    cp.token = section.token.clone();
    cp.advertise_addr = section.advertise.clone();
    cp.dataplane_down_after = Duration::from_secs(section.dataplane_down_after);
    cp.dataplane_grace_period = Duration::from_secs(section.dataplane_grace_period);
    if section.tls.enabled {
        let tls = &section.tls;
        let (Some(certfile), Some(keyfile)) = (&tls.certfile, &tls.keyfile) else {
            bail!("controlplane.tls.certfile and controlplane.tls.keyfile: required when controlplane.tls.enabled");
        };
        cp.tls = Some(controlplane::GrpcTls {
            certfile: certfile.clone(),
            keyfile: keyfile.clone(),
            cacertfile: tls.cacertfile.clone(),
            verify_peer: tls.verify_peer,
        });
    }
    cp.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(cp)
}

async fn start_controlplane(config: &Config, bootstrap: bool) -> anyhow::Result<ControlPlaneHandle> {
    let handle = ControlPlane::start(controlplane_config(config, bootstrap)?)
        .await
        .map_err(|e| anyhow::anyhow!("control plane: {e}"))?;
    info!(node = config.node.id, addr = %handle.local_addr(), "control plane serving gRPC (admin, Raft, Watch)");
    Ok(handle)
}

fn link_config(config: &Config, endpoints: Vec<String>, token: Option<String>, tls: ClientTls) -> LinkConfig {
    LinkConfig {
        node_id: config.node.id,
        endpoints,
        token,
        tls,
        advertise: config.link.peer_advertise.clone().unwrap_or_else(|| config.link.peer_bind.clone()),
        heartbeat_interval: Duration::from_secs(config.link.heartbeat_interval),
        peer_bind: None,
        peers: dataplane::cluster::peer::PeerSettings {
            tls: None,
            queue_messages: config.link.peer_queue_messages,
            ack_timeout: Duration::from_millis(config.link.peer_ack_timeout_ms),
        },
    }
}

/// Mutual TLS on peer links, from `[dataplane.peer_tls]` (checked complete
/// when the configuration was read).
fn peer_tls(
    section: &crate::config::PeerTlsSection,
) -> anyhow::Result<Option<dataplane::cluster::peer::PeerTls>> {
    let (true, Some(certfile), Some(keyfile), Some(cacertfile)) =
        (section.enabled, &section.certfile, &section.keyfile, &section.cacertfile)
    else {
        return Ok(None);
    };
    let read = |key: &str, path: &std::path::Path| {
        proto::tls::read_pem(path).map_err(|e| anyhow::anyhow!("dataplane.peer_tls.{key}: {e}"))
    };
    let (cert, key, ca) =
        (read("certfile", certfile)?, read("keyfile", keyfile)?, read("cacertfile", cacertfile)?);
    Ok(Some(dataplane::cluster::peer::PeerTls::from_pem(cert, key, ca)))
}

/// The embedded node's TLS when the gRPC port serves TLS: it trusts
/// `controlplane.tls.cacertfile` and presents the server's own certificate
/// (so `verify_peer` accepts it).
fn embedded_link_tls(config: &Config) -> anyhow::Result<ClientTls> {
    let tls = &config.controlplane.tls;
    if !tls.enabled {
        return Ok(ClientTls::none());
    }
    let Some(cacertfile) = &tls.cacertfile else {
        bail!(
            "controlplane.tls.cacertfile: required with TLS in standalone mode (the embedded data plane \
             verifies the gRPC port with it; the certificate must name 127.0.0.1)"
        );
    };
    ClientTls::from_files(Some(cacertfile), tls.certfile.as_deref(), tls.keyfile.as_deref())
        .map_err(|e| anyhow::anyhow!("controlplane.tls: {e}"))
}

async fn standalone(config: Config) -> anyhow::Result<()> {
    let controlplane = start_controlplane(&config, true).await?;
    // The embedded node presents the in-process credential made for it.
    let token = Some(controlplane.dataplane_token().to_owned());
    let link = match embedded_link_tls(&config) {
        Ok(tls) => link_config(&config, vec![controlplane.endpoint()], token, tls),
        Err(error) => {
            let _ = controlplane.shutdown().await;
            return Err(error);
        }
    };
    let node = dataplane::Node::start_with(
        config.dataplane.clone(),
        config.node.name.clone(),
        Some(link),
        extensions(),
    )
    .await;
    let node = match node {
        Ok(node) => node,
        Err(error) => {
            let _ = controlplane.shutdown().await;
            return Err(error.into());
        }
    };
    info!(node = %config.node.name, version = env!("CARGO_PKG_VERSION"), "mqttd started (standalone)");
    crate::wait_for_signal().await?;
    info!("shutting down");
    node.shutdown(GRACE).await;
    controlplane.shutdown().await.map_err(|e| anyhow::anyhow!("control plane: {e}"))?;
    Ok(())
}

async fn controlplane_only(config: Config) -> anyhow::Result<()> {
    if config.controlplane.token.is_none() {
        tracing::warn!(
            "no controlplane.token_file (member token): this member can neither join a cluster nor be \
             joined, nor speak Raft to others; it can only run alone"
        );
    }
    let controlplane = start_controlplane(&config, config.controlplane.bootstrap).await?;
    info!(node = config.node.id, version = env!("CARGO_PKG_VERSION"), "mqttd started (control plane)");
    crate::wait_for_signal().await?;
    info!("shutting down");
    controlplane.shutdown().await.map_err(|e| anyhow::anyhow!("control plane: {e}"))?;
    Ok(())
}

async fn dataplane_only(config: Config) -> anyhow::Result<()> {
    let endpoints = config.link.endpoints();
    if endpoints.is_empty() {
        bail!("dataplane.controlplane: expected the control-plane members, e.g. --set dataplane.controlplane=127.0.0.1:50051");
    }
    let token = config.link.token.clone().or_else(|| config.controlplane.token.clone());
    if token.is_none() {
        bail!(
            "dataplane.token_file: a data-plane node needs a credential; make one with \
             `mqttctl tokens add --role dataplane --node-id {}` and give it with \
             --set dataplane.token_file=FILE (or share controlplane.token_file)",
            config.node.id
        );
    }
    let tls = &config.link.tls;
    let link_tls = if tls.enabled {
        let Some(cacertfile) = &tls.cacertfile else {
            bail!("dataplane.tls.cacertfile: required when dataplane.tls.enabled (the members' CA)");
        };
        ClientTls::from_files(Some(cacertfile), tls.certfile.as_deref(), tls.keyfile.as_deref())
            .map_err(|e| anyhow::anyhow!("dataplane.tls: {e}"))?
    } else {
        ClientTls::none()
    };
    let mut link = link_config(&config, endpoints, token, link_tls);
    let peer_bind = config.link.peer_bind.parse().with_context(|| {
        format!("dataplane.peer_bind: expected ADDR:PORT, got {:?}", config.link.peer_bind)
    })?;
    link.peer_bind = Some(peer_bind);
    link.peers.tls = peer_tls(&config.link.peer_tls)?;
    let node = dataplane::Node::start_with(
        config.dataplane.clone(),
        config.node.name.clone(),
        Some(link),
        extensions(),
    )
    .await?;
    info!(node = %config.node.name, version = env!("CARGO_PKG_VERSION"), "mqttd started (data plane)");
    crate::wait_for_signal().await?;
    info!("shutting down");
    node.shutdown(GRACE).await;
    Ok(())
}

/// What `mqttd` adds to the data plane's core: the auth backends with heavy
/// dependencies (`auth-backends`).
fn extensions() -> dataplane::hooks::Extensions {
    dataplane::hooks::Extensions {
        backends: Some(std::sync::Arc::new(auth_backends::Factory)),
        ..Default::default()
    }
}
