//! A three-member control plane in one process: bootstrap, join through the
//! admin API, writes through a follower, the Watch stream, leader failure
//! and a restart from the data directory.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use controlplane::{ControlPlane, ControlPlaneConfig, ControlPlaneHandle, NodeId, Role};
use proto::admin::admin_client::AdminClient;
use proto::admin::{
    AclAddRequest, ClusterJoinRequest, ClusterStatusRequest, UserAddRequest, UserGetRequest, UserListRequest,
};
use proto::auth::BearerToken;
use proto::controlplane::control_plane_client::ControlPlaneClient;
use proto::controlplane::watch_event::Event;
use proto::controlplane::{acl_who, change, AclRule, AclWho, HeartbeatRequest, RouteBatch, WatchRequest};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;

const TOKEN: &str = "cluster-secret";
const PATIENCE: Duration = Duration::from_secs(30);

type Admin = AdminClient<InterceptedService<Channel, BearerToken>>;

fn config(node_id: NodeId, data_dir: &Path, bind: SocketAddr, bootstrap: bool) -> ControlPlaneConfig {
    let mut config = ControlPlaneConfig::new(node_id, data_dir, bind);
    config.bootstrap = bootstrap;
    config.token = Some(TOKEN.to_owned());
    config.heartbeat_interval = Duration::from_millis(100);
    config.election_timeout_min = Duration::from_millis(600);
    config.election_timeout_max = Duration::from_millis(1200);
    // Small, so the test also exercises snapshots and log compaction.
    config.snapshot_every = 5;
    config
}

async fn channel(endpoint: &str) -> Result<Channel> {
    Ok(tonic::transport::Endpoint::from_shared(endpoint.to_owned())?.connect().await?)
}

async fn admin(node: &ControlPlaneHandle) -> Result<Admin> {
    let token = BearerToken::new(Some(TOKEN))?;
    Ok(AdminClient::with_interceptor(channel(&node.endpoint()).await?, token))
}

/// Polls `check` until it holds or `PATIENCE` runs out.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn has_user(node: &ControlPlaneHandle, name: &str) -> bool {
    node.read(|state| state.user(name).is_some())
}

async fn add_user(admin: &mut Admin, name: &str) -> Result<u64> {
    let request =
        UserAddRequest { username: name.to_owned(), password: "pw".to_owned(), ..Default::default() };
    Ok(admin.user_add(request).await.with_context(|| format!("adding {name}"))?.into_inner().index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_survive_leader_loss_and_restart() -> Result<()> {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?, tempfile::tempdir()?];
    let any_port: SocketAddr = "127.0.0.1:0".parse()?;
    let node1 = ControlPlane::start(config(1, dirs[0].path(), any_port, true)).await?;
    let node2 = ControlPlane::start(config(2, dirs[1].path(), any_port, false)).await?;
    let node3 = ControlPlane::start(config(3, dirs[2].path(), any_port, false)).await?;
    assert_eq!(node1.wait_for_leader(PATIENCE).await, Some(1));
    assert_eq!(node2.status().role, Role::Learner, "a node with an empty store waits to be joined");

    // The token is required.
    let mut no_token = AdminClient::new(channel(&node1.endpoint()).await?);
    let refused = no_token.user_list(UserListRequest {}).await.expect_err("no token");
    assert_eq!(refused.code(), Code::Unauthenticated);

    // Join 2 and 3 through the admin API of node 1.
    let mut admin1 = admin(&node1).await?;
    for node in [&node2, &node3] {
        let joined = admin1
            .cluster_join(ClusterJoinRequest { addr: node.endpoint(), learner: false })
            .await?
            .into_inner();
        assert_eq!(joined.node_id, node.node_id());
    }
    let status = admin1.cluster_status(ClusterStatusRequest {}).await?.into_inner();
    assert_eq!(status.leader, Some(1));
    let roles: Vec<(u64, String, bool)> =
        status.controlplane.iter().map(|member| (member.id, member.role.clone(), member.voter)).collect();
    assert_eq!(
        roles,
        vec![(1, "leader".into(), true), (2, "follower".into(), true), (3, "follower".into(), true)]
    );

    // A write through a follower is forwarded to the leader and applied everywhere.
    let mut admin2 = admin(&node2).await?;
    add_user(&mut admin2, "alice").await?;
    let nodes = [&node1, &node2, &node3];
    eventually("alice on every member", || nodes.iter().all(|node| has_user(node, "alice"))).await?;
    let hash = node3.read(|state| state.user("alice").map(|user| user.password_hash.clone()));
    assert!(hash.is_some_and(|hash| hash.starts_with("$argon2id$")), "only the hash is stored");

    // Clear errors.
    let missing = admin2.user_get(UserGetRequest { username: "nobody".into() }).await.expect_err("unknown");
    assert_eq!(missing.code(), Code::NotFound);
    let duplicate = add_user(&mut admin2, "alice").await.expect_err("duplicate");
    let duplicate = duplicate.downcast_ref::<tonic::Status>().map(|status| status.code());
    assert_eq!(duplicate, Some(Code::AlreadyExists));
    let bad_rule = AclRule {
        who: Some(AclWho { who: Some(acl_who::Who::IpNetwork("10.0.0.0/99".into())) }),
        action: proto::controlplane::AclAction::Publish.into(),
        topic_filter: "a/#".into(),
        permission: proto::controlplane::AclPermission::Allow.into(),
        id: 0,
    };
    let refused =
        admin2.acl_add(AclAddRequest { rule: Some(bad_rule), position: None }).await.expect_err("cidr");
    assert_eq!(refused.code(), Code::InvalidArgument);

    // Watch from a follower: a snapshot first, then a delta.
    let token = BearerToken::new(Some(TOKEN))?;
    let mut watch_client = ControlPlaneClient::with_interceptor(channel(&node3.endpoint()).await?, token);
    let mut stream = watch_client.watch(WatchRequest { node_id: 100, last_index: None }).await?.into_inner();
    let first = stream.message().await?.context("stream ended")?;
    let Some(Event::Snapshot(snapshot)) = first.event else {
        bail!("expected a snapshot first, got {first:?}")
    };
    assert!(snapshot.users.iter().any(|user| user.username == "alice"));
    assert_eq!(snapshot.controlplane_members.len(), 3);
    let bob_index = add_user(&mut admin1, "bob").await?;
    let delta = loop {
        let event = stream.message().await?.context("stream ended")?;
        match event.event {
            Some(Event::Delta(delta)) if delta.index == bob_index => break delta,
            Some(Event::Delta(delta)) if delta.index < bob_index => continue,
            other => bail!("expected bob's delta, got {other:?}"),
        }
    };
    assert!(matches!(
        &delta.changes[0].change,
        Some(change::Change::UserUpserted(user)) if user.username == "bob"
    ));

    // Route registration and heartbeats from a data-plane node, through a follower.
    let routes = RouteBatch { node_id: 100, add: vec!["sensors/+/temp".into()], ..Default::default() };
    watch_client.register_routes(routes).await?;
    let heartbeat = HeartbeatRequest {
        node_id: 100,
        address: "127.0.0.1:7100".into(),
        connections: 2,
        snapshot_index: 0,
    };
    watch_client.heartbeat(heartbeat).await?;
    eventually("the route on node 1", || node1.read(|state| state.routes().contains_key("sensors/+/temp")))
        .await?;
    eventually("the data-plane node on node 1", || {
        node1.read(|state| state.dataplane_node(100).is_some_and(|node| node.address == "127.0.0.1:7100"))
    })
    .await?;

    // A watcher that resumes from the index it holds gets only what follows.
    let resume_from = node3.applied_index().context("node 3 applied something")?;
    let mut resumed =
        watch_client.watch(WatchRequest { node_id: 101, last_index: Some(resume_from) }).await?.into_inner();
    let carol_index = add_user(&mut admin2, "carol").await?;
    let event = resumed.message().await?.context("stream ended")?;
    match event.event {
        Some(Event::Delta(delta)) => assert!(delta.index > resume_from && delta.index <= carol_index),
        other => bail!("a resumed watch starts with a delta, got {other:?}"),
    }

    // Lose the leader: the others elect a new one and keep the data.
    let old_leader_addr = node1.local_addr();
    node1.shutdown().await?;
    let new_leader = node2.wait_for_leader(PATIENCE).await;
    eventually("a new leader", || {
        let leader = node2.status().leader;
        leader.is_some() && leader != Some(1) && node3.status().leader == leader
    })
    .await?;
    assert!(new_leader.is_some());
    assert!(has_user(&node2, "alice") && has_user(&node3, "alice"));
    add_user(&mut admin2, "dave").await.context("writes work with two of three")?;
    eventually("dave on 2 and 3", || has_user(&node2, "dave") && has_user(&node3, "dave")).await?;

    // Restart the old leader on its data directory: it catches up on its own.
    let node1 = ControlPlane::start(config(1, dirs[0].path(), old_leader_addr, true)).await?;
    assert!(has_user(&node1, "alice"), "state restored from its own data before catching up");
    eventually("the restarted member catches up", || has_user(&node1, "dave")).await?;
    eventually("the restarted member is a follower", || {
        node1.status().role == Role::Follower && node1.status().leader.is_some()
    })
    .await?;

    for node in [node1, node2, node3] {
        node.shutdown().await?;
    }
    Ok(())
}
