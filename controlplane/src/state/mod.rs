//! The control plane's replicated state machine: its records, the typed
//! [`Command`]s that change it, [`ControlState::apply`], and the snapshot
//! format.
//!
//! This module knows nothing of Raft, storage or gRPC: it is pure data and
//! deterministic functions, so it is tested on its own. The store feeds it
//! committed commands; the gRPC layer reads it and builds commands.

mod change;
mod command;
mod machine;
mod node_set;
mod password;
mod snapshot;
mod types;
pub mod validate;

pub use change::Change;
pub use command::{Command, CommandError, ErrorKind, Response};
pub use machine::ControlState;
pub use node_set::NodeSet;
pub use password::{hash_password, scram_verifier, verify_password, PasswordError};
pub use snapshot::{SnapshotFormatError, SNAPSHOT_FORMAT_VERSION};
pub use types::{
    AclAction, AclPermission, AclRule, AclRuleSpec, AclWho, ApiToken, Ban, BanKey, BanKind, ConfigKind,
    ControlPlaneMember, DataPlaneNode, DataPlaneState, ShareGroupKey, ShareMember, ShareSubscription,
    TokenRole, User,
};

#[cfg(test)]
mod tests;
