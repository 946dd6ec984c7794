//! `Ban` and `BanKey` ↔ `pb::Ban` and `pb::BanKey`.

use proto::controlplane as pb;

use super::InvalidInput;
use crate::state::{Ban, BanKey, BanKind};

fn kind_to_pb(kind: BanKind) -> pb::BanKind {
    match kind {
        BanKind::ClientId => pb::BanKind::ClientId,
        BanKind::Username => pb::BanKind::Username,
        BanKind::IpAddress => pb::BanKind::IpAddress,
    }
}

fn kind_from_pb(kind: i32) -> Result<BanKind, InvalidInput> {
    match pb::BanKind::try_from(kind) {
        Ok(pb::BanKind::ClientId) => Ok(BanKind::ClientId),
        Ok(pb::BanKind::Username) => Ok(BanKind::Username),
        Ok(pb::BanKind::IpAddress) => Ok(BanKind::IpAddress),
        _ => Err(InvalidInput("ban: `kind` must be client_id, username or ip_address".to_owned())),
    }
}

impl From<&BanKey> for pb::BanKey {
    fn from(key: &BanKey) -> Self {
        pb::BanKey { kind: kind_to_pb(key.kind).into(), value: key.value.clone() }
    }
}

impl From<&Ban> for pb::Ban {
    fn from(ban: &Ban) -> Self {
        pb::Ban {
            kind: kind_to_pb(ban.key.kind).into(),
            value: ban.key.value.clone(),
            reason: ban.reason.clone(),
            until_ms: ban.until_ms,
            created_ms: ban.created_ms,
        }
    }
}

impl TryFrom<pb::BanKey> for BanKey {
    type Error = InvalidInput;

    fn try_from(key: pb::BanKey) -> Result<Self, Self::Error> {
        Ok(BanKey { kind: kind_from_pb(key.kind)?, value: key.value })
    }
}

impl TryFrom<pb::Ban> for Ban {
    type Error = InvalidInput;

    fn try_from(ban: pb::Ban) -> Result<Self, Self::Error> {
        Ok(Ban {
            key: BanKey { kind: kind_from_pb(ban.kind)?, value: ban.value },
            reason: ban.reason,
            until_ms: ban.until_ms,
            created_ms: ban.created_ms,
        })
    }
}
