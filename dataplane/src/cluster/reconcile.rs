//! After a partition: one live connection per client id again.
//!
//! While a node is cut off, claims cannot reach it (see `sessions`), so a
//! client id may get a live connection on each side. When the control
//! plane sees a node come back (down, then up in the view), every node
//! that sees it sends that node its live client ids with the time each
//! connection came (`Peer.Reconcile`); for an id live on both, the older
//! connection is closed (DISCONNECT 0x8E), wherever it is. A node also
//! reconciles with every peer once when it starts watching (a restarted
//! node has no connections, so that costs little).
//!
//! Retained messages converge the same way: a change sent to a node that
//! was cut off may have been dropped past its link's buffer, so a node that
//! sees another come back takes that node's retained messages
//! (`Peer.Retained`), and the node that comes back, told by the
//! `Reconcile` call, takes the caller's. Versions decide (see `retained`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proto::peer as pb;
use tracing::{debug, info};

use super::peer::outbox::PeerLinks;
use super::sessions::newer;
use crate::broker::Broker;
use crate::registry::Control;

/// How often the view is looked at for nodes coming back.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// This node's live client ids, for the wire.
pub fn live_clients(broker: &Broker, me: u64) -> pb::ClientList {
    let clients = broker
        .registry
        .online_ids()
        .into_iter()
        .map(|(id, since)| pb::LiveClient { client_id: id.to_string(), connected_at: since })
        .collect();
    pb::ClientList { from_node: me, clients }
}

/// Closes this node's connection for `client_id` if it is the one that
/// came at `since` (not a newer one since).
pub fn close_older(broker: &Arc<Broker>, client_id: &str, since: u64) {
    let Some((connection, control, held_since)) = broker.registry.online_holder(client_id) else { return };
    if held_since != since {
        return;
    }
    // The connection closes with 0x8E and hands its session here, where it
    // ends (the newer connection elsewhere has its own).
    let (reply, answer) = tokio::sync::oneshot::channel();
    control.send(Control::TakeOver { reply });
    drop(control);
    let broker = broker.clone();
    let client_id: Arc<str> = Arc::from(client_id);
    tokio::spawn(async move {
        let state = tokio::time::timeout(Duration::from_secs(5), answer).await.ok().and_then(Result::ok);
        broker.registry.release(&client_id, connection);
        if let Some(state) = state {
            broker.end_session(state);
        }
    });
}

/// Answers a peer's list: closes this node's older duplicates, returns the
/// ids this node holds a newer connection for.
pub fn answer(broker: &Arc<Broker>, list: pb::ClientList, me: u64) -> pb::ClientList {
    let mut newer_here = Vec::new();
    for theirs in list.clients {
        let Some(mine) = broker.registry.online_since(&theirs.client_id) else { continue };
        if newer(theirs.connected_at, list.from_node, mine, me) {
            debug!(client_id = %theirs.client_id, node = list.from_node, "older duplicate closed after a partition");
            close_older(broker, &theirs.client_id, mine);
        } else if newer(mine, me, theirs.connected_at, list.from_node) {
            newer_here.push(theirs);
        }
    }
    pb::ClientList { from_node: me, clients: newer_here }
}

/// Watches the view for nodes coming back, and reconciles with them.
pub async fn run(broker: Arc<Broker>, links: Arc<PeerLinks>) {
    let me = links.me();
    // Node → whether it was up at the last look; unknown nodes count as down.
    let mut was_up: HashMap<u64, bool> = HashMap::new();
    let mut ticker = tokio::time::interval(CHECK_EVERY);
    // At the first look every node counts as coming back; retained
    // messages were taken at start already (`retained_sync`).
    let mut first = true;
    loop {
        ticker.tick().await;
        let view = links.view();
        if !view.loaded || view.peer_secret.is_empty() {
            continue;
        }
        for (&node, peer) in view.peers.iter() {
            if node == me {
                continue;
            }
            let before = was_up.insert(node, peer.up).unwrap_or(false);
            if !peer.up || before || peer.address.is_empty() {
                continue;
            }
            let Some(mut client) = links.client(&peer.address, Duration::from_secs(2)) else {
                continue;
            };
            if !first {
                resync_retained(&broker, &links, node, peer.address.clone());
            }
            // Sent even with no live client here: it tells the node that
            // it is seen again (it takes this node's retained messages).
            let request = live_clients(&broker, me);
            match tokio::time::timeout(Duration::from_secs(5), client.reconcile(request)).await {
                Ok(Ok(reply)) => {
                    let reply = reply.into_inner();
                    if !reply.clients.is_empty() {
                        info!(
                            node,
                            closed = reply.clients.len(),
                            "older duplicate connections closed after a partition"
                        );
                    }
                    for ours in reply.clients {
                        close_older(&broker, &ours.client_id, ours.connected_at);
                    }
                }
                // Tried again when the node is next seen coming back.
                Ok(Err(status)) => debug!(node, %status, "reconcile refused"),
                Err(_) => debug!(node, "reconcile not answered in time"),
            }
        }
        was_up.retain(|node, _| view.peers.contains_key(node));
        first = false;
    }
}

/// Takes `node`'s retained messages, in the background.
pub fn resync_retained(broker: &Arc<Broker>, links: &Arc<PeerLinks>, node: u64, address: String) {
    let (broker, links) = (broker.clone(), links.clone());
    tokio::spawn(async move {
        match super::retained_sync::fetch(&broker, &links, &address).await {
            Ok(count) => info!(node, taken = count, "retained messages taken from a node seen again"),
            Err(error) => debug!(node, %error, "retained messages of a node seen again not taken"),
        }
    });
}
