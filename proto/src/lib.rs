//! The wire contract between the planes: gRPC services and messages
//! generated at build time from `proto/*.proto` (see `build.rs`).
//!
//! - [`raft`]: Raft's own RPCs between control-plane nodes.
//! - [`controlplane`]: the Watch stream, route registration and heartbeats,
//!   spoken by data-plane nodes to the control plane.
//! - [`admin`]: the admin API (cluster, users, ACL, banned clients, config),
//!   spoken by `mqttctl` and the REST server.
//! - [`peer`]: peer links between data-plane nodes (cross-node delivery).
//! - [`auth`]: the tokens carried as `authorization: Bearer TOKEN`.
//! - [`tls`]: TLS settings of gRPC clients (`https://` endpoints).
//!
//! Architecture invariant: this crate depends on nothing of ours and holds no
//! logic beyond the generated code, the token helpers and the assembly of a
//! snapshot sent in parts; both planes and the
//! tools depend on it, never on each other.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod auth;
pub mod tls;

/// Raft RPCs between control-plane nodes (package `mqttd.raft`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod raft {
    tonic::include_proto!("mqttd.raft");
}

/// Watch stream, route registration and heartbeats (package `mqttd.controlplane`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod controlplane {
    tonic::include_proto!("mqttd.controlplane");
}

impl controlplane::StateSnapshot {
    /// Takes in one part of a snapshot sent in parts; returns true once the
    /// last part is in (then `parts_follow` is false again).
    pub fn absorb(&mut self, part: controlplane::SnapshotPart) -> bool {
        self.users.extend(part.users);
        self.routes.extend(part.routes);
        self.share_groups.extend(part.share_groups);
        if part.last {
            self.parts_follow = false;
        }
        part.last
    }
}

/// Peer links between data-plane nodes (package `mqttd.peer.v1`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod peer {
    tonic::include_proto!("mqttd.peer.v1");
}

/// The admin API (package `mqttd.admin`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod admin {
    tonic::include_proto!("mqttd.admin");
}
