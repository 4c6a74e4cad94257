//! The TIME-WAIT table (RFC 9293 §3.6.1, §3.10.7.4 "TIME-WAIT").
//!
//! A connection that closed first waits 2×MSL here, in a compact entry (what
//! is needed to ACK a retransmitted FIN and to judge a new SYN), not as a
//! full connection. Every entry lives for the same duration, so expiry is a
//! FIFO: O(1) per entry.

use std::collections::hash_map::Entry;
use std::collections::VecDeque;

use super::seq::Seq;
use super::time::Instant;
use super::types::{tuple_map, FourTuple, Route, TupleMap};

/// What TIME-WAIT keeps of a connection.
#[derive(Debug, Clone, Copy)]
pub struct TimeWaitEntry {
    pub snd_nxt: Seq,
    pub rcv_nxt: Seq,
    /// TS.Recent and our timestamp offset, if timestamps were on.
    pub ts: Option<(u32, u32)>,
    pub rcv_shift: u8,
    pub route: Route,
    pub expires: Instant,
}

/// All TIME-WAIT entries of a stack.
#[derive(Debug)]
pub struct TimeWaitTable {
    entries: TupleMap<TimeWaitEntry>,
    /// (expiry, tuple) in expiry order; stale when the entry was restarted
    /// or removed since.
    expiry: VecDeque<(Instant, FourTuple)>,
}

impl TimeWaitTable {
    /// An empty table whose map is seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            entries: tuple_map(seed),
            expiry: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of memory the table holds: the map's buckets (tuple, entry
    /// and a control byte each) and the expiry queue, at their capacity.
    pub fn memory_bytes(&self) -> usize {
        let bucket = std::mem::size_of::<(FourTuple, TimeWaitEntry)>() + 1;
        let queued = std::mem::size_of::<(Instant, FourTuple)>();
        self.entries.capacity() * bucket + self.expiry.capacity() * queued
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, tuple: &FourTuple) -> Option<&TimeWaitEntry> {
        self.entries.get(tuple)
    }

    /// Adds or restarts an entry (the 2×MSL timer restarts on a
    /// retransmitted FIN).
    ///
    /// Entries removed early (a new SYN reopened the tuple) or restarted
    /// leave stale items in the expiry queue until they reach its front.
    /// Under churn with port reuse those can outnumber live entries many
    /// times (measured: 1.6 M queued for 64 k live), so when stale items
    /// are more than twice the live ones the queue is compacted: O(n),
    /// at most once per n inserts, so O(1) amortised, and the queue stays
    /// within 3× the live entries.
    pub fn insert(&mut self, tuple: FourTuple, entry: TimeWaitEntry) {
        self.expiry.push_back((entry.expires, tuple));
        self.entries.insert(tuple, entry);
        if self.expiry.len() > 3 * self.entries.len() + 1024 {
            let entries = &self.entries;
            self.expiry
                .retain(|(at, tuple)| entries.get(tuple).is_some_and(|e| e.expires == *at));
            // Give memory back after a burst, keeping room to grow.
            if self.expiry.capacity() > 4 * self.expiry.len() + 4096 {
                self.expiry.shrink_to(2 * self.expiry.len() + 1024);
            }
        }
    }

    pub fn remove(&mut self, tuple: &FourTuple) -> Option<TimeWaitEntry> {
        self.entries.remove(tuple)
    }

    /// Items in the expiry queue (live and stale).
    pub fn queued(&self) -> usize {
        self.expiry.len()
    }

    /// The earliest expiry, if any (may be of an entry already removed,
    /// which only makes the caller wake a little early).
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiry.front().map(|&(at, _)| at)
    }

    /// Drops every entry expired at `now`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while let Some(&(at, tuple)) = self.expiry.front() {
            if at > now {
                break;
            }
            self.expiry.pop_front();
            // One hash lookup: remove only if the entry was not restarted.
            if let Entry::Occupied(entry) = self.entries.entry(tuple) {
                if entry.get().expires == at {
                    entry.remove();
                    expired += 1;
                }
            }
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    fn tuple(port: u16) -> FourTuple {
        FourTuple {
            local: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 80).into(),
            remote: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), port).into(),
        }
    }

    fn entry(expires: u64) -> TimeWaitEntry {
        TimeWaitEntry {
            snd_nxt: Seq(1),
            rcv_nxt: Seq(2),
            ts: None,
            rcv_shift: 0,
            route: [0; 16],
            expires: Instant::from_micros(expires),
        }
    }

    #[test]
    fn entries_expire_in_order_and_restarts_survive() {
        let mut table = TimeWaitTable::new(1);
        table.insert(tuple(1), entry(100));
        table.insert(tuple(2), entry(200));
        table.insert(tuple(1), entry(300)); // restarted
        assert_eq!(table.expire(Instant::from_micros(250)), 1, "only tuple 2");
        assert!(table.get(&tuple(1)).is_some());
        assert_eq!(table.expire(Instant::from_micros(300)), 1);
        assert!(table.is_empty());
    }

    /// Tuples reopened by new SYNs (removed early) over and over, as under
    /// churn with client port reuse: the queue stays proportional to the
    /// live entries, and expiry still finds every live one.
    #[test]
    fn the_expiry_queue_stays_bounded_when_entries_are_reopened() {
        let mut table = TimeWaitTable::new(1);
        let mut now = 0;
        for round in 0..200u64 {
            for port in 0..1000u16 {
                now += 1;
                table.insert(tuple(port), entry(1_000_000 + now));
                if round < 199 {
                    table.remove(&tuple(port));
                }
            }
            assert!(
                table.queued() <= 3 * table.len() + 1024 + 1,
                "round {round}: {} queued for {} live",
                table.queued(),
                table.len()
            );
        }
        assert_eq!(table.len(), 1000);
        assert_eq!(table.expire(Instant::from_micros(u64::MAX)), 1000);
        assert!(table.is_empty());
    }
}
