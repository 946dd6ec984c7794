//! `Change` → `pb::Change`.

use proto::controlplane as pb;
use proto::controlplane::change::Change as Kind;

use crate::state::{Change, ConfigKind};

impl From<&Change> for pb::Change {
    fn from(change: &Change) -> Self {
        let kind = match change {
            Change::UserUpserted(user) => Kind::UserUpserted(user.into()),
            Change::UserRemoved(name) => Kind::UserRemoved(name.clone()),
            Change::AclReplaced(rules) => {
                Kind::AclReplaced(pb::AclRules { rules: rules.iter().map(Into::into).collect() })
            }
            Change::RouteSet { topic_filter, node_ids } => Kind::RouteSet(pb::Route {
                topic_filter: topic_filter.clone(),
                node_ids: node_ids.iter().copied().collect(),
            }),
            Change::ShareGroupSet { key, members } => Kind::ShareGroupSet(pb::ShareGroup {
                group: key.group.clone(),
                topic_filter: key.topic_filter.clone(),
                members: members
                    .iter()
                    .map(|member| pb::ShareMember {
                        node_id: member.node_id,
                        client_id: member.client_id.clone(),
                    })
                    .collect(),
            }),
            Change::BanUpserted(ban) => Kind::BanUpserted(ban.into()),
            Change::BanRemoved(key) => Kind::BanRemoved(key.into()),
            Change::ConfigUpserted { kind, name, json } => {
                let document = pb::ConfigDocument { name: name.clone(), json: json.clone() };
                match kind {
                    ConfigKind::Bridge => Kind::BridgeUpserted(document),
                    ConfigKind::Plugin => Kind::PluginUpserted(document),
                }
            }
            Change::ConfigRemoved { kind, name } => match kind {
                ConfigKind::Bridge => Kind::BridgeRemoved(name.clone()),
                ConfigKind::Plugin => Kind::PluginRemoved(name.clone()),
            },
            Change::DataPlaneUpserted(node) => Kind::DataplaneNodeUpserted(node.into()),
            Change::DataPlaneRemoved(id) => Kind::DataplaneNodeRemoved(*id),
            Change::ControlPlaneMembers(members) => Kind::ControlplaneMembers(pb::ControlPlaneMembers {
                members: members.iter().map(Into::into).collect(),
            }),
            Change::PeerSecret(secret) => Kind::PeerSecret(secret.clone()),
        };
        pb::Change { change: Some(kind) }
    }
}
