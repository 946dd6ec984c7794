//! Conversions between the state's types and the protobuf types of
//! `proto::controlplane` and `proto::admin`, one file per concept.
//!
//! Domain → wire conversions cannot fail. Wire → domain conversions of
//! operator input return [`InvalidInput`] (an unset enum, a missing field),
//! which the gRPC layer answers with `InvalidArgument`; deeper checks (CIDR,
//! topic filters) happen when the command is applied.

mod acl;
mod ban;
mod change;
mod config;
mod dataplane;
mod membership;
mod snapshot;
mod token;
mod user;

pub(crate) use config::config_kind;
pub(crate) use membership::members_of;
pub(crate) use snapshot::{split_snapshot, state_snapshot, SNAPSHOT_PART_BYTES};
pub(crate) use token::token_role;

/// Operator input that does not make a valid command.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

impl From<InvalidInput> for tonic::Status {
    fn from(error: InvalidInput) -> Self {
        tonic::Status::invalid_argument(error.0)
    }
}
