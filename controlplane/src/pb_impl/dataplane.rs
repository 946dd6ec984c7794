//! `DataPlaneNode` → `pb::DataPlaneNode`.

use proto::controlplane as pb;

use crate::state::{DataPlaneNode, DataPlaneState};

impl From<&DataPlaneNode> for pb::DataPlaneNode {
    fn from(node: &DataPlaneNode) -> Self {
        let state = match node.state {
            DataPlaneState::Up => pb::DataPlaneState::Up,
            DataPlaneState::Down { .. } => pb::DataPlaneState::Down,
        };
        pb::DataPlaneNode {
            id: node.id,
            address: node.address.clone(),
            state: state.into(),
            last_heartbeat_ms: node.last_heartbeat_ms,
            connections: node.connections,
            snapshot_index: node.snapshot_index,
        }
    }
}
