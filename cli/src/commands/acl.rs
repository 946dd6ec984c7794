//! `mqttctl acl add|list|del`: the ordered ACL list, where the first rule
//! that matches decides. Rules are named by the id the control plane gives
//! them, which stays the same when other rules move.

use anyhow::Result;
use proto::admin::{AclAddRequest, AclDeleteRequest, AclListRequest};
use proto::controlplane::acl_who::Who;
use proto::controlplane::{self as pb, AclRule, AclWho};
use serde_json::json;

use crate::args::{AclAction, AclAddArgs, AclCommand};
use crate::connection::Connection;
use crate::output::{Output, Table};

pub async fn run(command: AclCommand, connection: &Connection) -> Result<Output> {
    match command {
        AclCommand::Add(args) => {
            let position = args.position;
            let rule = rule(args);
            let described = describe(&rule);
            let request = AclAddRequest { rule: Some(rule), position };
            let added = connection.write(connection.admin().acl_add(request)).await?;
            let place = position.map(|position| format!(" at position {position}")).unwrap_or_default();
            Ok(Output::new(
                format!("added ACL rule {}{place}: {described}", added.id),
                json!({"id": added.id, "index": added.index}),
            ))
        }
        AclCommand::List => {
            let rules = connection.read(connection.admin().acl_list(AclListRequest {})).await?.rules;
            Ok(list(&rules))
        }
        AclCommand::Del { id } => {
            let written = connection.write(connection.admin().acl_delete(AclDeleteRequest { id })).await?;
            Ok(Output::new(format!("deleted ACL rule {id}"), json!({"id": id, "index": written.index})))
        }
    }
}

fn rule(args: AclAddArgs) -> AclRule {
    // clap guarantees exactly one subject and one permission.
    let who = match (args.username, args.clientid, args.ipaddr) {
        (Some(username), _, _) => Who::Username(username),
        (_, Some(client_id), _) => Who::ClientId(client_id),
        (_, _, Some(network)) => Who::IpNetwork(network),
        (None, None, None) => Who::All(true),
    };
    let action = match args.action {
        AclAction::Publish => pb::AclAction::Publish,
        AclAction::Subscribe => pb::AclAction::Subscribe,
        AclAction::All => pb::AclAction::All,
    };
    let permission = if args.deny { pb::AclPermission::Deny } else { pb::AclPermission::Allow };
    AclRule {
        id: 0,
        who: Some(AclWho { who: Some(who) }),
        action: action.into(),
        topic_filter: args.topic,
        permission: permission.into(),
    }
}

fn permission_name(rule: &AclRule) -> &'static str {
    match pb::AclPermission::try_from(rule.permission) {
        Ok(pb::AclPermission::Allow) => "allow",
        Ok(pb::AclPermission::Deny) => "deny",
        _ => "unknown",
    }
}

fn action_name(rule: &AclRule) -> &'static str {
    match pb::AclAction::try_from(rule.action) {
        Ok(pb::AclAction::Publish) => "publish",
        Ok(pb::AclAction::Subscribe) => "subscribe",
        Ok(pb::AclAction::All) => "all",
        _ => "unknown",
    }
}

/// The subject as (type, value), with the flag names of `acl add`.
fn who(rule: &AclRule) -> (&'static str, Option<&str>) {
    match rule.who.as_ref().and_then(|who| who.who.as_ref()) {
        Some(Who::All(_)) => ("all", None),
        Some(Who::Username(username)) => ("username", Some(username)),
        Some(Who::ClientId(client_id)) => ("clientid", Some(client_id)),
        Some(Who::IpNetwork(network)) => ("ipaddr", Some(network)),
        None => ("unknown", None),
    }
}

fn who_text(rule: &AclRule) -> String {
    match who(rule) {
        (kind, Some(value)) => format!("{kind} {value}"),
        (kind, None) => kind.to_owned(),
    }
}

/// "allow publish on a/# for username alice".
fn describe(rule: &AclRule) -> String {
    format!("{} {} on {} for {}", permission_name(rule), action_name(rule), rule.topic_filter, who_text(rule))
}

fn list(rules: &[AclRule]) -> Output {
    let mut table = Table::new(&["POS", "ID", "PERMISSION", "ACTION", "WHO", "TOPIC"]);
    let mut json_rules = Vec::new();
    for (position, rule) in rules.iter().enumerate() {
        table.row(vec![
            position.to_string(),
            rule.id.to_string(),
            permission_name(rule).to_owned(),
            action_name(rule).to_owned(),
            who_text(rule),
            rule.topic_filter.clone(),
        ]);
        let (kind, value) = who(rule);
        json_rules.push(json!({
            "id": rule.id,
            "position": position,
            "permission": permission_name(rule),
            "action": action_name(rule),
            "who": {"type": kind, "value": value},
            "topic": rule.topic_filter,
        }));
    }
    let human = if table.is_empty() { "no ACL rules".to_owned() } else { table.render() };
    Output::new(human, json!({ "rules": json_rules }))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    fn parsed_rule(line: &[&str]) -> AclRule {
        let cli = Cli::try_parse_from(["mqttctl", "acl", "add"].iter().chain(line)).expect("valid");
        match cli.command {
            Command::Acl(AclCommand::Add(args)) => rule(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn flags_become_a_rule() {
        let rule =
            parsed_rule(&["--deny", "--action", "subscribe", "--topic", "#", "--ipaddr", "10.0.0.0/8"]);
        assert_eq!(describe(&rule), "deny subscribe on # for ipaddr 10.0.0.0/8");
        let rule = parsed_rule(&["--allow", "--action", "all", "--topic", "a/%c", "--all"]);
        assert_eq!(describe(&rule), "allow all on a/%c for all");
    }

    #[test]
    fn lists_show_order_and_ids() {
        let rules = vec![
            parsed_rule(&["--deny", "--action", "all", "--topic", "#", "--all"]),
            parsed_rule(&["--allow", "--action", "publish", "--topic", "a", "--clientid", "c1"]),
        ];
        let output = list(&rules);
        assert_eq!(output.human.lines().nth(2), Some("1    0   allow       publish  clientid c1  a"));
        assert_eq!(output.json["rules"][0]["who"], json!({"type": "all", "value": null}));
        assert_eq!(output.json["rules"][1]["who"], json!({"type": "clientid", "value": "c1"}));
        assert_eq!(output.json["rules"][1]["position"], json!(1));
    }
}
