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
    pub fn insert(&mut self, tuple: FourTuple, entry: TimeWaitEntry) {
        self.expiry.push_back((entry.expires, tuple));
        self.entries.insert(tuple, entry);
    }

    pub fn remove(&mut self, tuple: &FourTuple) -> Option<TimeWaitEntry> {
        self.entries.remove(tuple)
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
