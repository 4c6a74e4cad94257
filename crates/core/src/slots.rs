//! Free indices of a slab (a `Vec` of slots addressed by index), handed out
//! lowest first, so that slots in use gather at the front and the slab's
//! tail can be cut off and its memory given back once load drops.
//!
//! Why hand-written: a slab crate reuses the last slot freed (LIFO), which
//! scatters long-lived slots over the whole length and keeps the peak's
//! memory for ever; this keeps a min-heap instead. Taking and giving are
//! O(log n) and allocate nothing in steady state (per connection, never
//! per packet).
//!
//! Entries can go stale (an index cut off with the tail, or pushed twice):
//! [`LowestFree::take`] checks each against the slab and skips those, and
//! [`LowestFree::compact`] drops them when they grow numerous.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A slab's free indices, lowest first.
#[derive(Debug, Default)]
pub struct LowestFree {
    heap: BinaryHeap<Reverse<u32>>,
}

impl LowestFree {
    /// `index` is free.
    pub fn give(&mut self, index: u32) {
        self.heap.push(Reverse(index));
    }

    /// The lowest free index below `len` for which `is_free` holds, left
    /// in place (stale entries in front of it are dropped), or `None`.
    pub fn lowest(&mut self, len: usize, is_free: impl Fn(u32) -> bool) -> Option<u32> {
        while let Some(&Reverse(index)) = self.heap.peek() {
            if (index as usize) < len && is_free(index) {
                return Some(index);
            }
            self.heap.pop();
        }
        None
    }

    /// [`LowestFree::lowest`], taken out: `None` means the slab grows.
    pub fn take(&mut self, len: usize, is_free: impl Fn(u32) -> bool) -> Option<u32> {
        let index = self.lowest(len, is_free)?;
        self.heap.pop();
        Some(index)
    }

    /// Entries held (stale ones included).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Drops stale entries (at or past `len`, or no longer free) once
    /// there are more entries than `len` (O(n), so at most once per n
    /// operations: O(1) amortised).
    pub fn compact(&mut self, len: usize, is_free: impl Fn(u32) -> bool) {
        if self.heap.len() <= len.max(64) {
            return;
        }
        let mut kept: Vec<u32> = self
            .heap
            .drain()
            .map(|Reverse(i)| i)
            .filter(|&i| (i as usize) < len && is_free(i))
            .collect();
        kept.sort_unstable();
        kept.dedup();
        self.heap.extend(kept.into_iter().map(Reverse));
    }
}

/// Cuts the free slots off the end of `slots` (handing each to `cut`, last
/// first), gives back capacity far above need ([`shrink_target`]) and drops
/// stale entries from `free`: what a slab's owner calls now and then (not
/// per slot) so that its memory goes back after a peak.
pub fn cut_free_tail<T>(
    slots: &mut Vec<T>,
    free: &mut LowestFree,
    is_free: impl Fn(&T) -> bool,
    mut cut: impl FnMut(&T),
) {
    while let Some(last) = slots.last() {
        if !is_free(last) {
            break;
        }
        cut(last);
        slots.pop();
    }
    if let Some(keep) = shrink_target(slots.len(), slots.capacity()) {
        slots.shrink_to(keep);
    }
    free.compact(slots.len(), |i| is_free(&slots[i as usize]));
}

/// How many slots to keep room for once a slab's length dropped to `len`:
/// twice that, once the capacity exceeds eight times it (hysteresis: a
/// length going up and down under steady load never reallocates).
pub fn shrink_target(len: usize, capacity: usize) -> Option<usize> {
    let keep = (2 * len).max(64);
    (capacity > 4 * keep).then_some(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_first_and_stale_entries_skipped() {
        let mut free = LowestFree::default();
        let mut occupied = [true; 8];
        for i in [5, 2, 7] {
            occupied[i as usize] = false;
            free.give(i);
        }
        free.give(2); // twice
        let take = |free: &mut LowestFree, occupied: &[bool; 8], len| {
            free.take(len, |i| !occupied[i as usize])
        };
        assert_eq!(take(&mut free, &occupied, 8), Some(2));
        occupied[2] = true;
        assert_eq!(
            take(&mut free, &occupied, 6),
            Some(5),
            "the duplicate 2 is skipped"
        );
        occupied[5] = true;
        assert_eq!(
            take(&mut free, &occupied, 6),
            None,
            "7 was cut off with the tail"
        );
        assert!(free.is_empty());
    }

    #[test]
    fn compacting_keeps_only_live_entries() {
        let mut free = LowestFree::default();
        for i in 0..200 {
            free.give(i);
            free.give(i);
        }
        free.compact(100, |i| i % 2 == 0);
        assert_eq!(free.len(), 50);
        assert_eq!(free.take(100, |_| true), Some(0));
    }

    #[test]
    fn capacity_is_cut_back_only_well_above_the_length() {
        assert_eq!(shrink_target(1000, 5000), None);
        assert_eq!(shrink_target(1000, 9000), Some(2000));
        assert_eq!(shrink_target(0, 256), None);
        assert_eq!(shrink_target(0, 16384), Some(64));
    }
}
