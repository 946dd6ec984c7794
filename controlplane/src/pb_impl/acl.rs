//! `AclRule` ↔ `pb::AclRule`.

use proto::controlplane as pb;
use proto::controlplane::acl_who::Who;

use super::InvalidInput;
use crate::state::{AclAction, AclPermission, AclRule, AclRuleSpec, AclWho};

impl From<&AclRule> for pb::AclRule {
    fn from(rule: &AclRule) -> Self {
        let who = match &rule.spec.who {
            AclWho::All => Who::All(true),
            AclWho::Username(name) => Who::Username(name.clone()),
            AclWho::ClientId(id) => Who::ClientId(id.clone()),
            AclWho::IpNetwork(network) => Who::IpNetwork(network.clone()),
        };
        let action = match rule.spec.action {
            AclAction::Publish => pb::AclAction::Publish,
            AclAction::Subscribe => pb::AclAction::Subscribe,
            AclAction::All => pb::AclAction::All,
        };
        let permission = match rule.spec.permission {
            AclPermission::Allow => pb::AclPermission::Allow,
            AclPermission::Deny => pb::AclPermission::Deny,
        };
        pb::AclRule {
            id: rule.id,
            who: Some(pb::AclWho { who: Some(who) }),
            action: action.into(),
            topic_filter: rule.spec.topic_filter.clone(),
            permission: permission.into(),
        }
    }
}

impl TryFrom<pb::AclRule> for AclRuleSpec {
    type Error = InvalidInput;

    fn try_from(rule: pb::AclRule) -> Result<Self, Self::Error> {
        let who = match rule.who.and_then(|who| who.who) {
            Some(Who::All(_)) => AclWho::All,
            Some(Who::Username(name)) => AclWho::Username(name),
            Some(Who::ClientId(id)) => AclWho::ClientId(id),
            Some(Who::IpNetwork(network)) => AclWho::IpNetwork(network),
            None => return Err(InvalidInput("ACL rule: `who` is not set".to_owned())),
        };
        let action = match pb::AclAction::try_from(rule.action) {
            Ok(pb::AclAction::Publish) => AclAction::Publish,
            Ok(pb::AclAction::Subscribe) => AclAction::Subscribe,
            Ok(pb::AclAction::All) => AclAction::All,
            _ => return Err(InvalidInput("ACL rule: `action` must be publish, subscribe or all".to_owned())),
        };
        let permission = match pb::AclPermission::try_from(rule.permission) {
            Ok(pb::AclPermission::Allow) => AclPermission::Allow,
            Ok(pb::AclPermission::Deny) => AclPermission::Deny,
            _ => return Err(InvalidInput("ACL rule: `permission` must be allow or deny".to_owned())),
        };
        Ok(AclRuleSpec { who, action, topic_filter: rule.topic_filter, permission })
    }
}
