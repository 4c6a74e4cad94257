//! What a connection holds on the backend leg, as values released on drop
//! (no hand-kept counts):
//! - a [`BackendLease`]: one open connection counted against a backend
//!   (least-connections balancing, per-backend limits, metrics);
//! - a [`SourcePort`]: a source address and port taken from the shard's
//!   LRU queue, given back when dropped — by the io_uring slot that owns
//!   the socket, once its close has completed.
//!
//! Both are per shard (`Rc`): a shard is built on, and never leaves, its
//! own thread.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::rc::Rc;

use super::ports::PortQueue;

/// Connections per backend of one pool, on one shard.
#[derive(Debug)]
pub struct BackendCounts {
    /// Open now.
    active: Vec<Cell<u32>>,
    /// Opened so far.
    opened: Vec<Cell<u64>>,
}

impl BackendCounts {
    pub fn new(backends: usize) -> Rc<Self> {
        Rc::new(Self {
            active: (0..backends).map(|_| Cell::new(0)).collect(),
            opened: (0..backends).map(|_| Cell::new(0)).collect(),
        })
    }

    pub fn active(&self, backend: usize) -> u32 {
        self.active[backend].get()
    }

    pub fn active_all(&self) -> Vec<u32> {
        self.active.iter().map(Cell::get).collect()
    }

    pub fn opened_all(&self) -> Vec<u64> {
        self.opened.iter().map(Cell::get).collect()
    }

    /// Counts a new connection to `backend` until the lease drops.
    pub fn lease(self: &Rc<Self>, backend: usize) -> BackendLease {
        let active = &self.active[backend];
        active.set(active.get() + 1);
        let opened = &self.opened[backend];
        opened.set(opened.get() + 1);
        BackendLease {
            counts: Rc::clone(self),
            backend,
        }
    }
}

/// One open connection to a backend.
#[derive(Debug)]
pub struct BackendLease {
    counts: Rc<BackendCounts>,
    backend: usize,
}

impl BackendLease {
    pub fn backend(&self) -> usize {
        self.backend
    }
}

impl Drop for BackendLease {
    fn drop(&mut self) {
        let active = &self.counts.active[self.backend];
        active.set(active.get() - 1);
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
        })
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
                .give_back(self.port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_lease_counts_until_dropped() {
        let counts = BackendCounts::new(2);
        let a = counts.lease(1);
        let b = counts.lease(1);
        assert_eq!(counts.active_all(), [0, 2]);
        drop(a);
        assert_eq!(counts.active(1), 1);
        drop(b);
        assert_eq!(counts.active_all(), [0, 0]);
        assert_eq!(counts.opened_all(), [0, 2], "opened keeps counting");
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
