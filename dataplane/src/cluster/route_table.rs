//! The cluster's routes as this node reads them on every publish: which
//! other data-plane nodes have subscribers for a topic.
//!
//! A trie over topic levels (as the local `router`) with chains of levels
//! that do not branch kept in one node (a radix trie): the commonest IoT
//! pattern, every device subscribed to its own `devices/{id}/+/cmd`, costs
//! one node and one string per route, not one per level. A node holds the
//! ids of the data-plane nodes subscribed to the filter ending there (one
//! inline). Matching a topic walks the trie, not the table, and applying a
//! route change touches only that filter's path, so a change costs the
//! change whatever the table's size. A snapshot is built aside and swapped
//! in. Publishes only take the read side of the lock; the link's task is
//! the only writer.
//!
//! Invariants: a node's label is one or more levels joined by `/`; siblings
//! differ in their first level; a node other than the root holds ids or has
//! at least two children (a chain is merged back when a removal leaves one).

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};

use hashbrown::HashTable;
use parking_lot::RwLock;

/// Children kept in a vector up to this many; past it in a hash table.
const SMALL: usize = 8;

/// The data-plane nodes subscribed to one filter.
#[derive(Debug, Default)]
enum Ids {
    #[default]
    None,
    One(u64),
    Many(Box<[u64]>),
}

impl Ids {
    fn new(ids: &[u64]) -> Ids {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        match ids.as_slice() {
            [] => Ids::None,
            [one] => Ids::One(*one),
            _ => Ids::Many(ids.into_boxed_slice()),
        }
    }

    fn as_slice(&self) -> &[u64] {
        match self {
            Ids::None => &[],
            Ids::One(one) => std::slice::from_ref(one),
            Ids::Many(many) => many,
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Ids::None)
    }
}

/// The first level of a label.
fn head(label: &str) -> &str {
    label.split('/').next().unwrap_or(label)
}

/// A node's children, found by the first level of their labels.
#[derive(Debug, Default)]
enum Children {
    #[default]
    None,
    Small(Vec<Node>),
    Large(Box<(RandomState, HashTable<Node>)>),
}

impl Children {
    fn len(&self) -> usize {
        match self {
            Children::None => 0,
            Children::Small(nodes) => nodes.len(),
            Children::Large(large) => large.1.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, level: &str) -> Option<&Node> {
        match self {
            Children::None => None,
            Children::Small(nodes) => nodes.iter().find(|node| head(&node.label) == level),
            Children::Large(large) => {
                let (hasher, table) = &**large;
                table.find(hasher.hash_one(level), |node| head(&node.label) == level)
            }
        }
    }

    fn get_mut(&mut self, level: &str) -> Option<&mut Node> {
        match self {
            Children::None => None,
            Children::Small(nodes) => nodes.iter_mut().find(|node| head(&node.label) == level),
            Children::Large(large) => {
                let (hasher, table) = &mut **large;
                table.find_mut(hasher.hash_one(level), |node| head(&node.label) == level)
            }
        }
    }

    /// Adds `node`, whose first level no child has.
    fn insert(&mut self, node: Node) {
        match self {
            Children::None => *self = Children::Small(vec![node]),
            Children::Small(nodes) if nodes.len() < SMALL => {
                nodes.reserve_exact(1);
                nodes.push(node);
            }
            Children::Small(nodes) => {
                let hasher = RandomState::new();
                let mut table = HashTable::with_capacity(nodes.len() + 1);
                for node in std::mem::take(nodes).into_iter().chain(std::iter::once(node)) {
                    let hash = hasher.hash_one(head(&node.label));
                    table.insert_unique(hash, node, |node| hasher.hash_one(head(&node.label)));
                }
                *self = Children::Large(Box::new((hasher, table)));
            }
            Children::Large(large) => {
                let (hasher, table) = &mut **large;
                let hash = hasher.hash_one(head(&node.label));
                table.insert_unique(hash, node, |node| hasher.hash_one(head(&node.label)));
            }
        }
    }

    fn remove(&mut self, level: &str) -> Option<Node> {
        let removed = match self {
            Children::None => None,
            Children::Small(nodes) => {
                let index = nodes.iter().position(|node| head(&node.label) == level)?;
                Some(nodes.swap_remove(index))
            }
            Children::Large(large) => {
                let (hasher, table) = &mut **large;
                let entry =
                    table.find_entry(hasher.hash_one(level), |node| head(&node.label) == level).ok()?;
                Some(entry.remove().0)
            }
        };
        if self.is_empty() {
            *self = Children::None;
        }
        removed
    }

    /// Takes the only child out.
    fn take_only(&mut self) -> Option<Node> {
        if self.len() != 1 {
            return None;
        }
        match std::mem::take(self) {
            Children::None => None,
            Children::Small(mut nodes) => nodes.pop(),
            Children::Large(large) => large.1.into_iter().next(),
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = &Node> + '_> {
        match self {
            Children::None => Box::new(std::iter::empty()),
            Children::Small(nodes) => Box::new(nodes.iter()),
            Children::Large(large) => Box::new(large.1.iter()),
        }
    }
}

#[derive(Debug, Default)]
struct Node {
    /// This node's levels below its parent's, joined by `/` (the root's is
    /// empty and never read).
    label: Box<str>,
    children: Children,
    /// Nodes subscribed to the filter that ends here.
    ids: Ids,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.ids.is_empty()
    }

    /// Sets the ids of the filter `levels` below this node; returns how the
    /// number of filters held changed (-1, 0 or 1).
    fn set(&mut self, levels: &[&str], ids: &[u64]) -> isize {
        let Some(first) = levels.first() else {
            let before = !self.ids.is_empty();
            self.ids = Ids::new(ids);
            return (!self.ids.is_empty()) as isize - before as isize;
        };
        let Some(child) = self.children.get_mut(first) else {
            if ids.is_empty() {
                return 0;
            }
            self.children.insert(Node {
                label: levels.join("/").into(),
                children: Children::None,
                ids: Ids::new(ids),
            });
            return 1;
        };
        let label_levels = child.label.split('/').count();
        let common = child.label.split('/').zip(levels).take_while(|(have, want)| have == *want).count();
        if common < label_levels {
            if ids.is_empty() {
                // The filter ends inside this chain or leaves it: not held.
                return 0;
            }
            child.split(common);
        }
        let delta = child.set(&levels[common..], ids);
        if child.is_empty() {
            self.children.remove(first);
        } else {
            child.merge_chain();
        }
        delta
    }

    /// Keeps the first `levels` levels of the label here and moves the rest,
    /// with the children and ids, to a single child.
    fn split(&mut self, levels: usize) {
        let Some((cut, _)) = self.label.match_indices('/').nth(levels.saturating_sub(1)) else { return };
        let rest = Node {
            label: self.label[cut + 1..].into(),
            children: std::mem::take(&mut self.children),
            ids: std::mem::take(&mut self.ids),
        };
        self.label = self.label[..cut].into();
        self.children.insert(rest);
    }

    /// Merges the only child into this node when this one holds no ids.
    fn merge_chain(&mut self) {
        if !self.ids.is_empty() || self.children.len() != 1 {
            return;
        }
        if let Some(only) = self.children.take_only() {
            self.label = format!("{}/{}", self.label, only.label).into();
            self.children = only.children;
            self.ids = only.ids;
        }
    }
}

/// Remote routes: topic filter → data-plane nodes.
#[derive(Debug, Default)]
pub struct RouteTable {
    root: RwLock<Node>,
    filters: AtomicUsize,
}

impl RouteTable {
    pub fn new() -> RouteTable {
        RouteTable::default()
    }

    /// Filters held.
    pub fn len(&self) -> usize {
        self.filters.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets the nodes subscribing to `filter`; none removes it.
    pub fn set(&self, filter: &str, nodes: &[u64]) {
        let levels: Vec<&str> = filter.split('/').collect();
        let delta = self.root.write().set(&levels, nodes);
        match delta {
            1 => {
                self.filters.fetch_add(1, Ordering::Relaxed);
            }
            -1 => {
                self.filters.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Replaces everything with `routes` (a snapshot): built aside, then
    /// swapped in, so publishes wait only for the swap.
    pub fn replace<'a>(&self, routes: impl IntoIterator<Item = (&'a str, &'a [u64])>) {
        self.replace_without(routes, None);
    }

    /// As [`RouteTable::replace`], leaving `without` out of every route (a
    /// node does not keep its own routes here: its router holds them).
    pub fn replace_without<'a>(
        &self,
        routes: impl IntoIterator<Item = (&'a str, &'a [u64])>,
        without: Option<u64>,
    ) {
        let mut fresh = Node::default();
        let mut count = 0usize;
        let mut kept = Vec::new();
        for (filter, nodes) in routes {
            kept.clear();
            kept.extend(nodes.iter().copied().filter(|node| Some(*node) != without));
            if kept.is_empty() {
                continue;
            }
            let levels: Vec<&str> = filter.split('/').collect();
            if fresh.set(&levels, &kept) > 0 {
                count += 1;
            }
        }
        let old = std::mem::replace(&mut *self.root.write(), fresh);
        self.filters.store(count, Ordering::Relaxed);
        // Freed after the lock is released.
        drop(old);
    }

    /// Adds to `out` (once each) the nodes other than `me` with a filter
    /// matching `topic`. Topics starting with `$` are not matched by filters
    /// starting with a wildcard.
    pub fn nodes_for(&self, topic: &str, me: u64, out: &mut Vec<u64>) {
        if self.is_empty() {
            return;
        }
        let levels: Vec<&str> = topic.split('/').collect();
        let dollar = topic.starts_with('$');
        collect(&self.root.read(), &levels, 0, dollar, out);
        out.retain(|&node| node != me);
        out.sort_unstable();
        out.dedup();
    }

    /// Every filter that `node` is listed for.
    pub fn filters_of(&self, node: u64) -> HashSet<String> {
        fn walk(at: &Node, path: &mut String, node: u64, out: &mut HashSet<String>) {
            if at.ids.as_slice().contains(&node) {
                out.insert(path.clone());
            }
            for child in at.children.iter() {
                let len = path.len();
                path.push('/');
                path.push_str(&child.label);
                walk(child, path, node, out);
                path.truncate(len);
            }
        }
        let mut out = HashSet::new();
        let root = self.root.read();
        for child in root.children.iter() {
            let mut path = child.label.to_string();
            walk(child, &mut path, node, &mut out);
        }
        out
    }

    /// Whether `node` is listed for exactly `filter`.
    pub fn has(&self, filter: &str, node: u64) -> bool {
        let levels: Vec<&str> = filter.split('/').collect();
        let root = self.root.read();
        let mut at = &*root;
        let mut depth = 0;
        while depth < levels.len() {
            let Some(child) = at.children.get(levels[depth]) else { return false };
            for level in child.label.split('/') {
                if levels.get(depth) != Some(&level) {
                    return false;
                }
                depth += 1;
            }
            at = child;
        }
        at.ids.as_slice().contains(&node)
    }
}

/// Adds the ids of filters below `at` matching `topic[depth..]`; `at`'s
/// own levels matched `topic[..depth]`.
fn collect(at: &Node, topic: &[&str], depth: usize, dollar: bool, out: &mut Vec<u64>) {
    let wildcards = !(depth == 0 && dollar);
    if wildcards {
        if let Some(hash) = at.children.get("#") {
            out.extend_from_slice(hash.ids.as_slice());
        }
    }
    if depth == topic.len() {
        out.extend_from_slice(at.ids.as_slice());
        return;
    }
    if let Some(child) = at.children.get(topic[depth]) {
        descend(child, topic, depth, dollar, out);
    }
    if wildcards {
        if let Some(plus) = at.children.get("+") {
            descend(plus, topic, depth, dollar, out);
        }
    }
}

/// `child`'s first level matched `topic[depth]`; matches the rest of its
/// label, then goes on below it.
fn descend(child: &Node, topic: &[&str], depth: usize, dollar: bool, out: &mut Vec<u64>) {
    let mut depth = depth + 1;
    for level in child.label.split('/').skip(1) {
        if level == "#" {
            // `#` ends a filter and matches what is left, even nothing.
            out.extend_from_slice(child.ids.as_slice());
            return;
        }
        match topic.get(depth) {
            Some(name) if level == "+" || level == *name => depth += 1,
            _ => return,
        }
    }
    collect(child, topic, depth, dollar, out);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::topic::matches;

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("".to_string()),
            Just("$x".to_string())
        ]
    }

    fn topic() -> impl Strategy<Value = String> {
        proptest::collection::vec(level(), 1..5).prop_map(|levels| levels.join("/"))
    }

    fn filter() -> impl Strategy<Value = String> {
        let level = prop_oneof![level(), Just("+".to_string())];
        (proptest::collection::vec(level, 1..5), any::<bool>()).prop_map(|(mut levels, hash)| {
            if hash {
                levels.push("#".into());
            }
            levels.join("/")
        })
    }

    proptest! {
        /// The trie finds exactly the nodes whose filters the naive matcher
        /// says match, after adds and removes.
        #[test]
        fn nodes_agree_with_the_naive_matcher(
            routes in proptest::collection::vec((filter(), 1u64..5), 1..20),
            removed in proptest::collection::vec(any::<prop::sample::Index>(), 0..5),
            topic in topic(),
        ) {
            let table = RouteTable::new();
            let mut model: std::collections::HashMap<String, BTreeSet<u64>> = Default::default();
            for (filter, node) in &routes {
                let nodes = model.entry(filter.clone()).or_default();
                nodes.insert(*node);
                table.set(filter, &nodes.iter().copied().collect::<Vec<_>>());
            }
            for index in removed {
                let filter = &routes[index.index(routes.len())].0;
                model.remove(filter);
                table.set(filter, &[]);
            }
            prop_assert_eq!(table.len(), model.len());
            check_shape(&table.root.read(), true);
            for (filter, nodes) in &model {
                for node in nodes {
                    prop_assert!(table.has(filter, *node), "{} of {}", filter, node);
                }
            }
            for node in 1u64..5 {
                let want: HashSet<String> =
                    model.iter().filter(|(_, nodes)| nodes.contains(&node)).map(|(f, _)| f.clone()).collect();
                prop_assert_eq!(table.filters_of(node), want);
            }
            let mut got = Vec::new();
            table.nodes_for(&topic, 0, &mut got);
            let expected: BTreeSet<u64> = model
                .iter()
                .filter(|(f, _)| matches(f, &topic))
                .flat_map(|(_, nodes)| nodes.iter().copied())
                .collect();
            prop_assert_eq!(got, expected.into_iter().collect::<Vec<_>>());
        }
    }

    /// Siblings differ in their first level, and a node other than the root
    /// holds ids or branches.
    fn check_shape(node: &Node, root: bool) {
        if !root {
            assert!(
                !node.ids.is_empty() || node.children.len() >= 2,
                "chain left unmerged at {:?}",
                node.label
            );
        }
        let heads: Vec<&str> = node.children.iter().map(|child| head(&child.label)).collect();
        let distinct: HashSet<&str> = heads.iter().copied().collect();
        assert_eq!(heads.len(), distinct.len(), "siblings share a first level under {:?}", node.label);
        for child in node.children.iter() {
            check_shape(child, false);
        }
    }

    #[test]
    fn chains_are_one_node_and_split_and_merge_back() {
        let table = RouteTable::new();
        table.set("devices/d1/+/cmd", &[1]);
        table.set("devices/d2/+/cmd", &[2]);
        {
            let root = table.root.read();
            let devices = root.children.get("devices").expect("devices");
            assert_eq!(&*devices.label, "devices");
            let d1 = devices.children.get("d1").expect("d1");
            assert_eq!(&*d1.label, "d1/+/cmd", "one node for the chain");
        }
        // A filter ending inside a chain splits it; one leaving it too.
        table.set("devices/d1", &[3]);
        table.set("devices/d1/x/cmd", &[4]);
        let mut out = Vec::new();
        table.nodes_for("devices/d1/x/cmd", 0, &mut out);
        assert_eq!(out, vec![1, 4]);
        out.clear();
        table.nodes_for("devices/d1", 0, &mut out);
        assert_eq!(out, vec![3]);
        // Removing what is inside a chain or below its end holds nothing.
        table.set("devices/d2/+", &[]);
        table.set("devices/d2/+/cmd/more", &[]);
        assert_eq!(table.len(), 4);
        table.set("devices/d1", &[]);
        table.set("devices/d1/x/cmd", &[]);
        check_shape(&table.root.read(), true);
        let root = table.root.read();
        let d1 = root.children.get("devices").and_then(|d| d.children.get("d1")).expect("d1");
        assert_eq!(&*d1.label, "d1/+/cmd", "merged back");
    }

    #[test]
    fn many_siblings_move_to_a_hash_table_and_back_out() {
        let table = RouteTable::new();
        for k in 0..100 {
            table.set(&format!("f/dev{k}/+/s"), &[k % 3 + 1]);
        }
        assert!(matches!(table.root.read().children.get("f").map(|f| &f.children), Some(Children::Large(_))));
        for k in 0..100 {
            let mut out = Vec::new();
            table.nodes_for(&format!("f/dev{k}/x/s"), 0, &mut out);
            assert_eq!(out, vec![k % 3 + 1]);
        }
        for k in 0..100 {
            table.set(&format!("f/dev{k}/+/s"), &[]);
        }
        assert!(table.is_empty() && table.root.read().is_empty());
    }

    #[test]
    fn own_node_is_left_out_and_removal_prunes() {
        let table = RouteTable::new();
        table.set("a/+/c", &[1, 2]);
        table.set("a/#", &[3]);
        let mut out = Vec::new();
        table.nodes_for("a/b/c", 2, &mut out);
        assert_eq!(out, vec![1, 3]);
        assert_eq!(table.filters_of(3), HashSet::from(["a/#".to_string()]));
        assert!(table.has("a/+/c", 1) && !table.has("a/+", 1));
        table.set("a/+/c", &[]);
        table.set("a/#", &[]);
        assert!(table.is_empty());
        assert!(table.root.read().is_empty(), "empty levels are pruned");
        table.replace([("x/y", &[4u64][..]), ("x/+", &[5u64][..])]);
        assert_eq!(table.len(), 2);
        out.clear();
        table.nodes_for("x/y", 0, &mut out);
        assert_eq!(out, vec![4, 5]);
    }

    #[test]
    fn a_snapshot_without_this_node_keeps_only_the_others() {
        let table = RouteTable::new();
        table.replace_without([("mine", &[7u64][..]), ("both", &[4, 7][..]), ("theirs", &[4][..])], Some(7));
        assert_eq!(table.len(), 2, "a route of this node alone is not held");
        assert!(table.filters_of(7).is_empty());
        assert!(table.has("both", 4) && table.has("theirs", 4) && !table.has("mine", 4));
    }
}
