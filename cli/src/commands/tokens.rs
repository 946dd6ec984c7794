//! `mqttctl tokens add|list|del`.
//!
//! `add` prints the new secret once (text: the token alone on a line, so
//! `mqttctl tokens add ... > file` makes a token file); the cluster keeps
//! only its hash, and `list` shows ids, roles, node ids and creation times.

use anyhow::{anyhow, Result};
use proto::admin::{
    TokenAddRequest, TokenDeleteRequest, TokenInfo, TokenListRequest, TokenRole as PbTokenRole,
};
use serde_json::json;

use crate::args::{TokenRole, TokensCommand};
use crate::connection::Connection;
use crate::output::{or_dash, utc_time, Output, Table};

pub async fn run(command: TokensCommand, connection: &Connection) -> Result<Output> {
    match command {
        TokensCommand::Add { role, node_id } => {
            let role = match role {
                TokenRole::Admin => PbTokenRole::Admin,
                TokenRole::Dataplane => PbTokenRole::Dataplane,
            };
            let request = TokenAddRequest { role: role as i32, node_id };
            let reply = connection.write(connection.admin().token_add(request)).await?;
            let info = reply.info.ok_or_else(|| anyhow!("the server answered without the token's id"))?;
            let mut json = info_json(&info);
            json["token"] = json!(reply.token);
            json["index"] = json!(reply.index);
            Ok(Output::new(reply.token, json))
        }
        TokensCommand::List => {
            let tokens = connection.read(connection.admin().token_list(TokenListRequest {})).await?.tokens;
            Ok(list(&tokens))
        }
        TokensCommand::Del { id } => {
            let written =
                connection.write(connection.admin().token_delete(TokenDeleteRequest { id })).await?;
            Ok(Output::new(format!("deleted token {id}"), json!({"id": id, "index": written.index})))
        }
    }
}

fn role_name(role: i32) -> &'static str {
    match PbTokenRole::try_from(role) {
        Ok(PbTokenRole::Admin) => "admin",
        Ok(PbTokenRole::Dataplane) => "dataplane",
        _ => "unknown",
    }
}

fn info_json(info: &TokenInfo) -> serde_json::Value {
    json!({
        "id": info.id,
        "role": role_name(info.role),
        "node_id": info.node_id,
        "created_ms": info.created_ms,
    })
}

fn list(tokens: &[TokenInfo]) -> Output {
    let mut table = Table::new(&["ID", "ROLE", "NODE", "CREATED"]);
    for token in tokens {
        table.row(vec![
            token.id.to_string(),
            role_name(token.role).to_owned(),
            or_dash(token.node_id),
            utc_time(token.created_ms),
        ]);
    }
    let human = if table.is_empty() { "no tokens".to_owned() } else { table.render() };
    let json_tokens: Vec<_> = tokens.iter().map(info_json).collect();
    Output::new(human, json!({ "tokens": json_tokens }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_show_no_secret() {
        let tokens = vec![
            TokenInfo { id: 1, role: PbTokenRole::Admin as i32, node_id: None, created_ms: 0 },
            TokenInfo { id: 2, role: PbTokenRole::Dataplane as i32, node_id: Some(21), created_ms: 0 },
        ];
        let output = list(&tokens);
        assert_eq!(
            output.human,
            "ID  ROLE       NODE  CREATED\n1   admin      -     1970-01-01T00:00:00Z\n2   dataplane  21    1970-01-01T00:00:00Z"
        );
        assert_eq!(
            output.json["tokens"][1],
            json!({"id": 2, "role": "dataplane", "node_id": 21, "created_ms": 0})
        );
        assert_eq!(list(&[]).human, "no tokens");
    }
}
