//! The shard's proxy: sessions between accepted client connections (our
//! stack) and backend sockets (the shard's io_uring).
//!
//! # Life of a session
//! 1. **Open** (accepted): choose a backend, take a source port, open a
//!    socket, connect with the pool's timeout. Client bytes wait in our
//!    stack meanwhile (its window closes if they keep coming).
//! 2. **Connect failed** (refused, timed out): a passive health failure;
//!    the next backend, up to `retries` more; then RST to the client. A
//!    4-tuple still in TIME-WAIT (`EADDRNOTAVAIL`) retries with the next
//!    source port, not counted against the backend.
//! 3. **Splice**: client → backend through one bounded upload buffer and
//!    one send in flight; backend → client from a multishot receive,
//!    copied into our send buffer as room allows (see
//!    [`super::session`] for backpressure).
//! 4. **Close**, per the listener's policy:
//!    - the client's FIN (after its bytes went to the backend) becomes
//!      shutdown(SHUT_WR) toward the backend; its EOF is awaited up to
//!      `close_grace`, then the socket is closed;
//!    - the backend's EOF, once its bytes are queued to the client:
//!      `client-first` holds our FIN up to `close_grace` for the client's
//!      FIN, so we pass CLOSE-WAIT → LAST-ACK and never hold TIME-WAIT;
//!      then `fin` or `reset`. `immediate` sends FIN at once (half-close:
//!      the client may still send).
//!    - client reset → the backend socket is closed with RST (SO_LINGER 0);
//!      backend reset or error → RST to the client.
//! 5. **Free**: both sides finished and no io_uring operation in flight.

use std::sync::Arc;
use std::time::Duration;

use io_uring::types::Timespec;

use super::proxy_protocol;
use super::session::{Held, Session};
use crate::config::{ClosePolicy, GraceFallback, ProxyProtocol};
use crate::tcp::{ConnId, Instant, Stack};
use crate::upstream::pool::{HealthBoard, ShardPool};
use crate::upstream::socket::{self, OpenError};
use crate::upstream::uring::{Completion, Op, Uring, UringConfig};

/// What the proxy needs to know about one listener.
#[derive(Debug, Clone, Copy)]
pub struct ProxyListener {
    pub pool: usize,
    pub close_policy: ClosePolicy,
    pub close_grace: Duration,
    pub grace_fallback: GraceFallback,
    pub idle_timeout: Duration,
    /// This shard's share of the listener's connection limit.
    pub max_connections: u32,
}

/// Proxy counters of one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    pub sessions_opened: u64,
    pub sessions_active: u64,
    pub connects_failed: u64,
    pub connects_timed_out: u64,
    pub retries: u64,
    /// Connects retried on another port: the 4-tuple was in TIME-WAIT.
    pub port_retries: u64,
    /// Clients reset because no backend could take them.
    pub no_backend: u64,
    /// Clients reset at the listener's connection limit.
    pub over_limit: u64,
    pub backend_resets: u64,
    pub client_resets: u64,
    /// client-first: the client closed within the grace period.
    pub client_closed_first: u64,
    pub grace_expired: u64,
    pub idle_closed: u64,
    pub bytes_to_backend: u64,
    pub bytes_to_client: u64,
    /// Socket errors opening a backend socket (not port conflicts).
    pub socket_errors: u64,
    pub ports_exhausted: u64,
    pub receive_buffer_shortage: u64,
    /// Provided buffers held now for clients that have no room yet, and
    /// the most ever held at once (backend → client backpressure).
    pub held_buffers: u64,
    pub held_buffers_peak: u64,
}

const NO_SESSION: u32 = u32::MAX;
const MAX_PORT_RETRIES: u32 = 8;

pub struct Proxy {
    uring: Uring,
    board: Arc<HealthBoard>,
    pools: Vec<ShardPool>,
    /// Connect timeouts per pool (the kernel copies them at submit).
    timeouts: Vec<Timespec>,
    listeners: Vec<ProxyListener>,
    open_per_listener: Vec<u32>,
    sessions: Vec<Session>,
    free: Vec<u32>,
    /// Client connection slot index → session slot.
    by_conn: Vec<u32>,
    completions: Vec<Completion>,
    /// Sessions whose receive ended for want of buffers.
    starved: Vec<u32>,
    xsk_poll_armed: bool,
    pub stats: ProxyStats,
}

impl Proxy {
    pub fn new(
        uring: UringConfig,
        board: Arc<HealthBoard>,
        pools: Vec<ShardPool>,
        listeners: Vec<ProxyListener>,
    ) -> std::io::Result<Self> {
        let timeouts = pools
            .iter()
            .map(|p| Timespec::from(p.connect_timeout))
            .collect();
        let open_per_listener = vec![0; listeners.len()];
        Ok(Self {
            uring: Uring::new(uring)?,
            board,
            pools,
            timeouts,
            listeners,
            open_per_listener,
            sessions: Vec::new(),
            free: Vec::new(),
            by_conn: Vec::new(),
            completions: Vec::with_capacity(256),
            starved: Vec::new(),
            xsk_poll_armed: false,
            stats: ProxyStats::default(),
        })
    }

    pub fn pools(&self) -> &[ShardPool] {
        &self.pools
    }

    fn slot_of(&self, id: ConnId) -> Option<u32> {
        let slot = *self.by_conn.get(id.index as usize)?;
        (slot != NO_SESSION && self.sessions[slot as usize].client == id).then_some(slot)
    }

    /// True if `id` is a client connection of a live session.
    pub fn owns(&self, id: ConnId) -> bool {
        self.slot_of(id).is_some()
    }

    /// Step 1: a connection accepted on proxy listener `listener`.
    pub fn open(&mut self, stack: &mut Stack, now: Instant, id: ConnId, listener: usize) {
        let spec = self.listeners[listener];
        if spec.max_connections > 0 && self.open_per_listener[listener] >= spec.max_connections {
            self.stats.over_limit += 1;
            let _ = stack.abort(now, id);
            return;
        }
        let Some(tuple) = stack.tuple(id) else {
            return;
        };
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.sessions.push(Session::empty());
                (self.sessions.len() - 1) as u32
            }
        };
        let index = id.index as usize;
        if self.by_conn.len() <= index {
            self.by_conn.resize(index + 1, NO_SESSION);
        }
        self.by_conn[index] = slot;
        let session = &mut self.sessions[slot as usize];
        session.reset(id, tuple.remote, tuple.local, now);
        session.listener = listener;
        session.pool = spec.pool;
        self.open_per_listener[listener] += 1;
        self.stats.sessions_opened += 1;
        self.stats.sessions_active += 1;
        self.connect_next(stack, now, slot);
    }

    /// Chooses a backend not yet tried and connects; RST to the client if
    /// none is left.
    fn connect_next(&mut self, stack: &mut Stack, now: Instant, slot: u32) {
        let s = &mut self.sessions[slot as usize];
        let pool = &mut self.pools[s.pool];
        let choice = if s.attempts > pool.retries {
            None
        } else {
            pool.choose(&self.board, *s.client_addr.ip(), s.tried)
        };
        let Some(backend) = choice else {
            self.stats.no_backend += 1;
            self.fail_client(stack, now, slot);
            return;
        };
        if s.attempts > 0 {
            self.stats.retries += 1;
        }
        s.attempts += 1;
        s.tried |= 1u64.checked_shl(backend as u32).unwrap_or(0);
        s.backend = backend;
        pool.active[backend] += 1;
        pool.opened[backend] += 1;
        self.connect_backend(stack, now, slot);
    }

    /// Opens a socket on a fresh source port and connects it to the
    /// session's backend.
    fn connect_backend(&mut self, stack: &mut Stack, now: Instant, slot: u32) {
        let s = &mut self.sessions[slot as usize];
        let pool = &mut self.pools[s.pool];
        let address = pool.backends[s.backend];
        let fd = loop {
            let Some((source, ip, port)) = pool.take_source() else {
                // Every port of this shard is open: let the kernel choose.
                self.stats.ports_exhausted += 1;
                match socket::open(std::net::Ipv4Addr::UNSPECIFIED, 0) {
                    Ok(fd) => break fd,
                    Err(_) => {
                        self.stats.socket_errors += 1;
                        pool.active[s.backend] -= 1;
                        self.fail_client(stack, now, slot);
                        return;
                    }
                }
            };
            match socket::open(ip, port) {
                Ok(fd) => {
                    s.source = Some((source, port));
                    break fd;
                }
                Err(OpenError::PortInUse) => pool.retire_source(source, port),
                Err(OpenError::Other(e)) => {
                    pool.give_back_source(source, port);
                    tracing::warn!("backend socket: {e}");
                    self.stats.socket_errors += 1;
                    pool.active[s.backend] -= 1;
                    self.fail_client(stack, now, slot);
                    return;
                }
            }
        };
        s.fd = fd;
        *s.addr = socket::sockaddr(address);
        s.ops += 2;
        // Safety: `s.addr` is boxed in the slot, which is not reused while
        // `ops` > 0; the timeout lives in `self.timeouts` for the proxy's
        // life.
        unsafe {
            self.uring
                .connect(fd, &*s.addr, slot, s.generation, &self.timeouts[s.pool])
        };
    }

    /// Closes the session's backend socket (sync: no operation in flight
    /// uses it) after a failed connect; its port goes back.
    fn drop_failed_socket(&mut self, slot: u32) {
        let s = &mut self.sessions[slot as usize];
        if s.fd >= 0 {
            socket::close_now(s.fd);
            s.fd = -1;
        }
        if let Some((source, port)) = s.source.take() {
            self.pools[s.pool].give_back_source(source, port);
        }
    }

    /// RST to the client; the session ends.
    fn fail_client(&mut self, stack: &mut Stack, now: Instant, slot: u32) {
        let s = &mut self.sessions[slot as usize];
        if !s.client_done {
            let _ = stack.abort(now, s.client);
            self.release_client(slot);
        }
        self.maybe_free(slot);
    }

    /// Our handle on the client is gone (closed, aborted or reset).
    fn release_client(&mut self, slot: u32) {
        let s = &mut self.sessions[slot as usize];
        if s.client_done {
            return;
        }
        s.client_done = true;
        if let Some(entry) = self.by_conn.get_mut(s.client.index as usize) {
            if *entry == slot {
                *entry = NO_SESSION;
            }
        }
        self.open_per_listener[s.listener] -= 1;
    }

    /// Step 5: frees the slot once both sides are done and nothing is in
    /// flight.
    fn maybe_free(&mut self, slot: u32) {
        self.close_when_idle(slot);
        let s = &mut self.sessions[slot as usize];
        if !s.live || !s.finished() || s.ops > 0 {
            return;
        }
        for held in s.pending.drain(..) {
            self.uring.recycle(held.buffer);
            self.stats.held_buffers -= 1;
        }
        s.live = false;
        self.stats.sessions_active -= 1;
        self.free.push(slot);
    }

    /// A client event (readable, writable, peer closed).
    pub fn on_client_event(&mut self, stack: &mut Stack, now: Instant, id: ConnId) {
        if let Some(slot) = self.slot_of(id) {
            self.advance(stack, now, slot);
        }
    }

    /// The client connection ended on its own: `reset` true for a RST
    /// (the handle is already invalid), false for a clean end (the handle
    /// is released here).
    pub fn on_client_gone(&mut self, stack: &mut Stack, now: Instant, id: ConnId, reset: bool) {
        let Some(slot) = self.slot_of(id) else {
            return;
        };
        if reset {
            self.stats.client_resets += 1;
        } else {
            let _ = stack.close(now, id);
        }
        self.release_client(slot);
        let s = &mut self.sessions[slot as usize];
        if reset && s.fd >= 0 && !s.close_wanted {
            // The backend should see an abort, not a clean end.
            socket::set_linger_zero(s.fd);
            self.close_backend(slot);
        }
        self.advance(stack, now, slot);
    }

    /// Ends the backend socket: cancels its receive, and closes the fd once
    /// no other operation on it is in flight. io_uring does not order
    /// independent entries: a shutdown or send still queued behind a close
    /// would hit whatever socket gets the fd number next.
    fn close_backend(&mut self, slot: u32) {
        let s = &mut self.sessions[slot as usize];
        if s.fd < 0 || s.close_wanted {
            return;
        }
        s.close_wanted = true;
        if s.recv_armed && !s.recv_cancelled {
            s.recv_cancelled = true;
            s.ops += 1;
            self.uring.cancel(Op::Recv, slot, s.generation);
        }
        self.pools[s.pool].active[s.backend] -= 1;
        self.close_when_idle(slot);
    }

    fn close_when_idle(&mut self, slot: u32) {
        let s = &mut self.sessions[slot as usize];
        if s.close_wanted && !s.closing && s.ops == 0 && s.fd >= 0 {
            s.closing = true;
            s.ops += 1;
            self.uring.close(s.fd, slot, s.generation);
        }
    }

    /// Moves data and applies the close policy after anything happened to
    /// a session (steps 3 and 4).
    fn advance(&mut self, stack: &mut Stack, now: Instant, slot: u32) {
        let spec = self.listeners[self.sessions[slot as usize].listener];
        let s = &mut self.sessions[slot as usize];
        if !s.live {
            return;
        }
        if !s.client_done {
            // Backend → client: what the client's buffer takes.
            while let Some(held) = s.pending.first_mut() {
                let bytes = self
                    .uring
                    .buffer(held.buffer, (held.offset + held.len) as usize);
                match stack.send(now, s.client, &bytes[held.offset as usize..]) {
                    Ok(n) if n > 0 => {
                        self.stats.bytes_to_client += n as u64;
                        s.last_active = now;
                        held.offset += n as u32;
                        held.len -= n as u32;
                        if held.len == 0 {
                            let buffer = held.buffer;
                            s.pending.remove(0);
                            self.uring.recycle(buffer);
                            self.stats.held_buffers -= 1;
                        } else {
                            break;
                        }
                    }
                    Ok(_) => break,
                    Err(_) => {
                        // The client can take nothing more (it closed
                        // its receive side or is gone): drop the rest.
                        for held in s.pending.drain(..) {
                            self.uring.recycle(held.buffer);
                            self.stats.held_buffers -= 1;
                        }
                    }
                }
            }
            // Client → backend: one send in flight at a time.
            if s.connected && !s.send_in_flight && !s.backend_shut && !s.close_wanted {
                if s.sent == s.filled {
                    s.sent = 0;
                    s.filled = stack.recv(now, s.client, &mut s.upload).unwrap_or(0);
                }
                if s.filled > s.sent {
                    s.send_in_flight = true;
                    s.ops += 1;
                    s.last_active = now;
                    // Safety: `upload` is boxed in the slot, which is not
                    // reused while `ops` > 0, and not written while
                    // `send_in_flight`.
                    unsafe {
                        self.uring.send(
                            s.fd,
                            s.upload.as_ptr().add(s.sent),
                            s.filled - s.sent,
                            slot,
                            s.generation,
                        )
                    };
                } else if stack.peer_closed(s.client) && stack.readable(s.client) == 0 {
                    // The client's FIN, after all its bytes: pass it on.
                    s.backend_shut = true;
                    s.backend_deadline = Some(now + spec.close_grace.max(Duration::from_secs(1)));
                    socket::shutdown_write(s.fd);
                }
            }
            // Keep reading from the backend while the client keeps up: a
            // multishot receive while the client's buffer is at least half
            // free, one buffer at a time below that, none when it is full
            // (its Writable event brings us back). A multishot receive is
            // cancelled when room falls under half, so what it still pulls
            // in before the cancel lands fits the remaining room instead of
            // piling up in held buffers.
            let room = stack.send_capacity(s.client);
            let half = stack.config().send_buffer / 2;
            if s.connected
                && !s.recv_armed
                && !s.backend_eof
                && !s.close_wanted
                && s.pending.is_empty()
                && room > 0
            {
                s.recv_armed = true;
                s.recv_cancelled = false;
                s.recv_multishot = room >= half;
                s.ops += 1;
                if s.recv_multishot {
                    let limit = room.min(u32::MAX as usize) as u32;
                    self.uring.recv_multishot(s.fd, slot, s.generation, limit);
                } else {
                    self.uring.recv_once(s.fd, slot, s.generation);
                }
            } else if s.recv_armed
                && s.recv_multishot
                && !s.recv_cancelled
                && room < half
                && !self.uring.limits_supported()
            {
                s.recv_cancelled = true;
                s.ops += 1;
                self.uring.cancel(Op::Recv, slot, s.generation);
            }
            // The backend finished and all its bytes are queued to the client.
            if s.backend_eof && s.pending.is_empty() {
                if stack.peer_closed(s.client) && stack.readable(s.client) == 0 {
                    if !s.client_fin_sent {
                        self.stats.client_closed_first += 1;
                    }
                    // CLOSE-WAIT → LAST-ACK: the client keeps TIME-WAIT.
                    let _ = stack.close(now, s.client);
                    self.release_client(slot);
                } else if !s.client_fin_sent {
                    match spec.close_policy {
                        ClosePolicy::Immediate => {
                            s.client_fin_sent = true;
                            let _ = stack.shutdown(now, s.client);
                        }
                        ClosePolicy::ClientFirst => {
                            if s.grace_deadline.is_none() {
                                s.grace_deadline = Some(now + spec.close_grace);
                            }
                        }
                    }
                }
            }
        }
        let s = &mut self.sessions[slot as usize];
        // The backend socket: done when both directions are, or when the
        // client is gone.
        if s.fd >= 0 && !s.close_wanted {
            let both_ended = s.backend_eof && (s.backend_shut || s.client_done);
            let client_gone_unconnected = s.client_done && !s.connected;
            if both_ended || client_gone_unconnected {
                self.close_backend(slot);
            } else if s.client_done && s.connected && !s.backend_shut && !s.send_in_flight {
                // Client gone (closed or reset) before the backend ended:
                // FIN to the backend, then a bounded wait for its EOF.
                s.backend_shut = true;
                s.backend_deadline = Some(now + spec.close_grace.max(Duration::from_secs(1)));
                socket::shutdown_write(s.fd);
            }
        }
        self.maybe_free(slot);
    }

    /// io_uring completions: the backend side of every session.
    pub fn process_completions(&mut self, stack: &mut Stack, now: Instant) -> usize {
        let mut batch = std::mem::take(&mut self.completions);
        self.uring.complete(&mut batch);
        let count = batch.len();
        for c in batch.drain(..) {
            self.on_completion(stack, now, c);
        }
        self.completions = batch;
        if !self.starved.is_empty() {
            for slot in std::mem::take(&mut self.starved) {
                self.advance(stack, now, slot);
            }
        }
        count
    }

    fn on_completion(&mut self, stack: &mut Stack, now: Instant, c: Completion) {
        if c.token.op == Op::PollXsk {
            self.xsk_poll_armed = false;
            return;
        }
        let slot = c.token.slot;
        let Some(s) = self.sessions.get_mut(slot as usize) else {
            return;
        };
        if s.generation != c.token.generation {
            // Cannot happen (slots wait for their operations); a buffer
            // must still go back.
            if let Some(buffer) = c.buffer {
                self.uring.recycle(buffer);
            }
            return;
        }
        if !c.more {
            s.ops -= 1;
        }
        match c.token.op {
            Op::Connect => self.on_connect(stack, now, slot, c.result),
            Op::Recv => self.on_recv(stack, now, slot, c),
            Op::Send => {
                s.send_in_flight = false;
                if c.result >= 0 {
                    s.sent += c.result as usize;
                    self.stats.bytes_to_backend += c.result as u64;
                    s.last_active = now;
                } else {
                    self.backend_failed(stack, now, slot);
                }
            }
            Op::Close => {
                s.fd = -1;
                if let Some((source, port)) = s.source.take() {
                    self.pools[s.pool].give_back_source(source, port);
                }
            }
            Op::ConnectTimeout | Op::Cancel | Op::PollXsk => {}
        }
        self.advance(stack, now, slot);
    }

    fn on_connect(&mut self, stack: &mut Stack, now: Instant, slot: u32, result: i32) {
        let s = &mut self.sessions[slot as usize];
        if s.client_done {
            // The client went away while connecting.
            if result == 0 {
                s.connected = true;
            } else {
                if !s.close_wanted {
                    self.pools[s.pool].active[s.backend] -= 1;
                }
                self.drop_failed_socket(slot);
            }
            return;
        }
        if result == 0 {
            s.connected = true;
            let header = self.pools[s.pool].proxy_protocol;
            if header != ProxyProtocol::None {
                let mut out = [0u8; proxy_protocol::MAX_LEN];
                let n = proxy_protocol::encode(header, s.client_addr, s.vip, &mut out);
                s.upload[..n].copy_from_slice(&out[..n]);
                s.sent = 0;
                s.filled = n;
            }
            return;
        }
        let pool = s.pool;
        let backend = s.backend;
        if result == -libc::EADDRNOTAVAIL && s.port_retries < MAX_PORT_RETRIES {
            // This source port's TIME-WAIT toward the backend is too young
            // to reuse: same backend, next port.
            s.port_retries += 1;
            self.stats.port_retries += 1;
            self.drop_failed_socket(slot);
            self.connect_backend(stack, now, slot);
            return;
        }
        if result == -libc::ECANCELED {
            self.stats.connects_timed_out += 1;
        } else {
            self.stats.connects_failed += 1;
        }
        self.board.record(pool, backend, false);
        self.pools[pool].active[backend] -= 1;
        self.drop_failed_socket(slot);
        self.connect_next(stack, now, slot);
    }

    fn on_recv(&mut self, stack: &mut Stack, now: Instant, slot: u32, c: Completion) {
        let s = &mut self.sessions[slot as usize];
        if !c.more {
            s.recv_armed = false;
        }
        match c.result {
            n if n > 0 => {
                let buffer = c.buffer.expect("a receive with data names its buffer");
                if s.client_done || s.close_wanted {
                    self.uring.recycle(buffer);
                    return;
                }
                s.pending.push(Held {
                    buffer,
                    offset: 0,
                    len: n as u32,
                });
                self.stats.held_buffers += 1;
                self.stats.held_buffers_peak =
                    self.stats.held_buffers_peak.max(self.stats.held_buffers);
                // Flush now; if the client cannot take it all, stop reading.
                self.advance(stack, now, slot);
                let s = &mut self.sessions[slot as usize];
                if !s.pending.is_empty() && s.recv_armed && !s.recv_cancelled {
                    s.recv_cancelled = true;
                    s.ops += 1;
                    self.uring.cancel(Op::Recv, slot, s.generation);
                }
            }
            0 => s.backend_eof = true,
            e if e == -libc::ENOBUFS => {
                self.stats.receive_buffer_shortage += 1;
                self.starved.push(slot);
            }
            e if e == -libc::ECANCELED => {}
            e if e == -libc::EINVAL && self.uring.limits_supported() => {
                // An older kernel refused the receive limit: re-arm without.
                self.uring.disable_limits();
            }
            _ => self.backend_failed(stack, now, slot),
        }
    }

    /// The backend reset or failed mid-stream: RST to the client.
    fn backend_failed(&mut self, stack: &mut Stack, now: Instant, slot: u32) {
        let s = &mut self.sessions[slot as usize];
        s.backend_eof = true;
        if !s.client_done {
            self.stats.backend_resets += 1;
            let _ = stack.abort(now, s.client);
            self.release_client(slot);
        }
        self.close_backend(slot);
    }

    /// Deadlines: grace periods, backend EOF waits, idle timeouts. Called
    /// every few tens of milliseconds; a scan over live sessions.
    pub fn tick(&mut self, stack: &mut Stack, now: Instant) {
        for slot in 0..self.sessions.len() as u32 {
            let s = &mut self.sessions[slot as usize];
            if !s.live {
                continue;
            }
            let spec = self.listeners[s.listener];
            if let Some(deadline) = s.grace_deadline {
                if now >= deadline && !s.client_done && !s.client_fin_sent {
                    self.stats.grace_expired += 1;
                    s.client_fin_sent = true;
                    match spec.grace_fallback {
                        GraceFallback::Fin => {
                            let _ = stack.shutdown(now, s.client);
                        }
                        GraceFallback::Reset => {
                            let _ = stack.abort(now, s.client);
                            self.release_client(slot);
                        }
                    }
                }
            }
            let s = &mut self.sessions[slot as usize];
            if let Some(deadline) = s.backend_deadline {
                if now >= deadline && !s.backend_eof {
                    // The backend never finished after our FIN.
                    s.backend_eof = true;
                }
            }
            if !s.client_done && now - s.last_active >= spec.idle_timeout {
                self.stats.idle_closed += 1;
                let _ = stack.close(now, s.client);
                self.release_client(slot);
            }
            self.advance(stack, now, slot);
        }
    }

    /// Submits queued io_uring work (one system call at most).
    pub fn submit(&mut self) {
        self.uring.submit();
    }

    /// Sleeps until a packet (the AF_XDP socket `xsk` is readable), an
    /// io_uring completion, or `timeout`.
    pub fn wait(&mut self, xsk: std::os::fd::RawFd, timeout: Duration) {
        if !self.xsk_poll_armed {
            self.xsk_poll_armed = true;
            self.uring.poll_readable(xsk);
        }
        self.uring.wait(timeout);
    }

    /// Shutdown: RST every client, close every backend socket, and wait
    /// (bounded) for io_uring to give back everything it holds.
    pub fn shutdown(&mut self, stack: &mut Stack, now: Instant) {
        for slot in 0..self.sessions.len() as u32 {
            let s = &mut self.sessions[slot as usize];
            if !s.live {
                continue;
            }
            if !s.client_done {
                let _ = stack.abort(now, s.client);
                self.release_client(slot);
            }
            let s = &mut self.sessions[slot as usize];
            if s.fd >= 0 && !s.close_wanted {
                socket::set_linger_zero(s.fd);
                self.close_backend(slot);
            }
        }
        self.uring.submit();
        let sessions = &mut self.sessions;
        self.uring.drain(Duration::from_secs(2), |uring, c| {
            if let Some(buffer) = c.buffer {
                uring.recycle(buffer);
            }
            if let Some(s) = sessions.get_mut(c.token.slot as usize) {
                if !c.more && c.token.op != Op::PollXsk && s.ops > 0 {
                    s.ops -= 1;
                }
                if c.token.op == Op::Close && !c.more {
                    s.fd = -1;
                }
            }
        });
        // Sockets whose close was waiting for other operations: nothing is
        // in flight on them any more (or the ring is about to go).
        for s in &mut self.sessions {
            if s.fd >= 0 && !s.closing {
                socket::close_now(s.fd);
                s.fd = -1;
            }
        }
    }
}
