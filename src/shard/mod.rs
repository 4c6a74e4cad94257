//! One shard: one rx queue, one core, one AF_XDP socket and UMEM, one TCP
//! [`Stack`], one io_uring. Shards share nothing on the fast path.
//!
//! # One owner per connection
//! Everything the shard serves lives in one slab ([`serving`]): an entry
//! per accepted connection holding what serves it (echo, discard, source,
//! or a proxy [`Session`](crate::proxy::Session)). Its slab key is the tag
//! the engine returns with every event of the connection and the owner of
//! its backend socket in the io_uring, so an event or completion finds
//! what serves it by index, never by lookup; and the key names its
//! deadline in the shard's timer wheel, so nothing scans.
//!
//! # The loop
//! 1. take completed tx frames back, refill the fill ring;
//! 2. take an rx batch (up to 64 frames), parse each with `wire` (drops
//!    counted by reason), hand TCP segments to the engine, release frames;
//! 3. run the engine's due timers;
//! 4. the io_uring's completions, each to the session that owns the socket;
//! 5. the shard's due deadlines (idle timeouts, grace periods, waits for a
//!    backend's FIN), each to what serves the connection;
//! 6. the engine's events, each to what serves the connection;
//! 7. collect the engine's output into a tx batch (Ethernet header from
//!    the connection's route), transmit it with one ring operation; submit
//!    the io_uring's queued work;
//! 8. if nothing happened for the busy-poll window, sleep (in io_uring,
//!    on packets, completions and the next deadline; at most 100 ms).
//!
//! Counters are plain integers in the shard, published to a shared
//! snapshot every 100 ms, never per packet.

mod control;
mod entries;
mod plan;
pub mod relay;
pub mod route;
pub mod service;
mod serving;

pub use control::{Command, ShardControl};
pub use plan::{Forwarding, ListenerCounts, ListenerPlan, Serve, ShardPlan, ShardUpdate};
pub use serving::Serving;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use xsk_rs::FrameDesc;

use crate::link::xsk::{FrameCounts, XskSocket};
use crate::proxy::{ProxyStats, SourcePorts};
use crate::tcp::{Disposition, HandshakeKeys, IcmpOutcome, Instant, Secret, Stack, Stats};
use crate::wire::{self, Frame};
use serving::Served;

/// After work, the loop keeps polling the rings this long before it
/// sleeps (unless configured otherwise): under load the next batch comes
/// sooner than a sleep/wake-up round trip; when idle the shard sleeps.
pub const BUSY_POLL: Duration = Duration::from_micros(50);

/// The longest the loop sleeps.
const MAX_SLEEP: Duration = Duration::from_millis(100);

/// Frames the shard dropped before the engine, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkDrops {
    pub truncated: u64,
    pub malformed: u64,
    pub bad_checksum: u64,
    pub fragment: u64,
    pub unsupported: u64,
    /// Valid frames that are not TCP (the XDP program should not send us
    /// any; counted if it does).
    pub not_tcp: u64,
    /// IP-in-IP segments whose outer source is not one of `[cluster]
    /// peers` (or there are none): dropped.
    pub tunnelled: u64,
}

/// A shard's counters.
#[derive(Debug, Clone, Default)]
pub struct ShardStats {
    pub queue: u32,
    /// How many snapshots have been published: a reader waiting for state
    /// that is new since some moment waits for this to advance.
    pub published: u64,
    pub rx_frames: u64,
    pub tx_frames: u64,
    pub drops: LinkDrops,
    pub tx_ring_full: u64,
    pub frames: FrameCounts,
    pub tcp: Stats,
    pub connections: usize,
    /// Connection slots in use, finished-but-unreleased ones included
    /// (0 when idle: anything else is a handle leak).
    pub slots_in_use: usize,
    /// Connection slots held: up to the peak of open connections, and
    /// back down as connections close (the slab's free tail is cut off).
    pub slots_held: usize,
    /// Connections the shard serves (its slab's entries).
    pub served: usize,
    /// Deadlines armed in the shard's timer wheel.
    pub deadlines: usize,
    pub time_wait: usize,
    /// Bytes the TIME-WAIT table holds.
    pub time_wait_bytes: usize,
    /// Connection buffer memory lent to connections now, the most ever
    /// lent, and held (lent and spare).
    pub buffer_lent_bytes: usize,
    pub buffer_peak_bytes: usize,
    pub buffer_held_bytes: usize,
    /// Times the lent buffer memory reached `[tcp] buffer_budget`.
    pub buffer_shortages: u64,
    /// Times freed memory was handed back to the system after load fell.
    pub memory_give_backs: u64,
    /// ICMP "fragmentation needed" for a flow with no connection here,
    /// posted to the other shards (`relay.rs`).
    pub icmp_relayed: u64,
    /// Posted by another shard and taken by a connection here.
    pub icmp_relay_taken: u64,
    /// Segments of flows another cluster instance owns, sent on to it.
    pub forwarded: u64,
    /// Segments forwarded here that reached this shard without their flow,
    /// posted to the other shards (`relay.rs`).
    pub segments_relayed: u64,
    /// Posted by another shard and taken by a connection here.
    pub segment_relay_taken: u64,
    /// Such segments that could not go (no such peer, no free frame, too
    /// big for a frame): dropped, the client retransmits.
    pub forward_failures: u64,
    /// Per listener, in the engine's order.
    pub listeners: Vec<ListenerStats>,
    /// The shard drains (its listeners are closed).
    pub draining: bool,
    /// The config generation (reload) the shard runs.
    pub config_generation: u64,
    /// Connections closed because a drain ran out of time (FIN, then RST
    /// if they did not finish).
    pub closed_at_drain_timeout: u64,
    /// Free source ports per pool and source address (proxy shards).
    pub source_ports: Vec<SourcePorts>,
    /// Connections per TCP state (name, count).
    pub states: Vec<(&'static str, usize)>,
    pub proxy: ProxyStats,
}

/// One listener's counters on a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerStats {
    pub name: String,
    pub addr: std::net::SocketAddr,
    /// Taking new connections (not closed by a drain or a reload).
    pub listening: bool,
    /// Connections it accepted that are still served.
    pub open: u32,
    /// Connections reset at its limit (`max_connections`, over every
    /// shard).
    pub over_limit: u64,
    pub syn_queue: usize,
    pub accept_queue: usize,
}

/// Handle to a running shard.
#[derive(Debug)]
pub struct ShardHandle {
    pub control: Arc<ShardControl>,
    pub stats: Arc<Mutex<ShardStats>>,
    pub thread: std::thread::JoinHandle<ShardStats>,
}

impl ShardHandle {
    /// The latest published snapshot.
    pub fn snapshot(&self) -> ShardStats {
        self.stats.lock().expect("stats lock").clone()
    }

    /// Stops the shard and returns its last counters (`None` if its thread
    /// panicked).
    pub fn stop(self) -> Option<ShardStats> {
        self.control.set(Command::Stop);
        self.thread.join().ok()
    }
}

/// Where a shard's clock starts (`now` at its birth), in µs.
const START_MICROS: u64 = 1_000_000;

/// Microseconds since the Unix epoch (the clock instances agree on).
fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The keys handshakes are made from: the cluster's when the config has
/// them (the first mints, the rest are honoured), else the shard's own;
/// always on the Unix-time clock; with forwarding, this instance's id and
/// its peers'.
fn handshake_keys(
    own: Secret,
    clock_offset: u64,
    cluster: Option<&[Secret]>,
    forwarding: Option<&Forwarding>,
) -> HandshakeKeys {
    let (current, accepted) = match cluster {
        Some([first, rest @ ..]) => (*first, rest.to_vec()),
        _ => (own, Vec::new()),
    };
    HandshakeKeys {
        current,
        accepted,
        clock_offset,
        owner: forwarding.map(|f| f.instance),
        peers: forwarding.map_or(0, Forwarding::peer_mask),
    }
}

/// A segment another instance forwarded here (`Frame::Tunnelled`): the
/// engine takes it if the flow is this shard's, or if `last` (no other
/// shard can have it: the engine resets it). Returns whether the flow was
/// this shard's.
fn take_forwarded(
    stack: &mut Stack,
    now: Instant,
    ethernet: &wire::EthernetRepr,
    ip: &wire::IpRepr,
    tcp: &wire::TcpRepr<'_>,
    last: bool,
) -> bool {
    let known = stack.knows_flow(ip, tcp);
    if known || last {
        let route = route::route_for_reply(ethernet);
        stack.handle_forwarded_segment(now, route, ip, tcp);
    }
    known
}

/// Everything one shard owns.
pub struct Shard {
    socket: XskSocket,
    stack: Stack,
    served: Served,
    stats: ShardStats,
    clock: std::time::Instant,
    /// The shard's own key, and the clock offset that turns `now` into
    /// Unix time (the handshake clock instances agree on).
    secret: Secret,
    clock_offset: u64,
    /// Forwarding to the cluster's other instances, if configured.
    forwarding: Option<Forwarding>,
    /// Frames written to forward segments, sent with the next tx batch.
    forwards: Vec<FrameDesc>,
    /// A forwarded packet on its way from an rx frame to a tx frame.
    scratch: Vec<u8>,
    busy_poll: Duration,
    /// When memory was last given back, and the slots held then.
    memory_given_back: (Instant, usize),
    /// ICMP messages for other shards' flows, and how far this one read.
    relay: Arc<relay::IcmpRelay>,
    relay_seen: u64,
    /// Forwarded segments for other shards' flows, how far this one read,
    /// and this shard's index among how many.
    segments: Arc<relay::SegmentRelay>,
    segments_seen: u64,
    index: (usize, usize),
}

impl Shard {
    /// Builds a shard from its plan (on the thread that will run it).
    pub fn new(plan: ShardPlan) -> std::io::Result<Self> {
        let clock = std::time::Instant::now();
        let clock_offset = unix_micros().saturating_sub(START_MICROS);
        let stack = Stack::new(plan.tcp.clone(), plan.secret, plan.max_connections);
        let queue = plan.socket.queue();
        let mut shard = Self {
            secret: plan.secret,
            clock_offset,
            forwarding: None,
            forwards: Vec::with_capacity(crate::link::xsk::BATCH),
            scratch: Vec::with_capacity(usize::from(u16::MAX)),
            socket: plan.socket,
            stack,
            served: Served::new(plan.drain_refuse),
            stats: ShardStats {
                queue,
                ..Default::default()
            },
            clock,
            busy_poll: plan.busy_poll,
            memory_given_back: (Instant::ZERO, 0),
            relay_seen: 0,
            relay: plan.relay,
            segments_seen: 0,
            segments: plan.segments,
            index: plan.index,
        };
        shard.take(ShardUpdate {
            generation: plan.generation,
            listeners: plan.listeners,
            tcp: plan.tcp,
            max_connections: plan.max_connections,
            upstream: plan.upstream,
            drain_refuse: plan.drain_refuse,
            cluster_keys: plan.cluster_keys,
            forwarding: plan.forwarding,
        })?;
        Ok(shard)
    }

    /// Takes `update` (at start, and at each reload): forwarding and the
    /// handshake keys, then what `Served::apply` does.
    fn take(&mut self, update: ShardUpdate) -> std::io::Result<()> {
        self.forwarding = update.forwarding;
        let keys = handshake_keys(
            self.secret,
            self.clock_offset,
            update.cluster_keys.as_deref(),
            update.forwarding.as_ref(),
        );
        self.stack.set_handshake_keys(self.now(), keys);
        self.served.apply(&mut self.stack, update)
    }

    fn now(&self) -> Instant {
        Instant::from_micros(START_MICROS + self.clock.elapsed().as_micros() as u64)
    }

    /// Starts a shard thread (pinned to `core` if given) that builds the
    /// shard from `plan` and runs it; returns once it is built.
    pub fn spawn(plan: ShardPlan, core: Option<usize>) -> std::io::Result<ShardHandle> {
        let control = Arc::new(ShardControl::new()?);
        let stats = Arc::new(Mutex::new(ShardStats::default()));
        let (thread_control, thread_stats) = (control.clone(), stats.clone());
        let (built, ready) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("shard-{}", plan.socket.queue()))
            .spawn(move || {
                if let Some(core) = core {
                    let mut set = nix::sched::CpuSet::new();
                    if set.set(core).is_ok() {
                        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
                    }
                }
                let mut shard = match Shard::new(plan) {
                    Ok(shard) => {
                        let _ = built.send(Ok(()));
                        shard
                    }
                    Err(e) => {
                        let _ = built.send(Err(e));
                        return ShardStats::default();
                    }
                };
                shard.run(&thread_control, &thread_stats);
                shard.snapshot()
            })?;
        ready
            .recv()
            .map_err(|_| std::io::Error::other("the shard thread ended while starting"))??;
        Ok(ShardHandle {
            control,
            stats,
            thread,
        })
    }

    /// The loop (see the module docs) until told to stop.
    pub fn run(&mut self, control: &ShardControl, published: &Mutex<ShardStats>) {
        let mut rx = Vec::with_capacity(crate::link::xsk::BATCH);
        let mut tx: Vec<FrameDesc> = Vec::with_capacity(crate::link::xsk::BATCH);
        let mut last_publish = self.now();
        let mut last_work = self.now();
        let mut stage = Command::Run;
        loop {
            let command = control.command();
            if command != stage {
                if command >= Command::Stop {
                    if command == Command::Fault {
                        panic!("shard {}: fault injected", self.stats.queue);
                    }
                    break;
                }
                self.enter(command, self.now());
                stage = command;
            }
            if let Some(update) = control.take_update() {
                if let Err(e) = self.take(update) {
                    tracing::error!(shard = self.stats.queue, "reload: {e}");
                }
            }
            self.socket.reap_completions();
            self.socket.refill();
            let received = self.receive(&mut rx);
            let now = self.now();
            self.stack.handle_timeout(now);
            let completed = self.served.completions(&mut self.stack, now);
            self.served.expire(&mut self.stack, now);
            self.served.events(&mut self.stack, now);
            self.served.wake(&mut self.stack, now);
            let sent = self.transmit(now, &mut tx);
            if let Some(proxy) = self.served.proxy.as_mut() {
                proxy.submit();
            }
            if now - last_publish >= Duration::from_millis(100) {
                self.stack.release_memory();
                self.served.release_memory();
                self.stats.published += 1;
                *published.lock().expect("stats lock") = self.snapshot();
                last_publish = now;
                self.give_back_memory(now);
            }
            if received > 0 || sent > 0 || completed > 0 {
                last_work = now;
            } else if now - last_work < self.busy_poll {
                // Busy: more frames are likely within microseconds; a
                // sleep and wake-up per batch would cost more than this.
                std::hint::spin_loop();
            } else {
                self.sleep(now, control);
            }
        }
        self.shutdown();
        *published.lock().expect("stats lock") = self.snapshot();
    }

    /// A later stage of the shard's life (see [`control`]).
    fn enter(&mut self, stage: Command, now: Instant) {
        match stage {
            Command::Drain => {
                self.stats.draining = true;
                self.served.drain(&mut self.stack);
            }
            Command::Finish => {
                self.stats.draining = true;
                self.served.drain(&mut self.stack);
                self.stats.closed_at_drain_timeout += self.served.finish(&mut self.stack, now);
            }
            Command::Run | Command::Stop | Command::Fault => {}
        }
    }

    /// Step 8: sleeps until a packet, a completion, the next deadline, or
    /// a wake-up from the runtime.
    fn sleep(&mut self, now: Instant, control: &ShardControl) {
        let horizon = now + MAX_SLEEP;
        let next = [
            self.stack.poll_timeout(),
            self.served.next_deadline_before(horizon),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(horizon)
        .min(horizon);
        let mut wait = Duration::from_micros(next.micros().saturating_sub(now.micros()));
        // Frames still in the tx ring need kicks and completions.
        if self.socket.counts().tx > 0 {
            wait = wait.min(Duration::from_millis(1));
        }
        self.socket.kick_tx();
        match self.served.proxy.as_mut() {
            Some(proxy) => {
                use std::os::fd::AsRawFd;
                let (xsk, wake) = (self.socket.fd().as_raw_fd(), control.wake_fd().as_raw_fd());
                proxy.wait(xsk, wake, wait);
            }
            None => {
                let ms = wait.as_micros().div_ceil(1000).min(u16::MAX as u128) as u16;
                self.socket.wait_readable_or(control.wake_fd(), ms);
            }
        }
        control.woken();
    }

    /// Resets every proxied client and backend socket and every
    /// connection still open (a stop, or the end of a drain's grace), and
    /// sends what that produced.
    fn shutdown(&mut self) {
        let now = self.now();
        self.served.shutdown(&mut self.stack, now);
        self.stack.abort_all(now);
        let mut tx = Vec::with_capacity(crate::link::xsk::BATCH);
        self.transmit(now, &mut tx);
        self.socket.kick_tx();
    }

    /// Step 2: an rx batch through `wire` into the engine.
    fn receive(&mut self, rx: &mut Vec<FrameDesc>) -> usize {
        rx.clear();
        let n = self.socket.receive(rx);
        let now = self.now();
        for desc in rx.iter() {
            self.socket.prefetch(desc);
        }
        for desc in rx.drain(..) {
            self.stats.rx_frames += 1;
            let mut forward = None;
            let mut relay_segment = false;
            match wire::parse_frame(self.socket.frame(&desc)) {
                Ok(Frame::Tcp { ethernet, ip, tcp }) => {
                    let route = route::route_for_reply(&ethernet);
                    if let Disposition::Forward { owner } =
                        self.stack.handle_segment(now, route, &ip, &tcp)
                    {
                        forward = Some((owner, ethernet));
                    }
                }
                Ok(Frame::Tunnelled {
                    ethernet,
                    outer,
                    ip,
                    tcp,
                }) => {
                    // Only from a peer: the outer source is what an edge
                    // filter (uRPF) checked, not the inner one.
                    let from_peer = self
                        .forwarding
                        .is_some_and(|f| f.peers.contains(&Some(outer.src_addr())));
                    if !from_peer {
                        self.stats.drops.tunnelled += 1;
                    } else {
                        // RSS spread it by the outer header: with other
                        // shards, the flow may be one of theirs.
                        let only_shard = self.index.1 == 1;
                        let known =
                            take_forwarded(&mut self.stack, now, &ethernet, &ip, &tcp, only_shard);
                        relay_segment = !known && !only_shard;
                    }
                }
                Ok(Frame::Icmp { icmp, .. }) => {
                    if self.stack.handle_icmp(now, &icmp) == IcmpOutcome::NoConnection {
                        self.relay.post(icmp);
                        self.stats.icmp_relayed += 1;
                    }
                }
                Ok(_) => self.stats.drops.not_tcp += 1,
                Err(wire::Error::Truncated) => self.stats.drops.truncated += 1,
                Err(wire::Error::Malformed) => self.stats.drops.malformed += 1,
                Err(wire::Error::Checksum) => self.stats.drops.bad_checksum += 1,
                Err(wire::Error::Fragmented) => self.stats.drops.fragment += 1,
                Err(wire::Error::Unsupported) => self.stats.drops.unsupported += 1,
            }
            if let Some((owner, ethernet)) = forward {
                self.forward(&desc, owner, &ethernet);
            }
            if relay_segment {
                self.segments.post(self.index.0, self.socket.frame(&desc));
                self.stats.segments_relayed += 1;
            }
            self.socket.release(desc);
        }
        let (stack, taken) = (&mut self.stack, &mut self.stats.segment_relay_taken);
        let (me, shards) = self.index;
        self.segments
            .read_new(me, shards, &mut self.segments_seen, |frame, last| {
                let Ok(Frame::Tunnelled {
                    ethernet, ip, tcp, ..
                }) = wire::parse_frame(frame)
                else {
                    return false;
                };
                let known = take_forwarded(stack, now, &ethernet, &ip, &tcp, last);
                *taken += u64::from(known);
                known
            });
        let (stack, taken) = (&mut self.stack, &mut self.stats.icmp_relay_taken);
        self.relay.read_new(&mut self.relay_seen, |icmp| {
            if stack.handle_icmp(now, icmp) == IcmpOutcome::Taken {
                *taken += 1;
            }
        });
        n
    }

    /// Hands the segment in `desc` to cluster instance `owner`, which owns
    /// its flow: the IP packet inside an outer header from this instance
    /// to it (`wire::tunnel`), in a frame back to the router it came from.
    /// Counted; a segment that cannot go (no such peer, no frame, too big)
    /// is dropped and the client retransmits.
    fn forward(&mut self, desc: &FrameDesc, owner: u8, arrived: &wire::EthernetRepr) {
        match self.encapsulate(desc, owner, arrived) {
            Some(tx) => {
                self.forwards.push(tx);
                self.stats.forwarded += 1;
            }
            None => self.stats.forward_failures += 1,
        }
    }

    /// The tx frame [`Shard::forward`] sends, or `None` if it cannot be
    /// written.
    fn encapsulate(
        &mut self,
        desc: &FrameDesc,
        owner: u8,
        arrived: &wire::EthernetRepr,
    ) -> Option<FrameDesc> {
        let forwarding = self.forwarding?;
        let peer = forwarding.peers[usize::from(owner)]?;
        let packet = self.socket.frame(desc).get(arrived.buffer_len()..)?;
        let len = wire::ip::total_len(packet)?;
        let inner_v6 = packet[0] >> 4 == 6;
        self.scratch.clear();
        self.scratch.extend_from_slice(&packet[..len]);
        let outer = wire::tunnel::outer_header(forwarding.address, peer, inner_v6, len as u16)?;
        let route = route::route_for_reply(arrived);
        let mut tx = self.socket.alloc_tx()?;
        let scratch = &self.scratch;
        let mut written = false;
        self.socket.write_frame(&mut tx, |frame| {
            let outer_v6 = matches!(outer, wire::IpRepr::Ipv6(_));
            let eth = route::write_ethernet(&route, outer_v6, frame);
            let total = eth + outer.buffer_len() + scratch.len();
            if total > frame.len() {
                return 0;
            }
            outer.emit(&mut frame[eth..]);
            frame[eth + outer.buffer_len()..total].copy_from_slice(scratch);
            written = true;
            total
        });
        if !written {
            self.socket.release(tx);
            return None;
        }
        Some(tx)
    }

    /// Step 7: the engine's output into one tx batch (after any segments
    /// forwarded to other instances).
    fn transmit(&mut self, now: Instant, tx: &mut Vec<FrameDesc>) -> usize {
        let mut sent = 0;
        tx.append(&mut self.forwards);
        loop {
            while tx.len() < crate::link::xsk::BATCH {
                let Some(mut desc) = self.socket.alloc_tx() else {
                    break;
                };
                let stack = &mut self.stack;
                let mut produced = false;
                self.socket.write_frame(&mut desc, |frame| {
                    let len = route::write_next_frame(stack, now, frame);
                    produced = len.is_some();
                    len.unwrap_or(0)
                });
                if !produced {
                    self.socket.release(desc);
                    break;
                }
                tx.push(desc);
            }
            if tx.is_empty() {
                return sent;
            }
            let n = self.socket.transmit(tx);
            sent += n;
            self.stats.tx_frames += n as u64;
            if !tx.is_empty() {
                // The tx ring is full: give the frames back; the engine
                // retransmits what matters.
                self.stats.tx_ring_full += tx.len() as u64;
                for desc in tx.drain(..) {
                    self.socket.release(desc);
                }
                self.socket.reap_completions();
                return sent;
            }
        }
    }

    /// Once the slabs have moved by 1024 slots or more since the last
    /// give-back, at most once a second: the allocator returns what was
    /// freed to the system now (the old storage of a slab that grew, or
    /// what connections held once they are gone). Steady load never calls
    /// it; a ramp up or down, once a second.
    fn give_back_memory(&mut self, now: Instant) {
        let held = self.stack.slots_held();
        let (at, then) = self.memory_given_back;
        if held.abs_diff(then) >= 1024 && now - at >= Duration::from_secs(1) {
            crate::upstream::host::give_back_freed_memory();
            self.memory_given_back = (now, held);
            self.stats.memory_give_backs += 1;
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> ShardStats {
        let mut stats = self.stats.clone();
        stats.frames = self.socket.counts();
        stats.tcp = self.stack.stats().clone();
        if let Some(proxy) = &self.served.proxy {
            stats.proxy = proxy.stats();
            stats.source_ports = proxy.source_ports();
        }
        stats.connections = self.stack.connection_count();
        stats.slots_in_use = self.stack.slots_in_use();
        stats.slots_held = self.stack.slots_held();
        stats.served = self.served.len();
        stats.deadlines = self.served.deadlines();
        stats.time_wait = self.stack.time_wait_count();
        stats.time_wait_bytes = self.stack.time_wait_memory();
        let pool = self.stack.buffer_pool();
        stats.buffer_lent_bytes = pool.lent_bytes();
        stats.buffer_peak_bytes = pool.peak_lent_bytes();
        stats.buffer_held_bytes = pool.held_bytes();
        stats.buffer_shortages = pool.shortages();
        stats.listeners = self.served.listener_stats(&self.stack);
        stats.config_generation = self.served.generation();
        stats.states = self
            .stack
            .state_counts()
            .into_iter()
            .map(|(s, n)| (s.name(), n))
            .collect();
        stats
    }
}
