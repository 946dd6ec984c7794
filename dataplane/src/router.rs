//! The local subscription index: a trie over topic levels, with `+` and `#`
//! children, and shared-subscription groups at the node of their filter.
//!
//! Routing a message walks the trie once, collects every matching
//! subscription, picks one member per shared group by the configured
//! strategy, and merges overlapping subscriptions of one session into one
//! delivery (highest QoS, every Subscription Identifier), as MQTT 5.0 allows
//! and 3.1.1 requires. Topics starting with `$` are not matched by a filter
//! that starts with a wildcard. The trie sits behind one read-write lock:
//! publishes only read it.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use mqtt_codec::SubscriptionOptions;
use parking_lot::RwLock;
use rand::Rng;

use crate::config::ShareStrategy;
use crate::mailbox::Mailbox;
use crate::message::{Delivery, Message, ShareKey};
use crate::smallmap::SmallMap;
use crate::topic::ParsedFilter;

/// Identifies one session for its whole life (not reused).
pub type SessionId = u64;

/// Where deliveries for one session go.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub session: SessionId,
    pub client_id: Arc<str>,
    pub mailbox: Arc<Mailbox>,
}

#[derive(Debug, Clone)]
struct Entry {
    subscriber: Subscriber,
    options: SubscriptionOptions,
    identifier: Option<u32>,
    /// A `$local/` subscription: messages from other nodes skip it, and it
    /// makes no route.
    local: bool,
}

#[derive(Debug)]
struct SharedGroup {
    /// The group's key (name and filter), handed out with each delivery.
    key: ShareKey,
    members: Vec<Entry>,
    next: AtomicUsize,
    sticky: AtomicU64,
}

/// A topic level. Nearly every map here holds a handful of entries (one
/// subscriber, one child), so they are `SmallMap`s: a short vector, a hash
/// map only when large. That keeps a subscription to a topic of its own at
/// a few hundred bytes.
#[derive(Debug, Default)]
struct Node {
    children: SmallMap<Box<str>, Node>,
    subscribers: SmallMap<SessionId, Entry>,
    shared: SmallMap<Arc<str>, SharedGroup>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.subscribers.is_empty() && self.shared.is_empty()
    }
}

/// The subscription index of this node.
#[derive(Debug)]
pub struct Router {
    root: RwLock<Node>,
    strategy: ShareStrategy,
    count: AtomicUsize,
}

/// One delivery to make: a mailbox and what to put in it.
pub type Route = (Subscriber, Delivery);

/// What to do with a matching shared group of this node (see
/// [`Router::route_with`]).
#[derive(Debug, Clone)]
pub enum SharePick {
    /// Pick one of this node's members by the strategy.
    Here,
    /// Deliver to this member (or, if it is gone or offline, to another
    /// member here).
    Member(Arc<str>),
    /// Not here: another node's member takes it.
    Skip,
}

impl Router {
    pub fn new(strategy: ShareStrategy) -> Router {
        Router { root: RwLock::new(Node::default()), strategy, count: AtomicUsize::new(0) }
    }

    /// Number of subscriptions, shared ones included.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Adds or replaces a subscription. Returns whether it existed before,
    /// and whether it is the first plain subscription to its filter.
    pub fn subscribe(
        &self,
        filter: &ParsedFilter<'_>,
        subscriber: Subscriber,
        options: SubscriptionOptions,
        identifier: Option<u32>,
    ) -> (bool, bool) {
        let mut root = self.root.write();
        let mut node = &mut *root;
        for level in filter.filter().split('/') {
            node = node.children.get_or_insert_with(level.into(), Node::default);
        }
        let session = subscriber.session;
        let local = matches!(filter, ParsedFilter::Local(_));
        let entry = Entry { subscriber, options, identifier, local };
        let existed = match filter {
            ParsedFilter::Shared { group, .. } => {
                let name: Arc<str> = Arc::from(*group);
                let group = node.shared.get_or_insert_with(name.clone(), || SharedGroup {
                    key: ShareKey { group: name, filter: Arc::from(filter.filter()) },
                    members: Vec::new(),
                    next: AtomicUsize::new(0),
                    sticky: AtomicU64::new(0),
                });
                match group.members.iter_mut().find(|m| m.subscriber.session == session) {
                    Some(member) => {
                        *member = entry;
                        true
                    }
                    None => {
                        group.members.push(entry);
                        false
                    }
                }
            }
            _ => {
                let routed_before = node.subscribers.values().any(|e| !e.local);
                let existed = node.subscribers.insert(session, entry).is_some();
                let routed_now = node.subscribers.values().any(|e| !e.local);
                if !existed {
                    self.count.fetch_add(1, Ordering::Relaxed);
                }
                return (existed, routed_now && !routed_before);
            }
        };
        if !existed {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        (existed, false)
    }

    /// Removes a subscription. Returns whether it existed, and whether it
    /// was the last plain subscription to its filter.
    pub fn unsubscribe(&self, filter: &ParsedFilter<'_>, session: SessionId) -> (bool, bool) {
        let mut root = self.root.write();
        let levels: Vec<&str> = filter.filter().split('/').collect();
        let mut last = false;
        let removed = remove(&mut root, &levels, filter, session, &mut last);
        if removed {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        (removed, removed && last)
    }

    /// Every filter with at least one plain subscriber (not shared, not
    /// `$local/`): the routes this node registers.
    pub fn plain_filters(&self) -> std::collections::HashSet<String> {
        fn walk(node: &Node, path: &mut Vec<String>, out: &mut std::collections::HashSet<String>) {
            if node.subscribers.values().any(|e| !e.local) {
                out.insert(path.join("/"));
            }
            for (level, child) in &node.children {
                path.push(level.to_string());
                walk(child, path, out);
                path.pop();
            }
        }
        let mut out = std::collections::HashSet::new();
        walk(&self.root.read(), &mut Vec::new(), &mut out);
        out
    }

    /// Whether `filter` has a plain subscriber here (one that makes a route).
    pub fn routes_filter(&self, filter: &str) -> bool {
        let root = self.root.read();
        let mut node = &*root;
        for level in filter.split('/') {
            match node.children.get(level) {
                Some(child) => node = child,
                None => return false,
            }
        }
        let routed = node.subscribers.values().any(|e| !e.local);
        routed
    }

    /// The client ids of this node's members of `group` on `filter`.
    pub fn group_members(&self, group: &str, filter: &str) -> Vec<Arc<str>> {
        let root = self.root.read();
        let mut node = &*root;
        for level in filter.split('/') {
            match node.children.get(level) {
                Some(child) => node = child,
                None => return Vec::new(),
            }
        }
        node.shared
            .get(group)
            .map_or_else(Vec::new, |g| g.members.iter().map(|m| m.subscriber.client_id.clone()).collect())
    }

    /// Every (group, filter, client id) of the shared groups here.
    pub fn share_members(&self) -> std::collections::HashSet<(String, String, String)> {
        fn walk(node: &Node, out: &mut std::collections::HashSet<(String, String, String)>) {
            for group in node.shared.values() {
                for member in &group.members {
                    out.insert((
                        group.key.group.to_string(),
                        group.key.filter.to_string(),
                        member.subscriber.client_id.to_string(),
                    ));
                }
            }
            for child in node.children.values() {
                walk(child, out);
            }
        }
        let mut out = std::collections::HashSet::new();
        walk(&self.root.read(), &mut out);
        out
    }

    /// Collects the deliveries for `message`. Deliveries are appended to
    /// `out`. A message `from_peer` (published on another node) skips
    /// `$local/` subscriptions.
    pub fn route(&self, message: &Arc<Message>, from_peer: bool, out: &mut Vec<Route>) {
        self.route_with(message, from_peer, &mut |_| SharePick::Here, out)
    }

    /// Like [`Router::route`], asking `shares` what to do with each
    /// matching shared group.
    pub fn route_with(
        &self,
        message: &Arc<Message>,
        from_peer: bool,
        shares: &mut dyn FnMut(&ShareKey) -> SharePick,
        out: &mut Vec<Route>,
    ) {
        let topic = message.topic.as_str();
        let levels: Vec<&str> = topic.split('/').collect();
        let dollar = topic.starts_with('$');
        let mut plain: Vec<&Entry> = Vec::new();
        let mut shared: Vec<&SharedGroup> = Vec::new();
        let root = self.root.read();
        collect(&root, &levels, 0, dollar, &mut plain, &mut shared);

        let publisher = message.publisher.as_deref();
        plain.retain(|e| {
            let own = e.options.no_local && publisher == Some(&*e.subscriber.client_id);
            let skipped_here = from_peer && e.local;
            !(own || skipped_here)
        });
        plain.sort_unstable_by_key(|e| e.subscriber.session);
        let mut i = 0;
        while i < plain.len() {
            let first = plain[i];
            let mut qos = first.options.qos.min(message.qos);
            let mut retain = first.options.retain_as_published && message.retain;
            let mut ids: Vec<u32> = first.identifier.into_iter().collect();
            let mut j = i + 1;
            while j < plain.len() && plain[j].subscriber.session == first.subscriber.session {
                let other = plain[j];
                qos = qos.max(other.options.qos.min(message.qos));
                retain |= other.options.retain_as_published && message.retain;
                ids.extend(other.identifier);
                j += 1;
            }
            out.push((
                first.subscriber.clone(),
                Delivery { message: message.clone(), qos, retain, subscription_ids: ids, share: None },
            ));
            i = j;
        }

        for group in shared {
            let member = match shares(&group.key) {
                SharePick::Here => self.pick(group, message),
                SharePick::Member(client) => self.pick_preferring(group, &client, message),
                SharePick::Skip => None,
            };
            if let Some(member) = member {
                out.push(share_delivery(group, member, message));
            }
        }
    }

    /// The delivery of `message` to the group `key` here, to `client` if it
    /// is a connected member, else to another member (connected first);
    /// `None` when the group has no member here.
    pub fn route_to_group(&self, key: &ShareKey, client: &str, message: &Arc<Message>) -> Option<Route> {
        let root = self.root.read();
        let mut node = &*root;
        for level in key.filter.split('/') {
            node = node.children.get(level)?;
        }
        let group = node.shared.get(&key.group)?;
        let member = self.pick_preferring(group, client, message)?;
        Some(share_delivery(group, member, message))
    }

    fn pick_preferring<'a>(
        &self,
        group: &'a SharedGroup,
        client: &str,
        message: &Message,
    ) -> Option<&'a Entry> {
        let named = group.members.iter().find(|m| &*m.subscriber.client_id == client);
        match named {
            Some(member) if member.subscriber.mailbox.is_online() => Some(member),
            _ => {
                let online = group.members.iter().any(|m| m.subscriber.mailbox.is_online());
                if online || named.is_none() {
                    self.pick(group, message)
                } else {
                    named
                }
            }
        }
    }

    /// Picks a member of the group `key` other than `except` to take over a
    /// delivery, preferring connected members.
    pub fn other_member(
        &self,
        key: &ShareKey,
        except: SessionId,
    ) -> Option<(Subscriber, SubscriptionOptions)> {
        let root = self.root.read();
        let mut node = &*root;
        for level in key.filter.split('/') {
            node = node.children.get(level)?;
        }
        let group = node.shared.get(&key.group)?;
        let candidates: Vec<&Entry> =
            group.members.iter().filter(|m| m.subscriber.session != except).collect();
        let pick =
            candidates.iter().find(|m| m.subscriber.mailbox.is_online()).or_else(|| candidates.first())?;
        Some((pick.subscriber.clone(), pick.options))
    }

    fn pick<'a>(&self, group: &'a SharedGroup, message: &Message) -> Option<&'a Entry> {
        let members = &group.members;
        if members.is_empty() {
            return None;
        }
        // Prefer connected members; fall back to any (its queue keeps the message).
        let online: Vec<usize> =
            (0..members.len()).filter(|&i| members[i].subscriber.mailbox.is_online()).collect();
        let pool: Vec<usize> = if online.is_empty() { (0..members.len()).collect() } else { online };
        let index = match self.strategy {
            ShareStrategy::Random => pool[rand::thread_rng().gen_range(0..pool.len())],
            ShareStrategy::RoundRobin => pool[group.next.fetch_add(1, Ordering::Relaxed) % pool.len()],
            ShareStrategy::Sticky => {
                let current = group.sticky.load(Ordering::Relaxed);
                match pool.iter().find(|&&i| members[i].subscriber.session == current) {
                    Some(&i) => i,
                    None => {
                        let i = pool[rand::thread_rng().gen_range(0..pool.len())];
                        group.sticky.store(members[i].subscriber.session, Ordering::Relaxed);
                        i
                    }
                }
            }
            ShareStrategy::HashClientid => {
                let key = message.publisher.as_deref().unwrap_or("");
                pool[(hash_of(key) % pool.len() as u64) as usize]
            }
            ShareStrategy::HashTopic => pool[(hash_of(&message.topic) % pool.len() as u64) as usize],
        };
        members.get(index)
    }
}

fn share_delivery(group: &SharedGroup, member: &Entry, message: &Arc<Message>) -> Route {
    (
        member.subscriber.clone(),
        Delivery {
            message: message.clone(),
            qos: member.options.qos.min(message.qos),
            retain: member.options.retain_as_published && message.retain,
            subscription_ids: member.identifier.into_iter().collect(),
            share: Some(group.key.clone()),
        },
    )
}

fn hash_of(text: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

fn collect<'a>(
    node: &'a Node,
    levels: &[&str],
    depth: usize,
    dollar: bool,
    plain: &mut Vec<&'a Entry>,
    shared: &mut Vec<&'a SharedGroup>,
) {
    let wildcards_allowed = !(depth == 0 && dollar);
    if wildcards_allowed {
        if let Some(hash) = node.children.get("#") {
            take(hash, plain, shared);
        }
    }
    if depth == levels.len() {
        take(node, plain, shared);
        return;
    }
    if let Some(child) = node.children.get(levels[depth]) {
        collect(child, levels, depth + 1, dollar, plain, shared);
    }
    if wildcards_allowed {
        if let Some(plus) = node.children.get("+") {
            collect(plus, levels, depth + 1, dollar, plain, shared);
        }
    }
}

fn take<'a>(node: &'a Node, plain: &mut Vec<&'a Entry>, shared: &mut Vec<&'a SharedGroup>) {
    plain.extend(node.subscribers.values());
    shared.extend(node.shared.values());
}

fn remove(
    node: &mut Node,
    levels: &[&str],
    filter: &ParsedFilter<'_>,
    session: SessionId,
    last: &mut bool,
) -> bool {
    match levels.split_first() {
        None => match filter {
            ParsedFilter::Shared { group, .. } => {
                let Some(members) = node.shared.get_mut(*group) else { return false };
                let before = members.members.len();
                members.members.retain(|m| m.subscriber.session != session);
                let removed = members.members.len() != before;
                if members.members.is_empty() {
                    node.shared.remove(*group);
                }
                removed
            }
            _ => {
                let removed = node.subscribers.remove(&session);
                *last =
                    removed.as_ref().is_some_and(|e| !e.local) && node.subscribers.values().all(|e| e.local);
                removed.is_some()
            }
        },
        Some((first, rest)) => {
            let Some(child) = node.children.get_mut(*first) else { return false };
            let removed = remove(child, rest, filter, session, last);
            if child.is_empty() {
                node.children.remove(*first);
            }
            removed
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use mqtt_codec::QoS;
    use proptest::prelude::*;

    use super::*;
    use crate::topic::{matches, parse_filter};

    fn subscriber(session: SessionId) -> Subscriber {
        Subscriber { session, client_id: Arc::from(format!("c{session}")), mailbox: Arc::new(Mailbox::new()) }
    }

    fn message(topic: &str) -> Arc<Message> {
        Arc::new(Message {
            id: crate::message::next_id(),
            topic: topic.into(),
            payload: Default::default(),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
            publisher: None,
            expires_at: None,
        })
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("".to_string()),
            Just("$x".to_string())
        ]
    }

    fn topic() -> impl Strategy<Value = String> {
        proptest::collection::vec(level(), 1..5)
            .prop_map(|levels| levels.join("/"))
            .prop_filter("non-empty", |t| !t.is_empty())
    }

    fn filter() -> impl Strategy<Value = String> {
        let level = prop_oneof![level(), Just("+".to_string())];
        (proptest::collection::vec(level, 1..5), any::<bool>())
            .prop_map(|(mut levels, hash)| {
                if hash {
                    levels.push("#".into());
                }
                levels.join("/")
            })
            .prop_filter("non-empty", |f| !f.is_empty())
    }

    proptest! {
        /// The trie finds exactly the sessions the naive matcher says match.
        #[test]
        fn routes_agree_with_the_naive_matcher(filters in proptest::collection::vec(filter(), 1..20), topic in topic()) {
            let router = Router::new(ShareStrategy::RoundRobin);
            for (i, f) in filters.iter().enumerate() {
                let parsed = parse_filter(f).unwrap();
                router.subscribe(&parsed, subscriber(i as u64), SubscriptionOptions::default(), None);
            }
            let mut routes = Vec::new();
            router.route(&message(&topic), false, &mut routes);
            let got: BTreeSet<u64> = routes.iter().map(|(s, _)| s.session).collect();
            let expected: BTreeSet<u64> =
                filters.iter().enumerate().filter(|(_, f)| matches(f, &topic)).map(|(i, _)| i as u64).collect();
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn one_member_per_shared_group_and_round_robin_rotates() {
        let router = Router::new(ShareStrategy::RoundRobin);
        let members: Vec<Subscriber> = (1..=3).map(subscriber).collect();
        for m in &members {
            m.mailbox.set_online(true);
            router.subscribe(
                &parse_filter("$share/g/s/+").unwrap(),
                m.clone(),
                SubscriptionOptions::default(),
                None,
            );
        }
        router.subscribe(
            &parse_filter("$share/h/s/#").unwrap(),
            members[0].clone(),
            Default::default(),
            None,
        );
        let mut counts = [0usize; 4];
        for _ in 0..30 {
            let mut routes = Vec::new();
            router.route(&message("s/t"), false, &mut routes);
            assert_eq!(routes.len(), 2, "one per group");
            for (s, d) in &routes {
                if d.share.as_ref().is_some_and(|k| &*k.group == "g") {
                    counts[s.session as usize] += 1;
                }
            }
        }
        assert_eq!(&counts[1..], &[10, 10, 10]);
    }

    #[test]
    fn unsubscribe_prunes_and_counts() {
        let router = Router::new(ShareStrategy::Random);
        let f = parse_filter("a/+/c").unwrap();
        assert_eq!(router.subscribe(&f, subscriber(1), Default::default(), None), (false, true));
        assert_eq!(router.subscribe(&f, subscriber(1), Default::default(), None), (true, false));
        assert_eq!(router.subscribe(&f, subscriber(2), Default::default(), None), (false, false));
        assert_eq!(router.count(), 2);
        assert_eq!(router.plain_filters(), std::collections::HashSet::from(["a/+/c".to_string()]));
        assert_eq!(router.unsubscribe(&f, 1), (true, false));
        assert_eq!(router.unsubscribe(&f, 2), (true, true));
        assert_eq!(router.unsubscribe(&f, 1), (false, false));
        assert_eq!(router.count(), 0);
        assert!(router.root.read().is_empty());
    }

    #[test]
    fn local_subscriptions_make_no_route_and_skip_forwarded_messages() {
        let router = Router::new(ShareStrategy::Random);
        let local = parse_filter("$local/a/+").unwrap();
        let plain = parse_filter("a/+").unwrap();
        assert_eq!(router.subscribe(&local, subscriber(1), Default::default(), None), (false, false));
        assert!(router.plain_filters().is_empty(), "a $local/ filter is not a route");
        assert_eq!(router.subscribe(&plain, subscriber(2), Default::default(), None), (false, true));
        let mut routes = Vec::new();
        router.route(&message("a/b"), false, &mut routes);
        assert_eq!(routes.len(), 2, "a message published here reaches both");
        routes.clear();
        router.route(&message("a/b"), true, &mut routes);
        let sessions: Vec<u64> = routes.iter().map(|(s, _)| s.session).collect();
        assert_eq!(sessions, vec![2], "a forwarded message skips the $local/ subscriber");
        assert_eq!(
            router.unsubscribe(&plain, 2),
            (true, true),
            "the last routed subscriber withdraws the route"
        );
        assert_eq!(router.unsubscribe(&local, 1), (true, false));
    }
}
