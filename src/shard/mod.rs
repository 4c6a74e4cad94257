//! One shard: one rx queue, one core, one AF_XDP socket and UMEM, one TCP
//! [`Stack`]. Shards share nothing on the fast path.
//!
//! # The loop
//! 1. take completed tx frames back, refill the fill ring;
//! 2. take an rx batch (up to 64 frames), parse each with `wire` (drops
//!    counted by reason), hand TCP segments to the engine, release frames;
//! 3. run the engine's due timers;
//! 4. serve events (accept, read/echo/discard/source, close);
//! 5. collect the engine's output into a tx batch (Ethernet header from
//!    the connection's route), transmit it with one ring operation;
//! 6. if nothing happened for [`BUSY_POLL`], sleep in poll() on the socket
//!    until the next timer (at most 100 ms), instead of spinning.
//!
//! Counters are plain integers in the shard, published to a shared
//! snapshot every 100 ms, never per packet.

pub mod route;
pub mod service;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use xsk_rs::FrameDesc;

use crate::config::Service;
use crate::link::xsk::{FrameCounts, XskSocket};
use crate::proxy::{Proxy, ProxyStats};
use crate::tcp::{ConnId, Event, Instant, ListenerId, Stack, Stats, TcpConfig};
use crate::wire::{self, Frame};
use service::Served;

/// After work, the loop keeps polling the rings this long before it
/// sleeps in poll() (unless configured otherwise): under load the next
/// batch comes sooner than a sleep/wake-up round trip; when idle the shard
/// sleeps.
pub const BUSY_POLL: Duration = Duration::from_micros(50);

/// What a shard serves on one listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenerSpec {
    pub addr: std::net::SocketAddrV4,
    pub service: Service,
    pub idle_timeout: Duration,
}

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
    /// Connection slots created so far (the peak of open connections).
    pub slots_created: usize,
    pub time_wait: usize,
    /// Bytes the TIME-WAIT table holds.
    pub time_wait_bytes: usize,
    /// Per listener (address, SYN queue depth, accept queue depth).
    pub queues: Vec<(std::net::SocketAddrV4, usize, usize)>,
    /// Open backend connections per pool and backend (proxy shards).
    pub backend_connections: Vec<Vec<u32>>,
    /// Connections sent to each backend so far, per pool.
    pub backend_opened: Vec<Vec<u64>>,
    /// Connections per TCP state (name, count).
    pub states: Vec<(&'static str, usize)>,
    pub proxy: ProxyStats,
}

/// Handle to a running shard.
#[derive(Debug)]
pub struct ShardHandle {
    pub stop: Arc<AtomicBool>,
    pub stats: Arc<Mutex<ShardStats>>,
    pub thread: std::thread::JoinHandle<ShardStats>,
}

/// Everything one shard owns.
pub struct Shard {
    socket: XskSocket,
    stack: Stack,
    listeners: HashMap<ListenerId, ListenerSpec>,
    /// Proxy listeners: index among them (the order of `service = proxy`
    /// specs given to [`Shard::new`], which the [`Proxy`] follows).
    proxy_listeners: HashMap<ListenerId, usize>,
    proxy: Option<Proxy>,
    /// Connections being served, by handle.
    served: HashMap<ConnId, Served>,
    /// Connections with an event since they were last pumped.
    ready: Vec<ConnId>,
    stats: ShardStats,
    clock: std::time::Instant,
    busy_poll: Duration,
}

impl Shard {
    /// A shard on `socket` with `listeners`; `secret` keys its ISNs and
    /// cookies.
    pub fn new(
        socket: XskSocket,
        config: TcpConfig,
        secret: crate::tcp::Secret,
        max_connections: usize,
        listeners: &[ListenerSpec],
    ) -> Self {
        let mut stack = Stack::new(config, secret, max_connections);
        let mut specs = HashMap::new();
        let mut proxy_listeners = HashMap::new();
        for spec in listeners {
            let id = stack
                .listen(spec.addr)
                .expect("listener addresses are validated unique");
            specs.insert(id, *spec);
            if spec.service == Service::Proxy {
                proxy_listeners.insert(id, proxy_listeners.len());
            }
        }
        let queue = socket.queue();
        Self {
            socket,
            stack,
            listeners: specs,
            proxy_listeners,
            proxy: None,
            served: HashMap::new(),
            ready: Vec::new(),
            stats: ShardStats {
                queue,
                ..Default::default()
            },
            clock: std::time::Instant::now(),
            busy_poll: BUSY_POLL,
        }
    }

    /// Serves the proxy listeners with `proxy` (without one, their
    /// connections are reset).
    pub fn with_proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// Sets the busy-poll window (zero: sleep as soon as idle).
    pub fn with_busy_poll(mut self, busy_poll: Duration) -> Self {
        self.busy_poll = busy_poll;
        self
    }

    fn now(&self) -> Instant {
        Instant::from_micros(1_000_000 + self.clock.elapsed().as_micros() as u64)
    }

    /// Runs the shard on its own thread, pinned to `core` if given.
    pub fn spawn(mut self, core: Option<usize>) -> ShardHandle {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(ShardStats::default()));
        let (thread_stop, thread_stats) = (stop.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name(format!("shard-{}", self.stats.queue))
            .spawn(move || {
                if let Some(core) = core {
                    let mut set = nix::sched::CpuSet::new();
                    if set.set(core).is_ok() {
                        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
                    }
                }
                self.run(&thread_stop, &thread_stats);
                self.snapshot()
            })
            .expect("spawn a shard thread");
        ShardHandle {
            stop,
            stats,
            thread,
        }
    }

    /// The loop (see the module docs) until `stop`.
    pub fn run(&mut self, stop: &AtomicBool, published: &Mutex<ShardStats>) {
        let mut rx = Vec::with_capacity(crate::link::xsk::BATCH);
        let mut tx: Vec<FrameDesc> = Vec::with_capacity(crate::link::xsk::BATCH);
        let mut scratch = vec![0u8; 64 * 1024];
        let mut last_publish = self.now();
        let mut last_idle_scan = self.now();
        let mut last_work = self.now();
        while !stop.load(Ordering::Relaxed) {
            self.socket.reap_completions();
            self.socket.refill();
            let received = self.receive(&mut rx);
            let now = self.now();
            self.stack.handle_timeout(now);
            let completed = match self.proxy.as_mut() {
                Some(proxy) => proxy.process_completions(&mut self.stack, now),
                None => 0,
            };
            self.serve(now, &mut scratch);
            if now - last_idle_scan >= Duration::from_millis(50) {
                self.close_idle(now);
                if let Some(proxy) = self.proxy.as_mut() {
                    proxy.tick(&mut self.stack, now);
                }
                last_idle_scan = now;
            }
            let sent = self.transmit(now, &mut tx);
            if let Some(proxy) = self.proxy.as_mut() {
                proxy.submit();
            }
            if now - last_publish >= Duration::from_millis(100) {
                self.stats.published += 1;
                *published.lock().expect("stats lock") = self.snapshot();
                last_publish = now;
            }
            if received > 0 || sent > 0 || completed > 0 {
                last_work = now;
            } else if now - last_work < self.busy_poll {
                // Busy: more frames are likely within microseconds; a
                // sleep and wake-up per batch would cost more than this.
                std::hint::spin_loop();
            } else {
                let wait = self.stack.poll_timeout().map_or(100, |at| {
                    (at.micros().saturating_sub(now.micros()) / 1000).clamp(0, 100)
                });
                // Frames still in the tx ring need kicks and completions.
                let wait = if self.socket.counts().tx > 0 {
                    wait.min(1)
                } else {
                    wait
                };
                self.socket.kick_tx();
                match self.proxy.as_mut() {
                    Some(proxy) => {
                        use std::os::fd::AsRawFd;
                        let xsk = self.socket.fd().as_raw_fd();
                        proxy.wait(xsk, Duration::from_millis(wait));
                    }
                    None => {
                        self.socket.wait_readable(wait as i32);
                    }
                }
            }
        }
        let now = self.now();
        if let Some(proxy) = self.proxy.as_mut() {
            proxy.shutdown(&mut self.stack, now);
            let mut tx = Vec::with_capacity(crate::link::xsk::BATCH);
            self.transmit(now, &mut tx);
            self.socket.kick_tx();
        }
        *published.lock().expect("stats lock") = self.snapshot();
    }

    /// Step 2: an rx batch through `wire` into the engine.
    fn receive(&mut self, rx: &mut Vec<FrameDesc>) -> usize {
        rx.clear();
        let n = self.socket.receive(rx);
        let now = self.now();
        for desc in rx.drain(..) {
            self.stats.rx_frames += 1;
            match wire::parse_frame(self.socket.frame(&desc)) {
                Ok(Frame::Tcp { ethernet, ip, tcp }) => {
                    let route = route::route_for_reply(&ethernet);
                    self.stack.handle_segment(now, route, &ip, &tcp);
                }
                Ok(_) => self.stats.drops.not_tcp += 1,
                Err(wire::Error::Truncated) => self.stats.drops.truncated += 1,
                Err(wire::Error::Malformed) => self.stats.drops.malformed += 1,
                Err(wire::Error::Checksum) => self.stats.drops.bad_checksum += 1,
                Err(wire::Error::Fragmented) => self.stats.drops.fragment += 1,
                Err(wire::Error::Unsupported) => self.stats.drops.unsupported += 1,
            }
            self.socket.release(desc);
        }
        n
    }

    /// Step 4: events and data for the services. Only connections with an
    /// event are pumped: the work is per event, not per open connection.
    fn serve(&mut self, now: Instant, scratch: &mut [u8]) {
        while let Some(event) = self.stack.poll_event() {
            match event {
                Event::Acceptable(listener) => {
                    if let Some(&index) = self.proxy_listeners.get(&listener) {
                        while let Some(id) = self.stack.accept(listener) {
                            match self.proxy.as_mut() {
                                Some(proxy) => proxy.open(&mut self.stack, now, id, index),
                                None => {
                                    let _ = self.stack.abort(now, id);
                                }
                            }
                        }
                        continue;
                    }
                    let spec = self.listeners[&listener];
                    while let Some(id) = self.stack.accept(listener) {
                        let served = Served {
                            id,
                            service: spec.service,
                            sent: 0,
                            shut: false,
                            last_active: now,
                        };
                        self.served.insert(id, served);
                        self.ready.push(id);
                    }
                }
                Event::Readable(id) | Event::Writable(id) | Event::PeerClosed(id) => {
                    match self.proxy.as_mut() {
                        Some(proxy) if proxy.owns(id) => {
                            proxy.on_client_event(&mut self.stack, now, id)
                        }
                        _ => self.ready.push(id),
                    }
                }
                Event::Closed(id) | Event::Reset(id, _)
                    if self.proxy.as_ref().is_some_and(|p| p.owns(id)) =>
                {
                    let reset = matches!(event, Event::Reset(..));
                    if let Some(proxy) = self.proxy.as_mut() {
                        proxy.on_client_gone(&mut self.stack, now, id, reset);
                    }
                }
                Event::Closed(id) => {
                    let _ = self.stack.close(now, id);
                    self.served.remove(&id);
                }
                Event::Reset(id, _) => {
                    self.served.remove(&id);
                }
                Event::Connected(_) => {}
            }
        }
        for id in std::mem::take(&mut self.ready) {
            let Some(served) = self.served.get_mut(&id) else {
                continue;
            };
            service::pump(&mut self.stack, now, served, scratch);
            if served.shut {
                self.served.remove(&id);
            }
        }
    }

    /// Closes connections idle longer than their listener's idle timeout
    /// (lastack sends FIN first: it will hold the TIME-WAIT).
    fn close_idle(&mut self, now: Instant) {
        let listeners = &self.listeners;
        let stack = &mut self.stack;
        self.served.retain(|&id, served| {
            let Some(tuple) = stack.tuple(id) else {
                return true;
            };
            let idle = listeners
                .values()
                .find(|l| l.addr == tuple.local)
                .map(|l| l.idle_timeout);
            if idle.is_some_and(|idle| now - served.last_active >= idle) {
                let _ = stack.close(now, id);
                return false;
            }
            true
        });
    }

    /// Step 5: the engine's output into one tx batch.
    fn transmit(&mut self, now: Instant, tx: &mut Vec<FrameDesc>) -> usize {
        let mut sent = 0;
        loop {
            while tx.len() < crate::link::xsk::BATCH {
                let Some(mut desc) = self.socket.alloc_tx() else {
                    break;
                };
                let stack = &mut self.stack;
                let mut produced = false;
                self.socket.write_frame(&mut desc, |frame| {
                    // Room for the largest Ethernet header in front.
                    match stack.poll_transmit(now, &mut frame[18..]) {
                        Some(t) => {
                            produced = true;
                            let eth = route::write_ethernet(&t.route, frame);
                            if eth != 18 {
                                frame.copy_within(18..18 + t.len, eth);
                            }
                            eth + t.len
                        }
                        None => 0,
                    }
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

    /// The counters now.
    pub fn snapshot(&self) -> ShardStats {
        let mut stats = self.stats.clone();
        stats.frames = self.socket.counts();
        stats.tcp = self.stack.stats().clone();
        if let Some(proxy) = &self.proxy {
            stats.proxy = proxy.stats;
            stats.backend_connections = proxy.pools().iter().map(|p| p.active.clone()).collect();
            stats.backend_opened = proxy.pools().iter().map(|p| p.opened.clone()).collect();
        }
        stats.connections = self.stack.connection_count();
        stats.slots_in_use = self.stack.slots_in_use();
        stats.slots_created = self.stack.slots_created();
        stats.time_wait = self.stack.time_wait_count();
        stats.time_wait_bytes = self.stack.time_wait_memory();
        let mut queues: Vec<_> = self
            .listeners
            .iter()
            .map(|(&id, spec)| {
                (
                    spec.addr,
                    self.stack.syn_queue_len(id),
                    self.stack.accept_queue_len(id),
                )
            })
            .collect();
        queues.sort_by_key(|q| (*q.0.ip(), q.0.port()));
        stats.queues = queues;
        stats.states = self
            .stack
            .state_counts()
            .into_iter()
            .map(|(s, n)| (s.name(), n))
            .collect();
        stats
    }
}
