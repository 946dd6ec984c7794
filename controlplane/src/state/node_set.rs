//! `NodeSet`: the data-plane nodes of one route, small and sorted.
//!
//! Nearly every route has one node (each device subscribes to its own
//! topic), so one node is held inline, without an allocation; more go in a
//! sorted boxed slice. Serialized as a list of ids, as a `BTreeSet` was.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// A sorted set of node ids, inline for one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<NodeId>", into = "Vec<NodeId>")]
pub enum NodeSet {
    #[default]
    Empty,
    One(NodeId),
    Many(Box<[NodeId]>),
}

impl NodeSet {
    /// The set of one node.
    pub fn one(node: NodeId) -> NodeSet {
        NodeSet::One(node)
    }

    pub fn as_slice(&self) -> &[NodeId] {
        match self {
            NodeSet::Empty => &[],
            NodeSet::One(node) => std::slice::from_ref(node),
            NodeSet::Many(nodes) => nodes,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &NodeId> + '_ {
        self.as_slice().iter()
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    pub fn contains(&self, node: &NodeId) -> bool {
        self.as_slice().binary_search(node).is_ok()
    }

    /// Adds `node`; returns whether it was absent.
    pub fn insert(&mut self, node: NodeId) -> bool {
        let slice = self.as_slice();
        let Err(at) = slice.binary_search(&node) else { return false };
        let mut nodes = slice.to_vec();
        nodes.insert(at, node);
        *self = NodeSet::from(nodes);
        true
    }

    /// Removes `node`; returns whether it was there.
    pub fn remove(&mut self, node: &NodeId) -> bool {
        let slice = self.as_slice();
        let Ok(at) = slice.binary_search(node) else { return false };
        let mut nodes = slice.to_vec();
        nodes.remove(at);
        *self = NodeSet::from(nodes);
        true
    }
}

impl From<Vec<NodeId>> for NodeSet {
    fn from(mut nodes: Vec<NodeId>) -> NodeSet {
        nodes.sort_unstable();
        nodes.dedup();
        match nodes.as_slice() {
            [] => NodeSet::Empty,
            [node] => NodeSet::One(*node),
            _ => NodeSet::Many(nodes.into_boxed_slice()),
        }
    }
}

impl From<NodeSet> for Vec<NodeId> {
    fn from(set: NodeSet) -> Vec<NodeId> {
        set.as_slice().to_vec()
    }
}

impl From<&NodeSet> for BTreeSet<NodeId> {
    fn from(set: &NodeSet) -> BTreeSet<NodeId> {
        set.iter().copied().collect()
    }
}

impl From<BTreeSet<NodeId>> for NodeSet {
    fn from(set: BTreeSet<NodeId>) -> NodeSet {
        NodeSet::from(set.into_iter().collect::<Vec<_>>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_node_inline_more_sorted_and_serialized_as_a_list() {
        let mut set = NodeSet::default();
        assert!(set.insert(5) && !set.insert(5));
        assert_eq!(set, NodeSet::One(5));
        assert!(set.insert(2) && set.insert(9));
        assert_eq!(set.as_slice(), &[2, 5, 9]);
        assert!(set.contains(&9) && !set.contains(&3));
        assert_eq!(serde_json::to_string(&set).unwrap(), "[2,5,9]");
        let back: NodeSet = serde_json::from_str("[9,2,5,2]").unwrap();
        assert_eq!(back, set, "read back sorted, without repeats");
        assert!(set.remove(&5) && set.remove(&2) && !set.remove(&2));
        assert_eq!(set, NodeSet::One(9));
        assert!(set.remove(&9) && set.is_empty());
        assert!(std::mem::size_of::<NodeSet>() <= 24);
    }
}
