//! The proxy: a [`Session`] per connection accepted on a proxy listener,
//! between our TCP stack (the client) and a backend socket owned by the
//! shard's io_uring ([`crate::upstream::uring`]).
//!
//! # Life of a session
//! 1. **Open** (accepted): choose a backend, take a source port, open a
//!    socket, connect with the pool's timeout. Client bytes wait in our
//!    stack meanwhile (its window closes if they keep coming).
//! 2. **Connect failed** (refused, timed out): a passive health failure;
//!    the next backend, up to `retries` more; then RST to the client. A
//!    4-tuple still in TIME-WAIT (`EADDRNOTAVAIL`) retries with the next
//!    source port, not counted against the backend.
//! 3. **Splice** ([`splice`]): client → backend through the socket's
//!    outbox, one send in flight; backend → client from a receive limited
//!    to the room in the client's send buffer.
//! 4. **Close** ([`close`]), per the listener's policy (see
//!    [`session`] for every transition).
//! 5. **Finished**: the client handle is released and the socket handed
//!    back to the io_uring layer, which closes it once nothing is in
//!    flight; the shard drops the session at once.
//!
//! The shard owns the sessions (one slab for everything it serves) and
//! calls in with the session: [`Proxy::open`], [`Proxy::on_client`],
//! [`Proxy::on_backend`], [`Proxy::on_timeout`]; each returns whether the
//! session goes on, and [`Session::deadline`] says when to call back.

mod close;
mod connect;
pub mod proxy_protocol;
pub mod session;
mod splice;

pub use session::Session;

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{ClosePolicy, Config, GraceFallback, Pool, Service};
use crate::tcp::{ConnId, Instant, Stack};
use crate::upstream::host::HostTcp;
use crate::upstream::lease::SourcePort;
use crate::upstream::pool::{HealthBoard, ShardPool};
use crate::upstream::ports::Woken;
use crate::upstream::uring::{Completion, Release, SocketEvent, SocketId, Uring, UringConfig};
use session::{Client, Download, Leg};

/// What a proxy listener does with its connections; built once per
/// configured listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyPolicy {
    /// Index of the pool in the config.
    pub pool: usize,
    pub close_policy: ClosePolicy,
    pub close_grace: Duration,
    pub grace_fallback: GraceFallback,
    pub idle_timeout: Duration,
    /// Half-closed (our FIN sent, the client's not) and quiet this long:
    /// the client is reset.
    pub fin_timeout: Duration,
}

impl ProxyPolicy {
    /// The policy of `config.listeners[listener]` on one of `shards`, or
    /// `None` if that listener does not proxy.
    pub fn for_listener(config: &Config, listener: usize) -> Option<Self> {
        let l = &config.listeners[listener];
        if l.service != Service::Proxy {
            return None;
        }
        let pool = l
            .pool
            .as_ref()
            .and_then(|name| config.pools.iter().position(|p| &p.name == name))
            .expect("validated: a proxy listener names a pool");
        Some(Self {
            pool,
            close_policy: l.close_policy,
            close_grace: *l.close_grace,
            grace_fallback: l.grace_fallback,
            idle_timeout: *l.idle_timeout,
            fin_timeout: *l.fin_timeout,
        })
    }
}

/// What a shard's proxy needs to build its backend leg.
#[derive(Debug, Clone)]
pub struct UpstreamPlan {
    pub board: Arc<HealthBoard>,
    pub pools: Vec<Pool>,
    /// This shard and how many there are (their source ports are disjoint).
    pub shard: usize,
    pub shards: usize,
    pub uring: UringConfig,
    /// The host's kernel settings for the backend leg.
    pub host: HostTcp,
}

impl UpstreamPlan {
    pub fn new(
        config: &Config,
        board: &Arc<HealthBoard>,
        (shard, shards): (usize, usize),
        host: HostTcp,
    ) -> Self {
        Self {
            board: Arc::clone(board),
            pools: config.pools.clone(),
            shard,
            shards,
            uring: UringConfig::default(),
            host,
        }
    }
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
    /// Half-closed sessions whose client stayed quiet for `fin_timeout`
    /// after our FIN: reset.
    pub fin_timeouts: u64,
    pub bytes_to_backend: u64,
    pub bytes_to_client: u64,
    /// Socket errors opening a backend socket (not port conflicts).
    pub socket_errors: u64,
    /// Clients reset because no source port came free within the pool's
    /// connect timeout.
    pub ports_exhausted: u64,
    /// Connects that waited for a source port (all in use, resting after
    /// their last connection, or paced).
    pub port_waits: u64,
    /// Backend connections ended with RST (`backend_close = "reset"`)
    /// rather than FIN.
    pub backend_closed_with_reset: u64,
    /// From the io_uring layer: receives that found no provided buffer.
    pub receive_buffer_shortage: u64,
    /// From the io_uring layer: provided buffers held now for clients that
    /// have no room yet, and the most ever held at once.
    pub held_buffers: u64,
    pub held_buffers_peak: u64,
    /// From the io_uring layer: provided buffers posted for receives now,
    /// and the bytes of buffer memory that may hold pages.
    pub posted_buffers: u64,
    pub receive_buffer_bytes: u64,
    /// From the io_uring layer: backend sockets open or closing.
    pub backend_sockets: u64,
    /// From the io_uring layer: send buffers lent to backend sockets now
    /// (0 when every upload has been sent).
    pub backend_send_buffers: u64,
}

impl std::ops::AddAssign<&ProxyStats> for ProxyStats {
    /// Totals over shards (peaks: the highest).
    fn add_assign(&mut self, other: &ProxyStats) {
        self.sessions_opened += other.sessions_opened;
        self.sessions_active += other.sessions_active;
        self.connects_failed += other.connects_failed;
        self.connects_timed_out += other.connects_timed_out;
        self.retries += other.retries;
        self.port_retries += other.port_retries;
        self.no_backend += other.no_backend;
        self.over_limit += other.over_limit;
        self.backend_resets += other.backend_resets;
        self.client_resets += other.client_resets;
        self.client_closed_first += other.client_closed_first;
        self.grace_expired += other.grace_expired;
        self.idle_closed += other.idle_closed;
        self.fin_timeouts += other.fin_timeouts;
        self.bytes_to_backend += other.bytes_to_backend;
        self.bytes_to_client += other.bytes_to_client;
        self.socket_errors += other.socket_errors;
        self.ports_exhausted += other.ports_exhausted;
        self.port_waits += other.port_waits;
        self.backend_closed_with_reset += other.backend_closed_with_reset;
        self.receive_buffer_shortage += other.receive_buffer_shortage;
        self.held_buffers += other.held_buffers;
        self.posted_buffers += other.posted_buffers;
        self.receive_buffer_bytes += other.receive_buffer_bytes;
        self.backend_sockets += other.backend_sockets;
        self.backend_send_buffers += other.backend_send_buffers;
        self.held_buffers_peak = self.held_buffers_peak.max(other.held_buffers_peak);
    }
}

/// Free source ports of one source address of a pool, on one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePorts {
    pub pool: String,
    pub address: std::net::IpAddr,
    /// Ready to use now.
    pub ready: usize,
    /// Resting after a TIME-WAIT.
    pub resting: usize,
}

/// After an input: whether the session goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Step {
    Continue,
    /// Both sides are done: drop the session.
    Finished,
}

/// What happened on the client side of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent {
    /// Readable, writable, or the client's FIN.
    Ready,
    /// The connection finished cleanly: our handle is to be released.
    Closed,
    /// The client reset: our handle is already invalid.
    Reset,
}

/// A shard's view of a pool, shared by the proxy (which balances new
/// connections over the current ones) and the sessions that connect
/// through it (a reload may replace the proxy's while they retry).
pub type PoolRef = Rc<RefCell<ShardPool>>;

/// One shard's backend leg: the io_uring with the backend sockets, and
/// the pools (each reading and reporting to the shared health board).
pub struct Proxy {
    /// Each socket carries its source-port lease until it is closed.
    uring: Uring<Option<SourcePort>>,
    /// In config order (the index a listener's policy names).
    pools: Vec<PoolRef>,
    stats: ProxyStats,
    /// Local trouble (ports, descriptors) is logged at most once a second.
    log: Throttled,
    /// Sessions whose turn for a source port came (see
    /// [`Proxy::take_woken`]).
    woken: Woken,
}

/// A warning logged at most once per second, with how many were left out
/// since the last one: a host out of descriptors or ports must not also
/// flood its log.
#[derive(Debug, Default)]
struct Throttled {
    next: Instant,
    suppressed: u64,
}

impl Throttled {
    const EVERY: Duration = Duration::from_secs(1);

    fn warn(&mut self, now: Instant, what: &str) {
        if now < self.next {
            self.suppressed += 1;
            return;
        }
        let suppressed = std::mem::take(&mut self.suppressed);
        tracing::warn!(suppressed, "{what}");
        self.next = now + Self::EVERY;
    }
}

impl Proxy {
    pub fn new(plan: &UpstreamPlan) -> io::Result<Self> {
        let mut proxy = Self {
            uring: Uring::new(plan.uring)?,
            pools: Vec::new(),
            stats: ProxyStats::default(),
            log: Throttled::default(),
            woken: Woken::default(),
        };
        proxy.reconfigure(plan);
        Ok(proxy)
    }

    /// Takes the pools and board of `plan` (a reload): a pool that did not
    /// change stays as it is; a changed one is rebuilt keeping the
    /// connection counts of backends that stay and its source ports if its
    /// source addresses did not change. Sessions keep the pool they
    /// started with until they end.
    pub fn reconfigure(&mut self, plan: &UpstreamPlan) {
        let pools = plan
            .pools
            .iter()
            .enumerate()
            .map(|(i, pool)| {
                let old = self.pools.iter().find(|p| p.borrow().name() == pool.name);
                match old {
                    Some(old) if old.borrow().serves(pool, &plan.board) => Rc::clone(old),
                    old => Rc::new(RefCell::new(ShardPool::new(
                        i,
                        pool,
                        &plan.board,
                        (plan.shard, plan.shards),
                        &plan.host,
                        &self.woken,
                        old.map(|o| o.borrow()).as_deref(),
                    ))),
                }
            })
            .collect();
        self.pools = pools;
    }

    /// The counters, with the io_uring layer's.
    pub fn stats(&self) -> ProxyStats {
        let uring = self.uring.stats();
        ProxyStats {
            receive_buffer_shortage: uring.receive_buffer_shortage,
            held_buffers: uring.held_buffers,
            held_buffers_peak: uring.held_buffers_peak,
            posted_buffers: uring.posted_buffers,
            receive_buffer_bytes: uring.buffer_bytes,
            backend_sockets: uring.sockets,
            backend_send_buffers: uring.outboxes,
            ..self.stats
        }
    }

    /// Free source ports of each pool, per source address.
    pub fn source_ports(&self) -> Vec<SourcePorts> {
        let mut out = Vec::new();
        for pool in &self.pools {
            let pool = pool.borrow();
            for (address, ready, resting) in pool.source_ports() {
                out.push(SourcePorts {
                    pool: pool.name().to_string(),
                    address,
                    ready,
                    resting,
                });
            }
        }
        out
    }

    /// Step 1: connection `client` was accepted under `policy` and tagged
    /// `key`. `None` if it already ended (no backend could take it: the
    /// client was reset).
    pub fn open(
        &mut self,
        stack: &mut Stack,
        now: Instant,
        key: u64,
        client: ConnId,
        policy: ProxyPolicy,
    ) -> Option<Session> {
        stack.tuple(client)?;
        let pool = Rc::clone(self.pools.get(policy.pool)?);
        let mut session = Session::new(key, client, policy, pool, now);
        self.stats.sessions_opened += 1;
        self.stats.sessions_active += 1;
        self.connect_next(stack, now, &mut session);
        match self.advance(stack, now, &mut session) {
            Step::Continue => Some(session),
            Step::Finished => None,
        }
    }

    /// Something happened on the client side.
    pub fn on_client(
        &mut self,
        stack: &mut Stack,
        now: Instant,
        s: &mut Session,
        event: ClientEvent,
    ) -> Step {
        match event {
            ClientEvent::Ready => {}
            ClientEvent::Closed => {
                let _ = stack.close(now, s.client);
                s.client_state = Client::Gone;
            }
            ClientEvent::Reset => {
                self.stats.client_resets += 1;
                s.client_state = Client::Gone;
                // The backend should see an abort, not a clean end.
                self.release_leg(s, Release::Reset);
            }
        }
        self.advance(stack, now, s)
    }

    /// Something happened to the session's backend socket.
    pub fn on_backend(
        &mut self,
        stack: &mut Stack,
        now: Instant,
        s: &mut Session,
        completion: &Completion,
    ) -> Step {
        if s.leg.socket() != Some(completion.socket) {
            // A socket this session no longer uses (cannot happen: released
            // sockets report nothing); nothing to do.
            return Step::Continue;
        }
        match completion.event {
            SocketEvent::Connected(result) => self.on_connected(stack, now, s, result),
            SocketEvent::Sent(Ok(n)) => {
                self.stats.bytes_to_backend += n as u64;
                s.last_active = now;
            }
            SocketEvent::Sent(Err(_)) | SocketEvent::ReceiveFailed(_) => {
                self.backend_failed(stack, now, s)
            }
            SocketEvent::Eof => s.download = Download::Ended,
            SocketEvent::Received(_) | SocketEvent::ReceiveStopped => {}
        }
        self.advance(stack, now, s)
    }

    /// The session's deadline ([`Session::deadline`]) passed.
    pub fn on_timeout(&mut self, stack: &mut Stack, now: Instant, s: &mut Session) -> Step {
        self.retry_port(stack, now, s);
        self.expire_grace(stack, now, s);
        if s.backend_wait.is_some_and(|at| now >= at) && s.download == Download::Open {
            // The backend never finished after our FIN.
            s.download = Download::Ended;
        }
        if s.client_state != Client::Gone && now >= s.idle_check {
            let quiet = now - s.last_active;
            if s.client_state == Client::FinSent && quiet >= s.policy.fin_timeout {
                // Half-closed and the client never finishes: FIN-WAIT-2
                // would last for ever.
                self.stats.fin_timeouts += 1;
                let _ = stack.abort(now, s.client);
                s.client_state = Client::Gone;
            } else if quiet >= s.policy.idle_timeout {
                self.stats.idle_closed += 1;
                let _ = stack.close(now, s.client);
                s.client_state = Client::Gone;
            } else {
                s.idle_check = s.last_active + s.quiet_limit();
            }
        }
        self.advance(stack, now, s)
    }

    /// Keys of sessions waiting for a source port whose turn came (the
    /// one before them in line left): the shard calls
    /// [`Proxy::on_port_turn`] for each.
    pub fn take_woken(&mut self, out: &mut Vec<u64>) {
        out.append(&mut self.woken.borrow_mut());
    }

    /// The session's turn for a source port came: it tries now.
    pub fn on_port_turn(&mut self, stack: &mut Stack, now: Instant, s: &mut Session) -> Step {
        if let Leg::WaitingForPort { retry_at, .. } = &mut s.leg {
            *retry_at = now;
        }
        self.on_timeout(stack, now, s)
    }

    /// A drain ran out of time: FIN to the client (its further input
    /// dropped) and to the backend. The session ends here; the engine
    /// finishes the client's close and the io_uring layer the backend's.
    pub fn finish(&mut self, stack: &mut Stack, now: Instant, s: &mut Session) -> Step {
        if s.client_state != Client::Gone {
            let _ = stack.close(now, s.client);
            s.client_state = Client::Gone;
        }
        self.release_leg(s, Release::Close);
        self.advance(stack, now, s)
    }

    /// Cuts off the io_uring's free socket slots at the end (see
    /// [`Uring::release_memory`](crate::upstream::uring::Uring::release_memory)).
    pub fn release_memory(&mut self) {
        self.uring.release_memory();
    }

    /// A connection refused at the listener's limit (counted here).
    pub fn over_limit(&mut self) {
        self.stats.over_limit += 1;
    }

    /// Moves data and applies the close policy after anything happened.
    fn advance(&mut self, stack: &mut Stack, now: Instant, s: &mut Session) -> Step {
        self.pump_download(stack, now, s);
        self.pump_upload(stack, now, s);
        self.close_client_side(stack, now, s);
        self.finish_leg(now, s);
        if s.finished() {
            self.stats.sessions_active -= 1;
            Step::Finished
        } else {
            Step::Continue
        }
    }

    /// Hands the session's socket back to the io_uring layer (closed once
    /// nothing is in flight); its backend lease drops here.
    fn release_leg(&mut self, s: &mut Session, how: Release) {
        if let Some(socket) = s.leg.socket() {
            let fin_first = how == Release::Close
                && s.leg.connected().is_some()
                && s.upload == session::Upload::Open
                && s.download == Download::Open;
            if fin_first {
                self.leaves_time_wait(socket);
            }
            self.uring.release(socket, how);
        }
        s.leg = Leg::Closed;
    }

    /// Our FIN goes to the backend before its own: the socket's source
    /// port rests once given back (see [`crate::upstream::ports`]).
    fn leaves_time_wait(&mut self, socket: SocketId) {
        if let Some(Some(port)) = self.uring.attachment(socket) {
            port.leaves_time_wait();
        }
    }

    // ---- The io_uring, for the shard loop ----

    /// Completions for sessions (cleared first); the io_uring layer keeps
    /// the rest to itself.
    pub fn poll_completions(&mut self, out: &mut Vec<Completion>) {
        self.uring.complete(out);
    }

    /// Submits queued io_uring work (one system call at most).
    pub fn submit(&mut self) {
        self.uring.submit();
    }

    /// Sleeps until a packet (the AF_XDP socket `xsk` is readable), a
    /// wake-up (`wake` is readable), an io_uring completion, or `timeout`.
    pub fn wait(&mut self, xsk: std::os::fd::RawFd, wake: std::os::fd::RawFd, timeout: Duration) {
        self.uring.wait(xsk, wake, timeout);
    }

    /// Shutdown: RST every client of `sessions`, reset every backend
    /// socket, and wait (bounded) for io_uring to give back what it holds.
    pub fn shutdown<'a>(
        &mut self,
        stack: &mut Stack,
        now: Instant,
        sessions: impl Iterator<Item = &'a mut Session>,
    ) {
        for s in sessions {
            if s.client_state != Client::Gone {
                let _ = stack.abort(now, s.client);
                s.client_state = Client::Gone;
            }
            self.release_leg(s, Release::Reset);
        }
        self.uring.drain(Release::Reset, Duration::from_secs(2));
    }
}
