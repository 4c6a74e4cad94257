//! A fixed-capacity byte ring for send and receive buffers.
//!
//! Storage is allocated on first write, not at connection creation, so a
//! half-open connection (or a SYN flood) costs no buffer memory; a recycled
//! connection slot keeps its storage, so connection churn does not allocate.
//! Data can be written at an offset past the readable end ([`write_at`]),
//! which is how out-of-order segments are placed before they are contiguous.
//!
//! [`write_at`]: RingBuffer::write_at

/// A byte ring: `len` readable bytes starting at `head`.
#[derive(Debug, Clone, Default)]
pub struct RingBuffer {
    storage: Vec<u8>,
    capacity: usize,
    head: usize,
    len: usize,
}

impl RingBuffer {
    pub fn new(capacity: usize) -> Self {
        Self {
            storage: Vec::new(),
            capacity,
            head: 0,
            len: 0,
        }
    }

    /// Empties the ring for reuse with `capacity`, keeping its storage when
    /// the size is unchanged.
    pub fn reset(&mut self, capacity: usize) {
        if self.storage.len() != capacity {
            self.storage = Vec::new();
        }
        self.capacity = capacity;
        self.head = 0;
        self.len = 0;
    }

    pub fn capacity(&self) -> usize {
        self.capacity
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
        self.capacity - self.len
    }
    /// Bytes of memory this ring holds.
    pub fn allocated(&self) -> usize {
        self.storage.len()
    }

    fn ensure_storage(&mut self) {
        if self.storage.len() != self.capacity {
            self.storage = vec![0; self.capacity];
        }
    }

    /// Copies `data` to `offset` bytes past the readable end without making
    /// it readable; returns how many bytes fit.
    pub fn write_at(&mut self, offset: usize, data: &[u8]) -> usize {
        if offset >= self.free() || data.is_empty() {
            return 0;
        }
        let n = data.len().min(self.free() - offset);
        self.ensure_storage();
        let start = (self.head + self.len + offset) % self.capacity;
        let first = n.min(self.capacity - start);
        self.storage[start..start + first].copy_from_slice(&data[..first]);
        self.storage[..n - first].copy_from_slice(&data[first..n]);
        n
    }

    /// Makes `n` bytes written with `write_at` readable.
    pub fn commit(&mut self, n: usize) {
        debug_assert!(n <= self.free());
        self.len += n.min(self.free());
    }

    /// Appends as much of `data` as fits; returns the count.
    pub fn write(&mut self, data: &[u8]) -> usize {
        let n = self.write_at(0, data);
        self.commit(n);
        n
    }

    /// Copies readable bytes from `offset` into `out` without consuming
    /// them; returns the count.
    pub fn peek(&self, offset: usize, out: &mut [u8]) -> usize {
        if offset >= self.len {
            return 0;
        }
        let n = out.len().min(self.len - offset);
        let start = (self.head + offset) % self.capacity;
        let first = n.min(self.capacity - start);
        out[..first].copy_from_slice(&self.storage[start..start + first]);
        out[first..n].copy_from_slice(&self.storage[..n - first]);
        n
    }

    /// Drops `n` readable bytes from the front. The head only moves
    /// forward (never back to 0 when empty): bytes written past the end
    /// with `write_at` stay where they are.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.len -= n;
        if self.capacity > 0 {
            self.head = (self.head + n) % self.capacity;
        }
    }

    /// Copies and consumes readable bytes into `out`; returns the count.
    pub fn read(&mut self, out: &mut [u8]) -> usize {
        let n = self.peek(0, out);
        self.consume(n);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn allocates_on_first_write_only() {
        let mut ring = RingBuffer::new(8);
        assert_eq!(ring.allocated(), 0);
        assert_eq!(ring.write(b""), 0);
        assert_eq!(ring.allocated(), 0);
        assert_eq!(ring.write(b"abc"), 3);
        assert_eq!(ring.allocated(), 8);
        ring.reset(8);
        assert_eq!(ring.allocated(), 8, "reuse keeps the storage");
    }

    #[test]
    fn wraps_and_bounds() {
        let mut ring = RingBuffer::new(8);
        assert_eq!(ring.write(b"abcdef"), 6);
        let mut out = [0u8; 4];
        assert_eq!(ring.read(&mut out), 4);
        assert_eq!(&out, b"abcd");
        assert_eq!(ring.write(b"ghijklmn"), 6, "only the free room");
        let mut all = [0u8; 8];
        assert_eq!(ring.read(&mut all), 8);
        assert_eq!(&all, b"efghijkl");
    }

    #[test]
    fn draining_keeps_data_written_past_the_end() {
        let mut ring = RingBuffer::new(8);
        ring.write(b"ab");
        assert_eq!(
            ring.write_at(2, b"ef"),
            2,
            "out of order, after a 2-byte gap"
        );
        let mut out = [0u8; 2];
        ring.read(&mut out);
        assert!(ring.is_empty());
        ring.write_at(0, b"cd");
        ring.commit(4);
        let mut rest = [0u8; 4];
        ring.read(&mut rest);
        assert_eq!(&rest, b"cdef");
    }

    #[test]
    fn write_at_places_data_after_a_gap() {
        let mut ring = RingBuffer::new(8);
        assert_eq!(ring.write_at(3, b"def"), 3);
        assert_eq!(ring.len(), 0, "not readable until the gap is filled");
        assert_eq!(ring.write_at(0, b"abc"), 3);
        ring.commit(6);
        let mut out = [0u8; 6];
        ring.read(&mut out);
        assert_eq!(&out, b"abcdef");
        assert_eq!(ring.write_at(8, b"x"), 0, "past the capacity");
    }

    proptest! {
        /// Random writes and reads behave like a VecDeque bounded by capacity.
        #[test]
        fn behaves_like_a_bounded_queue(ops in proptest::collection::vec((any::<bool>(), 0usize..20), 0..100)) {
            let mut ring = RingBuffer::new(16);
            let mut model = std::collections::VecDeque::new();
            let mut next = 0u8;
            for (write, n) in ops {
                if write {
                    let data: Vec<u8> = (0..n).map(|_| { next = next.wrapping_add(1); next }).collect();
                    let written = ring.write(&data);
                    prop_assert_eq!(written, n.min(16 - model.len()));
                    model.extend(&data[..written]);
                    next = next.wrapping_sub((n - written) as u8);
                } else {
                    let mut out = vec![0u8; n];
                    let read = ring.read(&mut out);
                    let expected: Vec<u8> = model.drain(..n.min(model.len())).collect();
                    prop_assert_eq!(&out[..read], &expected[..]);
                }
                prop_assert_eq!(ring.len(), model.len());
            }
        }
    }
}
