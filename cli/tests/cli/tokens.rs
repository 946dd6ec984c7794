//! `mqttctl tokens add|list|del`: a new token is printed once and works for
//! its role only; lists never show a secret; a deleted token is refused.

use anyhow::{Context, Result};

use crate::common::{mqttctl, mqttctl_elsewhere, single};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_add_list_and_delete() -> Result<()> {
    let member = single(None).await?;
    let server = member.endpoint();

    // An admin token: text output is the token alone, usable as a file.
    let admin = mqttctl(&server, &["tokens", "add", "--role", "admin"]).await?;
    let admin_token = admin.ok().trim_end().to_owned();
    assert_eq!(admin_token.len(), 64, "{admin_token:?}");
    let dir = tempfile::tempdir()?;
    let admin_file = dir.path().join("admin.token");
    std::fs::write(&admin_file, format!("{admin_token}\n"))?;
    let admin_file = admin_file.display().to_string();
    let added = mqttctl_elsewhere(
        &server,
        &["--token-file", &admin_file, "users", "add", "a", "--password", "p"],
        &[],
    )
    .await?;
    assert_eq!(added.ok(), "added user \"a\"\n");

    // A data-plane token, bound to node 5: no admin call.
    let dataplane =
        mqttctl(&server, &["tokens", "add", "--role", "dataplane", "--node-id", "5", "--json"]).await?;
    let dataplane = dataplane.json();
    assert_eq!(dataplane["role"], "dataplane");
    assert_eq!(dataplane["node_id"], 5);
    let dataplane_token = dataplane["token"].as_str().context("token")?.to_owned();
    let refused = mqttctl_elsewhere(
        &server,
        &["users", "add", "mallory", "--password", "p"],
        &[("MQTTD_TOKEN", &dataplane_token)],
    )
    .await?;
    assert!(
        refused.failure().starts_with("mqttctl: the token from MQTTD_TOKEN is not allowed"),
        "{refused:?}"
    );

    // The list: ids, roles, nodes, times; no secret.
    let listed = mqttctl(&server, &["tokens", "list"]).await?;
    let listed = listed.ok();
    assert!(listed.starts_with("ID  ROLE       NODE  CREATED\n1   admin      -"), "{listed}");
    assert!(!listed.contains(&admin_token) && !listed.contains(&dataplane_token), "{listed}");
    let json = mqttctl(&server, &["--json", "tokens", "list"]).await?.json();
    assert_eq!(json["tokens"].as_array().map(Vec::len), Some(2));
    assert!(!json.to_string().contains(&admin_token));

    // Deleted: refused from then on.
    assert_eq!(mqttctl(&server, &["tokens", "del", "1"]).await?.ok(), "deleted token 1\n");
    let gone = mqttctl_elsewhere(&server, &["--token-file", &admin_file, "users", "list"], &[]).await?;
    assert!(gone.failure().contains("refused the token from --token-file"), "{gone:?}");
    let again = mqttctl(&server, &["tokens", "del", "1"]).await?;
    assert_eq!(again.failure(), "mqttctl: API token 1 not found");
    member.shutdown().await
}
