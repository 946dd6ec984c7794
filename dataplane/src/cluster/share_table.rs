//! The cluster's shared-subscription groups as this node reads them on
//! every publish: for each group (name and filter), its members on every
//! data-plane node, and the group's strategy state.
//!
//! A publishing node picks one member per matching group from the whole
//! cluster's list, so round robin is per group (on each publishing node,
//! each starting at a random place), not per publisher, and a group with
//! members on three nodes gets each message exactly once. Member lists
//! come from the control plane (sorted, so hash strategies agree across
//! nodes); a trie over filter levels finds the groups of a topic. The link's
//! task is the only writer.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use rand::Rng;

use crate::config::ShareStrategy;
use crate::message::{Message, ShareKey};
use crate::smallmap::SmallMap;

/// A member of a group: a client on a node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member {
    pub node: u64,
    pub client_id: Arc<str>,
}

#[derive(Debug)]
struct Group {
    key: ShareKey,
    members: Vec<Member>,
    next: AtomicUsize,
    /// Hash of the sticky member.
    sticky: AtomicU64,
}

#[derive(Debug, Default)]
struct Level {
    children: SmallMap<Box<str>, Level>,
    groups: SmallMap<Arc<str>, Group>,
}

impl Level {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.groups.is_empty()
    }

    /// Sets the members of `group` at `levels` below this level; returns how
    /// the number of groups changed.
    fn set(&mut self, levels: &[&str], key: &ShareKey, members: Vec<Member>) -> isize {
        match levels.split_first() {
            None => {
                let before = self.groups.get(&*key.group).is_some() as isize;
                if members.is_empty() {
                    self.groups.remove(&*key.group);
                    return -before;
                }
                match self.groups.get_mut(&*key.group) {
                    Some(group) => group.members = members,
                    None => {
                        let start = rand::thread_rng().gen_range(0..members.len());
                        self.groups.get_or_insert_with(key.group.clone(), || Group {
                            key: key.clone(),
                            members,
                            next: AtomicUsize::new(start),
                            sticky: AtomicU64::new(0),
                        });
                    }
                }
                1 - before
            }
            Some((first, rest)) => {
                if members.is_empty() {
                    let Some(child) = self.children.get_mut(*first) else { return 0 };
                    let delta = child.set(rest, key, members);
                    if child.is_empty() {
                        self.children.remove(*first);
                    }
                    delta
                } else {
                    self.children.get_or_insert_with((*first).into(), Level::default).set(rest, key, members)
                }
            }
        }
    }

    fn find(&self, key: &ShareKey) -> Option<&Group> {
        let mut level = self;
        for name in key.filter.split('/') {
            level = level.children.get(name)?;
        }
        level.groups.get(&*key.group)
    }
}

/// Shared groups of the whole cluster.
#[derive(Debug)]
pub struct ShareTable {
    root: RwLock<Level>,
    groups: AtomicUsize,
    strategy: ShareStrategy,
}

fn hash_of<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

fn members_of(list: impl IntoIterator<Item = (u64, String)>) -> Vec<Member> {
    let mut members: Vec<Member> =
        list.into_iter().map(|(node, client)| Member { node, client_id: Arc::from(client) }).collect();
    members.sort_unstable();
    members.dedup();
    members
}

impl ShareTable {
    pub fn new(strategy: ShareStrategy) -> ShareTable {
        ShareTable { root: RwLock::new(Level::default()), groups: AtomicUsize::new(0), strategy }
    }

    /// Groups held.
    pub fn len(&self) -> usize {
        self.groups.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets the members of a group; none removes it.
    pub fn set(&self, group: &str, filter: &str, members: impl IntoIterator<Item = (u64, String)>) {
        let key = ShareKey { group: Arc::from(group), filter: Arc::from(filter) };
        let levels: Vec<&str> = filter.split('/').collect();
        let delta = self.root.write().set(&levels, &key, members_of(members));
        if delta > 0 {
            self.groups.fetch_add(1, Ordering::Relaxed);
        } else if delta < 0 {
            self.groups.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Replaces every group (a snapshot): built aside, then swapped in.
    pub fn replace<I>(&self, groups: impl IntoIterator<Item = (String, String, I)>)
    where
        I: IntoIterator<Item = (u64, String)>,
    {
        let mut fresh = Level::default();
        let mut count = 0isize;
        for (group, filter, members) in groups {
            let key = ShareKey { group: Arc::from(group), filter: Arc::from(filter.as_str()) };
            let levels: Vec<&str> = filter.split('/').collect();
            count += fresh.set(&levels, &key, members_of(members));
        }
        let old = std::mem::replace(&mut *self.root.write(), fresh);
        self.groups.store(count.max(0) as usize, Ordering::Relaxed);
        drop(old);
    }

    /// Picks one member of every group whose filter matches the message's
    /// topic, by the strategy, and adds (group, member) to `out`. Members
    /// on `except` (a node with none left) are passed over.
    pub fn pick(&self, message: &Message, except: Option<u64>, out: &mut Vec<(ShareKey, Member)>) {
        if self.is_empty() {
            return;
        }
        let topic = message.topic.as_str();
        let levels: Vec<&str> = topic.split('/').collect();
        let mut groups = Vec::new();
        let root = self.root.read();
        collect(&root, &levels, 0, topic.starts_with('$'), &mut groups);
        for group in groups {
            if let Some(member) = self.choose(group, message, except) {
                out.push((group.key.clone(), member));
            }
        }
    }

    /// Picks a member of the group `key` not on `except`.
    pub fn pick_in(&self, key: &ShareKey, message: &Message, except: Option<u64>) -> Option<Member> {
        let root = self.root.read();
        let group = root.find(key)?;
        self.choose(group, message, except)
    }

    fn choose(&self, group: &Group, message: &Message, except: Option<u64>) -> Option<Member> {
        let pool: Vec<&Member> = group.members.iter().filter(|m| Some(m.node) != except).collect();
        if pool.is_empty() {
            return None;
        }
        let index = match self.strategy {
            ShareStrategy::Random => rand::thread_rng().gen_range(0..pool.len()),
            ShareStrategy::RoundRobin => group.next.fetch_add(1, Ordering::Relaxed) % pool.len(),
            ShareStrategy::Sticky => {
                let current = group.sticky.load(Ordering::Relaxed);
                match pool.iter().position(|m| hash_of(*m) == current) {
                    Some(i) => i,
                    None => {
                        let i = rand::thread_rng().gen_range(0..pool.len());
                        group.sticky.store(hash_of(pool[i]), Ordering::Relaxed);
                        i
                    }
                }
            }
            ShareStrategy::HashClientid => {
                (hash_of(message.publisher.as_deref().unwrap_or("")) % pool.len() as u64) as usize
            }
            ShareStrategy::HashTopic => (hash_of(message.topic.as_str()) % pool.len() as u64) as usize,
        };
        Some(pool[index].clone())
    }

    /// Every (group, filter, client id) listed for `node`.
    pub fn members_on(&self, node: u64) -> HashSet<(String, String, String)> {
        fn walk(level: &Level, node: u64, out: &mut HashSet<(String, String, String)>) {
            for group in level.groups.values() {
                for member in group.members.iter().filter(|m| m.node == node) {
                    out.insert((
                        group.key.group.to_string(),
                        group.key.filter.to_string(),
                        member.client_id.to_string(),
                    ));
                }
            }
            for child in level.children.values() {
                walk(child, node, out);
            }
        }
        let mut out = HashSet::new();
        walk(&self.root.read(), node, &mut out);
        out
    }

    /// Whether `client_id` on `node` is listed in `group` of `filter`.
    pub fn has(&self, group: &str, filter: &str, node: u64, client_id: &str) -> bool {
        let key = ShareKey { group: Arc::from(group), filter: Arc::from(filter) };
        let root = self.root.read();
        root.find(&key)
            .is_some_and(|g| g.members.iter().any(|m| m.node == node && &*m.client_id == client_id))
    }
}

fn collect<'a>(level: &'a Level, levels: &[&str], depth: usize, dollar: bool, out: &mut Vec<&'a Group>) {
    let wildcards = !(depth == 0 && dollar);
    if wildcards {
        if let Some(hash) = level.children.get("#") {
            out.extend(hash.groups.values());
        }
    }
    if depth == levels.len() {
        out.extend(level.groups.values());
        return;
    }
    if let Some(child) = level.children.get(levels[depth]) {
        collect(child, levels, depth + 1, dollar, out);
    }
    if wildcards {
        if let Some(plus) = level.children.get("+") {
            collect(plus, levels, depth + 1, dollar, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use mqtt_codec::QoS;

    use super::*;

    fn message(topic: &str) -> Message {
        Message {
            id: crate::message::next_id(),
            topic: topic.into(),
            payload: Default::default(),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
            publisher: Some(Arc::from("p")),
            expires_at: None,
        }
    }

    fn members(list: &[(u64, &str)]) -> Vec<(u64, String)> {
        list.iter().map(|(n, c)| (*n, c.to_string())).collect()
    }

    #[test]
    fn round_robin_spreads_over_the_cluster_and_skips_a_node() {
        let table = ShareTable::new(ShareStrategy::RoundRobin);
        table.set("g", "s/+", members(&[(1, "a"), (2, "b"), (3, "c"), (3, "d")]));
        table.set("h", "s/#", members(&[(2, "e")]));
        table.set("x", "other", members(&[(2, "f")]));
        assert_eq!(table.len(), 3);
        let mut counts: std::collections::HashMap<String, usize> = Default::default();
        for _ in 0..400 {
            let mut out = Vec::new();
            table.pick(&message("s/t"), None, &mut out);
            assert_eq!(out.len(), 2, "one member per matching group");
            for (_, member) in out {
                *counts.entry(member.client_id.to_string()).or_default() += 1;
            }
        }
        for client in ["a", "b", "c", "d"] {
            assert_eq!(counts[client], 100, "{client}: {counts:?}");
        }
        assert_eq!(counts["e"], 400);
        let key = ShareKey { group: Arc::from("g"), filter: Arc::from("s/+") };
        for _ in 0..10 {
            assert_ne!(table.pick_in(&key, &message("s/t"), Some(3)).map(|m| m.node), Some(3));
        }
        assert!(table.has("g", "s/+", 3, "d") && !table.has("g", "s/+", 2, "d"));
        assert_eq!(table.members_on(2).len(), 3);
        table.set("g", "s/+", Vec::new());
        table.set("h", "s/#", Vec::new());
        assert_eq!(table.len(), 1);
        table.replace(vec![("k".to_string(), "a/b".to_string(), members(&[(1, "z")]))]);
        assert_eq!(table.len(), 1);
        let mut out = Vec::new();
        table.pick(&message("other"), None, &mut out);
        assert!(out.is_empty(), "replaced");
        table.pick(&message("a/b"), None, &mut out);
        assert_eq!(out[0].1.client_id.as_ref(), "z");
    }

    #[test]
    fn hash_strategies_agree_across_tables_and_dollar_topics_skip_wildcards() {
        let one = ShareTable::new(ShareStrategy::HashTopic);
        let two = ShareTable::new(ShareStrategy::HashTopic);
        one.set("g", "#", members(&[(1, "a"), (2, "b"), (3, "c")]));
        two.set("g", "#", members(&[(3, "c"), (2, "b"), (1, "a")]));
        for i in 0..20 {
            let (mut x, mut y) = (Vec::new(), Vec::new());
            one.pick(&message(&format!("t/{i}")), None, &mut x);
            two.pick(&message(&format!("t/{i}")), None, &mut y);
            assert_eq!(x[0].1, y[0].1);
        }
        let mut out = Vec::new();
        one.pick(&message("$SYS/x"), None, &mut out);
        assert!(out.is_empty());
    }
}
