//! ICMP "fragmentation needed" and ICMPv6 "packet too big" messages
//! that reached the wrong shard.
//!
//! The NIC spreads frames over rx queues by a hash of their own addresses.
//! For an ICMP message those are the router's and the VIP, not the quoted
//! flow's four-tuple, so it often lands on another queue than the flow it
//! is about; and an AF_XDP socket only takes frames of its own queue, so
//! the XDP program cannot send it on. The shard that finds no connection
//! for it posts it here; every shard reads what is new once per loop
//! iteration (one atomic load when nothing is) and hands each message to
//! its engine, where the owner takes it (and checks it like any other,
//! RFC 5927). Such messages are rare (a router limits them, and a flow
//! needs one or two), so a mutex on the slow side is fine.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use lastack_core::wire::IcmpRepr;

/// Messages kept for shards that have not read them yet; older ones are
/// forgotten (the sender resends, and the router answers again).
const CAPACITY: usize = 256;

/// Shared by every shard of a runtime (see the module doc).
#[derive(Debug, Default)]
pub struct IcmpRelay {
    /// Sequence number of the latest message posted (0: none yet).
    posted: AtomicU64,
    recent: Mutex<VecDeque<(u64, IcmpRepr)>>,
}

impl IcmpRelay {
    /// Posts a message no connection of the posting shard took.
    pub fn post(&self, message: IcmpRepr) {
        let mut recent = self.recent.lock().expect("relay lock");
        let seq = self.posted.load(Ordering::Relaxed) + 1;
        recent.push_back((seq, message));
        if recent.len() > CAPACITY {
            recent.pop_front();
        }
        self.posted.store(seq, Ordering::Release);
    }

    /// Calls `f` with every message posted after `*seen` and moves `*seen`
    /// past them (a shard reads its own posts too: its engine finds no
    /// connection for them again, and they are not posted twice).
    pub fn read_new(&self, seen: &mut u64, mut f: impl FnMut(&IcmpRepr)) {
        let latest = self.posted.load(Ordering::Acquire);
        if latest == *seen {
            return;
        }
        let recent = self.recent.lock().expect("relay lock");
        for (seq, message) in recent.iter() {
            if *seq > *seen {
                f(message);
            }
        }
        *seen = latest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(mtu: u16) -> IcmpRepr {
        IcmpRepr::V4(lastack_core::wire::Icmpv4Repr::FragmentationNeeded {
            next_hop_mtu: mtu,
            quoted: lastack_core::wire::QuotedTcp {
                src: "10.0.0.1:80".parse().unwrap(),
                dst: "10.0.0.2:4000".parse().unwrap(),
                seq: 1,
                datagram_len: 1500,
            },
        })
    }

    #[test]
    fn each_reader_sees_each_message_once_and_old_ones_are_forgotten() {
        let relay = IcmpRelay::default();
        let (mut a, mut b) = (0, 0);
        relay.post(message(1400));
        relay.post(message(1300));
        let mut got = Vec::new();
        relay.read_new(&mut a, |m| got.push(*m));
        assert_eq!(got, [message(1400), message(1300)]);
        got.clear();
        relay.read_new(&mut a, |m| got.push(*m));
        assert!(got.is_empty(), "nothing new");
        for mtu in 0..CAPACITY as u16 + 10 {
            relay.post(message(mtu));
        }
        let mut count = 0;
        relay.read_new(&mut b, |_| count += 1);
        assert_eq!(count, CAPACITY, "the oldest were forgotten");
    }
}
