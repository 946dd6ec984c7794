//! `ConfigKind` ↔ `pb::ConfigKind`.

use proto::admin::ConfigKind as PbConfigKind;

use super::InvalidInput;
use crate::state::ConfigKind;

/// The kind named by an admin request's `kind` field.
pub(crate) fn config_kind(kind: i32) -> Result<ConfigKind, InvalidInput> {
    match PbConfigKind::try_from(kind) {
        Ok(PbConfigKind::Bridge) => Ok(ConfigKind::Bridge),
        Ok(PbConfigKind::Plugin) => Ok(ConfigKind::Plugin),
        _ => Err(InvalidInput("`kind` must be bridge or plugin".to_owned())),
    }
}
