//! Who may call what, over real gRPC on loopback: no call without a
//! credential; the admin token file; API tokens by role (a data-plane token
//! speaks only for its node id and cannot administer; an admin token cannot
//! speak Raft); deleted tokens stop working; tokens and the admin token
//! survive a restart; a node without the member token cannot be joined.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use controlplane::{ControlPlane, ControlPlaneConfig, ControlPlaneHandle, NodeId, ADMIN_TOKEN_FILE};
use proto::admin::admin_client::AdminClient;
use proto::admin::{
    ClusterJoinRequest, NodeInfoRequest, TokenAddRequest, TokenDeleteRequest, TokenListRequest, TokenRole,
    UserAddRequest, UserListRequest,
};
use proto::auth::BearerToken;
use proto::controlplane::control_plane_client::ControlPlaneClient;
use proto::controlplane::{HeartbeatRequest, RouteBatch, WatchRequest};
use proto::raft::raft_client::RaftClient;
use proto::raft::RaftMessage;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;

const PATIENCE: Duration = Duration::from_secs(20);

fn config(node_id: NodeId, data_dir: &Path, bind: SocketAddr, token: Option<&str>) -> ControlPlaneConfig {
    let mut config = ControlPlaneConfig::new(node_id, data_dir, bind);
    config.bootstrap = node_id == 1;
    config.token = token.map(str::to_owned);
    config.heartbeat_interval = Duration::from_millis(50);
    config.election_timeout_min = Duration::from_millis(200);
    config.election_timeout_max = Duration::from_millis(400);
    config
}

async fn channel(node: &ControlPlaneHandle) -> Result<Channel> {
    Ok(tonic::transport::Endpoint::from_shared(node.endpoint())?.connect().await?)
}

type Intercepted = InterceptedService<Channel, BearerToken>;

async fn admin(node: &ControlPlaneHandle, token: Option<&str>) -> Result<AdminClient<Intercepted>> {
    Ok(AdminClient::with_interceptor(channel(node).await?, BearerToken::new(token)?))
}

async fn dataplane(
    node: &ControlPlaneHandle,
    token: Option<&str>,
) -> Result<ControlPlaneClient<Intercepted>> {
    Ok(ControlPlaneClient::with_interceptor(channel(node).await?, BearerToken::new(token)?))
}

async fn raft(node: &ControlPlaneHandle, token: Option<&str>) -> Result<RaftClient<Intercepted>> {
    Ok(RaftClient::with_interceptor(channel(node).await?, BearerToken::new(token)?))
}

fn heartbeat(node_id: NodeId) -> HeartbeatRequest {
    HeartbeatRequest { node_id, address: "127.0.0.1:1".into(), connections: 0, snapshot_index: 0 }
}

fn user(name: &str) -> UserAddRequest {
    UserAddRequest { username: name.into(), password: "pw".into(), ..Default::default() }
}

fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Option<Code> {
    result.err().map(|status| status.code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_needs_the_credential_of_its_role() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("data");
    let node = ControlPlane::start(config(1, &data_dir, "127.0.0.1:0".parse()?, None)).await?;
    assert_eq!(node.wait_for_leader(PATIENCE).await, Some(1));

    // The admin token file: 0600 in a 0700 directory, holding the token.
    let file = data_dir.join(ADMIN_TOKEN_FILE);
    let mode = |path: &Path| std::fs::metadata(path).map(|meta| meta.permissions().mode() & 0o777);
    assert_eq!(mode(&file)?, 0o600);
    assert_eq!(mode(&data_dir)?, 0o700);
    let admin_token = std::fs::read_to_string(&file)?.trim_end().to_owned();
    assert_eq!(admin_token, node.admin_token());

    // No credential, or a wrong one: nothing, on loopback too.
    assert_eq!(
        code(admin(&node, None).await?.user_list(UserListRequest {}).await),
        Some(Code::Unauthenticated)
    );
    assert_eq!(
        code(admin(&node, None).await?.node_info(NodeInfoRequest {}).await),
        Some(Code::Unauthenticated)
    );
    assert_eq!(
        code(admin(&node, Some("guess")).await?.user_add(user("a")).await),
        Some(Code::Unauthenticated)
    );
    assert_eq!(
        code(dataplane(&node, None).await?.heartbeat(heartbeat(1)).await),
        Some(Code::Unauthenticated)
    );
    let vote = RaftMessage { json: b"{}".to_vec() };
    assert_eq!(code(raft(&node, None).await?.vote(vote.clone()).await), Some(Code::Unauthenticated));

    // The admin token administers, and nothing else.
    let mut root = admin(&node, Some(&admin_token)).await?;
    root.user_add(user("alice")).await?;
    assert_eq!(
        code(raft(&node, Some(&admin_token)).await?.vote(vote.clone()).await),
        Some(Code::PermissionDenied)
    );
    assert_eq!(
        code(dataplane(&node, Some(&admin_token)).await?.heartbeat(heartbeat(1)).await),
        Some(Code::PermissionDenied)
    );

    // A data-plane token speaks for its own node id only, and administers nothing.
    let bound = TokenAddRequest { role: TokenRole::Dataplane.into(), node_id: Some(21) };
    let added = root.token_add(bound).await?.into_inner();
    let node21 = added.token.clone();
    assert!(!node21.is_empty());
    let mut dp = dataplane(&node, Some(&node21)).await?;
    dp.heartbeat(heartbeat(21)).await?;
    dp.register_routes(RouteBatch { node_id: 21, add: vec!["a/#".into()], ..Default::default() }).await?;
    assert_eq!(code(dp.heartbeat(heartbeat(22)).await), Some(Code::PermissionDenied));
    let other = RouteBatch { node_id: 22, add: vec!["b/#".into()], ..Default::default() };
    assert_eq!(code(dp.register_routes(other).await), Some(Code::PermissionDenied));
    let watch_other = WatchRequest { node_id: 22, last_index: None };
    assert_eq!(code(dp.watch(watch_other).await), Some(Code::PermissionDenied));
    let mut watch = dp.watch(WatchRequest { node_id: 21, last_index: None }).await?.into_inner();
    assert!(watch.message().await?.is_some(), "its own Watch stream starts with a snapshot");
    let mut dp_admin = admin(&node, Some(&node21)).await?;
    assert_eq!(code(dp_admin.user_add(user("mallory")).await), Some(Code::PermissionDenied));
    let escalate = TokenAddRequest { role: TokenRole::Admin.into(), node_id: None };
    assert_eq!(code(dp_admin.token_add(escalate).await), Some(Code::PermissionDenied));
    assert_eq!(
        code(raft(&node, Some(&node21)).await?.vote(vote.clone()).await),
        Some(Code::PermissionDenied)
    );
    assert!(node.read(|state| state.user("mallory").is_none()));
    assert_eq!(
        code(root.token_add(TokenAddRequest { role: TokenRole::Dataplane.into(), node_id: None }).await),
        Some(Code::InvalidArgument)
    );

    // An API admin token; lists carry no secret and the state only hashes.
    let extra = root.token_add(TokenAddRequest { role: TokenRole::Admin.into(), node_id: None }).await?;
    let extra = extra.into_inner();
    admin(&node, Some(&extra.token)).await?.user_add(user("bob")).await?;
    let listed = root.token_list(TokenListRequest {}).await?.into_inner().tokens;
    assert_eq!(listed.len(), 2);
    assert!(node.read(|state| state.tokens().all(|t| t.hash != node21 && t.hash != extra.token)));
    let extra_id = extra.info.context("info")?.id;

    // Deleted: refused from then on.
    root.token_delete(TokenDeleteRequest { id: extra_id }).await?;
    assert_eq!(
        code(admin(&node, Some(&extra.token)).await?.user_list(UserListRequest {}).await),
        Some(Code::Unauthenticated)
    );

    // A restart keeps the admin token file and the API tokens.
    let addr = node.local_addr();
    node.shutdown().await?;
    let node = ControlPlane::start(config(1, &data_dir, addr, None)).await?;
    assert_eq!(node.wait_for_leader(PATIENCE).await, Some(1));
    assert_eq!(node.admin_token(), admin_token);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while dataplane(&node, Some(&node21)).await?.heartbeat(heartbeat(21)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the data-plane token did not survive the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_members_speak_raft_and_a_node_without_the_member_token_cannot_join() -> Result<()> {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?, tempfile::tempdir()?];
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let node1 = ControlPlane::start(config(1, dirs[0].path(), any, Some("member-secret"))).await?;
    assert_eq!(node1.wait_for_leader(PATIENCE).await, Some(1));

    // The member token speaks Raft (here: a malformed vote, refused as such).
    let vote = RaftMessage { json: b"{}".to_vec() };
    assert_eq!(
        code(raft(&node1, Some("member-secret")).await?.vote(vote.clone()).await),
        Some(Code::InvalidArgument)
    );

    // No token: no join.
    let outsider = ControlPlane::start(config(2, dirs[1].path(), any, None)).await?;
    let join = ClusterJoinRequest { addr: outsider.endpoint(), learner: false };
    assert_eq!(
        code(admin(&node1, None).await?.cluster_join(join.clone()).await),
        Some(Code::Unauthenticated)
    );
    // A node that lacks the member token refuses the leader: it is not joined.
    let mut root = admin(&node1, Some(node1.admin_token())).await?;
    assert!(root.cluster_join(join).await.is_err(), "a node without the member token was joined");
    assert_eq!(node1.status().members.len(), 1);
    // Nor can it speak Raft to the cluster with its own admin token.
    assert_eq!(
        code(raft(&node1, Some(outsider.admin_token())).await?.vote(vote).await),
        Some(Code::Unauthenticated)
    );

    // A node with the member token joins.
    let member = ControlPlane::start(config(3, dirs[2].path(), any, Some("member-secret"))).await?;
    let join = ClusterJoinRequest { addr: member.endpoint(), learner: true };
    let joined = root.cluster_join(join).await?.into_inner();
    assert_eq!(joined.node_id, 3);
    for node in [member, outsider, node1] {
        node.shutdown().await?;
    }
    Ok(())
}
