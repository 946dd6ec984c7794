//! The cluster's routes as this node reads them on every publish: which
//! other data-plane nodes have subscribers for a topic.
//!
//! A trie over topic levels (as the local `router`), each filter's node
//! holding the ids of the nodes that subscribe to it. Matching a topic walks
//! the trie, not the table, and applying a route change touches only that
//! filter's path, so a change costs the change whatever the table's size.
//! A snapshot is built aside and swapped in. Publishes only take the read
//! side of the lock; the link's task is the only writer.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;

use crate::smallmap::SmallMap;

#[derive(Debug, Default)]
struct Level {
    children: SmallMap<Box<str>, Level>,
    /// Nodes with subscribers to the filter that ends here (a handful).
    nodes: Vec<u64>,
}

impl Level {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.nodes.is_empty()
    }

    /// Sets the nodes of `levels` below this level; returns how the number of
    /// filters held changed (-1, 0 or 1).
    fn set(&mut self, levels: &[&str], nodes: &[u64]) -> isize {
        match levels.split_first() {
            None => {
                let before = !self.nodes.is_empty();
                self.nodes.clear();
                self.nodes.extend_from_slice(nodes);
                self.nodes.sort_unstable();
                self.nodes.dedup();
                self.nodes.shrink_to_fit();
                (!self.nodes.is_empty()) as isize - before as isize
            }
            Some((first, rest)) => {
                if nodes.is_empty() {
                    let Some(child) = self.children.get_mut(*first) else { return 0 };
                    let delta = child.set(rest, nodes);
                    if child.is_empty() {
                        self.children.remove(*first);
                    }
                    delta
                } else {
                    self.children.get_or_insert_with((*first).into(), Level::default).set(rest, nodes)
                }
            }
        }
    }
}

/// Remote routes: topic filter → data-plane nodes.
#[derive(Debug, Default)]
pub struct RouteTable {
    root: RwLock<Level>,
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
        let mut fresh = Level::default();
        let mut count = 0usize;
        for (filter, nodes) in routes {
            let levels: Vec<&str> = filter.split('/').collect();
            if fresh.set(&levels, nodes) > 0 {
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
        fn walk(level: &Level, path: &mut Vec<String>, node: u64, out: &mut HashSet<String>) {
            if level.nodes.contains(&node) {
                out.insert(path.join("/"));
            }
            for (name, child) in &level.children {
                path.push(name.to_string());
                walk(child, path, node, out);
                path.pop();
            }
        }
        let mut out = HashSet::new();
        walk(&self.root.read(), &mut Vec::new(), node, &mut out);
        out
    }

    /// Whether `node` is listed for exactly `filter`.
    pub fn has(&self, filter: &str, node: u64) -> bool {
        let root = self.root.read();
        let mut level = &*root;
        for name in filter.split('/') {
            match level.children.get(name) {
                Some(child) => level = child,
                None => return false,
            }
        }
        level.nodes.contains(&node)
    }
}

fn collect(level: &Level, levels: &[&str], depth: usize, dollar: bool, out: &mut Vec<u64>) {
    let wildcards = !(depth == 0 && dollar);
    if wildcards {
        if let Some(hash) = level.children.get("#") {
            out.extend_from_slice(&hash.nodes);
        }
    }
    if depth == levels.len() {
        out.extend_from_slice(&level.nodes);
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
}
