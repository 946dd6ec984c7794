//! TLS on the gRPC port, over real handshakes with certificates made by
//! rcgen: the right CA connects, a wrong CA or plain HTTP/2 does not; with
//! `verify_peer` a client needs a certificate from the cluster's CA; two
//! members replicate over mutual TLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use controlplane::{ControlPlane, ControlPlaneConfig, ControlPlaneHandle, GrpcTls, NodeId};
use proto::admin::admin_client::AdminClient;
use proto::admin::{ClusterJoinRequest, NodeInfoRequest, UserAddRequest};
use proto::auth::BearerToken;
use proto::tls::ClientTls;

const PATIENCE: Duration = Duration::from_secs(20);

/// A CA and the files of certificates it issued, in a temporary directory.
struct Pki {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
    dir: tempfile::TempDir,
}

impl Pki {
    fn new(name: &str) -> Result<Pki> {
        let ca_key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let ca = params.self_signed(&ca_key)?;
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("ca.pem"), ca.pem())?;
        Ok(Pki { ca, ca_key, dir })
    }

    /// Issues `NAME.pem` / `NAME.key` for 127.0.0.1, usable by a server
    /// and as a client certificate.
    fn issue(&self, name: &str) -> Result<(PathBuf, PathBuf)> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.ca, &self.ca_key)?;
        let (cert_path, key_path) = (self.path(&format!("{name}.pem")), self.path(&format!("{name}.key")));
        std::fs::write(&cert_path, cert.pem())?;
        std::fs::write(&key_path, key.serialize_pem())?;
        Ok((cert_path, key_path))
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn client(&self, identity: Option<&str>) -> Result<ClientTls> {
        let files = identity.map(|name| self.issue(name)).transpose()?;
        Ok(ClientTls::from_files(
            Some(&self.path("ca.pem")),
            files.as_ref().map(|(cert, _)| cert.as_path()),
            files.as_ref().map(|(_, key)| key.as_path()),
        )?)
    }
}

fn config(node_id: NodeId, data_dir: &Path, pki: &Pki, verify_peer: bool) -> Result<ControlPlaneConfig> {
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let mut config = ControlPlaneConfig::new(node_id, data_dir, any);
    config.bootstrap = node_id == 1;
    config.token = Some("member-secret".to_owned());
    config.heartbeat_interval = Duration::from_millis(50);
    config.election_timeout_min = Duration::from_millis(300);
    config.election_timeout_max = Duration::from_millis(600);
    let (certfile, keyfile) = pki.issue(&format!("member{node_id}"))?;
    config.tls = Some(GrpcTls { certfile, keyfile, cacertfile: Some(pki.path("ca.pem")), verify_peer });
    Ok(config)
}

/// A `NodeInfo` call with the admin token over `tls`; the error as text.
async fn node_info(node: &ControlPlaneHandle, tls: &ClientTls) -> Result<u64, String> {
    let endpoint = tls.endpoint(&node.endpoint()).map_err(|error| error.to_string())?;
    let channel = endpoint
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|error| format!("connect: {error:?}"))?;
    let token = BearerToken::new(Some(node.admin_token())).map_err(|error| error.to_string())?;
    let mut admin = AdminClient::with_interceptor(channel, token);
    let reply = admin.node_info(NodeInfoRequest {}).await.map_err(|status| format!("call: {status:?}"))?;
    Ok(reply.into_inner().node_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_tls_needs_the_right_ca() -> Result<()> {
    let pki = Pki::new("cluster ca")?;
    let other = Pki::new("someone else")?;
    let dir = tempfile::tempdir()?;
    let node = ControlPlane::start(config(1, dir.path(), &pki, false)?).await?;
    assert!(node.endpoint().starts_with("https://127.0.0.1:"), "{}", node.endpoint());
    assert_eq!(node.wait_for_leader(PATIENCE).await, Some(1));

    assert_eq!(node_info(&node, &pki.client(None)?).await, Ok(1));
    assert!(node_info(&node, &other.client(None)?).await.is_err(), "a wrong CA was trusted");
    // Plain HTTP/2 to the TLS port gets nowhere.
    let plain = node.endpoint().replacen("https://", "http://", 1);
    let channel = tonic::transport::Endpoint::from_shared(plain)?.connect().await;
    if let Ok(channel) = channel {
        let token = BearerToken::new(Some(node.admin_token()))?;
        assert!(AdminClient::with_interceptor(channel, token).node_info(NodeInfoRequest {}).await.is_err());
    }
    // No CA at all: an https endpoint is refused before connecting.
    assert!(node_info(&node, &ClientTls::none()).await.is_err());
    node.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_peer_needs_a_client_certificate_from_the_cluster_ca() -> Result<()> {
    let pki = Pki::new("cluster ca")?;
    let other = Pki::new("someone else")?;
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let node1 = ControlPlane::start(config(1, dirs[0].path(), &pki, true)?).await?;
    assert_eq!(node1.wait_for_leader(PATIENCE).await, Some(1));

    assert!(node_info(&node1, &pki.client(None)?).await.is_err(), "no client certificate was accepted");
    // A certificate from another CA, presented with the right server CA.
    let (cert, key) = other.issue("intruder")?;
    let foreign = ClientTls::from_files(Some(&pki.path("ca.pem")), Some(&cert), Some(&key))?;
    assert!(node_info(&node1, &foreign).await.is_err(), "a foreign client certificate was accepted");
    assert_eq!(node_info(&node1, &pki.client(Some("admin"))?).await, Ok(1));

    // A second member joins and replicates over mutual TLS.
    let node2 = ControlPlane::start(config(2, dirs[1].path(), &pki, true)?).await?;
    let channel = pki.client(Some("admin"))?.endpoint(&node1.endpoint())?.connect().await?;
    let mut admin = AdminClient::with_interceptor(channel, BearerToken::new(Some(node1.admin_token()))?);
    let join = ClusterJoinRequest { addr: node2.advertise_addr().to_owned(), learner: true };
    assert_eq!(admin.cluster_join(join).await?.into_inner().node_id, 2);
    admin
        .user_add(UserAddRequest { username: "alice".into(), password: "pw".into(), ..Default::default() })
        .await?;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !node2.read(|state| state.user("alice").is_some()) {
        assert!(tokio::time::Instant::now() < deadline, "node 2 never replicated over TLS");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node2.shutdown().await?;
    node1.shutdown().await?;
    Ok(())
}
