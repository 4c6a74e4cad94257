//! ICMP "fragmentation needed" and ICMPv6 "packet too big" messages,
//! and segments forwarded by a cluster peer ([`SegmentRelay`]), that
//! reached the wrong shard.
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

/// What shards post for one another: a sequence number per item, the
/// latest in an atomic (a reader with nothing new pays one load), the last
/// [`CAPACITY`] items under a mutex.
#[derive(Debug)]
struct Board<T> {
    /// Sequence number of the latest item posted (0: none yet).
    posted: AtomicU64,
    recent: Mutex<VecDeque<(u64, T)>>,
}

impl<T> Default for Board<T> {
    fn default() -> Self {
        Self {
            posted: AtomicU64::new(0),
            recent: Mutex::new(VecDeque::new()),
        }
    }
}

impl<T> Board<T> {
    fn post(&self, item: T) {
        let mut recent = self.recent.lock().expect("relay lock");
        let seq = self.posted.load(Ordering::Relaxed) + 1;
        recent.push_back((seq, item));
        if recent.len() > CAPACITY {
            recent.pop_front();
        }
        self.posted.store(seq, Ordering::Release);
    }

    /// Calls `f` with every item posted after `*seen` and moves `*seen`
    /// past them.
    fn read_new(&self, seen: &mut u64, mut f: impl FnMut(&mut T)) {
        let latest = self.posted.load(Ordering::Acquire);
        if latest == *seen {
            return;
        }
        let mut recent = self.recent.lock().expect("relay lock");
        for (seq, item) in recent.iter_mut() {
            if *seq > *seen {
                f(item);
            }
        }
        *seen = latest;
    }
}

/// Shared by every shard of a runtime (see the module doc).
#[derive(Debug, Default)]
pub struct IcmpRelay(Board<IcmpRepr>);

impl IcmpRelay {
    /// Posts a message no connection of the posting shard took.
    pub fn post(&self, message: IcmpRepr) {
        self.0.post(message);
    }

    /// Calls `f` with every message posted after `*seen` and moves `*seen`
    /// past them (a shard reads its own posts too: its engine finds no
    /// connection for them again, and they are not posted twice).
    pub fn read_new(&self, seen: &mut u64, mut f: impl FnMut(&IcmpRepr)) {
        self.0.read_new(seen, |message| f(message));
    }
}

/// Segments a cluster peer forwarded to this instance (IP in IP) that
/// reached a shard without their flow: the NIC spread them by the outer
/// header, not the flow's. As with ICMP, the AF_XDP socket of another queue
/// cannot take them from XDP, so the shard posts them here and the others
/// look. The shard that knows the flow takes the segment; when every other
/// shard has declined it, the last to decline settles it as the engine
/// settles an unknown flow (a reset), so the client never waits on a flow
/// nobody has. Rare (only segments of flows an ECMP change moved, and only
/// those that land on the wrong queue): a copy and a mutex are fine here.
#[derive(Debug, Default)]
pub struct SegmentRelay {
    board: Board<Relayed>,
    /// Each shard's control block, by index, to wake it when a segment
    /// is posted (a sleeping shard would otherwise look only when its
    /// sleep ends).
    shards: Mutex<Vec<Option<std::sync::Arc<super::ShardControl>>>>,
}

#[derive(Debug)]
struct Relayed {
    /// The shard that posted it (it does not read its own).
    poster: usize,
    /// The whole frame, as received.
    frame: Vec<u8>,
    /// Other shards that read it and did not know its flow.
    declined: usize,
}

impl SegmentRelay {
    /// Shard `index` runs with `control` now (at start and at a restart).
    pub fn register(&self, index: usize, control: std::sync::Arc<super::ShardControl>) {
        let mut shards = self.shards.lock().expect("relay lock");
        if shards.len() <= index {
            shards.resize(index + 1, None);
        }
        shards[index] = Some(control);
    }

    /// Posts the frame `frame` that shard `poster` found no flow for, and
    /// wakes the other shards.
    pub fn post(&self, poster: usize, frame: &[u8]) {
        self.board.post(Relayed {
            poster,
            frame: frame.to_vec(),
            declined: 0,
        });
        let shards = self.shards.lock().expect("relay lock");
        for (index, control) in shards.iter().enumerate() {
            if let (Some(control), true) = (control, index != poster) {
                control.nudge();
            }
        }
    }

    /// Shard `me` of `shards`: calls `take(frame, last)` for each segment
    /// another shard posted after `*seen`. `take` says whether it knew the
    /// flow (and handled the segment); `last` is true when every other shard
    /// has declined it, and `take` must then settle it (reset). One atomic
    /// load when nothing is new.
    pub fn read_new(
        &self,
        me: usize,
        shards: usize,
        seen: &mut u64,
        mut take: impl FnMut(&[u8], bool) -> bool,
    ) {
        self.board.read_new(seen, |relayed| {
            if relayed.poster == me {
                return;
            }
            let last = relayed.declined + 2 >= shards;
            if !take(&relayed.frame, last) {
                relayed.declined += 1;
            }
        });
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

    #[test]
    fn a_segment_goes_to_the_shard_that_knows_it_or_is_settled_by_the_last_to_decline() {
        let relay = SegmentRelay::default();
        let mut seen = [0u64; 3];
        let woken: Vec<_> = (0..3)
            .map(|i| {
                let control = std::sync::Arc::new(super::super::ShardControl::new().unwrap());
                relay.register(i, control.clone());
                control
            })
            .collect();
        relay.post(0, b"known to 2");
        relay.post(0, b"known to none");
        let readable = |c: &super::super::ShardControl| {
            nix::poll::poll(
                &mut [nix::poll::PollFd::new(
                    c.wake_fd(),
                    nix::poll::PollFlags::POLLIN,
                )],
                nix::poll::PollTimeout::ZERO,
            )
            .unwrap()
                == 1
        };
        assert!(!readable(&woken[0]), "the poster is not woken");
        assert!(readable(&woken[1]) && readable(&woken[2]), "the others are");
        let mut calls = Vec::new();
        for (me, seen) in seen.iter_mut().enumerate().skip(1) {
            relay.read_new(me, 3, seen, |frame, last| {
                calls.push((me, frame.to_vec(), last));
                me == 2 && frame == b"known to 2"
            });
        }
        assert_eq!(
            calls,
            [
                (1, b"known to 2".to_vec(), false),
                (1, b"known to none".to_vec(), false),
                (2, b"known to 2".to_vec(), true),
                (2, b"known to none".to_vec(), true),
            ],
            "the poster reads none; shard 2 is the last to look at each"
        );
        relay.read_new(0, 3, &mut seen[0], |_, _| panic!("its own posts"));
        let mut again = false;
        relay.read_new(1, 3, &mut seen[1], |_, _| {
            again = true;
            false
        });
        assert!(!again, "each segment once per shard");
    }
}
