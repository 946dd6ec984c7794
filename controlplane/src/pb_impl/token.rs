//! API tokens: `ApiToken` → `TokenInfo` (never the hash), and the wire's
//! `TokenRole` → the state's.

use proto::admin::{TokenInfo, TokenRole as PbTokenRole};

use super::InvalidInput;
use crate::state::{ApiToken, TokenRole};

impl From<&ApiToken> for TokenInfo {
    fn from(token: &ApiToken) -> Self {
        let role = match token.role {
            TokenRole::Admin => PbTokenRole::Admin,
            TokenRole::Dataplane => PbTokenRole::Dataplane,
        };
        TokenInfo { id: token.id, role: role as i32, node_id: token.node_id, created_ms: token.created_ms }
    }
}

/// The role a request names; unset or unknown is invalid input.
pub(crate) fn token_role(role: i32) -> Result<TokenRole, InvalidInput> {
    match PbTokenRole::try_from(role) {
        Ok(PbTokenRole::Admin) => Ok(TokenRole::Admin),
        Ok(PbTokenRole::Dataplane) => Ok(TokenRole::Dataplane),
        _ => Err(InvalidInput("`role` must be admin or dataplane".to_owned())),
    }
}
