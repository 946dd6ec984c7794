//! `ControlState`: the replicated state and the one function that changes
//! it, [`ControlState::apply`].
//!
//! Invariants: every value inside passes the checks in `validate.rs`; a
//! refused command leaves the state exactly as it was (checks run before any
//! mutation); apply is deterministic (no clock, no randomness), so every
//! replica that applies the same log holds the same state. A route or share
//! group with no node is removed, never kept empty.

use std::collections::{BTreeMap, BTreeSet};

use super::change::Change;
use super::command::{Command, CommandError, Response};
use super::node_set::NodeSet;
use super::types::{
    AclRule, AclRuleSpec, AclWho, ApiToken, Ban, BanKey, BanKind, ConfigKind, DataPlaneNode, DataPlaneState,
    ShareGroupKey, ShareMember, ShareSubscription, TokenRole, User,
};
use super::validate;
use crate::NodeId;

/// Everything the control plane replicates, apart from Raft's own
/// membership (kept beside it by the store).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlState {
    pub(super) users: imbl::OrdMap<String, User>,
    pub(super) acl: Vec<AclRule>,
    /// The id the next ACL rule gets; ids are never reused.
    pub(super) next_acl_id: u64,
    /// Persistent maps: a copy (for a Raft snapshot) costs nothing and
    /// shares every node until either side changes it.
    pub(super) routes: imbl::OrdMap<String, NodeSet>,
    pub(super) share_groups: imbl::OrdMap<ShareGroupKey, BTreeSet<ShareMember>>,
    pub(super) bans: BTreeMap<BanKey, Ban>,
    pub(super) bridges: BTreeMap<String, String>,
    pub(super) plugins: BTreeMap<String, String>,
    pub(super) dataplane: BTreeMap<NodeId, DataPlaneNode>,
    /// API tokens by id (hashes only; never sent on the Watch stream).
    pub(super) tokens: BTreeMap<u64, ApiToken>,
    /// The id the next API token gets; ids are never reused.
    pub(super) next_token_id: u64,
    /// The secret data-plane nodes present to each other on peer links (64
    /// lowercase hex digits); made once by the first leader.
    pub(super) peer_secret: Option<PeerSecret>,
}

/// The peer secret, whose `Debug` does not show it (a state dumped into a
/// log or a failed assertion keeps it out).
#[derive(Clone, PartialEq, Eq)]
pub(super) struct PeerSecret(pub(super) String);

impl std::fmt::Debug for PeerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerSecret(<redacted>)")
    }
}

impl ControlState {
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    pub fn user(&self, username: &str) -> Option<&User> {
        self.users.get(username)
    }

    /// The ACL rules in evaluation order.
    pub fn acl_rules(&self) -> &[AclRule] {
        &self.acl
    }

    /// Topic filter → the data-plane nodes with subscribers for it.
    pub fn routes(&self) -> &imbl::OrdMap<String, NodeSet> {
        &self.routes
    }

    pub fn share_groups(&self) -> &imbl::OrdMap<ShareGroupKey, BTreeSet<ShareMember>> {
        &self.share_groups
    }

    pub fn bans(&self) -> impl Iterator<Item = &Ban> {
        self.bans.values()
    }

    /// Name → JSON text of the bridge or plugin configuration documents.
    pub fn configs(&self, kind: ConfigKind) -> &BTreeMap<String, String> {
        match kind {
            ConfigKind::Bridge => &self.bridges,
            ConfigKind::Plugin => &self.plugins,
        }
    }

    pub fn dataplane_nodes(&self) -> impl Iterator<Item = &DataPlaneNode> {
        self.dataplane.values()
    }

    pub fn dataplane_node(&self, id: NodeId) -> Option<&DataPlaneNode> {
        self.dataplane.get(&id)
    }

    /// The API tokens, by id.
    pub fn tokens(&self) -> impl Iterator<Item = &ApiToken> {
        self.tokens.values()
    }

    /// The API token whose SHA-256 hash (lowercase hex) is `hash`.
    pub fn token_by_hash(&self, hash: &str) -> Option<&ApiToken> {
        self.tokens.values().find(|token| token.hash == hash)
    }

    /// The cluster's peer secret, once the leader has set it.
    pub fn peer_secret(&self) -> Option<&str> {
        self.peer_secret.as_ref().map(|secret| secret.0.as_str())
    }

    /// Applies one command; returns the response and what changed (empty if
    /// refused or if nothing a watcher needs changed).
    pub fn apply(&mut self, command: Command) -> (Response, Vec<Change>) {
        let mut changes = Vec::new();
        let response = match command {
            Command::Batch(commands) => {
                let responses = commands
                    .into_iter()
                    .map(|command| match command {
                        Command::Batch(_) => Response::Failed(CommandError::NestedBatch),
                        command => self.apply_one(command, &mut changes).unwrap_or_else(Response::Failed),
                    })
                    .collect();
                Response::Batch(responses)
            }
            command => self.apply_one(command, &mut changes).unwrap_or_else(Response::Failed),
        };
        (response, changes)
    }

    fn apply_one(&mut self, command: Command, changes: &mut Vec<Change>) -> Result<Response, CommandError> {
        match command {
            Command::AddUser { username, password_hash, superuser, scram } => {
                validate::username(&username)?;
                validate::password_hash(&password_hash)?;
                if let Some(scram) = &scram {
                    validate::scram_verifier(scram)?;
                }
                if self.users.contains_key(&username) {
                    return Err(CommandError::UserExists(username));
                }
                let user = User { username: username.clone(), password_hash, superuser, scram };
                changes.push(Change::UserUpserted(user.clone()));
                self.users.insert(username, user);
            }
            Command::UpdateUser { username, password_hash, superuser, scram } => {
                if let Some(hash) = &password_hash {
                    validate::password_hash(hash)?;
                }
                if let Some(scram) = &scram {
                    validate::scram_verifier(scram)?;
                }
                let user = self.users.get_mut(&username).ok_or(CommandError::UserNotFound(username))?;
                if let Some(hash) = password_hash {
                    user.password_hash = hash;
                    user.scram = scram;
                }
                if let Some(superuser) = superuser {
                    user.superuser = superuser;
                }
                changes.push(Change::UserUpserted(user.clone()));
            }
            Command::DeleteUser { username } => {
                self.users.remove(&username).ok_or_else(|| CommandError::UserNotFound(username.clone()))?;
                changes.push(Change::UserRemoved(username));
            }
            Command::AddAclRule { rule, position } => return self.add_acl_rule(rule, position, changes),
            Command::DeleteAclRule { id } => {
                let index = self
                    .acl
                    .iter()
                    .position(|rule| rule.id == id)
                    .ok_or(CommandError::AclRuleNotFound(id))?;
                self.acl.remove(index);
                changes.push(Change::AclReplaced(self.acl.clone()));
            }
            Command::AddBan { mut ban } => {
                ban.key = normalize_ban_key(ban.key)?;
                changes.push(Change::BanUpserted(ban.clone()));
                self.bans.insert(ban.key.clone(), ban);
            }
            Command::DeleteBan { key } => {
                let key = normalize_ban_key(key)?;
                if self.bans.remove(&key).is_none() {
                    return Err(CommandError::BanNotFound { kind: key.kind, value: key.value });
                }
                changes.push(Change::BanRemoved(key));
            }
            Command::ExpireBans { now_ms } => self.expire_bans(now_ms, changes),
            Command::PutConfig { kind, name, json } => {
                validate::name("configuration name", &name)?;
                validate::json_document(&name, &json)?;
                let documents = self.configs_mut(kind);
                documents.insert(name.clone(), json.clone());
                changes.push(Change::ConfigUpserted { kind, name, json });
            }
            Command::DeleteConfig { kind, name } => {
                if self.configs_mut(kind).remove(&name).is_none() {
                    return Err(CommandError::ConfigNotFound { kind, name });
                }
                changes.push(Change::ConfigRemoved { kind, name });
            }
            Command::RouteBatch { node_id, add, remove, share_add, share_remove, at_ms } => {
                self.route_batch(node_id, add, remove, share_add, share_remove, at_ms, changes)?;
            }
            Command::Heartbeat { node_id, address, connections, snapshot_index, at_ms } => {
                self.heartbeat(node_id, address, connections, snapshot_index, at_ms, changes);
            }
            Command::MarkDataPlaneDown { node_id, last_heartbeat_ms, at_ms } => {
                if let Some(node) = self.dataplane.get_mut(&node_id) {
                    if node.state == DataPlaneState::Up && node.last_heartbeat_ms <= last_heartbeat_ms {
                        node.state = DataPlaneState::Down { since_ms: at_ms };
                        changes.push(Change::DataPlaneUpserted(node.clone()));
                    }
                }
            }
            Command::ExpireDataPlaneNode { node_id, down_since_ms } => {
                let still_down = self
                    .dataplane
                    .get(&node_id)
                    .is_some_and(|node| node.state == DataPlaneState::Down { since_ms: down_since_ms });
                if still_down {
                    self.remove_dataplane_node(node_id, changes);
                }
            }
            Command::AddToken { role, node_id, hash, created_ms } => {
                return self.add_token(role, node_id, hash, created_ms)
            }
            Command::DeleteToken { id } => {
                self.tokens.remove(&id).ok_or(CommandError::TokenNotFound(id))?;
            }
            Command::SetPeerSecret { secret, only_if_unset } => {
                validate::peer_secret(&secret)?;
                if !(only_if_unset && self.peer_secret.is_some()) {
                    changes.push(Change::PeerSecret(secret.clone()));
                    self.peer_secret = Some(PeerSecret(secret));
                }
            }
            Command::Batch(_) => return Err(CommandError::NestedBatch),
        }
        Ok(Response::Done)
    }

    fn expire_bans(&mut self, now_ms: u64, changes: &mut Vec<Change>) {
        let expired: Vec<BanKey> = self
            .bans
            .values()
            .filter(|ban| ban.until_ms.is_some_and(|until| until <= now_ms))
            .map(|ban| ban.key.clone())
            .collect();
        for key in expired {
            self.bans.remove(&key);
            changes.push(Change::BanRemoved(key));
        }
    }

    fn add_acl_rule(
        &mut self,
        mut rule: AclRuleSpec,
        position: Option<u32>,
        changes: &mut Vec<Change>,
    ) -> Result<Response, CommandError> {
        validate::topic_filter(&rule.topic_filter)?;
        match &mut rule.who {
            AclWho::All => {}
            AclWho::Username(name) => validate::username(name)?,
            AclWho::ClientId(id) => validate::name("client id", id)?,
            AclWho::IpNetwork(network) => *network = validate::ip_network(network)?,
        }
        let index = match position {
            None => self.acl.len(),
            Some(position) if (position as usize) <= self.acl.len() => position as usize,
            Some(position) => {
                return Err(CommandError::AclPositionOutOfRange { position, len: self.acl.len() })
            }
        };
        self.next_acl_id = self.next_acl_id.max(1);
        let id = self.next_acl_id;
        self.next_acl_id += 1;
        self.acl.insert(index, AclRule { id, spec: rule });
        changes.push(Change::AclReplaced(self.acl.clone()));
        Ok(Response::AclRuleAdded { id })
    }

    /// Tokens change nothing a watcher sees: no change is reported.
    fn add_token(
        &mut self,
        role: TokenRole,
        node_id: Option<NodeId>,
        hash: String,
        created_ms: u64,
    ) -> Result<Response, CommandError> {
        validate::token_hash(&hash)?;
        match (role, node_id) {
            (TokenRole::Dataplane, None) => {
                return Err(CommandError::InvalidValue {
                    what: "token".to_owned(),
                    reason: "a data-plane token needs the node id it is bound to".to_owned(),
                })
            }
            (TokenRole::Admin, Some(_)) => {
                return Err(CommandError::InvalidValue {
                    what: "token".to_owned(),
                    reason: "an admin token is not bound to a node id".to_owned(),
                })
            }
            _ => {}
        }
        if self.token_by_hash(&hash).is_some() {
            return Err(CommandError::InvalidValue {
                what: "token".to_owned(),
                reason: "a token with this hash exists".to_owned(),
            });
        }
        self.next_token_id = self.next_token_id.max(1);
        let id = self.next_token_id;
        self.next_token_id += 1;
        self.tokens.insert(id, ApiToken { id, role, node_id, hash, created_ms });
        Ok(Response::TokenAdded { id })
    }

    /// Records a heartbeat; reports the node only if it is new or its
    /// address or state changed (the data plane needs no timestamps).
    fn heartbeat(
        &mut self,
        node_id: NodeId,
        address: String,
        connections: u64,
        snapshot_index: u64,
        at_ms: u64,
        changes: &mut Vec<Change>,
    ) {
        let node = self.dataplane.entry(node_id).or_insert_with(|| DataPlaneNode {
            id: node_id,
            address: String::new(),
            state: DataPlaneState::Down { since_ms: at_ms },
            last_heartbeat_ms: at_ms,
            connections: 0,
            snapshot_index: 0,
        });
        let visible_change = node.address != address || node.state != DataPlaneState::Up;
        node.address = address;
        node.state = DataPlaneState::Up;
        node.last_heartbeat_ms = node.last_heartbeat_ms.max(at_ms);
        node.connections = connections;
        node.snapshot_index = snapshot_index;
        if visible_change {
            changes.push(Change::DataPlaneUpserted(node.clone()));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn route_batch(
        &mut self,
        node_id: NodeId,
        add: Vec<String>,
        remove: Vec<String>,
        share_add: Vec<ShareSubscription>,
        share_remove: Vec<ShareSubscription>,
        at_ms: u64,
        changes: &mut Vec<Change>,
    ) -> Result<(), CommandError> {
        for filter in add.iter().chain(&remove) {
            validate::topic_filter(filter)?;
        }
        for share in share_add.iter().chain(&share_remove) {
            validate::name("share group", &share.group)?;
            if share.group.contains(['/', '+', '#']) {
                return Err(CommandError::InvalidValue {
                    what: "share group".to_owned(),
                    reason: "contains `/`, `+` or `#`".to_owned(),
                });
            }
            validate::topic_filter(&share.topic_filter)?;
            validate::name("client id", &share.client_id)?;
        }
        self.dataplane.entry(node_id).or_insert_with(|| {
            let node = DataPlaneNode {
                id: node_id,
                address: String::new(),
                state: DataPlaneState::Up,
                last_heartbeat_ms: at_ms,
                connections: 0,
                snapshot_index: 0,
            };
            changes.push(Change::DataPlaneUpserted(node.clone()));
            node
        });
        let mut touched_routes = BTreeSet::new();
        for filter in remove {
            if let Some(nodes) = self.routes.get_mut(&filter) {
                if nodes.remove(&node_id) {
                    touched_routes.insert(filter);
                }
            }
        }
        for filter in add {
            let added = match self.routes.get_mut(&filter) {
                Some(nodes) => nodes.insert(node_id),
                None => {
                    self.routes.insert(filter.clone(), NodeSet::one(node_id));
                    true
                }
            };
            if added {
                touched_routes.insert(filter);
            }
        }
        for topic_filter in touched_routes {
            let node_ids: BTreeSet<NodeId> =
                self.routes.get(&topic_filter).map(Into::into).unwrap_or_default();
            if node_ids.is_empty() {
                self.routes.remove(&topic_filter);
            }
            changes.push(Change::RouteSet { topic_filter, node_ids });
        }
        let mut touched_groups = BTreeSet::new();
        for share in share_remove {
            let (key, member) = share_parts(node_id, share);
            if let Some(members) = self.share_groups.get_mut(&key) {
                if members.remove(&member) {
                    touched_groups.insert(key);
                }
            }
        }
        for share in share_add {
            let (key, member) = share_parts(node_id, share);
            let added = match self.share_groups.get_mut(&key) {
                Some(members) => members.insert(member),
                None => {
                    self.share_groups.insert(key.clone(), BTreeSet::from([member]));
                    true
                }
            };
            if added {
                touched_groups.insert(key);
            }
        }
        for key in touched_groups {
            self.emit_share_group(key, changes);
        }
        Ok(())
    }

    fn remove_dataplane_node(&mut self, node_id: NodeId, changes: &mut Vec<Change>) {
        let filters: Vec<String> = self
            .routes
            .iter()
            .filter(|(_, nodes)| nodes.contains(&node_id))
            .map(|(f, _)| f.clone())
            .collect();
        for topic_filter in filters {
            let mut node_ids = self.routes.remove(&topic_filter).unwrap_or_default();
            node_ids.remove(&node_id);
            if !node_ids.is_empty() {
                self.routes.insert(topic_filter.clone(), node_ids.clone());
            }
            changes.push(Change::RouteSet { topic_filter, node_ids: (&node_ids).into() });
        }
        let groups: Vec<ShareGroupKey> = self
            .share_groups
            .iter()
            .filter(|(_, members)| members.iter().any(|member| member.node_id == node_id))
            .map(|(key, _)| key.clone())
            .collect();
        for key in groups {
            if let Some(members) = self.share_groups.get_mut(&key) {
                members.retain(|member| member.node_id != node_id);
            }
            self.emit_share_group(key, changes);
        }
        self.dataplane.remove(&node_id);
        changes.push(Change::DataPlaneRemoved(node_id));
    }

    /// Records the group's current members, removing the group if empty.
    fn emit_share_group(&mut self, key: ShareGroupKey, changes: &mut Vec<Change>) {
        let members = self.share_groups.get(&key).cloned().unwrap_or_default();
        if members.is_empty() {
            self.share_groups.remove(&key);
        }
        changes.push(Change::ShareGroupSet { key, members });
    }

    fn configs_mut(&mut self, kind: ConfigKind) -> &mut BTreeMap<String, String> {
        match kind {
            ConfigKind::Bridge => &mut self.bridges,
            ConfigKind::Plugin => &mut self.plugins,
        }
    }
}

fn share_parts(node_id: NodeId, share: ShareSubscription) -> (ShareGroupKey, ShareMember) {
    (
        ShareGroupKey { group: share.group, topic_filter: share.topic_filter },
        ShareMember { node_id, client_id: share.client_id },
    )
}

/// Validates a ban's value and brings an IP into canonical CIDR form, so
/// that `10.0.0.1` and `10.0.0.1/32` are the same ban.
fn normalize_ban_key(key: BanKey) -> Result<BanKey, CommandError> {
    let value = match key.kind {
        BanKind::ClientId => {
            validate::name("client id", &key.value)?;
            key.value
        }
        BanKind::Username => {
            validate::username(&key.value)?;
            key.value
        }
        BanKind::IpAddress => validate::ip_network(&key.value)?,
    };
    Ok(BanKey { kind: key.kind, value })
}
