//! What a connection holds on the backend leg, as values released on drop
//! (no hand-kept counts):
//! - a [`BackendLease`]: one open connection counted against a backend
//!   (least-connections balancing, per-backend limits, metrics);
//! - a [`SourcePort`]: a source address and port taken from the shard's
//!   LRU queue, given back when dropped — by the io_uring slot that owns
//!   the socket, once its close has completed.
//!
//! Backend counts are the process's (atomics shared by every shard);
//! source ports are the shard's own (`Rc`: a shard is built on, and never
//! leaves, its own thread).

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use super::ports::PortQueue;

/// Connections to one backend from the whole process (every shard):
/// what least-connections balancing and per-backend limits read. Kept by
/// the health board, across a reload for a backend that stays, and by the
/// leases of its connections.
#[derive(Debug, Default)]
pub struct BackendCount {
    /// Open now.
    active: AtomicU32,
    /// Opened so far.
    opened: AtomicU64,
}

impl BackendCount {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Counts a new connection to backend `backend` (its index in the
    /// pool that leased it) until the lease drops.
    pub fn lease(self: &Arc<Self>, backend: usize) -> BackendLease {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.opened.fetch_add(1, Ordering::Relaxed);
        BackendLease {
            count: Arc::clone(self),
            backend,
        }
    }
}

/// One open connection to a backend.
#[derive(Debug)]
pub struct BackendLease {
    count: Arc<BackendCount>,
    backend: usize,
}

impl BackendLease {
    /// The backend's index in the pool that leased it.
    pub fn backend(&self) -> usize {
        self.backend
    }
}

impl Drop for BackendLease {
    fn drop(&mut self) {
        self.count.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A source address and this shard's share of its ports.
#[derive(Debug)]
pub struct Source {
    pub address: IpAddr,
    pub ports: PortQueue,
}

/// The source addresses of one pool on one shard, shared by the pool
/// (which takes ports) and the leases (which give them back).
pub type Sources = Rc<RefCell<Vec<Source>>>;

/// A source port taken from its queue; back at the end of the queue when
/// dropped, unless [`SourcePort::retire`]d.
#[derive(Debug)]
pub struct SourcePort {
    sources: Sources,
    source: usize,
    pub address: IpAddr,
    pub port: u16,
    retired: bool,
    /// Its connection left a TIME-WAIT here: the port rests before reuse.
    time_wait: bool,
}

impl SourcePort {
    /// The port from source `source`'s queue, if it has one.
    pub fn take(sources: &Sources, source: usize) -> Option<Self> {
        let mut all = sources.borrow_mut();
        let entry = all.get_mut(source)?;
        let port = entry.ports.take()?;
        Some(Self {
            sources: Rc::clone(sources),
            source,
            address: entry.address,
            port,
            retired: false,
            time_wait: false,
        })
    }

    /// Our FIN went out before the peer's: the kernel keeps this 4-tuple in
    /// TIME-WAIT, so the port rests once given back.
    pub fn leaves_time_wait(&mut self) {
        self.time_wait = true;
    }

    /// The port is not ours to use (something else listens on it): it
    /// never comes back.
    pub fn retire(mut self) {
        self.retired = true;
        self.sources.borrow_mut()[self.source]
            .ports
            .retire(self.port);
    }
}

impl Drop for SourcePort {
    fn drop(&mut self) {
        if !self.retired {
            self.sources.borrow_mut()[self.source]
                .ports
                .give_back(self.port, self.time_wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_lease_counts_until_dropped() {
        let count = BackendCount::new();
        let a = count.lease(1);
        let b = count.lease(1);
        assert_eq!((count.active(), a.backend()), (2, 1));
        drop(a);
        assert_eq!(count.active(), 1);
        drop(b);
        assert_eq!(count.active(), 0);
        assert_eq!(count.opened(), 2, "opened keeps counting");
    }

    #[test]
    fn a_source_port_goes_back_to_the_end_of_its_queue_unless_retired() {
        let sources: Sources = Rc::new(RefCell::new(vec![Source {
            address: IpAddr::from([10, 0, 0, 1]),
            ports: PortQueue::new(2000, 2002, 0, 1),
        }]));
        let first = SourcePort::take(&sources, 0).unwrap();
        assert_eq!(
            (first.address, first.port),
            (IpAddr::from([10, 0, 0, 1]), 2000)
        );
        drop(first);
        let ports: Vec<u16> = (0..3)
            .map(|_| {
                let p = SourcePort::take(&sources, 0).unwrap();
                let port = p.port;
                p.retire();
                port
            })
            .collect();
        assert_eq!(ports, [2001, 2002, 2000], "least recently released first");
        assert!(
            SourcePort::take(&sources, 0).is_none(),
            "retired ports never come back"
        );
        assert_eq!(sources.borrow()[0].ports.in_use(), 0);
    }
}
