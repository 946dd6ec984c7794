//! `mqttctl acl ...` against one member.

use anyhow::{Context, Result};
use serde_json::json;

use crate::common::{mqttctl, single};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_add_list_del() -> Result<()> {
    let member = single(None).await?;
    let server = member.endpoint();
    let add = |extra: &'static [&'static str]| {
        let server = server.clone();
        async move {
            let args: Vec<&str> = ["--json", "acl", "add"].iter().chain(extra).copied().collect();
            let added = mqttctl(&server, &args).await?.json();
            added["id"].as_u64().context("the reply names the new rule")
        }
    };

    let alice =
        add(&["--allow", "--action", "publish", "--topic", "sensors/%u/#", "--username", "alice"]).await?;
    let network = add(&["--allow", "--action", "all", "--topic", "t/+", "--ipaddr", "10.1.2.3/8"]).await?;
    let first = mqttctl(
        &server,
        &["acl", "add", "--deny", "--action", "subscribe", "--topic", "#", "--all", "--position", "0"],
    )
    .await?;
    let first_line = first.ok().trim_end().to_owned();
    let deny_all = first_line
        .strip_prefix("added ACL rule ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|id| id.parse::<u64>().ok())
        .with_context(|| format!("no id in {first_line:?}"))?;
    assert_eq!(first_line, format!("added ACL rule {deny_all} at position 0: deny subscribe on # for all"));

    let listed = mqttctl(&server, &["acl", "list", "--json"]).await?.json();
    assert_eq!(
        listed,
        json!({"rules": [
            {"id": deny_all, "position": 0, "permission": "deny", "action": "subscribe",
             "who": {"type": "all", "value": null}, "topic": "#"},
            {"id": alice, "position": 1, "permission": "allow", "action": "publish",
             "who": {"type": "username", "value": "alice"}, "topic": "sensors/%u/#"},
            {"id": network, "position": 2, "permission": "allow", "action": "all",
             "who": {"type": "ipaddr", "value": "10.0.0.0/8"}, "topic": "t/+"},
        ]})
    );
    let human = mqttctl(&server, &["acl", "list"]).await?;
    let lines: Vec<&str> = human.ok().lines().collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0].starts_with("POS  ID"), "{lines:?}");
    assert!(lines[2].contains("allow") && lines[2].contains("username alice"), "{lines:?}");

    let bad_network = mqttctl(
        &server,
        &["acl", "add", "--allow", "--action", "publish", "--topic", "a", "--ipaddr", "10.0.0.0/99"],
    )
    .await?;
    assert_eq!(bad_network.failure(), "mqttctl: invalid IP address or network \"10.0.0.0/99\"");
    let bad_topic =
        mqttctl(&server, &["acl", "add", "--deny", "--action", "all", "--topic", "a/#/b", "--all"]).await?;
    assert!(bad_topic.failure().contains("invalid topic filter \"a/#/b\""), "{bad_topic:?}");
    let past_end = mqttctl(
        &server,
        &["acl", "add", "--deny", "--action", "all", "--topic", "x", "--all", "--position", "9"],
    )
    .await?;
    assert!(past_end.failure().contains("past the end"), "{past_end:?}");

    let deleted = mqttctl(&server, &["acl", "del", &deny_all.to_string()]).await?;
    assert_eq!(deleted.ok(), format!("deleted ACL rule {deny_all}\n"));
    let again = mqttctl(&server, &["acl", "del", &deny_all.to_string()]).await?;
    assert_eq!(again.failure(), format!("mqttctl: ACL rule {deny_all} not found"));
    let ids: Vec<u64> = member.handle.read(|state| state.acl_rules().iter().map(|rule| rule.id).collect());
    assert_eq!(ids, vec![alice, network]);
    member.shutdown().await
}
