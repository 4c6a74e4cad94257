//! A byte ring for send and receive buffers, stored in chunks lent by the
//! stack's [`ChunkPool`].
//!
//! The capacity is a limit (the window), not memory: chunks are taken only
//! to hold bytes and given back as soon as they are drained, so a
//! half-open connection, a SYN flood or an idle connection costs no buffer
//! memory, and the capacity can grow (autotuning) at no cost until it is
//! used. Data can be written at an offset past the readable end
//! ([`write_at`]), which is how out-of-order segments are placed before
//! they are contiguous; the chunks that hold it stay until it is read.
//!
//! Invariants: `chunks` covers the bytes from `head` (in the first chunk)
//! to the furthest byte written (`len + pending`), and nothing more;
//! `len + pending <= capacity` unless the capacity was lowered since.
//!
//! [`write_at`]: RingBuffer::write_at

use std::collections::VecDeque;

use super::pool::{ChunkPool, CHUNK_SIZE};

/// A byte ring: `len` readable bytes starting at `head`.
#[derive(Debug, Clone, Default)]
pub struct RingBuffer {
    chunks: VecDeque<u32>,
    /// Offset of the first readable byte in the first chunk.
    head: usize,
    len: usize,
    /// Bytes written past the readable end (out of order), counted from it.
    pending: usize,
    capacity: usize,
}

impl RingBuffer {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ..Self::default()
        }
    }

    /// Empties the ring for reuse with `capacity`, its chunks given back.
    pub fn reset(&mut self, pool: &mut ChunkPool, capacity: usize) {
        self.release(pool);
        self.capacity = capacity;
    }

    /// Drops every byte and gives every chunk back.
    pub fn release(&mut self, pool: &mut ChunkPool) {
        for id in self.chunks.drain(..) {
            pool.give(id);
        }
        self.head = 0;
        self.len = 0;
        self.pending = 0;
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Sets the limit (autotuning); never below what is stored.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(self.len + self.pending);
    }
    /// Readable bytes.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Room after the readable bytes.
    pub fn free(&self) -> usize {
        self.capacity.saturating_sub(self.len)
    }
    /// Bytes of chunk memory this ring holds.
    pub fn allocated(&self) -> usize {
        self.chunks.len() * CHUNK_SIZE
    }

    /// Copies `data` to `offset` bytes past the readable end without making
    /// it readable; returns how many bytes fit.
    pub fn write_at(&mut self, pool: &mut ChunkPool, offset: usize, data: &[u8]) -> usize {
        if offset >= self.free() || data.is_empty() {
            return 0;
        }
        let n = data.len().min(self.free() - offset);
        let start = self.head + self.len + offset;
        let needed = (start + n).div_ceil(CHUNK_SIZE);
        while self.chunks.len() < needed {
            self.chunks.push_back(pool.take());
        }
        for (chunk, within, from, len) in pieces(start, n) {
            pool.chunk_mut(self.chunks[chunk])[within..within + len]
                .copy_from_slice(&data[from..from + len]);
        }
        self.pending = self.pending.max(offset + n);
        n
    }

    /// Makes `n` bytes written with `write_at` readable.
    pub fn commit(&mut self, n: usize) {
        debug_assert!(n <= self.free());
        let n = n.min(self.free());
        self.len += n;
        self.pending = self.pending.saturating_sub(n);
    }

    /// Appends as much of `data` as fits; returns the count.
    pub fn write(&mut self, pool: &mut ChunkPool, data: &[u8]) -> usize {
        let n = self.write_at(pool, 0, data);
        self.commit(n);
        n
    }

    /// Copies readable bytes from `offset` into `out` without consuming
    /// them; returns the count.
    pub fn peek(&self, pool: &ChunkPool, offset: usize, out: &mut [u8]) -> usize {
        if offset >= self.len {
            return 0;
        }
        let n = out.len().min(self.len - offset);
        let start = self.head + offset;
        for (chunk, within, from, len) in pieces(start, n) {
            out[from..from + len]
                .copy_from_slice(&pool.chunk(self.chunks[chunk])[within..within + len]);
        }
        n
    }

    /// Drops `n` readable bytes from the front, giving back the chunks
    /// drained (all of them once nothing is stored). Bytes written past
    /// the end with `write_at` stay where they are.
    pub fn consume(&mut self, pool: &mut ChunkPool, n: usize) {
        let n = n.min(self.len);
        self.len -= n;
        self.head += n;
        if self.len == 0 && self.pending == 0 {
            self.release(pool);
            return;
        }
        while self.head >= CHUNK_SIZE {
            let id = self.chunks.pop_front().expect("covered");
            pool.give(id);
            self.head -= CHUNK_SIZE;
        }
    }

    /// Copies and consumes readable bytes into `out`; returns the count.
    pub fn read(&mut self, pool: &mut ChunkPool, out: &mut [u8]) -> usize {
        let n = self.peek(pool, 0, out);
        self.consume(pool, n);
        n
    }
}

/// The pieces of `n` bytes at ring position `start`, one per chunk they
/// touch: (chunk index, offset in that chunk, offset in the bytes, length).
fn pieces(start: usize, n: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let mut done = 0;
    std::iter::from_fn(move || {
        (done < n).then(|| {
            let at = start + done;
            let within = at % CHUNK_SIZE;
            let len = (n - done).min(CHUNK_SIZE - within);
            let piece = (at / CHUNK_SIZE, within, done, len);
            done += len;
            piece
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn holds_chunks_only_while_it_holds_bytes() {
        let mut pool = ChunkPool::default();
        let mut ring = RingBuffer::new(1 << 20);
        assert_eq!(ring.allocated(), 0);
        assert_eq!(ring.write(&mut pool, b""), 0);
        assert_eq!(ring.allocated(), 0);
        assert_eq!(ring.write(&mut pool, b"abc"), 3);
        assert_eq!(ring.allocated(), CHUNK_SIZE);
        let mut out = [0u8; 3];
        assert_eq!(ring.read(&mut pool, &mut out), 3);
        assert_eq!(&out, b"abc");
        assert_eq!(ring.allocated(), 0, "drained: the chunk went back");
        assert_eq!(pool.lent_bytes(), 0);
    }

    #[test]
    fn spans_chunks_and_gives_back_the_drained_ones() {
        let mut pool = ChunkPool::default();
        let mut ring = RingBuffer::new(4 * CHUNK_SIZE);
        let data: Vec<u8> = (0..3 * CHUNK_SIZE + 100).map(|i| i as u8).collect();
        assert_eq!(ring.write(&mut pool, &data), data.len());
        assert_eq!(ring.allocated(), 4 * CHUNK_SIZE);
        let mut out = vec![0u8; CHUNK_SIZE + 10];
        assert_eq!(ring.read(&mut pool, &mut out), out.len());
        assert_eq!(&out[..], &data[..CHUNK_SIZE + 10]);
        assert_eq!(
            ring.allocated(),
            3 * CHUNK_SIZE,
            "the first chunk went back"
        );
        let mut rest = vec![0u8; data.len()];
        assert_eq!(ring.peek(&pool, 5, &mut rest), data.len() - CHUNK_SIZE - 15);
        assert_eq!(rest[0], data[CHUNK_SIZE + 15]);
        ring.release(&mut pool);
        assert_eq!(pool.lent_bytes(), 0);
    }

    #[test]
    fn the_capacity_bounds_and_grows() {
        let mut pool = ChunkPool::default();
        let mut ring = RingBuffer::new(8);
        assert_eq!(ring.write(&mut pool, b"abcdef"), 6);
        let mut out = [0u8; 4];
        assert_eq!(ring.read(&mut pool, &mut out), 4);
        assert_eq!(&out, b"abcd");
        assert_eq!(ring.write(&mut pool, b"ghijklmn"), 6, "only the free room");
        ring.set_capacity(10);
        assert_eq!(ring.write(&mut pool, b"opq"), 2);
        let mut all = [0u8; 10];
        assert_eq!(ring.read(&mut pool, &mut all), 10);
        assert_eq!(&all, b"efghijklop");
    }

    #[test]
    fn draining_keeps_data_written_past_the_end() {
        let mut pool = ChunkPool::default();
        let mut ring = RingBuffer::new(8);
        ring.write(&mut pool, b"ab");
        assert_eq!(
            ring.write_at(&mut pool, 2, b"ef"),
            2,
            "out of order, after a 2-byte gap"
        );
        let mut out = [0u8; 2];
        ring.read(&mut pool, &mut out);
        assert!(ring.is_empty());
        assert_eq!(
            ring.allocated(),
            CHUNK_SIZE,
            "kept: it holds the gap's tail"
        );
        ring.write_at(&mut pool, 0, b"cd");
        ring.commit(4);
        let mut rest = [0u8; 4];
        ring.read(&mut pool, &mut rest);
        assert_eq!(&rest, b"cdef");
        assert_eq!(ring.allocated(), 0);
    }

    #[test]
    fn write_at_places_data_after_a_gap() {
        let mut pool = ChunkPool::default();
        let mut ring = RingBuffer::new(8);
        assert_eq!(ring.write_at(&mut pool, 3, b"def"), 3);
        assert_eq!(ring.len(), 0, "not readable until the gap is filled");
        assert_eq!(ring.write_at(&mut pool, 0, b"abc"), 3);
        ring.commit(6);
        let mut out = [0u8; 6];
        ring.read(&mut pool, &mut out);
        assert_eq!(&out, b"abcdef");
        assert_eq!(ring.write_at(&mut pool, 8, b"x"), 0, "past the capacity");
    }

    proptest! {
        /// Random writes and reads behave like a VecDeque bounded by
        /// capacity, across chunk boundaries, and hold chunks only for
        /// what they store.
        #[test]
        fn behaves_like_a_bounded_queue(ops in proptest::collection::vec((any::<bool>(), 0usize..40_000), 0..60)) {
            let mut pool = ChunkPool::default();
            let capacity = 3 * CHUNK_SIZE + 123;
            let mut ring = RingBuffer::new(capacity);
            let mut model = std::collections::VecDeque::new();
            let mut next = 0u8;
            for (write, n) in ops {
                if write {
                    let data: Vec<u8> = (0..n).map(|_| { next = next.wrapping_add(1); next }).collect();
                    let written = ring.write(&mut pool, &data);
                    prop_assert_eq!(written, n.min(capacity - model.len()));
                    model.extend(&data[..written]);
                    next = next.wrapping_sub((n - written) as u8);
                } else {
                    let mut out = vec![0u8; n];
                    let read = ring.read(&mut pool, &mut out);
                    let expected: Vec<u8> = model.drain(..n.min(model.len())).collect();
                    prop_assert_eq!(&out[..read], &expected[..]);
                }
                prop_assert_eq!(ring.len(), model.len());
                prop_assert!(ring.allocated() <= (model.len() + 2 * CHUNK_SIZE).next_multiple_of(CHUNK_SIZE));
                prop_assert_eq!(pool.lent_bytes(), ring.allocated());
            }
        }
    }
}
