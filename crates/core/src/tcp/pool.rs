//! A stack's memory for connection data: fixed-size chunks, lent to the
//! send and receive rings of its connections while they hold bytes and
//! given back as soon as those are drained (so an idle connection holds
//! none).
//!
//! Why hand-written: the rings need O(1) take and give with no allocation
//! in steady state, chunk handles small enough to keep per connection
//! (`u32`), and the figures the budget and the metrics read; a general
//! allocator gives none of the three.
//!
//! Chunks given back are kept as spares up to a fixed amount (so churn
//! does not go to the allocator for every connection), and freed beyond
//! it, so memory goes back once load drops.
//!
//! Invariant: an id is either lent (exactly one ring holds it), spare
//! (in `spare`, with storage) or bare (in `bare`, without storage).

/// Bytes in a chunk.
pub const CHUNK_SIZE: usize = 16 * 1024;

/// A lent chunk's handle.
pub type ChunkId = u32;

/// The pool and its figures.
#[derive(Debug)]
pub struct ChunkPool {
    storage: Vec<Option<Box<[u8]>>>,
    spare: Vec<ChunkId>,
    bare: Vec<ChunkId>,
    lent: usize,
    peak_lent: usize,
    /// Spare chunks kept for reuse; beyond, given-back chunks are freed.
    keep_spare: usize,
    /// Lent chunks above which the stack is short of memory: windows stop
    /// growing and shrink to one chunk (backpressure, not drops).
    budget: usize,
    /// Times the lent chunks reached the budget.
    shortages: u64,
}

impl ChunkPool {
    /// A pool that is short of memory past `budget_bytes` lent and keeps
    /// up to `spare_bytes` of given-back chunks.
    pub fn new(budget_bytes: usize, spare_bytes: usize) -> Self {
        Self {
            storage: Vec::new(),
            spare: Vec::new(),
            bare: Vec::new(),
            lent: 0,
            peak_lent: 0,
            keep_spare: spare_bytes / CHUNK_SIZE,
            budget: budget_bytes.div_ceil(CHUNK_SIZE),
            shortages: 0,
        }
    }

    /// Sets a new budget (a reload); chunks already lent stay lent.
    pub fn set_budget(&mut self, budget_bytes: usize) {
        self.budget = budget_bytes.div_ceil(CHUNK_SIZE);
    }

    /// Lends a chunk: a spare one, or newly allocated (zeroed).
    pub fn take(&mut self) -> ChunkId {
        let id = if let Some(id) = self.spare.pop() {
            id
        } else if let Some(id) = self.bare.pop() {
            self.storage[id as usize] = Some(vec![0; CHUNK_SIZE].into_boxed_slice());
            id
        } else {
            self.storage
                .push(Some(vec![0; CHUNK_SIZE].into_boxed_slice()));
            (self.storage.len() - 1) as ChunkId
        };
        self.lent += 1;
        self.peak_lent = self.peak_lent.max(self.lent);
        if self.lent == self.budget {
            self.shortages += 1;
        }
        id
    }

    /// Takes back a lent chunk: kept as a spare, or freed.
    pub fn give(&mut self, id: ChunkId) {
        debug_assert!(self.storage[id as usize].is_some());
        self.lent -= 1;
        if self.spare.len() < self.keep_spare {
            self.spare.push(id);
        } else {
            self.storage[id as usize] = None;
            self.bare.push(id);
        }
    }

    pub fn chunk(&self, id: ChunkId) -> &[u8] {
        self.storage[id as usize].as_deref().expect("a lent chunk")
    }

    pub fn chunk_mut(&mut self, id: ChunkId) -> &mut [u8] {
        self.storage[id as usize]
            .as_deref_mut()
            .expect("a lent chunk")
    }

    /// More is lent than the budget allows.
    pub fn is_short(&self) -> bool {
        self.lent >= self.budget
    }

    /// Times the lent chunks reached the budget (windows then shrink).
    pub fn shortages(&self) -> u64 {
        self.shortages
    }

    /// Bytes lent to connections now.
    pub fn lent_bytes(&self) -> usize {
        self.lent * CHUNK_SIZE
    }

    /// The most bytes ever lent at once.
    pub fn peak_lent_bytes(&self) -> usize {
        self.peak_lent * CHUNK_SIZE
    }

    /// Bytes of chunk memory held: lent and spare.
    pub fn held_bytes(&self) -> usize {
        (self.lent + self.spare.len()) * CHUNK_SIZE
    }
}

impl Default for ChunkPool {
    /// No budget to speak of, 1 MiB of spares.
    fn default() -> Self {
        Self::new(usize::MAX / 2, 1 << 20)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spares_are_kept_up_to_the_limit_and_the_rest_freed() {
        let mut pool = ChunkPool::new(4 * CHUNK_SIZE, 2 * CHUNK_SIZE);
        let ids: Vec<ChunkId> = (0..5).map(|_| pool.take()).collect();
        assert_eq!(pool.lent_bytes(), 5 * CHUNK_SIZE);
        assert!(pool.is_short());
        for id in ids {
            pool.give(id);
        }
        assert!(!pool.is_short());
        assert_eq!(pool.lent_bytes(), 0);
        assert_eq!(pool.held_bytes(), 2 * CHUNK_SIZE, "two spares kept");
        assert_eq!(pool.peak_lent_bytes(), 5 * CHUNK_SIZE);
        // Taking again reuses the spares first, then the freed ids.
        let again: Vec<ChunkId> = (0..5).map(|_| pool.take()).collect();
        let mut sorted = again.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2, 3, 4], "no new ids");
        pool.chunk_mut(again[0])[0] = 7;
        assert_eq!(pool.chunk(again[0])[0], 7);
    }
}
