//! One proxied connection: the client side (a connection of our TCP
//! stack) and the backend side (a kernel socket driven by io_uring), and
//! where each stands.
//!
//! # Invariants
//! - `ops` counts this session's io_uring operations whose last
//!   completion has not arrived; the slot (with `addr` and `upload`, which
//!   those operations may point into) is reused only when it is zero.
//! - `pending` holds provided buffers taken from the kernel and not yet
//!   copied to the client; each goes back to the ring exactly once.
//! - While `pending` is not empty no receive is re-armed: a slow client
//!   stops reads from the backend (its socket buffer fills and the
//!   backend's window closes). While `upload` holds bytes no more are read
//!   from the client: a slow backend closes the client's window.

use std::net::SocketAddrV4;
use std::os::fd::RawFd;

use crate::tcp::{ConnId, Instant};

/// Bytes read from the client and sent to the backend per send.
pub const UPLOAD_BUFFER: usize = 16 * 1024;

/// A held provided buffer: received backend bytes `offset..len` not yet
/// taken by the client's send buffer.
#[derive(Debug, Clone, Copy)]
pub struct Held {
    pub buffer: u16,
    pub offset: u32,
    pub len: u32,
}

#[derive(Debug)]
pub struct Session {
    /// Bumped when the slot is reused; in every io_uring token.
    pub generation: u32,
    pub live: bool,
    pub client: ConnId,
    pub client_addr: SocketAddrV4,
    pub vip: SocketAddrV4,
    pub listener: usize,
    pub pool: usize,
    pub backend: usize,
    /// Backends tried for this connection (bit i: backend i).
    pub tried: u64,
    /// Connect attempts so far (retries are attempts after the first).
    pub attempts: u32,
    /// Connects retried on another source port because the 4-tuple was
    /// still in TIME-WAIT.
    pub port_retries: u32,
    /// The backend socket, or -1.
    pub fd: RawFd,
    /// Source address index in the pool and port, given back when the
    /// socket is closed.
    pub source: Option<(usize, u16)>,
    /// The backend address for connect (pointed to until its completion).
    pub addr: Box<libc::sockaddr_in>,
    /// Client → backend bytes; `upload[sent..filled]` is in flight or next.
    pub upload: Box<[u8]>,
    pub sent: usize,
    pub filled: usize,
    /// Backend → client bytes waiting for room in the client's buffer.
    pub pending: Vec<Held>,
    pub ops: u32,
    pub connected: bool,
    pub recv_armed: bool,
    pub recv_cancelled: bool,
    /// The armed receive is multishot (else a single one).
    pub recv_multishot: bool,
    pub send_in_flight: bool,
    /// The backend sent FIN (a receive returned 0).
    pub backend_eof: bool,
    /// We sent FIN to the backend (shutdown(SHUT_WR) submitted).
    pub backend_shut: bool,
    /// The backend socket is to be closed (once nothing else is in
    /// flight on it).
    pub close_wanted: bool,
    /// close(2) of `fd` submitted.
    pub closing: bool,
    /// We sent (or queued) FIN to the client without closing: immediate
    /// policy, or the grace period ended with fallback `fin`.
    pub client_fin_sent: bool,
    /// Our handle on the client connection is released (closed, aborted,
    /// or it was reset).
    pub client_done: bool,
    /// client-first: FIN to the client is held until then.
    pub grace_deadline: Option<Instant>,
    /// After our FIN to the backend, its EOF is awaited until then.
    pub backend_deadline: Option<Instant>,
    pub last_active: Instant,
}

impl Session {
    pub fn empty() -> Self {
        Self {
            generation: 0,
            live: false,
            client: ConnId {
                index: u32::MAX,
                generation: 0,
            },
            client_addr: SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0),
            vip: SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0),
            listener: 0,
            pool: 0,
            backend: 0,
            tried: 0,
            attempts: 0,
            port_retries: 0,
            fd: -1,
            source: None,
            addr: Box::new(crate::upstream::socket::sockaddr(SocketAddrV4::new(
                std::net::Ipv4Addr::UNSPECIFIED,
                0,
            ))),
            upload: Box::default(),
            sent: 0,
            filled: 0,
            pending: Vec::new(),
            ops: 0,
            connected: false,
            recv_armed: false,
            recv_cancelled: false,
            recv_multishot: false,
            send_in_flight: false,
            backend_eof: false,
            backend_shut: false,
            close_wanted: false,
            closing: false,
            client_fin_sent: false,
            client_done: false,
            grace_deadline: None,
            backend_deadline: None,
            last_active: Instant::from_micros(0),
        }
    }

    /// Resets the slot for a new connection, keeping its allocations.
    pub fn reset(
        &mut self,
        client: ConnId,
        client_addr: SocketAddrV4,
        vip: SocketAddrV4,
        now: Instant,
    ) {
        debug_assert!(self.ops == 0 && self.pending.is_empty());
        self.generation =
            self.generation.wrapping_add(1) & crate::upstream::uring::Token::GENERATION_MASK;
        self.live = true;
        self.client = client;
        self.client_addr = client_addr;
        self.vip = vip;
        self.tried = 0;
        self.attempts = 0;
        self.port_retries = 0;
        self.fd = -1;
        self.source = None;
        self.sent = 0;
        self.filled = 0;
        self.connected = false;
        self.recv_armed = false;
        self.recv_cancelled = false;
        self.send_in_flight = false;
        self.backend_eof = false;
        self.backend_shut = false;
        self.close_wanted = false;
        self.closing = false;
        self.client_fin_sent = false;
        self.client_done = false;
        self.grace_deadline = None;
        self.backend_deadline = None;
        self.last_active = now;
        if self.upload.is_empty() {
            self.upload = vec![0u8; UPLOAD_BUFFER].into_boxed_slice();
        }
    }

    /// Both sides finished: the slot can go back once `ops` is zero.
    pub fn finished(&self) -> bool {
        self.client_done && self.fd < 0
    }
}
