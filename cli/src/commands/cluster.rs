//! `mqttctl cluster status|join|leave`.
//!
//! Status asks one member, which asks every other control-plane member for
//! its progress (a member it cannot reach shows as "unreachable") and
//! reports the data-plane nodes from its applied state. Join and leave are
//! membership changes that the member forwards to the leader.

use anyhow::Result;
use proto::admin::{ClusterJoinRequest, ClusterLeaveRequest, ClusterStatusReply, ClusterStatusRequest};
use proto::controlplane::{DataPlaneNode, DataPlaneState};
use serde_json::{json, Value};

use crate::args::ClusterCommand;
use crate::connection::Connection;
use crate::output::{or_dash, Output, Table};

pub async fn run(command: ClusterCommand, connection: &Connection) -> Result<Output> {
    match command {
        ClusterCommand::Status => {
            let status = connection.read(connection.admin().cluster_status(ClusterStatusRequest {})).await?;
            Ok(status_output(&status))
        }
        ClusterCommand::Join { addr, learner } => {
            let request = ClusterJoinRequest { addr: addr.clone(), learner };
            let joined = connection.write(connection.admin().cluster_join(request)).await?;
            let role = if learner { "learner" } else { "voter" };
            Ok(Output::new(
                format!("node {} ({addr}) joined the control plane as a {role}", joined.node_id),
                json!({"node_id": joined.node_id, "addr": addr, "role": role}),
            ))
        }
        ClusterCommand::Leave { node_id } => {
            connection.write(connection.admin().cluster_leave(ClusterLeaveRequest { node_id })).await?;
            Ok(Output::new(format!("node {node_id} left the control plane"), json!({"node_id": node_id})))
        }
    }
}

fn state_name(node: &DataPlaneNode) -> &'static str {
    match DataPlaneState::try_from(node.state) {
        Ok(DataPlaneState::Up) => "up",
        Ok(DataPlaneState::Down) => "down",
        _ => "unknown",
    }
}

/// The index data-plane nodes are measured against: the leader's applied
/// index, else the highest any member reported.
fn reference_index(status: &ClusterStatusReply) -> Option<u64> {
    let leader = status.leader.and_then(|leader| status.controlplane.iter().find(|node| node.id == leader));
    leader
        .and_then(|leader| leader.applied_index)
        .or_else(|| status.controlplane.iter().filter_map(|node| node.applied_index).max())
}

fn status_output(status: &ClusterStatusReply) -> Output {
    let reference = reference_index(status);
    let lag = |node: &DataPlaneNode| reference.map(|index| index.saturating_sub(node.snapshot_index));

    let mut human = Vec::new();
    human.push(match status.leader {
        Some(leader) => format!("Control plane (leader: node {leader})"),
        None => "Control plane (no leader elected)".to_owned(),
    });
    if status.controlplane.is_empty() {
        human.push("  this member is not in a cluster yet: it waits to be joined".to_owned());
    } else {
        let mut table = Table::new(&["", "ID", "ADDR", "ROLE", "VOTER", "TERM", "LAST LOG", "APPLIED"]);
        for node in &status.controlplane {
            table.row(vec![
                if status.leader == Some(node.id) { "*" } else { "" }.to_owned(),
                node.id.to_string(),
                node.addr.clone(),
                node.role.clone(),
                if node.voter { "yes" } else { "no" }.to_owned(),
                if node.role == "unreachable" { "-".to_owned() } else { node.term.to_string() },
                or_dash(node.last_log_index),
                or_dash(node.applied_index),
            ]);
        }
        human.push(table.render());
    }
    human.push(String::new());
    human.push("Data plane".to_owned());
    if status.dataplane.is_empty() {
        human.push("  no data-plane nodes have reported".to_owned());
    } else {
        let mut table = Table::new(&["ID", "ADDR", "STATE", "CONNECTIONS", "SNAPSHOT INDEX", "LAG"]);
        for node in &status.dataplane {
            table.row(vec![
                node.id.to_string(),
                node.address.clone(),
                state_name(node).to_owned(),
                node.connections.to_string(),
                node.snapshot_index.to_string(),
                or_dash(lag(node)),
            ]);
        }
        human.push(table.render());
    }

    let controlplane: Vec<Value> = status
        .controlplane
        .iter()
        .map(|node| {
            json!({
                "id": node.id,
                "addr": node.addr,
                "role": node.role,
                "term": node.term,
                "last_log_index": node.last_log_index,
                "applied_index": node.applied_index,
                "voter": node.voter,
            })
        })
        .collect();
    let dataplane: Vec<Value> = status
        .dataplane
        .iter()
        .map(|node| {
            json!({
                "id": node.id,
                "addr": node.address,
                "state": state_name(node),
                "connections": node.connections,
                "snapshot_index": node.snapshot_index,
                "last_heartbeat_ms": node.last_heartbeat_ms,
                "lag": lag(node),
            })
        })
        .collect();
    Output::new(
        human.join("\n"),
        json!({"leader": status.leader, "controlplane": controlplane, "dataplane": dataplane}),
    )
}

#[cfg(test)]
mod tests {
    use proto::admin::ControlPlaneNodeStatus;

    use super::*;

    fn member(id: u64, role: &str, applied: Option<u64>) -> ControlPlaneNodeStatus {
        ControlPlaneNodeStatus {
            id,
            addr: format!("http://127.0.0.1:{}", 50050 + id),
            role: role.to_owned(),
            term: if role == "unreachable" { 0 } else { 3 },
            last_log_index: applied,
            applied_index: applied,
            voter: true,
        }
    }

    #[test]
    fn status_marks_the_leader_and_measures_lag() {
        let status = ClusterStatusReply {
            leader: Some(2),
            controlplane: vec![
                member(1, "follower", Some(40)),
                member(2, "leader", Some(42)),
                member(3, "unreachable", None),
            ],
            dataplane: vec![DataPlaneNode {
                id: 100,
                address: "127.0.0.1:7100".into(),
                state: DataPlaneState::Up.into(),
                last_heartbeat_ms: 5,
                connections: 12,
                snapshot_index: 39,
            }],
        };
        let output = status_output(&status);
        let lines: Vec<&str> = output.human.lines().collect();
        assert_eq!(lines[0], "Control plane (leader: node 2)");
        assert!(lines[3].starts_with("*  2   http://127.0.0.1:50052  leader"), "{}", lines[3]);
        assert!(lines[4].contains("unreachable  yes    -     -         -"), "{}", lines[4]);
        assert!(lines[8].ends_with("up     12           39              3"), "{}", lines[8]);
        assert_eq!(output.json["leader"], 2);
        assert_eq!(output.json["controlplane"][2]["applied_index"], Value::Null);
        assert_eq!(output.json["dataplane"][0]["addr"], "127.0.0.1:7100");
        assert_eq!(output.json["dataplane"][0]["lag"], 3);
    }

    #[test]
    fn a_waiting_member_says_so() {
        let output = status_output(&ClusterStatusReply::default());
        assert_eq!(output.json, json!({"leader": null, "controlplane": [], "dataplane": []}));
        assert!(output.human.contains("waits to be joined"));
    }
}
