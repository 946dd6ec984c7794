//! The `Admin` service: cluster status, join and leave, users, ACL rules,
//! bans and bridge/plugin configuration.
//!
//! Writes go through the [`Writer`] (forwarded to the leader when needed);
//! reads answer from this member's applied state. Passwords are hashed here,
//! on the blocking pool, before anything is proposed: only the hash enters
//! the log. `UserAdd` also takes an already-computed argon2id hash (an
//! import from another broker), checked here before it is proposed.
//! Likewise `TokenAdd` makes the token here and proposes only its SHA-256
//! hash; the secret is in the reply and nowhere else.

use std::sync::Arc;
use std::time::Duration;

use proto::admin::admin_server::Admin;
use proto::admin::*;
use proto::controlplane::WriteReply;
use tokio::task::JoinSet;
use tonic::{Request, Response, Status};

use super::status::{self, write_error};
use crate::applied::SharedState;
use crate::config::normalize_endpoint;
use crate::credentials::{generate_token, hash_token};
use crate::housekeeping::now_ms;
use crate::network::Peers;
use crate::pb_impl::{config_kind, token_role, InvalidInput};
use crate::state::{hash_password, AclRuleSpec, Ban, BanKey, Command, Response as Applied};
use crate::status::NodeStatus;
use crate::writer::{LeaderReply, LeaderRequest, Writer};
use crate::{NodeId, Raft};

/// How long a member waits for another member's `NodeInfo`.
const PEER_INFO_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a join waits for the new node's `NodeInfo`.
const JOIN_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct AdminService {
    advertise_addr: String,
    raft: Raft,
    shared: Arc<SharedState>,
    writer: Writer,
    peers: Peers,
}

impl AdminService {
    pub fn new(
        advertise_addr: String,
        raft: Raft,
        shared: Arc<SharedState>,
        writer: Writer,
        peers: Peers,
    ) -> Self {
        AdminService { advertise_addr, raft, shared, writer, peers }
    }

    fn status(&self) -> NodeStatus {
        NodeStatus::from_metrics(&self.raft.metrics().borrow())
    }

    async fn write(&self, command: Command) -> Result<(u64, Applied), Status> {
        status::applied(self.writer.write(command).await)
    }

    async fn write_reply(&self, command: Command) -> Result<Response<WriteReply>, Status> {
        let (index, _) = self.write(command).await?;
        Ok(Response::new(WriteReply { index }))
    }
}

fn node_info(status: &NodeStatus, addr: &str) -> NodeInfoReply {
    NodeInfoReply {
        node_id: status.node_id,
        addr: addr.to_owned(),
        role: status.role.as_str().to_owned(),
        term: status.term,
        last_log_index: status.last_log_index,
        applied_index: status.applied_index,
        leader_id: status.leader,
        initialized: status.initialized,
    }
}

/// The argon2id hash and the SCRAM-SHA-256 verifier of a new password.
async fn hash_and_verifier(password: String) -> Result<(String, String), Status> {
    if password.is_empty() {
        return Err(Status::invalid_argument("the password must not be empty"));
    }
    tokio::task::spawn_blocking(move || {
        let hash = hash_password(&password)?;
        Ok::<_, crate::state::PasswordError>((hash, crate::state::scram_verifier(&password)))
    })
    .await
    .map_err(|error| Status::internal(format!("hashing task failed: {error}")))?
    .map_err(|error| Status::internal(error.to_string()))
}

/// The hash a new user gets, and its SCRAM verifier: `password_hash` as
/// given (an import, checked here so a bad one never enters the log; no
/// verifier, the password is not known), or `password` hashed here.
async fn new_user_hash(
    password: String,
    password_hash: Option<String>,
) -> Result<(String, Option<String>), Status> {
    match password_hash {
        Some(_) if !password.is_empty() => {
            Err(Status::invalid_argument("set `password` or `password_hash`, not both"))
        }
        Some(imported) => {
            crate::state::validate::password_hash(&imported).map_err(status::command_error)?;
            Ok((imported, None))
        }
        None => hash_and_verifier(password).await.map(|(hash, scram)| (hash, Some(scram))),
    }
}

fn required<T>(value: Option<T>, field: &str) -> Result<T, Status> {
    value.ok_or_else(|| InvalidInput(format!("`{field}` is required")).into())
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn node_info(&self, _request: Request<NodeInfoRequest>) -> Result<Response<NodeInfoReply>, Status> {
        Ok(Response::new(node_info(&self.status(), &self.advertise_addr)))
    }

    async fn cluster_status(
        &self,
        _request: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusReply>, Status> {
        let local = self.status();
        let mut queries = JoinSet::new();
        for (id, addr, voter) in local.members.clone() {
            if id == local.node_id {
                continue;
            }
            let client = self.peers.admin(&addr);
            queries.spawn(async move {
                let info = match client {
                    Ok(mut client) => {
                        tokio::time::timeout(PEER_INFO_TIMEOUT, client.node_info(NodeInfoRequest {}))
                            .await
                            .ok()
                            .and_then(Result::ok)
                            .map(Response::into_inner)
                    }
                    Err(_) => None,
                };
                (id, addr, voter, info)
            });
        }
        let mut controlplane = Vec::new();
        if local.initialized {
            let voter = local.members.iter().any(|(id, _, voter)| *id == local.node_id && *voter);
            let own = node_info(&local, &self.advertise_addr);
            controlplane.push(ControlPlaneNodeStatus {
                id: own.node_id,
                addr: own.addr,
                role: own.role,
                term: own.term,
                last_log_index: own.last_log_index,
                applied_index: own.applied_index,
                voter,
            });
        }
        while let Some(joined) = queries.join_next().await {
            let Ok((id, addr, voter, info)) = joined else { continue };
            controlplane.push(match info {
                Some(info) => ControlPlaneNodeStatus {
                    id,
                    addr,
                    role: info.role,
                    term: info.term,
                    last_log_index: info.last_log_index,
                    applied_index: info.applied_index,
                    voter,
                },
                None => ControlPlaneNodeStatus {
                    id,
                    addr,
                    role: "unreachable".to_owned(),
                    term: 0,
                    last_log_index: None,
                    applied_index: None,
                    voter,
                },
            });
        }
        controlplane.sort_by_key(|node| node.id);
        let dataplane = self.shared.read(|applied| applied.state.dataplane_nodes().map(Into::into).collect());
        Ok(Response::new(ClusterStatusReply { leader: local.leader, controlplane, dataplane }))
    }

    async fn cluster_join(
        &self,
        request: Request<ClusterJoinRequest>,
    ) -> Result<Response<ClusterJoinReply>, Status> {
        let request = request.into_inner();
        let learner = request.learner;
        let addr = normalize_endpoint(&request.addr);
        if addr == "http://" {
            return Err(Status::invalid_argument("`addr` is required"));
        }
        let mut client =
            self.peers.admin(&addr).map_err(|error| Status::invalid_argument(error.to_string()))?;
        let info = tokio::time::timeout(JOIN_PROBE_TIMEOUT, client.node_info(NodeInfoRequest {}))
            .await
            .map_err(|_| Status::unavailable(format!("no answer from {addr} within {JOIN_PROBE_TIMEOUT:?}")))?
            .map_err(|status| Status::unavailable(format!("cannot reach {addr}: {}", status.message())))?
            .into_inner();
        let node_id: NodeId = info.node_id;
        let is_member = self.status().members.iter().any(|(id, _, _)| *id == node_id);
        if info.initialized && !is_member {
            return Err(Status::failed_precondition(format!(
                "node {node_id} at {addr} already belongs to a cluster; start it on an empty data directory to join"
            )));
        }
        self.writer.execute(LeaderRequest::Join { node_id, addr, learner }).await.map_err(write_error)?;
        Ok(Response::new(ClusterJoinReply { node_id }))
    }

    async fn cluster_leave(
        &self,
        request: Request<ClusterLeaveRequest>,
    ) -> Result<Response<ClusterLeaveReply>, Status> {
        let node_id = request.into_inner().node_id;
        match self.writer.execute(LeaderRequest::Leave { node_id }).await.map_err(write_error)? {
            LeaderReply::MembershipChanged { .. } | LeaderReply::Written { .. } => {
                Ok(Response::new(ClusterLeaveReply {}))
            }
        }
    }

    async fn user_add(&self, request: Request<UserAddRequest>) -> Result<Response<WriteReply>, Status> {
        let request = request.into_inner();
        crate::state::validate::username(&request.username).map_err(status::command_error)?;
        let (password_hash, scram) = new_user_hash(request.password, request.password_hash).await?;
        self.write_reply(Command::AddUser {
            username: request.username,
            password_hash,
            superuser: request.superuser,
            scram,
        })
        .await
    }

    async fn user_update(&self, request: Request<UserUpdateRequest>) -> Result<Response<WriteReply>, Status> {
        let request = request.into_inner();
        let (password_hash, scram) = match request.password {
            Some(password) => {
                let (hash, scram) = hash_and_verifier(password).await?;
                (Some(hash), Some(scram))
            }
            None => (None, None),
        };
        self.write_reply(Command::UpdateUser {
            username: request.username,
            password_hash,
            superuser: request.superuser,
            scram,
        })
        .await
    }

    async fn user_delete(&self, request: Request<UserDeleteRequest>) -> Result<Response<WriteReply>, Status> {
        self.write_reply(Command::DeleteUser { username: request.into_inner().username }).await
    }

    async fn user_get(&self, request: Request<UserGetRequest>) -> Result<Response<UserInfo>, Status> {
        let username = request.into_inner().username;
        self.shared
            .read(|applied| applied.state.user(&username).map(UserInfo::from))
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("user {username:?} not found")))
    }

    async fn user_list(&self, _request: Request<UserListRequest>) -> Result<Response<UserListReply>, Status> {
        let users = self.shared.read(|applied| applied.state.users().map(UserInfo::from).collect());
        Ok(Response::new(UserListReply { users }))
    }

    async fn acl_add(&self, request: Request<AclAddRequest>) -> Result<Response<AclAddReply>, Status> {
        let request = request.into_inner();
        let rule = AclRuleSpec::try_from(required(request.rule, "rule")?)?;
        match self.write(Command::AddAclRule { rule, position: request.position }).await? {
            (index, Applied::AclRuleAdded { id }) => Ok(Response::new(AclAddReply { id, index })),
            (_, other) => Err(Status::internal(format!("unexpected answer {other:?}"))),
        }
    }

    async fn acl_delete(&self, request: Request<AclDeleteRequest>) -> Result<Response<WriteReply>, Status> {
        self.write_reply(Command::DeleteAclRule { id: request.into_inner().id }).await
    }

    async fn acl_list(&self, _request: Request<AclListRequest>) -> Result<Response<AclListReply>, Status> {
        let rules = self.shared.read(|applied| applied.state.acl_rules().iter().map(Into::into).collect());
        Ok(Response::new(AclListReply { rules }))
    }

    async fn banned_add(&self, request: Request<BannedAddRequest>) -> Result<Response<WriteReply>, Status> {
        let mut ban = Ban::try_from(required(request.into_inner().ban, "ban")?)?;
        ban.created_ms = now_ms();
        self.write_reply(Command::AddBan { ban }).await
    }

    async fn banned_delete(
        &self,
        request: Request<BannedDeleteRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        let key = BanKey::try_from(required(request.into_inner().key, "key")?)?;
        self.write_reply(Command::DeleteBan { key }).await
    }

    async fn banned_list(
        &self,
        _request: Request<BannedListRequest>,
    ) -> Result<Response<BannedListReply>, Status> {
        let banned = self.shared.read(|applied| applied.state.bans().map(Into::into).collect());
        Ok(Response::new(BannedListReply { banned }))
    }

    async fn config_put(&self, request: Request<ConfigPutRequest>) -> Result<Response<WriteReply>, Status> {
        let request = request.into_inner();
        let kind = config_kind(request.kind)?;
        let document = required(request.document, "document")?;
        self.write_reply(Command::PutConfig { kind, name: document.name, json: document.json }).await
    }

    async fn config_delete(
        &self,
        request: Request<ConfigDeleteRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        let request = request.into_inner();
        let kind = config_kind(request.kind)?;
        self.write_reply(Command::DeleteConfig { kind, name: request.name }).await
    }

    async fn config_list(
        &self,
        request: Request<ConfigListRequest>,
    ) -> Result<Response<ConfigListReply>, Status> {
        let kind = config_kind(request.into_inner().kind)?;
        let documents = self.shared.read(|applied| {
            applied
                .state
                .configs(kind)
                .iter()
                .map(|(name, json)| proto::controlplane::ConfigDocument {
                    name: name.clone(),
                    json: json.clone(),
                })
                .collect()
        });
        Ok(Response::new(ConfigListReply { documents }))
    }

    async fn token_add(&self, request: Request<TokenAddRequest>) -> Result<Response<TokenAddReply>, Status> {
        let request = request.into_inner();
        let role = token_role(request.role)?;
        let token = generate_token();
        let created_ms = now_ms();
        let command =
            Command::AddToken { role, node_id: request.node_id, hash: hash_token(&token), created_ms };
        match self.write(command).await? {
            (index, Applied::TokenAdded { id }) => {
                let record = crate::state::ApiToken {
                    id,
                    role,
                    node_id: request.node_id,
                    hash: String::new(),
                    created_ms,
                };
                tracing::info!(id, ?role, node_id = ?request.node_id, "API token added");
                Ok(Response::new(TokenAddReply { info: Some(TokenInfo::from(&record)), token, index }))
            }
            (_, other) => Err(Status::internal(format!("unexpected answer {other:?}"))),
        }
    }

    async fn token_list(
        &self,
        _request: Request<TokenListRequest>,
    ) -> Result<Response<TokenListReply>, Status> {
        let tokens = self.shared.read(|applied| applied.state.tokens().map(TokenInfo::from).collect());
        Ok(Response::new(TokenListReply { tokens }))
    }

    async fn token_delete(
        &self,
        request: Request<TokenDeleteRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        let id = request.into_inner().id;
        let reply = self.write_reply(Command::DeleteToken { id }).await?;
        tracing::info!(id, "API token deleted");
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;
    use crate::state::hash_password;

    #[tokio::test]
    async fn new_users_get_an_imported_hash_or_a_fresh_one() {
        let imported = hash_password("elsewhere").expect("hashing works");
        let kept = new_user_hash(String::new(), Some(imported.clone())).await.expect("a valid import");
        assert_eq!(kept, (imported.clone(), None), "an imported hash is stored as it is, without a verifier");

        let (fresh, scram) = new_user_hash("pw".to_owned(), None).await.expect("hashed here");
        assert!(fresh.starts_with("$argon2id$") && crate::state::verify_password("pw", &fresh));
        let scram = scram.expect("a SCRAM verifier of the same password");
        assert!(crate::state::validate::scram_verifier(&scram).is_ok(), "{scram}");

        let both = new_user_hash("pw".to_owned(), Some(imported)).await.expect_err("both set");
        assert_eq!(both.code(), Code::InvalidArgument);
        let argon2i = "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$Ww9E4S+9ZK0iDFzU6LnNDw".to_owned();
        for bad in [argon2i, "plaintext".to_owned(), String::new()] {
            let refused = new_user_hash(String::new(), Some(bad.clone())).await.expect_err("bad hash");
            assert_eq!(refused.code(), Code::InvalidArgument, "{bad:?}");
        }
        let empty = new_user_hash(String::new(), None).await.expect_err("no password");
        assert_eq!(empty.code(), Code::InvalidArgument);
    }
}
