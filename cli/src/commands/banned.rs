//! `mqttctl banned add|list|del`: bans on a client id, a username or an IP
//! address/network, optionally until a time. A ban is named by what it
//! bans, so adding the same target again replaces the ban.

use anyhow::Result;
use proto::admin::{BannedAddRequest, BannedDeleteRequest, BannedListRequest};
use proto::controlplane::{Ban, BanKey, BanKind};
use serde_json::json;

use crate::args::{BanTarget, BannedCommand};
use crate::connection::Connection;
use crate::output::{now_ms, utc_time, Output, Table};

pub async fn run(command: BannedCommand, connection: &Connection) -> Result<Output> {
    match command {
        BannedCommand::Add(args) => {
            let (kind, value) = key(args.target);
            let until_ms = args.expires.map(|seconds| now_ms().saturating_add(seconds.saturating_mul(1000)));
            let ban =
                Ban { kind: kind.into(), value: value.clone(), reason: args.reason, until_ms, created_ms: 0 };
            let written =
                connection.write(connection.admin().banned_add(BannedAddRequest { ban: Some(ban) })).await?;
            let until = until_ms
                .map_or_else(|| "with no expiry".to_owned(), |until| format!("until {}", utc_time(until)));
            let label = kind_name(kind.into());
            Ok(Output::new(
                format!("banned {label} {value:?} {until}"),
                json!({"kind": label, "value": value, "until_ms": until_ms, "index": written.index}),
            ))
        }
        BannedCommand::List => {
            let banned = connection.read(connection.admin().banned_list(BannedListRequest {})).await?.banned;
            Ok(list(&banned))
        }
        BannedCommand::Del(target) => {
            let (kind, value) = key(target);
            let request =
                BannedDeleteRequest { key: Some(BanKey { kind: kind.into(), value: value.clone() }) };
            let written = connection.write(connection.admin().banned_delete(request)).await?;
            let label = kind_name(kind.into());
            Ok(Output::new(
                format!("lifted the ban on {label} {value:?}"),
                json!({"kind": label, "value": value, "index": written.index}),
            ))
        }
    }
}

fn key(target: BanTarget) -> (BanKind, String) {
    // clap guarantees exactly one of the three.
    match (target.clientid, target.username, target.ipaddr) {
        (Some(client_id), _, _) => (BanKind::ClientId, client_id),
        (_, Some(username), _) => (BanKind::Username, username),
        (_, _, Some(address)) => (BanKind::IpAddress, address),
        (None, None, None) => (BanKind::Unspecified, String::new()),
    }
}

/// The kind with the flag names of `banned add`.
fn kind_name(kind: i32) -> &'static str {
    match BanKind::try_from(kind) {
        Ok(BanKind::ClientId) => "clientid",
        Ok(BanKind::Username) => "username",
        Ok(BanKind::IpAddress) => "ipaddr",
        _ => "unknown",
    }
}

fn list(banned: &[Ban]) -> Output {
    let mut table = Table::new(&["KIND", "VALUE", "SINCE", "UNTIL", "REASON"]);
    for ban in banned {
        table.row(vec![
            kind_name(ban.kind).to_owned(),
            ban.value.clone(),
            utc_time(ban.created_ms),
            ban.until_ms.map_or_else(|| "never".to_owned(), utc_time),
            ban.reason.clone(),
        ]);
    }
    let human = if table.is_empty() { "no bans".to_owned() } else { table.render() };
    let json_bans: Vec<_> = banned
        .iter()
        .map(|ban| {
            json!({
                "kind": kind_name(ban.kind),
                "value": ban.value,
                "reason": ban.reason,
                "created_ms": ban.created_ms,
                "until_ms": ban.until_ms,
            })
        })
        .collect();
    Output::new(human, json!({ "banned": json_bans }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_render_both_ways() {
        let banned = vec![Ban {
            kind: BanKind::IpAddress.into(),
            value: "10.0.0.0/8".into(),
            reason: "spam".into(),
            until_ms: None,
            created_ms: 0,
        }];
        let output = list(&banned);
        assert_eq!(
            output.human.lines().nth(1),
            Some("ipaddr  10.0.0.0/8  1970-01-01T00:00:00Z  never  spam")
        );
        assert_eq!(output.json["banned"][0]["kind"], "ipaddr");
        assert_eq!(output.json["banned"][0]["until_ms"], serde_json::Value::Null);
        assert_eq!(list(&[]).human, "no bans");
    }
}
