//! The data plane's read-only copy of the control plane's state, rebuilt on
//! every change and published through an `ArcSwap`, so the hot path reads it
//! without a lock the control plane's updates contend for.
//!
//! A view is immutable. Applying a delta builds a new view that shares the
//! parts the delta did not touch (each part sits behind its own `Arc`).
//! Routes are not part of it: they change far more often than the rest, so
//! they live in a trie changed in place (`route_table`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use proto::controlplane as pb;

use super::acl::Pattern;

/// A user as the data plane needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// PHC string (argon2id). Shared: every client logged in as this user
    /// holds it as its credential (one copy, not one per connection).
    pub password_hash: Arc<str>,
    pub superuser: bool,
    /// For SCRAM-SHA-256 enhanced authentication; `None` for a user
    /// imported by hash (or a verifier that does not parse).
    pub scram: Option<Arc<crate::auth::scram::Verifier>>,
}

impl User {
    fn from_pb(user: &pb::User) -> User {
        let scram = match user.scram_sha256.as_str() {
            "" => None,
            text => {
                let parsed = crate::auth::scram::Verifier::parse(text);
                if parsed.is_none() {
                    tracing::warn!(username = %user.username, "the user's SCRAM verifier does not parse");
                }
                parsed.map(Arc::new)
            }
        };
        User { password_hash: Arc::from(user.password_hash.as_str()), superuser: user.superuser, scram }
    }
}

/// Whom an ACL rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    All,
    Username(String),
    ClientId(String),
    Network(IpNet),
}

/// What an ACL rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Publish,
    Subscribe,
    All,
}

/// One ACL rule, checked in order; the first that matches decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRule {
    pub who: Who,
    pub action: Action,
    /// The filter as written; may contain `%u`/`${username}` and
    /// `%c`/`${clientid}`.
    pub topic_filter: String,
    /// `topic_filter`, compiled.
    pub pattern: Pattern,
    pub allow: bool,
}

/// A place in the ordered ACL list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclEntry {
    Rule(AclRule),
    /// A rule this node cannot read (an unknown field value, a bad filter).
    /// Checks that reach it deny: a decision that cannot be read fails closed.
    Unreadable {
        id: u64,
    },
}

/// A ban on a client id, username or address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanTarget {
    ClientId(String),
    Username(String),
    Network(IpNet),
}

/// A ban, with its expiry (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub target: BanTarget,
    pub until_ms: Option<u64>,
}

/// Another data-plane node, as the control plane last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerNode {
    /// Its peer-link address (`HOST:PORT`).
    pub address: String,
    /// False once its heartbeats stopped (its routes go after the grace period).
    pub up: bool,
}

fn peer_node(node: &pb::DataPlaneNode) -> PeerNode {
    PeerNode { address: node.address.clone(), up: node.state == pb::DataPlaneState::Up as i32 }
}

/// The control plane's state as this node last heard it.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// Raft index this view reflects; 0 before the first snapshot.
    pub index: u64,
    /// False until the first snapshot arrived (or for a node without a
    /// control plane, from the start). Until then, access checks deny.
    pub loaded: bool,
    pub users: Arc<HashMap<String, User>>,
    pub acl: Arc<Vec<AclEntry>>,
    pub bans: Arc<Vec<Ban>>,
    /// Data-plane nodes by id (this one included).
    pub peers: Arc<HashMap<u64, PeerNode>>,
    /// What peer links present to each other; empty until the control
    /// plane made it (then peer links are refused both ways).
    pub peer_secret: Arc<str>,
}

/// A message from the control plane that could not be understood: the
/// record is skipped (an ACL rule becomes [`AclEntry::Unreadable`]), never
/// the whole view.
#[derive(Debug, thiserror::Error)]
#[error("bad {what} from the control plane: {detail}")]
pub struct ViewError {
    pub what: &'static str,
    pub detail: String,
}

fn network(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>().ok().or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

fn acl_rule(rule: &pb::AclRule) -> Option<AclRule> {
    let who = match rule.who.as_ref()?.who.as_ref()? {
        pb::acl_who::Who::All(_) => Who::All,
        pb::acl_who::Who::Username(name) => Who::Username(name.clone()),
        pb::acl_who::Who::ClientId(id) => Who::ClientId(id.clone()),
        pb::acl_who::Who::IpNetwork(net) => Who::Network(network(net)?),
    };
    let action = match pb::AclAction::try_from(rule.action).ok()? {
        pb::AclAction::Publish => Action::Publish,
        pb::AclAction::Subscribe => Action::Subscribe,
        pb::AclAction::All => Action::All,
        pb::AclAction::Unspecified => return None,
    };
    let allow = match pb::AclPermission::try_from(rule.permission).ok()? {
        pb::AclPermission::Allow => true,
        pb::AclPermission::Deny => false,
        pb::AclPermission::Unspecified => return None,
    };
    let pattern = Pattern::compile(&rule.topic_filter).ok()?;
    Some(AclRule { who, action, topic_filter: rule.topic_filter.clone(), pattern, allow })
}

fn ban_target(kind: i32, value: &str) -> Option<BanTarget> {
    match pb::BanKind::try_from(kind).ok()? {
        pb::BanKind::ClientId => Some(BanTarget::ClientId(value.to_string())),
        pb::BanKind::Username => Some(BanTarget::Username(value.to_string())),
        pb::BanKind::IpAddress => network(value).map(BanTarget::Network),
        pb::BanKind::Unspecified => None,
    }
}

fn ban(ban: &pb::Ban) -> Option<Ban> {
    Some(Ban { target: ban_target(ban.kind, &ban.value)?, until_ms: ban.until_ms })
}

fn rules(list: &[pb::AclRule]) -> Vec<AclEntry> {
    list.iter()
        .map(|rule| match acl_rule(rule) {
            Some(compiled) => AclEntry::Rule(compiled),
            None => {
                tracing::warn!(
                    rule_id = rule.id,
                    "an ACL rule this node cannot read: checks reaching it deny"
                );
                AclEntry::Unreadable { id: rule.id }
            }
        })
        .collect()
}

impl ClusterView {
    /// The view a full snapshot describes.
    pub fn from_snapshot(snapshot: &pb::StateSnapshot) -> ClusterView {
        let users = snapshot.users.iter().map(|u| (u.username.clone(), User::from_pb(u))).collect();
        let peers = snapshot.dataplane_nodes.iter().map(|node| (node.id, peer_node(node))).collect();
        ClusterView {
            index: snapshot.index,
            loaded: true,
            users: Arc::new(users),
            acl: Arc::new(rules(&snapshot.acl_rules)),
            bans: Arc::new(snapshot.banned.iter().filter_map(ban).collect()),
            peers: Arc::new(peers),
            peer_secret: Arc::from(snapshot.peer_secret.as_str()),
        }
    }

    /// The view after `delta`.
    pub fn apply(&self, delta: &pb::StateDelta) -> ClusterView {
        use pb::change::Change;
        let mut next = self.clone();
        next.index = delta.index;
        for change in delta.changes.iter().filter_map(|c| c.change.as_ref()) {
            match change {
                Change::UserUpserted(user) => {
                    let record = User::from_pb(user);
                    Arc::make_mut(&mut next.users).insert(user.username.clone(), record);
                }
                Change::UserRemoved(name) => {
                    Arc::make_mut(&mut next.users).remove(name);
                }
                Change::AclReplaced(list) => next.acl = Arc::new(rules(&list.rules)),
                Change::DataplaneNodeUpserted(node) => {
                    Arc::make_mut(&mut next.peers).insert(node.id, peer_node(node));
                }
                Change::DataplaneNodeRemoved(id) => {
                    Arc::make_mut(&mut next.peers).remove(id);
                }
                Change::PeerSecret(secret) => next.peer_secret = Arc::from(secret.as_str()),
                Change::BanUpserted(new) => {
                    if let Some(new) = ban(new) {
                        let bans = Arc::make_mut(&mut next.bans);
                        bans.retain(|b| b.target != new.target);
                        bans.push(new);
                    }
                }
                Change::BanRemoved(key) => {
                    if let Some(target) = ban_target(key.kind, &key.value) {
                        Arc::make_mut(&mut next.bans).retain(|b| b.target != target);
                    }
                }
                // Routes go to the route table (see `link`); bridges,
                // plugins, share groups and membership are not used by this
                // node yet.
                _ => {}
            }
        }
        next
    }

    /// True when any user is defined (then credentials are checked).
    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }
}
