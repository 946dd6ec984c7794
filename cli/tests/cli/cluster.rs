//! `mqttctl cluster ...` against up to three members: status before and
//! after each join, provisioning through a follower, a data-plane node and
//! an unreachable member in the status, and leave.

use anyhow::{Context, Result};
use proto::controlplane::control_plane_client::ControlPlaneClient;
use proto::controlplane::HeartbeatRequest;
use serde_json::{json, Value};

use crate::common::{eventually, mqttctl, start};

/// The members' shared token: joins need it (each answers `mqttctl` with
/// its own admin token from `./data/admin.token`).
const MEMBER_TOKEN: &str = "member-secret";

fn member_ids(status: &Value) -> Vec<u64> {
    status["controlplane"]
        .as_array()
        .map_or_else(Vec::new, |members| members.iter().filter_map(|member| member["id"].as_u64()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_join_and_leave() -> Result<()> {
    let node1 = start(1, true, Some(MEMBER_TOKEN)).await?;
    let node2 = start(2, false, Some(MEMBER_TOKEN)).await?;
    let (server1, server2) = (node1.endpoint(), node2.endpoint());

    // A node waiting to be joined knows no cluster.
    let waiting = mqttctl(&server2, &["--json", "cluster", "status"]).await?.json();
    assert_eq!(waiting, json!({"leader": null, "controlplane": [], "dataplane": []}));

    let alone = mqttctl(&server1, &["--json", "cluster", "status"]).await?.json();
    assert_eq!(alone["leader"], 1);
    assert_eq!(alone["dataplane"], json!([]));
    let first = &alone["controlplane"][0];
    assert_eq!(member_ids(&alone), vec![1]);
    assert_eq!(
        (&first["addr"], &first["role"], &first["voter"]),
        (&json!(server1), &json!("leader"), &json!(true))
    );
    assert!(first["term"].as_u64().is_some_and(|term| term >= 1), "{alone}");
    let last_log = first["last_log_index"].as_u64().context("a last log index")?;
    let applied = first["applied_index"].as_u64().context("an applied index")?;
    assert!(applied >= 1 && last_log >= applied, "{alone}");

    let joined = mqttctl(&server1, &["cluster", "join", &server2]).await?;
    assert_eq!(joined.ok(), format!("node 2 ({server2}) joined the control plane as a voter\n"));
    let status = mqttctl(&server1, &["cluster", "status", "--json"]).await?.json();
    assert_eq!(status["leader"], 1);
    let roles: Vec<(u64, &str, bool)> = status["controlplane"]
        .as_array()
        .context("members")?
        .iter()
        .map(|member| {
            let id = member["id"].as_u64().unwrap_or(0);
            (id, member["role"].as_str().unwrap_or(""), member["voter"] == true)
        })
        .collect();
    assert_eq!(roles, vec![(1, "leader", true), (2, "follower", true)]);
    assert_eq!(status["controlplane"][1]["addr"], json!(server2));
    assert_eq!(status["controlplane"][0]["term"], status["controlplane"][1]["term"]);

    // Provisioning works through the follower; so does status.
    mqttctl(&server2, &["users", "add", "bob", "--password", "pw"]).await?.ok();
    eventually("bob on the leader", || node1.handle.read(|state| state.user("bob").is_some())).await?;
    let from_follower = mqttctl(&server2, &["--json", "cluster", "status"]).await?.json();
    assert_eq!((from_follower["leader"].clone(), member_ids(&from_follower)), (json!(1), vec![1, 2]));

    // A data-plane node that sends heartbeats shows in the status.
    let channel = tonic::transport::Endpoint::from_shared(server2.clone())?.connect().await?;
    let heartbeat = HeartbeatRequest {
        node_id: 100,
        address: "127.0.0.1:7100".into(),
        connections: 3,
        snapshot_index: 1,
    };
    let token = proto::auth::BearerToken::new(Some(MEMBER_TOKEN))?;
    ControlPlaneClient::with_interceptor(channel, token).heartbeat(heartbeat).await?;
    eventually("the data-plane node", || node1.handle.read(|state| state.dataplane_node(100).is_some()))
        .await?;
    let status = mqttctl(&server1, &["--json", "cluster", "status"]).await?.json();
    let dataplane = &status["dataplane"][0];
    assert_eq!(
        (&dataplane["id"], &dataplane["addr"], &dataplane["state"]),
        (&json!(100), &json!("127.0.0.1:7100"), &json!("up"))
    );
    assert_eq!((&dataplane["connections"], &dataplane["snapshot_index"]), (&json!(3), &json!(1)));
    assert!(dataplane["lag"].as_u64().is_some_and(|lag| lag >= 1), "{status}");

    let human = mqttctl(&server1, &["cluster", "status"]).await?;
    let lines: Vec<&str> = human.ok().lines().collect();
    assert_eq!(lines[0], "Control plane (leader: node 1)");
    assert!(
        lines[1].contains("ID") && lines[1].contains("ROLE") && lines[1].contains("APPLIED"),
        "{lines:?}"
    );
    assert!(lines[2].starts_with("*  1") && lines[2].contains("leader"), "{lines:?}");
    assert!(lines[3].starts_with("   2") && lines[3].contains("follower"), "{lines:?}");
    assert_eq!(lines[5], "Data plane");
    assert!(lines[7].starts_with("100") && lines[7].contains("127.0.0.1:7100  up"), "{lines:?}");

    // A third member joins; once it stops, the status says it is unreachable.
    let node3 = start(3, false, Some(MEMBER_TOKEN)).await?;
    let server3 = node3.endpoint();
    let joined = mqttctl(&server2, &["--json", "cluster", "join", &server3]).await?.json();
    assert_eq!(joined, json!({"node_id": 3, "addr": server3, "role": "voter"}));
    let status = mqttctl(&server1, &["--json", "cluster", "status"]).await?.json();
    assert_eq!(member_ids(&status), vec![1, 2, 3]);
    assert_eq!(status["controlplane"][2]["role"], "follower");
    node3.shutdown().await?;
    let status = mqttctl(&server1, &["--json", "cluster", "status"]).await?.json();
    let gone = &status["controlplane"][2];
    assert_eq!(
        (&gone["id"], &gone["role"], &gone["applied_index"]),
        (&json!(3), &json!("unreachable"), &Value::Null)
    );
    let human = mqttctl(&server1, &["cluster", "status"]).await?;
    assert!(
        human.ok().lines().any(|line| line.starts_with("   3") && line.contains("unreachable")),
        "{human:?}"
    );

    // Leave: refusals first, then the stopped member and node 2 go.
    let unknown = mqttctl(&server1, &["cluster", "leave", "9"]).await?;
    assert_eq!(unknown.failure(), "mqttctl: node 9 is not a control-plane member");
    let left = mqttctl(&server1, &["--json", "cluster", "leave", "3"]).await?.json();
    assert_eq!(left, json!({"node_id": 3}));
    let left = mqttctl(&server2, &["cluster", "leave", "2"]).await?;
    assert_eq!(left.ok(), "node 2 left the control plane\n");
    let status = mqttctl(&server1, &["--json", "cluster", "status"]).await?.json();
    assert_eq!(member_ids(&status), vec![1]);
    let last = mqttctl(&server1, &["cluster", "leave", "1"]).await?;
    assert!(last.failure().contains("cannot remove the last voter"), "{last:?}");

    node2.shutdown().await?;
    node1.shutdown().await
}
