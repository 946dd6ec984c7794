//! The typed commands that the Raft log carries, and what applying one
//! answers.
//!
//! A command is deterministic: everything that depends on time or chance
//! (timestamps, password salts) is decided by the proposer before the
//! command enters the log, so every replica computes the same state.
//! Applying a command that breaks a rule changes nothing and answers
//! [`Response::Failed`]; it never panics.

use serde::{Deserialize, Serialize};

use super::types::{AclRuleSpec, Ban, BanKey, BanKind, ConfigKind, ShareSubscription, TokenRole};
use crate::NodeId;

/// One entry's worth of change to the replicated state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Adds a user; fails if the username is taken.
    AddUser {
        username: String,
        password_hash: String,
        superuser: bool,
        /// The SCRAM-SHA-256 verifier of the same password, if it was known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scram: Option<String>,
    },
    /// Changes a user's password hash and/or superuser flag.
    UpdateUser {
        username: String,
        password_hash: Option<String>,
        superuser: Option<bool>,
        /// With a new `password_hash`: its SCRAM verifier (none: the old one
        /// goes too).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scram: Option<String>,
    },
    DeleteUser {
        username: String,
    },
    /// Inserts a rule at `position` (zero-based) or appends it; answers
    /// [`Response::AclRuleAdded`] with the new id.
    AddAclRule {
        rule: AclRuleSpec,
        position: Option<u32>,
    },
    DeleteAclRule {
        id: u64,
    },
    /// Adds a ban, or replaces the ban with the same kind and value.
    AddBan {
        ban: Ban,
    },
    DeleteBan {
        key: BanKey,
    },
    /// Removes every ban whose `until_ms` is at or before `now_ms`.
    ExpireBans {
        now_ms: u64,
    },
    /// Stores a bridge or plugin configuration document (JSON text).
    PutConfig {
        kind: ConfigKind,
        name: String,
        json: String,
    },
    DeleteConfig {
        kind: ConfigKind,
        name: String,
    },
    /// Adds and removes topic filters and shared-subscription members of one
    /// data-plane node. Removing what is absent is not an error.
    RouteBatch {
        node_id: NodeId,
        add: Vec<String>,
        remove: Vec<String>,
        share_add: Vec<ShareSubscription>,
        share_remove: Vec<ShareSubscription>,
        /// When the batch was received; an unknown node is recorded as up.
        at_ms: u64,
    },
    /// A data-plane node is alive.
    Heartbeat {
        node_id: NodeId,
        address: String,
        connections: u64,
        snapshot_index: u64,
        at_ms: u64,
    },
    /// Marks a node down, unless a heartbeat newer than `last_heartbeat_ms`
    /// was applied in between (then it is a no-op).
    MarkDataPlaneDown {
        node_id: NodeId,
        last_heartbeat_ms: u64,
        at_ms: u64,
    },
    /// Removes a node that is still down since `down_since_ms`, with its
    /// routes and shared-subscription memberships; a no-op otherwise.
    ExpireDataPlaneNode {
        node_id: NodeId,
        down_since_ms: u64,
    },
    /// Adds an API token by its hash (the proposer made the secret); answers
    /// [`Response::TokenAdded`] with the new id. A data-plane token needs a
    /// node id, an admin token has none.
    AddToken {
        role: TokenRole,
        node_id: Option<NodeId>,
        hash: String,
        created_ms: u64,
    },
    DeleteToken {
        id: u64,
    },
    /// Sets the cluster's peer secret, which data-plane nodes present to
    /// each other on their peer links: 64 lowercase hex digits (32 random
    /// bytes, made by the proposer). With `only_if_unset` a secret already
    /// set is kept and this is a no-op answering [`Response::Done`].
    SetPeerSecret {
        secret: String,
        only_if_unset: bool,
    },
    /// Several commands in one log entry (coalesced writes). Each is applied
    /// on its own: one failing does not undo the others. No nesting.
    Batch(Vec<Command>),
}

/// What applying a command answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Applied (including the documented no-ops).
    Done,
    /// An ACL rule was added with this id.
    AclRuleAdded { id: u64 },
    /// An API token was added with this id.
    TokenAdded { id: u64 },
    /// One response per command of a [`Command::Batch`], in order.
    Batch(Vec<Response>),
    /// Refused; the state is unchanged.
    Failed(CommandError),
}

impl Response {
    /// `Err` for [`Response::Failed`], the response itself otherwise.
    pub fn into_result(self) -> Result<Response, CommandError> {
        match self {
            Response::Failed(error) => Err(error),
            other => Ok(other),
        }
    }
}

/// How a caller should treat a [`CommandError`] (e.g. which gRPC code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    InvalidArgument,
}

/// Why a command was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum CommandError {
    #[error("invalid username: {0}")]
    InvalidUsername(String),
    #[error("user {0:?} already exists")]
    UserExists(String),
    #[error("user {0:?} not found")]
    UserNotFound(String),
    #[error("invalid password hash: {0}")]
    InvalidPasswordHash(String),
    #[error("invalid topic filter {filter:?}: {reason}")]
    InvalidTopicFilter { filter: String, reason: String },
    #[error("invalid IP address or network {0:?}")]
    InvalidIpNetwork(String),
    #[error("invalid {what}: {reason}")]
    InvalidValue { what: String, reason: String },
    #[error("ACL rule {0} not found")]
    AclRuleNotFound(u64),
    #[error("ACL position {position} is past the end of the list ({len} rules)")]
    AclPositionOutOfRange { position: u32, len: usize },
    #[error("no ban on {kind} {value:?}")]
    BanNotFound { kind: BanKind, value: String },
    #[error("invalid JSON in {name:?}: {reason}")]
    InvalidJson { name: String, reason: String },
    #[error("no {kind:?} configuration named {name:?}")]
    ConfigNotFound { kind: ConfigKind, name: String },
    #[error("API token {0} not found")]
    TokenNotFound(u64),
    #[error("a batch cannot contain another batch")]
    NestedBatch,
}

impl CommandError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CommandError::UserNotFound(_)
            | CommandError::AclRuleNotFound(_)
            | CommandError::BanNotFound { .. }
            | CommandError::ConfigNotFound { .. }
            | CommandError::TokenNotFound(_) => ErrorKind::NotFound,
            CommandError::UserExists(_) => ErrorKind::AlreadyExists,
            CommandError::InvalidUsername(_)
            | CommandError::InvalidPasswordHash(_)
            | CommandError::InvalidTopicFilter { .. }
            | CommandError::InvalidIpNetwork(_)
            | CommandError::InvalidValue { .. }
            | CommandError::AclPositionOutOfRange { .. }
            | CommandError::InvalidJson { .. }
            | CommandError::NestedBatch => ErrorKind::InvalidArgument,
        }
    }
}
