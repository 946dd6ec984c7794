//! openraft's network: `RaftNetworkFactory` and `RaftNetwork` over the tonic
//! `Raft` service of `proto::raft`.
//!
//! openraft's requests and responses travel as JSON (see `raft.proto`); a
//! response is the JSON of `Result<Reply, RaftError>`, so a remote Raft error
//! comes back as `RPCError::RemoteError`. A transport failure is
//! `Unreachable` when the peer cannot be reached (openraft backs off) and
//! `Network` otherwise. Every call is bounded by openraft's `hard_ttl`.

// openraft's `RPCError` is the error type its traits require; the helpers
// below return it as they find it.
#![allow(clippy::result_large_err)]

mod peers;

use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
pub(crate) use peers::{Peers, MAX_MESSAGE_BYTES};
use proto::raft::{RaftMessage, SnapshotChunk};
use serde::de::DeserializeOwned;

use crate::{NodeId, TypeConfig};

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

/// Creates one [`PeerNetwork`] per replication target.
pub(crate) struct NetworkFactory {
    peers: Peers,
}

impl NetworkFactory {
    pub fn new(peers: Peers) -> Self {
        NetworkFactory { peers }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerNetwork { target, addr: node.addr.clone(), peers: self.peers.clone() }
    }
}

/// The Raft RPCs to one peer.
pub(crate) struct PeerNetwork {
    target: NodeId,
    addr: String,
    peers: Peers,
}

/// A call that did not finish within openraft's deadline.
#[derive(Debug, thiserror::Error)]
#[error("no answer from node {target} within {timeout:?}")]
struct PeerTimeout {
    target: NodeId,
    timeout: Duration,
}

#[derive(Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
}

fn status_error<E: std::error::Error>(status: tonic::Status) -> RPCError<NodeId, BasicNode, E> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown => RPCError::Unreachable(Unreachable::new(&status)),
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

impl PeerNetwork {
    fn decode<T, E>(&self, json: &[u8]) -> RpcResult<T, E>
    where
        T: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let result: Result<T, RaftError<NodeId, E>> =
            serde_json::from_slice(json).map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
        result.map_err(|error| RPCError::RemoteError(RemoteError::new(self.target, error)))
    }

    async fn call<Req, Resp>(&self, rpc: Rpc, request: &Req, option: &RPCOption) -> RpcResult<Resp>
    where
        Req: serde::Serialize,
        Resp: DeserializeOwned,
    {
        let json =
            serde_json::to_vec(request).map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
        let mut client =
            self.peers.raft(&self.addr).map_err(|error| RPCError::Unreachable(Unreachable::new(&error)))?;
        let message = RaftMessage { json };
        let timeout = option.hard_ttl();
        let call = async move {
            match rpc {
                Rpc::AppendEntries => client.append_entries(message).await,
                Rpc::Vote => client.vote(message).await,
            }
        };
        let reply = tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| RPCError::Network(NetworkError::new(&PeerTimeout { target: self.target, timeout })))?
            .map_err(status_error)?;
        self.decode(&reply.into_inner().json)
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.call(Rpc::AppendEntries, &rpc, &option).await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> RpcResult<VoteResponse<NodeId>> {
        self.call(Rpc::Vote, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let network_error = |error: serde_json::Error| RPCError::Network(NetworkError::new(&error));
        let chunk = SnapshotChunk {
            vote_json: serde_json::to_vec(&rpc.vote).map_err(network_error)?,
            meta_json: serde_json::to_vec(&rpc.meta).map_err(network_error)?,
            offset: rpc.offset,
            data: rpc.data,
            done: rpc.done,
        };
        let mut client =
            self.peers.raft(&self.addr).map_err(|error| RPCError::Unreachable(Unreachable::new(&error)))?;
        let timeout = option.hard_ttl();
        let reply = tokio::time::timeout(timeout, client.install_snapshot(chunk))
            .await
            .map_err(|_| RPCError::Network(NetworkError::new(&PeerTimeout { target: self.target, timeout })))?
            .map_err(status_error)?;
        self.decode(&reply.into_inner().json)
    }
}
