//! What one applied command changed, as the Watch stream reports it.
//!
//! `ControlState::apply` returns these alongside its response; the store
//! stamps them with the entry's Raft index and hands them to the change
//! feed. A change carries the new value of the thing it names (the whole
//! ordered ACL list, the whole node set of a route), so applying changes in
//! order to a snapshot rebuilds the state without knowing the commands.

use std::collections::BTreeSet;

use super::types::{
    AclRule, Ban, BanKey, ConfigKind, ControlPlaneMember, DataPlaneNode, ShareGroupKey, ShareMember, User,
};
use crate::NodeId;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    UserUpserted(User),
    UserRemoved(String),
    /// The whole ordered list after the change.
    AclReplaced(Vec<AclRule>),
    /// The nodes that now have subscribers for `topic_filter`; empty removes it.
    RouteSet {
        topic_filter: String,
        node_ids: BTreeSet<NodeId>,
    },
    /// The members of a group now; empty removes the group.
    ShareGroupSet {
        key: ShareGroupKey,
        members: BTreeSet<ShareMember>,
    },
    BanUpserted(Ban),
    BanRemoved(BanKey),
    ConfigUpserted {
        kind: ConfigKind,
        name: String,
        json: String,
    },
    ConfigRemoved {
        kind: ConfigKind,
        name: String,
    },
    /// A node appeared or its address or state changed (not every heartbeat).
    DataPlaneUpserted(DataPlaneNode),
    DataPlaneRemoved(NodeId),
    /// The control-plane membership after a Raft membership change.
    ControlPlaneMembers(Vec<ControlPlaneMember>),
    /// The cluster's peer secret was set (64 lowercase hex digits).
    PeerSecret(String),
}
