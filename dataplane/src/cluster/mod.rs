//! What the data plane knows of the cluster: the control plane's state as a
//! lock-free view (`view`), the access decisions made from it (`access`),
//! the link that keeps it current (`link`), route registration (`routes`),
//! the other nodes' routes (`route_table`) and shared groups
//! (`share_table`), the peer links that carry messages to those nodes
//! (`peer`), the routes nodes announce to each other before a SUBACK
//! (`announce`), the retained messages a starting node takes from the
//! others (`retained_sync`), client ids claimed and sessions moved
//! between nodes (`sessions`), and duplicates left by a partition closed
//! (`reconcile`).
//!
//! Architecture invariant: the data plane speaks to the control plane only
//! through `proto`; it never imports the `controlplane` crate.

pub mod access;
pub mod acl;
pub mod announce;
pub mod link;
pub mod peer;
pub mod recent_checks;
pub mod reconcile;
pub mod retained_sync;
pub mod route_table;
pub mod routes;
pub mod sessions;
pub mod share_table;
pub mod verify;
pub mod view;
