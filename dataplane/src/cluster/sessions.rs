//! One client id, one session, across the fleet.
//!
//! A node where a client connects claims its id from every other live node
//! (`Peer.Claim`, batched: the claims of all connects made while one batch
//! is out go in the next), after it claimed it in its own registry. A node
//! holding a live connection for the id closes it (DISCONNECT 0x8E) unless
//! that connection is newer than the claimer's (then the claimer refuses
//! its client: the newest connection wins). A node holding the session
//! ends it if the client starts clean; otherwise it sends the session over
//! (subscriptions, queued and in-flight messages, QoS 2 state) but keeps
//! it subscribed, collecting what still arrives, until the claimer resumed
//! it and announced its routes (`Peer.Release`); then it drops it and hands
//! over what it collected. The claimer leaves out what it already got
//! itself (message ids tell the copies apart), so nothing is lost and
//! nothing delivered twice while a session moves.
//!
//! No Raft write per CONNECT: the claim goes to the other nodes, not to
//! the control plane, so clients keep connecting while the control plane
//! is down. A node that does not answer within [`CLAIM_TIMEOUT`] cannot
//! give anything up (during a partition a client id may be live on both
//! sides); see `reconcile` for how that ends.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt_codec::{QoS, RetainHandling, SubscriptionOptions};
use parking_lot::Mutex;
use proto::peer as pb;
use tokio::sync::{oneshot, Notify};
use tracing::debug;

use super::peer::outbox::PeerLinks;
use super::peer::{client, from_wire, to_wire, Client};
use crate::broker::Broker;
#[cfg(test)]
use crate::message::Message;
use crate::message::{Delivery, ShareKey};
use crate::registry::{Claim, ConnectionId, Control, ControlSlot};
use crate::session::{SessionState, SessionSubscription};

/// How long a claim waits for a node that answers: longer than a holder
/// may take to give a session up (two handovers), so that a session is not
/// given up to a claimer that stopped waiting.
pub const CLAIM_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a node that did not answer the last claim is waited for.
const UNHEALTHY_TIMEOUT: Duration = Duration::from_millis(300);

/// How long a given-up session waits for the claimer's release before it
/// is parked here again (the claimer died, or refused its client, or
/// stopped waiting).
const MOVE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a live connection has to hand its session over (twice at most
/// per claim: below [`CLAIM_TIMEOUT`]).
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a session that moved here refuses copies of what it brought.
const COPIES_FOR: Duration = Duration::from_secs(30);

/// Whether a connection that came at `since` on node `node` is newer than
/// one that came at `other_since` on `other_node`: by time, and for the same
/// time (two nodes woken by CONNECTs that arrive together read the same
/// microsecond in a few percent of such races here) by the higher node id,
/// so that the two nodes of a tie agree on which wins.
pub fn newer(since: u64, node: u64, other_since: u64, other_node: u64) -> bool {
    (since, node) > (other_since, other_node)
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros().min(u64::MAX as u128) as u64)
}

// ---------------------------------------------------------------- wire

fn delivery_to_wire(delivery: &Delivery, now: Instant) -> pb::TransferDelivery {
    pb::TransferDelivery {
        message: Some(to_wire(&delivery.message, now)),
        qos: delivery.qos as u32,
        retain: delivery.retain,
        subscription_ids: delivery.subscription_ids.clone(),
        share: delivery.share.as_ref().map(|key| pb::ShareMember {
            group: key.group.to_string(),
            topic_filter: key.filter.to_string(),
            client_id: String::new(),
        }),
    }
}

fn delivery_from_wire(wire: pb::TransferDelivery, now: Instant) -> Option<Delivery> {
    let message = from_wire(wire.message?, now).ok()?;
    let qos = u8::try_from(wire.qos).ok().and_then(QoS::from_u8)?;
    Some(Delivery {
        message: Arc::new(message),
        qos,
        retain: wire.retain,
        subscription_ids: wire.subscription_ids,
        share: wire.share.map(|s| ShareKey { group: Arc::from(s.group), filter: Arc::from(s.topic_filter) }),
    })
}

/// A session as it goes to another node, with its queue.
pub fn to_transfer(state: &SessionState, queued: &[Delivery]) -> pb::SessionTransfer {
    let now = Instant::now();
    pb::SessionTransfer {
        username: state.identity.username.as_deref().map(str::to_owned),
        subscriptions: state
            .subscriptions
            .iter()
            .map(|(filter, sub)| pb::TransferSubscription {
                filter: filter.to_string(),
                qos: sub.options.qos as u32,
                no_local: sub.options.no_local,
                retain_as_published: sub.options.retain_as_published,
                retain_handling: sub.options.retain_handling as u32,
                identifier: sub.identifier,
            })
            .collect(),
        queued: queued.iter().map(|d| delivery_to_wire(d, now)).collect(),
        inflight: state
            .inflight_in_order()
            .into_iter()
            .map(|(packet_id, entry)| pb::TransferInflight {
                packet_id: packet_id as u32,
                delivery: Some(delivery_to_wire(&entry.delivery, now)),
                released: entry.state == crate::session::OutgoingState::Released,
            })
            .collect(),
        awaiting_rel: state
            .awaiting_rel
            .iter()
            .map(|(packet_id, message)| pb::TransferAwaiting {
                packet_id: *packet_id as u32,
                message: Some(to_wire(message, now)),
            })
            .collect(),
    }
}

/// A session that came from another node, and its queue (not yet in its
/// mailbox); what cannot be read is left out.
pub fn from_transfer(
    transfer: pb::SessionTransfer,
    id: u64,
    client_id: Arc<str>,
) -> (Box<SessionState>, Vec<Delivery>) {
    let now = Instant::now();
    let mut state = Box::new(SessionState::new(id, client_id));
    state.identity.username = transfer.username.map(Box::from);
    for sub in transfer.subscriptions {
        let Some(qos) = u8::try_from(sub.qos).ok().and_then(QoS::from_u8) else { continue };
        let retain_handling = match sub.retain_handling {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            _ => RetainHandling::DoNotSend,
        };
        if crate::topic::parse_filter(&sub.filter).is_err() {
            continue;
        }
        let options = SubscriptionOptions {
            qos,
            no_local: sub.no_local,
            retain_as_published: sub.retain_as_published,
            retain_handling,
        };
        state
            .subscriptions
            .insert(sub.filter.into(), SessionSubscription { options, identifier: sub.identifier });
    }
    for entry in transfer.inflight {
        let (Ok(packet_id), Some(delivery)) = (u16::try_from(entry.packet_id), entry.delivery) else {
            continue;
        };
        if packet_id == 0 {
            continue;
        }
        if let Some(delivery) = delivery_from_wire(delivery, now) {
            state.restore_inflight(packet_id, delivery, entry.released);
        }
    }
    for entry in transfer.awaiting_rel {
        let (Ok(packet_id), Some(message)) = (u16::try_from(entry.packet_id), entry.message) else {
            continue;
        };
        if let Ok(message) = from_wire(message, now) {
            state.awaiting_rel.insert(packet_id, message);
        }
    }
    let queued = transfer.queued.into_iter().filter_map(|d| delivery_from_wire(d, now)).collect();
    (state, queued)
}

/// What tells two deliveries of one message to one session apart: the
/// message id, and whether it came through a shared group (a session may
/// get a message both ways).
fn copy_key(delivery: &Delivery) -> (u64, bool) {
    (delivery.message.id, delivery.share.is_some())
}

/// Merges what a session had when it moved (`queued`), what arrived for it
/// on the old node since (`late`) and what it got here meanwhile
/// (`direct`), in that order, each delivery once. Also returns what the
/// session now has from the old node, so that copies still on their way
/// here can be refused ([`crate::mailbox::Mailbox::refuse_copies`]).
pub fn merge_queues(
    queued: Vec<Delivery>,
    late: Vec<Delivery>,
    direct: Vec<Delivery>,
) -> (Vec<Delivery>, HashSet<(u64, bool)>) {
    let mut seen: HashSet<(u64, bool)> = queued.iter().map(copy_key).collect();
    seen.extend(direct.iter().map(copy_key));
    let mut out = queued;
    out.extend(late.into_iter().filter(|d| !seen.contains(&copy_key(d))));
    let brought = out.iter().map(copy_key).collect();
    out.extend(direct);
    (out, brought)
}

/// Puts a moved session's queues together in its mailbox (see
/// [`merge_queues`]) and refuses copies for a while.
pub fn settle_moved(state: &SessionState, queued: Vec<Delivery>, late: Vec<Delivery>) {
    let direct = state.mailbox.take_all();
    let (merged, brought) = merge_queues(queued, late, direct);
    let mut brought = brought;
    brought.extend(state.inflight.values().map(|entry| copy_key(&entry.delivery)));
    state.mailbox.push_front_all(merged);
    state.mailbox.refuse_copies(brought, Instant::now() + COPIES_FOR);
}

// ---------------------------------------------------------------- claimer

type Waiter = oneshot::Sender<Vec<(u64, pb::ClaimResult)>>;

/// The claiming side: claims waiting to go out.
#[derive(Debug, Default)]
pub struct Claimer {
    pending: Mutex<Vec<(pb::ClientClaim, Waiter)>>,
    notify: Notify,
}

impl Claimer {
    /// Claims `client_id` from every other live node; returns each
    /// answering node's result.
    pub async fn claim(&self, claim: pb::ClientClaim) -> Vec<(u64, pb::ClaimResult)> {
        let (sender, receiver) = oneshot::channel();
        self.pending.lock().push((claim, sender));
        self.notify.notify_one();
        receiver.await.unwrap_or_default()
    }
}

/// Sends claims in batches until the links shut down.
pub async fn run_claimer(links: Arc<PeerLinks>) {
    let claimer = links.claimer.clone();
    let mut clients: HashMap<u64, (String, Client)> = HashMap::new();
    let mut unhealthy: HashSet<u64> = HashSet::new();
    loop {
        claimer.notify.notified().await;
        let batch = std::mem::take(&mut *claimer.pending.lock());
        if batch.is_empty() {
            continue;
        }
        let (claims, waiters): (Vec<pb::ClientClaim>, Vec<Waiter>) = batch.into_iter().unzip();
        let view = links.view();
        let secret = view.peer_secret.to_string();
        let request = pb::ClaimBatch { from_node: links.me(), claims };
        let mut calls = tokio::task::JoinSet::new();
        for (&node, peer) in view.peers.iter() {
            if node == links.me() || !peer.up || peer.address.is_empty() {
                continue;
            }
            let key = format!("{}\n{secret}", peer.address);
            if clients.get(&node).is_none_or(|(held, _)| *held != key) {
                let Some(fresh) = client(&peer.address, &secret, links.tls(), CLAIM_TIMEOUT) else {
                    continue;
                };
                clients.insert(node, (key, fresh));
            }
            let Some((_, client)) = clients.get(&node) else { continue };
            let mut client = client.clone();
            let request = request.clone();
            let wait = if unhealthy.contains(&node) { UNHEALTHY_TIMEOUT } else { CLAIM_TIMEOUT };
            calls.spawn(async move { (node, tokio::time::timeout(wait, client.claim(request)).await) });
        }
        let mut answers: Vec<(u64, Vec<pb::ClaimResult>)> = Vec::new();
        while let Some(Ok((node, result))) = calls.join_next().await {
            match result {
                Ok(Ok(reply)) => {
                    unhealthy.remove(&node);
                    answers.push((node, reply.into_inner().results));
                }
                Ok(Err(status)) => {
                    debug!(node, %status, "claim refused");
                    unhealthy.insert(node);
                }
                Err(_) => {
                    debug!(node, "claim not answered in time");
                    unhealthy.insert(node);
                }
            }
        }
        clients.retain(|node, _| view.peers.contains_key(node));
        for (i, waiter) in waiters.into_iter().enumerate() {
            let results = answers
                .iter_mut()
                .filter_map(|(node, results)| results.get_mut(i).map(|r| (*node, std::mem::take(r))))
                .collect();
            let _ = waiter.send(results);
        }
    }
}

/// Tells `node` that the session of `client_id` was resumed here; returns
/// what arrived for it there since the claim.
pub async fn release(links: &PeerLinks, node: u64, client_id: &str) -> Vec<Delivery> {
    let view = links.view();
    let Some(peer) = view.peers.get(&node) else { return Vec::new() };
    let Some(mut client) = links.client(&peer.address, CLAIM_TIMEOUT) else { return Vec::new() };
    let request = pb::ReleaseRequest { from_node: links.me(), client_id: client_id.to_string() };
    match tokio::time::timeout(CLAIM_TIMEOUT, client.release(request)).await {
        Ok(Ok(reply)) => {
            let now = Instant::now();
            reply.into_inner().queued.into_iter().filter_map(|d| delivery_from_wire(d, now)).collect()
        }
        Ok(Err(status)) => {
            debug!(node, %status, client_id, "release refused");
            Vec::new()
        }
        Err(_) => {
            debug!(node, client_id, "release not answered in time");
            Vec::new()
        }
    }
}

// ---------------------------------------------------------------- holder

/// A session given up to another node, still subscribed here until that
/// node releases it.
#[derive(Debug)]
struct Moving {
    state: Box<SessionState>,
    /// The registry entry held for it (a placeholder connection, served by
    /// a task that lets a local takeover through at once).
    connection: ConnectionId,
    /// The claimer, and when its connection came.
    to: u64,
    since: u64,
    /// What it had queued when it was given up (sent with it).
    queued: Vec<Delivery>,
    /// Tells this move from a later one of the same client id.
    generation: u64,
    /// Dropped when the move ends: stops the placeholder's task.
    _serving: oneshot::Sender<()>,
}

/// Sessions on their way to other nodes.
#[derive(Debug, Default)]
pub struct Moves {
    moving: Mutex<HashMap<Arc<str>, Moving>>,
}

/// Answers a batch of claims from `from`.
pub async fn give_up(broker: &Arc<Broker>, from: u64, claims: Vec<pb::ClientClaim>) -> Vec<pb::ClaimResult> {
    let mut tasks = Vec::with_capacity(claims.len());
    for claim in claims {
        let broker = broker.clone();
        tasks.push(tokio::spawn(async move { give_up_one(&broker, from, claim).await }));
    }
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.unwrap_or_default());
    }
    results
}

fn outcome(outcome: pb::claim_result::Outcome) -> pb::ClaimResult {
    pb::ClaimResult { outcome: outcome as i32, session: None }
}

/// Serves the placeholder connection of a moving session: a local takeover
/// (the client came back here) or a reconcile gets its answer at once
/// (no session: the move goes on), never a wait.
fn serve_placeholder(control: Arc<ControlSlot>) -> oneshot::Sender<()> {
    let (stop, mut stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                request = control.recv() => match request {
                    Control::TakeOver { reply } => drop(reply),
                    Control::Shutdown => return,
                    Control::Revalidate => {}
                },
            }
        }
    });
    stop
}

async fn give_up_one(broker: &Arc<Broker>, from: u64, claim: pb::ClientClaim) -> pb::ClaimResult {
    use pb::claim_result::Outcome;
    if claim.client_id.is_empty() {
        return outcome(Outcome::None);
    }
    let me = broker.peers().map_or(0, |peers| peers.me());
    if broker
        .registry
        .online_since(&claim.client_id)
        .is_some_and(|since| newer(since, me, claim.connected_at, from))
    {
        return outcome(Outcome::NewerHere);
    }
    let client_id: Arc<str> = Arc::from(claim.client_id.as_str());
    if let Some(result) = claim_moving(broker, from, &claim, &client_id) {
        return result;
    }
    let connection = broker.next_id();
    let control = Arc::new(ControlSlot::default());
    let mut taken = None;
    let mut will = None;
    let mut held = false;
    for _ in 0..2 {
        match broker.registry.claim(&client_id, connection, &control, claim.connected_at) {
            Claim::Fresh => {
                held = true;
                break;
            }
            Claim::Resumed(state, pending) => {
                held = true;
                taken = Some(state);
                will = pending;
                break;
            }
            Claim::Busy { connection: holder_id, control: holder } => {
                let (reply, answer) = oneshot::channel();
                holder.send(Control::TakeOver { reply });
                drop(holder);
                let state = tokio::time::timeout(HANDOVER_TIMEOUT, answer).await.ok().and_then(Result::ok);
                if broker.registry.claim_from(&client_id, holder_id, connection, &control, claim.connected_at)
                {
                    held = true;
                    taken = state;
                    break;
                }
                if let Some(state) = state {
                    broker.end_session(state);
                }
            }
        }
    }
    if !held {
        return outcome(Outcome::None);
    }
    let Some(state) = taken else {
        broker.registry.release(&client_id, connection);
        return outcome(Outcome::None);
    };
    debug!(client_id = %client_id, to = from, clean = claim.clean_start, "client id claimed by another node");
    if claim.clean_start {
        // The session ends here, as a local Clean Start would end it.
        if let Some(will) = will {
            broker.publish_will(&will);
        }
        broker.registry.release(&client_id, connection);
        broker.end_session(state);
        return outcome(Outcome::Taken);
    }
    // Resumed elsewhere: a pending will is cancelled, as a local resume does.
    drop(will);
    state.mailbox.set_online(false);
    let queued = state.mailbox.take_all();
    let transfer = to_transfer(&state, &queued);
    let generation = broker.next_id();
    let moving = Moving {
        state,
        connection,
        to: from,
        since: claim.connected_at,
        queued,
        generation,
        _serving: serve_placeholder(control),
    };
    broker.moves.moving.lock().insert(client_id.clone(), moving);
    let broker = broker.clone();
    tokio::spawn(async move {
        tokio::time::sleep(MOVE_TIMEOUT).await;
        let moving = {
            let mut moves = broker.moves.moving.lock();
            match moves.get(&client_id) {
                Some(m) if m.generation == generation => moves.remove(&client_id),
                _ => None,
            }
        };
        if let Some(moving) = moving {
            debug!(client_id = %client_id, "a moved session was never released: kept here");
            restore_moved(&broker, moving);
        }
    });
    pb::ClaimResult { outcome: Outcome::Taken as i32, session: Some(transfer) }
}

/// A claim for a session that is already moving to another node (the
/// client connected again elsewhere before that node released it): the
/// newer claimer gets it instead (with what came since), or a clean claim
/// ends it. `None` when it is not moving.
fn claim_moving(
    broker: &Arc<Broker>,
    from: u64,
    claim: &pb::ClientClaim,
    client_id: &Arc<str>,
) -> Option<pb::ClaimResult> {
    use pb::claim_result::Outcome;
    let mut moves = broker.moves.moving.lock();
    let moving = moves.get_mut(client_id)?;
    if newer(moving.since, moving.to, claim.connected_at, from) {
        return Some(outcome(Outcome::NewerHere));
    }
    if claim.clean_start {
        let moving = moves.remove(client_id)?;
        drop(moves);
        let Moving { state, connection, queued, .. } = moving;
        state.mailbox.push_front_all(queued);
        broker.registry.release(client_id, connection);
        broker.end_session(state);
        return Some(outcome(Outcome::Taken));
    }
    let late = moving.state.mailbox.take_all();
    moving.queued.extend(late);
    moving.to = from;
    moving.since = claim.connected_at;
    let transfer = to_transfer(&moving.state, &moving.queued);
    Some(pb::ClaimResult { outcome: Outcome::Taken as i32, session: Some(transfer) })
}

/// A session given up but never released: parked here again, with what it
/// had and what came since, for the longest expiry a session may have.
fn restore_moved(broker: &Arc<Broker>, moving: Moving) {
    let Moving { state, connection, queued, .. } = moving;
    state.mailbox.push_front_all(queued);
    let expiry = broker.config.session.max_expiry_interval;
    broker.park_session(connection, state, expiry, None);
}

/// Drops a given-up session: its subscriptions here go, its registry entry
/// too. Returns what arrived for it since it was given up.
fn drop_moved(broker: &Broker, client_id: &Arc<str>, moving: Moving) -> Vec<Delivery> {
    let Moving { mut state, connection, .. } = moving;
    for filter in state.subscriptions.keys() {
        if let Ok(parsed) = crate::topic::parse_filter(filter) {
            broker.unsubscribe(&parsed, state.id, client_id);
        }
    }
    state.subscriptions.clear();
    broker.registry.release(client_id, connection);
    state.mailbox.take_all()
}

/// The claimer `from` resumed the session of `client_id`: drops it here and
/// returns what arrived for it since it was given up.
pub fn release_moved(broker: &Broker, from: u64, client_id: &str) -> Vec<pb::TransferDelivery> {
    let key: Arc<str> = Arc::from(client_id);
    let moving = {
        let mut moving = broker.moves.moving.lock();
        match moving.get(&key) {
            Some(m) if m.to == from => moving.remove(&key),
            _ => None,
        }
    };
    let Some(moving) = moving else { return Vec::new() };
    let now = Instant::now();
    drop_moved(broker, &key, moving).iter().map(|d| delivery_to_wire(d, now)).collect()
}

/// A message from a moved session's queue, for tests.
#[cfg(test)]
fn message(topic: &str) -> Arc<Message> {
    Arc::new(Message {
        id: crate::message::next_id(),
        topic: topic.into(),
        payload: bytes::Bytes::from_static(b"x"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
        publisher: None,
        expires_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_in_time_go_to_the_higher_node_on_both_sides() {
        assert!(newer(6, 1, 5, 2), "later wins");
        assert!(newer(5, 2, 5, 1) && !newer(5, 1, 5, 2), "same microsecond: node 2 wins, as both see it");
        assert!(!newer(5, 1, 5, 1));
    }

    fn delivery(message: &Arc<Message>) -> Delivery {
        Delivery {
            message: message.clone(),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![7],
            share: None,
        }
    }

    #[test]
    fn a_session_survives_the_wire() {
        let mut state = SessionState::new(1, Arc::from("c"));
        state.identity.username = Some("u".into());
        let options = SubscriptionOptions { qos: QoS::ExactlyOnce, no_local: true, ..Default::default() };
        state.subscriptions.insert("a/+".into(), SessionSubscription { options, identifier: Some(3) });
        state.subscriptions.insert("$share/g/b".into(), SessionSubscription { options, identifier: None });
        let m = message("a/x");
        state.track(5, delivery(&m));
        state.restore_inflight(9, delivery(&message("a/y")), true);
        state.awaiting_rel.insert(4, (*message("in")).clone());
        let queued = vec![delivery(&message("a/z"))];
        let transfer = to_transfer(&state, &queued);
        let (back, queue) = from_transfer(transfer, 2, Arc::from("c"));
        assert_eq!(back.identity.username.as_deref(), Some("u"));
        assert_eq!(back.subscriptions.len(), 2);
        assert_eq!(
            back.subscriptions.get("a/+").map(|s| (s.options, s.identifier)),
            Some((options, Some(3)))
        );
        let inflight = back.inflight_in_order();
        assert_eq!(inflight.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![5, 9], "send order kept");
        assert_eq!(inflight[0].1.delivery.message.id, m.id, "the message keeps its id");
        assert_eq!(inflight[1].1.state, crate::session::OutgoingState::Released);
        assert!(back.awaiting_rel.contains_key(&4));
        assert_eq!(queue.len(), 1);
        assert_eq!(queue[0].subscription_ids, vec![7]);
    }

    #[test]
    fn merged_queues_keep_order_and_drop_copies() {
        let (a, b, c, d) = (message("a"), message("b"), message("c"), message("d"));
        let shared = Delivery {
            share: Some(ShareKey { group: Arc::from("g"), filter: Arc::from("b") }),
            ..delivery(&b)
        };
        let (merged, brought) = merge_queues(
            vec![delivery(&a)],
            vec![delivery(&b), shared, delivery(&c)],
            vec![delivery(&c), delivery(&d)],
        );
        let topics: Vec<&str> = merged.iter().map(|d| d.message.topic.as_str()).collect();
        assert_eq!(
            topics,
            vec!["a", "b", "b", "c", "d"],
            "c came both ways: once; b plain and shared: twice"
        );
        assert!(brought.contains(&(b.id, true)) && brought.contains(&(a.id, false)));
        assert!(!brought.contains(&(d.id, false)), "what came here directly is not refused later");
    }
}
