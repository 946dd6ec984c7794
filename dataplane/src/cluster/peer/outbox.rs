//! The sending side of peer links: one task per remote node, fed by a
//! bounded channel, that batches messages, sends them on a `Forward`
//! stream, settles publishers' acknowledgements as the node acknowledges
//! batches, and reconnects.
//!
//! Invariants: what a link holds is bounded (`queue_messages` in its
//! batches, plus its channel); past that, QoS 0 messages are dropped and
//! QoS 1/2 ones refused, both counted. A batch stays held until the node
//! acknowledges it and is resent, in order, on every new stream (the
//! receiver skips what it already delivered), so a link that breaks loses
//! nothing it holds. A publisher never waits on a node the control plane
//! declared down, nor longer than `ack_timeout` on one that does not
//! answer: its acknowledgement is released (counted), the message stays
//! held for the node. A node removed from the cluster is given up (what is
//! held for it is dropped, counted) and its task ends.
//!
//! Back-pressure: each link keeps a gauge of what it holds and its node has
//! not acknowledged (`pressure::LinkGauge`); past half of `queue_messages`
//! the publishers whose messages go to it are asked to wait (bounded), as a
//! subscriber's full queue asks them, so a slow node slows them instead of
//! losing their QoS 0 messages past the buffer. The receiving node does not
//! acknowledge a batch (nor read the next) until the subscriber queues it
//! filled past half have drained (bounded), so that pressure reaches here.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::RwLock;
use proto::auth::BearerToken;
use proto::peer as pb;
use proto::peer::peer_client::PeerClient;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::ack::RemoteAck;
use super::{PeerSettings, Target, BATCH_BYTES, BATCH_MESSAGES, MAX_BATCH_BYTES};
use crate::cluster::view::ClusterView;
use crate::message::Message;
use crate::pressure::{LinkGauge, Pressure};

/// One message for one remote node.
#[derive(Debug)]
pub struct Outgoing {
    pub message: Arc<Message>,
    /// What the node does with it (its node field is the link's).
    pub target: Target,
    /// Settled once the node accepted it (QoS 1 and 2 only).
    pub ack: Option<Arc<RemoteAck>>,
}

/// Counters of the peer links (read by `$SYS` and tests).
#[derive(Debug, Default)]
pub struct PeerCounters {
    /// Messages handed to a link (one per remote node).
    pub forwarded: AtomicU64,
    /// Messages a remote node acknowledged.
    pub delivered: AtomicU64,
    /// Messages dropped or refused: a link's buffer was full, or its node
    /// left the cluster.
    pub dropped: AtomicU64,
    /// Publisher acknowledgements released without the node's (it was
    /// declared down, or did not answer in time).
    pub acks_released: AtomicU64,
    /// Messages received from other nodes and routed here.
    pub received: AtomicU64,
    /// Forwarded messages refused as malformed.
    pub received_malformed: AtomicU64,
}

/// Batches sent on a stream and not yet acknowledged, at most: below the
/// receiver's acknowledgement buffer, so its acks never wait for us.
const MAX_IN_FLIGHT: usize = 256;

/// How often a link looks at the clock and the view.
const TICK: Duration = Duration::from_millis(200);

/// Slots in a link's channel (its publishers' side), at least; as many as
/// `queue_messages` when that is more.
const CHANNEL: usize = 4096;

/// What publishers hold of one link: its channel and its gauge.
type LinkHandle = (mpsc::Sender<Outgoing>, Arc<LinkGauge>);

/// The peer links of this node.
#[derive(Debug)]
pub struct PeerLinks {
    me: u64,
    /// Picked at start: lets receivers tell this process's batches from a
    /// previous one's.
    epoch: u64,
    view: Arc<ArcSwap<ClusterView>>,
    settings: PeerSettings,
    links: RwLock<HashMap<u64, LinkHandle>>,
    pub counters: PeerCounters,
    /// New routes of this node for the other nodes (see `announce`).
    pub announcer: Arc<crate::cluster::announce::Announcer>,
    /// Client ids this node claims from the others (see `sessions`).
    pub claimer: Arc<crate::cluster::sessions::Claimer>,
}

impl PeerLinks {
    pub fn new(me: u64, view: Arc<ArcSwap<ClusterView>>, settings: PeerSettings) -> Arc<PeerLinks> {
        Arc::new(PeerLinks {
            me,
            epoch: rand::random::<u64>() | 1,
            view,
            settings,
            links: RwLock::new(HashMap::new()),
            counters: PeerCounters::default(),
            announcer: Arc::default(),
            claimer: Arc::default(),
        })
    }

    /// Ends every link (on shutdown): each task ends once its channel is drained.
    pub fn shutdown(&self) {
        self.links.write().clear();
    }

    /// This node's id.
    pub fn me(&self) -> u64 {
        self.me
    }

    /// TLS on peer links, if configured.
    pub fn tls(&self) -> Option<&super::PeerTls> {
        self.settings.tls.as_ref()
    }

    /// A client for the node at `address`, with the cluster's peer secret
    /// and this node's TLS settings.
    pub fn client(&self, address: &str, connect_timeout: Duration) -> Option<super::Client> {
        let secret = self.view.load().peer_secret.clone();
        super::client(address, &secret, self.tls(), connect_timeout)
    }

    /// The control plane's view as last heard.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.load_full()
    }

    /// Sends `message` once to each of `targets`. For QoS 1 and 2 with
    /// `publisher`, returns what the publisher's acknowledgement waits for
    /// (`None` when no node needs waiting for: all down, or none). Links
    /// past half full are added to `pressure`, when given.
    pub fn forward(
        self: &Arc<Self>,
        message: &Arc<Message>,
        targets: Vec<Target>,
        publisher: Option<&Arc<crate::mailbox::Mailbox>>,
        mut pressure: Option<&mut Vec<Pressure>>,
    ) -> Option<Arc<RemoteAck>> {
        let view = self.view.load();
        let waited: Vec<bool> = targets
            .iter()
            .map(|t| publisher.is_some() && view.peers.get(&t.node).is_some_and(|peer| peer.up))
            .collect();
        let count = waited.iter().filter(|w| **w).count();
        let ack = match publisher {
            Some(mailbox) if count > 0 && message.qos as u8 > 0 => {
                Some(RemoteAck::new(count, mailbox.clone()))
            }
            _ => None,
        };
        for (target, waits) in targets.into_iter().zip(waited) {
            let node = target.node;
            let item = Outgoing { message: message.clone(), target, ack: ack.clone().filter(|_| waits) };
            self.send(node, item, pressure.as_deref_mut());
        }
        ack
    }

    fn send(self: &Arc<Self>, node: u64, item: Outgoing, pressure: Option<&mut Vec<Pressure>>) {
        let link = self.links.read().get(&node).cloned();
        let (sender, gauge) = match link {
            Some((sender, gauge)) if !sender.is_closed() => (sender, gauge),
            _ => self.start_link(node),
        };
        match sender.try_send(item) {
            Ok(()) => {
                self.counters.forwarded.fetch_add(1, Ordering::Relaxed);
                if gauge.add() {
                    if let Some(pressure) = pressure {
                        Pressure::Link(gauge).add_to(pressure);
                    }
                }
            }
            Err(error) => {
                let item = match error {
                    mpsc::error::TrySendError::Full(item) | mpsc::error::TrySendError::Closed(item) => item,
                };
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                if let Some(ack) = item.ack {
                    ack.refuse();
                }
            }
        }
    }

    fn start_link(self: &Arc<Self>, node: u64) -> LinkHandle {
        let mut links = self.links.write();
        if let Some(link) = links.get(&node).filter(|(s, _)| !s.is_closed()) {
            return link.clone();
        }
        let (sender, receiver) = mpsc::channel(CHANNEL.max(self.settings.queue_messages));
        let gauge = Arc::new(LinkGauge::new(node, self.settings.queue_messages));
        links.insert(node, (sender.clone(), gauge.clone()));
        let link = Link {
            links: Arc::downgrade(self),
            node,
            gauge: gauge.clone(),
            receiver,
            held: VecDeque::new(),
            held_messages: 0,
            seq: 0,
            sent: 0,
        };
        tokio::spawn(link.run());
        (sender, gauge)
    }
}

/// A batch held until the node acknowledges it.
struct Held {
    batch: pb::Batch,
    /// Acknowledgements waiting for it; emptied once released.
    acks: Vec<Arc<RemoteAck>>,
    since: Instant,
}

/// One link's task state.
struct Link {
    links: std::sync::Weak<PeerLinks>,
    node: u64,
    /// What this link holds unacknowledged, for publishers' back-pressure.
    gauge: Arc<LinkGauge>,
    receiver: mpsc::Receiver<Outgoing>,
    held: VecDeque<Held>,
    held_messages: usize,
    seq: u64,
    /// How many of `held` went out on the current stream.
    sent: usize,
}

/// What the view says of the node.
enum Peer {
    Up(String),
    Down,
    Gone,
}

impl Link {
    fn peer(&self, links: &PeerLinks) -> Peer {
        match links.view.load().peers.get(&self.node) {
            Some(peer) if peer.up && !peer.address.is_empty() => Peer::Up(peer.address.clone()),
            Some(_) => Peer::Down,
            None => Peer::Gone,
        }
    }

    /// Takes what waits in the channel into batches, while room is left.
    fn absorb(&mut self, links: &PeerLinks, items: &mut Vec<Outgoing>) {
        if items.is_empty() {
            return;
        }
        let now = Instant::now();
        let down = !matches!(self.peer(links), Peer::Up(_));
        let mut batch = pb::Batch { from_node: links.me, epoch: links.epoch, seq: 0, messages: Vec::new() };
        let mut acks = Vec::new();
        let mut bytes = 0usize;
        for item in items.drain(..) {
            if bytes >= BATCH_BYTES || batch.messages.len() >= BATCH_MESSAGES {
                self.hold(std::mem::take(&mut batch.messages), std::mem::take(&mut acks), links, now);
                bytes = 0;
            }
            bytes += item.message.payload.len() + item.message.topic.len();
            let mut wire = super::to_wire(&item.message, now);
            wire.shares_only = !item.target.plain;
            wire.shares = item.target.shares;
            wire.redirected = item.target.redirected;
            wire.retained = item.target.retained.map(super::version_to_wire);
            batch.messages.push(wire);
            if let Some(ack) = item.ack {
                if down {
                    links.counters.acks_released.fetch_add(1, Ordering::Relaxed);
                    ack.settle();
                } else {
                    acks.push(ack);
                }
            }
        }
        self.hold(batch.messages, acks, links, now);
    }

    fn hold(
        &mut self,
        messages: Vec<pb::PeerMessage>,
        acks: Vec<Arc<RemoteAck>>,
        links: &PeerLinks,
        now: Instant,
    ) {
        if messages.is_empty() {
            return;
        }
        self.seq += 1;
        self.held_messages += messages.len();
        let batch = pb::Batch { from_node: links.me, epoch: links.epoch, seq: self.seq, messages };
        self.held.push_back(Held { batch, acks, since: now });
    }

    /// The node delivered every batch up to `seq`.
    fn acknowledged(&mut self, links: &PeerLinks, seq: u64) {
        while self.held.front().is_some_and(|held| held.batch.seq <= seq) {
            let Some(held) = self.held.pop_front() else { break };
            self.held_messages -= held.batch.messages.len();
            self.gauge.settle(held.batch.messages.len());
            self.sent = self.sent.saturating_sub(1);
            links.counters.delivered.fetch_add(held.batch.messages.len() as u64, Ordering::Relaxed);
            held.acks.into_iter().for_each(|ack| ack.settle());
        }
    }

    /// Releases the acknowledgements that waited too long, or all of them
    /// when the node is down.
    fn release_late(&mut self, links: &PeerLinks, all: bool) {
        let now = Instant::now();
        for held in &mut self.held {
            if !all && now.duration_since(held.since) < links.settings.ack_timeout {
                break;
            }
            links.counters.acks_released.fetch_add(held.acks.len() as u64, Ordering::Relaxed);
            held.acks.drain(..).for_each(|ack| ack.settle());
        }
    }

    /// Drops everything held (the node left the cluster).
    fn give_up(&mut self, links: &PeerLinks) {
        self.receiver.close();
        let mut dropped = self.held_messages as u64;
        for held in self.held.drain(..) {
            held.acks.into_iter().for_each(|ack| ack.settle());
        }
        while let Ok(item) = self.receiver.try_recv() {
            dropped += 1;
            if let Some(ack) = item.ack {
                ack.settle();
            }
        }
        self.held_messages = 0;
        self.gauge.settle(self.gauge.pending());
        links.counters.dropped.fetch_add(dropped, Ordering::Relaxed);
        let mut map = links.links.write();
        if map.get(&self.node).is_some_and(|(s, _)| s.is_closed()) {
            map.remove(&self.node);
        }
    }

    fn room(&self, links: &PeerLinks) -> bool {
        self.held_messages < links.settings.queue_messages
    }

    /// Called on every tick: true if the task should end.
    fn tick(&mut self, links: &PeerLinks) -> bool {
        match self.peer(links) {
            Peer::Gone => {
                info!(node = self.node, "peer left the cluster; dropping what was held for it");
                self.give_up(links);
                true
            }
            Peer::Down => {
                self.release_late(links, true);
                false
            }
            Peer::Up(_) => {
                self.release_late(links, false);
                false
            }
        }
    }

    async fn run(mut self) {
        let mut failures = 0u32;
        let mut items = Vec::new();
        let mut ticker = tokio::time::interval(TICK);
        loop {
            let Some(links) = self.links.upgrade() else { return };
            // Wait (collecting what is sent meanwhile) until the node is up.
            let address = loop {
                if let Peer::Up(address) = self.peer(&links) {
                    break address;
                }
                if self.tick(&links) {
                    return;
                }
                tokio::select! {
                    n = self.receiver.recv_many(&mut items, BATCH_MESSAGES), if self.room(&links) => {
                        if n == 0 { return; }
                        self.absorb(&links, &mut items);
                    }
                    _ = ticker.tick() => {}
                }
            };
            let secret = links.view.load().peer_secret.clone();
            let connected = self.connect(&links, &address, &secret, &mut items, &mut ticker).await;
            match connected {
                Some(Ok((requests, acks))) => {
                    if failures > 0 {
                        info!(node = self.node, %address, "peer link up");
                    }
                    failures = 0;
                    if self.stream(&links, requests, acks, &mut items, &mut ticker).await {
                        return;
                    }
                }
                Some(Err(error)) => {
                    if failures == 0 {
                        warn!(node = self.node, %address, %error, "peer link down; retrying");
                    } else {
                        debug!(node = self.node, %address, %error, "peer link still down");
                    }
                    failures += 1;
                }
                None => return,
            }
            // Back off, still collecting and ticking.
            let pause = tokio::time::sleep(Duration::from_millis((50u64 << failures.min(5)).min(1000)));
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    n = self.receiver.recv_many(&mut items, BATCH_MESSAGES), if self.room(&links) => {
                        if n == 0 { return; }
                        self.absorb(&links, &mut items);
                    }
                    _ = ticker.tick() => if self.tick(&links) { return },
                }
            }
        }
    }

    /// Opens a stream to `address`, still collecting and ticking; `None`
    /// when the task should end.
    #[allow(clippy::type_complexity)]
    async fn connect(
        &mut self,
        links: &PeerLinks,
        address: &str,
        secret: &str,
        items: &mut Vec<Outgoing>,
        ticker: &mut tokio::time::Interval,
    ) -> Option<Result<(mpsc::Sender<pb::Batch>, tonic::Streaming<pb::Ack>), String>> {
        let attempt = open(address.to_owned(), secret.to_owned(), links.settings.tls.clone());
        tokio::pin!(attempt);
        loop {
            tokio::select! {
                result = &mut attempt => return Some(result),
                n = self.receiver.recv_many(items, BATCH_MESSAGES), if self.room(links) => {
                    if n == 0 { return None; }
                    self.absorb(links, items);
                }
                _ = ticker.tick() => if self.tick(links) { return None },
            }
        }
    }

    /// Serves one stream until it breaks; true when the task should end.
    async fn stream(
        &mut self,
        links: &PeerLinks,
        requests: mpsc::Sender<pb::Batch>,
        mut acks: tonic::Streaming<pb::Ack>,
        items: &mut Vec<Outgoing>,
        ticker: &mut tokio::time::Interval,
    ) -> bool {
        self.sent = 0;
        loop {
            let more = self.sent < self.held.len() && self.sent < MAX_IN_FLIGHT;
            tokio::select! {
                biased;
                ack = acks.message() => match ack {
                    Ok(Some(ack)) => self.acknowledged(links, ack.seq),
                    Ok(None) => return false,
                    Err(status) => {
                        debug!(node = self.node, %status, "peer stream failed");
                        return false;
                    }
                },
                permit = requests.reserve(), if more => match permit {
                    Ok(permit) => {
                        permit.send(self.held[self.sent].batch.clone());
                        self.sent += 1;
                    }
                    Err(_) => return false,
                },
                n = self.receiver.recv_many(items, BATCH_MESSAGES), if self.room(links) => {
                    if n == 0 { return true; }
                    self.absorb(links, items);
                }
                _ = ticker.tick() => {
                    if self.tick(links) {
                        return true;
                    }
                    if !matches!(self.peer(links), Peer::Up(_)) {
                        return false;
                    }
                }
            }
        }
    }
}

/// Opens a `Forward` stream: the sender of batches, and the acknowledgements.
async fn open(
    address: String,
    secret: String,
    tls: Option<super::PeerTls>,
) -> Result<(mpsc::Sender<pb::Batch>, tonic::Streaming<pb::Ack>), String> {
    let channel = super::endpoint(&address, tls.as_ref())
        .ok_or_else(|| format!("cannot reach {address} (a bad address, or TLS settings)"))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let token = BearerToken::new((!secret.is_empty()).then_some(secret.as_str()))
        .map_err(|_| "the peer secret is not a valid header value".to_string())?;
    let mut client = PeerClient::with_interceptor(channel, token)
        .max_decoding_message_size(MAX_BATCH_BYTES)
        .max_encoding_message_size(MAX_BATCH_BYTES);
    let (requests, receiver) = mpsc::channel(4);
    let stream = tokio_stream::wrappers::ReceiverStream::new(receiver);
    let response = tokio::time::timeout(Duration::from_secs(5), client.forward(stream))
        .await
        .map_err(|_| "no answer within 5 s".to_string())?
        .map_err(|status| status.to_string())?;
    Ok((requests, response.into_inner()))
}
