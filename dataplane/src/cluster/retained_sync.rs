//! A node that starts in a fleet takes the retained messages the other
//! nodes hold (`Peer.Retained`), so that a retained message outlives the
//! node it was published on and reaches subscribers on nodes started after
//! it. Each peer that is up is asked once (a failed one is asked again, a
//! few times); the messages merge by version (see `retained`), so asking
//! several nodes is harmless. Changes made meanwhile arrive over the peer
//! links as usual.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info};

use super::peer::outbox::PeerLinks;
use super::peer::{from_wire, version_from_wire};
use crate::broker::Broker;
use crate::retained::RetainOutcome;

/// How long a node keeps trying to reach its peers for their retained messages.
const SYNC_FOR: Duration = Duration::from_secs(30);

/// Asks every live peer for its retained messages, once.
pub async fn run(broker: Arc<Broker>, links: Arc<PeerLinks>) {
    let started = Instant::now();
    let me = links.me();
    let mut done: HashSet<u64> = HashSet::new();
    let mut taken = 0usize;
    loop {
        let view = links.view();
        if view.loaded && !view.peer_secret.is_empty() {
            let todo: Vec<(u64, String)> = view
                .peers
                .iter()
                .filter(|(id, peer)| **id != me && peer.up && !peer.address.is_empty() && !done.contains(id))
                .map(|(id, peer)| (*id, peer.address.clone()))
                .collect();
            if todo.is_empty() {
                break;
            }
            for (node, address) in todo {
                match fetch(&broker, &links, &address).await {
                    Ok(count) => {
                        taken += count;
                        done.insert(node);
                    }
                    Err(error) => debug!(node, %error, "retained messages not taken yet"),
                }
            }
        }
        if started.elapsed() > SYNC_FOR {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    info!(nodes = done.len(), messages = taken, "retained messages taken from the other nodes");
}

/// Takes the retained messages of the node at `address`; returns how many
/// were newer than this node's.
pub async fn fetch(broker: &Broker, links: &PeerLinks, address: &str) -> Result<usize, String> {
    let mut client = links.client(address, Duration::from_secs(2)).ok_or("an unusable address")?;
    let request = proto::peer::RetainedRequest { from_node: broker.peers().map_or(0, |p| p.me()) };
    let mut stream = client.retained(request).await.map_err(|s| s.to_string())?.into_inner();
    let mut count = 0;
    while let Some(chunk) = stream.message().await.map_err(|s| s.to_string())? {
        let now = Instant::now();
        for wire in chunk.messages {
            let Some(version) = wire.retained.as_ref().map(version_from_wire) else { continue };
            let Ok(message) = from_wire(wire, now) else { continue };
            if !message.retain || message.topic.starts_with("$SYS/") || !broker.config.mqtt.retain_available {
                continue;
            }
            if broker.retained.store_at(&Arc::new(message), version) == RetainOutcome::Stored {
                count += 1;
            }
        }
    }
    Ok(count)
}
