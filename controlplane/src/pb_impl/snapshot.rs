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
    }
}
