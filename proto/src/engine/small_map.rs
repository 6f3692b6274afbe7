//! The map of per-connection tables: the engine's sessions, channels,
//! link handles and links, and the router's links of a connection. Most
//! connections hold one or two entries in each (a device's one session
//! and one link), a router's connections to its neighbours thousands. A
//! hash map allocates room for at least three entries and a control
//! block: up to [`FEW`] entries live in a vector searched in order instead
//! (one allocation of what it holds); past that the map is a hash map,
//! and it is a vector again once it holds [`FEW`]` / 4` or fewer (the
//! hysteresis keeps a map that hovers at the boundary from converting at
//! every insert and remove).

use std::hash::Hash;
use std::ops::Index;

use foldhash::{HashMap, HashMapExt};

/// Entries kept in the vector at most.
const FEW: usize = 8;

/// A map, small or large (see the module docs).
#[derive(Debug)]
pub enum SmallMap<K, V> {
    /// In insertion order.
    Few(Vec<(K, V)>),
    /// Boxed: the small form is the common one, and stays 24 bytes.
    Many(Box<HashMap<K, V>>),
}

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        Self::Few(Vec::new())
    }
}

impl<K: Copy + Eq + Hash, V> SmallMap<K, V> {
    /// An empty map (allocates nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        match self {
            Self::Few(v) => v.len(),
            Self::Many(m) => m.len(),
        }
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value under `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        match self {
            Self::Few(v) => v.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            Self::Many(m) => m.get(key),
        }
    }

    /// The value under `key`, to change.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        match self {
            Self::Few(v) => v.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            Self::Many(m) => m.get_mut(key),
        }
    }

    /// Whether a value is under `key`.
    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Inserts `value` under `key`; returns the value it replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self {
            Self::Few(v) => {
                if let Some((_, old)) = v.iter_mut().find(|(k, _)| *k == key) {
                    return Some(std::mem::replace(old, value));
                }
                if v.len() < FEW {
                    if v.capacity() == 0 {
                        v.reserve_exact(1);
                    }
                    v.push((key, value));
                    return None;
                }
                let mut m = HashMap::with_capacity(2 * FEW);
                m.extend(v.drain(..));
                m.insert(key, value);
                *self = Self::Many(Box::new(m));
                None
            }
            Self::Many(m) => m.insert(key, value),
        }
    }

    /// Takes the value under `key` out.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        match self {
            Self::Few(v) => {
                let i = v.iter().position(|(k, _)| k == key)?;
                Some(v.remove(i).1)
            }
            Self::Many(m) => {
                let old = m.remove(key);
                if m.len() <= FEW / 4 {
                    *self = Self::Few(m.drain().collect());
                }
                old
            }
        }
    }

    /// The keys, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }

    /// The values, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    /// The entries, in no particular order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        match self {
            Self::Few(v) => Iter(IterOf::Few(v.iter())),
            Self::Many(m) => Iter(IterOf::Many(m.iter())),
        }
    }

    /// Empties the map; returns what it held.
    pub fn drain(&mut self) -> std::vec::IntoIter<(K, V)> {
        match std::mem::take(self) {
            Self::Few(v) => v.into_iter(),
            Self::Many(m) => m.into_iter().collect::<Vec<_>>().into_iter(),
        }
    }

    /// Empties the map and gives back its room.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Gives back room a large map no longer needs (see
    /// [`shrink_sparse`](super::shrink_sparse)).
    pub fn shrink_sparse(&mut self) {
        if let Self::Many(m) = self {
            super::shrink_sparse(m);
        }
    }
}

/// The entries of a [`SmallMap`], in no particular order.
pub struct Iter<'a, K, V>(IterOf<'a, K, V>);

enum IterOf<'a, K, V> {
    Few(std::slice::Iter<'a, (K, V)>),
    Many(std::collections::hash_map::Iter<'a, K, V>),
}

impl<'a, K: Copy + Eq + Hash, V> IntoIterator for &'a SmallMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            IterOf::Few(i) => i.next().map(|(k, v)| (k, v)),
            IterOf::Many(i) => i.next(),
        }
    }
}

impl<K: Copy + Eq + Hash, V> Index<&K> for SmallMap<K, V> {
    type Output = V;

    fn index(&self, key: &K) -> &V {
        self.get(key).expect("no entry for the key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_grows_into_a_hash_map_and_shrinks_back() {
        let mut m = SmallMap::new();
        assert!(m.insert(1u32, "a").is_none());
        assert!(matches!(&m, SmallMap::Few(v) if v.capacity() == 1));
        assert_eq!(m.insert(1, "b"), Some("a"));
        for k in 2..=100 {
            m.insert(k, "x");
        }
        assert!(matches!(m, SmallMap::Many(_)));
        assert_eq!(m.len(), 100);
        assert_eq!(m[&1], "b");
        for k in 3..=100 {
            assert_eq!(m.remove(&k), Some("x"));
        }
        assert!(matches!(m, SmallMap::Few(_)));
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(&2), Some(&"x"));
        assert!(m.contains_key(&1) && !m.contains_key(&3));
        let mut drained: Vec<_> = m.drain().collect();
        drained.sort();
        assert_eq!(drained, [(1, "b"), (2, "x")]);
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn a_few_entries_keep_their_order() {
        let mut m = SmallMap::new();
        for k in [5u16, 3, 9] {
            m.insert(k, ());
        }
        m.remove(&3);
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), [5, 9]);
    }
}
