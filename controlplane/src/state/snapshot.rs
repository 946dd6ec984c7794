//! The serialized form of [`ControlState`] in Raft snapshots (JSON).
//!
//! Compatibility rule: the document carries `format_version`. A reader
//! accepts its own version and the versions next to it (one older, one
//! newer), so a rolling upgrade can move snapshots both ways between two
//! adjacent releases. To keep that true, a new version may only add fields
//! (with `#[serde(default)]`, so an older document still reads) and a reader
//! ignores fields it does not know (no `deny_unknown_fields`). Anything else
//! needs two steps of versions.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::machine::{ControlState, PeerSecret};
use super::types::{AclRule, ApiToken, Ban, DataPlaneNode, ShareGroupKey, ShareMember, User};
use crate::NodeId;

/// The version this build writes.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

/// A snapshot that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFormatError {
    #[error("snapshot format version {found} is not readable by this build (reads {min}..={max})")]
    UnsupportedVersion { found: u32, min: u32, max: u32 },
    #[error("malformed snapshot: {0}")]
    Malformed(#[from] serde_json::Error),
}

#[derive(Serialize, Deserialize)]
struct Header {
    format_version: u32,
}

#[derive(Serialize, Deserialize)]
struct RouteEntry {
    topic_filter: String,
    node_ids: BTreeSet<NodeId>,
}

#[derive(Serialize, Deserialize)]
struct ShareGroupEntry {
    #[serde(flatten)]
    key: ShareGroupKey,
    members: BTreeSet<ShareMember>,
}

/// A route as written: borrowed from the state (no copy of a million
/// filters to write a snapshot); reads back as [`RouteEntry`].
#[derive(Serialize)]
struct RouteEntryRef<'a> {
    topic_filter: &'a str,
    node_ids: &'a super::NodeSet,
}

/// A shared group as written; reads back as [`ShareGroupEntry`].
#[derive(Serialize)]
struct ShareGroupEntryRef<'a> {
    #[serde(flatten)]
    key: &'a ShareGroupKey,
    members: &'a BTreeSet<ShareMember>,
}

/// Version 1 of the document as written, borrowed from the state: the same
/// fields in the same order as [`DocumentV1`], which reads it.
#[derive(Serialize)]
struct DocumentV1Ref<'a> {
    format_version: u32,
    users: Vec<&'a User>,
    acl: &'a [AclRule],
    next_acl_id: u64,
    routes: Vec<RouteEntryRef<'a>>,
    share_groups: Vec<ShareGroupEntryRef<'a>>,
    bans: Vec<&'a Ban>,
    bridges: &'a BTreeMap<String, String>,
    plugins: &'a BTreeMap<String, String>,
    dataplane: Vec<&'a DataPlaneNode>,
    tokens: Vec<&'a ApiToken>,
    next_token_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_secret: Option<&'a str>,
}

/// Version 1 of the document.
#[derive(Serialize, Deserialize)]
struct DocumentV1 {
    format_version: u32,
    #[serde(default)]
    users: Vec<User>,
    #[serde(default)]
    acl: Vec<AclRule>,
    #[serde(default)]
    next_acl_id: u64,
    #[serde(default)]
    routes: Vec<RouteEntry>,
    #[serde(default)]
    share_groups: Vec<ShareGroupEntry>,
    #[serde(default)]
    bans: Vec<Ban>,
    #[serde(default)]
    bridges: BTreeMap<String, String>,
    #[serde(default)]
    plugins: BTreeMap<String, String>,
    #[serde(default)]
    dataplane: Vec<DataPlaneNode>,
    /// API tokens (hashes only); added within version 1, absent is none.
    #[serde(default)]
    tokens: Vec<ApiToken>,
    #[serde(default)]
    next_token_id: u64,
    /// The cluster's peer secret; added within version 1, absent is unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    peer_secret: Option<String>,
}

impl ControlState {
    /// Serializes the state with the current format version.
    pub fn to_snapshot_bytes(&self) -> Result<Vec<u8>, SnapshotFormatError> {
        let document = DocumentV1Ref {
            format_version: SNAPSHOT_FORMAT_VERSION,
            users: self.users.values().collect(),
            acl: &self.acl,
            next_acl_id: self.next_acl_id,
            routes: self
                .routes
                .iter()
                .map(|(filter, nodes)| RouteEntryRef { topic_filter: filter, node_ids: nodes })
                .collect(),
            share_groups: self
                .share_groups
                .iter()
                .map(|(key, members)| ShareGroupEntryRef { key, members })
                .collect(),
            bans: self.bans.values().collect(),
            bridges: &self.bridges,
            plugins: &self.plugins,
            dataplane: self.dataplane.values().collect(),
            tokens: self.tokens.values().collect(),
            next_token_id: self.next_token_id,
            peer_secret: self.peer_secret.as_ref().map(|secret| secret.0.as_str()),
        };
        Ok(serde_json::to_vec(&document)?)
    }

    /// Reads a snapshot written by this version or an adjacent one.
    pub fn from_snapshot_bytes(bytes: &[u8]) -> Result<Self, SnapshotFormatError> {
        let header: Header = serde_json::from_slice(bytes)?;
        let (min, max) = (SNAPSHOT_FORMAT_VERSION.saturating_sub(1).max(1), SNAPSHOT_FORMAT_VERSION + 1);
        if !(min..=max).contains(&header.format_version) {
            return Err(SnapshotFormatError::UnsupportedVersion { found: header.format_version, min, max });
        }
        let document: DocumentV1 = serde_json::from_slice(bytes)?;
        let max_acl_id = document.acl.iter().map(|rule| rule.id).max().unwrap_or(0);
        let next_token_id = match document.tokens.iter().map(|token| token.id).max() {
            Some(max_token_id) => document.next_token_id.max(max_token_id + 1),
            None => document.next_token_id,
        };
        Ok(ControlState {
            users: document.users.into_iter().map(|user| (user.username.clone(), user)).collect(),
            acl: document.acl,
            next_acl_id: document.next_acl_id.max(max_acl_id + 1),
            routes: document
                .routes
                .into_iter()
                .map(|entry| (entry.topic_filter, super::NodeSet::from(entry.node_ids)))
                .collect(),
            share_groups: document.share_groups.into_iter().map(|entry| (entry.key, entry.members)).collect(),
            bans: document.bans.into_iter().map(|ban| (ban.key.clone(), ban)).collect(),
            bridges: document.bridges,
            plugins: document.plugins,
            dataplane: document.dataplane.into_iter().map(|node| (node.id, node)).collect(),
            tokens: document.tokens.into_iter().map(|token| (token.id, token)).collect(),
            next_token_id,
            peer_secret: document.peer_secret.map(PeerSecret),
        })
    }
}
