//! One shard's TCP: listeners, connections and the TIME-WAIT table.
//!
//! # Driving a `Stack`
//! Inputs: [`Stack::handle_segment`] for every parsed TCP segment,
//! [`Stack::handle_timeout`] when [`Stack::poll_timeout`] says, and the
//! application commands ([`Stack::connect`], [`Stack::accept`],
//! [`Stack::send`], [`Stack::recv`], [`Stack::shutdown`], [`Stack::close`],
//! [`Stack::abort`]).
//!
//! After any input, poll in this order until each returns `None`:
//! 1. [`Stack::poll_event`] — what the application must react to (its
//!    reactions are more inputs);
//! 2. [`Stack::poll_transmit`] — segments to put on the wire;
//! 3. [`Stack::poll_timeout`] — when to call `handle_timeout` next.
//!
//! Each connection has an owner from [`Stack::accept`] or
//! [`Stack::connect`] on: the caller's [`Tag`], which comes back with every
//! event of the connection, so the caller finds what serves it by its own
//! index (a connection waiting in an accept queue has no owner and no
//! events; what it received meanwhile is reported at `accept`).
//!
//! Connections live in a slab (slot index + generation = [`ConnId`]) found
//! by a 4-tuple hash map: O(1) demultiplexing. Slots are reused in place,
//! buffers included. Half-open connections are ordinary connections in
//! SYN-RECEIVED counted against their listener's SYN queue; TIME-WAIT
//! entries are compact records in their own table.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use hashbrown::HashTable;

use super::config::{CookieMode, EcnMode, TcpConfig};
use super::congestion::Algorithm;
use super::conn::ecn::is_ecn_setup_syn;
use super::conn::input::Reply;
use super::conn::output::{finish_segment, tcp_offset, MAX_HEADERS};
use super::conn::pmtu::TooBig;
use super::conn::{Conn, Ctx};
use super::cookie;
use super::isn::{self, Secret};
use super::keys::{self, HandshakeKeys, KeyRing};
use super::listener::{Listener, Refuse};
use super::pool::ChunkPool;
use super::seq::Seq;
use super::stats::Stats;
use super::time::Instant;
use super::time_wait::{TimeWaitEntry, TimeWaitTable};
use super::timer_wheel::TimerWheel;
use super::types::{
    BbrInfo, CommandError, ConnId, ConnInfo, Endpoint, Event, FourTuple, HashedTuple, ListenerId,
    Route, State, Tag, TupleHasher,
};
use crate::slots::{cut_free_tail, shrink_target, LowestFree};
use crate::wire::{Ecn, IcmpRepr, IpProtocol, IpRepr, TcpFlags, TcpOptions, TcpRepr, Timestamps};

/// Stateless replies queued beyond this are dropped (and counted).
const CONTROL_QUEUE_LIMIT: usize = 4096;

/// Buffer chunks given back that a stack keeps for reuse (4 MiB): churn
/// reuses them, and memory beyond goes back once load drops.
const SPARE_CHUNK_BYTES: usize = 4 << 20;

/// A segment that [`Stack::poll_transmit`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Bytes written at the start of the buffer: the IP header of the
    /// flow's family, then the TCP segment.
    pub len: usize,
    pub tuple: FourTuple,
    /// The route of the connection or of the segment this answers.
    pub route: Route,
}

/// What [`Stack::handle_icmp`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpOutcome {
    /// About a connection here: checked, and applied if believed.
    Taken,
    /// About a flow with no connection here.
    NoConnection,
    /// Not a message the engine acts on.
    NotApplicable,
}

/// A segment sent without a connection: RST, cookie SYN-ACK, TIME-WAIT ACK.
#[derive(Debug, Clone, Copy)]
struct Control {
    tuple: FourTuple,
    route: Route,
    seq: Seq,
    ack: Seq,
    flags: TcpFlags,
    window: u16,
    options: TcpOptions,
}

#[derive(Debug)]
struct Slot {
    conn: Conn,
    generation: u32,
    occupied: bool,
    /// The owner's tag, from `accept` or `connect`: events only then.
    tag: Option<Tag>,
}

/// What became of a segment given to [`Stack::handle_segment`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Taken, answered or dropped here (and counted).
    Handled,
    /// A flow this instance does not know whose client echoes the TSval of
    /// cluster instance `owner`: the caller forwards the segment there
    /// (`wire::tunnel`), or drops it if it cannot (the client retransmits).
    Forward { owner: u8 },
}

/// One shard's TCP stack. See the module docs for the polling order.
#[derive(Debug)]
pub struct Stack {
    config: TcpConfig,
    /// Keys and clock of handshakes (ISNs, cookies, timestamp offsets).
    keys: KeyRing,
    max_connections: usize,
    slots: Vec<Slot>,
    /// Free slots, lowest first (the tail is cut off once free).
    free: LowestFree,
    /// The generation new slots start at: above any a cut-off slot had,
    /// so no old handle names a new connection.
    generation_floor: u32,
    /// Hashes the tuples of `by_tuple` and `time_wait` (one hash per
    /// received segment serves both).
    hasher: TupleHasher,
    /// Open connections by tuple: each holds its slot, whose connection's
    /// tuple is the key (4 bytes a bucket, so the index stays in cache;
    /// the one comparison reads the connection the segment is for).
    by_tuple: HashTable<u32>,
    listeners: Vec<Listener>,
    listener_by_addr: HashMap<Endpoint, u32, foldhash::fast::FixedState>,
    time_wait: TimeWaitTable,
    events: VecDeque<Event>,
    /// Each connection's earliest deadline, by slot.
    timers: TimerWheel,
    /// Scratch for the slots whose timers expired (kept to avoid allocating).
    expired: Vec<u32>,
    /// Slots with something to send.
    tx_queue: VecDeque<u32>,
    control: VecDeque<Control>,
    challenge_budget: u32,
    challenge_second: u64,
    stats: Stats,
    /// Chunks for the connections' buffers.
    pool: ChunkPool,
    /// Occupied slots per state (by `State as usize`), kept as they change.
    in_state: [usize; State::ALL.len()],
    /// The ISS of the next connection, instead of RFC 6528's (tests).
    next_iss: Option<Seq>,
}

impl Stack {
    /// A stack with `config`, keyed by `secret` (ISNs, cookies, timestamp
    /// offsets, and the seed of its maps), holding at most
    /// `max_connections` connections. Handshakes read the caller's clock
    /// until [`Stack::set_handshake_keys`] says otherwise.
    pub fn new(config: TcpConfig, secret: Secret, max_connections: usize) -> Self {
        let challenge_budget = config.challenge_ack_limit;
        let pool = ChunkPool::new(config.buffer_budget, SPARE_CHUNK_BYTES);
        let seed = isn::map_seed(&secret);
        let hasher = TupleHasher::new(seed);
        Self {
            config,
            keys: KeyRing::new(HandshakeKeys::solo(secret)),
            max_connections,
            slots: Vec::new(),
            free: LowestFree::default(),
            generation_floor: 0,
            by_tuple: HashTable::new(),
            listeners: Vec::new(),
            listener_by_addr: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(seed ^ 1)),
            time_wait: TimeWaitTable::new(hasher.clone()),
            hasher,
            events: VecDeque::new(),
            timers: TimerWheel::default(),
            expired: Vec::new(),
            tx_queue: VecDeque::new(),
            control: VecDeque::new(),
            challenge_budget,
            challenge_second: 0,
            stats: Stats::default(),
            pool,
            in_state: [0; State::ALL.len()],
            next_iss: None,
        }
    }

    pub fn config(&self) -> &TcpConfig {
        &self.config
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Open connections (any state but TIME-WAIT).
    pub fn connection_count(&self) -> usize {
        self.by_tuple.len()
    }

    pub fn time_wait_count(&self) -> usize {
        self.time_wait.len()
    }

    /// Memory the TIME-WAIT table holds, in bytes.
    pub fn time_wait_memory(&self) -> usize {
        self.time_wait.memory_bytes()
    }

    /// Connections per state, TIME-WAIT from its table: kept as states
    /// change, not counted by walking the slots.
    pub fn state_counts(&self) -> Vec<(State, usize)> {
        #[cfg(debug_assertions)]
        {
            let mut walked = [0usize; State::ALL.len()];
            for slot in self.slots.iter().filter(|s| s.occupied) {
                walked[slot.conn.state as usize] += 1;
            }
            debug_assert_eq!(walked, self.in_state, "state counts drifted");
        }
        State::ALL
            .iter()
            .map(|&state| {
                let n = match state {
                    State::TimeWait => self.time_wait.len(),
                    _ => self.in_state[state as usize],
                };
                (state, n)
            })
            .filter(|&(_, n)| n > 0)
            .collect()
    }

    /// Bytes of engine state per connection (buffers not included).
    pub const fn connection_state_size() -> usize {
        std::mem::size_of::<Conn>()
    }

    /// The keys and clock of new handshakes from now on (a cluster's
    /// shared key and Unix time; a rotation): see [`super::keys`]. Open
    /// connections keep theirs; a key dropped is still honoured in cookies
    /// for one cookie lifetime.
    pub fn set_handshake_keys(&mut self, now: Instant, keys: HandshakeKeys) {
        self.keys.replace(now, keys);
    }

    /// The timestamp offset of a connection on `tuple` keyed by `secret`:
    /// RFC 7323 §7.1's per-connection offset plus the handshake clock's.
    fn ts_offset(&self, secret: &Secret, tuple: &FourTuple) -> u32 {
        let keys = isn::tuple_keys(secret, tuple.local, tuple.remote);
        self.keys.keys().ts_offset(keys)
    }

    /// Uses `iss` as the initial send sequence number of the next
    /// connection this stack creates, instead of the RFC 6528 one. For
    /// deterministic tests (a fixed exchange, a worked example); never
    /// needed in production.
    pub fn set_next_iss(&mut self, iss: Seq) {
        self.next_iss = Some(iss);
    }

    // ---- Listeners ----

    /// LISTEN on `addr` (RFC 9293 §3.10.1 passive OPEN), an IPv4 or
    /// IPv6 address: one stack serves both families side by side. A
    /// listener closed earlier on the same address opens again (same id).
    pub fn listen(&mut self, addr: SocketAddr) -> Result<ListenerId, CommandError> {
        if let Some(&id) = self.listener_by_addr.get(&Endpoint::from(addr)) {
            let listener = &mut self.listeners[id as usize];
            if listener.closed.take().is_some() {
                listener.syn_backlog = self.config.syn_backlog;
                listener.accept_backlog = self.config.accept_backlog;
                return Ok(ListenerId(id));
            }
            return Err(CommandError::AddressInUse);
        }
        let id = self.listeners.len() as u32;
        self.listeners.push(Listener::new(
            addr,
            self.config.syn_backlog,
            self.config.accept_backlog,
        ));
        self.listener_by_addr.insert(addr.into(), id);
        Ok(ListenerId(id))
    }

    /// Stops `listener` taking new connections: SYNs (and cookie ACKs)
    /// get `refuse`. Its half-open and queued connections complete and can
    /// still be accepted; its established ones are untouched.
    pub fn close_listener(&mut self, listener: ListenerId, refuse: Refuse) {
        if let Some(l) = self.listeners.get_mut(listener.0 as usize) {
            l.closed = Some(refuse);
        }
    }

    /// True if `listener` takes new connections.
    pub fn is_listening(&self, listener: ListenerId) -> bool {
        self.listeners
            .get(listener.0 as usize)
            .is_some_and(|l| l.closed.is_none())
    }

    /// Replaces the engine's parameters. New connections and listeners
    /// take all of them; established connections follow the timing ones
    /// (RTO bounds, delayed ACK, keepalive, retries) from now on and keep
    /// what was fixed at their handshake (MSS, window scale, buffers).
    pub fn set_config(&mut self, config: TcpConfig) {
        self.pool.set_budget(config.buffer_budget);
        self.challenge_budget = self.challenge_budget.min(config.challenge_ack_limit);
        for listener in &mut self.listeners {
            listener.syn_backlog = config.syn_backlog;
            listener.accept_backlog = config.accept_backlog;
        }
        self.config = config;
    }

    /// Changes how many connections the stack holds at most (new ones
    /// beyond it are dropped and counted; none is closed to get there).
    pub fn set_max_connections(&mut self, max_connections: usize) {
        self.max_connections = max_connections;
    }

    /// Takes the oldest established connection from the accept queue and
    /// gives it to its owner: `tag` comes back with every event of the
    /// connection from now on. What arrived before (data, the peer's FIN)
    /// is reported at once as `Readable` / `PeerClosed`.
    pub fn accept(&mut self, listener: ListenerId, tag: Tag) -> Option<ConnId> {
        let queue = &mut self.listeners.get_mut(listener.0 as usize)?.accept_queue;
        while let Some(id) = queue.pop_front() {
            let slot = &mut self.slots[id.index as usize];
            if slot.occupied && slot.generation == id.generation {
                slot.tag = Some(tag);
                if slot.conn.readable() > 0 {
                    self.events.push_back(Event::Readable(id, tag));
                }
                if slot.conn.fin_received {
                    self.events.push_back(Event::PeerClosed(id, tag));
                }
                return Some(id);
            }
        }
        None
    }

    /// Connections waiting in `listener`'s accept queue (some may have
    /// been reset since; `accept` skips those).
    pub fn accept_queue_len(&self, listener: ListenerId) -> usize {
        self.listeners
            .get(listener.0 as usize)
            .map_or(0, |l| l.accept_queue.len())
    }

    /// Half-open connections of `listener`.
    pub fn syn_queue_len(&self, listener: ListenerId) -> usize {
        self.listeners
            .get(listener.0 as usize)
            .map_or(0, |l| l.syn_queue_len)
    }

    // ---- Application commands ----

    /// Active OPEN (RFC 9293 §3.10.1): sends a SYN from `local` to
    /// `remote`; `tag` comes back with every event of the connection.
    pub fn connect(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        route: Route,
        tag: Tag,
    ) -> Result<ConnId, CommandError> {
        if local.is_ipv6() != remote.is_ipv6() {
            return Err(CommandError::FamilyMismatch);
        }
        let key = self.hasher.hashed(FourTuple::new(local, remote));
        if self.tuple_in_use(&key) {
            return Err(CommandError::AddressInUse);
        }
        let tuple = *key.tuple();
        let id = self.insert(now, tuple, route, State::SynSent, None)?;
        self.slots[id.index as usize].tag = Some(tag);
        self.after(now, id.index, State::SynSent);
        Ok(id)
    }

    fn conn_mut(&mut self, id: ConnId) -> Result<&mut Conn, CommandError> {
        match self.slots.get_mut(id.index as usize) {
            Some(slot) if slot.occupied && slot.generation == id.generation => Ok(&mut slot.conn),
            _ => Err(CommandError::InvalidConnection),
        }
    }

    fn conn(&self, id: ConnId) -> Result<&Conn, CommandError> {
        match self.slots.get(id.index as usize) {
            Some(slot) if slot.occupied && slot.generation == id.generation => Ok(&slot.conn),
            _ => Err(CommandError::InvalidConnection),
        }
    }

    /// A snapshot of the connection's sequence space, windows and timers.
    pub fn info(&self, id: ConnId) -> Option<ConnInfo> {
        let c = self.conn(id).ok()?;
        Some(ConnInfo {
            state: c.state,
            tuple: c.tuple,
            snd_una: c.snd_una.0,
            snd_nxt: c.snd_nxt.0,
            snd_max: c.snd_max.0,
            snd_wnd: c.snd_wnd,
            cwnd: c.cc.cwnd(),
            ssthresh: c.cc.ssthresh(),
            in_recovery: c.cc.in_recovery(),
            rcv_nxt: c.rcv_nxt.0,
            rcv_wnd: c.receive_window(self.pool.is_short()),
            rto_micros: c.rtt.rto().as_micros() as u64,
            srtt_micros: c.rtt.srtt().map(|d| d.as_micros() as u64),
            retries: c.retries,
            unacknowledged: c.send_buf.len(),
            readable: c.readable(),
            ooo_ranges: c.assembler.ranges().len(),
            mss: c.mss,
            ecn: c.ecn.enabled,
            pacing_rate: c.cc.pacing_rate().map(|r| r as u64),
            bbr: match c.cc.algorithm() {
                Algorithm::Bbr(b) => Some(BbrInfo {
                    mode: b.mode(),
                    bandwidth: b.bandwidth() as u64,
                    min_rtt_micros: b.min_rtt().map(|d| d.as_micros() as u64),
                    pacing_gain_percent: (b.pacing_gain() * 100.0).round() as u32,
                }),
                _ => None,
            },
        })
    }

    pub fn state(&self, id: ConnId) -> Option<State> {
        self.conn(id).ok().map(|c| c.state)
    }

    pub fn tuple(&self, id: ConnId) -> Option<FourTuple> {
        self.conn(id).ok().map(|c| c.tuple)
    }

    /// Bytes that can be read now.
    pub fn readable(&self, id: ConnId) -> usize {
        self.conn(id).map_or(0, |c| c.readable())
    }

    /// Room in the send buffer.
    pub fn send_capacity(&self, id: ConnId) -> usize {
        let short = self.pool.is_short();
        self.conn(id).map_or(0, |c| c.send_space(short))
    }

    /// The size the connection's send buffer has grown to (autotuned).
    pub fn send_buffer_size(&self, id: ConnId) -> usize {
        self.conn(id).map_or(0, |c| c.send_buf.capacity())
    }

    /// Bytes sent or queued and not yet acknowledged.
    pub fn unacknowledged(&self, id: ConnId) -> usize {
        self.conn(id).map_or(0, |c| c.send_buf.len())
    }

    /// True once the peer's FIN has been received.
    pub fn peer_closed(&self, id: ConnId) -> bool {
        self.conn(id).is_ok_and(|c| c.fin_received)
    }

    /// SEND: queues what fits of `data`, returns the count.
    pub fn send(&mut self, now: Instant, id: ConnId, data: &[u8]) -> Result<usize, CommandError> {
        let conn = self.conn_mut(id)?;
        if conn.fin_queued || conn.detached {
            return Err(CommandError::SendClosed);
        }
        if matches!(
            conn.state,
            State::SynSent | State::SynReceived | State::Closed
        ) {
            return Err(CommandError::NotConnected);
        }
        let state = conn.state;
        let n = self.slots[id.index as usize]
            .conn
            .send(&mut self.pool, data);
        self.after(now, id.index, state);
        Ok(n)
    }

    /// RECEIVE: copies readable data into `out`.
    pub fn recv(
        &mut self,
        now: Instant,
        id: ConnId,
        out: &mut [u8],
    ) -> Result<usize, CommandError> {
        let state = self.conn_mut(id)?.state;
        let n = self.slots[id.index as usize].conn.recv(&mut self.pool, out);
        self.after(now, id.index, state);
        Ok(n)
    }

    /// Half-close: FIN after the queued data; reading goes on.
    pub fn shutdown(&mut self, now: Instant, id: ConnId) -> Result<(), CommandError> {
        let conn = self.conn_mut(id)?;
        let state = conn.state;
        conn.shutdown_write();
        self.after(now, id.index, state);
        Ok(())
    }

    /// CLOSE: FIN after the queued data, discard further input. The
    /// connection finishes on its own; no more events come for it, and the
    /// handle is invalid from now on.
    pub fn close(&mut self, now: Instant, id: ConnId) -> Result<(), CommandError> {
        let conn = self.conn_mut(id)?;
        if conn.detached {
            self.free_slot(id.index);
            return Ok(());
        }
        let state = conn.state;
        self.slots[id.index as usize].conn.close(&mut self.pool);
        self.after(now, id.index, state);
        Ok(())
    }

    /// ABORT: RST and forget the connection.
    pub fn abort(&mut self, now: Instant, id: ConnId) -> Result<(), CommandError> {
        if self.conn(id)?.detached {
            self.free_slot(id.index);
            return Ok(());
        }
        let state = self.slots[id.index as usize].conn.state;
        self.with_conn(now, id.index, |conn, ctx| conn.abort(ctx));
        self.after(now, id.index, state);
        Ok(())
    }

    /// ABORT for every connection still open (a stop): each gets an RST,
    /// whoever owns it. Returns how many there were. TIME-WAIT entries
    /// stay (they hold no peer up).
    pub fn abort_all(&mut self, now: Instant) -> usize {
        let mut aborted = 0;
        for index in 0..self.slots.len() as u32 {
            let slot = &self.slots[index as usize];
            if !slot.occupied || slot.conn.detached {
                continue;
            }
            let state = slot.conn.state;
            self.with_conn(now, index, |conn, ctx| conn.abort(ctx));
            self.after(now, index, state);
            aborted += 1;
        }
        aborted
    }

    // ---- Inputs ----

    /// SEGMENT ARRIVES (RFC 9293 §3.10.7): `ip` (IPv4 or IPv6) and `tcp`
    /// parsed (and checksummed) by `wire`; `route` comes back with every
    /// reply.
    pub fn handle_segment(
        &mut self,
        now: Instant,
        route: Route,
        ip: &IpRepr,
        tcp: &TcpRepr<'_>,
    ) -> Disposition {
        self.dispatch(now, route, ip, tcp, false)
    }

    /// [`Stack::handle_segment`], for a segment that came straight from
    /// the client or (`forwarded`) from another instance of the cluster.
    fn dispatch(
        &mut self,
        now: Instant,
        route: Route,
        ip: &IpRepr,
        tcp: &TcpRepr<'_>,
        forwarded: bool,
    ) -> Disposition {
        self.stats.segments_in += 1;
        if ip.protocol() != IpProtocol::TCP {
            return Disposition::Handled;
        }
        let key = self.hasher.hashed(FourTuple::of_segment(ip, tcp));
        let tuple = *key.tuple();
        let flags = tcp.flags;
        // Combinations no correct stack sends (SYN+FIN, SYN+RST), and a
        // segment with none of SYN, ACK, RST (RFC 9293 §3.10.7.4: drop).
        if (flags.syn() && (flags.fin() || flags.rst()))
            || !(flags.syn() || flags.ack() || flags.rst())
        {
            self.stats.drop_bad_flags += 1;
            return Disposition::Handled;
        }
        if let Some(index) = self.slot_of(&key) {
            self.segment_for_conn(now, index, tcp, ip.ecn());
            return Disposition::Handled;
        }
        if let Some(entry) = self.time_wait.get(&key).copied() {
            if !self.segment_in_time_wait(now, &key, entry, tcp) {
                return Disposition::Handled;
            }
        }
        match self.listener_by_addr.get(&tuple.local) {
            Some(&listener) => {
                if !self.segment_for_listener(now, listener, tuple, route, tcp, ip.ecn()) {
                    return Disposition::Handled;
                }
                // An ACK for a flow this stack does not know: one that
                // moved here from another instance (an ECMP change), or a
                // stale one. Its owner gets it if the client's TSecr names
                // a live one (forwarding, docs/cluster.md); otherwise it is
                // reset at once, so the client fails fast instead of
                // hanging.
                if let Some(owner) = self.owner_elsewhere(tcp, forwarded) {
                    self.stats.unknown_flow_forwarded += 1;
                    return Disposition::Forward { owner };
                }
                self.stats.unknown_flow_resets += 1;
                self.reset_for(tuple, route, tcp);
                Disposition::Handled
            }
            None => {
                self.stats.drop_no_listener += 1;
                self.reset_for(tuple, route, tcp);
                Disposition::Handled
            }
        }
    }

    /// Whether the segment's flow is this stack's (open, or in TIME-WAIT).
    pub fn knows_flow(&self, ip: &IpRepr, tcp: &TcpRepr<'_>) -> bool {
        self.tuple_in_use(&self.hasher.hashed(FourTuple::of_segment(ip, tcp)))
    }

    /// Whether a connection holds `key`'s tuple, open or in TIME-WAIT.
    fn tuple_in_use(&self, key: &HashedTuple) -> bool {
        self.slot_of(key).is_some() || self.time_wait.get(key).is_some()
    }

    /// The slot of the open connection on `key`'s tuple.
    #[inline]
    fn slot_of(&self, key: &HashedTuple) -> Option<u32> {
        let slots = &self.slots;
        self.by_tuple
            .find(key.hash(), |&index| {
                slots[index as usize].conn.tuple == *key.tuple()
            })
            .copied()
    }

    /// [`Stack::handle_segment`] for a segment another instance of the
    /// cluster forwarded here (`wire::Frame::Tunnelled`): the same, except
    /// that a flow unknown here too is reset, never forwarded again.
    pub fn handle_forwarded_segment(
        &mut self,
        now: Instant,
        route: Route,
        ip: &IpRepr,
        tcp: &TcpRepr<'_>,
    ) {
        self.stats.forwarded_segments_received += 1;
        let disposition = self.dispatch(now, route, ip, tcp, true);
        debug_assert_eq!(disposition, Disposition::Handled);
    }

    /// The cluster instance that owns the unknown flow `tcp` belongs to,
    /// when it is another live one: read from the low bits of the TSecr
    /// the client echoes (`keys`). `None` without forwarding, without
    /// timestamps, for our own id, and for a segment already `forwarded`.
    fn owner_elsewhere(&self, tcp: &TcpRepr<'_>, forwarded: bool) -> Option<u8> {
        let keys = self.keys.keys();
        let own = keys.owner?;
        if forwarded {
            return None;
        }
        let owner = keys::owner_of(tcp.options.timestamps?.tsecr);
        (owner != own && keys.peers & (1 << owner) != 0).then_some(owner)
    }

    /// An ICMP or ICMPv6 message for our address, parsed (and checksummed)
    /// by `wire`: a "fragmentation needed" (RFC 1191) or "packet too big"
    /// (RFC 8201) about one of our connections' segments lowers its path
    /// MTU if its quote checks out (`pmtu.rs`); anything else is ignored.
    ///
    /// A message about no connection here is not counted: on a host with
    /// several shards it may be another's (the caller may pass it on).
    pub fn handle_icmp(&mut self, now: Instant, icmp: &IcmpRepr) -> IcmpOutcome {
        let Some((mtu, quoted)) = icmp.too_big() else {
            return IcmpOutcome::NotApplicable;
        };
        let key = self.hasher.hashed(FourTuple::new(quoted.src, quoted.dst));
        let Some(index) = self.slot_of(&key) else {
            return IcmpOutcome::NoConnection;
        };
        self.stats.icmp_too_big_received += 1;
        let mtu = usize::from(mtu);
        let before = self.slots[index as usize].conn.state;
        let outcome = self.with_conn(now, index, |conn, ctx| {
            conn.on_packet_too_big(ctx, Seq(quoted.seq), mtu)
        });
        if outcome == TooBig::NotInFlight {
            self.stats.icmp_too_big_ignored += 1;
        }
        self.after(now, index, before);
        IcmpOutcome::Taken
    }

    fn segment_for_conn(&mut self, now: Instant, index: u32, tcp: &TcpRepr<'_>, ecn: Ecn) {
        let slot = &self.slots[index as usize];
        let before = slot.conn.state;
        // A full accept queue drops the final ACK of the handshake; the
        // client's retransmission (or our SYN-ACK's) tries again later.
        if before == State::SynReceived && tcp.flags.ack() && !tcp.flags.rst() && !tcp.flags.syn() {
            if let Some(listener) = slot.conn.listener {
                if self.listeners[listener.0 as usize].accept_queue_full() {
                    self.stats.accept_queue_overflows += 1;
                    return;
                }
            }
        }
        let reply = self.with_conn(now, index, |conn, ctx| {
            if conn.state == State::SynSent {
                conn.handle_syn_sent(ctx, tcp)
            } else {
                conn.handle_segment(ctx, tcp, ecn)
            }
        });
        if let Some(Reply::Rst { seq }) = reply {
            let conn = &self.slots[index as usize].conn;
            let (tuple, route) = (conn.tuple, conn.route);
            self.push_control(
                tuple,
                route,
                seq,
                Seq(0),
                TcpFlags::RST,
                TcpOptions::default(),
            );
        }
        self.after(now, index, before);
    }

    /// TIME-WAIT (§3.10.7.4 and RFC 6191). Returns true if the segment is a
    /// new SYN that reopens the 4-tuple and should go to the listener.
    fn segment_in_time_wait(
        &mut self,
        now: Instant,
        key: &HashedTuple,
        entry: TimeWaitEntry,
        tcp: &TcpRepr<'_>,
    ) -> bool {
        let tuple = *key.tuple();
        let seq = Seq(tcp.seq_number);
        if tcp.flags.rst() {
            // RFC 1337: an RST does not cut TIME-WAIT short.
            return false;
        }
        if tcp.flags.syn() && !tcp.flags.ack() {
            // RFC 6191: a SYN with a newer timestamp, or (without
            // timestamps) a higher sequence number, may reopen the tuple.
            let newer = match (entry.ts, tcp.options.timestamps) {
                (Some((recent, _)), Some(ts)) => (ts.tsval.wrapping_sub(recent) as i32) > 0,
                _ => seq > entry.rcv_nxt,
            };
            if newer {
                self.time_wait.remove(key);
                self.stats.time_wait_reopened += 1;
                return true;
            }
        }
        // A retransmitted FIN restarts the 2×MSL wait; anything else that
        // occupies sequence space gets an ACK.
        if tcp.flags.fin() {
            let mut restarted = entry;
            restarted.expires = now + self.config.time_wait;
            self.time_wait.insert(key, restarted);
        }
        if tcp.segment_len() > 0 {
            let options = TcpOptions {
                timestamps: entry.ts.map(|(recent, offset)| Timestamps {
                    tsval: keys::tag_tsval(
                        (now.millis() as u32).wrapping_add(offset),
                        self.keys.keys().owner,
                    ),
                    tsecr: recent,
                }),
                ..Default::default()
            };
            self.push_control(
                tuple,
                entry.route,
                entry.snd_nxt,
                entry.rcv_nxt,
                TcpFlags::ACK,
                options,
            );
        }
        false
    }

    /// LISTEN (§3.10.7.2), with SYN cookies for a full SYN queue. True
    /// for an ACK (no SYN) with no valid cookie: a flow this stack does
    /// not know, which the caller forwards or resets.
    fn segment_for_listener(
        &mut self,
        now: Instant,
        listener: u32,
        tuple: FourTuple,
        route: Route,
        tcp: &TcpRepr<'_>,
        ecn_field: Ecn,
    ) -> bool {
        let flags = tcp.flags;
        if flags.rst() {
            return false; // First: an RST to a listener is ignored.
        }
        if let Some(refuse) = self.listeners[listener as usize].closed {
            // No new connections here (the listener is draining or gone).
            self.stats.refused_closed_listener += 1;
            if refuse == Refuse::Reset {
                self.reset_for(tuple, route, tcp);
            }
            return false;
        }
        if flags.ack() {
            // Second: an ACK; ours only if it carries a valid cookie.
            if !flags.syn()
                && self.config.syn_cookies != CookieMode::Never
                && self.accept_cookie(now, listener, tuple, route, tcp, ecn_field)
            {
                return false;
            }
            if !flags.syn() {
                return true;
            }
            self.reset_for(tuple, route, tcp);
            return false;
        }
        if !flags.syn() {
            return false; // Fourth: other text or control: drop.
        }
        // Third: SYN.
        let queue_full = self.listeners[listener as usize].syn_queue_full();
        let use_cookie = match self.config.syn_cookies {
            CookieMode::Always => true,
            CookieMode::Auto => queue_full,
            CookieMode::Never => false,
        };
        if use_cookie {
            self.send_cookie(now, tuple, route, tcp);
            return false;
        }
        if queue_full {
            self.stats.syn_queue_overflows += 1;
            self.stats.drop_syn_queue_full += 1;
            return false;
        }
        let Ok(id) = self.insert(now, tuple, route, State::SynReceived, None) else {
            return false;
        };
        let config = &self.config;
        let conn = &mut self.slots[id.index as usize].conn;
        let seq = Seq(tcp.seq_number);
        conn.listener = Some(ListenerId(listener));
        conn.irs = seq;
        conn.rcv_nxt = seq + 1;
        conn.rcv_adv = conn.rcv_nxt;
        conn.negotiate(config, &tcp.options);
        conn.accept_ecn(config, flags);
        self.stats.ecn_negotiated += u64::from(conn.ecn.enabled);
        conn.snd_wnd = u32::from(tcp.window_len);
        conn.max_snd_wnd = conn.snd_wnd;
        conn.snd_wl1 = seq;
        self.listeners[listener as usize].syn_queue_len += 1;
        self.after(now, id.index, State::SynReceived);
        false
    }

    /// Answers a SYN with a cookie SYN-ACK (RFC 4987 §3.6), keeping no state.
    fn send_cookie(&mut self, now: Instant, tuple: FourTuple, route: Route, tcp: &TcpRepr<'_>) {
        let client_isn = Seq(tcp.seq_number);
        let our_mss = self.config.mss_for(&tuple.remote);
        let mss_index = cookie::mss_index(tcp.options.mss.map(|m| m.min(our_mss)));
        let keys = self.keys.keys();
        let iss = cookie::make(
            &keys.current,
            &tuple,
            client_isn,
            mss_index,
            keys.clock(now),
        );
        let config = &self.config;
        let mut options = TcpOptions {
            mss: Some(our_mss),
            ..Default::default()
        };
        // Without the client's timestamps, window scale, SACK and ECN
        // cannot be remembered: offer none (see `cookie`).
        let mut ecn = false;
        if let (Some(ts), true) = (tcp.options.timestamps, config.timestamps) {
            let ws = tcp.options.window_scale.filter(|_| config.window_scaling);
            let sack = config.sack && tcp.options.sack_permitted;
            ecn = config.ecn != EcnMode::Off && is_ecn_setup_syn(tcp.flags);
            if ws.is_some() {
                options.window_scale = Some(config.window_shift());
            }
            options.sack_permitted = sack;
            let offset = self.ts_offset(&self.keys.keys().current, &tuple);
            let clock = (now.millis() as u32).wrapping_add(offset);
            options.timestamps = Some(Timestamps {
                tsval: cookie::encode_ts(clock, ws, sack, ecn),
                tsecr: ts.tsval,
            });
        }
        self.stats.syn_cookies_sent += 1;
        let window = config.recv_buffer.min(65535) as u16;
        let control = Control {
            tuple,
            route,
            seq: iss,
            ack: client_isn + 1,
            flags: if ecn {
                TcpFlags::SYN | TcpFlags::ACK | TcpFlags::ECE
            } else {
                TcpFlags::SYN | TcpFlags::ACK
            },
            window,
            options,
        };
        self.enqueue_control(control);
    }

    /// The final ACK of a cookie handshake: rebuild the connection.
    fn accept_cookie(
        &mut self,
        now: Instant,
        listener: u32,
        tuple: FourTuple,
        route: Route,
        tcp: &TcpRepr<'_>,
        ecn_field: Ecn,
    ) -> bool {
        let iss = Seq(tcp.ack_number.wrapping_sub(1));
        let client_isn = Seq(tcp.seq_number.wrapping_sub(1));
        // The key that minted it: the current one, one being rotated in,
        // or one recently dropped (`keys`).
        let clock = self.keys.keys().clock(now);
        let Some((mss_index, secret)) = self.keys.honoured(now).find_map(|secret| {
            cookie::check(secret, &tuple, client_isn, iss, clock).map(|mss| (mss, *secret))
        }) else {
            self.stats.syn_cookies_invalid += 1;
            return false;
        };
        // TSvals go on from the SYN-ACK's, or the client's PAWS drops them.
        let ts_offset = self.ts_offset(&secret, &tuple);
        if self.listeners[listener as usize].accept_queue_full() {
            // Valid, but nowhere to put it: drop; the client retransmits.
            self.stats.accept_queue_overflows += 1;
            return true;
        }
        let Ok(id) = self.insert(
            now,
            tuple,
            route,
            State::Established,
            Some((iss, ts_offset)),
        ) else {
            return true;
        };
        self.stats.syn_cookies_validated += 1;
        self.stats.opened(tuple.is_ipv6());
        let config = &self.config;
        let conn = &mut self.slots[id.index as usize].conn;
        let seq = Seq(tcp.seq_number);
        conn.listener = Some(ListenerId(listener));
        conn.irs = client_isn;
        conn.rcv_nxt = seq;
        conn.rcv_adv = seq + config.recv_buffer.min(65535);
        conn.snd_una = iss + 1;
        conn.snd_nxt = iss + 1;
        conn.snd_max = iss + 1;
        conn.mss =
            usize::from(cookie::MSS_TABLE[mss_index as usize].min(config.mss_for(&tuple.remote)));
        conn.cc.set_mss(conn.mss);
        if let (Some(ts), true) = (tcp.options.timestamps, config.timestamps) {
            let (ws, sack, ecn) = cookie::decode_ts(ts.tsecr);
            conn.ecn.enabled = ecn && config.ecn != EcnMode::Off;
            self.stats.ecn_negotiated += u64::from(conn.ecn.enabled);
            conn.ts.enabled = true;
            conn.ts.recent = ts.tsval;
            if let (Some(shift), true) = (ws, config.window_scaling) {
                conn.snd_shift = shift.min(14);
                conn.rcv_shift = config.window_shift();
            }
            conn.sack_permitted = sack && config.sack;
        }
        conn.snd_wnd = u32::from(tcp.window_len) << conn.snd_shift;
        conn.max_snd_wnd = conn.snd_wnd;
        conn.snd_wl1 = seq;
        conn.snd_wl2 = Seq(tcp.ack_number);
        conn.last_ack_sent = seq;
        self.listeners[listener as usize].accept_queue.push_back(id);
        self.events
            .push_back(Event::Acceptable(ListenerId(listener)));
        // The ACK may carry data: process it as an established connection.
        if !tcp.payload.is_empty() || tcp.flags.fin() {
            self.segment_for_conn(now, id.index, tcp, ecn_field);
        } else {
            self.after(now, id.index, State::Established);
        }
        true
    }

    /// §3.10.7.1: the reply to a segment for no connection (or a bad ACK to
    /// a listener): nothing for an RST; `<SEQ=SEG.ACK><CTL=RST>` for an ACK;
    /// else `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`.
    fn reset_for(&mut self, tuple: FourTuple, route: Route, tcp: &TcpRepr<'_>) {
        if tcp.flags.rst() {
            return;
        }
        let none = TcpOptions::default();
        if tcp.flags.ack() {
            self.push_control(
                tuple,
                route,
                Seq(tcp.ack_number),
                Seq(0),
                TcpFlags::RST,
                none,
            );
        } else {
            let ack = Seq(tcp.seq_number) + tcp.segment_len();
            self.push_control(
                tuple,
                route,
                Seq(0),
                ack,
                TcpFlags::RST | TcpFlags::ACK,
                none,
            );
        }
    }

    fn push_control(
        &mut self,
        tuple: FourTuple,
        route: Route,
        seq: Seq,
        ack: Seq,
        flags: TcpFlags,
        options: TcpOptions,
    ) {
        if flags.rst() {
            self.stats.resets_sent += 1;
        }
        self.enqueue_control(Control {
            tuple,
            route,
            seq,
            ack,
            flags,
            window: 0,
            options,
        });
    }

    fn enqueue_control(&mut self, control: Control) {
        if self.control.len() >= CONTROL_QUEUE_LIMIT {
            self.stats.drop_control_queue_full += 1;
            return;
        }
        self.control.push_back(control);
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.refill_challenge_budget(now);
        self.time_wait.expire(now);
        let mut expired = std::mem::take(&mut self.expired);
        self.timers.expire(now, &mut expired);
        for &index in &expired {
            let slot = &mut self.slots[index as usize];
            if !slot.occupied {
                continue;
            }
            slot.conn.scheduled = None;
            let before = slot.conn.state;
            self.with_conn(now, index, |conn, ctx| conn.handle_timeout(ctx));
            self.after(now, index, before);
        }
        expired.clear();
        self.expired = expired;
    }

    fn refill_challenge_budget(&mut self, now: Instant) {
        let second = now.micros() / 1_000_000;
        if second != self.challenge_second {
            self.challenge_second = second;
            self.challenge_budget = self.config.challenge_ack_limit;
        }
    }

    // ---- Outputs ----

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` should run next: never after the next
    /// deadline, sometimes before it (the timer wheel's coarse levels, see
    /// [`TimerWheel::next_deadline`]); running it early is harmless.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        match (self.timers.next_deadline(), self.time_wait.next_expiry()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Writes the next segment (IP header + TCP) into `buf`, which should
    /// hold at least 100 + MSS bytes (an IPv6 header, TCP with 40 bytes
    /// of options). Stateless replies go first, then
    /// connections in the order they became ready.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        debug_assert!(buf.len() >= MAX_HEADERS + usize::from(self.config.mss));
        if let Some(control) = self.control.pop_front() {
            let len = emit_control(&control, buf);
            self.stats.segments_out += 1;
            return Some(Transmit {
                len,
                tuple: control.tuple,
                route: control.route,
            });
        }
        while let Some(index) = self.tx_queue.pop_front() {
            let slot = &mut self.slots[index as usize];
            slot.conn.tx_queued = false;
            if !slot.occupied {
                continue;
            }
            let before = slot.conn.state;
            let written = slot.conn.poll_segment(now, &self.config, &self.pool, buf);
            let conn = &mut slot.conn;
            let (tuple, route) = (conn.tuple, conn.route);
            self.stats.retransmitted_segments += u64::from(std::mem::take(&mut conn.retransmitted));
            self.stats.retransmitted_bytes +=
                u64::from(std::mem::take(&mut conn.retransmitted_bytes));
            if conn.wants_to_send() && conn.state != State::Closed {
                conn.tx_queued = true;
                self.tx_queue.push_front(index);
            }
            self.after(now, index, before);
            if let Some(len) = written {
                self.stats.segments_out += 1;
                return Some(Transmit { len, tuple, route });
            }
        }
        None
    }

    // ---- Slot management ----

    /// Takes a slot for a new connection. `cookie` is the ISS and
    /// timestamp offset a cookie's handshake used, when a cookie rebuilds
    /// the connection; otherwise both come from the current key and the
    /// handshake clock (RFC 6528 §3, RFC 7323 §7.1), or the ISS from
    /// `set_next_iss`.
    fn insert(
        &mut self,
        now: Instant,
        tuple: FourTuple,
        route: Route,
        state: State,
        cookie: Option<(Seq, u32)>,
    ) -> Result<ConnId, CommandError> {
        if self.by_tuple.len() >= self.max_connections {
            self.stats.drop_table_full += 1;
            return Err(CommandError::TooManyConnections);
        }
        let (iss, ts_offset) = match cookie {
            Some(cookie) => cookie,
            None => {
                let handshake = self.keys.keys();
                let keys = isn::tuple_keys(&handshake.current, tuple.local, tuple.remote);
                let iss = self
                    .next_iss
                    .take()
                    .unwrap_or_else(|| isn::initial_sequence_number(keys, handshake.clock(now)));
                (iss, handshake.ts_offset(keys))
            }
        };
        let slots = &self.slots;
        let index = match self.free.take(slots.len(), |i| !slots[i as usize].occupied) {
            Some(index) => {
                let slot = &mut self.slots[index as usize];
                slot.conn
                    .reuse(&self.config, tuple, route, state, iss, ts_offset, now);
                slot.occupied = true;
                index
            }
            None => {
                let conn = Conn::new(&self.config, tuple, route, state, iss, ts_offset, now);
                self.slots.push(Slot {
                    conn,
                    generation: self.generation_floor,
                    occupied: true,
                    tag: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.slots[index as usize].conn.ts.owner = self.keys.keys().owner;
        // Unique: callers insert a tuple only when `slot_of` found none.
        debug_assert!(self.slot_of(&self.hasher.hashed(tuple)).is_none());
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.by_tuple
            .insert_unique(hasher.hash(&tuple), index, |&i| {
                hasher.hash(&slots[i as usize].conn.tuple)
            });
        self.in_state[state as usize] += 1;
        Ok(ConnId {
            index,
            generation: self.slots[index as usize].generation,
        })
    }

    /// Runs `f` on a connection with a context borrowed from the stack.
    fn with_conn<R>(
        &mut self,
        now: Instant,
        index: u32,
        f: impl FnOnce(&mut Conn, &mut Ctx<'_>) -> R,
    ) -> R {
        self.refill_challenge_budget(now);
        let slot = &mut self.slots[index as usize];
        let id = ConnId {
            index,
            generation: slot.generation,
        };
        let mut ctx = Ctx {
            now,
            id,
            tag: slot.tag,
            config: &self.config,
            events: &mut self.events,
            stats: &mut self.stats,
            challenge_budget: &mut self.challenge_budget,
            pool: &mut self.pool,
        };
        f(&mut slot.conn, &mut ctx)
    }

    /// After anything touched a connection: follow its state change
    /// (accept queue, TIME-WAIT, freeing), reschedule its timer, queue it
    /// for transmission.
    fn after(&mut self, now: Instant, index: u32, before: State) {
        let slot = &mut self.slots[index as usize];
        if slot.occupied && slot.conn.state != before {
            self.in_state[before as usize] -= 1;
            self.in_state[slot.conn.state as usize] += 1;
        }
        if !slot.occupied || slot.conn.detached {
            return;
        }
        let id = ConnId {
            index,
            generation: slot.generation,
        };
        let conn = &mut slot.conn;
        let state = conn.state;
        if before == State::SynReceived && state != State::SynReceived {
            if let Some(listener) = conn.listener {
                let listener_state = &mut self.listeners[listener.0 as usize];
                listener_state.syn_queue_len -= 1;
                if state != State::Closed {
                    listener_state.accept_queue.push_back(id);
                    self.events.push_back(Event::Acceptable(listener));
                }
            }
        }
        match state {
            State::TimeWait => {
                let entry = TimeWaitEntry {
                    snd_nxt: conn.snd_max,
                    rcv_nxt: conn.rcv_nxt,
                    ts: conn.ts.enabled.then_some((conn.ts.recent, conn.ts.offset)),
                    rcv_shift: conn.rcv_shift,
                    route: conn.route,
                    expires: now + self.config.time_wait,
                };
                // The final ACK of our FIN exchange still has to go out.
                if conn.wants_to_send() {
                    let tsval = conn.tsval(now);
                    let options = TcpOptions {
                        timestamps: conn.ts.enabled.then_some(Timestamps {
                            tsval,
                            tsecr: conn.ts.recent,
                        }),
                        ..Default::default()
                    };
                    let (tuple, route, seq, ack) =
                        (conn.tuple, conn.route, conn.snd_nxt, conn.rcv_nxt);
                    self.enqueue_control(Control {
                        tuple,
                        route,
                        seq,
                        ack,
                        flags: TcpFlags::ACK,
                        window: 0,
                        options,
                    });
                }
                let key = self.hasher.hashed(self.slots[index as usize].conn.tuple);
                if self.time_wait.len() < self.config.max_time_wait {
                    self.time_wait.insert(&key, entry);
                    self.stats.time_wait_entered += 1;
                } else {
                    // Linux's "time wait bucket table overflow": the
                    // 4-tuple is free at once.
                    self.stats.time_wait_overflows += 1;
                }
                self.stats.connections_closed += 1;
                let slot = &self.slots[index as usize];
                if let (false, Some(tag)) = (slot.conn.app_closed, slot.tag) {
                    self.events.push_back(Event::Closed(id, tag));
                }
                self.finish(index);
                return;
            }
            State::Closed => {
                if conn.rst_pending {
                    conn.rst_pending = false;
                    let (tuple, route) = (conn.tuple, conn.route);
                    let seq = conn.snd_max;
                    let ack = conn.rcv_nxt;
                    self.push_control(
                        tuple,
                        route,
                        seq,
                        ack,
                        TcpFlags::RST | TcpFlags::ACK,
                        TcpOptions::default(),
                    );
                }
                self.finish(index);
                return;
            }
            _ => {}
        }
        conn.update_persist(now);
        let deadline = conn.timers.next();
        if deadline != conn.scheduled {
            conn.scheduled = deadline;
            match deadline {
                Some(at) => self.timers.insert(index, at),
                None => self.timers.remove(index),
            }
        }
        if !conn.tx_queued && conn.wants_to_send() {
            conn.tx_queued = true;
            self.tx_queue.push_back(index);
        }
    }

    /// A connection reached CLOSED or TIME-WAIT: free it if the
    /// application is done with it, else detach it so what is unread stays
    /// readable until `close`.
    fn finish(&mut self, index: u32) {
        if self.slots[index as usize].conn.app_closed {
            self.free_slot(index);
            return;
        }
        self.release_tuple(index);
        let conn = &mut self.slots[index as usize].conn;
        // Nothing more is sent; what was received stays readable.
        conn.send_buf.release(&mut self.pool);
        conn.detached = true;
        conn.timers.clear();
        conn.scheduled = None;
        self.timers.remove(index);
    }

    /// Removes the slot's 4-tuple from the map, unless a newer connection
    /// on the same tuple owns the entry.
    fn release_tuple(&mut self, index: u32) {
        let hash = self.hasher.hash(&self.slots[index as usize].conn.tuple);
        // The bucket holding this slot, found by the slot: no tuple to
        // compare, and a newer connection's bucket is never taken.
        if let Ok(bucket) = self.by_tuple.find_entry(hash, |&i| i == index) {
            bucket.remove();
        }
    }

    fn free_slot(&mut self, index: u32) {
        self.release_tuple(index);
        let slot = &mut self.slots[index as usize];
        self.in_state[slot.conn.state as usize] -= 1;
        slot.occupied = false;
        slot.tag = None;
        slot.generation = slot.generation.wrapping_add(1);
        slot.conn.timers.clear();
        slot.conn.scheduled = None;
        slot.conn.detached = false;
        slot.conn.release_buffers(&mut self.pool);
        self.timers.remove(index);
        self.free.give(index);
    }

    /// Cuts off the free slots at the end of the slab and gives back the
    /// memory of a slab much longer than it now needs: connections come
    /// back to the lowest free slots first, so after a peak the tail
    /// empties. The owner calls it now and then (the shard: every 100 ms),
    /// not per connection, so that a slab whose length hovers does not
    /// drop and rebuild its last slots (each slot is cut once per peak).
    pub fn release_memory(&mut self) {
        let floor = &mut self.generation_floor;
        cut_free_tail(
            &mut self.slots,
            &mut self.free,
            |slot| !slot.occupied,
            |slot| *floor = (*floor).max(slot.generation),
        );
        self.timers.truncate(self.slots.len());
        if let Some(keep) = shrink_target(self.by_tuple.len(), self.by_tuple.capacity()) {
            let (slots, hasher) = (&self.slots, &self.hasher);
            self.by_tuple
                .shrink_to(keep, |&i| hasher.hash(&slots[i as usize].conn.tuple));
        }
    }

    /// The connections' buffer memory: lent, peak, spare, shortages.
    pub fn buffer_pool(&self) -> &ChunkPool {
        &self.pool
    }

    /// Connection slots held (in use or free for reuse): up to the peak of
    /// connections open at once, and back down as the tail empties.
    pub fn slots_held(&self) -> usize {
        self.slots.len()
    }

    /// Connection slots in use, detached ones included: zero once every
    /// connection has finished and been closed by the application.
    pub fn slots_in_use(&self) -> usize {
        self.in_state.iter().sum()
    }
}

/// Writes a stateless segment (IP + TCP) into `buf`.
fn emit_control(control: &Control, buf: &mut [u8]) -> usize {
    let repr = TcpRepr {
        src_port: control.tuple.local.port(),
        dst_port: control.tuple.remote.port(),
        seq_number: control.seq.0,
        ack_number: control.ack.0,
        flags: control.flags,
        window_len: control.window,
        urgent_at: 0,
        options: control.options,
        payload: &[],
    };
    let tcp_len = repr.emit_header(&mut buf[tcp_offset(&control.tuple)..]);
    finish_segment(buf, &control.tuple, tcp_len, Ecn::NotEct)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per-connection engine state stays small: the buffers are separate and
    /// allocated only when used. 552 bytes when this was written; 736 with
    /// CUBIC's and HyStart++'s state (issue 15); 776 with SACK recovery,
    /// the tail-loss probe and two timers (the scoreboard and the
    /// reassembly ranges moved out to vectors allocated at the first hole);
    /// 800 with ECN's state and the spurious-timeout record; 896 with BBR's
    /// path model (the largest congestion controller in the enum) and the
    /// pacing schedule; 928 with IPv6 (the four-tuple holds two 20-byte
    /// `Endpoint`s where two `SocketAddrV4`s took 12).
    #[test]
    fn connection_state_stays_small() {
        let size = Stack::connection_state_size();
        println!("a connection's engine state: {size} bytes");
        assert!(size <= 928, "a connection's state grew to {size} bytes");
    }
}
