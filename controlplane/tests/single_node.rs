//! One bootstrapped member (the standalone shape): data-plane liveness and
//! expiry, configuration documents, bans, leave refusals, a restart from
//! the data directory, and the peer secret on the Watch stream.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use controlplane::state::{DataPlaneState, ShareGroupKey};
use controlplane::{ControlPlane, ControlPlaneConfig, ControlPlaneHandle, Role};
use proto::admin::admin_client::AdminClient;
use proto::admin::{
    BannedAddRequest, BannedDeleteRequest, BannedListRequest, ClusterLeaveRequest, ClusterStatusRequest,
    ConfigKind, ConfigListRequest, ConfigPutRequest, TokenAddRequest, TokenRole, UserAddRequest,
};
use proto::auth::BearerToken;
use proto::controlplane::control_plane_client::ControlPlaneClient;
use proto::controlplane::watch_event::Event;
use proto::controlplane::{
    change, Ban, BanKey, BanKind, ConfigDocument, HeartbeatRequest, RouteBatch, ShareSubscription,
    WatchRequest,
};
use tonic::Code;

const PATIENCE: Duration = Duration::from_secs(20);

fn config(data_dir: &std::path::Path, bind: SocketAddr) -> ControlPlaneConfig {
    let mut config = ControlPlaneConfig::new(1, data_dir, bind);
    config.bootstrap = true;
    config.heartbeat_interval = Duration::from_millis(50);
    config.election_timeout_min = Duration::from_millis(200);
    config.election_timeout_max = Duration::from_millis(400);
    config.dataplane_down_after = Duration::from_millis(300);
    config.dataplane_grace_period = Duration::from_millis(300);
    config
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(())
}

async fn channel(node: &ControlPlaneHandle) -> Result<tonic::transport::Channel> {
    Ok(tonic::transport::Endpoint::from_shared(node.endpoint())?.connect().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_member_expires_silent_dataplane_nodes_and_restarts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = ControlPlane::start(config(dir.path(), "127.0.0.1:0".parse()?)).await?;
    assert_eq!(node.wait_for_leader(PATIENCE).await, Some(1));
    assert_eq!(node.token(), None);
    let mut admin =
        AdminClient::with_interceptor(channel(&node).await?, BearerToken::new(Some(node.admin_token()))?);
    let node7 = TokenAddRequest { role: TokenRole::Dataplane.into(), node_id: Some(7) };
    let node7_token = admin.token_add(node7).await?.into_inner().token;
    let mut dataplane =
        ControlPlaneClient::with_interceptor(channel(&node).await?, BearerToken::new(Some(&node7_token))?);

    // A data-plane node registers routes and a share member, then goes silent.
    dataplane
        .heartbeat(HeartbeatRequest {
            node_id: 7,
            address: "127.0.0.1:7007".into(),
            connections: 1,
            snapshot_index: 0,
        })
        .await?;
    let batch = RouteBatch {
        node_id: 7,
        add: vec!["a/#".into()],
        share_add: vec![ShareSubscription {
            group: "g".into(),
            topic_filter: "t".into(),
            client_id: "c".into(),
        }],
        ..Default::default()
    };
    dataplane.register_routes(batch).await?;
    let bad = RouteBatch { node_id: 7, add: vec!["a/#/b".into()], ..Default::default() };
    assert_eq!(dataplane.register_routes(bad).await.expect_err("bad filter").code(), Code::InvalidArgument);
    let key = ShareGroupKey { group: "g".into(), topic_filter: "t".into() };
    assert!(node.read(|state| state.routes().contains_key("a/#") && state.share_groups().contains_key(&key)));
    eventually("node 7 marked down", || {
        node.read(|state| {
            matches!(state.dataplane_node(7).map(|n| n.state), Some(DataPlaneState::Down { .. }))
        })
    })
    .await?;
    eventually("node 7 removed with its routes", || {
        node.read(|state| {
            state.dataplane_node(7).is_none() && state.routes().is_empty() && state.share_groups().is_empty()
        })
    })
    .await?;

    // Configuration documents and bans.
    let document = ConfigDocument { name: "to-cloud".into(), json: r#"{"remote":"mqtt://x"}"#.into() };
    admin.config_put(ConfigPutRequest { kind: ConfigKind::Bridge.into(), document: Some(document) }).await?;
    let listed = admin.config_list(ConfigListRequest { kind: ConfigKind::Bridge.into() }).await?.into_inner();
    assert_eq!(listed.documents.len(), 1);
    let unset = admin.config_list(ConfigListRequest { kind: 0 }).await.expect_err("kind required");
    assert_eq!(unset.code(), Code::InvalidArgument);
    let ban = Ban {
        kind: BanKind::IpAddress.into(),
        value: "10.1.2.3".into(),
        reason: "spam".into(),
        ..Default::default()
    };
    admin.banned_add(BannedAddRequest { ban: Some(ban) }).await?;
    let banned = admin.banned_list(BannedListRequest {}).await?.into_inner().banned;
    assert_eq!(banned.len(), 1);
    assert_eq!(banned[0].value, "10.1.2.3/32");
    let gone = BanKey { kind: BanKind::Username.into(), value: "nobody".into() };
    let missing =
        admin.banned_delete(BannedDeleteRequest { key: Some(gone) }).await.expect_err("no such ban");
    assert_eq!(missing.code(), Code::NotFound);
    let short =
        Ban { kind: BanKind::ClientId.into(), value: "c1".into(), until_ms: Some(1), ..Default::default() };
    admin.banned_add(BannedAddRequest { ban: Some(short) }).await?;
    eventually("the expired ban removed", || node.read(|state| state.bans().count() == 1)).await?;

    // The last voter cannot leave; an unknown member is not found.
    let last = admin.cluster_leave(ClusterLeaveRequest { node_id: 1 }).await.expect_err("last voter");
    assert_eq!(last.code(), Code::FailedPrecondition);
    let unknown = admin.cluster_leave(ClusterLeaveRequest { node_id: 9 }).await.expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);

    let eve = UserAddRequest {
        username: "eve".into(),
        password: "pw".into(),
        superuser: true,
        ..Default::default()
    };
    admin.user_add(eve).await?;
    let empty = UserAddRequest { username: "frank".into(), ..Default::default() };
    assert_eq!(admin.user_add(empty).await.expect_err("empty password").code(), Code::InvalidArgument);

    // Importing a user with a hash computed elsewhere: stored as it is, and
    // only an argon2id PHC string is taken.
    let imported = controlplane::state::hash_password("from-another-broker")?;
    let grace = UserAddRequest {
        username: "grace".into(),
        password_hash: Some(imported.clone()),
        ..Default::default()
    };
    admin.user_add(grace).await?;
    let stored = node.read(|state| state.user("grace").map(|user| user.password_hash.clone()));
    assert_eq!(stored.as_deref(), Some(imported.as_str()));
    assert!(controlplane::state::verify_password("from-another-broker", &imported));
    let not_argon2id = UserAddRequest {
        username: "heidi".into(),
        password_hash: Some("$2b$12$abcdefghijklmnopqrstuu5Yq0VQ0d8R0G2f0rj2iEcA9nJ0m7Y2".into()),
        ..Default::default()
    };
    assert_eq!(admin.user_add(not_argon2id).await.expect_err("bcrypt").code(), Code::InvalidArgument);
    // An argon2id hash whose cost (4 GiB, 100 passes) would tie up every
    // login's check is refused on import.
    let absurd = UserAddRequest {
        username: "heidi".into(),
        password_hash: Some(
            "$argon2id$v=19$m=4194304,t=100,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                .into(),
        ),
        ..Default::default()
    };
    let refused = admin.user_add(absurd).await.expect_err("absurd cost");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("out of bounds"), "{}", refused.message());
    let both = UserAddRequest {
        username: "heidi".into(),
        password: "pw".into(),
        password_hash: Some(imported),
        superuser: false,
    };
    assert_eq!(admin.user_add(both).await.expect_err("both").code(), Code::InvalidArgument);
    assert!(node.read(|state| state.user("heidi").is_none()), "a refused import adds nothing");

    // Restart on the same data directory: leader again, nothing lost.
    let addr = node.local_addr();
    let applied = node.applied_index().context("applied")?;
    node.shutdown().await?;
    let node = ControlPlane::start(config(dir.path(), addr)).await?;
    assert_eq!(node.wait_for_leader(PATIENCE).await, Some(1));
    eventually("the log re-applied", || node.applied_index() >= Some(applied)).await?;
    assert_eq!(node.status().role, Role::Leader);
    assert!(node.read(|state| state.user("eve").is_some_and(|user| user.superuser)));
    assert_eq!(node.read(|state| state.configs(controlplane::state::ConfigKind::Bridge).len()), 1);
    node.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn start_refuses_a_bad_config_and_a_taken_port() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut bad = config(dir.path(), "127.0.0.1:0".parse()?);
    bad.election_timeout_max = bad.election_timeout_min;
    let error = ControlPlane::start(bad).await.err().context("invalid config accepted")?;
    assert!(error.to_string().contains("election_timeout_max"), "{error}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let other = tempfile::tempdir()?;
    let error =
        ControlPlane::start(config(other.path(), taken.local_addr()?)).await.err().context("bound twice")?;
    assert!(matches!(error, controlplane::StartError::Bind { .. }), "{error}");
    Ok(())
}

/// Reads a Watch stream until it carries a peer secret: the first snapshot's,
/// or a later delta's.
async fn peer_secret_of(node: &ControlPlaneHandle) -> Result<String> {
    let token = BearerToken::new(Some(node.dataplane_token()))?;
    let mut client = ControlPlaneClient::with_interceptor(channel(node).await?, token);
    let request = WatchRequest { node_id: node.node_id(), last_index: None };
    let mut stream = client.watch(request).await?.into_inner();
    loop {
        let event = stream.message().await?.context("stream ended")?;
        match event.event {
            Some(Event::Snapshot(snapshot)) if !snapshot.peer_secret.is_empty() => {
                return Ok(snapshot.peer_secret)
            }
            Some(Event::Delta(delta)) => {
                for change in delta.changes {
                    if let Some(change::Change::PeerSecret(secret)) = change.change {
                        return Ok(secret);
                    }
                }
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_member_makes_a_peer_secret_and_keeps_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut fresh = config(dir.path(), "127.0.0.1:0".parse()?);
    // The default, so housekeeping ticks only once a second.
    fresh.dataplane_down_after = Duration::from_secs(15);
    let started = tokio::time::Instant::now();
    let node = ControlPlane::start(fresh.clone()).await?;
    let secret = tokio::time::timeout(PATIENCE, peer_secret_of(&node)).await.context("no peer secret")??;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "the peer secret took {elapsed:?}");
    assert_eq!(secret.len(), 64, "32 bytes as hex");
    assert!(secret.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f')), "lowercase hex");
    assert_eq!(node.read(|state| state.peer_secret().map(str::to_owned)), Some(secret.clone()));

    // A restart on the same data directory keeps it; a new Watch stream's
    // snapshot carries it.
    let addr = node.local_addr();
    node.shutdown().await?;
    fresh.bind = addr;
    let node = ControlPlane::start(fresh).await?;
    assert_eq!(node.wait_for_leader(PATIENCE).await, Some(1));
    let again = tokio::time::timeout(PATIENCE, peer_secret_of(&node)).await.context("no peer secret")??;
    assert_eq!(again, secret, "the secret is made once");

    // Never in the admin API.
    let mut admin =
        AdminClient::with_interceptor(channel(&node).await?, BearerToken::new(Some(node.admin_token()))?);
    let status = admin.cluster_status(ClusterStatusRequest {}).await?.into_inner();
    assert!(!format!("{status:?}").contains(&secret));
    node.shutdown().await?;
    Ok(())
}
