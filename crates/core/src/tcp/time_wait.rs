//! The TIME-WAIT table (RFC 9293 §3.6.1, §3.10.7.4 "TIME-WAIT").
//!
//! A connection that closed first waits 2×MSL here, in a compact entry (what
//! is needed to ACK a retransmitted FIN and to judge a new SYN), not as a
//! full connection. Every entry lives for the same duration, so entries are
//! kept in one queue in the order they came, which is expiry order: expiry
//! pops the front, O(1) per entry, and reads memory in sequence.
//!
//! The hash index holds only each live entry's position in the queue
//! (4 bytes a bucket), not the entry: a table of 100,000 entries keeps its
//! index in ≈ 0.6 MB that stays in cache, a lookup that misses touches no
//! entry, and expiry finds an entry's bucket by its position without
//! comparing tuples.

use std::collections::VecDeque;

use hashbrown::hash_table::{Entry, HashTable};

use super::seq::Seq;
use super::time::Instant;
use super::types::{FourTuple, HashedTuple, Route, TupleHasher};

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

/// An entry in the queue: dead once removed early or restarted (a newer
/// copy is further back), until it reaches the front or the queue is
/// compacted.
#[derive(Debug, Clone, Copy)]
struct Queued {
    tuple: FourTuple,
    entry: TimeWaitEntry,
    live: bool,
}

/// All TIME-WAIT entries of a stack.
///
/// Invariants: `index` holds one position per live entry, and the entry
/// at that position is live and has the tuple it was found by; positions
/// are `head` (the front) onwards, one per entry queued, wrapping.
#[derive(Debug)]
pub struct TimeWaitTable {
    hasher: TupleHasher,
    index: HashTable<u32>,
    queue: VecDeque<Queued>,
    /// The position of `queue[0]`.
    head: u32,
}

impl TimeWaitTable {
    /// An empty table; `hasher` is the stack's (a [`HashedTuple`] the
    /// stack made finds its entry here).
    pub fn new(hasher: TupleHasher) -> Self {
        Self {
            hasher,
            index: HashTable::new(),
            queue: VecDeque::new(),
            head: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Bytes of memory the table holds: the index (a position and a
    /// control byte a bucket) and the queue, at their capacity.
    pub fn memory_bytes(&self) -> usize {
        self.index.capacity() * (std::mem::size_of::<u32>() + 1)
            + self.queue.capacity() * std::mem::size_of::<Queued>()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Where `position` is in the queue.
    fn at(head: u32, position: u32) -> usize {
        position.wrapping_sub(head) as usize
    }

    pub fn get(&self, key: &HashedTuple) -> Option<&TimeWaitEntry> {
        let (queue, head) = (&self.queue, self.head);
        self.index
            .find(key.hash(), |&p| {
                queue[Self::at(head, p)].tuple == *key.tuple()
            })
            .map(|&p| &queue[Self::at(head, p)].entry)
    }

    /// Adds or restarts an entry (the 2×MSL timer restarts on a
    /// retransmitted FIN): the entry goes to the back of the queue, and a
    /// restarted one's old place is dead.
    ///
    /// Entries removed early (a new SYN reopened the tuple) or restarted
    /// leave dead places in the queue until they reach its front. Under
    /// churn with port reuse those can outnumber live entries many times
    /// (measured: 1.6 M queued for 64 k live), so when dead places are
    /// more than twice the live ones the queue is compacted and the index
    /// rebuilt: O(n), at most once per n inserts, so O(1) amortised, and
    /// the queue stays within 3× the live entries.
    pub fn insert(&mut self, key: &HashedTuple, entry: TimeWaitEntry) {
        let tuple = *key.tuple();
        let position = self.head.wrapping_add(self.queue.len() as u32);
        self.queue.push_back(Queued {
            tuple,
            entry,
            live: true,
        });
        let (queue, head, hasher) = (&self.queue, self.head, &self.hasher);
        let found = self.index.entry(
            key.hash(),
            |&p| queue[Self::at(head, p)].tuple == tuple,
            |&p| hasher.hash(&queue[Self::at(head, p)].tuple),
        );
        match found {
            Entry::Occupied(mut restarted) => {
                let old = std::mem::replace(restarted.get_mut(), position);
                self.queue[Self::at(head, old)].live = false;
            }
            Entry::Vacant(vacant) => {
                vacant.insert(position);
            }
        }
        if self.queue.len() > 3 * self.index.len() + 1024 {
            self.compact();
        }
    }

    /// Drops the dead places and gives the live entries new positions.
    fn compact(&mut self) {
        self.queue.retain(|queued| queued.live);
        self.head = 0;
        self.index.clear();
        let (queue, hasher) = (&self.queue, &self.hasher);
        for (position, queued) in queue.iter().enumerate() {
            self.index
                .insert_unique(hasher.hash(&queued.tuple), position as u32, |&p| {
                    hasher.hash(&queue[p as usize].tuple)
                });
        }
        // Give memory back after a burst, keeping room to grow.
        if self.queue.capacity() > 4 * self.queue.len() + 4096 {
            self.queue.shrink_to(2 * self.queue.len() + 1024);
        }
    }

    pub fn remove(&mut self, key: &HashedTuple) -> Option<TimeWaitEntry> {
        let (queue, head) = (&self.queue, self.head);
        let found = self
            .index
            .find_entry(key.hash(), |&p| {
                queue[Self::at(head, p)].tuple == *key.tuple()
            })
            .ok()?;
        let (position, _) = found.remove();
        let queued = &mut self.queue[Self::at(head, position)];
        queued.live = false;
        Some(queued.entry)
    }

    /// Places in the queue (live and dead).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The earliest expiry, if any (may be of an entry already removed,
    /// which only makes the caller wake a little early).
    pub fn next_expiry(&self) -> Option<Instant> {
        self.queue.front().map(|queued| queued.entry.expires)
    }

    /// Drops every entry expired at `now`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while let Some(front) = self.queue.front() {
            if front.entry.expires > now {
                break;
            }
            let (tuple, live) = (front.tuple, front.live);
            let position = self.head;
            self.queue.pop_front();
            self.head = self.head.wrapping_add(1);
            if live {
                // Its bucket is the one holding its position: no tuple to
                // compare.
                if let Ok(bucket) = self
                    .index
                    .find_entry(self.hasher.hash(&tuple), |&p| p == position)
                {
                    bucket.remove();
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

    fn tuple(port: u16) -> HashedTuple {
        TupleHasher::new(1).hashed(FourTuple {
            local: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 80).into(),
            remote: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), port).into(),
        })
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
        let mut table = TimeWaitTable::new(TupleHasher::new(1));
        table.insert(&tuple(1), entry(100));
        table.insert(&tuple(2), entry(200));
        table.insert(&tuple(1), entry(300)); // restarted
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
        let mut table = TimeWaitTable::new(TupleHasher::new(1));
        let mut now = 0;
        for round in 0..200u64 {
            for port in 0..1000u16 {
                now += 1;
                table.insert(&tuple(port), entry(1_000_000 + now));
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

    /// A restarted entry lives on at its new place; removing it leaves
    /// nothing for expiry to find; the old place expires as dead.
    #[test]
    fn restarted_then_removed_entries_are_gone_for_good() {
        let mut table = TimeWaitTable::new(TupleHasher::new(7));
        table.insert(&tuple(1), entry(100));
        table.insert(&tuple(1), entry(200));
        assert_eq!(table.len(), 1);
        assert_eq!(table.queued(), 2);
        assert_eq!(
            table.get(&tuple(1)).unwrap().expires,
            Instant::from_micros(200)
        );
        assert_eq!(
            table.expire(Instant::from_micros(150)),
            0,
            "the old place is dead"
        );
        assert!(table.remove(&tuple(1)).is_some());
        assert!(table.remove(&tuple(1)).is_none());
        assert_eq!(table.expire(Instant::from_micros(1000)), 0);
        assert_eq!(table.queued(), 0);
        assert!(table.is_empty());
    }

    /// What an entry costs at scale, index and queue together: within
    /// 140 bytes at 100,000 entries (the queue's 96-byte places at a
    /// power-of-two capacity, the index's 5 bytes a bucket). A map of
    /// whole entries plus an expiry queue of tuples took 164.
    #[test]
    fn an_entry_costs_under_140_bytes_at_scale() {
        let mut table = TimeWaitTable::new(TupleHasher::new(7));
        let hasher = TupleHasher::new(7);
        for n in 0..100_000u32 {
            let remote = SocketAddrV4::new(Ipv4Addr::from(0x0b00_0000 | n), 40000);
            let key = hasher.hashed(FourTuple {
                local: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 80).into(),
                remote: remote.into(),
            });
            table.insert(&key, entry(u64::from(n)));
        }
        let each = table.memory_bytes() / table.len();
        assert!(each <= 140, "{each} bytes an entry");
        assert_eq!(table.expire(Instant::from_micros(u64::MAX)), 100_000);
    }
}
