//! A list of an address's links, found by connection and link in O(1).
//!
//! An address with thousands of producers (a fan-in of devices) looked
//! each one up by scanning the list: at every grant, every delivery routed
//! and every removal. With 10,000 senders attaching beside a consumer
//! that made attaching quadratic (benches/RESULTS.md, "Senders on one
//! shared address").

use std::ops::{Deref, DerefMut};

use ferry_proto::engine::LinkId;
use foldhash::{HashMap, HashMapExt};

use super::message::ConnId;

/// What identifies a link on this router.
pub type LinkKey = (ConnId, LinkId);

/// Something kept in a [`ByLink`] list: its key never changes.
pub trait Keyed {
    fn key(&self) -> LinkKey;
}

/// Items in no particular order (removal moves the last into the gap),
/// with an index from each item's key to its place. Iterated and changed
/// in place as a slice; an item's key must not change while it is in.
#[derive(Debug)]
pub struct ByLink<T> {
    items: Vec<T>,
    index: HashMap<LinkKey, usize>,
}

impl<T> Default for ByLink<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<T: Keyed> ByLink<T> {
    /// Adds an item; one already there with the same key is replaced, and
    /// returned.
    pub fn push(&mut self, item: T) -> Option<T> {
        match self.index.get(&item.key()) {
            Some(&i) => Some(std::mem::replace(&mut self.items[i], item)),
            None => {
                self.index.insert(item.key(), self.items.len());
                self.items.push(item);
                None
            }
        }
    }

    /// Where the item with `key` is.
    pub fn position(&self, key: LinkKey) -> Option<usize> {
        self.index.get(&key).copied()
    }

    /// The item with `key`.
    pub fn get_mut(&mut self, key: LinkKey) -> Option<&mut T> {
        let i = self.position(key)?;
        Some(&mut self.items[i])
    }

    /// Takes out the item with `key`; the last item takes its place.
    pub fn remove(&mut self, key: LinkKey) -> Option<T> {
        let i = self.index.remove(&key)?;
        let gone = self.items.swap_remove(i);
        if let Some(moved) = self.items.get(i) {
            self.index.insert(moved.key(), i);
        }
        Some(gone)
    }
}

impl<T> Deref for ByLink<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.items
    }
}

impl<T> DerefMut for ByLink<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Item(u64, u64);

    impl Keyed for Item {
        fn key(&self) -> LinkKey {
            (ConnId(self.0), LinkId::from_raw(self.1))
        }
    }

    fn key(c: u64, l: u64) -> LinkKey {
        (ConnId(c), LinkId::from_raw(l))
    }

    #[test]
    fn an_item_removed_leaves_every_other_found_where_it_is() {
        let mut list = ByLink::default();
        for c in 0..5 {
            list.push(Item(c, 7));
        }
        assert_eq!(list.remove(key(1, 7)), Some(Item(1, 7)));
        assert_eq!(list.remove(key(1, 7)), None);
        assert_eq!(list.len(), 4);
        for c in [0, 2, 3, 4] {
            let i = list.position(key(c, 7)).expect("still in");
            assert_eq!(list[i], Item(c, 7));
        }
        assert_eq!(list.remove(key(4, 7)), Some(Item(4, 7)));
        assert_eq!(list.get_mut(key(3, 7)), Some(&mut Item(3, 7)));
        assert_eq!(list.position(key(4, 7)), None);
    }

    #[test]
    fn the_same_link_pushed_twice_is_kept_once() {
        let mut list = ByLink::default();
        assert_eq!(list.push(Item(1, 1)), None);
        assert_eq!(list.push(Item(1, 1)), Some(Item(1, 1)));
        assert_eq!(list.push(Item(1, 2)), None);
        assert_eq!(list.len(), 2);
    }
}
