//! Raft membership → `ControlPlaneMember`s and their wire form.

use openraft::{BasicNode, Membership};
use proto::controlplane as pb;

use crate::state::ControlPlaneMember;
use crate::NodeId;

/// Every node of a membership (voters and learners), in id order.
pub(crate) fn members_of(membership: &Membership<NodeId, BasicNode>) -> Vec<ControlPlaneMember> {
    let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
    membership
        .nodes()
        .map(|(id, node)| ControlPlaneMember { id: *id, addr: node.addr.clone(), voter: voters.contains(id) })
        .collect()
}

impl From<&ControlPlaneMember> for pb::ControlPlaneMember {
    fn from(member: &ControlPlaneMember) -> Self {
        pb::ControlPlaneMember { id: member.id, addr: member.addr.clone(), voter: member.voter }
    }
}
