//! `mqttctl users add|list|passwd|del`.
//!
//! Passwords travel to the member once, over the admin connection; the
//! member hashes them before anything is replicated, and lists never carry
//! them back.

use anyhow::Result;
use proto::admin::{UserAddRequest, UserDeleteRequest, UserInfo, UserListRequest, UserUpdateRequest};
use serde_json::json;

use crate::args::UsersCommand;
use crate::connection::Connection;
use crate::output::{Output, Table};

pub async fn run(command: UsersCommand, connection: &Connection) -> Result<Output> {
    match command {
        UsersCommand::Add { username, password, superuser } => {
            let request =
                UserAddRequest { username: username.clone(), password, superuser, password_hash: None };
            let written = connection.write(connection.admin().user_add(request)).await?;
            let kind = if superuser { "superuser" } else { "user" };
            Ok(Output::new(
                format!("added {kind} {username:?}"),
                json!({"username": username, "superuser": superuser, "index": written.index}),
            ))
        }
        UsersCommand::List => {
            let users = connection.read(connection.admin().user_list(UserListRequest {})).await?.users;
            Ok(list(&users))
        }
        UsersCommand::Passwd { username, password } => {
            let request =
                UserUpdateRequest { username: username.clone(), password: Some(password), superuser: None };
            let written = connection.write(connection.admin().user_update(request)).await?;
            Ok(Output::new(
                format!("changed the password of {username:?}"),
                json!({"username": username, "index": written.index}),
            ))
        }
        UsersCommand::Del { username } => {
            let request = UserDeleteRequest { username: username.clone() };
            let written = connection.write(connection.admin().user_delete(request)).await?;
            Ok(Output::new(
                format!("deleted user {username:?}"),
                json!({"username": username, "index": written.index}),
            ))
        }
    }
}

fn list(users: &[UserInfo]) -> Output {
    let mut table = Table::new(&["USERNAME", "SUPERUSER"]);
    for user in users {
        table.row(vec![user.username.clone(), if user.superuser { "yes" } else { "no" }.to_owned()]);
    }
    let human = if table.is_empty() { "no users".to_owned() } else { table.render() };
    let json_users: Vec<_> =
        users.iter().map(|user| json!({"username": user.username, "superuser": user.superuser})).collect();
    Output::new(human, json!({ "users": json_users }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_render_both_ways() {
        let users = vec![
            UserInfo { username: "alice".into(), superuser: true },
            UserInfo { username: "bob".into(), superuser: false },
        ];
        let output = list(&users);
        assert_eq!(output.human, "USERNAME  SUPERUSER\nalice     yes\nbob       no");
        assert_eq!(output.json["users"][1], json!({"username": "bob", "superuser": false}));
        assert_eq!(list(&[]).human, "no users");
    }
}
