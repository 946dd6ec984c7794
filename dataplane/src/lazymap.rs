//! `LazyMap`: an ordered map that costs one pointer while empty.
//!
//! A session's in-flight messages and its QoS 2 messages awaiting PUBREL
//! are empty for nearly all of a connection's life, yet every session (and
//! every hibernating connection's slot) carries both. A `BTreeMap` is three
//! words even when empty; this is one, the map boxed on the first insert
//! and freed again when the last entry goes.

use std::collections::btree_map;
use std::collections::BTreeMap;

/// A `BTreeMap` boxed while it holds anything, nothing otherwise.
/// Invariant: `Some` only while not empty.
#[derive(Debug, Clone)]
// Boxed on purpose: an empty map is one word instead of a `BTreeMap`'s three.
#[allow(clippy::box_collection)]
pub struct LazyMap<K, V>(Option<Box<BTreeMap<K, V>>>);

impl<K, V> Default for LazyMap<K, V> {
    fn default() -> Self {
        LazyMap(None)
    }
}

impl<K: Ord, V> LazyMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |map| map.len())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.0.as_ref()?.get(key)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.0.as_mut()?.get_mut(key)
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.0.get_or_insert_with(Default::default).insert(key, value)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let map = self.0.as_mut()?;
        let removed = map.remove(key);
        if map.is_empty() {
            self.0 = None;
        }
        removed
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.0.iter().flat_map(|map| map.iter())
    }

    /// Values in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.0.iter().flat_map(|map| map.values())
    }
}

impl<K, V> IntoIterator for LazyMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::iter::Flatten<std::option::IntoIter<btree_map::IntoIter<K, V>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.map(|map| map.into_iter()).into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_word_and_freed_when_emptied() {
        assert_eq!(std::mem::size_of::<LazyMap<u16, String>>(), std::mem::size_of::<usize>());
        let mut map = LazyMap::new();
        assert!(map.is_empty() && map.get(&1).is_none() && map.remove(&1).is_none());
        assert_eq!(map.insert(3u16, "c"), None);
        assert_eq!(map.insert(1, "a"), None);
        assert_eq!(map.insert(3, "C"), Some("c"));
        assert_eq!(map.len(), 2);
        assert!(map.contains_key(&1) && !map.contains_key(&2));
        *map.get_mut(&1).unwrap() = "A";
        assert_eq!(map.iter().collect::<Vec<_>>(), vec![(&1, &"A"), (&3, &"C")], "key order");
        assert_eq!(map.values().copied().collect::<Vec<_>>(), vec!["A", "C"]);
        assert_eq!(map.remove(&1), Some("A"));
        assert!(!map.is_empty());
        assert_eq!(map.remove(&3), Some("C"));
        assert!(map.is_empty() && map.0.is_none(), "the box is freed with the last entry");
        map.insert(7, "g");
        assert_eq!(map.into_iter().collect::<Vec<_>>(), vec![(7, "g")]);
    }
}
