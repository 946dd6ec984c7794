//! `NodeStatus`: one member's view of itself and the cluster, read from
//! openraft's metrics.

use openraft::{RaftMetrics, ServerState};

use crate::NodeId;

/// A member's role, as `mqttctl cluster status` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
    /// Receives the log but does not vote (also a node not yet joined).
    Learner,
    Candidate,
    Shutdown,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Learner => "learner",
            Role::Candidate => "candidate",
            Role::Shutdown => "shutdown",
        }
    }
}

/// What one member knows about itself and the membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub node_id: NodeId,
    pub role: Role,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    /// Voters and learners with their gRPC endpoints, in id order.
    pub members: Vec<(NodeId, String, bool)>,
    /// False until the node is bootstrapped or joined.
    pub initialized: bool,
}

impl NodeStatus {
    pub(crate) fn from_metrics(metrics: &RaftMetrics<NodeId, openraft::BasicNode>) -> Self {
        let membership = metrics.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let is_voter = voters.contains(&metrics.id);
        let role = match metrics.state {
            ServerState::Leader => Role::Leader,
            ServerState::Candidate => Role::Candidate,
            ServerState::Shutdown => Role::Shutdown,
            ServerState::Follower if is_voter => Role::Follower,
            ServerState::Follower | ServerState::Learner => Role::Learner,
        };
        let members = membership
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone(), voters.contains(id)))
            .collect::<Vec<_>>();
        NodeStatus {
            node_id: metrics.id,
            role,
            term: metrics.current_term,
            leader: metrics.current_leader,
            last_log_index: metrics.last_log_index,
            applied_index: metrics.last_applied.map(|log_id| log_id.index),
            initialized: !members.is_empty(),
            members,
        }
    }
}
