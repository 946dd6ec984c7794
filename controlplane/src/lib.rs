//! The control plane: a Raft group (openraft) that owns the cluster's
//! authoritative state — control-plane members, data-plane nodes, users,
//! ACL rules, the route table, shared-subscription groups, bridge and plugin
//! configuration, banned clients, the data-plane peer secret — and pushes
//! every committed change to the data plane over the Watch stream.
//!
//! Start a member with [`ControlPlane::start`] and a [`ControlPlaneConfig`];
//! talk to it over gRPC (`proto::admin`, `proto::controlplane`) at
//! [`ControlPlaneHandle::endpoint`], in process or from afar.
//!
//! Code map, following a write: `grpc/` receives it (admin API or route
//! registration), `writer.rs` proposes it to Raft or forwards it to the
//! leader (`batcher.rs` coalesces route batches and heartbeats first),
//! `network/` carries Raft's RPCs between members, `store/` makes the log
//! and snapshots durable in redb, `applied.rs` applies committed commands to
//! the `state/` machine and publishes the changes to `feed.rs`, from which
//! every Watch stream reads. `credentials.rs` keeps the node's admin token
//! file and hashes API tokens; `grpc/auth.rs` decides who may call what.
//! `housekeeping.rs` makes the cluster's peer secret once and expires
//! silent data-plane nodes and old bans on the leader; `node.rs` wires it
//! all up.
//!
//! Architecture invariants: this crate never imports the data plane (both
//! speak only `proto`); the state changes only by applying committed
//! commands; passwords are hashed before a command is proposed, so no
//! password ever reaches the log, a snapshot or the wire.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod applied;
mod batcher;
pub mod config;
pub mod credentials;
mod feed;
mod grpc;
mod housekeeping;
mod network;
mod node;
mod pb_impl;
pub mod state;
mod status;
mod store;
mod writer;

pub use config::{ConfigError, ControlPlaneConfig, GrpcTls};
pub use credentials::ADMIN_TOKEN_FILE;
pub use node::{ControlPlane, ControlPlaneHandle, ShutdownError, StartError};
pub use status::{NodeStatus, Role};
pub use store::{StoreError, SNAPSHOT_DATA_FILE, SNAPSHOT_FILE, STORE_FILE};

/// A node id: control-plane members and data-plane nodes each have one.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The Raft type configuration of the control-plane group: log entries
    /// carry [`state::Command`]s, applying one answers a [`state::Response`].
    pub TypeConfig:
        D = state::Command,
        R = state::Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = std::io::Cursor<Vec<u8>>,
);

/// The Raft handle of this group.
pub(crate) type Raft = openraft::Raft<TypeConfig>;
