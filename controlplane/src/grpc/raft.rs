//! The `Raft` service: openraft's RPCs from other members, and writes
//! forwarded to this member as leader.

use openraft::raft::InstallSnapshotRequest;
use proto::raft::{RaftMessage, SnapshotChunk};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::writer::{LeaderRequest, Writer};
use crate::{Raft, TypeConfig};

pub(crate) struct RaftService {
    raft: Raft,
    writer: Writer,
}

impl RaftService {
    pub fn new(raft: Raft, writer: Writer) -> Self {
        RaftService { raft, writer }
    }
}

fn decode<T: DeserializeOwned>(what: &str, json: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(json)
        .map_err(|error| Status::invalid_argument(format!("malformed {what}: {error}")))
}

fn reply<T: Serialize>(value: &T) -> Result<Response<RaftMessage>, Status> {
    serde_json::to_vec(value)
        .map(|json| Response::new(RaftMessage { json }))
        .map_err(|error| Status::internal(format!("cannot encode the reply: {error}")))
}

#[tonic::async_trait]
impl proto::raft::raft_server::Raft for RaftService {
    async fn append_entries(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode("append-entries request", &request.into_inner().json)?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode("vote request", &request.into_inner().json)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<SnapshotChunk>,
    ) -> Result<Response<RaftMessage>, Status> {
        let chunk = request.into_inner();
        let rpc = InstallSnapshotRequest::<TypeConfig> {
            vote: decode("snapshot vote", &chunk.vote_json)?,
            meta: decode("snapshot meta", &chunk.meta_json)?,
            offset: chunk.offset,
            data: chunk.data,
            done: chunk.done,
        };
        reply(&self.raft.install_snapshot(rpc).await)
    }

    async fn forward(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let leader_request: LeaderRequest = decode("forwarded request", &request.into_inner().json)?;
        reply(&self.writer.execute_forwarded(leader_request).await)
    }
}
