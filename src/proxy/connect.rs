//! Choosing a backend, opening its socket on a fresh source port,
//! connecting, and what a failed connect leads to (session steps 1 and 2).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use super::session::{Client, Leg, Session};
use super::{proxy_protocol, Proxy};
use crate::config::ProxyProtocol;
use crate::tcp::{Instant, Stack};
use crate::upstream::lease::BackendLease;
use crate::upstream::pool::ShardPool;
use crate::upstream::ports::WaitTicket;
use crate::upstream::socket::{self, OpenError};
use crate::upstream::uring::{Release, SocketId};

/// Connects retried on another source port, per backend, when the
/// 4-tuple is still in TIME-WAIT, before waiting for one.
const MAX_PORT_RETRIES: u32 = 8;

/// How often the first connection waiting for a source port tries again
/// when it cannot tell when one is due (all in use), and at most when it
/// can.
const PORT_RETRY: Duration = Duration::from_millis(20);
/// The soonest it tries again (the timer wheel's resolution).
const PORT_RETRY_MIN: Duration = Duration::from_micros(100);

impl Proxy {
    /// Chooses a backend not yet tried and connects; RST to the client if
    /// none is left.
    pub(super) fn connect_next(&mut self, stack: &mut Stack, now: Instant, s: &mut Session) {
        let pool = Rc::clone(&s.pool);
        let mut pool = pool.borrow_mut();
        // The client's address is the balancing key (Maglev, source hash).
        let client = stack.tuple(s.client).map(|t| t.remote.ip());
        let choice = match client {
            Some(ip) if s.attempts.backends <= pool.retries => pool.choose(ip, s.attempts.tried),
            _ => None,
        };
        let Some(backend) = choice else {
            self.stats.no_backend += 1;
            self.reset_client(stack, now, s);
            return;
        };
        if s.attempts.backends > 0 {
            self.stats.retries += 1;
        }
        s.attempts.backends += 1;
        s.attempts.tried |= 1u64.checked_shl(backend as u32).unwrap_or(0);
        s.backend = backend;
        let lease = pool.lease(backend);
        drop(pool);
        self.connect_backend(stack, now, s, lease, None);
    }

    /// Opens a socket on a fresh source port and connects it to the
    /// leased backend. Without a port ready, or with others waiting first,
    /// the session waits in the pool's line (first come, first served),
    /// bounded by the pool's connect timeout; `waiting` is its place in
    /// line and that bound, when it was already waiting.
    pub(super) fn connect_backend(
        &mut self,
        stack: &mut Stack,
        now: Instant,
        s: &mut Session,
        lease: BackendLease,
        waiting: Option<(WaitTicket, Instant)>,
    ) {
        let pool = Rc::clone(&s.pool);
        let mut pool = pool.borrow_mut();
        let address = pool.backends[lease.backend()];
        let my_turn = match &waiting {
            Some((ticket, _)) => ticket.is_first(),
            None => pool.line.borrow().is_empty(),
        };
        let opened = loop {
            if !my_turn {
                break Ok(None);
            }
            let Some(port) = pool.take_source(&address) else {
                break Ok(None);
            };
            let source = match (port.address, address) {
                (IpAddr::V4(a), SocketAddr::V6(_)) if a.is_unspecified() => {
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                }
                (a, _) => a,
            };
            match socket::open(address, Some((source, port.port))) {
                Ok(fd) => break Ok(Some((fd, port))),
                Err(OpenError::PortInUse) => port.retire(),
                Err(OpenError::Other(e)) => break Err(e),
            }
        };
        match opened {
            Ok(Some((fd, port))) => {
                // Out of line (the next one is woken).
                drop(waiting);
                let socket = self.uring.open(fd, s.key, Some(port));
                self.uring.connect(socket, address, pool.connect_timeout);
                s.leg = Leg::Connecting { socket, lease };
            }
            Ok(None) => {
                let (ticket, until) = waiting.unwrap_or_else(|| {
                    self.stats.port_waits += 1;
                    (
                        WaitTicket::join(&pool.line, s.key),
                        now + pool.connect_timeout,
                    )
                });
                if now >= until {
                    self.stats.ports_exhausted += 1;
                    self.log.warn(
                        now,
                        "no source port came free within connect_timeout: client reset",
                    );
                    drop((ticket, pool));
                    self.reset_client(stack, now, s);
                } else {
                    // The first tries again when the next port is due (or
                    // polls, if all are in use); the others are woken.
                    let retry_at = if ticket.is_first() {
                        let due = pool.next_source_in().unwrap_or(PORT_RETRY);
                        (now + due.clamp(PORT_RETRY_MIN, PORT_RETRY)).min(until)
                    } else {
                        until
                    };
                    s.leg = Leg::WaitingForPort {
                        lease,
                        ticket,
                        retry_at,
                        until,
                    };
                }
            }
            Err(e) => {
                // A local error (descriptors, memory, buffers): nothing to
                // do with the backend, whose health stays as it is.
                self.stats.socket_errors += 1;
                self.log
                    .warn(now, &format!("backend socket: {e}: client reset"));
                drop((waiting, pool));
                self.reset_client(stack, now, s);
            }
        }
    }

    /// The connect finished.
    pub(super) fn on_connected(
        &mut self,
        stack: &mut Stack,
        now: Instant,
        s: &mut Session,
        result: Result<(), i32>,
    ) {
        let Leg::Connecting { socket, lease } = std::mem::replace(&mut s.leg, Leg::Closed) else {
            return;
        };
        let errno = match result {
            Ok(()) => {
                s.pool.borrow().record(lease.backend(), true);
                self.learn_timestamps(s, socket, lease.backend());
                s.leg = Leg::Connected { socket, lease };
                // The handshake's last ACK waits for our first bytes
                // (`socket::open`); with none to send yet, it goes now.
                let header_sent = self.send_proxy_header(stack, s);
                if !header_sent && stack.readable(s.client) == 0 {
                    self.uring.ack_now(socket);
                }
                return;
            }
            Err(errno) => errno,
        };
        if matches!(errno, libc::EADDRNOTAVAIL | libc::EADDRINUSE) {
            // The port's 4-tuple is still in TIME-WAIT and the kernel would
            // not take it over: the backend does not use timestamps. The
            // pool's ports rest from now on, this one too.
            if s.pool.borrow().learn_no_reuse() {
                warn_no_reuse(
                    &s.pool.borrow(),
                    lease.backend(),
                    "a TIME-WAIT was not reused",
                );
            }
            self.leaves_time_wait(socket);
        }
        self.uring.release(socket, Release::Close);
        if s.client_state == Client::Gone {
            return;
        }
        if matches!(errno, libc::EADDRNOTAVAIL | libc::EADDRINUSE) {
            // This source port's TIME-WAIT toward the backend is too young
            // to reuse: same backend, next port (or a wait for one).
            s.attempts.ports += 1;
            self.stats.port_retries += 1;
            if s.attempts.ports > MAX_PORT_RETRIES {
                self.stats.port_waits += 1;
                let pool = Rc::clone(&s.pool);
                let pool = pool.borrow();
                s.leg = Leg::WaitingForPort {
                    lease,
                    ticket: WaitTicket::join(&pool.line, s.key),
                    retry_at: now + PORT_RETRY,
                    until: now + pool.connect_timeout,
                };
            } else {
                self.connect_backend(stack, now, s, lease, None);
            }
            return;
        }
        if socket::is_local_error(errno) {
            self.stats.socket_errors += 1;
            let error = std::io::Error::from_raw_os_error(errno);
            self.log
                .warn(now, &format!("backend connect: {error}: client reset"));
            self.reset_client(stack, now, s);
            return;
        }
        if errno == libc::ECANCELED {
            self.stats.connects_timed_out += 1;
        } else {
            self.stats.connects_failed += 1;
        }
        s.pool.borrow().record(lease.backend(), false);
        drop(lease);
        self.connect_next(stack, now, s);
    }

    /// A session waiting for a source port: its retry time came.
    pub(super) fn retry_port(&mut self, stack: &mut Stack, now: Instant, s: &mut Session) {
        if !matches!(s.leg, Leg::WaitingForPort { retry_at, .. } if now >= retry_at) {
            return;
        }
        let Leg::WaitingForPort {
            lease,
            ticket,
            until,
            ..
        } = std::mem::replace(&mut s.leg, Leg::Closed)
        else {
            unreachable!("matched above");
        };
        if s.client_state != Client::Gone {
            self.connect_backend(stack, now, s, lease, Some((ticket, until)));
        }
    }

    /// The first connection to a backend (while the pool reuses its
    /// ports): does it use timestamps? Without them, its TIME-WAITs could
    /// not be reused and the pool's ports must rest; learnt now rather than
    /// a whole port range later.
    fn learn_timestamps(&mut self, s: &Session, socket: SocketId, backend: usize) {
        if !s.pool.borrow().wants_timestamps_of(backend) {
            return;
        }
        let Some(timestamps) = self.uring.uses_timestamps(socket) else {
            return;
        };
        if s.pool.borrow_mut().learn_timestamps(backend, timestamps) {
            warn_no_reuse(
                &s.pool.borrow(),
                backend,
                "the backend does not use TCP timestamps",
            );
        }
    }

    /// The PROXY protocol header, if the pool wants one, goes first: the
    /// client's address and the VIP, from the engine's four-tuple. True
    /// if a header was queued.
    fn send_proxy_header(&mut self, stack: &Stack, s: &mut Session) -> bool {
        let header = s.pool.borrow().proxy_protocol;
        let Some(socket) = s.leg.connected() else {
            return false;
        };
        if header == ProxyProtocol::None || s.client_state == Client::Gone {
            return false;
        }
        let Some(tuple) = stack.tuple(s.client) else {
            return false;
        };
        let mut out = [0u8; proxy_protocol::MAX_LEN];
        let n = proxy_protocol::encode(header, tuple.remote.into(), tuple.local.into(), &mut out);
        self.uring.fill_outbox(socket, |buffer| {
            buffer[..n].copy_from_slice(&out[..n]);
            n
        });
        true
    }

    /// RST to the client; no backend leg is left.
    pub(super) fn reset_client(&mut self, stack: &mut Stack, now: Instant, s: &mut Session) {
        if s.client_state != Client::Gone {
            let _ = stack.abort(now, s.client);
            s.client_state = Client::Gone;
        }
        self.release_leg(s, Release::Close);
    }
}

/// Once per pool: its ports rest from now on, and why.
fn warn_no_reuse(pool: &ShardPool, backend: usize, why: &str) {
    tracing::warn!(
        pool = pool.name(),
        backend = %pool.backends[backend],
        "{why}: its backend-leg TIME-WAITs cannot be reused, so the pool's ports now rest \
         66 s after each and new connections are paced to that (about 1,000/s per source \
         address); backend_close = \"reset\" or more source_addresses lift it"
    );
}
