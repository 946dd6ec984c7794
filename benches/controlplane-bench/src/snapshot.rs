//! Step 2: a new data-plane node joins a cluster with a large state. It
//! opens a Watch stream with no index (so the member sends its whole state
//! as one `StateSnapshot`), and turns the snapshot into the data plane's
//! `ClusterView`, as `dataplane::cluster::link` does.
//!
//! Times, all from the start of the run: `connect` (TCP + HTTP/2), `headers`
//! (the stream is open), `first_byte` (the member has built and encoded the
//! snapshot), `received` (the whole message is in and decoded), `view`
//! (`ClusterView::from_snapshot` done: the node could serve from it).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dataplane::cluster::view::ClusterView;
use prost::Message;
use proto::controlplane::control_plane_client::ControlPlaneClient;
use proto::controlplane::watch_event::Event;
use proto::controlplane::{WatchEvent, WatchRequest};
use serde_json::json;

use crate::args::Config;
use crate::cluster::{self, Cluster};
use crate::stats::{emit, ms, round, say};
use crate::timed::TimedChannel;

/// Data-plane node ids of the snapshot runs start here.
const FIRST_NODE_ID: u64 = 201;
/// How long one run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `config.snapshot_runs` new data-plane nodes, one after the other,
/// against the voters in turn (the leader first).
pub async fn step(cluster: &Cluster, config: &Config) -> Result<()> {
    let leader = cluster.leader()?;
    for run in 0..config.snapshot_runs {
        let position = (leader + run) % cluster.voters.len();
        let node_id = FIRST_NODE_ID + run as u64;
        tokio::time::timeout(RUN_TIMEOUT, one_run(cluster, config, position, node_id, run + 1))
            .await
            .with_context(|| format!("snapshot run {} took over {RUN_TIMEOUT:?}", run + 1))??;
    }
    Ok(())
}

async fn one_run(
    cluster: &Cluster,
    config: &Config,
    position: usize,
    node_id: u64,
    run: usize,
) -> Result<()> {
    let role = cluster.role(position);
    let started = Instant::now();
    let channel = cluster::channel(&cluster.voters[position].endpoint()).await?;
    let connected = started.elapsed();
    let (channel, probe) = TimedChannel::new(channel);
    let mut client = ControlPlaneClient::with_interceptor(channel, cluster::token()?)
        .max_decoding_message_size(config.watch_max_message_bytes);
    let mut stream = client.watch(WatchRequest { node_id, last_index: None }).await?.into_inner();
    let headers = started.elapsed();
    let event = match stream.message().await {
        Ok(Some(event)) => event,
        Ok(None) => bail!("the Watch stream ended before the snapshot"),
        Err(status) => {
            say(format!(
                "snapshot run {run}: FAILED after {:.1} ms with {} body bytes in: {status}",
                ms(started.elapsed()),
                probe.bytes()
            ));
            emit(json!({
                "measurement": "snapshot",
                "run": run,
                "voter": position + 1,
                "role": role,
                "ok": false,
                "error": status.message(),
                "code": format!("{:?}", status.code()),
                "max_message_bytes": config.watch_max_message_bytes,
                "wire_bytes": probe.bytes(),
            }));
            bail!("a new data-plane node could not take the snapshot: {status}");
        }
    };
    let Some(Event::Snapshot(mut snapshot)) = event.event else {
        bail!("the first Watch event was not a snapshot");
    };
    // A large snapshot comes in parts, as the data plane's link takes it.
    let mut parts = 0usize;
    while snapshot.parts_follow {
        match stream.message().await? {
            Some(WatchEvent { event: Some(Event::SnapshotPart(part)) }) => {
                parts += 1;
                snapshot.absorb(part);
            }
            other => bail!("expected a snapshot part, got {other:?}"),
        }
    }
    let received = started.elapsed();
    let view = ClusterView::from_snapshot(&snapshot);
    // Routes go to the route table, as a data-plane node's link does.
    let routes = dataplane::cluster::route_table::RouteTable::new();
    routes.replace(snapshot.routes.iter().map(|r| (r.topic_filter.as_str(), r.node_ids.as_slice())));
    let viewed = started.elapsed();
    drop(stream);
    let first_byte = probe.first_byte().map(|at| at.duration_since(started)).unwrap_or(received);
    let encoded = snapshot.encoded_len();
    let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
    say(format!(
        "snapshot run {run} (voter {}, {role}): {} routes, {} users, {:.1} MiB encoded in {} parts (each under the {:.0} MiB limit); \
         connect {:.1} ms, stream open {:.1} ms, first byte {:.1} ms, received {:.1} ms, view built {:.1} ms",
        position + 1,
        routes.len(),
        view.users.len(),
        mib(encoded),
        parts.max(1),
        mib(config.watch_max_message_bytes),
        ms(connected),
        ms(headers),
        ms(first_byte),
        ms(received),
        ms(viewed),
    ));
    emit(json!({
        "measurement": "snapshot",
        "run": run,
        "voter": position + 1,
        "role": role,
        "ok": true,
        "index": snapshot.index,
        "routes": routes.len(),
        "users": view.users.len(),
        "encoded_bytes": encoded,
        "parts": parts,
        "wire_bytes": probe.bytes(),
        "max_message_bytes": config.watch_max_message_bytes,
        "connect_ms": round(ms(connected)),
        "headers_ms": round(ms(headers)),
        "first_byte_ms": round(ms(first_byte)),
        "received_ms": round(ms(received)),
        "view_ms": round(ms(viewed)),
        "transfer_and_decode_ms": round(ms(received.saturating_sub(first_byte))),
        "from_snapshot_ms": round(ms(viewed.saturating_sub(received))),
        "rss_mib": crate::stats::rss_mib(),
    }));
    Ok(())
}
