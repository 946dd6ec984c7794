//! `Writer`: every write goes through here, whichever member received it.
//!
//! On the leader a write is proposed to Raft directly. On a follower or
//! learner it is forwarded to the leader over the `Raft.Forward` RPC, so a
//! client never needs to know the leader. While no leader is known (an
//! election), the write is retried for a few seconds before the caller gets
//! [`WriteError::NoLeader`]. Membership changes (join, leave) travel the same
//! way and always run on the leader.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use proto::raft::RaftMessage;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::network::Peers;
use crate::state::{Command, Response};
use crate::{NodeId, Raft};

/// How long a write waits for a leader to be elected before giving up.
const LEADER_WAIT: Duration = Duration::from_secs(5);
/// How long a forwarded write may take on the leader.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a join may take: the learner must catch up before it votes.
const JOIN_TIMEOUT: Duration = Duration::from_secs(120);

/// What only the leader can do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum LeaderRequest {
    Write(Command),
    /// Adds `node_id` at `addr` as a learner, waits until it caught up, then
    /// makes it a voter (unless `learner`).
    Join {
        node_id: NodeId,
        addr: String,
        /// Stay a learner. Defaults to false for requests from older members.
        #[serde(default)]
        learner: bool,
    },
    /// Removes `node_id` from the voters and learners.
    Leave {
        node_id: NodeId,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum LeaderReply {
    Written { index: u64, response: Response },
    MembershipChanged { index: u64 },
}

/// Why a write did not happen (or may not have).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum WriteError {
    #[error("no control-plane leader is elected at the moment; retry shortly")]
    NoLeader,
    #[error("this member is not the leader (the leader is {0:?})")]
    NotLeader(Option<NodeId>),
    #[error("cannot reach the leader {leader} at {addr}: {reason}")]
    LeaderUnreachable { leader: NodeId, addr: String, reason: String },
    /// The request reached the leader but its answer did not come back: the
    /// write may or may not have been applied, so it is not retried.
    #[error("no answer from the leader {leader}: {reason}; the write may or may not have been applied")]
    NoAnswer { leader: NodeId, reason: String },
    /// The leader refused the forwarded call itself (e.g. a different token).
    #[error("the leader {leader} refused the forwarded request: {reason}")]
    ForwardRefused { leader: NodeId, reason: String },
    #[error("membership change refused: {0}")]
    MembershipRefused(String),
    #[error("node {0} is not a control-plane member")]
    NotMember(NodeId),
    #[error("the control plane is shutting down")]
    ShuttingDown,
    #[error("internal error: {0}")]
    Internal(String),
}

impl WriteError {
    /// Errors after which the request did not run (a refused connection
    /// never carried it), worth a retry.
    fn is_retryable(&self) -> bool {
        matches!(self, WriteError::NoLeader | WriteError::NotLeader(_) | WriteError::LeaderUnreachable { .. })
    }
}

/// The outcome of trying a request on this member.
enum Local {
    Done(LeaderReply),
    Forward { leader: NodeId, addr: String },
    Failed(WriteError),
}

#[derive(Clone)]
pub(crate) struct Writer {
    raft: Raft,
    peers: Peers,
}

type ClientError = RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>;

fn classify(error: ClientError) -> Local {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            match (forward.leader_id, forward.leader_node) {
                (Some(leader), Some(node)) => Local::Forward { leader, addr: node.addr },
                _ => Local::Failed(WriteError::NoLeader),
            }
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(error)) => match error {
            ChangeMembershipError::LearnerNotFound(missing) => {
                Local::Failed(WriteError::NotMember(missing.node_id))
            }
            other => Local::Failed(WriteError::MembershipRefused(other.to_string())),
        },
        RaftError::Fatal(fatal) => {
            tracing::debug!(%fatal, "raft is stopped");
            Local::Failed(WriteError::ShuttingDown)
        }
    }
}

impl Writer {
    pub fn new(raft: Raft, peers: Peers) -> Self {
        Writer { raft, peers }
    }

    /// Proposes a command; answers the Raft index it was applied at and what
    /// applying it answered (which may be [`Response::Failed`]).
    pub async fn write(&self, command: Command) -> Result<(u64, Response), WriteError> {
        match self.execute(LeaderRequest::Write(command)).await? {
            LeaderReply::Written { index, response } => Ok((index, response)),
            LeaderReply::MembershipChanged { .. } => Err(WriteError::Internal("unexpected reply".to_owned())),
        }
    }

    /// Runs a leader request here if this member leads, else on the leader.
    pub async fn execute(&self, request: LeaderRequest) -> Result<LeaderReply, WriteError> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let result = match self.execute_here(request.clone()).await {
                Local::Done(reply) => Ok(reply),
                Local::Failed(error) => Err(error),
                Local::Forward { leader, addr } => self.forward(leader, &addr, &request).await,
            };
            match result {
                Err(error) if error.is_retryable() && Instant::now() < deadline => {
                    tracing::debug!(%error, "write not placed yet; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    /// Runs a request forwarded by another member: never forwards again.
    pub async fn execute_forwarded(&self, request: LeaderRequest) -> Result<LeaderReply, WriteError> {
        match self.execute_here(request).await {
            Local::Done(reply) => Ok(reply),
            Local::Failed(error) => Err(error),
            Local::Forward { leader, .. } => Err(WriteError::NotLeader(Some(leader))),
        }
    }

    async fn forward(
        &self,
        leader: NodeId,
        addr: &str,
        request: &LeaderRequest,
    ) -> Result<LeaderReply, WriteError> {
        let unreachable =
            |reason: String| WriteError::LeaderUnreachable { leader, addr: addr.to_owned(), reason };
        let json = serde_json::to_vec(request).map_err(|error| WriteError::Internal(error.to_string()))?;
        let mut client = self.peers.raft(addr).map_err(|error| unreachable(error.to_string()))?;
        let timeout = match request {
            LeaderRequest::Join { .. } => JOIN_TIMEOUT,
            _ => FORWARD_TIMEOUT,
        };
        let reply = tokio::time::timeout(timeout, client.forward(RaftMessage { json }))
            .await
            .map_err(|_| WriteError::NoAnswer { leader, reason: format!("nothing within {timeout:?}") })?
            .map_err(|status| match status.code() {
                tonic::Code::Unavailable => unreachable(status.message().to_owned()),
                tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded => {
                    WriteError::NoAnswer { leader, reason: status.message().to_owned() }
                }
                _ => WriteError::ForwardRefused { leader, reason: status.message().to_owned() },
            })?;
        serde_json::from_slice::<Result<LeaderReply, WriteError>>(&reply.into_inner().json)
            .map_err(|error| WriteError::Internal(format!("malformed reply from the leader: {error}")))?
    }

    async fn execute_here(&self, request: LeaderRequest) -> Local {
        match request {
            LeaderRequest::Write(command) => match self.raft.client_write(command).await {
                Ok(written) => {
                    Local::Done(LeaderReply::Written { index: written.log_id.index, response: written.data })
                }
                Err(error) => classify(error),
            },
            LeaderRequest::Join { node_id, addr, learner } => self.join(node_id, addr, learner).await,
            LeaderRequest::Leave { node_id } => self.leave(node_id).await,
        }
    }

    async fn join(&self, node_id: NodeId, addr: String, learner: bool) -> Local {
        let membership = self.raft.metrics().borrow().membership_config.membership().clone();
        if let Some((other, _)) = membership.nodes().find(|(id, node)| **id != node_id && node.addr == addr) {
            return Local::Failed(WriteError::MembershipRefused(format!("{addr} is already member {other}")));
        }
        if let Some(node) = membership.get_node(&node_id) {
            if node.addr != addr {
                return Local::Failed(WriteError::MembershipRefused(format!(
                    "node id {node_id} is already a member at {}",
                    node.addr
                )));
            }
        }
        let is_voter = membership.voter_ids().any(|id| id == node_id);
        if !is_voter {
            tracing::info!(node_id, %addr, "adding a learner");
            let added = tokio::time::timeout(
                JOIN_TIMEOUT,
                self.raft.add_learner(node_id, BasicNode::new(&addr), true),
            );
            match added.await {
                Err(_) => {
                    return Local::Failed(WriteError::MembershipRefused(format!(
                        "node {node_id} did not catch up within {JOIN_TIMEOUT:?}; it stays a learner"
                    )))
                }
                Ok(Err(error)) => return classify(error),
                Ok(Ok(_)) => {}
            }
        }
        if learner {
            if is_voter {
                return Local::Failed(WriteError::MembershipRefused(format!(
                    "node {node_id} is a voter; remove it first to rejoin it as a learner"
                )));
            }
            let index = self.raft.metrics().borrow().last_applied.map(|id| id.index).unwrap_or(0);
            return Local::Done(LeaderReply::MembershipChanged { index });
        }
        tracing::info!(node_id, "promoting to voter");
        let change = ChangeMembers::AddVoterIds(BTreeSet::from([node_id]));
        match self.raft.change_membership(change, false).await {
            Ok(written) => Local::Done(LeaderReply::MembershipChanged { index: written.log_id.index }),
            Err(error) => classify(error),
        }
    }

    async fn leave(&self, node_id: NodeId) -> Local {
        let membership = self.raft.metrics().borrow().membership_config.membership().clone();
        let change: ChangeMembers<NodeId, BasicNode> = if membership.voter_ids().any(|id| id == node_id) {
            if membership.voter_ids().count() == 1 {
                return Local::Failed(WriteError::MembershipRefused(
                    "cannot remove the last voter of the cluster".to_owned(),
                ));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([node_id]))
        } else if membership.get_node(&node_id).is_some() {
            ChangeMembers::RemoveNodes(BTreeSet::from([node_id]))
        } else {
            return Local::Failed(WriteError::NotMember(node_id));
        };
        tracing::info!(node_id, "removing a member");
        match self.raft.change_membership(change, false).await {
            Ok(written) => Local::Done(LeaderReply::MembershipChanged { index: written.log_id.index }),
            Err(error) => classify(error),
        }
    }
}
