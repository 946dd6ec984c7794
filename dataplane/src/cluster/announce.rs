//! Routes announced over peer links, so that a message published on any
//! live node after a SUBACK reaches the new subscription even before the
//! control plane's route does.
//!
//! - `Announcer` (sending side): a node whose subscribe made a new route
//!   (its first subscriber to a filter, or a new shared-group member)
//!   queues it; one task sends what is queued to every live node
//!   (`Peer.Announce`) and wakes the connections waiting to send their
//!   SUBACK once every node answered (or did not within
//!   [`ANNOUNCE_TIMEOUT`]: a node that cannot be reached cannot be
//!   promised anything). Announcements made while one is out go in the
//!   next, so a burst of subscribes is a few calls.
//! - `Announced` (receiving side): what other nodes announced, used on
//!   every publish next to the control plane's routes until the control
//!   plane's view lists them, or [`ANNOUNCED_FOR`] passes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use proto::peer as pb;
use tokio::sync::Notify;
use tracing::debug;

use super::peer::ack::RemoteAck;
use super::peer::outbox::PeerLinks;
use super::peer::{client, Client};
use super::route_table::RouteTable;
use super::share_table::{Member, ShareTable};
use crate::config::ShareStrategy;
use crate::message::ShareKey;

/// How long a SUBACK waits for a node that answers, at most.
pub const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long an announced route is used without the control plane listing it.
pub const ANNOUNCED_FOR: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
struct Pending {
    filters: Vec<String>,
    members: Vec<pb::ShareMember>,
    waiters: Vec<Arc<RemoteAck>>,
    tasks: Vec<tokio::sync::oneshot::Sender<()>>,
}

/// The sending side: new routes of this node, waiting to be announced.
#[derive(Debug, Default)]
pub struct Announcer {
    pending: Mutex<Pending>,
    notify: Notify,
    /// An announcement is being sent.
    sending: std::sync::atomic::AtomicBool,
}

impl Announcer {
    /// Queues a new plain route of this node.
    pub fn filter(&self, filter: &str) {
        self.pending.lock().filters.push(filter.to_string());
    }

    /// Queues a new shared-group member of this node.
    pub fn member(&self, group: &str, filter: &str, client_id: &str) {
        self.pending.lock().members.push(pb::ShareMember {
            group: group.to_string(),
            topic_filter: filter.to_string(),
            client_id: client_id.to_string(),
        });
    }

    /// Routes are queued or being announced: a subscribe to one of them
    /// must wait for the announcement too.
    pub fn busy(&self) -> bool {
        self.sending.load(std::sync::atomic::Ordering::Acquire) || {
            let pending = self.pending.lock();
            !pending.filters.is_empty() || !pending.members.is_empty()
        }
    }

    /// Resolves once everything queued so far is announced.
    pub fn barrier_async(&self) -> tokio::sync::oneshot::Receiver<()> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.pending.lock().tasks.push(sender);
        self.notify.notify_one();
        receiver
    }

    /// Settles `waiter` once everything queued so far is announced.
    pub fn barrier(&self, waiter: Arc<RemoteAck>) {
        self.pending.lock().waiters.push(waiter);
        self.notify.notify_one();
    }
}

/// Sends announcements, and expires what others announced, until the
/// links shut down.
pub async fn run(links: Arc<PeerLinks>, announced: Arc<Announced>) {
    let announcer = links.announcer.clone();
    let mut clients: HashMap<u64, (String, Client)> = HashMap::new();
    let mut sweep = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = announcer.notify.notified() => {}
            _ = sweep.tick() => {
                announced.expire(ANNOUNCED_FOR);
                continue;
            }
        }
        let batch = {
            let mut pending = announcer.pending.lock();
            announcer.sending.store(true, std::sync::atomic::Ordering::Release);
            std::mem::take(&mut *pending)
        };
        if !batch.filters.is_empty() || !batch.members.is_empty() {
            send(&links, &mut clients, &batch).await;
        }
        announcer.sending.store(false, std::sync::atomic::Ordering::Release);
        batch.waiters.iter().for_each(|waiter| waiter.settle());
        batch.tasks.into_iter().for_each(|task| {
            let _ = task.send(());
        });
    }
}

async fn send(links: &PeerLinks, clients: &mut HashMap<u64, (String, Client)>, batch: &Pending) {
    let view = links.view();
    let secret = view.peer_secret.to_string();
    let message = pb::Announcement {
        from_node: links.me(),
        filters: batch.filters.clone(),
        members: batch.members.clone(),
    };
    let mut calls = tokio::task::JoinSet::new();
    for (&node, peer) in view.peers.iter() {
        if node == links.me() || !peer.up || peer.address.is_empty() {
            continue;
        }
        let key = format!("{}\n{secret}", peer.address);
        if clients.get(&node).is_none_or(|(held, _)| *held != key) {
            match client(&peer.address, &secret, links.tls(), ANNOUNCE_TIMEOUT) {
                Some(fresh) => {
                    clients.insert(node, (key, fresh));
                }
                None => continue,
            }
        }
        let Some((_, client)) = clients.get(&node) else { continue };
        let mut client = client.clone();
        let message = message.clone();
        calls.spawn(async move {
            let result = tokio::time::timeout(ANNOUNCE_TIMEOUT, client.announce(message)).await;
            (node, result)
        });
    }
    while let Some(Ok((node, result))) = calls.join_next().await {
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => debug!(node, %status, "announcement refused"),
            Err(_) => debug!(node, "announcement not answered in time"),
        }
    }
    clients.retain(|node, _| view.peers.contains_key(node));
}

#[derive(Debug, Default)]
struct Held {
    routes: HashMap<String, Vec<(u64, Instant)>>,
    shares: HashMap<ShareKey, Vec<(Member, Instant)>>,
}

/// Announced routes and group members held at once, at most: they wait only
/// until the control plane lists them (or expire), so a burst past this is
/// a peer gone wrong.
pub const MAX_HELD: usize = 2_000_000;

/// The receiving side: routes other nodes announced and the control plane
/// has not listed yet.
#[derive(Debug)]
pub struct Announced {
    pub routes: RouteTable,
    pub shares: ShareTable,
    held: Mutex<Held>,
    max_held: usize,
}

impl Announced {
    pub fn new(strategy: ShareStrategy) -> Announced {
        Announced::with_limit(strategy, MAX_HELD)
    }

    /// Holding at most `max_held` routes and members at once.
    pub fn with_limit(strategy: ShareStrategy, max_held: usize) -> Announced {
        Announced {
            routes: RouteTable::new(),
            shares: ShareTable::new(strategy),
            held: Mutex::default(),
            max_held,
        }
    }

    /// True when nothing announced is held (the common case).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.shares.is_empty()
    }

    /// Takes in an announcement of `node`; refuses it (false) when it would
    /// make more routes and members held at once than its limit
    /// ([`MAX_HELD`] by default).
    pub fn add(&self, node: u64, filters: &[String], members: &[pb::ShareMember]) -> bool {
        let now = Instant::now();
        let mut held = self.held.lock();
        if held.routes.len() + held.shares.len() + filters.len() + members.len() > self.max_held {
            return false;
        }
        for filter in filters {
            let nodes = held.routes.entry(filter.clone()).or_default();
            nodes.retain(|(n, _)| *n != node);
            nodes.push((node, now));
            self.routes.set(filter, &nodes.iter().map(|(n, _)| *n).collect::<Vec<_>>());
        }
        for member in members {
            let key = ShareKey {
                group: Arc::from(member.group.as_str()),
                filter: Arc::from(member.topic_filter.as_str()),
            };
            let entry = Member { node, client_id: Arc::from(member.client_id.as_str()) };
            let list = held.shares.entry(key.clone()).or_default();
            list.retain(|(m, _)| *m != entry);
            list.push((entry, now));
            self.shares.set(
                &key.group,
                &key.filter,
                list.iter().map(|(m, _)| (m.node, m.client_id.to_string())),
            );
        }
        true
    }

    /// The control plane's view lists `nodes` for `filter`: their
    /// announcements for it are no longer needed.
    pub fn route_listed(&self, filter: &str, nodes: &[u64]) {
        let mut held = self.held.lock();
        let Some(list) = held.routes.get_mut(filter) else { return };
        list.retain(|(n, _)| !nodes.contains(n));
        let left: Vec<u64> = list.iter().map(|(n, _)| *n).collect();
        if left.is_empty() {
            held.routes.remove(filter);
        }
        self.routes.set(filter, &left);
    }

    /// The control plane's view lists `members` for a group.
    pub fn group_listed(&self, group: &str, filter: &str, members: &[(u64, String)]) {
        let key = ShareKey { group: Arc::from(group), filter: Arc::from(filter) };
        let mut held = self.held.lock();
        let Some(list) = held.shares.get_mut(&key) else { return };
        list.retain(|(m, _)| !members.iter().any(|(n, c)| *n == m.node && **c == *m.client_id));
        let left: Vec<(u64, String)> = list.iter().map(|(m, _)| (m.node, m.client_id.to_string())).collect();
        if left.is_empty() {
            held.shares.remove(&key);
        }
        self.shares.set(group, filter, left);
    }

    /// Forgets announcements older than `age`.
    pub fn expire(&self, age: Duration) {
        let now = Instant::now();
        let mut held = self.held.lock();
        let held = &mut *held;
        held.routes.retain(|filter, list| {
            let before = list.len();
            list.retain(|(_, since)| now.duration_since(*since) < age);
            if list.len() != before {
                self.routes.set(filter, &list.iter().map(|(n, _)| *n).collect::<Vec<_>>());
            }
            !list.is_empty()
        });
        held.shares.retain(|key, list| {
            let before = list.len();
            list.retain(|(_, since)| now.duration_since(*since) < age);
            if list.len() != before {
                self.shares.set(
                    &key.group,
                    &key.filter,
                    list.iter().map(|(m, _)| (m.node, m.client_id.to_string())),
                );
            }
            !list.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announced_routes_hold_until_listed_or_expired() {
        let announced = Announced::new(ShareStrategy::RoundRobin);
        assert!(announced.is_empty());
        let member = pb::ShareMember { group: "g".into(), topic_filter: "s/+".into(), client_id: "c".into() };
        announced.add(2, &["a/+".to_string(), "b".to_string()], std::slice::from_ref(&member));
        announced.add(3, &["a/+".to_string()], &[]);
        let mut nodes = Vec::new();
        announced.routes.nodes_for("a/x", 1, &mut nodes);
        assert_eq!(nodes, vec![2, 3]);
        announced.route_listed("a/+", &[2]);
        nodes.clear();
        announced.routes.nodes_for("a/x", 1, &mut nodes);
        assert_eq!(nodes, vec![3], "node 2's route is the control plane's now");
        assert_eq!(announced.shares.len(), 1);
        announced.group_listed("g", "s/+", &[(2, "c".to_string())]);
        assert!(announced.shares.is_empty());
        announced.expire(Duration::ZERO);
        assert!(announced.is_empty(), "everything expired");
    }

    #[test]
    fn announcements_past_the_limit_are_refused() {
        let announced = Announced::with_limit(ShareStrategy::RoundRobin, 3);
        let filters = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert!(announced.add(2, &filters(&["a", "b"]), &[]));
        assert!(!announced.add(2, &filters(&["c", "d"]), &[]), "4 held would be past 3");
        assert!(!announced.routes.has("c", 2), "nothing of a refused announcement is taken");
        assert!(announced.add(2, &filters(&["c"]), &[]));
        announced.route_listed("a", &[2]);
        assert!(announced.add(3, &filters(&["d"]), &[]), "room again once one was listed");
    }
}
