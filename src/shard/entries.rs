//! The shard's slab of what serves each connection, keyed by the engine's
//! tag (the io_uring owner key too). Keys are handed out lowest first and
//! the free tail is cut off, so the slab's memory goes back after a peak
//! (see [`lastack_core::slots`]; the `slab` crate reuses the last key freed
//! and keeps its peak length).

use lastack_core::slots::{cut_free_tail, LowestFree};

/// Entries by key.
#[derive(Debug)]
pub(super) struct Entries<T> {
    slots: Vec<Option<T>>,
    free: LowestFree,
    len: usize,
}

impl<T> Default for Entries<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: LowestFree::default(),
            len: 0,
        }
    }
}

impl<T> Entries<T> {
    /// The key the next [`Entries::insert`] takes.
    pub fn vacant_key(&mut self) -> usize {
        let slots = &self.slots;
        match self
            .free
            .lowest(slots.len(), |i| slots[i as usize].is_none())
        {
            Some(key) => key as usize,
            None => self.slots.len(),
        }
    }

    /// Stores `value` at `key`, which [`Entries::vacant_key`] gave.
    pub fn insert(&mut self, key: usize, value: T) -> &mut T {
        if key == self.slots.len() {
            self.slots.push(None);
        }
        debug_assert!(self.slots[key].is_none());
        self.len += 1;
        self.slots[key].insert(value)
    }

    pub fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        self.slots.get_mut(key).and_then(Option::as_mut)
    }

    /// Takes the entry at `key` out (it must be there).
    pub fn remove(&mut self, key: usize) -> T {
        let value = self.slots[key].take().expect("an entry");
        self.len -= 1;
        self.free.give(key as u32);
        value
    }

    /// Cuts off the free keys at the end and gives back the memory of a
    /// slab far longer than needed (called now and then, not per entry).
    pub fn release_memory(&mut self) {
        cut_free_tail(&mut self.slots, &mut self.free, Option::is_none, |_| {});
    }

    /// Keys in use.
    pub fn keys(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&k| self.slots[k].is_some())
            .collect()
    }

    /// Every entry in use.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().flatten()
    }

    /// Entries in use.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Keys held (in use or free below the last in use).
    pub fn held(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_lowest_first_and_the_tail_goes_back() {
        let mut entries = Entries::default();
        for i in 0..100 {
            let key = entries.vacant_key();
            assert_eq!(key, i);
            entries.insert(key, i);
        }
        for key in (0..100).rev().filter(|k| k % 3 != 0) {
            entries.remove(key);
        }
        assert_eq!(entries.len(), 34);
        entries.release_memory();
        assert_eq!(entries.held(), 100, "key 99 is still in use");
        assert_eq!(entries.vacant_key(), 1, "lowest free first");
        for key in (0..100).filter(|k| k % 3 == 0) {
            entries.remove(key);
        }
        entries.release_memory();
        assert_eq!(entries.held(), 0);
        assert_eq!(entries.vacant_key(), 0);
    }
}
