//! `SmallMap`: a map for the collections that are tiny nearly always (a
//! topic level's children, a filter's subscribers, a session's
//! subscriptions) but must stay fast when one is huge.
//!
//! Up to [`SMALL`] entries live in a vector grown one entry at a time, so
//! one entry costs one entry and a lookup is a short scan; past that the
//! entries move to a `HashMap`, boxed so that the small form stays small.
//! Invariant: keys are unique in either form. Iteration order is
//! unspecified, as with a `HashMap`.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// Entries kept in the vector form.
pub const SMALL: usize = 8;

/// A map that is a vector while small.
#[derive(Debug, Clone)]
pub enum SmallMap<K, V> {
    Small(Vec<(K, V)>),
    // Boxed on purpose: a small map (the common case) stays one pointer
    // and a length wide instead of a `HashMap`'s six words.
    #[allow(clippy::box_collection)]
    Large(Box<HashMap<K, V>>),
}

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        SmallMap::Small(Vec::new())
    }
}

impl<K: Eq + Hash, V> SmallMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        match self {
            SmallMap::Small(entries) => entries.len(),
            SmallMap::Large(map) => map.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        match self {
            SmallMap::Small(entries) => entries.iter().find(|(k, _)| k.borrow() == key).map(|(_, v)| v),
            SmallMap::Large(map) => map.get(key),
        }
    }

    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        match self {
            SmallMap::Small(entries) => entries.iter_mut().find(|(k, _)| k.borrow() == key).map(|(_, v)| v),
            SmallMap::Large(map) => map.get_mut(key),
        }
    }

    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some(slot) = self.get_mut(&key) {
            return Some(std::mem::replace(slot, value));
        }
        self.get_or_insert_with(key, || value);
        None
    }

    /// The value of `key`, inserting `make()` first if there is none.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        if let SmallMap::Small(entries) = self {
            if entries.len() >= SMALL && !entries.iter().any(|(k, _)| *k == key) {
                let map: HashMap<K, V> = std::mem::take(entries).into_iter().collect();
                *self = SmallMap::Large(Box::new(map));
            }
        }
        match self {
            SmallMap::Small(entries) => {
                let index = match entries.iter().position(|(k, _)| *k == key) {
                    Some(index) => index,
                    None => {
                        entries.reserve_exact(1);
                        entries.push((key, make()));
                        entries.len() - 1
                    }
                };
                &mut entries[index].1
            }
            SmallMap::Large(map) => map.entry(key).or_insert_with(make),
        }
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        match self {
            SmallMap::Small(entries) => {
                let index = entries.iter().position(|(k, _)| k.borrow() == key)?;
                let (_, value) = entries.swap_remove(index);
                if entries.is_empty() {
                    *entries = Vec::new();
                }
                Some(value)
            }
            SmallMap::Large(map) => map.remove(key),
        }
    }

    pub fn clear(&mut self) {
        *self = SmallMap::default();
    }

    pub fn iter(&self) -> Iter<'_, K, V> {
        match self {
            SmallMap::Small(entries) => Iter::Small(entries.iter()),
            SmallMap::Large(map) => Iter::Large(map.iter()),
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> + '_ {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.iter().map(|(_, v)| v)
    }
}

/// The entries of a [`SmallMap`], in no particular order.
pub enum Iter<'a, K, V> {
    Small(std::slice::Iter<'a, (K, V)>),
    Large(std::collections::hash_map::Iter<'a, K, V>),
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Small(entries) => entries.next().map(|(k, v)| (k, v)),
            Iter::Large(entries) => entries.next(),
        }
    }
}

impl<'a, K: Eq + Hash, V> IntoIterator for &'a SmallMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Iter<'a, K, V> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_map_across_the_switch_to_a_hash_map() {
        let mut small: SmallMap<u32, u32> = SmallMap::new();
        let mut reference = HashMap::new();
        for round in 0..3u32 {
            for key in 0..(SMALL as u32 * 3) {
                assert_eq!(small.insert(key, key + round), reference.insert(key, key + round));
                assert_eq!(small.len(), reference.len());
            }
            for key in (0..(SMALL as u32 * 3)).step_by(2) {
                assert_eq!(small.remove(&key), reference.remove(&key));
            }
            *small.get_or_insert_with(1000 + round, || 7) += 1;
            *reference.entry(1000 + round).or_insert(7) += 1;
            let mut got: Vec<_> = small.iter().map(|(k, v)| (*k, *v)).collect();
            let mut want: Vec<_> = reference.iter().map(|(k, v)| (*k, *v)).collect();
            got.sort();
            want.sort();
            assert_eq!(got, want);
        }
        small.clear();
        assert!(small.is_empty());
    }

    #[test]
    fn a_small_map_grows_one_entry_at_a_time() {
        let mut small: SmallMap<u8, [u8; 40]> = SmallMap::new();
        small.insert(1, [0; 40]);
        match &small {
            SmallMap::Small(entries) => assert_eq!(entries.capacity(), 1),
            SmallMap::Large(_) => panic!("one entry is small"),
        }
        for key in 2..=(SMALL as u8 + 1) {
            *small.get_or_insert_with(key, || [key; 40]) = [key; 40];
        }
        assert!(matches!(small, SmallMap::Large(_)), "past {SMALL} entries it is a hash map");
        assert_eq!(small.get(&(SMALL as u8 + 1)), Some(&[SMALL as u8 + 1; 40]));
    }
}
