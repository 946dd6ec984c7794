//! The applied state → `pb::StateSnapshot`, the first event of a Watch stream.
//!
//! It carries the cluster's peer secret (empty until the leader has set
//! it): only members and data-plane credentials may Watch.

use proto::controlplane as pb;

use crate::applied::Applied;
use crate::state::{ConfigKind, SNAPSHOT_FORMAT_VERSION};

/// The whole state as of its last applied index (0 before anything was applied).
pub(crate) fn state_snapshot(applied: &Applied) -> pb::StateSnapshot {
    let state = &applied.state;
    let documents = |kind| {
        state
            .configs(kind)
            .iter()
            .map(|(name, json)| pb::ConfigDocument { name: name.clone(), json: json.clone() })
            .collect()
    };
    pb::StateSnapshot {
        index: applied.last_applied_index().unwrap_or(0),
        format_version: SNAPSHOT_FORMAT_VERSION,
        users: state.users().map(Into::into).collect(),
        acl_rules: state.acl_rules().iter().map(Into::into).collect(),
        routes: state
            .routes()
            .iter()
            .map(|(filter, nodes)| pb::Route {
                topic_filter: filter.clone(),
                node_ids: nodes.iter().copied().collect(),
            })
            .collect(),
        share_groups: state
            .share_groups()
            .iter()
            .map(|(key, members)| pb::ShareGroup {
                group: key.group.clone(),
                topic_filter: key.topic_filter.clone(),
                members: members
                    .iter()
                    .map(|member| pb::ShareMember {
                        node_id: member.node_id,
                        client_id: member.client_id.clone(),
                    })
                    .collect(),
            })
            .collect(),
        banned: state.bans().map(Into::into).collect(),
        bridges: documents(ConfigKind::Bridge),
        plugins: documents(ConfigKind::Plugin),
        dataplane_nodes: state.dataplane_nodes().map(Into::into).collect(),
        controlplane_members: crate::pb_impl::members_of(applied.membership.membership())
            .iter()
            .map(Into::into)
            .collect(),
        peer_secret: state.peer_secret().unwrap_or_default().to_owned(),
        parts_follow: false,
    }
}

/// The encoded size a snapshot is sent whole up to; a larger one goes in
/// parts of about this size (far under the 64 MiB message limit, and under
/// tonic's 4 MiB default, so any client can read them).
pub(crate) const SNAPSHOT_PART_BYTES: usize = 2 * 1024 * 1024;

/// Splits a snapshot larger than `part_bytes` (encoded): its users, routes
/// and share groups move into parts of about `part_bytes` each, the last one
/// marked. A smaller one comes back whole, with no parts.
pub(crate) fn split_snapshot(
    mut snapshot: pb::StateSnapshot,
    part_bytes: usize,
) -> (pb::StateSnapshot, Vec<pb::SnapshotPart>) {
    use prost::Message;
    if snapshot.encoded_len() <= part_bytes {
        return (snapshot, Vec::new());
    }
    let mut parts = vec![pb::SnapshotPart::default()];
    let mut size = 0usize;
    let mut room = |item: usize, parts: &mut Vec<pb::SnapshotPart>| {
        if size > 0 && size + item > part_bytes {
            parts.push(pb::SnapshotPart::default());
            size = 0;
        }
        size += item + 8;
    };
    for user in std::mem::take(&mut snapshot.users) {
        room(user.encoded_len(), &mut parts);
        if let Some(part) = parts.last_mut() {
            part.users.push(user);
        }
    }
    for route in std::mem::take(&mut snapshot.routes) {
        room(route.encoded_len(), &mut parts);
        if let Some(part) = parts.last_mut() {
            part.routes.push(route);
        }
    }
    for group in std::mem::take(&mut snapshot.share_groups) {
        room(group.encoded_len(), &mut parts);
        if let Some(part) = parts.last_mut() {
            part.share_groups.push(group);
        }
    }
    if let Some(last) = parts.last_mut() {
        last.last = true;
    }
    snapshot.parts_follow = true;
    (snapshot, parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_snapshot_splits_into_bounded_parts_and_keeps_everything() {
        use prost::Message;
        let routes: Vec<pb::Route> = (0..5000)
            .map(|i| pb::Route { topic_filter: format!("devices/{i:06}/cmd/+"), node_ids: vec![1, 2] })
            .collect();
        let users: Vec<pb::User> = (0..300)
            .map(|i| pb::User {
                username: format!("u{i}"),
                password_hash: "x".repeat(90),
                superuser: false,
                scram_sha256: String::new(),
            })
            .collect();
        let whole = pb::StateSnapshot {
            index: 7,
            routes: routes.clone(),
            users: users.clone(),
            ..Default::default()
        };
        let (head, parts) = split_snapshot(whole.clone(), 16 * 1024);
        assert!(head.parts_follow && head.routes.is_empty() && head.users.is_empty());
        assert!(parts.len() > 5, "{} parts", parts.len());
        assert!(parts.iter().all(|p| p.encoded_len() <= 17 * 1024), "each part near the bound");
        assert_eq!(parts.iter().filter(|p| p.last).count(), 1);
        assert!(parts.last().is_some_and(|p| p.last));
        let back: Vec<pb::Route> = parts.iter().flat_map(|p| p.routes.clone()).collect();
        assert_eq!(back, routes);
        assert_eq!(parts.iter().map(|p| p.users.len()).sum::<usize>(), users.len());
        let (small, none) = split_snapshot(pb::StateSnapshot { index: 1, ..Default::default() }, 16 * 1024);
        assert!(!small.parts_follow && none.is_empty());
    }
}
