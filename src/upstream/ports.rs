//! Source ports for backend connections, handed out least recently used
//! first.
//!
//! On the backend leg lastack is the client, and when the client closed
//! first lastack also closes first there, so the kernel keeps a TIME-WAIT
//! for each backend connection. Letting connect() choose the port makes the
//! kernel scan the ephemeral range for a 4-tuple without one
//! (`__inet_hash_connect`), preferring even ports: kernel proxies stall at
//! ≈14k connections/s to one backend address on this. Instead each shard
//! owns a disjoint share of a port range and binds every backend socket to
//! the port it released longest ago: with `P` ports at `R` connections/s a
//! port comes back after `P / R` seconds, which is longer than
//! `net.ipv4.tcp_tw_reuse_delay` (1 s) up to 60k connections/s per source
//! address and backend, so with `tcp_tw_reuse = 1` the kernel reuses the
//! TIME-WAIT in O(1) and never scans.

use std::collections::VecDeque;

/// One shard's share of a port range, as a queue: taken from the front,
/// given back at the end.
#[derive(Debug, Clone)]
pub struct PortQueue {
    free: VecDeque<u16>,
    /// Ports handed out and not yet given back.
    in_use: usize,
}

impl PortQueue {
    /// Ports `first..=last` whose offset from `first` is `shard` modulo
    /// `shards`, so shards never hand out the same port.
    pub fn new(first: u16, last: u16, shard: usize, shards: usize) -> Self {
        let shards = shards.max(1);
        let free = (first..=last)
            .enumerate()
            .filter(|(i, _)| i % shards == shard % shards)
            .map(|(_, port)| port)
            .collect();
        Self { free, in_use: 0 }
    }

    /// The least recently released port.
    pub fn take(&mut self) -> Option<u16> {
        let port = self.free.pop_front()?;
        self.in_use += 1;
        Some(port)
    }

    /// Gives `port` back; it is handed out again after all the others.
    pub fn give_back(&mut self, port: u16) {
        self.in_use -= 1;
        self.free.push_back(port);
    }

    /// Removes a port for good (e.g. a local service listens on it); it
    /// was taken.
    pub fn retire(&mut self, _port: u16) {
        self.in_use -= 1;
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }

    pub fn in_use(&self) -> usize {
        self.in_use
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_get_disjoint_shares_covering_the_range() {
        let shares: Vec<PortQueue> = (0..3).map(|s| PortQueue::new(1000, 1099, s, 3)).collect();
        let mut all: Vec<u16> = shares.iter().flat_map(|q| q.free.iter().copied()).collect();
        all.sort_unstable();
        assert_eq!(all, (1000..=1099).collect::<Vec<_>>());
        assert_eq!(shares[0].available(), 34);
        assert_eq!(shares[2].available(), 33);
    }

    #[test]
    fn the_least_recently_released_port_comes_first() {
        let mut q = PortQueue::new(1, 4, 0, 1);
        let a = q.take().unwrap();
        let b = q.take().unwrap();
        q.give_back(b);
        q.give_back(a);
        // 3 and 4 were never used; then b (released before a), then a.
        let order: Vec<u16> = std::iter::from_fn(|| q.take()).collect();
        assert_eq!(order, vec![3, 4, b, a]);
        assert_eq!(q.in_use(), 4);
        assert_eq!(q.take(), None, "exhausted");
    }

    #[test]
    fn a_retired_port_never_comes_back() {
        let mut q = PortQueue::new(10, 11, 0, 1);
        let p = q.take().unwrap();
        q.retire(p);
        assert_eq!(q.take(), Some(11));
        assert_eq!(q.take(), None);
        assert_eq!(q.in_use(), 1);
    }
}
