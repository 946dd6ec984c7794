//! `mqttctl banned ...` against one member.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::common::{mqttctl, single};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn banned_add_list_del() -> Result<()> {
    let member = single(None).await?;
    let server = member.endpoint();

    let client =
        mqttctl(&server, &["banned", "add", "--clientid", "c1", "--expires", "3600", "--reason", "flooding"])
            .await?;
    assert!(client.ok().starts_with("banned clientid \"c1\" until 20"), "{client:?}");
    let user = mqttctl(&server, &["--json", "banned", "add", "--username", "mallory"]).await?.json();
    assert_eq!(
        (&user["kind"], &user["value"], &user["until_ms"]),
        (&json!("username"), &json!("mallory"), &Value::Null)
    );
    let address = mqttctl(&server, &["banned", "add", "--ipaddr", "10.1.2.3"]).await?;
    assert_eq!(address.ok(), "banned ipaddr \"10.1.2.3\" with no expiry\n");

    let listed = mqttctl(&server, &["--json", "banned", "list"]).await?.json();
    let bans = listed["banned"].as_array().context("a list")?;
    assert_eq!(bans.len(), 3, "{listed}");
    let find = |kind: &str| bans.iter().find(|ban| ban["kind"] == kind).cloned().unwrap_or(Value::Null);
    let client_ban = find("clientid");
    assert_eq!((&client_ban["value"], &client_ban["reason"]), (&json!("c1"), &json!("flooding")));
    let until = client_ban["until_ms"].as_u64().context("an expiry")?;
    let expected = now_ms() + 3_600_000;
    assert!(until.abs_diff(expected) < 60_000, "expires in an hour: {until} vs {expected}");
    assert!(client_ban["created_ms"].as_u64().is_some_and(|created| created > 0));
    assert_eq!(find("ipaddr")["value"], "10.1.2.3/32", "stored in canonical CIDR form");
    let human = mqttctl(&server, &["banned", "list"]).await?;
    let human = human.ok();
    assert!(human.starts_with("KIND"), "{human}");
    assert!(human.contains("never") && human.contains("flooding"), "{human}");

    let lifted = mqttctl(&server, &["banned", "del", "--ipaddr", "10.1.2.3"]).await?;
    assert_eq!(lifted.ok(), "lifted the ban on ipaddr \"10.1.2.3\"\n");
    let unknown = mqttctl(&server, &["banned", "del", "--username", "nobody"]).await?;
    assert!(unknown.failure().contains("no ban on username \"nobody\""), "{unknown:?}");
    let bad = mqttctl(&server, &["banned", "add", "--ipaddr", "not-an-ip"]).await?;
    assert!(bad.failure().contains("not-an-ip"), "{bad:?}");
    assert_eq!(member.handle.read(|state| state.bans().count()), 2);
    member.shutdown().await
}
