//! A bounded memo of symbolization results.
//!
//! Eviction is deliberately the simplest that bounds memory: when an insert would exceed
//! the capacity, the whole map is cleared first. Profiles are dominated by a small hot set
//! of addresses, which refills within a few samples after a clear, so the hit rate of an
//! LRU would be barely higher while every hit would pay for recency bookkeeping. Clears
//! are counted so an undersized cache shows up in the stats.

use hashbrown::HashMap;
use std::hash::Hash;

/// A map of at most `capacity` entries that is emptied when it would overflow.
#[derive(Debug)]
pub(crate) struct Memo<K, V> {
    map: HashMap<K, V>,
    capacity: usize,
}

impl<K: Hash + Eq, V> Memo<K, V> {
    /// An empty memo; a capacity of 0 disables memoization.
    pub(crate) fn new(capacity: usize) -> Self {
        Memo {
            map: HashMap::new(),
            capacity,
        }
    }

    /// The memoized value for `key`.
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    /// Memoizes `value`; returns whether the memo had to be cleared to make room.
    pub(crate) fn insert(&mut self, key: K, value: V) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let cleared = self.map.len() >= self.capacity && !self.map.contains_key(&key);
        if cleared {
            self.map.clear();
        }
        self.map.insert(key, value);
        cleared
    }

    /// Forgets everything (names that may have changed: a debug file arrived).
    pub(crate) fn clear(&mut self) {
        self.map.clear();
    }

    /// The number of memoized entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clears_when_full_and_never_exceeds_capacity() {
        let mut memo = Memo::new(2);
        assert!(!memo.insert(1, "a"));
        assert!(!memo.insert(2, "b"));
        // Replacing an existing key needs no room.
        assert!(!memo.insert(2, "B"));
        assert_eq!(memo.get(&2), Some(&"B"));
        assert!(memo.insert(3, "c"));
        assert_eq!(memo.len(), 1);
        assert_eq!(memo.get(&1), None);
        assert_eq!(memo.get(&3), Some(&"c"));
    }

    #[test]
    fn zero_capacity_disables_memoization() {
        let mut memo = Memo::new(0);
        assert!(!memo.insert(1, 1));
        assert_eq!(memo.get(&1), None);
    }
}
