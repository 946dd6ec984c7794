//! `mqttctl users ...` against one member.

use anyhow::Result;
use serde_json::json;

use crate::common::{mqttctl, single};

fn password_hash(member: &crate::common::Member, username: &str) -> Option<String> {
    member.handle.read(|state| state.user(username).map(|user| user.password_hash.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_add_list_passwd_del_round_trip() -> Result<()> {
    let member = single(None).await?;
    let server = member.endpoint();

    let added = mqttctl(&server, &["users", "add", "alice", "--password", "pw1"]).await?;
    assert_eq!(added.ok(), "added user \"alice\"\n");
    let root =
        mqttctl(&server, &["--json", "users", "add", "root", "--password", "pw", "--superuser"]).await?;
    let root = root.json();
    assert_eq!((&root["username"], &root["superuser"]), (&json!("root"), &json!(true)));
    assert!(root["index"].as_u64().is_some_and(|index| index > 0), "{root}");

    let listed = mqttctl(&server, &["users", "list"]).await?;
    assert_eq!(listed.ok(), "USERNAME  SUPERUSER\nalice     no\nroot      yes\n");
    let listed = mqttctl(&server, &["users", "list", "--json"]).await?.json();
    assert_eq!(
        listed,
        json!({"users": [{"username": "alice", "superuser": false}, {"username": "root", "superuser": true}]})
    );

    let duplicate = mqttctl(&server, &["users", "add", "alice", "--password", "x"]).await?;
    assert_eq!(duplicate.failure(), "mqttctl: user \"alice\" already exists");
    let empty = mqttctl(&server, &["users", "add", "bob", "--password", ""]).await?;
    assert_eq!(empty.failure(), "mqttctl: the password must not be empty");

    let before = password_hash(&member, "alice");
    let changed = mqttctl(&server, &["users", "passwd", "alice", "--password", "pw2"]).await?;
    assert_eq!(changed.ok(), "changed the password of \"alice\"\n");
    let after = password_hash(&member, "alice");
    assert!(after.is_some() && after != before, "the stored hash changed");
    let unknown = mqttctl(&server, &["users", "passwd", "nobody", "--password", "pw"]).await?;
    assert_eq!(unknown.failure(), "mqttctl: user \"nobody\" not found");

    let deleted = mqttctl(&server, &["--json", "users", "del", "alice"]).await?.json();
    assert_eq!(deleted["username"], "alice");
    assert!(password_hash(&member, "alice").is_none());
    let again = mqttctl(&server, &["users", "del", "alice"]).await?;
    assert_eq!(again.failure(), "mqttctl: user \"alice\" not found");
    let listed = mqttctl(&server, &["users", "list"]).await?;
    assert_eq!(listed.ok(), "USERNAME  SUPERUSER\nroot      yes\n");

    mqttctl(&server, &["users", "del", "root"]).await?.ok();
    assert_eq!(mqttctl(&server, &["users", "list"]).await?.ok(), "no users\n");
    assert_eq!(mqttctl(&server, &["--json", "users", "list"]).await?.json(), json!({"users": []}));
    member.shutdown().await
}
