//! Our errors as gRPC statuses, each with a specific code and a message an
//! operator can act on.

use tonic::Status;

use crate::state::{CommandError, ErrorKind, Response};
use crate::writer::WriteError;

pub(crate) fn write_error(error: WriteError) -> Status {
    let message = error.to_string();
    match error {
        WriteError::NoLeader
        | WriteError::NotLeader(_)
        | WriteError::LeaderUnreachable { .. }
        | WriteError::ShuttingDown => Status::unavailable(message),
        WriteError::NoAnswer { .. } => Status::deadline_exceeded(message),
        WriteError::ForwardRefused { .. } => Status::internal(message),
        WriteError::MembershipRefused(_) => Status::failed_precondition(message),
        WriteError::NotMember(_) => Status::not_found(message),
        WriteError::Internal(_) => Status::internal(message),
    }
}

pub(crate) fn command_error(error: CommandError) -> Status {
    let message = error.to_string();
    match error.kind() {
        ErrorKind::NotFound => Status::not_found(message),
        ErrorKind::AlreadyExists => Status::already_exists(message),
        ErrorKind::InvalidArgument => Status::invalid_argument(message),
    }
}

/// A write's outcome: the index and response, or the status for a write that
/// failed or a command that was refused.
pub(crate) fn applied(result: Result<(u64, Response), WriteError>) -> Result<(u64, Response), Status> {
    let (index, response) = result.map_err(write_error)?;
    let response = response.into_result().map_err(command_error)?;
    Ok((index, response))
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn write_errors_have_specific_codes() {
        assert_eq!(write_error(WriteError::NoLeader).code(), Code::Unavailable);
        assert_eq!(write_error(WriteError::NotMember(4)).code(), Code::NotFound);
        assert_eq!(write_error(WriteError::MembershipRefused("x".into())).code(), Code::FailedPrecondition);
        let no_answer = WriteError::NoAnswer { leader: 1, reason: "timeout".into() };
        assert_eq!(write_error(no_answer).code(), Code::DeadlineExceeded);
    }

    #[test]
    fn refused_commands_have_specific_codes() {
        let applied_status =
            |error: CommandError| applied(Ok((1, Response::Failed(error)))).map(|_| ()).unwrap_err();
        assert_eq!(applied_status(CommandError::UserNotFound("u".into())).code(), Code::NotFound);
        assert_eq!(applied_status(CommandError::UserExists("u".into())).code(), Code::AlreadyExists);
        assert_eq!(applied_status(CommandError::InvalidIpNetwork("x".into())).code(), Code::InvalidArgument);
        assert_eq!(applied(Ok((3, Response::Done))).map(|(index, _)| index).ok(), Some(3));
    }
}
