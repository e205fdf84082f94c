//! A bounded two-generation cache: the store's answer to "keep decoded rows in memory, but
//! not all of them".
//!
//! New entries go into the hot map. When it reaches its capacity, it becomes the cold map
//! (the old cold map is dropped) and a new hot map starts; a hit in the cold map moves the
//! entry back to the hot one. So at most `2 × capacity` entries are held, entries used since
//! the last swap survive it, and no per-entry bookkeeping (LRU lists, timestamps) is needed.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

#[derive(Debug)]
pub(crate) struct GenCache<K, V> {
    hot: HashMap<K, V>,
    cold: HashMap<K, V>,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone> GenCache<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        GenCache {
            hot: HashMap::new(),
            cold: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn get<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(v) = self.hot.get(key) {
            return Some(v.clone());
        }
        let (k, v) = self.cold.remove_entry(key)?;
        self.insert(k, v.clone());
        Some(v)
    }

    pub(crate) fn insert(&mut self, key: K, value: V) {
        if self.hot.len() >= self.capacity {
            self.cold = std::mem::take(&mut self.hot);
        }
        self.hot.insert(key, value);
    }

    pub(crate) fn clear(&mut self) {
        self.hot.clear();
        self.cold.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.hot.len() + self.cold.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_at_most_two_generations_and_keeps_recently_used_entries() {
        let mut c = GenCache::new(2);
        c.insert(1, "a");
        c.insert(2, "b");
        c.insert(3, "c"); // 1 and 2 go cold
        assert_eq!(c.get(&1), Some("a")); // back to hot
        c.insert(4, "d"); // hot was {3, 1}: it goes cold, 2 is dropped
        assert_eq!(c.get(&2), None);
        assert_eq!(c.get(&1), Some("a"));
        assert!(c.len() <= 4);
    }
}
