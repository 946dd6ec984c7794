//! One module per command group; each turns parsed arguments into admin
//! requests and the replies into an [`Output`]. Nothing here prints or
//! decides the exit code: that is `main`'s job.

mod acl;
mod banned;
mod cluster;
mod tokens;
mod users;

use anyhow::Result;

use crate::args::Command;
use crate::connection::Connection;
use crate::output::Output;

pub async fn run(command: Command, connection: &Connection) -> Result<Output> {
    match command {
        Command::Cluster(command) => cluster::run(command, connection).await,
        Command::Users(command) => users::run(command, connection).await,
        Command::Acl(command) => acl::run(command, connection).await,
        Command::Banned(command) => banned::run(command, connection).await,
        Command::Tokens(command) => tokens::run(command, connection).await,
    }
}
