//! A deterministic simulation: two [`Stack`]s on a virtual clock joined by
//! an in-memory link with seeded loss, duplication, reordering and delay
//! (after quinn-proto's test `Pair`). Every segment crosses as bytes and is
//! parsed by `wire` with checksums verified, as on a real link.
//!
//! Used by the engine's tests, the simulation tests, the benches and the
//! fuzz target; it is plain code, not a test-only module, so all of them
//! can share it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use lastack_core::tcp::{Instant, Route, Secret, Stack, TcpConfig};
use lastack_core::wire::tcp::Checksum;
use lastack_core::wire::{ip, Ecn, IcmpRepr, IpRepr, TcpFlags, TcpOptions, TcpPacket, TcpRepr};

/// Which end of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// What the link does to segments, per direction. Probabilities in
/// parts per million.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkConfig {
    pub loss_ppm: u32,
    pub duplicate_ppm: u32,
    /// Extra delay drawn uniformly from `[0, jitter]` for a reordered segment.
    pub reorder_ppm: u32,
    pub delay: Duration,
    pub jitter: Duration,
    /// A bottleneck of this many bits per second in each direction (0:
    /// none): segments leave it one after another, each taking its length
    /// at this rate, before the delay.
    pub rate_bps: u64,
    /// Bytes the bottleneck's queue holds; a segment that does not fit is
    /// dropped (tail drop, as a router's FIFO). 0: unlimited.
    pub queue_bytes: usize,
    /// Queued bytes above which the bottleneck marks an ECN-capable
    /// segment Congestion Experienced (RFC 3168 §5) as it enters — a step
    /// AQM, as DCTCP's threshold K — instead of letting the queue grow
    /// into tail drop. 0: never marks.
    pub ecn_mark_bytes: usize,
}

impl LinkConfig {
    /// A perfect link with one-way `delay`.
    pub fn with_delay(delay: Duration) -> Self {
        Self {
            delay,
            ..Default::default()
        }
    }

    /// A path of `rtt` with a bottleneck of `rate_bps` whose queue holds
    /// one bandwidth-delay product (a common router sizing), no loss but
    /// what the queue drops.
    pub fn bottleneck(rtt: Duration, rate_bps: u64) -> Self {
        Self {
            delay: rtt / 2,
            rate_bps,
            queue_bytes: (rate_bps as f64 / 8.0 * rtt.as_secs_f64()) as usize,
            ..Default::default()
        }
    }

    /// `percent` % loss, plus a little duplication and reordering, 1 ms away.
    pub fn lossy(percent: u32) -> Self {
        Self {
            loss_ppm: percent * 10_000,
            duplicate_ppm: 5_000,
            reorder_ppm: 20_000,
            delay: Duration::from_millis(1),
            jitter: Duration::from_millis(3),
            ..Default::default()
        }
    }
}

/// xorshift64*: a tiny seeded generator, enough for link faults.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// True with probability `ppm` per million.
    pub fn chance(&mut self, ppm: u32) -> bool {
        ppm > 0 && (self.next_u64() % 1_000_000) < u64::from(ppm)
    }
    /// Uniform in `[0, n)`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// A segment on the wire.
#[derive(Debug)]
struct InFlight {
    to: Side,
    bytes: Vec<u8>,
}

/// Two stacks and the link between them.
pub struct Pair {
    pub a: Stack,
    pub b: Stack,
    pub now: Instant,
    pub link: LinkConfig,
    pub rng: Rng,
    /// (arrival, sequence) → segment; the sequence keeps ties in send order.
    in_flight: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    segments: Vec<Option<InFlight>>,
    free_segments: Vec<usize>,
    spare: Vec<Vec<u8>>,
    next_seq: u64,
    buf: Vec<u8>,
    /// Segments each side put on the link, and how many the link lost
    /// (at random, or dropped by a full bottleneck queue).
    pub sent: [u64; 2],
    pub lost: u64,
    /// Segments the bottleneck marked CE.
    pub marked: u64,
    /// Of `lost`: bytes of TCP payload lost, per sending side.
    pub lost_payload: [u64; 2],
    /// The bottleneck toward each side: when it is free again, and the
    /// departures still queued (time, bytes).
    bottleneck_free: [Instant; 2],
    bottleneck_queue: [std::collections::VecDeque<(Instant, usize)>; 2],
    bottleneck_queued: [usize; 2],
    /// Segments addressed to neither side (replies to spoofed sources),
    /// dropped as a router would: nobody is there.
    pub unroutable: u64,
}

impl Pair {
    /// Two stacks with the given configs and distinct secrets.
    pub fn new(a: TcpConfig, b: TcpConfig, link: LinkConfig, seed: u64) -> Self {
        let max = 1 << 20;
        Self {
            a: Stack::new(a, Secret([0xa5; 16]), max),
            b: Stack::new(b, Secret([0x5a; 16]), max),
            now: Instant::from_millis(1_000_000),
            link,
            rng: Rng::new(seed),
            in_flight: BinaryHeap::new(),
            segments: Vec::new(),
            free_segments: Vec::new(),
            spare: Vec::new(),
            next_seq: 0,
            buf: vec![0; 65536 + 128],
            sent: [0; 2],
            lost: 0,
            marked: 0,
            lost_payload: [0; 2],
            bottleneck_free: [Instant::from_millis(0); 2],
            bottleneck_queue: Default::default(),
            bottleneck_queued: [0; 2],
            unroutable: 0,
        }
    }

    pub fn stack(&mut self, side: Side) -> &mut Stack {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// Moves every segment both stacks want to send onto the link.
    pub fn transmit(&mut self) {
        for side in [Side::A, Side::B] {
            loop {
                let now = self.now;
                let mut buf = std::mem::take(&mut self.buf);
                let transmit = self.stack(side).poll_transmit(now, &mut buf);
                if let Some(t) = transmit {
                    self.sent[side as usize] += 1;
                    self.put_on_link(side.other(), &buf[..t.len]);
                }
                self.buf = buf;
                if transmit.is_none() {
                    break;
                }
            }
        }
    }

    fn put_on_link(&mut self, to: Side, bytes: &[u8]) {
        // A side has an address of each family: a packet to any other
        // (a SYN-ACK to a flooder's spoofed source) is lost.
        let (host, host6) = match to {
            Side::A => (CLIENT_IP, CLIENT_IP6),
            Side::B => (SERVER_IP, SERVER_IP6),
        };
        let routable = match ip::parse_packet(bytes) {
            Ok((ip, _)) => ip.dst_addr() == host || ip.dst_addr() == host6,
            Err(_) => true, // the receiver's parser drops it and counts it
        };
        if !routable {
            self.unroutable += 1;
            return;
        }
        let payload = tcp_payload_len(bytes);
        if self.rng.chance(self.link.loss_ppm) {
            self.lost += 1;
            self.lost_payload[to.other() as usize] += payload;
            return;
        }
        let Some((departure, congested)) = self.through_bottleneck(to, bytes.len()) else {
            self.lost += 1;
            self.lost_payload[to.other() as usize] += payload;
            return;
        };
        let mark = congested && bytes.len() >= 20 && Ecn::from_tos(bytes[1]) != Ecn::NotEct;
        self.marked += u64::from(mark);
        let copies = if self.rng.chance(self.link.duplicate_ppm) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = self.link.delay + departure.saturating_since(self.now);
            if self.rng.chance(self.link.reorder_ppm) {
                delay +=
                    Duration::from_micros(self.rng.below(self.link.jitter.as_micros() as u64 + 1));
            }
            let mut copy = self.spare.pop().unwrap_or_default();
            copy.clear();
            copy.extend_from_slice(bytes);
            if mark {
                ip::mark_ce(&mut copy[..]);
            }
            let slot = InFlight { to, bytes: copy };
            let index = match self.free_segments.pop() {
                Some(i) => {
                    self.segments[i] = Some(slot);
                    i
                }
                None => {
                    self.segments.push(Some(slot));
                    self.segments.len() - 1
                }
            };
            self.in_flight
                .push(Reverse((self.now + delay, self.next_seq, index)));
            self.next_seq += 1;
        }
    }

    /// When a frame of `len` bytes toward `to` leaves the bottleneck (now
    /// without one) and whether the queue stood above the marking
    /// threshold, or `None` when its queue is full.
    fn through_bottleneck(&mut self, to: Side, len: usize) -> Option<(Instant, bool)> {
        if self.link.rate_bps == 0 {
            return Some((self.now, false));
        }
        let side = to as usize;
        let queue = &mut self.bottleneck_queue[side];
        while let Some(&(left, bytes)) = queue.front() {
            if left > self.now {
                break;
            }
            queue.pop_front();
            self.bottleneck_queued[side] -= bytes;
        }
        if self.link.queue_bytes > 0 && self.bottleneck_queued[side] + len > self.link.queue_bytes {
            return None;
        }
        let congested =
            self.link.ecn_mark_bytes > 0 && self.bottleneck_queued[side] > self.link.ecn_mark_bytes;
        let wire = Duration::from_nanos(len as u64 * 8 * 1_000_000_000 / self.link.rate_bps);
        let departure = self.bottleneck_free[side].max(self.now) + wire;
        self.bottleneck_free[side] = departure;
        queue.push_back((departure, len));
        self.bottleneck_queued[side] += len;
        Some((departure, congested))
    }

    /// Delivers every segment due by now.
    pub fn deliver(&mut self) {
        while let Some(&Reverse((at, _, index))) = self.in_flight.peek() {
            if at > self.now {
                break;
            }
            self.in_flight.pop();
            let segment = self.segments[index].take().expect("in flight");
            self.free_segments.push(index);
            let now = self.now;
            deliver_bytes(self.stack(segment.to), now, &segment.bytes);
            self.spare.push(segment.bytes);
        }
    }

    /// Drains both stacks' events into `f` (with the side), transmits, and
    /// delivers what is due, until nothing more happens at this instant.
    pub fn settle(
        &mut self,
        mut f: impl FnMut(Side, &mut Stack, lastack_core::tcp::Event, Instant),
    ) {
        loop {
            let mut progressed = false;
            for side in [Side::A, Side::B] {
                let now = self.now;
                while let Some(event) = self.stack(side).poll_event() {
                    f(side, self.stack(side), event, now);
                    progressed = true;
                }
            }
            let before = self.next_seq;
            self.transmit();
            let due = self
                .in_flight
                .peek()
                .is_some_and(|Reverse((at, _, _))| *at <= self.now);
            self.deliver();
            if !progressed && before == self.next_seq && !due {
                return;
            }
        }
    }

    /// The next instant something happens: a delivery or a timer.
    pub fn next_wakeup(&mut self) -> Option<Instant> {
        let delivery = self.in_flight.peek().map(|Reverse((at, _, _))| *at);
        [delivery, self.a.poll_timeout(), self.b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Settles, then advances the clock to the next wakeup and runs the
    /// timers due then. Returns false when nothing is left to happen.
    pub fn step(
        &mut self,
        f: impl FnMut(Side, &mut Stack, lastack_core::tcp::Event, Instant),
    ) -> bool {
        self.settle(f);
        let Some(next) = self.next_wakeup() else {
            return false;
        };
        self.now = self.now.max(next);
        let now = self.now;
        self.a.handle_timeout(now);
        self.b.handle_timeout(now);
        true
    }
}

/// Parses `bytes` (IPv4 or IPv6 + TCP, or ICMP) as a receiver would and
/// hands it to `stack`. Malformed bytes are dropped, as the shard drops them.
pub fn deliver_bytes(stack: &mut Stack, now: Instant, bytes: &[u8]) -> bool {
    let Ok((ip, segment)) = ip::parse_packet(bytes) else {
        return false;
    };
    match IcmpRepr::parse(&ip, segment) {
        Ok(Some(icmp)) => {
            stack.handle_icmp(now, &icmp);
            return true;
        }
        Ok(None) => {}
        Err(_) => return false,
    }
    let Ok(tcp_packet) = TcpPacket::new_checked(segment) else {
        return false;
    };
    let Ok(tcp) = TcpRepr::parse(&tcp_packet, ip.src_addr(), ip.dst_addr(), Checksum::Verify)
    else {
        return false;
    };
    stack.handle_segment(now, Route::default(), &ip, &tcp);
    true
}

/// Side A's address (the client in the simulations).
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// Side B's address (the server).
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// Side A's IPv6 address.
pub const CLIENT_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
/// Side B's IPv6 address.
pub const SERVER_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

pub fn client_addr(port: u16) -> SocketAddr {
    SocketAddr::new(CLIENT_IP.into(), port)
}

pub fn server_addr(port: u16) -> SocketAddr {
    SocketAddr::new(SERVER_IP.into(), port)
}

pub fn client_addr6(port: u16) -> SocketAddr {
    SocketAddr::new(CLIENT_IP6.into(), port)
}

pub fn server_addr6(port: u16) -> SocketAddr {
    SocketAddr::new(SERVER_IP6.into(), port)
}

/// The bytes (IP + TCP, of `from`'s family) of a bare SYN from `from` to
/// `to`, as a spoofing flooder would send it.
pub fn syn_bytes(from: SocketAddr, to: SocketAddr, seq: u32, out: &mut Vec<u8>) {
    let repr = TcpRepr {
        src_port: from.port(),
        dst_port: to.port(),
        seq_number: seq,
        ack_number: 0,
        flags: TcpFlags::SYN,
        window_len: 64240,
        urgent_at: 0,
        options: TcpOptions {
            mss: Some(1460),
            ..Default::default()
        },
        payload: &[],
    };
    let ip = IpRepr::tcp(from.ip(), to.ip(), repr.buffer_len() as u16, Ecn::NotEct);
    out.clear();
    out.resize(ip.buffer_len() + repr.buffer_len(), 0);
    ip.emit(out);
    repr.emit(&mut out[ip.buffer_len()..], from.ip(), to.ip());
}

/// TCP payload bytes in an IP packet (0 for anything malformed).
fn tcp_payload_len(packet: &[u8]) -> u64 {
    let Ok((_, segment)) = ip::parse_packet(packet) else {
        return 0;
    };
    let Ok(tcp) = TcpPacket::new_checked(segment) else {
        return 0;
    };
    tcp.payload().len() as u64
}
