//! The records the control plane owns: users, ACL rules, bans, config
//! documents, data-plane nodes, shared-subscription members and API tokens.
//!
//! These are plain data with serde (for Raft log entries and snapshots); the
//! rules they must follow are checked in `validate.rs` and enforced by
//! `ControlState::apply`, so a value inside the state is always valid.

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// A user that may connect with a username and password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    /// A PHC string, argon2id with a random salt. The password itself never
    /// enters the Raft log.
    pub password_hash: String,
    /// A superuser passes every ACL check.
    pub superuser: bool,
    /// The SCRAM-SHA-256 verifier (see `password::scram_verifier`), derived
    /// from the password when it was set; `None` for a user imported by
    /// hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scram: Option<String>,
}

/// Whom an ACL rule applies to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AclWho {
    All,
    Username(String),
    ClientId(String),
    /// An IP network in CIDR form (a single address is stored as /32 or /128).
    IpNetwork(String),
}

/// What an ACL rule governs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AclAction {
    Publish,
    Subscribe,
    /// Both publish and subscribe.
    All,
}

/// What an ACL rule decides when it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AclPermission {
    Allow,
    Deny,
}

/// An ACL rule as an operator writes it, before it has an id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRuleSpec {
    pub who: AclWho,
    pub action: AclAction,
    /// A topic filter; `%u` stands for the username and `%c` for the client id.
    pub topic_filter: String,
    pub permission: AclPermission,
}

/// An ACL rule in the ordered list: the first rule that matches decides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRule {
    /// Assigned by the state machine, unique for the life of the cluster.
    pub id: u64,
    #[serde(flatten)]
    pub spec: AclRuleSpec,
}

/// What a ban matches on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BanKind {
    ClientId,
    Username,
    /// An IP address or network, stored in CIDR form.
    IpAddress,
}

impl std::fmt::Display for BanKind {
    /// The words an operator uses (and `mqttctl banned` takes).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BanKind::ClientId => "client id",
            BanKind::Username => "username",
            BanKind::IpAddress => "IP address",
        })
    }
}

/// The identity of a ban: one per kind and value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BanKey {
    pub kind: BanKind,
    pub value: String,
}

/// A banned client id, username or address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    #[serde(flatten)]
    pub key: BanKey,
    pub reason: String,
    /// Unix milliseconds after which the ban no longer applies; `None` bans
    /// for ever. Expired bans are removed by the leader's housekeeping.
    pub until_ms: Option<u64>,
    /// Unix milliseconds when the ban was made, stamped by the proposer.
    pub created_ms: u64,
}

/// Which family of opaque configuration documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigKind {
    Bridge,
    Plugin,
}

/// Whether a data-plane node is heard from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum DataPlaneState {
    Up,
    /// No heartbeat for longer than the configured limit since `since_ms`;
    /// its routes and group memberships go after the grace period.
    Down {
        since_ms: u64,
    },
}

/// A data-plane node, as its heartbeats describe it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPlaneNode {
    pub id: NodeId,
    /// Where other data-plane nodes reach it (its peer link); empty until its
    /// first heartbeat says.
    pub address: String,
    #[serde(flatten)]
    pub state: DataPlaneState,
    /// Unix milliseconds of the last heartbeat, stamped by the proposer.
    pub last_heartbeat_ms: u64,
    pub connections: u64,
    /// The Raft index of the state the node reported holding.
    pub snapshot_index: u64,
}

/// A shared-subscription group: `$share/{group}/{topic_filter}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShareGroupKey {
    pub group: String,
    pub topic_filter: String,
}

/// One subscriber in a shared-subscription group.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShareMember {
    pub node_id: NodeId,
    pub client_id: String,
}

/// A shared subscription as a data-plane node registers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareSubscription {
    pub group: String,
    pub topic_filter: String,
    pub client_id: String,
}

/// A control-plane member, from the Raft membership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPlaneMember {
    pub id: NodeId,
    /// Its gRPC endpoint.
    pub addr: String,
    /// A voter, or else a learner.
    pub voter: bool,
}

/// What an API token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRole {
    /// The admin API.
    Admin,
    /// Watch, route batches and heartbeats of the node id it is bound to.
    Dataplane,
}

/// An API token as the state keeps it: its SHA-256 hash, never the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    /// Assigned by the state machine, never reused.
    pub id: u64,
    pub role: TokenRole,
    /// The data-plane node id a [`TokenRole::Dataplane`] token is bound to;
    /// `None` for an admin token.
    pub node_id: Option<NodeId>,
    /// Lowercase hex SHA-256 of the token.
    pub hash: String,
    pub created_ms: u64,
}
